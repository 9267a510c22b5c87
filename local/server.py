"""The one local harness for tests, the demo and the benchmarks: a free port on 127.0.0.1, a server subprocess
started and waited on until its health path answers, stopped by its PID; and a poll-until helper.

    port = free_port()
    with LocalServer.start([sys.executable, "-m", "local.backend", "--port", str(port)], port=port) as server:
        ...                                    # server.url, server.pid, server.log_tail()
    value = wait_until(get, done, timeout=10, what="the engine idle")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status ``GET url`` answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def wait_until(
    get: Callable[[], T],
    done: Callable[[T], object] = bool,
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Calls ``get`` until ``done`` holds for its value and returns that value; raises TimeoutError naming ``what``
    (and the last value) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done(value := get()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout} s (last: {value!r:.500})")
        time.sleep(interval)
    return value


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class LocalServer:
    """A server subprocess in its own process group on 127.0.0.1, waited on until ``health`` answers,
    stopped by its PID (the group's id). Its output goes to ``log`` (kept) or to a temporary file (removed
    on stop)."""

    def __init__(self, process: subprocess.Popen, url: str, log_path: Path, *, name: str, keep_log: bool = False):
        self.process = process
        self.name = name
        self.url = url
        self.log_path = log_path
        self.keep_log = keep_log

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(
        cls,
        args: list[str],
        *,
        port: int,
        health: str | None = "/ping",
        status: int | None = 200,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        cwd: str | Path | None = None,
        log: Path | None = None,
    ) -> LocalServer:
        """Starts ``args`` and waits until ``GET health`` answers ``status`` (any status when None);
        ``health=None`` returns at once (call ``wait_ready`` later)."""
        if log is None:
            fd, temporary = tempfile.mkstemp(prefix="local-server-", suffix=".log")
            os.close(fd)
        log_path = Path(temporary if log is None else log)
        with open(log_path, "wb") as out:
            process = subprocess.Popen(  # its own process group: workers it forks stop with it
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        url, name = f"http://127.0.0.1:{port}", " ".join(args[:3])
        server = cls(process, url, log_path, name=name, keep_log=log is not None)
        return server.wait_ready(health, status=status, timeout=timeout) if health else server

    def wait_ready(self, health: str = "/ping", *, status: int | None = 200, timeout: float = 60.0) -> LocalServer:
        """Waits until ``GET health`` answers ``status`` (any status when None); stops the server and raises
        with its output's tail if it exits or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while (code := http_status(self.url + health)) is None or (status is not None and code != status):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                tail = self.log_tail()  # before stop(), which may remove the log
                self.stop()
                answer = f"answered {code}, not {status}" if code else "did not answer"
                raise RuntimeError(f"{self.name}: {self.url}{health} {answer} after {timeout} s:\n{tail}")
            time.sleep(0.05)
        return self

    def log_tail(self, chars: int = 4000) -> str:
        """The last ``chars`` characters of what the server wrote (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """``sig`` (then SIGKILL) to the server's own process group, whose id is the server's PID; returns the
        server's exit code when every process of the group is gone (workers may outlive the server a moment)."""
        if self.process.poll() is None:
            os.killpg(self.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout)
        for kill in (None, signal.SIGKILL):  # wait for the group, then kill what is left and wait again
            if kill and _group_alive(self.pid):
                os.killpg(self.pid, kill)
            deadline = time.monotonic() + timeout
            while _group_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        if not self.keep_log:
            self.log_path.unlink(missing_ok=True)
        return self.process.returncode

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
