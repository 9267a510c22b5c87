"""Review the candidate model version (metrics, the quality gate, the model card, the training run) and approve
it in the registry (UpdateModelPackage). The approval starts the delivery pipeline, which pins the highest approved
version and promotes it (docs/promotion.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ops import outputs
from ops.cloud import Cloud
from ops.errors import OpsError
from ops.train import steps
from ops.ui import console
from training.pipeline import ACCURACY_PATH, STEP_GATE, STEP_REGISTER, STEP_TRAIN

PENDING = "PendingManualApproval"
LINEAGE_SCAN = 20  # recent pipeline executions searched for the one that registered the package


def versions(cloud: Cloud, group: str) -> list[dict[str, Any]]:
    """Every package of the group, newest version first."""
    sm, found, token = cloud.client("sagemaker"), [], None
    while True:
        page = sm.list_model_packages(ModelPackageGroupName=group, **({"NextToken": token} if token else {}))
        found += page["ModelPackageSummaryList"]
        token = page.get("NextToken")
        if not token:
            return sorted(found, key=lambda p: p.get("ModelPackageVersion", 0), reverse=True)


def pick(cloud: Cloud, group: str, version: int | None) -> dict[str, Any]:
    found = versions(cloud, group)
    if version is not None:
        chosen = [p for p in found if p.get("ModelPackageVersion") == version]
        if not chosen:
            have = ", ".join(str(p["ModelPackageVersion"]) for p in found) or "none"
            raise OpsError(f"model package group {group} has no version {version} (versions: {have})")
        return chosen[0]
    pending = [p for p in found if p["ModelApprovalStatus"] == PENDING]
    if not pending:
        latest = (
            f"latest: version {found[0]['ModelPackageVersion']}, {found[0]['ModelApprovalStatus']}"
            if found
            else "empty"
        )
        raise OpsError(
            f"nothing to approve: no version of {group} awaits approval ({latest}); train one with "
            f"make train ENV={cloud.env}"
        )
    return pending[0]


def evaluation(cloud: Cloud, package: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluation report the pipeline attached as the package's model quality statistics."""
    uri = package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri")
    if not uri:
        return None
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body = cloud.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return json.loads(body)


def metric_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for group, metrics in report.items():
        if isinstance(metrics, dict):
            values = {k: v["value"] for k, v in metrics.items() if isinstance(v, dict) and "value" in v}
            if values:
                lines.append(f"{group}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
    return lines


def lineage(cloud: Cloud, package_arn: str) -> tuple[str, list[dict[str, Any]]] | None:
    """The pipeline execution whose register step created the package, and its steps."""
    pipeline = cloud.output(outputs.PIPELINE_NAME)
    sm = cloud.client("sagemaker")
    executions = sm.list_pipeline_executions(
        PipelineName=pipeline, SortBy="CreationTime", SortOrder="Descending", MaxResults=LINEAGE_SCAN
    )["PipelineExecutionSummaries"]
    for e in executions:
        found = steps(cloud, e["PipelineExecutionArn"])
        if any(s.get("Metadata", {}).get("RegisterModel", {}).get("Arn") == package_arn for s in found):
            return e["PipelineExecutionArn"], found
    return None


def gate_line(cloud: Cloud, execution: str, found: list[dict[str, Any]], report: dict[str, Any] | None) -> str:
    gate = next((s for s in found if s["StepName"] == STEP_GATE), None)
    if gate is None:
        return "quality gate: no record"
    outcome = gate.get("Metadata", {}).get("Condition", {}).get("Outcome")
    params = cloud.client("sagemaker").list_pipeline_parameters_for_execution(PipelineExecutionArn=execution)
    threshold = next((p["Value"] for p in params["PipelineParameters"] if p["Name"] == "AccuracyThreshold"), "?")
    value: Any = report
    for part in ACCURACY_PATH.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    accuracy = f"{value:.4g}" if isinstance(value, (int, float)) else "?"
    verdict = "passed" if outcome == "True" else "not passed"
    return f"quality gate: {verdict} (accuracy {accuracy}, threshold {threshold})"


def card_lines(package: dict[str, Any]) -> list[str]:
    card = package.get("ModelCard") or {}
    if not card.get("ModelCardContent"):
        return ["model card: none attached"]
    content = json.loads(card["ModelCardContent"])
    uses = content.get("intended_uses", {})
    info = content.get("additional_information", {})
    facts = [
        ("purpose", uses.get("purpose_of_model")),
        ("intended uses", uses.get("intended_uses")),
        ("risk", " — ".join(filter(None, [uses.get("risk_rating"), uses.get("explanations_for_risk_rating")]))),
        ("caveats", info.get("caveats_and_recommendations")),
        ("ethics", info.get("ethical_considerations")),
    ]
    lines = [f"model card ({card.get('ModelCardStatus', '?')}):"]
    lines += [f"  {k}: {v if len(v) <= 160 else v[:157] + '...'}" for k, v in facts if v]
    return lines


def show(cloud: Cloud, package: dict[str, Any]) -> None:
    group, version = package["ModelPackageGroupName"], package["ModelPackageVersion"]
    registered = f"{package['CreationTime']:%Y-%m-%d %H:%M %Z}"
    console.print(f"[bold]{group} version {version}[/] ({package['ModelApprovalStatus']}), registered {registered}")
    containers = package.get("InferenceSpecification", {}).get("Containers", [])
    if containers:
        console.print(f"adapter: {containers[0].get('ModelDataUrl', '?')}")
    report = evaluation(cloud, package)
    for line in metric_lines(report) if report else ["metrics: none attached"]:
        console.print(line)
    found = lineage(cloud, package["ModelPackageArn"])
    if found:
        execution, execution_steps = found
        console.print(gate_line(cloud, execution, execution_steps, report))
    for line in card_lines(package):
        console.print(line)
    run_id = (report or {}).get("mlflow_run_id")
    mlflow = (
        f"MLflow run {run_id} in experiment {cloud.settings.mlflow.experiment} on {cloud.output(outputs.MLFLOW_ARN)}"
    )
    console.print(f"training run: {mlflow if run_id else 'no MLflow run recorded'}")
    if found:
        train = next((s for s in found[1] if s["StepName"] == STEP_TRAIN), {})
        job = train.get("Metadata", {}).get("TrainingJob", {}).get("Arn", "?").rsplit("/", 1)[-1]
        console.print(f"  pipeline execution {found[0]}, training job {job}")
    else:
        console.print(f"  (no pipeline execution among the last {LINEAGE_SCAN} registered it at step {STEP_REGISTER})")


def run(cloud: Cloud, *, version: int | None, yes: bool, confirm: Callable[[str], bool]) -> None:
    cloud.training()  # only the environment that trains has a registry
    me = cloud.identity()
    group = cloud.output(outputs.MODEL_PACKAGE_GROUP)
    summary = pick(cloud, group, version)
    sm = cloud.client("sagemaker")
    package = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    show(cloud, package)
    if package["ModelApprovalStatus"] == "Approved":
        console.print(f"version {package['ModelPackageVersion']} is already approved: nothing to do")
        return
    if not yes and not confirm(f"Approve {group} version {package['ModelPackageVersion']} for {cloud.env}?"):
        raise OpsError("not approved: nothing changed")
    sm.update_model_package(
        ModelPackageArn=package["ModelPackageArn"],
        ModelApprovalStatus="Approved",
        ApprovalDescription=f"approved with make approve ENV={cloud.env} by {me['Arn']}"[:1024],
    )
    console.print(f"[green]✓[/] approved {package['ModelPackageArn']}")
    console.print(
        "the approval starts the delivery pipeline: it pins the highest approved version and promotes it dev → "
        "staging → prod (docs/promotion.md); a direct deploy of dev takes it with make pin then make deploy ENV=dev"
    )
