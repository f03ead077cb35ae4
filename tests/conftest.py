"""Shared pytest setup."""

import os

import pytest

# Must happen before any test module imports keras (fixtures run too late for module imports).
os.environ.setdefault('KERAS_BACKEND', 'torch')


@pytest.fixture(scope='session', autouse=True)
def keras_backend() -> str:
    """Run Keras on the torch backend unless KERAS_BACKEND says otherwise."""
    return os.environ.setdefault('KERAS_BACKEND', 'torch')
