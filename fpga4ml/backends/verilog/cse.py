"""The greedy common-subexpression search of adder_graph.py as one compiled loop over flat arrays.

Input: the terms ``sign * (signal << shift)`` of every block of every column (a block is the part
of a column whose terms may pair up). Output: the patterns extracted, in order, and the terms
that remain. The rule is Hartley's greedy: the pair pattern ``x_a << s_a +/- x_b << s_b`` (up to a
common shift and sign) with the most occurrences (ties: the smallest packed key) is computed
once and replaces its occurrences, block by block and pair by pair in term order, until no
pattern occurs twice; the new terms take part in later patterns.

Data layout (integer arrays, so numba compiles the loop; without numba it runs as Python):
terms by id (signal, shift, sign, block, alive); per block a slice of `slots` holding its live
term ids; per pattern (ids from an open-addressing table of packed keys) its key, live-pair
count and a linked list of the pairs ever recorded for it (a pair whose two terms are still
alive is a live occurrence); an indexed binary heap of the patterns that occur at least twice,
ordered by (count descending, key), updated on every count change. Every pair update costs
O(1) plus a short heap move, so the search is linear in the pairs the blocks hold.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a core dependency; without it the same functions run as (slow) Python
    from numba import njit
except ImportError:  # pragma: no cover
    njit = None

# packed pattern key (as adder_graph._key): a_sig << 39 | a_shift << 32 | b_sig << 8 | b_shift << 1 | negative
SIG_LIMIT, SHIFT_LIMIT = 1 << 24, 1 << 7


def _pair_key(s1, h1, g1, s2, h2, g2):
    """Packed key of the pair of terms (s1 << h1) * g1 and (s2 << h2) * g2, independent of order and scale."""
    m = h1 if h1 < h2 else h2
    neg = 1 if g1 != g2 else 0
    if s1 < s2 or (s1 == s2 and h1 <= h2):
        return (s1 << 39) | ((h1 - m) << 32) | (s2 << 8) | ((h2 - m) << 1) | neg
    return (s2 << 39) | ((h2 - m) << 32) | (s1 << 8) | ((h1 - m) << 1) | neg


def _grow(a, n):
    """`a`, or a copy at least twice as long when index n does not fit."""
    if n < len(a):
        return a
    b = np.zeros(max(2 * len(a), n + 1), a.dtype)
    b[:len(a)] = a
    return b


def _grow_rows(a, n):
    """A 2-D `a`, or a copy with at least twice the columns when column n does not fit."""
    if n < a.shape[1]:
        return a
    b = np.zeros((a.shape[0], max(2 * a.shape[1], n + 1)), a.dtype)
    b[:, :a.shape[1]] = a
    return b


# rows of the pattern table `pat` (POS: place in the heap, -1 outside) and of the pair table `occ`
COUNT, HEAD, KEY, POS = 0, 1, 2, 3
FIRST, SECOND, NEXT = 0, 1, 2


def _slot(table, key):
    """The slot of `key` in the open-addressing table (row 0 keys, -1 empty; row 1 values), or its empty slot."""
    mask = table.shape[1] - 1
    a, b, c = key & 0xFFFFF, (key >> 20) & 0xFFFFF, key >> 40  # products below 2^56: no overflow
    i = (((a * 0x9E3779B1) ^ (b * 0x85EBCA77) ^ (c * 0xC2B2AE3D)) >> 20) & mask
    while table[0, i] != key and table[0, i] != -1:
        i = (i + 1) & mask
    return i


def _rehash(table):
    """The table with twice the slots (kept at most half full)."""
    new = np.full((2, 2 * table.shape[1]), -1, np.int64)
    for i in range(table.shape[1]):
        if table[0, i] != -1:
            k = _slot(new, table[0, i])
            new[0, k], new[1, k] = table[0, i], table[1, i]
    return new


def _record(table, key, u, t, pat, occ, n_pat, n_occ):
    """Count the pair of terms u < t under pattern `key` and add it to the pattern's list.

    Returns (table, pat, occ, pattern id, n_pat, n_occ) (the tables grow as needed).
    """
    k = _slot(table, key)
    if table[0, k] == key:
        pid = table[1, k]
    else:
        pid = n_pat
        n_pat += 1
        if 2 * n_pat > table.shape[1]:
            table = _rehash(table)
            k = _slot(table, key)
        table[0, k], table[1, k] = key, pid
        pat = _grow_rows(pat, pid)
        pat[COUNT, pid], pat[HEAD, pid], pat[KEY, pid], pat[POS, pid] = 0, -1, key, -1
    pat[COUNT, pid] += 1
    occ = _grow_rows(occ, n_occ)
    occ[FIRST, n_occ], occ[SECOND, n_occ], occ[NEXT, n_occ] = u, t, pat[HEAD, pid]
    pat[HEAD, pid] = n_occ
    return table, pat, occ, pid, n_pat, n_occ + 1


def _before(pat, p, q):
    """Heap order of patterns p and q: more occurrences first, then the smaller key."""
    return pat[COUNT, p] > pat[COUNT, q] or (pat[COUNT, p] == pat[COUNT, q] and pat[KEY, p] < pat[KEY, q])


def _sift(heap, pat, i, size):
    """Move heap entry i up or down to its place."""
    pid = heap[i]
    while i > 0 and _before(pat, pid, heap[(i - 1) // 2]):
        parent = heap[(i - 1) // 2]
        heap[i], pat[POS, parent] = parent, i
        i = (i - 1) // 2
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _before(pat, heap[child + 1], heap[child]):
            child += 1
        if not _before(pat, heap[child], pid):
            break
        heap[i], pat[POS, heap[child]] = heap[child], i
        i = child
    heap[i], pat[POS, pid] = pid, i


def _update(heap, pat, pid, size):
    """Keep pattern pid in the heap exactly while it occurs at least twice; returns (heap, size)."""
    i = pat[POS, pid]
    if pat[COUNT, pid] >= 2:
        if i < 0:
            heap = _grow(heap, size)
            heap[size] = pid
            i, size = size, size + 1
        _sift(heap, pat, i, size)
    elif i >= 0:
        size -= 1
        last = heap[size]
        pat[POS, pid] = -1
        if last != pid:
            heap[i], pat[POS, last] = last, i
            _sift(heap, pat, i, size)
    return heap, size


def _greedy(t_sig, t_shift, t_sign, t_block, block_start, next_sig, known_keys, known_sigs, max_patterns):
    """Run the greedy search; see the module docstring.

    Terms come block by block (block_start: CSR offsets into the term arrays). New signals get
    ids next_sig, next_sig + 1, ... except patterns found in `known_keys` (sorted), which reuse
    `known_sigs`. At most `max_patterns` patterns are extracted (-1: no limit).
    Returns (pattern keys, their signals, reused flags, number of terms, term signal, shift,
    sign, block, alive).
    """
    n0 = len(t_sig)
    cap = 2 * n0 + 1  # each extraction replaces two terms by one: at most n0 new terms
    sig, shift, sign, block, alive = _term_arrays(t_sig, t_shift, t_sign, t_block, cap)
    n_blocks = len(block_start) - 1
    blen = block_start[1:] - block_start[:-1]  # live terms per block, held in slots[block_start[b]:][:blen[b]]
    slots = np.arange(n0, dtype=np.int64)
    pos = np.zeros(cap, np.int64)  # a live term's place in its block's slots
    pos[:n0] = slots - block_start[t_block]
    table = np.full((2, 1024), -1, np.int64)  # pattern key -> pattern id
    pairs = np.sum(blen * (blen - 1) // 2) if max_patterns != 0 else 0
    pat, occ = np.zeros((4, 1024), np.int64), np.zeros((3, pairs + n0 + 1), np.int32)
    n_pat, n_occ = 0, 0
    heap = np.zeros(1024, np.int64)
    size = 0
    # every pair of every block, in term order (counts only: the heap is built once afterwards)
    for b in range(n_blocks if max_patterns != 0 else 0):
        start = block_start[b]
        for i in range(1, blen[b]):
            table, pat, occ, n_pat, n_occ, heap, size = _record_pairs(
                start + i, slots[start:start + i], sig, shift, sign, table, pat, occ, n_pat, n_occ, heap, size, False)
    for pid in range(n_pat):
        heap, size = _update(heap, pat, pid, size)
    ext_keys, ext_sigs = np.zeros(64, np.int64), np.zeros(64, np.int64)
    ext_reused = np.zeros(64, np.bool_)
    n_ext, n_terms = 0, n0
    while size > 0 and n_ext != max_patterns:
        pid = heap[0]
        key = pat[KEY, pid]
        first, second = _live_pairs(pat, occ, pid, alive, block, cap)
        k = np.searchsorted(known_keys, key)
        reused = k < len(known_keys) and known_keys[k] == key
        new_sig = known_sigs[k] if reused else next_sig
        if not reused:
            next_sig += 1
        ext_keys, ext_sigs, ext_reused = _grow(ext_keys, n_ext), _grow(ext_sigs, n_ext), _grow(ext_reused, n_ext)
        ext_keys[n_ext], ext_sigs[n_ext], ext_reused[n_ext] = key, new_sig, reused
        n_ext += 1
        for r in range(len(first)):
            t1, t2 = first[r], second[r]
            if not (alive[t1] and alive[t2]):
                continue  # consumed by an overlapping occurrence in this block
            b = block[t1]
            a = t1 if sig[t1] < sig[t2] or (sig[t1] == sig[t2] and shift[t1] <= shift[t2]) else t2
            m = shift[t1] if shift[t1] < shift[t2] else shift[t2]
            start = block_start[b]
            for t in (t1, t2):  # take both terms out of the block and their pairs out of the counts
                alive[t] = False
                slots[start + pos[t]] = slots[start + blen[b] - 1]
                pos[slots[start + pos[t]]] = pos[t]
                blen[b] -= 1
                heap, size = _forget_pairs(t, slots[start:start + blen[b]], sig, shift, sign, table, pat, heap, size)
            t = n_terms
            n_terms += 1
            sig[t], shift[t], sign[t], block[t], alive[t] = new_sig, m, sign[a], b, True
            table, pat, occ, n_pat, n_occ, heap, size = _record_pairs(
                t, slots[start:start + blen[b]], sig, shift, sign, table, pat, occ, n_pat, n_occ, heap, size, True)
            slots[start + blen[b]] = t
            pos[t] = blen[b]
            blen[b] += 1
    return (ext_keys[:n_ext], ext_sigs[:n_ext], ext_reused[:n_ext], n_terms,
            sig[:n_terms], shift[:n_terms], sign[:n_terms], block[:n_terms], alive[:n_terms])


def _term_arrays(t_sig, t_shift, t_sign, t_block, cap):
    """(signal, shift, sign, block, alive) arrays with room for `cap` terms, the given ones alive."""
    n0 = len(t_sig)
    sig, shift, sign, block = np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.int64), \
        np.zeros(cap, np.int64)
    sig[:n0], shift[:n0], sign[:n0], block[:n0] = t_sig, t_shift, t_sign, t_block
    alive = np.zeros(cap, np.bool_)
    alive[:n0] = True
    return sig, shift, sign, block, alive


def _record_pairs(t, others, sig, shift, sign, table, pat, occ, n_pat, n_occ, heap, size, live):
    """Record the pairs of term t with each of `others` (lower ids); with `live`, keep the heap up to date.

    Returns the (possibly grown) tables and the counts.
    """
    for u in others:
        key = _pair_key(sig[u], shift[u], sign[u], sig[t], shift[t], sign[t])
        table, pat, occ, pid, n_pat, n_occ = _record(table, key, u, t, pat, occ, n_pat, n_occ)
        if live:
            heap, size = _update(heap, pat, pid, size)
    return table, pat, occ, n_pat, n_occ, heap, size


def _forget_pairs(t, others, sig, shift, sign, table, pat, heap, size):
    """Uncount the pairs of the removed term t with each of `others`; returns the heap and its size."""
    for u in others:
        pid = table[1, _slot(table, _pair_key(sig[u], shift[u], sign[u], sig[t], shift[t], sign[t]))]
        pat[COUNT, pid] -= 1
        heap, size = _update(heap, pat, pid, size)
    return heap, size


def _live_pairs(pat, occ, pid, alive, block, cap):
    """The live occurrences of pattern pid as (first terms, second terms), by (block, first, second).

    Every recorded pair of the pattern is dead afterwards (extracted or overlapped), so the list is emptied.
    """
    count = pat[COUNT, pid]
    first, second, blocks = np.zeros(count, np.int64), np.zeros(count, np.int64), np.zeros(count, np.int64)
    n = 0
    o = pat[HEAD, pid]
    while o >= 0:
        if alive[occ[FIRST, o]] and alive[occ[SECOND, o]]:
            first[n], second[n], blocks[n] = occ[FIRST, o], occ[SECOND, o], block[occ[FIRST, o]]
            n += 1
        o = occ[NEXT, o]
    pat[HEAD, pid] = -1
    order = np.argsort(first * cap + second)
    order = order[np.argsort(blocks[order], kind='mergesort')]
    return first[order], second[order]


if njit is not None:
    _pair_key = njit(cache=True)(_pair_key)
    _grow = njit(cache=True)(_grow)
    _grow_rows = njit(cache=True)(_grow_rows)
    _slot = njit(cache=True)(_slot)
    _rehash = njit(cache=True)(_rehash)
    _record = njit(cache=True)(_record)
    _live_pairs = njit(cache=True)(_live_pairs)
    _record_pairs = njit(cache=True)(_record_pairs)
    _term_arrays = njit(cache=True)(_term_arrays)
    _forget_pairs = njit(cache=True)(_forget_pairs)
    _before = njit(cache=True)(_before)
    _sift = njit(cache=True)(_sift)
    _update = njit(cache=True)(_update)
    _greedy_run = njit(cache=True)(_greedy)
else:  # pragma: no cover
    _greedy_run = _greedy
