"""Agent benchmarks, measured in one run on loopback (figures are ratios or percentiles, not absolutes).

1. Cold start: process start -> ``GET /ping`` healthy, ``python -m agent.app --local`` vs a bare
   ``BedrockAgentCoreApp``, alternated; target ratio <= 1.3 (heavy imports wait for the first request).
2. Load: N concurrent sessions for D seconds of structured cases against the app, wired to moto, the
   SageMaker runtime emulator and a fast scripted model; prints 5xx count (target 0), p50 and p99.

    .venv/bin/python bench/agent.py [--rounds 7] [--sessions 50] [--duration 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local.aws import LocalServer, free_port, provision, start_moto  # noqa: E402

BARE_APP = """
import sys
from bedrock_agentcore.runtime import BedrockAgentCoreApp
app = BedrockAgentCoreApp()
@app.entrypoint
async def invoke(payload):
    return payload
app.run(port=int(sys.argv[1]), host="127.0.0.1")
"""
PATIENTS = 50


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cold_start(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds from spawning the process to the first healthy /ping: wall clock, and CPU time used
    (steadier than wall time on a shared machine)."""
    port = free_port()
    start = time.perf_counter()
    process = subprocess.Popen(
        [*args, str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - start, cpu_seconds(process.pid)
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"{args} exited with {process.returncode}") from None
                time.sleep(0.005)
    finally:
        process.terminate()
        process.wait(10)


async def load(url: str, sessions: int, duration: float) -> tuple[list[float], dict[int, int]]:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + duration

    async def session(n: int, client: httpx.AsyncClient) -> None:
        i = 0
        while time.perf_counter() < deadline:
            case = {
                "patient_id": f"P-{(n * 7 + i) % PATIENTS + 1:06d}",
                "symptoms": ["fever", "cough"],
                "vitals": {"temperature_c": 38.4, "heart_rate_bpm": 104},
            }
            t = time.perf_counter()
            try:
                r = await client.post(
                    "/invocations",
                    json={"case": case},
                    headers={"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": f"bench-session-{n:03d}"},
                )
                status = r.status_code
            except httpx.HTTPError:
                status = 599  # transport failure counts as a server error
            latencies.append(time.perf_counter() - t)
            statuses[status] = statuses.get(status, 0) + 1
            i += 1

    limits = httpx.Limits(max_connections=sessions, max_keepalive_connections=sessions)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(session(n, client) for n in range(sessions)))
    return latencies, statuses


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="cold starts of each app (alternated)")
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    a = parser.parse_args()
    py = sys.executable
    with ExitStack() as stack:
        moto = stack.enter_context(start_moto())
        resources = provision(moto.url, patients=PATIENTS)
        port = free_port()
        model = stack.enter_context(
            LocalServer.start([py, "-m", "local.scripted_model", "--port", str(port)], port=port, cwd=ROOT)
        )
        port = free_port()
        route = f"clinical-llm/clinical-lora={model.url}#adapter=clinical-lora"
        emulator = stack.enter_context(
            LocalServer.start(
                [py, "-m", "local.sagemaker_runtime", "--port", str(port), "--route", route], port=port, cwd=ROOT
            )
        )
        env = {
            **os.environ,
            **resources.env(),
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": emulator.url,
            "SAGEMAKER_ENDPOINT_NAME": "clinical-llm",
            "SAGEMAKER_INFERENCE_COMPONENT": "clinical-lora",
        }

        agent_runs, bare_runs = [], []
        for _ in range(a.rounds):
            agent_runs.append(cold_start([py, "-m", "agent.app", "--local", "--port"], env))
            bare_runs.append(cold_start([py, "-c", BARE_APP], env))
        print(f"cold start, process start -> /ping healthy (median of {a.rounds}, alternated):")
        for i, what in enumerate(("wall", "CPU")):
            agent_cold = statistics.median(r[i] for r in agent_runs)
            bare_cold = statistics.median(r[i] for r in bare_runs)
            print(
                f"  {what:>4}: agent app {agent_cold * 1000:.0f} ms, "
                f"bare BedrockAgentCoreApp {bare_cold * 1000:.0f} ms,"
                f" ratio {agent_cold / bare_cold:.2f}x (target <= 1.30x)"
            )

        port = free_port()
        app = stack.enter_context(
            LocalServer.start([py, "-m", "agent.app", "--local", "--port", str(port)], port=port, env=env, cwd=ROOT)
        )
        t = time.perf_counter()
        urllib.request.urlopen(
            urllib.request.Request(
                app.url + "/invocations", data=b'{"prompt": "warm up"}', headers={"Content-Type": "application/json"}
            ),
            timeout=120,
        ).read()
        first = time.perf_counter() - t
        t = time.perf_counter()
        urllib.request.urlopen(
            urllib.request.Request(
                app.url + "/invocations", data=b'{"prompt": "warm up"}', headers={"Content-Type": "application/json"}
            ),
            timeout=120,
        ).read()
        second = time.perf_counter() - t
        print(
            f"first invocation (lazy imports) {first * 1000:.0f} ms, second {second * 1000:.0f} ms "
            f"({first / second:.1f}x)"
        )

        servers = {"agent app": app, "emulator": emulator, "scripted model": model, "moto": moto}
        cpu_before = {name: cpu_seconds(server.pid) for name, server in servers.items()}
        latencies, statuses = asyncio.run(load(app.url, a.sessions, a.duration))
        cpu = {name: cpu_seconds(server.pid) - cpu_before[name] for name, server in servers.items()}
        errors = sum(n for s, n in statuses.items() if s >= 500)
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        print(
            f"load: {a.sessions} concurrent sessions for {a.duration:.0f} s, structured cases "
            f"(4 model calls + 2 AWS calls + diagnose each)"
        )
        print(
            f"  requests {len(latencies)} ({len(latencies) / a.duration:.1f}/s), "
            f"statuses {dict(sorted(statuses.items()))}"
        )
        print(f"  5xx {errors} (target 0), p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, p99/p50 {p99 / p50:.1f}x")
        print(
            "  CPU per request: " + ", ".join(f"{name} {t / len(latencies) * 1000:.0f} ms" for name, t in cpu.items())
        )
        if errors:
            print(app.log_tail(3000))


if __name__ == "__main__":
    main()
