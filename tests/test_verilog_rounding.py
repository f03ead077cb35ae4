"""Rounding casts fold into the adder tree they round (netlist.Netlist.cast, RND only).

round half up(a) = floor(a + half): the half joins the sum's constant leaf (a bias); the cast itself
then only drops bits and saturates. Without a constant the cast keeps its rounding. Checked against
FixedType.cast on random sums, with controls.
"""

from __future__ import annotations

import numpy as np
import pytest

from fpga4ml.backends.verilog.adder_graph import constant_matvec
from fpga4ml.backends.verilog.netlist import Netlist
from fpga4ml.fixed import FixedType

IN_T = FixedType(8, 3)  # inputs: frac 5
RNG = np.random.default_rng(7)
WEIGHTS = RNG.integers(-40, 41, (12, 5))  # mantissas at frac 5: products at frac 10


def rounded_layer(bias: bool, t: FixedType, narrow: bool = False):
    """(netlist, the cast signals) of y = cast_t(x @ W (+ b)) on 12 inputs."""
    nl = Netlist()
    xs = nl.add_input('x', (12,), IN_T)
    consts = RNG.integers(-900, 900, 5).tolist() if bias else None
    sums = constant_matvec(nl, xs, WEIGHTS, consts, frac=10)
    if narrow:  # a fact the rounding must keep: the sum is assumed >= 0 (inputs chosen so)
        sums = [nl.narrow(s, lo=0) for s in sums]
    ys = [nl.cast(s, t) for s in sums]
    nl.add_output('y', (5,), t, ys)
    return nl, consts


def reference(x: np.ndarray, consts, t: FixedType) -> np.ndarray:
    acc = x @ WEIGHTS + (0 if consts is None else np.asarray(consts))
    return t.cast(acc, 10)


def inputs(n: int, positive: bool = False) -> np.ndarray:
    x = RNG.integers(IN_T.min_mantissa, IN_T.max_mantissa + 1, (n, 12))
    return np.abs(x) * np.sign(WEIGHTS.sum(axis=1)) if positive else x


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('t', [FixedType(8, 4, True, 'RND', 'SAT'), FixedType(6, 2, True, 'RND', 'WRAP'),
                               FixedType(10, 7, True, 'RND', 'SAT_SYM')], ids=str)
def test_rounding_folds_into_the_sum_and_keeps_the_bits(bias, t):
    nl, consts = rounded_layer(bias, t)
    x = inputs(20_000)
    got = nl.evaluate([x])[0]
    assert np.array_equal(got, reference(x, consts, t))
    rounding = [s for s in nl.signals if s.op == 'cast' and s.p['type'].rounding != 'TRN']
    assert len(rounding) == (0 if bias else 5)  # with a bias no rounding adder is left
    if bias:  # negative control: the folded half one LSB of the sum off changes the results
        target = next(s for s in reversed(nl.signals) if s.op == 'const' and s.p['value'] != 0)
        target.p['value'] += 1
        assert not np.array_equal(nl.evaluate([x])[0], got)


def test_a_bias_takes_the_half_without_an_adder():
    t = FixedType(8, 4, True, 'RND', 'SAT')
    plain, _ = rounded_layer(True, FixedType(8, 4, True, 'TRN', 'SAT'))
    folded, _ = rounded_layer(True, t)
    live = {s for port in folded.outputs for s in port.signals}
    stack, reached = list(live), set()
    while stack:
        s = stack.pop()
        if s not in reached:
            reached.add(s)
            stack.extend(folded[s].args)
    adds = sum(folded[s].op == 'add' for s in reached)
    assert adds == plain.stats()['add']  # the same adders as truncation: the rounding costs none


def test_facts_narrowed_into_the_sum_survive_the_fold():
    t = FixedType(8, 4, False, 'RND', 'SAT')
    nl, consts = rounded_layer(True, t, narrow=True)
    for port in nl.outputs:
        for s in port.signals:
            assert nl[s].lo >= 0
    x = inputs(5_000, positive=True)
    acc = x @ WEIGHTS + np.asarray(consts)
    keep = np.all(acc >= 0, axis=1)
    assert keep.sum() > 100
    assert np.array_equal(nl.evaluate([x[keep]])[0], reference(x[keep], consts, t))


def test_a_sum_read_elsewhere_keeps_its_rounding_adder():
    nl = Netlist()
    xs = nl.add_input('x', (12,), IN_T)
    s, = constant_matvec(nl, xs, WEIGHTS[:, :1], [300], frac=10)
    other = nl.add(s, s)  # a second reader before the cast: rebuilding the tree would duplicate it
    t = FixedType(8, 4, True, 'RND', 'SAT')
    y = nl.cast(s, t)
    assert nl[y].op == 'cast' and nl[y].p['type'].rounding == 'RND' and nl[y].args == (s,)
    nl.add_output('y', (1,), t, [y])
    nl.add_output('o', (1,), FixedType(nl[other].width, nl[other].width - 10), [other])
    x = inputs(3_000)
    assert np.array_equal(nl.evaluate([x])[0][:, 0], t.cast(x @ WEIGHTS[:, 0] + 300, 10))


def test_a_rounded_clip_of_a_sum_stays_exact():
    """cast(min(max(s, -1), 1)) with rounding: the clip fits the wrapping type, s does not."""
    nl = Netlist()
    xs = nl.add_input('x', (12,), IN_T)
    s, = constant_matvec(nl, xs, WEIGHTS[:, :1], [300], frac=10)
    one = 1 << 10
    t = FixedType(6, 2, True, 'RND', 'WRAP')
    y = nl.cast(nl.minimum(nl.maximum(s, nl.const(-one, 10)), nl.const(one, 10)), t)
    nl.add_output('y', (1,), t, [y])
    x = inputs(3_000)
    want = t.cast(np.clip(x @ WEIGHTS[:, 0] + 300, -one, one), 10)
    assert np.array_equal(nl.evaluate([x])[0][:, 0], want)


@pytest.mark.parametrize('n', [2, 16, 64, 12])
def test_a_division_by_a_power_of_two_is_one_adder_and_truncates_toward_zero(n):
    nl = Netlist()
    xs = nl.add_input('x', (12,), IN_T)
    s, = constant_matvec(nl, xs, WEIGHTS[:, :1], [301], frac=10)
    q = nl.divc(s, n)
    nl.add_output('q', (1,), FixedType(nl[q].width, nl[q].width - 10), [q])
    x = inputs(5_000)
    acc = x @ WEIGHTS[:, 0] + 301
    want = np.trunc(acc / n).astype(np.int64)
    got = nl.evaluate([x])[0][:, 0]
    assert np.array_equal(got, want) and (acc < 0).mean() > 0.2 and (acc % n != 0).mean() > 0.2
    assert (nl[q].op == 'divc') == (n & (n - 1) != 0)
    if n & (n - 1) == 0:  # negative control: floor division differs from truncation on negative sums
        assert not np.array_equal(got, acc // n)


@pytest.mark.parametrize('k', [2, 4])
def test_a_multiple_of_the_divisor_divides_by_a_shift(k):
    """An average's sum of terms shifted by k (its accumulator has k more fractional bits) divides by 2^k exactly:
    no correction adder; a sum that is not such a multiple keeps it (control)."""
    nl = Netlist()
    xs = nl.add_input('x', (12,), IN_T)
    shifted = [nl.shl(x, k, frac=nl[x].frac + k) for x in xs]  # x at k more fractional bits: 2^k times its mantissa
    total = shifted[0]
    for s in shifted[1:]:
        total = nl.add(total, s)
    q = nl.divc(total, 1 << k)
    nl.add_output('q', (1,), FixedType(nl[q].width, nl[q].width - nl[q].frac), [q])
    x = inputs(3_000)
    assert np.array_equal(nl.evaluate([x])[0][:, 0], x.sum(axis=1))  # (sum * 2^k) / 2^k
    assert (x.sum(axis=1) < 0).mean() > 0.2
    assert sum(s.op == 'add' for s in nl.signals) == 11 and nl.zero_lsbs_of(total) == k
    odd = nl.add(total, nl.const(1, nl[total].frac))  # control: not a multiple of 2^k, the adder stays
    adds = sum(s.op == 'add' for s in nl.signals)
    nl.divc(odd, 1 << k)
    assert sum(s.op == 'add' for s in nl.signals) == adds + 1
