"""Symbolic expressions (PySR, sympy) as firmware: parsing, the expression program, tables, conversion.

`convert_from_symbolic_expression` (also `fpga4ml.converters.convert_from_symbolic_expression`)
turns expressions of x0..x{n-1} into a Model whose one 'Expression' layer carries a validated
program (program.py) interpreted by the recipe in fpga4ml/semantics/recipes_symbolic.py; see
docs/symbolic.md.
"""

from .convert import build_graph, convert_from_symbolic_expression
from .parse import choose_equation, parse, read_hall_of_fame

__all__ = ['build_graph', 'choose_equation', 'convert_from_symbolic_expression', 'parse', 'read_hall_of_fame']
