"""The PYNQ driver written into an accelerator project: `NeuralNetworkOverlay`, as hls4ml's.

`NeuralNetworkOverlay('<bitfile>', x_shape, y_shape)` loads the bitstream and allocates the DMA
buffers; `predict(X, debug=False, profile=False, encode=None, decode=None)` sends X through the
AXI DMA and returns the outputs (with profile=True also the seconds and the inferences per second).
Unlike hls4ml's driver, a project with fixed-point wrapper types encodes and decodes by itself
(integer words of the AXI width; `encode`/`decode` still override it), so X and the result are
always real values.
"""

from __future__ import annotations

from ...fixed import FixedType
from .boards import AcceleratorSettings

DRIVER_FILE = 'axi_stream_driver.py'


def _word(t: str | FixedType) -> str:
    """The Python literal describing one AXI word: ('float', 32) or ('fixed', width, frac, signed, Q, O)."""
    if isinstance(t, str):
        return repr((t, 32 if t == 'float' else 64))
    return repr(('fixed', t.width, t.frac, t.signed, t.rounding, t.overflow))


def driver_source(project: str, acc: AcceleratorSettings) -> str:
    """The text of axi_stream_driver.py for a project whose wrapper has the types of `acc`."""
    return f'''\
"""PYNQ driver of the fpga4ml accelerator "{project}" (board {acc.board}, {acc.interface}; written by fpga4ml).

    from axi_stream_driver import NeuralNetworkOverlay
    nn = NeuralNetworkOverlay('{project}.bit', X.shape, y_shape)
    y = nn.predict(X)                     # or: y, seconds, rate = nn.predict(X, profile=True)

The bitstream and its .hwh (same name, same folder) come from build(bitfile=True): {project}.bit and
{project}.hwh in the project folder. One DMA transfer sends the whole batch; the wrapper marks the
last output word (TLAST), which ends the receive transfer.
"""

import time

import numpy as np
from pynq import Overlay, allocate

#: one AXI word of the input and of the output: ('float', bits) or ('fixed', width, frac, signed, rounding, overflow)
INPUT_WORD = {_word(acc.input_type)}
OUTPUT_WORD = {_word(acc.output_type)}


def word_dtype(word):
    """The numpy dtype of a buffer of such words."""
    if word[0] != 'fixed':
        return np.float32 if word[1] == 32 else np.float64
    return np.dtype(('i' if word[3] else 'u') + str(word[1] // 8))


def encode_fixed(x, word):
    """Real values -> integer words of a fixed type (TRN/RND rounding, WRAP/SAT overflow, as ap_fixed)."""
    _, width, frac, signed, rounding, overflow = word
    scaled = np.asarray(x, dtype=np.float64) * 2.0 ** frac
    scaled = np.nan_to_num(scaled, nan=0.0)
    if rounding == 'TRN':
        m = np.floor(scaled)
    elif rounding == 'RND':
        m = np.floor(scaled + 0.5)
    else:
        raise ValueError(f'this driver encodes TRN or RND rounding only, not {{rounding}}: pass encode=')
    low, high = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2 ** width - 1)
    if overflow == 'SAT':
        m = np.clip(m, low, high)
    elif overflow == 'WRAP':
        m = np.mod(m - low, 2.0 ** width) + low
    else:
        raise ValueError(f'this driver encodes WRAP or SAT overflow only, not {{overflow}}: pass encode=')
    return m.astype(word_dtype(word))


def decode_fixed(m, word):
    """Integer words of a fixed type -> real values."""
    return np.asarray(m, dtype=np.float64) * 2.0 ** -word[2]


class NeuralNetworkOverlay(Overlay):
    """The bitstream with the network behind an AXI DMA (hier_0/axi_dma_0), as hls4ml's overlay."""

    def __init__(self, bitfile_name, x_shape, y_shape, dtype=None, dtbo=None, download=True, ignore_version=False,
                 device=None):
        super().__init__(bitfile_name, dtbo=dtbo, download=download, ignore_version=ignore_version, device=device)
        self.sendchannel = self.hier_0.axi_dma_0.sendchannel
        self.recvchannel = self.hier_0.axi_dma_0.recvchannel
        self.input_buffer = allocate(shape=x_shape, dtype=dtype or word_dtype(INPUT_WORD))
        self.output_buffer = allocate(shape=y_shape, dtype=dtype or word_dtype(OUTPUT_WORD))

    def predict(self, X, debug=False, profile=False, encode=None, decode=None):
        """The accelerator's outputs for X; with profile=True (outputs, seconds, inferences per second)."""
        start = time.perf_counter()
        if encode is not None:
            X = encode(X)
        elif INPUT_WORD[0] == 'fixed':
            X = encode_fixed(X, INPUT_WORD)
        self.input_buffer[:] = X
        self.sendchannel.transfer(self.input_buffer)
        self.recvchannel.transfer(self.output_buffer)
        if debug:
            print('Transfer OK')
        self.sendchannel.wait()
        if debug:
            print('Send OK')
        self.recvchannel.wait()
        if debug:
            print('Receive OK')
        if decode is not None:
            result = decode(self.output_buffer)
        elif OUTPUT_WORD[0] == 'fixed':
            result = decode_fixed(self.output_buffer, OUTPUT_WORD)
        else:
            result = np.array(self.output_buffer)
        if not profile:
            return result
        seconds = time.perf_counter() - start
        rate = len(X) / seconds if seconds > 0 else float('inf')
        print(f'Classified {{len(X)}} samples in {{seconds:.6f}} seconds ({{rate:.1f}} inferences / s)')
        return result, seconds, rate
'''
