"""hls4ml-compatible configuration dictionaries.

The schema is hls4ml's::

    {'Model':     {'Precision': 'fixed<16,6>' | {'default': ..., 'maximum': ...}, 'ReuseFactor': 1,
                   'Strategy': 'Latency', 'BramFactor': ..., 'TraceOutput': False},
     'LayerType': {'Dense': {'Precision': {...}, 'ReuseFactor': ..., 'Strategy': ..., 'Trace': ...}},
     'LayerName': {'fc1':   {'Precision': {'weight': ..., 'bias': ..., 'accum': ..., 'result': ...}}}}

Resolution is per variable with precedence name > type > model: for variable ``v`` of a layer,
``LayerName[v]``, then the layer's own string/'default' precision, then ``LayerType[v]`` and its
default, then ``Model[v]`` and the model default. Unknown keys warn with the nearest valid key;
invalid values raise naming the layer, key and value.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any

from .fixed import AUTO, FixedType, parse_precision
from .ir import Graph, Node

MODEL_KEYS = ('Precision', 'ReuseFactor', 'Strategy', 'BramFactor', 'TraceOutput', 'Pipeline', 'Multipliers',
              'Architecture', 'TableSemantics', 'Interface', 'Implementation', 'Folding', 'TernaryAdders',
              'VariableProducts')
LAYER_KEYS = ('Precision', 'ReuseFactor', 'Strategy', 'Trace', 'TableSize', 'Multipliers',
              'ParallelizationFactor', 'TableSemantics', 'Static', 'RecurrentReuseFactor', 'Folding',
              'VariableProducts')
#: a softmax's types given as layer keys, as hls4ml 1.3.0 reads them (`config['LayerName'][name]['exp_table_t']
#: = 'ap_fixed<18,8>'`): each sets the precision variable it names, over a Precision entry of the same level
SOFTMAX_TYPE_KEYS = {'exp_table_t': 'exp_table', 'inv_table_t': 'inv_table', 'inv_inp_t': 'inv_inp',
                     'accum_t': 'accum', 'table_t': 'table'}
#: keys only a softmax reads (hls4ml's ConfigurableAttributes of its class Softmax, and its types)
SOFTMAX_KEYS = ('Implementation', 'Skip') + tuple(SOFTMAX_TYPE_KEYS)
#: hls4ml 1.3.0's softmax implementations ('stable' is its default): semantics/tables.softmax_implementation
SOFTMAX_IMPLEMENTATIONS = ('latency', 'stable', 'argmax', 'legacy')
#: precision variables hls4ml's configs name for an op that only its table semantics use: accepted in
#: Precision entries and resolved like the op's own, but not listed in generated configs
HLS4ML_PRECISION_VARIABLES = {'Softmax': ('inv_inp', 'accum', 'table')}
#: lookup tables: fpga4ml's exact tables (default) or hls4ml 1.3.0's (its index arithmetic and entries)
TABLE_SEMANTICS = ('exact', 'hls4ml')
#: variables with their own defaults: a layer or model 'default' precision does not apply to them,
#: only an explicit entry for the variable itself
OWN_DEFAULT_VARIABLES = ('table', 'exp_table', 'inv_table', 'inv_inp')
STRATEGIES = ('Latency', 'Resource')
#: Verilog back end: constant products as adder graphs (default) or DSP multipliers
MULTIPLIERS = ('adders', 'dsp')
#: Verilog back end: products of two variables (attention scores, softmax, Merge multiply, gates) on DSP
#: multipliers (default), as partial-product arrays in LUTs, or in LUTs where the narrower operand has at
#: most LUT_PRODUCT_BITS bits ('auto'; backends/verilog/lut_multiplier.py)
VARIABLE_PRODUCTS = ('dsp', 'lut', 'auto')
#: Verilog back end, layers with ReuseFactor > 1: multiply-accumulate folding on multipliers (default) or
#: digit-serial folding on one multiplier-free adder graph (backends/verilog/fold_serial.py)
FOLDINGS = ('mac', 'adders')
MODEL_PRECISION_KEYS = ('default', 'maximum')
#: bounds on a configuration's shape: hls4ml configurations are a few levels deep with thousands of entries
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_ENTRIES = 1_000_000
#: node attribute where a front end records types fixed by the model itself (quantization-aware
#: training: QKeras/HGQ2 quantizers, QONNX Quant nodes): {variable: FixedType}. They are honoured
#: exactly unless the user's config names the layer and the variable explicitly (config['LayerName']).
FIXED_PRECISION_ATTR = 'fixed_precision'

#: node attribute of a node that implements a framework layer by a composition of IR ops and fixes
#: some of its own types ({variable: FixedType}, e.g. the exact all-ones kernel that sums a Keras Dot's
#: products): those variables are not configurable and not listed in generated configs
INTERNAL_PRECISION_ATTR = 'internal_precision'
#: node attribute of a helper node inside such a composition: ``(layer_node, {variable: layer_variable})``.
#: The node takes all its settings from the layer's node, each precision variable from the mapped
#: variable of that layer (a Dot's product node: {'result': 'accum'}); it has no config entry of its own
PART_OF_ATTR = 'part_of'

class ConfigError(ValueError):
    """A configuration value is invalid (the message names the layer, key and value)."""


class ConfigWarning(UserWarning):
    """A configuration key is unknown or does not match any layer."""


def precision_variables(node: Node) -> tuple[str, ...]:
    """The configurable precision variables (hls4ml's '<var>_t' types) of a node."""
    fixed = set(node.attrs.get(INTERNAL_PRECISION_ATTR, {})) | set(node.attrs.get(PART_OF_ATTR, ('', {}))[1])
    from .semantics.spec import spec_of
    return tuple(v for v in spec_of(node).precision_variables(node) if v not in fixed)


def _warn_unknown(key: str, valid: list[str] | tuple[str, ...], where: str) -> None:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f'; valid keys are {sorted(valid)}'
    warnings.warn(f'{where}: unknown configuration key {key!r} is ignored{hint}', ConfigWarning, stacklevel=4)


def _layer_types(node: Node) -> tuple[str, ...]:
    """The LayerType names a node answers to: its framework class, its IR op, hls4ml's class name."""
    if INTERNAL_PRECISION_ATTR in node.attrs or PART_OF_ATTR in node.attrs:
        return (node.source,) if node.source else ()  # a composed layer answers to its own class only
    names = [node.op, node.source] if node.op == 'Softmax' else [node.source, node.op]  # hls4ml's Softmax first
    if node.op == 'Activation':
        names.append(str(node.attrs.get('function')))
        if node.attrs.get('function') in ('leaky_relu', 'elu'):
            names.append('ParametrizedActivation')  # hls4ml's class name for these
    if node.op == 'Pool':  # hls4ml's class names: Pooling1D/2D, GlobalPooling1D/2D
        rank = len(node.attrs.get('pool_size', ()))
        names.append(f"{'Global' if node.attrs.get('global') else ''}Pooling{rank}D")
    # hls4ml's class names a front end records for its layers (torch Conv2d -> 'Conv2D')
    names += [n for n in node.attrs.get('type_aliases', ()) if n not in names]
    return tuple(n for n in names if n)


def _check_precision_value(value: Any, where: str) -> FixedType | str:
    try:
        return parse_precision(value)
    except ValueError as err:
        raise ConfigError(f'{where}: {err}') from None


def _precision_entries(precision: Any, valid_vars: tuple[str, ...], where: str) -> dict[str, Any]:
    """Normalize a Precision value (string or dict) into {var or 'default': parsed type}."""
    if precision is None:
        return {}
    if isinstance(precision, (str, FixedType)):
        return {'default': _check_precision_value(precision, f'{where} Precision')}
    if not isinstance(precision, dict):
        raise ConfigError(f'{where}: Precision must be a string or a dict, got {precision!r}')
    entries = {}
    for var, value in precision.items():
        if var != 'default' and var not in valid_vars:
            _warn_unknown(var, list(valid_vars) + ['default'], f'{where} Precision')
            continue
        entries[var] = _check_precision_value(value, f'{where} Precision[{var!r}]')
    return entries


def _check_reuse(value: Any, where: str, key: str = 'ReuseFactor') -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f'{where}: {key} must be a positive integer, got {value!r}')
    return value


def _check_strategy(value: Any, where: str) -> str:
    for s in STRATEGIES:
        if isinstance(value, str) and value.lower() == s.lower():
            return s
    raise ConfigError(f'{where}: Strategy must be one of {list(STRATEGIES)}, got {value!r}')


def _check_implementation(value: Any, where: str) -> str:
    """A softmax Implementation (any case) as hls4ml's lower-case name."""
    if isinstance(value, str) and value.lower() in SOFTMAX_IMPLEMENTATIONS:
        return value.lower()
    raise ConfigError(f'{where}: softmax Implementation must be one of {list(SOFTMAX_IMPLEMENTATIONS)}, got {value!r}')


def _softmax_settings(node: Node, settings: dict, where: str, resolved: dict) -> None:
    """Implementation and Skip of a softmax into `resolved`; Strategy 'Stable' asks for Implementation 'stable'.

    hls4ml 1.3.0 reads Implementation (default 'stable') and ignores a Strategy of 'Stable' (a key of
    older hls4ml versions); an Implementation given at any level wins over it. Other layers warn.
    """
    if node.op != 'Softmax':
        for key in SOFTMAX_KEYS:
            if key in settings:
                warnings.warn(f'{where}: {key!r} applies to Softmax layers only; it is ignored for layer '
                              f'{node.name!r} ({node.op})', ConfigWarning, stacklevel=4)
        return
    if 'Implementation' in settings:
        resolved['Implementation'] = _check_implementation(settings['Implementation'], where)
    if 'Skip' in settings:
        if not isinstance(settings['Skip'], bool):
            raise ConfigError(f'{where}: Skip must be True or False, got {settings["Skip"]!r}')
        resolved['Skip'] = settings['Skip']


def _is_stable_strategy(node: Node, value: Any) -> bool:
    """A softmax's Strategy 'Stable' (older hls4ml's way to choose the stable implementation)."""
    return node.op == 'Softmax' and isinstance(value, str) and value.lower() == 'stable'


def _check_table_semantics(value: Any, where: str) -> str:
    if value not in TABLE_SEMANTICS:
        raise ConfigError(f'{where}: TableSemantics={value!r}; use one of {list(TABLE_SEMANTICS)}')
    return value


def _check_multipliers(value: Any, where: str) -> str:
    if isinstance(value, str) and value.lower() in MULTIPLIERS:
        return value.lower()
    raise ConfigError(f'{where}: Multipliers={value!r} is invalid; use one of {list(MULTIPLIERS)}')


def check_variable_products(value: Any, where: str) -> str:
    """The Verilog back end's VariableProducts setting: 'dsp', 'lut' or 'auto' (ConfigError otherwise)."""
    if isinstance(value, str) and value.lower() in VARIABLE_PRODUCTS:
        return value.lower()
    raise ConfigError(f"{where}: VariableProducts={value!r} is invalid; use 'dsp' (DSP multipliers), 'lut' "
                      "(partial products summed in LUTs) or 'auto' (LUTs where the narrower operand is narrow)")


def check_folding(value: Any, where: str) -> str:
    """The Verilog back end's Folding of a layer with ReuseFactor > 1: 'mac' or 'adders' (ConfigError otherwise)."""
    if isinstance(value, str) and value.lower() in FOLDINGS:
        return value.lower()
    raise ConfigError(f"{where}: Folding={value!r} is invalid; use 'mac' (multiply-accumulate on multipliers) or "
                      "'adders' (digit-serial, multiplier-free; needs an exact accumulator)")


def check_pipeline(value: Any, where: str) -> str | int:
    """The Verilog back end's Pipeline setting: 'auto', 'none' or adder levels per stage (ConfigError otherwise)."""
    if isinstance(value, str) and value.lower() in ('auto', 'none'):
        return value.lower()
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(f"{where}: Pipeline={value!r} is invalid; use 'auto' (registers placed for the clock period), "
                      "'none' (combinational) or a positive integer (adder levels per pipeline stage)")


#: Verilog back end: every layer unrolled in space, or CNNs streamed pixel by pixel through line buffers
ARCHITECTURES = ('unrolled', 'stream')


def check_architecture(value: Any, where: str) -> str:
    """The Verilog back end's Architecture setting: 'unrolled' or 'stream' (ConfigError otherwise)."""
    if isinstance(value, str) and value.lower() in ARCHITECTURES:
        return value.lower()
    raise ConfigError(f'{where}: Architecture={value!r} is invalid; use one of {list(ARCHITECTURES)}')


#: the Verilog back end's TernaryAdders setting: 'off' (default), 'carry8', 'carry4', or 'auto' (by the
#: part: UltraScale(+) 'carry8', 7-series 'carry4', else 'off'); backends/verilog/ternary.py
TERNARY_ADDERS = ('auto', 'carry8', 'carry4', 'off')


def check_ternary_adders(value: Any, where: str) -> str:
    """The TernaryAdders setting ('auto', 'carry8', 'carry4', 'off'; False means 'off'), ConfigError otherwise."""
    if value is False:
        return 'off'
    if isinstance(value, str) and value.lower() in TERNARY_ADDERS:
        return value.lower()
    raise ConfigError(f'{where}: TernaryAdders={value!r} is invalid; use one of {list(TERNARY_ADDERS)} '
                      "('carry8': UltraScale/UltraScale+ CARRY8, 'carry4': 7-series CARRY4, 'off': portable binary "
                      "adders, 'auto': chosen by the part)")


def model_setting(config: dict | None, key: str, default: Any) -> Any:
    """A validated model-level setting of the Verilog back end ('Pipeline', 'Architecture', 'TernaryAdders')."""
    value = dict((config or {}).get('Model') or {}).get(key, default)
    if key == 'Pipeline':
        return check_pipeline(value, "config['Model']")
    if key == 'Architecture':
        return check_architecture(value, "config['Model']")
    if key == 'TernaryAdders':
        return check_ternary_adders(value, "config['Model']")
    raise KeyError(key)


def check_config_shape(config: Any, where: str = 'config') -> int:
    """Raise unless `config` is at most MAX_CONFIG_DEPTH levels deep and MAX_CONFIG_ENTRIES entries written out.

    A dict or list used in several places (YAML aliases loaded with yaml.safe_load make them) counts
    once per use, as it would be written to config.yml: a "billion laughs" configuration is refused
    here instead of expanding when it is copied or written. A configuration that contains itself is
    refused as too deep. Returns the number of entries written out.
    """
    sizes: dict[int, int] = {}  # id of a dict/list -> its entries written out (each shared one walked once)

    def size(value: Any, path: str, depth: int) -> int:
        if not isinstance(value, (dict, list, tuple)):
            return 1
        if depth >= MAX_CONFIG_DEPTH:
            raise ConfigError(f'{path}: nested more than {MAX_CONFIG_DEPTH} levels deep (or contains itself); '
                              'an hls4ml configuration is a few levels of dicts')
        if id(value) not in sizes:
            items = value.items() if isinstance(value, dict) else enumerate(value)
            total = 1 + sum(size(v, f'{path}[{k!r}]', depth + 1) for k, v in items)
            if total > MAX_CONFIG_ENTRIES:
                raise ConfigError(f'{path} expands to {total} entries (more than {MAX_CONFIG_ENTRIES}) when written '
                                  'out: sub-dicts used in several places (YAML aliases) count once per use')
            sizes[id(value)] = total
        return sizes[id(value)]

    return size(config, where, 0)


def resolve_config(graph: Graph, config: dict | None) -> dict[str, Any]:
    """Validate an hls4ml-style config and store each node's resolved settings in `node.config`.

    Returns the model-level settings: {'default': FixedType, 'maximum': FixedType | None,
    'ReuseFactor', 'Strategy', 'TraceOutput'}.
    """
    check_config_shape(config)
    config = dict(config or {})
    for key in config:
        if key not in ('Model', 'LayerType', 'LayerName'):
            _warn_unknown(key, ['Model', 'LayerType', 'LayerName'], 'config')
    model_cfg = dict(config.get('Model') or {})
    for key in model_cfg:
        if key not in MODEL_KEYS:
            _warn_unknown(key, MODEL_KEYS, "config['Model']")
    model_prec = model_cfg.get('Precision', 'fixed<16,6>')
    if isinstance(model_prec, dict):
        model_entries = {}
        for var, value in model_prec.items():
            model_entries[var] = _check_precision_value(value, f"config['Model'] Precision[{var!r}]")
    else:
        model_entries = {'default': _check_precision_value(model_prec, "config['Model'] Precision")}
    default = model_entries.get('default', parse_precision('fixed<16,6>'))
    if default == AUTO:
        raise ConfigError("config['Model'] Precision: the model default precision must be explicit, not 'auto'")
    maximum = model_entries.get('maximum')
    if maximum == AUTO:
        raise ConfigError("config['Model'] Precision['maximum'] must be an explicit type, not 'auto'")
    model = {
        'default': default,
        'maximum': maximum,
        'ReuseFactor': _check_reuse(model_cfg.get('ReuseFactor', 1), "config['Model']"),
        'Strategy': _check_strategy(model_cfg.get('Strategy', 'Latency'), "config['Model']"),
        'TraceOutput': bool(model_cfg.get('TraceOutput', False)),
        'Multipliers': _check_multipliers(model_cfg.get('Multipliers', 'adders'), "config['Model']"),
        'Folding': check_folding(model_cfg.get('Folding', 'mac'), "config['Model']"),
        'VariableProducts': check_variable_products(model_cfg.get('VariableProducts', 'dsp'), "config['Model']"),
        'Pipeline': check_pipeline(model_cfg.get('Pipeline', 'auto'), "config['Model']"),
        'Architecture': check_architecture(model_cfg.get('Architecture', 'unrolled'), "config['Model']"),
        'TernaryAdders': check_ternary_adders(model_cfg.get('TernaryAdders', 'off'), "config['Model']"),
        'TableSemantics': _check_table_semantics(model_cfg.get('TableSemantics', 'exact'), "config['Model']"),
    }
    if 'Implementation' in model_cfg:  # every softmax's, unless its type or name entry says otherwise
        model['Implementation'] = _check_implementation(model_cfg['Implementation'], "config['Model']")

    type_cfg = dict(config.get('LayerType') or {})
    name_cfg = dict(config.get('LayerName') or {})
    known_types = sorted({t for node in graph for t in _layer_types(node)})
    for key in type_cfg:
        if key not in known_types:
            _warn_unknown(key, known_types, "config['LayerType']")
    names = [node.name for node in graph if PART_OF_ATTR not in node.attrs]  # parts follow their layer
    for key in name_cfg:
        if key not in names:
            _warn_unknown(key, names, "config['LayerName']")

    for node in graph:
        if PART_OF_ATTR not in node.attrs:
            node.config = _resolve_node(node, model, model_entries, type_cfg, name_cfg)
    for node in graph:
        if PART_OF_ATTR in node.attrs:
            node.config = _part_config(graph, node)
    _check_layer_reuse_factors(graph)
    return model


def _check_layer_reuse_factors(graph: Graph) -> None:
    """Validate at convert time every foldable layer's ReuseFactor, whether the Model, a LayerType or a
    LayerName entry sets it (folding.py's rules, shared by both back ends; the error names the layer,
    the value and the valid values), and the recurrent layers' factors."""
    from .folding import check_reuse_factors  # folding reads ConfigError from this module
    check_reuse_factors((node for node in graph if PART_OF_ATTR not in node.attrs), graph)
    from .backends.hls.emit_rnn import RNN_OPS, recurrent_settings  # the recurrent layers' two factors
    for node in graph:
        if node.op in RNN_OPS:
            recurrent_settings(node)


def _part_config(graph: Graph, node: Node) -> dict:
    """The settings of a helper node of a composed layer: the layer node's, with mapped precisions."""
    layer, mapping = node.attrs[PART_OF_ATTR]
    owner = graph[layer].config
    config = {key: value for key, value in owner.items() if key != 'Precision'}
    config['Precision'] = {var: owner['Precision'][src] for var, src in mapping.items()}
    return config


def _resolve_node(node: Node, model: dict, model_entries: dict, type_cfg: dict, name_cfg: dict) -> dict:
    valid_vars = precision_variables(node) + HLS4ML_PRECISION_VARIABLES.get(node.op, ())
    layers: list[tuple[str, dict]] = []  # (where, settings), most specific first
    if node.name in name_cfg:
        layers.append((f"config['LayerName'][{node.name!r}]", dict(name_cfg[node.name] or {})))
    for type_name in _layer_types(node):
        if type_name in type_cfg:
            layers.append((f"config['LayerType'][{type_name!r}]", dict(type_cfg[type_name] or {})))

    resolved: dict[str, Any] = {
        'ReuseFactor': model['ReuseFactor'],
        'Strategy': model['Strategy'],
        'Trace': model['TraceOutput'],
        'Multipliers': model['Multipliers'],
        'Folding': model['Folding'],
        'VariableProducts': model['VariableProducts'],
        'TableSemantics': model['TableSemantics'],
    }
    if node.op == 'Softmax' and 'Implementation' in model:
        resolved['Implementation'] = model['Implementation']
    precision_levels = []
    stable = False  # a softmax's Strategy 'Stable'
    for where, settings in reversed(layers):  # least specific first, so specific ones overwrite
        for key in settings:
            if key not in LAYER_KEYS + SOFTMAX_KEYS:
                _warn_unknown(key, LAYER_KEYS + SOFTMAX_KEYS, where)
        if 'ReuseFactor' in settings:
            resolved['ReuseFactor'] = _check_reuse(settings['ReuseFactor'], where)
        if 'RecurrentReuseFactor' in settings:  # recurrent layers: folds the recurrent product
            resolved['RecurrentReuseFactor'] = _check_reuse(settings['RecurrentReuseFactor'], where,
                                                            'RecurrentReuseFactor')
        if 'Static' in settings:  # recurrent layers: one cell reused over time (True) or a cell per step
            if not isinstance(settings['Static'], bool):
                raise ConfigError(f'{where}: Static must be True or False, got {settings["Static"]!r}')
            resolved['Static'] = settings['Static']
        if 'ParallelizationFactor' in settings:  # io_parallel Conv: output pixels in parallel (HLS back end)
            resolved['ParallelizationFactor'] = _check_reuse(settings['ParallelizationFactor'], where,
                                                             'ParallelizationFactor')
        if 'Strategy' in settings and _is_stable_strategy(node, settings['Strategy']):
            stable = True
        elif 'Strategy' in settings:
            resolved['Strategy'] = _check_strategy(settings['Strategy'], where)
        _softmax_settings(node, settings, where, resolved)
        if 'Trace' in settings:
            resolved['Trace'] = bool(settings['Trace'])
        if 'Multipliers' in settings:
            resolved['Multipliers'] = _check_multipliers(settings['Multipliers'], where)
        if 'Folding' in settings:
            resolved['Folding'] = check_folding(settings['Folding'], where)
        if 'VariableProducts' in settings:
            resolved['VariableProducts'] = check_variable_products(settings['VariableProducts'], where)
        if 'TableSize' in settings:
            resolved['TableSize'] = settings['TableSize']
        if 'TableSemantics' in settings:
            resolved['TableSemantics'] = _check_table_semantics(settings['TableSemantics'], where)
        entries = _precision_entries(settings.get('Precision'), valid_vars, where)
        if node.op == 'Softmax':
            entries.update({var: _check_precision_value(settings[key], f'{where}[{key!r}]')
                            for key, var in SOFTMAX_TYPE_KEYS.items() if key in settings})
        precision_levels.insert(0, entries)
    precision_levels.append(model_entries)
    if stable:
        resolved.setdefault('Implementation', 'stable')

    precision: dict[str, Any] = {}
    for var in valid_vars:
        for entries in precision_levels:
            if var in entries:
                precision[var] = entries[var]
                break
            if 'default' in entries and entries is not model_entries and var not in OWN_DEFAULT_VARIABLES:
                precision[var] = entries['default']
                break
        else:
            precision[var] = AUTO if var in OWN_DEFAULT_VARIABLES else model['default']
    # types fixed by the model itself (quantization-aware training) win over type- and model-level
    # entries; only an explicit LayerName entry for the variable overrides them
    name_entries = precision_levels[0] if node.name in name_cfg else {}
    for var, t in node.attrs.get(FIXED_PRECISION_ATTR, {}).items():
        if var in valid_vars and var not in name_entries:
            precision[var] = t
    precision.update(node.attrs.get(INTERNAL_PRECISION_ATTR, {}))
    if resolved.get('Skip'):  # hls4ml removes a skipped softmax: its output keeps the input's type
        precision['result'] = AUTO
    resolved['Precision'] = precision
    return resolved


def config_from_graph(graph: Graph, granularity: str = 'model', default_precision: str = 'fixed<16,6>',
                      default_reuse_factor: int = 1, max_precision: str | None = None) -> dict:
    """Build an hls4ml-style config dict for a graph (the engine behind config_from_*_model)."""
    granularity = str(granularity).lower()
    if granularity not in ('model', 'type', 'name'):
        raise ConfigError(f"granularity must be 'model', 'type' or 'name', got {granularity!r}")
    default = parse_precision(default_precision)
    if default == AUTO:
        raise ConfigError("default_precision must be an explicit type such as 'fixed<16,6>', not 'auto'")
    _check_reuse(default_reuse_factor, 'default_reuse_factor')
    model_precision: dict[str, str] = {'default': str(default)}
    if max_precision is not None:
        maximum = parse_precision(max_precision)
        if maximum == AUTO:
            raise ConfigError("max_precision must be an explicit type, not 'auto'")
        model_precision['maximum'] = str(maximum)
    config: dict[str, Any] = {'Model': {
        'Precision': model_precision,
        'ReuseFactor': default_reuse_factor,
        'Strategy': 'Latency',
        'BramFactor': 1_000_000_000,
        'TraceOutput': False,
    }}

    def layer_entry(node: Node) -> dict:
        # like hls4ml, per-layer entries ask for inferred ('auto') types; inputs take the default
        precision = {var: 'auto' for var in precision_variables(node)}
        for var, t in node.attrs.get(FIXED_PRECISION_ATTR, {}).items():
            if var in precision:
                precision[var] = str(t)
        entry: dict[str, Any] = {}
        if precision:
            entry['Precision'] = precision
        entry['ReuseFactor'] = default_reuse_factor
        entry['Trace'] = False
        if node.op == 'Softmax':  # hls4ml's softmax keys and defaults (the table size stays each mode's own)
            entry.update({'Implementation': 'stable', 'Skip': False})
        if node.op in ('SimpleRNN', 'LSTM', 'GRU'):  # hls4ml's recurrent keys and defaults
            entry.update({'RecurrentReuseFactor': default_reuse_factor, 'Static': True})
        return entry

    if granularity == 'type':
        config['LayerType'] = {}
        for node in graph:
            if PART_OF_ATTR not in node.attrs:  # a softmax is hls4ml's class Softmax whatever layer made it
                key = 'Softmax' if node.op == 'Softmax' else node.source or node.op
                config['LayerType'].setdefault(key, layer_entry(node))
    elif granularity == 'name':
        config['LayerName'] = {node.name: layer_entry(node) for node in graph if PART_OF_ATTR not in node.attrs}
    return config
