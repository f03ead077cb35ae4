"""Constructs composed from the primitives: a two-variable contraction (`einsum`) and a loop (`scan`).

Both are plain functions of an interpreter `p` that call only primitives (gather, mul, cast,
reduce, concat, reshape), so the four interpreters (bounds, numpy, netlist, float) run them with
no code of their own, exactly like a recipe. They name the node in their errors through `p.node`.

einsum(p, spec, a, b, acc=None)
    The product of two variable tensors contracted over the letters the output does not name.
    Every product a*b is exact (its LSB is the sum of the LSBs). With acc=None the sum is exact;
    with an accumulator (a type variable of the node or a FixedType) every product is cast into
    it and the products are summed there, starting from 0, with every partial sum cast into it
    (hls4ml's ``acc += cast<accum_t>(a * b)``). The terms of one sum come in C order of the
    contracted letters, the letters taken in the order they first appear in the spec (the first
    operand's, then the second's): for 'ijk,jkl->il' the terms are (j, k) = (0, 0), (0, 1), ...

scan(p, step, xs, init, state_types, reverse=False, ys_order='time')
    A loop over axis 0 of `xs`, unrolled: step t sees the state after step t-1. A step casts its
    new state into the node's state type variables; the first step types them (configured, or
    their 'auto' rule) and every later step reuses the same types. A state variable's 'auto' rule
    must therefore not depend on the value ('exact', or a function of the value, would type the
    state from step 0 alone, and later steps, whose state may grow, would overflow): use
    'default', 'input', another variable or a FixedType. The interval interpreter checks every
    state value (init included) against its type and raises a GraphError naming the node when
    one is not enclosed (the step forgot to cast it).
"""

from __future__ import annotations

import string
from typing import Callable

import numpy as np

from ..fixed import FixedType
from ..intervals import Interval, type_for
from ..ir import GraphError

LETTERS = frozenset(string.ascii_letters)


# ---------------------------------------------------------------------------------------- einsum
def parse_einsum(node, spec: str, shapes: list[tuple[int, ...]]) -> tuple[list[str], str, str, dict[str, int]]:
    """The operand letters, output letters, contracted letters and letter sizes of a checked spec."""
    where = f'layer {node.name!r}: einsum {spec!r}'
    if not isinstance(spec, str) or spec.count('->') != 1:
        raise GraphError(f"{where}: the spec needs exactly one '->' (e.g. 'ij,jk->ik')")
    if '.' in spec:
        raise GraphError(f'{where}: an ellipsis (...) is not supported; name every axis with a letter')
    lhs, out = spec.replace(' ', '').split('->')
    operands = lhs.split(',')
    if len(operands) != 2:
        raise GraphError(f'{where}: needs exactly 2 operands, got {len(operands)}')
    for name, letters in zip(('first operand', 'second operand', 'output'), operands + [out]):
        bad = sorted(set(letters) - LETTERS)
        if bad:
            raise GraphError(f'{where}: the {name} {letters!r} has characters that are not letters: {bad}')
        repeated = sorted({c for c in letters if letters.count(c) > 1})
        if repeated:
            raise GraphError(f'{where}: the {name} {letters!r} repeats the letters {repeated} '
                             '(diagonals are not supported)')
    missing = sorted(set(out) - set(lhs))
    if missing:
        raise GraphError(f'{where}: the output letters {missing} appear in no operand')
    sizes: dict[str, int] = {}
    for k, (letters, shape) in enumerate(zip(operands, shapes)):
        if len(letters) != len(shape):
            raise GraphError(f'{where}: operand {k} has per-sample shape {tuple(shape)} but {len(letters)} '
                             f'letters {letters!r}')
        for c, n in zip(letters, shape):
            if sizes.setdefault(c, n) != n:
                raise GraphError(f'{where}: letter {c!r} has size {sizes[c]} in one operand and {n} in another')
    contracted = ''.join(dict.fromkeys(c for c in lhs if c in LETTERS and c not in out))
    return operands, out, contracted, sizes


def einsum_index(letters: str, shape: tuple[int, ...], joint: str, sizes: dict[str, int]) -> np.ndarray:
    """Flat indices into an operand (letters, shape) for every point of the joint index space `joint`."""
    grid = np.indices([sizes[c] for c in joint], dtype=np.int64)
    strides = np.cumprod((1,) + tuple(shape[:0:-1]))[::-1]  # C-order strides of the operand
    index = np.zeros([sizes[c] for c in joint], dtype=np.int64)
    for c, stride in zip(letters, strides):
        index = index + grid[joint.index(c)] * int(stride)
    return index


def exact_sum_type(products: Interval) -> FixedType:
    """The narrowest type holding every exact sum of the products over the last axis (an 'auto' rule)."""
    total = Interval(np.asarray(np.sum(products.lo, axis=-1), dtype=object),
                     np.asarray(np.sum(products.hi, axis=-1), dtype=object), products.frac)
    return type_for(total)


def einsum(p, spec: str, a, b, acc: str | FixedType | None = None, auto=exact_sum_type):
    """The contraction `spec` of two variable tensors: exact products, summed exactly or in `acc` (hls4ml).

    acc: None (the exact sum), or a type variable of the node / a FixedType into which every product
    and every partial sum is cast, in C order of the contracted letters. auto: the 'auto' rule of an
    acc variable (by default the narrowest type holding the exact sums).
    """
    (la, lb), out, contracted, sizes = parse_einsum(p.node, spec, [p.shape(a), p.shape(b)])
    joint = out + contracted
    out_shape = tuple(sizes[c] for c in out)
    merged = out_shape + ((int(np.prod([sizes[c] for c in contracted], dtype=np.int64)),) if contracted else ())
    ga = p.gather(a, einsum_index(la, p.shape(a), joint, sizes).reshape(merged))
    gb = p.gather(b, einsum_index(lb, p.shape(b), joint, sizes).reshape(merged))
    products = p.mul(ga, gb)
    if acc is not None:
        products = p.cast(products, acc, auto if contracted else 'exact')
    if not contracted:
        return products
    return p.reduce(products, 'sum', axis=-1, acc=acc)


# ---------------------------------------------------------------------------------------- scan
YS_ORDERS = ('time', 'steps')


def time_slice(p, x, t: int):
    """x[t] along axis 0 (a gather)."""
    shape = p.shape(x)
    inner = int(np.prod(shape[1:], dtype=np.int64))
    return p.gather(x, np.arange(t * inner, (t + 1) * inner, dtype=np.int64).reshape(shape[1:]))


def stack(p, ys: list):
    """The values of `ys` (one shape) stacked on a new axis 0 (reshape + concat)."""
    return p.concat([p.reshape(y, (1,) + tuple(p.shape(y))) for y in ys], 0)


def _sequence_length(p, xs: tuple) -> int:
    lengths = [p.shape(x)[0] if p.shape(x) else 0 for x in xs]
    if not xs or lengths[0] == 0 or len(set(lengths)) != 1:
        raise GraphError(f'layer {p.node.name!r}: scan needs sequences of one nonzero length on axis 0, got '
                         f'per-sample shapes {[tuple(p.shape(x)) for x in xs]}')
    return lengths[0]


def check_state(p, state: tuple, state_types: tuple, t: int) -> None:
    """In the interval interpreter: every state value lies in its state type (else the step forgot a cast)."""
    if not all(isinstance(value, Interval) for value in state):
        return  # only the interval interpreter holds bounds; the others run the same recipe after it
    for k, (value, var) in enumerate(zip(state, state_types)):
        typ = var if isinstance(var, FixedType) else p.type(var)
        fits = value.frac <= typ.frac
        if fits:
            aligned = value.align(typ.frac)
            fits = aligned.min >= typ.min_mantissa and aligned.max <= typ.max_mantissa
        if not fits:
            what = 'the initial state' if t < 0 else f'the state after step {t}'
            raise GraphError(f'layer {p.node.name!r}: scan: {what}, value {k}, has bounds [{value.min}, {value.max}] '
                             f'at LSB 2^-{value.frac}, not enclosed by its state type {var!r} = {typ}; '
                             'cast the new state into its type in the step')


def scan(p, step: Callable, xs, init, state_types, reverse: bool = False, ys_order: str = 'time'):
    """Unrolled loop over axis 0 of `xs`: ``state, y_t = step(p, x_t, *state)``; returns (ys, final state).

    xs: a value or a tuple of values of one length T on axis 0 (x_t is then a value or a tuple).
    init, state_types: the initial state tuple and, per state value, its type (a type variable of the
    node the step casts into, or a FixedType). reverse: run t = T-1, ..., 0. ys_order: 'time' stacks
    ys[t] = the output of the step on x_t; 'steps' stacks in the order the steps ran (with reverse,
    ys[0] is the output of x_{T-1}: Keras' go_backwards). A step may return y_t = None: ys is then None.
    An interpreter with a `fused_scan` method may run the whole loop itself, with the same step (the
    numpy interpreter: one numba program, emulator/fast.py ScanMachine); it returns None to decline.
    """
    if ys_order not in YS_ORDERS:
        raise GraphError(f'layer {p.node.name!r}: scan ys_order {ys_order!r} is not one of {YS_ORDERS}')
    fused = getattr(p, 'fused_scan', None)  # an interpreter may run the whole loop at once (numpy: numba)
    if fused is not None:
        done = fused(step, xs, init, state_types, reverse, ys_order)
        if done is not None:
            return done
    single = not isinstance(xs, tuple)
    seqs = (xs,) if single else xs
    state, state_types = tuple(init), tuple(state_types)
    if len(state) != len(state_types):
        raise GraphError(f'layer {p.node.name!r}: scan has {len(state)} state values but {len(state_types)} '
                         'state types')
    n = _sequence_length(p, seqs)
    order = range(n - 1, -1, -1) if reverse else range(n)
    ys = {}
    for run, t in enumerate(order):
        slices = tuple(time_slice(p, x, t) for x in seqs)
        new_state, ys[t] = step(p, slices[0] if single else slices, *state)
        new_state = tuple(new_state)
        if len(new_state) != len(state):
            raise GraphError(f'layer {p.node.name!r}: scan step {t} returned {len(new_state)} state values, '
                             f'expected {len(state)}')
        if run == 0:
            check_state(p, state, state_types, -1)
        check_state(p, new_state, state_types, t)
        state = new_state
    picked = [ys[t] for t in (range(n) if ys_order == 'time' else order)]
    if any(y is None for y in picked):
        return None, state
    return stack(p, picked), state


# ---------------------------------------------------------------------------------- balanced sum
def balanced_sum(p, x, acc):
    """hls4ml's reduce<T, N, Op_add<T>> over the last axis of x (nnet_common.h): a balanced adder tree.

    N values split into the first 2^floor(log2(N - 1)) and the rest, each half reduced the same way,
    and every addition `a + b` is exact and then cast into `acc` (a type variable or a FixedType);
    a single value is returned as it is. The result keeps a last axis of length 1.
    """
    shape = tuple(p.shape(x))
    flat = np.arange(int(np.prod(shape))).reshape(shape)

    def tree(index: np.ndarray):
        k = index.shape[-1]
        if k == 1:
            return p.gather(x, np.ascontiguousarray(index))
        left = 1 << ((k - 1).bit_length() - 1)
        return p.cast(p.add(tree(index[..., :left]), tree(index[..., left:])), acc)
    return tree(flat)
