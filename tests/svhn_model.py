"""The SVHN CNN of BENCHMARKS.md as a quantized Keras model and its streaming Verilog configuration.

Shared by tests/test_verilog_svhn.py, bench/bench_svhn_stream.py and bench/bench_cnn.py. Seeded He-normal weights and
random BatchNorm statistics (not trained): the point is the architecture and the bits, not accuracy.
"""

from __future__ import annotations

import numpy as np


def svhn_keras(seed: int = 0, input_name: str = 'image', logits_name: str = 'logits', softmax: bool = False):
    """32x32x3 -> 3 x [Conv2D 3x3 (16, 16, 24), BN, ReLU, MaxPool 2x2] -> Dense 42, BN, ReLU -> Dense 64, BN, ReLU
    -> Dense 10 (logits; with softmax=True a softmax 'output_softmax' follows, as in hls4ml's tutorial)."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(seed)
    x = keras.Input((32, 32, 3), name=input_name)
    h = x
    for i, filters in enumerate((16, 16, 24)):
        h = L.Conv2D(filters, 3, use_bias=False, kernel_initializer='he_normal', name=f'conv_{i}')(h)
        h = L.BatchNormalization(name=f'bn_conv_{i}')(h)
        h = L.Activation('relu', name=f'conv_act_{i}')(h)
        h = L.MaxPooling2D(2, name=f'pool_{i}')(h)
    h = L.Flatten(name='flatten')(h)
    for i, units in enumerate((42, 64)):
        h = L.Dense(units, use_bias=False, kernel_initializer='he_normal', name=f'dense_{i}')(h)
        h = L.BatchNormalization(name=f'bn_dense_{i}')(h)
        h = L.Activation('relu', name=f'dense_act_{i}')(h)
    h = L.Dense(10, name=logits_name)(h)
    if softmax:
        h = L.Activation('softmax', name='output_softmax')(h)
    model = keras.Model(x, h, name='svhn_cnn')
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.6, 1.4, n), rng.normal(0, 0.2, n), rng.normal(0, 0.2, n),
                               rng.uniform(0.5, 2.0, n)])
    return model


def svhn_config(model, architecture: str = 'stream') -> dict:
    """6-bit weights, 6-bit unsigned ReLU outputs, 8-bit input pixels, exact ('auto') accumulators."""
    import fpga4ml

    config = fpga4ml.config_from_keras_model(model, granularity='name', default_precision='fixed<6,2,RND,SAT>')
    config['Model']['Precision'] = {'default': 'fixed<6,2,RND,SAT>', 'accum': 'auto', 'result': 'auto'}
    config['Model']['Architecture'] = architecture
    for name, entry in config['LayerName'].items():
        prec = entry.setdefault('Precision', {})
        if name == 'image':
            prec['result'] = 'ufixed<8,0,RND,SAT>'  # pixels in [0, 1)
        elif name.startswith(('conv_act', 'dense_act')):
            prec['result'] = 'ufixed<6,2,RND,SAT>'
        elif name.startswith('pool'):
            prec['accum'] = prec['result'] = 'ufixed<6,2,RND,SAT>'
    return config


def svhn_images(n: int, seed: int = 0) -> np.ndarray:
    """Random images in [0, 1) (plus a few out of range, which the input type saturates)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.05, 1.05, (n, 32, 32, 3)).astype(np.float32)
