"""Custom::AdapterCopy: the pinned archive is copied into the environment's bucket under its content-addressed key and
checked against the pin's SHA-256 (computed by S3); a mismatch removes the copy and fails the deployment; every
outcome is answered to CloudFormation's response URL."""

from __future__ import annotations

import base64
import hashlib

import boto3
from botocore.stub import Stubber

from .conftest import ARCHIVE, REGION, SHA256, SOURCE, SOURCE_KEY, TARGET

TARGET_KEY = f"adapters/{SHA256}.tar.gz"


def event(cloudformation, request: str = "Create", **properties) -> dict:
    props = {
        "ServiceToken": "arn:aws:lambda:us-east-1:222222222222:function:adapter-copy",
        "Adapter": "clinical-lora",
        "SourceBucket": SOURCE,
        "SourceKey": SOURCE_KEY,
        "Sha256": SHA256,
        "TargetBucket": TARGET,
        "TargetKey": TARGET_KEY,
        **properties,
    }
    e = {
        "RequestType": request,
        "ServiceToken": props["ServiceToken"],
        "ResponseURL": cloudformation.url,
        "StackId": "arn:aws:cloudformation:us-east-1:222222222222:stack/Staging-Inference/1",
        "RequestId": "req-1",
        "LogicalResourceId": "AdapterCopiesCopyclinicallora879A0991",
        "ResourceType": "Custom::AdapterCopy",
        "ResourceProperties": props,
    }
    if request != "Create":
        e["PhysicalResourceId"] = f"s3://{TARGET}/adapters/{'0' * 64}.tar.gz"
    return e


def versions(s3, key: str) -> list[dict]:
    return [v for v in s3.list_object_versions(Bucket=TARGET, Prefix=key).get("Versions", []) if v["Key"] == key]


def test_create_copies_the_archive_under_its_hash_and_answers_success(handler, s3, cloudformation, context):
    result = handler.handler(event(cloudformation), context)
    (answer,) = cloudformation.received
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == f"s3://{TARGET}/{TARGET_KEY}" == answer["Data"]["ArtifactUrl"]
    assert (answer["StackId"], answer["RequestId"]) == (
        "arn:aws:cloudformation:us-east-1:222222222222:stack/Staging-Inference/1",
        "req-1",
    )
    assert answer["LogicalResourceId"] == "AdapterCopiesCopyclinicallora879A0991"
    copy = s3.get_object(Bucket=TARGET, Key=TARGET_KEY, ChecksumMode="ENABLED")
    assert copy["Body"].read() == ARCHIVE
    assert base64.b64decode(copy["ChecksumSHA256"]).hex() == SHA256  # S3's own digest of the copy
    assert answer["Data"]["VersionId"] == copy["VersionId"] and result["Status"] == "SUCCESS"
    assert cloudformation.headers[0].get("Content-Type", "") == ""  # the pre-signed URL is signed without one


def test_a_new_pin_updates_to_its_own_key(handler, s3, cloudformation, context):
    """Update (a new pin) copies to the new key; the physical id moves with it, so CloudFormation's later Delete of
    the old one is a no-op."""
    handler.handler(event(cloudformation, "Update"), context)
    assert cloudformation.received[0]["Status"] == "SUCCESS"
    assert cloudformation.received[0]["PhysicalResourceId"] == f"s3://{TARGET}/{TARGET_KEY}"
    assert len(versions(s3, TARGET_KEY)) == 1


def test_a_source_that_changed_after_it_was_pinned_fails_and_leaves_no_copy(handler, s3, cloudformation, context):
    pinned = hashlib.sha256(b"the archive that was reviewed").hexdigest()
    key = f"adapters/{pinned}.tar.gz"
    handler.handler(event(cloudformation, Sha256=pinned, TargetKey=key), context)
    (answer,) = cloudformation.received
    assert answer["Status"] == "FAILED"
    assert f"has sha256 {SHA256}, but config/models.lock.json pins sha256 {pinned}" in answer["Reason"]
    assert "The copy was removed" in answer["Reason"]
    assert versions(s3, key) == []  # nothing half-written under the key the component reads


def test_a_missing_source_fails_naming_it(handler, s3, cloudformation, context):
    handler.handler(event(cloudformation, SourceKey="pipeline/gone/model.tar.gz"), context)
    (answer,) = cloudformation.received
    assert answer["Status"] == "FAILED"
    assert f"copying s3://{SOURCE}/pipeline/gone/model.tar.gz to s3://{TARGET}/{TARGET_KEY} failed" in answer["Reason"]
    assert "NoSuchKey" in answer["Reason"] and "re-pin (make pin)" in answer["Reason"]
    assert answer["PhysicalResourceId"].endswith("-not-copied")


def test_delete_keeps_the_copy(handler, s3, cloudformation, context):
    handler.handler(event(cloudformation), context)
    handler.handler(event(cloudformation, "Delete"), context)
    assert [a["Status"] for a in cloudformation.received] == ["SUCCESS", "SUCCESS"]
    assert cloudformation.received[1]["PhysicalResourceId"] == f"s3://{TARGET}/adapters/{'0' * 64}.tar.gz"
    assert len(versions(s3, TARGET_KEY)) == 1  # content-addressed: a rollback may still serve it


def test_malformed_properties_fail_naming_the_field(handler, cloudformation, context):
    handler.handler(event(cloudformation, Sha256="not-a-digest"), context)
    (answer,) = cloudformation.received
    assert answer["Status"] == "FAILED" and "Sha256" in answer["Reason"]


def test_access_denied_is_retried_while_a_new_grant_propagates(handler_module, cloudformation, context, monkeypatch):
    """IAM is eventually consistent and the role's policy changes with each pin: AccessDenied is retried, then
    explained. Calls checked against the S3 service model (Stubber)."""
    client = boto3.client("s3", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    expected = {
        "CopySource": {"Bucket": SOURCE, "Key": SOURCE_KEY},
        "Bucket": TARGET,
        "Key": TARGET_KEY,
        "ChecksumAlgorithm": "SHA256",
        "TaggingDirective": "REPLACE",
    }
    for _ in range(2):
        stub.add_client_error("copy_object", "AccessDenied", "Access Denied", 403, expected_params=expected)
    digest = base64.b64encode(bytes.fromhex(SHA256)).decode()
    stub.add_response(
        "copy_object",
        {"CopyObjectResult": {"ChecksumSHA256": digest, "ChecksumType": "FULL_OBJECT"}, "VersionId": "v1"},
        expected,
    )
    waits: list[float] = []
    monkeypatch.setattr(handler_module, "s3", lambda: client)
    monkeypatch.setattr(handler_module, "sleep", waits.append)
    with stub:
        handler_module.handler(event(cloudformation), context)
        stub.assert_no_pending_responses()
    assert cloudformation.received[0]["Status"] == "SUCCESS" and len(waits) == 2

    cloudformation.received.clear()
    stub = Stubber(client)
    for _ in range(handler_module.ACCESS_ATTEMPTS):
        stub.add_client_error("copy_object", "AccessDenied", "Access Denied", 403, expected_params=expected)
    with stub:
        handler_module.handler(event(cloudformation), context)
        stub.assert_no_pending_responses()
    (answer,) = cloudformation.received
    assert answer["Status"] == "FAILED" and "registry.reader_accounts" in answer["Reason"]


def test_a_composite_checksum_is_not_taken_for_the_archives_digest(
    handler_module, cloudformation, context, monkeypatch
):
    client = boto3.client("s3", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    digest = base64.b64encode(bytes.fromhex(SHA256)).decode()
    stub.add_response(
        "copy_object", {"CopyObjectResult": {"ChecksumSHA256": digest, "ChecksumType": "COMPOSITE"}, "VersionId": "v9"}
    )
    stub.add_response("delete_object", {}, {"Bucket": TARGET, "Key": TARGET_KEY, "VersionId": "v9"})
    monkeypatch.setattr(handler_module, "s3", lambda: client)
    with stub:
        handler_module.handler(event(cloudformation), context)
        stub.assert_no_pending_responses()
    (answer,) = cloudformation.received
    assert answer["Status"] == "FAILED" and "no full-object SHA-256" in answer["Reason"]
