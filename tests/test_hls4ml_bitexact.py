"""fpga4ml's predict() is bit-identical to hls4ml 1.3.0's C simulation under explicit ap_fixed types.

Each model is converted by both libraries from the same Keras model and the same config dict
(Vitis backend, io_parallel, Latency). hls4ml's project is compiled with g++ and its float64
`predict()` must equal fpga4ml's `predict()` exactly, on thousands of vectors that include
negative values, rounding ties and values far outside the input types (so inputs wrap and
saturate). The configs use widths from 4 to 16 bits and every rounding and overflow mode, so
products, accumulators and results really round, wrap and saturate (`trace()` proves it).
Every comparison has a negative control: one quantized weight (or one input LSB) changed in
fpga4ml must make the comparison fail. The types hls4ml resolved are checked against ours too,
so that a silently ignored config key cannot make two models agree by accident.

Known, intentional difference kept out of these tests: hls4ml writes each weight as decimal text
with F = W - I fractional digits (``'{:.Ff}'``) and its C simulation parses that text back, so a
float weight less than 10^-F below a grid point (or, for RND-type weights, next to a rounding tie)
quantizes one LSB differently in hls4ml; fpga4ml quantizes the exact float32 weight. The models
below nudge the few Keras weights that fall into such a band (`_make_text_safe`) and every test
asserts that no weight is left in one (`assert_weights_text_safe`). hls4ml's 'auto' type rules also
differ from fpga4ml's (we infer exact, interval-based accumulators): equality is promised under
explicit types, and for the 'name'-granularity config with a fused BatchNormalization only where
hls4ml's inferred Dense result type holds every value of the explicit accumulator type.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest

keras = pytest.importorskip('keras')

import fpga4ml  # noqa: E402
from fpga4ml.fixed import FixedType, parse_precision  # noqa: E402

L = keras.layers
# hls4ml 1.3 converts Keras variables with np.array(), which NumPy 2 flags on torch tensors
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')
MODEL_16_6 = {'Precision': 'fixed<16,6>', 'ReuseFactor': 1, 'Strategy': 'Latency'}
#: quantized weight arrays of each op and the precision variable that types them
WEIGHT_VARIABLES = {'Dense': {'kernel': 'weight', 'bias': 'bias'},
                    'Conv': {'kernel': 'weight', 'bias': 'bias'},
                    'Scale': {'scale': 'scale', 'bias': 'bias'},
                    'Activation': {'alpha': 'param'}}
#: hls4ml type names -> fpga4ml precision variables compared by `assert_same_types`
HLS_TYPE_VARIABLES = {'result_t': 'result', 'weight_t': 'weight', 'bias_t': 'bias', 'accum_t': 'accum',
                      'scale_t': 'scale', 'param_t': 'param'}


# --------------------------------------------------------------------------- helpers

def text_unsafe_weights(model) -> list[tuple[str, str, int, str]]:
    """(layer, weight, flat index, description) of every weight whose hls4ml decimal text
    ('{:.Ff}', F = max(0, W-I)) quantizes differently from the float weight itself."""
    bad = []
    for node in model.graph:
        for wname, var in WEIGHT_VARIABLES.get(node.op, {}).items():
            if wname not in node.qweights:
                continue
            t: FixedType = node.types[var]
            w = np.asarray(node.weights[wname], dtype=np.float64).ravel()
            digits = max(0, t.frac)
            text = np.array([float(f'{v:.{digits}f}') for v in w])
            for i in np.flatnonzero(t.quantize(w) != t.quantize(text)):
                what = f'{node.name}.{wname}[{i}] = {float(w[i])!r} ({t}, text {float(text[i])!r})'
                bad.append((node.name, wname, int(i), what))
    return bad


def assert_weights_text_safe(model) -> None:
    """No weight of `model` is affected by hls4ml's decimal weight text (see the module docstring)."""
    bad = text_unsafe_weights(model)
    assert not bad, ('weights that hls4ml quantizes differently after writing them as text: '
                     + '; '.join(b[3] for b in bad))


#: (op, weight) of a typed node -> the Keras layer variable it is computed from
KERAS_VARIABLE = {('Dense', 'kernel'): 'kernel', ('Dense', 'bias'): 'bias', ('Conv', 'kernel'): 'kernel',
                  ('Conv', 'bias'): 'bias', ('Scale', 'scale'): 'gamma',
                  ('Scale', 'bias'): 'beta', ('Activation', 'alpha'): 'alpha'}


def _nudge(kmodel, model, rng: np.random.Generator) -> bool:
    """Move the Keras weight behind every text-unsafe weight of `model` by a fraction of an LSB."""
    bad = text_unsafe_weights(model)
    for name, wname, index, _ in bad:
        node = model.graph[name]
        var = getattr(kmodel.get_layer(name), KERAS_VARIABLE[(node.op, wname)])
        values = np.array(keras.ops.convert_to_numpy(var))
        lsb = node.types[WEIGHT_VARIABLES[node.op][wname]].lsb
        values.reshape(-1)[index % values.size] += rng.uniform(0.1, 0.4) * lsb * rng.choice([-1.0, 1.0])
        var.assign(values)
    return bool(bad)


def _make_text_safe(kmodel, configs: list[dict], seed: int) -> list:
    """Convert `kmodel` under each config, nudging Keras weights until no weight is text-unsafe."""
    rng = np.random.default_rng(seed)
    for _ in range(20):
        models = [fpga4ml.convert_from_keras_model(kmodel, hls_config=cfg) for cfg in configs]
        if not any([_nudge(kmodel, m, rng) for m in models]):
            return models
    return models  # the tests' assert_weights_text_safe reports what is left


def make_inputs(rng: np.random.Generator, n: int, shape: tuple[int, ...], t: FixedType) -> np.ndarray:
    """Vectors for input type `t`: in range (both signs), exact rounding ties, and far outside."""
    lo, hi, lsb = t.min_value, t.max_value, t.lsb
    span = hi - lo
    k = n // 4
    parts = [
        rng.normal(0.0, span / 6, (k,) + shape),                      # mostly in range, both signs
        rng.uniform(lo, hi, (k,) + shape),                            # the whole range
        (rng.integers(t.min_mantissa, t.max_mantissa, (k,) + shape) + 0.5) * lsb,  # ties: half an LSB
        rng.uniform(lo - 2 * span, hi + 2 * span, (n - 3 * k,) + shape),  # wrap / saturate at the input
    ]
    x = np.concatenate(parts)
    return np.ascontiguousarray(x[rng.permutation(n)], dtype=np.float64)


def _as_list(y) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.float64) for a in (y if isinstance(y, list) else [y])]


def mismatch_report(ours_out, hls_out, inputs: list[np.ndarray], output_names: list[str]) -> str | None:
    """None when all outputs are identical; else which vector and output differ, with both values."""
    for name, o, h in zip(output_names, _as_list(ours_out), _as_list(hls_out)):
        o, h = o.reshape(len(o), -1), h.reshape(len(h), -1)
        if o.shape != h.shape:
            return f'output {name!r}: fpga4ml shape {o.shape}, hls4ml shape {h.shape}'
        bad = np.argwhere(o != h)
        if bad.size:
            v, j = (int(i) for i in bad[0])
            rows = len(np.unique(bad[:, 0]))
            x = '; '.join(f'{a[v].tolist()}' for a in inputs)
            return (f'output {name!r} differs from hls4ml C simulation in {len(bad)} values ({rows} of {len(o)} '
                    f'vectors); first: vector {v}, output index {j}: fpga4ml {float(o[v, j])!r}, '
                    f'hls4ml {float(h[v, j])!r}; input vector {v}: {x}')
    return None


@dataclass
class Case:
    """One Keras model + config, converted by fpga4ml (`ours`) and hls4ml (`theirs`, compiling)."""

    kmodel: Any
    cfg: dict
    ours: Any
    theirs: Any
    compiled: Future
    inputs: list[np.ndarray]
    _hls_out: list = field(default_factory=list)

    def hls_predict(self) -> list[np.ndarray]:
        """hls4ml's C-simulation outputs on `inputs` (float64), computed once."""
        if not self._hls_out:
            self.compiled.result()
            x = self.inputs[0] if len(self.inputs) == 1 else self.inputs
            self._hls_out.extend(_as_list(self.theirs.predict(x)))
        return self._hls_out


def assert_bit_exact(case: Case) -> None:
    """No weight is text-unsafe, and fpga4ml equals hls4ml's C simulation on every vector and output."""
    assert_weights_text_safe(case.ours)
    ours = case.ours.predict(case.inputs if len(case.inputs) > 1 else case.inputs[0])
    report = mismatch_report(ours, case.hls_predict(), case.inputs, case.ours.get_output_names())
    assert report is None, report


def assert_negative_control(case: Case, perturb: Callable[[Any], None] | None = None,
                            inputs: list[np.ndarray] | None = None) -> None:
    """A copy of fpga4ml's model changed by `perturb` (or run on changed `inputs`) must disagree with hls4ml."""
    model = copy.deepcopy(case.ours)
    if perturb is not None:
        perturb(model)
        model._emulator = None  # rebuild the kernels from the changed graph
    xs = inputs if inputs is not None else case.inputs
    ours = model.predict(xs if len(xs) > 1 else xs[0])
    report = mismatch_report(ours, case.hls_predict(), case.inputs, model.get_output_names())
    assert report is not None, 'negative control: the perturbed fpga4ml model still equals hls4ml'


def bump_weight(layer: str, weight: str = 'kernel', index: tuple[int, ...] = (0, 0),
                delta: int = 1) -> Callable[[Any], None]:
    """A perturbation: add `delta` LSBs (default one) to one quantized weight mantissa."""
    def perturb(model):
        model.graph[layer].qweights[weight][index] += delta
    return perturb


def bump_entry(layer: str, address: int, delta: int = 1) -> Callable[[Any], None]:
    """A perturbation: add `delta` LSBs to one entry of a layer's table 'f'."""
    def perturb(model):
        model.graph[layer].attrs['tables']['f'].values[address] += delta
    return perturb


def assert_same_types(case: Case, skip: tuple[tuple[str, str], ...] = ()) -> None:
    """Every type hls4ml resolved for a layer equals the one fpga4ml resolved (layers matched by name)."""
    nodes = {n.name: n for n in case.ours.graph}
    for layer in case.theirs.get_layers():
        node = nodes.get(layer.name)
        assert node is not None, f'hls4ml layer {layer.name!r} ({layer.class_name}) has no fpga4ml node'
        for hls_name, var in HLS_TYPE_VARIABLES.items():
            if hls_name not in layer.types or (layer.name, var) in skip:
                continue
            if var not in node.types:
                continue  # e.g. the theta of hls4ml's ThresholdedReLU, which fpga4ml's relu does not need
            theirs = parse_precision(str(layer.types[hls_name].precision))
            assert theirs == node.types[var], (
                f'layer {layer.name!r}: hls4ml {hls_name} = {theirs}, fpga4ml {var} = {node.types[var]}')


def overflows(case: Case) -> dict[str, int]:
    """Per-layer count of values that wrapped or saturated on the case's inputs (fpga4ml trace)."""
    _, traced = case.ours.trace(case.inputs if len(case.inputs) > 1 else case.inputs[0])
    return {name: st.overflow for name, st in traced.stats.items()}


# --------------------------------------------------------------------------- models and configs

def _set_weights(layer, rng: np.random.Generator, scale: float, bias_scale: float) -> None:
    kernel = rng.normal(0.0, scale, tuple(layer.kernel.shape)).astype(np.float32)
    if layer.bias is None:
        layer.set_weights([kernel])
    else:
        layer.set_weights([kernel, rng.normal(0.0, bias_scale, tuple(layer.bias.shape)).astype(np.float32)])


def jsc_mlp(rng: np.random.Generator):
    """The jet-tagging MLP: Dense(64, relu) -> Dense(32, relu) -> Dense(5)."""
    x = keras.Input((16,), name='x')
    h = L.Dense(64, activation='relu', name='fc1')(x)
    h = L.Dense(32, activation='relu', name='fc2')(h)
    m = keras.Model(x, L.Dense(5, name='fc3')(h))
    for name, s in (('fc1', 0.5), ('fc2', 0.25), ('fc3', 0.3)):
        _set_weights(m.get_layer(name), rng, s, 0.5)
    k = keras.ops.convert_to_numpy(m.get_layer('fc2').kernel).copy()
    k[1, :4] = [1.6, -2.3, 1.2, -1.1]  # weights outside fixed<6,1>: they wrap in the narrow config
    m.get_layer('fc2').kernel.assign(k)
    return m


JSC_NARROW = {
    'Model': MODEL_16_6,
    'LayerName': {
        'x': {'Precision': {'result': 'fixed<10,3,RND,SAT>'}},
        'fc1': {'Precision': {'weight': 'fixed<8,2,RND,SAT>', 'bias': 'fixed<12,3,RND>', 'accum': 'fixed<10,4,RND,SAT>',
                              'result': 'fixed<9,4,RND_CONV,SAT>'}},
        'fc1_relu': {'Precision': {'result': 'ufixed<8,3,RND,SAT>'}},
        'fc2': {'Precision': {'weight': 'fixed<6,1>', 'bias': 'fixed<10,2,RND>', 'accum': 'fixed<9,4>',
                              'result': 'fixed<8,4,RND,WRAP>'}},
        'fc2_relu': {'Precision': {'result': 'fixed<8,3,TRN,SAT_SYM>'}},
        'fc3': {'Precision': {'weight': 'fixed<9,2,RND_ZERO,SAT_SYM>', 'bias': 'fixed<8,2,RND_INF,SAT>',
                              'accum': 'fixed<12,5,RND_CONV,SAT_SYM>', 'result': 'fixed<8,3,TRN_ZERO,SAT>'}},
    },
}


def bn_model(rng: np.random.Generator):
    """Dense(8) -> BatchNormalization (random statistics, some negative gammas) -> ReLU -> Dense(4)."""
    x = keras.Input((10,), name='x')
    h = L.Dense(8, name='dense')(x)
    h = L.BatchNormalization(name='bn')(h)
    h = L.ReLU(name='relu')(h)
    m = keras.Model(x, L.Dense(4, name='out')(h))
    _set_weights(m.get_layer('dense'), rng, 0.6, 0.5)
    _set_weights(m.get_layer('out'), rng, 0.5, 0.5)
    n = 8
    gamma = 1.0 + 0.6 * rng.normal(size=n)
    m.get_layer('bn').set_weights([a.astype(np.float32) for a in (
        gamma, 0.7 * rng.normal(size=n), rng.normal(size=n), np.abs(rng.normal(size=n)) + 0.1)])
    return m


BN_UNFUSED = {
    'Model': MODEL_16_6,
    'LayerName': {
        'x': {'Precision': {'result': 'fixed<12,4,RND,SAT>'}},
        'dense': {'Precision': {'weight': 'fixed<8,2,RND>', 'bias': 'fixed<8,3>', 'accum': 'fixed<14,6,RND,SAT>',
                                'result': 'fixed<10,5,RND_CONV,SAT>'}},
        'bn': {'Precision': {'scale': 'fixed<8,3,RND,SAT>', 'bias': 'fixed<8,3,RND>', 'result': 'fixed<10,5,RND,SAT>'}},
        'relu': {'Precision': {'result': 'ufixed<8,3,RND,SAT>'}},
        'out': {'Precision': {'weight': 'fixed<8,2>', 'bias': 'fixed<8,2>', 'accum': 'fixed<16,6>',
                              'result': 'fixed<12,5,RND,SAT>'}},
    },
}


def explicit_config(precisions: dict[str, dict[str, str]]) -> dict:
    """An hls4ml config: the fixed<16,6> model default plus the given explicit per-layer precisions."""
    return {'Model': MODEL_16_6, 'LayerName': {layer: {'Precision': dict(p)} for layer, p in precisions.items()}}


def name_config(kmodel, precisions: dict[str, dict[str, str]]) -> dict:
    """A granularity='name' config (every layer 'auto') with the given explicit per-layer precisions."""
    cfg = fpga4ml.config_from_keras_model(kmodel, granularity='name')
    for layer, entries in precisions.items():
        cfg['LayerName'][layer]['Precision'].update(entries)
    return cfg


def bn_fused_config(kmodel) -> dict:
    """A granularity='name' config with explicit types where the rules differ; the Dense result stays
    'auto', so BatchNormalization is fused."""
    return name_config(kmodel, {
        'x': {'result': 'fixed<12,4,RND,SAT>'},
        'dense': {'weight': 'fixed<10,3,RND>', 'bias': 'fixed<10,4>', 'accum': 'fixed<12,5,RND,SAT>'},
        'relu': {'result': 'ufixed<9,4,RND,SAT>'},
        'out': {'weight': 'fixed<8,2>', 'bias': 'fixed<8,2>', 'accum': 'fixed<16,6>', 'result': 'fixed<12,5,RND,SAT>'},
    })


def activation_model(rng: np.random.Generator):
    """Dense(use_bias=False) feeding LeakyReLU, ReLU, relu6, PReLU, linear and Dense(leaky_relu) outputs."""
    x = keras.Input((12,), name='x')
    h = L.Dense(12, use_bias=False, name='d0')(x)
    outs = [L.LeakyReLU(negative_slope=0.15, name='lrelu')(h), L.ReLU(name='relu')(h),
            L.Activation('relu6', name='relu6')(h), L.PReLU(name='prelu')(h),
            L.Activation('linear', name='lin')(h), L.Dense(6, activation='leaky_relu', name='d1')(h)]
    m = keras.Model(x, outs)
    _set_weights(m.get_layer('d0'), rng, 0.8, 0.0)
    _set_weights(m.get_layer('d1'), rng, 0.4, 0.5)
    m.get_layer('prelu').set_weights([rng.normal(0.0, 0.8, (12,)).astype(np.float32)])
    return m


ACTIVATIONS = {
    'Model': MODEL_16_6,
    'LayerName': {
        'x': {'Precision': {'result': 'fixed<10,3,RND,SAT>'}},
        'd0': {'Precision': {'weight': 'fixed<8,1,RND>', 'accum': 'fixed<14,5,TRN_ZERO>', 'result': 'fixed<12,5>'}},
        'lrelu': {'Precision': {'param': 'fixed<8,1,RND>', 'result': 'fixed<9,3,RND,SAT>'}},
        'relu': {'Precision': {'result': 'ufixed<7,3,RND_CONV,SAT>'}},
        'relu6': {'Precision': {'result': 'fixed<7,3>'}},  # 6 and values near it wrap
        'prelu': {'Precision': {'param': 'fixed<6,2,RND,SAT>', 'result': 'fixed<10,4,RND_INF,SAT_SYM>'}},
        'lin': {'Precision': {'result': 'fixed<6,2,RND_MIN_INF,SAT_ZERO>'}},
        'd1': {'Precision': {'weight': 'fixed<7,1>', 'bias': 'fixed<8,3>', 'accum': 'fixed<12,4,RND,SAT_ZERO>',
                             'result': 'fixed<10,4>'}},
        'd1_leaky_relu': {'Precision': {'param': 'fixed<8,0,RND>', 'result': 'fixed<8,3,RND,SAT>'}},
    },
}


def table_model(rng: np.random.Generator):
    """Dense into sigmoid and tanh Activations and a Dense(activation='sigmoid'): hls4ml's table activations."""
    x = keras.Input((10,), name='x')
    h = L.Dense(10, name='d0')(x)
    outs = [L.Activation('sigmoid', name='sig')(h), L.Activation('tanh', name='th')(h),
            L.Dense(4, activation='sigmoid', name='d1')(h)]
    m = keras.Model(x, outs)
    _set_weights(m.get_layer('d0'), rng, 1.5, 0.5)
    _set_weights(m.get_layer('d1'), rng, 0.6, 0.3)
    return m


def cnn_table_model(rng: np.random.Generator):
    """A CNN with a sigmoid Activation after one Conv2D and tanh inside the next: tables over feature maps."""
    x = keras.Input((6, 6, 2), name='x')
    h = L.Conv2D(3, 3, name='c0')(x)
    h = L.Activation('sigmoid', name='cs')(h)
    h = L.Conv2D(2, 2, activation='tanh', name='c1')(h)
    m = keras.Model(x, L.Dense(3, name='cd')(L.Flatten(name='flat')(h)))
    for layer, scale in (('c0', 0.8), ('c1', 1.5), ('cd', 0.7)):
        _set_weights(m.get_layer(layer), rng, scale, 0.3)
    return m


#: TableSemantics 'hls4ml' on a CNN: the tables read every pixel of a feature map
CNN_TABLES = {
    'Model': {**MODEL_16_6, 'TableSemantics': 'hls4ml'},
    'LayerName': {
        'x': {'Precision': {'result': 'fixed<10,3,RND,SAT>'}},
        'c0': {'Precision': {'weight': 'fixed<8,2,RND>', 'accum': 'fixed<16,5>', 'result': 'fixed<12,5>'}},
        'cs': {'Precision': {'result': 'ufixed<9,0,RND,SAT>'}, 'TableSize': 512},
        'c1': {'Precision': {'weight': 'fixed<8,3,RND>', 'accum': 'fixed<16,6>', 'result': 'fixed<12,4>'}},
        'c1_tanh': {'Precision': {'result': 'fixed<10,1,RND,SAT>'}},
    },
}


#: TableSemantics 'hls4ml': hls4ml's own tables, with its default and with configured sizes
TABLES = {
    'Model': {**MODEL_16_6, 'TableSemantics': 'hls4ml'},
    'LayerName': {
        'x': {'Precision': {'result': 'fixed<12,4,RND,SAT>'}},
        'd0': {'Precision': {'weight': 'fixed<10,2,RND>', 'accum': 'fixed<18,7>', 'result': 'fixed<14,6>'}},
        'sig': {'Precision': {'result': 'ufixed<10,0,RND,SAT>'}},
        # hls4ml 1.3.0 ignores a configured 'table' precision of a Keras activation (keeps ap_fixed<18,8>)
        'th': {'Precision': {'result': 'fixed<9,1,RND_CONV,SAT>'}, 'TableSize': 2048},
        'd1': {'Precision': {'weight': 'fixed<8,1>', 'bias': 'fixed<8,2>', 'accum': 'fixed<16,6>',
                             'result': 'fixed<12,5>'}},
        'd1_sigmoid': {'Precision': {'result': 'fixed<8,1>'}, 'TableSize': 256},
    },
}


def merge_model():
    """Two inputs into Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, plus one chained Add."""
    a, b = keras.Input((8,), name='a'), keras.Input((8,), name='b')
    add = L.Add(name='add')([a, b])
    mul = L.Multiply(name='mul')([a, b])
    outs = [add, L.Subtract(name='sub')([a, b]), mul, L.Average(name='avg')([a, b]),
            L.Maximum(name='maximum')([a, b]), L.Minimum(name='minimum')([a, b]),
            L.Concatenate(name='cat')([a, b]), L.Add(name='add_mul')([add, mul])]
    return keras.Model([a, b], outs)


MERGES = {
    'Model': MODEL_16_6,
    'LayerName': {
        'a': {'Precision': {'result': 'fixed<10,4,RND,SAT>'}},
        'b': {'Precision': {'result': 'fixed<9,5>'}},  # TRN, WRAP
        'add': {'Precision': {'result': 'fixed<9,5,RND,SAT>'}},
        'sub': {'Precision': {'result': 'fixed<9,4,RND_CONV>'}},
        'mul': {'Precision': {'result': 'fixed<12,6,RND,SAT_SYM>'}},
        'avg': {'Precision': {'result': 'fixed<9,4,RND_ZERO,SAT>'}},
        'maximum': {'Precision': {'result': 'ufixed<8,4,TRN_ZERO,SAT>'}},
        'minimum': {'Precision': {'result': 'fixed<8,4,RND,SAT>'}},
        'cat': {'Precision': {'result': 'fixed<8,4,RND>'}},
        'add_mul': {'Precision': {'result': 'fixed<10,5,RND_INF,SAT_ZERO>'}},
    },
}


def int_model(rng: np.random.Generator):
    """Dense and merges whose accumulator and result types are hls4ml integer types (ap_int/ap_uint)."""
    a, b = keras.Input((6,), name='a'), keras.Input((6,), name='b')
    m = keras.Model([a, b], [L.Dense(5, name='d')(a), L.Subtract(name='sub')([a, b]), L.Average(name='avg')([a, b])])
    _set_weights(m.get_layer('d'), rng, 1.5, 1.0)
    return m


INT_TYPES = {
    'Model': MODEL_16_6,
    'LayerName': {
        'a': {'Precision': {'result': 'fixed<10,4,RND,SAT>'}},
        'b': {'Precision': {'result': 'fixed<9,5>'}},
        'd': {'Precision': {'weight': 'fixed<8,3,RND>', 'bias': 'fixed<8,3>', 'accum': 'int<7>', 'result': 'int<5>'}},
        'sub': {'Precision': {'result': 'int<5>'}},
        'avg': {'Precision': {'result': 'uint<4>'}},
    },
}


# --------------------------------------------------------------------------- fixture

def _input_type(cfg: dict, name: str) -> FixedType:
    entry = cfg.get('LayerName', {}).get(name, {}).get('Precision', {}).get('result', 'auto')
    return parse_precision(cfg['Model']['Precision'] if entry == 'auto' else entry)


def import_hls4ml():
    """hls4ml, failing the test when it or g++ is missing (both are test dependencies)."""
    try:
        import hls4ml
    except ImportError:
        pytest.fail('hls4ml==1.3.0 is a test dependency (pip install fpga4ml[test]) but is not installed')
    if shutil.which('g++') is None:
        pytest.fail('g++ is required to compile hls4ml C simulations')
    return hls4ml


@contextmanager
def compiled_cases(specs: dict, n_vectors: dict, rng: np.random.Generator, tmp_path_factory):
    """Convert each (keras model, config, our model) of `specs` with hls4ml and compile the projects,
    two at a time in the background (g++ runs in subprocesses); yields {name: Case}."""
    hls4ml = import_hls4ml()
    pool = ThreadPoolExecutor(2)
    out = {}
    try:
        for case_name, (km, cfg, ours) in specs.items():
            theirs = hls4ml.converters.convert_from_keras_model(
                km, hls_config=copy.deepcopy(cfg), backend='Vitis', io_type='io_parallel',
                output_dir=str(tmp_path_factory.mktemp(case_name) / 'prj'), allow_da_fallback=False)
            theirs.write()
            # ModelGraph.compile() is write() + _compile(); the write stays in this thread
            future = pool.submit(theirs._compile)
            inputs = [make_inputs(rng, n_vectors[case_name], ours.graph[name].shape, _input_type(cfg, name))
                      for name in ours.get_input_names()]
            out[case_name] = Case(km, cfg, ours, theirs, future, inputs)
        yield out
    finally:
        pool.shutdown(wait=True)


@pytest.fixture(scope='module')
def cases(tmp_path_factory):
    """All models converted by both libraries; hls4ml projects compile two at a time in the background."""
    import_hls4ml()
    rng = np.random.default_rng(2024)
    jsc, bn, act, merge, ints = jsc_mlp(rng), bn_model(rng), activation_model(rng), merge_model(), int_model(rng)
    tables, cnn_tables = table_model(rng), cnn_table_model(rng)
    fused_cfg = bn_fused_config(bn)
    specs = {}  # name -> (keras model, config, our model)
    for name, km, cfgs, seed in (('jsc', jsc, {'jsc_16_6': {'Model': MODEL_16_6}, 'jsc_narrow': JSC_NARROW}, 1),
                                 ('bn', bn, {'bn_unfused': BN_UNFUSED, 'bn_fused': fused_cfg}, 2),
                                 ('act', act, {'activations': ACTIVATIONS}, 3),
                                 ('merge', merge, {'merges': MERGES}, 4),
                                 ('ints', ints, {'int_types': INT_TYPES}, 5),
                                 ('tables', tables, {'tables_hls4ml': TABLES}, 6),
                                 ('cnn_tables', cnn_tables, {'cnn_tables_hls4ml': CNN_TABLES}, 7)):
        ours = _make_text_safe(km, list(cfgs.values()), seed)
        for (case_name, cfg), model in zip(cfgs.items(), ours):
            specs[case_name] = (km, cfg, model)

    n_vectors = {'jsc_16_6': 10000, 'jsc_narrow': 10000, 'bn_unfused': 6000, 'bn_fused': 6000,
                 'activations': 6000, 'merges': 6000, 'int_types': 4000, 'tables_hls4ml': 10000,
                 'cnn_tables_hls4ml': 10000}
    with compiled_cases(specs, n_vectors, rng, tmp_path_factory) as out:
        yield out


# --------------------------------------------------------------------------- tests

def test_jsc_mlp_model_level_16_6(cases):
    """fixed<16,6> everywhere: every product is truncated into a 16-bit accumulator that wraps."""
    case = cases['jsc_16_6']
    assert_same_types(case)
    assert_bit_exact(case)
    ovf = overflows(case)
    assert ovf['x'] > 0, ovf  # the inputs far outside fixed<16,6> wrap
    assert_negative_control(case, bump_weight('fc1', index=(3, 7)))


def test_jsc_mlp_narrow_mixed_types(cases):
    """8-12-bit per-layer types with RND/RND_CONV/RND_ZERO/RND_INF and SAT/SAT_SYM/WRAP everywhere."""
    case = cases['jsc_narrow']
    assert_same_types(case)
    assert_bit_exact(case)
    ovf = overflows(case)
    for layer in ('x', 'fc1', 'fc2', 'fc3'):  # input saturation, accumulator/result saturation and wrap
        assert ovf[layer] > 0, (layer, ovf)
    assert_negative_control(case, bump_weight('fc3', index=(0, 0)))
    # the fc1 bias has 3 more fractional bits than the accumulator: bump it by 4 accumulator LSBs
    assert_negative_control(case, bump_weight('fc1', 'bias', index=(5,), delta=4 << 3))


def test_dense_batchnorm_relu_unfused(cases):
    """An explicit Dense result keeps BatchNormalization separate: x*scale+bias computed exactly, one cast."""
    case = cases['bn_unfused']
    assert 'bn' in [n.name for n in case.ours.graph]
    assert 'bn' in [layer.name for layer in case.theirs.get_layers()]
    assert_same_types(case)
    assert_bit_exact(case)
    ovf = overflows(case)
    assert ovf['bn'] > 0 and ovf['x'] > 0, ovf
    assert_negative_control(case, bump_weight('bn', 'scale', index=(2,)))


def test_dense_batchnorm_relu_fused_name_config(cases):
    """granularity='name' (Dense result 'auto'): both libraries fold BatchNormalization into the Dense."""
    case = cases['bn_fused']
    assert 'bn' not in [n.name for n in case.ours.graph]
    assert 'bn' not in [layer.name for layer in case.theirs.get_layers()]
    # the Dense result is inferred by each library's own rules: ours is the accumulator type, hls4ml's
    # must hold every accumulator value (same or more fractional and integer bits) for equality
    theirs_dense = {layer.name: layer for layer in case.theirs.get_layers()}['dense']
    inferred = parse_precision(str(theirs_dense.types['result_t'].precision))
    accum = case.ours.graph['dense'].types['accum']
    assert case.ours.graph['dense'].types['result'] == accum
    assert inferred.frac >= accum.frac and inferred.integer >= accum.integer, (inferred, accum)
    assert_same_types(case, skip=(('dense', 'result'),))
    assert_bit_exact(case)
    ovf = overflows(case)
    assert ovf['dense'] > 0, ovf  # the narrow accumulator saturates
    assert_negative_control(case, bump_weight('dense', index=(4, 1)))


def test_relu_family_and_linear_activations(cases):
    """LeakyReLU, ReLU layer, relu6, PReLU and linear Activation after a Dense without bias."""
    case = cases['activations']
    assert_same_types(case, skip=(('d0', 'bias'),))  # hls4ml types a missing bias as ap_uint<1> zeros
    assert_bit_exact(case)
    ovf = overflows(case)
    for layer in ('x', 'relu6', 'lin', 'prelu'):
        assert ovf[layer] > 0, (layer, ovf)
    assert_negative_control(case, bump_weight('d0', index=(2, 3)))
    assert_negative_control(case, bump_weight('prelu', 'alpha', index=(5,)))


def test_merges_two_inputs(cases):
    """All seven merges with narrow SAT/WRAP result types, and inputs that wrap (b) or saturate (a)."""
    case = cases['merges']
    assert_same_types(case)
    assert_bit_exact(case)
    ovf = overflows(case)
    for layer in ('a', 'b', 'add', 'sub', 'mul', 'avg', 'maximum', 'minimum', 'cat', 'add_mul'):
        assert ovf[layer] > 0, (layer, ovf)
    # negative control: flip the bit of weight 1.0 in one input value (the WRAP concat must change)
    a, b = (x.copy() for x in case.inputs)
    t = case.ours.graph['a'].result_type
    q = float(t.to_float(t.quantize(a[0, 0])))
    a[0, 0] = q - 1.0 if q >= 0 else q + 1.0
    assert_negative_control(case, inputs=[a, b])


def test_integer_types_truncate_toward_zero(cases):
    """hls4ml's int<W>/uint<W> are ap_int/ap_uint: a fixed value converts by truncation toward zero.

    ap_int_base(const ap_fixed_base&) takes op.to_ap_int_base() with Cnative=true, which adds one
    to the floor of a negative value with non-zero fractional bits (ap_int_base.h:324-327,
    ap_fixed_base.h:796-826); the result then wraps. That is fixed<W,W,TRN_ZERO,WRAP>, not the
    floor of fixed<W,W>. (From a double, ap_int_base(double) also truncates toward zero but maps
    negative values above -0.5 to +1 (ap_int_base.h:273-318); no input here has an integer type.)
    """
    case = cases['int_types']
    assert_same_types(case)
    ovf = overflows(case)
    for layer in ('d', 'sub', 'avg'):
        assert ovf[layer] > 0, (layer, ovf)
    assert parse_precision('int<5>').rounding == 'TRN_ZERO'
    assert_bit_exact(case)
    assert_negative_control(case, bump_weight('d', index=(1, 2)))


def test_hls4ml_table_semantics_sigmoid_tanh(cases):
    """TableSemantics 'hls4ml': sigmoid and tanh tables (entries, index x*N/R truncated toward zero,
    clamped) equal hls4ml's C simulation, with its defaults (1024 entries, ap_fixed<18,8>) and with
    configured TableSizes."""
    case = cases['tables_hls4ml']
    assert_same_types(case)
    assert_bit_exact(case)
    assert len(case.ours.graph['sig'].attrs['tables']['f']) == 1024
    assert len(case.ours.graph['th'].attrs['tables']['f']) == 2048
    assert str(case.ours.graph['sig'].types['table']) == 'fixed<18,8>'
    theirs = {layer.name: layer for layer in case.theirs.get_layers()}
    for layer in ('sig', 'th', 'd1_sigmoid'):  # hls4ml resolved the same table types and sizes
        assert parse_precision(str(theirs[layer].types['table_t'].precision)) == case.ours.graph[layer].types['table']
        assert theirs[layer].get_attr('table_size') == len(case.ours.graph[layer].attrs['tables']['f'])
    ovf = overflows(case)
    assert ovf['x'] > 0, ovf
    assert_negative_control(case, bump_entry('sig', 512))  # the entry of inputs in (-1/64, 1/64)
    assert_negative_control(case, bump_entry('th', 1024, 4))  # one result LSB (the table has 2 bits more)


def test_hls4ml_table_semantics_cnn_sigmoid_tanh(cases):
    """TableSemantics 'hls4ml' on a CNN (a sigmoid Activation and a Conv2D's tanh over feature maps) equals
    hls4ml's C simulation on 10,000 images."""
    case = cases['cnn_tables_hls4ml']
    assert_same_types(case)
    assert_bit_exact(case)
    assert len(case.ours.graph['cs'].attrs['tables']['f']) == 512
    assert len(case.ours.graph['c1_tanh'].attrs['tables']['f']) == 1024
    ovf = overflows(case)
    assert ovf['x'] > 0, ovf
    assert_negative_control(case, bump_entry('cs', 256))  # the entry of inputs near 0
    assert_negative_control(case, bump_weight('c1', index=(0, 1, 2, 1)))
