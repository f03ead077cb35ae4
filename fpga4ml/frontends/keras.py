"""Keras 3 front end: lower a Sequential or Functional `keras.Model` onto the IR.

Keras is imported lazily inside the functions, so that `import fpga4ml` needs only numpy.

Conventions (one IR node per tensor a layer produces; names are Keras layer names):

* ``InputLayer`` -> ``Input``; ``graph.inputs``/``graph.outputs`` follow ``model.inputs``/``model.outputs``.
* ``Dense`` -> ``Dense`` (weights ``kernel`` (n_in, n_out), ``bias`` (n_out,), attrs ``use_bias``),
  followed by a separate activation node ``f'{layer.name}_{keras_activation_name}'`` unless linear.
* Activations -> ``Activation`` with attrs ``function`` (an IR function name) plus ``alpha``,
  ``max_value``, ``threshold``, ``slope``/``shift`` (hard_sigmoid) where they apply; softmax -> ``Softmax``
  with ``axis=-1``. ``PReLU`` stores weights ``alpha`` broadcast to the full per-sample shape.
* ``BatchNormalization`` -> ``Scale`` (weights ``scale``, ``bias``; raw statistics in ``attrs['bn']``).
* Merge layers -> ``Merge`` (attrs ``mode``; ``axis`` as a negative per-sample axis for concat).
* ``Dot`` of two vectors (as hls4ml's dot1d) -> ``Merge`` mode 'mul' ``'<name>_mul'`` whose result type
  is the Dot's accum type + ``Dense`` ``'<name>'`` with an all-ones kernel of the exact type
  ``ufixed<1,1>`` (accum and result are the Dot's); only these two variables are configurable.
* ``Flatten``/``Reshape`` -> ``Reshape`` (attrs ``shape``, the resolved per-sample output shape).
* ``Conv1D``/``Conv2D`` -> ``Conv`` (channels-last; Keras kernel layout; 'valid'/'same' resolved to
  explicit ``padding`` amounts; ``groups=1``), plus an activation node like Dense.
  ``DepthwiseConv1D/2D`` -> ``Conv`` with ``groups`` = channels, kernel reshaped to (kh, kw, 1, C*m).
  ``SeparableConv1D/2D`` -> depthwise ``Conv`` ``'<name>_depthwise'`` (no bias) + pointwise 1x1 ``Conv``.
* ``MaxPooling``/``AveragePooling`` 1D/2D -> ``Pool`` (mode, pool_size, strides, padding);
  ``Global*Pooling`` -> ``Pool`` over the whole extent (attrs ``global``) + ``Reshape`` ``'<name>_flatten'``
  unless ``keepdims``.
* ``ZeroPadding``/``Cropping``/``UpSampling`` (nearest) 1D/2D -> ``Pad``/``Crop``/``Resize``;
  ``Permute`` -> ``Transpose``.
* Dropout-like layers are inference no-ops and produce no node.
* A Sequential/Functional model used as a layer is inlined.
* Layer classes of the ``hgq`` package (HGQ2 quantization-aware layers) are lowered by ``hgq.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import INTERNAL_PRECISION_ATTR, PART_OF_ATTR
from ..fixed import FixedType
from ..geometry import same_padding
from ..ir import Graph, GraphError, Node
from ..semantics.spec import make_node
from .optional import import_framework

#: Keras activation names -> (IR op, IR function, extra attrs). 'linear' on a Dense adds no node.
ACTIVATIONS: dict[str, tuple[str, str, dict[str, Any]]] = {
    'linear': ('Activation', 'linear', {}),
    'relu': ('Activation', 'relu', {}),
    'relu6': ('Activation', 'relu', {'max_value': 6.0}),
    'leaky_relu': ('Activation', 'leaky_relu', {'alpha': 0.2}),
    'sigmoid': ('Activation', 'sigmoid', {}),
    'hard_sigmoid': ('Activation', 'hard_sigmoid', {'slope': 1.0 / 6.0, 'shift': 0.5}),
    'tanh': ('Activation', 'tanh', {}),
    'hard_tanh': ('Activation', 'hard_tanh', {}),
    'softplus': ('Activation', 'softplus', {}),
    'softsign': ('Activation', 'softsign', {}),
    'elu': ('Activation', 'elu', {'alpha': 1.0}),
    'selu': ('Activation', 'selu', {}),
    'exponential': ('Activation', 'exp', {}),
    'gelu': ('Activation', 'gelu', {}),
    'softmax': ('Softmax', 'softmax', {'axis': -1}),
}

#: Layers that are identities at inference time; they produce no node.
SKIPPED_LAYERS = (
    'Dropout', 'SpatialDropout1D', 'SpatialDropout2D', 'SpatialDropout3D', 'GaussianNoise',
    'GaussianDropout', 'AlphaDropout', 'ActivityRegularization', 'Identity',
)

MERGE_MODES = {
    'Add': 'add', 'Subtract': 'sub', 'Multiply': 'mul', 'Average': 'avg',
    'Maximum': 'max', 'Minimum': 'min', 'Concatenate': 'concat',
}


@dataclass
class _Call:
    """One call of a Keras layer: the layer, its node name, input node names and shapes."""

    layer: Any
    name: str
    inputs: list[str]
    in_shapes: list[tuple[int, ...]]
    out_shape: tuple[int, ...]
    #: allocates a fresh name for an extra node (e.g. the activation after a Dense)
    fresh: Callable[[str], str]

    def node(self, op: str, **kwargs: Any) -> Node:
        """A node for this call with the call's name, inputs, output shape and source class."""
        kwargs.setdefault('shape', self.out_shape)
        kwargs.setdefault('source', type(self.layer).__name__)
        return make_node(self.name, op, list(self.inputs), **kwargs)

    def where(self) -> str:
        """'layer NAME (CLASS)' for error messages."""
        return f'layer {self.layer.name!r} ({type(self.layer).__name__})'


# --------------------------------------------------------------------------- helpers


def _to_numpy(variable: Any) -> np.ndarray:
    """A Keras variable or tensor as a float32 numpy array."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)


def _per_sample_shape(tensor: Any, where: str) -> tuple[int, ...]:
    """The shape of a KerasTensor without its batch axis; every dimension must be known."""
    shape = tuple(tensor.shape)[1:]
    if any(d is None for d in shape):
        raise GraphError(f'{where}: per-sample shape {shape} has unknown dimensions; '
                         'fpga4ml needs fully defined shapes (give keras.Input a full shape)')
    return tuple(int(d) for d in shape)


def _activation_name(fn: Any) -> str | None:
    """The name of a built-in keras.activations function (None for anything else)."""
    import keras

    for name in ACTIVATIONS:
        if getattr(keras.activations, name, None) is fn:
            return name
    return None


def _activation_node(name: str, inputs: list[str], shape: tuple[int, ...], fn: Any, where: str,
                     source: str = 'Activation') -> Node:
    """The Activation/Softmax node for a Keras activation function (GraphError if unsupported)."""
    key = _activation_name(fn)
    from .keras_attention import gelu_partial  # functools.partial(keras.activations.gelu, approximate=True)
    if key is None and gelu_partial(fn):
        return make_node(name, 'Activation', inputs, shape, attrs={'function': gelu_partial(fn)}, source=source)
    if key is None:
        label = getattr(fn, '__name__', None) or type(fn).__name__
        raise GraphError(f'{where}: activation {label!r} is not supported; '
                         f'supported activations are {sorted(ACTIVATIONS)}')
    op, function, attrs = ACTIVATIONS[key]
    if op == 'Softmax':
        return make_node(name, 'Softmax', inputs, shape, attrs=dict(attrs), source=source)
    return make_node(name, 'Activation', inputs, shape, attrs={'function': function, **attrs}, source=source)


def _check_same_shapes(call: _Call) -> None:
    """Element-wise merges need identical input shapes (no broadcasting)."""
    if len(set(call.in_shapes)) != 1:
        raise GraphError(f'{call.where()}: inputs have shapes {call.in_shapes}; '
                         'element-wise merges need identical shapes (no broadcasting)')


def _last_axis(axis: int, rank: int, where: str, what: str) -> None:
    """Raise unless `axis` (of a batched tensor of `rank`) is the last axis."""
    if rank < 2 or axis % rank != rank - 1 or not -rank <= axis < rank:
        raise GraphError(f'{where}: {what} axis={axis} on a tensor of rank {rank} (with batch) '
                         'is not supported; only the last axis (-1) is')


# --------------------------------------------------------------------------- layer handlers
# Each handler adds the nodes of one layer call to the graph and returns the name of the node
# that holds the call's output tensor.


def _with_activation(call: _Call, graph: Graph, source: str) -> str:
    """Add the activation node of a layer's `activation` after node `source` (none if linear)."""
    import keras

    layer = call.layer
    if layer.activation is keras.activations.linear:
        return source
    key = _activation_name(layer.activation) or 'activation'
    act_name = call.fresh(f'{layer.name}_{key}')
    graph.add(_activation_node(act_name, [source], call.out_shape, layer.activation, call.where()))
    return act_name


def _check_float_layer(call: _Call) -> None:
    """Reject Keras' built-in quantization modes (int8/float8 kernels): convert the float model."""
    mode = getattr(call.layer, 'quantization_mode', None)
    if mode:
        raise GraphError(f'{call.where()}: Keras quantization mode {mode!r} is not supported; '
                         'convert the float model')


def _bias_or_zeros(layer: Any, n: int) -> tuple[np.ndarray, bool]:
    """The layer's bias, or n zeros when it has none; and whether it has one."""
    if getattr(layer, 'bias', None) is None:
        return np.zeros(n, dtype=np.float32), False
    return _to_numpy(layer.bias), True


def _dense(call: _Call, graph: Graph) -> str:
    """Dense -> Dense (+ an activation node unless linear)."""
    _check_float_layer(call)
    kernel = _to_numpy(call.layer.kernel)
    bias, use_bias = _bias_or_zeros(call.layer, kernel.shape[1])
    graph.add(call.node('Dense', weights={'kernel': kernel, 'bias': bias}, attrs={'use_bias': use_bias}))
    return _with_activation(call, graph, call.name)


# ---- convolutional layers (channels-last only; 1D ops are (W, C), 2D ops (H, W, C))

def _spatial_rank(call: _Call) -> int:
    """1 or 2: the spatial rank of a channels-last Conv/Pool/Padding layer (GraphError otherwise)."""
    layer = call.layer
    fmt = getattr(layer, 'data_format', 'channels_last')
    if fmt != 'channels_last':
        raise GraphError(f"{call.where()}: data_format={fmt!r} is not supported; only 'channels_last' "
                         '(convert channels_first models with a Permute, or rebuild them channels-last)')
    rank = len(call.in_shapes[0]) - 1
    if rank not in (1, 2):
        raise GraphError(f'{call.where()}: input shape {call.in_shapes[0]} is not (W, C) or (H, W, C)')
    return rank


def _explicit_padding(call: _Call, padding: str, kernel: tuple[int, ...], strides: tuple[int, ...],
                      dilation: tuple[int, ...]) -> tuple[int, ...]:
    """Keras padding='valid'/'same' as pad amounts (left, right) or (top, bottom, left, right)."""
    if padding == 'valid':
        return (0,) * (2 * len(kernel))
    if padding != 'same':
        raise GraphError(f"{call.where()}: padding={padding!r} is not supported; use 'valid' or 'same'")
    spatial = call.in_shapes[0][:-1]
    pads: tuple[int, ...] = ()
    for size, k, s, d in zip(spatial, kernel, strides, dilation):
        pads += same_padding(size, k, s, d)
    return pads


def _window_attrs(call: _Call, kernel: tuple[int, ...], strides: tuple[int, ...],
                  dilation: tuple[int, ...]) -> dict[str, Any]:
    """kernel_size, strides, dilation and explicit padding of a convolution layer."""
    kernel, strides, dilation = (tuple(int(v) for v in t) for t in (kernel, strides, dilation))
    padding = _explicit_padding(call, call.layer.padding, kernel, strides, dilation)
    return {'kernel_size': kernel, 'strides': strides, 'dilation': dilation, 'padding': padding}


def _conv(call: _Call, graph: Graph) -> str:
    """Conv1D/Conv2D -> Conv (groups=1) (+ an activation node unless linear)."""
    _check_float_layer(call)
    layer = call.layer
    _spatial_rank(call)
    if int(getattr(layer, 'groups', 1)) != 1:
        raise GraphError(f'{call.where()}: groups={layer.groups} is not supported; only groups=1 '
                         '(or a DepthwiseConv layer for one group per channel)')
    kernel = _to_numpy(layer.kernel)
    bias, use_bias = _bias_or_zeros(layer, kernel.shape[-1])
    attrs = {**_window_attrs(call, layer.kernel_size, layer.strides, layer.dilation_rate), 'groups': 1,
             'use_bias': use_bias}
    graph.add(call.node('Conv', weights={'kernel': kernel, 'bias': bias}, attrs=attrs))
    return _with_activation(call, graph, call.name)


def _depthwise_node(call: _Call, name: str, kernel: np.ndarray, bias: np.ndarray, use_bias: bool,
                    shape: tuple[int, ...]) -> Node:
    """A depthwise Conv node: Keras kernel (kh, kw, C, m) -> (kh, kw, 1, C*m), groups = C."""
    layer = call.layer
    *taps, channels, multiplier = kernel.shape
    attrs = {**_window_attrs(call, layer.kernel_size, layer.strides, layer.dilation_rate),
             'groups': int(channels), 'use_bias': use_bias}
    weights = {'kernel': kernel.reshape(*taps, 1, channels * multiplier), 'bias': bias}
    return make_node(name, 'Conv', list(call.inputs), shape, attrs=attrs, weights=weights,
                source=type(layer).__name__)


def _depthwise_conv(call: _Call, graph: Graph) -> str:
    """DepthwiseConv1D/2D -> Conv with groups = channels (+ an activation node unless linear)."""
    _check_float_layer(call)
    _spatial_rank(call)
    kernel = _to_numpy(call.layer.kernel)
    bias, use_bias = _bias_or_zeros(call.layer, kernel.shape[-2] * kernel.shape[-1])
    graph.add(_depthwise_node(call, call.name, kernel, bias, use_bias, call.out_shape))
    return _with_activation(call, graph, call.name)


def _separable_conv(call: _Call, graph: Graph) -> str:
    """SeparableConv1D/2D -> depthwise Conv '<name>_depthwise' (no bias) + pointwise 1x1 Conv '<name>'."""
    _check_float_layer(call)
    layer = call.layer
    rank = _spatial_rank(call)
    depthwise = _to_numpy(layer.depthwise_kernel)
    pointwise = _to_numpy(layer.pointwise_kernel)
    bias, use_bias = _bias_or_zeros(layer, pointwise.shape[-1])
    dw_channels = depthwise.shape[-2] * depthwise.shape[-1]
    dw_name = call.fresh(f'{layer.name}_depthwise')
    dw_shape = call.out_shape[:-1] + (dw_channels,)
    graph.add(_depthwise_node(call, dw_name, depthwise, np.zeros(dw_channels, np.float32), False, dw_shape))
    ones = (1,) * rank
    attrs = {'kernel_size': ones, 'strides': ones, 'dilation': ones, 'padding': (0,) * (2 * rank),
             'groups': 1, 'use_bias': use_bias}
    graph.add(make_node(call.name, 'Conv', [dw_name], call.out_shape, attrs=attrs,
                   weights={'kernel': pointwise, 'bias': bias}, source=type(layer).__name__))
    return _with_activation(call, graph, call.name)


def _pool(call: _Call, graph: Graph) -> str:
    """MaxPooling/AveragePooling 1D/2D -> Pool (mode max/avg, pool_size, strides, explicit padding)."""
    layer = call.layer
    rank = _spatial_rank(call)
    pool_size = tuple(int(p) for p in layer.pool_size)
    strides = tuple(int(s) for s in layer.strides)
    padding = _explicit_padding(call, layer.padding, pool_size, strides, (1,) * rank)
    mode = 'max' if type(layer).__name__.startswith('Max') else 'avg'
    graph.add(call.node('Pool', attrs={'mode': mode, 'pool_size': pool_size, 'strides': strides,
                                       'padding': padding}))
    return call.name


def _global_pool(call: _Call, graph: Graph) -> str:
    """GlobalMax/GlobalAveragePooling 1D/2D -> Pool over the whole extent (+ Reshape unless keepdims)."""
    layer = call.layer
    rank = _spatial_rank(call)
    extent = tuple(call.in_shapes[0][:-1])
    mode = 'max' if type(layer).__name__.startswith('GlobalMax') else 'avg'
    pooled = (1,) * rank + call.in_shapes[0][-1:]
    attrs = {'mode': mode, 'pool_size': extent, 'strides': extent, 'padding': (0,) * (2 * rank), 'global': True}
    graph.add(call.node('Pool', shape=pooled, attrs=attrs))
    if call.out_shape == pooled:
        return call.name
    name = call.fresh(f'{layer.name}_flatten')
    graph.add(make_node(name, 'Reshape', [call.name], call.out_shape, attrs={'shape': call.out_shape}, source='Reshape'))
    return name


def _pad_amounts(call: _Call, value: Any, what: str) -> tuple[int, ...]:
    """ZeroPadding/Cropping amounts ((t, b), (l, r)) or (l, r) as a flat tuple (t, b, l, r) / (l, r)."""
    rank = _spatial_rank(call)
    flat = tuple(int(v) for pair in (value if rank == 2 else (value,)) for v in pair)
    if len(flat) != 2 * rank:
        raise GraphError(f'{call.where()}: {what}={value!r} is not understood')
    return flat


def _zero_padding(call: _Call, graph: Graph) -> str:
    """ZeroPadding1D/2D -> Pad (attrs padding)."""
    graph.add(call.node('Pad', attrs={'padding': _pad_amounts(call, call.layer.padding, 'padding')}))
    return call.name


def _cropping(call: _Call, graph: Graph) -> str:
    """Cropping1D/2D -> Crop (attrs cropping)."""
    graph.add(call.node('Crop', attrs={'cropping': _pad_amounts(call, call.layer.cropping, 'cropping')}))
    return call.name


def _upsampling(call: _Call, graph: Graph) -> str:
    """UpSampling1D/2D (nearest) -> Resize (attrs scale, method)."""
    layer = call.layer
    rank = _spatial_rank(call)
    method = getattr(layer, 'interpolation', 'nearest')
    if method != 'nearest':
        raise GraphError(f"{call.where()}: interpolation={method!r} is not supported; only 'nearest' is")
    scale = (int(layer.size),) if rank == 1 else tuple(int(v) for v in layer.size)
    graph.add(call.node('Resize', attrs={'scale': scale, 'method': 'nearest'}))
    return call.name


def _permute(call: _Call, graph: Graph) -> str:
    """Permute(dims) -> Transpose (attrs perm: 0-based per-sample axes)."""
    perm = tuple(int(d) - 1 for d in call.layer.dims)
    graph.add(call.node('Transpose', attrs={'perm': perm}))
    return call.name


def _activation(call: _Call, graph: Graph) -> str:
    """Activation(fn) -> Activation / Softmax."""
    graph.add(_activation_node(call.name, call.inputs, call.out_shape, call.layer.activation,
                               call.where(), source='Activation'))
    return call.name


def _relu(call: _Call, graph: Graph) -> str:
    """ReLU(max_value, negative_slope, threshold) -> relu or leaky_relu."""
    layer = call.layer
    attrs: dict[str, Any] = {'function': 'relu'}
    if layer.negative_slope != 0:
        attrs = {'function': 'leaky_relu', 'alpha': float(layer.negative_slope)}
    if layer.max_value is not None:
        attrs['max_value'] = float(layer.max_value)
    if layer.threshold != 0:
        attrs['threshold'] = float(layer.threshold)
    graph.add(call.node('Activation', attrs=attrs))
    return call.name


def _leaky_relu(call: _Call, graph: Graph) -> str:
    """LeakyReLU(negative_slope) -> leaky_relu with attrs alpha."""
    attrs = {'function': 'leaky_relu', 'alpha': float(call.layer.negative_slope)}
    graph.add(call.node('Activation', attrs=attrs))
    return call.name


def _elu(call: _Call, graph: Graph) -> str:
    """ELU(alpha) -> elu with attrs alpha."""
    graph.add(call.node('Activation', attrs={'function': 'elu', 'alpha': float(call.layer.alpha)}))
    return call.name


def _prelu(call: _Call, graph: Graph) -> str:
    """PReLU -> prelu; weights alpha broadcast over shared axes to the full per-sample shape."""
    alpha = _to_numpy(call.layer.alpha)
    alpha = np.ascontiguousarray(np.broadcast_to(alpha, call.out_shape), dtype=np.float32)
    graph.add(call.node('Activation', attrs={'function': 'prelu'}, weights={'alpha': alpha}))
    return call.name


def _softmax(call: _Call, graph: Graph) -> str:
    """Softmax(axis) -> Softmax over the last axis only."""
    axis = call.layer.axis
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise GraphError(f'{call.where()}: softmax over several axes {axis} is not supported; '
                             'only the last axis (-1) is')
        axis = axis[0]
    _last_axis(int(axis), len(call.out_shape) + 1, call.where(), 'softmax')
    graph.add(call.node('Softmax', attrs={'axis': -1}))
    return call.name


def _batch_norm(call: _Call, graph: Graph) -> str:
    """BatchNormalization -> Scale with scale = gamma/sqrt(var+eps), bias = beta - scale*mean."""
    layer = call.layer
    _last_axis(int(layer.axis), len(call.out_shape) + 1, call.where(), 'BatchNormalization')
    mean = _to_numpy(layer.moving_mean)
    variance = _to_numpy(layer.moving_variance)
    gamma = _to_numpy(layer.gamma) if layer.scale else np.ones_like(mean)
    beta = _to_numpy(layer.beta) if layer.center else np.zeros_like(mean)
    epsilon = float(layer.epsilon)
    scale = gamma / np.sqrt(variance + epsilon)
    bias = beta - scale * mean
    attrs = {'epsilon': epsilon, 'axis': -1,
             'bn': {'gamma': gamma, 'beta': beta, 'mean': mean, 'variance': variance}}
    graph.add(call.node('Scale', weights={'scale': scale, 'bias': bias}, attrs=attrs))
    return call.name


def _merge(call: _Call, graph: Graph) -> str:
    """Add/Subtract/Multiply/Average/Maximum/Minimum -> Merge with attrs mode."""
    _check_same_shapes(call)
    graph.add(call.node('Merge', attrs={'mode': MERGE_MODES[type(call.layer).__name__]}))
    return call.name


def _concatenate(call: _Call, graph: Graph) -> str:
    """Concatenate(axis) -> Merge mode 'concat' with a negative per-sample axis."""
    rank = len(call.out_shape)
    axis = int(call.layer.axis)
    axis = axis - (rank + 1) if axis >= 0 else axis  # batched axis -> negative axis
    if not -rank <= axis < 0:
        raise GraphError(f'{call.where()}: cannot concatenate along axis {call.layer.axis} '
                         f'(the batch axis or out of range for per-sample rank {rank})')
    others = {s[:rank + axis] + s[rank + axis + 1:] for s in call.in_shapes}
    if len(others) != 1 or any(len(s) != rank for s in call.in_shapes):
        raise GraphError(f'{call.where()}: inputs have shapes {call.in_shapes}, which differ outside '
                         f'the concatenation axis {axis}')
    graph.add(call.node('Merge', attrs={'mode': 'concat', 'axis': axis}))
    return call.name


#: the exact type of the all-ones kernel (and zero bias) that sums a Dot's products
_DOT_ONES_TYPE = FixedType(1, 1, False)


def _check_dot(call: _Call) -> int:
    """The vector length of a Dot that hls4ml's dot1d computes; GraphError naming what is not supported."""
    layer = call.layer
    if getattr(layer, 'normalize', False):
        raise GraphError(f'{call.where()}: normalize=True (a cosine similarity) is not supported; '
                         'only normalize=False (as hls4ml)')
    if len(call.in_shapes) != 2 or any(len(s) != 1 for s in call.in_shapes) or len(set(call.in_shapes)) != 1:
        raise GraphError(f'{call.where()}: inputs of shapes {call.in_shapes} are not supported; Dot takes '
                         'two vectors of the same length (shape (n,), as hls4ml)')
    axes = layer.axes if isinstance(layer.axes, (list, tuple)) else (layer.axes, layer.axes)
    if any(int(a) not in (1, -1) for a in axes):
        raise GraphError(f'{call.where()}: axes={layer.axes!r} is not supported; only the last axis '
                         '(axes=1 or -1) of the two vectors')
    return call.in_shapes[0][0]


def _dot(call: _Call, graph: Graph) -> str:
    """Dot of two vectors -> Merge 'mul' '<name>_mul' + an all-ones Dense '<name>' (hls4ml's dot1d).

    dot1d casts each product into accum_t, adds them in order in accum_t and casts the sum into
    result_t; the Dense's per-product accumulation (ops.matvec) does the same, step by step for SAT
    accumulators, because every product x*1 with a weight of 0 fractional bits is exact.
    """
    n = _check_dot(call)
    mul = call.fresh(f'{call.layer.name}_mul')
    source = type(call.layer).__name__
    graph.add(make_node(mul, 'Merge', list(call.inputs), (n,), source=source,
                   attrs={'mode': 'mul', PART_OF_ATTR: (call.name, {'result': 'accum'})}))
    weights = {'kernel': np.ones((n, 1), np.float32), 'bias': np.zeros(1, np.float32)}
    attrs = {'use_bias': False, INTERNAL_PRECISION_ATTR: {'weight': _DOT_ONES_TYPE, 'bias': _DOT_ONES_TYPE}}
    graph.add(make_node(call.name, 'Dense', [mul], call.out_shape, weights=weights, attrs=attrs, source=source))
    return call.name


def _reshape(call: _Call, graph: Graph) -> str:
    """Flatten/Reshape -> Reshape with attrs shape (the resolved per-sample output shape)."""
    size_in = int(np.prod(call.in_shapes[0], dtype=np.int64))
    size_out = int(np.prod(call.out_shape, dtype=np.int64))
    if size_in != size_out:
        raise GraphError(f'{call.where()}: cannot reshape {call.in_shapes[0]} to {call.out_shape}')
    graph.add(call.node('Reshape', attrs={'shape': call.out_shape}))
    return call.name


def _skip(call: _Call, graph: Graph) -> str:
    """Inference no-op: the consumers read the layer's input directly."""
    return call.inputs[0]


_HANDLERS: dict[str, Callable[[_Call, Graph], str]] = {
    'Dense': _dense,
    'Activation': _activation,
    'ReLU': _relu,
    'LeakyReLU': _leaky_relu,
    'ELU': _elu,
    'PReLU': _prelu,
    'Softmax': _softmax,
    'BatchNormalization': _batch_norm,
    'Flatten': _reshape,
    'Reshape': _reshape,
    'Concatenate': _concatenate,
    'Conv1D': _conv, 'Conv2D': _conv,
    'DepthwiseConv1D': _depthwise_conv, 'DepthwiseConv2D': _depthwise_conv,
    'SeparableConv1D': _separable_conv, 'SeparableConv2D': _separable_conv,
    **{f'{op}Pooling{d}D': _pool for op in ('Max', 'Average') for d in (1, 2)},
    **{f'Global{op}Pooling{d}D': _global_pool for op in ('Max', 'Average') for d in (1, 2)},
    'ZeroPadding1D': _zero_padding, 'ZeroPadding2D': _zero_padding,
    'Cropping1D': _cropping, 'Cropping2D': _cropping,
    'UpSampling1D': _upsampling, 'UpSampling2D': _upsampling,
    'Permute': _permute,
    'Dot': _dot,
    **{cls: _merge for cls in MERGE_MODES if cls != 'Concatenate'},
    **{cls: _skip for cls in SKIPPED_LAYERS},
}

from .keras_attention import HANDLERS as _ATTENTION_HANDLERS  # noqa: E402  (transformer layers)

_HANDLERS.update(_ATTENTION_HANDLERS)

from .keras_rnn import HANDLERS as _RNN_HANDLERS, MULTI_OUTPUT_LAYERS  # noqa: E402  (recurrent layers)

_HANDLERS.update(_RNN_HANDLERS)

#: Keras class names this front end accepts (nested Sequential/Functional models are inlined).
SUPPORTED_LAYERS: tuple[str, ...] = ('InputLayer', *sorted(_HANDLERS), 'Sequential', 'Functional')


# --------------------------------------------------------------------------- graph walk


def _producer(tensor: Any) -> Any:
    """The Keras graph node (a call of an operation) that produced `tensor`."""
    operation, node_index, _ = tensor._keras_history
    return operation._inbound_nodes[node_index]


def _calls_in_order(outputs: list[Any], stop: set[int]) -> list[Any]:
    """Keras graph nodes between `stop` tensors (by id) and `outputs`, in topological order."""
    order: list[Any] = []
    done: set[int] = set()
    stack: list[tuple[Any, bool]] = [(_producer(t), False) for t in reversed(outputs) if id(t) not in stop]
    while stack:
        knode, expanded = stack.pop()
        if id(knode) in done:
            continue
        if expanded:
            done.add(id(knode))
            order.append(knode)
            continue
        stack.append((knode, True))
        for t in reversed(knode.input_tensors):
            if id(t) not in stop and id(_producer(t)) not in done:
                stack.append((_producer(t), False))
    return order


def _all_layer_names(model: Any) -> set[str]:
    """Names of all layers of `model`, nested models included (reserved as node names)."""
    import keras

    names = set()
    for layer in model.layers:
        names.add(layer.name)
        if isinstance(layer, keras.Model):
            names |= _all_layer_names(layer)
    return names


def _model_io(model: Any) -> tuple[list[Any], list[Any]]:
    """The symbolic input and output tensors of a Sequential or Functional model."""
    import keras

    inputs = getattr(model, 'inputs', None)
    outputs = getattr(model, 'outputs', None)
    if inputs is None or outputs is None:
        if isinstance(model, keras.Sequential):
            raise GraphError(f'Sequential model {model.name!r} is not built; start it with '
                             'keras.Input(shape) or call model.build((None, *shape)) first')
        raise GraphError(f'model {model.name!r} ({type(model).__name__}) has no symbolic graph; only '
                         'Sequential and Functional models are supported, not subclassed models')
    return list(inputs), list(outputs)


class _Converter:
    """Builds one Graph from a Keras model, inlining nested models."""

    def __init__(self, model: Any) -> None:
        self.graph = Graph()
        self.reserved = _all_layer_names(model)
        self.model = model
        self.hgq = False  # set when an HGQ2 layer was converted

    def fresh(self, base: str, own: bool = False) -> str:
        """A node name not used yet; `own` allows a layer's own (reserved) name."""
        used = {n.name for n in self.graph.nodes}
        if base not in used and (own or base not in self.reserved):
            return base
        k = 1
        while f'{base}_{k}' in used or f'{base}_{k}' in self.reserved:
            k += 1
        return f'{base}_{k}'

    def run(self) -> Graph:
        """Convert the whole model and validate the graph."""
        self.graph.outputs = self.convert_model(self.model, None)
        if self.hgq:  # plain exact layers of an HGQ2 model keep HGQ2's exact float semantics
            from . import hgq

            hgq.finalize(self.graph)
        self.graph.validate()
        return self.graph

    def convert_model(self, model: Any, input_names: list[str] | None) -> list[str]:
        """Add the nodes of `model`; top level when `input_names` is None, else inlined."""
        inputs, outputs = _model_io(model)
        names: dict[int, str] = {}
        if input_names is None:
            for t in inputs:
                names[id(t)] = self.add_input(t)
            self.graph.inputs = [names[id(t)] for t in inputs]
        else:
            if len(input_names) != len(inputs):
                raise GraphError(f'nested model {model.name!r} takes {len(inputs)} inputs but was '
                                 f'called with {len(input_names)}')
            names.update({id(t): n for t, n in zip(inputs, input_names)})
        for knode in _calls_in_order(outputs, set(names)):
            in_names = [names[id(t)] for t in knode.input_tensors]
            out_names = self.convert_call(knode, in_names)
            names.update({id(t): n for t, n in zip(knode.output_tensors, out_names)})
        return [names[id(t)] for t in outputs]

    def add_input(self, tensor: Any) -> str:
        """An Input node for one model input tensor."""
        layer = tensor._keras_history[0]
        name = self.fresh(layer.name, own=True)
        shape = _per_sample_shape(tensor, f'input {layer.name!r}')
        self.graph.add(make_node(name, 'Input', [], shape, source=type(layer).__name__))
        return name

    def convert_call(self, knode: Any, in_names: list[str]) -> list[str]:
        """Lower one call of a layer (or nested model); returns the names of its output tensors."""
        import keras

        layer = knode.operation
        cls = type(layer).__name__
        if isinstance(layer, keras.Model):
            return self.convert_model(layer, in_names)
        if not isinstance(layer, keras.layers.Layer):
            raise GraphError(f'operation {layer.name!r} ({cls}) is a keras.ops call, not a layer; '
                             f'use layers only. Supported layers: {", ".join(SUPPORTED_LAYERS)}')
        handler = _HANDLERS.get(cls)
        if type(layer).__module__.split('.')[0] == 'hgq':  # HGQ2 layers: handlers in hgq.py
            from . import hgq

            handler, self.hgq = hgq.handler(layer), True
        elif handler is None or type(layer) is not getattr(keras.layers, cls, None):
            raise GraphError(f'layer {layer.name!r} of class {cls} is not supported. '
                             f'Supported layers: {", ".join(SUPPORTED_LAYERS)}')
        if len(knode.output_tensors) != 1 and cls not in MULTI_OUTPUT_LAYERS:
            raise GraphError(f'layer {layer.name!r} ({cls}) has {len(knode.output_tensors)} outputs; '
                             'expected 1')
        where = f'layer {layer.name!r} ({cls})'
        if not in_names:
            raise GraphError(f'{where} has no tensor inputs')
        call = _Call(layer=layer, name=self.fresh(layer.name, own=True), inputs=in_names,
                     in_shapes=[_per_sample_shape(t, where) for t in knode.input_tensors],
                     out_shape=_per_sample_shape(knode.output_tensors[0], where), fresh=self.fresh)
        out = handler(call, self.graph)
        return out if isinstance(out, list) else [out]


# --------------------------------------------------------------------------- public API


def _import_keras() -> Any:
    """Import Keras, or explain how to install it (it is an optional extra of fpga4ml)."""
    os.environ.setdefault('KERAS_BACKEND', 'torch')  # Keras 3 on the PyTorch CPU backend
    return import_framework('Keras', 'keras', 'keras')


def load_keras_model(model_or_path: Any) -> Any:
    """Return a keras.Model, loading it from a .keras/.h5 file when given a path."""
    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        if path.suffix.lower() not in ('.keras', '.h5', '.hdf5'):
            raise ValueError(f'cannot load Keras model from {str(path)!r}: expected a .keras or .h5 file')
        if not path.is_file():
            raise FileNotFoundError(f'Keras model file {str(path)!r} does not exist')
        return _import_keras().saving.load_model(path, compile=False, safe_mode=True)
    keras = _import_keras()
    if not isinstance(model_or_path, keras.Model):
        raise ValueError(f'expected a keras.Model or a path to a .keras/.h5 file, '
                         f'got {type(model_or_path).__name__}')
    return model_or_path


def keras_to_graph(model: Any) -> Graph:
    """Convert a Keras 3 Sequential/Functional model (or a model file path) to an IR Graph."""
    return _Converter(load_keras_model(model)).run()
