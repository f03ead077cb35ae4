"""Constant matrix-vector products as multiplier-free adder graphs.

y_j = sum_i x_i * W[i, j] + c_j for an integer matrix W is built from shifts and additions:

1. every weight is recoded in canonical signed digits (CSD: digits in {-1, 0, +1}, no two
   adjacent non-zero), so a weight with k non-zero digits costs k - 1 additions and a zero
   weight costs nothing;
2. common subexpressions are shared across the whole matrix: the most frequent pair pattern
   ``x_a << s_a +/- x_b << s_b`` (up to a common shift and sign) is computed once and replaces
   its occurrences in every column, until no pattern occurs twice (greedy, as Hartley's CSE);
   extracted terms may themselves take part in later patterns; pairs are formed within blocks of
   BLOCK_ROWS inputs of a column (patterns still shared across all blocks and columns);
3. what remains of each column is summed by a balanced tree that always adds the two
   shallowest terms first (so the adder depth stays close to log2(terms)), and among equally
   deep terms the two of smallest magnitude (most significant bit), so that large terms meet
   late and the narrow low parts pass through adders unchanged.

All widths follow from interval bounds (the netlist computes them), so every adder is exactly
as wide as its values need.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

import numpy as np

from .netlist import Netlist


def csd(value: int) -> list[tuple[int, int]]:
    """Canonical signed digits of an integer as (shift, sign) pairs, least significant first."""
    digits = []
    shift = 0
    v = int(value)
    while v:
        if v & 1:
            d = 2 - (v & 3)  # +1 when v = 1 mod 4, -1 when v = 3 mod 4
            digits.append((shift, d))
            v -= d
        v >>= 1
        shift += 1
    return digits


#: inputs per block of a column in the common-subexpression search (see constant_matvec): on the
#: dense JSC MLP, 32 instead of 64 (no blocks) costs 1.8 % more estimated LUTs and takes 30 % less time
BLOCK_ROWS = 32


class Term(NamedTuple):
    """sign * (signal << shift): one summand of a column (a tuple: the CSE loops unpack it)."""

    sig: int
    shift: int
    sign: int


# Pair patterns and occurrences are packed into ints (hashing tuples dominated the run time):
# key = a_sig << 39 | a_shift << 32 | b_sig << 8 | b_shift << 1 | (signs differ),
# occurrence = column << 48 | term id << 24 | term id.
_SIG_LIMIT, _SHIFT_LIMIT, _TID_MASK = 1 << 24, 1 << 7, (1 << 24) - 1


def _key(sig_a: int, sa: int, sig_b: int, sb: int, negative: bool) -> int:
    return (sig_a << 39) | (sa << 32) | (sig_b << 8) | (sb << 1) | int(negative)


def _unkey(key: int) -> tuple[int, int, int, int, int]:
    """(sig_a, shift_a, sig_b, shift_b, sign of b) of a packed pattern key."""
    return key >> 39, (key >> 32) & 127, (key >> 8) & (_SIG_LIMIT - 1), (key >> 1) & 127, -1 if key & 1 else 1


class _Columns:
    """The columns' terms plus an index of every pair pattern, where it occurs and how often."""

    def __init__(self, columns: list[list[Term]]) -> None:
        self.terms: list[dict[int, Term]] = []
        self.occurrences: dict[tuple, set[tuple[int, int, int]]] = {}
        #: patterns by occurrence count (only counts >= 2), and the highest non-empty count
        self.buckets: dict[int, set[tuple]] = {}
        self.top = 0
        self._next = 0
        for col, terms in enumerate(columns):
            self.terms.append({})
            for term in terms:
                self.insert(col, term)

    @staticmethod
    def pattern(t1: Term, t2: Term) -> tuple[int, Term, Term, int]:
        """(key, first, second, common shift) of a pair; the key is independent of order and scale."""
        a, b = (t1, t2) if (t1.sig, t1.shift) <= (t2.sig, t2.shift) else (t2, t1)
        m = min(a.shift, b.shift)
        return _key(a.sig, a.shift - m, b.sig, b.shift - m, a.sign != b.sign), a, b, m

    def insert(self, col: int, term: Term) -> int:
        """Add a term to a column and index its pairs with the column's other terms."""
        tid = self._next
        self._next += 1
        occurrences, buckets = self.occurrences, self.buckets
        sig, shift, sign = term
        for other_id, (s2, h2, g2) in self.terms[col].items():  # the hot loop: pattern() inlined
            m = shift if shift < h2 else h2
            if sig < s2 or (sig == s2 and shift <= h2):
                key = (sig << 39) | ((shift - m) << 32) | (s2 << 8) | ((h2 - m) << 1) | (sign != g2)
            else:
                key = (s2 << 39) | ((h2 - m) << 32) | (sig << 8) | ((shift - m) << 1) | (sign != g2)
            pair = (col << 48) | (other_id << 24) | tid
            occ = occurrences.get(key)
            if occ is None:
                occurrences[key] = {pair}
                continue
            occ.add(pair)
            n = len(occ)
            if n > 2:
                buckets[n - 1].discard(key)
            bucket = buckets.get(n)
            if bucket is None:
                buckets[n] = bucket = set()
            bucket.add(key)
            if n > self.top:
                self.top = n
        self.terms[col][tid] = term
        return tid

    def remove(self, col: int, tid: int) -> Term:
        """Take a term out of a column and out of the pair index."""
        term = self.terms[col].pop(tid)
        occurrences, buckets = self.occurrences, self.buckets
        sig, shift, sign = term
        for other_id, (s2, h2, g2) in self.terms[col].items():
            m = shift if shift < h2 else h2
            if sig < s2 or (sig == s2 and shift <= h2):
                key = (sig << 39) | ((shift - m) << 32) | (s2 << 8) | ((h2 - m) << 1) | (sign != g2)
            else:
                key = (s2 << 39) | ((h2 - m) << 32) | (sig << 8) | ((shift - m) << 1) | (sign != g2)
            occ = occurrences[key]
            occ.discard((col << 48) | (other_id << 24) | tid if other_id < tid else (col << 48) | (tid << 24) | other_id)
            n = len(occ)
            if n >= 1:
                buckets[n + 1].discard(key)
                if n >= 2:
                    buckets[n].add(key)
            else:
                del occurrences[key]
        return term

    def best(self) -> tuple | None:
        """The pattern with the most occurrences (at least two; ties: the smallest key), or None."""
        while self.top >= 2:
            bucket = self.buckets.get(self.top)
            if bucket:
                return min(bucket)
            self.top -= 1
        return None


def _extract(cols: _Columns, nl: Netlist, key: tuple, frac: int, depth: dict[int, int]) -> int:
    """Compute pattern `key` once and substitute it in every column where it still occurs."""
    sig_a, sa, sig_b, sb, sign = _unkey(key)
    new_sig = None
    for pair in sorted(cols.occurrences.get(key, ())):
        col, t1, t2 = pair >> 48, (pair >> 24) & _TID_MASK, pair & _TID_MASK
        terms = cols.terms[col]
        if t1 not in terms or t2 not in terms:
            continue  # consumed by an overlapping occurrence in this column
        k, a, _, m = cols.pattern(terms[t1], terms[t2])
        if k != key:
            continue
        if new_sig is None:
            new_sig = nl.add(sig_a, sig_b, sa, sb, 1, sign, frac=frac)
            depth[new_sig] = max(depth[sig_a], depth[sig_b]) + 1
        cols.remove(col, t1)
        cols.remove(col, t2)
        cols.insert(col, Term(new_sig, m, a.sign))
    return 0 if new_sig is None else 1


def _sum_tree(nl: Netlist, terms: list[Term], frac: int, depth: dict[int, int]) -> int:
    """Sum terms by a balanced tree (the two shallowest, then smallest, first); returns the sum's signal."""
    if not terms:
        return nl.const(0, frac)
    heap = [(depth.get(t.sig, 0), nl[t.sig].width + t.shift, n, t) for n, t in enumerate(terms)]
    heapq.heapify(heap)
    order = len(heap)
    while len(heap) > 1:
        d1, _, _, a = heapq.heappop(heap)
        d2, _, _, b = heapq.heappop(heap)
        m = min(a.shift, b.shift)
        if a.sign == b.sign:
            sig = nl.add(a.sig, b.sig, a.shift - m, b.shift - m, 1, 1, frac=frac)
            sign = a.sign
        else:
            pos, neg = (a, b) if a.sign > 0 else (b, a)
            sig = nl.add(pos.sig, neg.sig, pos.shift - m, neg.shift - m, 1, -1, frac=frac)
            sign = 1
        depth[sig] = max(d1, d2) + 1
        heapq.heappush(heap, (depth[sig], nl[sig].width + m, order, Term(sig, m, sign)))
        order += 1
    root = heap[0][3]
    sig = root.sig
    if root.shift or nl[sig].frac != frac:
        sig = nl.shl(sig, root.shift, frac=frac)  # wiring: an integer multiple, relabelled at `frac`
    if root.sign < 0:
        sig = nl.neg(sig)
    return sig


def constant_matvec(nl: Netlist, xs: list[int], weights: np.ndarray, consts: list[int] | None, frac: int,
                    cse: bool = True) -> list[int]:
    """Signals for y_j = sum_i xs[i] * weights[i, j] + consts[j] (exact mantissas at LSB `frac`).

    `xs` share one LSB; `frac` labels the results (input frac + weight frac, normally).
    """
    w = np.asarray(weights)
    n_in, n_out = w.shape
    depth = {x: 0 for x in xs}
    # each output column is split into blocks of BLOCK_ROWS inputs: patterns pair terms within a block
    # (and are shared across all blocks of all columns), which halves the work per term for wide layers
    blocks = [range(start, min(start + BLOCK_ROWS, n_in)) for start in range(0, n_in, BLOCK_ROWS)]
    columns = []
    for j in range(n_out):
        for rows in blocks:
            columns.append([Term(xs[i], s, g) for i in rows if w[i, j] for s, g in csd(int(w[i, j]))])
    if len(nl) >= _SIG_LIMIT or any(t.shift >= _SHIFT_LIMIT for terms in columns for t in terms):
        raise ValueError(f'constant_matvec: more than {_SIG_LIMIT} signals or shifts of {_SHIFT_LIMIT} bits')
    cols = _Columns(columns)
    if cse:
        while (key := cols.best()) is not None:
            _extract(cols, nl, key, frac, depth)
    out = []
    for j in range(n_out):
        parts = cols.terms[j * len(blocks):(j + 1) * len(blocks)]
        terms = sorted((t for part in parts for t in part.values()), key=lambda t: (depth[t.sig], t.sig, t.shift))
        if consts is not None and consts[j]:
            c = nl.const(int(consts[j]), frac)
            depth[c] = 0
            terms.append(Term(c, 0, 1))
        out.append(_sum_tree(nl, terms, frac, depth))
    return out


def sum_terms(nl: Netlist, sigs: list[int], frac: int) -> int:
    """The exact sum of signals at LSB `frac` by a balanced adder tree."""
    return _sum_tree(nl, [Term(s, 0, 1) for s in sigs], frac, {})
