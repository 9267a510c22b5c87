"""Python Lambda code with its requirements, bundled locally (no Docker) and cached by content hash.

``pip install --platform manylinux2014_x86_64 --only-binary=:all:`` fetches wheels for the Lambda
runtime once per distinct requirements file (+ the repository's constraints lock); the result is
cached under ``$XDG_CACHE_HOME/clinical-agent/lambda-deps/<hash>`` so later synths stay offline and
fast. The asset hash covers the function's files, the installed distributions (name and version)
and the target platform, so the template changes exactly when the function's code or the
dependencies it ships do (not when an unrelated pin in the lock moves).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from stacks.constructs import pip_install
from stacks.constructs.bundle_files import bundle_files

PLATFORM = "manylinux2014_x86_64"


def dependencies(folder: Path, python_version: str) -> Path:
    """The function's installed requirements for its runtime's Python (cached): what the bundle ships, and what
    the function's tests run with (tests/lambda/test_on_lambda_python.py)."""
    return pip_install.ensure_dependencies(
        folder / "requirements.txt",
        python_version=python_version,
        platforms=(PLATFORM,),
        cache=pip_install.cache_root("lambda-deps"),
        label=f"Lambda {folder.name}, linux/x86_64",
    )


@jsii.implements(ILocalBundling)
class _PipBundler:
    def __init__(self, folder: Path, python_version: str) -> None:
        self.folder, self.python_version = folder, python_version

    def dependencies(self) -> Path:
        return dependencies(self.folder, self.python_version)

    def installed(self) -> list[str]:
        return sorted(p.name for p in self.dependencies().glob("*.dist-info"))

    def try_bundle(self, output_dir: str, *args, **kwargs) -> bool:
        shutil.copytree(self.dependencies(), output_dir, dirs_exist_ok=True)
        for path in bundle_files(self.folder):
            target = Path(output_dir) / path.relative_to(self.folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        return True


def python_function_code(folder: Path, runtime: lambda_.Runtime) -> lambda_.Code:
    """The function folder plus its requirements, as a Lambda asset bundled without Docker."""
    if not (folder / "requirements.txt").is_file():
        raise FileNotFoundError(f"{folder}: a Lambda function folder needs a requirements.txt")
    python_version = runtime.name.removeprefix("python")
    bundler = _PipBundler(folder, python_version)
    source_hash = pip_install.digest(
        [p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes() for p in bundle_files(folder)]
    )
    return lambda_.Code.from_asset(
        str(folder),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=pip_install.digest(
            [source_hash.encode(), "\n".join([PLATFORM, python_version, *bundler.installed()]).encode()]
        ),
        bundling=BundlingOptions(image=DockerImage.from_registry("unused-local-bundling-only"), local=bundler),
    )
