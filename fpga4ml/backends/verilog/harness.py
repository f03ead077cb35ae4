"""The RTL design contract (manifest.json) and the C++ Verilator harness specialised to it.

A generated design is a directory of Verilog-2001 files plus ``manifest.json``::

    {"top": "myproject", "files": ["myproject.v"], "latency": 3, "ii": 1, "clock_period_ns": 5.0,
     "inputs":  [{"name": "input_1", "port": "x_input_1", "shape": [16], "elements": 16,
                  "width": 16, "frac": 10, "signed": true, "type": "fixed<16,6>"}],
     "outputs": [{"name": "dense_3", "port": "y_dense_3", "shape": [5], "elements": 5,
                  "width": 18, "frac": 10, "signed": true, "type": "fixed<18,8>"}]}

The top module has ``clk`` (posedge), ``rst`` (synchronous, active high, clears the valid
pipeline), ``ce`` (clock enable), ``valid_in``, ``valid_out`` and one packed bus per tensor:
element k (C order) of a tensor sits at bits ``[k*width +: width]``.

Vector mode (no ``"stream"`` key): the design takes one whole input vector per clock (ii = 1)
and shows its outputs `latency` enabled clocks later. A folded design (ii > 1, ReuseFactor) has
a valid-every-II contract: valid_in may be high in at most one of any ii consecutive enabled
clocks (the design latches the vector at that edge); the harness holds valid_in low for the
ii - 1 enabled clocks after each vector it sends. Stream mode (``"stream": {"pixels": P}``):
the single input has ``"shape": [H, W, C]`` with H*W == P and ``"elements": C``: its bus carries
one pixel, and an image is P consecutive accepted pixels in row-major order; ``ii`` must be P
(images back to back) and `latency` counts enabled clocks from the edge that accepts the last
pixel of an image to its (whole-vector) outputs, with the same convention as vector mode. A stream
design with folded layers has ``"stream": {"pixels": P, "interval": K}``: it takes a pixel at most
once in any K enabled clocks (ii = P * K), and the harness spaces the pixels K enabled clocks apart.

`parse_manifest` checks a manifest and returns a `Design`; `check_ports` compares it with the
Verilated top module's ports; `harness_source` writes the C++
``main`` that streams int64 mantissas from a binary file through the Verilated model (class
``Vdut``) and writes the outputs back (format in `harness_source`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ...naming import check_file_name, is_keyword

#: bump whenever the generated C++ changes: it is part of the simulator cache key
HARNESS_VERSION = 4
#: the C++ class Verilator generates (``--prefix``)
MODEL_CLASS = 'Vdut'
#: int64 words at the start of the harness's output file (see `harness_source`)
STATS_WORDS = 8
CONTROL_PORTS = ('clk', 'rst', 'ce', 'valid_in', 'valid_out')

_IDENT = re.compile(r'[A-Za-z_][A-Za-z0-9_]*\Z')


@dataclass(frozen=True)
class TensorPort:
    """One manifest tensor: its packed bus and the fixed-point element format."""

    name: str
    port: str
    shape: tuple[int, ...]
    elements: int
    width: int
    signed: bool
    frac: int | None = None
    type: str | None = None

    @property
    def bits(self) -> int:
        """Width of the packed bus."""
        return self.elements * self.width

    @property
    def low(self) -> int:
        """Smallest mantissa an element can hold."""
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def high(self) -> int:
        """Largest mantissa an element can hold."""
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1


@dataclass(frozen=True)
class Design:
    """A checked manifest: top module, source files, timing and the tensor ports.

    `stream_pixels` is None for a vector-mode design, else the pixels per image of a stream-mode
    design (whose single input port then carries one pixel: `elements` = C, `shape` = (H, W, C)).
    """

    top: str
    files: tuple[str, ...]
    latency: int
    ii: int
    inputs: tuple[TensorPort, ...]
    outputs: tuple[TensorPort, ...]
    stream_pixels: int | None = None
    #: stream mode: enabled clocks per accepted pixel (manifest stream.interval, default 1)
    stream_interval: int = 1

    @property
    def streaming(self) -> bool:
        """True for a stream-mode design (one pixel per clock, whole outputs per image)."""
        return self.stream_pixels is not None

    @property
    def beats(self) -> int:
        """Accepted input clocks per output vector: the pixels per image in stream mode, else 1."""
        return self.stream_pixels if self.stream_pixels is not None else 1

    @property
    def spacing(self) -> int:
        """Enabled clocks from one accepted input row to the next that may be sent: ii in vector mode, else
        the stream's pixel interval."""
        return self.stream_interval if self.streaming else self.ii

    @property
    def in_elements(self) -> int:
        """int64 values per input clock (all inputs concatenated; one pixel in stream mode)."""
        return sum(p.elements for p in self.inputs)

    @property
    def out_elements(self) -> int:
        """int64 values per output vector (all outputs concatenated)."""
        return sum(p.elements for p in self.outputs)


def parse_manifest(manifest: dict) -> Design:
    """Check a manifest dict against the design contract and return it as a `Design`."""
    for key in ('top', 'files', 'latency', 'inputs', 'outputs'):
        if key not in manifest:
            raise ValueError(f'manifest: missing key {key!r}')
    top = _identifier(manifest['top'], 'top')
    files = tuple(check_file_name(f, 'manifest: a file of "files"') for f in manifest['files'])
    if not files:
        raise ValueError('manifest: "files" is empty')
    # models of vendor primitives the design instantiates: simulated with it, never synthesized
    files += tuple(check_file_name(f, 'manifest: a file of "simulation_files"')
                   for f in manifest.get('simulation_files', ()))
    latency = int(manifest['latency'])
    if latency < 0:
        raise ValueError(f'manifest: latency must be >= 0, got {latency}')
    pixels = _stream_pixels(manifest.get('stream'))
    if pixels is None:
        ii = int(manifest.get('ii', 1))
        if ii < 1:
            raise ValueError(f'manifest: ii must be >= 1 (a new input vector every ii clocks), got ii = {ii}')
        inputs = tuple(_tensor(t, 'x_', 'inputs') for t in manifest['inputs'])
    else:
        if len(manifest['inputs']) != 1:
            raise ValueError(f'manifest: in stream mode "inputs" must hold exactly one input (the pixel '
                             f'stream), got {len(manifest["inputs"])}')
        inputs = (_stream_tensor(manifest['inputs'][0], pixels),)
        interval = manifest['stream'].get('interval', 1)
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f'manifest: stream.interval must be an integer >= 1 (clocks per pixel), got {interval!r}')
        ii = int(manifest.get('ii', pixels * interval))
        if ii != pixels * interval:
            times = f' x stream.interval = {interval}' if interval > 1 else ''
            raise ValueError(f'manifest: in stream mode ii must equal stream.pixels = {pixels}{times} '
                             f'(one image every {pixels} pixels), got ii = {ii}')
    outputs = tuple(_tensor(t, 'y_', 'outputs') for t in manifest['outputs'])
    if not inputs or not outputs:
        raise ValueError('manifest: the design needs at least one input and one output')
    ports = [p.port for p in inputs + outputs]
    clashes = sorted({p for p in ports if ports.count(p) > 1 or p in CONTROL_PORTS})
    if clashes:
        raise ValueError(f'manifest: port names used twice or clashing with control ports: {clashes}')
    return Design(top, files, latency, ii, inputs, outputs, pixels, interval if pixels is not None else 1)


def _stream_pixels(stream) -> int | None:
    """stream.pixels of a manifest (None when there is no "stream" key)."""
    if stream is None:
        return None
    if not isinstance(stream, dict) or 'pixels' not in stream:
        raise ValueError(f'manifest: "stream" must be an object with a "pixels" key, got {stream!r}')
    pixels = stream['pixels']
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise ValueError(f'manifest: stream.pixels must be an integer >= 1, got {pixels!r}')
    return pixels


def _identifier(value, what: str) -> str:
    """`value` if it can name a Verilog port or module and its Verilated C++ member; else a ValueError."""
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ValueError(f'manifest: {what} must be a Verilog/C++ identifier ([A-Za-z_][A-Za-z0-9_]*), '
                         f'got {value!r}')
    if is_keyword(value) or '__' in value:
        raise ValueError(f'manifest: {what} must be a Verilog/C++ identifier that is no C++ or Verilog keyword '
                         f'and has no "__" (Verilator renames those), got {value!r}')
    return value


def _tensor(entry: dict, prefix: str, where: str) -> TensorPort:
    """One manifest tensor entry, with `port` defaulting to prefix + name."""
    name = str(entry.get('name', ''))
    port = _identifier(entry.get('port', prefix + name), f'{where} port of {name!r}')
    shape = tuple(int(s) for s in entry.get('shape', [entry.get('elements', 0)]))
    elements = int(entry.get('elements', math.prod(shape)))
    if elements != math.prod(shape) or elements < 1:
        raise ValueError(f'manifest: {where} {name!r}: elements={elements} does not match shape {list(shape)}')
    return _port(entry, name, port, shape, elements, where)


def _stream_tensor(entry: dict, pixels: int) -> TensorPort:
    """The input entry of a stream-mode design: shape [H, W, C], H*W == pixels, elements == C."""
    name = str(entry.get('name', ''))
    port = _identifier(entry.get('port', 'x_' + name), f'inputs port of {name!r}')
    if 'shape' not in entry:
        raise ValueError(f'manifest: inputs {name!r}: in stream mode "shape" must be given as [H, W, C]')
    shape = tuple(int(s) for s in entry['shape'])
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f'manifest: inputs {name!r}: in stream mode "shape" must be [H, W, C] (the whole '
                         f'image), got {list(shape)}')
    if shape[0] * shape[1] != pixels:
        raise ValueError(f'manifest: stream.pixels = {pixels} does not match the input {name!r} shape '
                         f'{list(shape)} (H*W = {shape[0] * shape[1]})')
    elements = int(entry.get('elements', shape[2]))
    if elements != shape[2]:
        raise ValueError(f'manifest: inputs {name!r}: in stream mode "elements" must be C = {shape[2]} (the '
                         f'port carries one pixel of shape {list(shape)}), got elements={elements}')
    return _port(entry, name, port, shape, elements, 'inputs')


def _port(entry: dict, name: str, port: str, shape: tuple[int, ...], elements: int, where: str) -> TensorPort:
    width = int(entry['width'])
    if not 1 <= width <= 64:
        raise ValueError(f'manifest: {where} {name!r}: width must be 1..64 bits, got {width}')
    frac = entry.get('frac')
    return TensorPort(name, port, shape, elements, width, bool(entry.get('signed', True)),
                      None if frac is None else int(frac), entry.get('type'))


_PORT_DECL = re.compile(r'VL_(IN|OUT)(?:8|16|64|W)?\(&(\w+),(\d+),(\d+)')


def check_ports(model_header: str, design: Design) -> None:
    """Compare the Verilated top's ports (text of Vdut.h) with the manifest; RuntimeError on a mismatch."""
    found = {name: (way, int(msb) - int(lsb) + 1) for way, name, msb, lsb in _PORT_DECL.findall(model_header)}
    expected = {name: ('IN', 1) for name in CONTROL_PORTS if name != 'valid_out'}
    expected['valid_out'] = ('OUT', 1)
    expected.update({p.port: ('IN', p.bits) for p in design.inputs})
    expected.update({p.port: ('OUT', p.bits) for p in design.outputs})
    problems = []
    for name, (way, bits) in expected.items():
        if name not in found:
            problems.append(f'{name} ({way.lower()}put, {bits} bits) is missing')
        elif found[name] != (way, bits):
            problems.append(f'{name} is an {found[name][0].lower()}put of {found[name][1]} bits, '
                            f'the manifest says {way.lower()}put of {bits} bits')
    problems += [f'input {name} is not in the manifest' for name, (way, _) in found.items()
                 if way == 'IN' and name not in expected]
    if problems:
        raise RuntimeError(f'the ports of top module {design.top!r} do not match its manifest: '
                           + '; '.join(problems) + f'. Module ports: {sorted(found)}')


def _mask(width: int) -> str:
    return f'0x{(1 << width) - 1:x}ULL'


def _narrow_type(bits: int) -> str:
    """The Verilator C++ type of a port of `bits` <= 64 bits."""
    return 'CData' if bits <= 8 else 'SData' if bits <= 16 else 'IData' if bits <= 32 else 'QData'


def _pack_code(p: TensorPort, offset: int) -> str:
    """C++ block that packs row[offset : offset+elements] into input bus p.port."""
    head = f'  {{  // {p.port}: {p.elements} x {p.width} bits ({p.bits} bits)\n'
    loop = f'    for (int k = 0; k < {p.elements}; ++k) {{\n'
    value = f'(uint64_t)row[{offset} + k] & {_mask(p.width)}'
    if p.bits <= 64:
        return (head + '    uint64_t bus = 0;\n' + loop
                + f'      bus |= ({value}) << (k * {p.width});\n    }}\n'
                + f'    top->{p.port} = ({_narrow_type(p.bits)})bus;\n  }}\n')
    words = (p.bits + 31) // 32
    return (head + f'    EData* w = top->{p.port}.data();\n'
            + f'    std::memset(w, 0, {words} * sizeof(EData));\n' + loop
            + f'      put_bits(w, k * {p.width}, {p.width}, {value});\n    }}\n  }}\n')


def _unpack_code(p: TensorPort, offset: int) -> str:
    """C++ block that unpacks output bus p.port into row[offset : offset+elements]."""
    head = f'  {{  // {p.port}: {p.elements} x {p.width} bits ({p.bits} bits)\n'
    loop = f'    for (int k = 0; k < {p.elements}; ++k) {{\n'
    store = (f'      row[{offset} + k] = sign_extend(v, {p.width});\n' if p.signed
             else f'      row[{offset} + k] = (int64_t)v;\n')
    if p.bits <= 64:
        return (head + f'    const uint64_t bus = top->{p.port};\n' + loop
                + f'      const uint64_t v = (bus >> (k * {p.width})) & {_mask(p.width)};\n'
                + store + '    }\n  }\n')
    return (head + f'    const EData* w = top->{p.port}.data();\n' + loop
            + f'      const uint64_t v = get_bits(w, k * {p.width}, {p.width}) & {_mask(p.width)};\n'
            + store + '    }\n  }\n')


def _port_blocks(ports, make) -> str:
    code, offset = [], 0
    for p in ports:
        code.append(make(p, offset))
        offset += p.elements
    return ''.join(code)


def harness_source(design: Design) -> str:
    """C++ main() for `design`: ``sim IN OUT N GAPS SEED``.

    N is the batch: vectors in vector mode, images in stream mode. IN holds N * `design.beats`
    rows of `design.in_elements` int64 mantissas (inputs concatenated in manifest order,
    elements in C order; in stream mode one row per pixel, each image's pixels in row-major
    order). The program resets the design (rst=1 for 2 clocks), streams the rows one per clock
    with valid_in=1, ce=1 and keeps clocking until LATENCY+2 enabled clocks after the last
    row, holding valid_in low for `design.spacing` - 1 enabled clocks after each row (a folded
    design's ii). GAPS=1 adds a random pattern (from SEED) of ce=0 clocks and valid_in=0 bubbles
    carrying junk data (another row), and junk with valid_in=1 during the reset. The latency of
    a result is counted from the enabled clock that accepted its last row. OUT gets
    `STATS_WORDS` int64 words (results seen with valid_out=1, clocks, enabled clocks, latency
    mismatches, first mismatching result, its delay in enabled clocks (-1: it came before its
    last row was accepted), rows per result, 0) followed by min(results, N) output rows
    (sign-extended when signed).

    Trace mode, ``sim IN OUT N 0 SEED trace``: the caller drives every clock. IN holds N rows of
    `design.in_elements` + 2 int64 words (the inputs, valid_in, ce of that clock); every register
    starts at 0 (as the stateful interpreter's), rst is held 2 clocks with valid_in=0 and zero
    inputs, then row t is applied in clock t and OUT gets N rows of `design.out_elements` + 1
    words: the outputs and valid_out as they show before that clock's rising edge.
    """
    fields = {
        'version': HARNESS_VERSION, 'top': design.top, 'model': MODEL_CLASS,
        'n_in': design.in_elements, 'n_out': design.out_elements, 'latency': design.latency,
        'beats': design.beats,
        'spacing': design.spacing,
        'stats_words': STATS_WORDS,
        'pack': _port_blocks(design.inputs, _pack_code),
        'unpack': _port_blocks(design.outputs, _unpack_code),
    }
    return _TEMPLATE.format(**fields)


_TEMPLATE = r'''// fpga4ml RTL simulation harness (generator version {version}) for top module {top}
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "verilated.h"
#include "{model}.h"

static const long N_IN = {n_in};
static const long N_OUT = {n_out};
static const long LATENCY = {latency};
static const long BEATS = {beats};  // input rows (clocks) per result: pixels per image in stream mode
static const long SPACING = {spacing};  // enabled clocks per accepted row: ii of a folded (ii > 1) design
static const long STATS_WORDS = {stats_words};

// Write the low `width` bits of v at bit `lsb` of a wide bus (words pre-cleared).
static inline void put_bits(EData* w, int lsb, int width, uint64_t v) {{
    int idx = lsb >> 5;
    const int sh = lsb & 31;
    w[idx] |= (EData)(v << sh);
    uint64_t rest = v >> (32 - sh);
    for (int left = width - (32 - sh); left > 0; left -= 32) {{
        w[++idx] |= (EData)rest;
        rest >>= 32;
    }}
}}

// Read `width` bits at bit `lsb` of a wide bus (caller masks).
static inline uint64_t get_bits(const EData* w, int lsb, int width) {{
    int idx = lsb >> 5;
    int have = 32 - (lsb & 31);
    uint64_t v = (uint64_t)w[idx] >> (lsb & 31);
    for (; have < width; have += 32) v |= (uint64_t)w[++idx] << have;
    return v;
}}

static inline int64_t sign_extend(uint64_t v, int width) {{
    return width == 64 ? (int64_t)v : (int64_t)(v << (64 - width)) >> (64 - width);
}}

static void set_inputs({model}* top, const int64_t* row) {{
{pack}}}

static void get_outputs({model}* top, int64_t* row) {{
{unpack}}}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static inline uint64_t rng() {{  // xorshift64*
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}}

static void tick({model}* top) {{
    top->clk = 0;
    top->eval();
    top->clk = 1;
    top->eval();
}}

// Trace mode: row t of IN (inputs, valid_in, ce) drives clock t; OUT row t holds the outputs and
// valid_out shown before that clock's rising edge. Registers start at 0, as in the interpreter.
static int trace(const char* in_path, const char* out_path, long n, char** argv) {{
    const long n_in = N_IN + 2, n_out = N_OUT + 1;
    std::vector<int64_t> in((size_t)(n > 0 ? n : 1) * n_in, 0), out((size_t)(n > 0 ? n : 1) * n_out, 0);
    FILE* f = std::fopen(in_path, "rb");
    if (!f || std::fread(in.data(), sizeof(int64_t), (size_t)n * n_in, f) != (size_t)n * n_in) {{
        std::fprintf(stderr, "cannot read %ld trace rows of %ld words from %s\n", n, n_in, in_path);
        return 3;
    }}
    std::fclose(f);
    VerilatedContext* ctx = new VerilatedContext;
    ctx->randReset(0);
    ctx->commandArgs(1, argv);
    {model}* top = new {model}{{ctx, "dut"}};
    std::vector<int64_t> zeros(N_IN > 0 ? N_IN : 1, 0);
    set_inputs(top, zeros.data());
    top->ce = 1;
    top->valid_in = 0;
    top->rst = 1;
    for (int i = 0; i < 2; ++i) tick(top);
    top->rst = 0;
    for (long t = 0; t < n; ++t) {{
        const int64_t* row = &in[(size_t)t * n_in];
        set_inputs(top, row);
        top->valid_in = row[N_IN] != 0;
        top->ce = row[N_IN + 1] != 0;
        top->clk = 0;
        top->eval();
        get_outputs(top, &out[(size_t)t * n_out]);
        out[(size_t)t * n_out + N_OUT] = top->valid_out;
        top->clk = 1;
        top->eval();
    }}
    top->final();
    delete top;
    delete ctx;
    FILE* g = std::fopen(out_path, "wb");
    if (!g || std::fwrite(out.data(), sizeof(int64_t), (size_t)n * n_out, g) != (size_t)n * n_out) {{
        std::fprintf(stderr, "cannot write %s\n", out_path);
        return 4;
    }}
    std::fclose(g);
    return 0;
}}

int main(int argc, char** argv) {{
    if (argc < 6) {{
        std::fprintf(stderr, "usage: %s IN OUT N GAPS SEED [trace]\n", argv[0]);
        return 2;
    }}
    if (argc > 6 && std::strcmp(argv[6], "trace") == 0) return trace(argv[1], argv[2], std::atol(argv[3]), argv);
    const long n = std::atol(argv[3]);
    const bool gaps = std::atoi(argv[4]) != 0;
    const unsigned long long seed = std::strtoull(argv[5], nullptr, 10);
    rng_state ^= seed * 0xD1B54A32D192ED03ULL;
    if (!rng_state) rng_state = 1;

    const long n_rows = n * BEATS;
    std::vector<int64_t> in((size_t)(n_rows > 0 ? n_rows : 1) * N_IN, 0);
    FILE* f = std::fopen(argv[1], "rb");
    if (!f || std::fread(in.data(), sizeof(int64_t), (size_t)n_rows * N_IN, f) != (size_t)n_rows * N_IN) {{
        std::fprintf(stderr, "cannot read %ld input rows (%ld x %ld) from %s\n", n_rows, n, BEATS, argv[1]);
        return 3;
    }}
    std::fclose(f);
    std::vector<int64_t> out((size_t)n * N_OUT + N_OUT, 0);
    std::vector<int64_t> sample(N_OUT, 0);
    std::vector<long> sent_at((size_t)n + 1, 0);

    VerilatedContext* ctx = new VerilatedContext;
    ctx->randReset(2);  // registers start random: the reset must clear the valid pipeline
    ctx->randSeed((int)(seed % 2147483647ULL) + 1);
    ctx->commandArgs(1, argv);
    {model}* top = new {model}{{ctx, "dut"}};

    top->ce = 1;
    top->valid_in = 0;
    top->rst = 1;
    set_inputs(top, in.data());
    for (int i = 0; i < 2; ++i) {{  // GAPS: junk with valid_in=1, which the reset must swallow
        if (gaps && n > 0) {{
            top->valid_in = 1;
            set_inputs(top, &in[(size_t)(rng() % (uint64_t)n_rows) * N_IN]);
        }}
        tick(top);
    }}
    top->rst = 0;

    const long delay = LATENCY > 0 ? LATENCY - 1 : 0;  // enabled clocks from capture to output
    const long max_cycles = 64 * (n_rows * SPACING + LATENCY + 16);
    // sent: rows accepted; done: results whose last row was accepted (at enabled clock sent_at[])
    long sent = 0, done = 0, got = 0, cycles = 0, enabled = 0, stop_at = n == 0 ? LATENCY + 2 : -1;
    long bad = 0, first_bad = -1, first_bad_latency = 0, hold = 0;  // hold: enabled clocks before the next row
    while (!(stop_at >= 0 && enabled >= stop_at) && cycles < max_cycles && !ctx->gotFinish()) {{
        const bool more = sent < n_rows && hold == 0;
        bool ce = true, valid = more;
        if (gaps) {{
            const uint64_t r = rng();
            ce = (r & 7) != 0;
            valid = more && ((r >> 3) & 3) != 0;
        }}
        if (valid) set_inputs(top, &in[(size_t)sent * N_IN]);
        else if (gaps && n > 0) set_inputs(top, &in[(size_t)(rng() % (uint64_t)n_rows) * N_IN]);
        top->ce = ce;
        top->valid_in = valid;
        top->clk = 0;
        top->eval();
        const bool early = LATENCY == 0 && ce && top->valid_out;  // combinational: read before the edge
        if (early) get_outputs(top, sample.data());
        top->clk = 1;
        top->eval();
        ++cycles;
        if (!ce) continue;
        ++enabled;
        if (hold > 0) --hold;
        if (valid) hold = SPACING - 1;
        if (valid && ++sent % BEATS == 0) sent_at[done++] = enabled;
        if (sent == n_rows && stop_at < 0) stop_at = enabled + LATENCY + 2;
        if (!(LATENCY == 0 ? early : (bool)top->valid_out)) continue;
        if (LATENCY > 0) get_outputs(top, sample.data());
        const long lat = got < done ? enabled - sent_at[got] : -1;
        if (lat != delay) {{
            if (first_bad < 0) {{ first_bad = got; first_bad_latency = lat; }}
            ++bad;
        }}
        if (got < n) std::memcpy(&out[(size_t)got * N_OUT], sample.data(), N_OUT * sizeof(int64_t));
        ++got;
    }}
    top->final();
    delete top;
    delete ctx;

    int64_t stats[STATS_WORDS] = {{got, cycles, enabled, bad, first_bad, first_bad_latency, BEATS, 0}};
    FILE* g = std::fopen(argv[2], "wb");
    const size_t rows = (size_t)(got < n ? got : n);
    if (!g || std::fwrite(stats, sizeof(int64_t), STATS_WORDS, g) != (size_t)STATS_WORDS
        || std::fwrite(out.data(), sizeof(int64_t), rows * N_OUT, g) != rows * N_OUT) {{
        std::fprintf(stderr, "cannot write %s\n", argv[2]);
        return 4;
    }}
    std::fclose(g);
    return 0;
}}
'''
