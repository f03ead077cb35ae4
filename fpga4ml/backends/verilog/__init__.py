"""The Verilog back end: fully parallel, multiplier-free, pipelined RTL that matches the emulator bit for bit.

The typed graph is lowered to a netlist of exact-width integer operations (lower.py, with
constant products as CSD adder graphs with shared subexpressions: adder_graph.py), registers are
placed by a delay model (pipeline.py), and one Verilog-2001 module is written (emit.py) with a
JSON manifest of its ports. `compile_rtl` builds a Verilator simulator of it (verilator.py),
`build` synthesizes it with Yosys (fpga4ml.synth), `estimate` gives the cost model's numbers.
See docs/verilog.md.
"""

from __future__ import annotations

from .design import build, compile_rtl, design, emulate_cycles, estimate, write

__all__ = ['build', 'compile_rtl', 'design', 'emulate_cycles', 'estimate', 'write']
