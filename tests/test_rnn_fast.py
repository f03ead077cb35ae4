"""The fused scan (fast.ScanMachine): a recurrent layer's whole scan as one numba register program.

* The emulator with fused scans equals the step-by-step numpy program (``fuse_scans`` off) bit
  for bit on random configurations of LSTM, GRU (both resets) and SimpleRNN: every rounding mode,
  every overflow mode (WRAP signed and unsigned, SAT, SAT_ZERO, SAT_SYM), narrow types that
  saturate or wrap, exact and hls4ml tables, relu/linear activations, go_backwards, initial states,
  all outputs; the fused path is really taken; a negative control (the largest input weight
  negated) breaks the equality.
  Each configuration runs twice: in the int32 program the bounds allow (all these configurations
  fit) and in an int64 program (forced); the LSTM's recurrent product-accumulates are fused with
  the add and cast that read them.
* Values beyond the int32 program's bounds (products of 28-bit values) run in int64 and equal the
  step-by-step program; negative control: with the int32 bound check disabled the same program
  runs in int32 and its outputs differ.
* Tracing (overflow counts) runs the step-by-step program: same outputs as predict.
* A scan whose values need more than 62 bits falls back to the step-by-step program.
* The machine's rounding and overflow equal FixedType.cast on random values for every mode, in
  int32 and int64 programs.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

keras = pytest.importorskip('keras')
pytest.importorskip('numba')

import fpga4ml  # noqa: E402
from fpga4ml.emulator import fast, scan_kernels, scan_machine  # noqa: E402
from fpga4ml.emulator.engine import Emulator  # noqa: E402
from fpga4ml.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedType  # noqa: E402
from fpga4ml.semantics.numpy_interp import NumpyProgram  # noqa: E402

L = keras.layers
T, N_IN, UNITS = 6, 3, 4


def _model(kind: str, rng, **options):
    """A Keras model: x (and initial states) -> one recurrent layer 'rnn' with all its outputs."""
    x = keras.Input((T, N_IN), name='x')
    layer = getattr(L, kind)(UNITS, return_sequences=True, return_state=True, name='rnn', **options)
    states = []
    if rng.random() < 0.5:
        states = [keras.Input((UNITS,), name=f's{k}') for k in range(2 if kind == 'LSTM' else 1)]
    km = keras.Model([x] + states, layer(x, initial_state=states or None))
    for w in layer.weights:  # large weights: sums round, saturate and wrap
        w.assign(rng.normal(0, 0.8, tuple(w.shape)).astype(np.float32))
    return km


def _random_type(rng, width: tuple[int, int] = (6, 16), unsigned: bool = False) -> str:
    w = int(rng.integers(*width))
    i = int(rng.integers(1, max(2, w // 2)))
    kind = 'ufixed' if unsigned else 'fixed'
    return f'{kind}<{w},{i},{rng.choice(ROUNDING_MODES)},{rng.choice(OVERFLOW_MODES)}>'


def _random_case(seed: int):
    """(Keras model, fpga4ml config) of a random recurrent layer and precision."""
    rng = np.random.default_rng(seed)
    kind = ('LSTM', 'GRU', 'SimpleRNN')[seed % 3]
    options = {'go_backwards': bool(rng.random() < 0.4)}
    if kind == 'GRU':
        options['reset_after'] = bool(rng.random() < 0.6)
    if kind != 'LSTM' and rng.random() < 0.3:
        options['activation'] = str(rng.choice(['relu', 'linear']))
    km = _model(kind, rng, **options)
    precision = {v: _random_type(rng) for v in ('weight', 'recurrent_weight', 'bias', 'recurrent_bias', 'accum')}
    precision['result'] = _random_type(rng, unsigned=options.get('activation') == 'relu' and rng.random() < 0.5)
    if kind == 'LSTM':
        precision['state'] = _random_type(rng)
    cfg = {'Model': {'Precision': _random_type(rng), 'TableSemantics': str(rng.choice(['exact', 'hls4ml']))},
           'LayerName': {'rnn': {'Precision': precision, 'TableSize': int(rng.choice([64, 256, 1024]))}}}
    return km, cfg


def _inputs(km, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-6, 6, (n,) + tuple(t.shape[1:])) for t in km.inputs]


def _run(model, xs, fused: bool, monkeypatch) -> dict[str, np.ndarray]:
    """Output mantissas of a fresh emulator with or without fused scans."""
    monkeypatch.setattr(NumpyProgram, 'fuse_scans', fused)
    return Emulator(model.graph, model.intervals).run(xs)


class _Compiled(list):
    """Names of the layers whose scan compiled to a machine program; `programs`: those programs."""

    def __init__(self):
        super().__init__()
        self.programs = []


@pytest.fixture
def fused_compiles(monkeypatch):
    """The machine programs compiled (the fused path taken)."""
    count = _Compiled()
    compile_ = fast.ScanMachine.compile

    def counted(self, *args, **kwargs):
        program = compile_(self, *args, **kwargs)
        count.append(self.node.name)
        count.programs.append(program)
        return program
    monkeypatch.setattr(fast.ScanMachine, 'compile', counted)
    return count


def _force_int64(monkeypatch) -> None:
    """Every program compiled from now on runs in int64 (no value is allowed in the int32 program)."""
    monkeypatch.setattr(scan_machine, 'INT32_BITS', -1)


def _fused_matmuls(program) -> int:
    """Product-accumulates of a program that start from another register (fused with their add)."""
    p13 = scan_kernels.CODE_FIELDS.index('p13')
    return int(np.sum((program.code[:, 0] == scan_kernels.OP_MATMUL) & (program.code[:, p13] >= 0)))


@pytest.mark.parametrize('dtype', ['int32', 'int64'])
@pytest.mark.parametrize('seed', range(12))
def test_fused_scan_equals_step_by_step(seed, dtype, monkeypatch, fused_compiles):
    km, cfg = _random_case(seed)
    model = fpga4ml.convert_from_keras_model(km, hls_config=cfg)
    xs = _inputs(km, 257, seed)  # not a multiple of the machine's block
    want = _run(model, xs, False, monkeypatch)
    assert not fused_compiles
    if dtype == 'int64':
        _force_int64(monkeypatch)
    got = _run(model, xs, True, monkeypatch)
    assert fused_compiles == ['rnn']
    program = fused_compiles.programs[0]
    assert program.dtype == np.dtype(dtype)  # widths <= 16: every value fits the int32 program
    for name in model.graph.outputs:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f'{name}: {cfg}')
    bad = copy.deepcopy(model)  # negative control: the largest input weight negated
    kernel = bad.graph['rnn'].qweights['kernel']
    where = np.unravel_index(np.argmax(np.abs(kernel)), kernel.shape)
    kernel[where] = -kernel[where]
    got_bad = _run(bad, xs, True, monkeypatch)
    assert any(not np.array_equal(got_bad[name], want[name]) for name in model.graph.outputs)


def test_trace_runs_the_step_by_step_program(monkeypatch, fused_compiles):
    km, cfg = _random_case(0)
    model = fpga4ml.convert_from_keras_model(km, hls_config=cfg)
    xs = _inputs(km, 100, 1)
    want = model.predict_mantissas(xs)
    assert fused_compiles == ['rnn']
    _, traced = model.trace(xs)
    for name in model.graph.outputs:
        np.testing.assert_array_equal(model.graph[name].result_type.quantize(traced[name]), want[name])
    monkeypatch.setattr(NumpyProgram, 'fuse_scans', False)
    other = copy.deepcopy(model)
    other._emulator = None  # a new emulator, without fused scans
    _, step_by_step = other.trace(xs)
    assert {k: s.overflow for k, s in traced.stats.items()} == {k: s.overflow for k, s in step_by_step.stats.items()}
    assert traced.stats['rnn_seq'].count == 100 * T * UNITS


def test_lstm_products_fuse_with_their_add(monkeypatch, fused_compiles):
    """The example's precision (fixed<16,6>, hls4ml tables): every step's recurrent product-accumulate
    starts from the input products and ends in the accumulator's wrap, in an int32 program."""
    km = _model('LSTM', np.random.default_rng(7))
    model = fpga4ml.convert_from_keras_model(km, hls_config={'Model': {'Precision': 'fixed<16,6>',
                                                                       'TableSemantics': 'hls4ml'}})
    xs = _inputs(km, 200, 7)
    want = _run(model, xs, False, monkeypatch)
    got = _run(model, xs, True, monkeypatch)
    program = fused_compiles.programs[0]
    assert program.dtype == np.int32 and _fused_matmuls(program) == T
    for name in model.graph.outputs:
        np.testing.assert_array_equal(got[name], want[name])
    bad = copy.deepcopy(model)  # negative control: one recurrent weight changed
    bad.graph['rnn'].qweights['recurrent_kernel'][0, 0] += 1
    got_bad = _run(bad, xs, True, monkeypatch)
    assert any(not np.array_equal(got_bad[name], want[name]) for name in model.graph.outputs)


def _wide_linear_case():
    """(model, inputs) of a linear SimpleRNN at fixed<28,14>: its products need about 45 bits."""
    rng = np.random.default_rng(5)
    km = _model('SimpleRNN', rng, activation='linear')
    model = fpga4ml.convert_from_keras_model(km, hls_config={'Model': {'Precision': 'fixed<28,14>'}})
    return model, _inputs(km, 50, 5)  # fewer sequences than one block


def test_values_beyond_int32_run_in_int64(monkeypatch, fused_compiles):
    model, xs = _wide_linear_case()
    want = _run(model, xs, False, monkeypatch)
    got = _run(model, xs, True, monkeypatch)
    assert fused_compiles == ['rnn'] and fused_compiles.programs[0].dtype == np.int64
    for name in model.graph.outputs:
        np.testing.assert_array_equal(got[name], want[name])
    # negative control: the same program in int32 (the bound check disabled) is not exact
    monkeypatch.setattr(scan_machine, 'INT32_BITS', scan_machine.MACHINE_BITS)
    bad = _run(model, xs, True, monkeypatch)
    assert fused_compiles.programs[1].dtype == np.int32
    assert any(not np.array_equal(bad[name], want[name]) for name in model.graph.outputs)


def test_values_beyond_62_bits_fall_back(monkeypatch, fused_compiles):
    rng = np.random.default_rng(0)
    km = _model('GRU', rng)
    cfg = {'Model': {'Precision': 'fixed<40,20>'}, 'LayerName': {'rnn': {'Precision': {'accum': 'fixed<60,30>'}}}}
    model = fpga4ml.convert_from_keras_model(km, hls_config=cfg)
    xs = _inputs(km, 50, 2)
    got = _run(model, xs, True, monkeypatch)
    assert not fused_compiles  # the machine refused it (products beyond 2^62)
    want = _run(model, xs, False, monkeypatch)
    for name in model.graph.outputs:
        np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize('dtype', ['int32', 'int64'])
@pytest.mark.parametrize('rounding', ROUNDING_MODES)
@pytest.mark.parametrize('overflow', OVERFLOW_MODES)
def test_machine_cast_equals_fixed_cast(rounding, overflow, dtype, monkeypatch):
    """A cast recorded by the machine (one cast instruction) equals FixedType.cast, in either dtype."""
    if dtype == 'int64':
        _force_int64(monkeypatch)
    from fpga4ml.intervals import Interval
    from fpga4ml.semantics.bounds import Bounds
    from fpga4ml.semantics.primitives import Const
    rng = np.random.default_rng(len(rounding) * 7 + len(overflow))
    m = np.concatenate([rng.integers(-(1 << 20), 1 << 20, 3000), np.arange(-300, 300)]).astype(np.int64)
    for signed in (True, False):
        t = FixedType(9, 4, signed, rounding, overflow)
        for frac_in in (2, 5, 9):  # a left shift, no shift and a right shift into t's LSB (frac 5)
            node = fpga4ml.ir.Node('c', 'Activation', [], (len(m),))
            machine = fast.ScanMachine(node, Bounds(node, []))
            x = machine.input(Interval.of_values(m, frac_in))
            y = machine.cast(x, t)
            machine.const(Const(np.zeros(1, np.int64), 0))
            program = machine.compile([y])
            assert program.dtype == np.dtype(dtype)
            got = program([m[None]])[0]
            np.testing.assert_array_equal(got, t.cast(m, frac_in), err_msg=f'{t} from frac {frac_in}')
    narrower = FixedType(8, 3, False, rounding, overflow)  # negative control: one bit less
    assert not np.array_equal(got, narrower.cast(m, 9))
