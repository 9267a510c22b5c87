"""A KMS-encrypted log group with retention in days from settings (validated against CloudWatch's allowed values)."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.constructs.removal import removal_policy


def encrypted_log_group(
    scope: Construct, id: str, *, key: kms.IKey, retention_days: int, destroy: bool, name: str | None = None
) -> logs.LogGroup:
    group = logs.LogGroup(
        scope,
        id,
        log_group_name=name,
        encryption_key=key,
        removal_policy=removal_policy(destroy),
    )
    cfn = group.node.default_child
    if not isinstance(cfn, logs.CfnLogGroup):
        raise TypeError(f"log group {id}: expected a CfnLogGroup as its default child, found {cfn!r}")
    cfn.retention_in_days = retention_days
    return group


def allow_log_groups(key: kms.Key) -> None:
    """Let CloudWatch Logs encrypt this account's log groups in the key's region with ``key``."""
    stack = Stack.of(key)
    key.add_to_resource_policy(
        iam.PolicyStatement(
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],  # in a key policy, "*" is this key
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:*"
                }
            },
        )
    )
