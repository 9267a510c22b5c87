"""Start a built AgentCore code package on this machine the way AgentCore starts it.

    server = start_package(package_dir, ["opentelemetry-instrument", "main.py"], env)   # a LocalServer
    ...
    server.stop()

What AgentCore does, as far as this emulation goes: the package's root is the working directory and on
``PYTHONPATH``; the entry point runs with the runtime's Python (3.13) and nothing else installed (here: an
empty virtualenv of this machine's 3.13, ``agent_package.runtime_python()``, so nothing of the dev virtualenv
leaks in, and the package's cp313 wheels and bytecode are what runs); a console script named
first (``opentelemetry-instrument``) comes from the package's ``bin/``, which is on ``PATH`` with the root
(``opentelemetry-instrument`` finds ``main.py`` there); the process sees exactly ``env`` (the runtime's
environment variables) plus ``PATH``, ``PYTHONPATH``, ``HOME`` and, because the package is read-only in a
microVM, ``PYTHONDONTWRITEBYTECODE=1``: the only bytecode is what the package ships. One substitution:
AgentCore's contract binds 0.0.0.0:8080; here the app binds ``127.0.0.1:<port>``
(``AGENTCORE_EMULATOR_BIND``, read by ``agent.app.main`` only).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from local.server import LocalServer, free_port

BIND_VAR = "AGENTCORE_EMULATOR_BIND"


def runtime_python(root: Path | None = None) -> Path:
    """``python3`` of an empty virtualenv of the runtime's Python (created once under ``root``)."""
    from stacks.constructs.agent_package import PYTHON_VERSION
    from stacks.constructs.agent_package import runtime_python as base

    root = root or Path(tempfile.gettempdir()) / f"agentcore-python-{PYTHON_VERSION}"
    python = root / "bin" / "python3"
    if not python.exists():
        subprocess.run([base(), "-m", "venv", "--without-pip", "--clear", str(root)], check=True, capture_output=True)
    return python


def command(package: Path, entrypoint: list[str], python: Path) -> list[str]:
    """The process AgentCore starts for ``entrypoint`` (at most two strings, e.g. opentelemetry-instrument main.py)."""
    if not 1 <= len(entrypoint) <= 2:
        raise ValueError(f"an AgentCore entry point has 1 or 2 strings, not {entrypoint!r}")
    first = package / "bin" / entrypoint[0]
    if first.is_file():  # a console script of the package
        return [str(python), str(first), *entrypoint[1:]]
    return [str(python), *entrypoint]


def package_env(package: Path, env: dict[str, str], python: Path, port: int) -> dict[str, str]:
    return {
        **env,
        "PATH": os.pathsep.join([str(python.parent), str(package), str(package / "bin"), "/usr/bin", "/bin"]),
        "PYTHONPATH": str(package),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": env.get("HOME", tempfile.gettempdir()),
        BIND_VAR: f"127.0.0.1:{port}",
    }


def start_package(
    package: Path, entrypoint: list[str], env: dict[str, str], *, port: int | None = None, timeout: float = 120.0
) -> LocalServer:
    """The package's app, started as AgentCore starts it, healthy on ``/ping`` (see the module docstring)."""
    port = port or free_port()
    python = runtime_python()
    full = package_env(package, env, python, port)
    # `env -i`: the process gets exactly `full`, not this process's environment as well.
    args = ["env", "-i", *(f"{k}={v}" for k, v in sorted(full.items())), *command(package, entrypoint, python)]
    return LocalServer.start(args, port=port, cwd=package, timeout=timeout)
