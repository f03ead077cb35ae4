"""HGQ2 0.2's table convolutions QConvT1D / QConvT2D (frontends/hgq_convt.py) bit-identical with HGQ2's inference.

Each layer becomes one TableDense over its im2col windows. Half the inputs are scaled x4 so that the input
quantizers saturate; the input quantizers get per-element bit widths (some pruned), so positions have their
own tables. Negative controls: HGQ2's output after one sub-network weight moves must differ from fpga4ml's.
The C simulation, the Verilog netlist and Verilator must compute the emulator's (and HGQ2's) bits.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

keras = pytest.importorskip('keras')
hgq = pytest.importorskip('hgq')

from hgq.config import QuantizerConfigScope  # noqa: E402
from hgq.layers import QConvT1D, QConvT2D, QDenseT  # noqa: E402

from fpga4ml.backends.verilog.lower import lower_graph  # noqa: E402
from fpga4ml.convert import convert_from_keras_model  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402
from test_hls_csim import assert_bit_identical  # noqa: E402

#: (input shape, layer) per case: valid and same padding, strides, dilation, an activation, batch_norm
CASES = {
    '1d_valid_relu': ((8, 3), lambda: QConvT1D(2, 2, activation='relu', name='c')),
    '1d_same_stride2': ((7, 2), lambda: QConvT1D(3, 3, padding='same', strides=2, name='c')),
    '2d_valid': ((5, 5, 2), lambda: QConvT2D(3, (3, 2), name='c')),
    '2d_same_strides_bn': ((6, 5, 2), lambda: QConvT2D(2, 3, padding='same', strides=(2, 1), batch_norm=True,
                                                        name='c')),
    '2d_same_dilation2': ((6, 6, 1), lambda: QConvT2D(2, 2, padding='same', dilation_rate=2, name='c')),
}


def build(case: str, seed: int = 1):
    """The one-layer model of `case` with per-element input quantizer bit widths (about a tenth pruned)."""
    shape, make = CASES[case]
    keras.utils.set_random_seed(seed)
    with QuantizerConfigScope(f0=3, i0=2):
        x = keras.Input(shape, name='x')
        model = keras.Model(x, make()(x))
    layer, rng = model.get_layer('c'), np.random.default_rng(seed)
    iq = {w.path.rsplit('/', 1)[-1]: w for w in layer.iq.weights}
    bits = {k: keras.ops.convert_to_numpy(iq[k]) + rng.integers(-1, 2, iq[k].shape) for k in ('i', 'f')}
    pruned = rng.random(bits['i'].shape) < 0.1
    bits['i'][pruned], bits['f'][pruned] = -1, 0  # k + i + f = 0: always 0
    for k, v in bits.items():
        iq[k].assign(v.astype('float32'))
    if layer.enable_bn:
        layer.bn_module.moving_variance.assign(rng.uniform(0.01, 0.05, layer.bn_module.moving_variance.shape))
    return model


def inputs(model, n: int, seed: int = 0) -> np.ndarray:
    """n standard normal inputs, the second half scaled x4."""
    xs = np.random.default_rng(seed).normal(0, 1, (n,) + tuple(model.inputs[0].shape[1:]))
    xs[n // 2:] *= 4
    return xs.astype(np.float32)


def hgq_output(model, xs) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(model(xs)), dtype=np.float64)


def moved_subnet(layer) -> None:
    """Move the largest weight of the layer's sub-network by 0.5 (a negative control)."""
    w = layer.module.weights[0]
    values = keras.ops.convert_to_numpy(w).copy()
    values.flat[np.argmax(np.abs(values))] += 0.5
    w.assign(values)


def padding_terms(node) -> int:
    """How many terms of a TableDense are the constant of a padding zero or a pruned input (no table)."""
    return sum(t is None for t in node.attrs['index_types'])


@pytest.mark.parametrize('case', list(CASES))
def test_qconvt_is_bit_identical_to_hgq2(tmp_path, case):
    model = build(case)
    xs = inputs(model, 2000)
    want = hgq_output(model, xs)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / case), backend='Vitis')
    node = hls.graph['c']
    assert node.op == 'TableDense' and node.source == type(model.get_layer('c')).__name__
    if 'same' in case:  # every term on a padding zero of Keras' patches is a constant
        layer = model.get_layer('c')
        ones = np.ones((1,) + tuple(model.inputs[0].shape[1:]), np.float32)
        ones = ones[:, :, None] if layer.rank == 1 else ones  # as QConvT1D.call: (1, W, 1, C)
        patches = keras.ops.convert_to_numpy(keras.ops.image.extract_patches(ones, **layer.im2col_params))
        assert 0 < int(np.sum(patches == 0)) * layer.n_out <= padding_terms(node)
    got = hls.predict(xs)
    assert want.std() > 0.2
    np.testing.assert_array_equal(got, want)
    moved_subnet(model.get_layer('c'))  # negative control
    assert not np.array_equal(got, hgq_output(model, xs))


def test_netlist_and_csim_compute_the_emulator_bits(tmp_path):
    """io_parallel C simulation (the TableDense emitter) and the Verilog netlist == the emulator; the emulator of
    the model with a moved sub-network weight differs from the C simulation."""
    if shutil.which('g++') is None:
        pytest.skip('needs g++ for the C simulation')
    model = build('2d_same_strides_bn')
    xs = inputs(model, 400, seed=3)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'hls'), backend='Vitis')
    nl = lower_graph(hls.graph, hls.intervals)
    got = nl.evaluate([hls.graph['x'].result_type.quantize(xs)])[0]
    np.testing.assert_array_equal(got, hls.predict_mantissas([xs])['c'])
    hls.compile(sim='csim')
    assert_bit_identical(hls, [xs])
    moved_subnet(model.get_layer('c'))
    other = convert_from_keras_model(model, output_dir=str(tmp_path / 'other'), backend='Vitis')
    assert not np.array_equal(other.predict(xs), hls._csim.predict([xs])[0])


@pytest.mark.parametrize('case', ['1d_same_stride2', '2d_same_strides_bn', '2d_same_dilation2'])
def test_verilator_equals_hgq2(tmp_path, case):
    """The Verilog design (unrolled, II = 1) computes HGQ2's bits on 2,000 inputs (each build under 10 s here)."""
    from verilog_models import require_verilator
    require_verilator()
    model = build(case)
    xs = inputs(model, 2000, seed=9)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'v'), backend='Verilog')
    hls.compile(sim='rtl', progress=False)
    got = hls.predict(xs, sim='rtl')
    np.testing.assert_array_equal(got, hgq_output(model, xs))
    moved_subnet(model.get_layer('c'))  # negative control
    assert not np.array_equal(got, hgq_output(model, xs))


def stacked_model():
    """QConvT2D 'same' (4 filters) -> QConvT2D stride 2 with relu -> Flatten -> QDenseT(3) on 8 x 8 x 2 inputs, each
    with batch_norm (moving variance 1e-3) and 8-bit table outputs, so that the untrained tables do not round to 0."""
    keras.utils.set_random_seed(2)
    with QuantizerConfigScope(f0=3, i0=2):
        x = keras.Input((8, 8, 2), name='x')
        h = QConvT2D(4, 3, padding='same', batch_norm=True, name='c1')(x)
        h = QConvT2D(2, 3, strides=2, batch_norm=True, activation='relu', name='c2')(h)
        model = keras.Model(x, QDenseT(3, batch_norm=True, name='d')(keras.layers.Flatten()(h)))
    for name in ('c1', 'c2', 'd'):
        layer = model.get_layer(name)
        b = next(w for w in layer.toq.weights if w.path.endswith('/b'))
        b.assign(np.full(b.shape, 8.0, np.float32))
        layer.bn_module.moving_variance.assign(np.full(layer.bn_module.moving_variance.shape, 1e-3, np.float32))
    return model


@pytest.mark.slow
def test_stacked_convolutions_everywhere_equal_hgq2(tmp_path):
    """Two QConvT2D and a QDenseT: emulator == HGQ2 on 2,000 inputs, netlist and C simulation == emulator,
    Verilator == HGQ2; control: HGQ2 after one moved sub-network weight of the first convolution differs."""
    from verilog_models import require_verilator
    require_verilator()
    model = stacked_model()
    xs = inputs(model, 2000, seed=4)
    want = hgq_output(model, xs)
    hls = convert_from_keras_model(model, output_dir=str(tmp_path / 'v'), backend='Verilog')
    assert [n.op for n in hls.graph].count('TableDense') == 3 and want.std() > 0.05
    np.testing.assert_array_equal(hls.predict(xs), want)
    nl = lower_graph(hls.graph, hls.intervals)
    np.testing.assert_array_equal(nl.evaluate([hls.graph['x'].result_type.quantize(xs[:300])])[0],
                                  hls.predict_mantissas([xs[:300]])['d'])
    hls.compile(sim='rtl', progress=False)
    got = hls.predict(xs, sim='rtl')
    np.testing.assert_array_equal(got, want)
    csim = convert_from_keras_model(model, output_dir=str(tmp_path / 'hls'), backend='Vitis')
    csim.compile(sim='csim')
    assert_bit_identical(csim, [xs[:300]])
    moved_subnet(model.get_layer('c1'))  # negative control
    assert not np.array_equal(got, hgq_output(model, xs))


@pytest.mark.parametrize('attr, value, message', [
    ('groups', 2, r"layer 'c' \(QConvT2D\): groups=2 is not supported; only groups=1"),
    ('data_format', 'channels_first', r"layer 'c' \(QConvT2D\): data_format='channels_first' is not supported"),
    ('padding', 'causal', r"layer 'c' \(QConvT2D\): padding='causal' is not supported; use 'valid' or 'same'"),
])
def test_refuses_what_it_cannot_compute(attr, value, message):
    """Attributes HGQ2 0.2 itself cannot run (groups != 1, channels_first, causal padding) are refused by name if a
    layer carries them, rather than converted as something else."""
    model = build('2d_valid')
    setattr(model.get_layer('c'), attr, value)
    with pytest.raises(GraphError, match=message):
        convert_from_keras_model(model, backend='Vitis')


def test_refuses_a_qconvt_without_input_quantizer():
    with QuantizerConfigScope(f0=3, i0=2):
        x = keras.Input((6, 2))
        model = keras.Model(x, QConvT1D(2, 3, enable_iq=False, name='c')(x))
    with pytest.raises(GraphError, match=r"layer 'c' \(QConvT1D\): a QConvT1D needs its input quantizer"):
        convert_from_keras_model(model, backend='Vitis')
