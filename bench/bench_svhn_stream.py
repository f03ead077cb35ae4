"""The SVHN CNN as streaming Verilog: generation, Verilator check, Yosys resources, hls4ml's published numbers.

The 6-bit SVHN CNN of BENCHMARKS.md (tests/svhn_model.py: seeded weights, BatchNorm folded,
6-bit weights and ReLU outputs, 8-bit pixels, exact accumulators) goes through the Verilog back
end with ``Architecture: 'stream'``: pixels enter one per clock, line buffers form the windows,
one adder-graph kernel per layer computes all filters of an output pixel per clock, pooling and
the dense head follow in the same stream. Printed: generation time, the cost model, the
Verilator simulation (bit-exact fraction against the emulator, images/s), latency, and Yosys'
resources for UltraScale+ next to the hls4ml tutorial's published Vivado numbers (a different
tool and flow: orientation only, not a like-for-like ratio).

    python bench/bench_svhn_stream.py [--images 1000] [--no-synth] [--family xcup]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / 'tests'))

#: hls4ml tutorial, quantized + pruned SVHN CNN, io_stream, Vivado post-route on xcu250 (BENCHMARKS.md)
HLS4ML_PUBLISHED = {'latency_cycles': 1044, 'clock_mhz': 200, 'LUT': 118_931, 'DSP': 353}


def main(argv=None) -> int:
    """Build, simulate and synthesize the streaming SVHN design; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--images', type=int, default=1000, help='images simulated with Verilator (default 1000)')
    parser.add_argument('--no-synth', action='store_true', help='skip the Yosys synthesis')
    parser.add_argument('--family', default='xcup', help='Yosys family (default xcup)')
    parser.add_argument('--out', default=None, help='keep the design in this folder')
    args = parser.parse_args(argv)
    import numpy as np

    import fpga4ml
    from svhn_model import svhn_config, svhn_images, svhn_keras

    out = Path(args.out or tempfile.mkdtemp(prefix='fpga4ml-svhn-stream-'))
    keras_model = svhn_keras()
    t0 = time.perf_counter()
    model = fpga4ml.convert_from_keras_model(keras_model, hls_config=svhn_config(keras_model), backend='Verilog',
                                             output_dir=str(out), project_name='svhn', clock_period=5)
    model.write()
    t_gen = time.perf_counter() - t0
    est = model.estimate()
    print(f'generation (convert + lower + schedule + write): {t_gen:.2f} s -> {out}')
    print('estimate: ' + ', '.join(f'{k} {est[k]}' for k in ('LUT', 'FF', 'DSP', 'latency_cycles', 'ii',
                                                            'fmax_mhz_estimate')))
    rows = [('latency, first pixel -> logits [clock cycles]', est['ii'] + est['latency_cycles'],
             HLS4ML_PUBLISHED['latency_cycles'])]
    try:
        t0 = time.perf_counter()
        model.compile(sim='rtl')
        t_build = time.perf_counter() - t0
        x = svhn_images(args.images, seed=5)
        t0 = time.perf_counter()
        rtl = model.predict(x, sim='rtl')
        t_run = time.perf_counter() - t0
        same = float(np.mean(np.all(rtl == model.predict(x), axis=1)))
        print(f'Verilator: build {t_build:.1f} s; {args.images} images in {t_run:.2f} s '
              f'({args.images / t_run:,.0f} images/s, {args.images * est["ii"] / t_run / 1e6:.2f} M clocks/s); '
              f'logits bit-identical to the emulator on {100 * same:.2f} % of images')
    except fpga4ml.BackendUnavailableError as err:
        print(f'Verilator not available: {err}')
    if not args.no_synth:
        report = model.build(family=args.family)
        rows += [('LUT', report['LUT'], HLS4ML_PUBLISHED['LUT']), ('DSP', report['DSP'], HLS4ML_PUBLISHED['DSP']),
                 ('FF', report['FF'], None), ('CARRY', report['CARRY'], None),
                 ('critical delay estimate [ns]', report.get('critical_delay_ns'), 1000 / HLS4ML_PUBLISHED['clock_mhz']),
                 ('synthesis time [s]', round(report['seconds'], 1), None)]
    print(f'\n{"":48s}{"fpga4ml (Yosys, " + args.family + ")":>24s}{"hls4ml tutorial (Vivado, xcu250)":>34s}')
    for name, ours, theirs in rows:
        print(f'{name:48s}{str(ours):>24s}{"-" if theirs is None else str(theirs):>34s}')
    print('\nDifferent tools (Yosys vs Vivado post-route) and a different model instance (seeded, not the '
          'tutorial\'s trained and pruned weights): orientation, not a ratio.')
    return 0


if __name__ == '__main__':
    os.environ.setdefault('KERAS_BACKEND', 'torch')
    sys.exit(main())
