"""The expression program: the validated instruction list an 'Expression' node carries.

An instruction is ``[op, args, value, precision]``: `args` are indices of earlier instructions,
`value` the op's parameter and `precision` an optional type (a string such as 'ap_fixed<18,8>')
the instruction's value is cast into (for 'const' the constant's type, for 'func' the table's
entry type). The ops and their exact meaning (docs/symbolic.md):

=========  =====  ========================================================================
op         args   value: meaning
=========  =====  ========================================================================
x          0      i: input x_i
const      0      c: the real constant c quantized into its type (an error if out of range)
add, sub   2      a + b, a - b, exact
mul        2      a * b, exact
min, max   2      the smaller / larger of a and b
neg, abs   1      -a, |a|, exact
sign       1      1, 0 or -1
shift      1      k: a * 2^k, exact (a power-of-two coefficient)
div        1      q: a / q for an integer q >= 2, truncated toward zero at a's LSB
pow        1      n: a^n for an integer n >= 2, exact (repeated squaring)
round      1      'floor': the largest integer <= a; 'even': the nearest integer, ties to even
func       1      [key, arg_type]: a is cast into arg_type, then table `key` (functions[key]) is read
select     3      d > 0 ? a : b (Piecewise: d is the difference of the compared sides)
=========  =====  ========================================================================

Nothing else exists: a program is data, checked here before any interpreter reads it.
"""

from __future__ import annotations

import math

from ..fixed import AUTO, FixedType, PrecisionError, parse_precision
from ..ir import GraphError

#: op -> number of operands
ARITY = {'x': 0, 'const': 0, 'add': 2, 'sub': 2, 'mul': 2, 'min': 2, 'max': 2, 'neg': 1, 'abs': 1, 'sign': 1,
         'shift': 1, 'div': 1, 'pow': 1, 'round': 1, 'func': 1, 'select': 3}
#: the value of a 'round' instruction -> the ap_fixed rounding of its cast to an integer
ROUND_MODES = {'floor': 'TRN', 'even': 'RND_CONV'}
#: the largest |shift| and power accepted (beyond them an exact value needs thousands of bits)
MAX_SHIFT, MAX_POWER = 64, 16


def type_of(text, where: str) -> FixedType | None:
    """A precision string (or FixedType) as a FixedType; None or 'auto': no cast (the exact value)."""
    if text is None:
        return None
    try:
        t = parse_precision(text)
    except PrecisionError as err:
        raise GraphError(f'{where}: {err}') from None
    return None if t == AUTO else t


def _int(value, lo: int, hi: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise GraphError(f'{where}: expected an integer in [{lo}, {hi}], got {value!r}')
    return value


def check_instruction(k: int, ins, n_inputs: int, functions: dict, where: str) -> None:
    """Check instruction k: its op, operands (earlier instructions only), value and precision."""
    here = f'{where}: instruction {k}'
    if not isinstance(ins, (list, tuple)) or len(ins) != 4:
        raise GraphError(f'{here} must be [op, args, value, precision], got {ins!r}')
    op, args, value, precision = ins
    if op not in ARITY:
        raise GraphError(f'{here}: unknown op {op!r}; the ops are {sorted(ARITY)}')
    if not isinstance(args, (list, tuple)) or len(args) != ARITY[op]:
        raise GraphError(f'{here} ({op}) takes {ARITY[op]} operand(s), got {args!r}')
    for a in args:
        _int(a, 0, k - 1, f'{here} ({op}) operand')
    if op == 'x':
        _int(value, 0, n_inputs - 1, f'{here} (x): the input index')
    elif op == 'const':
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise GraphError(f'{here} (const): expected a finite number, got {value!r}')
        if type_of(precision, here) is None:
            raise GraphError(f'{here} (const): a constant needs a type, got {precision!r}')
    elif op == 'shift':
        _int(value, -MAX_SHIFT, MAX_SHIFT, f'{here} (shift)')
    elif op == 'div':
        _int(value, 2, 1 << 32, f'{here} (div): the divisor')
    elif op == 'pow':
        _int(value, 2, MAX_POWER, f'{here} (pow): the exponent')
    elif op == 'round':
        if value not in ROUND_MODES:
            raise GraphError(f'{here} (round): the mode must be one of {list(ROUND_MODES)}, got {value!r}')
    elif op == 'func':
        if not isinstance(value, (list, tuple)) or len(value) != 2 or value[0] not in functions:
            raise GraphError(f'{here} (func): expected [key, argument type] with a key of functions '
                             f'{sorted(functions)}, got {value!r}')
        if type_of(value[1], here) is None or type_of(precision, here) is None:
            raise GraphError(f'{here} (func {value[0]!r}): a table needs an argument type and an entry type '
                             f'(its index is built from the argument type), got {value[1]!r} and {precision!r}')
    elif value is not None:
        raise GraphError(f'{here} ({op}) takes no value, got {value!r}')
    type_of(precision, here)


def check_program(program, outputs, n_inputs: int, functions: dict, where: str) -> None:
    """Check a whole program and its output indices (a GraphError names `where` and the instruction)."""
    if not isinstance(program, (list, tuple)) or not program:
        raise GraphError(f'{where}: program must be a non-empty list of instructions')
    for k, ins in enumerate(program):
        check_instruction(k, ins, n_inputs, functions, where)
    if not isinstance(outputs, (list, tuple)) or not outputs:
        raise GraphError(f'{where}: outputs must be a non-empty list of instruction indices')
    for o in outputs:
        _int(o, 0, len(program) - 1, f'{where}: output')
