"""Binary and ternary networks: exact in the emulator, and multiplier-free in the HLS C++.

Weights in {-1, +1} or {-1, 0, +1} times a power of two (and any 2-bit signed type, {-2, -1, 0, 1})
multiply by shifting and negating. The emulator computes such products exactly like any other
(checked against a float64 numpy reference); the HLS emitter writes them as shifts and negations,
never `*`, and its C simulation must stay bit-identical to the emulator, with a negative control.
"""

from __future__ import annotations

import re
import shutil
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fpga4ml.convert import convert_graph
from fpga4ml.fixed import FixedType
from fpga4ml.ir import Graph, Node

MODEL = {'Precision': 'fixed<16,6>', 'ReuseFactor': 1, 'Strategy': 'Latency'}


def _g(graph: Graph, name: str, op: str, inputs: list[str], shape, **kw) -> str:
    graph.add(Node(name, op, inputs, shape, source=kw.pop('source', op), **kw))
    return name


def binary(rng, shape, scale=1.0) -> np.ndarray:
    """Weights in {-1, +1} * scale."""
    return (rng.choice([-1.0, 1.0], shape) * scale).astype(np.float32)


def ternary(rng, shape, scale=1.0, zeros=0.3) -> np.ndarray:
    """Weights in {-1, 0, +1} * scale."""
    return (rng.choice([-1.0, 0.0, 1.0], shape, p=[(1 - zeros) / 2, zeros, (1 - zeros) / 2]) * scale).astype(np.float32)


def bnn_zoo() -> tuple[Graph, dict]:
    """Binary, ternary and 2-bit Dense layers (Latency, Resource, SAT accumulators) and ternary Convs."""
    rng = np.random.default_rng(7)
    g = Graph()
    _g(g, 'x', 'Input', [], (12,))
    _g(g, 'img', 'Input', [], (6, 6, 2))
    _g(g, 'u', 'Input', [], (12,))
    names = {'x': {'Precision': {'result': 'fixed<8,3,RND,SAT>'}},
             'img': {'Precision': {'result': 'fixed<6,2,RND,SAT>'}},
             'u': {'Precision': {'result': 'ufixed<7,3,RND,SAT>'}}}  # unsigned inputs (after a ReLU)
    dense = {  # name: (weights, bias, precision, extra config)
        'bin': (binary(rng, (12, 5)), {'weight': 'fixed<2,2>', 'accum': 'auto', 'result': 'auto'}, {}),
        'bin_x4': (binary(rng, (12, 5), 4.0), {'weight': 'fixed<2,4>', 'accum': 'auto', 'result': 'auto'}, {}),
        'ter_eighth': (ternary(rng, (12, 5), 0.125), {'weight': 'fixed<2,-1>', 'accum': 'auto', 'result': 'auto'}, {}),
        'two_bit_sat': (rng.choice([-2.0, -1.0, 0.0, 1.0], (12, 5)).astype(np.float32) * 0.5,
                        {'weight': 'fixed<2,1>', 'accum': 'fixed<7,3,RND,SAT>', 'result': 'fixed<6,3,RND,SAT>'}, {}),
        'ter_res': (ternary(rng, (12, 6)), {'weight': 'fixed<2,2>', 'accum': 'fixed<8,4,TRN,SAT>', 'result': 'auto'},
                    {'Strategy': 'Resource', 'ReuseFactor': 3}),
        'bin_res': (binary(rng, (12, 6), 0.5), {'weight': 'fixed<2,1>', 'accum': 'fixed<9,4,RND,SAT_SYM>',
                                                 'result': 'auto'}, {'Strategy': 'Resource', 'ReuseFactor': 24}),
        'ter_rf2': (ternary(rng, (12, 4)), {'weight': 'fixed<2,2>', 'accum': 'auto', 'result': 'auto'},
                    {'ReuseFactor': 2}),
    }
    dense['ter_unsigned'] = (ternary(rng, (12, 5), 2.0), {'weight': 'fixed<2,3>', 'accum': 'fixed<9,6,RND,SAT>',
                                                         'result': 'auto'}, {})
    for name, (kernel, prec, extra) in dense.items():
        bias = (rng.integers(-8, 8, kernel.shape[1]) / 8).astype(np.float32)
        _g(g, name, 'Dense', ['u' if name == 'ter_unsigned' else 'x'], (kernel.shape[1],),
           weights={'kernel': kernel, 'bias': bias})
        names[name] = {'Precision': {'bias': 'fixed<8,3>', **prec}, **extra}
    conv = {'padding': (1, 1, 1, 1), 'kernel_size': (3, 3), 'strides': (1, 1), 'dilation': (1, 1), 'use_bias': True}
    _g(g, 'conv_ter', 'Conv', ['img'], (6, 6, 3), attrs={**conv, 'groups': 1},
       weights={'kernel': ternary(rng, (3, 3, 2, 3), 0.25), 'bias': np.array([0.5, -0.25, 0], np.float32)})
    names['conv_ter'] = {'Precision': {'weight': 'fixed<2,0>', 'bias': 'fixed<6,2>', 'accum': 'fixed<8,3,RND,SAT>',
                                       'result': 'auto'}}
    _g(g, 'conv_dw', 'Conv', ['img'], (6, 6, 2), attrs={**conv, 'groups': 2},
       weights={'kernel': binary(rng, (3, 3, 1, 2), 2.0), 'bias': np.zeros(2, np.float32)})
    names['conv_dw'] = {'Precision': {'weight': 'fixed<2,3>', 'bias': 'fixed<4,2>', 'accum': 'auto', 'result': 'auto'}}
    g.inputs = ['x', 'img', 'u']
    g.outputs = [n.name for n in g if n.op in ('Dense', 'Conv')]
    return g, {'Model': MODEL, 'LayerName': names}


# --------------------------------------------------------------------------- emulator exactness

def test_binary_ternary_dense_exact_in_emulator():
    """Binary/ternary Dense (any power-of-two scale) through the emulator equals float64 numpy exactly."""
    graph, config = bnn_zoo()
    model = convert_graph(graph, config)
    rng = np.random.default_rng(1)
    x = rng.uniform(-12, 12, (5000, 12))
    img = rng.uniform(-3, 3, (5000, 6, 6, 2))
    outs = dict(zip(model.graph.outputs, model.predict([x, img, x])))
    xq = FixedType(8, 3, True, 'RND', 'SAT').to_float(FixedType(8, 3, True, 'RND', 'SAT').quantize(x))
    for name in ('bin', 'bin_x4', 'ter_eighth', 'ter_rf2'):  # exact ('auto') accumulators
        w = graph[name].weights
        want = xq @ w['kernel'].astype(np.float64) + w['bias']
        assert np.array_equal(outs[name], want), name
        assert set(np.unique(np.abs(w['kernel']))) <= {0.0, 0.125, 1.0, 4.0}
    # the same products with one LSB changed in one weight are no longer equal (negative control)
    w = graph['bin'].weights['kernel'].astype(np.float64).copy()
    w[3, 1] += 0.5
    assert not np.array_equal(outs['bin'], xq @ w + graph['bin'].weights['bias'])


def test_depthwise_binary_conv_exact_in_emulator():
    """A binary depthwise 3x3 convolution ('same' padding) equals a float64 numpy convolution exactly."""
    graph, config = bnn_zoo()
    model = convert_graph(graph, config)
    rng = np.random.default_rng(2)
    img = rng.uniform(-3, 3, (500, 6, 6, 2))
    out = dict(zip(model.graph.outputs, model.predict([np.zeros((500, 12)), img, np.zeros((500, 12))])))['conv_dw']
    t = FixedType(6, 2, True, 'RND', 'SAT')
    xq = np.pad(t.to_float(t.quantize(img)), ((0, 0), (1, 1), (1, 1), (0, 0)))
    k = graph['conv_dw'].weights['kernel'].astype(np.float64)  # (3, 3, 1, 2)
    want = np.zeros((500, 6, 6, 2))
    for dy in range(3):
        for dx in range(3):
            want += xq[:, dy:dy + 6, dx:dx + 6, :] * k[dy, dx, 0]
    assert np.array_equal(out, want)


# --------------------------------------------------------------------------- HLS: no multipliers, bit-exact

needs_gpp = pytest.mark.skipif(shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None,
                               reason='needs g++ and the ap_types headers shipped with hls4ml')


def _layer_function(cpp: str, name: str) -> str:
    """The C++ text of one layer function."""
    match = re.search(rf'static void {name}\(.*?\n}}\n', cpp, re.S)
    assert match, name
    return match.group(0)


@pytest.fixture(scope='module')
def bnn_model(tmp_path_factory):
    graph, config = bnn_zoo()
    root = tmp_path_factory.mktemp('bnn')
    model = convert_graph(graph, config, output_dir=str(root / 'bnn'), project_name='bnn')
    model.compile(sim='csim')
    return model


@needs_gpp
def test_hls_binary_ternary_products_have_no_multiplications(bnn_model):
    cpp = (Path(bnn_model.output_dir) / 'firmware' / 'bnn.cpp').read_text()
    for name in bnn_model.graph.outputs:  # a Conv's products are in its per-window kernel <name>_window
        body = _layer_function(cpp, f'{name}_window' if bnn_model.graph[name].op == 'Conv' else name)
        assert ' * from_bits' not in body, f'{name} still multiplies:\n{body}'  # products x * w
        assert '(-(' in body  # negative weights are negations
    assert '<< 2' in _layer_function(cpp, 'bin_x4') and '>> 3' in _layer_function(cpp, 'ter_eighth')
    # a weight that is not +-2^k keeps its multiplication
    g = Graph()
    _g(g, 'x', 'Input', [], (4,))
    _g(g, 'd', 'Dense', ['x'], (2,), weights={'kernel': np.array([[3, 1], [1, -1], [0, 1], [1, 1]], np.float32),
                                               'bias': np.zeros(2, np.float32)})
    g.inputs, g.outputs = ['x'], ['d']
    three = convert_graph(g, {'Model': MODEL}, output_dir=str(Path(bnn_model.output_dir).parent / 'three'))
    three.write()
    assert ' * from_bits' in _layer_function((Path(three.output_dir) / 'firmware' / 'myproject.cpp').read_text(), 'd')


@needs_gpp
def test_hls_binary_ternary_csim_bit_identical(bnn_model):
    from test_hls_csim import assert_bit_identical, model_inputs

    xs = model_inputs(bnn_model, 10_000)
    assert_bit_identical(bnn_model, xs)
    _, traced = bnn_model.trace(xs)  # the narrow SAT accumulators really saturate (order is observable)
    assert traced.stats['two_bit_sat'].overflow > 0 and traced.stats['ter_res'].overflow > 0


@needs_gpp
def test_hls_binary_negative_control(tmp_path):
    """One binary weight with its sign flipped in the C++ only: the comparison must fail, then pass again."""
    from test_hls_csim import assert_bit_identical, model_inputs

    rng = np.random.default_rng(9)
    g = Graph()
    _g(g, 'x', 'Input', [], (12,))
    _g(g, 'bin', 'Dense', ['x'], (5,), weights={'kernel': binary(rng, (12, 5)), 'bias': np.zeros(5, np.float32)})
    g.inputs, g.outputs = ['x'], ['bin']
    config = {'Model': MODEL, 'LayerName': {'x': {'Precision': {'result': 'fixed<8,3,RND,SAT>'}},
                                            'bin': {'Precision': {'weight': 'fixed<2,2>', 'accum': 'auto'}}}}
    model = convert_graph(g, config, output_dir=str(tmp_path / 'neg'), project_name='neg')
    model.compile()  # the emulator keeps the original weights
    xs = model_inputs(model, 2_000)
    kernel = model.graph['bin'].qweights['kernel']
    kernel[3, 1] = -kernel[3, 1]
    model.compile(sim='csim')
    with pytest.raises(AssertionError, match=r"output 'bin' differs"):
        assert_bit_identical(model, xs)
    kernel[3, 1] = -kernel[3, 1]  # restored: the same project rebuilt agrees again
    model.compile(sim='csim')
    assert_bit_identical(model, xs)
