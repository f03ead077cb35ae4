"""ONNX op handlers of the ONNX front end: standard ops -> IR nodes (QONNX quantizers: onnx_quant).

RNN, LSTM and GRU become the recurrent IR ops (one node per direction, docs/rnn.md); the tensors
they read and write with the batch off axis 0 (layout 0) are followed through Transpose, Squeeze,
Unsqueeze, Reshape, Concat, Gather and Slice. So is torch.onnx.export's nn.MultiheadAttention, which
moves the batch off axis 0 and merges it with the heads ((L, N*H, D), (L*N, E)): a Reshape places
the batch by its element offset (a Fold while it is merged), and MatMul/Gemm with constant weights
and Add/Sub/Mul with constants read such tensors when the batch is off their last axis. Element-wise
ops of such tensors (Add/Sub/Mul of tensors with the batch at the same place, the unary activations,
Gelu) and LayerNormalization with the batch before its axes keep it where it is: the rest of an exported
time-major nn.TransformerEncoderLayer.

Each handler lowers one ONNX node: it reads its inputs (dynamic tensors in the layout it needs,
or constants), adds IR nodes and records its output tensor with the converter (see onnx.py).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..config import FIXED_PRECISION_ATTR
from ..fixed import FixedType
from ..geometry import same_padding
from ..ir import GraphError, Node
from .onnx import LAST, ONNX_DOMAINS, PLAIN, Converter, Handler, ONode, Value, keeps_order, perm_last
from .onnx_quant import QUANT_HANDLERS, QConst, exact_type, quantized_result, value_of

#: element-wise ONNX ops -> IR Activation function (attrs copied from ONNX attributes with defaults)
UNARY: dict[str, tuple[str, dict[str, tuple[str, float]]]] = {
    'Relu': ('relu', {}),
    'LeakyRelu': ('leaky_relu', {'alpha': ('alpha', 0.01)}),
    'Sigmoid': ('sigmoid', {}),
    'Tanh': ('tanh', {}),
    'HardSigmoid': ('hard_sigmoid', {'alpha': ('slope', 0.2), 'beta': ('shift', 0.5)}),
    'Elu': ('elu', {'alpha': ('alpha', 1.0)}),
    'Softplus': ('softplus', {}),
    'Softsign': ('softsign', {}),
    'Exp': ('exp', {}),
}
MERGES = {'Add': 'add', 'Sub': 'sub', 'Mul': 'mul', 'Sum': 'add', 'Max': 'max', 'Min': 'min', 'Mean': 'avg'}


# --------------------------------------------------------------------------- helpers for handlers


def _vector_along(const: np.ndarray | QConst, shape: tuple[int, ...], where: str
                  ) -> tuple[str | None, np.ndarray | QConst] | None:
    """A constant broadcast against a tensor of per-sample ONNX `shape` as a per-channel vector.

    Returns (layout, vector): layout None for a scalar (any layout, vector of length 1), LAST when
    it varies along the channel axis (ONNX axis 1), PLAIN when along the last axis; None when it
    varies along other axes (then it is not a per-channel constant).
    """
    arr_shape = const.shape
    full = (1,) + shape
    if len(arr_shape) > len(full):
        return None
    padded = (1,) * (len(full) - len(arr_shape)) + tuple(arr_shape)
    if any(c != 1 and c != d for c, d in zip(padded, full)):
        raise GraphError(f'{where}: constant of shape {tuple(arr_shape)} does not broadcast to the tensor '
                         f'shape {full} without changing it')
    varying = [i for i, c in enumerate(padded) if c != 1]

    def flat(a: np.ndarray) -> np.ndarray:
        return np.asarray(a).reshape(padded).reshape(-1)

    vec = const.map(flat) if isinstance(const, QConst) else flat(const)
    if not varying:
        return None, vec
    if varying == [len(full) - 1]:
        return PLAIN, vec
    if varying == [1]:
        return LAST, vec
    return None


def _fixed_of(const: np.ndarray | QConst | None, where: str, what: str) -> FixedType | None:
    return const.fixed_type(where, what) if isinstance(const, QConst) else None


def _has_fixed_weights(node: Node) -> bool:
    fixed = node.attrs.get(FIXED_PRECISION_ATTR, {})
    return 'weight' in fixed or 'bias' in fixed


def _weighted(conv: Converter, onode: ONode, op: str, x: str, shape: tuple[int, ...], kernel: Any,
              bias: Any, attrs: dict[str, Any]) -> str:
    """Add a Dense or Conv node (kernel in IR layout, output channels last) for the quantizer rules.

    Float kernel: as given. Quantized kernel with one power-of-two scale: its declared type.
    Per-output-channel (or non-power-of-two) scales: an integer kernel followed by a Scale node
    with the exact scales (which also takes the bias). Scales varying along input axes: the exact
    kernel values with the narrowest exact type. Returns the IR node holding the result.
    """
    where = onode.where()
    n_out = kernel.shape[-1]
    fixed: dict[str, FixedType] = {}
    out_scale = None
    if isinstance(kernel, QConst) and kernel.pow2_frac() is None:
        per_out = kernel.scale.reshape(-1, n_out)
        if np.all(per_out == per_out[:1]):
            out_scale = per_out[0]
    if isinstance(kernel, QConst) and out_scale is not None:
        weights = kernel.ints
        fixed['weight'] = kernel.int_type()
    elif isinstance(kernel, QConst):
        weights = kernel.value
        fixed['weight'] = kernel.fixed_type(where, 'the quantized weight')
    else:
        weights = np.asarray(kernel, dtype=np.float64)
    bias_fixed = _fixed_of(bias, where, 'the quantized bias')
    bias_values = None if bias is None else value_of(bias).reshape(n_out)
    in_layer = bias_values is not None and out_scale is None
    if in_layer and bias_fixed is not None:
        fixed['bias'] = bias_fixed
    weights_d = {'kernel': weights, 'bias': bias_values if in_layer else np.zeros(n_out)}
    name = conv.add(onode, op, [x], shape, fixed=fixed, weights=weights_d,
                    attrs={**attrs, 'use_bias': in_layer})
    if out_scale is None:
        if not in_layer:
            conv.bias_free.add(name)
        return name
    scale_fixed = {'scale': exact_type(out_scale, where, 'the weight scale')}
    if bias_values is not None and bias_fixed is not None:
        scale_fixed['bias'] = bias_fixed
    scale_weights = {'scale': out_scale.astype(np.float64),
                     'bias': np.zeros(n_out) if bias_values is None else bias_values}
    scale_name = conv.add(onode, 'Scale', [name], shape, name=conv.fresh(f'{conv.base(onode)}_scale'),
                          fixed=scale_fixed, weights=scale_weights, attrs={'fold': False, 'quantizer_scale': True})
    if bias_values is None:
        conv.bias_free.add(scale_name)
    return scale_name


def _scale_node(conv: Converter, onode: ONode, x: str, shape: tuple[int, ...], scale: Any, bias: Any,
                n: int, extra: dict[str, Any] | None = None) -> str:
    """A Scale node y = x * scale + bias with per-channel (or scalar) constants of length n."""
    where = onode.where()
    fixed = {}
    for key, c in (('scale', scale), ('bias', bias)):
        t = _fixed_of(c, where, f'the quantized {key}')
        if t is not None:
            fixed[key] = t
    scale_v = np.broadcast_to(value_of(scale), (n,)).astype(np.float64)
    bias_v = np.broadcast_to(value_of(bias), (n,)).astype(np.float64)
    if not isinstance(scale, QConst) and np.all(np.abs(scale_v) == 1):
        fixed['scale'] = exact_type(scale_v, where, 'the scale')  # a pure bias add: +-1 exactly
    parent = conv.graph[x]
    attrs = dict(extra or {})
    if fixed or _has_fixed_weights(parent) or parent.attrs.get('quantizer_scale'):
        attrs['fold'] = False  # never fold quantized constants into a layer's (quantized) weights
    return conv.add(onode, 'Scale', [x], shape, fixed=fixed, weights={'scale': scale_v, 'bias': bias_v}, attrs=attrs)


def _window_pads(onode: ONode, in_spatial: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
                 dilations: tuple[int, ...]) -> tuple[int, ...]:
    """ONNX pads / auto_pad as IR padding: (left, right) or (top, bottom, left, right)."""
    rank = len(kernel)
    auto = onode.require('auto_pad', ('NOTSET', 'VALID', 'SAME_UPPER', 'SAME_LOWER'), 'NOTSET')
    if auto == 'NOTSET':
        pads = tuple(int(p) for p in onode.get('pads', [0] * 2 * rank))
        if len(pads) != 2 * rank or min(pads) < 0:
            raise GraphError(f'{onode.where()}: pads={list(pads)} must have {2 * rank} non-negative entries')
        pairs = [(pads[i], pads[i + rank]) for i in range(rank)]
    elif auto == 'VALID':
        pairs = [(0, 0)] * rank
    else:
        pairs = [same_padding(n, k, s, d) for n, k, s, d in zip(in_spatial, kernel, strides, dilations)]
        if auto == 'SAME_LOWER':
            pairs = [(after, before) for before, after in pairs]
    return tuple(p for pair in pairs for p in pair)


def _ints(onode: ONode, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(v) for v in onode.get(key, default))


def _spatial_input(conv: Converter, onode: ONode) -> tuple[Value, str, int]:
    """The data input of a Conv/Pool node in channels-last layout, and its spatial rank (1 or 2)."""
    x = conv.value(onode.inputs[0], onode)
    rank = len(x.shape) - 1
    if rank not in (1, 2):
        raise GraphError(f'{onode.where()}: input of shape (N, {", ".join(map(str, x.shape))}) is not supported; '
                         'only 1D (N, C, W) and 2D (N, C, H, W) inputs are')
    return x, conv.get(x, LAST), rank


# --------------------------------------------------------------------------- op handlers


def _gemm(conv: Converter, onode: ONode) -> None:
    """Gemm: Y = alpha * A @ op(B) + beta * C with a constant B (and C) -> Dense."""
    onode.check({'alpha': 1.0, 'beta': 1.0, 'transA': 0, 'transB': 0})
    onode.require('transA', (0,), 0, ' (A must be the (batch, features) input)')
    x = conv.value(onode.inputs[0], onode)
    if len(conv.model.get_tensor_shape(onode.inputs[0]) or ()) != 2:
        raise GraphError(f'{onode.where()}: input A must have shape (batch, features), got (N, {x.shape})')
    kernel = conv.const(onode.inputs[1])
    if kernel is None or len(kernel.shape) != 2:
        raise GraphError(f'{onode.where()}: input B must be a constant matrix (weights)')
    if onode.get('transB', 0):
        kernel = kernel.map(np.transpose) if isinstance(kernel, QConst) else kernel.T
    alpha, beta = float(onode.get('alpha', 1.0)), float(onode.get('beta', 1.0))
    if alpha != 1.0:
        kernel = kernel.scaled(alpha) if isinstance(kernel, QConst) else kernel * np.float32(alpha)
    bias = conv.const(onode.inputs[2]) if len(onode.inputs) > 2 and onode.inputs[2] else None
    if len(onode.inputs) > 2 and onode.inputs[2] and bias is None:
        raise GraphError(f'{onode.where()}: input C must be a constant (bias)')
    n_out = kernel.shape[1]
    if bias is not None:
        bias = _bias_vector(onode, bias, n_out)
        if beta != 1.0:
            bias = bias.scaled(beta) if isinstance(bias, QConst) else bias * np.float32(beta)
    shape = x.shape[:-1] + (n_out,)  # (n_out,), or (rows, n_out) when the batch is merged into the rows
    out = _weighted(conv, onode, 'Dense', conv.get(x, PLAIN), shape, kernel, bias, {})
    conv.put(onode.outputs[0], shape, PLAIN, out)


def _bias_vector(onode: ONode, bias: Any, n: int) -> Any:
    if int(np.prod(bias.shape)) not in (1, n) or (len(bias.shape) == 2 and bias.shape[0] != 1):
        raise GraphError(f'{onode.where()}: bias of shape {tuple(bias.shape)} is not supported; it must be a '
                         f'vector of {n} values or a scalar')

    def vec(a: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(a).reshape(-1), (n,)).copy()
    return bias.map(vec) if isinstance(bias, QConst) else vec(bias)


def _matmul(conv: Converter, onode: ONode) -> None:
    """MatMul of a tensor with a constant matrix -> Dense over the last axis; of two tensors -> Einsum."""
    onode.check({})
    kernel = conv.const(onode.inputs[1])
    if kernel is None and onode.inputs[1] in conv.values and conv.const(onode.inputs[0]) is None:
        _matmul_tensors(conv, onode)
        return
    if kernel is None or len(kernel.shape) != 2:
        raise GraphError(f'{onode.where()}: only a tensor times a constant 2D matrix (x @ W) is supported')
    x = conv.value(onode.inputs[0], onode)
    shape = x.shape[:-1] + (kernel.shape[1],)
    out = _weighted(conv, onode, 'Dense', conv.get(x, PLAIN), shape, kernel, None, {})
    conv.put(onode.outputs[0], shape, PLAIN, out)


def _conv(conv: Converter, onode: ONode) -> None:
    """Conv 1D/2D (strides, pads/auto_pad, dilations, groups) -> Conv, channels-last."""
    onode.check({'auto_pad': 'NOTSET', 'dilations': 1, 'group': 1, 'kernel_shape': None, 'pads': 0, 'strides': 1})
    x, src, rank = _spatial_input(conv, onode)
    kernel = conv.const(onode.inputs[1])
    if kernel is None or len(kernel.shape) != rank + 2:
        raise GraphError(f'{onode.where()}: the weights W must be a constant of rank {rank + 2}')
    ksize = tuple(int(k) for k in kernel.shape[2:])
    if 'kernel_shape' in onode.attrs and _ints(onode, 'kernel_shape', ()) != ksize:
        raise GraphError(f'{onode.where()}: kernel_shape={onode.get("kernel_shape")} differs from the weights {ksize}')
    strides = _ints(onode, 'strides', (1,) * rank)
    dilations = _ints(onode, 'dilations', (1,) * rank)
    groups = int(onode.get('group', 1))
    to_ir = (2, 3, 1, 0) if rank == 2 else (2, 1, 0)  # (M, C/g, kh, kw) -> (kh, kw, C/g, M)
    kernel = kernel.map(lambda a: np.transpose(a, to_ir)) if isinstance(kernel, QConst) else kernel.transpose(to_ir)
    bias = conv.const(onode.inputs[2]) if len(onode.inputs) > 2 and onode.inputs[2] else None
    if len(onode.inputs) > 2 and onode.inputs[2] and bias is None:
        raise GraphError(f'{onode.where()}: the bias B must be a constant')
    if bias is not None:
        bias = _bias_vector(onode, bias, kernel.shape[-1])
    out_shape = conv.shape_of(onode.outputs[0], onode.where())
    attrs = {'kernel_size': ksize, 'strides': strides, 'dilation': dilations, 'groups': groups,
             'padding': _window_pads(onode, x.shape[1:], ksize, strides, dilations)}
    ir_shape = tuple(out_shape[a] for a in perm_last(len(out_shape)))
    out = _weighted(conv, onode, 'Conv', src, ir_shape, kernel, bias, attrs)
    conv.put(onode.outputs[0], out_shape, LAST, out)


def _pool(conv: Converter, onode: ONode) -> None:
    """MaxPool / AveragePool (count_include_pad=0, or 1 without padding) -> Pool."""
    avg = onode.op == 'AveragePool'
    known = {'auto_pad': 'NOTSET', 'ceil_mode': 0, 'dilations': 1, 'kernel_shape': None, 'pads': 0, 'strides': 1}
    known.update({'count_include_pad': 0} if avg else {'storage_order': 0})
    onode.check(known)
    x, src, rank = _spatial_input(conv, onode)
    onode.require('ceil_mode', (0,), 0)
    if not avg:
        onode.require('storage_order', (0,), 0)
    if 'kernel_shape' not in onode.attrs:
        raise GraphError(f'{onode.where()}: attribute kernel_shape is required')
    ksize = _ints(onode, 'kernel_shape', ())
    strides = _ints(onode, 'strides', (1,) * rank)
    if _ints(onode, 'dilations', (1,) * rank) != (1,) * rank:
        raise GraphError(f'{onode.where()}: attribute dilations={onode.get("dilations")} is not supported; '
                         'pooling supports only dilations of 1')
    pads = _window_pads(onode, x.shape[1:], ksize, strides, (1,) * rank)
    if avg and onode.get('count_include_pad', 0) and any(pads):
        raise GraphError(f'{onode.where()}: count_include_pad=1 with padding {list(pads)} is not supported; the IR '
                         'average divides by the number of real cells (count_include_pad=0)')
    out_shape = conv.shape_of(onode.outputs[0], onode.where())
    ir_shape = tuple(out_shape[a] for a in perm_last(len(out_shape)))
    attrs = {'mode': 'avg' if avg else 'max', 'pool_size': ksize, 'strides': strides, 'padding': pads}
    fixed = quantized_result(conv, onode) if avg else None
    conv.put(onode.outputs[0], out_shape, LAST, conv.add(onode, 'Pool', [src], ir_shape, attrs=attrs, fixed=fixed))


def _global_pool(conv: Converter, onode: ONode) -> None:
    """GlobalAveragePool / GlobalMaxPool -> Pool over the whole extent (ONNX keeps the 1-sized axes)."""
    onode.check({})
    x, src, rank = _spatial_input(conv, onode)
    extent = x.shape[1:]
    out_shape = (x.shape[0],) + (1,) * rank
    attrs = {'mode': 'avg' if onode.op == 'GlobalAveragePool' else 'max', 'pool_size': extent, 'strides': extent,
             'padding': (0,) * (2 * rank), 'global': True}
    fixed = quantized_result(conv, onode) if attrs['mode'] == 'avg' else None
    out = conv.add(onode, 'Pool', [src], (1,) * rank + (x.shape[0],), attrs=attrs, fixed=fixed)
    conv.put(onode.outputs[0], out_shape, LAST, out)


def _batch_norm(conv: Converter, onode: ONode) -> None:
    """BatchNormalization (inference) -> Scale over the channel axis."""
    onode.check({'epsilon': 1e-5, 'momentum': 0.9, 'training_mode': 0, 'spatial': 1})
    onode.require('training_mode', (0,), 0)
    onode.require('spatial', (1,), 1)
    x = conv.value(onode.inputs[0], onode)
    params = [conv.const(name) for name in onode.inputs[1:5]]
    if len(params) != 4 or any(p is None for p in params):
        raise GraphError(f'{onode.where()}: scale, B, mean and var must be constants')
    gamma, beta, mean, var = (value_of(p).reshape(-1) for p in params)
    eps = float(onode.get('epsilon', 1e-5))
    scale = gamma / np.sqrt(var + eps)
    bias = beta - scale * mean
    layout = LAST if len(x.shape) >= 2 else PLAIN
    src = conv.get(x, layout)
    extra = {'epsilon': eps, 'axis': -1, 'bn': {'gamma': gamma, 'beta': beta, 'mean': mean, 'variance': var}}
    out = _scale_node(conv, onode, src, conv.graph[src].shape, scale, bias, x.shape[0], extra)
    conv.put(onode.outputs[0], x.shape, layout, out)


def _unary(conv: Converter, onode: ONode) -> None:
    """Element-wise activations -> Activation (one that feeds a quantizer takes its type)."""
    function, params = UNARY[onode.op]
    onode.check({k: d for k, (_, d) in params.items()})
    x = conv.value(onode.inputs[0], onode)
    layout = conv.preferred(x)
    src = conv.get(x, layout)
    attrs: dict[str, Any] = {'function': function}
    for key, (ir_key, default) in params.items():
        attrs[ir_key] = float(onode.get(key, default))
    out = conv.add(onode, 'Activation', [src], conv.graph[src].shape, attrs=attrs,
                   fixed=quantized_result(conv, onode))
    conv.put(onode.outputs[0], x.shape, layout, out)


def _gelu(conv: Converter, onode: ONode) -> None:
    """Gelu (opset 20; attribute approximate 'none' or 'tanh') -> Activation gelu / gelu_tanh."""
    onode.check({'approximate': 'none'})
    functions = {'none': 'gelu', 'tanh': 'gelu_tanh'}
    approximate = onode.require('approximate', tuple(functions), 'none')
    x = conv.value(onode.inputs[0], onode)
    layout = conv.preferred(x)
    src = conv.get(x, layout)
    out = conv.add(onode, 'Activation', [src], conv.graph[src].shape, attrs={'function': functions[approximate]},
                   fixed=quantized_result(conv, onode))
    conv.put(onode.outputs[0], x.shape, layout, out)


def _prelu(conv: Converter, onode: ONode) -> None:
    """PRelu with a constant slope (broadcast to the tensor, as ONNX does) -> Activation(prelu)."""
    onode.check({})
    x = conv.value(onode.inputs[0], onode)
    slope = conv.const(onode.inputs[1])
    if slope is None:
        raise GraphError(f'{onode.where()}: the slope must be a constant')
    try:
        alpha = np.broadcast_to(value_of(slope), (1,) + x.shape)[0]
    except ValueError:
        raise GraphError(f'{onode.where()}: slope of shape {tuple(slope.shape)} does not broadcast to '
                         f'{(1,) + x.shape}') from None
    layout = conv.preferred(x)
    src = conv.get(x, layout)
    if layout == LAST:
        alpha = alpha.transpose(perm_last(len(x.shape)))
    fixed = dict(quantized_result(conv, onode) or {})
    if isinstance(slope, QConst):
        fixed['param'] = slope.fixed_type(onode.where(), 'the quantized slope')
    out = conv.add(onode, 'Activation', [src], conv.graph[src].shape, attrs={'function': 'prelu'},
                   weights={'alpha': np.ascontiguousarray(alpha, dtype=np.float64)}, fixed=fixed)
    conv.put(onode.outputs[0], x.shape, layout, out)


def _clip(conv: Converter, onode: ONode) -> None:
    """Clip(0, max) -> ReLU with max_value (Clip(0) -> ReLU); other bounds are not supported."""
    onode.check({'min': None, 'max': None})
    lo = onode.get('min') if len(onode.inputs) < 2 or not onode.inputs[1] else conv.const(onode.inputs[1])
    hi = onode.get('max') if len(onode.inputs) < 3 or not onode.inputs[2] else conv.const(onode.inputs[2])
    if lo is None or float(value_of(lo).reshape(-1)[0]) != 0.0 or (hi is not None and np.size(value_of(hi)) != 1):
        raise GraphError(f'{onode.where()}: only Clip(min=0, max=constant) is supported (a ReLU with a maximum)')
    x = conv.value(onode.inputs[0], onode)
    layout = conv.preferred(x)
    src = conv.get(x, layout)
    attrs: dict[str, Any] = {'function': 'relu'}
    if hi is not None:
        attrs['max_value'] = float(value_of(hi).reshape(-1)[0])
    conv.put(onode.outputs[0], x.shape, layout, conv.add(onode, 'Activation', [src], conv.graph[src].shape,
                                                         attrs=attrs, fixed=quantized_result(conv, onode)))


def _softmax(conv: Converter, onode: ONode) -> None:
    """Softmax over the feature axis: the last axis, or the channel axis (channels-last in the IR)."""
    onode.check({'axis': None})
    x = conv.value(onode.inputs[0], onode)
    rank = len(x.shape) + 1
    opset = conv.model.model.opset_import
    version = next((o.version for o in opset if o.domain in ONNX_DOMAINS), 13)
    axis = int(onode.get('axis', -1 if version >= 13 else 1))
    axis = axis + rank if axis < 0 else axis
    if axis == rank - 1:
        layout = PLAIN
    elif axis == 1 and version >= 13:
        layout = LAST
    elif version >= 13 and 1 <= axis < rank:
        _softmax_moved(conv, onode, x, axis - 1)
        return
    else:
        raise GraphError(f'{onode.where()}: softmax over axis {onode.get("axis")} of a tensor of rank {rank} '
                         f'(opset {version}) is not supported; only the last axis or the channel axis (1) is')
    keep = conv.softmax_masks.get(onode.inputs[0])
    if keep is not None and layout != PLAIN:
        raise GraphError(f'{onode.where()}: a Softmax over axis {axis} reads scores with a -inf attention mask; '
                         'a masked softmax is supported over the last axis only')
    src = conv.get(x, layout)
    if keep is not None:  # torch's masked attention: the -inf keys are left out (onnx_ops._attention_mask)
        out = conv.add(onode, 'MaskedSoftmax', [src], conv.graph[src].shape,
                       attrs={'mask': keep.astype(np.int64).tolist()})
    else:
        out = conv.add(onode, 'Softmax', [src], conv.graph[src].shape, attrs={'axis': -1})
    conv.put(onode.outputs[0], x.shape, layout, out)


def _identity(conv: Converter, onode: ONode) -> None:
    """Identity / Dropout (inference) -> no node."""
    onode.check({'ratio': 0.5, 'seed': 0} if onode.op == 'Dropout' else {})
    if onode.op == 'Dropout' and len(onode.inputs) > 2 and onode.inputs[2]:
        mode = conv.const(onode.inputs[2])
        if mode is None or bool(np.asarray(value_of(mode)).reshape(-1)[0]):
            raise GraphError(f'{onode.where()}: training_mode must be a constant false (inference)')
    x = conv.const(onode.inputs[0])
    if x is not None:
        conv.consts[onode.outputs[0]] = x
        return
    conv.alias(onode.outputs[0], conv.value(onode.inputs[0], onode))


def _reshape_to(conv: Converter, onode: ONode, out_shape: tuple[int, ...]) -> None:
    """Reshape a tensor in ONNX order (plain layout) to per-sample `out_shape`."""
    x = conv.value(onode.inputs[0], onode)
    if int(np.prod(out_shape)) != int(np.prod(x.shape)):
        raise GraphError(f'{onode.where()}: cannot reshape per-sample {x.shape} into {out_shape}')
    if out_shape == x.shape:
        conv.alias(onode.outputs[0], x)
        return
    src = conv.get(x, PLAIN)
    conv.put(onode.outputs[0], out_shape, PLAIN,
             conv.add(onode, 'Reshape', [src], out_shape, attrs={'shape': out_shape}))


def _flatten(conv: Converter, onode: ONode) -> None:
    """Flatten(axis=1) -> Reshape to (features,) in ONNX (C-major) order."""
    onode.check({'axis': 1})
    x = conv.const(onode.inputs[0])
    if x is not None:
        raise GraphError(f'{onode.where()}: flattening a constant is not supported')
    x = conv.value(onode.inputs[0], onode)
    axis = int(onode.get('axis', 1))
    if (axis + len(x.shape) + 1 if axis < 0 else axis) != 1:
        raise GraphError(f'{onode.where()}: attribute axis={axis} is not supported; only axis=1 (keep the batch)')
    _reshape_to(conv, onode, (int(np.prod(x.shape)),))


def _reshape(conv: Converter, onode: ONode) -> None:
    """Reshape that keeps the batch axis -> Reshape (ONNX order)."""
    onode.check({'allowzero': 0})
    target = conv.const(onode.inputs[1])
    if target is None:
        raise GraphError(f'{onode.where()}: the target shape must be a constant')
    target = np.asarray(value_of(target)).astype(np.int64).reshape(-1)
    c = conv.const(onode.inputs[0])
    if c is not None:
        shape = tuple(conv.model.get_tensor_shape(onode.outputs[0]))
        conv.consts[onode.outputs[0]] = c.map(lambda a: a.reshape(shape)) if isinstance(c, QConst) else c.reshape(shape)
        return
    if target.size == 0 or target[0] not in (-1, 0, 1):
        raise GraphError(f'{onode.where()}: target shape {target.tolist()} does not keep the batch axis first '
                         '(its first entry must be -1, 0 or the batch size 1)')
    if onode.get('allowzero', 0) and 0 in target.tolist():
        raise GraphError(f'{onode.where()}: allowzero=1 with a 0 in the shape is not supported')
    _reshape_to(conv, onode, conv.shape_of(onode.outputs[0], onode.where()))


def _squeeze(conv: Converter, onode: ONode) -> None:
    """Squeeze / Unsqueeze of non-batch axes -> Reshape."""
    onode.check({'axes': None})
    axes = onode.get('axes')
    if axes is None and len(onode.inputs) > 1 and onode.inputs[1]:
        axes = value_of(conv.const(onode.inputs[1])).astype(np.int64).tolist()
    in_rank = len(conv.model.get_tensor_shape(onode.inputs[0]))
    out_rank = len(conv.model.get_tensor_shape(onode.outputs[0]))
    rank = out_rank if onode.op == 'Unsqueeze' else in_rank
    if axes is None or any(int(a) % rank == 0 for a in axes):
        raise GraphError(f'{onode.where()}: axes={axes} must be given and must not include the batch axis 0')
    _reshape_to(conv, onode, conv.shape_of(onode.outputs[0], onode.where()))


def _transpose(conv: Converter, onode: ONode) -> None:
    """Transpose that keeps the batch axis -> Transpose (or nothing when it is the layout change)."""
    onode.check({'perm': None})
    x = conv.const(onode.inputs[0])
    if x is not None:
        perm = onode.get('perm')
        conv.consts[onode.outputs[0]] = x.map(lambda a: np.transpose(a, perm)) if isinstance(x, QConst) \
            else np.transpose(x, perm)
        return
    x = conv.value(onode.inputs[0], onode)
    perm = tuple(int(p) for p in onode.get('perm', range(len(x.shape), -1, -1)))
    if not perm or perm[0] != 0:
        raise GraphError(f'{onode.where()}: perm={list(perm)} moves the batch axis; only permutations that keep '
                         'axis 0 first are supported')
    p = tuple(a - 1 for a in perm[1:])
    out_shape = tuple(x.shape[a] for a in p)
    if p == tuple(range(len(p))):
        conv.alias(onode.outputs[0], x)
        return
    if len(p) >= 2 and p == perm_last(len(p)) and LAST in x.nodes:
        conv.put(onode.outputs[0], out_shape, PLAIN, x.nodes[LAST])  # NCHW -> NHWC: already channels-last
        return
    src = conv.get(x, PLAIN)
    op = 'Reshape' if keeps_order(x.shape, p) else 'Transpose'
    attrs = {'shape': out_shape} if op == 'Reshape' else {'perm': p}
    conv.put(onode.outputs[0], out_shape, PLAIN, conv.add(onode, op, [src], out_shape, attrs=attrs))


def _concat(conv: Converter, onode: ONode) -> None:
    """Concat of tensors along a non-batch axis -> Merge concat."""
    onode.check({'axis': None})
    values = [conv.value(i, onode) for i in onode.inputs]
    out_shape = conv.shape_of(onode.outputs[0], onode.where())
    rank = len(out_shape) + 1
    axis = int(onode.get('axis', 1))
    axis = axis + rank if axis < 0 else axis
    if axis == 0:
        raise GraphError(f'{onode.where()}: concatenation along the batch axis is not supported')
    layout = LAST if len(out_shape) >= 2 and any(LAST in v.nodes for v in values) else PLAIN
    srcs = [conv.get(v, layout) for v in values]
    ps = axis - 1
    ir_axis = ps if layout == PLAIN else perm_last(len(out_shape)).index(ps)
    ir_shape = conv.graph[srcs[0]].shape
    ir_shape = tuple(sum(conv.graph[s].shape[ir_axis] for s in srcs) if i == ir_axis else d
                     for i, d in enumerate(ir_shape))
    out = conv.add(onode, 'Merge', srcs, ir_shape, attrs={'mode': 'concat', 'axis': ir_axis - len(out_shape)})
    conv.put(onode.outputs[0], out_shape, layout, out)


def _merge(conv: Converter, onode: ONode) -> None:
    """Add/Sub/Mul/Sum/Max/Min/Mean of same-shape tensors -> Merge; with a constant -> Scale."""
    onode.check({})
    consts = [conv.const(i) for i in onode.inputs]
    if any(c is not None for c in consts):
        _merge_const(conv, onode, consts)
        return
    values = [conv.value(i, onode) for i in onode.inputs]
    shapes = {v.shape for v in values}
    if len(shapes) != 1:
        raise GraphError(f'{onode.where()}: inputs have per-sample shapes {[v.shape for v in values]}; element-wise '
                         'ops between tensors need identical shapes (broadcasting is not supported)')
    layout = LAST if any(LAST in v.nodes for v in values) and len(values[0].shape) >= 2 else PLAIN
    srcs = [conv.get(v, layout) for v in values]
    out = conv.add(onode, 'Merge', srcs, conv.graph[srcs[0]].shape, attrs={'mode': MERGES[onode.op]})
    conv.put(onode.outputs[0], values[0].shape, layout, out)


def _merge_const(conv: Converter, onode: ONode, consts: list[Any]) -> None:
    """x + c, x - c, c - x, x * c with a scalar or per-channel constant c -> Scale (or a layer's bias)."""
    if onode.op not in ('Add', 'Sub', 'Mul') or len(consts) != 2 or all(c is not None for c in consts):
        raise GraphError(f'{onode.where()}: {onode.op} with constant inputs is supported only as x+c, x-c, c-x or '
                         'x*c with one tensor x and a scalar or per-channel constant c')
    k = 0 if consts[1] is not None else 1
    c = consts[1 - k]
    x = conv.value(onode.inputs[k], onode)
    found = _vector_along(c, x.shape, onode.where())
    if found is None and onode.op == 'Add' and not isinstance(c, QConst):
        _attention_mask(conv, onode, x, np.asarray(c))
        return
    if found is None:
        raise GraphError(f'{onode.where()}: constant of shape {tuple(c.shape)} is not supported; only scalars, '
                         'per-channel vectors (varying along axis 1 or the last axis) and attention masks (an Add '
                         'before a Softmax over the last axis) are')
    layout, vec = found
    layout = layout or conv.preferred(x)
    src = conv.get(x, layout)
    n = conv.graph[src].shape[-1] if conv.graph[src].shape else 1
    shape = conv.graph[src].shape
    neg = onode.op == 'Sub' and k == 1  # c - x
    if onode.op == 'Mul':
        out = _scale_node(conv, onode, src, shape, vec, np.zeros(1), n)
    else:
        if onode.op == 'Sub' and not neg:
            vec = vec.scaled(-1.0) if isinstance(vec, QConst) else -value_of(vec)
        if not neg and _absorb_bias(conv, onode, onode.inputs[k], src, vec, n):
            conv.put(onode.outputs[0], x.shape, layout, src)
            return
        out = _scale_node(conv, onode, src, shape, np.array([-1.0 if neg else 1.0]), vec, n)
    conv.put(onode.outputs[0], x.shape, layout, out)


def _attention_mask(conv: Converter, onode: ONode, x: Value, c: np.ndarray) -> None:
    """x + C with a constant C varying along the last two axes: torch's attention mask as exported (its
    finite values an additive bias, -inf a masked key). The finite part becomes a BiasAdd (when not all 0),
    the -inf cells a MaskedSoftmax in the Softmax over the last axis that must read the sum (_softmax)."""
    where = onode.where()
    full = (1,) + tuple(x.shape)
    padded = (1,) * (len(full) - c.ndim) + tuple(c.shape)
    if c.ndim > len(full) or padded[0] != 1 or any(k not in (1, d) for k, d in zip(padded, full)):
        raise GraphError(f'{where}: constant of shape {tuple(c.shape)} does not broadcast to the tensor shape {full} '
                         'without varying over the batch')
    if np.isnan(c).any() or np.isposinf(c).any():
        raise GraphError(f'{where}: an added attention mask with NaN or +inf is not supported; only finite values '
                         '(an additive bias) and -inf (a masked key)')
    per_sample = c.reshape(padded[1:])
    while per_sample.ndim > 2 and per_sample.shape[0] == 1:  # (1, L, S) -> (L, S): the heads share the mask
        per_sample = per_sample[0]
    keep = ~np.isneginf(per_sample)
    out = conv.get(x, PLAIN)
    bias = np.where(keep, per_sample, 0.0).astype(np.float32)
    if np.any(bias != 0):
        out = conv.add(onode, 'BiasAdd', [out], conv.graph[out].shape, weights={'bias': bias})
    if not keep.all():
        readers = conv.consumers.get(onode.outputs[0], [])
        if not conv.single_consumer(onode.outputs[0]) or readers[0].op_type != 'Softmax':
            raise GraphError(f'{where}: an attention mask with -inf (masked keys) must be read by one Softmax over '
                             f'the last axis; it is read by {[r.op_type for r in readers]}')
        if not keep.any(axis=-1).all():
            raise GraphError(f'{where}: the attention mask masks every key of a query row; each row needs one key')
        conv.softmax_masks[onode.outputs[0]] = keep
    conv.put(onode.outputs[0], x.shape, PLAIN, out)


def _absorb_bias(conv: Converter, onode: ONode, tensor: str, src: str, vec: Any, n: int) -> bool:
    """Put a constant added to a bias-free Dense/Conv/Scale output into that node's bias (MatMul + Add).

    Only when ONNX tensor `tensor` (held by IR node `src`) feeds nothing else."""
    node = conv.graph[src]
    if src not in conv.bias_free or not conv.single_consumer(tensor) or conv.graph.consumers(src):
        return False
    node.weights['bias'] = np.broadcast_to(value_of(vec), (n,)).astype(np.float64).copy()
    t = _fixed_of(vec, onode.where(), 'the quantized bias')
    if t is not None:
        node.attrs.setdefault(FIXED_PRECISION_ATTR, {})['bias'] = t
    if node.op in ('Dense', 'Conv'):
        node.attrs['use_bias'] = True
    conv.bias_free.discard(src)
    return True


def _constant(conv: Converter, onode: ONode) -> None:
    """Constant -> a constant tensor (no node)."""
    from onnx import numpy_helper

    value = onode.attrs.get('value')
    if value is None:
        raise GraphError(f'{onode.where()}: only Constant nodes with a tensor "value" are supported')
    conv.consts[onode.outputs[0]] = numpy_helper.to_array(value)


# --------------------------------------------------------------------------- the batch off axis 0, and RNNs
# Layout-0 RNN/LSTM/GRU ops read and write time-major tensors (the batch on axis 1 or 2). Such tensors
# are held per sample (the batch axis removed) and their batch axis is kept in `conv.batch_axes`;
# Transpose, Squeeze, Unsqueeze, Reshape, Concat, Gather and Slice below follow it, every other op refuses them
# but those wrapped by _follow_batch (MatMul/Gemm/Add/Sub/Mul with constants, element-wise ops, LayerNormalization
# before its axes). A Reshape may merge the batch into other
# axes (a Fold, held as the whole tensor: the batch is 1 after clean-up); Transpose and Reshape follow a Fold.


def _moved(conv: Converter, tensor: str, onode: ONode, fold_ok: bool = False) -> tuple[Value, Any]:
    """A dynamic tensor and its batch axis (0 unless recorded in conv.batch_axes; a Fold where `fold_ok`)."""
    if tensor not in conv.values:
        conv.value(tensor, onode)  # the usual error for constants and unknown tensors
    b = conv.batch_axes.get(tensor, 0)
    if isinstance(b, Fold) and not fold_ok:
        raise GraphError(f'{onode.where()}: input {tensor!r} has the batch merged into {b}; {onode.op} cannot read '
                         'it (Transpose, Reshape, MatMul/Gemm with constant weights and Add/Sub/Mul with a constant '
                         'can)')
    return conv.values[tensor], b


def _record(conv: Converter, tensor: str, shape: tuple[int, ...], ir_name: str | Value, batch_axis: int) -> None:
    """Record `tensor` (per-sample `shape`, plain layout, or an alias of a Value) with its batch axis."""
    if isinstance(ir_name, Value):
        conv.alias(tensor, ir_name)
    else:
        conv.put(tensor, shape, PLAIN, ir_name)
    if batch_axis:
        conv.batch_axes[tensor] = batch_axis


def _full_shape(conv: Converter, tensor: str, onode: ONode) -> tuple[int, ...]:
    """The static ONNX shape of a tensor, batch included."""
    shape = conv.model.get_tensor_shape(tensor)
    if shape is None or any(not isinstance(d, (int, np.integer)) or d < 1 for d in shape):
        raise GraphError(f'{onode.where()}: tensor {tensor!r} has shape {shape}; static shapes are needed')
    return tuple(int(d) for d in shape)


def _reshaped(conv: Converter, onode: ONode, src: str, shape: tuple[int, ...], suffix: str) -> str:
    """src reshaped to per-sample `shape` (src itself when it has it)."""
    if conv.graph[src].shape == shape:
        return src
    return conv.add(onode, 'Reshape', [src], shape, name=conv.fresh(f'{conv.base(onode)}{suffix}'),
                    attrs={'shape': shape})


def _transpose_any(conv: Converter, onode: ONode) -> None:
    """Transpose; one that moves the batch axis follows it: off axis 0 only into RNN/LSTM/GRU ops, back to 0 always."""
    onode.check({'perm': None})
    tensor = onode.inputs[0]
    if conv.const(tensor) is not None:
        return _transpose(conv, onode)
    x, b = _moved(conv, tensor, onode, fold_ok=True)
    if isinstance(b, Fold):
        return _transpose_fold(conv, onode, x, b)
    rank = len(x.shape) + 1
    perm = tuple(int(p) % rank for p in onode.get('perm', range(rank - 1, -1, -1)))
    readers = conv.consumers.get(onode.outputs[0], [])
    follows = bool(readers) and onode.outputs[0] not in conv.outputs and all(c.op_type in FOLLOWS_BATCH
                                                                            for c in readers)
    if b == 0 and (perm[0] == 0 or not follows):  # the batch moves off axis 0 only into ops that follow it
        return _transpose(conv, onode)
    p = tuple(a - (a > b) for a in perm if a != b)  # the per-sample permutation
    shape = tuple(x.shape[a] for a in p)
    if p == tuple(range(len(p))):
        return _record(conv, onode.outputs[0], shape, x, perm.index(b))
    src = conv.get(x, PLAIN)
    op = 'Reshape' if keeps_order(x.shape, p) else 'Transpose'
    attrs = {'shape': shape} if op == 'Reshape' else {'perm': p}
    _record(conv, onode.outputs[0], shape, conv.add(onode, op, [src], shape, attrs=attrs), perm.index(b))


def _squeeze_any(conv: Converter, onode: ONode) -> None:
    """Squeeze / Unsqueeze; of a time-major tensor (non-batch axes only), the batch axis follows."""
    tensor = onode.inputs[0]
    if tensor not in conv.batch_axes:
        return _squeeze(conv, onode)
    onode.check({'axes': None})
    x, b = _moved(conv, tensor, onode)
    axes = onode.get('axes')
    if axes is None and len(onode.inputs) > 1 and onode.inputs[1]:
        axes = value_of(conv.const(onode.inputs[1])).astype(np.int64).tolist()
    out_full = _full_shape(conv, onode.outputs[0], onode)
    rank = len(out_full) if onode.op == 'Unsqueeze' else len(x.shape) + 1
    axes = sorted(int(a) % rank for a in (axes or ()))
    if not axes or (onode.op == 'Squeeze' and b in axes):
        raise GraphError(f'{onode.where()}: axes={axes} must be given and must not include the batch axis {b}')
    if onode.op == 'Squeeze':
        b_out = b - sum(a < b for a in axes)
    else:
        b_out = [a for a in range(rank) if a not in axes][b]
    shape = out_full[:b_out] + out_full[b_out + 1:]
    _record(conv, onode.outputs[0], shape, _reshaped(conv, onode, conv.get(x, PLAIN), shape, ''), b_out)


def _reshape_any(conv: Converter, onode: ONode) -> None:
    """Reshape; of a tensor with the batch off axis 0, the batch axis follows its place in C order.

    The place is the product of the axes before the batch axis (its element offset). A Reshape that keeps
    an axis of size 1 at that offset keeps the batch axis there (time-major RNN tensors: [0, 0, -1]);
    one that merges it into another axis (torch's attention export: (L, N, E) -> (L, N*H, D) and
    (L, N, H, D) -> (L*N, E)) gives a Fold, followed until a Reshape gives it its own axis again.
    """
    tensor = onode.inputs[0]
    if tensor not in conv.batch_axes:
        return _reshape(conv, onode)
    onode.check({'allowzero': 0})
    x, b = _moved(conv, tensor, onode, fold_ok=True)
    in_full = _full_shape(conv, tensor, onode)
    out_full = _full_shape(conv, onode.outputs[0], onode)
    place = _batch_place(out_full, _batch_offsets(in_full, b))
    if place is None:
        raise GraphError(f'{onode.where()}: reshape {in_full} -> {out_full} of a tensor with the batch on axis {b} '
                         'splits the batch axis; the batch must stay an axis or merge whole into neighbouring axes')
    shape = _per_sample(out_full, place)
    _record(conv, onode.outputs[0], shape, _reshaped(conv, onode, conv.get(x, PLAIN), shape, ''), place)


class Fold:
    """The batch axis merged into other axes by a Reshape (the batch is 1 after clean-up, so the per-sample
    values are the whole tensor). `places` holds where it may be: (axis, True) the major part of an axis,
    (axis, False) its minor part (one Reshape cannot tell the two apart at batch 1; the later ops do)."""

    def __init__(self, places: Any) -> None:
        self.places = frozenset(places)

    def __str__(self) -> str:
        return 'axis ' + ' or '.join(str(a) for a in sorted({a for a, _ in self.places}))

    def moved(self, perm: tuple[int, ...]) -> 'Fold':
        """The places after a Transpose by `perm`."""
        return Fold((perm.index(a), major) for a, major in self.places)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fold) and self.places == other.places

    def __hash__(self) -> int:
        return hash(self.places)


def _batch_offsets(full: tuple[int, ...], b: Any) -> set[int]:
    """The element offsets (products of the axes before it, C order) at which the batch axis may sit."""
    if isinstance(b, Fold):
        return {int(np.prod(full[:a + (0 if major else 1)], dtype=np.int64)) for a, major in b.places}
    return {int(np.prod(full[:b], dtype=np.int64))}


def _batch_place(full: tuple[int, ...], offsets: set[int]) -> Any:
    """The batch place in a reshaped tensor: an axis of size 1 at one of the offsets, else a Fold; None if none."""
    prefix = [int(np.prod(full[:k], dtype=np.int64)) for k in range(len(full) + 1)]
    for k, d in enumerate(full):
        if d == 1 and prefix[k] in offsets:
            return k
    places = {(k, True) for k in range(len(full)) if prefix[k] in offsets}
    places |= {(k - 1, False) for k in range(1, len(full) + 1) if prefix[k] in offsets}
    return Fold(places) if places else None


def _per_sample(full: tuple[int, ...], b: Any) -> tuple[int, ...]:
    """The per-sample shape: the batch axis removed (a Fold: the whole tensor, the batch being 1)."""
    return full if isinstance(b, Fold) else full[:b] + full[b + 1:]


def _transpose_fold(conv: Converter, onode: ONode, x: Value, b: Fold) -> None:
    """Transpose of a tensor whose batch is merged into other axes: the whole-tensor permutation."""
    perm = tuple(int(p) % len(x.shape) for p in onode.get('perm', range(len(x.shape) - 1, -1, -1)))
    shape = tuple(x.shape[a] for a in perm)
    src = conv.get(x, PLAIN)
    op = 'Reshape' if keeps_order(x.shape, perm) else 'Transpose'
    attrs = {'shape': shape} if op == 'Reshape' else {'perm': perm}
    _record(conv, onode.outputs[0], shape, conv.add(onode, op, [src], shape, attrs=attrs), b.moved(perm))


def _follow_batch(handler: Handler, place: Callable[[Converter, ONode, dict[str, Any]], Any]) -> Handler:
    """A handler that also reads tensors whose batch is off axis 0 or merged: `place(conv, onode, {tensor: batch
    place})` checks the op may read them (else raises) and gives the output's batch place; the handler then runs
    on the per-sample values, which are the same."""
    def run(conv: Converter, onode: ONode) -> None:
        moved = {i: conv.batch_axes[i] for i in onode.inputs if i in conv.batch_axes}
        if not moved:
            return handler(conv, onode)
        out = place(conv, onode, moved)
        for tensor in moved:
            del conv.batch_axes[tensor]
        try:
            handler(conv, onode)
        finally:
            conv.batch_axes.update(moved)
        conv.batch_axes[onode.outputs[0]] = out
    return run


def _last_axis_place(conv: Converter, onode: ONode, moved: dict[str, Any]) -> Any:
    """An op on the last axis with constants (MatMul/Gemm with constant weights, Add/Sub/Mul with a constant): one
    tensor with the batch off its last axis, kept where the input has it."""
    tensor, b = next(iter(moved.items()))
    last = len(_full_shape(conv, tensor, onode)) - 1
    others = [i for i in onode.inputs if i and i != tensor]
    keep = Fold(p for p in b.places if p[0] != last) if isinstance(b, Fold) else b
    if len(moved) > 1 or any(conv.const(i) is None for i in others) or keep == last or \
            (isinstance(keep, Fold) and not keep.places):
        also = ', or with tensors holding the batch at the same place' if onode.op in ('Add', 'Sub', 'Mul') else ''
        raise GraphError(f'{onode.where()}: input {tensor!r} holds the batch on {b}; {onode.op} reads such a '
                         f'tensor only with constants and the batch off its last axis{also}')
    return keep


def _elementwise_place(conv: Converter, onode: ONode, moved: dict[str, Any]) -> Any:
    """Element-wise ops: with a constant as `_last_axis_place`; of tensors only, all with the batch at one place."""
    if any(i and conv.const(i) is not None for i in onode.inputs):
        return _last_axis_place(conv, onode, moved)
    places = [moved.get(i, 0) for i in onode.inputs]
    if any(p != places[0] for p in places):
        raise GraphError(f'{onode.where()}: inputs {list(onode.inputs)} hold the batch on axes '
                         f'{[str(p) for p in places]}; {onode.op} of tensors needs the batch at the same place in all')
    return places[0]


def _norm_place(conv: Converter, onode: ONode, moved: dict[str, Any]) -> Any:
    """LayerNormalization: the batch on an axis before the normalised ones (time-major (L, N, E) over E)."""
    tensor, b = next(iter(moved.items()))
    rank = len(_full_shape(conv, tensor, onode))
    axis = int(onode.get('axis', -1))
    axis = axis + rank if axis < 0 else axis
    if isinstance(b, Fold) or b >= axis:
        raise GraphError(f'{onode.where()}: input {tensor!r} holds the batch on {b}; LayerNormalization reads such '
                         f'a tensor only with the batch on an axis before the normalised axes (from axis {axis})')
    return b


def _crop_axis(conv: Converter, onode: ONode, src: str, shape: tuple[int, ...], axis: int, start: int,
               stop: int) -> str:
    """Per-sample src[..., start:stop (on `axis`), ...] as a Crop between Reshapes; shape (.., stop-start, ..)."""
    pre, d, post = int(np.prod(shape[:axis], dtype=np.int64)), shape[axis], int(np.prod(shape[axis + 1:],
                                                                                        dtype=np.int64))
    base = conv.base(onode)
    if pre == 1:
        rows = _reshaped(conv, onode, src, (d, post), '_rows')
        out_shape, cropping = (stop - start, post), (start, d - stop)
    else:
        rows = _reshaped(conv, onode, src, (pre, d, post), '_rows')
        out_shape, cropping = (pre, stop - start, post), (0, 0, start, d - stop)
    return conv.add(onode, 'Crop', [rows], out_shape, name=conv.fresh(f'{base}_crop'), attrs={'cropping': cropping})


def _gather(conv: Converter, onode: ONode) -> None:
    """Gather of one constant index along a non-batch axis (``out[:, -1]``, ``h_n[-1]``) -> Crop + Reshape."""
    onode.check({'axis': 0})
    x, b = _moved(conv, onode.inputs[0], onode)
    index = conv.const(onode.inputs[1])
    rank = len(x.shape) + 1
    axis = int(onode.get('axis', 0)) % rank
    if index is None or np.asarray(value_of(index)).ndim != 0 or axis == b:
        raise GraphError(f'{onode.where()}: only one constant scalar index along a non-batch axis is supported '
                         f'(axis {axis}, batch axis {b})')
    per_axis = axis - (axis > b)
    d = x.shape[per_axis]
    k = int(value_of(index))
    if not -d <= k < d:
        raise GraphError(f'{onode.where()}: index {k} is out of range for an axis of size {d}')
    k %= d
    shape = x.shape[:per_axis] + x.shape[per_axis + 1:]
    crop = _crop_axis(conv, onode, conv.get(x, PLAIN), x.shape, per_axis, k, k + 1)
    _record(conv, onode.outputs[0], shape, _reshaped(conv, onode, crop, shape, '_out'), b - (axis < b))


def _slice(conv: Converter, onode: ONode) -> None:
    """Slice with constant starts/ends (axes, steps 1) on non-batch axes (``out[:, -2:]``) -> Crops + Reshapes."""
    onode.check({})
    x, b = _moved(conv, onode.inputs[0], onode)
    rank = len(x.shape) + 1
    extra = (onode.inputs + [''] * 4)[1:5]  # starts, ends, axes, steps
    consts = [conv.const(i) if i else None for i in extra]
    if consts[0] is None or consts[1] is None or any(i and c is None for i, c in zip(extra[2:], consts[2:])):
        raise GraphError(f'{onode.where()}: starts, ends, axes and steps must be constants')
    def ints(c: Any) -> np.ndarray:  # int64 as stored (INT64_MAX means "to the end"; no float round trip)
        return (np.asarray(value_of(c)) if isinstance(c, QConst) else np.asarray(c)).astype(np.int64).reshape(-1)
    starts, ends = ints(consts[0]), ints(consts[1])
    axes = np.arange(len(starts)) if consts[2] is None else ints(consts[2])
    steps = np.ones(len(starts), np.int64) if consts[3] is None else ints(consts[3])
    original = conv.get(x, PLAIN)
    src, shape = original, x.shape
    for start, end, axis, step in zip(starts.tolist(), ends.tolist(), axes.tolist(), steps.tolist()):
        axis %= rank
        if axis == b or step != 1:
            raise GraphError(f'{onode.where()}: slicing axis {axis} with step {step} is not supported; only steps of 1 '
                             f'on axes other than the batch axis {b}')
        per_axis = axis - (axis > b)
        lo, hi, _ = slice(start, end).indices(shape[per_axis])
        if hi <= lo:
            raise GraphError(f'{onode.where()}: the slice [{start}:{end}] of axis {axis} is empty')
        if (lo, hi) == (0, shape[per_axis]):
            continue
        cropped = _crop_axis(conv, onode, src, shape, per_axis, lo, hi)
        shape = shape[:per_axis] + (hi - lo,) + shape[per_axis + 1:]
        src = _reshaped(conv, onode, cropped, shape, '_out')
    _record(conv, onode.outputs[0], shape, x if src == original else src, b)


def _concat_any(conv: Converter, onode: ONode) -> None:
    """Concat; of time-major tensors (all with the batch on the same axis) along another axis -> Merge concat."""
    if not any(i in conv.batch_axes for i in onode.inputs):
        return _concat(conv, onode)
    onode.check({'axis': None})
    moved = [_moved(conv, i, onode) for i in onode.inputs]
    b = moved[0][1]
    rank = len(moved[0][0].shape) + 1
    axis = int(onode.get('axis', 1)) % rank
    if any(m[1] != b for m in moved) or axis == b:
        raise GraphError(f'{onode.where()}: inputs with the batch on axes {[m[1] for m in moved]} concatenated '
                         f'along axis {axis}: the batch axis must be the same for all and not the concatenated one')
    ps = axis - (axis > b)
    srcs = [conv.get(v, PLAIN) for v, _ in moved]
    shape = tuple(sum(v.shape[ps] for v, _ in moved) if i == ps else d for i, d in enumerate(moved[0][0].shape))
    out = conv.add(onode, 'Merge', srcs, shape, attrs={'mode': 'concat', 'axis': ps - len(shape)})
    _record(conv, onode.outputs[0], shape, out, b)


# --------------------------------------------------------------------------- transformers


def _matmul_tensors(conv: Converter, onode: ONode) -> None:
    """MatMul of two tensors with the same leading axes (a @ b over the last two) -> Einsum."""
    a, b = (conv.value(t, onode) for t in onode.inputs[:2])
    if (len(a.shape) < 2 or len(b.shape) != len(a.shape) or a.shape[:-2] != b.shape[:-2]
            or a.shape[-1] != b.shape[-2]):
        raise GraphError(f'{onode.where()}: MatMul of tensors of per-sample shapes {a.shape} and {b.shape} is not '
                         'supported; only a tensor times a constant 2D matrix, or two tensors with equal leading '
                         'axes, (..., m, k) @ (..., k, n)')
    lead = 'abcdefgh'[:len(a.shape) - 2]
    shape = a.shape[:-1] + (b.shape[-1],)
    out = conv.add(onode, 'Einsum', [conv.get(a, PLAIN), conv.get(b, PLAIN)], shape,
                   attrs={'equation': f'{lead}xz,{lead}zy->{lead}xy'})
    conv.put(onode.outputs[0], shape, PLAIN, out)


def _softmax_moved(conv: Converter, onode: ONode, x: Value, axis: int) -> None:
    """Softmax over per-sample `axis`: transposed to the last axis, Softmax, transposed back."""
    rank = len(x.shape)
    perm = tuple(a for a in range(rank) if a != axis) + (axis,)
    back = tuple(int(i) for i in np.argsort(perm))
    moved = tuple(x.shape[a] for a in perm)
    base = conv.base(onode)
    src = conv.add(onode, 'Transpose', [conv.get(x, PLAIN)], moved, name=conv.fresh(f'{base}_to_last'),
                   attrs={'perm': perm})
    soft = conv.add(onode, 'Softmax', [src], moved, name=conv.fresh(f'{base}_last'), attrs={'axis': -1})
    out = conv.add(onode, 'Transpose', [soft], x.shape, attrs={'perm': back})
    conv.put(onode.outputs[0], x.shape, PLAIN, out)


def _einsum(conv: Converter, onode: ONode) -> None:
    """Einsum of two tensors -> Einsum; of a tensor and a constant -> EinsumDense without bias."""
    from .keras_attention import per_sample_equation

    onode.check({'equation': None})
    equation = str(onode.get('equation', '')).replace(' ', '')
    if len(onode.inputs) != 2 or '->' not in equation:
        raise GraphError(f'{onode.where()}: only Einsum of two operands with an explicit output ("...->...") is '
                         f'supported, got {len(onode.inputs)} operands and {equation!r}')
    lhs, right = equation.split('->')
    terms = lhs.split(',')
    consts = [conv.const(t) for t in onode.inputs]
    if all(c is None for c in consts):
        a, b = (conv.value(t, onode) for t in onode.inputs)
        per_sample = per_sample_equation(equation, [len(a.shape), len(b.shape)], onode.where())
        shape = conv.shape_of(onode.outputs[0], onode.where())
        out = conv.add(onode, 'Einsum', [conv.get(a, PLAIN), conv.get(b, PLAIN)], shape,
                       attrs={'equation': per_sample})
    else:
        k = 0 if consts[0] is None else 1
        if consts[k] is not None or isinstance(consts[1 - k], QConst):
            raise GraphError(f'{onode.where()}: Einsum needs a dynamic tensor and a float constant or two tensors')
        x = conv.value(onode.inputs[k], onode)
        if terms[k][:1] in terms[1 - k]:
            raise GraphError(f'{onode.where()}: the constant operand uses the batch letter {terms[k][:1]!r}')
        per_sample = per_sample_equation(f'{terms[k]},{terms[1 - k]}->{right}', [len(x.shape)], onode.where())
        shape = conv.shape_of(onode.outputs[0], onode.where())
        out = conv.add(onode, 'EinsumDense', [conv.get(x, PLAIN)], shape,
                       attrs={'equation': per_sample, 'use_bias': False},
                       weights={'kernel': np.asarray(consts[1 - k], np.float32), 'bias': np.zeros(shape, np.float32)})
    conv.put(onode.outputs[0], shape, PLAIN, out)


def _layer_norm(conv: Converter, onode: ONode) -> None:
    """LayerNormalization over the axes from `axis` to the last -> LayerNorm (Scale and B constants)."""
    onode.check({'axis': -1, 'epsilon': 1e-5, 'stash_type': 1})
    if len(onode.outputs) > 1 and any(onode.outputs[1:]):
        raise GraphError(f'{onode.where()}: the Mean and InvStdDev outputs are not supported; only Y')
    x = conv.value(onode.inputs[0], onode)
    rank = len(x.shape) + 1
    axis = int(onode.get('axis', -1))
    axis = axis + rank if axis < 0 else axis
    if not 1 <= axis < rank:
        raise GraphError(f'{onode.where()}: axis {onode.get("axis")} is not supported; the normalised axes must '
                         'exclude the batch axis (axis >= 1)')
    normalized = x.shape[axis - 1:]
    scale = conv.const(onode.inputs[1])
    bias = conv.const(onode.inputs[2]) if len(onode.inputs) > 2 and onode.inputs[2] else None
    if scale is None or isinstance(scale, QConst) or isinstance(bias, QConst) or (
            len(onode.inputs) > 2 and onode.inputs[2] and bias is None):
        raise GraphError(f'{onode.where()}: Scale and B must be float constants')
    weights = {'gamma': np.broadcast_to(np.asarray(scale, np.float32), normalized).copy(),
               'beta': np.broadcast_to(np.asarray(0 if bias is None else bias, np.float32), normalized).copy()}
    # the attribute is a float32: read as its shortest decimal (1e-05, not 9.99999974e-06), the value the exporter
    # was given, as the torch and Keras front ends read it
    epsilon = float(str(np.float32(onode.get('epsilon', 1e-5))))
    attrs = {'axes': tuple(range(-len(normalized), 0)), 'epsilon': epsilon,
             'center': bias is not None, 'scale': True}
    out = conv.add(onode, 'LayerNorm', [conv.get(x, PLAIN)], x.shape, attrs=attrs, weights=weights)
    conv.put(onode.outputs[0], x.shape, PLAIN, out)


#: ONNX recurrent op -> (IR op, gate blocks, IR block k = ONNX block ORDER[k], default activations per direction)
RNN_OPS = {'RNN': ('SimpleRNN', [0], ('Tanh',)), 'LSTM': ('LSTM', [0, 2, 3, 1], ('Sigmoid', 'Tanh', 'Tanh')),
           'GRU': ('GRU', [0, 1, 2], ('Sigmoid', 'Tanh'))}
RNN_DIRECTIONS = ('forward', 'reverse', 'bidirectional')
#: ops that follow a batch axis moved off axis 0 (the others refuse such tensors by name)
FOLLOWS_BATCH = frozenset(RNN_OPS) | frozenset(UNARY) | {'Transpose', 'Reshape', 'Squeeze', 'Unsqueeze', 'Gather',
                                                         'Slice', 'Concat', 'MatMul', 'Gemm', 'Add', 'Sub', 'Mul',
                                                         'Gelu', 'LayerNormalization'}



def _rnn_weight(conv: Converter, onode: ONode, k: int, what: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """A constant float weight input (None when absent), checked against its shape."""
    if len(onode.inputs) <= k or not onode.inputs[k]:
        return None
    w = conv.const(onode.inputs[k])
    if w is None or isinstance(w, QConst):
        raise GraphError(f'{onode.where()}: input {what} must be a float constant (quantized or dynamic weights '
                         'are not supported)')
    if tuple(w.shape) != shape:
        raise GraphError(f'{onode.where()}: input {what} has shape {tuple(w.shape)}, expected {shape}')
    return np.asarray(w, dtype=np.float32)


def _rnn_activations(onode: ONode, default: tuple[str, ...], directions: int) -> str:
    """The IR activation of an ONNX RNN's `activations` (defaults; nn.RNN's Relu); others refused."""
    acts = [a.decode() if isinstance(a, bytes) else a for a in onode.get('activations', default * directions)]
    allowed = [default] + ([('Relu',)] if onode.op == 'RNN' else [])
    for option in allowed:
        if acts == list(option * directions):
            return option[-1].lower()
    raise GraphError(f'{onode.where()}: activations={acts} is not supported; supported: '
                     f'{[list(o * directions) for o in allowed]} (one list per direction)')


def _rnn_state(conv: Converter, onode: ONode, k: int, what: str, layout: int, shape: tuple[int, int]) -> str | None:
    """An initial state input: None when absent or constant zeros; else the IR node of per-sample (D, H)."""
    if len(onode.inputs) <= k or not onode.inputs[k]:
        return None
    c = conv.const(onode.inputs[k])
    if c is not None:
        if np.any(np.asarray(value_of(c)) != 0):
            raise GraphError(f'{onode.where()}: a constant non-zero {what} is not supported (give it as an input)')
        return None
    v, b = _moved(conv, onode.inputs[k], onode)
    if b != (1 if layout == 0 else 0) or v.shape != shape:
        raise GraphError(f'{onode.where()}: {what} must have the batch on axis {1 if layout == 0 else 0} and '
                         f'per-sample shape {shape}, got batch axis {b} and {v.shape}')
    return conv.get(v, PLAIN)


def _rnn_fields(onode: ONode, op: str, order: list[int], n: int, w: np.ndarray, r: np.ndarray,
                bias: np.ndarray | None, d: int) -> dict[str, np.ndarray]:
    """The IR weights of direction d: ONNX gate blocks reordered, transposed to (inputs, gates * n)."""
    def blocks(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a[k * n:(k + 1) * n] for k in order], axis=0)
    g = len(order) * n
    b = np.zeros(2 * g, np.float32) if bias is None else bias[d]
    return {'kernel': np.ascontiguousarray(blocks(w[d]).T), 'recurrent_kernel': np.ascontiguousarray(blocks(r[d]).T),
            'bias': blocks(b[:g]), 'recurrent_bias': blocks(b[g:])}


def _rnn(conv: Converter, onode: ONode) -> None:
    """RNN / LSTM / GRU -> one SimpleRNN/LSTM/GRU node per direction; Y, Y_h (and Y_c) as ONNX has them."""
    op, order, default = RNN_OPS[onode.op]
    known = {'activations': None, 'direction': 'forward', 'hidden_size': None, 'layout': 0}
    known.update({'LSTM': {'input_forget': 0}, 'GRU': {'linear_before_reset': 0}}.get(onode.op, {}))
    onode.check(known)
    direction = onode.require('direction', RNN_DIRECTIONS, 'forward')
    layout = onode.require('layout', (0, 1), 0)
    if onode.op == 'LSTM':
        onode.require('input_forget', (0,), 0)
    dirs = 2 if direction == 'bidirectional' else 1
    activation = _rnn_activations(onode, default, dirs)
    x, b = _moved(conv, onode.inputs[0], onode)
    if b != (1 if layout == 0 else 0) or len(x.shape) != 2:
        raise GraphError(f'{onode.where()}: X must be (seq, batch, input) for layout 0 or (batch, seq, input) for '
                         f'layout 1; got per-sample {x.shape} with the batch on axis {b} (layout {layout})')
    steps, n_in = x.shape
    n = int(onode.get('hidden_size', 0) or 0)
    g = len(order) * n
    w = _rnn_weight(conv, onode, 1, 'W', (dirs, g, n_in))
    r = _rnn_weight(conv, onode, 2, 'R', (dirs, g, n))
    if w is None or r is None or n < 1:
        raise GraphError(f'{onode.where()}: hidden_size and the constant weights W and R are required')
    bias = _rnn_weight(conv, onode, 3, 'B', (dirs, 2 * g))
    lens = conv.const(onode.inputs[4]) if len(onode.inputs) > 4 and onode.inputs[4] else None
    if len(onode.inputs) > 4 and onode.inputs[4] and (lens is None or np.any(np.asarray(value_of(lens)) != steps)):
        raise GraphError(f'{onode.where()}: sequence_lens is not supported (only absent, or a constant equal to '
                         f'the sequence length {steps})')
    if onode.op == 'LSTM' and len(onode.inputs) > 7 and onode.inputs[7]:
        raise GraphError(f'{onode.where()}: input P (peepholes) is not supported')
    states = [_rnn_state(conv, onode, k, what, layout, (dirs, n))
              for k, what in ((5, 'initial_h'), (6, 'initial_c'))[:2 if onode.op == 'LSTM' else 1]]
    if any(s is None for s in states) and any(s is not None for s in states):
        raise GraphError(f'{onode.where()}: give both initial_h and initial_c as inputs, or neither')
    attrs: dict[str, Any] = {'units': n, 'return_sequences': True, 'output_order': 'time', 'activation': activation}
    if onode.op == 'GRU':
        attrs.update(reset_after=bool(onode.get('linear_before_reset', 0)), gate_order='zrh')
    base, src = conv.base(onode), conv.get(x, PLAIN)
    parts: dict[str, list[str]] = {'seq': [], 'h': [], 'c': []}
    from .torch_rnn import stack_rows, state_row
    for d in range(dirs):
        reverse = direction == 'reverse' or d == 1
        inputs = [src] + [state_row(conv.graph, conv.fresh, s, d, dirs, n) for s in states if s is not None]
        name = conv.fresh(base + ('_reverse' if d == 1 else '_forward' if dirs == 2 else ''), own=True)
        conv.add(onode, op, inputs, (steps, n), name=name, attrs={**attrs, 'go_backwards': reverse},
                 weights=_rnn_fields(onode, op, order, n, w, r, bias, d))
        for index, part in enumerate(['seq', 'h'] + (['c'] if op == 'LSTM' else [])):
            parts[part].append(conv.add(onode, 'Select', [name], (steps, n) if part == 'seq' else (n,),
                                        name=conv.fresh(f'{name}_{part}'), attrs={'index': index}))
    outputs = onode.outputs + [''] * 3
    if outputs[0]:  # Y: (seq, dirs, batch, n) or (batch, seq, dirs, n)
        rows = [_reshaped(conv, onode, s, (steps, 1, n), '_as_rows') for s in parts['seq']]
        y = rows[0] if dirs == 1 else conv.add(onode, 'Merge', rows, (steps, 2, n), name=conv.fresh(f'{base}_Y'),
                                               attrs={'mode': 'concat', 'axis': 1})
        _record(conv, outputs[0], (steps, dirs, n), y, 2 if layout == 0 else 0)
    for k, part in ((1, 'h'), (2, 'c')):
        if outputs[k] and parts[part]:  # Y_h, Y_c: (dirs, batch, n) or (batch, dirs, n)
            stacked = stack_rows(conv.graph, conv.fresh, conv.fresh(f'{base}_Y_{part}'), parts[part], n, onode.op)
            _record(conv, outputs[k], (dirs, n), stacked, 1 if layout == 0 else 0)


_rnn.several_outputs = True  # type: ignore[attr-defined]


HANDLERS: dict[str, Handler] = {
    'Gemm': _follow_batch(_gemm, _last_axis_place), 'MatMul': _follow_batch(_matmul, _last_axis_place),
    'Conv': _conv, 'Einsum': _einsum, 'LayerNormalization': _follow_batch(_layer_norm, _norm_place),
    'MaxPool': _pool, 'AveragePool': _pool, 'GlobalAveragePool': _global_pool, 'GlobalMaxPool': _global_pool,
    'BatchNormalization': _batch_norm, 'Softmax': _softmax, 'Clip': _clip, 'PRelu': _prelu,
    'Gelu': _follow_batch(_gelu, _elementwise_place), **{op: _follow_batch(_unary, _elementwise_place) for op in UNARY},
    **{op: _merge for op in MERGES}, **{op: _follow_batch(_merge, _elementwise_place) for op in ('Add', 'Sub', 'Mul')},
    'Concat': _concat_any,
    'Flatten': _flatten, 'Reshape': _reshape_any, 'Squeeze': _squeeze_any, 'Unsqueeze': _squeeze_any,
    'Transpose': _transpose_any, 'Gather': _gather, 'Slice': _slice, **{op: _rnn for op in RNN_OPS},
    'Identity': _identity, 'Dropout': _identity, 'Constant': _constant,
    **QUANT_HANDLERS,
}
#: ops whose inputs may all be constants (they produce constants)
CONST_OPS = ('Constant', 'Identity', 'Dropout', 'Transpose', 'Reshape')
#: ONNX op types this front end accepts (QONNX quantizers included)
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(HANDLERS))
