"""The HLS C++ of Conv, Pool, Pad, Crop, Resize and Transpose is bit-identical to the emulator.

As in test_hls_csim.py: one model per op family groups many layers as separate graph outputs
(so one g++ build checks a whole family), the g++ C simulation runs on random inputs including
rounding ties and values far outside the input types, and `predict(x, sim='csim')` must equal
`predict(x)` element for element. A small CNN runs under both io types, and a negative control
changes one Conv weight mantissa.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from fpga4ml.convert import convert_graph
from fpga4ml.geometry import output_size
from fpga4ml.ir import Graph, GraphError

from test_hls_csim import assert_bit_identical, compiled, dense, model_inputs, node

pytestmark = pytest.mark.skipif(shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None,
                                reason='needs g++ and the ap_types headers shipped with hls4ml')

N_VECTORS = 3_000
MODEL = {'Precision': 'fixed<16,6>', 'ReuseFactor': 1, 'Strategy': 'Latency'}


def spatial(in_shape, size, strides, dilation, pads) -> tuple[int, ...]:
    return tuple(output_size(n, k, s, d, pads[2 * i], pads[2 * i + 1])
                 for i, (n, k, s, d) in enumerate(zip(in_shape[:-1], size, strides, dilation)))


# --------------------------------------------------------------------------- models

CONVS = {
    # name: (input, kernel_size, strides, dilation, padding, groups, output channels, precisions)
    'c_valid_sat': ('x', (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), 1, 4,
                    {'weight': 'fixed<8,2,RND>', 'bias': 'fixed<10,4>', 'accum': 'fixed<11,4,RND_CONV,SAT>',
                     'result': 'fixed<8,3,RND,SAT_SYM>'}),
    'c_stride_pad_wrap': ('x', (3, 2), (2, 3), (1, 1), (1, 2, 0, 1), 1, 3,
                          {'weight': 'fixed<8,2>', 'bias': 'fixed<8,3>', 'accum': 'fixed<12,5>', 'result': 'fixed<9,4>'}),
    'c_dilation_auto': ('x', (2, 3), (1, 2), (2, 1), (1, 1, 2, 2), 1, 3,
                        {'weight': 'fixed<8,2>', 'bias': 'fixed<8,3>', 'accum': 'auto', 'result': 'auto'}),
    'c_depthwise_x2': ('x', (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 3, 6,
                       {'weight': 'fixed<8,2,RND>', 'accum': 'fixed<10,4,RND,SAT>', 'result': 'fixed<8,3,RND,SAT>'}),
    'c_groups3': ('x', (2, 2), (1, 1), (1, 1), (0, 1, 0, 1), 3, 3,
                  {'weight': 'fixed<6,1>', 'accum': 'fixed<9,4>', 'result': 'fixed<8,4,RND,WRAP>'}),
    'c1_stride_dil_pad': ('w', (3,), (2,), (2,), (2, 1), 1, 4,
                          {'weight': 'fixed<8,2,RND>', 'accum': 'fixed<12,4,RND,SAT>', 'result': 'fixed<9,4,RND_CONV,SAT>'}),
    'c1_depthwise': ('w', (4,), (1,), (1,), (1, 2), 4, 4, {}),
}


def conv_zoo() -> tuple[Graph, dict]:
    """2D and 1D convolutions: stride, dilation, asymmetric padding, depthwise, groups; SAT/WRAP/exact accumulators."""
    rng = np.random.default_rng(20)
    g = Graph()
    inputs = {'x': (6, 7, 3), 'w': (11, 4)}
    names = {'x': {'Precision': {'result': 'fixed<10,4,RND,SAT>'}}, 'w': {'Precision': {'result': 'fixed<9,3>'}}}
    for name, shape in inputs.items():
        node(g, name, 'Input', [], shape)
    for name, (src, size, strides, dil, pads, groups, c_out, prec) in CONVS.items():
        in_shape = inputs[src]
        kernel = rng.normal(0, 0.7, size + (in_shape[-1] // groups, c_out)).astype(np.float32)
        attrs = {'kernel_size': size, 'strides': strides, 'dilation': dil, 'padding': pads, 'groups': groups}
        node(g, name, 'Conv', [src], spatial(in_shape, size, strides, dil, pads) + (c_out,), attrs=attrs,
             weights={'kernel': kernel, 'bias': rng.normal(0, 1, c_out).astype(np.float32)})
        names[name] = {'Precision': prec}
    g.inputs, g.outputs = list(inputs), list(CONVS)
    return g, {'Model': MODEL, 'LayerName': names}


POOLS = {
    # name: (input, mode, pool_size, strides, padding, precisions)
    'max_2x2': ('x', 'max', (2, 2), (2, 2), (0, 0, 0, 0), {}),
    'max_3x3_pad_narrow': ('x', 'max', (3, 3), (2, 2), (1, 1, 1, 1), {'accum': 'fixed<7,2,RND,SAT>',
                                                                      'result': 'fixed<6,2,RND,SAT>'}),
    'max_1d': ('w', 'max', (3,), (2,), (1, 1), {'result': 'fixed<7,2>'}),
    'avg_2x2': ('x', 'avg', (2, 2), (2, 2), (0, 0, 0, 0), {'accum': 'auto', 'result': 'auto'}),
    'avg_3x3_same_sat': ('x', 'avg', (3, 3), (2, 1), (1, 1, 0, 2), {'accum': 'fixed<9,4,RND,SAT>',
                                                                    'result': 'fixed<8,3,RND_CONV,SAT>'}),
    'avg_3x3_coarse': ('x', 'avg', (3, 3), (1, 1), (1, 1, 1, 1), {'accum': 'fixed<8,4,RND,SAT>',
                                                                  'result': 'fixed<7,2,RND,SAT>'}),
    'avg_wrap': ('x', 'avg', (2, 3), (1, 2), (0, 1, 1, 1), {'accum': 'fixed<12,4>', 'result': 'fixed<7,2>'}),
    'avg_unsigned': ('u', 'avg', (3, 3), (2, 2), (1, 1, 1, 1), {'accum': 'ufixed<12,5>',
                                                                'result': 'ufixed<6,3,RND,SAT>'}),
    'avg_1d_pad': ('w', 'avg', (3,), (3,), (0, 2), {'accum': 'fixed<10,4,RND,SAT>', 'result': 'fixed<8,3,RND,SAT>'}),
    'avg_global': ('x', 'avg', (6, 7), (6, 7), (0, 0, 0, 0), {'accum': 'auto', 'result': 'fixed<10,4,RND,SAT>'}),
}


def pool_zoo() -> tuple[Graph, dict]:
    """Max and average pools: padding (per-window counts), narrow SAT/WRAP accumulators, coarser
    accumulators (inputs round into them), unsigned, 1D and global."""
    g = Graph()
    inputs = {'x': (6, 7, 2), 'u': (5, 5, 2), 'w': (10, 3)}
    names = {'x': {'Precision': {'result': 'fixed<10,4,RND,SAT>'}}, 'u': {'Precision': {'result': 'ufixed<8,3,RND,SAT>'}},
             'w': {'Precision': {'result': 'fixed<9,3>'}}}
    for name, shape in inputs.items():
        node(g, name, 'Input', [], shape)
    for name, (src, mode, size, strides, pads, prec) in POOLS.items():
        in_shape = inputs[src]
        attrs = {'mode': mode, 'pool_size': size, 'strides': strides, 'padding': pads}
        node(g, name, 'Pool', [src], spatial(in_shape, size, strides, (1, 1), pads) + in_shape[-1:], attrs=attrs)
        names[name] = {'Precision': prec}
    g.inputs, g.outputs = list(inputs), list(POOLS)
    return g, {'Model': MODEL, 'LayerName': names}


def index_zoo() -> tuple[Graph, dict]:
    """Pad, Crop, Resize and Transpose, 2D and 1D."""
    g = Graph()
    node(g, 'x', 'Input', [], (4, 5, 3))
    node(g, 'w', 'Input', [], (6, 2))
    node(g, 'pad', 'Pad', ['x'], (7, 7, 3), attrs={'padding': (1, 2, 0, 2)})
    node(g, 'pad1', 'Pad', ['w'], (9, 2), attrs={'padding': (2, 1)})
    node(g, 'crop', 'Crop', ['x'], (2, 2, 3), attrs={'cropping': (1, 1, 2, 1)})
    node(g, 'crop1', 'Crop', ['w'], (3, 2), attrs={'cropping': (0, 3)})
    node(g, 'resize', 'Resize', ['x'], (8, 15, 3), attrs={'scale': (2, 3), 'method': 'nearest'})
    node(g, 'resize1', 'Resize', ['w'], (12, 2), attrs={'scale': (2,), 'method': 'nearest'})
    node(g, 'perm', 'Transpose', ['x'], (5, 4, 3), attrs={'perm': (1, 0, 2)})
    node(g, 'perm2', 'Transpose', ['x'], (3, 4, 5), attrs={'perm': (2, 0, 1)})
    node(g, 'perm1', 'Transpose', ['w'], (2, 6), attrs={'perm': (1, 0)})
    names = {'x': {'Precision': {'result': 'fixed<10,4,RND,SAT>'}}, 'w': {'Precision': {'result': 'ufixed<7,2>'}}}
    g.inputs, g.outputs = ['x', 'w'], [n.name for n in g if n.op != 'Input']
    return g, {'Model': MODEL, 'LayerName': names}


def small_cnn() -> tuple[Graph, dict]:
    """8x8x2 -> Conv2D 4 3x3 -> ReLU -> MaxPool 2x2 -> Flatten -> Dense 10."""
    rng = np.random.default_rng(21)
    g = Graph()
    node(g, 'x', 'Input', [], (8, 8, 2))
    node(g, 'conv', 'Conv', ['x'], (6, 6, 4),
         attrs={'kernel_size': (3, 3), 'strides': (1, 1), 'dilation': (1, 1), 'padding': (0, 0, 0, 0), 'groups': 1},
         weights={'kernel': rng.normal(0, 0.5, (3, 3, 2, 4)).astype(np.float32),
                  'bias': rng.normal(0, 0.5, 4).astype(np.float32)})
    node(g, 'relu', 'Activation', ['conv'], (6, 6, 4), attrs={'function': 'relu'})
    node(g, 'pool', 'Pool', ['relu'], (3, 3, 4),
         attrs={'mode': 'max', 'pool_size': (2, 2), 'strides': (2, 2), 'padding': (0, 0, 0, 0)})
    node(g, 'flat', 'Reshape', ['pool'], (36,), attrs={'shape': (36,)})
    node(g, 'fc', 'Dense', ['flat'], (10,), weights=dense(rng, 36, 10, 0.3))
    names = {'x': {'Precision': {'result': 'fixed<10,3,RND,SAT>'}},
             'conv': {'Precision': {'weight': 'fixed<8,2,RND,SAT>', 'accum': 'fixed<12,4,RND,SAT>',
                                    'result': 'fixed<9,4,RND_CONV,SAT>'}},
             'relu': {'Precision': {'result': 'ufixed<8,3,RND,SAT>'}},
             'fc': {'Precision': {'accum': 'fixed<14,6,RND,SAT>', 'result': 'fixed<12,5,RND,SAT>'}}}
    g.inputs, g.outputs = ['x'], ['fc']
    return g, {'Model': MODEL, 'LayerName': names}


ZOOS = {'conv': conv_zoo, 'pool': pool_zoo, 'index_maps': index_zoo}


@pytest.fixture(scope='module')
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('hls_cnn')


# --------------------------------------------------------------------------- bit-exactness

@pytest.mark.parametrize('family', list(ZOOS))
def test_cnn_op_families_bit_identical(family, root):
    graph, config = ZOOS[family]()
    model = compiled(graph, config, root, family)
    xs = model_inputs(model, N_VECTORS)
    assert_bit_identical(model, xs)
    if family != 'index_maps':  # the narrow types really round, wrap and saturate
        _, traced = model.trace(xs)
        assert sum(s.overflow for s in traced.stats.values()) > 0


@pytest.mark.parametrize('io_type,reuse', [('io_parallel', 1), ('io_stream', 3)])
def test_small_cnn_bit_identical(io_type, reuse, root):
    graph, config = small_cnn()
    config['LayerName']['conv']['ReuseFactor'] = reuse
    model = compiled(graph, config, root, 'cnn', io_type)
    xs = model_inputs(model, N_VECTORS)
    assert_bit_identical(model, xs)
    _, traced = model.trace(xs)
    assert traced.stats['conv'].overflow > 0
    cpp = (Path(model.output_dir) / 'firmware' / 'cnn.cpp').read_text()
    if io_type == 'io_parallel':
        assert 'conv_im2col[p * 18 + k]' in cpp  # geometry comes from the constant index table
    else:
        assert 'x_t line[2][8][2];' in cpp  # a line buffer of two rows
    assert f'#pragma HLS PIPELINE II={reuse}' in cpp


def test_negative_control_changed_conv_weight(root):
    """One Conv weight mantissa changed by one LSB before writing: the comparison must fail."""
    graph, config = small_cnn()
    model = convert_graph(graph, config, output_dir=str(root / 'negative'), project_name='negative')
    model.compile()  # the emulator keeps the original weights
    kernel = model.graph['conv'].qweights['kernel']
    kernel[1, 2, 0, 3] += 1
    model.compile(sim='csim')
    xs = model_inputs(model, N_VECTORS)
    with pytest.raises(AssertionError, match=r"output 'fc' differs on \d+ of 3000 samples"):
        assert_bit_identical(model, xs)


# --------------------------------------------------------------------------- validation

def test_conv_reuse_factor_and_strategy_are_validated(tmp_path):
    """An invalid per-layer ReuseFactor of a Conv raises at convert time (fpga4ml/folding.py), listing the valid values."""
    graph, config = small_cnn()
    config['LayerName']['conv']['ReuseFactor'] = 5  # 18 im2col columns x 4 channels: divisors of 72
    with pytest.raises(ValueError, match=r"layer 'conv' \(Conv, im2col 18 -> 4, Strategy Latency\): "
                                         r'ReuseFactor 5 is not valid; valid values are '
                                         r'\[1, 2, 3, 4, 6, 8, 9, 12, 18, 24, 36, 72\]'):
        convert_graph(graph, config, output_dir=str(tmp_path / 'rf'))
    graph, config = small_cnn()
    config['LayerName']['conv'].update(Strategy='Resource', ReuseFactor=4)  # must also divide 18 or be a multiple
    with pytest.raises(ValueError, match=r"layer 'conv' \(Conv, im2col 18 -> 4, Strategy Resource\): "
                                         r'ReuseFactor 4 is not valid; valid values are \[1, 2, 3, 6, 9, 18, 36, 72\]'):
        convert_graph(graph, config, output_dir=str(tmp_path / 'res'))
    graph, config = small_cnn()
    config['LayerName']['conv'].update(Strategy='Resource', ReuseFactor=6)  # control: a valid value converts
    convert_graph(graph, config, output_dir=str(tmp_path / 'ok')).write()


def test_index_map_with_another_result_type_is_rejected(tmp_path):
    graph, config = index_zoo()
    model = convert_graph(graph, config, output_dir=str(tmp_path / 'p'))
    model.graph['crop'].types['result'] = model.graph['pad'].types['result'].__class__(8, 3)
    with pytest.raises(GraphError, match=r"layer 'crop': Crop keeps its input type"):
        model.write()


@pytest.mark.parametrize('io_type', ['io_parallel', 'io_stream'])
def test_keras_cnn_end_to_end_bit_identical(io_type, root):
    """A Keras CNN through the front end (BatchNorm folded into the Conv, SeparableConv2D as depthwise
    + pointwise, ZeroPadding, Cropping, UpSampling, Permute, global average pooling): C simulation
    == emulator; in io_stream line buffers and whole-array layers alternate."""
    keras = pytest.importorskip('keras')
    import fpga4ml

    layers = keras.layers
    x = keras.Input((8, 8, 2), name='x')
    h = layers.ZeroPadding2D(((1, 0), (0, 1)), name='zpad')(x)
    h = layers.Conv2D(4, 3, strides=2, padding='same', use_bias=False, name='conv')(h)
    h = layers.BatchNormalization(name='bn')(h)
    h = layers.Activation('relu', name='relu')(h)
    h = layers.UpSampling2D(2, name='up')(h)
    h = layers.Cropping2D(((1, 1), (0, 2)), name='crop')(h)
    h = layers.SeparableConv2D(3, 3, padding='same', name='sep')(h)
    h = layers.Permute((2, 1, 3), name='perm')(h)
    h = layers.AveragePooling2D(2, padding='same', name='avg')(h)
    h = layers.GlobalMaxPooling2D(name='gmax')(h)
    model = keras.Model(x, layers.Dense(5, name='out')(h))
    rng = np.random.default_rng(22)
    for w in model.weights:
        values = rng.normal(0, 0.5, tuple(w.shape)).astype(np.float32)
        w.assign(np.abs(values) + 0.5 if 'variance' in w.path else values)
    config = fpga4ml.config_from_keras_model(model, granularity='name')
    config['Model'] = {'Precision': 'fixed<12,4,RND,SAT>', 'ReuseFactor': 1, 'Strategy': 'Latency'}
    hls = fpga4ml.convert_from_keras_model(model, hls_config=config, output_dir=str(root / f'keras_cnn_{io_type}'),
                                           project_name='keras_cnn', io_type=io_type)
    assert {'Conv', 'Pool', 'Pad', 'Crop', 'Resize', 'Transpose'} <= {n.op for n in hls.graph}
    hls.compile(sim='csim')
    assert_bit_identical(hls, model_inputs(hls, 2_000))
