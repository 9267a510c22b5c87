"""A synthesized cloud assembly as a graph of resources: what each resource references, across stacks.

Reads `cdk.out` alone (no AWS, no app import): the top-level stacks (the delivery pipeline) and the stacks of each
top-level stage (`assembly-<Stage>`, not the pipeline's own copies `assembly-Delivery-<Stage>`), their templates,
and the container images of their asset manifests. A reference is a `Ref`, `Fn::GetAtt`, a `${Id}` in `Fn::Sub`, or,
across stacks, `Fn::GetStackOutput` / `Fn::ImportValue` resolved through the producing stack's output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

Key = tuple[str, str]  # (stack display name, logical id); the stack itself is (name, "")
IMAGE = "cdk:container-image"  # the type given to a stack's container image assets (logical id "image/<hash>")
_SUB_ID = re.compile(r"\$\{([A-Za-z0-9]+)[.}]")


class DiagramError(ValueError):
    """The assembly cannot be drawn; the message says what is missing."""


@dataclass(frozen=True)
class Resource:
    stack: str  # display name: "Prod/Agent"
    logical_id: str
    type: str
    path: str  # the construct path below the stack: "Runtime/Resource"
    properties: dict = field(compare=False, hash=False, repr=False)

    @property
    def key(self) -> Key:
        return (self.stack, self.logical_id)

    @property
    def construct(self) -> str:
        """The top-level construct of the stack that holds it ("Runtime")."""
        return self.path.split("/")[0]


@dataclass
class Stack:
    name: str  # display name: "Prod/Agent", "Delivery"
    stage: str  # "Prod"; "" for a top-level stack
    account: str
    region: str
    stack_name: str  # the CloudFormation name: "Prod-Agent"
    template: dict
    depends_on: list[str]  # display names, within what was read
    images: dict[str, Path]  # container image assets: hash -> staged build directory


def _stacks_of(directory: Path, stage: str) -> list[Stack]:
    manifest = json.loads((directory / "manifest.json").read_text())
    artifacts = manifest["artifacts"]
    found = []
    for artifact_id, a in artifacts.items():
        if a["type"] != "aws:cloudformation:stack":
            continue
        name = a.get("displayName", artifact_id)
        account, region = a.get("environment", "aws:///").removeprefix("aws://").split("/")[:2]
        images: dict[str, Path] = {}
        for dep in a.get("dependencies", []):
            if artifacts.get(dep, {}).get("type") == "cdk:asset-manifest":
                assets = json.loads((directory / artifacts[dep]["properties"]["file"]).read_text())
                images |= {h: directory / i["source"]["directory"] for h, i in assets.get("dockerImages", {}).items()}
        stack = Stack(
            name=name,
            stage=stage,
            account=account,
            region=region,
            stack_name=a["properties"].get("stackName", name.replace("/", "-")),
            template=json.loads((directory / a["properties"]["templateFile"]).read_text()),
            depends_on=[artifacts[d].get("displayName", d) for d in a.get("dependencies", []) if d in artifacts],
            images=images,
        )
        found.append(stack)
    return found


def strings(value) -> Iterator[str]:
    """Every literal string in a template value (Fn::Sub templates and Fn::Join pieces included), but its tags and
    descriptions: they name the project and the environment, not what a resource uses."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key not in ("Tags", "Description"):
                yield from strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from strings(inner)


def mentions(text: str, name: str) -> bool:
    """Whether `name` occurs in `text` as a whole name (not inside a longer one)."""
    return re.search(rf"(?<![A-Za-z0-9_-]){re.escape(name)}(?![A-Za-z0-9_-])", text) is not None


class Assembly:
    """The stacks and resources of a cloud assembly, and the references between resources."""

    def __init__(self, outdir: Path):
        outdir = Path(outdir)
        if not (outdir / "manifest.json").exists():
            raise DiagramError(f"no cloud assembly in {outdir}: run `make synth` first")
        root = json.loads((outdir / "manifest.json").read_text())["artifacts"]
        # Top-level stages only: a stage nested in a stack (the pipeline's copies) is named assembly-<Stack>-<Stage>.
        self.stages = [
            id.removeprefix("assembly-")
            for id, a in root.items()
            if a["type"] == "cdk:cloud-assembly" and "-" not in id.removeprefix("assembly-")
        ]
        loaded = _stacks_of(outdir, "") + [
            s for stage in self.stages for s in _stacks_of(outdir / f"assembly-{stage}", stage)
        ]
        self.stacks = {s.name: s for s in loaded}
        self.resources: dict[Key, Resource] = {}
        for stack in self.stacks.values():
            for logical, r in stack.template.get("Resources", {}).items():
                path = r.get("Metadata", {}).get("aws:cdk:path", f"{stack.name}/{logical}")
                self.resources[(stack.name, logical)] = Resource(
                    stack.name, logical, r["Type"], path.removeprefix(stack.name + "/"), r.get("Properties", {})
                )
            for digest in stack.images:  # an image is found by its hash in the resources that run it
                self.resources[(stack.name, f"image/{digest}")] = Resource(stack.name, f"image/{digest}", IMAGE, "", {})
        self._by_stack_name = {s.stack_name: s for s in self.stacks.values()}
        self._exports = {
            o["Export"]["Name"]: (s.name, o["Value"])
            for s in self.stacks.values()
            for o in s.template.get("Outputs", {}).values()
            if isinstance(o.get("Export", {}).get("Name"), str)
        }
        self._policies: dict[Key, list[Key]] = {}  # role -> the policies attached to it
        for r in self.resources.values():
            if r.type in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                for role in self.references(r, r.properties.get("Roles", [])):
                    self._policies.setdefault(role, []).append(r.key)

    def has(self, key: Key) -> bool:
        """Whether the assembly holds this resource (or, for (name, ""), this stack)."""
        return key in self.resources or (key[1] == "" and key[0] in self.stacks)

    def of_stacks(self, names) -> list[Resource]:
        return [r for r in self.resources.values() if r.stack in names]

    def references(self, resource: Resource, value=None) -> set[Key]:
        """The resources a resource's properties (or `value`, a part of them) reference."""
        value = resource.properties if value is None else value
        return set(self._refs(resource.stack, value))

    def _refs(self, stack: str, value) -> Iterator[Key]:
        ids = self.stacks[stack].template.get("Resources", {})
        if isinstance(value, list):
            for inner in value:
                yield from self._refs(stack, inner)
        if not isinstance(value, dict):
            return
        for key, inner in value.items():
            if key == "Ref" and inner in ids:
                yield (stack, inner)
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
                yield from [(stack, target)] if target in ids else []
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                yield from ((stack, m) for m in _SUB_ID.findall(text) if m in ids)
            elif key == "Fn::GetStackOutput" and isinstance(inner, dict):
                yield from self._output(self._by_stack_name.get(str(inner.get("StackName"))), inner.get("OutputName"))
            elif key == "Fn::ImportValue" and isinstance(inner, str) and inner in self._exports:
                producer, output = self._exports[inner]
                yield from self._refs(producer, output)
            if key not in ("Ref", "Fn::GetStackOutput"):
                yield from self._refs(stack, inner)

    def _output(self, stack: Stack | None, output: str | None) -> Iterator[Key]:
        outputs = stack.template.get("Outputs", {}) if stack else {}
        if stack is not None and output in outputs:
            yield from self._refs(stack.name, outputs[output]["Value"])

    def reach(self, keys: set[Key]) -> set[Key]:
        """The resources and the IAM roles they run as, with the policies attached to those roles."""
        roles = {
            ref
            for key in keys
            if key in self.resources
            for ref in self.references(self.resources[key])
            if self.resources[ref].type == "AWS::IAM::Role"
        }
        return keys | roles | {p for role in roles for p in self._policies.get(role, [])}

    def names(self, key: Key) -> set[str]:
        """The literal names a resource is known by (its `...Name` properties), or an image's hash."""
        if key not in self.resources:
            return set()
        if self.resources[key].type == IMAGE:
            return {key[1].removeprefix("image/")}
        properties = self.resources[key].properties
        return {v for k, v in properties.items() if k.endswith("Name") and isinstance(v, str) and len(v) > 3}

    def connected(self, source: set[Key], target: set[Key]) -> bool:
        """Whether either set of resources reaches the other: a reference, or a mention of its name."""
        return self._reaches(source, target) or self._reaches(target, source)

    def _reaches(self, source: set[Key], target: set[Key]) -> bool:
        reach = [self.resources[k] for k in self.reach({k for k in source if k in self.resources})]
        if any(self.references(r) & target for r in reach):
            return True
        names = {n for key in target for n in self.names(key)}
        return any(mentions(text, n) for r in reach for text in strings(r.properties) for n in names)
