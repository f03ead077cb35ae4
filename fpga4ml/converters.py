"""hls4ml-style module path: `fpga4ml.converters.convert_from_keras_model`."""

from .convert import convert_from_keras_model, convert_from_pytorch_model, convert_graph
from .convert import convert_from_onnx_model

__all__ = ['convert_from_keras_model', 'convert_from_pytorch_model', 'convert_graph', 'convert_from_onnx_model']
