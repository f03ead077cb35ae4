"""Shared pytest setup."""

import os

import pytest

# Must happen before any test module imports keras (fixtures run too late for module imports).
os.environ.setdefault('KERAS_BACKEND', 'torch')


@pytest.fixture(scope='session', autouse=True)
def keras_backend() -> str:
    """Run Keras on the torch backend unless KERAS_BACKEND says otherwise."""
    return os.environ.setdefault('KERAS_BACKEND', 'torch')


def pytest_addoption(parser: pytest.Parser) -> None:
    """--runslow: also run the tests marked `slow` (large builds, long sweeps)."""
    parser.addoption('--runslow', action='store_true', default=False,
                     help='run tests marked slow (large g++/Verilator builds, long sweeps)')


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `@pytest.mark.slow` tests unless --runslow is given."""
    if config.getoption('--runslow'):
        return
    skip_slow = pytest.mark.skip(reason='slow test: run with --runslow')
    for item in items:
        if 'slow' in item.keywords:
            item.add_marker(skip_slow)
