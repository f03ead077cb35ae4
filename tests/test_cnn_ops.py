"""Conv, Pool, Pad, Crop, Resize and Transpose in the emulator against slow scalar references.

The references below loop over output positions, window taps and channels explicitly (they do
not use fpga4ml.geometry's index arrays), so geometry mistakes (padding side, dilation, stride,
group mapping) and arithmetic mistakes (cast points, accumulation order, division) both show up.
Each arithmetic step is one call of `FixedType.cast` on the whole batch, in hls4ml's order.
"""

from __future__ import annotations

import numpy as np
import pytest

from fpga4ml.convert import convert_graph
from fpga4ml.fixed import FixedType
from fpga4ml.ir import Graph, GraphError, Node

RNG = np.random.default_rng(11)


def one_layer(op: str, in_shape, out_shape, attrs, weights=None) -> Graph:
    g = Graph()
    g.add(Node('x', 'Input', [], in_shape))
    g.add(Node('op', op, ['x'], out_shape, attrs=attrs, weights=weights or {}, source=op))
    g.inputs, g.outputs = ['x'], ['op']
    return g


def convert(g: Graph, in_prec: str, op_prec: dict):
    cfg = {'Model': {'Precision': 'fixed<16,6>'},
           'LayerName': {'x': {'Precision': {'result': in_prec}}, 'op': {'Precision': op_prec}}}
    return convert_graph(g, cfg)


def as_hwc(a: np.ndarray) -> np.ndarray:
    """(B, W, C) -> (B, 1, W, C); (B, H, W, C) unchanged."""
    return a[:, None] if a.ndim == 3 else a


def out_size(n, k, s, d, p0, p1):
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


# --------------------------------------------------------------------------- Conv

def reference_conv(model, xm: np.ndarray, order=1) -> np.ndarray:
    """hls4ml conv_2d_latency_cl on a batch: bias, then products cast into accum in (kh, kw, c) order.

    order=-1 accumulates the taps in reverse (a negative control for SAT accumulators).
    """
    node = model.graph['op']
    a = node.attrs
    acc_t, res_t = node.types['accum'], node.types['result']
    fx, fw = model.graph['x'].result_type.frac, node.types['weight'].frac
    two_d = len(a['kernel_size']) == 2
    kh_n, kw_n = a['kernel_size'] if two_d else (1, a['kernel_size'][0])
    sh, sw = a['strides'] if two_d else (1, a['strides'][0])
    dh, dw = a['dilation'] if two_d else (1, a['dilation'][0])
    pt, pb, pl, pr = a['padding'] if two_d else (0, 0) + tuple(a['padding'])
    x = as_hwc(xm)
    _, h_in, w_in, c_in = x.shape
    k = node.qweights['kernel'].reshape(kh_n, kw_n, *node.qweights['kernel'].shape[-2:])
    cin_g, c_out = k.shape[2:]
    groups = a.get('groups', 1)
    cout_g = c_out // groups
    oh, ow = out_size(h_in, kh_n, sh, dh, pt, pb), out_size(w_in, kw_n, sw, dw, pl, pr)
    bias = acc_t.cast(node.qweights['bias'], node.types['bias'].frac)
    out = np.zeros((len(x), oh, ow, c_out), np.int64)
    for i in range(oh):
        for j in range(ow):
            for o in range(c_out):
                g = o // cout_g
                taps = [(u, v, c) for u in range(kh_n) for v in range(kw_n) for c in range(cin_g)][::order]
                acc = np.full(len(x), bias[o], np.int64)
                for u, v, c in taps:
                    r, q = i * sh + u * dh - pt, j * sw + v * dw - pl
                    xv = x[:, r, q, g * cin_g + c] if 0 <= r < h_in and 0 <= q < w_in else np.zeros(len(x), np.int64)
                    prod = acc_t.cast(xv * int(k[u, v, c, o]), fx + fw)
                    acc = acc_t.cast(acc + prod, acc_t.frac)
                out[:, i, j, o] = res_t.cast(acc, acc_t.frac)
    return out if two_d else out[:, 0]


CONVS = {
    # name: (input shape, kernel_size, strides, dilation, padding, groups, multiplier-or-filters)
    '2d_valid': ((7, 6, 3), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), 1, 4),
    '2d_stride_pad': ((7, 8, 2), (3, 2), (2, 3), (1, 1), (1, 2, 0, 1), 1, 3),
    '2d_dilation': ((8, 7, 2), (2, 3), (1, 2), (2, 1), (1, 1, 2, 2), 1, 3),
    '2d_depthwise_x2': ((6, 6, 3), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 3, 6),
    '2d_groups2': ((5, 5, 4), (2, 2), (1, 1), (1, 1), (0, 1, 0, 1), 2, 4),
    '1d_stride_dil_pad': ((11, 3), (3,), (2,), (2,), (2, 1), 1, 4),
    '1d_depthwise': ((9, 4), (4,), (1,), (1,), (1, 2), 4, 4),
}

CONV_TYPES = {
    # (input, weight, bias, accum, result): which emulator path each one exercises
    'wrap_trn': ('fixed<10,4,RND,SAT>', 'fixed<8,2>', 'fixed<8,3>', 'fixed<12,5>', 'fixed<9,4>'),
    'sat_rnd': ('fixed<10,4,RND,SAT>', 'fixed<8,2,RND>', 'fixed<10,4>', 'fixed<11,4,RND_CONV,SAT>',
                'fixed<8,3,RND,SAT_SYM>'),
    'exact_auto': ('fixed<10,4,RND,SAT>', 'fixed<8,2>', 'fixed<8,3>', 'auto', 'auto'),
}


def conv_graph(spec) -> Graph:
    in_shape, ksize, strides, dil, pads, groups, c_out = spec
    rank = len(ksize)
    c_in = in_shape[-1]
    kernel = RNG.normal(0, 0.7, ksize + (c_in // groups, c_out)).astype(np.float32)
    bias = RNG.normal(0, 1, c_out).astype(np.float32)
    spatial = [out_size(n, k, s, d, pads[2 * i], pads[2 * i + 1])
               for i, (n, k, s, d) in enumerate(zip(in_shape[:-1], ksize, strides, dil))]
    attrs = {'kernel_size': ksize, 'strides': strides, 'dilation': dil, 'padding': pads, 'groups': groups}
    assert rank == len(spatial)
    return one_layer('Conv', in_shape, tuple(spatial) + (c_out,), attrs, {'kernel': kernel, 'bias': bias})


@pytest.mark.parametrize('types', list(CONV_TYPES))
@pytest.mark.parametrize('name', list(CONVS))
def test_conv_matches_scalar_reference(name, types):
    in_p, w_p, b_p, acc_p, res_p = CONV_TYPES[types]
    model = convert(conv_graph(CONVS[name]), in_p, {'weight': w_p, 'bias': b_p, 'accum': acc_p, 'result': res_p})
    x = RNG.normal(0, 4, (40,) + CONVS[name][0])
    xm = model.graph['x'].result_type.quantize(x)
    got = model.predict_mantissas(x)['op']
    want = reference_conv(model, xm)
    assert np.array_equal(got, want), (name, types)
    if types != 'exact_auto':
        stats = model.trace(x)[1].stats['op']
        assert stats.overflow > 0, (name, types)  # the narrow types really wrap or saturate


def test_conv_sat_accumulator_order_is_observable():
    """A SAT accumulator makes the tap order visible: hls4ml's order matches, the reverse does not."""
    model = convert(conv_graph(CONVS['2d_stride_pad']), 'fixed<10,4,RND,SAT>',
                    {'weight': 'fixed<8,3>', 'bias': 'fixed<8,3>', 'accum': 'fixed<8,3,TRN,SAT>',
                     'result': 'fixed<8,3>'})
    x = RNG.normal(0, 4, (200,) + CONVS['2d_stride_pad'][0])
    xm = model.graph['x'].result_type.quantize(x)
    got = model.predict_mantissas(x)['op']
    assert np.array_equal(got, reference_conv(model, xm))
    assert not np.array_equal(got, reference_conv(model, xm, order=-1))


def test_conv_negative_control_weight():
    model = convert(conv_graph(CONVS['2d_valid']), 'fixed<10,4>', {'weight': 'fixed<8,2>', 'bias': 'fixed<8,3>'})
    x = RNG.normal(0, 4, (30,) + CONVS['2d_valid'][0])
    want = reference_conv(model, model.graph['x'].result_type.quantize(x))
    model.graph['op'].qweights['kernel'][1, 2, 0, 3] += 1
    model._emulator = None
    assert not np.array_equal(model.predict_mantissas(x)['op'], want)


def extreme_inputs(model, spec, sign: int) -> np.ndarray:
    """For every output (pixel, channel), the input that drives it to its bound: sign(w) * extreme."""
    in_shape, ksize, strides, dil, pads, _, _ = spec
    in_t = model.graph['x'].result_type
    k = model.graph['op'].qweights['kernel']
    _, oh, ow, c_out = (1,) + model.graph['op'].shape
    xs = []
    for i in range(oh):
        for j in range(ow):
            for o in range(c_out):
                x = np.zeros(in_shape)
                for u in range(ksize[0]):
                    for v in range(ksize[1]):
                        r, q = i * strides[0] + u * dil[0] - pads[0], j * strides[1] + v * dil[1] - pads[2]
                        if 0 <= r < in_shape[0] and 0 <= q < in_shape[1]:
                            w = k[u, v, :, o] * sign
                            x[r, q] = np.where(w > 0, in_t.max_value, np.where(w < 0, in_t.min_value, 0))
                xs.append(x)
    return np.array(xs)


def test_conv_auto_accumulator_is_exact_and_tight():
    """The inferred accumulator never overflows, and its interval bounds are reached (exact intervals)."""
    spec = CONVS['2d_stride_pad']
    model = convert(conv_graph(spec), 'fixed<10,4,RND,SAT>',
                    {'weight': 'fixed<8,2>', 'bias': 'fixed<8,3>', 'accum': 'auto', 'result': 'auto'})
    lo, hi, frac = model.graph['op'].attrs['exact_bounds']
    assert model.graph['op'].types['result'].frac == frac
    top = model.predict_mantissas(extreme_inputs(model, spec, +1))['op']
    bottom = model.predict_mantissas(extreme_inputs(model, spec, -1))['op']
    assert top.max() == hi and bottom.min() == lo
    in_t = model.graph['x'].result_type
    x = RNG.uniform(in_t.min_value, in_t.max_value, (2000,) + spec[0])
    assert model.trace(x)[1].stats['op'].overflow == 0


def test_conv_rejects_mismatched_shapes():
    g = conv_graph(CONVS['2d_valid'])
    g['op'].attrs['groups'] = 2  # 3 input channels cannot split into 2 groups
    with pytest.raises(GraphError, match='groups=2'):
        convert(g, 'fixed<10,4>', {})
    g = conv_graph(CONVS['2d_valid'])
    g['op'].shape = (5, 5, 4)
    with pytest.raises(GraphError, match="node 'op': Conv of"):
        convert(g, 'fixed<10,4>', {})


# --------------------------------------------------------------------------- Pool

def reference_pool(model, xm: np.ndarray, count_pad: bool = False) -> np.ndarray:
    """hls4ml pooling2d_cl: max -> accum -> result; avg: acc=0, acc=cast(acc+x) per real cell,
    acc/n truncated toward zero in the accumulator LSB (n: real cells, or the whole window with
    count_pad, a negative control), then cast to the result."""
    node = model.graph['op']
    a = node.attrs
    acc_t, res_t = node.types['accum'], node.types['result']
    fx = model.graph['x'].result_type.frac
    two_d = len(a['pool_size']) == 2
    ph, pw = a['pool_size'] if two_d else (1, a['pool_size'][0])
    sh, sw = a['strides'] if two_d else (1, a['strides'][0])
    pt, pb, pl, pr = a['padding'] if two_d else (0, 0) + tuple(a['padding'])
    x = as_hwc(xm)
    n, h_in, w_in, c_n = x.shape
    oh, ow = out_size(h_in, ph, sh, 1, pt, pb), out_size(w_in, pw, sw, 1, pl, pr)
    out = np.zeros((n, oh, ow, c_n), np.int64)
    for i in range(oh):
        for j in range(ow):
            cells = [(i * sh + u - pt, j * sw + v - pl) for u in range(ph) for v in range(pw)]
            cells = [(r, q) for r, q in cells if 0 <= r < h_in and 0 <= q < w_in]
            vals = [x[:, r, q, :] for r, q in cells]
            if a['mode'] == 'max':
                acc = acc_t.cast(np.max(vals, axis=0), fx)
            else:
                acc = np.zeros((n, c_n), np.int64)
                for v in vals:
                    f = max(fx, acc_t.frac)
                    s = (acc << (f - acc_t.frac)) + (v << (f - fx))
                    acc = acc_t.cast(s, f)
                n_div = ph * pw if count_pad else len(vals)
                acc = np.array([[int(abs(m) // n_div) * (1 if m >= 0 else -1) for m in row] for row in acc])
            out[:, i, j, :] = res_t.cast(acc, acc_t.frac)
    return out if two_d else out[:, 0]


POOLS = {
    # name: (input shape, mode, pool_size, strides, padding)
    'max_2x2': ((6, 7, 3), 'max', (2, 2), (2, 2), (0, 0, 0, 0)),
    'max_3x3_s1_same': ((5, 6, 2), 'max', (3, 3), (1, 1), (1, 1, 1, 1)),
    'max_1d': ((9, 3), 'max', (3,), (2,), (1, 1)),
    'avg_2x2': ((6, 6, 2), 'avg', (2, 2), (2, 2), (0, 0, 0, 0)),
    'avg_3x3_same': ((5, 5, 2), 'avg', (3, 3), (2, 1), (1, 1, 0, 2)),
    'avg_1d_3': ((10, 2), 'avg', (3,), (3,), (0, 2)),
    'avg_global': ((4, 5, 3), 'avg', (4, 5), (4, 5), (0, 0, 0, 0)),
}

POOL_TYPES = {
    'narrow': ('fixed<10,4,RND,SAT>', {'accum': 'fixed<9,4,RND,SAT>', 'result': 'fixed<8,3,RND_CONV,SAT>'}),
    'wrap': ('fixed<10,4>', {'accum': 'fixed<12,4>', 'result': 'fixed<7,2>'}),
    'unsigned': ('ufixed<8,3,RND,SAT>', {'accum': 'ufixed<12,5>', 'result': 'ufixed<6,3,RND,SAT>'}),
    'auto': ('fixed<10,4,RND,SAT>', {'accum': 'auto', 'result': 'auto'}),
}


def pool_graph(spec) -> Graph:
    in_shape, mode, size, strides, pads = spec
    spatial = [out_size(n, k, s, 1, pads[2 * i], pads[2 * i + 1])
               for i, (n, k, s) in enumerate(zip(in_shape[:-1], size, strides))]
    attrs = {'mode': mode, 'pool_size': size, 'strides': strides, 'padding': pads}
    return one_layer('Pool', in_shape, tuple(spatial) + in_shape[-1:], attrs)


@pytest.mark.parametrize('types', list(POOL_TYPES))
@pytest.mark.parametrize('name', list(POOLS))
def test_pool_matches_scalar_reference(name, types):
    in_p, prec = POOL_TYPES[types]
    model = convert(pool_graph(POOLS[name]), in_p, prec)
    x = RNG.normal(0, 5, (50,) + POOLS[name][0])
    xm = model.graph['x'].result_type.quantize(x)
    assert np.array_equal(model.predict_mantissas(x)['op'], reference_pool(model, xm)), (name, types)


def test_pool_auto_types():
    """'auto': max keeps the input type; avg accumulates exactly with ceil(log2(taps)) extra LSBs."""
    model = convert(pool_graph(POOLS['avg_3x3_same']), 'fixed<10,4,RND,SAT>', {'accum': 'auto', 'result': 'auto'})
    node = model.graph['op']
    assert node.types['result'] == model.graph['x'].result_type
    assert node.types['accum'].frac == 6 + 4  # 9 taps: 4 extra fractional bits
    in_t = model.graph['x'].result_type
    x = np.where(RNG.random((300,) + POOLS['avg_3x3_same'][0]) < 0.5, in_t.min_value, in_t.max_value)
    _, traced = model.trace(x)
    assert traced.stats['op'].overflow == 0  # the accumulator never overflows
    model = convert(pool_graph(POOLS['max_2x2']), 'fixed<10,4,RND,SAT>', {'accum': 'auto', 'result': 'auto'})
    assert model.graph['op'].types['accum'] == model.graph['op'].types['result'] == model.graph['x'].result_type


def test_avg_pool_power_of_two_is_exact_average():
    """With a power-of-two window and the 'auto' accumulator, the average is exact before the result cast."""
    model = convert(pool_graph(POOLS['avg_2x2']), 'fixed<10,4>', {'accum': 'auto', 'result': 'fixed<16,4>'})
    x = RNG.normal(0, 3, (100,) + POOLS['avg_2x2'][0])
    xq = model.graph['x'].result_type.to_float(model.graph['x'].result_type.quantize(x))
    want = xq.reshape(100, 3, 2, 3, 2, 2).mean(axis=(2, 4))
    assert np.array_equal(model.predict(x), want)


def test_pool_negative_control():
    """Dividing by the whole window at the borders (count_pad) differs from hls4ml's real-cell count."""
    model = convert(pool_graph(POOLS['avg_3x3_same']), 'fixed<10,4>', {'accum': 'fixed<16,6>', 'result': 'fixed<12,4>'})
    x = RNG.normal(0, 3, (20,) + POOLS['avg_3x3_same'][0])
    got = model.predict_mantissas(x)['op']
    xm = model.graph['x'].result_type.quantize(x)
    assert np.array_equal(got, reference_pool(model, xm))
    assert not np.array_equal(got, reference_pool(model, xm, count_pad=True))
    model.graph['op'].attrs['padding'] = (0, 0, 0, 0)  # a different geometry must not validate silently
    model._emulator = None
    with pytest.raises(GraphError, match='Pool of'):
        model.predict(x)


# --------------------------------------------------------------------------- index-map ops

INDEX_OPS = {
    'pad_2d': ('Pad', (3, 4, 2), (6, 5, 2), {'padding': (1, 2, 0, 1)},
               lambda x: np.pad(x, ((0, 0), (1, 2), (0, 1), (0, 0)))),
    'pad_1d': ('Pad', (5, 2), (8, 2), {'padding': (2, 1)}, lambda x: np.pad(x, ((0, 0), (2, 1), (0, 0)))),
    'crop_2d': ('Crop', (6, 5, 2), (3, 3, 2), {'cropping': (1, 2, 2, 0)}, lambda x: x[:, 1:4, 2:5]),
    'crop_1d': ('Crop', (7, 3), (4, 3), {'cropping': (0, 3)}, lambda x: x[:, 0:4]),
    'resize_2d': ('Resize', (3, 2, 2), (6, 6, 2), {'scale': (2, 3), 'method': 'nearest'},
                  lambda x: x.repeat(2, axis=1).repeat(3, axis=2)),
    'resize_1d': ('Resize', (4, 3), (12, 3), {'scale': (3,), 'method': 'nearest'}, lambda x: x.repeat(3, axis=1)),
    'transpose_3d': ('Transpose', (2, 3, 4), (4, 2, 3), {'perm': (2, 0, 1)}, lambda x: x.transpose(0, 3, 1, 2)),
    'transpose_2d': ('Transpose', (5, 3), (3, 5), {'perm': (1, 0)}, lambda x: x.transpose(0, 2, 1)),
}


@pytest.mark.parametrize('name', list(INDEX_OPS))
def test_index_map_ops_move_mantissas(name):
    op, in_shape, out_shape, attrs, ref = INDEX_OPS[name]
    model = convert(one_layer(op, in_shape, out_shape, attrs), 'fixed<9,3,RND,SAT>', {})
    assert model.graph['op'].result_type == model.graph['x'].result_type
    x = RNG.normal(0, 3, (25,) + in_shape)
    xm = model.graph['x'].result_type.quantize(x)
    got = model.predict_mantissas(x)['op']
    assert np.array_equal(got, ref(xm))
    assert not np.array_equal(got, ref(xm + (np.arange(xm.size).reshape(xm.shape) % 3 == 0)))


def test_index_map_errors():
    with pytest.raises(GraphError, match='method'):
        convert(one_layer('Resize', (3, 2, 2), (6, 4, 2), {'scale': (2, 2), 'method': 'bilinear'}), 'fixed<8,3>', {})
    with pytest.raises(GraphError, match='perm'):
        convert(one_layer('Transpose', (3, 2), (2, 3), {'perm': (0, 0)}), 'fixed<8,3>', {})
    with pytest.raises(GraphError, match='whole input'):
        convert(one_layer('Crop', (3, 2), (0, 2), {'cropping': (2, 1)}), 'fixed<8,3>', {})
    with pytest.raises(GraphError, match='gives shape'):
        convert(one_layer('Pad', (3, 2), (6, 2), {'padding': (1, 1)}), 'fixed<8,3>', {})


def test_cast_helper_is_exact():
    """The references rely on FixedType.cast: one sanity check of the accumulator arithmetic they use."""
    t = FixedType(8, 3, True, 'TRN', 'SAT')
    assert t.cast(np.array([1 << 20]), 5).tolist() == [t.max_mantissa]
