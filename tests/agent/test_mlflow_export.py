"""Traces reach a real MLflow server over OTLP (``/v1/traces`` + ``x-mlflow-experiment-id``), redacted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from local.server import LocalServer, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "agent-traces-test"
SYMPTOM = "sudden tearing interscapular pain"


@pytest.fixture(scope="module")
def mlflow_url(mlflow_server):
    return mlflow_server.url


@pytest.fixture(scope="module")
def traced_app(agent_env, mlflow_url):
    port = free_port()
    env = agent_env | {
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "clinical-agent-test",
    }
    args = [sys.executable, "-m", "agent.app", "--local", "--port", str(port)]
    with LocalServer.start(args, port=port, env=env, cwd=ROOT) as server:
        yield server.url


def test_agent_traces_are_exported_to_mlflow_without_patient_content(traced_app, mlflow_url):
    import mlflow

    case = {"case": {"patient_id": "P-000011", "symptoms": [SYMPTOM], "vitals": {"systolic_bp_mmhg": 190}}}
    r = httpx.post(f"{traced_app}/invocations", json=case, timeout=60)
    assert r.status_code == 200, r.text

    client = mlflow.MlflowClient(tracking_uri=mlflow_url)
    experiment = client.get_experiment_by_name(EXPERIMENT)  # created by the app on first use
    assert experiment is not None
    spans = wait_until(
        lambda: [s for t in client.search_traces(locations=[experiment.experiment_id]) for s in t.data.spans],
        lambda spans: {"diagnose", "clinical_request"} <= {s.name for s in spans},
        timeout=60,
        interval=0.5,
        what="the diagnose and clinical_request spans in MLflow",
    )
    names = {s.name for s in spans}
    assert {
        "clinical_request",
        "invoke_agent clinical_agent",
        "execute_tool upload_diagnostic_report",
        "diagnose",
    } <= names
    diagnose = next(s for s in spans if s.name == "diagnose")
    assert diagnose.attributes["diagnosis.prompt"] == "[REDACTED]"
    assert diagnose.attributes["sagemaker.inference_component"] == "clinical-lora"
    everything = json.dumps([s.to_dict() for s in spans], default=str)
    assert SYMPTOM not in everything
