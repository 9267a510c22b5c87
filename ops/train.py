"""Start the fine-tuning pipeline and follow it step by step: status, duration, and on failure the reason and
where the step's CloudWatch logs are."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from ops import outputs
from ops.cloud import Cloud
from ops.errors import OpsError
from ops.ui import console, elapsed, poll
from ops.weights import list_prefix

DONE = {"Succeeded", "Failed", "Stopped"}
# Where SageMaker jobs write their logs (one stream per job instance, named after the job).
JOB_LOGS = {"TrainingJob": "/aws/sagemaker/TrainingJobs", "ProcessingJob": "/aws/sagemaker/ProcessingJobs"}


def declared_parameters(cloud: Cloud, pipeline: str) -> dict[str, dict[str, Any]]:
    """The deployed pipeline's parameters (name → Type, DefaultValue, EnumValues) from its definition."""
    described = cloud.client("sagemaker").describe_pipeline(PipelineName=pipeline)
    definition = json.loads(described["PipelineDefinition"])
    return {p["Name"]: p for p in definition.get("Parameters", [])}


def parse_parameters(given: list[str], declared: dict[str, dict[str, Any]]) -> dict[str, str]:
    """``NAME=VALUE`` options checked against the pipeline's parameters (name, type, allowed values)."""
    chosen: dict[str, str] = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise OpsError(f"--param {item!r}: expected NAME=VALUE, e.g. --param Epochs=2")
        if name not in declared:
            raise OpsError(f"--param {name}: the pipeline has no such parameter; it has {', '.join(sorted(declared))}")
        kind = declared[name].get("Type", "String")
        try:
            {"Integer": int, "Float": float}.get(kind, str)(value)
        except ValueError:
            raise OpsError(
                f"--param {name}={value}: expected a{'n' if kind == 'Integer' else ''} {kind.lower()}"
            ) from None
        allowed = declared[name].get("EnumValues")
        if allowed and value not in allowed:
            raise OpsError(f"--param {name}={value}: allowed values are {', '.join(allowed)}")
        chosen[name] = value
    return chosen


def _s3_prefix_has_objects(cloud: Cloud, uri: str) -> bool:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bool(list_prefix(cloud.client("s3"), bucket, prefix))


def preflight(cloud: Cloud, values: dict[str, str]) -> None:
    """The inputs the first steps read exist: the dataset, and base weights staged in S3."""
    dataset = values.get("DatasetUri", "")
    if dataset.startswith("s3://") and not _s3_prefix_has_objects(cloud, dataset):
        raise OpsError(f"no training data at {dataset}: run make data ENV={cloud.env} first")
    base = values.get("BaseModelId", "")
    if base.startswith("s3://") and not _s3_prefix_has_objects(cloud, base):
        raise OpsError(f"no base weights at {base}: run make weights ENV={cloud.env} FROM=<snapshot folder> first")


def start(cloud: Cloud, params: list[str]) -> str:
    cloud.identity()
    pipeline = cloud.output(outputs.PIPELINE_NAME)
    declared = declared_parameters(cloud, pipeline)
    chosen = parse_parameters(params, declared)
    preflight(cloud, {n: str(p.get("DefaultValue", "")) for n, p in declared.items()} | chosen)
    arn = cloud.client("sagemaker").start_pipeline_execution(
        PipelineName=pipeline,
        PipelineParameters=[{"Name": n, "Value": v} for n, v in chosen.items()],
        PipelineExecutionDescription=f"started by make train ENV={cloud.env}",
        ClientRequestToken=str(uuid.uuid4()),
    )["PipelineExecutionArn"]
    shown = ", ".join(f"{n}={v}" for n, v in chosen.items()) or "the defaults"
    console.print(f"started pipeline {pipeline} with {shown}")
    console.print(f"  execution {arn}")
    return arn


def latest_execution(cloud: Cloud) -> str:
    pipeline = cloud.output(outputs.PIPELINE_NAME)
    found = cloud.client("sagemaker").list_pipeline_executions(
        PipelineName=pipeline, SortBy="CreationTime", SortOrder="Descending", MaxResults=1
    )["PipelineExecutionSummaries"]
    if not found:
        raise OpsError(f"pipeline {pipeline} has no execution yet: make train ENV={cloud.env}")
    return found[0]["PipelineExecutionArn"]


def steps(cloud: Cloud, arn: str) -> list[dict[str, Any]]:
    """Every step of the execution, oldest first (steps that have not started are absent)."""
    sm, found, token = cloud.client("sagemaker"), [], None
    while True:
        page = sm.list_pipeline_execution_steps(PipelineExecutionArn=arn, SortOrder="Ascending", **token_arg(token))
        found += page.get("PipelineExecutionSteps", [])
        token = page.get("NextToken")
        if not token:
            return found


def token_arg(token: str | None) -> dict[str, str]:
    return {"NextToken": token} if token else {}


def job_of(step: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the SageMaker job a step ran, if any."""
    for kind in JOB_LOGS:
        arn = step.get("Metadata", {}).get(kind, {}).get("Arn")
        if arn:
            return kind, arn.rsplit("/", 1)[-1]
    return None


def failure_lines(cloud: Cloud, step: dict[str, Any]) -> list[str]:
    """Why a step failed, and where its logs are."""
    meta = step.get("Metadata", {})
    lines = [f"reason: {step.get('FailureReason') or meta.get('Fail', {}).get('ErrorMessage') or 'not given'}"]
    job = job_of(step)
    if job:
        kind, name = job
        sm = cloud.client("sagemaker")
        described = (
            sm.describe_training_job(TrainingJobName=name)
            if kind == "TrainingJob"
            else sm.describe_processing_job(ProcessingJobName=name)
        )
        if described.get("FailureReason") and described["FailureReason"] != step.get("FailureReason"):
            lines.append(f"job {name}: {described['FailureReason']}")
        group = JOB_LOGS[kind]
        lines.append(f"logs: CloudWatch log group {group}, streams {name}/*")
        lines.append(f"      aws logs tail {group} --log-stream-name-prefix {name} --region {cloud.region}")
    return lines


@dataclass
class Follower:
    """Prints each step's transitions once, as they happen."""

    cloud: Cloud
    arn: str
    seen: dict[str, str] = field(default_factory=dict)
    failed: list[dict[str, Any]] = field(default_factory=list)
    registered: str | None = None

    def report(self, step: dict[str, Any]) -> None:
        name, status = step["StepName"], step["StepStatus"]
        if self.seen.get(name) == status:
            return
        self.seen[name] = status
        meta = step.get("Metadata", {})
        if status in ("Starting", "Executing"):
            job = job_of(step)
            console.print(f"▸ {name} running" + (f" ({job[0]} {job[1]})" if job else ""))
        elif status == "Succeeded":
            cached = " (cached)" if step.get("CacheHitResult") else ""
            took = elapsed(step.get("StartTime"), step.get("EndTime"))
            outcome = meta.get("Condition", {}).get("Outcome")
            detail = f": condition {'met' if outcome == 'True' else 'not met'}" if outcome else ""
            console.print(f"[green]✓[/] {name} succeeded{f' in {took}' if took else ''}{cached}{detail}")
            if meta.get("RegisterModel", {}).get("Arn"):
                self.registered = meta["RegisterModel"]["Arn"]
                console.print(f"  registered {self.registered}")
        elif status in ("Failed", "Stopped"):
            took = elapsed(step.get("StartTime"), step.get("EndTime"))
            console.print(f"[red]✗[/] {name} {status.lower()}{f' after {took}' if took else ''}")
            if status == "Failed":
                self.failed.append(step)
                for line in failure_lines(self.cloud, step):
                    console.print(f"  {line}")

    def probe(self) -> tuple[bool, dict[str, Any], str]:
        for step in steps(self.cloud, self.arn):
            self.report(step)
        execution = self.cloud.client("sagemaker").describe_pipeline_execution(PipelineExecutionArn=self.arn)
        status = execution["PipelineExecutionStatus"]
        running = [n for n, s in self.seen.items() if s in ("Starting", "Executing")]
        return status in DONE, execution, f"{status}; running: {', '.join(running) or 'none'}"


def follow(cloud: Cloud, arn: str, *, interval: float, timeout: float | None) -> None:
    """Print the steps until the execution ends; a failed or stopped execution raises (exit 1)."""
    console.print(f"following {arn}")
    follower = Follower(cloud, arn)
    limit = timeout or 4 * cloud.training().max_runtime_seconds  # the jobs' own stopping conditions bound it
    resume = f"make train ENV={cloud.env} FOLLOW={arn}"
    execution = poll(
        follower.probe,
        clock=cloud.clock,
        interval=interval,
        timeout=limit,
        waiting_for=f"pipeline execution {arn.rsplit('/', 1)[-1]}",
        resume=resume,
        on_timeout=f"it is still running in SageMaker; follow it again with {resume}",
    )
    status = execution["PipelineExecutionStatus"]
    took = elapsed(execution.get("CreationTime"), execution.get("LastModifiedTime"))
    if status == "Succeeded":
        console.print(f"[green]✓[/] pipeline execution succeeded{f' in {took}' if took else ''}")
        if follower.registered:
            console.print(f"next: review and approve the new model version: make approve ENV={cloud.env}")
        return
    reason = execution.get("FailureReason") or (
        f"step {follower.failed[0]['StepName']} failed" if follower.failed else "no reason given"
    )
    raise OpsError(f"pipeline execution {status.lower()}: {reason}")


def run(
    cloud: Cloud, *, params: list[str], wait: bool, follow_arn: str | None, interval: float, timeout: float | None
) -> None:
    cloud.training()  # refuses an environment that does not train, before any call
    if follow_arn:
        cloud.identity()
        arn = latest_execution(cloud) if follow_arn == "latest" else follow_arn
    else:
        arn = start(cloud, params)
    if not wait:
        console.print(f"not waiting; follow it with: make train ENV={cloud.env} FOLLOW={arn}")
        return
    follow(cloud, arn, interval=interval, timeout=timeout)
