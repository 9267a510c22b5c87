"""A LoRA adapter served by a base component: an adapter inference component (no compute of its own)."""

from __future__ import annotations

from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct


def adapter_component(
    scope: Construct,
    id: str,
    *,
    name: str,
    endpoint_name: str,
    base: sagemaker.CfnInferenceComponent,
    artifact_url: str,
) -> sagemaker.CfnInferenceComponent:
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
    )
    # The base's name is a literal: order explicitly (created after, deleted before the base).
    component.add_dependency(base)
    return component
