"""Assign fixed-point types to every node and quantize its weights.

Explicit precisions from the configuration are used as given. 'auto' precisions are inferred by
the interval interpreter of each op's recipe (fpga4ml/semantics): exact bounds over the quantized
weights (zero weights contribute nothing), so an inferred accumulator or result type can never
overflow; `maximum` (hls4ml's max_precision) caps the width and the integer bits of inferred
types. Weights, biases and parameters asked to be 'auto' take the model default precision (as in
hls4ml).
"""

from __future__ import annotations

from ..fixed import AUTO, FixedType
from ..intervals import Interval
from ..ir import Graph, GraphError, Node, operands
from ..semantics import type_node
from ..semantics.bounds import MAX_EMULATED_WIDTH
from ..semantics.spec import output_types, spec_of


def _quantize_weights(node: Node, default: FixedType) -> None:
    for wname, var in spec_of(node).weights.items():
        if wname not in node.weights or var is None:
            continue
        t = node.config.get('Precision', {}).get(var, AUTO)
        t = default if t == AUTO else t
        if t.width > MAX_EMULATED_WIDTH:
            raise GraphError(f'layer {node.name!r}: the {var} type needs {t.width} bits, more than the '
                             f'{MAX_EMULATED_WIDTH} the emulator supports')
        node.types[var] = t
        node.qweights[wname] = t.quantize(node.weights[wname])


def assign_types(graph: Graph, model_cfg: dict) -> dict[str, Interval]:
    """Type every node in topological order; returns the value interval of every node output."""
    default: FixedType = model_cfg['default']
    intervals: dict[str, Interval] = {}
    for node in graph:
        node.types = {}
        node.qweights = {}
        node.attrs.pop('exact_bounds', None)  # set again by the typing of the node
        if node.op == 'Input':
            req = node.config.get('Precision', {}).get('result', AUTO)
            node.types['result'] = default if req == AUTO else req
            intervals[node.name] = Interval.of_type(node.result_type, node.shape)
            continue
        _quantize_weights(node, default)
        in_types = operands(node, {name: output_types(graph[name]) for name in node.inputs})
        intervals[node.name] = type_node(node, in_types, operands(node, intervals), model_cfg)
    return intervals
