"""Products of two variables in LUTs (VariableProducts, backends/verilog/lut_multiplier.py).

The partial-product array, and the multiplexer of multiples that replaces it where the narrower operand
takes at most MUX_PRODUCT_VALUES values, must compute a * b exactly for every operand pair of its
operands' ranges (signed and unsigned, either operand the narrower one) and stay inside the bounds it
declares; an
HGQ2 attention layer built with 'lut' has no multiplier left, its netlist computes the emulator's
bits and its Verilog (Verilator) HGQ2's; each comparison has a negative control.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fpga4ml.backends.verilog.lut_multiplier import LUT_PRODUCT_BITS, MUX_PRODUCT_VALUES, in_luts, lut_product
from fpga4ml.backends.verilog.netlist import Netlist, Port
from fpga4ml.config import ConfigError

RANGES = [(-8, 7), (0, 15), (-3, 5), (2, 9), (-16, -1), (0, 1), (-1, 0), (5, 6), (-100, 37), (0, 200)]


def product_netlist(a_range, b_range):
    """A netlist with inputs a (LSB 2^-2) and b (LSB 2^-3) of the given mantissa ranges and their LUT product."""
    nl = Netlist()
    a = nl._new('input', (), *a_range, 2, port=0, element=0)
    b = nl._new('input', (), *b_range, 3, port=0, element=1)
    return nl, a, b, lut_product(nl, a, b)


def evaluate(nl: Netlist, signal: int, a_values, b_values) -> np.ndarray:
    """The value of `signal` for every (a, b) pair (the netlist's own interpreter, one port of two elements)."""
    nl.outputs = [Port('p', (1,), None, [signal])]
    pairs = np.array(list(itertools.product(a_values, b_values)), dtype=np.int64)
    return nl.evaluate([pairs])[0][:, 0], pairs


@pytest.mark.parametrize('a_range,b_range', list(itertools.product(RANGES, repeat=2)))
def test_partial_products_compute_the_exact_product(a_range, b_range):
    nl, a, b, p = product_netlist(a_range, b_range)
    got, pairs = evaluate(nl, p, range(a_range[0], a_range[1] + 1), range(b_range[0], b_range[1] + 1))
    assert np.array_equal(got, pairs[:, 0] * pairs[:, 1])
    assert nl[p].frac == 5                       # the LSB of a product: both operands' summed
    assert nl[p].lo <= got.min() and got.max() <= nl[p].hi
    corners = [x * y for x in a_range for y in b_range]
    assert (nl[p].lo, nl[p].hi) == (min(corners), max(corners)) or nl[p].is_const
    assert 'mul' not in nl.stats()
    values = min(r[1] - r[0] + 1 for r in (a_range, b_range))
    if values <= MUX_PRODUCT_VALUES and values > 1:
        assert nl.stats().get('mux') == 1 and 'select' not in nl.stats()


def test_negative_control_one_partial_product_at_the_wrong_weight():
    nl, a, b, p = product_netlist((-100, 37), (-20, 30))
    assert 'mux' not in nl.stats()               # both operands take more values than a multiplexer picks from
    adds = [s for s in nl.signals if s.op == 'add' and s.p['sb'] > 0]
    adds[0].p['sb'] += 1                         # one partial product read one bit too high
    got, pairs = evaluate(nl, p, range(-100, 38), range(-20, 31))
    assert not np.array_equal(got, pairs[:, 0] * pairs[:, 1])


def test_multiples_are_shared_and_a_swapped_option_is_caught():
    """Two products of one operand by narrow ones read the same multiples; swapping two options of one
    multiplexer (negative control) breaks the product."""
    nl = Netlist()
    a = nl._new('input', (), -100, 37, 2, port=0, element=0)
    b = nl._new('input', (), -4, 3, 3, port=0, element=1)
    c = nl._new('input', (), -4, 3, 3, port=0, element=2)
    p, q = lut_product(nl, a, b), lut_product(nl, c, a)
    mux_b, mux_c = (nl[nl[s].args[0]] for s in (p, q))
    assert mux_b.op == mux_c.op == 'mux' and mux_b.args[1:] == mux_c.args[1:]
    assert sum(s.op in ('add', 'neg') for s in nl.signals) == 3   # 3a = 4a - a, -3a = a - 4a, -a (once)
    nl.outputs = [Port('p', (2,), None, [p, q])]
    grid = np.array(list(itertools.product(range(-100, 38), range(-4, 4), range(-4, 4))), dtype=np.int64)
    got = nl.evaluate([grid])[0]
    assert np.array_equal(got[:, 0], grid[:, 0] * grid[:, 1]) and np.array_equal(got[:, 1], grid[:, 0] * grid[:, 2])
    args = list(mux_b.args)
    args[1], args[2] = args[2], args[1]          # the options for b = -4 and b = -3 swapped
    mux_b.args = tuple(args)
    assert not np.array_equal(nl.evaluate([grid])[0][:, 0], grid[:, 0] * grid[:, 1])


def test_auto_puts_narrow_products_in_luts():
    nl = Netlist()
    narrow = nl._new('input', (), -(1 << (LUT_PRODUCT_BITS - 1)), (1 << (LUT_PRODUCT_BITS - 1)) - 1, 0,
                     port=0, element=0)
    wide = nl._new('input', (), -(1 << LUT_PRODUCT_BITS), (1 << LUT_PRODUCT_BITS) - 1, 0, port=0, element=1)
    assert in_luts(nl, wide, narrow, 'auto') and in_luts(nl, narrow, wide, 'auto')
    assert not in_luts(nl, wide, wide, 'auto')
    assert in_luts(nl, wide, wide, 'lut') and not in_luts(nl, narrow, narrow, 'dsp')


def attention_model():
    """HGQ2 self-attention (2 heads, key_dim 2) on 4 x 5 inputs with 3 fractional bits."""
    keras = pytest.importorskip('keras')
    pytest.importorskip('hgq')
    from hgq.config import QuantizerConfigScope
    from hgq.layers import QMultiHeadAttention
    keras.utils.set_random_seed(2)
    with QuantizerConfigScope(f0=3, i0=2):
        x = keras.Input((4, 5), name='x')
        return keras.Model(x, QMultiHeadAttention(2, 2, name='mha')(x, x))


def converted(model, tmp_path, setting, layer_setting=None):
    """The model converted with VariableProducts = setting, and layer_setting for the attention's products."""
    from fpga4ml.convert import convert_from_keras_model
    config = {'Model': {'VariableProducts': setting}}
    if layer_setting is not None:   # the scores and combine nodes answer to the layer's class, the softmax to HGQ2's
        config['LayerType'] = {cls: {'VariableProducts': layer_setting} for cls in ('QMultiHeadAttention', 'QSoftmax')}
    return convert_from_keras_model(model, output_dir=str(tmp_path / f'{setting}_{layer_setting}'),
                                    backend='Verilog', hls_config=config)


def test_attention_products_in_luts_compute_the_emulator_bits(tmp_path):
    from fpga4ml.backends.verilog.lower import lower_graph
    model = attention_model()
    x = (np.random.default_rng(0).normal(0, 1, (2000, 4, 5)) * 4).astype(np.float32)
    dsp, auto, lut = (converted(model, tmp_path, s) for s in ('dsp', 'auto', 'lut'))
    multipliers = {}
    for name, hls in (('dsp', dsp), ('auto', auto), ('lut', lut)):
        nl = lower_graph(hls.graph, hls.intervals)
        multipliers[name] = nl.stats().get('mul', 0)
        t_in, t_out = (hls.graph[n].result_type for n in (hls.graph.inputs[0], hls.graph.outputs[0]))
        got = nl.evaluate([t_in.quantize(x)])[0]
        want = t_out.quantize(hls.predict(x)).reshape(got.shape)
        assert np.array_equal(got, want), name
    # negative control: in the 'lut' netlist, one partial product (a select) added one bit too high
    add = next(s for s in nl.signals if s.op == 'add' and nl[s.args[1]].op == 'select' and s.p['sb'] > 0)
    add.p['sb'] += 1
    assert not np.array_equal(nl.evaluate([t_in.quantize(x)])[0], want)
    assert multipliers['dsp'] > multipliers['auto'] > multipliers['lut'] == 0
    assert lut.estimate()['DSP'] == 0 and dsp.estimate()['DSP'] > 0
    # the layer's entry wins over the model's
    layer_lut = converted(model, tmp_path, 'dsp', 'lut')
    assert lower_graph(layer_lut.graph, layer_lut.intervals).stats().get('mul', 0) == 0


def test_variable_products_setting_errors_name_the_key(tmp_path):
    model = attention_model()
    with pytest.raises(ConfigError, match=r"VariableProducts='luts'.*'dsp'.*'lut'.*'auto'"):
        converted(model, tmp_path, 'luts')
    with pytest.raises(ConfigError, match=r"LayerType'\]\['QMultiHeadAttention'\].*VariableProducts=3"):
        converted(model, tmp_path, 'dsp', 3)


def test_verilator_with_products_in_luts_equals_hgq2(tmp_path):
    """The Verilog of the attention layer with every product in LUTs computes HGQ2's bits (x4 inputs)."""
    from verilog_models import require_verilator
    require_verilator()
    model = attention_model()
    import keras
    x = (np.random.default_rng(1).normal(0, 1, (2000, 4, 5)) * 4).astype(np.float32)
    hls = converted(model, tmp_path, 'lut')
    hls.compile(sim='rtl', progress=False)
    got = hls.predict(x, sim='rtl')
    np.testing.assert_array_equal(got, np.asarray(keras.ops.convert_to_numpy(model(x)), dtype=np.float64))
    w = model.get_layer('mha')._query_dense.kernel          # negative control: HGQ2 with one weight moved
    values = keras.ops.convert_to_numpy(w).copy()
    values.flat[np.argmax(np.abs(values))] += 1.0
    w.assign(values)
    assert not np.array_equal(got, np.asarray(keras.ops.convert_to_numpy(model(x)), dtype=np.float64))
