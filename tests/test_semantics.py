"""The semantics layer: every primitive run by the four interpreters on the same random inputs.

For each primitive a tiny recipe is run by the numpy interpreter (the emulator), the netlist
interpreter (evaluated signal by signal), the interval interpreter and the float interpreter:
numpy == netlist bit for bit, numpy == a slow per-element Python reference, every value inside the
bounds, and float == numpy where the primitive is exact. Then: float and fixed meanings of every
piecewise op agree within one LSB with default attributes (their defaults are one declaration).
"""

from __future__ import annotations

import numpy as np
import pytest

from fpga4ml.backends.verilog.netlist import Netlist
from fpga4ml.convert import convert_graph
from fpga4ml.emulator.reference import float_forward
from fpga4ml.fixed import FixedType, parse_precision
from fpga4ml.intervals import Interval, round_shift, trunc_div, type_for
from fpga4ml.ir import Graph, Node
from fpga4ml.semantics.bounds import Bounds
from fpga4ml.semantics.float_interp import FloatRun
from fpga4ml.semantics.netlist_interp import NetlistLowering
from fpga4ml.semantics.numpy_interp import NumpyProgram
from fpga4ml.semantics.primitives import LOWEST, Const
from fpga4ml.semantics.tables import Table

N = 400
ROUNDINGS = ('TRN', 'RND', 'RND_ZERO', 'RND_MIN_INF', 'RND_INF', 'RND_CONV', 'TRN_ZERO')
OVERFLOWS = ('WRAP', 'SAT', 'SAT_ZERO', 'SAT_SYM')


def T(text: str) -> FixedType:
    return parse_precision(text)


def run_four(recipe, in_types, shapes, node_types=None, seed=0, attrs=None, netlist=True):
    """(numpy result, float result, bounds, inputs) of `recipe(p, *xs)`; asserts numpy == netlist and bounds."""
    node = Node('t', 'Quantize', [], (1,), types=dict(node_types or {}), attrs=dict(attrs or {}))
    rng = np.random.default_rng(seed)
    xs = [rng.integers(t.min_mantissa, t.max_mantissa + 1, (N,) + s) for t, s in zip(in_types, shapes)]
    ivs = [Interval.of_type(t, s) for t, s in zip(in_types, shapes)]
    bounds = recipe(Bounds(node, in_types), *ivs)
    prog = NumpyProgram(node, in_types, ivs)
    y = np.asarray(prog.kernel(recipe(prog, *prog.inputs))(xs, None))
    nl = Netlist() if netlist else None  # the Verilog back end refuses > 62-bit signals (documented)
    sigs = [] if nl is None else [np.asarray(nl.add_input(f'x{k}', s, t), dtype=object).reshape(s)
            for k, (t, s) in enumerate(zip(in_types, shapes))]
    if nl is not None:
        out = recipe(NetlistLowering(nl, node, in_types), *sigs)
        lo = min(min(nl[q].lo for q in out.flat), bounds.min)  # the netlist's own bounds may be looser
        hi = max(max(nl[q].hi for q in out.flat), bounds.max)
        nl.add_output('y', out.shape, type_for(Interval(np.asarray([lo]), np.asarray([hi]), bounds.frac)),
                      list(out.ravel()))
        (y_nl,) = nl.evaluate([x.reshape(N, -1) for x in xs])
        np.testing.assert_array_equal(y_nl.reshape(y.shape), y)
    assert y.shape[1:] == bounds.lo.shape
    assert np.all(y >= bounds.lo.astype(np.int64)) and np.all(y <= bounds.hi.astype(np.int64))
    reals = [x * 2.0 ** -t.frac for x, t in zip(xs, in_types)]
    yf = recipe(FloatRun(node), *reals)
    return y, np.asarray(yf) * 2.0 ** bounds.frac, bounds, xs


def slow_cast(v: int, frac_in: int, t: FixedType) -> int:
    """One ap_fixed cast on Python integers: round_shift, then the overflow mode by cases."""
    q = round_shift(int(v), frac_in - t.frac, t.rounding)
    lo, hi = t.min_mantissa, t.max_mantissa
    if lo <= q <= hi and not (t.overflow == 'SAT_SYM' and t.signed and q == lo):
        return q
    if t.overflow == 'WRAP':
        return (q - lo) % (1 << t.width) + lo
    if t.overflow == 'SAT_ZERO':
        return 0
    low = lo + 1 if t.overflow == 'SAT_SYM' and t.signed else lo
    return min(max(q, low), hi)


@pytest.mark.parametrize('rounding', ROUNDINGS)
@pytest.mark.parametrize('overflow', OVERFLOWS)
def test_cast_every_mode(rounding, overflow):
    t = FixedType(6, 2, True, rounding, overflow)
    y, _, _, (x,) = run_four(lambda p, a: p.cast(a, t), [T('fixed<12,5>')], [(4,)])
    assert y.tolist() == [[slow_cast(v, 7, t) for v in row] for row in x.tolist()]


def test_cast_negative_control():
    t = FixedType(6, 2, True, 'RND', 'SAT')
    y, _, _, (x,) = run_four(lambda p, a: p.cast(a, t), [T('fixed<12,5>')], [(4,)])
    wrong = FixedType(6, 2, True, 'TRN', 'SAT')
    assert y.tolist() != [[slow_cast(v, 7, wrong) for v in row] for row in x.tolist()]


@pytest.mark.parametrize('rounding', ROUNDINGS)
def test_round_keeps_every_value(rounding):
    t = FixedType(8, 4, True, rounding, 'SAT')
    y, _, _, (x,) = run_four(lambda p, a: p.round(a, t), [T('fixed<16,6>')], [(3,)])
    assert y.tolist() == [[round_shift(v, 6, rounding) for v in row] for row in x.tolist()]


def test_exact_arithmetic_and_float_agree():
    """add, sub, neg, shift, mul, maximum, minimum at mixed LSBs: exact, and the float meaning is the same."""
    a_t, b_t = T('fixed<9,3>'), T('ufixed<7,4>')

    def recipe(p, a, b):
        s = p.sub(p.add(a, b), p.neg(p.shift(b, 1)))
        return p.minimum(p.maximum(p.mul(s, a), p.mul(a, b)), p.mul(b, b))
    y, yf, bounds, (a, b) = run_four(recipe, [a_t, b_t], [(5,), (5,)])
    fa, fb = a_t.frac, b_t.frac
    af, bf = a / 2.0 ** fa, b / 2.0 ** fb
    want = np.minimum(np.maximum((af + bf + 2 * bf) * af, af * bf), bf * bf) * 2.0 ** bounds.frac
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(yf, want)


def test_products_wider_than_int64_are_exact():
    t = T('fixed<40,20>')
    y, _, bounds, (a, b) = run_four(lambda p, a, b: p.cast(p.mul(p.mul(a, b), a), T('fixed<24,12,RND,SAT>')),
                                    [t, t], [(2,), (2,)], netlist=False)
    want = [[slow_cast(int(u) * int(v) * int(u), 60, T('fixed<24,12,RND,SAT>')) for u, v in zip(ra, rb)]
            for ra, rb in zip(a.tolist(), b.tolist())]
    assert y.tolist() == want


@pytest.mark.parametrize('acc', ['fixed<10,3,TRN,SAT>', 'fixed<10,3,RND,WRAP>', 'fixed<24,8>'])
def test_const_matmul_is_hls4ml_accumulate(acc):
    """Bias and every product cast into the accumulator, summed in input order (saturating step by step)."""
    rng = np.random.default_rng(3)
    w = Const(rng.integers(-40, 40, (6, 3)), 5)
    bias = Const(rng.integers(-60, 60, 3), 4)
    acc_t = T(acc)
    y, _, _, (x,) = run_four(lambda p, a: p.const_matmul(a, w, bias, 'accum'), [T('fixed<8,3>')], [(2, 6)],
                             {'accum': acc_t})
    for r in range(3):
        for i in range(2):
            for j in range(3):
                s = slow_cast(int(bias.values[j]), 4, acc_t)
                for k in range(6):
                    s = slow_cast(s + slow_cast(int(x[r, i, k]) * int(w.values[k, j]), 10, acc_t), acc_t.frac, acc_t)
                assert y[r, i, j] == s, (r, i, j)


def test_const_matmul_of_a_one_dimensional_gather():
    """A constant-matrix product reading a plain (n,) gather (a permutation, not convolution windows)."""
    rng = np.random.default_rng(4)
    w, bias, acc_t = Const(rng.integers(-40, 40, (4, 3)), 5), Const(rng.integers(-9, 9, 3), 5), T('fixed<24,8>')
    order = np.array([3, 0, 2, 1])
    y, _, _, (x,) = run_four(lambda p, a: p.const_matmul(p.gather(a, order), w, bias, 'accum'), [T('fixed<8,3>')],
                             [(4,)], {'accum': acc_t})
    for r in range(N):
        for j in range(3):
            s = slow_cast(int(bias.values[j]), 5, acc_t)
            for k in range(4):
                s = slow_cast(s + slow_cast(int(x[r, order[k]]) * int(w.values[k, j]), 10, acc_t), acc_t.frac, acc_t)
            assert y[r, j] == s, (r, j)


def test_piecewise_select_and_bounds_per_side():
    t = T('fixed<8,4>')
    theta = Const(np.asarray(-3), t.frac)
    y, yf, bounds, (x,) = run_four(lambda p, a: p.piecewise(a, theta, lambda v: p.shift(v, 1),
                                                           lambda v: p.mul(v, p.const(Const(np.asarray(3), 0)))),
                                   [t], [(4,)])
    np.testing.assert_array_equal(y, np.where(x > -3, 2 * x, 3 * x))  # both at the input LSB
    np.testing.assert_array_equal(yf, y)
    # the below side only sees x <= -3: the product's bounds start at 3 * min(x), end at 3 * -3
    assert int(bounds.lo.min()) == 3 * t.min_mantissa * 2 ** (bounds.frac - t.frac)


def test_lookup_both_addressings():
    idx = FixedType(4, 2, True, 'TRN', 'SAT')
    values = np.arange(16, dtype=np.int64) * 3 - 7
    attrs = {'tables': {'f': Table(idx, values, T('fixed<8,4>')), 'n': Table(idx, values[:9], T('fixed<8,4>'),
                                                                                negated=True)}}
    y, _, _, (x,) = run_four(lambda p, a: p.add(p.lookup(a, 'f', np.exp),
                                                   p.lookup(p.assume(p.minimum(a, p.const(Const(np.asarray(0), 0))), hi=0), 'n', np.exp)),
                             [FixedType(6, 2, True, 'TRN', 'SAT')], [(3,)], attrs=attrs)
    q = np.clip(x >> 2, -8, 7)
    np.testing.assert_array_equal(y, values[q + 8] + values[np.minimum(-np.minimum(q, 0), 8)])


def test_reduce_with_accumulator_gather_concat_reshape():
    acc_t = T('fixed<7,3,TRN,SAT>')
    index = np.array([[0, 1, 2, -1], [3, 4, 5, 0]]).T  # (taps, outputs), -1: padding

    def recipe(p, a):
        total = p.reduce(p.gather(a, index), 'sum', axis=0, acc='accum')
        top = p.reduce(p.gather(a, index, LOWEST), 'max', axis=0)
        both = p.concat([p.div_trunc(total, np.array([3, 4])), top], 0)
        return p.reshape(both, (2, 2))
    y, _, _, (x,) = run_four(recipe, [T('fixed<6,3>')], [(6,)], {'accum': acc_t})
    for r in range(N):
        for o in range(2):
            s = 0  # at the accumulator's LSB (2^-4); inputs are at 2^-3
            for k in index[:, o]:
                s = slow_cast(s + (int(x[r, k]) << 1 if k >= 0 else 0), 4, acc_t)
            assert y[r].ravel()[o] == int(trunc_div(np.array([s]), [3, 4][o])[0])
            assert y[r].ravel()[2 + o] == max(int(x[r, k]) for k in index[:, o] if k >= 0) << 1


PIECEWISE = ['linear', 'relu', 'leaky_relu', 'prelu', 'hard_sigmoid', 'hard_tanh']


def _activation_graph(fn: str) -> Graph:
    g = Graph()
    g.add(Node('x', 'Input', [], (64,)))
    weights = {'alpha': np.full(64, 0.25)} if fn == 'prelu' else {}
    g.add(Node('f', 'Activation', ['x'], (64,), attrs={'function': fn}, weights=weights))
    g.inputs, g.outputs = ['x'], ['f']
    return g


@pytest.mark.parametrize('fn', PIECEWISE)
def test_float_and_fixed_meanings_agree_with_default_attributes(fn, tmp_path):
    """With the attributes left at their defaults, float and fixed differ by at most one result LSB."""
    cfg = {'Model': {'Precision': 'fixed<18,6,RND,SAT>'},
           'LayerName': {'f': {'Precision': {'result': 'fixed<18,6,RND,SAT>'}}}}
    if fn in ('leaky_relu', 'prelu', 'hard_sigmoid'):
        cfg['LayerName']['f']['Precision']['param'] = 'fixed<24,2>'
    model = convert_graph(_activation_graph(fn), cfg, backend='Vitis', output_dir=str(tmp_path))
    x = model.graph['x'].result_type.to_float(model.graph['x'].result_type.quantize(
        np.random.default_rng(5).uniform(-5, 5, (300, 64))))
    fixed = model.predict(x)
    real = float_forward(model.graph, x)[0]
    lsb = model.graph['f'].result_type.lsb
    assert np.max(np.abs(fixed - real)) <= lsb
    # negative control: the float meaning with another slope or shift must disagree
    model.graph['f'].attrs.update({'alpha': 0.2, 'slope': 1 / 6, 'shift': 0.4, 'threshold': 0.75,
                                   'max_value': None} if fn != 'linear' else {})
    if fn in ('prelu', 'hard_tanh', 'linear'):
        model.graph['f'].weights = {'alpha': np.full(64, 0.5)} if fn == 'prelu' else {}
        if fn != 'prelu':
            return
    assert np.max(np.abs(fixed - float_forward(model.graph, x)[0])) > lsb


def test_op_declarations_refuse_unknown_and_missing_attributes(tmp_path):
    """Front-end nodes are checked against their op's declaration; convert and lint check every node."""
    from fpga4ml.ir import GraphError
    from fpga4ml.semantics.spec import check_node, make_node, spec_of
    with pytest.raises(GraphError, match=r"layer 'd': op 'Dense' has no attribute 'use_bais'.*'use_bias'"):
        make_node('d', 'Dense', ['x'], (3,), attrs={'use_bais': False})
    with pytest.raises(GraphError, match=r"layer 'f': op 'Activation' needs the attribute\(s\) \['function'\]"):
        make_node('f', 'Activation', ['x'], (3,))
    with pytest.raises(GraphError, match=r"layer 'd': op 'Dense' has no weight\(s\) \['kernal'\]"):
        make_node('d', 'Dense', ['x'], (3,), weights={'kernal': np.ones((3, 3))})
    assert check_node(make_node('d', 'Dense', ['x'], (3,), attrs={'use_bias': False}, weights={'kernel': np.ones((3, 3))}))
    # a hand-built graph: the same checks at convert time and in lint (positive control first)
    g = _activation_graph('relu')
    g.lint()
    g['f'].attrs['treshold'] = 0.5
    with pytest.raises(GraphError, match=r"layer 'f'.*no attribute 'treshold'"):
        g.lint()
    with pytest.raises(GraphError, match=r"layer 'f'.*no attribute 'treshold'"):
        convert_graph(g, None, backend='Vitis', output_dir=str(tmp_path))
    # precision variables and weight precisions are declared once, in the op's spec
    assert spec_of(g['f']).precision_variables(g['f']) == ('result',)
    assert spec_of(Node('p', 'Activation', ['x'], (3,), attrs={'function': 'prelu'})).weights == {'alpha': None}


def test_shape_inference_from_the_recipe():
    """Graph.lint infers every node's shape by running its recipe and refuses a node that says otherwise."""
    from fpga4ml.ir import GraphError
    from fpga4ml.semantics import output_shape
    g = Graph()
    g.add(Node('x', 'Input', [], (4, 6)))
    g.add(Node('d', 'Dense', ['x'], (4, 3), weights={'kernel': np.ones((6, 3)), 'bias': np.zeros(3)}))
    g.add(Node('t', 'Transpose', ['d'], (3, 4), attrs={'perm': (1, 0)}))
    g.inputs, g.outputs = ['x'], ['t']
    g.lint()
    assert output_shape(g['d'], [(4, 6)]) == (4, 3) and output_shape(g['t'], [(4, 3)]) == (3, 4)
    g['d'].shape = (4, 2)  # negative control: a wrong declared shape
    with pytest.raises(GraphError, match=r"node 'd': a Dense of inputs \[\(4, 6\)\] gives shape \(4, 3\), the node "
                                         r"says \(4, 2\)"):
        g.lint()
    g['d'].shape = (4, 3)
    g['t'].shape = (4, 3)  # an index map's geometry checks its own shape
    with pytest.raises(GraphError, match=r"'t'"):
        g.lint()


def test_converted_graph_with_fused_batchnorm_lints(tmp_path):
    """The fusion pass's annotation is declared: a converted graph passes lint (the saved-model loader relies on it)."""
    g = Graph()
    g.add(Node('x', 'Input', [], (4,)))
    g.add(Node('d', 'Dense', ['x'], (3,), weights={'kernel': np.ones((4, 3)), 'bias': np.zeros(3)}))
    g.add(Node('bn', 'Scale', ['d'], (3,), weights={'scale': np.full(3, 0.5), 'bias': np.full(3, 0.25)}))
    g.inputs, g.outputs = ['x'], ['bn']
    cfg = {'Model': {'Precision': 'fixed<16,6>'}, 'LayerName': {'d': {'Precision': {'result': 'auto'}}}}
    model = convert_graph(g, cfg, backend='Vitis', output_dir=str(tmp_path))
    assert model.graph['d'].attrs['fused'] == ['bn'] and 'bn' not in model.graph
    model.graph.lint()


def test_concat_of_values_far_apart_in_lsb_is_exact():
    """Aligned to the finest LSB the parts need more than 62 bits: the values stay exact Python integers."""
    coarse, fine = T('fixed<40,40>'), T('fixed<30,-10>')  # LSBs 2^0 and 2^-40: 80 aligned bits
    node = Node('t', 'Quantize', [], (1,))
    ivs = [Interval.of_type(coarse, (2,)), Interval.of_type(fine, (2,))]
    prog = NumpyProgram(node, [coarse, fine], ivs)
    kernel = prog.kernel(prog.concat(list(prog.inputs), 0))
    rng = np.random.default_rng(3)
    a = rng.integers(coarse.min_mantissa, coarse.max_mantissa + 1, (50, 2))
    b = rng.integers(fine.min_mantissa, fine.max_mantissa + 1, (50, 2))
    y = np.asarray(kernel([a, b], None))
    expect = [[int(v) << 40 for v in row_a] + [int(v) for v in row_b] for row_a, row_b in zip(a, b)]
    assert y.tolist() == expect
    assert Bounds(node, [coarse, fine]).concat(ivs, 0).frac == 40


def test_lookup_bounds_are_the_entries_the_argument_can_address():
    """A table read is bounded by the entries its argument's bounds reach, not by the whole table."""
    idx = T('fixed<6,3,TRN,SAT>')  # addresses 0..63 for mantissas -32..31
    values = np.arange(64) * 3 - 90  # increasing: entry a = 3a - 90
    node = Node('t', 'Quantize', [], (1,), attrs={'tables': {'f': Table(idx, values, T('fixed<10,6>')),
                                                             'n': Table(idx, values[:9], T('fixed<10,6>'), negated=True)}})
    b = Bounds(node, [T('fixed<8,4>')])
    x = Interval(np.asarray([-16, 0, -200], dtype=object), np.asarray([15, 4, 200], dtype=object), 4)  # LSB 2^-4
    y = b.lookup(x, 'f')  # index = floor(x / 2): [-8, 7] -> addresses 24..39; [0, 2] -> 32..34; saturated: all
    assert y.lo.tolist() == [3 * 24 - 90, 3 * 32 - 90, -90] and y.hi.tolist() == [3 * 39 - 90, 3 * 34 - 90, 99]
    neg = b.lookup(Interval(np.asarray([-6], dtype=object), np.asarray([0], dtype=object), 4), 'n')
    assert (neg.lo.tolist(), neg.hi.tolist()) == ([3 * 0 - 90], [3 * 3 - 90])  # addresses min(-index, 8): 0..3
