"""train.py end to end on the tiny model: SageMaker-style paths, MLflow, resume, SIGTERM, torchrun."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from local.aws import free_port
from tests.training.conftest import PYTHON, ROOT, TRAIN_FLAGS, env, marked_json, program, run

torch = pytest.importorskip("torch")


def test_training_writes_the_adapter_and_the_loss_falls(trained):
    s = trained.summary
    assert s["global_step"] == 40 and s["resumed_from_step"] == 0 and not s["stopped"]
    assert s["last_loss"] < s["first_loss"] - 0.05, s
    files = {p.name for p in trained.model_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "training_run.json"} <= files
    assert "model.safetensors" not in files  # the adapter at the top (what the adapter component loads)
    assert (trained.model_dir / "merged" / "model.safetensors").is_file()  # --merge
    config = json.loads((trained.model_dir / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16 and set(config["target_modules"]) == {"q_proj", "v_proj"}
    assert json.loads((trained.output_dir / "train_summary.json").read_text()) == s
    assert (trained.checkpoint_dir / "checkpoint-40" / "trainer_state.json").is_file()
    # progress at every logging step (5): step, loss, the time left (what the demo shows during the fine-tune)
    progress = [
        json.loads(line.split(" ", 1)[1]) for line in trained.stdout.splitlines() if line.startswith("TRAIN_PROGRESS ")
    ]
    assert [p["step"] for p in progress] == list(range(5, 41, 5))
    assert all(p["max_steps"] == 40 and p["loss"] > 0 and p["remaining_s"] >= 0 for p in progress)
    assert progress[-1]["remaining_s"] == 0


def test_the_adapter_reloads_and_changes_the_outputs_and_the_merged_model_matches(trained, tiny_base):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(trained.model_dir)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Chest pain and sweating"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    with torch.no_grad():
        base_logits = AutoModelForCausalLM.from_pretrained(tiny_base)(ids).logits
        tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), trained.model_dir)
        tuned_logits = tuned(ids).logits
        merged_logits = AutoModelForCausalLM.from_pretrained(trained.model_dir / "merged")(ids).logits
    assert (tuned_logits - base_logits).abs().max() > 1e-3
    assert torch.allclose(merged_logits, tuned_logits, atol=1e-4)


def test_the_run_is_recorded_in_mlflow_with_params_metrics_and_system_metrics(trained, mlflow_server):
    from mlflow import MlflowClient

    run_ = MlflowClient(mlflow_server.url).get_run(trained.summary["mlflow_run_id"])
    assert run_.info.status == "FINISHED" and run_.info.run_name == "e2e"
    params = run_.data.params
    assert params["lora_rank"] == "8" and params["lora_alpha"] == "16" and params["max_length"] == "512"
    assert params["target_modules"] == "q_proj,v_proj" and float(params["learning_rate"]) == 0.02
    history = MlflowClient(mlflow_server.url).get_metric_history(run_.info.run_id, "loss")
    assert [m.step for m in history] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert any(k.startswith("system/") for k in run_.data.metrics), sorted(run_.data.metrics)


def test_a_run_stopped_by_sigterm_after_a_checkpoint_resumes_from_it(dataset, tiny_base, mlflow_server, tmp_path):
    """A spot interruption: SIGTERM saves a checkpoint and exits 143; the next start continues the step
    count, and the MLflow run."""
    cmd = [
        PYTHON,
        program("train.py"),
        *TRAIN_FLAGS,
        "--max-steps",
        "25",
        "--save-steps",
        "5",
        "--train-dir",
        str(dataset.train),
        "--base-model",
        str(tiny_base),
        "--model-dir",
        str(tmp_path / "model"),
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
    ]
    tracking = {"MLFLOW_TRACKING_URI": mlflow_server.url, "MLFLOW_EXPERIMENT_NAME": "training-tests-resume"}
    first = subprocess.Popen(
        cmd, cwd=ROOT, env=env(**tracking), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 180
    while not (tmp_path / "ckpt" / "checkpoint-5" / "trainer_state.json").exists():
        assert first.poll() is None, first.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint-5 within 180 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 143, out[-3000:]
    stopped_at = int(out.split("checkpoint saved at step ")[1].split()[0])
    assert 5 <= stopped_at < 25
    assert (tmp_path / "ckpt" / f"checkpoint-{stopped_at}" / "trainer_state.json").is_file()
    assert not (tmp_path / "model").exists()  # an interrupted run writes no model

    interrupted = marked_json(out, "TRAIN_SUMMARY")
    assert interrupted["stopped"] and interrupted["global_step"] == stopped_at

    second = run(cmd[1:], **tracking)
    s = marked_json(second.stdout, "TRAIN_SUMMARY")
    assert f"resuming from checkpoint-{stopped_at} (step {stopped_at})" in second.stdout
    assert s["resumed_from_step"] == stopped_at and s["global_step"] == 25 and s["steps_run"] == 25 - stopped_at
    assert (tmp_path / "model" / "adapter_model.safetensors").is_file()

    from mlflow import MlflowClient

    assert s["mlflow_run_id"] == interrupted["mlflow_run_id"]  # one run across the interruption
    client = MlflowClient(mlflow_server.url)
    assert client.get_run(s["mlflow_run_id"]).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(s["mlflow_run_id"], "loss")][-1] == 25


def test_an_incomplete_checkpoint_is_not_resumed_from(tmp_path):
    from training.jobenv import latest_checkpoint

    for step, complete in ((10, True), (20, True), (30, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-20"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_two_process_torchrun_trains_with_ddp(dataset, tiny_base, tmp_path):
    proc = run(
        [
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(free_port()),
            program("train.py"),
            *TRAIN_FLAGS,
            "--batch-size",
            "2",
            "--max-steps",
            "4",
            "--save-steps",
            "2",
            "--train-dir",
            str(dataset.train),
            "--base-model",
            str(tiny_base),
            "--model-dir",
            str(tmp_path / "model"),
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
        ]
    )
    s = marked_json(proc.stdout, "TRAIN_SUMMARY")
    assert s["world_size"] == 2 and s["global_step"] == 4
    assert proc.stdout.count("TRAIN_SUMMARY") == 1  # rank 0 alone reports and saves
    state = json.loads((tmp_path / "ckpt" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["train_batch_size"] == 2
    assert (tmp_path / "model" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--base-model", "x", "--model-dir", "m", "--checkpoint-dir", "c"],
            "training data folder not given: pass --train-dir",
        ),
        (
            ["--train-dir", "nowhere", "--base-model", "x", "--model-dir", "m", "--checkpoint-dir", "c"],
            "training data folder nowhere is not a directory",
        ),
        (
            ["--train-dir", ".", "--model-dir", "m", "--checkpoint-dir", "c"],
            "--base-model is required outside SageMaker",
        ),
        (["--lora-rank", "0"], "--lora-rank: must be positive"),
        (["--lora-dropout", "1.5", "--train-dir", "."], "--lora-dropout must be in [0, 1)"),
    ],
)
def test_bad_arguments_are_named(args, message):
    proc = run([program("train.py"), *args], check=False, timeout=60)
    assert proc.returncode != 0 and message in proc.stderr


def test_examples_without_an_assistant_turn_are_rejected(tmp_path, tiny_base):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "t.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    proc = run(
        [
            program("train.py"),
            "--train-dir",
            str(tmp_path / "train"),
            "--base-model",
            str(tiny_base),
            "--model-dir",
            str(tmp_path / "m"),
            "--checkpoint-dir",
            str(tmp_path / "c"),
        ],
        check=False,
        timeout=60,
    )
    assert proc.returncode != 0 and "t.jsonl line 1: 'messages' must end with an assistant turn" in proc.stderr
