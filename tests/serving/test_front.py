"""The SageMaker front over real HTTP, against the CPU backend with the tiny model and real adapters."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from local.server import free_port, wait_until
from tests.serving.helpers import ADAPTER_HEADER, abandon, backend_cmd, front_cmd, launch, metrics, wait_idle

CHAT = {"messages": [{"role": "user", "content": "fever cough and fatigue"}], "max_tokens": 12, "temperature": 0}


def invoke(
    url: str, adapter: str | None = None, body: dict | None = None, headers: dict | None = None
) -> httpx.Response:
    headers = {**({ADAPTER_HEADER: adapter} if adapter else {}), **(headers or {})}
    return httpx.post(f"{url}/invocations", json=body or CHAT, headers=headers, timeout=60)


def answer(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def load(url: str, name: str, src) -> httpx.Response:
    return httpx.post(f"{url}/adapters", json={"name": name, "src": str(src)}, timeout=60)


def test_ping_is_503_until_the_engine_is_healthy_then_200(tmp_path):
    engine_port, port = free_port(), free_port()
    front = launch(front_cmd(port, f"http://127.0.0.1:{engine_port}", "base"), port, log=tmp_path / "front.log")
    engine = None
    try:
        front.wait_ready("/ping", status=503)
        r = invoke(front.url)
        assert r.status_code == 503 and "not ready" in r.json()["detail"]
        assert load(front.url, "early", tmp_path).status_code in (400, 503)
        engine = launch(backend_cmd(engine_port, fixed="ready"), engine_port, log=tmp_path / "engine.log")
        front.wait_ready("/ping", status=200, timeout=30)
        assert answer(invoke(front.url)) == "ready"
    finally:
        front.stop()
        if engine:
            engine.stop()


def test_invocation_is_passed_through_unchanged(front, model_backend):
    through_front = invoke(front.url)
    direct = httpx.post(f"{model_backend.url}/invocations", json=CHAT, timeout=60)
    assert answer(through_front) == answer(direct)
    body = through_front.json()
    assert body["object"] == "chat.completion"
    assert 0 < body["usage"]["completion_tokens"] <= CHAT["max_tokens"]


def test_streaming_chunks_arrive_as_chunks(front):
    events, arrivals = [], []
    with httpx.stream(
        "POST", f"{front.url}/invocations", json={**CHAT, "max_tokens": 24, "stream": True}, timeout=60
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for raw in r.iter_raw():
            arrivals.append(time.monotonic())
            events += [line for line in raw.decode().split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) >= 3
    assert len(arrivals) >= 3 and arrivals[0] < arrivals[-1]  # not buffered into one body


def test_adapter_load_invoke_unload_then_404(front, tiny_adapters):
    base = answer(invoke(front.url))
    r = load(front.url, "clinical", tiny_adapters["clinical"])
    assert r.status_code == 200, r.text
    assert "clinical" in r.text
    with_adapter = invoke(front.url, "clinical")
    assert answer(with_adapter) != base
    assert with_adapter.json()["model"].endswith(":clinical")  # "<base>:<adapter>", SGLang's convention
    assert load(front.url, "triage", tiny_adapters["triage"]).status_code == 200
    triage = answer(invoke(front.url, "triage"))
    assert triage not in (base, answer(with_adapter))
    assert answer(invoke(front.url)) == base  # no header: the base model

    r = httpx.delete(f"{front.url}/adapters/clinical", timeout=30)
    assert r.status_code == 200, r.text
    r = invoke(front.url, "clinical")
    assert r.status_code == 404 and "clinical" in r.json()["detail"]
    assert answer(invoke(front.url, "triage")) == triage  # the other adapter is untouched
    assert httpx.delete(f"{front.url}/adapters/triage", timeout=30).status_code == 200
    assert answer(invoke(front.url)) == base


def test_adapter_request_without_registered_adapter_returns_404(front):
    r = invoke(front.url, "never-loaded")
    assert r.status_code == 404 and "never-loaded" in r.json()["detail"]
    r = httpx.delete(f"{front.url}/adapters/never-loaded")
    assert r.status_code == 404 and "never-loaded" in r.json()["detail"]


@pytest.mark.parametrize("adapter", [None, "clinical"], ids=["base", "adapter-header"])
def test_bad_json_invocation_returns_400(front, tiny_adapters, adapter):
    if adapter and load(front.url, adapter, tiny_adapters[adapter]).status_code != 200:
        pytest.fail("could not load the adapter")
    try:
        headers = {"content-type": "application/json", **({ADAPTER_HEADER: adapter} if adapter else {})}
        r = httpx.post(f"{front.url}/invocations", content=b'{"messages": [', headers=headers)
        assert r.status_code == 400
        assert "JSON" in r.text
    finally:
        if adapter:
            httpx.delete(f"{front.url}/adapters/{adapter}")


def test_adapter_registration_with_bad_body_returns_400(front):
    r = httpx.post(f"{front.url}/adapters", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = httpx.post(f"{front.url}/adapters", json={"name": "no-src"})
    assert r.status_code == 400 and "src" in r.text


def test_adapter_source_that_is_not_a_lora_adapter_is_refused(front, tiny_model, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    cases = {
        tmp_path / "file": "is not a directory",
        tiny_model: "not a LoRA adapter: no adapter_config.json",
        "s3://bucket/adapter.tar.gz": "s3:// and .tar.gz sources are not supported",
    }
    for src, reason in cases.items():
        r = load(front.url, "bad-src", src)
        assert r.status_code == 400 and reason in r.json()["detail"], (src, r.text)
    assert invoke(front.url, "bad-src").status_code == 404


def test_failed_load_leaves_nothing_registered(front, tiny_adapters, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{ this is not a config")
    r = load(front.url, "partial", broken)
    assert 400 <= r.status_code < 500 and "partial could not be loaded" in r.json()["detail"]
    assert invoke(front.url, "partial").status_code == 404
    # the name is free: a good source loads under it
    assert load(front.url, "partial", tiny_adapters["clinical"]).status_code == 200
    try:
        assert invoke(front.url, "partial").status_code == 200
        r = load(front.url, "partial", tiny_adapters["clinical"])
        assert r.status_code == 409 and "already loaded" in r.json()["detail"]
    finally:
        httpx.delete(f"{front.url}/adapters/partial")


def test_adapter_in_a_single_subdirectory_is_found(front, tiny_adapters, tmp_path):
    """SageMaker extracts the adapter's tar.gz as it was packed: a top folder is accepted."""
    import shutil

    shutil.copytree(tiny_adapters["triage"], tmp_path / "extracted" / "triage")
    assert load(front.url, "nested", tmp_path / "extracted").status_code == 200
    try:
        assert invoke(front.url, "nested").status_code == 200
    finally:
        httpx.delete(f"{front.url}/adapters/nested")


def test_prompts_stay_out_of_logs_even_at_debug_level(model_backend, tiny_model, tiny_adapters, tmp_path):
    marker = "SYNTHETIC-PATIENT-7f3a"
    port = free_port()
    front = launch(
        front_cmd(port, model_backend.url, str(tiny_model)),
        port,
        log=tmp_path / "front.log",
        env={"LOG_LEVEL": "DEBUG", "SAGEMAKER_CONTAINER_LOG_LEVEL": "DEBUG"},
    )
    try:
        front.wait_ready("/ping")
        assert load(front.url, "private", tiny_adapters["clinical"]).status_code == 200
        body = {**CHAT, "messages": [{"role": "user", "content": f"{marker} has a fever"}]}
        assert invoke(front.url, "private", body).status_code == 200
        assert invoke(front.url, None, body).status_code == 200
        assert httpx.delete(f"{front.url}/adapters/private").status_code == 200
    finally:
        front.stop()
    assert "private" in front.log_tail()  # the log is there, and names the adapter
    assert marker not in front.log_tail() and marker not in model_backend.log_tail()


# --- the front frees the engine, bounds requests, checks names, passes real statuses (issue 16 item 2) ------

LONG = " ".join(f"w{i}" for i in range(400))  # 400 tokens at 50 ms each: 20 s if nobody stops it


@pytest.fixture(scope="module")
def slow(tmp_path_factory, tiny_adapters):
    """A slow engine (one generation at a time, at most one waiting) behind its own front, with an adapter."""
    logs = tmp_path_factory.mktemp("slow")
    engine_port, port = free_port(), free_port()
    engine = launch(
        backend_cmd(engine_port, fixed=LONG, extra=["--token-delay-ms", "50", "--max-queued-requests", "1"]),
        engine_port,
        log=logs / "engine.log",
    ).wait_ready("/health")
    front = launch(front_cmd(port, engine.url, "base"), port, log=logs / "front.log").wait_ready("/ping")
    assert load(front.url, "clinical", tiny_adapters["clinical"]).status_code == 200
    yield front, engine
    front.stop()
    engine.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("adapter", [None, "clinical"], ids=["plain", "adapter"])
def test_a_client_that_disconnects_frees_the_engine(slow, adapter, stream):
    """Both paths (the plain fast path and the library's adapter route), streamed or not: the engine request goes
    with the client, so the engine is idle again within seconds, far below the 20 s of the whole generation."""
    front, engine = slow
    before = metrics(engine.url)["sglang:generation_tokens_total"]
    headers = {ADAPTER_HEADER: adapter} if adapter else {}
    abandon(front.url, {**CHAT, "max_tokens": 400, "stream": stream}, after=0.5, headers=headers)
    wait_idle(engine.url, within=5)
    generated = metrics(engine.url)["sglang:generation_tokens_total"] - before
    assert 0 < generated < 100, generated


def test_an_engine_error_before_the_first_streamed_byte_gets_its_real_status(slow):
    """SGLang refuses a request past --max-queued-requests with an in-band error event (HTTP 200) when it streams;
    the front answers with the error's own status and body instead, like the non-streamed request gets."""
    import threading

    front, engine = slow
    body = {**CHAT, "max_tokens": 40}
    busy = [threading.Thread(target=invoke, args=(front.url,), kwargs={"body": body}) for _ in range(2)]
    busy[0].start()
    wait_until(lambda: metrics(engine.url)["sglang:num_running_reqs"] == 1, what="one running request")
    busy[1].start()
    wait_until(lambda: metrics(engine.url)["sglang:num_queue_reqs"] == 1, what="one queued request")
    try:
        streamed = invoke(front.url, body={**body, "stream": True})
        plain = invoke(front.url, body=body)
    finally:
        for t in busy:
            t.join()
    for r in (streamed, plain):
        assert r.status_code == 503, r.text
        assert "The request queue is full." in r.text
    assert streamed.headers["content-type"] == "application/json"


def test_requests_over_the_size_limits_are_refused_with_the_limit(model_backend, tmp_path):
    port = free_port()
    env = {"SM_FRONT_MAX_BODY_BYTES": "2000", "SM_FRONT_MAX_HEADER_BYTES": "4000"}
    front = launch(front_cmd(port, model_backend.url, "base"), port, env=env, log=tmp_path / "front.log")
    try:
        front.wait_ready("/ping")
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 3000}]}
        r = invoke(front.url, body=big)
        assert r.status_code == 413 and "at most 2000" in r.json()["detail"]

        def chunks():  # no Content-Length: the front counts what arrives
            yield json.dumps(big).encode()

        r = httpx.post(f"{front.url}/invocations", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "exceeds 2000 bytes" in r.json()["detail"]
        r = invoke(front.url, headers={"X-Amzn-SageMaker-Custom-Attributes": "a" * 5000})
        assert r.status_code == 431 and "at most 4000" in r.json()["detail"]
        r = httpx.post(f"{front.url}/adapters", json={"name": "n", "src": "/" + "p" * 3000}, timeout=30)
        assert r.status_code == 413
        assert invoke(front.url).status_code == 200  # within the limits
    finally:
        front.stop()


@pytest.mark.parametrize("name", ["base:other", "a/b", "-lead", "x" * 64, "has space", ""])
def test_adapter_names_are_checked_in_the_front(front, tiny_adapters, name):
    """A name SGLang would misread (its ``<base>:<adapter>`` separator) or that cannot be an adapter name is
    refused with 400 before anything reaches the engine."""
    r = load(front.url, name, tiny_adapters["clinical"])
    assert r.status_code == 400 and ("is not valid" if name else "cannot be an empty string") in r.text, r.text
    if name:
        r = invoke(front.url, adapter=name)
        assert r.status_code == 400 and "is not valid" in r.json()["detail"]
    assert "base:other" not in httpx.post(f"{front.url}/invocations", json=CHAT, timeout=60).text
