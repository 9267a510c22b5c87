"""Compliance gates: cdk-nag AwsSolutions + HIPAA Security, and every acknowledgment with its reason.

cdk-nag 3 runs as a CDK policy-validation plugin: any unacknowledged finding fails synth.
Acknowledgments live here, in one place, as named groups; stacks apply a group to the
construct it is about with :func:`acknowledge`, so a reason is never written twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks
from constructs import IConstruct


@dataclass(frozen=True)
class Ack:
    rule: str
    reason: str


def register(app: App) -> None:
    """Run both packs over every stack of the app; findings fail synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app))


def acknowledge(construct: IConstruct, *acks: Ack) -> None:
    for ack in acks:
        Validations.of(construct).acknowledge(Acknowledgment(id=ack.rule, reason=ack.reason))


# --- every environment ------------------------------------------------------------------------

STAGE_WIDE = (
    Ack("HIPAA.Security-IAMNoInlinePolicy",
        "Each role's permissions are CDK grants scoped to this environment's resources, kept inline so they share the "
        "role's lifecycle and cannot be attached elsewhere (AWS guidance for a strict one-to-one policy)."),
)

# --- data -------------------------------------------------------------------------------------

ACCESS_LOG_BUCKET = (
    Ack("AwsSolutions-S1", "This is the server access log bucket; logging it into itself would loop."),
    Ack("HIPAA.Security-S3BucketLoggingEnabled", "This is the server access log bucket; logging it into itself would loop."),
    Ack("HIPAA.Security-S3DefaultEncryptionKMS",
        "S3 server access log delivery supports only SSE-S3 on the target bucket; it holds request metadata, not PHI."),
    Ack("HIPAA.Security-S3BucketReplicationEnabled",
        "Access logs are an audit copy already; cross-region replication of logs is not required by our retention policy."),
)

DATA_BUCKET = (
    Ack("HIPAA.Security-S3BucketReplicationEnabled",
        "Versioning plus KMS and retention protect the data; cross-region replication is a per-deployment DR choice, "
        "not enabled for synthetic training data and reports."),
)

AUTO_DELETE_PROVIDER = (
    Ack("AwsSolutions-IAM4", "CDK-managed provider for auto-deleting dev buckets; uses the AWS-managed basic execution role."),
    Ack("AwsSolutions-L1", "CDK-managed provider runtime is chosen by aws-cdk-lib and upgraded with it."),
    Ack("HIPAA.Security-LambdaConcurrency", "CDK-managed provider runs only on stack deletion in dev."),
    Ack("HIPAA.Security-LambdaDLQ", "CDK-managed provider is invoked synchronously by CloudFormation, which reports failures."),
    Ack("HIPAA.Security-LambdaInsideVPC", "CDK-managed provider only calls the S3 API to empty a dev bucket on deletion."),
)

# --- network ----------------------------------------------------------------------------------

RESTRICT_DEFAULT_SG_PROVIDER = (
    Ack("AwsSolutions-IAM4", "CDK-managed provider that strips the default security group's rules; AWS-managed basic execution role."),
    Ack("AwsSolutions-L1", "CDK-managed provider runtime is chosen by aws-cdk-lib and upgraded with it."),
    Ack("HIPAA.Security-LambdaConcurrency", "CDK-managed provider runs only on stack create/update."),
    Ack("HIPAA.Security-LambdaDLQ", "CDK-managed provider is invoked synchronously by CloudFormation, which reports failures."),
    Ack("HIPAA.Security-LambdaInsideVPC", "CDK-managed provider calls only the EC2 API to close the default security group."),
)

AVAILABILITY_ZONES = (
    Ack("CloudFormation-Validate::W3010",
        "The AZ names come from settings on purpose: synth must not look them up in the account."),
)

# --- mlops ------------------------------------------------------------------------------------

# --- inference --------------------------------------------------------------------------------

ENDPOINT_ROLE_WILDCARDS = (
    "Wildcards only where IAM offers nothing narrower: objects under each model's weight prefix and adapter archives "
    "(*.tar.gz) under the pipeline prefix; ecr:GetAuthorizationToken, cloudwatch:PutMetricData (limited by a "
    "namespace condition) and ec2:Describe* have no resource-level permissions; network interfaces are limited to "
    "the environment's VPC by an ec2:Vpc condition."
)

ENDPOINT_CONFIG = (
    Ack("HIPAA.Security-SageMakerEndpointConfigurationKMSKeyConfigured",
        "Every GPU instance type the endpoint may use (settings.ACCELERATORS) has local NVMe instance storage, which "
        "the instance encrypts in hardware; SageMaker refuses KmsKeyId for such instance types. Weights and adapters "
        "stay KMS-encrypted at rest in S3."),
)


# --- agent ------------------------------------------------------------------------------------

# --- delivery ---------------------------------------------------------------------------------
