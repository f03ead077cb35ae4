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
    'Select': 'output `index` of a node with several outputs (the only way to read such a node); attrs: '
    'index; values and type are that output\'s',
    'SimpleRNN': 'recurrent layer h\' = act(W x + b + U h + br) over a (time, features) input (recipes_rnn.py); '
    'attrs: units, activation, return_sequences, go_backwards, output_order, quantizers (HGQ2\'s in-cell '
    'per-element quantizers at the points of recipes_rnn.QUANTIZER_POINTS; SimpleRNN and GRU); weights: kernel, recurrent_kernel, '
    'bias, recurrent_bias; inputs: x[, h0]; outputs: (sequence or last h, final h); types: weight, '
    'recurrent_weight, bias, recurrent_bias, accum, result, table',
    'LSTM': 'LSTM layer, gates [i, f, g, o] (recipes_rnn.py); attrs: as SimpleRNN plus recurrent_activation; '
    'inputs: x[, h0, c0]; outputs: (sequence or last h, final h, final c); types: as SimpleRNN plus state',
    'GRU': 'GRU layer, gates [z, r, h] or torch\'s [r, z, n] (attrs gate_order zrh/rzh, reset_after) '
    '(recipes_rnn.py); attrs: as LSTM; inputs: x[, h0]; outputs: (sequence or last h, final h); types: as SimpleRNN',
    'Expression': 'a symbolic expression of the inputs x0..x{n-1} of a flat input (fpga4ml/symbolic); attrs: program (validated instructions), outputs, n_inputs, functions (tables), expressions; types: result',
    'Quantize': 'explicit cast to the result type; attrs: element_types (optional, per-element casts of '
    'quantization-aware models: {k, i, f} int arrays broadcast to the shape, rounding, overflow; element e '
    'is cast into fixed<k+i+f, k+i> (ufixed if k == 0), 0 when k+i+f == 0, then into the result type, by '
    'default the enclosing type); types: result',
    'LayerNorm': '(x - mean) / sqrt(var + epsilon) * gamma + beta over trailing axes (recipes_attention.py); attrs: '
    'axes, epsilon, center, scale; weights: gamma, beta (the normalised shape); types: scale, bias, accum (the '
    'normalised value), table (1/sqrt), result',
    'EinsumDense': 'a Dense per output position, Keras EinsumDense (recipes_attention.py); attrs: equation (per '
    'sample, e.g. tf,fhd->thd), use_bias; weights: kernel, bias (the output shape); types: weight, bias, accum, result',
    'Einsum': 'contraction of two variable tensors (recipes_attention.py); attrs: equation (per sample, e.g. '
    'hqd,hkd->hqk); types: accum, result',
    'TableSoftmax': 'softmax over the last axis through given tables, HGQ2\'s QSoftmax (recipes_attention.py); attrs: '
    'exp_index, exp_entries, inv_index, inv_entries (the index types and table mantissas), scale, epsilon, '
    'stable (False: the exp table reads x itself, no maximum); '
    'types: exp_table, inv_table, result',
    'Embedding': 'y[..., j] = embeddings[index(x), j] (recipes_attention.py): x floored and saturated into '
    'fixed<b+1, b+1> (2^b > V), indices outside [0, V) read zeros; weights: embeddings (V, E); types: weight, result',
    'MaskedSoftmax': 'softmax over the last axis of the keys a constant mask keeps, 0 at masked keys (Keras '
    'use_causal_mask; recipes_attention.py); attrs: mask (0/1, broadcast to the shape); types: result, exp_table, '
    'inv_table',
    'BiasAdd': 'y = x + bias, a constant broadcast to the node\'s shape (recipes_attention.py); weights: bias; '
    'types: bias, result',
    'TableDense': 'sums of per-element tables, HGQ2\'s QEinsumDenseT (recipes_attention.py); attrs: gather, index_types, '
    'entries, entry_types, sum_index; types: result',
}

#: Activation functions computed without tables (comparators, shifts, constant products).
PIECEWISE_ACTIVATIONS = ('linear', 'relu', 'leaky_relu', 'prelu', 'hard_sigmoid', 'hard_tanh')
#: Activation functions computed through a lookup table built at conversion time.
TABLE_ACTIVATIONS = ('sigmoid', 'tanh', 'softplus', 'softsign', 'elu', 'selu', 'exp', 'gelu', 'gelu_tanh', 'lut')



def operands(node: Node, table: dict) -> list:
    """The entries of `table` (per node name) that `node` reads; a Select reads one output of its producer.

    A node with several outputs has a tuple entry (one item per output) in every table the drivers
    keep (values, intervals, signals, types); only Select nodes read it.
    """
    if node.op == 'Select':
        return [table[node.inputs[0]][int(node.attrs['index'])]]
    return [table[src] for src in node.inputs]


class GraphError(ValueError):
    """A graph is malformed or uses an op/attribute that is not supported."""


class _Wiring:
    """A process-wide count of changes to graph wiring: node lists mutated, node names or inputs reassigned.

    A graph's name index and use map are valid while this count is the one they were built at.
    """

    changes = 0


#: Node attributes whose reassignment changes the wiring of the graphs holding the node.
_WIRING_ATTRS = ('name', 'inputs')


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

    def __setattr__(self, key: str, value: Any) -> None:
        if key in _WIRING_ATTRS and key in self.__dict__:
            _Wiring.changes += 1  # a rename or rewiring: every graph's index and use map must be rebuilt
        object.__setattr__(self, key, value)

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


class _NodeList(list):
    """The list behind `Graph.nodes`: a plain list that counts its mutations in `_Wiring.changes`."""

    def _changed(self) -> None:
        _Wiring.changes += 1


def _counting(name: str) -> Any:
    method = getattr(list, name)

    def mutate(self: _NodeList, *args: Any, **kwargs: Any) -> Any:
        self._changed()
        return method(self, *args, **kwargs)

    mutate.__name__ = name
    mutate.__doc__ = method.__doc__
    return mutate


for _name in ('__setitem__', '__delitem__', '__iadd__', '__imul__', 'append', 'extend', 'insert', 'pop',
              'remove', 'clear', 'sort', 'reverse'):
    setattr(_NodeList, _name, _counting(_name))
del _name


@dataclass
class Graph:
    """A typed dataflow graph: nodes in topological order plus the named inputs and outputs.

    `graph[name]`, `name in graph` and `graph.users(name)` are O(1) lookups in a name index and a use map
    built in one O(n) pass. Both are rebuilt lazily whenever the wiring may have changed: `nodes` mutated or
    replaced, or a node's `name` or `inputs` reassigned (anywhere). Of in-place edits of a node's `inputs`
    list (`node.inputs[0] = ...`) only dropped readers are noticed: reassign the list (`node.inputs = [...]`).
    """

    nodes: list[Node] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def __setattr__(self, key: str, value: Any) -> None:
        if key == 'nodes' and not isinstance(value, _NodeList):
            value = _NodeList(value)  # a copy that counts its mutations
        object.__setattr__(self, key, value)

    def __post_init__(self) -> None:
        self._forget()

    def _forget(self) -> None:
        """Drop the name index and use map (they are rebuilt on the next lookup)."""
        self._index: dict[str, int] = {}
        self._users: dict[str, list[Node]] = {}
        self._indexed: list[Node] | None = None  # the list object the caches describe
        self._at = -1  # the _Wiring.changes count they were built at

    def __getstate__(self) -> dict[str, Any]:
        return {'nodes': list(self.nodes), 'inputs': self.inputs, 'outputs': self.outputs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
        self._forget()

    def _rebuild(self) -> None:
        """Index every node name (the first node wins a duplicated name) and list the users of every name."""
        index: dict[str, int] = {}
        users: dict[str, list[Node]] = {}
        for position, node in enumerate(self.nodes):
            index.setdefault(node.name, position)
            for src in dict.fromkeys(node.inputs):
                users.setdefault(src, []).append(node)
        self._index, self._users = index, users
        self._indexed, self._at = self.nodes, _Wiring.changes

    def _fresh(self) -> bool:
        """Whether the index and use map describe the current wiring."""
        return self._indexed is self.nodes and self._at == _Wiring.changes

    def _position(self, name: object) -> int | None:
        """The position of the first node called `name` in `nodes`, or None."""
        if not isinstance(name, str):
            return None
        if not self._fresh():
            self._rebuild()
        position = self._index.get(name)
        if position is not None and (position >= len(self.nodes) or self.nodes[position].name != name):
            self._rebuild()  # changed behind the counts' back (never expected): trust only a fresh index
            position = self._index.get(name)
        return position

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, name: str) -> Node:
        position = self._position(name)
        if position is None:
            names = [n.name for n in self.nodes]
            shown = names if len(names) <= 20 else names[:20] + [f'... {len(names) - 20} more']
            raise KeyError(f'no node named {name!r}; nodes are {shown}')
        return self.nodes[position]

    def __contains__(self, name: object) -> bool:
        return self._position(name) is not None

    def add(self, node: Node) -> Node:
        """Append a node; its inputs must already be in the graph."""
        if node.name in self:
            raise GraphError(f'duplicate node name {node.name!r}')
        for src in node.inputs:
            if src not in self:
                raise GraphError(f'node {node.name!r}: input {src!r} is not defined before it')
        fresh = self._fresh()
        self.nodes.append(node)
        if fresh:  # keep the caches in step instead of rebuilding them
            self._index[node.name] = len(self.nodes) - 1
            for src in dict.fromkeys(node.inputs):
                self._users.setdefault(src, []).append(node)
            self._at = _Wiring.changes
        return node

    def users(self, name: str) -> list[Node]:
        """The nodes that read the output of node `name`, in graph order (each once)."""
        if not isinstance(name, str):
            return []
        if not self._fresh():
            self._rebuild()
        found = self._users.get(name, [])
        if not all(name in user.inputs for user in found):  # an inputs list edited in place
            self._rebuild()
            found = self._users.get(name, [])
        return list(found)

    def consumers(self, name: str) -> list[Node]:
        """The nodes that read the output of node `name` (the same as `users`)."""
        return self.users(name)

    def remove(self, name: str) -> None:
        """Remove a single-input node, rewiring its consumers (and outputs) to its input."""
        node = self[name]
        if len(node.inputs) != 1:
            raise GraphError(f'cannot bypass node {name!r} with {len(node.inputs)} inputs')
        source = node.inputs[0]
        for consumer in self.users(name):
            consumer.inputs = [source if i == name else i for i in consumer.inputs]
        self.outputs = [source if o == name else o for o in self.outputs]
        del self.nodes[self._position(name)]

    def discard(self, name: str) -> None:
        """Remove node `name`, which no node reads and which is no graph output."""
        readers = [n.name for n in self.users(name)]
        if readers:
            raise GraphError(f'cannot discard node {name!r}: nodes {readers} read it')
        if name in self.outputs or name in self.inputs:
            raise GraphError(f'cannot discard node {name!r}: it is a graph input or output')
        self[name]  # a KeyError naming the nodes when there is none
        del self.nodes[self._position(name)]

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

    def lint(self) -> None:
        """Check everything `validate` checks, plus ops, attributes, inferred shapes, Input nodes and reachability."""
        self.validate()
        if len(set(self.inputs)) != len(self.inputs):
            raise GraphError(f'graph inputs {self.inputs} name a node more than once')
        reached = set(self.inputs)
        for node in self.nodes:
            _lint_node(node, node.name in self.inputs)
            if node.op != 'Input' and any(src in reached for src in node.inputs):
                reached.add(node.name)
            if node.name not in reached:
                raise GraphError(f'node {node.name!r}: a {node.op} node reading {node.inputs} is not reachable '
                                 f'from the graph inputs {self.inputs}')
        self._lint_outputs()
        from .semantics import output_shapes  # the op declarations and recipes live above the IR
        shapes: dict = {}
        for node in self.nodes:
            in_shapes = operands(node, shapes)
            inferred = (node.shape,) if node.op == 'Input' else output_shapes(node, in_shapes)
            shapes[node.name] = inferred if len(inferred) > 1 else inferred[0]
            if inferred[0] != node.shape:
                raise GraphError(f'node {node.name!r}: a {node.op} of inputs {in_shapes} gives shape {inferred[0]}, '
                                 f'the node says {node.shape}')

    def _lint_outputs(self) -> None:
        """Nodes with several outputs are read only through Select nodes whose index is in range."""
        from .semantics.spec import n_outputs
        for node in self.nodes:
            several = node.op != 'Input' and n_outputs(node) > 1
            if several and node.name in self.outputs:
                raise GraphError(f'node {node.name!r}: a {node.op} has {n_outputs(node)} outputs; list its Select '
                                 'nodes as graph outputs, not the node itself')
            for user in self.users(node.name) if several else ():
                if user.op != 'Select':
                    raise GraphError(f'node {user.name!r}: reads {node.name!r}, a {node.op} with several outputs, '
                                     'directly; read one output through a Select node')
            if node.op == 'Select':
                src = self[node.inputs[0]] if len(node.inputs) == 1 else None
                count = n_outputs(src) if src is not None and src.op != 'Input' else 1
                if count < 2 or not 0 <= int(node.attrs['index']) < count:
                    raise GraphError(f"node {node.name!r}: Select index {node.attrs['index']} of {node.inputs}; "
                                     'a Select reads one output (0 .. n-1) of one node with several outputs')

    def table(self) -> str:
        """A per-layer table: name, op, inputs and their shapes, types, parameters and non-zero weights."""
        return format_table(self)

    def __str__(self) -> str:
        return self.table()


def _lint_node(node: Node, listed_input: bool) -> None:
    """Check one node's op, shape, Input role and attributes (GraphError naming the node)."""
    if node.op not in OPS:
        raise GraphError(f'node {node.name!r}: unknown op {node.op!r}; the IR has {sorted(OPS)}')
    shape = node.shape
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                               for d in shape):
        raise GraphError(f'node {node.name!r}: shape {shape!r} is not a tuple of positive ints')
    if node.op == 'Input' and node.inputs:
        raise GraphError(f'node {node.name!r}: an Input node reads {node.inputs}')
    if node.op == 'Input' and not listed_input:
        raise GraphError(f'node {node.name!r}: an Input node that is not listed in the graph inputs')
    from .semantics.spec import check_node  # the op declarations live above the IR
    check_node(node)


def _type_str(node: Node, key: str) -> str:
    t = node.types.get(key)
    return '' if t is None else str(t)


def _shape_str(graph: Graph, name: str) -> str:
    """The shape of node `name`, or '?' when the graph has no such node (a malformed graph still prints)."""
    return str(graph[name].shape) if name in graph else '?'


def format_table(graph: Graph) -> str:
    """Render the graph as an aligned text table (what `print(model)` shows)."""
    header = ('layer', 'op', 'inputs', 'input shapes', 'output', 'result type', 'weight type', 'accum type', 'params', 'nonzero')
    rows = []
    for node in graph.nodes:
        op = node.op
        if node.op == 'Activation':
            op = f"Activation({node.attrs.get('function')})"
        elif node.op in ('Merge', 'Pool'):
            op = f"{node.op}({node.attrs.get('mode')})"
        elif node.op == 'Conv' and node.attrs.get('groups', 1) != 1:
            op = f"Conv(groups={node.attrs['groups']})"
        in_names = ', '.join(node.inputs) if node.inputs else '-'
        in_shapes = ', '.join(_shape_str(graph, i) for i in node.inputs) if node.inputs else '-'
        weight_type = _type_str(node, 'weight')
        if node.op in ('Dense', 'Conv') and 'bias' in node.types and str(node.types['bias']) != weight_type:
            weight_type += f" / b {node.types['bias']}"
        rows.append((
            node.name,
            op,
            in_names,
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
