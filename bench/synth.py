"""Synth time of the whole app vs an empty CDK app, measured alternately in one run (this machine is noisy).

Two views: the app process alone (python app.py with CDK_OUTDIR and the cdk.json context, as the CLI
runs it) and the whole `cdk synth` command a user types. The ratio shows what our stacks, assets,
compliance packs and CloudFormation validation cost on top of starting CDK at all. Target: <= 1.3.
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
# "Empty": one stack with one resource-less placeholder (the CLI refuses an app without stacks).
EMPTY_APP = (
    "import aws_cdk as cdk; app = cdk.App(); "
    "cdk.CfnWaitConditionHandle(cdk.Stack(app, 'Empty'), 'Nothing'); app.synth()"
)
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def run(argv: list[str]) -> float:
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    with tempfile.TemporaryDirectory() as out:
        env = {
            **os.environ,
            "CDK_OUTDIR": out,
            "CDK_CONTEXT_JSON": json.dumps(context),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def cli(app: str | None) -> list[str]:
    out = tempfile.mkdtemp(prefix="bench-synth-")
    selector = ["--app", app] if app else ["**"]  # "**": every stack inside the stages
    return [str(ROOT / "node_modules/.bin/cdk"), "synth", "--quiet", "-o", out, *selector]


def compare(label: str, full_cmd, empty_cmd) -> None:
    full, empty = [], []
    run(full_cmd())  # warm the file cache and the synth-time caches (bundles, pipeline definitions) once
    for _ in range(ROUNDS):
        empty.append(run(empty_cmd()))
        full.append(run(full_cmd()))
    f, e = statistics.median(full), statistics.median(empty)
    print(
        f"synth ({label}): full app {f:.2f}s, empty app {e:.2f}s (median of {ROUNDS}, alternated); "
        f"ratio {f / e:.2f}x (target <= 1.3x)"
    )


def main() -> None:
    compare("app process", lambda: [sys.executable, "app.py"], lambda: [sys.executable, "-c", EMPTY_APP])
    with tempfile.NamedTemporaryFile("w", suffix=".py") as empty:
        empty.write(EMPTY_APP)
        empty.flush()
        compare("cdk synth command", lambda: cli(None), lambda: cli(f"{sys.executable} {empty.name}"))


if __name__ == "__main__":
    main()
