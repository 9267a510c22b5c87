"""The GPU check's steps (bench/gpu/run.sh runs this; ``--dry-run`` does the same on CPU).

1. Build a small Llama-architecture model with random weights (no hub: tokenizer trained on the spot, head
   dim 128 as SGLang's attention kernels want) and a LoRA adapter for it.
2. For each configuration (speculative decoding off, and on as the dev environment sets it: n-gram), derive
   the container's environment from the settings (``ModelSettings.container_environment``), check it as synth
   does (the container's manifest, then SGLang's parser), and start ``containers/sglang/serve``: the real
   engine on a private port behind our front, exactly as in the image.
3. Through the front: load the adapter (``POST /adapters``), invoke with and without the adapter header,
   stream, disconnect mid-stream and time how long until the engine runs nothing, then measure output
   tokens/s (one client and several) and time to first token; the same requests straight to the engine give
   the front's overhead at the engine's real speed.
4. Write ``report.json`` to ``--out``: every figure, each configuration's flags, and what was not run and why
   (EAGLE: no draft exists for a random-weight base; a real one needs a hub download or staged weights).

``--dry-run``: the CPU backend (local/backend.py, SGLang's API and /metrics names) stands in for the engine;
the tiny model; fewer and shorter requests. The figures mean nothing there; the flow is what is tested.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import socket
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from local.server import LocalServer, free_port  # noqa: E402

SERVE = ROOT / "containers" / "sglang" / "serve"
ADAPTER_HEADER = "X-Amzn-SageMaker-Adapter-Identifier"
PROMPT = "Patient P-000001, 45-year-old man: fever and cough for three days, temperature 101.3 F, heart rate 98."


# --- 1. the model ---------------------------------------------------------------------------------------


def build_model(root: Path, dry_run: bool) -> tuple[Path, Path]:
    from local.tiny import build_tiny_adapter, build_tiny_model, build_tiny_tokenizer

    base = root / "model"
    if dry_run:
        build_tiny_model(base)
    else:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        tok = build_tiny_tokenizer(base, vocab_size=4096)
        eot = tok.convert_tokens_to_ids("<|eot_id|>")
        config = LlamaConfig(  # ~120 M parameters: small, but sized like a real layer for the kernels
            vocab_size=len(tok),
            hidden_size=1024,
            intermediate_size=2816,
            num_hidden_layers=8,
            num_attention_heads=8,
            num_key_value_heads=8,
            max_position_embeddings=4096,
            bos_token_id=tok.convert_tokens_to_ids("<|begin_of_text|>"),
            eos_token_id=eot,
            pad_token_id=tok.convert_tokens_to_ids("<|finetune_right_pad_id|>"),
        )
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        model.bfloat16()
        model.save_pretrained(base)
    return base, build_tiny_adapter(base, root / "adapter", rank=8)


# --- 2. the container's environment, as synth writes and checks it --------------------------------------------


def container_env(model_dir: Path, speculative: bool, dry_run: bool) -> tuple[dict, list[str]]:
    from stacks import sglang_check
    from stacks.settings import load_environment

    [model] = load_environment("dev").inference.models
    env = {k: v for k, v in model.container_environment.items() if speculative or "SPECULATIVE" not in k}
    env |= {"SM_SGLANG_MODEL_PATH": str(model_dir), "SM_SGLANG_ENABLE_METRICS": "true"}
    if errors := sglang_check.check_environment(env):
        raise SystemExit(f"the container would refuse: {errors}")
    config = sglang_check.container_config().engine_config(env, sglang_check.manifest())
    if dry_run:
        env["SM_ENGINE_COMMAND"] = f"{sys.executable} -m local.backend --model {model_dir} --port {{port}}"
    return env, config.args


class Serve:
    """``containers/sglang/serve`` (engine + front) as a ``LocalServer``: its own process group, stopped by its PID."""

    def __init__(self, env: dict, log: Path, timeout: float):
        self.port, self.engine_port = free_port(), free_port()
        self.url, self.engine = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.engine_port}"
        cmd = [sys.executable, str(SERVE), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--engine-port", str(self.engine_port)]
        started = time.monotonic()
        try:
            self.server = LocalServer.start(cmd, port=self.port, env=env, timeout=timeout, cwd=ROOT, log=log)
        except RuntimeError as e:
            raise SystemExit(f"serve did not become healthy; see {log}") from e
        self.ready_s = time.monotonic() - started

    def stop(self) -> None:
        self.server.stop(timeout=60)


# --- 3. HTTP ------------------------------------------------------------------------------------------


def call(url: str, body: dict, headers: dict | None = None, method: str = "POST") -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    for k, v in (headers or {}).items():
        request.add_header(k, v)
    try:
        with urllib.request.urlopen(request, timeout=600) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw.strip().startswith(b"{") else {"text": raw.decode()}
    except urllib.error.HTTPError as e:
        return e.code, {"text": e.read().decode(errors="replace")}


def chat(max_tokens: int, stream: bool = False) -> dict:
    return {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,  # SGLang's sampling option: random weights would stop anywhere
        "stream": stream,
    }


def stream(url: str, body: dict, headers: dict | None = None) -> dict:
    """One streamed invocation: time to the first content token, total time, events, whether it ended."""
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(), method="POST")
    request.add_header("content-type", "application/json")
    for k, v in (headers or {}).items():
        request.add_header(k, v)
    t0, first, events = time.perf_counter(), None, []
    with urllib.request.urlopen(request, timeout=600) as r:
        for raw in r:
            line = raw.strip().removeprefix(b"data:").strip()
            if not line:
                continue
            events.append(line)
            if first is None and line != b"[DONE]":
                choices = json.loads(line).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - t0
    done = bool(events) and events[-1] == b"[DONE]"
    return {"ttft_s": first, "total_s": time.perf_counter() - t0, "events": len(events), "done": done}


def metrics(engine: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{engine}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for m in re.finditer(r"^(sglang:\w+)(?:\{[^}]*\})?\s+(\S+)$", text, re.M):
        out[m[1]] = out.get(m[1], 0.0) + float(m[2])
    return out


def disconnect_mid_stream(serve: Serve, max_tokens: int, headers: dict) -> dict:
    """Start a long stream through the front, leave after the first bytes; time until the engine runs nothing."""
    body = json.dumps(chat(max_tokens, stream=True)).encode()
    head = ["POST /invocations HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    head += [f"Content-Length: {len(body)}", *[f"{k}: {v}" for k, v in headers.items()]]
    with socket.create_connection(("127.0.0.1", serve.port), timeout=600) as s:
        s.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + body)
        s.recv(4096)  # the first bytes: the engine is generating
    left = time.perf_counter()
    while (m := metrics(serve.engine)).get("sglang:num_running_reqs", 0) or m.get("sglang:num_queue_reqs", 0):
        if time.perf_counter() - left > 120:
            return {"freed_s": None, "note": "the engine was still busy after 120 s"}
        time.sleep(0.01)
    return {"freed_s": time.perf_counter() - left}


def throughput(url: str, clients: int, requests: int, max_tokens: int) -> dict:
    """Output tokens per second with ``clients`` concurrent closed-loop clients (ignore_eos: exact lengths)."""
    tokens, lock, todo = [0], threading.Lock(), list(range(requests))

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            code, body = call(f"{url}/invocations", chat(max_tokens))
            assert code == 200, body
            with lock:
                tokens[0] += body["usage"]["completion_tokens"]

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {"clients": clients, "requests": requests, "output_tokens": tokens[0], "tokens_per_s": tokens[0] / elapsed}


def ttft(url: str, n: int, max_tokens: int) -> dict:
    runs = [stream(url, chat(max_tokens, stream=True)) for _ in range(n)]
    firsts = [r["ttft_s"] for r in runs if r["ttft_s"] is not None]
    return {
        "ttft_p50_ms": statistics.median(firsts) * 1e3 if firsts else None,
        "all_done": all(r["done"] for r in runs),
    }


# --- 4. one configuration -----------------------------------------------------------------------------------


def run_configuration(name: str, env: dict, args: list[str], adapter: Path, sizes: dict, out: Path) -> dict:
    result: dict = {"flags": args}
    serve = Serve(env, out / f"serve-{name}.log", timeout=sizes["startup_s"])
    try:
        result["ready_s"] = serve.ready_s
        code, body = call(f"{serve.url}/adapters", {"name": "clinical", "src": str(adapter)})
        result["adapter_loaded"] = code == 200
        plain = call(f"{serve.url}/invocations", chat(8))
        tuned = call(f"{serve.url}/invocations", chat(8), {ADAPTER_HEADER: "clinical"})
        result["invoke"] = {"plain": plain[0], "adapter": tuned[0], "adapter_model": tuned[1].get("model")}
        result["stream"] = stream(serve.url, chat(8, stream=True))
        result["disconnect"] = disconnect_mid_stream(serve, sizes["long_tokens"], {})
        result["disconnect_adapter"] = disconnect_mid_stream(serve, sizes["long_tokens"], {ADAPTER_HEADER: "clinical"})
        long = stream(serve.url, chat(sizes["long_tokens"], stream=True))
        result["full_long_stream_s"] = long["total_s"]
        n, tokens = sizes["requests"], sizes["tokens"]
        for where, url in (("front", serve.url), ("engine", serve.engine)):
            result[where] = {
                "one_client": throughput(url, 1, n, tokens),
                "concurrent": throughput(url, sizes["clients"], n * 2, tokens),
                **ttft(url, n, tokens),
            }
        result["front_over_engine_tokens_per_s"] = (
            result["front"]["one_client"]["tokens_per_s"] / result["engine"]["one_client"]["tokens_per_s"]
        )
        result["engine_metrics"] = {k: v for k, v in metrics(serve.engine).items() if "spec" in k or "accept" in k}
    finally:
        serve.stop()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dry-run", action="store_true", help="CPU: the CPU backend in place of SGLang")
    p.add_argument("--budget", type=float, default=420, help="seconds; configurations left past it are skipped")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    sizes = (
        {"startup_s": 120, "requests": 2, "tokens": 8, "clients": 2, "long_tokens": 200}
        if a.dry_run
        else {"startup_s": 240, "requests": 8, "tokens": 256, "clients": 8, "long_tokens": 4000}
    )
    report: dict = {"dry_run": a.dry_run, "configurations": {}, "not_run": {}}
    base, adapter = build_model(a.out / "work", a.dry_run)
    report["model_built_s"] = time.monotonic() - t0
    for name, speculative in (("baseline", False), ("speculative", True)):
        if time.monotonic() - t0 > a.budget:
            report["not_run"][name] = f"over the {a.budget:.0f} s budget"
            continue
        env, args = container_env(base, speculative, a.dry_run)
        report["configurations"][name] = run_configuration(name, env, args, adapter, sizes, a.out)
    report["not_run"]["EAGLE3"] = (
        "no EAGLE3 draft exists for a random-weight base; one trained for Llama 3.2 3B must be staged with the "
        "weights (containers/sglang/README.md#speculative-decoding)"
    )
    configs = report["configurations"]
    if {"baseline", "speculative"} <= set(configs):
        for shape in ("one_client", "concurrent"):
            report[f"speculative_over_baseline_{shape}_tokens_per_s"] = (
                configs["speculative"]["front"][shape]["tokens_per_s"]
                / configs["baseline"]["front"][shape]["tokens_per_s"]
            )
    report["wall_s"] = time.monotonic() - t0
    (a.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "configurations"}, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
