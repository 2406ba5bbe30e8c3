"""Exact multi-index hashing (Norouzi, Punjani and Fleet, CVPR 2012), answered by certificate.

The code's bits are split into m substrings, and each substring indexes a table of buckets. A
query probes, in each table j, the buckets within Hamming distance r_j of its own substring. By
pigeonhole, every code within distance sum_j (r_j + 1) - 1 of the query has then been seen: a
code at least r_j + 1 away in every substring is at least sum_j (r_j + 1) away in all. So once
the query's k-th distance is within that bound, its k best are final: the same rows, distances
and tie order (distance, then row) as the exact scan. Until then the radii grow one table at a
time; a query whose probing would cost more than scanning (``ESCALATION_WORK``) is answered by
the exact scan instead (``search.knn_scan``). ``MultiIndex.search`` reports how many queries
stopped at each bound and how many were scanned.

Tables are in memory: per table, bucket offsets (2^bits + 1) and the rows (4 bytes each, 8 from 2^32
rows on) and codes sorted by bucket, so that a bucket's codes are read in one stretch: 394 MB for
10M 64-bit codes (3 tables), 5 times the codes' size.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit, uint64

from .kernels import as_words, empty_lists, offer, popcount
from .search import _ordered, cpu_cores, even_parts, knn_scan

MAX_SUBSTRING_BITS = 26  # a table's offsets: 2^26 entries, 512 MiB at most
ESCALATION_WORK = 1 / 256  # a query is scanned instead when its probing would take more than this share of the rows
# in work (bucket lookups plus codes compared): each costs 100 to 200 times a code of the vectorised scan (random
# access, one at a time)
PILOT_QUERIES = 256  # probed first; when more than PILOT_SCAN_SHARE of them escalate, the rest are scanned unprobed
PILOT_SCAN_SHARE = 0.5


def substring_lengths(bits: int, rows: int) -> list[int]:
    """Lengths of the substrings: about log2(rows) bits each (Norouzi et al.'s choice, which keeps
    buckets holding about one code), at most MAX_SUBSTRING_BITS, as equal as they can be."""
    target = min(MAX_SUBSTRING_BITS, max(1, round(math.log2(max(rows, 2)))))
    count = max(1, math.ceil(bits / target))
    return [bits // count + (1 if j < bits % count else 0) for j in range(count)]


def substring_keys(words: np.ndarray, start: int, length: int) -> np.ndarray:
    """Bits ``start``..``start + length`` of each code (``words``: (N, words) uint64) as integers."""
    word, shift = divmod(start, 64)
    keys = words[:, word] >> np.uint64(shift)
    if shift + length > 64:
        keys |= words[:, word + 1] << np.uint64(64 - shift)
    return keys & np.uint64((1 << length) - 1)


@dataclass
class SearchStats:
    """How the queries of one search were answered: ``stopped_at[b]`` queries certified at pigeonhole
    bound b (every code within distance b seen), ``scanned`` by the exact scan."""
    stopped_at: dict[int, int]
    scanned: int  # unprobed ones included
    unprobed: int  # scanned without probing: most of the pilot queries escalated
    candidates: int  # codes whose distance was computed, over all probed queries


class MultiIndex:
    """Multi-index hashing tables over packed codes (N, bytes); ``search`` gives exact k-NN."""

    def __init__(self, codes: np.ndarray):
        self.codes = np.ascontiguousarray(codes)
        words = as_words(self.codes)
        self.lengths = substring_lengths(self.codes.shape[1] * 8, len(self.codes))
        self.starts = np.cumsum([0, *self.lengths[:-1]]).tolist()
        self.offsets, self.rows, self.sorted_words = [], [], []
        index = np.uint32 if len(self.codes) < 2**32 else np.int64  # half the memory, and more of it in the cache
        for start, length in zip(self.starts, self.lengths):
            keys = substring_keys(words, start, length)
            order = np.argsort(keys, kind="stable")
            counts = np.bincount(keys, minlength=1 << length)
            self.offsets.append(np.concatenate([[0], np.cumsum(counts)]).astype(index))
            self.rows.append(order.astype(index))
            self.sorted_words.append(words[order])

    def search(self, queries: np.ndarray, k: int, threads: int | None = None,
               escalation_work: float = ESCALATION_WORK) -> tuple[np.ndarray, np.ndarray, SearchStats]:
        """Exact k nearest rows of ``queries``: distances (Q, k) int32 and rows (Q, k) int64 (-1
        pads), as ``knn_scan`` gives them, and how each query was answered. A query is scanned once
        its probing would take more than ``escalation_work`` x the rows in work (``_probe``); when
        more than PILOT_SCAN_SHARE of the first PILOT_QUERIES are, all the others are scanned
        without probing (codes too far apart for the tables to pay)."""
        query_words = as_words(queries)
        keys = np.stack([substring_keys(query_words, s, n) for s, n in zip(self.starts, self.lengths)], 1)
        best_d, best_i = empty_lists(len(queries), k)
        bound = np.full(len(queries), -1, np.int64)  # -1: escalated to the scan
        candidates = np.zeros(len(queries), np.int64)
        budget = int(escalation_work * len(self.codes)) if k <= len(self.codes) else -1
        lengths = np.array(self.lengths, np.int64)
        ring_work = np.array([[math.comb(n, r) * (1 + len(self.codes) / 2 ** n) for r in range(lengths.max() + 1)]
                              for n in lengths])  # expected bucket lookups plus codes of each ring
        tables = (lengths, ring_work, tuple(self.offsets), tuple(self.rows), tuple(self.sorted_words))
        threads = threads or cpu_cores()

        def probe(start: int, stop: int) -> None:
            with ThreadPoolExecutor(threads) as pool:  # the kernel releases the GIL
                list(pool.map(lambda part: _probe(*tables, query_words, keys, best_d, best_i, bound, candidates,
                                                   budget, start + part[0], start + part[1]),
                              even_parts(stop - start, threads)))

        pilot = min(PILOT_QUERIES, len(queries))
        probe(0, pilot)
        unprobed = 0
        if np.mean(bound[:pilot] < 0) <= PILOT_SCAN_SHARE:
            probe(pilot, len(queries))
        else:
            unprobed = len(queries) - pilot
        scanned = np.flatnonzero(bound < 0)
        if len(scanned):
            best_d[scanned], best_i[scanned] = knn_scan([self.codes], queries[scanned], k, threads)
        distances, rows = _ordered(best_d, best_i, k)
        stopped = np.bincount(bound[bound >= 0]) if (bound >= 0).any() else np.zeros(0, np.int64)
        stats = SearchStats({b: int(n) for b, n in enumerate(stopped) if n}, len(scanned), unprobed,
                            int(candidates.sum()))
        return distances, rows, stats


PROBE_CHUNK = 512  # buckets of a ring looked up before their codes are read: independent loads the CPU overlaps


@njit(nogil=True, boundscheck=False, cache=True)
def _probe(lengths, ring_work, offsets, rows, sorted_words, queries, keys, best_d, best_i, bound, candidates,
           budget, q_start, q_stop):
    """Probe the tables (substring ``lengths``; per table, bucket ``offsets``, ``rows`` and
    ``sorted_words`` in bucket order) for queries ``q_start``..``q_stop``, growing one table's
    radius at a time (the table with the smallest), until the k-th distance is within the
    pigeonhole bound, stored in ``bound[q]``. A query stops with -1 there (the caller scans it)
    as soon as its work (bucket lookups plus codes compared) passes ``budget``, or would in its next
    ring by that ring's expected work (``ring_work[table, radius]``).

    A ring's buckets are enumerated (Gosper's hack) PROBE_CHUNK at a time; the chunk's offsets are
    read in one loop and its codes in the next, so that the cache misses of different buckets
    overlap instead of waiting on each other."""
    tables = len(lengths)
    words = queries.shape[1]
    k = best_d.shape[1]
    radii = np.empty(tables, np.int64)
    buckets = np.empty(PROBE_CHUNK, np.uint64)
    firsts = np.empty(PROBE_CHUNK, np.int64)
    lasts = np.empty(PROBE_CHUNK, np.int64)
    everything = 64 * words  # no distance exceeds it
    for q in range(q_start, q_stop):
        radii[:] = -1
        certified = -1  # sum of (r_j + 1) - 1: every code within it has been compared
        seen, work = 0, 0
        while work <= budget and certified < everything:
            if best_i[q, k - 1] >= 0 and best_d[q, k - 1] <= certified:
                break
            j = np.argmin(radii)
            radii[j] += 1
            r = radii[j]
            length = lengths[j]
            if r > length:  # every bucket of a table probed: every code compared
                certified = everything
                break
            if work + ring_work[j, r] > budget:  # the ring would be left unfinished
                break
            table_offsets, table_rows, table_words = offsets[j], rows[j], sorted_words[j]
            key = keys[q, j]
            flips = uint64((1 << r) - 1)  # the r lowest bits; Gosper's hack enumerates the rest
            end = uint64(1) << uint64(length)
            while flips < end and work <= budget:
                count = 0
                while flips < end and count < PROBE_CHUNK:
                    buckets[count] = key ^ flips
                    count += 1
                    if flips == 0:
                        flips = end
                        break
                    lowest = flips & (~flips + uint64(1))
                    ripple = flips + lowest
                    flips = (((ripple ^ flips) >> uint64(2)) // lowest) | ripple
                for b in range(count):
                    firsts[b] = table_offsets[buckets[b]]
                    lasts[b] = table_offsets[buckets[b] + uint64(1)]
                for b in range(count):
                    for e in range(firsts[b], lasts[b]):
                        distance = np.int64(0)
                        for w in range(words):
                            distance += np.int64(popcount(queries[q, w] ^ table_words[e, w]))
                        if distance <= best_d[q, k - 1]:  # the row is read only for a contender
                            offer(best_d, best_i, q, distance, table_rows[e])
                    seen += lasts[b] - firsts[b]
                    work += lasts[b] - firsts[b] + 1
            if flips < end:  # the ring is unfinished: the bound stays
                break
            certified += 1
        candidates[q] = seen
        bound[q] = certified if best_i[q, k - 1] >= 0 and best_d[q, k - 1] <= certified else -1

