"""Fixtures for the training tests: the programs run through their own entry points (subprocesses,
SageMaker-style environment), on a tiny random-weight Llama, against a real local MLflow server.

Session-scoped and built once: the tiny model, a generated + preprocessed dataset, the MLflow
server (shared by the whole session, tests/conftest.py), and one end-to-end training run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from local.tiny import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ROOT / "training"
PYTHON = sys.executable
# Small and fast: one thread per process (2 shared cores), tiny batches, few steps.
TRAIN_FLAGS = [
    "--batch-size",
    "4",
    "--gradient-accumulation-steps",
    "1",
    "--learning-rate",
    "2e-2",
    "--target-modules",
    "q_proj,v_proj",
    "--lora-rank",
    "8",
    "--lora-alpha",
    "16",
    "--max-length",
    "512",
    "--logging-steps",
    "5",
]


def program(name: str) -> str:
    return str(TRAINING / name)


def env(**extra: str) -> dict[str, str]:
    """A clean environment for a program: one thread, no tracking unless asked, no SageMaker vars."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SM_", "MLFLOW_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))
    }
    return {
        **base,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def run(args: list[str], *, check: bool = True, timeout: int = 240, **env_extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [PYTHON, *args], cwd=ROOT, env=env(**env_extra), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args[0]} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def marked_json(stdout: str, marker: str) -> dict:
    """The JSON a program prints after ``marker`` (TRAIN_SUMMARY, EVALUATION)."""
    lines = [line for line in stdout.splitlines() if line.startswith(marker + " ")]
    assert lines, f"no {marker} line in output:\n{stdout[-3000:]}"
    return json.loads(lines[-1][len(marker) + 1 :])


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    run([program("generate.py"), "--output", str(out / "records.jsonl"), "--count", "240", "--seed", "11"])
    return out


@dataclass(frozen=True)
class Dataset:
    raw: Path
    train: Path
    test: Path
    report: dict


@pytest.fixture(scope="session")
def dataset(raw_dir, tmp_path_factory) -> Dataset:
    out = tmp_path_factory.mktemp("processed")
    run([program("preprocess.py"), "--input-dir", str(raw_dir), "--output-dir", str(out), "--test-fraction", "0.15"])
    return Dataset(raw_dir, out / "train", out / "test", json.loads((out / "report" / "report.json").read_text()))


@pytest.fixture(scope="session")
def tiny_base(dataset, tmp_path_factory) -> Path:
    """The tiny model, its tokenizer trained on (a slice of) the same kind of text."""
    corpus = (dataset.train / "train.jsonl").read_text().splitlines()[:80]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base", corpus=corpus)


@dataclass(frozen=True)
class TrainedRun:
    model_dir: Path
    checkpoint_dir: Path
    output_dir: Path
    summary: dict
    stdout: str


@pytest.fixture(scope="session")
def trained(mlflow_server, dataset, tiny_base, tmp_path_factory) -> TrainedRun:
    """One training run as SageMaker would start it: paths from SM_* variables, MLflow from the env."""
    root = tmp_path_factory.mktemp("job")
    sm = {
        "SM_CHANNEL_TRAIN": str(dataset.train),
        "SM_CHANNEL_BASE": str(tiny_base),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DATA_DIR": str(root / "output"),
    }
    proc = run(
        [
            program("train.py"),
            *TRAIN_FLAGS,
            "--max-steps",
            "40",
            "--save-steps",
            "20",
            "--merge",
            "--checkpoint-dir",
            str(root / "checkpoints"),
            "--run-name",
            "e2e",
        ],
        MLFLOW_TRACKING_URI=mlflow_server.url,
        MLFLOW_EXPERIMENT_NAME="training-tests",
        MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="1",
        **sm,
    )
    return TrainedRun(
        root / "model", root / "checkpoints", root / "output", marked_json(proc.stdout, "TRAIN_SUMMARY"), proc.stdout
    )
