"""Compiled Hamming kernels (numba, compiled on first use and cached on disk).

Codes are handled as 64-bit words, the database in columns: ``columns[w, i]`` is word w of row
i, so that a kernel's inner loop reads one word of consecutive rows and the compiler turns it
into vector XOR and population counts (AVX-512 VPOPCNTQ or AVX2 where the CPU has them). Loop
indices are unsigned: numba would otherwise guard every index against negative values, which
defeats vectorisation (gathers instead of plain loads).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

BLOCK = 2048  # database rows per pass: one word column of a block (16 KiB) stays in the L1 cache
NO_DISTANCE = np.iinfo(np.int64).max  # an empty slot of a k-best list


@intrinsic
def popcount(typingctx, word):
    """LLVM's ctpop on a 64-bit word: one instruction where the CPU has POPCNT."""
    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])
    return types.uint64(types.uint64), codegen


@intrinsic
def prefetch(typingctx, array, index):
    """Ask the CPU to bring the cache line of ``array[index]`` in, for reading, without waiting for it."""
    def codegen(context, builder, signature, args):
        items = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, signature.args[0], items, [args[1]])
        byte_pointer, flag = ir.IntType(8).as_pointer(), ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, flag, flag, flag]), "llvm.prefetch.p0")
        builder.call(function, [builder.bitcast(pointer, byte_pointer), flag(0), flag(3), flag(1)])  # read, all caches
        return context.get_dummy_value()
    return types.void(array, index), codegen


def as_words(codes: np.ndarray) -> np.ndarray:
    """Packed codes (N, bytes) as (N, words) uint64, zero bytes appended to fill the last word
    (zeros on both sides of a comparison add no distance)."""
    codes = np.ascontiguousarray(codes, np.uint8)
    padding = -codes.shape[1] % 8
    if padding:
        codes = np.pad(codes, ((0, 0), (0, padding)))
    return codes.view(np.uint64)


def as_columns(codes: np.ndarray) -> np.ndarray:
    """Packed codes (N, bytes) as word columns (words, N) uint64."""
    return np.ascontiguousarray(as_words(codes).T)


@njit(nogil=True, boundscheck=False, inline="always")
def offer(best_d, best_i, q, distance, row):
    """Put (distance, row) into query q's k-best list, ordered by (distance, row), unless it does
    not beat the last entry or the row is already there (multi-index hashing meets a code once per
    table)."""
    k = best_d.shape[1]
    last = k - 1
    if distance > best_d[q, last] or (distance == best_d[q, last] and row >= best_i[q, last]):
        return
    for p in range(k):
        if best_i[q, p] == row:
            return
    position = last
    while position > 0 and (best_d[q, position - 1] > distance
                            or (best_d[q, position - 1] == distance and best_i[q, position - 1] > row)):
        best_d[q, position] = best_d[q, position - 1]
        best_i[q, position] = best_i[q, position - 1]
        position -= 1
    best_d[q, position] = distance
    best_i[q, position] = row


def empty_lists(queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty k-best lists of ``queries`` queries: distances NO_DISTANCE and rows -1 (Q, k) int64."""
    return np.full((queries, k), NO_DISTANCE, np.int64), np.full((queries, k), -1, np.int64)


@njit(nogil=True, boundscheck=False)
def all_beyond(columns, queries, q, lo, hi, threshold):
    """Whether every row ``lo``..``hi`` of ``columns`` (words, n) is farther than ``threshold``
    from query q of ``queries`` (Q, words): one vectorised pass for the smallest distance, without
    stores, for codes of one or two words; False for longer codes (not looked at)."""
    if columns.shape[0] == 1:
        if smallest_one_word(queries[q, 0], columns[0], lo, hi) > threshold:
            return True
    elif columns.shape[0] == 2:
        if smallest_two_words(queries[q, 0], columns[0], queries[q, 1], columns[1], lo, hi) > threshold:
            return True
    return False


@njit(nogil=True, boundscheck=False, inline="always")
def smallest_one_word(word, column, lo, hi):
    """The smallest distance of one-word codes ``column[lo:hi]`` to ``word`` (2^30 when none)."""
    smallest = np.int64(1 << 30)
    for i in range(lo, hi):
        smallest = min(smallest, np.int64(popcount(word ^ column[i])))
    return smallest


@njit(nogil=True, boundscheck=False, inline="always")
def smallest_two_words(word, column, word_2, column_2, lo, hi):
    """The smallest distance of two-word codes (``column``, ``column_2``) to (``word``, ``word_2``)."""
    smallest = np.int64(1 << 30)
    for i in range(lo, hi):
        smallest = min(smallest, np.int64(popcount(word ^ column[i]) + popcount(word_2 ^ column_2[i])))
    return smallest


@njit(nogil=True, boundscheck=False, inline="always")
def block_distances(columns, query, lo, hi, distances):
    """The distances of rows ``lo``..``hi`` of ``columns`` (words, n) to ``query`` (words,), into
    ``distances[:hi - lo]``: a vectorised pass per word."""
    word, column = query[0], columns[0]
    for i in range(lo, hi):
        distances[i - lo] = np.int64(popcount(word ^ column[i]))
    for w in range(1, columns.shape[0]):
        word, column = query[w], columns[w]
        for i in range(lo, hi):
            distances[i - lo] += np.int64(popcount(word ^ column[i]))


@njit(nogil=True, boundscheck=False, cache=True)
def knn_update(columns, queries, first_row, best_d, best_i, q_start, q_stop):
    """Merge the rows of ``columns`` (words, n), numbered from ``first_row``, into the k-best lists
    ``best_d`` / ``best_i`` (Q, k; int64, NO_DISTANCE and -1 when empty) of queries
    ``q_start``..``q_stop`` (``queries``: (Q, words) uint64); lists are ordered by (distance, row).

    For each block of rows and query, one vectorised pass finds the block's smallest distance; the
    rows are looked at one by one only when it beats the query's k-th distance."""
    words, n = columns.shape
    k = best_d.shape[1]
    distances = np.empty(BLOCK, np.int64)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        lo, hi = uint64(start), uint64(stop)
        for q in range(q_start, q_stop):
            kth = best_d[q, k - 1]
            word = queries[q, 0]
            column = columns[0]
            if words == 1:
                if smallest_one_word(word, column, lo, hi) < kth:
                    for i in range(lo, hi):
                        distance = np.int64(popcount(word ^ column[i]))
                        if distance < best_d[q, k - 1]:
                            offer(best_d, best_i, q, distance, first_row + np.int64(i))
                continue
            if words == 2:  # 128-bit codes: both words in one pass, 1.3x to 2x the general loop below
                word_2, column_2 = queries[q, 1], columns[1]
                if smallest_two_words(word, column, word_2, column_2, lo, hi) < kth:
                    for i in range(lo, hi):
                        distance = np.int64(popcount(word ^ column[i]) + popcount(word_2 ^ column_2[i]))
                        if distance < best_d[q, k - 1]:
                            offer(best_d, best_i, q, distance, first_row + np.int64(i))
                continue
            block_distances(columns, queries[q], lo, hi, distances)
            smallest = kth
            for i in range(uint64(0), hi - lo):
                smallest = min(smallest, distances[i])
            if smallest < kth:
                for i in range(uint64(0), hi - lo):
                    if distances[i] < best_d[q, k - 1]:
                        offer(best_d, best_i, q, distances[i], first_row + np.int64(lo + i))


@njit(nogil=True, boundscheck=False, cache=True)
def within_radius(columns, queries, first_row, radius, q_start, q_stop):
    """Every (query, row, distance) with distance at most ``radius``, for queries ``q_start``..
    ``q_stop`` (``queries``: (Q, words) uint64) and the rows of ``columns`` (words, n) numbered from
    ``first_row``: three int64 arrays. For each block of rows and query, one vectorised pass finds
    the smallest distance (codes of one or two words); the rows are looked at one by one only when
    it is within the radius."""
    n = columns.shape[1]
    found_q, found_i, found_d = np.empty(1024, np.int64), np.empty(1024, np.int64), np.empty(1024, np.int64)
    count = 0
    distances = np.empty(BLOCK, np.int64)
    for start in range(0, n, BLOCK):
        lo, hi = uint64(start), uint64(min(start + BLOCK, n))
        for q in range(q_start, q_stop):
            if all_beyond(columns, queries, q, lo, hi, radius):
                continue  # no stores: most blocks stop here
            block_distances(columns, queries[q], lo, hi, distances)
            found_q, found_i, found_d, count = collect_within(distances, hi - lo, radius, q, first_row + np.int64(lo),
                                                              found_q, found_i, found_d, count)
    return found_q[:count], found_i[:count], found_d[:count]


@njit(nogil=True, boundscheck=False, inline="always")
def collect_within(distances, n, radius, q, first_row, found_q, found_i, found_d, count):
    """Append (q, row, distance) for each of ``distances[:n]`` (rows numbered from ``first_row``)
    within ``radius`` to the first ``count`` places of ``found_*``, grown as needed; returns them
    and the new count."""
    within = 0
    for i in range(uint64(0), uint64(n)):
        within += distances[i] <= radius
    if count + within > len(found_q):  # room for twice as many
        size = 2 * (count + within)
        found_q, found_i, found_d = _grown(found_q, size), _grown(found_i, size), _grown(found_d, size)
    for i in range(uint64(0), uint64(n)):
        if distances[i] <= radius:
            found_q[count], found_i[count], found_d[count] = q, first_row + np.int64(i), distances[i]
            count += 1
    return found_q, found_i, found_d, count


@njit(nogil=True, inline="always")
def _grown(array, size):
    grown = np.empty(size, array.dtype)
    grown[:len(array)] = array
    return grown


@njit(nogil=True, boundscheck=False, cache=True)
def rank_relevant(distances, relevant, groups):
    """The ranking by (distance, row) of one query, without sorting: per distance d < ``groups``,
    the rows and the relevant rows at d, and the 1-based ranks of the relevant rows, ascending.
    Two passes: a histogram, then each row's rank from the rows before its distance group."""
    rows = uint64(len(distances))
    keyed = np.zeros(2 * groups, np.int64)  # rows at distance d: irrelevant at 2d, relevant at 2d + 1
    for i in range(uint64(0), rows):
        keyed[uint64(distances[i]) * uint64(2) + uint64(relevant[i])] += 1
    relevant_counts = keyed[1::2].copy()
    counts = keyed[::2] + relevant_counts
    ranked = np.empty(groups, np.int64)  # rows ranked so far up to each group's current end
    placed = np.empty(groups, np.int64)  # relevant rows placed so far, likewise
    ranked_total, placed_total = 0, 0
    for d in range(groups):
        ranked[d], placed[d] = ranked_total, placed_total
        ranked_total += counts[d]
        placed_total += relevant_counts[d]
    ranks = np.empty(placed_total, np.int64)
    for i in range(uint64(0), rows):
        d = distances[i]
        ranked[d] += 1
        if relevant[i]:
            ranks[placed[d]] = ranked[d]
            placed[d] += 1
    return counts, relevant_counts, ranks


@njit(nogil=True, boundscheck=False, cache=True)
def shared_labels(db_masks, query_masks):
    """(Q, N) uint16 counts of labels each query shares with each database row, from multi-hot
    label sets packed into 64-bit words (``as_words`` of ``np.packbits``)."""
    out = np.zeros((query_masks.shape[0], db_masks.shape[0]), np.uint16)
    for q in range(query_masks.shape[0]):
        for w in range(db_masks.shape[1]):
            mask = query_masks[q, w]
            if mask == 0:
                continue
            for i in range(uint64(0), uint64(db_masks.shape[0])):
                out[q, i] += np.uint16(popcount(mask & db_masks[i, w]))
    return out


@njit(nogil=True, boundscheck=False, cache=True)
def distance_matrix(columns, queries):
    """(Q, N) uint16 Hamming distances of ``queries`` (Q, words) to the rows of ``columns`` (words, N)."""
    words, n = columns.shape
    out = np.zeros((queries.shape[0], n), np.uint16)
    for q in range(queries.shape[0]):
        row = out[q]
        for w in range(words):
            word = queries[q, w]
            column = columns[w]
            for i in range(uint64(0), uint64(n)):
                row[i] += np.uint16(popcount(word ^ column[i]))
    return out
