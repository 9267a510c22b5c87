"""Tear a disposable environment down in the right order, including what CloudFormation alone cannot delete.

Refused for every environment whose ``tier`` is not ``development`` (staging, production). Order:
1. stop running pipeline executions (their jobs would keep writing into buckets being deleted);
2. delete the model registry's versions: the pipeline created them, CloudFormation does not know them, and
   left behind they would point at deleted artifacts;
3. ``cdk destroy`` every stack of the stage (CDK orders them by dependency; every inference component, pinned
   adapters included, is CloudFormation's and goes before the endpoint);
4. delete the log groups that the services created outside CloudFormation for this environment's endpoint,
   components and functions.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from ops import outputs
from ops.cdk import destroy_args, run_cdk
from ops.cloud import Cloud
from ops.errors import OpsError
from ops.outputs import components, stack_name
from ops.ui import console

RUNNING = ("Executing", "Stopping")


@dataclass
class Plan:
    executions: list[str] = field(default_factory=list)
    endpoint: str | None = None
    packages: list[str] = field(default_factory=list)
    log_groups: list[str] = field(default_factory=list)


def refuse_protected(cloud: Cloud) -> None:
    s = cloud.settings
    if s.protected:
        raise OpsError(
            f"refusing to destroy '{s.name}': its tier is '{s.tier}' (config/{s.name}.yaml); "
            "only development environments can be torn down"
        )


def stack_resources(cloud: Cloud, component: str) -> list[dict]:
    cfn, found, token = cloud.client("cloudformation"), [], None
    while True:
        kwargs = {"StackName": stack_name(cloud.settings, component), **({"NextToken": token} if token else {})}
        page = cfn.list_stack_resources(**kwargs)
        found += page["StackResourceSummaries"]
        token = page.get("NextToken")
        if not token:
            return found


def existing_log_group(cloud: Cloud, name: str) -> list[str]:
    """``[name]`` if that log group exists (exactly that name: another endpoint's or function's stays)."""
    groups = cloud.client("logs").describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
    return [g["logGroupName"] for g in groups if g["logGroupName"] == name]


def plan(cloud: Cloud) -> Plan:
    p = Plan()
    deployed = [c for c in components(cloud.settings) if cloud.stack(c) is not None]
    owned = {c: stack_resources(cloud, c) for c in deployed}
    sm = cloud.client("sagemaker")
    if "Mlops" in deployed and cloud.settings.trains:
        pipeline = cloud.output(outputs.PIPELINE_NAME)
        executions = sm.list_pipeline_executions(PipelineName=pipeline, MaxResults=100)["PipelineExecutionSummaries"]
        p.executions = [e["PipelineExecutionArn"] for e in executions if e["PipelineExecutionStatus"] in RUNNING]
        group = cloud.output(outputs.MODEL_PACKAGE_GROUP)
        p.packages = [
            v["ModelPackageArn"] for v in sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
        ]
    names = []
    if "Inference" in deployed:
        p.endpoint = cloud.output(outputs.ENDPOINT_NAME)
        named = cloud.output(outputs.BASE_COMPONENTS).split(",") + cloud.output(outputs.ADAPTER_COMPONENTS).split(",")
        names += [f"/aws/sagemaker/Endpoints/{p.endpoint}"]
        names += [f"/aws/sagemaker/InferenceComponents/{c}" for c in sorted(set(named)) if c]
    names += [
        f"/aws/lambda/{r['PhysicalResourceId']}"
        for found in owned.values()
        for r in found
        if r["ResourceType"] == "AWS::Lambda::Function"
    ]
    p.log_groups = sorted({g for name in names for g in existing_log_group(cloud, name)})
    return p


def show(cloud: Cloud, p: Plan) -> None:
    s = cloud.settings
    console.print(f"[bold]destroy {s.name}[/] (account {s.account}, {s.region}), in this order:")
    console.print(f"  1. stop {len(p.executions)} running pipeline execution(s)")
    console.print(f"  2. delete {len(p.packages)} model registry version(s)")
    stacks = [stack_name(s, c) for c in components(s) if cloud.stack(c) is not None]
    console.print(f"  3. cdk destroy {', '.join(stacks) or '(no stack deployed)'}")
    console.print(
        f"  4. delete {len(p.log_groups)} log group(s) the services created: {', '.join(p.log_groups) or '-'}"
    )


def run(cloud: Cloud, *, yes: bool, dry_run: bool, confirm: Callable[[str], str]) -> None:
    refuse_protected(cloud)
    cloud.identity()
    p = plan(cloud)
    show(cloud, p)
    if dry_run:
        run_cdk(destroy_args(cloud.settings), dry_run=True)
        console.print("dry run: nothing deleted")
        return
    if not yes and confirm(f"type '{cloud.env}' to destroy it") != cloud.env:
        raise OpsError("not confirmed: nothing deleted")
    sm = cloud.client("sagemaker")
    for arn in p.executions:
        sm.stop_pipeline_execution(PipelineExecutionArn=arn, ClientRequestToken=str(uuid.uuid4()))
        console.print(f"  stopped {arn}")
    for arn in p.packages:
        sm.delete_model_package(ModelPackageName=arn)
    if p.packages:
        console.print(f"  deleted {len(p.packages)} model registry version(s)")
    run_cdk(destroy_args(cloud.settings))
    logs = cloud.client("logs")
    for group in p.log_groups:
        try:
            logs.delete_log_group(logGroupName=group)
            console.print(f"  deleted log group {group}")
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
    console.print(
        f"[green]✓[/] {cloud.env} is destroyed. Kept: the CDK bootstrap stack (CDKToolkit) and its asset storage, "
        "and the account-wide SageMaker job logs (/aws/sagemaker/TrainingJobs, /aws/sagemaker/ProcessingJobs)"
    )
