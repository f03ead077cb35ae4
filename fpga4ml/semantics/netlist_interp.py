"""The netlist interpreter: a recipe run on signals becomes the Verilog back end's integer netlist.

Values are numpy object arrays of netlist signal ids (per-sample shape; None marks a cell that no
maximum picks). Each primitive becomes netlist operations with the same casts in the same places as
the numpy interpreter; constant-matrix and constant products become CSD adder graphs with common
subexpressions shared (or DSP multipliers where a layer asks for them); products of two variables
are multipliers or, where VariableProducts asks for it, partial-product arrays (lut_multiplier.py).
The netlist carries its own exact bounds per signal; a cast that cannot change a value disappears.
"""

from __future__ import annotations

import numpy as np

from ..backends.verilog.adder_graph import constant_matvec, sum_terms
from ..backends.verilog.lut_multiplier import in_luts, lut_product
from ..backends.verilog.netlist import Netlist
from ..backends.verilog.progress import StepClock
from ..fixed import FixedType
from ..ir import Node
from .accumulate import accumulate_plan
from .bounds import Bounds
from .primitives import LOWEST, Const


def _map(fn, *arrays) -> np.ndarray:
    """fn applied element by element (broadcasting) to object arrays of signals."""
    return np.asarray(np.frompyfunc(fn, len(arrays), 1)(*arrays), dtype=object)


class NetlistLowering:
    """Runs a recipe for one node on netlist signals."""

    #: casts round and saturate (the float interpreter's are the identity)
    quantized = True

    def __init__(self, nl: Netlist, node: Node, in_types: list[FixedType], cse: bool = True,
                 clock: StepClock | None = None):
        self.nl, self.node, self.cse = nl, node, cse
        self.clock = clock or StepClock(None)
        self.b = Bounds(node, in_types)
        self.type, self.weight, self.tables = self.b.type, self.b.weight, self.b.tables
        self.dsp = node.config.get('Multipliers', 'adders') == 'dsp'
        self.variable_products = node.config.get('VariableProducts', 'dsp')

    # ------------------------------------------------------------------ helpers
    def _frac(self, x: np.ndarray) -> int:
        return next(self.nl[s].frac for s in x.flat if s is not None)

    def _align(self, s, frac: int):
        """Signal s at the LSB `frac` (a constant becomes the same constant there)."""
        sig = self.nl[s]
        if sig.frac == frac:
            return s
        if sig.op == 'const':
            return self.nl.const(sig.lo << (frac - sig.frac), frac)
        return self.nl.align(s, frac)

    def _is_const(self, s, value: int | None = None) -> bool:
        sig = self.nl[s]
        return sig.op == 'const' and (value is None or sig.lo == value)

    def _t(self, t) -> FixedType:
        return t if isinstance(t, FixedType) else self.b.type(t)

    def param(self, values, auto, store: str | None = None) -> Const:
        return self.b.param(values, auto, store)

    def at_lsb(self, value: float, like: np.ndarray, exact: bool = False) -> Const:
        from .params import on_grid
        frac = self._frac(like)
        return Const(np.asarray(on_grid(self.node, value, frac, exact)), frac)

    def shape(self, x: np.ndarray) -> tuple[int, ...]:
        return x.shape

    # ------------------------------------------------------------------ primitives
    def const(self, c: Const) -> np.ndarray:
        return _map(lambda v: self.nl.const(int(v), c.frac), np.asarray(c.values, dtype=object))

    def cast(self, x: np.ndarray, t, auto=None, opaque: bool = False) -> np.ndarray:
        t = self._t(t)
        return _map(lambda s: self.nl.cast(s, t), x)

    def round(self, x: np.ndarray, t) -> np.ndarray:
        t, nl = self._t(t), self.nl

        def rounded(s):
            width = nl[s].width + max(0, t.frac - nl[s].frac) + 2
            return nl.cast(s, FixedType(width, width - t.frac, True, t.rounding, 'WRAP'))
        return _map(rounded, x)

    def _pair(self, fn, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        def one(u, v):
            frac = max(self.nl[u].frac, self.nl[v].frac)
            return fn(self._align(u, frac), self._align(v, frac))
        return _map(one, a, b)

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._pair(self.nl.add, a, b)

    def sub(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._pair(lambda u, v: self.nl.add(u, v, gb=-1), a, b)

    def neg(self, a: np.ndarray) -> np.ndarray:
        return _map(self.nl.neg, a)

    def shift(self, x: np.ndarray, k: int) -> np.ndarray:
        return _map(lambda s: self.nl.shl(s, 0, frac=self.nl[s].frac - k) if k else s, x)

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _map(self._product, a, b)

    def _product(self, u, v):
        nl = self.nl
        if self._is_const(u):
            u, v = v, u
        frac = nl[u].frac + nl[v].frac
        if not self._is_const(v):
            if in_luts(nl, u, v, self.variable_products):
                return lut_product(nl, u, v)
            return nl.mul(u, v)
        c = nl[v].lo
        if c == 0:
            return nl.const(0, frac)
        if self.dsp and c not in (1, -1):
            return nl.mul(u, v)
        return constant_matvec(nl, [u], np.array([[c]]), None, frac, self.cse)[0]

    def maximum(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._pair(self.nl.maximum, a, b)

    def minimum(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._pair(self.nl.minimum, a, b)

    def piecewise(self, x: np.ndarray, t: Const, above, below) -> np.ndarray:
        nl = self.nl
        theta = np.broadcast_to(np.asarray(t.values, dtype=object), x.shape)
        cond = _map(lambda s, th: s if th == 0 else nl.add(s, nl.const(int(th), nl[s].frac), gb=-1), x, theta)
        return self._pair3(cond, above(x), below(x))

    def _pair3(self, cond, a, b):
        def one(c, u, v):
            frac = max(self.nl[u].frac, self.nl[v].frac)
            return self.nl.select(c, self._align(u, frac), self._align(v, frac))
        return _map(one, cond, a, b)

    def lookup(self, x: np.ndarray, key: str, real=None) -> np.ndarray:
        nl, table = self.nl, self.node.attrs['tables'][key]
        if getattr(table, 'negated', False):
            last = nl.const(len(table) - 1, table.index.frac)
            return _map(lambda s: nl.rom(nl.minimum(nl.neg(nl.cast(s, table.index)), last), table.values, 0,
                                         table.type.frac), x)
        return _map(lambda s: nl.rom(nl.cast(s, table.index), table.values, table.index.min_mantissa,
                                     table.type.frac), x)

    def const_matmul(self, x: np.ndarray, w: Const, bias: Const, acc: str) -> np.ndarray:
        nl, node = self.nl, self.node
        n_in, n_out = w.values.shape
        rows = x.reshape(-1, n_in)
        live_sigs = [s for s in rows.flat if not self._is_const(s, 0)]
        x_abs = max((max(-nl[s].lo, nl[s].hi) for s in live_sigs), default=0)
        plan = accumulate_plan(node, self.b.type(acc), self._frac(x), x_abs, w.values, w.frac, bias.values, bias.frac)
        acc_t, shift = plan.acc_t, plan.shift
        exact_products = plan.products_simple and shift <= 0 and not plan.saturating
        out = []
        for row in rows:
            live = [i for i, s in enumerate(row) if not self._is_const(s, 0) and plan.w[i].any()]
            xs, w_live = [row[i] for i in live], plan.w[live]
            if exact_products and not self.dsp:
                # every product lands exactly in the accumulator: one adder graph for the whole matrix
                sums = constant_matvec(nl, xs, w_live << -shift, plan.bias_acc, acc_t.frac, self.cse,
                                       lambda text, s: self.clock.report(f'{node.name}: {text}', s))
            else:
                products = self._products(xs, w_live, plan.prod_frac)
                sums = [self._accumulate(plan, [products[k][j] for k in range(len(xs)) if w_live[k, j]], j)
                        for j in range(n_out)]
            if not plan.sum_fits and not plan.saturating:
                sums = [nl.cast(s, acc_t) for s in sums]  # a WRAP accumulator: wrapping once equals wrapping each step
            out.extend(sums)
        return np.asarray(out, dtype=object).reshape(x.shape[:-1] + (n_out,))

    def _products(self, xs: list[int], w: np.ndarray, frac: int) -> list[list[int | None]]:
        """Exact products xs[k] * w[k, j] at LSB `frac`: per-input adder graphs (or multipliers)."""
        nl = self.nl
        if not self.dsp:
            return [constant_matvec(nl, [x], w[k:k + 1], None, frac, self.cse) for k, x in enumerate(xs)]
        return [[nl.mul(x, nl.const(int(v), frac - nl[x].frac)) if v else None for v in w[k]] for k, x in enumerate(xs)]

    def _accumulate(self, plan, products: list[int], column: int) -> int:
        """Cast each product into the accumulator and sum them with the bias (saturating in order if needed)."""
        nl, acc_t = self.nl, plan.acc_t
        parts = [nl.cast(p, acc_t) for p in products]
        bias = nl.const(int(plan.bias_acc[column]), acc_t.frac)
        if not plan.saturating:
            return sum_terms(nl, parts + [bias], acc_t.frac)
        total = bias
        for p in parts:  # sequential saturation in input order, as hls4ml's loop
            total = nl.cast(nl.add(total, p), acc_t)
        return total

    def reduce(self, x: np.ndarray, op: str, axis: int, keepdims: bool = False, acc: str | None = None,
               auto=None) -> np.ndarray:
        moved = np.moveaxis(x, axis, -1)
        lanes = moved.reshape(-1, moved.shape[-1])
        if op in ('max', 'min'):
            pick = self.nl.maximum if op == 'max' else self.nl.minimum
            out = [self._tree([s for s in lane if s is not None], pick) for lane in lanes]
        elif acc is None:
            out = [sum_terms(self.nl, list(lane), self.nl[lane[0]].frac) for lane in lanes]
        else:
            acc_t = self.b.type(acc)
            out = [self._accumulate_cells(list(lane), acc_t) for lane in lanes]
        y = np.asarray(out, dtype=object).reshape(moved.shape[:-1])
        return np.expand_dims(y, axis) if keepdims else y

    def _tree(self, sigs: list[int], pick) -> int:
        """A balanced tree of a two-input op over signals."""
        while len(sigs) > 1:
            sigs = [pick(sigs[k], sigs[k + 1]) if k + 1 < len(sigs) else sigs[k] for k in range(0, len(sigs), 2)]
        return sigs[0]

    def _accumulate_cells(self, cells: list[int], acc_t: FixedType) -> int:
        """acc = cast(acc + cell) in order from 0 (a plain sum, or one wrap, where that is equal)."""
        nl = self.nl
        cells = [c for c in cells if not self._is_const(c, 0)]
        x_frac = nl[cells[0]].frac if cells else acc_t.frac
        shift = acc_t.frac - x_frac
        bound = sum(max(-nl[c].lo, nl[c].hi) for c in cells)
        acc_limit = min(acc_t.max_mantissa, -acc_t._sat_min)
        if shift >= 0 and (bound << shift) <= acc_limit:
            return sum_terms(nl, [nl.align(c, acc_t.frac) for c in cells] or [nl.const(0, acc_t.frac)], acc_t.frac)
        if shift >= 0 and acc_t.overflow == 'WRAP':
            return nl.cast(sum_terms(nl, [nl.align(c, acc_t.frac) for c in cells], acc_t.frac), acc_t)
        total = nl.const(0, acc_t.frac)
        for c in cells:  # step by step, casting into the accumulator after each addition
            if shift >= 0:
                total = nl.cast(nl.add(total, nl.align(c, acc_t.frac)), acc_t)
            else:
                total = nl.cast(nl.add(nl.align(total, x_frac), c), acc_t)
        return total

    def div_trunc(self, x: np.ndarray, n) -> np.ndarray:
        n = np.broadcast_to(np.asarray(n, dtype=object), x.shape)
        return _map(lambda s, k: self.nl.divc(s, int(k)) if k > 1 else s, x, n)

    def gather(self, x: np.ndarray, index: np.ndarray, fill=0) -> np.ndarray:
        flat = x.ravel()
        pad = None if fill is LOWEST else self.nl.const(int(fill), self._frac(x))
        return np.asarray([flat[i] if i >= 0 else pad for i in index.ravel()], dtype=object).reshape(index.shape)

    def concat(self, xs: list[np.ndarray], axis: int) -> np.ndarray:
        frac = max(self._frac(x) for x in xs)
        return np.concatenate([_map(lambda s: self._align(s, frac), x) for x in xs], axis=axis)

    def reshape(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return x.reshape(shape)

    def assume(self, x: np.ndarray, lo: int | None = None, hi: int | None = None) -> np.ndarray:
        return _map(lambda s: self.nl.narrow(s, lo, hi), x)

    def label(self, x: np.ndarray, name: str) -> np.ndarray:
        return x
