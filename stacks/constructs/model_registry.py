"""The model registry of one environment: the model package group, its cross-account readers, the model card.

Readers (e.g. the staging and prod accounts) may describe the group and describe, list and use
(CreateModel) its packages, and read the adapter archives the pipeline writes, decrypting them
through S3 only. Nothing else in the bucket or the key is shared.

``model_card_content(...)`` is the clinical model card in the SageMaker model card JSON schema
(snake_case), the registry's ``CfnModelCard``; ``package_model_card(card)`` cuts it to the Model Package
Model Card schema (``MODEL_PACKAGE_CARD_SCHEMA``) for the pipeline's register step.
"""

from __future__ import annotations

import re
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks import compliance

# The Model Package Model Card schema (CreateModelPackage.ModelCard.ModelCardContent): every level closed
# (additionalProperties false); model_overview holds only model_creator and model_artifact.
# https://docs.aws.amazon.com/sagemaker/latest/dg/model-registry-details.html#model-card-schema
MODEL_PACKAGE_CARD_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/model-registry-details.html#model-card-schema"


def _closed(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties}


_TEXT: dict[str, Any] = {"type": "string"}
_LIST: dict[str, Any] = {"type": "array"}
MODEL_PACKAGE_CARD_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    **_closed(
        model_overview=_closed(model_creator=_TEXT, model_artifact={"type": "array", "items": _TEXT}),
        intended_uses=_closed(
            purpose_of_model=_TEXT,
            intended_uses=_TEXT,
            factors_affecting_model_efficiency=_TEXT,
            risk_rating={"enum": ["High", "Medium", "Low", "Unknown"]},
            explanations_for_risk_rating=_TEXT,
        ),
        business_details=_closed(business_problem=_TEXT, business_stakeholders=_TEXT, line_of_business=_TEXT),
        training_details=_closed(
            objective_function={"type": "object"},
            training_observations=_TEXT,
            training_job_details=_closed(
                training_arn=_TEXT,
                training_datasets=_LIST,
                training_environment=_closed(container_image={"type": "array", "items": _TEXT}),
                training_metrics=_LIST,
                user_provided_training_metrics=_LIST,
                hyper_parameters=_LIST,
                user_provided_hyper_parameters=_LIST,
            ),
        ),
        evaluation_details={
            "type": "array",
            "items": {
                **_closed(
                    name=_TEXT,
                    evaluation_observation=_TEXT,
                    evaluation_job_arn=_TEXT,
                    datasets=_LIST,
                    metadata={"type": "object"},
                    metric_groups=_LIST,
                ),
                "required": ["name"],
            },
        },
        additional_information=_closed(
            ethical_considerations=_TEXT, caveats_and_recommendations=_TEXT, custom_details={"type": "object"}
        ),
    ),
}


def package_model_card(card: dict[str, Any]) -> dict[str, Any]:
    """The model package's card: the full card cut to the Model Package Model Card schema (the full card stays on
    the registry's ``CfnModelCard``)."""
    return {
        "model_overview": {"model_creator": card["model_overview"]["model_creator"]},
        **{k: card[k] for k in ("intended_uses", "training_details", "evaluation_details", "additional_information")},
    }


PACKAGE_READ_ACTIONS = ["sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages", "sagemaker:CreateModel"]


def model_card_content(
    *,
    base_model_id: str,
    risk_rating: str,
    lora_rank: int,
    lora_alpha: int,
    epochs: int,
    learning_rate: float,
    accuracy_threshold: float,
    base_image: str,
) -> dict[str, Any]:
    """The clinical model card (SageMaker model card schema, snake_case keys)."""
    return {
        "model_overview": {
            "model_description": (
                f"LoRA adapter on {base_model_id} that drafts an assessment and a ranked differential diagnosis "
                "from a chief complaint, vital signs and history, for a clinician to review."
            ),
            "model_creator": "Clinical agent ML platform team",
            "problem_type": "Text generation (clinical decision support)",
            "algorithm_type": "Supervised fine-tuning with LoRA on a Llama 3 instruct model",
            "inference_environment": {"container_image": ["SGLang serving container with LoRA adapters"]},
        },
        "intended_uses": {
            "purpose_of_model": (
                "Decision support for licensed clinicians: suggest a differential diagnosis to consider."
            ),
            "intended_uses": (
                "A clinician asks for likely diagnoses and next questions; the clinician confirms, changes or "
                "rejects every suggestion. Not for autonomous diagnosis, triage, treatment or prescribing, and "
                "not for use by patients."
            ),
            "factors_affecting_model_efficiency": (
                "Incomplete or atypical presentations, rare conditions, populations absent from the synthetic "
                "training data, and prompts outside the trained chat format."
            ),
            "risk_rating": risk_rating,
            "explanations_for_risk_rating": (
                "A wrong or missing diagnosis can harm a patient if a clinician relies on it without review; "
                "outputs can be fluent and wrong."
            ),
        },
        "training_details": {
            "objective_function": {
                "function": {"function": "Minimize", "facet": "Loss", "condition": "Assistant tokens only"},
                "notes": "Causal language-model cross-entropy on the assistant turns of clinical dialogues.",
            },
            "training_observations": (
                "Trained only on synthetic patient records and dialogues generated by training/; no real patient data."
            ),
            "training_job_details": {
                "training_environment": {"container_image": [base_image]},
                "user_provided_hyper_parameters": [
                    {"name": "lora_rank", "value": str(lora_rank)},
                    {"name": "lora_alpha", "value": str(lora_alpha)},
                    {"name": "epochs", "value": str(epochs)},
                    {"name": "learning_rate", "value": str(learning_rate)},
                ],
            },
        },
        "evaluation_details": [
            {
                "name": "held-out-synthetic-cases",
                "evaluation_observation": (
                    "Top-1 diagnosis accuracy on held-out synthetic cases; the pipeline registers a model only at or "
                    "above the threshold, and a person approves it before deployment."
                ),
                "datasets": ["Synthetic clinical cases (held-out split of the training data generator)"],
                "metric_groups": [
                    {
                        "name": "quality-gate",
                        "metric_data": [{"name": "accuracy_threshold", "type": "number", "value": accuracy_threshold}],
                    }
                ],
            }
        ],
        "additional_information": {
            "ethical_considerations": (
                "Synthetic data cannot represent real populations; bias across age, sex and ethnicity is "
                "unmeasured. Clinicians remain accountable for every decision."
            ),
            "caveats_and_recommendations": (
                "Validate on representative, governed clinical data and obtain clinical and regulatory review "
                "before any use with real patients. Monitor outputs and keep a human in the loop."
            ),
        },
    }


def to_cloudformation(content: Any) -> Any:
    """Model card content with CloudFormation's PascalCase keys (the API's JSON schema uses snake_case)."""
    if isinstance(content, dict):
        return {
            re.sub(r"(?:^|_)([a-z])", lambda m: m.group(1).upper(), k): to_cloudformation(v) for k, v in content.items()
        }
    if isinstance(content, list):
        return [to_cloudformation(v) for v in content]
    return content


class ModelRegistry(Construct):
    """``CfnModelPackageGroup`` (+ resource policy for ``reader_accounts``) and the encrypted ``CfnModelCard``."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        group_name: str,
        reader_accounts: list[str],
        key: kms.IKey,
        artifacts_bucket: s3.IBucket,
        adapter_objects: str,
        card_name: str,
        card_status: str,
        card_content: dict[str, Any],
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.group_name = group_name
        # SageMaker writes names in lower case in these ARNs.
        self.group_arn = stack.format_arn(
            service="sagemaker", resource="model-package-group", resource_name=group_name.lower()
        )
        self.packages_arn = stack.format_arn(
            service="sagemaker", resource="model-package", resource_name=f"{group_name.lower()}/*"
        )
        readers: list[iam.IPrincipal] = [iam.AccountPrincipal(a) for a in sorted(set(reader_accounts))]

        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "Group",
            model_package_group_name=group_name,
            model_package_group_description="LoRA adapters for clinical diagnosis support; deployment needs approval",
            model_package_group_policy=self._policy(readers) if readers else None,
        )
        if readers:
            # Readers fetch approved adapters from this account: only the objects the pipeline's training step
            # writes, and the key only through S3.
            artifacts_bucket.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="RegistryReadersGetAdapters",
                    principals=readers,
                    actions=["s3:GetObject"],
                    resources=[artifacts_bucket.arn_for_objects(adapter_objects)],
                )
            )
            key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="RegistryReadersDecryptAdaptersThroughS3",
                    principals=readers,
                    actions=["kms:Decrypt", "kms:DescribeKey"],
                    resources=["*"],
                    conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
                )
            )

        self.card = sagemaker.CfnModelCard(
            self,
            "Card",
            model_card_name=card_name,
            model_card_status=card_status,
            content=sagemaker.CfnModelCard.ContentProperty(),  # replaced below: one source for card and pipeline
            security_config=sagemaker.CfnModelCard.SecurityConfigProperty(kms_key_id=key.key_arn),
        )
        self.card.add_property_override("Content", to_cloudformation(card_content))

    def _policy(self, readers: list[iam.IPrincipal]) -> iam.PolicyDocument:
        return iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    sid="ReadersDescribeGroup",
                    principals=readers,
                    actions=["sagemaker:DescribeModelPackageGroup"],
                    resources=[self.group_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadersUsePackages",
                    principals=readers,
                    actions=PACKAGE_READ_ACTIONS,
                    resources=[self.packages_arn],
                ),
            ]
        )

    def grant_register(self, grantable: iam.IGrantable) -> iam.Grant:
        """Register new package versions in the group (always PendingManualApproval: the pipeline sets it)."""
        iam.Grant.add_to_principal(
            grantee=grantable, actions=["sagemaker:DescribeModelPackageGroup"], resource_arns=[self.group_arn]
        )
        grant = iam.Grant.add_to_principal(
            grantee=grantable,
            actions=["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage", "sagemaker:AddTags"],
            resource_arns=[self.group_arn, self.packages_arn],
        )
        self._acknowledge_versions(grantable)
        return grant

    def grant_read(self, grantable: iam.IGrantable) -> iam.Grant:
        """Describe this group's packages (nothing else in the registry)."""
        grant = iam.Grant.add_to_principal(
            grantee=grantable,
            actions=["sagemaker:DescribeModelPackage"],
            resource_arns=[self.packages_arn],
        )
        self._acknowledge_versions(grantable)
        return grant

    def _acknowledge_versions(self, grantable: iam.IGrantable) -> None:
        compliance.acknowledge_grant(
            grantable,
            compliance.GROUP_VERSIONS,
            f"Resource::arn:*:sagemaker:*:model-package/{self.group_name.lower()}/[*]",
        )
