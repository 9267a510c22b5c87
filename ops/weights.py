"""Base weights where the config says: an S3 prefix of the artifacts bucket (uploaded from a local snapshot,
idempotent by checksum) or a licence-gated JumpStart artifact (access verified, nothing copied). The fine-tuning
pipeline always reads a staged copy (``training.base_weights_prefix``: a processing input cannot accept a licence,
docs/first-deploy.md), so `make weights FROM=DIR` stages it too."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from ops import outputs
from ops.cloud import Cloud
from ops.errors import OpsError
from ops.ui import console
from stacks import settings as config
from stacks.settings import EnvironmentSettings, ModelSettings

CHECKSUM_KEY = "sha256"  # object metadata (x-amz-meta-sha256): the hex SHA-256 of the whole file
JUMPSTART_HUB = "SageMakerPublicHub"  # the public hub that serves JumpStart models (DescribeHubContent)
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class S3Weights:
    model: str
    prefix: str  # in the artifacts bucket, ends with "/"


@dataclass(frozen=True)
class JumpStartWeights:
    model: str
    model_id: str
    version: str
    accept_eula: bool
    eula_accepted_by: str | None = None


def weights_location(settings: EnvironmentSettings, model: ModelSettings) -> S3Weights | JumpStartWeights:
    """Where a model's served weights live, per its ``weights`` setting."""
    w = model.weights
    if isinstance(w, config.JumpStartWeights):
        return JumpStartWeights(model.name, w.model_id, w.version, w.accept_eula, w.eula_accepted_by)
    return S3Weights(model.name, w.prefix)


def training_location(settings: EnvironmentSettings) -> S3Weights:
    """The copy the fine-tuning pipeline reads (``training.base_weights_prefix``); only where the environment trains."""
    if settings.training is None:
        raise OpsError(f"{settings.name} does not train: it has no pipeline copy of the weights")
    return S3Weights("pipeline", settings.training.base_weights_prefix)


def select_models(settings: EnvironmentSettings, name: str | None) -> list[ModelSettings]:
    models = settings.inference.models
    if name is None:
        return list(models)
    chosen = [m for m in models if m.name == name]
    if not chosen:
        raise OpsError(
            f"--model {name!r} is not a model of '{settings.name}' "
            f"(inference.models: {', '.join(m.name for m in models)})"
        )
    return chosen


# --- JumpStart -------------------------------------------------------------------------------------------


def verify_jumpstart(cloud: Cloud, w: JumpStartWeights) -> dict[str, Any]:
    """The model version exists in the region's public hub and its licence is accepted in the config.

    DescribeHubContent returns the hub content document (HostingPrepackedArtifactUri, GatedBucket,
    HostingEulaUri): https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeHubContent.html
    """
    try:
        content = cloud.client("sagemaker").describe_hub_content(
            HubName=JUMPSTART_HUB, HubContentType="Model", HubContentName=w.model_id, HubContentVersion=w.version
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("ResourceNotFound", "ValidationException"):
            raise OpsError(
                f"models.{w.model}.weights: JumpStart has no model {w.model_id!r} version {w.version} in "
                f"{cloud.region} ({e.response['Error'].get('Message', '')})"
            ) from None
        raise
    if content.get("HubContentStatus", "Available") != "Available":
        raise OpsError(f"JumpStart model {w.model_id} {w.version} is {content['HubContentStatus']} in {cloud.region}")
    doc = json.loads(content.get("HubContentDocument") or "{}")
    artifact = doc.get("HostingPrepackedArtifactUri") or doc.get("HostingArtifactUri")
    if not artifact:
        raise OpsError(f"JumpStart model {w.model_id} {w.version} has no hosting artifact in {cloud.region}")
    gated, eula = bool(doc.get("GatedBucket")), doc.get("HostingEulaUri")
    if gated and not (w.accept_eula and w.eula_accepted_by):
        raise OpsError(
            f"models.{w.model}.weights: {w.model_id} is licence-gated; read the licence ({eula or 'see JumpStart'}), "
            "then set accept_eula: true and eula_accepted_by: <who accepted it> in the config"
        )
    return {"artifact": artifact, "gated": gated, "eula": eula}


# --- S3 --------------------------------------------------------------------------------------------------


@dataclass
class UploadPlan:
    upload: list[tuple[Path, str, str]] = field(default_factory=list)  # (file, key, sha256)
    unchanged: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # objects under the prefix that the snapshot lacks

    @property
    def bytes(self) -> int:
        return sum(p.stat().st_size for p, _, _ in self.upload)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def snapshot_files(directory: Path) -> list[Path]:
    """The files of a model snapshot folder (hidden files and folders, e.g. a download cache, left out)."""
    if not directory.is_dir():
        raise OpsError(f"--from {directory}: not a folder")
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )
    names = {p.name for p in files}
    if "config.json" not in names or not any(n.endswith(_WEIGHT_SUFFIXES) for n in names):
        raise OpsError(
            f"--from {directory}: not a model snapshot (a Hugging Face folder with config.json and *.safetensors "
            "weights, e.g. from `hf download <model id> --local-dir DIR`)"
        )
    return files


def list_prefix(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    """Key → size of every object under ``prefix``."""
    found: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return found


def stored_checksum(s3: Any, bucket: str, key: str) -> str | None:
    return s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(CHECKSUM_KEY)


def plan_upload(s3: Any, bucket: str, prefix: str, directory: Path) -> UploadPlan:
    """What to upload: every file whose object is missing or whose stored checksum differs."""
    existing = list_prefix(s3, bucket, prefix)
    plan = UploadPlan()
    keys = set()
    for path in snapshot_files(directory):
        key = prefix + path.relative_to(directory).as_posix()
        keys.add(key)
        digest = sha256_file(path)
        if existing.get(key) == path.stat().st_size and stored_checksum(s3, bucket, key) == digest:
            plan.unchanged.append(key)
        else:
            plan.upload.append((path, key, digest))
    plan.extra = sorted(set(existing) - keys)
    return plan


def upload(s3: Any, bucket: str, owner: str, plan: UploadPlan) -> None:
    """Upload with a progress bar; each object carries its SHA-256 (metadata) and S3 verifies each part."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("uploading", total=plan.bytes)
        for path, key, digest in plan.upload:
            progress.update(task, description=f"uploading {path.name}")
            s3.upload_file(
                str(path),
                bucket,
                key,
                ExtraArgs={
                    "Metadata": {CHECKSUM_KEY: digest},
                    "ChecksumAlgorithm": "SHA256",
                    "ExpectedBucketOwner": owner,
                },
                Callback=lambda n: progress.advance(task, n),
            )


def stage_from(cloud: Cloud, w: S3Weights, directory: Path) -> UploadPlan:
    bucket = cloud.output(outputs.ARTIFACTS_BUCKET)
    s3 = cloud.client("s3")
    console.print(f"{w.model}: comparing {directory} with s3://{bucket}/{w.prefix} (SHA-256 of each file) ...")
    plan = plan_upload(s3, bucket, w.prefix, directory)
    if plan.upload:
        console.print(f"  {len(plan.upload)} to upload ({plan.bytes / 1e9:.2f} GB), {len(plan.unchanged)} unchanged")
        upload(s3, bucket, cloud.settings.account, plan)
    console.print(
        f"  [green]✓[/] s3://{bucket}/{w.prefix}: {len(plan.upload)} uploaded, {len(plan.unchanged)} unchanged"
    )
    if plan.extra:
        console.print(
            f"  [yellow]note[/]: {len(plan.extra)} object(s) under the prefix are not in {directory} and are served "
            f"too: {', '.join(plan.extra[:5])}{' ...' if len(plan.extra) > 5 else ''}"
        )
    return plan


def check_present(cloud: Cloud, w: S3Weights, model_id: str) -> None:
    bucket = cloud.output(outputs.ARTIFACTS_BUCKET)
    found = list_prefix(cloud.client("s3"), bucket, w.prefix)
    names = {k.rsplit("/", 1)[-1] for k in found}
    if "config.json" not in names or not any(n.endswith(_WEIGHT_SUFFIXES) for n in names):
        raise OpsError(
            f"{w.model}: no model weights at s3://{bucket}/{w.prefix} ({len(found)} object(s)); download a snapshot "
            f"of {model_id} (accept its licence first: `hf download {model_id} --local-dir DIR`), then "
            f"make weights ENV={cloud.env} FROM=DIR"
        )
    size = sum(found.values())
    console.print(f"[green]✓[/] {w.model}: {len(found)} files, {size / 1e9:.2f} GB at s3://{bucket}/{w.prefix}")


def run(cloud: Cloud, *, source: Path | None, model: str | None) -> None:
    cloud.identity()
    models = select_models(cloud.settings, model)
    if source is not None and len(models) > 1:
        raise OpsError(
            f"--from uploads one model; '{cloud.env}' has {len(models)} ({', '.join(m.name for m in models)}): "
            "add --model NAME"
        )
    staged: dict[str, tuple[S3Weights, str]] = {}  # prefix -> (location, model id), each prefix once
    for m in models:
        w = weights_location(cloud.settings, m)
        if isinstance(w, JumpStartWeights):
            info = verify_jumpstart(cloud, w)
            console.print(f"[green]✓[/] {m.name}: JumpStart {w.model_id} {w.version} is available in {cloud.region}")
            console.print(f"  served from {info['artifact']} (nothing copied)")
            if info["gated"]:
                console.print(f"  licence {info['eula']} accepted by {w.eula_accepted_by}")
        else:
            staged.setdefault(w.prefix, (w, m.model_id))
    training = cloud.settings.training  # the pipeline's copy, where the environment trains
    if training and (model is None or any(m.model_id == training.base_model_id for m in models)):
        pipeline_copy = training_location(cloud.settings)
        staged.setdefault(pipeline_copy.prefix, (pipeline_copy, training.base_model_id))
    for w, model_id in staged.values():
        if source is not None:
            stage_from(cloud, w, source)
        else:
            check_present(cloud, w, model_id)
