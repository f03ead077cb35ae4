"""The Verilog back end's netlist computes the emulator's bits (no simulator needed).

The lowering (graph -> netlist of exact-width integer ops) is checked by interpreting the
netlist on 10,000 inputs per model and precision, including inputs beyond the input type's
range; RTL simulation (test_verilog_rtl.py) then checks the emitted Verilog.
"""

from __future__ import annotations

import numpy as np
import pytest

from fpga4ml.backends.verilog.adder_graph import constant_matvec, csd
from fpga4ml.backends.verilog.lower import lower_graph
from fpga4ml.backends.verilog.netlist import Netlist, NetlistError, Port, bits_for
from fpga4ml.backends.verilog.pipeline import STAGE_OVERHEAD_NS, delay_ns, schedule
from fpga4ml.config import ConfigError
from fpga4ml.fixed import parse_precision

from verilog_models import GRAPHS, PRECISIONS, convert, random_inputs


def netlist_vs_emulator(model, n: int = 10_000, seed: int = 0):
    """(netlist outputs, emulator outputs) as mantissas for the same quantized inputs."""
    xs = random_inputs(model, n, seed)
    graph = model.graph
    mantissas = [graph[name].result_type.quantize(x) for name, x in zip(graph.inputs, xs)]
    nl = lower_graph(graph, model.intervals)
    got = nl.evaluate(mantissas)
    ref = model.predict_mantissas(xs if len(xs) > 1 else xs[0])
    return got, [ref[name] for name in graph.outputs], nl


CASES = [(g, p) for g in GRAPHS if g not in ('econt', 'jsc') for p in PRECISIONS if p != 'econt'] + \
    [('econt', 'econt'), ('econt', 'auto'), ('econt', 'narrow_sat'), ('jsc', 'hls4ml_default'), ('jsc', 'auto')]


@pytest.mark.parametrize('graph,precision', CASES, ids=[f'{g}-{p}' for g, p in CASES])
def test_netlist_matches_emulator(graph, precision):
    model = convert(GRAPHS[graph](), precision)
    got, want, _ = netlist_vs_emulator(model)
    for name, g, w in zip(model.graph.outputs, got, want):
        bad = np.argwhere(g != w)
        assert not len(bad), f'{graph}/{precision}: output {name!r} differs at {bad[:3].tolist()}: {g[tuple(bad[0])]} vs {w[tuple(bad[0])]}'


def test_netlist_negative_control_one_weight():
    model = convert(GRAPHS['mlp'](), 'auto')
    model.compile()  # the emulator keeps its own copy of the weights
    node = model.graph['fc1']
    k = tuple(np.argwhere(node.qweights['kernel'] != 0)[0])
    node.qweights['kernel'][k] += 1  # only the netlist sees the change
    got, want, _ = netlist_vs_emulator(model, n=2000)
    assert not np.array_equal(got[0], want[0])


def test_dsp_multipliers_give_the_same_bits():
    model = convert(GRAPHS['mlp'](), 'auto', model_extra={'Multipliers': 'dsp'})
    got, want, nl = netlist_vs_emulator(model, n=3000)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert nl.stats().get('mul', 0) > 20
    adders = convert(GRAPHS['mlp'](), 'auto')
    assert lower_graph(adders.graph, adders.intervals).stats().get('mul', 0) < nl.stats()['mul']


def test_invalid_verilog_settings_raise():
    with pytest.raises(ConfigError, match="Multipliers='lut'"):
        convert(GRAPHS['mlp'](), 'auto', model_extra={'Multipliers': 'lut'})
    with pytest.raises(ConfigError, match='Pipeline=0'):
        convert(GRAPHS['mlp'](), 'auto', model_extra={'Pipeline': 0})


# ---------------------------------------------------------------- adder graphs

def test_csd_digits_reconstruct_and_are_canonical():
    for v in range(-600, 600):
        digits = csd(v)
        assert sum(g << s for s, g in digits) == v
        shifts = [s for s, _ in digits]
        assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:]))  # no two adjacent non-zero digits


@pytest.mark.parametrize('cse', [True, False])
def test_constant_matvec_exact_and_cse_saves_adders(cse):
    rng = np.random.default_rng(5)
    w = rng.integers(-31, 32, (24, 16))
    w[rng.random(w.shape) < 0.4] = 0
    t = parse_precision('fixed<8,3>')
    nl = Netlist()
    xs = nl.add_input('x', (24,), t)
    ys = constant_matvec(nl, xs, w, list(range(16)), frac=t.frac + 5, cse=cse)
    nl.outputs.append(Port('y', (16,), t, ys))
    x = rng.integers(t.min_mantissa, t.max_mantissa + 1, (2000, 24))
    assert np.array_equal(nl.evaluate([x])[0], x @ w + np.arange(16))
    adders = nl.stats()['add']
    plain = sum(max(len(csd(v)), 0) for v in w.ravel()) - 16 + int(np.count_nonzero(np.arange(16)))
    if cse:
        assert adders < 0.8 * plain
    for sig in nl.signals:  # every wire is exactly as wide as its bounds need
        assert sig.width == bits_for(sig.lo, sig.hi)


def test_netlist_rejects_too_wide_signals():
    nl = Netlist()
    a = nl.const(1 << 59, 0)
    with pytest.raises(NetlistError, match='bits'):
        nl.add(a, a, 3, 3)


# ---------------------------------------------------------------- pipelining

def test_schedule_modes_and_latency():
    model = convert(GRAPHS['mlp'](), 'auto')
    nl = lower_graph(model.graph, model.intervals)
    comb = schedule(nl, 5.0, 'none')
    assert comb.latency == 0 and max(comb.stage) == 0
    fast = schedule(nl, 2.0, 'auto')
    slow = schedule(nl, 10.0, 'auto')
    assert fast.latency > slow.latency >= 1
    longest_op = max(delay_ns(sig, nl) for sig in nl.signals)  # one op is never split
    assert fast.critical_ns <= max(2.0 - STAGE_OVERHEAD_NS, longest_op) and slow.critical_ns <= 10.0
    one = schedule(nl, 5.0, 1)
    three = schedule(nl, 5.0, 3)
    assert one.latency > three.latency
    for sched in (one, three, fast, slow):  # every argument is produced at the same or an earlier stage
        for sig in nl.signals:
            assert all(sched.stage[a] <= sched.stage[sig.id] for a in sig.args if not nl[a].is_const)
        assert max(sched.stage[s] for p in nl.outputs for s in p.signals) <= sched.latency - 1
