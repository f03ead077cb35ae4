"""hls4ml-style module path: `fpga4ml.utils.config_from_keras_model`."""

from .config import config_from_graph
from .convert import config_from_keras_model, config_from_pytorch_model
from .convert import config_from_onnx_model

__all__ = ['config_from_graph', 'config_from_keras_model', 'config_from_pytorch_model', 'config_from_onnx_model']
