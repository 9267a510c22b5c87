"""The audit: diff one environment's current synth against its committed baseline, offline.

    make diff ENV=prod                       # show what would change
    make diff ENV=prod FAIL_ON=destructive   # exit non-zero on replacements or deletions
    make diff ENV=prod FAIL_ON=broadening    # ... on changes that broaden security permissions
    make diff ENV=prod PIN=other.lock.json   # ... with another model lock than config/models.lock.json

The baseline is the reviewed template in baselines/<Stage>/ (refreshed with `make snapshot`).
Runs `cdk diff --template <baseline>` per stack of the environment; no AWS credentials needed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from stacks.settings import load_environment
from tools.assembly import stacks
from tools.baselines import BASELINE_DIR, baseline_path

CDK = str(Path("node_modules/.bin/cdk"))
# What the pinned CLI's `cdk diff --fail-on` accepts (tests/infra/test_audit_diff.py checks it against the CLI).
FAIL_ON = ("never", "any-change", "broadening", "destructive")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True)
    parser.add_argument("--fail-on", choices=FAIL_ON)
    parser.add_argument("--models-lock", type=Path, help="the pinned adapters (default: config/models.lock.json)")
    args = parser.parse_args(argv)
    stage = load_environment(args.env).stage_id  # validates the name and the config
    lock = ["-c", f"models_lock={args.models_lock.resolve()}"] if args.models_lock else []

    with tempfile.TemporaryDirectory() as outdir:
        subprocess.run(
            [CDK, "synth", "--quiet", f"{stage}/*", "-c", f"environments={args.env}", *lock, "--output", outdir],
            check=True,
        )
        rc = 0
        for stack in (s for s in stacks(Path(outdir)) if s.stage == stage):
            baseline = baseline_path(stack)
            if not baseline.exists():
                print(
                    f"{stack.display_name}: no baseline in {BASELINE_DIR.name}/{stage}/ (a new stack): "
                    "every resource is an addition"
                )
                baseline = Path(outdir) / "empty.json"
                baseline.write_text("{}")
            cmd = [CDK, "diff", "--app", outdir, "--exclusively", "--template", str(baseline), stack.display_name]
            if args.fail_on:
                cmd += ["--fail-on", args.fail_on]
            rc |= subprocess.run(cmd).returncode
        for orphan in sorted((BASELINE_DIR / stage).glob("*.template.json")):
            if orphan.name not in {s.file_name for s in stacks(Path(outdir))}:
                print(f"{orphan.name}: in the baseline but no longer synthesized: the whole stack would be deleted")
                rc |= 1 if args.fail_on else 0
        return rc


if __name__ == "__main__":
    sys.exit(main())
