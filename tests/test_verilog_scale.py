"""Verilog generation at scale: the budgeted common-subexpression search and progress reporting.

A wide layer's search is split into column groups when its blocks hold more term pairs than
adder_graph.PAIR_BUDGET; the groups reuse each other's patterns. Forcing a tiny budget must still
give the emulator's bits (with a negative control), deterministically. The compiled search
(cse.py) must equal the same function run as plain Python.
"""

from __future__ import annotations

import numpy as np
import pytest

from fpga4ml.backends.verilog import adder_graph, cse
from fpga4ml.backends.verilog.adder_graph import constant_matvec
from fpga4ml.backends.verilog.design import write
from fpga4ml.backends.verilog.lower import lower_graph
from fpga4ml.backends.verilog.netlist import Netlist, Port
from fpga4ml.fixed import parse_precision

from test_verilog_lowering import netlist_vs_emulator
from verilog_models import GRAPHS, convert


@pytest.fixture
def tiny_budget(monkeypatch):
    """PAIR_BUDGET = 300 (JSC's 64 x 32 layer then needs many groups); records every search's result."""
    runs = []
    search = adder_graph._greedy_run

    def recording(*args):
        result = search(*args)
        runs.append(result)
        return result
    monkeypatch.setattr(adder_graph, 'PAIR_BUDGET', 300)
    monkeypatch.setattr(adder_graph, '_greedy_run', recording)
    return runs


def test_budgeted_cse_is_bit_exact_and_reuses_patterns(tiny_budget):
    model = convert(GRAPHS['jsc'](), 'auto')
    got, want, nl = netlist_vs_emulator(model, n=4000)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert len(tiny_budget) > 20  # the Dense layers were searched in many column groups
    assert any(reused.any() for _, _, reused, *_ in tiny_budget)  # later groups reuse earlier patterns
    again = lower_graph(model.graph, model.intervals)  # deterministic
    assert [(s.op, s.args, s.p.get('sa'), s.p.get('sb')) for s in again.signals] == \
        [(s.op, s.args, s.p.get('sa'), s.p.get('sb')) for s in nl.signals]


def test_budgeted_cse_negative_control_one_weight(tiny_budget):
    model = convert(GRAPHS['jsc'](), 'auto')
    model.compile()  # the emulator keeps its own copy of the weights
    node = model.graph['fc1']
    k = tuple(np.argwhere(node.qweights['kernel'] != 0)[-1])
    node.qweights['kernel'][k] += 1  # only the netlist sees the change
    got, want, _ = netlist_vs_emulator(model, n=2000)
    assert not np.array_equal(got[0], want[0])


def test_budgeted_matvec_exact_against_numpy(tiny_budget):
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (40, 30))
    w[rng.random(w.shape) < 0.2] = 0
    t = parse_precision('fixed<8,3>')
    nl = Netlist()
    xs = nl.add_input('x', (40,), t)
    ys = constant_matvec(nl, xs, w, list(range(30)), frac=t.frac + 7)
    nl.outputs.append(Port('y', (30,), t, ys))
    x = rng.integers(t.min_mantissa, t.max_mantissa + 1, (3000, 40))
    assert np.array_equal(nl.evaluate([x])[0], x @ w + np.arange(30))
    assert len(tiny_budget) > 3


def test_compiled_search_equals_plain_python():
    rng = np.random.default_rng(11)
    w = rng.integers(-63, 64, (20, 12))
    sig, shift, sign, block = adder_graph._csd_terms(np.arange(20, dtype=np.int64), w)
    starts = np.searchsorted(block, np.arange(12 + 1))
    none = np.zeros(0, np.int64)
    args = (sig, shift, sign, block, starts, 100, none, none, -1)
    compiled, plain = cse._greedy_run(*args), cse._greedy(*args)
    assert len(compiled[0]) > 10
    for a, b in zip(compiled, plain):
        assert np.array_equal(a, b)


def test_progress_lines_on_stderr(tmp_path, capsys):
    model = convert(GRAPHS['mlp'](), 'auto', output_dir=str(tmp_path / 'quiet'), project_name='mlp_quiet')
    write(model, progress=False)
    assert capsys.readouterr().err == ''
    model = convert(GRAPHS['mlp'](), 'auto', output_dir=str(tmp_path / 'loud'), project_name='mlp_loud')
    write(model, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith('[verilog') and '(Dense) lowered' in line for line in err), err
    assert any('pipeline schedule' in line for line in err) and any('mlp_loud.v text' in line for line in err)
