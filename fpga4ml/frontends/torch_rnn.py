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
  layer and direction (Crop + Reshape).

Refused, naming the module and the attribute: batch_first=False (the IR holds samples on the first
axis), proj_size > 0. Dropout between layers is an inference no-op.

The graph walk of the torch front end (torch.py) does not route tuple-valued modules and their
`getitem` yet, so `torch_to_graph` does not call this module; tests build the graph directly.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..ir import Graph, GraphError
from ..semantics.spec import make_node

RNN_MODULES = {'RNN': 'SimpleRNN', 'LSTM': 'LSTM', 'GRU': 'GRU'}


def _np(tensor: Any) -> np.ndarray:
    return np.asarray(tensor.detach().cpu().numpy(), dtype=np.float32)


def check_module(module: Any, where: str) -> tuple[str, int, int, int]:
    """(IR op, hidden size, layers, directions) of a supported torch RNN module, else a GraphError."""
    cls = type(module).__name__
    if cls not in RNN_MODULES:
        raise GraphError(f'{where}: {cls} is not a recurrent module; supported: {sorted(RNN_MODULES)}')
    if not module.batch_first:
        raise GraphError(f'{where}: batch_first=False is not supported (the IR holds samples on the first axis); '
                         'use batch_first=True')
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


def _state_slice(graph: Graph, fresh: Callable[[str], str], source: str, k: int, total: int, n: int) -> str:
    """Row k of a per-sample (total, n) initial state input, as an (n,) node."""
    crop = fresh(f'{source}_row{k}_crop')
    graph.add(make_node(crop, 'Crop', [source], (1, n), attrs={'cropping': (k, total - 1 - k)}, source='Crop'))
    row = fresh(f'{source}_row{k}')
    graph.add(make_node(row, 'Reshape', [crop], (n,), attrs={'shape': (n,)}, source='Reshape'))
    return row


def _stack(graph: Graph, fresh: Callable[[str], str], name: str, rows: list[str], n: int, source: str) -> str:
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
                inputs.append(_state_slice(graph, fresh, h0, k, layers * directions, n))
            if c0 is not None:
                inputs.append(_state_slice(graph, fresh, c0, k, layers * directions, n))
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
    result = [source, _stack(graph, fresh, fresh(f'{name}_h_n'), finals['h'], n, cls)]
    if op == 'LSTM':
        result.append(_stack(graph, fresh, fresh(f'{name}_c_n'), finals['c'], n, cls))
    return result
