"""Symbolic expressions (PySR, sympy) as firmware: parsing, the expression program, tables, conversion.

`convert_from_symbolic_expression` (also `fpga4ml.converters.convert_from_symbolic_expression`)
turns expressions of x0..x{n-1} into a Model whose one 'Expression' layer carries a validated
program (program.py) interpreted by the recipe in fpga4ml/semantics/recipes_symbolic.py; see
docs/symbolic.md. The names below are imported on first use: the recipe needs only program.py and
functions.py, so importing fpga4ml does not import sympy.
"""

from __future__ import annotations

import importlib

#: public name -> the module of this package defining it
_LAZY = {'build_graph': 'convert', 'convert_from_symbolic_expression': 'convert', 'error_bounds': 'error',
         'choose_equation': 'parse', 'read_hall_of_fame': 'parse'}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    """The public names, imported from their modules on first use."""
    if name not in _LAZY:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(f'.{_LAZY[name]}', __name__), name)
