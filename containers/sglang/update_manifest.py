"""Refresh the flag table of manifest.json from SGLang's own argument parser.

Run after changing the SGLang version (needs `sglang` importable; CPU is enough):

    python containers/sglang/update_manifest.py

Only the "flags" table is rewritten; the capabilities written by hand (defaults, LoRA,
speculative decoding, managed flags) stay as they are. tests/serving checks that the table
matches the installed parser.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MANIFEST = Path(__file__).with_name("manifest.json")
_TYPES = {int: "int", float: "float"}
_JSON_TYPES = {"loads", "json_list_type"}


def _type_name(action: argparse.Action) -> str:
    if action.type in _TYPES:
        return _TYPES[action.type]
    if getattr(action.type, "__name__", "") in _JSON_TYPES:
        return "json"
    return "str"


def _spec(action: argparse.Action) -> dict:
    spec: dict = {"dest": action.dest}
    if action.nargs == 0:
        spec["kind"] = "switch"
        return spec
    if action.nargs == "?":
        spec["kind"] = "optional"
    elif action.nargs in ("+", "*"):
        spec["nargs"] = action.nargs
    if (t := _type_name(action)) != "str":
        spec["type"] = t
    if action.choices is not None:
        spec["choices"] = sorted(action.choices, key=str)  # some are built from sets
    return spec


def parser_flags() -> dict[str, dict]:
    """Every long option of SGLang's server parser (without the leading dashes) and how it parses."""
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    flags = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        for option in action.option_strings:
            if option.startswith("--"):
                flags[option[2:]] = _spec(action)
    return flags


def render(manifest: dict) -> str:
    """The manifest as JSON, one flag per line so that diffs stay readable."""
    head = json.dumps({k: v for k, v in manifest.items() if k != "flags"}, indent=2)
    rows = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in manifest["flags"].items())
    return f'{head[:-2]},\n  "flags": {{\n{rows}\n  }}\n}}\n'


def main() -> None:
    manifest = json.loads(MANIFEST.read_text())
    manifest["flags"] = parser_flags()
    MANIFEST.write_text(render(manifest))
    print(f"{MANIFEST}: {len(manifest['flags'])} flags")


if __name__ == "__main__":
    main()
