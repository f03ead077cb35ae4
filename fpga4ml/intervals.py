"""Exact interval arithmetic on fixed-point mantissas.

An `Interval` holds per-element integer bounds ``lo <= m <= hi`` of mantissas with `frac`
fractional bits (real value = m * 2^-frac). Bounds are Python integers in numpy object arrays,
so no bound is ever rounded: the types derived from them cannot overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed import FixedType, PrecisionError
from .geometry import take


def _obj(a) -> np.ndarray:
    """An object array of Python ints (exact arithmetic, any magnitude)."""
    arr = np.asarray(a)
    if arr.dtype == object:
        return arr
    return np.array(arr.tolist(), dtype=object).reshape(arr.shape)


def _shift(a: np.ndarray, s: int) -> np.ndarray:
    """Exact multiplication by 2^s for s >= 0."""
    return a * (1 << s) if s else a


@dataclass
class Interval:
    """Per-element bounds lo <= m <= hi of mantissas with `frac` fractional bits."""

    lo: np.ndarray
    hi: np.ndarray
    frac: int

    def __post_init__(self) -> None:
        # arithmetic on 0-d object arrays gives Python scalars: keep every bound an array
        if not isinstance(self.lo, np.ndarray):
            self.lo = np.asarray(self.lo, dtype=object)
        if not isinstance(self.hi, np.ndarray):
            self.hi = np.asarray(self.hi, dtype=object)

    @classmethod
    def of_type(cls, t: FixedType, shape: tuple[int, ...]) -> 'Interval':
        """The full range of type `t` for every element of `shape`."""
        lo = np.full(shape, t.min_mantissa, dtype=object)
        hi = np.full(shape, t.max_mantissa, dtype=object)
        return cls(lo, hi, t.frac)

    @classmethod
    def of_values(cls, m: np.ndarray, frac: int) -> 'Interval':
        """The degenerate interval of known mantissas (constants)."""
        m = _obj(m)
        return cls(m.copy(), m.copy(), frac)

    @property
    def min(self) -> int:
        """Smallest bound over all elements (mantissa)."""
        return int(np.min(self.lo)) if self.lo.size else 0

    @property
    def max(self) -> int:
        """Largest bound over all elements (mantissa)."""
        return int(np.max(self.hi)) if self.hi.size else 0

    @property
    def abs_max(self) -> int:
        """Largest magnitude of any value (mantissa)."""
        return max(abs(self.min), abs(self.max))

    def align(self, frac: int) -> 'Interval':
        """Express the same bounds with more fractional bits (exact)."""
        if frac < self.frac:
            raise ValueError('align only adds fractional bits')
        s = frac - self.frac
        return Interval(_shift(self.lo, s), _shift(self.hi, s), frac)

    def reshape(self, shape: tuple[int, ...]) -> 'Interval':
        """Same bounds, new per-sample shape."""
        return Interval(self.lo.reshape(shape), self.hi.reshape(shape), self.frac)

    def gather(self, index: np.ndarray, fill: int = 0) -> 'Interval':
        """Bounds of the flattened elements picked by `index` (geometry.take); -1 reads the constant `fill`."""
        return Interval(take(self.lo.ravel(), index, fill), take(self.hi.ravel(), index, fill), self.frac)

    def cast(self, t: FixedType) -> 'Interval':
        """Bounds after casting into `t` (rounding is monotone; overflow may give the whole range)."""
        lo = _cast_bounds(self.lo, self.frac, t)
        hi = _cast_bounds(self.hi, self.frac, t)
        overflow = (lo < t.min_mantissa) | (hi > t.max_mantissa)
        if np.any(overflow):
            lo = np.where(overflow, t.min_mantissa, lo)
            hi = np.where(overflow, t.max_mantissa, hi)
            lo = np.array(lo.tolist(), dtype=object).reshape(self.lo.shape)
            hi = np.array(hi.tolist(), dtype=object).reshape(self.hi.shape)
        return Interval(lo, hi, t.frac)

    def fits(self, t: FixedType) -> bool:
        """True if every value is representable in `t` without rounding or overflow."""
        if t.frac < self.frac:
            s = self.frac - t.frac
            if any(int(v) % (1 << s) for v in np.concatenate([self.lo.ravel(), self.hi.ravel()])):
                return False
            lo, hi = self.min >> s, self.max >> s
        else:
            lo, hi = self.min << (t.frac - self.frac), self.max << (t.frac - self.frac)
        return t.min_mantissa <= lo and hi <= t.max_mantissa

    def max_bits(self) -> int:
        """Bits needed for the largest magnitude (used to decide exact float64 evaluation)."""
        return self.abs_max.bit_length()


def _cast_bounds(bounds: np.ndarray, frac_in: int, t: FixedType) -> np.ndarray:
    """Round exact bounds to t's LSB with t's rounding mode, without applying overflow."""
    s = frac_in - t.frac
    if s <= 0:
        return _shift(bounds, -s)
    out = []
    for v in bounds.ravel().tolist():
        out.append(round_shift(int(v), s, t.rounding))
    return np.array(out, dtype=object).reshape(bounds.shape)


def round_shift(v: int, s: int, rounding: str) -> int:
    """Exact v / 2^s rounded to an integer with an ap_fixed rounding mode (Python ints)."""
    if s <= 0:
        return v << -s
    q, r = v >> s, v & ((1 << s) - 1)
    if r == 0:
        return q
    half = 1 << (s - 1)
    if rounding == 'TRN':
        return q
    if rounding == 'TRN_ZERO':
        return q + 1 if v < 0 else q
    if r > half:
        return q + 1
    if r < half:
        return q
    # exact tie
    if rounding == 'RND':
        return q + 1
    if rounding == 'RND_ZERO':
        return q + 1 if v < 0 else q
    if rounding == 'RND_MIN_INF':
        return q
    if rounding == 'RND_INF':
        return q if v < 0 else q + 1
    if rounding == 'RND_CONV':
        return q + (q & 1)
    raise ValueError(f'unknown rounding mode {rounding!r}')


#: bounds below 2^INT64_SAFE_BITS are computed with int64 matrix products (exact, much faster)
INT64_SAFE_BITS = 62


def trunc_div(m: np.ndarray, n) -> np.ndarray:
    """m / n rounded toward zero (C integer division, as ap_fixed's operator/ by an integer).

    Works on int64 arrays and on object arrays of Python ints; n > 0 (a scalar or an array).
    """
    return np.where(m < 0, -((-m) // n), m // n)


def dense_interval(x: Interval, kernel_m: np.ndarray, kernel_frac: int,
                   bias_m: np.ndarray | None, bias_frac: int) -> Interval:
    """Exact bounds of x @ kernel + bias (last axis), with frac = max(x.frac + kernel_frac, bias_frac)."""
    frac = max(x.frac + kernel_frac, bias_frac)
    s = frac - x.frac - kernel_frac
    k = np.asarray(kernel_m)
    col_sum = int(np.max(np.abs(k.astype(object)).sum(axis=0), initial=0)) if k.size else 0
    if ((x.abs_max * col_sum) << s).bit_length() < INT64_SAFE_BITS and k.dtype != object:
        k = k.astype(np.int64)
        k_pos, k_neg = np.maximum(k, 0), np.minimum(k, 0)
        xlo, xhi = x.lo.astype(np.int64), x.hi.astype(np.int64)
        lo = _obj(xlo @ k_pos + xhi @ k_neg)
        hi = _obj(xhi @ k_pos + xlo @ k_neg)
    else:
        k = _obj(k)
        xlo = x.lo[..., :, None]
        xhi = x.hi[..., :, None]
        pos = k > 0
        hi = np.asarray(np.where(pos, k * xhi, k * xlo).sum(axis=-2), dtype=object)
        lo = np.asarray(np.where(pos, k * xlo, k * xhi).sum(axis=-2), dtype=object)
    lo, hi = _shift(lo, s), _shift(hi, s)
    if bias_m is not None:
        b = _shift(_obj(bias_m), frac - bias_frac)
        lo, hi = lo + b, hi + b
    return Interval(np.asarray(lo, dtype=object), np.asarray(hi, dtype=object), frac)


def product_interval(a: Interval, b: Interval) -> Interval:
    """Exact bounds of the element-wise product a * b."""
    cands = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
    lo = np.minimum.reduce(cands)
    hi = np.maximum.reduce(cands)
    return Interval(np.asarray(lo, dtype=object), np.asarray(hi, dtype=object), a.frac + b.frac)


def sum_interval(parts: list[Interval]) -> Interval:
    """Exact bounds of the element-wise sum of intervals (aligned to the finest LSB)."""
    frac = max(p.frac for p in parts)
    aligned = [p.align(frac) for p in parts]
    lo = sum(p.lo for p in aligned[1:]) + aligned[0].lo if len(aligned) > 1 else aligned[0].lo
    hi = sum(p.hi for p in aligned[1:]) + aligned[0].hi if len(aligned) > 1 else aligned[0].hi
    return Interval(np.asarray(lo, dtype=object), np.asarray(hi, dtype=object), frac)


#: the widest ap_fixed the ap_types headers accept without defining AP_INT_MAX_W (ap_common.h)
AP_INT_MAX_W = 1024


@dataclass(frozen=True)
class WideType:
    """An exact ap_fixed type wider than a FixedType's 64 bits (TRN, WRAP: it holds its value exactly)."""

    width: int
    integer: int
    signed: bool

    @property
    def frac(self) -> int:
        """Fractional bits."""
        return self.width - self.integer

    def to_cpp(self) -> str:
        """The ap_fixed spelling, as FixedType.to_cpp."""
        return f"{'ap_fixed' if self.signed else 'ap_ufixed'}<{self.width},{self.integer}>"


def exact_type(iv: Interval) -> FixedType | WideType:
    """type_for(iv), or a WideType where the value needs more bits than a FixedType has (up to AP_INT_MAX_W)."""
    lo, hi = iv.min, iv.max
    signed = lo < 0
    width = max(hi.bit_length(), (-lo - 1).bit_length()) + 1 if signed else max(hi.bit_length(), 1)
    if width <= (64 if signed else 63):
        return type_for(iv)
    if width > AP_INT_MAX_W:
        raise PrecisionError(f'an exact value needs {width} bits, more than the {AP_INT_MAX_W} of ap_fixed '
                             '(AP_INT_MAX_W)')
    return WideType(width, width - iv.frac, signed)


def type_for(iv: Interval, rounding: str = 'TRN', overflow: str = 'WRAP') -> FixedType:
    """The narrowest type with iv.frac fractional bits that holds every value of `iv`."""
    lo, hi = iv.min, iv.max
    signed = lo < 0
    if signed:
        width = max(hi.bit_length(), (-lo - 1).bit_length()) + 1
    else:
        width = max(hi.bit_length(), 1)
    return FixedType(width, width - iv.frac, signed, rounding, overflow)
