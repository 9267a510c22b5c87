"""Every bundle of a repository folder (training source archive, agent package, Lambda code, image build contexts)
leaves out the same files: the one filter in stacks/constructs/bundle_files.py."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import aws_cdk as cdk
import pytest

from stacks.constructs import agent_package, python_bundle
from stacks.constructs.sglang_image import SglangImage
from stacks.constructs.source_archive import archive_bytes
from stacks.constructs.training_image import TrainingImage

TAG = f"cpython-{agent_package.PYTHON_VERSION.replace('.', '')}"  # compiled by the runtime's Python
CODE = ["Dockerfile", "app.py", "pkg/module.py", "requirements.txt"]
LEFTOVERS = [
    "__pycache__/gone.cpython-311.pyc",
    "pkg/__pycache__/gone.cpython-311.pyc",
    "stale.pyc",
    "old.pyo",
    ".pytest_cache/v/cache/lastfailed",
    ".env",
    "pkg/.module.py.swp",
    ".hidden/secret.py",
]


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "unit"
    for name in CODE + LEFTOVERS:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n")
    return root


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_the_source_archive_holds_the_code_only(folder):
    with tarfile.open(fileobj=io.BytesIO(archive_bytes(folder))) as tar:
        assert sorted(tar.getnames()) == CODE


def test_the_agent_package_ships_the_code_only(folder, tmp_path):
    (deps := tmp_path / "deps").mkdir()
    agent_package.build_package(folder, deps, tmp_path / "out")
    compiled = [f"__pycache__/app.{TAG}.pyc", f"pkg/__pycache__/module.{TAG}.pyc"]  # the package's own bytecode
    assert files_under(tmp_path / "out" / folder.name) == sorted(CODE + compiled)


def test_the_lambda_bundle_and_its_hash_hold_the_code_only(folder, tmp_path, monkeypatch):
    (deps := tmp_path / "deps").mkdir()
    monkeypatch.setattr(python_bundle._PipBundler, "dependencies", lambda self: deps)
    python_bundle._PipBundler(folder, "3.13").try_bundle(str(tmp_path / "out"))
    assert files_under(tmp_path / "out") == CODE

    def asset_hash(stack_id: str) -> str:
        code = python_bundle.python_function_code(folder, cdk.aws_lambda.Runtime.PYTHON_3_13)
        return code.bind(cdk.Stack(cdk.App(), stack_id)).s3_location.object_key  # type: ignore[union-attr]

    before = asset_hash("Before")
    (folder / "__pycache__" / "other.cpython-311.pyc").write_text("new leftover")
    (folder / ".env2").write_text("KEY=x")
    assert asset_hash("After") == before
    (folder / "app.py").write_text("# changed\n")
    assert asset_hash("Changed") != before


def test_image_build_contexts_leave_out_the_same_files(folder, tmp_path):
    app = cdk.App(outdir=str(tmp_path / "cdk.out"))
    stack = cdk.Stack(app, "Images", env=cdk.Environment(account="111111111111", region="us-east-1"))
    images = [
        SglangImage(stack, "Sglang", directory=folder),
        TrainingImage(stack, "Train", base_image="b", directory=folder),
    ]
    app.synth()
    for image in images:
        staged = tmp_path / "cdk.out" / f"asset.{image.asset.asset_hash}"
        assert files_under(staged) == CODE
