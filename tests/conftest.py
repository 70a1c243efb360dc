"""pytest hooks of the suite. The builders the test modules share are in helpers.py."""

from __future__ import annotations

import pytest
from helpers import INTEGRATION, MlflowServer

from score_lit.training.quiet import QUIET_WARNINGS


def pytest_configure(config):
    """The warnings a training run silences (score_lit.training.quiet) are silenced in tests that build a bare
    Trainer too (`fit` silences them itself)."""
    for pattern in QUIET_WARNINGS:
        config.addinivalue_line("filterwarnings", f"ignore:{pattern}")


def pytest_collection_modifyitems(config, items):
    """Every lmms / slurm / distributed / resume / mlflow_server test is also `integration`: `make test-fast`
    (-m "not integration") leaves them to `make test` (every test) and `make test-integration`."""
    for item in items:
        if any(item.get_closest_marker(m) for m in INTEGRATION):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """One real `mlflow server` on loopback for the session (its own sqlite store and artifacts), started by the first
    test that asks for it and killed at the end. A test that kills it starts it again before it returns."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server
    server.kill()
