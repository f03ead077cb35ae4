"""Optional numba kernels for the emulator's hot loop (pure-numpy fallbacks live in ops.py).

Only one kernel is accelerated: the Dense product-and-accumulate with products floored by a
right shift (``TRN`` into the accumulator; a shift of 0 is the exact case). It computes exactly
what ops.py's numpy path computes; tests/test_emulator_fast.py checks both on random layers.
Samples are processed in blocks of BLOCK, transposed so the innermost loop runs over samples
(long, contiguous, vectorizable), and the kernel releases the GIL so chunks run on two threads.
"""

from __future__ import annotations

import numpy as np

try:  # numba is an optional accelerator (extra 'fast')
    from numba import njit
except ImportError:  # pragma: no cover - exercised when numba is not installed
    njit = None

BLOCK = 512


def available() -> bool:
    """True when numba is installed and the accelerated kernels can be used."""
    return njit is not None


def _dense_floor_shift(x, w, nz_rows, bias, shift, out):
    """out[b, j] = bias[j] + sum_i floor(x[b, i] * w[i, j] / 2^shift), in x's integer dtype, unchecked."""
    n_batch, n_in = x.shape
    n_out = w.shape[1]
    xt = np.empty((n_in, BLOCK), x.dtype)
    acc = np.empty((n_out, BLOCK), x.dtype)
    for start in range(0, n_batch, BLOCK):
        stop = min(start + BLOCK, n_batch)
        size = stop - start
        xt[:, :size] = x[start:stop].T
        for j in range(n_out):
            acc[j, :size] = bias[j]
        for k in range(nz_rows.size):
            i = nz_rows[k]
            x_row = xt[i]
            for j in range(n_out):
                wij = w[i, j]
                if wij == 0:
                    continue
                acc_row = acc[j]
                for b in range(size):
                    acc_row[b] += (x_row[b] * wij) >> shift
        out[start:stop] = acc[:, :size].T
    return out


if njit is not None:
    _dense_floor_shift_jit = njit(nogil=True, cache=True)(_dense_floor_shift)
else:  # pragma: no cover
    _dense_floor_shift_jit = None


def dense_floor_shift(x: np.ndarray, w: np.ndarray, nz_rows: np.ndarray, bias: np.ndarray,
                      shift: int) -> np.ndarray:
    """bias + sum_i floor(x_i * w_ij / 2^shift) for a batch x (B, n_in) of int64 mantissas.

    `nz_rows` lists the rows of w with a non-zero weight (the others are skipped). The kernel
    computes in w's dtype: int32 (twice the SIMD lanes) is only passed when the caller has
    proven that every product and partial sum fits in 31 bits. Returns int64.
    """
    x = np.ascontiguousarray(x, dtype=w.dtype)
    out = np.empty((x.shape[0], w.shape[1]), w.dtype)
    out = _dense_floor_shift_jit(x, w, nz_rows, bias.astype(w.dtype), w.dtype.type(shift), out)
    return out if out.dtype == np.int64 else out.astype(np.int64)
