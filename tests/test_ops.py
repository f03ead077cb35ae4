"""Element-wise ops, tables, softmax and merges against scalar references (docs/semantics.md)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from fpga4ml.convert import convert_graph
from fpga4ml.functions import table_function
from fpga4ml.ir import Graph, Node


def cast1(t, m: int, frac_in: int) -> int:
    return int(t.cast(np.array([m], dtype=np.int64), frac_in)[0])


def single_op(op: str, in_shape=(6,), n_inputs=1, attrs=None, weights=None, out_shape=None) -> Graph:
    g = Graph()
    names = [f'in{i}' for i in range(n_inputs)]
    for name in names:
        g.add(Node(name, 'Input', [], in_shape))
    g.add(Node('op', op, names, out_shape or in_shape, attrs=attrs or {}, weights=weights or {}, source=op))
    g.inputs, g.outputs = names, ['op']
    return g


def convert(g: Graph, in_prec, op_prec: dict, model='fixed<16,6>'):
    names = {n: {'Precision': {'result': in_prec}} for n in g.inputs}
    names['op'] = {'Precision': op_prec}
    return convert_graph(g, {'Model': {'Precision': model}, 'LayerName': names})


def mantissas(model, name, x):
    return model.graph[name].result_type.quantize(x)


PIECEWISE = [
    ({'function': 'relu'}, None),
    ({'function': 'relu', 'max_value': 6.0}, None),
    ({'function': 'leaky_relu', 'alpha': 0.3}, None),
    ({'function': 'prelu'}, 'alpha'),
    ({'function': 'linear'}, None),
    ({'function': 'hard_tanh'}, None),
    ({'function': 'hard_sigmoid', 'slope': 1 / 6, 'shift': 0.5}, None),
]


def reference_piecewise(node, in_t, xm: np.ndarray) -> np.ndarray:
    fn = node.attrs['function']
    res = node.types['result']
    fx = in_t.frac
    out = np.zeros_like(xm)
    for k, m in np.ndenumerate(xm):
        m = int(m)
        if fn == 'relu':
            v, f = max(m, 0), fx
            if 'max_value' in node.attrs:
                v = min(v, int(node.attrs['max_value'] * 2 ** fx))
        elif fn in ('leaky_relu', 'prelu'):
            pt = node.types['param']
            a = int(pt.quantize(np.asarray([node.attrs['alpha']]))[0]) if fn == 'leaky_relu' \
                else int(node.qweights['alpha'][k[1:]])
            v, f = (m << pt.frac if m > 0 else m * a), fx + pt.frac
        elif fn == 'linear':
            v, f = m, fx
        elif fn == 'hard_tanh':
            val = min(max(Fraction(m, 2 ** fx), -1), 1)
            v, f = int(val * 2 ** fx), fx
        else:  # hard_sigmoid
            pt = node.types['param']
            slope = int(pt.quantize(np.asarray([node.attrs['slope']]))[0])
            shift = int(pt.quantize(np.asarray([node.attrs['shift']]))[0])
            f = fx + pt.frac
            v = min(max(m * slope + (shift << fx), 0), 1 << f)
        out[k] = cast1(res, v, f)
    return out


@pytest.mark.parametrize('attrs,weight', PIECEWISE, ids=[a['function'] + str(a.get('max_value', '')) for a, _ in PIECEWISE])
def test_piecewise_activations(attrs, weight):
    rng = np.random.default_rng(1)
    weights = {'alpha': rng.normal(0.2, 0.1, (6,)).astype(np.float32)} if weight else None
    prec = {'result': 'fixed<9,3,RND_CONV,SAT>'}
    if attrs['function'] in ('leaky_relu', 'prelu', 'hard_sigmoid'):
        prec['param'] = 'fixed<10,1,RND>'
    model = convert(single_op('Activation', attrs=attrs, weights=weights), 'fixed<12,5,RND,SAT>', prec)
    x = rng.normal(0, 9, (400, 6))
    got = model.predict_mantissas(x)['op']
    want = reference_piecewise(model.graph['op'], model.graph['in0'].result_type, mantissas(model, 'in0', x))
    assert np.array_equal(got, want)
    assert not np.array_equal(got, want + 1)  # the comparison can fail


@pytest.mark.parametrize('fn', ['sigmoid', 'tanh', 'softplus', 'softsign', 'elu', 'selu', 'exp'])
def test_tables_exact_for_narrow_inputs(fn):
    """Inputs of <= 12 bits: the table holds quantize(f(x)) for every representable x."""
    in_t_str = 'fixed<10,4>'
    model = convert(single_op('Activation', in_shape=(1,), attrs={'function': fn}), in_t_str,
                    {'result': 'fixed<16,6,RND,SAT>'})
    in_t = model.graph['in0'].result_type
    every = in_t.to_float(np.arange(in_t.min_mantissa, in_t.max_mantissa + 1))[:, None]
    got = model.predict_mantissas(every)['op'][:, 0]
    res = model.graph['op'].result_type
    want = res.quantize(table_function(fn, {})(every[:, 0]))
    assert np.array_equal(got, want)


def test_table_truncates_wide_inputs_as_documented():
    model = convert(single_op('Activation', in_shape=(1,), attrs={'function': 'sigmoid'}), 'fixed<24,10>',
                    {'result': 'ufixed<12,0,RND,SAT>'})
    table = model.graph['op'].attrs['tables']['f']
    assert len(table) == 4096 and table.index.width == 12
    assert table.index.integer < 10  # clamped to where sigmoid still changes at 12 output bits
    x = np.random.default_rng(2).uniform(-500, 500, (5000, 1))  # inside the input type
    x[:100] = np.random.default_rng(3).uniform(-4, 4, (100, 1))
    got = model.predict(x)[:, 0]
    in_t = model.graph['in0'].result_type
    # floored onto the index, then sampled at the centre of the inputs sharing that entry
    xi = table.index.to_float(table.index.cast(in_t.quantize(x[:, 0]), in_t.frac)) + (table.index.lsb - in_t.lsb) / 2
    want = model.graph['op'].result_type.to_float(model.graph['op'].result_type.quantize(1 / (1 + np.exp(-xi))))
    assert np.array_equal(got, want)
    assert np.max(np.abs(got - 1 / (1 + np.exp(-x[:, 0])))) < 0.01


def wide_dense_softmax_graph(rng, n_in=16, n_out=10) -> Graph:
    g = Graph()
    g.add(Node('x', 'Input', [], (n_in,)))
    g.add(Node('fc', 'Dense', ['x'], (n_out,), source='Dense', weights={
        'kernel': rng.normal(0, 1, (n_in, n_out)).astype(np.float32),
        'bias': rng.normal(0, 1, n_out).astype(np.float32)}))
    g.add(Node('sm', 'Softmax', ['fc'], (n_out,), attrs={'axis': -1}, source='Softmax'))
    g.inputs, g.outputs = ['x'], ['sm']
    return g


def test_softmax_argmax_after_wide_auto_dense():
    """hls4ml 1.3.0 returns a constant vector here; ours must agree with float softmax >= 99%."""
    rng = np.random.default_rng(4)
    cfg = {'Model': {'Precision': 'fixed<16,6>'},
           'LayerName': {'fc': {'Precision': {'weight': 'fixed<16,6>', 'bias': 'fixed<16,6>',
                                              'accum': 'auto', 'result': 'auto'}}}}
    model = convert_graph(wide_dense_softmax_graph(rng), cfg)
    assert model.graph['fc'].result_type.width >= 30  # really wide
    x = rng.normal(0, 2, (20000, 16))
    pred, traced = model.trace(x)
    logits = traced['fc']
    float_soft = np.exp(logits - logits.max(1, keepdims=True))
    float_soft /= float_soft.sum(1, keepdims=True)
    agree = np.mean(pred.argmax(1) == float_soft.argmax(1))
    assert agree >= 0.99, agree
    assert np.max(np.abs(pred - float_soft)) < 0.02
    assert len(np.unique(pred.argmax(1))) == 10  # not a constant output

    # negative control: a wrong table entry changes outputs
    exp_table = model.graph['sm'].attrs['tables']['exp']
    exp_table.values[0] -= 5000
    model._emulator = None
    assert not np.array_equal(model.predict(x), pred)


def reference_merge(mode, types, res, ms):
    fracs = [t.frac for t in types]
    out = np.zeros_like(ms[0])
    for k in np.ndindex(ms[0].shape):
        vals = [Fraction(int(m[k]), 2 ** f) for m, f in zip(ms, fracs)]
        exact = {'add': sum(vals), 'sub': vals[0] - vals[1], 'mul': vals[0] * vals[1],
                 'avg': sum(vals) / len(vals), 'max': max(vals), 'min': min(vals)}[mode]
        assert (2 ** 40) % exact.denominator == 0
        out[k] = cast1(res, int(exact * 2 ** 40), 40)
    return out


@pytest.mark.parametrize('mode', ['add', 'sub', 'mul', 'avg', 'max', 'min', 'concat'])
def test_merges(mode):
    rng = np.random.default_rng(5)
    g = single_op('Merge', n_inputs=2, attrs={'mode': mode, 'axis': -1},
                  out_shape=(12,) if mode == 'concat' else (6,))
    cfg = {'Model': {'Precision': 'fixed<16,6>'}, 'LayerName': {
        'in0': {'Precision': {'result': 'fixed<10,4,RND,SAT>'}},
        'in1': {'Precision': {'result': 'fixed<12,3>'}},
        'op': {'Precision': {'result': 'fixed<9,3,RND,SAT>'}}}}
    model = convert_graph(g, cfg)
    xs = [rng.normal(0, 5, (300, 6)), rng.normal(0, 3, (300, 6))]
    got = model.predict_mantissas(xs)['op']
    types = [model.graph['in0'].result_type, model.graph['in1'].result_type]
    ms = [t.quantize(x) for t, x in zip(types, xs)]
    res = model.graph['op'].result_type
    if mode == 'concat':
        want = np.concatenate([res.cast(m, t.frac) for m, t in zip(ms, types)], axis=-1)
    else:
        want = reference_merge(mode, types, res, ms)
    assert np.array_equal(got, want)


def test_scale_unfused_batchnorm():
    rng = np.random.default_rng(6)
    g = single_op('Scale', weights={'scale': rng.normal(1, 0.5, 6).astype(np.float32),
                                    'bias': rng.normal(0, 1, 6).astype(np.float32)})
    model = convert(g, 'fixed<10,4>', {'scale': 'fixed<8,2,RND>', 'bias': 'fixed<8,3>', 'result': 'fixed<10,4,RND,SAT>'})
    node = model.graph['op']
    x = rng.normal(0, 4, (300, 6))
    in_t = model.graph['in0'].result_type
    xm = in_t.quantize(x)
    s, b = node.qweights['scale'], node.qweights['bias']
    fs, fb = node.types['scale'].frac, node.types['bias'].frac
    f = max(in_t.frac + fs, fb)
    want = np.array([[cast1(node.types['result'], (int(xm[i, j]) * int(s[j]) << (f - in_t.frac - fs)) + (int(b[j]) << (f - fb)), f)
                      for j in range(6)] for i in range(300)])
    assert np.array_equal(model.predict_mantissas(x)['op'], want)


def test_concat_axis_given_as_a_positive_per_sample_axis():
    """axis=0 of a (6,) per-sample shape is the feature axis, not the batch axis."""
    g = single_op('Merge', n_inputs=2, attrs={'mode': 'concat', 'axis': 0}, out_shape=(12,))
    model = convert_graph(g, {'Model': {'Precision': 'fixed<16,6>'}})
    assert model.graph['op'].attrs['axis'] == -1
    xs = [np.ones((5, 6)), np.full((5, 6), 2.0)]
    assert np.array_equal(model.predict(xs), np.concatenate(xs, axis=1))
