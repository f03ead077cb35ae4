"""Small ONNX models built in code for the tests (no exporter, no Keras import)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def gemm_model(n_in: int, n_out: int, weight: np.ndarray | None = None):
    """x (N, n_in) -> Gemm 'fc' with W (n_out, n_in), transB=1 (default W: the n_out x n_in identity)."""
    pytest.importorskip('onnx')
    from onnx import TensorProto, helper, numpy_helper

    w = np.eye(n_out, n_in, dtype=np.float32) if weight is None else np.asarray(weight, dtype=np.float32)
    node = helper.make_node('Gemm', ['x', 'W'], ['y'], name='fc', transB=1)
    graph = helper.make_graph([node], 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', n_in])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', n_out])],
                              initializer=[numpy_helper.from_array(w, 'W')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 9
    return model


def save_gemm_model(path: Path, n_in: int, n_out: int) -> Path:
    """gemm_model written to `path` (qonnx must be importable: the ONNX front end uses it)."""
    import onnx

    pytest.importorskip('qonnx')
    onnx.save(gemm_model(n_in, n_out), path)
    return path
