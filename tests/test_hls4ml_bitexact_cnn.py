"""Convolutional networks: fpga4ml's predict() is bit-identical to hls4ml 1.3.0's C simulation.

Same method as tests/test_hls4ml_bitexact.py (whose helpers this module uses): each small Keras
model is converted by both libraries with the same explicit ap_fixed configuration (Vitis,
io_parallel, Latency), hls4ml's project is compiled with g++, and both predict() outputs must be
identical on thousands of vectors that round, wrap and saturate. Narrow SAT accumulators make
hls4ml's summation order observable (conv: bias, then kernel row, kernel column, input channel;
average pooling: window order, then division by the number of real cells, truncated toward zero).
Every case has a negative control. Each hls4ml compile of these models takes 5-15 s; they run two
at a time in the background while the other cases are prepared.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

keras = pytest.importorskip('keras')

import fpga4ml  # noqa: E402
from fpga4ml.semantics import numpy_interp  # noqa: E402
from test_hls4ml_bitexact import (  # noqa: E402
    _make_text_safe, _set_weights, assert_bit_exact, assert_negative_control, assert_same_types, bump_weight,
    compiled_cases, explicit_config, import_hls4ml, name_config, overflows,
)

L = keras.layers
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')


def _set_bn(layer, rng: np.random.Generator) -> None:
    n = layer.gamma.shape[0]
    layer.set_weights([a.astype(np.float32) for a in (
        1.0 + 0.5 * rng.normal(size=n), 0.5 * rng.normal(size=n), 0.5 * rng.normal(size=n),
        np.abs(rng.normal(size=n)) + 0.3)])


def conv2d_model(rng: np.random.Generator):
    """8x8x2 -> Conv2D(4, 3x3, same) -> BN -> AvgPool 3x3/1 same (an output) -> ReLU -> MaxPool 2x2
    -> Flatten -> Dense(5)."""
    x = keras.Input((8, 8, 2), name='x')
    h = L.Conv2D(4, 3, padding='same', name='conv')(x)
    h = L.BatchNormalization(name='bn')(h)
    a = L.AveragePooling2D(3, strides=1, padding='same', name='avgpool')(h)  # windows of 4, 6 and 9 cells
    h = L.ReLU(name='relu')(a)
    h = L.MaxPooling2D(2, name='maxpool')(h)
    h = L.Flatten(name='flat')(h)
    m = keras.Model(x, [L.Dense(5, name='out')(h), a])  # the signed averages are an output too
    _set_weights(m.get_layer('conv'), rng, 0.6, 0.5)
    _set_weights(m.get_layer('out'), rng, 0.3, 0.5)
    _set_bn(m.get_layer('bn'), rng)
    return m


CONV2D = explicit_config({
    'x': {'result': 'fixed<10,3,RND,SAT>'},
    'conv': {'weight': 'fixed<8,2,RND>', 'bias': 'fixed<8,3>', 'accum': 'fixed<11,4,TRN,SAT>',
             'result': 'fixed<10,4,RND_CONV,SAT>'},
    'bn': {'scale': 'fixed<8,3,RND,SAT>', 'bias': 'fixed<8,3,RND>', 'result': 'fixed<10,4,RND,SAT>'},
    # signed sums (division truncates toward zero), rounded at every step (accum LSB 1/32 > 1/64)
    'avgpool': {'accum': 'fixed<9,4,RND,SAT>', 'result': 'fixed<8,3,RND_ZERO,SAT>'},
    'relu': {'result': 'ufixed<8,3,RND,SAT>'},
    'maxpool': {'accum': 'ufixed<7,3>', 'result': 'ufixed<5,0,RND,SAT>'},
    'out': {'weight': 'fixed<8,2>', 'bias': 'fixed<8,2>', 'accum': 'fixed<16,6>', 'result': 'fixed<12,5,RND,SAT>'},
})


def conv1d_model(rng: np.random.Generator):
    """16x3 -> Conv1D(4, 3, stride 2, same, relu) -> MaxPool1D 2/1 -> AvgPool1D 2 -> Flatten -> Dense(3),
    plus a GlobalAveragePooling1D output of the ReLU."""
    x = keras.Input((16, 3), name='x')
    h = L.Conv1D(4, 3, strides=2, padding='same', activation='relu', name='conv')(x)
    g = L.GlobalAveragePooling1D(name='gap')(h)
    h = L.MaxPooling1D(2, strides=1, name='maxpool')(h)
    h = L.AveragePooling1D(2, name='avgpool')(h)
    h = L.Flatten(name='flat')(h)
    m = keras.Model(x, [L.Dense(3, name='out')(h), g])
    _set_weights(m.get_layer('conv'), rng, 0.5, 0.5)
    _set_weights(m.get_layer('out'), rng, 0.4, 0.5)
    return m


CONV1D = explicit_config({
    'x': {'result': 'fixed<9,3,RND,SAT>'},
    'conv': {'weight': 'fixed<7,1,RND_INF>', 'bias': 'fixed<8,3>', 'accum': 'fixed<12,4>',
             'result': 'fixed<10,4,RND,SAT>'},
    'conv_relu': {'result': 'ufixed<8,3,RND,SAT>'},
    'gap': {'accum': 'ufixed<10,5,RND,SAT>', 'result': 'ufixed<8,3,RND>'},
    'maxpool': {'accum': 'ufixed<8,3>', 'result': 'ufixed<8,3>'},
    'avgpool': {'accum': 'ufixed<8,3,RND,SAT>', 'result': 'ufixed<6,2,RND,SAT>'},
    'out': {'weight': 'fixed<8,2>', 'bias': 'fixed<8,2>', 'accum': 'fixed<14,5,RND,SAT>',
            'result': 'fixed<10,4,RND,SAT>'},
})


def fused_model(rng: np.random.Generator):
    """8x8x1 -> Conv2D(3, 3x3, stride 2, no bias) -> BN -> ReLU -> Flatten -> Dense(4) (ECON-T-like)."""
    x = keras.Input((8, 8, 1), name='x')
    h = L.Conv2D(3, 3, strides=2, use_bias=False, name='conv')(x)
    h = L.BatchNormalization(name='bn')(h)
    h = L.Activation('relu', name='relu')(h)
    h = L.Flatten(name='flat')(h)
    m = keras.Model(x, L.Dense(4, name='out')(h))
    _set_weights(m.get_layer('conv'), rng, 0.6, 0.0)
    _set_weights(m.get_layer('out'), rng, 0.4, 0.5)
    _set_bn(m.get_layer('bn'), rng)
    return m


def fused_config(kmodel) -> dict:
    """granularity='name' with the Conv result 'auto': both libraries fold BatchNormalization into the Conv."""
    return name_config(kmodel, {
        'x': {'result': 'fixed<10,4,RND,SAT>'},
        'conv': {'weight': 'fixed<10,3,RND>', 'bias': 'fixed<10,4>', 'accum': 'fixed<12,5,RND,SAT>'},
        'relu': {'result': 'ufixed<9,4,RND,SAT>'},
        'out': {'weight': 'fixed<8,2>', 'bias': 'fixed<8,2>', 'accum': 'fixed<16,6>', 'result': 'fixed<12,5,RND,SAT>'},
    })


def reversed_taps(matvec):
    """A matvec (fpga4ml.semantics.numpy_interp) that accumulates the input rows in reverse order (negative control)."""
    def reversed_matvec(plan):
        rows, dtype = matvec(dataclasses.replace(plan, w=plan.w[::-1].copy()))
        return (lambda x2, stats: rows(np.ascontiguousarray(x2[:, ::-1]), stats)), dtype
    return reversed_matvec


@pytest.fixture(scope='module')
def cases(tmp_path_factory):
    """The three models converted by both libraries; hls4ml compiles two at a time in the background."""
    import_hls4ml()
    rng = np.random.default_rng(31)
    conv2d, conv1d, fused = conv2d_model(rng), conv1d_model(rng), fused_model(rng)
    specs = {}
    for name, km, cfg, seed in (('conv2d', conv2d, CONV2D, 1), ('conv1d', conv1d, CONV1D, 2),
                                ('conv2d_fused', fused, fused_config(fused), 3)):
        specs[name] = (km, cfg, _make_text_safe(km, [cfg], seed)[0])
    with compiled_cases(specs, dict.fromkeys(specs, 3000), rng, tmp_path_factory) as out:
        yield out


def test_conv2d_bn_avgpool_relu_maxpool_dense(cases, monkeypatch):
    """Conv2D 'same' with a SAT accumulator, unfused BN, 3x3 'same' average pooling of signed values, max pooling."""
    case = cases['conv2d']
    assert [n.op for n in case.ours.graph] == ['Input', 'Conv', 'Scale', 'Pool', 'Activation', 'Pool',
                                               'Reshape', 'Dense']
    assert_same_types(case)
    assert_bit_exact(case)
    ovf = overflows(case)
    for layer in ('x', 'conv', 'bn', 'avgpool', 'maxpool'):
        assert ovf[layer] > 0, (layer, ovf)
    assert_negative_control(case, bump_weight('conv', index=(1, 1, 0, 2)))
    # the SAT accumulator makes hls4ml's tap order observable: summing the taps in reverse disagrees
    monkeypatch.setattr(numpy_interp, 'matvec', reversed_taps(numpy_interp.matvec))
    assert_negative_control(case, lambda model: None)
    monkeypatch.undo()
    # hls4ml divides by truncating toward zero: a floor division must disagree
    monkeypatch.setattr(numpy_interp, 'trunc_div', lambda m, n: m // n)
    assert_negative_control(case)


def test_conv1d_relu_pools_global_average(cases):
    """Conv1D stride 2 'same', ReLU, MaxPool1D, AvgPool1D and GlobalAveragePooling1D with narrow types."""
    case = cases['conv1d']
    assert_same_types(case)
    assert_bit_exact(case)
    ovf = overflows(case)
    for layer in ('x', 'conv', 'conv_relu', 'gap', 'avgpool', 'out'):
        assert ovf[layer] > 0, (layer, ovf)
    assert_negative_control(case, bump_weight('conv', index=(2, 1, 3)))


def test_conv2d_batchnorm_fused(cases):
    """granularity='name' (Conv result 'auto'): both fold BN into the Conv (float32 weights, as hls4ml)."""
    case = cases['conv2d_fused']
    assert 'bn' not in case.ours.graph
    assert 'bn' not in [layer.name for layer in case.theirs.get_layers()]
    assert_same_types(case, skip=(('conv', 'result'), ('conv', 'bias')))
    assert_bit_exact(case)
    assert overflows(case)['conv'] > 0
    assert_negative_control(case, bump_weight('conv', index=(0, 2, 0, 1)))
