"""Exact multi-index hashing (Norouzi, Punjani and Fleet, CVPR 2012), answered by certificate, in
batches: a join of the queries' rings with the tables' buckets.

The code's bits are split into m substrings, and each substring indexes a table of buckets. A
query probes, in each table j, the buckets within Hamming distance r_j of its own substring. By
pigeonhole, every code within distance sum_j (r_j + 1) - 1 of the query has then been seen: a
code at least r_j + 1 away in every substring is at least sum_j (r_j + 1) away in all. So once
the query's k-th distance is within that bound, its k best are final: the same rows, distances
and tie order (distance, then row) as the exact scan.

All the queries still open probe the same ring together: the buckets at radius r of one table
(the table with the smallest radius so far). A ring is one pass over its table: the (bucket,
query) pairs are sorted by bucket (a counting sort), and each bucket's codes are read once and
compared with every query that probes it, in a vectorised loop (buckets a few ahead are fetched
into the cache meanwhile). So buckets are made to hold about BUCKET_CODES codes (substrings of
about log2(N / BUCKET_CODES) bits), which keeps the per-pair overhead small beside the
comparisons; one query alone is answered the same way. After each ring, the queries whose k-th
distance is within the bound stop.

The first PILOT_QUERIES queries probe ring by ring, and tell the others how: the rings up to
the bound by which a tenth of them had stopped are probed in one pass per table (a pass streams its
table whatever its rings), and the others' lists take only codes within the pilot's farthest k-th
distance, so far fewer codes are offered while they fill (a query with fewer than k codes within
it is probed again without that limit). The rings stop where their work per query would pass
``ESCALATION_WORK`` of the rows; the queries still open then are answered by the exact scan
(``scan.knn_scan``), all together; and when most of the pilot is, so are all the others,
unprobed.

A radius search needs no certificate: every code within distance r is in the rings up to bound r,
probed in one pass per table, and collected (scanned instead when those rings would cost more).

Tables are in memory: per table, bucket offsets (2^bits + 1) and the rows (4 bytes each, 8 from
2^32 rows on) and codes sorted by bucket: 480 MB for 10M 64-bit codes (4 tables of 16 bits), 6
times the codes' size. Each table is a counting sort of the rows by substring, the tables built in
parallel (benchmarks/results/search.md times it).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit, uint64

from hashkit.hashing.progress import progress

from .base import Database, SearchIndex, by_query, ordered, register
from .kernels import (
    BLOCK,
    NO_DISTANCE,
    all_beyond,
    as_words,
    block_distances,
    collect_within,
    empty_lists,
    offer,
    prefetch,
    smallest_one_word,
    smallest_two_words,
)
from .scan import cpu_cores, knn_scan, radius_scan

BUCKET_CODES = 128  # codes per bucket the substring length aims at
MAX_SUBSTRING_BITS = 26  # a table's offsets: 2^26 entries, 512 MiB at most
PAIR_WORK = 64  # a (bucket, query) pair (sorting it, starting its loop) costs about as much as comparing 64 codes
ESCALATION_WORK = 1 / 4  # queries still open when the rings' work per query would pass this share of the rows
# are scanned (a comparison in a bucket costs 0.6 to 2 of the scan's, the scan being faster per code at more rows)
PART_QUERIES = 1 << 16  # queries probed together at most: their positions fit in 16 bits
RING_PAIRS = 1 << 24  # (bucket, query) pairs sorted at a time (32 MiB): larger query batches probe a ring in parts
PILOT_QUERIES = 64  # probed first; when more than PILOT_SCAN_SHARE of them are scanned, the rest are scanned unprobed
PILOT_SCAN_SHARE = 0.5
MERGE_SHARE = 0.1  # rings merged up to the bound by which this share of the certified pilot queries had stopped
FETCH_AHEAD = 8  # buckets whose codes are fetched into the cache ahead of their comparisons


def substring_lengths(bits: int, rows: int) -> list[int]:
    """Lengths of the substrings: about log2(rows / BUCKET_CODES) bits each, between 1 and
    MAX_SUBSTRING_BITS, as equal as they can be."""
    target = min(MAX_SUBSTRING_BITS, bits, max(1, round(math.log2(max(rows, 1) / BUCKET_CODES))))
    count = math.ceil(bits / target)
    return [bits // count + (1 if j < bits % count else 0) for j in range(count)]


def table_bytes(rows: int, bits: int) -> int:
    """Memory of the tables ``MultiIndex`` builds over ``rows`` codes of ``bits`` bits."""
    index = 4 if rows < 2**32 else 8
    return sum(((1 << n) + 1) * index + rows * (index + 8 * -(-bits // 64)) for n in substring_lengths(bits, rows))


def substring_keys(words: np.ndarray, start: int, length: int) -> np.ndarray:
    """Bits ``start``..``start + length`` of each code (``words``: (N, words) uint64) as integers."""
    return _substring_keys(np.ascontiguousarray(words), start, length)


@njit(cache=True)
def _substring_keys(words, start, length):
    keys = np.empty(len(words), np.uint64)
    for i in range(len(words)):
        keys[i] = _key(words, i, start, length)
    return keys


def ring_masks(length: int, radius: int) -> np.ndarray:
    """Every ``length``-bit mask with ``radius`` bits set (uint64), ascending."""
    return _ring_masks(length, radius, math.comb(length, radius))


@njit(cache=True)
def _ring_masks(length, radius, count):
    out = np.empty(count, np.uint64)
    mask = uint64((1 << radius) - 1)
    for n in range(count):
        out[n] = mask
        if mask == 0:
            break
        lowest = mask & (~mask + uint64(1))  # Gosper's hack: the next mask with as many bits set
        ripple = mask + lowest
        mask = (((ripple ^ mask) >> uint64(2)) // lowest) | ripple
    return out


@dataclass
class SearchStats:
    """How the queries of one search were answered: ``stopped_at[b]`` queries certified at pigeonhole
    bound b (every code within distance b seen), ``scanned`` by the exact scan."""
    stopped_at: dict[int, int]
    scanned: int  # unprobed ones included
    unprobed: int  # scanned without probing: most of the pilot queries were scanned
    candidates: int  # codes compared in buckets, over all queries
    reprobed: int = 0  # probed again without a reach: fewer than k codes within the pilot's farthest k-th distance


def stop_quantile(stopped_at: dict[int, int], share: float) -> int:
    """The smallest pigeonhole bound by which ``share`` of the queries counted in ``stopped_at``
    (bound: queries certified there) had stopped."""
    bounds = sorted(stopped_at)
    stopped = np.cumsum([stopped_at[b] for b in bounds])
    return bounds[min(int(np.searchsorted(stopped, share * stopped[-1])), len(bounds) - 1)]


def merged_passes(rings: list[tuple[int, int]], first_stop: int) -> list[tuple[int, list[int]]]:
    """Passes (table, radii) over ``rings`` (table, radius; ring t certifies bound t), in order: the
    rings up to ring ``first_stop`` merged into one pass per table, those of fewer radii first (their
    buckets are the nearest: the lists they fill let fewer codes through in the larger passes), then
    one ring a pass. A pass streams its table whatever its rings, so merging the rings before queries
    start to stop saves passes; certificates are checked after each pass, and results stay the same."""
    head = rings[:first_stop + 1]
    tables = list(dict.fromkeys(j for j, _ in head))
    merged = sorted([(j, [r for t, r in head if t == j]) for j in tables], key=lambda p: len(p[1]))
    return merged + [(j, [r]) for j, r in rings[first_stop + 1:]]


class MultiIndex:
    """Multi-index hashing tables over packed codes (N, bytes); ``search`` gives exact k-NN."""

    def __init__(self, codes: np.ndarray, threads: int | None = None):
        self.codes = np.ascontiguousarray(codes)
        words = as_words(self.codes)
        self.lengths = substring_lengths(self.codes.shape[1] * 8, len(self.codes))
        self.starts = np.cumsum([0, *self.lengths[:-1]]).tolist()
        index = np.uint32 if len(self.codes) < 2**32 else np.int64  # half the memory, and more of it in the cache

        def table(j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            offsets, rows = np.empty((1 << self.lengths[j]) + 1, index), np.empty(len(words), index)
            columns = np.empty(words.shape[::-1], np.uint64)  # word columns, as the scan reads them
            _fill_table(words, self.starts[j], self.lengths[j], offsets, rows, columns)
            return offsets, rows, columns

        with ThreadPoolExecutor(threads or cpu_cores()) as pool:  # the kernel releases the GIL
            tables = list(progress(pool.map(table, range(len(self.lengths))), total=len(self.lengths),
                                   unit="table", desc="building multi-index tables", leave=False))
        self.offsets, self.rows, self.columns = (list(arrays) for arrays in zip(*tables))

    @property
    def nbytes(self) -> int:
        """Memory the tables take (``table_bytes`` estimates it before they are built)."""
        return sum(array.nbytes for array in (*self.offsets, *self.rows, *self.columns))

    def search(self, queries: np.ndarray, k: int, threads: int | None = None,
               escalation_work: float = ESCALATION_WORK) -> tuple[np.ndarray, np.ndarray, SearchStats]:
        """Exact k nearest rows of ``queries``: distances (Q, k) int32 and rows (Q, k) int64 (-1
        pads), as ``knn_scan`` gives them, and how each query was answered. Queries still open when
        the next ring would take the work per query (codes compared plus PAIR_WORK per bucket, at the
        buckets' average size) past ``escalation_work`` x the rows are scanned; when more than
        PILOT_SCAN_SHARE of the first PILOT_QUERIES are, all the others are scanned without probing
        (codes too far apart for the tables to pay)."""
        query_words = as_words(queries)
        keys = [substring_keys(query_words, s, n) for s, n in zip(self.starts, self.lengths)]
        best_d, best_i = empty_lists(len(queries), k)
        rings, spent = self.rings()
        budget = escalation_work * len(self.codes) if k <= len(self.codes) else -1.0
        rings = rings[:int(np.searchsorted(spent[1:], budget, side="right"))]  # those within the budget
        stats = SearchStats({}, 0, 0, 0)
        threads = threads or cpu_cores()
        pilot = min(PILOT_QUERIES, len(queries))
        with ThreadPoolExecutor(threads) as pool, progress(total=len(queries), desc="multi-index search",
                                                           unit="query", unit_scale=True) as bar:
            def probe(open_queries: np.ndarray, passes: list[tuple[int, list[int]]], reach: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
                """Probe ``passes`` (table, radii) for ``open_queries``: the queries left uncertified, and
                those given up. Given a ``reach``, lists take only codes within it (the k-th distance
                starts there, so fewer codes are offered on the way), and a query with fewer than k of
                them is given up once every code within it is seen."""
                best_d[open_queries] = NO_DISTANCE if reach is None else reach + 1
                best_i[open_queries] = -1
                radii, given_up = [-1] * len(self.lengths), []
                for j, pass_radii in passes:
                    if not len(open_queries):
                        break
                    masks = self.masks(j, pass_radii)
                    ring = (masks, self.offsets[j], self.rows[j], self.columns[j], query_words, best_d, best_i)
                    stats.candidates += sum(pool.map(lambda part: _ring(part, keys[j][part], *ring),
                                                     _parts(open_queries, keys[j], len(masks), threads)))
                    radii[j] = pass_radii[-1]
                    bound = sum(radii) + len(radii) - 1  # every code within this distance is seen
                    everything = radii[j] == self.lengths[j]  # a table probed to its last bucket: every code seen
                    full = best_i[open_queries, k - 1] >= 0
                    certified = full & ((best_d[open_queries, k - 1] <= bound) | everything)
                    beyond = ~full & (reach is not None and (bound >= reach or everything))
                    if certified.any():
                        stats.stopped_at[bound] = stats.stopped_at.get(bound, 0) + int(certified.sum())
                        bar.update(int(certified.sum()))
                    given_up.append(open_queries[beyond])
                    open_queries = open_queries[~certified & ~beyond]
                return open_queries, np.concatenate([np.empty(0, np.int64), *given_up])

            scanned = np.concatenate(probe(np.arange(pilot), [(j, [radius]) for j, radius in rings]))
            if len(scanned) > PILOT_SCAN_SHARE * pilot:
                stats.unprobed = len(queries) - pilot
                scanned = np.concatenate([scanned, np.arange(pilot, len(queries))])
            else:
                passes = merged_passes(rings, stop_quantile(stats.stopped_at, MERGE_SHARE))
                reach = int(best_d[np.setdiff1d(np.arange(pilot), scanned), k - 1].max())  # the pilot's farthest
                left, given_up = probe(np.arange(pilot, len(queries)), passes, reach)
                stats.reprobed = len(given_up)  # those farther: probed again, taking every code
                scanned = np.concatenate([scanned, left, *probe(given_up, passes)])
            stats.scanned = len(scanned)
            if len(scanned):
                best_d[scanned], best_i[scanned] = knn_scan([self.codes], queries[scanned], k, threads)
                bar.update(len(scanned))
        distances, rows = ordered(best_d, best_i, k)
        return distances, rows, stats

    def radius_search(self, queries: np.ndarray, radius: int, threads: int | None = None,
                      escalation_work: float = ESCALATION_WORK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every row within Hamming distance ``radius`` of each query, as ``SearchIndex.radius``
        gives them (offsets, distances, ids). The rings up to bound ``radius`` are probed in one pass
        per table (a code within it matches some substring within its ring); when their work per
        query would pass ``escalation_work`` x the rows, every query is scanned instead."""
        rings, spent = self.rings()
        threads = threads or cpu_cores()
        if radius >= len(rings) or spent[radius + 1] > escalation_work * len(self.codes):
            return radius_scan([self.codes], queries, radius, threads)
        query_words, everyone = as_words(queries), np.arange(len(queries))
        found = []
        with ThreadPoolExecutor(threads) as pool:
            for j, pass_radii in merged_passes(rings[:radius + 1], radius):
                keys, masks = substring_keys(query_words, self.starts[j], self.lengths[j]), self.masks(j, pass_radii)
                ring = (masks, self.offsets[j], self.columns[j], query_words, radius)
                for query_of, at, distances in pool.map(lambda part: _ring_within(part, keys[part], *ring),
                                                        _parts(everyone, keys, len(masks), threads)):
                    found.append((query_of, self.rows[j][at].astype(np.int64), distances))
        query_of, ids, distances = (np.concatenate([np.empty(0, np.int64), *arrays]) for arrays in zip(*found))
        first = np.unique(query_of * len(self.codes) + ids, return_index=True)[1]  # a code met in several tables
        return by_query(len(queries), query_of[first], ids[first], distances[first])

    def masks(self, table: int, radii: list[int]) -> np.ndarray:
        """The masks of the rings of ``table`` at ``radii``."""
        return np.concatenate([ring_masks(self.lengths[table], r) for r in radii])

    def rings(self) -> tuple[list[tuple[int, int]], np.ndarray]:
        """The rings in the order probed, (table, radius), each in the table with the smallest radius
        so far, up to the first table probed to its last bucket; and the expected work before each
        ring and after the last (len + 1), per query."""
        radii, rings, spent = [-1] * len(self.lengths), [], [0.0]
        while all(r < n for r, n in zip(radii, self.lengths)):
            j = int(np.argmin(radii))
            radii[j] += 1
            rings.append((j, radii[j]))
            n = self.lengths[j]
            spent.append(spent[-1] + math.comb(n, radii[j]) * (PAIR_WORK + len(self.codes) / 2**n))
        return rings, np.array(spent)


@njit(nogil=True, boundscheck=False, inline="always")
def _key(words, i, start, length):
    """Bits ``start``..``start + length`` of row i of ``words`` (N, words) as an integer."""
    word, shift = start // 64, uint64(start % 64)
    key = words[i, word] >> shift
    if start % 64 + length > 64:
        key |= words[i, word + 1] << (uint64(64) - shift)
    return key & uint64((1 << length) - 1)


@njit(nogil=True, boundscheck=False, cache=True)
def _fill_table(words, start, length, offsets, rows, columns):
    """One table, by a counting sort of the rows by their substring (bits ``start``..``start +
    length`` of ``words`` (N, words)): ``offsets`` (2^length + 1) of each bucket's ``rows``, in
    ascending order within a bucket, and their codes in ``columns`` (words, N)."""
    offsets[:] = 0
    for i in range(words.shape[0]):
        offsets[_key(words, i, start, length) + uint64(1)] += 1
    for b in range(1, len(offsets)):
        offsets[b] += offsets[b - 1]
    placed = offsets[:-1].copy()  # each bucket's next free position
    for i in range(words.shape[0]):
        b = _key(words, i, start, length)
        position = placed[b]
        placed[b] += 1
        rows[position] = i
        for w in range(words.shape[1]):
            columns[w, position] = words[i, w]


@njit(nogil=True, boundscheck=False, inline="always")
def _offer_block(distances, n, rows, first, q, best_d, best_i, histogram):
    """Offer query q the codes of a block (``distances[:n]``, rows ``rows[first:first + n]``) at or
    within its k-th distance (ties count: a lower row at the k-th distance enters). When more than
    k of them are, only those at or within the block's own k-th smallest distance are offered: the
    others cannot enter (a list still filling would otherwise take, and drop, most of them)."""
    k = best_d.shape[1]
    kth = best_d[q, k - 1]
    within = 0
    for i in range(uint64(0), uint64(n)):
        within += distances[i] <= kth
    if within > k:
        histogram[:] = 0
        for i in range(uint64(0), uint64(n)):
            histogram[distances[i]] += 1
        seen = 0
        for d in range(len(histogram)):
            seen += histogram[d]
            if seen >= k:
                kth = min(kth, d)
                break
    if within:
        for i in range(uint64(0), uint64(n)):
            if distances[i] <= kth and distances[i] <= best_d[q, k - 1]:
                offer(best_d, best_i, q, distances[i], np.int64(rows[first + i]))


def _parts(queries: np.ndarray, keys: np.ndarray, mask_count: int, threads: int) -> list[np.ndarray]:
    """``queries`` in parts probed at once, one a thread at least, each in the order of its ``keys``
    (nearby keys: nearby buckets), of at most PART_QUERIES queries and RING_PAIRS pairs with
    ``mask_count`` masks."""
    count = max(1, min(threads, len(queries)), -(-len(queries) * mask_count // RING_PAIRS),
                -(-len(queries) // PART_QUERIES))
    return [part[np.argsort(keys[part], kind="stable")] for part in np.array_split(queries, count)]


@njit(nogil=True, boundscheck=False, inline="always")
def _join(keys, masks, buckets):
    """The (bucket, query) pairs of a pass, by a counting sort on the bucket: the buckets with pairs
    in order (``probed[:count]``), where each one's pairs end (``ends``, by bucket) and the pairs
    (positions in ``keys``, uint16)."""
    ends = np.zeros(buckets, np.int32)  # pairs per bucket, then where each bucket's pairs end
    for key in keys:
        for mask in masks:
            ends[key ^ mask] += 1
    probed = np.empty(min(buckets, len(keys) * len(masks)), np.int64)
    count, total = 0, np.int32(0)
    for b in range(buckets):
        if ends[b]:
            probed[count] = b
            count += 1
        total += ends[b]
        ends[b] = total - ends[b]  # where the bucket's pairs start, until they are placed
    pairs = np.empty(total, np.uint16)
    for mask in masks:
        for p in range(len(keys)):
            b = keys[p] ^ mask
            pairs[ends[b]] = p
            ends[b] += 1
    return probed, count, ends, pairs


@njit(nogil=True, boundscheck=False, inline="always")
def _fetch(bucket, offsets, columns, rows):
    """Start bringing a bucket's codes, and its ``rows`` unless None, into the cache."""
    first, last = uint64(offsets[bucket]), uint64(offsets[bucket + 1])
    for w in range(columns.shape[0]):
        column = columns[w]
        for i in range(first, last, 8):
            prefetch(column, i)
    if rows is not None:
        for i in range(first, last, 16):
            prefetch(rows, i)


@njit(nogil=True, boundscheck=False, cache=True)
def _ring(open_queries, keys, masks, offsets, rows, columns, queries, best_d, best_i):
    """Probe one pass of one table (buckets ``key ^ mask`` for each of ``masks``) for
    ``open_queries`` (their substring ``keys`` in this table): each bucket's codes (``columns``
    (words, N) in bucket order, ``offsets``, ``rows``) are compared with its queries, whose k-best
    lists ``best_d`` / ``best_i`` take every code at or within their k-th distance. Returns the
    number of codes compared."""
    probed, count, ends, pairs = _join(keys, masks, offsets.size - 1)
    k = best_d.shape[1]
    distances = np.empty(BLOCK, np.int64)
    histogram = np.empty(64 * columns.shape[0] + 1, np.int64)  # rows at each distance
    compared, start = 0, 0
    for n in range(count):
        b = probed[n]
        stop, first, last = ends[b], uint64(offsets[b]), uint64(offsets[b + 1])
        if n + FETCH_AHEAD < count:
            _fetch(probed[n + FETCH_AHEAD], offsets, columns, rows)  # rows: read for codes offered
        for p in range(start, stop):
            q = open_queries[pairs[p]]
            # most buckets stop here (all_beyond spelled out: as a call, 10-15% slower here, measured)
            if columns.shape[0] == 1:
                if smallest_one_word(queries[q, 0], columns[0], first, last) > best_d[q, k - 1]:
                    continue
            elif columns.shape[0] == 2:
                if smallest_two_words(queries[q, 0], columns[0], queries[q, 1], columns[1], first,
                                      last) > best_d[q, k - 1]:
                    continue
            for lo in range(first, last, BLOCK):
                hi = min(lo + BLOCK, last)
                block_distances(columns, queries[q], lo, hi, distances)
                _offer_block(distances, hi - lo, rows, lo, q, best_d, best_i, histogram)
        compared += (stop - start) * np.int64(last - first)
        start = stop
    return compared


@njit(nogil=True, boundscheck=False, cache=True)
def _ring_within(open_queries, keys, masks, offsets, columns, queries, radius):
    """``_ring`` for a radius search: (query, table position, distance) of every code within
    ``radius`` in the pass's buckets, as three int64 arrays."""
    probed, count, ends, pairs = _join(keys, masks, offsets.size - 1)
    found_q, found_at, found_d = np.empty(1024, np.int64), np.empty(1024, np.int64), np.empty(1024, np.int64)
    found = 0
    distances = np.empty(BLOCK, np.int64)
    start = 0
    for n in range(count):
        b = probed[n]
        stop, first, last = ends[b], uint64(offsets[b]), uint64(offsets[b + 1])
        if n + FETCH_AHEAD < count:
            _fetch(probed[n + FETCH_AHEAD], offsets, columns, None)  # rows: looked up afterwards, for codes found
        for p in range(start, stop):
            q = open_queries[pairs[p]]
            if all_beyond(columns, queries, q, first, last, radius):
                continue
            for lo in range(first, last, BLOCK):
                hi = min(lo + BLOCK, last)
                block_distances(columns, queries[q], lo, hi, distances)
                found_q, found_at, found_d, found = collect_within(distances, hi - lo, radius, q, np.int64(lo),
                                                                   found_q, found_at, found_d, found)
        start = stop
    return found_q[:found], found_at[:found], found_d[:found]


@register
class ExactMultiIndex(SearchIndex):
    """``MultiIndex`` as a search index: its tables are built over every code at query time."""

    name = "mih"
    exact = True
    description = "multi-index hashing, tables in memory; fastest for large query batches with near neighbours"

    def __init__(self, tables: MultiIndex):
        self.tables = tables

    @classmethod
    def memory_needed(cls, rows: int, bits: int) -> int:
        return table_bytes(rows, bits) + rows * bits // 8  # the tables and the codes

    @classmethod
    def build(cls, database: Database) -> ExactMultiIndex:
        return cls(MultiIndex(database.codes()))

    def knn(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        distances, rows, _ = self.tables.search(queries, k)
        return distances, rows

    def radius(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.tables.radius_search(queries, radius)
