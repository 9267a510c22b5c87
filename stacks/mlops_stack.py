"""MLOpsStack: MLflow; in the environment that trains, also the registry of record (model package group, model card,
reader accounts), the fine-tuning pipeline, and promotion: approvals forwarded to the delivery pipeline's account, and
the role its ResolvePin step reads the registry with.

Objects for other stacks: ``mlflow`` (its ``arn`` is also the tracking URI; ``grant_use(grantable)``); where the
environment trains: ``registry``, ``pipeline`` (its ``role``), ``pin_reader`` (with a tooling account).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.constructs.mlflow import Mlflow
from stacks.constructs.model_registry import ModelRegistry, model_card_content, package_model_card
from stacks.constructs.promotion import ApprovalForwarding, PinReader
from stacks.constructs.training_pipeline import JobNetwork, TrainingPipeline
from stacks.network_stack import NetworkStack
from stacks.settings import DeliverySettings, EnvironmentSettings, TrainingSettings


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
        tooling: DeliverySettings | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        ml = settings.mlflow
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
        CfnOutput(self, "MlflowArn", value=self.mlflow.arn)
        if settings.training is not None:
            self._registry_of_record(settings, settings.training, key, datasets_bucket, artifacts_bucket, network)
            if tooling is not None:
                self._promotion(settings, tooling, key, artifacts_bucket)

    def _registry_of_record(
        self,
        settings: EnvironmentSettings,
        tr: TrainingSettings,
        key: kms.IKey,
        datasets_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        network: NetworkStack | None,
    ) -> None:
        reg, ml = settings.registry, settings.mlflow
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
        # Where the training step writes adapter archives: <prefix>/<pipeline>/<execution>/FineTune/<job>/output/
        self.adapter_objects = f"{tr.output_prefix.strip('/')}/{tr.pipeline_name}/*/FineTune/*"
        self.registry = ModelRegistry(
            self,
            "Registry",
            group_name=reg.model_package_group,
            reader_accounts=reg.reader_accounts,
            key=key,
            artifacts_bucket=artifacts_bucket,
            adapter_objects=self.adapter_objects,
            card_name=reg.model_card_name,
            card_status=reg.model_card_status,
            card_content=card,
        )
        self.pipeline = TrainingPipeline(
            self,
            "Pipeline",
            pipeline_name=tr.pipeline_name,
            training=tr,
            datasets_bucket=datasets_bucket,
            dataset_prefix=tr.dataset_prefix,
            artifacts_bucket=artifacts_bucket,
            base_weights_prefix=tr.base_weights_prefix,
            output_prefix=tr.output_prefix,
            checkpoint_prefix=tr.checkpoint_prefix,
            key=key,
            registry=self.registry,
            mlflow=self.mlflow,
            mlflow_experiment=ml.experiment,
            model_card_content=package_model_card(card),
            network=JobNetwork(network.subnet_ids, [network.training_sg.security_group_id]) if network else None,
        )
        if network is not None:
            network.grant_network_interfaces(self.pipeline.role, network.training_sg, "Jobs")
        for name, value in {
            "ModelPackageGroupName": reg.model_package_group,
            "ModelCardName": reg.model_card_name,
            "PipelineName": tr.pipeline_name,
            "PipelineRoleArn": self.pipeline.role.role_arn,
        }.items():
            CfnOutput(self, name, value=value)

    def _promotion(
        self, settings: EnvironmentSettings, tooling: DeliverySettings, key: kms.IKey, artifacts_bucket: s3.IBucket
    ) -> None:
        """Approvals start the delivery pipeline in the tooling account, whose ResolvePin step reads the registry."""
        group = settings.registry.model_package_group
        self.approval_forwarding = ApprovalForwarding(
            self,
            "ApprovalToDelivery",
            group=group,
            bus_account=tooling.account,
            bus_region=tooling.region,
            bus_name=tooling.approval_bus_name,
        )
        self.pin_reader = PinReader(
            self,
            "PinReader",
            registry=self.registry,
            bucket=artifacts_bucket,
            adapter_objects=self.adapter_objects,
            key=key,
            tooling_account=tooling.account,
        )
        CfnOutput(self, "PinReaderRoleArn", value=self.pin_reader.role_arn)
