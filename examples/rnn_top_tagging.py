"""Top tagging with a recurrent network: 20 particles x 6 features -> LSTM or GRU(20) -> Dense -> softmax.

The model is the one of hls4ml's LSTM/GRU paper (arXiv 2207.00559: a jet as a sequence of its
particles, read by an LSTM or GRU, then a small classifier). The real top-tagging data set is not
available offline, so a fixed-seed generator makes jets of two classes with the same layout:

* a jet is 20 particles sorted by transverse momentum (pT), each with 6 features: log of its pT
  fraction, its pseudorapidity and azimuth relative to the jet axis (d_eta, d_phi), log of its
  energy fraction, its distance to the axis dR and a charge-like value in {-1, 0, 1};
* QCD jets have one prong (particles spread around the axis, the pT falling steeply); top jets
  have three prongs (three sub-axes at random angles about 0.4 apart, the pT shared among them),
  the prongs blurred so that the classes overlap a little. Features are standardized.

Steps: generate -> train in Keras (a few epochs, seconds) -> convert at a wide precision
(fixed<16,6>) and at a narrow QAT-like one (8-bit weights, fixed<10,4> values) -> the emulator's
accuracy against Keras float, argmax agreement -> optionally (--csim) the HLS C simulation of the
static-mode project, checked bit for bit against the emulator. Run:

    KERAS_BACKEND=torch .venv/bin/python examples/rnn_top_tagging.py [--cell lstm|gru] [--quick] [--csim]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault('KERAS_BACKEND', 'torch')  # before keras is imported

import numpy as np  # noqa: E402

import fpga4ml  # noqa: E402

CLASSES = ('qcd', 'top')
PARTICLES, FEATURES, UNITS = 20, 6, 20
#: the two conversions: Model precision and the recurrent layer's accum (and LSTM state) types
PRECISIONS = {'wide fixed<16,6>': {'Model': {'Precision': 'fixed<16,6>'}},
              'narrow (8-bit weights, fixed<10,4>)': {
                  'Model': {'Precision': 'fixed<10,4,RND,SAT>'},
                  'LayerType': {'Dense': {'Precision': {'weight': 'fixed<8,2,RND,SAT>', 'bias': 'fixed<8,2,RND,SAT>'}},
                                'LSTM': {'Precision': {'weight': 'fixed<8,2,RND,SAT>',
                                                       'recurrent_weight': 'fixed<8,2,RND,SAT>',
                                                       'bias': 'fixed<8,2,RND,SAT>', 'accum': 'fixed<14,6,RND,SAT>',
                                                       'state': 'fixed<12,4,RND,SAT>'}},
                                'GRU': {'Precision': {'weight': 'fixed<8,2,RND,SAT>',
                                                      'recurrent_weight': 'fixed<8,2,RND,SAT>',
                                                      'bias': 'fixed<8,2,RND,SAT>',
                                                      'recurrent_bias': 'fixed<8,2,RND,SAT>',
                                                      'accum': 'fixed<14,6,RND,SAT>'}}}}}


# --------------------------------------------------------------------------- synthetic jets
def _prongs(rng: np.random.Generator, n: int, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per jet, 3 prong axes (d_eta, d_phi) and their pT shares; QCD jets put everything in prong 0."""
    angle = rng.uniform(0, 2 * np.pi, (n, 1)) + np.array([0.0, 2.1, 4.2]) + rng.normal(0, 0.3, (n, 3))
    radius = np.where(top[:, None], rng.uniform(0.25, 0.5, (n, 3)), 0.0)
    radius[:, 0] *= 0.3
    axes = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)
    share = np.where(top[:, None], rng.dirichlet([3.0, 2.0, 1.5], n), np.array([1.0, 0.0, 0.0]))
    return axes, share


def make_jets(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n jets: features (n, 20, 6) float32 (standardized with fixed constants) and labels (n,) 0 = QCD, 1 = top."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    top = y == 1
    axes, share = _prongs(rng, n, top)
    prong = np.array([rng.choice(3, PARTICLES, p=s) for s in share])  # (n, 20)
    spread = np.where(top, 0.08, 0.15)[:, None, None]
    pos = np.take_along_axis(axes, prong[..., None], axis=1) + rng.normal(0, 1, (n, PARTICLES, 2)) * spread
    slope = np.where(top, 0.35, 0.6)[:, None] * rng.uniform(0.7, 1.3, (n, 1))
    log_pt = -slope * np.arange(PARTICLES) + rng.normal(0, 0.5, (n, PARTICLES))
    order = np.argsort(-log_pt, axis=1)
    log_pt = np.take_along_axis(log_pt, order, axis=1)
    log_pt -= np.log(np.exp(log_pt).sum(axis=1, keepdims=True))  # log of the pT fraction
    pos = np.take_along_axis(pos, order[..., None], axis=1)
    d_r = np.hypot(pos[..., 0], pos[..., 1])
    log_e = log_pt + np.log(np.cosh(pos[..., 0])) + rng.normal(0, 0.05, (n, PARTICLES))
    charge = rng.choice([-1.0, 0.0, 1.0], (n, PARTICLES), p=[0.35, 0.3, 0.35])
    x = np.stack([log_pt, pos[..., 0], pos[..., 1], log_e, d_r, charge], axis=-1)
    mean = np.array([-4.5, 0.0, 0.0, -4.5, 0.25, 0.0])
    scale = np.array([2.0, 0.25, 0.25, 2.0, 0.15, 0.8])
    return ((x - mean) / scale).astype(np.float32), y


# --------------------------------------------------------------------------- model
def build_model(cell: str = 'lstm'):
    """Input (20, 6) -> LSTM or GRU(20) -> Dense(2) -> softmax."""
    import keras
    layers = keras.layers
    rnn = {'lstm': layers.LSTM, 'gru': layers.GRU}[cell]
    x = keras.Input((PARTICLES, FEATURES), name='particles')
    h = rnn(UNITS, name=cell)(x)
    logits = layers.Dense(len(CLASSES), name='dense')(h)
    return keras.Model(x, layers.Activation('softmax', name='softmax')(logits))


class _TorchNet:
    """The same network in PyTorch, whose fused LSTM/GRU kernels train in seconds on a CPU (Keras 3's
    torch backend steps the recurrence in Python, about 20x slower here)."""

    def __init__(self, cell: str):
        import torch
        self.cell = cell
        self.rnn = {'lstm': torch.nn.LSTM, 'gru': torch.nn.GRU}[cell](FEATURES, UNITS, batch_first=True)
        self.fc = torch.nn.Linear(UNITS, len(CLASSES))

    def parameters(self):
        return list(self.rnn.parameters()) + list(self.fc.parameters())

    def __call__(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


def _gru_blocks(w: np.ndarray) -> np.ndarray:
    """torch's GRU gate blocks (r, z, n) along axis 0 in Keras' order (z, r, h)."""
    r, z, n = np.split(w, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def _to_keras(net: _TorchNet):
    """The Keras model with the trained PyTorch weights (LSTM: one bias = bias_ih + bias_hh; GRU: Keras
    gate order, reset_after=True's (2, 3n) bias)."""
    p = {k: v.detach().numpy().astype(np.float64) for k, v in net.rnn.named_parameters()}
    model = build_model(net.cell)
    if net.cell == 'lstm':
        weights = [p['weight_ih_l0'].T, p['weight_hh_l0'].T, p['bias_ih_l0'] + p['bias_hh_l0']]
    else:
        weights = [_gru_blocks(p['weight_ih_l0']).T, _gru_blocks(p['weight_hh_l0']).T,
                   np.stack([_gru_blocks(p['bias_ih_l0']), _gru_blocks(p['bias_hh_l0'])])]
    model.get_layer(net.cell).set_weights(weights)
    model.get_layer('dense').set_weights([net.fc.weight.detach().numpy().T, net.fc.bias.detach().numpy()])
    import torch
    x, _ = make_jets(64, seed=7)
    want = torch.softmax(net(torch.tensor(x)), dim=-1).detach().numpy()
    err = float(np.max(np.abs(np.asarray(model.predict(x, verbose=0)) - want)))
    if err > 1e-4:  # the weight mapping is wrong
        raise RuntimeError(f'Keras model differs from the trained PyTorch network by {err}')
    return model


def train(cell: str, n_train: int, epochs: int, seed: int = 1):
    """The Keras model, trained on generated jets (in PyTorch: Adam, batches of 128, a few epochs)."""
    import torch
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: threads cost more than they give (and share the CPU fairly)
    net = _TorchNet(cell)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    x, y = make_jets(n_train, seed=seed)
    xs, ys = torch.tensor(x), torch.tensor(y)
    for _ in range(epochs):
        perm = torch.randperm(n_train)
        for i in range(0, n_train, 128):
            batch = perm[i:i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xs[batch]), ys[batch]).backward()
            opt.step()
    torch.set_num_threads(threads)
    return _to_keras(net)


def convert(model, precision: dict, output_dir: str, static: bool = True):
    """The fpga4ml model of the trained network under one precision (the recurrent layer static or not)."""
    config = {key: dict(value) for key, value in precision.items()}
    cell = 'LSTM' if any(layer.name == 'lstm' for layer in model.layers) else 'GRU'
    types = {name: entry for name, entry in config.get('LayerType', {}).items() if name not in ('LSTM', 'GRU')
             or name == cell}  # the other cell's entry would draw an unknown-key warning
    config['LayerType'] = {**types, cell: {**types.get(cell, {}), 'Static': static}}
    return fpga4ml.convert_from_keras_model(model, hls_config=config, output_dir=output_dir,
                                            project_name='rnn_top_tagging', io_type='io_parallel')


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Train, convert at two precisions, compare with Keras; prints one line per number."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cell', choices=('lstm', 'gru'), default='lstm')
    ap.add_argument('--quick', action='store_true', help='fewer jets and epochs (a few seconds of training)')
    ap.add_argument('--csim', action='store_true', help='also build the HLS C simulation and check it bit for bit')
    ap.add_argument('--out', default='build/rnn_top_tagging')
    args = ap.parse_args(argv)
    n_train, n_test, epochs = (3000, 1000, 3) if args.quick else (20000, 5000, 8)
    start = time.perf_counter()
    model = train(args.cell, n_train, epochs)
    print(f'trained {args.cell.upper()}({UNITS}) on {n_train} generated jets, {epochs} epochs, '
          f'{time.perf_counter() - start:.1f} s')
    x, y = make_jets(n_test, seed=99)
    p_float = np.asarray(model.predict(x, verbose=0))
    print(f'Keras float accuracy {100 * np.mean(p_float.argmax(1) == y):.2f} % on {n_test} test jets')
    for k, (name, precision) in enumerate(PRECISIONS.items()):
        hls = convert(model, precision, str(Path(args.out) / f'p{k}'))
        hls.compile()
        p_fixed = np.asarray(hls.predict(x))
        agree = np.mean(p_fixed.argmax(1) == p_float.argmax(1))
        print(f'{name}: fpga4ml (fixed point) accuracy {100 * np.mean(p_fixed.argmax(1) == y):.2f} %, '
              f'argmax agreement with float {100 * agree:.2f} %, max |fixed - float| '
              f'{np.max(np.abs(p_fixed - p_float)):.4f}')
        if args.csim:
            hls.compile(sim='csim')
            csim = np.asarray(hls.predict(x, sim='csim'))
            same = np.all(csim.reshape(n_test, -1) == p_fixed.reshape(n_test, -1), axis=1)
            print(f'{name}: C simulation (static) == emulator, bit for bit, on {100 * same.mean():.2f} % of '
                  f'{n_test} jets')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
