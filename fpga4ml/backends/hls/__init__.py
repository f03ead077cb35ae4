"""The HLS C++ back end (Vitis / Vivado HLS): project writer, C simulation and vendor build.

`write(model)` writes the project (see writer.py for the layout), `compile_csim(model)` builds and
loads its bit-exact C simulation with g++, and `build(model, **options)` runs the vendor tool.
Every emitted op matches fpga4ml's emulator bit for bit (tests/test_hls_csim.py).
"""

from __future__ import annotations

# `build` is both a submodule and its main function: importing the function here binds the package
# attribute to the function for good (a lazy `from .build import ...` would rebind it to the module)
from .build import build
from .csim import CSim, CSimError, compile_csim, find_ap_types
from .writer import write

__all__ = ['CSim', 'CSimError', 'build', 'compile_csim', 'find_ap_types', 'write']
