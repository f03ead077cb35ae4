"""The boards, interfaces and wrapper I/O types of the VivadoAccelerator flow (hls4ml 1.3.0's choices).

The board table holds the facts of hls4ml's supported_boards.json (part of each board) plus what
our block-design Tcl needs (the Vivado board part and the processing system of each family).
`accelerator_settings()` validates a user's choice and returns the `AcceleratorSettings` that the
writer, the C simulation and the build read from ``model.settings['accelerator']``.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

from ...config import ConfigError, ConfigWarning
from ...fixed import FixedType, PrecisionError, parse_precision


@dataclass(frozen=True)
class Board:
    """One board: its FPGA part, family ('zynq', 'zynqmp', 'alveo'), Vivado board part and interfaces."""

    name: str
    part: str
    family: str
    board_part: str | None
    interfaces: tuple[str, ...]


#: hls4ml 1.3.0's boards (supported_boards.json) and parts, with the interfaces we write a block design for
#: (hls4ml has axi_stream everywhere and axi_lite on the PYNQ-Z2; axi_master is ours on the Zynq boards)
BOARDS = {
    'pynq-z2': Board('pynq-z2', 'xc7z020clg400-1', 'zynq', 'tul.com.tw:pynq-z2:part0:1.0',
                     ('axi_stream', 'axi_lite', 'axi_master')),
    'zcu102': Board('zcu102', 'xczu9eg-ffvb1156-2-e', 'zynqmp', 'xilinx.com:zcu102:part0:3.3',
                    ('axi_stream', 'axi_master')),
    'alveo-u50': Board('alveo-u50', 'xcu50-fsvh2104-2-e', 'alveo', None, ('axi_stream',)),
    'alveo-u250': Board('alveo-u250', 'xcu250-figd2104-2L-e', 'alveo', None, ('axi_stream',)),
    'alveo-u200': Board('alveo-u200', 'xcu200-fsgd2104-2-e', 'alveo', None, ('axi_stream',)),
    'alveo-u280': Board('alveo-u280', 'xcu280-fsvh2892-2L-e', 'alveo', None, ('axi_stream',)),
}
#: the wrapper interfaces hls4ml knows (AcceleratorConfig Interface)
INTERFACES = ('axi_stream', 'axi_master', 'axi_lite')
#: drivers: 'python' (PYNQ); hls4ml's 'c' has no driver file in 1.3.0 (its c_drivers tables are empty)
DRIVERS = ('python',)
#: the floating-point wrapper types (any other value is a fixed-point precision string)
FLOAT_TYPES = {'float': 32, 'double': 64}
DEFAULT_PLATFORM = 'xilinx_u250_xdma_201830_2'


@dataclass(frozen=True)
class AcceleratorSettings:
    """A validated AcceleratorConfig: board, interface, driver, wrapper input/output types, platform."""

    board: str
    interface: str
    driver: str
    input_type: str | FixedType
    output_type: str | FixedType
    platform: str

    @property
    def part(self) -> str:
        """The FPGA part of the board."""
        return BOARDS[self.board].part

    @property
    def family(self) -> str:
        """'zynq' (PYNQ-Z2), 'zynqmp' (ZCU102) or 'alveo'."""
        return BOARDS[self.board].family

    def bitwidths(self) -> tuple[int, int]:
        """Bits of one input and one output word on the AXI side."""
        return io_bits(self.input_type), io_bits(self.output_type)

    def as_config(self) -> dict:
        """hls4ml's AcceleratorConfig dict of these settings."""
        config = {'Board': self.board, 'Interface': self.interface, 'Driver': self.driver,
                  'Precision': {'Input': type_text(self.input_type), 'Output': type_text(self.output_type)}}
        if self.family == 'alveo':
            config['Platform'] = self.platform
        return config


def io_bits(t: str | FixedType) -> int:
    """Bits of one wrapper word of type `t` ('float', 'double' or a fixed type)."""
    return FLOAT_TYPES[t] if isinstance(t, str) else t.width


def type_text(t: str | FixedType) -> str:
    """'float', 'double' or the C++ spelling of a fixed type."""
    return t if isinstance(t, str) else t.to_cpp()


def io_type(value, what: str) -> str | FixedType:
    """'float', 'double' or a fixed type widened to a multiple of 8 bits (as hls4ml: more fractional bits)."""
    if isinstance(value, str) and value.strip().lower() in FLOAT_TYPES:
        return value.strip().lower()
    try:
        t = parse_precision(value)
    except PrecisionError as exc:
        raise ConfigError(f'{what}={value!r}: use one of {list(FLOAT_TYPES)} or a fixed-point precision '
                          f"such as 'ap_fixed<16,6>' ({exc})") from None
    if not isinstance(t, FixedType):
        raise ConfigError(f"{what}={value!r}: the wrapper type must be explicit ('float', 'double' or a fixed type)")
    width = 8 * math.ceil(t.width / 8)
    if width > (64 if t.signed else 56):
        raise ConfigError(f'{what}={value!r}: a fixed wrapper type must have at most 64 bits (after rounding the '
                          f'width up to a multiple of 8: {width})')
    return t.with_(width=width) if width != t.width else t


def _choice(value, allowed, what: str) -> str:
    if isinstance(value, str) and value.strip().lower() in allowed:
        return value.strip().lower()
    raise ConfigError(f'{what}={value!r} is not supported; accepted: {list(allowed)}')


def accelerator_settings(board: str | None = 'pynq-z2', interface: str = 'axi_stream', driver: str = 'python',
                         input_type='float', output_type='float', platform: str | None = None,
                         part: str | None = None) -> AcceleratorSettings:
    """Validated accelerator settings; a `part` other than the board's is replaced with a warning (as hls4ml)."""
    name = _choice('pynq-z2' if board is None else board, tuple(BOARDS), 'board')
    chosen = _choice(interface, INTERFACES, 'interface')
    if chosen not in BOARDS[name].interfaces:
        raise ConfigError(f"interface={interface!r} has no block design for board {name!r}; that board "
                          f'accepts {list(BOARDS[name].interfaces)}')
    platform = DEFAULT_PLATFORM if platform is None else platform
    if not isinstance(platform, str) or not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9_.\-]*', platform):
        raise ConfigError(f"platform={platform!r}: an Alveo platform name such as {DEFAULT_PLATFORM!r} "
                          '(letters, digits, _ . -)')
    settings = AcceleratorSettings(name, chosen, _choice(driver, DRIVERS, 'driver'),
                                   io_type(input_type, 'input_type'), io_type(output_type, 'output_type'),
                                   platform)
    if part is not None and part != settings.part:
        warnings.warn(f'part={part!r} does not belong to board {name!r}; the board\'s part {settings.part!r} is '
                      'used (as hls4ml does)', ConfigWarning, stacklevel=3)
    return settings


#: the keys of hls4ml's AcceleratorConfig, with the accelerator_settings argument each one gives
_CONFIG_KEYS = {'Board': 'board', 'Interface': 'interface', 'Driver': 'driver', 'Platform': 'platform'}


def config_arguments(config, where: str = 'AcceleratorConfig') -> dict:
    """The accelerator_settings arguments of hls4ml's AcceleratorConfig dict (Board, Interface, Driver,
    Precision: {Input, Output}, Platform); an unknown key raises naming it."""
    if not isinstance(config, dict):
        raise ConfigError(f'{where} must be a mapping with the keys {[*_CONFIG_KEYS, "Precision"]}, got {config!r}')
    unknown = [k for k in config if k not in (*_CONFIG_KEYS, 'Precision')]
    if unknown:
        raise ConfigError(f'{where}: unknown keys {unknown}; accepted: {[*_CONFIG_KEYS, "Precision"]}')
    args = {arg: config[key] for key, arg in _CONFIG_KEYS.items() if config.get(key) is not None}
    precision = config.get('Precision') or {}
    if not isinstance(precision, dict) or any(k not in ('Input', 'Output') for k in precision):
        raise ConfigError(f"{where}['Precision'] must be a mapping with the keys 'Input' and 'Output' "
                          f"('float', 'double' or a fixed type), got {precision!r}")
    for key, arg in (('Input', 'input_type'), ('Output', 'output_type')):
        if precision.get(key) not in (None, {}):
            args[arg] = precision[key]
    return args


def settings_from_config(config, part: str | None = None, where: str = 'AcceleratorConfig') -> AcceleratorSettings:
    """Validated settings from hls4ml's AcceleratorConfig dict (the inverse of AcceleratorSettings.as_config)."""
    return accelerator_settings(part=part, **config_arguments(config, where))
