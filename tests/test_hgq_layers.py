"""HGQ2 0.2 standalone QSoftmax, QSum, QMeanPow2, QUnaryFunctionLUT (frontends/hgq_attention.py) bit-identical
with HGQ2.

Inputs are scaled x4 so that the input quantizers saturate or wrap. Each comparison has a negative
control: HGQ2's output after one setting of the layer changes must differ from fpga4ml's. The Verilog
netlist computes the emulator's bits.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

keras = pytest.importorskip('keras')
hgq = pytest.importorskip('hgq')

from hgq.config import QuantizerConfigScope  # noqa: E402
from hgq.layers import QMeanPow2, QSoftmax, QSum, QUnaryFunctionLUT  # noqa: E402

from fpga4ml.backends.verilog.lower import lower_graph  # noqa: E402
from fpga4ml.convert import convert_from_keras_model  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.keras import keras_to_graph  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402

SHAPE = (4, 6)


def one_layer(layer):
    """keras.Model(x -> layer) with x of per-sample SHAPE, HGQ2 quantizers f0=3, i0=2."""
    keras.utils.set_random_seed(1)
    with QuantizerConfigScope(f0=3, i0=2):
        x = keras.Input(SHAPE, name='x')
        return keras.Model(x, layer()(x))


def hgq_output(model, x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(model(x)), dtype=np.float64)


def data(n: int = 2000, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(0, 1, (n,) + SHAPE) * 4).astype(np.float32)


def assert_netlist_computes_the_emulator_bits(hls, x) -> None:
    mantissas = hls.predict_mantissas(x)[hls.graph.outputs[0]]
    inputs = [hls.graph['x'].result_type.quantize(x)]
    np.testing.assert_array_equal(lower_graph(hls.graph, hls.intervals).evaluate(inputs)[0], mantissas)


@pytest.mark.parametrize('enable_oq', [False, True])
def test_standalone_qsoftmax_is_bit_identical_to_hgq2(tmp_path, enable_oq):
    model = one_layer(lambda: QSoftmax(enable_iq=True, enable_oq=enable_oq, name='sm'))
    x = data()
    want = hgq_output(model, x)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path), backend='Vitis')
    assert [n.op for n in hls.graph.nodes] == ['Input', 'Quantize', 'TableSoftmax'] + ['Quantize'] * enable_oq
    got = hls.predict(x)
    assert want.std() > 0.1
    np.testing.assert_array_equal(got, want)
    assert_netlist_computes_the_emulator_bits(hls, x[:100])
    model.get_layer('sm').input_scaler = 2.0  # negative control: HGQ2 computes another exp table
    assert not np.array_equal(got, hgq_output(model, x))


@pytest.mark.parametrize('make', [
    lambda: QSum(axes=-1, name='s'),
    lambda: QSum(axes=(1,), scale=0.25, keepdims=True, name='s'),
    lambda: QSum(axes=(1, 2), keepdims=True, name='s'),
    lambda: QMeanPow2(axes=(1, 2), name='s'),
    lambda: QMeanPow2(axes=-1, keepdims=True, name='s'),
])
def test_qsum_and_qmeanpow2_are_bit_identical_to_hgq2(tmp_path, make):
    model = one_layer(make)
    x = data()
    want = hgq_output(model, x)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path), backend='Vitis')
    assert 'EinsumDense' in [n.op for n in hls.graph.nodes]
    got = hls.predict(x)
    assert got.shape == want.shape and want.std() > 0.1
    np.testing.assert_array_equal(got, want)
    assert_netlist_computes_the_emulator_bits(hls, x[:100])
    layer = model.get_layer('s')  # negative control: HGQ2 with twice the scale
    layer._scale = 2 * layer.scale
    assert not np.array_equal(got, hgq_output(model, x))


@pytest.mark.parametrize('function', ['tanh', 'sin'])
def test_qunaryfunctionlut_is_bit_identical_to_hgq2(tmp_path, function):
    model = one_layer(lambda: QUnaryFunctionLUT(getattr(keras.ops, function), name='s'))
    x = data()
    want = hgq_output(model, x)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path), backend='Vitis')
    assert [(n.op, n.attrs.get('function')) for n in hls.graph.nodes][1:] == [('Quantize', None), ('Activation', 'lut')]
    got = hls.predict(x)
    assert want.std() > 0.1
    np.testing.assert_array_equal(got, want)
    t = hls.graph['s_iq'].result_type  # the float meaning on the iq's grid (no rounding, no wrapping): the table
    on_grid = t.to_float(np.random.default_rng(1).integers(t.min_mantissa, t.max_mantissa + 1, (200,) + SHAPE))
    np.testing.assert_array_equal(float_forward(keras_to_graph(model), on_grid)[0],
                                  hgq_output(model, on_grid.astype(np.float32)))
    assert_netlist_computes_the_emulator_bits(hls, x[:100])
    other = one_layer(lambda: QUnaryFunctionLUT(keras.ops.cos, name='s'))  # negative control: another function
    assert not np.array_equal(got, hgq_output(other, x))


def test_qunaryfunctionlut_without_its_quantizers_is_refused():
    model = one_layer(lambda: QUnaryFunctionLUT(keras.ops.tanh, enable_oq=False, name='s'))
    with pytest.raises(GraphError, match=r"layer 's' \(QUnaryFunctionLUT\): .*needs its input and output quantizers"):
        keras_to_graph(model)


@pytest.mark.skipif(shutil.which('g++') is None, reason='needs g++')
def test_csim_equals_emulator(tmp_path):
    from test_hls_csim import assert_bit_identical

    x = data()
    for k, make in enumerate([lambda: QMeanPow2(axes=(1, 2), name='s'),
                              lambda: QUnaryFunctionLUT(keras.ops.sin, name='s'),
                              lambda: QSoftmax(enable_iq=True, enable_oq=True, name='s')]):
        hls = convert_from_keras_model(one_layer(make), output_dir=str(tmp_path / str(k)), backend='Vitis')
        hls.compile(sim='csim')
        assert_bit_identical(hls, [x])
    other = one_layer(lambda: QSoftmax(enable_iq=True, enable_oq=True, input_scaler=2.0, name='s'))
    other = convert_from_keras_model(other, output_dir=str(tmp_path / 'other'), backend='Vitis')
    got = hls._csim.predict(x)
    np.testing.assert_array_equal(hls.emulator.predict(x), got)
    assert not np.array_equal(other.emulator.predict(x), got)  # negative control


@pytest.mark.slow
def test_verilator_equals_emulator(tmp_path):
    """The Verilog designs (unrolled, II = 1) compute the emulator's bits on 2,000 inputs."""
    from verilog_models import require_verilator
    require_verilator()
    x = data()
    for k, make in enumerate([lambda: QMeanPow2(axes=-1, keepdims=True, name='s'),
                              lambda: QUnaryFunctionLUT(keras.ops.sin, name='s'),
                              lambda: QSoftmax(enable_iq=True, enable_oq=True, name='s')]):
        model = one_layer(make)
        hls = convert_from_keras_model(model, output_dir=str(tmp_path / str(k)), backend='Verilog')
        hls.compile(sim='rtl', progress=False)
        got = hls.predict(x, sim='rtl')
        np.testing.assert_array_equal(got, hgq_output(model, x))
    model.get_layer('s').input_scaler = 2.0  # negative control: HGQ2 computes another exp table
    assert not np.array_equal(got, hgq_output(model, x))
