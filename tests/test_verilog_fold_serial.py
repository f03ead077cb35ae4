"""Folding 'adders' (backends/verilog/fold_serial.py): digit-serial, multiplier-free folding of Dense and Conv.

With ReuseFactor R and Folding 'adders', a folded row runs its inputs' R digits (most significant
first) through one constant-matrix adder graph and accumulates acc <- (acc << B) + P. The cycle-level
interpreter must equal the emulator bit for bit ('auto' types, the JSC-like MLP of test_reuse.py at
R 2, 4, 8, mixed with 'mac' layers, Conv layers with padding, a wrapping accumulator that overflows),
Verilator must equal predict() on 10,000 inputs (values beyond the input type) and the interpreter
clock by clock; a changed adder-graph constant or a digit shift one off must break the equality; a
non-exact accumulator raises naming the layer; R > W (sign-extended digits) works; no multiplier is built.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fpga4ml.backends.verilog.design import design, project_files
from fpga4ml.backends.verilog.fold import FoldedDesign
from fpga4ml.backends.verilog.stateful import run_vectors
from fpga4ml.config import ConfigError
from fpga4ml.convert import convert_graph
from fpga4ml.ir import Graph, GraphError

from test_reuse import SIZES, assert_cycles, assert_same, input_mantissas
from test_verilog_fold_conv import SAME_3X3, cnn_graph, conv1d_graph, conv2d_graph, emulated, mantissas
from test_verilog_fold_conv import verilator_check as conv_verilator_check
from verilog_models import mlp_graph

PRECISIONS = {
    'auto': {'default': 'fixed<8,3>', 'accum': 'auto', 'result': 'auto'},
    # products land exactly (LSB 2^-10) in a 12-bit wrapping accumulator that overflows: wrapped once at the end
    'wrap': {'default': 'fixed<8,3>', 'accum': 'fixed<12,2>'},
    'fixed16_6': 'fixed<16,6>',  # hls4ml's default: every product rounds into the accumulator
    'sat': {'default': 'fixed<8,3>', 'accum': 'fixed<12,2,TRN,SAT>'},  # exact products, saturating sums
    'narrow_in': {'default': 'fixed<4,2>', 'weight': 'fixed<8,3>', 'bias': 'fixed<8,3>', 'accum': 'auto',
                  'result': 'auto'},  # 4-bit inputs
}


def convert(tmp_path, graph: Graph, precision: str = 'auto', reuse: int = 1, name: str = 'serial',
            folding: str = 'adders', **layers):
    """The graph for the Verilog back end at a Model-level ReuseFactor and Folding, with per-layer
    overrides: layers={name: R} or {name: (R, folding)}."""
    names = {}
    for k, v in layers.items():
        r, f = v if isinstance(v, tuple) else (v, None)
        names[k] = {'ReuseFactor': r, **({'Folding': f} if f else {})}
    cfg = {'Model': {'Precision': PRECISIONS[precision], 'ReuseFactor': reuse, 'Folding': folding},
           'LayerName': names}
    return convert_graph(graph, cfg, output_dir=str(tmp_path / name), project_name=name, backend='Verilog')


def mlp(tmp_path, reuse: int, precision: str = 'auto', softmax: bool = False, name: str = 'mlp', **layers):
    """The JSC-like MLP of test_reuse.py (16-12-8-5) folded by Folding 'adders'."""
    return convert(tmp_path, mlp_graph(0, sizes=SIZES, softmax=softmax), precision, reuse, name, **layers)


def folded_multipliers(m) -> list:
    """Multipliers of folded layers: those reading a counter-indexed multiplexer or ROM (a softmax's are not)."""
    def folded(a):
        return m[a].op == 'mux' or m[a].op == 'rom' and m[m[a].args[0]].op == 'reg'
    return [s for s in m.signals if s.op == 'mul' and any(folded(a) for a in s.args)]


def check_interpreter(model, xs) -> FoldedDesign:
    """The folded design's interpreter equals the emulator on input mantissas xs; no folded layer multiplies."""
    d = design(model)
    assert isinstance(d, FoldedDesign)
    assert not folded_multipliers(d.machine), 'Folding adders must build no multiplier'
    assert_same(run_vectors(d.machine, d.timing, xs), emulated(model, xs))
    return d


@pytest.mark.parametrize('reuse', [2, 4, 8])
def test_mlp_interpreter_equals_emulator(tmp_path, reuse):
    model = mlp(tmp_path, reuse)
    d = check_interpreter(model, input_mantissas(model, 3000))  # a tenth far outside the input type
    assert not [s for s in d.machine.signals if s.op == 'mul']  # none at all in this network
    assert d.timing.stages == {'fc0': reuse, 'fc1': reuse, 'fc2': reuse} and d.timing.ii == reuse
    assert d.timing.latency == 3 * (reuse + 1) + sum(d.timing.cuts.values())
    est = model.estimate()
    assert (est['DSP'], est['multipliers'], est['ii']) == (0, 0, reuse)


def test_mixed_with_mac_and_unrolled_layers(tmp_path):
    # fc0 digit-serial at R 4, fc1 multiply-accumulate at R 2, fc2 unrolled; softmax after
    model = mlp(tmp_path, 1, softmax=True, fc0=4, fc1=(2, 'mac'))
    d = design(model)
    assert 0 < len(folded_multipliers(d.machine)) <= 12 * 8 // 2  # fc1's: the check above sees mac layers
    xs = input_mantissas(model, 2000)
    assert_same(run_vectors(d.machine, d.timing, xs), emulated(model, xs))
    info = json.loads(project_files(model)['manifest.json'])
    assert info['folding'] == {'architecture': 'mixed', 'architectures': {'fc0': 'adders', 'fc1': 'mac'},
                               'reuse_factors': {'fc0': 4, 'fc1': 2}, 'pipeline_cuts': d.timing.cuts}
    lat = 8 + sum(d.timing.cuts.values())  # (R + 1) per folded layer, plus its pipeline cuts
    assert (info['ii'], info['latency'], model.latency) == (4, lat, lat)
    assert_cycles(model, ii=4, latency=lat)


def test_wrapping_accumulator_that_overflows(tmp_path):
    # exact products into a 12-bit WRAP accumulator: the sum overflows and wraps once, as the emulator's
    model = mlp(tmp_path, 4, 'wrap')
    xs = input_mantissas(model, 2000)
    check_interpreter(model, xs)
    _, traced = model.trace(model.graph['x'].result_type.to_float(xs[0]))
    assert traced.stats['fc0'].overflow > 100  # the accumulator wraps (its result cast cannot overflow)


CONV_CASES = {  # graph, {layer: R}
    'same_rf4': (lambda: conv2d_graph(SAME_3X3), {'conv': 4}),  # padding cells: constant 0 digits
    'strided_grouped_rf6': (lambda: conv2d_graph(SAME_3X3, (2, 2), groups=2), {'conv': 6}),
    'conv1d_rf4_dense_rf3': (conv1d_graph, {'conv': 4, 'fc': 3}),
    'cnn_rf4_rf2': (cnn_graph, {'conv': 4, 'fc': 2}),
}


@pytest.mark.parametrize('case', list(CONV_CASES))
def test_conv_interpreter_equals_emulator(tmp_path, case):
    make, reuse = CONV_CASES[case]
    model = convert(tmp_path, make(), **reuse)
    d = check_interpreter(model, mantissas(model, 2000))  # half of the values beyond the input type
    assert d.timing.stages == reuse and d.timing.latency == sum(r + 1 for r in reuse.values()) + sum(d.timing.cuts.values())


def _accumulator_adds(m) -> list:
    """The accumulators' (acc << B) + P additions (their first operand selects 0 or the register)."""
    return [s for s in m.signals if s.op == 'add' and m[s.args[0]].op == 'select'
            and any(m[a].op == 'reg' for a in m[s.args[0]].args)]


def _graph_adds(m) -> list:
    """Additions of the adder graphs that read a digit multiplexer directly."""
    return [s for s in m.signals if s.op == 'add' and all(m[a].op == 'mux' for a in s.args)]


@pytest.mark.parametrize('change', ['graph_constant', 'digit_shift'])
def test_negative_controls(tmp_path, change):
    model = mlp(tmp_path, 4)
    xs = input_mantissas(model, 500)
    d = check_interpreter(model, xs)  # control: the design as built is exact
    m = d.machine
    if change == 'graph_constant':  # one shift inside the adder graph: a weight's CSD digit moves
        sig = _graph_adds(m)[0]
        sig.p['sb'] += 1
    else:  # the accumulator shifts by B - 1 instead of B
        sig = _accumulator_adds(m)[0]
        assert sig.p['sa'] >= 2
        sig.p['sa'] -= 1
    with pytest.raises(AssertionError, match='differs on'):
        assert_same(run_vectors(m, d.timing, xs), emulated(model, xs))


def test_digit_width_follows_the_inputs(tmp_path):
    # fixed<8,3> inputs (W = 8) at R 4: digits of 2 bits; ReLU outputs (non-negative, 7 bits) at R 4: 2 bits
    m = design(mlp(tmp_path, 4)).machine
    assert {s.p['sa'] for s in _accumulator_adds(m)} == {2}
    m = design(mlp(tmp_path, 2, name='r2')).machine
    assert {s.p['sa'] for s in _accumulator_adds(m)} == {4}


def test_errors_name_the_layer(tmp_path):
    with pytest.raises(GraphError, match=r"layer 'fc0': Folding 'adders' needs an exact accumulator, but accum type "
                                         r"fixed<16,6> rounds each product .*use Folding 'mac' or an exact \('auto'\)"):
        design(mlp(tmp_path, 2, 'fixed16_6'))
    with pytest.raises(GraphError, match=r"layer 'fc0': .*accum type fixed<12,2,TRN,SAT> saturates"):
        design(mlp(tmp_path, 2, 'sat', name='sat'))
    with pytest.raises(ConfigError, match=r"config\['Model'\]: Folding='dsp' is invalid; use 'mac'"):
        mlp(tmp_path, 2, name='bad', folding='dsp')
    with pytest.raises(ConfigError, match=r"config\['LayerName'\]\['fc1'\]: Folding=3 is invalid"):
        mlp(tmp_path, 2, name='bad1', fc1=(2, 3))
    # control: the same layers fold with Folding 'mac'
    assert design(mlp(tmp_path, 2, 'fixed16_6', name='mac', folding='mac')).timing.ii == 2


def test_reuse_factor_beyond_the_input_width(tmp_path):
    """R 8 on 4-bit inputs: single-bit digits, the top ones sign copies; the same bits as the emulator and
    the same adder graph as R = W = 4 (only the counter is longer)."""
    model = mlp(tmp_path, 1, 'narrow_in', name='narrow8', fc0=8)
    d = check_interpreter(model, input_mantissas(model, 3000))
    assert d.timing.ii == 8 and folded_multipliers(d.machine) == []
    four = check_interpreter(mlp(tmp_path, 1, 'narrow_in', name='narrow4', fc0=4), input_mantissas(model, 500))
    assert len(_graph_adds(d.machine)) == len(_graph_adds(four.machine))


def verilator_check(model, n: int, cycles: int, rebuild: bool) -> None:
    """test_verilog_fold_conv's check (Verilator == predict() == the interpreter, clock by clock, lint when
    rebuilt); its negative control here: one adder-graph shift changed."""
    def change(m) -> None:
        _graph_adds(m)[0].p['sb'] += 1

    conv_verilator_check(model, n, cycles, rebuild, change)


def test_verilator_mlp_equals_predict_and_interpreter(tmp_path):
    """The acceptance check: the MLP with 'auto' types, every Dense digit-serial at R 4, 10,000 inputs."""
    verilator_check(mlp(tmp_path, 4), 10_000, 300, rebuild=False)


@pytest.mark.slow
@pytest.mark.parametrize('case', ['mlp_rf2', 'mlp_rf8', 'mlp_wrap_rf4', 'cnn_rf4_rf2'])
def test_verilator_variants(tmp_path, case):
    if case == 'cnn_rf4_rf2':
        model = convert(tmp_path, cnn_graph(), conv=4, fc=2)
    elif case == 'mlp_wrap_rf4':
        model = mlp(tmp_path, 4, 'wrap')
    else:
        model = mlp(tmp_path, int(case[-1]))
    verilator_check(model, 10_000, 400, rebuild=True)
