"""The ``fpga4ml`` command: convert, summarize and profile a trained Keras or ONNX model; synthesize its Verilog.

    fpga4ml convert model.keras -o build/my_model [--config config.yml] [--default-precision 'fixed<16,6>']
                                [--backend {Vitis,Vivado,Verilog}]
    fpga4ml summary model.keras
    fpga4ml profile model.keras data.npy [--n 10000]
    fpga4ml synth build/my_model [--family xcup] [--place-route]

Errors in the input (missing file, bad precision string, unsupported layer, bad data) print one
line, ``fpga4ml: error: ...``, on stderr and exit non-zero without a traceback.
"""

from __future__ import annotations

import os

# Keras reads its backend once, at its first import: choose it before anything imports keras.
os.environ.setdefault('KERAS_BACKEND', 'torch')

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import zipfile  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import numpy as np  # noqa: E402

from .naming import check_file_name, json_text  # noqa: E402

PROG = 'fpga4ml'
BACKENDS = ('Vitis', 'Vivado', 'Verilog')
IO_TYPES = ('io_parallel', 'io_stream')
GRANULARITIES = ('model', 'type', 'name')
#: keys of an hls4ml project-style YAML file (hls4ml's own `convert -c config.yml`) that map to options
_PROJECT_KEYS = {'OutputDir': 'output', 'ProjectName': 'project_name', 'Backend': 'backend',
                 'IOType': 'io_type', 'Part': 'part', 'ClockPeriod': 'clock_period'}


class CLIError(Exception):
    """A user error detected by the command line itself (bad option combination, bad data file)."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception classes that mean 'bad input', reported in one line instead of a traceback."""
    from . import BackendUnavailableError, ConfigError, GraphError, PrecisionError
    from .backends.hls.csim import CSimError
    from .cache import CacheError
    from .synth.yosys import SynthesisError

    return (CLIError, ConfigError, PrecisionError, GraphError, BackendUnavailableError, OSError, ValueError,
            SynthesisError, CacheError, CSimError)


def _one_line(err: BaseException) -> str:
    """An exception's message on one line (Keras and numpy messages can span several)."""
    text = ' '.join(str(err).split())
    if isinstance(err, KeyError) and text.startswith("'") and text.endswith("'"):
        text = text[1:-1]
    return text or type(err).__name__


def _foreign(err: BaseException, limit: int = 300) -> str:
    """A framework's exception as 'Type: message' on one line, cut to `limit` characters (Keras dumps configs)."""
    text = f'{type(err).__name__}: {_one_line(err)}'
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _choice(allowed: tuple[str, ...]):
    """An argparse `type` that accepts any capitalization of `allowed` and returns its spelling."""
    def parse(value: str) -> str:
        for a in allowed:
            if value.lower() == a.lower():
                return a
        raise argparse.ArgumentTypeError(f"invalid choice {value!r} (choose from {', '.join(allowed)})")
    return parse


# --------------------------------------------------------------------------- loading inputs


def _input_file(path: str, what: str, allow_empty: bool = False) -> Path:
    """`path` as a readable input file; one-line errors for a missing path, a directory, a device or an empty file."""
    p = Path(path)
    if p.is_dir():
        raise CLIError(f'{what} {path!r} is a directory, not a file')
    if not p.exists():
        raise FileNotFoundError(f'{what} {path!r} does not exist')
    if not p.is_file():
        raise CLIError(f'{what} {path!r} is not a regular file')
    if not allow_empty and p.stat().st_size == 0:
        raise CLIError(f'{what} {path!r} is empty')
    return p


def _read_text(p: Path, what: str) -> str:
    """The UTF-8 text of an input file (a one-line error for binary files)."""
    try:
        return p.read_text(encoding='utf-8')
    except UnicodeDecodeError as err:
        raise CLIError(f'{what} {str(p)!r} is not UTF-8 text (byte {err.start}): is it the right file?') from None


def _parse_json(p: Path, what: str) -> Any:
    """The JSON data of an input file, with a one-line error naming the file and the position."""
    try:
        return json.loads(_read_text(p, what))
    except json.JSONDecodeError as err:
        raise CLIError(f'{what} {str(p)!r} is not valid JSON: {err}') from None
    except RecursionError:
        raise CLIError(f'{what} {str(p)!r} is nested too deeply to read') from None


def _load_config_file(path: str) -> tuple[dict, dict[str, Any]]:
    """(hls_config, project settings) from a .yml/.yaml/.json file.

    The file is either an hls4ml config dict ({'Model': ..., 'LayerName': ...}) or an hls4ml
    project file with the config under 'HLSConfig' and OutputDir/ProjectName/Backend/IOType/Part/
    ClockPeriod beside it (these become defaults for the matching command-line options).
    YAML aliases are refused (see fpga4ml.yaml_io).
    """
    from .config import check_config_shape
    from .yaml_io import load_yaml

    p = _input_file(path, 'configuration file', allow_empty=True)
    if p.suffix.lower() == '.json':
        data = _parse_json(p, 'configuration file') if p.stat().st_size else None
    elif p.suffix.lower() in ('.yml', '.yaml'):
        data = load_yaml(_read_text(p, 'configuration file'), f'configuration file {path!r}')
    else:
        raise CLIError(f'configuration file {path!r}: expected a .yml, .yaml or .json file')
    if data is None:
        data = {}
    check_config_shape(data, f'configuration file {path!r}')  # before anything copies or walks it
    if not isinstance(data, dict):
        raise CLIError(f'configuration file {path!r} must hold a mapping (hls4ml config dict), '
                       f'got {type(data).__name__}')
    if 'HLSConfig' in data:
        project = {opt: data[key] for key, opt in _PROJECT_KEYS.items() if key in data}
        hls_config = data['HLSConfig'] or {}
        if not isinstance(hls_config, dict):
            raise CLIError(f"configuration file {path!r}: 'HLSConfig' must be a mapping")
        return hls_config, project
    return data, {}


#: model file suffixes the command reads, by front end
ONNX_SUFFIXES = ('.onnx',)
KERAS_SUFFIXES = ('.keras', '.h5', '.hdf5')


def _load_model(path: str) -> tuple[str, Any]:
    """('keras', model) for .keras/.h5 files (Keras' safe loader), ('onnx', path) for ONNX/QONNX files."""
    p = _input_file(path, 'model file')
    suffix = p.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return 'onnx', path  # the ONNX front end parses it, with its own one-line errors
    if suffix not in KERAS_SUFFIXES:
        raise CLIError(f'model file {path!r} has the extension {suffix or "(none)"!r}: expected a .keras or .h5 file '
                       '(Keras 3) or an .onnx file (ONNX/QONNX)')
    if suffix == '.keras' and not zipfile.is_zipfile(p):
        raise CLIError(f'model file {path!r} is not a .keras archive (a zip file): it is corrupt, truncated or '
                       'another format')
    from .frontends.keras import load_keras_model

    try:
        return 'keras', load_keras_model(path)
    except ImportError:
        raise
    except Exception as err:  # Keras' loader reading a bad file: KeyError, ValueError, OSError (h5py), ...
        raise CLIError(f'cannot load Keras model file {path!r}: {_foreign(err)}') from None


def _build_config(args, source: tuple[str, Any]) -> tuple[dict, dict[str, Any]]:
    """The hls4ml config dict for the model: from --config, or generated like config_from_*_model."""
    from . import config_from_keras_model, config_from_onnx_model, parse_precision

    if args.config is not None:
        if args.granularity is not None:
            raise CLIError('--granularity generates a configuration; it cannot be combined with --config')
        config, project = _load_config_file(args.config)
        if args.default_precision is not None:  # the command line wins over the file
            parse_precision(args.default_precision)
            model = config.setdefault('Model', {})
            if not isinstance(model, dict):
                raise CLIError(f"configuration file {args.config!r}: 'Model' must be a mapping")
            prec = model.get('Precision')
            if isinstance(prec, dict):
                prec['default'] = args.default_precision
            else:
                model['Precision'] = args.default_precision
        return config, project
    kind, model = source
    options = {'default_precision': args.default_precision or 'fixed<16,6>'}
    if kind == 'onnx':  # its front end's default granularity is 'name' ('auto' types, as hls4ml's)
        if args.granularity:
            options['granularity'] = args.granularity
        config = config_from_onnx_model(model, **options)
    else:
        config = config_from_keras_model(model, granularity=args.granularity or 'model', **options)
    return config, {}


def _convert(args, output_dir: str = 'my-fpga4ml-prj', backend: str | None = None, project: dict | None = None,
             source: tuple[str, Any] | None = None, config: dict | None = None):
    """Convert the loaded model (`_load_model`) with the options in args."""
    from . import convert_from_keras_model, convert_from_onnx_model

    project = project or {}

    def option(name: str, default: Any) -> Any:  # command line > project file > default
        value = getattr(args, name, None)
        return value if value is not None else project.get(name, default)

    settings = {
        'output_dir': output_dir,
        'project_name': option('project_name', 'myproject'),
        'backend': backend or project.get('backend', 'Vitis'),
        'io_type': option('io_type', 'io_parallel'),
        'part': option('part', None),
        'clock_period': option('clock_period', 5),
    }
    kind, model = source
    convert = convert_from_onnx_model if kind == 'onnx' else convert_from_keras_model
    return convert(model, hls_config=config, **settings)


def _size(n_bytes: int) -> str:
    """A byte count for messages: '7.3 TiB'."""
    for unit in ('bytes', 'KiB', 'MiB', 'GiB', 'TiB'):
        if n_bytes < 1024 or unit == 'TiB':
            return f'{n_bytes} bytes' if unit == 'bytes' else f'{n_bytes:.1f} {unit}'
        n_bytes /= 1024
    return ''


def _check_header(f, available: int, where: str) -> None:
    """Read an .npy header from `f` and check it before any data is read or allocated.

    Refused: object arrays (reading them would unpickle), non-real dtypes, and a shape whose data
    needs more bytes than the `available` bytes of the file: a header that claims terabytes is
    never allocated.
    """
    try:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f'unsupported .npy format version {version}')
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except ValueError as err:
        raise CLIError(f'{where} is not a readable .npy array: its header is corrupt ({_one_line(err)})') from None
    if dtype.hasobject:
        raise CLIError(f'{where} holds Python objects (dtype {dtype}); object arrays are refused: reading them '
                       'would unpickle the file (numpy.load(allow_pickle=False)); save a numeric array')
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(dtype, np.complexfloating):
        raise CLIError(f'{where} holds {dtype} values; expected real numbers')
    needed = math.prod(shape) * dtype.itemsize
    if needed > available - f.tell():
        raise CLIError(f'{where}: its header claims shape {tuple(shape)} of {dtype} ({_size(needed)}) but the file '
                       f'holds {_size(max(available - f.tell(), 0))} of data: it is truncated or corrupt')


def _read_array(f, available: int, where: str) -> np.ndarray:
    """One checked .npy array from the open, seekable file `f` holding `available` bytes; never unpickles."""
    _check_header(f, available, where)
    f.seek(0)
    try:
        return np.lib.format.read_array(f, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:
        raise CLIError(f'{where} is not a readable .npy array: {_one_line(err)}') from None
    except MemoryError:
        raise CLIError(f'{where}: not enough memory to load it') from None


#: deflate expands at most about 1032:1; a zip member declaring more is corrupt (or a zip bomb)
_MAX_DEFLATE_RATIO = 1100


def _read_npz(p: Path, where: str) -> np.ndarray:
    """The one array of a .npz file (numpy.savez/savez_compressed), checked like a .npy file."""
    try:
        with zipfile.ZipFile(p) as archive:
            members = archive.infolist()
            if len(members) != 1 or not members[0].filename.endswith('.npy'):
                names = [m.filename for m in members]
                raise CLIError(f'{where} holds {len(names)} members {names[:10]}; give a .npy file or a .npz with '
                               'one array')
            info = members[0]
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise CLIError(f'{where}: member {info.filename!r} uses zip compression method {info.compress_type}; '
                               'numpy.savez files are stored or deflated')
            if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024:
                raise CLIError(f'{where}: member {info.filename!r} claims {_size(info.file_size)} from '
                               f'{_size(info.compress_size)} compressed, more than deflate produces: it is corrupt')
            with archive.open(info) as f:
                return _read_array(f, info.file_size, f'{where} (member {info.filename!r})')
    except zipfile.BadZipFile as err:
        raise CLIError(f'{where} is not a readable .npz archive: {_one_line(err)}') from None


def _load_data(path: str, n: int | None) -> np.ndarray:
    """A numeric array from a .npy file (or a .npz holding one array), never unpickling.

    The header is checked against the file size before anything is allocated.
    """
    p = _input_file(path, 'data file')
    with open(p, 'rb') as f:
        magic = f.read(6)
    where = f'data file {path!r}'
    if magic == b'\x93NUMPY':
        with open(p, 'rb') as f:
            data = _read_array(f, p.stat().st_size, where)
    elif magic.startswith(b'PK\x03\x04'):
        data = _read_npz(p, where)
    else:
        raise CLIError(f'{where} is not a .npy file (save the samples with numpy.save)')
    if n is not None:
        data = data[:n]
    return np.asarray(data, dtype=np.float64)


def _check_input_shape(model, x: np.ndarray, path: str) -> np.ndarray:
    inputs = model.get_input_names()
    if len(inputs) != 1:
        raise CLIError(f'the model has {len(inputs)} inputs {inputs}; profile takes a single input array')
    shape = model.graph[inputs[0]].shape
    if x.shape == shape:
        x = x[None]
    if x.shape[1:] != shape:
        raise CLIError(f'{path!r} has shape {x.shape}; the model input {inputs[0]!r} expects '
                       f'(n_samples, {", ".join(map(str, shape))})')
    if len(x) == 0:
        raise CLIError(f'{path!r} holds no samples')
    return x


# --------------------------------------------------------------------------- commands


def cmd_convert(args) -> int:
    """`fpga4ml convert`: write the typed graph; with an explicit --backend, the firmware too."""
    from . import BackendUnavailableError
    from .serialize import write_typed_graph

    source = _load_model(args.model)
    config, project = _build_config(args, source)
    out = args.output or project.get('output')
    if not out:
        raise CLIError('no output directory: give -o DIR (or OutputDir in an hls4ml project config file)')
    backend = args.backend or project.get('backend')
    model = _convert(args, output_dir=str(out), backend=backend, project=project, source=source,
                     config=config)
    written = write_typed_graph(model, out)
    print(f'{PROG}: converted {args.model} ({len(model.graph)} layers) -> '
          + ', '.join(str(p) for p in written))
    if backend is not None:
        try:
            model.write()
        except BackendUnavailableError as err:
            print(f'{PROG}: error: {_one_line(err)}', file=sys.stderr)
            return 2
        print(f'{PROG}: wrote the {model.backend} project into {out}')
    return 0


def _manifest_files(files: Any, root: Path, where: str) -> None:
    """Check manifest 'files': a non-empty list of relative paths to files inside the project directory."""
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        raise CLIError(f"{where}: 'files' must be a non-empty list of file names, got {files!r:.100}")
    inside = root.resolve()
    for name in files:
        path = (root / name).resolve()
        if Path(name).is_absolute() or inside not in path.parents:
            raise CLIError(f"{where}: file {name!r} is outside the project directory {str(root)!r}")
        if not path.is_file():
            raise CLIError(f"{where}: file {name!r} does not exist in {str(root)!r}")
        try:  # the names go into a Yosys script: plain characters only
            check_file_name(name, f'{where}: file')
        except ValueError as err:
            raise CLIError(str(err)) from None


def _load_manifest(root: Path) -> dict:
    """The checked manifest.json of a Verilog project: top (an identifier), files, latency, clock_period_ns."""
    if not root.is_dir():
        raise CLIError(f'{str(root)!r} is not a directory: give the directory written by `fpga4ml convert MODEL '
                       '-o DIR --backend Verilog`')
    path = root / 'manifest.json'
    if not path.is_file():
        raise CLIError(f'{root} has no manifest.json: write the design with `fpga4ml convert MODEL -o {root} '
                       '--backend Verilog` first')
    where = f'manifest {str(path)!r}'
    manifest = _parse_json(path, 'manifest')
    if not isinstance(manifest, dict):
        raise CLIError(f'{where} must hold a JSON object with top, files and latency; got a {type(manifest).__name__}')
    missing = [k for k in ('top', 'files', 'latency') if k not in manifest]
    if missing:
        raise CLIError(f'{where} lacks the keys {missing}; rewrite it with `fpga4ml convert MODEL -o {root} '
                       '--backend Verilog`')
    top, latency, period = manifest['top'], manifest['latency'], manifest.get('clock_period_ns', 5.0)
    if not isinstance(top, str) or not top.isidentifier() or not top.isascii():
        raise CLIError(f"{where}: 'top' must be a module name (an ASCII identifier), got {top!r:.100}")
    _manifest_files(manifest['files'], root, where)
    if isinstance(latency, bool) or not isinstance(latency, int) or latency < 0:
        raise CLIError(f"{where}: 'latency' must be a whole number of cycles >= 0, got {latency!r:.100}")
    if isinstance(period, bool) or not isinstance(period, (int, float)) or not math.isfinite(period) or period <= 0:
        raise CLIError(f"{where}: 'clock_period_ns' must be a finite positive number, got {period!r:.100}")
    return manifest


def cmd_synth(args) -> int:
    """`fpga4ml synth`: synthesize a written Verilog project with Yosys and print its resources."""
    from .synth import synthesize

    root = Path(args.directory)
    manifest = _load_manifest(root)
    files = [str(root / f) for f in manifest['files']]
    report = synthesize(files, manifest['top'], family=args.family, output_dir=str(root), script=args.script,
                        place_route=args.place_route, clock_period=float(manifest.get('clock_period_ns', 5.0)),
                        timeout=args.timeout)
    report['latency_cycles'] = manifest['latency']
    (root / 'synth_report.json').write_text(json_text(report, default=str))
    keys = ('LUT', 'FF', 'CARRY', 'DSP', 'BRAM', 'SRL', 'logic_levels', 'critical_delay_ns', 'fmax_mhz_estimate',
            'fmax_mhz', 'latency_cycles', 'seconds')
    print(f"{PROG}: {manifest['top']} on {args.family}: " +
          ', '.join(f'{k} {report[k]}' for k in keys if report.get(k) is not None))
    print(f'{PROG}: report written to {root / "synth_report.json"}')
    return 0


def cmd_summary(args) -> int:
    """`fpga4ml summary`: print the per-layer table of the converted model."""
    source = _load_model(args.model)
    config, project = _build_config(args, source)
    model = _convert(args, project=project, source=source, config=config)
    print(model)
    return 0


def _agreement_lines(model, x: np.ndarray) -> list[str]:
    """Float (the converted graph in float64) against the fixed-point emulator, per output."""
    from .emulator.reference import float_forward

    has_nan = np.isnan(x.reshape(len(x), -1)).any(axis=1) if x.dtype.kind == 'f' else np.zeros(len(x), bool)
    x = x[~has_nan]
    lines = [f'float vs fixed on {len(x)} samples (float: the converted graph in float64, '
             'BatchNorm fused, unquantized weights)' + (f'; {int(has_nan.sum())} samples with NaN inputs '
                                                        'excluded' if has_nan.any() else '') + ':']
    if not len(x):
        return lines
    fixed = model.predict(x)
    fixed = fixed if isinstance(fixed, list) else [fixed]
    floats = float_forward(model.graph, x)
    for name, f, q in zip(model.get_output_names(), floats, fixed):
        f = np.asarray(f, dtype=np.float64).reshape(len(x), -1)
        q = np.asarray(q, dtype=np.float64).reshape(len(x), -1)
        diff = np.abs(f - q)
        line = f'  {name}: max |float - fixed| = {diff.max():.6g}, mean = {diff.mean():.6g}'
        if model.graph[name].op == 'Softmax' and f.shape[1] > 1:
            agree = float(np.mean(np.argmax(f, axis=1) == np.argmax(q, axis=1)))
            line += f', argmax agreement = {100 * agree:.2f} %'
        lines.append(line)
    return lines


def cmd_profile(args) -> int:
    """`fpga4ml profile`: per-layer ranges and overflows on data, and float-vs-fixed agreement."""
    from . import profile

    if args.n is not None and args.n < 1:
        raise CLIError(f'--n must be a positive number of samples, got {args.n}')
    source = _load_model(args.model)
    x = _load_data(args.data, args.n)
    config, project = _build_config(args, source)
    model = _convert(args, project=project, source=source, config=config)
    x = _check_input_shape(model, x, args.data)
    model.compile(write=False)  # profiling writes no project
    profile(model, x)
    print()
    print('\n'.join(_agreement_lines(model, x)))
    return 0


# --------------------------------------------------------------------------- parser


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument('model', metavar='MODEL', help='trained model file: Keras 3 (.keras, .h5) or ONNX/QONNX (.onnx)')
    p.add_argument('--config', '-c', metavar='CONFIG', default=None,
                   help='hls4ml-style configuration as .yml/.yaml/.json (a dict with Model/LayerType/'
                        "LayerName, or an hls4ml project file with 'HLSConfig'); by default one is "
                        'generated as config_from_keras_model does')
    p.add_argument('--granularity', type=_choice(GRANULARITIES), default=None, metavar='{model,type,name}',
                   help="granularity of the generated configuration: 'model' (default), 'type' or 'name'; "
                        "per-layer entries ask for inferred ('auto') types")
    p.add_argument('--default-precision', metavar='TYPE', default=None,
                   help="model default precision, e.g. 'fixed<16,6>' or 'ap_fixed<18,8,AP_RND,AP_SAT>' "
                        '(default fixed<16,6>; with --config it replaces the file\'s Model default)')


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the fpga4ml command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Convert trained neural networks into FPGA firmware: Keras 3 and ONNX/QONNX models, typed '
                    '(fixed-point) graphs, a bit-exact integer emulator, HLS C++ projects and '
                    'pipelined Verilog, synthesized with Yosys.',
        epilog="Run 'fpga4ml COMMAND --help' for the options of a command.")
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')

    p = sub.add_parser(
        'convert', help='convert a model and write its typed graph',
        description='Convert a Keras model with an hls4ml-style configuration and write the typed graph '
                    '(graph.json: types and integer weights of every layer; config.yml: the configuration '
                    'used; summary.txt: the layer table) into DIR. The files are the same byte for byte '
                    'for the same model and configuration. With an explicit --backend the firmware '
                    'project is written too: an HLS project (Vitis, Vivado) or Verilog + manifest.json '
                    '(Verilog; synthesize it with `fpga4ml synth DIR`).')
    _add_config_options(p)
    p.add_argument('-o', '--output', metavar='DIR', default=None, help='output directory (created if needed)')
    p.add_argument('--backend', type=_choice(BACKENDS), default=None, metavar='{Vitis,Vivado,Verilog}',
                   help=f"firmware back end: {', '.join(BACKENDS)}; when given, also write the project")
    p.add_argument('--io-type', type=_choice(IO_TYPES), default=None, metavar='{io_parallel,io_stream}',
                   help='io_parallel (default) or io_stream, as in hls4ml')
    p.add_argument('--project-name', metavar='NAME', default=None,
                   help='top-level name, a C identifier (default myproject)')
    p.add_argument('--part', metavar='PART', default=None, help='FPGA part (default xcvu13p-flga2577-2-e)')
    p.add_argument('--clock-period', metavar='NS', type=float, default=None,
                   help='clock period in ns (default 5)')
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser('summary', help='print the per-layer table of the converted model',
                       description='Convert a Keras model and print its layers: shapes, fixed-point '
                                   'types, parameters and non-zero weights.')
    _add_config_options(p)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser(
        'profile', help='per-layer ranges and overflows on data, float vs fixed agreement',
        description='Convert a Keras model, run the bit-exact emulator on DATA.npy (shape (n, *input_shape)) '
                    'and print, per layer, the range of values used against the range of its type and the '
                    'number of values that wrapped or saturated; then compare the fixed-point outputs with '
                    'the float outputs of the same graph.')
    _add_config_options(p)
    p.add_argument('data', metavar='DATA.npy', help='input samples as a .npy array (never unpickled)')
    p.add_argument('--n', type=int, metavar='N', default=None, help='use only the first N samples')
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser(
        'synth', help='synthesize a Verilog project written by convert --backend Verilog',
        description='Run Yosys (the pyosys wheel) on the Verilog design in DIR (its manifest.json names the '
                    'top module and files) and print LUT, FF, CARRY, DSP, BRAM and SRL counts, logic levels '
                    'and the estimated critical delay; with --place-route (ECP5 only) also place and route '
                    'with nextpnr and report the real Fmax. The report is written to DIR/synth_report.json.')
    p.add_argument('directory', metavar='DIR', help='a directory written by `fpga4ml convert --backend Verilog`')
    p.add_argument('--family', default='xcup', metavar='{xcup,xc7,ecp5,ice40}',
                   help='FPGA family: xcup (UltraScale+, default), xc7, ecp5 or ice40')
    p.add_argument('--script', default='fast', metavar='{fast,default}',
                   help="Yosys script: 'fast' (cheap ABC mapping, default) or the family's stock 'default'")
    p.add_argument('--place-route', action='store_true', help='ECP5 only: place and route with nextpnr for a real Fmax')
    p.add_argument('--timeout', type=float, default=None, metavar='S', help='give up after S seconds')
    p.set_defaults(func=cmd_synth)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Configuration warnings as one line each; other warnings as Python prints them."""
    from . import ConfigWarning

    stream = file or sys.stderr
    if issubclass(category, ConfigWarning):
        stream.write(f'{PROG}: warning: {_one_line(message)}\n')
    else:
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fpga4ml command with `argv` (default sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, 'func', None) is None:
        parser.print_help()
        return 2
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print(f'{PROG}: interrupted', file=sys.stderr)
            return 130
        except _user_errors() as err:
            print(f'{PROG}: error: {_one_line(err)}', file=sys.stderr)
            return 2 if type(err).__name__ == 'BackendUnavailableError' else 1


if __name__ == '__main__':
    sys.exit(main())
