"""ReuseFactor R > 1 on the head of a Verilog stream design (the Dense layers after the Flatten).

A head with a folded layer is one machine of fold.fold_graph, fed once per image by the collector;
its latency and II are the FoldedDesign's timing, and the image interval (pixels x clocks per pixel)
bounds its II. A CNN 8x8x2 -> Conv2D 3x3 'same' -> ReLU -> MaxPool -> Flatten -> Dense(16, R 4) ->
ReLU -> Dense(5, R 2) -> softmax, the same with a folded Conv (R 4) too, and the head folded
digit-serially (Folding 'adders', 'auto' types): the stream interpreter must equal predict() on 300
images back to back (each at the manifest latency) and with bubbles; Verilator must equal predict()
on 1,200 images (inputs up to twice the input range), with gaps, and the interpreter clock by
clock. Negative controls: one head weight-ROM word changed makes the interpreter (and the rebuilt
Verilog) differ. Invalid head R raise at convert time, a head R beyond the image interval at design
time; with every head R = 1 the design keeps its pipelined head. Slow: the folded Conv with the folded
head under Verilator (rebuilt negative control) and behind the AXI4-Stream wrapper.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from fpga4ml.backends.verilog.design import design, project_files
from fpga4ml.backends.verilog.fold import fold_graph
from fpga4ml.backends.verilog.stateful import Machine
from fpga4ml.backends.verilog.streaming import _head_graph
from fpga4ml.config import ConfigError, ConfigWarning
from fpga4ml.ir import Graph, GraphError, Node

import test_verilog_stream
from test_verilog_stream import images
from test_verilog_stream_merge import conv_on, max_pool, pixel_op, start
from test_verilog_stream_reuse import bubbles, check_emulate_cycles, check_verilator, convert, interpreted, seeded
from verilog_models import _dense


def head_cnn_graph() -> Graph:
    """8x8x2 -> Conv2D(4, 3x3 'same') -> ReLU -> MaxPool 2x2 -> Flatten (64) -> Dense(16) -> ReLU -> Dense(5) ->
    softmax."""
    g = start((8, 8, 2))
    conv_on(g, 'c1', 'x', 4, 3)
    pixel_op(g, 'r1', 'Activation', ['c1'], function='relu')
    max_pool(g, 'mp', 'r1')
    g.add(Node('flat', 'Reshape', ['mp'], (64,), attrs={'shape': (64,)}))
    _dense(g, test_verilog_stream.RNG, 'fc1', 'flat', 64, 16)
    g.add(Node('r2', 'Activation', ['fc1'], (16,), attrs={'function': 'relu'}))
    _dense(g, test_verilog_stream.RNG, 'fc2', 'r2', 16, 5)
    g.add(Node('sm', 'Softmax', ['fc2'], (5,), attrs={'axis': -1}))
    g.inputs, g.outputs = ['x'], ['sm']
    return g


head_cnn = seeded(head_cnn_graph, seed=29)  # a seed whose first head ROM word matters (the controls)

CASES = {  # {layer: R}, model keys
    'head_rf4_rf2': ({'fc1': 4, 'fc2': 2}, {}),
    'head_adders_auto': ({'fc1': 4, 'fc2': 2}, {'Folding': 'adders'}),  # digit-serial head, 'auto' types
}
SLOW_CASES = {
    'conv_rf4_head_rf4_rf2': ({'c1': 4, 'fc1': 4, 'fc2': 2}, {}),  # a folded Conv and a folded head
    'conv_adders_head_rf64': ({'c1': 2, 'fc1': 64, 'fc2': 5}, {'Folding': 'adders'}),  # R 64 of 128 clocks
}


def head_reuse(reuse: dict[str, int]) -> dict[str, int]:
    """The head's share of a {layer: R} setting."""
    return {k: v for k, v in reuse.items() if k.startswith('fc')}


def check_interpreter(reuse: dict[str, int], n: int = 300, **model_keys):
    """Interpreter == predict() back to back (every image at the manifest latency) and with bubbles, != the
    emulator of the model with one head weight one LSB off; returns the model."""
    model = convert(head_cnn(), reuse, **model_keys)
    d = design(model)
    assert isinstance(d.head, Machine) and d.head_schedule is None
    assert d.head_timing.stages == head_reuse(reuse)
    assert d.period == reuse.get('c1', 1)
    x = images(model, n, seed=1)
    want = model.predict_mantissas(x)['sm']
    got, run = interpreted(model, x, n // 3)
    assert np.array_equal(got, want)
    assert set(run.latencies.tolist()) == {d.latency}
    got, _ = interpreted(model, x[:90], 30, bubbles(3 * 64, d.period, seed=2))
    assert np.array_equal(got, want[:90])
    # negative control: the same results against the emulator of a model with one head weight one LSB off
    changed = convert(head_cnn(), reuse, **model_keys)
    kernel = changed.graph['fc2'].qweights['kernel']
    kernel.flat[np.argmax(np.abs(kernel))] += 1
    assert not np.array_equal(got, changed.predict_mantissas(x[:90])['sm'])
    return model


@pytest.mark.parametrize('case', list(CASES) + [pytest.param(c, marks=pytest.mark.slow) for c in SLOW_CASES])
def test_interpreter_equals_predict(case):
    reuse, keys = {**CASES, **SLOW_CASES}[case]
    model = check_interpreter(reuse, **keys)
    muls = sum(s.op == 'mul' for s in design(model).head.signals)
    softmax = sum(s.op == 'mul' for s in design(convert(head_cnn(), {})).head.signals)  # the unrolled head's
    if keys.get('Folding') == 'adders':
        assert muls == softmax  # digit-serial: no multiplier in the folded layers
    else:  # 64 x 16 / 4 + 16 x 5 / 2 products a clock at most (zero weights build none)
        assert softmax < muls <= softmax + 64 * 16 // 4 + 16 * 5 // 2


def test_manifest_latency_ii_and_estimate(tmp_path):
    reuse = {'c1': 4, 'fc1': 4, 'fc2': 2}
    model = convert(head_cnn(), reuse, tmp_path)
    d = design(model)
    unfolded = design(convert(head_cnn(), {'c1': 4}))
    head = _head_graph(d.flatten, [model.graph[k] for k in ('fc1', 'r2', 'fc2', 'sm')], ['sm'])
    timing = fold_graph(head, clock_period=model.clock_period, pipeline='auto').timing
    assert d.head_timing.ii == timing.ii == 4
    # the stages and the collector as before, then the folded head's own latency
    assert d.latency - d.head_timing.latency == unfolded.latency - unfolded.head_schedule.latency
    assert d.head_timing.latency == timing.latency
    info = json.loads(project_files(model)['manifest.json'])
    assert info['latency'] == d.latency == model.latency and info['ii'] == 64 * 4
    assert info['stream'] == {'pixels': 64, 'interval': 4, 'head': {
        'latency': d.head_timing.latency, 'ii': 4, 'reuse_factors': {'fc1': 4, 'fc2': 2}}}
    est = model.estimate()
    assert est['ii'] == 256 and est['latency_cycles'] == d.latency
    kernel_muls = sum(s.op == 'mul' for s in d.stages[0].netlist.signals)
    head_muls = sum(s.op == 'mul' for s in d.head.signals)
    assert est['multipliers'] == kernel_muls + head_muls and head_muls > 0
    assert est['DSP'] > convert(head_cnn(), {'c1': 4}).estimate()['DSP']  # the head's multipliers map to DSPs
    files = project_files(model)
    assert 'fc1 R=4, fc2 R=2' in files['sr_head.v'] and 'R=4' in files['sr_k0.v']
    check_emulate_cycles(model, d)


def test_head_reuse_factor_one_keeps_the_pipelined_head(tmp_path):
    model = convert(head_cnn(), {'fc1': 1, 'fc2': 1}, tmp_path)
    d = design(model)
    assert d.head_timing is None and not isinstance(d.head, Machine)
    assert 'head' not in json.loads(project_files(model)['manifest.json'])['stream']
    assert project_files(convert(head_cnn(), {}, tmp_path)) == project_files(model)  # R 1 set or not: the same


def test_invalid_head_reuse_factor_raises_at_convert_time():
    valid = r'\[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024\]'
    with pytest.raises(ConfigError, match=rf"layer 'fc1' \(Dense 64 -> 16, Strategy Latency\): ReuseFactor 3 is "
                                          rf'not valid; valid values are {valid}'):
        convert(head_cnn(), {'fc1': 3})
    assert design(convert(head_cnn(), {'fc1': 8})).head_timing.ii == 8  # control: a valid value folds


def test_head_slower_than_the_image_interval_is_refused():
    # 64 pixels a clock each: an image every 64 clocks, so fc1 may take R 64 at most
    with pytest.raises(GraphError, match=r"the folded head takes a new image every 128 clocks, but images come every "
                                         r"64 clocks .*layer 'fc1' \(ReuseFactor 128\): the largest ReuseFactor it "
                                         r'can take is 64'):
        design(convert(head_cnn(), {'fc1': 128}))
    assert design(convert(head_cnn(), {'fc1': 64})).head_timing.ii == 64  # control: the largest that fits
    # a folded Conv (R 4) paces the pixels 4 clocks apart: an image every 256 clocks, R 128 fits
    assert design(convert(head_cnn(), {'c1': 4, 'fc1': 128})).head_timing.ii == 128


def test_head_reuse_factor_no_longer_warns():
    with warnings.catch_warnings():
        warnings.simplefilter('error', ConfigWarning)  # a folded head: no warning
        design(convert(head_cnn(), {'fc1': 4, 'fc2': 2}))
    model = convert(head_cnn(), {'fc1': 4})
    model.graph['fc2'].config['Strategy'] = 'Resource'
    with pytest.warns(ConfigWarning, match=r'fc2 \(Strategy=Resource\)'):  # still ignored: says so
        design(model)


def head_machine(d):
    """The folded head's machine (the negative control's target)."""
    return d.head


def test_verilator_folded_head_equals_predict_and_interpreter(tmp_path):
    """The acceptance check: head R 16 and R 2 (one pixel a clock; 64 multipliers in fc1, a quick build); 1,200
    images, gaps, clock by clock, and the interpreter with one head weight-ROM word changed differs."""
    check_verilator(convert(head_cnn(), {'fc1': 16, 'fc2': 2}, tmp_path), 1200, target=head_machine)


@pytest.mark.slow
def test_verilator_folded_conv_and_head_rebuilt_negative_control(tmp_path):
    """Conv R 4 and the head folded (pixels 4 clocks apart): the same, lint clean, and the Verilog rebuilt from
    the changed head differs from predict()."""
    check_verilator(convert(head_cnn(), {'c1': 4, 'fc1': 4, 'fc2': 2}, tmp_path), 1200, rebuild=True,
                    target=head_machine)


@pytest.mark.slow
def test_axi_wrapper_with_a_folded_head(tmp_path):
    """The AXI4-Stream wrapper around a design with a folded Conv and head: == predict() with gaps and
    backpressure and without (the pixel countdown is the Conv's; the head fits in the image interval);
    control: a head weight one LSB off in the emulator differs."""
    from fpga4ml.backends.verilog import axi
    from verilog_models import require_verilator

    require_verilator()
    reuse = {'c1': 4, 'fc1': 4, 'fc2': 2}
    model = convert(head_cnn(), reuse, tmp_path, name='hx', Interface='axi_stream')
    x = images(model, 90, seed=8)
    want = model.predict(x)
    for seed, gap, stall in ((3, 30, 30), (4, 0, 0)):
        outs, last, stats = axi.simulate(model, x, seed=seed, gap=gap, stall=stall)
        assert np.array_equal(outs[0], want) and last.all() and stats['violations'] == 0
    changed = convert(head_cnn(), reuse)
    kernel = changed.graph['fc2'].qweights['kernel']
    kernel.flat[np.argmax(np.abs(kernel))] += 1
    assert not np.array_equal(outs[0], changed.predict(x))
