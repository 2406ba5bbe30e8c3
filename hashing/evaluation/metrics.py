"""Retrieval metrics over Hamming rankings.

Their conventions (ranking and tie order, relevance, which queries count, each metric's
definition) are stated once, in ``CONVENTIONS`` below: every metrics.json carries them, and
docs/formats.md points there.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
from numba import njit

from hashkit.hashing.progress import progress
from hashkit.hashing.search.kernels import as_columns, as_words, distance_matrix, rank_relevant, shared_labels
from hashkit.hashing.search.scan import cpu_cores

TIE_WARNING_GAP = 0.02  # absolute difference between a row-order and a tie-aware mean that is warned about
TIE_TERMS = 1 << 20  # bound on the (query, relevant count) terms of tie-aware AP@k computed at once
CONVENTIONS = {
    "ranking": "ascending Hamming distance, ties broken by database row (lowest first)",
    "relevance": "r = number of labels shared with the query; relevant when r >= 1; "
                 "unknown labels share none (single-label data: same label)",
    "excluded_queries": "queries without any relevant database item are left out of the means",
    "ap_at_k": "normalised by the relevant items retrieved within the top k (HashNet/DeepHash); 0 if none",
    "ap": "mean over the relevant items of the precision at each one's rank, over the whole database ranking",
    "precision_recall_at_k": "precision@k: relevant items in the top k / k; recall@k: relevant items in the top k / "
                             "all relevant items",
    "self_match": "a query's own image is removed from its ranking when it is in the database",
    "acg_at_k": "multi-label only: sum of r over the top k, divided by k",
    "ndcg_at_k": "multi-label only: gain 2^r - 1, discount log2(rank + 1), normalised by the ideal DCG@k "
                 "of the query's r over the whole ranking sorted descending",
    "wmap": "multi-label only: weighted mAP (Zhao et al., CVPR 2015): per query, the sum of ACG@n over "
            "the ranks n of relevant items in the whole ranking, divided by the number of relevant items",
    "tie_aware": "expected AP, AP@k (normalised as ap_at_k) and precision@k over all orderings within equal "
                 "Hamming distances (McSherry and Najork, ECIR 2008); no tie order assumed",
    "collapse": "distinct_codes: distinct codes in the database; median_nearest_bucket: median over the "
                "evaluated queries of the rows at the query's smallest Hamming distance to the database "
                "(rows left out of its ranking excluded)",
    "tie_warning": "given when a row-order mAP, mAP@k or precision@k differs from its tie-aware value by more "
                   f"than {TIE_WARNING_GAP}",
    "precision_at_radius_2": "relevant / retrieved within Hamming distance 2; 0 when nothing is retrieved",
    "pr_curve": "by Hamming radius 0..bits: precision averaged over queries retrieving something at that "
                "radius, recall over all evaluated queries",
    "deephash_map_at_k": "mAP@k over only the queries with a relevant item in their top k (HashNet/DeepHash code)",
    "junk": "landmark ground truth (query,image,kind CSV): a query's junk images are removed from its ranking "
            "before scoring (revisited Oxford/Paris protocol); only its listed relevant images are relevant",
}
PRECISION_CURVE_KS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
QUERIES_PER_TASK = 256  # queries scored by one task of the thread pool


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
    tie_aware_map_at_k: float | None = None
    distinct_codes: int | None = None
    median_nearest_bucket: float | None = None
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
                "tie_aware": {"mAP": self.tie_aware_map, f"mAP@{self.k}": self.tie_aware_map_at_k,
                              f"precision@{self.k}": self.tie_aware_precision_at_k},
                "collapse": {"distinct_codes": self.distinct_codes,
                             "median_nearest_bucket": self.median_nearest_bucket},
                "tie_warning": self.tie_warning,
                "precision@radius2": self.precision_at_radius_2, f"deephash_mAP@{self.k}": self.deephash_map_at_k,
                "pr_curve": self.pr_curve, "precision_curve": self.precision_curve, "conventions": CONVENTIONS}

    @property
    def tie_warning(self) -> str | None:
        """One line when a row-order mean differs from its tie-aware value by more than TIE_WARNING_GAP."""
        pairs = {f"mAP@{self.k}": (self.mean_ap_at_k, self.tie_aware_map_at_k),
                 "mAP": (self.mean_ap, self.tie_aware_map),
                 f"precision@{self.k}": (self.precision_at_k, self.tie_aware_precision_at_k)}
        gaps = [f"{name} {row_order:.4f} vs tie-aware {tie_aware:.4f} ({row_order - tie_aware:+.4f})"
                for name, (row_order, tie_aware) in pairs.items()
                if row_order is not None and tie_aware is not None and abs(row_order - tie_aware) > TIE_WARNING_GAP]
        return None if not gaps else (
            f"Hamming ties move the row-order metrics: {'; '.join(gaps)}. They depend on the database's row order "
            "(ties go to the lowest row); report the tie-aware values")


@njit(nogil=True, cache=True)
def ranking_scores(ranks: np.ndarray, k: int) -> tuple[float, float, float, float]:
    """AP, AP@k, precision@k and recall@k of one ranking, from the ranks (1-based, ascending) of
    its relevant items; at least one."""
    total, total_at_k, top_hits = 0.0, 0.0, 0
    for hit in range(len(ranks)):
        precision = (hit + 1) / ranks[hit]
        total += precision
        if ranks[hit] <= k:
            total_at_k += precision
            top_hits += 1
    ap_at_k = total_at_k / top_hits if top_hits else 0.0
    return total / len(ranks), ap_at_k, top_hits / k, top_hits / len(ranks)


@njit(nogil=True, boundscheck=False, cache=True)
def rank_query(columns: np.ndarray, query: np.ndarray, shared: np.ndarray, left_out: np.ndarray,
               bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One query's ranking over the database ``columns`` (``kernels.as_columns``) by (Hamming
    distance, row), ``query`` (1, words), the rows ``left_out`` of it excepted: the rows and the
    relevant rows (``shared`` label count > 0) at each distance 0..bits, the ascending 1-based
    ranks of the relevant rows, and the distances (``bits + 1`` for the rows left out)."""
    distances = distance_matrix(columns, query)[0]
    relevant = shared > 0
    for row in left_out:
        relevant[row] = False
        distances[row] = bits + 1  # ranked after every other row, then cut off
    counts, relevant_counts, ranks = rank_relevant(distances, relevant, bits + 2)
    return counts[:-1], relevant_counts[:-1], ranks, distances


def graded_scores(shared: np.ndarray, k: int) -> tuple[float, float, float]:
    """NDCG@k, ACG@k and weighted AP of one ranking given as shared-label counts (at least one > 0)."""
    discounts = 1.0 / np.log2(np.arange(2, min(k, len(shared)) + 2))
    ideal = -np.sort(-shared)[:k]  # descending
    ndcg = float((np.exp2(shared[:k]) - 1) @ discounts / ((np.exp2(ideal) - 1) @ discounts))
    acg_at_ranks = np.cumsum(shared) / np.arange(1, len(shared) + 1)
    relevant = shared > 0
    return ndcg, float(shared[:k].sum() / k), float(acg_at_ranks[relevant].sum() / relevant.sum())


def harmonic_numbers(size: int) -> np.ndarray:
    """H(m) = 1 + 1/2 + ... + 1/m for m = 0..size."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, size + 1))])


def log_factorials(size: int) -> np.ndarray:
    """log(m!) for m = 0..size."""
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, size + 1)))])


def tie_aware_scores(counts: np.ndarray, relevant_counts: np.ndarray, k: int, harmonic: np.ndarray,
                     log_factorial: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected AP, precision@k and AP@k over every ordering within ties, for each query (row) from
    its number of items ``counts[q, d]`` and of relevant items ``relevant_counts[q, d]`` at each
    distance d; returns three (Q,) arrays. ``harmonic[m]`` = H(m), ``log_factorial[m]`` = log(m!),
    m up to the ranking's length.

    AP sums ``_expected_precision_sum`` over the tie groups. For AP@k, the groups wholly inside the
    top k add the same; the group holding rank k adds its first t = k - N items (N before it), of
    which X ~ Hypergeometric(n, r, t) are relevant: E[AP@k] = sum_x P(X = x) (A + c(x)) / (R + x),
    A the expected precision sum of the groups before it (R relevant items), c(x) that of t items
    with x relevant after them; a term is 0 when R + x = 0.
    """
    r = relevant_counts.astype(np.int64)
    ends = np.cumsum(counts, axis=1)
    before, relevant_before = ends - counts, np.cumsum(r, axis=1) - r
    group = _expected_precision_sum(before, relevant_before, counts, r, harmonic)
    at_k = np.minimum((ends < k).sum(axis=1), counts.shape[1] - 1)[:, None]  # the group holding rank k, or the last

    def of_group(values: np.ndarray) -> np.ndarray:
        return np.take_along_axis(values, at_k, axis=1)[:, 0]

    size, relevant = of_group(counts), of_group(r)
    taken = np.minimum(k - of_group(before), size)  # the group's items within the top k
    share = np.divide(relevant, size, out=np.zeros(len(size)), where=size > 0)
    ap_at_k = _expected_ap_at_k(of_group(np.cumsum(group, axis=1) - group), of_group(before), of_group(relevant_before),
                                size, relevant, taken, harmonic, log_factorial)
    return group.sum(axis=1) / r.sum(axis=1), (of_group(relevant_before) + taken * share) / k, ap_at_k


def _expected_precision_sum(before: np.ndarray, relevant_before: np.ndarray, size: np.ndarray,
                            relevant: np.ndarray, harmonic: np.ndarray) -> np.ndarray:
    """Expected sum of precision at the relevant ranks of ``size`` items (``relevant`` of them
    relevant) in random order after ``before`` items (``relevant_before`` relevant).

    The item at position i is relevant with probability r / n, and then the relevant items before
    it number R + 1 + (i - 1)(r - 1)/(n - 1) on average: the sum is (r / n) sum_i (R + 1 + (i - 1)
    (r - 1)/(n - 1)) / (N + i); with S = sum_i 1 / (N + i) = H(N + n) - H(N) that is
    (r / n) ((R + 1) S + (r - 1)/(n - 1) (n - (N + 1) S)).
    """
    n = np.asarray(size, np.float64)
    s = harmonic[before + size] - harmonic[before]
    slope = np.divide(relevant - 1, n - 1, out=np.zeros_like(n), where=n > 1)
    share = np.divide(relevant, n, out=np.zeros_like(n), where=n > 0)
    return share * ((relevant_before + 1) * s + slope * (n - (before + 1) * s))


def _expected_ap_at_k(inside: np.ndarray, before: np.ndarray, relevant_before: np.ndarray, size: np.ndarray,
                      relevant: np.ndarray, taken: np.ndarray, harmonic: np.ndarray,
                      log_factorial: np.ndarray) -> np.ndarray:
    """E[AP@k] per query from the expected precision sum ``inside`` of the groups before the one
    holding rank k, and that group: ``before`` items before it (``relevant_before`` relevant),
    ``size`` items (``relevant`` relevant), ``taken`` of them within the top k. One term per
    possible number x of relevant items taken, in blocks of at most about TIE_TERMS terms."""
    low = np.maximum(0, taken - (size - relevant))  # the hypergeometric's support: low..high
    widths = np.minimum(relevant, taken) - low + 1
    result = np.empty(len(widths))
    for block in _blocks(widths, TIE_TERMS):
        query = np.repeat(np.arange(block.start, block.stop), widths[block])
        x = np.arange(len(query)) - np.repeat(np.cumsum(widths[block]) - widths[block] - low[block], widths[block])
        n, r, t = size[query], relevant[query], taken[query]
        probability = np.exp(_log_choose(r, x, log_factorial) + _log_choose(n - r, t - x, log_factorial)
                             - _log_choose(n, t, log_factorial))
        numerator = inside[query] + _expected_precision_sum(before[query], relevant_before[query], t, x, harmonic)
        denominator = relevant_before[query] + x
        terms = probability * np.divide(numerator, denominator, out=np.zeros(len(x)), where=denominator > 0)
        result[block] = np.bincount(query - block.start, terms, block.stop - block.start)
    return result


def _log_choose(n: np.ndarray, m: np.ndarray, log_factorial: np.ndarray) -> np.ndarray:
    """log C(n, m) for 0 <= m <= n."""
    return log_factorial[n] - log_factorial[m] - log_factorial[n - m]


def _blocks(widths: np.ndarray, limit: int) -> Iterator[slice]:
    """Consecutive slices of ``widths`` summing to at most ``limit`` each (or of one item)."""
    ends = np.cumsum(widths)
    start = 0
    while start < len(widths):
        done = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, done + limit, side="right")))
        yield slice(start, stop)
        start = stop


def distinct_codes(database: np.ndarray) -> int:
    """The number of distinct rows of packed codes (uint8), compared as 64-bit words."""
    padded = np.pad(database, ((0, 0), (0, -database.shape[1] % 8)))
    words = padded.view(np.uint64)
    ordered = np.sort(words, axis=0) if words.shape[1] == 1 else words[np.lexsort(words.T)]  # np.sort: much faster
    return int(len(ordered) > 0) + int(np.count_nonzero((ordered[1:] != ordered[:-1]).any(axis=1)))


@dataclass
class LabelRelevance:
    """Relevance from label sets: r = labels shared. Labels are multi-hot bool matrices
    (``labels.label_matrix``) over one vocabulary; an all-false row is an unknown label.
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
    def _db_masks(self) -> np.ndarray:
        return as_words(np.packbits(self.db_labels, axis=1))

    @cached_property
    def _query_masks(self) -> np.ndarray:
        return as_words(np.packbits(self.query_labels, axis=1))

    def shared(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, N) uint16 counts of shared labels."""
        return shared_labels(self._db_masks, self._query_masks[start:stop])

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
        counts = np.zeros((stop - start, self.db_size), np.uint16)
        for offset, rows in enumerate(self.relevant[start:stop]):
            counts[offset, rows] = 1
        return counts

    def left_out(self, q: int) -> np.ndarray:
        return np.unique(np.concatenate([self.junk[q], _own_row(self.self_rows, q)]).astype(int))

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
                       k: int, threads: int | None = None) -> RankingMetrics:
    """Score the Hamming ranking of each query over ``database`` (packed codes) by ``relevance``:
    shared-label counts r per database row, and rows left out of each query's ranking. Runs of
    queries are scored on ``threads`` threads (default: every core)."""
    scorer = _QueryScorer(len(database), database.shape[1] * 8, k, relevance.multi_label)
    columns, query_words = as_columns(database), as_words(queries)

    def score_chunk(start: int) -> list[_QueryScores | None]:
        # one query at a time, so that its distances and shared labels stay in the cache (whole
        # (queries x rows) matrices made this five times slower, bound by memory)
        return [scorer.score(columns, query_words[q:q + 1], relevance.shared(q, q + 1)[0], relevance.left_out(q))
                for q in range(start, min(start + QUERIES_PER_TASK, len(queries)))]

    scores: list[_QueryScores | None] = []
    with progress(total=len(queries), desc="evaluating", unit="query") as bar, \
            ThreadPoolExecutor(threads or cpu_cores()) as pool:  # the kernels run outside the GIL
        for chunk_scores in pool.map(score_chunk, range(0, len(queries), QUERIES_PER_TASK)):
            scores += chunk_scores
            bar.update(len(chunk_scores))
    result = scorer.result(len(queries), [score for score in scores if score is not None])
    result.distinct_codes = distinct_codes(database)
    return result


class _QueryScores(NamedTuple):
    ranking: tuple[float, ...]  # ranking_scores, then graded_scores for multi-label data
    counts: np.ndarray  # rows at each Hamming distance 0..bits
    relevant_counts: np.ndarray  # relevant rows at each distance
    curve: np.ndarray  # precision at each of PRECISION_CURVE_KS


class _QueryScorer:
    """Scores one query at a time (thread-safe), then the means over the scored queries."""

    def __init__(self, size: int, bits: int, k: int, multi_label: bool):
        self.bits, self.k, self.multi_label = bits, k, multi_label
        self.harmonic, self.log_factorial = harmonic_numbers(size), log_factorials(size)
        self.curve_ks = np.array([c for c in PRECISION_CURVE_KS if c <= size])

    def score(self, columns: np.ndarray, query: np.ndarray, shared: np.ndarray,
              left_out: np.ndarray) -> _QueryScores | None:
        """One query (1, words) over the database ``columns``, from the labels it shares with each
        row and the distinct rows ``left_out`` of its ranking; None without a relevant row."""
        counts, relevant_counts, ranks, distances = rank_query(columns, query, shared, left_out, self.bits)
        if not len(ranks):
            return None
        graded = ()
        if self.multi_label:  # the shared counts in ranking order, the whole ranking
            order = np.argsort(distances, kind="stable")[:len(distances) - len(left_out)]  # radix sort
            graded = graded_scores(shared[order].astype(np.int64), self.k)
        return _QueryScores(ranking_scores(ranks, self.k) + graded, counts, relevant_counts,
                            np.searchsorted(ranks, self.curve_ks, side="right") / self.curve_ks)

    def result(self, queries: int, scores: list[_QueryScores]) -> RankingMetrics:
        """The means over ``scores`` (of the queries with a relevant row) of ``queries`` queries."""
        width = 7 if self.multi_label else 4
        means = [_mean(column) for column in zip(*(s.ranking for s in scores))] if scores else [None] * width
        result = RankingMetrics(self.k, queries, len(scores), *means[:4], self.multi_label, *means[4:])
        if not scores:
            return result
        counts, relevant_counts = np.array([s.counts for s in scores]), np.array([s.relevant_counts for s in scores])
        retrieved, hits = np.cumsum(counts, axis=1), np.cumsum(relevant_counts, axis=1)
        result.tie_aware_map, result.tie_aware_precision_at_k, result.tie_aware_map_at_k = map(
            _mean, tie_aware_scores(counts, relevant_counts, self.k, self.harmonic, self.log_factorial))
        result.median_nearest_bucket = float(np.median(counts[np.arange(len(counts)), np.argmax(counts > 0, axis=1)]))
        result.precision_at_radius_2 = _mean(np.divide(hits[:, 2], retrieved[:, 2], out=np.zeros(len(scores)),
                                                       where=retrieved[:, 2] > 0))
        hit_in_top_k = [s.ranking[1] for s in scores if s.ranking[2] > 0]  # AP@k of queries with a top-k hit
        result.deephash_map_at_k = _mean(hit_in_top_k) if hit_in_top_k else None
        precision = np.divide(hits, retrieved, out=np.full(hits.shape, np.nan), where=retrieved > 0)
        defined = (~np.isnan(precision)).sum(axis=0)  # queries retrieving something at each radius
        mean_precision = np.divide(np.nansum(precision, axis=0), defined, out=np.full(self.bits + 1, np.nan),
                                   where=defined > 0)
        result.pr_curve = {"radius": list(range(self.bits + 1)), "precision": [_mean(v) for v in mean_precision],
                           "recall": [_mean(v) for v in np.mean(hits / hits[:, -1:], axis=0)]}
        result.precision_curve = {"k": self.curve_ks.tolist(),
                                  "precision": [_mean(v) for v in np.mean([s.curve for s in scores], axis=0)]}
        return result


def _mean(values) -> float | None:
    value = float(np.mean(values))
    return None if np.isnan(value) else round(value, 6)
