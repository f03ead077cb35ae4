"""Quality-of-results mechanisms of the Verilog back end: a non-negative signal's sign bit is a constant.

emit.py writes the sign bit of every non-negative signal (always 0) as a constant, so synthesis
neither computes it nor registers it; the cost model and the scheduler count the bits that remain
(`Signal.live_bits`). The Verilator tests (test_verilog_rtl.py: the 'jsc' and 'cnn' designs with
ReLU and unsigned activations) check the emitted bits against the emulator.
"""

from __future__ import annotations

import numpy as np

from fpga4ml.backends.verilog import adder_graph
from fpga4ml.backends.verilog.adder_graph import constant_matvec
from fpga4ml.backends.verilog.emit import write_module
from fpga4ml.backends.verilog.estimate import binary_add_luts, estimate_netlist
from fpga4ml.backends.verilog.netlist import Netlist, Port
from fpga4ml.backends.verilog.pipeline import schedule
from fpga4ml.fixed import parse_precision

UNSIGNED = parse_precision('ufixed<6,0>')
SIGNED = parse_precision('fixed<7,1>')


def layer(t, seed: int = 0, n_in: int = 16, n_out: int = 6) -> Netlist:
    """A constant product over inputs of type t (ReLU outputs when unsigned), bias included."""
    return layer_and_weights(t, seed, n_in, n_out)[0]


def layer_and_weights(t, seed: int = 0, n_in: int = 16, n_out: int = 6):
    """(netlist, weights, bias) of `layer`."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-32, 32, (n_in, n_out))
    bias = rng.integers(-500, 500, n_out)
    nl = Netlist()
    xs = nl.add_input('x', (n_in,), t)
    ys = constant_matvec(nl, xs, w, list(bias), frac=t.frac + 5)
    nl.outputs.append(Port('y', (n_out,), t, ys))
    return nl, w, bias


def sign_bit_reads(nl: Netlist, text: str) -> list[str]:
    """Lines of the datapath that read the sign bit of a non-negative signal."""
    body = text.split('wire unused_bits')[0]
    bad = []
    for sig in nl.signals:
        if sig.lo >= 0 and not sig.is_const and sig.op != 'input':
            top = f's{sig.id}[{sig.width - 1}]'
            bad += [line for line in body.splitlines() if top in line and not line.lstrip().startswith('wire')]
    return bad


def test_emitted_verilog_never_reads_a_non_negative_sign_bit():
    nl = layer(UNSIGNED)
    text = write_module(nl, schedule(nl, 5.0, 'none'), 'top')
    positive = [s for s in nl.signals if s.lo >= 0 and s.op == 'add']
    assert len(positive) > 10
    assert sign_bit_reads(nl, text) == []
    # control: a layer of signed inputs has signed sums whose sign bits are read (sign extension)
    signed = layer(SIGNED)
    assert any(f's{s.id}[{s.width - 1}]' in write_module(signed, schedule(signed, 5.0, 'none'), 'top')
               for s in signed.signals if s.op == 'add' and s.lo < 0)


def test_live_bits_and_register_count_follow_the_constant_sign_bit():
    nl = layer(UNSIGNED)
    for sig in nl.signals:
        assert sig.live_bits == sig.width - (1 if sig.lo >= 0 else 0)
    sched = schedule(nl, 5.0, 1)  # one adder level per stage: many registers
    last = sched.last_use(nl)
    want = sum(s.live_bits * max(0, last[s.id] - sched.stage[s.id]) for s in nl.signals if not s.is_const)
    assert estimate_netlist(nl, sched)['FF'] == want + sched.latency


def testbinary_add_luts_credits_zero_extension_only_for_non_negative_operands():
    nl = Netlist()
    u = nl.add_input('u', (2,), UNSIGNED)  # [0, 63]: 7-bit signals, 6 live bits
    s = nl.add_input('s', (2,), parse_precision('fixed<6,0>'))  # [-32, 31]: 6 bits, all live
    wide_u = nl.add(u[0], u[1], 0, 8, frac=6)  # u0 + (u1 << 8) in [0, 16191]: 15 bits, 14 live
    wide_s = nl.add(s[0], s[1], 0, 8, frac=6)  # in [-8224, 7967]: 15 bits
    assert (nl[wide_u].live_bits, nl[wide_s].width) == (14, 15)
    # bits 0..7 pass through; above bit 7 u0 is a zero extension (6 bits: half a LUT each), s0 a sign extension
    assert binary_add_luts(nl[wide_u], nl) == 14 - 8 - 6 / 2
    assert binary_add_luts(nl[wide_s], nl) == 15 - 8
    narrow_u = nl.add(u[1], u[0], 3, 0, frac=6)  # (u1 << 3) + u0 in [0, 567]: 10 live bits, u0 zero above bit 5
    narrow_s = nl.add(s[1], s[0], 3, 0, frac=6)  # in [-288, 279]: 10 bits
    assert binary_add_luts(nl[narrow_u], nl) == 10 - 3 - 4 / 2
    assert binary_add_luts(nl[narrow_s], nl) == 10 - 3


def test_zero_extended_netlist_still_exact_with_negative_control():
    nl, w, bias = layer_and_weights(UNSIGNED, seed=3)
    x = np.random.default_rng(4).integers(0, 64, (2000, 16))
    x[:20] = 63
    got = nl.evaluate([x])[0]
    assert np.array_equal(got, x @ w + bias)
    w[2, 1] += 1
    assert not np.array_equal(got, x @ w + bias)


def test_small_matrices_are_searched_in_bigger_blocks(monkeypatch):
    assert adder_graph.block_rows(64, 32) == adder_graph.SMALL_BLOCK_ROWS == 64
    assert adder_graph.block_rows(64, 64) == adder_graph.BLOCK_ROWS == 32

    def adders():
        nl, w, bias = layer_and_weights(UNSIGNED, seed=6, n_in=64, n_out=32)
        x = np.random.default_rng(7).integers(0, 64, (500, 64))
        assert np.array_equal(nl.evaluate([x])[0], x @ w + bias)
        return nl.stats()['add']
    whole = adders()
    monkeypatch.setattr(adder_graph, 'SMALL_MATRIX', 0)  # control: the 32-input blocks of big matrices
    assert whole < adders()
