"""Optional numba kernels for the emulator's hot loop (pure-numpy fallbacks live in ops.py).

Only one kernel is accelerated: the Dense (and Conv, on im2col rows) product-and-accumulate with
products floored by a right shift (``TRN`` into the accumulator; a shift of 0 is the exact case),
optionally wrapping the sums into a WRAP accumulator. It computes exactly what ops.py's numpy
path computes; tests/test_emulator.py checks both on random layers. Rows are processed in blocks
of BLOCK, transposed so the innermost loop runs over rows (long, contiguous, vectorizable), four
input rows per pass over an accumulator row; the kernel releases the GIL so chunks run on two
threads.
"""

from __future__ import annotations

import numpy as np

try:  # numba is an optional accelerator (extra 'fast')
    from numba import njit
except ImportError:  # pragma: no cover - exercised when numba is not installed
    njit = None

def available() -> bool:
    """True when numba is installed and the accelerated kernels can be used."""
    return njit is not None


#: samples per block: a block's transposed inputs and accumulators stay in the L1/L2 caches
BLOCK = 256


#: input rows accumulated per pass over an accumulator row (fewer loads and stores of it)
GROUP = 4


def _dense_floor_shift(x, w, groups, bias, shift, wrap_width, wrap_signed, out):
    """out[b, j] = wrap(bias[j] + sum_i floor(x[b, i] * w[i, j] / 2^shift)), accumulated in x's dtype.

    `groups` (G, GROUP) lists the input rows to visit, GROUP at a time (-1 pads the last group).
    Products are cast to x's dtype before the shift (the caller proves they fit), which lets LLVM
    vectorize the multiply in 32 bits. wrap_width > 0 keeps the low wrap_width bits of each sum
    (two's complement if wrap_signed, else unsigned) while writing the int64 output.
    """
    n_batch, n_in = x.shape
    n_out = w.shape[1]
    t = x.dtype.type
    xt = np.zeros((n_in + 1, BLOCK), x.dtype)  # row n_in stays zero: the padding row of groups
    acc = np.empty((n_out, BLOCK), x.dtype)
    wz = np.zeros((n_in + 1, n_out), w.dtype)
    wz[:n_in] = w
    keep = 64 - wrap_width
    mask = (np.int64(1) << wrap_width) - 1 if 0 < wrap_width < 64 else np.int64(-1)
    for start in range(0, n_batch, BLOCK):
        stop = min(start + BLOCK, n_batch)
        size = stop - start
        xt[:n_in, :size] = x[start:stop].T
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
                if shift == 0:  # exact products: two instructions fewer per product
                    for b in range(size):
                        acc_row[b] += t(x0[b] * w0) + t(x1[b] * w1) + t(x2[b] * w2) + t(x3[b] * w3)
                    continue
                for b in range(size):
                    acc_row[b] += ((t(x0[b] * w0) >> shift) + (t(x1[b] * w1) >> shift)
                                   + (t(x2[b] * w2) >> shift) + (t(x3[b] * w3) >> shift))
        for b in range(size):
            for j in range(n_out):
                v = np.int64(acc[j, b])
                if wrap_width > 0 and wrap_signed:
                    v = (v << keep) >> keep
                elif wrap_width > 0:
                    v = v & mask
                out[start + b, j] = v
    return out


def row_groups(nz_rows: np.ndarray, n_in: int) -> np.ndarray:
    """The rows to visit, GROUP at a time: (G, GROUP) int64, padded with n_in (a row of zeros)."""
    pad = (-len(nz_rows)) % GROUP
    return np.concatenate([np.asarray(nz_rows, np.int64), np.full(pad, n_in, np.int64)]).reshape(-1, GROUP)


if njit is not None:
    _dense_floor_shift_jit = njit(nogil=True, cache=True)(_dense_floor_shift)
else:  # pragma: no cover
    _dense_floor_shift_jit = None


def dense_floor_shift(x: np.ndarray, w: np.ndarray, nz_rows: np.ndarray, bias: np.ndarray,
                      shift: int, wrap_width: int = 0, wrap_signed: bool = True) -> np.ndarray:
    """bias + sum_i floor(x_i * w_ij / 2^shift) for a batch x (B, n_in) of int64 mantissas.

    `nz_rows` lists the rows of w with a non-zero weight (the others are skipped). The kernel
    computes in w's dtype: int32 (twice the SIMD lanes) is only passed when the caller has
    proven that every product and partial sum fits in 31 bits. With wrap_width > 0 each sum
    wraps to that many bits (a WRAP accumulator), signed or not. Returns int64.
    """
    x = np.ascontiguousarray(x, dtype=w.dtype)
    out = np.empty((x.shape[0], w.shape[1]), np.int64)
    return _dense_floor_shift_jit(x, w, row_groups(nz_rows, w.shape[0]), bias.astype(w.dtype),
                                  w.dtype.type(shift), np.int64(wrap_width), bool(wrap_signed), out)
