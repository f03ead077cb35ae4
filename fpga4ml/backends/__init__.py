"""Back ends: emitters that turn a typed graph into firmware matching the emulator bit for bit.

Each back end is a module with ``write(model)`` and ``build(model, **options)``; the HLS back ends
add ``compile_csim(model, **options)`` and the Verilog back end ``compile_rtl(model, **options)``
and ``estimate(model)`` (simulators are objects with ``predict(x)``). `get_backend` maps the user's backend name
to it (wrapped in a `Backend`, which also offers hls4ml's `create_initial_config`), or raises
BackendUnavailableError for back ends this version does not have. 'VivadoAccelerator' is the Vivado
HLS project with hls4ml's accelerator wrapper, board design and driver (accelerator/).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ..model_errors import BackendUnavailableError

HLS_BACKENDS = ('Vitis', 'Vivado')
ALL_BACKENDS = HLS_BACKENDS + ('VivadoAccelerator', 'Verilog')


class Backend:
    """Back end `name`: its module's functions (write, build, compile_csim, ...) as attributes, plus
    hls4ml's `create_initial_config(...)`."""

    def __init__(self, name: str, module: ModuleType) -> None:
        self.name, self.module = name, module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.module, attr)

    def __repr__(self) -> str:
        return f'<fpga4ml back end {self.name!r}>'

    def create_initial_config(self, part: str | None = None, clock_period: float = 5,
                              clock_uncertainty: str | None = None, io_type: str = 'io_parallel', **kwargs: Any) -> dict:
        """hls4ml's initial configuration of this back end (Part, ClockPeriod, ClockUncertainty, IOType,
        HLSConfig, WriterConfig; VivadoAccelerator adds AcceleratorConfig from board=, interface=, ...)."""
        if self.name == 'VivadoAccelerator':
            return self.module.create_initial_config(part=part, clock_period=clock_period, io_type=io_type,
                                                     clock_uncertainty=clock_uncertainty or '12.5%', **kwargs)
        from ..converters import create_config

        config = create_config(backend=self.name, part=part, clock_period=clock_period,
                               clock_uncertainty=clock_uncertainty, io_type=io_type, **kwargs)
        for key in ('OutputDir', 'ProjectName', 'Backend', 'Version'):
            del config[key]
        return config


def get_backend(name: str) -> Backend:
    """Back end `name`: 'Vitis', 'Vivado' (HLS C++), 'VivadoAccelerator' (HLS + board wrapper) or 'Verilog' (RTL).

    The result offers the module's functions (write, build, ...) and create_initial_config; case as hls4ml's
    ('vivadoaccelerator' is accepted).
    """
    chosen = next((b for b in ALL_BACKENDS if isinstance(name, str) and name.lower() == b.lower()), None)
    if chosen in HLS_BACKENDS:
        from . import hls as module
    elif chosen == 'VivadoAccelerator':
        from . import accelerator as module
    elif chosen == 'Verilog':
        from . import verilog as module
    else:
        raise BackendUnavailableError(f'unknown back end {name!r}; available: {list(ALL_BACKENDS)}')
    return Backend(chosen, module)


#: every keyword an hls4ml 1.3.0 back end's build() takes, with its default there
HLS4ML_BUILD_KEYWORDS = {
    'reset': False, 'csim': True, 'synth': True, 'cosim': False, 'validation': False, 'export': False,
    'vsynth': False, 'fifo_opt': False, 'bitfile': False, 'log_to_stdout': True,  # Vivado/Vitis/Accelerator
    'vhdl': False, 'verilog': True, 'ran_frame': 5, 'sw_opt': False, 'power': False, 'da': False,
    'bup': False,  # Catapult
    'fpgasynth': False, 'log_level': 1, 'cont_if_large_area': False,  # Quartus
    'build_type': 'fpga_emu', 'run': False,  # oneAPI
    'skip_preqs': True, 'sw_compile': True, 'hw': True, 'rtl_synth': False, 'fpga': False,  # Libero
}
#: hls4ml keywords each back end takes under another name (or consumes: None)
_MAPPED = {
    'hls': {'reset': None, 'log_to_stdout': 'verbose'},  # the build script always opens the project with -reset
    'verilog': {'reset': None, 'log_to_stdout': 'progress'},  # the design is always written afresh
}
#: why an hls4ml keyword does nothing here (keywords not listed: another vendor's back end)
_WHY_NOT = {
    'validation': 'no separate validation run: compare predict(sim=...) with the emulator',
    'fifo_opt': 'FIFO depth optimization is not implemented',
    'bitfile': "a bitstream needs backend='VivadoAccelerator' (board=...)",
    'csim': 'no C simulation in the Verilog flow: use compile(sim="rtl")',
    'synth': 'Yosys synthesis always runs',
    'cosim': 'no co-simulation in the Verilog flow: predict(sim="rtl") is the RTL simulation',
    'export': 'there is no IP export in the Verilog flow',
    'vsynth': 'Yosys synthesizes; Vivado is not run',
}
#: the Verilog build passes these on to fpga4ml.synth.synthesize
_VERILOG_SYNTH_OPTIONS = ('progress', 'timeout', 'device')


def _native_keywords(name: str, build) -> tuple[str, ...]:
    import inspect

    params = [p.name for p in inspect.signature(build).parameters.values()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != 'model']
    return tuple(params) + (_VERILOG_SYNTH_OPTIONS if name == 'Verilog' else ())


def build_options(name: str, options: dict) -> dict:
    """The keyword arguments for back end `name`'s build() from a call that may use hls4ml's keywords.

    hls4ml keywords the back end has under another name are renamed; those that do not apply and are
    given a value other than hls4ml's default are named in one warning; keywords that neither the back
    end nor hls4ml has raise TypeError listing the accepted ones.
    """
    import warnings

    from ..config import ConfigWarning

    native = _native_keywords(name, get_backend(name).build)
    mapped = _MAPPED['verilog' if name == 'Verilog' else 'hls']
    unknown = sorted(k for k in options if k not in native and k not in HLS4ML_BUILD_KEYWORDS)
    if unknown:
        raise TypeError(f'build(): unknown keyword argument(s) {unknown} for the {name} back end; it accepts '
                        f'{sorted(native)} and hls4ml\'s {sorted(HLS4ML_BUILD_KEYWORDS)}')
    out, ignored = {}, []
    for key, value in options.items():
        if key in native:
            out[key] = value
        elif key in mapped:
            if mapped[key] is not None:
                out[mapped[key]] = value
        elif value != HLS4ML_BUILD_KEYWORDS[key]:
            ignored.append(f"{key}={value!r} ({_WHY_NOT.get(key, 'another hls4ml back end')})")
    if ignored:
        warnings.warn(f'build(): hls4ml keywords that do not apply to the {name} back end are ignored: '
                      + '; '.join(ignored), ConfigWarning, stacklevel=3)
    return out
