"""Optional numba kernels for the emulator's hot loop (pure-numpy fallbacks live in ops.py).

One kernel is accelerated: the Dense/Conv product-and-accumulate with products floored by a right
shift (``TRN`` into the accumulator; a shift of 0 is the exact case), optionally wrapping the sums
into a WRAP accumulator. It computes exactly what ops.py's numpy path computes;
tests/test_emulator.py and tests/test_fast_conv.py check it on random layers.

Its rows are gathered through an index from flat per-sample inputs: a Conv reads its im2col
windows straight from the (batch, H*W*C) feature map (`conv_floor_shift`, no im2col array is
materialised), a Dense reads its input row (`dense_floor_shift`, the identity index). Rows are
processed in blocks of BLOCK, gathered transposed (only the inputs with a non-zero weight) into a
cache-resident buffer so the innermost loop runs over rows (contiguous, vectorizable), GROUP input
rows per pass over an accumulator row. The kernels release the GIL so chunks run on two threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

try:  # numba is an optional accelerator (extra 'fast')
    from numba import njit
except ImportError:  # pragma: no cover - exercised when numba is not installed
    njit = None

def available() -> bool:
    """True when numba is installed and the accelerated kernels can be used."""
    return njit is not None


#: rows (samples x windows) per block: a block's gathered inputs and accumulators stay in L1/L2
BLOCK = 256

#: extra elements per row of the gathered block: its rows are not 1 KiB apart (L1 set conflicts)
ROW_PAD = 16

#: input rows accumulated per pass over an accumulator row (fewer loads and stores of it)
GROUP = 4


def _gather_block(fr, gidx, n_flat, n_win, first, size, xt):
    """xt[k, r] = input k (-1: a padding zero) of row first + r, rows running over (sample, window)."""
    n_nz = gidx.shape[1]
    b, wi = divmod(first, n_win)
    for r in range(size):
        base = b * n_flat
        g = gidx[wi]
        for k in range(n_nz):
            p = g[k]
            xt[k, r] = fr[base + p] if p >= 0 else 0
        wi += 1
        if wi == n_win:
            wi = 0
            b += 1


def _accumulate_block(xt, groups, wz, bias, s, size, acc):
    """acc[j, r] = bias[j] + sum_k (xt[k, r] * wz[k, j]) >> s, in xt's dtype (GROUP inputs per pass)."""
    t = xt.dtype.type
    n_out = wz.shape[1]
    for j in range(n_out):
        acc[j, :size] = bias[j]
    for g in range(groups.shape[0]):
        i0, i1, i2, i3 = groups[g, 0], groups[g, 1], groups[g, 2], groups[g, 3]
        x0, x1, x2, x3 = xt[i0], xt[i1], xt[i2], xt[i3]
        for j in range(n_out):
            w0, w1, w2, w3 = wz[i0, j], wz[i1, j], wz[i2, j], wz[i3, j]
            if w0 == 0 and w1 == 0 and w2 == 0 and w3 == 0:
                continue
            acc_row = acc[j]
            for r in range(size):
                acc_row[r] += ((t(x0[r] * w0) >> s) + (t(x1[r] * w1) >> s)
                               + (t(x2[r] * w2) >> s) + (t(x3[r] * w3) >> s))


def _store_block(acc, n_win, first, size, wrap_width, wrap_signed, out):
    """out[b, w, :] = acc[:, r] as int64, wrapped to wrap_width bits when wrap_width > 0."""
    n_out = acc.shape[0]
    keep = 64 - wrap_width
    mask = (np.int64(1) << wrap_width) - 1 if 0 < wrap_width < 64 else np.int64(-1)
    b, wi = divmod(first, n_win)
    for r in range(size):
        o = out[b, wi]
        for j in range(n_out):
            v = np.int64(acc[j, r])
            if wrap_width > 0 and wrap_signed:
                v = (v << keep) >> keep
            elif wrap_width > 0:
                v = v & mask
            o[j] = v
        wi += 1
        if wi == n_win:
            wi = 0
            b += 1


def _gather_floor_shift(flat, gidx, groups, wz, bias, shift, wrap_width, wrap_signed, out, shift_mask):
    """out[b, w, j] = wrap(bias[j] + sum_k floor(flat[b, gidx[w, k]] * wz[k, j] / 2^shift)).

    gidx (windows, K) holds flat positions (-1: a padding zero) of the K inputs with a non-zero
    weight; wz (K + 1, n_out) their weights and a zero row K, the padding of `groups` (G, GROUP).
    Products are cast to flat's dtype before the shift (the caller proves they fit). The shift is
    masked with the constant `shift_mask` (31 or 63; the caller clamps it below the width), which
    tells LLVM that a 32-bit shift suffices: the multiply, shift and add vectorize in 32 bits.
    """
    n_batch, n_flat = flat.shape
    n_win, n_nz = gidx.shape
    s = shift & shift_mask
    fr = flat.ravel()
    xt = np.zeros((n_nz + 1, BLOCK + ROW_PAD), flat.dtype)  # row n_nz stays zero (group padding)
    acc = np.empty((wz.shape[1], BLOCK), flat.dtype)
    n_rows = n_batch * n_win
    for first in range(0, n_rows, BLOCK):
        size = min(BLOCK, n_rows - first)
        _gather_block(fr, gidx, n_flat, n_win, first, size, xt)
        _accumulate_block(xt, groups, wz, bias, s, size, acc)
        _store_block(acc, n_win, first, size, wrap_width, wrap_signed, out)
    return out


if njit is not None:
    _gather_block = njit(inline='always')(_gather_block)
    _accumulate_block = njit(inline='always')(_accumulate_block)
    _store_block = njit(inline='always')(_store_block)
    _gather_floor_shift_inline = njit(inline='always')(_gather_floor_shift)

    @njit(nogil=True, cache=True)
    def _dense_floor_shift_gather32(flat, gidx, groups, wz, bias, shift, wrap_width, wrap_signed, out):
        """The int32 instance of `_gather_floor_shift` (a constant 31-bit shift mask)."""
        return _gather_floor_shift_inline(flat, gidx, groups, wz, bias, shift, wrap_width, wrap_signed, out, 31)

    @njit(nogil=True, cache=True)
    def _dense_floor_shift_gather64(flat, gidx, groups, wz, bias, shift, wrap_width, wrap_signed, out):
        """The int64 instance of `_gather_floor_shift` (a constant 63-bit shift mask)."""
        return _gather_floor_shift_inline(flat, gidx, groups, wz, bias, shift, wrap_width, wrap_signed, out, 63)
else:  # pragma: no cover
    _dense_floor_shift_gather32 = _dense_floor_shift_gather64 = None


def row_groups(nz_rows: np.ndarray, n_in: int) -> np.ndarray:
    """The rows to visit, GROUP at a time: (G, GROUP) int64, padded with n_in (a row of zeros)."""
    pad = (-len(nz_rows)) % GROUP
    return np.concatenate([np.asarray(nz_rows, np.int64), np.full(pad, n_in, np.int64)]).reshape(-1, GROUP)


def _kernel_dtype(w: np.ndarray, what: str) -> np.dtype:
    """int32 or int64, the dtype the kernel computes in (w's)."""
    if w.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise TypeError(f'{what}: weights must be int32 or int64 mantissas, got {w.dtype}')
    return w.dtype


@dataclass(frozen=True)
class GatherPlan:
    """A prepared `conv_floor_shift`: validated index and weights, reusable on many batches."""

    n_flat: int          # per-sample input length the index reads from
    gidx: np.ndarray     # (windows, K) flat positions of the K inputs with a non-zero weight, -1: zero
    groups: np.ndarray   # (G, GROUP) rows of wz, padded with K (a zero row)
    wz: np.ndarray       # (K + 1, n_out) weights in the kernel dtype
    bias: np.ndarray     # (n_out,) in the kernel dtype
    shift: int           # clamped below the kernel width
    wrap_width: int
    wrap_signed: bool

    def __call__(self, flat: np.ndarray) -> np.ndarray:
        """Run on a (batch, n_flat) input of mantissas (converted to the kernel dtype); (batch, windows, n_out) int64."""
        flat = np.ascontiguousarray(flat, dtype=self.wz.dtype)
        if flat.ndim != 2 or flat.shape[1] != self.n_flat:
            raise ValueError(f'conv_floor_shift: expected a (batch, {self.n_flat}) input, got {flat.shape}')
        out = np.empty((flat.shape[0], self.gidx.shape[0], self.wz.shape[1]), np.int64)
        kernel = _dense_floor_shift_gather32 if self.wz.dtype == np.int32 else _dense_floor_shift_gather64
        t = self.wz.dtype.type
        return kernel(flat, self.gidx, self.groups, self.wz, self.bias, t(self.shift), np.int64(self.wrap_width),
                      bool(self.wrap_signed), out)


def conv_plan(index: np.ndarray, n_flat: int, w: np.ndarray, nz_rows: np.ndarray, bias: np.ndarray,
              shift: int, wrap_width: int = 0, wrap_signed: bool = True) -> GatherPlan:
    """Validate and prepare `conv_floor_shift` for one layer (hoist it out of the per-chunk loop)."""
    if not available():
        raise RuntimeError('conv_floor_shift needs numba (the fast extra)')
    dtype = _kernel_dtype(w, 'conv_floor_shift')
    index = np.asarray(index)
    n_in, n_out = w.shape
    if index.ndim != 2 or index.shape[1] != n_in:
        raise ValueError(f'conv_floor_shift: index {index.shape} must be (windows, {n_in}) for weights {w.shape}')
    if index.size and (index.min() < -1 or index.max() >= n_flat):
        raise ValueError(f'conv_floor_shift: index values must lie in [-1, {n_flat}), got '
                         f'[{index.min()}, {index.max()}]')
    if np.shape(bias) != (n_out,):
        raise ValueError(f'conv_floor_shift: bias shape {np.shape(bias)} must be ({n_out},)')
    if shift < 0 or not 0 <= wrap_width <= 64:
        raise ValueError(f'conv_floor_shift: shift {shift} must be >= 0 and wrap_width {wrap_width} in [0, 64]')
    nz_rows = np.asarray(nz_rows, np.int64)
    wz = np.zeros((len(nz_rows) + 1, n_out), dtype)
    wz[:len(nz_rows)] = w[nz_rows]
    return GatherPlan(n_flat, np.ascontiguousarray(index[:, nz_rows], dtype=np.int64),
                      row_groups(np.arange(len(nz_rows)), len(nz_rows)), wz, np.asarray(bias).astype(dtype),
                      min(int(shift), 8 * dtype.itemsize - 1), int(wrap_width), bool(wrap_signed))


def conv_floor_shift(flat: np.ndarray, index: np.ndarray, w: np.ndarray, nz_rows: np.ndarray, bias: np.ndarray,
                     shift: int, wrap_width: int = 0, wrap_signed: bool = True) -> np.ndarray:
    """A Conv's product-accumulate read straight from its input: (batch, windows, n_out) int64.

    flat (batch, n_flat) holds each sample's input mantissas (H*W*C, channels last); index
    (windows, n_in) the flat position of each window's inputs in im2col order, -1 for a padding
    zero (geometry.im2col_index); w (n_in, n_out) int32 or int64 weights; nz_rows the rows of w
    with a non-zero weight. Bit for bit equal to
    ``dense_floor_shift(geometry.take(flat, index).reshape(-1, n_in), w, nz_rows, bias, shift,
    wrap_width, wrap_signed).reshape(batch, windows, n_out)``, with the same contract: int32 w
    only when every product and partial sum is proven to fit 31 bits, shift >= 0. Call
    `conv_plan` once per layer and the plan per batch to skip the per-call validation.
    """
    return conv_plan(index, flat.shape[1], w, nz_rows, bias, shift, wrap_width, wrap_signed)(flat)


def dense_floor_shift(x: np.ndarray, w: np.ndarray, nz_rows: np.ndarray, bias: np.ndarray,
                      shift: int, wrap_width: int = 0, wrap_signed: bool = True) -> np.ndarray:
    """bias + sum_i floor(x_i * w_ij / 2^shift) for a batch x (B, n_in) of int64 mantissas.

    `nz_rows` lists the rows of w with a non-zero weight (the others are skipped). The kernel
    computes in w's dtype: int32 (twice the SIMD lanes) is only passed when the caller has
    proven that every product and partial sum fits in 31 bits. With wrap_width > 0 each sum
    wraps to that many bits (a WRAP accumulator), signed or not. Returns int64.
    """
    n_in = w.shape[0]
    plan = conv_plan(np.arange(n_in)[None, :], n_in, w, nz_rows, bias, shift, wrap_width, wrap_signed)
    return plan(np.asarray(x).reshape(-1, n_in)).reshape(-1, w.shape[1])


# ---------------------------------------------------------------------------- element-wise kernels
# Casts (FixedType.cast for right shifts), a per-channel multiply-add fused with its cast (a Scale
# node, BatchNorm), a lower clip (ReLU) and a gathered max (MaxPool). Each computes exactly what
# the numpy steps of semantics/numpy_interp.py compute, under preconditions its planner checks.

#: the casts the kernels specialise, by mode code: (rounding, overflow) with the signedness of WRAP
CAST_MODES = {('TRN', 'WRAP', True): 0, ('TRN', 'WRAP', False): 1, ('TRN', 'SAT'): 2, ('TRN', 'SAT_SYM'): 2,
              ('RND', 'WRAP', True): 3, ('RND', 'WRAP', False): 4, ('RND', 'SAT'): 5, ('RND', 'SAT_SYM'): 5}

#: largest right shift and width the cast kernels accept (inputs must lie strictly inside +-2^62)
MAX_CAST_SHIFT = 62
MAX_CAST_WIDTH = 63


def _cast_value(v, s, lo, hi, k, mask, mode):
    """cast(v) for |v| < 2^62: round away s bits (TRN: floor; RND: half up, s >= 1), then the overflow.

    mode (a literal at every call site, so each loop is compiled for one mode): 0/3 wrap signed to
    64 - k bits, 1/4 wrap unsigned (& mask), 2/5 saturate to [lo, hi]; 0-2 TRN, 3-5 RND.
    """
    q = v >> s if mode < 3 else ((v >> (s - 1)) + 1) >> 1
    if mode == 0 or mode == 3:
        return (q << k) >> k
    if mode == 1 or mode == 4:
        return q & mask
    return min(max(q, lo), hi)


def _cast_loop(m, s, lo, hi, k, mask, out, mode):
    for i in range(m.shape[0]):
        out[i] = _cast_value(m[i], s, lo, hi, k, mask, mode)


def _affine_loop(x, scale, bias, s, lo, hi, k, mask, out, mode):
    n_rows, n_ch = x.shape
    for r in range(n_rows):
        for c in range(n_ch):
            out[r, c] = _cast_value(np.int64(x[r, c]) * scale[c] + bias[c], s, lo, hi, k, mask, mode)


def _cast_flat(m, s, lo, hi, k, mask, mode, out):
    """out[i] = cast(m[i]) in cast mode `mode` (one specialised loop per mode)."""
    if mode == 0:
        _cast_loop(m, s, lo, hi, k, mask, out, 0)
    elif mode == 1:
        _cast_loop(m, s, lo, hi, k, mask, out, 1)
    elif mode == 2:
        _cast_loop(m, s, lo, hi, k, mask, out, 2)
    elif mode == 3:
        _cast_loop(m, s, lo, hi, k, mask, out, 3)
    elif mode == 4:
        _cast_loop(m, s, lo, hi, k, mask, out, 4)
    else:
        _cast_loop(m, s, lo, hi, k, mask, out, 5)
    return out


def _affine_cast(x, scale, bias, s, lo, hi, k, mask, mode, out):
    """out[r, c] = cast(x[r, c] * scale[c] + bias[c]) over rows r and channels c (a Scale node)."""
    if mode == 0:
        _affine_loop(x, scale, bias, s, lo, hi, k, mask, out, 0)
    elif mode == 1:
        _affine_loop(x, scale, bias, s, lo, hi, k, mask, out, 1)
    elif mode == 2:
        _affine_loop(x, scale, bias, s, lo, hi, k, mask, out, 2)
    elif mode == 3:
        _affine_loop(x, scale, bias, s, lo, hi, k, mask, out, 3)
    elif mode == 4:
        _affine_loop(x, scale, bias, s, lo, hi, k, mask, out, 4)
    else:
        _affine_loop(x, scale, bias, s, lo, hi, k, mask, out, 5)
    return out


def _clip_below(m, floor, out):
    """out[i] = max(m[i], floor) (a ReLU)."""
    for i in range(m.shape[0]):
        v = m[i]
        out[i] = v if v > floor else floor
    return out


def _gather_max(flat, index_t, fill, out):
    """out[b, o] = max over taps t of flat[b, index_t[o, t]] (-1 reads `fill`): a max pool's windows."""
    n_batch = flat.shape[0]
    n_out, n_taps = index_t.shape
    for b in range(n_batch):
        row = flat[b]
        for o in range(n_out):
            best = np.int64(-9223372036854775807 - 1)
            for t in range(n_taps):
                p = index_t[o, t]
                best = max(best, row[max(p, 0)] if p >= 0 else fill)
            out[b, o] = best
    return out


if njit is not None:
    _cast_value = njit(inline='always')(_cast_value)
    _cast_loop = njit(inline='always')(_cast_loop)
    _affine_loop = njit(inline='always')(_affine_loop)
    _cast_flat_nb = njit(nogil=True, cache=True)(_cast_flat)
    _affine_cast_nb = njit(nogil=True, cache=True)(_affine_cast)
    _clip_below_nb = njit(nogil=True, cache=True)(_clip_below)
    _gather_max_nb = njit(nogil=True, cache=True)(_gather_max)
else:  # pragma: no cover
    _cast_flat_nb = _affine_cast_nb = _clip_below_nb = _gather_max_nb = None


@dataclass(frozen=True)
class CastPlan:
    """A prepared numba cast into one fixed-point type from `shift` more fractional bits."""

    shift: int
    lo: int
    hi: int
    keep: int   # 64 - width: a signed wrap shifts left and back by it
    mask: int   # 2^width - 1: an unsigned wrap keeps these bits
    mode: int   # CAST_MODES

    def args(self) -> tuple:
        """The kernels' trailing cast arguments."""
        return tuple(np.int64(v) for v in (self.shift, self.lo, self.hi, self.keep, self.mask, self.mode))

    def __call__(self, m: np.ndarray) -> np.ndarray:
        """Cast int64 mantissas (the caller proves |m| < 2^62) of any shape; a new int64 array."""
        m = np.ascontiguousarray(m, dtype=np.int64)
        out = np.empty_like(m)
        _cast_flat_nb(m.reshape(-1), *self.args(), out.reshape(-1))
        return out


def cast_plan(t, frac_in: int) -> CastPlan | None:
    """The numba cast of int64 mantissas at `frac_in` into FixedType `t`, or None where it does not apply.

    It applies to TRN and RND rounding with WRAP, SAT or SAT_SYM overflow, right shifts of
    0..MAX_CAST_SHIFT bits and types of at most MAX_CAST_WIDTH bits; on inputs the caller proves
    lie inside +-2^62 it equals t.cast bit for bit.
    """
    s = frac_in - t.frac
    if not available() or not 0 <= s <= MAX_CAST_SHIFT or not 1 <= t.width <= MAX_CAST_WIDTH:
        return None
    rounding = 'TRN' if s == 0 else t.rounding  # nothing to round
    key = (rounding, t.overflow, t.signed) if t.overflow == 'WRAP' else (rounding, t.overflow)
    if key not in CAST_MODES:
        return None
    return CastPlan(s, t._sat_min, t.max_mantissa, 64 - t.width, (1 << t.width) - 1, CAST_MODES[key])


def affine_cast(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, plan: CastPlan) -> np.ndarray:
    """cast(x * scale + bias) per channel (the last axis of x); the caller proves |x * scale + bias| < 2^62."""
    n_ch = scale.shape[0]
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.dtype(np.int32), np.dtype(np.int64)) or x.shape[-1] != n_ch:
        raise ValueError(f'affine_cast: expected int32/int64 values with {n_ch} channels last, got '
                         f'{x.dtype} {x.shape}')
    out = np.empty(x.shape, np.int64)
    _affine_cast_nb(x.reshape(-1, n_ch), scale, bias, *plan.args(), out.reshape(-1, n_ch))
    return out


def clip_below(m: np.ndarray, floor: int) -> np.ndarray:
    """max(m, floor) of int64 mantissas; a new int64 array."""
    m = np.ascontiguousarray(m, dtype=np.int64)
    out = np.empty_like(m)
    _clip_below_nb(m.reshape(-1), np.int64(floor), out.reshape(-1))
    return out


def gather_max(flat: np.ndarray, index_t: np.ndarray, fill: int) -> np.ndarray:
    """(batch, outputs) max of each output's gathered taps: index_t (outputs, taps) int64, -1 reads `fill`."""
    flat = np.ascontiguousarray(flat, dtype=np.int64)
    out = np.empty((flat.shape[0], index_t.shape[0]), np.int64)
    return _gather_max_nb(flat, index_t, np.int64(fill), out)


# ---------------------------------------------------------------------------- the register machine
# A fused kernel for a whole recorded program (a recurrent layer's scan: every step of every time
# step in one numba call). `ScanMachine` (below) records the primitives of a recipe as
# instructions over registers; `_machine_run` executes them on blocks of samples, each register a
# run of rows of one (rows, BLOCK) int64 array (element-major: the innermost loops run over the
# samples of a block and vectorize). The instructions are the primitives' integer meaning (the
# same as the numpy interpreter's steps); the machine knows no layer.

#: opcodes of the machine's instructions
OP_FILL, OP_COPY, OP_GATHER, OP_ADD, OP_SUB, OP_MUL, OP_MAX, OP_MIN, OP_NEG, OP_ROUND, OP_OVERFLOW, OP_TABLE, \
    OP_MATMUL = range(13)
#: fields of an instruction row (int64): the output register row, its element count, operands a and b
#: (first row, element stride 0 or 1, left shift) and the op's parameters p0..p6
CODE_FIELDS = ('op', 'out', 'n', 'a', 'a_stride', 'b', 'b_stride', 'a_shift', 'b_shift',
               'p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6')
#: samples per block: the registers of a block stay in the L2 cache
MACHINE_BLOCK = 32
#: rounding modes by code (fixed.ROUNDING_MODES order) and overflow handling codes
ROUND_CODES = {'TRN': 0, 'TRN_ZERO': 1, 'RND': 2, 'RND_ZERO': 3, 'RND_MIN_INF': 4, 'RND_INF': 5, 'RND_CONV': 6}
WRAP_SIGNED, WRAP_UNSIGNED, SATURATE, SAT_ZERO_CODE = range(4)


def _round_value(v, s, rmode):
    """v / 2^s (s >= 1) rounded with ap_fixed rounding mode `rmode` (ROUND_CODES), |v| < 2^62."""
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


def _overflow_value(q, omode, lo, hi, k):
    """q after an overflow mode: signed wrap to 64 - k bits, unsigned wrap (& hi), saturate to [lo, hi], or 0 outside."""
    if omode == 0:
        return (q << k) >> k
    if omode == 1:
        return q & hi
    if omode == 2:
        return min(max(q, lo), hi)
    return q if lo <= q <= hi else np.int64(0)


def _m_copy(R, ins, pool, size):
    """out[dst[e]] = a[e] << a_shift (dst = pool[p0:] relative to out, or e when p0 < 0)."""
    out, n, a, ast, sa, dst = ins[1], ins[2], ins[3], ins[4], ins[7], ins[9]
    for e in range(n):
        src = R[a + e * ast]
        o = R[out + (pool[dst + e] if dst >= 0 else e)]
        for k in range(size):
            o[k] = src[k] << sa


def _m_fill(R, ins, pool, size):
    """out[e] = pool[p0 + e] in every sample (a constant register)."""
    out, n, at = ins[1], ins[2], ins[9]
    for e in range(n):
        o = R[out + e]
        v = pool[at + e]
        for k in range(size):
            o[k] = v


def _m_gather(R, ins, pool, size):
    """out[e] = a[pool[p0 + e]], or p1 (the fill) where that index is -1."""
    out, n, a, at, fill = ins[1], ins[2], ins[3], ins[9], ins[10]
    for e in range(n):
        i = pool[at + e]
        o = R[out + e]
        if i < 0:
            for k in range(size):
                o[k] = fill
        else:
            src = R[a + i]
            for k in range(size):
                o[k] = src[k]


def _m_binary(R, ins, size):
    """out = (a << a_shift) op (b << b_shift) element-wise (add, sub, max, min; mul without shifts; neg of a)."""
    op, out, n, a, ast, b, bst, sa, sb = ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], ins[6], ins[7], ins[8]
    for e in range(n):
        x, y, o = R[a + e * ast], R[b + e * bst], R[out + e]
        if op == 3:
            for k in range(size):
                o[k] = (x[k] << sa) + (y[k] << sb)
        elif op == 4:
            for k in range(size):
                o[k] = (x[k] << sa) - (y[k] << sb)
        elif op == 5:
            for k in range(size):
                o[k] = x[k] * y[k]
        elif op == 6:
            for k in range(size):
                o[k] = max(x[k] << sa, y[k] << sb)
        elif op == 7:
            for k in range(size):
                o[k] = min(x[k] << sa, y[k] << sb)
        else:
            for k in range(size):
                o[k] = -x[k]


def _m_round(R, ins, size):
    """out = a rounded by p0 bits with rounding mode p1 (p0 <= 0: a << -p0, exact)."""
    out, n, a, s, rmode = ins[1], ins[2], ins[3], ins[9], ins[10]
    for e in range(n):
        x, o = R[a + e], R[out + e]
        if s <= 0:
            for k in range(size):
                o[k] = x[k] << -s
        elif rmode == 0:
            for k in range(size):
                o[k] = x[k] >> s
        elif rmode == 2:
            for k in range(size):
                o[k] = ((x[k] >> (s - 1)) + 1) >> 1
        else:
            for k in range(size):
                o[k] = _round_value(x[k], s, rmode)


def _m_overflow(R, ins, size):
    """out = a after overflow mode p0 with lo p1, hi p2, k p3 (`_overflow_value`)."""
    out, n, a, omode, lo, hi, kk = ins[1], ins[2], ins[3], ins[9], ins[10], ins[11], ins[12]
    for e in range(n):
        x, o = R[a + e], R[out + e]
        if omode == 0:
            for k in range(size):
                o[k] = (x[k] << kk) >> kk
        elif omode == 1:
            for k in range(size):
                o[k] = x[k] & hi
        elif omode == 2:
            for k in range(size):
                o[k] = min(max(x[k], lo), hi)
        else:
            for k in range(size):
                o[k] = _overflow_value(x[k], 3, lo, hi, kk)


def _m_table(R, ins, pool, size):
    """out = table[a - base] (p0 table, p1 base), or table[min(-a, p3)] for a negated table (p2)."""
    out, n, a, at, base, negated, last = ins[1], ins[2], ins[3], ins[9], ins[10], ins[11], ins[12]
    for e in range(n):
        x, o = R[a + e], R[out + e]
        if negated:
            for k in range(size):
                o[k] = pool[at + min(-x[k], last)]
        else:
            for k in range(size):
                o[k] = pool[at + x[k] - base]


def _m_matmul(R, ins, pool, size, acc):
    """hls4ml's product-accumulate per row: out[r, j] = bias[j] + sum_i acc(x[r, i] * W[i, j]).

    p0 rows, p1 n_in, p2 the weights (pool, column j's n_in weights together), p3 the bias (in the
    accumulator), p4 the product's right shift into the accumulator, p5 the mode, p6 the cast block
    (rounding, overflow, lo, hi, k, saturate each sum, cast the final sum). Modes: 0, 1 every product
    floored by the shift (1: both factors fit 32 bits, a cheaper multiply), the final sum wrapped if
    asked; 2 every product rounded and overflowed into the accumulator, the sums saturated if asked.
    `acc` is a scratch row of at least `size` values.
    """
    out, n, a = ins[1], ins[2], ins[3]
    rows, n_in, wat, bat, s, mode, cat = ins[9], ins[10], ins[11], ins[12], ins[13], ins[14], ins[15]
    rmode, omode, lo, hi, kk, saturate, final = (pool[cat], pool[cat + 1], pool[cat + 2], pool[cat + 3],
                                                 pool[cat + 4], pool[cat + 5], pool[cat + 6])
    n_out = n // rows
    zero = R[a]  # read with a zero weight where a group of four runs past n_in
    for r in range(rows):
        xr = a + r * n_in
        for j in range(n_out):
            bj = pool[bat + j]
            for k in range(size):
                acc[k] = bj
            col = wat + j * n_in
            if mode == 2:
                for i in range(n_in):
                    wi = pool[col + i]
                    if wi == 0:
                        continue
                    x = R[xr + i]
                    for k in range(size):
                        t = x[k] * wi
                        t = _overflow_value(_round_value(t, s, rmode) if s > 0 else t, omode, lo, hi, kk)
                        v = acc[k] + t
                        acc[k] = _overflow_value(v, omode, lo, hi, kk) if saturate else v
            else:
                for i in range(0, n_in, 4):  # four inputs per pass over the accumulator row
                    w0 = pool[col + i]
                    w1 = pool[col + i + 1] if i + 1 < n_in else 0
                    w2 = pool[col + i + 2] if i + 2 < n_in else 0
                    w3 = pool[col + i + 3] if i + 3 < n_in else 0
                    if w0 == 0 and w1 == 0 and w2 == 0 and w3 == 0:
                        continue
                    x0 = R[xr + i]
                    x1 = R[xr + i + 1] if i + 1 < n_in else zero
                    x2 = R[xr + i + 2] if i + 2 < n_in else zero
                    x3 = R[xr + i + 3] if i + 3 < n_in else zero
                    if mode == 1:
                        v0, v1, v2, v3 = (np.int64(np.int32(w0)), np.int64(np.int32(w1)), np.int64(np.int32(w2)),
                                          np.int64(np.int32(w3)))
                        for k in range(size):
                            acc[k] += (((np.int64(np.int32(x0[k])) * v0) >> s)
                                       + ((np.int64(np.int32(x1[k])) * v1) >> s)
                                       + ((np.int64(np.int32(x2[k])) * v2) >> s)
                                       + ((np.int64(np.int32(x3[k])) * v3) >> s))
                    else:
                        for k in range(size):
                            acc[k] += (((x0[k] * w0) >> s) + ((x1[k] * w1) >> s)
                                       + ((x2[k] * w2) >> s) + ((x3[k] * w3) >> s))
            o = R[out + r * n_out + j]
            if final:
                for k in range(size):
                    o[k] = _overflow_value(acc[k], omode, lo, hi, kk)
            else:
                for k in range(size):
                    o[k] = acc[k]


def _m_execute(code, pool, R, size, acc):
    """Run the instructions of `code` on the first `size` samples of the register block R."""
    for c in range(code.shape[0]):
        ins = code[c]
        op = ins[0]
        if op == 0:
            _m_fill(R, ins, pool, size)
        elif op == 1:
            _m_copy(R, ins, pool, size)
        elif op == 2:
            _m_gather(R, ins, pool, size)
        elif op <= 8:
            _m_binary(R, ins, size)
        elif op == 9:
            _m_round(R, ins, size)
        elif op == 10:
            _m_overflow(R, ins, size)
        elif op == 11:
            _m_table(R, ins, pool, size)
        else:
            _m_matmul(R, ins, pool, size, acc)


def _machine_run(x0, x1, prologue, code, pool, in0, in1, out_at, R, acc, out):
    """Run a machine program over a batch: x0, x1 (batch or 1, elements) load into rows in0, in1 of the
    registers R (rows, block); the prologue runs once (constants),
    the code once per block of samples (acc: a scratch row); out[b] = rows out_at.. of sample b."""
    n_batch, n_out = out.shape
    block = R.shape[1]
    _m_execute(prologue, pool, R, block, acc)
    for first in range(0, n_batch, block):
        size = min(block, n_batch - first)
        for k in range(size):
            r0 = x0[first + k if x0.shape[0] > 1 else 0]
            for e in range(x0.shape[1]):
                R[in0 + e, k] = r0[e]
            r1 = x1[first + k if x1.shape[0] > 1 else 0]
            for e in range(x1.shape[1]):
                R[in1 + e, k] = r1[e]
        _m_execute(code, pool, R, size, acc)
        for k in range(size):
            o = out[first + k]
            for e in range(n_out):
                o[e] = R[out_at + e, k]
    return out


if njit is not None:
    _round_value = njit(inline='always')(_round_value)
    _overflow_value = njit(inline='always')(_overflow_value)
    _m_copy, _m_fill, _m_gather, _m_binary, _m_round, _m_overflow, _m_table, _m_matmul = (
        njit(f) for f in (_m_copy, _m_fill, _m_gather, _m_binary, _m_round, _m_overflow, _m_table, _m_matmul))
    _m_execute = njit(_m_execute)
    _machine_run_nb = njit(nogil=True, cache=True)(_machine_run)
else:  # pragma: no cover
    _machine_run_nb = None


class Unfusable(Exception):
    """A value or primitive the register machine does not run (the caller keeps its step-by-step path)."""


#: machine values stay inside +-2^MACHINE_BITS (int64 with a margin, as the numpy interpreter's)
MACHINE_BITS = 62


@dataclass
class MSym:
    """A value of a machine program: element `off` onwards of register `reg`, with its exact bounds."""

    reg: int
    off: int
    iv: object  # intervals.Interval

    @property
    def size(self) -> int:
        """Elements per sample."""
        return int(self.iv.lo.size)


@dataclass
class Instruction:
    """One recorded instruction: register operands as (reg, element offset, stride), params ints or arrays."""

    op: int
    out: tuple[int, int]
    n: int
    a: tuple[int, int, int] | None = None
    b: tuple[int, int, int] | None = None
    shifts: tuple[int, int] = (0, 0)
    params: tuple = ()

    def regs(self) -> list[int]:
        """The registers it reads."""
        return [x[0] for x in (self.a, self.b) if x is not None]


def _overflow_params(t) -> tuple[int, int, int, int]:
    """(overflow code, lo, hi, k) of FixedType t for `_overflow_value`."""
    if t.overflow == 'WRAP':
        if t.signed:
            return WRAP_SIGNED, 0, 0, 64 - t.width
        if t.width > 63:
            raise Unfusable(f'unsigned wrap to {t.width} bits')
        return WRAP_UNSIGNED, 0, (1 << t.width) - 1, 0
    code = SAT_ZERO_CODE if t.overflow == 'SAT_ZERO' else SATURATE
    return code, t._sat_min, t.max_mantissa, 0


class ScanMachine:
    """An interpreter of the primitives that records a register-machine program (see `_machine_run`).

    It runs a recipe (a recurrent layer's scan, unrolled) on `MSym`s, asking the node's interval
    interpreter `bounds` for every value's exact bounds, exactly as the numpy interpreter does, and
    records one instruction (or none: a slice, a reshape, a shift, a cast that cannot change a
    value) per primitive. A primitive it does not run, or a value beyond +-2^62, raises `Unfusable`.
    `compile(outputs)` allocates the registers and returns a `MachineProgram`.
    """

    quantized = True

    def __init__(self, node, bounds):
        self.node, self.b = node, bounds
        self.type, self.weight, self.tables = bounds.type, bounds.weight, bounds.tables
        self.sizes: list[int] = []
        self.consts: dict[int, np.ndarray] = {}
        self.inputs: list[MSym] = []
        self.code: list[Instruction] = []

    # ------------------------------------------------------------------ values
    def _bits(self, bits: int) -> None:
        """Unfusable when a value or intermediate needs more than MACHINE_BITS bits."""
        if bits > MACHINE_BITS:
            raise Unfusable(f'layer {self.node.name!r}: a value needs {bits} bits')

    def _new(self, iv) -> MSym:
        self._bits(iv.max_bits())
        self.sizes.append(max(int(iv.lo.size), 1))
        return MSym(len(self.sizes) - 1, 0, iv)

    def _emit(self, op: int, out: MSym, a=None, b=None, shifts=(0, 0), params=()) -> MSym:
        self.code.append(Instruction(op, (out.reg, out.off), out.size, a, b, shifts, tuple(params)))
        return out

    def input(self, iv) -> MSym:
        """A value loaded from the batch (the machine's inputs, in this order)."""
        x = self._new(iv)
        self.inputs.append(x)
        return x

    def _operand(self, x: MSym, shape: tuple) -> tuple[int, int, int]:
        """x as an operand of an element-wise op with output `shape` (broadcast: stride 0, or a gather)."""
        if tuple(x.iv.lo.shape) == tuple(shape):
            return x.reg, x.off, 1
        if x.size == 1:
            return x.reg, x.off, 0
        index = np.broadcast_to(np.arange(x.size).reshape(x.iv.lo.shape), shape)
        return self.gather(x, np.ascontiguousarray(index)).reg, 0, 1

    # ------------------------------------------------------------------ constants and resolution
    def param(self, values, auto, store=None):
        return self.b.param(values, auto, store)

    def at_lsb(self, value: float, like: MSym, exact: bool = False):
        return self.b.at_lsb(value, like.iv, exact)

    def shape(self, x: MSym) -> tuple[int, ...]:
        return x.iv.lo.shape

    def _t(self, t):
        from ..fixed import FixedType
        return t if isinstance(t, FixedType) else self.b.type(t)

    # ------------------------------------------------------------------ primitives
    def const(self, c) -> MSym:
        iv = self.b.const(c)
        x = self._new(iv)
        self.consts[x.reg] = np.asarray(c.values).astype(np.int64).reshape(-1)
        return x

    def cast(self, x: MSym, t, auto=None, opaque: bool = False) -> MSym:
        from ..intervals import round_shift
        t = self._t(t)
        iv, s = self.b.cast(x.iv, t), x.iv.frac - t.frac
        if s > MACHINE_BITS:
            raise Unfusable(f'layer {self.node.name!r}: a cast by {s} bits')
        self._bits((x.iv.abs_max << max(-s, 0)).bit_length())
        y = self.round(x, t) if s else x
        lo, hi = (round_shift(int(v), s, t.rounding) for v in (x.iv.min, x.iv.max))
        if t._sat_min <= lo and hi <= t.max_mantissa:  # nothing can overflow
            return MSym(y.reg, y.off, iv)
        return self._emit(OP_OVERFLOW, self._new(iv), (y.reg, y.off, 1), params=_overflow_params(t))

    def round(self, x: MSym, t) -> MSym:
        t = self._t(t)
        s = x.iv.frac - t.frac
        iv = self.b.round(x.iv, t)
        return self._emit(OP_ROUND, self._new(iv), (x.reg, x.off, 1), params=(s, ROUND_CODES[t.rounding]))

    def _binary(self, op: int, a: MSym, b: MSym, iv, align: bool = True) -> MSym:
        out = self._new(iv)
        sa, sb = (iv.frac - a.iv.frac, iv.frac - b.iv.frac) if align else (0, 0)
        for v, s in ((a, sa), (b, sb)):
            self._bits((v.iv.abs_max << s).bit_length())
        shape = iv.lo.shape
        return self._emit(op, out, self._operand(a, shape), self._operand(b, shape), (sa, sb))

    def add(self, a: MSym, b: MSym) -> MSym:
        return self._binary(OP_ADD, a, b, self.b.add(a.iv, b.iv))

    def sub(self, a: MSym, b: MSym) -> MSym:
        return self._binary(OP_SUB, a, b, self.b.sub(a.iv, b.iv))

    def mul(self, a: MSym, b: MSym) -> MSym:
        return self._binary(OP_MUL, a, b, self.b.mul(a.iv, b.iv), align=False)

    def maximum(self, a: MSym, b: MSym) -> MSym:
        return self._binary(OP_MAX, a, b, self.b.maximum(a.iv, b.iv))

    def minimum(self, a: MSym, b: MSym) -> MSym:
        return self._binary(OP_MIN, a, b, self.b.minimum(a.iv, b.iv))

    def neg(self, a: MSym) -> MSym:
        return self._binary(OP_NEG, a, a, self.b.neg(a.iv), align=False)

    def shift(self, x: MSym, k: int) -> MSym:
        return MSym(x.reg, x.off, self.b.shift(x.iv, k))

    def const_matmul(self, x: MSym, w, bias, acc: str) -> MSym:
        from ..semantics.accumulate import accumulate_plan
        iv = self.b.const_matmul(x.iv, w, bias, acc)
        acc_t = self.b.type(acc)
        plan = accumulate_plan(self.node, acc_t, x.iv.frac, x.iv.abs_max, w.values, w.frac, bias.values, bias.frac)
        n_in = w.values.shape[0]
        weights, shift = plan.w, plan.shift
        if shift < 0:  # products enter the accumulator exactly, at its LSB
            weights, shift = weights << -shift, 0
        prod_max = int(np.max(np.abs(weights), initial=0)) * x.iv.abs_max
        simple = (plan.products_simple and (acc_t.overflow == 'WRAP' or plan.sum_fits)
                  and plan.abs_bound.bit_length() <= MACHINE_BITS)
        self._bits(prod_max.bit_length())
        if simple:
            self._bits(plan.abs_bound.bit_length())
            mode = 1 if prod_max.bit_length() <= 31 and x.iv.abs_max.bit_length() <= 31 else 0
        else:
            self._bits(acc_t.width + (n_in + 1).bit_length())
            mode = 2
        omode, lo, hi, k = _overflow_params(acc_t)
        final = not plan.sum_fits
        cast = np.array([ROUND_CODES[acc_t.rounding], omode, lo, hi, k, int(plan.saturating), int(final)], np.int64)
        rows = x.size // n_in
        params = (rows, n_in, np.ascontiguousarray(weights.T).reshape(-1), np.asarray(plan.bias_acc, np.int64).reshape(-1),
                  shift, mode, cast)
        return self._emit(OP_MATMUL, self._new(iv), (x.reg, x.off, 1), params=params)

    def lookup(self, x: MSym, key: str, real=None) -> MSym:
        table = self.node.attrs['tables'][key]
        index = self.cast(x, table.index)
        values = np.asarray(table.values, dtype=np.int64)
        params = (values, table.index.min_mantissa, int(bool(getattr(table, 'negated', False))), len(table) - 1)
        return self._emit(OP_TABLE, self._new(self.b.lookup(x.iv, key)), (index.reg, index.off, 1), params=params)

    def gather(self, x: MSym, index, fill=0) -> MSym:
        from ..semantics.primitives import LOWEST
        iv = self.b.gather(x.iv, index, fill)
        flat = np.asarray(index, dtype=np.int64).reshape(-1)
        if flat.size and flat[0] >= 0 and np.array_equal(flat, flat[0] + np.arange(flat.size)):
            return MSym(x.reg, x.off + int(flat[0]), iv)  # a run of elements: a view
        self._bits(63 if fill is LOWEST else abs(int(fill)).bit_length())
        fill = np.iinfo(np.int64).min if fill is LOWEST else int(fill)
        positions = np.where(flat >= 0, flat + x.off, -1)
        return self._emit(OP_GATHER, self._new(iv), (x.reg, 0, 1), params=(positions, fill))

    def concat(self, xs: list, axis: int) -> MSym:
        iv = self.b.concat([x.iv for x in xs], axis)
        out = self._new(iv)
        starts = np.cumsum([0] + [x.size for x in xs])
        ids = np.concatenate([np.arange(x.size).reshape(x.iv.lo.shape) + s for x, s in zip(xs, starts)], axis=axis)
        where = np.argsort(ids.reshape(-1), kind='stable')  # where[g]: output position of element g
        for x, s in zip(xs, starts):
            dst = where[s:s + x.size]
            if np.array_equal(dst, dst[0] + np.arange(x.size)):
                target, dst = MSym(out.reg, int(dst[0]), x.iv), -1
            else:
                target = MSym(out.reg, 0, x.iv)
            self._emit(OP_COPY, target, (x.reg, x.off, 1), shifts=(iv.frac - x.iv.frac, 0), params=(dst,))
        return out

    def reshape(self, x: MSym, shape) -> MSym:
        return MSym(x.reg, x.off, self.b.reshape(x.iv, shape))

    def assume(self, x: MSym, lo=None, hi=None) -> MSym:
        return MSym(x.reg, x.off, self.b.assume(x.iv, lo, hi))

    def label(self, x: MSym, name: str) -> MSym:
        return x

    def piecewise(self, x, t, above, below):
        raise Unfusable('piecewise')

    def reduce(self, x, op, axis, keepdims=False, acc=None, auto=None):
        raise Unfusable('reduce')

    def div_trunc(self, x, n):
        raise Unfusable('div_trunc')

    # ------------------------------------------------------------------ compilation
    def compile(self, outputs: list[MSym], block: int = MACHINE_BLOCK) -> 'MachineProgram':
        """The program computing `outputs` (concatenated per sample) from the inputs, registers allocated."""
        self.sizes.append(max(sum(o.size for o in outputs), 1))
        final, at = len(self.sizes) - 1, 0
        fixed = {x.reg for x in self.inputs} | set(self.consts)
        placed: dict[int, int] = {}  # a whole register computed straight into its place in the output
        for o in outputs:
            if o.off == 0 and o.size == self.sizes[o.reg] and o.reg not in fixed and o.reg not in placed:
                placed[o.reg] = at
            else:
                self.code.append(Instruction(OP_COPY, (final, at), o.size, (o.reg, o.off, 1), params=(-1,)))
            at += o.size
        code = _live_code([_moved(ins, placed, final) for ins in self.code], final)
        rows, n_rows = _allocate(self.sizes, code, [x.reg for x in self.inputs] + list(self.consts) + [final])
        return MachineProgram.build(self, code, rows, n_rows, final, block)


def _moved(ins: Instruction, placed: dict[int, int], final: int) -> Instruction:
    """ins with every register of `placed` replaced by its place (an offset) in register `final`."""
    def where(ref):
        if ref is None or ref[0] not in placed:
            return ref
        return (final, placed[ref[0]] + ref[1]) + tuple(ref[2:])
    return Instruction(ins.op, where(ins.out), ins.n, where(ins.a), where(ins.b), ins.shifts, ins.params)


def _live_code(code: list[Instruction], final: int) -> list[Instruction]:
    """The instructions the final register depends on (a dead value is not computed)."""
    needed, live = {final}, []
    for ins in reversed(code):
        if ins.out[0] in needed:
            live.append(ins)
            needed.update(ins.regs())
    return live[::-1]


def _allocate(sizes: list[int], code: list[Instruction], pinned: list[int]) -> tuple[dict[int, int], int]:
    """(first row of every register, rows in all): the pinned registers (inputs, constants, the output)
    first, in order, for the whole run; every other one from its first write to its last use, reusing
    the rows of freed registers of the same length."""
    end = {}
    for k, ins in enumerate(code):
        for r in ins.regs() + [ins.out[0]]:
            end[r] = k
    rows, top, kept = {}, 0, set(pinned)
    for r in pinned:
        rows[r], top = top, top + sizes[r]
    free: dict[int, list[int]] = {}
    for k, ins in enumerate(code):
        r = ins.out[0]
        if r not in rows:
            bucket = free.get(sizes[r])
            if bucket:
                rows[r] = bucket.pop()
            else:
                rows[r], top = top, top + sizes[r]
        for used in set(ins.regs() + [r]):
            if end[used] == k and used not in kept:
                free.setdefault(sizes[used], []).append(rows[used])
    return rows, top


@dataclass(frozen=True)
class MachineProgram:
    """A compiled machine program: instruction rows, constant pool, register rows, input and output layout."""

    prologue: np.ndarray   # (k, 16) int64: the constants, run once per call
    code: np.ndarray       # (m, 16) int64: run once per block of samples
    pool: np.ndarray       # int64: weights, biases, tables, gather indices, constants
    n_rows: int
    in_rows: tuple[int, int]   # first rows of input 0 and of the other inputs (concatenated)
    in_sizes: tuple[int, ...]
    out_sizes: tuple[int, ...]
    out_row: int
    block: int

    @staticmethod
    def build(machine: ScanMachine, code: list[Instruction], rows: dict, n_rows: int, final: int,
              block: int) -> 'MachineProgram':
        """Encode the instructions with register rows and pool offsets."""
        pool: list[np.ndarray] = []
        at = [0]

        def put(values) -> int:
            values = np.asarray(values, np.int64).reshape(-1)
            pool.append(values)
            at[0] += values.size
            return at[0] - values.size

        def row(ins: Instruction) -> list[int]:
            fields = [ins.op, rows[ins.out[0]] + ins.out[1], ins.n]
            for operand in (ins.a, ins.b):
                fields += [rows[operand[0]] + operand[1], operand[2]] if operand is not None else [0, 0]
            fields += list(ins.shifts)
            fields += [put(p) if isinstance(p, np.ndarray) else int(p) for p in ins.params]
            return fields + [0] * (len(CODE_FIELDS) - len(fields))
        prologue = [row(Instruction(OP_FILL, (r, 0), v.size, params=(v,))) for r, v in machine.consts.items() if v.size]
        body = [row(ins) for ins in code]
        inputs = [x.reg for x in machine.inputs]
        in_rows = (rows[inputs[0]], rows[inputs[1]] if len(inputs) > 1 else 0)
        return MachineProgram(_code_array(prologue), _code_array(body), np.concatenate(pool + [np.zeros(1, np.int64)]),
                              n_rows, in_rows, tuple(machine.sizes[r] for r in inputs),
                              tuple(machine.sizes[final] for _ in [0]), rows[final], block)

    def __call__(self, arrays: list[np.ndarray]) -> np.ndarray:
        """(batch, outputs concatenated) int64 from the input mantissa arrays (batch or 1 leading)."""
        n = max(len(a) for a in arrays)
        flat = [np.ascontiguousarray(a, dtype=np.int64).reshape(len(a), -1) for a in arrays]
        x0 = flat[0]
        if len(flat) > 1:
            x1 = np.concatenate([np.broadcast_to(a, (n, a.shape[1])) for a in flat[1:]], axis=1)
        else:
            x1 = np.zeros((1, 0), np.int64)
        out = np.empty((n, self.out_sizes[0]), np.int64)
        return _machine_run_nb(x0, x1, self.prologue, self.code, self.pool, np.int64(self.in_rows[0]),
                               np.int64(self.in_rows[1]), np.int64(self.out_row),
                               np.zeros((self.n_rows, self.block), np.int64), np.zeros(self.block, np.int64), out)


def _code_array(rows: list[list[int]]) -> np.ndarray:
    """Instruction rows as a (k, len(CODE_FIELDS)) int64 array."""
    return np.asarray(rows, np.int64).reshape(-1, len(CODE_FIELDS))
