"""The composed constructs (semantics/compose.py): einsum and scan through all four interpreters.

Each test runs a throwaway recipe with `run_four` (tests/test_semantics.py: numpy == netlist bit for
bit, every value inside its bounds) and compares the numpy result with a slow Python reference on
integers; a negative control changes one input bit or one weight (or the summation order) and the
comparison must then fail.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fpga4ml.intervals import Interval, type_for
from fpga4ml.ir import GraphError, Node
from fpga4ml.semantics.bounds import Bounds
from fpga4ml.semantics.compose import einsum, parse_einsum, scan
from fpga4ml.semantics.primitives import Const
from test_semantics import N, T, run_four, slow_cast

A_T, B_T = T('fixed<6,2>'), T('fixed<5,1>')  # LSBs 2^-4 and 2^-4: products at 2^-8


# ---------------------------------------------------------------------------------------- einsum
def slow_einsum(spec: str, a: np.ndarray, b: np.ndarray, frac: int, acc=None, reverse: bool = False) -> np.ndarray:
    """Per sample, on Python ints: exact products summed exactly, or hls4ml-style in `acc`.

    The terms come in C order of the contracted letters (first appearance in the spec);
    `reverse` sums them backwards (a negative control).
    """
    (la, lb), out, contracted, sizes = parse_einsum(Node('ref', 'Quantize', [], (1,)), spec,
                                                    [a.shape[1:], b.shape[1:]])
    terms = list(itertools.product(*[range(sizes[c]) for c in contracted]))
    terms = terms[::-1] if reverse else terms
    result = np.zeros((len(a),) + tuple(sizes[c] for c in out), dtype=object)
    for r in range(len(a)):
        for o in itertools.product(*[range(sizes[c]) for c in out]):
            s = 0
            for k in terms:
                idx = dict(zip(out + contracted, o + k))
                prod = int(a[(r,) + tuple(idx[c] for c in la)]) * int(b[(r,) + tuple(idx[c] for c in lb)])
                s = s + prod if acc is None else slow_cast(s + slow_cast(prod, frac, acc), acc.frac, acc)
            result[(r,) + o] = s if terms or acc is None else slow_cast(s, frac, acc)
    return result


CONTRACTIONS = [('ij,jk->ik', (3, 4), (4, 2)),
                ('hqd,hkd->hqk', (2, 3, 4), (2, 5, 4)),
                ('ij,ij->ij', (3, 4), (3, 4)),
                ('i,i->', (6,), (6,)),
                ('ijk,jkl->il', (2, 3, 2), (3, 2, 2))]


@pytest.mark.parametrize('spec, a_shape, b_shape', CONTRACTIONS)
def test_einsum_exact(spec, a_shape, b_shape):
    """Exact products and sums: numpy == netlist == the slow reference == float; inside the bounds."""
    y, yf, bounds, (a, b) = run_four(lambda p, u, v: einsum(p, spec, u, v), [A_T, B_T], [a_shape, b_shape])
    frac = A_T.frac + B_T.frac
    assert bounds.frac == frac
    want = slow_einsum(spec, a, b, frac)
    assert y.tolist() == want.tolist()
    np.testing.assert_array_equal(yf, want.astype(np.float64))
    np.testing.assert_array_equal(y, np.einsum(_batched(spec), a, b))  # a second, independent reference
    flipped = a.copy()
    flipped.reshape(N, -1)[:, 0] ^= 1  # negative control: one input bit
    assert slow_einsum(spec, flipped, b, frac).tolist() != y.tolist()


def _batched(spec: str) -> str:
    """The spec with a batch letter in front of every operand and the output (for numpy.einsum)."""
    lhs, out = spec.split('->')
    return ','.join('Z' + s for s in lhs.split(',')) + '->Z' + out


@pytest.mark.parametrize('acc', ['fixed<7,2,TRN,SAT>', 'fixed<7,2,RND_CONV,SAT_SYM>', 'fixed<7,2,RND,WRAP>'])
@pytest.mark.parametrize('spec, a_shape, b_shape', [CONTRACTIONS[0], CONTRACTIONS[1], CONTRACTIONS[4]])
def test_einsum_accumulates_like_hls4ml(spec, a_shape, b_shape, acc):
    """Every product cast into acc, summed from 0 in C order of the contracted letters, each partial sum cast."""
    acc_t = T(acc)
    y, yf, _, (a, b) = run_four(lambda p, u, v: einsum(p, spec, u, v, acc='accum'), [A_T, B_T],
                                [a_shape, b_shape], {'accum': acc_t})
    frac = A_T.frac + B_T.frac
    assert y.tolist() == slow_einsum(spec, a, b, frac, acc_t).tolist()
    exact = slow_einsum(spec, a, b, frac)
    np.testing.assert_array_equal(yf, exact.astype(np.float64) * 2.0 ** (acc_t.frac - frac))  # float: no casts
    # negative controls: casting only the exact sum once, and (saturating) summing in reverse order
    assert [[slow_cast(v, frac, acc_t) for v in row] for row in exact.reshape(N, -1).tolist()] != \
        y.reshape(N, -1).tolist()
    if acc_t.overflow != 'WRAP':
        assert slow_einsum(spec, a, b, frac, acc_t, reverse=True).tolist() != y.tolist()


def test_einsum_fixed_type_accumulator_and_elementwise_cast():
    """acc may be a FixedType; without contracted letters the products are only cast into it."""
    acc_t = T('fixed<5,1,RND,SAT>')
    y, _, _, (a, b) = run_four(lambda p, u, v: einsum(p, 'ij,ij->ij', u, v, acc=acc_t), [A_T, B_T], [(2, 3), (2, 3)])
    want = [[slow_cast(int(u) * int(v), 8, acc_t) for u, v in zip(ra, rb)]
            for ra, rb in zip(a.reshape(N, -1).tolist(), b.reshape(N, -1).tolist())]
    assert y.reshape(N, -1).tolist() == want
    assert y.reshape(N, -1).tolist() != [[slow_cast(int(u) * int(v), 8, T('fixed<5,1,TRN,SAT>'))
                                          for u, v in zip(ra, rb)]
                                         for ra, rb in zip(a.reshape(N, -1).tolist(), b.reshape(N, -1).tolist())]


def test_einsum_auto_accumulator_holds_the_exact_sums():
    """Typed by the interval interpreter with its default 'auto' rule, acc is the exact type of the sums."""
    node = Node('t', 'Quantize', [], (1,))
    ivs = [Interval.of_type(A_T, (3, 4)), Interval.of_type(B_T, (4, 2))]
    typing = {'default': T('fixed<8,3>'), 'maximum': None}
    exact = einsum(Bounds(node, [A_T, B_T], typing), 'ij,jk->ik', *ivs, acc='accum')
    assert node.types['accum'] == type_for(einsum(Bounds(node, [A_T, B_T]), 'ij,jk->ik', *ivs))
    y, _, _, (a, b) = run_four(lambda p, u, v: einsum(p, 'ij,jk->ik', u, v, acc='accum'), [A_T, B_T],
                               [(3, 4), (4, 2)], {'accum': node.types['accum']})
    assert y.tolist() == slow_einsum('ij,jk->ik', a, b, 8).tolist()
    assert exact.frac == 8


@pytest.mark.parametrize('spec, shapes, words', [
    ('ij,jk', [(2, 3), (3, 2)], "one '->'"),
    ('...j,jk->k', [(2, 3), (3, 2)], 'ellipsis'),
    ('ij->ij', [(2, 3), (3, 2)], 'exactly 2 operands'),
    ('ii,ij->j', [(2, 2), (2, 2)], 'repeats'),
    ('ij,jk->ikk', [(2, 3), (3, 2)], 'repeats'),
    ('ij,jk->iz', [(2, 3), (3, 2)], 'appear in no operand'),
    ('i1,jk->ik', [(2, 3), (3, 2)], 'not letters'),
    ('ijk,jk->ik', [(2, 3), (3, 2)], 'letters'),
    ('ij,jk->ik', [(2, 3), (4, 2)], "letter 'j' has size 3"),
])
def test_einsum_spec_errors_name_the_layer(spec, shapes, words):
    ivs = [Interval.of_type(A_T, s) for s in shapes]
    with pytest.raises(GraphError, match=f"layer 't': einsum .*{words}"):
        einsum(Bounds(Node('t', 'Quantize', [], (1,)), [A_T, A_T]), spec, *ivs)


# ---------------------------------------------------------------------------------------- scan
STATE = T('fixed<9,3,RND,SAT>')  # LSB 2^-6
X_T = T('fixed<8,3>')  # LSB 2^-5
W = Const(np.asarray([11, -7, 19]), 4)  # weights at LSB 2^-4
ORDERS = [(False, 'time'), (True, 'time'), (True, 'steps')]


def run_order(reverse: bool, n: int) -> list[int]:
    """The time steps in the order a scan runs them."""
    return list(range(n - 1, -1, -1) if reverse else range(n))


def stacked(ys: dict, reverse: bool, ys_order: str) -> list:
    """ys stacked as scan stacks them (ys: time -> value)."""
    return [ys[t] for t in (sorted(ys) if ys_order == 'time' else run_order(reverse, len(ys)))]


def linear_recurrence(x: np.ndarray, w: np.ndarray, reverse: bool, ys_order: str, state=STATE) -> list:
    """h_t = cast(h_{t-1} * w + x_t) per sample on Python ints; returns [ys..., final h] flattened per sample."""
    frac = max(state.frac + W.frac, X_T.frac)
    rows = []
    for xr in x.tolist():
        h, ys = [0] * len(w), {}
        for t in run_order(reverse, len(xr)):
            h = [slow_cast((hi * int(wi) << frac - state.frac - W.frac) + (xi << frac - X_T.frac), frac, state)
                 for hi, wi, xi in zip(h, w, xr[t])]
            ys[t] = h
        rows.append(sum(stacked(ys, reverse, ys_order), []) + h)
    return rows


def linear_recipe(reverse: bool, ys_order: str, cast: bool = True):
    """A recipe running h_t = cast(h * w + x_t, 'state') from h = 0; returns ys and the final h, flattened."""
    def step(p, x_t, h):
        v = p.add(p.mul(h, p.const(W)), x_t)
        h = p.cast(v, 'state') if cast else v
        return (h,), h

    def recipe(p, x):
        n = p.shape(x)
        ys, (h,) = scan(p, step, x, (p.const(Const(np.zeros(n[1], dtype=np.int64), 0)),), ('state',),
                        reverse=reverse, ys_order=ys_order)
        return p.concat([p.reshape(ys, (n[0] * n[1],)), h], 0)
    return recipe


@pytest.mark.parametrize('reverse, ys_order', ORDERS)
def test_scan_linear_recurrence(reverse, ys_order):
    """h_t = cast(h_{t-1} * w + x_t): numpy == netlist == a Python loop over ints; the float loop has no casts."""
    y, yf, bounds, (x,) = run_four(linear_recipe(reverse, ys_order), [X_T], [(5, 3)], {'state': STATE})
    assert bounds.frac == STATE.frac
    assert y.tolist() == linear_recurrence(x, W.values, reverse, ys_order)
    real = x * 2.0 ** -X_T.frac  # the float meaning: the same loop without casts
    h, ys = np.zeros((N, 3)), {}
    for t in run_order(reverse, 5):
        h = ys[t] = h * (W.values * 2.0 ** -W.frac) + real[:, t]
    want = np.concatenate([np.stack(stacked(ys, reverse, ys_order), 1).reshape(N, -1), h], 1)
    np.testing.assert_allclose(yf * 2.0 ** -bounds.frac, want, rtol=0, atol=1e-12)
    # negative controls: one weight, one input bit, the other running order
    assert y.tolist() != linear_recurrence(x, W.values + np.asarray([0, 1, 0]), reverse, ys_order)
    flipped = x.copy()
    flipped[:, 0, 0] ^= 1
    assert y.tolist() != linear_recurrence(flipped, W.values, reverse, ys_order)
    assert y.tolist() != linear_recurrence(x, W.values, not reverse, ys_order)


ACC = T('fixed<10,4,TRN,SAT>')  # LSB 2^-6


def product_recurrence(x, m, h0, reverse: bool, ys_order: str) -> list:
    """h_t = cast(sum_i cast_acc(h_i * m_t[i, j]) + x_t[j]) per sample on Python ints (hls4ml accumulate)."""
    frac = max(ACC.frac, X_T.frac)
    rows = []
    for xr, mr, h in zip(x.tolist(), m.tolist(), h0.tolist()):
        ys = {}
        for t in run_order(reverse, len(xr)):
            sums = []
            for j in range(len(h)):
                s = 0
                for i in range(len(h)):
                    s = slow_cast(s + slow_cast(h[i] * mr[t][i][j], STATE.frac + X_T.frac, ACC), ACC.frac, ACC)
                sums.append(s)
            h = [slow_cast((s << frac - ACC.frac) + (xj << frac - X_T.frac), frac, STATE) for s, xj in zip(sums, xr[t])]
            ys[t] = h
        rows.append(sum(stacked(ys, reverse, ys_order), []) + h)
    return rows


@pytest.mark.parametrize('reverse, ys_order', ORDERS)
def test_scan_with_a_two_variable_product(reverse, ys_order):
    """A step with h @ m_t (two variables, einsum with an accumulator), xs a tuple, init an input."""
    def step(p, xm, h):
        x_t, m_t = xm
        h = p.cast(p.add(einsum(p, 'i,ij->j', h, m_t, acc='accum'), x_t), 'state')
        return (h,), h

    def recipe(p, x, m, h0):
        ys, (h,) = scan(p, step, (x, m), (h0,), ('state',), reverse=reverse, ys_order=ys_order)
        return p.concat([p.reshape(ys, (12,)), h], 0)
    y, _, _, (x, m, h0) = run_four(recipe, [X_T, X_T, STATE], [(4, 3), (4, 3, 3), (3,)],
                                   {'state': STATE, 'accum': ACC})
    assert y.tolist() == product_recurrence(x, m, h0, reverse, ys_order)
    flipped = m.copy()
    flipped[:, 2, 1, 0] ^= 1  # negative control: one bit of m at the last time step
    assert y.tolist() != product_recurrence(x, flipped, h0, reverse, ys_order)
    assert y.tolist() != product_recurrence(x, m, h0, not reverse, ys_order)


def _bounds_scan(step, init_frac: int = 0, typing=None, types=None):
    node = Node('t', 'Quantize', [], (1,), types=dict(types or {}))
    b = Bounds(node, [X_T], typing)
    init = b.const(Const(np.zeros(3, dtype=np.int64), init_frac))
    return node, scan(b, step, Interval.of_type(X_T, (5, 3)), (init,), ('state',))


def test_scan_refuses_a_state_the_step_does_not_cast():
    """A state that grows (h + x_t, or h * w + x_t) is not enclosed by its type: a GraphError names the layer."""
    with pytest.raises(GraphError, match=r"layer 't': scan: the state after step 1, value 0.*'state'"):
        _bounds_scan(lambda p, x_t, h: ((p.add(h, x_t),), None), types={'state': X_T})
    with pytest.raises(GraphError, match=r"layer 't': scan: the state after step 1.*LSB 2\^-9"):
        _bounds_scan(lambda p, x_t, h: ((p.add(p.mul(h, p.const(W)), x_t),), None), types={'state': STATE})
    with pytest.raises(GraphError, match="layer 't': scan: the initial state"):
        _bounds_scan(lambda p, x_t, h: ((p.cast(p.add(h, x_t), 'state'),), None), init_frac=8,
                     types={'state': STATE})
    # the cast keeps every state in its type, however far the exact state would grow
    node, (ys, (h,)) = _bounds_scan(lambda p, x_t, h: ((p.cast(p.add(h, p.shift(x_t, 3)), 'state'),), None),
                                    types={'state': STATE})
    assert ys is None and h.frac == STATE.frac and h.min >= STATE.min_mantissa


def test_scan_types_a_state_variable_once():
    """The first step types 'state' (its auto rule runs once); every later step reuses that type."""
    calls = []

    def auto(value):
        calls.append(value)
        return STATE

    def step(p, x_t, h):
        h = p.cast(p.add(p.mul(h, p.const(W)), x_t), 'state', auto)
        return (h,), h
    node, (ys, _) = _bounds_scan(step, typing={'default': T('fixed<8,3>'), 'maximum': None})
    assert len(calls) == 1 and node.types['state'] == STATE
    assert ys.lo.shape == (5, 3) and ys.frac == STATE.frac


def test_scan_argument_errors_name_the_layer():
    node = Node('t', 'Quantize', [], (1,), types={'state': STATE})
    b = Bounds(node, [X_T])
    h0 = b.const(Const(np.zeros(3, dtype=np.int64), 0))
    same = (lambda p, x_t, h: ((h,), h))
    with pytest.raises(GraphError, match="layer 't': scan needs sequences of one nonzero length"):
        scan(b, same, (Interval.of_type(X_T, (5, 3)), Interval.of_type(X_T, (4, 3))), (h0,), ('state',))
    with pytest.raises(GraphError, match="layer 't': scan has 1 state values but 2"):
        scan(b, same, Interval.of_type(X_T, (5, 3)), (h0,), ('state', 'state'))
    with pytest.raises(GraphError, match="layer 't': scan step 0 returned 2 state values"):
        scan(b, lambda p, x_t, h: ((h, h), h), Interval.of_type(X_T, (5, 3)), (h0,), ('state',))
    with pytest.raises(GraphError, match="layer 't': scan ys_order 'backwards'"):
        scan(b, same, Interval.of_type(X_T, (5, 3)), (h0,), ('state',), ys_order='backwards')
