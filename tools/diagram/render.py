"""Draw the pictures with the `diagrams` library (official AWS icons), laid out by Graphviz's `dot`.

Node ids are the model's stable ids (never the library's random ones) and the PNG is written by Graphviz's cairo
renderer, which stores no time: the same assembly gives the same bytes. Output goes to a temporary folder first,
so a failed render leaves no half-written picture.
"""

from __future__ import annotations

import html
import importlib
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tools.diagram.graph import DiagramError

FONT = "DejaVu Sans"  # Debian's fonts-dejavu-core, installed with Graphviz by `make graphviz`
COLORS = {"request": "#1565C0", "lifecycle": "#2E7D32", "promotion": "#E65100", "reference": "#7B8894"}
ACCOUNT_COLORS = {"": "#FFF3E0", "request": "#E3F2FD"}


def _require_dot() -> None:
    if shutil.which("dot") is None:
        raise DiagramError("Graphviz's `dot` is not installed: run `make graphviz` (Debian) or install Graphviz")


def icon(path: str):
    """A `diagrams` node class by its dotted path below `diagrams.` ("aws.ml.Bedrock")."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(f"diagrams.{module}"), name)


class Canvas:
    """A `diagrams.Diagram` that renders into a temporary folder, then moves the PNG to `output`."""

    def __init__(self, output: Path, *, title: str, direction: str = "LR", graph: dict | None = None):
        from diagrams import Diagram

        _require_dot()
        self.output = Path(output)
        self._tmp = tempfile.TemporaryDirectory()
        self.diagram = Diagram(
            "",
            filename=str(Path(self._tmp.name) / "picture"),
            direction=direction,
            curvestyle="curved",
            outformat="png",
            show=False,
            graph_attr={
                "label": title,
                "fontname": FONT,
                "fontsize": "28",
                "labelloc": "t",
                "pad": "0.4",
                "compound": "true",
                "newrank": "true",
                **(graph or {}),
            },
            node_attr={"fontname": FONT},
            edge_attr={"fontname": FONT},
        )

    def __enter__(self) -> Canvas:
        self.diagram.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self.diagram.__exit__(*exc)
                self.output.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(Path(self._tmp.name) / "picture.png"), self.output)
        finally:
            self._tmp.cleanup()


def cluster(label: str, *, color: str = "#FFFFFF", pen: str = "#AEB6BE", size: int = 16, bold: bool = False, **attrs):
    from diagrams import Cluster

    return Cluster(
        label,
        graph_attr={
            "bgcolor": color,
            "pencolor": pen,
            "fontname": f"{FONT} Bold" if bold else FONT,
            "fontsize": str(size),
            "margin": "16",
            "style": "rounded",
            **attrs,
        },
    )


def node(id: str, label: str, icon_path: str, *, size: int = 72, **attrs):
    """A node: the service icon above its label (first line bold); sized by Graphviz to fit both."""
    cls = icon(icon_path)
    src = Path(str(importlib.import_module("diagrams").__file__)).parent.parent / cls._icon_dir / cls._icon
    title, _, rest = label.partition("\n")
    lines = f"<b>{html.escape(title)}</b>" + "".join(f"<br/>{html.escape(line)}" for line in rest.splitlines())
    table = (
        f'<<table border="0" cellborder="0" cellspacing="1"><tr><td fixedsize="true" width="{size}" height="{size}">'
        f'<img src="{src}" scale="true"/></td></tr><tr><td>{lines}</td></tr></table>>'
    )
    return cls(
        table,
        nodeid=id,
        **{"shape": "plain", "image": "", "width": "0", "height": "0", "fontsize": "16", "fixedsize": "false", **attrs},
    )


def text(id: str, label: str, **attrs):
    from diagrams import Node

    return Node(label, nodeid=id, **{"shape": "plaintext", "fixedsize": "false", "width": "0", "height": "0", **attrs})


def edge(a, b, *, label: str = "", kind: str = "reference", **attrs) -> None:
    from diagrams import Edge

    style = {"style": "dashed"} if kind == "promotion" else {}
    attrs.setdefault("fontsize", "15")
    width = "1.0" if kind == "reference" else "2.2"
    (
        a
        >> Edge(
            label=label, color=COLORS[kind], fontcolor=COLORS[kind], fontname=FONT, penwidth=width, **style, **attrs
        )
        >> b
    )


def legend_lines(items: Iterable[tuple[str, int]]) -> str:
    return "\n".join(f"{count:>3}  {name}" for name, count in items)


# Parts drawn together in one box inside their account, titled by the first part's title.
GROUPS: tuple[tuple[str, ...], ...] = (("endpoint", "base_component", "adapter_component"),)
# Lifecycle flows into the serving box do not rank it: it stays beside the agent that calls it.
LOOSE: tuple[str, ...] = ()


def _account_label(account, stage: str) -> str:
    name = f"{account.stage} account" if account.stage else "Tooling account"
    return f"{name}  {account.account} · {account.region}"


def _draw_part(part, nodes: dict, anchors: dict) -> None:
    """A part: one node; a training pipeline: a row of its steps (flows attach to the first and the last, clipped at
    the row's box); the delivery pipeline: its source and build steps (its deploy steps are drawn as flows)."""
    label = f"{part.title}\n{part.detail}".strip()
    steps = [s for s in part.steps if not s.deploys]
    if not steps:
        nodes[part.id] = node(part.id, label, part.icon)
        return
    kind = "promotion" if part.kind == "delivery" else "lifecycle"
    with cluster(label.replace("\n", ": ", 1), color="#FFFFFF", size=17, rank="same") as box:
        for step in steps:
            nodes[step.id] = node(step.id, step.label, step.icon)
    for a, b, text_ in part.step_edges:
        if a in nodes and b in nodes:
            edge(nodes[a], nodes[b], label=text_, kind=kind)
    anchors[part.id] = (nodes[steps[0].id], nodes[steps[-1].id], box.name)
    for n, step in enumerate((s for s in part.steps if s.deploys), start=1):
        anchors[step.id] = (nodes[steps[-1].id], nodes[steps[-1].id], box.name)
        nodes[f"{step.id}.label"] = f"{n} {step.label}".replace(" → ", " →\n")


def _flow_label(flow, nodes: dict) -> str:
    return nodes.get(f"{flow.source}.label", flow.label)


def _plumbing_note(view, stage: str) -> str:
    counts = view.plumbing.get(stage, {})
    return "Not drawn:\\l" + "".join(f"{count} {name}\\l" for name, count in counts.items()) if counts else ""


def render_system(view, output: Path, *, title: str) -> Path:
    """The system picture: accounts, parts with their service icons, and the labelled flows."""
    nodes: dict = {}
    anchors: dict = {}  # part id -> (first step node, last step node, its box's cluster name)
    legend = (
        f'<<font point-size="30">{title}</font><br/>'
        f'<font color="{COLORS["request"]}">━━ a clinician\'s question (1–4)</font>      '
        f'<font color="{COLORS["lifecycle"]}">━━ a model, from data to the endpoint</font>      '
        f'<font color="{COLORS["promotion"]}">╍╍ promotion across accounts</font><br/> >'
    )
    with Canvas(output, title=legend, direction="TB", graph={"nodesep": "0.4", "ranksep": "0.55", "splines": "spline"}):
        outside = [p for p in view.parts if p.kind == "clinician"]
        for part in outside:
            _draw_part(part, nodes, anchors)
        for account in view.accounts:
            inside = [p for p in view.parts if p.stage == account.stage and p not in outside]
            color = "#F1F8FE" if account.stage == view.stage else "#FFF3E0" if not account.stage else "#F5F5F5"
            with cluster(_account_label(account, view.stage), color=color, size=24, bold=True):
                for kinds in GROUPS:
                    grouped = [p for p in inside if p.kind in kinds]
                    if grouped:
                        with cluster(grouped[0].title, color="#FFFFFF", size=17):
                            for part in grouped:
                                _draw_part(part, nodes, anchors)
                for part in inside:
                    if not any(part.kind in kinds for kinds in GROUPS):
                        _draw_part(part, nodes, anchors)
                if note := _plumbing_note(view, account.stage):
                    text(f"{account.stage or 'Tooling'}.plumbing", note, fontcolor="#555555", fontsize="15")
        for flow in view.flows:
            _draw_flow(flow, view, nodes, anchors)
        _stack_accounts(view, nodes, anchors)
    return Path(output)


def _stack_accounts(view, nodes: dict, anchors: dict) -> None:
    """Invisible edges from each account's stacks to its parts that nothing else leads to: the delivery pipeline
    sits above the environments it deploys, and each environment's parts below its stacks."""
    from diagrams import Edge

    led = {f.target for f in view.flows} | {b for p in view.parts for _, b, _ in p.step_edges}
    for part in view.parts:
        if part.kind in ("stacks", "clinician") or part.id in led or not part.stage:
            continue
        first = anchors[part.id][0] if part.id in anchors else nodes[part.id]
        nodes[f"{part.stage}.stacks"] >> Edge(style="invis") >> first


def _draw_flow(flow, view, nodes: dict, anchors: dict) -> None:
    attrs: dict[str, str] = {}
    source, target = nodes.get(flow.source), nodes.get(flow.target)
    if flow.source in anchors:
        source, attrs["ltail"] = anchors[flow.source][1], anchors[flow.source][2]
    if flow.target in anchors:
        target, attrs["lhead"] = anchors[flow.target][0], anchors[flow.target][2]
    kinds = {p.id: p.kind for p in view.parts}
    if flow.kind == "lifecycle" and kinds.get(flow.target) in LOOSE:
        attrs["constraint"] = "false"
    edge(source, target, label=_flow_label(flow, nodes), kind=flow.kind, **attrs)


# The detailed graph's icons, by resource type prefix (the first that matches).
DETAIL_ICONS: tuple[tuple[str, str], ...] = (
    ("AWS::S3::", "aws.storage.SimpleStorageServiceS3Bucket"),
    ("AWS::KMS::", "aws.security.KMS"),
    ("AWS::IAM::", "aws.security.IAMRole"),
    ("AWS::Logs::", "aws.management.CloudwatchLogs"),
    ("AWS::CloudWatch::Alarm", "aws.management.CloudwatchAlarm"),
    ("AWS::CloudWatch::", "aws.management.Cloudwatch"),
    ("AWS::SNS::", "aws.integration.SNS"),
    ("AWS::SQS::", "aws.integration.SQS"),
    ("AWS::EC2::SecurityGroup", "aws.general.GenericFirewall"),
    ("AWS::EC2::", "aws.network.VPC"),
    ("AWS::Lambda::", "aws.compute.Lambda"),
    ("AWS::DynamoDB::", "aws.database.Dynamodb"),
    ("AWS::SageMaker::Endpoint", "aws.ml.Sagemaker"),
    ("AWS::SageMaker::Pipeline", "aws.ml.SagemakerTrainingJob"),
    ("AWS::SageMaker::Mlflow", "onprem.mlops.Mlflow"),
    ("AWS::SageMaker::", "aws.ml.SagemakerModel"),
    ("AWS::BedrockAgentCore::", "aws.ml.Bedrock"),
    ("AWS::CodePipeline::", "aws.devtools.Codepipeline"),
    ("AWS::CodeBuild::", "aws.devtools.Codebuild"),
    ("AWS::Events::EventBus", "aws.integration.EventbridgeCustomEventBusResource"),
    ("AWS::Events::", "aws.integration.EventbridgeRule"),
    ("AWS::XRay::", "aws.devtools.XRay"),
    ("AWS::ApplicationAutoScaling::", "aws.compute.ApplicationAutoScaling"),
    ("AWS::ECR::", "aws.compute.ECR"),
    ("", "aws.general.General"),
)


def _short(resource_type: str) -> str:
    return " ".join(resource_type.split("::")[1:]) if resource_type.startswith("AWS::") else resource_type


def render_detail(arch, output: Path, *, title: str) -> Path:
    """The detailed graph: a box per stack, a node per top-level construct, an arrow per reference."""
    nodes: dict = {}
    boxes: dict[str, str] = {}
    with Canvas(
        output,
        title=f'<<font point-size="28">{html.escape(title)}</font><br/> >',
        direction="LR",
        graph={"nodesep": "0.25", "ranksep": "1.6", "splines": "spline"},
    ):
        for c in arch.clusters:
            with cluster(f"{c.name}\n{c.description}".strip(), color="#F7F9FB", size=18, bold=True) as box:
                for name, types in c.components.items():
                    more = f" (+{len(types) - 1})" if len(types) > 1 else ""
                    path = next(i for prefix, i in DETAIL_ICONS if types[0].startswith(prefix))
                    nodes[(c.name, name)] = node(f"{c.name}/{name}", f"{name}\n{_short(types[0])}{more}", path, size=40)
            boxes[c.name] = box.name
        for source, target in sorted(arch.edges):
            edge(nodes[source], nodes[target])
        pipeline = next(
            (
                n
                for (stack, _), n in nodes.items()
                if arch.deploys and stack == arch.clusters[0].name and n.nodeid.endswith("/Pipeline")
            ),
            None,
        )
        for name in arch.deploys if pipeline is not None else []:
            first = next(n for (stack, _), n in nodes.items() if stack == name)
            edge(pipeline, first, kind="promotion", lhead=boxes[name])
    return Path(output)
