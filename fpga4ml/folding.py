"""Folding (ReuseFactor) rules shared by the HLS and Verilog back ends.

A layer with ReuseFactor R computes its products over R clock cycles with about 1/R of the
multipliers (initiation interval II = R). Which R a layer accepts is hls4ml's rule, stated once
here for a constant-matrix product of n_in inputs and n_out outputs (a Dense, a Conv's
per-window kernel over its im2col matrix, or an EinsumDense's kernel per output position: its
contracted by its kernel-only output letters):

- Strategy 'Latency': any divisor of n_in * n_out (n_in*n_out/R multipliers, each used R times);
- Strategy 'Resource': a divisor of n_in * n_out that also divides n_in or is a multiple of n_in,
  so every cycle touches a fixed set of accumulators.

`check_reuse_factors(nodes)` validates foldable layers: `config.resolve_config` calls it at convert
time for every layer, whichever level sets its ReuseFactor (the Model default, a LayerType or a
LayerName entry), so an invalid value raises in convert() on both back ends, naming the layer,
the value and the valid values (hls4ml instead warns and picks the closest valid value); the HLS
emitter reads the same functions when it writes a layer, and the Verilog back end folds Dense,
Conv, EinsumDense and Einsum layers with them (backends/verilog/fold.py; an Einsum of two variables
is n_out outputs of n_in terms each, its products shared the same way). Other layers ignore their
ReuseFactor in both back ends.
"""

from __future__ import annotations

import math

import numpy as np

from .config import STRATEGIES, ConfigError
from .ir import Node

#: ops whose products are folded by ReuseFactor (a constant-matrix product: `fold_shape`)
FOLDABLE_OPS = ('Dense', 'Conv', 'EinsumDense')


class ReuseFactorError(ConfigError):
    """A ReuseFactor a layer cannot use (the message names the layer, the value and the valid values)."""


def valid_reuse_factors(n_in: int, n_out: int, strategy: str) -> list[int]:
    """ReuseFactors a constant-matrix product n_in x n_out accepts under `strategy` (see the module doc)."""
    total = n_in * n_out
    divisors = [d for d in range(1, total + 1) if total % d == 0]
    if strategy == 'Resource':
        divisors = [d for d in divisors if n_in % d == 0 or d % n_in == 0]
    return divisors


def layer_strategy(node: Node) -> str:
    """The node's Strategy ('Latency' or 'Resource', any case), validated."""
    strategy = node.config.get('Strategy', 'Latency')
    strategy = {'latency': 'Latency', 'resource': 'Resource'}.get(str(strategy).lower(), strategy)
    if strategy not in STRATEGIES:
        raise ValueError(f'layer {node.name!r}: Strategy must be one of {list(STRATEGIES)}, got {strategy!r}')
    return strategy


def checked_reuse_factor(node: Node, what: str, valid: list[int], key: str = 'ReuseFactor') -> int:
    """The node's ReuseFactor (or another factor `key`, default 1) if it is one of `valid`; otherwise a
    ReuseFactorError (a ConfigError, a ValueError) listing them."""
    rf = node.config.get(key, 1)
    if isinstance(rf, bool) or not isinstance(rf, (int, np.integer)) or int(rf) not in valid:
        raise ReuseFactorError(f'layer {node.name!r} ({what}): {key} {rf!r} is not valid; valid values are {valid}')
    return int(rf)


def dense_settings(node: Node, n_in: int, n_out: int) -> tuple[str, int]:
    """(Strategy, ReuseFactor) of a Dense n_in -> n_out, validated (ReuseFactorError lists the valid values)."""
    strategy = layer_strategy(node)
    valid = valid_reuse_factors(n_in, n_out, strategy)
    return strategy, checked_reuse_factor(node, f'Dense {n_in} -> {n_out}, Strategy {strategy}', valid)


def fold_shape(node: Node, graph=None) -> tuple[int, int] | None:
    """(n_in, n_out) of the constant matrix a foldable node multiplies by (a Conv: its im2col matrix; an
    Einsum of two variables, given its graph: terms per output and outputs), else None."""
    if node.op == 'Einsum':
        return einsum_shape(node, graph) if graph is not None else None
    if node.op not in FOLDABLE_OPS:
        return None
    kernel = (node.qweights or node.weights).get('kernel')
    if kernel is None:
        return None
    shape = np.shape(kernel)
    if node.op == 'Dense':
        return int(shape[0]), int(shape[-1])
    if node.op == 'EinsumDense':
        return einsum_dense_matrix(node, shape)
    *taps, cin_per_group, cout = shape
    groups = int(node.attrs.get('groups', 1))
    return int(np.prod(taps, dtype=np.int64)) * int(cin_per_group) * groups, int(cout)


def einsum_dense_matrix(node: Node, kernel_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """(contracted, kernel-only output) sizes of an EinsumDense's kernel: the matrix each output position
    multiplies by; None for a kernel with an ellipsis (then the layer is not folded)."""
    lhs, _, out = str(node.attrs.get('equation', '')).replace(' ', '').partition('->')
    x_letters, _, k_letters = lhs.partition(',')
    if '.' in k_letters or len(k_letters) != len(kernel_shape):
        return None
    sizes = dict(zip(k_letters, kernel_shape))
    n_in = math.prod(sizes[c] for c in k_letters if c not in out)
    n_out = math.prod(sizes[c] for c in k_letters if c in out and c not in x_letters)
    return int(n_in), int(n_out)


def einsum_shape(node: Node, graph) -> tuple[int, int]:
    """(terms per output, outputs) of an Einsum of two variables in `graph` (its products: terms x outputs)."""
    from .semantics.recipes_attention import einsum_terms  # the recipe's plan; semantics imports config
    index, _ = einsum_terms(node, str(node.attrs['equation']), [tuple(graph[i].shape) for i in node.inputs])
    return int(index.shape[1]), int(index.shape[0])


def reuse_factor(node: Node, graph=None) -> int:
    """The validated ReuseFactor of a node: its configured value for a foldable node, 1 for any other (an
    Einsum is foldable when its graph is given)."""
    shape = fold_shape(node, graph)
    if shape is None:
        return 1
    n_in, n_out = shape
    strategy = layer_strategy(node)
    kind = {'Conv': 'Conv, im2col', 'EinsumDense': 'EinsumDense, per position',
            'Einsum': 'Einsum, terms per output'}.get(node.op, 'Dense')
    return checked_reuse_factor(node, f'{kind} {n_in} -> {n_out}, Strategy {strategy}',
                                valid_reuse_factors(n_in, n_out, strategy))


def check_reuse_factors(nodes, graph=None) -> dict[str, int]:
    """Validate the ReuseFactor of every foldable node among `nodes` (a Graph or any iterable of nodes; with
    their `graph`, Einsum nodes too); returns {name: R} of those with R > 1."""
    folded = {}
    for node in nodes:
        rf = reuse_factor(node, graph)
        if rf > 1:
            folded[node.name] = rf
    return folded


def mac_schedule(n_in: int, n_out: int, rf: int) -> np.ndarray:
    """Which product each multiplier of a Verilog MAC-folded n_in x n_out layer computes in each cycle.

    Returns an int array (lanes, a, rf, 2): entry [lane, t, c] is the (input, output) pair that
    multiplier (lane, t) multiplies in cycle c. With g = gcd(rf, n_in), a = n_in / g inputs per
    block, r = rf / g output groups and lanes = n_out / r: cycle c handles input block c // r for
    output group c % r (backends/verilog/fold.py builds exactly this).
    """
    if rf < 1 or (n_in * n_out) % rf:
        raise ReuseFactorError(f'ReuseFactor {rf} does not divide {n_in} x {n_out} = {n_in * n_out} products')
    g = math.gcd(rf, n_in)
    a, r = n_in // g, rf // g
    lanes = n_out // r
    c = np.arange(rf)
    ins = (c // r)[None, :] * a + np.arange(a)[:, None]             # (a, rf)
    outs = (c % r)[None, :] * lanes + np.arange(lanes)[:, None]     # (lanes, rf)
    pairs = np.empty((lanes, a, rf, 2), dtype=np.int64)
    pairs[..., 0] = ins[None, :, :]
    pairs[..., 1] = outs[:, None, :]
    return pairs


def prune_for_reuse(kernel: np.ndarray, reuse_factor: int, sparsity: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero whole groups of weights that share a multiplier of the MAC-folded layer: (pruned kernel, mask).

    A Dense kernel (n_in, n_out) folded at `reuse_factor` has n_in*n_out/R multipliers, each taking
    R weights (`mac_schedule`); a multiplier whose weights are all zero is not built. The groups
    with the smallest L2 norm are zeroed until `sparsity` (0..1) of them are, so the layer needs
    that fraction fewer multipliers. During training apply the mask after each optimizer step
    (`layer.kernel.assign(layer.kernel * mask)` in a Keras callback's on_train_batch_end, or
    `weight.data *= mask` in PyTorch) and fine-tune; the structure is kept exactly.
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f'prune_for_reuse: a Dense kernel (n_in, n_out) is needed, got shape {kernel.shape}')
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f'prune_for_reuse: sparsity must be in [0, 1], got {sparsity!r}')
    n_in, n_out = kernel.shape
    valid = valid_reuse_factors(n_in, n_out, 'Latency')
    if reuse_factor not in valid:
        raise ReuseFactorError(f'prune_for_reuse: ReuseFactor {reuse_factor!r} is not valid for a {n_in} x {n_out} '
                               f'kernel; valid values are {valid}')
    pairs = mac_schedule(n_in, n_out, reuse_factor).reshape(-1, reuse_factor, 2)   # (multipliers, R, 2)
    norms = np.sqrt((kernel[pairs[..., 0], pairs[..., 1]].astype(np.float64) ** 2).sum(axis=1))
    n_zero = int(round(sparsity * len(pairs)))
    mask = np.ones(kernel.shape, dtype=kernel.dtype if kernel.dtype.kind == 'f' else np.float32)
    for group in np.argsort(norms, kind='stable')[:n_zero]:
        mask[pairs[group, :, 0], pairs[group, :, 1]] = 0
    return kernel * mask, mask


__all__ = ['FOLDABLE_OPS', 'STRATEGIES', 'ReuseFactorError', 'check_reuse_factors', 'checked_reuse_factor',
           'dense_settings', 'fold_shape', 'layer_strategy', 'mac_schedule', 'prune_for_reuse', 'reuse_factor',
           'valid_reuse_factors']
