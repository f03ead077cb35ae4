"""PyTorch nn.RNN, nn.LSTM and nn.GRU lowered onto the recurrent IR ops, outputs as torch returns them.

`add_torch_rnn` adds the nodes of one module call to a Graph: per layer and direction one
SimpleRNN/LSTM/GRU node (``'<name>_l<k>'``, the backward direction ``'<name>_l<k>_reverse'``, torch's
own suffixes), with kernel = weight_ih.T, recurrent_kernel = weight_hh.T, bias = bias_ih and
recurrent_bias = bias_hh (zeros with bias=False); GRU gates in torch's order r, z, n
(``gate_order='rzh'``, reset after the recurrent product, as torch computes it); nn.RNN's
nonlinearity tanh or relu. A backward direction runs go_backwards with its sequence aligned in
time; both directions are concatenated on the feature axis, which is the next layer's input. It
returns the names of the nodes holding torch's outputs:

* ``output``: (T, D*H), every step of the last layer (batch_first=True: per sample (T, features));
* ``h_n`` (and ``c_n`` for LSTM): (D*num_layers, H) per sample, ordered as torch orders them
  (layer 0 forward, layer 0 backward, layer 1 forward, ...); torch holds them with the batch on
  axis 1, the IR per sample: ``h_n.transpose(0, 1)`` is the IR's value;
* optional initial states ``h0`` (and ``c0``) as per-sample (D*num_layers, H) inputs, sliced per
  layer and direction (Crop + Reshape); in a model, ``torch.zeros(layers, x.size(0), H)`` built in
  forward is the zero state (the default).

Refused, naming the module and the attribute: proj_size > 0. Dropout between layers is an inference
no-op. batch_first=False changes only where torch holds the batch (the IR is per sample either way).

`lower_recurrent` is the graph walk's hook (torch.py): it lowers a module call (its tuple of
outputs kept as `Converter.tuples`), `getitem` on such tuples, indexing of the first per-sample axis
of a tensor (``out[:, -1]``, ``out[:, 2:5]``, ``h_n[-1]``; a Crop) and the transposes that move the
batch axis (``x.transpose(0, 1)``, ``x.permute(1, 0, 2)``). Tensors torch holds with the batch on
axis 1 (time-major sequences, h_n, c_n) are recorded in `Converter.batch_second`; the IR holds them
per sample all the same (torch's ``transpose(0, 1)``), and a model output of that kind is returned
batch first.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..ir import Graph, GraphError
from ..semantics.spec import make_node
from .torch_layers import Value

if TYPE_CHECKING:
    from .torch import Converter

RNN_MODULES = {'RNN': 'SimpleRNN', 'LSTM': 'LSTM', 'GRU': 'GRU'}


def _np(tensor: Any) -> np.ndarray:
    return np.asarray(tensor.detach().cpu().numpy(), dtype=np.float32)


def check_module(module: Any, where: str) -> tuple[str, int, int, int]:
    """(IR op, hidden size, layers, directions) of a supported torch RNN module, else a GraphError."""
    cls = type(module).__name__
    if cls not in RNN_MODULES:
        raise GraphError(f'{where}: {cls} is not a recurrent module; supported: {sorted(RNN_MODULES)}')
    if getattr(module, 'proj_size', 0):
        raise GraphError(f'{where}: proj_size={module.proj_size} is not supported')
    return RNN_MODULES[cls], int(module.hidden_size), int(module.num_layers), 2 if module.bidirectional else 1


def layer_fields(module: Any, layer: int, reverse: bool, where: str) -> tuple[dict, dict]:
    """(attrs, weights) of the IR node of one layer and direction."""
    op, n, _, _ = check_module(module, where)
    suffix = f'_l{layer}' + ('_reverse' if reverse else '')
    weight_ih, weight_hh = _np(getattr(module, f'weight_ih{suffix}')), _np(getattr(module, f'weight_hh{suffix}'))
    gates = weight_hh.shape[0]
    if module.bias:
        bias_ih, bias_hh = _np(getattr(module, f'bias_ih{suffix}')), _np(getattr(module, f'bias_hh{suffix}'))
    else:
        bias_ih = bias_hh = np.zeros(gates, np.float32)
    attrs: dict[str, Any] = {'units': n, 'return_sequences': True, 'go_backwards': reverse,
                             'output_order': 'time'}
    if op == 'SimpleRNN':
        if module.nonlinearity not in ('tanh', 'relu'):
            raise GraphError(f'{where}: nonlinearity={module.nonlinearity!r} is not supported; supported: tanh, relu')
        attrs['activation'] = module.nonlinearity
    if op == 'GRU':
        attrs.update(reset_after=True, gate_order='rzh')
    weights = {'kernel': np.ascontiguousarray(weight_ih.T), 'recurrent_kernel': np.ascontiguousarray(weight_hh.T),
               'bias': bias_ih, 'recurrent_bias': bias_hh}
    return attrs, weights


def state_row(graph: Graph, fresh: Callable[[str], str], source: str, k: int, total: int, n: int) -> str:
    """Row k of a per-sample (total, n) initial state input, as an (n,) node."""
    crop = fresh(f'{source}_row{k}_crop')
    graph.add(make_node(crop, 'Crop', [source], (1, n), attrs={'cropping': (k, total - 1 - k)}, source='Crop'))
    row = fresh(f'{source}_row{k}')
    graph.add(make_node(row, 'Reshape', [crop], (n,), attrs={'shape': (n,)}, source='Reshape'))
    return row


def stack_rows(graph: Graph, fresh: Callable[[str], str], name: str, rows: list[str], n: int, source: str) -> str:
    """(len(rows), n) from (n,) nodes: a Reshape each, then a concat on axis 0 (or one Reshape)."""
    parts = []
    for row in rows:
        parts.append(fresh(f'{row}_as_row'))
        graph.add(make_node(parts[-1], 'Reshape', [row], (1, n), attrs={'shape': (1, n)}, source=source))
    if len(parts) == 1:
        graph.add(make_node(name, 'Reshape', parts, (1, n), attrs={'shape': (1, n)}, source=source))
    else:
        graph.add(make_node(name, 'Merge', parts, (len(parts), n), attrs={'mode': 'concat', 'axis': 0},
                            source=source))
    return name


def add_torch_rnn(graph: Graph, module: Any, name: str, x: str, in_shape: tuple[int, ...],
                  fresh: Callable[[str], str], h0: str | None = None, c0: str | None = None) -> list[str]:
    """Add the nodes of one call of a torch RNN module; returns [output, h_n] (+ [c_n] for LSTM)."""
    cls = type(module).__name__
    where = f'module {name!r} ({cls})'
    op, n, layers, directions = check_module(module, where)
    if len(in_shape) != 2 or in_shape[1] != module.input_size:
        raise GraphError(f'{where}: needs a per-sample (time, {module.input_size}) input, got {in_shape}')
    if (c0 is not None) != (op == 'LSTM' and h0 is not None):
        raise GraphError(f'{where}: an LSTM takes both initial states (h0, c0) or neither; other modules only h0')
    steps, source = in_shape[0], x
    finals: dict[str, list[str]] = {'h': [], 'c': []}
    for layer in range(layers):
        outputs = []
        for d in range(directions):
            attrs, weights = layer_fields(module, layer, d == 1, where)
            node = fresh(f'{name}_l{layer}' + ('_reverse' if d else ''))
            k = layer * directions + d
            inputs = [source]
            if h0 is not None:
                inputs.append(state_row(graph, fresh, h0, k, layers * directions, n))
            if c0 is not None:
                inputs.append(state_row(graph, fresh, c0, k, layers * directions, n))
            graph.add(make_node(node, op, inputs, (steps, n), attrs=attrs, weights=weights, source=cls))
            parts = ['seq', 'h'] + (['c'] if op == 'LSTM' else [])
            selects = {}
            for index, part in enumerate(parts):
                selects[part] = fresh(f'{node}_{part}')
                graph.add(make_node(selects[part], 'Select', [node], (steps, n) if part == 'seq' else (n,),
                                    attrs={'index': index}, source='Select'))
            outputs.append(selects['seq'])
            finals['h'].append(selects['h'])
            if op == 'LSTM':
                finals['c'].append(selects['c'])
        if directions == 1:
            source = outputs[0]
        else:
            source = fresh(f'{name}_l{layer}_out')
            graph.add(make_node(source, 'Merge', outputs, (steps, 2 * n), attrs={'mode': 'concat', 'axis': -1},
                                source=cls))
    result = [source, stack_rows(graph, fresh, fresh(f'{name}_h_n'), finals['h'], n, cls)]
    if op == 'LSTM':
        result.append(stack_rows(graph, fresh, fresh(f'{name}_c_n'), finals['c'], n, cls))
    return result


# --------------------------------------------------------------------------- the graph walk's hook
#: a leaf of a module's outputs: the Value and whether torch holds it with the batch on axis 1
Leaf = tuple[Value, bool]


def per_sample_shape(first: Any, second: Any, batch_axis: int, batches: tuple[int, int], where: str) -> tuple:
    """torch's shape without the batch axis, checked on both probes (GraphError if the batch is elsewhere)."""
    dims = [tuple(int(d) for d in t.shape) for t in (first, second)]
    ok = all(len(d) > batch_axis and d[batch_axis] == b for d, b in zip(dims, batches))
    rest = [d[:batch_axis] + d[batch_axis + 1:] for d in dims]
    if not ok or rest[0] != rest[1] or not rest[0]:
        raise GraphError(f'{where}: expected the batch on axis {batch_axis}, got shapes {dims[0]} and {dims[1]} for '
                         f'batches {batches}')
    return rest[0]


def _is_tensor_node(cv: Converter, arg: Any) -> bool:
    return hasattr(arg, 'name') and arg.name in cv.values


def _input_tensor(cv: Converter, arg: Any, batch_second: bool, what: str, where: str) -> Value:
    """The Value of a tensor argument torch holds with the batch on axis 1 (batch_second) or 0."""
    if not _is_tensor_node(cv, arg):
        raise GraphError(f'{where}: {what} must be a tensor computed from the model inputs, got {arg!r}')
    if (arg.name in cv.batch_second) != batch_second:
        raise GraphError(f'{where}: {what} {arg.name!r} has the batch on axis {0 if batch_second else 1}, the module '
                         f'expects it on axis {1 if batch_second else 0}')
    return cv.values[arg.name]


def lower_rnn_call(cv: Converter, n: Any, module: Any, where: str) -> None:
    """A call of nn.RNN/LSTM/GRU: its nodes, and its outputs as a tuple (output, h_n) or (output, (h_n, c_n))."""
    op, n_units, layers, directions = check_module(module, where)
    args = list(n.args) + ([n.kwargs['hx']] if 'hx' in n.kwargs else [])
    if set(n.kwargs) - {'hx'} or not 1 <= len(args) <= 2:
        raise GraphError(f'{where}: expected (input) or (input, hx), got {len(n.args)} arguments and {dict(n.kwargs)}')
    x = _input_tensor(cv, args[0], not module.batch_first, 'the input', where)
    states: list[str] = []
    hx = args[1] if len(args) == 2 else None
    if hx is not None:
        parts = list(hx) if isinstance(hx, (tuple, list)) else [hx]
        if len(parts) != (2 if op == 'LSTM' else 1):
            raise GraphError(f'{where}: hx must be (h_0, c_0) for an LSTM and h_0 for RNN/GRU')
        zeros = [getattr(part, 'name', None) in cv.zeros for part in parts]
        if any(zeros) and not all(zeros):
            raise GraphError(f'{where}: give every initial state from the model inputs, or every one as torch.zeros')
        for k, part in enumerate(parts if not any(zeros) else []):
            value = _input_tensor(cv, part, True, f'initial state {k}', where)
            states.append(cv.layout(value, False, n.name))
    names = add_torch_rnn(cv.graph, module, n.name, cv.layout(x, False, n.name), x.shape, cv.fresh, *states)
    out: Leaf = (Value(names[0], (x.shape[0], directions * n_units)), not module.batch_first)
    finals: list[Leaf] = [(Value(name, (layers * directions, n_units)), True) for name in names[1:]]
    cv.tuples[n.name] = (out, finals[0]) if op != 'LSTM' else (out, tuple(finals))


def _record(cv: Converter, n: Any, item: Any) -> None:
    """Record a tuple element (a Leaf or a nested tuple of them) as fx node n's value."""
    if isinstance(item, tuple) and item and isinstance(item[0], Value):
        value, batch_second = item
        cv.values[n.name] = value
        if batch_second:
            cv.batch_second.add(n.name)
    else:
        cv.tuples[n.name] = item


def _index_parts(index: Any, rank: int, batch_axis: int, where: str) -> list[Any]:
    """The per-sample index entries (the batch's entry, a full slice, removed; trailing full slices dropped)."""
    parts = list(index) if isinstance(index, tuple) else [index]
    if parts and parts[-1] is Ellipsis:
        parts.pop()
    if any(p is Ellipsis or p is None for p in parts) or len(parts) > rank:
        raise GraphError(f'{where}: index {index!r} is not supported; use ints and slices, at most one per axis')
    if len(parts) > batch_axis:
        if parts[batch_axis] != slice(None):
            raise GraphError(f'{where}: index {index!r} indexes the batch axis (axis {batch_axis}); it must be ":"')
        del parts[batch_axis]
    while parts and parts[-1] == slice(None):
        parts.pop()
    return parts


def lower_index(cv: Converter, n: Any, index: Any, first: Any, second: Any, batches: tuple[int, int],
                where: str) -> None:
    """tensor[...] indexing the first per-sample axis with an int or a step-1 slice: Reshape, Crop, Reshape."""
    src = n.args[0]
    v, batch_second = cv.values[src.name], src.name in cv.batch_second
    parts = _index_parts(index, len(v.shape) + 1, 1 if batch_second else 0, where)
    if not parts:  # x[:] and the like
        _record(cv, n, (v, batch_second))
        return
    if len(parts) > 1 or not isinstance(parts[0], (int, slice)):
        raise GraphError(f'{where}: index {index!r} is not supported; only the first axis after the batch may be '
                         'indexed, with an int or a slice of step 1 (out[:, -1], out[:, 2:5], h_n[-1])')
    d0, rest = v.shape[0], int(np.prod(v.shape[1:], dtype=np.int64))
    if isinstance(parts[0], int):
        if not -d0 <= parts[0] < d0:
            raise GraphError(f'{where}: index {parts[0]} is out of range for an axis of size {d0}')
        start, stop = parts[0] % d0, parts[0] % d0 + 1
    else:
        start, stop, step = parts[0].indices(d0)
        if step != 1 or stop <= start:
            raise GraphError(f'{where}: slice {parts[0]!r} is not supported; a non-empty slice of step 1 is')
    out_second = batch_second and isinstance(parts[0], slice)
    out_shape = per_sample_shape(first, second, 1 if out_second else 0, batches, where)
    x = cv.layout(v, False, n.name)
    if v.shape != (d0, rest):
        flat = cv.fresh(f'{n.name}_rows')
        cv.graph.add(make_node(flat, 'Reshape', [x], (d0, rest), attrs={'shape': (d0, rest)}, source='getitem'))
        x = flat
    crop = n.name if out_shape == (stop - start, rest) else cv.fresh(f'{n.name}_crop')
    cv.graph.add(make_node(crop, 'Crop', [x], (stop - start, rest), attrs={'cropping': (start, d0 - stop)},
                           source='getitem'))
    if crop != n.name:
        cv.graph.add(make_node(n.name, 'Reshape', [crop], out_shape, attrs={'shape': out_shape}, source='getitem'))
    _record(cv, n, (Value(n.name, out_shape), out_second))


def _dims(cv: Converter, n: Any, rank: int, where: str) -> tuple[int, ...] | None:
    """The permutation of a transpose/permute/swapaxes call over all axes (batch included), else None."""
    import torch

    method = n.target if n.op == 'call_method' else getattr(n.target, '__name__', None)
    if n.op == 'call_function' and n.target not in (torch.transpose, torch.permute, torch.swapaxes, torch.swapdims):
        return None
    if method not in ('transpose', 'swapaxes', 'swapdims', 'permute'):
        return None
    rest = [cv.const(a, where) for a in n.args[1:]] + [cv.const(v, where) for v in n.kwargs.values()]
    if method in ('transpose', 'swapaxes', 'swapdims') and len(rest) == 2:
        a, b = (int(d) % rank for d in rest)
        perm = list(range(rank))
        perm[a], perm[b] = perm[b], perm[a]
        return tuple(perm)
    if method == 'permute':
        dims = rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest
        return tuple(int(d) % rank for d in dims)
    return None


def lower_batch_move(cv: Converter, n: Any, first: Any, second: Any, batches: tuple[int, int], where: str) -> bool:
    """transpose(0, 1)/permute(1, 0, ...) of a tensor: the batch moves between axes 0 and 1, the IR value stays."""
    src = n.args[0] if n.args else None
    if n.op not in ('call_method', 'call_function') or not _is_tensor_node(cv, src):
        return False
    v = cv.values[src.name]
    rank = len(v.shape) + 1
    perm = _dims(cv, n, rank, where)
    if perm is None or perm[:2] != (1, 0) or perm[2:] != tuple(range(2, rank)):
        return False
    out_second = src.name not in cv.batch_second
    shape = per_sample_shape(first, second, 1 if out_second else 0, batches, where)
    _record(cv, n, (Value(cv.layout(v, False, n.name), shape), out_second))
    return True


def _is_zeros(n: Any, first: Any, second: Any) -> bool:
    """torch.zeros(...) whose shape depends on the batch (an initial state built in forward)."""
    import torch

    return (n.target in (torch.zeros, torch.zeros_like) and isinstance(first, torch.Tensor)
            and not first.any() and not second.any())


def lower_recurrent(cv: Converter, n: Any, first: Any, second: Any, batches: tuple[int, int], where: str) -> bool:
    """The walk's hook: RNN module calls, getitem of their tuples or of tensors, batch moves; False otherwise."""
    if n.op == 'call_module':
        module = cv.gm.get_submodule(n.target)
        if type(module).__name__ in RNN_MODULES and type(module).__module__.startswith('torch.nn'):
            lower_rnn_call(cv, n, module, where)
            return True
        return False
    if n.op == 'call_function' and n.target is getattr and n.args[1] in ('device', 'dtype'):
        cv.consts[n.name] = first  # x.device, x.dtype: for torch.zeros(..., device=x.device)
        return True
    if n.op == 'call_function' and _is_zeros(n, first, second):
        cv.zeros.add(n.name)
        return True
    if n.op == 'call_function' and n.target is operator.getitem:
        src, index = n.args
        if src.name in cv.tuples:
            item = cv.tuples[src.name][cv.const(index, where)]
            _record(cv, n, item)
            return True
        if _is_tensor_node(cv, src):
            lower_index(cv, n, cv.const(index, where), first, second, batches, where)
            return True
        return False
    return lower_batch_move(cv, n, first, second, batches, where)
