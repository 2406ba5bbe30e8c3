"""FAISS's binary indexes: approximate (they may miss true neighbours), built over every code in
memory, and saveable beside their store (``saved_index``)."""

from __future__ import annotations

from abc import abstractmethod

import faiss
import numpy as np

from hashkit.hashing.errors import UserError

from .base import Database, SearchIndex, by_query, ordered, register


class FaissIndex(SearchIndex):
    """A FAISS ``IndexBinary``, in hashkit's tie order."""

    exact = False
    saveable = True

    def __init__(self, index: faiss.IndexBinary):
        self.index = index

    @staticmethod
    @abstractmethod
    def new_index(bits: int, rows: int) -> faiss.IndexBinary:
        """An empty FAISS index for ``rows`` codes of ``bits`` bits, its search settings at their defaults."""

    @classmethod
    def memory_needed(cls, rows: int, bits: int) -> int:
        return rows * bits // 8  # the codes it holds (its own structures come on top)

    @classmethod
    def build(cls, database: Database) -> FaissIndex:
        codes = np.ascontiguousarray(database.codes())
        index = cls.new_index(database.bits, database.count)
        if not index.is_trained:
            index.train(codes)
        index.add(codes)
        return cls(index)

    def knn(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        distances, ids = self.index.search(np.ascontiguousarray(queries), min(k, self.index.ntotal))
        return ordered(distances, ids, k)

    def radius(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries)
        limits, distances, ids = self.index.range_search(queries, radius + 1)  # FAISS: distance < its radius
        query_of = np.repeat(np.arange(len(queries)), np.diff(limits.astype(np.int64)))
        return by_query(len(queries), query_of, ids, distances)

    def tune(self, params: dict[str, object]) -> None:
        """Set search-time parameters (``nflip``, ``nprobe``, ``efSearch``) within the values that mean
        something for this index: bit flips up to a substring's length, probes up to its lists, a
        search list up to its codes (FAISS refuses some others, and runs unboundedly long on others)."""
        for key, value in params.items():
            if key not in self.search_params:
                allowed = ", ".join(self.search_params) or "none"
                raise UserError(f"index {self.name} has no search parameter {key!r} (it has: {allowed})")
            low, high = self._param_range(key)
            if not isinstance(value, int) or not low <= value <= high:
                raise UserError(f"--index-param {key} must be a whole number from {low} to {high} for this "
                                f"{self.name} index, got {value!r}")
            setattr(self.index.hnsw if key == "efSearch" else self.index, key, value)

    def _param_range(self, key: str) -> tuple[int, int]:
        if key == "nflip":
            return 0, self.index.b
        if key == "nprobe":
            return 1, self.index.nlist
        return 1, max(self.index.ntotal, 1)  # efSearch

    def to_bytes(self) -> bytes:
        return faiss.serialize_index_binary(self.index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> FaissIndex:
        return cls(faiss.deserialize_index_binary(np.frombuffer(data, np.uint8)))


@register
class FaissMultiHash(FaissIndex):
    name = "faiss-mih"
    description = "FAISS IndexBinaryMultiHash: bits/16 substrings, buckets within nflip flips probed, default 1"
    search_params = ("nflip",)

    @staticmethod
    def new_index(bits: int, rows: int) -> faiss.IndexBinary:
        substrings = max(1, bits // 16)
        index = faiss.IndexBinaryMultiHash(bits, substrings, bits // substrings)
        index.nflip = 1  # probe each substring's bucket and those one bit flip away
        return index


@register
class FaissHash(FaissIndex):
    name = "hash"
    description = "FAISS IndexBinaryHash of the first 24 bits, buckets within nflip flips probed, default 1"
    search_params = ("nflip",)

    @staticmethod
    def new_index(bits: int, rows: int) -> faiss.IndexBinary:
        index = faiss.IndexBinaryHash(bits, min(bits, 24))
        index.nflip = 1
        return index


@register
class FaissIVF(FaissIndex):
    name = "ivf"
    description = "FAISS IndexBinaryIVF: 4 sqrt(N) lists, nprobe probed, default a 32nd of them"
    search_params = ("nprobe",)

    @staticmethod
    def new_index(bits: int, rows: int) -> faiss.IndexBinary:
        lists = int(max(1, min(65536, 4 * np.sqrt(rows), rows)))  # k-means needs at least a code per list
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, lists)
        index.nprobe = max(1, lists // 32)
        return index


@register
class FaissHNSW(FaissIndex):
    name = "hnsw"
    description = "FAISS IndexBinaryHNSW graph: 32 links, efSearch default 128; no radius search"
    search_params = ("efSearch",)
    searches_radius = False  # FAISS has no range search on a graph

    def radius(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise self.no_radius_search()

    @staticmethod
    def new_index(bits: int, rows: int) -> faiss.IndexBinary:
        index = faiss.IndexBinaryHNSW(bits, 32)
        index.hnsw.efSearch = 128
        return index
