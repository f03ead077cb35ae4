"""Fold a BatchNormalization (a Scale node) into the Dense or Conv layer before it.

As in hls4ml 1.3, the fold happens only when the layer's result precision is 'auto' (an
explicit result type is a rounding step the user asked for, and folding would remove it)
and the layer's output feeds nothing else. The float arithmetic is hls4ml's, in the weights' own
dtype (float32 from Keras): ``kernel' = scale * kernel`` (scale broadcast over the last, output
channel axis of the Dense or Conv kernel), ``bias' = scale * bias + bn_bias``, so the quantized
weights are identical. If the BatchNormalization had an explicit result precision, the fused
layer takes it as its result type.
"""

from __future__ import annotations

from ..config import INTERNAL_PRECISION_ATTR
from ..fixed import AUTO
from ..ir import Graph

#: ops whose kernel's last axis is the output channel axis a BatchNormalization scales
FOLDABLE = ('Dense', 'Conv')


def fuse_batchnorm(graph: Graph) -> Graph:
    """Fold every foldable Scale-after-Dense/Conv pair in place; returns the graph."""
    for node in list(graph.nodes):
        if node.op != 'Scale' or len(node.inputs) != 1 or node.attrs.get('fold') is False:
            continue  # attrs['fold'] = False: a front end's exact scale that must stay a separate node
        parent = graph[node.inputs[0]]
        if parent.op not in FOLDABLE or len(graph.consumers(parent.name)) != 1 or parent.name in graph.outputs:
            continue
        if INTERNAL_PRECISION_ATTR in parent.attrs:
            continue  # a composed layer's exact internal weights (the all-ones kernel of a Keras Dot)
        if parent.config.get('Precision', {}).get('result', AUTO) != AUTO:
            continue
        scale, bn_bias = node.weights['scale'], node.weights['bias']
        if scale.shape != parent.weights['kernel'].shape[-1:]:
            continue  # not a per-output-channel scale
        parent.weights['kernel'] = scale * parent.weights['kernel']
        parent.weights['bias'] = scale * parent.weights['bias'] + bn_bias
        bn_result = node.config.get('Precision', {}).get('result', AUTO)
        if bn_result != AUTO:
            parent.config['Precision']['result'] = bn_result
        parent.attrs.setdefault('fused', []).append(node.name)
        graph.remove(node.name)
    return graph
