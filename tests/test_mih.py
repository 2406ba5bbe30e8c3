"""Exact multi-index hashing: the same results as the exact scan, ties included, whichever way each
query is answered (certified by pigeonhole, or escalated to the scan)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hashkit.hashing.search import mih
from hashkit.hashing.search.kernels import as_words
from hashkit.hashing.search.mih import MultiIndex, ring_masks, substring_keys, substring_lengths
from hashkit.hashing.search.scan import knn_scan, radius_scan


def near(rng: np.random.Generator, centres: np.ndarray, rows: int, flip: float) -> np.ndarray:
    """``rows`` codes, each a random one of ``centres`` with each bit flipped with probability ``flip``."""
    noise = np.packbits(rng.random((rows, centres.shape[1] * 8)) < flip, axis=1)
    return centres[rng.integers(0, len(centres), rows)] ^ noise


@pytest.mark.parametrize("code_bytes", [2, 8, 12, 16])
@pytest.mark.parametrize("k", [1, 10])
def test_multi_index_gives_the_exact_scan_results(code_bytes, k):
    rng = np.random.default_rng(code_bytes * 10 + k)
    centres, flip = rng.integers(0, 256, (300, code_bytes), dtype=np.uint8), 2 / (code_bytes * 8)
    database = near(rng, centres, 20_000, flip)  # two bits from a centre on average
    queries = np.concatenate([near(rng, centres, 60, flip),  # near codes: certified early
                              rng.integers(0, 256, (20, code_bytes), dtype=np.uint8)])  # far: escalated
    database[100:110] = database[5]  # duplicates: ties at distance 0
    distances, rows, stats = MultiIndex(database).search(queries, k, threads=2, escalation_work=0.2)
    expected_d, expected_rows = knn_scan([database], queries, k)
    assert np.array_equal(rows, expected_rows) and np.array_equal(distances, expected_d)
    assert sum(stats.stopped_at.values()) + stats.scanned == len(queries)
    assert stats.stopped_at  # some queries were certified without the scan


def test_far_queries_escalate_to_the_scan():
    rng = np.random.default_rng(0)
    database = rng.integers(0, 256, (50_000, 8), dtype=np.uint8)  # random codes: neighbours far away
    queries = rng.integers(0, 256, (30, 8), dtype=np.uint8)
    distances, rows, stats = MultiIndex(database).search(queries, 5)
    assert stats.scanned > 0
    assert np.array_equal(rows, knn_scan([database], queries, 5)[1])


def test_when_most_pilot_queries_escalate_the_rest_are_scanned_unprobed(monkeypatch):
    rng = np.random.default_rng(2)
    centres = rng.integers(0, 256, (50, 8), dtype=np.uint8)
    database = near(rng, centres, 50_000, 0.02)
    far = rng.integers(0, 256, (40, 8), dtype=np.uint8)
    close = near(rng, centres, 40, 0.02)
    monkeypatch.setattr(mih, "PILOT_QUERIES", 40)
    index = MultiIndex(database)
    for queries, unprobed in ((np.concatenate([far, close]), 40), (np.concatenate([close, far]), 0)):
        distances, rows, stats = index.search(queries, 3)
        assert stats.unprobed == unprobed and stats.scanned >= unprobed
        expected_d, expected_rows = knn_scan([database], queries, 3)
        assert np.array_equal(rows, expected_rows) and np.array_equal(distances, expected_d)


def test_without_a_budget_every_query_is_certified_by_the_rings_alone():
    rng = np.random.default_rng(3)
    database = rng.integers(0, 256, (3_000, 2), dtype=np.uint8)  # 16-bit codes: tables of 4 bits, probed to the end
    queries = rng.integers(0, 256, (50, 2), dtype=np.uint8)
    distances, rows, stats = MultiIndex(database).search(queries, 7, escalation_work=1e9)
    assert stats.scanned == 0 and sum(stats.stopped_at.values()) == len(queries)
    expected_d, expected_rows = knn_scan([database], queries, 7)
    assert np.array_equal(rows, expected_rows) and np.array_equal(distances, expected_d)


def test_rings_probed_in_parts_give_the_same_results(monkeypatch):
    rng = np.random.default_rng(4)
    centres = rng.integers(0, 256, (40, 8), dtype=np.uint8)
    database, queries = near(rng, centres, 30_000, 0.05), near(rng, centres, 200, 0.05)
    whole = MultiIndex(database).search(queries, 4)
    monkeypatch.setattr(mih, "RING_PAIRS", 50)  # a part per query or so
    parts = MultiIndex(database).search(queries, 4)
    assert np.array_equal(whole[0], parts[0]) and np.array_equal(whole[1], parts[1])
    assert parts[2].stopped_at == whole[2].stopped_at and parts[2].scanned == whole[2].scanned


def test_queries_farther_than_the_pilots_are_probed_again_and_stay_exact(monkeypatch):
    rng = np.random.default_rng(5)
    centres = rng.integers(0, 256, (40, 8), dtype=np.uint8)
    database = near(rng, centres, 30_000, 0.03)
    monkeypatch.setattr(mih, "PILOT_QUERIES", 20)
    queries = np.concatenate([near(rng, centres, 20, 0.01), near(rng, centres, 30, 0.1)])  # the pilot's are nearer
    distances, rows, stats = MultiIndex(database).search(queries, 3, escalation_work=1e9)
    assert stats.reprobed > 0 and stats.scanned == 0
    expected_d, expected_rows = knn_scan([database], queries, 3)
    assert np.array_equal(rows, expected_rows) and np.array_equal(distances, expected_d)


@pytest.mark.parametrize("code_bytes", [2, 8, 16])
def test_radius_search_gives_the_scans_results(code_bytes):
    rng = np.random.default_rng(code_bytes + 20)
    centres = rng.integers(0, 256, (60, code_bytes), dtype=np.uint8)
    database = near(rng, centres, 20_000, 0.04)
    queries = np.concatenate([near(rng, centres, 40, 0.04), rng.integers(0, 256, (5, code_bytes), dtype=np.uint8)])
    index = MultiIndex(database)
    for radius in (0, 3, 7, 12, 40):  # the last ones past the rings' budget: scanned
        expected = radius_scan([database], queries, radius)
        found = index.radius_search(queries, radius)
        assert all(np.array_equal(a, b) for a, b in zip(found, expected)), radius
    assert len(expected[1]) > 0
    rings, spent = index.rings()
    budget = mih.ESCALATION_WORK * len(database)
    assert spent[3 + 1] <= budget and (40 >= len(rings) or spent[40 + 1] > budget)  # rings at 3, the scan at 40


def test_rings_before_the_first_stops_are_merged_into_one_pass_per_table():
    rings = [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2)]
    assert mih.merged_passes(rings, 4) == [(2, [0]), (0, [0, 1]), (1, [0, 1]), (2, [1]), (0, [2])]
    assert mih.merged_passes(rings, 0) == [(j, [r]) for j, r in rings]
    assert mih.stop_quantile({3: 1, 5: 8, 6: 11}, 0.1) == 5  # 1 of 20 by bound 3, 9 by bound 5
    assert mih.stop_quantile({3: 1, 5: 8, 6: 11}, 0.05) == 3


@pytest.mark.parametrize("code_bytes", [2, 8, 12, 16])
def test_tables_hold_each_bucket_rows_in_ascending_order_with_their_codes(code_bytes):
    rng = np.random.default_rng(code_bytes)
    database = rng.integers(0, 256, (5_000, code_bytes), dtype=np.uint8)
    index = MultiIndex(database)
    words = as_words(database)
    for j, (start, length) in enumerate(zip(index.starts, index.lengths)):
        keys = substring_keys(words, start, length)
        order = np.argsort(keys, kind="stable")
        assert np.array_equal(index.rows[j], order) and np.array_equal(index.columns[j], words[order].T)
        assert np.array_equal(index.offsets[j], np.searchsorted(keys[order], np.arange((1 << length) + 1)))


def test_ring_masks_are_every_mask_of_that_weight():
    for length, radius in ((16, 3), (5, 0), (5, 5), (21, 2)):
        masks = ring_masks(length, radius)
        assert len(set(masks.tolist())) == len(masks) == math.comb(length, radius)
        assert (np.bitwise_count(masks) == radius).all() and (masks < 2**length).all()


def test_fewer_rows_than_k_pads_like_the_scan():
    database = np.arange(7, dtype=np.uint8)[:, None].repeat(2, axis=1)
    distances, rows, _ = MultiIndex(database).search(database[:3], k=10)
    expected_d, expected_rows = knn_scan([database], database[:3], 10)
    assert np.array_equal(rows, expected_rows) and np.array_equal(distances, expected_d)
    assert (rows[:, 7:] == -1).all()


def test_substrings_partition_the_bits():
    lengths = substring_lengths(64, 10_000_000)
    assert sum(lengths) == 64 and max(lengths) - min(lengths) <= 1 and len(lengths) == 4
    words = np.random.default_rng(1).integers(0, 2**63, (100, 2), dtype=np.uint64)
    starts = np.cumsum([0, *substring_lengths(128, 1000)[:-1]])
    total = sum(np.bitwise_count(substring_keys(words, int(s), n)).astype(int)
                for s, n in zip(starts, substring_lengths(128, 1000)))
    assert np.array_equal(total, np.bitwise_count(words).sum(axis=1))
