"""The system picture's model: the parts a person reasons about and the flows between them, read from the assembly.

`PARTS` is the reviewed mapping from resource types (and, where one type plays several roles, the construct that
holds it) to parts; `FLOWS` names the flows worth drawing. A part is drawn only for a resource present in the
assembly; a flow only where the assembly connects its two parts (a reference, or a mention of the other's name,
from the resources or the roles they run as: `Assembly.connected`). The environment asked for is drawn in full;
another environment shows the parts it alone has (and their neighbours), e.g. the one that trains; the tooling
account shows the delivery pipeline stage by stage and what deploys where. Everything else (roles, log groups,
alarms, security groups, keys...) is counted in the legend.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tools.diagram.graph import IMAGE, Assembly, DiagramError, Key, Resource, Stack

REQUEST, LIFECYCLE, PROMOTION = "request", "lifecycle", "promotion"
# The event SageMaker sends when a model package's approval changes (the registry's approval rules match it):
# https://docs.aws.amazon.com/sagemaker/latest/dg/model-registry-staging-construct-event-bridge.html
APPROVAL_EVENT = "SageMaker Model Package State Change"


def _prop(name: str) -> Callable[[Resource, Assembly], str]:
    return lambda r, _: v if isinstance(v := r.properties.get(name), str) else ""


def _endpoint(r: Resource, a: Assembly) -> str:
    configs = [a.resources[k] for k in a.references(r) if a.resources[k].type == "AWS::SageMaker::EndpointConfig"]
    variants = configs[0].properties.get("ProductionVariants", [{}]) if configs else [{}]
    scaling = variants[0].get("ManagedInstanceScaling", {})
    size = f" × {scaling['MinInstanceCount']}–{scaling['MaxInstanceCount']}" if "MaxInstanceCount" in scaling else ""
    return f"{r.properties.get('EndpointName', '')}\n{variants[0].get('InstanceType', '')}{size}".strip()


def _image(r: Resource, a: Assembly) -> str:
    dockerfile = a.stacks[r.stack].images[r.logical_id.removeprefix("image/")] / "Dockerfile"
    lines = dockerfile.read_text().splitlines() if dockerfile.exists() else []
    base = [line.split()[1] for line in lines if line.upper().startswith("FROM ") and len(line.split()) > 1]
    return f"FROM {base[-1]}" if base else ""


def _mlflow(r: Resource, a: Assembly) -> str:
    kind = "App" if r.type.endswith("MlflowApp") else "tracking server"
    return f"{kind} {r.properties.get('Name') or r.properties.get('TrackingServerName', '')}".strip()


def _is_approval_rule(r: Resource) -> bool:
    return APPROVAL_EVENT in json.dumps(r.properties.get("EventPattern", {}))


def _approval(r: Resource, a: Assembly) -> str:
    statuses = r.properties.get("EventPattern", {}).get("detail", {}).get("ModelApprovalStatus", [])
    return f"model package {' or '.join(map(str, statuses))}" if statuses else "model package state change"


def _registry(r: Resource, a: Assembly) -> str:
    card = any(
        x.type == "AWS::SageMaker::ModelCard" and (x.stack, x.construct) == (r.stack, r.construct)
        for x in a.resources.values()
    )
    return r.properties.get("ModelPackageGroupName", "") + ("\n+ model card" if card else "")


@dataclass(frozen=True)
class PartRule:
    kind: str
    title: str
    icon: str  # a node class of the `diagrams` library: "aws.ml.Bedrock"
    types: tuple[str, ...]
    construct: str = "*"  # pattern of the stack's top-level construct id, where a type plays several roles
    tooling: bool = False  # found in the top-level stacks (the delivery pipeline's account), not in an environment
    where: Callable[[Resource], bool] = lambda r: True
    detail: Callable[[Resource, Assembly], str] = lambda r, a: ""


# The reviewed mapping. Order matters: a resource becomes the first part it matches.
PARTS: tuple[PartRule, ...] = (
    PartRule(
        "clinician",
        "Clinician's app",
        "aws.general.Users",
        ("AWS::BedrockAgentCore::RuntimeEndpoint",),
        detail=lambda r, a: f"calls endpoint '{r.properties.get('Name', '')}'",
    ),
    PartRule(
        "agent",
        "AgentCore runtime",
        "aws.ml.Bedrock",
        ("AWS::BedrockAgentCore::Runtime",),
        detail=lambda r, a: f"Strands agent\n{r.properties.get('AgentRuntimeName', '')}",
    ),
    PartRule("endpoint", "SageMaker endpoint", "aws.ml.Sagemaker", ("AWS::SageMaker::Endpoint",), detail=_endpoint),
    # An adapter component names its base in Specification.BaseInferenceComponentName ("only ... to create an adapter
    # inference component": https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_InferenceComponentSpecification.html,
    # in CloudFormation: aws-properties-sagemaker-inferencecomponent-inferencecomponentspecification.html).
    PartRule(
        "adapter_component",
        "LoRA adapter component",
        "aws.ml.SagemakerModel",
        ("AWS::SageMaker::InferenceComponent",),
        where=lambda r: "BaseInferenceComponentName" in r.properties.get("Specification", {}),
        detail=_prop("InferenceComponentName"),
    ),
    PartRule(
        "base_component",
        "Base component (SGLang)",
        "aws.ml.SagemakerModel",
        ("AWS::SageMaker::InferenceComponent",),
        detail=_prop("InferenceComponentName"),
    ),
    PartRule("image", "Container image (ECR)", "aws.compute.ECR", (IMAGE,), detail=_image),
    PartRule(
        "patients",
        "Patient table",
        "aws.database.Dynamodb",
        ("AWS::DynamoDB::Table",),
        "Patients*",
        detail=_prop("TableName"),
    ),
    PartRule("reports", "Reports bucket", "aws.storage.S3", ("AWS::S3::Bucket",), "Reports*"),
    PartRule("datasets", "Datasets bucket", "aws.storage.S3", ("AWS::S3::Bucket",), "Datasets*"),
    PartRule("artifacts", "Artifacts bucket", "aws.storage.S3", ("AWS::S3::Bucket",), "Artifacts*"),
    PartRule(
        "mlflow",
        "SageMaker MLflow",
        "onprem.mlops.Mlflow",
        ("AWS::SageMaker::MlflowApp", "AWS::SageMaker::MlflowTrackingServer"),
        detail=_mlflow,
    ),
    PartRule(
        "pipeline",
        "Training pipeline",
        "aws.ml.SagemakerTrainingJob",
        ("AWS::SageMaker::Pipeline",),
        detail=_prop("PipelineName"),
    ),
    PartRule(
        "registry",
        "Model registry",
        "aws.ml.SagemakerModel",
        ("AWS::SageMaker::ModelPackageGroup",),
        detail=_registry,
    ),
    PartRule(
        "approval_rule",
        "On approval",
        "aws.integration.EventbridgeRule",
        ("AWS::Events::Rule",),
        where=_is_approval_rule,
        detail=_approval,
    ),
    PartRule(
        "event_bus",
        "Event bus",
        "aws.integration.EventbridgeCustomEventBusResource",
        ("AWS::Events::EventBus",),
        tooling=True,
        detail=_prop("Name"),
    ),
    PartRule(
        "pipeline_trigger",
        "On approval",
        "aws.integration.EventbridgeRule",
        ("AWS::Events::Rule",),
        tooling=True,
        where=_is_approval_rule,  # the forwarded event keeps its detail-type
        detail=lambda r, a: "starts the delivery pipeline",
    ),
    PartRule(
        "delivery", "Delivery pipeline", "aws.devtools.Codepipeline", ("AWS::CodePipeline::Pipeline",), tooling=True
    ),
)


@dataclass(frozen=True)
class FlowRule:
    source: str  # part kinds
    target: str
    label: str
    kind: str  # REQUEST, LIFECYCLE or PROMOTION
    first_of: str = ""  # flows from one part sharing this name: only the first the assembly shows is drawn


FLOWS: tuple[FlowRule, ...] = (
    FlowRule("clinician", "agent", "1 question / answer", REQUEST),
    FlowRule("agent", "adapter_component", "2 chat completion", REQUEST, first_of="model"),
    FlowRule("agent", "base_component", "2 chat completion", REQUEST, first_of="model"),
    FlowRule("agent", "endpoint", "2 chat completion", REQUEST, first_of="model"),
    FlowRule("agent", "patients", "3 get_patient_record", REQUEST),
    FlowRule("agent", "reports", "4 upload_diagnostic_report", REQUEST),
    FlowRule("agent", "mlflow", "traces", REQUEST),
    FlowRule("endpoint", "base_component", "", REQUEST),
    FlowRule("adapter_component", "base_component", "LoRA on", REQUEST),
    FlowRule("image", "base_component", "image", LIFECYCLE),
    FlowRule("artifacts", "base_component", "base weights", LIFECYCLE),
    FlowRule("artifacts", "adapter_component", "adapter", LIFECYCLE),
    FlowRule("datasets", "pipeline", "training data", LIFECYCLE),
    FlowRule("image", "pipeline", "image", LIFECYCLE),
    FlowRule("pipeline", "mlflow", "runs, metrics", LIFECYCLE),
    FlowRule("pipeline", "artifacts", "adapter", LIFECYCLE),
    FlowRule("pipeline", "registry", "model package (pending approval)", LIFECYCLE),
    FlowRule("registry", "approval_rule", "approved", LIFECYCLE),
    FlowRule("approval_rule", "event_bus", "to the tooling account", PROMOTION),
    FlowRule("event_bus", "pipeline_trigger", "", PROMOTION),
    FlowRule("pipeline_trigger", "delivery", "start", PROMOTION),
)


@dataclass(frozen=True)
class Step:
    """A step inside a part: a training pipeline step or a delivery pipeline stage."""

    id: str
    label: str
    icon: str
    deploys: str = ""  # a delivery stage: the environment (stage) it deploys


@dataclass
class Part:
    id: str  # stable and unique: "Prod.agent", "Prod.base_component.llama32-3b"
    kind: str
    stage: str  # "" for the tooling account
    title: str
    detail: str
    icon: str
    resources: tuple[Key, ...]  # what it is drawn from
    steps: list[Step] = field(default_factory=list)
    step_edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from step id, to step id, label)


@dataclass(frozen=True)
class Flow:
    source: str  # part ids (or, for a promotion, a delivery step id and an account's stacks part id)
    target: str
    label: str
    kind: str


@dataclass(frozen=True)
class Account:
    stage: str  # "" for the tooling account
    account: str
    region: str


@dataclass
class SystemView:
    stage: str  # the environment drawn in full
    accounts: list[Account]  # the tooling account first, then the environments in the app's order
    parts: list[Part]
    flows: list[Flow]
    plumbing: dict[str, dict[str, int]]  # by account (stage, "" for tooling): what is not drawn, by category


# What the legend summarises, by resource type prefix; the rest is "other".
PLUMBING: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("IAM roles and policies", ("AWS::IAM::",)),
    ("log groups, log and trace deliveries", ("AWS::Logs::", "AWS::XRay::")),
    ("alarms, dashboards, alarm topics", ("AWS::CloudWatch::", "AWS::SNS::")),
    ("VPC, subnets, VPC endpoints, security groups", ("AWS::EC2::",)),
    ("KMS keys", ("AWS::KMS::",)),
    ("bucket policies, access-log buckets", ("AWS::S3::",)),
    ("build projects", ("AWS::CodeBuild::",)),
    ("helper functions, their queues and tables", ("Custom::", "AWS::Lambda::", "AWS::SQS::", "AWS::DynamoDB::")),
)


def _plumbing_type(resource_type: str) -> bool:
    return any(resource_type.startswith(prefixes) for _, prefixes in PLUMBING)


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _match(rule: PartRule, r: Resource, tooling: bool) -> bool:
    return (
        r.type in rule.types
        and rule.tooling == tooling
        and fnmatch.fnmatchcase(r.construct, rule.construct)
        and rule.where(r)
    )


def _parts_of(assembly: Assembly, stage: str) -> list[Part]:
    """Every part of one environment (or, for "", of the tooling account), in the order of PARTS."""
    stacks = [s.name for s in assembly.stacks.values() if s.stage == stage]
    resources = assembly.of_stacks(stacks)
    claimed: dict[Key, PartRule] = {}
    for r in resources:
        rule = next((rule for rule in PARTS if _match(rule, r, tooling=stage == "")), None)
        if rule is not None:
            claimed[r.key] = rule
    # A part also holds what its construct holds, or it references, that is neither another part nor plumbing (the
    # registry's model card, a component's model and scaling, the endpoint's config); where a construct holds
    # several parts, the one at its root does.
    holder: dict[tuple[str, str], Key] = {}
    for key in sorted(claimed, key=lambda k: len(assembly.resources[k].path)):
        holder.setdefault((key[0], assembly.resources[key].construct), key)
    parts = []
    for rule in PARTS:
        mine = [r for r in resources if claimed.get(r.key) is rule]
        for r in mine:
            used = assembly.references(r)
            members = [
                m.key
                for m in resources
                if m.key not in claimed
                and (holder.get((m.stack, m.construct)) == r.key or m.key in used)
                and not _plumbing_type(m.type)
            ]
            part = Part(
                id=".".join(
                    filter(None, (stage or "Tooling", rule.kind, _label(r.construct) if len(mine) > 1 else ""))
                ),
                kind=rule.kind,
                stage=stage,
                title=rule.title,
                detail=rule.detail(r, assembly),
                icon=rule.icon,
                resources=(r.key, *members),
            )
            _add_steps(assembly, r, part)
            parts.append(part)
    return parts


def _add_steps(assembly: Assembly, r: Resource, part: Part) -> None:
    if r.type == "AWS::SageMaker::Pipeline":
        _pipeline_steps(r, part)
    elif r.type == "AWS::CodePipeline::Pipeline":
        _delivery_stages(assembly, r, part)


STEP_ICONS = {
    "Processing": "aws.ml.Sagemaker",
    "Training": "aws.ml.SagemakerTrainingJob",
    "Condition": "aws.general.General",
    "RegisterModel": "aws.ml.SagemakerModel",
    "Model": "aws.ml.SagemakerModel",
}


def _definition(r: Resource) -> dict | None:
    """A SageMaker pipeline's definition, when the template holds it (a string or an Fn::Sub of one)."""
    body = r.properties.get("PipelineDefinition", {}).get("PipelineDefinitionBody")
    text = body.get("Fn::Sub") if isinstance(body, dict) else body
    text = text[0] if isinstance(text, list) else text
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DiagramError(f"{r.stack}/{r.path}: the pipeline definition is not JSON ({e})") from e


def _pipeline_steps(r: Resource, part: Part) -> None:
    """The steps of a training pipeline and what each waits for (the transitive reduction: one arrow per hand-off)."""
    definition = _definition(r)
    if definition is None:
        return
    steps: dict[str, dict] = {}
    after: dict[str, set[str]] = {}
    pending: list[tuple[dict, set[str]]] = [(s, set()) for s in definition.get("Steps", [])]
    while pending:
        step, parents = pending.pop(0)
        name = step["Name"]
        steps[name] = step
        text = json.dumps(step.get("Arguments", {}))
        uses = set(re.findall(r'"Steps\.([A-Za-z0-9_-]+)\.', text)) | set(step.get("DependsOn") or []) | parents
        after[name] = uses - {name}
        for branch in ("IfSteps", "ElseSteps"):
            pending += [(s, {name}) for s in step.get("Arguments", {}).get(branch, [])]
    shown = [n for n in steps if steps[n]["Type"] != "Fail"]  # the gate's failure branch only stops the run

    def upstream(name: str) -> set[str]:
        found: set[str] = set()
        for parent in after.get(name, set()):
            found |= {parent} | upstream(parent)
        return found

    for name in shown:
        direct = {p for p in after[name] if p in steps and not any(p in upstream(q) for q in after[name] - {p})}
        part.step_edges += [(f"{part.id}.{_label(p)}", f"{part.id}.{_label(name)}", "") for p in sorted(direct)]
    part.steps = [
        Step(f"{part.id}.{_label(n)}", f"{n}\n{steps[n]['Type']}", STEP_ICONS.get(steps[n]["Type"], "aws.ml.Sagemaker"))
        for n in shown
    ]


def _summary(actions: list[dict]) -> str:
    """What a delivery stage does, in order: "AuditDiff → manual approval → deploy 5 stacks → HealthCheck"."""
    stacks = {a.get("Configuration", {}).get("StackName") for a in actions} - {None}
    words: list[str] = []
    for a in sorted(actions, key=lambda a: a.get("RunOrder", 1)):
        category = a["ActionTypeId"]["Category"]
        word = {"Deploy": f"deploy {len(stacks)} stacks", "Approval": "manual approval"}.get(category, a["Name"])
        words += [word] if word not in words else []
    return " → ".join(words)


def _delivery_stages(assembly: Assembly, r: Resource, part: Part) -> None:
    """The delivery pipeline, stage by stage: the source, the build stages as one, then one step per environment."""
    by_stack_name = {s.stack_name: s.stage for s in assembly.stacks.values()}
    steps: list[Step] = []
    for stage in r.properties.get("Stages", []):
        actions = stage.get("Actions", [])
        targets = sorted(
            {by_stack_name.get(a.get("Configuration", {}).get("StackName", ""), "") for a in actions} - {""}
        )
        id = f"{part.id}.{_label(stage['Name'])}"
        if any(a["ActionTypeId"]["Category"] == "Source" for a in actions):
            repo = " ".join(a.get("Configuration", {}).get("FullRepositoryId", "") for a in actions)
            steps.append(Step(id, f"Source\n{repo}".strip(), "onprem.vcs.Git"))
        elif targets:
            steps.append(Step(id, f"{stage['Name']}\n{_summary(actions)}", "aws.management.Cloudformation", targets[0]))
        elif steps and steps[-1].icon == "aws.devtools.Codebuild":  # consecutive build stages: one step
            steps[-1] = Step(steps[-1].id, f"{steps[-1].label} · {_summary(actions)}", steps[-1].icon)
        else:
            steps.append(Step(id, f"Build\n{_summary(actions)}", "aws.devtools.Codebuild"))
    part.steps = steps
    part.step_edges = [(a.id, b.id, "") for a, b in zip(steps, steps[1:], strict=False)]


def _connects(assembly: Assembly, source: Part, target: Part) -> bool:
    """Whether the assembly connects two parts: in one environment, or between an environment and the tooling account
    (names repeat across environments, so a name never links two environments)."""
    if source.stage != target.stage and "" not in (source.stage, target.stage):
        return False
    return assembly.connected(set(source.resources), set(target.resources))


def _flows(assembly: Assembly, parts: list[Part]) -> list[Flow]:
    flows: list[Flow] = []
    taken: set[tuple[str, str]] = set()  # (source part, first_of)
    for rule in FLOWS:
        for source in (p for p in parts if p.kind == rule.source):
            if (source.id, rule.first_of) in taken:
                continue
            for target in (p for p in parts if p.kind == rule.target):
                if _connects(assembly, source, target):
                    flows.append(Flow(source.id, target.id, rule.label, rule.kind))
                    taken |= {(source.id, rule.first_of)} if rule.first_of else set()
    return flows


def _neighbours(assembly: Assembly, own: list[Part], others: list[Part]) -> list[Part]:
    kinds = {(r.source, r.target) for r in FLOWS} | {(r.target, r.source) for r in FLOWS}
    return [
        q
        for q in others
        if any((p.kind, q.kind) in kinds and assembly.connected(set(p.resources), set(q.resources)) for p in own)
    ]


def _stacks_part(assembly: Assembly, stage: str) -> Part:
    names = [s.name for s in assembly.stacks.values() if s.stage == stage]
    short = " · ".join(n.removeprefix(f"{stage}/") for n in names)
    return Part(
        f"{stage}.stacks",
        "stacks",
        stage,
        f"{stage} stacks",
        short,
        "aws.management.CloudformationStack",
        tuple((n, "") for n in names),
    )


def _plumbing(assembly: Assembly, stacks: list[str], parts: list[Part]) -> dict[str, int]:
    drawn = {k for p in parts for k in p.resources}
    counts: Counter[str] = Counter()
    for r in assembly.of_stacks(stacks):
        if r.key not in drawn:
            counts[next((c for c, prefixes in PLUMBING if r.type.startswith(prefixes)), "other")] += 1
    return dict(sorted(counts.items(), key=lambda c: (-c[1], c[0])))


def read_system(assembly: Assembly, stage: str) -> SystemView:
    """The system picture of one environment, with the tooling account and what other environments alone hold."""
    if stage not in assembly.stages:
        raise DiagramError(
            f"stage {stage!r} is not in the assembly; synthesized stages: {', '.join(assembly.stages) or 'none'}"
        )
    by_stage = {s: _parts_of(assembly, s) for s in assembly.stages}
    parts = _parts_of(assembly, "") + by_stage[stage] + [_stacks_part(assembly, stage)]
    kinds = {p.kind for p in by_stage[stage]}
    for other in (s for s in assembly.stages if s != stage):
        own = [p for p in by_stage[other] if p.kind not in kinds]
        near = _neighbours(assembly, own, [p for p in by_stage[other] if p not in own])
        parts += [p for p in by_stage[other] if p in own or p in near] + [_stacks_part(assembly, other)]
    flows = _flows(assembly, parts)
    flows += [Flow(step.id, f"{step.deploys}.stacks", "", PROMOTION) for p in parts for step in p.steps if step.deploys]
    first: dict[str, Stack] = {}  # an account's first stack says where it is
    for s in assembly.stacks.values():
        first.setdefault(s.stage, s)
    accounts = [Account(s, first[s].account, first[s].region) for s in ["", *assembly.stages] if s in first]
    plumbing = {
        s: _plumbing(assembly, [x.name for x in assembly.stacks.values() if x.stage == s], parts) for s in ("", stage)
    }
    return SystemView(stage, accounts, parts, flows, plumbing)
