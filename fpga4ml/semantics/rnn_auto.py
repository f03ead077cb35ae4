"""'auto' types of a recurrent layer, by interval arithmetic over its whole sequence.

A recurrent layer's 'auto' accumulator, result (h) and LSTM state (c) cannot be typed op by op as a
Dense is: the state feeds back, so its bounds depend on the types being chosen. The rule:

* result and state: the model default's fractional bits, rounding and overflow (a recurrent state
  cannot keep the exact LSB: it would grow every step), and the fewest integer bits holding every
  state value the layer reaches over the whole sequence, rounded as it is cast;
* accum: the LSB of the exact matrix products and biases (max of F_x + F_kernel, F_h +
  F_recurrent_kernel, F_bias, F_recurrent_bias and the table's LSB, so hls4ml's per-product cast
  into the accumulator is exact) and the fewest integer bits holding every value cast into it;
* table ('auto' with fpga4ml's tables, when the accumulator is inferred): the model default type,
  as an 'auto' activation has.

The bounds come from the recipe itself, run by the interval interpreter over every time step (the
scan is unrolled; each step's state is the cast of the last). A first run uses provisional types
with the chosen LSBs and 20 integer bits; the types then hold what that run reached (rounded,
before any overflow), and the recipe runs again with them, growing them, until no value cast into
an inferred type leaves it (the
tables are indexed by the accumulator, so a narrower accumulator can move their outputs by an
LSB). `max_precision` caps the result as for every inferred type (it may then overflow, as the user
asked). A layer whose states need more than 64 bits raises, naming the layer and the variable.
"""

from __future__ import annotations

from ..fixed import AUTO, FixedType, PrecisionError
from ..intervals import Interval, type_for
from ..ir import GraphError, Node
from .bounds import MAX_EMULATED_WIDTH, Bounds, _cap
from .spec import spec_of
from .tables import HLS4ML_TABLE_TYPE, hls4ml_tables

#: the recurrent type variables inferred from the sequence (the others follow the op-by-op rules)
SEQUENCE_VARIABLES = ('accum', 'result', 'state')
#: how many times the recipe runs again with grown types before giving up
MAX_ROUNDS = 8
#: integer bits of the provisional types of the first run (hls4ml's table index, x * N / R, must fit a C int)
FIRST_INTEGER_BITS = 20


class _CastRecorder(Bounds):
    """Bounds that also record, per inferred variable, the hull of every value cast into it (rounded to
    its LSB, before any overflow)."""

    def __init__(self, node: Node, in_types: list[FixedType], typing: dict, watched: tuple[str, ...]):
        super().__init__(node, in_types, typing)
        self.watched = watched
        self.hulls: dict[str, Interval] = {}

    def _record(self, var: str, x: Interval) -> None:
        rounded = self.round(x, var)
        lo, hi = rounded.min, rounded.max
        seen = self.hulls.get(var)
        if seen is not None:
            lo, hi = min(lo, seen.min), max(hi, seen.max)
        self.hulls[var] = Interval(lo, hi, rounded.frac)

    def cast(self, x: Interval, t, auto=None, opaque: bool = False) -> Interval:
        if isinstance(t, str) and t in self.watched and not opaque:
            self._record(t, x)
        return super().cast(x, t, auto, opaque)

    def const_matmul(self, x: Interval, w, b, acc: str) -> Interval:
        out = super().const_matmul(x, w, b, acc)
        if acc in self.watched:
            self._record(acc, out)
        return out


def _auto_variables(node: Node) -> tuple[str, ...]:
    """The sequence variables of `node` asked to be 'auto' and not typed yet."""
    names = SEQUENCE_VARIABLES if node.op == 'LSTM' else SEQUENCE_VARIABLES[:2]
    precision = node.config.get('Precision', {})
    return tuple(v for v in names if v not in node.types and precision.get(v, AUTO) == AUTO)


def needs_sequence_typing(node: Node, p) -> bool:
    """Whether the interpreter `p` is typing `node` and some of its sequence variables are 'auto'."""
    return isinstance(p, Bounds) and p.typing is not None and bool(_auto_variables(node))


def _holding(t: FixedType, hull: Interval, var: str, node: Node) -> FixedType:
    """t's LSB and modes, with the fewest integer bits (and the signedness) holding `hull`."""
    try:
        need = type_for(hull)
    except PrecisionError:  # beyond 64 bits
        need = None
    if need is None or need.width > MAX_EMULATED_WIDTH:
        raise GraphError(f'layer {node.name!r}: the {node.op} {var!r} values reach [{hull.min * 2.0 ** -hull.frac:g}, '
                         f'{hull.max * 2.0 ** -hull.frac:g}] over the sequence, more than {MAX_EMULATED_WIDTH} bits '
                         f'hold at LSB 2^-{t.frac}; set Precision[{var!r}] explicitly')
    return FixedType(need.width, need.integer, need.signed, t.rounding, t.overflow)


def _grown(t: FixedType, hull: Interval, var: str, node: Node) -> FixedType:
    """A signed type at t's LSB holding `hull`, with at least twice t's integer bits (64 bits at most)."""
    need = _holding(t, hull, var, node)
    integer = max(need.integer + (not need.signed), min(2 * max(t.integer, 1), MAX_EMULATED_WIDTH - t.frac))
    if integer + t.frac > MAX_EMULATED_WIDTH:
        raise GraphError(f'layer {node.name!r}: the {node.op} {var!r} values outgrow {MAX_EMULATED_WIDTH} bits at '
                         f'LSB 2^-{t.frac} over the sequence; set Precision[{var!r}] explicitly')
    return FixedType(integer + t.frac, integer, True, t.rounding, t.overflow)


def _encloses(t: FixedType, hull: Interval) -> bool:
    """Whether every value of `hull` (at t's LSB) fits t without overflow."""
    return hull.frac == t.frac and hull.min >= t.min_mantissa and hull.max <= t.max_mantissa


def _lsb_of_products(node: Node, in_types: list[FixedType], result_frac: int, table_frac: int) -> int:
    """The LSB (fractional bits) of the exact matrix products, biases and table values of the cell."""
    t = node.types
    return max(in_types[0].frac + t['weight'].frac, result_frac + t['recurrent_weight'].frac,
               t['bias'].frac, t['recurrent_bias'].frac, table_frac)


def _provisional(frac: int, modes: FixedType) -> FixedType:
    """The first run's type: `frac` fractional bits, FIRST_INTEGER_BITS integer bits (64 bits at most)."""
    integer = min(FIRST_INTEGER_BITS, MAX_EMULATED_WIDTH - frac)
    return FixedType(integer + frac, integer, True, modes.rounding, modes.overflow)


def infer_sequence_types(node: Node, p: Bounds, x: Interval, init: tuple) -> None:
    """Type the node's 'auto' accum/result/state from its bounds over the sequence (see the module doc)."""
    auto = _auto_variables(node)
    default: FixedType = p.typing['default']
    precision = node.config.get('Precision', {})
    result = precision.get('result', AUTO)
    result = default if result == AUTO else result  # h's LSB and modes; c takes them too (hls4ml keeps c as h)
    if result.frac >= MAX_EMULATED_WIDTH:
        raise GraphError(f'layer {node.name!r}: the result LSB 2^-{result.frac} leaves no integer bits')
    types = {var: _provisional(result.frac, result) for var in auto if var != 'accum'}
    if 'accum' in auto:
        table = precision.get('table', AUTO)
        if table == AUTO:  # hls4ml's table type, else an 'auto' activation's (the exact accumulator is too wide)
            table = HLS4ML_TABLE_TYPE if hls4ml_tables(node) else default
            node.types.setdefault('table', table)
        frac = _lsb_of_products(node, p.in_types, result.frac, node.types.get('table', table).frac)
        if frac >= MAX_EMULATED_WIDTH:
            raise GraphError(f'layer {node.name!r}: the exact accumulator of {node.op} needs {frac} fractional bits '
                             f"(more than {MAX_EMULATED_WIDTH - 1}); set Precision['accum'] explicitly")
        types['accum'] = _provisional(frac, default)
    node.types.update(_settle(node, p, x, init, auto, types))


def _run(node: Node, p: Bounds, x: Interval, init: tuple, auto: tuple[str, ...], types: dict) -> dict[str, Interval]:
    """The hulls of the values cast into each inferred variable when the recipe runs with `types`."""
    node.types.update(types)
    recorder = _CastRecorder(node, p.in_types, p.typing, auto)
    try:
        spec_of(node).recipe(node, recorder, x, *init)
    finally:
        for var in auto:
            node.types.pop(var, None)
    return recorder.hulls


def _settle(node: Node, p: Bounds, x: Interval, init: tuple, auto: tuple[str, ...], types: dict) -> dict:
    """Types that enclose every value cast into them, as tight as the runs show.

    A run whose values all fit is sound; the types are then tightened to what it reached and run
    again (kept if that run fits too, else the sound ones are). A run that overflows grows the types
    to what it reached, at least doubling the integer bits (an overflowed state hides how far the
    next steps would go), up to 64 bits.
    """
    maximum = p.typing.get('maximum')
    sound = None
    for _ in range(MAX_ROUNDS):
        hulls = _run(node, p, x, init, auto, types)
        if all(_encloses(types[v], hulls[v]) for v in auto if v in hulls):
            sound = types
            tight = {v: _holding(types[v], hulls[v], v, node) if v in hulls else types[v] for v in auto}
            if tight == types:
                break
            types = tight
            continue
        if sound is not None:  # the tightened types overflow: keep the last sound ones
            types = sound
            break
        types = {v: _grown(types[v], hulls[v], v, node) if v in hulls else types[v] for v in auto}
    else:
        if sound is None:
            raise GraphError(f'layer {node.name!r}: the {node.op} types {list(auto)} did not settle over the '
                             f'sequence in {MAX_ROUNDS} runs; set them explicitly')
        types = sound
    return {v: _cap(t, maximum) for v, t in types.items()}  # max_precision: may overflow, as asked
