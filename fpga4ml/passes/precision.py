"""Assign fixed-point types to every node and quantize its weights.

Explicit precisions from the configuration are used as given. 'auto' precisions are inferred
with exact interval arithmetic over the quantized weights (zero weights contribute nothing), so
an inferred accumulator or result type can never overflow; `maximum` (hls4ml's max_precision)
caps the width and the integer bits of inferred types. Weights, biases and parameters asked to
be 'auto' take the model default precision (as in hls4ml).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..config import PART_OF_ATTR, WEIGHT_PRECISION
from ..fixed import AUTO, FixedType, PrecisionError
from .. import geometry
from ..geometry import take
from ..intervals import Interval, dense_interval, product_interval, sum_interval, trunc_div, type_for
from ..ir import TABLE_ACTIVATIONS, Graph, GraphError, Node
from . import tables

#: Widest accumulator the emulator evaluates (int64 mantissas with headroom for products).
MAX_EMULATED_WIDTH = 64


def _cap(t: FixedType, maximum: FixedType | None) -> FixedType:
    """Limit an inferred type to the configured maximum (width and integer bits, as hls4ml)."""
    if maximum is None or (t.width <= maximum.width and t.integer <= maximum.integer):
        return t
    width = min(t.width, maximum.width)
    integer = min(t.integer, maximum.integer)
    return FixedType(width, integer, t.signed, maximum.rounding, maximum.overflow)


def _requested(node: Node, var: str) -> FixedType | str:
    return node.config.get('Precision', {}).get(var, AUTO)


def _explicit_or(node: Node, var: str, inferred, maximum: FixedType | None) -> FixedType:
    """The configured type of `var`, or the inferred one (capped) when 'auto'."""
    req = _requested(node, var)
    if req != AUTO:
        return req
    try:
        t = inferred() if callable(inferred) else inferred
    except PrecisionError as err:  # the exact type needs more than 64 bits
        layer, layer_var = _configured_as(node, var)
        raise GraphError(f'layer {layer!r}: the exact {layer_var} type cannot be inferred ({err}); set '
                         f"Precision[{layer_var!r}] explicitly, e.g. 'fixed<32,16>'") from None
    return _cap(t, maximum)


def _configured_as(node: Node, var: str) -> tuple[str, str]:
    """The layer and variable a user configures for `var` of `node` (a composed layer's part: its layer's)."""
    layer, mapping = node.attrs.get(PART_OF_ATTR, (node.name, {}))
    return layer, mapping.get(var, var)


def _check_width(node: Node, var: str, t: FixedType) -> None:
    if t.width > MAX_EMULATED_WIDTH:
        raise GraphError(
            f'layer {node.name!r}: the inferred {var} type needs {t.width} bits, more than the '
            f'{MAX_EMULATED_WIDTH} the emulator supports; set Precision[{var!r}] explicitly or pass '
            f"max_precision (e.g. 'fixed<32,16>')")


def _quantize_weights(node: Node, default: FixedType) -> None:
    for wname, var in WEIGHT_PRECISION.get(node.op, {}).items():
        if wname not in node.weights:
            continue
        t = _requested(node, var)
        if t == AUTO:
            t = default
        node.types[var] = t
        node.qweights[wname] = t.quantize(node.weights[wname])


def assign_types(graph: Graph, model_cfg: dict) -> dict[str, Interval]:
    """Type every node in topological order; returns the value interval of every node output."""
    default: FixedType = model_cfg['default']
    maximum: FixedType | None = model_cfg.get('maximum')
    intervals: dict[str, Interval] = {}
    for node in graph:
        node.types = {}
        node.qweights = {}
        ins = [intervals[name] for name in node.inputs]
        in_types = [graph[name].result_type for name in node.inputs]
        _quantize_weights(node, default)
        rule = _RULES.get(node.op)
        if rule is None:
            raise GraphError(f'layer {node.name!r}: op {node.op!r} has no typing rule')
        exact = rule(node, ins, in_types, default, maximum)
        for var, t in node.types.items():
            _check_width(node, var, t)
        if exact is None:  # inputs, tables: the result can take any value of its type
            out = Interval.of_type(node.result_type, node.shape)
        else:
            node.attrs['exact_bounds'] = (exact.min, exact.max, exact.frac)
            out = _cast_iv(exact, node.result_type)
        intervals[node.name] = out
    return intervals


def _input(node, ins, in_types, default, maximum) -> Interval:
    req = _requested(node, 'result')
    node.types['result'] = default if req == AUTO else req
    return None


def accumulated(exact: Interval, accum: FixedType, n_terms: int) -> Interval:
    """Bounds of a sum of `n_terms` terms that are each rounded into `accum` and accumulated there.

    Each rounding moves a term by less than one accumulator LSB, so the exact bounds widen by
    `n_terms` LSBs when the accumulator is coarser than the exact sum; the cast then applies the
    accumulator's rounding and overflow (an overflow gives the whole accumulator range).
    """
    if accum.frac >= exact.frac:
        return exact.align(accum.frac).cast(accum)
    slack = n_terms << (exact.frac - accum.frac)
    return Interval(exact.lo - slack, exact.hi + slack, exact.frac).cast(accum)


def _accumulate(node: Node, exact: Interval, n_terms: int, maximum: FixedType | None) -> Interval:
    """Accumulator and result types of a Dense or Conv from the exact bounds of its sums."""
    accum = _explicit_or(node, 'accum', lambda: type_for(exact), maximum)
    node.types['accum'] = accum
    node.types['result'] = _explicit_or(node, 'result', accum, maximum)
    return accumulated(exact, accum, n_terms)


def _dense(node, ins, in_types, default, maximum) -> Interval:
    x, = ins
    kernel_t, bias_t = node.types['weight'], node.types['bias']
    exact = dense_interval(x, node.qweights['kernel'], kernel_t.frac, node.qweights['bias'], bias_t.frac)
    return _accumulate(node, exact, node.qweights['kernel'].shape[0] + 1, maximum)


def _conv(node, ins, in_types, default, maximum) -> Interval:
    """Conv like Dense, per output pixel over its receptive field (padding zeros included)."""
    x, = ins
    in_shape = x.lo.shape
    win = geometry.check_conv(node, in_shape)
    cols = x.gather(geometry.im2col_index(win, in_shape[-1]))
    matrix = geometry.conv_matrix(node.qweights['kernel'], int(node.attrs.get('groups', 1)), node.name)
    exact = dense_interval(cols, matrix, node.types['weight'].frac, node.qweights['bias'], node.types['bias'].frac)
    return _accumulate(node, exact.reshape(node.shape), matrix.shape[0] + 1, maximum)


#: a bound below every value (padding cells of a max pool never win)
_NEG_INF_BOUND = -(1 << 256)


def _pool(node, ins, in_types, default, maximum) -> Interval:
    """Max: the input type on 'auto'. Avg: an exact accumulator with ceil(log2(taps)) extra LSBs."""
    x, = ins
    in_t, = in_types
    index, counts = geometry.pool_index(node, x.lo.shape)
    if node.attrs['mode'] == 'max':
        lo = np.maximum.reduce([take(x.lo.ravel(), k, _NEG_INF_BOUND) for k in index])
        hi = np.maximum.reduce([take(x.hi.ravel(), k, _NEG_INF_BOUND) for k in index])
        exact = Interval(np.asarray(lo, dtype=object), np.asarray(hi, dtype=object), x.frac)
        node.types['accum'] = _explicit_or(node, 'accum', in_t, maximum)
        acc = _cast_iv(exact, node.types['accum'])
    else:
        exact = sum_interval([x.gather(k) for k in index])
        extra = (len(index) - 1).bit_length()  # ceil(log2(taps)): a power-of-two division is exact
        node.types['accum'] = _explicit_or(node, 'accum', lambda: type_for(exact.align(exact.frac + extra)), maximum)
        total = accumulated(exact, node.types['accum'], len(index))
        acc = Interval(trunc_div(total.lo, counts), trunc_div(total.hi, counts), total.frac)
    node.types['result'] = _explicit_or(node, 'result', in_t, maximum)
    return acc.reshape(node.shape)


def _index_map(node, ins, in_types, default, maximum) -> Interval:
    """Pad, Crop, Resize, Transpose: values move (Pad adds zeros); the type is the input's."""
    x, = ins
    node.types['result'] = in_types[0]
    return x.gather(geometry.index_map(node, x.lo.shape).ravel()).reshape(node.shape)


def _cast_iv(iv: Interval, t: FixedType) -> Interval:
    return iv.cast(t) if t.frac <= iv.frac else iv.align(t.frac).cast(t)


def _scale(node, ins, in_types, default, maximum) -> Interval:
    x, = ins
    scale = Interval.of_values(np.broadcast_to(node.qweights['scale'], node.shape), node.types['scale'].frac)
    bias = Interval.of_values(np.broadcast_to(node.qweights['bias'], node.shape), node.types['bias'].frac)
    exact = sum_interval([product_interval(x, scale), bias])
    node.types['result'] = _explicit_or(node, 'result', lambda: type_for(exact), maximum)
    return exact


def _activation(node, ins, in_types, default, maximum) -> Interval | None:
    x, = ins
    in_t, = in_types
    if node.attrs.get('exact_result') and node.attrs['function'] not in TABLE_ACTIVATIONS:
        # quantization-aware models (HGQ2) compute piecewise activations exactly: 'auto' is the exact type
        exact = activation_interval(node, x, in_t)
        node.types['result'] = _explicit_or(node, 'result', lambda: type_for(exact), maximum)
        return exact
    # as in hls4ml, an 'auto' activation result takes the model default precision
    node.types['result'] = _explicit_or(node, 'result', default, maximum)
    if node.attrs['function'] in TABLE_ACTIVATIONS:
        node.types['table'] = _explicit_or(node, 'table', node.types['result'], None)
        tables.build_activation_table(node, in_t)
        return None
    return activation_interval(node, x, in_t)


def param_mantissas(node: Node) -> dict[str, tuple[np.ndarray, int]]:
    """Quantized constants of a piecewise activation: name -> (mantissas, frac)."""
    fn = node.attrs['function']
    out: dict[str, tuple[np.ndarray, int]] = {}
    if fn == 'prelu':
        t = node.types['param']
        out['alpha'] = (np.broadcast_to(node.qweights['alpha'], node.shape), t.frac)
    elif fn == 'leaky_relu':
        t = node.types['param']
        out['alpha'] = (np.asarray(t.quantize(node.attrs.get('alpha', 0.3))), t.frac)
    elif fn == 'hard_sigmoid':
        t = node.types['param']
        out['slope'] = (np.asarray(t.quantize(node.attrs.get('slope', 0.2))), t.frac)
        out['shift'] = (np.asarray(t.quantize(node.attrs.get('shift', 0.5))), t.frac)
    return out


def activation_interval(node: Node, x: Interval, in_t: FixedType) -> Interval:
    """Exact bounds of a piecewise activation before the cast to its result type."""
    fn = node.attrs['function']
    # hls4ml 1.3 computes ReLU(threshold=t) as `x > t ? x : 0` (nnet_activation.h:544-557), as Keras 3
    # does; it rejects ReLU(max_value=...) (converters/keras_v3/core.py:112), which we support
    if fn in ('leaky_relu', 'prelu') and (node.attrs.get('threshold') or node.attrs.get('max_value') is not None):
        raise GraphError(f"layer {node.name!r}: a negative slope together with threshold="
                         f"{node.attrs.get('threshold')} or max_value={node.attrs.get('max_value')} is not "
                         f"supported; use threshold=0 and no max_value, or a ReLU without a slope")
    if fn in ('leaky_relu', 'prelu', 'hard_sigmoid') and 'param' not in node.types:
        req = _requested(node, 'param')
        node.types['param'] = _default_param_type(node, in_t) if req == AUTO else req
        if fn == 'prelu':
            node.qweights['alpha'] = node.types['param'].quantize(node.weights['alpha'])
    params = param_mantissas(node)
    if fn == 'linear':
        return x
    if fn == 'hard_tanh':
        aligned = x.align(max(x.frac, 0))
        one = 1 << aligned.frac
        return Interval(np.asarray(np.clip(aligned.lo, -one, one), dtype=object),
                        np.asarray(np.clip(aligned.hi, -one, one), dtype=object), aligned.frac)
    if fn == 'hard_sigmoid':
        slope_m, f = params['slope']
        shift_m, _ = params['shift']
        slope = Interval.of_values(np.broadcast_to(slope_m, node.shape), f)
        shift = Interval.of_values(np.broadcast_to(shift_m, node.shape), f)
        lin = sum_interval([product_interval(x, slope), shift])
        one = 1 << lin.frac
        return Interval(np.asarray(np.clip(lin.lo, 0, one), dtype=object),
                        np.asarray(np.clip(lin.hi, 0, one), dtype=object), lin.frac)
    # relu family: positive part, optional max_value clip, optional negative slope
    pos_hi = np.asarray(np.maximum(x.hi, 0), dtype=object)
    pos_lo = np.asarray(np.maximum(x.lo, 0), dtype=object)
    if fn == 'relu':
        lo, hi = pos_lo, pos_hi
        theta = relu_threshold_mantissa(node, x.frac)
        if theta is not None:
            lo, hi = _thresholded_bounds(x, theta)
        if node.attrs.get('max_value') is not None:
            cap = relu_max_mantissa(node, x.frac)
            hi = np.asarray(np.minimum(hi, cap), dtype=object)
            lo = np.asarray(np.minimum(lo, cap), dtype=object)
        return Interval(lo, hi, x.frac)
    if fn in ('leaky_relu', 'prelu'):
        alpha_m, f = params['alpha']
        alpha = Interval.of_values(np.broadcast_to(alpha_m, node.shape), f)
        neg = Interval(np.asarray(np.minimum(x.lo, 0), dtype=object), np.asarray(np.minimum(x.hi, 0), dtype=object), x.frac)
        negpart = product_interval(neg, alpha)
        pos = Interval(pos_lo, pos_hi, x.frac).align(negpart.frac)
        lo = np.minimum(pos.lo, negpart.lo)
        hi = np.maximum(pos.hi, negpart.hi)
        return Interval(np.asarray(lo, dtype=object), np.asarray(hi, dtype=object), negpart.frac)
    raise GraphError(f"layer {node.name!r}: activation {fn!r} is not supported")


def relu_threshold_mantissa(node: Node, frac: int) -> int | None:
    """ReLU's threshold t as the mantissa T with `frac` fractional bits for which x > t <=> m > T.

    T = floor(t * 2^frac), computed exactly; None when there is no threshold (plain max(x, 0)).
    """
    value = node.attrs.get('threshold')
    if not value:
        return None
    if node.attrs.get('max_value') is not None and float(value) < 0:
        raise GraphError(f'layer {node.name!r}: a negative threshold={value} together with max_value is not '
                         'supported')
    return math.floor(Fraction(float(value)) * Fraction(2) ** frac)


def _thresholded_bounds(x: Interval, theta: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact bounds of `m > theta ? m : 0` per element, for input bounds `x`."""
    passes_lo = np.maximum(x.lo, theta + 1)  # smallest value that passes (when x.hi > theta)
    some_pass, some_zero = x.hi > theta, x.lo <= theta
    lo = np.where(some_pass, np.where(some_zero, np.minimum(passes_lo, 0), passes_lo), 0)
    hi = np.where(some_pass, np.where(some_zero, np.maximum(x.hi, 0), x.hi), 0)
    return np.asarray(lo, dtype=object), np.asarray(hi, dtype=object)


def relu_max_mantissa(node: Node, frac: int) -> int:
    """ReLU's max_value as a mantissa with `frac` fractional bits (it must be representable)."""
    value = float(node.attrs['max_value'])
    scaled = value * 2.0 ** frac
    if scaled != math.floor(scaled):
        raise GraphError(f'layer {node.name!r}: max_value={value} is not representable with {frac} '
                         f'fractional bits; use a power-of-two multiple or a wider input type')
    return int(scaled)


def _default_param_type(node: Node, in_t: FixedType) -> FixedType:
    """'auto' parameter types, as hls4ml infers them.

    PReLU slopes take the input type; LeakyReLU's alpha (and hard_sigmoid's slope and shift) take
    the smallest 8-bit type whose leading bit is the constant's leading bit (0.2 -> ufixed<8,-2>).
    """
    fn = node.attrs['function']
    if fn == 'prelu':
        return in_t
    params = [node.attrs.get('alpha', 0.3)] if fn == 'leaky_relu' else [node.attrs.get('slope', 0.2),
                                                                        node.attrs.get('shift', 0.5)]
    values = [float(p) for p in params if float(p) != 0.0] or [1.0]
    signed = any(v < 0 for v in values)
    integer = max(math.floor(math.log2(abs(v))) + 1 for v in values) + (1 if signed else 0)
    return FixedType(8, integer, signed, 'TRN', 'WRAP')


def _softmax(node, ins, in_types, default, maximum) -> Interval:
    result = _explicit_or(node, 'result', default, maximum)
    node.types['result'] = result
    tables.build_softmax_tables(node)
    return None


def _merge(node, ins, in_types, default, maximum) -> Interval:
    mode = node.attrs['mode']
    if mode == 'concat':
        frac = max(iv.frac for iv in ins)
        rank = len(node.shape)
        axis = int(node.attrs.get('axis', -1))
        if not -rank <= axis < rank:
            raise GraphError(f'layer {node.name!r}: concat axis {axis} is out of range for per-sample rank {rank}')
        # a per-sample axis, stored negative so it means the same on batched arrays (emulator, back ends)
        axis = node.attrs['axis'] = axis - rank if axis >= 0 else axis
        aligned = [iv.align(frac) for iv in ins]
        lo = np.concatenate([a.lo for a in aligned], axis=axis)
        hi = np.concatenate([a.hi for a in aligned], axis=axis)
        exact = Interval(lo, hi, frac)
    elif mode in ('add', 'sub', 'avg'):
        parts = list(ins)
        if mode == 'sub':
            if len(parts) != 2:
                raise GraphError(f'layer {node.name!r}: subtract needs exactly 2 inputs, got {len(parts)}')
            parts = [parts[0], Interval(-parts[1].hi, -parts[1].lo, parts[1].frac)]
        exact = sum_interval(parts)
        if mode == 'avg':
            n = len(parts)
            if n & (n - 1):
                raise GraphError(f'layer {node.name!r}: Average of {n} inputs is not supported '
                                 f'(only powers of two are exact); use Add and a Dense/Scale instead')
            exact = Interval(exact.lo, exact.hi, exact.frac + n.bit_length() - 1)
    elif mode == 'mul':
        exact = ins[0]
        for iv in ins[1:]:
            exact = product_interval(exact, iv)
    elif mode in ('max', 'min'):
        frac = max(iv.frac for iv in ins)
        aligned = [iv.align(frac) for iv in ins]
        pick = np.maximum if mode == 'max' else np.minimum
        lo = pick.reduce([a.lo for a in aligned])
        hi = pick.reduce([a.hi for a in aligned])
        exact = Interval(np.asarray(lo, dtype=object), np.asarray(hi, dtype=object), frac)
    else:
        raise GraphError(f"layer {node.name!r}: merge mode {mode!r} is not supported; "
                         "supported: add, sub, mul, avg, max, min, concat")
    node.types['result'] = _explicit_or(node, 'result', lambda: type_for(exact), maximum)
    return exact


def _reshape(node, ins, in_types, default, maximum) -> Interval:
    x, = ins
    node.types['result'] = in_types[0]
    return x.reshape(node.shape)  # the cast into the unchanged type is the identity


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


def _quantize(node, ins, in_types, default, maximum) -> Interval:
    x, = ins
    groups = element_groups(node)
    if groups is None:
        node.types['result'] = _explicit_or(node, 'result', lambda: type_for(x), maximum)
        return x
    # per-element cast: each element into its own type, then (exactly, by default) into the result type
    types = [t for t, _ in groups if t is not None]
    spec = node.attrs['element_types']
    node.types['result'] = _explicit_or(
        node, 'result', enclosing_type(types, spec.get('rounding', 'TRN'), spec.get('overflow', 'WRAP')), maximum)
    frac = max((t.frac for t in types), default=0)
    lo = np.zeros(node.size, dtype=object)
    hi = np.zeros(node.size, dtype=object)
    for t, idx in groups:
        if t is not None:
            iv = _cast_iv(x.gather(idx), t).align(frac)
            lo[idx], hi[idx] = iv.lo, iv.hi
    return Interval(lo.reshape(node.shape), hi.reshape(node.shape), frac)


_RULES = {
    'Input': _input,
    'Dense': _dense,
    'Conv': _conv,
    'Pool': _pool,
    **{op: _index_map for op in geometry.INDEX_MAP_OPS},
    'Scale': _scale,
    'Activation': _activation,
    'Softmax': _softmax,
    'Merge': _merge,
    'Reshape': _reshape,
    'Quantize': _quantize,
}
