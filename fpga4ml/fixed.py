"""Xilinx ``ap_fixed`` arithmetic semantics, vectorized over numpy arrays and exact.

A fixed-point value is stored as an integer *mantissa* ``m``; its real value is
``m * 2**-frac`` where ``frac = width - integer``.  All conversions here return
``int64`` mantissas and reproduce the bit-exact results of the Xilinx
``ap_fixed`` / ``ap_ufixed`` C++ types (quantization mode, then overflow mode).

Findings from cross-checking against the real Xilinx headers shipped with hls4ml
(``ap_fixed_base.h``; ``tests/test_fixed_apfixed_gpp.py`` compares bit for bit):

* Rounding acts on the bits below the target LSB, with the sign of the *source* value
  deciding the direction for TRN_ZERO / RND_ZERO / RND_INF.  Overflow is decided on the
  *rounded* value, so a rounding carry can overflow (e.g. 127.6 -> 128 saturates).
* ``AP_SAT_SYM`` on a signed type maps every negative overflow **and a value that rounds
  exactly to the minimum** ``-2**(W-1)`` to ``-2**(W-1) + 1`` (= -max): the header ORs a 1
  into the minimum pattern whenever the result's low W-1 bits are all zero for a negative
  source.  For a 1-bit signed type that pattern is ``-1`` itself, so there ``AP_SAT_SYM``
  behaves exactly like ``AP_SAT``; on unsigned types it is always identical to ``AP_SAT``.
* ``AP_SAT_ZERO`` yields 0 for any overflow, positive or negative.
* From ``double``: +-inf are treated as a huge power of two (saturate under the SAT modes,
  0 under ``AP_WRAP`` since all low bits are zero).  The header does not support NaN (it
  warns and converts it like +-huge: 0 under WRAP, max/min under SAT); here NaN maps to
  mantissa 0 in every mode.
* The header mishandles subnormal doubles (it sets the hidden bit anyway), which only matters
  for types with more than ~1000 fractional bits; this module is exact there.
* In C simulation the header trips an assertion ("Attempting to read bit beyond MSB") for a
  fixed-to-fixed conversion that drops more than 64 bits (frac_in - frac > 64 with a 64-bit
  source); with ``-DNDEBUG`` its result equals the exact semantics implemented here.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    'AUTO',
    'OVERFLOW_MODES',
    'ROUNDING_MODES',
    'FixedType',
    'PrecisionError',
    'parse_precision',
]

ROUNDING_MODES = ('TRN', 'TRN_ZERO', 'RND', 'RND_ZERO', 'RND_MIN_INF', 'RND_INF', 'RND_CONV')
OVERFLOW_MODES = ('WRAP', 'SAT', 'SAT_ZERO', 'SAT_SYM')
AUTO = 'auto'

_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1

_ACCEPTED = (
    "accepted forms: 'ap_fixed<W,I>', 'ap_fixed<W,I,Q>', 'ap_fixed<W,I,Q,O>', 'ap_fixed<W,I,Q,O,0>', "
    "'ap_ufixed<...>', 'fixed<W,I[,Q[,O]]>', 'ufixed<...>', 'ap_int<W>', 'ap_uint<W>', 'int<W>', "
    "'uint<W>', 'ac_fixed<W,I[,S[,Q[,O]]]>', 'ac_int<W[,S]>' (S true/false), 'auto'; Q in "
    + ', '.join(ROUNDING_MODES) + '; O in ' + ', '.join(OVERFLOW_MODES)
    + " (optionally with an 'AP_' prefix, or 'AC_' in ac_ types)"
)

#: Algorithmic C modes with an ap_fixed equivalent (ac_fixed.h quantization_adjust / overflow_adjust
#: compute the same roundings and saturations); AC_RND_CONV_ODD (ties to odd) has none.
AC_ROUNDING = {'AC_' + m: m for m in ROUNDING_MODES}
AC_OVERFLOW = {'AC_' + m: m for m in OVERFLOW_MODES}


class PrecisionError(ValueError):
    """Raised for an unparsable precision string or invalid fixed-point type parameters."""


def _norm_mode(value: object, allowed: tuple[str, ...], what: str) -> str:
    """Normalize a rounding/overflow mode name (any case, optional 'AP_' prefix)."""
    if not isinstance(value, str):
        raise PrecisionError(f'invalid {what} mode {value!r}: expected one of {allowed}')
    name = value.strip().upper()
    if name.startswith('AP_'):
        name = name[3:]
    if name not in allowed:
        raise PrecisionError(f'invalid {what} mode {value!r}: expected one of {allowed} (optionally AP_-prefixed)')
    return name


def _as_int(value: object, what: str) -> int:
    """Return ``value`` as a Python int, rejecting bools and non-integers."""
    if isinstance(value, bool):
        raise PrecisionError(f'invalid {what} {value!r}: expected an integer')
    try:
        return operator.index(value)
    except TypeError:
        raise PrecisionError(f'invalid {what} {value!r}: expected an integer') from None


def _wrap_inplace(q: np.ndarray, width: int, signed: bool) -> np.ndarray:
    """Keep the low ``width`` bits of the int64 array ``q`` (modified in place) and reinterpret them."""
    if signed:
        if width < 64:
            k = 64 - width
            np.left_shift(q.view(np.uint64), np.uint64(k), out=q.view(np.uint64))
            np.right_shift(q, k, out=q)
    else:
        np.bitwise_and(q, (1 << width) - 1, out=q)
    return q


def _round_shift_right(m: np.ndarray, s: int, rounding: str) -> np.ndarray:
    """Exactly compute ``round(m / 2**s)`` (``s >= 1``) for int64 ``m`` as a new int64 array."""
    if s > 64:
        # |m / 2**s| < 1/2: only the sign and non-zeroness matter, and sign(m)/4 has the same ones.
        m, s = np.sign(m), 2
    if rounding == 'TRN':
        return np.right_shift(m, min(s, 63))
    if rounding == 'TRN_ZERO':
        if s >= 64:  # |m| <= 2**63 < 2**s
            return np.zeros(m.shape, np.int64)
        # trunc(m / 2**s) == floor((m + bias) / 2**s) with bias = 2**s - 1 for m < 0 (cannot overflow)
        q = np.right_shift(m, 63)
        q &= (1 << s) - 1
        q += m
        q >>= s
        return q
    # Nearest modes: start from RND (ties toward +inf) = floor((floor(m / 2**(s-1)) + 1) / 2),
    # which cannot overflow int64, then move ties down where the mode requires it.
    if s == 1:
        q = np.right_shift(m, 1)
        q += m & 1
    else:  # floor(m / 2**(s-1)) + 1 <= 2**62: no int64 overflow
        q = np.right_shift(m, s - 1)
        q += 1
        np.right_shift(q, 1, out=q)
    if rounding == 'RND':
        return q
    low, half = ((1 << s) - 1, 1 << (s - 1)) if s < 64 else (-1, _I64_MIN)  # int64 bit patterns
    tie = (m & low) == half  # the dropped bits are exactly one half
    if rounding == 'RND_ZERO':
        tie &= m >= 0  # positive ties go down; negative ones already went up, toward zero
    elif rounding == 'RND_INF':
        tie &= m < 0  # negative ties go down (away from zero)
    if rounding == 'RND_CONV':
        np.bitwise_and(q, -2, out=q, where=tie)  # ties to even: RND's odd tie result drops by one
    else:
        np.subtract(q, 1, out=q, where=tie)
    return q


@dataclass(frozen=True)
class FixedType:
    """An ``ap_fixed<W,I,Q,O>`` (signed) or ``ap_ufixed<W,I,Q,O>`` (unsigned) type."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = 'TRN'
    overflow: str = 'WRAP'

    def __post_init__(self) -> None:
        """Validate the parameters and normalize the mode names."""
        width = _as_int(self.width, 'width')
        integer = _as_int(self.integer, 'integer bits')
        if not isinstance(self.signed, (bool, np.bool_)):
            raise PrecisionError(f'invalid signedness {self.signed!r}: expected a bool')
        signed = bool(self.signed)
        if signed and not 1 <= width <= 64:
            raise PrecisionError(f'invalid width {width!r} for a signed fixed type: expected 1..64')
        if not signed and not 1 <= width <= 63:
            raise PrecisionError(
                f'invalid width {width!r} for an unsigned fixed type: expected 1..63 '
                '(unsigned mantissas must fit in int64, so 64-bit ap_ufixed/ap_uint is not supported)'
            )
        object.__setattr__(self, 'width', width)
        object.__setattr__(self, 'integer', integer)
        object.__setattr__(self, 'signed', signed)
        object.__setattr__(self, 'rounding', _norm_mode(self.rounding, ROUNDING_MODES, 'rounding'))
        object.__setattr__(self, 'overflow', _norm_mode(self.overflow, OVERFLOW_MODES, 'overflow'))

    # ----------------------------------------------------------------- properties
    @property
    def frac(self) -> int:
        """Number of fractional bits ``W - I`` (may be negative)."""
        return self.width - self.integer

    @property
    def min_mantissa(self) -> int:
        """Smallest representable mantissa (``-2**(W-1)`` signed, 0 unsigned)."""
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_mantissa(self) -> int:
        """Largest representable mantissa (``2**(W-1)-1`` signed, ``2**W-1`` unsigned)."""
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def min_value(self) -> float:
        """Smallest representable real value."""
        return float(np.ldexp(float(self.min_mantissa), -self.frac))

    @property
    def max_value(self) -> float:
        """Largest representable real value (rounded to the nearest float64 for W > 53)."""
        return float(np.ldexp(float(self.max_mantissa), -self.frac))

    @property
    def lsb(self) -> float:
        """Value of one least significant bit, ``2**-frac``."""
        return float(np.ldexp(1.0, -self.frac))

    @property
    def _sat_min(self) -> int:
        """Mantissa that negative overflow saturates to (``-max`` for signed AP_SAT_SYM, W > 1)."""
        if self.overflow == 'SAT_SYM' and self.signed and self.width > 1:
            return self.min_mantissa + 1
        return self.min_mantissa

    # ----------------------------------------------------------------- formatting
    def _mode_suffix(self, prefix: str) -> str:
        """Return ',Q,O' / ',Q' / '' following the hls4ml convention of omitting defaults."""
        if self.overflow != 'WRAP':
            return f',{prefix}{self.rounding},{prefix}{self.overflow}'
        if self.rounding != 'TRN':
            return f',{prefix}{self.rounding}'
        return ''

    @property
    def is_ap_int(self) -> bool:
        """True for the semantics of ``ap_int``/``ap_uint`` (integer, TRN_ZERO, WRAP)."""
        return self.frac == 0 and self.rounding == 'TRN_ZERO' and self.overflow == 'WRAP'

    def __str__(self) -> str:
        """hls4ml-style spelling, e.g. ``fixed<16,6>``, ``ufixed<8,0,RND,SAT>`` or ``int<8>``."""
        if self.is_ap_int:
            return f"{'int' if self.signed else 'uint'}<{self.width}>"
        kind = 'fixed' if self.signed else 'ufixed'
        return f'{kind}<{self.width},{self.integer}{self._mode_suffix("")}>'

    def to_cpp(self) -> str:
        """C++ spelling, e.g. ``ap_fixed<16,6>`` or ``ap_ufixed<8,0,AP_RND,AP_SAT>``.

        Integer types are spelled ``ap_fixed<W,W,AP_TRN_ZERO>``, never ``ap_int<W>``: the same
        semantics from fixed-point sources, without ap_int's conversion from double, which maps
        negative values in (-0.5, 0) to +1 (ap_int_base.h:273-318).
        """
        kind = 'ap_fixed' if self.signed else 'ap_ufixed'
        return f'{kind}<{self.width},{self.integer}{self._mode_suffix("AP_")}>'

    def with_(self, **changes: object) -> FixedType:
        """Return a copy with some fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------- conversions
    def to_float(self, m: object) -> np.ndarray:
        """Mantissas -> float64 values ``m * 2**-frac`` (rounded to nearest for |m| > 2**53)."""
        return np.asarray(np.ldexp(np.asarray(m, dtype=np.float64), -self.frac))

    def quantize(self, x: object) -> np.ndarray:
        """Real values (float64-exact) -> int64 mantissas with rounding and overflow applied.

        NaN maps to 0; +-inf behave like huge values (saturate, or 0 under WRAP).
        """
        return self._quantize_nd(x, False)[0]

    def quantize_count(self, x: object) -> tuple[np.ndarray, int]:
        """Like :meth:`quantize`, also returning how many elements overflowed.

        An element overflowed when its rounded value was outside ``[min, max]`` (for signed
        SAT_SYM, W > 1: outside ``[min + 1, max]``), i.e. the overflow mode changed it.
        """
        return self._quantize_nd(x, True)

    def cast(self, m: object, frac_in: int) -> np.ndarray:
        """int64 mantissas with ``frac_in`` fractional bits -> int64 mantissas of this type (exact)."""
        return self._cast_nd(m, frac_in, False)[0]

    def cast_count(self, m: object, frac_in: int) -> tuple[np.ndarray, int]:
        """Like :meth:`cast`, also returning how many elements overflowed (see :meth:`quantize_count`)."""
        return self._cast_nd(m, frac_in, True)

    # ----------------------------------------------------------------- internals

    def _quantize_nd(self, x: object, count: bool) -> tuple[np.ndarray, int]:
        """quantize/quantize_count for any shape (the core works on a flat array)."""
        x = np.asarray(x, dtype=np.float64)
        q, n = self._quantize(x.reshape(-1), count)
        return q.reshape(x.shape), n

    def _cast_nd(self, m: object, frac_in: int, count: bool) -> tuple[np.ndarray, int]:
        """cast/cast_count for any shape (the core works on a flat array)."""
        m = _as_int64(m)
        q, n = self._cast(m.reshape(-1), operator.index(frac_in), count)
        return q.reshape(m.shape), n

    def _cast(self, m: np.ndarray, frac_in: int, count: bool) -> tuple[np.ndarray, int]:
        """cast on a 1-D int64 array; the result never aliases ``m``."""
        s = frac_in - self.frac  # right-shift distance
        ovf = self.overflow
        lo, hi = self._sat_min, self.max_mantissa
        if s < 0:
            return self._cast_left(m, -s, count)
        if s == 0:
            q, q_lo, q_hi = m.copy(), _I64_MIN, _I64_MAX
        else:
            q = _round_shift_right(m, s, self.rounding)
            if s >= 64:
                q_lo, q_hi = -1, 0
            else:
                q_lo = -(1 << (63 - s))
                q_hi = (1 << (63 - s)) - (1 if self.rounding in ('TRN', 'TRN_ZERO') else 0)
        if lo <= q_lo and q_hi <= hi:  # nothing can overflow
            return q, 0
        n = 0
        if count:
            n = int(np.count_nonzero((q < lo) | (q > hi)))
        if ovf == 'WRAP':
            return _wrap_inplace(q, self.width, self.signed), n
        if ovf == 'SAT_ZERO':
            np.putmask(q, (q < lo) | (q > hi), 0)
            return q, n
        return np.clip(q, lo, hi, out=q), n

    def _cast_left(self, m: np.ndarray, t: int, count: bool) -> tuple[np.ndarray, int]:
        """Cast for a left shift by ``t >= 1`` bits: exact, no rounding, only overflow."""
        lo, hi = self._sat_min, self.max_mantissa
        # Thresholds in exact Python ints, checked before shifting; both lie inside int64 for t >= 1.
        hi_thr = hi >> t  # largest m with m * 2**t <= hi
        lo_thr = -((-lo) >> t)  # smallest m with m * 2**t >= lo
        n = int(np.count_nonzero((m > hi_thr) | (m < lo_thr))) if count else 0
        if self.overflow == 'WRAP':
            if t >= self.width:  # all W kept bits are shifted-in zeros
                return np.zeros(m.shape, np.int64), n
            q = np.left_shift(m.view(np.uint64), np.uint64(t)).view(np.int64)  # wraps mod 2**64
            return _wrap_inplace(q, self.width, self.signed), n
        if self.overflow != 'SAT_ZERO' and _I64_MIN <= (lo_thr - 1) << t and (hi_thr + 1) << t <= _I64_MAX:
            # Fast path: clip one step beyond the thresholds so the shift stays in int64, then saturate.
            q = np.clip(m, lo_thr - 1, hi_thr + 1)
            q <<= t
            return np.clip(q, lo, hi, out=q), n
        q = np.left_shift(np.clip(m, lo_thr, hi_thr), min(t, 63))  # exact for in-range values
        if self.overflow == 'SAT_ZERO':
            np.putmask(q, (m > hi_thr) | (m < lo_thr), 0)
            return q, n
        if hi_thr << t != hi:
            np.putmask(q, m > hi_thr, hi)
        if lo_thr << t != lo:
            np.putmask(q, m < lo_thr, lo)
        return q, n

    def _quantize(self, x: np.ndarray, count: bool) -> tuple[np.ndarray, int]:
        """quantize on a 1-D float64 array (not modified)."""
        f = self.frac
        with np.errstate(over='ignore', under='ignore'):
            # Scaling by a power of two is exact unless it over/underflows the float64 exponent.
            y = x * 2.0**f if -1022 <= f <= 1023 else np.ldexp(x, f)
        if f < 0:
            # Underflow to zero would lose the sign of tiny non-zero values, which floor needs.
            lost = (y == 0) & (x != 0)
            if lost.any():
                y[lost] = np.copysign(1e-300, x[lost])
        y_min, y_max = (float(y.min()), float(y.max())) if y.size else (0.0, 0.0)  # NaN propagates
        if not (np.isfinite(y_min) and np.isfinite(y_max)):
            # NaN -> 0; inf (also from exponent overflow) -> 2**1023, a multiple of 2**64 beyond any range.
            np.nan_to_num(y, copy=False, nan=0.0, posinf=2.0**1023, neginf=-(2.0**1023))
            y_min, y_max = float(y.min()), float(y.max())
        q = _round_float(y, self.rounding)  # integer-valued float64, exact (y is consumed)
        q_min, q_max = np.floor(y_min), np.ceil(y_max)  # every rounding mode stays within these

        width, signed = self.width, self.signed
        hi_b = 2.0 ** (width - 1) if signed else 2.0**width  # exclusive upper bound
        lo_b = -(2.0 ** (width - 1)) if signed else 0.0  # inclusive lower bound
        sym = self._sat_min != self.min_mantissa
        if (q_min > lo_b or (q_min == lo_b and not sym)) and q_max < hi_b:  # nothing can overflow
            return q.astype(np.int64), 0
        n = 0
        if count:
            under = (q <= lo_b) if sym else (q < lo_b)
            n = int(np.count_nonzero(under | (q >= hi_b)))
        if self.overflow == 'WRAP':
            fits_int64 = -(2.0**63) <= q_min and q_max < 2.0**63  # then astype(int64) is exact as is
            if not fits_int64 and width <= 52:
                np.fmod(q, 2.0**width, out=q)  # exact; |q| < 2**52 afterwards
            elif not fits_int64:
                np.fmod(q, 2.0**64, out=q)  # exact; fold into [-2**63, 2**63) (exact as well)
                np.subtract(q, 2.0**64, out=q, where=q >= 2.0**63)
                np.add(q, 2.0**64, out=q, where=q < -(2.0**63))
            return _wrap_inplace(q.astype(np.int64), width, signed), n
        if self.overflow == 'SAT_ZERO':
            np.putmask(q, (q < lo_b) | (q >= hi_b), 0.0)
            return q.astype(np.int64), n
        # SAT / SAT_SYM: clip in float64, then convert exactly.  Below 2**53 the clip bound
        # nextafter(hi_b, 0) truncates to max; above it, max is not a float and is patched in.
        over = None if hi_b <= 2.0**53 else q >= hi_b
        r = np.clip(q, lo_b, np.nextafter(hi_b, 0.0), out=q).astype(np.int64)
        if over is not None:
            np.putmask(r, over, self.max_mantissa)
        if sym:
            np.putmask(r, r == self.min_mantissa, self._sat_min)
        return r, n


def _round_float(y: np.ndarray, rounding: str) -> np.ndarray:
    """Round float64 ``y`` (overwritten) to integer-valued float64 exactly, per ``rounding``."""
    if rounding == 'TRN':
        return np.floor(y, out=y)
    if rounding == 'TRN_ZERO':
        return np.trunc(y, out=y)
    if rounding == 'RND_CONV':
        return np.rint(y, out=y)  # IEEE round-half-even is exact
    # Note floor(y + 0.5) is wrong: y + 0.5 itself rounds (e.g. for 0.49999999999999994 or y >= 2**52).
    if rounding == 'RND':
        q = np.floor(y)
        r = np.subtract(y, q, out=y)  # exact except for y in (-1/2, 0), where it still stays >= 1/2
        q += r >= 0.5
        return q
    if rounding == 'RND_MIN_INF':
        q = np.ceil(y)
        r = np.subtract(q, y, out=y)  # mirror image of the RND case
        q -= r >= 0.5
        return q
    t = np.trunc(y)
    f = np.subtract(y, t, out=y)  # exact fractional part, same sign as y (zero when |y| >= 2**52)
    if rounding == 'RND_INF':  # ties away from zero
        t += f >= 0.5
        t -= f <= -0.5
    else:  # RND_ZERO: ties toward zero
        t += f > 0.5
        t -= f < -0.5
    return t  # |t| < 2**52 wherever f != 0, so the increments are exact


def _as_int64(m: object) -> np.ndarray:
    """Convert integer array-likes to an int64 ndarray (rejecting floats and out-of-range values)."""
    a = np.asarray(m)
    if a.dtype == np.int64:
        return a
    if a.dtype.kind in 'iub':
        if a.dtype == np.uint64 and a.size and a.max() > _I64_MAX:
            raise OverflowError('mantissa does not fit in int64')
        return a.astype(np.int64)
    if a.dtype == object:
        b = np.array(a.tolist())
        if b.dtype.kind in 'iub':
            return _as_int64(b)
        if b.dtype == object and all(isinstance(v, int) for v in b.ravel().tolist()):
            raise OverflowError('mantissa does not fit in int64')
    raise TypeError(f'mantissas must be integers, got dtype {a.dtype}')


_PREC_RE = re.compile(r'^(ap_)?(u?)(fixed|int)<(.*)>$', re.IGNORECASE)
_AC_RE = re.compile(r'^ac_(fixed|int)<(.*)>$', re.IGNORECASE)
_AC_BOOLS = {'true': True, '1': True, 'false': False, '0': False}


def _ac_mode(value: str, modes: dict[str, str], what: str) -> str:
    """An Algorithmic C mode name ('AC_RND', any case, prefix optional) as our mode name."""
    name = value.upper() if value.upper().startswith('AC_') else 'AC_' + value.upper()
    if name == 'AC_RND_CONV_ODD':
        raise PrecisionError(f'{what} mode {value!r} (ties to odd) cannot be represented exactly: it has no '
                             f'ap_fixed equivalent; supported: {", ".join(modes)}')
    if name not in modes:
        raise PrecisionError(f'invalid {what} mode {value!r}: expected one of {", ".join(modes)}')
    return modes[name]


def _parse_ac(kind: str, args: list[str]) -> FixedType:
    """ac_fixed<W,I,S=true,Q=AC_TRN,O=AC_WRAP> / ac_int<W,S=true> as a FixedType (Algorithmic C meaning).

    ac_int converts from a fixed-point value by flooring (ac_fixed::to_ac_int casts through an
    AC_TRN ac_fixed) and wrapping, so it is fixed<W,W,TRN,WRAP> (ap_int truncates toward zero).
    """
    n_int = 1 if kind == 'int' else 2
    if not n_int <= len(args) <= n_int + (1 if kind == 'int' else 3):
        raise PrecisionError('ac_int takes W[,S]' if kind == 'int' else 'ac_fixed takes W,I[,S[,Q[,O]]]')
    if not all(re.fullmatch(r'[+-]?\d+', a) for a in args[:n_int]):
        raise PrecisionError(f'the width{"" if kind == "int" else " and integer bits"} must be integers')
    width = int(args[0])
    integer = width if kind == 'int' else int(args[1])
    signed = True
    if len(args) > n_int:
        if args[n_int].lower() not in _AC_BOOLS:
            raise PrecisionError(f'signedness S={args[n_int]!r} must be true or false')
        signed = _AC_BOOLS[args[n_int].lower()]
    rounding = _ac_mode(args[3], AC_ROUNDING, 'quantization') if len(args) > 3 else 'TRN'
    overflow = _ac_mode(args[4], AC_OVERFLOW, 'overflow') if len(args) > 4 else 'WRAP'
    return FixedType(width, integer, signed, rounding, overflow)


def parse_precision(text: str | FixedType) -> FixedType | str:
    """Parse an hls4ml/Vivado precision string into a FixedType (or :data:`AUTO` for 'auto')."""
    if isinstance(text, FixedType):
        return text
    if not isinstance(text, str):
        raise PrecisionError(f'invalid precision {text!r}: expected a string; {_ACCEPTED}')
    compact = re.sub(r'\s+', '', text)
    if compact.lower() == AUTO:
        return AUTO
    ac_match = _AC_RE.match(compact)
    if ac_match:
        try:
            return _parse_ac(ac_match.group(1).lower(), ac_match.group(2).split(','))
        except PrecisionError as exc:
            raise PrecisionError(f'invalid precision {text!r}: {exc}; {_ACCEPTED}') from None
    match = _PREC_RE.match(compact)
    if not match:
        raise PrecisionError(f'invalid precision {text!r}; {_ACCEPTED}')
    unsigned, kind, args = match.group(2) != '', match.group(3).lower(), match.group(4).split(',')
    try:
        if kind == 'int':
            if len(args) != 1 or not re.fullmatch(r'[+-]?\d+', args[0]):
                raise PrecisionError('integer types take exactly one width parameter')
            width = int(args[0])
            # ap_int/ap_uint: converting a fixed-point value into them truncates toward zero and
            # wraps (ap_int_base.h:324-327 -> ap_fixed_base.h:796-826), i.e. TRN_ZERO + WRAP
            return FixedType(width, width, not unsigned, 'TRN_ZERO', 'WRAP')
        if not 2 <= len(args) <= 5 or not all(re.fullmatch(r'[+-]?\d+', a) for a in args[:2]):
            raise PrecisionError('fixed types take W,I[,Q[,O[,N]]] with integer W and I')
        width, integer = int(args[0]), int(args[1])
        rounding = args[2] if len(args) > 2 else 'TRN'
        overflow = args[3] if len(args) > 3 else 'WRAP'
        if len(args) == 5 and not re.fullmatch(r'[+-]?0+', args[4]):
            raise PrecisionError(f'saturation bits N={args[4]} are not supported (only N=0)')
        return FixedType(width, integer, not unsigned, rounding, overflow)
    except PrecisionError as exc:
        raise PrecisionError(f'invalid precision {text!r}: {exc}; {_ACCEPTED}') from None
