"""The demo end to end: models that learned the task, a real assessment, real tool calls.

Runs the same code as `make demo` (local.demo.Demo): a tiny Llama pretrained here from random weights
on synthetic agent transcripts, the pipeline's own train.py LoRA fine-tune and evaluate.py, the
quality gate and the MLflow registry, then real local servers (moto, the SageMaker front over the CPU
backend, the runtime emulator, the agent app) answering the seed case. It checks what the issue
promises: the fine-tune lifts held-out accuracy from about chance to at least 0.8, the agent itself
reads the record and stores the report, the answer names pneumonia for the seed profile, and the same
flow on an untrained model does not. A second run over the same workdir skips every step.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from local.demo import ADAPTER, MODEL_NAME, AgentFailed, Demo, GateFailed, Settings, accuracy_of
from stacks.settings import load_model_lock

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The demo run to the end with its services still up; everything is stopped by PID afterwards."""
    settings = Settings(workdir=tmp_path_factory.mktemp("demo"), patients=5, mlflow_port=0)
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


def test_the_fine_tune_lifts_held_out_accuracy_from_chance_past_the_target(finished):
    _, result = finished
    ev = result["evaluation"]
    assert accuracy_of(ev["tuned"]) >= 0.8
    assert accuracy_of(ev["base"]) <= max(2 * ev["chance"], 0.25)  # the base has not learned the task
    assert ev["tuned"]["samples"]["answered"] == ev["base"]["samples"]["answered"] >= 40


def test_the_agent_itself_reads_the_record_and_stores_the_report_naming_pneumonia(finished):
    _, result = finished
    assert "pneumonia" in result["answer"].lower()
    tools = result["tools_called"]
    assert "get_patient_record" in tools and "upload_diagnostic_report" in tools
    assert tools.index("get_patient_record") < tools.index("upload_diagnostic_report")
    assert result["report_source"] == "agent"  # the model stored it, not the app's fallback
    assert result["report_encryption"] == "aws:kms"
    report = result["report"]
    assert report.startswith("# Diagnostic report - P-000045")
    assert "Most likely diagnosis: Community-acquired pneumonia" in report  # the assessment diagnose gave it


def test_the_model_version_is_registered_with_the_evaluation_it_passed(finished):
    from mlflow import MlflowClient

    demo, result = finished
    client = MlflowClient(tracking_uri=demo.services["mlflow"].url)
    version = client.get_model_version(MODEL_NAME, result["registered"]["version"])
    assert version.run_id == result["registered"]["run_id"]
    assert "Intended use" in version.description and "not for real patients" in version.description
    assert float(version.tags["accuracy"]) == accuracy_of(result["evaluation"]["tuned"])
    assert float(version.tags["accuracy_threshold"]) == result["threshold"] <= float(version.tags["accuracy"])
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


def test_below_the_threshold_nothing_is_registered_and_the_reason_is_given(finished, tmp_path):
    demo, result = finished
    gate = Demo(Settings(workdir=tmp_path, mlflow_port=0), out=lambda line: None)
    evaluation = {**result["evaluation"], "tuned": result["evaluation"]["base"]}  # the untrained model's numbers
    with pytest.raises(GateFailed, match=r"accuracy 0\.\d\d is below 0\.\d+ \(training\.accuracy_threshold of dev"):
        gate.register_if_passing({"sha": "x", "mlflow_run_id": None}, evaluation, result["threshold"])
    assert gate.services == {}  # refused before MLflow was touched


def test_the_trace_holds_the_tool_calls_without_the_prompt(finished):
    from mlflow import MlflowClient

    demo, result = finished
    trace = MlflowClient(tracking_uri=demo.services["mlflow"].url).get_trace(result["trace"]["trace_id"])
    names = [s.name for s in trace.data.spans]
    assert any("get_patient_record" in n for n in names) and any("upload_diagnostic_report" in n for n in names)
    diagnose = next(s for s in trace.data.spans if s.name == "diagnose")
    assert diagnose.attributes["sagemaker.inference_component"] == ADAPTER
    assert diagnose.attributes["diagnosis.prompt"] == "[REDACTED]"  # prompts stay out of traces by default
    assert diagnose.attributes["diagnosis.success"] is True


def test_an_untrained_model_in_the_same_flow_does_not_give_that_answer(finished, tmp_path):
    """The control: a random-weight base, no fine-tune, the same servers, agent and case."""
    from local.tiny import build_tiny_model

    demo, _ = finished
    control = Demo(Settings(workdir=tmp_path, patients=5, mlflow_port=0), out=lambda line: None)
    control.services["mlflow"] = demo.services["mlflow"]  # shared, and stopped by the first demo
    control._starting = None
    try:
        untrained = control.serve_and_ask(str(build_tiny_model(tmp_path / "random")), adapter=False)
    except AgentFailed as e:  # the app's fallback asked the untrained model, which gave no assessment at all
        assert e.status == 502 and "returned an empty assessment" in e.body
        assert "pneumonia" not in e.body.lower()
        return
    finally:
        control.services.pop("mlflow")
        control.stop_all()
    assert "pneumonia" not in untrained["answer"].lower()
    assert "pneumonia" not in untrained["report"].lower()
    assert untrained["report_source"] == "app"  # the agent stored nothing: the app's fallback did
    assert "upload_diagnostic_report" not in untrained["tools_called"]


def test_second_run_skips_every_step_and_starts_nothing(finished):
    demo, _ = finished
    lines: list[str] = []
    again = Demo(demo.s, out=lines.append)
    again.run()
    assert again.ran == [] and len(again.skipped) == 7
    assert again.services == {} and again._starting is None  # not even MLflow
    assert len(lines) == 7 and all("skipped, inputs unchanged" in line for line in lines)
