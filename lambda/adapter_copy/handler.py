"""A CloudFormation custom resource: this environment's own copy of a pinned adapter archive, checked against the pin.

Each pinned adapter (config/models.lock.json) is declared as a ``Custom::AdapterCopy`` before its adapter inference
component (stacks/constructs/adapter_component.py). On Create and Update the function copies the pinned archive from
the registry account's bucket into this environment's artifacts bucket under its content-addressed key
(``adapters/<sha256>.tar.gz``) with S3 CopyObject and ``ChecksumAlgorithm=SHA256``: S3 computes the SHA-256 of the
copy (https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html). A digest other than the
pin's means the source changed after it was pinned: the version just written is deleted (nothing half-written stays
under the key the component reads) and the deployment fails, naming both digests. The component's ``ArtifactUrl``
is that key, so at run time the environment reads only its own bucket.

Delete does nothing: a copy is content-addressed and may still serve a rollback; the bucket's lifecycle rules and
retention apply to it like to any other object.

Properties: ``Adapter`` (the component, for messages), ``SourceBucket``, ``SourceKey``, ``Sha256`` (64 hex digits),
``TargetBucket``, ``TargetKey``. Returns ``ArtifactUrl`` (``s3://TargetBucket/TargetKey``, also the physical id) and
``VersionId``.

The function answers CloudFormation itself: it PUTs the response to the pre-signed ``ResponseURL``
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html) whatever happens, so a
failure ends the deployment with its reason instead of a timeout. A new grant (the role's policy changes with each
pin) takes seconds to reach S3 and KMS: AccessDenied is retried for about a minute before it fails.

AWS calls: s3 CopyObject (source: GetObject, kms:Decrypt through S3; target: PutObject, kms:GenerateDataKey through
S3), s3 DeleteObject with a VersionId (the bad copy only).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import time
import urllib.request
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import BaseModel, Field, parse
from aws_lambda_powertools.utilities.parser.models import CloudFormationCustomResourceBaseModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

ACCESS_ATTEMPTS, ACCESS_WAIT_SECONDS = 7, 10.0  # IAM is eventually consistent: a fresh grant may take seconds
MAX_REASON = 1000  # the whole response must stay under CloudFormation's 4096 bytes

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "adapter-copy"))
sleep = time.sleep  # tests replace it: no test waits for real time


class CopyError(RuntimeError):
    """The copy cannot be made or is not the pinned archive; the message says what to check."""


class CopyRequest(BaseModel):
    adapter: str = Field(alias="Adapter", min_length=1)
    source_bucket: str = Field(alias="SourceBucket", min_length=3)
    source_key: str = Field(alias="SourceKey", min_length=1)
    sha256: str = Field(alias="Sha256", pattern=r"^[0-9a-f]{64}$")
    target_bucket: str = Field(alias="TargetBucket", min_length=3)
    target_key: str = Field(alias="TargetKey", min_length=1)

    @property
    def source(self) -> str:
        return f"s3://{self.source_bucket}/{self.source_key}"

    @property
    def target(self) -> str:
        return f"s3://{self.target_bucket}/{self.target_key}"


class CustomResourceEvent(CloudFormationCustomResourceBaseModel):
    request_type: str = Field(alias="RequestType", pattern=r"^(Create|Update|Delete)$")
    physical_resource_id: str | None = Field(None, alias="PhysicalResourceId")


@functools.cache
def s3() -> Any:
    """The S3 client, created on first use (tests replace it)."""
    return boto3.client("s3")


def _copy_object(req: CopyRequest) -> dict[str, Any]:
    attempt = 1
    while True:
        try:
            return s3().copy_object(
                CopySource={"Bucket": req.source_bucket, "Key": req.source_key},
                Bucket=req.target_bucket,
                Key=req.target_key,
                ChecksumAlgorithm="SHA256",
                TaggingDirective="REPLACE",  # the registry's object tags stay there (no tagging permissions needed)
            )
        except ClientError as e:
            code, message = e.response.get("Error", {}).get("Code", "?"), e.response.get("Error", {}).get("Message", "")
            if code == "AccessDenied" and attempt < ACCESS_ATTEMPTS:
                logger.warning("access denied, retrying", extra={"attempt": attempt, "adapter": req.adapter})
                attempt += 1
                sleep(ACCESS_WAIT_SECONDS)
                continue
            if code == "AccessDenied":
                why = (
                    "the registry account's bucket and key policies must list this account in "
                    "registry.reader_accounts, and the object must be the pinned one"
                )
            elif code in ("NoSuchKey", "404"):
                why = "the pinned archive does not exist: re-pin (make pin)"
            else:
                why = "see the error"
            raise CopyError(f"copying {req.source} to {req.target} failed: {code}: {message} ({why})") from None


def copy(req: CopyRequest) -> dict[str, str]:
    """Copy the archive, check its SHA-256 against the pin, and remove the copy if it is not the pinned archive."""
    response = _copy_object(req)
    result = response.get("CopyObjectResult", {})
    digest = result.get("ChecksumSHA256")
    got = base64.b64decode(digest).hex() if digest else None
    full = result.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
    if got == req.sha256 and full:
        logger.info("copied and checked", extra={"adapter": req.adapter, "source": req.source, "target": req.target})
        return {"ArtifactUrl": req.target, "VersionId": response.get("VersionId", "")}
    version = {"VersionId": response["VersionId"]} if response.get("VersionId") else {}
    s3().delete_object(Bucket=req.target_bucket, Key=req.target_key, **version)
    found = f"sha256 {got}" if got and full else "no full-object SHA-256"
    raise CopyError(
        f"adapter {req.adapter}: the copy of {req.source} has {found}, but config/models.lock.json pins sha256 "
        f"{req.sha256}: the archive changed after it was pinned; re-pin it (make pin) or restore it. "
        "The copy was removed."
    )


def respond(event: dict[str, Any], status: str, physical_id: str, reason: str, data: dict[str, str]) -> None:
    """CloudFormation's answer, PUT to the pre-signed ResponseURL (an empty Content-Type: the URL is signed without)."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:MAX_REASON],
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "NoEcho": False,
            "Data": data,
        }
    ).encode()
    request = urllib.request.Request(
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    physical_id = event.get("PhysicalResourceId") or f"{event.get('LogicalResourceId', 'AdapterCopy')}-not-copied"
    status, reason, data = "SUCCESS", "", {}
    try:
        request = parse(event=event, model=CustomResourceEvent)
        if request.request_type != "Delete":
            data = copy(CopyRequest.model_validate(request.resource_properties))
            physical_id, reason = data["ArtifactUrl"], "copied and checked against the pin"
    except Exception as e:  # reported, not hidden: CloudFormation fails the deployment with this reason
        logger.exception("adapter copy failed")
        status, reason = "FAILED", str(e)
    respond(event, status, physical_id, reason, data)
    return {"Status": status, "Reason": reason, "PhysicalResourceId": physical_id, "Data": data}
