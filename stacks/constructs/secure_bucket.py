"""Buckets that pass the compliance packs: SSE-KMS, versioning, no public access, TLS only, access-logged;
and the server-access-log bucket they log to."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import compliance
from stacks.constructs.removal import removal_policy


def secure_bucket(
    scope: Construct,
    id: str,
    *,
    key: kms.IKey,
    access_logs: s3.IBucket,
    destroy: bool,
    noncurrent_version_days: int,
) -> s3.Bucket:
    bucket = s3.Bucket(
        scope,
        id,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        bucket_key_enabled=True,
        versioned=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforce_ssl=True,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=f"{id.lower()}/",
        lifecycle_rules=[
            s3.LifecycleRule(
                noncurrent_version_expiration=Duration.days(noncurrent_version_days),
                abort_incomplete_multipart_upload_after=Duration.days(7),
            )
        ],
        removal_policy=removal_policy(destroy),
        auto_delete_objects=destroy,
    )
    compliance.acknowledge(bucket, *compliance.DATA_BUCKET)
    return bucket


def access_log_bucket(
    scope: Construct, id: str, *, retention_days: int, noncurrent_version_days: int, destroy: bool
) -> s3.Bucket:
    """The target of server access logging: SSE-S3, the only encryption log delivery supports."""
    bucket = s3.Bucket(
        scope,
        id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        versioned=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
        enforce_ssl=True,
        lifecycle_rules=[
            s3.LifecycleRule(
                expiration=Duration.days(retention_days),
                noncurrent_version_expiration=Duration.days(noncurrent_version_days),
            )
        ],
        removal_policy=removal_policy(destroy),
        auto_delete_objects=destroy,
    )
    compliance.acknowledge(bucket, *compliance.ACCESS_LOG_BUCKET)
    return bucket
