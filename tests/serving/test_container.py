"""The image definition: a pinned SGLang tag that matches the manifest, and pinned front packages."""

from __future__ import annotations

import os
import re

from sglang_config import load_manifest

from tests.serving.helpers import CONTAINER, ROOT


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_base_image_is_the_manifests_pinned_sglang_image():
    """One SGLang version everywhere: the image tag, the manifest (flags, front), the parser that synth and the
    tests use (Makefile SGLANG_VERSION, installed sglang). The tag names its CUDA, which the manifest records for
    the endpoint's driver check (stacks/settings.py)."""
    import importlib.metadata

    manifest = load_manifest()
    dockerfile = (CONTAINER / "Dockerfile").read_text()
    image = re.search(r"^FROM\s+(\S+)", dockerfile, re.M).group(1)
    assert image == f"{manifest['image']['repository']}:{manifest['image']['tag']}"
    version, cuda = manifest["version"], manifest["image"]["cuda"]
    assert manifest["image"]["tag"] == f"v{version}-cu{cuda.replace('.', '')}"
    assert re.search(r"^SGLANG_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1) == version
    assert importlib.metadata.version("sglang") == version


def test_image_copies_the_files_serve_needs_and_runs_serve():
    dockerfile = (CONTAINER / "Dockerfile").read_text()
    copied = re.search(r"^COPY (.+) /opt/program/$", dockerfile, re.M).group(1).split()
    assert {"manifest.json", "sglang_config.py", "sagemaker_front.py", "serve"} <= set(copied)
    assert all((CONTAINER / f).is_file() for f in copied)
    assert os.access(CONTAINER / "serve", os.X_OK)
    assert 'ENTRYPOINT ["python3", "/opt/program/serve"]' in dockerfile


def test_front_packages_are_pinned_as_in_the_constraints():
    front, lock = _pins(CONTAINER / "requirements.txt"), _pins(ROOT / "constraints.txt")
    assert {"model-hosting-container-standards", "fastapi", "uvicorn", "aiohttp"} <= set(front)
    assert {name: v for name, v in front.items() if name in lock and lock[name] != v} == {}
