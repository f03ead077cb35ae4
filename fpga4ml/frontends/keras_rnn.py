"""Keras 3 recurrent layers: SimpleRNN, LSTM, GRU, Bidirectional and TimeDistributed.

Conventions (registered into keras.py's handlers):

* ``SimpleRNN``/``LSTM``/``GRU`` -> one node of the same op named after the layer (weights ``kernel``,
  ``recurrent_kernel``, ``bias`` and ``recurrent_bias``: zeros, or the second row of a GRU's
  reset_after (2, 3n) bias), read through ``Select`` nodes: ``'<name>_seq'`` (the layer's output),
  and with return_state ``'<name>_h'`` (and ``'<name>_c'``). Initial states passed as
  ``initial_state=[...]`` become extra inputs of the node.
* ``Bidirectional`` -> ``'<name>_forward'`` and ``'<name>_backward'`` (go_backwards with its sequence
  aligned in time, as Keras flips it back), merged by a ``Merge`` node ``'<name>'`` (concat, sum ->
  add, mul, ave -> avg); merge_mode None gives the two outputs. return_state adds the forward, then
  the backward final states.
* ``TimeDistributed`` of a layer that works on the last axis only (Dense, activations,
  BatchNormalization, Dropout-like) -> that layer applied to the whole sequence; of any other
  supported layer -> per time step a ``Crop`` + ``Reshape`` of the input, the layer (nodes
  ``'<name>_t<k>'``, each with its own copy of the weights) and a ``Merge`` concat on the time axis.
* Refused, naming the layer and the attribute: stateful=True, an activation other than
  sigmoid/tanh/relu/linear. use_bias=False gives zero biases; dropout is ignored (inference) and
  unroll does not change the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import Graph, GraphError
from ..semantics.recipes_rnn import RNN_ACTIVATIONS
from ..semantics.spec import make_node
from . import keras as kf

RNN_CLASSES = ('SimpleRNN', 'LSTM', 'GRU')
BIDIRECTIONAL_MERGES = {'concat': 'concat', 'sum': 'add', 'mul': 'mul', 'ave': 'avg'}
#: layers that compute per position of the last axis: TimeDistributed applies them to the whole sequence
PER_POSITION = ('Dense', 'Activation', 'ReLU', 'LeakyReLU', 'ELU', 'PReLU', 'Softmax', 'BatchNormalization',
                *kf.SKIPPED_LAYERS)
#: Keras classes whose call may give several output tensors
MULTI_OUTPUT_LAYERS = (*RNN_CLASSES, 'Bidirectional')


def _activation(layer: Any, key: str, where: str) -> str:
    """The IR name of the layer's `key` activation (sigmoid, tanh, relu, linear), else a GraphError."""
    name = kf._activation_name(getattr(layer, key))
    if name not in RNN_ACTIVATIONS:
        label = name or getattr(getattr(layer, key), '__name__', type(getattr(layer, key)).__name__)
        raise GraphError(f'{where}: {key}={label!r} is not supported; supported: {list(RNN_ACTIVATIONS)}')
    return name


def _check_attributes(layer: Any, where: str) -> None:
    """Refuse what the IR does not compute (stateful layers); dropout and unroll do not matter at inference."""
    if getattr(layer, 'stateful', False):
        raise GraphError(f'{where}: stateful=True is not supported (the state starts at zero, or at the '
                         'initial_state inputs, on every inference)')
    if getattr(layer, 'quantization_mode', None):
        raise GraphError(f'{where}: Keras quantization mode {layer.quantization_mode!r} is not supported')


def rnn_node_fields(layer: Any, where: str) -> tuple[str, dict, dict]:
    """(IR op, attrs, weights) of a Keras SimpleRNN/LSTM/GRU layer."""
    cls = type(layer).__name__
    _check_attributes(layer, where)
    cell, n = layer.cell, int(layer.units)
    gates = {'SimpleRNN': 1, 'LSTM': 4, 'GRU': 3}[cls]
    kernel, recurrent = kf._to_numpy(cell.kernel), kf._to_numpy(cell.recurrent_kernel)
    bias = kf._to_numpy(cell.bias) if getattr(cell, 'bias', None) is not None else np.zeros(gates * n, np.float32)
    recurrent_bias = np.zeros(gates * n, np.float32)
    attrs = {'units': n, 'activation': _activation(cell, 'activation', where),
             'return_sequences': bool(layer.return_sequences), 'go_backwards': bool(layer.go_backwards)}
    if cls != 'SimpleRNN':
        attrs['recurrent_activation'] = _activation(cell, 'recurrent_activation', where)
    if cls == 'GRU':
        attrs['reset_after'] = bool(cell.reset_after)
        if bias.ndim == 2:  # reset_after: (2, 3n) = input bias, recurrent bias
            bias, recurrent_bias = bias[0], bias[1]
    return cls, attrs, {'kernel': kernel, 'recurrent_kernel': recurrent, 'bias': bias,
                        'recurrent_bias': recurrent_bias}


def add_rnn(graph: Graph, layer: Any, name: str, inputs: list[str], in_shape: tuple[int, ...], where: str,
            fresh, output_order: str = 'steps') -> list[str]:
    """The RNN node `name` and its Select nodes: [output, final h (, final c)]."""
    op, attrs, weights = rnn_node_fields(layer, where)
    if len(in_shape) != 2:
        raise GraphError(f'{where}: needs a (time, features) input, got per-sample shape {in_shape}')
    n, steps = attrs['units'], in_shape[0]
    attrs['output_order'] = output_order
    shape = (steps, n) if attrs['return_sequences'] else (n,)
    graph.add(make_node(name, op, inputs, shape, attrs=attrs, weights=weights, source=type(layer).__name__))
    parts = [('seq', shape), ('h', (n,))] + ([('c', (n,))] if op == 'LSTM' else [])
    names = []
    for index, (suffix, part_shape) in enumerate(parts):
        names.append(fresh(f'{name}_{suffix}'))
        graph.add(make_node(names[-1], 'Select', [name], part_shape, attrs={'index': index}, source='Select'))
    return names


def _rnn(call: kf._Call, graph: Graph) -> list[str]:
    """SimpleRNN/LSTM/GRU -> the layer node + Select nodes (the outputs Keras gives)."""
    layer = call.layer
    names = add_rnn(graph, layer, call.name, call.inputs, call.in_shapes[0], call.where(), call.fresh)
    return names if layer.return_state else names[:1]


def _bidirectional(call: kf._Call, graph: Graph) -> list[str]:
    """Bidirectional -> forward and backward RNN nodes and their merge (or both outputs for merge_mode None)."""
    layer, where = call.layer, call.where()
    mode = layer.merge_mode
    if mode is not None and mode not in BIDIRECTIONAL_MERGES:
        raise GraphError(f'{where}: merge_mode={mode!r} is not supported; supported: '
                         f'{sorted(BIDIRECTIONAL_MERGES) + [None]}')
    if len(call.inputs) != 1:
        raise GraphError(f'{where}: initial states of a Bidirectional layer are not supported')
    halves = []
    for half, rnn, order in (('forward', layer.forward_layer, 'steps'), ('backward', layer.backward_layer, 'time')):
        if type(rnn).__name__ not in RNN_CLASSES:
            raise GraphError(f'{where}: the {half} layer is a {type(rnn).__name__}; supported: {list(RNN_CLASSES)}')
        # Keras flips the backward sequence back into time order; a backward last output is its final h
        halves.append(add_rnn(graph, rnn, call.fresh(f'{call.name}_{half}'), call.inputs, call.in_shapes[0],
                              f'{where} {half} layer {rnn.name!r} ({type(rnn).__name__})', call.fresh,
                              order if rnn.go_backwards else 'steps'))
    outputs = [halves[0][0], halves[1][0]]
    if mode is not None:
        fwd = graph[halves[0][0]]
        shape = fwd.shape[:-1] + (fwd.shape[-1] + graph[halves[1][0]].shape[-1],) if mode == 'concat' else fwd.shape
        graph.add(make_node(call.name, 'Merge', outputs, shape, attrs={'mode': BIDIRECTIONAL_MERGES[mode], 'axis': -1},
                            source='Bidirectional'))
        outputs = [call.name]
    if layer.return_state:
        outputs += halves[0][1:] + halves[1][1:]
    return outputs


def _time_distributed(call: kf._Call, graph: Graph) -> str:
    """TimeDistributed(layer): the layer on the whole sequence (per-position layers) or per time step."""
    inner = call.layer.layer
    cls = type(inner).__name__
    handler = kf._HANDLERS.get(cls)
    if handler is None or cls in ('TimeDistributed', *MULTI_OUTPUT_LAYERS):
        raise GraphError(f'{call.where()}: TimeDistributed of {cls} is not supported; supported: the layers '
                         f'{sorted(set(kf._HANDLERS) - {"TimeDistributed", *MULTI_OUTPUT_LAYERS})}')
    if cls in PER_POSITION:
        return handler(kf._Call(layer=inner, name=call.name, inputs=call.inputs, in_shapes=call.in_shapes,
                                out_shape=call.out_shape, fresh=call.fresh), graph)
    steps, step_in, step_out = call.in_shapes[0][0], call.in_shapes[0][1:], call.out_shape[1:]
    source = call.inputs[0]
    if len(call.in_shapes[0]) != 3:  # as (T, positions, channels): Crop takes (H, W, C)
        source = call.fresh(f'{call.name}_rows')
        rows = (steps, int(np.prod(step_in[:-1], dtype=np.int64)) if len(step_in) > 1 else 1, step_in[-1])
        graph.add(make_node(source, 'Reshape', call.inputs, rows, attrs={'shape': rows}, source='TimeDistributed'))
    width = graph[source].shape[1]
    stacked = []
    for t in range(steps):
        crop = call.fresh(f'{call.name}_t{t}_in')
        graph.add(make_node(crop, 'Crop', [source], (1, width, graph[source].shape[2]),
                            attrs={'cropping': (t, steps - 1 - t, 0, 0)}, source='TimeDistributed'))
        flat = call.fresh(f'{call.name}_t{t}_x')
        graph.add(make_node(flat, 'Reshape', [crop], step_in, attrs={'shape': step_in}, source='TimeDistributed'))
        out = handler(kf._Call(layer=inner, name=call.fresh(f'{call.name}_t{t}'), inputs=[flat], in_shapes=[step_in],
                               out_shape=step_out, fresh=call.fresh), graph)
        row = call.fresh(f'{call.name}_t{t}_row')
        graph.add(make_node(row, 'Reshape', [out], (1,) + step_out, attrs={'shape': (1,) + step_out},
                            source='TimeDistributed'))
        stacked.append(row)
    if steps == 1:
        graph.add(make_node(call.name, 'Reshape', stacked, call.out_shape, attrs={'shape': call.out_shape},
                            source='TimeDistributed'))
    else:
        graph.add(make_node(call.name, 'Merge', stacked, call.out_shape, attrs={'mode': 'concat', 'axis': 0},
                            source='TimeDistributed'))
    return call.name


HANDLERS = {**{cls: _rnn for cls in RNN_CLASSES}, 'Bidirectional': _bidirectional,
            'TimeDistributed': _time_distributed}
