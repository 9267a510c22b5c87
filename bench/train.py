"""Tokens per second of the tiny-model LoRA training on CPU, at 1 and 2 threads, measured in one run.

For the record: the tiny random-weight Llama from local/tiny.py, data from training/generate.py and
preprocess.py, and training/train.py itself (fresh process per thread count, OMP_NUM_THREADS set).
Prints tokens/s for each and the 2-thread / 1-thread ratio.

    .venv/bin/python bench/train.py [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TRAINING = ROOT / "training"


def _run(args: list[str], threads: int = 1) -> str:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    from local.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _run([str(TRAINING / "generate.py"), "--output", str(root / "raw" / "r.jsonl"), "--count", "300"])
        _run([str(TRAINING / "preprocess.py"), "--input-dir", str(root / "raw"), "--output-dir", str(root / "data")])
        corpus = (root / "data" / "train" / "train.jsonl").read_text().splitlines()[:80]
        base = build_tiny_model(root / "base", corpus=corpus)
        rates = {}
        for threads in (1, 2):
            out = _run(
                [
                    str(TRAINING / "train.py"),
                    "--train-dir",
                    str(root / "data" / "train"),
                    "--base-model",
                    str(base),
                    "--model-dir",
                    str(root / f"model{threads}"),
                    "--checkpoint-dir",
                    str(root / f"ckpt{threads}"),
                    "--max-steps",
                    str(args.steps),
                    "--save-steps",
                    str(args.steps),
                    "--batch-size",
                    "4",
                    "--gradient-accumulation-steps",
                    "1",
                    "--max-length",
                    "512",
                    "--logging-steps",
                    "5",
                    "--lora-rank",
                    "8",
                    "--target-modules",
                    "q_proj,v_proj",
                ],
                threads,
            )
            summary = json.loads(next(line for line in out.splitlines() if line.startswith("TRAIN_SUMMARY "))[14:])
            rates[threads] = summary["num_tokens"] / summary["train_runtime"]
            print(
                f"threads={threads}: {rates[threads]:,.0f} tokens/s ({summary['num_tokens']:,.0f} tokens, "
                f"{summary['train_runtime']:.1f} s)"
            )
    print(f"ratio 2 threads / 1 thread: {rates[2] / rates[1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
