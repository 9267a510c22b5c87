"""Real local servers for the agent tests, started once per session on free ports, stopped by PID:
moto (S3, DynamoDB, KMS) with the reports bucket, patient table and synthetic patients; two scripted
OpenAI-compatible model servers (one that calls tools, one that never does); the SageMaker runtime
emulator in front of them; and an in-memory span exporter on the global tracer provider."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest

from local.aws import client, provision, start_moto
from local.server import LocalServer, free_port

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "clinical-llm"
TOOLS_COMPONENT = "clinical-lora"  # adapter component -> scripted model that calls tools
PLAIN_COMPONENT = "plain-model"  # base component -> scripted model that never calls tools


def start_python(module: str, *args: str, env: dict[str, str] | None = None, health: str = "/ping") -> LocalServer:
    port = free_port()
    return LocalServer.start(
        [sys.executable, "-m", module, "--port", str(port), *args], port=port, env=env, cwd=ROOT, health=health
    )


@pytest.fixture(scope="session")
def aws():
    with start_moto() as moto:
        yield provision(moto.url, patients=12)


@pytest.fixture(scope="session")
def tools_model():
    with start_python("local.scripted_model", "--mode", "tools") as server:
        yield server


@pytest.fixture(scope="session")
def plain_model():
    with start_python("local.scripted_model", "--mode", "plain") as server:
        yield server


@pytest.fixture(scope="session")
def broken_model():
    with start_python("local.scripted_model", "--mode", "broken") as server:
        yield server


@pytest.fixture(scope="session")
def emulator(tools_model, plain_model, broken_model):
    routes = [
        f"{ENDPOINT}/{TOOLS_COMPONENT}={tools_model.url}#adapter={TOOLS_COMPONENT}",
        f"{ENDPOINT}/{PLAIN_COMPONENT}={plain_model.url}",
        f"{ENDPOINT}/broken-component={broken_model.url}",
        f"{ENDPOINT}/dead-component=http://127.0.0.1:{free_port()}",
    ]
    with start_python("local.sagemaker_runtime", *[a for r in routes for a in ("--route", r)]) as server:
        yield server


@pytest.fixture(scope="session")
def agent_env(aws, emulator) -> dict[str, str]:
    """The environment agent.app reads, pointing at the local servers."""
    return aws.env() | {
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": emulator.url,
        "SAGEMAKER_ENDPOINT_NAME": ENDPOINT,
        "SAGEMAKER_INFERENCE_COMPONENT": TOOLS_COMPONENT,
        "MODEL_MAX_TOKENS": "256",
        "MODEL_TEMPERATURE": "0.1",
    }


@pytest.fixture
def env(monkeypatch, agent_env) -> dict[str, str]:
    """This test runs with agent_env set (restored afterwards), and no inherited agent settings."""
    for name in (
        "RECORD_PROMPTS",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_EXPERIMENT_ID",
        "OTEL_SEMCONV_STABILITY_OPT_IN",
        "DIAGNOSIS_INFERENCE_COMPONENT",
        "MODEL_STREAMING",
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    for k, v in agent_env.items():
        monkeypatch.setenv(k, v)
    return agent_env


@pytest.fixture(scope="session")
def span_exporter():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(span_exporter):
    span_exporter.clear()
    return span_exporter


@pytest.fixture
def s3(aws):
    return client("s3", aws.endpoint_url)


@pytest.fixture
def reports_of(s3, aws):
    """Keys of the stored reports of one patient."""

    def keys(patient_id: str) -> list[str]:
        listing = s3.list_objects_v2(Bucket=aws.bucket, Prefix=f"reports/{patient_id}/")
        return sorted(o["Key"] for o in listing.get("Contents", []))

    return keys


class ModelLog:
    """What a scripted model server received (``GET /requests``), cleared with ``clear``."""

    @staticmethod
    def get(server: LocalServer) -> list[dict]:
        with urllib.request.urlopen(server.url + "/requests") as r:
            return json.load(r)

    @staticmethod
    def clear(server: LocalServer) -> None:
        urllib.request.urlopen(urllib.request.Request(server.url + "/requests", method="DELETE")).close()


@pytest.fixture
def model_log(tools_model, plain_model) -> ModelLog:
    ModelLog.clear(tools_model)
    ModelLog.clear(plain_model)
    return ModelLog()
