"""HGQ2 0.2 recurrent layers (QSimpleRNN, QGRU) lowered onto the SimpleRNN/GRU ops, bit-exactly.

HGQ2's cells quantize inside every step (hgq/layers/rnn): the per-step input quantizer ``iq``
(per feature, the same for every step) becomes a Quantize node before the layer; the weights are
HGQ2's quantized ``qkernel``, ``qrecurrent_kernel`` and ``qbias``; the in-cell quantizers become the
recipe's per-element quantizer points (``attrs['quantizers']``, semantics/recipes_rnn.py):

* QSimpleRNN: ``h' = act(paq(x@K + b + sq(h)@U))`` -> points 'pre_activation' (paq) and 'state'
  (sq, only with enable_sq=True);
* QGRU: ``qh = sq(h)``, ``z, r = praq(ract(x@K_zr + b_zr + qh@U_zr (+ br_zr)))``, reset_after
  ``hh = paq(act(x@K_h + b_h + r * rhq(qh@U_h + br_h)))``, otherwise ``hh = paq(act(x@K_h + b_h +
  rhq(r * qh)@U_h))``, ``h' = z*qh + (1-z)*hh`` unquantized -> points 'state', 'gates',
  'recurrent_h', 'candidate'.

Everything between quantizers is exact: the accumulator and result types are computed here from
the quantizer and weight types and bounds (the result of a QGRU is the exact mix, of a QSimpleRNN
the pre-activation quantizer's type). Activations must be exact (linear, the HGQ2 default; relu for
QSimpleRNN and for QGRU's candidate): HGQ2 computes sigmoid/tanh in float between its quantizers, which
no fixed-point table reproduces. Refused, naming the layer: other activations, return_state,
enable_oq=True, initial states, stateful=True. Nodes: ``<layer>_iq`` (Quantize), ``<layer>_cell`` (the
SimpleRNN/GRU node), ``<layer>`` (the Select of its output).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..fixed import FixedType
from ..ir import Graph, GraphError
from ..semantics.spec import make_node
from . import keras as K
from .hgq import QuantSpec, _fixed, _require_input, quantized_weights, quantizer_spec

#: activations HGQ2's float32 computes exactly, per activation attribute
EXACT = {'activation': ('linear', 'relu'), 'recurrent_activation': ('linear',)}


def _spec(q: Any, n: int, where: str, what: str) -> QuantSpec | None:
    """The QuantSpec of an in-cell quantizer over n elements (None when disabled)."""
    return quantizer_spec(q, (n,), where, what)


def _affine(q: Any, where: str, what: str) -> list[int] | None:
    """A post-quantization affine (scale, shift) as [e, m, f] (scale 2^e, shift m * 2^-f), or None.

    Only a power-of-two scale and a shift with a finite binary expansion are exact (HGQ2's
    HardSigmoidConfig has (0.25, 0.5)).
    """
    affine = getattr(q, 'affine', None)
    if affine is None:
        return None
    scale, shift = (float(a) for a in affine)
    e = math.log2(abs(scale)) if scale > 0 else math.nan
    f = next((f for f in range(64) if float(shift * 2.0 ** f).is_integer()), None)
    if not float(e).is_integer() or f is None:
        raise GraphError(f'{where}: {what} has affine={tuple(affine)}; only a positive power-of-two scale and an '
                         'exact binary shift are supported')
    return [int(e), int(shift * 2.0 ** f), f]


def _gate_spec(q: Any, n: int, where: str, what: str) -> tuple[QuantSpec | None, list[int] | None]:
    """A quantizer that may carry a post-quantization affine: (its spec without the affine, the affine)."""
    affine = _affine(q, where, what)
    if affine is None:
        return _spec(q, n, where, what), None
    if getattr(q, 'scaler', None) is not None:
        raise GraphError(f'{where}: {what} has both a scaler and an affine transform; not supported')
    return quantizer_spec(q.quantizer, (n,), where, what), affine


def _elements(spec: QuantSpec, affine: list[int] | None = None) -> dict[str, Any]:
    """The element_types of a quantizer point (with its affine, if any)."""
    out = {'k': spec.k.astype(int).tolist(), 'i': spec.i.astype(int).tolist(), 'f': spec.f.astype(int).tolist(),
           'rounding': spec.rounding, 'overflow': spec.overflow}
    if affine is not None:
        out['affine'] = affine
    return out


def _affine_type(t: FixedType, affine: list[int] | None) -> tuple[float, int]:
    """(bound, frac) of a quantizer's values after its affine."""
    if affine is None:
        return _bound(t), t.frac
    e, m, f = affine
    return _bound(t) * 2.0 ** e + abs(m) * 2.0 ** -f, max(t.frac - e, f)


def _bound(t: FixedType) -> float:
    """The largest magnitude of a type's values."""
    return max(abs(t.min_value), abs(t.max_value))


def _exact_type(bound: float, frac: int) -> FixedType:
    """A signed type holding every multiple of 2^-frac of magnitude <= bound."""
    integer = max(1, math.ceil(math.log2(bound + 2.0 ** -frac + 1))) + 1
    return FixedType(integer + frac, integer, True)


def _gain(w: np.ndarray, b: np.ndarray, x: float) -> float:
    """max over columns of sum |w| * x + |b|: a bound of x @ w + b for |x| <= x."""
    return float(np.max(np.abs(w).sum(axis=0) * x + np.abs(b))) if w.size else 0.0


def _check_layer(layer: Any, cell: Any, where: str) -> None:
    """Refuse the settings whose semantics this mapping does not reproduce."""
    if getattr(layer, 'stateful', False):
        raise GraphError(f'{where}: stateful=True is not supported (the state starts at zero on every inference)')
    if layer.return_state:
        raise GraphError(f'{where}: return_state=True is not supported for HGQ2 recurrent layers')
    if getattr(layer, 'enable_oq', False):
        raise GraphError(f'{where}: enable_oq=True is not supported for HGQ2 recurrent layers (add a Quantizer '
                         'layer after it)')
    for key, allowed in EXACT.items():
        fn = getattr(cell, key, None)
        name = K._activation_name(fn) if fn is not None else None
        if fn is not None and name not in allowed:
            raise GraphError(f'{where}: {key}={name or fn!r} is computed in float by HGQ2 between its quantizers and '
                             f'cannot be reproduced bit-exactly; supported: {list(allowed)}')


def _input(call: K._Call, graph: Graph, cell: Any) -> tuple[str, float, int]:
    """The per-step input quantizer as a Quantize node over (time, features): (node, bound, frac)."""
    steps, n_in = call.in_shapes[0]
    spec = _spec(cell.iq, n_in, call.where(), 'input quantizer (iq)') if getattr(cell, 'enable_iq', True) else None
    if spec is None:
        raise GraphError(f'{call.where()}: an HGQ2 recurrent layer needs its input quantizer (enable_iq=True)')
    full = QuantSpec(*(np.broadcast_to(a, (steps, n_in)).copy() for a in (spec.k, spec.i, spec.f)),
                     spec.rounding, spec.overflow)
    name = call.fresh(f'{call.layer.name}_iq')
    graph.add(make_node(name, 'Quantize', [call.inputs[0]], (steps, n_in), attrs=full.quantize_attrs(),
                        source='Quantizer'))
    _require_input(graph, call.inputs[0], full, call.where())
    t = spec.enclosing()
    return name, _bound(t), t.frac


def _weights(call: K._Call, cell: Any, gates: int) -> tuple[dict[str, np.ndarray], dict[str, FixedType]]:
    """HGQ2's quantized kernel, recurrent kernel and biases, with their types."""
    where, n = call.where(), int(cell.units)
    k, kt = quantized_weights(cell.kq, cell.qkernel, where, 'kernel')
    u, ut = quantized_weights(cell.rkq, cell.qrecurrent_kernel, where, 'recurrent kernel')
    zero, zt = np.zeros(gates * n), FixedType(1, 1, False)
    b, bt, rb, rbt = zero, zt, zero, zt
    if cell.use_bias:
        bias, _ = quantized_weights(cell.bq, cell.qbias, where, 'bias')
        bias = np.asarray(bias)
        if bias.ndim == 2:  # QGRU reset_after: (input bias, recurrent bias)
            b, rb = bias[0], bias[1]
            rbt = quantized_weights(None, rb, where, 'recurrent bias')[1]
        else:
            b = bias
        bt = quantized_weights(None, b, where, 'bias')[1]
    return ({'kernel': k, 'recurrent_kernel': u, 'bias': b, 'recurrent_bias': rb},
            {'weight': kt, 'recurrent_weight': ut, 'bias': bt, 'recurrent_bias': rbt})


def _simple_rnn_types(cell: Any, where: str, x: tuple[float, int], w: dict, wt: dict) -> tuple[dict, dict]:
    """(quantizer points, {'accum', 'result'}) of a QSimpleRNN cell."""
    n = int(cell.units)
    paq = _spec(cell.paq, n, where, 'pre-activation quantizer (paq)')
    if paq is None:
        raise GraphError(f'{where}: the pre-activation quantizer (paq) is disabled; the state would not be bounded')
    points = {'pre_activation': _elements(paq)}
    h = paq.enclosing()
    state = (_bound(h), h.frac)
    if getattr(cell, 'enable_sq', False):
        sq = _spec(cell.sq, n, where, 'state quantizer (sq)')
        if sq is not None:
            points['state'] = _elements(sq)
            state = (_bound(sq.enclosing()), sq.enclosing().frac)
    frac = max(x[1] + wt['weight'].frac, wt['bias'].frac, state[1] + wt['recurrent_weight'].frac)
    bound = _gain(w['kernel'], w['bias'], x[0]) + _gain(w['recurrent_kernel'], w['recurrent_bias'], state[0])
    result = FixedType(h.width + (1 if not h.signed else 0), h.integer + (1 if not h.signed else 0), True)
    return points, {'accum': _exact_type(bound, frac), 'result': result}


def _gru_types(cell: Any, where: str, x: tuple[float, int], w: dict, wt: dict) -> tuple[dict, dict]:
    """(quantizer points, {'accum', 'result'}) of a QGRU cell."""
    n = int(cell.units)
    quantizers = {'state': (cell.sq, 1, 'state quantizer (sq)'), 'gates': (cell.praq, 2, 'gate quantizer (praq)'),
                  'recurrent_h': (cell.rhq, 1, 'recurrent quantizer (rhq)'),
                  'candidate': (cell.paq, 1, 'candidate quantizer (paq)')}
    specs = {k: _gate_spec(q, m * n, where, what) for k, (q, m, what) in quantizers.items()}
    missing = [k for k, (v, _) in specs.items() if v is None]
    if missing:
        raise GraphError(f'{where}: the quantizers {missing} are disabled; QGRU needs sq, praq, rhq and paq')
    bf = {k: _affine_type(v.enclosing(), affine) for k, (v, affine) in specs.items()}
    qh, z, rh, hc = (bf[k][0] for k in ('state', 'gates', 'recurrent_h', 'candidate'))
    fq, fz, frh, fhc = (bf[k][1] for k in ('state', 'gates', 'recurrent_h', 'candidate'))
    kx = _gain(w['kernel'], w['bias'], x[0])
    uh = _gain(w['recurrent_kernel'], w['recurrent_bias'], qh)
    uh_rh = _gain(w['recurrent_kernel'][:, 2 * n:], w['recurrent_bias'][2 * n:], rh)
    bound = kx + uh + z * max(uh, rh) + uh_rh + hc * (1 + z)
    frac = max(x[1] + wt['weight'].frac, wt['bias'].frac, fq + wt['recurrent_weight'].frac,
               wt['recurrent_bias'].frac, fz + frh, frh + wt['recurrent_weight'].frac, fz, fhc)
    result = _exact_type(z * qh + (1 + z) * hc, fz + max(fq, fhc))
    return {k: _elements(*v) for k, v in specs.items()}, {'accum': _exact_type(bound, frac), 'result': result}


def qrnn(call: K._Call, graph: Graph) -> str:
    """QSimpleRNN / QGRU -> [iq] Quantize, the SimpleRNN/GRU node with its quantizer points, its output Select."""
    layer, where = call.layer, call.where()
    cell = layer.cell
    if len(call.inputs) != 1:
        raise GraphError(f'{where}: initial states are not supported for HGQ2 recurrent layers')
    _check_layer(layer, cell, where)
    op = 'GRU' if type(layer).__name__ == 'QGRU' else 'SimpleRNN'
    src, x_bound, x_frac = _input(call, graph, cell)
    weights, wtypes = _weights(call, cell, 3 if op == 'GRU' else 1)
    typing = _gru_types if op == 'GRU' else _simple_rnn_types
    points, types = typing(cell, where, (x_bound, x_frac), weights, wtypes)
    n, steps = int(cell.units), call.in_shapes[0][0]
    attrs: dict[str, Any] = {'units': n, 'activation': K._activation_name(cell.activation) or 'linear',
                             'return_sequences': bool(layer.return_sequences), 'go_backwards': bool(layer.go_backwards),
                             'quantizers': points}
    if op == 'GRU':
        attrs.update(recurrent_activation=K._activation_name(cell.recurrent_activation) or 'linear',
                     reset_after=bool(cell.reset_after))
    shape = (steps, n) if layer.return_sequences else (n,)
    node = make_node(call.fresh(f'{call.name}_cell'), op, [src], shape, attrs=attrs, weights=weights,
                     source=type(layer).__name__)
    graph.add(_fixed(node, **wtypes, **types, table=types['accum']))
    graph.add(make_node(call.name, 'Select', [node.name], shape, attrs={'index': 0}, source='Select'))
    return call.name


HANDLERS = {'QSimpleRNN': qrnn, 'QGRU': qrnn}
