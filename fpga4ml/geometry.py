"""Where every output element of a window or index-map op reads its inputs (channels-last).

Conv, Pool, Pad, Crop, Resize and Transpose move values around before (or instead of) any
arithmetic. This module computes, once per node, integer index arrays that say which input
element each output element reads; the emulator, the interval pass and the float reference all
gather through the same arrays, so the three cannot disagree about geometry.

Conventions: per-sample shapes are channels-last, ``(W, C)`` for 1D ops and ``(H, W, C)`` for 2D
ops. A 1D op is handled as a 2D op of height 1: kernel ``(kw,)`` is ``(1, kw)``, padding
``(left, right)`` is ``(0, 0, left, right)``. An index of -1 means "no input element here": a
padding position, read as the op's fill value (zero for Conv and Pad, ignored by Pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ir import GraphError, Node


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Keras/TensorFlow 'same' padding of one axis: (before, after), the extra element after."""
    effective = dilation * (kernel - 1) + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def output_size(size: int, kernel: int, stride: int, dilation: int, before: int, after: int) -> int:
    """Number of window positions along one axis (floor, as Keras 'valid' on the padded axis)."""
    effective = dilation * (kernel - 1) + 1
    return (size + before + after - effective) // stride + 1


def _pairs_2d(values, rank: int, what: str, node: Node) -> tuple[int, int]:
    """A per-axis attribute (length 1 or 2) as an (h, w) pair; 1D ops get h = 1."""
    values = tuple(int(v) for v in values)
    if len(values) != rank:
        raise GraphError(f'node {node.name!r}: {what}={values} must have {rank} entries for a {rank}D op')
    return (1, values[0]) if rank == 1 else (values[0], values[1])


def _pads_2d(pads, rank: int, node: Node, what: str = 'padding') -> tuple[int, int, int, int]:
    """Padding (left, right) or (top, bottom, left, right) as (top, bottom, left, right)."""
    pads = tuple(int(p) for p in pads)
    if len(pads) != 2 * rank or any(p < 0 for p in pads):
        raise GraphError(f'node {node.name!r}: {what}={pads} must be {2 * rank} non-negative amounts '
                         f"({'left, right' if rank == 1 else 'top, bottom, left, right'})")
    return (0, 0) + pads if rank == 1 else pads


def _expect_shape(node: Node, in_shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    """Raise unless the node's output shape is the one its op computes from `in_shape`."""
    if tuple(node.shape) != tuple(expected):
        raise GraphError(f'node {node.name!r}: {node.op} of {in_shape} gives shape {tuple(expected)}, '
                         f'but the node says {node.shape}')


def spatial_rank(shape: tuple[int, ...]) -> int:
    """1 for a (W, C) tensor, 2 for an (H, W, C) tensor."""
    return len(shape) - 1


def as_hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """A channels-last (W, C) or (H, W, C) shape as (H, W, C)."""
    if len(shape) == 2:
        return (1,) + tuple(shape)
    if len(shape) == 3:
        return tuple(shape)
    raise GraphError(f'expected a (W, C) or (H, W, C) shape, got {shape}')


@dataclass(frozen=True)
class Window:
    """A sliding window over an (H, W, C) input: kernel, strides, dilation, explicit padding."""

    in_hw: tuple[int, int]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, bottom, left, right

    @property
    def out_hw(self) -> tuple[int, int]:
        """Output height and width."""
        t, b, l, r = self.pads
        return (output_size(self.in_hw[0], self.kernel[0], self.strides[0], self.dilation[0], t, b),
                output_size(self.in_hw[1], self.kernel[1], self.strides[1], self.dilation[1], l, r))

    @property
    def taps(self) -> int:
        """Input positions per window (kh * kw)."""
        return self.kernel[0] * self.kernel[1]

    def positions(self) -> np.ndarray:
        """(out_h * out_w, kh * kw) flat input positions h * W + w read by each window, -1 for padding.

        Windows run over output rows then columns; taps over kernel rows then columns, the
        order of Keras' kernel layout and of hls4ml's im2col buffers.
        """
        (h_in, w_in), (oh, ow) = self.in_hw, self.out_hw
        rows = (np.arange(oh)[:, None] * self.strides[0] + np.arange(self.kernel[0])[None, :] * self.dilation[0]
                - self.pads[0])
        cols = (np.arange(ow)[:, None] * self.strides[1] + np.arange(self.kernel[1])[None, :] * self.dilation[1]
                - self.pads[2])
        r = rows[:, None, :, None]
        c = cols[None, :, None, :]
        inside = (r >= 0) & (r < h_in) & (c >= 0) & (c < w_in)
        flat = np.where(inside, r * w_in + c, -1)
        return flat.reshape(oh * ow, self.taps).astype(np.intp)


def window_of(node: Node, in_shape: tuple[int, ...]) -> Window:
    """The Window of a Conv or Pool node (attrs kernel_size/pool_size, strides, dilation, padding)."""
    rank = spatial_rank(in_shape)
    if rank not in (1, 2):
        raise GraphError(f'node {node.name!r}: {node.op} needs a (W, C) or (H, W, C) input, got {in_shape}')
    size_key = 'kernel_size' if node.op == 'Conv' else 'pool_size'
    h, w, _ = as_hwc(in_shape)
    win = Window(in_hw=(h, w),
                 kernel=_pairs_2d(node.attrs[size_key], rank, size_key, node),
                 strides=_pairs_2d(node.attrs.get('strides', node.attrs[size_key]), rank, 'strides', node),
                 dilation=_pairs_2d(node.attrs.get('dilation', (1,) * rank), rank, 'dilation', node),
                 pads=_pads_2d(node.attrs.get('padding', (0,) * 2 * rank), rank, node))
    if min(win.kernel + win.strides + win.dilation) < 1 or min(win.out_hw) < 1:
        raise GraphError(f'node {node.name!r}: {size_key}={win.kernel}, strides={win.strides}, '
                         f'dilation={win.dilation} and padding={win.pads} give no output on input {in_shape}')
    return win


def im2col_index(win: Window, channels: int) -> np.ndarray:
    """(windows, kh * kw * C) flat per-sample input indices (h * W + w) * C + c; -1 for padding."""
    pos = win.positions()[:, :, None]
    idx = np.where(pos >= 0, pos * channels + np.arange(channels), -1)
    return idx.reshape(pos.shape[0], -1)


def with_fill(flat: np.ndarray, index: np.ndarray, fill=0) -> np.ndarray:
    """`flat` with a `fill` column appended on its last axis when `index` has -1 entries (which then read it)."""
    if not index.size or index.min() >= 0:
        return flat
    pad = np.full(flat.shape[:-1] + (1,), fill, dtype=flat.dtype)
    return np.concatenate([flat, pad], axis=-1)


def take(flat: np.ndarray, index: np.ndarray, fill=0) -> np.ndarray:
    """Gather flat[..., index] along the last axis; index -1 reads `fill`.

    `flat` holds one flat per-sample tensor on its last axis (a batch axis may precede it).
    """
    return np.take(with_fill(flat, index, fill), index, axis=-1)  # contiguous, unlike flat[..., index]


# ------------------------------------------------------------------ index-map ops

def _pad_index(node: Node, in_shape: tuple[int, ...]) -> np.ndarray:
    rank = spatial_rank(in_shape)
    t, b, l, r = _pads_2d(node.attrs['padding'], rank, node)
    h, w, c = as_hwc(in_shape)
    src = np.arange(h * w * c).reshape(h, w, c)
    out = np.full((h + t + b, w + l + r, c), -1)
    out[t:t + h, l:l + w] = src
    return out


def _crop_index(node: Node, in_shape: tuple[int, ...]) -> np.ndarray:
    rank = spatial_rank(in_shape)
    t, b, l, r = _pads_2d(node.attrs['cropping'], rank, node, 'cropping')
    h, w, c = as_hwc(in_shape)
    if t + b >= h or l + r >= w:
        raise GraphError(f"node {node.name!r}: cropping={node.attrs['cropping']} removes the whole input {in_shape}")
    return np.arange(h * w * c).reshape(h, w, c)[t:h - b, l:w - r]


def _resize_index(node: Node, in_shape: tuple[int, ...]) -> np.ndarray:
    """Nearest resize: output row r, column c reads input (rows[r], cols[c]).

    attrs['scale'] (integer factors) repeats every element; attrs['index'] gives the source index
    of every output position per spatial axis ((rows, cols), or (cols,) in 1D) for any output size.
    """
    rank = spatial_rank(in_shape)
    method = node.attrs.get('method', 'nearest')
    if method != 'nearest':
        raise GraphError(f"node {node.name!r}: Resize method {method!r} is not supported; only 'nearest' is")
    h, w, c = as_hwc(in_shape)
    if node.attrs.get('index') is not None:
        maps = [np.asarray(m, dtype=np.int64).reshape(-1) for m in node.attrs['index']]
        if len(maps) != rank or any(m.size == 0 or m.min() < 0 or m.max() >= n for m, n in zip(maps, (h, w)[2 - rank:])):
            raise GraphError(f"node {node.name!r}: index must give {rank} non-empty lists of source indices within "
                             f'the input extent {in_shape[:-1]}')
        rows, cols = ([np.zeros(1, np.int64)] + maps) if rank == 1 else maps
    else:
        sh, sw = _pairs_2d(node.attrs['scale'], rank, 'scale', node)
        if sh < 1 or sw < 1:
            raise GraphError(f"node {node.name!r}: scale={node.attrs['scale']} must be positive integers")
        rows, cols = np.arange(h * sh) // sh, np.arange(w * sw) // sw
    src = np.arange(h * w * c).reshape(h, w, c)
    return src[rows[:, None], cols[None, :]]


def _transpose_index(node: Node, in_shape: tuple[int, ...]) -> np.ndarray:
    perm = tuple(int(p) for p in node.attrs['perm'])
    if sorted(perm) != list(range(len(in_shape))):
        raise GraphError(f'node {node.name!r}: perm={perm} is not a permutation of the {len(in_shape)} '
                         'per-sample axes (0-based, batch excluded)')
    return np.arange(int(np.prod(in_shape))).reshape(in_shape).transpose(perm)


_INDEX_MAPS = {'Pad': _pad_index, 'Crop': _crop_index, 'Resize': _resize_index, 'Transpose': _transpose_index}
#: ops whose output is a pure gather of input elements (zero where the index is -1)
INDEX_MAP_OPS = tuple(_INDEX_MAPS)


def index_map(node: Node, in_shape: tuple[int, ...]) -> np.ndarray:
    """Flat input index (or -1 for a zero) of every output element of a Pad/Crop/Resize/Transpose node.

    The result has the node's per-sample output shape; a mismatch with `node.shape` is a GraphError.
    """
    if node.op != 'Transpose' and spatial_rank(in_shape) not in (1, 2):
        raise GraphError(f'node {node.name!r}: {node.op} needs a (W, C) or (H, W, C) input, got {in_shape}')
    idx = _INDEX_MAPS[node.op](node, in_shape)
    if node.op != 'Transpose' and len(in_shape) == 2:
        idx = idx[0]  # back to (W, C)
    _expect_shape(node, in_shape, tuple(idx.shape))
    return idx.astype(np.intp)


# ------------------------------------------------------------------ convolution weights

def conv_matrix(kernel: np.ndarray, groups: int, name: str = '?') -> np.ndarray:
    """A Conv kernel (kh, kw, C_in/groups, C_out) or (kw, C_in/groups, C_out) as a (taps * C_in, C_out) matrix.

    Row (tap, c) multiplies the im2col element of input channel c at that tap. With groups > 1
    the matrix is block-diagonal: output channel o reads only the input channels of its group
    o // (C_out / groups); the other entries are zero weights, which contribute nothing.
    """
    *taps_shape, cin_g, cout = kernel.shape
    if groups < 1 or cout % groups:
        raise GraphError(f'node {name!r}: groups={groups} must divide the {cout} output channels')
    taps = int(np.prod(taps_shape, dtype=np.int64))
    k = kernel.reshape(taps, cin_g, cout)
    if groups == 1:
        return k.reshape(taps * cin_g, cout)
    cout_g = cout // groups
    out = np.zeros((taps, cin_g * groups, cout), dtype=kernel.dtype)
    for g in range(groups):
        out[:, g * cin_g:(g + 1) * cin_g, g * cout_g:(g + 1) * cout_g] = k[:, :, g * cout_g:(g + 1) * cout_g]
    return out.reshape(taps * cin_g * groups, cout)


def check_conv(node: Node, in_shape: tuple[int, ...]) -> Window:
    """Validate a Conv node against its input shape (channels, groups, output shape); returns its Window."""
    win = window_of(node, in_shape)
    kernel = node.weights['kernel']
    rank = spatial_rank(in_shape)
    groups = int(node.attrs.get('groups', 1))
    c_in = in_shape[-1]
    if kernel.ndim != rank + 2 or tuple(kernel.shape[:-2]) != win.kernel[2 - rank:]:
        raise GraphError(f'node {node.name!r}: kernel shape {kernel.shape} does not match kernel_size '
                         f"{node.attrs['kernel_size']} of a {rank}D convolution")
    if groups < 1 or c_in % groups or kernel.shape[-2] * groups != c_in or kernel.shape[-1] % groups:
        raise GraphError(f'node {node.name!r}: groups={groups} with kernel {kernel.shape} does not fit '
                         f'{c_in} input channels')
    _expect_shape(node, in_shape, win.out_hw[2 - rank:] + (kernel.shape[-1],))
    return win


def check_pool(node: Node, in_shape: tuple[int, ...]) -> Window:
    """Validate a Pool node (mode, padding smaller than the window, output shape); returns its Window."""
    win = window_of(node, in_shape)
    mode = node.attrs.get('mode')
    if mode not in ('max', 'avg'):
        raise GraphError(f"node {node.name!r}: Pool mode {mode!r} is not supported; use 'max' or 'avg'")
    t, b, l, r = win.pads
    if max(t, b) >= win.kernel[0] or max(l, r) >= win.kernel[1] or win.dilation != (1, 1):
        raise GraphError(f'node {node.name!r}: Pool padding {win.pads} must be smaller than pool_size '
                         f'{win.kernel} (every window must see an input element), without dilation')
    _expect_shape(node, in_shape, win.out_hw[2 - spatial_rank(in_shape):] + in_shape[-1:])
    return win


def pool_index(node: Node, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per-tap gather indices (taps, outputs) of a Pool over flat inputs, and the real-cell counts.

    Tap k of output element (pixel, c) reads flat input index[k, pixel * C + c] (-1: padding);
    counts[pixel * C + c] is the number of taps that read a real input cell.
    """
    win = check_pool(node, in_shape)
    channels = in_shape[-1]
    index = im2col_index(win, channels).reshape(-1, win.taps, channels)
    index = np.ascontiguousarray(index.transpose(1, 0, 2).reshape(win.taps, -1))
    counts = (index >= 0).sum(axis=0).astype(np.int64)
    return index, counts
