"""'auto' types of recurrent layers, inferred over the whole sequence (semantics/rnn_auto.py).

The inferred accumulator, result and cell state hold every value the layer reaches: the emulator
with them gives the same bits as with the same LSBs and 8 more integer bits, on inputs spanning the
whole input type (and beyond it); the control, one integer bit fewer on the result, changes outputs.
The LSB rules (result/state: the default's; accum: the exact products'), max_precision's cap, the
tight bounds of an LSTM's h (o * tanh(c) in [-1, 1]) and the error for a state that outgrows 64 bits
are checked too. Bit-exactness of 'auto' models through C simulation and Verilator: test_rnn_sweep.py.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip('keras')

import fpga4ml  # noqa: E402
from fpga4ml.fixed import FixedType  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402

L = keras.layers
STEPS, N_IN = 8, 3
CELLS = {'lstm': lambda: L.LSTM(4, return_sequences=True, name='cell'),
         'gru': lambda: L.GRU(4, return_sequences=True, name='cell'),
         'gru_before': lambda: L.GRU(4, reset_after=False, return_sequences=True, name='cell'),
         'simple_rnn': lambda: L.SimpleRNN(4, return_sequences=True, name='cell')}
VARIABLES = {'lstm': ('accum', 'result', 'state')}


def keras_model(cell: str, steps: int = STEPS):
    keras.utils.set_random_seed(4)
    x = keras.Input((steps, N_IN), name='x')
    return keras.Model(x, CELLS[cell]()(x))


def convert(cell: str, precision: dict | None = None, model=None, tables: str = 'exact', **model_precision):
    """The cell with its sequence variables 'auto' (or as given), fixed<12,4> elsewhere."""
    variables = VARIABLES.get(cell, ('accum', 'result'))
    layer = {v: 'auto' for v in variables} | (precision or {})
    cfg = {'Model': {'Precision': {'default': 'fixed<12,4>', **model_precision}, 'TableSemantics': tables},
           'LayerName': {'cell': {'Precision': layer}}}
    return fpga4ml.convert_from_keras_model(model or keras_model(cell), hls_config=cfg)


def inputs(n: int = 3000) -> np.ndarray:
    """Random sequences over twice the input type's range (fixed<12,4>: saturated there), some at its ends."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-16, 16, (n, STEPS, N_IN))
    x[:n // 10] = np.sign(x[:n // 10]) * 8  # at the ends of the input range every step
    return x


def widened(t: FixedType, extra: int) -> str:
    """t with `extra` more integer bits (same LSB and modes), as a precision string."""
    return str(FixedType(t.width + extra, t.integer + extra, t.signed, t.rounding, t.overflow))


@pytest.mark.parametrize('cell', list(CELLS))
def test_inferred_types_hold_every_value(cell):
    """With hls4ml's tables (addressed by value, not by the input type's range) 8 more integer bits on
    every inferred type change no output bit: no value overflowed."""
    model = convert(cell, tables='hls4ml')
    types = model.graph['cell'].types
    variables = VARIABLES.get(cell, ('accum', 'result'))
    xs = inputs()
    wide = convert(cell, {v: widened(types[v], 8) for v in variables}, tables='hls4ml')
    assert np.array_equal(wide.predict(xs), model.predict(xs))


@pytest.mark.parametrize('cell', list(CELLS))
def test_lsb_rules(cell):
    """h (and c) at the default's LSB; the accumulator at the exact products' LSB (x: 8 fractional bits,
    weights 8, h 8); tables at the model default with fpga4ml's tables, hls4ml's type with hls4ml's."""
    types = convert(cell).graph['cell'].types
    assert types['result'].frac == 8 and types['accum'].frac == 16 and types['table'] == FixedType(12, 4)
    if cell == 'lstm':
        assert types['state'].frac == 8
        assert types['result'].integer == 1  # h = o * tanh(c) in (-1, 1): one integer bit (sign included)
    assert convert(cell, tables='hls4ml').graph['cell'].types['table'] == FixedType(18, 8)


def test_relu_cell_with_exact_tables_holds_every_value():
    """No table: a relu SimpleRNN with fpga4ml's semantics, widened by 8 integer bits, gives the same bits."""
    keras.utils.set_random_seed(2)
    x = keras.Input((STEPS, N_IN), name='x')
    m = keras.Model(x, L.SimpleRNN(4, activation='relu', return_sequences=True, name='cell')(x))
    model = convert('simple_rnn', model=m)
    types = model.graph['cell'].types
    wide = convert('simple_rnn', {v: widened(types[v], 8) for v in ('accum', 'result')}, model=m)
    assert np.array_equal(wide.predict(inputs()), model.predict(inputs()))
    assert types['result'].integer > 4  # the relu state grows past the input's range over 8 steps


@pytest.mark.parametrize('cell', ['lstm', 'simple_rnn'])
def test_control_one_integer_bit_fewer_overflows(cell):
    """The inferred result is tight: one integer bit fewer makes some output wrap on the same inputs."""
    model = convert(cell)
    t = model.graph['cell'].types['result']
    narrow = convert(cell, {'result': widened(t, -1)})
    assert not np.array_equal(narrow.predict(inputs()), model.predict(inputs()))


def test_max_precision_caps_the_inferred_types():
    model = convert('gru', maximum='fixed<12,2>')
    types = model.graph['cell'].types
    assert types['accum'].width <= 12 and types['accum'].integer <= 2
    assert types['result'].integer <= 2


def test_explicit_types_are_kept_and_only_auto_ones_inferred():
    model = convert('lstm', {'accum': 'fixed<20,8>'})
    types = model.graph['cell'].types
    assert types['accum'] == FixedType(20, 8)
    assert types['result'].frac == 8 and types['table'] == FixedType(20, 8)  # table 'auto': the accumulator


def test_state_beyond_64_bits_raises_naming_layer_and_variable():
    """A relu SimpleRNN whose recurrent weights double h each step outgrows 64 bits over 64 steps."""
    keras.utils.set_random_seed(0)
    x = keras.Input((64, 1), name='x')
    layer = L.SimpleRNN(1, activation='relu', name='cell')
    m = keras.Model(x, layer(x))
    layer.set_weights([np.ones((1, 1)), np.full((1, 1), 3.0), np.zeros(1)])
    with pytest.raises(GraphError, match=r"layer 'cell'.*SimpleRNN '(accum|result)'.*set Precision"):
        convert('simple_rnn', model=m)


def test_auto_config_from_keras_asks_for_inferred_types():
    """granularity='name' writes 'auto' for the recurrent variables, which are then inferred, not the default."""
    m = keras_model('lstm')
    cfg = fpga4ml.utils.config_from_keras_model(m, granularity='name', default_precision='fixed<16,6>')
    assert cfg['LayerName']['cell']['Precision']['state'] == 'auto'
    model = fpga4ml.convert_from_keras_model(m, hls_config=cfg)
    types = model.graph['cell'].types
    assert types['result'] == FixedType(11, 1) and types['accum'] != FixedType(16, 6)
    err = np.abs(model.predict(inputs(500) / 4) - m.predict(inputs(500) / 4, verbose=0)).max()
    assert err < 0.05  # hls4ml's own test tolerance
