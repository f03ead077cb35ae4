"""Constant matrix-vector products as multiplier-free adder graphs.

y_j = sum_i x_i * W[i, j] + c_j for an integer matrix W is built from shifts and additions:

1. every weight is recoded in canonical signed digits (CSD: digits in {-1, 0, +1}, no two
   adjacent non-zero), so a weight with k non-zero digits costs k - 1 additions and a zero
   weight costs nothing;
2. common subexpressions are shared across the whole matrix: the most frequent pair pattern
   ``x_a << s_a +/- x_b << s_b`` (up to a common shift and sign) is computed once and replaces
   its occurrences in every column, until no pattern occurs twice (greedy, as Hartley's CSE);
   extracted terms may themselves take part in later patterns; pairs are formed within blocks of
   `block_rows` inputs of a column (patterns still shared across all blocks and columns);
3. what remains of each column is summed by a balanced tree that always adds the two
   shallowest terms first (so the adder depth stays close to log2(terms)), and among equally
   deep terms the two of smallest magnitude (most significant bit), so that large terms meet
   late and the narrow low parts pass through adders unchanged.

All widths follow from interval bounds (the netlist computes them), so every adder is exactly
as wide as its values need.
"""

from __future__ import annotations

import heapq
import time
from typing import NamedTuple

import numpy as np

from .cse import SIG_LIMIT, SHIFT_LIMIT, _greedy_run
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
#: a matrix of at most this many weights is searched in blocks of SMALL_BLOCK_ROWS inputs instead: on the
#: JSC MLP (layers of up to 2,048 weights) 64-input blocks give 1.7-1.9 % fewer Yosys LUTs for ~0.2 s more,
#: while on 64 x 64 and larger layers they cost 4x the time (docs/verilog.md, "Quality of results")
SMALL_MATRIX, SMALL_BLOCK_ROWS = 2048, 64


def block_rows(n_in: int, n_out: int) -> int:
    """Inputs per block of a column in the common-subexpression search of an n_in x n_out matrix."""
    return SMALL_BLOCK_ROWS if n_in * n_out <= SMALL_MATRIX else BLOCK_ROWS
#: the most term pairs one search indexes (memory: about 40 bytes each); a wider matrix is searched in
#: groups of whole columns, each reusing the patterns the earlier groups built (deterministic: a size,
#: not a time); the 256 x 256 layer of a dense 8-bit MLP holds about 7 million pairs
PAIR_BUDGET = 16_000_000


class Term(NamedTuple):
    """sign * (signal << shift): one summand of a column (a tuple: the CSE loops unpack it)."""

    sig: int
    shift: int
    sign: int


def _unkey(key: int) -> tuple[int, int, int, int, int]:
    """(sig_a, shift_a, sig_b, shift_b, sign of b) of a packed pattern key (cse.py packs them)."""
    return key >> 39, (key >> 32) & 127, (key >> 8) & (SIG_LIMIT - 1), (key >> 1) & 127, -1 if key & 1 else 1


def _sum_tree(nl: Netlist, terms: list[Term], frac: int, depth: dict[int, int]) -> int:
    """Sum terms by a balanced tree (the two shallowest, then smallest, first); returns the sum's signal."""
    if not terms:
        return nl.const(0, frac)
    if len(terms) > 1 and all(t.sign < 0 for t in terms):  # -(a + b + ...): negate the earliest term, not the sum
        first = min(range(len(terms)), key=lambda n: (depth.get(terms[n].sig, 0), nl[terms[n].sig].width))
        t = terms[first]
        sig = nl.neg(t.sig)
        depth[sig] = depth.get(t.sig, 0) + 1
        terms = terms[:first] + [Term(sig, t.shift, 1)] + terms[first + 1:]
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
    sig = nl.neg(root.sig) if root.sign < 0 else root.sig  # a single negative term: -x once, then its shifts
    if root.shift or nl[sig].frac != frac:
        sig = nl.shl(sig, root.shift, frac=frac)  # wiring: an integer multiple, relabelled at `frac`
    return sig


def constant_matvec(nl: Netlist, xs: list[int], weights: np.ndarray, consts: list[int] | None, frac: int,
                    cse: bool = True, report=None) -> list[int]:
    """Signals for y_j = sum_i xs[i] * weights[i, j] + consts[j] (exact mantissas at LSB `frac`).

    `xs` share one LSB; `frac` labels the results (input frac + weight frac, normally).
    `report(text, seconds)`, if given, is told how long each column group's search took (when
    the matrix is searched in several groups, see PAIR_BUDGET).
    """
    w = np.asarray(weights)
    n_in, n_out = w.shape
    depth = {x: 0 for x in xs}
    rows = block_rows(n_in, n_out)
    per_col = max(1, -(-n_in // rows))
    sig, shift, sign, block = _csd_terms(np.asarray(xs, dtype=np.int64), w, rows)
    if len(nl) + 2 * len(sig) >= SIG_LIMIT or (len(shift) and shift.max() >= SHIFT_LIMIT):
        raise ValueError(f'constant_matvec: more than {SIG_LIMIT} signals or shifts of {SHIFT_LIMIT} bits')
    starts = np.searchsorted(block, np.arange(n_out * per_col + 1))
    columns: list[list[Term]] = [[] for _ in range(n_out)]
    known = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    groups = _column_groups(np.diff(starts), per_col, PAIR_BUDGET)
    for g, (c0, c1) in enumerate(groups):
        t0 = time.monotonic()
        lo, hi = starts[c0 * per_col], starts[c1 * per_col]
        local = starts[c0 * per_col:c1 * per_col + 1] - lo
        result = _greedy_run(sig[lo:hi], shift[lo:hi], sign[lo:hi], block[lo:hi] - c0 * per_col, local, len(nl),
                             known[0], known[1], -1 if cse else 0)
        known = _replay(nl, result[:3], frac, depth, known)
        _collect(columns, result[4:], c0, per_col)
        if report is not None and len(groups) > 1:
            report(f'common subexpressions of columns {c0}..{c1 - 1} (group {g + 1} of {len(groups)})',
                   time.monotonic() - t0)
    out = []
    for j, terms in enumerate(columns):
        terms.sort(key=lambda t: (depth[t.sig], t.sig, t.shift))
        if consts is not None and consts[j]:
            c = nl.const(int(consts[j]), frac)
            depth[c] = 0
            terms.append(Term(c, 0, 1))
        out.append(_sum_tree(nl, terms, frac, depth))
    return out


def _csd_terms(xs: np.ndarray, w: np.ndarray, per_block: int = BLOCK_ROWS) -> tuple[np.ndarray, ...]:
    """(signal, shift, sign, block) arrays of every CSD digit, by column, block, input and digit.

    Blocks are numbered column * blocks per column + input // per_block; each distinct weight
    value is recoded once.
    """
    cols, rows = np.nonzero(w.T)
    values = w.T[cols, rows]
    uniq, inv = np.unique(values, return_inverse=True)
    digits = [csd(int(v)) for v in uniq]
    width = max((len(d) for d in digits), default=0)
    d_shift, d_sign = np.zeros((len(uniq), width), np.int64), np.zeros((len(uniq), width), np.int64)
    for u, d in enumerate(digits):
        d_shift[u, :len(d)] = [s for s, _ in d]
        d_sign[u, :len(d)] = [g for _, g in d]
    n_digits = np.array([len(d) for d in digits], dtype=np.int64)[inv]
    entry = np.repeat(np.arange(len(values)), n_digits)
    k = np.arange(len(entry)) - np.repeat(np.cumsum(n_digits) - n_digits, n_digits)
    per_col = max(1, -(-w.shape[0] // per_block))
    u = inv.reshape(-1)[entry]
    return xs[rows[entry]], d_shift[u, k], d_sign[u, k], cols[entry] * per_col + rows[entry] // per_block


def _column_groups(block_terms: np.ndarray, per_col: int, budget: int) -> list[tuple[int, int]]:
    """Consecutive column ranges [c0, c1) whose blocks hold at most `budget` term pairs (at least one column each)."""
    pairs = (block_terms * (block_terms - 1) // 2).reshape(-1, per_col).sum(axis=1)
    groups, c0, total = [], 0, 0
    for c, p in enumerate(pairs.tolist()):
        if c > c0 and total + p > budget:
            groups.append((c0, c))
            c0, total = c, 0
        total += p
    groups.append((c0, len(pairs)))
    return groups


def _replay(nl: Netlist, extracted, frac: int, depth: dict[int, int], known):
    """Add the adders of the extracted patterns to the netlist, in the search's order and ids."""
    keys, sigs, reused = extracted
    for key, sig, again in zip(keys.tolist(), sigs.tolist(), reused.tolist()):
        if again:
            continue
        sig_a, sa, sig_b, sb, sign = _unkey(key)
        new = nl.add(sig_a, sig_b, sa, sb, 1, sign, frac=frac)
        if new != sig:
            raise RuntimeError(f'constant_matvec: pattern signal {new} was expected as {sig}')
        depth[new] = max(depth[sig_a], depth[sig_b]) + 1
    fresh = ~reused
    all_keys = np.concatenate([known[0], keys[fresh]])
    order = np.argsort(all_keys, kind='stable')
    return all_keys[order], np.concatenate([known[1], sigs[fresh]])[order]


def _collect(columns: list[list[Term]], terms, c0: int, per_col: int) -> None:
    """Append the live terms of a group's columns, block by block, each block in term order."""
    sig, shift, sign, block, alive = terms
    live = np.flatnonzero(alive)
    live = live[np.argsort(block[live], kind='stable')]
    for t_sig, t_shift, t_sign, b in zip(sig[live].tolist(), shift[live].tolist(), sign[live].tolist(),
                                         block[live].tolist()):
        columns[c0 + b // per_col].append(Term(t_sig, t_shift, t_sign))


def sum_terms(nl: Netlist, sigs: list[int], frac: int) -> int:
    """The exact sum of signals at LSB `frac` by a balanced adder tree."""
    return shifted_sum(nl, [Term(s, 0, 1) for s in sigs], frac)


def shifted_sum(nl: Netlist, terms: list[Term], frac: int) -> int:
    """The exact sum of ±(signal << shift) terms, labelled with LSB `frac`, by a balanced adder tree."""
    return _sum_tree(nl, terms, frac, {})
