"""PyTorch transformer layers: LayerNorm, MultiheadAttention, TransformerEncoderLayer, einsum, SDPA.

The walk's hook `lower_attention` (torch.py) lowers, all in torch's layout (sequence, features):

* ``nn.LayerNorm`` / ``F.layer_norm`` -> ``LayerNorm`` over the trailing ``normalized_shape`` axes
  (``elementwise_affine=False`` or ``bias=False`` give center/scale False).
* ``nn.MultiheadAttention(query, key, value)`` -> the nodes Keras' MultiHeadAttention gives
  (keras_attention.py): ``<name>_query``/``_key``/``_value`` (EinsumDense; torch's
  1/sqrt(head_dim) folded into the query kernel and bias), ``<name>_scores`` (Einsum of key and
  query), ``<name>_mask`` (BiasAdd of the finite values of a constant float ``attn_mask``, when any is
  nonzero), ``<name>_softmax`` (Softmax over the keys, or MaskedSoftmax for a constant ``attn_mask``:
  boolean True or float -inf = masked), ``<name>_combine`` (Einsum) and ``<name>_out`` (output
  EinsumDense). The module returns (output, weights): only the output may be read (the weights
  output is refused by name). ``batch_first`` either way; ``kdim``/``vdim``; ``bias`` on or off;
  ``key_padding_mask``, ``add_bias_kv``, ``add_zero_attn`` and per-sample 3-D masks are refused.
* ``nn.TransformerEncoderLayer`` (eval) -> ``<name>_norm1``, the attention ``<name>_self_attn_*``,
  ``<name>_add1`` (Merge add), ``<name>_linear1`` (Dense), ``<name>_activation`` (relu or gelu),
  ``<name>_linear2``, ``<name>_add2``, ``<name>_norm2``; the last node takes the module's name.
  ``norm_first`` either way; activation relu or gelu (erf; nn.GELU(approximate='tanh') is refused: torch's
  eval/no_grad fast path computes the erf form for it, its other path the tanh form).
* ``torch.einsum`` of two model tensors -> ``Einsum``; of a model tensor and a constant ->
  ``EinsumDense`` without bias. The batch letter must lead every model operand and the output.
* ``F.scaled_dot_product_attention(q, k, v)`` -> ``<name>_scores`` (Einsum), ``<name>_scale``
  (Scale by ``scale``, default 1/sqrt(E)), ``<name>_mask`` (BiasAdd of a float mask's finite values),
  ``<name>_softmax`` (Softmax or MaskedSoftmax for ``is_causal`` or a constant ``attn_mask``: boolean
  True or float finite = kept, as torch) and ``<name>`` (Einsum); dropout_p must be 0.

A mask computed from the model inputs is refused by name (only constant masks are accepted).
"""

from __future__ import annotations

import operator
import string
from typing import TYPE_CHECKING, Any

import numpy as np

from ..ir import GraphError
from ..semantics.spec import make_node
from .keras_attention import per_sample_equation
from .torch_layers import Value, _np
from .torch_rnn import _input_tensor

if TYPE_CHECKING:
    from .torch import Converter

ATTENTION_MODULES = ('LayerNorm', 'MultiheadAttention', 'TransformerEncoderLayer')
ATTENTION_FUNCTIONS = ('torch.einsum', 'torch.nn.functional.layer_norm',
                       'torch.nn.functional.scaled_dot_product_attention')

ATTENTION_WEIGHTS = object()  # the second element of a MultiheadAttention's output tuple: refused when read


# --------------------------------------------------------------------------- small helpers


def _add(cv: Converter, name: str, op: str, inputs: list[str], shape: tuple[int, ...], source: str,
         attrs: dict[str, Any] | None = None, weights: dict[str, np.ndarray] | None = None) -> str:
    """Add one IR node in torch's layout; returns its name."""
    cv.graph.add(make_node(name, op, inputs, tuple(shape), source=source, attrs=dict(attrs or {}),
                           weights={k: np.ascontiguousarray(v, dtype=np.float32) for k, v in (weights or {}).items()}))
    return name


def _record(cv: Converter, n: Any, name: str, shape: tuple[int, ...], batch_second: bool) -> None:
    """Record IR node `name` as fx node n's value (with the batch on axis 1 when batch_second)."""
    cv.values[n.name] = Value(name, tuple(shape), False)
    if batch_second:
        cv.batch_second.add(n.name)


def _tensor(cv: Converter, arg: Any, batch_second: bool, what: str, where: str,
            consumer: str = 'attention') -> tuple[str, tuple[int, ...]]:
    """The IR node (torch's layout) and per-sample shape of a model tensor argument."""
    v = _input_tensor(cv, arg, batch_second, what, where)
    return cv.layout(v, False, consumer), v.shape


def _mask_parts(mask: Any, shape: tuple[int, int], where: str,
                true_keeps: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A torch attention mask as (kept booleans or None: all kept, additive bias or None: none).

    Bool: True masks for nn.MultiheadAttention, True keeps (`true_keeps`) for F.scaled_dot_product_attention.
    Float: added to the scores; -inf masks the key, every finite value is the additive bias."""
    if mask is None:
        return None, None
    m = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, 'detach') else mask)
    if m.shape != shape:
        raise GraphError(f'{where}: attn_mask of shape {m.shape} is not supported; only a constant (L, S) = {shape} '
                         'mask shared by every sample and head')
    if m.dtype == bool:
        keep, bias = (m if true_keeps else ~m), None
    elif np.any(np.isnan(m) | np.isposinf(m)):
        raise GraphError(f'{where}: a float attn_mask with NaN or +inf is not supported; only finite values '
                         '(an additive bias) and -inf (a masked key)')
    else:
        keep = ~np.isneginf(m)
        bias = np.where(keep, m, 0.0).astype(np.float32)
        bias = bias if np.any(bias != 0) else None
    return (None if keep.all() else keep), bias


def _constant_mask(cv: Converter, arg: Any, where: str, what: str) -> Any:
    """The constant value of a mask argument; a mask computed from the model inputs is refused by name."""
    if getattr(arg, 'name', None) in cv.values:
        raise GraphError(f'{where}: {what} {arg.name!r} is computed from the model inputs; only a constant (L, S) '
                         'mask is accepted (boolean, or float with 0/-inf and additive values), or is_causal')
    return cv.const(arg, where)


def _scores_bias(cv: Converter, name: str, scores: str, shape: tuple[int, ...], bias: np.ndarray | None,
                 source: str) -> str:
    """The scores plus an additive float mask (a BiasAdd node `name`), or the scores themselves."""
    if bias is None:
        return scores
    return _add(cv, name, 'BiasAdd', [scores], shape, source, {}, {'bias': bias})


def _softmax(cv: Converter, name: str, scores: str, shape: tuple[int, ...], keep: np.ndarray | None,
             source: str) -> str:
    """Softmax over the keys (the last axis), masked where `keep` is given."""
    if keep is None:
        return _add(cv, name, 'Softmax', [scores], shape, source, {'axis': -1})
    if not keep.any(axis=-1).all():
        raise GraphError(f'layer {name!r}: the attention mask masks every key of a query row; each row needs one key')
    return _add(cv, name, 'MaskedSoftmax', [scores], shape, source, {'mask': keep.astype(np.int64).tolist()})


def _causal(length: int, keys: int) -> np.ndarray:
    """torch's is_causal mask: query i sees keys j <= i (top-left aligned)."""
    return np.tril(np.ones((length, keys), dtype=bool))


# --------------------------------------------------------------------------- LayerNorm


def _layer_norm_node(cv: Converter, name: str, x: str, shape: tuple[int, ...], normalized: tuple[int, ...],
                     weight: Any, bias: Any, eps: float, where: str) -> str:
    """A LayerNorm node over the trailing `normalized` axes (weight/bias None: scale/center off)."""
    if not normalized or tuple(shape[len(shape) - len(normalized):]) != normalized or len(normalized) > len(shape):
        raise GraphError(f'{where}: normalized_shape={normalized} is not the trailing part of the per-sample '
                         f'shape {shape}')
    gamma = _np(weight).reshape(normalized) if weight is not None else np.ones(normalized, np.float32)
    beta = _np(bias).reshape(normalized) if bias is not None else np.zeros(normalized, np.float32)
    attrs = {'axes': tuple(range(-len(normalized), 0)), 'epsilon': float(eps), 'center': bias is not None,
             'scale': weight is not None}
    return _add(cv, name, 'LayerNorm', [x], shape, 'LayerNorm', attrs, {'gamma': gamma, 'beta': beta})


def _layer_norm_module(cv: Converter, n: Any, m: Any, where: str) -> None:
    """nn.LayerNorm(x) -> LayerNorm (the batch stays on the axis the input has it)."""
    if len(n.args) != 1 or n.kwargs:
        raise GraphError(f'{where}: expected one tensor argument, got {len(n.args)} and {dict(n.kwargs)}')
    second = getattr(n.args[0], 'name', None) in cv.batch_second
    x, shape = _tensor(cv, n.args[0], second, 'the input', where, n.name)
    _layer_norm_node(cv, n.name, x, shape, tuple(int(d) for d in m.normalized_shape), m.weight, m.bias, m.eps, where)
    _record(cv, n, n.name, shape, second)


def _layer_norm_function(cv: Converter, n: Any, where: str) -> None:
    """F.layer_norm(x, normalized_shape, weight, bias, eps) with constant parameters -> LayerNorm."""
    params = ('input', 'normalized_shape', 'weight', 'bias', 'eps')
    args = {**dict(zip(params, n.args)), **n.kwargs}
    if set(args) - set(params):
        raise GraphError(f'{where}: arguments {sorted(set(args) - set(params))} are not supported; accepted: {params}')
    second = getattr(args['input'], 'name', None) in cv.batch_second
    x, shape = _tensor(cv, args['input'], second, 'the input', where, n.name)
    normalized = cv.const(args['normalized_shape'], where)
    normalized = (int(normalized),) if isinstance(normalized, int) else tuple(int(d) for d in normalized)
    weight, bias = (cv.const(args.get(k), where) for k in ('weight', 'bias'))
    _layer_norm_node(cv, n.name, x, shape, normalized, weight, bias, cv.const(args.get('eps', 1e-5), where), where)
    _record(cv, n, n.name, shape, second)


# --------------------------------------------------------------------------- multi-head attention


def _projections(m: Any) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(weight (E, in), bias or None) of the query, key and value projections of an nn.MultiheadAttention."""
    e = int(m.embed_dim)
    if m._qkv_same_embed_dim:
        w = _np(m.in_proj_weight)
        weights = [w[:e], w[e:2 * e], w[2 * e:]]
    else:
        weights = [_np(m.q_proj_weight), _np(m.k_proj_weight), _np(m.v_proj_weight)]
    if m.in_proj_bias is None:
        return [(w, None) for w in weights]
    b = _np(m.in_proj_bias)
    return [(w, b[k * e:(k + 1) * e]) for k, w in enumerate(weights)]


def _projection(cv: Converter, name: str, x: str, shape: tuple[int, ...], weight: np.ndarray, bias: Any,
                heads: int, factor: float, source: str) -> tuple[int, ...]:
    """An EinsumDense (L, in) -> (L, heads, head_dim) from a torch (heads * head_dim, in) weight, times factor."""
    head_dim = weight.shape[0] // heads
    kernel = weight.T.reshape(shape[-1], heads, head_dim) * np.float32(factor)
    out = (shape[0], heads, head_dim)
    b = np.zeros((heads, head_dim), np.float32) if bias is None else bias.reshape(heads, head_dim) * np.float32(factor)
    _add(cv, name, 'EinsumDense', [x], out, source, {'equation': 'bc,cde->bde', 'use_bias': bias is not None},
         {'kernel': kernel, 'bias': np.broadcast_to(b, out)})
    return out


def _check_mha(m: Any, where: str) -> None:
    """Refuse, by name, the nn.MultiheadAttention settings without a lowering."""
    if m.bias_k is not None or m.bias_v is not None:
        raise GraphError(f'{where}: add_bias_kv=True is not supported; only attention over the given keys')
    if m.add_zero_attn:
        raise GraphError(f'{where}: add_zero_attn=True is not supported')
    if m.dropout and m.training:
        raise GraphError(f'{where}: dropout in training mode is not supported (convert in eval mode)')


def attention_nodes(cv: Converter, m: Any, name: str, q: tuple[str, tuple[int, ...]], k: tuple[str, tuple[int, ...]],
                    v: tuple[str, tuple[int, ...]], mask: tuple[np.ndarray | None, np.ndarray | None], out_name: str,
                    where: str) -> str:
    """The nodes of one nn.MultiheadAttention over (L, E) query and (S, kdim)/(S, vdim) key/value nodes; `mask`:
    (kept keys, additive bias) as _mask_parts gives them."""
    _check_mha(m, where)
    heads, source = int(m.num_heads), 'MultiheadAttention'
    head_dim = int(m.embed_dim) // heads
    keep, bias = mask
    parts = {p: cv.fresh(f'{name}_{p}') for p in ('query', 'key', 'value', 'scores', 'mask', 'softmax', 'combine')}
    (wq, bq), (wk, bk), (wv, bv) = _projections(m)
    q_out = _projection(cv, parts['query'], *q, wq, bq, heads, float(head_dim) ** -0.5, source)
    k_out = _projection(cv, parts['key'], *k, wk, bk, heads, 1.0, source)
    v_out = _projection(cv, parts['value'], *v, wv, bv, heads, 1.0, source)
    scores = (heads, q_out[0], k_out[0])
    _add(cv, parts['scores'], 'Einsum', [parts['key'], parts['query']], scores, source, {'equation': 'ecd,bcd->cbe'})
    biased = _scores_bias(cv, parts['mask'], parts['scores'], scores, bias, source)
    _softmax(cv, parts['softmax'], biased, scores, keep, source)
    combined = (q_out[0], heads, head_dim)
    _add(cv, parts['combine'], 'Einsum', [parts['softmax'], parts['value']], combined, source,
         {'equation': 'cbe,ecd->bcd'})
    wo = _np(m.out_proj.weight)
    use_bias = m.out_proj.bias is not None
    out = (q_out[0], wo.shape[0])
    bias = _np(m.out_proj.bias) if use_bias else np.zeros(wo.shape[0], np.float32)
    _add(cv, out_name, 'EinsumDense', [parts['combine']], out, source,
         {'equation': 'bcd,cde->be', 'use_bias': use_bias},
         {'kernel': wo.T.reshape(heads, head_dim, wo.shape[0]), 'bias': np.broadcast_to(bias, out)})
    return out_name


def _mha_call(cv: Converter, n: Any, m: Any, where: str) -> None:
    """nn.MultiheadAttention(query, key, value, ...) -> attention nodes; the output tuple's weights refused."""
    params = ('query', 'key', 'value', 'key_padding_mask', 'need_weights', 'attn_mask', 'average_attn_weights',
              'is_causal')
    args = {**dict(zip(params, n.args)), **n.kwargs}
    if set(args) - set(params):
        raise GraphError(f'{where}: arguments {sorted(set(args) - set(params))} are not supported')
    if args.get('key_padding_mask') is not None:
        raise GraphError(f'{where}: key_padding_mask is not supported (the sequences have a fixed length); '
                         'use attn_mask for a constant mask')
    second = not m.batch_first
    q, k, v = (_tensor(cv, args[p], second, p, where, n.name) for p in ('query', 'key', 'value'))
    mask = _constant_mask(cv, args.get('attn_mask'), where, 'attn_mask')
    parts = _mask_parts(mask, (q[1][0], k[1][0]), where)
    if cv.const(args.get('is_causal', False), where) and mask is None:
        raise GraphError(f'{where}: is_causal=True without attn_mask: torch needs the mask too; pass attn_mask')
    name = attention_nodes(cv, m, n.name, q, k, v, parts, cv.fresh(f'{n.name}_out'), where)
    cv.tuples[n.name] = ((Value(name, cv.graph[name].shape, False), second), ATTENTION_WEIGHTS)


# --------------------------------------------------------------------------- TransformerEncoderLayer


def _encoder_activation(m: Any, where: str) -> tuple[str, dict[str, Any]]:
    """(source class, IR Activation attrs) of the feed-forward activation: relu, or the erf gelu (activation='gelu'
    is F.gelu; nn.GELU()); nn.GELU(approximate='tanh') is refused: torch's fast path ignores `approximate`."""
    import torch

    act = m.activation
    if act is torch.nn.functional.relu or isinstance(act, torch.nn.ReLU):
        return 'ReLU', {'function': 'relu'}
    if act is torch.nn.functional.gelu or isinstance(act, torch.nn.GELU) and act.approximate == 'none':
        return 'GELU', {'function': 'gelu'}
    if isinstance(act, torch.nn.GELU):  # torch's fast path (eval, no_grad) computes the erf form for any nn.GELU
        raise GraphError(f"{where}: activation nn.GELU(approximate={act.approximate!r}) is not supported: torch "
                         "computes it two ways (its eval/no_grad fast path the erf GELU, its other path the tanh "
                         "form); use activation='gelu' (erf)")
    label = getattr(act, '__name__', type(act).__name__)
    raise GraphError(f"{where}: activation {label!r} is not supported; only relu and gelu "
                     "(F.relu, F.gelu, nn.ReLU, nn.GELU)")


def _encoder_layer(cv: Converter, n: Any, m: Any, where: str) -> None:
    """nn.TransformerEncoderLayer(src[, src_mask, src_key_padding_mask, is_causal]) in eval mode."""
    params = ('src', 'src_mask', 'src_key_padding_mask', 'is_causal')
    args = {**dict(zip(params, n.args)), **n.kwargs}
    if set(args) - set(params):
        raise GraphError(f'{where}: arguments {sorted(set(args) - set(params))} are not supported')
    if args.get('src_key_padding_mask') is not None:
        raise GraphError(f'{where}: src_key_padding_mask is not supported (the sequences have a fixed length)')
    act_source, act_attrs = _encoder_activation(m, where)
    second, name = not m.self_attn.batch_first, n.name
    x, shape = _tensor(cv, args['src'], second, 'src', where, n.name)
    mask = _constant_mask(cv, args.get('src_mask'), where, 'src_mask')
    if cv.const(args.get('is_causal', False), where) and mask is None:
        raise GraphError(f'{where}: is_causal=True without src_mask: torch needs the mask too; pass src_mask')
    parts = _mask_parts(mask, (shape[0], shape[0]), where)
    fresh = {p: cv.fresh(f'{name}_{p}') for p in ('norm1', 'add1', 'linear1', 'activation', 'linear2', 'add2', 'norm2')}

    def norm(key: str, inp: str, out_name: str) -> str:
        ln = getattr(m, key)
        return _layer_norm_node(cv, out_name, inp, shape, tuple(ln.normalized_shape), ln.weight, ln.bias, ln.eps, where)

    def attend(inp: str) -> str:
        return attention_nodes(cv, m.self_attn, f'{name}_self_attn', (inp, shape), (inp, shape), (inp, shape), parts,
                               cv.fresh(f'{name}_self_attn'), where)

    def feed_forward(inp: str) -> str:
        hidden = (shape[0], int(m.linear1.out_features))
        _dense(cv, fresh['linear1'], inp, hidden, m.linear1)
        _add(cv, fresh['activation'], 'Activation', [fresh['linear1']], hidden, act_source, act_attrs)
        return _dense(cv, fresh['linear2'], fresh['activation'], shape, m.linear2)

    def merge(a: str, b: str, out_name: str) -> str:
        return _add(cv, out_name, 'Merge', [a, b], shape, 'Add', {'mode': 'add'})

    if m.norm_first:  # x + sa(norm1(x)); then + ff(norm2(x))
        h = merge(x, attend(norm('norm1', x, fresh['norm1'])), fresh['add1'])
        out = merge(h, feed_forward(norm('norm2', h, fresh['norm2'])), name)
    else:  # norm1(x + sa(x)); then norm2(x + ff(x))
        h = norm('norm1', merge(x, attend(x), fresh['add1']), fresh['norm1'])
        out = norm('norm2', merge(h, feed_forward(h), fresh['add2']), name)
    _record(cv, n, out, shape, second)


def _dense(cv: Converter, name: str, x: str, out: tuple[int, ...], linear: Any) -> str:
    """A Dense over the last axis from an nn.Linear."""
    use_bias = linear.bias is not None
    bias = _np(linear.bias) if use_bias else np.zeros(linear.out_features, np.float32)
    return _add(cv, name, 'Dense', [x], out, 'Linear', {'use_bias': use_bias},
                {'kernel': _np(linear.weight).T, 'bias': bias})


# --------------------------------------------------------------------------- einsum and SDPA


def _einsum(cv: Converter, n: Any, where: str) -> None:
    """torch.einsum(eq, a, b): Einsum of two model tensors, EinsumDense of a model tensor and a constant."""
    equation, *operands = n.args
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])
    if n.kwargs or not isinstance(equation, str) or len(operands) != 2:
        raise GraphError(f'{where}: only torch.einsum(equation, a, b) with two operands is supported')
    equation = equation.replace(' ', '')
    if '->' not in equation:
        raise GraphError(f'{where}: equation {equation!r} needs an explicit output ("...->...")')
    lhs, out = equation.split('->')
    terms = lhs.split(',')
    is_tensor = [getattr(o, 'name', None) in cv.values for o in operands]
    if any(getattr(o, 'name', None) in cv.batch_second for o in operands):
        raise GraphError(f'{where}: operands with the batch on axis 1 are not supported; move the batch first')
    if all(is_tensor):
        names, shapes = zip(*(_tensor(cv, o, False, f'operand {k}', where, n.name)
                              for k, o in enumerate(operands)))
        per_sample = per_sample_equation(equation, [len(s) for s in shapes], where)
        _add(cv, n.name, 'Einsum', list(names), _out_shape(cv, n), 'einsum', {'equation': per_sample})
    else:
        k = is_tensor.index(True)
        x, shape = _tensor(cv, operands[k], False, f'operand {k}', where, n.name)
        kernel = _np(cv.const(operands[1 - k], where))
        ordered = f'{terms[k]},{terms[1 - k]}->{out}'
        per_sample = per_sample_equation(ordered, [len(shape)], where)
        if terms[k][:1] in terms[1 - k]:
            raise GraphError(f'{where}: the constant operand uses the batch letter {terms[k][:1]!r}')
        out_shape = _out_shape(cv, n)
        _add(cv, n.name, 'EinsumDense', [x], out_shape, 'einsum', {'equation': per_sample, 'use_bias': False},
             {'kernel': kernel, 'bias': np.zeros(out_shape, np.float32)})
    _record(cv, n, n.name, _out_shape(cv, n), False)


def _out_shape(cv: Converter, n: Any) -> tuple[int, ...]:
    """torch's per-sample output shape of fx node n (from the first probe)."""
    return tuple(int(d) for d in cv.probes[0][n.name].shape[1:])


def _sdpa(cv: Converter, n: Any, where: str) -> None:
    """F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale) -> Einsum, Scale,
    Softmax, Einsum."""
    params = ('query', 'key', 'value', 'attn_mask', 'dropout_p', 'is_causal', 'scale', 'enable_gqa')
    args = {**dict(zip(params, n.args)), **n.kwargs}
    if set(args) - set(params):
        raise GraphError(f'{where}: arguments {sorted(set(args) - set(params))} are not supported; accepted: {params}')
    if cv.const(args.get('dropout_p', 0.0), where) != 0:
        raise GraphError(f'{where}: dropout_p={args["dropout_p"]} is not supported; only 0')
    if cv.const(args.get('enable_gqa', False), where):
        raise GraphError(f'{where}: enable_gqa=True is not supported')
    (q, qs), (k, ks), (v, vs) = (_tensor(cv, args[p], False, p, where, n.name) for p in ('query', 'key', 'value'))
    rank = len(qs)
    if len(ks) != rank or len(vs) != rank or rank > 20:
        raise GraphError(f'{where}: query, key and value shapes {qs}, {ks}, {vs} must have the same rank')
    lead = string.ascii_lowercase[:rank - 2]
    scores_shape = qs[:-1] + (ks[-2],)
    parts = {p: cv.fresh(f'{n.name}_{p}') for p in ('scores', 'scale', 'mask', 'softmax')}
    _add(cv, parts['scores'], 'Einsum', [q, k], scores_shape, 'scaled_dot_product_attention',
         {'equation': f'{lead}xz,{lead}yz->{lead}xy'})
    scale = cv.const(args.get('scale'), where)
    scale = float(qs[-1]) ** -0.5 if scale is None else float(scale)
    factor = np.full(ks[-2], scale, np.float32)
    _add(cv, parts['scale'], 'Scale', [parts['scores']], scores_shape, 'scaled_dot_product_attention', {},
         {'scale': factor, 'bias': np.zeros_like(factor)})
    mask = _constant_mask(cv, args.get('attn_mask'), where, 'attn_mask')
    if cv.const(args.get('is_causal', False), where):
        if mask is not None:
            raise GraphError(f'{where}: attn_mask and is_causal=True together are refused by torch too')
        keep, bias = _causal(qs[-2], ks[-2]), None
    else:
        keep, bias = _mask_parts(mask, (qs[-2], ks[-2]), where, true_keeps=True)
    biased = _scores_bias(cv, parts['mask'], parts['scale'], scores_shape, bias, 'scaled_dot_product_attention')
    _softmax(cv, parts['softmax'], biased, scores_shape, keep, 'scaled_dot_product_attention')
    out = qs[:-1] + (vs[-1],)
    _add(cv, n.name, 'Einsum', [parts['softmax'], v], out, 'scaled_dot_product_attention',
         {'equation': f'{lead}xy,{lead}yz->{lead}xz'})
    _record(cv, n, n.name, out, False)


# --------------------------------------------------------------------------- the hook


def _is_function(target: Any, qualified: str) -> bool:
    """Whether an fx call_function target is the torch function of that qualified name."""
    import torch
    import torch.nn.functional as F

    table = {'torch.einsum': (torch.einsum,), 'torch.nn.functional.layer_norm': (F.layer_norm, torch.layer_norm),
             'torch.nn.functional.scaled_dot_product_attention': (F.scaled_dot_product_attention,)}
    return any(target is t for t in table[qualified])


def lower_attention(cv: Converter, n: Any, where: str) -> bool:
    """The walk's hook for transformer layers (module doc); False for other nodes."""
    if n.op == 'call_module':
        m = cv.gm.get_submodule(n.target)
        cls = type(m).__name__
        if cls not in ATTENTION_MODULES or not type(m).__module__.startswith('torch.nn'):
            return False
        {'LayerNorm': _layer_norm_module, 'MultiheadAttention': _mha_call,
         'TransformerEncoderLayer': _encoder_layer}[cls](cv, n, m, where)
        return True
    if n.op != 'call_function':
        return False
    source = cv.tuples.get(getattr(n.args[0], 'name', None), (None,)) if n.target is operator.getitem else (None,)
    if source[-1] is ATTENTION_WEIGHTS:
        if cv.const(n.args[1], where) not in (0, -2):
            raise GraphError(f'{where}: reads the attention weights of {n.args[0].name!r} (its second output); '
                             'they are not supported: call it with need_weights=False and read only the output')
        return False  # the output: torch_rnn's getitem of a tuple records it
    for qualified, lower in (('torch.einsum', _einsum), ('torch.nn.functional.layer_norm', _layer_norm_function),
                             ('torch.nn.functional.scaled_dot_product_attention', _sdpa)):
        if _is_function(n.target, qualified):
            lower(cv, n, where)
            return True
    return False
