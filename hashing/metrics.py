"""Retrieval metrics over Hamming rankings, with their conventions stated.

Conventions (also written into metrics.json):
- Ranking: database items by ascending Hamming distance; ties broken by database row, lowest first.
- Relevance: r = the number of labels a database item shares with the query (label sets);
  relevant means r >= 1. Items or queries with an unknown label share none. For single-label
  data this is "same label".
- Queries with no relevant item in the database are left out of every mean (and counted).
- AP (whole database): mean of precision at the rank of each relevant item.
- AP@k: sum over the top k of precision@i at relevant ranks, divided by the number of
  relevant items within the top k (the HashNet / DeepHash convention); 0 when there is none.
- precision@k: relevant in the top k / k. recall@k: relevant in the top k / all relevant.
- Multi-label data only (some image has more than one label), graded by r:
  ACG@k = sum of r over the top k / k;
  NDCG@k = DCG@k / ideal DCG@k, DCG@k = sum over ranks i <= k of (2^r_i - 1) / log2(i + 1),
  the ideal taking the query's r over the whole ranking sorted descending;
  weighted AP (Zhao et al., CVPR 2015) = sum of ACG@n over the ranks n of relevant items in the
  whole ranking / the number of relevant items; wmAP is its mean.
- Tie-aware AP and precision@k (McSherry and Najork, ECIR 2008): their expected values over all
  orderings of the items within each Hamming distance, so no tie order is assumed.
- precision within Hamming radius 2: relevant / retrieved among items at distance <= 2; a query
  retrieving nothing there counts 0. The precision-recall curve is taken over Hamming radii
  0..bits: at each radius, precision averaged over the queries that retrieve something, recall
  over every evaluated query.
- DeepHash convention (HashNet's and DeepHash's published code): mAP@k averaged over the queries
  with at least one relevant item in their top k only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .search import hamming_distances

CONVENTIONS = {
    "ranking": "ascending Hamming distance, ties broken by database row (lowest first)",
    "relevance": "r = number of labels shared with the query; relevant when r >= 1; "
                 "unknown labels share none (single-label data: same label)",
    "excluded_queries": "queries without any relevant database item are left out of the means",
    "ap_at_k": "normalised by the relevant items retrieved within the top k (HashNet/DeepHash); 0 if none",
    "ap": "over the whole database ranking",
    "self_match": "a query's own image is removed from its ranking when it is in the database",
    "acg_at_k": "multi-label only: sum of r over the top k, divided by k",
    "ndcg_at_k": "multi-label only: gain 2^r - 1, discount log2(rank + 1), normalised by the ideal DCG@k "
                 "of the query's r over the whole ranking sorted descending",
    "wmap": "multi-label only: weighted mAP (Zhao et al., CVPR 2015): per query, the sum of ACG@n over "
            "the ranks n of relevant items in the whole ranking, divided by the number of relevant items",
    "tie_aware": "expected AP and precision@k over all orderings within equal Hamming distances "
                 "(McSherry and Najork, ECIR 2008); no tie order assumed",
    "precision_at_radius_2": "relevant / retrieved within Hamming distance 2; 0 when nothing is retrieved",
    "pr_curve": "by Hamming radius 0..bits: precision averaged over queries retrieving something at that "
                "radius, recall over all evaluated queries",
    "deephash_map_at_k": "mAP@k over only the queries with a relevant item in their top k (HashNet/DeepHash code)",
    "junk": "landmark ground truth (query,image,kind CSV): a query's junk images are removed from its ranking "
            "before scoring (revisited Oxford/Paris protocol); only its listed relevant images are relevant",
}
PRECISION_CURVE_KS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
CHUNK_BYTES = 1 << 27  # bound on the temporaries of one chunk of queries: 128 MiB


@dataclass
class RankingMetrics:
    k: int
    queries: int
    evaluated: int  # the means below are None when no query could be evaluated
    mean_ap: float | None
    mean_ap_at_k: float | None
    precision_at_k: float | None
    recall_at_k: float | None
    multi_label: bool = False  # the graded means below are computed (and reported) only then
    ndcg_at_k: float | None = None
    acg_at_k: float | None = None
    weighted_map: float | None = None
    tie_aware_map: float | None = None
    tie_aware_precision_at_k: float | None = None
    precision_at_radius_2: float | None = None
    deephash_map_at_k: float | None = None
    pr_curve: dict[str, list] | None = None  # radius, precision, recall
    precision_curve: dict[str, list] | None = None  # k, precision

    def as_dict(self) -> dict:
        graded = {f"NDCG@{self.k}": self.ndcg_at_k, f"ACG@{self.k}": self.acg_at_k,
                  "wmAP": self.weighted_map} if self.multi_label else {}
        return {"k": self.k, "queries": self.queries, "evaluated_queries": self.evaluated,
                f"mAP@{self.k}": self.mean_ap_at_k, "mAP": self.mean_ap,
                f"precision@{self.k}": self.precision_at_k, f"recall@{self.k}": self.recall_at_k,
                **graded,
                "tie_aware": {"mAP": self.tie_aware_map, f"precision@{self.k}": self.tie_aware_precision_at_k},
                "precision@radius2": self.precision_at_radius_2, f"deephash_mAP@{self.k}": self.deephash_map_at_k,
                "pr_curve": self.pr_curve, "precision_curve": self.precision_curve, "conventions": CONVENTIONS}


def ranking_scores(relevant: np.ndarray, k: int) -> tuple[float, float, float, float]:
    """AP, AP@k, precision@k and recall@k of one ranking given as a boolean relevance list."""
    hits = np.cumsum(relevant)
    ranks = np.arange(1, len(relevant) + 1)
    total = hits[-1]
    precision_at_hits = (hits / ranks)[relevant]
    ap = float(precision_at_hits.sum() / total)
    top = relevant[:k]
    top_hits = int(top.sum())
    ap_at_k = float(precision_at_hits[:top_hits].sum() / top_hits) if top_hits else 0.0
    return ap, ap_at_k, top_hits / k, top_hits / float(total)


def graded_scores(shared: np.ndarray, k: int) -> tuple[float, float, float]:
    """NDCG@k, ACG@k and weighted AP of one ranking given as shared-label counts (at least one > 0)."""
    discounts = 1.0 / np.log2(np.arange(2, min(k, len(shared)) + 2))
    ideal = -np.sort(-shared)[:k]  # descending
    ndcg = float((np.exp2(shared[:k]) - 1) @ discounts / ((np.exp2(ideal) - 1) @ discounts))
    acg_at_ranks = np.cumsum(shared) / np.arange(1, len(shared) + 1)
    relevant = shared > 0
    return ndcg, float(shared[:k].sum() / k), float(acg_at_ranks[relevant].sum() / relevant.sum())


def tie_aware_scores(counts: np.ndarray, relevant_counts: np.ndarray, k: int,
                     harmonic: np.ndarray) -> tuple[float, float]:
    """Expected AP and precision@k over every ordering within ties, from the number of items
    ``counts[d]`` and of relevant items ``relevant_counts[d]`` at each distance d.

    A tie group of n items (r relevant) after N items (R relevant): the item at its position i
    is relevant with probability r / n, and then the relevant items before it number R + 1 +
    (i - 1)(r - 1)/(n - 1) on average, so the group adds (r / n) sum_i (R + 1 + (i - 1)(r - 1)/(n - 1))
    / (N + i) to the sum of precisions; with S = sum_i 1 / (N + i) = H(N + n) - H(N) that is
    (r / n) ((R + 1) S + (r - 1)/(n - 1) (n - (N + 1) S)). ``harmonic[m]`` = H(m).
    """
    n, r = counts.astype(np.float64), relevant_counts.astype(np.float64)
    ends = np.cumsum(counts)
    before, relevant_before = ends - counts, np.cumsum(r) - r
    s = harmonic[ends] - harmonic[before]
    slope = np.divide(r - 1, n - 1, out=np.zeros_like(n), where=n > 1)
    share = np.divide(r, n, out=np.zeros_like(n), where=n > 0)
    group = share * ((relevant_before + 1) * s + slope * (n - (before + 1) * s))
    ap = float(group.sum() / r.sum())
    if k >= ends[-1]:
        return ap, float(r.sum() / k)
    g = int(np.searchsorted(ends, k))  # the group holding rank k
    return ap, float((relevant_before[g] + (k - before[g]) * r[g] / n[g]) / k)


@dataclass
class LabelRelevance:
    """Relevance from label sets: r = labels shared. Labels are multi-hot bool matrices
    (``ground_truth.label_matrix``) over one vocabulary; an all-false row is an unknown label.
    ``self_rows[q]``: the database row of query q's own image (-1 if absent), left out."""

    db_labels: np.ndarray
    query_labels: np.ndarray
    self_rows: np.ndarray | None = None

    @property
    def multi_label(self) -> bool:
        """Whether some image has more than one label (the graded metrics are computed then)."""
        most = max(self.db_labels.sum(axis=1).max(initial=0), self.query_labels.sum(axis=1).max(initial=0))
        return bool(most > 1)

    @cached_property
    def _db_labels_t(self) -> np.ndarray:
        return self.db_labels.T.astype(np.float32)

    def shared(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, N) int32 counts of shared labels (BLAS in float32: exact below 2^24)."""
        return (self.query_labels[start:stop].astype(np.float32) @ self._db_labels_t).astype(np.int32)

    def left_out(self, q: int) -> np.ndarray:
        return _own_row(self.self_rows, q)

    def is_relevant(self, q: int, rows: np.ndarray) -> list[bool]:
        return (self.db_labels[rows] & self.query_labels[q]).any(axis=1).tolist()


@dataclass
class ListedRelevance:
    """Relevance from per-query lists (landmark protocol): ``relevant[q]`` database rows count,
    ``junk[q]`` rows are removed from query q's ranking before scoring, as is its own row."""

    relevant: list[np.ndarray]
    junk: list[np.ndarray]
    db_size: int
    self_rows: np.ndarray | None = None
    multi_label = False

    def shared(self, start: int, stop: int) -> np.ndarray:
        counts = np.zeros((stop - start, self.db_size), np.int32)
        for offset, rows in enumerate(self.relevant[start:stop]):
            counts[offset, rows] = 1
        return counts

    def left_out(self, q: int) -> np.ndarray:
        return np.concatenate([self.junk[q], _own_row(self.self_rows, q)]).astype(int)

    def is_relevant(self, q: int, rows: np.ndarray) -> list[bool]:
        return np.isin(rows, self.relevant[q]).tolist()


def _own_row(self_rows: np.ndarray | None, q: int) -> np.ndarray:
    """Query q's own database row (empty when it has none)."""
    return self_rows[q:q + 1] if self_rows is not None and self_rows[q] >= 0 else np.empty(0, int)


def evaluate(database: np.ndarray, db_labels: np.ndarray, queries: np.ndarray, query_labels: np.ndarray,
             k: int, self_rows: np.ndarray | None = None) -> RankingMetrics:
    """Score Hamming rankings of ``queries`` against ``database`` by the labels they share
    (``LabelRelevance``)."""
    return evaluate_relevance(database, queries, LabelRelevance(db_labels, query_labels, self_rows), k)


def evaluate_relevance(database: np.ndarray, queries: np.ndarray, relevance: LabelRelevance | ListedRelevance,
                       k: int) -> RankingMetrics:
    """Score the Hamming ranking of each query over ``database`` (packed codes) by ``relevance``:
    shared-label counts r per database row, and rows left out of each query's ranking."""
    multi_label = relevance.multi_label
    bits = database.shape[1] * 8
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, len(database) + 1))])
    curve_ks = [c for c in PRECISION_CURVE_KS if c <= len(database)]
    scores, tie_aware, radius_2, curves, pr_precision, pr_recall = [], [], [], [], [], []
    # per query: codes XOR and its bit counts, uint16 distances, shared counts (float32 then int32)
    chunk = max(1, CHUNK_BYTES // (len(database) * (2 * database.shape[1] + 10)))
    for start in range(0, len(queries), chunk):
        distances = hamming_distances(database, queries[start:start + chunk])
        shared_counts = relevance.shared(start, start + len(distances))
        for offset, (row, shared_row) in enumerate(zip(distances, shared_counts)):
            q = start + offset
            order = np.argsort(row, kind="stable")  # radix sort on uint16
            left_out = relevance.left_out(q)
            if len(left_out):
                order = order[~np.isin(order, left_out)]
            shared = shared_row[order]
            relevant = shared > 0
            if not relevant.any():
                continue
            scores.append(ranking_scores(relevant, k) + (graded_scores(shared, k) if multi_label else ()))
            ranked = row[order]
            counts = np.bincount(ranked, minlength=bits + 1)
            relevant_counts = np.bincount(ranked, weights=relevant, minlength=bits + 1)
            tie_aware.append(tie_aware_scores(counts, relevant_counts, k, harmonic))
            retrieved, hits = np.cumsum(counts), np.cumsum(relevant_counts)
            radius_2.append(hits[2] / retrieved[2] if retrieved[2] else 0.0)
            pr_precision.append(np.divide(hits, retrieved, out=np.full(bits + 1, np.nan), where=retrieved > 0))
            pr_recall.append(hits / hits[-1])
            curves.append(np.cumsum(relevant)[np.array(curve_ks, int) - 1] / np.array(curve_ks))
    width = 7 if multi_label else 4
    means = [_mean(column) for column in zip(*scores)] if scores else [None] * width
    result = RankingMetrics(k, len(queries), len(scores), *means[:4], multi_label, *means[4:])
    if scores:
        hit_in_top_k = [row[1] for row in scores if row[2] > 0]  # AP@k of queries with a hit in the top k
        result.tie_aware_map, result.tie_aware_precision_at_k = (_mean(column) for column in zip(*tie_aware))
        result.precision_at_radius_2 = _mean(radius_2)
        result.deephash_map_at_k = _mean(hit_in_top_k) if hit_in_top_k else None
        precision = np.array(pr_precision)
        defined = (~np.isnan(precision)).sum(axis=0)
        mean_precision = np.divide(np.nansum(precision, axis=0), defined, out=np.full(bits + 1, np.nan),
                                   where=defined > 0)
        result.pr_curve = {"radius": list(range(bits + 1)), "precision": [_mean(v) for v in mean_precision],
                           "recall": [_mean(v) for v in np.mean(np.array(pr_recall), axis=0)]}
        result.precision_curve = {"k": curve_ks, "precision": [_mean(v) for v in np.mean(np.array(curves), axis=0)]}
    return result


def _mean(values) -> float | None:
    value = float(np.mean(values))
    return None if np.isnan(value) else round(value, 6)
