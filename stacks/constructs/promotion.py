"""Promotion across accounts: an approval in the registry of record starts the delivery pipeline in the tooling account,
and the pipeline reads the registry through a role made for that alone.

EventBridge cannot start a pipeline in another account: a rule in the registry account forwards the approval to an
event bus in the tooling account (a role allowing ``events:PutEvents`` on exactly that bus; the bus's policy allows
exactly the registry account), where a rule starts the pipeline
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-account.html,
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-bus-perms.html). The event:
https://docs.aws.amazon.com/sagemaker/latest/dg/automating-sagemaker-with-eventbridge.html#eventbridge-model-package.

Registry account (the environment that trains): ``ApprovalForwarding`` and ``PinReader`` (the role the pipeline's
ResolvePin step assumes: read the group's versions and their adapter archives, nothing else).
Tooling account: ``ApprovalTrigger`` (the bus, its policy, the rule that starts the pipeline).
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import compliance
from stacks.constructs.model_registry import ModelRegistry

APPROVAL_SOURCE = "aws.sagemaker"
APPROVAL_DETAIL_TYPE = "SageMaker Model Package State Change"


def approval_pattern(group: str, account: str | None = None) -> events.EventPattern:
    """A version of ``group`` was approved (in ``account``, once the event has left it)."""
    return events.EventPattern(
        source=[APPROVAL_SOURCE],
        detail_type=[APPROVAL_DETAIL_TYPE],
        account=[account] if account else None,
        detail={"ModelPackageGroupName": [group], "ModelApprovalStatus": ["Approved"]},
    )


def pin_reader_role_name(group: str) -> str:
    """The registry's reader role: named, so the tooling account can name it before either is deployed."""
    return f"{group}-pin-reader"[:64]


def pin_reader_role_arn(partition: str, account: str, group: str) -> str:
    """The ARN of ``PinReader``'s role in the registry ``account``: another account's role cannot be referenced as
    an object, so its owner (this module) names it for the tooling account."""
    return f"arn:{partition}:iam::{account}:role/{pin_reader_role_name(group)}"


class ApprovalForwarding(Construct):
    """Registry account: approvals of ``group`` go to the tooling account's bus, with a role that may put events on
    that bus only."""

    def __init__(self, scope: Construct, id: str, *, group: str, bus_account: str, bus_region: str, bus_name: str):
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.bus_arn = stack.format_arn(
            service="events", account=bus_account, region=bus_region, resource="event-bus", resource_name=bus_name
        )
        bus = events.EventBus.from_event_bus_arn(self, "DeliveryBus", self.bus_arn)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "events.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description=f"Forwards approvals of {group} to the delivery pipeline's event bus",
        )
        self.rule = events.Rule(
            self,
            "Approved",
            description=f"{group}: a version was approved; the delivery pipeline in {bus_account} promotes it",
            event_pattern=approval_pattern(group),
            targets=[targets.EventBus(bus, role=self.role)],  # grants events:PutEvents on exactly this bus
        )


class PinReader(Construct):
    """Registry account: the role the delivery pipeline's ResolvePin step assumes from the tooling account. It may list
    and describe the group's versions, read the adapter archives the pipeline writes, and decrypt them through S3."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        registry: ModelRegistry,
        bucket: s3.IBucket,
        adapter_objects: str,
        key: kms.IKey,
        tooling_account: str,
    ):
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            role_name=pin_reader_role_name(registry.group_name),
            assumed_by=iam.AccountPrincipal(tooling_account),  # the tooling account grants it to ResolvePin only
            description=f"Read approved versions of {registry.group_name} and their adapter archives (make pin)",
        )
        registry.grant_read(self.role)
        self.role.add_to_policy(
            iam.PolicyStatement(sid="ListVersions", actions=["sagemaker:ListModelPackages"], resources=["*"])
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadAdapterArchives",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(adapter_objects)],
            )
        )
        compliance.acknowledge_wildcards(
            self.role, compliance.PIN_READER_ROLE, f"Resource::*/{adapter_objects.replace('*', '[*]')}", "Resource::[*]"
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="DecryptAdapterArchivesThroughS3",
                actions=["kms:Decrypt"],
                resources=[key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
            )
        )
        self.role_arn = self.role.role_arn


class ApprovalTrigger(Construct):
    """Tooling account: the bus the registry account forwards approvals to (its policy allows exactly that account)
    and the rule that starts ``pipeline`` on them."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bus_name: str,
        registry_account: str,
        group: str,
        pipeline: codepipeline.IPipeline,
    ):
        super().__init__(scope, id)
        self.bus = events.EventBus(self, "Bus", event_bus_name=bus_name, description=f"Approvals of {group}")
        self.bus.add_to_resource_policy(  # an AWS::Events::EventBusPolicy of exactly this statement
            iam.PolicyStatement(
                sid="RegistryAccountPutsApprovals",
                principals=[iam.AccountPrincipal(registry_account)],
                actions=["events:PutEvents"],
                resources=[self.bus.event_bus_arn],
            )
        )
        self.rule = events.Rule(
            self,
            "Approved",
            event_bus=self.bus,
            description=f"{group}: a version was approved in {registry_account}; resolve the pin and promote it",
            event_pattern=approval_pattern(group, registry_account),
            targets=[targets.CodePipeline(pipeline)],  # a role allowed to start exactly this pipeline
        )
