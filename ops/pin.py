"""Resolve the pin: the highest approved version of the registry of record, written into config/models.lock.json.

    python -m ops pin --env dev [--lock config/models.lock.json] [--output PATH]     (make pin ENV=dev)

The registry of record is the model package group of the environment that trains. The versions are read from the
registry, not from an approval event: events arrive out of order and are replayed, the registry's state is what a
person decided. The highest version whose status is Approved wins (a later rejection of it falls back to the next
one); with none, the adapter's entry is removed and every environment serves its base model. The entry names the
component (``registry.adapter``) and its base (``registry.adapter_base``), the version and its archive (the single
container's ``ModelDataUrl``), the archive's SHA-256 (read from S3 here: each environment's copy is checked against
it), the key that encrypts it, and the lineage the pipeline's register step recorded (customer metadata
``pipeline_execution_arn``, ``mlflow_run_id``, ``lora_rank``). The new lock is validated with every environment's
settings before it is written; it is written whole or not at all.

The delivery pipeline's ResolvePin step runs this as the registry account's reader role; developers run it with
credentials for that account and commit the result (docs/promotion.md).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from ops.cloud import Cloud
from ops.errors import OpsError
from ops.ui import console
from stacks.settings import AdapterPin, ModelLock, known_environments, load_environment, load_model_lock
from training.pipeline import LINEAGE_EXECUTION, LINEAGE_MLFLOW_RUN

APPROVED = "Approved"
LORA_RANK = "lora_rank"  # customer metadata of the register step (training/pipeline.py)
CHUNK = 8 * 1024 * 1024


class PinError(OpsError):
    """The registry's data cannot be pinned; the message names the version and what is wrong."""


def versions(sagemaker: Any, group: str) -> list[dict[str, Any]]:
    """Every version of the group (all statuses), as ListModelPackages returns them."""
    found, token = [], None
    while True:
        page = sagemaker.list_model_packages(
            ModelPackageGroupName=group, ModelPackageType="Versioned", **({"NextToken": token} if token else {})
        )
        found += page["ModelPackageSummaryList"]
        token = page.get("NextToken")
        if not token:
            return found


def highest_approved(summaries: list[dict[str, Any]], group: str) -> dict[str, Any] | None:
    """The approved version with the highest number, whatever order the versions were approved or listed in."""
    approved = []
    for summary in summaries:
        if summary.get("ModelApprovalStatus") != APPROVED:
            continue
        version = summary.get("ModelPackageVersion")
        if not isinstance(version, int) or not str(summary.get("ModelPackageArn", "")).endswith(f"/{version}"):
            raise PinError(
                f"malformed registry data in {group}: approved package {summary.get('ModelPackageArn', '?')} has "
                f"version {version!r}, not the number its ARN ends with"
            )
        approved.append(summary)
    return max(approved, key=lambda s: s["ModelPackageVersion"], default=None)


def archive(package: dict[str, Any], where: str) -> str:
    """The adapter archive: the single container's ``ModelDataUrl``, one ``s3://…tar.gz``."""
    containers = package.get("InferenceSpecification", {}).get("Containers", [])
    url = containers[0].get("ModelDataUrl", "") if len(containers) == 1 else ""
    if not (url.startswith("s3://") and url.endswith(".tar.gz")):
        raise PinError(
            f"malformed registry data: {where} has {len(containers)} container(s) and ModelDataUrl {url or 'none'!r}; "
            "an adapter version has one container whose ModelDataUrl is an s3:// .tar.gz archive"
        )
    return url


def sha256_of(s3: Any, url: str, where: str) -> tuple[str, str | None]:
    """The archive's SHA-256 (streamed) and the KMS key that encrypts it (None for SSE-S3)."""
    bucket, key = url.removeprefix("s3://").split("/", 1)
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "?")
        if code in ("NoSuchKey", "404"):
            raise PinError(f"malformed registry data: the archive of {where}, {url}, does not exist") from None
        raise
    digest = hashlib.sha256()
    for chunk in obj["Body"].iter_chunks(CHUNK):
        digest.update(chunk)
    key_arn = obj.get("SSEKMSKeyId") if obj.get("ServerSideEncryption") == "aws:kms" else None
    return digest.hexdigest(), key_arn


def resolve(cloud: Cloud) -> AdapterPin | None:
    """The pin of the registry's adapter, or None when no version is approved."""
    s = cloud.settings
    group = s.registry.model_package_group
    sagemaker, s3 = cloud.client("sagemaker"), cloud.client("s3")
    chosen = highest_approved(versions(sagemaker, group), group)
    if chosen is None:
        return None
    where = f"{group} version {chosen['ModelPackageVersion']}"
    package = sagemaker.describe_model_package(ModelPackageName=chosen["ModelPackageArn"])
    if package.get("ModelApprovalStatus") != APPROVED:
        raise PinError(f"{where} is now {package.get('ModelApprovalStatus')}: its approval changed; run again")
    url = archive(package, where)
    metadata = package.get("CustomerMetadataProperties", {})
    if not metadata.get(LINEAGE_EXECUTION) or not str(metadata.get(LORA_RANK, "")).isdigit():
        raise PinError(
            f"malformed registry data: {where} has no customer metadata {LINEAGE_EXECUTION} and a numeric "
            f"{LORA_RANK} (found {sorted(metadata)}): it was not registered by the training pipeline"
        )
    sha256, key_arn = sha256_of(s3, url, where)
    try:
        return AdapterPin(
            name=s.registry.adapter,
            base=s.registry_adapter_base,
            model_package=package["ModelPackageArn"],
            model_package_version=package["ModelPackageVersion"],
            source_uri=url,
            source_kms_key_arn=key_arn,
            sha256=sha256,
            lora_rank=int(metadata[LORA_RANK]),
            pipeline_execution_arn=metadata[LINEAGE_EXECUTION],
            mlflow_run_id=metadata.get(LINEAGE_MLFLOW_RUN) or None,
        )
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise PinError(f"malformed registry data: {where}: {problems}") from None


def write(lock: ModelLock, output: Path) -> None:
    """The whole file or nothing: written beside its target, then renamed over it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(lock.dumps())
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def describe(pin: AdapterPin) -> str:
    lineage = ", ".join(
        f"{k} {v}"
        for k, v in (("pipeline execution", pin.pipeline_execution_arn), ("MLflow run", pin.mlflow_run_id))
        if v
    )
    return f"version {pin.model_package_version} ({pin.model_package}), sha256 {pin.sha256}, trained by {lineage}"


def run(cloud: Cloud, *, lock_path: Path, output: Path | None = None) -> ModelLock:
    s = cloud.settings
    if not s.trains:
        raise OpsError(
            f"{s.name} does not train (config/{s.name}.yaml has no training section): the registry of record is the "
            "environment that trains; run make pin ENV=<that environment>"
        )
    cloud.identity()
    lock = load_model_lock(lock_path)
    name, group = s.registry.adapter, s.registry.model_package_group
    before = next((a for a in lock.adapters if a.name == name), None)
    pin = resolve(cloud)
    new = lock.with_pin(name, pin)
    for env in known_environments():  # every environment must accept it (bases, LoRA, ranks) before it is written
        load_environment(env, lock=new)
    target = output or lock_path
    write(new, target)
    if pin is None:
        console.print(
            f"no approved version in {group}: {name} is not pinned; every environment serves its base model "
            f"({s.registry_adapter_base}). Wrote {target}"
        )
    elif before == pin:
        console.print(f"{name}: unchanged, {describe(pin)}. Wrote {target}")
    else:
        was = f"version {before.model_package_version}" if before else "no pin"
        console.print(f"{name}: {was} → {describe(pin)}. Wrote {target}")
    return new
