"""hls4ml-style module path: `fpga4ml.converters.convert_from_keras_model`."""

from .convert import convert_from_keras_model, convert_graph

__all__ = ['convert_from_keras_model', 'convert_graph']
