"""The AXI4-Stream wrapper around designs that take a vector every II > 1 clocks.

A folded MLP (ReuseFactor 4 on one layer: II 4) and a static recurrent model (one cell reused over
the sequence: II = steps x the cell's stages) behind `<top>_axis`: Verilator with random TVALID gaps
and TREADY backpressure gives every output beat equal to the emulator's, TLAST follows its input
beat, no stalled output changes (the harness checks AXI4-Stream stability every clock), and the
wrapper never takes two vectors less than II clocks apart. Negative control: a wrapper whose
countdown is removed (tready high every clock) feeds the folded design too fast, and the run fails.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip('keras')

from fpga4ml.backends.verilog import axi  # noqa: E402
from fpga4ml.backends.verilog.design import project_files  # noqa: E402
from test_axi_stream import needs_verilator  # noqa: E402
from test_reuse import folded_model  # noqa: E402
from test_rnn_verilog_static import convert, stacked  # noqa: E402


def folded(tmp_path):
    model = folded_model(tmp_path, 'fixed16_6', 1, name='fax', fc0=4)
    model.config['Model']['Interface'] = 'axi_stream'
    return model


def test_countdown_in_the_wrapper_text(tmp_path):
    files = project_files(folded(tmp_path))
    info = json.loads(files['manifest.json'])
    text = files['fax_axis.v']
    assert info['ii'] == 4 and info['axi_stream']['top'] == 'fax_axis'
    assert 'reg [1:0] wait_count;  // advancing clocks before the next vector (II = 4)' in text
    assert "wait_count <= s_axis_tvalid & s_axis_tready ? 2'd3 :" in text
    assert 'assign s_axis_tready = advance & running & can_take;' in text
    assert '.valid_in(s_axis_tvalid & running & can_take)' in text


def _inputs(model, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = model.graph[model.graph.inputs[0]].shape
    return rng.normal(0, 2, (n,) + tuple(shape)) * np.where(rng.random((n,) + (1,) * len(shape)) < 0.1, 30, 1)


@needs_verilator
def test_folded_design_behind_axi_matches_emulator(tmp_path):
    model = folded(tmp_path)
    root = model.write()
    x = _inputs(model, 300)
    want = model.predict(x)
    for seed, gap, stall in ((1, 30, 30), (2, 0, 0), (3, 5, 70)):
        outs, last, stats = axi.simulate(model, x, seed=seed, gap=gap, stall=stall)
        np.testing.assert_array_equal(outs[0], want)
        np.testing.assert_array_equal(last, np.random.default_rng(seed).random(len(x)) < 0.2)
        assert stats['violations'] == 0
        assert stats['clocks'] >= 4 * (len(x) - 1)  # one vector every II = 4 clocks at most
    # negative control: without the countdown the design is fed every clock and results are lost or wrong
    text = (root / 'fax_axis.v').read_text()
    (root / 'fax_axis.v').write_text(text.replace('wire can_take = wait_count == 0;', "wire can_take = 1'b1;"))
    sim = axi.compile_axis(root)
    mantissas = [model.graph['x'].result_type.quantize(x)]
    try:
        got, _, _ = sim.run(mantissas, np.zeros(len(x), bool), seed=2, gap=0, stall=0)
    except RuntimeError:
        return  # fewer output beats than input beats came out: caught
    out = model.graph[model.graph.outputs[0]].result_type
    assert not np.array_equal(got[0], out.quantize(want).reshape(len(x), -1))


@needs_verilator
@pytest.mark.slow
def test_static_recurrent_design_behind_axi_matches_emulator(tmp_path):
    model = convert(stacked(3), tmp_path, Interface='axi_stream')
    model.write()
    x = _inputs(model, 120, seed=4)
    outs, last, stats = axi.simulate(model, x, seed=5, gap=30, stall=30)
    np.testing.assert_array_equal(outs[0], model.predict(x))
    assert stats['violations'] == 0
