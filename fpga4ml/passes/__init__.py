"""Graph passes: plain functions from a graph to a (modified) graph, one file per pass."""
