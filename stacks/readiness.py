"""Deploy readiness: the services' own rules that no schema expresses, checked at synth (a cdk-nag ``NagPack``).

cfn-lint and botocore check shapes; each rule here encodes one constraint a service enforces across fields,
resources, accounts or instance types, and cites the AWS page it comes from. The rules read the synthesized
templates (what CloudFormation will receive, overrides and cross-stack references included), and parse the
JSON inside them (the pipeline definition, model card content). A finding fails synth like cdk-nag's packs and
can be acknowledged only in ``stacks/compliance.py``, with a reason.

``python -m stacks.readiness`` (``make rules``) lists the rules with their references, from ``RULES`` below.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, cast

import jsii
from aws_cdk import CfnResource, Stack, Stage
from cdk_nag import IApplyRule, NagMessageLevel, NagPack, NagRuleCompliance
from constructs import IConstruct

from stacks.constructs.model_registry import MODEL_PACKAGE_CARD_DOC, MODEL_PACKAGE_CARD_SCHEMA
from stacks.facts import (
    AGENTCORE_AZ_IDS,
    AGENTCORE_MIN_AZS,
    AGENTCORE_RUNTIME_BLOCKED,
    AGENTCORE_RUNTIMES_DOC,
    AGENTCORE_VPC_DOC,
    EC2_DOC,
    EC2_INTERFACE_CONDITION_KEYS,
    JUMPSTART_EULA_DOC,
    JUMPSTART_GATED_BUCKET_PREFIX,
    LAMBDA_PYTHON_DOC,
    LAMBDA_RUNTIME_BLOCKED,
    MLFLOW_APP_ACTIONS,
    RUNTIMES_CHECKED,
    has_instance_storage,
)

PACK = "DeployReadiness"

# --- reading the synthesized templates ------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _load(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


_PATHS: dict[tuple[int, str], Path] = {}  # (id(stack), outdir) -> its template: jsii calls are the cost here


def _template_path(stack: Stack) -> Path:
    stage = Stage.of(stack)
    outdir = stage.outdir if stage else "."
    key = (id(stack), outdir)
    if key not in _PATHS:
        _PATHS[key] = Path(outdir) / stack.template_file
    return _PATHS[key]


def _template(stack: Stack) -> dict[str, Any]:
    path = _template_path(stack)
    stat = path.stat()
    return _load(str(path), stat.st_mtime_ns, stat.st_size)


@dataclass
class Resource:
    """One resource as CloudFormation receives it, with the templates of its stage for references."""

    logical_id: str
    body: dict[str, Any]
    stack: Stack
    templates: dict[str, dict[str, Any]]  # stack name -> template, every stack of the stage

    @property
    def type(self) -> str:
        return self.body["Type"]

    @property
    def props(self) -> dict[str, Any]:
        return self.body.get("Properties", {})

    @property
    def region(self) -> str:
        return self.stack.region

    def resources(self, type_: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(stack name, logical id, resource) of every resource of ``type_`` in this stage."""
        for name, template in self.templates.items():
            for logical_id, r in template.get("Resources", {}).items():
                if r["Type"] == type_:
                    yield name, logical_id, r

    def target(self, value: Any, stack_name: str | None = None) -> tuple[str, str, dict[str, Any]] | None:
        """The resource a Ref / Fn::GetAtt / Fn::GetStackOutput / Fn::ImportValue points at, if in this stage."""
        stack_name = stack_name or self.stack.stack_name
        if not isinstance(value, dict) or len(value) != 1:
            return None
        (fn, arg), template = next(iter(value.items())), self.templates.get(stack_name, {})
        if fn in ("Ref", "Fn::GetAtt"):
            logical_id = arg if fn == "Ref" else arg[0]
            found = template.get("Resources", {}).get(logical_id)
            return (stack_name, logical_id, found) if found else None
        if fn == "Fn::GetStackOutput":
            output = self.templates.get(arg["StackName"], {}).get("Outputs", {}).get(arg["OutputName"])
            return self.target(output["Value"], arg["StackName"]) if output else None
        if fn == "Fn::ImportValue" and isinstance(arg, str):
            for name, t in self.templates.items():
                for output in t.get("Outputs", {}).values():
                    if output.get("Export", {}).get("Name") == arg:
                        return self.target(output["Value"], name)
        return None


_STAGE_PATHS: dict[tuple[int, str], dict[str, Path]] = {}


def _stage_templates(stack: Stack) -> dict[str, dict[str, Any]]:
    """Every synthesized template of the stack's stage, by stack name (the paths are cached per stage)."""
    stage = Stage.of(stack)
    if stage is None:
        return {stack.stack_name: _template(stack)}
    key = (id(stage), stage.outdir)
    if key not in _STAGE_PATHS:
        _STAGE_PATHS[key] = {
            c.stack_name: _template_path(c)
            for c in stage.node.find_all()
            if isinstance(c, Stack) and Stage.of(c) is stage
        }
    return {
        name: _load(str(p), (st := p.stat()).st_mtime_ns, st.st_size)
        for name, p in _STAGE_PATHS[key].items()
        if p.is_file()
    }


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _references(value: Any) -> Iterator[dict[str, Any]]:
    """Every Fn::GetAtt inside a value."""
    if isinstance(value, dict):
        if "Fn::GetAtt" in value:
            yield value
        for v in value.values():
            yield from _references(v)
    elif isinstance(value, list):
        for v in value:
            yield from _references(v)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


# --- the pipeline definition ------------------------------------------------------------------------


def pipeline_definition(r: Resource) -> dict[str, Any]:
    """The pipeline definition JSON (``${Name}`` CloudFormation variables left as text)."""
    body = r.props.get("PipelineDefinition", {}).get("PipelineDefinitionBody")
    if isinstance(body, dict) and "Fn::Sub" in body:
        sub = body["Fn::Sub"]
        body = sub[0] if isinstance(sub, list) else sub
    if not isinstance(body, str):
        return {}
    return json.loads(body.replace("${!", "${"))


def pipeline_steps(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every step, those inside condition branches included."""
    for step in definition.get("Steps", []):
        yield step
        if step.get("Type") == "Condition":
            for branch in ("IfSteps", "ElseSteps"):
                yield from pipeline_steps({"Steps": step["Arguments"].get(branch, [])})


def _value(value: Any, definition: dict[str, Any]) -> Any:
    """A pipeline value as the first execution sees it (parameters at their defaults)."""
    if isinstance(value, dict) and isinstance(value.get("Get"), str) and value["Get"].startswith("Parameters."):
        name = value["Get"].removeprefix("Parameters.")
        return next((p.get("DefaultValue") for p in definition.get("Parameters", []) if p["Name"] == name), None)
    return value


def _gated(uri: Any) -> bool:
    return isinstance(uri, str) and uri.startswith(f"s3://{JUMPSTART_GATED_BUCKET_PREFIX}")


# --- the rules ---------------------------------------------------------------------------------------

Check = Callable[[Resource], list[str]]


@dataclass(frozen=True)
class Rule:
    name: str  # the rule id is DeployReadiness-<name>
    resource_types: tuple[str, ...]  # "*": every resource
    info: str
    doc: str
    check: Check

    @property
    def id(self) -> str:
        return f"{PACK}-{self.name}"


def _job_volume_keys(r: Resource) -> list[str]:
    d, found = pipeline_definition(r), []
    for step in pipeline_steps(d):
        args = step.get("Arguments", {})
        config = args.get("ResourceConfig") or args.get("ProcessingResources", {}).get("ClusterConfig") or {}
        instance_type = _value(config.get("InstanceType"), d)
        if config.get("VolumeKmsKeyId") and isinstance(instance_type, str) and has_instance_storage(instance_type):
            found.append(f"step {step['Name']}: VolumeKmsKeyId on {instance_type}, which has local NVMe storage")
    return found


def _endpoint_key(r: Resource) -> list[str]:
    if not r.props.get("KmsKeyId"):
        return []
    return [
        f"variant {v.get('VariantName')}: KmsKeyId with {v['InstanceType']}, which has local NVMe storage"
        for v in r.props.get("ProductionVariants", [])
        if isinstance(v.get("InstanceType"), str) and has_instance_storage(v["InstanceType"])
    ]


def _model_eula(r: Resource) -> list[str]:
    found = []
    for container in [r.props.get("PrimaryContainer", {}), *r.props.get("Containers", [])]:
        source = container.get("ModelDataSource", {}).get("S3DataSource", {})
        if _gated(source.get("S3Uri")) and source.get("ModelAccessConfig", {}).get("AcceptEula") is not True:
            found.append(f"{source['S3Uri']} is licence-gated: ModelAccessConfig.AcceptEula must be true")
        if _gated(container.get("ModelDataUrl")):
            found.append(f"ModelDataUrl {container['ModelDataUrl']} is licence-gated: use ModelDataSource + AcceptEula")
    return found


def _processing_gated(r: Resource) -> list[str]:
    d = pipeline_definition(r)
    return [
        f"step {step['Name']}: processing input {i.get('InputName')} reads {uri}, which needs a licence acceptance "
        "a processing input cannot carry"
        for step in pipeline_steps(d)
        if step.get("Type") == "Processing"
        for i in step["Arguments"].get("ProcessingInputs", [])
        if _gated(uri := _value(i.get("S3Input", {}).get("S3Uri"), d))
    ]


def _training_gated(r: Resource) -> list[str]:
    d = pipeline_definition(r)
    return [
        f"step {step['Name']}: channel {c.get('ChannelName')} reads {uri} without ModelAccessConfig.AcceptEula"
        for step in pipeline_steps(d)
        if step.get("Type") == "Training"
        for c in step["Arguments"].get("InputDataConfig", [])
        if _gated(uri := _value((s3 := c.get("DataSource", {}).get("S3DataSource", {})).get("S3Uri"), d))
        and s3.get("ModelAccessConfig", {}).get("AcceptEula") is not True
    ]


def _card_problems(content: Any, where: str) -> list[str]:
    import jsonschema

    if not isinstance(content, str):
        return []
    try:
        card = json.loads(content)
    except json.JSONDecodeError as e:
        return [f"{where}: ModelCardContent is not JSON ({e})"]
    validator = jsonschema.Draft7Validator(MODEL_PACKAGE_CARD_SCHEMA)
    return [
        f"{where}: {'/'.join(map(str, e.absolute_path)) or 'card'}: {e.message}"
        for e in sorted(validator.iter_errors(card), key=lambda e: list(map(str, e.absolute_path)))
    ]


def _package_card(r: Resource) -> list[str]:
    if r.type == "AWS::SageMaker::ModelPackage":
        return _card_problems(r.props.get("ModelCard", {}).get("ModelCardContent"), "model package")
    return [
        p
        for step in pipeline_steps(pipeline_definition(r))
        if step.get("Type") == "RegisterModel"
        for p in _card_problems(step["Arguments"].get("ModelCard", {}).get("ModelCardContent"), f"step {step['Name']}")
    ]


def _isolated_vpcs(r: Resource) -> list[str]:
    """VPCs of the stage with no internet or NAT gateway: their workloads reach AWS only through endpoints."""
    vpcs = [logical_id for _, logical_id, _ in r.resources("AWS::EC2::VPC")]
    routed = any(r.resources("AWS::EC2::InternetGateway")) or any(r.resources("AWS::EC2::NatGateway"))
    return [] if routed else vpcs


def _mlflow_app_route(r: Resource) -> list[str]:
    return [
        f"the environment's workloads run in the isolated VPC {vpc}: an MLflow App is reached at "
        f"mlflow.sagemaker.{r.region}.app.aws and has no PrivateLink service; use a tracking server "
        "(mlflow.kind: tracking_server) with the aws.sagemaker.<region>.experiments endpoint"
        for vpc in _isolated_vpcs(r)
    ]


def _tracking_server_endpoint(r: Resource) -> list[str]:
    if not _isolated_vpcs(r):
        return []
    names = [str(e.get("Properties", {}).get("ServiceName")) for _, _, e in r.resources("AWS::EC2::VPCEndpoint")]
    if any(n.endswith(f"sagemaker.{r.region}.experiments") for n in names):
        return []
    return [f"no interface endpoint aws.sagemaker.{r.region}.experiments in the isolated VPC: jobs cannot reach it"]


def _runtime_subnets(r: Resource) -> list[tuple[str, dict[str, Any]]]:
    config = r.props.get("NetworkConfiguration", {})
    if config.get("NetworkMode") != "VPC":
        return []
    found = []
    for subnet in config.get("NetworkModeConfig", {}).get("Subnets", []):
        t = r.target(subnet)
        found.append((t[1], t[2]) if t and t[2]["Type"] == "AWS::EC2::Subnet" else (json.dumps(subnet), {}))
    return found


def _agentcore_zones(r: Resource) -> list[str]:
    supported, found = AGENTCORE_AZ_IDS.get(r.region, ()), []
    for name, subnet in _runtime_subnets(r):
        zone = subnet.get("Properties", {}).get("AvailabilityZoneId")
        if not subnet:
            found.append(f"subnet {name}: not declared in this environment, its zone cannot be checked")
        elif not isinstance(zone, str):
            found.append(f"subnet {name}: placed by zone name, not AvailabilityZoneId (names differ per account)")
        elif zone not in supported:
            found.append(f"subnet {name}: zone {zone} is not supported in {r.region} ({', '.join(supported) or '-'})")
    return found


def _agentcore_two_zones(r: Resource) -> list[str]:
    subnets = _runtime_subnets(r)
    zones = {json.dumps(s.get("Properties", {}).get("AvailabilityZoneId", n)) for n, s in subnets}
    if subnets and len(zones) < AGENTCORE_MIN_AZS:
        return [f"subnets in {len(zones)} zone(s); AgentCore in a VPC needs at least {AGENTCORE_MIN_AZS}"]
    return []


def _agentcore_s3_route(r: Resource) -> list[str]:
    vpcs = {json.dumps(s.get("Properties", {}).get("VpcId")) for _, s in _runtime_subnets(r) if s}
    if not vpcs:
        return []
    gateways = {
        json.dumps(e["Properties"].get("VpcId"))
        for _, _, e in r.resources("AWS::EC2::VPCEndpoint")
        if ".s3" in json.dumps(e["Properties"].get("ServiceName"))
        and e["Properties"].get("VpcEndpointType", "Gateway") == "Gateway"
    }
    return [f"VPC {v}: no S3 gateway endpoint: the runtime cannot download its code" for v in sorted(vpcs - gateways)]


def _retain_except_on_create(r: Resource) -> list[str]:
    if r.body.get("DeletionPolicy") == "Retain":
        return ["DeletionPolicy Retain: a failed first create leaves it behind and the retry fails; use "
                "RetainExceptOnCreate (RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE)"]  # fmt: skip
    return []


def _copy_count(r: Resource) -> list[str]:
    count = r.props.get("RuntimeConfig", {}).get("CopyCount")
    if r.props.get("Specification", {}).get("BaseInferenceComponentName"):
        return []  # adapter components share their base's copies
    return [] if isinstance(count, int) and count >= 1 else [f"CopyCount {count}: a component is created with >= 1"]


def _spot_max_wait(r: Resource) -> list[str]:
    found = []
    for step in pipeline_steps(pipeline_definition(r)):
        args = step.get("Arguments", {})
        if step.get("Type") != "Training" or not args.get("EnableManagedSpotTraining"):
            continue
        stop = args.get("StoppingCondition", {})
        wait, run = stop.get("MaxWaitTimeInSeconds"), stop.get("MaxRuntimeInSeconds")
        if not isinstance(wait, int) or not isinstance(run, int) or wait < run:
            found.append(f"step {step['Name']}: managed spot needs MaxWaitTimeInSeconds ({wait}) >= MaxRuntime ({run})")
    return found


def _no_pip_in_isolated_jobs(r: Resource) -> list[str]:
    found = []
    for step in pipeline_steps(pipeline_definition(r)):
        args = step.get("Arguments", {})
        in_vpc = args.get("VpcConfig") or args.get("NetworkConfig", {}).get("VpcConfig")
        command = " ".join(_strings(args.get("AppSpecification", {})))
        if in_vpc and "pip install" in command:
            found.append(f"step {step['Name']}: installs packages at start inside the VPC (no route to PyPI)")
    return found


def _statements(r: Resource) -> Iterator[dict[str, Any]]:
    documents = [r.props.get("PolicyDocument", {})] + [p.get("PolicyDocument", {}) for p in r.props.get("Policies", [])]
    for document in documents:
        yield from _as_list(document.get("Statement"))


def _mlflow_grant_kind(r: Resource) -> list[str]:
    found = []
    for st in _statements(r):
        actions = _as_list(st.get("Action"))
        for resource in _as_list(st.get("Resource")):
            t = r.target(resource)
            kind = t[2]["Type"] if t else ""
            tracking = [a for a in actions if a.startswith("sagemaker-mlflow:")]
            if kind == "AWS::SageMaker::MlflowApp" and (tracking or not set(MLFLOW_APP_ACTIONS) & set(actions)):
                found.append(f"{', '.join(actions)} on the MLflow App {t[1]}: an App authorizes only "  # type: ignore[index]
                             f"{', '.join(MLFLOW_APP_ACTIONS)}")  # fmt: skip
            if kind == "AWS::SageMaker::MlflowTrackingServer" and set(MLFLOW_APP_ACTIONS) & set(actions):
                found.append(f"sagemaker:CallMlflowAppApi on the tracking server {t[1]} authorizes nothing")  # type: ignore[index]
            if any(a == "sagemaker-mlflow:*" for a in tracking):
                found.append("sagemaker-mlflow:* grants every MLflow action, deletions included; list the actions")
    return sorted(set(found))


def _supports(action: str, key: str) -> bool:
    keys = EC2_INTERFACE_CONDITION_KEYS[action]
    return key in keys or (key.startswith("ec2:ResourceTag/") and "ec2:ResourceTag/${TagKey}" in keys)


def _interface_condition_keys(r: Resource) -> list[str]:
    found = []
    for st in _statements(r):
        keys = {k for block in (st.get("Condition") or {}).values() for k in block if k.startswith("ec2:")}
        for action in _as_list(st.get("Action")):
            if st.get("Effect") == "Allow" and action in EC2_INTERFACE_CONDITION_KEYS:
                if unsupported := sorted(k for k in keys if not _supports(action, k)):
                    found.append(f"{action} with condition {', '.join(unsupported)}, which it does not support: "
                                 "the statement never allows it")  # fmt: skip
    return found


def _codeconnections(r: Resource) -> list[str]:
    found = []
    for stage in r.props.get("Stages", []):
        for action in stage.get("Actions", []):
            arn = action.get("Configuration", {}).get("ConnectionArn")
            if not (isinstance(arn, str) and ":codeconnections:" in arn):
                continue
            role = r.target(action.get("RoleArn"))
            allowed = {
                a
                for _, _, policy in r.resources("AWS::IAM::Policy")
                if role and {"Ref": role[1]} in policy["Properties"].get("Roles", [])
                for st in _as_list(policy["Properties"]["PolicyDocument"].get("Statement"))
                for a in _as_list(st.get("Action"))
            }
            if "codeconnections:UseConnection" not in allowed:
                found.append(f"action {action['Name']}: the connection is arn:...:codeconnections: but its role lacks "
                             "codeconnections:UseConnection")  # fmt: skip
    return found


def _scalable_target_after_component(r: Resource) -> list[str]:
    if r.props.get("ScalableDimension") != "sagemaker:inference-component:DesiredCopyCount":
        return []
    components = {logical_id for _, logical_id, _ in r.resources("AWS::SageMaker::InferenceComponent")}
    depends = set(_as_list(r.body.get("DependsOn")))
    referenced = {v["Fn::GetAtt"][0] for v in _references(r.props.get("ResourceId"))}
    if components & (depends | referenced):
        return []
    return ["the scalable target is registered before its inference component exists: add a DependsOn"]


def _endpoint_config_for_components(r: Resource) -> list[str]:
    variants = r.props.get("ProductionVariants", [])
    if any(v.get("ModelName") for v in variants) or not variants:
        return []  # a model-per-variant endpoint
    return [] if r.props.get("ExecutionRoleArn") else ["inference-component endpoint config without ExecutionRoleArn"]


def _adapter_spec(r: Resource) -> dict[str, Any]:
    """An adapter component's specification ({} for a base component)."""
    spec = r.props.get("Specification", {})
    return spec if spec.get("BaseInferenceComponentName") else {}


def _tail(value: Any) -> Any:
    """A string's end as the template holds it: the string, or the last literal part of an Fn::Join."""
    if isinstance(value, dict) and "Fn::Join" in value:
        parts = value["Fn::Join"][1]
        return parts[-1] if parts and isinstance(parts[-1], str) else None
    return value


def _adapter_archive(r: Resource) -> list[str]:
    spec = _adapter_spec(r)
    url = spec.get("Container", {}).get("ArtifactUrl")
    tail = _tail(url)
    if spec and not (isinstance(tail, str) and tail.endswith(".tar.gz")):
        return [f"ArtifactUrl {json.dumps(url)}: an adapter's artifact is one .tar.gz archive"]
    return []


def _adapter_compute(r: Resource) -> list[str]:
    spec = _adapter_spec(r)
    own = [k for k in ("ComputeResourceRequirements", "ModelName") if k in spec]
    return [f"an adapter component uses its base's compute and model; remove {', '.join(own)}"] if own else []


def _adapter_after_base(r: Resource) -> list[str]:
    base = _adapter_spec(r).get("BaseInferenceComponentName")
    if not base:
        return []
    target = r.target(base)
    ids = (
        {target[1]}
        if target
        else {
            logical_id
            for name, logical_id, c in r.resources("AWS::SageMaker::InferenceComponent")
            if name == r.stack.stack_name and c.get("Properties", {}).get("InferenceComponentName") == base
        }
    )
    if not ids:
        return [f"its base {json.dumps(base)} is not declared in this stack: it must exist before the adapter"]
    if ids & (set(_as_list(r.body.get("DependsOn"))) | {v["Fn::GetAtt"][0] for v in _references(r.props)}):
        return []
    return [f"created without waiting for its base {', '.join(sorted(ids))}: add a DependsOn"]


def _bus_target_role(r: Resource) -> list[str]:
    return [
        f"target {t.get('Id')}: the event bus {json.dumps(t.get('Arn'))} is a target without RoleArn"
        for t in r.props.get("Targets", [])
        if ":event-bus/" in json.dumps(t.get("Arn")) and not t.get("RoleArn")
    ]


def _blocked(runtime: Any, blocked: dict[str, date]) -> list[str]:
    day = blocked.get(runtime) if isinstance(runtime, str) else None
    if day is None or day > RUNTIMES_CHECKED:
        return []
    newer = sorted(k for k, d in blocked.items() if d > RUNTIMES_CHECKED)
    return [f"runtime {runtime}: creates/updates refused from {day.isoformat()} (still accepted: {', '.join(newer)})"]


def _lambda_runtime(r: Resource) -> list[str]:
    return _blocked(r.props.get("Runtime"), LAMBDA_RUNTIME_BLOCKED)


def _agentcore_runtime(r: Resource) -> list[str]:
    code = r.props.get("AgentRuntimeArtifact", {}).get("CodeConfiguration", {})
    return _blocked(code.get("Runtime"), AGENTCORE_RUNTIME_BLOCKED)


_SM = "https://docs.aws.amazon.com/sagemaker/latest"
RULES: tuple[Rule, ...] = (
    Rule(
        "JobVolumeKeyOnInstanceStorage",
        ("AWS::SageMaker::Pipeline",),
        "Training and processing steps on instance types with local NVMe storage must not set VolumeKmsKeyId.",
        f"{_SM}/APIReference/API_ResourceConfig.html",
        _job_volume_keys,
    ),
    Rule(
        "EndpointKeyOnInstanceStorage",
        ("AWS::SageMaker::EndpointConfig",),
        "An endpoint configuration must not set KmsKeyId when a variant's instance type has local NVMe storage.",
        f"{_SM}/APIReference/API_CreateEndpointConfig.html#sagemaker-CreateEndpointConfig-request-KmsKeyId",
        _endpoint_key,
    ),
    Rule(
        "GatedWeightsAcceptEula",
        ("AWS::SageMaker::Model",),
        "A model reading JumpStart's licence-gated artifacts must accept the licence (ModelAccessConfig.AcceptEula).",
        JUMPSTART_EULA_DOC,
        _model_eula,
    ),
    Rule(
        "ProcessingInputNotGated",
        ("AWS::SageMaker::Pipeline",),
        "A processing input cannot read licence-gated artifacts: ProcessingS3Input has no ModelAccessConfig.",
        f"{_SM}/APIReference/API_ProcessingS3Input.html",
        _processing_gated,
    ),
    Rule(
        "TrainingChannelAcceptEula",
        ("AWS::SageMaker::Pipeline",),
        "A training channel reading licence-gated artifacts must set S3DataSource.ModelAccessConfig.AcceptEula.",
        f"{_SM}/APIReference/API_S3DataSource.html",
        _training_gated,
    ),
    Rule(
        "PackageModelCardSchema",
        ("AWS::SageMaker::Pipeline", "AWS::SageMaker::ModelPackage"),
        "A model package's card follows the Model Package Model Card schema (model_overview: model_creator, "
        "model_artifact only; no unknown keys).",
        MODEL_PACKAGE_CARD_DOC,
        _package_card,
    ),
    Rule(
        "MlflowAppReachable",
        ("AWS::SageMaker::MlflowApp",),
        "An MLflow App has no PrivateLink service: an environment whose workloads run in an isolated VPC cannot "
        "reach it.",
        f"{_SM}/dg/mlflow-private-link-policy.html",
        _mlflow_app_route,
    ),
    Rule(
        "TrackingServerEndpoint",
        ("AWS::SageMaker::MlflowTrackingServer",),
        "Workloads in an isolated VPC reach an MLflow tracking server only through the interface endpoint "
        "aws.sagemaker.<region>.experiments.",
        f"{_SM}/dg/mlflow-private-link-policy.html",
        _tracking_server_endpoint,
    ),
    Rule(
        "AgentCoreSubnetZones",
        ("AWS::BedrockAgentCore::Runtime",),
        "An AgentCore Runtime in a VPC takes subnets only in the documented Availability Zone IDs of its region.",
        f"{AGENTCORE_VPC_DOC}#agentcore-supported-azs",
        _agentcore_zones,
    ),
    Rule(
        "AgentCoreTwoZones",
        ("AWS::BedrockAgentCore::Runtime",),
        "An AgentCore Runtime in a VPC needs subnets in at least two Availability Zones.",
        f"{AGENTCORE_VPC_DOC}#agentcore-supported-azs",
        _agentcore_two_zones,
    ),
    Rule(
        "AgentCoreS3Route",
        ("AWS::BedrockAgentCore::Runtime",),
        "A VPC-mode runtime downloads its code from S3 through the VPC: the VPC needs an S3 gateway endpoint.",
        AGENTCORE_VPC_DOC,
        _agentcore_s3_route,
    ),
    Rule(
        "RetainExceptOnCreate",
        ("*",),
        "Retained resources use DeletionPolicy RetainExceptOnCreate, so a failed first create can be retried.",
        "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html",
        _retain_except_on_create,
    ),
    Rule(
        "ComponentCreatedWithCopies",
        ("AWS::SageMaker::InferenceComponent",),
        "A base inference component is created with at least one copy (autoscaling may take it to zero later).",
        f"{_SM}/dg/endpoint-auto-scaling-zero-instances.html",
        _copy_count,
    ),
    Rule(
        "SpotMaxWait",
        ("AWS::SageMaker::Pipeline",),
        "Managed spot training needs MaxWaitTimeInSeconds >= MaxRuntimeInSeconds.",
        f"{_SM}/APIReference/API_StoppingCondition.html",
        _spot_max_wait,
    ),
    Rule(
        "NoInstallInIsolatedJobs",
        ("AWS::SageMaker::Pipeline",),
        "Jobs in a VPC without internet access cannot install packages at start: bake them into the image.",
        f"{_SM}/dg/train-vpc.html",
        _no_pip_in_isolated_jobs,
    ),
    Rule(
        "MlflowGrantMatchesKind",
        ("AWS::IAM::Policy", "AWS::IAM::Role"),
        "MLflow Apps authorize sagemaker:CallMlflowAppApi, tracking servers the listed sagemaker-mlflow actions "
        "(never sagemaker-mlflow:*).",
        "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemakerwithmlflow.html",
        _mlflow_grant_kind,
    ),
    Rule(
        "InterfaceConditionKeys",
        ("AWS::IAM::Policy", "AWS::IAM::Role"),
        "A statement allowing a network-interface action conditions it only on EC2 keys that action supports "
        "(an unsupported key is absent from the request, so the statement never matches).",
        EC2_DOC,
        _interface_condition_keys,
    ),
    Rule(
        "CodeConnectionsPermission",
        ("AWS::CodePipeline::Pipeline",),
        "A source action on an arn:...:codeconnections: connection needs codeconnections:UseConnection.",
        "https://docs.aws.amazon.com/dtconsole/latest/userguide/rename.html",
        _codeconnections,
    ),
    Rule(
        "ScalableTargetAfterComponent",
        ("AWS::ApplicationAutoScaling::ScalableTarget",),
        "An inference component's scalable target is registered only after the component exists.",
        f"{_SM}/dg/endpoint-auto-scaling-prerequisites.html",
        _scalable_target_after_component,
    ),
    Rule(
        "AdapterArtifactArchive",
        ("AWS::SageMaker::InferenceComponent",),
        "An adapter inference component's Container.ArtifactUrl points to a single .tar.gz archive.",
        f"{_SM}/APIReference/API_InferenceComponentContainerSpecification.html",
        _adapter_archive,
    ),
    Rule(
        "AdapterUsesBaseCompute",
        ("AWS::SageMaker::InferenceComponent",),
        "An adapter inference component omits ComputeResourceRequirements (and a model): it runs on its base's.",
        f"{_SM}/APIReference/API_InferenceComponentSpecification.html",
        _adapter_compute,
    ),
    Rule(
        "AdapterAfterBase",
        ("AWS::SageMaker::InferenceComponent",),
        "An adapter inference component is created only once its base component exists.",
        f"{_SM}/APIReference/API_InferenceComponentSpecification.html",
        _adapter_after_base,
    ),
    Rule(
        "EventBusTargetRole",
        ("AWS::Events::Rule",),
        "A rule whose target is an event bus gives it a role (required across Regions and through an organization, "
        "recommended always by EventBridge).",
        "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-bus-perms.html",
        _bus_target_role,
    ),
    Rule(
        "ComponentEndpointExecutionRole",
        ("AWS::SageMaker::EndpointConfig",),
        "An endpoint configuration for inference components (variants without ModelName) sets ExecutionRoleArn.",
        f"{_SM}/APIReference/API_CreateEndpointConfig.html#sagemaker-CreateEndpointConfig-request-ExecutionRoleArn",
        _endpoint_config_for_components,
    ),
    Rule(
        "LambdaRuntimeAccepted",
        ("AWS::Lambda::Function",),
        f"A function's runtime is one Lambda still creates functions on (stacks/facts.py, as checked on "
        f"{RUNTIMES_CHECKED.isoformat()}).",
        LAMBDA_PYTHON_DOC,
        _lambda_runtime,
    ),
    Rule(
        "AgentCoreRuntimeAccepted",
        ("AWS::BedrockAgentCore::Runtime",),
        f"An AgentCore runtime's language runtime is one AgentCore still creates and updates runtimes on "
        f"(stacks/facts.py, as checked on {RUNTIMES_CHECKED.isoformat()}).",
        AGENTCORE_RUNTIMES_DOC,
        _agentcore_runtime,
    ),
)

_BY_TYPE: dict[str, list[Rule]] = {}
for _rule in RULES:
    for _t in _rule.resource_types:
        _BY_TYPE.setdefault(_t, []).append(_rule)


# --- the pack ----------------------------------------------------------------------------------------


@jsii.implements(IApplyRule)
class _Finding:
    """One rule applied to one resource; the problems are computed in Python before cdk-nag asks."""

    def __init__(self, rule: Rule, node: CfnResource, problems: list[str]) -> None:
        self._rule, self._node, self._problems = rule, node, problems

    @property
    def rule_suffix_override(self) -> str:
        return self._rule.name

    @property
    def info(self) -> str:
        return f"{self._rule.info} {'; '.join(self._problems)}".strip()

    @property
    def explanation(self) -> str:
        return f"See {self._rule.doc}"

    @property
    def level(self) -> NagMessageLevel:
        return NagMessageLevel.ERROR

    @property
    def node(self) -> CfnResource:
        return self._node

    def rule(self, node: CfnResource) -> NagRuleCompliance:
        return NagRuleCompliance.NON_COMPLIANT  # applied only where the rule found problems


class DeployReadinessChecks(NagPack):
    """The services' cross-field rules (``RULES``), registered beside AwsSolutions and HIPAA Security."""

    def __init__(self, scope: IConstruct | None = None) -> None:
        super().__init__(scope)
        self._pack_name = PACK
        # id(stack) -> (the stack, its findings); holding the stack keeps its id from being reused
        self._findings: dict[int, tuple[Stack, dict[str, list[tuple[Rule, list[str]]]]]] = {}

    @property
    def name(self) -> str:
        return PACK

    def _check_resource(self, node: CfnResource) -> None:
        """cdk-nag calls this once per resource: each call and each jsii call in it is a round trip to node, so
        the rules run once per stack over its rendered template, and a resource costs one lookup unless its stack
        has findings."""
        stack = Stack.of(node)
        findings = self._stack_findings(stack)
        if not findings:
            return
        for rule, problems in findings.get(stack.resolve(stack.get_logical_id(node)), []):
            self._apply_rule(cast(IApplyRule, _Finding(rule, node, problems)))

    def _stack_findings(self, stack: Stack) -> dict[str, list[tuple[Rule, list[str]]]]:
        """{logical id: [(rule, problems)]} of every resource of ``stack``'s template (computed once per stack)."""
        if id(stack) in self._findings:
            return self._findings[id(stack)][1]
        findings: dict[str, list[tuple[Rule, list[str]]]] = {}
        templates: dict[str, dict[str, Any]] = {}
        for logical_id, body in _template(stack).get("Resources", {}).items():
            resource = Resource(logical_id, body, stack, templates)
            for rule in _BY_TYPE.get(body["Type"], []) + _BY_TYPE.get("*", []):
                if rule.resource_types != ("*",) and not templates:
                    templates.update(_stage_templates(stack))
                try:
                    problems = rule.check(resource)
                except Exception as e:  # a rule's own bug: name it and the resource, then fail synth
                    raise RuntimeError(f"{rule.id} could not check {stack.stack_name}/{logical_id}: {e!r}") from e
                if problems:  # compliant resources need no report entry (and no round trip through jsii)
                    findings.setdefault(logical_id, []).append((rule, problems))
        self._findings[id(stack)] = (stack, findings)
        return findings


def main() -> int:
    """List the rules with their references (``make rules``)."""
    print(f"{len(RULES)} deploy-readiness rules (stacks/readiness.py); acknowledge only in stacks/compliance.py\n")
    for rule in RULES:
        print(f"{rule.id}\n  applies to: {', '.join(rule.resource_types)}\n  {rule.info}\n  {rule.doc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
