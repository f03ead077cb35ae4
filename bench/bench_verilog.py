"""Verilog back end vs da4ml 0.6.0 on the quantized JSC MLP, side by side in one run.

The same integer network (16 -> 64 -> 32 -> 32 -> 5, 6-bit weights and biases fixed<6,1>,
ReLU quantized to ufixed<6,0> with truncation and saturation, exact accumulators, 10-bit inputs
fixed<10,5>) is built by fpga4ml (Verilog back end) and by da4ml (distributed arithmetic,
`comb_trace` + `RTLModel`), for a dense and a 70 %-pruned weight set with fixed seeds. Both
designs are checked to compute the same function, then synthesized with the same Yosys script
(fpga4ml.synth, family xcup by default). Printed: LUT, FF, CARRY, pipeline latency, generation
time and the ratios fpga4ml / da4ml. Latency is in clock cycles from input to output: fpga4ml's
outputs are registered after its last stage; da4ml registers inputs and outputs around its stages.
The critical delay is Yosys' estimate of the longest register-to-register path (fpga4ml.synth's
delay model), the same estimator for both designs.

    python bench/bench_verilog.py            # both variants, synthesized (several minutes each)
    python bench/bench_verilog.py --quick    # generation and cost estimates only, no synthesis

da4ml is LGPLv3 and used only as a benchmark peer (pip install da4ml==0.6.0, the `bench` extra).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = (16, 64, 32, 32, 5)
INPUT_TYPE = ('fixed<10,5>', (1, 4, 5))       # fpga4ml type, da4ml (k, i, f)
WEIGHT_TYPE = 'fixed<6,1>'                     # 6 bits, step 2^-5, range [-1, 1)
RELU_TYPE = ('ufixed<6,0,TRN,SAT>', (0, 0, 6))


def weights(seed: int, sparsity: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed-seed 6-bit weights and biases (lecun-uniform-like scale), a fraction pruned to zero."""
    rng = np.random.default_rng(seed)
    layers = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        limit = np.sqrt(3.0 / a) * 1.5
        w = np.clip(np.round(rng.uniform(-limit, limit, (a, b)) * 32), -32, 31) / 32
        w[rng.random(w.shape) < sparsity] = 0
        bias = np.clip(np.round(rng.uniform(-0.5, 0.5, b) * 32), -32, 31) / 32
        layers.append((w.astype(np.float32), bias.astype(np.float32)))
    return layers


def convert_fpga4ml(layers, out: Path, clock_period: float, weight_type: str = WEIGHT_TYPE, input_type=INPUT_TYPE,
                    relu_type=RELU_TYPE, backend: str = 'Verilog', project_name: str = 'jsc_fpga4ml'):
    """The network (Dense + ReLU layers, sizes from the weights) as a converted fpga4ml model."""
    from fpga4ml.convert import convert_graph
    from fpga4ml.ir import Graph, Node

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
           'LayerName': {'x': {'Precision': {'result': input_type[0]}},
                         **{n: {'Precision': {'result': relu_type[0]}} for n in names}}}
    return convert_graph(g, cfg, backend=backend, output_dir=str(out), project_name=project_name,
                         clock_period=clock_period)


def build_fpga4ml(layers, out: Path, clock_period: float):
    """The network as a typed graph through the Verilog back end; returns (model, seconds)."""
    start = time.perf_counter()
    model = convert_fpga4ml(layers, out, clock_period)
    model.write()
    return model, time.perf_counter() - start


def build_da4ml(layers, out: Path, clock_period: float, input_type=INPUT_TYPE, relu_type=RELU_TYPE):
    """The same network traced and optimized by da4ml; returns (comb logic, latency in clocks, seconds)."""
    from da4ml.codegen import RTLModel
    from da4ml.trace import FixedVariableArrayInput, comb_trace
    from da4ml.trace.ops import quantize, relu

    start = time.perf_counter()
    inp = FixedVariableArrayInput((layers[0][0].shape[0],))
    x = inp.quantize(*input_type[1])
    for n, (w, b) in enumerate(layers):
        x = x @ w.astype(np.float64) + b.astype(np.float64)
        if n < len(layers) - 1:
            x = quantize(relu(x), *relu_type[1], overflow_mode='SAT')
    comb = comb_trace(inp, x)
    rtl = RTLModel(comb, 'jsc_da4ml', str(out), latency_cutoff=clock_period, clock_period=clock_period,
                   print_latency=False)
    rtl.write()
    seconds = time.perf_counter() - start
    import json
    # da4ml's metadata counts its combinational stages; its top module registers the inputs before
    # stage 0 and the outputs after the last stage, so the latency in clock cycles is one more
    stages = json.loads((out / 'metadata.json').read_text())['latency']
    return comb, stages + 1, seconds


def same_function(model, comb, n: int = 2000) -> float:
    """Fraction of output values where da4ml's own prediction equals fpga4ml's emulator."""
    rng = np.random.default_rng(7)
    t = model.graph['x'].result_type
    x = t.to_float(rng.integers(t.min_mantissa, t.max_mantissa + 1, (n, SIZES[0])))
    ours = model.predict(x)
    theirs = np.asarray(comb.predict(x), dtype=np.float64).reshape(ours.shape)
    return float(np.mean(ours == theirs))


def synth(files, top: str, family: str, clock_period: float, out: Path) -> dict:
    """Yosys resources of one design (same script for both tools)."""
    from fpga4ml.synth import synthesize

    return synthesize([str(f) for f in files], top, family=family, output_dir=str(out), script='fast',
                      clock_period=clock_period)


def ratio(a, b) -> str:
    """a / b formatted, or '-' when either is missing."""
    return f'{a / b:.3f}' if a is not None and b else '-'


def run_variant(name: str, sparsity: float, args, root: Path) -> list[str]:
    """Build, check and (unless --quick) synthesize one variant; returns its report lines."""
    layers = weights(seed=0, sparsity=sparsity)
    ours_dir, theirs_dir = root / f'{name}_fpga4ml', root / f'{name}_da4ml'
    model, t_ours = build_fpga4ml(layers, ours_dir, args.clock_period)
    comb, lat_theirs, t_theirs = build_da4ml(layers, theirs_dir, args.clock_period)
    est = model.estimate()
    agree = same_function(model, comb)
    lines = [f'== {name}: {int(sum(np.count_nonzero(w) for w, _ in layers))} non-zero weights, '
             f'same outputs on {100 * agree:.2f} % of values',
             f'{"":24s}{"fpga4ml":>12s}{"da4ml":>12s}{"ratio":>8s}',
             f'{"generation time [s]":24s}{t_ours:12.2f}{t_theirs:12.2f}{ratio(t_ours, t_theirs):>8s}',
             f'{"latency [clock cycles]":24s}{est["latency_cycles"]:12d}{lat_theirs:12d}'
             f'{ratio(est["latency_cycles"], lat_theirs):>8s}',
             f'{"cost estimate [LUT]":24s}{est["LUT"]:12d}{int(comb.cost):12d}{ratio(est["LUT"], comb.cost):>8s}']
    if not args.quick:
        r_ours = synth([ours_dir / 'jsc_fpga4ml.v'], 'jsc_fpga4ml', args.family, args.clock_period, ours_dir)
        theirs_files = sorted((theirs_dir / 'src').glob('*.v'))
        text = ''.join(f.read_text() for f in theirs_files)
        # da4ml's library modules that the design instantiates (lookup_table.v needs a memory file)
        theirs_files += [f for f in sorted((theirs_dir / 'src' / 'static').glob('*.v')) if f.stem + ' ' in text
                         or f.stem + ' #' in text]
        r_theirs = synth(theirs_files, 'jsc_da4ml', args.family, args.clock_period, theirs_dir)
        for key in ('LUT', 'FF', 'CARRY', 'DSP', 'logic_levels', 'critical_delay_ns', 'seconds'):
            a, b = r_ours.get(key), r_theirs.get(key)
            fmt = '{:12.1f}' if isinstance(a, float) else '{:12}'
            lines.append(f'{"yosys " + key:24s}{fmt.format(a)}{fmt.format(b)}{ratio(a, b):>8s}')
    return lines


def main(argv=None) -> int:
    """Run the benchmark and print the side-by-side table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='no synthesis: generation and estimates only')
    parser.add_argument('--family', default='xcup', help='Yosys target family (default xcup)')
    parser.add_argument('--clock-period', type=float, default=5.0, help='clock period in ns (default 5)')
    parser.add_argument('--variants', default='dense,pruned70', help='comma-separated: dense, pruned70')
    parser.add_argument('--keep', metavar='DIR', default=None, help='write the designs here and keep them')
    args = parser.parse_args(argv)
    try:
        import da4ml  # noqa: F401
    except ImportError:
        print('bench_verilog: da4ml is not installed (pip install da4ml==0.6.0, or the bench extra)', file=sys.stderr)
        return 2
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix='fpga4ml-bench-verilog-'))
    root.mkdir(parents=True, exist_ok=True)
    sparsities = {'dense': 0.0, 'pruned70': 0.7}
    try:
        for name in args.variants.split(','):
            print('\n'.join(run_variant(name, sparsities[name], args, root)), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == '__main__':
    os.environ.setdefault('KERAS_BACKEND', 'torch')
    sys.exit(main())
