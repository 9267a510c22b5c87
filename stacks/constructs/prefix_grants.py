"""Grants limited to one key prefix of a bucket (objects under it, listing only it) and the bucket's key (through
S3 only). The one wildcard such a grant makes (the objects under the prefix) is acknowledged with it."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from stacks import compliance

READ = ["s3:GetObject", "s3:GetObjectVersion"]
WRITE = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"]


def grant_prefix(
    grantable: iam.IGrantable, bucket: s3.IBucket, prefix: str, *, key: kms.IKey | None, write: bool = False
) -> None:
    """Read (and with ``write``, write and delete) objects under ``prefix/``; list only that prefix."""
    prefix = prefix.strip("/")
    if not prefix:
        raise ValueError("grant_prefix: an empty prefix would grant the whole bucket")
    principal = grantable.grant_principal
    principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=READ + (WRITE if write else []),
            resources=[bucket.arn_for_objects(f"{prefix}/*")],
        )
    )
    principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}},
        )
    )
    compliance.acknowledge_grant(grantable, compliance.PREFIX_OBJECTS, f"Resource::*/{prefix}/[*]")
    if key is not None:  # SSE-KMS: reading decrypts; writing also makes data keys (no kms:* wildcards), via S3 only
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", *(["kms:GenerateDataKey"] if write else [])],
                resources=[key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{Stack.of(bucket).region}.amazonaws.com"}},
            )
        )
