"""Small typed graphs that exercise every op the Verilog back end lowers (shared by its tests)."""

from __future__ import annotations

import numpy as np

from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, Node


def _dense(g: Graph, rng, name: str, src: str, n_in: int, n_out: int, zero: float = 0.3, scale: float = 0.6) -> str:
    w = rng.normal(0, scale, (n_in, n_out)).astype(np.float32)
    w[rng.random(w.shape) < zero] = 0
    b = rng.normal(0, 0.3, n_out).astype(np.float32)
    g.add(Node(name, 'Dense', [src], (n_out,), weights={'kernel': w, 'bias': b}, source='Dense'))
    return name


def _act(g: Graph, name: str, src: str, shape, weights=None, **attrs) -> str:
    g.add(Node(name, 'Activation', [src], shape, attrs=attrs, weights=weights or {}, source='Activation'))
    return name


def mlp_graph(seed: int = 0, sizes=(16, 12, 8, 5), softmax: bool = True) -> Graph:
    """A JSC-like MLP: Dense + ReLU layers, a linear last layer and (optionally) a softmax."""
    rng = np.random.default_rng(seed)
    g = Graph()
    g.add(Node('x', 'Input', [], (sizes[0],)))
    prev = 'x'
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        prev = _dense(g, rng, f'fc{k}', prev, a, b)
        if k < len(sizes) - 2:
            prev = _act(g, f'fc{k}_relu', prev, (b,), function='relu')
    g.inputs, g.outputs = ['x'], [prev]
    if softmax:
        g.add(Node('softmax', 'Softmax', [prev], (sizes[-1],), attrs={'axis': -1}))
        g.outputs = [prev, 'softmax']
    return g


def jsc_graph(seed: int = 5) -> Graph:
    """The JSC MLP of BENCHMARKS.md (16 -> 64 -> 32 -> 32 -> 5, ReLU, softmax), lecun-uniform-like weights."""
    return mlp_graph(seed, sizes=(16, 64, 32, 32, 5))


def activations_graph(seed: int = 1) -> Graph:
    """Piecewise and table activations, a BatchNorm-like Scale and an explicit Quantize."""
    rng = np.random.default_rng(seed)
    g = Graph()
    n = 6
    g.add(Node('x', 'Input', [], (n,)))
    d = _dense(g, rng, 'fc', 'x', n, n, zero=0.1)
    outs = [
        _act(g, 'relu6', d, (n,), function='relu', max_value=6.0),
        _act(g, 'leaky', d, (n,), function='leaky_relu', alpha=0.3),
        _act(g, 'prelu', d, (n,), weights={'alpha': rng.normal(0.2, 0.1, n).astype(np.float32)}, function='prelu'),
        _act(g, 'hsig', d, (n,), function='hard_sigmoid', slope=0.2, shift=0.5),
        _act(g, 'htanh', d, (n,), function='hard_tanh'),
        _act(g, 'sigmoid', d, (n,), function='sigmoid'),
        _act(g, 'tanh', d, (n,), function='tanh'),
        _act(g, 'linear', d, (n,), function='linear'),
    ]
    g.add(Node('bn', 'Scale', ['x'], (n,), weights={'scale': rng.normal(1, 0.5, n).astype(np.float32),
                                                    'bias': rng.normal(0, 0.5, n).astype(np.float32)}))
    g.add(Node('q', 'Quantize', ['bn'], (n,)))
    g.inputs, g.outputs = ['x'], outs + ['q']
    return g


def merges_graph(seed: int = 2) -> Graph:
    """Two inputs of different types merged in every mode, then concatenated."""
    g = Graph()
    n = 5
    g.add(Node('a', 'Input', [], (n,)))
    g.add(Node('b', 'Input', [], (n,)))
    outs = []
    for mode in ('add', 'sub', 'mul', 'avg', 'max', 'min'):
        g.add(Node(f'm_{mode}', 'Merge', ['a', 'b'], (n,), attrs={'mode': mode}))
        outs.append(f'm_{mode}')
    g.add(Node('cat', 'Merge', ['a', 'b'], (2 * n,), attrs={'mode': 'concat', 'axis': -1}))
    g.inputs, g.outputs = ['a', 'b'], outs + ['cat']
    return g


def cnn_graph(seed: int = 3) -> Graph:
    """A tiny CNN: padding, conv (stride 2, bias), max and average pooling, crop, upsampling,
    depthwise conv, transpose, flatten and a dense head."""
    rng = np.random.default_rng(seed)
    g = Graph()
    g.add(Node('x', 'Input', [], (6, 6, 2)))
    g.add(Node('pad', 'Pad', ['x'], (8, 8, 2), attrs={'padding': (1, 1, 1, 1)}))
    g.add(Node('conv', 'Conv', ['pad'], (3, 3, 3), attrs={'kernel_size': (3, 3), 'strides': (2, 2), 'dilation': (1, 1),
                                                       'padding': (0, 0, 0, 0), 'groups': 1},
               weights={'kernel': rng.normal(0, 0.5, (3, 3, 2, 3)).astype(np.float32),
                        'bias': rng.normal(0, 0.3, 3).astype(np.float32)}))
    g.add(Node('relu', 'Activation', ['conv'], (3, 3, 3), attrs={'function': 'relu'}))
    g.add(Node('maxp', 'Pool', ['relu'], (2, 2, 3), attrs={'mode': 'max', 'pool_size': (2, 2), 'strides': (1, 1),
                                                          'padding': (0, 0, 0, 0)}))
    g.add(Node('avgp', 'Pool', ['x'], (3, 3, 2), attrs={'mode': 'avg', 'pool_size': (3, 3), 'strides': (2, 2),
                                                       'padding': (1, 0, 1, 0)}))
    g.add(Node('crop', 'Crop', ['avgp'], (2, 2, 2), attrs={'cropping': (1, 0, 0, 1)}))
    g.add(Node('up', 'Resize', ['crop'], (4, 4, 2), attrs={'scale': (2, 2), 'method': 'nearest'}))
    g.add(Node('dw', 'Conv', ['up'], (2, 2, 2), attrs={'kernel_size': (3, 3), 'strides': (1, 1), 'dilation': (1, 1),
                                                     'padding': (0, 0, 0, 0), 'groups': 2},
               weights={'kernel': rng.normal(0, 0.5, (3, 3, 1, 2)).astype(np.float32),
                        'bias': np.zeros(2, np.float32)}))
    g.add(Node('tr', 'Transpose', ['maxp'], (3, 2, 2), attrs={'perm': (2, 0, 1)}))
    g.add(Node('flat', 'Reshape', ['tr'], (12,), attrs={'shape': (12,)}))
    _dense(g, rng, 'head', 'flat', 12, 4)
    g.inputs, g.outputs = ['x'], ['head', 'dw']
    return g


def econt_graph(seed: int = 4) -> Graph:
    """The CMS HGCAL ECON-T encoder (BENCHMARKS.md): 8x8x1 -> Conv2D 8 filters 3x3 stride 2 ('same') -> Dense 16."""
    rng = np.random.default_rng(seed)
    g = Graph()
    g.add(Node('x', 'Input', [], (8, 8, 1)))
    g.add(Node('conv', 'Conv', ['x'], (4, 4, 8), attrs={'kernel_size': (3, 3), 'strides': (2, 2), 'dilation': (1, 1),
                                                     'padding': (0, 1, 0, 1), 'groups': 1},
               weights={'kernel': rng.normal(0, 0.4, (3, 3, 1, 8)).astype(np.float32),
                        'bias': rng.normal(0, 0.2, 8).astype(np.float32)}))
    g.add(Node('relu', 'Activation', ['conv'], (4, 4, 8), attrs={'function': 'relu'}))
    g.add(Node('flat', 'Reshape', ['relu'], (128,), attrs={'shape': (128,)}))
    _dense(g, rng, 'encoded', 'flat', 128, 16, zero=0.2, scale=0.2)
    g.add(Node('out', 'Activation', ['encoded'], (16,), attrs={'function': 'relu'}))
    g.inputs, g.outputs = ['x'], ['out']
    return g


#: precision configurations: (model default, accum/result of the compute layers)
PRECISIONS = {
    'hls4ml_default': {'Model': {'Precision': 'fixed<16,6>'}},
    'auto': {'Model': {'Precision': {'default': 'fixed<8,3>', 'accum': 'auto', 'result': 'auto'}}},
    'narrow_sat': {'Model': {'Precision': {'default': 'fixed<10,4,RND_CONV,SAT>', 'accum': 'fixed<12,5,RND,SAT>'}}},
    'rounding_wrap': {'Model': {'Precision': {'default': 'fixed<10,4,RND_ZERO,SAT_SYM>',
                                              'accum': 'fixed<14,6,RND_INF,WRAP>'}}},
    'unsigned_mixed': {'Model': {'Precision': {'default': 'fixed<9,4,TRN_ZERO,SAT_ZERO>', 'accum': 'auto',
                                               'result': 'ufixed<7,3,RND_MIN_INF,SAT>'}}},
    # ECON-T: 10-bit inputs (3 integer bits), 6-bit weights, 11-bit accumulators, 9-bit unsigned outputs
    'econt': {'Model': {'Precision': {'default': 'fixed<6,1,RND,SAT>', 'accum': 'fixed<11,4>',
                                      'result': 'ufixed<9,4,RND,SAT>'}},
              'LayerName': {'x': {'Precision': {'result': 'fixed<10,3>'}},
                            'conv': {'Precision': {'result': 'fixed<11,4>'}},
                            'encoded': {'Precision': {'result': 'fixed<11,4>'}}}},
}

GRAPHS = {'mlp': mlp_graph, 'activations': activations_graph, 'merges': merges_graph, 'cnn': cnn_graph,
          'econt': econt_graph, 'jsc': jsc_graph}


def convert(graph: Graph, precision: str, **kwargs):
    """Convert a test graph with one of PRECISIONS for the Verilog back end."""
    cfg = {key: dict(value) for key, value in PRECISIONS[precision].items()}
    cfg['Model'].update(kwargs.pop('model_extra', {}))
    return convert_graph(graph, cfg, backend='Verilog', **kwargs)


def random_inputs(model, n: int, seed: int = 0, overflow: float = 2.0) -> list[np.ndarray]:
    """Float inputs up to `overflow` times the input range (so the input quantization saturates/wraps)."""
    rng = np.random.default_rng(seed)
    xs = []
    for name in model.graph.inputs:
        node = model.graph[name]
        t = node.result_type
        span = max(abs(t.min_value), abs(t.max_value)) * overflow
        x = rng.uniform(-span, span, (n,) + node.shape)
        x[: n // 4] = np.round(x[: n // 4] / t.lsb) * t.lsb  # a quarter exactly on the grid
        xs.append(x)
    return xs


def require_verilator() -> None:
    """Skip the calling test when no Verilator is installed (nothing to compare the design with)."""
    import pytest

    from fpga4ml.backends.verilog.verilator import find_verilator
    try:
        find_verilator()
    except Exception as err:  # noqa: BLE001  (any reason it cannot run)
        pytest.skip(f'needs Verilator: {err}')
