"""The emulator against slow, independent Python-int references (no framework needed).

Each reference below is written straight from the semantics in docs/semantics.md, one sample and
one element at a time with Python integers and FixedType.cast on scalars; the emulator's
vectorized paths (BLAS, numba, per-product numpy loop) must agree with it exactly. Each test
has a negative control: a changed weight makes the comparison fail.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from fpga4ml.convert import convert_graph
from fpga4ml.emulator import fast
from fpga4ml.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedType
from fpga4ml.ir import Graph, Node


def dense_graph(rng, n_in=7, n_out=5, sparsity=0.3) -> Graph:
    g = Graph()
    g.add(Node('x', 'Input', [], (n_in,)))
    w = rng.normal(0, 0.7, (n_in, n_out)).astype(np.float32)
    w[rng.random(w.shape) < sparsity] = 0
    b = rng.normal(0, 0.5, n_out).astype(np.float32)
    g.add(Node('fc', 'Dense', ['x'], (n_out,), weights={'kernel': w, 'bias': b}, source='Dense'))
    g.inputs, g.outputs = ['x'], ['fc']
    return g


def cast1(t: FixedType, m: int, frac_in: int) -> int:
    return int(t.cast(np.array([m], dtype=np.int64), frac_in)[0])


def reference_dense(model, x: np.ndarray) -> np.ndarray:
    """hls4ml dense_latency, one sample at a time: products and bias cast into accum, += in order."""
    node = model.graph['fc']
    x_t = model.graph['x'].result_type
    acc_t, res_t = node.types['accum'], node.types['result']
    w = node.qweights['kernel']
    b = node.qweights['bias']
    prod_frac = x_t.frac + node.types['weight'].frac
    xm = x_t.quantize(x)
    out = np.zeros((x.shape[0], w.shape[1]), dtype=np.int64)
    for s in range(x.shape[0]):
        for j in range(w.shape[1]):
            acc = cast1(acc_t, int(b[j]), node.types['bias'].frac)
            for i in range(w.shape[0]):
                acc = cast1(acc_t, acc + cast1(acc_t, int(xm[s, i]) * int(w[i, j]), prod_frac), acc_t.frac)
            out[s, j] = cast1(res_t, acc, acc_t.frac)
    return res_t.to_float(out)


CONFIGS = [
    # (input, weight, bias, accum, result)
    ('fixed<16,6>', 'fixed<16,6>', 'fixed<16,6>', 'fixed<16,6>', 'fixed<16,6>'),  # hls4ml default
    ('fixed<10,4,RND,SAT>', 'fixed<8,2,RND_CONV>', 'fixed<8,3>', 'fixed<12,5,RND,SAT>', 'fixed<8,3,RND_ZERO,SAT_SYM>'),
    ('fixed<12,4>', 'fixed<6,1>', 'fixed<6,2>', 'fixed<30,12>', 'ufixed<6,2,RND_INF,SAT_ZERO>'),  # exact products
    ('ufixed<8,3>', 'fixed<9,0,RND_MIN_INF>', 'fixed<9,1>', 'fixed<9,2,TRN_ZERO,WRAP>', 'fixed<7,2,RND>'),
    ('fixed<14,7,RND,SAT>', 'fixed<12,3>', 'fixed<12,3>', 'fixed<11,4,TRN,SAT>', 'fixed<20,8>'),  # TRN + SAT accum
]


def make_model(rng, prec, **kw):
    inp, wt, bs, acc, res = prec
    cfg = {'Model': {'Precision': 'fixed<16,6>'},
           'LayerName': {'x': {'Precision': {'result': inp}},
                         'fc': {'Precision': {'weight': wt, 'bias': bs, 'accum': acc, 'result': res}}}}
    return convert_graph(dense_graph(rng, **kw), cfg)


@pytest.mark.parametrize('prec', CONFIGS, ids=[c[3] for c in CONFIGS])
@pytest.mark.parametrize('use_numba', [True, False])
def test_dense_matches_reference(prec, use_numba, monkeypatch):
    rng = np.random.default_rng(zlib.crc32(repr(prec).encode()))
    if not use_numba:
        monkeypatch.setattr(fast, 'available', lambda: False)
    model = make_model(rng, prec)
    x = rng.normal(0, 8, (300, 7))  # large enough to overflow the narrow input types
    got = model.predict(x)
    want = reference_dense(model, x)
    bad = np.argwhere(got != want)
    assert bad.size == 0, f'vector {bad[0][0]}, output {bad[0][1]}: emulator {got[tuple(bad[0])]} != reference {want[tuple(bad[0])]}'

    # negative control: one changed weight mantissa must change some output
    model.graph['fc'].qweights['kernel'][0, 0] += 3
    model._emulator = None
    assert np.any(model.predict(x) != want)


def test_dense_all_modes_random():
    """Every rounding x overflow mode for accumulator and result, random shapes and widths."""
    rng = np.random.default_rng(7)
    for k in range(24):
        acc = FixedType(int(rng.integers(6, 20)), int(rng.integers(1, 8)), True,
                        ROUNDING_MODES[k % 7], OVERFLOW_MODES[k % 4])
        res = FixedType(int(rng.integers(4, 16)), int(rng.integers(-1, 6)), bool(k % 3),
                        ROUNDING_MODES[(k + 3) % 7], OVERFLOW_MODES[(k + 1) % 4])
        prec = (f'fixed<{rng.integers(6, 14)},{rng.integers(2, 6)}>', 'fixed<8,2>', 'fixed<8,2>', str(acc), str(res))
        model = make_model(rng, prec, n_in=int(rng.integers(1, 9)), n_out=int(rng.integers(1, 6)))
        x = rng.normal(0, 6, (60, model.graph['x'].shape[0]))
        assert np.array_equal(model.predict(x), reference_dense(model, x)), prec


def test_numba_kernel_matches_numpy():
    if not fast.available():
        pytest.skip('numba is not installed: the numpy path is the only path')
    rng = np.random.default_rng(3)
    for shift, dtype in [(0, np.int64), (1, np.int32), (7, np.int64), (20, np.int64), (10, np.int32)]:
        w = rng.integers(-300, 300, (13, 9)).astype(dtype)
        w[2] = 0
        x = rng.integers(-2**12, 2**12, (1500, 13)).astype(np.int64)
        b = rng.integers(-999, 999, 9).astype(np.int64)
        nz = np.flatnonzero(np.any(w != 0, axis=1)).astype(np.int64)
        want = b + ((x[:, :, None] * w[None].astype(np.int64)) >> shift).sum(axis=1)
        assert np.array_equal(fast.dense_floor_shift(x, w, nz, b, shift), want)
        for width, signed in ((9, True), (7, False)):  # a WRAP accumulator wraps inside the kernel
            wrapped = FixedType(width, width, signed).cast(want, 0)
            assert np.array_equal(fast.dense_floor_shift(x, w, nz, b, shift, width, signed), wrapped)
