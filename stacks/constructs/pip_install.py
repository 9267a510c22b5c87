"""Python dependencies installed for another platform (Lambda x86_64, AgentCore arm64) without Docker.

``pip install --platform ... --only-binary=:all:`` downloads the target's wheels into a cache keyed by
the requirements, the project's lock (constraints.txt: the bundle gets the versions the tests ran),
the Python version and the platforms; PyPI is needed once per change of those, every later synth
reuses the cached tree offline.
"""

from __future__ import annotations

import functools
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


def find_python(version: str, variable: str) -> str:
    """The path of a Python ``version`` interpreter on this machine (the target runtime's, e.g. "3.13"): the one
    ``$variable`` names, else ``python<version>`` on PATH, else a pyenv-installed one (whose shim may not be
    active); each is asked its version. A clear error says what to install when none answers."""
    return _find_python(version, os.environ.get(variable, ""), variable)


@functools.lru_cache(maxsize=8)
def _find_python(version: str, named: str, variable: str) -> str:
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates = (
        [named]
        if named
        else [
            shutil.which(f"python{version}") or "",
            *map(str, sorted(pyenv.glob(f"versions/{version}.*/bin/python{version}"))),
        ]
    )
    probe = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"
    answers = []
    for candidate in filter(None, candidates):
        try:
            proc = subprocess.run([candidate, "-c", probe], capture_output=True, text=True, timeout=60)
        except OSError as e:
            answers.append(f"{candidate}: {e}")
            continue
        lines = proc.stdout.splitlines()
        if proc.returncode == 0 and len(lines) == 2 and lines[0] == version:
            return lines[1]
        said = (
            f"Python {lines[0]}" if proc.returncode == 0 and lines else (proc.stderr.strip().splitlines() or ["?"])[-1]
        )
        answers.append(f"{candidate}: {said}")
    source = f"${variable}={named}" if named else f"python{version} on PATH (or under {pyenv}/versions)"
    raise PackagingError(
        f"Python {version}, the runtime's interpreter, is needed here (to compile the package's bytecode and to run "
        f"its tests as deployed) and {source} did not give it"
        + (f" ({'; '.join(answers)})" if answers else "")
        + f": install Python {version} (e.g. `pyenv install {version}`, `apt-get install python{version}` or "
        f"python.org) so that python{version} is on PATH, or set {variable} to its path"
    )


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


def main(argv: list[str] | None = None) -> int:
    """``python -m stacks.constructs.pip_install VERSION VARIABLE``: where Python VERSION is (``make setup``)."""
    version, variable = argv if argv is not None else sys.argv[1:]
    try:
        print(f"Python {version} (the deployed runtimes'): {find_python(version, variable)}")
    except PackagingError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
