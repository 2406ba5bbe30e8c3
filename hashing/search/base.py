"""The search-index interface and registry.

An index answers two questions over one database of packed codes (N, bits / 8): the k nearest
rows of each query (``knn``) and every row within a Hamming radius (``radius``). Each kind says
whether its answers are exact (the same rows as the streamed scan, ties included), how much memory
it holds beyond the database's streamed chunks (``memory_needed``, checked before it is built),
which search-time settings a query may change (``search_params``, through ``tune``), and whether
``hashkit index-build`` can save it beside its store (``saveable``: ``to_bytes``/``from_bytes``) and
whether it answers radius searches (``searches_radius``).

Tie order (every index): results are sorted by Hamming distance, then by database row, lowest
first. For an exact index this is the complete ranking: among rows at the same distance as the
k-th neighbour, the lowest rows are the ones kept.

An index registers itself with ``@register``; every module of this package is imported when the
registry is first read, so a new index is one new file here.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hashkit.hashing.errors import UserError

_ID_BITS = 40  # sort key = distance << 40 | row: rows below 2^40, distances below 2^23


@dataclass(frozen=True)
class Database:
    """The codes an index is built over: ``count`` rows of ``bits`` bits, all in memory
    (``codes()``) or in row order a chunk at a time (``chunks()``, which a store streams from disk)."""

    count: int
    bits: int
    codes: Callable[[], np.ndarray]
    chunks: Callable[[], Iterable[np.ndarray]]

    @classmethod
    def in_memory(cls, codes: np.ndarray) -> Database:
        codes = np.ascontiguousarray(codes)
        return cls(len(codes), codes.shape[1] * 8, lambda: codes, lambda: [codes])


class SearchIndex(ABC):
    """A built index over one ``Database``."""

    name: ClassVar[str]
    exact: ClassVar[bool]
    description: ClassVar[str]  # one line for ``--index``'s help
    saveable: ClassVar[bool] = False
    searches_radius: ClassVar[bool] = True  # whether ``radius`` is answered
    search_params: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def no_radius_search(cls) -> UserError:
        """The error for a radius search on a kind that does not answer one."""
        return UserError(f"index {cls.name} has no radius search; use flat or mih")

    @classmethod
    def memory_needed(cls, rows: int, bits: int) -> int:
        """Bytes the index holds over ``rows`` codes of ``bits`` bits, beyond the chunks it streams."""
        return 0

    @classmethod
    @abstractmethod
    def build(cls, database: Database) -> SearchIndex:
        """The index over ``database``."""

    @abstractmethod
    def knn(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest rows of each query: distances (Q, k) int32 and rows (Q, k) int64, in the tie
        order; -1 pads where fewer are found."""

    @abstractmethod
    def radius(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every row within Hamming distance ``radius`` (inclusive) of each query: ``offsets`` (Q + 1)
        int64, and ``distances`` int32 and ``ids`` int64, query q's at ``[offsets[q]:offsets[q + 1]]``
        in the tie order."""

    def tune(self, params: dict[str, object]) -> None:
        """Set search-time parameters; an error for any this kind does not have."""
        if params:
            raise UserError(f"index {self.name} takes no --index-param")

    def to_bytes(self) -> bytes:
        raise UserError(f"index {self.name} cannot be saved: it is built at query time")

    @classmethod
    def from_bytes(cls, data: bytes) -> SearchIndex:
        raise UserError(f"index {cls.name} cannot be saved: it is built at query time")


_REGISTRY: dict[str, type[SearchIndex]] = {}
RENAMED = {"multihash": "faiss-mih"}  # former name -> name


def register(cls: type[SearchIndex]) -> type[SearchIndex]:
    _REGISTRY[cls.name] = cls
    return cls


def indexes() -> dict[str, type[SearchIndex]]:
    """Every registered index by name, the exact ones first; the package's modules are imported on
    the first call."""
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")
    return dict(sorted(_REGISTRY.items(), key=lambda item: not item[1].exact))


def index_class(name: str) -> type[SearchIndex]:
    known = indexes()
    if name in RENAMED:
        raise UserError(f"index {name} is now called {RENAMED[name]}; a saved {name} index needs rebuilding "
                        f"(hashkit index-build --index {RENAMED[name]})")
    if name not in known:
        raise UserError(f"unknown index {name!r}; choose one of {', '.join(known)}")
    return known[name]


def index_choices(saveable: bool = False) -> str:
    """The registered indexes (the saveable ones only, with ``saveable``), each with its description,
    for ``--index``'s help."""
    chosen = [kind for kind in indexes().values() if kind.saveable or not saveable]
    groups = {"Exact": [kind for kind in chosen if kind.exact],
              "Approximate": [kind for kind in chosen if not kind.exact]}
    return ". ".join(f"{title}: " + "; ".join(f"{kind.name} ({kind.description})" for kind in kinds)
                     for title, kinds in groups.items() if kinds)


def index_params() -> str:
    """Each search-time setting and the indexes that have it, for ``--index-param``'s help."""
    params: dict[str, list[str]] = {}
    for kind in indexes().values():
        for param in kind.search_params:
            params.setdefault(param, []).append(kind.name)
    return ", ".join(f"{param} ({', '.join(names)})" for param, names in params.items())


def _sort_key(distances: np.ndarray, ids: np.ndarray) -> np.ndarray:
    key = (distances.astype(np.int64) << _ID_BITS) | np.maximum(ids, 0)
    return np.where(ids < 0, np.iinfo(np.int64).max, key)


def ordered(distances: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best (distance, id) pairs in the tie order; missing entries (id -1) last,
    padded to k columns with distance -1 and id -1."""
    order = np.argsort(_sort_key(distances, ids), axis=1, kind="stable")[:, :k]
    distances = np.take_along_axis(distances, order, axis=1).astype(np.int32)
    ids = np.take_along_axis(ids, order, axis=1)
    if ids.shape[1] < k:
        pad = ((0, 0), (0, k - ids.shape[1]))
        distances, ids = np.pad(distances, pad, constant_values=-1), np.pad(ids, pad, constant_values=-1)
    distances[ids < 0] = -1
    return distances, ids


def by_query(count: int, query_of: np.ndarray, ids: np.ndarray,
             distances: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radius results (of queries ``query_of``) as ``SearchIndex.radius`` returns them."""
    order = np.lexsort((ids, distances, query_of))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(query_of, minlength=count))])
    return offsets.astype(np.int64), distances[order].astype(np.int32), ids[order].astype(np.int64)
