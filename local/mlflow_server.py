"""A local MLflow tracking server (sqlite store, local artifacts) on 127.0.0.1, for tests and the demo.

    server = start_mlflow(Path(".demo/mlflow"))   # ~20 s until /health answers on this machine
    ...
    server.stop()                                  # by its PID (its own process group)

It accepts OTLP traces at ``/v1/traces`` (header ``x-mlflow-experiment-id``) and serves the UI.
"""

from __future__ import annotations

import sys
from pathlib import Path

from local.server import LocalServer, free_port


def start_mlflow(root: Path, *, port: int | None = None, timeout: float = 180.0) -> LocalServer:
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return LocalServer.start(args, port=port, health="/health", timeout=timeout, cwd=root)
