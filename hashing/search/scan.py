"""The exact scan (``flat``): every database code compared with every query by compiled kernels,
the database arriving in chunks of rows.

Each query keeps only its best k (``kernels.knn_update``), so no queries x database matrix is
ever built and the chunks can come from disk one at a time (``hashkit query`` reads them from the
store as it scans).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .base import Database, SearchIndex, by_query, ordered, register

CHUNK_ROWS = 1 << 22  # database rows scanned at a time by the exact search (32 MiB of 64-bit codes)


@register
class ExactScan(SearchIndex):
    name = "flat"
    exact = True
    description = "every code compared, streamed from the store"

    def __init__(self, database: Database):
        self.database = database

    @classmethod
    def build(cls, database: Database) -> ExactScan:
        return cls(database)

    def knn(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return knn_scan(self.database.chunks(), queries, k)

    def radius(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return radius_scan(self.database.chunks(), queries, radius)


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
                best_d, best_i = ordered(np.concatenate([best_d, *(d for d, _ in found)], 1),
                                          np.concatenate([best_i, *(i for _, i in found)], 1), k)
            offset += len(chunk)
    return ordered(best_d, best_i, k)


def radius_scan(chunks: Iterable[np.ndarray], queries: np.ndarray, radius: int,
                threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every database row within Hamming distance ``radius`` (inclusive) of each query, over rows
    arriving in ``chunks``, as ``SearchIndex.radius`` returns them. The compiled kernel
    (``kernels.within_radius``) runs on ``threads`` threads, each on its share of the queries, or
    with fewer queries than threads, of every chunk's rows."""
    queries = np.ascontiguousarray(queries)
    from .kernels import as_columns, as_words, within_radius  # numba: only for a scan

    query_words, threads = as_words(queries), threads or cpu_cores()
    found, offset = [], 0
    with ThreadPoolExecutor(threads) as pool:  # the kernel releases the GIL
        for chunk in chunks:
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
    return by_query(len(queries), query_of, ids, distances)


def even_parts(total: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` (start, stop) ranges splitting 0..``total`` as evenly as they can (some may be empty)."""
    bounds = np.linspace(0, total, parts + 1).astype(int)
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def cpu_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
