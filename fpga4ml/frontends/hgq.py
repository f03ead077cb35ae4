"""HGQ2 front end: the layers of the ``hgq`` package (Keras 3) lowered onto the IR, bit-exactly.

HGQ2 trains a fixed-point type for every weight and (by default) for every element of every
activation: a quantizer holds per-element ``k`` (keep negative, 0/1), ``i`` (integer bits, sign
excluded) and ``f`` (fractional bits), with one rounding mode and one overflow mode. Its inference
(``model(x)``, float32) computes exactly what fpga4ml's integer semantics compute, when:

* every quantizer becomes a cast: element ``e`` into ``fixed<k+i'+f, k+i'>`` (``ufixed`` when k = 0)
  with ``i' = max(i, -f)`` (HGQ2 clamps i so the width is never negative), rounding TRN / RND /
  RND_CONV / ... as named (stochastic ``S_`` modes round like their base mode at inference) and
  overflow WRAP / SAT / SAT_SYM. An element with ``k + i + f <= 0`` is pruned: always 0. A signed
  one-bit SAT_SYM element can only hold 0 in HGQ2 (its maximum is 0) and is pruned too. HGQ2
  saturates before rounding and wraps after it; with grid-aligned bounds both equal ap_fixed's
  round-then-overflow.
* weights and biases are HGQ2's own quantized values (``layer.qkernel``, ``layer.qbias``, what its
  inference multiplies with); each is checked against its own trained type (a pruned weight is 0) and
  the layer's weight type is the smallest common type that holds all of them exactly;
* everything between quantizers is exact: Dense/Conv accumulators and results, merges, BatchNorm
  scale-and-shift, max pooling, power-of-two average pooling and the piecewise activations relu,
  relu6 and hard_tanh are typed 'auto' (exact) through ``node.attrs['fixed_precision']``.

A quantizer whose elements share one type becomes a plain ``Quantize`` node with that result type;
per-channel or per-element quantizers become a ``Quantize`` with ``attrs['element_types']`` (see
``ir.OPS``). The model input is typed so that quantizing the float input into it and then casting
into the first quantizer's types equals that quantizer applied to the float32 input.

Node names: ``<layer>_iq`` (input quantizer; ``<layer>_iq<k>`` per input of a merge), ``<layer>``
(the op), ``<layer>_<activation>``, ``<layer>_oq`` (output quantizer). Plain Keras layers of an HGQ2
model go through the Keras front end; the exact ones (merges, max pooling, relu/linear/hard_tanh
activations, reshapes) are typed 'auto' by `finalize` so they keep HGQ2's float semantics.
Every unsupported layer, quantizer or setting raises GraphError naming the layer.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..config import FIXED_PRECISION_ATTR
from ..fixed import AUTO, FixedType, PrecisionError
from ..intervals import Interval, type_for
from ..ir import Graph, GraphError, Node
from ..semantics.spec import make_node
from ..semantics.params import enclosing_type
from . import keras as K

#: HGQ2 rounding modes (after dropping the stochastic 'S_' prefix) with the same ap_fixed meaning
ROUNDING_MODES = ('TRN', 'RND', 'RND_CONV', 'TRN_ZERO', 'RND_ZERO', 'RND_MIN_INF', 'RND_INF')
#: HGQ2 overflow modes fpga4ml reproduces (WRAP_SM, HGQ2's reflecting wrap, has no ap_fixed equivalent)
OVERFLOW_MODES = ('WRAP', 'SAT', 'SAT_SYM')
#: activations of HGQ2 layers that float32 computes exactly (anything else cannot be bit-exact)
EXACT_ACTIVATIONS = ('linear', 'relu', 'relu6', 'hard_tanh')
#: ops that move values without changing them (a model input is found through them)
_MOVES = ('Reshape', 'Pad', 'Crop', 'Resize', 'Transpose')
#: float32 has 24 significant bits: with this many extra fractional bits (plus one for the half)
#: the input type holds every float32 value near a rounding tie exactly
_FLOAT32_GUARD_BITS = 25


# --------------------------------------------------------------------------- quantizers

@dataclass
class QuantSpec:
    """The inference semantics of one HGQ2 fixed-point quantizer over a tensor of `k.shape`.

    `k`, `i`, `f` are the effective per-element keep-negative, integer (sign excluded) and
    fractional bits; pruned elements (always 0) have k = i = f = 0.
    """

    k: np.ndarray
    i: np.ndarray
    f: np.ndarray
    rounding: str
    overflow: str

    @property
    def pruned(self) -> np.ndarray:
        """True where the element is always 0."""
        return (self.k + self.i + self.f) == 0

    def element_type(self, k: int, i: int, f: int) -> FixedType:
        """The ap_fixed type of an element with (k, i, f)."""
        return FixedType(k + i + f, k + i, bool(k), self.rounding, self.overflow)

    def triples(self) -> list[tuple[int, int, int]]:
        """The distinct (k, i, f) of the elements that are not pruned, sorted."""
        keys = np.stack([self.k.ravel(), self.i.ravel(), self.f.ravel()], axis=1)[~self.pruned.ravel()]
        return [tuple(int(v) for v in row) for row in np.unique(keys, axis=0)]

    def types(self) -> list[FixedType]:
        """The distinct element types (pruned elements excluded)."""
        return [self.element_type(*t) for t in self.triples()]

    @property
    def uniform(self) -> FixedType | None:
        """The single type of every element (None when they differ or some are pruned)."""
        triples = self.triples()
        if len(triples) != 1 or np.any(self.pruned):
            return None
        return self.element_type(*triples[0])

    def enclosing(self) -> FixedType:
        """The narrowest type holding every element's values (the Quantize node's result type)."""
        return enclosing_type(self.types(), self.rounding, self.overflow)

    def quantize_attrs(self) -> dict[str, Any]:
        """attrs of the Quantize node that applies this quantizer."""
        uniform = self.uniform
        attrs: dict[str, Any] = {FIXED_PRECISION_ATTR: {'result': uniform or self.enclosing()}}
        if uniform is None:
            attrs['element_types'] = {'k': self.k.astype(int).tolist(), 'i': self.i.astype(int).tolist(),
                                      'f': self.f.astype(int).tolist(), 'rounding': self.rounding,
                                      'overflow': self.overflow}
        return attrs


def _numpy(value: Any) -> np.ndarray:
    """A Keras tensor or variable as a float64 numpy array."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)


def _integral(a: np.ndarray, where: str, what: str) -> np.ndarray:
    """Bit counts as int64 (they must be whole numbers)."""
    if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
        raise GraphError(f'{where}: {what} has non-integer bit widths {np.unique(a)[:5]}')
    return a.astype(np.int64)


def quantizer_spec(q: Any, shape: tuple[int, ...], where: str, what: str, batch: bool = True,
                   weight: bool = False) -> QuantSpec | None:
    """The QuantSpec of an HGQ2 quantizer applied to a tensor of `shape` (per sample when `batch`).

    Returns None for a disabled (dummy) quantizer. GraphError for float quantizers, affine
    transforms, non power-of-two scalers, the WRAP_SM overflow mode, and weight-placed WRAP
    quantizers used on activations (HGQ2 does not wrap them).
    """
    from hgq.quantizer.internal import DummyQuantizer, FixedPointQuantizerBase

    if q is None:
        return None
    inner = getattr(q, 'quantizer', q)
    if isinstance(inner, DummyQuantizer):
        return None
    if not isinstance(inner, FixedPointQuantizerBase):
        q_type = getattr(getattr(q, 'config', None), 'q_type', '?')
        raise GraphError(f"{where}: {what} is a {type(inner).__name__} (q_type {q_type!r}); only HGQ2's "
                         "fixed-point quantizers (q_type 'kif' or 'kbi') are supported")
    if not inner.built:
        raise GraphError(f'{where}: {what} is not built; build or call the model once before converting it')
    affine = getattr(q, 'affine', None)
    if affine is not None and tuple(float(a) for a in affine) != (1.0, 0.0):
        raise GraphError(f'{where}: {what} has affine={affine}; quantizers with an affine transform are '
                         'not supported (only affine=None)')
    scale_bits = 0
    scaler = getattr(q, 'scaler', None)
    if scaler is not None:
        e = math.log2(abs(float(scaler))) if float(scaler) > 0 else math.nan
        if not float(e).is_integer():
            raise GraphError(f'{where}: {what} has scaler={scaler}; only power-of-two scalers are supported '
                             '(they shift the binary point)')
        scale_bits = int(e)
    rounding = inner.round_mode.upper()
    rounding = rounding[2:] if rounding.startswith('S_') else rounding  # stochastic only in training
    overflow = inner.overflow_mode.upper()
    if rounding not in ROUNDING_MODES:
        raise GraphError(f'{where}: {what} has round_mode={inner.round_mode!r}; supported: '
                         f'{list(ROUNDING_MODES)} (and their stochastic S_ forms)')
    if overflow not in OVERFLOW_MODES:
        raise GraphError(f'{where}: {what} has overflow_mode={inner.overflow_mode!r}; supported: '
                         f'{list(OVERFLOW_MODES)}')
    if (not weight and overflow == 'WRAP' and getattr(inner, '_is_weight', False) and inner.trainable
            and (type(inner).__name__ != 'FixedPointQuantizerKBI' or rounding == 'RND')):
        raise GraphError(f'{where}: {what} is a weight-placed (is_weight=True) WRAP quantizer on activations; '
                         'HGQ2 only rounds there and never wraps, which no cast reproduces; use is_weight=False')
    full = ((1,) + tuple(shape)) if batch else tuple(shape)
    try:
        k, i, f = (np.broadcast_to(_numpy(v), full) for v in inner.kif)
    except ValueError:
        raise GraphError(f'{where}: {what} has bit widths of shape {tuple(np.shape(inner.kif[0]))}, which do not '
                         f'broadcast to the tensor shape {full}') from None
    if batch:
        k, i, f = k[0], i[0], f[0]
    k = _integral(k, where, f'{what} k')
    i = _integral(i, where, f'{what} i')
    f = _integral(f, where, f'{what} f')
    if np.any((k != 0) & (k != 1)):
        raise GraphError(f'{where}: {what} has keep_negative values other than 0 and 1')
    # HGQ2's inference: i' = max(i, -f); an element with k + i + f <= 0 is 0
    pruned = (k + i + f) <= 0
    i = np.maximum(i, -f)
    if overflow == 'SAT_SYM':  # a signed 1-bit SAT_SYM element saturates to [-0, 0]
        pruned |= (k == 1) & (k + i + f == 1)
    k, i, f = (np.where(pruned, 0, a) for a in (k, i, f))
    i = np.where(pruned, 0, i + scale_bits)  # x / 2^s quantized, then * 2^s: the binary point moves
    f = np.where(pruned, 0, f - scale_bits)
    width = k + i + f
    if np.any(width > 64) or np.any((k == 0) & (width > 63)):
        raise GraphError(f'{where}: {what} has elements wider than 64 bits (signed) / 63 bits (unsigned)')
    return QuantSpec(k, i, f, rounding, overflow)


def smallest_type(values: np.ndarray, where: str, what: str) -> FixedType:
    """The narrowest fixed type holding every value of `values` exactly (ufixed<1,1> if all are 0)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    nz = v[v != 0]
    if nz.size == 0:
        return FixedType(1, 1, False)
    mant, exp = np.frexp(np.abs(nz))
    m = (mant * 2.0 ** 53).astype(np.int64)  # exact: |mant| < 1 has at most 53 significant bits
    trailing = np.log2(m & -m).astype(np.int64)
    frac = int(np.max(53 - exp - trailing))
    mantissas = np.array([int(x) for x in np.ldexp(v, frac)], dtype=object)
    try:
        return type_for(Interval.of_values(mantissas, frac))
    except PrecisionError as err:
        raise GraphError(f'{where}: the {what} values need a type wider than fpga4ml supports: {err}') from None


def quantized_weights(q: Any, qvalues: Any, where: str, what: str) -> tuple[np.ndarray, FixedType]:
    """HGQ2's quantized weights (float64) and their smallest common exact type.

    Every value is checked against its own trained type: a pruned element must be 0 and every
    other value a multiple of its element's LSB (GraphError otherwise, naming the element).
    """
    values = _numpy(qvalues)
    spec = quantizer_spec(q, values.shape, where, f'{what} quantizer', batch=False, weight=True)
    if spec is not None:
        bad = spec.pruned & (values != 0)
        scaled = np.ldexp(values, spec.f)
        bad |= ~spec.pruned & (scaled != np.round(scaled))
        if np.any(bad):
            pos = tuple(int(p) for p in np.argwhere(bad)[0])
            raise GraphError(f'{where}: quantized {what} value {values[pos]!r} at {pos} is not on the grid of its '
                             f'trained type (k={spec.k[pos]}, i={spec.i[pos]}, f={spec.f[pos]})')
    return values, smallest_type(values, where, what)


# --------------------------------------------------------------------------- graph helpers

def _fixed(node: Node, **types: Any) -> Node:
    """Record types fixed by the model (FixedType or AUTO for 'exact') on a node."""
    node.attrs.setdefault(FIXED_PRECISION_ATTR, {}).update(types)
    return node


def _input_type(requirements: list[dict], where: str) -> FixedType | None:
    """The model-input type that makes float -> input type -> quantizer equal the quantizer itself.

    One per-tensor quantizer: its own type. Otherwise TRN into a type with the largest integer
    bits, the largest fractional bits (plus float32 guard bits unless every quantizer truncates:
    float32 values near a rounding tie stay exact) and SAT or WRAP like the quantizers.
    """
    triples = sorted({tuple(t) for r in requirements for t in r['types']})
    if not triples:
        return None
    modes = {(r['rounding'], r['overflow']) for r in requirements}
    if all(r['uniform'] for r in requirements) and len(triples) == 1 and len(modes) == 1:
        (k, i, f), (rounding, overflow) = triples[0], modes.pop()
        return FixedType(k + i + f, k + i, bool(k), rounding, overflow)
    kinds = {'WRAP' if r['overflow'] == 'WRAP' else 'SAT' for r in requirements}
    if len(kinds) != 1:
        raise GraphError(f'{where}: one model input feeds quantizers that wrap and quantizers that saturate; '
                         'fpga4ml needs one overflow kind per input (give each quantizer its own input)')
    signed = any(k for k, _, _ in triples)
    integer = max(i for _, i, _ in triples) + (1 if signed else 0)
    max_f = max(f for _, _, f in triples)
    truncating = all(r['rounding'] == 'TRN' for r in requirements)
    frac = max_f if truncating else max_f + _FLOAT32_GUARD_BITS
    frac = min(frac, (64 if signed else 63) - integer)
    if frac < max_f + (0 if truncating else 1):
        raise GraphError(f'{where}: the input quantizers need more than 64 bits to be reproduced exactly')
    return FixedType(integer + frac, integer, signed, 'TRN', kinds.pop())


def _require_input(graph: Graph, src: str, spec: QuantSpec, where: str) -> None:
    """If `src` is (a reshape of) a model input, type that input for this quantizer (see _input_type)."""
    node = graph[src]
    while node.op in _MOVES and len(node.inputs) == 1:
        node = graph[node.inputs[0]]
    if node.op != 'Input':
        return
    requirements = node.attrs.setdefault('input_quantizers', [])
    requirements.append({'layer': where, 'types': [list(t) for t in spec.triples()], 'rounding': spec.rounding,
                         'overflow': spec.overflow, 'uniform': spec.uniform is not None})
    t = _input_type(requirements, f'input {node.name!r}')
    if t is not None:
        _fixed(node, result=t)


def _quantize(call: K._Call, graph: Graph, q: Any, src: str, shape: tuple[int, ...], suffix: str,
              what: str) -> str:
    """Add the Quantize node of quantizer `q` reading `src`; returns the node to read next."""
    spec = quantizer_spec(q, shape, call.where(), what)
    if spec is None:
        return src
    name = call.fresh(f'{call.layer.name}_{suffix}')
    graph.add(make_node(name, 'Quantize', [src], shape, attrs=spec.quantize_attrs(), source='Quantizer'))
    _require_input(graph, src, spec, call.where())
    return name


def _input_quantizer(call: K._Call, graph: Graph) -> str:
    """The layer's input quantizer (iq) as a Quantize node, when enabled."""
    layer = call.layer
    if not getattr(layer, 'enable_iq', False):
        return call.inputs[0]
    return _quantize(call, graph, layer.iq, call.inputs[0], call.in_shapes[0], 'iq', 'input quantizer (iq)')


def _exact_activation(node: Node) -> Node:
    """Mark a piecewise Activation node exact: its 'auto' result type holds every value."""
    node.attrs['exact_result'] = True
    return _fixed(node, result=AUTO)


def _finish(call: K._Call, graph: Graph, src: str) -> str:
    """The layer's activation (exact functions only) and output quantizer (oq) after node `src`."""
    layer = call.layer
    fn = getattr(layer, 'activation', None)
    key = K._activation_name(fn) if fn is not None else 'linear'
    if key != 'linear':
        if key not in EXACT_ACTIVATIONS:
            label = key or getattr(fn, '__name__', type(fn).__name__)
            raise GraphError(f'{call.where()}: activation {label!r} is computed in float by HGQ2 and cannot be '
                             f'reproduced bit-exactly; supported inside HGQ2 layers: {list(EXACT_ACTIVATIONS)}')
        node = K._activation_node(call.fresh(f'{layer.name}_{key}'), [src], call.out_shape, fn, call.where())
        graph.add(_exact_activation(node))
        src = node.name
    if getattr(layer, 'enable_oq', False):
        src = _quantize(call, graph, layer.oq, src, call.out_shape, 'oq', 'output quantizer (oq)')
    return src


def _weights(call: K._Call, kernel_q: Any, kernel: Any, bias_q: Any, bias: Any, n_out: int
             ) -> tuple[dict[str, np.ndarray], dict[str, FixedType], bool]:
    """Kernel and bias (quantized by HGQ2), their types, and whether there is a bias."""
    k, kt = quantized_weights(kernel_q, kernel, call.where(), 'kernel')
    if bias is None:
        return {'kernel': k, 'bias': np.zeros(n_out)}, {'weight': kt, 'bias': FixedType(1, 1, False)}, False
    b, bt = quantized_weights(bias_q, bias, call.where(), 'bias')
    return {'kernel': k, 'bias': b}, {'weight': kt, 'bias': bt}, True


# --------------------------------------------------------------------------- layer handlers

def _qdense(call: K._Call, graph: Graph) -> str:
    """QDense / QBatchNormDense -> [iq] Quantize, Dense (HGQ2's quantized, BN-fused weights), activation, [oq]."""
    layer = call.layer
    K._check_float_layer(call)
    src = _input_quantizer(call, graph)
    weights, types, use_bias = _weights(call, layer.kq, layer.qkernel, layer.bq, layer.qbias, call.out_shape[-1])
    node = make_node(call.name, 'Dense', [src], call.out_shape, weights=weights, attrs={'use_bias': use_bias},
                source=type(layer).__name__)
    graph.add(_fixed(node, **types, accum=AUTO, result=AUTO))
    return _finish(call, graph, call.name)


_DENSE_EINSUM = re.compile(r'(\.\.\.|[a-z]*)([a-z]),([a-z])([a-z])->(\.\.\.|[a-z]*)([a-z])')


def _qeinsum_dense(call: K._Call, graph: Graph) -> str:
    """QEinsumDense whose equation is a Dense over the last axis ('...c,co->...o', 'bc,co->bo', ...) -> as QDense."""
    layer = call.layer
    m = _DENSE_EINSUM.fullmatch(layer.equation.replace(' ', ''))
    dense = (m is not None and m[2] == m[3] and m[4] == m[6] and m[1] == m[5] and m[2] != m[4]
             and m[2] not in m[1] and m[4] not in m[1] and len(tuple(layer.kernel.shape)) == 2
             and (layer.bias is None or tuple(layer.bias.shape) == (call.out_shape[-1],)))
    if not dense:
        raise GraphError(f'{call.where()}: equation {layer.equation!r} (bias_axes {layer.bias_axes!r}) is not '
                         'supported; '
                         "only a Dense over the last axis such as '...c,co->...o' or 'bc,co->bo' with bias_axes "
                         "None or the output letter")
    return _qdense(call, graph)


def _qconv(call: K._Call, graph: Graph) -> str:
    """QConv1D / QConv2D -> [iq] Quantize, Conv (groups=1), activation, [oq]."""
    layer = call.layer
    K._spatial_rank(call)
    if layer.padding == 'causal':
        raise GraphError(f"{call.where()}: padding='causal' is not supported; use 'valid' or 'same' "
                         '(or a ZeroPadding1D before the layer)')
    if int(getattr(layer, 'groups', 1)) != 1:
        raise GraphError(f'{call.where()}: groups={layer.groups} is not supported; only groups=1')
    src = _input_quantizer(call, graph)
    weights, types, use_bias = _weights(call, layer.kq, layer.qkernel, layer.bq, layer.qbias, call.out_shape[-1])
    attrs = {**K._window_attrs(call, layer.kernel_size, layer.strides, layer.dilation_rate), 'groups': 1,
             'use_bias': use_bias}
    node = make_node(call.name, 'Conv', [src], call.out_shape, weights=weights, attrs=attrs, source=type(layer).__name__)
    graph.add(_fixed(node, **types, accum=AUTO, result=AUTO))
    return _finish(call, graph, call.name)


def _qbatchnorm(call: K._Call, graph: Graph) -> str:
    """QBatchNormalization -> [iq] Quantize, Scale (HGQ2's quantized scale and offset), [oq]."""
    layer = call.layer
    axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
    if axis is None:
        raise GraphError(f'{call.where()}: BatchNormalization over several axes {layer.axis} is not supported')
    K._last_axis(int(axis), len(call.out_shape) + 1, call.where(), 'BatchNormalization')
    src = _input_quantizer(call, graph)
    qscale, qoffset = layer.qscaler_and_qoffset
    scale, st = quantized_weights(layer.kq, qscale, call.where(), 'scale')
    offset, bt = quantized_weights(layer.bq, qoffset, call.where(), 'offset')
    node = make_node(call.name, 'Scale', [src], call.out_shape, weights={'scale': scale, 'bias': offset},
                attrs={'axis': -1, 'epsilon': float(layer.epsilon), 'fold': False},  # exact: never refolded
                source=type(layer).__name__)
    graph.add(_fixed(node, scale=st, bias=bt, result=AUTO))
    return _finish(call, graph, call.name)


MERGE_MODES = {'QAdd': 'add', 'QSubtract': 'sub', 'QMultiply': 'mul', 'QMaximum': 'max', 'QMinimum': 'min',
               'QAveragePow2': 'avg'}


def _qmerge(call: K._Call, graph: Graph) -> str:
    """QAdd / QSubtract / QMultiply / QMaximum / QMinimum / QAveragePow2 -> a Quantize per input, exact Merge, [oq]."""
    layer = call.layer
    cls = type(layer).__name__
    K._check_same_shapes(call)
    mode = MERGE_MODES[cls]
    n = len(call.inputs)
    if mode == 'avg' and n & (n - 1):
        raise GraphError(f'{call.where()}: QAveragePow2 of {n} inputs multiplies the sum by '
                         f'2^{round(math.log2(1.0 / n))}, not 1/{n}; only a power-of-two number of inputs is supported')
    srcs = list(call.inputs)
    if getattr(layer, 'enable_iq', False):
        srcs = [_quantize(call, graph, layer.iq[k], s, call.in_shapes[k], f'iq{k}', f'input quantizer {k} (iq)')
                for k, s in enumerate(srcs)]
    node = make_node(call.name, 'Merge', srcs, call.out_shape, attrs={'mode': mode}, source=cls)
    graph.add(_fixed(node, result=AUTO))
    return _finish(call, graph, call.name)


def _qpool(call: K._Call, graph: Graph) -> str:
    """QMaxPooling / QAveragePooling (1D/2D, global) -> [iq] Quantize, exact Pool (+ Reshape), [oq]."""
    layer = call.layer
    cls = type(layer).__name__
    src = _input_quantizer(call, graph)
    inner = dataclasses.replace(call, inputs=[src])
    out = K._global_pool(inner, graph) if cls.startswith('QGlobal') else K._pool(inner, graph)
    node = graph[call.name]
    node.attrs['mode'] = 'max' if cls.startswith(('QMax', 'QGlobalMax')) else 'avg'  # K._pool reads Keras names
    if node.attrs['mode'] == 'max':
        _fixed(node, accum=AUTO, result=AUTO)
    else:
        taps = int(np.prod(node.attrs['pool_size']))
        if taps & (taps - 1) or any(node.attrs['padding']):
            raise GraphError(f'{call.where()}: average pooling is exact only over a power-of-two number of cells '
                             f'without padding; this layer averages {taps} cells with padding {node.attrs["padding"]}')
        if src == call.inputs[0]:
            raise GraphError(f'{call.where()}: average pooling needs its input quantizer (enable_iq=True) '
                             'to know the exact type of the average')
        in_t = graph[src].attrs[FIXED_PRECISION_ATTR]['result']
        e = taps.bit_length() - 1  # the average of 2^e values needs e more fractional bits, no more integer bits
        _fixed(node, accum=AUTO, result=FixedType(in_t.width + e, in_t.integer, in_t.signed))
    return _finish(call, graph, out)


def _quantizer_layer(call: K._Call, graph: Graph) -> str:
    """hgq Quantizer used as a layer (also the qkeras-compatible QActivation) -> Quantize."""
    spec = quantizer_spec(call.layer, call.out_shape, call.where(), 'quantizer')
    if spec is None:
        return call.inputs[0]
    graph.add(call.node('Quantize', attrs=spec.quantize_attrs(), source='Quantizer'))
    _require_input(graph, call.inputs[0], spec, call.where())
    return call.name


#: HGQ2 layer class name -> handler (the Keras front end dispatches here for classes of the hgq package)
HANDLERS: dict[str, Callable[[K._Call, Graph], str]] = {
    'QDense': _qdense,
    'QBatchNormDense': _qdense,
    'QEinsumDense': _qeinsum_dense,
    'QConv1D': _qconv,
    'QConv2D': _qconv,
    'QBatchNormalization': _qbatchnorm,
    **{cls: _qmerge for cls in MERGE_MODES},
    **{f'Q{op}Pooling{d}D': _qpool for op in ('Max', 'Average') for d in (1, 2)},
    **{f'QGlobal{op}Pooling{d}D': _qpool for op in ('Max', 'Average') for d in (1, 2)},
    'Quantizer': _quantizer_layer,
}

from .hgq_attention import HANDLERS as _ATTENTION_HANDLERS  # noqa: E402  (QEinsumDense, QMultiHeadAttention)

HANDLERS.update(_ATTENTION_HANDLERS)
from .hgq_rnn import HANDLERS as _RNN_HANDLERS  # noqa: E402  (QSimpleRNN, QGRU)

HANDLERS.update(_RNN_HANDLERS)

#: HGQ2 class names this front end accepts
SUPPORTED_LAYERS: tuple[str, ...] = tuple(sorted(HANDLERS))


def handler(layer: Any) -> Callable[[K._Call, Graph], str]:
    """The handler of an HGQ2 layer (GraphError naming the layer and the supported classes otherwise)."""
    cls = type(layer).__name__
    found = HANDLERS.get(cls)
    if found is None:
        raise GraphError(f'layer {layer.name!r} of HGQ2 class {cls} is not supported. Supported HGQ2 layers: '
                         f'{", ".join(SUPPORTED_LAYERS)}; plain Keras layers as in the Keras front end')
    return found


def finalize(graph: Graph) -> Graph:
    """Type the plain, exact Keras layers of an HGQ2 model 'auto' (exact), as HGQ2 computes them in float.

    Merges, max pooling and relu/linear/hard_tanh activations that no HGQ2 handler typed get exact
    'auto' types; other plain layers (float Dense, BatchNormalization, tables) keep the configuration.
    """
    for node in graph:
        if FIXED_PRECISION_ATTR in node.attrs:
            continue
        if node.op == 'Merge':
            _fixed(node, result=AUTO)
        elif node.op == 'Pool' and node.attrs.get('mode') == 'max':
            _fixed(node, accum=AUTO, result=AUTO)
        elif (node.op == 'Activation' and node.attrs.get('function') in ('linear', 'relu', 'hard_tanh')
              and not node.attrs.get('threshold')):
            _exact_activation(node)
    return graph
