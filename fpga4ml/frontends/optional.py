"""Frameworks are optional extras: import them on first use, or say how to install them."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_framework(front_end: str, extra: str, *modules: str) -> ModuleType:
    """Import the modules a front end needs and return the first; ImportError with the pip hint otherwise."""
    try:
        loaded = [importlib.import_module(name) for name in modules]
    except ImportError as err:
        raise ImportError(f"the {front_end} front end needs {' and '.join(modules)}: "
                          f"pip install 'fpga4ml[{extra}]'; import failed: {err}") from err
    return loaded[0]
