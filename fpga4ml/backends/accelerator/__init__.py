"""The VivadoAccelerator back end: the Vivado HLS project wrapped for a board, as hls4ml's flow.

`write(model)` writes the HLS project (the HLS back end's, for Vivado HLS) plus the accelerator
wrapper top `<project>_axi` (wrapper.py), the board's block-design Tcl (design_tcl.py) and the PYNQ
driver (driver.py); `compile_csim(model)` builds the C simulation through the wrapper;
`build(model, export=True, bitfile=True)` runs vivado_hls and Vivado. Boards, interfaces and the
wrapper I/O types are in boards.py; `create_initial_config` is hls4ml's. See docs/accelerator.md.
"""

from __future__ import annotations

from .boards import BOARDS, DRIVERS, INTERFACES, AcceleratorSettings, accelerator_settings
from .project import build, compile_csim, project_files, settings_of, write

__all__ = ['BOARDS', 'DRIVERS', 'INTERFACES', 'AcceleratorSettings', 'accelerator_settings', 'build', 'compile_csim',
           'create_initial_config', 'project_files', 'settings_of', 'write']


def create_initial_config(board: str = 'pynq-z2', part: str | None = None, clock_period: float = 5,
                          clock_uncertainty: str = '12.5%', io_type: str = 'io_parallel', interface: str = 'axi_stream',
                          driver: str = 'python', input_type: str = 'float', output_type: str = 'float',
                          platform: str = 'xilinx_u250_xdma_201830_2', **_) -> dict:
    """hls4ml's VivadoAccelerator initial configuration: the Vivado one plus AcceleratorConfig (validated).

    Part is the board's part (hls4ml puts the Vivado default there and replaces it when writing).
    """
    from ...converters import create_config

    acc = accelerator_settings(board, interface, driver, input_type, output_type, platform, part)
    config = create_config(backend='Vivado', part=acc.part, clock_period=clock_period,
                           clock_uncertainty=clock_uncertainty, io_type=io_type)
    for key in ('OutputDir', 'ProjectName', 'Backend', 'Version'):
        del config[key]
    config['AcceleratorConfig'] = acc.as_config()
    return config
