"""Lookup tables for table activations and softmax, built at conversion time.

A table is addressed by casting its input into an *index type* (``TRN`` rounding, ``SAT``
overflow); the address is the index mantissa minus the index type's smallest mantissa. When the
input type has at most ``TableSize`` entries (default 2^12) the index type *is* the input type
and the table is exact: output = quantize(f(x)) for every representable x. Wider inputs keep
their top bits: the index type has log2(TableSize) bits, its integer bits clamped to the range
where f still changes at the output precision (f is monotonic), and the LSBs below are truncated;
each entry then samples f at the centre of the input values that share it. See docs/semantics.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixed import FixedType
from ..functions import is_monotonic, table_function
from ..ir import GraphError, Node

DEFAULT_TABLE_BITS = 12
EXP_TABLE_DEFAULT = FixedType(18, 1, False, 'RND', 'SAT')
INV_TABLE_DEFAULT = FixedType(18, 1, False, 'RND', 'SAT')


@dataclass(frozen=True)
class Table:
    """Quantized samples of a function: `values` (mantissas of `type`) addressed via `index`."""

    index: FixedType
    values: np.ndarray
    type: FixedType
    #: a table of a non-positive input (softmax's exp): address = min(-index mantissa, last entry)
    negated: bool = False

    def __len__(self) -> int:
        return int(self.values.size)


def table_bits(node: Node) -> int:
    """log2 of the configured TableSize (default 4096 entries)."""
    size = node.config.get('TableSize', 1 << DEFAULT_TABLE_BITS)
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


def build_activation_table(node: Node, in_t: FixedType) -> None:
    """Build the lookup table of a table activation into node.attrs['tables']['f']."""
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
