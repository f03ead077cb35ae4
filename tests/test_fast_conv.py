"""fast.conv_floor_shift (the fused numba Conv kernel) equals geometry.take + fast.dense_floor_shift bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from fpga4ml import geometry
from fpga4ml.emulator import fast

pytestmark = pytest.mark.skipif(not fast.available(), reason='numba is not installed')

#: (input H, W, C), kernel, strides, dilation, pads (top, bottom, left, right), outputs
LAYERS = [
    ((8, 8, 3), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), 5),      # 2D valid
    ((7, 9, 2), (3, 2), (2, 1), (1, 2), (1, 1, 2, 0), 4),      # 2D strided, dilated, padded (-1 cells)
    ((1, 17, 4), (1, 5), (1, 3), (1, 1), (0, 0, 2, 2), 3),     # 1D (W, C) padded and strided
    ((1, 40, 1), (1, 3), (1, 1), (1, 1), (0, 0, 1, 1), 9),     # 1D, one channel, many windows (several blocks)
    ((5, 5, 16), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 24),    # 2D 'same', more inputs than a block has rows
]


def layer(seed: int, spec, dtype, sparse: bool):
    """A random layer: (flat inputs, index, weights, non-zero rows, bias) with products that fit `dtype`."""
    (h, w_in, c), kernel, strides, dilation, pads, n_out = spec
    rng = np.random.default_rng(seed)
    win = geometry.Window((h, w_in), kernel, strides, dilation, pads)
    index = geometry.im2col_index(win, c)
    big = dtype == np.int64
    flat = rng.integers(-2 ** (30 if big else 14), 2 ** (30 if big else 14), (7, h * w_in * c))
    w = rng.integers(-2 ** (28 if big else 10), 2 ** (28 if big else 10), (index.shape[1], n_out))
    if sparse:
        w[rng.random(w.shape) < 0.4] = 0
        w[1] = 0  # a whole zero row, left out of nz_rows
    nz_rows = np.flatnonzero(np.any(w != 0, axis=1)).astype(np.int64)
    bias = rng.integers(-1000, 1000, n_out)
    return flat.astype(dtype), index, w.astype(dtype), nz_rows, bias


def reference(flat, index, w, nz_rows, bias, shift, wrap_width, wrap_signed):
    """The path the emulator takes today: im2col with geometry.take, then the Dense row kernel."""
    cols = geometry.take(flat, index).reshape(-1, w.shape[0])
    out = fast.dense_floor_shift(cols, w, nz_rows, bias, shift, wrap_width, wrap_signed)
    return out.reshape(len(flat), index.shape[0], w.shape[1])


def floor_sum(flat, index, w, bias, shift, wrap_width, wrap_signed):
    """Exact numpy arithmetic (Python ints): bias + sum floor(x * w / 2^shift), wrapped."""
    cols = geometry.take(flat.astype(object), index).reshape(-1, w.shape[0])
    acc = bias.astype(object) + (cols[:, :, None] * w.astype(object)[None] >> shift).sum(axis=1)
    if wrap_width:
        acc = acc % (1 << wrap_width)
        if wrap_signed:
            acc = np.where(acc >= 1 << (wrap_width - 1), acc - (1 << wrap_width), acc)
    return acc.astype(np.int64).reshape(len(flat), index.shape[0], w.shape[1])


CASES = [(spec, dtype, shift, wrap, sparse)
         for spec in LAYERS for dtype in (np.int32, np.int64) for shift in (0, 7)
         for wrap, sparse in (((0, True), False), ((12, True), True), ((12, False), False))]


@pytest.mark.parametrize('spec, dtype, shift, wrap, sparse', CASES)
def test_conv_kernel_equals_take_and_dense(spec, dtype, shift, wrap, sparse):
    flat, index, w, nz_rows, bias = layer(len(spec[0]) + shift, spec, dtype, sparse)
    got = fast.conv_floor_shift(flat, index, w, nz_rows, bias, shift, *wrap)
    want = reference(flat, index, w, nz_rows, bias, shift, *wrap)
    assert got.dtype == np.int64 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    if dtype == np.int64 or not wrap[0]:  # int32 sums beyond 31 bits are the caller's proof obligation
        np.testing.assert_array_equal(got, floor_sum(flat, index, w, bias, shift, *wrap))


def test_padding_reads_zero_and_int64_flat_is_converted():
    flat, index, w, nz_rows, bias = layer(3, LAYERS[1], np.int32, False)
    assert (index == -1).any()
    got = fast.conv_floor_shift(flat.astype(np.int64), index, w, nz_rows, bias, 3)
    np.testing.assert_array_equal(got, floor_sum(flat, index, w, bias, 3, 0, True))


def test_plan_reused_on_several_batches():
    flat, index, w, nz_rows, bias = layer(5, LAYERS[0], np.int32, True)
    plan = fast.conv_plan(index, flat.shape[1], w, nz_rows, bias, 4, 10, False)
    for part in (flat[:1], flat[1:], flat[:0]):
        np.testing.assert_array_equal(plan(part), reference(part, index, w, nz_rows, bias, 4, 10, False))


def test_wrap_of_sums_that_overflow_the_accumulator():
    flat, index, w, nz_rows, bias = layer(6, LAYERS[4], np.int64, False)
    got = fast.conv_floor_shift(flat, index, w, nz_rows, bias, 0, 16, True)
    assert np.abs(floor_sum(flat, index, w, bias, 0, 0, True)).max() >= 1 << 16  # the wrap does something
    np.testing.assert_array_equal(got, floor_sum(flat, index, w, bias, 0, 16, True))


def test_negative_control_one_changed_weight_is_seen():
    flat, index, w, nz_rows, bias = layer(7, LAYERS[1], np.int32, False)
    changed = w.copy()
    changed[5, 2] += 1
    got = fast.conv_floor_shift(flat, index, changed, nz_rows, bias, 0)
    assert not np.array_equal(got, reference(flat, index, w, nz_rows, bias, 0, 0, True))


@pytest.mark.parametrize('bad, message', [
    (dict(index=np.zeros((4, 3), np.intp)), 'index'),
    (dict(index=np.full((4, 27), 10 ** 6)), 'index values'),
    (dict(bias=np.zeros(3)), 'bias shape'),
    (dict(shift=-1), 'shift'),
])
def test_bad_arguments_are_named(bad, message):
    flat, index, w, nz_rows, bias = layer(8, LAYERS[0], np.int32, False)
    args = dict(index=index, bias=bias, shift=0) | bad
    with pytest.raises(ValueError, match=message):
        fast.conv_floor_shift(flat, args['index'], w, nz_rows, args['bias'], args['shift'])


def test_float_weights_are_refused():
    flat, index, w, nz_rows, bias = layer(9, LAYERS[0], np.int32, False)
    with pytest.raises(TypeError, match='int32 or int64'):
        fast.conv_floor_shift(flat, index, w.astype(np.float64), nz_rows, bias, 0)
