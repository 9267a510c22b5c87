"""LoRA adapters served by a base component: adapter inference components, and this environment's copies of the
pinned archives they serve.

An adapter component has no compute of its own: it names its base (``BaseInferenceComponentName``) and one
``.tar.gz`` archive (``Container.ArtifactUrl``). A pinned adapter (config/models.lock.json) serves from this
environment's artifacts bucket: ``AdapterCopies.copy(pin)`` declares a ``Custom::AdapterCopy`` that copies the
registry's archive to ``adapters/<sha256>.tar.gz`` and fails the deployment unless the copy's SHA-256 is the pin's
(lambda/adapter_copy). The key is computed from the pin alone, so synth needs no file and makes no AWS call, and a
new pin changes ``ArtifactUrl``, which CloudFormation applies in place (UpdateInferenceComponent: the resource schema
has no create-only property).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import CfnTag, CustomResource, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct, IConstruct

from stacks import compliance
from stacks.constructs.log_group import encrypted_log_group
from stacks.constructs.python_bundle import python_function_code
from stacks.settings import AdapterPin

FUNCTION_DIR = Path(__file__).resolve().parents[2] / "lambda" / "adapter_copy"
# Python 3.13: the newest Lambda runtime the tests can run on here (tests/lambda run the handler's tests on it);
# Lambda blocks python3.13 creates from Jul 31, 2029 and updates from Aug 31, 2029
# (https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html, stacks/facts.py RUNTIME_DATES).
RUNTIME = lambda_.Runtime.PYTHON_3_13
RESOURCE_TYPE = "Custom::AdapterCopy"
# CloudFormation waits this long for the function's answer (it always answers; this bounds a crash).
SERVICE_TIMEOUT = Duration.minutes(15)


def adapter_component(
    scope: Construct,
    id: str,
    *,
    name: str,
    endpoint_name: str,
    base: sagemaker.CfnInferenceComponent,
    artifact_url: str,
    tags: Mapping[str, str] | None = None,
    after: Sequence[IConstruct] = (),
) -> sagemaker.CfnInferenceComponent:
    """An adapter component on ``base``; ``tags`` (lineage) on the component; created after ``after`` too."""
    component = sagemaker.CfnInferenceComponent(
        scope,
        id,
        inference_component_name=name,
        endpoint_name=endpoint_name,
        specification=sagemaker.CfnInferenceComponent.InferenceComponentSpecificationProperty(
            base_inference_component_name=base.inference_component_name,
            container=sagemaker.CfnInferenceComponent.InferenceComponentContainerSpecificationProperty(
                artifact_url=artifact_url
            ),
        ),
        tags=[CfnTag(key=k, value=v) for k, v in (tags or {}).items()] or None,
    )
    # The base's name is a literal: order explicitly (created after, deleted before the base).
    component.node.add_dependency(base)
    for construct in after:
        component.node.add_dependency(construct)
    return component


class AdapterCopies(Construct):
    """The copy function of one environment (its role may read exactly the pinned source objects and write exactly
    their copies), and ``copy(pin)``: the custom resource that makes and checks one copy."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bucket: s3.IBucket,
        key: kms.IKey,
        pins: Sequence[AdapterPin],
        log_retention_days: int,
        destroy: bool,
        vpc: ec2.IVpc | None = None,
        subnets: ec2.SubnetSelection | None = None,
        security_group: ec2.ISecurityGroup | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.bucket = bucket
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Copies the pinned adapter archives into this environment's artifacts bucket",
        )
        log_group = encrypted_log_group(self, "Logs", key=key, retention_days=log_retention_days, destroy=destroy)
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            handler="handler.handler",
            code=python_function_code(FUNCTION_DIR, RUNTIME),
            role=self.role,
            description="Custom::AdapterCopy: a pinned adapter archive, copied and checked against its SHA-256",
            timeout=Duration.minutes(5),
            memory_size=256,
            log_group=log_group,
            environment={"POWERTOOLS_SERVICE_NAME": "adapter-copy"},
            vpc=vpc,
            vpc_subnets=subnets if vpc else None,
            security_groups=[security_group] if vpc and security_group else None,
        )
        log_group.grant_write(self.role)

        def allow(sid: str, actions: list[str], resources: list[str], conditions: dict | None = None) -> None:
            self.role.add_to_policy(
                iam.PolicyStatement(sid=sid, actions=actions, resources=resources, conditions=conditions)
            )

        # Read exactly the pinned objects (the registry account's bucket policy grants this account the same), and
        # decrypt them only through S3 in their region.
        allow(
            "ReadPinnedArchives",
            ["s3:GetObject"],
            sorted({f"arn:{stack.partition}:s3:::{p.source_bucket}/{p.source_key}" for p in pins}),
        )
        for i, source_key in enumerate(sorted({p.source_kms_key_arn for p in pins if p.source_kms_key_arn})):
            allow(
                f"DecryptPinnedArchives{i}",
                ["kms:Decrypt"],
                [source_key],
                {"StringEquals": {"kms:ViaService": f"s3.{source_key.split(':')[3]}.amazonaws.com"}},
            )
        # Write exactly the copies; remove a version that is not the pinned archive.
        copies = sorted({bucket.arn_for_objects(p.artifact_key) for p in pins})
        allow("WritePinnedCopies", ["s3:PutObject", "s3:DeleteObjectVersion"], copies)
        allow(
            "EncryptCopiesThroughS3",
            ["kms:GenerateDataKey", "kms:Decrypt"],
            [key.key_arn],
            {"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
        )
        if vpc:  # Lambda's network interfaces in the private subnets (no resource-level permissions)
            allow(
                "NetworkInterfacesInVpc",
                [
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                ["*"],
            )
            compliance.acknowledge_wildcards(self.role, compliance.ADAPTER_COPY_ROLE, "Resource::[*]")
        else:
            compliance.acknowledge(self.function, *compliance.ADAPTER_COPY_NO_VPC)
        compliance.acknowledge(self.function, *compliance.ADAPTER_COPY_FUNCTION)
        self.function.node.add_dependency(self.role)  # every permission exists before CloudFormation invokes it

    def copy(self, pin: AdapterPin) -> CustomResource:
        """The custom resource that copies ``pin``'s archive to ``pin.artifact_key`` and checks its SHA-256."""
        return CustomResource(
            self,
            f"Copy-{pin.name}",
            service_token=self.function.function_arn,
            resource_type=RESOURCE_TYPE,
            service_timeout=SERVICE_TIMEOUT,
            properties={
                "Adapter": pin.name,
                "SourceBucket": pin.source_bucket,
                "SourceKey": pin.source_key,
                "Sha256": pin.sha256,
                "TargetBucket": self.bucket.bucket_name,
                "TargetKey": pin.artifact_key,
            },
        )
