"""hls4ml's introspection API over the typed graph: layer views, variables, precisions, HLSConfig.

`Model.get_layers()` returns `Layer` views of the IR nodes with hls4ml 1.3.0's names and meanings:
``layer.class_name`` ('Dense', 'Conv2D', 'Activation', 'Softmax', ...), ``get_attr('reuse_factor')``,
``attributes``, ``get_weights()`` (``.data``: the float weights, ``.type.precision``),
``get_output_variable().type.precision`` and ``.shape``. A precision is a `Precision`: a string spelled as
hls4ml prints its types ('fixed<16,6,TRN,WRAP,0>') that also compares equal to any other spelling of the
same type ('ap_fixed<16,6>') and has hls4ml's fields (width, integer, signed, ...). `ModelConfig` is the
model's configuration dict with hls4ml's HLSConfig queries (get_config_value, get_layer_config).
Attributes other than the views' own (op, shape, attrs, qweights, config, ...) are the IR node's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .config import PART_OF_ATTR, ConfigError, _check_reuse, _check_strategy, _layer_types
from .fixed import FixedType, parse_precision
from .ir import Node

if TYPE_CHECKING:
    from .model import Model

#: hls4ml's HLSConfig top-level keys -> the Model attribute that answers them
CONFIG_VALUES = {'OutputDir': 'output_dir', 'ProjectName': 'project_name', 'Backend': 'backend', 'Part': 'part',
                 'ClockPeriod': 'clock_period', 'IOType': 'io_type'}
#: layer attributes set_attr changes (hls4ml attribute -> our per-layer config key, validator)
SETTABLE = {'reuse_factor': ('ReuseFactor', _check_reuse), 'strategy': ('Strategy', _check_strategy),
            'trace': ('Trace', lambda value, where: bool(value))}
#: our weight names -> hls4ml's
WEIGHT_NAMES = {'kernel': 'weight'}
#: activation functions hls4ml spells differently in get_attr('activation')
ACTIVATION_NAMES = {'leaky_relu': 'leakyrelu', 'thresholded_relu': 'thresholdedrelu'}
#: framework classes hls4ml's Keras reader renames in attributes['class_name']
FRAMEWORK_CLASSES = {'Flatten': 'Reshape'}
MERGE_OPS = {'add': 'add', 'sub': 'subtract', 'mul': 'multiply', 'avg': 'average', 'max': 'maximum',
             'min': 'minimum', 'concat': 'concatenate'}


class Precision(str):
    """A fixed-point type as hls4ml shows it: str() is hls4ml's spelling, e.g. 'fixed<16,6,TRN,WRAP,0>'.

    It equals any string that spells the same type ('ap_fixed<16,6>', 'fixed<16,6>') and the FixedType
    itself; `fixed` is that FixedType, `definition_cpp()` the C++ spelling.
    """

    fixed: FixedType

    def __new__(cls, fixed: FixedType) -> Precision:
        if fixed.is_ap_int:
            text = f"{'' if fixed.signed else 'u'}int<{fixed.width}>"
        else:
            text = (f"{'' if fixed.signed else 'u'}fixed<{fixed.width},{fixed.integer},"
                    f"{fixed.rounding},{fixed.overflow},0>")
        self = super().__new__(cls, text)
        self.fixed = fixed
        return self

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FixedType):
            return self.fixed == other
        if isinstance(other, str):
            try:
                return self.fixed == parse_precision(str(other))
            except ValueError:
                return False
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self.fixed)

    width = property(lambda self: self.fixed.width, doc='Total bits.')
    integer = property(lambda self: self.fixed.integer, doc='Integer bits (sign included).')
    signed = property(lambda self: self.fixed.signed, doc='True for ap_fixed, False for ap_ufixed.')
    fractional = property(lambda self: self.fixed.frac, doc='Fractional bits, width - integer.')
    rounding_mode = property(lambda self: self.fixed.rounding, doc="Rounding mode name ('TRN', 'RND', ...).")
    saturation_mode = property(lambda self: self.fixed.overflow, doc="Overflow mode name ('WRAP', 'SAT', ...).")
    saturation_bits = property(lambda self: 0, doc='Always 0 (AP_SAT with N bits is not used).')
    min = property(lambda self: self.fixed.min_value, doc='Smallest representable value.')
    max = property(lambda self: self.fixed.max_value, doc='Largest representable value.')

    def definition_cpp(self) -> str:
        """The C++ type, e.g. 'ap_fixed<16,6>'."""
        return self.fixed.to_cpp()


class NamedType:
    """hls4ml's NamedType: a type name used in the generated C++ and its `precision`."""

    def __init__(self, name: str, fixed: FixedType):
        self.name = name
        self.precision = Precision(fixed)

    def __repr__(self) -> str:
        return f'NamedType({self.name!r}, {str(self.precision)!r})'


class TensorVariable:
    """A layer's output tensor as hls4ml describes it: name, shape (a list, no batch axis) and type."""

    def __init__(self, name: str, shape: tuple[int, ...], atype: NamedType):
        self.name, self.shape, self.type = name, list(shape), atype

    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    def size_cpp(self) -> str:
        """The size as the C++ product hls4ml writes, e.g. '6*6*3'."""
        return '*'.join(str(d) for d in self.shape)

    def __repr__(self) -> str:
        return f'TensorVariable({self.name!r}, shape={self.shape}, {str(self.type.precision)!r})'


class WeightVariable:
    """A layer's weight tensor as hls4ml describes it: `data` (float, as trained), `type`, counts.

    `quantized_data` (ours) holds the values the firmware uses, the data rounded into `type.precision`.
    """

    def __init__(self, name: str, atype: NamedType, data: np.ndarray, mantissas: np.ndarray | None):
        self.name, self.type = name, atype
        self.data = self.data_unquantized = np.asarray(data)
        self.shape = list(self.data.shape)
        self.data_length = int(self.data.size)
        self.nonzeros = int(np.count_nonzero(self.data))
        self.nzeros = self.data_length - self.nonzeros
        self.min = float(np.min(self.data)) if self.data.size else 0.0
        self.max = float(np.max(self.data)) if self.data.size else 0.0
        fixed = atype.precision.fixed
        self.quantized_data = fixed.to_float(mantissas if mantissas is not None else fixed.quantize(self.data))

    def __repr__(self) -> str:
        return f'WeightVariable({self.name!r}, shape={self.shape}, {str(self.type.precision)!r})'


def class_name(node: Node) -> str:
    """hls4ml 1.3.0's layer class for a node: 'Dense', 'Conv2D', 'Activation', 'Softmax', 'Pooling2D', ..."""
    op, attrs = node.op, node.attrs
    rank = len(node.shape) - 1  # spatial axes of a channels-last tensor
    if op == 'Activation':
        function = attrs.get('function')
        if function in ('leaky_relu', 'elu', 'thresholded_relu'):
            return 'ParametrizedActivation'
        return {'prelu': 'PReLU', 'hard_sigmoid': 'HardActivation', 'hard_tanh': 'HardActivation'}.get(
            function, 'Activation')
    if op == 'Conv':
        rank = len(attrs.get('kernel_size', ())) or rank
        depthwise = attrs.get('groups', 1) > 1 and attrs.get('groups') == _channels_in(node)
        return f"{'DepthwiseConv' if depthwise else 'Conv'}{rank}D"
    if op == 'Pool':
        rank = len(attrs.get('pool_size', ())) or rank
        return f"{'Global' if attrs.get('global') else ''}Pooling{rank}D"
    if op in ('Pad', 'Crop'):
        return f"{'ZeroPadding' if op == 'Pad' else 'Cropping'}{max(rank, 1)}D"
    if op == 'Merge':
        return 'Concatenate' if attrs.get('mode') == 'concat' else 'Merge'
    return {'Scale': 'BatchNormalization', 'Quantize': 'Quant'}.get(op, op)


def _channels_in(node: Node) -> int:
    kernel = node.weights.get('kernel')
    return int(kernel.shape[-2]) * int(node.attrs.get('groups', 1)) if kernel is not None else 0


class Layer:
    """A view of one IR node with hls4ml's Layer API; the node itself is `node`.

    `name`, `inputs`, `outputs`, `class_name`, `attributes`, `get_attr`/`set_attr`, `types`, `weights`,
    `get_weights()`, `get_input_variable()`, `get_output_variable()` follow hls4ml 1.3.0. Any other
    attribute (op, shape, attrs, qweights, config, source, ...) is read from the node.
    """

    def __init__(self, model: Model, node: Node):
        object.__setattr__(self, 'model', model)
        object.__setattr__(self, 'node', node)

    def __getattr__(self, key: str) -> Any:
        return getattr(self.__dict__['node'], key)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"layer {self.name!r}: attributes are read-only; use set_attr('{key}', ...) for "
                             f'the settings hls4ml lets you change ({sorted(SETTABLE)})')

    def __repr__(self) -> str:
        return f'<fpga4ml.Layer {self.name!r} ({self.class_name})>'

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layer) and other.node is self.node

    def __hash__(self) -> int:
        return id(self.node)

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        """The layer (node) name."""
        return self.node.name

    @property
    def class_name(self) -> str:
        """hls4ml's class name of this layer ('Dense', 'Conv2D', 'Activation', 'Softmax', ...)."""
        return class_name(self.node)

    @property
    def index(self) -> int:
        """1-based position in evaluation order (hls4ml numbers its layers the same way)."""
        return self.model.graph.nodes.index(self.node) + 1

    @property
    def inputs(self) -> list[str]:
        """Names of the layers whose outputs this layer reads."""
        return list(self.node.inputs)

    @property
    def outputs(self) -> list[str]:
        """The names of this layer's outputs: its own name."""
        return [self.node.name]

    # ------------------------------------------------------------------ variables
    def _named_type(self, var: str) -> NamedType:
        if self.node.op == 'Input' and var == 'result':
            inputs = self.model.graph.inputs
            position = inputs.index(self.name) if self.name in inputs else 0
            return NamedType('input_t' if position == 0 else f'input{position + 1}_t', self.node.types[var])
        if var == 'result' and self.model.graph.outputs == [self.name]:
            return NamedType('result_t', self.node.types[var])
        return NamedType(f'{self.name}_{var}_t', self.node.types[var])

    @property
    def types(self) -> dict[str, NamedType]:
        """'<variable>_t' -> NamedType for every typed variable (result_t, weight_t, accum_t, table_t, ...)."""
        return {f'{var}_t': self._named_type(var) for var in self.node.types}

    @property
    def weights(self) -> dict[str, WeightVariable]:
        """hls4ml weight name ('weight', 'bias', 'scale', ...) -> WeightVariable."""
        out = {}
        for key, data in self.node.weights.items():
            var = WEIGHT_NAMES.get(key, key)
            if var not in self.node.types:
                continue
            prefix = {'weight': 'w', 'bias': 'b', 'scale': 's'}.get(var, var)
            out[var] = WeightVariable(f'{prefix}{self.index}', self._named_type(var), data,
                                      self.node.qweights.get(key))
        return out

    def get_weights(self, var_name: str | None = None):
        """All weight variables (hls4ml returns a view of its dict's values), or the one named `var_name`."""
        weights = self.weights
        if var_name is None:
            return list(weights.values())
        if var_name not in weights:
            raise KeyError(f'layer {self.name!r} ({self.class_name}) has no weight {var_name!r}; '
                           f'it has {sorted(weights)}')
        return weights[var_name]

    def get_output_variable(self, output_name: str | None = None) -> TensorVariable:
        """The output tensor (name, shape, type.precision)."""
        if output_name not in (None, self.name):
            raise KeyError(f'layer {self.name!r} has one output, {self.name!r}; got {output_name!r}')
        name = self.name if self.node.op == 'Input' else f'layer{self.index}_out'
        return TensorVariable(name, self.node.shape, self._named_type('result'))

    def get_variables(self) -> list[TensorVariable]:
        """The output variables (one)."""
        return [self.get_output_variable()]

    def get_input_node(self, input_name: str | None = None) -> Layer | None:
        """The layer producing input `input_name` (default: the first input), or None for a graph input."""
        if not self.node.inputs:
            return None
        return self.model.get_layer(input_name or self.node.inputs[0])

    def get_input_variable(self, input_name: str | None = None) -> TensorVariable | None:
        """The output variable of the layer feeding input `input_name` (default: the first); None for inputs."""
        node = self.get_input_node(input_name)
        return node.get_output_variable() if node is not None else None

    def get_input_variables(self) -> list[TensorVariable]:
        """The output variables of every layer this layer reads, in input order."""
        return [self.model.get_layer(name).get_output_variable() for name in self.node.inputs]

    def get_output_nodes(self) -> list[Layer]:
        """The layers that read this layer's output."""
        return [Layer(self.model, node) for node in self.model.graph.users(self.name)]

    # ------------------------------------------------------------------ attributes
    @property
    def attributes(self) -> dict[str, Any]:
        """hls4ml's attribute dict of this layer (a fresh copy: change settings with set_attr)."""
        return layer_attributes(self)

    def get_attr(self, key: str, default: Any = None) -> Any:
        """The attribute `key` as hls4ml names it ('reuse_factor', 'n_in', 'strategy', ...), else `default`."""
        return self.attributes.get(key, default)

    def set_attr(self, key: str, value: Any) -> None:
        """Change a per-layer setting: 'reuse_factor', 'strategy' or 'trace' (others raise, naming the key).

        The change is recorded in the layer's resolved config and in model.config['LayerName'], and the
        compiled C/RTL simulators are dropped so that the next compile or predict(sim=...) uses it.
        """
        where = f'layer {self.name!r} ({self.class_name}): set_attr({key!r}, {value!r})'
        if key not in SETTABLE:
            hint = (' (types are fixed at conversion: set config["LayerName"][name]["Precision"] and convert again)'
                    if key.endswith('_t') or key == 'precision' else '')
            raise ConfigError(f'{where}: {key!r} cannot be changed after conversion{hint}; '
                              f'settable: {sorted(SETTABLE)}')
        if PART_OF_ATTR in self.node.attrs:
            owner = self.node.attrs[PART_OF_ATTR][0]
            raise ConfigError(f'{where}: this node is part of layer {owner!r} and takes its settings; '
                              f'set them on {owner!r}')
        config_key, check = SETTABLE[key]
        checked = check(value, where)
        self.model.set_layer_setting(self.name, config_key, checked)


def _spatial(shape: tuple[int, ...], prefix: str) -> dict[str, int]:
    """{'<prefix>_height': .., '<prefix>_width': ..} of a (H, W, C) or (W, C) shape."""
    dims = shape[:-1]
    out = {f'{prefix}_width': int(dims[-1])} if dims else {}
    if len(dims) == 2:
        out[f'{prefix}_height'] = int(dims[0])
    return out


def _window(values: tuple, prefix: str) -> dict[str, int]:
    """{'<prefix>_height', '<prefix>_width'} of a 1-D (w,) or 2-D (h, w) window parameter."""
    values = tuple(int(v) for v in values)
    out = {f'{prefix}_width': values[-1]} if values else {}
    if len(values) == 2:
        out[f'{prefix}_height'] = values[0]
    return out


def _padding(values: tuple) -> dict[str, int]:
    values = tuple(int(v) for v in values)
    if len(values) == 4:
        return dict(zip(('pad_top', 'pad_bottom', 'pad_left', 'pad_right'), values))
    if len(values) == 2:
        return {'pad_left': values[0], 'pad_right': values[1]}
    return {}


def _op_attributes(layer: Layer) -> dict[str, Any]:
    """The op-specific attributes hls4ml's layer of the same kind has."""
    node, attrs = layer.node, layer.node.attrs
    in_shape = layer.model.graph[node.inputs[0]].shape if node.inputs else node.shape
    out: dict[str, Any] = {}
    if node.op == 'Dense':
        out.update(n_in=int(in_shape[-1]), n_out=int(node.shape[-1]), use_bias=bool(attrs.get('use_bias', True)),
                   data_format='channels_last')
    elif node.op in ('Conv', 'Pool'):
        window = attrs.get('kernel_size') if node.op == 'Conv' else attrs.get('pool_size')
        out.update(data_format='channels_last', n_chan=int(in_shape[-1]), n_filt=int(node.shape[-1]))
        out.update(_window(window or (), 'filt' if node.op == 'Conv' else 'pool'))
        out.update(_window(attrs.get('strides') or (), 'stride'))
        out.update(_padding(attrs.get('padding') or ()))
        out.update(_spatial(in_shape, 'in'))
        out.update(_spatial(node.shape, 'out'))
        if node.op == 'Pool':
            out['pool_op'] = 'Max' if attrs.get('mode') == 'max' else 'Average'
        else:
            out['use_bias'] = bool(attrs.get('use_bias', True))
            out['parallelization_factor'] = node.config.get('ParallelizationFactor', 1)
    elif node.op in ('Activation', 'Softmax'):
        function = 'softmax' if node.op == 'Softmax' else str(attrs.get('function'))
        out.update(activation=ACTIVATION_NAMES.get(function, function), n_in=node.size,
                   table_size=node.config.get('TableSize', 1024))
        if attrs.get('alpha') is not None:
            out['activ_param'] = attrs['alpha']
        if node.op == 'Softmax':
            out['axis'] = attrs.get('axis', -1)
    elif node.op == 'Reshape':
        out.update(target_shape=list(node.shape), data_format='channels_last')
    elif node.op in ('Pad', 'Crop', 'Resize'):
        out['data_format'] = 'channels_last'
    elif node.op == 'Merge':
        out['op'] = MERGE_OPS.get(attrs.get('mode'), attrs.get('mode'))
        if attrs.get('mode') == 'concat':
            out['axis'] = attrs.get('axis', -1)
    elif node.op == 'Input':
        out['input_shape'] = list(node.shape)
    return out


def layer_attributes(layer: Layer) -> dict[str, Any]:
    """hls4ml's attribute dict for a layer view: settings, op parameters, types, weights and output."""
    node = layer.node
    config = node.config
    attributes: dict[str, Any] = {
        'name': node.name,
        # hls4ml keeps the framework class here (a softmax is 'Softmax' whatever layer made it)
        'class_name': 'Softmax' if node.op == 'Softmax' else FRAMEWORK_CLASSES.get(node.source, node.source)
        or layer.class_name,
        'inputs': list(node.inputs),
        'index': layer.index,
        'trace': bool(config.get('Trace', False)),
        'reuse_factor': config.get('ReuseFactor', 1),
        'precision': {var: str(t) for var, t in (config.get('Precision') or {}).items()},
    }
    if node.op in ('Dense', 'Conv'):
        attributes['strategy'] = str(config.get('Strategy', 'Latency')).lower()
    attributes.update(_op_attributes(layer))
    attributes.update(layer.types)
    attributes.update(layer.weights)
    attributes[node.name] = layer.get_output_variable()
    return attributes


class ModelConfig(dict):
    """The model's configuration dict (hls4ml's HLSConfig entries: Model, LayerType, LayerName) that also
    answers hls4ml's HLSConfig queries: get_config_value('ClockPeriod'), get_layer_config(layer), ...

    Copies (copy.copy, copy.deepcopy, pickle) are plain dicts.
    """

    def __init__(self, config: dict, model: Model):
        super().__init__(config)
        self._model = model

    def __reduce__(self):
        return dict, (dict(self),)

    def __copy__(self) -> dict:
        return dict(self)

    def __deepcopy__(self, memo: dict) -> dict:
        import copy

        return copy.deepcopy(dict(self), memo)

    @property
    def config(self) -> dict[str, Any]:
        """hls4ml's whole configuration: the top-level keys (OutputDir, Part, ...) with this dict as 'HLSConfig'."""
        top = {key: getattr(self._model, attr) for key, attr in CONFIG_VALUES.items()}
        top['ClockUncertainty'] = self._model.settings.get('clock_uncertainty')
        if self._model.settings.get('accelerator') is not None:
            top['AcceleratorConfig'] = self._model.settings['accelerator'].as_config()
        top['HLSConfig'] = self
        return top

    def get_config_value(self, key: str, default: Any = None) -> Any:
        """A top-level value: 'ClockPeriod', 'Part', 'Backend', 'IOType', 'ProjectName', 'OutputDir',
        'ClockUncertainty' (None: the tool's default), 'AcceleratorConfig' (VivadoAccelerator) or 'HLSConfig';
        `default` for any other key."""
        value = self.config.get(key)
        return default if value is None else value

    def get_project_name(self) -> str:
        """The project (top function / module) name."""
        return self._model.project_name

    def get_output_dir(self) -> str:
        """The output directory."""
        return self._model.output_dir

    def _node(self, layer: Any) -> Node:
        name = layer if isinstance(layer, str) else getattr(layer, 'name', None)
        if name not in self._model.graph:
            raise KeyError(f'get_layer_config: no layer named {name!r}; layers: {self._model.get_layer_names()}')
        return self._model.graph[name]

    def get_layer_config(self, layer: Any) -> dict[str, Any]:
        """The configuration entries that apply to `layer` (a layer, node or name): its LayerType entries
        (least specific first), then its LayerName entry, merged as hls4ml's HLSConfig does."""
        node = self._node(layer)
        merged: dict[str, Any] = {}
        type_cfg = self.get('LayerType') or {}
        for type_name in reversed(_layer_types(node)):
            merged.update(type_cfg.get(type_name) or {})
        merged.update((self.get('LayerName') or {}).get(node.name) or {})
        return merged

    def get_layer_config_value(self, layer: Any, key: str, default: Any = None) -> Any:
        """One key of the layer's configuration: LayerName, then LayerType, then Model, then `default`."""
        value = self.get_layer_config(layer).get(key)
        if value is None:
            value = (self.get('Model') or {}).get(key)
        return default if value is None else value

