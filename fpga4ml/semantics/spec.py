"""One declaration per op: its recipe, its attributes with their defaults, and its traits.

A recipe is a short function ``recipe(node, p, *inputs) -> output`` that composes the primitives of
an interpreter `p` (see primitives.py for the set and its exact semantics). The same recipe is run
by the four interpreters: intervals (typing), numpy (the emulator), netlist (the Verilog lowering)
and float (the reference). Recipes never read fixed-point types directly: they name a node's type
variables ('result', 'accum', ...) and the interpreter resolves them (the float one ignores them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..config import FIXED_PRECISION_ATTR, INTERNAL_PRECISION_ATTR, PART_OF_ATTR
from ..ir import GraphError, Node

#: marks an attribute without a default: a node must set it
REQUIRED = object()

#: attributes any node may carry besides its op's parameters: set by the front ends and passes
ANNOTATIONS = {
    'exact_bounds': 'the exact (lo, hi, frac) before the result cast (set by the typing)',
    'tables': 'the lookup tables of a table activation or softmax (built by the typing)',
    FIXED_PRECISION_ATTR: 'types fixed by quantization-aware training ({variable: FixedType})',
    INTERNAL_PRECISION_ATTR: "types a front end's composition fixes ({variable: FixedType})",
    PART_OF_ATTR: "a helper node's (layer, {variable: layer variable}) inside a composed layer",
    'type_aliases': "the framework layer types a 'LayerType' config may name for this node",
    'fused': 'the BatchNormalization layers folded into this node (set by the fusion pass)',
}


@dataclass(frozen=True)
class OpSpec:
    """An IR op: its recipe, typed attributes with their one default each, weights, precision and traits."""

    op: str
    #: recipe(node, p, *inputs) -> output (None for Input: a graph input computes nothing)
    recipe: Callable | None
    #: attribute name -> default value (REQUIRED: the front end must set it)
    attrs: dict[str, Any] = field(default_factory=dict)
    #: weight name -> the precision variable that quantizes it (None: the recipe quantizes it itself)
    weights: dict[str, str | None] = field(default_factory=dict)
    #: the configurable precision variables (hls4ml's '<var>_t'): a tuple, or a function of the node
    precision: tuple[str, ...] | Callable[[Node], tuple[str, ...]] = ('result',)
    #: the result keeps the type of the first input (index maps, reshape): no cast, no 'result' config
    keeps_type: bool = False
    #: the type variable of each output: a recipe of an op with several returns a tuple, read by Select nodes
    outputs: tuple[str, ...] = ('result',)

    def precision_variables(self, node: Node) -> tuple[str, ...]:
        """The precision variables a node of this op owns."""
        return self.precision(node) if callable(self.precision) else self.precision


SPECS: dict[str, OpSpec] = {}


def recipe(op: str, attrs: dict[str, Any] | None = None, keeps_type: bool = False,
           weights: dict[str, str | None] | None = None, precision=('result',), outputs=('result',)):
    """Register `fn` as the recipe of IR op `op` with its attribute defaults, weights and traits."""
    def register(fn: Callable | None) -> Callable | None:
        SPECS[op] = OpSpec(op, fn, dict(attrs or {}), dict(weights or {}), () if keeps_type else precision,
                           keeps_type, tuple(outputs))
        return fn
    return register


def n_outputs(node: Node) -> int:
    """How many outputs a node has (more than one: its value is a tuple, read through Select nodes)."""
    return len(spec_of(node).outputs)


def output_types(node: Node) -> tuple:
    """The result type of a node, or the tuple of its outputs' types for a node with several outputs."""
    outputs = spec_of(node).outputs
    return node.result_type if len(outputs) == 1 else tuple(node.types.get(var) for var in outputs)


def spec_of(node: Node) -> OpSpec:
    """The declaration of a node's op (a GraphError names the node when the op has none)."""
    from . import recipes  # noqa: F401  (registers every recipe on first use)
    spec = SPECS.get(node.op)
    if spec is None:
        raise GraphError(f'layer {node.name!r}: op {node.op!r} has no recipe; ops with one: {sorted(SPECS)}')
    return spec


def check_node(node: Node) -> Node:
    """Check a node against its op's declaration: unknown attributes or weights, missing required ones."""
    spec = spec_of(node)
    for key in node.attrs:
        if key not in spec.attrs and key not in ANNOTATIONS:
            raise GraphError(f'layer {node.name!r}: op {node.op!r} has no attribute {key!r}; it accepts '
                             f'{sorted(spec.attrs)} (and the annotations {sorted(ANNOTATIONS)})')
    missing = [k for k, v in spec.attrs.items() if v is REQUIRED and k not in node.attrs]
    if missing:
        raise GraphError(f'layer {node.name!r}: op {node.op!r} needs the attribute(s) {missing}')
    unknown = sorted(set(node.weights) - set(spec.weights))
    if unknown:
        raise GraphError(f'layer {node.name!r}: op {node.op!r} has no weight(s) {unknown}; it accepts '
                         f'{sorted(spec.weights)}')
    return node


def make_node(name: str, op: str, inputs: list[str], shape: tuple[int, ...], **fields: Any) -> Node:
    """A front end's node: built and checked against its op's declaration (`check_node`)."""
    return check_node(Node(name, op, list(inputs), shape, **fields))


def attr(node: Node, name: str) -> Any:
    """A node attribute, or its declared default; unknown or missing required ones name the layer."""
    spec = spec_of(node)
    if name not in spec.attrs:
        raise GraphError(f'layer {node.name!r}: op {node.op!r} has no attribute {name!r}; '
                         f'it has {sorted(spec.attrs)}')
    value = node.attrs.get(name, spec.attrs[name])
    if value is REQUIRED:
        raise GraphError(f'layer {node.name!r}: op {node.op!r} needs the attribute {name!r}')
    return value
