"""Synth time of the whole app vs an empty CDK app, measured alternately in one run (this machine is noisy).

Both run as the CLI runs them (python app.py with CDK_OUTDIR and the cdk.json context), so the
ratio shows what our stacks, assets and compliance packs cost on top of starting CDK at all.
Target: full / empty <= 1.3.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EMPTY_APP = "import aws_cdk as cdk; cdk.App().synth()"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def run(argv: list[str]) -> float:
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "CDK_OUTDIR": out, "CDK_CONTEXT_JSON": json.dumps(context),
               "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "AWS_EC2_METADATA_DISABLED": "true"}
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    full, empty = [], []
    run([sys.executable, "app.py"])  # warm the file cache and any synth-time caches once
    for _ in range(ROUNDS):
        empty.append(run([sys.executable, "-c", EMPTY_APP]))
        full.append(run([sys.executable, "app.py"]))
    f, e = statistics.median(full), statistics.median(empty)
    print(f"synth: full app {f:.2f}s, empty app {e:.2f}s (median of {ROUNDS}, alternated)")
    print(f"synth ratio full/empty = {f / e:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
