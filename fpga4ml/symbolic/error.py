"""A bound on |fixed-point output - real formula| of an expression layer, per output.

The real formula is the float reference (`float_forward`: real constants and functions) evaluated
at the emulator's quantized inputs. The bound follows the program (program.py) instruction by
instruction: each value's fixed-point bounds come from the interval interpretation of the recipe
(its `v<k>` labels) and its error bound E from its operands':

* constants: |quantized - real|; ``+ -``: Ea + Eb; ``*``: Ma Eb + Mb Ea + Ea Eb (M: the largest
  |fixed value|); neg, abs, min, max: the largest operand error (1-Lipschitz); shift: Ea 2^k;
  truncated division by q: Ea / q + the dividend's LSB; x^n: (M + E)^n - M^n; floor and rint: exact
  when the operand is, else Ea + 1;
* a cast (a sub-expression's precision, a function argument, the result): + its rounding error (one
  LSB for TRN and TRN_ZERO, half an LSB for the RND modes), unbounded when the value can overflow;
* a table: L (E_arg + the distance from an argument to the point its entry samples) + the entry's
  rounding error, L the largest |f'| over the argument's range widened by E_arg; unbounded where f'
  is (sqrt at 0, 1/x at 0, poles), where entries saturate, or where a range-addressed LUT is read
  outside [range_start, range_end - step];
* sign and Piecewise switch on a sign: exact when that operand is exact, else at most |the jump|
  (2 for sign, Ma + Mb + Ea + Eb for a select).

The result is infinite where no finite bound is known; docs/symbolic.md states the rules.
"""

from __future__ import annotations

import math

import numpy as np

from ..fixed import FixedType
from ..intervals import Interval
from ..semantics.accumulate import cast_wide
from ..semantics.bounds import Bounds
from ..semantics.recipes_symbolic import checked_program, constant_mantissa
from ..semantics.spec import spec_of
from .functions import MATH_FUNCTIONS, address_constants
from .program import type_of

INF = math.inf
#: |f'| bounded everywhere
SLOPE_CONSTANT = {'sin': 1.0, 'cos': 1.0, 'tanh': 1.0, 'sigmoid': 0.25, 'atan': 1.0, 'erf': 2 / math.sqrt(math.pi),
                  'erfc': 2 / math.sqrt(math.pi), 'asinh': 1.0}
#: points of the argument range where |f'| is checked besides the ends (its maximum is at an end elsewhere)
GRID = 4097


def rounding_error(t: FixedType) -> float:
    """The largest |cast - value| of t's rounding, overflow aside."""
    return t.lsb if t.rounding in ('TRN', 'TRN_ZERO') else t.lsb / 2


def _reals(iv: Interval) -> tuple[float, float]:
    return iv.min * 2.0 ** -iv.frac, iv.max * 2.0 ** -iv.frac


def _magnitude(iv: Interval) -> float:
    lo, hi = _reals(iv)
    return max(abs(lo), abs(hi))


def _fits(iv: Interval, t: FixedType) -> bool:
    lo, hi = _reals(iv)
    return t.min_value <= lo and hi <= t.max_value


def _times(a: float, b: float) -> float:
    """a * b with 0 * inf = 0 (an exact factor times an unbounded one adds nothing)."""
    return 0.0 if a == 0 or b == 0 else a * b


def _derivative(name: str):
    if name.startswith('pow:'):
        a = float(name[4:])
        return lambda x: np.where(x > 0, abs(a) * np.power(np.maximum(x, 1e-300), a - 1), INF if a < 1 else 0.0)
    return {'exp': np.exp, 'sinh': np.cosh, 'cosh': lambda x: np.abs(np.sinh(x)),
            'log': lambda x: np.where(x > 0, 1 / np.maximum(x, 1e-300), INF),
            'sqrt': lambda x: np.where(x > 0, 0.5 / np.sqrt(np.maximum(x, 1e-300)), INF),
            'inv': lambda x: np.where(x != 0, 1 / np.maximum(x * x, 1e-300), INF),
            'asin': lambda x: np.where(np.abs(x) < 1, 1 / np.sqrt(np.maximum(1 - x * x, 1e-300)), INF),
            'acos': lambda x: np.where(np.abs(x) < 1, 1 / np.sqrt(np.maximum(1 - x * x, 1e-300)), INF),
            'tan': lambda x: 1 + np.tan(x) ** 2,
            'acosh': lambda x: np.where(x > 1, 1 / np.sqrt(np.maximum(x * x - 1, 1e-300)), INF),
            'atanh': lambda x: np.where(np.abs(x) < 1, 1 / np.maximum(1 - x * x, 1e-300), INF),
            'gamma': _gamma_slope}[name]


def _gamma_slope(x):
    """|gamma'(x)| = |gamma(x) digamma(x)| (mpmath, which sympy needs); infinite at the poles 0, -1, -2, ..."""
    import mpmath

    def one(v: float) -> float:
        if v <= 0 and v == math.floor(v):
            return INF
        return abs(float(mpmath.gamma(v) * mpmath.digamma(v)))
    return np.vectorize(one, otypes=[np.float64])(x)


def slope_bound(name: str, lo: float, hi: float) -> float:
    """The largest |f'| of math function `name` on [lo, hi] (infinite across a pole or at a domain edge)."""
    if name in SLOPE_CONSTANT:
        return SLOPE_CONSTANT[name]
    domain = None if name.startswith('pow:') else MATH_FUNCTIONS[name][1]
    if domain is not None:  # the argument is clipped into the domain: flat outside, the edge inside
        lo, hi = max(lo, domain[0]), hi if domain[1] is None else min(hi, domain[1])
        if lo > hi:
            return 0.0
    if name == 'tan' and math.floor(lo / math.pi + 0.5) != math.floor(hi / math.pi + 0.5):
        return INF  # a pole pi/2 + k pi inside
    if name == 'inv' and lo <= 0 <= hi:
        return INF
    if name == 'gamma' and math.ceil(lo) <= min(math.floor(hi), 0):
        return INF  # a pole 0, -1, -2, ... inside
    x = np.concatenate([np.linspace(lo, hi, GRID), [lo, hi]])  # |f'| is largest at an end or near a pole
    with np.errstate(all='ignore'):
        d = np.abs(np.asarray(_derivative(name)(x), dtype=np.float64))
    return float(np.nanmax(d)) * (1 + 1e-9)


def holder(name: str) -> tuple[float, float] | None:
    """(C, p) when |f(a) - f(b)| <= C |a - b|^p for every a, b (f clipped into its domain), else None.

    sqrt and x^p for 0 < p < 1 (arguments clipped at 0), acosh (clipped at 1: acosh(1 + d) <= sqrt(2 d),
    as cosh(y) >= 1 + y^2/2, and a concave increasing function grows at most as much anywhere else): the
    Hoelder bound holds where the slope is unbounded (at the domain edge), so their tables have a finite
    error even when the argument can reach that edge.
    """
    if name == 'sqrt':
        return 1.0, 0.5
    if name == 'acosh':
        return math.sqrt(2.0), 0.5
    if name.startswith('pow:') and 0 < float(name[4:]) < 1:
        return 1.0, float(name[4:])
    return None


def change_bound(name: str, lo: float, hi: float, moved: float) -> float:
    """The largest |f(a) - f(b)| for a, b in [lo, hi], |a - b| <= moved: the slope bound or the Hoelder bound."""
    change = _times(slope_bound(name, lo, hi), moved)
    h = holder(name)
    return change if h is None else min(change, h[0] * moved ** h[1])


class _Errors:
    """Runs the bound over one Expression node."""

    def __init__(self, node, in_type: FixedType, in_iv: Interval):
        self.node = node
        self.program, self.outputs, self.specs = checked_program(node)
        bounds = Bounds(node, [in_type])
        spec_of(node).recipe(node, bounds, in_iv)
        self.labels = bounds.labels
        self.errors: list[float] = []

    def value(self, k: int) -> Interval:
        return self.labels[f'v{k}']

    def cast(self, err: float, iv: Interval, t: FixedType) -> float:
        """The error after casting a value of bounds iv into t: + its rounding (none on t's grid), or overflow."""
        if not _fits(iv, t):
            return INF
        return err + (rounding_error(t) if iv.frac > t.frac else 0.0)

    def step(self, k: int) -> float:
        op, args, value, precision = self.program[k]
        e = [self.errors[i] for i in args]
        m = [_magnitude(self.value(i)) for i in args]
        if op == 'x':
            return 0.0
        if op == 'const':
            mant, frac = constant_mantissa(value, type_of(precision, ''))
            return abs(mant * 2.0 ** -frac - value)
        if op in ('add', 'sub'):
            return e[0] + e[1]
        if op == 'mul':
            return _times(m[0], e[1]) + _times(m[1], e[0]) + _times(e[0], e[1])
        if op in ('neg', 'abs', 'min', 'max'):
            return max(e)
        if op == 'shift':
            return e[0] * 2.0 ** value
        if op == 'div':
            return e[0] / value + 2.0 ** -self.value(args[0]).frac
        if op == 'pow':
            return (m[0] + e[0]) ** value - m[0] ** value
        if op == 'sign':
            return 0.0 if e[0] == 0 else 2.0
        if op == 'round':  # exact on an exact operand; else the integers around an E-wide interval
            return 0.0 if e[0] == 0 else e[0] + 1.0
        if op == 'select':
            return max(e[1], e[2]) if e[0] == 0 else m[1] + m[2] + e[1] + e[2]
        return self.table(k, args[0], e[0], value)

    def table(self, k: int, i: int, err: float, value) -> float:
        fs, arg_t = self.specs[value[0]], type_of(value[1], '')
        table = self.node.attrs['tables'][f't{k}']
        arg_iv = self.value(i)
        err = self.cast(err, arg_iv, arg_t)
        lo, hi = (max(v, arg_t.min_value) for v in _reals(arg_iv))
        hi = min(hi, arg_t.max_value)
        clamp = 0.0
        if fs.ranged:  # sample a + i step; the address (x - a_q) s_q with a_q, s_q the exact constants
            start, scale = address_constants(fs)
            step = (fs.range_end - fs.range_start) / fs.table_size
            if lo - err < fs.range_start or hi + err > fs.range_end - step:
                return INF  # outside the table: the entry at its end, not f(x)
            s_q, a_q = scale.values[0] * 2.0 ** -scale.frac, start.values[0] * 2.0 ** -start.frac
            far = max(abs(lo - fs.range_start), abs(hi - fs.range_start)) + err
            drift = step * (abs(fs.range_start - a_q) * s_q + far * abs(s_q - 1 / step))
            reach = (step / 2 if fs.rounding == 'nearest' else step) + drift
        else:  # sample at the index value (nearest) or the centre of the arguments flooring onto it
            idx = table.index
            reach = 0.0 if idx.frac >= arg_t.frac else (idx.lsb / 2 if fs.rounding == 'nearest'
                                                          else (idx.lsb - arg_t.lsb) / 2)
            if idx.min_value > lo or idx.max_value < hi:  # a saturated index: f changes by < an entry LSB there
                clamp = table.type.lsb
        if err == INF:
            return INF
        first, last = self.addresses(table, fs, arg_t, arg_iv)
        entries = table.type.to_float(table.values[first:last + 1])
        if np.any(entries <= table.type.min_value) or np.any(entries >= table.type.max_value):
            return INF  # a saturated entry read: the real function leaves the table type
        moved = err + reach  # how far the sampled point can be from the real argument
        change = change_bound(fs.math_func, lo - moved, hi + moved, moved) if moved else 0.0
        return change + clamp + rounding_error(table.type)

    @staticmethod
    def addresses(table, fs, arg_t: FixedType, arg_iv: Interval) -> tuple[int, int]:
        """The first and last table address the arguments in `arg_iv` read (every step is monotonic)."""
        m = cast_wide(arg_t, np.asarray([arg_iv.min, arg_iv.max], dtype=object), arg_iv.frac, None).astype(object)
        frac = arg_t.frac
        if fs.ranged:
            start, scale = address_constants(fs)
            f = max(frac, start.frac)
            m = (m * (1 << (f - frac)) - int(start.values[0]) * (1 << (f - start.frac))) * int(scale.values[0])
            frac = f + scale.frac
        a = cast_wide(table.index, m, frac, None).astype(np.int64) - table.index.min_mantissa
        return int(a[0]), int(a[1])

    def run(self, result: FixedType) -> np.ndarray:
        for k in range(len(self.program)):
            err = self.step(k)
            t = type_of(self.program[k][3], '') if self.program[k][0] not in ('const', 'func') else None
            if t is not None:
                err = self.cast(err, self.labels[f'e{k}'], t)
            self.errors.append(err)
        return np.asarray([self.cast(self.errors[o], self.value(o), result) for o in self.outputs])


def error_bounds(model, low=None, high=None, layer: str = 'expr1') -> np.ndarray:
    """The bound on |output - real formula at the quantized inputs| of each output of an Expression layer.

    low, high: the range of the inputs (scalars or one value per input); by default the model's input
    bounds (the whole input type), over which many expressions can overflow (an infinite bound).
    """
    graph = model.graph
    node = graph[layer]
    source = graph[node.inputs[0]]
    t = source.result_type
    if low is None and high is None:
        in_iv = model.intervals[source.name] if getattr(model, 'intervals', None) else Interval.of_type(t, source.shape)
    else:
        low = np.broadcast_to(np.asarray(t.min_value if low is None else low, dtype=np.float64), source.shape)
        high = np.broadcast_to(np.asarray(t.max_value if high is None else high, dtype=np.float64), source.shape)
        lo = np.clip(np.floor(low * 2.0 ** t.frac), t.min_mantissa, t.max_mantissa).astype(np.int64)
        hi = np.clip(np.ceil(high * 2.0 ** t.frac), t.min_mantissa, t.max_mantissa).astype(np.int64)
        in_iv = Interval(lo.astype(object), hi.astype(object), t.frac)
    return _Errors(node, t, in_iv).run(node.result_type)
