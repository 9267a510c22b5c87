"""The CPU backend: SGLang's rules for adapter names and tool calls, and its HTTP API over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from local.backend import ToolCalls, adapter_from_model
from local.server import free_port, wait_until
from tests.serving.helpers import abandon, backend_cmd, launch, metrics, wait_idle

TOOL_CALL = '{"name": "get_patient_record", "parameters": {"patient_id": "P001"}}'
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_patient_record",
            "description": "Fetch a record",
            "parameters": {"type": "object", "properties": {"patient_id": {"type": "string"}}},
        },
    }
]
CHAT = {"messages": [{"role": "user", "content": "fever cough and fatigue"}], "max_tokens": 12, "temperature": 0}


@pytest.mark.parametrize(
    "model, adapter",
    [
        (None, None),
        ("base", None),
        ("base:clinical", "clinical"),
        ("other:clinical", "clinical"),
        ("s3://bucket/model:clinical", "clinical"),
        ("s3://bucket/model", None),
        ("base:", None),
    ],
)
def test_adapter_is_selected_by_sglang_model_name_rule(model, adapter):
    assert (
        adapter_from_model(model, served_model_name="s3://bucket/model" if model and "s3" in model else "base")
        == adapter
    )


def test_llama3_tool_calls_are_parsed_by_sglangs_own_parser():
    """The backend does not parse tool calls itself: SGLang's FunctionCallParser for --tool-call-parser does."""
    import asyncio

    tools = TOOLS + [{"type": "function", "function": {"name": "upload_report", "parameters": {"type": "object"}}}]
    calls = asyncio.run(ToolCalls.for_request({"tools": tools}, "llama3"))
    assert type(calls.parser).__module__ == "sglang.srt.function_call.function_call_parser"
    text, found = calls.split(TOOL_CALL)
    assert text == "" and found[0]["function"]["name"] == "get_patient_record"
    assert json.loads(found[0]["function"]["arguments"]) == {"patient_id": "P001"}
    text, found = calls.split(
        "Let me look.<|python_tag|>" + TOOL_CALL + '; {"name": "upload_report", "arguments": {"text": "ok"}}'
    )
    assert text == "Let me look." and [c["function"]["name"] for c in found] == ["get_patient_record", "upload_report"]
    assert calls.split("The patient has a fever.") == ("The patient has a fever.", [])
    assert calls.split('{"name": "unknown_tool", "parameters": {}}')[1] == []
    assert calls.split('{"name": "get_patient_record", "parameters": {')[1] == []
    assert asyncio.run(ToolCalls.for_request({"tools": tools, "tool_choice": "none"}, "llama3")) is None
    assert asyncio.run(ToolCalls.for_request({"tools": tools}, None)) is None


@pytest.fixture(scope="module")
def tool_backend(tmp_path_factory):
    port = free_port()
    server = launch(backend_cmd(port, fixed=TOOL_CALL), port, log=tmp_path_factory.mktemp("logs") / "fixed.log")
    yield server.wait_ready("/health")
    server.stop()


def test_tool_call_output_is_returned_as_tool_calls(tool_backend):
    r = httpx.post(f"{tool_backend.url}/v1/chat/completions", json={**CHAT, "tools": TOOLS}, timeout=60)
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_patient_record"
    assert json.loads(call["function"]["arguments"]) == {"patient_id": "P001"}
    plain = httpx.post(f"{tool_backend.url}/invocations", json=CHAT, timeout=60).json()["choices"][0]
    assert plain["message"]["content"] == TOOL_CALL and plain["message"]["tool_calls"] is None


def test_streamed_tool_call_arrives_as_a_tool_calls_delta(tool_backend):
    with httpx.stream(
        "POST",
        f"{tool_backend.url}/v1/chat/completions",
        json={**CHAT, "tools": TOOLS, "stream": True, "stream_options": {"include_usage": True}},
        timeout=60,
    ) as r:
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    calls = [c["choices"][0]["delta"]["tool_calls"] for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert calls and calls[0][0]["function"]["name"] == "get_patient_record" and calls[0][0]["index"] == 0
    assert not any(c["choices"][0]["delta"].get("content") for c in chunks)
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_bad_chat_requests_are_refused_naming_the_field(tool_backend):
    cases = {
        b"{": "not valid JSON",
        b"[]": "JSON object",
        b'{"messages": []}': "messages",
        json.dumps({**CHAT, "max_tokens": 0}).encode(): "max_tokens",
        json.dumps({**CHAT, "temperature": 3}).encode(): "temperature",
        json.dumps({**CHAT, "model": "base:nope"}).encode(): "nope is not loaded",
    }
    for body, reason in cases.items():
        r = httpx.post(f"{tool_backend.url}/v1/chat/completions", content=body)
        assert r.status_code == 400 and reason in r.json()["message"], body


def test_max_tokens_and_temperature_are_honoured(model_backend):
    url = f"{model_backend.url}/v1/chat/completions"
    r = httpx.post(url, json={**CHAT, "max_tokens": 5}, timeout=60).json()
    assert r["usage"]["completion_tokens"] <= 5
    assert r["choices"][0]["finish_reason"] in ("length", "stop")
    greedy = {httpx.post(url, json=CHAT, timeout=60).json()["choices"][0]["message"]["content"] for _ in range(2)}
    assert len(greedy) == 1
    hot = {
        httpx.post(url, json={**CHAT, "temperature": 1.5}, timeout=60).json()["choices"][0]["message"]["content"]
        for _ in range(4)
    }
    assert len(hot) > 1


def test_adapters_load_select_by_model_name_and_unload(model_backend, tiny_model, tiny_adapters, tmp_path):
    url = model_backend.url
    base = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=60).json()["choices"][0]["message"]["content"]
    r = httpx.post(f"{url}/load_lora_adapter", json={"lora_name": "direct", "lora_path": str(tiny_adapters["triage"])})
    assert r.status_code == 200 and r.json()["success"] and "direct" in r.json()["loaded_adapters"]
    try:
        r = httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "model": f"{tiny_model}:direct"}, timeout=60)
        assert r.json()["choices"][0]["message"]["content"] != base
        r = httpx.post(
            f"{url}/load_lora_adapter", json={"lora_name": "direct", "lora_path": str(tiny_adapters["triage"])}
        )
        assert r.status_code == 400 and "already loaded" in r.json()["error_message"]
    finally:
        r = httpx.post(f"{url}/unload_lora_adapter", json={"lora_name": "direct"})
    assert r.status_code == 200 and "direct" not in r.json()["loaded_adapters"]
    r = httpx.post(f"{url}/unload_lora_adapter", json={"lora_name": "direct"})
    assert r.status_code == 400 and "direct is not loaded" in r.json()["error_message"]
    (tmp_path / "adapter_config.json").write_bytes((tiny_adapters["triage"] / "adapter_config.json").read_bytes())
    r = httpx.post(f"{url}/load_lora_adapter", json={"lora_name": "noweights", "lora_path": str(tmp_path)})
    assert r.status_code == 400 and not r.json()["success"] and "noweights" in r.json()["error_message"]
    r = httpx.post(
        f"{url}/load_lora_adapter", json={"lora_name": "noweights", "lora_path": str(tiny_adapters["triage"])}
    )
    assert r.status_code == 200, r.text  # the failed load left nothing behind under that name
    assert httpx.post(f"{url}/unload_lora_adapter", json={"lora_name": "noweights"}).status_code == 200
    after = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=60).json()["choices"][0]["message"]["content"]
    assert after == base


def test_tool_conversation_renders_with_the_llama3_template(model_backend):
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_patient_record", "arguments": '{"patient_id": "P001"}'},
    }
    messages = [
        {"role": "system", "content": "You are a clinical assistant."},
        {"role": "user", "content": [{"type": "text", "text": "Diagnose P001."}]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"age": 54, "symptoms": ["fever"]}'},
    ]
    url = f"{model_backend.url}/v1/chat/completions"
    r = httpx.post(url, json={**CHAT, "messages": messages, "tools": TOOLS}, timeout=60)
    assert r.status_code == 200, r.text
    r = httpx.post(
        url,
        json={**CHAT, "messages": [*messages[:2], {**messages[2], "tool_calls": [call, call]}], "tools": TOOLS},
        timeout=60,
    )
    assert r.status_code == 400 and "chat template" in r.json()["message"]


LONG = " ".join(f"w{i}" for i in range(400))  # 400 tokens at 50 ms: 20 s of generation


@pytest.fixture(scope="module")
def slow_backend(tmp_path_factory):
    """One generation at a time, 50 ms per token, at most one request waiting."""
    port = free_port()
    cmd = backend_cmd(port, fixed=LONG, extra=["--token-delay-ms", "50", "--max-queued-requests", "1"])
    server = launch(cmd, port, log=tmp_path_factory.mktemp("logs") / "slow.log")
    yield server.wait_ready("/health")
    server.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_client_that_disconnects_frees_the_engine(slow_backend, stream):
    """As SGLang does: the abandoned generation stops; the engine is idle long before the 400 tokens."""
    before = metrics(slow_backend.url)["sglang:generation_tokens_total"]
    abandon(slow_backend.url, {**CHAT, "max_tokens": 400, "stream": stream}, after=0.5)
    wait_idle(slow_backend.url, within=5)
    generated = metrics(slow_backend.url)["sglang:generation_tokens_total"] - before
    assert 0 < generated < 100, generated


def test_past_the_queue_limit_requests_get_503_streamed_ones_in_band(slow_backend):
    """SGLang's --max-queued-requests: a refused non-streamed request is a 503; a streamed one is HTTP 200 whose
    first event is the error (the front turns that into the real status, see test_front)."""
    import threading

    url = slow_backend.url
    body = {**CHAT, "max_tokens": 40}
    busy = [threading.Thread(target=httpx.post, args=(f"{url}/invocations",), kwargs={"json": body, "timeout": 60})]
    busy.append(threading.Thread(target=httpx.post, args=(f"{url}/invocations",), kwargs={"json": body, "timeout": 60}))
    busy[0].start()
    wait_until(lambda: metrics(url)["sglang:num_running_reqs"] == 1, what="one running request")
    busy[1].start()
    wait_until(lambda: metrics(url)["sglang:num_queue_reqs"] == 1, what="one queued request")
    r = httpx.post(f"{url}/invocations", json=body, timeout=60)
    assert r.status_code == 503 and r.json()["message"] == "The request queue is full."
    with httpx.stream("POST", f"{url}/invocations", json={**body, "stream": True}, timeout=60) as r:
        events = [line for line in r.iter_lines() if line]
    assert r.status_code == 200
    assert json.loads(events[0].removeprefix("data: "))["error"]["code"] == 503 and events[-1] == "data: [DONE]"
    for t in busy:
        t.join()
