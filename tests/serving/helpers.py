"""Helpers for the serving tests: real servers on free ports, stopped by PID.

Servers (the CPU backend, the SageMaker front, `serve`) run as subprocesses on 127.0.0.1 and are
waited for over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from local.aws import free_port  # noqa: F401  (one free_port for the repository)

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "containers" / "sglang"

ADAPTER_HEADER = "X-Amzn-SageMaker-Adapter-Identifier"


class Server:
    """A subprocess serving HTTP on 127.0.0.1:port; stopped by its PID."""

    def __init__(self, cmd: list[str], port: int, *, env: dict | None = None, log: Path | None = None):
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        self.log = log
        self._out = open(log, "wb") if log else None  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=self._out or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, path: str = "/health", timeout: float = 60.0, status: int | None = 200) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                r = httpx.get(self.url + path, timeout=2)
                if status is None or r.status_code == status:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.url}{path} not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log and self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._out:
            self._out.close()
        return self.proc.returncode


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
    deadline = time.monotonic() + within
    while (m := metrics(url))["sglang:num_running_reqs"] or m["sglang:num_queue_reqs"]:
        assert time.monotonic() < deadline, f"the engine is still busy after {within} s: {m}"
        time.sleep(0.05)


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
