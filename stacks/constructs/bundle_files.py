"""The one file filter for every bundle built from a folder of this repository: the Lambda's code, the training
source archive, the agent package's code and the container images' build contexts.

Left out: Python caches and bytecode, and hidden files and folders (tool caches such as ``.pytest_cache``, an
editor's swap files, a developer's ``.env``), so a bundle and its hash hold the code only, whatever a local run
left behind.
"""

from __future__ import annotations

import re
from pathlib import Path

_SKIPPED = re.compile(r"(^|/)(__pycache__|\.[^/]*)(/|$)|\.py[co]$")
# The same rule as CDK asset ``exclude`` globs (a DockerImageAsset adds ``!.dockerignore`` and ``!Dockerfile``).
EXCLUDE_GLOBS = ("**/__pycache__", "**/*.pyc", "**/*.pyo", "**/.*")


def skipped(relative: str) -> bool:
    """Whether a file (posix path relative to the bundled folder) stays out of every bundle."""
    return bool(_SKIPPED.search(relative))


def bundle_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that go into a bundle, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not skipped(p.relative_to(folder).as_posix()))
