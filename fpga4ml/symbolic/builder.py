"""A sympy expression tree into an expression program (program.py), with its precisions and tables.

Walking rules (docs/symbolic.md has the exact meaning of each):

* ``+ - *`` of sub-expressions are exact; shared sub-expressions are computed once.
* A numeric coefficient c of a product: +-2^k is a shift (exact); a rational p/q is a product by
  the integer p (exact) and a truncated division by q (an exact shift when q is a power of two);
  any other (float) c is a constant quantized into the constant type, then an exact product.
* ``a / b`` with b not a number: ``a * inv(b)``, the reciprocal a table addressed by b's type.
* Integer powers are exact products; other exponents (``sqrt``, ``x**0.3``) are tables.
* Math functions and the user's LUT functions are tables (functions.py); Abs, sign, Min, Max and
  Piecewise are exact selections. A condition (``<, <=, >, >=``, ``Eq``, ``Ne`` of two sub-expressions,
  And, Or, Not of conditions) is a chain of selections on the signs of exact differences; a condition
  used as a value is 1 where it holds, else 0.
* floor and rint (Julia's round: ties to even) are exact roundings to an integer, ceiling(a) is
  -floor(-a); Mod(a, c) by a constant c (quantized into the constant type, c = n 2^-g) is
  a - c t with t = trunc(floor(a 2^g) / n), plus c where that is negative (sympy's Mod: the sign of c);
  t is floored once more, which changes no integer but gives the float meaning floor(a / c).
* A sub-expression without inputs that sympy can evaluate (``pi``, ``log(2)``, ``sin(1/2)``) is one
  constant: its real value quantized into the constant type. A table function of a constant that
  sympy cannot evaluate (a LUT function: ``sin_lut(-0.75)``, as the hls4ml tutorial writes it) is the
  table entry the constant addresses: the constant (in the constant type) is read as any argument, so
  it means what the table gives for an input fixed to that constant, not the real function's value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..fixed import parse_precision
from ..semantics.recipes_symbolic import constant_mantissa
from .parse import BOOLEANS, FUNCTIONS, TABLE_FUNCTIONS, parse, rint, sigmoid, sympy

#: the precision keys a user may set besides 'expressions'
PRECISION_KEYS = ('default', 'input', 'result', 'constant', 'table', 'argument')


@dataclass
class Precisions:
    """The types of an expression: a default, optional per-role types and per-sub-expression overrides."""

    default: str = 'ap_fixed<16,6>'
    roles: dict[str, str] = field(default_factory=dict)
    #: sympy sub-expression -> type string ('auto': exact, no cast)
    expressions: dict = field(default_factory=dict)

    def of(self, role: str) -> str:
        """The type of a role ('input', 'result', 'constant', 'table', 'argument'), else the default."""
        return self.roles.get(role, self.default)


def precisions_from(precision, lut_names=()) -> Precisions:
    """Precisions from a type string, or a dict of PRECISION_KEYS and 'expressions' {sub-expression: type}."""
    if isinstance(precision, str):
        return Precisions(precision)
    if not isinstance(precision, dict):
        raise ValueError(f'precision must be a type string or a dict with keys {list(PRECISION_KEYS)} and '
                         f"'expressions'; got {type(precision).__name__}")
    unknown = set(precision) - set(PRECISION_KEYS) - {'expressions'}
    if unknown:
        raise ValueError(f"precision: unknown key(s) {sorted(unknown)}; accepted: {list(PRECISION_KEYS)} and "
                         "'expressions'")
    roles = {k: str(v) for k, v in precision.items() if k in PRECISION_KEYS and k != 'default'}
    subs = precision.get('expressions') or {}
    if not isinstance(subs, dict):
        raise ValueError("precision['expressions'] must be a dict {sub-expression: type}")
    parsed = {}
    for key, t in subs.items():
        e = key if isinstance(key, sympy.Basic) else parse(key, lut_names)
        parsed[e] = str(t)
    return Precisions(str(precision.get('default', 'ap_fixed<16,6>')), roles, parsed)


def number_value(e) -> float | None:
    """The real value of a sub-expression without inputs that sympy evaluates, else None (a LUT call in it)."""
    if e.free_symbols:
        return None
    try:
        return float(e)
    except TypeError:  # an applied LUT function (sympy knows no value for it)
        return None


def _power_of_two(value: float) -> int | None:
    """k when value == 2^k exactly, else None."""
    if value <= 0 or not math.isfinite(value):
        return None
    mant, exp = math.frexp(value)
    return exp - 1 if mant == 0.5 else None


class Builder:
    """Builds one program for one or more output expressions."""

    def __init__(self, precisions: Precisions, n_inputs: int, functions: dict[str, dict], lut_names=()):
        self.prec, self.n_inputs = precisions, n_inputs
        #: name -> table spec of every function the expressions may call (built-in and the user's)
        self.available = functions
        self.lut_names = set(lut_names)
        self.program: list[list] = []
        self.functions: dict[str, dict] = {}
        self.memo: dict = {}
        self.used: set = set()

    # ------------------------------------------------------------------ emission
    def emit(self, op: str, args: list[int], value=None, precision: str | None = None) -> int:
        """Append one instruction; returns its index."""
        self.program.append([op, list(args), value, precision])
        return len(self.program) - 1

    def const(self, value: float) -> int:
        key = ('const', float(value))
        if key not in self.memo:
            self.memo[key] = self.emit('const', [], float(value), self.prec.of('constant'))
        return self.memo[key]

    def func(self, name: str, arg: int, entry: str | None = None) -> int:
        """A table read of function `name` (a key of `available`) on instruction `arg`."""
        self.functions[name] = self.available[name]
        ins = self.program[arg]
        arg_t = ins[3] if ins[0] not in ('const', 'func') and ins[3] not in (None, 'auto') else self.prec.of('argument')
        return self.emit('func', [arg], [name, arg_t], entry or self.prec.of('table'))

    # ------------------------------------------------------------------ walking
    def walk(self, e) -> int:
        """The instruction computing sympy expression `e` (memoized), with its precision override applied."""
        if e in self.memo:
            return self.memo[e]
        override = self.prec.expressions.get(e)
        if override is not None:
            self.used.add(e)
        k = self._walk(e, override)
        if override is not None and self.program[k][0] not in ('const', 'func'):
            if self.program[k][3] is not None and self.program[k][3] != override:  # shared with its own cast
                k = self.emit('shift', [k], 0, override)  # the same value (x * 2^0), cast into the override
            else:
                self.program[k][3] = override
        self.memo[e] = k
        return k

    def _walk(self, e, override) -> int:
        if isinstance(e, sympy.Symbol):
            idx = int(e.name[1:])
            if idx >= self.n_inputs:
                raise ValueError(f'the expression uses {e.name} but n_symbols is {self.n_inputs}')
            return self.emit('x', [], idx)
        value = None if e.free_symbols else self._number(e)
        if value is not None:  # a number, pi, log(2), sqrt(2): one constant
            if override is not None:
                return self.emit('const', [], value, override)
            return self.const(value)
        if isinstance(e, sympy.Add):
            return self._add(e)
        if isinstance(e, sympy.Mul):
            return self._mul(e)
        if isinstance(e, sympy.Pow):
            return self._pow(e, override)
        if isinstance(e, sympy.Abs):
            return self.emit('abs', [self.walk(e.args[0])])
        if isinstance(e, sympy.sign):
            return self.emit('sign', [self.walk(e.args[0])])
        if isinstance(e, (sympy.Min, sympy.Max)):
            op = 'min' if isinstance(e, sympy.Min) else 'max'
            k = self.walk(e.args[0])
            for a in e.args[1:]:
                k = self.emit(op, [k, self.walk(a)])
            return k
        if isinstance(e, sympy.Piecewise):
            return self._piecewise(e)
        if isinstance(e, BOOLEANS):  # a condition as a value: 1 where it holds, else 0
            return self._branch(e, self.const(1), self.const(0))
        if isinstance(e, (sympy.floor, rint)):
            return self.emit('round', [self.walk(e.args[0])], 'floor' if isinstance(e, sympy.floor) else 'even')
        if isinstance(e, sympy.ceiling):  # -floor(-a)
            return self.emit('neg', [self.emit('round', [self.emit('neg', [self.walk(e.args[0])])], 'floor')])
        if isinstance(e, sympy.Mod):
            return self._mod(e)
        if isinstance(e, sympy.Function):
            return self._function(e, override)
        raise ValueError(f'{type(e).__name__} ({e}) is not supported in expressions; supported: + - * /, integer '
                         f'and real powers, the functions {sorted(FUNCTIONS)} and LUT functions')

    def _number(self, e) -> float | None:
        """The value of an input-free sub-expression (None: it calls a table function, walked as one)."""
        value = number_value(e)
        if e.has(sympy.zoo, sympy.oo, sympy.nan, sympy.I) or (value is not None and not math.isfinite(value)):
            raise ValueError(f'the expression holds the non-finite or complex number {e}')
        return value

    def _add(self, e) -> int:
        k = None
        for term in e.args:
            if k is not None and term.could_extract_minus_sign():
                k = self.emit('sub', [k, self.walk(-term)])
            else:
                v = self.walk(term)
                k = v if k is None else self.emit('add', [k, v])
        return k

    def _mul(self, e) -> int:
        coeff, rest = e.as_coeff_Mul()
        factors = sympy.Mul.make_args(rest)
        numeric = [f for f in factors if number_value(f) is not None]  # log(2), pi: part of the coefficient
        if numeric:
            coeff = sympy.Float(float(coeff * sympy.Mul(*numeric)))
        num, den = [], []
        for f in (f for f in factors if number_value(f) is None):  # inputs, or a LUT function of a constant
            if isinstance(f, sympy.Pow) and f.exp.is_Integer and f.exp < 0:
                den.append(f.base ** (-f.exp))
            else:
                num.append(f)
        k = None
        for f in num:
            v = self.walk(f)
            k = v if k is None else self.emit('mul', [k, v])
        if den:
            inv = self.func('inv', self.walk(sympy.Mul(*den)))
            k = inv if k is None else self.emit('mul', [k, inv])
        return self._coefficient(k, coeff)

    def _coefficient(self, k: int, c) -> int:
        """k * c for a numeric coefficient c (see the module doc)."""
        if c == 1:
            return k
        if c == -1:
            return self.emit('neg', [k])
        if isinstance(c, sympy.Rational):
            p, q = abs(int(c.p)), int(c.q)
            if p != 1:
                shift = _power_of_two(p)
                k = self.emit('shift', [k], shift) if shift is not None else self.emit('mul', [k, self.const(p)])
            if q != 1:
                shift = _power_of_two(q)
                k = self.emit('shift', [k], -shift) if shift is not None else self.emit('div', [k], q)
            return self.emit('neg', [k]) if c < 0 else k
        value = float(c)
        shift = _power_of_two(abs(value))
        if shift is not None:
            k = self.emit('shift', [k], shift) if shift else k
            return self.emit('neg', [k]) if value < 0 else k
        return self.emit('mul', [k, self.const(value)])

    def _pow(self, e, override) -> int:
        base, exp = e.args
        if base.is_Number and not exp.is_Number:  # c**x = exp(x * log(c))
            return self.walk(sympy.exp(exp * sympy.log(base)))
        if exp.is_Integer:
            n = int(exp)
            k = self.walk(base)
            if n < 0:
                k, n = self.func('inv', k), -n
            return k if n == 1 else self.emit('pow', [k], n)
        if not exp.is_Number or not exp.is_real:
            raise ValueError(f'power {e}: the exponent must be a number')
        name = 'sqrt' if exp == sympy.Rational(1, 2) else f'pow:{float(exp)!r}'
        if name not in self.available:
            self.available[name] = {**self.available['inv'], 'math_func': name}
        return self.func(name, self.walk(base), override)

    def _function(self, e, override) -> int:
        name = 'sigmoid' if isinstance(e, sigmoid) else type(e).__name__
        if name not in self.available or (name not in TABLE_FUNCTIONS and name not in self.lut_names):
            raise ValueError(f'function {name!r} is not supported; supported: {sorted(FUNCTIONS)} and the LUT '
                             f'functions {sorted(self.lut_names)}')
        if len(e.args) != 1:
            raise ValueError(f'function {name!r} takes one argument, got {len(e.args)}')
        return self.func(name, self.walk(e.args[0]), override)

    def _mod(self, e) -> int:
        """Mod(a, c) for a constant c, exact at the quantized c (see the module doc)."""
        a, c = e.args
        value = number_value(c)
        if value is None:
            raise ValueError(f'Mod {e}: the divisor {c} must be a constant (a variable divisor is not supported)')
        m, g = constant_mantissa(abs(value), parse_precision(self.prec.of('constant')))
        if m == 0:
            raise ValueError(f'Mod {e}: the divisor {c} is 0 in the constant type {self.prec.of("constant")}')
        x = self.walk(a)
        x = self.emit('neg', [x]) if value < 0 else x  # Mod(a, c) = -Mod(-a, -c)
        scaled = self.emit('shift', [x], g) if g else x  # a 2^g: the divisor is the integer m
        t = self.emit('round', [scaled], 'floor')
        if m > 1:  # trunc(floor(a 2^g) / m): the floor for t >= 0, else 1 above; the floor of that is the same
            t = self.emit('round', [self.emit('div', [t], m)], 'floor')  # integer (the float meaning needs it)
        divisor = self.const(abs(value))
        r = self.emit('sub', [x, self.emit('mul', [t, divisor])])
        k = self.emit('select', [self.emit('neg', [r]), self.emit('add', [r, divisor]), r])
        return self.emit('neg', [k]) if value < 0 else k

    def _branch(self, cond, then: int, other: int) -> int:
        """The instruction giving `then` where condition `cond` holds, else `other` (selects on signs)."""
        if cond == sympy.true:
            return then
        if cond == sympy.false:
            return other
        if isinstance(cond, sympy.Not):
            return self._branch(cond.args[0], other, then)
        if isinstance(cond, (sympy.And, sympy.Or)):
            first, rest = cond.args[0], type(cond)(*cond.args[1:])
            if isinstance(cond, sympy.And):
                return self._branch(first, self._branch(rest, then, other), other)
            return self._branch(first, then, self._branch(rest, then, other))
        if isinstance(cond, (sympy.Eq, sympy.Ne)):  # l == r: neither l - r > 0 nor r - l > 0
            d = self.walk(cond.lhs - cond.rhs)
            equal, unequal = (then, other) if isinstance(cond, sympy.Eq) else (other, then)
            below = self.emit('select', [self.emit('neg', [d]), unequal, equal])
            return self.emit('select', [d, unequal, below])
        d, flip = self._condition(cond)
        return self.emit('select', [d, other, then] if flip else [d, then, other])

    def _condition(self, cond) -> tuple[int, bool]:
        """(d, flip): cond is d > 0 (flip False) or not d > 0 (flip True)."""
        if isinstance(cond, sympy.StrictGreaterThan):
            return self.walk(cond.lhs - cond.rhs), False
        if isinstance(cond, sympy.StrictLessThan):
            return self.walk(cond.rhs - cond.lhs), False
        if isinstance(cond, sympy.GreaterThan):  # l >= r  <=>  not (r - l > 0)
            return self.walk(cond.rhs - cond.lhs), True
        if isinstance(cond, sympy.LessThan):  # l <= r  <=>  not (l - r > 0)
            return self.walk(cond.lhs - cond.rhs), True
        raise ValueError(f'condition {cond} ({type(cond).__name__}) is not supported; conditions are the comparisons '
                         '<, <=, >, >=, Eq, Ne of two sub-expressions and And, Or, Not of conditions')

    def _piecewise(self, e) -> int:
        pairs = list(e.args)
        if pairs[-1].cond != sympy.true:
            raise ValueError(f'Piecewise {e} needs a last (value, True) branch: it is undefined elsewhere')
        k = self.walk(pairs[-1].expr)
        for pair in reversed(pairs[:-1]):
            k = self._branch(pair.cond, self.walk(pair.expr), k)
        return k

    def unused_overrides(self) -> list:
        """The per-sub-expression precisions that matched no sub-expression."""
        return [e for e in self.prec.expressions if e not in self.used]
