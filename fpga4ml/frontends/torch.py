"""PyTorch front end: trace an `nn.Module` with torch.fx and lower it onto the channels-last IR.

torch is imported lazily inside the functions, so that `import fpga4ml` needs only numpy. The module
is never pickled or copied: parameters are read with ``.detach().cpu().numpy()`` as float32. To learn
every tensor's shape and to fold constants, the traced graph is run twice on zero inputs (batch sizes
1 and 2) in eval mode without gradients; the modules' training flags are restored afterwards.

Conventions (one IR node per fx node that computes a tensor from the model inputs):

* Names are torch.fx's, as in hls4ml: a module's path with '.' replaced by '_' (``features.0`` ->
  ``features_0``), calls by their function or method name (``relu``, ``relu_1``, ``add``, ``view``),
  inputs by the argument names of ``forward``. ``source`` is the torch class name (``Linear``,
  ``Conv2d``; a functional form takes its module's class, ``F.relu`` -> ``ReLU``); hls4ml's class
  names for LayerType configuration (``Conv2D``, ``BatchNormalization``, ...) go to
  ``attrs['type_aliases']``.
* Layouts: torch is channels-first ((C, W) or (C, H, W) per sample), the IR channels-last. Every
  tensor lives in the IR either as torch has it or channels-last (torch's axis 0 moved last). A
  ``Transpose`` node ``transpose_input_for_<consumer>`` (``transpose_input_for_<input>`` for a model
  input) is inserted only where an op needs the other layout: Conv, pooling and BatchNorm over
  channels need channels-last; Linear, Flatten/view/reshape/squeeze/unsqueeze need torch's layout;
  softmax and cat use whichever layout puts their axis where the IR needs it; element-wise ops keep
  their input's layout. A flattening Reshape that reads a Transpose and feeds only a Dense reads the
  Transpose's input instead, and the Dense's kernel rows are permuted to match (exact; hls4ml does the
  same for io_parallel); the Transpose goes if nothing else reads it.
* ``channels_last_conversion``: 'full' takes (C, W)/(C, H, W) inputs as torch does; 'internal' and
  'off' take them channels-last (the IR is always channels-last, so layers are converted either
  way). ``transpose_outputs`` transposes channels-last outputs back (``transpose_output_for_<name>``).
* What each layer becomes (torch_layers.py): Linear -> Dense; Conv1d/Conv2d -> Conv (kernel
  (kh, kw, C_in/groups, C_out)); BatchNorm1d/2d -> Scale with the raw statistics in ``attrs['bn']``
  (bn_fuse folds it into a Dense/Conv before it); activations -> Activation/Softmax; pooling -> Pool;
  add/sub/mul/maximum/minimum of two tensors -> Merge, with a constant (a number or one value per
  channel) -> Scale; cat -> Merge concat; Flatten/view/reshape/squeeze/unsqueeze -> Reshape; zero
  padding -> Pad; nearest upsampling -> Resize; Dropout, Identity and contiguous() -> no node;
  nn.RNN/LSTM/GRU -> SimpleRNN/LSTM/GRU nodes, their tuples, ``getitem``, indexing of the first
  per-sample axis and transposes that move the batch axis (torch_rnn.py, ``lower_recurrent``);
  nn.LayerNorm, nn.MultiheadAttention, nn.TransformerEncoderLayer, torch.einsum and
  F.scaled_dot_product_attention -> LayerNorm/EinsumDense/Einsum/Softmax nodes in torch's layout
  (torch_attention.py, ``lower_attention``; docs/transformers.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import ConfigError
from ..ir import Graph, GraphError, Node
from ..semantics.spec import make_node
from .optional import import_framework
from .torch_layers import (
    METHODS, MODULE_HANDLERS, SUPPORTED_METHODS, SUPPORTED_MODULES, Call, Value, bind, cf_perm, cl_perm,
    function_table, functional_module, handler_for, qualified_name, spatial, supported_functions,
)
from .torch_attention import ATTENTION_FUNCTIONS, ATTENTION_MODULES, ATTENTION_WEIGHTS, lower_attention
from .torch_rnn import RNN_MODULES, lower_recurrent

CHANNELS_LAST_MODES = ('full', 'internal', 'off')
#: batch sizes of the two shape-probing runs: the batch axis must stay first and be the only change
PROBE_BATCHES = (1, 2)


# --------------------------------------------------------------------------- input shapes


def normalize_input_shapes(input_shape: Any) -> list[tuple[int, ...]]:
    """hls4ml's InputShape: a tuple (one input) or a list of tuples, each with or without a leading None batch."""
    def is_dims(v: Any) -> bool:
        return isinstance(v, (tuple, list)) and all(d is None or isinstance(d, (int, np.integer)) for d in v)

    if is_dims(input_shape):
        shapes = [input_shape]
    elif isinstance(input_shape, (tuple, list)) and input_shape and all(is_dims(s) for s in input_shape):
        shapes = list(input_shape)
    else:
        raise ConfigError(f'input_shape must be a tuple such as (16,) or (3, 32, 32) (one input) or a list of '
                          f'tuples (several inputs), without the batch axis or with None for it; got {input_shape!r}')
    out = []
    for shape in shapes:
        dims = list(shape)[1:] if len(shape) and shape[0] is None else list(shape)
        if not dims or any(d is None or int(d) < 1 for d in dims):
            raise ConfigError(f'input_shape {tuple(shape)}: every per-sample dimension must be a positive '
                              'integer (only a leading batch axis may be None)')
        out.append(tuple(int(d) for d in dims))
    return out


# --------------------------------------------------------------------------- tracing and probing


def _import_torch() -> Any:
    """Import torch, or explain how to install it (it is an optional dependency of fpga4ml)."""
    return import_framework('PyTorch', 'torch', 'torch', 'torch.fx')


def _tracer() -> Any:
    """A torch.fx tracer that keeps torch.nn modules (except containers) as call_module nodes."""
    torch = _import_torch()

    class LeafTracer(torch.fx.Tracer):
        def is_leaf_module(self, m: Any, qualified_name: str) -> bool:
            containers = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)
            return type(m).__module__.startswith('torch.nn') and not isinstance(m, containers)

    return LeafTracer()


def _label(node: Any, gm: Any) -> str:
    """'node NAME (what it calls)' for error messages."""
    if node.op == 'call_module':
        return f'node {node.name!r} (module {node.target!r} of type {type(gm.get_submodule(node.target)).__name__})'
    if node.op == 'call_method':
        return f'node {node.name!r} (method Tensor.{node.target})'
    if node.op == 'call_function':
        return f'node {node.name!r} (function {qualified_name(node.target)})'
    return f'node {node.name!r} ({node.op} {node.target!r})'


def _probe(gm: Any, shapes: list[tuple[int, ...]], batch: int) -> dict[str, Any]:
    """Run the traced graph on zeros of the given per-sample shapes; every fx node's value by name."""
    torch = _import_torch()
    param = next((p for p in gm.parameters() if p.is_floating_point()), None)
    dtype, device = (param.dtype, param.device) if param is not None else (torch.float32, 'cpu')

    interpreter = torch.fx.Interpreter(gm, garbage_collect_values=False)
    interpreter.env = {}
    interpreter.args_iter = iter([torch.zeros((batch,) + s, dtype=dtype, device=device) for s in shapes])
    with torch.no_grad():
        for n in gm.graph.nodes:
            if n.op == 'output':
                break
            try:
                interpreter.env[n] = interpreter.run_node(n)
            except Exception as err:  # noqa: BLE001 - reported with the node that failed
                raise GraphError(f'{_label(n, gm)} fails on inputs of per-sample shapes {shapes} '
                                 f'(batch {batch}): {err}') from err
    return {n.name: v for n, v in interpreter.env.items()}


def _rooted(model: Any) -> Any:
    """A bare nn.RNN/LSTM/GRU wrapped in a module that calls it (torch.fx cannot trace its forward);
    the module becomes the node named after its class in lower case ('lstm'). Other models as they are."""
    torch = _import_torch()
    cls = type(model).__name__
    if cls not in RNN_MODULES or type(model) is not getattr(torch.nn, cls, None):
        return model
    attr = cls.lower()

    class Root(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            setattr(self, attr, model)

        def forward(self, x: Any) -> Any:
            return getattr(self, attr)(x)

    return Root()


def _trace(model: Any, shapes: list[tuple[int, ...]]) -> tuple[Any, list[dict[str, Any]]]:
    """Trace `model` in eval mode and probe it; returns the GraphModule and the values of both probes."""
    torch = _import_torch()
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f'expected a torch.nn.Module, got {type(model).__name__}')
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]  # restored should a forward() update them
    model.eval()
    try:
        try:
            graph = _tracer().trace(model)
        except Exception as err:  # noqa: BLE001 - torch.fx's own message says what it could not trace
            raise GraphError(f'torch.fx cannot trace {type(model).__name__}: {err}. fpga4ml needs a forward() '
                             'without data-dependent control flow') from err
        gm = torch.fx.GraphModule(model, graph)
        gm.graph.eliminate_dead_code()
        placeholders = [n for n in gm.graph.nodes if n.op == 'placeholder']
        if len(placeholders) != len(shapes):
            raise GraphError(f'{type(model).__name__}.forward takes {len(placeholders)} inputs '
                             f'{[n.name for n in placeholders]} but input_shape gives {len(shapes)} shapes {shapes}')
        probes = [_probe(gm, shapes, b) for b in PROBE_BATCHES]
    finally:
        for m, training in modes:
            m.training = training
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
    return gm, probes


# --------------------------------------------------------------------------- the converter


class Converter:
    """Lowers one traced and probed GraphModule to a Graph."""

    def __init__(self, gm: Any, probes: list[dict[str, Any]], shapes: list[tuple[int, ...]], mode: str,
                 transpose_outputs: bool) -> None:
        self.gm = gm
        self.probes = probes
        self.shapes = shapes
        self.mode = mode
        self.transpose_outputs = transpose_outputs
        self.graph = Graph()
        self.values: dict[str, Value] = {}  # fx name -> tensor computed from the inputs
        self.consts: dict[str, Any] = {}    # fx name -> constant (numbers, sizes, parameters)
        self.tainted: set[str] = set()      # fx names that depend on a model input
        self.relayouts: dict[tuple[str, bool], str] = {}
        self.reserved = {n.name for n in gm.graph.nodes}
        self.tuples: dict[str, Any] = {}     # fx name -> an RNN module's outputs: nested tuples of (Value, batch 2nd)
        self.batch_second: set[str] = set()  # fx names of tensors torch holds with the batch on axis 1
        self.zeros: set[str] = set()         # fx names of torch.zeros initial states (batch-dependent shape)

    # ---- helpers for handlers
    def fresh(self, base: str) -> str:
        """A node name used neither in the graph nor by the fx graph."""
        name, k = base, 0
        while name in self.graph or name in self.reserved:
            k += 1
            name = f'{base}_{k}'
        return name

    def add(self, c: Call, op: str, inputs: list[str], cl: bool, attrs: dict[str, Any] | None = None,
            weights: dict[str, np.ndarray] | None = None, alias: str | None = None, source: str | None = None) -> Node:
        """Add the node of call `c` (its output in layout `cl`) and record it as the fx node's value."""
        cl = cl and spatial(c.out)
        value = Value(c.name, c.out, cl)
        attrs = dict(attrs or {})
        if alias:
            attrs['type_aliases'] = (alias,)
        node = make_node(c.name, op, inputs, value.ir_shape, attrs=attrs, weights=dict(weights or {}),
                    source=source or c.cls)
        self.graph.add(node)
        self.values[c.name] = value
        return node

    def layout(self, v: Value, cl: bool, consumer: str, for_reshape: bool = False, name: str | None = None) -> str:
        """The IR node holding `v` channels-last (cl) or as torch has it; adds a Transpose when needed.

        For a Reshape consumer (`for_reshape`) a permutation that keeps the element order is skipped.
        """
        cl = cl and spatial(v.shape)
        if v.cl == cl:
            return v.name
        key = (v.name, cl)
        if key in self.relayouts:
            if name is not None:  # an output: the shared node takes the output's name
                self.rename(self.relayouts[key], self.fresh(name))
            return self.relayouts[key]
        rank = len(v.shape)
        perm = cl_perm(rank) if cl else cf_perm(rank)
        in_shape = v.ir_shape
        out_shape = tuple(in_shape[p] for p in perm)
        moved = [p for p in perm if in_shape[p] != 1]
        keeps_order = moved == sorted(moved)
        if keeps_order and for_reshape:
            return v.name
        if name is None:
            is_input = self.graph[v.name].op == 'Input'
            name = f'transpose_input_for_{v.name if is_input else consumer}'
        name = self.fresh(name)
        if keeps_order:  # only axes of size 1 move: a Reshape, no data movement
            node = make_node(name, 'Reshape', [v.name], out_shape, attrs={'shape': out_shape}, source='Transpose')
        else:
            node = make_node(name, 'Transpose', [v.name], out_shape, attrs={'perm': perm}, source='Transpose')
        self.graph.add(node)
        self.relayouts[key] = name
        return name

    def rename(self, old: str, new: str) -> None:
        """Rename node `old` (an inserted Transpose) and rewire its consumers."""
        for consumer in self.graph.consumers(old):
            consumer.inputs = [new if i == old else i for i in consumer.inputs]
        self.graph[old].name = new
        self.relayouts = {k: new if v == old else v for k, v in self.relayouts.items()}

    def tensor_or_none(self, arg: Any) -> Value | None:
        """The Value of an fx node argument computed from the inputs, or None for a constant."""
        if hasattr(arg, 'op') and hasattr(arg, 'name'):
            return self.values.get(arg.name)
        return None

    def const(self, arg: Any, where: str) -> Any:
        """An argument's constant value (fx nodes resolved to their probed values)."""
        from torch.fx.node import map_arg

        def resolve(n: Any) -> Any:
            if n.name in self.values:
                raise GraphError(f'{where}: argument {n.name!r} is a tensor computed from the model inputs; '
                                 'a constant is expected here')
            value = self.consts.get(n.name, _BATCH_DEPENDENT)
            if value is _BATCH_DEPENDENT:
                raise GraphError(f'{where}: argument {n.name!r} depends on the batch size; only constants '
                                 'are supported here')
            return value
        return map_arg(arg, resolve)

    # ---- the walk
    def run(self) -> Graph:
        """Convert every fx node, then the outputs; validate and fold flatten transposes."""
        placeholders = [n for n in self.gm.graph.nodes if n.op == 'placeholder']
        for n, shape in zip(placeholders, self.shapes):
            self.add_input(n, shape)
        self.graph.inputs = [n.name for n in placeholders]
        for n in self.gm.graph.nodes:
            if n.op in ('placeholder', 'output'):
                continue
            self.convert(n)
        output = next(n for n in self.gm.graph.nodes if n.op == 'output')
        self.graph.outputs = self.outputs(output)
        discard_unread(self.graph)
        self.graph.validate()
        fold_flatten_transposes(self.graph)
        return self.graph

    def add_input(self, n: Any, shape: tuple[int, ...]) -> None:
        """An Input node; channels-last for 'internal'/'off' (the user transposes the data)."""
        cl = self.mode != 'full' and spatial(shape)
        value = Value(n.name, shape, cl)
        self.graph.add(make_node(n.name, 'Input', [], value.ir_shape, source='InputLayer'))
        self.values[n.name] = value
        self.tainted.add(n.name)

    def convert(self, n: Any) -> None:
        """Classify one fx node (constant or model tensor) and lower the model tensors."""
        import torch

        first, second = (p[n.name] for p in self.probes)
        tainted = any(a.name in self.tainted for a in n.all_input_nodes)
        where = _label(n, self.gm)
        if not tainted:  # parameters and what torch computed from them alone
            self.consts[n.name] = first
            return
        self.tainted.add(n.name)
        if lower_attention(self, n, where):  # LayerNorm, attention, encoder layers, einsum, SDPA
            return
        if lower_recurrent(self, n, first, second, PROBE_BATCHES, where):  # RNNs, their tuples, indexing
            return
        held = [a.name for a in n.all_input_nodes if a.name in self.batch_second | self.zeros or a.name in self.tuples]
        if held:
            raise GraphError(f'{where}: reads {held}, an RNN module\'s tuple or a tensor with the batch on axis 1; '
                             'such values are read only by getitem/indexing of the first axis, transpose(0, 1) or '
                             'permute(1, 0, ...) moving the batch back first, or an RNN module')
        if not isinstance(first, torch.Tensor):
            if _is_plain(first):  # sizes and numbers derived from shapes (x.size(1), x.shape)
                self.consts[n.name] = first if _same(first, second) else _BATCH_DEPENDENT
                return
            module = self.gm.get_submodule(n.target) if n.op == 'call_module' else None
            if getattr(module, 'return_indices', False) or n.kwargs.get('return_indices'):
                raise GraphError(f'{where}: return_indices=True is not supported')
            raise GraphError(f'{where} returns {type(first).__name__}, not a tensor; it is not supported. '
                             + _supported_text())
        call = self.resolve(n, where)  # unsupported ops are reported first
        batch_ok = (first.dim() >= 2 and second.dim() == first.dim() and first.shape[0] == PROBE_BATCHES[0]
                    and second.shape[0] == PROBE_BATCHES[1] and first.shape[1:] == second.shape[1:])
        if not batch_ok:
            raise GraphError(f'{where}: its output shape depends on the batch size ({tuple(first.shape)} for batch '
                             f'{PROBE_BATCHES[0]}, {tuple(second.shape)} for batch {PROBE_BATCHES[1]}); the batch '
                             'axis must stay first and untouched (e.g. x.view(x.size(0), -1), torch.flatten(x, 1), '
                             'squeeze/unsqueeze with a dim >= 1), and every sample needs at least one axis')
        call.out = tuple(int(d) for d in first.shape[1:])
        self.values[n.name] = call.handler(self, call)

    def resolve(self, n: Any, where: str) -> Call:
        """The Call of a call_module/call_function/call_method node (GraphError if unsupported)."""
        import torch

        if n.op == 'call_module':
            m = self.gm.get_submodule(n.target)
            cls = type(m).__name__
            if cls not in MODULE_HANDLERS or type(m) is not getattr(torch.nn, cls, None):
                raise GraphError(f'{where} is not supported. {_supported_text()}')
            if len(n.args) != 1 or n.kwargs:
                raise GraphError(f'{where}: expected one tensor argument, got {len(n.args)} and {dict(n.kwargs)}')
            x = self.tensor_or_none(n.args[0])
            if x is None:
                raise GraphError(f'{where}: its input is not a tensor computed from the model inputs')
            return Call(n, cls, m, {}, x, (), where, handler_for(cls))
        if n.op == 'call_function':
            fn = function_table().get(n.target)
        elif n.op == 'call_method':
            fn = METHODS.get(n.target)
        else:
            fn = None
        if fn is None:
            raise GraphError(f'{where} is not supported. {_supported_text()}')
        args = bind(n, fn, where)
        x = self.tensor_or_none(args.get('input'))
        if fn.unary and x is None:
            raise GraphError(f'{where}: its input is not a tensor computed from the model inputs')
        if fn.handler is None:
            values = {k: self.const(v, where) for k, v in args.items() if k != 'input'}
            return Call(n, fn.cls, functional_module(fn, values, where), args, x, (), where, handler_for(fn.cls))
        return Call(n, fn.cls, None, args, x, (), where, fn.handler)

    def _leaves(self, n: Any) -> list[Any]:
        """An output fx node, or for an RNN module's tuple the IR values of its leaves (as stand-in nodes)."""
        if n.name not in self.tuples:
            return [n]
        if any(part is ATTENTION_WEIGHTS for part in self.tuples[n.name]):
            raise GraphError(f'the model returns {n.name!r}, a MultiheadAttention\'s (output, weights) tuple; the '
                             'attention weights are not supported: return its output ([0]) only')
        leaves: list[Any] = []

        def walk(item: Any) -> None:
            if isinstance(item[0], Value):
                leaves.append(_Named(item[0].name))
                self.values.setdefault(item[0].name, item[0])
            else:
                for part in item:
                    walk(part)
        walk(self.tuples[n.name])
        return leaves

    def outputs(self, output: Any) -> list[str]:
        """IR names of the model outputs (channels-last ones transposed back if transpose_outputs)."""
        from torch.fx.node import map_arg

        found: list[Any] = []
        map_arg(output.args[0], found.append)
        found = [leaf for n in found for leaf in self._leaves(n)]
        names = []
        for n in found:
            value = self.values.get(n.name)
            if value is None:
                raise GraphError(f'output {n.name!r} is a constant, not computed from the model inputs')
            if self.transpose_outputs and value.cl:
                names.append(self.layout(value, False, n.name, name=f'transpose_output_for_{n.name}'))
            else:
                names.append(value.name)
        if len(set(names)) != len(names):
            raise GraphError(f'the model returns the same tensor twice ({names}); return it once')
        if not names:
            raise GraphError('the model returns no tensor')
        return names


_BATCH_DEPENDENT = object()


class _Named:
    """A stand-in for an fx node that has only a name (the leaves of an RNN module's output tuple)."""

    def __init__(self, name: str) -> None:
        self.name = name


def discard_unread(graph: Graph) -> Graph:
    """Remove the nodes nothing reads that are no graph output (the unused outputs of an RNN module)."""
    changed = True
    while changed:
        changed = False
        for node in list(reversed(graph.nodes)):
            if node.op != 'Input' and node.name not in graph.outputs and not graph.users(node.name):
                graph.discard(node.name)
                changed = True
    return graph


def _is_plain(value: Any) -> bool:
    """Numbers, strings, None and (nested) tuples/lists of them, e.g. torch.Size."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (tuple, list)) and all(_is_plain(v) for v in value)


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type (the two probes agree on a constant)."""
    return type(a) is type(b) and a == b


def _supported_text() -> str:
    """The supported modules, functions and methods, for error messages."""
    modules = sorted(SUPPORTED_MODULES + tuple(RNN_MODULES) + ATTENTION_MODULES)
    functions = sorted(supported_functions() + list(ATTENTION_FUNCTIONS))
    return (f'Supported modules: {", ".join(modules)}; functions: {", ".join(functions)}; '
            f'methods: {", ".join(SUPPORTED_METHODS)}; with RNN modules also getitem, indexing of the first axis '
            'after the batch, transpose(0, 1)/permute(1, 0, ...)')


def fold_flatten_transposes(graph: Graph) -> Graph:
    """Transpose -> flattening Reshape -> Dense: the Reshape reads the Transpose's input, the Dense kernel rows
    are permuted instead (exact: the Dense reads the same values); the Transpose goes when nothing else reads it.
    """
    for reshape in [n for n in graph.nodes if n.op == 'Reshape' and len(n.shape) == 1]:
        t = graph[reshape.inputs[0]]
        dense = graph.consumers(reshape.name)
        if (t.op != 'Transpose' or reshape.name in graph.outputs or len(dense) != 1 or dense[0].op != 'Dense'
                or dense[0].inputs != [reshape.name]):
            continue
        in_shape = graph[t.inputs[0]].shape
        order = np.arange(int(np.prod(in_shape))).reshape(in_shape).transpose(t.attrs['perm']).ravel()
        kernel = dense[0].weights['kernel']
        permuted = np.empty_like(kernel)
        permuted[order] = kernel  # row k of the old kernel multiplied input element order[k]
        dense[0].weights['kernel'] = permuted
        reshape.inputs = [t.inputs[0]]
        if not graph.consumers(t.name) and t.name not in graph.outputs:
            graph.discard(t.name)
    return graph


# --------------------------------------------------------------------------- public API


def torch_to_graph(model: Any, input_shape: Any, channels_last_conversion: str = 'full',
                   transpose_outputs: bool = False) -> Graph:
    """Convert a torch.nn.Module (traced with torch.fx) to an IR Graph; input_shape as hls4ml's InputShape."""
    shapes = normalize_input_shapes(input_shape)
    mode = str(channels_last_conversion).lower()
    if mode not in CHANNELS_LAST_MODES:
        raise ConfigError(f'channels_last_conversion must be one of {list(CHANNELS_LAST_MODES)}, '
                          f'got {channels_last_conversion!r}')
    if not isinstance(transpose_outputs, (bool, np.bool_)):
        raise ConfigError(f'transpose_outputs must be True or False, got {transpose_outputs!r}')
    gm, probes = _trace(_rooted(model), shapes)
    return Converter(gm, probes, shapes, mode, bool(transpose_outputs)).run()
