"""The interval interpreter: exact bounds of every value, and the typing of 'auto' variables.

Values are `Interval`s (per-sample bounds of mantissas, Python integers: nothing is rounded). Run
with a model configuration (`typing`), a cast into a node variable that is not typed yet resolves
it: the configured precision, or the 'auto' rule the recipe names, capped by the model's maximum.
Run without one, every variable must already be typed (the emulator and back ends read them).
"""

from __future__ import annotations

import numpy as np

from ..config import PART_OF_ATTR
from ..fixed import AUTO, FixedType, PrecisionError
from ..intervals import Interval, _cast_bounds, dense_interval, product_interval, sum_interval, trunc_div, type_for
from ..ir import GraphError, Node
from .primitives import LOWEST, Const
from .spec import spec_of

#: Widest type the emulator evaluates (int64 mantissas)
MAX_EMULATED_WIDTH = 64
#: a bound below every value (padding cells of a max pool never win)
NEG_INF_BOUND = -(1 << 256)


def _obj(a) -> np.ndarray:
    return np.asarray(a, dtype=object)


def cast_interval(iv: Interval, t: FixedType) -> Interval:
    """Bounds after an ap_fixed cast into t."""
    return iv.cast(t) if t.frac <= iv.frac else iv.align(t.frac).cast(t)


def accumulated(exact: Interval, accum: FixedType, n_terms: int) -> Interval:
    """Bounds of a sum of `n_terms` terms that are each rounded into `accum` and accumulated there.

    Each rounding moves a term by less than one accumulator LSB, so the exact bounds widen by
    `n_terms` LSBs when the accumulator is coarser than the exact sum; the cast then applies the
    accumulator's rounding and overflow (an overflow gives the whole accumulator range).
    """
    if accum.frac >= exact.frac:
        return exact.align(accum.frac).cast(accum)
    slack = n_terms << (exact.frac - accum.frac)
    return Interval(exact.lo - slack, exact.hi + slack, exact.frac).cast(accum)


def _cap(t: FixedType, maximum: FixedType | None) -> FixedType:
    """Limit an inferred type to the configured maximum (width and integer bits, as hls4ml)."""
    if maximum is None or (t.width <= maximum.width and t.integer <= maximum.integer):
        return t
    return FixedType(min(t.width, maximum.width), min(t.integer, maximum.integer), t.signed, maximum.rounding,
                     maximum.overflow)


def configured_as(node: Node, var: str) -> tuple[str, str]:
    """The layer and variable a user configures for `var` of `node` (a composed layer's part: its layer's)."""
    layer, mapping = node.attrs.get(PART_OF_ATTR, (node.name, {}))
    return layer, mapping.get(var, var)


def _aligned(parts: list[Interval]) -> list[Interval]:
    frac = max(p.frac for p in parts)
    return [p.align(frac) for p in parts]


class Bounds:
    """Interval interpretation of a recipe for one node; `typing` holds the model's default and maximum."""

    #: casts round and saturate (the float interpreter's are the identity)
    quantized = True

    def __init__(self, node: Node, in_types: list[FixedType], typing: dict | None = None):
        self.node, self.in_types, self.typing = node, in_types, typing
        self.exact: Interval | None = None
        #: name -> exact bounds of the values the recipe labels (`label`), for the back ends' intermediate types
        self.labels: dict[str, Interval] = {}

    # ------------------------------------------------------------------ types and constants
    def type(self, var: str, auto=None, value: Interval | None = None) -> FixedType:
        """The node's type variable `var`; when typing and not typed yet: configured, else `auto`.

        auto: a FixedType, another variable's name, 'default' (the model default), 'input' (the first
        input's type), 'exact' (the narrowest type holding `value`), or a function of `value`.
        A FixedType given as `var` is returned as it is.
        """
        if isinstance(var, FixedType):
            return var
        node = self.node
        t = node.types.get(var)
        if t is not None:
            return t
        if self.typing is None or auto is None:
            raise GraphError(f'layer {node.name!r}: the type {var!r} is not assigned')
        t = node.config.get('Precision', {}).get(var, AUTO)
        if t == AUTO:
            try:
                t = _cap(self._auto(auto, value), self.typing.get('maximum') if var != 'table' else None)
            except PrecisionError as err:  # the exact type needs more than 64 bits
                layer, layer_var = configured_as(node, var)
                raise GraphError(f'layer {layer!r}: the exact {layer_var} type cannot be inferred ({err}); set '
                                 f"Precision[{layer_var!r}] explicitly, e.g. 'fixed<32,16>'") from None
        if t.width > MAX_EMULATED_WIDTH:
            raise GraphError(f'layer {node.name!r}: the inferred {var} type needs {t.width} bits, more than the '
                             f'{MAX_EMULATED_WIDTH} the emulator supports; set Precision[{var!r}] explicitly or '
                             f"pass max_precision (e.g. 'fixed<32,16>')")
        node.types[var] = t
        return t

    def _auto(self, auto, value: Interval | None) -> FixedType:
        if isinstance(auto, FixedType):
            return auto
        if auto == 'default':
            return self.typing['default']
        if auto == 'input':
            return self.in_types[0]
        if auto == 'exact':
            return type_for(value)
        if callable(auto):
            return auto(value)
        return self.type(auto)

    def weight(self, name: str) -> Const:
        """A quantized weight of the node (typed by the op's weight variable)."""
        var = spec_of(self.node).weights[name]
        return Const(self.node.qweights[name], self.node.types[var].frac)

    def param(self, values, auto, store: str | None = None) -> Const:
        """A constant quantized into the node's 'param' type (kept in and then read from qweights[store] if named)."""
        t = self.type('param', auto)
        if store is not None and self.typing is None and store in self.node.qweights:
            return Const(self.node.qweights[store], t.frac)
        q = t.quantize(values)
        if store is not None and self.typing is not None:
            self.node.qweights[store] = q
        return Const(q, t.frac)

    def at_lsb(self, value: float, like: Interval, exact: bool = False) -> Const:
        """A real constant on `like`'s LSB: floored (x > v <=> mantissa > it), or exactly (else an error)."""
        from .params import on_grid
        return Const(np.asarray(on_grid(self.node, value, like.frac, exact)), like.frac)

    def tables(self, build) -> dict:
        """The node's lookup tables, built by `build(node, in_types)` when typing."""
        if self.typing is not None:
            build(self.node, self.in_types)
        return self.node.attrs['tables']

    def shape(self, x: Interval) -> tuple[int, ...]:
        """The per-sample shape of a value."""
        return x.lo.shape

    # ------------------------------------------------------------------ primitives
    def const(self, c: Const) -> Interval:
        return Interval.of_values(np.asarray(c.values), c.frac)

    def cast(self, x: Interval, t, auto=None, opaque: bool = False) -> Interval:
        if t == 'result' and not opaque:
            self.exact = x  # the exact value the node casts into its result type
        t = t if isinstance(t, FixedType) else self.type(t, auto, x)
        return Interval.of_type(t, x.lo.shape) if opaque else cast_interval(x, t)

    def round(self, x: Interval, t) -> Interval:
        t = t if isinstance(t, FixedType) else self.type(t)
        if t.frac >= x.frac:
            return x.align(t.frac)
        return Interval(_cast_bounds(x.lo, x.frac, t), _cast_bounds(x.hi, x.frac, t), t.frac)

    def add(self, a: Interval, b: Interval) -> Interval:
        return sum_interval([a, b])

    def neg(self, a: Interval) -> Interval:
        return Interval(-a.hi, -a.lo, a.frac)

    def sub(self, a: Interval, b: Interval) -> Interval:
        return self.add(a, self.neg(b))

    def shift(self, x: Interval, k: int) -> Interval:
        return Interval(x.lo, x.hi, x.frac - k)

    def mul(self, a: Interval, b: Interval) -> Interval:
        return product_interval(a, b)

    def const_matmul(self, x: Interval, w: Const, b: Const, acc: str) -> Interval:
        exact = dense_interval(x, w.values, w.frac, b.values, b.frac)
        return accumulated(exact, self.type(acc, 'exact', exact), w.values.shape[0] + 1)

    def maximum(self, a: Interval, b: Interval) -> Interval:
        a, b = _aligned([a, b])
        return Interval(_obj(np.maximum(a.lo, b.lo)), _obj(np.maximum(a.hi, b.hi)), a.frac)

    def minimum(self, a: Interval, b: Interval) -> Interval:
        a, b = _aligned([a, b])
        return Interval(_obj(np.minimum(a.lo, b.lo)), _obj(np.minimum(a.hi, b.hi)), a.frac)

    def split(self, x: Interval, t: Const) -> tuple[Interval, Interval]:
        """x restricted to each side of the threshold: (x > t, x <= t), clipped where a side is empty."""
        theta = _obj(t.values)
        return (Interval(_obj(np.maximum(x.lo, theta + 1)), _obj(np.maximum(x.hi, theta + 1)), x.frac),
                Interval(_obj(np.minimum(x.lo, theta)), _obj(np.minimum(x.hi, theta)), x.frac))

    def join(self, x: Interval, t: Const, a: Interval, b: Interval) -> Interval:
        """Bounds of the branch values a (where x > t) and b (elsewhere), each side only where it occurs."""
        theta = _obj(t.values)
        some_above, some_below = x.hi > theta, x.lo <= theta
        a, b = _aligned([a, b])
        lo = np.where(some_above, np.where(some_below, np.minimum(a.lo, b.lo), a.lo), b.lo)
        hi = np.where(some_above, np.where(some_below, np.maximum(a.hi, b.hi), a.hi), b.hi)
        return Interval(_obj(lo), _obj(hi), a.frac)

    def piecewise(self, x: Interval, t: Const, above, below) -> Interval:
        x_above, x_below = self.split(x, t)
        return self.join(x, t, above(x_above), below(x_below))

    def lookup(self, x: Interval, key: str, real=None) -> Interval:
        """The smallest and largest entries each element's addresses can reach (the address is monotonic in x)."""
        table = self.node.attrs['tables'][key]
        if table.index.overflow not in ('SAT', 'SAT_SYM'):  # WRAP and SAT_ZERO addresses are not monotonic
            return Interval.of_type(table.type, x.lo.shape)
        values, last = np.asarray(table.values, dtype=np.int64), len(table) - 1
        ends = [np.asarray(table.index.cast(_obj(v).ravel(), x.frac), dtype=np.int64) for v in (x.lo, x.hi)]
        if table.negated:  # address = min(-index, last): decreasing in x
            first, final = (np.minimum(-e, last) for e in ends[::-1])
        else:
            first, final = (e - table.index.min_mantissa for e in ends)
        lo, hi = np.empty(first.shape, dtype=object), np.empty(first.shape, dtype=object)
        for a, b in set(zip(first.tolist(), final.tolist())):
            where = (first == a) & (final == b)
            lo[where], hi[where] = int(values[a:b + 1].min()), int(values[a:b + 1].max())
        return Interval(lo.reshape(x.lo.shape), hi.reshape(x.lo.shape), table.type.frac)

    def reduce(self, x: Interval, op: str, axis: int, keepdims: bool = False, acc: str | None = None,
               auto=None) -> Interval:
        if op in ('max', 'min'):
            pick = np.max if op == 'max' else np.min
            return Interval(_obj(pick(x.lo, axis=axis, keepdims=keepdims)),
                            _obj(pick(x.hi, axis=axis, keepdims=keepdims)), x.frac)
        exact = Interval(_obj(np.sum(x.lo, axis=axis, keepdims=keepdims)),
                         _obj(np.sum(x.hi, axis=axis, keepdims=keepdims)), x.frac)
        if acc is None:
            return exact
        return accumulated(exact, self.type(acc, auto or 'exact', exact), x.lo.shape[axis])

    def div_trunc(self, x: Interval, n) -> Interval:
        return Interval(_obj(trunc_div(x.lo, n)), _obj(trunc_div(x.hi, n)), x.frac)

    def gather(self, x: Interval, index: np.ndarray, fill=0) -> Interval:
        return x.gather(index, NEG_INF_BOUND if fill is LOWEST else fill)

    def concat(self, xs: list[Interval], axis: int) -> Interval:
        xs = _aligned(xs)
        return Interval(np.concatenate([a.lo for a in xs], axis=axis), np.concatenate([a.hi for a in xs], axis=axis),
                        xs[0].frac)

    def reshape(self, x: Interval, shape: tuple[int, ...]) -> Interval:
        return x.reshape(shape)

    def assume(self, x: Interval, lo: int | None = None, hi: int | None = None) -> Interval:
        return Interval(x.lo if lo is None else _obj(np.maximum(x.lo, lo)),
                        x.hi if hi is None else _obj(np.minimum(x.hi, hi)), x.frac)

    def label(self, x: Interval, name: str) -> Interval:
        """x unchanged; records its bounds as labels[name] (a name labelled again holds the hull of both)."""
        seen = self.labels.get(name)
        if seen is None:
            self.labels[name] = x
        else:
            a, b = _aligned([seen, x])
            self.labels[name] = Interval(_obj(np.minimum(a.lo, b.lo)), _obj(np.maximum(a.hi, b.hi)), a.frac)
        return x
