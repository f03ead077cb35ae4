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

from ..ir import GraphError, Node

#: marks an attribute without a default: a node must set it
REQUIRED = object()


@dataclass(frozen=True)
class OpSpec:
    """An IR op: its recipe, typed attributes with their one default each, and its traits."""

    op: str
    recipe: Callable
    #: attribute name -> default value (REQUIRED: the front end must set it)
    attrs: dict[str, Any] = field(default_factory=dict)
    #: the result keeps the type of the first input (index maps, reshape): no cast, no 'result' config
    keeps_type: bool = False


SPECS: dict[str, OpSpec] = {}


def recipe(op: str, attrs: dict[str, Any] | None = None, keeps_type: bool = False):
    """Register `fn` as the recipe of IR op `op` with its attribute defaults and traits."""
    def register(fn: Callable) -> Callable:
        SPECS[op] = OpSpec(op, fn, dict(attrs or {}), keeps_type)
        return fn
    return register


def spec_of(node: Node) -> OpSpec:
    """The declaration of a node's op (a GraphError names the node when the op has none)."""
    from . import recipes  # noqa: F401  (registers every recipe on first use)
    spec = SPECS.get(node.op)
    if spec is None:
        raise GraphError(f'layer {node.name!r}: op {node.op!r} has no recipe; ops with one: {sorted(SPECS)}')
    return spec


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
