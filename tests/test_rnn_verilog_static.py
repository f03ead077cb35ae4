"""Verilog static mode of the recurrent layers (`Static: True`): one cell, the state in registers, a step counter.

Two Keras models: `zoo` (an LSTM with initial-state inputs and all three outputs, a backward GRU
with reset_after=False, a relu SimpleRNN, a Bidirectional GRU 'ave') and `stacked` (LSTM -> GRU ->
a Dense folded with ReuseFactor 2). The cycle-level interpreter of the machine (stateful.py) runs
the design clock by clock and must equal the emulator bit for bit, at 8 steps and at 1 step and
at two precisions, with a negative control (the emulator of the model with one weight one LSB off
disagrees). Latency and II in manifest.json, `model.latency` and `estimate()`; emulate_cycles with
gaps. Slow: Verilator == emulator on 2,000 sequences per length and precision, with the control.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

keras = pytest.importorskip('keras')

import fpga4ml  # noqa: E402
from fpga4ml.backends.verilog.design import design  # noqa: E402
from fpga4ml.backends.verilog.rnn_static import StaticRnnDesign, static_layers  # noqa: E402
from fpga4ml.backends.verilog.stateful import run_vectors  # noqa: E402
from fpga4ml.config import ConfigError, ConfigWarning  # noqa: E402

L = keras.layers
N_IN = 3
#: the model default and the LSTM's accumulator/state type of the two precisions
PRECISIONS = {'narrow': ('fixed<10,3,RND,SAT>', 'fixed<13,5,RND,SAT>'), 'wide': ('fixed<16,6>', 'fixed<20,8>')}
RECURRENT = ('LSTM', 'GRU', 'SimpleRNN')


def zoo(steps: int):
    """Four recurrent layers side by side on one sequence, every option the static cell has to honour."""
    keras.utils.set_random_seed(11)
    x, h0, c0 = keras.Input((steps, N_IN), name='x'), keras.Input((4,), name='h0'), keras.Input((4,), name='c0')
    lstm = L.LSTM(4, return_sequences=True, return_state=True, name='lstm')(x, initial_state=[h0, c0])
    outs = list(lstm) + [
        L.GRU(4, reset_after=False, go_backwards=True, return_sequences=True, name='gru')(x),
        L.SimpleRNN(3, activation='relu', name='rnn')(x),
        L.Bidirectional(L.GRU(2, return_sequences=True), merge_mode='ave', name='bi')(x),
    ]
    return keras.Model([x, h0, c0], outs)


def stacked(steps: int):
    """LSTM sequence -> GRU last h -> Dense: three stateful layers one after the other."""
    keras.utils.set_random_seed(12)
    x = keras.Input((steps, N_IN), name='x')
    y = L.LSTM(4, return_sequences=True, name='lstm')(x)
    y = L.GRU(3, name='gru')(y)
    return keras.Model(x, L.Dense(2, name='head')(y))


def convert(km, tmp_path, precision: str = 'narrow', static: bool = True, layer_names: dict | None = None,
            name: str = 'rnn_static', pipeline='auto', **model_keys):
    """The model for the Verilog back end with every recurrent layer Static (or not)."""
    default, accum = PRECISIONS[precision]
    table = 64 if precision == 'narrow' else 256
    cfg = {'Model': {'Precision': default, 'Pipeline': pipeline, **model_keys},
           'LayerType': {op: {'Static': static, 'TableSize': table} for op in RECURRENT
                         if op in {type(getattr(layer, 'forward_layer', layer)).__name__ for layer in km.layers}},
           'LayerName': {'lstm': {'Precision': {'accum': accum, 'state': accum}}, **(layer_names or {})}}
    return fpga4ml.convert_from_keras_model(km, hls_config=cfg, backend='Verilog', project_name=name,
                                            output_dir=str(tmp_path / f'{name}_{precision}'))


def sequences(model, n: int, seed: int = 0) -> list[np.ndarray]:
    """Inputs up to twice the input type's range (saturating), a quarter of them on its grid."""
    rng = np.random.default_rng(seed)
    xs = []
    for name in model.graph.inputs:
        t = model.graph[name].result_type
        x = rng.uniform(-2 * t.max_value, 2 * t.max_value, (n,) + model.graph[name].shape)
        x[:n // 4] = np.round(x[:n // 4] / t.lsb) * t.lsb
        xs.append(x)
    return xs


def interpreted(model, xs) -> list[np.ndarray]:
    """The machine run clock by clock (one instance per sequence), outputs as real values."""
    d = design(model, progress=False)
    g = model.graph
    mantissas = [g[name].result_type.quantize(x) for name, x in zip(g.inputs, xs)]
    outs = run_vectors(d.machine, d.timing, mantissas)
    return [g[name].result_type.to_float(y) for name, y in zip(g.outputs, outs)]


def assert_equal(model, got, want, what: str) -> None:
    want = want if isinstance(want, list) else [want]
    assert len(got) == len(want) == len(model.graph.outputs)
    for name, g, w in zip(model.graph.outputs, got, want):
        np.testing.assert_array_equal(g, w, err_msg=f'{what}: output {name!r}')


def one_lsb_off(model, layer: str = 'lstm', weight: str = 'recurrent_kernel') -> None:
    """Negative control: one quantized weight of the emulator's model moved by one LSB."""
    node = model.graph[layer]
    node.qweights[weight].flat[0] += node.types['recurrent_weight' if weight == 'recurrent_kernel' else 'weight'].lsb
    model._emulator = None


# ---------------------------------------------------------------------------------------- interpreter
@pytest.mark.parametrize('steps', [8, 1])
@pytest.mark.parametrize('precision', ['narrow', 'wide'])
def test_interpreter_equals_emulator(tmp_path, steps, precision):
    model = convert(zoo(steps), tmp_path, precision)
    d = design(model, progress=False)
    assert isinstance(d, StaticRnnDesign)
    per_step = d.recurrent['lstm'][1]  # the deepest cell's pipeline stages (every layer takes as many)
    assert d.recurrent == {name: (steps, per_step) for name in ('lstm', 'gru', 'rnn', 'bi_forward', 'bi_backward')}
    assert per_step > 1 and (d.timing.latency, d.timing.ii) == (steps * per_step + 1, steps * per_step)
    xs = sequences(model, 400, seed=steps)
    got = interpreted(model, xs)
    assert_equal(model, got, model.predict(xs), 'static machine vs emulator')
    one_lsb_off(model, 'lstm')  # its initial state h0 is an input: the recurrent kernel counts at one step too
    assert not all(np.array_equal(g, w) for g, w in zip(got, model.predict(xs)))


def test_stacked_layers_and_a_folded_dense(tmp_path):
    model = convert(stacked(8), tmp_path, layer_names={'head': {'ReuseFactor': 2}})
    d = design(model, progress=False)
    per_step = d.recurrent['gru'][1]
    assert d.timing.latency == 2 * (8 * per_step + 1) + 3 + d.timing.cuts['head'] and d.timing.ii == 8 * per_step
    assert d.timing.stages == {'head': 2}
    xs = sequences(model, 300)
    got = interpreted(model, xs)
    assert_equal(model, got, model.predict(xs), 'stacked static machine vs emulator')
    one_lsb_off(model, 'gru')
    assert not np.array_equal(got[0], model.predict(xs))


def test_branches_of_different_depths_meet(tmp_path):
    """LSTM sequence + Dense(LSTM sequence): the shorter branch is delayed to the pipelined Dense."""
    keras.utils.set_random_seed(13)
    x = keras.Input((6, N_IN), name='x')
    y = L.LSTM(4, return_sequences=True, name='lstm')(x)
    km = keras.Model(x, L.Add(name='add')([y, L.Dense(4, name='dense')(y)]))
    model = convert(km, tmp_path, 'wide')
    d = design(model, progress=False)
    assert d.timing.latency > 6 * d.recurrent['lstm'][1] + 1  # the Dense and the add take stages of their own
    xs = sequences(model, 300)
    got = interpreted(model, xs)
    assert_equal(model, got, model.predict(xs), 'merge of branches vs emulator')
    model.graph['dense'].qweights['kernel'][0, 0] += model.graph['dense'].types['weight'].lsb
    model._emulator = None
    assert not np.array_equal(got[0], model.predict(xs))


def test_outputs_of_different_stateful_layers_line_up(tmp_path):
    """The LSTM's sequence and the GRU stacked on it, both outputs: the LSTM's is delayed to the GRU's done."""
    keras.utils.set_random_seed(12)
    x = keras.Input((5, N_IN), name='x')
    y = L.LSTM(4, return_sequences=True, name='lstm')(x)
    km = keras.Model(x, [L.Flatten(name='flat')(y), L.GRU(3, name='gru')(y)])
    model = convert(km, tmp_path)
    xs = sequences(model, 150)
    got = interpreted(model, xs)
    assert_equal(model, got, model.predict(xs), 'outputs of two stateful layers vs emulator')
    one_lsb_off(model, 'lstm', 'kernel')
    assert not np.array_equal(got[0], model.predict(xs)[0])


def test_latency_and_ii_are_reported(tmp_path):
    """A combinational cell (Pipeline 'none'): one clock per step."""
    model = convert(stacked(5), tmp_path, pipeline='none')
    model.write()
    manifest = json.loads((tmp_path / 'rnn_static_narrow' / 'manifest.json').read_text())
    assert manifest['architecture'] == 'static'
    assert (manifest['latency'], manifest['ii']) == (12, 5)
    assert manifest['static'] == {name: {'steps': 5, 'cell_latency': 1, 'cell_ii': 1, 'ii': 5, 'latency': 6}
                                  for name in ('lstm', 'gru')}
    assert model.latency == 12 and model.estimate()['ii'] == 5
    text = (tmp_path / 'rnn_static_narrow' / 'rnn_static.v').read_text()
    assert text.startswith('// rnn_static: generated by fpga4ml. Latency 12 clocks, II 5 (lstm static, 5 steps x 1 '
                           'clocks, gru static, 5 steps x 1 clocks).')


def test_the_cell_is_pipelined_to_the_clock(tmp_path):
    """Pipeline 'auto' cuts the cell into stages that fit the clock; 'none' leaves one long path."""
    piped, flat = (convert(stacked(4), tmp_path / str(p), pipeline=p) for p in ('auto', 'none'))
    est_piped, est_flat = piped.estimate(), flat.estimate()
    per_step = design(piped, progress=False).recurrent['lstm'][1]
    assert per_step > 1 and est_piped['ii'] == 4 * per_step and est_flat['ii'] == 4
    assert est_piped['critical_stage_ns'] < est_flat['critical_stage_ns'] / 2
    xs = sequences(piped, 200)
    np.testing.assert_array_equal(interpreted(piped, xs)[0], interpreted(flat, xs)[0])


def test_static_is_smaller_than_non_static(tmp_path):
    """One cell instead of one per step: fewer LUTs, more clocks per sequence."""
    static_model, unrolled_model = (convert(stacked(6), tmp_path / str(s), static=s) for s in (True, False))
    static, unrolled = static_model.estimate(), unrolled_model.estimate()
    assert static['ii'] == 6 * design(static_model, progress=False).recurrent['lstm'][1] and unrolled['ii'] == 1
    assert static['LUT'] < unrolled['LUT'] / 2


def test_emulate_cycles_one_sequence_every_ii(tmp_path):
    model = convert(stacked(4), tmp_path)
    xs = sequences(model, 6)[0]
    valid = np.array([1, 0, 1, 1, 0, 1], dtype=bool)
    shown, valid_out = model.emulate_cycles(xs, valid)
    lat, ii = model.latency, model.estimate()['ii']
    want = model.predict(xs)
    assert np.flatnonzero(valid_out).tolist() == [k * ii + lat for k in np.flatnonzero(valid)]
    np.testing.assert_array_equal(shown[0][valid_out], want[valid])


def test_non_static_stays_unrolled_and_bad_static_is_refused(tmp_path):
    model = convert(stacked(3), tmp_path, static=False)
    assert static_layers(model.graph) == {}
    assert not isinstance(design(model, progress=False), StaticRnnDesign)
    with pytest.raises(ConfigError, match='Static must be True or False'):
        convert(stacked(3), tmp_path, layer_names={'gru': {'Static': 'yes'}})


def test_recurrent_reuse_factors_are_not_silently_dropped(tmp_path):
    model = convert(stacked(3), tmp_path, layer_names={'lstm': {'ReuseFactor': 2}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        design(model, progress=False)
    assert any(issubclass(w.category, ConfigWarning) and "'lstm'" in str(w.message) for w in caught)


# ---------------------------------------------------------------------------------------- Verilator
@pytest.mark.slow
@pytest.mark.parametrize('steps', [8, 1])
@pytest.mark.parametrize('precision', ['narrow', 'wide'])
def test_rtl_equals_emulator(tmp_path, steps, precision):
    from fpga4ml.backends.verilog import verilator
    from verilog_models import require_verilator
    require_verilator()
    model = convert(zoo(steps), tmp_path, precision)
    model.compile(sim='rtl', progress=False)
    xs = sequences(model, 2000, seed=steps)
    rtl = model.predict(xs, sim='rtl')
    assert_equal(model, rtl, model.predict(xs), 'Verilator vs emulator')
    assert verilator.lint(model.output_dir) == []
    one_lsb_off(model, 'lstm')  # its initial state h0 is an input: the recurrent kernel counts at one step too
    assert not all(np.array_equal(g, w) for g, w in zip(rtl, model.predict(xs)))


@pytest.mark.slow
def test_rtl_stacked_with_gaps(tmp_path):
    from verilog_models import require_verilator
    require_verilator()
    model = convert(stacked(8), tmp_path, 'wide', layer_names={'head': {'ReuseFactor': 2}})
    model.compile(sim='rtl', progress=False)
    sim = model._rtl
    xs = sequences(model, 2000)
    mantissas = [model.graph[n].result_type.quantize(x) for n, x in zip(model.graph.inputs, xs)]
    got = model.graph['head'].result_type.to_float(sim.predict_mantissas(mantissas, gaps=True)[0])
    np.testing.assert_array_equal(got, model.predict(xs))
    one_lsb_off(model, 'gru')
    assert not np.array_equal(got, model.predict(xs))
