"""The endpoint's execution role: what SageMaker may do on the endpoint's behalf, and nothing else.

Read the weights (in the artifacts bucket or JumpStart's gated bucket) and adapter archives under their
prefixes, decrypt ours (through S3 only), pull
the image (granted by the image itself), write the endpoint's and components' logs, publish
SageMaker metrics. In a VPC, the network grants it the endpoint's network interfaces
(NetworkStack.grant_network_interfaces).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import compliance

# Namespaces SageMaker publishes endpoint and inference component metrics to with this role.
METRIC_NAMESPACES = ["/aws/sagemaker/Endpoints", "/aws/sagemaker/InferenceComponents"]


def endpoint_execution_role(
    scope: Construct,
    id: str,
    *,
    bucket: s3.IBucket,
    key: kms.IKey,
    weights: Sequence[tuple[str, str]],
    archive_patterns: Sequence[str],
    log_groups: Sequence[logs.ILogGroup],
) -> iam.Role:
    stack = Stack.of(scope)
    role = iam.Role(
        scope,
        id,
        assumed_by=iam.ServicePrincipal(
            "sagemaker.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
        ),
        description="SageMaker inference endpoint execution role",
    )

    def allow(actions: list[str], resources: list[str], conditions: dict | None = None) -> None:
        role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources, conditions=conditions))

    # Weights are downloaded by prefix (list + get) from (bucket ARN, prefix); adapter archives by key or key pattern.
    objects = [f"{b}/{p}*" for b, p in weights] + [bucket.arn_for_objects(k) for k in archive_patterns]
    allow(["s3:GetObject"], objects)
    wildcards = [o for o in objects if "*" in o] + ["*"]
    prefixes: dict[str, list[str]] = {}
    for bucket_arn, p in weights:
        prefixes.setdefault(bucket_arn, []).append(f"{p}*")
    for bucket_arn, listed in prefixes.items():
        allow(["s3:ListBucket"], [bucket_arn], {"StringLike": {"s3:prefix": listed}})
    allow(["kms:Decrypt"], [key.key_arn], {"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}})
    allow(
        ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
        [g.log_group_arn for g in log_groups],
    )
    # PutMetricData has no resource-level permissions: the namespace condition scopes it.
    allow(["cloudwatch:PutMetricData"], ["*"], {"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACES}})
    compliance.acknowledge_wildcards(role, compliance.ENDPOINT_ROLE_WILDCARDS, resources=tuple(wildcards))
    return role
