"""Python Lambda code with its requirements, bundled locally (no Docker) and cached by content hash.

``pip install --platform manylinux2014_x86_64 --only-binary=:all:`` fetches wheels for the Lambda
runtime once per distinct requirements file (+ the repository's constraints lock); the result is
cached under ``$XDG_CACHE_HOME/clinical-agent/lambda-deps/<hash>`` so later synths stay offline and
fast. The asset hash covers the function's files, the installed distributions (name and version)
and the target platform, so the template changes exactly when the function's code or the
dependencies it ships do (not when an unrelated pin in the lock moves).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"
PLATFORM = "manylinux2014_x86_64"
_SKIP = ("__pycache__", ".pyc", ".pytest_cache")


class BundlingError(RuntimeError):
    """The function's dependencies could not be installed for the Lambda platform."""


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clinical-agent" / "lambda-deps"


def _source_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(s in p.as_posix() for s in _SKIP))


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


@jsii.implements(ILocalBundling)
class _PipBundler:
    def __init__(self, folder: Path, python_version: str) -> None:
        self.folder, self.python_version = folder, python_version
        requirements = folder / "requirements.txt"
        constraints = CONSTRAINTS.read_bytes() if CONSTRAINTS.exists() else b""
        self.deps_key = _digest(requirements.read_bytes(), constraints, f"{PLATFORM} {python_version}".encode())

    def dependencies(self) -> Path:
        """The installed requirements (cached)."""
        cached = _cache_root() / self.deps_key
        if cached.is_dir():
            return cached
        staging = cached.with_name(cached.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
               "--target", str(staging), "--platform", PLATFORM, "--only-binary=:all:", "--implementation", "cp",
               "--python-version", self.python_version, "-r", str(self.folder / "requirements.txt")]
        if CONSTRAINTS.exists():
            cmd += ["-c", str(CONSTRAINTS)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise BundlingError(
                f"bundling {self.folder.name}: pip could not install {self.folder / 'requirements.txt'} for "
                f"{PLATFORM} / Python {self.python_version} (a first synth needs the package index; later ones "
                f"use the cache in {cached.parent}):\n{done.stderr.strip()[-2000:]}"
            )
        try:
            staging.rename(cached)  # atomic: a half-written cache is never used
        except OSError:  # another synth finished the same install first
            shutil.rmtree(staging, ignore_errors=True)
        return cached

    def installed(self) -> list[str]:
        return sorted(p.name for p in self.dependencies().glob("*.dist-info"))

    def try_bundle(self, output_dir: str, *args, **kwargs) -> bool:
        shutil.copytree(self.dependencies(), output_dir, dirs_exist_ok=True)
        for path in _source_files(self.folder):
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
    source_hash = _digest(*(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes()
                            for p in _source_files(folder)))
    return lambda_.Code.from_asset(
        str(folder),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=_digest(source_hash.encode(), "\n".join([PLATFORM, python_version, *bundler.installed()]).encode()),
        bundling=BundlingOptions(image=DockerImage.from_registry("unused-local-bundling-only"), local=bundler),
    )
