"""hls4ml's module path `hls4ml.model.profiling`: numerical profiling and layer-by-layer comparison plots.

The functions live in fpga4ml/plots.py (matplotlib, the `plot` extra); see docs/hls4ml-compat.md.
"""

from ..plots import compare, get_ymodel_keras, numerical

__all__ = ['compare', 'get_ymodel_keras', 'numerical']
