"""Real-valued definitions of the activation functions (float64, numerically stable).

Used once by the float reference forward pass and once by the table builder, so the tables
the emulator and the back ends use are quantized samples of exactly these functions.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function 1 / (1 + e^-x), without overflow for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + e^x), stable for large |x|."""
    return np.logaddexp(0.0, np.asarray(x, dtype=np.float64))


def softsign(x: np.ndarray) -> np.ndarray:
    """x / (1 + |x|)."""
    x = np.asarray(x, dtype=np.float64)
    return x / (1.0 + np.abs(x))


def elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """x for x > 0, alpha * (e^x - 1) otherwise."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def selu(x: np.ndarray) -> np.ndarray:
    """Scaled ELU with the self-normalizing constants."""
    return SELU_SCALE * elu(x, SELU_ALPHA)


def exp(x: np.ndarray) -> np.ndarray:
    """e^x (inf beyond the float64 range; quantization saturates or wraps it)."""
    with np.errstate(over='ignore'):
        return np.exp(np.asarray(x, dtype=np.float64))


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU x * Phi(x) = x / 2 * (1 + erf(x / sqrt 2)) (Keras approximate=False, torch 'none')."""
    from scipy.special import erf

    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU's tanh form x / 2 * (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) (Keras approximate=True, torch 'tanh')."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def table_function(name: str, attrs: dict) -> Callable[[np.ndarray], np.ndarray]:
    """The real function behind a table activation, with its attributes bound."""
    if name == 'sigmoid':
        return sigmoid
    if name == 'tanh':
        return lambda x: np.tanh(np.asarray(x, dtype=np.float64))
    if name == 'softplus':
        return softplus
    if name == 'softsign':
        return softsign
    if name == 'elu':
        alpha = float(attrs.get('alpha', 1.0))
        return lambda x: elu(x, alpha)
    if name == 'selu':
        return selu
    if name == 'exp':
        return exp
    if name in ('gelu', 'gelu_tanh'):
        return gelu if name == 'gelu' else gelu_tanh
    raise ValueError(f'{name!r} is not a table activation')


def is_monotonic(name: str, attrs: dict) -> bool:
    """True if the function is non-decreasing (lets the table clamp its input range safely)."""
    if name == 'elu':
        return float(attrs.get('alpha', 1.0)) >= 0
    return name in ('sigmoid', 'tanh', 'softplus', 'softsign', 'selu', 'exp')
