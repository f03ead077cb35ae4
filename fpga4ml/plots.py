"""Plots of a converted model, with hls4ml's entry points: the graph, and numbers against their types.

`plot_model` draws the typed graph (names, ops, shapes, precisions); `numerical` draws weights and
activations against the ranges of their fixed-point types (hls4ml's profiling box plots, with our
overflow counts); `compare` draws each layer's difference to the Keras model. Everything is drawn
with matplotlib (the `plot` extra: ``pip install fpga4ml[plot]``), so no graphviz binary is needed,
and every function returns its figure(s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .ir import Graph

#: hls4ml's plot kinds for numerical(); 'FacetGrid' (seaborn) is not drawn
PLOT_KINDS = ('boxplot', 'violinplot', 'histogram')


def _pyplot():
    """matplotlib.pyplot (it draws off screen, with Agg, where there is no display)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - the plot extra is part of the test install
        raise ImportError('plots need matplotlib: pip install "fpga4ml[plot]"') from None
    return plt


def _precision(t) -> str:
    return 'ap_' + str(t) if t is not None else '?'


# ---------------------------------------------------------------------------- the graph

def _depths(graph: Graph) -> dict[str, int]:
    """Longest path from an input to each node: the row (or column) it is drawn in."""
    depth: dict[str, int] = {}
    for node in graph:
        depth[node.name] = 1 + max((depth[i] for i in node.inputs), default=-1)
    return depth


def _node_label(node, show_shapes: bool, show_layer_names: bool, show_precision: bool) -> str:
    lines = [f'{node.name}: {node.source or node.op}' if show_layer_names else node.source or node.op]
    if show_shapes:
        lines.append(f'shape {node.shape}')
    if show_precision and node.types:
        lines += [f'{var}: {_precision(t)}' for var, t in node.types.items()]
    return '\n'.join(lines)


def plot_model(model, to_file: str | None = 'model.png', show_shapes: bool = False, show_layer_names: bool = True,
               show_precision: bool = False, rankdir: str = 'TB', dpi: int = 96):
    """Draw the model's graph (hls4ml's plot_model arguments); saved to `to_file` if given; returns the figure."""
    if rankdir not in ('TB', 'LR'):
        raise ValueError(f"plot_model: rankdir={rankdir!r}; use 'TB' (top to bottom) or 'LR' (left to right)")
    plt = _pyplot()
    graph: Graph = getattr(model, 'graph', model)
    depth = _depths(graph)
    rows: dict[int, list[str]] = {}
    for node in graph:
        rows.setdefault(depth[node.name], []).append(node.name)
    width = max(len(r) for r in rows.values())
    place = {}
    for d, names in rows.items():
        for k, name in enumerate(names):
            across = (k + 0.5) * width / len(names)
            place[name] = (across, -d) if rankdir == 'TB' else (d, -across)
    lines = max(_node_label(n, show_shapes, show_layer_names, show_precision).count('\n') + 1 for n in graph)
    size = (max(4.0, 3.2 * width), max(3.0, (0.55 + 0.2 * lines) * len(rows)))
    fig, ax = plt.subplots(figsize=size if rankdir == 'TB' else size[::-1], dpi=dpi)
    ax.set_axis_off()
    for node in graph:
        for src in node.inputs:
            ax.annotate('', xy=place[node.name], xytext=place[src],
                        arrowprops={'arrowstyle': '->', 'color': '0.3', 'shrinkA': 18, 'shrinkB': 18})
    for node in graph:
        x, y = place[node.name]
        ax.text(x, y, _node_label(node, show_shapes, show_layer_names, show_precision), ha='center', va='center',
                fontsize=8, gid=node.name, bbox={'boxstyle': 'round', 'facecolor': '#e8eef7', 'edgecolor': '0.3'})
    xs, ys = zip(*place.values())
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    fig.tight_layout()
    if to_file is not None:
        fig.savefig(to_file, format=Path(to_file).suffix[1:] or 'png', dpi=dpi)
    return fig


# ---------------------------------------------------------------------------- numbers against types

def _log2_abs(values) -> np.ndarray:
    """log2 |v| of the non-zero values (the axis of hls4ml's profiling plots)."""
    v = np.abs(np.asarray(values, dtype=np.float64).ravel())
    return np.log2(v[v > 0])


def _distribution_figure(plt, data: dict[str, np.ndarray], types: dict, plot: str, title: str,
                         notes: dict[str, str] | None = None):
    """One row per entry: the distribution of log2|values|, over a grey box spanning its type's range."""
    if plot not in PLOT_KINDS:
        raise ValueError(f'numerical: plot={plot!r} is not supported; use one of {list(PLOT_KINDS)}')
    names = list(data)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.5))
    for row, name in enumerate(names):
        t = types.get(name)
        if t is not None:  # from the LSB to the largest magnitude of the type
            top = np.log2(max(abs(t.min_value), t.max_value, t.lsb))
            ax.add_patch(plt.Rectangle((np.log2(t.lsb), row + 0.6), top - np.log2(t.lsb), 0.8, color='0.85',
                                       zorder=0, gid=f'type:{name}'))
    values = [data[n] if data[n].size else np.array([np.nan]) for n in names]
    positions = np.arange(1, len(names) + 1)
    if plot == 'boxplot':
        ax.boxplot(values, positions=positions, sym='k+', widths=0.6, **_horizontal(ax.boxplot))
    elif plot == 'violinplot':
        ax.violinplot([v if np.isfinite(v).any() else np.zeros(1) for v in values], positions=positions,
                      **_horizontal(ax.violinplot))
    else:
        for row, v in enumerate(values):
            counts, edges = np.histogram(v[np.isfinite(v)], bins=30) if np.isfinite(v).any() else (np.zeros(1), [0, 1])
            scale = 0.8 / max(counts.max(), 1)
            ax.bar(edges[:-1], counts * scale, width=np.diff(edges), bottom=row + 0.6, align='edge')
    ax.set_yticks(positions)
    ax.set_yticklabels([f'{n} {notes[n]}' if notes and notes.get(n) else n for n in names])
    ax.invert_yaxis()
    ax.set_xlabel('log2 |value| (non-zero values; grey: the range of the fixed-point type)')
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _horizontal(method) -> dict:
    """The keyword for horizontal boxes/violins: `orientation` (matplotlib >= 3.10) or the older `vert`."""
    import inspect
    return {'orientation': 'horizontal'} if 'orientation' in inspect.signature(method).parameters else {'vert': False}


def _framework_weights(model) -> dict[str, np.ndarray]:
    """Non-empty weight arrays of a Keras or PyTorch model, by layer/parameter name."""
    if hasattr(model, 'layers'):  # Keras (a Keras model on the torch backend is a torch Module too)
        return {f'{layer.name}/{v.name}': np.asarray(v.numpy()) for layer in model.layers for v in layer.weights}
    return {name: p.detach().cpu().numpy() for name, p in model.named_parameters()}  # torch.nn.Module


def numerical(model=None, hls_model=None, X=None, plot: str = 'boxplot'):
    """hls4ml's numerical profiling: (weights of `model`, weights of `hls_model`, activations of both).

    The hls_model figures draw each quantized weight and each layer output (on X) over the range of
    its type, with the layer's overflow count on X in its label. Returns the four figures (None
    where the input for one is missing), as hls4ml does.
    """
    plt = _pyplot()
    wp = wph = ap = aph = None
    if model is not None:
        wp = _distribution_figure(plt, {k: _log2_abs(v) for k, v in _framework_weights(model).items()}, {}, plot,
                                  'Distribution of (non-zero) weights')
    if hls_model is not None:
        graph = hls_model.graph
        data, types = {}, {}
        for node in graph:
            for wname, q in node.qweights.items():
                var = _weight_type_variable(node, wname)
                t = node.types.get(var)
                if t is None or not np.size(q):
                    continue
                data[f'{node.name}/{wname}'] = _log2_abs(t.to_float(np.asarray(q)))
                types[f'{node.name}/{wname}'] = t
        wph = _distribution_figure(plt, data, types, plot, 'Distribution of (non-zero) quantized weights')
    if X is not None and model is not None and hasattr(model, 'layers'):
        ap = _distribution_figure(plt, {k: _log2_abs(v) for k, v in get_ymodel_keras(model, X).items()}, {}, plot,
                                  'Distribution of (non-zero) activations')
    if X is not None and hls_model is not None:
        outputs, stats = hls_model.emulator.trace(X)
        graph = hls_model.graph
        notes = {n: f'({stats[n].overflow} overflow)' if stats[n].overflow else '' for n in outputs}
        aph = _distribution_figure(plt, {n: _log2_abs(v) for n, v in outputs.items()},
                                   {n: graph[n].result_type for n in outputs}, plot,
                                   'Distribution of (non-zero) activations, fixed point', notes)
    return wp, wph, ap, aph


def _weight_type_variable(node, wname: str) -> str | None:
    from .semantics.spec import spec_of
    var = spec_of(node).weights.get(wname)
    return var if var is not None else ('param' if 'param' in node.types else None)


# ---------------------------------------------------------------------------- against Keras

def get_ymodel_keras(keras_model, X) -> dict[str, np.ndarray]:
    """Every Keras layer's output on X, by layer name (a layer's built-in activation: '<name>_<activation>')."""
    import keras
    layers = [layer for layer in keras_model.layers if not isinstance(layer, (keras.layers.InputLayer,
                                                                              keras.layers.Dropout))]
    outputs = keras.Model(inputs=keras_model.inputs, outputs=[layer.output for layer in layers]).predict(X, verbose=0)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    ymodel = {}
    for layer, y in zip(layers, outputs):
        activation = getattr(layer, 'activation', None)
        name = getattr(activation, '__name__', 'linear')
        if activation is not None and name != 'linear' and not isinstance(layer, keras.layers.Activation):
            ymodel[f'{layer.name}_{name}'] = np.asarray(y)
            inner = keras.Model(inputs=keras_model.inputs, outputs=layer.input)
            ymodel[layer.name] = np.asarray(_linear_part(layer, inner.predict(X, verbose=0)))
        else:
            ymodel[layer.name] = np.asarray(y)
    return ymodel


def _linear_part(layer, x):
    """A layer's output with its built-in activation left out (the value hls4ml traces under its name)."""
    saved = layer.activation
    import keras
    layer.activation = keras.activations.linear
    try:
        return keras.ops.convert_to_numpy(layer(x))
    finally:
        layer.activation = saved


def compare(keras_model, hls_model, X, plot_type: str = 'dist_diff'):
    """Each layer's output difference between Keras and the fixed-point model, as hls4ml's compare()."""
    if plot_type not in ('dist_diff', 'norm_diff'):
        raise ValueError(f"compare: plot_type={plot_type!r}; use 'dist_diff' or 'norm_diff'")
    plt = _pyplot()
    ymodel = get_ymodel_keras(keras_model, X)
    ysim, _ = hls_model.emulator.trace(X)
    names = [n for n in ysim if n in ymodel and np.shape(ymodel[n]) == np.shape(ysim[n])]
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 4))
    if plot_type == 'norm_diff':
        ax.bar(names, [float(np.linalg.norm(ysim[n] - ymodel[n])) for n in names])
        ax.set_ylabel('norm of the difference')
    else:
        ax.boxplot([_relative_difference(ymodel[n], ysim[n]) for n in names], sym='k+')
        ax.set_xticks(np.arange(1, len(names) + 1))
        ax.set_xticklabels(names)
        ax.set_ylabel('|difference| / |Keras value| (capped at 1)')
    ax.set_title('Layer-by-layer output differences, Keras vs fixed point')
    plt.setp(ax.get_xticklabels(), rotation=90)
    fig.tight_layout()
    return fig


def _relative_difference(reference, value) -> np.ndarray:
    ref, val = np.ravel(reference).astype(np.float64), np.ravel(value).astype(np.float64)
    diff = np.abs(val - ref)
    out = np.minimum(diff / np.where(ref != 0, np.abs(ref), 1.0), 1.0)
    return np.where((ref == 0) & (diff > 0), 1.0, np.where(ref == 0, 0.0, out))
