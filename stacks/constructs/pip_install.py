"""Python dependencies installed for another platform (Lambda x86_64, AgentCore arm64) without Docker.

``pip install --platform ... --only-binary=:all:`` downloads the target's wheels into a cache keyed by
the requirements, the project's lock (constraints.txt: the bundle gets the versions the tests ran),
the Python version and the platforms; PyPI is needed once per change of those, every later synth
reuses the cached tree offline.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"


class PackagingError(RuntimeError):
    """Dependencies could not be installed for the target; the message says what to fix."""


def cache_root(name: str) -> Path:
    """``$XDG_CACHE_HOME/clinical-agent/<name>`` (``~/.cache`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clinical-agent" / name


def digest(parts: Sequence[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


def dependencies_hash(
    requirements: Path, constraints: Path | None, *, python_version: str, platforms: Sequence[str]
) -> str:
    """The key of a cached dependency tree."""
    if not requirements.is_file():
        raise PackagingError(f"{requirements} not found: it lists the runtime dependencies to bundle")
    lock = constraints.read_bytes() if constraints is not None and constraints.is_file() else b""
    return digest([requirements.read_bytes(), lock, python_version.encode(), " ".join(platforms).encode()])


def pip_command(
    requirements: Path, target: Path, constraints: Path | None, *, python_version: str, platforms: Sequence[str]
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--no-compile",
        "--no-warn-conflicts",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
    ]
    cmd += [f"--platform={p}" for p in platforms]
    cmd += ["--target", str(target), "-r", str(requirements)]
    if constraints is not None and constraints.is_file():
        cmd += ["-c", str(constraints)]
    return cmd


def ensure_dependencies(
    requirements: Path,
    *,
    python_version: str,
    platforms: Sequence[str],
    cache: Path,
    label: str,
    constraints: Path | None = CONSTRAINTS,
    run=subprocess.run,
) -> Path:
    """The cached dependency tree for ``requirements``; built with pip (network to PyPI) only when missing.
    ``label`` names the target in errors (e.g. "linux/arm64")."""
    key = dependencies_hash(requirements, constraints, python_version=python_version, platforms=platforms)
    done = cache / key
    if done.is_dir():
        return done
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"{key}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    cmd = pip_command(requirements, partial, constraints, python_version=python_version, platforms=platforms)
    target = f"{label} (python {python_version}, {', '.join(platforms)})"
    hint = (
        f"a fresh bundle of {requirements} (dependencies hash {key[:12]}) needs pip and access to PyPI, once; "
        f"it is then cached in {cache}"
    )
    try:
        proc = run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise PackagingError(f"cannot run pip ({e}); {hint}") from None
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
        raise PackagingError(
            f"pip could not install {requirements} for {target} (exit {proc.returncode}); {hint}.\n{tail}"
        )
    _portable_scripts(partial / "bin")
    try:
        partial.rename(done)  # atomic: a tree under its final name is always complete
    except OSError:
        if not done.is_dir():
            raise
        shutil.rmtree(partial, ignore_errors=True)  # built concurrently by another synth
    return done


def _portable_scripts(bin_dir: Path) -> None:
    """pip writes this machine's interpreter into console scripts' shebangs; the target has its own python3."""
    for script in bin_dir.glob("*") if bin_dir.is_dir() else ():
        text = script.read_bytes()
        if text.startswith(b"#!") and b"python" in text.split(b"\n", 1)[0]:
            script.write_bytes(b"#!/usr/bin/env python3" + text[text.index(b"\n") :])
