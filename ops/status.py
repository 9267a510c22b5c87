"""One screen: the stacks, the endpoint and its components (copies, instances, scaled to zero or not), the adapter
being served and its registry version, the last pipeline execution, the agent runtime."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from ops import outputs
from ops.ask import agent_components, describe_component
from ops.cloud import Cloud
from ops.errors import OpsError, explain
from ops.outputs import components, stack_name
from ops.ui import console, duration

# The adapter component's lineage tags (stacks/settings.py AdapterPin.lineage_tags), in words.
LINEAGE = {"PipelineExecutionArn": "pipeline execution", "MlflowRunId": "MLflow run"}


def _when(t: datetime | None) -> str:
    return f"{t:%Y-%m-%d %H:%M %Z}" if t else ""


def section(title: str, body: Callable[[], list[str]]) -> None:
    """A titled block; a failure shows as a line in it (the other blocks still show)."""
    console.print(f"[bold]{title}[/]")
    try:
        lines = body()
    except (ClientError, OpsError) as e:
        lines = [f"[red]{explain(e) or e}[/]"]
    for line in lines:
        console.print(f"  {line}")


def stack_lines(cloud: Cloud) -> list[str]:
    lines = []
    for c in components(cloud.settings):
        stack = cloud.stack(c)
        name = stack_name(cloud.settings, c)
        if stack is None:
            lines.append(f"{name:<20} not deployed")
        else:
            updated = stack.get("LastUpdatedTime") or stack.get("CreationTime")
            lines.append(f"{name:<20} {stack['StackStatus']:<22} {_when(updated)}")
    return lines


def endpoint_lines(cloud: Cloud) -> list[str]:
    name = cloud.output(outputs.ENDPOINT_NAME)
    sm = cloud.client("sagemaker")
    try:
        endpoint = sm.describe_endpoint(EndpointName=name)
    except ClientError as e:
        if "Could not find" in e.response.get("Error", {}).get("Message", ""):
            return [f"endpoint {name}: not found"]
        raise
    variant = (endpoint.get("ProductionVariants") or [{}])[0]
    scaling = variant.get("ManagedInstanceScaling", {})
    instances = variant.get("CurrentInstanceCount", 0)
    lines = [
        f"endpoint {name}: {endpoint['EndpointStatus']}, {instances} × {cloud.settings.inference.instance_type} "
        f"(scales {scaling.get('MinInstanceCount', '?')}..{scaling.get('MaxInstanceCount', '?')})"
        + (" — scaled to zero" if instances == 0 else "")
    ]
    bases = set(cloud.output(outputs.BASE_COMPONENTS).split(","))
    adapters = [a for a in cloud.output(outputs.ADAPTER_COMPONENTS).split(",") if a]
    for component in [*sorted(bases), *adapters]:
        state = describe_component(cloud, component)
        if state is None:
            lines.append(f"{component:<20} not deployed")
            continue
        runtime = state.get("RuntimeConfig", {})
        status = state.get("InferenceComponentStatus", "?")
        if component in bases:
            current = runtime.get("CurrentCopyCount", 0)
            zero = " — scaled to zero" if current == 0 else ""
            lines.append(
                f"{component:<20} {status:<10} copies {current} (desired {runtime.get('DesiredCopyCount', 0)}){zero}"
            )
        else:
            base = state.get("Specification", {}).get("BaseInferenceComponentName", "?")
            lines.append(f"{component:<20} {status:<10} adapter on {base}")
    return lines


def serving_lines(cloud: Cloud) -> list[str]:
    """What the agent calls and, for an adapter, which registry version and training run it serves (its lineage
    tags, set from the pin: config/models.lock.json)."""
    component, base, state = agent_components(cloud)
    if state is None:
        return [f"the agent calls {component}: not deployed (make deploy ENV={cloud.env})"]
    artifact = state.get("Specification", {}).get("Container", {}).get("ArtifactUrl")
    if not artifact:
        return [f"the agent calls {component} (a base model, no adapter pinned)"]
    sm = cloud.client("sagemaker")
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=state["InferenceComponentArn"]).get("Tags", [])}
    package = tags.get("ModelPackageArn")
    version = f"version {tags.get('ModelPackageVersion', '?')} ({package})" if package else "registry version unknown"
    lines = [f"the agent calls {component} on {base}: {version}", f"artifact {artifact}"]
    lineage = [f"{what} {tags[k]}" for k, what in LINEAGE.items() if tags.get(k)]
    if lineage:
        lines.append("trained by " + ", ".join(lineage))
    return lines


def pipeline_lines(cloud: Cloud) -> list[str]:
    pipeline = cloud.output(outputs.PIPELINE_NAME)
    found = cloud.client("sagemaker").list_pipeline_executions(
        PipelineName=pipeline, SortBy="CreationTime", SortOrder="Descending", MaxResults=1
    )["PipelineExecutionSummaries"]
    if not found:
        return [f"pipeline {pipeline}: no execution yet (make train ENV={cloud.env})"]
    e = found[0]
    started = e["StartTime"]
    status = e["PipelineExecutionStatus"]
    running = (
        f", running for {duration((datetime.now(UTC) - started).total_seconds())}" if status == "Executing" else ""
    )
    return [
        f"pipeline {pipeline}: last execution {status}, started {_when(started)}{running}",
        e["PipelineExecutionArn"],
    ]


def runtime_lines(cloud: Cloud) -> list[str]:
    arn = cloud.output(outputs.RUNTIME_ARN)
    endpoint_name = cloud.output(outputs.RUNTIME_ENDPOINT_ARN).rsplit("/", 1)[-1]
    control = cloud.client("bedrock-agentcore-control")
    runtime = control.get_agent_runtime(agentRuntimeId=arn.rsplit("/", 1)[-1])
    endpoint = control.get_agent_runtime_endpoint(agentRuntimeId=runtime["agentRuntimeId"], endpointName=endpoint_name)
    reason = f" ({runtime['failureReason']})" if runtime.get("failureReason") else ""
    return [
        f"runtime {runtime['agentRuntimeName']}: {runtime['status']}{reason}, "
        f"version {runtime.get('agentRuntimeVersion', '?')}",
        f"endpoint {endpoint_name}: {endpoint['status']}, serving version {endpoint.get('liveVersion', '?')}",
    ]


def run(cloud: Cloud) -> None:
    me = cloud.identity()
    s = cloud.settings
    console.print(f"[bold]{s.name}[/]: account {s.account}, {s.region} (as {me['Arn']})")
    section("stacks", lambda: stack_lines(cloud))
    deployed = {c for c in components(s) if cloud.stack(c) is not None}
    if "Inference" in deployed:
        section("endpoint", lambda: endpoint_lines(cloud))
        section("serving", lambda: serving_lines(cloud))
    if "Mlops" in deployed and s.trains:
        section("training", lambda: pipeline_lines(cloud))
    if "Agent" in deployed:
        section("agent", lambda: runtime_lines(cloud))
