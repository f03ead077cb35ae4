"""Line-buffered io_stream convolutions and pooling, ParallelizationFactor and Resource Conv in the HLS back end.

One graph holds every Conv and Pool geometry of interest as separate outputs (so one g++ build
checks them all); it is built four ways: io_stream (line buffers, some Latency layers with
ReuseFactor > 1), io_stream with Strategy Resource, io_parallel with ParallelizationFactor > 1,
and io_parallel with ParallelizationFactor > 1 and Strategy Resource. Each must equal the
emulator bit for bit on random inputs (including rounding ties and values far outside the input
types). A small SVHN-like CNN runs in io_stream, its generated code is checked for real line
buffers, and a changed weight must make the comparison fail.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fpga4ml.backends.hls.emit import valid_reuse_factors
from fpga4ml.config import ConfigError
from fpga4ml.convert import convert_graph
from fpga4ml.geometry import same_padding
from fpga4ml.ir import Graph

from test_hls_csim import assert_bit_identical, compiled, dense, model_inputs, node
from test_hls_csim_cnn import spatial

pytestmark = pytest.mark.skipif(shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None,
                                reason='needs g++ and the ap_types headers shipped with hls4ml')

N_VECTORS = 1_500
MODEL = {'Precision': 'fixed<16,6>', 'ReuseFactor': 1, 'Strategy': 'Latency'}
INPUTS = {'x': (6, 7, 3), 'w': (11, 4)}


def same(in_shape, size, strides, dilation) -> tuple[int, ...]:
    """Keras 'same' padding as (top, bottom, left, right) or (left, right)."""
    pads = []
    for n, k, s, d in zip(in_shape[:-1], size, strides, dilation):
        pads += same_padding(n, k, s, d)
    return tuple(pads)


SAT = {'weight': 'fixed<8,2,RND>', 'bias': 'fixed<10,4>', 'accum': 'fixed<11,4,RND_CONV,SAT>',
       'result': 'fixed<8,3,RND,SAT_SYM>'}
WRAP = {'weight': 'fixed<8,2>', 'bias': 'fixed<8,3>', 'accum': 'fixed<12,5>', 'result': 'fixed<9,4>'}
CONVS = {
    # name: (input, kernel_size, strides, dilation, padding ('same' or explicit), groups, output channels, precisions)
    'conv_s1': ('x', (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), 1, 4, SAT),
    'conv_s2': ('x', (3, 3), (2, 2), (1, 1), (0, 0, 0, 0), 1, 3, WRAP),
    'conv_same': ('x', (3, 3), (1, 1), (1, 1), 'same', 1, 4, SAT),
    'conv_same_s2': ('x', (3, 3), (2, 2), (1, 1), 'same', 1, 3, WRAP),
    'conv_dil2': ('x', (3, 3), (1, 1), (2, 2), (0, 0, 0, 0), 1, 2, SAT),
    'conv_dil2_same': ('x', (3, 2), (1, 1), (2, 2), 'same', 1, 3, {**WRAP, 'accum': 'auto', 'result': 'auto'}),
    'conv_odd': ('x', (2, 3), (2, 1), (1, 2), (1, 2, 2, 1), 1, 3, SAT),  # trailing padding wider than a stride
    'conv_depthwise': ('x', (3, 3), (1, 1), (1, 1), 'same', 3, 6,
                       {'weight': 'fixed<8,2,RND>', 'accum': 'fixed<10,4,RND,SAT>', 'result': 'fixed<8,3,RND,SAT>'}),
    'conv_groups': ('x', (2, 2), (1, 1), (1, 1), (0, 1, 0, 1), 3, 3,
                    {'weight': 'fixed<6,1>', 'accum': 'fixed<9,4>', 'result': 'fixed<8,4,RND,WRAP>'}),
    'conv1d': ('w', (3,), (2,), (2,), (2, 1), 1, 4,
               {'weight': 'fixed<8,2,RND>', 'accum': 'fixed<12,4,RND,SAT>', 'result': 'fixed<9,4,RND_CONV,SAT>'}),
    'conv1d_same_dw': ('w', (5,), (1,), (1,), 'same', 4, 4, SAT),
}
POOLS = {
    # name: (input, mode, pool_size, strides, padding, precisions)
    'max_2x2': ('x', 'max', (2, 2), (2, 2), (0, 0, 0, 0), {}),
    'max_3x3_pad': ('x', 'max', (3, 3), (2, 2), (1, 1, 1, 1), {'accum': 'fixed<7,2,RND,SAT>',
                                                               'result': 'fixed<6,2,RND,SAT>'}),
    'max_same_s1': ('x', 'max', (2, 3), (1, 1), 'same', {'result': 'fixed<8,3,RND,SAT>'}),
    'avg_2x2': ('x', 'avg', (2, 2), (2, 2), (0, 0, 0, 0), {'accum': 'auto', 'result': 'auto'}),
    'avg_3x3_pad_sat': ('x', 'avg', (3, 3), (2, 1), (1, 1, 0, 2), {'accum': 'fixed<9,4,RND,SAT>',
                                                                   'result': 'fixed<8,3,RND_CONV,SAT>'}),
    'avg_same_wrap': ('x', 'avg', (2, 3), (1, 2), 'same', {'accum': 'fixed<12,4>', 'result': 'fixed<7,2>'}),
    'max_1d_pad': ('w', 'max', (3,), (2,), (1, 1), {'result': 'fixed<7,2>'}),
    'avg_1d_pad': ('w', 'avg', (3,), (3,), (0, 2), {'accum': 'fixed<10,4,RND,SAT>', 'result': 'fixed<8,3,RND,SAT>'}),
    'avg_global': ('x', 'avg', (6, 7), (6, 7), (0, 0, 0, 0), {'accum': 'auto', 'result': 'fixed<10,4,RND,SAT>'}),
}


def window_zoo() -> tuple[Graph, dict]:
    """Every Conv and Pool above, each a graph output; the config sets precisions only."""
    rng = np.random.default_rng(30)
    g = Graph()
    names = {'x': {'Precision': {'result': 'fixed<10,4,RND,SAT>'}}, 'w': {'Precision': {'result': 'fixed<9,3>'}}}
    for name, shape in INPUTS.items():
        node(g, name, 'Input', [], shape)
    for name, (src, size, strides, dil, pads, groups, c_out, prec) in CONVS.items():
        in_shape = INPUTS[src]
        pads = same(in_shape, size, strides, dil) if pads == 'same' else pads
        kernel = rng.normal(0, 0.7, size + (in_shape[-1] // groups, c_out)).astype(np.float32)
        attrs = {'kernel_size': size, 'strides': strides, 'dilation': dil, 'padding': pads, 'groups': groups}
        node(g, name, 'Conv', [src], spatial(in_shape, size, strides, dil, pads) + (c_out,), attrs=attrs,
             weights={'kernel': kernel, 'bias': rng.normal(0, 1, c_out).astype(np.float32)})
        names[name] = {'Precision': prec}
    for name, (src, mode, size, strides, pads, prec) in POOLS.items():
        in_shape = INPUTS[src]
        pads = same(in_shape, size, strides, (1,) * len(size)) if pads == 'same' else pads
        attrs = {'mode': mode, 'pool_size': size, 'strides': strides, 'padding': pads}
        node(g, name, 'Pool', [src], spatial(in_shape, size, strides, (1,) * len(size), pads) + in_shape[-1:],
             attrs=attrs)
        names[name] = {'Precision': prec}
    g.inputs, g.outputs = list(INPUTS), list(CONVS) + list(POOLS)
    return g, {'Model': MODEL, 'LayerName': names}


def conv_sizes(graph: Graph, name: str) -> tuple[int, int, int]:
    """(im2col columns, output channels, output pixels) of a Conv node."""
    n = graph[name]
    kernel = n.weights['kernel']
    groups = n.attrs['groups']
    n_col = int(np.prod(kernel.shape[:-2])) * kernel.shape[-2] * groups
    return n_col, kernel.shape[-1], int(np.prod(n.shape[:-1]))


def middle_divisor(n: int) -> int:
    """A divisor of n that is > 1 and, where one exists, < n (so steps and parallel pixels both exceed 1)."""
    inner = [d for d in range(2, n) if n % d == 0]
    return inner[len(inner) // 2] if inner else n


VARIANTS = {
    # name: (io_type, Strategy, ParallelizationFactor > 1)
    'stream_latency': ('io_stream', 'Latency', False),
    'stream_resource': ('io_stream', 'Resource', False),
    'parallel_pf': ('io_parallel', 'Latency', True),
    'parallel_pf_resource': ('io_parallel', 'Resource', True),
}


def variant_config(graph: Graph, config: dict, strategy: str, pf: bool) -> dict:
    """Per-Conv ReuseFactor (> 1 for Resource and every other Latency layer) and ParallelizationFactor."""
    for k, name in enumerate(CONVS):
        n_col, n_out, pixels = conv_sizes(graph, name)
        entry = config['LayerName'][name]
        valid = valid_reuse_factors(n_col, n_out, strategy)
        if strategy == 'Resource':  # alternate the two Resource schedules: RF | n_col and n_col | RF
            folds = [d for d in valid if (d > 1 and n_col % d == 0) if k % 2 == 0] or \
                [d for d in valid if d > n_col and d % n_col == 0]
            entry.update(Strategy='Resource', ReuseFactor=folds[0])
        elif k % 2:
            entry['ReuseFactor'] = valid[1]
        if pf:
            entry['ParallelizationFactor'] = middle_divisor(pixels)
    return config


@pytest.fixture(scope='module')
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('hls_cnn_stream')


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_window_ops_bit_identical(variant, root):
    io_type, strategy, pf = VARIANTS[variant]
    graph, config = window_zoo()
    model = compiled(graph, variant_config(graph, config, strategy, pf), root, variant, io_type)
    xs = model_inputs(model, N_VECTORS, seed=3)
    assert_bit_identical(model, xs)
    _, traced = model.trace(xs)  # the narrow accumulators really saturate and wrap
    assert traced.stats['conv_s1'].overflow > 0 and traced.stats['conv_s2'].overflow > 0
    cpp = (Path(model.output_dir) / 'firmware' / f'{variant}.cpp').read_text()
    if strategy == 'Resource':
        assert '#pragma HLS BIND_STORAGE variable=conv_s1_kernel type=rom_2p impl=bram' in cpp
    if pf:
        n_col, _, pixels = conv_sizes(model.graph, 'conv_s1')
        f = middle_divisor(pixels)
        assert f'for (int q = 0; q < {pixels // f}; q++) {{' in cpp and f'int p = q * {f} + u;' in cpp
        assert '#pragma HLS DATAFLOW' in cpp  # the layers are folded: a dataflow pipeline
    if io_type == 'io_stream':
        assert 'x.read()' in function_text(cpp, 'conv_same')


# --------------------------------------------------------------------------- a small CNN in io_stream

def svhn_like_cnn() -> tuple[Graph, dict]:
    """12x12x3 -> [Conv 3x3 "same" 6 -> BN -> ReLU -> MaxPool 2] -> [Conv 3x3 8 -> BN -> ReLU -> MaxPool 2]
    -> Flatten -> Dense 10 (the SVHN CNN of BENCHMARKS.md, smaller)."""
    rng = np.random.default_rng(31)
    g = Graph()
    node(g, 'image', 'Input', [], (12, 12, 3))
    src, shape, names = 'image', (12, 12, 3), {'image': {'Precision': {'result': 'ufixed<8,0,RND,SAT>'}}}
    for i, (filters, pads) in enumerate(((6, (1, 1, 1, 1)), (8, (0, 0, 0, 0)))):
        h, w = shape[0] + pads[0] + pads[1] - 2, shape[1] + pads[2] + pads[3] - 2
        node(g, f'conv{i}', 'Conv', [src], (h, w, filters),
             attrs={'kernel_size': (3, 3), 'strides': (1, 1), 'dilation': (1, 1), 'padding': pads, 'groups': 1},
             weights={'kernel': rng.normal(0, 0.4, (3, 3, shape[-1], filters)).astype(np.float32),
                      'bias': np.zeros(filters, np.float32)})
        node(g, f'bn{i}', 'Scale', [f'conv{i}'], (h, w, filters),
             weights={'scale': rng.uniform(0.6, 1.4, filters).astype(np.float32),
                      'bias': rng.normal(0, 0.2, filters).astype(np.float32)})
        node(g, f'relu{i}', 'Activation', [f'bn{i}'], (h, w, filters), attrs={'function': 'relu'})
        node(g, f'pool{i}', 'Pool', [f'relu{i}'], (h // 2, w // 2, filters),
             attrs={'mode': 'max', 'pool_size': (2, 2), 'strides': (2, 2), 'padding': (0, 0, 0, 0)})
        names[f'conv{i}'] = {'Precision': {'weight': 'fixed<6,1,RND,SAT>', 'accum': 'fixed<14,5,RND,SAT>',
                                           'result': 'fixed<12,5,RND,SAT>'}}
        names[f'bn{i}'] = {'Precision': {'result': 'fixed<12,5,RND,SAT>'}}
        names[f'relu{i}'] = {'Precision': {'result': 'ufixed<8,3,RND,SAT>'}}
        src, shape = f'pool{i}', (h // 2, w // 2, filters)
    size = int(np.prod(shape))
    node(g, 'flatten', 'Reshape', [src], (size,), attrs={'shape': (size,)})
    node(g, 'dense', 'Dense', ['flatten'], (10,), weights=dense(rng, size, 10, 0.3))
    names['dense'] = {'Precision': {'accum': 'fixed<16,6,RND,SAT>', 'result': 'fixed<14,6,RND,SAT>'}}
    g.inputs, g.outputs = ['image'], ['dense']
    return g, {'Model': MODEL, 'LayerName': names}


def function_text(cpp: str, name: str) -> str:
    """The definition of `static void name(...)` in a generated .cpp."""
    start = cpp.index(f'static void {name}(')
    return cpp[start:cpp.index('\n}\n', start) + 3]


@pytest.fixture(scope='module')
def cnn(root):
    graph, config = svhn_like_cnn()
    return compiled(graph, config, root, 'svhn_like', 'io_stream')


def test_svhn_like_cnn_io_stream_bit_identical(cnn):
    xs = model_inputs(cnn, 2_000, seed=4)
    assert_bit_identical(cnn, xs)
    y = cnn.predict(xs[0])
    assert len(np.unique(y, axis=0)) > 1_000  # the outputs really depend on the image


def test_io_stream_layers_are_line_buffered(cnn):
    """Conv and Pool read their FIFO once per pixel, hold only (kernel height - 1) rows, and write one
    output pixel per transfer; the layers in between stream one pixel at a time; FIFOs are shallow."""
    cpp = (Path(cnn.output_dir) / 'firmware' / 'svhn_like.cpp').read_text()
    for name in ('conv0', 'pool0', 'conv1', 'pool1'):
        layer = cnn.graph[name]
        h, w, c = cnn.graph[layer.inputs[0]].shape
        text = function_text(cpp, name)
        assert text.count('.read()') == 1 and re.search(r'for \(int c = 0; c < \d+; c\+\+\) \{', text)
        arrays = [np.prod([int(d) for d in re.findall(r'\[(\d+)\]', dims)])
                  for dims in re.findall(r'^\s+\w+ \w+((?:\[\d+\])+);', text, flags=re.M)]
        kh = layer.attrs['kernel_size' if layer.op == 'Conv' else 'pool_size'][0]
        assert max(arrays) < h * w * c  # no array of the whole image
        line = re.search(r'(\w+) line\[(\d+)\]\[(\d+)\]\[(\d+)\];', text)
        assert line and int(line[2]) == kh - 1 and int(line[4]) == c
        assert text.count('.write(o)') == 1
    for name in ('bn0', 'relu0', 'bn1', 'relu1'):  # per pixel, no whole-tensor buffer
        text = function_text(cpp, f'{name}_stream')
        h, w, _ = cnn.graph[name].shape
        assert f'for (int p = 0; p < {h * w}; p++) {{' in text and 'a0 = x0.read();' in text and '[' not in text
    assert f"a0[{cnn.graph['flatten'].size}]" in function_text(cpp, 'flatten_stream')  # Flatten buffers its tensor
    depths = [int(d) for d in re.findall(r'#pragma HLS STREAM variable=\w+ depth=(\d+)', cpp)]
    assert depths and set(depths) == {2}  # a chain: two packets per FIFO


def test_negative_control_changed_weight_stream(root):
    """One Conv weight mantissa changed by one LSB after the emulator was built: the comparison must fail."""
    graph, config = svhn_like_cnn()
    model = convert_graph(graph, config, output_dir=str(root / 'negative'), project_name='negative',
                          io_type='io_stream')
    model.compile()  # the emulator keeps the original weights
    model.graph['conv1'].qweights['kernel'][2, 1, 3, 5] += 1
    model.compile(sim='csim')
    with pytest.raises(AssertionError, match=r"output 'dense' differs on \d+ of 1500 samples"):
        assert_bit_identical(model, model_inputs(model, 1_500, seed=5))


# --------------------------------------------------------------------------- validation

def test_invalid_parallelization_factor_lists_valid_values(tmp_path):
    graph, config = svhn_like_cnn()
    config['LayerName']['conv0']['ParallelizationFactor'] = 7  # 12 x 12 = 144 output pixels
    model = convert_graph(graph, config, output_dir=str(tmp_path / 'pf'))
    with pytest.raises(ValueError, match=r"layer 'conv0' \(Conv, 12 x 12 = 144 output pixels: it must divide them\): "
                                         r'ParallelizationFactor 7 is not valid; valid values are '
                                         r'\[1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 36, 48, 72, 144\]'):
        model.write()
    config['LayerName']['conv0']['ParallelizationFactor'] = 4
    model = convert_graph(graph, config, output_dir=str(tmp_path / 'stream'), io_type='io_stream')
    with pytest.raises(ValueError, match=r"layer 'conv0' \(Conv, io_stream: the line buffer computes one output "
                                         r'pixel at a time\): ParallelizationFactor 4 is not valid; '
                                         r'valid values are \[1\]'):
        model.write()
    del config['LayerName']['conv0']['ParallelizationFactor']
    config['LayerName']['pool0'] = {'ParallelizationFactor': 2}
    model = convert_graph(graph, config, output_dir=str(tmp_path / 'pool'))
    with pytest.raises(ValueError, match=r"layer 'pool0' \(Pool\): ParallelizationFactor applies to Conv layers only"):
        model.write()
    config['LayerName']['pool0'] = {'ParallelizationFactor': 0}
    with pytest.raises(ConfigError, match=r"config\['LayerName'\]\['pool0'\]: ParallelizationFactor must be a "
                                          r'positive integer, got 0'):
        convert_graph(graph, config)
