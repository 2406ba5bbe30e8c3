"""Exact Hamming k-nearest-neighbour search through FAISS's binary flat index."""

from __future__ import annotations

import faiss
import numpy as np


def hamming_knn(database: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest database rows of each query by Hamming distance.

    Both inputs are packed codes (N, bits / 8). Returns distances (Q, k) int32 and row ids
    (Q, k) int64, nearest first; when the database has fewer than ``k`` rows, the tail is
    padded with id -1 and distance -1.
    """
    bits = database.shape[1] * 8
    index = faiss.IndexBinaryFlat(bits)
    index.add(np.ascontiguousarray(database))
    distances, ids = index.search(np.ascontiguousarray(queries), k)
    missing = ids < 0
    distances = distances.astype(np.int32)
    distances[missing] = -1
    return distances, ids


def hamming_distances(database: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The full (Q, N) matrix of Hamming distances (for evaluation over the whole database)."""
    return np.bitwise_count(queries[:, None, :] ^ database[None, :, :]).sum(axis=2, dtype=np.int32)
