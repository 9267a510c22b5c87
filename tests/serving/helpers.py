"""Helpers for the serving tests: real servers on free ports, stopped by PID.

Servers (the CPU backend, the SageMaker front, `serve`) run as ``local.server.LocalServer`` subprocesses on
127.0.0.1 and are waited for over HTTP.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import httpx

from local.server import LocalServer, wait_until

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "containers" / "sglang"

ADAPTER_HEADER = "X-Amzn-SageMaker-Adapter-Identifier"


def launch(cmd: list[str], port: int, *, log: Path, env: dict | None = None) -> LocalServer:
    """``cmd`` started from the repository root, its output in ``log``; not waited on yet: call ``wait_ready``."""
    return LocalServer.start(cmd, port=port, health=None, env=env, log=log, cwd=ROOT)


def backend_cmd(port: int, *, model: Path | None = None, fixed: str | None = None, extra=()) -> list[str]:
    cmd = [sys.executable, "-m", "local.backend", "--port", str(port)]
    cmd += ["--model", str(model)] if model else ["--fixed-response", fixed]
    return cmd + list(extra)


def front_cmd(port: int, engine_url: str, served_model_name: str, adapters=()) -> list[str]:
    cmd = [
        sys.executable,
        str(CONTAINER / "sagemaker_front.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--engine-url",
        engine_url,
        "--served-model-name",
        served_model_name,
    ]
    for a in adapters:
        cmd += ["--adapter", a]
    return cmd


def metrics(url: str) -> dict[str, float]:
    """The engine's Prometheus counters (SGLang's names), e.g. ``sglang:num_running_reqs``."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {n: float(v) for n, v in (line.split() for line in text.splitlines() if line and not line.startswith("#"))}


def wait_idle(url: str, within: float) -> None:
    """Waits until the engine runs and queues nothing; fails after ``within`` seconds."""
    busy = ("sglang:num_running_reqs", "sglang:num_queue_reqs")
    wait_until(lambda: metrics(url), lambda m: not any(m[k] for k in busy), timeout=within, what="the engine idle")


def abandon(url: str, body: dict, *, after: float, path: str = "/invocations", headers: dict | None = None) -> bytes:
    """Sends a request over a raw socket, reads for ``after`` seconds, then hangs up (a client that leaves).
    Returns what arrived before it left."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
    ]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    received = b""
    with socket.create_connection((host, int(port)), timeout=after) as s:
        s.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + payload)
        deadline = time.monotonic() + after
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
    return received
