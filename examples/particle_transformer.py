"""Jet tagging with a small particle transformer: 16 particles x 6 features -> 2 encoder blocks -> pooled classifier.

The network is of the size class of the b-tagging transformer of arXiv 2402.01047 (a few particles
with a few features each, embedding dimension 16, 2 heads, 2 encoder blocks): a Linear embedding
(6 -> 16), then per block a pre-norm LayerNorm, 2-head self-attention (head size 8) with a residual
add, a LayerNorm and an MLP (16 -> 32, ReLU, 32 -> 16) with a residual add; the mean over the
particles and a Linear classifier (16 -> 2 logits).

The jets come from examples/rnn_top_tagging.py's fixed-seed generator (QCD against top jets, each
a pT-sorted list of particles with 6 features); the transformer reads the 16 leading particles.

Steps: generate -> train the network in PyTorch (float, Adam, seconds on a CPU) -> copy the
weights into the same network built three ways:

* Keras 3 (`Dense`, `LayerNormalization`, `MultiHeadAttention`, `Add`, an `EinsumDense` mean over
  the particles), converted at a 16-bit configuration (fixed<16,6,RND,SAT>): accuracy float
  against fixed and the argmax agreement with the float network;
* PyTorch (`nn.Linear`, `nn.LayerNorm`, `nn.MultiheadAttention`, `torch.einsum` mean): converted
  with the same configuration, its emulator outputs must equal the Keras copy's bit for bit;
* HGQ2 (`QDense`, `QMultiHeadAttention`, `QAdd`, `QGlobalAveragePooling1D`; Keras'
  `LayerNormalization` between them), quantized after training (8-bit weights, 8-bit activations
  between the layers): the small-width design whose Verilog latency is reported, the model that
  bench/bench_transformer.py compares with hls4ml.

Then, as asked: the HLS C simulation (--csim) and the Verilator simulation (--verilator) against the
emulator bit for bit, and the Verilog design's latency at 5 ns with its resource estimate
(--verilog). --fast also trains a latency variant in HGQ2 with its quantizers in the loop (2-bit
weights, 1 fractional bit per value, no LayerNorm, softmax without maximum, an MLP of 16 hidden units) and reports its
accuracy, its bits against HGQ2's and its Verilog latency at 5 ns. Run:

    KERAS_BACKEND=torch .venv/bin/python examples/particle_transformer.py [--quick] [--csim] [--verilog] [--verilator] [--fast]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

os.environ.setdefault('KERAS_BACKEND', 'torch')  # before keras is imported

import numpy as np  # noqa: E402

import fpga4ml  # noqa: E402

CLASSES = ('qcd', 'top')
PARTICLES, FEATURES, EMBED, HEADS, MLP, BLOCKS = 16, 6, 16, 2, 32, 2
#: the 16-bit configuration of the Keras and PyTorch copies
CONFIG_16 = {'Model': {'Precision': 'fixed<16,6,RND,SAT>'}}
#: the HGQ2 copy: bits of the weights and of the values between layers (kif: sign, integer, fraction)
HGQ_WEIGHT_BITS, HGQ_INTEGER, HGQ_FRACTION = 8, 3, 4
#: the latency variant (--fast): HGQ2 trained from scratch with 2-bit weights and 1 fractional bit per value,
#: wrapping values whose integer bits HGQ2 sets from the training data, no LayerNorm, softmax without maximum
FAST_WEIGHT_BITS, FAST_FRACTION = 2, 1
#: the latency variant's MLP width: 16 hidden units take a stage off the 32 of the other copies (18 cycles, not 19)
FAST_MLP = 16
#: the latency variant's Verilog: 5 ns, narrow products of two variables in LUTs
FAST_VERILOG = {'Model': {'Precision': 'fixed<16,6,RND,SAT>', 'VariableProducts': 'auto'}}


def load_jets():
    """examples/rnn_top_tagging.py's jet generator (make_jets(n, seed) -> (n, 20, 6) features, labels)."""
    spec = importlib.util.spec_from_file_location('rnn_top_tagging', Path(__file__).with_name('rnn_top_tagging.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_jets


def make_jets(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n jets: the 16 leading particles (n, 16, 6) float32 and the labels (0 = QCD, 1 = top)."""
    x, y = load_jets()(n, seed=seed)
    return np.ascontiguousarray(x[:, :PARTICLES]), y


# --------------------------------------------------------------------------- PyTorch (training and a copy)
def torch_network():
    """The transformer as a torch.nn.Module (pre-norm blocks, batch_first attention, einsum mean)."""
    import torch
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(EMBED), nn.LayerNorm(EMBED)
            self.mha = nn.MultiheadAttention(EMBED, HEADS, batch_first=True)
            self.fc1, self.fc2 = nn.Linear(EMBED, MLP), nn.Linear(MLP, EMBED)

        def forward(self, h):
            n = self.ln1(h)
            h = h + self.mha(n, n, n, need_weights=False)[0]
            return h + self.fc2(torch.relu(self.fc1(self.ln2(h))))

    class ParticleTransformer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(FEATURES, EMBED)
            self.blocks = nn.ModuleList(Block() for _ in range(BLOCKS))
            self.mean = nn.Parameter(torch.full((PARTICLES,), 1.0 / PARTICLES), requires_grad=False)
            self.head = nn.Linear(EMBED, len(CLASSES))

        def forward(self, x):
            h = self.embed(x)
            for block in self.blocks:
                h = block(h)
            return self.head(torch.einsum('btd,t->bd', h, self.mean))

    return ParticleTransformer()


def train(n_train: int, epochs: int, seed: int = 1):
    """The PyTorch network trained on generated jets (Adam, shuffled batches of 128, cross entropy), in eval mode."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    torch.manual_seed(seed)
    net = torch_network()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], 3e-3)
    jets = TensorDataset(*map(torch.tensor, make_jets(n_train, seed=seed)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: threads cost more than they give (and share the CPU fairly)
    for _ in range(epochs):
        for xb, yb in DataLoader(jets, batch_size=128, shuffle=True):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    torch.set_num_threads(threads)
    return net.eval()


def torch_logits(net, x: np.ndarray) -> np.ndarray:
    """The float logits of the PyTorch network."""
    import torch
    with torch.no_grad():
        return net(torch.tensor(x)).numpy().astype(np.float64)


# --------------------------------------------------------------------------- weights for the Keras copies
def _np(t) -> np.ndarray:
    return t.detach().numpy().astype(np.float32)


def attention_weights(mha) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """nn.MultiheadAttention's projections as Keras MultiHeadAttention kernels and biases.

    query/key/value: kernel (E, heads, head size) and bias (heads, head size); output: kernel
    (heads, head size, E) and bias (E,). Keras scales the query by 1/sqrt(head size) as torch does.
    """
    size = EMBED // HEADS
    w, b = np.split(_np(mha.in_proj_weight), 3), np.split(_np(mha.in_proj_bias), 3)
    out = {name: (wi.T.reshape(EMBED, HEADS, size), bi.reshape(HEADS, size))
           for name, wi, bi in zip(('query', 'key', 'value'), w, b)}
    out['output'] = (_np(mha.out_proj.weight).T.reshape(HEADS, size, EMBED), _np(mha.out_proj.bias))
    return out


def keras_weights(net) -> dict[str, list[np.ndarray]]:
    """Layer name -> Keras weight list (kernel, bias or gamma, beta) for every layer outside attention."""
    out = {'embed': [_np(net.embed.weight).T, _np(net.embed.bias)],
           'head': [_np(net.head.weight).T, _np(net.head.bias)]}
    for k, block in enumerate(net.blocks):
        out[f'ln{k}a'] = [_np(block.ln1.weight), _np(block.ln1.bias)]
        out[f'ln{k}b'] = [_np(block.ln2.weight), _np(block.ln2.bias)]
        out[f'mlp{k}a'] = [_np(block.fc1.weight).T, _np(block.fc1.bias)]
        out[f'mlp{k}b'] = [_np(block.fc2.weight).T, _np(block.fc2.bias)]
    return out


def _sublayers(mha) -> dict:
    """The four projection sublayers of a Keras or HGQ2 MultiHeadAttention."""
    return {'query': mha._query_dense, 'key': mha._key_dense, 'value': mha._value_dense,
            'output': mha._output_dense}


def copy_weights(model, net) -> None:
    """Copy the trained PyTorch weights into a Keras or HGQ2 copy (layers named as in build_keras_model)."""
    names = {layer.name for layer in model.layers}
    for name, values in keras_weights(net).items():
        if name not in names:  # a copy without LayerNorms
            continue
        layer = model.get_layer(name)
        layer.kernel.assign(values[0]) if hasattr(layer, 'kernel') else layer.gamma.assign(values[0])
        layer.bias.assign(values[1]) if hasattr(layer, 'kernel') else layer.beta.assign(values[1])
    for k, block in enumerate(net.blocks):
        subs = _sublayers(model.get_layer(f'mha{k}'))
        for name, (kernel, bias) in attention_weights(block.mha).items():
            subs[name].kernel.assign(kernel)
            if subs[name].bias is not None:  # HGQ2's key projection has no bias: q . b_k is the same for
                subs[name].bias.assign(bias)  # every key of a query, and the softmax over the keys ignores it


# --------------------------------------------------------------------------- Keras 3 and HGQ2 copies
def build_keras_model():
    """The transformer in Keras 3 (pre-norm blocks; the mean over the particles as a constant EinsumDense)."""
    import keras
    L = keras.layers
    x = keras.Input((PARTICLES, FEATURES), name='particles')
    h = L.Dense(EMBED, name='embed')(x)
    for k in range(BLOCKS):
        n = L.LayerNormalization(epsilon=1e-5, name=f'ln{k}a')(h)
        h = L.Add(name=f'add{k}a')([h, L.MultiHeadAttention(HEADS, EMBED // HEADS, name=f'mha{k}')(n, n)])
        n = L.LayerNormalization(epsilon=1e-5, name=f'ln{k}b')(h)
        m = L.Dense(EMBED, name=f'mlp{k}b')(L.Dense(MLP, activation='relu', name=f'mlp{k}a')(n))
        h = L.Add(name=f'add{k}b')([h, m])
    pool = L.EinsumDense('btd,t->bd', output_shape=(EMBED,), name='mean', trainable=False)
    p = pool(h)
    pool.kernel.assign(np.full((PARTICLES,), 1.0 / PARTICLES, np.float32))
    return keras.Model(x, L.Dense(len(CLASSES), name='head')(p))


def build_hgq_model(layer_norm: bool = True):
    """The transformer in HGQ2 0.2 (kif activations of 1 + HGQ_INTEGER + HGQ_FRACTION bits, kbi weights of
    HGQ_WEIGHT_BITS bits, saturating); LayerNormalization is Keras' (HGQ2 has none); layer_norm=False leaves
    the four LayerNorms out (hls4ml 1.3.0 cannot build an HGQ2 model with one: bench_transformer.py)."""
    import keras
    from hgq.config import LayerConfigScope, QuantizerConfigScope
    from hgq.layers import QAdd, QDense, QGlobalAveragePooling1D, QMultiHeadAttention
    L = keras.layers
    with (QuantizerConfigScope(place='weight', default_q_type='kbi', b0=HGQ_WEIGHT_BITS, i0=1),
          QuantizerConfigScope(place='bias', default_q_type='kbi', b0=HGQ_WEIGHT_BITS, i0=1),
          QuantizerConfigScope(place='datalane', default_q_type='kif', i0=HGQ_INTEGER, f0=HGQ_FRACTION,
                               overflow_mode='SAT_SYM'),
          LayerConfigScope(enable_ebops=False)):
        x = keras.Input((PARTICLES, FEATURES), name='particles')
        h = QDense(EMBED, name='embed')(x)
        def norm(h, name: str):  # axis 2: the only axis hls4ml 1.3.0 takes from Keras 3
            return L.LayerNormalization(axis=2, epsilon=1e-5, name=name)(h) if layer_norm else h

        for k in range(BLOCKS):
            n = norm(h, f'ln{k}a')
            mha = QMultiHeadAttention(HEADS, EMBED // HEADS, fuse='none', name=f'mha{k}')
            h = QAdd(name=f'add{k}a')([h, mha(n, n)])
            n = norm(h, f'ln{k}b')
            m = QDense(EMBED, name=f'mlp{k}b')(QDense(MLP, activation='relu', name=f'mlp{k}a')(n))
            h = QAdd(name=f'add{k}b')([h, m])
        out = QDense(len(CLASSES), name='head')(QGlobalAveragePooling1D(name='mean')(h))
    return keras.Model(x, out)


def build_hgq_fast_model():
    """The latency variant in HGQ2 0.2: the same blocks without LayerNorm and with FAST_MLP hidden
    units, QMultiHeadAttention(stable_softmax=False)
    (the exp table reads the scores: no maximum over the keys), kbi weights of FAST_WEIGHT_BITS bits, kif values with
    FAST_FRACTION fractional bits, truncated and wrapping (HGQ2 grows their integer bits to the training data's
    range, so nothing wraps there; both cost no logic in Verilog)."""
    import keras
    from hgq.config import LayerConfigScope, QuantizerConfigScope
    from hgq.layers import QAdd, QDense, QGlobalAveragePooling1D, QMultiHeadAttention
    with (QuantizerConfigScope(place='weight', default_q_type='kbi', b0=FAST_WEIGHT_BITS, i0=1),
          QuantizerConfigScope(place='bias', default_q_type='kbi', b0=FAST_WEIGHT_BITS, i0=1),
          QuantizerConfigScope(place='datalane', default_q_type='kif', i0=1, f0=FAST_FRACTION, overflow_mode='WRAP',
                               round_mode='TRN'),
          LayerConfigScope(enable_ebops=False)):
        x = keras.Input((PARTICLES, FEATURES), name='particles')
        h = QDense(EMBED, name='embed')(x)
        for k in range(BLOCKS):
            mha = QMultiHeadAttention(HEADS, EMBED // HEADS, fuse='none', stable_softmax=False, name=f'mha{k}')
            h = QAdd(name=f'add{k}a')([h, mha(h, h)])
            m = QDense(EMBED, name=f'mlp{k}b')(QDense(FAST_MLP, activation='relu', name=f'mlp{k}a')(h))
            h = QAdd(name=f'add{k}b')([h, m])
        out = QDense(len(CLASSES), name='head')(QGlobalAveragePooling1D(name='mean')(h))
    return keras.Model(x, out)


def train_hgq_fast(n_train: int, epochs: int, seed: int = 1):
    """The latency variant trained with its quantizers in the loop (Adam 1e-3, batches of 128, cross entropy)."""
    import keras
    import torch
    keras.utils.set_random_seed(seed)
    model = build_hgq_fast_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = make_jets(n_train, seed=seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    losses = model.fit(x, y, batch_size=128, epochs=epochs, verbose=0).history['loss']
    torch.set_num_threads(threads)
    if not np.all(np.isfinite(losses)):  # exp of growing scores overflows float32 (seen at learning rates >= 2e-3)
        raise RuntimeError(f'the latency variant diverged in training (losses per epoch {losses}); its softmax '
                           'without maximum needs small steps: lower the learning rate or the epochs')
    return model


def keras_copy(net, builder, **options):
    """A Keras/HGQ2 copy with the trained weights (options go to the builder)."""
    model = builder(**options)
    copy_weights(model, net)
    return model


def keras_logits(model, x: np.ndarray) -> np.ndarray:
    """The Keras (or HGQ2) model's outputs as float64."""
    import keras
    return np.asarray(keras.ops.convert_to_numpy(model(x)), dtype=np.float64)


# --------------------------------------------------------------------------- conversions and checks
def convert_keras(model, config: dict, output_dir: str, backend: str = 'Vitis'):
    """fpga4ml's model of a Keras or HGQ2 copy (io_parallel, 5 ns clock)."""
    return fpga4ml.convert_from_keras_model(model, hls_config={k: dict(v) for k, v in config.items()},
                                            output_dir=output_dir, backend=backend, project_name='particle_transformer',
                                            io_type='io_parallel', clock_period=5)


def convert_torch(net, config: dict, output_dir: str):
    """fpga4ml's model of the PyTorch network."""
    return fpga4ml.convert_from_pytorch_model(net, {k: dict(v) for k, v in config.items()}, output_dir=output_dir,
                                              project_name='pt_torch', input_shape=(PARTICLES, FEATURES))


def same_rows(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of rows (inputs) on which two output arrays are bit for bit equal."""
    return float(np.mean(np.all(np.asarray(a).reshape(len(a), -1) == np.asarray(b).reshape(len(b), -1), axis=1)))


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Accuracy in percent."""
    return 100 * float(np.mean(np.asarray(logits).argmax(1) == y))


def report_16bit(net, x, y, out: Path, csim: bool) -> None:
    """Keras and PyTorch copies at fixed<16,6,RND,SAT>: accuracy, agreement, Keras == torch, C sim == emulator."""
    p_float = torch_logits(net, x)
    km = keras_copy(net, build_keras_model)
    print(f'Keras copy == PyTorch float within {np.max(np.abs(keras_logits(km, x) - p_float)):.1e}')
    hls = convert_keras(km, CONFIG_16, str(out / 'keras16'))
    start = time.perf_counter()
    p_fixed = np.asarray(hls.predict(x))
    seconds = time.perf_counter() - start
    print(f'16-bit (fixed<16,6,RND,SAT>) Keras copy: fixed-point accuracy {accuracy(p_fixed, y):.2f} %, argmax '
          f'agreement with float {100 * np.mean(p_fixed.argmax(1) == p_float.argmax(1)):.2f} %, max |fixed - float| '
          f'{np.max(np.abs(p_fixed - p_float)):.4f} (emulator: {len(x) / seconds:,.0f} jets/s)')
    p_torch = np.asarray(convert_torch(net, CONFIG_16, str(out / 'torch16')).predict(x))
    print(f'PyTorch-built copy == Keras-built copy (emulator outputs), bit for bit, on '
          f'{100 * same_rows(p_torch, p_fixed):.2f} % of {len(x)} jets')
    import torch
    with torch.no_grad():  # negative control: one classifier bias moved by 1/16 (64 LSBs of fixed<16,6>)
        net.head.bias[0] += 1 / 16
        moved = np.asarray(convert_torch(net, CONFIG_16, str(out / 'torch16_moved')).predict(x))
        net.head.bias[0] -= 1 / 16
    print(f'control: the PyTorch copy with one bias moved equals the Keras copy on '
          f'{100 * same_rows(moved, p_fixed):.2f} %')
    if csim:
        check_csim(hls, x, p_fixed, '16-bit Keras copy')


def check_csim(hls, x: np.ndarray, emulated: np.ndarray, what: str) -> None:
    """Build the HLS C simulation and compare it with the emulator bit for bit."""
    start = time.perf_counter()
    hls.compile(sim='csim')
    built = time.perf_counter() - start
    got = np.asarray(hls.predict(x, sim='csim'))
    print(f'{what}: C simulation == emulator, bit for bit, on {100 * same_rows(got, emulated):.2f} % of {len(x)} jets '
          f'(built in {built:.0f} s)')


def report_hgq(net, x, y, out: Path, csim: bool, verilog: bool, verilator: bool) -> None:
    """The HGQ2 copy: accuracy, agreement with HGQ2, C sim and Verilator == emulator, Verilog latency at 5 ns."""
    hm = keras_copy(net, build_hgq_model)
    p_hgq = keras_logits(hm, x)
    hls = convert_keras(hm, {'Model': {'Precision': 'fixed<16,6,RND,SAT>'}}, str(out / 'hgq'))
    p_fixed = np.asarray(hls.predict(x))
    print(f'HGQ2 copy ({HGQ_WEIGHT_BITS}-bit weights, fixed<{1 + HGQ_INTEGER + HGQ_FRACTION},{1 + HGQ_INTEGER}> '
          f'values, LayerNorm at fixed<16,6>): HGQ2 accuracy {accuracy(p_hgq, y):.2f} %, '
          f'fpga4ml {accuracy(p_fixed, y):.2f} %, '
          f'argmax agreement with HGQ2 {100 * np.mean(p_fixed.argmax(1) == p_hgq.argmax(1)):.2f} %, '
          f'with float {100 * np.mean(p_fixed.argmax(1) == torch_logits(net, x).argmax(1)):.2f} %, same bits as HGQ2 '
          f'(which computes LayerNorm in float) on {100 * same_rows(p_fixed, p_hgq):.2f} %')
    if csim:
        check_csim(hls, x, p_fixed, 'HGQ2 copy')
    if verilog or verilator:
        rtl = convert_keras(hm, {'Model': {'Precision': 'fixed<16,6,RND,SAT>'}}, str(out / 'hgq_rtl'), 'Verilog')
        est = rtl.estimate()
        print(f"HGQ2 copy, Verilog at 5 ns: latency {est['latency_cycles']} cycles ({5 * est['latency_cycles']} ns), "
              f"II {est['ii']}, estimate {est['LUT']:,} LUT / {est['FF']:,} FF / {est['DSP']:,} DSP "
              f"(generated in {est['generation_seconds']:.0f} s)")
        if verilator:
            start = time.perf_counter()
            rtl.compile(sim='rtl')
            got = np.asarray(rtl.predict(x, sim='rtl'))
            print(f'HGQ2 copy: Verilator == emulator, bit for bit, on {100 * same_rows(got, p_fixed):.2f} % of '
                  f'{len(x)} jets (built and run in {time.perf_counter() - start:.0f} s)')
            import torch
            with torch.no_grad():  # negative control: one classifier bias moved by 1/4 (4 LSBs of fixed<8,4>)
                net.head.bias[0] += 1 / 4
                moved = np.asarray(convert_keras(keras_copy(net, build_hgq_model), {'Model': {
                    'Precision': 'fixed<16,6,RND,SAT>'}}, str(out / 'hgq_moved')).predict(x))
                net.head.bias[0] -= 1 / 4
            print(f'control: the Verilator outputs equal the emulator of the copy with one bias moved on '
                  f'{100 * same_rows(got, moved):.2f} %')


def report_fast(x, y, out: Path, n_train: int, epochs: int, csim: bool, verilator: bool) -> None:
    """The latency variant: trained, accuracy, same bits as HGQ2, Verilog latency at 5 ns (and C sim, Verilator)."""
    start = time.perf_counter()
    model = train_hgq_fast(n_train, epochs)
    p_hgq = keras_logits(model, x)
    print(f'latency variant (HGQ2, {FAST_WEIGHT_BITS}-bit weights, {FAST_FRACTION} fractional bit(s), no LayerNorm, '
          f'softmax without maximum): trained on {n_train} jets, {epochs} epochs, {time.perf_counter() - start:.0f} s; '
          f'HGQ2 accuracy {accuracy(p_hgq, y):.2f} %')
    rtl = convert_keras(model, FAST_VERILOG, str(out / 'fast_rtl'), 'Verilog')
    p_fixed = np.asarray(rtl.predict(x))
    est = rtl.estimate()
    print(f'latency variant: same bits as HGQ2 on {100 * same_rows(p_fixed, p_hgq):.2f} %; Verilog at 5 ns: latency '
          f"{est['latency_cycles']} cycles ({5 * est['latency_cycles']} ns), II {est['ii']}, estimate {est['LUT']:,} "
          f"LUT / {est['FF']:,} FF / {est['DSP']:,} DSP")
    if csim:
        check_csim(convert_keras(model, {'Model': {'Precision': FAST_VERILOG['Model']['Precision']}},
                                 str(out / 'fast_hls')), x, p_fixed, 'latency variant')
    if verilator:
        rtl.compile(sim='rtl')
        got = np.asarray(rtl.predict(x, sim='rtl'))
        print(f'latency variant: Verilator == emulator, bit for bit, on {100 * same_rows(got, p_fixed):.2f} % of '
              f'{len(x)} jets')
        kernel = model.get_layer('head').kernel  # control: HGQ2 with the largest head weight negated
        import keras
        values = np.array(keras.ops.convert_to_numpy(kernel))
        values.flat[np.argmax(np.abs(values))] *= -1
        kernel.assign(values)
        print(f'control: HGQ2 with one head weight negated equals Verilator on '
              f'{100 * same_rows(got, keras_logits(model, x)):.2f} %')


def main(argv: list[str] | None = None) -> int:
    """Train, copy, convert, compare; prints one line per number."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='fewer jets and epochs (seconds), a few test jets')
    ap.add_argument('--csim', action='store_true', help='build the HLS C simulations and check them bit for bit')
    ap.add_argument('--verilog', action='store_true', help='generate the Verilog design: latency and estimate')
    ap.add_argument('--verilator', action='store_true', help='also simulate the Verilog with Verilator (long)')
    ap.add_argument('--fast', action='store_true', help='also train the latency variant (HGQ2, narrow, no LayerNorm) '
                    'and report its Verilog latency')
    ap.add_argument('--out', default='build/particle_transformer')
    args = ap.parse_args(argv)
    n_train, n_test, epochs = (1000, 48, 2) if args.quick else (20000, 2000, 6)
    start = time.perf_counter()
    net = train(n_train, epochs)
    print(f'trained the PyTorch transformer on {n_train} generated jets, {epochs} epochs, '
          f'{time.perf_counter() - start:.1f} s')
    x, y = make_jets(n_test, seed=99)
    print(f'PyTorch float accuracy {accuracy(torch_logits(net, x), y):.2f} % on {n_test} test jets')
    report_16bit(net, x, y, Path(args.out), args.csim)
    report_hgq(net, x, y, Path(args.out), args.csim, args.verilog, args.verilator)
    if args.fast:
        report_fast(x, y, Path(args.out), n_train // 2, max(1, epochs // 2), args.csim, args.verilator)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
