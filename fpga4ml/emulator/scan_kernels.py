"""The register machine's numba kernels: a recorded program (scan_machine.py) run over a batch.

Registers are runs of rows of one flat array R of LANES samples per row (element-major: row e of a
register holds element e of LANES samples, so a register of n elements is n * LANES contiguous
values and an element-wise instruction is one long loop that vectorizes). R is int32 or int64, the
program's dtype: a program is int32 when every value and intermediate is proven to lie inside
+-2^INT32_BITS and every shift amount and wrap width fits 32-bit lanes (`scan_machine` decides
from the recorded bounds). Numba computes integer arithmetic in 64 bits; the kernels truncate each
intermediate to R's dtype (`t(...)`, which LLVM narrows for adds, subtractions and products) and
shift in the dtype's own width (`_sar`, `_shl`: LLVM intrinsics, as numba's >> and << widen to 64
bits and stay there), which is exact under those bounds and keeps int32 programs in 32-bit lanes
(twice the lanes of int64; AVX2 has 32-bit but no 64-bit multiplies and arithmetic right shifts).
Indices are uint64, so numba emits no negative-index wraparound and the loops vectorize. A batch
runs in blocks of LANES samples; the last block is padded with copies of its first sample, so
every instruction runs over whole rows.

An instruction is one int64 row of CODE_FIELDS: opcode, output row, element count, operands a and
b (first row, element stride 0 or 1, left shift) and the op's parameters.
"""

from __future__ import annotations

import numpy as np

try:  # numba is an optional accelerator
    from numba import njit
except ImportError:  # pragma: no cover - exercised when numba is not installed
    njit = None

#: opcodes of the machine's instructions
OP_FILL, OP_COPY, OP_GATHER, OP_ADD, OP_SUB, OP_MUL, OP_MAX, OP_MIN, OP_NEG, OP_CAST, OP_TABLE, OP_MATMUL = range(12)
OP_NAMES = ('fill', 'copy', 'gather', 'add', 'sub', 'mul', 'max', 'min', 'neg', 'cast', 'table', 'matmul')
#: fields of an instruction row (int64): the output register row, its element count, operands a and b
#: (first row, element stride 0 or 1, left shift) and the op's parameters p0..p13
CODE_FIELDS = ('op', 'out', 'n', 'a', 'a_stride', 'b', 'b_stride', 'a_shift', 'b_shift') + tuple(
    f'p{k}' for k in range(14))
#: the parameters of a cast (OP_CAST's p0..p5, OP_TABLE's index cast p4..p9): right shift s (<= 0:
#: an exact left shift by -s), rounding mode, overflow mode, saturation bounds lo and hi, width
CAST_PARAMS = ('s', 'rounding', 'overflow', 'lo', 'hi', 'width')
#: samples per block (a row of R): the rows a block's instructions touch stay in the L1/L2 cache
#: (the example's int32 LSTM/GRU: 64 lanes ran 1.2-1.4x faster than 32, 128 slower again)
LANES = 64
#: an int32 program's values and intermediates lie inside +-2^INT32_BITS (a bit of headroom below 31)
INT32_BITS = 30
#: rounding modes by code (fixed.ROUNDING_MODES order)
ROUND_CODES = {'TRN': 0, 'TRN_ZERO': 1, 'RND': 2, 'RND_ZERO': 3, 'RND_MIN_INF': 4, 'RND_INF': 5, 'RND_CONV': 6}
#: overflow handling codes: none (proven in range), wrap (signed, unsigned), saturate to [lo, hi], 0 outside
OVF_NONE, WRAP_SIGNED, WRAP_UNSIGNED, SATURATE, SAT_ZERO = range(5)


def available() -> bool:
    """True when numba is installed and the machine can run."""
    return njit is not None


# ---------------------------------------------------------------------------------------- scalars
def _sar(x, s):
    """x >> s (arithmetic) in x's own integer width, 0 <= s < that width (numba: the intrinsic below)."""
    return x >> s


def _shl(x, s):
    """x << s wrapped to x's own integer width, 0 <= s < that width (numba: the intrinsic below)."""
    return x << s


if njit is not None:
    from numba.core import types as _nbt
    from numba.extending import intrinsic

    def _narrow_shift(kind: str):
        """An intrinsic `kind` (LLVM ashr or shl) of an integer by an amount, in the integer's own width."""
        def typer(typingctx, x, s):
            if not (isinstance(x, _nbt.Integer) and isinstance(s, _nbt.Integer)):
                return None

            def codegen(context, builder, signature, args):
                v, k = args
                if k.type.width > v.type.width:
                    k = builder.trunc(k, v.type)
                elif k.type.width < v.type.width:
                    k = builder.zext(k, v.type)
                return getattr(builder, kind)(v, k)
            return x(x, s), codegen
        return intrinsic(typer)

    _sar, _shl = _narrow_shift('ashr'), _narrow_shift('shl')


def _round_value(v, s, rmode):
    """v / 2^s (s >= 1) rounded with ap_fixed rounding mode `rmode` (ROUND_CODES), in 64 bits."""
    v = np.int64(v)
    q = v >> s
    r = v - (q << s)
    if rmode == 0 or r == 0:
        return q
    if rmode == 1:
        return q + 1 if v < 0 else q
    half = np.int64(1) << (s - 1)
    if r != half:
        return q + 1 if r > half else q
    if rmode == 2:
        return q + 1
    if rmode == 3:
        return q + 1 if v < 0 else q
    if rmode == 4:
        return q
    if rmode == 5:
        return q if v < 0 else q + 1
    return q + (q & 1)


def _overflow_value(q, omode, lo, hi, width):
    """q (in 64 bits) after overflow mode omode: wrap to `width` bits (signed or not), saturate to
    [lo, hi], 0 outside [lo, hi], or unchanged (OVF_NONE)."""
    q = np.int64(q)
    if omode == 1:
        k = 64 - width
        return (q << k) >> k
    if omode == 2:
        return q & hi
    if omode == 3:
        return min(max(q, lo), hi)
    if omode == 4:
        return q if lo <= q <= hi else np.int64(0)
    return q


# ---------------------------------------------------------------------------------------- runs
# A run: N contiguous values of R from a first index (a whole register, or one row of it).
def _round_run(R, dst, src, N, s, rmode):
    """R[dst + i] = R[src + i] / 2^s rounded by `rmode` for i < N (s <= 0: R[src + i] << -s, exact)."""
    t = R.dtype.type
    m = np.iinfo(R.dtype).bits - 1
    if s <= 0:
        sl = -s & m
        for i in range(N):
            R[dst + i] = _shl(R[src + i], sl)
    elif rmode == 0:  # TRN: floor
        sr = s & m
        for i in range(N):
            R[dst + i] = _sar(R[src + i], sr)
    elif rmode == 2:  # RND: half up
        s1 = (s - 1) & m
        for i in range(N):
            R[dst + i] = _sar(t(_sar(R[src + i], s1) + 1), 1)
    elif rmode == 1:  # TRN_ZERO: a negative value first adds 2^s - 1
        sr = s & m
        low = t((np.int64(1) << sr) - 1)
        for i in range(N):
            v = R[src + i]
            R[dst + i] = _sar(t(v + (_sar(v, m) & low)), sr)
    else:
        for i in range(N):
            R[dst + i] = t(_round_value(R[src + i], s, rmode))


def _overflow_run(R, at, N, omode, lo, hi, width):
    """R[at + i] for i < N after overflow mode `omode`, in place (lo, hi: saturation bounds; width: wrap)."""
    t = R.dtype.type
    m = np.iinfo(R.dtype).bits - 1
    if omode == 1:
        k = (m + 1 - width) & m
        for i in range(N):
            R[at + i] = _sar(_shl(R[at + i], k), k)
    elif omode == 2:
        h = t(hi)
        for i in range(N):
            R[at + i] = R[at + i] & h
    elif omode == 3:
        lo_, hi_ = t(lo), t(hi)
        for i in range(N):
            R[at + i] = min(max(R[at + i], lo_), hi_)
    elif omode == 4:
        lo_, hi_ = t(lo), t(hi)
        for i in range(N):
            v = R[at + i]
            R[at + i] = v if lo_ <= v <= hi_ else t(0)


def _cast_run(R, dst, src, N, c):
    """R[dst + i] = cast(R[src + i]) for i < N; c: the cast's six parameters (CAST_PARAMS)."""
    s, rmode, omode = c[0], c[1], c[2]
    if s != 0 or dst != src:
        _round_run(R, dst, src, N, s, rmode)
    _overflow_run(R, dst, N, omode, c[3], c[4], c[5])


def _binary_run(R, op, o, x, y, N, sa, sb):
    """R[o + i] = (R[x + i] << sa) op (R[y + i] << sb) for i < N (mul: no shifts; neg: -R[x + i])."""
    t = R.dtype.type
    m = np.iinfo(R.dtype).bits - 1
    if op == 5:
        for i in range(N):
            R[o + i] = t(R[x + i] * R[y + i])
    elif op == 8:
        for i in range(N):
            R[o + i] = t(-R[x + i])
    elif sa == 0 and sb == 0:
        if op == 3:
            for i in range(N):
                R[o + i] = t(R[x + i] + R[y + i])
        elif op == 4:
            for i in range(N):
                R[o + i] = t(R[x + i] - R[y + i])
        elif op == 6:
            for i in range(N):
                R[o + i] = max(R[x + i], R[y + i])
        else:
            for i in range(N):
                R[o + i] = min(R[x + i], R[y + i])
    else:
        ka, kb = sa & m, sb & m
        if op == 3:
            for i in range(N):
                R[o + i] = t(_shl(R[x + i], ka) + _shl(R[y + i], kb))
        elif op == 4:
            for i in range(N):
                R[o + i] = t(_shl(R[x + i], ka) - _shl(R[y + i], kb))
        elif op == 6:
            for i in range(N):
                R[o + i] = max(_shl(R[x + i], ka), _shl(R[y + i], kb))
        else:
            for i in range(N):
                R[o + i] = min(_shl(R[x + i], ka), _shl(R[y + i], kb))


# ---------------------------------------------------------------------------------------- instructions
def _at(row):
    """The first index of a register row in the flat R (uint64)."""
    return np.uint64(row) * np.uint64(LANES)


def _m_fill(R, ins, pool):
    """out[e] = pool[p0 + e] in every lane (a constant register)."""
    out, n, at = ins[1], ins[2], ins[9]
    for e in range(n):
        v = pool[at + e]
        o = _at(out + e)
        for k in range(np.uint64(LANES)):
            R[o + k] = v


def _m_copy(R, ins, pool):
    """out[dst[e]] = a[e] << a_shift (dst = pool[p0:] relative to out, or e when p0 < 0)."""
    m = np.iinfo(R.dtype).bits - 1
    out, n, a, ast, sa, dst = ins[1], ins[2], ins[3], ins[4], ins[7] & m, ins[9]
    if dst < 0 and ast == 1:
        o, x = _at(out), _at(a)
        for i in range(_at(n)):
            R[o + i] = _shl(R[x + i], sa)
        return
    for e in range(n):
        o = _at(out + (pool[dst + e] if dst >= 0 else e))
        x = _at(a + e * ast)
        for k in range(np.uint64(LANES)):
            R[o + k] = _shl(R[x + k], sa)


def _m_gather(R, ins, pool):
    """out[e] = a[pool[p0 + e]], or p1 (the fill) where that index is -1."""
    t = R.dtype.type
    out, n, a, at, fill = ins[1], ins[2], ins[3], ins[9], ins[10]
    for e in range(n):
        i = pool[at + e]
        o = _at(out + e)
        if i < 0:
            for k in range(np.uint64(LANES)):
                R[o + k] = t(fill)
        else:
            x = _at(a + i)
            for k in range(np.uint64(LANES)):
                R[o + k] = R[x + k]


def _m_binary(R, ins):
    """out = (a << a_shift) op (b << b_shift) element-wise; an operand of stride 0 is one element for all."""
    op, out, n, a, ast, b, bst, sa, sb = ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], ins[6], ins[7], ins[8]
    if ast == 1 and bst == 1:
        _binary_run(R, op, _at(out), _at(a), _at(b), _at(n), sa, sb)
        return
    for e in range(n):
        _binary_run(R, op, _at(out + e), _at(a + e * ast), _at(b + e * bst), np.uint64(LANES), sa, sb)


def _m_cast(R, ins):
    """out = cast(a): p0..p5 the cast (CAST_PARAMS)."""
    _cast_run(R, _at(ins[1]), _at(ins[3]), _at(ins[2]), ins[9:15])


def _m_table(R, ins, pool):
    """out = table[cast(a) - base] (p0 table, p1 base, p4..p9 the index cast), or for a negated table (p2)
    table[min(-cast(a), p3)]."""
    o, x, N = _at(ins[1]), _at(ins[3]), _at(ins[2])
    at, base, negated, last = ins[9], ins[10], ins[11], ins[12]
    c = ins[13:19]
    if c[0] != 0 or c[2] != OVF_NONE:
        _cast_run(R, o, x, N, c)
        x = o
    if negated:
        for i in range(N):
            R[o + i] = pool[np.uint64(at + min(-np.int64(R[x + i]), last))]
    else:
        for i in range(N):
            R[o + i] = pool[np.uint64(at - base + np.int64(R[x + i]))]


def _m_matmul(R, ins, pool):
    """hls4ml's product-accumulate per row: out[r, j] = (addend[j] +) bias[j] + sum_i acc(x[r, i] * W[i, j]).

    p0 rows, p1 n_in, p2 the weights (pool, column j's n_in weights together), p3 the bias (in the
    accumulator), p4 the product's right shift into the accumulator, p5 the mode, p6 saturate each
    sum, p7 cast the final sum, p8..p12 the accumulator's rounding, overflow, lo, hi, width, p13 the
    first row of a register added to the sums (-1: none; one row of inputs). Modes: 0, 1 every
    product floored by the shift (1: in an int64 program, both factors fit 32 bits: a cheaper
    multiply), the final sum wrapped if asked; 2 every product rounded and overflowed into the
    accumulator, the sums saturated if asked.
    """
    t = R.dtype.type
    m = np.iinfo(R.dtype).bits - 1
    out, n, a = ins[1], ins[2], ins[3]
    rows, n_in, wat, bat, s, mode, saturate, final = ins[9], ins[10], ins[11], ins[12], ins[13], ins[14], ins[15], \
        ins[16]
    rmode, omode, lo, hi, width, addend = ins[17], ins[18], ins[19], ins[20], ins[21], ins[22]
    n_out = n // rows
    sh = s & m
    lanes = np.uint64(LANES)
    for r in range(rows):
        xr = a + r * n_in
        for j in range(n_out):
            o = _at(out + r * n_out + j)
            bj = pool[bat + j]
            if addend >= 0:
                ad = _at(addend + j)
                for k in range(lanes):
                    R[o + k] = t(R[ad + k] + bj)
            else:
                for k in range(lanes):
                    R[o + k] = bj
            col = wat + j * n_in
            if mode == 2:
                for i in range(n_in):
                    wi = np.int64(pool[col + i])
                    if wi == 0:
                        continue
                    x = _at(xr + i)
                    for k in range(lanes):
                        p = R[x + k] * wi
                        p = _overflow_value(_round_value(p, s, rmode) if s > 0 else p, omode, lo, hi, width)
                        v = R[o + k] + p
                        R[o + k] = t(_overflow_value(v, omode, lo, hi, width) if saturate else v)
                continue
            for i in range(0, n_in, 4):  # four inputs per pass over the accumulator row
                w0 = pool[col + i]
                w1 = pool[col + i + 1] if i + 1 < n_in else t(0)
                w2 = pool[col + i + 2] if i + 2 < n_in else t(0)
                w3 = pool[col + i + 3] if i + 3 < n_in else t(0)
                if w0 == 0 and w1 == 0 and w2 == 0 and w3 == 0:
                    continue
                x0 = _at(xr + i)  # rows past n_in are read with a zero weight
                x1 = _at(xr + min(i + 1, n_in - 1))
                x2 = _at(xr + min(i + 2, n_in - 1))
                x3 = _at(xr + min(i + 3, n_in - 1))
                if mode == 1 and m == 63:  # an int64 program: 32 x 32 -> 64-bit multiplies
                    v0, v1, v2, v3 = (np.int64(np.int32(w0)), np.int64(np.int32(w1)), np.int64(np.int32(w2)),
                                      np.int64(np.int32(w3)))
                    for k in range(lanes):
                        R[o + k] += (_sar(np.int64(np.int32(R[x0 + k])) * v0, sh)
                                     + _sar(np.int64(np.int32(R[x1 + k])) * v1, sh)
                                     + _sar(np.int64(np.int32(R[x2 + k])) * v2, sh)
                                     + _sar(np.int64(np.int32(R[x3 + k])) * v3, sh))
                else:
                    for k in range(lanes):
                        R[o + k] = t(R[o + k] + _sar(t(R[x0 + k] * w0), sh) + _sar(t(R[x1 + k] * w1), sh)
                                     + _sar(t(R[x2 + k] * w2), sh) + _sar(t(R[x3 + k] * w3), sh))
            if final:
                _overflow_run(R, o, lanes, omode, lo, hi, width)


def _m_execute(code, pool, R):
    """Run the instructions of `code` on one block of registers R."""
    for c in range(code.shape[0]):
        ins = code[c]
        op = ins[0]
        if op == 0:
            _m_fill(R, ins, pool)
        elif op == 1:
            _m_copy(R, ins, pool)
        elif op == 2:
            _m_gather(R, ins, pool)
        elif op <= 8:
            _m_binary(R, ins)
        elif op == 9:
            _m_cast(R, ins)
        elif op == 10:
            _m_table(R, ins, pool)
        else:
            _m_matmul(R, ins, pool)


def _machine_run(x0, x1, prologue, code, pool, in0, in1, out_at, R, out):
    """Run a program over a batch: x0, x1 (batch or 1, elements) int64 load into rows in0, in1 of the
    registers R (flat, rows * LANES, the program's dtype); the prologue runs once (constants), the code
    once per block of LANES samples; out[b] = rows out_at.. of sample b (int64)."""
    t = R.dtype.type
    n_batch, n_out = out.shape
    _m_execute(prologue, pool, R)
    for first in range(0, n_batch, LANES):
        size = min(LANES, n_batch - first)
        for k in range(LANES):
            b = first + (k if k < size else 0)  # padding lanes: copies of the block's first sample
            r0 = x0[b if x0.shape[0] > 1 else 0]
            for e in range(x0.shape[1]):
                R[(in0 + e) * LANES + k] = t(r0[e])
            r1 = x1[b if x1.shape[0] > 1 else 0]
            for e in range(x1.shape[1]):
                R[(in1 + e) * LANES + k] = t(r1[e])
        _m_execute(code, pool, R)
        for k in range(size):
            o = out[first + k]
            for e in range(n_out):
                o[e] = R[(out_at + e) * LANES + k]
    return out


if njit is not None:
    _at = njit(inline='always')(_at)
    _round_value, _overflow_value, _round_run, _overflow_run, _cast_run, _binary_run = (
        njit(inline='always')(f) for f in (_round_value, _overflow_value, _round_run, _overflow_run, _cast_run,
                                           _binary_run))
    _m_fill, _m_copy, _m_gather, _m_binary, _m_cast, _m_table, _m_matmul = (
        njit(f) for f in (_m_fill, _m_copy, _m_gather, _m_binary, _m_cast, _m_table, _m_matmul))
    _m_execute = njit(_m_execute)
    machine_run = njit(nogil=True, cache=True)(_machine_run)
else:  # pragma: no cover
    machine_run = None
