"""Spans (in-memory exporter on the global provider) and logs: content redacted by default, recorded when allowed."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from agent.models import parse_request
from agent.patients import synthetic_patients

SYMPTOM = "crushing chest pain radiating to the left arm"
PATIENT = "P-000009"
CASE = {"case": {"patient_id": PATIENT, "symptoms": [SYMPTOM], "vitals": {"heart_rate_bpm": 118}, "notes": "smoker"}}
RECORD = synthetic_patients(12)[8]


def sensitive_values() -> list[str]:
    # The symptom, and record fields that reach prompts and tool results (age alone is not distinctive).
    return [SYMPTOM, "smoker", *RECORD["conditions"], *RECORD["medications"], *RECORD["allergies"]]


def span_text(span) -> str:
    parts = [json.dumps(dict(span.attributes), default=str)]
    parts += [json.dumps({"name": e.name, **dict(e.attributes)}, default=str) for e in span.events]
    return "\n".join(parts)


def run_case(record_prompts: bool):
    from agent.service import ClinicalAgentRuntime

    runtime = ClinicalAgentRuntime.from_environment(record_prompts=record_prompts)

    async def go():
        return await runtime.run(await runtime.prepare(parse_request(CASE)), "session-telemetry")

    return asyncio.run(go())


@pytest.fixture
def diagnoser(env):
    from agent.factory import ClinicalServices
    from agent.settings import load_settings

    def make(**overrides):
        return ClinicalServices.from_settings(load_settings(**overrides)).diagnoser

    return make


def test_diagnose_span_records_call_parameters_and_redacts_the_prompt(diagnoser, spans):
    text = diagnoser(diagnosis_inference_component="plain-model").diagnose(f"{SYMPTOM}, HR 118")
    (span,) = [s for s in spans.get_finished_spans() if s.name == "diagnose"]
    a = span.attributes
    assert a["sagemaker.endpoint_name"] == "clinical-llm"
    assert a["sagemaker.inference_component"] == "plain-model"
    assert a["gen_ai.request.max_tokens"] == 256 and a["gen_ai.request.temperature"] == 0.1
    assert a["diagnosis.prompt"] == "[REDACTED]"
    assert a["diagnosis.success"] is True
    assert a["diagnosis.response_length"] == len(text) > 0
    assert 0 < a["diagnosis.duration_ms"] < 10_000
    assert "diagnosis.completion" not in a
    assert SYMPTOM not in span_text(span)


def test_diagnose_span_records_prompt_and_completion_when_allowed(diagnoser, spans):
    text = diagnoser(diagnosis_inference_component="plain-model", record_prompts=True).diagnose(SYMPTOM)
    (span,) = [s for s in spans.get_finished_spans() if s.name == "diagnose"]
    assert span.attributes["diagnosis.prompt"] == SYMPTOM
    assert span.attributes["diagnosis.completion"] == text


def test_agent_trace_carries_no_prompt_or_patient_field_by_default(env, spans, caplog):
    caplog.set_level(logging.DEBUG)
    summary = run_case(record_prompts=False)
    assert summary["report_source"] == "agent"
    finished = spans.get_finished_spans()
    names = {s.name for s in finished}
    assert {
        "clinical_request",
        "invoke_agent clinical_agent",
        "execute_tool get_patient_record",
        "execute_tool diagnose",
        "execute_tool upload_diagnostic_report",
        "diagnose",
    } <= names
    assert len({s.context.trace_id for s in finished}) == 1  # one trace per request
    everything = "\n".join(span_text(s) for s in finished)
    assert "[REDACTED]" in everything  # strands' content events are there, emptied
    for value in sensitive_values():
        assert value not in everything, f"{value!r} leaked into a span"
        assert value not in caplog.text, f"{value!r} leaked into the logs"
    request_span = next(s for s in finished if s.name == "clinical_request")
    assert request_span.attributes["session.id"] == "session-telemetry"
    agent_span = next(s for s in finished if s.name == "invoke_agent clinical_agent")
    assert agent_span.attributes["session.id"] == "session-telemetry"


def test_agent_trace_records_content_when_allowed(env, spans, caplog):
    caplog.set_level(logging.INFO)
    run_case(record_prompts=True)
    everything = "\n".join(span_text(s) for s in spans.get_finished_spans())
    assert SYMPTOM in everything
    assert RECORD["conditions"][0] in everything  # the tool result, as strands recorded it
    assert SYMPTOM in caplog.text  # strands' payload log


def test_record_prompts_is_read_from_the_environment(env, monkeypatch):
    from agent.settings import load_settings

    assert load_settings().record_prompts is False
    monkeypatch.setenv("RECORD_PROMPTS", "true")
    assert load_settings().record_prompts is True


def start_app(agent_env: dict[str, str], **extra: str):
    import subprocess
    import sys
    from pathlib import Path

    from local.server import free_port

    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-m", "agent.app", "--local", "--port", str(free_port())],
        cwd=root,
        env=agent_env | {"PATH": "/usr/bin:/bin"} | extra,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("file:///tmp/mlruns", "neither a SageMaker MLflow ARN nor an http(s) URL"),
        ("arn:aws:sagemaker:us-east-1:123:mlflow-app/app-1", "is not a SageMaker MLflow ARN"),
        ("arn:aws:s3:::bucket", "is not a SageMaker MLflow ARN"),
    ],
)
def test_mlflow_uri_that_cannot_work_stops_the_app_at_start(agent_env, uri, reason):
    done = start_app(agent_env, MLFLOW_TRACKING_URI=uri)
    assert done.returncode == 2 and "MLFLOW_TRACKING_URI" in done.stderr and reason in done.stderr


def test_agent_observability_without_adot_stops_the_app_at_start(agent_env):
    done = start_app(agent_env, AGENT_OBSERVABILITY_ENABLED="true")
    assert done.returncode == 2
    assert "AGENT_OBSERVABILITY_ENABLED=true" in done.stderr and "opentelemetry-instrument" in done.stderr


def test_mlflow_app_and_tracking_server_arns_are_accepted(env):
    from agent.settings import load_settings

    for arn in (
        "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-app/app-ABCDEF123456",
        "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/clinical-agent",
    ):
        assert load_settings(mlflow_tracking_uri=arn).mlflow_tracking_uri == arn


def test_unreachable_mlflow_is_a_loud_error_and_the_agent_keeps_serving(env, caplog):
    from agent.telemetry import export_to_mlflow
    from local.server import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    assert export_to_mlflow(closed, "never-created") is False
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "agent.telemetry"]
    assert errors and closed in errors[0].getMessage() and "NOT exported to MLflow" in errors[0].getMessage()
