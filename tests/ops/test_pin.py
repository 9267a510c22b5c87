"""make pin (and the delivery pipeline's ResolvePin step): the registry's highest approved version becomes the pin,
whatever order approvals arrived or versions are listed in; no approved version removes the pin; malformed registry
data stops with an error naming the version; the lock is written whole, validated with every environment.

SageMaker calls are checked against the botocore service model (Stubber); the archives are real objects in moto's
S3, hashed as the resolver streams them."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from ops import outputs
from stacks.settings import ModelLock, load_model_lock

from .conftest import ACCOUNT, GROUP, package_arn, summary

ROOT = Path(__file__).resolve().parents[2]


def execution(version: int) -> str:
    return f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:pipeline/clinical-diagnosis-finetune/execution/exec{version}"


def archive_key(version: int) -> str:
    return f"pipeline/clinical-diagnosis-finetune/exec{version}/FineTune/job{version}/output/model.tar.gz"


class Registry:
    """The group's versions (stubbed SageMaker) and their archives (moto S3, SSE-KMS as the pipeline writes them)."""

    def __init__(self, env, statuses: dict[int, str]):
        self.env, self.statuses = env, statuses
        self.bucket = env.values[outputs.ARTIFACTS_BUCKET]
        self.key_arn = env.client("kms").create_key()["KeyMetadata"]["Arn"]
        self.archives = {}
        for version in statuses:
            body = f"adapter archive of version {version}".encode() * 1000
            env.client("s3").put_object(
                Bucket=self.bucket,
                Key=archive_key(version),
                Body=body,
                ServerSideEncryption="aws:kms",
                SSEKMSKeyId=self.key_arn,
            )
            self.archives[version] = hashlib.sha256(body).hexdigest()
        self.sagemaker, self.stub = env.stub("sagemaker")

    def listed(self, *pages: list[int]) -> None:
        """ListModelPackages, paginated as ``pages`` (version numbers, in the order the service returns them)."""
        for i, page in enumerate(pages):
            response = {"ModelPackageSummaryList": [summary(v, self.statuses[v]) for v in page]}
            params = {"ModelPackageGroupName": GROUP, "ModelPackageType": "Versioned"}
            if i + 1 < len(pages):
                response["NextToken"] = f"page{i + 1}"
            if i:
                params["NextToken"] = f"page{i}"
            self.stub.add_response("list_model_packages", response, params)

    def described(self, version: int, **changes) -> None:
        package = {
            **summary(version, self.statuses[version]),
            "ModelPackageName": GROUP,
            "ModelPackageStatusDetails": {"ValidationStatuses": []},
            "InferenceSpecification": {
                "Containers": [{"Image": "img", "ModelDataUrl": f"s3://{self.bucket}/{archive_key(version)}"}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
            "CustomerMetadataProperties": {
                "base_model": "meta-llama/Llama-3.2-3B-Instruct",
                "lora_rank": "16",
                "pipeline_execution_arn": execution(version),
                "mlflow_run_id": f"run{version}",
            },
            **changes,
        }
        self.stub.add_response("describe_model_package", package, {"ModelPackageName": package_arn(version)})


def pin(env, registry: Registry, lock: Path, *args: str):
    return env.run(env.cloud(sagemaker=registry.sagemaker), "pin", "--env", "dev", "--lock", str(lock), *args)


@pytest.fixture
def lock(tmp_path) -> Path:
    path = tmp_path / "models.lock.json"
    path.write_text(ModelLock().dumps())
    return path


STATUSES = {3: "Approved", 4: "Rejected", 5: "Approved", 6: "PendingManualApproval"}


@pytest.mark.parametrize("pages", [([6, 5, 4, 3],), ([3, 4], [5, 6]), ([5], [3, 6, 4])])
def test_the_highest_approved_version_is_pinned_with_its_hash_key_and_lineage(env, lock, pages):
    env.deploy(("Data",))
    registry = Registry(env, STATUSES)
    registry.listed(*pages)
    registry.described(5)
    result = pin(env, registry, lock)
    assert result.exit_code == 0, result.output
    (entry,) = load_model_lock(lock).adapters
    assert entry.model_dump(exclude_none=True) == {
        "name": "clinical-lora",
        "base": "llama32-3b",
        "model_package": package_arn(5),
        "model_package_version": 5,
        "source_uri": f"s3://{registry.bucket}/{archive_key(5)}",
        "source_kms_key_arn": registry.key_arn,
        "sha256": registry.archives[5],  # the bytes in S3, streamed and hashed
        "lora_rank": 16,
        "pipeline_execution_arn": execution(5),
        "mlflow_run_id": "run5",
    }
    assert "clinical-lora: no pin → version 5" in result.output
    assert lock.read_text() == load_model_lock(lock).dumps()  # the reviewable form, whole


def test_approvals_arriving_out_of_order_still_pin_the_highest_approved_version(env, lock):
    """Version 5's approval starts a run; version 3's approval event arrives after it and starts another: both read
    the registry, not the event, so both pin version 5 (the second changes nothing)."""
    env.deploy(("Data",))
    registry = Registry(env, STATUSES)
    for _ in ("run started by version 5's approval", "run started by version 3's late approval"):
        registry.listed([3, 4, 5, 6])
        registry.described(5)
    first = pin(env, registry, lock)
    before = lock.read_text()
    second = pin(env, registry, lock)
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert "version 5" in first.output and "clinical-lora: unchanged, version 5" in second.output
    assert lock.read_text() == before


def test_a_rejected_latest_version_falls_back_to_the_previous_approved_one(env, lock):
    env.deploy(("Data",))
    registry = Registry(env, {3: "Approved", 4: "Rejected", 5: "Rejected"})
    registry.listed([5, 4, 3])
    registry.described(3)
    result = pin(env, registry, lock)
    assert result.exit_code == 0, result.output
    assert [a.model_package_version for a in load_model_lock(lock).adapters] == [3]


def test_no_approved_version_removes_the_pin_and_says_the_bases_serve(env, tmp_path):
    env.deploy(("Data",))
    other = {**json.loads(_entry("clinical-lora")), "name": "triage-lora"}
    lock = tmp_path / "models.lock.json"
    lock.write_text(json.dumps({"adapters": [json.loads(_entry("clinical-lora")), other]}))
    registry = Registry(env, {4: "Rejected", 6: "PendingManualApproval"})
    registry.listed([4, 6])
    result = pin(env, registry, lock)
    assert result.exit_code == 0, result.output
    assert "no approved version in clinical-diagnosis-llama: clinical-lora is not pinned" in result.output
    assert "every environment serves its base model (llama32-3b)" in result.output
    assert [a.name for a in load_model_lock(lock).adapters] == ["triage-lora"]  # other adapters are kept


def _entry(name: str) -> str:
    from tests.infra.conftest import pin_entry

    return json.dumps(pin_entry(2, name=name))


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"InferenceSpecification": {"Containers": [{"Image": "i", "ModelDataUrl": "s3://b/a/"}]}},
            "version 5 has 1 container(s) and ModelDataUrl 's3://b/a/'",
        ),
        (
            {"InferenceSpecification": {"Containers": [{"Image": "i"}, {"Image": "j"}]}},
            "version 5 has 2 container(s)",
        ),
        ({"CustomerMetadataProperties": {"lora_rank": "16"}}, "version 5 has no customer metadata pipeline_execution"),
        (
            {"CustomerMetadataProperties": {"lora_rank": "sixteen", "pipeline_execution_arn": "arn:x"}},
            "and a numeric lora_rank",
        ),
        ({"ModelApprovalStatus": "Rejected"}, "version 5 is now Rejected: its approval changed; run again"),
    ],
)
def test_malformed_registry_data_stops_naming_the_version_and_writes_nothing(env, lock, changes, message):
    env.deploy(("Data",))
    registry = Registry(env, STATUSES)
    registry.listed([3, 4, 5, 6])
    registry.described(5, **changes)
    before = lock.read_text()
    result = pin(env, registry, lock)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert lock.read_text() == before


def test_a_version_whose_number_is_not_its_arns_is_malformed(env, lock):
    env.deploy(("Data",))
    registry = Registry(env, {5: "Approved"})
    listed = summary(5, "Approved") | {"ModelPackageVersion": 7}
    registry.stub.add_response(
        "list_model_packages",
        {"ModelPackageSummaryList": [listed]},
        {"ModelPackageGroupName": GROUP, "ModelPackageType": "Versioned"},
    )
    result = pin(env, registry, lock)
    assert result.exit_code == 1
    assert f"approved package {package_arn(5)} has version 7, not the number its ARN ends with" in result.output


def test_a_missing_archive_is_malformed_registry_data(env, lock):
    env.deploy(("Data",))
    registry = Registry(env, {5: "Approved"})
    env.client("s3").delete_object(Bucket=registry.bucket, Key=archive_key(5))
    registry.listed([5])
    registry.described(5)
    result = pin(env, registry, lock)
    assert result.exit_code == 1
    assert (
        f"the archive of clinical-diagnosis-llama version 5, s3://{registry.bucket}/{archive_key(5)}" in result.output
    )


def test_a_pin_an_environment_cannot_serve_is_not_written(env, lock):
    """The new lock is validated with every environment's settings first (here: a rank above max_lora_rank)."""
    env.deploy(("Data",))
    registry = Registry(env, {5: "Approved"})
    registry.listed([5])
    metadata = {"lora_rank": "128", "pipeline_execution_arn": execution(5)}
    registry.described(5, CustomerMetadataProperties=metadata)
    before = lock.read_text()
    result = pin(env, registry, lock)
    assert result.exit_code == 2
    assert "LoRA rank 128 exceeds max_lora_rank 64 of llama32-3b" in result.output
    assert lock.read_text() == before


def test_an_environment_that_does_not_train_has_no_registry_to_pin_from(aws, lock):
    from typer.testing import CliRunner

    from ops import cli

    result = CliRunner().invoke(cli.app, ["pin", "--env", "prod", "--lock", str(lock)])
    assert result.exit_code == 1
    assert "prod does not train (config/prod.yaml has no training section)" in result.output


def test_make_pin_runs_the_cli_for_the_environment_and_the_output():
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "pin", "ENV=dev", "OUTPUT=out/lock.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '-m ops pin --env dev --output "$OUTPUT"' in dry
