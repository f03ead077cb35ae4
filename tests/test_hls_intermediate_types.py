"""The HLS emitter declares its exact intermediates in the types the typing interpreter gives them.

The recipes label the values the C++ holds in variables of their own (hard_sigmoid's x * slope +
shift, Softmax's sum, the operands of a Merge max); the emitted typedef of each must be the
narrowest type holding the interval the interval interpreter (Bounds) computes for that label, from
the inputs' type ranges (what the writer passes today) or from the model's intervals. Negative
controls: a different slope, or a Dense whose weights give a wider output interval, changes the
typedef. The C++ computing with these types is checked bit for bit by tests/test_hls_csim*.py.
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from fpga4ml.backends.hls import writer
from fpga4ml.backends.hls.emit import emit_layer, new_context
from fpga4ml.convert import convert_graph
from fpga4ml.fixed import FixedType, parse_precision
from fpga4ml.intervals import Interval, type_for
from fpga4ml.ir import Graph, GraphError, Node
from fpga4ml.semantics.bounds import Bounds
from fpga4ml.semantics.numpy_interp import NumpyProgram
from fpga4ml.semantics.spec import spec_of

#: (node, label) of every intermediate the model below declares
INTERMEDIATES = (('hsig', 'exact'), ('soft', 'sum'), ('mx', 'operands'))


def build(tmp_path, slope: float = 0.25, dense_weight: float = 0.1):
    """x -> hard_sigmoid, Softmax, and max(Dense(x), relu(x)); every type the model default but x's."""
    g = Graph()
    for name, op, inputs, kw in (
            ('x', 'Input', [], {}),
            ('hsig', 'Activation', ['x'], {'attrs': {'function': 'hard_sigmoid', 'slope': slope, 'shift': 0.5}}),
            ('soft', 'Softmax', ['x'], {'attrs': {'axis': -1}}),
            ('d', 'Dense', ['x'], {'weights': {'kernel': np.full((6, 6), dense_weight, np.float32),
                                               'bias': np.zeros(6, np.float32)}}),
            ('relu', 'Activation', ['x'], {'attrs': {'function': 'relu'}}),
            ('mx', 'Merge', ['d', 'relu'], {'attrs': {'mode': 'max'}})):
        g.add(Node(name, op, inputs, (6,), source=op, **kw))
    g.inputs, g.outputs = ['x'], ['hsig', 'soft', 'mx']
    cfg = {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 1},
           'LayerName': {'x': {'Precision': {'result': 'fixed<8,3>'}}}}
    return convert_graph(g, cfg, output_dir=str(tmp_path / 'prj'))


def emitted(model, intervals=None) -> dict[tuple[str, str], str]:
    """(node, intermediate) -> the C++ type of its typedef, emitting every layer."""
    ctx = new_context(model.graph, set(), intervals=intervals)
    for node in model.graph:
        if node.op != 'Input':
            emit_layer(ctx, node)
    cpp = {name: text for name, text, _ in ctx.typedefs}
    return {(n, var): cpp[f'{ctx.idents[n]}_{var}_t'] for n, var in INTERMEDIATES}


def expected(model, intervals=None) -> dict[tuple[str, str], FixedType]:
    """(node, intermediate) -> the narrowest type of its label's interval, by the Bounds interpreter."""
    out = {}
    for name, var in INTERMEDIATES:
        node = model.graph[name]
        ins = [model.graph[i] for i in node.inputs]
        bounds = Bounds(node, [n.result_type for n in ins])
        ivs = [intervals[n.name] if intervals else Interval.of_type(n.result_type, n.shape) for n in ins]
        spec_of(node).recipe(node, bounds, *ivs)
        out[name, var] = type_for(bounds.labels[var])
    return out


def cpp_of(types: dict) -> dict:
    return {key: t.to_cpp() for key, t in types.items()}


@pytest.mark.parametrize('use_intervals', [False, True])
def test_typedefs_are_the_bounds_of_the_labels(tmp_path, use_intervals):
    model = build(tmp_path)
    intervals = model.intervals if use_intervals else None
    assert emitted(model, intervals) == cpp_of(expected(model, intervals))


def test_hard_sigmoid_exact_type_by_hand(tmp_path):
    # x: fixed<8,3> (mantissas -128..127, 5 fractional bits); slope 0.25 and shift 0.5 in the param
    # type fixed<16,6> (10 fractional bits): x * slope + shift has mantissas -128*256 + 512 ..
    # 127*256 + 512 at 15 fractional bits, i.e. [-32256, 33024]: 17 bits signed, 2 integer bits
    model = build(tmp_path)
    assert model.graph['hsig'].types['param'] == parse_precision('fixed<16,6>')
    assert emitted(model)['hsig', 'exact'] == 'ap_fixed<17,2>'


def test_a_slope_that_widens_the_interval_widens_the_typedef(tmp_path):
    base = emitted(build(tmp_path / 'a'))
    steeper = build(tmp_path / 'b', slope=0.5)
    types = emitted(steeper)
    assert types['hsig', 'exact'] != base['hsig', 'exact']
    assert types == cpp_of(expected(steeper))


def test_dense_weights_change_the_merge_operands_through_the_intervals(tmp_path):
    small, large = build(tmp_path / 'a'), build(tmp_path / 'b', dense_weight=0.4)
    assert small.graph['d'].result_type == large.graph['d'].result_type  # the types alone cannot tell them apart
    assert emitted(small)['mx', 'operands'] == emitted(large)['mx', 'operands'] == 'ap_fixed<16,6>'
    narrow, wide = emitted(small, small.intervals), emitted(large, large.intervals)
    assert narrow['mx', 'operands'] != wide['mx', 'operands']
    assert wide == cpp_of(expected(large, large.intervals))


def test_label_is_the_identity_and_bounds_keep_the_hull():
    node = Node('t', 'Quantize', [], (3,), types={})
    a_t, b_t = parse_precision('fixed<6,2>'), parse_precision('ufixed<8,3>')
    ivs = [Interval.of_type(a_t, (3,)), Interval.of_type(b_t, (3,))]
    bounds = Bounds(node, [a_t, b_t])
    assert bounds.label(ivs[0], 'both') is ivs[0]
    bounds.label(ivs[1], 'both')
    assert type_for(bounds.labels['both']) == FixedType(9, 4, True)  # [-2, 8 - 2^-5] at 5 fractional bits
    prog = NumpyProgram(node, [a_t, b_t], ivs)
    x = prog.inputs[0]
    assert prog.label(x, 'a') is x


def test_missing_label_names_the_layer(tmp_path):
    model = build(tmp_path)
    ctx = new_context(model.graph, set())
    with pytest.raises(GraphError, match="layer 'd'.*no intermediate 'sum'"):
        ctx.intermediate(model.graph['d'], 'sum')


# --------------------------------------------------------------------------- C simulation with these types

def csim_graph() -> tuple[Graph, dict]:
    """Every layer that declares an intermediate or clips, on signed, unsigned and narrow inputs."""
    g = Graph()
    act = 'Activation'
    layers = (
        ('x', 'Input', [], {}), ('u', 'Input', [], {}),
        ('d', 'Dense', ['x'], {'weights': {'kernel': np.linspace(-0.6, 0.5, 36, dtype=np.float32).reshape(6, 6),
                                           'bias': np.linspace(-1, 1, 6, dtype=np.float32)}}),
        ('relu_d', act, ['d'], {'attrs': {'function': 'relu'}}),
        ('hsig', act, ['d'], {'attrs': {'function': 'hard_sigmoid', 'slope': 0.2, 'shift': 0.5}}),
        ('hsig_u', act, ['u'], {'attrs': {'function': 'hard_sigmoid', 'slope': 1 / 6, 'shift': 0.5}}),
        ('relu_cap', act, ['x'], {'attrs': {'function': 'relu', 'max_value': 1.5}}),
        ('relu_th_cap', act, ['x'], {'attrs': {'function': 'relu', 'threshold': 0.3, 'max_value': 2.0}}),
        ('relu_th_cap_exact', act, ['x'], {'attrs': {'function': 'relu', 'threshold': 0.3, 'max_value': 2.0,
                                                     'exact_result': True}}),
        ('relu_u_cap', act, ['u'], {'attrs': {'function': 'relu', 'max_value': 0.5}}),
        ('soft', 'Softmax', ['d'], {'attrs': {'axis': -1}}),
        ('mx', 'Merge', ['relu_d', 'x', 'u'], {'attrs': {'mode': 'max'}}),
        ('mn', 'Merge', ['u', 'd'], {'attrs': {'mode': 'min'}}))
    for name, op, inputs, kw in layers:
        g.add(Node(name, op, inputs, (6,), source=op, **kw))
    g.inputs = ['x', 'u']
    g.outputs = [name for name, op, _, _ in layers if op not in ('Input', 'Dense') and name != 'relu_d']
    names = {'x': {'Precision': {'result': 'fixed<9,3,RND,SAT>'}}, 'u': {'Precision': {'result': 'ufixed<6,2>'}},
             'd': {'Precision': {'result': 'fixed<12,4,RND,SAT>'}},
             'relu_cap': {'Precision': {'result': 'ufixed<6,1,RND,SAT>'}},
             'relu_th_cap': {'Precision': {'result': 'ufixed<5,2,RND_CONV,SAT>'}},
             'mn': {'Precision': {'result': 'fixed<8,3,RND,SAT>'}}}
    return g, {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': 1}, 'LayerName': names}


def csim_inputs(model, n: int = 4000) -> list[np.ndarray]:
    """Values within and far outside each input type, rounding ties included."""
    rng = np.random.default_rng(5)
    xs = []
    for name in model.graph.inputs:
        t = model.graph[name].result_type
        m = rng.integers(2 * t.min_mantissa - 8, 2 * t.max_mantissa + 8, (n,) + model.graph[name].shape)
        xs.append((m + rng.integers(0, 2, m.shape) * 0.5) * t.lsb)
    return xs


@pytest.mark.skipif(shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None,
                    reason='needs g++ and the ap_types headers shipped with hls4ml')
@pytest.mark.parametrize('use_intervals', [False, True])
def test_csim_bit_identical_with_these_types(tmp_path, monkeypatch, use_intervals):
    graph, cfg = csim_graph()
    model = convert_graph(graph, cfg, output_dir=str(tmp_path / 'prj'), project_name='inter')
    if not use_intervals:  # the writer bounds the inputs by their types only: wider types, the same values
        plain = writer.new_context
        monkeypatch.setattr(writer, 'new_context', lambda *a, **kw: plain(*a, **{**kw, 'intervals': None}))
    model.compile(sim='csim')
    defines = (tmp_path / 'prj' / 'firmware' / 'defines.h').read_text()
    # relu_d's type is fixed<16,6>; its interval [0, 8) at 2^-10 with x's [-4, 4) and u's [0, 4): [-4, 8)
    operands = 'ap_fixed<14,4>' if use_intervals else 'ap_fixed<16,6>'
    assert f'typedef {operands} mx_operands_t;' in defines
    xs = csim_inputs(model)
    for name, want, got in zip(model.graph.outputs, model.predict(xs), model.predict(xs, sim='csim')):
        np.testing.assert_array_equal(got, want, err_msg=f'output {name!r}')
