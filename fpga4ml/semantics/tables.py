"""Lookup tables for table activations and softmax, built at conversion time.

A table is addressed by casting its input into an *index type* (``TRN`` rounding, ``SAT``
overflow); the address is the index mantissa minus the index type's smallest mantissa. When the
input type has at most ``TableSize`` entries (default 2^12) the index type *is* the input type
and the table is exact: output = quantize(f(x)) for every representable x. Wider inputs keep
their top bits: the index type has log2(TableSize) bits, its integer bits clamped to the range
where f still changes at the output precision (f is monotonic), and the LSBs below are truncated;
each entry then samples f at the centre of the input values that share it. See docs/semantics.md.

With ``TableSemantics: 'hls4ml'`` (sigmoid, tanh, softplus, softsign, elu, selu, softmax) a table is
hls4ml 1.3.0's instead: its entries and its index arithmetic (`build_hls4ml_table`,
`build_hls4ml_elu_table`, `build_hls4ml_softmax_tables`, `build_legacy_softmax_tables`), so a design
validated with hls4ml gives its bits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from dataclasses import dataclass

import numpy as np

from ..fixed import FixedType
from ..functions import is_monotonic, table_function
from ..ir import GraphError, Node

DEFAULT_TABLE_BITS = 12
EXP_TABLE_DEFAULT = FixedType(18, 1, False, 'RND', 'SAT')
#: hls4ml's generic tables (nnet_activation.h): input range [-R/2, R/2) of each function
HLS4ML_TABLE_RANGE = {'sigmoid': 16, 'tanh': 8, 'softplus': 16, 'softsign': 16}
#: hls4ml's default table_t (ap_fixed<18,8>: TRN, WRAP) and table_size of activations
HLS4ML_TABLE_TYPE = FixedType(18, 8)
HLS4ML_TABLE_BITS = 10
#: hls4ml's elu and selu tables cover the negative inputs [-R, 0]: entry i is f(-R i / N)
HLS4ML_ELU_RANGE = 8
#: selu's scale on the positive side in hls4ml: ap_ufixed<16,1>(1.0507009873554805), truncated
HLS4ML_SELU_LAMBDA = FixedType(16, 1, False)
INV_TABLE_DEFAULT = FixedType(18, 1, False, 'RND', 'SAT')


@dataclass(frozen=True)
class Table:
    """Quantized samples of a function: `values` (mantissas of `type`) addressed via `index`."""

    index: FixedType
    values: np.ndarray
    type: FixedType
    #: a table of a non-positive input (softmax's exp): address = min(-index mantissa, last entry)
    negated: bool = False
    #: the input is scaled by 2^shift before the cast into the index type (hls4ml's x * N / R)
    shift: int = 0

    def __len__(self) -> int:
        return int(self.values.size)


def table_bits(node: Node, default_bits: int = DEFAULT_TABLE_BITS) -> int:
    """log2 of the configured TableSize (default 2^default_bits entries)."""
    size = node.config.get('TableSize', 1 << default_bits)
    if isinstance(size, bool) or not isinstance(size, int) or size < 2 or size & (size - 1):
        raise GraphError(f'layer {node.name!r}: TableSize must be a power of two >= 2, got {size!r}')
    return size.bit_length() - 1


def _index_type(in_t: FixedType, bits: int, fq, monotonic: bool) -> FixedType:
    """The type an input is cast to before addressing a table of 2^bits entries."""
    if in_t.width <= bits:
        return FixedType(in_t.width, in_t.integer, in_t.signed, 'TRN', 'SAT')
    lowest = bits - in_t.frac  # no finer than the input itself
    if monotonic:
        want_lo, want_hi = fq(in_t.min_value), fq(in_t.max_value)
        for integer in range(lowest, in_t.integer):
            idx = FixedType(bits, integer, in_t.signed, 'TRN', 'SAT')
            ends = _index_values(idx, in_t)[[0, -1]]  # what the first and the last entry sample
            if fq(idx.min_value) == fq(ends[0]) == want_lo and fq(idx.max_value) == fq(ends[1]) == want_hi:
                return idx
    return FixedType(bits, in_t.integer, in_t.signed, 'TRN', 'SAT')


def _index_values(idx: FixedType, in_t: FixedType) -> np.ndarray:
    """The input value each table entry stands for, in address order.

    An entry addresses the input values floored onto one index value v: v, v + in_lsb, ...,
    v + idx_lsb - in_lsb. The entry samples their centre, v + (idx_lsb - in_lsb) / 2, so the
    truncation error is at most half a cell either way; when the index is the input type itself
    the centre is v and the table is exact.
    """
    m = np.arange(idx.min_mantissa, idx.max_mantissa + 1, dtype=np.int64)
    return idx.to_float(m) + (idx.lsb - in_t.lsb) / 2 if idx.frac < in_t.frac else idx.to_float(m)


def hls4ml_tables(node: Node) -> bool:
    """The node asks for hls4ml's tables (config TableSemantics: 'hls4ml')."""
    return node.config.get('TableSemantics', 'exact') == 'hls4ml'


@functools.lru_cache(maxsize=None)
def _libm_float(name: str, ctype=ctypes.c_float):
    """The C library's function `name` (expf, tanhf; log with ctype c_double): the one hls4ml's C simulation calls."""
    path = ctypes.util.find_library('m') or ctypes.util.find_library('c')
    fn = getattr(ctypes.CDLL(path), name)
    fn.restype, fn.argtypes = ctype, [ctype]
    return np.frompyfunc(lambda v: fn(float(v)), 1, 1)


def hls4ml_entries(fn: str, size: int) -> np.ndarray:
    """hls4ml's float32 table entries: entry i is f((i - N/2) * R / N), computed as its C++ computes it.

    The argument is computed in double and rounded to float; sigmoid is float(1.0 / (double)(1.0f +
    expf(-x))), tanh is tanhf(x), softplus float(log((double) expf(x) + 1.0)), softsign
    float(x / (double)(fabsf(x) + 1.0)). expf, tanhf and log are the C library's own (through ctypes):
    numpy's float32 functions differ from glibc's in the last bit for about a third of the entries,
    which moves table values. A test compares every entry with hls4ml's header compiled by g++.
    """
    i = np.arange(size, dtype=np.float64)
    x = (float(HLS4ML_TABLE_RANGE[fn]) * (i - size / 2.0) / size).astype(np.float32)
    if fn == 'sigmoid':
        e = _libm_float('expf')(-x).astype(np.float32)
        return (1.0 / (np.float32(1) + e).astype(np.float64)).astype(np.float32)
    if fn == 'softplus':
        e = _libm_float('expf')(x).astype(np.float32).astype(np.float64)
        return _libm_float('log', ctypes.c_double)(e + 1.0).astype(np.float64).astype(np.float32)
    if fn == 'softsign':
        return (x.astype(np.float64) / (np.abs(x).astype(np.float64) + 1.0)).astype(np.float32)
    return _libm_float('tanhf')(x).astype(np.float32)


def build_hls4ml_table(node: Node, in_t: FixedType) -> None:
    """hls4ml's sigmoid/tanh/softplus/softsign table: address = clamp(trunc0(x * N / R) + N/2, 0, N - 1).

    x * N / R is a shift of x (N and R are powers of two); trunc0 and the clamp are a cast into
    fixed<B, B, TRN_ZERO, SAT> (B = log2 N, range [-N/2, N/2 - 1]); the address is that mantissa + N/2.
    """
    fn = node.attrs['function']
    if fn in ('elu', 'selu'):
        return build_hls4ml_elu_table(node, in_t)
    if fn not in HLS4ML_TABLE_RANGE:
        raise GraphError(f"layer {node.name!r}: TableSemantics 'hls4ml' covers "
                         f"{sorted([*HLS4ML_TABLE_RANGE, 'elu', 'selu'])}, not {fn!r}; set TableSemantics: "
                         "'exact' for this layer")
    bits = table_bits(node, HLS4ML_TABLE_BITS)
    shift = bits - (HLS4ML_TABLE_RANGE[fn].bit_length() - 1)
    if max(abs(in_t.min_value), in_t.max_value) * 2.0 ** shift >= 2.0 ** 31:
        raise GraphError(f"layer {node.name!r}: hls4ml's table index (x * N / R in a C int) overflows for "
                         f'inputs of type {in_t}; use fewer integer bits or TableSemantics: \'exact\'')
    table_t: FixedType = node.types['table']
    values = table_t.quantize(hls4ml_entries(fn, 1 << bits).astype(np.float64))
    node.attrs['tables'] = {'f': Table(FixedType(bits, bits, True, 'TRN_ZERO', 'SAT'), values, table_t, shift=shift)}


def hls4ml_elu_entries(fn: str, size: int) -> np.ndarray:
    """hls4ml's float32 elu/selu entries: entry i is f(float(-8.0 * i / float(N))), computed as its C++ does.

    elu: float((double) expf(x) - 1.0) (alpha is applied after the lookup); selu: float(1.0507009873554805 *
    (1.6732632423543772 * ((double) expf(x) - 1.0))), in double. expf is the C library's (see hls4ml_entries).
    """
    i = np.arange(size, dtype=np.float64)
    x = (-float(HLS4ML_ELU_RANGE) * i / np.float64(np.float32(size))).astype(np.float32)
    em1 = _libm_float('expf')(x).astype(np.float32).astype(np.float64) - 1.0
    if fn == 'selu':
        em1 = 1.0507009873554805 * (1.6732632423543772 * em1)
    return em1.astype(np.float32)


def hls4ml_selu_lambda() -> tuple[int, int]:
    """hls4ml's selu scale as (mantissa, fractional bits) of ap_ufixed<16,1>."""
    t = HLS4ML_SELU_LAMBDA
    return int(t.quantize(np.asarray([1.0507009873554805]))[0]), t.frac


def build_hls4ml_elu_table(node: Node, in_t: FixedType) -> None:
    """hls4ml's elu/selu table of the negative side: address = min(int(x * N / -8), N - 1) for x < 0.

    x * N / 8 is a shift of x; int() truncates toward zero: a cast into fixed<B+1, B+1, TRN_ZERO, SAT>
    (B = log2 N) whose mantissa, negated and capped at N - 1, is the address (a `negated` table).
    """
    bits = table_bits(node, HLS4ML_TABLE_BITS)
    shift = bits - (HLS4ML_ELU_RANGE.bit_length() - 1)
    if abs(in_t.min_value) * 2.0 ** shift >= 2.0 ** 31:
        raise GraphError(f"layer {node.name!r}: hls4ml's table index (x * N / -8 in a C int) overflows for "
                         f'inputs of type {in_t}; use fewer integer bits or TableSemantics: \'exact\'')
    table_t: FixedType = node.types['table']
    values = table_t.quantize(hls4ml_elu_entries(node.attrs['function'], 1 << bits).astype(np.float64))
    index = FixedType(bits + 1, bits + 1, True, 'TRN_ZERO', 'SAT')
    node.attrs['tables'] = {'f': Table(index, values, table_t, negated=True, shift=shift)}


def build_lut_table(node: Node) -> None:
    """The given table of function 'lut' (HGQ2's QUnaryFunctionLUT): attrs lut_entries, mantissas of the
    'table' type, one per value of the lut_index type in mantissa order (the input cast TRN, SAT into it)."""
    index, entries = node.attrs.get('lut_index'), np.asarray(node.attrs.get('lut_entries'), dtype=np.int64)
    if not isinstance(index, FixedType) or entries.shape != (1 << index.width,):
        raise GraphError(f"layer {node.name!r}: function 'lut' needs attrs lut_index (a FixedType) and lut_entries "
                         f'(one mantissa per index value); got {index!r} and {entries.size} entries')
    node.attrs['tables'] = {'f': Table(FixedType(index.width, index.integer, index.signed, 'TRN', 'SAT'), entries,
                                       node.types['table'])}


def build_activation_table(node: Node, in_t: FixedType) -> None:
    """Build the lookup table of a table activation into node.attrs['tables']['f']."""
    if hls4ml_tables(node):
        return build_hls4ml_table(node, in_t)
    fn_name = node.attrs['function']
    f = table_function(fn_name, node.attrs)
    table_t: FixedType = node.types['table']

    def fq(x: float) -> int:
        return int(table_t.quantize(f(np.asarray([x])))[0])

    idx = _index_type(in_t, table_bits(node), fq, is_monotonic(fn_name, node.attrs))
    values = table_t.quantize(f(_index_values(idx, in_t)))
    node.attrs['tables'] = {'f': Table(idx, values, table_t)}


def build_softmax_tables(node: Node) -> None:
    """Build fpga4ml's exact exp and reciprocal tables of a softmax (see docs/semantics.md)."""
    bits = table_bits(node)
    exp_t = node.config.get('Precision', {}).get('exp_table', 'auto')
    inv_t = node.config.get('Precision', {}).get('inv_table', 'auto')
    exp_t = EXP_TABLE_DEFAULT if exp_t == 'auto' else exp_t
    inv_t = INV_TABLE_DEFAULT if inv_t == 'auto' else inv_t
    node.types['exp_table'] = exp_t
    node.types['inv_table'] = inv_t
    # exp(d) for d = x - max(x) <= 0: d is floored into fixed<bits+1, range+1> and negated into an
    # address 0 .. 2^bits - 1, so an input below the maximum never shares the maximum's entry.
    magnitude_bits = 0
    while magnitude_bits < 10:
        lsb = 2.0 ** (magnitude_bits - bits)
        if exp_t.quantize(np.exp([-(2.0 ** magnitude_bits - lsb)]))[0] == 0:
            break
        magnitude_bits += 1
    exp_index = FixedType(bits + 1, magnitude_bits + 1, True, 'TRN', 'SAT')
    addresses = np.arange(1 << bits, dtype=np.float64)
    exp_values = exp_t.quantize(np.exp(-addresses * exp_index.lsb))
    # 1/s for s = sum of exps in [exp(0), n]: s is floored into ufixed<bits, bitlen(n)>, and entry
    # k holds 1/(k * lsb), exact on the grid: a dominating class (s == 1) gets exactly 1.0.
    n = node.shape[-1]
    inv_index = FixedType(bits, max(int(n).bit_length(), 1), False, 'TRN', 'SAT')
    k = np.arange(1 << bits, dtype=np.float64)
    with np.errstate(divide='ignore'):
        inv_values = inv_t.quantize(np.where(k > 0, 1.0 / (k * inv_index.lsb), inv_t.max_value))
    node.attrs['tables'] = {
        'exp': Table(exp_index, exp_values, exp_t, negated=True),
        'inv': Table(inv_index, inv_values, inv_t),
    }


# ---------------------------------------------------------------------------- hls4ml's softmax

#: hls4ml 1.3.0's softmax implementations (nnet_activation.h); 'stable' is its default
SOFTMAX_IMPLEMENTATIONS = ('latency', 'stable', 'argmax', 'legacy')
#: hls4ml's default exp_table_t, inv_table_t and inv_inp_t of a softmax: ap_fixed<18,8,AP_RND,AP_SAT>
HLS4ML_SOFTMAX_TYPE = FixedType(18, 8, True, 'RND', 'SAT')
#: log2 of the largest table the legacy softmax addresses correctly (its index arithmetic divides by 64)
LEGACY_MIN_BITS = 6


def softmax_implementation(node: Node) -> str:
    """What a softmax node computes: 'exact' (fpga4ml's tables) or hls4ml's 'latency', 'stable', 'legacy', 'argmax'.

    'argmax' is exact in both table modes; 'latency' and 'legacy' exist only as hls4ml's arithmetic;
    'stable' (the default) is hls4ml's under TableSemantics 'hls4ml' and fpga4ml's exact softmax otherwise.
    """
    impl = node.config.get('Implementation', 'stable')
    if impl not in SOFTMAX_IMPLEMENTATIONS:
        raise GraphError(f'layer {node.name!r}: softmax Implementation {impl!r} is not one of '
                         f'{list(SOFTMAX_IMPLEMENTATIONS)}')
    if impl == 'stable' and not hls4ml_tables(node):
        return 'exact'
    return impl


def hls4ml_softmax_bits(node: Node, in_t: FixedType) -> int:
    """log2 of hls4ml's softmax table_size: TableSize (default 1024) after its FixSoftmaxTableSize pass,
    which caps it at 2^min(input width, inv_table width)."""
    return min(table_bits(node, HLS4ML_TABLE_BITS), in_t.width, node.types['inv_table'].width)


def inp_norm_type(in_t: FixedType) -> FixedType:
    """hls4ml's inp_norm_t of the stable softmax (x_max - x): ap_ufixed<W - S, I - S> of the input (S: signed)."""
    s = int(in_t.signed)
    return FixedType(in_t.width - s, in_t.integer - s, False)


def top_bits_index(node: Node, t: FixedType, bits: int, what: str) -> FixedType:
    """hls4ml's softmax_idx_from_real_val: the address is the top `bits` bits of a value of type t, i.e.
    the mantissa of its cast into ufixed<bits, I, TRN, WRAP> (I: t's integer bits)."""
    if bits > t.width:
        raise GraphError(f"layer {node.name!r}: hls4ml's softmax addresses its {what} table ({1 << bits} entries) "
                         f'with the top {bits} bits of {t}, which has only {t.width}: use a TableSize of at most '
                         f'{1 << t.width} or a wider type')
    return FixedType(bits, t.integer, False, 'TRN', 'WRAP')


def top_bits_values(t: FixedType, bits: int) -> np.ndarray:
    """hls4ml's softmax_real_val_from_idx: the float value of t whose top `bits` bits are i (the rest 0), every i."""
    i = np.arange(1 << bits, dtype=np.int64)
    m = np.where(i >= 1 << (bits - 1), i - (1 << bits), i) if t.signed else i
    return (m.astype(np.float64) * 2.0 ** (t.integer - bits)).astype(np.float32)


def hls4ml_exp_entries(x: np.ndarray) -> np.ndarray:
    """std::exp of float32 arguments as hls4ml's C simulation computes it (the C library's expf)."""
    return _libm_float('expf')(np.asarray(x, dtype=np.float32)).astype(np.float32)


def type_hls4ml_softmax(node: Node) -> None:
    """The table types of an hls4ml softmax: configured, else hls4ml's defaults (exp_table_t, inv_table_t,
    inv_inp_t: ap_fixed<18,8,RND,SAT>; table_t: ap_fixed<18,8>), never capped by max_precision."""
    precision = node.config.get('Precision', {})
    for var, default in (('exp_table', HLS4ML_SOFTMAX_TYPE), ('inv_table', HLS4ML_SOFTMAX_TYPE),
                         ('inv_inp', HLS4ML_SOFTMAX_TYPE), ('table', HLS4ML_TABLE_TYPE)):
        t = precision.get(var, 'auto')
        node.types[var] = default if t == 'auto' else t


def build_hls4ml_softmax_tables(node: Node, in_t: FixedType) -> None:
    """hls4ml's exp and inverse tables of the 'latency' and 'stable' softmax (init_exp_table, init_invert_table).

    exp: entry i is exp_table_t(expf(v_i)) (latency: v_i is the input value with top bits i) or
    exp_table_t(expf(-v_i)) (stable: v_i is the inp_norm_t value x_max - x with top bits i). inv: entry i is
    inv_table_t(1.0f / v_i), v_i the inv_inp_t value with top bits i (1/0 = inf saturates or wraps to 0).
    """
    impl = node.config.get('Implementation', 'stable')
    type_hls4ml_softmax(node)
    bits = hls4ml_softmax_bits(node, in_t)
    exp_t, inv_t, inv_inp = node.types['exp_table'], node.types['inv_table'], node.types['inv_inp']
    exp_in = in_t if impl == 'latency' else inp_norm_type(in_t)
    if impl == 'stable':
        node.types['inp_norm'] = exp_in  # the type of max(x) - x (not configurable in hls4ml either)
    exp_bits = bits if impl == 'latency' or not in_t.signed else min(bits, in_t.width - 1)
    v = top_bits_values(exp_in, exp_bits)
    exp_values = exp_t.quantize(hls4ml_exp_entries(v if impl == 'latency' else -v).astype(np.float64))
    w = top_bits_values(inv_inp, bits)
    with np.errstate(divide='ignore'):
        inv_values = inv_t.quantize((np.float32(1) / w).astype(np.float64))
    node.attrs['tables'] = {
        'exp': Table(top_bits_index(node, exp_in, exp_bits, 'exp'), exp_values, exp_t),
        'inv': Table(top_bits_index(node, inv_inp, bits, 'inverse'), inv_values, inv_t),
    }


def build_legacy_softmax_tables(node: Node, in_t: FixedType) -> None:
    """hls4ml's legacy softmax tables (init_exp_table_legacy, init_invert_table_legacy), both of table_t.

    exp: entry i is table_t(expf(16 (i - N/2) / N)), addressed by clamp(int((x_j - x_i) N / 16) + N/2, 0, N-1);
    inv: entry i is table_t(1.0 / (64 i / N)) (entry 0 is 0), addressed by clamp(int(s N / 64), 0, N-1).
    The C int conversions truncate toward zero; the clamps are the SAT of the index types.
    """
    type_hls4ml_softmax(node)
    bits = hls4ml_softmax_bits(node, in_t)
    if bits < LEGACY_MIN_BITS:
        raise GraphError(f"layer {node.name!r}: hls4ml's legacy softmax needs a table of at least "
                         f'{1 << LEGACY_MIN_BITS} entries (its inverse index is s * N / 64); this one has '
                         f'{1 << bits} (TableSize, capped at 2^min(input width, inv_table width))')
    table_t: FixedType = node.types['table']
    n = 1 << bits
    diff = 2.0 * max(abs(in_t.min_value), abs(in_t.max_value))  # |x_j - x_i|
    if diff * n / 16 >= 2.0 ** 31 or max(abs(table_t.min_value), table_t.max_value) * n / 64 >= 2.0 ** 31:
        raise GraphError(f"layer {node.name!r}: hls4ml's legacy softmax index (a C int) overflows for inputs of "
                         f'type {in_t} or table type {table_t}; use fewer integer bits')
    i = np.arange(n, dtype=np.float64)
    exp_values = table_t.quantize(hls4ml_exp_entries((16.0 * (i - n / 2.0) / n).astype(np.float32)).astype(np.float64))
    in_val = (64.0 * i / n).astype(np.float32).astype(np.float64)
    with np.errstate(divide='ignore'):
        inv_values = table_t.quantize(np.where(in_val > 0, 1.0 / in_val, 0.0))
    node.attrs['tables'] = {
        'exp': Table(FixedType(bits, bits, True, 'TRN_ZERO', 'SAT'), exp_values, table_t, shift=bits - 4),
        'inv': Table(FixedType(bits, bits, False, 'TRN_ZERO', 'SAT'), inv_values, table_t, shift=bits - 6),
    }
