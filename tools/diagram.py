"""Render the synthesized app's architecture as a PNG, from the cloud assembly alone (no AWS, no graphviz binary).

    python -m tools.diagram cdk.out --stage Prod --output docs/architecture.png     (or: make diagram)

One cluster per stack of the stage (plus the Delivery pipeline stack when synthesized), one box per top-level
construct of the stack (its main resource type and resource count under the name), and an arrow wherever one
construct references another: Ref, Fn::GetAtt, Fn::Sub, and across stacks Fn::GetStackOutput / Fn::ImportValue.
Columns follow the stacks' deployment order. Drawn with matplotlib, byte-identical for the same assembly.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

DELIVERY = "Delivery"
# CDK plumbing, not architecture.
HIDDEN_TYPES = {"AWS::CDK::Metadata"}
HIDDEN_PREFIXES = ("Custom::", "CDKMetadata", "BootstrapVersion", "CheckBootstrapVersion")
# Which resource names a construct that has no "<id>/Resource" of its own: the first of these it holds,
# else its first resource that is not a supporting one.
PRIMARY = (
    "AWS::CodePipeline::Pipeline",
    "AWS::SageMaker::",
    "AWS::BedrockAgentCore::Runtime",
    "AWS::Lambda::Function",
    "AWS::EC2::VPC",
    "AWS::S3::Bucket",
    "AWS::DynamoDB::",
    "AWS::KMS::Key",
)
SUPPORTING = ("AWS::IAM::", "AWS::Logs::", "AWS::Lambda::Permission", "AWS::SQS::QueuePolicy", "AWS::KMS::Alias")


def _rank(component: str, path: str, resource_type: str) -> tuple[int, int, int]:
    """Sort key of a construct's resources: its own resource, then primary types, then non-supporting ones."""
    own = path.endswith(f"/{component}/Resource")
    primary = next((i for i, prefix in enumerate(PRIMARY) if resource_type.startswith(prefix)), len(PRIMARY))
    return (not own, primary, resource_type.startswith(SUPPORTING))


class DiagramError(ValueError):
    """The assembly cannot be drawn; the message says what is missing."""


@dataclass
class Cluster:
    name: str  # stack display name, e.g. "Prod/Data"
    description: str
    depends_on: list[str]
    components: dict[str, list[str]] = field(default_factory=dict)  # construct id -> resource types (main first)


@dataclass
class Architecture:
    clusters: list[Cluster]  # in deployment order
    edges: set[tuple[tuple[str, str], tuple[str, str]]]  # ((stack, component) uses (stack, component))
    deploys: list[str]  # stacks the Delivery pipeline deploys (drawn as dashed arrows)


def _stack_artifacts(directory: Path) -> dict[str, dict]:
    manifest = json.loads((directory / "manifest.json").read_text())
    return {
        id: {**a, "directory": directory}
        for id, a in manifest["artifacts"].items()
        if a["type"] == "aws:cloudformation:stack"
    }


def _refs(value, ids: set[str]):
    """Logical ids and stack outputs a template value references."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and inner in ids:
                yield ("id", inner)
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
                if target in ids:
                    yield ("id", target)
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                yield from (("id", m) for m in re.findall(r"\$\{([A-Za-z0-9]+)[.}]", text) if m in ids)
            elif key == "Fn::GetStackOutput" and isinstance(inner, dict):
                yield ("output", (inner.get("StackName"), inner.get("OutputName")))
            elif key == "Fn::ImportValue" and isinstance(inner, str):
                yield ("export", inner)
            if not (key == "Ref" or key == "Fn::GetStackOutput"):
                yield from _refs(inner, ids)
    elif isinstance(value, list):
        for inner in value:
            yield from _refs(inner, ids)


def read_architecture(outdir: Path, stage: str, *, delivery: bool = True) -> Architecture:  # noqa: C901 (issue 18)
    outdir = Path(outdir)
    if not (outdir / "manifest.json").exists():
        raise DiagramError(f"no cloud assembly in {outdir}: run `make synth` first")
    root = _stack_artifacts(outdir)
    stage_dir = outdir / f"assembly-{stage}"
    if not (stage_dir / "manifest.json").exists():
        found = sorted(
            p.name.removeprefix("assembly-")
            for p in outdir.glob("assembly-*")
            if "-" not in p.name.removeprefix("assembly-")
        )
        raise DiagramError(f"stage {stage!r} is not in {outdir}; synthesized stages: {', '.join(found) or 'none'}")
    artifacts = {
        **_stack_artifacts(stage_dir),
        **({k: v for k, v in root.items() if k == DELIVERY} if delivery else {}),
    }

    templates, names = {}, {}
    for id, a in artifacts.items():
        templates[id] = json.loads((a["directory"] / a["properties"]["templateFile"]).read_text())
        names[id] = a.get("displayName", id)
    # Where each logical id lives: its top-level construct (the path segment after the stack's).
    owner: dict[tuple[str, str], str] = {}
    clusters: dict[str, Cluster] = {}
    for id, t in templates.items():
        display = names[id]
        cluster = clusters[id] = Cluster(
            name=display,
            description=t.get("Description", ""),
            depends_on=[
                d for d in artifacts[id].get("dependencies", []) if d in artifacts
            ],  # artifact ids; names below
        )
        ranked: dict[str, list] = {}
        for logical, resource in t.get("Resources", {}).items():
            path = resource.get("Metadata", {}).get("aws:cdk:path", "")
            component = path.removeprefix(display + "/").split("/")[0] if path.startswith(display + "/") else logical
            if resource["Type"] in HIDDEN_TYPES or component.startswith(HIDDEN_PREFIXES):
                continue
            owner[(id, logical)] = component
            ranked.setdefault(component, []).append((_rank(component, path, resource["Type"]), resource["Type"]))
        for component, entries in ranked.items():
            cluster.components[component] = [t for _, t in sorted(entries, key=lambda e: e[0])]

    def stack_of_output(stack_name: str | None, output: str) -> str | None:
        holders = [id for id, t in templates.items() if output in t.get("Outputs", {})]
        exact = [id for id in holders if artifacts[id]["properties"].get("stackName") == stack_name]
        return next(iter(exact or holders), None)

    exports = {
        o["Export"]["Name"]: (id, name)
        for id, t in templates.items()
        for name, o in t.get("Outputs", {}).items()
        if isinstance(o.get("Export", {}).get("Name"), str)
    }

    edges = set()
    for id, t in templates.items():
        ids = set(t.get("Resources", {}))
        for logical, resource in t.get("Resources", {}).items():
            if (id, logical) not in owner:
                continue
            source = (names[id], owner[(id, logical)])
            for kind, ref in _refs(resource.get("Properties", {}), ids):
                targets: list[tuple[str, str]] = []
                if kind == "id":
                    targets = [(id, ref)]
                else:
                    holder, output = (
                        (stack_of_output(*ref), ref[1]) if kind == "output" else exports.get(ref, (None, None))
                    )
                    if holder:
                        value = templates[holder]["Outputs"][output]["Value"]
                        targets = [(holder, r) for _, r in _refs(value, set(templates[holder]["Resources"]))]
                for stack, target in targets:
                    if (stack, target) in owner and (names[stack], owner[(stack, target)]) != source:
                        edges.add((source, (names[stack], owner[(stack, target)])))

    # Deployment order: a stack's column is the length of its longest dependency chain.
    depth: dict[str, int] = {}

    def level(id: str) -> int:
        if id not in depth:
            depth[id] = 1 + max((level(d) for d in clusters[id].depends_on), default=-1)
        return depth[id]

    order = sorted(clusters, key=lambda id: (id != DELIVERY, level(id), names[id]))
    for cluster in clusters.values():
        cluster.depends_on = [names[d] for d in cluster.depends_on]
    return Architecture(
        clusters=[clusters[id] for id in order],
        edges=edges,
        deploys=[names[id] for id in order if id != DELIVERY] if DELIVERY in clusters else [],
    )


def _fit(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _short(resource_type: str) -> str:
    return " ".join(resource_type.split("::")[1:]) if resource_type.startswith("AWS::") else resource_type


PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]


def render(arch: Architecture, output: Path, *, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    node_w, node_h, gap, pad, head = 3.0, 0.62, 0.22, 0.25, 0.75
    col_gap = 1.6
    # Columns: clusters of the same depth share one, stacked vertically.
    columns: list[list[Cluster]] = []
    placed: dict[str, int] = {}
    first = 1 if arch.deploys else 0  # the pipeline gets the first column
    for c in arch.clusters:  # in deployment order: a stack's dependencies are placed before it
        index = 0 if c.name == DELIVERY else max([placed[d] + 1 for d in c.depends_on] + [first])
        placed[c.name] = index
        while len(columns) <= index:
            columns.append([])
        columns[index].append(c)

    def cluster_h(c: Cluster) -> float:
        return head + len(c.components) * (node_h + gap) - gap + pad

    height = max(sum(cluster_h(c) for c in col) + pad * (len(col) - 1) for col in columns) + 1.0
    width = len(columns) * (node_w + 2 * pad) + (len(columns) - 1) * col_gap + 0.6
    fig = plt.figure(figsize=(width, height + 0.4))
    ax = fig.add_axes((0, 0.2 / (height + 0.4), 1, height / (height + 0.4)))  # no margins; legend below
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    ax.text(0.3, height - 0.15, title, fontsize=14, fontweight="bold", va="center")

    boxes: dict[tuple[str, str], tuple[float, float]] = {}  # node center
    headers: dict[str, tuple[float, float, str]] = {}  # cluster: left x, top y, color
    colors = {c.name: PALETTE[i % len(PALETTE)] for i, c in enumerate(arch.clusters)}
    for ci, col in enumerate(columns):
        x = 0.3 + ci * (node_w + 2 * pad + col_gap)
        y = height - 0.5
        for c in col:
            h, color = cluster_h(c), colors[c.name]
            ax.add_patch(
                FancyBboxPatch(
                    (x, y - h),
                    node_w + 2 * pad,
                    h,
                    boxstyle="round,pad=0.02,rounding_size=0.15",
                    facecolor=color + "14",
                    edgecolor=color,
                    linewidth=1.6,
                    zorder=1,
                )
            )
            ax.text(x + pad, y - 0.3, c.name, fontsize=11, fontweight="bold", color=color, va="center", zorder=4)
            ax.text(
                x + pad,
                y - 0.55,
                _fit(c.description.removeprefix("Clinical agent "), 50),
                fontsize=7,
                color="#555555",
                va="center",
                zorder=4,
            )
            headers[c.name] = (x, y, color)
            ny = y - head
            for name, types in c.components.items():
                # White boxes above the arrows (zorder): a label is never crossed by a line.
                ax.add_patch(
                    FancyBboxPatch(
                        (x + pad, ny - node_h),
                        node_w,
                        node_h,
                        zorder=3,
                        boxstyle="round,pad=0.01,rounding_size=0.08",
                        facecolor="white",
                        edgecolor=color,
                        linewidth=1.0,
                    )
                )
                more = f"  (+{len(types) - 1})" if len(types) > 1 else ""
                ax.text(
                    x + pad + 0.12,
                    ny - node_h * 0.34,
                    _fit(name, 34),
                    fontsize=8.5,
                    fontweight="bold",
                    va="center",
                    zorder=4,
                )
                ax.text(
                    x + pad + 0.12,
                    ny - node_h * 0.72,
                    _fit(_short(types[0]), 30) + more,
                    fontsize=7,
                    color="#444444",
                    va="center",
                    zorder=4,
                )
                boxes[(c.name, name)] = (x + pad + node_w / 2, ny - node_h / 2)
                ny -= node_h + gap
            y -= h + pad

    for source, target in sorted(arch.edges):
        (sx, sy), (tx, ty) = boxes[source], boxes[target]
        color = colors[source[0]]
        if abs(sx - tx) < 1e-6:  # same column: bulge out on the right
            start, end, style = (sx + node_w / 2, sy), (tx + node_w / 2, ty), "arc3,rad=-0.35"
        else:
            side = 1 if tx > sx else -1
            start, end, style = (sx + side * node_w / 2, sy), (tx - side * node_w / 2, ty), "arc3,rad=0.08"
        ax.add_patch(
            FancyArrowPatch(
                start,
                end,
                connectionstyle=style,
                arrowstyle="-|>",
                mutation_scale=9,
                color=color,
                alpha=0.55,
                linewidth=0.9,
                shrinkA=2,
                shrinkB=2,
                zorder=2,
            )
        )
    pipeline = next((n for n in boxes if n[0] == DELIVERY and n[1] == "Pipeline"), None)
    px, py = boxes[pipeline] if pipeline is not None else (0.0, 0.0)
    for name in arch.deploys if pipeline is not None else []:
        x, y, _ = headers[name]
        ax.add_patch(
            FancyArrowPatch(
                (px + node_w / 2, py),
                (x + 0.1, y),
                connectionstyle="arc3,rad=-0.12",
                arrowstyle="-|>",
                mutation_scale=11,
                color="#222222",
                linestyle="--",
                linewidth=1.2,
                alpha=0.8,
                zorder=2,
            )
        )
    legend = (
        "Boxes: top-level constructs (main resource type, + other resources).  "
        "Arrows: references (Ref, GetAtt, stack outputs)."
    )
    if pipeline:
        legend += "  Dashed: the pipeline deploys the stack (cross-account, through CDK bootstrap roles)."
    fig.text(0.005, 0.1 / (height + 0.4), legend, fontsize=8, color="#333333", va="center")
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assembly", nargs="?", default="cdk.out", type=Path)
    parser.add_argument("--stage", default="Prod", help="the environment's stage to draw (default: Prod)")
    parser.add_argument("--no-delivery", action="store_true", help="leave out the Delivery pipeline stack")
    parser.add_argument("--output", default=Path("docs/architecture.png"), type=Path)
    args = parser.parse_args(argv)
    try:
        arch = read_architecture(args.assembly, args.stage, delivery=not args.no_delivery)
    except DiagramError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    title = f"Clinical agent: the {args.stage} environment" + (" and its delivery pipeline" if arch.deploys else "")
    print(f"wrote {render(arch, args.output, title=title)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
