"""Per-environment template snapshots: the reviewed baseline that `make diff` audits against.

`make snapshot` (python -m tests.infra.snapshots --update) synthesizes the default environments and
writes every stack's template to tests/infra/snapshots/<Stage>/. Review the git diff before committing.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from stacks.assembly import stacks

SNAPSHOT_DIR = Path(__file__).resolve().parent / "snapshots"


def snapshot_path(stack) -> Path:
    return SNAPSHOT_DIR / (stack.stage or "app") / stack.file_name


def update(outdir: Path) -> list[Path]:
    shutil.rmtree(SNAPSHOT_DIR, ignore_errors=True)
    written = []
    for stack in stacks(outdir):
        target = snapshot_path(stack)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stack.template, target)
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--update", action="store_true", required=True, help="rewrite the snapshots")
    parser.parse_args()
    from tests.infra.conftest import synth

    with tempfile.TemporaryDirectory() as tmp:
        synth(tmp)
        for path in update(Path(tmp)):
            print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
