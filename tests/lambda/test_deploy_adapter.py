"""deploy_adapter: approved package → create/update the adapter inference component; everything else skipped."""

from __future__ import annotations

import copy
import datetime as dt
import re

import pytest
from botocore.exceptions import ClientError

GROUP = "clinical-diagnosis-llama"
ACCOUNT = "111111111111"
COMPONENT = "clinical-lora"
COMPONENT_ARN = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:inference-component/{COMPONENT}"
ENDPOINT = "clinical-llm"
BASE = "llama32-3b"
EXECUTION = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:pipeline/clinical-finetune/execution/abc123def456"
RUN_ID = "0123456789abcdef0123456789abcdef"


def package_arn(version: int = 3) -> str:
    return f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/{GROUP}/{version}"


def artifact(version: int = 3) -> str:
    return f"s3://clinical-artifacts-{ACCOUNT}/adapters/run-{version}/adapter.tar.gz"


def event(status: str = "Approved", group: str = GROUP, version: int = 3, event_id: str = "e-1") -> dict:
    """The shape EventBridge delivers for a model package state change (detail mirrors DescribeModelPackage)."""
    return {
        "version": "0",
        "id": f"8c5b3f3e-0c1a-4a8e-9d55-{event_id.encode().hex():0>12}"[:36],
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "account": ACCOUNT,
        "time": "2026-11-02T10:15:00Z",
        "region": "us-east-1",
        "resources": [package_arn(version)],
        "detail": {
            "ModelPackageGroupName": group,
            "ModelPackageVersion": version,
            "ModelPackageArn": package_arn(version).replace(GROUP, group),
            "CreationTime": 1793614500000,
            "InferenceSpecification": {"Containers": [{"Image": "img", "ModelDataUrl": artifact(version)}]},
            "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": status,
        },
    }


def package(version: int = 3, status: str = "Approved", url: str | None = None, metadata: dict | None = None) -> dict:
    """A DescribeModelPackage response (validated against the service model by the Stubber)."""
    return {
        "ModelPackageName": GROUP,
        "ModelPackageGroupName": GROUP,
        "ModelPackageVersion": version,
        "ModelPackageArn": package_arn(version),
        "CreationTime": dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC),
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "ModelApprovalStatus": status,
        "InferenceSpecification": {
            "Containers": [
                {
                    "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/sglang:v0.5.23",
                    "ModelDataUrl": url or artifact(version),
                }
            ],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        "CustomerMetadataProperties": (
            {"PipelineExecutionArn": EXECUTION, "MlflowRunId": RUN_ID} if metadata is None else metadata
        ),
    }


def component(url: str, endpoint: str = ENDPOINT) -> dict:
    """A DescribeInferenceComponent response for the adapter component."""
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    return {
        "InferenceComponentName": COMPONENT,
        "InferenceComponentArn": COMPONENT_ARN,
        "EndpointName": endpoint,
        "EndpointArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{endpoint}",
        "VariantName": "AllTraffic",
        "Specification": {"BaseInferenceComponentName": BASE, "Container": {"ArtifactUrl": url}},
        "CreationTime": now,
        "LastModifiedTime": now,
        "InferenceComponentStatus": "InService",
    }


def lineage(version: int = 3, execution: str = EXECUTION, run_id: str = RUN_ID) -> list[dict]:
    return [
        {"Key": "ModelPackageArn", "Value": package_arn(version)},
        {"Key": "PipelineExecutionArn", "Value": execution},
        {"Key": "MlflowRunId", "Value": run_id},
    ]


def spec(version: int = 3) -> dict:
    return {"BaseInferenceComponentName": BASE, "Container": {"ArtifactUrl": artifact(version)}}


def expect_package(stub, **kw) -> None:
    version = kw.get("version", 3)
    stub.add_response("describe_model_package", package(**kw), {"ModelPackageName": package_arn(version)})


def expect_no_component(stub) -> None:
    stub.add_client_error(
        "describe_inference_component",
        service_error_code="ValidationException",
        service_message=f'Could not find inference component "{COMPONENT}".',
        http_status_code=400,
        expected_params={"InferenceComponentName": COMPONENT},
    )


def expect_create(stub, version: int = 3, tags: list[dict] | None = None) -> None:
    stub.add_response(
        "create_inference_component",
        {"InferenceComponentArn": COMPONENT_ARN},
        {
            "InferenceComponentName": COMPONENT,
            "EndpointName": ENDPOINT,
            "Specification": spec(version),
            "Tags": tags or lineage(version),
        },
    )


def records(logs, action: str) -> list[dict]:
    return [r for r in logs() if r.get("action") == action]


def test_approved_package_creates_the_adapter_component(handler_module, stub, logs, context):
    expect_package(stub)
    expect_no_component(stub)
    expect_create(stub)

    result = handler_module.handler(event(), context)

    assert result["action"] == "created" and result["artifact"] == artifact()
    (line,) = records(logs, "created")
    assert line["package"] == package_arn() and line["component"] == COMPONENT
    assert line["correlation_id"] == event()["id"] and line["service"] == "deploy-adapter"


def test_component_with_another_artifact_is_updated_and_retagged(handler_module, stub, logs, context):
    expect_package(stub, version=4)
    stub.add_response("describe_inference_component", component(artifact(3)), {"InferenceComponentName": COMPONENT})
    stub.add_response(
        "update_inference_component",
        {"InferenceComponentArn": COMPONENT_ARN},
        {"InferenceComponentName": COMPONENT, "Specification": spec(4)},
    )
    stub.add_response("add_tags", {"Tags": lineage(4)}, {"ResourceArn": COMPONENT_ARN, "Tags": lineage(4)})

    assert handler_module.handler(event(version=4), context)["action"] == "updated"
    assert records(logs, "updated")[0]["artifact"] == artifact(4)


def test_component_already_serving_the_artifact_is_left_alone(handler_module, stub, logs, context):
    expect_package(stub)
    stub.add_response("describe_inference_component", component(artifact(3)), {"InferenceComponentName": COMPONENT})

    assert handler_module.handler(event(), context)["action"] == "unchanged"  # no create/update stubbed
    assert records(logs, "unchanged")


def _malformed() -> list[tuple[str, object, str]]:
    no_arn = event()
    del no_arn["detail"]["ModelPackageArn"]
    bad_arn = event()
    bad_arn["detail"]["ModelPackageArn"] = "not-an-arn"
    other_type = event()
    other_type["detail-type"] = "SageMaker Model State Change"
    no_detail = event()
    del no_detail["detail"]
    return [
        ("missing ARN", no_arn, "detail.ModelPackageArn: Field required"),
        ("bad ARN", bad_arn, "detail.ModelPackageArn: String should match pattern"),
        ("other detail-type", other_type, "detail-type: Input should be 'SageMaker Model Package State Change'"),
        ("no detail", no_detail, "detail: Field required"),
        ("not an object", ["x"], "malformed event"),
        ("empty", {}, "id: Field required"),
    ]


@pytest.mark.parametrize(
    ("evt", "level", "reason"),
    [
        (event(status="Rejected"), "INFO", "approval status is Rejected, not Approved"),
        (event(status="PendingManualApproval"), "INFO", "approval status is PendingManualApproval, not Approved"),
        (event(group="another-group"), "INFO", "model package group 'another-group' is not 'clinical-diagnosis-llama'"),
        *[(e, "WARNING", r) for _, e, r in _malformed()],
    ],
    ids=["rejected", "pending", "foreign-group", *[n for n, _, _ in _malformed()]],
)
def test_events_not_acted_on_make_no_call_and_log_why(handler_module, stub, logs, context, table, evt, level, reason):
    result = handler_module.handler(copy.deepcopy(evt), context)  # any SageMaker call would fail: none is stubbed

    assert result["action"] == "skipped" and reason in result["reason"]
    (line,) = records(logs, "skipped")
    assert line["level"] == level and reason in line["reason"]
    assert table.scan()["Items"] == []  # nothing recorded: skipping needs no idempotency


def test_the_same_approval_twice_changes_once(handler_module, stub, logs, context, table):
    expect_package(stub)
    expect_no_component(stub)
    expect_create(stub)
    expect_package(stub)  # each duplicate re-reads the registry, then finds the recorded result
    expect_package(stub)

    first = handler_module.handler(event(event_id="e-1"), context)
    again = handler_module.handler(event(event_id="e-1"), context)  # EventBridge redelivery
    sibling = handler_module.handler(event(event_id="e-2"), context)  # SageMaker's second event, new id

    assert first["action"] == "created" and again == first and sibling == first
    assert len(records(logs, "created")) == 1
    (item,) = table.scan()["Items"]
    assert item["status"] == "COMPLETED"


def test_a_failed_deployment_is_not_recorded_so_the_retry_deploys(handler_module, stub, context, table):
    expect_package(stub)
    expect_no_component(stub)
    stub.add_client_error(
        "create_inference_component",
        service_error_code="ThrottlingException",
        service_message="Rate exceeded",
        http_status_code=400,
    )
    expect_package(stub)
    expect_no_component(stub)
    expect_create(stub)

    with pytest.raises(ClientError, match="ThrottlingException"):
        handler_module.handler(event(), context)
    assert table.scan()["Items"] == []
    assert handler_module.handler(event(), context)["action"] == "created"


def test_a_duplicate_during_deployment_is_skipped(handler_module, stub, logs, context, monkeypatch):
    expect_package(stub)
    expect_package(stub)  # the duplicate's registry read
    expect_no_component(stub)
    expect_create(stub)
    client = handler_module.sagemaker()
    seen = {}

    class DuplicateArrives:
        """Delivers a second copy of the event while the first is deploying (inside DescribeInferenceComponent)."""

        def __getattr__(self, name):
            return getattr(client, name)

        def describe_inference_component(self, **kw):
            seen["duplicate"] = handler_module.handler(event(event_id="e-2"), context)
            return client.describe_inference_component(**kw)

    monkeypatch.setattr(handler_module, "sagemaker", DuplicateArrives)

    assert handler_module.handler(event(), context)["action"] == "created"
    assert seen["duplicate"]["action"] == "skipped"
    assert "being deployed by another invocation" in seen["duplicate"]["reason"]


def test_a_package_no_longer_approved_is_skipped_and_not_remembered(handler_module, stub, context, table):
    expect_package(stub, status="Rejected")
    expect_package(stub)  # approved again later: the earlier skip must not block it
    expect_no_component(stub)
    expect_create(stub)

    result = handler_module.handler(event(), context)

    assert result["action"] == "skipped" and "now Rejected, no longer Approved" in result["reason"]
    assert table.scan()["Items"] == []
    assert handler_module.handler(event(event_id="e-2"), context)["action"] == "created"


@pytest.mark.parametrize("url", ["s3://bucket/adapters/run-3/", "s3://bucket/adapter.zip", "https://x/adapter.tar.gz"])
def test_a_package_without_a_tar_gz_artifact_is_skipped_with_an_error(handler_module, stub, logs, context, url):
    expect_package(stub, url=url)

    result = handler_module.handler(event(), context)

    assert result["action"] == "skipped"
    (line,) = records(logs, "skipped")
    assert line["level"] == "ERROR" and "ModelDataUrl" in line["reason"]


def test_missing_lineage_is_tagged_empty_and_logged(handler_module, stub, logs, context):
    expect_package(stub, metadata={"PipelineExecutionArn": EXECUTION})
    expect_no_component(stub)
    expect_create(stub, tags=lineage(run_id=""))

    assert handler_module.handler(event(), context)["action"] == "created"
    (warning,) = [r for r in logs() if r["message"] == "lineage incomplete"]
    assert warning["missing_metadata"] == ["MlflowRunId"]


def test_a_component_on_another_endpoint_is_an_error(handler_module, stub, context, table):
    expect_package(stub)
    stub.add_response(
        "describe_inference_component",
        component(artifact(2), endpoint="other-endpoint"),
        {"InferenceComponentName": COMPONENT},
    )

    with pytest.raises(handler_module.DeployError, match="belongs to endpoint 'other-endpoint'"):
        handler_module.handler(event(), context)
    assert table.scan()["Items"] == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"ENDPOINT_NAME": None, "IDEMPOTENCY_TABLE": None},
            "missing environment variable(s): ENDPOINT_NAME, IDEMPOTENCY_TABLE",
        ),
        ({"IDEMPOTENCY_TTL_SECONDS": "an hour"}, "IDEMPOTENCY_TTL_SECONDS must be a positive integer, got 'an hour'"),
    ],
)
def test_settings_name_what_is_wrong(handler_module, monkeypatch, change, message):
    for name in (
        "ENDPOINT_NAME",
        "BASE_COMPONENT_NAME",
        "ADAPTER_COMPONENT_NAME",
        "MODEL_PACKAGE_GROUP_NAME",
        "IDEMPOTENCY_TABLE",
    ):
        monkeypatch.setenv(name, "x")
    for name, value in change.items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)

    with pytest.raises(handler_module.ConfigError, match=re.escape(message)):
        handler_module.Settings.from_env()
