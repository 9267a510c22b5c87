"""Fixtures shared by every test area."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.mlflow_server import start_mlflow


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """One real MLflow tracking server (sqlite, loopback) for the session, stopped by its PID at the end."""
    with start_mlflow(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture(scope="session")
def assembly_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cdk.out")


@pytest.fixture(scope="session")
def stages(assembly_dir):
    """The default environments (dev, staging, prod) and the pipeline, synthesized once for the session into
    ``assembly_dir`` (shared by the infrastructure and the tools' tests)."""
    from tools.synth import synth

    return synth(str(assembly_dir))
