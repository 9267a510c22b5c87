"""The patient table (DynamoDB, partition key ``patient_id``) and, in dev, its synthetic seed records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from boto3.dynamodb.types import TypeSerializer
from constructs import Construct

from stacks.constructs.removal import removal_policy

PARTITION_KEY = "patient_id"


def patient_table(scope: Construct, id: str, *, table_name: str, key: kms.IKey, destroy: bool) -> dynamodb.Table:
    """On demand, encrypted with the environment key, point-in-time recovery on; retained and deletion-protected
    unless ``destroy``."""
    return dynamodb.Table(
        scope,
        id,
        table_name=table_name,
        partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        deletion_protection=not destroy,
        removal_policy=removal_policy(destroy),
    )


class SeedItems(Construct):
    """Writes ``items`` into ``table`` at deploy time: one PutItem per item (all, or the deployment fails).

    Items are fixed data in the template (a deterministic generator's output, never random values); the
    calls' parameters are hidden from the provider's logs. The provider's role may only put items into
    this table (through DynamoDB with the table's key) and write to ``log_group``; it runs in ``vpc`` if given.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        table: dynamodb.ITable,
        key: kms.IKey,
        items: Sequence[Mapping[str, Any]],
        log_group: logs.ILogGroup,
        vpc: ec2.IVpc | None = None,
        subnets: ec2.SubnetSelection | None = None,
    ) -> None:
        super().__init__(scope, id)
        if not items:
            raise ValueError("seed items: nothing to write")
        region = Stack.of(self).region
        self.role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description="Seeds the patient table"
        )
        for statement in (
            iam.PolicyStatement(actions=["dynamodb:PutItem"], resources=[table.table_arn]),
            iam.PolicyStatement(
                actions=["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"],
                resources=[key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
            ),
        ):
            self.role.add_to_policy(statement)
        serialize = TypeSerializer().serialize
        for item in items:
            pk = str(item[PARTITION_KEY])
            call = cr.AwsSdkCall(
                service="DynamoDB",
                action="putItem",
                parameters={"TableName": table.table_name, "Item": {k: serialize(v) for k, v in item.items()}},
                physical_resource_id=cr.PhysicalResourceId.of(pk),
                logging=cr.Logging.with_data_hidden(),
            )
            seed = cr.AwsCustomResource(
                self,
                pk,
                on_create=call,
                on_update=call,
                role=self.role,
                log_group=log_group,
                install_latest_aws_sdk=False,
                vpc=vpc,
                vpc_subnets=subnets,
            )
            seed.node.add_dependency(self.role)  # its policy too: the role must be able to write first
