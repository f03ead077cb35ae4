"""Tests for fpga4ml.fixed against a slow exact reference built on fractions.Fraction."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fpga4ml.fixed import (
    AUTO,
    OVERFLOW_MODES,
    ROUNDING_MODES,
    FixedType,
    PrecisionError,
    parse_precision,
)

MODES = list(itertools.product(ROUNDING_MODES, OVERFLOW_MODES))
HALF = Fraction(1, 2)
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


# ----------------------------------------------------------------------------- exact reference
def ref_round(y: Fraction, rounding: str) -> int:
    """Round the exact rational ``y`` to an integer with an ap_fixed quantization mode."""
    fl = math.floor(y)
    r = y - fl
    if rounding == 'TRN':
        return fl
    if rounding == 'TRN_ZERO':
        return fl + (1 if r and y < 0 else 0)
    if r != HALF:
        return fl + (1 if r > HALF else 0)
    return fl + {  # exact tie between fl and fl + 1
        'RND': 1,
        'RND_ZERO': 1 if y < 0 else 0,
        'RND_MIN_INF': 0,
        'RND_INF': 1 if y > 0 else 0,
        'RND_CONV': fl % 2,
    }[rounding]


def ref_overflow(q: int, t: FixedType) -> tuple[int, bool]:
    """Apply the overflow mode of ``t`` to the exact rounded mantissa ``q``; flag overflow."""
    lo, hi = t.min_mantissa, t.max_mantissa
    # Header semantics: signed AP_SAT_SYM maps anything <= min to -max (W > 1).
    sat_lo = lo + 1 if (t.overflow == 'SAT_SYM' and t.signed and t.width > 1) else lo
    if sat_lo <= q <= hi:
        return q, False
    if t.overflow == 'WRAP':
        r = q % (1 << t.width)
        if t.signed and r >= 1 << (t.width - 1):
            r -= 1 << t.width
        return r, True
    if t.overflow == 'SAT_ZERO':
        return 0, True
    return (hi if q > hi else sat_lo), True


def ref_value(v: Fraction, t: FixedType) -> tuple[int, bool]:
    """Exact conversion of a rational value to a mantissa of ``t``."""
    return ref_overflow(ref_round(v * Fraction(2) ** t.frac, t.rounding), t)


def ref_quantize(x: float, t: FixedType) -> tuple[int, bool]:
    """Reference for quantize: NaN -> 0, +-inf -> an astronomically large power of two."""
    if math.isnan(x):
        return 0, False
    if math.isinf(x):
        return ref_value(Fraction(2) ** 4000 * (1 if x > 0 else -1), t)
    return ref_value(Fraction(x), t)


def ref_cast(m: int, frac_in: int, t: FixedType) -> tuple[int, bool]:
    """Reference for cast: the value ``m * 2**-frac_in``."""
    return ref_value(Fraction(m) / Fraction(2) ** frac_in, t)


# ----------------------------------------------------------------------------- strategies
@st.composite
def shapes(draw: st.DrawFn) -> tuple[int, int, bool]:
    """(width, integer, signed) including W = 1, W = 64/63, I < 0 and I > W."""
    signed = draw(st.booleans())
    top = 64 if signed else 63
    width = draw(st.one_of(st.integers(1, top), st.sampled_from([1, 2, top - 1, top, 52, 53, 54])))
    integer = draw(st.one_of(st.integers(-8, width + 8), st.integers(-80, 150)))
    return width, integer, signed


def float_values(t: FixedType) -> st.SearchStrategy[float]:
    """Floats around the type: exact ties, bounds, scaled randoms, huge and tiny values."""
    f = t.frac
    bounds = [t.min_mantissa, t.max_mantissa, t.min_mantissa - 1, t.max_mantissa + 1, 0, 1, -1,
              t.min_mantissa + 1, 2 * t.max_mantissa, 2 * t.min_mantissa]
    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**52), 2**52 - 1).map(lambda k: math.ldexp(2 * k + 1, -f - 1)),  # ties
        st.integers(-64, 64).map(lambda k: math.ldexp(2 * k + 1, -f - 1)),
        st.tuples(st.sampled_from(bounds), st.sampled_from([-1, 0, 1])).map(
            lambda b: _ldexp_safe(2 * b[0] + b[1], -f - 1)),
        st.tuples(st.floats(-1, 1), st.integers(-f - 80, t.integer + 80)).map(lambda a: _ldexp_safe(a[0], a[1])),
        st.sampled_from([1e30, -1e30, 1e300, -1e300, 2.0**63, -(2.0**63), 2.0**64, 5e-324, -5e-324, -0.0]),
    )


def _ldexp_safe(m: float, e: int) -> float:
    """math.ldexp that saturates to +-inf instead of raising OverflowError."""
    try:
        return math.ldexp(m, e)
    except OverflowError:
        return math.copysign(math.inf, m)


def mantissas(s: int) -> st.SearchStrategy[int]:
    """int64 mantissas for a right shift by ``s``: ties, extremes, randoms."""
    parts = [st.integers(I64_MIN, I64_MAX), st.integers(-300, 300),
             st.sampled_from([I64_MIN, I64_MAX, I64_MIN + 1, I64_MAX - 1, 0, -1, 1])]
    if 1 <= s <= 63:
        limit = 2 ** (63 - s)
        parts.append(st.integers(-limit, limit - 1).map(lambda k: (2 * k + 1) << (s - 1)))  # ties
        parts.append(st.integers(-limit, limit - 1).map(lambda k: ((2 * k + 1) << (s - 1)) + 1))
    return st.one_of(*parts).filter(lambda m: I64_MIN <= m <= I64_MAX)


SHIFT = st.one_of(st.integers(-4, 4), st.integers(-140, 140), st.sampled_from([62, 63, 64, 65, -62, -63, -64, -65]))
PROPERTY_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- property tests
@pytest.mark.parametrize(('rounding', 'overflow'), MODES)
@PROPERTY_SETTINGS
@given(data=st.data(), shape=shapes())
def test_quantize_matches_reference(rounding: str, overflow: str, data: st.DataObject,
                                    shape: tuple[int, int, bool]) -> None:
    """quantize/quantize_count agree with the Fraction reference for every mode."""
    t = FixedType(*shape, rounding=rounding, overflow=overflow)
    xs = data.draw(st.lists(float_values(t), min_size=1, max_size=25))
    got, n = t.quantize_count(np.array(xs, dtype=np.float64))
    expected = [ref_quantize(x, t) for x in xs]
    assert got.dtype == np.int64
    assert got.tolist() == [e for e, _ in expected], (t, xs)
    assert n == sum(flag for _, flag in expected)
    assert np.array_equal(t.quantize(xs), got)


@pytest.mark.parametrize(('rounding', 'overflow'), MODES)
@PROPERTY_SETTINGS
@given(data=st.data(), shape=shapes(), shift=SHIFT)
def test_cast_matches_reference(rounding: str, overflow: str, data: st.DataObject,
                                shape: tuple[int, int, bool], shift: int) -> None:
    """cast/cast_count agree with the Fraction reference for every mode and shift distance."""
    t = FixedType(*shape, rounding=rounding, overflow=overflow)
    frac_in = t.frac + shift  # shift > 0: right shift with rounding
    ms = data.draw(st.lists(mantissas(shift), min_size=1, max_size=25))
    arr = np.array(ms, dtype=np.int64)
    got, n = t.cast_count(arr, frac_in)
    expected = [ref_cast(m, frac_in, t) for m in ms]
    assert got.dtype == np.int64
    assert got.tolist() == [e for e, _ in expected], (t, frac_in, ms)
    assert n == sum(flag for _, flag in expected)
    assert np.array_equal(t.cast(arr, frac_in), got)
    assert arr.tolist() == ms  # input untouched


@pytest.mark.parametrize(('rounding', 'overflow'), MODES)
def test_small_types_exhaustive(rounding: str, overflow: str) -> None:
    """Every mantissa on a fine grid, for tiny types, all small shifts (both directions)."""
    ms = np.arange(-40, 41, dtype=np.int64)
    for width, integer, signed in itertools.product((1, 2, 3), (-1, 0, 2, 5), (True, False)):
        t = FixedType(width, integer, signed, rounding, overflow)
        for frac_in in range(t.frac - 2, t.frac + 5):
            expected = [ref_cast(int(m), frac_in, t)[0] for m in ms]
            assert t.cast(ms, frac_in).tolist() == expected, (t, frac_in)
            xs = ms.astype(np.float64) * 2.0**-frac_in
            assert t.quantize(xs).tolist() == expected, (t, frac_in)


def test_reference_can_fail() -> None:
    """Negative control: the reference distinguishes modes, so the comparisons are meaningful."""
    rnd, trn = FixedType(8, 4, rounding='RND'), FixedType(8, 4, rounding='TRN')
    tie = 0.5 * rnd.lsb  # exactly half an LSB
    assert ref_quantize(tie, rnd) == (1, False)
    assert ref_quantize(tie, trn) == (0, False)
    assert trn.quantize([tie]).tolist() != [ref_quantize(tie, rnd)[0]]
    conv = FixedType(8, 4, rounding='RND_CONV')
    assert ref_quantize(1.5 * conv.lsb, conv)[0] == 2 and ref_quantize(2.5 * conv.lsb, conv)[0] == 2
    wrap, sat = FixedType(4, 4), FixedType(4, 4, overflow='SAT')
    assert ref_quantize(9.0, wrap) == (-7, True) and ref_quantize(9.0, sat) == (7, True)


# ----------------------------------------------------------------------------- specific semantics
def test_quantize_examples() -> None:
    """Hand-checked values, including huge, tiny, inf and NaN."""
    t = FixedType(8, 3, rounding='RND', overflow='SAT')  # range [-4, 3.96875], lsb 1/32
    x = [1 / 64, -1 / 64, 100.0, -100.0, 1e30, np.inf, np.nan, -np.inf, 3.97, -4.0]
    assert t.quantize(x).tolist() == [1, 0, 127, -128, 127, 127, 0, -128, 127, -128]
    assert t.quantize_count(x)[1] == 5
    wrap = FixedType(8, 3)
    assert wrap.quantize([1e30, -1e30, np.inf, -np.inf, 2.0**70 + 2.0**20, 4.0]).tolist() == [0, 0, 0, 0, 0, -128]
    assert FixedType(64, 64).quantize([2.0**63, -(2.0**63), 2.0**64 + 2.0**12]).tolist() == [I64_MIN, I64_MIN, 4096]
    assert FixedType(64, 64, overflow='SAT').quantize([2.0**63, 1e300]).tolist() == [I64_MAX, I64_MAX]
    assert FixedType(63, 63, False, overflow='SAT').quantize([2.0**63, -1.0]).tolist() == [2**63 - 1, 0]
    # floor(v + 0.5) would be wrong here: 2**52 + 1 is odd and exact, RND must keep it.
    assert FixedType(64, 64, rounding='RND').quantize([2.0**52 + 1, 0.49999999999999994]).tolist() == [2**52 + 1, 0]
    tiny = FixedType(8, 100)  # frac = -92: ldexp underflows for tiny inputs, sign must survive
    assert tiny.quantize([1e-310, -1e-310, -5e-324]).tolist() == [0, -1, -1]


def test_sat_sym_matches_header() -> None:
    """AP_SAT_SYM: values rounding exactly to min become -max; 1-bit signed keeps -1."""
    t = FixedType(4, 4, overflow='SAT_SYM')
    assert t.quantize([-8.0, -9.0, -7.0, 8.0]).tolist() == [-7, -7, -7, 7]
    assert t.quantize_count([-8.0, -7.0])[1] == 1
    assert t.cast(np.array([-16, -15]), 1).tolist() == [-7, -7]
    assert FixedType(1, 1, overflow='SAT_SYM').quantize([-1.0, -5.0, 3.0]).tolist() == [-1, -1, 0]
    assert FixedType(4, 4, False, overflow='SAT_SYM').quantize([-1.0, 20.0]).tolist() == [0, 15]


def test_cast_examples() -> None:
    """Hand-checked casts: rounding on right shifts, saturation on left shifts, extreme shifts."""
    t = FixedType(8, 8, rounding='RND_CONV', overflow='SAT')
    assert t.cast(np.array([1, 3, 5, -1, -3, 7]), 1).tolist() == [0, 2, 2, 0, -2, 4]
    assert t.cast(np.array([1, 200, -200, 63, 64]), -1).tolist() == [2, 127, -128, 126, 127]
    assert t.cast(np.array([I64_MIN, I64_MAX]), 200).tolist() == [0, 0]
    assert FixedType(8, 8).cast(np.array([I64_MIN, -1, 1]), 64).tolist() == [-1, -1, 0]
    assert FixedType(8, 8, rounding='RND').cast(np.array([I64_MIN, I64_MAX]), 64).tolist() == [0, 0]
    assert FixedType(8, 8, rounding='RND_INF').cast(np.array([I64_MIN]), 64).tolist() == [-1]
    assert FixedType(8, 8).cast(np.array([1, 3]), -200).tolist() == [0, 0]
    assert FixedType(8, 8, overflow='SAT').cast(np.array([1, -3, 0]), -200).tolist() == [127, -128, 0]
    assert FixedType(8, 8, overflow='SAT').cast_count(np.array([1, -3, 0]), -200)[1] == 2
    assert FixedType(64, 64, rounding='RND').cast(np.array([I64_MAX]), 1).tolist() == [2**62]


def test_cast_input_types_and_shapes() -> None:
    """Integer array-likes of any dtype and shape are accepted; floats are rejected."""
    t = FixedType(8, 4)
    assert t.cast([[1, 2], [3, 4]], 4).shape == (2, 2)
    assert t.cast(np.array([1, 2], dtype=np.int8), 4).dtype == np.int64
    assert t.cast(5, 4).shape == ()
    with pytest.raises(TypeError):
        t.cast(np.array([1.5]), 4)
    assert t.quantize(1.0).shape == ()
    assert t.quantize([]).dtype == np.int64 and t.quantize([]).shape == (0,)
    assert t.cast(np.zeros((0, 3), np.int64), 9).shape == (0, 3)
    assert t.with_(overflow='SAT').quantize_count(np.zeros((2, 0)))[1] == 0
    assert t.to_float(np.array([16, -8])).tolist() == [1.0, -0.5]


def test_properties() -> None:
    """frac, mantissa bounds, value bounds and lsb."""
    t = FixedType(8, 3)
    assert (t.frac, t.min_mantissa, t.max_mantissa) == (5, -128, 127)
    assert (t.min_value, t.max_value, t.lsb) == (-4.0, 127 / 32, 1 / 32)
    u = FixedType(8, -2, signed=False)
    assert (u.frac, u.min_mantissa, u.max_mantissa, u.lsb) == (10, 0, 255, 2.0**-10)
    assert FixedType(4, 10).lsb == 64.0 and FixedType(4, 10).max_value == 7 * 64.0
    assert FixedType(64, 64).max_mantissa == I64_MAX


# ----------------------------------------------------------------------------- type validation / formatting
def test_mode_normalization_and_with() -> None:
    """Modes accept any case and an AP_ prefix; with_ replaces fields and re-validates."""
    t = FixedType(8, 3, rounding='ap_rnd_conv', overflow='Sat_Sym')
    assert (t.rounding, t.overflow) == ('RND_CONV', 'SAT_SYM')
    assert t == FixedType(8, 3, True, 'RND_CONV', 'SAT_SYM')
    assert t.with_(width=10) == FixedType(10, 3, True, 'RND_CONV', 'SAT_SYM')
    with pytest.raises(PrecisionError):
        t.with_(signed=False, width=64)


@pytest.mark.parametrize('kwargs', [
    dict(width=0, integer=0), dict(width=65, integer=3), dict(width=64, integer=3, signed=False),
    dict(width=8, integer=3, rounding='ROUND'), dict(width=8, integer=3, overflow='CLAMP'),
    dict(width=True, integer=3), dict(width=8.0, integer=3), dict(width=8, integer='3'),
    dict(width=8, integer=3, signed='yes'),
])
def test_invalid_types(kwargs: dict) -> None:
    """Bad parameters raise PrecisionError naming the offending value."""
    with pytest.raises(PrecisionError) as info:
        FixedType(**kwargs)
    assert info.value.args[0]


def test_unsigned_64_message() -> None:
    """64-bit unsigned types are rejected with an explanation."""
    with pytest.raises(PrecisionError, match='int64'):
        FixedType(64, 64, signed=False)
    with pytest.raises(PrecisionError, match='ap_uint<64>'):
        parse_precision('ap_uint<64>')


def test_str_and_cpp() -> None:
    """hls4ml-style and C++ spellings, omitting default modes."""
    assert str(FixedType(16, 6)) == 'fixed<16,6>'
    assert str(FixedType(8, 0, False, 'RND', 'SAT')) == 'ufixed<8,0,RND,SAT>'
    assert str(FixedType(8, 3, True, 'RND_CONV', 'SAT_SYM')) == 'fixed<8,3,RND_CONV,SAT_SYM>'
    assert str(FixedType(8, 3, rounding='RND')) == 'fixed<8,3,RND>'
    assert str(FixedType(8, 3, overflow='SAT')) == 'fixed<8,3,TRN,SAT>'
    assert str(FixedType(8, 8)) == 'fixed<8,8>'
    assert FixedType(16, 6).to_cpp() == 'ap_fixed<16,6>'
    assert FixedType(8, 0, False, 'RND', 'SAT').to_cpp() == 'ap_ufixed<8,0,AP_RND,AP_SAT>'
    assert FixedType(8, -2, rounding='RND').to_cpp() == 'ap_fixed<8,-2,AP_RND>'


# ----------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(('text', 'expected'), [
    ('ap_fixed<16,6>', FixedType(16, 6)),
    (' ap_fixed < 16 , 6 > ', FixedType(16, 6)),
    ('AP_FIXED<16,6>', FixedType(16, 6)),
    ('ap_fixed<16,6,AP_RND>', FixedType(16, 6, rounding='RND')),
    ('ap_ufixed<8,0,AP_RND,AP_SAT>', FixedType(8, 0, False, 'RND', 'SAT')),
    ('ap_fixed<8,3,AP_RND_CONV,AP_SAT_SYM,0>', FixedType(8, 3, True, 'RND_CONV', 'SAT_SYM')),
    ('ap_fixed<8,-3,AP_TRN_ZERO,AP_SAT_ZERO>', FixedType(8, -3, True, 'TRN_ZERO', 'SAT_ZERO')),
    ('fixed<8,3,RND_CONV,SAT>', FixedType(8, 3, True, 'RND_CONV', 'SAT')),
    ('fixed<8,3,rnd_min_inf,wrap>', FixedType(8, 3, True, 'RND_MIN_INF', 'WRAP')),
    ('ufixed<6,10,RND_INF>', FixedType(6, 10, False, 'RND_INF')),
    ('fixed<64,64>', FixedType(64, 64)),
    ('ap_int<8>', FixedType(8, 8, True, 'TRN_ZERO')),  # ap_int truncates toward zero
    ('ap_uint<8>', FixedType(8, 8, False, 'TRN_ZERO')),
    ('int<8>', FixedType(8, 8, True, 'TRN_ZERO')),
    ('uint<4>', FixedType(4, 4, False, 'TRN_ZERO')),
    ('INT< 12 >', FixedType(12, 12, True, 'TRN_ZERO')),
])
def test_parse_spellings(text: str, expected: FixedType) -> None:
    """Every accepted spelling parses to the right type."""
    assert parse_precision(text) == expected


def test_parse_auto_and_passthrough() -> None:
    """'auto' (any case) returns AUTO; FixedType passes through unchanged."""
    assert parse_precision('auto') is AUTO and parse_precision(' Auto ') == AUTO
    t = FixedType(8, 3)
    assert parse_precision(t) is t


@pytest.mark.parametrize('text', [
    '', 'fixed', 'fixed<8>', 'fixed<8,3,RND,SAT,0,1>', 'fixed<a,3>', 'fixed<8,3,ROUND>', 'fixed<8,3,RND,CLAMP>',
    'ap_fixed<8,3,AP_RND,AP_SAT,2>', 'ap_int<8,3>', 'int<x>', 'float', 'ap_fixed<0,0>', 'ap_fixed<65,3>',
    'ap_fixed<16,6', 'fixed<16.5,6>', 'ap_ufixed<64,0>', 'uint<64>', 'bfixed<8,3>', 'fixed<8,3>x', 'autox',
])
def test_parse_errors(text: str) -> None:
    """Invalid strings raise PrecisionError whose message shows the string and the accepted forms."""
    with pytest.raises(PrecisionError) as info:
        parse_precision(text)
    msg = str(info.value)
    assert repr(text) in msg
    assert 'ap_fixed<W,I>' in msg and 'auto' in msg


@pytest.mark.parametrize('value', [None, 16, 1.5, ['fixed<8,3>']])
def test_parse_non_strings(value: object) -> None:
    """Non-string inputs raise PrecisionError too."""
    with pytest.raises(PrecisionError, match=repr(value).replace('[', r'\[').replace(']', r'\]')):
        parse_precision(value)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(shape=shapes(), rounding=st.sampled_from(ROUNDING_MODES), overflow=st.sampled_from(OVERFLOW_MODES))
def test_parse_format_round_trip(shape: tuple[int, int, bool], rounding: str, overflow: str) -> None:
    """str() and to_cpp() both parse back to the same type."""
    t = FixedType(*shape, rounding=rounding, overflow=overflow)
    assert parse_precision(str(t)) == t
    assert parse_precision(t.to_cpp()) == t
