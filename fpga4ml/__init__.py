"""fpga4ml: trained neural networks to FPGA firmware, with a bit-exact integer emulator.

The API mirrors hls4ml's, so scripts port by changing the import::

    import fpga4ml
    config = fpga4ml.utils.config_from_keras_model(model, granularity='name')
    hls_model = fpga4ml.converters.convert_from_keras_model(model, hls_config=config)
    hls_model.compile()
    y = hls_model.predict(x)

Only numpy is imported here; Keras and other frameworks are imported when first used.
"""

from . import converters, report, utils
from .config import ConfigError, ConfigWarning
from .convert import config_from_keras_model, convert_from_keras_model
from .convert import config_from_pytorch_model, convert_from_pytorch_model
from .convert import config_from_onnx_model, convert_from_onnx_model
from .fixed import FixedType, PrecisionError, parse_precision
from .ir import Graph, GraphError, Node
from .model import BackendUnavailableError, InputWarning, Model
from .passes.validate import WeightOverflowWarning
from .profiling import profile

__version__ = '0.1.0'

__all__ = [
    'BackendUnavailableError', 'ConfigError', 'ConfigWarning', 'FixedType', 'Graph', 'GraphError', 'InputWarning', 'Model',
    'Node', 'PrecisionError', 'config_from_keras_model', 'convert_from_keras_model', 'converters',
    'config_from_pytorch_model', 'convert_from_pytorch_model',
    'config_from_onnx_model', 'convert_from_onnx_model',
    'parse_precision', 'profile', 'report', 'utils', 'WeightOverflowWarning',
]
