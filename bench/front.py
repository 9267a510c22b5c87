"""What the SageMaker front costs: latency and throughput through it vs straight to the engine.

    python bench/front.py [--seconds 2] [--rounds 3]

The engine is the CPU backend in ``--fixed-response`` mode (instant answers), so the front's own
cost is what is measured. For 1, 16 and 64 concurrent clients, direct and through-the-front runs
alternate (``--rounds`` each, to even out noisy neighbours); then streaming time to first byte.
Prints p50/p99 latency, throughput and the ratios against the targets (added p50 <= 1 ms and
p99 <= 5 ms at 1 client, throughput >= 0.9x direct), and the CPU time each server spends per
request, which noisy neighbours disturb far less than wall-clock figures: on a machine with fewer
free cores than the three processes here (load generator, front, engine), the throughput ratio
measures CPU sharing more than the front.

Then a client that leaves: against a slow engine (a 400-token answer at 20 ms a token, one generation
at a time), a stream is abandoned after its first bytes and a short request follows; how long that one
waits, through the front and direct, against the whole stream's time. Target: the front frees the engine
as a direct disconnect does (wait ratio front/direct <= 2x, and far below the whole stream).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local.server import LocalServer, free_port  # noqa: E402

BODY = json.dumps(
    {
        "messages": [{"role": "user", "content": "synthetic patient: fever and cough"}],
        "max_tokens": 64,
        "temperature": 0,
    }
).encode()
STREAM_BODY = json.dumps({**json.loads(BODY), "stream": True}).encode()
ANSWER = "Findings point to community-acquired pneumonia; recommend chest X-ray and antibiotics."
TARGETS = {"added_p50_ms": 1.0, "added_p99_ms": 5.0, "throughput_ratio": 0.9, "disconnect_wait_ratio": 2.0}
LONG = " ".join(f"w{i}" for i in range(400))


def start(cmd: list[str], port: int, health: str) -> LocalServer:
    return LocalServer.start(cmd, port=port, health=health, cwd=ROOT)


async def load(session: aiohttp.ClientSession, url: str, clients: int, seconds: float) -> list[float]:
    """Closed loop: ``clients`` workers send requests back to back for ``seconds``; latencies in s."""
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def worker():
        while (t0 := time.perf_counter()) < end:
            async with session.post(url + "/invocations", data=BODY, headers={"content-type": "application/json"}) as r:
                await r.read()
                assert r.status == 200, r.status
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


async def first_byte(session: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.post(
            url + "/invocations", data=STREAM_BODY, headers={"content-type": "application/json"}
        ) as r:
            await r.content.readany()
            out.append(time.perf_counter() - t0)
            await r.read()
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def cpu(procs: dict[str, psutil.Process]) -> dict[str, float]:
    return {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}


async def run(direct: str, front: str, seconds: float, rounds: int, procs: dict[str, psutil.Process]) -> dict:
    results: dict[int | str, dict] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for url in (direct, front):  # warm up connections and code paths
            await load(session, url, 16, 0.5)
        for clients in (1, 16, 64):
            samples: dict[str, list[float]] = {"direct": [], "front": []}
            count = {"direct": 0, "front": 0}
            elapsed = {"direct": 0.0, "front": 0.0}
            used = {"direct": {"engine": 0.0, "front": 0.0}, "front": {"engine": 0.0, "front": 0.0}}
            for _ in range(rounds):
                for name, url in (("direct", direct), ("front", front)):
                    t0, c0 = time.perf_counter(), cpu(procs)
                    lat = await load(session, url, clients, seconds / rounds)
                    elapsed[name] += time.perf_counter() - t0
                    c1 = cpu(procs)
                    for proc in c1:
                        used[name][proc] += c1[proc] - c0[proc]
                    samples[name] += lat
                    count[name] += len(lat)
            results[clients] = {
                name: {
                    "p50_ms": pct(samples[name], 50) * 1e3,
                    "p99_ms": pct(samples[name], 99) * 1e3,
                    "rps": count[name] / elapsed[name],
                    "n": count[name],
                    "cpu_us": {proc: t / count[name] * 1e6 for proc, t in used[name].items()},
                }
                for name in samples
            }
        ttfb: dict[str, list[float]] = {}
        for _ in range(rounds):
            for name, url in (("direct", direct), ("front", front)):
                ttfb.setdefault(name, []).extend(await first_byte(session, url, 100))
        results["ttfb"] = {name: {"p50_ms": pct(v, 50) * 1e3, "p99_ms": pct(v, 99) * 1e3} for name, v in ttfb.items()}
    return results


def report(results: dict) -> bool:
    ok = True
    print(
        f"{'clients':>7} {'direct p50':>10} {'front p50':>10} {'added p50':>10} {'added p99':>10} "
        f"{'direct rps':>10} {'front rps':>10} {'ratio':>6}"
    )
    for clients in (1, 16, 64):
        d, f = results[clients]["direct"], results[clients]["front"]
        ratio = f["rps"] / d["rps"]
        added50, added99 = f["p50_ms"] - d["p50_ms"], f["p99_ms"] - d["p99_ms"]
        print(
            f"{clients:>7} {d['p50_ms']:>9.2f}ms {f['p50_ms']:>9.2f}ms {added50:>9.2f}ms {added99:>9.2f}ms "
            f"{d['rps']:>10.0f} {f['rps']:>10.0f} {ratio:>5.2f}x"
        )
        ok &= ratio >= TARGETS["throughput_ratio"]
        cpu_us = f["cpu_us"]
        print(
            f"{'':>7} CPU per request through the front: front {cpu_us['front']:.0f} us, engine "
            f"{cpu_us['engine']:.0f} us (engine alone: {d['cpu_us']['engine']:.0f} us); "
            f"front/engine {cpu_us['front'] / d['cpu_us']['engine']:.2f}x"
        )
        if clients == 1:
            ok &= added50 <= TARGETS["added_p50_ms"] and added99 <= TARGETS["added_p99_ms"]
    t = results["ttfb"]
    print(
        f"streaming time to first byte (1 client): direct p50 {t['direct']['p50_ms']:.2f} ms, "
        f"front p50 {t['front']['p50_ms']:.2f} ms (added {t['front']['p50_ms'] - t['direct']['p50_ms']:.2f} ms; "
        f"p99 added {t['front']['p99_ms'] - t['direct']['p99_ms']:.2f} ms)"
    )
    print(
        f"targets (added p50 <= {TARGETS['added_p50_ms']} ms, p99 <= {TARGETS['added_p99_ms']} ms at 1 client; "
        f"throughput >= {TARGETS['throughput_ratio']}x direct): {'met' if ok else 'NOT met'}"
    )
    return ok


async def abandoned_then_next(url: str) -> tuple[float, float]:
    """(seconds a short request waits after a stream was abandoned, seconds the whole stream takes)."""
    long = json.dumps({**json.loads(STREAM_BODY), "max_tokens": 400}).encode()
    short = json.dumps({**json.loads(BODY), "max_tokens": 1}).encode()
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/invocations", data=long, headers=headers) as r:
            await r.content.readany()  # the engine is generating; now leave
        t0 = time.perf_counter()
        async with session.post(url + "/invocations", data=short, headers=headers) as r:
            await r.read()
        waited = time.perf_counter() - t0
        t0 = time.perf_counter()
        async with session.post(url + "/invocations", data=long, headers=headers) as r:
            await r.read()
        return waited, time.perf_counter() - t0


def disconnect(rounds: int) -> dict:
    engine_port, front_port = free_port(), free_port()
    direct, front = f"http://127.0.0.1:{engine_port}", f"http://127.0.0.1:{front_port}"
    engine_cmd = [sys.executable, "-m", "local.backend", "--fixed-response", LONG, "--token-delay-ms", "20"]
    with (
        start([*engine_cmd, "--port", str(engine_port)], engine_port, "/health"),
        start(front_command(front_port, direct), front_port, "/ping"),
    ):
        waits: dict[str, list[float]] = {"direct": [], "front": []}
        whole = 0.0
        for _ in range(rounds):
            for name, url in (("direct", direct), ("front", front)):
                waited, whole = asyncio.run(abandoned_then_next(url))
                waits[name].append(waited)
    return {name: statistics.median(v) for name, v in waits.items()} | {"whole_stream": whole}


def front_command(port: int, engine_url: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "containers" / "sglang" / "sagemaker_front.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--engine-url",
        engine_url,
        "--served-model-name",
        "base",
    ]


def report_disconnect(d: dict) -> bool:
    ratio = d["front"] / d["direct"]
    print(
        f"after an abandoned stream the next request waited: direct {d['direct'] * 1e3:.0f} ms, front "
        f"{d['front'] * 1e3:.0f} ms (front/direct {ratio:.2f}x; the whole stream takes {d['whole_stream']:.1f} s, "
        f"front wait/whole {d['front'] / d['whole_stream']:.3f}x); target front/direct <= "
        f"{TARGETS['disconnect_wait_ratio']}x: {'met' if ratio <= TARGETS['disconnect_wait_ratio'] else 'NOT met'}"
    )
    return ratio <= TARGETS["disconnect_wait_ratio"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=2.0, help="measured seconds per target and concurrency")
    p.add_argument("--rounds", type=int, default=3, help="alternations of direct and front per concurrency")
    args = p.parse_args()
    engine_port, front_port = free_port(), free_port()
    direct, front = f"http://127.0.0.1:{engine_port}", f"http://127.0.0.1:{front_port}"
    engine_cmd = [sys.executable, "-m", "local.backend", "--fixed-response", ANSWER, "--port", str(engine_port)]
    with (
        start(engine_cmd, engine_port, "/health") as engine,
        start(front_command(front_port, direct), front_port, "/ping") as proxy,
    ):
        procs = {"engine": psutil.Process(engine.pid), "front": psutil.Process(proxy.pid)}
        results = asyncio.run(run(direct, front, args.seconds, args.rounds, procs))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    report(results)
    report_disconnect(disconnect(args.rounds))


if __name__ == "__main__":
    main()
