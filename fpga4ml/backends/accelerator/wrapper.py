"""The accelerator wrapper: a top function `<project>_axi` with AXI ports around the HLS top `<project>`.

As hls4ml's VivadoAccelerator wrapper: `in` and `out` are arrays of N_IN and N_OUT words of the
wrapper types T_in / T_out ('float', 'double' or a fixed type from AcceleratorConfig Precision),
one tensor element per word, converted into (out of) the model's input (output) type by ap_fixed
assignment, so with the model type's rounding and overflow (into it) and the wrapper type's (out
of it). With axi_stream every word also carries `last` (AXI4-Stream TLAST): the output's last word
has it set when any input word of the sample had it. axi_lite puts both arrays in AXI-Lite
registers, axi_master reads and writes them through AXI masters started over AXI-Lite.

`wrapper_files` returns the wrapper's header and source, the C simulation bridge and the vendor
testbench, which both run one sample through `<project>_axi` (`<project>_axi_sample.h`). For an
Alveo board it adds the kernel `<project>_kernel` (`kernel_source`: batches from device memory
through the wrapper), and the C simulation bridge runs that kernel on the whole batch.
`reference` computes in Python what the wrapper computes, from the emulator.
"""

from __future__ import annotations

import numpy as np

from ...fixed import FixedType
from ..hls.emit import positions
from ..hls.writer import READ_VALUES_CPP
from .boards import AcceleratorSettings


def cpp_type(t: str | FixedType) -> str:
    """The C++ spelling of a wrapper type."""
    return t if isinstance(t, str) else t.to_cpp()


def io_nodes(model):
    """The model's single input and output node (the wrapper, as hls4ml's, has one of each)."""
    graph = model.graph
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        from ...config import ConfigError

        raise ConfigError(f'the VivadoAccelerator wrapper takes models with one input and one output (as hls4ml); '
                          f'{model.project_name!r} has inputs {list(graph.inputs)} and outputs {list(graph.outputs)}')
    return graph[graph.inputs[0]], graph[graph.outputs[0]]


def header(model, acc: AcceleratorSettings) -> str:
    """firmware/<project>_axi.h: sizes, wrapper word types and the wrapper's declaration."""
    project = model.project_name
    inp, out = io_nodes(model)
    guard = f'FPGA4ML_{project.upper()}_AXI_H_'
    if acc.interface == 'axi_stream':
        words = (f'// one AXI4-Stream word: the element (TDATA) and TLAST\n'
                 'struct input_axi_t {\n    T_in data;\n    ap_uint<1> last;\n};\n'
                 'struct output_axi_t {\n    T_out data;\n    ap_uint<1> last;\n};\n')
    else:
        words = 'typedef T_in input_axi_t;\ntypedef T_out output_axi_t;\n'
    return (f'// {project}_axi.h: the {acc.interface} accelerator wrapper of "{project}" (written by fpga4ml).\n'
            f'#ifndef {guard}\n#define {guard}\n\n#include "{project}.h"\n\n'
            f'static const unsigned N_IN = {inp.size};\nstatic const unsigned N_OUT = {out.size};\n'
            f'typedef {cpp_type(acc.input_type)} T_in;\ntypedef {cpp_type(acc.output_type)} T_out;\n{words}\n'
            f'void {project}_axi(input_axi_t in[N_IN], output_axi_t out[N_OUT]);\n\n#endif\n')


def _pragmas(model, acc: AcceleratorSettings) -> list[str]:
    inp, out = io_nodes(model)
    if acc.interface == 'axi_stream':
        lines = ['#pragma HLS INTERFACE axis port=in', '#pragma HLS INTERFACE axis port=out',
                 '#pragma HLS INTERFACE ap_ctrl_none port=return']
        return lines + (['#pragma HLS DATAFLOW'] if model.io_type == 'io_stream' else [])
    if acc.interface == 'axi_lite':
        return ['#pragma HLS INTERFACE ap_ctrl_none port=return', '#pragma HLS INTERFACE s_axilite port=in',
                '#pragma HLS INTERFACE s_axilite port=out']
    return ['#pragma HLS INTERFACE s_axilite port=return bundle=CTRL_BUS',
            f'#pragma HLS INTERFACE m_axi depth={inp.size} port=in offset=slave bundle=IN_BUS',
            f'#pragma HLS INTERFACE m_axi depth={out.size} port=out offset=slave bundle=OUT_BUS']


def source(model, acc: AcceleratorSettings) -> str:
    """firmware/<project>_axi.cpp: read the words into the model's input, call the top, write the output."""
    project, stream = model.project_name, model.io_type == 'io_stream'
    inp, out = io_nodes(model)
    axis = acc.interface == 'axi_stream'
    get = '.data' if axis else ''
    lines = [f'// {project}_axi.cpp: the {acc.interface} accelerator wrapper of "{project}" (written by fpga4ml).',
             '// Each word converts into the model input type by ap_fixed assignment (its rounding and overflow);',
             '// each output element converts into T_out the same way.',
             f'#include "{project}_axi.h"', '', f'void {project}_axi(input_axi_t in[N_IN], output_axi_t out[N_OUT]) {{']
    body = _pragmas(model, acc) + (['bool is_last = false;'] if axis else [])
    if stream:
        c_in, c_out = inp.shape[-1], out.shape[-1]
        body += ['hls::stream<input_t> in_local("in_local");', 'hls::stream<result_t> out_local("out_local");',
                 f'#pragma HLS STREAM variable=in_local depth={positions(inp.shape)}',
                 f'#pragma HLS STREAM variable=out_local depth={positions(out.shape)}',
                 f'for (unsigned p = 0; p < {positions(inp.shape)}; p++) {{', '    input_t word;',
                 f'    for (unsigned c = 0; c < {c_in}; c++) {{', '        #pragma HLS PIPELINE',
                 f'        word.data[c] = in[p * {c_in} + c]{get};']
        body += [f'        is_last |= in[p * {c_in} + c].last == 1;'] if axis else []
        body += ['    }', '    in_local.write(word);', '}', f'{project}(in_local, out_local);',
                 f'for (unsigned p = 0; p < {positions(out.shape)}; p++) {{', '    result_t word = out_local.read();',
                 f'    for (unsigned c = 0; c < {c_out}; c++) {{', '        #pragma HLS PIPELINE',
                 f'        out[p * {c_out} + c]{get} = word.data[c];']
        body += [f'        out[p * {c_out} + c].last = is_last && p * {c_out} + c == N_OUT - 1;'] if axis else []
        body += ['    }', '}']
    else:
        loop = '#pragma HLS PIPELINE' if axis else '#pragma HLS UNROLL'
        body += ['input_t in_local[N_IN];', '#pragma HLS ARRAY_PARTITION variable=in_local complete',
                 'result_t out_local[N_OUT];', '#pragma HLS ARRAY_PARTITION variable=out_local complete',
                 'for (unsigned i = 0; i < N_IN; i++) {', f'    {loop}', f'    in_local[i] = in[i]{get};']
        body += ['    is_last |= in[i].last == 1;'] if axis else []
        body += ['}', f'{project}(in_local, out_local);', 'for (unsigned i = 0; i < N_OUT; i++) {', f'    {loop}',
                 f'    out[i]{get} = out_local[i];']
        body += ['    out[i].last = is_last && i == N_OUT - 1;'] if axis else []
        body += ['}']
    return '\n'.join(lines + ['    ' + b for b in body] + ['}', ''])


def sample_header(model, acc: AcceleratorSettings) -> str:
    """<project>_axi_sample.h: one sample from doubles through the wrapper (shared by bridge and testbench)."""
    project = model.project_name
    axis = acc.interface == 'axi_stream'
    get = '.data' if axis else ''
    lines = [f'// {project}_axi_sample.h: one sample through {project}_axi (written by fpga4ml).',
             '// x: N_IN doubles, each converted to a T_in word as the host would (NaN -> 0); y: the N_OUT',
             '// output words as doubles. Returns 1 when the TLAST flags of the output are not exactly on its',
             '// last word (the input marks its last word), else 0.',
             f'#include "firmware/{project}_axi.h"', '',
             'static int axi_run_sample(const double *x, double *y) {',
             '    static input_axi_t in[N_IN];', '    static output_axi_t out[N_OUT];',
             '    for (unsigned i = 0; i < N_IN; i++) {', '        double v = x[i] == x[i] ? x[i] : 0.0;',
             f'        in[i]{get} = (T_in) v;']
    lines += ['        in[i].last = i == N_IN - 1;'] if axis else []
    lines += ['    }', f'    {project}_axi(in, out);', '    int bad = 0;', '    for (unsigned i = 0; i < N_OUT; i++) {',
              f'        y[i] = static_cast<double>(out[i]{get});']
    lines += ['        bad |= out[i].last != (i == N_OUT - 1 ? 1 : 0);'] if axis else []
    lines += ['    }', '    return bad;', '}', '']
    return '\n'.join(lines)


def bridge(model) -> str:
    """<project>_axi_bridge.cpp: the C simulation entry points (ctypes), one sample at a time."""
    project = model.project_name
    return (f'// {project}_axi_bridge.cpp: fpga4ml\'s C simulation through the accelerator wrapper (written by fpga4ml).\n'
            f'// {project}_predict(x, y, n, threads) runs the n samples one after the other (the wrapper\'s\n'
            '// buffers are static, as on the device) and returns how many had a misplaced TLAST.\n'
            f'#include "{project}_axi_sample.h"\n\n'
            f'extern "C" int {project}_io_sizes(long *n_in, long *n_out) {{\n'
            '    *n_in = N_IN;\n    *n_out = N_OUT;\n    return 0;\n}\n\n'
            f'extern "C" int {project}_predict(const double *x, double *y, long n, int threads) {{\n'
            '    (void) threads;\n    int bad = 0;\n'
            '    for (long s = 0; s < n; s++) bad += axi_run_sample(x + s * N_IN, y + s * N_OUT);\n'
            '    return bad;\n}\n')


def kernel_name(model) -> str:
    """The Alveo kernel's name: <project>_kernel (hls4ml names its .xo and .xclbin so)."""
    return f'{model.project_name}_kernel'


def kernel_source(model) -> str:
    """firmware/<project>_kernel.cpp: the Alveo kernel, batches from device memory through <project>_axi.

    Its arguments are those of hls4ml's Alveo kernel (fifo_in, fifo_out, length_r_in, length_r_out:
    word counts), so its driver calls it the same way. Each sample's N_IN words go through the
    axi_stream wrapper, TLAST on the batch's last word; the outputs are written up to length_r_out.
    """
    project, kernel = model.project_name, kernel_name(model)
    ports = ('fifo_in', 'fifo_out', 'length_r_in', 'length_r_out')
    lines = [f'// {kernel}.cpp: the Alveo kernel of "{project}" (written by fpga4ml): batches in device memory',
             f'// through the axi_stream wrapper {project}_axi.', f'#include "{project}_axi.h"', '',
             f'extern "C" void {kernel}(const T_in *fifo_in, T_out *fifo_out, unsigned length_r_in, '
             'unsigned length_r_out) {',
             '    #pragma HLS INTERFACE m_axi port=fifo_in offset=slave bundle=gmem',
             '    #pragma HLS INTERFACE m_axi port=fifo_out offset=slave bundle=gmem']
    lines += [f'    #pragma HLS INTERFACE s_axilite port={p}' for p in ports + ('return',)]
    lines += ['    for (unsigned s = 0; s < length_r_in / N_IN; s++) {',
              '        input_axi_t in[N_IN];', '        output_axi_t out[N_OUT];',
              '        for (unsigned i = 0; i < N_IN; i++) {', '            #pragma HLS PIPELINE',
              '            in[i].data = fifo_in[s * N_IN + i];',
              '            in[i].last = s * N_IN + i == length_r_in - 1;', '        }',
              f'        {project}_axi(in, out);', '        for (unsigned i = 0; i < N_OUT; i++) {',
              '            #pragma HLS PIPELINE',
              '            if (s * N_OUT + i < length_r_out) fifo_out[s * N_OUT + i] = out[i].data;', '        }',
              '    }', '}', '']
    return '\n'.join(lines)


def kernel_bridge(model) -> str:
    """<project>_axi_bridge.cpp for an Alveo board: the C simulation calls the kernel on the whole batch."""
    project, kernel = model.project_name, kernel_name(model)
    return (f'// {project}_axi_bridge.cpp: fpga4ml\'s C simulation through the Alveo kernel {kernel} (written by fpga4ml).\n'
            f'// {project}_predict(x, y, n, threads) converts the batch to words as the host does (NaN -> 0),\n'
            '// runs the kernel once on it and converts the output words back.\n'
            f'#include <vector>\n\n#include "firmware/{project}_axi.h"\n\n'
            f'extern "C" void {kernel}(const T_in *fifo_in, T_out *fifo_out, unsigned length_r_in, '
            'unsigned length_r_out);\n\n'
            f'extern "C" int {project}_io_sizes(long *n_in, long *n_out) {{\n'
            '    *n_in = N_IN;\n    *n_out = N_OUT;\n    return 0;\n}\n\n'
            f'extern "C" int {project}_predict(const double *x, double *y, long n, int threads) {{\n'
            '    (void) threads;\n'
            '    std::vector<T_in> in(n * N_IN);\n    std::vector<T_out> out(n * N_OUT);\n'
            '    for (long i = 0; i < n * (long) N_IN; i++) in[i] = (T_in) (x[i] == x[i] ? x[i] : 0.0);\n'
            f'    {kernel}(in.data(), out.data(), n * N_IN, n * N_OUT);\n'
            '    for (long i = 0; i < n * (long) N_OUT; i++) y[i] = static_cast<double>(out[i]);\n'
            '    return 0;\n}\n')


def testbench(model) -> str:
    """tb/<project>_test.cpp: the vendor C simulation / co-simulation testbench through the wrapper."""
    project = model.project_name
    return f'''\
// {project}_test.cpp: testbench of the accelerator wrapper {project}_axi (written by fpga4ml).
// Reads tb_data/tb_input_features.dat (N_IN values a line), writes tb_data/csim_results.log and
// compares every output exactly with tb_data/tb_axi_predictions.dat (fpga4ml's emulator through
// the wrapper's conversions). Exit status 1 on any difference or misplaced TLAST.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "{project}_axi_sample.h"

{READ_VALUES_CPP}
int main() {{
    std::ifstream features("tb_data/tb_input_features.dat");
    std::ifstream predictions("tb_data/tb_axi_predictions.dat");
    std::ofstream results("tb_data/csim_results.log");
    if (!features || !predictions) {{
        std::printf("ERROR: tb_data/tb_input_features.dat or tb_data/tb_axi_predictions.dat is missing\\n");
        return 1;
    }}
    std::vector<double> x, expected;
    double y[N_OUT];
    long samples = 0, mismatches = 0;
    while (read_values(features, x) && read_values(predictions, expected)) {{
        if (x.size() != N_IN || expected.size() != N_OUT) {{
            std::printf("ERROR: sample %ld has %zu inputs and %zu outputs\\n", samples, x.size(), expected.size());
            return 1;
        }}
        mismatches += axi_run_sample(x.data(), y);
        for (unsigned i = 0; i < N_OUT; i++) {{
            char text[32];
            std::snprintf(text, sizeof text, "%.17g", y[i]);
            results << (i ? " " : "") << text;
            if (y[i] != expected[i]) mismatches++;
        }}
        results << "\\n";
        samples++;
    }}
    std::printf("fpga4ml wrapper testbench: %ld samples, %s\\n", samples,
                mismatches ? "outputs DIFFER from fpga4ml" : "outputs identical to fpga4ml");
    return mismatches ? 1 : 0;
}}
'''


def reference(model, acc: AcceleratorSettings, x) -> np.ndarray:
    """What the wrapper returns for inputs `x` (batch, *input shape), from the emulator (float64)."""
    inp, out = io_nodes(model)
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=np.inf, neginf=-np.inf)
    words = _to_words(acc.input_type, x)
    y = model.emulator.predict([words])[0]
    return _to_words(acc.output_type, y)


def _to_words(t: str | FixedType, values: np.ndarray) -> np.ndarray:
    """Values as the wrapper type `t` holds them (float: round to nearest float32), as float64."""
    if t == 'float':
        return values.astype(np.float32).astype(np.float64)
    if t == 'double':
        return values
    return t.to_float(t.quantize(values))


def wrapper_files(model, acc: AcceleratorSettings, tb_inputs: np.ndarray) -> dict[str, str]:
    """The wrapper's files: header, source, sample helper, C simulation bridge, testbench and its expected data."""
    project = model.project_name
    expected = reference(model, acc, tb_inputs)
    rows = ''.join(' '.join(repr(v) for v in row) + '\n' for row in expected.reshape(len(expected), -1).tolist())
    files = {f'firmware/{project}_axi.h': header(model, acc), f'firmware/{project}_axi.cpp': source(model, acc),
             f'{project}_axi_sample.h': sample_header(model, acc), f'{project}_axi_bridge.cpp': bridge(model),
             f'tb/{project}_test.cpp': testbench(model), 'tb_data/tb_axi_predictions.dat': rows}
    if acc.family == 'alveo':
        files[f'firmware/{kernel_name(model)}.cpp'] = kernel_source(model)
        files[f'{project}_axi_bridge.cpp'] = kernel_bridge(model)
    return files
