"""Lower a typed graph onto a netlist of integer operations: each op's recipe run on signals.

The netlist interpreter (fpga4ml/semantics/netlist_interp.py) runs the same recipe as the emulator,
with the same casts in the same places, so the netlist computes the emulator's bits; the tests check
it by interpreting the netlist (`Netlist.evaluate`) against the emulator. Products with constant
weights become adder graphs (adder_graph.py) unless a layer asks for DSP multipliers.
"""

from __future__ import annotations

from ...intervals import Interval
from ...ir import Graph, GraphError, operands
from ...semantics import lower_node
from ...semantics.spec import output_types
from .netlist import Netlist
from .progress import StepClock


def lower_graph(graph: Graph, intervals: dict[str, Interval] | None = None, cse: bool = True,
                clock: StepClock | None = None) -> Netlist:
    """The netlist of a typed graph: input ports, one signal list per node, output ports.

    `clock` reports each layer's lowering time (by default only layers that take long).
    """
    nl = Netlist()
    clock = clock or StepClock(None)
    sigs: dict[str, list[int]] = {}
    for node in graph:
        if node.op == 'Input':
            sigs[node.name] = nl.add_input(node.name, node.shape, node.result_type)
            continue
        with clock.step(f'{node.name} ({node.op}) lowered'):
            in_shapes = [node.shape] if node.op == 'Select' else [graph[i].shape for i in node.inputs]
            out = lower_node(nl, node, operands(node, {i: output_types(graph[i]) for i in node.inputs}),
                             operands(node, sigs), in_shapes, cse, clock)
        if not isinstance(out, tuple) and len(out) != node.size:
            raise GraphError(f'layer {node.name!r}: lowering produced {len(out)} values for shape {node.shape}')
        sigs[node.name] = out
    for name in graph.outputs:
        node = graph[name]
        nl.add_output(name, node.shape, node.result_type, sigs[name])
    return nl


__all__ = ['lower_graph']
