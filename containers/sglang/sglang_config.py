"""Map the container's ``SM_SGLANG_*`` environment to SGLang server flags.

``SM_SGLANG_FOO_BAR=v`` becomes ``--foo-bar v``; for a switch, ``true`` becomes the bare flag and
``false`` omits it; an empty value counts as unset. Lists (``--lora-paths``,
``--lora-target-modules``) are space-separated. What SGLang accepts, the SageMaker defaults, LoRA
and speculative decoding are described by ``manifest.json`` beside this file; this module only
applies that table. Standard library only: it runs before anything else in the container, and the
CDK app runs it at synth on the environment it writes (stacks/sglang_check.py).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_PATH = Path(__file__).with_name("manifest.json")
DEFAULT = "default"  # the source of a value that came from the manifest, not the environment


class ConfigError(ValueError):
    """The environment holds settings SGLang would refuse; ``errors`` pairs each variable with why."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("invalid SGLang settings:\n  " + "\n  ".join(f"{s}: {m}" for s, m in errors))


@dataclass(frozen=True)
class EngineConfig:
    args: list[str]  # SGLang flags, without host and port
    served_model_name: str  # the base name in "<base>:<adapter>"
    adapters: list[str] = field(default_factory=list)  # adapters preloaded with --lora-paths
    lora: bool = False
    sources: dict[str, str] = field(default_factory=dict)  # flag -> the variable that set it (or "default")


def load_manifest(path: Path = MANIFEST_PATH) -> dict:
    return json.loads(path.read_text())


def env_name(prefix: str, flag: str) -> str:
    return prefix + flag.upper().replace("-", "_")


_KIND_NAMES = {"int": "an integer", "float": "a number", "json": "a JSON value"}
_PARSERS: dict[str, Callable[[str], object]] = {"int": int, "float": float, "json": json.loads}


def _convert(flag: str, spec: dict, raw: str) -> list[str]:
    """The argv tokens for one setting; raises ValueError saying what is wrong with the value."""
    kind = spec.get("kind", "value")
    low = raw.lower()
    if kind == "switch":
        if low not in ("true", "false"):
            raise ValueError(f"--{flag} is a switch; use true or false, not {raw!r}")
        return [f"--{flag}"] if low == "true" else []
    if low == "false":
        return []
    if low == "true":
        if kind == "optional":
            return [f"--{flag}"]
        raise ValueError(f"--{flag} takes a value, not a bare 'true'")
    items = shlex.split(raw) if spec.get("nargs") else [raw]
    typ = spec.get("type", "str")
    for item in items:
        try:
            _PARSERS.get(typ, str)(item)
        except ValueError:
            raise ValueError(f"{item!r} is not {_KIND_NAMES[typ]} (--{flag})") from None
        choices = spec.get("choices")
        if choices is not None and item not in [str(c) for c in choices]:
            raise ValueError(f"{item!r} is not one of {', '.join(map(str, choices))} (--{flag})")
    return [f"--{flag}", *items]


def _adapter_name(item: str) -> str:
    """The adapter name SGLang gives one ``--lora-paths`` entry (name=path, JSON, or a bare path)."""
    if item.startswith("{"):
        return json.loads(item)["lora_name"]
    return item.split("=", 1)[0] if "=" in item else item


class _Settings:
    """The chosen flags of one environment and the errors found on the way, by the manifest's rules."""

    def __init__(self, env: Mapping[str, str], manifest: dict):
        self.m, self.prefix, self.flags = manifest, manifest["env_prefix"], manifest["flags"]
        self.errors: list[tuple[str, str]] = []
        self.chosen: dict[str, tuple[str, str, str]] = {}  # argparse dest -> (flag, source, raw value)
        for key in sorted(k for k in env if k.startswith(self.prefix)):
            self._read(key, env[key].strip())

    def _read(self, key: str, raw: str) -> None:
        flag = key[len(self.prefix) :].lower().replace("_", "-")
        spec = self.flags.get(flag)
        if spec is None:
            self.error(key, f"unknown SGLang flag --{flag}")
        elif flag in self.m["managed"]:
            self.error(key, f"--{flag} is set by the container ({self.m['managed'][flag]})")
        elif spec["dest"] in self.chosen:
            self.error(key, f"sets the same option as {self.chosen[spec['dest']][1]}")
        elif raw:
            self.chosen[spec["dest"]] = (flag, key, raw)

    def error(self, source: str, message: str) -> None:
        self.errors.append((source, message))

    def entry(self, flag: str) -> tuple[str, str, str] | None:
        return self.chosen.get(self.flags[flag]["dest"])

    def value(self, flag: str) -> str | None:
        return e[2] if (e := self.entry(flag)) else None

    def source(self, flag: str) -> str:
        return e[1] if (e := self.entry(flag)) else DEFAULT

    def default(self, values: Mapping[str, str]) -> None:
        for flag, raw in values.items():
            self.chosen.setdefault(self.flags[flag]["dest"], (flag, DEFAULT, raw))

    def var(self, flag: str) -> str:
        return env_name(self.prefix, flag)

    # --- the manifest's rules -------------------------------------------------------------------

    def lora(self) -> bool:
        lora = self.m["lora"]
        switch = (self.value(lora["switch"]) or "false").lower()
        if switch == "true":
            self.default(lora["defaults"])
        elif switch == "false":
            for flag in lora["requires_lora"]:
                if self.entry(flag):
                    self.error(
                        self.source(flag), f"--{flag} needs LoRA, which is off ({self.var(lora['switch'])}=false)"
                    )
        return switch == "true"

    def speculative(self, lora_on: bool, path_exists: Callable[[str], bool]) -> None:
        spec = self.m["speculative"]
        algo_flag, draft_flag = spec["algorithm_flag"], spec["draft_flag"]
        draft, algo = self.value(draft_flag), self.value(algo_flag)
        if draft is not None and not path_exists(draft):
            self.error(self.source(draft_flag), f"draft model path {draft} does not exist")
        if draft is not None and algo is None:
            algo = spec["default_algorithm"]
            self.default({algo_flag: algo})
        given = [f for f in spec["size_flags"] if self.entry(f)]
        if algo is None:
            if given:
                self.error(
                    self.source(given[0]), f"speculative sizes need {self.var(draft_flag)} or {self.var(algo_flag)}"
                )
            return
        rules = spec["algorithms"].get(algo.upper())
        if rules is None:
            self.error(self.source(algo_flag), f"{algo!r} is not one of {', '.join(spec['algorithms'])}")
            return
        if rules["draft_model"] and draft is None:
            self.error(self.source(algo_flag), f"{algo} needs a draft model; set {self.var(draft_flag)}")
        if not rules["draft_model"] and draft is not None:
            self.error(self.source(draft_flag), f"{algo} uses no draft model; leave {self.var(draft_flag)} unset")
        if lora_on and not rules.get("lora", True):
            self.error(self.source(algo_flag), f"{algo} speculative decoding does not work with LoRA, which is on")
        self._sizes(algo, rules, given, spec["size_flags"])

    def _sizes(self, algo: str, rules: dict, given: list[str], size_flags: list[str]) -> None:
        if rules.get("sizes", "all_or_none") == "all_or_none" and given and len(given) < len(size_flags):
            missing = [self.var(f) for f in size_flags if f not in given]
            self.error(
                self.source(given[0]),
                f"speculative decoding sizes: set all of them or none; missing {', '.join(missing)}",
            )
        for flag in set(given) & set(rules.get("unused_sizes", [])):
            self.error(self.source(flag), f"{algo} does not use --{flag} (SGLang would override it)")

    def args(self) -> list[str]:
        order = {f: i for i, f in enumerate(self.flags)}  # the parser's order: deterministic
        args: list[str] = []
        for flag, src, raw in sorted(self.chosen.values(), key=lambda e: order[e[0]]):
            try:
                args += _convert(flag, self.flags[flag], raw)
            except ValueError as e:
                self.error(src, str(e))
        return args

    def adapters(self, lora_on: bool) -> list[str]:
        paths_flag = self.m["lora"]["paths_flag"]
        if not (lora_on and (paths := self.value(paths_flag))):
            return []
        try:
            return [_adapter_name(i) for i in shlex.split(paths)]
        except (ValueError, KeyError, TypeError) as e:
            self.error(self.source(paths_flag), f"cannot read the adapter entries ({e})")
            return []


def engine_config(
    env: Mapping[str, str],
    manifest: dict | None = None,
    *,
    path_exists: Callable[[str], bool] = os.path.exists,
) -> EngineConfig:
    """Validate the ``SM_SGLANG_*`` settings in ``env`` and build SGLang's flags.

    Raises ConfigError listing every invalid setting by its environment variable.
    """
    s = _Settings(env, manifest or load_manifest())
    s.default(s.m["defaults"])
    lora_on = s.lora()
    s.speculative(lora_on, path_exists)
    args = s.args()
    adapters = s.adapters(lora_on)
    served = s.value(s.m["served_model_name_flag"]) or s.value(s.m["model_flag"])
    if served is None:
        s.error(s.var(s.m["model_flag"]), "no model path (the manifest's defaults should set it)")
    if s.errors or served is None:
        raise ConfigError(s.errors)
    sources = {flag: src for flag, src, _ in s.chosen.values()}
    return EngineConfig(args=args, served_model_name=served, adapters=adapters, lora=lora_on, sources=sources)
