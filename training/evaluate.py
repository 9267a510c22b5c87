"""Evaluate a LoRA adapter on held-out chat examples; write the evaluation JSON the quality gate reads.

Metrics: loss and perplexity on the assistant tokens (the training objective) and diagnosis
accuracy: the model answers each held-out case (greedy) and its 'Most likely diagnosis: ...'
line is compared with the label. Written to <output-dir>/evaluation.json in the SageMaker model
quality format (the pipeline reads multiclass_classification_metrics.accuracy.value) and, with
MLFLOW_TRACKING_URI set, to the training run in MLflow (from training_run.json) or a new run.
With --base-only the base model itself is measured, no adapter (what the fine-tune starts from).

Local:      python training/evaluate.py --model-dir out/model --test-dir data/processed/test \\
                --output-dir out/evaluation [--base-model <hf-id-or-folder>]
            python training/evaluate.py --base-only --base-model <hf-id-or-folder> --test-dir ... --output-dir ...
SageMaker:  defaults are /opt/ml/processing/{model,test,evaluation}; --model-dir may hold model.tar.gz
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from clinical import extract_diagnosis, normalize_diagnosis
from jobenv import default, jsonl_files, require_dir

EVALUATION_FILE = "evaluation.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model-dir",
        default="/opt/ml/processing/model",
        help="the adapter folder, or a folder holding model.tar.gz (default: %(default)s)",
    )
    p.add_argument("--test-dir", default="/opt/ml/processing/test", help="held-out *.jsonl (default: %(default)s)")
    p.add_argument("--output-dir", default="/opt/ml/processing/evaluation", help="default: %(default)s")
    p.add_argument("--base-model", help="Hugging Face id or folder (default: the one recorded in the adapter)")
    p.add_argument("--base-only", action="store_true", help="evaluate --base-model without an adapter")
    p.add_argument(
        "--max-samples", type=int, default=200, help="cases answered for accuracy (default 200; all are used for loss)"
    )
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--mlflow-experiment", default=default("MLFLOW_EXPERIMENT_NAME", "clinical-diagnosis"))
    args = p.parse_args(argv)
    for flag in ("max_samples", "max_new_tokens", "batch_size"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.base_only and not args.base_model:
        p.error("--base-only needs --base-model")
    return args


def load_test(test_dir: Path) -> list[dict]:
    rows = []
    for f in jsonl_files(test_dir, "test data folder", "--test-dir"):
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                ok = (
                    isinstance(row["messages"], list)
                    and row["messages"][-1]["role"] == "assistant"
                    and isinstance(row["diagnosis"], str)
                )
            except (json.JSONDecodeError, KeyError, TypeError, IndexError):
                ok = False
            if not ok:
                raise SystemExit(
                    f"error: {f.name} line {n}: expected 'messages' ending with an assistant turn "
                    f"and a 'diagnosis' label (run preprocess.py first)"
                )
            rows.append(row)
    return rows


def adapter_folder(model_dir: Path, scratch: Path) -> Path:
    """The folder holding adapter_config.json, unpacking model.tar.gz when that is what we got."""
    archive = model_dir / "model.tar.gz"
    if archive.is_file():
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")
        model_dir = scratch
    if not (model_dir / "adapter_config.json").is_file():
        raise SystemExit(f"error: no adapter_config.json in {model_dir} (set by --model-dir)")
    return model_dir


def assistant_loss(model, tokenizer, rows: list[dict], device) -> tuple[float, int]:
    """Mean cross-entropy over assistant tokens (token-weighted) and the number of tokens."""
    import torch

    total, count = 0.0, 0
    for row in rows:
        enc = tokenizer.apply_chat_template(
            row["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids = torch.tensor([enc["input_ids"]], device=device)
        labels = ids.clone()
        labels[0, torch.tensor(enc["assistant_masks"], device=device) == 0] = -100
        n = int((labels[0, 1:] != -100).sum())
        if n == 0:
            continue
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss
        total += float(loss) * n
        count += n
    if count == 0:
        raise SystemExit(
            "error: no assistant tokens in the test data (is the chat template missing {% generation %} markers?)"
        )
    return total / count, count


def answers(model, tokenizer, rows: list[dict], device, batch_size: int, max_new_tokens: int) -> list[str]:
    import torch

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out = []
    for i in range(0, len(rows), batch_size):
        prompts = [
            tokenizer.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True)
            for r in rows[i : i + batch_size]
        ]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            generated = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        out += tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return out


def load_model(args, scratch: Path):
    """(model, tokenizer, training run) on the best device: the base with the adapter, or the base alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model: Any
    if args.base_only:
        model = AutoModelForCausalLM.from_pretrained(args.base_model, dtype=dtype)
        return model.to(device).eval(), AutoTokenizer.from_pretrained(args.base_model), {}
    from peft import PeftModel

    adapter = adapter_folder(require_dir(args.model_dir, "model folder", "--model-dir"), scratch)
    base = args.base_model or json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    tokenizer = AutoTokenizer.from_pretrained(adapter if (adapter / "tokenizer_config.json").is_file() else base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=dtype), adapter)
    run = json.loads((adapter / "training_run.json").read_text()) if (adapter / "training_run.json").is_file() else {}
    return model.to(device).eval(), tokenizer, run


def evaluate(args) -> dict:
    rows = load_test(require_dir(args.test_dir, "test data folder", "--test-dir"))
    with tempfile.TemporaryDirectory() as scratch:
        model, tokenizer, run = load_model(args, Path(scratch))
        loss, tokens = assistant_loss(model, tokenizer, rows, model.device)
        sample = rows[: args.max_samples]
        predicted = [
            extract_diagnosis(a)
            for a in answers(model, tokenizer, sample, model.device, args.batch_size, args.max_new_tokens)
        ]
    correct = sum(p == normalize_diagnosis(r["diagnosis"]) for p, r in zip(predicted, sample, strict=True))
    accuracy = correct / len(sample)
    return {
        "multiclass_classification_metrics": {
            "accuracy": {"value": accuracy, "standard_deviation": math.sqrt(accuracy * (1 - accuracy) / len(sample))},
        },
        "language_model_metrics": {
            "loss": {"value": loss},
            "perplexity": {"value": math.exp(min(loss, 50.0))},
            "diagnosis_format_rate": {"value": sum(p is not None for p in predicted) / len(sample)},
        },
        "samples": {"loss_examples": len(rows), "loss_tokens": tokens, "answered": len(sample)},
        "mlflow_run_id": run.get("mlflow_run_id"),
    }


def log_to_mlflow(report: dict, experiment: str) -> None:
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return
    import mlflow

    logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_id=report["mlflow_run_id"], run_name=None if report["mlflow_run_id"] else "evaluate"):
        lm = report["language_model_metrics"]
        mlflow.log_metrics(
            {
                "eval_diagnosis_accuracy": report["multiclass_classification_metrics"]["accuracy"]["value"],
                "eval_loss": lm["loss"]["value"],
                "eval_perplexity": lm["perplexity"]["value"],
                "eval_diagnosis_format_rate": lm["diagnosis_format_rate"]["value"],
            }
        )
        mlflow.log_dict(report, f"evaluation/{EVALUATION_FILE}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = evaluate(args)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{EVALUATION_FILE}.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out / EVALUATION_FILE)
    log_to_mlflow(report, args.mlflow_experiment)
    print("EVALUATION " + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
