import numpy as np
import pytest

from hashkit.hashing.metrics import evaluate, ranking_scores
from hashkit.hashing.search import hamming_distances, knn_scan
from hashkit.hashing.store import pack_codes


def test_ranking_scores_by_hand():
    relevant = np.array([True, False, True, False, False, True])
    ap, ap_at_3, p_at_3, r_at_3 = ranking_scores(relevant, k=3)
    assert ap == pytest.approx((1 / 1 + 2 / 3 + 3 / 6) / 3)
    assert ap_at_3 == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert p_at_3 == pytest.approx(2 / 3)
    assert r_at_3 == pytest.approx(2 / 3)


def test_ap_at_k_is_zero_without_hits_in_top_k():
    ap, ap_at_2, p_at_2, r_at_2 = ranking_scores(np.array([False, False, True]), k=2)
    assert ap == pytest.approx(1 / 3) and ap_at_2 == 0 and p_at_2 == 0 and r_at_2 == 0


def codes_from_bits(rows):
    return pack_codes(np.array(rows, dtype=float) - 0.5)


def one_hot(ids, classes=2):
    """Single-label ids (-1: unknown) as the multi-hot matrix ``evaluate`` takes."""
    return np.arange(classes) == np.asarray(ids)[:, None]


def test_evaluate_small_case_with_ties_self_and_unknown_labels():
    database = codes_from_bits([
        [0, 0, 0, 0, 0, 0, 0, 0],  # row 0, label 0 (also query 0 itself)
        [1, 0, 0, 0, 0, 0, 0, 0],  # row 1, label 1, distance 1 from query 0
        [0, 1, 0, 0, 0, 0, 0, 0],  # row 2, label 0, distance 1 (tie with row 1: row 1 ranks first)
        [1, 1, 1, 1, 0, 0, 0, 0],  # row 3, label 0, distance 4
    ])
    db_labels = one_hot([0, 1, 0, 0])
    queries = codes_from_bits([[0] * 8, [1, 1, 1, 1, 1, 1, 1, 1], [0] * 8])
    query_labels = one_hot([0, 1, -1])
    metrics = evaluate(database, db_labels, queries, query_labels, k=2, self_rows=np.array([0, -1, -1]))
    # query 0 (self removed): ranking rows 1, 2, 3 -> relevance F, T, T
    ap0, ap0_k = (1 / 2 + 2 / 3) / 2, 1 / 2
    # query 1: distances 8, 7, 7, 4 -> ranking rows 3, 1, 2, 0 -> relevance F, T, F, F
    ap1, ap1_k = 1 / 2, 1 / 2
    assert metrics.evaluated == 2 and metrics.queries == 3  # unknown label is not evaluated
    assert metrics.mean_ap == pytest.approx((ap0 + ap1) / 2, abs=1e-6)
    assert metrics.mean_ap_at_k == pytest.approx((ap0_k + ap1_k) / 2, abs=1e-6)
    assert metrics.precision_at_k == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert metrics.recall_at_k == pytest.approx((1 / 2 + 1) / 2)
    assert not metrics.multi_label and "wmAP" not in metrics.as_dict(), "single-label: no graded metrics"


def test_knn_scan_matches_brute_force():
    rng = np.random.default_rng(0)
    database = rng.integers(0, 256, (500, 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (20, 8), dtype=np.uint8)
    distances, ids = knn_scan([database], queries, k=10)
    brute = hamming_distances(database, queries)
    for q in range(len(queries)):
        assert np.array_equal(distances[q], np.sort(brute[q])[:10])
        assert np.array_equal(brute[q, ids[q]], distances[q])
    slow = np.array([[bin(int.from_bytes(a.tobytes(), "big") ^ int.from_bytes(b.tobytes(), "big")).count("1")
                      for b in database[:50]] for a in queries])
    assert np.array_equal(brute[:, :50], slow)


def test_knn_scan_pads_when_database_is_small():
    database = np.zeros((2, 1), np.uint8)
    distances, ids = knn_scan([database], np.zeros((1, 1), np.uint8), k=4)
    assert ids[0, 2:].tolist() == [-1, -1] and distances[0, 2:].tolist() == [-1, -1]


def test_no_evaluable_query_gives_empty_means():
    database = codes_from_bits([[0] * 8, [1] * 8])
    metrics = evaluate(database, one_hot([0, 0]), database[:1], one_hot([1]), k=1)
    assert metrics.evaluated == 0 and metrics.mean_ap is None and metrics.precision_at_k is None
