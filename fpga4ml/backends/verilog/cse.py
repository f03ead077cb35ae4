"""The greedy common-subexpression search of adder_graph.py as one compiled loop over flat arrays.

Input: the terms ``sign * (signal << shift)`` of every block of every column (a block is the part
of a column whose terms may pair up). Output: the patterns extracted, in order, and the terms
that remain. The rule is Hartley's greedy: the pair pattern ``x_a << s_a +/- x_b << s_b`` (up to a
common shift and sign) with the most occurrences (ties: the smallest packed key) is computed
once and replaces its occurrences, block by block and pair by pair in term order, until no
pattern occurs twice; the new terms take part in later patterns.

Data layout (all int64 arrays, so numba compiles the loop; without numba it runs as Python):
terms by id (signal, shift, sign, block, alive); per block a slice of `slots` holding its live
term ids; per pattern (ids from a dict of packed keys) a live-pair count and a linked list of
the pairs ever recorded for it (a pair whose two terms are still alive is a live occurrence);
a binary max-heap of (count, key) entries, refreshed lazily: an entry is used only when its
count is still the pattern's count, else it is pushed again with the current count.
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


# rows of the pattern table `pat` and of the pair table `occ`
COUNT, HEAD, PUSHED = 0, 1, 2
FIRST, SECOND, NEXT = 0, 1, 2


def _record(index, key, u, t, pat, occ, n_pat, n_occ):
    """Count the pair of terms u < t under pattern `key` and add it to the pattern's list.

    Returns (pat, occ, pattern id, n_pat, n_occ) (the tables grow as needed).
    """
    if key in index:
        pid = index[key]
    else:
        pid = n_pat
        index[key] = pid
        n_pat += 1
        pat = _grow_rows(pat, pid)
        pat[COUNT, pid], pat[HEAD, pid], pat[PUSHED, pid] = 0, -1, 0
    pat[COUNT, pid] += 1
    occ = _grow_rows(occ, n_occ)
    occ[FIRST, n_occ], occ[SECOND, n_occ], occ[NEXT, n_occ] = u, t, pat[HEAD, pid]
    pat[HEAD, pid] = n_occ
    return pat, occ, pid, n_pat, n_occ + 1


def _before(c1, k1, c2, k2):
    """Heap order: more occurrences first, then the smaller key."""
    return c1 > c2 or (c1 == c2 and k1 < k2)


def _heap_push(hc, hk, size, count, key):
    """Push (count, key); returns the (possibly grown) arrays."""
    hc, hk = _grow(hc, size), _grow(hk, size)
    i = size
    while i > 0:
        parent = (i - 1) // 2
        if not _before(count, key, hc[parent], hk[parent]):
            break
        hc[i], hk[i] = hc[parent], hk[parent]
        i = parent
    hc[i], hk[i] = count, key
    return hc, hk


def _heap_pop(hc, hk, size):
    """Remove the top entry (the caller has read it); `size` is the size before the pop."""
    size -= 1
    count, key = hc[size], hk[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _before(hc[child + 1], hk[child + 1], hc[child], hk[child]):
            child += 1
        if not _before(hc[child], hk[child], count, key):
            break
        hc[i], hk[i] = hc[child], hk[child]
        i = child
    if size > 0:
        hc[i], hk[i] = count, key


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
    sig, shift, sign, block = np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.int64), \
        np.zeros(cap, np.int64)
    sig[:n0], shift[:n0], sign[:n0], block[:n0] = t_sig, t_shift, t_sign, t_block
    alive = np.zeros(cap, np.bool_)
    alive[:n0] = True
    n_blocks = len(block_start) - 1
    blen = np.zeros(n_blocks, np.int64)
    slots = np.arange(n0, dtype=np.int64)
    pos = np.zeros(cap, np.int64)
    for b in range(n_blocks):
        blen[b] = block_start[b + 1] - block_start[b]
        for k in range(blen[b]):
            pos[block_start[b] + k] = k
    index = {np.int64(-1): np.int64(-1)}  # key -> pattern id (the -1 entry types the dict for numba)
    pat, occ = np.zeros((3, 1024), np.int64), np.zeros((3, 1024), np.int64)
    n_pat, n_occ = 0, 0
    # every pair of every block, in term order (counts only: the heap is built once afterwards)
    for b in range(n_blocks if max_patterns != 0 else 0):
        start = block_start[b]
        for i in range(1, blen[b]):
            t = start + i
            for j in range(i):
                u = start + j
                key = _pair_key(sig[u], shift[u], sign[u], sig[t], shift[t], sign[t])
                pat, occ, pid, n_pat, n_occ = _record(index, key, u, t, pat, occ, n_pat, n_occ)
    hc, hk = np.zeros(1024, np.int64), np.zeros(1024, np.int64)
    size = 0
    for key, pid in index.items():
        if pid >= 0 and pat[COUNT, pid] >= 2:
            hc, hk = _heap_push(hc, hk, size, pat[COUNT, pid], key)
            size += 1
            pat[PUSHED, pid] = pat[COUNT, pid]
    ext_keys, ext_sigs = np.zeros(64, np.int64), np.zeros(64, np.int64)
    ext_reused = np.zeros(64, np.bool_)
    n_ext, n_terms = 0, n0
    while size > 0 and n_ext != max_patterns:
        count, key = hc[0], hk[0]
        _heap_pop(hc, hk, size)
        size -= 1
        pid = index[key]
        actual = pat[COUNT, pid]
        if actual != count:  # a stale entry: requeue with the current count
            if actual >= 2:
                hc, hk = _heap_push(hc, hk, size, actual, key)
                size += 1
            pat[PUSHED, pid] = actual if actual >= 2 else 0
            continue
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
            for t in (t1, t2):  # take both terms out of the block and their pairs out of the counts
                alive[t] = False
                start, last = block_start[b], block_start[b] + blen[b] - 1
                slots[start + pos[t]] = slots[last]
                pos[slots[last]] = pos[t]
                blen[b] -= 1
                for q in range(start, start + blen[b]):
                    u = slots[q]
                    pat[COUNT, index[_pair_key(sig[u], shift[u], sign[u], sig[t], shift[t], sign[t])]] -= 1
            t = n_terms
            n_terms += 1
            sig[t], shift[t], sign[t], block[t], alive[t] = new_sig, m, sign[a], b, True
            start = block_start[b]
            for q in range(start, start + blen[b]):  # pairs of the new term with the block's others
                u = slots[q]
                key2 = _pair_key(sig[u], shift[u], sign[u], sig[t], shift[t], sign[t])
                pat, occ, pid2, n_pat, n_occ = _record(index, key2, u, t, pat, occ, n_pat, n_occ)
                c2 = pat[COUNT, pid2]
                if c2 >= 2 and c2 > pat[PUSHED, pid2]:
                    hc, hk = _heap_push(hc, hk, size, c2, key2)
                    size += 1
                    pat[PUSHED, pid2] = c2
            slots[start + blen[b]] = t
            pos[t] = blen[b]
            blen[b] += 1
    return (ext_keys[:n_ext], ext_sigs[:n_ext], ext_reused[:n_ext], n_terms,
            sig[:n_terms], shift[:n_terms], sign[:n_terms], block[:n_terms], alive[:n_terms])


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
    pat[HEAD, pid], pat[PUSHED, pid] = -1, 0
    order = np.argsort(first * cap + second)
    order = order[np.argsort(blocks[order], kind='mergesort')]
    return first[order], second[order]


if njit is not None:
    _pair_key = njit(cache=True, inline='always')(_pair_key)
    _grow = njit(cache=True)(_grow)
    _grow_rows = njit(cache=True)(_grow_rows)
    _record = njit(cache=True)(_record)
    _live_pairs = njit(cache=True)(_live_pairs)
    _before = njit(cache=True, inline='always')(_before)
    _heap_push = njit(cache=True)(_heap_push)
    _heap_pop = njit(cache=True)(_heap_pop)
    _greedy_run = njit(cache=True)(_greedy)
else:  # pragma: no cover
    _greedy_run = _greedy
