"""Agent benchmarks, measured in one run on loopback (figures are ratios or percentiles, not absolutes).

1. Session start, as AgentCore pays it: process start -> first answered invocation, for our app and for a
   bare ``BedrockAgentCoreApp`` that answers at once, both started the way AgentCore starts them
   (local/agentcore.py): from the built package directory (built for this machine's platform through the
   same code path as the linux/arm64 asset: the arm64 wheels cannot run here), on the runtime's Python 3.13, under
   ``opentelemetry-instrument`` with the deployed environment, no bytecode written. Median of alternated
   rounds and the ratio (target <= 1.5); the /ping figure as a second line (target <= 1.3). The package's
   unpacked size, before (pip's tree) and after (what ships, bytecode included), against the 60 MB target.
2. Load: N concurrent sessions for D seconds of structured cases against the app, wired to moto, the
   SageMaker runtime emulator and a fast scripted model; prints 5xx count (target 0), p50 and p99.

    .venv/bin/python bench/agent.py [--rounds 5] [--sessions 50] [--duration 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local.agentcore import start_package  # noqa: E402
from local.aws import provision, start_moto  # noqa: E402
from local.server import LocalServer, free_port  # noqa: E402
from stacks.agent_stack import observability_environment  # noqa: E402
from stacks.constructs import agent_package as pkg  # noqa: E402

BARE_MAIN = """#!/usr/bin/env python3
import os
from bedrock_agentcore.runtime import BedrockAgentCoreApp
app = BedrockAgentCoreApp()
@app.entrypoint
async def invoke(payload):
    return payload
host, _, port = os.environ.get("AGENTCORE_EMULATOR_BIND", "0.0.0.0:8080").rpartition(":")
app.run(port=int(port), host=host)
"""
PATIENTS = 50


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def session_start(package: Path, env: dict[str, str], body: bytes) -> tuple[float, float]:
    """Seconds from spawning the package's process to /ping healthy, and to the first answered invocation."""
    start = time.perf_counter()
    with start_package(package, ["opentelemetry-instrument", "main.py"], env) as server:
        ping = time.perf_counter() - start
        request = urllib.request.Request(
            server.url + "/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as r:
            r.read()
            if r.status != 200:
                raise RuntimeError(f"{package.name} answered {r.status}")
        return ping, time.perf_counter() - start


def build_packages(root: Path) -> tuple[Path, Path]:
    """Our package for this machine, and the same tree with a bare main.py (hard links: no copy)."""
    ours = pkg.build_local_package(root / "agent")
    bare = root / "bare"
    shutil.copytree(ours, bare, copy_function=os.link)
    (bare / "main.py").unlink()
    (bare / "main.py").write_text(BARE_MAIN)
    (bare / "main.py").chmod(0o755)
    return ours, bare


def report_sizes(ours: Path) -> None:
    deps = pkg.ensure_dependencies(pkg.AGENT_DIR / "requirements.txt")
    arm64 = pkg.ensure_package(pkg.AGENT_DIR, deps)
    print(
        f"package (linux/arm64, unpacked): before {pkg.package_size(deps) / 1e6:.1f} MB (pip's tree, no bytecode), "
        f"after {pkg.package_size(arm64) / 1e6:.1f} MB (what ships, bytecode included; target <= 60 MB); "
        f"this machine's build {pkg.package_size(ours) / 1e6:.1f} MB"
    )


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
    parser.add_argument("--rounds", type=int, default=5, help="session starts of each app (alternated)")
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
        agent_vars = {
            **resources.env(),
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": emulator.url,
            "SAGEMAKER_ENDPOINT_NAME": "clinical-llm",
            "SAGEMAKER_INFERENCE_COMPONENT": "clinical-lora",
        }
        env = {**os.environ, **agent_vars}

        otlp_port = free_port()
        otlp = stack.enter_context(
            LocalServer.start([py, "-m", "local.otlp_receiver", "--port", str(otlp_port)], port=otlp_port, cwd=ROOT)
        )
        deployed = {
            **agent_vars,
            **observability_environment(record_prompts=False),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{otlp.url}/v1/traces",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"{otlp.url}/v1/logs",
        }
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-bench-")))
        ours, bare = build_packages(root)
        report_sizes(ours)
        case = json.dumps({"case": {"patient_id": "P-000001", "symptoms": ["fever", "cough"]}}).encode()
        agent_runs, bare_runs = [], []
        for _ in range(a.rounds):
            agent_runs.append(session_start(ours, deployed, case))
            bare_runs.append(session_start(bare, deployed, case))
        print(
            f"session start from the package (built for {', '.join(pkg.host_platforms())} through the same code "
            f"path as the linux/arm64 asset), under opentelemetry-instrument, median of {a.rounds} alternated:"
        )
        for i, what, target in ((1, "process start -> first answer", 1.5), (0, "process start -> /ping healthy", 1.3)):
            agent_t = statistics.median(r[i] for r in agent_runs)
            bare_t = statistics.median(r[i] for r in bare_runs)
            print(
                f"  {what}: agent app {agent_t * 1000:.0f} ms, bare BedrockAgentCoreApp {bare_t * 1000:.0f} ms, "
                f"ratio {agent_t / bare_t:.2f}x (target <= {target:.2f}x)"
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
            f"venv app: first invocation right after /ping {first * 1000:.0f} ms, second {second * 1000:.0f} ms "
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
