"""The removal policy of stateful resources: destroyed in development, retained elsewhere, but never blocking a retry.

``RETAIN_ON_UPDATE_OR_DELETE`` is CloudFormation's ``DeletionPolicy: RetainExceptOnCreate``: the resource is
kept when it is replaced or its stack is deleted, and deleted when the stack's *first create* rolls back. With
plain ``Retain`` a failed first deploy leaves named resources (log groups whose names the services dictate, the
patient table) behind, and the retry fails on "already exists".
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html

Which resources are stateful is a reviewed table, not a property of whichever construct declares them:
``apply_removal_policies`` gives every resource of a ``STATEFUL_TYPES`` type under a scope (an environment's stage)
the tier's policy, so a registry, an MLflow store or a log group is retained outside development even when its
construct forgot. ``STATELESS_TYPES`` holds every other type the app declares, with why re-creating it loses
nothing; tests/infra/test_retention.py fails on a type that is in neither.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicies, RemovalPolicy
from constructs import IConstruct

# Resource type -> the state a replacement or a stack deletion would lose.
STATEFUL_TYPES: dict[str, str] = {
    "AWS::S3::Bucket": "datasets, adapters, checkpoints, MLflow artifacts, reports, access logs",
    "AWS::KMS::Key": "the key of every encrypted object, item, log event and card (deleting it loses them all)",
    "AWS::Logs::LogGroup": "audit and service logs, kept for the environment's retention period",
    "AWS::DynamoDB::Table": "patient records",
    "AWS::SageMaker::ModelPackageGroup": "the model registry: every version, its approval status, card and lineage",
    "AWS::SageMaker::ModelCard": "the model card and its review history",
    "AWS::SageMaker::MlflowApp": "experiments, runs, metrics, models and traces (MLflow's metadata store)",
    "AWS::SageMaker::MlflowTrackingServer": "experiments, runs, metrics, models and traces (MLflow's metadata store)",
    "AWS::SageMaker::Pipeline": (
        "its executions and step records, the lineage the registry's versions point to: DeletePipeline deletes them "
        "(https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DeletePipeline.html)"
    ),
}

# Resource type -> why re-creating it from the template loses nothing.
STATELESS_TYPES: dict[str, str] = {
    "AWS::ApplicationAutoScaling::ScalableTarget": "configuration, from the template",
    "AWS::ApplicationAutoScaling::ScalingPolicy": "configuration, from the template",
    "AWS::BedrockAgentCore::Runtime": "code and configuration from the template; sessions end with their microVMs",
    "AWS::BedrockAgentCore::RuntimeEndpoint": "configuration, from the template",
    "AWS::CloudWatch::Alarm": "configuration; its history is CloudWatch's, not the alarm's",
    "AWS::CloudWatch::Dashboard": "configuration, from the template",
    "AWS::CodeBuild::Project": "configuration; build logs live in the retained BuildLogs group",
    "AWS::CodePipeline::Pipeline": (
        "configuration from the template; a retained pipeline would outlive its roles and keep triggering on pushes. "
        "What it deployed is in each stack's CloudFormation events and CloudTrail"
    ),
    "AWS::EC2::FlowLog": "configuration; the flows are in its retained log group",
    "AWS::EC2::RouteTable": "network configuration, from the template",
    "AWS::EC2::SecurityGroup": "network configuration, from the template",
    "AWS::EC2::SecurityGroupIngress": "network configuration, from the template",
    "AWS::EC2::Subnet": "network configuration, from the template",
    "AWS::EC2::SubnetRouteTableAssociation": "network configuration, from the template",
    "AWS::EC2::VPC": "network configuration, from the template",
    "AWS::EC2::VPCEndpoint": "network configuration, from the template",
    "AWS::Events::EventBus": "routing only: the approvals bus stores no events (the pipeline keeps its executions)",
    "AWS::Events::EventBusPolicy": "permissions, from the template",
    "AWS::Events::Rule": "configuration, from the template",
    "AWS::IAM::Policy": "permissions, from the template",
    "AWS::IAM::Role": "permissions, from the template",
    "AWS::KMS::Alias": "a name for the retained key, from the template",
    "AWS::Lambda::Function": "code and configuration from the template; its logs are in a retained log group",
    "AWS::Logs::Delivery": "configuration of where logs and traces go, from the template",
    "AWS::Logs::DeliveryDestination": "configuration of where logs and traces go, from the template",
    "AWS::Logs::DeliverySource": "configuration of where logs and traces go, from the template",
    "AWS::S3::BucketPolicy": "permissions, from the template",
    "AWS::SNS::Topic": "a fan-out for alarms; SNS stores no messages",
    "AWS::SNS::TopicPolicy": "permissions, from the template",
    "AWS::SageMaker::Endpoint": "serving configuration; weights and adapters are read from retained buckets",
    "AWS::SageMaker::EndpointConfig": "serving configuration, from the template",
    "AWS::SageMaker::InferenceComponent": "serving configuration; weights and adapters are read from retained buckets",
    "AWS::SageMaker::Model": "serving configuration; weights are read from retained buckets",
    "AWS::XRay::ResourcePolicy": "permissions, from the template",
    "Custom::AWS": "development only: writes synthetic seed records",
    "Custom::S3AutoDeleteObjects": "development only: empties buckets when their stack is deleted",
    "Custom::VpcRestrictDefaultSG": "strips the default security group's rules at deploy time",
}


def removal_policy(destroy: bool) -> RemovalPolicy:
    return RemovalPolicy.DESTROY if destroy else RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE


def apply_removal_policies(scope: IConstruct, *, destroy: bool) -> None:
    """Every resource of a stateful type under ``scope`` gets ``removal_policy(destroy)``, whatever construct
    declared it (an aspect: it also reaches resources that L2 constructs create inside themselves)."""
    RemovalPolicies.of(scope).apply(removal_policy(destroy), apply_to_resource_types=sorted(STATEFUL_TYPES))
