"""The deployed configuration, offline: the agent package (built for this machine through the same code
path as the arm64 asset) started as AgentCore starts it, with exactly the environment the synthesized
``AWS::BedrockAgentCore::Runtime`` sets -- only its CloudFormation references (table, bucket, key, MLflow
ARN) and the endpoints replaced by local ones. MLflow is reached through the ARN-resolving, SigV4-signing
path of the sagemaker-mlflow plugin (its endpoint override pointing at a proxy that verifies each
signature with botocore before forwarding to a local MLflow server); ADOT exports to a local OTLP receiver
standing in for AgentCore observability. The seed case must leave one redacted trace in each sink.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import pytest

from agent.patients import synthetic_patients
from local.agentcore import start_package
from local.aws import LOCAL_CREDENTIALS, provision, start_moto
from local.server import LocalServer, free_port, wait_until
from stacks.constructs import agent_package as pkg

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
MLFLOW_APP_ARN = f"arn:aws:sagemaker:{REGION}:111111111111:mlflow-app/app-LOCALTEST0001"
SEED_CASE = {  # the README's seed case
    "patient_id": "P-000045",
    "symptoms": ["fever", "cough"],
    "vitals": {"temperature_c": 38.5, "heart_rate_bpm": 98},
    "notes": "45-year-old man, fever and cough for three days, temperature 101.3 F, heart rate 98.",
}
COMPLETION = "Synthetic teaching case assessed by the scripted model"  # what the scripted model answers
TREE = {"clinical_request", "invoke_agent clinical_agent", "execute_tool diagnose", "diagnose"}


def python_server(module: str, *args: str, health: str = "/ping") -> LocalServer:
    port = free_port()
    argv = [sys.executable, "-m", module, "--port", str(port), *args]
    return LocalServer.start(argv, port=port, cwd=ROOT, health=health)


@pytest.fixture(scope="module")
def runtime_resource(tmp_path_factory) -> dict:
    """The dev environment's AgentCore runtime, as synthesized (environment and code configuration)."""
    from tools.synth import synth

    out = tmp_path_factory.mktemp("cdk.out")
    synth(str(out), environments="dev")
    (template,) = out.glob("assembly-Dev/*Agent*.template.json")
    resources = json.loads(template.read_text())["Resources"].values()
    (runtime,) = [r for r in resources if r["Type"] == "AWS::BedrockAgentCore::Runtime"]
    return runtime["Properties"]


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return pkg.build_local_package(tmp_path_factory.mktemp("package") / "agent")


def deployed_environment(properties: dict, local: dict[str, str]) -> dict[str, str]:
    """The runtime's variables: literals as synthesized; each CloudFormation reference replaced by ``local``
    (which must name exactly those)."""
    env = properties["EnvironmentVariables"]
    references = {k for k, v in env.items() if not isinstance(v, str)}
    assert references == set(local), f"references to substitute: {sorted(references)}"
    return {k: v if isinstance(v, str) else local[k] for k, v in env.items()}


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def deployed_run(runtime_resource, package, mlflow_server, tmp_path_factory):
    with start_moto() as moto:
        aws = provision(moto.url, patients=50)
        with (
            python_server("local.scripted_model", "--mode", "tools") as model,
            python_server(
                "local.sigv4_proxy",
                "--upstream",
                mlflow_server.url,
                "--service",
                "sagemaker",  # an MLflow App is signed for sagemaker (a tracking server: sagemaker-mlflow)
                "--region",
                REGION,
                "--access-key",
                LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "--secret-key",
                LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                health="/__proxy/ping",
            ) as proxy,
            python_server("local.otlp_receiver") as otlp,
        ):
            env = runtime_resource["EnvironmentVariables"]
            route = f"{env['SAGEMAKER_ENDPOINT_NAME']}/{env['SAGEMAKER_INFERENCE_COMPONENT']}={model.url}"
            with python_server("local.sagemaker_runtime", "--route", f"{route}#adapter=x") as emulator:
                environment = deployed_environment(
                    runtime_resource,
                    {
                        "PATIENT_TABLE": aws.table,
                        "REPORTS_BUCKET": aws.bucket,
                        "REPORTS_KMS_KEY_ID": aws.kms_key_id,
                        "MLFLOW_TRACKING_URI": MLFLOW_APP_ARN,
                    },
                ) | {  # the endpoints (and the credentials AgentCore gives the runtime role)
                    **LOCAL_CREDENTIALS,
                    "AWS_ENDPOINT_URL_S3": moto.url,
                    "AWS_ENDPOINT_URL_DYNAMODB": moto.url,
                    "AWS_ENDPOINT_URL_LOGS": moto.url,
                    "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": emulator.url,
                    "SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT": proxy.url,
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{otlp.url}/v1/traces",
                    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"{otlp.url}/v1/logs",
                    "OTEL_BSP_SCHEDULE_DELAY": "200",
                    "OTEL_BLRP_SCHEDULE_DELAY": "200",
                }
                files_before = sorted(p.relative_to(package) for p in package.rglob("*"))
                entrypoint = runtime_resource["AgentRuntimeArtifact"]["CodeConfiguration"]["EntryPoint"]
                with start_package(package, entrypoint, environment) as app:
                    r = httpx.post(f"{app.url}/invocations", json={"case": SEED_CASE}, timeout=120)
                    traces = wait_for_mlflow_trace(mlflow_server.url, env["MLFLOW_EXPERIMENT_NAME"])
                    spans = wait_until(
                        lambda: get_json(f"{otlp.url}/spans"),
                        lambda s: "diagnose" in names(s),
                        timeout=60,
                        interval=0.5,
                        what="the diagnose span at the OTLP receiver",
                    )
                    time.sleep(1)  # the last batches (logs) of the export interval
                    yield {
                        "response": r,
                        "mlflow": traces,
                        "otlp_spans": get_json(f"{otlp.url}/spans"),
                        "otlp_logs": get_json(f"{otlp.url}/logs"),
                        "proxy": get_json(f"{proxy.url}/__proxy/stats"),
                        "log": app.log_tail(200_000),
                        "files_before": files_before,
                        "package": package,
                        "first_spans": spans,
                    }


def names(spans: list[dict]) -> set[str]:
    return {s["name"] for s in spans}


def wait_for_mlflow_trace(url: str, experiment_name: str) -> list:
    import logging

    import mlflow

    logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)  # plugin vs. a URL
    client = mlflow.MlflowClient(tracking_uri=url)

    def traces():
        experiment = client.get_experiment_by_name(experiment_name)
        return client.search_traces(locations=[experiment.experiment_id]) if experiment else []

    # spans are logged as they end: wait for the whole tree (the root ends last)
    return wait_until(
        traces,
        lambda ts: any(TREE <= {s.name for s in t.data.spans} for t in ts),
        timeout=60,
        interval=0.5,
        what=f"a trace with the spans {sorted(TREE)} in MLflow",
    )


def sensitive_values() -> list[str]:
    record = synthetic_patients(50)[44]  # P-000045
    values = [SEED_CASE["notes"], "three days", COMPLETION, *record["conditions"], *record["medications"]]
    return values + list(record["allergies"])


def test_the_seed_case_is_answered_from_the_package_with_the_deployed_environment(deployed_run):
    r = deployed_run["response"]
    assert r.status_code == 200, r.text + deployed_run["log"][-3000:]
    assert r.json()["report_uri"].startswith("s3://")
    after = sorted(p.relative_to(deployed_run["package"]) for p in deployed_run["package"].rglob("*"))
    assert after == deployed_run["files_before"]  # nothing compiled or written at run time


def test_mlflow_receives_one_trace_through_the_signed_arn_path(deployed_run, runtime_resource):
    stats = deployed_run["proxy"]
    assert stats["rejected"] == [] and stats["verified"] > 0  # every MLflow call was SigV4-signed for the App
    (trace,) = [t for t in deployed_run["mlflow"] if TREE <= {s.name for s in t.data.spans}]
    spans = {s.name: s for s in trace.data.spans}
    assert TREE <= set(spans)
    assert spans["clinical_request"].parent_id is None  # one tree per invocation, rooted at the request
    diagnose = spans["diagnose"].attributes
    assert diagnose["sagemaker.endpoint_name"] == "clinical-llm"
    # the component dev declares for its agent (the committed pin pins nothing: its base model)
    component = runtime_resource["EnvironmentVariables"]["SAGEMAKER_INFERENCE_COMPONENT"]
    assert diagnose["sagemaker.inference_component"] == component == "llama32-3b"
    assert diagnose["gen_ai.request.max_tokens"] == 1024 and diagnose["gen_ai.request.temperature"] == 0.2
    assert diagnose["diagnosis.success"] is True and diagnose["diagnosis.response_length"] > 0
    assert diagnose["diagnosis.duration_ms"] > 0
    assert diagnose["diagnosis.prompt"] == "[REDACTED]"
    everything = json.dumps([t.to_dict() for t in deployed_run["mlflow"]], default=str)
    for value in sensitive_values():
        assert value not in everything, f"{value!r} reached MLflow"


def test_agentcore_observability_receives_the_same_tree_redacted(deployed_run, runtime_resource):
    spans = deployed_run["otlp_spans"]
    tree = [s for s in spans if s["name"] in TREE]
    assert TREE <= names(tree)
    assert len({s["trace_id"] for s in tree}) == 1  # the invocation's spans share one trace
    (diagnose,) = [s for s in spans if s["name"] == "diagnose"]
    a = diagnose["attributes"]
    component = runtime_resource["EnvironmentVariables"]["SAGEMAKER_INFERENCE_COMPONENT"]
    assert a["sagemaker.endpoint_name"] == "clinical-llm" and a["sagemaker.inference_component"] == component
    assert int(a["gen_ai.request.max_tokens"]) == 1024 and a["diagnosis.success"] is True
    assert a["diagnosis.prompt"] == "[REDACTED]"
    everything = json.dumps(spans) + json.dumps(deployed_run["otlp_logs"])
    assert "[REDACTED]" in everything
    for value in sensitive_values():
        assert value not in everything, f"{value!r} reached AgentCore observability"


def test_the_package_ran_under_adot_with_its_own_bytecode(deployed_run):
    log = deployed_run["log"]
    assert "Traceback" not in log, log[-3000:]
    scopes = {s["scope"] for s in deployed_run["otlp_spans"]}
    assert any(scope and scope.startswith("opentelemetry.instrumentation") for scope in scopes)  # ADOT's own
