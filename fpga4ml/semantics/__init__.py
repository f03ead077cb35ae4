"""The semantics layer: one recipe per op over a small primitive set, read by four interpreters.

`type_node` (intervals: typing and exact bounds), `compile_node` (numpy: the emulator),
`lower_node` (netlist: the Verilog lowering) and `float_node` (the float reference) each run the
op's recipe (recipes.py) with their own interpreter. docs/architecture.md lists the primitives.
"""

from __future__ import annotations

import numpy as np

from ..fixed import FixedType, PrecisionError
from ..intervals import Interval, WideType, exact_type
from ..ir import GraphError, Node
from .bounds import Bounds
from .float_interp import FloatRun
from .numpy_interp import NumpyProgram
from .spec import spec_of


def _checked(node: Node, shape: tuple[int, ...], what: str) -> None:
    """The recipe's (first) output has the node's declared shape (a node with several outputs declares its first)."""
    if tuple(shape) != node.shape:
        raise GraphError(f'layer {node.name!r}: the {what} has per-sample shape {tuple(shape)}, the node {node.shape}')


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def type_node(node: Node, in_types: list[FixedType], in_ivs: list[Interval], typing: dict) -> Interval | tuple:
    """Type a node's 'auto' variables (and build its tables); returns the bounds of its output (a tuple: outputs)."""
    spec = spec_of(node)
    bounds = Bounds(node, in_types, typing)
    out = spec.recipe(node, bounds, *in_ivs)
    if bounds.exact is not None:  # (lo, hi, frac) of the exact value before the result cast, for users and tests
        node.attrs['exact_bounds'] = (bounds.exact.min, bounds.exact.max, bounds.exact.frac)
    if spec.keeps_type:
        node.types['result'] = in_types[0]
    _checked(node, _first(out).lo.shape, 'recipe output')
    return out


def intermediate_types(node: Node, in_types: list[FixedType], in_ivs: list[Interval]) -> dict[str, FixedType | WideType]:
    """The narrowest type holding each value a typed node's recipe labels (`label`), from its inputs' bounds.

    The HLS emitter declares its exact intermediates (a sum, a value before a clip) in these types:
    every value of the node on inputs within `in_ivs` fits its type exactly.
    """
    bounds = Bounds(node, in_types)
    spec_of(node).recipe(node, bounds, *in_ivs)
    types = {}
    for name, iv in bounds.labels.items():
        try:
            types[name] = exact_type(iv)  # a WideType beyond 64 bits (ap_fixed is exact up to 1024)
        except PrecisionError as err:
            raise GraphError(f'layer {node.name!r}: intermediate {name!r}: {err}; give the values it is computed '
                             'from a narrower precision') from None
    return types


def compile_node(node: Node, in_types: list[FixedType], in_ivs: list[Interval]):
    """The emulator kernel ``kernel(inputs, stats) -> mantissas`` of a typed node."""
    program = NumpyProgram(node, in_types, in_ivs)
    out = spec_of(node).recipe(node, program, *program.inputs)
    _checked(node, _first(out).iv.lo.shape, 'emulator kernel')
    if isinstance(out, tuple):  # several outputs: one last step packs them into the tuple the kernel returns
        out = program._emit(lambda *values: values[:-1], list(out))
    return program.kernel(out)


def lower_node(nl, node: Node, in_types: list[FixedType], in_sigs: list[list[int]], in_shapes: list[tuple],
               cse: bool = True, clock=None) -> list[int] | tuple:
    """Netlist signals (C order) of a typed node's output (a tuple of lists: outputs), from its inputs'."""
    from .netlist_interp import NetlistLowering
    run = NetlistLowering(nl, node, in_types, cse, clock)
    xs = [np.asarray(list(s) + [None], dtype=object)[:-1].reshape(shape) for s, shape in zip(in_sigs, in_shapes)]
    out = spec_of(node).recipe(node, run, *xs)
    _checked(node, _first(out).shape, 'netlist')
    return tuple(list(o.ravel()) for o in out) if isinstance(out, tuple) else list(out.ravel())


def float_node(node: Node, xs: list[np.ndarray], dtype=np.float64) -> np.ndarray:
    """The real-valued output of a node on batched float inputs."""
    return spec_of(node).recipe(node, FloatRun(node, dtype), *xs)


def output_shapes(node: Node, in_shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    """Shape inference: the per-sample shape of each output the node's recipe computes from its inputs' shapes."""
    out = float_node(node, [np.zeros((1,) + tuple(s)) for s in in_shapes])
    return tuple(tuple(o.shape[1:]) for o in (out if isinstance(out, tuple) else (out,)))


def output_shape(node: Node, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """Shape inference: the per-sample shape of the node's (first) output."""
    return output_shapes(node, in_shapes)[0]
