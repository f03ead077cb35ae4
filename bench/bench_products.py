"""Products of two variables on DSPs or in LUTs (VariableProducts), side by side in one run.

An HGQ2 QMultiHeadAttention(2 heads, key_dim 2) self-attention on 4 x 5 inputs (f0 = 3, i0 = 2,
tests/test_verilog_lut_products.py's model) built by the Verilog back end with each setting,
synthesized by the same Yosys script: LUT, FF, DSP, CARRY, critical-path estimate, latency, and the
cost model's numbers. With --rtl N the Verilator simulation is checked against HGQ2 on N inputs.

    KERAS_BACKEND=torch .venv/bin/python bench/bench_products.py [--settings dsp,auto,lut] [--rtl 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault('KERAS_BACKEND', 'torch')
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tests'))

import numpy as np  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Build, (optionally) simulate and synthesize the attention layer with each setting; print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--settings', default='dsp,auto,lut')
    ap.add_argument('--family', default='xcup')
    ap.add_argument('--rtl', type=int, default=0, help='inputs for a Verilator check against HGQ2 (0: none)')
    args = ap.parse_args(argv)
    import keras
    from test_verilog_lut_products import attention_model, converted
    model = attention_model()
    x = (np.random.default_rng(1).normal(0, 1, (max(args.rtl, 1), 4, 5)) * 4).astype(np.float32)
    print('| VariableProducts | LUT | FF | DSP | CARRY | critical path est. | latency | estimate LUT / FF / DSP | RTL == HGQ2 |')
    print('|---|---|---|---|---|---|---|---|---|')
    with tempfile.TemporaryDirectory(prefix='bench_products_') as tmp:
        for setting in args.settings.split(','):
            hls = converted(model, Path(tmp), setting)
            est = hls.estimate()
            same = '-'
            if args.rtl:
                hls.compile(sim='rtl', progress=False)
                want = np.asarray(keras.ops.convert_to_numpy(model(x)), dtype=np.float64).reshape(len(x), -1)
                got = np.asarray(hls.predict(x, sim='rtl')).reshape(len(x), -1)
                same = f'{int(np.sum(np.all(got == want, axis=1)))}/{len(x)}'
            r = hls.build(family=args.family, progress=False)
            print(f"| '{setting}' | {r['LUT']:,} | {r['FF']:,} | {r['DSP']:,} | {r['CARRY']:,} | "
                  f"{r['critical_delay_ns']:.2f} ns | {est['latency_cycles']} | "
                  f"{est['LUT']:,} / {est['FF']:,} / {est['DSP']:,} | {same} |", flush=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
