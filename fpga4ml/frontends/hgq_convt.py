"""HGQ2's table convolutions QConvT1D / QConvT2D, bit-exact (registered by hgq_attention.py).

HGQ2 computes a QConvT as its parent QDenseT over im2col windows: ``keras.ops.image.extract_patches``
(zero padding for 'same', the window's elements in (kernel row, kernel column, channel) order) gives
every output position a vector of kh * kw * C values; each value is broadcast to the filters, quantized
by the input quantizer of its (position, window element, filter), mapped by a small network shared by
all positions (one per window element and filter) and the table output quantizer, and the results are
summed over the window. The quantizers are per position, so every (position, window element, filter)
has its own table.

That is one ``TableDense`` (hgq_attention.table_dense_node): term (position, j, o) reads the input
element of window element j at that position (geometry.im2col_index, the order of Keras' patches);
a term on a padding zero is the constant entry of 0 of its table. Then activation and [oq] as for
QDenseT. Strides and dilation as Keras' Conv; data_format='channels_first' and groups != 1 are refused
naming the layer (HGQ2 itself refuses groups != 1).
"""

from __future__ import annotations

import numpy as np

from ..geometry import Window, as_hwc, im2col_index
from ..ir import Graph, GraphError
from . import keras as K
from .hgq_attention import table_dense_node


def _window(call: K._Call) -> Window:
    """The layer's sliding window over its (W, C) or (H, W, C) input (Keras 'valid'/'same' padding)."""
    layer = call.layer
    rank = K._spatial_rank(call)
    if int(getattr(layer, 'groups', 1)) != 1:
        raise GraphError(f'{call.where()}: groups={layer.groups} is not supported; only groups=1')
    attrs = K._window_attrs(call, layer.kernel_size, layer.strides, layer.dilation_rate)
    pairs = {k: ((1,) + tuple(attrs[k]) if rank == 1 else tuple(attrs[k])) for k in ('kernel_size', 'strides',
                                                                                      'dilation')}
    pads = tuple(attrs['padding'])
    h, w, _ = as_hwc(call.in_shapes[0])
    win = Window(in_hw=(h, w), kernel=pairs['kernel_size'], strides=pairs['strides'], dilation=pairs['dilation'],
                 pads=(0, 0) + pads if rank == 1 else pads)
    if win.out_hw[2 - rank:] != tuple(call.out_shape[:-1]):
        raise GraphError(f'{call.where()}: the window {win} gives {win.out_hw[2 - rank:]} positions, but the layer '
                         f'outputs {call.out_shape}')
    return win


def _qconv_t(call: K._Call, graph: Graph) -> str:
    """QConvT1D / QConvT2D -> TableDense over the im2col windows, activation, [oq]."""
    win = _window(call)
    n_out = int(call.layer.n_out)
    windows = im2col_index(win, call.in_shapes[0][-1]).reshape(tuple(call.out_shape[:-1]) + (-1, 1))
    source = np.broadcast_to(windows, windows.shape[:-1] + (n_out,))  # (positions..., kh * kw * C, filters)
    rank = len(call.out_shape)
    return table_dense_node(call, graph, source, [rank - 1], list(range(rank)))


HANDLERS = {'QConvT1D': _qconv_t, 'QConvT2D': _qconv_t}
