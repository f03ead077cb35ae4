"""The HLS project written by `model.write()`: firmware, weights, testbench, C-sim bridge, build scripts.

Layout of ``output_dir`` (deterministic: the same model gives byte-identical files; no absolute
paths, no timestamps)::

    firmware/defines.h            one typedef per tensor, weight and exact intermediate (ap_fixed)
    firmware/<project>.h          the top function's declaration
    firmware/<project>.cpp        one function per layer and the top function
    firmware/weights/<layer>.h    weights and tables as integer mantissa arrays
    tb/<project>_test.cpp         testbench: tb_data/tb_input_features.dat -> tb_data/csim_results.log,
                                  compared exactly against tb_data/tb_output_predictions.dat
    tb_data/                      inputs and emulator outputs of a few hundred samples
    <project>_bridge.cpp          extern "C" <project>_predict(x, y, n) for fpga4ml's C simulation
    build_prj.tcl, build_prj_vivado.tcl, vivado_synth.tcl   (see tcl.py)

Several inputs or outputs: per sample, the inputs (outputs) are concatenated in graph order, each
flattened in C order, in the data files and in the bridge's arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...ir import Graph, Node
from ...naming import check_project_name, comment_line
from .emit import WEIGHTS_NOTE, Context, emit_layer, label, n_writes, new_context, positions, stream_kind
from .emit_rnn import side_outputs, written_by_producer

#: samples written to tb_data/ for the vendor C simulation
TB_SAMPLES = 300
TB_SEED = 0

#: the C++ testbench helper reading the next non-empty line of numbers (also the accelerator testbench's)
READ_VALUES_CPP = """static bool read_values(std::ifstream &file, std::vector<double> &values) {
    std::string line;
    while (std::getline(file, line)) {
        std::istringstream text(line);
        values.clear();
        double v;
        while (text >> v) values.push_back(v);
        if (!values.empty()) return true;
    }
    return false;
}
"""


def write(model) -> Path:
    """Write the HLS project of `model` into model.output_dir; returns that directory."""
    return write_files(Path(model.output_dir), project_files(model))


def write_files(root: Path, files: dict[str, str]) -> Path:
    """Write {relative path: text} under root (unchanged files keep their mtime); drop stale weight headers."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    weights_dir = root / 'firmware' / 'weights'
    for stale in sorted(weights_dir.glob('*.h')):  # weights of layers this model no longer has
        if f'firmware/weights/{stale.name}' not in files:
            stale.unlink()
    return root


def project_files(model) -> dict[str, str]:
    """Every file of the project as {relative path: text}."""
    files = source_files(model)
    files.update(tb_data_files(model))
    from .tcl import build_scripts

    files.update(build_scripts(model.project_name, model.part, model.clock_period,
                               model.settings.get('clock_uncertainty')))
    return files


def source_files(model) -> dict[str, str]:
    """The C++ sources: firmware, weights, testbench and bridge."""
    graph: Graph = model.graph
    graph.validate()
    project = check_project_name(model.project_name)
    stream = model.io_type == 'io_stream'
    ctx = new_context(graph, {project, f'{project}_predict', f'{project}_io_sizes'}, model.backend, stream,
                      intervals=getattr(model, 'intervals', None))  # exact bounds: narrower intermediate types
    layers = [emit_layer(ctx, node) for node in graph if node.op != 'Input']
    top = TopFunction(ctx, graph, project, stream)
    guard = f'FPGA4ML_{project.upper()}'
    files = {
        'firmware/defines.h': defines_h(ctx, project, stream, top),
        f'firmware/{project}.h': (
            f'// {project}.h: the top function of the fpga4ml model "{project}" ({model.io_type}).\n'
            f'#ifndef {guard}_H_\n#define {guard}_H_\n\n#include "defines.h"\n\n'
            f'{top.port_comment()}{top.declaration()};\n\n#endif\n'),
    }
    for layer, arrays in ctx.arrays.items():
        files[f'firmware/weights/{layer}.h'] = (
            f'// weights/{layer}.h: constants of layer {layer} (written by fpga4ml).\n'
            + ''.join('// ' + line + '\n' for line in WEIGHTS_NOTE.split('\n')) + '\n' + '\n'.join(arrays))
    includes = ''.join(f'#include "weights/{layer}.h"\n' for layer in ctx.arrays)
    files[f'firmware/{project}.cpp'] = (
        f'// {project}.cpp: the fpga4ml model "{project}" as HLS C++ ({model.io_type}, written by fpga4ml).\n'
        '// Each layer function computes exactly what fpga4ml\'s emulator computes (docs/semantics.md):\n'
        '// ap_fixed + - * are exact, and every assignment to a narrower type applies its rounding and\n'
        '// overflow modes.\n'
        f'#include "{project}.h"\n\n{includes}\n' + '\n'.join(layers) + '\n' + top.definition())
    files[f'{project}_bridge.cpp'] = bridge_cpp(top, project)
    files[f'tb/{project}_test.cpp'] = testbench_cpp(top, project)
    return files


def defines_h(ctx: Context, project: str, stream: bool, top: 'TopFunction') -> str:
    """defines.h: the vendor headers, from_bits() and one typedef per tensor, weight and intermediate."""
    guard = f'FPGA4ML_{project.upper()}'
    width = max((len(f'typedef {cpp} {name};') for name, cpp, _ in ctx.typedefs), default=0)
    typedefs = '\n'.join(f'{f"typedef {cpp} {name};":<{width}}  // {comment}' for name, cpp, comment in ctx.typedefs)
    port_types = ctx.packets if stream else ctx.tensor_types  # io_stream ports carry packets, as hls4ml's
    aliases = ''
    if len(top.inputs) == 1:
        aliases += f'typedef {port_types[top.inputs[0].name]} input_t;\n'
    if len(top.outputs) == 1:
        aliases += f'typedef {port_types[top.outputs[0][0].name]} result_t;\n'
    packets = ''
    if stream:
        width = max(len(f'typedef {cpp} {name};') for name, cpp, _ in ctx.packet_typedefs)
        packets = (
            '\n// io_stream: one FIFO transfer carries one position of a tensor, the values of its last axis\n'
            '// (a pixel\'s channels; a flat vector is a single transfer), as hls4ml\'s nnet::array.\n'
            'template <class T, int N> struct packet {\n    T data[N];\n};\n\n'
            + '\n'.join(f'{f"typedef {cpp} {name};":<{width}}  // {comment}'
                        for name, cpp, comment in ctx.packet_typedefs)
            + '\n')
    return (
        f'// defines.h: the fixed-point types of "{project}" (written by fpga4ml).\n'
        f'#ifndef {guard}_DEFINES_H_\n#define {guard}_DEFINES_H_\n\n'
        '#include <stdint.h>\n\n#include "ap_fixed.h"\n#include "ap_int.h"\n'
        + ('#include "hls_stream.h"\n' if stream else '') + '\n'
        '// from_bits<T>(m): the value of type T whose integer mantissa is m (value = m * 2^-F of T),\n'
        '// by assigning the raw bits (the member V of ap_int/ap_fixed, also used by hls4ml\'s templates;\n'
        '// v.range() = m is the same, 1.5x slower in C simulation).\n'
        + ''.join('// ' + line + '\n' for line in WEIGHTS_NOTE.split('\n')) +
        'template <class T> inline T from_bits(long long m) {\n    T v;\n    v.V = m;\n    return v;\n}\n\n'
        '// One type per tensor (<layer>_t), weight and exact intermediate.\n'
        f'{typedefs}\n{packets}\n// hls4ml-style names of the input and output types\n{aliases}\n#endif\n')


#: depth of a FIFO from a layer with one reader to a layer with one input (see TopFunction.plan_streams)
CHAIN_DEPTH = 2


class TopFunction:
    """The top function: ports, local tensors or FIFOs, and the calls of the layer functions."""

    def __init__(self, ctx: Context, graph: Graph, project: str, stream: bool) -> None:
        self.ctx, self.graph, self.project, self.stream = ctx, graph, project, stream
        self.inputs: list[Node] = [graph[name] for name in graph.inputs]
        #: (node, port name) per graph output, in graph order
        self.outputs: list[tuple[Node, str]] = [(graph[name], ctx.names.new(f'{ctx.idents[name]}_out'))
                                                for name in graph.outputs]
        self.reuse = max([int(n.config.get('ReuseFactor', 1)) for n in graph if n.op in ('Dense', 'Conv')], default=1)

    # ------------------------------------------------------------------ ports
    def ports(self) -> list[tuple[str, str, int]]:
        """(name, C type, element count) of every port: inputs then outputs (io_stream: the packet type)."""
        t = self.ctx.packets if self.stream else self.ctx.tensor_types
        return ([(self.ctx.idents[n.name], t[n.name], n.size) for n in self.inputs]
                + [(name, t[n.name], n.size) for n, name in self.outputs])

    def declaration(self) -> str:
        """The top function's signature."""
        if self.stream:
            args = [f'hls::stream<{ctype}> &{name}' for name, ctype, _ in self.ports()]
        else:
            args = [f'{ctype} {name}[{size}]' for name, ctype, size in self.ports()]
        return f'void {self.project}({", ".join(args)})'

    def port_comment(self) -> str:
        """A comment listing the ports."""
        lines = ['// Ports, in graph order (inputs, then outputs):']
        nodes = self.inputs + [n for n, _ in self.outputs]
        for (name, ctype, size), node in zip(self.ports(), nodes):
            lines.append(f'//   {name}: {size} values of {self.ctx.tensor_types[node.name]}' + (
                f', {positions(node.shape)} transfers of {ctype} ({node.shape[-1]} values each, C order)'
                if self.stream else ''))
        return '\n'.join(lines) + '\n'

    # ------------------------------------------------------------------ definition
    def definition(self) -> str:
        """The top function's definition (with its io_stream processes before it)."""
        return self.stream_definition() if self.stream else self.parallel_definition()

    def parallel_definition(self) -> str:
        ctx, idents = self.ctx, self.ctx.idents
        names = [name for name, _, _ in self.ports()]
        lines = ['// ---- top function (io_parallel)', self.declaration() + ' {']
        lines += [f'    #pragma HLS ARRAY_PARTITION variable={name} complete' for name in names]
        lines.append(f'    #pragma HLS INTERFACE ap_vld port={",".join(names)}')
        if ctx.folded:
            folded = ', '.join(label(self.graph[name]) for name in sorted(ctx.folded))
            lines.append(comment_line(f'    // {folded}: not fully unrolled (Resource, or a Conv computing '
                                      'its pixels in several steps): the layers run as a dataflow pipeline'))
            lines.append('    #pragma HLS DATAFLOW')
        else:
            lines.append(f'    // one sample every {self.reuse} cycles (the largest ReuseFactor)')
            lines.append(f'    #pragma HLS PIPELINE II={self.reuse}')
        direct = {n.name: name for n, name in self.outputs
                  if not self.graph.consumers(n.name) and [o.name for o, _ in self.outputs].count(n.name) == 1
                  and n.op != 'Input'}
        arrays = {n.name: idents[n.name] for n in self.inputs}
        for node in self.graph:
            if node.op == 'Input' or written_by_producer(self.graph, node):
                continue  # a Select its producer writes got its array with the producer's call
            sides = side_outputs(self.graph, node)
            for written in [node] + sides:
                if written.name in direct:
                    arrays[written.name] = direct[written.name]
                else:
                    arrays[written.name] = ctx.names.new(f'{idents[written.name]}_y')
                    lines += ['', f'    {ctx.tensor_types[written.name]} {arrays[written.name]}[{written.size}];',
                              f'    #pragma HLS ARRAY_PARTITION variable={arrays[written.name]} complete']
            args = [arrays[i] for i in node.inputs] + [arrays[n.name] for n in [node] + sides]
            lines.append(f'    {idents[node.name]}({", ".join(args)});')
        for node, name in self.outputs:
            if direct.get(node.name) != name:
                lines += [f'    for (int i = 0; i < {node.size}; i++) {{', '        #pragma HLS UNROLL',
                          f'        {name}[i] = {arrays[node.name]}[i];', '    }']
        return '\n'.join(lines + ['}', ''])

    def plan_streams(self) -> None:
        """FIFOs of io_stream: one per edge (producer -> consumer input), plus the output ports.

        Sets `writes` (node -> the FIFOs or output ports it writes), `reads` (node -> the FIFOs it
        reads) and `fifos` ((name, packet type, depth) of every internal FIFO). A graph input read by
        exactly one layer (and not itself an output) is read from its port directly.

        Depths, in packets (no co-simulation needed): an edge from a layer with one reader to a
        layer with one input is a chain link, CHAIN_DEPTH deep: such a link cannot deadlock at any
        depth (its writer waits only for its reader, which waits for nothing else), and two
        packets let both run at full rate. Every other edge (out of a fan-out, into a merge) is as
        deep as the producer's packet count: its writer never waits, so paths that fork and
        reconverge with different delays (a line buffer delays its outputs by about
        (EH - 1) rows, a whole-tensor layer by the whole tensor) cannot deadlock either.
        """
        ctx, graph = self.ctx, self.graph
        uses = {n.name: sum(c.inputs.count(n.name) for c in graph) for n in graph}
        returned = {n.name for n, _ in self.outputs}
        self.direct_inputs = {n.name for n in self.inputs if uses[n.name] == 1 and n.name not in returned}
        self.writes: dict[str, list[str]] = {n.name: [] for n in graph}
        self.reads: dict[str, list[str]] = {n.name: [] for n in graph}
        self.fifos: list[tuple[str, str, int]] = []
        for node in graph:
            if written_by_producer(graph, node):
                continue  # its producer writes its FIFOs (side_outputs): no edge into it
            for src in node.inputs:
                if src in self.direct_inputs:
                    fifo = ctx.idents[src]
                else:
                    fifo = ctx.names.new(f'{ctx.idents[src]}_to_{ctx.idents[node.name]}')
                    chain = n_writes(graph, src) == 1 and len(node.inputs) == 1
                    depth = CHAIN_DEPTH if chain else positions(graph[src].shape)
                    self.fifos.append((fifo, ctx.packets[src], depth))
                self.writes[src].append(fifo)
                self.reads[node.name].append(fifo)
        for node, port in self.outputs:
            self.writes[node.name].append(port)

    def stream_definition(self) -> str:
        ctx, idents = self.ctx, self.ctx.idents
        self.plan_streams()
        funcs, calls = [], []
        for node in self.graph:
            if node.name in self.direct_inputs:
                continue
            if written_by_producer(self.graph, node):
                continue  # written by its producer's process
            kind = 'input' if node.op == 'Input' else stream_kind(self.graph, node)
            if kind == 'line':  # emit_cnn wrote the whole stream process
                calls.append(f'    {idents[node.name]}({", ".join(self.reads[node.name] + self.writes[node.name])});')
                continue
            func = ctx.names.new(f'{idents[node.name]}_{"fanout" if kind == "input" else "stream"}')
            funcs.append(self.stream_wrapper(func, node, kind))
            reads = self.reads[node.name] or [idents[node.name]]  # an input's fan-out reads its port
            sides = [w for s in side_outputs(self.graph, node) for w in self.writes[s.name]]
            calls.append(f'    {func}({", ".join(reads + self.writes[node.name] + sides)});')
        names = [name for name, _, _ in self.ports()]
        lines = ['// ---- top function (io_stream)', self.declaration() + ' {']
        lines += [f'    #pragma HLS INTERFACE axis port={name}' for name in names]
        lines += ['    #pragma HLS DATAFLOW',
                  '    // FIFO depths in packets: 2 on a chain link (one writer, one reader with one input), the',
                  "    // producer's whole tensor out of a fan-out or into a merge (see plan_streams in writer.py):",
                  '    // no deadlock for any graph, also where a fan-out reconverges.']
        for fifo, ctype, depth in self.fifos:
            lines += [f'    hls::stream<{ctype}> {fifo}("{fifo}");',
                      f'    #pragma HLS STREAM variable={fifo} depth={depth}']
        if ctx.backend == 'Vivado':  # Vitis packs struct transfers by itself
            lines += [f'    #pragma HLS DATA_PACK variable={name}' for name in names + [f for f, _, _ in self.fifos]]
        lines += [''] + calls
        return '\n'.join(funcs) + '\n' + '\n'.join(lines + ['}', ''])

    def stream_wrapper(self, func: str, node: Node, kind: str) -> str:
        """A dataflow process around a layer function ('position': once per packet; 'tensor': on whole
        arrays) or an input's fan-out ('input': each packet copied to every reader)."""
        packets, types = self.ctx.packets, self.ctx.tensor_types
        sources = [self.graph[s] for s in node.inputs] if kind != 'input' else [node]
        n_out = len(self.writes[node.name])
        sides = side_outputs(self.graph, node)  # tensors its layer function also writes (an LSTM's final c)
        args = [f'hls::stream<{packets[s.name]}> &x{k}' for k, s in enumerate(sources)]
        args += [f'hls::stream<{packets[node.name]}> &y{k}' for k in range(n_out)]
        args += [f'hls::stream<{packets[t.name]}> &z{m}_{k}' for m, t in enumerate(sides)
                 for k in range(len(self.writes[t.name]))]
        head = {'input': f'// input {label(node)}: each packet copied to {n_out} FIFOs',
                'position': f'// layer {label(node)}: one position ({node.shape[-1]} values) at a time',
                'tensor': f'// layer {label(node)}: read whole inputs, compute, write the output to every reader'}[kind]
        lines = [comment_line(head), f'static void {func}({", ".join(args)}) {{']
        writes = [f'y{k}.write(b);' for k in range(n_out)]
        if kind != 'tensor':
            ii = self.reuse_of(node)
            body = ([f'#pragma HLS PIPELINE II={ii}'] if ii else [])
            body += [f'{packets[s.name]} a{k} = x{k}.read();' for k, s in enumerate(sources)]
            if kind == 'input':
                writes = [f'y{k}.write(a0);' for k in range(n_out)]
            else:
                data = [f'a{k}.data' for k in range(len(sources))] + ['b.data']
                body += [f'{packets[node.name]} b;', f'{self.ctx.idents[node.name]}({", ".join(data)});']
            body += writes
            lines += [f'    for (int p = 0; p < {positions(node.shape)}; p++) {{']
            lines += ['        ' + s for s in body] + ['    }']
            return '\n'.join(lines + ['}', ''])
        for k, s in enumerate(sources):
            c = s.shape[-1]
            lines += [f'    {types[s.name]} a{k}[{s.size}];', f'    for (int p = 0; p < {positions(s.shape)}; p++) {{',
                      '        #pragma HLS PIPELINE II=1', f'        {packets[s.name]} v = x{k}.read();',
                      f'        for (int c = 0; c < {c}; c++) a{k}[p * {c} + c] = v.data[c];', '    }']
        outputs = [(node, 'r', [f'y{k}' for k in range(n_out)])]
        outputs += [(t, f'r{m}', [f'z{m}_{k}' for k in range(len(self.writes[t.name]))]) for m, t in enumerate(sides)]
        lines += [f'    {types[t.name]} {r}[{t.size}];' for t, r, _ in outputs]
        call = [f'a{k}' for k in range(len(sources))] + [r for _, r, _ in outputs]
        lines.append(f'    {self.ctx.idents[node.name]}({", ".join(call)});')
        for t, r, fifos in outputs:
            c = t.shape[-1]
            lines += [f'    for (int p = 0; p < {positions(t.shape)}; p++) {{', '        #pragma HLS PIPELINE II=1',
                      f'        {packets[t.name]} b;', f'        for (int c = 0; c < {c}; c++) b.data[c] = {r}[p * {c} + c];']
            lines += [f'        {f}.write(b);' for f in fifos] + ['    }']
        return '\n'.join(lines + ['}', ''])

    @staticmethod
    def reuse_of(node: Node) -> int | None:
        """The initiation interval of a per-position process: the layer's ReuseFactor; None (not
        pipelined) for a Resource layer, whose own loop is pipelined."""
        if node.op != 'Dense':
            return 1
        if str(node.config.get('Strategy', 'Latency')).lower() == 'resource':
            return None
        return int(node.config.get('ReuseFactor', 1))

    # ------------------------------------------------------------------ one sample, from doubles
    def sample_function(self) -> str:
        """`static void run_sample(const double *x, double *y)`: the shared core of bridge and testbench."""
        types, packets = self.ctx.tensor_types, self.ctx.packets
        lines = ['// One sample: x holds the inputs in graph order (each flattened in C order), y receives',
                 '// the outputs in graph order. Assignment from double is the exact ap_fixed quantization',
                 '// (NaN becomes 0, as in fpga4ml\'s emulator); to_double() is exact up to 53 bits.',
                 'static void run_sample(const double *x, double *y) {']
        args, offset = [], 0
        for k, node in enumerate(self.inputs):
            t = types[node.name]
            if self.stream:
                c = node.shape[-1]
                lines += [f'    hls::stream<{packets[node.name]}> in{k}("in{k}");',
                          f'    for (int p = 0; p < {positions(node.shape)}; p++) {{',
                          f'        {packets[node.name]} v;', f'        for (int c = 0; c < {c}; c++) {{',
                          f'            double d = x[{offset} + p * {c} + c];',
                          f'            v.data[c] = ({t})(d == d ? d : 0.0);', '        }', f'        in{k}.write(v);',
                          '    }']
            else:
                lines += [f'    {t} in{k}[{node.size}];', f'    for (int i = 0; i < {node.size}; i++) {{',
                          f'        double v = x[{offset} + i];', f'        in{k}[i] = ({t})(v == v ? v : 0.0);',
                          '    }']
            args.append(f'in{k}')
            offset += node.size
        for k, (node, _) in enumerate(self.outputs):
            lines.append(f'    hls::stream<{packets[node.name]}> out{k}("out{k}");' if self.stream
                         else f'    {types[node.name]} out{k}[{node.size}];')
            args.append(f'out{k}')
        lines.append(f'    {self.project}({", ".join(args)});')
        offset = 0
        for k, (node, _) in enumerate(self.outputs):
            if self.stream:
                c = node.shape[-1]
                lines += [f'    for (int p = 0; p < {positions(node.shape)}; p++) {{',
                          f'        {packets[node.name]} v = out{k}.read();',
                          f'        for (int c = 0; c < {c}; c++) y[{offset} + p * {c} + c] = v.data[c].to_double();',
                          '    }']
            else:
                lines += [f'    for (int i = 0; i < {node.size}; i++) {{',
                          f'        y[{offset} + i] = out{k}[i].to_double();', '    }']
            offset += node.size
        return '\n'.join(lines + ['}', ''])

    @property
    def n_in(self) -> int:
        return sum(n.size for n in self.inputs)

    @property
    def n_out(self) -> int:
        return sum(n.size for n, _ in self.outputs)


def bridge_cpp(top: TopFunction, project: str) -> str:
    return (
        f'// {project}_bridge.cpp: fpga4ml\'s C simulation entry point (loaded with ctypes; written by fpga4ml).\n'
        f'// {project}_predict(x, y, n, threads) runs n samples in one call: sample s reads x[s * {top.n_in} ...]\n'
        f'// (the inputs in graph order, each flattened in C order) and writes y[s * {top.n_out} ...] (the\n'
        '// outputs). The samples are split over `threads` threads (the generated code is reentrant).\n'
        f'#include <thread>\n#include <vector>\n\n#include "firmware/{project}.h"\n\n' + top.sample_function() + '\n'
        f'extern "C" int {project}_io_sizes(long *n_in, long *n_out) {{\n'
        f'    *n_in = {top.n_in};\n    *n_out = {top.n_out};\n    return 0;\n}}\n\n'
        'static void run_samples(const double *x, double *y, long first, long last) {\n'
        '    for (long s = first; s < last; s++) {\n'
        f'        run_sample(x + s * {top.n_in}, y + s * {top.n_out});\n'
        '    }\n}\n\n'
        f'extern "C" int {project}_predict(const double *x, double *y, long n, int threads) {{\n'
        '    if (threads < 2 || n < 2 * threads) {\n'
        '        run_samples(x, y, 0, n);\n'
        '        return 0;\n'
        '    }\n'
        '    std::vector<std::thread> pool;\n'
        '    long chunk = (n + threads - 1) / threads;\n'
        '    for (long first = 0; first < n; first += chunk) {\n'
        '        pool.emplace_back(run_samples, x, y, first, first + chunk < n ? first + chunk : n);\n'
        '    }\n'
        '    for (std::thread &t : pool) t.join();\n'
        '    return 0;\n}\n')


def testbench_cpp(top: TopFunction, project: str) -> str:
    return f'''\
// {project}_test.cpp: testbench of the fpga4ml model "{project}" (written by fpga4ml).
// Reads tb_data/tb_input_features.dat (one sample a line: the inputs in graph order, each
// flattened in C order, {top.n_in} values), writes the outputs ({top.n_out} values a line) to
// tb_data/csim_results.log and, when tb_data/tb_output_predictions.dat exists (fpga4ml's emulator),
// compares every output exactly. Exit status 1 on any difference.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "firmware/{project}.h"

{top.sample_function()}
{READ_VALUES_CPP}
int main() {{
    std::ifstream features("tb_data/tb_input_features.dat");
    if (!features) {{
        std::cerr << "ERROR: cannot open tb_data/tb_input_features.dat" << std::endl;
        return 1;
    }}
    std::ifstream predictions("tb_data/tb_output_predictions.dat");
    const bool check = predictions.good();
    std::ofstream results("tb_data/csim_results.log");
    std::vector<double> x, expected;
    double y[{top.n_out}];
    long samples = 0, mismatches = 0;
    while (read_values(features, x)) {{
        if (x.size() != {top.n_in}) {{
            std::cerr << "ERROR: sample " << samples << " has " << x.size() << " values, expected {top.n_in}" << std::endl;
            return 1;
        }}
        run_sample(x.data(), y);
        char text[32];
        for (int i = 0; i < {top.n_out}; i++) {{
            std::snprintf(text, sizeof text, "%.17g", y[i]);
            results << (i ? " " : "") << text;
        }}
        results << "\\n";
        if (check && read_values(predictions, expected)) {{
            for (int i = 0; i < {top.n_out} && i < (int) expected.size(); i++) {{
                if (y[i] != expected[i]) {{
                    if (mismatches < 10) {{
                        std::printf("MISMATCH sample %ld output %d: C simulation %.17g, fpga4ml %.17g\\n",
                                    samples, i, y[i], expected[i]);
                    }}
                    mismatches++;
                }}
            }}
        }}
        samples++;
    }}
    std::printf("fpga4ml testbench: %ld samples, %s\\n", samples,
                check ? (mismatches ? "outputs DIFFER from fpga4ml" : "outputs identical to fpga4ml")
                      : "no tb_output_predictions.dat to compare with");
    if (mismatches) std::printf("%ld output values differ\\n", mismatches);
    return mismatches ? 1 : 0;
}}
'''


def tb_data_files(model) -> dict[str, str]:
    """A few hundred deterministic input samples (on each input type's grid) and the emulator outputs."""
    rng = np.random.default_rng(TB_SEED)
    xs = []
    for name in model.graph.inputs:
        node = model.graph[name]
        t = node.result_type
        x = rng.uniform(t.min_value, t.max_value, (TB_SAMPLES,) + node.shape)
        xs.append(t.to_float(t.quantize(x)))
    outs = model.emulator.predict(xs)
    return {'tb_data/tb_input_features.dat': _rows(xs), 'tb_data/tb_output_predictions.dat': _rows(outs)}


def _rows(arrays: list[np.ndarray]) -> str:
    flat = np.concatenate([a.reshape(a.shape[0], -1) for a in arrays], axis=1)
    return ''.join(' '.join(repr(v) for v in row) + '\n' for row in flat.tolist())
