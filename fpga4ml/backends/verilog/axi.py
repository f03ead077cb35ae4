"""AXI4-Stream wrapper of the Verilog back end's top module (config ``Model: {Interface: 'axi_stream'}``).

`write()` then adds ``<project>_axis.v``: module ``<project>_axis`` around the design ``<project>``
(which keeps its clk/rst/ce/valid ports, so ``predict(sim='rtl')`` is unchanged), with

    aclk, aresetn                            clock, active-low reset
    s_axis_tdata/tvalid/tready/tlast         one input vector per beat (stream architecture: one pixel)
    m_axis_tdata/tvalid/tready/tlast         one output vector per beat (stream architecture: one per image)

TDATA packs the design's buses as its ports do: the inputs (outputs) in manifest order from bit 0,
each element of W bits at [k*W +: W] (two's complement), zero-padded to a multiple of 8 bits.

A design that takes a vector every II > 1 clocks (ReuseFactor folding, a static recurrent layer:
manifest 'ii') gets a countdown: after each accepted beat s_axis_tready stays low for II - 1
clocks of the design (clocks it advances), so the design sees a valid_in at most every II clocks,
its valid-every-II contract. A stream design with folded Conv layers gets the same countdown per
pixel (manifest stream.interval).

Flow control: a result the consumer does not take at once goes into a one-entry skid register,
and the design's clock enable (and s_axis_tready) is ``~skid_valid``: the whole pipeline holds
while a result waits (backpressure), and neither depends on m_axis_tready combinationally (the
enable of a large pipeline stays a registered signal). A missing input beat (tvalid low) is a
bubble in the pipeline. Throughput is one beat per clock while the consumer is ready. TLAST of an output is the TLAST of the input beat that produced it (unrolled); in the
stream architecture every output beat (one image) has TLAST set and the input TLAST is not used.
manifest.json gets an ``axi_stream`` entry (top, file, TDATA widths, beats per output).

`simulate()` checks the wrapper with Verilator: random TVALID gaps from the source, random
TREADY from the sink, AXI4-Stream stability checks (a stalled output must hold TVALID, TDATA and
TLAST), and returns the output mantissas and TLAST flags.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ... import cache, procs
from .harness import parse_manifest

#: Model 'Interface' of the Verilog back end: the plain ports, or the AXI4-Stream wrapper besides them
VERILOG_INTERFACES = ('none', 'axi_stream')


def model_interface(config: dict | None) -> str:
    """The Verilog back end's config['Model']['Interface']: 'none' (default) or 'axi_stream' (ConfigError otherwise)."""
    from ...config import ConfigError

    value = dict((config or {}).get('Model') or {}).get('Interface', 'none')
    if isinstance(value, str) and value.lower() in VERILOG_INTERFACES:
        return value.lower()
    raise ConfigError(f"config['Model']: Interface={value!r} is not supported by the Verilog back end; "
                      f'accepted: {list(VERILOG_INTERFACES)}')


def padded(bits: int) -> int:
    """TDATA width for `bits` of payload: the next multiple of 8 (AXI4-Stream TDATA is whole bytes)."""
    return max(8, 8 * -(-bits // 8))


def _bus_bits(entries: list[dict]) -> int:
    return sum(e['elements'] * e['width'] for e in entries)


def axis_module(top: str, info: dict) -> str:
    """The Verilog text of module `<top>_axis` for the design described by manifest `info`."""
    stream = info.get('architecture') == 'stream'
    latency = int(info['latency'])
    in_bits, out_bits = _bus_bits(info['inputs']), _bus_bits(info['outputs'])
    s_bits, m_bits = padded(in_bits), padded(out_bits)
    lines = [f'// {top}_axis: AXI4-Stream wrapper of {top} (written by fpga4ml; see fpga4ml/backends/verilog/axi.py).',
             f'// s_axis: {"one pixel" if stream else "one input vector"} per beat, {in_bits} of {s_bits} TDATA bits; '
             f'm_axis: one output vector per beat, {out_bits} of {m_bits} bits.',
             '// The design advances while the output skid register is empty; a result the consumer does not',
             '// take goes into it and holds the design until taken (no path from m_axis_tready to the clock',
             '// enable or s_axis_tready). TLAST ' +
             ('is set on every output beat (one image).' if stream else 'follows its input beat.'),
             f'module {top}_axis (', '  input  wire aclk,', '  input  wire aresetn,',
             f'  input  wire [{s_bits - 1}:0] s_axis_tdata,', '  input  wire s_axis_tvalid,',
             '  output wire s_axis_tready,', '  input  wire s_axis_tlast,',
             f'  output wire [{m_bits - 1}:0] m_axis_tdata,', '  output wire m_axis_tvalid,',
             '  input  wire m_axis_tready,', '  output wire m_axis_tlast', ');',
             '  reg running;  // low in reset and the clock after it: no beat is accepted',
             '  always @(posedge aclk) running <= aresetn;',
             '  reg skid_valid;', f'  reg [{m_bits - 1}:0] skid_data;', '  reg skid_last;',
             '  wire valid_out;', '  wire advance = ~skid_valid;']
    # the design takes a vector every II clocks (a stream design with folded layers: a pixel every
    # stream.interval clocks): hold tready low in between
    gap, what = parse_manifest(info).spacing, 'pixel' if stream else 'vector'
    if gap > 1:
        bits = max((gap - 1).bit_length(), 1)
        lines += [f'  reg [{bits - 1}:0] wait_count;  // advancing clocks before the next {what} '
                  f'({"II" if what == "vector" else "pixel interval"} = {gap})',
                  "  wire can_take = wait_count == 0;",
                  '  assign s_axis_tready = advance & running & can_take;',
                  '  always @(posedge aclk) begin',
                  f"    if (!aresetn) wait_count <= {bits}'d0;",
                  f"    else if (advance) wait_count <= s_axis_tvalid & s_axis_tready ? {bits}'d{gap - 1} : "
                  f"(can_take ? {bits}'d0 : wait_count - {bits}'d1);",
                  '  end']
        accept = 's_axis_tvalid & running & can_take'
    else:
        lines.append('  assign s_axis_tready = advance & running;')
        accept = 's_axis_tvalid & running'

    ports, offset = [], 0
    for e in info['inputs']:
        n = e['elements'] * e['width']
        ports.append(f'.{e["port"]}(s_axis_tdata[{offset + n - 1}:{offset}])')
        offset += n
    unused = [f's_axis_tdata[{s_bits - 1}:{in_bits}]'] if s_bits > in_bits else []
    outs = []
    for e in info['outputs']:
        n = e['elements'] * e['width']
        lines.append(f'  wire [{n - 1}:0] {e["port"]};')
        ports.append(f'.{e["port"]}({e["port"]})')
        outs.insert(0, e['port'])
    pad = [f"{m_bits - out_bits}'b0"] if m_bits > out_bits else []
    lines += [f'  {top} core (.clk(aclk), .rst(~aresetn), .ce(advance), .valid_in({accept}),',
              '    .valid_out(valid_out), ' + ', '.join(ports) + ');',
              f'  wire [{m_bits - 1}:0] core_data = {{{", ".join(pad + outs)}}};', '  wire core_last;']
    if stream:
        lines.append("  assign core_last = 1'b1;")
        unused.append('s_axis_tlast')
    elif latency == 0:
        lines.append('  assign core_last = s_axis_tlast;')
    else:
        shift = f'{{last_sr[{latency - 2}:0], s_axis_tlast}}' if latency > 1 else 's_axis_tlast'
        lines += [f'  reg [{latency - 1}:0] last_sr;  // TLAST travels with its vector',
                  f'  always @(posedge aclk) if (advance) last_sr <= {shift};',
                  f'  assign core_last = last_sr[{latency - 1}];']
    lines += ['  always @(posedge aclk) begin',
              "    if (!aresetn) skid_valid <= 1'b0;",
              "    else if (skid_valid) begin if (m_axis_tready) skid_valid <= 1'b0; end",
              '    else if (valid_out && !m_axis_tready) begin',
              "      skid_valid <= 1'b1;", '      skid_data <= core_data;', '      skid_last <= core_last;', '    end',
              '  end',
              '  assign m_axis_tvalid = skid_valid | valid_out;',
              '  assign m_axis_tdata = skid_valid ? skid_data : core_data;',
              '  assign m_axis_tlast = skid_valid ? skid_last : core_last;']
    if unused:
        lines.append(f"  wire unused_axis = &{{1'b0, {', '.join(unused)}, 1'b0}};")
    return '\n'.join(lines + ['endmodule', ''])


def add_axi_stream(files: dict[str, str], info: dict, top: str) -> None:
    """Add `<top>_axis.v` to the project files and its description to the manifest `info` (in place)."""
    name = f'{top}_axis.v'
    files[name] = axis_module(top, info)
    stream = info.get('architecture') == 'stream'
    info['axi_stream'] = {
        'top': f'{top}_axis', 'file': name,
        's_tdata_bits': padded(_bus_bits(info['inputs'])), 'm_tdata_bits': padded(_bus_bits(info['outputs'])),
        'input_beats_per_output': int(info['stream']['pixels']) if stream else 1,
        'tlast': 'every output beat' if stream else 'follows the input beat',
    }


# ------------------------------------------------------------------------------------------- simulation
def _width_type(bits: int) -> str:
    return 'wide' if bits > 64 else 'narrow'


def harness_source(top: str, s_bits: int, m_bits: int) -> str:
    """C++ main() ``sim IN OUT N SEED GAP STALL``: drives N input beats, collects the output beats.

    IN: N rows of (ceil(s_bits/32) little-endian 32-bit words, TLAST). The source raises TVALID
    for a waiting beat with probability 1 - GAP/100 per clock (junk TDATA while TVALID is low), the
    sink raises TREADY with probability 1 - STALL/100 per clock. OUT: 4 uint32 (output beats,
    stability violations, clocks, 0) then per output beat its words and TLAST.
    """
    nw_in, nw_out = -(-s_bits // 32), -(-m_bits // 32)
    top_mask = f'0x{(1 << (s_bits - 32 * (nw_in - 1))) - 1:x}U'  # the used bits of the last input word
    if s_bits > 64:
        set_in = (f'for (int k = 0; k < {nw_in}; k++) top->s_axis_tdata[k] = k == {nw_in - 1} ? w[k] & {top_mask} '
                  ': w[k];')
    elif s_bits > 32:
        set_in = f'top->s_axis_tdata = ((uint64_t) (w[1] & {top_mask}) << 32) | w[0];'
    else:
        set_in = f'top->s_axis_tdata = w[0] & {top_mask};'
    if m_bits > 64:
        get_out = f'for (int k = 0; k < {nw_out}; k++) w[k] = top->m_axis_tdata[k];'
    else:
        get_out = 'uint64_t v = top->m_axis_tdata; w[0] = (uint32_t) v; w[1] = (uint32_t) (v >> 32);'
    return f'''// AXI4-Stream harness of {top}_axis (written by fpga4ml)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "verilated.h"
#include "Vaxis.h"

static uint64_t state;
static uint32_t rnd() {{
    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
    return (uint32_t) (state >> 11);
}}
static const int NW_IN = {nw_in}, NW_OUT = {nw_out};

static void set_in(Vaxis *top, const uint32_t *w) {{ {set_in} }}
static void get_out(Vaxis *top, uint32_t *w) {{ {get_out} }}

int main(int argc, char **argv) {{
    if (argc != 8) {{ std::fprintf(stderr, "usage: sim IN OUT N SEED GAP STALL INTERVAL\\n"); return 2; }}
    const long n = std::atol(argv[3]);
    state = std::strtoull(argv[4], nullptr, 10) * 2654435761ULL + 88172645463325252ULL;
    const unsigned gap = std::atoi(argv[5]), stall = std::atoi(argv[6]);
    std::vector<uint32_t> in(n * (NW_IN + 1) + 2);
    FILE *f = std::fopen(argv[1], "rb");
    if (!f || std::fread(in.data(), 4, n * (NW_IN + 1), f) != (size_t) (n * (NW_IN + 1))) return 3;
    std::fclose(f);
    VerilatedContext ctx;
    Vaxis *top = new Vaxis(&ctx);
    std::vector<uint32_t> out;
    uint32_t junk[NW_IN + 2], word[NW_OUT + 2], held[NW_OUT + 2];
    long next = 0, got = 0, clocks = 0, violations = 0;
    bool offered = false, waiting = false;
    unsigned held_last = 0;
    top->aclk = 0; top->aresetn = 0; top->s_axis_tvalid = 0; top->m_axis_tready = 0; top->s_axis_tlast = 0;
    for (int c = 0; c < 4; c++) {{ top->aclk = 1; top->eval(); top->aclk = 0; top->eval(); }}
    top->aresetn = 1;
    const long interval = std::atol(argv[7]);  // clocks the design needs per input beat (II, or a stream's pixel interval)
    const long limit = 1000 + 200 * (n + 10) * interval * (1 + stall) * (1 + gap) / 100;
    while (got < n && clocks < limit) {{
        if (!offered && next < n && rnd() % 100 >= gap) offered = true;
        if (offered) {{
            set_in(top, &in[next * (NW_IN + 1)]);
            top->s_axis_tlast = in[next * (NW_IN + 1) + NW_IN] & 1;
        }} else {{
            for (int k = 0; k < NW_IN + 2; k++) junk[k] = rnd();
            set_in(top, junk);
            top->s_axis_tlast = junk[0] & 1;
        }}
        top->s_axis_tvalid = offered;
        top->m_axis_tready = rnd() % 100 >= stall;
        top->eval();
        if (top->m_axis_tvalid) get_out(top, word);
        if (waiting) {{  // the previous beat was not taken: it must still be there, unchanged
            bool same = top->m_axis_tvalid && top->m_axis_tlast == held_last;
            for (int k = 0; k < NW_OUT && same; k++) same = word[k] == held[k];
            violations += !same;
        }}
        const bool in_fire = offered && top->s_axis_tready;
        const bool out_fire = top->m_axis_tvalid && top->m_axis_tready;
        if (out_fire) {{
            out.insert(out.end(), word, word + NW_OUT);
            out.push_back(top->m_axis_tlast);
            got++;
        }}
        waiting = top->m_axis_tvalid && !top->m_axis_tready;
        if (waiting) {{ for (int k = 0; k < NW_OUT; k++) held[k] = word[k]; held_last = top->m_axis_tlast; }}
        top->aclk = 1; top->eval(); top->aclk = 0; top->eval();
        clocks++;
        if (in_fire) {{ next++; offered = false; }}
    }}
    top->final();
    delete top;
    FILE *o = std::fopen(argv[2], "wb");
    uint32_t head[4] = {{(uint32_t) got, (uint32_t) violations, (uint32_t) clocks, 0}};
    std::fwrite(head, 4, 4, o);
    std::fwrite(out.data(), 4, out.size(), o);
    std::fclose(o);
    return 0;
}}
'''


class AxisSimulator:
    """A built Verilator simulation of `<top>_axis`; run(beats, tlast) returns the output beats."""

    def __init__(self, executable: Path, entry: dict, info: dict) -> None:
        self.executable, self.entry, self.info = executable, entry, info
        #: clocks the design needs per input beat: a stream design's pixel interval, else its II (the
        #: spacing the Verilator harness of the design itself uses)
        self.interval = parse_manifest(info).spacing

    def run(self, inputs: list[np.ndarray], tlast: np.ndarray, seed: int = 0, gap: int = 30,
            stall: int = 30) -> tuple[list[np.ndarray], np.ndarray, dict]:
        """Send the beats (one int mantissa array per input port, shape (beats, elements)) with their TLAST.

        Returns (one mantissa array per output port, shape (beats_out, elements), the output TLAST
        flags, {'clocks', 'violations'}); RuntimeError when fewer outputs than expected came out.
        """
        beats = len(tlast)
        expected = beats // self.entry['input_beats_per_output']
        rows = pack(inputs, self.info['inputs'], self.entry['s_tdata_bits'], tlast)
        with procs.sigterm_as_exit(), tempfile.TemporaryDirectory(prefix='fpga4ml-axis-') as tmp:
            src, dst = Path(tmp) / 'in.bin', Path(tmp) / 'out.bin'
            rows.tofile(src)
            proc = procs.run([str(self.executable), str(src), str(dst), str(beats), str(seed), str(gap), str(stall),
                              str(self.interval)])
            if proc.returncode != 0:
                raise RuntimeError(f'AXI4-Stream simulation failed (exit {proc.returncode}): {proc.stderr[-2000:]}')
            raw = np.fromfile(dst, dtype=np.uint32)
        got, violations, clocks = int(raw[0]), int(raw[1]), int(raw[2])
        if got != expected:
            raise RuntimeError(f'AXI4-Stream simulation: {got} of {expected} output beats came out in {clocks} clocks')
        nw = -(-self.entry['m_tdata_bits'] // 32)
        data = raw[4:].reshape(got, nw + 1)
        return unpack(data[:, :nw], self.info['outputs']), data[:, nw].astype(bool), \
            {'clocks': clocks, 'violations': violations}


def pack(inputs: list[np.ndarray], entries: list[dict], bits: int, tlast: np.ndarray) -> np.ndarray:
    """Rows of 32-bit TDATA words (elements packed from bit 0, port after port) plus TLAST, as uint32."""
    nw = -(-bits // 32)
    rows = np.zeros((len(tlast), nw + 1), dtype=np.uint32)
    for r in range(len(tlast)):
        value, offset = 0, 0
        for a, e in zip(inputs, entries):
            mask = (1 << e['width']) - 1
            for m in np.asarray(a[r]).reshape(-1).tolist():
                value |= (int(m) & mask) << offset
                offset += e['width']
        rows[r, :nw] = [(value >> (32 * k)) & 0xFFFFFFFF for k in range(nw)]
        rows[r, nw] = int(bool(tlast[r]))
    return rows


def unpack(words: np.ndarray, entries: list[dict]) -> list[np.ndarray]:
    """Output TDATA words -> one (beats, elements) int64 mantissa array per output port."""
    outs = [np.zeros((len(words), e['elements']), dtype=np.int64) for e in entries]
    for r, row in enumerate(words.tolist()):
        value = sum(int(w) << (32 * k) for k, w in enumerate(row))
        for out, e in zip(outs, entries):
            w = e['width']
            for k in range(e['elements']):
                m = value & ((1 << w) - 1)
                out[r, k] = m - (1 << w) if e['signed'] and m >> (w - 1) else m
                value >>= w
    return outs


def compile_axis(directory: str | os.PathLike, progress: bool = False) -> AxisSimulator:
    """Build (or reuse from the RTL cache) the Verilator simulation of the written `<top>_axis` wrapper."""
    from .verilator import (_build_options, _restore_runtime, _run, _runtime_cache, _save_runtime, _tail,
                            find_verilator, rtl_cache_dir)

    directory = Path(directory)
    info = json.loads((directory / 'manifest.json').read_text())
    entry = info.get('axi_stream')
    if entry is None:
        raise ValueError(f"{directory}: the design has no AXI4-Stream wrapper; set config['Model']['Interface'] = "
                         "'axi_stream' and write it again")
    names = list(info['files']) + [entry['file']]
    sources = {name: (directory / name).read_bytes() for name in names}
    harness = harness_source(info['top'], entry['s_tdata_bits'], entry['m_tdata_bits'])
    tool = find_verilator()
    flags, make_vars = _build_options(None)  # as the other RTL simulations: their compiled runtime is reused
    digest = hashlib.sha256(('\0'.join([tool.version, harness, *flags, *make_vars])).encode())
    for name in sorted(sources):
        digest.update(name.encode() + b'\0' + sources[name] + b'\0')

    def build(staged: Path) -> None:
        work = staged.parent
        for name, data in sources.items():
            (work / 'src' / name).parent.mkdir(parents=True, exist_ok=True)
            (work / 'src' / name).write_bytes(data)
        (work / 'harness.cpp').write_text(harness)
        verilate = [str(tool.executable), *flags, '--top-module', entry['top'], '--prefix', 'Vaxis',
                    '--Mdir', str(work / 'obj'), *[str(work / 'src' / n) for n in names if n.endswith('.v')],
                    str(work / 'harness.cpp')]
        make = ['make', '-C', str(work / 'obj'), '-f', 'Vaxis.mk', '-j2', *make_vars]
        runtime = _runtime_cache(root, tool, flags, make_vars)
        reused = False
        for cmd in (verilate, make):
            if cmd is make:  # the compiled Verilator runtime, shared with the other RTL simulations
                reused = _restore_runtime(runtime, work / 'obj')
            proc = _run(cmd, work, tool.env())
            if proc.returncode != 0:
                raise RuntimeError(f'building the AXI4-Stream simulation of {entry["top"]!r} failed:\n'
                                   f'{_tail(proc.stdout + proc.stderr)}')
        if not reused:
            _save_runtime(runtime, work / 'obj')
        staged.mkdir()
        os.replace(work / 'obj' / 'Vaxis', staged / 'sim')

    root = rtl_cache_dir()
    folder = cache.ensure(root / f'axis-{digest.hexdigest()[:20]}', build,
                          f'the AXI4-Stream simulation of {entry["top"]!r}')
    return AxisSimulator(folder / 'sim', entry, info)


def simulate(model, x, tlast=None, seed: int = 0, gap: int = 30, stall: int = 30):
    """Write `model`'s Verilog with the wrapper, stream batch `x` through it; returns (outputs, tlast, stats).

    Outputs are float arrays per graph output, as predict(); `tlast` defaults to a random pattern.
    """
    from .design import write

    graph = model.graph
    root = write(model)
    sim = compile_axis(root)
    xs = model.emulator._as_inputs(x)
    per_output = sim.entry['input_beats_per_output']
    mantissas = [graph[n].result_type.quantize(a).reshape(len(a) * per_output, -1) for n, a in zip(graph.inputs, xs)]
    beats = len(mantissas[0])
    if tlast is None:
        tlast = np.random.default_rng(seed).random(beats) < 0.2
    outs, last, stats = sim.run(mantissas, np.asarray(tlast, dtype=bool), seed, gap, stall)
    floats = [graph[n].result_type.to_float(m).reshape((len(m),) + graph[n].shape) for n, m in zip(graph.outputs, outs)]
    return floats, last, stats
