"""The agent loop: strands + SageMakerAIModel -> SageMaker runtime emulator -> scripted model, tools on moto."""

from __future__ import annotations

import asyncio
import json

import pytest

from agent.models import parse_request
from agent.patients import PatientStore
from local.aws import client
from local.scripted_model import TOOL_ORDER, text_of
from training.clinical import SUPER_PROMPT

CASE = {
    "case": {
        "patient_id": "P-000007",
        "symptoms": ["crushing chest pain radiating to the left arm", "sweating"],
        "vitals": {"heart_rate_bpm": 112, "systolic_bp_mmhg": 150, "diastolic_bp_mmhg": 95, "spo2_percent": 95},
    }
}


def run(runtime, payload, session_id="session-1"):
    async def go():
        prepared = await runtime.prepare(parse_request(payload))
        return await runtime.run(prepared, session_id)

    return asyncio.run(go())


def collect(runtime, payload, session_id="session-1"):
    async def go():
        prepared = await runtime.prepare(parse_request(payload))
        return [e async for e in runtime.events(prepared, session_id)]

    return asyncio.run(go())


@pytest.fixture
def make_runtime(env, span_exporter):
    from agent.service import ClinicalAgentRuntime

    return ClinicalAgentRuntime.from_environment


@pytest.mark.parametrize("streaming", [True, False], ids=["InvokeEndpointWithResponseStream", "InvokeEndpoint"])
def test_agent_runs_the_three_tools_the_model_calls_in_order_and_returns_their_real_results(
    make_runtime, streaming, model_log, tools_model, reports_of, s3, aws
):
    """The scripted model asks for get_patient_record, diagnose, upload_diagnostic_report one turn at a time; the
    agent must run each call it receives, in that order, with the model's arguments, and send back what the tool
    really returned (the record in DynamoDB, diagnose's answer, the stored report's URI): a skipped, reordered
    or faked call fails."""
    runtime = make_runtime(model_streaming=streaming)
    before = reports_of("P-000007")
    summary = run(runtime, CASE)

    assert summary["tools_called"] == ["get_patient_record", "diagnose", "upload_diagnostic_report"]
    assert summary["report_source"] == "agent"
    assert summary["session_id"] == "session-1"
    key = summary["report_uri"].removeprefix(f"s3://{aws.bucket}/")
    assert reports_of("P-000007") == sorted(before + [key])
    assert f"Report stored at {summary['report_uri']}" in summary["answer"]
    report = s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read().decode()
    assert "Acute coronary syndrome" in report  # written from diagnose's answer

    seen = model_log.get(tools_model)
    agent_calls = [s["body"] for s in seen if s["body"].get("tools")]
    diagnose_calls = [s["body"] for s in seen if not s["body"].get("tools")]
    assert len(agent_calls) == 4 and len(diagnose_calls) == 1
    assert all(s["adapter"] == "clinical-lora" for s in seen)
    assert all(b["stream"] is streaming for b in agent_calls)
    assert {(b["max_tokens"], b["temperature"]) for b in agent_calls + diagnose_calls} == {(256, 0.1)}
    assert diagnose_calls[0]["messages"][0]["content"] == SUPER_PROMPT  # the instruction the adapter was trained on
    # the record read by the agent reached the diagnosis
    assert '"patient_id": "P-000007"' in diagnose_calls[0]["messages"][1]["content"]

    # turn by turn: request n carries the results of the n-1 calls before it, each answering its own call
    assert [sum(m["role"] == "tool" for m in b["messages"]) for b in agent_calls] == [0, 1, 2, 3]
    final = agent_calls[-1]["messages"]
    calls = [c for m in final if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    answered = [m["tool_call_id"] for m in final if m["role"] == "tool"]
    assert [c["function"]["name"] for c in calls] == list(TOOL_ORDER)
    assert answered == [c["id"] for c in calls]
    results = {m["tool_call_id"]: text_of(m) for m in final if m["role"] == "tool"}
    record_call, diagnose_call, upload_call = calls
    assert json.loads(record_call["function"]["arguments"]) == {"patient_id": "P-000007"}
    stored = PatientStore(aws.table, client("dynamodb", aws.endpoint_url)).get("P-000007")
    assert json.loads(results[record_call["id"]]) == {"found": True, "record": stored.model_dump()}
    assert "Acute coronary syndrome" in results[diagnose_call["id"]]
    assert json.loads(upload_call["function"]["arguments"])["patient_id"] == "P-000007"
    assert summary["report_uri"] in results[upload_call["id"]]


def test_app_stores_the_report_when_the_model_calls_no_tools(make_runtime, model_log, plain_model, reports_of, s3, aws):
    runtime = make_runtime(sagemaker_inference_component="plain-model")
    before = reports_of("P-000008")
    summary = run(runtime, CASE | {"case": CASE["case"] | {"patient_id": "P-000008"}})

    assert summary["tools_called"] == []
    assert summary["report_source"] == "app"
    key = summary["report_uri"].removeprefix(f"s3://{aws.bucket}/")
    assert reports_of("P-000008") == sorted(before + [key])
    report = s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read().decode()
    assert report.startswith("# Diagnostic report - P-000008")
    assert "Synthetic patient" in report and "crushing chest pain" in report
    assert "-year-old " in report  # the app read the record (age, sex) for the case summary
    assert len(model_log.get(plain_model)) == 2  # the agent's turn, then the app's diagnose call


def test_streamed_events_end_with_report_and_done(make_runtime):
    events = collect(make_runtime(), CASE)
    kinds = [e["event"] for e in events]
    assert kinds[-2:] == ["report", "done"]
    assert [e["name"] for e in events if e["event"] == "tool_call"] == [
        "get_patient_record",
        "diagnose",
        "upload_diagnostic_report",
    ]
    text = "".join(e["data"] for e in events if e["event"] == "text")
    assert "Report stored at s3://" in text
    assert events[-2]["uri"] == events[-1]["report_uri"]


def test_prompt_without_a_patient_gets_an_answer_and_no_report(make_runtime, reports_of):
    summary = run(make_runtime(), {"prompt": "What are causes of fever and cough?"})
    assert "Community-acquired pneumonia" in summary["answer"]
    assert summary["report_uri"] is None and summary["tools_called"] == []


def test_unknown_patient_in_a_prompt_is_answered_plainly(make_runtime):
    summary = run(make_runtime(), {"prompt": "Assess patient P-999999"})
    assert summary["tools_called"] == ["get_patient_record"]
    assert "no patient P-999999" in summary["answer"]


def test_create_medical_agent_reads_settings_from_the_environment(env):
    from agent import create_medical_agent

    agent = create_medical_agent(max_tokens=77, temperature=0.5)
    assert agent.model.endpoint_config["endpoint_name"] == "clinical-llm"
    assert agent.model.endpoint_config["inference_component_name"] == "clinical-lora"
    assert agent.model.payload_config["max_tokens"] == 77 and agent.model.payload_config["temperature"] == 0.5
    assert sorted(agent.tool_names) == ["diagnose", "get_patient_record", "upload_diagnostic_report"]
    assert (
        "SYNTHETIC" in agent.system_prompt and "diagnosis or treatment advice for a real person" in agent.system_prompt
    )


def test_missing_environment_names_each_variable(monkeypatch):
    from agent.errors import ConfigurationError
    from agent.settings import load_settings

    for name in (
        "SAGEMAKER_ENDPOINT_NAME",
        "PATIENT_TABLE",
        "REPORTS_BUCKET",
        "REPORTS_KMS_KEY_ID",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODEL_TEMPERATURE", "7")
    with pytest.raises(ConfigurationError) as err:
        load_settings()
    message = str(err.value)
    for name in ("SAGEMAKER_ENDPOINT_NAME", "PATIENT_TABLE", "REPORTS_BUCKET", "REPORTS_KMS_KEY_ID", "AWS_REGION"):
        assert f"{name}: required but not set" in message or f"{name} (or" in message
    assert "MODEL_TEMPERATURE: Input should be less than or equal to 2" in message


def test_settings_treat_empty_variables_as_unset_and_fall_back_to_the_default_region():
    from agent.settings import load_settings

    environ = {
        "SAGEMAKER_ENDPOINT_NAME": "clinical-llm",
        "SAGEMAKER_INFERENCE_COMPONENT": "",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "PATIENT_TABLE": "patients",
        "REPORTS_BUCKET": "reports",
        "REPORTS_KMS_KEY_ID": "arn:aws:kms:k",
        "RECORD_PROMPTS": "false",
        "MODEL_MAX_TOKENS": "512",
    }
    settings = load_settings(environ)
    assert settings.sagemaker_inference_component is None and settings.diagnosis_component is None
    assert settings.aws_region == "eu-west-1" and settings.model_max_tokens == 512 and settings.record_prompts is False
