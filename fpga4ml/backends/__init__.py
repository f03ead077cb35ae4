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
    'bitfile': "a bitstream needs hls4ml's VivadoAccelerator flow",
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
