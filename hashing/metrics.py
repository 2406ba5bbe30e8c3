"""Retrieval metrics over Hamming rankings, with their conventions stated.

Conventions (also written into metrics.json):
- Ranking: database items by ascending Hamming distance; ties broken by database row, lowest first.
- Relevance: same label; items or queries with an unknown label are never relevant.
- Queries with no relevant item in the database are left out of every mean (and counted).
- AP (whole database): mean of precision at the rank of each relevant item.
- AP@k: sum over the top k of precision@i at relevant ranks, divided by the number of
  relevant items within the top k (the HashNet / DeepHash convention); 0 when there is none.
- precision@k: relevant in the top k / k. recall@k: relevant in the top k / all relevant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .search import hamming_distances

CONVENTIONS = {
    "ranking": "ascending Hamming distance, ties broken by database row (lowest first)",
    "relevance": "same label; unknown labels are never relevant",
    "excluded_queries": "queries without any relevant database item are left out of the means",
    "ap_at_k": "normalised by the relevant items retrieved within the top k (HashNet/DeepHash); 0 if none",
    "ap": "over the whole database ranking",
    "self_match": "a query's own image is removed from its ranking when it is in the database",
}
CHUNK_BYTES = 1 << 27  # bound on the temporary XOR array while scoring: 128 MiB


@dataclass
class RankingMetrics:
    k: int
    queries: int
    evaluated: int  # the means below are None when no query could be evaluated
    mean_ap: float | None
    mean_ap_at_k: float | None
    precision_at_k: float | None
    recall_at_k: float | None

    def as_dict(self) -> dict:
        return {"k": self.k, "queries": self.queries, "evaluated_queries": self.evaluated,
                f"mAP@{self.k}": self.mean_ap_at_k, "mAP": self.mean_ap,
                f"precision@{self.k}": self.precision_at_k, f"recall@{self.k}": self.recall_at_k,
                "conventions": CONVENTIONS}


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


def evaluate(database: np.ndarray, db_labels: np.ndarray, queries: np.ndarray, query_labels: np.ndarray,
             k: int, self_rows: np.ndarray | None = None) -> RankingMetrics:
    """Score Hamming rankings of ``queries`` against ``database`` by label agreement.

    Labels are integers, -1 for unknown. ``self_rows[q]`` is the database row of query q's
    own image (-1 if absent); it is removed from that query's ranking.
    """
    scores = []
    chunk = max(1, CHUNK_BYTES // max(1, database.nbytes))
    for start in range(0, len(queries), chunk):
        distances = hamming_distances(database, queries[start:start + chunk])
        for offset, row in enumerate(distances):
            q = start + offset
            label = query_labels[q]
            order = np.argsort(row, kind="stable")
            if self_rows is not None and self_rows[q] >= 0:
                order = order[order != self_rows[q]]
            relevant = (db_labels[order] == label) & (label >= 0)
            if relevant.any():
                scores.append(ranking_scores(relevant, k))
    means = [round(float(v), 6) for v in np.mean(scores, axis=0)] if scores else [None] * 4
    return RankingMetrics(k, len(queries), len(scores), *means)
