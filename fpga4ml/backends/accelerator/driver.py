"""The PYNQ driver written into an accelerator project: `NeuralNetworkOverlay`, as hls4ml's.

Zynq boards (`driver_source`): the overlay of the bitstream with an AXI DMA.

`NeuralNetworkOverlay('<bitfile>', x_shape, y_shape)` loads the bitstream and allocates the DMA
buffers; `predict(X, debug=False, profile=False, encode=None, decode=None)` sends X through the
AXI DMA and returns the outputs (with profile=True also the seconds and the inferences per second).
Unlike hls4ml's driver, a project with fixed-point wrapper types encodes and decodes by itself
(integer words of the AXI width; `encode`/`decode` still override it), so X and the result are
always real values.

Alveo cards (`alveo_driver_source`), as hls4ml's Alveo driver: `NeuralNetworkOverlay('<project>.xclbin')`,
`allocate_mem(X_shape, y_shape, dtype=None)` and `predict(X, y_shape, dtype=None, debug=False,
profile=False, encode=None, decode=None)`, which calls the kernel `<project>_kernel` on the batch.
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
    return _COMMON.format(project=project, board=acc.board, interface=acc.interface, input_word=_word(acc.input_type),
                          output_word=_word(acc.output_type), usage=_ZYNQ_USAGE.format(project=project)) + _ZYNQ_CLASS


def alveo_driver_source(project: str, acc: AcceleratorSettings) -> str:
    """The text of axi_stream_driver.py for an Alveo card (kernel <project>_kernel in <project>.xclbin)."""
    return _COMMON.format(project=project, board=acc.board, interface=acc.interface, input_word=_word(acc.input_type),
                          output_word=_word(acc.output_type), usage=_ALVEO_USAGE.format(project=project)) + \
        _ALVEO_CLASS.replace('KERNEL', f'{project}_kernel_1')


_COMMON = '''\
"""PYNQ driver of the fpga4ml accelerator "{project}" (board {board}, {interface}; written by fpga4ml).

{usage}
"""

import time

import numpy as np
from pynq import Overlay, allocate

#: one AXI word of the input and of the output: ('float', bits) or ('fixed', width, frac, signed, rounding, overflow)
INPUT_WORD = {input_word}
OUTPUT_WORD = {output_word}


def word_dtype(word):
    """The numpy dtype of a buffer of such words."""
    if word[0] != 'fixed':
        return np.float32 if word[1] == 32 else np.float64
    return np.dtype(('i' if word[3] else 'u') + str(word[1] // 8))


def encode_fixed(x, word):
    """Real values -> integer words of a fixed type (TRN/RND rounding, WRAP/SAT overflow, as ap_fixed)."""
    _, width, frac, signed, rounding, overflow = word
    scaled = np.nan_to_num(np.asarray(x, dtype=np.float64) * 2.0 ** frac, nan=0.0)
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


def to_words(X, encoder):
    """X as input words: `encoder(X)` when given, else the fixed-point encoding (float words: as they are)."""
    if encoder is not None:
        return encoder(X)
    return encode_fixed(X, INPUT_WORD) if INPUT_WORD[0] == 'fixed' else X


def from_words(buffer, decoder):
    """Output words as values: `decoder(words)` when given, else the fixed-point decoding."""
    if decoder is not None:
        return decoder(buffer)
    if OUTPUT_WORD[0] == 'fixed':
        return np.asarray(buffer, dtype=np.float64) * 2.0 ** -OUTPUT_WORD[2]
    return np.array(buffer)


def report(n, start):
    """Print and return (seconds, inferences per second) since `start` (time.perf_counter())."""
    seconds = time.perf_counter() - start
    rate = n / seconds if seconds > 0 else float('inf')
    print(f'Classified {{n}} samples in {{seconds:.6f}} seconds ({{rate:.1f}} inferences / s)')
    return seconds, rate
'''

_ZYNQ_USAGE = """\
    from axi_stream_driver import NeuralNetworkOverlay
    nn = NeuralNetworkOverlay('{project}.bit', X.shape, y_shape)
    y = nn.predict(X)                     # or: y, seconds, rate = nn.predict(X, profile=True)

The bitstream and its .hwh (same name, same folder) come from build(bitfile=True): {project}.bit and
{project}.hwh in the project folder. One DMA transfer sends the whole batch; the wrapper marks the
last output word (TLAST), which ends the receive transfer."""

_ZYNQ_CLASS = """

class NeuralNetworkOverlay(Overlay):
    \"\"\"The bitstream with the network behind an AXI DMA (hier_0/axi_dma_0), as hls4ml's overlay.\"\"\"

    def __init__(self, bitfile_name, x_shape, y_shape, dtype=None, dtbo=None, download=True, ignore_version=False,
                 device=None):
        super().__init__(bitfile_name, dtbo=dtbo, download=download, ignore_version=ignore_version, device=device)
        self.sendchannel = self.hier_0.axi_dma_0.sendchannel
        self.recvchannel = self.hier_0.axi_dma_0.recvchannel
        self.input_buffer = allocate(shape=x_shape, dtype=dtype or word_dtype(INPUT_WORD))
        self.output_buffer = allocate(shape=y_shape, dtype=dtype or word_dtype(OUTPUT_WORD))

    def predict(self, X, debug=False, profile=False, encode=None, decode=None):
        \"\"\"The accelerator's outputs for X; with profile=True (outputs, seconds, inferences per second).\"\"\"
        start = time.perf_counter()
        self.input_buffer[:] = to_words(X, encode)
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
        result = from_words(self.output_buffer, decode)
        return (result, *report(len(X), start)) if profile else result
"""

_ALVEO_USAGE = """\
    from axi_stream_driver import NeuralNetworkOverlay
    nn = NeuralNetworkOverlay('{project}.xclbin')
    y = nn.predict(X, y_shape)            # or: y, seconds, rate = nn.predict(X, y_shape, profile=True)

The xclbin comes from build(bitfile=True) (build_xclbin.sh, v++): {project}.xclbin in the project
folder. Each call copies the batch to the card, runs the kernel {project}_kernel on it and copies
the outputs back."""

_ALVEO_CLASS = """

class NeuralNetworkOverlay(Overlay):
    \"\"\"The xclbin with the kernel, as hls4ml's Alveo overlay: allocate_mem() then predict().\"\"\"

    def __init__(self, xclbin_name, dtbo=None, download=True, ignore_version=False, device=None):
        super().__init__(xclbin_name, dtbo=dtbo, download=download, ignore_version=ignore_version, device=device)
        self.input_buffer = None
        self.output_buffer = None

    def allocate_mem(self, X_shape, y_shape, dtype=None, trg_in=None, trg_out=None):
        \"\"\"Device buffers for a batch (dtype: the words' unless given; trg_in/trg_out: memory banks).\"\"\"
        self.input_buffer = allocate(shape=X_shape, dtype=dtype or word_dtype(INPUT_WORD), target=trg_in)
        self.output_buffer = allocate(shape=y_shape, dtype=dtype or word_dtype(OUTPUT_WORD), target=trg_out)

    def predict(self, X, y_shape, dtype=None, debug=False, profile=False, encode=None, decode=None):
        \"\"\"The kernel's outputs for X (shape y_shape); with profile=True (outputs, seconds, inferences per second).\"\"\"
        start = time.perf_counter()
        self.allocate_mem(X.shape, y_shape, dtype)
        self.input_buffer[:] = to_words(X, encode)
        self.input_buffer.sync_to_device()
        if debug:
            print('Send OK')
        self.KERNEL.call(self.input_buffer, self.output_buffer, int(np.prod(X.shape)), int(np.prod(y_shape)))
        if debug:
            print('Kernel call OK')
        self.output_buffer.sync_from_device()
        if debug:
            print('Receive OK')
        result = from_words(self.output_buffer, decode)
        return (result, *report(len(X), start)) if profile else result
"""
