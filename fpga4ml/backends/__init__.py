"""Back ends: emitters that turn a typed graph into firmware matching the emulator bit for bit.

Each back end is a module with ``write(model)`` and ``build(model, **options)``; the HLS back ends
add ``compile_csim(model, **options)`` and the Verilog back end ``compile_rtl(model, **options)``
and ``estimate(model)`` (simulators are objects with ``predict(x)``). `get_backend` maps the user's backend name
to it, or raises BackendUnavailableError for back ends this version does not have.
"""

from __future__ import annotations

from types import ModuleType

from ..model_errors import BackendUnavailableError

HLS_BACKENDS = ('Vitis', 'Vivado')


def get_backend(name: str) -> ModuleType:
    """The module implementing back end `name`: 'Vitis', 'Vivado' (HLS C++) or 'Verilog' (RTL)."""
    if name in HLS_BACKENDS:
        from . import hls

        return hls
    if name == 'Verilog':
        from . import verilog

        return verilog
    raise BackendUnavailableError(
        f'unknown back end {name!r}; available: {list(HLS_BACKENDS) + ["Verilog"]}')
