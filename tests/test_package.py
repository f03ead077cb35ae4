"""Packaging promises: the core imports only numpy, and the public API names exist."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_core_works_without_any_framework():
    """With keras, torch, tensorflow and onnx made unimportable, the core still converts and predicts."""
    code = textwrap.dedent('''
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('keras', 'torch', 'tensorflow', 'onnx', 'numba', 'hls4ml'):
                    raise ImportError('blocked for this test: ' + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        import fpga4ml
        from fpga4ml.converters import convert_graph
        from fpga4ml.ir import Graph, Node
        g = Graph()
        g.add(Node('x', 'Input', [], (4,)))
        g.add(Node('fc', 'Dense', ['x'], (3,), weights={'kernel': np.ones((4, 3), np.float32), 'bias': np.zeros(3, np.float32)}))
        g.inputs, g.outputs = ['x'], ['fc']
        model = convert_graph(g, {'Model': {'Precision': 'fixed<16,6>'}})
        y = model.predict(np.full((5, 4), 0.5))
        assert np.all(y == 2.0), y
        assert not any(m.split('.')[0] in ('keras', 'torch', 'numba') for m in sys.modules)
        try:
            fpga4ml.convert_from_keras_model(object())
        except ImportError as err:
            print('keras-missing:', err)
    ''')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'fpga4ml[keras]'" in out.stdout, out.stdout


def test_hls4ml_style_module_paths():
    import fpga4ml

    assert fpga4ml.converters.convert_from_keras_model is fpga4ml.convert_from_keras_model
    assert fpga4ml.utils.config_from_keras_model is fpga4ml.config_from_keras_model
    for name in ('compile', 'predict', 'trace', 'write', 'build', 'get_layers', 'summary'):
        assert callable(getattr(fpga4ml.Model, name))
