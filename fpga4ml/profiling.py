"""Numerical profiling: where does a converted model lose precision?"""

from __future__ import annotations

from .model import Model


def profile(model: Model, x, file=None) -> str:
    """Print (and return) per-layer types, ranges used vs. type ranges and overflow counts on `x`."""
    text = model.profile(x)
    print(text, file=file)
    return text
