"""Verilog back end vs da4ml 0.6.0 and alkaid 0.8.2 on the same integer networks, in one run.

Networks (all 16 -> 64 -> 32 -> 32 -> 5, fixed seeds, exact accumulators):

* ``dense``: 6-bit weights and biases fixed<6,1>, inputs fixed<10,5>, ReLU into ufixed<6,0>
  (truncation, saturation) -- the quantized JSC MLP;
* ``pruned70``: the same with 70 % of the weights zero;
* ``int8``: 8-bit weights and biases fixed<8,1>, ReLU into ufixed<8,1> (wider activations);
* ``hgq``: an HGQ2 QDense MLP with a random bit width for every weight and bias (0 bits: pruned) and
  per-element input quantizers, converted by fpga4ml's HGQ2 front end.

fpga4ml builds each network with its Verilog back end; the peers get the same integer network
(fpga4ml's quantized weights and every cast as per-element k, i, f; bench/peers/network.py) and
build it in a child process (bench/peers/peer_worker.py): da4ml and alkaid are LGPLv3 and never
imported here. All three must compute the same outputs on every one of the check inputs
(fpga4ml's emulator against each peer's own interpreter). Then all three are synthesized with the
same Yosys script (fpga4ml.synth, family xcup by default).

Printed per network: LUT, FF, CARRY, pipeline latency (clock cycles from input to output),
Yosys' critical-path estimate (fpga4ml.synth's delay model, the same for all), generation time
(fpga4ml: convert + write; peers: trace + optimize + write; each after a warm-up build of a small
network, so imports and first-call compilation are not timed) and fpga4ml / best
peer. da4ml pipelines every `--da4ml-cutoff` adder levels; alkaid every `--alkaid-cutoff` ns of
its own delay model.

    python bench/bench_verilog.py                       # all networks, synthesized (minutes each)
    python bench/bench_verilog.py --quick               # generation, stages, cost estimates only
    python bench/bench_verilog.py --networks dense,hgq --json out.json

The peers come with the `bench` extra (pip install 'fpga4ml[bench]': da4ml==0.6.0, alkaid==0.8.2).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers.network import export_ops, run_peer  # noqa: E402

SIZES = (16, 64, 32, 32, 5)
INPUT_TYPE = 'fixed<10,5>'
WEIGHT_TYPE = 'fixed<6,1>'                     # 6 bits, step 2^-5, range [-1, 1)
RELU_TYPE = 'ufixed<6,0,TRN,SAT>'
PEERS = ('da4ml', 'alkaid')
N_CHECK = 3000                                 # check inputs per network
SYNTH_KEYS = ('LUT', 'FF', 'CARRY', 'DSP', 'critical_delay_ns', 'logic_levels')


def weights(seed: int, sparsity: float, bits: int = 6) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed-seed weights and biases on a `bits`-bit grid in [-1, 1) (lecun-uniform-like scale), a fraction zero."""
    rng = np.random.default_rng(seed)
    scale = 2 ** (bits - 1)
    layers = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        limit = np.sqrt(3.0 / a) * 1.5
        w = np.clip(np.round(rng.uniform(-limit, limit, (a, b)) * scale), -scale, scale - 1) / scale
        w[rng.random(w.shape) < sparsity] = 0
        bias = np.clip(np.round(rng.uniform(-0.5, 0.5, b) * scale), -scale, scale - 1) / scale
        layers.append((w.astype(np.float32), bias.astype(np.float32)))
    return layers


def convert_fpga4ml(layers, out: Path, clock_period: float, weight_type: str = WEIGHT_TYPE,
                    input_type: str = INPUT_TYPE, relu_type: str = RELU_TYPE, backend: str = 'Verilog',
                    project_name: str = 'jsc_fpga4ml'):
    """The network (Dense + ReLU layers, sizes from the weights) as a converted fpga4ml model.

    Types are fpga4ml type strings (or (string, anything) pairs, as bench_write_scale passes them).
    """
    from fpga4ml.convert import convert_graph
    from fpga4ml.ir import Graph, Node

    input_type, relu_type = (t[0] if isinstance(t, tuple) else t for t in (input_type, relu_type))

    g = Graph()
    g.add(Node('x', 'Input', [], (layers[0][0].shape[0],)))
    prev, names = 'x', {}
    for n, (w, b) in enumerate(layers):
        g.add(Node(f'fc{n}', 'Dense', [prev], (w.shape[1],), weights={'kernel': w, 'bias': b}))
        prev = f'fc{n}'
        if n < len(layers) - 1:
            g.add(Node(f'relu{n}', 'Activation', [prev], (w.shape[1],), attrs={'function': 'relu'}))
            prev = names[f'relu{n}'] = f'relu{n}'
    g.inputs, g.outputs = ['x'], [prev]
    cfg = {'Model': {'Precision': {'default': weight_type, 'accum': 'auto', 'result': 'auto'}},
           'LayerName': {'x': {'Precision': {'result': input_type}},
                         **{n: {'Precision': {'result': relu_type}} for n in names}}}
    return convert_graph(g, cfg, backend=backend, output_dir=str(out), project_name=project_name,
                         clock_period=clock_period)


def build_fpga4ml(layers, out: Path, clock_period: float):
    """The 6-bit network through the Verilog back end, written; returns (model, seconds)."""
    start = time.perf_counter()
    model = convert_fpga4ml(layers, out, clock_period)
    model.write()
    return model, time.perf_counter() - start


def exact_weight_type(layers) -> str:
    """The narrowest signed fixed type holding every weight and bias of the layers exactly (at most 24 fractional bits)."""
    values = np.concatenate([np.ravel(a) for layer in layers for a in layer]).astype(np.float64)
    frac = next(f for f in range(25) if f == 24 or np.all(values * 2.0 ** f == np.round(values * 2.0 ** f)))
    mantissas = np.round(values * 2.0 ** frac).astype(np.int64)
    width = max(int(mantissas.max()).bit_length(), int(-mantissas.min() - 1).bit_length(), 1) + 1
    return f'fixed<{width},{width - frac}>'


def build_da4ml(layers, out: Path, clock_period: float, input_type=INPUT_TYPE, relu_type=RELU_TYPE,
                latency_cutoff: float = 2.0):
    """The same network built by da4ml in a child process; returns (result with .cost, latency, seconds).

    The weights are passed exactly (exact_weight_type); used by bench_write_scale.py.
    """
    from types import SimpleNamespace

    model = convert_fpga4ml(layers, Path(out) / 'fpga4ml', clock_period, exact_weight_type(layers), input_type,
                            relu_type)
    zeros = np.zeros((1, layers[0][0].shape[0]))
    res = run_peer('da4ml', export_ops(model), zeros, Path(out), 'jsc_da4ml', clock_period, latency_cutoff)
    return SimpleNamespace(cost=res['cost']), res['stages'], res['seconds']


def hgq_mlp(seed: int = 0):
    """An HGQ2 QDense MLP of SIZES with a random width for every weight, bias and input element."""
    import keras
    from hgq.config import QuantizerConfigScope
    from hgq.constraints import MinMax
    from hgq.layers import QDense
    from hgq.utils import trace_minmax

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    scopes = (QuantizerConfigScope(place='weight', bc=MinMax(0, 6)), QuantizerConfigScope(place='bias', bc=MinMax(0, 8)),
              QuantizerConfigScope(place='datalane', ic=MinMax(-2, 4), fc=MinMax(0, 6)))
    with scopes[0], scopes[1], scopes[2]:
        x = inp = keras.Input((SIZES[0],))
        for n, units in enumerate(SIZES[1:]):
            x = QDense(units, activation='relu' if n < len(SIZES) - 2 else None, name=f'fc{n}')(x)
        model = keras.Model(inp, x)
    for layer in model.layers[1:]:
        for q, ranges in ((layer.kq, {'b': (0, 6), 'i': (-1, 1)}), (layer.bq, {'b': (0, 8), 'i': (-2, 2)}),
                          (layer.iq, {'f': (0, 6), 'i': (-1, 3)})):
            for name, (lo, hi) in ranges.items():
                var = getattr(q.quantizer, f'_{name}')
                var.assign(rng.integers(lo, hi + 1, tuple(var.shape)).astype(var.dtype))
    # integer bits and signs of the activations from calibration data (ReLU outputs become unsigned)
    trace_minmax(model, rng.normal(0, 1, (1024, SIZES[0])).astype('float32'))
    return model


def network_models(name: str, out: Path, clock_period: float):
    """A function that converts and writes network `name` with fpga4ml (returns the model)."""
    project = f'{name}_fpga4ml'
    if name == 'hgq':
        keras_model = hgq_mlp()

        def build():
            from fpga4ml.convert import convert_from_keras_model
            return convert_from_keras_model(keras_model, backend='Verilog', output_dir=str(out),
                                            project_name=project, clock_period=clock_period)
        return build
    sparsity, bits, relu = {'dense': (0.0, 6, RELU_TYPE), 'pruned70': (0.7, 6, RELU_TYPE),
                            'int8': (0.0, 8, 'ufixed<8,1,TRN,SAT>')}[name]
    layers = weights(seed=0, sparsity=sparsity, bits=bits)
    return lambda: convert_fpga4ml(layers, out, clock_period, weight_type=f'fixed<{bits},1>', relu_type=relu,
                                   project_name=project)


NETWORKS = ('dense', 'pruned70', 'int8', 'hgq')


def check_inputs(model, n: int = N_CHECK) -> np.ndarray:
    """n float inputs on the model's input grid, uniform over its range (clipped to +-16)."""
    t = model.graph[model.graph.inputs[0]].result_type
    rng = np.random.default_rng(7)
    x = rng.uniform(max(t.min_value, -16.0), min(t.max_value, 16.0), (n,) + model.graph[model.graph.inputs[0]].shape)
    return t.to_float(t.quantize(x))


def synth(files, top: str, args, out: Path) -> dict:
    """Yosys resources and timing estimate of one design (the same script for every tool)."""
    from fpga4ml.synth import synthesize

    return synthesize([str(f) for f in files], top, family=args.family, output_dir=str(out), script='fast',
                      clock_period=args.clock_period, progress=False)


def build_ours(name: str, args, root: Path, adders: str):
    """fpga4ml's design of network `name` with TernaryAdders = adders: (model, row, files entry)."""
    build = network_models(name, root / f'{name}_fpga4ml_{adders}', args.clock_period)
    start = time.perf_counter()
    model = build()
    model.config.setdefault('Model', {})['TernaryAdders'] = adders
    model.write()
    row = {'generation_s': time.perf_counter() - start}
    est = model.estimate()
    row.update(stages=est['latency_cycles'], cost_estimate=est['LUT'])
    return model, row, ([root / f'{name}_fpga4ml_{adders}' / f'{name}_fpga4ml.v'], f'{name}_fpga4ml')


def run_network(name: str, args, root: Path) -> dict:
    """Build, check and (unless --quick) synthesize one network with the three tools."""
    model, row, entry = build_ours(name, args, root, args.ternary_adders)
    rows, files = {'fpga4ml': row}, {'fpga4ml': entry}
    if args.compare_binary and args.ternary_adders != 'off':   # the same network with binary adders only
        _, rows['fpga4ml_binary'], files['fpga4ml_binary'] = build_ours(name, args, root, 'off')
    x = check_inputs(model)
    ours = np.asarray(model.predict(x), dtype=np.float64).reshape(len(x), -1)
    ops = export_ops(model)
    for tool in PEERS:
        cutoff = args.da4ml_cutoff if tool == 'da4ml' else args.alkaid_cutoff
        res = run_peer(tool, ops, x, root / f'{name}_{tool}', f'{name}_{tool}', args.clock_period, cutoff)
        same = int(np.sum(np.all(res['predictions'] == ours, axis=1)))
        rows[tool] = {'generation_s': res['seconds'], 'stages': res['stages'], 'cost_estimate': res['cost'],
                      'same_outputs': f'{same}/{len(x)}'}
        files[tool] = ([Path(f) for f in res['files']], f'{name}_{tool}')
    result = {'network': name, 'check_inputs': len(x), 'tools': rows,
              'nonzero_weights': sum(int(np.count_nonzero(n.qweights['kernel'])) for n in model.graph if n.op == 'Dense')}
    if not args.quick:
        for tool, (paths, top) in files.items():
            if tool in PEERS and not args.synth_peers:
                continue
            report = synth(paths, top, args, root / f'{name}_{tool}' / 'synth')
            rows[tool].update({key: report.get(key) for key in SYNTH_KEYS})
        if args.ternary_adders == 'off':   # the breakdown reads binary adders' named nets
            result['breakdown'] = fpga4ml_breakdown(model, root / f'{name}_fpga4ml' / 'synth', args.family)
    return result


def fpga4ml_breakdown(model, synth_dir: Path, family: str) -> dict | str:
    """fpga4ml's LUT/FF/CARRY per layer and op kind (fpga4ml.synth.breakdown), or the error text."""
    try:
        from fpga4ml.synth.breakdown import breakdown

        return breakdown(model, synth_dir, family)
    except Exception as err:   # the comparison table stays useful without it
        return f'breakdown failed: {type(err).__name__}: {err}'


def best_peer_ratio(rows: dict, key: str) -> str:
    """fpga4ml's value over the smaller of the peers' (or '-' when missing)."""
    peers = [rows[t].get(key) for t in PEERS if rows[t].get(key) is not None]
    ours = rows['fpga4ml'].get(key)
    return f'{ours / min(peers):.2f}' if ours is not None and peers and min(peers) else '-'


def format_result(result: dict) -> str:
    """The side-by-side table of one network."""
    rows = result['tools']
    lines = [f'== {result["network"]}: {result["nonzero_weights"]} non-zero weights; same outputs on all '
             f'{result["check_inputs"]} inputs: ' + ', '.join(f'{t} {rows[t]["same_outputs"]}' for t in PEERS),
             f'{"":22s}' + ''.join(f'{t.replace("fpga4ml_", ""):>11s}' for t in rows) + f'{"ours/best":>11s}']
    for key in ('LUT', 'FF', 'CARRY', 'DSP', 'stages', 'critical_delay_ns', 'logic_levels', 'generation_s',
                'cost_estimate'):
        if rows['fpga4ml'].get(key) is None:
            continue
        cells = ''.join(f'{rows[t].get(key, "-"):>11.2f}' if isinstance(rows[t].get(key), float)
                        else f'{str(rows[t].get(key, "-")):>11s}' for t in rows)
        lines.append(f'{key:22s}{cells}{best_peer_ratio(rows, key):>11s}')
    if isinstance(result.get('breakdown'), dict):
        from fpga4ml.synth.breakdown import format_breakdown
        lines += ['fpga4ml breakdown (Yosys cells by layer and op kind):', format_breakdown(result['breakdown'])]
    elif result.get('breakdown'):
        lines.append(result['breakdown'])
    return '\n'.join(lines)


def warm_up(root: Path, clock_period: float) -> None:
    """Convert and write a 4-3-2 network once, so fpga4ml's first timed generation is warm like the peers'."""
    rng = np.random.default_rng(1)
    layers = [(np.round(rng.uniform(-1, 1, (4, 3)) * 32) / 32, np.zeros(3)), (np.round(rng.uniform(-1, 1, (3, 2)) * 32) / 32, np.zeros(2))]
    convert_fpga4ml(layers, root / 'warmup', clock_period, project_name='warmup').write()


def main(argv=None) -> int:
    """Run the benchmark and print one table per network."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='no synthesis: generation, stages and estimates only')
    parser.add_argument('--networks', default=','.join(NETWORKS), help=f'comma-separated: {", ".join(NETWORKS)}')
    parser.add_argument('--family', default='xcup', help='Yosys target family (default xcup)')
    parser.add_argument('--clock-period', type=float, default=5.0, help='clock period in ns (default 5)')
    parser.add_argument('--da4ml-cutoff', type=float, default=2.0, help='da4ml adder levels per stage (default 2)')
    parser.add_argument('--alkaid-cutoff', type=float, default=None,
                        help='alkaid ns per stage of its delay model (default: the clock period)')
    parser.add_argument('--ternary-adders', default='carry8', choices=('carry8', 'carry4', 'auto', 'off'),
                        help="fpga4ml's TernaryAdders setting (default carry8: three-input adders on LUT6_2 + CARRY8)")
    parser.add_argument('--compare-binary', action='store_true',
                        help='also build and synthesize fpga4ml with TernaryAdders off (column "binary")')
    parser.add_argument('--no-synth-peers', dest='synth_peers', action='store_false',
                        help="build and check the peers but do not synthesize them (their Yosys columns stay '-')")
    parser.add_argument('--keep', metavar='DIR', default=None, help='write the designs here and keep them')
    parser.add_argument('--json', metavar='FILE', default=None, help='also write the results as JSON')
    args = parser.parse_args(argv)
    args.alkaid_cutoff = args.alkaid_cutoff or args.clock_period
    missing = [t for t in PEERS if importlib.util.find_spec(t) is None]
    if missing:
        print(f'bench_verilog: {", ".join(missing)} not installed (pip install da4ml==0.6.0 alkaid==0.8.2, '
              "or pip install 'fpga4ml[bench]')", file=sys.stderr)
        return 2
    unknown = [n for n in args.networks.split(',') if n not in NETWORKS]
    if unknown:
        parser.error(f'unknown network(s) {", ".join(unknown)}; accepted: {", ".join(NETWORKS)}')
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix='fpga4ml-bench-verilog-'))
    root.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        warm_up(root, args.clock_period)
        for name in args.networks.split(','):
            results.append(run_network(name, args, root))
            print(format_result(results[-1]), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == '__main__':
    os.environ.setdefault('KERAS_BACKEND', 'torch')
    sys.exit(main())
