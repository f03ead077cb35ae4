"""QONNX quantizers (Quant/IntQuant, BipolarQuant, Trunc) as exact fixed-point types.

A QONNX quantizer computes ``y = s * clip(R(x / s + z), lo, hi) - z*s``. With a power-of-two
scale ``s = 2^-f`` and ``z = 0`` this is exactly a cast into ``fixed<b, b-f>`` (``ufixed`` when
unsigned) with the rounding mode ``R`` and saturation, which is what this module returns:

* rounding: ROUND/HALF_EVEN -> RND_CONV (numpy's round, half to even), FLOOR -> TRN, DOWN (toward
  zero) -> TRN_ZERO, HALF_UP (ties away from zero) -> RND_INF, HALF_DOWN (ties toward zero) ->
  RND_ZERO; CEIL and UP have no ap_fixed mode (an error for activations; weights are constants and
  are quantized here exactly as qonnx does, so any mode works for them).
* overflow: SAT; signed with narrow=1 -> SAT_SYM (clip to [-max, max], identical to qonnx's
  narrow clip); unsigned with narrow=1 (max 2^b - 2) -> SAT plus a ReLU cap node.
* bit width 1 signed (and BipolarQuant) gives +-s (x >= 0 -> +s): weights get ``fixed<2, 2-f>``.

Constants (weights, biases) quantized by a Quant node become a `QConst`: the exact integers qonnx
computes and the scale, so that a consuming layer can use the declared type (power-of-two scale),
an integer kernel followed by a per-channel Scale node, or the exact values themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..config import FIXED_PRECISION_ATTR
from ..fixed import FixedType, PrecisionError
from ..intervals import Interval, type_for
from ..ir import GraphError
from .onnx import Converter, ONode, Value

#: QONNX rounding_mode -> ap_fixed rounding mode (for quantizers on activations)
ROUNDING_MODES = {'ROUND': 'RND_CONV', 'HALF_EVEN': 'RND_CONV', 'FLOOR': 'TRN', 'DOWN': 'TRN_ZERO',
                  'HALF_UP': 'RND_INF', 'HALF_DOWN': 'RND_ZERO'}


def pow2_exponent(values: np.ndarray) -> int | None:
    """f such that every value equals 2^-f (one common power of two), else None."""
    v = np.unique(np.asarray(values, dtype=np.float64))
    if v.size != 1 or not v[0] > 0 or not np.isfinite(v[0]):
        return None
    mantissa, exponent = np.frexp(v[0])
    return 1 - int(exponent) if mantissa == 0.5 else None


def exact_type(values: Any, where: str, what: str) -> FixedType:
    """The narrowest fixed-point type that holds every (finite, float64) value exactly."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(v)):
        raise GraphError(f'{where}: {what} has non-finite values')
    nz = v[v != 0]
    if nz.size == 0:
        return FixedType(1, 1, False)
    mant, exp = np.frexp(nz)
    m53 = np.ldexp(mant, 53).astype(np.int64)  # exact: |m53| < 2^53
    low_bit = m53 & -m53
    frac = int(np.max(53 - exp.astype(np.int64) - np.log2(low_bit).astype(np.int64)))
    mantissas = np.array([int(x) for x in np.ldexp(v, frac)], dtype=object)  # exact integers
    try:
        return type_for(Interval.of_values(mantissas, frac))
    except PrecisionError as err:
        raise GraphError(f'{where}: {what} needs a fixed-point type wider than the emulator supports: {err}') from None


@dataclass
class QConst:
    """A constant tensor quantized by a QONNX quantizer: value = ints * scale, exactly."""

    ints: np.ndarray  # integer-valued float64, the tensor's shape
    scale: np.ndarray  # float64 (exact float32 values), broadcast to the tensor's shape
    bits: int
    signed: bool
    bipolar: bool = False

    @property
    def value(self) -> np.ndarray:
        """The exact real values (float64 holds a b-bit integer times a float32 exactly)."""
        return self.ints * self.scale

    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor's shape."""
        return self.ints.shape

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> QConst:
        """Apply a shape operation (transpose, reshape, indexing) to integers and scales alike."""
        return QConst(np.asarray(fn(self.ints)), np.asarray(fn(self.scale)), self.bits, self.signed, self.bipolar)

    def scaled(self, factor: float) -> QConst:
        """The constant times a float32 factor (exact: a float32 times a float32 fits float64)."""
        return QConst(self.ints, self.scale * float(np.float32(factor)), self.bits, self.signed, self.bipolar)

    def int_type(self) -> FixedType:
        """The integer type of `ints`: int<b> / uint<b> (bipolar +-1: fixed<2,2>)."""
        if self.bipolar:
            return FixedType(2, 2, True)
        return FixedType(self.bits, self.bits, self.signed)

    def pow2_frac(self) -> int | None:
        """f when one power-of-two scale 2^-f applies to the whole tensor, else None."""
        return pow2_exponent(self.scale)

    def fixed_type(self, where: str, what: str) -> FixedType:
        """The declared type fixed<b, b-f> for a power-of-two scale, else the exact type of the values."""
        f = self.pow2_frac()
        if f is None:
            return exact_type(self.value, where, what)
        t = self.int_type()
        return FixedType(t.width, t.integer - f, t.signed)


def value_of(const: np.ndarray | QConst) -> np.ndarray:
    """The exact float64 values of a plain or quantized constant."""
    return const.value if isinstance(const, QConst) else np.asarray(const, dtype=np.float64)


# --------------------------------------------------------------------------- parameters


@dataclass
class QuantSpec:
    """The parameters of one Quant/IntQuant/BipolarQuant node (constants already read)."""

    scale: np.ndarray
    bits: int
    signed: bool
    narrow: bool
    rounding: str  # the QONNX rounding_mode, upper case
    bipolar: bool

    def activation_type(self, where: str) -> tuple[FixedType, int | None]:
        """The cast of a per-tensor power-of-two activation quantizer, and the unsigned-narrow cap mantissa."""
        if self.bipolar:
            raise AssertionError('bipolar quantizers are lowered separately')
        f = pow2_exponent(self.scale)
        if f is None:
            raise GraphError(
                f'{where}: scale {_brief(self.scale)} on an activation is not supported; only one '
                'power-of-two scale per tensor is (e.g. brevitas Int8ActPerTensorFixedPoint). Dividing '
                'by a non-power-of-two scale has no exact fixed-point form without comparators')
        rounding = ROUNDING_MODES.get(self.rounding)
        if rounding is None:
            raise GraphError(f'{where}: rounding_mode={self.rounding!r} has no ap_fixed equivalent; '
                             f'supported on activations: {sorted(ROUNDING_MODES)}')
        overflow = 'SAT_SYM' if self.signed and self.narrow else 'SAT'
        t = FixedType(self.bits, self.bits - f, self.signed, rounding, overflow)
        cap = (1 << self.bits) - 2 if self.narrow and not self.signed else None
        return t, cap


def _brief(a: np.ndarray) -> str:
    a = np.asarray(a).ravel()
    return str(a[:4].tolist())[:-1] + (', ...]' if a.size > 4 else ']')


def _bits(value: np.ndarray | None, where: str, what: str, limit: int) -> int:
    if value is None or np.asarray(value).size != 1:
        raise GraphError(f'{where}: {what} must be a constant scalar')
    b = float(np.asarray(value).ravel()[0])
    if b != math.floor(b) or not 1 <= b <= limit:
        raise GraphError(f'{where}: {what}={b} is not supported; it must be an integer 1..{limit}')
    return int(b)


def _zero(value: Any, where: str) -> None:
    if value is None:
        raise GraphError(f'{where}: the zero point must be a constant')
    if np.any(np.asarray(value) != 0):
        raise GraphError(f'{where}: zero point {_brief(np.asarray(value))} is not supported; only 0 '
                         '(symmetric quantization) is. With round-half-even an odd zero point rounds ties '
                         'to odd, which no ap_fixed mode does')


def _scale(value: Any, where: str) -> np.ndarray:
    if value is None:
        raise GraphError(f'{where}: the scale must be a constant (an initializer)')
    s = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise GraphError(f'{where}: scale {_brief(s)} must be positive and finite')
    return s


def quant_spec(op_type: str, attrs: dict[str, Any], consts: list[Any], where: str) -> QuantSpec:
    """Read a Quant/IntQuant (x, scale, zero point, bit width) or BipolarQuant (x, scale) node."""
    if op_type == 'BipolarQuant':
        _check_attrs(attrs, {}, where)
        return QuantSpec(_scale(consts[1], where), 1, True, False, 'ROUND', True)
    _check_attrs(attrs, {'signed': 1, 'narrow': 0, 'rounding_mode': 'ROUND'}, where)
    if len(consts) != 4:
        raise GraphError(f'{where}: expected 4 inputs (x, scale, zero point, bit width), got {len(consts)}')
    scale = _scale(consts[1], where)
    _zero(consts[2], where)
    signed = bool(attrs.get('signed', 1))
    bits = _bits(consts[3], where, 'bit width', 64 if signed else 63)
    rounding = str(attrs.get('rounding_mode', 'ROUND')).upper()
    narrow = bool(attrs.get('narrow', 0))
    if narrow and bits == 1:
        raise GraphError(f'{where}: narrow=1 with a bit width of 1 leaves no value (signed) or only 0')
    return QuantSpec(scale, bits, signed, narrow, rounding, signed and bits == 1)


def _check_attrs(attrs: dict[str, Any], known: dict[str, Any], where: str) -> None:
    for key in attrs:
        if key not in known:
            raise GraphError(f'{where}: attribute {key!r} is not supported; supported: {sorted(known) or "none"}')


def quantize_const(spec: QuantSpec, x: np.ndarray, where: str) -> QConst:
    """Quantize a constant exactly as qonnx's int_quant/binary_quant does (float32 division, its rounding)."""
    from qonnx.custom_op.general.intquant import max_int, min_int, resolve_rounding_mode

    x32 = np.asarray(x, dtype=np.float32)
    try:
        scale = np.broadcast_to(spec.scale, x32.shape)
    except ValueError:
        raise GraphError(f'{where}: scale of shape {spec.scale.shape} does not broadcast to the '
                         f'constant of shape {x32.shape}') from None
    if spec.bipolar:
        ints = np.where(x32 >= 0, 1.0, -1.0)
    else:
        y = x32 / scale.astype(np.float32)
        y = np.clip(y, min_int(spec.signed, spec.narrow, spec.bits), max_int(spec.signed, spec.narrow, spec.bits))
        try:
            ints = resolve_rounding_mode(spec.rounding)(y)
        except ValueError:
            raise GraphError(f'{where}: rounding_mode={spec.rounding!r} is not a QONNX rounding mode') from None
    return QConst(np.asarray(ints, dtype=np.float64), np.array(scale, dtype=np.float64), spec.bits,
                  spec.signed, spec.bipolar)


@dataclass
class TruncSpec:
    """A Trunc node: round x to the input grid s (half even), then drop bits with `rounding`."""

    in_frac: int  # the input scale is 2^-in_frac
    in_bits: int
    out_type: FixedType  # the cast onto the output grid (s * 2^shift)
    shift: int  # bits dropped: the output grid is s * 2^shift
    rescale: bool  # v1: the output is k * s (not k * s * 2^shift): multiply by 2^-shift
    cap: int | None  # unsigned narrow: largest mantissa (2^b - 2)


def trunc_spec(attrs: dict[str, Any], consts: list[Any], where: str) -> TruncSpec:
    """Read a Trunc node: v1 (x, scale, zero point, in bits, out bits), v2 (+ out scale; signed, narrow)."""
    v2 = len(consts) == 6
    if len(consts) not in (5, 6):
        raise GraphError(f'{where}: expected 5 (Trunc v1) or 6 (v2) inputs, got {len(consts)}')
    _check_attrs(attrs, {'rounding_mode': 'FLOOR', **({'signed': 1, 'narrow': 0} if v2 else {})}, where)
    f = pow2_exponent(_scale(consts[1], where))
    if f is None:
        raise GraphError(f'{where}: scale {_brief(np.asarray(consts[1]))} is not supported; only one '
                         'power-of-two scale per tensor is')
    _zero(consts[2], where)
    in_bits = _bits(consts[3], where, 'input bit width', 62)
    rounding_mode = str(attrs.get('rounding_mode', 'FLOOR')).upper()
    rounding = ROUNDING_MODES.get(rounding_mode)
    if rounding is None:
        raise GraphError(f'{where}: rounding_mode={rounding_mode!r} has no ap_fixed equivalent; '
                         f'supported: {sorted(ROUNDING_MODES)}')
    if not v2:
        out_bits = _bits(consts[4], where, 'output bit width', 62)
        shift = in_bits - out_bits
        # no clipping in v1: a signed type one bit wider than any in_bits-bit integer shifted right
        t = FixedType(max(out_bits, 0) + 2, max(out_bits, 0) + 2 - (f - shift), True, rounding, 'SAT')
        return TruncSpec(f, in_bits, t, shift, shift != 0, None)
    out_f = pow2_exponent(_scale(consts[4], where))
    if out_f is None:
        raise GraphError(f'{where}: output scale {_brief(np.asarray(consts[4]))} is not supported; only one '
                         'power-of-two scale per tensor is')
    signed, narrow = bool(attrs.get('signed', 1)), bool(attrs.get('narrow', 0))
    out_bits = _bits(consts[5], where, 'output bit width', 64 if signed else 63)
    overflow = 'SAT_SYM' if signed and narrow else 'SAT'
    t = FixedType(out_bits, out_bits - out_f, signed, rounding, overflow)
    cap = (1 << out_bits) - 2 if narrow and not signed else None
    return TruncSpec(f, in_bits, t, f - out_f, False, cap)


def trunc_input_type(spec: TruncSpec) -> FixedType:
    """Trunc's first step: round half to even onto the input grid; in_bits + 1 signed bits hold any
    signed or unsigned in_bits-bit integer (larger inputs saturate)."""
    return FixedType(spec.in_bits + 1, spec.in_bits + 1 - spec.in_frac, True, 'RND_CONV', 'SAT')


# --------------------------------------------------------------------------- quantizer handlers


def _quant(conv: Converter, onode: ONode) -> None:
    """Quant/IntQuant/BipolarQuant: on a constant an exact quantized constant, on a tensor a cast."""
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in onode.attrs.items()}
    consts = [conv.const(i) for i in onode.inputs]
    params = [None] + [None if c is None else value_of(c) for c in consts[1:]]
    spec = quant_spec(onode.op, attrs, params, onode.where())
    if consts[0] is not None:
        conv.consts[onode.outputs[0]] = quantize_const(spec, value_of(consts[0]), onode.where())
        return
    x = conv.value(onode.inputs[0], onode)
    if np.unique(spec.scale).size != 1:
        raise GraphError(f'{onode.where()}: per-channel scales on an activation are not supported; only one scale '
                         'per tensor is')
    if spec.bipolar:
        _bipolar(conv, onode, x, float(spec.scale.flat[0]))
        return
    t, cap = spec.activation_type(onode.where())
    _cast(conv, onode, x, t, cap)


def _cast(conv: Converter, onode: ONode, x: Value, t: FixedType, cap: int | None, name: str | None = None,
          register: bool = True) -> str:
    """Cast a tensor into `t` (a Quantize node, or the Input node's own type) and an optional cap."""
    layout = conv.preferred(x)
    src = conv.get(x, layout)
    node = conv.graph[src]
    fixed = node.attrs.get(FIXED_PRECISION_ATTR, {})
    if node.op == 'Input' and 'result' not in fixed and conv.single_consumer(onode.inputs[0]) and name is None:
        node.attrs[FIXED_PRECISION_ATTR] = {'result': t}  # quantize the float input directly
        res = src
    else:
        res = conv.add(onode, 'Quantize', [src], node.shape, name=name, fixed={'result': t})
    if cap is not None:  # unsigned narrow range: values stop at 2^b - 2
        attrs = {'function': 'relu', 'max_value': float(np.ldexp(cap, -t.frac))}
        res = conv.add(onode, 'Activation', [res], node.shape, name=conv.fresh(f'{conv.base(onode)}_narrow'),
                       attrs=attrs, fixed={'result': t})
    if register:
        conv.put(onode.outputs[0], x.shape, layout, res)
    return res


def _bipolar(conv: Converter, onode: ONode, x: Value, scale: float) -> None:
    """x >= 0 -> +s, else -s: cast into fixed<1,1,TRN,SAT> (0 or -1), then y = 2s*q + s (a Scale node)."""
    layout = conv.preferred(x)
    src = conv.get(x, layout)
    shape = conv.graph[src].shape
    sign = conv.add(onode, 'Quantize', [src], shape, fixed={'result': FixedType(1, 1, True, 'TRN', 'SAT')})
    n = shape[-1] if shape else 1
    s = np.float64(np.float32(scale))
    fixed = {'scale': exact_type([2 * s], onode.where(), 'the scale'),
             'bias': exact_type([s], onode.where(), 'the scale')}
    out = conv.add(onode, 'Scale', [sign], shape, name=conv.fresh(f'{conv.base(onode)}_bipolar'), fixed=fixed,
                   weights={'scale': np.full(n, 2 * s), 'bias': np.full(n, s)}, attrs={'fold': False})
    conv.put(onode.outputs[0], x.shape, layout, out)


def _trunc(conv: Converter, onode: ONode) -> None:
    """Trunc: round onto the input grid (half even), then drop `shift` LSBs with its rounding mode."""
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in onode.attrs.items()}
    consts = [None if c is None else value_of(c) for c in (conv.const(i) for i in onode.inputs)]
    spec = trunc_spec(attrs, consts, onode.where())
    x = conv.value(onode.inputs[0], onode)
    layout = conv.preferred(x)
    src = conv.get(x, layout)
    shape = conv.graph[src].shape
    grid = conv.add(onode, 'Quantize', [src], shape, name=conv.fresh(f'{conv.base(onode)}_round'),
                    fixed={'result': trunc_input_type(spec)})
    out = _cast(conv, onode, Value(x.shape, {layout: grid}), spec.out_type, spec.cap,
                name=conv.fresh(conv.base(onode), own=True), register=False)
    if spec.rescale:  # v1: the output keeps the input scale: k * s, not k * s * 2^shift
        n = shape[-1] if shape else 1
        factor = float(np.ldexp(1.0, -spec.shift))
        out = conv.add(onode, 'Scale', [out], shape, name=conv.fresh(f'{conv.base(onode)}_rescale'),
                       fixed={'scale': exact_type([factor], onode.where(), 'the scale')},
                       weights={'scale': np.full(n, factor), 'bias': np.zeros(n)}, attrs={'fold': False})
    conv.put(onode.outputs[0], x.shape, layout, out)


#: ops a quantizer commutes with (it is monotone): an activation before them can take its type
QUANT_TRANSPARENT = ('MaxPool', 'GlobalMaxPool', 'Flatten', 'Reshape', 'Transpose', 'Identity', 'Dropout',
                     'Squeeze', 'Unsqueeze')


def quantized_result(conv: Converter, onode: ONode) -> dict[str, FixedType] | None:
    """{'result': T} when the node's output reaches an activation quantizer of type T.

    Activations and average pooling get the model default result type otherwise ('auto'), which
    would round before the quantizer does; with T they round once, into T. The quantizer is kept
    as an explicit cast (then a no-op), so a configuration override cannot drop it.
    """
    t = _downstream_quant_type(conv, onode.outputs[0])
    return None if t is None else {'result': t}


def _downstream_quant_type(conv: Converter, tensor: str) -> FixedType | None:
    """The type of the activation quantizer this tensor reaches through quantizer-transparent ops.

    A quantizer Q is monotone, so Q(max(a, b)) = max(Q(a), Q(b)): quantizing before max pooling or
    a reshape gives the same values as after them.
    """
    from onnx import helper

    while conv.single_consumer(tensor):
        nxt = conv.consumers[tensor][0]
        if nxt.op_type in ('Quant', 'IntQuant') and nxt.input[0] == tensor:
            attrs = {a.name: helper.get_attribute_value(a) for a in nxt.attribute}
            attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
            consts = [None] + [None if conv.const(i) is None else value_of(conv.const(i)) for i in nxt.input[1:]]
            try:
                spec = quant_spec(nxt.op_type, attrs, consts, '')
                if spec.bipolar:
                    return None
                t, cap = spec.activation_type('')
            except GraphError:
                return None  # the quantizer itself reports the problem
            return t if cap is None else None
        if nxt.op_type not in QUANT_TRANSPARENT:
            return None
        tensor = nxt.output[0]
    return None


#: the QONNX quantizer handlers
QUANT_HANDLERS = {'Quant': _quant, 'IntQuant': _quant, 'BipolarQuant': _quant, 'Trunc': _trunc}
