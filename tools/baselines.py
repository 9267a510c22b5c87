"""The reviewed baselines: every stack's template per environment, the audit's reference.

`make snapshot` (python -m tools.baselines --update) synthesizes the default environments and writes
every stack's template to baselines/<Stage>/. Review the git diff before committing. The tests compare
a fresh synth with these files with asset hashes normalised (see ``normalized``): a change to bundled
code alone (training scripts, the agent, a Lambda) is not an infrastructure change; the asset hashes
are checked against the assembly's own asset manifests instead. `make diff` (tools.audit_diff) reads the
same files.

The delivery pipeline's copies of the stages (``Delivery-<Env>``) have no baselines of their own: they are the
same ``ClinicalAgentStage`` built under the pipeline, and differ from the ``<Env>`` stage only in names CDK
derives from the construct path. ``copies_differing`` checks that, so a copy that drifts fails the tests
instead of doubling every reviewed diff (docs/architecture.md, Audit).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path

from stacks.app_builder import DELIVERY_STACK_ID
from tools.assembly import StackArtifact, assembly_files, stacks

BASELINE_DIR = Path(__file__).resolve().parents[1] / "baselines"
# CDK asset hashes: 64 hex digits (S3 object keys <hash>.zip/.gz, image tags, asset parameters).
ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")
ASSET_PLACEHOLDER = "<asset-hash>"
# CDK Pipelines stamps each CodeBuild action with a hash of its project's configuration (shown in full beside it).
PROJECT_CONFIG_HASH = re.compile(r'_PROJECT_CONFIG_HASH\\",\\"type\\":\\"PLAINTEXT\\",\\"value\\":\\"[0-9a-f]{64}')


# Names CDK derives from a construct's path end in an 8-hex hash of it (e.g. ...ScalingFromZero5E5E67B7).
_PATH_HASH = re.compile(r"[0-9A-F]{8}")
_NAME_TOKEN = re.compile(r"[A-Za-z0-9]+")


def copy_of(stack: StackArtifact) -> str | None:
    """The stage that ``stack``'s stage is the delivery pipeline's copy of (``Delivery-Dev`` -> ``Dev``), if any."""
    prefix = f"{DELIVERY_STACK_ID}-"
    return stack.stage.removeprefix(prefix) if stack.stage.startswith(prefix) else None


def without_stage_path(template_text: str, stage: str) -> str:
    """``template_text`` (of ``stage`` or of its delivery copy) with the delivery pipeline's prefix of paths and
    generated names removed, and the path hashes of names that contain the stage's name masked: what a copy of
    the same stage may differ in. Asset hashes are normalised too."""
    text = normalized(template_text)
    for sep in ("/", "-", ""):
        text = text.replace(f"{DELIVERY_STACK_ID}{sep}{stage}", stage)
    return _NAME_TOKEN.sub(lambda m: _PATH_HASH.sub("<path-hash>", m[0]) if stage in m[0] else m[0], text)


def copies_differing(outdir: Path) -> list[str]:
    """The delivery copies' stacks whose template differs from the same stack of the stage they copy (beyond
    ``without_stage_path``), or whose stage has no such stack."""
    by_name = {s.display_name: s for s in stacks(outdir)}
    changed = []
    for copy in by_name.values():
        stage = copy_of(copy)
        if stage is None:
            continue
        original = by_name.get(copy.display_name.replace(f"{DELIVERY_STACK_ID}/", "", 1))
        if original is None or without_stage_path(copy.template.read_text(), stage) != without_stage_path(
            original.template.read_text(), stage
        ):
            changed.append(copy.display_name)
    return changed


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
    for manifest in assembly_files(outdir, "*.assets.json"):
        data = json.loads(manifest.read_text())
        for kind in ("files", "dockerImages"):
            found.update(data.get(kind, {}))
    return found


def differing(outdir: Path) -> list[str]:
    """The stacks whose template differs from its baseline (asset hashes aside), or that have none (the
    delivery copies aside: see ``copies_differing``)."""
    changed = []
    for stack in (s for s in stacks(outdir) if copy_of(s) is None):
        baseline = baseline_path(stack)
        if not baseline.exists() or normalized(baseline.read_text()) != normalized(stack.template.read_text()):
            changed.append(stack.display_name)
    return changed


def update(outdir: Path) -> list[Path]:
    shutil.rmtree(BASELINE_DIR, ignore_errors=True)
    written = []
    for stack in (s for s in stacks(outdir) if copy_of(s) is None):
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
