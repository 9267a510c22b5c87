"""Synth time of the app vs an empty CDK app, measured alternately in one run (this machine is noisy).

Two scopes, each against the same empty app measured in the same rounds: the full app (every environment and
the delivery pipeline) and one environment (``-c environments=dev``, what a developer iterates on). Each is
timed as the CLI runs the app (``python app.py`` with CDK_OUTDIR and the cdk.json context, a fresh output
directory each time); ``--cli`` adds the whole ``cdk synth`` command a user types. The ratio shows what our
stacks, assets, compliance packs and CloudFormation validation cost on top of starting CDK at all.
Target: <= 1.3x. CPU time (the app and its jsii node process) is reported beside wall time: on a shared machine it
is the steadier of the two.

Medians (3 rounds) on the development machine, 2 shared cores under a load average of ~10 (wall ratios swing by
+-0.4 between runs); before = the tree before issue 18 item 10, after = with it, measured back to back:

                    wall: full app   one env (dev)   CPU: full app   one env (dev)
before (main)             3.02-3.08x     2.24-3.26x           3.22x           2.15x
after                     2.09-2.81x     1.59-1.96x           2.80x           2.04x
What remains above the empty app (profile of a dev synth): cdk-nag's AwsSolutions and HIPAA packs walking every
resource and loading the aws-cdk-lib modules their rules reference (~3 s of node CPU), importing and building the
stacks through jsii (~2.5 s), and the CloudFormation validation of our templates (~1 s; its engine start-up, ~3.5 s,
is paid by the empty app too). Removed: the readiness pack's per-resource round trips, the second compliance pass
over the delivery pipeline's stage copies, the agent package's 11k hard links per synth (one cached zip now) and its
per-synth size walk, boto3 at synth, and searches through the staged assets when reading the assembly.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def run(argv: list[str], context: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children: the jsii node process included)."""
    with tempfile.TemporaryDirectory() as out:
        env = {
            **os.environ,
            "CDK_OUTDIR": out,
            "CDK_CONTEXT_JSON": json.dumps({**CONTEXT, **context}),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cli(app: str | None, context: dict) -> list[str]:
    out = tempfile.mkdtemp(prefix="bench-synth-")
    selector = ["--app", app] if app else ["**"]  # "**": every stack inside the stages
    flags = [f"--context={k}={v}" for k, v in context.items()]
    return [str(ROOT / "node_modules/.bin/cdk"), "synth", "--quiet", "-o", out, *flags, *selector]


def compare(label: str, ours, empty) -> None:
    """``ours(context)`` and ``empty()`` give command lines; one warm-up of each scope (file cache, the
    synth-time caches of bundles and pipeline definitions), then alternated rounds."""
    times: dict[str, list[tuple[float, float]]] = {"empty": [], **{scope: [] for scope in SCOPES}}
    for context in SCOPES.values():
        run(ours(context), context)
    for _ in range(ROUNDS):
        times["empty"].append(run(empty(), {}))
        for scope, context in SCOPES.items():
            times[scope].append(run(ours(context), context))

    def median(scope: str, i: int) -> float:
        return statistics.median(t[i] for t in times[scope])

    e, e_cpu = median("empty", 0), median("empty", 1)
    for scope in SCOPES:
        f, f_cpu = median(scope, 0), median(scope, 1)
        print(
            f"synth ({label}, {scope}): {f:.2f}s, empty app {e:.2f}s (median of {ROUNDS}, alternated); "
            f"ratio {f / e:.2f}x (target <= 1.3x); CPU {f_cpu:.2f}s vs {e_cpu:.2f}s, ratio {f_cpu / e_cpu:.2f}x"
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
