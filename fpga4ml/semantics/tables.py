"""Lookup tables for table activations and softmax, built at conversion time.

A table is addressed by casting its input into an *index type* (``TRN`` rounding, ``SAT``
overflow); the address is the index mantissa minus the index type's smallest mantissa. When the
input type has at most ``TableSize`` entries (default 2^12) the index type *is* the input type
and the table is exact: output = quantize(f(x)) for every representable x. Wider inputs keep
their top bits: the index type has log2(TableSize) bits, its integer bits clamped to the range
where f still changes at the output precision (f is monotonic), and the LSBs below are truncated;
each entry then samples f at the centre of the input values that share it. See docs/semantics.md.

With ``TableSemantics: 'hls4ml'`` (sigmoid, tanh) a table is hls4ml 1.3.0's instead: its entries
and its index arithmetic (`build_hls4ml_table`), so a design validated with hls4ml gives its bits.
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
HLS4ML_TABLE_RANGE = {'sigmoid': 16, 'tanh': 8}
#: hls4ml's default table_t (ap_fixed<18,8>: TRN, WRAP) and table_size of activations
HLS4ML_TABLE_TYPE = FixedType(18, 8)
HLS4ML_TABLE_BITS = 10
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
def _libm_float(name: str):
    """The C library's float function `name` (expf, tanhf): the one hls4ml's C simulation calls here."""
    path = ctypes.util.find_library('m') or ctypes.util.find_library('c')
    fn = getattr(ctypes.CDLL(path), name)
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return np.frompyfunc(lambda v: fn(float(v)), 1, 1)


def hls4ml_entries(fn: str, size: int) -> np.ndarray:
    """hls4ml's float32 table entries: entry i is f((i - N/2) * R / N), computed as its C++ computes it.

    The argument is computed in double and rounded to float; sigmoid is float(1.0 / (double)(1.0f +
    expf(-x))), tanh is tanhf(x). expf and tanhf are the C library's own (through ctypes): numpy's
    float32 functions differ from glibc's in the last bit for about a third of the entries, which
    moves table values. A test compares every entry with hls4ml's header compiled by g++.
    """
    i = np.arange(size, dtype=np.float64)
    x = (float(HLS4ML_TABLE_RANGE[fn]) * (i - size / 2.0) / size).astype(np.float32)
    if fn == 'sigmoid':
        e = _libm_float('expf')(-x).astype(np.float32)
        return (1.0 / (np.float32(1) + e).astype(np.float64)).astype(np.float32)
    return _libm_float('tanhf')(x).astype(np.float32)


def build_hls4ml_table(node: Node, in_t: FixedType) -> None:
    """hls4ml's sigmoid/tanh table: address = clamp(trunc0(x * N / R) + N/2, 0, N - 1).

    x * N / R is a shift of x (N and R are powers of two); trunc0 and the clamp are a cast into
    fixed<B, B, TRN_ZERO, SAT> (B = log2 N, range [-N/2, N/2 - 1]); the address is that mantissa + N/2.
    """
    fn = node.attrs['function']
    if fn not in HLS4ML_TABLE_RANGE:
        raise GraphError(f"layer {node.name!r}: TableSemantics 'hls4ml' covers {sorted(HLS4ML_TABLE_RANGE)} so "
                         f"far, not {fn!r}; set TableSemantics: 'exact' for this layer")
    bits = table_bits(node, HLS4ML_TABLE_BITS)
    shift = bits - (HLS4ML_TABLE_RANGE[fn].bit_length() - 1)
    if max(abs(in_t.min_value), in_t.max_value) * 2.0 ** shift >= 2.0 ** 31:
        raise GraphError(f"layer {node.name!r}: hls4ml's table index (x * N / R in a C int) overflows for "
                         f'inputs of type {in_t}; use fewer integer bits or TableSemantics: \'exact\'')
    table_t: FixedType = node.types['table']
    values = table_t.quantize(hls4ml_entries(fn, 1 << bits).astype(np.float64))
    node.attrs['tables'] = {'f': Table(FixedType(bits, bits, True, 'TRN_ZERO', 'SAT'), values, table_t, shift=shift)}


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
    """Build the exp and reciprocal tables of a softmax (see docs/semantics.md)."""
    if hls4ml_tables(node):
        raise GraphError(f"layer {node.name!r}: TableSemantics 'hls4ml' does not cover Softmax yet (hls4ml's "
                         "latency/stable/legacy/argmax implementations); set TableSemantics: 'exact' for this layer")
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
