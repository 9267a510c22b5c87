"""evaluate.py on the trained tiny adapter, given as SageMaker hands it over (model.tar.gz)."""

from __future__ import annotations

import json
import math
import tarfile

import pytest

from tests.training.conftest import marked_json, program, run
from training.pipeline import ACCURACY_PATH, EVALUATION_FILE


@pytest.fixture(scope="module")
def evaluation(trained, dataset, tiny_base, mlflow_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    (root / "model").mkdir()
    with tarfile.open(root / "model" / "model.tar.gz", "w:gz") as tar:  # what the training job uploads
        for f in trained.model_dir.iterdir():
            tar.add(f, arcname=f.name)
    proc = run(
        [
            program("evaluate.py"),
            "--model-dir",
            str(root / "model"),
            "--test-dir",
            str(dataset.test),
            "--output-dir",
            str(root / "evaluation"),
            "--base-model",
            str(tiny_base),
            "--max-samples",
            "6",
            "--max-new-tokens",
            "24",
            "--batch-size",
            "3",
        ],
        MLFLOW_TRACKING_URI=mlflow_server.url,
        MLFLOW_EXPERIMENT_NAME="training-tests",
    )
    return root / "evaluation" / EVALUATION_FILE, marked_json(proc.stdout, "EVALUATION")


def test_evaluation_json_holds_loss_perplexity_and_accuracy_where_the_gate_reads(evaluation, dataset):
    path, printed = evaluation
    report = json.loads(path.read_text())
    assert report == printed
    value = report
    for key in ACCURACY_PATH.split("."):  # the QualityGate's JsonGet path
        value = value[key]
    assert 0.0 <= value <= 1.0
    lm = report["language_model_metrics"]
    assert 0 < lm["loss"]["value"] < 20
    assert lm["perplexity"]["value"] == pytest.approx(math.exp(lm["loss"]["value"]))
    assert report["samples"]["answered"] == 6
    assert report["samples"]["loss_examples"] == dataset.report["test"] and report["samples"]["loss_tokens"] > 0


def test_evaluation_is_logged_to_the_training_run(evaluation, trained, mlflow_server):
    from mlflow import MlflowClient

    _, report = evaluation
    assert report["mlflow_run_id"] == trained.summary["mlflow_run_id"]
    client = MlflowClient(mlflow_server.url)
    metrics = client.get_run(report["mlflow_run_id"]).data.metrics
    assert metrics["eval_loss"] == pytest.approx(report["language_model_metrics"]["loss"]["value"])
    assert metrics["eval_diagnosis_accuracy"] == report["multiclass_classification_metrics"]["accuracy"]["value"]
    assert "loss" in metrics  # the training metrics are in the same run
    assert [a.path for a in client.list_artifacts(report["mlflow_run_id"], "evaluation")] == [
        f"evaluation/{EVALUATION_FILE}"
    ]


def test_a_model_folder_without_an_adapter_is_named(dataset, tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run(
        [
            program("evaluate.py"),
            "--model-dir",
            str(tmp_path / "empty"),
            "--test-dir",
            str(dataset.test),
            "--output-dir",
            str(tmp_path / "out"),
            "--base-model",
            "unused",
        ],
        check=False,
    )
    assert proc.returncode != 0 and f"no adapter_config.json in {tmp_path / 'empty'}" in proc.stderr
    assert not (tmp_path / "out" / EVALUATION_FILE).exists()
