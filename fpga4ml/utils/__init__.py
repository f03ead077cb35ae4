"""hls4ml-style module path: `fpga4ml.utils.config_from_keras_model`, `fpga4ml.utils.plot_model`,
`fpga4ml.utils.symbolic_utils` (LUTFunction, init_pysr_lut_functions)."""

from ..config import config_from_graph
from ..convert import config_from_keras_model, config_from_pytorch_model
from ..convert import config_from_onnx_model
from ..plots import plot_model

__all__ = ['config_from_graph', 'config_from_keras_model', 'config_from_pytorch_model', 'config_from_onnx_model',
           'plot_model']
