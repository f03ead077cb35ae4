"""The HLS C++ back end is bit-identical to the emulator: g++ C simulation vs predict().

Each model below is written as an HLS project, compiled with g++ against the Xilinx ap_types
headers (hls4ml's bundled copy) and run on >= 10,000 random inputs, including rounding ties and
values far outside the input types (so inputs wrap and saturate). `predict(x, sim='csim')` must
equal `predict(x)` exactly, element for element. One model per op family groups many layers as
separate graph outputs, so one g++ build checks a whole family; each family is built for both
io types. A negative control changes one weight and must make the comparison fail.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fpga4ml.backends.hls import CSimError, compile_csim, find_ap_types
from fpga4ml.backends.hls import csim as csim_module
from fpga4ml.backends.hls.emit import valid_reuse_factors
from fpga4ml.backends.hls.writer import project_files
from fpga4ml.convert import convert_graph
from fpga4ml.fixed import FixedType
from fpga4ml.ir import Graph, Node

pytestmark = pytest.mark.skipif(shutil.which('g++') is None or importlib.util.find_spec('hls4ml') is None,
                                reason='needs g++ and the ap_types headers shipped with hls4ml')

N_VECTORS = 10_000
MODEL = {'Precision': 'fixed<16,6>', 'ReuseFactor': 1, 'Strategy': 'Latency'}


# --------------------------------------------------------------------------- helpers

def make_inputs(rng: np.random.Generator, n: int, shape: tuple[int, ...], t: FixedType) -> np.ndarray:
    """In range (both signs), exact rounding ties, and far outside the type (wrap / saturate)."""
    lo, hi, lsb = t.min_value, t.max_value, t.lsb
    span = hi - lo
    k = n // 4
    parts = [rng.normal((lo + hi) / 2, span / 6, (k,) + shape),
             rng.uniform(lo, hi, (k,) + shape),
             (rng.integers(t.min_mantissa, t.max_mantissa, (k,) + shape) + 0.5) * lsb,
             rng.uniform(lo - 2 * span, hi + 2 * span, (n - 3 * k,) + shape)]
    x = np.concatenate(parts)[rng.permutation(n)]
    x[:4] = np.array([np.nan, np.inf, -np.inf, 0.0]).reshape((4,) + (1,) * len(shape))  # NaN -> 0; inf saturates
    return x


def model_inputs(model, n: int = N_VECTORS, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [make_inputs(rng, n, model.graph[name].shape, model.graph[name].result_type) for name in model.graph.inputs]


def assert_bit_identical(model, xs) -> None:
    """Every output of the C simulation equals the emulator's exactly; the message names the first difference."""
    want = model.emulator.predict(xs)
    got = model._csim.predict(xs)
    assert len(got) == len(want)
    for name, w, g in zip(model.graph.outputs, want, got):
        assert g.shape == w.shape, f'output {name!r}: C simulation shape {g.shape}, emulator {w.shape}'
        bad = np.flatnonzero(np.any((g != w).reshape(len(g), -1), axis=1))
        if bad.size:
            s = int(bad[0])
            elem = int(np.flatnonzero((g[s] != w[s]).ravel())[0])
            vector = [np.asarray(x[s]).tolist() for x in xs]
            raise AssertionError(
                f'output {name!r} differs on {bad.size} of {len(g)} samples; first: sample {s}, element {elem}: '
                f'C simulation {g[s].ravel()[elem]!r}, emulator {w[s].ravel()[elem]!r}; input vector {vector}')


def compiled(graph: Graph, config: dict, root: Path, name: str, io_type: str = 'io_parallel'):
    model = convert_graph(graph, config, output_dir=str(root / f'{name}_{io_type}'), project_name=name,
                          io_type=io_type)
    model.compile(sim='csim')
    return model


def dense(rng, n_in: int, n_out: int, scale: float = 0.5, zeros: float = 0.0) -> dict:
    kernel = rng.normal(0, scale, (n_in, n_out))
    kernel[rng.random(kernel.shape) < zeros] = 0.0
    return {'kernel': kernel.astype(np.float32), 'bias': rng.normal(0, 0.5, n_out).astype(np.float32)}


def node(g: Graph, name: str, op: str, inputs: list[str], shape, **kw) -> str:
    g.add(Node(name, op, inputs, shape, source=kw.pop('source', op), **kw))
    return name


# --------------------------------------------------------------------------- models

def dense_zoo() -> tuple[Graph, dict]:
    """Dense layers in many precisions: per-product TRN into a 16-bit accumulator, SAT/WRAP/SAT_SYM
    accumulators that overflow, sparse kernels, a Dense over the last axis of a 2-D input, Resource."""
    rng = np.random.default_rng(10)
    g = Graph()
    node(g, 'x', 'Input', [], (8,))
    node(g, 'x2', 'Input', [], (3, 4))
    layers = {
        'd16': ({}, 0.0),  # model default fixed<16,6>: products floored from 17 to 10 fractional bits
        'dsat': ({'weight': 'fixed<8,2,RND,SAT>', 'bias': 'fixed<12,3,RND>', 'accum': 'fixed<10,4,RND,SAT>',
                  'result': 'fixed<9,4,RND_CONV,SAT>'}, 0.0),
        'dwrap': ({'weight': 'fixed<6,1>', 'bias': 'fixed<10,2,RND>', 'accum': 'fixed<9,4>',
                   'result': 'fixed<8,4,RND,WRAP>'}, 0.0),
        'dsym': ({'weight': 'fixed<9,2,RND_ZERO,SAT_SYM>', 'bias': 'fixed<8,2,RND_INF,SAT>',
                  'accum': 'fixed<12,5,RND_CONV,SAT_SYM>', 'result': 'fixed<8,3,TRN_ZERO,SAT>'}, 0.0),
        'dauto': ({'weight': 'fixed<8,3>', 'bias': 'fixed<8,3>', 'accum': 'auto', 'result': 'auto'}, 0.0),
        'dsparse': ({'weight': 'fixed<8,2,RND>', 'accum': 'fixed<11,4,RND_MIN_INF,SAT>', 'result': 'ufixed<8,3,RND,SAT>'}, 0.7),
        'dres2': ({'weight': 'fixed<8,2,RND,SAT>', 'accum': 'fixed<10,4,RND,SAT>', 'result': 'fixed<9,4,RND,SAT>'}, 0.2),
        'dres16': ({'weight': 'fixed<8,2,RND,SAT>', 'accum': 'fixed<10,4,RND,SAT>', 'result': 'fixed<9,4,RND,SAT>'}, 0.2),
    }
    names = {'x': {'Precision': {'result': 'fixed<10,3,RND,SAT>'}}, 'x2': {'Precision': {'result': 'fixed<8,2>'}}}
    for name, (prec, zeros) in layers.items():
        weights = dense(rng, 8, 6, 0.8, zeros)
        if name == 'dsparse':
            weights['kernel'][2, :] = 0.0  # an all-zero input row
            weights['kernel'][:, 4] = 0.0  # an output with only its bias
        node(g, name, 'Dense', ['x'], (6,), weights=weights)
        names[name] = {'Precision': prec}
    names['dres2'].update({'Strategy': 'Resource', 'ReuseFactor': 2})  # 2 cycles of 4 input rows
    names['dres16'].update({'Strategy': 'Resource', 'ReuseFactor': 16})  # 16 cycles of 3 outputs
    node(g, 'd2d', 'Dense', ['x2'], (3, 5), weights=dense(rng, 4, 5, 0.8))
    node(g, 'd2dres', 'Dense', ['x2'], (3, 5), weights=dense(rng, 4, 5, 0.8))
    node(g, 'dzero', 'Dense', ['x'], (6,), weights={'kernel': np.zeros((8, 6), np.float32),
                                                    'bias': rng.normal(0, 1, 6).astype(np.float32)})
    names['dzero'] = {'Precision': {'result': 'fixed<6,2,RND,SAT>'}}
    # wide: 40-bit inputs, 22-bit weights, an exact 59-bit accumulator (outputs beyond 53 bits)
    node(g, 'xw', 'Input', [], (4,))
    names['xw'] = {'Precision': {'result': 'fixed<40,16>'}}
    node(g, 'dwide', 'Dense', ['xw'], (3,), weights=dense(rng, 4, 3, 3.0))
    names['dwide'] = {'Precision': {'weight': 'fixed<22,8>', 'bias': 'fixed<20,6>', 'accum': 'auto', 'result': 'auto'}}
    node(g, 'qwide', 'Quantize', ['xw'], (4,))
    names['qwide'] = {'Precision': {'result': 'fixed<64,30,RND_CONV,SAT>'}}
    names['d2d'] = {'Precision': {'accum': 'fixed<10,3,RND,SAT>', 'result': 'fixed<8,3,RND>'}, 'ReuseFactor': 4}
    names['d2dres'] = {'Precision': {'accum': 'fixed<10,3,RND,SAT>'}, 'Strategy': 'Resource', 'ReuseFactor': 2}
    g.inputs = ['x', 'x2', 'xw']
    g.outputs = [n.name for n in g if n.op in ('Dense', 'Quantize')]
    return g, {'Model': MODEL, 'LayerName': names}


def elementwise_zoo() -> tuple[Graph, dict]:
    """Scale, every piecewise activation, Quantize, Reshape; signed, unsigned and negative-frac inputs."""
    rng = np.random.default_rng(11)
    g = Graph()
    node(g, 'x', 'Input', [], (6,))
    node(g, 'u', 'Input', [], (6,))
    node(g, 'c', 'Input', [], (6,))
    act = 'Activation'
    node(g, 'scale', 'Scale', ['x'], (6,), weights={'scale': rng.normal(1, 0.6, 6).astype(np.float32),
                                                      'bias': rng.normal(0, 1, 6).astype(np.float32)})
    node(g, 'relu', act, ['x'], (6,), attrs={'function': 'relu'})
    node(g, 'relu6', act, ['x'], (6,), attrs={'function': 'relu', 'max_value': 6.0})
    node(g, 'relu_half', act, ['u'], (6,), attrs={'function': 'relu', 'max_value': 0.5})
    node(g, 'leaky', act, ['x'], (6,), attrs={'function': 'leaky_relu', 'alpha': 0.3})
    node(g, 'prelu', act, ['x'], (6,), attrs={'function': 'prelu'},
         weights={'alpha': rng.normal(0.2, 0.2, 6).astype(np.float32)})
    node(g, 'linear', act, ['x'], (6,), attrs={'function': 'linear'})
    node(g, 'htanh', act, ['x'], (6,), attrs={'function': 'hard_tanh'})
    node(g, 'htanh_u', act, ['u'], (6,), attrs={'function': 'hard_tanh'})
    node(g, 'htanh_c', act, ['c'], (6,), attrs={'function': 'hard_tanh'})
    node(g, 'hsig', act, ['x'], (6,), attrs={'function': 'hard_sigmoid', 'slope': 1 / 6, 'shift': 0.5})
    node(g, 'hsig_auto', act, ['x'], (6,), attrs={'function': 'hard_sigmoid', 'slope': 0.2, 'shift': 0.5})
    node(g, 'relu_c', act, ['c'], (6,), attrs={'function': 'relu'})
    node(g, 'quant', 'Quantize', ['x'], (6,))
    node(g, 'quant_c', 'Quantize', ['c'], (6,))
    node(g, 'reshape', 'Reshape', ['scale'], (2, 3), attrs={'shape': (2, 3)})
    names = {
        'x': {'Precision': {'result': 'fixed<12,5,RND,SAT>'}},
        'u': {'Precision': {'result': 'ufixed<9,3,RND_CONV,SAT>'}},
        'c': {'Precision': {'result': 'fixed<6,8>'}},  # negative fractional bits: LSB = 4
        'scale': {'Precision': {'scale': 'fixed<8,2,RND>', 'bias': 'fixed<8,3>', 'result': 'fixed<10,4,RND,SAT>'}},
        'relu': {'Precision': {'result': 'ufixed<8,3,RND,SAT>'}},
        'relu6': {'Precision': {'result': 'ufixed<7,3,RND_CONV,SAT>'}},
        'relu_half': {'Precision': {'result': 'ufixed<4,0,RND,SAT>'}},
        'leaky': {'Precision': {'result': 'fixed<9,3,RND_CONV,SAT>', 'param': 'fixed<10,1,RND>'}},
        'prelu': {'Precision': {'result': 'fixed<9,3,RND,SAT_SYM>', 'param': 'fixed<8,1,RND>'}},
        'linear': {'Precision': {'result': 'fixed<7,2,RND_INF,SAT>'}},
        'htanh': {'Precision': {'result': 'fixed<6,1,RND,SAT>'}},
        'htanh_u': {'Precision': {'result': 'fixed<6,2,RND>'}},
        'htanh_c': {'Precision': {'result': 'fixed<6,2,RND>'}},
        'hsig': {'Precision': {'result': 'ufixed<8,1,RND,SAT>', 'param': 'fixed<10,1,RND>'}},
        'hsig_auto': {'Precision': {'result': 'fixed<8,2,TRN_ZERO,WRAP>'}},
        'relu_c': {'Precision': {'result': 'fixed<7,9,RND,SAT>'}},
        'quant': {'Precision': {'result': 'fixed<6,2,RND_CONV,SAT_SYM>'}},
        'quant_c': {'Precision': {'result': 'fixed<5,6,RND,SAT>'}},
    }
    g.inputs = ['x', 'u', 'c']
    g.outputs = [n.name for n in g if n.op != 'Input']
    return g, {'Model': MODEL, 'LayerName': names}


def table_zoo() -> tuple[Graph, dict]:
    """Table activations (exact narrow tables, 4096-entry tables for wide inputs, unsigned index) and softmax."""
    g = Graph()
    node(g, 'n', 'Input', [], (4,))
    node(g, 'w', 'Input', [], (4,))
    node(g, 'u', 'Input', [], (4,))
    node(g, 'logits', 'Input', [], (5,))
    node(g, 'wide', 'Input', [], (2, 7))
    names = {'n': {'Precision': {'result': 'fixed<10,4>'}}, 'w': {'Precision': {'result': 'fixed<24,10>'}},
             'u': {'Precision': {'result': 'ufixed<16,4,RND,SAT>'}},
             'logits': {'Precision': {'result': 'fixed<16,6>'}}, 'wide': {'Precision': {'result': 'fixed<30,10>'}}}
    for fn in ('sigmoid', 'tanh', 'elu', 'softplus', 'softsign', 'selu', 'exp'):
        node(g, f'{fn}_n', 'Activation', ['n'], (4,), attrs={'function': fn})
        names[f'{fn}_n'] = {'Precision': {'result': 'fixed<16,6,RND,SAT>'}}
    for fn in ('sigmoid', 'tanh', 'elu'):
        node(g, f'{fn}_w', 'Activation', ['w'], (4,), attrs={'function': fn})
        names[f'{fn}_w'] = {'Precision': {'result': 'fixed<12,2,RND,SAT>'}}
    node(g, 'sigmoid_u', 'Activation', ['u'], (4,), attrs={'function': 'sigmoid'})
    names['sigmoid_u'] = {'Precision': {'result': 'ufixed<10,0,RND,SAT>', 'table': 'ufixed<12,0,RND,SAT>'},
                          'TableSize': 1024}
    node(g, 'softmax', 'Softmax', ['logits'], (5,), attrs={'axis': -1})
    names['softmax'] = {'Precision': {'result': 'ufixed<16,0,RND,SAT>'}}
    node(g, 'softmax_wide', 'Softmax', ['wide'], (2, 7), attrs={'axis': -1})
    names['softmax_wide'] = {'Precision': {'result': 'ufixed<12,1,RND,SAT>', 'exp_table': 'ufixed<16,1,RND,SAT>'},
                             'TableSize': 1024}
    g.inputs = ['n', 'w', 'u', 'logits', 'wide']
    g.outputs = [n.name for n in g if n.op != 'Input']
    return g, {'Model': MODEL, 'LayerName': names}


def merge_zoo() -> tuple[Graph, dict]:
    """Every merge mode, two to four inputs of different types, concat along both axes of 2-D tensors."""
    g = Graph()
    for name in 'abcd':
        node(g, name, 'Input', [], (6,))
    names = {'a': {'Precision': {'result': 'fixed<10,4,RND,SAT>'}}, 'b': {'Precision': {'result': 'fixed<12,3>'}},
             'c': {'Precision': {'result': 'ufixed<8,2>'}}, 'd': {'Precision': {'result': 'fixed<9,5>'}}}
    merges = [('add', 'ab'), ('sub', 'ab'), ('mul', 'ab'), ('avg', 'ab'), ('max', 'ab'), ('min', 'ab'),
              ('concat', 'ab'), ('add', 'abc'), ('mul', 'abc'), ('avg', 'abcd'), ('max', 'abc'), ('min', 'ca'),
              ('sub', 'ca'), ('concat', 'cad')]
    for k, (mode, ins) in enumerate(merges):
        name = f'{mode}_{ins}'
        node(g, name, 'Merge', list(ins), (6 * len(ins),) if mode == 'concat' else (6,),
             attrs={'mode': mode, 'axis': -1})
        # even positions keep the exact 'auto' type, odd ones round and saturate or wrap
        if k % 2:
            names[name] = {'Precision': {'result': 'fixed<9,3,RND,SAT>' if k % 4 == 1 else 'fixed<8,2,RND_CONV>'}}
    node(g, 'a2', 'Reshape', ['a'], (2, 3), attrs={'shape': (2, 3)})
    node(g, 'b2', 'Reshape', ['b'], (2, 3), attrs={'shape': (2, 3)})
    node(g, 'cat0', 'Merge', ['a2', 'b2'], (4, 3), attrs={'mode': 'concat', 'axis': -2})
    node(g, 'cat1', 'Merge', ['a2', 'b2'], (2, 6), attrs={'mode': 'concat', 'axis': -1})
    names['cat1'] = {'Precision': {'result': 'fixed<7,3,RND,SAT>'}}
    g.inputs = list('abcd')
    # also an input and a consumed tensor returned directly, and one output returned twice
    g.outputs = [n.name for n in g if n.op == 'Merge'] + ['a', 'a2', 'add_ab']
    return g, {'Model': MODEL, 'LayerName': names}


def jsc_graph(seed: int = 1) -> Graph:
    """The jet-tagging MLP 16 -> 64 -> 32 -> 32 -> 5 with ReLUs and a softmax (hls4ml tutorial)."""
    rng = np.random.default_rng(seed)
    g = Graph()
    prev = node(g, 'x', 'Input', [], (16,))
    for k, (n_in, n_out) in enumerate([(16, 64), (64, 32), (32, 32), (32, 5)], start=1):
        prev = node(g, f'fc{k}', 'Dense', [prev], (n_out,), weights=dense(rng, n_in, n_out, 1 / np.sqrt(n_in), 0.1))
        if k < 4:
            prev = node(g, f'relu{k}', 'Activation', [prev], (n_out,), attrs={'function': 'relu'})
    node(g, 'softmax', 'Softmax', [prev], (5,), attrs={'axis': -1})
    g.inputs, g.outputs = ['x'], ['softmax']
    return g


def jsc_config(strategy: str = 'Latency', reuse: int = 1) -> dict:
    """fixed<16,6> by default with narrow, saturating layers, so products round and sums saturate."""
    return {'Model': {'Precision': 'fixed<16,6>', 'ReuseFactor': reuse, 'Strategy': strategy},
            'LayerName': {
                'x': {'Precision': {'result': 'fixed<10,3,RND,SAT>'}},
                'fc1': {'Precision': {'weight': 'fixed<8,2,RND,SAT>', 'accum': 'fixed<12,4,RND,SAT>',
                                      'result': 'fixed<9,4,RND_CONV,SAT>'}},
                'relu1': {'Precision': {'result': 'ufixed<8,3,RND,SAT>'}},
                'fc2': {'Precision': {'weight': 'fixed<6,1>', 'accum': 'fixed<10,4>', 'result': 'fixed<8,4,RND,WRAP>'}},
                'fc3': {'Precision': {'accum': 'auto', 'result': 'auto'}},
                'fc4': {'Precision': {'result': 'fixed<16,6,RND,SAT>'}},
                'softmax': {'Precision': {'result': 'ufixed<16,0,RND,SAT>'}}}}


ZOOS = {'dense': dense_zoo, 'elementwise': elementwise_zoo, 'tables': table_zoo, 'merges': merge_zoo}


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope='module')
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('hls')


@pytest.fixture(scope='module', params=['io_parallel', 'io_stream'])
def io_type(request) -> str:
    return request.param


# --------------------------------------------------------------------------- bit-exactness

@pytest.mark.parametrize('family', list(ZOOS))
def test_op_families_bit_identical(family, io_type, root):
    graph, config = ZOOS[family]()
    model = compiled(graph, config, root, family, io_type)
    assert_bit_identical(model, model_inputs(model))


JSC_CASES = [('io_parallel', 'Latency', 1), ('io_stream', 'Latency', 1), ('io_parallel', 'Latency', 2),
             ('io_parallel', 'Latency', 4), ('io_parallel', 'Resource', 2), ('io_parallel', 'Resource', 4),
             ('io_stream', 'Resource', 4)]


@pytest.mark.parametrize('io,strategy,reuse', JSC_CASES, ids=[f'{i}-{s}-rf{r}' for i, s, r in JSC_CASES])
def test_jsc_mlp_bit_identical(io, strategy, reuse, root):
    model = compiled(jsc_graph(), jsc_config(strategy, reuse), root, f'jsc_{strategy.lower()}_rf{reuse}', io)
    xs = model_inputs(model, 20_000)
    assert_bit_identical(model, xs)
    _, traced = model.trace(xs)  # the narrow types really round, wrap and saturate
    assert traced.stats['fc1'].overflow > 0 and traced.stats['fc2'].overflow > 0
    cpp = (Path(model.output_dir) / 'firmware' / f'{model.project_name}.cpp').read_text()
    if strategy == 'Resource':
        assert '#pragma HLS PIPELINE II=1' in cpp and 'for (int r = 0; r < %d; r++)' % reuse in cpp
        assert '#pragma HLS BIND_STORAGE variable=fc1_kernel type=rom_2p impl=bram' in cpp
    else:
        assert f'#pragma HLS PIPELINE II={reuse}' in cpp


def test_negative_control_changed_weight(root):
    """One weight mantissa changed by one LSB before writing: the comparison must fail and say where."""
    model = convert_graph(jsc_graph(), jsc_config(), output_dir=str(root / 'negative'), project_name='negative')
    model.compile()  # the emulator keeps the original weights
    kernel = model.graph['fc4'].qweights['kernel']
    kernel[3, 2] += 1
    model.compile(sim='csim')
    xs = model_inputs(model)
    with pytest.raises(AssertionError, match=r"output 'softmax' differs on \d+ of 10000 samples; first: sample \d+, "
                                             r'element \d+: C simulation .*, emulator .*; input vector \[\['):
        assert_bit_identical(model, xs)
    kernel[3, 2] -= 1  # restored: the same project rebuilt agrees again
    model.compile(sim='csim')
    assert_bit_identical(model, xs)


# --------------------------------------------------------------------------- project, validation, caching

def test_invalid_reuse_factor_lists_valid_values(tmp_path):
    cfg = jsc_config('Resource', 1)
    cfg['LayerName']['fc4'] = {'ReuseFactor': 3}
    valid = valid_reuse_factors(32, 5, 'Resource')
    assert valid == [1, 2, 4, 8, 16, 32, 160]
    # every level's ReuseFactor (layer, layer type, Model) is checked at convert time (folding.py)
    with pytest.raises(ValueError, match=r"layer 'fc4' \(Dense 32 -> 5, Strategy Resource\): ReuseFactor 3 is not "
                                         r'valid; valid values are \[1, 2, 4, 8, 16, 32, 160\]'):
        convert_graph(jsc_graph(), cfg, output_dir=str(tmp_path / 'p'))
    cfg['LayerName']['fc4'] = {'ReuseFactor': 3, 'Strategy': 'Latency'}
    with pytest.raises(ValueError, match=r'valid values are \[1, 2, 4, 5, 8, 10, 16, 20, 32, 40, 80, 160\]'):
        convert_graph(jsc_graph(), cfg, output_dir=str(tmp_path / 'p'))
    del cfg['LayerName']['fc4']
    cfg['Model']['ReuseFactor'] = 3
    with pytest.raises(ValueError, match=r"layer 'fc1' \(Dense 16 -> 64, Strategy Resource\): ReuseFactor 3 is not "
                                         r'valid; valid values are \[1, 2, 4, 8, 16, 32, 64'):
        convert_graph(jsc_graph(), cfg, output_dir=str(tmp_path / 'p'))
    cfg['Model']['ReuseFactor'] = 4  # control: valid for every layer of the model
    convert_graph(jsc_graph(), cfg, output_dir=str(tmp_path / 'p')).write()


def test_write_is_deterministic(tmp_path):
    graph, config = merge_zoo()
    first = convert_graph(graph, config, output_dir=str(tmp_path / 'a'), project_name='merges', io_type='io_stream')
    second = convert_graph(merge_zoo()[0], config, output_dir=str(tmp_path / 'b'), project_name='merges',
                           io_type='io_stream')
    files = [{p.relative_to(d).as_posix(): p.read_bytes() for d in [Path(m.write())] for p in sorted(d.rglob('*'))
              if p.is_file()} for m in (first, second)]
    assert files[0] == files[1]
    assert str(tmp_path) not in b''.join(files[0].values()).decode()
    assert {'firmware/defines.h', 'firmware/merges.h', 'firmware/merges.cpp', 'tb/merges_test.cpp',
            'merges_bridge.cpp', 'tb_data/tb_input_features.dat', 'tb_data/tb_output_predictions.dat',
            'build_prj.tcl'} <= set(files[0])
    first.write()  # writing again changes nothing
    again = {p.relative_to(tmp_path / 'a').as_posix(): p.read_bytes() for p in sorted((tmp_path / 'a').rglob('*'))
             if p.is_file()}
    assert again == files[0]
    assert project_files(first).keys() <= set(files[0])


def test_generated_code_uses_only_vendor_headers(root):
    model = convert_graph(jsc_graph(), jsc_config(), output_dir=str(root / 'headers'), project_name='headers',
                          io_type='io_stream')
    files = project_files(model)
    includes = set()
    for rel, text in files.items():
        if rel.startswith('firmware/'):
            includes |= {line.split()[1] for line in text.splitlines() if line.startswith('#include')}
    assert includes == {'<stdint.h>', '"ap_fixed.h"', '"ap_int.h"', '"hls_stream.h"', '"defines.h"', '"headers.h"',
                        '"weights/fc1.h"', '"weights/fc2.h"', '"weights/fc3.h"', '"weights/fc4.h"',
                        '"weights/softmax.h"'}


def test_testbench_runs_on_tb_data(root):
    """The vendor testbench, compiled with g++, reproduces tb_output_predictions.dat exactly."""
    model = convert_graph(jsc_graph(), jsc_config('Resource', 2), output_dir=str(root / 'tb'), project_name='tbjsc',
                          io_type='io_stream')
    prj = model.write()
    include = find_ap_types()
    exe = prj / 'tb_exe'
    subprocess.run(['g++', '-O1', '-std=c++14', '-w', f'-I{include}', f'-I{prj}', f'-I{prj / "firmware"}',
                    'tb/tbjsc_test.cpp', 'firmware/tbjsc.cpp', '-o', str(exe)], cwd=prj, check=True)
    run = subprocess.run([str(exe)], cwd=prj, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert 'fpga4ml testbench: 300 samples, outputs identical to fpga4ml' in run.stdout
    assert (prj / 'tb_data' / 'csim_results.log').read_text().count('\n') == 300
    # a wrong expectation is reported
    pred = prj / 'tb_data' / 'tb_output_predictions.dat'
    lines = pred.read_text().splitlines()
    lines[7] = ' '.join(['0.5'] * 5)
    pred.write_text('\n'.join(lines) + '\n')
    run = subprocess.run([str(exe)], cwd=prj, capture_output=True, text=True)
    assert run.returncode == 1 and 'MISMATCH sample 7' in run.stdout


def test_second_compile_reuses_library(root, monkeypatch):
    graph, config = merge_zoo()
    model = compiled(graph, config, root, 'merges', 'io_parallel')  # built by the family test or now
    libs = sorted((Path(model.output_dir) / 'csim').glob('*.so'))
    assert len(libs) == 1

    def no_build(*args, **kwargs):
        raise AssertionError('rebuilt although nothing changed')
    monkeypatch.setattr(csim_module, 'build_library', no_build)
    again = convert_graph(merge_zoo()[0], config, output_dir=model.output_dir, project_name='merges')
    again.compile(sim='csim')
    assert again._csim.path == libs[0]
    xs = model_inputs(again, 1000)
    assert_bit_identical(again, xs)


def test_missing_headers_error_names_the_three_places(tmp_path, monkeypatch):
    with pytest.raises(CSimError, match='ap_fixed.h not found in ap_types_dir'):
        find_ap_types(tmp_path)
    monkeypatch.delenv('XILINX_HLS', raising=False)
    monkeypatch.setattr(csim_module.importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(CSimError, match=r'ap_types_dir argument.*XILINX_HLS/include.*hls4ml'):
        find_ap_types()
    model = convert_graph(jsc_graph(), jsc_config(), output_dir=str(tmp_path / 'p'))
    with pytest.raises(CSimError, match='XILINX_HLS'):
        compile_csim(model)


def test_predict_csim_compiles_on_demand(tmp_path):
    """predict(sim='csim') without compile(sim='csim') builds the C simulation first (issue 16), then reuses it."""
    model = convert_graph(jsc_graph(), jsc_config(), output_dir=str(tmp_path / 'p'))
    x = np.random.default_rng(0).uniform(-2, 2, (50, 16))
    np.testing.assert_array_equal(model.predict(x, sim='csim'), model.predict(x))
    built = model._csim
    assert built is not None
    model.predict(x, sim='csim')
    assert model._csim is built
