"""Constants of the piecewise activations and per-element quantizers, shared by every reader.

The recipes, the HLS emitter and the front ends take these from here, so a default or a
rounding of a constant is written once.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..fixed import FixedType
from ..ir import GraphError, Node
from .spec import attr


def on_grid(node: Node, value: float, frac: int, exact: bool) -> int:
    """A real constant as a mantissa with `frac` fractional bits: floor(value * 2^frac), exactly.

    floor makes ``x > value <=> mantissa(x) > it`` for x on that grid (ReLU's threshold); `exact`
    refuses a value that is not on the grid (ReLU's max_value).
    """
    scaled = Fraction(float(value)) * Fraction(2) ** frac
    if exact and scaled.denominator != 1:
        raise GraphError(f'layer {node.name!r}: max_value={value} is not representable with {frac} '
                         f'fractional bits; use a power-of-two multiple or a wider input type')
    return math.floor(scaled)


def relu_threshold_mantissa(node: Node, frac: int) -> int | None:
    """ReLU's threshold t as the mantissa T at `frac` for which x > t <=> m > T (None: no threshold)."""
    value = attr(node, 'threshold')
    if not value:
        return None
    if attr(node, 'max_value') is not None and float(value) < 0:
        raise GraphError(f'layer {node.name!r}: a negative threshold={value} together with max_value is not '
                         'supported')
    return on_grid(node, value, frac, False)


def relu_max_mantissa(node: Node, frac: int) -> int:
    """ReLU's max_value as a mantissa with `frac` fractional bits (it must be representable)."""
    return on_grid(node, attr(node, 'max_value'), frac, True)


def default_param_type(node: Node, in_t: FixedType) -> FixedType:
    """'auto' parameter types, as hls4ml infers them.

    PReLU slopes take the input type; LeakyReLU's alpha (and hard_sigmoid's slope and shift) take
    the smallest 8-bit type whose leading bit is the constant's leading bit (0.2 -> ufixed<8,-2>).
    """
    fn = attr(node, 'function')
    if fn == 'prelu':
        return in_t
    params = [attr(node, 'alpha')] if fn == 'leaky_relu' else [attr(node, 'slope'), attr(node, 'shift')]
    values = [float(p) for p in params if float(p) != 0.0] or [1.0]
    signed = any(v < 0 for v in values)
    integer = max(math.floor(math.log2(abs(v))) + 1 for v in values) + (1 if signed else 0)
    return FixedType(8, integer, signed, 'TRN', 'WRAP')


def param_mantissas(node: Node) -> dict[str, tuple[np.ndarray, int]]:
    """Quantized constants of a typed piecewise activation: name -> (mantissas, frac)."""
    fn = attr(node, 'function')
    t = node.types.get('param')
    if fn == 'prelu':
        return {'alpha': (np.broadcast_to(node.qweights['alpha'], node.shape), t.frac)}
    if fn == 'leaky_relu':
        return {'alpha': (np.asarray(t.quantize(attr(node, 'alpha'))), t.frac)}
    if fn == 'hard_sigmoid':
        return {name: (np.asarray(t.quantize(attr(node, name))), t.frac) for name in ('slope', 'shift')}
    return {}


def element_groups(node: Node) -> list[tuple[FixedType | None, np.ndarray]] | None:
    """A per-element Quantize's distinct element types, each with the flat indices that use it.

    attrs['element_types'] = {'k': ..., 'i': ..., 'f': ..., 'rounding': R, 'overflow': O}: per
    element (C order, broadcast to the node shape) keep-negative k (0/1), integer bits i (sign
    excluded) and fractional bits f; the element's type is fixed<k+i+f, k+i, R, O> (ufixed when
    k == 0). Width k+i+f == 0 is a pruned element: its value is 0 (the type is None here).
    Returns None for an ordinary (per-tensor) Quantize. Groups are ordered by (k, i, f).
    """
    spec = node.attrs.get('element_types')
    if spec is None:
        return None
    try:
        arrays = [np.asarray(spec[key], dtype=np.int64) for key in ('k', 'i', 'f')]
        k, i, f = (a.reshape(-1) if a.size == node.size else np.broadcast_to(a, node.shape).reshape(-1)
                   for a in arrays)
    except (KeyError, ValueError, TypeError) as err:
        raise GraphError(f"layer {node.name!r}: attrs['element_types'] needs 'k', 'i', 'f' arrays of shape "
                         f'{node.shape} (or broadcastable to it): {err}') from None
    width = k + i + f
    if np.any((k != 0) & (k != 1)) or np.any(width < 0):
        raise GraphError(f"layer {node.name!r}: element_types need k in {{0, 1}} and k+i+f >= 0")
    keys, inverse = np.unique(np.stack([k, i, f], axis=1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    groups = []
    for g, (kk, ii, ff) in enumerate(keys.tolist()):
        t = None
        if kk + ii + ff:
            try:
                t = FixedType(kk + ii + ff, kk + ii, bool(kk), spec.get('rounding', 'TRN'),
                              spec.get('overflow', 'WRAP'))
            except ValueError as err:
                raise GraphError(f'layer {node.name!r}: element type (k={kk}, i={ii}, f={ff}): {err}') from None
        groups.append((t, np.flatnonzero(inverse == g)))
    return groups


def enclosing_type(types: list[FixedType], rounding: str = 'TRN', overflow: str = 'WRAP') -> FixedType:
    """The narrowest type holding every value of every type in `types` (ufixed<1,1> when empty)."""
    if not types:
        return FixedType(1, 1, False, rounding, overflow)
    signed = any(t.signed for t in types)
    frac = max(t.frac for t in types)
    integer = max(t.integer + (1 if signed and not t.signed else 0) for t in types)
    return FixedType(integer + frac, integer, signed, rounding, overflow)
