"""Back ends: emitters that turn a typed graph into firmware matching the emulator bit for bit.

Each back end is a module with ``write(model)``, ``compile_csim(model, **options)`` (an object
with ``predict(x)``) and ``build(model, **options)``. `get_backend` maps the user's backend name
to it, or raises BackendUnavailableError for back ends this version does not have.
"""

from __future__ import annotations

from types import ModuleType

from ..model_errors import BackendUnavailableError

HLS_BACKENDS = ('Vitis', 'Vivado')


def get_backend(name: str) -> ModuleType:
    """The module implementing back end `name` ('Vitis', 'Vivado'; 'Verilog' is not available yet)."""
    if name in HLS_BACKENDS:
        from . import hls

        return hls
    raise BackendUnavailableError(
        f'the {name!r} back end does not emit firmware in this version of fpga4ml; '
        f'available: {list(HLS_BACKENDS)}. predict(), trace() and profile() run the bit-exact emulator.')
