"""The numba element-wise kernels of fast.py (cast, Scale multiply-add + cast, ReLU, max pool) equal the numpy path.

The cast kernel is hammered against FixedType.cast for every rounding x overflow mode it accepts
(random values plus ties and type edges), with a negative control; the others against numpy
expressions; and a Scale -> ReLU -> MaxPool network in the emulator gives the same outputs and
overflow counts with the kernels as with numba switched off, in several rounding and overflow modes.
"""

from __future__ import annotations

import numpy as np
import pytest

from fpga4ml import geometry
from fpga4ml.convert import convert_graph
from fpga4ml.emulator import fast
from fpga4ml.emulator.engine import Emulator
from fpga4ml.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedType
from fpga4ml.ir import Graph, Node

pytestmark = pytest.mark.skipif(not fast.available(), reason='numba is not installed')

RNG = np.random.default_rng(5)


def hammer_values(shift: int, width: int) -> np.ndarray:
    """Random int64 values inside +-2^62, with exact ties, near-ties and the type's edges at this shift."""
    big = RNG.integers(-(1 << 62) + 1, 1 << 62, 3000)
    near = RNG.integers(-(1 << min(width + shift + 2, 62)) + 1, 1 << min(width + shift + 2, 62), 3000)
    edges = []
    for e in (0, 1, (1 << (width - 1)), (1 << width)):
        for d in (-2, -1, 0, 1, 2):
            v = (e << shift) + d
            if abs(v) < (1 << 62):
                edges += [v, -v]
    if shift:
        half = 1 << (shift - 1)
        k = RNG.integers(-(1 << min(width + 2, 40)), 1 << min(width + 2, 40), 500)
        edges += list((k << shift) + half) + list((k << shift) - half)
    return np.concatenate([big, near, np.asarray(edges, np.int64)]).astype(np.int64)


ACCEPTED = [(r, o, s) for r in ('TRN', 'RND') for o in ('WRAP', 'SAT', 'SAT_SYM') for s in (True, False)]


@pytest.mark.parametrize('rounding,overflow,signed', ACCEPTED)
@pytest.mark.parametrize('width,integer', [(1, 1), (8, 3), (16, 6), (33, 40), (63, 10)])
@pytest.mark.parametrize('shift', [0, 1, 7, 30, 62])
def test_cast_kernel_equals_fixedtype_cast(rounding, overflow, signed, width, integer, shift):
    t = FixedType(width, integer, signed, rounding, overflow)
    frac_in = t.frac + shift
    plan = fast.cast_plan(t, frac_in)
    assert plan is not None
    m = hammer_values(shift, width)
    np.testing.assert_array_equal(plan(m), t.cast(m, frac_in))


def test_cast_kernel_negative_control():
    """A plan for another mode or LSB differs from the cast: the hammer test can see a wrong kernel."""
    m = hammer_values(4, 16)
    t = FixedType(16, 6, True, 'RND', 'SAT')
    assert not np.array_equal(fast.cast_plan(t.with_(rounding='TRN'), t.frac + 4)(m), t.cast(m, t.frac + 4))
    assert not np.array_equal(fast.cast_plan(t.with_(overflow='WRAP'), t.frac + 4)(m), t.cast(m, t.frac + 4))
    assert not np.array_equal(fast.cast_plan(t, t.frac + 3)(m), t.cast(m, t.frac + 4))


@pytest.mark.parametrize('rounding', ROUNDING_MODES)
@pytest.mark.parametrize('overflow', OVERFLOW_MODES)
def test_cast_kernel_refuses_what_it_does_not_cover(rounding, overflow):
    t = FixedType(16, 6, True, rounding, overflow)
    covered = rounding in ('TRN', 'RND') and overflow != 'SAT_ZERO'
    assert (fast.cast_plan(t, t.frac + 3) is not None) == covered
    # no rounding happens at shift 0: every rounding mode is the TRN kernel there
    assert (fast.cast_plan(t, t.frac) is not None) == (overflow != 'SAT_ZERO')
    assert fast.cast_plan(t, t.frac - 1) is None  # left shifts stay on the numpy path
    assert fast.cast_plan(t, t.frac + 63) is None
    assert fast.cast_plan(FixedType(64, 6, True, 'TRN', 'WRAP'), 62) is None


@pytest.mark.parametrize('dtype', [np.int32, np.int64])
def test_affine_cast_equals_numpy(dtype):
    t = FixedType(12, 4, True, 'RND', 'SAT')
    x = RNG.integers(-(1 << 20), 1 << 20, (7, 5, 3, 6)).astype(dtype)
    scale = RNG.integers(-(1 << 18), 1 << 18, 6)
    bias = RNG.integers(-(1 << 36), 1 << 36, 6)
    frac_in = t.frac + 20
    want = t.cast(x.astype(np.int64) * scale + bias, frac_in)
    np.testing.assert_array_equal(fast.affine_cast(x, scale, bias, fast.cast_plan(t, frac_in)), want)
    with pytest.raises(ValueError, match='6 channels'):
        fast.affine_cast(x[..., :5], scale, bias, fast.cast_plan(t, frac_in))


def test_clip_below_and_gather_max_equal_numpy():
    m = RNG.integers(-(1 << 40), 1 << 40, (4, 9, 5))
    np.testing.assert_array_equal(fast.clip_below(m, -7), np.maximum(m, -7))
    flat = RNG.integers(-(1 << 40), 1 << 40, (4, 30))
    index = RNG.integers(-1, 30, (3, 11))  # (taps, outputs), -1 reads the fill
    index[:, 0] = -1  # an output of padding only
    index_t = np.ascontiguousarray(index.T)
    for fill in (np.iinfo(np.int64).min, 0):
        want = geometry.take(flat, index, fill).max(axis=1)
        np.testing.assert_array_equal(fast.gather_max(flat, index_t, fill), want)


def scale_relu_pool(n_ch: int = 5) -> Graph:
    """Input (6, 6, n_ch) -> Scale (BatchNorm) -> ReLU -> MaxPool 2x2 (padding 'same' over 5 columns)."""
    g = Graph()
    g.add(Node('x', 'Input', [], (6, 5, n_ch)))
    g.add(Node('bn', 'Scale', ['x'], (6, 5, n_ch), weights={'scale': RNG.uniform(-3, 3, n_ch),
                                                           'bias': RNG.uniform(-2, 2, n_ch)}))
    g.add(Node('relu', 'Activation', ['bn'], (6, 5, n_ch), attrs={'function': 'relu'}))
    g.add(Node('pool', 'Pool', ['relu'], (3, 3, n_ch), attrs={'mode': 'max', 'pool_size': (2, 2), 'strides': (2, 2),
                                                              'padding': (0, 0, 0, 1)}))
    g.inputs, g.outputs = ['x'], ['pool']
    return g


def counted(fn, name, calls):
    """fn, counting its calls into calls[name]."""
    def wrapper(*args):
        calls[name] += 1
        return fn(*args)
    return wrapper


@pytest.mark.parametrize('result', ['fixed<8,3>', 'fixed<8,3,RND,SAT>', 'ufixed<7,2,RND,WRAP>', 'fixed<10,2,TRN,SAT_SYM>',
                                    'fixed<9,3,RND_CONV,SAT_ZERO>', 'fixed<12,5,TRN,WRAP>'])
def test_network_with_kernels_equals_numpy_path(monkeypatch, result):
    g = scale_relu_pool()
    cfg = {'Model': {'Precision': result}, 'LayerName': {'x': {'Precision': {'result': 'fixed<10,4>'}}}}
    model = convert_graph(g, cfg)
    x = RNG.uniform(-20, 20, (64, 6, 5, 5))
    calls = {name: 0 for name in ('affine_cast', 'clip_below', 'gather_max')}
    for name in calls:
        monkeypatch.setattr(fast, name, counted(getattr(fast, name), name, calls))
    fast_emu = Emulator(model.graph, model.intervals, chunk=16)
    fast_out = fast_emu.run(x, keep=['bn', 'relu', 'pool'])
    covered = fast.cast_plan(model.graph['bn'].result_type, 30) is not None
    assert calls == {'affine_cast': 4 if covered else 0, 'clip_below': 4, 'gather_max': 4}  # 4 chunks
    fast_trace = fast_emu.trace(x)[1]
    monkeypatch.setattr(fast, 'available', lambda: False)
    slow_emu = Emulator(model.graph, model.intervals, chunk=16)
    slow_out = slow_emu.run(x, keep=['bn', 'relu', 'pool'])
    slow_trace = slow_emu.trace(x)[1]
    for name in ('bn', 'relu', 'pool'):
        np.testing.assert_array_equal(fast_out[name], slow_out[name], err_msg=name)
        assert fast_trace[name].overflow == slow_trace[name].overflow
    assert any(s.overflow for s in slow_trace.values())  # the modes are exercised where they matter


def test_network_negative_control(monkeypatch):
    """A kernel with a wrong rounding in the Scale step changes the emulator's output."""
    g = scale_relu_pool()
    model = convert_graph(g, {'Model': {'Precision': 'fixed<8,3,RND,SAT>'},
                              'LayerName': {'x': {'Precision': {'result': 'fixed<10,4>'}}}})
    x = RNG.uniform(-20, 20, (64, 6, 5, 5))
    good = Emulator(model.graph, model.intervals).run(x, keep=['bn'])['bn']
    plan = fast.cast_plan
    monkeypatch.setattr(fast, 'cast_plan', lambda t, frac: plan(t.with_(rounding='TRN'), frac))
    bad = Emulator(model.graph, model.intervals).run(x, keep=['bn'])['bn']
    assert not np.array_equal(good, bad)
