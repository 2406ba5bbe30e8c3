import itertools

import numpy as np
import pytest

from hashkit.hashing.evaluation import metrics as metrics_module
from hashkit.hashing.evaluation.metrics import (
    LabelRelevance,
    ListedRelevance,
    distinct_codes,
    evaluate,
    evaluate_relevance,
    harmonic_numbers,
    log_factorials,
    ranking_scores,
    tie_aware_scores,
)
from hashkit.hashing.search.scan import knn_scan

from .helpers import codes_from_bits, hamming_distances


def test_ranking_scores_by_hand():
    ap, ap_at_3, p_at_3, r_at_3 = ranking_scores(np.array([1, 3, 6]), k=3)  # relevant: T F T F F T
    assert ap == pytest.approx((1 / 1 + 2 / 3 + 3 / 6) / 3)
    assert ap_at_3 == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert p_at_3 == pytest.approx(2 / 3)
    assert r_at_3 == pytest.approx(2 / 3)


def test_ap_at_k_is_zero_without_hits_in_top_k():
    ap, ap_at_2, p_at_2, r_at_2 = ranking_scores(np.array([3]), k=2)
    assert ap == pytest.approx(1 / 3) and ap_at_2 == 0 and p_at_2 == 0 and r_at_2 == 0


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


def tie_aware_by_enumeration(distances: list[int], relevant: list[bool], k: int) -> tuple[float, float, float]:
    """Mean AP, precision@k and AP@k over every ordering of the items within equal distances."""
    groups = [[i for i in range(len(distances)) if distances[i] == d] for d in sorted(set(distances))]
    scores = []
    for orderings in itertools.product(*(itertools.permutations(g) for g in groups)):
        ranking = np.array([relevant[i] for group in orderings for i in group])
        ap, ap_at_k, p_at_k, _ = ranking_scores(np.flatnonzero(ranking) + 1, k)
        scores.append((ap, p_at_k, ap_at_k))
    return tuple(np.mean(scores, axis=0))


@pytest.mark.parametrize("seed", range(10))
def test_tie_aware_scores_equal_the_mean_over_all_tie_orderings(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(3, 9))
    distances = rng.integers(0, 3, size).tolist()
    relevant = rng.random(size) < 0.5
    relevant[rng.integers(size)] = True
    counts = np.bincount(distances, minlength=4)  # distance 3 holds nothing
    relevant_counts = np.bincount(distances, weights=relevant, minlength=4)
    ends = set(np.cumsum(counts).tolist())
    ks = range(1, size + 3)  # every k: inside a tie group, at a group's end, beyond the database
    assert any(k not in ends for k in ks[:size]) and size in ends and max(ks) > size
    for k in ks:
        scores = tie_aware_scores(counts[None], relevant_counts[None], k, harmonic_numbers(size), log_factorials(size))
        expected = tie_aware_by_enumeration(distances, relevant.tolist(), k)
        assert [score[0] for score in scores] == pytest.approx(expected), f"k={k}"


def test_tie_aware_scores_of_several_queries_in_blocks(monkeypatch):
    """Queries scored together, in blocks of a few terms, score as each alone."""
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 6, (30, 4))
    counts[:, 0] += 1
    relevant_counts = rng.integers(0, counts + 1)
    tables = harmonic_numbers(counts.sum(axis=1).max()), log_factorials(counts.sum(axis=1).max())
    alone = [tie_aware_scores(counts[q:q + 1], relevant_counts[q:q + 1], 7, *tables) for q in range(30)]
    monkeypatch.setattr(metrics_module, "TIE_TERMS", 5)
    together = tie_aware_scores(counts, relevant_counts, 7, *tables)
    for q, scores in enumerate(alone):
        assert [values[q] for values in together] == pytest.approx([values[0] for values in scores])


def test_tie_aware_equals_row_order_without_ties():
    """Thermometer codes: every database row at its own distance from the query."""
    database = codes_from_bits([[1] * i + [0] * (8 - i) for i in range(9)])
    queries = codes_from_bits([[0] * 8, [0] * 8])
    result = evaluate(database, one_hot([0, 1, 1, 0, 1, 0, 0, 1, 0]), queries, one_hot([0, 1]), k=4)
    assert result.tie_aware_map_at_k == pytest.approx(result.mean_ap_at_k)
    assert result.tie_aware_map == pytest.approx(result.mean_ap)
    assert result.tie_aware_precision_at_k == pytest.approx(result.precision_at_k)
    assert result.tie_warning is None and result.as_dict()["tie_warning"] is None
    assert result.as_dict()["collapse"] == {"distinct_codes": 9, "median_nearest_bucket": 1.0}


@pytest.mark.parametrize("width", [1, 3, 8, 9, 16])
def test_distinct_codes(width):
    rng = np.random.default_rng(width)
    codes = rng.integers(0, 256, (40, width), dtype=np.uint8)[rng.integers(0, 40, 200)]
    assert distinct_codes(codes) == len({row.tobytes() for row in codes})
    assert distinct_codes(codes[:0]) == 0


def test_radius_precision_deephash_map_and_curves_by_hand():
    database = codes_from_bits([
        [0, 0, 0, 0, 0, 0, 0, 0],  # row 0, label 0, distance 0 from the query
        [1, 1, 1, 0, 0, 0, 0, 0],  # row 1, label 1, distance 3
        [1, 0, 0, 0, 0, 0, 0, 0],  # row 2, label 1, distance 1
        [1, 1, 1, 1, 1, 0, 0, 0],  # row 3, label 0, distance 5
    ])
    queries = codes_from_bits([[0] * 8, [1] * 8])
    result = evaluate(database, one_hot([0, 1, 1, 0]), queries, one_hot([0, 1]), k=1)
    # query 0: ranking rows 0, 2, 1, 3 -> relevant T, F, F, T; within radius 2: rows 0, 2 -> 1/2
    # query 1: distances 8, 5, 7, 3 -> rows 3, 1, 2, 0 -> F, T, T, F; within radius 2: none -> 0
    assert result.precision_at_radius_2 == pytest.approx((1 / 2 + 0) / 2)
    assert result.mean_ap_at_k == pytest.approx((1 + 0) / 2)
    assert result.deephash_map_at_k == pytest.approx(1.0), "query 1 has no hit in its top 1: left out"
    curve = result.pr_curve
    # radius 1: query 0 retrieves rows 0, 2 (precision 1/2, recall 1/2); query 1 nothing (no precision, recall 0)
    assert curve["precision"][1] == pytest.approx(0.5) and curve["recall"][1] == pytest.approx(0.25)
    assert curve["precision"][0] == pytest.approx(1.0) and curve["recall"][8] == pytest.approx(1.0)
    assert result.precision_curve == {"k": [1], "precision": [0.5]}
    values = result.as_dict()
    assert values["tie_aware"]["mAP"] == pytest.approx(result.mean_ap), "no ties here: the same"
    assert values["tie_aware"]["mAP@1"] == pytest.approx(result.mean_ap_at_k)
    assert {"precision@radius2", "deephash_mAP@1", "pr_curve", "precision_curve"} <= values.keys()


def test_landmark_protocol_removes_junk_before_scoring():
    database = codes_from_bits([
        [0, 0, 0, 0, 0, 0, 0, 0],  # row 0: distance 0, junk for query 0
        [1, 0, 0, 0, 0, 0, 0, 0],  # row 1: distance 1, not listed
        [1, 1, 0, 0, 0, 0, 0, 0],  # row 2: distance 2, relevant to query 0
        [1, 1, 1, 0, 0, 0, 0, 0],  # row 3: distance 3, relevant to query 0
    ])
    queries = codes_from_bits([[0] * 8, [0] * 8])
    relevance = ListedRelevance([np.array([2, 3]), np.array([], np.int64)], [np.array([0]), np.array([], np.int64)],
                                db_size=4)
    result = evaluate_relevance(database, queries, relevance, k=2)
    # query 0 without the junk row: rows 1, 2, 3 -> F, T, T; query 1 lists nothing: not evaluated
    assert result.evaluated == 1 and result.queries == 2
    assert result.mean_ap == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result.precision_at_k == pytest.approx(1 / 2)
    kept = ListedRelevance([np.array([2, 3])], [np.array([], np.int64)], db_size=4)
    assert evaluate_relevance(database, queries[:1], kept, k=2).mean_ap == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_threads_and_chunks_do_not_change_the_metrics(monkeypatch):
    rng = np.random.default_rng(3)
    database = rng.integers(0, 256, (300, 2), dtype=np.uint8)
    queries = rng.integers(0, 256, (40, 2), dtype=np.uint8)
    labels = np.arange(3) == rng.integers(0, 3, 340)[:, None]
    relevance = LabelRelevance(labels[:300], labels[300:], np.where(np.arange(40) < 10, np.arange(40), -1))
    whole = evaluate_relevance(database, queries, relevance, k=5, threads=1).as_dict()
    monkeypatch.setattr(metrics_module, "QUERIES_PER_TASK", 7)
    assert evaluate_relevance(database, queries, relevance, k=5, threads=3).as_dict() == whole
