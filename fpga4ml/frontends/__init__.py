"""Framework front ends: convert trained models to the IR (frameworks are imported lazily)."""

from .keras import SUPPORTED_LAYERS, keras_to_graph, load_keras_model

__all__ = ['SUPPORTED_LAYERS', 'keras_to_graph', 'load_keras_model']
