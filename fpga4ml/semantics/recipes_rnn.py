"""Recurrent layers (SimpleRNN, LSTM, GRU) as recipes over `scan` (compose.py).

The computation order is hls4ml 1.3.0's `nnet_recurrent.h` (see docs/rnn.md): per step both matrix
products are hls4ml Dense products into the accumulator (`const_matmul`: bias first, every product
cast into 'accum'), their sum is cast into 'accum', the gate activations are table lookups (or exact
piecewise functions) whose values are cast into 'accum', and the new state is one cast of an exact
expression:

* SimpleRNN: ``h' = result(act(accum(W x + b + U h + br)))``
* LSTM (gates i, f, g, o): ``c' = state(g*i + c*f)``, ``h' = result(o * accum(act(c')))``; the cell
  state has its own type 'state' (hls4ml stores it in the result type: the 'auto' default)
* GRU (Keras gate order z, r, h; PyTorch's r, z, n with ``gate_order='rzh'``):
  reset_after: ``hc = act(accum(a_h + accum(r * accum(U_h h + br_h))))``;
  otherwise: ``hc = act(accum(a_h + accum(U_h result(r * h) + br_h)))`` (Keras' reset_after=False);
  then ``h' = result(hc * (1 - z) + h * z)``.

A node has several outputs (read through Select nodes): the sequence (or the last h when
return_sequences is off), the final h, and for LSTM the final cell state c. Optional extra inputs
are the initial states h0 (and c0), each cast into its state type first; without them the state
starts at zero. go_backwards runs the steps from the last time step to the first; output_order
says how the sequence is stacked: 'steps' in the order the steps ran (Keras go_backwards), 'time'
aligned with the input (the backward half of a Bidirectional layer).
"""

from __future__ import annotations

import numpy as np

from ..functions import table_function
from ..ir import TABLE_ACTIVATIONS, GraphError, Node
from .compose import scan
from .params import element_groups
from .primitives import Const
from .rnn_auto import infer_sequence_types, needs_sequence_typing
from .spec import REQUIRED, attr, recipe
from .tables import HLS4ML_TABLE_TYPE, build_activation_table, hls4ml_tables

ONE = Const(np.asarray(1), 0)
#: activations a recurrent layer accepts: tables, or exact piecewise functions
RNN_ACTIVATIONS = ('sigmoid', 'tanh', 'relu', 'linear')
GATE_ORDERS = ('zrh', 'rzh')
OUTPUT_ORDERS = ('steps', 'time')
RNN_WEIGHTS = {'kernel': 'weight', 'recurrent_kernel': 'recurrent_weight', 'bias': 'bias',
               'recurrent_bias': 'recurrent_bias'}
RNN_PRECISION = ('weight', 'recurrent_weight', 'bias', 'recurrent_bias', 'accum', 'result', 'table')
RNN_ATTRS = {'units': REQUIRED, 'activation': 'tanh', 'return_sequences': False, 'go_backwards': False,
             'output_order': 'steps'}
#: gates per op (the column blocks of kernel, recurrent_kernel and the biases)
GATES = {'SimpleRNN': 1, 'LSTM': 4, 'GRU': 3}
#: the points of attrs['quantizers'] (HGQ2's in-cell quantizers, `quantize_at`) per op
QUANTIZER_POINTS = {'SimpleRNN': ('state', 'pre_activation'), 'GRU': ('state', 'gates', 'recurrent_h', 'candidate')}


# ---------------------------------------------------------------------------------------- checks
def check_rnn(node: Node, n_in: int) -> int:
    """The checked number of units; GraphError naming the layer for bad attributes or weight shapes."""
    n = int(attr(node, 'units'))
    gates = GATES[node.op]
    for key in ('activation', 'recurrent_activation'):
        if key == 'recurrent_activation' and node.op == 'SimpleRNN':
            continue
        fn = attr(node, key)
        if fn not in RNN_ACTIVATIONS:
            raise GraphError(f'layer {node.name!r}: {node.op} {key} {fn!r} is not supported; supported: '
                             f'{list(RNN_ACTIVATIONS)}')
    if attr(node, 'output_order') not in OUTPUT_ORDERS:
        raise GraphError(f"layer {node.name!r}: output_order {attr(node, 'output_order')!r} is not one of "
                         f'{OUTPUT_ORDERS}')
    if node.op == 'GRU' and attr(node, 'gate_order') not in GATE_ORDERS:
        raise GraphError(f"layer {node.name!r}: GRU gate_order {attr(node, 'gate_order')!r} is not one of "
                         f'{GATE_ORDERS}')
    points = QUANTIZER_POINTS.get(node.op, ())
    for point in attr(node, 'quantizers') or {} if points else ():
        if point not in points:
            raise GraphError(f'layer {node.name!r}: {node.op} quantizer point {point!r} is not one of {list(points)}')
    expected = {'kernel': (n_in, gates * n), 'recurrent_kernel': (n, gates * n), 'bias': (gates * n,),
                'recurrent_bias': (gates * n,)}
    for name, shape in expected.items():
        got = np.shape(node.weights.get(name))
        if got != shape:
            raise GraphError(f'layer {node.name!r}: {node.op} weight {name!r} has shape {got}, expected {shape} '
                             f'({n_in} inputs, {n} units, {gates} gate blocks)')
    return n


# ---------------------------------------------------------------------------------------- tables
def table_keys(node: Node) -> list[tuple[str, str, str]]:
    """(table key, activation attribute, input type variable) of every table the node looks up."""
    keys = [('act', 'activation', 'accum')]
    if node.op != 'SimpleRNN':
        keys.append(('ract', 'recurrent_activation', 'accum'))
    if node.op == 'LSTM':
        keys.append(('act_c', 'activation', 'state'))
    return [(key, a, var) for key, a, var in keys if attr(node, a) in TABLE_ACTIVATIONS]


def build_rnn_tables(node: Node, in_types) -> None:
    """The node's activation tables (exact or hls4ml's, per TableSemantics) into node.attrs['tables']."""
    tables = {}
    for key, fn_attr, in_var in table_keys(node):
        helper = Node(node.name, 'Activation', [], node.shape, attrs={'function': attr(node, fn_attr)},
                      config=node.config, types={'table': node.types['table']})
        build_activation_table(helper, node.types[in_var])
        tables[key] = helper.attrs['tables']['f']
    node.attrs['tables'] = tables


def _resolve_types(node: Node, p) -> None:
    """Type the accumulator, result, state and table before the scan (every step reuses them).

    Already typed when asked to be 'auto' (rnn_auto.py: bounds over the whole sequence); what is
    left: the model default for accum and result, the result type for the state, and for the table
    hls4ml's ap_fixed<18,8> under TableSemantics 'hls4ml', else the accumulator.
    """
    p.type('accum', 'default')
    p.type('result', 'default')
    if node.op == 'LSTM':
        p.type('state', 'result')
    p.type('table', HLS4ML_TABLE_TYPE if hls4ml_tables(node) else 'accum')
    if table_keys(node):
        p.tables(build_rnn_tables)


def activate(node: Node, p, v, key: str, fn_attr: str, into: str):
    """The activation `fn_attr` of v (a table lookup `key`, or exact relu/linear) cast into `into`."""
    fn = attr(node, fn_attr)
    if fn == 'linear':
        return p.cast(v, into)
    if fn == 'relu':
        return p.cast(p.maximum(v, p.const(Const(np.asarray(0), 0))), into)
    tables = node.attrs.get('tables') or {}
    k = tables[key].shift if key in tables else 0  # hls4ml's x * N / R
    f = table_function(fn, {})
    return p.cast(p.lookup(p.shift(v, k), key, lambda u: f(u * 2.0 ** -k)), into)


# ---------------------------------------------------------------------------------------- pieces
def quantize_at(node: Node, p, v, point: str):
    """v through the per-element quantizer `point` of attrs['quantizers'] (HGQ2's in-cell quantizers), else v.

    attrs['quantizers'][point] is a Quantize node's element_types ({'k', 'i', 'f', 'rounding',
    'overflow'}, per element of v): each element is cast into its own type (a pruned one is 0); the
    result is exact at the finest LSB of those types (no enclosing cast). An optional 'affine'
    [e, m, f] then computes ``y * 2^e + m * 2^-f`` exactly (HGQ2's post-quantization affine of its
    hard-sigmoid gate quantizer: scale 0.25, shift 0.5).
    """
    spec = (attr(node, 'quantizers') or {}).get(point)
    if spec is None:
        return v
    shape = tuple(p.shape(v))
    groups = element_groups(Node(f'{node.name}_{point}', 'Quantize', [], shape, attrs={'element_types': spec}))
    if len(groups) == 1 and groups[0][0] is not None:  # one type for every element: a plain cast
        y = p.cast(v, groups[0][0])
    else:
        frac = max((t.frac for t, _ in groups if t is not None), default=0)
        parts = [p.const(Const(np.zeros(len(idx), dtype=np.int64), frac)) if t is None
                 else p.cast(p.gather(v, idx), t) for t, idx in groups]
        order = np.argsort(np.concatenate([idx for _, idx in groups]), kind='stable')
        # gathered as one (1, n) row, then reshaped: a const_matmul reading a plain (n,) gather fails
        # in the numpy interpreter's window path (it expects (windows, n) indices)
        y = p.reshape(p.gather(p.concat(parts, 0), order.reshape(1, -1)), shape)
    if spec.get('affine') is not None:
        e, m, f = (int(a) for a in spec['affine'])
        y = p.add(p.shift(y, e), p.const(Const(np.full(shape, m, dtype=np.int64), f)))
    return y


def columns(p, v, start: int, stop: int):
    """v[start:stop] of a vector (a gather)."""
    return p.gather(v, np.arange(start, stop, dtype=np.int64))


def weight_columns(p, name: str, start: int, stop: int) -> Const:
    """Columns start:stop of a weight (the last axis)."""
    return p.weight(name).map(lambda w: np.asarray(w)[..., start:stop])


def products(p, v, kernel: str, bias: str, start: int, stop: int):
    """hls4ml's Dense of v with columns start:stop of a kernel and bias, into 'accum'."""
    return p.const_matmul(v, weight_columns(p, kernel, start, stop), weight_columns(p, bias, start, stop), 'accum')


def initial_states(node: Node, p, init: tuple, variables: tuple[str, ...], n: int) -> tuple:
    """The initial states: the extra inputs cast into their state types, or zeros."""
    if init and len(init) != len(variables):
        raise GraphError(f'layer {node.name!r}: {node.op} takes {len(variables)} initial state input(s) '
                         f'({", ".join(variables)}), got {len(init)}')
    if init:
        for k, value in enumerate(init):
            if tuple(p.shape(value)) != (n,):
                raise GraphError(f'layer {node.name!r}: initial state {k} has per-sample shape '
                                 f'{tuple(p.shape(value))}, expected ({n},)')
        return tuple(p.cast(value, var) for value, var in zip(init, variables))
    return tuple(p.const(Const(np.zeros(n, dtype=np.int64), 0)) for _ in variables)


def run_scan(node: Node, p, x, step, init: tuple, variables: tuple[str, ...]):
    """The scan over x's time axis; returns (sequence or last h, *final states)."""
    n = check_rnn(node, p.shape(x)[-1])
    if len(p.shape(x)) != 2:
        raise GraphError(f'layer {node.name!r}: {node.op} needs a (time, features) input, got per-sample shape '
                         f'{tuple(p.shape(x))}')
    if needs_sequence_typing(node, p):  # 'auto' accum/result/state: bounds over the whole sequence
        infer_sequence_types(node, p, x, init)
    _resolve_types(node, p)
    state0 = initial_states(node, p, init, variables, n)
    # the input products of every time step at once (they do not depend on the state)
    a = products(p, x, 'kernel', 'bias', 0, GATES[node.op] * n)
    ys, state = scan(p, lambda q, a_t, *s: step(node, q, a_t, n, *s), a, state0, variables,
                     reverse=bool(attr(node, 'go_backwards')), ys_order=attr(node, 'output_order'))
    first = ys if attr(node, 'return_sequences') else state[0]
    return (first, *state)


# ---------------------------------------------------------------------------------------- steps
def simple_rnn_step(node: Node, p, a, n: int, h):
    """h' = result(act(accum(a + U h + br))), a = W x + b in the accumulator (with HGQ2's quantizers:
    h' = result(act(pre_activation(accum(a + U state(h) + br)))))."""
    qh = quantize_at(node, p, h, 'state')
    s = p.cast(p.add(a, products(p, qh, 'recurrent_kernel', 'recurrent_bias', 0, n)), 'accum')
    s = quantize_at(node, p, s, 'pre_activation')
    h2 = activate(node, p, s, 'act', 'activation', 'result')
    return (h2,), h2


def lstm_step(node: Node, p, a, n: int, h, c):
    """Gates [i, f, g, o]; c' = state(g*i + c*f); h' = result(o * accum(act(c')))."""
    r = products(p, h, 'recurrent_kernel', 'recurrent_bias', 0, 4 * n)
    s = p.cast(p.add(a, r), 'accum')
    i, f, o = (activate(node, p, columns(p, s, k * n, (k + 1) * n), 'ract', 'recurrent_activation', 'accum')
               for k in (0, 1, 3))
    g = activate(node, p, columns(p, s, 2 * n, 3 * n), 'act', 'activation', 'accum')
    c2 = p.cast(p.add(p.mul(g, i), p.mul(c, f)), 'state')
    t = activate(node, p, c2, 'act_c', 'activation', 'accum')
    h2 = p.cast(p.mul(o, t), 'result')
    return (h2, c2), h2


def gru_step(node: Node, p, a, n: int, h):
    """Gates z, r and the candidate (Keras order, or PyTorch's r, z, n); h' = result(hc*(1-z) + h*z).

    HGQ2's quantizers (attrs['quantizers']) sit at: 'state' (h before it is used, the mix included),
    'gates' (z, r after their activation), 'recurrent_h' (the recurrent product's h block before r
    multiplies it, or r*h before the product) and 'candidate' (hc after its activation).
    """
    reset_after = bool(attr(node, 'reset_after'))
    h = quantize_at(node, p, h, 'state')
    r_all = products(p, h, 'recurrent_kernel', 'recurrent_bias', 0, 3 * n if reset_after else 2 * n)
    s = p.cast(p.add(columns(p, a, 0, 2 * n), columns(p, r_all, 0, 2 * n)), 'accum')
    zr = quantize_at(node, p, activate(node, p, s, 'ract', 'recurrent_activation', 'accum'), 'gates')
    first, second = columns(p, zr, 0, n), columns(p, zr, n, 2 * n)
    z, r = (first, second) if attr(node, 'gate_order') == 'zrh' else (second, first)
    if reset_after:
        q = p.cast(p.mul(r, quantize_at(node, p, columns(p, r_all, 2 * n, 3 * n), 'recurrent_h')), 'accum')
    else:
        has_rhq = 'recurrent_h' in (attr(node, 'quantizers') or {})
        rh = quantize_at(node, p, p.mul(r, h), 'recurrent_h') if has_rhq else p.cast(p.mul(r, h), 'result')
        q = products(p, rh, 'recurrent_kernel', 'recurrent_bias', 2 * n, 3 * n)
    u = p.cast(p.add(columns(p, a, 2 * n, 3 * n), q), 'accum')
    hc = quantize_at(node, p, activate(node, p, u, 'act', 'activation', 'accum'), 'candidate')
    h2 = p.cast(p.add(p.mul(hc, p.sub(p.const(ONE), z)), p.mul(h, z)), 'result')
    return (h2,), h2


# ---------------------------------------------------------------------------------------- recipes
@recipe('SimpleRNN', attrs={**RNN_ATTRS, 'quantizers': None}, weights=RNN_WEIGHTS, precision=RNN_PRECISION,
        outputs=('result', 'result'))
def simple_rnn(node, p, x, *init):
    """Keras SimpleRNN / torch nn.RNN: (sequence or last h, final h)."""
    return run_scan(node, p, x, simple_rnn_step, init, ('result',))


@recipe('LSTM', attrs={**RNN_ATTRS, 'recurrent_activation': 'sigmoid'}, weights=RNN_WEIGHTS,
        precision=RNN_PRECISION + ('state',), outputs=('result', 'result', 'state'))
def lstm(node, p, x, *init):
    """Keras LSTM / torch nn.LSTM: (sequence or last h, final h, final c)."""
    return run_scan(node, p, x, lstm_step, init, ('result', 'state'))


@recipe('GRU', attrs={**RNN_ATTRS, 'recurrent_activation': 'sigmoid', 'reset_after': True, 'gate_order': 'zrh',
                       'quantizers': None},
        weights=RNN_WEIGHTS, precision=RNN_PRECISION, outputs=('result', 'result'))
def gru(node, p, x, *init):
    """Keras GRU (both reset_after) / torch nn.GRU (gate_order 'rzh'): (sequence or last h, final h)."""
    return run_scan(node, p, x, gru_step, init, ('result',))
