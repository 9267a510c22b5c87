"""Fixtures shared by every test area."""

from __future__ import annotations

import pytest

from local.mlflow_server import start_mlflow


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """One real MLflow tracking server (sqlite, loopback) for the session, stopped by its PID at the end."""
    with start_mlflow(tmp_path_factory.mktemp("mlflow")) as server:
        yield server
