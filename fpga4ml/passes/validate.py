"""Refuse weights and attributes that would make a silently wrong design.

Runs on the front end's float graph (before BatchNorm fusion) and again after quantization:

- every weight must be a real, finite number: NaN or +-Inf (a diverged training, a BatchNorm with a
  NaN or negative variance) raise, naming the layer, the weight and the first bad index; so does a
  weight of magnitude 2^63 or more, which no fixed-point type of at most 64 bits can hold;
- numeric attributes (alpha, threshold, max_value, epsilon, ...) must be finite as well;
- a weight that overflows its fixed-point type warns (`WeightOverflowWarning`), naming the layer, the
  weight, the count and the first index: under WRAP a weight of 33 in ``fixed<16,6>`` becomes -31.
  It is a warning, not an error, because the design is still well defined and equals hls4ml's and
  the hardware's bit for bit (quantization-aware flows and hls4ml's tests use such types on purpose).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..ir import Graph, GraphError, Node
from ..semantics.spec import check_node, spec_of

#: weights at or above this magnitude fit no fixed-point type of at most 64 bits
LARGEST_WEIGHT = 2.0**63
#: attributes that hold front-end scalars/sequences of layer parameters (shapes and names excluded)
NUMERIC_ATTRS = ('alpha', 'threshold', 'max_value', 'slope', 'shift', 'epsilon', 'negative_slope', 'scale_value')


class WeightOverflowWarning(UserWarning):
    """Weights wrapped or saturated when quantized to their fixed-point type."""


def _describe_source(node: Node) -> str:
    if 'batchnorm' in node.source.lower() or node.op == 'Scale':
        return ' (a BatchNormalization scale is gamma / sqrt(variance + epsilon): check the moving variance)'
    return ''


def check_finite_weights(graph: Graph) -> None:
    """Raise a GraphError naming the layer, weight and index of the first NaN, Inf or complex weight.

    Each node is first checked against its op's declaration (unknown or missing attributes, unknown weights).
    """
    for node in graph:
        check_node(node)
        for wname, w in node.weights.items():
            arr = np.asarray(w)
            if np.iscomplexobj(arr):
                raise GraphError(f'layer {node.name!r}: weight {wname!r} is complex ({arr.dtype}); only real '
                                 'weights are supported')
            if arr.dtype.kind not in 'biuf':
                raise GraphError(f'layer {node.name!r}: weight {wname!r} has dtype {arr.dtype}; expected real numbers')
            bad = ~np.isfinite(arr) | (np.abs(arr) >= LARGEST_WEIGHT)
            if bad.any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                raise GraphError(
                    f'layer {node.name!r}: weight {wname!r} has {int(bad.sum())} non-finite or out-of-range value(s), '
                    f'the first {arr[index]!r} at index {index}{_describe_source(node)}; weights must be finite '
                    f'real numbers of magnitude below 2^63')
        for key in NUMERIC_ATTRS:
            _check_finite_attr(node, key, node.attrs.get(key))


def _check_finite_attr(node: Node, key: str, value) -> None:
    if value is None or isinstance(value, (str, bool)):
        return
    values = np.asarray(value)
    if values.dtype.kind == 'c':
        raise GraphError(f'layer {node.name!r}: attribute {key!r} is complex ({value!r}); expected a real number')
    if values.dtype.kind not in 'biuf':
        return
    if not np.isfinite(values).all():
        raise GraphError(f'layer {node.name!r}: attribute {key!r} = {value!r} is not finite; expected a finite '
                         'real number')


def check_weight_ranges(graph: Graph) -> None:
    """Warn once per weight that overflows its fixed-point type (wraps or saturates), naming the first index."""
    for node in graph:
        for wname, var in spec_of(node).weights.items():
            t = node.types.get(var) if var else None
            if wname not in node.weights or t is None:
                continue
            w = np.asarray(node.weights[wname], dtype=np.float64)
            _, n_over = t.quantize_count(w)
            if not n_over:
                continue
            over = (w > t.max_value) | (w < t.min_value)  # rounding up to max + lsb overflows too
            index = tuple(int(i) for i in np.argwhere(over)[0]) if over.any() else np.unravel_index(
                int(np.argmax(np.abs(w))), w.shape)
            index = tuple(int(i) for i in index)
            what = (f'layer {node.name!r}: {n_over} value(s) of weight {wname!r} are outside the range '
                    f'[{t.min_value}, {t.max_value}] of its type {t} (the first, {w[index]!r}, at index {index})')
            effect = 'they wrap (WRAP: their sign and magnitude change)' if t.overflow == 'WRAP' else \
                f'they saturate ({t.overflow})'
            warnings.warn(f'{what}; {effect}. Give Precision[{var!r}] more integer bits if this is not intended',
                          WeightOverflowWarning, stacklevel=4)
