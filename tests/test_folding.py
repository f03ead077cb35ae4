"""ReuseFactor rules (fpga4ml/folding.py): one module for both back ends, validated at convert time."""

from __future__ import annotations

import warnings

import pytest

from fpga4ml import folding
from fpga4ml.backends.hls import emit as hls_emit
from fpga4ml.config import ConfigError
from fpga4ml.convert import convert_graph

from verilog_models import mlp_graph

MODEL = {'Precision': 'fixed<16,6>', 'ReuseFactor': 1, 'Strategy': 'Latency'}


def test_rules_are_hls4mls():
    assert folding.valid_reuse_factors(4, 6, 'Latency') == [1, 2, 3, 4, 6, 8, 12, 24]
    # Resource: divides n_in or is a multiple of n_in (3 and 6 do neither for n_in = 4)
    assert folding.valid_reuse_factors(4, 6, 'Resource') == [1, 2, 4, 8, 12, 24]
    assert folding.valid_reuse_factors(32, 5, 'Resource') == [1, 2, 4, 8, 16, 32, 160]


def test_hls_emitter_reads_the_rules_from_folding():
    for name in ('valid_reuse_factors', 'layer_strategy', 'checked_reuse_factor', 'dense_settings', 'STRATEGIES'):
        assert getattr(hls_emit, name) is getattr(folding, name), name


def test_invalid_layer_reuse_factor_raises_at_convert_time(tmp_path):
    cfg = {'Model': MODEL, 'LayerName': {'fc1': {'ReuseFactor': 5}}}  # fc1 is 12 -> 8: 96 has no divisor 5
    for backend in ('Vitis', 'Verilog'):
        with pytest.raises(ConfigError, match=r"layer 'fc1' \(Dense 12 -> 8, Strategy Latency\): ReuseFactor 5 is "
                                              r'not valid; valid values are \[1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 96\]'):
            convert_graph(mlp_graph(), cfg, output_dir=str(tmp_path / backend), backend=backend)
    cfg = {'Model': MODEL, 'LayerType': {'Dense': {'ReuseFactor': 3, 'Strategy': 'Resource'}}}
    with pytest.raises(ConfigError, match=r"layer 'fc0' \(Dense 16 -> 12, Strategy Resource\): ReuseFactor 3 "):
        convert_graph(mlp_graph(), cfg, output_dir=str(tmp_path / 'r'))


def test_valid_reuse_factors_convert_and_report_the_folded_layers(tmp_path):
    cfg = {'Model': MODEL, 'LayerName': {'fc0': {'ReuseFactor': 4}, 'fc2': {'ReuseFactor': 8, 'Strategy': 'Resource'}}}
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        model = convert_graph(mlp_graph(), cfg, output_dir=str(tmp_path / 'ok'))
    assert folding.check_reuse_factors(model.graph) == {'fc0': 4, 'fc2': 8}
    assert folding.reuse_factor(model.graph['fc0_relu']) == 1  # not foldable: its ReuseFactor is ignored


def test_model_level_reuse_factor_is_checked_at_convert_time(tmp_path):
    # 7 divides no layer's n_in * n_out: a Model-level value applies to every foldable layer and is
    # refused at convert time in both back ends, naming the first layer, the value and its valid values
    for backend in ('Vitis', 'Verilog'):
        with pytest.raises(ConfigError, match=r"layer 'fc0' \(Dense 16 -> 12, Strategy Latency\): ReuseFactor 7 is "
                                              r'not valid; valid values are \[1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, '
                                              r'192\]'):
            convert_graph(mlp_graph(), {'Model': {**MODEL, 'ReuseFactor': 7}}, output_dir=str(tmp_path / backend),
                          backend=backend)
    # control: 4 divides every layer's products (16x12, 12x8, 8x5): it converts and every Dense folds by 4
    model = convert_graph(mlp_graph(), {'Model': {**MODEL, 'ReuseFactor': 4}}, output_dir=str(tmp_path / 'ok'))
    assert folding.check_reuse_factors(model.graph) == {'fc0': 4, 'fc1': 4, 'fc2': 4}


def test_fold_shape_of_a_grouped_conv_is_its_im2col_matrix():
    import numpy as np

    from fpga4ml.ir import Node
    conv = Node('c', 'Conv', ['x'], (4, 4, 6), attrs={'groups': 2},
                weights={'kernel': np.zeros((3, 3, 2, 6)), 'bias': np.zeros(6)})
    assert folding.fold_shape(conv) == (3 * 3 * 4, 6)
    assert folding.fold_shape(Node('a', 'Activation', ['x'], (4,), attrs={'function': 'relu'})) is None
