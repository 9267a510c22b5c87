"""The demo flow end to end, with smaller settings: train → register → serve → ask → trace.

Runs the same code as `make demo` (local.demo.Demo) against real local servers (MLflow, moto,
the SageMaker front over the CPU backend, the runtime emulator, the agent app), then checks what
a user would: the model version is registered, the report object exists encrypted, and the trace
holds the model-call span. A second run over the same workdir skips every step and starts nothing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from local.demo import ADAPTER, MODEL_NAME, Demo, Settings
from stacks.settings import load_model_lock

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The demo run to the end with its services still up; everything is stopped by PID afterwards."""
    settings = Settings(
        workdir=tmp_path_factory.mktemp("demo"), records=200, patients=5, max_steps=60, eval_samples=4, mlflow_port=0
    )
    demo = Demo(settings, out=lambda line: None)
    try:
        result = demo.run()
        yield demo, result
    finally:
        pids = [s.pid for s in demo.services.values()]
        demo.stop_all()
        for pid in pids:  # stopped: signalling the process group finds nobody
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)


def test_model_version_is_registered_with_its_model_card(finished):
    from mlflow import MlflowClient

    demo, result = finished
    client = MlflowClient(tracking_uri=demo.services["mlflow"].url)
    version = client.get_model_version(MODEL_NAME, result["registered"]["version"])
    assert version.run_id == result["registered"]["run_id"]
    assert "Intended use" in version.description and "not for real patients" in version.description
    assert version.source.endswith("/adapter")
    assert client.list_artifacts(version.run_id, "adapter")  # the adapter files are in the run


def test_the_register_step_pins_the_version_in_the_demos_own_lock_and_that_adapter_serves(finished):
    demo, result = finished
    (pin,) = load_model_lock(demo.lock_path).adapters
    assert demo.lock_path.parent == demo.work  # the demo's own pin; config/models.lock.json is not touched
    assert load_model_lock(ROOT / "config" / "models.lock.json").adapters == []
    assert (pin.name, pin.base) == (ADAPTER, "llama32-3b")
    assert pin.model_package == f"models:/{MODEL_NAME}/{result['registered']['version']}"
    assert pin.mlflow_run_id == result["registered"]["run_id"] and pin.lora_rank == demo.s.lora_rank
    archive = Path(pin.source_uri.removeprefix("file://"))
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == pin.sha256
    served = demo.work / "serving" / pin.artifact_key.removesuffix(".tar.gz")  # the checked, unpacked copy
    trained = demo.work / "adapter"
    assert sorted(p.name for p in served.iterdir()) == sorted(p.name for p in trained.iterdir())
    assert (served / "adapter_config.json").read_bytes() == (trained / "adapter_config.json").read_bytes()


def test_report_object_exists_and_is_kms_encrypted(finished):
    import boto3

    demo, result = finished
    s3 = boto3.client(
        "s3",
        endpoint_url=demo.services["moto"].url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    bucket, key = result["report_uri"].removeprefix("s3://").split("/", 1)
    assert key.startswith("reports/P-000045/") and key.endswith(".md")
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert "P-000045" in body


def test_trace_holds_the_model_call_span_without_the_prompt(finished):
    from mlflow import MlflowClient

    demo, result = finished
    trace = MlflowClient(tracking_uri=demo.services["mlflow"].url).get_trace(result["trace"]["trace_id"])
    diagnose = next(s for s in trace.data.spans if s.name == "diagnose")
    assert diagnose.attributes["sagemaker.inference_component"] == ADAPTER
    assert diagnose.attributes["sagemaker.endpoint_name"] == "clinical-llm"
    assert diagnose.attributes["diagnosis.prompt"] == "[REDACTED]"  # prompts stay out of traces by default
    assert diagnose.attributes["diagnosis.success"] is True


def test_second_run_skips_every_step_and_starts_nothing(finished):
    demo, result = finished
    lines = []
    again = Demo(demo.s, out=lines.append)
    second = again.run()
    assert again.ran == [] and len(again.skipped) == 7
    assert again.services == {}
    assert all("skipped, inputs unchanged" in line for line in lines)
    assert second["report_uri"] == result["report_uri"]
