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
"""

from __future__ import annotations

from dataclasses import dataclass

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
}
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

    def as_dict(self) -> dict:
        graded = {f"NDCG@{self.k}": self.ndcg_at_k, f"ACG@{self.k}": self.acg_at_k,
                  "wmAP": self.weighted_map} if self.multi_label else {}
        return {"k": self.k, "queries": self.queries, "evaluated_queries": self.evaluated,
                f"mAP@{self.k}": self.mean_ap_at_k, "mAP": self.mean_ap,
                f"precision@{self.k}": self.precision_at_k, f"recall@{self.k}": self.recall_at_k,
                **graded, "conventions": CONVENTIONS}


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


def evaluate(database: np.ndarray, db_labels: np.ndarray, queries: np.ndarray, query_labels: np.ndarray,
             k: int, self_rows: np.ndarray | None = None) -> RankingMetrics:
    """Score Hamming rankings of ``queries`` against ``database`` by the labels they share.

    Labels are multi-hot bool matrices (``ground_truth.label_matrix``) over one vocabulary; an
    all-false row is an unknown label. ``self_rows[q]`` is the database row of query q's own
    image (-1 if absent); it is removed from that query's ranking. The graded metrics (NDCG@k,
    ACG@k, wmAP) are computed when some image has more than one label.
    """
    multi_label = bool(max(db_labels.sum(axis=1).max(initial=0), query_labels.sum(axis=1).max(initial=0)) > 1)
    db_hot = db_labels.astype(np.float32)  # BLAS products; exact for counts below 2^24
    scores = []
    # per query: codes XOR and its bit counts, int32 distances, shared counts (float32 then int32)
    chunk = max(1, CHUNK_BYTES // (len(database) * (2 * database.shape[1] + 12)))
    for start in range(0, len(queries), chunk):
        distances = hamming_distances(database, queries[start:start + chunk])
        shared_counts = (query_labels[start:start + chunk].astype(np.float32) @ db_hot.T).astype(np.int32)
        for offset, (row, shared_row) in enumerate(zip(distances, shared_counts)):
            q = start + offset
            order = np.argsort(row, kind="stable")
            if self_rows is not None and self_rows[q] >= 0:
                order = order[order != self_rows[q]]
            shared = shared_row[order]
            relevant = shared > 0
            if relevant.any():
                scores.append(ranking_scores(relevant, k) + (graded_scores(shared, k) if multi_label else ()))
    width = 7 if multi_label else 4
    means = [round(float(v), 6) for v in np.mean(scores, axis=0)] if scores else [None] * width
    return RankingMetrics(k, len(queries), len(scores), *means[:4], multi_label, *means[4:])
