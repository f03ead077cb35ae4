"""What each PyTorch layer becomes in the IR: one handler per torch class, and the functional forms.

A handler gets the converter (`torch.Converter`: it adds nodes and inserts layout changes) and a
`Call` (the fx node, its module or the module its functional form stands for, its main input as a
`Value`, torch's output shape) and returns the `Value` holding the result. See torch.py for the
conventions (names, layouts).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..geometry import check_conv, check_pool
from ..ir import GraphError

if TYPE_CHECKING:
    from .torch import Converter

ACTIVATION_MODULES = ('ReLU', 'ReLU6', 'LeakyReLU', 'ELU', 'SELU', 'Sigmoid', 'Tanh', 'Softsign', 'Softplus',
                      'Hardtanh', 'Hardsigmoid', 'Threshold', 'GELU')
SKIPPED_MODULES = ('Dropout', 'Dropout1d', 'Dropout2d', 'AlphaDropout', 'Identity')


@dataclass(frozen=True)
class Value:
    """A tensor of the torch graph as the IR holds it."""

    name: str               # the IR node holding it
    shape: tuple[int, ...]  # torch's per-sample shape (channels first)
    cl: bool = False        # True: held channels-last (torch's per-sample axis 0 moved last)

    @property
    def ir_shape(self) -> tuple[int, ...]:
        """The shape of the IR node."""
        return self.shape[1:] + self.shape[:1] if self.cl else self.shape


@dataclass
class Call:
    """One fx node being lowered: its IR name, torch class, parameters and main input."""

    node: Any               # the torch.fx.Node
    cls: str                # torch class name ('Conv2d'), also for functional forms
    spec: Any               # the nn.Module, or a namespace with the module's attributes; None for others
    args: dict[str, Any]    # bound arguments of a function or method call (fx nodes unresolved)
    x: Value | None         # the main tensor input
    out: tuple[int, ...]    # torch's per-sample output shape (set once the call is resolved)
    where: str              # 'node NAME (what)' for error messages
    handler: Callable[[Any, Call], Value] | None = None

    @property
    def name(self) -> str:
        """The IR node name (the fx node name)."""
        return self.node.name


def cl_perm(rank: int) -> tuple[int, ...]:
    """Per-sample permutation channels-first -> channels-last."""
    return tuple(range(1, rank)) + (0,)


def cf_perm(rank: int) -> tuple[int, ...]:
    """Per-sample permutation channels-last -> channels-first."""
    return (rank - 1,) + tuple(range(rank - 1))


def spatial(shape: tuple[int, ...]) -> bool:
    """True for (C, W) and (C, H, W) tensors, the ones held channels-last."""
    return len(shape) in (2, 3)


def _np(tensor: Any) -> np.ndarray:
    """A torch tensor (or number) as a float32 numpy array."""
    if hasattr(tensor, 'detach'):
        return np.asarray(tensor.detach().cpu().numpy(), dtype=np.float32)
    return np.asarray(tensor, dtype=np.float32)


def _ntuple(value: Any, n: int, what: str, where: str) -> tuple[int, ...]:
    """An int or a sequence of n ints as a tuple of n ints."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    values = tuple(int(v) for v in value)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise GraphError(f'{where}: {what}={value!r} must have {n} entries')
    return values


def _axis(dim: Any, rank: int, where: str, what: str) -> int:
    """A torch dim of a batched tensor of `rank` (with batch) as a per-sample axis (GraphError for the batch)."""
    if not isinstance(dim, (int, np.integer)) or not -rank <= dim < rank:
        raise GraphError(f'{where}: {what} dim={dim!r} is not an axis of a tensor of rank {rank} (with batch)')
    axis = int(dim) % rank
    if axis == 0:
        raise GraphError(f'{where}: {what} over the batch axis (dim={dim}) is not supported; '
                         'fpga4ml computes one sample at a time')
    return axis - 1


def qualified_name(target: Any) -> str:
    """'torch.nn.functional.relu', '_operator.add': how error messages name a function."""
    from torch.fx.node import _get_qualified_name

    try:
        return _get_qualified_name(target)
    except Exception:  # noqa: BLE001 - any callable without a module path
        return getattr(target, '__name__', repr(target))


# --------------------------------------------------------------------------- handlers
# Each handler adds the IR nodes of one fx node and returns the Value holding its result.


def _conv(cv: Converter, c: Call) -> Value:
    """Conv1d/Conv2d (or F.conv1d/F.conv2d) -> Conv over channels-last input, kernel (kh, kw, C_in/g, C_out)."""
    m = c.spec
    rank = 1 if c.cls == 'Conv1d' else 2
    if getattr(m, 'padding_mode', 'zeros') != 'zeros':
        raise GraphError(f"{c.where}: padding_mode={m.padding_mode!r} is not supported; only 'zeros'")
    if len(c.x.shape) != rank + 1:
        raise GraphError(f'{c.where}: input shape {c.x.shape} is not (C, W)' if rank == 1 else
                         f'{c.where}: input shape {c.x.shape} is not (C, H, W)')
    weight = _np(m.weight)
    kernel_size = tuple(int(k) for k in weight.shape[2:])
    strides = _ntuple(m.stride, rank, 'stride', c.where)
    dilation = _ntuple(m.dilation, rank, 'dilation', c.where)
    if isinstance(m.padding, str):
        if m.padding not in ('same', 'valid'):
            raise GraphError(f"{c.where}: padding={m.padding!r} is not supported; use 'same', 'valid' or amounts")
        totals = [d * (k - 1) if m.padding == 'same' else 0 for k, d in zip(kernel_size, dilation)]
        padding = tuple(v for t in totals for v in (t // 2, t - t // 2))  # torch pads the extra cell last
    else:
        padding = tuple(p for p in _ntuple(m.padding, rank, 'padding', c.where) for _ in range(2))
    kernel = np.ascontiguousarray(weight.transpose(*range(2, 2 + rank), 1, 0))
    use_bias = m.bias is not None
    bias = _np(m.bias) if use_bias else np.zeros(weight.shape[0], np.float32)
    attrs = {'kernel_size': kernel_size, 'strides': strides, 'dilation': dilation, 'padding': padding,
             'groups': int(m.groups), 'use_bias': use_bias}
    x = cv.layout(c.x, True, c.name)
    node = cv.add(c, 'Conv', [x], True, attrs, {'kernel': kernel, 'bias': bias}, f'Conv{rank}D')
    check_conv(node, cv.graph[x].shape)
    return cv.values[c.name]


def _linear(cv: Converter, c: Call) -> Value:
    """Linear (or F.linear) -> Dense over torch's last axis, kernel = weight.T."""
    weight = _np(c.spec.weight)
    if c.x.shape[-1] != weight.shape[1]:
        raise GraphError(f'{c.where}: input shape {c.x.shape} does not end in in_features={weight.shape[1]}')
    use_bias = c.spec.bias is not None
    bias = _np(c.spec.bias) if use_bias else np.zeros(weight.shape[0], np.float32)
    x = cv.layout(c.x, False, c.name)
    cv.add(c, 'Dense', [x], False, {'use_bias': use_bias}, {'kernel': np.ascontiguousarray(weight.T), 'bias': bias})
    return cv.values[c.name]


def _batch_norm(cv: Converter, c: Call) -> Value:
    """BatchNorm1d/2d (or F.batch_norm, eval) -> Scale per channel; raw statistics in attrs['bn']."""
    m = c.spec
    if m.running_mean is None or m.running_var is None:
        raise GraphError(f'{c.where}: BatchNorm without running statistics (track_running_stats=False) '
                         'normalizes with batch statistics, which has no fixed-point equivalent')
    mean, variance = _np(m.running_mean), _np(m.running_var)
    if c.x.shape[0] != mean.shape[0]:
        raise GraphError(f'{c.where}: input shape {c.x.shape} does not have {mean.shape[0]} channels first')
    gamma = _np(m.weight) if m.weight is not None else np.ones_like(mean)
    beta = _np(m.bias) if m.bias is not None else np.zeros_like(mean)
    epsilon = float(m.eps)
    scale = gamma / np.sqrt(variance + epsilon)
    bias = beta - scale * mean
    attrs = {'epsilon': epsilon, 'axis': -1,
             'bn': {'gamma': gamma, 'beta': beta, 'mean': mean, 'variance': variance}}
    x = cv.layout(c.x, True, c.name)
    cv.add(c, 'Scale', [x], True, attrs, {'scale': scale, 'bias': bias}, 'BatchNormalization')
    return cv.values[c.name]


def _activation_attrs(c: Call) -> dict[str, Any]:
    """IR Activation attrs of an element-wise torch activation (GraphError for unsupported settings)."""
    m, cls = c.spec, c.cls
    simple = {'ReLU': 'relu', 'SELU': 'selu', 'Sigmoid': 'sigmoid', 'Tanh': 'tanh', 'Softsign': 'softsign'}
    if cls in simple:
        return {'function': simple[cls]}
    if cls == 'ReLU6':
        return {'function': 'relu', 'max_value': 6.0}
    if cls == 'LeakyReLU':
        return {'function': 'leaky_relu', 'alpha': float(m.negative_slope)}
    if cls == 'ELU':
        return {'function': 'elu', 'alpha': float(m.alpha)}
    if cls == 'Threshold':  # torch: x if x > threshold else value; hls4ml's ThresholdedReLU when value == 0
        if float(m.value) != 0.0:
            raise GraphError(f'{c.where}: Threshold(threshold={m.threshold}, value={m.value}) is not supported; '
                             'only value=0 (a thresholded ReLU: x if x > threshold else 0)')
        return {'function': 'relu', 'threshold': float(m.threshold)}
    if cls == 'Hardsigmoid':  # torch: clip(x / 6 + 1/2, 0, 1)
        return {'function': 'hard_sigmoid', 'slope': 1.0 / 6.0, 'shift': 0.5}
    if cls == 'Softplus':
        if float(m.beta) != 1.0 or float(m.threshold) < 20:
            raise GraphError(f'{c.where}: Softplus(beta={m.beta}, threshold={m.threshold}) is not supported; '
                             'only beta=1 with threshold >= 20 (log(1 + e^x) to within 2^-28)')
        return {'function': 'softplus'}
    if cls == 'GELU':
        return {'function': gelu_function(m.approximate, c.where)}
    if cls == 'Hardtanh':
        lo, hi = float(m.min_val), float(m.max_val)
        if (lo, hi) == (-1.0, 1.0):
            return {'function': 'hard_tanh'}
        if lo == 0.0 and hi > 0:
            return {'function': 'relu', 'max_value': hi}
        raise GraphError(f'{c.where}: Hardtanh(min_val={lo}, max_val={hi}) is not supported; only (-1, 1) '
                         '(hard_tanh) and min_val=0 (a ReLU with max_value)')
    raise GraphError(f'{c.where}: activation {cls} has no IR function')


def gelu_function(approximate: Any, where: str) -> str:
    """The IR function of torch's GELU(approximate=...): 'none' -> 'gelu' (erf), 'tanh' -> 'gelu_tanh'."""
    functions = {'none': 'gelu', 'tanh': 'gelu_tanh'}
    if approximate not in functions:
        raise GraphError(f"{where}: GELU(approximate={approximate!r}) is not supported; only 'none' and 'tanh'")
    return functions[approximate]


def _activation(cv: Converter, c: Call) -> Value:
    """Element-wise activations -> Activation in the input's layout."""
    cv.add(c, 'Activation', [c.x.name], c.x.cl, _activation_attrs(c))
    return cv.values[c.name]


def _prelu(cv: Converter, c: Call) -> Value:
    """PReLU (one slope, or one per channel = per-sample axis 0) -> prelu with alpha in the IR shape."""
    alpha = _np(c.spec.weight).ravel()
    shape = c.x.shape
    if alpha.size not in (1, shape[0]):
        raise GraphError(f'{c.where}: {alpha.size} slopes do not fit input shape {shape} (1 or {shape[0]})')
    full = np.broadcast_to(alpha.reshape((-1,) + (1,) * (len(shape) - 1)), shape)
    if c.x.cl:
        full = full.transpose(cl_perm(len(shape)))
    cv.add(c, 'Activation', [c.x.name], c.x.cl, {'function': 'prelu'},
           {'alpha': np.ascontiguousarray(full, dtype=np.float32)})
    return cv.values[c.name]


def _softmax(cv: Converter, c: Call) -> Value:
    """Softmax(dim) -> Softmax over the last IR axis: torch's last axis, or the channel axis held channels-last."""
    dim = c.spec.dim
    rank = len(c.x.shape) + 1
    if dim is None:  # torch's legacy implicit dim
        dim = 0 if rank in (0, 1, 3) else 1
    axis = _axis(dim, rank, c.where, 'softmax')
    if axis == len(c.x.shape) - 1:
        cl = False
    elif axis == 0 and spatial(c.x.shape):
        cl = True
    else:
        raise GraphError(f'{c.where}: softmax over dim={dim} of shape {(None,) + c.x.shape} is not supported; '
                         'only over the last axis or the channel axis (dim=1)')
    x = cv.layout(c.x, cl, c.name)
    cv.add(c, 'Softmax', [x], cl, {'axis': -1})
    return cv.values[c.name]


def _pool_window(c: Call, rank: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """pool_size, strides and explicit padding of a MaxPool/AvgPool (GraphError for unsupported settings)."""
    m = c.spec
    if getattr(m, 'ceil_mode', False):
        raise GraphError(f'{c.where}: ceil_mode=True is not supported; only floor output sizes')
    size = _ntuple(m.kernel_size, rank, 'kernel_size', c.where)
    stride = m.stride
    strides = size if stride is None or (isinstance(stride, (list, tuple)) and not stride) else \
        _ntuple(stride, rank, 'stride', c.where)
    pads = _ntuple(m.padding, rank, 'padding', c.where)
    if c.cls.startswith('Max'):
        if getattr(m, 'return_indices', False):
            raise GraphError(f'{c.where}: return_indices=True is not supported')
        if _ntuple(m.dilation, rank, 'dilation', c.where) != (1,) * rank:
            raise GraphError(f'{c.where}: dilation={m.dilation} on pooling is not supported; only 1')
    else:
        if getattr(m, 'divisor_override', None) is not None:
            raise GraphError(f'{c.where}: divisor_override={m.divisor_override} is not supported')
        if getattr(m, 'count_include_pad', True) and any(pads):
            raise GraphError(f'{c.where}: count_include_pad=True with padding={m.padding} is not supported: '
                             'the IR averages over the real cells only; use count_include_pad=False')
    return size, strides, tuple(p for p in pads for _ in range(2))


def _pool_node(cv: Converter, c: Call, rank: int, mode: str, size: tuple[int, ...], strides: tuple[int, ...],
               padding: tuple[int, ...], is_global: bool = False) -> Value:
    """A Pool node over the channels-last input."""
    if len(c.x.shape) != rank + 1:
        raise GraphError(f'{c.where}: input shape {c.x.shape} is not ' + ('(C, W)' if rank == 1 else '(C, H, W)'))
    attrs = {'mode': mode, 'pool_size': size, 'strides': strides, 'padding': padding}
    if is_global:
        attrs['global'] = True
    alias = f"{'Global' if is_global else ''}{'Max' if mode == 'max' else 'Average'}Pooling{rank}D"
    x = cv.layout(c.x, True, c.name)
    node = cv.add(c, 'Pool', [x], True, attrs, alias=alias)
    check_pool(node, cv.graph[x].shape)
    return cv.values[c.name]


def _pool(cv: Converter, c: Call) -> Value:
    """MaxPool1d/2d, AvgPool1d/2d -> Pool (padded cells are skipped by max and not counted by avg)."""
    rank = int(c.cls[-2])
    size, strides, padding = _pool_window(c, rank)
    return _pool_node(cv, c, rank, 'max' if c.cls.startswith('Max') else 'avg', size, strides, padding)


def _adaptive_pool(cv: Converter, c: Call) -> Value:
    """AdaptiveAvg/MaxPool1d/2d -> a global Pool (output size 1) or a Pool with equal windows (sizes divide)."""
    rank = int(c.cls[-2])
    mode = 'max' if 'Max' in c.cls else 'avg'
    if getattr(c.spec, 'return_indices', False):
        raise GraphError(f'{c.where}: return_indices=True is not supported')
    extent, out = c.x.shape[1:], c.out[1:]
    if all(o == 1 for o in out):
        return _pool_node(cv, c, rank, mode, extent, extent, (0,) * 2 * rank, is_global=True)
    if len(out) == len(extent) and all(e % o == 0 for e, o in zip(extent, out)):
        size = tuple(e // o for e, o in zip(extent, out))
        return _pool_node(cv, c, rank, mode, size, size, (0,) * 2 * rank)
    raise GraphError(f'{c.where}: output_size={c.spec.output_size} of input {c.x.shape} is not supported; '
                     'only 1 (global pooling) or sizes that divide the input (equal windows)')


def _reshape(cv: Converter, c: Call) -> Value:
    """Flatten/view/reshape/squeeze/unsqueeze -> Reshape of torch's layout to torch's output shape."""
    x = cv.layout(c.x, False, c.name, for_reshape=True)
    cv.add(c, 'Reshape', [x], False, {'shape': c.out})
    return cv.values[c.name]


def _squeeze(cv: Converter, c: Call) -> Value:
    """squeeze(dim)/unsqueeze(dim) -> Reshape; the dim must be given and must not be the batch axis."""
    unsqueeze = c.cls == 'unsqueeze'
    dim = cv.const(c.args.get('dim'), c.where)
    if dim is None:
        raise GraphError(f'{c.where}: squeeze() without dim would also drop a batch axis of size 1; give dim')
    rank = len(c.out if unsqueeze else c.x.shape) + 1
    for d in (dim if isinstance(dim, (tuple, list)) else (dim,)):
        _axis(d, rank, c.where, c.cls)
    return _reshape(cv, c)


def _pad(cv: Converter, c: Call) -> Value:
    """ZeroPad1d/2d, ConstantPad1d/2d with value 0, F.pad (constant 0) over the spatial axes -> Pad."""
    rank = len(c.x.shape) - 1
    if rank not in (1, 2):
        raise GraphError(f'{c.where}: input shape {c.x.shape} is not (C, W) or (C, H, W)')
    mode, value = getattr(c.spec, 'mode', 'constant'), getattr(c.spec, 'value', 0.0)
    if mode != 'constant' or float(value or 0.0) != 0.0:
        raise GraphError(f'{c.where}: padding mode={mode!r} value={value} is not supported; only zeros')
    pad = c.spec.padding
    pad = (int(pad),) * 2 * rank if isinstance(pad, (int, np.integer)) else tuple(int(p) for p in pad)
    if len(pad) > 2 * rank or len(pad) % 2 or min(pad) < 0:
        raise GraphError(f'{c.where}: padding={c.spec.padding} is not supported; only non-negative amounts of '
                         'the spatial axes (left, right[, top, bottom])')
    pad += (0,) * (2 * rank - len(pad))  # torch lists the last axis first: (left, right, top, bottom)
    padding = pad if rank == 1 else pad[2:] + pad[:2]  # the IR's (top, bottom, left, right)
    x = cv.layout(c.x, True, c.name)
    cv.add(c, 'Pad', [x], True, {'padding': padding}, alias=f'ZeroPadding{rank}D')
    return cv.values[c.name]


def _nearest_maps(c: Call, extent: tuple[int, ...]) -> list[np.ndarray]:
    """Per spatial axis, the input index torch's nearest resize reads for every output position.

    Computed by torch itself on a tensor of flat element indices (float64 holds them exactly), with
    the call's own size / scale_factor / mode / recompute_scale_factor, so every rule of torch's
    kernel (floor(dst * scale) in float32, the scale_factor given vs the size, 'nearest-exact')
    is reproduced; the map must be separable (it is for nearest), which is checked.
    """
    import torch
    probe = torch.arange(int(np.prod(extent)), dtype=torch.float64).reshape((1, 1) + tuple(extent))
    args = {k: getattr(c.spec, k, None) for k in ('size', 'scale_factor', 'recompute_scale_factor')}
    flat = torch.nn.functional.interpolate(probe, mode=getattr(c.spec, 'mode', 'nearest'), **args)[0, 0]
    flat = flat.numpy().astype(np.int64)
    if len(extent) == 1:
        return [flat]
    rows, cols = flat[:, 0] // extent[1], flat[0, :] % extent[1]
    if not np.array_equal(flat, rows[:, None] * extent[1] + cols[None, :]):
        raise GraphError(f'{c.where}: the resize of {c.x.shape} to {c.out} does not read rows and columns '
                         'independently; not supported')
    return [rows, cols]


def _upsample(cv: Converter, c: Call) -> Value:
    """Upsample/UpsamplingNearest2d/F.interpolate, 'nearest' or 'nearest-exact' to any size -> Resize.

    Integer factors that repeat every element become attrs scale (as Keras UpSampling); any other
    output size keeps torch's source index per axis in attrs index.
    """
    if getattr(c.spec, 'antialias', False):
        raise GraphError(f'{c.where}: antialias=True is not supported')
    mode = getattr(c.spec, 'mode', 'nearest')
    if mode not in ('nearest', 'nearest-exact'):
        raise GraphError(f"{c.where}: mode={mode!r} is not supported; only 'nearest' and 'nearest-exact'")
    extent, out = tuple(c.x.shape[1:]), tuple(c.out[1:])
    if len(extent) not in (1, 2):
        raise GraphError(f'{c.where}: resizing {c.x.shape} to {c.out} is not supported; only (C, W) or '
                         '(C, H, W) inputs')
    maps = _nearest_maps(c, extent)
    if tuple(m.size for m in maps) != out:
        raise GraphError(f'{c.where}: torch resizes {c.x.shape} to {tuple(m.size for m in maps)}, not {c.out}')
    repeat = all(o % e == 0 and np.array_equal(m, np.arange(o) // (o // e)) for m, e, o in zip(maps, extent, out))
    attrs = {'scale': tuple(o // e for e, o in zip(extent, out))} if repeat else \
        {'index': tuple(tuple(int(v) for v in m) for m in maps)}
    x = cv.layout(c.x, True, c.name)
    cv.add(c, 'Resize', [x], True, {**attrs, 'method': 'nearest'}, alias=f'UpSampling{len(extent)}D')
    return cv.values[c.name]


def _skip(cv: Converter, c: Call) -> Value:
    """Inference no-ops (Dropout, Identity, contiguous): the consumers read the input."""
    return c.x


MERGE_MODES = {'add': 'add', 'sub': 'sub', 'mul': 'mul', 'truediv': 'div', 'maximum': 'max', 'minimum': 'min'}
MERGE_SOURCES = {'add': 'Add', 'sub': 'Subtract', 'mul': 'Multiply', 'div': 'Divide', 'max': 'Maximum',
                 'min': 'Minimum'}


def _merge(cv: Converter, c: Call) -> Value:
    """Binary add/sub/mul/maximum/minimum -> Merge of two tensors, or Scale with a constant (also division)."""
    mode = MERGE_MODES[c.cls]
    a, b = c.args['input'], c.args['other']
    if cv.const(c.args.get('alpha', 1), c.where) != 1:
        raise GraphError(f'{c.where}: alpha={c.args["alpha"]} is not supported; only 1')
    va, vb = cv.tensor_or_none(a), cv.tensor_or_none(b)
    source = MERGE_SOURCES[mode]
    if va is not None and vb is not None:
        if mode == 'div':
            raise GraphError(f'{c.where}: division of two tensors is not supported')
        if va.shape != vb.shape:
            raise GraphError(f'{c.where}: inputs have shapes {va.shape} and {vb.shape}; element-wise merges need '
                             'identical shapes (no broadcasting)')
        ins = [va.name, cv.layout(vb, va.cl, c.name)]
        cv.add(c, 'Merge', ins, va.cl, {'mode': mode}, source=source)
        return cv.values[c.name]
    x, const, x_first = (va, b, True) if va is not None else (vb, a, False)
    return _scale_by_constant(cv, c, x, cv.const(const, c.where), mode, x_first, source)


def _scale_by_constant(cv: Converter, c: Call, x: Value, const: Any, mode: str, x_first: bool,
                       source: str) -> Value:
    """x (+ - * /) constant as a Scale node: the constant must be one number per channel of the IR's last axis."""
    if mode in ('max', 'min') or (mode == 'div' and not x_first):
        raise GraphError(f'{c.where}: {source.lower()} of a tensor and a constant is not supported '
                         '(only x + c, x - c, c - x, x * c, x / c)')
    value = np.asarray(_np(const), dtype=np.float64)
    batched = (1,) + x.shape
    try:
        fits = np.broadcast_shapes(value.shape, batched) == batched
    except ValueError:
        fits = False
    if not fits:
        raise GraphError(f'{c.where}: constant of shape {value.shape} does not broadcast to the tensor {batched}')
    full = np.broadcast_to(value, batched)[0]
    if x.cl:
        full = full.transpose(cl_perm(len(x.shape)))
    rows = full.reshape(-1, full.shape[-1])
    if not np.all(rows == rows[0]):
        raise GraphError(f'{c.where}: constant of shape {value.shape} varies along axes other than the channel '
                         'axis; only a number or one value per channel can be lowered (to a Scale)')
    vec = rows[0]
    ones, zeros = np.ones_like(vec), np.zeros_like(vec)
    if mode == 'div' and np.any(vec == 0):
        raise GraphError(f'{c.where}: division by zero')
    scale, bias = {'add': (ones, vec), 'sub': (ones, -vec) if x_first else (-ones, vec), 'mul': (vec, zeros),
                   'div': (1.0 / vec if mode == 'div' else ones, zeros)}[mode]
    cv.add(c, 'Scale', [x.name], x.cl, {}, {'scale': scale.astype(np.float32), 'bias': bias.astype(np.float32)},
           source=source)
    return cv.values[c.name]


def _cat(cv: Converter, c: Call) -> Value:
    """torch.cat(tensors, dim) -> Merge concat along the matching IR axis (negative, per sample)."""
    tensors = c.args['tensors']
    if not isinstance(tensors, (list, tuple)) or not tensors:
        raise GraphError(f'{c.where}: expected a list of tensors')
    values = [cv.tensor_or_none(t) for t in tensors]
    if any(v is None for v in values):
        raise GraphError(f'{c.where}: concatenating a constant tensor is not supported; only model tensors')
    if len(values) == 1:
        return values[0]
    first = values[0]
    rank = len(first.shape)
    axis = _axis(cv.const(c.args.get('dim', 0), c.where), rank + 1, c.where, 'cat')
    ins = [cv.layout(v, first.cl, c.name) for v in values]
    ir_axis = ((axis - 1) % rank if first.cl else axis) - rank
    cv.add(c, 'Merge', ins, first.cl, {'mode': 'concat', 'axis': ir_axis}, source='Concatenate')
    return cv.values[c.name]


MODULE_HANDLERS: dict[str, Callable[[Any, Call], Value]] = {
    'Linear': _linear,
    'Conv1d': _conv, 'Conv2d': _conv,
    'BatchNorm1d': _batch_norm, 'BatchNorm2d': _batch_norm,
    **{cls: _activation for cls in ACTIVATION_MODULES},
    'PReLU': _prelu,
    'Softmax': _softmax,
    'MaxPool1d': _pool, 'MaxPool2d': _pool, 'AvgPool1d': _pool, 'AvgPool2d': _pool,
    'AdaptiveAvgPool1d': _adaptive_pool, 'AdaptiveAvgPool2d': _adaptive_pool,
    'AdaptiveMaxPool1d': _adaptive_pool, 'AdaptiveMaxPool2d': _adaptive_pool,
    'Flatten': _reshape, 'Unflatten': _reshape,
    **{f'{kind}Pad{d}d': _pad for kind in ('Zero', 'Constant') for d in (1, 2)},
    'Upsample': _upsample, 'UpsamplingNearest2d': _upsample,
    **{cls: _skip for cls in SKIPPED_MODULES},
}

#: classes whose functional form carries its parameters as arguments: built as a namespace, not a module
_NAMESPACE_CLASSES = ('Linear', 'Conv1d', 'Conv2d', 'PReLU', 'BatchNorm', 'Pad', 'Upsample')


@dataclass(frozen=True)
class Fn:
    """A supported function or method: its torch class (or label), parameter names and handler."""

    cls: str
    params: tuple[str, ...]
    handler: Callable[[Any, Call], Value] | None = None  # None: the module handler of `cls`
    unary: bool = True  # its 'input' argument must be a model tensor (merges and cat take any operands)


@lru_cache(maxsize=1)
def function_table() -> dict[Any, Fn]:
    """call_function targets -> Fn (built on first use, so torch is imported lazily)."""
    import torch
    import torch.nn.functional as F

    pool = ('input', 'kernel_size', 'stride', 'padding')
    table: dict[Any, Fn] = {}

    def add(targets: list[Any], fn: Fn) -> None:
        for target in targets:
            table[target] = fn

    add([F.relu, torch.relu], Fn('ReLU', ('input', 'inplace')))
    add([F.relu6], Fn('ReLU6', ('input', 'inplace')))
    add([F.leaky_relu], Fn('LeakyReLU', ('input', 'negative_slope', 'inplace')))
    add([F.elu], Fn('ELU', ('input', 'alpha', 'inplace')))
    add([F.selu, torch.selu], Fn('SELU', ('input', 'inplace')))
    add([torch.sigmoid], Fn('Sigmoid', ('input',)))
    add([torch.tanh], Fn('Tanh', ('input',)))
    add([F.softsign], Fn('Softsign', ('input',)))
    add([F.softplus], Fn('Softplus', ('input', 'beta', 'threshold')))
    add([F.gelu], Fn('GELU', ('input', 'approximate')))
    add([F.hardtanh], Fn('Hardtanh', ('input', 'min_val', 'max_val', 'inplace')))
    add([F.hardsigmoid], Fn('Hardsigmoid', ('input', 'inplace')))
    add([F.prelu], Fn('PReLU', ('input', 'weight')))
    add([F.threshold, torch.threshold], Fn('Threshold', ('input', 'threshold', 'value', 'inplace')))
    add([F.softmax], Fn('Softmax', ('input', 'dim', '_stacklevel', 'dtype')))
    add([torch.softmax], Fn('Softmax', ('input', 'dim', 'dtype')))
    add([F.linear], Fn('Linear', ('input', 'weight', 'bias')))
    add([F.conv1d], Fn('Conv1d', ('input', 'weight', 'bias', 'stride', 'padding', 'dilation', 'groups')))
    add([F.conv2d], Fn('Conv2d', ('input', 'weight', 'bias', 'stride', 'padding', 'dilation', 'groups')))
    add([F.batch_norm], Fn('BatchNorm', ('input', 'running_mean', 'running_var', 'weight', 'bias', 'training',
                                          'momentum', 'eps')))
    add([F.max_pool1d], Fn('MaxPool1d', pool + ('dilation', 'ceil_mode', 'return_indices')))
    add([F.max_pool2d], Fn('MaxPool2d', pool + ('dilation', 'ceil_mode', 'return_indices')))
    add([F.avg_pool1d], Fn('AvgPool1d', pool + ('ceil_mode', 'count_include_pad')))
    add([F.avg_pool2d], Fn('AvgPool2d', pool + ('ceil_mode', 'count_include_pad', 'divisor_override')))
    add([F.adaptive_avg_pool1d], Fn('AdaptiveAvgPool1d', ('input', 'output_size')))
    add([F.adaptive_avg_pool2d], Fn('AdaptiveAvgPool2d', ('input', 'output_size')))
    add([F.adaptive_max_pool1d], Fn('AdaptiveMaxPool1d', ('input', 'output_size', 'return_indices')))
    add([F.adaptive_max_pool2d], Fn('AdaptiveMaxPool2d', ('input', 'output_size', 'return_indices')))
    add([F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout],
        Fn('Dropout', ('input', 'p', 'training', 'inplace'), _skip))
    add([F.pad], Fn('Pad', ('input', 'pad', 'mode', 'value')))
    add([F.interpolate], Fn('Upsample', ('input', 'size', 'scale_factor', 'mode', 'align_corners',
                                         'recompute_scale_factor', 'antialias')))
    add([torch.flatten], Fn('Flatten', ('input', 'start_dim', 'end_dim'), _reshape))
    add([torch.reshape], Fn('Reshape', ('input', 'shape'), _reshape))
    add([torch.squeeze], Fn('squeeze', ('input', 'dim'), _squeeze))
    add([torch.unsqueeze], Fn('unsqueeze', ('input', 'dim'), _squeeze))
    for name in ('add', 'sub', 'mul', 'truediv'):
        add([getattr(operator, name), getattr(operator, 'i' + name)], Fn(name, ('input', 'other'), _merge, False))
    add([torch.add], Fn('add', ('input', 'other', 'alpha'), _merge, False))
    add([torch.sub, torch.subtract], Fn('sub', ('input', 'other', 'alpha'), _merge, False))
    add([torch.mul, torch.multiply], Fn('mul', ('input', 'other'), _merge, False))
    add([torch.maximum], Fn('maximum', ('input', 'other'), _merge, False))
    add([torch.minimum], Fn('minimum', ('input', 'other'), _merge, False))
    add([torch.cat, torch.concat, torch.concatenate], Fn('cat', ('tensors', 'dim'), _cat, False))
    return table


#: call_method names (Tensor methods) -> Fn; the tensor itself is the 'input' argument
METHODS: dict[str, Fn] = {
    'relu': Fn('ReLU', ('input',)),
    'sigmoid': Fn('Sigmoid', ('input',)),
    'tanh': Fn('Tanh', ('input',)),
    'softmax': Fn('Softmax', ('input', 'dim', 'dtype')),
    'view': Fn('Reshape', ('input', '*shape'), _reshape),
    'reshape': Fn('Reshape', ('input', '*shape'), _reshape),
    'flatten': Fn('Flatten', ('input', 'start_dim', 'end_dim'), _reshape),
    'squeeze': Fn('squeeze', ('input', 'dim'), _squeeze),
    'unsqueeze': Fn('unsqueeze', ('input', 'dim'), _squeeze),
    'contiguous': Fn('contiguous', ('input', 'memory_format'), _skip),
    'add': Fn('add', ('input', 'other', 'alpha'), _merge, False),
    'sub': Fn('sub', ('input', 'other', 'alpha'), _merge, False),
    'mul': Fn('mul', ('input', 'other'), _merge, False),
}

#: what the front end accepts, for error messages and the documentation
SUPPORTED_MODULES: tuple[str, ...] = tuple(sorted(MODULE_HANDLERS))
SUPPORTED_METHODS: tuple[str, ...] = tuple(f'Tensor.{m}' for m in sorted(METHODS))


def supported_functions() -> list[str]:
    """Qualified names of the supported call_function targets (imports torch)."""
    return sorted({qualified_name(t) for t in function_table()})


def bind(node: Any, fn: Fn, where: str) -> dict[str, Any]:
    """The fx node's positional and keyword arguments by parameter name (GraphError for unknown ones)."""
    params = fn.params
    if params and params[-1].startswith('*'):  # view(*shape): the rest of the positional arguments
        bound = dict(zip(params[:-1], node.args))
        bound[params[-1][1:]] = tuple(node.args[len(params) - 1:])
    else:
        if len(node.args) > len(params):
            raise GraphError(f'{where}: takes at most {len(params)} arguments {list(params)}, got {len(node.args)}')
        bound = dict(zip(params, node.args))
    for key, value in node.kwargs.items():
        if key not in params and f'*{key}' not in params:
            raise GraphError(f'{where}: argument {key!r} is not supported; accepted: {list(params)}')
        bound[key] = value
    return bound


def handler_for(cls: str) -> Callable[[Any, Call], Value]:
    """The handler of a torch class name (functional batch_norm and pad included)."""
    return {'BatchNorm': _batch_norm, 'Pad': _pad}.get(cls) or MODULE_HANDLERS[cls]


def functional_module(fn: Fn, values: dict[str, Any], where: str) -> Any:
    """The module a functional call stands for, built from its constant arguments (parameters as attributes).

    F.linear/F.conv*/F.prelu/F.batch_norm give a namespace with the module's attribute names; the others
    construct the torch.nn module itself (e.g. F.max_pool2d(x, 2) -> nn.MaxPool2d(2)), so defaults match.
    """
    import torch

    values = {k: v for k, v in values.items() if k not in ('inplace', '_stacklevel')}
    if values.pop('dtype', None) is not None:
        raise GraphError(f'{where}: a dtype argument is not supported')
    if fn.cls in _NAMESPACE_CLASSES:
        if fn.cls == 'BatchNorm' and values.get('training'):
            raise GraphError(f'{where}: batch_norm with training=True uses batch statistics; not supported')
        defaults = {'bias': None, 'stride': 1, 'padding': 0, 'dilation': 1, 'groups': 1, 'padding_mode': 'zeros',
                    'weight': None, 'eps': 1e-5}
        if fn.cls == 'Pad':  # F.pad(x, pad, mode, value)
            values['padding'] = values.pop('pad')
        return SimpleNamespace(**{**defaults, **values})
    return getattr(torch.nn, fn.cls)(**values)
