"""The float interpreter: a recipe's real-valued meaning (the reference the fixed-point design approximates).

Values are float arrays with a leading batch axis. Casts and roundings are the identity, tables are
their real function, weights are the float weights and parameters their real values, so the float
and fixed-point meanings of an op come from the same recipe and cannot drift.
"""

from __future__ import annotations

import numpy as np

from .. import geometry
from ..ir import Node
from .primitives import LOWEST, Const, batch_axis


class FloatRun:
    """Runs a recipe for one node on float arrays of dtype `dtype`."""

    #: casts round and saturate (the float interpreter's are the identity)
    quantized = False

    def __init__(self, node: Node, dtype=np.float64):
        self.node, self.dtype, self.in_types = node, dtype, []

    def type(self, var: str, auto=None, value=None) -> None:
        """Types do not exist in the float meaning."""
        return None

    def weight(self, name: str) -> Const:
        return Const(np.asarray(self.node.weights[name], dtype=self.dtype), None)

    def param(self, values, auto, store: str | None = None) -> Const:
        return Const(np.asarray(values, dtype=self.dtype), None)

    def at_lsb(self, value: float, like, exact: bool = False) -> Const:
        return Const(np.asarray(value, dtype=self.dtype), None)

    def tables(self, build) -> None:
        """Tables do not exist in the float meaning (lookups evaluate their real function)."""
        return None

    def shape(self, x: np.ndarray) -> tuple[int, ...]:
        return x.shape[1:]

    # ------------------------------------------------------------------ primitives
    def _real(self, c: Const) -> np.ndarray:
        values = np.asarray(c.values, dtype=self.dtype)
        return values if c.frac is None else values * self.dtype(2.0) ** -c.frac

    def const(self, c: Const) -> np.ndarray:
        return self._real(c)[None]

    def cast(self, x, t, auto=None, opaque: bool = False):
        return x

    def round(self, x, t):
        return x

    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def neg(self, a):
        return -a

    def shift(self, x, k: int):
        return x * self.dtype(2.0) ** k

    def mul(self, a, b):
        return a * b

    def const_matmul(self, x, w: Const, bias: Const, acc: str):
        return x @ self._real(w) + self._real(bias)

    def maximum(self, a, b):
        return np.maximum(a, b)

    def minimum(self, a, b):
        return np.minimum(a, b)

    def piecewise(self, x, t: Const, above, below):
        return np.where(x > self._real(t), above(x), below(x)).astype(self.dtype, copy=False)

    def lookup(self, x, key: str, real=None):
        return np.asarray(real(x), dtype=self.dtype)

    def reduce(self, x, op: str, axis: int, keepdims: bool = False, acc: str | None = None, auto=None):
        fn = {'sum': np.sum, 'max': np.max, 'min': np.min}[op]
        return fn(x, axis=batch_axis(axis), keepdims=keepdims)

    def div_trunc(self, x, n):
        return x / np.asarray(n, dtype=self.dtype)

    def gather(self, x, index: np.ndarray, fill=0):
        flat = x.reshape(len(x), -1)
        return geometry.take(flat, index.ravel(), -np.inf if fill is LOWEST else fill).reshape((len(x),) + index.shape)

    def concat(self, xs, axis: int):
        n = max(len(x) for x in xs)
        return np.concatenate([np.broadcast_to(x, (n,) + x.shape[1:]) for x in xs], axis=batch_axis(axis))

    def reshape(self, x, shape):
        return x.reshape((len(x),) + tuple(shape))

    def assume(self, x, lo=None, hi=None):
        return x

    def label(self, x, name):
        return x
