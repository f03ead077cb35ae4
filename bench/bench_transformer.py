"""Transformers (issue 14): fpga4ml against hls4ml 1.3.0 on the particle transformer, in one run.

The model is examples/particle_transformer.py's HGQ2 copy, with and without its LayerNorms (hls4ml
1.3.0 cannot build an HGQ2 model with a Keras LayerNormalization: its HGQ2 precision pass has no
rule for it, and HGQ2 has no LayerNorm layer of its own): 16 particles x 6 features, embedding 16,
2 heads, 2 pre-norm encoder blocks (Keras LayerNormalization, QMultiHeadAttention, QAdd, QDense MLP),
QGlobalAveragePooling1D and a QDense head; 8-bit weights, fixed<8,4> values between the layers,
LayerNorm at fixed<16,6,RND,SAT> (the model default). The weights are the seeded, untrained PyTorch
network's (throughput and hardware do not depend on training).

* throughput on the same jets, per wall-clock and per CPU second of the process (bench_rnn.rate):
  fpga4ml's emulator (model.predict, after one warm-up call) against
  hls4ml 1.3.0's C simulation of the same HGQ2 model (its compiled library, warmed up), the ratio
  and the fraction of jets with the same output bits. hls4ml 1.3.0 registers QMultiHeadAttention
  under HGQ2 < 0.1.7's module path only; the bench registers 0.2's `hgq.layers.attn.mha` path for
  the run (without it hls4ml traces the whole layer with da4ml), and converts with
  allow_da_fallback=False (with da4ml installed its fallback raises on Keras' LayerNormalization
  before the Keras 2 handler is tried). When hls4ml cannot build the model, the reason is printed;
* C simulation build time (write + g++) of both;
* the Verilog design at 5 ns: latency, II and the estimate, generation time, and where the
  latency goes (the pipeline stage at which each layer's last output is ready, from one
  lowering with every layer as an output); with --synth, Yosys LUT/FF/DSP (long for this size);
* with --verilator, the whole design simulated by Verilator against the emulator on the jets, with a
  negative control (the emulator of the copy with one classifier bias moved).
* with --latency-variant, instead: the example's latency variant (examples/particle_transformer.py
  --fast: trained in HGQ2, 2-bit weights, 1 fractional bit, no LayerNorm, softmax without maximum,
  VariableProducts 'auto'; the issue's < 100 ns target): its HGQ2 accuracy, the emulator's bits
  against HGQ2's and its throughput, the Verilog latency, estimate and stages (--synth: Yosys;
  --verilator: Verilator against the emulator with a control).

    KERAS_BACKEND=torch .venv/bin/python bench/bench_transformer.py [--n 2000] [--no-hls4ml] [--no-verilog] [--synth]
        [--variable-products dsp|lut|auto] [--no-layernorm] [--verilator] [--latency-variant]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault('KERAS_BACKEND', 'torch')
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench_rnn import hls4ml_build_and_rate, rate, timed  # noqa: E402  (timing and hls4ml build helpers)

CONFIG = {'Model': {'Precision': 'fixed<16,6,RND,SAT>', 'ReuseFactor': 1, 'Strategy': 'Latency'}}
#: HGQ2 0.2's class path, which hls4ml 1.3.0 does not register (it has hgq.layers.multi_head_attention's)
HGQ2_MHA_PATH = 'hgq.layers.attn.mha.QMultiHeadAttention'


def load_example():
    """examples/particle_transformer.py as a module (its networks and jet generator)."""
    if str(REPO / 'examples') not in sys.path:
        sys.path.insert(0, str(REPO / 'examples'))
    import particle_transformer
    return particle_transformer


def fpga4ml_numbers(example, km, x, root: Path) -> dict:
    """Emulator throughput and outputs, C simulation build time."""
    model = example.convert_keras(km, copy.deepcopy(CONFIG), str(root / 'ours'))
    model.compile()
    wall, cpu = rate(model.predict, x)
    out = {'emulator_jets_s': wall, 'emulator_jets_cpu_s': cpu, 'emulator_out': np.asarray(model.predict(x))}
    _, out['csim_build_s'] = timed(model.compile, 'csim')
    out['csim_same'] = float(np.mean(np.all(np.asarray(model.predict(x[:200], sim='csim')) == out['emulator_out'][:200],
                                            axis=1)))
    return out


def register_hgq2_mha() -> None:
    """Give hls4ml 1.3.0's QMultiHeadAttention handler HGQ2 0.2's class path too."""
    from hls4ml.converters.keras_v3._base import registry
    registry.setdefault(HGQ2_MHA_PATH, registry['hgq.layers.multi_head_attention.QMultiHeadAttention'])


def hls4ml_numbers(km, x, root: Path) -> dict:
    """hls4ml 1.3.0's build time (write + compile), C simulation throughput and outputs; {'error': why} on failure."""
    import hls4ml
    register_hgq2_mha()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            theirs = hls4ml.converters.convert_from_keras_model(
                km, hls_config=copy.deepcopy(CONFIG), backend='Vitis', io_type='io_parallel',
                output_dir=str(root / 'theirs'), allow_da_fallback=False)
        build, wall, cpu, out = hls4ml_build_and_rate(theirs, x)
        return {'csim_build_s': build, 'csim_jets_s': wall, 'csim_jets_cpu_s': cpu, 'csim_out': out}
    except Exception as err:  # the benchmark reports why hls4ml could not build the model
        return {'error': f'{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ""}',
                'trace': traceback.format_exc(limit=3)}


def layer_stages(model) -> dict[str, int]:
    """The pipeline stage (at 5 ns) by which each layer's last output value is ready.

    One lowering of the graph with every layer as an output; the as-soon-as-possible stages of the
    layers' own signals do not depend on which of them are outputs.
    """
    from fpga4ml.backends.verilog.lower import lower_graph
    from fpga4ml.backends.verilog.pipeline import schedule
    graph = copy.copy(model.graph)
    graph.outputs = [n.name for n in model.graph.nodes if n.op != 'Input']
    nl = lower_graph(graph, model.intervals)
    stage = schedule(nl, model.clock_period, sink=False).stage  # as soon as possible: when each value is ready
    return {port.name: max((stage[s] for s in port.signals), default=0) for port in nl.outputs}


def verilog_numbers(example, km, root: Path, synth: bool, products: str = 'dsp') -> dict:
    """Latency, II, estimate, generation time, per-layer stages and (with synth) Yosys resources."""
    config = copy.deepcopy(CONFIG)
    config['Model']['VariableProducts'] = products
    model = example.convert_keras(km, config, str(root / 'verilog'), backend='Verilog')
    est, seconds = timed(model.estimate)
    out = {'products': products, 'latency': est['latency_cycles'], 'ii': est['ii'], 'lut': est['LUT'], 'ff': est['FF'],
           'dsp': est['DSP'],
           'generation_s': seconds, 'stages': layer_stages(model)}
    if synth:
        report, out['synth_s'] = timed(model.build)
        out['yosys'] = {k: report.get(k) for k in ('LUT', 'FF', 'DSP')}
    return out


def report(row: dict, n: int) -> None:
    """The table of numbers."""
    ours = row['ours']
    print(f'fpga4ml emulator: {ours["emulator_jets_s"]:,.0f} jets/s on {n} jets; its C simulation built in '
          f'{ours["csim_build_s"]:.0f} s, == emulator bit for bit on {100 * ours["csim_same"]:.2f} % of 200 jets')
    theirs = row.get('theirs')
    if theirs is not None and 'error' in theirs:
        print(f'hls4ml 1.3.0 could not build the model: {theirs["error"]}\n{theirs["trace"]}')
    elif theirs is not None:
        same = np.all(ours['emulator_out'].reshape(n, -1) == theirs['csim_out'], axis=1)
        print('| | fpga4ml emulator | hls4ml 1.3.0 C sim |\n|---|---|---|')
        print(f'| jets/s | {ours["emulator_jets_s"]:,.0f} | {theirs["csim_jets_s"]:,.0f} '
              f'({ours["emulator_jets_s"] / theirs["csim_jets_s"]:.1f}x) |')
        print(f'| jets per CPU second | {ours["emulator_jets_cpu_s"]:,.0f} | {theirs["csim_jets_cpu_s"]:,.0f} '
              f'({ours["emulator_jets_cpu_s"] / theirs["csim_jets_cpu_s"]:.1f}x) |')
        print(f'| C sim build (s) | {ours["csim_build_s"]:.0f} | {theirs["csim_build_s"]:.0f} |')
        print(f'| same output bits | {100 * same.mean():.2f} % of {n} jets | |')
    r = row.get('verilator')
    if r is not None:
        print(f"Verilator (whole design, built in {r['build_s']:.0f} s) == emulator on {100 * r['same']:.2f} % of {n} "
              f"jets; control, the emulator with one bias moved: {100 * r['control_same']:.2f} %")
    v = row.get('verilog')
    if v is None:
        return
    print(f"Verilog at 5 ns (VariableProducts '{v['products']}'): latency {v['latency']} cycles ({5 * v['latency']} ns), II {v['ii']}, estimate "
          f"{v['lut']:,} LUT / {v['ff']:,} FF / {v['dsp']:,} DSP, generated in {v['generation_s']:.0f} s")
    if 'yosys' in v:
        y = v['yosys']
        print(f"Yosys: {y['LUT']} LUT / {y['FF']} FF / {y['DSP']} DSP ({v['synth_s']:.0f} s)")
    print('stage by which each layer is done (5 ns stages):')
    previous = 0
    for name, stage in v['stages'].items():
        print(f'  {name:32s} {stage:4d}  (+{stage - previous})' if stage > previous else f'  {name:32s} {stage:4d}')
        previous = max(previous, stage)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=2000, help='jets per throughput measurement')
    ap.add_argument('--no-hls4ml', action='store_true')
    ap.add_argument('--no-verilog', action='store_true')
    ap.add_argument('--synth', action='store_true', help='also synthesize the Verilog with Yosys (long)')
    ap.add_argument('--variable-products', default='dsp', choices=('dsp', 'lut', 'auto'),
                    help="products of two variables on DSPs, in LUTs, or in LUTs where narrow ('auto')")
    ap.add_argument('--no-layernorm', action='store_true', help='only the model without its LayerNorms')
    ap.add_argument('--verilator', action='store_true',
                    help='simulate the whole Verilog design with Verilator against the emulator (about 10 min each)')
    ap.add_argument('--latency-variant', action='store_true',
                    help="only the example's trained latency variant (--fast): accuracy, bits, Verilog latency")
    args = ap.parse_args(argv)
    example = load_example()
    if args.latency_variant:
        latency_variant(example, args)
        return 0
    x, _ = example.make_jets(args.n, seed=3)
    for layer_norm in (False,) if args.no_layernorm else (True, False):
        print(f'## HGQ2 particle transformer {"with" if layer_norm else "without"} LayerNorm', flush=True)
        report(bench_model(example, layer_norm, x, args), args.n)
    return 0


def bench_model(example, layer_norm: bool, x: np.ndarray, args) -> dict:
    """Every number of the HGQ2 copy with or without its LayerNorms."""
    import torch
    torch.manual_seed(0)
    net = example.torch_network().eval()
    km = example.keras_copy(net, example.build_hgq_model, layer_norm=layer_norm)
    row = {}
    with tempfile.TemporaryDirectory(prefix='bench_transformer_') as tmp:
        root = Path(tmp)
        row['ours'] = fpga4ml_numbers(example, km, x, root)
        if not args.no_hls4ml:
            row['theirs'] = hls4ml_numbers(km, x, root)
        if not args.no_verilog:
            row['verilog'] = verilog_numbers(example, km, root, args.synth, args.variable_products)
        if args.verilator:
            row['verilator'] = verilator_numbers(example, net, layer_norm, x, row['ours']['emulator_out'], root)
    return row


def latency_variant(example, args) -> None:
    """The example's latency variant, trained as `--fast` trains it: accuracy, same bits as HGQ2, emulator
    throughput, Verilog latency and stages at 5 ns (and Yosys, Verilator with a control)."""
    x, y = example.make_jets(args.n, seed=99)
    (model, seconds) = timed(example.train_hgq_fast, 10_000, 3)
    p_hgq = example.keras_logits(model, x)
    print(f'## latency variant: trained in {seconds:.0f} s; HGQ2 accuracy {example.accuracy(p_hgq, y):.2f} % on {args.n} '
          'jets')
    with tempfile.TemporaryDirectory(prefix='bench_transformer_') as tmp:
        rtl = example.convert_keras(model, copy.deepcopy(example.FAST_VERILOG), str(Path(tmp) / 'rtl'), 'Verilog')
        wall, _ = rate(rtl.predict, x)
        p_fixed = np.asarray(rtl.predict(x))
        print(f'fpga4ml emulator: same output bits as HGQ2 on {100 * example.same_rows(p_fixed, p_hgq):.2f} %, '
              f'{wall:,.0f} jets/s')
        est, gen = timed(rtl.estimate)
        print(f"Verilog at 5 ns: latency {est['latency_cycles']} cycles ({5 * est['latency_cycles']} ns), II {est['ii']}, "
              f"estimate {est['LUT']:,} LUT / {est['FF']:,} FF / {est['DSP']:,} DSP, generated in {gen:.0f} s")
        if args.synth:
            synth, synth_s = timed(rtl.build)
            print(f"Yosys: {synth.get('LUT')} LUT / {synth.get('FF')} FF / {synth.get('DSP')} DSP ({synth_s:.0f} s)")
        if args.verilator:
            _, build_s = timed(lambda: rtl.compile(sim='rtl'))
            got = np.asarray(rtl.predict(x, sim='rtl'))
            kernel = model.get_layer('head').kernel  # control: HGQ2 with the largest head weight negated
            import keras
            values = np.array(keras.ops.convert_to_numpy(kernel))
            values.flat[np.argmax(np.abs(values))] *= -1
            kernel.assign(values)
            print(f'Verilator (built in {build_s:.0f} s) == emulator on {100 * example.same_rows(got, p_fixed):.2f} % of '
                  f'{args.n} jets; control, HGQ2 with one head weight negated: '
                  f'{100 * example.same_rows(got, example.keras_logits(model, x)):.2f} %')
        print('stage by which each layer is done (5 ns stages):')
        previous = 0
        for name, stage in layer_stages(rtl).items():
            print(f'  {name:32s} {stage:4d}  (+{stage - previous})' if stage > previous else f'  {name:32s} {stage:4d}')
            previous = max(previous, stage)


def verilator_numbers(example, net, layer_norm: bool, x: np.ndarray, emulated: np.ndarray, root: Path) -> dict:
    """Verilator simulation of the whole design against the emulator on the jets, with a negative control:
    the emulator of the copy with one classifier bias moved by 1/4 (4 LSBs of its fixed<8,4> output)."""
    import torch
    km = example.keras_copy(net, example.build_hgq_model, layer_norm=layer_norm)
    model = example.convert_keras(km, copy.deepcopy(CONFIG), str(root / 'rtl'), backend='Verilog')
    start = time.perf_counter()
    model.compile(sim='rtl')
    built = time.perf_counter() - start
    got = np.asarray(model.predict(x, sim='rtl')).reshape(len(x), -1)
    with torch.no_grad():
        net.head.bias[0] += 0.25
        moved = example.keras_copy(net, example.build_hgq_model, layer_norm=layer_norm)
        net.head.bias[0] -= 0.25
    moved_out = np.asarray(example.convert_keras(moved, copy.deepcopy(CONFIG), str(root / 'moved')).predict(x))
    same = lambda a: float(np.mean(np.all(got == np.asarray(a).reshape(len(x), -1), axis=1)))  # noqa: E731
    return {'build_s': built, 'same': same(emulated), 'control_same': same(moved_out)}


if __name__ == '__main__':
    raise SystemExit(main())
