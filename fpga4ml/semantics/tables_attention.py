"""The 1/sqrt table of LayerNorm, sized and addressed from the exact variance bounds.

LayerNorm (recipes_attention.layer_norm) computes, per row of n values, the exact integers
``d_i = n*x_i - sum(x)`` and ``V = sum(d_i^2) + E`` where ``E = round(n^3 * epsilon)`` on V's LSB,
so that ``(x_i - mean) / sqrt(var + epsilon) = d_i * sqrt(n) / sqrt(V)`` (V = n^3 (var + epsilon)).

V can span many octaves (a variance of 1e-3 and one of 1e3 in the same type), which a table over
V's own grid cannot resolve. The recipe therefore normalises V like a floating-point number before
the lookup, with comparisons and shifts only:

* ``u = V * 2^-H`` with H the smallest even number with ``V < 2^H`` for every V the bounds allow
  (u in [0, 1): the mantissa is V's, the LSB moves);
* for k in ``stages`` (descending powers of two): where ``u < 4^-k``, ``u *= 4^k`` and
  ``d_i *= 2^k`` (the same rows): afterwards u is in [1/4, 1) unless V == 0 (then every d_i is 0);
* ``1/sqrt(V) * sqrt(n) = table(u) * 2^s * 2^(-H/2)``, and the 2^s already sits in the shifted d_i.

The table is addressed by u cast into ``ufixed<B, 0, TRN, SAT>`` (B = log2 TableSize, or fewer when
u has fewer fractional bits: then the table is exact on u's grid). Entry a holds
``sqrt(n) / sqrt(c_a)`` rounded into the table type, where c_a is the centre of the u values that
share the address (a * 2^-B when the table is exact). Entries below 1/4 are never read except
address 0 (V == 0, d == 0); they hold the same formula (0 at address 0). The relative error of
an entry is below 2^-(B-1) before its rounding into the table type, whatever the variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..fixed import FixedType
from ..intervals import Interval
from ..ir import GraphError, Node
from .tables import Table, table_bits

#: the default width of the 1/sqrt table entries (the integer bits follow from sqrt(n))
RSQRT_TABLE_WIDTH = 18


@dataclass(frozen=True)
class RsqrtTable(Table):
    """LayerNorm's 1/sqrt table with the normalisation layout it was built for (see the module doc)."""

    #: epsilon as a mantissa on the LSB of sum(d_i^2): E = round(n^3 * epsilon * 2^frac)
    eps_mantissa: int = 0
    #: H: u = V * 2^-H lies in [0, 1) (H is even, so 2^(-H/2) is a shift)
    window: int = 0
    #: the fractional bits of u (V's frac + H)
    u_frac: int = 0
    #: the conditional shifts by 4^k, descending powers of two
    stages: tuple[int, ...] = field(default_factory=tuple)


def rsqrt_table_type(n: int) -> FixedType:
    """The 'auto' type of the entries: sqrt(n)/sqrt(u) for u in [1/4, 1) lies in (sqrt(n), 2 sqrt(n)]."""
    integer = math.floor(math.log2(2.0 * math.sqrt(n))) + 1
    return FixedType(RSQRT_TABLE_WIDTH, integer, False, 'RND', 'SAT')


def eps_mantissa(node: Node, n: int, epsilon: float, frac: int) -> int:
    """n^3 * epsilon on the LSB 2^-frac, rounded to nearest (a GraphError names a negative epsilon)."""
    if not epsilon >= 0.0:
        raise GraphError(f'layer {node.name!r}: LayerNorm epsilon must be >= 0, got {epsilon!r}')
    return int(round(float(n) ** 3 * float(epsilon) * 2.0 ** frac))


def layout(v_max: int, v_frac: int) -> tuple[int, int, tuple[int, ...]]:
    """(H, u_frac, stages) for V in [0, v_max] (mantissas at 2^-v_frac)."""
    bits = max(int(v_max).bit_length(), 2)
    window = bits - v_frac
    window += window % 2  # even, so that 2^(-H/2) is a shift
    u_frac = v_frac + window
    needed = max(0, -(-(u_frac - 2) // 2))  # 4^s * 2^-u_frac >= 1/4 for the smallest nonzero u
    stages = tuple(1 << j for j in range(needed.bit_length() - 1, -1, -1))
    return window, u_frac, stages


#: the most fractional bits of the normalised variance u (an unsigned int64 mantissa, as every exact value)
MAX_U_BITS = 63


def _widest_input(n: int, e: int, q_frac: int) -> int:
    """The widest input type (any split of integer and fractional bits at the same LSB) whose worst-case
    sum of squares n^3 (2^w - 1)^2 + E still gives a normalised variance of at most MAX_U_BITS bits."""
    fits = [w for w in range(1, 64) if layout(n ** 3 * ((1 << w) - 1) ** 2 + e, q_frac)[1] <= MAX_U_BITS]
    return max(fits, default=0)


def build_rsqrt_table(node: Node, q: Interval, n: int, epsilon: float, in_type: FixedType | None = None) -> None:
    """Build node.attrs['tables']['rsqrt'] from the exact bounds of sum(d_i^2) (`q`); a GraphError names the
    layer, its input type and the widest accepted one when the exact values pass 63 bits."""
    table_t: FixedType = node.types['table']
    e = eps_mantissa(node, n, epsilon, q.frac)
    window, u_frac, stages = layout(q.max + e, q.frac)
    if u_frac > MAX_U_BITS:
        raise GraphError(f'layer {node.name!r}: LayerNorm over {n} values of the input type {in_type}: the exact '
                         f'sum of squares n^3 var needs {int(q.max + e).bit_length()} bits, its normalised form '
                         f'{u_frac}; at most {MAX_U_BITS} are supported. Narrow the input to at most '
                         f'{_widest_input(n, e, q.frac)} bits (e.g. a Quantize or a narrower result type before it)')
    bits = min(table_bits(node), u_frac)
    index = FixedType(bits, 0, False, 'TRN', 'SAT')
    a = np.arange(1 << bits, dtype=np.float64)
    centre = (a + 0.5 * (1.0 - 2.0 ** (bits - u_frac))) * 2.0 ** -bits
    with np.errstate(divide='ignore'):
        entries = np.where(a > 0, math.sqrt(n) / np.sqrt(np.maximum(centre, 1e-300)), 0.0)
    tables = dict(node.attrs.get('tables') or {})
    tables['rsqrt'] = RsqrtTable(index, table_t.quantize(entries), table_t, eps_mantissa=e, window=window,
                                 u_frac=u_frac, stages=stages)
    node.attrs['tables'] = tables
