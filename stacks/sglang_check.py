"""The SGLang container's settings, checked at synth as the container checks them at start-up.

Two checks, on the ``SM_SGLANG_*`` environment that synth writes for a base model:

1. ``containers/sglang/sglang_config.py`` with ``manifest.json`` (the code and table the container's
   ``serve`` runs before SGLang starts): unknown flags, values of the wrong type or outside the
   flag's choices, LoRA and speculative-decoding rules. Standard library only: it always runs.
2. SGLang's own argument parser (``ServerArgs.add_cli_args``) on the flags that check 1 derives, as
   ``python -m sglang.launch_server`` parses them in the container. It needs the ``sglang`` package
   at the image's version (the dev virtualenv that ``make synth`` uses installs it without its
   dependencies, see requirements-sglang-parser.txt); importing it takes seconds, so a verdict is
   cached on disk by the flags and the SGLang version. Without the package, or with another
   version, synth still runs check 1 (whose flag table is generated from that parser and compared
   with it by tests/serving) and the model's construct records a warning that check 2 was skipped.

Nothing here calls AWS or writes into the cloud assembly.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
from pathlib import Path, PurePosixPath
from types import ModuleType

CONTAINER_DIR = Path(__file__).resolve().parent.parent / "containers" / "sglang"
MODEL_DIR = "/opt/ml/model"  # where SageMaker mounts a model's S3 data; the only files the container has


@functools.cache
def container_config() -> ModuleType:
    """``containers/sglang/sglang_config.py``, the module the container runs (loaded by path: the
    container's files are flat modules, not a package)."""
    spec = importlib.util.spec_from_file_location("sglang_container_config", CONTAINER_DIR / "sglang_config.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@functools.cache
def manifest() -> dict:
    return container_config().load_manifest()


def parser_unavailable() -> str | None:
    """Why SGLang's own parser cannot check the flags here, or None when it can."""
    try:
        installed = importlib.metadata.version("sglang")
    except importlib.metadata.PackageNotFoundError:
        return "the sglang package is not installed (requirements-sglang-parser.txt, make setup)"
    if installed != manifest()["version"]:
        return f"the installed sglang is {installed}, the image runs {manifest()['version']} (make setup)"
    return None


def _in_model_dir(path: str) -> bool:
    """At synth a path can only be checked against the mounts: SageMaker gives the container its model
    data at /opt/ml/model and nothing else (network isolation: no hub downloads)."""
    return PurePosixPath(path).is_relative_to(MODEL_DIR)


def check_environment(env: dict[str, str]) -> list[tuple[str, str]]:
    """The container environment's errors as (variable, reason) pairs; empty when SGLang would start."""
    config = container_config()
    try:
        engine = config.engine_config(env, manifest(), path_exists=_in_model_dir)
    except config.ConfigError as e:
        return list(e.errors)
    if parser_unavailable():
        return []
    return _parser_errors(engine.args, engine.sources)


class _Refused(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting."""

    def error(self, message):
        raise _Refused(message)

    def exit(self, status=0, message=None):
        raise _Refused(message or f"the parser exited with status {status}")


@functools.cache
def _sglang_parser() -> argparse.ArgumentParser:
    from sglang.srt.server_args import ServerArgs

    parser = _Parser(prog="sglang.launch_server", add_help=False)
    ServerArgs.add_cli_args(parser)
    return parser


def _cache_file(args: list[str]) -> Path:
    key = hashlib.sha256(json.dumps([manifest()["version"], args]).encode()).hexdigest()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "clinical-agent" / "sglang-parser" / key


def _parser_errors(args: list[str], sources: dict[str, str]) -> list[tuple[str, str]]:
    """SGLang's parser on ``args``; an accepted set of flags is remembered on disk (parsing is pure)."""
    cached = _cache_file(args)
    if cached.is_file():
        return []
    try:
        _sglang_parser().parse_args(args)
    except _Refused as e:
        flag = re.search(r"(?:argument |arguments: )(--[\w-]+)", str(e))
        source = sources.get(flag.group(1)[2:], "flags") if flag else "flags"
        return [(source, f"SGLang's argument parser refused the flags: {e}")]
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(args))
    return []
