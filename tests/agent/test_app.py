"""The AgentCore app as a real server (``python -m agent.app --local``) against the local servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from local.aws import client
from local.server import LocalServer, free_port

ROOT = Path(__file__).resolve().parents[2]

SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
CASE = {
    "case": {"patient_id": "P-000010", "symptoms": ["fever", "productive cough"], "vitals": {"temperature_c": 38.9}}
}


@pytest.fixture(scope="module")
def app_url(agent_env):
    port = free_port()
    args = [sys.executable, "-m", "agent.app", "--local", "--port", str(port)]
    with LocalServer.start(args, port=port, env=agent_env, cwd=ROOT) as server:
        yield server.url


@pytest.fixture
def http(app_url):
    with httpx.Client(base_url=app_url, timeout=60) as client:
        yield client


@pytest.fixture
def bucket_size(s3, aws):
    return lambda: s3.list_objects_v2(Bucket=aws.bucket).get("KeyCount", 0)


@pytest.fixture
def stores(s3, aws):
    """A snapshot of both stores the agent writes to: the reports bucket and the patient table."""
    ddb = client("dynamodb", aws.endpoint_url)

    def snapshot():
        objects = s3.list_objects_v2(Bucket=aws.bucket).get("Contents", [])
        items = ddb.scan(TableName=aws.table)["Items"]
        return sorted((o["Key"], o["ETag"]) for o in objects), sorted(json.dumps(i, sort_keys=True) for i in items)

    return snapshot


@pytest.fixture
def in_process(env, monkeypatch):
    """The app in this process (starlette's TestClient) on a runtime built from the environment + overrides."""
    from starlette.testclient import TestClient

    import agent.app as app_module
    from agent.service import ClinicalAgentRuntime

    def make(**overrides):
        monkeypatch.setattr(app_module, "_runtime", ClinicalAgentRuntime.from_environment(**overrides))
        return TestClient(app_module.app)

    return make


def sse_events(text: str) -> list[dict]:
    return [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]


def test_ping_is_healthy(http):
    r = http.get("/ping")
    assert r.status_code == 200 and r.json()["status"] == "Healthy"


def test_structured_case_returns_a_stored_report_and_the_session_id(http, reports_of, aws):
    before = reports_of("P-000010")
    r = http.post("/invocations", json=CASE, headers={SESSION_HEADER: "session-abc-123"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["session_id"] == "session-abc-123" and r.headers[SESSION_HEADER] == "session-abc-123"
    assert body["report_source"] == "agent"
    assert body["tools_called"] == ["get_patient_record", "diagnose", "upload_diagnostic_report"]
    assert reports_of("P-000010") == sorted(before + [body["report_uri"].removeprefix(f"s3://{aws.bucket}/")])


@pytest.mark.parametrize("how", ["payload", "accept-header"])
def test_streaming_answers_server_sent_events(http, how, reports_of):
    payload = CASE | {"stream": True} if how == "payload" else CASE
    headers = {SESSION_HEADER: "session-stream"} | ({"Accept": "text/event-stream"} if how != "payload" else {})
    before = reports_of("P-000010")
    with http.stream("POST", "/invocations", json=payload, headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.read().decode())
    assert [e["event"] for e in events if e["event"] != "text"] == [
        "tool_call",
        "tool_call",
        "tool_call",
        "report",
        "done",
    ]
    assert any(e["event"] == "text" for e in events)
    assert events[-1]["session_id"] == "session-stream"
    assert len(reports_of("P-000010")) == len(before) + 1


def test_prompt_only_request_is_answered(http):
    r = http.post("/invocations", json={"prompt": "Differential for headache?"})
    assert r.status_code == 200
    assert "Migraine" in r.json()["answer"] and r.json()["report_uri"] is None


BAD = [
    ({}, 400, "give a 'prompt' (text) or a 'case'"),
    ([1, 2], 400, "must be a JSON object, not list"),
    ({"prompt": 5}, 400, "prompt: Input should be a valid string"),
    ({"prompt": ""}, 400, "prompt: String should have at least 1 character"),
    ({"prompt": "x" * 4001}, 400, "prompt: String should have at most 4000 characters"),
    ({"prompt": "x" * 17000}, 413, "request too large"),
    ({"prompt": "hi", "temperature": 2}, 400, "temperature: Extra inputs are not permitted"),
    ({"prompt": "hi", "stream": "yes"}, 400, "stream: Input should be a valid boolean"),
    (
        {"case": CASE["case"] | {"patient_id": "../P-000001"}},
        400,
        "case.patient_id: expected 'P-' followed by 6 digits",
    ),
    ({"case": CASE["case"] | {"patient_id": "P-000001/../../etc"}}, 400, "case.patient_id: expected 'P-'"),
    ({"case": CASE["case"] | {"patient_id": 10}}, 400, "case.patient_id: Input should be a valid string"),
    ({"case": CASE["case"] | {"symptoms": []}}, 400, "case.symptoms: List should have at least 1 item"),
    ({"case": CASE["case"] | {"symptoms": "fever"}}, 400, "case.symptoms: Input should be a valid list"),
    (
        {"case": CASE["case"] | {"vitals": {"heart_rate_bpm": "110"}}},
        400,
        "case.vitals.heart_rate_bpm: Input should be a valid integer",
    ),
    (
        {"case": CASE["case"] | {"vitals": {"heart_rate_bpm": 900}}},
        400,
        "case.vitals.heart_rate_bpm: Input should be less than or equal to 300",
    ),
    ({"case": CASE["case"] | {"vitals": {"pulse": 80}}}, 400, "case.vitals.pulse: Extra inputs are not permitted"),
    ({"case": CASE["case"] | {"patient_id": "P-999999"}}, 404, "no patient P-999999"),
]


@pytest.mark.parametrize(("payload", "status", "reason"), BAD, ids=[f"{b[1]}-{b[2][:30]}" for b in BAD])
def test_bad_request_gets_a_4xx_with_the_reason_and_nothing_is_written(
    http, payload, status, reason, stores, model_log, tools_model
):
    before = stores()
    r = http.post("/invocations", json=payload)
    assert r.status_code == status
    assert reason in r.json()["error"]
    assert stores() == before
    assert model_log.get(tools_model) == []  # the model was never called


NOT_JSON = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonl"]


@pytest.mark.parametrize("content_type", [*NOT_JSON, None])
def test_request_that_is_not_application_json_is_a_415_and_nothing_is_written(
    http, content_type, stores, model_log, tools_model
):
    before = stores()
    headers = {"Content-Type": content_type} if content_type else {}
    r = http.post("/invocations", content=json.dumps(CASE).encode(), headers=headers)  # a valid case, wrong type
    assert r.status_code == 415
    assert "unsupported Content-Type" in r.json()["error"] and "application/json" in r.json()["error"]
    assert stores() == before
    assert model_log.get(tools_model) == []


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_application_json_with_or_without_charset_is_accepted(http, content_type):
    r = http.post(
        "/invocations", content=b'{"prompt": "Differential for headache?"}', headers={"Content-Type": content_type}
    )
    assert r.status_code == 200, r.text


def test_invalid_json_is_a_400(http, stores):
    before = stores()
    r = http.post("/invocations", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "Invalid JSON"
    assert stores() == before


STREAM = {"Accept": "text/event-stream"}


@pytest.mark.parametrize(
    "request_body", [CASE | {"stream": True}, {"prompt": "Differential for cough?", "stream": True}]
)
def test_streamed_request_with_the_model_unavailable_gets_the_real_status_before_any_byte(
    in_process, request_body, stores
):
    before = stores()
    with (
        in_process(sagemaker_inference_component="dead-component") as client_,
        client_.stream("POST", "/invocations", json=request_body, headers=STREAM) as r,
    ):
        body = json.loads(r.read())
    assert r.status_code == 503, body  # the container is down: retry later
    assert "ServiceUnavailable" in body["error"]
    assert stores() == before


@pytest.mark.parametrize("stream", [False, True])
def test_unreachable_runtime_endpoint_is_a_503_with_a_reason_and_no_url(in_process, monkeypatch, stream, stores):
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", closed)
    before = stores()
    with in_process() as client_:
        r = client_.post("/invocations", json=CASE | {"stream": stream})
    assert r.status_code == 503
    error = r.json()["error"]
    assert "unreachable" in error and "retry later" in error
    assert "127.0.0.1" not in error and "http" not in error
    assert stores() == before


def test_streamed_failure_after_events_flowed_is_the_last_event(in_process):
    with (
        in_process(sagemaker_inference_component="broken-component") as client_,
        client_.stream("POST", "/invocations", json={"prompt": "Differential for cough?", "stream": True}) as r,
    ):
        events = sse_events(r.read().decode())
    assert r.status_code == 200  # the first words were already sent
    assert events[0]["event"] == "text"
    assert events[-1]["event"] == "error" and events[-1]["status"] == 502
    assert "model endpoint" in events[-1]["error"]


def test_model_endpoint_failure_is_a_502_naming_the_component(env, monkeypatch, bucket_size):
    from starlette.testclient import TestClient

    import agent.app as app_module
    from agent.service import ClinicalAgentRuntime

    monkeypatch.setattr(
        app_module, "_runtime", ClinicalAgentRuntime.from_environment(sagemaker_inference_component="gone")
    )
    before = bucket_size()
    with TestClient(app_module.app) as client:
        r = client.post("/invocations", json=CASE)
    assert r.status_code == 502
    assert "ValidationError" in r.json()["error"] and "Inference Component gone not found" in r.json()["error"]
    assert bucket_size() == before


def test_local_mode_refuses_to_start_without_local_endpoints(agent_env):
    env = {k: v for k, v in agent_env.items() if k != "AWS_ENDPOINT_URL_S3"} | {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "agent.app", "--local", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "set AWS_ENDPOINT_URL_S3" in done.stderr


def test_bad_environment_stops_the_app_at_start_naming_the_variable(agent_env):
    env = {k: v for k, v in agent_env.items() if k != "REPORTS_BUCKET"} | {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "agent/app.py", "--local", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "REPORTS_BUCKET: required but not set" in done.stderr
