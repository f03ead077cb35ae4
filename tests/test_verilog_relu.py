"""ReLU in Verilog: max(x, 0) is written as the sign bit masking x (one LUT level, no comparison).

The netlist interpreter and Verilator check its bits with the other MLP tests (test_verilog_rtl.py);
here: the emitted text of every ReLU has no comparator, the delay model charges one LUT level, and a
max against anything but the constant 0 keeps its comparison (control).
"""

from __future__ import annotations

import re

import numpy as np

from fpga4ml.backends.verilog.design import design, project_files
from fpga4ml.backends.verilog.netlist import Netlist, clamp_at_zero
from fpga4ml.backends.verilog.pipeline import LUT_NS, delay_ns
from fpga4ml.fixed import FixedType
from verilog_models import convert, mlp_graph


def test_relu_is_a_sign_bit_mask_of_one_lut_level(tmp_path):
    model = convert(mlp_graph(seed=3, softmax=False), 'hls4ml_default', output_dir=str(tmp_path))
    d = design(model)
    nl = d.netlist
    relus = [s for s in nl.signals if clamp_at_zero(nl, s) is not None]
    assert len(relus) >= 12 + 8 - 4  # the hidden units whose pre-activation can be negative
    text = '\n'.join(v for k, v in project_files(model).items() if k.endswith('.v'))
    for s in relus:
        assign = re.search(rf'assign s{s.id} = (.*);', text).group(1)
        assert '?' in assign and '>' not in assign and '<' not in assign, assign
        assert delay_ns(s, nl) == LUT_NS
    # the emulator's bits: the netlist interpreter against the model on random inputs
    x = np.random.default_rng(0).normal(0, 4, (500, 16))
    t_in = model.graph[model.graph.inputs[0]].result_type
    got = nl.evaluate([t_in.quantize(x)])[0]
    want = model.graph[model.graph.outputs[0]].result_type.quantize(model.predict(x))
    assert np.array_equal(got, want.reshape(got.shape))


def test_a_max_against_another_constant_keeps_its_comparison():
    nl = Netlist()
    x, = nl.add_input('x', (1,), FixedType(8, 4))
    relu, clip = nl.maximum(x, nl.const(0, nl[x].frac)), nl.maximum(x, nl.const(-3, nl[x].frac))
    assert clamp_at_zero(nl, nl[relu]) == x and clamp_at_zero(nl, nl[clip]) is None
    assert delay_ns(nl[clip], nl) > delay_ns(nl[relu], nl) == LUT_NS
