"""Fixtures for the serving tests: the tiny model and adapters built once per session, real servers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from local.server import free_port
from local.tiny import build_tiny_adapter, build_tiny_model
from tests.serving.helpers import CONTAINER, backend_cmd, front_cmd, launch

sys.path.insert(0, str(CONTAINER))  # the container's modules are flat files, as in the image


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_adapters(tiny_model, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        name: build_tiny_adapter(tiny_model, root / name, rank=r, seed=s)
        for name, r, s in (("clinical", 8, 1), ("triage", 4, 2))
    }


@pytest.fixture(scope="session")
def model_backend(tiny_model, tmp_path_factory):
    """The CPU backend with the tiny model, no adapters at start."""
    port = free_port()
    server = launch(backend_cmd(port, model=tiny_model), port, log=tmp_path_factory.mktemp("logs") / "backend.log")
    yield server.wait_ready("/health")
    server.stop()


@pytest.fixture(scope="session")
def front(model_backend, tiny_model, tmp_path_factory):
    """The SageMaker front in front of the model backend."""
    port = free_port()
    server = launch(
        front_cmd(port, model_backend.url, str(tiny_model)), port, log=tmp_path_factory.mktemp("logs") / "front.log"
    )
    yield server.wait_ready("/ping")
    server.stop()
