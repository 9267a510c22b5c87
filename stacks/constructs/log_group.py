"""A KMS-encrypted log group with retention in days from settings (validated against CloudWatch's allowed values)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct


def encrypted_log_group(
    scope: Construct, id: str, *, key: kms.IKey, retention_days: int, destroy: bool, name: str | None = None
) -> logs.LogGroup:
    group = logs.LogGroup(
        scope,
        id,
        log_group_name=name,
        encryption_key=key,
        removal_policy=RemovalPolicy.DESTROY if destroy else RemovalPolicy.RETAIN,
    )
    group.node.default_child.retention_in_days = retention_days
    return group
