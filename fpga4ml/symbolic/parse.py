"""Expressions in, sympy expressions out, without running anything from the text.

A string is checked token by token before sympy sees it: only numbers, the operators
``+ - * / ** ^ ( ) , < > <= >=``, the input symbols x0, x1, ..., the constants pi and E, the
supported functions (`FUNCTIONS`: sympy's names and PySR's operator names) and the user's LUT function names
are accepted; any other name (``__import__``, ``os``, an unknown function), attribute access,
strings, brackets, ``lambda`` or keywords raise a ValueError naming the token. Only then is the
text handed to sympy's parser, with a namespace holding exactly those names.

PySR's hall-of-fame CSV (columns Complexity, Loss, Equation) is read with the csv module; the
equation is chosen by index or by PySR's score rule (`choose_equation`).
"""

from __future__ import annotations

import csv
import io
import keyword
import math
import os
import re
import tokenize
from pathlib import Path

try:
    import sympy
except ImportError as err:  # not a core dependency of fpga4ml
    raise ImportError("symbolic expressions need sympy: pip install 'sympy>=1.12'") from err

#: one-argument functions of expressions (the math functions become tables)
TABLE_FUNCTIONS = ('sin', 'cos', 'tan', 'exp', 'log', 'sqrt', 'tanh', 'sigmoid', 'sinh', 'cosh', 'asin', 'acos',
                   'atan', 'erf', 'asinh', 'acosh', 'atanh', 'erfc', 'gamma')
#: the other functions an expression may call (sympy's names, then PySR's operator names: PYSR_OPERATORS)
OTHER_FUNCTIONS = ('Abs', 'abs', 'sign', 'Min', 'Max', 'min', 'max', 'Piecewise', 'floor', 'ceiling', 'rint', 'Mod',
                   'Eq', 'Ne', 'And', 'Or', 'Not')
OPERATORS = {'+', '-', '*', '/', '**', '^', '(', ')', ',', '<', '>', '<=', '>='}
SYMBOL = re.compile(r'x(0|[1-9][0-9]{0,5})')
NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]{0,63}')
MAX_LENGTH = 100_000
#: the largest |constant exponent| accepted (larger ones are no fixed-point computation)
MAX_EXPONENT = 64


class sigmoid(sympy.Function):
    """1 / (1 + exp(-x)) (a function of its own, so that it becomes one table)."""

    nargs = 1

    def _eval_evalf(self, prec):
        return (1 / (1 + sympy.exp(-self.args[0])))._eval_evalf(prec)


class rint(sympy.Function):
    """The nearest integer, ties to even: Julia's `round`, with which PySR evaluates its `round` operator."""

    nargs = 1

    @classmethod
    def eval(cls, a):
        if a.is_Number:
            a = sympy.Rational(a)  # a Float's exact binary value (a Float never equals 1/2 in sympy >= 1.13)
            low = sympy.floor(a)
            d = a - low
            return low + 1 if d > sympy.S.Half or (d == sympy.S.Half and low % 2) else low
        return None


def _piecewise_flag(cond):
    return sympy.Piecewise((sympy.S.One, cond), (sympy.S.Zero, True))


#: PySR's operator names (its `sympy_mappings`, pysr/export_sympy.py) with the same meanings, so that a
#: hall-of-fame equation reads as PySR's `sympy()` gives it; `round` is Julia's (ties to even), as PySR fits it
#: (PySR's own sympy mapping writes ceiling(x - 1/2), which rounds ties down), `inv` is 1/x
PYSR_OPERATORS = {
    'square': lambda a: a ** 2, 'cube': lambda a: a ** 3, 'neg': lambda a: -a, 'inv': lambda a: 1 / a,
    'div': lambda a, b: a / b, 'mult': lambda a, b: a * b, 'plus': lambda a, b: a + b, 'sub': lambda a, b: a - b,
    'pow': lambda a, b: a ** b, 'pow_abs': lambda a, b: sympy.Abs(a) ** b,
    'sqrt_abs': lambda a: sympy.sqrt(sympy.Abs(a)),
    'acosh_abs': lambda a: sympy.acosh(sympy.Abs(a) + 1),
    'atanh_clip': lambda a: sympy.atanh(sympy.Mod(a + 1, 2) - 1), 'mod': lambda a, b: sympy.Mod(a, b),
    'log10': lambda a: sympy.log(a, 10), 'log2': lambda a: sympy.log(a, 2), 'log1p': lambda a: sympy.log(a + 1),
    'log_abs': lambda a: sympy.log(sympy.Abs(a)), 'log10_abs': lambda a: sympy.log(sympy.Abs(a), 10),
    'log2_abs': lambda a: sympy.log(sympy.Abs(a), 2), 'log1p_abs': lambda a: sympy.log(sympy.Abs(a) + 1),
    'ceil': lambda a: sympy.ceiling(a), 'round': lambda a: rint(a), 'relu': lambda a: sympy.Max(a, 0),
    'greater': lambda a, b: _piecewise_flag(sympy.StrictGreaterThan(a, b)),
    'cond': lambda a, b: sympy.Piecewise((b, sympy.StrictGreaterThan(a, 0)), (sympy.S.Zero, True)),
    'logical_or': lambda a, b: _piecewise_flag(sympy.Or(sympy.StrictGreaterThan(a, 0), sympy.StrictGreaterThan(b, 0))),
    'logical_and': lambda a, b: _piecewise_flag(sympy.And(sympy.StrictGreaterThan(a, 0),
                                                          sympy.StrictGreaterThan(b, 0))),
}
FUNCTIONS = TABLE_FUNCTIONS + OTHER_FUNCTIONS + tuple(PYSR_OPERATORS)
#: what an expression may be besides an arithmetic sympy.Expr: a condition, its value 1 where true, else 0
BOOLEANS = (sympy.core.relational.Relational, sympy.logic.boolalg.BooleanFunction, sympy.logic.boolalg.BooleanAtom)


def lut_function(name: str):
    """The undefined sympy function standing for a user's LUT function `name`."""
    return sympy.Function(name)


def _namespace(lut_names) -> dict:
    ns = {name: getattr(sympy, name) for name in TABLE_FUNCTIONS + OTHER_FUNCTIONS + ('pi', 'E')
          if name not in ('sigmoid', 'abs', 'min', 'max', 'rint')}
    ns.update({'abs': sympy.Abs, 'min': sympy.Min, 'max': sympy.Max, 'sigmoid': sigmoid, 'rint': rint,
               **PYSR_OPERATORS,
               'Integer': sympy.Integer, 'Float': sympy.Float, 'Rational': sympy.Rational, 'Symbol': sympy.Symbol,
               'true': sympy.true, 'True': sympy.true})
    # the classes sympy's parser calls for operators when it reads without evaluating
    ns.update({name: getattr(sympy, name) for name in ('Add', 'Mul', 'Pow', 'Lt', 'Le', 'Gt', 'Ge', 'StrictLessThan',
                                                       'StrictGreaterThan', 'LessThan', 'GreaterThan')})
    ns.update({name: lut_function(name) for name in lut_names})
    return ns


def check_text(text: str, lut_names=()) -> None:
    """Refuse any token outside the expression language (see the module doc), naming it."""
    if not isinstance(text, str):
        raise TypeError(f'an expression must be a string or a sympy expression, got {type(text).__name__}')
    if len(text) > MAX_LENGTH:
        raise ValueError(f'expression of {len(text)} characters is longer than the {MAX_LENGTH} accepted')
    allowed = set(FUNCTIONS) | set(lut_names) | {'pi', 'E', 'True'}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError) as err:
        raise ValueError(f'expression {text[:80]!r} is not well formed: {err}') from None
    for tok in tokens:
        kind, s = tok.type, tok.string
        if kind in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER) or (kind == tokenize.INDENT and not s.strip()):
            continue
        if kind == tokenize.NUMBER:
            if re.fullmatch(r'[0-9]*\.?[0-9]*([eE][+-]?[0-9]+)?', s) and any(c.isdigit() for c in s):
                continue
            raise ValueError(f'expression {text[:80]!r}: number {s!r} is not accepted (decimal numbers only)')
        if kind == tokenize.OP and s in OPERATORS:
            continue
        name_ok = s == 'True' or not keyword.iskeyword(s) and (SYMBOL.fullmatch(s) or s in allowed)
        if kind == tokenize.NAME and name_ok:
            continue
        if kind == tokenize.NAME and NAME.fullmatch(s) and not keyword.iskeyword(s):
            raise ValueError(f'expression {text[:80]!r}: unknown name {s!r}; accepted: the inputs x0, x1, ..., '
                             f'pi, E, the functions {sorted(FUNCTIONS)} and the LUT functions '
                             f'{sorted(lut_names)}')
        raise ValueError(f'expression {text[:80]!r}: token {s!r} is not accepted; an expression holds numbers, '
                         f'the inputs x0, x1, ..., functions and the operators {sorted(OPERATORS)}')


def parse(text: str, lut_names=()) -> sympy.Expr:
    """A sympy expression from `text`, checked first (check_text); '^' is a power, as PySR writes it.

    The text is first read without evaluation, so that a power with a huge constant exponent
    (``9**9**9``, which sympy would compute) is refused before any arithmetic happens.
    """
    check_text(text, lut_names)
    ns = _namespace(lut_names)
    ns.update({m: sympy.Symbol(m) for m in set(re.findall(r'\bx(?:0|[1-9][0-9]*)\b', text))})
    check_powers(_parse(text, ns, evaluate=False), text)
    expr = _parse(text, ns, evaluate=True)
    if not isinstance(expr, (sympy.Expr,) + BOOLEANS):
        raise ValueError(f'expression {text[:80]!r} is a {type(expr).__name__}, not an arithmetic expression or a '
                         'condition')
    return expr


def _parse(text: str, ns: dict, evaluate: bool):
    from sympy.parsing.sympy_parser import auto_number, convert_xor, parse_expr
    try:
        return parse_expr(text, local_dict=dict(ns), global_dict={'__builtins__': {}},
                          transformations=(auto_number, convert_xor), evaluate=evaluate)
    except (SyntaxError, TypeError, ValueError, AttributeError, NameError, sympy.SympifyError) as err:
        raise ValueError(f'expression {text[:80]!r} cannot be parsed: {err}') from None


def check_powers(expr, text: str) -> None:
    """Refuse a power whose exponent is constant and larger than MAX_EXPONENT in magnitude."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow) and not node.exp.free_symbols:
            value = complex(node.exp.evalf(15))
            if not abs(value) <= MAX_EXPONENT:
                raise ValueError(f'expression {text[:80]!r}: the exponent {node.exp} is larger than the '
                                 f'{MAX_EXPONENT} accepted')


def as_expressions(expr, lut_names=()) -> list[sympy.Expr]:
    """A list of sympy expressions from a string, a sympy expression or a list/tuple of them."""
    items = list(expr) if isinstance(expr, (list, tuple)) else [expr]
    if not items:
        raise ValueError('convert_from_symbolic_expression: no expression given')
    out = []
    for e in items:
        if isinstance(e, sympy.Basic):
            if not isinstance(e, (sympy.Expr,) + BOOLEANS):
                raise ValueError(f'{e!r} is a {type(e).__name__}, not an arithmetic expression or a condition')
            out.append(e)
        else:
            out.append(parse(e, lut_names))
    return out


def n_symbols_of(exprs: list[sympy.Expr]) -> int:
    """1 + the largest input index the expressions use (x0..x{n-1}); other symbol names are an error."""
    n = 0
    for e in exprs:
        for s in e.free_symbols:
            if not SYMBOL.fullmatch(s.name):
                raise ValueError(f'symbol {s.name!r} is not an input name; inputs are named x0, x1, ...')
            n = max(n, int(s.name[1:]) + 1)
    return n


# ---------------------------------------------------------------------------- PySR hall of fame

def read_hall_of_fame(path: str | os.PathLike) -> list[dict]:
    """The rows of a PySR hall-of-fame CSV: [{'complexity', 'loss', 'equation'}] in file order."""
    text = Path(path).read_text(encoding='utf-8')
    reader = csv.DictReader(io.StringIO(text))
    fields = {f.strip().lower(): f for f in reader.fieldnames or []}
    missing = [c for c in ('complexity', 'loss', 'equation') if c not in fields]
    if missing:
        raise ValueError(f'{path}: a PySR hall-of-fame file has the columns Complexity, Loss, Equation; '
                         f'missing {missing} (found {reader.fieldnames})')
    rows = []
    for i, row in enumerate(reader):
        try:
            rows.append({'complexity': int(float(row[fields['complexity']])), 'loss': float(row[fields['loss']]),
                         'equation': row[fields['equation']].strip()})
        except (TypeError, ValueError):
            raise ValueError(f'{path}: row {i + 1} has a non-numeric Complexity or Loss: {row}') from None
    if not rows:
        raise ValueError(f'{path}: the hall of fame holds no equation')
    return rows


def scores(rows: list[dict]) -> list[float]:
    """PySR's score of each row: -d log(loss) / d complexity against the previous row (by complexity); 0 first."""
    order = sorted(range(len(rows)), key=lambda i: rows[i]['complexity'])
    out = [0.0] * len(rows)
    for prev, cur in zip(order, order[1:]):
        dc = rows[cur]['complexity'] - rows[prev]['complexity']
        lp, lc = max(rows[prev]['loss'], 1e-300), max(rows[cur]['loss'], 1e-300)
        out[cur] = -(math.log(lc) - math.log(lp)) / dc if dc > 0 else 0.0
    return out


def choose_equation(rows: list[dict], index='best') -> str:
    """The chosen equation: an int index, 'accuracy' (lowest loss), 'score' (highest score) or 'best'
    (PySR's default: the highest score among the rows whose loss is at most 1.5 x the lowest loss)."""
    if isinstance(index, int) and not isinstance(index, bool):
        if not -len(rows) <= index < len(rows):
            raise ValueError(f'hall of fame: index {index} is out of range for {len(rows)} equations')
        return rows[index]['equation']
    s, best_loss = scores(rows), min(r['loss'] for r in rows)
    if index == 'accuracy':
        pick = min(range(len(rows)), key=lambda i: rows[i]['loss'])
    elif index == 'score':
        pick = max(range(len(rows)), key=lambda i: s[i])
    elif index == 'best':
        pick = max((i for i in range(len(rows)) if rows[i]['loss'] <= 1.5 * best_loss), key=lambda i: s[i])
    else:
        raise ValueError(f"hall of fame: choose an equation by an int index, 'best', 'score' or 'accuracy'; "
                         f'got {index!r}')
    return rows[pick]['equation']


def is_hall_of_fame(expr) -> bool:
    """Whether `expr` names a CSV file (a PySR hall of fame) rather than being an expression."""
    return isinstance(expr, os.PathLike) or (isinstance(expr, str) and expr.strip().lower().endswith('.csv'))
