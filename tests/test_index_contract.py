"""The contract of every registered search index (``search.base``), picked up from the registry: a
new index is tested by adding its file. Exact indexes give the brute-force ranking, ties included;
approximate ones give true distances, in the tie order; saveable ones round-trip through bytes."""

from __future__ import annotations

import numpy as np
import pytest

from hashkit.hashing.errors import UserError
from hashkit.hashing.search.base import Database, indexes

from .helpers import hamming_distances

INDEXES = indexes()


@pytest.fixture(scope="module")
def codes() -> tuple[np.ndarray, np.ndarray]:
    """32-bit codes near a few centres (small distances, ties everywhere), some duplicated, and
    queries: database rows, rows a bit away and random codes."""
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 256, (12, 4), dtype=np.uint8)
    database = centres[rng.integers(0, 12, 2000)] ^ np.packbits(rng.random((2000, 32)) < 0.04, axis=1)
    database[1500:1600] = database[:100]  # exact duplicates: ties broken by row
    queries = np.concatenate([database[:10], database[10:20] ^ np.uint8(1),
                              rng.integers(0, 256, (10, 4), dtype=np.uint8)])
    return database, queries


def reference(database: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every row of each query in the tie order (distance, then row), by plain sorting."""
    distances = hamming_distances(database, queries)
    order = np.lexsort((np.broadcast_to(np.arange(len(database)), distances.shape), distances), axis=1)
    return np.take_along_axis(distances, order, axis=1), order


def chunked(database: np.ndarray) -> Database:
    """The database in uneven chunks, as a store streams it."""
    bounds = [0, 7, 700, 1999, len(database)]
    return Database(len(database), database.shape[1] * 8, lambda: database,
                    lambda: [database[a:b] for a, b in zip(bounds[:-1], bounds[1:])])


def test_the_registry_holds_the_built_in_indexes():
    assert {"flat", "mih", "faiss-mih", "hash", "ivf", "hnsw"} <= set(INDEXES)
    assert [kind.exact for kind in INDEXES.values()] == sorted((kind.exact for kind in INDEXES.values()), reverse=True)


@pytest.mark.parametrize("name", list(INDEXES))
def test_k_nearest(name, codes):
    database, queries = codes
    kind = INDEXES[name]
    distances, ids = kind.build(chunked(database)).knn(queries, 25)
    assert distances.shape == ids.shape == (len(queries), 25)
    assert distances.dtype == np.int32 and ids.dtype == np.int64
    ref_d, ref_i = reference(database, queries)
    if kind.exact:
        assert np.array_equal(ids, ref_i[:, :25]) and np.array_equal(distances, ref_d[:, :25])
        return
    found = ids >= 0
    truth = hamming_distances(database, queries)
    assert np.array_equal(distances[found], np.take_along_axis(truth, np.maximum(ids, 0), axis=1)[found])
    key = distances.astype(np.int64) * len(database) + ids
    for q in range(len(queries)):
        assert found[q, :found[q].sum()].all(), "padding only after the rows found"
        assert (np.diff(key[q, found[q]]) > 0).all(), "in the tie order, each row once"
    assert (ids[:10, 0] == ref_i[:10, 0]).mean() >= 0.8, "a query that is a database row finds it"


@pytest.mark.parametrize("name", list(INDEXES))
@pytest.mark.parametrize("radius", [0, 3])
def test_radius(name, radius, codes):
    database, queries = codes
    kind = INDEXES[name]
    if not kind.searches_radius:
        with pytest.raises(UserError):
            kind.build(chunked(database)).radius(queries, radius)
        return
    offsets, distances, ids = kind.build(chunked(database)).radius(queries, radius)
    assert offsets.shape == (len(queries) + 1,) and offsets[0] == 0 and offsets[-1] == len(ids) == len(distances)
    ref_d, ref_i = reference(database, queries)
    for q in range(len(queries)):
        within = ref_i[q][ref_d[q] <= radius]
        found = ids[offsets[q]:offsets[q + 1]]
        if kind.exact:
            assert found.tolist() == within.tolist()
            assert distances[offsets[q]:offsets[q + 1]].tolist() == ref_d[q][ref_d[q] <= radius].tolist()
        else:
            assert set(found.tolist()) <= set(within.tolist()) and found.tolist() == sorted(
                found.tolist(), key=within.tolist().index)


@pytest.mark.parametrize("name", list(INDEXES))
def test_settings_memory_and_saving(name, codes):
    database, queries = codes
    kind = INDEXES[name]
    assert kind.memory_needed(10**6, 64) >= 0 and kind.description
    index = kind.build(Database.in_memory(database))
    with pytest.raises(UserError):
        index.tune({"no_such_setting": 1})
    for key in kind.search_params:
        with pytest.raises(UserError):
            index.tune({key: -5})
    if not kind.saveable:
        with pytest.raises(UserError):
            index.to_bytes()
        return
    again = kind.from_bytes(index.to_bytes())
    for a, b in zip(index.knn(queries, 10), again.knn(queries, 10)):
        assert np.array_equal(a, b)
