"""Nodes with several outputs: a recipe returning a tuple, read through Select nodes, in every interpreter.

No IR op has several outputs yet (the recurrent layers' states will be the first); the tests register
a small one, MinSum: per row of a (rows, cols) input, the minimum (type 'result', the input's type)
and the sum kept as a (rows, 1) column (type 'total', exact), so the outputs differ in shape and type.
"""

from __future__ import annotations

import numpy as np
import pytest

from fpga4ml import ir
from fpga4ml.backends.verilog.lower import lower_graph
from fpga4ml.convert import convert_graph
from fpga4ml.emulator.reference import float_forward
from fpga4ml.fixed import parse_precision as ir_type
from fpga4ml.ir import Graph, GraphError, Node
from fpga4ml.semantics import recipes  # noqa: F401  (registers the ops' recipes)
from fpga4ml.semantics.spec import SPECS, OpSpec, output_types


def min_sum(node, p, x):
    """(min over the last axis, sum over the last axis kept as a column)."""
    low = p.cast(p.reduce(x, 'min', axis=-1), 'result', 'input')
    total = p.cast(p.reduce(x, 'sum', axis=-1, keepdims=True), 'total', 'exact')
    return low, total


@pytest.fixture
def min_sum_op(monkeypatch):
    monkeypatch.setitem(ir.OPS, 'MinSum', 'test op: (row minimum, row sum as a column)')
    monkeypatch.setitem(SPECS, 'MinSum', OpSpec('MinSum', min_sum, precision=('result', 'total'),
                                                 outputs=('result', 'total')))


def graph(rows: int = 4, cols: int = 3, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph()
    g.add(Node('x', 'Input', [], (rows, cols)))
    g.add(Node('d', 'Dense', ['x'], (rows, cols), weights={'kernel': rng.normal(0, 1, (cols, cols)),
                                                           'bias': rng.normal(0, 0.5, cols)}))
    g.add(Node('m', 'MinSum', ['d'], (rows,)))
    g.add(Node('low', 'Select', ['m'], (rows,), attrs={'index': 0}))
    g.add(Node('total', 'Select', ['m'], (rows, 1), attrs={'index': 1}))
    g.add(Node('flat', 'Reshape', ['total'], (rows,), attrs={'shape': (rows,)}))
    g.add(Node('both', 'Merge', ['low', 'flat'], (rows,), attrs={'mode': 'add'}))
    g.inputs, g.outputs = ['x'], ['both', 'total']
    return g


def converted(tmp_path, g=None):
    cfg = {'Model': {'Precision': 'fixed<12,4,RND,SAT>'},
           'LayerName': {'d': {'Precision': {'result': 'fixed<10,3>'}},
                         'm': {'Precision': {'result': 'fixed<6,2,RND,SAT>', 'total': 'fixed<9,4,TRN,WRAP>'}}}}
    return convert_graph(g or graph(), cfg, backend='Vitis', output_dir=str(tmp_path))


def reference(model, x, pick=np.min):
    """The two outputs from the Dense layer's emulated values, by hand (Python integers)."""
    d_t, m = model.graph['d'].result_type, model.graph['m']
    d = model.emulator.run(x, keep=['d'])['d']                      # mantissas of the Dense output
    low = m.types['result'].cast(pick(d, axis=-1), d_t.frac)
    total = m.types['total'].cast(d.sum(axis=-1, keepdims=True), d_t.frac)
    both_t = model.graph['both'].result_type
    frac = max(m.types['result'].frac, m.types['total'].frac)
    both = both_t.cast((low << (frac - m.types['result'].frac)) + (total[..., 0] << (frac - m.types['total'].frac)),
                       frac)
    return both, total


def test_outputs_are_typed_emulated_and_lowered_bit_exactly(min_sum_op, tmp_path):
    model = converted(tmp_path)
    m = model.graph['m']
    assert output_types(m) == (m.types['result'], m.types['total'])
    assert model.graph['low'].result_type == m.types['result'] == ir_type('fixed<6,2,RND,SAT>')
    assert model.graph['total'].result_type == m.types['total'] != m.types['result']
    x = np.random.default_rng(1).uniform(-3, 3, (500, 4, 3))
    got = model.predict_mantissas(x)
    both, total = reference(model, x)
    np.testing.assert_array_equal(got['both'], both)
    np.testing.assert_array_equal(got['total'], total)
    # negative control: the reference with the other reduction must differ
    assert not np.array_equal(got['both'], reference(model, x, np.max)[0])
    # the Verilog lowering computes the same bits
    nl = lower_graph(model.graph, model.intervals)
    xs = model.graph['x'].result_type.quantize(x)
    out = nl.evaluate([xs])
    np.testing.assert_array_equal(out[0], got['both'])
    np.testing.assert_array_equal(out[1], got['total'])
    # the float reference: the same shapes; within the types' rounding on inputs small enough not to wrap
    small = model.graph['x'].result_type.to_float(model.graph['x'].result_type.quantize(x / 6))
    real = float_forward(model.graph, small)
    assert [r.shape for r in real] == [(500, 4), (500, 4, 1)]
    error = np.abs(real[1] - m.types['total'].to_float(model.predict_mantissas(small)['total']))
    assert np.max(error) < 0.1  # the Dense output's fixed<10,3> rounding (3 values) and the total's truncation
    # trace: every single-output node, Select nodes included
    _, outputs = model.trace(x[:10])
    assert 'm' not in outputs and {'low', 'total', 'both'} <= set(outputs)


def test_wiring_rules_and_back_end_refusal(min_sum_op, tmp_path):
    g = graph()
    g.lint()
    bad = graph()
    bad['both'].inputs = ['low', 'm']  # reads the tuple directly
    with pytest.raises(GraphError, match=r"node 'both': reads 'm', a MinSum with several outputs, directly"):
        bad.lint()
    bad = graph()
    bad['total'].attrs['index'] = 2
    with pytest.raises(GraphError, match=r"node 'total': Select index 2"):
        bad.lint()
    bad = graph()
    bad.outputs = ['both', 'm']
    with pytest.raises(GraphError, match=r"node 'm': a MinSum has 2 outputs"):
        bad.lint()
    bad = graph()
    bad['total'].shape = (4, 2)  # the second output is (4, 1)
    with pytest.raises(GraphError, match=r"node 'total'.*gives shape \(4, 1\)"):
        bad.lint()
    model = converted(tmp_path)
    with pytest.raises(GraphError, match=r"layer 'm': the HLS back end does not support nodes with several outputs"):
        model.compile(sim='csim')
