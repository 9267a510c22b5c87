"""make ask: the seed case goes to the deployed agent; the answer streams as it arrives; a session is kept for
follow-ups; the report URI and the trace location follow. Not READY, a missing component and an endpoint scaled
to zero are explained (the last one wakes the endpoint and waits, up to a bound)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY

from ops import outputs
from ops.ask import session_file

from .conftest import FakeClock, agent_runtime_in_moto, component_response, endpoint_response

ROOT = Path(__file__).resolve().parents[2]
SEED_CASE = ROOT / "ops" / "cases" / "seed-case.json"
REPORT = "s3://dev-data-reports65402a0a-abc/reports/P-000045/20261201T090000.000000Z.md"
TRACE = "Root=1-6745a1b2-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"


def test_the_seed_case_file_is_the_demos_seed_case_for_the_patient_dev_seeds():
    from agent.patients import SEED_PATIENT
    from local.demo import SEED_CASE as DEMO_CASE

    case = json.loads(SEED_CASE.read_text())["case"]
    assert case == DEMO_CASE and case["patient_id"] == SEED_PATIENT["patient_id"]
    assert (SEED_PATIENT["age"], SEED_PATIENT["sex"]) == (45, "male")
    assert case["vitals"] == {"temperature_c": 38.5, "heart_rate_bpm": 98}  # 101.3 °F


def ready_capacity(stub, copies=1):
    stub.add_response("describe_endpoint", endpoint_response("clinical-llm"), {"EndpointName": "clinical-llm"})
    stub.add_response(
        "describe_inference_component",
        component_response("clinical-lora", copies=None, base="llama32-3b"),
        {"InferenceComponentName": "clinical-lora"},
    )
    stub.add_response(
        "describe_inference_component",
        component_response("llama32-3b", copies=copies),
        {"InferenceComponentName": "llama32-3b"},
    )


def sse(*events):
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def answered(stub, runtime_arn, body_events, payload):
    body = sse(*body_events)
    stub.add_response(
        "invoke_agent_runtime",
        {
            "response": StreamingBody(io.BytesIO(body), len(body)),
            "contentType": "text/event-stream",
            "traceId": TRACE,
            "statusCode": 200,
        },
        {
            "agentRuntimeArn": runtime_arn,
            "qualifier": "live",
            "runtimeSessionId": ANY,
            "contentType": "application/json",
            "accept": "text/event-stream",
            "payload": json.dumps(payload).encode(),
        },
    )


SEED_EVENTS = [
    {"event": "text", "data": "Fever 101.3 °F with cough "},
    {"event": "tool_call", "name": "get_patient_record"},
    {"event": "text", "data": "suggests community-acquired pneumonia."},
    {"event": "report", "uri": REPORT, "source": "agent"},
    {"event": "done", "session_id": "x", "answer": "...", "report_uri": REPORT, "report_source": "agent"},
]


def test_the_seed_case_streams_the_answer_then_the_report_and_the_trace(env):
    runtime = agent_runtime_in_moto(env)
    env.deploy()
    sagemaker, sm = env.stub("sagemaker")
    agentcore, ac = env.stub("bedrock-agentcore")
    ready_capacity(sm)
    answered(ac, runtime, SEED_EVENTS, {**json.loads(SEED_CASE.read_text()), "stream": True})
    result = env.run(
        env.cloud(sagemaker=sagemaker, bedrock_agentcore=agentcore), "ask", "--env", "dev", "--case", str(SEED_CASE)
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Fever 101.3 °F with cough \n· calls get_patient_record\nsuggests community-acquired pneumonia." in out
    assert f"report: {REPORT}" in out
    root = "1-6745a1b2-0123456789abcdef01234567"
    assert (
        f"trace: AgentCore observability (X-Ray) {root}: https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#xray:traces/{root}"
        in out
    )
    assert f"runtime logs: CloudWatch log group /aws/bedrock-agentcore/runtimes/{runtime.rsplit('/', 1)[1]}-live" in out
    kept = json.loads(session_file("dev").read_text())
    assert kept["runtime_arn"] == runtime and len(kept["session_id"]) >= 33
    assert f"session {kept['session_id']} (new; kept in {session_file('dev')}" in out
    assert (
        f"MLflow: experiment clinical-diagnosis on {env.values[outputs.MLFLOW_ARN]} "
        f"(spans carry session.id={kept['session_id']})" in out
    )


def test_a_follow_up_question_continues_the_kept_session(env):
    runtime = agent_runtime_in_moto(env)
    env.deploy()
    session_file("dev").parent.mkdir(parents=True)
    session_file("dev").write_text(json.dumps({"runtime_arn": runtime, "session_id": "dev-" + "a" * 36}))
    sagemaker, sm = env.stub("sagemaker")
    agentcore, ac = env.stub("bedrock-agentcore")
    ready_capacity(sm)
    question = "What would change your mind?"
    answered(
        ac,
        runtime,
        [{"event": "text", "data": "A clear chest X-ray."}, {"event": "done", "report_uri": None}],
        {"prompt": question, "stream": True},
    )
    result = env.run(
        env.cloud(sagemaker=sagemaker, bedrock_agentcore=agentcore), "ask", "--env", "dev", "--prompt", question
    )
    assert result.exit_code == 0, result.output
    assert f"session dev-{'a' * 36} (continuing" in result.output
    assert "report: none stored" in result.output
    ac.assert_no_pending_responses()


def test_an_endpoint_scaled_to_zero_is_explained_woken_and_waited_for(env):
    runtime = agent_runtime_in_moto(env)
    env.deploy()
    sagemaker, sm = env.stub("sagemaker")
    runtime_client, rt = env.stub("sagemaker-runtime")
    agentcore, ac = env.stub("bedrock-agentcore")
    ready_capacity(sm, copies=0)
    rt.add_client_error(
        "invoke_endpoint", "ValidationError", "Inference Component has no capacity to process this request.", 400
    )
    for copies in (0, 1):
        sm.add_response(
            "describe_inference_component",
            component_response("llama32-3b", copies=copies),
            {"InferenceComponentName": "llama32-3b"},
        )
    answered(ac, runtime, SEED_EVENTS, {**json.loads(SEED_CASE.read_text()), "stream": True})
    clock = FakeClock()
    cloud = env.cloud(clock=clock, sagemaker=sagemaker, sagemaker_runtime=runtime_client, bedrock_agentcore=agentcore)
    result = env.run(cloud, "ask", "--env", "dev", "--case", str(SEED_CASE))
    assert result.exit_code == 0, result.output
    assert "endpoint clinical-llm is scaled to zero: component llama32-3b has no copy" in result.output
    assert "endpoint-auto-scaling-zero-instances.html" in result.output
    assert "waiting up to 15m 00s for a copy" in result.output and "✓ llama32-3b has a copy" in result.output
    assert clock.sleeps == 1 and f"report: {REPORT}" in result.output


def test_an_endpoint_that_stays_at_zero_gives_up_after_the_bound(env):
    agent_runtime_in_moto(env)
    env.deploy()
    sagemaker, sm = env.stub("sagemaker")
    runtime_client, rt = env.stub("sagemaker-runtime")
    ready_capacity(sm, copies=0)
    rt.add_client_error("invoke_endpoint", "ValidationError", "Inference Component has no capacity.", 400)
    for _ in range(4):  # at 0, 20, 40 and 60 s
        sm.add_response(
            "describe_inference_component",
            component_response("llama32-3b", copies=0),
            {"InferenceComponentName": "llama32-3b"},
        )
    cloud = env.cloud(sagemaker=sagemaker, sagemaker_runtime=runtime_client)
    result = env.run(cloud, "ask", "--env", "dev", "--case", str(SEED_CASE), "--wait", "60")
    assert result.exit_code == 1
    assert (
        "gave up after 1m 00s waiting for a copy of llama32-3b on clinical-llm (llama32-3b: InService, 0 copies)"
        in result.output
    )
    assert "the scale-out continues in SageMaker" in result.output


def test_ctrl_c_while_waiting_for_a_copy_stops_cleanly(env):
    agent_runtime_in_moto(env)
    env.deploy()
    sagemaker, sm = env.stub("sagemaker")
    runtime_client, rt = env.stub("sagemaker-runtime")
    ready_capacity(sm, copies=0)
    rt.add_client_error("invoke_endpoint", "ValidationError", "Inference Component has no capacity.", 400)
    sm.add_response(
        "describe_inference_component",
        component_response("llama32-3b", copies=0),
        {"InferenceComponentName": "llama32-3b"},
    )
    cloud = env.cloud(clock=FakeClock(interrupt_at=1), sagemaker=sagemaker, sagemaker_runtime=runtime_client)
    result = env.run(cloud, "ask", "--env", "dev", "--case", str(SEED_CASE))
    assert result.exit_code == 130
    assert "stopped waiting (Ctrl-C) for a copy of llama32-3b on clinical-llm; it continues in AWS" in result.output
    assert "Resume with: make ask ENV=dev (same question)" in result.output


def test_a_runtime_that_is_not_ready_is_explained(env):
    env.deploy()
    control, stub = env.stub("bedrock-agentcore-control")
    runtime = {
        "agentRuntimeArn": env.values[outputs.RUNTIME_ARN],
        "agentRuntimeName": "clinical_agent_dev",
        "agentRuntimeId": "clinical_agent_dev-AbCdE12345",
        "agentRuntimeVersion": "3",
        "createdAt": "2026-12-01T09:00:00Z",
        "lastUpdatedAt": "2026-12-01T09:00:00Z",
        "roleArn": "arn:aws:iam::111111111111:role/agent",
        "networkConfiguration": {"networkMode": "PUBLIC"},
        "status": "UPDATE_FAILED",
        "failureReason": "code package larger than 250 MB",
        "lifecycleConfiguration": {},
    }
    stub.add_response("get_agent_runtime", runtime, {"agentRuntimeId": "clinical_agent_dev-AbCdE12345"})
    stub.add_response(
        "get_agent_runtime_endpoint",
        {
            "agentRuntimeEndpointArn": env.values[outputs.RUNTIME_ENDPOINT_ARN],
            "agentRuntimeArn": runtime["agentRuntimeArn"],
            "status": "READY",
            "createdAt": "2026-12-01T09:00:00Z",
            "lastUpdatedAt": "2026-12-01T09:00:00Z",
            "name": "live",
            "id": "live",
        },
        {"agentRuntimeId": "clinical_agent_dev-AbCdE12345", "endpointName": "live"},
    )
    result = env.run(env.cloud(bedrock_agentcore_control=control), "ask", "--env", "dev", "--prompt", "hello")
    assert result.exit_code == 1
    assert (
        "the agent runtime clinical_agent_dev is UPDATE_FAILED (code package larger than 250 MB), not READY"
        in result.output
    )


def test_a_missing_agent_component_says_to_deploy_its_environment(env):
    agent_runtime_in_moto(env)
    env.deploy()
    sagemaker, sm = env.stub("sagemaker")
    sm.add_response("describe_endpoint", endpoint_response("clinical-llm"), {"EndpointName": "clinical-llm"})
    sm.add_client_error(
        "describe_inference_component",
        "ValidationException",
        'Could not find inference component "clinical-lora".',
        400,
    )
    result = env.run(env.cloud(sagemaker=sagemaker), "ask", "--env", "dev", "--prompt", "hello")
    assert result.exit_code == 1
    assert "the agent calls inference component clinical-lora, which does not exist" in result.output
    assert "make deploy ENV=dev" in result.output


@pytest.mark.parametrize(
    "content,message",
    [
        ({"case": {"patient_id": "45", "symptoms": ["fever"]}}, "case.patient_id: expected 'P-' followed by 6 digits"),
        ({"case": {"patient_id": "P-000045", "symptoms": []}}, "case.symptoms"),
        (
            {"case": {"patient_id": "P-000045", "symptoms": ["fever"], "vitals": {"heart_rate_bpm": "98"}}},
            "vitals.heart_rate_bpm",
        ),
    ],
)
def test_a_bad_case_file_is_refused_naming_the_field_before_any_call(env, tmp_path, content, message):
    path = tmp_path / "case.json"
    path.write_text(json.dumps(content))
    result = env.run(env.cloud(), "ask", "--env", "dev", "--case", str(path))  # nothing deployed: no call was made
    assert result.exit_code == 1
    assert message in result.output and "invalid request" in result.output


def test_nothing_to_ask_is_refused(env):
    result = env.run(env.cloud(), "ask", "--env", "dev")
    assert result.exit_code == 1
    assert "nothing to ask: give --prompt TEXT or --case FILE" in result.output
