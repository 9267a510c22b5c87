"""The reviewed baselines: every stack's template per environment, the audit's reference.

`make snapshot` (python -m tools.baselines --update) synthesizes the default environments and writes
every stack's template to baselines/<Stage>/. Review the git diff before committing. The tests compare
a fresh synth with these files with asset hashes normalised (see ``normalized``): a change to bundled
code alone (training scripts, the agent, a Lambda) is not an infrastructure change; the asset hashes
are checked against the assembly's own asset manifests instead. `make diff` (tools.audit_diff) reads the
same files.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path

from tools.assembly import StackArtifact, stacks

BASELINE_DIR = Path(__file__).resolve().parents[1] / "baselines"
# CDK asset hashes: 64 hex digits (S3 object keys <hash>.zip/.gz, image tags, asset parameters).
ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")
ASSET_PLACEHOLDER = "<asset-hash>"
# CDK Pipelines stamps each CodeBuild action with a hash of its project's configuration (shown in full beside it).
PROJECT_CONFIG_HASH = re.compile(r'_PROJECT_CONFIG_HASH\\",\\"type\\":\\"PLAINTEXT\\",\\"value\\":\\"[0-9a-f]{64}')


def baseline_path(stack: StackArtifact) -> Path:
    return BASELINE_DIR / (stack.stage or "app") / stack.file_name


def normalized(template_text: str) -> str:
    """The template with every asset hash replaced by a placeholder."""
    return ASSET_HASH.sub(ASSET_PLACEHOLDER, template_text)


def hashes_in(template_text: str) -> set[str]:
    """The 64-hex strings of a template that may be asset hashes (CDK Pipelines' config hashes aside)."""
    return set(ASSET_HASH.findall(PROJECT_CONFIG_HASH.sub("", template_text)))


def asset_hashes(outdir: Path) -> set[str]:
    """Every asset hash the assembly's asset manifests publish (files and images)."""
    found: set[str] = set()
    for manifest in Path(outdir).glob("**/*.assets.json"):
        data = json.loads(manifest.read_text())
        for kind in ("files", "dockerImages"):
            found.update(data.get(kind, {}))
    return found


def differing(outdir: Path) -> list[str]:
    """The stacks whose template differs from its baseline (asset hashes aside), or that have none."""
    changed = []
    for stack in stacks(outdir):
        baseline = baseline_path(stack)
        if not baseline.exists() or normalized(baseline.read_text()) != normalized(stack.template.read_text()):
            changed.append(stack.display_name)
    return changed


def update(outdir: Path) -> list[Path]:
    shutil.rmtree(BASELINE_DIR, ignore_errors=True)
    written = []
    for stack in stacks(outdir):
        target = baseline_path(stack)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stack.template, target)
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--update", action="store_true", required=True, help="rewrite the baselines")
    parser.parse_args()
    from tools.synth import synth

    with tempfile.TemporaryDirectory() as tmp:
        synth(tmp)
        for path in update(Path(tmp)):
            print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
