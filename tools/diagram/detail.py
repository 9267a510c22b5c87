"""The detailed graph: every top-level construct of every stack of one environment, and every reference between them.

One cluster per stack (plus the delivery pipeline's stack), one node per top-level construct (named by its main
resource type and how many resources it holds), an edge wherever one construct references another (`Ref`,
`Fn::GetAtt`, `Fn::Sub`, and across stacks `Fn::GetStackOutput` / `Fn::ImportValue`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.diagram.graph import IMAGE, Assembly, DiagramError, Resource

# CDK plumbing, not architecture.
HIDDEN = ("AWS::CDK::Metadata", IMAGE)
HIDDEN_CONSTRUCTS = ("Custom::", "CDKMetadata", "BootstrapVersion", "CheckBootstrapVersion")
# Which resource names a construct: its own "<id>/Resource", else the first of these, else one that is not supporting.
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


def _rank(r: Resource) -> tuple[bool, int, bool]:
    primary = next((i for i, prefix in enumerate(PRIMARY) if r.type.startswith(prefix)), len(PRIMARY))
    return (r.path != f"{r.construct}/Resource", primary, r.type.startswith(SUPPORTING))


@dataclass
class Cluster:
    name: str  # the stack's display name: "Prod/Data"
    description: str
    depends_on: list[str]
    components: dict[str, list[str]] = field(default_factory=dict)  # construct id -> resource types (main first)


@dataclass
class Architecture:
    clusters: list[Cluster]  # in deployment order (the delivery pipeline first)
    edges: set[tuple[tuple[str, str], tuple[str, str]]]  # (stack, construct) uses (stack, construct)
    deploys: list[str]  # the stacks the delivery pipeline deploys


def read_architecture(assembly: Assembly, stage: str, *, delivery: bool = True) -> Architecture:
    if stage not in assembly.stages:
        raise DiagramError(
            f"stage {stage!r} is not in the assembly; synthesized stages: {', '.join(assembly.stages) or 'none'}"
        )
    stacks = [s for s in assembly.stacks.values() if s.stage == stage or (delivery and s.stage == "")]
    names = {s.name for s in stacks}
    shown = [
        r for r in assembly.of_stacks(names) if r.type not in HIDDEN and not r.construct.startswith(HIDDEN_CONSTRUCTS)
    ]
    clusters = {
        s.name: Cluster(s.name, s.template.get("Description", ""), [d for d in s.depends_on if d in names])
        for s in stacks
    }
    grouped: dict[tuple[str, str], list[Resource]] = {}
    for r in shown:  # constructs in template order, each one's resources main first
        grouped.setdefault((r.stack, r.construct), []).append(r)
    for (stack, construct), resources in grouped.items():
        clusters[stack].components[construct] = [r.type for r in sorted(resources, key=_rank)]
    owner = {r.key: (r.stack, r.construct) for r in shown}
    edges = {
        (owner[r.key], owner[ref])
        for r in shown
        for ref in assembly.references(r)
        if ref in owner and owner[ref] != owner[r.key]
    }
    depth: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((level(d) for d in clusters[name].depends_on), default=-1)
        return depth[name]

    order = sorted(clusters, key=lambda n: (assembly.stacks[n].stage != "", level(n), n))
    tooling = [n for n in order if assembly.stacks[n].stage == ""]
    return Architecture(
        clusters=[clusters[n] for n in order],
        edges=edges,
        deploys=[n for n in order if n not in tooling] if tooling else [],
    )
