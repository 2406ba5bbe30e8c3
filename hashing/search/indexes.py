"""Hamming search, k nearest neighbours and radius: the exact scan, and indexes by name.

The exact scan (``flat``: the compiled kernel of ``kernels.knn_update``) takes the database as
chunks of rows and keeps only each query's best k, so no queries x database matrix is ever built
and the chunks come from disk one at a time (``hashkit query`` reads them from the store as it
scans). ``mih`` (``mih.MultiIndex``) gives the same k nearest by multi-index hashing, over every
code in memory. FAISS's binary indexes are available by name; they are approximate (they may miss
true neighbours) and are built over the whole database, in memory.

Tie order (every index): results are sorted by Hamming distance, then by database row, lowest
first. For the exact scan this is the complete ranking: among rows at the same distance as the
k-th neighbour, the lowest rows are the ones kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import faiss
import numpy as np

from hashkit.hashing.errors import UserError

CHUNK_ROWS = 1 << 22  # database rows scanned at a time by the exact search (32 MiB of 64-bit codes)
_ID_BITS = 40  # sort key = distance << 40 | row: rows below 2^40, distances below 2^23


@dataclass(frozen=True)
class IndexKind:
    name: str
    exact: bool
    description: str
    build: Callable[[int, int], faiss.IndexBinary] | None  # (bits, database rows) -> empty FAISS index
    search_params: tuple[str, ...] = ()  # search-time settings a query may change (--index-param)


def _multi_hash(bits: int, rows: int) -> faiss.IndexBinary:
    substrings = max(1, bits // 16)
    index = faiss.IndexBinaryMultiHash(bits, substrings, bits // substrings)
    index.nflip = 1  # probe each substring's bucket and those one bit flip away
    return index


def _hash(bits: int, rows: int) -> faiss.IndexBinary:
    index = faiss.IndexBinaryHash(bits, min(bits, 24))
    index.nflip = 1
    return index


def _ivf(bits: int, rows: int) -> faiss.IndexBinary:
    lists = int(max(1, min(65536, 4 * np.sqrt(rows), rows)))  # k-means needs at least a code per list
    index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, lists)
    index.nprobe = max(1, lists // 32)
    return index


def _hnsw(bits: int, rows: int) -> faiss.IndexBinary:
    index = faiss.IndexBinaryHNSW(bits, 32)
    index.hnsw.efSearch = 128
    return index


INDEXES = {kind.name: kind for kind in (
    IndexKind("flat", True, "exact scan (compiled kernels, kernels.knn_update and within_radius), streamed "
              "over the database", lambda bits, rows: faiss.IndexBinaryFlat(bits)),
    IndexKind("mih", True, "exact multi-index hashing (mih.MultiIndex), built in memory at query time, for "
              "the k nearest and radius searches", None),
    IndexKind("multihash", False, "approximate multi-index hashing (FAISS IndexBinaryMultiHash): bits/16 "
              "substrings of 16 bits, buckets within nflip (1) flips probed", _multi_hash, ("nflip",)),
    IndexKind("hash", False, "hash of the first 24 bits (FAISS IndexBinaryHash), buckets within nflip (1) "
              "flips probed", _hash, ("nflip",)),
    IndexKind("ivf", False, "inverted file (FAISS IndexBinaryIVF): 4 sqrt(N) lists (at most N), nprobe (1/32 of them) "
              "probed", _ivf, ("nprobe",)),
    IndexKind("hnsw", False, "HNSW graph (FAISS IndexBinaryHNSW): 32 links, efSearch 128", _hnsw, ("efSearch",)),
)}


def index_kind(name: str) -> IndexKind:
    if name not in INDEXES:
        raise UserError(f"unknown index {name!r}; choose one of {', '.join(INDEXES)}")
    return INDEXES[name]


def tune(index: faiss.IndexBinary, kind: IndexKind, params: dict[str, object]) -> None:
    """Set search-time parameters (``nflip``, ``nprobe``, ``efSearch``) on a built index."""
    for key, value in params.items():
        if key not in kind.search_params:
            allowed = ", ".join(kind.search_params) or "none"
            raise UserError(f"index {kind.name} has no search parameter {key!r} (it has: {allowed})")
        low, high = _search_param_range(index, key)
        if not isinstance(value, int) or not low <= value <= high:
            raise UserError(f"--index-param {key} must be a whole number from {low} to {high} for this "
                            f"{kind.name} index, got {value!r}")
        setattr(index.hnsw if key == "efSearch" else index, key, value)


def _search_param_range(index: faiss.IndexBinary, key: str) -> tuple[int, int]:
    """The values of search parameter ``key`` that mean something for ``index``: bit flips up to a
    substring's length, probes up to its lists, a search list up to its codes (FAISS refuses some
    others, and runs unboundedly long on others)."""
    if key == "nflip":
        return 0, index.b
    if key == "nprobe":
        return 1, index.nlist
    return 1, max(index.ntotal, 1)  # efSearch


def build_index(kind: IndexKind, codes: np.ndarray) -> faiss.IndexBinary:
    """``kind``'s index over ``codes`` (packed, (N, bits / 8)), trained when it needs training."""
    index = kind.build(codes.shape[1] * 8, len(codes))
    codes = np.ascontiguousarray(codes)
    if not index.is_trained:
        index.train(codes)
    index.add(codes)
    return index


def _sort_key(distances: np.ndarray, ids: np.ndarray) -> np.ndarray:
    key = (distances.astype(np.int64) << _ID_BITS) | np.maximum(ids, 0)
    return np.where(ids < 0, np.iinfo(np.int64).max, key)


def _ordered(distances: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best (distance, id) pairs by (distance, id); missing entries (id -1) last,
    padded to k columns with distance -1 and id -1."""
    order = np.argsort(_sort_key(distances, ids), axis=1, kind="stable")[:, :k]
    distances = np.take_along_axis(distances, order, axis=1).astype(np.int32)
    ids = np.take_along_axis(ids, order, axis=1)
    if ids.shape[1] < k:
        pad = ((0, 0), (0, k - ids.shape[1]))
        distances, ids = np.pad(distances, pad, constant_values=-1), np.pad(ids, pad, constant_values=-1)
    distances[ids < 0] = -1
    return distances, ids


def knn_scan(chunks: Iterable[np.ndarray], queries: np.ndarray, k: int,
             threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of ``queries`` over database rows arriving in ``chunks`` (packed
    codes, in row order). Returns distances (Q, k) int32 and rows (Q, k) int64; -1 pads.

    The compiled kernel (``kernels.knn_update``) runs on ``threads`` threads (default: every
    core), each on its share of the queries, or with fewer queries than threads, each on its share
    of every chunk's rows."""
    from .kernels import as_columns, as_words, empty_lists, knn_update  # numba: only for a scan

    query_words = as_words(queries)
    threads = threads or cpu_cores()
    best_d, best_i = empty_lists(len(queries), k)
    offset = 0
    with ThreadPoolExecutor(threads) as pool:  # the kernel releases the GIL
        for chunk in chunks:
            if len(queries) >= threads:
                columns = as_columns(chunk)
                list(pool.map(lambda part: knn_update(columns, query_words, offset, best_d, best_i, *part),
                              even_parts(len(queries), threads)))
            else:
                def rows(part: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
                    d, i = empty_lists(len(queries), k)
                    knn_update(as_columns(chunk[part[0]:part[1]]), query_words, offset + part[0], d, i,
                               0, len(queries))
                    return d, i

                found = list(pool.map(rows, even_parts(len(chunk), threads)))
                best_d, best_i = _ordered(np.concatenate([best_d, *(d for d, _ in found)], 1),
                                          np.concatenate([best_i, *(i for _, i in found)], 1), k)
            offset += len(chunk)
    return _ordered(best_d, best_i, k)


def knn(index: faiss.IndexBinary, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours through a built index, in the documented tie order."""
    distances, ids = index.search(np.ascontiguousarray(queries), min(k, index.ntotal))
    return _ordered(distances, ids, k)


def radius_search(index_or_chunks: faiss.IndexBinary | Iterable[np.ndarray], queries: np.ndarray,
                  radius: int, threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every database row within Hamming distance ``radius`` (inclusive) of each query.

    Accepts a built index, or chunks of codes for the exact scan (``kernels.within_radius`` on
    ``threads`` threads, each on its share of the queries, or with fewer queries than threads, of
    every chunk's rows). Returns ``offsets`` (Q + 1), and ``distances`` and ``ids``: query q's
    results are ``[offsets[q]:offsets[q + 1]]``, sorted by distance then row.
    """
    queries = np.ascontiguousarray(queries)
    if isinstance(index_or_chunks, faiss.IndexBinary):
        limits, distances, ids = index_or_chunks.range_search(queries, radius + 1)  # FAISS: distance < its radius
        query_of = np.repeat(np.arange(len(queries)), np.diff(limits.astype(np.int64)))
        return _by_query(len(queries), query_of, ids, distances)
    from .kernels import as_columns, as_words, within_radius  # numba: only for a scan

    query_words, threads = as_words(queries), threads or cpu_cores()
    found, offset = [], 0
    with ThreadPoolExecutor(threads) as pool:  # the kernel releases the GIL
        for chunk in index_or_chunks:
            if len(queries) >= threads:
                columns = as_columns(chunk)
                found += pool.map(lambda part: within_radius(columns, query_words, offset, radius, *part),
                                  even_parts(len(queries), threads))
            else:
                found += pool.map(lambda part: within_radius(as_columns(chunk[part[0]:part[1]]), query_words,
                                                             offset + part[0], radius, 0, len(queries)),
                                  even_parts(len(chunk), threads))
            offset += len(chunk)
    query_of, ids, distances = (np.concatenate([np.empty(0, np.int64), *arrays]) for arrays in zip(*found))
    return _by_query(len(queries), query_of, ids, distances)


def _by_query(count: int, query_of: np.ndarray, ids: np.ndarray,
              distances: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Results (of queries ``query_of``) as ``radius_search`` returns them: offsets (count + 1), and
    distances and ids ordered by query, distance, then row."""
    order = np.lexsort((ids, distances, query_of))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(query_of, minlength=count))])
    return offsets.astype(np.int64), distances[order].astype(np.int32), ids[order].astype(np.int64)


def even_parts(total: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` (start, stop) ranges splitting 0..``total`` as evenly as they can (some may be empty)."""
    bounds = np.linspace(0, total, parts + 1).astype(int)
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def cpu_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
