"""The graph IR: a small, printable list of typed operations.

A `Graph` is a topologically ordered list of `Node`s. Every node produces exactly one
tensor, named like the node (as in torch.fx), so edges are just node names. Shapes are
per sample (no batch axis). Front ends fill in ops, shapes, attributes and float weights;
passes fill in fixed-point types (`node.types`) and quantized weights (`node.qweights`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .fixed import FixedType

#: The op set of this IR, with the attributes each op uses. Back ends implement these and
#: nothing else; front ends lower framework layers onto them.
OPS: dict[str, str] = {
    'Input': 'a network input; attrs: none; types: result',
    'Dense': 'y = x @ kernel + bias over the last axis; weights: kernel (n_in, n_out), bias (n_out); '
    'types: weight, bias, accum, result',
    'Activation': 'element-wise function; attrs: function, alpha, max_value, threshold, exact_result (an '
    "'auto' result of a piecewise function is the exact type, as quantization-aware models compute it); "
    'weights: alpha (prelu); types: result, param, table',
    'Softmax': 'softmax over the last axis; attrs: axis; types: result, exp_table, inv_table',
    'Scale': 'per-channel y = x * scale + bias over the last axis (BatchNorm not fused); '
    'weights: scale, bias; types: scale, bias, result',
    'Merge': 'element-wise merge of inputs; attrs: mode (add, sub, mul, avg, max, min, concat), '
    'axis (concat); types: result',
    'Conv': 'convolution over channels-last (W, C) or (H, W, C) inputs; attrs: kernel_size (kw,) or '
    '(kh, kw), strides, dilation, padding (left, right) or (top, bottom, left, right) zero-padding amounts, '
    'groups (== channels: depthwise), use_bias; weights: kernel (kh, kw, C_in/groups, C_out) or '
    '(kw, C_in/groups, C_out) as Keras stores it, bias (C_out); types: weight, bias, accum, result',
    'Pool': 'max or average over windows of a (W, C) or (H, W, C) input, per channel; attrs: mode (max, '
    'avg), pool_size, strides, padding (as Conv; padded cells are ignored: max skips them, avg divides by '
    'the number of real cells), global (a whole-extent pool lowered from Global*Pooling); types: accum, result',
    'Pad': 'zero padding of a (W, C) or (H, W, C) input; attrs: padding (as Conv); values and type unchanged',
    'Crop': 'cropping of a (W, C) or (H, W, C) input; attrs: cropping (amounts as padding); values unchanged',
    'Resize': 'nearest-neighbour resize of a (W, C) or (H, W, C) input; attrs: scale (sw,) or (sh, sw) '
    'integer factors (every element repeated), or index ((cols,) or (rows, cols): the source index of every '
    'output position per spatial axis, any output size), method (nearest); values unchanged',
    'Transpose': 'permutation of the per-sample axes (Keras Permute); attrs: perm (0-based, batch excluded); '
    'values unchanged',
    'Reshape': 'reshape (also Flatten); attrs: shape; values are unchanged',
    'Quantize': 'explicit cast to the result type; attrs: element_types (optional, per-element casts of '
    'quantization-aware models: {k, i, f} int arrays broadcast to the shape, rounding, overflow; element e '
    'is cast into fixed<k+i+f, k+i> (ufixed if k == 0), 0 when k+i+f == 0, then into the result type, by '
    'default the enclosing type); types: result',
}

#: Activation functions computed without tables (comparators, shifts, constant products).
PIECEWISE_ACTIVATIONS = ('linear', 'relu', 'leaky_relu', 'prelu', 'hard_sigmoid', 'hard_tanh')
#: Activation functions computed through a lookup table built at conversion time.
TABLE_ACTIVATIONS = ('sigmoid', 'tanh', 'softplus', 'softsign', 'elu', 'selu', 'exp')


class GraphError(ValueError):
    """A graph is malformed or uses an op/attribute that is not supported."""


@dataclass
class Node:
    """One operation: `op` applied to the outputs of `inputs`, producing a tensor of `shape`."""

    name: str
    op: str
    inputs: list[str]
    shape: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    #: fixed-point type per variable: 'result', 'weight', 'bias', 'accum', 'table', ...
    types: dict[str, FixedType] = field(default_factory=dict)
    #: quantized weights as int64 mantissas, same keys as `weights`
    qweights: dict[str, np.ndarray] = field(default_factory=dict)
    #: the framework class this node came from (used by 'LayerType' configuration)
    source: str = ''
    #: resolved per-layer configuration (ReuseFactor, Strategy, Trace, precision requests)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise GraphError(f'node {self.name!r}: unknown op {self.op!r}; the IR has {sorted(OPS)}')
        self.shape = tuple(int(d) for d in self.shape)

    @property
    def result_type(self) -> FixedType | None:
        """The fixed-point type of this node's output tensor (None before typing)."""
        return self.types.get('result')

    @property
    def size(self) -> int:
        """Number of elements of the output tensor per sample."""
        return int(np.prod(self.shape, dtype=np.int64))

    def n_params(self) -> int:
        """Number of weight and bias values."""
        return int(sum(w.size for w in self.weights.values()))

    def n_nonzero(self) -> int:
        """Number of non-zero weights after quantization (before it, of the float weights)."""
        source = self.qweights if self.qweights else self.weights
        return int(sum(np.count_nonzero(w) for w in source.values()))


@dataclass
class Graph:
    """A typed dataflow graph: nodes in topological order plus the named inputs and outputs."""

    nodes: list[Node] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f'no node named {name!r}; nodes are {[n.name for n in self.nodes]}')

    def __contains__(self, name: object) -> bool:
        return any(node.name == name for node in self.nodes)

    def add(self, node: Node) -> Node:
        """Append a node; its inputs must already be in the graph."""
        if node.name in self:
            raise GraphError(f'duplicate node name {node.name!r}')
        for src in node.inputs:
            if src not in self:
                raise GraphError(f'node {node.name!r}: input {src!r} is not defined before it')
        self.nodes.append(node)
        return node

    def consumers(self, name: str) -> list[Node]:
        """Nodes that read the output of node `name`."""
        return [n for n in self.nodes if name in n.inputs]

    def remove(self, name: str) -> None:
        """Remove a single-input node, rewiring its consumers (and outputs) to its input."""
        node = self[name]
        if len(node.inputs) != 1:
            raise GraphError(f'cannot bypass node {name!r} with {len(node.inputs)} inputs')
        source = node.inputs[0]
        for consumer in self.consumers(name):
            consumer.inputs = [source if i == name else i for i in consumer.inputs]
        self.outputs = [source if o == name else o for o in self.outputs]
        self.nodes.remove(node)

    def validate(self) -> None:
        """Check names, topological order and that inputs/outputs exist."""
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise GraphError(f'duplicate node name {node.name!r}')
            for src in node.inputs:
                if src not in seen:
                    raise GraphError(f'node {node.name!r}: input {src!r} is not defined before it')
            seen.add(node.name)
        for name in self.inputs:
            if name not in seen or self[name].op != 'Input':
                raise GraphError(f'graph input {name!r} is not an Input node')
        for name in self.outputs:
            if name not in seen:
                raise GraphError(f'graph output {name!r} is not a node')

    def table(self) -> str:
        """A per-layer table: name, op, shapes, types, parameters and non-zero weights."""
        return format_table(self)

    def __str__(self) -> str:
        return self.table()


def _type_str(node: Node, key: str) -> str:
    t = node.types.get(key)
    return '' if t is None else str(t)


def format_table(graph: Graph) -> str:
    """Render the graph as an aligned text table (what `print(model)` shows)."""
    header = ('layer', 'op', 'input shapes', 'output', 'result type', 'weight type', 'accum type', 'params', 'nonzero')
    rows = []
    for node in graph.nodes:
        op = node.op
        if node.op == 'Activation':
            op = f"Activation({node.attrs.get('function')})"
        elif node.op in ('Merge', 'Pool'):
            op = f"{node.op}({node.attrs.get('mode')})"
        elif node.op == 'Conv' and node.attrs.get('groups', 1) != 1:
            op = f"Conv(groups={node.attrs['groups']})"
        in_shapes = ', '.join(str(graph[i].shape) for i in node.inputs) if node.inputs else '-'
        weight_type = _type_str(node, 'weight')
        if node.op in ('Dense', 'Conv') and 'bias' in node.types and str(node.types['bias']) != weight_type:
            weight_type += f" / b {node.types['bias']}"
        rows.append((
            node.name,
            op,
            in_shapes,
            str(node.shape),
            _type_str(node, 'result'),
            weight_type,
            _type_str(node, 'accum'),
            str(node.n_params()) if node.weights else '',
            str(node.n_nonzero()) if node.weights else '',
        ))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ['  '.join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append('  '.join('-' * w for w in widths))
    lines += ['  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    total = sum(n.n_params() for n in graph.nodes)
    nonzero = sum(n.n_nonzero() for n in graph.nodes)
    lines.append(f'{len(graph.nodes)} layers, {total} parameters, {nonzero} non-zero; '
                 f'inputs {graph.inputs}, outputs {graph.outputs}')
    return '\n'.join(lines)
