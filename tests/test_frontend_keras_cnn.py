"""Keras 3 front end for convolutional networks: structure, float equivalence with Keras, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault('KERAS_BACKEND', 'torch')
keras = pytest.importorskip('keras')

import fpga4ml  # noqa: E402
from fpga4ml.emulator.reference import float_forward  # noqa: E402
from fpga4ml.frontends.keras import keras_to_graph  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402

L = keras.layers
RNG = np.random.default_rng(77)


def randomize(model, scale: float = 0.5) -> None:
    """Random weights everywhere (biases and BatchNorm statistics start at trivial values)."""
    for w in model.weights:
        values = RNG.normal(0, scale, tuple(w.shape)).astype(np.float32)
        if 'variance' in w.path:
            values = np.abs(values) + 0.5
        w.assign(values)


def assert_matches_keras(model, x) -> None:
    """float_forward(keras_to_graph(model)) equals Keras' own inference within float32 rounding."""
    graph = keras_to_graph(model)
    want = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))
    got = float_forward(graph, x)[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def single(layer, in_shape):
    x = keras.Input(in_shape, name='x')
    model = keras.Model(x, layer(x))
    randomize(model)
    return model


# every layer/attribute combination the front end supports: (layer factory, input shape)
CASES = {
    'conv2d_valid': (lambda: L.Conv2D(4, 3, name='l'), (7, 6, 3)),
    'conv2d_same_stride2': (lambda: L.Conv2D(3, (3, 2), strides=2, padding='same', name='l'), (7, 8, 2)),
    'conv2d_same_stride_2_1': (lambda: L.Conv2D(3, 4, strides=(2, 1), padding='same', name='l'), (9, 6, 2)),
    'conv2d_dilation_same': (lambda: L.Conv2D(3, 3, dilation_rate=(2, 1), padding='same', name='l'), (8, 7, 2)),
    'conv2d_nobias_relu': (lambda: L.Conv2D(5, 2, use_bias=False, activation='relu', name='l'), (5, 5, 3)),
    'conv2d_tanh': (lambda: L.Conv2D(2, 1, activation='tanh', name='l'), (4, 4, 3)),
    'conv1d_valid': (lambda: L.Conv1D(4, 3, name='l'), (10, 3)),
    'conv1d_same_stride_dil': (lambda: L.Conv1D(4, 3, strides=2, padding='same', name='l'), (11, 2)),
    'conv1d_dilation': (lambda: L.Conv1D(3, 3, dilation_rate=2, padding='same', activation='sigmoid', name='l'),
                        (12, 2)),
    'depthwise2d': (lambda: L.DepthwiseConv2D(3, padding='same', name='l'), (6, 6, 3)),
    'depthwise2d_mult2_stride': (lambda: L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, use_bias=False,
                                                           activation='relu', name='l'), (7, 7, 2)),
    'depthwise1d': (lambda: L.DepthwiseConv1D(3, depth_multiplier=2, name='l'), (9, 3)),
    'separable2d': (lambda: L.SeparableConv2D(4, 3, padding='same', activation='relu', name='l'), (6, 6, 3)),
    'separable2d_mult_stride': (lambda: L.SeparableConv2D(3, 2, strides=2, depth_multiplier=2, name='l'), (7, 6, 2)),
    'separable1d': (lambda: L.SeparableConv1D(3, 3, use_bias=False, name='l'), (9, 2)),
    'maxpool2d': (lambda: L.MaxPooling2D(name='l'), (6, 7, 3)),
    'maxpool2d_same': (lambda: L.MaxPooling2D(3, strides=2, padding='same', name='l'), (7, 6, 2)),
    'maxpool2d_s1_same': (lambda: L.MaxPooling2D(2, strides=1, padding='same', name='l'), (5, 5, 2)),
    'avgpool2d': (lambda: L.AveragePooling2D(2, name='l'), (6, 6, 2)),
    'avgpool2d_same': (lambda: L.AveragePooling2D(3, strides=2, padding='same', name='l'), (7, 5, 2)),
    'avgpool2d_3_s1_same': (lambda: L.AveragePooling2D(3, strides=1, padding='same', name='l'), (5, 6, 2)),
    'maxpool1d': (lambda: L.MaxPooling1D(3, name='l'), (10, 2)),
    'maxpool1d_same': (lambda: L.MaxPooling1D(2, strides=1, padding='same', name='l'), (7, 2)),
    'avgpool1d_same': (lambda: L.AveragePooling1D(3, strides=2, padding='same', name='l'), (9, 3)),  # symmetric pads
    'gmaxpool2d': (lambda: L.GlobalMaxPooling2D(name='l'), (4, 5, 3)),
    'gavgpool2d': (lambda: L.GlobalAveragePooling2D(name='l'), (4, 5, 3)),
    'gavgpool2d_keepdims': (lambda: L.GlobalAveragePooling2D(keepdims=True, name='l'), (4, 5, 3)),
    'gmaxpool1d': (lambda: L.GlobalMaxPooling1D(name='l'), (6, 3)),
    'gavgpool1d_keepdims': (lambda: L.GlobalAveragePooling1D(keepdims=True, name='l'), (6, 3)),
    'zeropad2d': (lambda: L.ZeroPadding2D(((1, 2), (0, 3)), name='l'), (3, 4, 2)),
    'zeropad2d_int': (lambda: L.ZeroPadding2D(1, name='l'), (3, 4, 2)),
    'zeropad1d': (lambda: L.ZeroPadding1D((2, 1), name='l'), (5, 2)),
    'crop2d': (lambda: L.Cropping2D(((1, 0), (2, 1)), name='l'), (5, 6, 2)),
    'crop1d': (lambda: L.Cropping1D((1, 2), name='l'), (7, 2)),
    'upsample2d': (lambda: L.UpSampling2D((2, 3), name='l'), (3, 2, 2)),
    'upsample1d': (lambda: L.UpSampling1D(3, name='l'), (4, 2)),
    'permute3d': (lambda: L.Permute((3, 1, 2), name='l'), (2, 3, 4)),
    'permute2d': (lambda: L.Permute((2, 1), name='l'), (5, 3)),
}


@pytest.mark.parametrize('case', list(CASES))
def test_layer_float_forward_matches_keras(case):
    factory, in_shape = CASES[case]
    model = single(factory(), in_shape)
    assert_matches_keras(model, RNG.normal(0, 1, (16,) + in_shape).astype(np.float32))


def test_avg_pool_same_with_asymmetric_padding_follows_tensorflow():
    """Padded cells are left out of the average (TensorFlow, hls4ml). Keras' torch backend instead
    replicates the border cells when 'same' padding is asymmetric, so it is not the reference here."""
    model = single(L.AveragePooling1D(3, strides=2, padding='same', name='l'), (8, 1))
    graph = keras_to_graph(model)
    assert graph['l'].attrs['padding'] == (0, 1)
    x = np.arange(8, dtype=np.float32).reshape(1, 8, 1)
    assert float_forward(graph, x)[0].ravel().tolist() == [1.0, 3.0, 5.0, 6.5]


def test_conv_structure_and_attributes():
    model = single(L.Conv2D(3, (3, 2), strides=(2, 1), dilation_rate=1, padding='same', use_bias=False,
                            activation='relu', name='c'), (7, 8, 2))
    graph = keras_to_graph(model)
    assert [(n.name, n.op) for n in graph] == [('x', 'Input'), ('c', 'Conv'), ('c_relu', 'Activation')]
    node = graph['c']
    assert node.attrs == {'kernel_size': (3, 2), 'strides': (2, 1), 'dilation': (1, 1), 'padding': (1, 1, 0, 1),
                          'groups': 1, 'use_bias': False}
    assert node.weights['kernel'].shape == (3, 2, 2, 3) and not node.weights['bias'].any()
    assert node.shape == (4, 8, 3) and node.source == 'Conv2D'


def test_depthwise_and_separable_structure():
    model = single(L.SeparableConv2D(4, 3, depth_multiplier=2, padding='same', name='s'), (5, 5, 3))
    graph = keras_to_graph(model)
    assert [(n.name, n.op, n.shape) for n in graph][1:] == [('s_depthwise', 'Conv', (5, 5, 6)),
                                                            ('s', 'Conv', (5, 5, 4))]
    dw, pw = graph['s_depthwise'], graph['s']
    assert dw.attrs['groups'] == 3 and dw.weights['kernel'].shape == (3, 3, 1, 6) and not dw.attrs['use_bias']
    assert pw.attrs['kernel_size'] == (1, 1) and pw.weights['kernel'].shape == (1, 1, 6, 4)


def test_global_pool_structure():
    graph = keras_to_graph(single(L.GlobalAveragePooling2D(name='g'), (4, 5, 3)))
    assert [(n.name, n.op, n.shape) for n in graph][1:] == [('g', 'Pool', (1, 1, 3)), ('g_flatten', 'Reshape', (3,))]
    assert graph['g'].attrs == {'mode': 'avg', 'pool_size': (4, 5), 'strides': (4, 5), 'padding': (0, 0, 0, 0),
                                'global': True}
    graph = keras_to_graph(single(L.GlobalMaxPooling1D(keepdims=True, name='g'), (6, 3)))
    assert [(n.name, n.op, n.shape) for n in graph][1:] == [('g', 'Pool', (1, 3))]


def test_svhn_like_cnn_matches_keras_and_folds_batchnorm():
    """Conv -> BN -> ReLU -> MaxPool twice, Flatten, Dense: BN folds into the Conv with 'auto' results."""
    x = keras.Input((12, 12, 3), name='x')
    h = x
    for i, f in enumerate((4, 6)):
        h = L.Conv2D(f, 3, use_bias=False, name=f'conv{i}')(h)
        h = L.BatchNormalization(name=f'bn{i}')(h)
        h = L.Activation('relu', name=f'relu{i}')(h)
        h = L.MaxPooling2D(name=f'pool{i}')(h)
    h = L.Flatten(name='flat')(h)
    model = keras.Model(x, L.Dense(5, activation='softmax', name='out')(h))
    randomize(model)
    xs = RNG.uniform(0, 1, (64, 12, 12, 3)).astype(np.float32)
    assert_matches_keras(model, xs)
    cfg = fpga4ml.config_from_keras_model(model, granularity='name')
    ours = fpga4ml.convert_from_keras_model(model, hls_config=cfg)
    assert 'bn0' not in ours.graph and ours.graph['conv0'].attrs['fused'] == ['bn0']
    folded = float_forward(ours.graph, xs)[0]
    want = np.asarray(keras.ops.convert_to_numpy(model(xs, training=False)))
    np.testing.assert_allclose(folded, want, rtol=1e-4, atol=1e-5)
    agree = np.mean(ours.predict(xs).argmax(1) == want.argmax(1))
    assert agree > 0.9, agree
    unfused = fpga4ml.convert_from_keras_model(model, hls_config={'Model': {'Precision': 'fixed<16,6>'}})
    assert 'bn0' in unfused.graph  # an explicit Conv result type keeps the BatchNormalization


ERRORS = {
    'causal': (lambda: L.Conv1D(2, 3, padding='causal', name='bad'), (8, 2), "padding='causal'"),
    'channels_first_conv': (lambda: L.Conv2D(2, 3, data_format='channels_first', name='bad'), (3, 8, 8),
                            "data_format='channels_first'"),
    'channels_first_pool': (lambda: L.MaxPooling2D(data_format='channels_first', name='bad'), (3, 8, 8),
                            "data_format='channels_first'"),
    'groups': (lambda: L.Conv2D(4, 3, groups=2, name='bad'), (8, 8, 4), 'groups=2'),
    'bilinear': (lambda: L.UpSampling2D(interpolation='bilinear', name='bad'), (4, 4, 2), "interpolation='bilinear'"),
    'conv3d': (lambda: L.Conv3D(2, 2, name='bad'), (4, 4, 4, 1), 'class Conv3D is not supported'),
}


@pytest.mark.parametrize('case', list(ERRORS))
def test_unsupported_attributes_raise_naming_layer_and_attribute(case):
    factory, in_shape, message = ERRORS[case]
    x = keras.Input(in_shape, name='x')
    model = keras.Model(x, factory()(x))
    with pytest.raises(GraphError, match="layer 'bad'") as err:
        keras_to_graph(model)
    assert message in str(err.value)
