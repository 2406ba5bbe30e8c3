"""Search and evaluation speed, measured side by side on the same codes, reported as ratios.

    python benchmarks/search.py             # or: make bench-search

Writes benchmarks/results/search.md and search.json. Codes are synthetic but clustered like
learned codes: 100,000 random centres, each database code a centre with every bit flipped with
probability 0.1; queries are further noisy copies of database codes (so they have near
neighbours, as real queries do). Everything runs on this machine's CPU cores.

1. Exhaustive k-nearest-neighbour throughput (k = 10, 10,000 queries) at 1M and 10M codes of
   64 and 128 bits: hashkit's exact scan (``search.knn_scan``, what ``hashkit query`` runs, in
   database chunks) against FAISS's IndexBinaryFlat called directly on all the codes, and a
   NumPy popcount scan (``np.bitwise_count`` of 64-bit words plus ``argpartition``; on a
   subset of queries, per-query time extrapolated). Also one query alone over 10M codes, as
   bytes scanned per second, against the memory bandwidth measured here (a large NumPy copy).
2. Multi-index hashing (``--index mih``) against the exact scan at 10M 64-bit codes: k = 1, 10,
   100 and radius 2, with recall (share of the exact results found; for k-NN, ties at the k-th
   distance count as found).
3. ``hashkit query`` itself (``query_cli``), as its own process, on code stores on disk with
   10M 64-bit codes and their paths and 10,000 queries: k = 10 and radius 2, wall time and peak
   resident memory.
4. mAP over the whole database for 10,000 queries x 60,000 codes (64 bits, 10 classes):
   ``metrics.evaluate`` (on every core) against the straightforward NumPy implementation common
   in public hashing code (per query: distances from a float matrix product, argsort, cumulative
   sums); the reference sorts stably so that both break ties by database row and must agree exactly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import faiss
import h5py
import numpy as np

from hashkit.hashing.evaluation.metrics import LabelRelevance, evaluate, evaluate_relevance
from hashkit.hashing.evaluation.search import INDEXES, build_index, knn, knn_scan, radius_search, tune
from hashkit.hashing.storage.store import CodeStoreWriter, StoreMeta

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 0


def clustered_codes(count: int, bits: int, rng: np.random.Generator, centres: int = 100_000,
                    flip: float = 0.1) -> np.ndarray:
    """``count`` packed codes: random centres with each bit flipped with probability ``flip``."""
    words = bits // 8
    centre_codes = rng.integers(0, 256, (centres, words), dtype=np.uint8)
    out = np.empty((count, words), np.uint8)
    for start in range(0, count, 1_000_000):
        stop = min(count, start + 1_000_000)
        noise = np.packbits(rng.random((stop - start, bits)) < flip, axis=1)
        out[start:stop] = centre_codes[rng.integers(0, centres, stop - start)] ^ noise
    return out


def noisy_queries(database: np.ndarray, count: int, rng: np.random.Generator, flip: float = 0.05) -> np.ndarray:
    rows = database[rng.integers(0, len(database), count)]
    return rows ^ np.packbits(rng.random((count, database.shape[1] * 8)) < flip, axis=1)


def timed(function, *args, repeat: int = 1):
    """(best seconds over ``repeat`` runs, last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - started)
    return best, result


def faiss_flat(database: np.ndarray, queries: np.ndarray, k: int):
    index = faiss.IndexBinaryFlat(database.shape[1] * 8)
    index.add(database)
    return index.search(queries, k)


def numpy_scan(database: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    words = database.view(np.uint64)
    out = np.empty((len(queries), k), np.int64)
    for q, code in enumerate(queries.view(np.uint64)):
        distances = np.bitwise_count(words ^ code).sum(axis=1, dtype=np.uint16)
        out[q] = np.argpartition(distances, k)[:k]
    return out


def memory_bandwidth() -> float:
    """Bytes per second of a 1 GiB NumPy copy (read + write counted), best of 3."""
    source = np.ones(1 << 27, np.float64)
    target = np.empty_like(source)
    seconds, _ = timed(np.copyto, target, source, repeat=3)
    return 2 * source.nbytes / seconds


def knn_throughput(sizes: tuple[int, ...], bit_lengths: tuple[int, ...], queries_count: int,
                   rng: np.random.Generator) -> list[dict]:
    rows = []
    for size in sizes:
        for bits in bit_lengths:
            database = clustered_codes(size, bits, rng)
            queries = noisy_queries(database, queries_count, rng)
            chunks = [database[s:s + (1 << 22)] for s in range(0, size, 1 << 22)]
            ours, (our_d, _) = timed(knn_scan, chunks, queries, 10)
            direct, (faiss_d, _) = timed(faiss_flat, database, queries, 10)
            sample = queries[:200]
            numpy_seconds, _ = timed(numpy_scan, database, sample, 10)
            numpy_seconds *= queries_count / len(sample)
            single, _ = timed(knn_scan, chunks, queries[:1], 10, repeat=5)
            rows.append({"codes": size, "bits": bits, "queries": queries_count, "k": 10,
                         "hashkit_seconds": round(ours, 3), "faiss_seconds": round(direct, 3),
                         "numpy_seconds_extrapolated": round(numpy_seconds, 2),
                         "hashkit_queries_per_second": round(queries_count / ours, 1),
                         "hashkit_vs_faiss": round(ours / direct, 3),
                         "numpy_vs_hashkit": round(numpy_seconds / ours, 1),
                         "same_distances_as_faiss": bool(np.array_equal(our_d, faiss_d)),
                         "single_query_seconds": round(single, 5),
                         "single_query_bytes_per_second": round(database.nbytes / single)})
            print(rows[-1], flush=True)
    return rows


def multi_index_hashing(size: int, queries_count: int, rng: np.random.Generator) -> list[dict]:
    """MIH with 1 bit flip probed per substring (hashkit's default) and with none, against the
    exact scan, on one database and one query set."""
    database = clustered_codes(size, 64, rng)
    queries = noisy_queries(database, queries_count, rng)
    chunks = [database[s:s + (1 << 22)] for s in range(0, size, 1 << 22)]
    build_seconds, mih = timed(build_index, INDEXES["mih"], database)
    exact = {k: timed(knn_scan, chunks, queries, k) for k in (1, 10, 100)}
    exact_radius = timed(radius_search, chunks, queries, 2)
    rows = []
    for flips in (1, 0):
        tune(mih, INDEXES["mih"], {"nflip": flips})
        for k, (exact_seconds, (exact_d, _)) in exact.items():
            mih_seconds, (mih_d, _) = timed(knn, mih, queries, k)
            # found: an approximate result at a distance no greater than the exact one, rank by rank
            recall = float(np.mean(np.where(mih_d >= 0, mih_d <= exact_d, False)))
            rows.append(_mih_row(f"k={k}", flips, size, queries_count, exact_seconds, mih_seconds, recall,
                                 build_seconds))
        mih_seconds, (_, _, mih_ids) = timed(radius_search, mih, queries, 2)
        recall = len(mih_ids) / max(1, len(exact_radius[1][2]))  # MIH's radius results are never extra
        rows.append(_mih_row("radius=2", flips, size, queries_count, exact_radius[0], mih_seconds, recall,
                             build_seconds))
    return rows


def _mih_row(search: str, flips: int, size: int, queries: int, exact_seconds: float, mih_seconds: float,
             recall: float, build_seconds: float) -> dict:
    row = {"search": search, "nflip": flips, "codes": size, "bits": 64, "queries": queries,
           "exact_seconds": round(exact_seconds, 3), "mih_seconds": round(mih_seconds, 3),
           "speedup": round(exact_seconds / mih_seconds, 1), "recall": round(recall, 4),
           "mih_build_seconds": round(build_seconds, 2)}
    print(row, flush=True)
    return row


def write_store(path: Path, codes: np.ndarray, paths: list[str]) -> None:
    meta = StoreMeta(codes.shape[1] * 8, "synthetic", "0" * 64, "none", "benchmark")
    with CodeStoreWriter(path, meta) as store:
        for start in range(0, len(codes), 1_000_000):
            store.append(codes[start:start + 1_000_000], paths[start:start + 1_000_000])


# Started from a small launcher: Linux counts the memory of the process a child was forked from
# (this large one) into the child's peak.
_LAUNCHER = ("import os, subprocess, sys; child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
             "_, status, usage = os.wait4(child.pid, 0); print(status, usage.ru_maxrss)")


def run_measured(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak resident memory (bytes) of ``command`` run as a child process."""
    started = time.perf_counter()
    status, peak_kib = map(int, subprocess.run([sys.executable, "-c", _LAUNCHER, *command], check=True,
                                               capture_output=True, text=True).stdout.split())
    if status:
        raise RuntimeError(f"{' '.join(command)} failed: status {status}")
    return time.perf_counter() - started, peak_kib * 1024


def query_cli_at_scale(size: int, queries_count: int, rng: np.random.Generator, folder: Path) -> list[dict]:
    """``hashkit query`` itself, as its own process, on code stores on disk: the database streamed
    from HDF5. Half the queries are database images (their own row is found and left out)."""
    database = clustered_codes(size, 64, rng)
    queries = noisy_queries(database, queries_count, rng)
    paths = [f"photos/{row // 10_000:04d}/{row:08d}.jpg" for row in range(size)]
    own = rng.choice(size, queries_count // 2, replace=False)
    query_paths = [paths[row] for row in own] + [f"queries/{i:05d}.jpg" for i in range(queries_count - len(own))]
    folder.mkdir(parents=True, exist_ok=True)
    db_store, query_store = folder / "db.h5", folder / "queries.h5"
    for path in (db_store, query_store):
        path.unlink(missing_ok=True)
    write_store(db_store, database, paths)
    write_store(query_store, queries, query_paths)
    del database, paths
    rows = []
    for search, extra in (("k=10", ["-k", "10"]), ("radius=2", ["--radius", "2"])):
        output = folder / "results.h5"
        seconds, peak = run_measured([sys.executable, "-m", "hashkit.cli.main", "query", "--db", str(db_store),
                                      "--queries", str(query_store), "-o", str(output), "--overwrite", *extra])
        with h5py.File(output, "r") as f:
            results = int((f["ids"][:] >= 0).sum())
        rows.append({"search": search, "codes": size, "bits": 64, "queries": queries_count,
                     "seconds": round(seconds, 1), "peak_memory_bytes": peak, "results": results,
                     "database_store_bytes": db_store.stat().st_size})
        print(rows[-1], flush=True)
    for path in (db_store, query_store, folder / "results.h5"):
        path.unlink()
    return rows


def reference_map(database: np.ndarray, db_labels: np.ndarray, queries: np.ndarray,
                  query_labels: np.ndarray) -> float:
    """mAP the way public hashing code computes it (with a stable sort for identical ties)."""
    bits = database.shape[1] * 8
    db_signs = np.unpackbits(database, axis=1).astype(np.float32) * 2 - 1
    query_signs = np.unpackbits(queries, axis=1).astype(np.float32) * 2 - 1
    aps = []
    for q in range(len(queries)):
        hamming = 0.5 * (bits - db_signs @ query_signs[q])
        order = np.argsort(hamming, kind="stable")
        relevant = (db_labels[order] @ query_labels[q]) > 0
        total = relevant.sum()
        if total == 0:
            continue
        ranks = np.flatnonzero(relevant) + 1.0
        aps.append(np.mean(np.arange(1, total + 1) / ranks))
    return float(np.mean(aps))


def evaluation_speed(rng: np.random.Generator) -> dict:
    classes = rng.integers(0, 10, 60_000 + 10_000)
    centres = rng.integers(0, 256, (10, 8), dtype=np.uint8)
    noise = np.packbits(rng.random((len(classes), 64)) < 0.2, axis=1)
    codes = centres[classes] ^ noise
    onehot = np.eye(10, dtype=bool)[classes]
    database, queries = codes[:60_000], codes[60_000:]
    ours_seconds, ours = timed(evaluate, database, onehot[:60_000], queries, onehot[60_000:], 100)
    relevance = LabelRelevance(onehot[:60_000], onehot[60_000:])
    one_thread_seconds, one_thread = timed(evaluate_relevance, database, queries, relevance, 100, 1)
    reference_seconds, reference = timed(reference_map, database, onehot[:60_000].astype(np.float32), queries,
                                         onehot[60_000:].astype(np.float32))
    row = {"queries": 10_000, "codes": 60_000, "bits": 64, "hashkit_seconds": round(ours_seconds, 2),
           "hashkit_threads": faiss.omp_get_max_threads(), "hashkit_one_thread_seconds": round(one_thread_seconds, 2),
           "one_thread_speedup": round(reference_seconds / one_thread_seconds, 1),
           "reference_seconds": round(reference_seconds, 2), "speedup": round(reference_seconds / ours_seconds, 1),
           "hashkit_mAP": ours.mean_ap, "reference_mAP": round(reference, 6),
           "identical": abs(ours.mean_ap - reference) < 1e-6 and ours.as_dict() == one_thread.as_dict()}
    print(row, flush=True)
    return row


def write_markdown(path: Path, report: dict) -> None:
    bandwidth = report["memory_bandwidth_bytes_per_second"]
    lines = ["# Search and evaluation speed", "",
             f"Produced by `make bench-search` (`python benchmarks/search.py`); seed {SEED}; {report['cores']} CPU "
             f"cores; FAISS {faiss.__version__}. Memory bandwidth measured here: {bandwidth / 1e9:.1f} GB/s "
             "(1 GiB NumPy copy, read + write).", "",
             "## Exhaustive k-nearest-neighbour search (k = 10)", "",
             "| codes | bits | queries | hashkit s | FAISS direct s | hashkit / FAISS | NumPy s (extrap.) | "
             "NumPy / hashkit | same distances | one query: GB/s scanned | share of bandwidth |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["knn"]:
        scanned = r["single_query_bytes_per_second"]
        lines.append(f"| {r['codes']:,} | {r['bits']} | {r['queries']:,} | {r['hashkit_seconds']} | "
                     f"{r['faiss_seconds']} | {r['hashkit_vs_faiss']} | {r['numpy_seconds_extrapolated']} | "
                     f"{r['numpy_vs_hashkit']} | {r['same_distances_as_faiss']} | {scanned / 1e9:.2f} | "
                     f"{scanned / bandwidth:.2f} |")
    lines += ["", "## Multi-index hashing against the exact scan (10M codes, 64 bits)", "",
              "4 substrings of 16 bits; `nflip` = bit flips probed around each substring's bucket "
              "(`--index-param nflip=N`, default 1).", "",
              "| search | nflip | queries | exact s | MIH s | speed-up | recall | MIH build s |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['search']} | {r.get('nflip', 1)} | {r['queries']:,} | {r['exact_seconds']} | {r['mih_seconds']} | "
              f"{r['speedup']} | {r['recall']} | {r['mih_build_seconds']} |" for r in report["mih"]]
    if "query_cli" in report:
        lines += ["", "## `hashkit query` on code stores on disk (10M codes, 64 bits)", "",
                  "The command itself, as its own process: the database store is read from HDF5 in chunks of "
                  "codes, and only the paths of result rows are read. Half the queries are database images, "
                  "whose own row is found among the paths and left out.", "",
                  "| search | codes | queries | wall s | peak memory MiB | results | database store MiB |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['search']} | {r['codes']:,} | {r['queries']:,} | {r['seconds']} | "
                  f"{r['peak_memory_bytes'] / 2**20:.0f} | {r['results']:,} | {r['database_store_bytes'] / 2**20:.0f} |"
                  for r in report["query_cli"]]
    e = report["evaluation"]
    lines += ["", "## mAP over the whole database", "",
              f"{e['queries']:,} queries x {e['codes']:,} codes ({e['bits']} bits): "
              f"hashkit {e['hashkit_seconds']} s on "
              f"{e.get('hashkit_threads', 1)} threads ({e.get('hashkit_one_thread_seconds', '-')} s on one), "
              f"straightforward NumPy {e['reference_seconds']} s: {e['speedup']}x faster "
              f"({e.get('one_thread_speedup', '-')}x on one thread); mAP {e['hashkit_mAP']} vs "
              f"{e['reference_mAP']} (identical: {e['identical']}). The time includes every other metric "
              "(tie-aware, curves, radius 2), computed in the same pass.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--only", nargs="+", choices=["knn", "mih", "query_cli", "evaluation"],
                        help="run these sections; the others' results in search.json are kept")
    parser.add_argument("--markdown-only", action="store_true")
    parser.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / "data" / "search",
                        help="folder for the query_cli section's stores (about 1 GB while it runs)")
    args = parser.parse_args()
    saved = args.results / "search.json"
    if not args.markdown_only:
        rng = np.random.default_rng(SEED)
        sections = {"knn": lambda: knn_throughput(tuple(args.sizes), (64, 128), args.queries, rng),
                    "query_cli": lambda: query_cli_at_scale(max(args.sizes), args.queries, rng, args.work),
                    "mih": lambda: multi_index_hashing(max(args.sizes), args.queries, rng),
                    "evaluation": lambda: evaluation_speed(rng)}
        report = json.loads(saved.read_text()) if saved.exists() else {}
        report["cores"] = faiss.omp_get_max_threads()
        if "knn" in (args.only or sections):  # the bandwidth the knn table compares with
            report["memory_bandwidth_bytes_per_second"] = round(memory_bandwidth())
        for name in args.only or list(sections):
            report[name] = sections[name]()
        args.results.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(report, indent=2))
    write_markdown(args.results / "search.md", json.loads(saved.read_text()))
    print((args.results / "search.md").read_text())


if __name__ == "__main__":
    main()
