"""Hamming search: the chunked exact scan, radius search and the FAISS indexes by name, against a
brute-force reference, and through ``hashkit query``."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from hashkit.hashing.files.pairs_file import read_pairs
from hashkit.hashing.search.base import Database, indexes
from hashkit.hashing.search.kernels import as_columns, as_words, distance_matrix
from hashkit.hashing.search.scan import knn_scan, radius_scan

from .helpers import assert_one_line_error, hamming_distances, run_cli


def reference_ranking(database: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every row ordered by (distance, row): the documented tie order, by plain sorting."""
    distances = hamming_distances(database, query[None])[0]
    order = np.lexsort((np.arange(len(database)), distances))
    return distances[order], order


@pytest.mark.parametrize("chunk", [7, 64, 1000])
@pytest.mark.parametrize("threads", [1, 30])  # 30 threads for 25 queries: each chunk split among threads
def test_chunked_scan_is_the_exact_ranking_with_ties_by_row(chunk, threads):
    rng = np.random.default_rng(chunk)
    database = rng.integers(0, 256, (300, 1), dtype=np.uint8)  # 8-bit codes: ties everywhere
    queries = rng.integers(0, 256, (25, 1), dtype=np.uint8)
    chunks = [database[s:s + chunk] for s in range(0, len(database), chunk)]
    distances, ids = knn_scan(chunks, queries, k=40, threads=threads)
    for q in range(len(queries)):
        ref_d, ref_i = reference_ranking(database, queries[q])
        assert ids[q].tolist() == ref_i[:40].tolist() and distances[q].tolist() == ref_d[:40].tolist()


@pytest.mark.parametrize("code_bytes", [2, 8, 12, 16, 32])  # words of 64 bits: part of one, one, 1.5, 2, 4
@pytest.mark.parametrize("threads", [1, 2, 40])
def test_scan_kernel_matches_the_reference_at_every_code_length(code_bytes, threads):
    rng = np.random.default_rng(code_bytes)
    centres = rng.integers(0, 256, (8, code_bytes), dtype=np.uint8)  # clustered: small distances and ties
    noise = rng.random((5000, code_bytes * 8)) < 0.05
    database = centres[rng.integers(0, 8, 5000)] ^ np.packbits(noise, axis=1)
    queries = np.concatenate([database[:20], rng.integers(0, 256, (13, code_bytes), dtype=np.uint8)])
    chunks = [database[s:s + 2500] for s in range(0, 5000, 2500)]
    distances, ids = knn_scan(chunks, queries, k=25, threads=threads)
    for q in range(len(queries)):
        ref_d, ref_i = reference_ranking(database, queries[q])
        assert ids[q].tolist() == ref_i[:25].tolist() and distances[q].tolist() == ref_d[:25].tolist()


def test_scan_pads_with_minus_one_beyond_the_database():
    database = np.arange(6, dtype=np.uint8)[:, None]
    distances, ids = knn_scan([database[:4], database[4:]], database[:3], k=8, threads=2)
    assert (ids[:, 6:] == -1).all() and (distances[:, 6:] == -1).all()
    assert sorted(ids[0, :6].tolist()) == list(range(6)) and ids[0, 0] == 0


def test_distance_matrix_kernel_matches_the_reference():
    rng = np.random.default_rng(3)
    for code_bytes in (1, 8, 12, 32):
        database = rng.integers(0, 256, (300, code_bytes), dtype=np.uint8)
        queries = rng.integers(0, 256, (7, code_bytes), dtype=np.uint8)
        assert np.array_equal(distance_matrix(as_columns(database), as_words(queries)),
                              hamming_distances(database, queries))


@pytest.mark.parametrize("code_bytes, radius", [(2, 5), (8, 26), (12, 42), (16, 58)])
@pytest.mark.parametrize("query_count", [1, 30])  # one query: the threads split each chunk's rows
def test_radius_search_returns_exactly_the_codes_within_the_radius(code_bytes, radius, query_count):
    rng = np.random.default_rng(code_bytes)
    database = rng.integers(0, 256, (3000, code_bytes), dtype=np.uint8)
    queries = rng.integers(0, 256, (query_count, code_bytes), dtype=np.uint8)
    offsets, distances, ids = radius_scan([database[:123], database[123:]], queries, radius=radius, threads=3)
    assert offsets[-1] > 1024 or query_count == 1  # the kernel's first 1,024 places outgrown
    for q in range(len(queries)):
        ref_d, ref_i = reference_ranking(database, queries[q])
        within = ref_d <= radius
        assert ids[offsets[q]:offsets[q + 1]].tolist() == ref_i[within].tolist()
        assert distances[offsets[q]:offsets[q + 1]].tolist() == ref_d[within].tolist()


@pytest.mark.parametrize("name", [name for name, kind in indexes().items() if not kind.exact])
def test_approximate_indexes_find_near_duplicates(name):
    rng = np.random.default_rng(2)
    database = rng.integers(0, 256, (5000, 8), dtype=np.uint8)
    queries = database[:50].copy()
    queries[:, 0] ^= 1  # one bit away from their source row
    distances, ids = indexes()[name].build(Database.in_memory(database)).knn(queries, 5)
    assert (ids[:, 0] == np.arange(50)).mean() >= 0.9, f"{name} recall@1"
    assert (distances[:, 0][ids[:, 0] == np.arange(50)] == 1).all()
    valid = ids >= 0
    assert np.all(np.diff(np.where(valid, distances, 10**6), axis=1) >= 0), "sorted by distance"


def test_query_cli_radius_and_index(work_dir, tmp_path):
    model = tmp_path / "lsh.pt"
    assert run_cli("train", "--pairs", work_dir / "pairs.h5", "-o", model, "--method", "lsh", "--bits", "32",
                   "--image-size", "64", "--workers", "0").exit_code == 0
    store = tmp_path / "codes.h5"
    photos = read_pairs(work_dir / "pairs.h5").absolute_paths()
    assert run_cli("encode", model, *photos, "-o", store, "--workers", "0").exit_code == 0
    result = run_cli("query", "--db", store, "--queries", store, "-o", tmp_path / "r.h5", "--radius", "8")
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "r.h5") as f, h5py.File(store) as s:
        codes = s["codes"][:]
        offsets, ids, distances = f["offsets"][:], f["ids"][:], f["distances"][:]
        assert f.attrs["layout"] == "radius" and f.attrs["radius"] == 8 and f.attrs["exact"]
        for q in range(len(codes)):
            ref_d, ref_i = reference_ranking(codes, codes[q])
            keep = (ref_d <= 8) & (ref_i != q)  # its own row is left out
            assert ids[offsets[q]:offsets[q + 1]].tolist() == ref_i[keep].tolist()
            assert distances[offsets[q]:offsets[q + 1]].tolist() == ref_d[keep].tolist()
    exact = run_cli("query", "--db", store, "--queries", store, "-o", tmp_path / "rm.h5", "--radius", "8",
                    "--index", "mih")
    assert exact.exit_code == 0, exact.output
    with h5py.File(tmp_path / "r.h5") as f, h5py.File(tmp_path / "rm.h5") as e:
        assert e.attrs["index"] == "mih" and e.attrs["exact"] and e.attrs["layout"] == "radius"
        assert all(np.array_equal(f[name][:], e[name][:]) for name in ("offsets", "ids", "distances", "paths"))
    result = run_cli("query", "--db", store, "--queries", store, "-o", tmp_path / "m.h5", "--index", "faiss-mih",
                     "-k", "3")
    assert result.exit_code == 0 and "approximate" in result.stdout
    with h5py.File(tmp_path / "m.h5") as f:
        assert f.attrs["index"] == "faiss-mih" and not f.attrs["exact"] and f["ids"].shape == (len(codes), 3)
    flat = run_cli("query", "--db", store, "--queries", store, "-o", tmp_path / "f.h5", "-k", "5")
    exact = run_cli("query", "--db", store, "--queries", store, "-o", tmp_path / "e.h5", "--index", "mih", "-k", "5")
    assert flat.exit_code == 0 and exact.exit_code == 0 and "approximate" not in exact.stdout, exact.output
    with h5py.File(tmp_path / "f.h5") as f, h5py.File(tmp_path / "e.h5") as e:
        assert e.attrs["index"] == "mih" and e.attrs["exact"]
        assert np.array_equal(f["ids"][:], e["ids"][:]) and np.array_equal(f["distances"][:], e["distances"][:])


def test_saved_index_is_reused_until_the_store_changes(work_dir, scene_set, tmp_path):
    model = tmp_path / "lsh.pt"
    assert run_cli("train", "--pairs", work_dir / "pairs.h5", "-o", model, "--method", "lsh", "--bits", "32",
                   "--image-size", "64", "--workers", "0").exit_code == 0
    photos = read_pairs(work_dir / "pairs.h5").absolute_paths()
    store = tmp_path / "codes.h5"
    assert run_cli("encode", model, *photos[:-3], "-o", store, "--workers", "0").exit_code == 0
    result = run_cli("index-build", "--db", store, "--index", "faiss-mih")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "codes.h5.faiss-mih.faiss").is_file() and (tmp_path / "codes.h5.faiss-mih.json").is_file()
    query = ["query", "--db", store, "--queries", store, "--index", "faiss-mih", "-k", "3", "--keep-self", "--json",
             "--overwrite"]
    first = json.loads(run_cli(*query, "-o", tmp_path / "a.h5").stdout)
    assert first["saved_index"] == "loaded"
    assert run_cli("encode", model, *photos[-3:], "-o", store, "--workers", "0").exit_code == 0  # the store grows
    second = json.loads(run_cli(*query, "-o", tmp_path / "b.h5").stdout)
    assert second["saved_index"] == "stale" and second["database"] == len(photos)
    with h5py.File(tmp_path / "b.h5") as f:
        assert (f["ids"][:, 0] == np.arange(len(photos))).all(), "each code finds itself, the new ones too"
    assert run_cli("index-build", "--db", store, "--index", "faiss-mih").exit_code == 0
    assert json.loads(run_cli(*query, "-o", tmp_path / "c.h5").stdout)["saved_index"] == "loaded"
    for exact in ("flat", "mih"):
        assert_one_line_error(run_cli("index-build", "--db", store, "--index", exact), "needs no saved index")


def test_index_params_tune_the_search_and_are_checked(work_dir, tmp_path):
    model = tmp_path / "lsh.pt"
    assert run_cli("train", "--pairs", work_dir / "pairs.h5", "-o", model, "--method", "lsh", "--bits", "32",
                   "--image-size", "64", "--workers", "0").exit_code == 0
    store = tmp_path / "codes.h5"
    assert run_cli("encode", model, *read_pairs(work_dir / "pairs.h5").absolute_paths(), "-o", store,
                   "--workers", "0").exit_code == 0
    base = ["query", "--db", store, "--queries", store, "-k", "3", "--keep-self", "--json"]
    result = run_cli(*base, "-o", tmp_path / "a.h5", "--index", "faiss-mih", "--index-param", "nflip=0")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["index_params"] == {"nflip": 0}
    with h5py.File(tmp_path / "a.h5") as f:
        assert (f["ids"][:, 0] == np.arange(len(f["ids"]))).all(), "exact matches need no flips"
    assert_one_line_error(run_cli(*base, "-o", tmp_path / "b.h5", "--index", "faiss-mih", "--index-param", "nprobe=3"),
                          "has no search parameter 'nprobe'")
    assert_one_line_error(run_cli(*base, "-o", tmp_path / "c.h5", "--index-param", "nflip=0"),
                          "index flat takes no --index-param")


@pytest.mark.parametrize("index", ["flat", "mih"])
def test_query_leaves_out_the_first_row_holding_a_querys_path_and_no_other(tmp_path, index):
    from hashkit.hashing.evaluation.query import query
    from hashkit.hashing.storage.store import CodeStoreWriter, StoreMeta

    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, (400, 4), dtype=np.uint8)
    paths = [f"db/{row:04d}.jpg" for row in range(400)]
    meta = StoreMeta(32, "synthetic", "0" * 64, "none", "test")
    for name, rows in (("a.h5", slice(0, 400)), ("b.h5", slice(0, 100))):  # b: copies of a's first 100 rows
        with CodeStoreWriter(tmp_path / name, meta) as store:
            store.append(codes[rows], paths[rows])
    queries = np.concatenate([codes[[5, 250]], rng.integers(0, 256, (1, 4), dtype=np.uint8)])
    with CodeStoreWriter(tmp_path / "q.h5", meta) as store:
        store.append(queries, [paths[5], paths[250], "elsewhere.jpg"])
    for k, radius in ((4, None), (4, 12)):
        query([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "q.h5", k, tmp_path / "r.h5", index=index,
              radius=radius, overwrite=True)
        with h5py.File(tmp_path / "r.h5") as f:
            ids = f["ids"][:] if radius is None else np.split(f["ids"][:], f["offsets"][1:-1])
        for q, own in enumerate([5, 250, None]):
            everything = np.concatenate([codes, codes[:100]])
            ref_d, ref_i = reference_ranking(everything, queries[q])
            kept = ref_i[(ref_i != own) & ((ref_d <= radius) if radius is not None else True)]
            expected = kept[:k] if radius is None else kept
            assert list(ids[q]) == expected.tolist(), (q, radius)
            if q == 0:  # row 5's copy in b (row 405), at distance 0, stays
                assert 405 in list(ids[q])
