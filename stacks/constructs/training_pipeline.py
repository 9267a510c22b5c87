"""The fine-tuning SageMaker Pipeline: the training code as an asset, the definition, its execution role.

The definition comes from ``training.pipeline.build_definition`` (SageMaker SDK classic steps, pure
and offline). CloudFormation values (role ARN, bucket names, key, MLflow ARN, image, subnets) go in as
parseable placeholder literals and come out as ``${Name}`` variables of one ``Fn::Sub`` (the only
placeholder layer), so the template is deterministic and readable. Every step runs the training image
(containers/training). The role is the pipeline's and its jobs': it reads the datasets prefix, the base
weights and the code asset, pulls the training image, writes only under the output and checkpoint
prefixes, logs to MLflow (``Mlflow.grant_use``), registers only in the model package group, and passes
only itself, only to SageMaker.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks import compliance
from stacks.constructs.mlflow import Mlflow
from stacks.constructs.model_registry import ModelRegistry
from stacks.constructs.prefix_grants import grant_prefix
from stacks.constructs.source_archive import archive_bytes, source_archive_asset
from stacks.constructs.training_image import TrainingImage
from stacks.facts import has_instance_storage
from stacks.settings import TrainingSettings

TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"
# The body limit is CloudFormation's template size; beyond it the definition would have to go to S3.
MAX_BODY_CHARS = 900_000
_MARK = "cdkph"  # every placeholder contains it; none may survive substitution


def substitute(definition: str, placeholders: dict[str, tuple[str, str]]) -> str:
    """``definition`` as an ``Fn::Sub`` body: each placeholder literal → ``${Name}``; literal ``${`` escaped."""
    body = definition.replace("${", "${!")
    for name, (literal, _) in sorted(placeholders.items(), key=lambda kv: -len(kv[1][0])):
        body = body.replace(literal, f"${{{name}}}")
    if _MARK in body:
        raise RuntimeError(
            f"pipeline definition: a placeholder was altered by the builder and not substituted "
            f"(found {_MARK!r} near {body[max(0, body.index(_MARK) - 80) : body.index(_MARK) + 40]!r})"
        )
    if len(body) > MAX_BODY_CHARS:
        raise RuntimeError(
            f"pipeline definition: {len(body)} characters exceeds {MAX_BODY_CHARS}; "
            "store it in S3 (PipelineDefinitionS3Location) instead"
        )
    return body


_DEFINITIONS: dict[str, str] = {}  # one build per distinct argument set per synth (stages repeat in the delivery app)


@contextlib.contextmanager
def _quiet_sdk() -> Iterator[None]:
    """The SDK logs INFO lines and warnings on every build; synth output shows only its errors."""
    logger = logging.getLogger("sagemaker")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@functools.cache
def _builder_fingerprint() -> bytes:
    """What a definition depends on besides its arguments: the training code and the SDK's version."""
    return hashlib.sha256(archive_bytes(TRAINING_DIR) + importlib.metadata.version("sagemaker").encode()).digest()


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clinical-agent" / "pipeline-definitions"


def pipeline_definition(**kwargs: Any) -> str:
    """``training.pipeline.build_definition(**kwargs)``, cached in memory and on disk by its arguments, the
    training code and the SDK version (a build is deterministic, so a cached one is the same bytes): importing
    the SageMaker SDK and building take seconds, so only the first synth after a change pays for them."""
    key = hashlib.sha256(json.dumps(kwargs, sort_keys=True).encode() + _builder_fingerprint()).hexdigest()
    if key not in _DEFINITIONS:
        cached = _cache_dir() / f"{key}.json"
        if cached.is_file():
            _DEFINITIONS[key] = cached.read_text()
        else:
            from training.pipeline import build_definition

            with _quiet_sdk():
                _DEFINITIONS[key] = build_definition(**kwargs)
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(_DEFINITIONS[key])
            partial.replace(cached)  # atomic: a concurrent synth never reads half a file
    return _DEFINITIONS[key]


@dataclass(frozen=True)
class JobNetwork:
    """Where the jobs run: their network interfaces' subnets and security groups (the role's right to create those
    interfaces is the network's grant: NetworkStack.grant_network_interfaces)."""

    subnet_ids: list[str]
    security_group_ids: list[str]


class TrainingPipeline(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        pipeline_name: str,
        training: TrainingSettings,
        datasets_bucket: s3.IBucket,
        dataset_prefix: str,
        artifacts_bucket: s3.IBucket,
        base_weights_prefix: str,
        output_prefix: str,
        checkpoint_prefix: str,
        key: kms.IKey,
        registry: ModelRegistry,
        mlflow: Mlflow,
        mlflow_experiment: str,
        model_card_content: dict[str, Any],
        network: JobNetwork | None = None,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.pipeline_name = pipeline_name
        dataset_prefix = dataset_prefix.strip("/")
        self.output_prefix = f"{output_prefix.strip('/')}/{pipeline_name}"
        self.checkpoint_prefix = f"{checkpoint_prefix.strip('/')}/{pipeline_name}"
        source = source_archive_asset(self, "Source", folder=TRAINING_DIR)

        self.role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker Pipeline {pipeline_name} and its jobs",
        )
        self._grant(stack, source, datasets_bucket, dataset_prefix, artifacts_bucket, key, registry, mlflow)
        # The base weights come from the artifacts bucket (staged by `make weights`): jobs download nothing from a
        # model hub, need no token, and run in subnets without internet.
        grant_prefix(self.role, artifacts_bucket, base_weights_prefix.strip("/"), key=key)
        image_uri = TrainingImage(self, "Image", base_image=training.base_image).bind(self.role)
        mlflow_resource = "mlflow-app" if mlflow.kind == "serverless" else "mlflow-tracking-server"

        ph: dict[str, tuple[str, str]] = {
            "ExecutionRoleArn": (f"arn:aws:iam::000000000000:role/{_MARK}-pipeline-role", self.role.role_arn),
            "SourceBucket": (f"{_MARK}-source-bucket", source.s3_bucket_name),
            "SourceKey": (f"{_MARK}-source-key.tar.gz", source.s3_object_key),
            "DatasetsBucket": (f"{_MARK}-datasets-bucket", datasets_bucket.bucket_name),
            "ArtifactsBucket": (f"{_MARK}-artifacts-bucket", artifacts_bucket.bucket_name),
            "KeyArn": (f"arn:aws:kms:{stack.region}:000000000000:key/{_MARK}-key", key.key_arn),
            "MlflowArn": (
                f"arn:aws:sagemaker:{stack.region}:000000000000:{mlflow_resource}/{_MARK}-mlflow",
                mlflow.arn,
            ),
            "Image": (f"000000000000.dkr.ecr.{stack.region}.amazonaws.com/{_MARK}-image:{_MARK}", image_uri),
        }
        if network is not None:
            ph |= {f"Subnet{i}": (f"subnet-{_MARK}{i:03d}", s) for i, s in enumerate(network.subnet_ids)}
            ph |= {f"SecurityGroup{i}": (f"sg-{_MARK}{i:03d}", g) for i, g in enumerate(network.security_group_ids)}

        def lit(name: str) -> str:
            return ph[name][0]

        definition = pipeline_definition(
            pipeline_name=pipeline_name,
            role_arn=lit("ExecutionRoleArn"),
            source_uri=f"s3://{lit('SourceBucket')}/{lit('SourceKey')}",
            region=stack.region,
            dataset_uri=f"s3://{lit('DatasetsBucket')}/{dataset_prefix}/",
            output_uri=f"s3://{lit('ArtifactsBucket')}/{self.output_prefix}",
            checkpoint_uri=f"s3://{lit('ArtifactsBucket')}/{self.checkpoint_prefix}",
            model_package_group=registry.group_name,
            mlflow_arn=lit("MlflowArn"),
            mlflow_experiment=mlflow_experiment,
            image=lit("Image"),
            base_model_id=f"s3://{lit('ArtifactsBucket')}/{base_weights_prefix}",
            preprocess_instance_type=training.preprocess_instance_type,
            training_instance_type=training.training_instance_type,
            training_instance_count=training.training_instance_count,
            evaluate_instance_type=training.evaluate_instance_type,
            use_spot=training.use_spot,
            max_runtime_seconds=training.max_runtime_seconds,
            lora_rank=training.lora_rank,
            lora_alpha=training.lora_alpha,
            epochs=training.epochs,
            learning_rate=training.learning_rate,
            accuracy_threshold=training.accuracy_threshold,
            kms_key_arn=lit("KeyArn"),
            # Jobs on local-NVMe instance types get no volume key: SageMaker refuses one there.
            instance_storage=sorted(
                {
                    t
                    for t in (
                        training.preprocess_instance_type,
                        training.training_instance_type,
                        training.evaluate_instance_type,
                    )
                    if has_instance_storage(t)
                }
            ),
            subnets=[lit(n) for n in ph if n.startswith("Subnet")] or None,
            security_group_ids=[lit(n) for n in ph if n.startswith("SecurityGroup")] or None,
            model_card_content=json.dumps(model_card_content, sort_keys=True),
        )
        used = {n: token for n, (literal, token) in ph.items() if literal in definition}
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=pipeline_name,
            pipeline_display_name=pipeline_name,
            pipeline_description="Preprocess, LoRA fine-tune, evaluate, quality gate, register (pending approval)",
            role_arn=self.role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": Fn.sub(substitute(definition, ph), used)},
        )
        self.pipeline.node.add_dependency(self.role)  # the role's policy must exist before an execution starts

    def _grant(
        self,
        stack: Stack,
        source: s3_assets.Asset,
        datasets_bucket: s3.IBucket,
        dataset_prefix: str,
        artifacts_bucket: s3.IBucket,
        key: kms.IKey,
        registry: ModelRegistry,
        mlflow: Mlflow,
    ) -> None:
        role = self.role

        def arn(service: str, resource: str, name: str, sep: str = "/") -> str:
            return stack.format_arn(
                service=service,
                resource=resource,
                resource_name=name,
                arn_format=(ArnFormat.COLON_RESOURCE_NAME if sep == ":" else ArnFormat.SLASH_RESOURCE_NAME),
            )

        role.add_to_policy(
            iam.PolicyStatement(
                sid="RunPipelineJobs",
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                ],
                resources=[
                    arn("sagemaker", "processing-job", "pipelines-*"),
                    arn("sagemaker", "training-job", "pipelines-*"),
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PassOnlyItselfToSageMaker",
                actions=["iam:PassRole"],
                resources=[role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        registry.grant_register(role)
        mlflow.grant_use(role)

        grant_prefix(role, datasets_bucket, dataset_prefix, key=key)
        grant_prefix(role, artifacts_bucket, self.output_prefix, key=key, write=True)
        grant_prefix(role, artifacts_bucket, self.checkpoint_prefix, key=key, write=True)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadCodeAsset",
                actions=["s3:GetObject"],
                resources=[f"arn:{stack.partition}:s3:::{source.s3_bucket_name}/{source.s3_object_key}"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListCodeAsset",
                actions=["s3:ListBucket"],
                resources=[f"arn:{stack.partition}:s3:::{source.s3_bucket_name}"],
                conditions={"StringLike": {"s3:prefix": [source.s3_object_key]}},
            )
        )
        # SageMaker encrypts job volumes with the key through grants for the jobs' instances.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:CreateGrant"],
                resources=[key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": True}},
            )
        )

        role.add_to_policy(
            iam.PolicyStatement(
                sid="JobLogs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[
                    arn("logs", "log-group", f"/aws/sagemaker/{kind}:*", ":")
                    for kind in ("ProcessingJobs", "TrainingJobs")
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="JobMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            )
        )
        compliance.acknowledge_wildcards(
            role,
            compliance.PIPELINE_ROLE,
            "Resource::arn:*:sagemaker:*:processing-job/pipelines-[*]",
            "Resource::arn:*:sagemaker:*:training-job/pipelines-[*]",
            "Resource::arn:*:logs:*:log-group:/aws/sagemaker/ProcessingJobs:[*]",
            "Resource::arn:*:logs:*:log-group:/aws/sagemaker/TrainingJobs:[*]",
            "Resource::[*]",
        )
