"""The primitive set every recipe is written in, and the pieces the interpreters share.

Values are tensors of fixed-point mantissas with one LSB (``frac``) per tensor; shapes are per
sample (the numpy and float interpreters carry a batch axis in front; axes given to primitives are
per-sample axes). Every primitive is exact unless it says it rounds. The four interpreters
(bounds.py, numpy_interp.py, netlist_interp.py, float_interp.py) implement exactly this list:

=====================  ===============================================================================
``const(c)``           a constant tensor (a `Const`: mantissas at an LSB, or real values in float)
``cast(x, t)``         ap_fixed cast into type t (a FixedType or a type variable of the node): rounding of
                       t at t's LSB, then t's overflow (WRAP, SAT, SAT_ZERO, SAT_SYM); float: identity
``round(x, t)``        only the rounding of t at t's LSB (no overflow; the width grows as needed)
``add(a, b)``          a + b at the finer LSB (broadcasting); ``sub``, ``neg`` likewise
``shift(x, k)``        x * 2^k: the mantissas are unchanged, the LSB moves (exact)
``mul(a, b)``          element-wise product of two tensors (variables or constants), LSB = sum of LSBs
``const_matmul``       x @ W + B over the last axis with hls4ml's accumulate: the bias and every product
                       x_i * W_ij are cast into the accumulator type, summed there in input order
                       (saturating step by step for SAT accumulators), no cast of the sum otherwise
``maximum(a, b)``      element-wise max (``minimum``: min) at the finer LSB
``piecewise(x, t, above, below)``  x > t ? above(x) : below(x) element-wise, t a constant mantissa at
                       x's LSB; each branch is a function of x (interval typing sees x restricted to the
                       branch's side of t); casts belong after it (a branch runs on every lane)
``lookup(x, key, real)``  table `key` of the node: x is cast into the table's index type (TRN, SAT), the
                       address is index mantissa - index minimum (or, for a table of a non-positive input,
                       min(-mantissa, last)); float: the real function `real(x)`
``reduce(x, op, axis)``  sum, max or min over one axis; a sum given an accumulator type ``acc`` starts at
                       0 and casts every partial sum into it, in axis order (hls4ml's accumulate loops)
``div_trunc(x, n)``    x / n for positive integer constants n, truncated toward zero at x's LSB
                       (ap_fixed operator/ by an integer)
``gather(x, index, fill)``  out[k] = flat(x)[index[k]] (any index shape); index -1 reads `fill`: 0, or
                       LOWEST (a cell that no max ever picks: the padding of a max pool)
``concat(xs, axis)``   concatenation at the finest LSB
``reshape(x, shape)``  the same values in a new per-sample shape
``assume(x, lo, hi)``  a fact interval arithmetic cannot see (x - max(x) <= 0); computes nothing
``label(x, name)``     x unchanged; the interval interpreter records x's exact bounds as labels[name] (the
                       hull when a name is labelled again): the HLS back end declares its exact
                       intermediates in the narrowest types holding them (semantics.intermediate_types)
=====================  ===============================================================================

Composed constructs (compose.py) are functions of an interpreter built from these primitives
only, so every interpreter runs them with no code of its own:

=====================  ===============================================================================
``einsum(p, spec, a, b, acc)``  the contraction of two variable tensors ('ij,jk->ik', 'hqd,hkd->hqk'):
                       gathers of both operands into the joint index space, exact ``mul``, then a
                       ``reduce`` sum over the merged contracted letters (C order of those letters);
                       with ``acc`` every product is first cast into it and every partial sum too
``scan(p, step, xs, init, state_types)``  an unrolled loop over axis 0: slices are gathers, the
                       step's outputs are stacked by reshape + concat; the step casts the state into
                       its state types, which the first step types and every later step reuses
=====================  ===============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the `fill` of a gather that no maximum ever picks (padding cells of a max pool)
LOWEST = 'lowest'
#: float64 represents every integer below 2^53 exactly; keep one bit of margin
FLOAT_EXACT_BITS = 52
#: int64 intermediate results must stay below 2^62 in magnitude
INT_EXACT_BITS = 62


@dataclass(frozen=True)
class Const:
    """A constant tensor: int mantissas with `frac` fractional bits, or real values when frac is None."""

    values: np.ndarray
    frac: int | None

    def map(self, fn) -> 'Const':
        """The same constant with `fn` applied to its values (a structural transform: conv matrix, broadcast)."""
        return Const(fn(self.values), self.frac)


def batch_axis(axis: int) -> int:
    """A per-sample axis as an axis of a batched array (negative axes are unchanged)."""
    return axis + 1 if axis >= 0 else axis
