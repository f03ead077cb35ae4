"""ONNX / QONNX front end: lower an ONNX graph (float or QONNX-quantized) onto the IR.

Four modules: this one loads and cleans the model and holds the converter (tensor layouts, names,
constants); `onnx_ops` lowers the standard ONNX ops; `onnx_quant` maps the QONNX quantizers
(Quant, IntQuant, BipolarQuant, Trunc) onto exact fixed-point types; `onnx_attention` fuses torch's
exported erf and tanh GELUs before the walk and rewrites exported multi-head attention blocks after it
into the torch front end's nodes. onnx and qonnx are imported lazily inside the functions, so
`import fpga4ml` needs neither.

Clean-up (`clean_onnx_model`): the batch size is fixed to 1 so every shape is static, then qonnx's
shape inference, constant folding that keeps the quantizers, transposes folded into quantized
weights, unique node names. IR nodes are named after the model's own node names made identifiers
('/fc1/Gemm' -> 'fc1_Gemm'); those are also the configuration's LayerName keys.

Layout: ONNX is channels-first (NCHW), the IR is channels-last. Every ONNX tensor is available in
the IR in one or both of two layouts, created on demand: 'plain' (the ONNX per-sample order) and
'last' (channels moved last: (C, H, W) -> (H, W, C)). Conv, pooling, BatchNormalization and
per-channel constants ask for 'last'; MatMul/Gemm, Flatten, Reshape, Transpose and the graph
outputs ask for 'plain'. A layout change is one IR Transpose node (or a Reshape when it keeps
the element order, e.g. after global pooling). So a CNN's input is NCHW as in ONNX, followed by
one Transpose node, and a Flatten after the last Conv reads the ONNX C-major order through one
Transpose back. See docs/onnx.md for the op coverage and the quantizer rules. Tensors whose batch
axis is not first (the time-major sequences and states of RNN/LSTM/GRU, layout 0) are recorded in
`Converter.batch_axes` and held per sample like the others; a graph output of that kind comes out
batch first.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..config import FIXED_PRECISION_ATTR
from ..fixed import FixedType
from ..ir import Graph, GraphError
from ..semantics.spec import make_node
from .optional import import_framework

if TYPE_CHECKING:
    from .onnx_quant import QConst

PLAIN, LAST = 'plain', 'last'
#: the domains of the standard ONNX operators ('' is the default domain, 'ai.onnx' its long name)
ONNX_DOMAINS = ('', 'ai.onnx')
QONNX_DOMAINS = ('qonnx.custom_op.general', 'finn.custom_op.general', 'onnx.brevitas')
#: opset_import domains a model may declare: standard ONNX, ONNX-ML (declared by some exporters) and QONNX
OPSET_DOMAINS = ONNX_DOMAINS + ('ai.onnx.ml',) + QONNX_DOMAINS
#: qonnx annotation keys whose values qonnx reads with eval() (ModelWrapper.get_tensor_layout/_sparsity)
_EVALUATED_ANNOTATIONS = ('tensor_layout', 'tensor_sparsity')
#: QONNX quantizer op types (kept by the clean-up's constant folding)
QUANT_OPS = ('Quant', 'IntQuant', 'BipolarQuant', 'Trunc')
_ORIGINAL_NAME = 'fpga4ml.original_name'
#: an op handler adds the IR nodes of one ONNX node and records its output tensor
Handler = Callable[['Converter', 'ONode'], None]


@dataclass
class Value:
    """A dynamic ONNX tensor: its per-sample ONNX shape and the IR node holding it, per layout."""

    shape: tuple[int, ...]
    nodes: dict[str, str] = field(default_factory=dict)


@dataclass
class ONode:
    """One ONNX node with decoded attributes."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    original: str

    def where(self) -> str:
        """'ONNX node NAME (OP)' for error messages, with the model's own name (qonnx's for unnamed nodes)."""
        return f'ONNX node {self.original or self.name!r} ({self.op})'

    def check(self, known: dict[str, Any]) -> None:
        """Raise for attributes this op does not understand; `known` maps supported ones to defaults."""
        for key in self.attrs:
            if key not in known:
                raise GraphError(f'{self.where()}: attribute {key!r} is not supported; supported attributes '
                                 f'are {sorted(known) or "none"}')

    def get(self, key: str, default: Any = None) -> Any:
        """An attribute value (bytes decoded) or the default."""
        value = self.attrs.get(key, default)
        return value.decode() if isinstance(value, bytes) else value

    def require(self, key: str, allowed: tuple, default: Any, what: str = '') -> Any:
        """An attribute that must take one of `allowed` values."""
        value = self.get(key, default)
        if value not in allowed:
            raise GraphError(f'{self.where()}: attribute {key}={value!r} is not supported; supported: '
                             f'{list(allowed)}{what}')
        return value


def _original_name(node: Any) -> str:
    """A node's name before the qonnx clean-up (kept in its metadata), or ''."""
    return next((p.value for p in getattr(node, 'metadata_props', []) if p.key == _ORIGINAL_NAME), '')


def _ir_names(cleaned: list[str], originals: list[str], taken: set[str] | None = None) -> dict[str, str]:
    """IR names: the model's own names made identifiers ('/fc1/Gemm' -> 'fc1_Gemm'), else qonnx's, unique."""
    used = set(taken or ())
    out = {}
    for clean, orig in zip(cleaned, originals):
        base = re.sub(r'[^0-9A-Za-z_]+', '_', orig or '').strip('_') or clean
        if base[0].isdigit():
            base = f'n_{base}'
        name, k = base, 1
        while name in used:
            name, k = f'{base}_{k}', k + 1
        used.add(name)
        out[clean] = name
    return out


def perm_last(rank: int) -> tuple[int, ...]:
    """Per-sample permutation ONNX (C, *spatial) -> channels-last (*spatial, C)."""
    return tuple(range(1, rank)) + (0,) if rank >= 2 else tuple(range(rank))


def keeps_order(shape: tuple[int, ...], perm: tuple[int, ...]) -> bool:
    """True when transposing `shape` by `perm` keeps the flat element order (a reshape suffices)."""
    moved = [a for a in perm if shape[a] != 1]
    return moved == sorted(moved)


class Converter:
    """Builds one IR Graph from a cleaned qonnx ModelWrapper."""

    def __init__(self, wrapper: Any, handlers: dict[str, Handler], const_ops: tuple[str, ...]) -> None:
        self.model = wrapper
        self.handlers, self.const_ops = handlers, const_ops
        self.graph = Graph()
        self.values: dict[str, Value] = {}
        self.consts: dict[str, np.ndarray | QConst] = {}
        self.consumers: dict[str, list[Any]] = {}
        for node in wrapper.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = [o.name for o in wrapper.graph.output]
        inputs = [i.name for i in wrapper.graph.input]
        self.input_names = _ir_names(inputs, inputs)
        originals = [_original_name(n) for n in wrapper.graph.node]
        self.node_names = _ir_names([n.name for n in wrapper.graph.node], originals, set(self.input_names.values()))
        self.reserved = set(self.node_names.values()) | set(self.input_names.values())
        self.bias_free: set[str] = set()  # IR Dense/Conv/Scale nodes whose bias is still zero
        #: ONNX tensors holding scores with -inf added where a constant attention mask masks a key: tensor -> the
        #: keys kept (True), for the Softmax that reads them (onnx_ops._attention_mask)
        self.softmax_masks: dict[str, np.ndarray] = {}
        #: ONNX tensors whose batch axis is not axis 0 (time-major sequences, RNN states): tensor -> axis;
        #: the IR holds them per sample all the same (the batch axis removed)
        self.batch_axes: dict[str, int] = {}

    # ------------------------------------------------------------------ names, values, constants
    def fresh(self, base: str, own: bool = False) -> str:
        """A node name not used yet; ONNX names are reserved for their own nodes unless `own`."""
        used = {n.name for n in self.graph.nodes}
        if base not in used and (own or base not in self.reserved):
            return base
        k = 1
        while f'{base}_{k}' in used or f'{base}_{k}' in self.reserved:
            k += 1
        return f'{base}_{k}'

    def shape_of(self, tensor: str, where: str) -> tuple[int, ...]:
        """The per-sample shape of an ONNX tensor (batch axis removed; the batch is 1 after clean-up)."""
        shape = self.model.get_tensor_shape(tensor)
        if shape is None or any(not isinstance(d, (int, np.integer)) or d < 1 for d in shape) or len(shape) < 1:
            raise GraphError(f'{where}: tensor {tensor!r} has shape {shape} (0: a symbolic or unknown '
                             'dimension); fpga4ml needs static shapes apart from the batch axis, which comes first')
        if shape[0] != 1:
            raise GraphError(f'{where}: tensor {tensor!r} has shape {tuple(shape)}: the first axis must be the '
                             'batch axis (ops that mix the batch with other axes are not supported)')
        return tuple(int(d) for d in shape[1:])

    def const(self, tensor: str) -> np.ndarray | QConst | None:
        """The constant behind an ONNX tensor name (an initializer or a quantized constant), or None."""
        if not tensor:
            return None
        if tensor in self.consts:
            return self.consts[tensor]
        init = self.model.get_initializer(tensor)
        return None if init is None else np.asarray(init)

    def value(self, tensor: str, onode: ONode) -> Value:
        """The dynamic tensor `tensor` (GraphError if it is a constant where a tensor is needed)."""
        if tensor in self.batch_axes:
            raise GraphError(f'{onode.where()}: input {tensor!r} holds the batch on axis {self.batch_axes[tensor]}; '
                             f'{onode.op} reads only tensors with the batch first (Transpose, Squeeze, Unsqueeze, '
                             'Reshape, Concat, Gather, Slice, RNN/LSTM/GRU, element-wise ops, LayerNormalization '
                             'and MatMul/Gemm with constant weights read the others)')
        if tensor in self.values:
            return self.values[tensor]
        if self.const(tensor) is not None:
            raise GraphError(f'{onode.where()}: input {tensor!r} is a constant; {onode.op} is supported only '
                             'with a dynamic (data-dependent) tensor in this position')
        raise GraphError(f'{onode.where()}: input {tensor!r} is not produced by any earlier node')

    def get(self, value: Value, layout: str) -> str:
        """The IR node holding `value` in `layout`, adding a Transpose (or Reshape) node if needed."""
        if len(value.shape) < 2:
            layout = PLAIN
            return value.nodes.get(PLAIN) or value.nodes[LAST]
        if layout in value.nodes:
            return value.nodes[layout]
        src_layout = LAST if layout == PLAIN else PLAIN
        src = value.nodes[src_layout]
        perm = perm_last(len(value.shape))
        if layout == PLAIN:
            perm = tuple(int(i) for i in np.argsort(perm))
        in_shape = self.graph[src].shape
        out_shape = tuple(in_shape[a] for a in perm)
        name = self.fresh(f'{src}_to_{"channels_last" if layout == LAST else "channels_first"}')
        if keeps_order(in_shape, perm):
            node = make_node(name, 'Reshape', [src], out_shape, attrs={'shape': out_shape}, source='Transpose')
        else:
            node = make_node(name, 'Transpose', [src], out_shape, attrs={'perm': perm}, source='Transpose')
        self.graph.add(node)
        value.nodes[layout] = name
        return name

    def put(self, tensor: str, shape: tuple[int, ...], layout: str, ir_name: str) -> None:
        """Record that IR node `ir_name` holds ONNX tensor `tensor` (per-sample ONNX `shape`) in `layout`."""
        if len(shape) < 2:
            layout = PLAIN
        expected = shape if layout == PLAIN else tuple(shape[a] for a in perm_last(len(shape)))
        if self.graph[ir_name].shape != expected:
            raise GraphError(f'IR node {ir_name!r} has shape {self.graph[ir_name].shape} but ONNX tensor '
                             f'{tensor!r} has per-sample shape {shape} ({layout} layout expects {expected})')
        self.values[tensor] = Value(shape, {layout: ir_name})

    def alias(self, tensor: str, value: Value) -> None:
        """Let ONNX tensor `tensor` be the same values as `value` (identity ops)."""
        self.values[tensor] = value

    def preferred(self, value: Value) -> str:
        """The layout element-wise ops keep: channels-last when it exists (inside CNNs), else plain."""
        return LAST if LAST in value.nodes and len(value.shape) >= 2 else PLAIN

    def add(self, onode: ONode, op: str, inputs: list[str], shape: tuple[int, ...], name: str | None = None,
            fixed: dict[str, FixedType] | None = None, **kwargs: Any) -> str:
        """Add an IR node for an ONNX node (named after it unless `name` is given); returns its name."""
        name = name or self.fresh(self.base(onode), own=True)
        node = make_node(name, op, inputs, shape, source=onode.op, **kwargs)
        if fixed:
            node.attrs[FIXED_PRECISION_ATTR] = dict(fixed)
        self.graph.add(node)
        return name

    def base(self, onode: ONode) -> str:
        """The IR name of an ONNX node (its own name made an identifier); extra nodes append to it."""
        return self.node_names.get(onode.name, onode.name)

    def single_consumer(self, tensor: str) -> bool:
        """True when exactly one ONNX node reads `tensor` and it is not a graph output."""
        return len(self.consumers.get(tensor, [])) == 1 and tensor not in self.outputs

    # ------------------------------------------------------------------ the walk
    def run(self) -> Graph:
        """Convert the whole graph and validate it."""
        from onnx import helper

        for inp in self.model.graph.input:
            if self.model.get_initializer(inp.name) is not None:
                continue
            shape = self.shape_of(inp.name, f'graph input {inp.name!r}')
            name = self.input_names[inp.name]
            self.graph.add(make_node(name, 'Input', [], shape, source='Input'))
            self.graph.inputs.append(name)
            self.values[inp.name] = Value(shape, {PLAIN: name})
        for node in self.model.graph.node:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            onode = ONode(node.name, node.op_type, list(node.input), list(node.output), attrs, _original_name(node))
            self.convert(onode, node.domain)
        for out in self.outputs:
            if out not in self.values:
                raise GraphError(f'graph output {out!r} is a constant or is not computed; fpga4ml needs outputs '
                                 'that depend on the inputs')
            self.graph.outputs.append(self.get(self.values[out], PLAIN))
        self.graph.validate()
        return self.graph

    def convert(self, onode: ONode, domain: str) -> None:
        """Lower one ONNX node."""
        if domain not in ONNX_DOMAINS and not (domain in QONNX_DOMAINS and onode.op in QUANT_OPS):
            raise GraphError(f'{onode.where()}: op {onode.op!r} of domain {domain!r} is not supported; '
                             f'supported ops: {", ".join(sorted(self.handlers))}')
        handler = self.handlers.get(onode.op)
        if handler is None:
            raise GraphError(f'{onode.where()}: op {onode.op!r} is not supported; supported ops: '
                             f'{", ".join(sorted(self.handlers))}')
        for extra in onode.outputs[1:] if not getattr(handler, 'several_outputs', False) else ():
            if extra and (extra in self.consumers or extra in self.outputs):
                raise GraphError(f'{onode.where()}: output {extra!r} is used; only the first output of '
                                 f'{onode.op} is supported')
        if onode.inputs and all(i == '' or self.const(i) is not None for i in onode.inputs) \
                and onode.op not in QUANT_OPS and onode.op not in self.const_ops:
            raise GraphError(f'{onode.where()}: all inputs are constants; fold constants before converting '
                             '(onnx-simplifier or qonnx FoldConstants)')
        handler(self, onode)


# --------------------------------------------------------------------------- loading and clean-up


def _import_onnx() -> Any:
    """Import onnx (and check qonnx), or explain how to install them (an optional extra)."""
    return import_framework('ONNX', 'onnx', 'onnx', 'qonnx')


def _read_onnx_file(path: Path) -> Any:
    """Parse an .onnx file; a missing, empty or corrupt file raises one line naming it."""
    onnx = _import_onnx()
    if not path.is_file():
        what = 'is a directory, not a model file' if path.is_dir() else 'does not exist'
        raise FileNotFoundError(f'ONNX model file {str(path)!r} {what}')
    if path.stat().st_size == 0:
        raise GraphError(f'ONNX model file {str(path)!r} is empty')
    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf's DecodeError, onnx's external-data errors: all mean a bad file
        raise GraphError(f'ONNX model file {str(path)!r} is not a readable ONNX model (corrupt or truncated?): '
                         f'{type(err).__name__}: {err}') from None
    _check_has_graph(model, f'ONNX model file {str(path)!r}')
    return model


def load_onnx_model(model_or_path: Any) -> Any:
    """An onnx.ModelProto from a path (.onnx), a ModelProto or a qonnx ModelWrapper (copied)."""
    if isinstance(model_or_path, (str, os.PathLike)):
        return _read_onnx_file(Path(model_or_path))
    onnx = _import_onnx()
    proto = getattr(model_or_path, 'model', model_or_path)  # a qonnx ModelWrapper holds .model
    if not isinstance(proto, onnx.ModelProto):
        raise ValueError(f'expected an onnx.ModelProto, a qonnx ModelWrapper or a path to an .onnx file, '
                         f'got {type(model_or_path).__name__}')
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    _check_has_graph(copy, 'the ONNX model')
    return copy


def _check_has_graph(model: Any, source: str) -> None:
    """Raise when a parsed model holds no graph (an empty or foreign protobuf file parses as one)."""
    if not model.graph.node or not model.opset_import:
        raise GraphError(f'{source} has {len(model.graph.node)} nodes and {len(model.opset_import)} opset imports: '
                         'it holds no ONNX graph (is it an ONNX model?)')


# --------------------------------------------------------------------------- domains (security)
# qonnx treats a node domain as the name of a Python module and imports it (`is_custom_op`), so a
# node of domain 'evil_ops' would run evil_ops.py from the working directory or sys.path during the
# clean-up. Every domain is checked against the ones we convert before qonnx sees the model.


def _graph_nodes(graph: Any, where: str = '') -> Any:
    """(node, label, where) for every node of `graph` and, recursively, of its subgraphs (If/Loop/Scan)."""
    for k, node in enumerate(graph.node):
        label = node.name or f'#{k}'
        yield node, label, where
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField('g') else []) + list(attr.graphs):
                yield from _graph_nodes(sub, f'{where}subgraph {attr.name!r} of ONNX node {label!r}: ')


def _all_nodes(model: Any) -> Any:
    """(node, label, where) for the nodes of the main graph, its subgraphs and the model-local functions."""
    yield from _graph_nodes(model.graph)
    for func in model.functions:
        yield from _graph_nodes(func, f'model-local function {func.domain}.{func.name}: ')


def _accepted_domains() -> str:
    """The accepted node domains, for error messages."""
    quoted = ', '.join(repr(d) for d in QONNX_DOMAINS)
    return (f"standard ONNX ops in domain '' or 'ai.onnx', and the QONNX quantizers ({', '.join(QUANT_OPS)}) "
            f'in {quoted}')


def check_domains(model: Any) -> None:
    """Raise naming the node, its op type and its domain if any domain is not one fpga4ml converts.

    Called before any qonnx or onnxruntime code sees the model: qonnx imports the module named by
    a custom domain. Node domains in subgraphs and model-local functions, and the opset_import
    domains of the model and its functions, are checked too.
    """
    for node, label, where in _all_nodes(model):
        if node.domain in ONNX_DOMAINS or (node.domain in QONNX_DOMAINS and node.op_type in QUANT_OPS):
            continue
        why = ('only its quantizers are converted' if node.domain in QONNX_DOMAINS else
               'which is refused (qonnx would import a Python module of that name)')
        raise GraphError(f'{where}ONNX node {label!r} ({node.op_type}) has domain {node.domain!r}, {why}; '
                         f'accepted: {_accepted_domains()}')
    for owner, opsets in [('the model', model.opset_import)] + \
            [(f'model-local function {f.domain}.{f.name}', f.opset_import) for f in model.functions]:
        for opset in opsets:
            if opset.domain not in OPSET_DOMAINS:
                raise GraphError(f'{owner} imports the opset of domain {opset.domain!r} (opset_import), which is '
                                 f'refused; accepted domains: {", ".join(repr(d) for d in OPSET_DOMAINS)}')


def _normalize_for_qonnx(model: Any) -> None:
    """Spell domains the way qonnx handles without importing anything outside qonnx; drop eval'd annotations.

    'ai.onnx' becomes '' (qonnx would import a top-level module 'ai'); the QONNX quantizer domains
    become 'qonnx.custom_op.general'. qonnx reads the tensor_layout/tensor_sparsity annotations with
    eval(); fpga4ml does not use them, so they are removed from our copy.
    """
    for node, _, _ in _all_nodes(model):
        if node.domain == 'ai.onnx':
            node.domain = ''
        elif node.domain in QONNX_DOMAINS:
            node.domain = QONNX_DOMAINS[0]
    for annotation in model.graph.quantization_annotation:
        kept = [p for p in annotation.quant_parameter_tensor_names if p.key not in _EVALUATED_ANNOTATIONS]
        del annotation.quant_parameter_tensor_names[:]
        annotation.quant_parameter_tensor_names.extend(kept)


def clean_onnx_model(model: Any) -> Any:
    """qonnx clean-up with batch size 1 (static shapes); returns a ModelWrapper.

    The steps of qonnx's cleanup_model (shape inference, constant folding that keeps quantizers,
    transposes folded into quantized weights, unused tensors removed, unique node names), without
    its tensor renaming (which misses a tensor used twice by one node). The model's own node names
    are kept in each node's metadata: IR names and error messages use them. Domains are checked
    first (`check_domains`).
    """
    model = load_onnx_model(model)  # a copy (and a clear message when onnx/qonnx are missing)
    check_domains(model)
    _normalize_for_qonnx(model)
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (GiveUniqueNodeNames, GiveUniqueParameterTensors,
                                              RemoveStaticGraphInputs, RemoveUnusedTensors)
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

    for node in model.graph.node:
        if node.name and hasattr(node, 'metadata_props'):
            prop = node.metadata_props.add()
            prop.key, prop.value = _ORIGINAL_NAME, node.name
    inits = {i.name for i in model.graph.initializer}
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.name in inits or not vi.type.tensor_type.HasField('shape') or not vi.type.tensor_type.shape.dim:
            continue
        vi.type.tensor_type.shape.dim[0].dim_value = 1  # the batch axis (clears a symbolic dim_param)
    del model.graph.value_info[:]
    steps = [InferShapes(), GiveUniqueParameterTensors(), FoldConstants(exclude_op_types=list(QUANT_OPS)),
             FoldTransposeIntoQuantInit(), RemoveUnusedTensors(), RemoveStaticGraphInputs(), GiveUniqueNodeNames()]
    wrapper = ModelWrapper(model)
    try:
        for step in steps:
            wrapper = wrapper.transform(step)
    except Exception as err:  # qonnx raises assorted errors on malformed graphs
        raise GraphError(f'qonnx clean-up of the ONNX model failed: {type(err).__name__}: {err}') from err
    return wrapper


def onnx_to_graph(model: Any) -> Graph:
    """Convert an ONNX/QONNX model (path, ModelProto or ModelWrapper) to an IR Graph (GELU and attention fused)."""
    from .onnx_attention import fuse_attention, fuse_gelu
    from .onnx_ops import CONST_OPS, HANDLERS

    wrapper = clean_onnx_model(model)
    fuse_gelu(wrapper)
    graph = Converter(wrapper, HANDLERS, CONST_OPS).run()
    if fuse_attention(graph):
        graph.validate()
    return graph
