"""A base model on the shared endpoint: a SageMaker model (SGLang image + S3 weights) and its inference component.

The component references a ``CfnModel`` because only a model can take uncompressed weights
(``ModelDataSource`` with an S3 prefix, mounted at /opt/ml/model), a VPC configuration and network
isolation; the component's own container spec takes only a single ``.tar.gz``. The model has no
fixed name: a change replaces it, and the component rolls over to the new one.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Annotations
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks import sglang_check
from stacks.constructs.scale_to_zero import ComponentScaling
from stacks.settings import ModelSettings


class ModelComponent(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        model: ModelSettings,
        endpoint_name: str,
        variant_name: str,
        image_uri: str,
        weights_uri: str,
        role_arn: str,
        network_isolation: bool,
        startup_timeout_seconds: int,
        subnet_ids: Sequence[str] = (),
        security_group_ids: Sequence[str] = (),
        adapters: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, id)
        self.component_name = model.name
        # The settings checked the container environment with the container's own code; say so when SGLang's
        # parser could not add its check (stacks/sglang_check.py).
        if reason := sglang_check.parser_unavailable():
            Annotations.of(self).add_warning_v2(
                "clinical-agent:sglang-parser-skipped",
                f"{model.name}: SM_SGLANG_* checked against containers/sglang/manifest.json only; "
                f"SGLang's own argument parser did not run: {reason}",
            )
        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=role_arn,
            enable_network_isolation=network_isolation,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image_uri,
                environment=model.container_environment,
                model_data_source=sagemaker.CfnModel.ModelDataSourceProperty(
                    s3_data_source=sagemaker.CfnModel.S3DataSourceProperty(
                        s3_uri=weights_uri,
                        s3_data_type="S3Prefix",
                        compression_type="None",
                        # JumpStart's gated weights: the licence accepted in settings (weights.accept_eula).
                        model_access_config=sagemaker.CfnModel.ModelAccessConfigProperty(accept_eula=True)
                        if model.accept_eula
                        else None,
                    )
                ),
            ),
            vpc_config=(
                sagemaker.CfnModel.VpcConfigProperty(
                    subnets=list(subnet_ids), security_group_ids=list(security_group_ids)
                )
                if subnet_ids
                else None
            ),
        )
        self.component = sagemaker.CfnInferenceComponent(
            self,
            "Component",
            inference_component_name=model.name,
            endpoint_name=endpoint_name,  # the endpoint's attribute: components go before the endpoint on deletion
            variant_name=variant_name,
            specification=sagemaker.CfnInferenceComponent.InferenceComponentSpecificationProperty(
                model_name=self.model.attr_model_name,
                compute_resource_requirements=sagemaker.CfnInferenceComponent.InferenceComponentComputeResourceRequirementsProperty(
                    number_of_accelerator_devices_required=model.accelerators,
                    number_of_cpu_cores_required=model.cpu_cores,
                    min_memory_required_in_mb=model.memory_mb,
                ),
                startup_parameters=sagemaker.CfnInferenceComponent.InferenceComponentStartupParametersProperty(
                    model_data_download_timeout_in_seconds=startup_timeout_seconds,
                    container_startup_health_check_timeout_in_seconds=startup_timeout_seconds,
                ),
            ),
            # A component cannot be created with zero copies; autoscaling may take it to zero afterwards.
            runtime_config=sagemaker.CfnInferenceComponent.InferenceComponentRuntimeConfigProperty(
                copy_count=max(1, model.min_copies)
            ),
        )
        self.scaling = ComponentScaling(
            self,
            "Scaling",
            component=self.component,
            component_name=model.name,
            min_copies=model.min_copies,
            max_copies=model.max_copies,
            target_invocations_per_copy=model.target_invocations_per_copy,
            adapters=adapters,  # their requests wake this base too
        )
