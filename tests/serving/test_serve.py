"""The container entrypoint `serve`, run for real with the CPU backend in place of SGLang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from local.server import LocalServer, free_port
from tests.serving.helpers import ADAPTER_HEADER, CONTAINER, launch

SERVE = [sys.executable, str(CONTAINER / "serve"), "serve"]
CHAT = {"messages": [{"role": "user", "content": "fever cough and fatigue"}], "max_tokens": 12, "temperature": 0}


def serve(tmp_path, engine_command: str, env: dict | None = None) -> LocalServer:
    port, engine_port = free_port(), free_port()
    return launch(
        [*SERVE, "--host", "127.0.0.1", "--port", str(port), "--engine-port", str(engine_port)],
        port,
        env={"SM_ENGINE_COMMAND": engine_command, **(env or {})},
        log=tmp_path / "serve.log",
    )


def children(server: LocalServer) -> list[psutil.Process]:
    return psutil.Process(server.process.pid).children(recursive=True)


def gone(procs: list[psutil.Process], timeout: float = 10) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return not alive


def test_invalid_setting_stops_startup_naming_it():
    env = {**os.environ, "SM_SGLANG_MAX_LORA_RANK": "sixteen", "SM_SGLANG_NOT_A_FLAG": "1"}
    r = subprocess.run(SERVE, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "SM_SGLANG_MAX_LORA_RANK: 'sixteen' is not an integer" in r.stderr
    assert "SM_SGLANG_NOT_A_FLAG: unknown SGLang flag" in r.stderr


def test_serve_runs_engine_and_front_with_preloaded_adapter_then_stops_on_sigterm(tmp_path, tiny_model, tiny_adapters):
    engine = (
        f"{sys.executable} -m local.backend --model {tiny_model} --port {{port}} "
        f"--lora clinical={tiny_adapters['clinical']}"
    )
    env = {"SM_SGLANG_MODEL_PATH": str(tiny_model), "SM_SGLANG_LORA_PATHS": f"clinical={tiny_adapters['clinical']}"}
    server = serve(tmp_path, engine, env)
    try:
        server.wait_ready("/ping", timeout=90)
        base = httpx.post(f"{server.url}/invocations", json=CHAT, timeout=60)
        tuned = httpx.post(f"{server.url}/invocations", json=CHAT, headers={ADAPTER_HEADER: "clinical"}, timeout=60)
        assert base.status_code == tuned.status_code == 200, (base.text, tuned.text)
        assert tuned.json()["choices"][0]["message"]["content"] != base.json()["choices"][0]["message"]["content"]
        procs = children(server)
        assert len(procs) >= 2  # engine and front
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0
    assert gone(procs)


def test_serve_exits_when_the_engine_dies_and_stops_the_front(tmp_path):
    server = serve(tmp_path, f"{sys.executable} -m local.backend --fixed-response ok --port {{port}}")
    try:
        server.wait_ready("/ping", timeout=60)
        procs = children(server)
        engine = next(p for p in procs if "local.backend" in " ".join(p.cmdline()))
        os.kill(engine.pid, signal.SIGKILL)
        assert server.process.wait(30) != 0
        assert gone(procs)
        assert "the engine exited" in server.log_tail()
    finally:
        server.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_is_forwarded_to_both_processes(tmp_path, sig):
    server = serve(tmp_path, f"{sys.executable} -m local.backend --fixed-response ok --port {{port}}")
    try:
        server.wait_ready("/ping", timeout=60)
        procs = children(server)
        start = time.monotonic()
        os.kill(server.process.pid, sig)
        assert server.process.wait(30) == 0
        assert gone(procs) and time.monotonic() - start < 15
    finally:
        server.stop()
