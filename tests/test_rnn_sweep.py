"""Issue 13's acceptance sweep: emulator == HLS C simulation == Verilator, bit for bit, per configuration.

SimpleRNN, LSTM (sequence, final h and c) and GRU (reset_after=False, backwards) side by side on one
input, in both modes (Static True: one cell reused over time; False: a cell per step) in both back
ends, at three precisions (hls4ml's fixed<16,6> with per-product truncation, a narrow rounding,
saturating one, and 'auto' accumulators, results and cell state, inferred over the whole sequence
by semantics/rnn_auto.py), at sequence lengths 1 and 8: 2,000 sequences per configuration (a quarter on the
input grid, the rest up to twice beyond the input range), with a negative control (the emulator of
the model with one recurrent weight one LSB off must disagree with both simulations). One g++ and
one Verilator build per configuration: marked slow. The fast case runs the Verilog side through its
own interpreters (the stateful machine clock by clock, the unrolled netlist) instead of Verilator.
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

keras = pytest.importorskip('keras')

import fpga4ml  # noqa: E402
from fpga4ml.backends.verilog.design import design  # noqa: E402
from fpga4ml.backends.verilog.rnn_static import StaticRnnDesign  # noqa: E402
from fpga4ml.backends.verilog.stateful import run_vectors  # noqa: E402

L = keras.layers
N_IN, N_SEQUENCES = 3, 2000
#: model default, LSTM accumulator/state ('auto': every recurrent accum/result/state inferred), table size
PRECISIONS = {'fixed16_6': ('fixed<16,6>', 'fixed<20,8>', 256), 'narrow': ('fixed<9,3,RND,SAT>', 'fixed<12,5,RND,SAT>', 64),
              'auto': ('fixed<10,4,RND,SAT>', 'auto', 128)}
CASES = [(p, steps, static) for p in PRECISIONS for steps in (8, 1) for static in (True, False)]


def cells(steps: int):
    """LSTM, GRU and SimpleRNN on one input sequence."""
    keras.utils.set_random_seed(21)
    x = keras.Input((steps, N_IN), name='x')
    lstm = L.LSTM(4, return_sequences=True, return_state=True, name='lstm')(x)
    gru = L.GRU(3, reset_after=False, go_backwards=True, name='gru')(x)
    rnn = L.SimpleRNN(3, return_sequences=True, name='rnn')(x)
    return keras.Model(x, list(lstm) + [gru, rnn])


def convert(tmp_path, precision: str, steps: int, static: bool, backend: str):
    default, accum, table = PRECISIONS[precision]
    inferred = {'accum': 'auto', 'result': 'auto'} if accum == 'auto' else {}
    cfg = {'Model': {'Precision': default},
           'LayerType': {op: {'Static': static, 'TableSize': table, 'Precision': dict(inferred)}
                         for op in ('LSTM', 'GRU', 'SimpleRNN')},
           'LayerName': {'lstm': {'Precision': {'accum': accum, 'state': accum}}}}
    name = f'sweep_{backend.lower()}'
    return fpga4ml.convert_from_keras_model(cells(steps), hls_config=cfg, backend=backend, project_name=name,
                                            output_dir=str(tmp_path / name))


def sequences(model, n: int = N_SEQUENCES, seed: int = 0) -> np.ndarray:
    """Inputs up to twice the input type's range, a quarter of them on its grid."""
    t = model.graph['x'].result_type
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2 * t.max_value, 2 * t.max_value, (n,) + model.graph['x'].shape)
    x[:n // 4] = np.round(x[:n // 4] / t.lsb) * t.lsb
    return x


def assert_same(model, got: list, want: list, what: str) -> None:
    assert len(got) == len(want) == len(model.graph.outputs)
    for name, g, w in zip(model.graph.outputs, got, want):
        bad = np.flatnonzero(np.any((np.asarray(g) != w).reshape(len(w), -1), axis=1))
        assert bad.size == 0, f'{what}: output {name!r} differs on {bad.size} of {len(w)} sequences'


def lsb_off(model, xs) -> list:
    """Negative control: the emulator's outputs with the LSTM's first input weight one LSB off."""
    node = model.graph['lstm']
    node.qweights['kernel'][0, 0] += node.types['weight'].lsb
    model._emulator = None
    return model.predict(xs)


def verilog_interpreted(model, xs) -> list[np.ndarray]:
    """The Verilog design without a simulator: the static machine clock by clock, or the unrolled netlist."""
    g, d = model.graph, design(model, progress=False)
    mantissas = [g['x'].result_type.quantize(xs)]
    if isinstance(d, StaticRnnDesign):
        outs = run_vectors(d.machine, d.timing, mantissas)
    else:
        outs = d.netlist.evaluate([m.reshape(len(xs), -1) for m in mantissas])
    return [g[name].result_type.to_float(np.asarray(y).reshape((len(xs),) + g[name].shape))
            for name, y in zip(g.outputs, outs)]


@pytest.mark.parametrize('precision', ['narrow', 'auto'])
@pytest.mark.parametrize('static', [True, False])
def test_emulator_equals_verilog_interpreters(tmp_path, static, precision):
    """The fast case: 8 steps, narrow or 'auto' types, 500 sequences, both modes; the Verilog side interpreted."""
    model = convert(tmp_path, precision, 8, static, 'Verilog')
    assert isinstance(design(model, progress=False), StaticRnnDesign) == static
    xs = sequences(model, 500)
    got = verilog_interpreted(model, xs)
    assert_same(model, got, model.predict(xs), 'Verilog interpreter vs emulator')
    assert not all(np.array_equal(g, w) for g, w in zip(got, lsb_off(model, xs)))


@pytest.mark.slow
@pytest.mark.parametrize('precision, steps, static', CASES)
def test_emulator_csim_verilator_bit_identical(tmp_path, precision, steps, static):
    if shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None:
        pytest.skip('the C simulation needs g++ and the ap_types headers shipped with hls4ml')
    from verilog_models import require_verilator
    require_verilator()
    hls = convert(tmp_path, precision, steps, static, 'Vitis')
    rtl = convert(tmp_path, precision, steps, static, 'Verilog')
    xs = sequences(hls)
    want = hls.predict(xs)
    assert_same(rtl, rtl.predict(xs), want, 'emulator of the Verilog model vs emulator of the HLS model')
    hls.compile(sim='csim')
    csim = hls.predict(xs, sim='csim')
    assert_same(hls, csim, want, 'C simulation vs emulator')
    rtl.compile(sim='rtl', progress=False)
    verilated = rtl.predict(xs, sim='rtl')
    assert_same(rtl, verilated, want, 'Verilator vs emulator')
    d = design(rtl, progress=False)
    assert rtl.estimate()['ii'] == (steps * d.recurrent['lstm'][1] if static else 1)  # steps x the cell's stages
    control = lsb_off(hls, xs)
    assert not all(np.array_equal(c, w) for c, w in zip(control, csim))
    assert not all(np.array_equal(c, w) for c, w in zip(control, verilated))
