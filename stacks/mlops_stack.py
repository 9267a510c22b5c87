"""MLOpsStack: MLflow, the model registry and its card, the fine-tuning pipeline, approval → deployment.

Attributes for other stacks: ``mlflow_arn``, ``mlflow_tracking_uri`` (the same ARN: the sagemaker-mlflow
plugin takes it as tracking URI), ``mlflow`` (``grant_use(grantable)``), ``pipeline_name``,
``pipeline_role``, ``model_package_group_name``, ``model_package_group_arn``, ``deploy_function``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks import compliance
from stacks.constructs.approval_automation import ApprovalAutomation
from stacks.constructs.mlflow import Mlflow
from stacks.constructs.model_registry import ModelRegistry, model_card_content, package_model_card
from stacks.constructs.training_pipeline import TrainingPipeline
from stacks.network_stack import NetworkStack
from stacks.settings import EnvironmentSettings


class MlopsStack(Stack):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: EnvironmentSettings,
        key: kms.IKey,
        datasets_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        network: NetworkStack | None,
        endpoint_name: str,
        base_component_name: str,
        grant_manage_components: Callable[[iam.IGrantable], Any],
        alarm_topic: sns.ITopic,
        **kwargs,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        tr, reg, ml = settings.training, settings.registry, settings.mlflow
        adapter_prefix = f"{settings.inference.adapter_artifact_prefix.strip('/')}/{tr.pipeline_name}"

        self.mlflow = Mlflow(
            self,
            "Mlflow",
            kind=ml.kind,
            name=ml.name,
            bucket=artifacts_bucket,
            prefix=ml.artifact_prefix,
            key=key,
            tracking_server_size=ml.tracking_server_size,
        )
        compliance.acknowledge_wildcards(
            self.mlflow.role, compliance.MLFLOW_ROLE, f"Resource::*/{ml.artifact_prefix.strip('/')}/[*]"
        )
        self.mlflow_arn = self.mlflow.arn
        self.mlflow_tracking_uri = self.mlflow.tracking_uri

        card = model_card_content(
            base_model_id=tr.base_model_id,
            risk_rating=reg.risk_rating,
            lora_rank=tr.lora_rank,
            lora_alpha=tr.lora_alpha,
            epochs=tr.epochs,
            learning_rate=tr.learning_rate,
            accuracy_threshold=tr.accuracy_threshold,
            base_image=tr.base_image,  # the training image is built FROM it (containers/training)
        )
        self.registry = ModelRegistry(
            self,
            "Registry",
            group_name=reg.model_package_group,
            reader_accounts=reg.reader_accounts,
            key=key,
            artifacts_bucket=artifacts_bucket,
            # Where the training step writes adapter archives: <prefix>/<pipeline>/<execution>/FineTune/<job>/output/
            adapter_objects=f"{adapter_prefix}/*/FineTune/*",
            card_name=reg.model_card_name,
            card_status=reg.model_card_status,
            card_content=card,
        )
        self.model_package_group_name = reg.model_package_group
        self.model_package_group_arn = self.registry.group_arn

        training_pipeline = TrainingPipeline(
            self,
            "Pipeline",
            pipeline_name=tr.pipeline_name,
            training=tr,
            datasets_bucket=datasets_bucket,
            dataset_prefix=tr.dataset_prefix,
            artifacts_bucket=artifacts_bucket,
            base_weights_prefix=tr.base_weights_prefix,
            output_prefix=settings.inference.adapter_artifact_prefix,
            checkpoint_prefix=tr.checkpoint_prefix,
            key=key,
            registry=self.registry,
            mlflow=self.mlflow,
            mlflow_experiment=ml.experiment,
            model_card_content=package_model_card(card),
            vpc_id=network.vpc.vpc_id if network else None,
            subnet_ids=network.vpc.select_subnets(subnet_type=network.subnets.subnet_type).subnet_ids
            if network
            else None,
            security_group_ids=[network.training_sg.security_group_id] if network else None,
        )
        group_versions = f"Resource::arn:*:sagemaker:*:model-package/{reg.model_package_group.lower()}/[*]"
        compliance.acknowledge_wildcards(
            training_pipeline.role,
            compliance.PIPELINE_ROLE,
            *(
                f"Resource::*/{p}/[*]"
                for p in (
                    tr.dataset_prefix.strip("/"),
                    tr.base_weights_prefix.strip("/"),
                    ml.artifact_prefix.strip("/"),
                    training_pipeline.output_prefix,
                    training_pipeline.checkpoint_prefix,
                )
            ),
            "Resource::arn:*:sagemaker:*:processing-job/pipelines-[*]",
            "Resource::arn:*:sagemaker:*:training-job/pipelines-[*]",
            group_versions,
            "Resource::arn:*:logs:*:log-group:/aws/sagemaker/ProcessingJobs:[*]",
            "Resource::arn:*:logs:*:log-group:/aws/sagemaker/TrainingJobs:[*]",
            "Resource::arn:*:ec2:*:network-interface/[*]",
            "Resource::[*]",
        )
        self.pipeline_name = tr.pipeline_name
        self.pipeline_role = training_pipeline.role

        approval = ApprovalAutomation(
            self,
            "ApprovalToDeployment",
            registry=self.registry,
            endpoint_name=endpoint_name,
            base_component_name=base_component_name,
            adapter_component_name=settings.inference.approved_adapter,
            grant_manage_components=grant_manage_components,
            alarm_topic=alarm_topic,
            key=key,
            destroy=settings.destroy,
            log_retention_days=settings.log_retention_days,
            reserved_concurrency=reg.deploy_reserved_concurrency,
            vpc=network.vpc if network else None,
            subnets=network.subnets if network else None,
            security_group=network.lambda_sg if network else None,
        )
        compliance.acknowledge_wildcards(approval.role, compliance.DEPLOY_ADAPTER_ROLE, group_versions, "Resource::[*]")
        if network is None:
            compliance.acknowledge(approval.function, *compliance.DEPLOY_ADAPTER_NO_VPC)
        self.deploy_function = approval.function

        for name, value in {
            "MlflowArn": self.mlflow_arn,
            "ModelPackageGroupName": self.model_package_group_name,
            "ModelCardName": reg.model_card_name,
            "PipelineName": self.pipeline_name,
            "PipelineRoleArn": self.pipeline_role.role_arn,
            "DeployFunctionName": approval.function.function_name,
            "DeadLetterQueueUrl": approval.dead_letters.queue_url,
        }.items():
            CfnOutput(self, name, value=value)
