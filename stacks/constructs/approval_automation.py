"""Approval → deployment: a model package approved in this group updates the adapter inference component.

EventBridge (``aws.sagemaker`` / ``SageMaker Model Package State Change`` / this group / ``Approved``)
→ ``lambda/deploy_adapter`` (create or rolling-update the adapter component; no waiting) with a
DynamoDB idempotency table (KMS, PITR), a KMS-encrypted TLS-only dead-letter queue for failed
invocations, and alarms on errors and on dead letters. The function's role may read only this
group's packages and touch only this endpoint's adapter component.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.constructs.log_group import encrypted_log_group
from stacks.constructs.model_registry import ModelRegistry
from stacks.constructs.python_bundle import python_function_code
from stacks.constructs.removal import removal_policy

FUNCTION_DIR = Path(__file__).resolve().parents[2] / "lambda" / "deploy_adapter"
RUNTIME = lambda_.Runtime.PYTHON_3_14
EVENT_DETAIL_TYPE = "SageMaker Model Package State Change"


class ApprovalAutomation(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        registry: ModelRegistry,
        endpoint_name: str,
        base_component_name: str,
        adapter_component_name: str,
        grant_manage_components: Callable[[iam.IGrantable], Any],
        key: kms.IKey,
        destroy: bool,
        log_retention_days: int,
        reserved_concurrency: int,
        vpc: ec2.IVpc | None = None,
        subnets: ec2.SubnetSelection | None = None,
        security_group: ec2.ISecurityGroup | None = None,
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, id)
        removal = removal_policy(destroy)

        self.table = dynamodb.TableV2(
            self,
            "Idempotency",
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expiration",
            encryption=dynamodb.TableEncryptionV2.customer_managed_key(key),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=removal,
        )
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=removal,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Deploys approved {registry.group_name} adapters to {endpoint_name}",
        )
        log_group = encrypted_log_group(self, "Logs", key=key, retention_days=log_retention_days, destroy=destroy)
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            handler="handler.handler",
            code=python_function_code(FUNCTION_DIR, RUNTIME),
            role=self.role,
            description=f"Approved {registry.group_name} package -> adapter component {adapter_component_name}",
            timeout=Duration.seconds(60),
            memory_size=256,
            reserved_concurrent_executions=reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            dead_letter_queue=self.dead_letters,
            retry_attempts=2,
            max_event_age=Duration.hours(6),
            log_group=log_group,
            environment={
                "ENDPOINT_NAME": endpoint_name,
                "BASE_COMPONENT_NAME": base_component_name,
                "ADAPTER_COMPONENT_NAME": adapter_component_name,
                "MODEL_PACKAGE_GROUP_NAME": registry.group_name,
                "IDEMPOTENCY_TABLE": self.table.table_name,
                "POWERTOOLS_SERVICE_NAME": "deploy-adapter",
            },
            vpc=vpc,
            vpc_subnets=subnets if vpc else None,
            security_groups=[security_group] if vpc and security_group else None,
        )
        log_group.grant_write(self.role)
        self.table.grant(
            self.role, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"
        )
        # The table and the dead-letter queue are encrypted with the key (the Lambda service adds sqs:SendMessage).
        key.grant(self.role, "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")
        registry.grant_read(self.role)
        grant_manage_components(self.role)  # the endpoint's own grant: only its adapter component
        if vpc:
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="NetworkInterfacesInVpc",
                    actions=[
                        "ec2:CreateNetworkInterface",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DescribeSubnets",
                        "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses",
                        "ec2:UnassignPrivateIpAddresses",
                    ],
                    resources=["*"],
                )
            )
        self.function.node.add_dependency(self.role)  # every permission exists before the first invocation

        self.rule = events.Rule(
            self,
            "Approved",
            description=f"{registry.group_name}: a model package was approved",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[EVENT_DETAIL_TYPE],
                detail={"ModelPackageGroupName": [registry.group_name], "ModelApprovalStatus": ["Approved"]},
            ),
            targets=[targets.LambdaFunction(self.function, retry_attempts=4, max_event_age=Duration.hours(2))],
        )

        self.error_alarm = self.function.metric_errors(period=Duration.minutes(5)).create_alarm(
            self,
            "Errors",
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"deploy_adapter failed for {registry.group_name} (see its logs; retries then the DLQ)",
        )
        self.dead_letter_alarm = self.dead_letters.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(5)
        ).create_alarm(
            self,
            "DeadLettersVisible",
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"An approval of {registry.group_name} was not deployed: inspect the dead-letter queue",
        )
        for alarm in (self.error_alarm, self.dead_letter_alarm):
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))
