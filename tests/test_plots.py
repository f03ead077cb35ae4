"""Plots with hls4ml's entry points, drawn headless (Agg): checked by what the figures contain."""

from __future__ import annotations

import matplotlib
import matplotlib.text

matplotlib.use('Agg')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fpga4ml  # noqa: E402
from fpga4ml.model.profiling import compare, get_ymodel_keras, numerical  # noqa: E402  (hls4ml's module path)
from fpga4ml.plots import plot_model  # noqa: E402

keras = pytest.importorskip('keras')


@pytest.fixture(scope='module')
def mlp(tmp_path_factory):
    """A small Keras MLP ending in softmax and its fpga4ml model with narrow types (some values overflow)."""
    keras.utils.set_random_seed(3)
    km = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation='relu', name='fc1'),
                           keras.layers.Dense(3, name='fc2'), keras.layers.Activation('softmax', name='softmax')])
    cfg = fpga4ml.utils.config_from_keras_model(km, granularity='name', default_precision='fixed<8,2>')
    cfg['LayerName']['fc1']['Precision']['result'] = 'fixed<6,1>'  # narrow: some outputs wrap
    model = fpga4ml.converters.convert_from_keras_model(km, hls_config=cfg,
                                                        output_dir=str(tmp_path_factory.mktemp('prj')))
    x = np.random.default_rng(0).uniform(-2, 2, (400, 6))
    return km, model, x


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_plot_model_draws_every_layer_with_shapes_and_precisions(mlp, tmp_path):
    _, model, _ = mlp
    fig = fpga4ml.utils.plot_model(model, show_shapes=True, show_precision=True, to_file=None)  # hls4ml's path
    labels = texts(fig)
    for node in model.graph:
        label = next(t for t in labels if t.startswith(f'{node.name}:'))
        assert f'shape {node.shape}' in label
        assert f'result: ap_{node.result_type}' in label
    edges = sum(len(n.inputs) for n in model.graph)
    assert len([a for a in fig.axes[0].texts if isinstance(a, matplotlib.text.Annotation)]) == edges
    plain = texts(plot_model(model, to_file=str(tmp_path / 'm.png')))
    assert (tmp_path / 'm.png').stat().st_size > 1000
    assert not any('shape' in t or 'ap_fixed' in t for t in plain)  # negative control: the flags matter
    with pytest.raises(ValueError, match='rankdir'):
        plot_model(model, to_file=None, rankdir='BT')


def test_numerical_draws_values_over_their_types_with_overflow_counts(mlp):
    km, model, x = mlp
    wp, wph, ap, aph = numerical(model=km, hls_model=model, X=x)
    assert [t.get_text() for t in wp.axes[0].get_yticklabels()] == ['fc1/kernel', 'fc1/bias', 'fc2/kernel', 'fc2/bias']
    # one grey type box per quantized weight array, spanning log2(lsb) .. log2(max magnitude)
    boxes = {p.get_gid(): p for p in wph.axes[0].patches if (p.get_gid() or '').startswith('type:')}
    assert set(boxes) == {'type:fc1/kernel', 'type:fc1/bias', 'type:fc2/kernel', 'type:fc2/bias'}
    t = model.graph['fc1'].types['weight']
    assert boxes['type:fc1/kernel'].get_x() == np.log2(t.lsb)
    assert boxes['type:fc1/kernel'].get_width() == pytest.approx(np.log2(max(-t.min_value, t.max_value)) - np.log2(t.lsb))
    # activations: each traced layer, the overflowing one labelled with its count (as the trace counts)
    _, traced = model.trace(x)
    labels = [t.get_text() for t in aph.axes[0].get_yticklabels()]
    n = traced.stats['fc1'].overflow
    assert n > 0 and f'fc1 ({n} overflow)' in labels
    assert 'fc2' in labels  # no count where nothing overflowed
    assert {t.get_text() for t in ap.axes[0].get_yticklabels()} >= {'fc1', 'fc1_relu', 'fc2', 'softmax'}
    assert numerical(hls_model=model)[:1] == (None,)
    for kind in ('histogram', 'violinplot'):  # the other kinds draw the same rows
        fig = numerical(hls_model=model, X=x, plot=kind)[3]
        assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == labels
        assert len(fig.axes[0].patches if kind == 'histogram' else fig.axes[0].collections) > len(labels)
    with pytest.raises(ValueError, match='FacetGrid'):
        numerical(hls_model=model, plot='FacetGrid')


def test_get_ymodel_keras_and_compare(mlp):
    km, model, x = mlp
    ymodel = get_ymodel_keras(km, x)
    np.testing.assert_allclose(ymodel['fc1_relu'], np.maximum(ymodel['fc1'], 0), rtol=1e-6)
    np.testing.assert_allclose(ymodel['softmax'], km.predict(x, verbose=0), rtol=1e-6)
    fig = compare(km, model, x, plot_type='norm_diff')
    bars = {t.get_text(): b.get_height() for t, b in zip(fig.axes[0].get_xticklabels(), fig.axes[0].patches)}
    traced, _ = model.emulator.trace(x)
    assert bars['fc2'] == pytest.approx(np.linalg.norm(traced['fc2'] - ymodel['fc2']))
    assert bars['fc1'] == pytest.approx(np.linalg.norm(traced['fc1'] - ymodel['fc1']))
    fig = compare(km, model, x)  # dist_diff: one box per common layer
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(bars)
    with pytest.raises(ValueError, match='plot_type'):
        compare(km, model, x, plot_type='box')
