"""Approval → deployment: point the adapter inference component at a newly approved model package.

Trigger: an EventBridge rule on ``source: aws.sagemaker``, ``detail-type: SageMaker Model Package State Change``
(the rule should already match this group and ``ModelApprovalStatus: Approved``; the handler checks again).

Flow: DescribeModelPackage (the registry, not the event, is the truth: it must still be Approved) → the adapter
artifact is ``InferenceSpecification.Containers[0].ModelDataUrl`` (one container, an ``s3://….tar.gz``) → the
adapter component is created on the endpoint if missing, left alone if it already serves that artifact, else
updated (a rolling update; this function never waits) and re-tagged. Lineage tags on the component:
``ModelPackageArn``, and from the package's ``CustomerMetadataProperties`` (set by the pipeline's register step)
``PipelineExecutionArn`` and ``MlflowRunId``; a missing key is written as an empty value so no stale lineage stays.

Not acted on (logged with the reason, returned without error so nothing retries): malformed events, other
sources or detail types, other groups, statuses other than Approved, packages no longer approved, packages
without a single .tar.gz artifact (logged at ERROR: someone approved something unusable). AWS errors raise, so
Lambda retries and then sends the event to the dead-letter queue.

Idempotency (Powertools, DynamoDB) covers the component change only (skips are never recorded), keyed on
package ARN + status, not on the event id: SageMaker may emit several events, with different ids, for one state
change, and all carry the same ARN and status. The record exists only after a success (a failure deletes it, so
retries proceed) and expires after IDEMPOTENCY_TTL_SECONDS. A duplicate arriving while the first is still running
is skipped (if the first fails, Lambda retries the first). Each duplicate costs one DescribeModelPackage.
Past the TTL, a replay finds the same artifact deployed and changes nothing.

Limit: the function deploys the package its event names. Two approvals delivered out of order, or the replay
of an old approval after a newer one was deployed, leave the older adapter serving.

Environment
  ENDPOINT_NAME             endpoint hosting the components
  BASE_COMPONENT_NAME       base inference component the adapter runs on
  ADAPTER_COMPONENT_NAME    adapter inference component to create or update (e.g. clinical-lora)
  MODEL_PACKAGE_GROUP_NAME  the only model package group acted on
  IDEMPOTENCY_TABLE         DynamoDB table: partition key ``id`` (string), TTL attribute ``expiration``
  IDEMPOTENCY_TTL_SECONDS   optional, default 3600
  POWERTOOLS_SERVICE_NAME   optional, default deploy-adapter
  POWERTOOLS_LOG_LEVEL      optional, default INFO

AWS calls: sagemaker DescribeModelPackage, DescribeInferenceComponent, CreateInferenceComponent,
UpdateInferenceComponent, AddTags; dynamodb GetItem, PutItem, UpdateItem, DeleteItem on the table.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Literal

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.parser import BaseModel, Field, ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

LINEAGE_KEYS = ("PipelineExecutionArn", "MlflowRunId")  # read from CustomerMetadataProperties

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "deploy-adapter"))


class ConfigError(RuntimeError):
    """The function's environment is incomplete or invalid."""


class DeployError(RuntimeError):
    """The adapter component cannot be deployed as configured."""


@dataclass(frozen=True)
class Settings:
    endpoint: str
    base_component: str
    adapter_component: str
    group: str
    idempotency_table: str
    idempotency_ttl: int

    @classmethod
    def from_env(cls) -> Settings:
        names = [
            "ENDPOINT_NAME",
            "BASE_COMPONENT_NAME",
            "ADAPTER_COMPONENT_NAME",
            "MODEL_PACKAGE_GROUP_NAME",
            "IDEMPOTENCY_TABLE",
        ]
        missing = [n for n in names if not os.environ.get(n)]
        if missing:
            raise ConfigError(f"deploy_adapter: missing environment variable(s): {', '.join(missing)}")
        ttl = os.environ.get("IDEMPOTENCY_TTL_SECONDS", "3600")
        if not ttl.isdigit() or int(ttl) < 1:
            raise ConfigError(f"deploy_adapter: IDEMPOTENCY_TTL_SECONDS must be a positive integer, got {ttl!r}")
        endpoint, base, adapter, group, table = (os.environ[n] for n in names)
        return cls(endpoint, base, adapter, group, table, idempotency_ttl=int(ttl))


class ModelPackageState(BaseModel):
    group: str = Field(alias="ModelPackageGroupName", min_length=1)
    arn: str = Field(alias="ModelPackageArn", pattern=r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/")
    status: str = Field(alias="ModelApprovalStatus", min_length=1)


class ModelPackageStateChange(EventBridgeModel):
    source: Literal["aws.sagemaker"]
    detail_type: Literal["SageMaker Model Package State Change"] = Field(alias="detail-type")
    detail: ModelPackageState


SETTINGS = Settings.from_env()
_idempotency = IdempotencyConfig(expires_after_seconds=SETTINGS.idempotency_ttl)
_persistence = DynamoDBPersistenceLayer(table_name=SETTINGS.idempotency_table)


@functools.cache
def sagemaker() -> Any:
    """The SageMaker client, created on first use and reused across invocations (tests replace it)."""
    return boto3.client("sagemaker")


def _outcome(action: str, reason: str, level: str = "info", **keys: Any) -> dict[str, Any]:
    getattr(logger, level)(f"{action}: {reason}", extra={"action": action, "reason": reason, **keys})
    return {"action": action, "reason": reason, **keys}


def _artifact(package: dict[str, Any]) -> str | None:
    containers = package.get("InferenceSpecification", {}).get("Containers", [])
    url = containers[0].get("ModelDataUrl", "") if len(containers) == 1 else ""
    return url if url.startswith("s3://") and url.endswith(".tar.gz") else None


def _lineage(package: dict[str, Any]) -> list[dict[str, str]]:
    metadata = package.get("CustomerMetadataProperties", {})
    missing = [k for k in LINEAGE_KEYS if not metadata.get(k)]
    if missing:
        logger.warning("lineage incomplete", extra={"missing_metadata": missing, "package": package["ModelPackageArn"]})
    tags = {"ModelPackageArn": package["ModelPackageArn"], **{k: metadata.get(k, "") for k in LINEAGE_KEYS}}
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _current_component(sm: Any) -> dict[str, Any] | None:
    try:
        return sm.describe_inference_component(InferenceComponentName=SETTINGS.adapter_component)
    except ClientError as e:
        if "Could not find inference component" in e.response.get("Error", {}).get("Message", ""):
            return None
        raise


@idempotent_function(data_keyword_argument="approval", persistence_store=_persistence, config=_idempotency)
def deploy(*, approval: dict[str, str], artifact: str, tags: list[dict[str, str]]) -> dict[str, Any]:
    """Point the adapter component at ``artifact``: create, update or leave it. Idempotent on ``approval`` only."""
    sm = sagemaker()
    spec = {"BaseInferenceComponentName": SETTINGS.base_component, "Container": {"ArtifactUrl": artifact}}
    keys = {"package": approval["ModelPackageArn"], "component": SETTINGS.adapter_component, "artifact": artifact}
    current = _current_component(sm)
    if current is None:
        sm.create_inference_component(
            InferenceComponentName=SETTINGS.adapter_component,
            EndpointName=SETTINGS.endpoint,
            Specification=spec,
            Tags=tags,
        )
        return _outcome("created", "adapter component created", **keys)
    if current["EndpointName"] != SETTINGS.endpoint:
        raise DeployError(
            f"inference component {SETTINGS.adapter_component!r} belongs to endpoint "
            f"{current['EndpointName']!r}, not {SETTINGS.endpoint!r}"
        )
    if current.get("Specification", {}).get("Container", {}).get("ArtifactUrl") == artifact:
        return _outcome("unchanged", "adapter component already serves this artifact", **keys)
    sm.update_inference_component(InferenceComponentName=SETTINGS.adapter_component, Specification=spec)
    sm.add_tags(ResourceArn=current["InferenceComponentArn"], Tags=tags)
    return _outcome("updated", "adapter component update started", **keys)


def _approval(event: Any) -> ModelPackageState | dict[str, Any]:
    """The approval to act on, or the outcome saying why there is none."""
    try:
        change = parse(event=event, model=ModelPackageStateChange)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '(event)'}: {err['msg']}" for err in e.errors())
        return _outcome("skipped", f"malformed event: {problems}", level="warning")
    d = change.detail
    if d.group != SETTINGS.group:
        return _outcome("skipped", f"model package group {d.group!r} is not {SETTINGS.group!r}", package=d.arn)
    if d.status != "Approved":
        return _outcome("skipped", f"approval status is {d.status}, not Approved", package=d.arn)
    return d


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _idempotency.register_lambda_context(context)
    approval = _approval(event)
    if isinstance(approval, dict):
        return approval
    # Checks that end in a skip stay outside the idempotent part, so a skip is never remembered.
    package = sagemaker().describe_model_package(ModelPackageName=approval.arn)
    if package.get("ModelApprovalStatus") != "Approved":
        return _outcome(
            "skipped", f"package is now {package.get('ModelApprovalStatus')}, no longer Approved", package=approval.arn
        )
    artifact = _artifact(package)
    if artifact is None:
        return _outcome(
            "skipped",
            "package has no single s3:// .tar.gz adapter artifact (InferenceSpecification.Containers[0].ModelDataUrl)",
            level="error",
            package=approval.arn,
        )
    try:
        return deploy(
            approval={"ModelPackageArn": approval.arn, "ModelApprovalStatus": approval.status},
            artifact=artifact,
            tags=_lineage(package),
        )
    except IdempotencyAlreadyInProgressError:
        return _outcome("skipped", "the same approval is being deployed by another invocation", package=approval.arn)
