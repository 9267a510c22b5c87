"""Map the container's ``SM_SGLANG_*`` environment to SGLang server flags.

``SM_SGLANG_FOO_BAR=v`` becomes ``--foo-bar v``; for a switch, ``true`` becomes the bare flag and
``false`` omits it; an empty value counts as unset. Lists (``--lora-paths``,
``--lora-target-modules``) are space-separated. What SGLang accepts, the SageMaker defaults, LoRA
and speculative decoding are described by ``manifest.json`` beside this file; this module only
applies that table. Standard library only: it runs before anything else in the container.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_PATH = Path(__file__).with_name("manifest.json")


class ConfigError(ValueError):
    """The environment holds settings SGLang would refuse; the message names each one."""


@dataclass(frozen=True)
class EngineConfig:
    args: list[str]  # SGLang flags, without host and port
    served_model_name: str  # the base name in "<base>:<adapter>"
    adapters: list[str] = field(default_factory=list)  # adapters preloaded with --lora-paths
    lora: bool = False


def load_manifest(path: Path = MANIFEST_PATH) -> dict:
    return json.loads(path.read_text())


def _env_name(prefix: str, flag: str) -> str:
    return prefix + flag.upper().replace("-", "_")


def _convert(flag: str, spec: dict, raw: str, source: str) -> list[str]:
    """The argv tokens for one setting; raises ConfigError naming ``source``."""
    kind = spec.get("kind", "value")
    low = raw.lower()
    if kind == "switch":
        if low not in ("true", "false"):
            raise ConfigError(f"{source}: --{flag} is a switch; use true or false, not {raw!r}")
        return [f"--{flag}"] if low == "true" else []
    if low == "false":
        return []
    if low == "true":
        if kind == "optional":
            return [f"--{flag}"]
        raise ConfigError(f"{source}: --{flag} takes a value, not a bare 'true'")
    items = shlex.split(raw) if spec.get("nargs") else [raw]
    typ = spec.get("type", "str")
    for item in items:
        try:
            if typ == "int":
                int(item)
            elif typ == "float":
                float(item)
            elif typ == "json":
                json.loads(item)
        except ValueError:
            article = "an" if typ == "int" else "a"
            kind_name = {"int": "integer", "float": "number", "json": "JSON value"}[typ]
            raise ConfigError(f"{source}: {item!r} is not {article} {kind_name} (--{flag})") from None
        choices = spec.get("choices")
        if choices is not None and item not in [str(c) for c in choices]:
            raise ConfigError(f"{source}: {item!r} is not one of {', '.join(map(str, choices))} (--{flag})")
    return [f"--{flag}", *items]


def _adapter_name(item: str) -> str:
    """The adapter name SGLang gives one ``--lora-paths`` entry (name=path, JSON, or a bare path)."""
    if item.startswith("{"):
        return json.loads(item)["lora_name"]
    return item.split("=", 1)[0] if "=" in item else item


def engine_config(  # noqa: C901 (to be split: issue 18)
    env: Mapping[str, str],
    manifest: dict | None = None,
    *,
    path_exists: Callable[[str], bool] = os.path.exists,
) -> EngineConfig:
    """Validate the ``SM_SGLANG_*`` settings in ``env`` and build SGLang's flags.

    Raises ConfigError listing every invalid setting by its environment variable.
    """
    m = manifest or load_manifest()
    prefix, flags = m["env_prefix"], m["flags"]
    errors: list[str] = []
    chosen: dict[str, tuple[str, str, str]] = {}  # argparse dest -> (flag, source, raw value)

    for key in sorted(k for k in env if k.startswith(prefix)):
        raw = env[key].strip()
        flag = key[len(prefix) :].lower().replace("_", "-")
        spec = flags.get(flag)
        if spec is None:
            errors.append(f"{key}: unknown SGLang flag --{flag}")
        elif flag in m["managed"]:
            errors.append(f"{key}: --{flag} is set by the container ({m['managed'][flag]})")
        elif spec["dest"] in chosen:
            errors.append(f"{key}: sets the same option as {chosen[spec['dest']][1]}")
        elif raw:
            chosen[spec["dest"]] = (flag, key, raw)

    def entry(flag: str) -> tuple[str, str, str] | None:
        return chosen.get(flags[flag]["dest"])

    def value(flag: str) -> str | None:
        return e[2] if (e := entry(flag)) else None

    def source(flag: str) -> str:
        return e[1] if (e := entry(flag)) else "default"

    def default(values: dict[str, str]) -> None:
        for flag, raw in values.items():
            chosen.setdefault(flags[flag]["dest"], (flag, "default", raw))

    default(m["defaults"])
    lora = m["lora"]
    switch = (value(lora["switch"]) or "false").lower()
    lora_on = switch == "true"
    if lora_on:
        default(lora["defaults"])
    elif switch == "false":
        for flag in lora["requires_lora"]:
            if entry(flag):
                errors.append(
                    f"{source(flag)}: --{flag} needs LoRA, which is off ({_env_name(prefix, lora['switch'])}=false)"
                )

    spec_m = m["speculative"]
    algo_flag, draft_flag, sizes = spec_m["algorithm_flag"], spec_m["draft_flag"], spec_m["size_flags"]
    draft, algo = value(draft_flag), value(algo_flag)
    if draft is not None and not path_exists(draft):
        errors.append(f"{source(draft_flag)}: draft model path {draft} does not exist")
    if draft is not None and algo is None:
        algo = spec_m["default_algorithm"]
        default({algo_flag: algo})
    if algo is not None:
        algos = spec_m["algorithms"]
        if algo.upper() not in algos:
            errors.append(f"{source(algo_flag)}: {algo!r} is not one of {', '.join(algos)}")
        elif algos[algo.upper()]["draft_model"] and draft is None:
            errors.append(f"{source(algo_flag)}: {algo} needs a draft model; set {_env_name(prefix, draft_flag)}")
    given = [f for f in sizes if entry(f)]
    if given and len(given) < len(sizes):
        missing = [_env_name(prefix, f) for f in sizes if f not in given]
        errors.append(f"speculative decoding sizes: set all of them or none; missing {', '.join(missing)}")
    if given and algo is None:
        errors.append(
            f"{source(given[0])}: speculative sizes need {_env_name(prefix, draft_flag)} "
            f"or {_env_name(prefix, algo_flag)}"
        )

    order = {f: i for i, f in enumerate(flags)}  # the parser's order: deterministic
    args: list[str] = []
    for flag, src, raw in sorted(chosen.values(), key=lambda e: order[e[0]]):
        try:
            args += _convert(flag, flags[flag], raw, src)
        except ConfigError as e:
            errors.append(str(e))
    adapters: list[str] = []
    if lora_on and (paths := value(lora["paths_flag"])):
        try:
            adapters = [_adapter_name(i) for i in shlex.split(paths)]
        except (ValueError, KeyError, TypeError) as e:
            errors.append(f"{source(lora['paths_flag'])}: cannot read the adapter entries ({e})")
    served = value(m["served_model_name_flag"]) or value(m["model_flag"])
    if served is None:
        errors.append(f"{_env_name(prefix, m['model_flag'])}: no model path (the manifest's defaults should set it)")
    if errors or served is None:
        raise ConfigError("invalid SGLang settings:\n  " + "\n  ".join(errors))
    return EngineConfig(args=args, served_model_name=served, adapters=adapters, lora=lora_on)
