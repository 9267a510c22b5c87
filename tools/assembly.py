"""Read a synthesized cloud assembly (cdk.out): its stacks and their templates, by stage."""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

# Stack traces that CDK records with acknowledgments made during validation name the jsii kernel's
# random temporary folder; it is the only thing that differs between two syntheses.
_JSII_KERNEL_DIR = re.compile(r'[^"\s]*/jsii-kernel-[A-Za-z0-9]+/')


@dataclass(frozen=True)
class StackArtifact:
    stage: str  # "Dev", "Staging", "Prod", or "" for top-level stacks
    display_name: str  # "Prod/Data"
    environment: str  # "aws://333333333333/us-east-1"
    template: Path

    @property
    def file_name(self) -> str:
        return self.display_name.replace("/", "-") + ".template.json"


def assembly_files(outdir: Path, pattern: str) -> list[Path]:
    """The files named like ``pattern`` in the assembly and its nested assemblies, sorted; the staged assets'
    folders (thousands of files for the agent package) are not searched."""
    found = []
    for directory, folders, files in os.walk(outdir):
        folders[:] = [f for f in folders if not f.startswith("asset.")]
        found += [Path(directory) / f for f in fnmatch.filter(files, pattern)]
    return sorted(found)


def stacks(outdir: Path) -> list[StackArtifact]:
    """Every CloudFormation stack in the assembly, nested stages included, in a stable order."""
    found = []
    for manifest_path in assembly_files(outdir, "manifest.json"):
        directory = manifest_path.parent
        stage = "" if directory == Path(outdir) else directory.name.removeprefix("assembly-")
        for name, art in json.loads(manifest_path.read_text()).get("artifacts", {}).items():
            if art["type"] == "aws:cloudformation:stack":
                found.append(
                    StackArtifact(
                        stage=stage,
                        display_name=art.get("displayName", name),
                        environment=art.get("environment", ""),
                        template=directory / art["properties"]["templateFile"],
                    )
                )
    return sorted(found, key=lambda s: s.display_name)


def missing_context(outdir: Path) -> list[dict]:
    """Context lookups the app asked for (must be empty: synth never calls AWS)."""
    return [m for p in assembly_files(outdir, "manifest.json") for m in json.loads(p.read_text()).get("missing", [])]


def normalize(outdir: Path) -> None:
    """Make the cloud assembly byte-identical across syntheses (see ``_JSII_KERNEL_DIR``)."""
    for path in [*assembly_files(outdir, "*.metadata.json"), *assembly_files(outdir, "validation-report.json")]:
        text = path.read_text()
        fixed = _JSII_KERNEL_DIR.sub("<jsii-kernel>/", text)
        if fixed != text:
            path.write_text(fixed)
