"""ONNX attention and GELU as the PyTorch front end builds them (docs/onnx.md, docs/transformers.md).

torch.onnx.export writes an nn.MultiheadAttention as matrix products around a Softmax: the query,
key and value projections (one MatMul for all three, or one each with kdim/vdim), the heads split by
Reshape/Transpose/Gather, two Mul nodes scaling q and k^T by sqrt(1/sqrt(head size)) each, MatMul,
Softmax, MatMul, the heads merged back and the output Gemm. The ONNX walk (onnx.py, onnx_ops.py)
lowers that graph as it is; `fuse_attention` then rewrites each such block of the IR into the nodes
the torch front end gives (torch_attention.attention_nodes): `<p>_query`/`_key`/`_value`
(EinsumDense, the scores' scale folded into the query kernel and bias), `<p>_scores` (Einsum),
`<p>_softmax`, `<p>_combine` (Einsum) and `<p>_out` (EinsumDense), `<p>` the ONNX scope of the
scores MatMul ('/enc/self_attn/MatMul_1' -> 'enc_self_attn'). So both front ends compute the same
bits at the same configuration.

The block is found by its core (Einsum 'axz,azy->axy' -> Softmax over the last axis -> Einsum
'axz,azy->axy') and each operand followed back, through data-movement nodes (Reshape, Transpose,
Crop) and scalar Scales only, to a float Dense on a (sequence, features) input. Which projection
column each (head, position, feature) element reads is not assumed from the exporter's pattern: the
data-movement nodes are run on element indices (their own float recipes), and the block is rewritten
only when every element of q, k^T and v reads the projection of its own position, every head the
same columns at every position, and the merged heads feed the output Dense as a permutation of
(head, feature). Anything else is left as lowered (exact, node for node).

The scale: when the q and k^T scales are both the value the export computes for head size D,
float32 Sqrt(1 / Sqrt(D)), they are torch's 1/sqrt(D) split in two and fold as float32(D^-0.5) (the
torch front end's factor; their float32 product is off by an ulp); other scales fold as their exact
product. A constant attention mask, which the export adds to the scores (its finite values an additive
bias, -inf a masked key), is walked into a BiasAdd and a MaskedSoftmax (onnx_ops._attention_mask); the
block takes them along as the torch front end's `<p>_mask` and masked `<p>_softmax`.

`fuse_gelu` rewrites, before the walk, torch's GELUs as exported below opset 20 into one Gelu node
each: the erf form x * (1 + erf(x / C)) * 0.5 with C = float32(sqrt 2) (or a Mul by float32(1/sqrt 2))
-> Activation 'gelu', as torch's F.gelu; the tanh form x * (1 + tanh(B * (x + K * x^3))) * 0.5 with
B = float32(sqrt(2/pi)), K = float32(0.044715) and x^3 = x * (x * x) or Pow(x, 3) -> Gelu
approximate='tanh', Activation 'gelu_tanh'. Either form ends in `times x` and `times 0.5` in either
order (TorchScript and dynamo exports differ there); every intermediate must be read once. An Erf
anywhere else is refused naming the node; a Tanh anywhere else stays a Tanh (converted node by node).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import FIXED_PRECISION_ATTR
from ..ir import Graph, GraphError, Node
from ..semantics import float_node
from ..semantics.spec import make_node

#: the per-sample equation the ONNX walk gives a MatMul of two tensors of rank 3 (_matmul_tensors)
MATMUL3 = 'axz,azy->axy'
#: IR ops that only move elements (their float recipe run on indices gives the movement)
MOVES = ('Reshape', 'Transpose', 'Crop')
SOURCE = 'MultiheadAttention'


# --------------------------------------------------------------------------- GELU (ONNX level)

#: the float32 constants torch writes for the tanh GELU: sqrt(2 / pi) and 0.044715
TANH_BETA = float(np.float32(np.sqrt(2 / np.pi)))
TANH_KAPPA = float(np.float32(0.044715))


def _scalar(wrapper: Any, tensor: str) -> float | None:
    """The value of a one-element float constant, or None."""
    init = wrapper.get_initializer(tensor)
    if init is None or np.size(init) != 1 or not np.issubdtype(np.asarray(init).dtype, np.floating):
        return None
    return float(np.asarray(init).reshape(-1)[0])


def _other(wrapper: Any, node: Any, tensor: str, value: float) -> bool:
    """Whether binary `node` reads `tensor` and the scalar constant `value` (either order)."""
    ins = list(node.input)
    return len(ins) == 2 and tensor in ins and _scalar(wrapper, ins[1 - ins.index(tensor)]) == value


def _by_constant(wrapper: Any, node: Any, op: str, value: float) -> str | None:
    """The tensor that binary `node` (of type `op`) combines with the scalar constant `value`, else None."""
    if node is None or node.op_type != op:
        return None
    return next((t for t in node.input if _other(wrapper, node, t, value)), None)


class _Pattern:
    """An ONNX graph's producers and readers, for matching patterns whose intermediates are read once."""

    def __init__(self, wrapper: Any) -> None:
        self.wrapper = wrapper
        self.outputs = {o.name for o in wrapper.graph.output}
        self.readers: dict[str, list[Any]] = {}
        self.producers: dict[str, Any] = {}
        for node in wrapper.graph.node:
            for tensor in node.input:
                self.readers.setdefault(tensor, []).append(node)
            for tensor in node.output:
                self.producers[tensor] = node

    def once(self, tensor: str) -> bool:
        """Whether `tensor` is read by one node and is no graph output (an intermediate of a pattern)."""
        return len(self.readers.get(tensor, [])) == 1 and tensor not in self.outputs

    def reader(self, tensor: str) -> Any:
        """The one node reading intermediate `tensor`, or None."""
        return self.readers[tensor][0] if tensor and self.once(tensor) else None

    def producer(self, tensor: str | None) -> Any:
        """The node computing intermediate `tensor` (read once), or None."""
        return self.producers.get(tensor) if tensor and self.once(tensor) else None


def _gelu_tail(p: _Pattern, act: Any, x: str) -> list[Any] | None:
    """[Add, Mul, Mul] after the Erf or Tanh `act`: 1 + act, then times x and times 0.5 in either order
    (torch.onnx's TorchScript export multiplies by x first, its dynamo export by 0.5 first), else None."""
    add = p.reader(act.output[0])
    if _by_constant(p.wrapper, add, 'Add', 1.0) != act.output[0]:
        return None
    first = p.reader(add.output[0])
    second = p.reader(first.output[0]) if first is not None else None
    if second is None:
        return None

    def by_x(node: Any, tensor: str) -> bool:
        return node.op_type == 'Mul' and sorted(node.input) == sorted([x, tensor])

    def by_half(node: Any, tensor: str) -> bool:
        return _by_constant(p.wrapper, node, 'Mul', 0.5) == tensor

    for a, b in ((by_x, by_half), (by_half, by_x)):
        if a(first, add.output[0]) and b(second, first.output[0]):
            return [add, first, second]
    return None


def _erf_head(p: _Pattern, erf: Any) -> tuple[str, list[Any]] | None:
    """(x, [Div or Mul]) of x / float32 sqrt 2 or x * float32 1/sqrt 2 (either order) before `erf`, else None."""
    scale = p.producer(erf.input[0])
    if scale is None:
        return None
    if scale.op_type == 'Div' and len(scale.input) == 2:
        ok = _scalar(p.wrapper, scale.input[1]) == float(np.float32(np.sqrt(2.0)))
        return (scale.input[0], [scale]) if ok else None
    x = _by_constant(p.wrapper, scale, 'Mul', float(np.float32(1 / np.sqrt(2.0))))
    return None if x is None else (x, [scale])


def _cube(p: _Pattern, tensor: str, x: str) -> list[Any] | None:
    """The nodes computing intermediate `tensor` = x^3: Pow(x, 3) or x * (x * x) (either order), else None."""
    node = p.producer(tensor)
    if node is None:
        return None
    if node.op_type == 'Pow':
        return [node] if list(node.input[:1]) == [x] and _scalar(p.wrapper, node.input[1]) == 3.0 else None
    if node.op_type != 'Mul' or len(node.input) != 2 or x not in node.input:
        return None
    square = p.producer(node.input[1 - list(node.input).index(x)])
    if square is None or square.op_type != 'Mul' or list(square.input) != [x, x]:
        return None
    return [square, node]


def _tanh_head(p: _Pattern, tanh: Any) -> tuple[str, list[Any]] | None:
    """(x, nodes) of float32 sqrt(2/pi) * (x + float32 0.044715 * x^3) before `tanh` (operands in either order)."""
    beta = p.producer(tanh.input[0])
    add = p.producer(_by_constant(p.wrapper, beta, 'Mul', TANH_BETA))
    if add is None or add.op_type != 'Add' or len(add.input) != 2:
        return None
    for x, term in (list(add.input), list(add.input)[::-1]):
        kappa = p.producer(term)
        cube = _cube(p, _by_constant(p.wrapper, kappa, 'Mul', TANH_KAPPA), x) if kappa is not None else None
        if cube is not None:
            return x, [*cube, kappa, add, beta]
    return None


#: the activation each GELU pattern is built around -> (how its input is computed from x, Gelu's `approximate`)
_GELU_HEADS = {'Erf': (_erf_head, 'none'), 'Tanh': (_tanh_head, 'tanh')}


def _gelu_nodes(p: _Pattern, act: Any) -> tuple[str, list[Any]] | None:
    """(x, every node of the pattern, the last one last) of the exported GELU around Erf/Tanh `act`, or None."""
    head = _GELU_HEADS[act.op_type][0](p, act)
    tail = None if head is None else _gelu_tail(p, act, head[0])
    return None if tail is None else (head[0], [*head[1], act, *tail])


def _erf_refused(erf: Any) -> GraphError:
    """The error for an Erf outside the GELU pattern, naming the node."""
    from .onnx import _original_name
    return GraphError(f'ONNX node {_original_name(erf) or erf.name!r} (Erf): Erf is supported only in the erf '
                      'GELU x * (1 + erf(x / sqrt(2))) * 0.5 as torch exports it (constants float32 sqrt(2) '
                      'or 1/sqrt(2), 1 and 0.5; each intermediate read once), which becomes Activation gelu')


def fuse_gelu(wrapper: Any) -> None:
    """Replace each exported erf or tanh GELU (module doc) by one Gelu node; refuse any other Erf, naming it
    (a Tanh elsewhere stays, converted node by node)."""
    from onnx import helper

    graph = wrapper.graph
    for act in [n for n in graph.node if n.op_type in _GELU_HEADS]:
        found = _gelu_nodes(_Pattern(wrapper), act)
        if found is None:
            if act.op_type == 'Erf':
                raise _erf_refused(act)
            continue
        x, nodes = found
        gelu = helper.make_node('Gelu', [x], [nodes[-1].output[0]], name=act.name,
                                approximate=_GELU_HEADS[act.op_type][1])
        gelu.metadata_props.extend(act.metadata_props)
        position = next(k for k, node in enumerate(graph.node) if node.name == nodes[-1].name)
        graph.node.insert(position, gelu)
        for node in nodes:
            graph.node.remove(node)


# --------------------------------------------------------------------------- attention (IR level)


@dataclass
class _Branch:
    """One operand of the attention core traced back to its projection: the Dense, the data-movement
    nodes from it (in order) and the scalar scales met on the way."""

    dense: Node
    chain: list[Node]
    scales: list[float]


def _float_dense(node: Node) -> bool:
    """A Dense with float weights on a (rows, features) input (no quantizer types, no quantizer scale)."""
    return node.op == 'Dense' and len(node.shape) == 2 and FIXED_PRECISION_ATTR not in node.attrs \
        and not node.qweights


def _uniform_scale(node: Node) -> float | None:
    """The factor of a Scale by one float constant with zero bias, else None."""
    scale, bias = node.weights.get('scale'), node.weights.get('bias')
    if node.op != 'Scale' or FIXED_PRECISION_ATTR in node.attrs or scale is None or node.attrs.get('quantizer_scale'):
        return None
    scale = np.asarray(scale, np.float64).reshape(-1)
    if not np.all(scale == scale[0]) or (bias is not None and np.any(np.asarray(bias) != 0)):
        return None
    return float(scale[0])


def _sole_reader(graph: Graph, name: str) -> Node | None:
    """The one node reading `name` when it is no graph output, else None."""
    users = graph.users(name)
    return users[0] if len(users) == 1 and name not in graph.outputs else None


def _branch(graph: Graph, name: str) -> _Branch | None:
    """The operand `name` traced back through moves and scalar Scales to a float Dense (nodes read elsewhere
    too stay in the graph for their other readers)."""
    chain: list[Node] = []
    scales: list[float] = []
    node = graph[name]
    while node.op in MOVES or node.op == 'Scale':
        if node.op == 'Scale':
            factor = _uniform_scale(node)
            if factor is None:
                return None
            scales.append(factor)
        chain.append(node)
        node = graph[node.inputs[0]]
    if not _float_dense(node) or len(graph[node.inputs[0]].shape) != 2:
        return None
    return _Branch(node, chain[::-1], scales)


def _positions(chain: list[Node], shape: tuple[int, ...]) -> np.ndarray:
    """Where each output element of the data-movement `chain` comes from: flat indices into its input."""
    x = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.float64).reshape((1,) + tuple(shape))
    for node in chain:
        if node.op in MOVES:
            x = np.asarray(float_node(node, [x]))
    return np.rint(x[0]).astype(np.int64)


def _columns(branch: _Branch, operand: Node, position_axis: int) -> np.ndarray | None:
    """The projection columns (heads, features) of a rank-3 operand whose `position_axis` is the sequence,
    when every element reads its own position's row and every position the same columns; else None."""
    rows, width = branch.dense.shape
    pos = _positions(branch.chain, branch.dense.shape)
    if pos.shape != operand.shape or len(pos.shape) != 3 or pos.shape[position_axis] != rows:
        return None
    own = np.arange(rows).reshape([-1 if a == position_axis else 1 for a in range(3)])
    cols = pos % width
    first = np.take(cols, [0], axis=position_axis)
    if np.any(pos // width != own) or np.any(cols != first):
        return None
    return np.squeeze(first, axis=position_axis)  # (heads, features)


def _out_branch(graph: Graph, combine: Node) -> tuple[list[Node], Node] | None:
    """The moves after the combine Einsum (each read once) and the float Dense they feed, or None."""
    chain: list[Node] = []
    node = combine
    while True:
        reader = _sole_reader(graph, node.name)
        if reader is None:
            return None
        if reader.op not in MOVES:
            return (chain, reader) if _float_dense(reader) else None
        chain.append(reader)
        node = reader


def _out_kernel(chain: list[Node], combine: Node, dense: Node) -> np.ndarray | None:
    """The output Dense's kernel as (heads, features, out) when its input is the heads merged per position."""
    heads, length, dv = combine.shape
    pos = _positions(chain, combine.shape)
    if pos.shape != (length, heads * dv):
        return None
    h, l, d = pos // (length * dv), (pos // dv) % length, pos % dv
    if np.any(l != np.arange(length)[:, None]) or np.any(h != h[:1]) or np.any(d != d[:1]):
        return None
    slot = h[0] * dv + d[0]
    if sorted(slot.tolist()) != list(range(heads * dv)):
        return None
    kernel = np.asarray(dense.weights['kernel'])
    out = np.empty((heads * dv, kernel.shape[1]), kernel.dtype)
    out[slot] = kernel
    return out.reshape(heads, dv, kernel.shape[1])


def _scores_factor(scales: list[float], head_dim: int) -> tuple[float, bool]:
    """The scores' scale (module doc) and whether it is torch's float32(D^-0.5) (then folded in float32)."""
    exported = np.sqrt(np.float32(1) / np.sqrt(np.float32(head_dim)))  # torch.onnx: Sqrt(1 / Sqrt(D)), float32
    if len(scales) == 2 and all(s == float(exported) for s in scales):
        return float(np.float32(head_dim ** -0.5)), True
    return float(np.prod(scales)) if scales else 1.0, False


@dataclass
class _Block:
    """A matched attention block: the three operands, the core nodes and the output projection."""

    q: _Branch
    k: _Branch
    v: _Branch
    cols: tuple[np.ndarray, np.ndarray, np.ndarray]
    scores: Node
    bias: Node | None
    softmax: Node
    combine: Node
    out_chain: list[Node]
    out: Node
    out_kernel: np.ndarray


def _match(graph: Graph, softmax: Node) -> _Block | None:
    """The attention block around a Softmax over the last axis, or None (module doc)."""
    if softmax.op not in ('Softmax', 'MaskedSoftmax') or len(softmax.shape) != 3 or \
            (softmax.op == 'Softmax' and softmax.attrs.get('axis', -1) not in (-1, 2)):
        return None
    scores, combine, bias = graph[softmax.inputs[0]], _sole_reader(graph, softmax.name), None
    if scores.op == 'BiasAdd':  # an attention mask's finite values
        if _sole_reader(graph, scores.name) is None:
            return None
        bias, scores = scores, graph[scores.inputs[0]]
    if scores.op != 'Einsum' or scores.attrs.get('equation') != MATMUL3 or _sole_reader(graph, scores.name) is None:
        return None
    if combine is None or combine.op != 'Einsum' or combine.attrs.get('equation') != MATMUL3 \
            or combine.inputs[0] != softmax.name:
        return None
    q, k, v = _branch(graph, scores.inputs[0]), _branch(graph, scores.inputs[1]), _branch(graph, combine.inputs[1])
    out = _out_branch(graph, combine)
    if q is None or k is None or v is None or v.scales or out is None:
        return None
    cols = (_columns(q, graph[scores.inputs[0]], 1), _columns(k, graph[scores.inputs[1]], 2),
            _columns(v, graph[combine.inputs[1]], 1))
    kernel = _out_kernel(out[0], combine, out[1])
    if any(c is None for c in cols) or kernel is None or cols[0].shape != cols[1].shape:
        return None
    return _Block(q, k, v, cols, scores, bias, softmax, combine, out[0], out[1], kernel)


def _projection(name: str, branch: _Branch, cols: np.ndarray, factor: float, in_float32: bool) -> Node:
    """The EinsumDense (L, in) -> (L, heads, features) reading `cols` of the branch's Dense, times factor."""
    dense = branch.dense
    kernel, bias = np.asarray(dense.weights['kernel'])[:, cols], np.asarray(dense.weights['bias'])[cols]
    if in_float32:  # as the torch front end: float32 weights times the float32 factor
        kernel, bias = kernel.astype(np.float32) * np.float32(factor), bias.astype(np.float32) * np.float32(factor)
    elif factor != 1.0:
        kernel, bias = kernel * factor, bias * factor
    shape = (dense.shape[0],) + cols.shape
    use_bias = bool(dense.attrs.get('use_bias', True))
    return make_node(name, 'EinsumDense', [dense.inputs[0]], shape, source=SOURCE,
                     attrs={'equation': 'bc,cde->bde', 'use_bias': use_bias},
                     weights={'kernel': kernel, 'bias': np.broadcast_to(bias, shape).copy()})


_SCOPE = re.compile(r'_MatMul(_\d+)?$')


def _fresh(graph: Graph, base: str, taken: set[str]) -> str:
    """`base`, or `base_k`, not yet a node name nor in `taken` (which gets it)."""
    name, k = base, 1
    while name in graph or name in taken:
        name, k = f'{base}_{k}', k + 1
    taken.add(name)
    return name


def _nodes(graph: Graph, block: _Block) -> list[Node]:
    """The torch front end's attention nodes for a matched block (torch_attention.attention_nodes)."""
    prefix = _SCOPE.sub('', block.scores.name) or block.scores.name
    taken: set[str] = set()
    names = {p: _fresh(graph, f'{prefix}_{p}', taken)
             for p in ('query', 'key', 'value', 'scores', 'mask', 'softmax', 'combine', 'out')}
    heads, head_dim = block.cols[0].shape
    factor, in_float32 = _scores_factor(block.q.scales + block.k.scales, head_dim)
    query = _projection(names['query'], block.q, block.cols[0], factor, in_float32)
    key = _projection(names['key'], block.k, block.cols[1], 1.0, False)
    value = _projection(names['value'], block.v, block.cols[2], 1.0, False)
    scores = (heads, query.shape[0], key.shape[0])
    combined = (query.shape[0], heads, value.shape[2])
    dense = block.out
    out_shape = dense.shape
    bias = np.broadcast_to(np.asarray(dense.weights['bias']), out_shape).copy()
    masked = [make_node(names['mask'], 'BiasAdd', [names['scores']], scores, source=SOURCE,
                        weights={'bias': np.asarray(block.bias.weights['bias'])})] if block.bias is not None else []
    softmax_attrs = ({'mask': block.softmax.attrs['mask']} if block.softmax.op == 'MaskedSoftmax'
                     else {**block.softmax.attrs, 'axis': -1})
    return [query, key, value,
            make_node(names['scores'], 'Einsum', [key.name, query.name], scores, source=SOURCE,
                      attrs={'equation': 'ecd,bcd->cbe'}),
            *masked,
            make_node(names['softmax'], block.softmax.op, [masked[0].name if masked else names['scores']], scores,
                      source=SOURCE, attrs=softmax_attrs),
            make_node(names['combine'], 'Einsum', [names['softmax'], value.name], combined, source=SOURCE,
                      attrs={'equation': 'cbe,ecd->bcd'}),
            make_node(names['out'], 'EinsumDense', [names['combine']], out_shape, source=SOURCE,
                      attrs={'equation': 'bcd,cde->be', 'use_bias': bool(dense.attrs.get('use_bias', True))},
                      weights={'kernel': block.out_kernel, 'bias': bias})]


def _replace(graph: Graph, block: _Block) -> None:
    """Insert the block's torch-style nodes before its output Dense, rewire its readers, drop the old nodes."""
    new = _nodes(graph, block)
    out, last = block.out.name, new[-1].name
    position = next(k for k, node in enumerate(graph.nodes) if node is block.out)
    graph.nodes[position:position] = new
    for reader in graph.users(out):
        reader.inputs = [last if i == out else i for i in reader.inputs]
    graph.outputs = [last if o == out else o for o in graph.outputs]
    old = [block.out, *block.out_chain[::-1], block.combine, block.softmax,
           *([block.bias] if block.bias is not None else []), block.scores]
    for branch in (block.q, block.k, block.v):
        old += branch.chain[::-1]
    old += [b.dense for b in (block.q, block.k, block.v)]
    pending = list(dict.fromkeys(n.name for n in old))
    while True:  # the branches share their first moves: drop what nothing reads until nothing changes
        unread = [name for name in pending if not graph.users(name) and name not in graph.outputs]
        if not unread:
            return
        for name in unread:
            graph.discard(name)
            pending.remove(name)


def fuse_attention(graph: Graph) -> int:
    """Rewrite every exported multi-head attention block of an ONNX-lowered graph as the torch front end
    builds it (module doc); returns how many were rewritten."""
    count = 0
    for softmax in [n for n in graph.nodes if n.op in ('Softmax', 'MaskedSoftmax')]:
        block = _match(graph, softmax) if softmax.name in graph else None
        if block is not None:
            _replace(graph, block)
            count += 1
    return count
