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
# A recurrent layer's whole scan as one numba program: scan_machine.py records and encodes it,
# scan_kernels.py runs it (int32 or int64 registers); re-exported here for the numpy interpreter.
from .scan_machine import MachineProgram, ScanMachine, Unfusable  # noqa: E402,F401
