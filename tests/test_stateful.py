"""The stateful netlist (backends/verilog/stateful.py): registers fed back across iterations, counters,
counter-indexed ROMs and multiplexers, its cycle-level interpreter, and its Verilog under Verilator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fpga4ml.backends.verilog.emit import port_entry, port_names
from fpga4ml.backends.verilog.netlist import NetlistError
from fpga4ml.backends.verilog.stateful import Machine, Simulator, Timing, run_stream, write_machine
from fpga4ml.fixed import parse_precision

X_T = parse_precision('fixed<8,4>')               # inputs: [-8, 7.9375], LSB 2^-4
ACC_T = parse_precision('fixed<10,6,TRN,SAT>')    # the running sum saturates at [-32, 31.9375]


def running_sum_machine(acc_t=ACC_T) -> tuple[Machine, Timing]:
    """y_t = sat(y_{t-1} + x_t) over the accepted inputs: one register fed back into its own input.

    valid_out is valid_in one clock later (latency 1); the sum is also counted modulo 3 by a counter
    (a ROM of next values) and the count shown next to it through a counter-indexed multiplexer.
    """
    m = Machine()
    x, = m.add_input('x', (1,), X_T)
    valid = m.valid_in()
    acc = m.register(acc_t.min_mantissa, acc_t.max_mantissa, acc_t.frac, reset=0, name='acc')
    m.connect(acc, m.cast(m.add(acc, x), acc_t), valid)
    count = m.register(0, 2, 0, reset=0, name='count')
    m.connect(count, m.rom(count, np.array([1, 2, 0]), 0, 0), valid)
    shown = m.mux(count, [m.const(10, 0), m.const(11, 0), m.const(12, 0)])
    valid_out = m.register(0, 1, 0, reset=0, name='valid_out')
    m.connect(valid_out, valid)
    m.valid_out = valid_out
    m.add_output('sum', (1,), acc_t, [acc])
    m.add_output('count', (1,), parse_precision('fixed<5,5>'), [shown])
    return m, Timing(1, 1)


def python_running_sum(xs: np.ndarray, overflow: str = 'SAT') -> tuple[np.ndarray, np.ndarray]:
    """The reference: a Python loop over the mantissas (LSBs agree: 2^-4)."""
    lo, hi = ACC_T.min_mantissa, ACC_T.max_mantissa
    acc, count, sums, counts = 0, 0, [], []
    for x in xs:
        acc += int(x)
        if overflow == 'SAT':
            acc = min(max(acc, lo), hi)
        else:
            acc = (acc - lo) % (hi - lo + 1) + lo
        count = (count + 1) % 3
        sums.append(acc)
        counts.append(10 + count)
    return np.array(sums), np.array(counts)


def stimulus(n: int = 200, seed: int = 0) -> np.ndarray:
    """Mostly positive inputs, so the sum reaches the saturation bound and stays there, then falls."""
    rng = np.random.default_rng(seed)
    xs = rng.integers(X_T.min_mantissa, X_T.max_mantissa + 1, size=n)
    xs[: n // 2] = np.minimum(np.abs(xs[: n // 2]), X_T.max_mantissa)
    xs[n // 2:] = -np.abs(xs[n // 2:])
    return xs


def interpreted(m: Machine, xs: np.ndarray, gaps: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The accepted results of the interpreter: one valid_in per input (bubbles and ce=0 clocks with gaps)."""
    rng = np.random.default_rng(1)
    data, valid, ce = [], [], []
    for x in xs:
        while gaps and rng.random() < 0.4:
            data.append(int(rng.integers(-100, 100)))
            bubble = rng.random() < 0.5
            valid.append(not bubble)  # a ce = 0 clock may carry valid_in = 1: nothing is accepted
            ce.append(bubble)
        data.append(int(x))
        valid.append(True)
        ce.append(True)
    for _ in range(2):
        data.append(0), valid.append(False), ce.append(True)
    shown, vout = run_stream(m, [np.array(data)[:, None]], np.array(valid) & np.array(ce), np.array(ce))
    return shown[0][vout, 0], shown[1][vout, 0]


def test_running_sum_interpreter_equals_python_loop():
    m, _ = running_sum_machine()
    xs = stimulus()
    want_sum, want_count = python_running_sum(xs)
    assert want_sum.max() == ACC_T.max_mantissa and want_sum.min() == ACC_T.min_mantissa  # it saturates both ways
    for gaps in (False, True):
        got_sum, got_count = interpreted(m, xs, gaps)
        assert np.array_equal(got_sum, want_sum) and np.array_equal(got_count, want_count)
    # negative control: a wrapping accumulator differs from the saturating one
    wrap_sum, _ = python_running_sum(xs, 'WRAP')
    assert not np.array_equal(interpreted(m, xs)[0], wrap_sum)


def test_register_reset_enable_and_ce():
    m, _ = running_sum_machine()
    sim = Simulator(m, batch=2)
    sim.reset()
    sim.settle([np.array([[5], [5]])], [1, 0])
    sim.edge(ce=[True, True])
    sim.settle([np.array([[3], [3]])], [1, 1])
    sim.edge(ce=[False, True])  # instance 0 frozen by ce = 0
    sim.settle([np.array([[0], [0]])], 0)
    assert sim.outputs()[0][:, 0].tolist() == [5, 3] and sim.valid_out().tolist() == [True, True]
    sim.edge(rst=True)
    sim.settle([np.array([[0], [0]])], 0)
    assert sim.outputs()[0][:, 0].tolist() == [0, 0] and sim.valid_out().tolist() == [False, False]


def test_machine_checks():
    m = Machine()
    x, = m.add_input('x', (1,), X_T)
    reg = m.register(-4, 4, X_T.frac, name='r')
    with pytest.raises(NetlistError, match=r"register 'r' \[-4, 4\] / 2\^4 cannot hold signal"):
        m.connect(reg, x)
    with pytest.raises(NetlistError, match='registers without an input'):
        m.check()
    with pytest.raises(NetlistError, match='use stateful.Simulator'):
        m.evaluate([np.zeros((1, 1))])
    with pytest.raises(NetlistError, match='selector bounds'):
        m.mux(m.register(0, 3, 0), [x, x])


def write_design(m: Machine, timing: Timing, root, top: str) -> None:
    """The module and its manifest (the Verilator harness's design contract)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f'{top}.v').write_text(write_machine(m, timing, top))
    ins, outs = port_names(m)
    (root / 'manifest.json').write_text(json.dumps({
        'top': top, 'files': [f'{top}.v'], 'latency': timing.latency, 'ii': timing.ii,
        'inputs': [port_entry(p, b) for p, b in zip(m.inputs, ins)],
        'outputs': [port_entry(p, b) for p, b in zip(m.outputs, outs)]}))


@pytest.mark.slow
def test_running_sum_verilator_equals_interpreter(tmp_path):
    from fpga4ml.backends.verilog.verilator import compile_rtl, lint

    m, timing = running_sum_machine()
    write_design(m, timing, tmp_path / 'acc', 'running_sum')
    assert lint(tmp_path / 'acc') == []
    sim = compile_rtl(tmp_path / 'acc', cache_dir=tmp_path / 'cache', progress=False)
    xs = stimulus()
    want_sum, want_count = interpreted(m, xs)
    for gaps in (False, True):  # the harness's bubbles and ce = 0 clocks: only accepted inputs add
        got_sum, got_count = sim.run([xs[:, None]], gaps=gaps, seed=3)
        assert np.array_equal(got_sum[:, 0], want_sum) and np.array_equal(got_count[:, 0], want_count)
    # negative control: the same machine with a wrapping accumulator is another design
    m_wrap, _ = running_sum_machine(parse_precision('fixed<10,6,TRN,WRAP>'))
    write_design(m_wrap, timing, tmp_path / 'wrap', 'running_sum')
    wrapped = compile_rtl(tmp_path / 'wrap', cache_dir=tmp_path / 'cache', progress=False).run([xs[:, None]])
    assert not np.array_equal(wrapped[0][:, 0], want_sum)
    assert np.array_equal(wrapped[0][:, 0], python_running_sum(xs, 'WRAP')[0])


def clocked_stimulus(port_types, cycles: int, ii: int, seed: int = 0):
    """Per-clock inputs (junk between accepted vectors), valid_in at most once every ii enabled clocks
    (with random longer gaps) and ce with random 0 clocks (a ce = 0 clock may carry valid_in = 1)."""
    rng = np.random.default_rng(seed)
    data = [rng.integers(t.min_mantissa, t.max_mantissa + 1, size=(cycles,) + shape) for t, shape in port_types]
    ce = rng.random(cycles) > 0.2
    valid = np.zeros(cycles, dtype=bool)
    hold = 0
    for t in range(cycles):
        valid[t] = hold == 0 and rng.random() < 0.7 or not ce[t] and rng.random() < 0.5
        if ce[t]:
            hold = ii - 1 if valid[t] else max(hold - 1, 0)
    return data, valid, ce


def assert_same_trace(got, want) -> None:
    """Outputs and valid_out equal in every clock; names the first clock that differs."""
    (outs_a, vout_a), (outs_b, vout_b) = got, want
    diff = vout_a != vout_b
    for a, b in zip(outs_a, outs_b):
        diff |= np.any(a.reshape(len(a), -1) != b.reshape(len(b), -1), axis=1)
    assert not diff.any(), f'traces differ in {int(diff.sum())} of {len(diff)} clocks, first in clock {np.argmax(diff)}'


def folded_mlp():
    """The test MLP 16-12-8-5 with narrow saturating accumulators, every Dense at ReuseFactor 4."""
    from fpga4ml.backends.verilog.design import design
    from fpga4ml.convert import convert_graph

    from verilog_models import mlp_graph
    cfg = {'Model': {'Precision': {'default': 'fixed<8,3>', 'accum': 'fixed<10,4,RND,SAT>'}, 'ReuseFactor': 4}}
    model = convert_graph(mlp_graph(0, sizes=(16, 12, 8, 5), softmax=False), cfg, backend='Verilog')
    d = design(model)
    return d.machine, d.timing


@pytest.mark.slow
def test_interpreter_equals_verilator_clock_by_clock(tmp_path):
    """The stateful interpreter's trace (outputs and valid_out in every clock, junk and bubbles included)
    equals Verilator's on the same stimulus: a running accumulator and a folded MLP at RF 4; one changed
    weight ROM word makes Verilator's trace differ."""
    from fpga4ml.backends.verilog.stateful import trace_cycles
    from fpga4ml.backends.verilog.verilator import compile_rtl

    cases = {'running_sum': running_sum_machine(), 'folded_mlp': folded_mlp()}
    for name, (m, timing) in cases.items():
        data, valid, ce = clocked_stimulus([(p.type, p.shape) for p in m.inputs], 600, timing.ii)
        write_design(m, timing, tmp_path / name, name)
        sim = compile_rtl(tmp_path / name, cache_dir=tmp_path / 'cache', progress=False)
        want = trace_cycles(m, data, valid, ce)
        assert want[1].sum() > 50, 'the stimulus must produce results'
        assert_same_trace(sim.trace(data, valid, ce), want)
    # negative control: one weight ROM word of the folded MLP changed in the Verilog only
    m, timing = cases['folded_mlp']
    rom = next(m[a] for s in m.signals if s.op == 'mul' for a in s.args if m[a].op == 'rom')
    k = int(np.flatnonzero(rom.p['values'])[0])
    rom.p['values'] = rom.p['values'].copy()
    rom.p['values'][k] += 1
    write_design(m, timing, tmp_path / 'changed', 'folded_mlp')
    changed = compile_rtl(tmp_path / 'changed', cache_dir=tmp_path / 'cache', progress=False)
    with pytest.raises(AssertionError, match='traces differ'):
        assert_same_trace(changed.trace(data, valid, ce), want)
