"""The SageMaker Pipeline definition: Preprocess → FineTune → Evaluate → QualityGate → Register | Fail.

``build_definition(...)`` returns the JSON definition for ``CfnPipeline.PipelineDefinitionBody``.
It is pure: built with the SageMaker Python SDK v3 classic steps, offline (no AWS call, nothing
uploaded) and byte-identical across runs. Every step runs ``image`` (containers/training: the PyTorch
DLC with the dependencies baked in; no step installs anything). Code comes from ``source_uri``, the S3
URI of a gzipped tar of this folder (a CDK file asset, uploaded as ``<hash>.gz``):

- the training job runs it with the DLC's training toolkit (``sagemaker_program`` /
  ``sagemaker_submit_directory``; with ``sagemaker_torch_distributed_enabled`` the toolkit launches
  ``train.py`` under torchrun on every GPU of every instance; the folder has no requirements.txt, so
  the toolkit installs nothing);
- the processing jobs receive it as an input in ``/opt/ml/processing/input/code`` and unpack it.

Every input must be a parseable value (an ARN, an ``s3://`` URI): the CDK construct passes
placeholders of that form and turns them into CloudFormation references afterwards (one layer,
``stacks/constructs/training_pipeline.py``). Jobs on instance types listed in ``instance_storage``
(local NVMe) get no volume key: SageMaker refuses one there. The register step records the
execution ARN and the MLflow run id on the model package (lineage).
``python -m training.pipeline --print`` prints a sample definition.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

STEP_PREPROCESS = "Preprocess"
STEP_TRAIN = "FineTune"
STEP_EVALUATE = "Evaluate"
STEP_GATE = "QualityGate"
STEP_REGISTER = "Register"
STEP_FAIL = "AccuracyBelowThreshold"

EVALUATION_FILE = "evaluation.json"
ACCURACY_PATH = "multiclass_classification_metrics.accuracy.value"
RUN_ID_PATH = "mlflow_run_id"  # evaluate.py copies the training run's id into its report
CODE_DIR = "/opt/ml/processing/input/code"
BASE_DIR = "/opt/ml/processing/base"
# Customer metadata properties of the registered package: where it came from.
LINEAGE_EXECUTION = "pipeline_execution_arn"
LINEAGE_MLFLOW_RUN = "mlflow_run_id"

# Given to the session so that it loads no config file (user defaults must not reach the definition).
_SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def _unpack_and_run(program: str) -> list[str]:
    """Container entrypoint of a processing step: unpack the code archive and run ``program``."""
    script = (
        "set -euo pipefail; mkdir -p /opt/ml/code; "
        f"tar -xzf {CODE_DIR}/*.gz -C /opt/ml/code; "  # a CDK file asset's key is <hash>.gz
        f'exec python /opt/ml/code/{program} "$@"'
    )
    return ["bash", "-c", script, program]


@contextlib.contextmanager
def _sdk_environment(region: str) -> Iterator[None]:
    """Environment the SDK reads at import and build time; restored afterwards. Importing the SDK
    creates boto3 clients, whose credential lookup would query the EC2 metadata endpoint."""
    wanted = {"AWS_DEFAULT_REGION": region, "SAGEMAKER_VALIDATE_ROLE": "false", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_definition(
    *,
    pipeline_name: str,
    role_arn: str,
    source_uri: str,
    region: str,
    dataset_uri: str,
    output_uri: str,
    checkpoint_uri: str,
    model_package_group: str,
    mlflow_arn: str | None,
    mlflow_experiment: str,
    image: str,
    base_model_id: str,
    preprocess_instance_type: str,
    training_instance_type: str,
    training_instance_count: int,
    evaluate_instance_type: str,
    use_spot: bool,
    max_runtime_seconds: int,
    lora_rank: int,
    lora_alpha: int,
    epochs: int,
    learning_rate: float,
    accuracy_threshold: float,
    kms_key_arn: str | None = None,
    instance_storage: list[str] | None = None,
    subnets: list[str] | None = None,
    security_group_ids: list[str] | None = None,
    model_card_content: str | None = None,
) -> str:
    """JSON pipeline definition (string) ready for CfnPipeline.PipelineDefinitionBody. ``instance_storage``: the
    instance types among the three that have local NVMe storage (their jobs get no volume key)."""
    if not isinstance(training_instance_count, int) or training_instance_count < 1:
        raise ValueError(f"training_instance_count must be a positive integer, got {training_instance_count!r}")
    if not isinstance(max_runtime_seconds, int) or max_runtime_seconds < 1:
        raise ValueError(f"max_runtime_seconds must be a positive integer, got {max_runtime_seconds!r}")
    if bool(subnets) != bool(security_group_ids):
        raise ValueError("subnets and security_group_ids go together: give both or neither")
    for name, value in (("role_arn", role_arn), ("source_uri", source_uri), ("dataset_uri", dataset_uri)):
        if "${" in value:
            raise ValueError(f"{name}: {value!r} is an unresolved token; pass a parseable placeholder instead")
    with _sdk_environment(region), _quiet_offline_sdk():
        return _Builder(dict(locals())).pipeline()


@contextlib.contextmanager
def _quiet_offline_sdk() -> Iterator[None]:
    """The SDK reports every decorated call to an AWS endpoint (STS + HTTPS) unless opted out in a
    config, and the build keeps no config (see _build): the sender is switched off. Its notes
    ('No Job being started', 'Popping out TrainingJobName') are silenced: logs below ERROR are off
    while it builds."""
    import logging
    import warnings
    from unittest import mock

    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        from sagemaker.core.telemetry import telemetry_logging

        with (
            mock.patch.object(telemetry_logging, "_send_telemetry_request", lambda *a, **k: None),
            warnings.catch_warnings(),
        ):
            warnings.filterwarnings("ignore", message="Running within a PipelineSession")
            yield
    finally:
        logging.disable(disabled)


class _Builder:
    """One method per step; each returns the step, the next takes what it needs from the previous ones."""

    def __init__(self, a: dict[str, Any]) -> None:
        import boto3
        from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
        from sagemaker.core.workflow.pipeline_context import PipelineSession
        from sagemaker.mlops.workflow.retry import (
            SageMakerJobExceptionTypeEnum,
            SageMakerJobStepRetryPolicy,
            StepExceptionTypeEnum,
            StepRetryPolicy,
        )
        from sagemaker.mlops.workflow.steps import CacheConfig

        class _OfflineSession(PipelineSession):
            def default_bucket(self):  # the definition names every location itself
                raise RuntimeError("the pipeline builder must not need a default bucket")

        self.a = a
        # Emptied once built: the SDK re-validates a non-empty config against its JSON schema on every
        # lookup (~0.5 s each, dozens per build).
        self.session = _OfflineSession(
            boto_session=boto3.Session(region_name=a["region"]), sagemaker_config=_SDK_CONFIG
        )
        self.session.sagemaker_config = {}
        # Instance types are not parameters: whether a job may have a volume key depends on them.
        self.p = {
            "base_model": ParameterString("BaseModelId", default_value=a["base_model_id"]),
            "dataset": ParameterString("DatasetUri", default_value=a["dataset_uri"]),
            # Bad records stop the pipeline (each is named in the Preprocess log) or are skipped and counted.
            "on_invalid": ParameterString("InvalidRecords", default_value="error", enum_values=["error", "skip"]),
            "lora_rank": ParameterInteger("LoraRank", default_value=a["lora_rank"]),
            "lora_alpha": ParameterInteger("LoraAlpha", default_value=a["lora_alpha"]),
            "epochs": ParameterInteger("Epochs", default_value=a["epochs"]),
            "learning_rate": ParameterFloat("LearningRate", default_value=a["learning_rate"]),
            "training_count": ParameterInteger("TrainingInstanceCount", default_value=a["training_instance_count"]),
            "threshold": ParameterFloat("AccuracyThreshold", default_value=a["accuracy_threshold"]),
        }
        self.base_from_s3 = a["base_model_id"].startswith("s3://")
        self.env = {"MLFLOW_EXPERIMENT_NAME": a["mlflow_experiment"]}
        if a["mlflow_arn"]:
            self.env["MLFLOW_TRACKING_URI"] = a["mlflow_arn"]
        self.vpc = bool(a["subnets"] and a["security_group_ids"])
        self.cache = CacheConfig(enable_caching=True, expire_after="P30D")
        self.job_retries = [
            SageMakerJobStepRetryPolicy(
                exception_types=[
                    SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                    SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
                ],
                interval_seconds=60,
                backoff_rate=2.0,
                max_attempts=5,
            ),
            StepRetryPolicy(
                exception_types=[StepExceptionTypeEnum.THROTTLING, StepExceptionTypeEnum.SERVICE_FAULT],
                interval_seconds=10,
                backoff_rate=2.0,
                max_attempts=5,
            ),
        ]
        self.code = self._s3_in("code", a["source_uri"], CODE_DIR)

    # -- helpers ----------------------------------------------------------------------------------

    def _volume_key(self, instance_type: str) -> str | None:
        """The volume key, except on instance types with local NVMe storage (SageMaker refuses one there)."""
        return None if instance_type in (self.a["instance_storage"] or []) else self.a["kms_key_arn"]

    def _out(self, *parts: str):
        from sagemaker.core.workflow.execution_variables import ExecutionVariables
        from sagemaker.core.workflow.functions import Join

        return Join(on="/", values=[self.a["output_uri"], ExecutionVariables.PIPELINE_EXECUTION_ID, *parts])

    def _processor(self, instance_type: str, program: str, environment: dict | None = None):
        from sagemaker.core.network import NetworkConfig
        from sagemaker.core.processing import Processor

        a = self.a
        return Processor(
            role=a["role_arn"],
            image_uri=a["image"],
            instance_count=1,
            instance_type=instance_type,
            entrypoint=_unpack_and_run(program),
            volume_kms_key=self._volume_key(instance_type),
            output_kms_key=a["kms_key_arn"],
            max_runtime_in_seconds=a["max_runtime_seconds"],
            env=environment,
            network_config=NetworkConfig(
                subnets=a["subnets"],
                security_group_ids=a["security_group_ids"],
                encrypt_inter_container_traffic=True,
            )
            if self.vpc
            else None,
            base_job_name=program.removesuffix(".py"),
            sagemaker_session=self.session,
        )

    @staticmethod
    def _s3_in(name: str, source, destination: str):
        from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input

        return ProcessingInput(
            input_name=name,
            s3_input=ProcessingS3Input(
                s3_uri=source, local_path=destination, s3_data_type="S3Prefix", s3_input_mode="File"
            ),
        )

    @staticmethod
    def _s3_out(name: str, source: str, destination):
        from sagemaker.core.shapes import ProcessingOutput, ProcessingS3Output

        return ProcessingOutput(
            output_name=name,
            s3_output=ProcessingS3Output(s3_uri=destination, local_path=source, s3_upload_mode="EndOfJob"),
        )

    # -- steps ------------------------------------------------------------------------------------

    def preprocess(self):
        from sagemaker.mlops.workflow.steps import ProcessingStep

        p = self.p
        return ProcessingStep(
            name=STEP_PREPROCESS,
            step_args=self._processor(self.a["preprocess_instance_type"], "preprocess.py").run(
                inputs=[self.code, self._s3_in("raw", p["dataset"], "/opt/ml/processing/input/data")],
                outputs=[
                    self._s3_out(name, f"/opt/ml/processing/output/{name}", self._out(STEP_PREPROCESS, name))
                    for name in ("train", "test", "report")
                ],
                arguments=[
                    "--input-dir",
                    "/opt/ml/processing/input/data",
                    "--output-dir",
                    "/opt/ml/processing/output",
                    "--on-invalid",
                    p["on_invalid"],
                ],
            ),
            cache_config=self.cache,
            retry_policies=self.job_retries,
        )

    def finetune(self, preprocess):
        from sagemaker.core.shapes import RetryStrategy
        from sagemaker.core.training.configs import (
            CheckpointConfig,
            Compute,
            InputData,
            Networking,
            OutputDataConfig,
            StoppingCondition,
        )
        from sagemaker.mlops.workflow.steps import TrainingStep
        from sagemaker.train.model_trainer import ModelTrainer

        a, p = self.a, self.p
        instance_type = a["training_instance_type"]
        hyperparameters = {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": a["source_uri"],
            "sagemaker_region": a["region"],
            "sagemaker_torch_distributed_enabled": "true",  # torchrun on every GPU of every instance
            "sagemaker_instance_type": instance_type,
            "lora-rank": p["lora_rank"].to_string(),
            "lora-alpha": p["lora_alpha"].to_string(),
            "epochs": p["epochs"].to_string(),
            "learning-rate": p["learning_rate"].to_string(),
        }
        train_uri = preprocess.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri
        channels = [InputData(channel_name="train", data_source=train_uri)]
        if self.base_from_s3:
            channels.append(InputData(channel_name="base", data_source=p["base_model"]))
        else:
            hyperparameters["base-model"] = p["base_model"]
        trainer = ModelTrainer(
            training_image=a["image"],
            role=a["role_arn"],
            sagemaker_session=self.session,
            base_job_name="finetune",
            compute=Compute(
                instance_type=instance_type,
                instance_count=p["training_count"],
                volume_size_in_gb=200,
                volume_kms_key_id=self._volume_key(instance_type),
                enable_managed_spot_training=a["use_spot"] or None,
            ),
            stopping_condition=StoppingCondition(
                max_runtime_in_seconds=a["max_runtime_seconds"],
                max_wait_time_in_seconds=2 * a["max_runtime_seconds"] if a["use_spot"] else None,
            ),
            output_data_config=OutputDataConfig(
                s3_output_path=self._out(STEP_TRAIN), kms_key_id=a["kms_key_arn"], compression_type="GZIP"
            ),
            checkpoint_config=CheckpointConfig(s3_uri=a["checkpoint_uri"], local_path="/opt/ml/checkpoints"),
            networking=Networking(
                subnets=a["subnets"],
                security_group_ids=a["security_group_ids"],
                enable_inter_container_traffic_encryption=True,
            )
            if self.vpc
            else None,
            environment=self.env,
            hyperparameters=hyperparameters,
        ).with_retry_strategy(RetryStrategy(maximum_retry_attempts=2))
        return TrainingStep(
            name=STEP_TRAIN,
            step_args=trainer.train(input_data_config=channels),
            cache_config=self.cache,
            retry_policies=self.job_retries,
        )

    def evaluate(self, preprocess, finetune):
        from sagemaker.core.workflow.properties import PropertyFile
        from sagemaker.mlops.workflow.steps import ProcessingStep

        p = self.p
        self.report = PropertyFile(name="EvaluationReport", output_name="evaluation", path=EVALUATION_FILE)
        test_uri = preprocess.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri
        inputs = [
            self.code,
            self._s3_in("model", finetune.properties.ModelArtifacts.S3ModelArtifacts, "/opt/ml/processing/model"),
            self._s3_in("test", test_uri, "/opt/ml/processing/test"),
        ]
        base_arg = p["base_model"]
        if self.base_from_s3:
            inputs.append(self._s3_in("base", p["base_model"], BASE_DIR))
            base_arg = BASE_DIR
        return ProcessingStep(
            name=STEP_EVALUATE,
            step_args=self._processor(self.a["evaluate_instance_type"], "evaluate.py", environment=self.env).run(
                inputs=inputs,
                outputs=[self._s3_out("evaluation", "/opt/ml/processing/evaluation", self._out(STEP_EVALUATE))],
                arguments=[
                    "--base-model",
                    base_arg,
                    "--model-dir",
                    "/opt/ml/processing/model",
                    "--test-dir",
                    "/opt/ml/processing/test",
                    "--output-dir",
                    "/opt/ml/processing/evaluation",
                ],
            ),
            property_files=[self.report],
            cache_config=self.cache,
            retry_policies=self.job_retries,
        )

    def register(self, finetune, evaluate):
        from sagemaker.core.metadata_properties import MetadataProperties
        from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
        from sagemaker.core.shapes import ModelPackageModelCard
        from sagemaker.core.workflow.execution_variables import ExecutionVariables
        from sagemaker.core.workflow.functions import Join, JsonGet
        from sagemaker.mlops.workflow.model_step import ModelStep
        from sagemaker.serve.model_builder import ModelBuilder

        a, p = self.a, self.p
        adapter_uri = finetune.properties.ModelArtifacts.S3ModelArtifacts
        evaluation_uri = Join(
            on="/",
            values=[evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri, EVALUATION_FILE],
        )
        lineage = {LINEAGE_EXECUTION: ExecutionVariables.PIPELINE_EXECUTION_ARN}
        if a["mlflow_arn"]:  # the run FineTune logged to (evaluate.py reports its id)
            lineage[LINEAGE_MLFLOW_RUN] = JsonGet(
                step_name=evaluate.name, property_file=self.report, json_path=RUN_ID_PATH
            )
        builder = ModelBuilder(
            image_uri=a["image"],
            s3_model_data_url=adapter_uri,
            role_arn=a["role_arn"],
            dependencies={},  # the default {"auto": True} uploads code
            sagemaker_session=self.session,
        )
        return ModelStep(
            name=STEP_REGISTER,
            step_args=builder.register(
                model_package_group_name=a["model_package_group"],
                approval_status="PendingManualApproval",
                content_types=["application/json"],
                response_types=["application/json"],
                model_metrics=ModelMetrics(
                    model_statistics=MetricsSource(content_type="application/json", s3_uri=evaluation_uri)
                ),
                metadata_properties=MetadataProperties(generated_by=ExecutionVariables.PIPELINE_EXECUTION_ARN),
                customer_metadata_properties={
                    "base_model": p["base_model"],
                    "lora_rank": p["lora_rank"].to_string(),
                    **lineage,
                },
                model_card=ModelPackageModelCard(
                    model_card_content=a["model_card_content"] or _default_model_card(), model_card_status="Draft"
                ),
                domain="NATURAL_LANGUAGE_PROCESSING",
                task="TEXT_GENERATION",
                description="LoRA adapter for clinical diagnosis support (synthetic training data)",
            ),
            retry_policies=self.job_retries[1:],
        )

    def gate(self, evaluate, register):
        from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
        from sagemaker.core.workflow.functions import Join, JsonGet
        from sagemaker.mlops.workflow.condition_step import ConditionStep
        from sagemaker.mlops.workflow.fail_step import FailStep

        accuracy = JsonGet(step_name=evaluate.name, property_file=self.report, json_path=ACCURACY_PATH)
        fail = FailStep(
            name=STEP_FAIL,
            error_message=Join(
                on=" ", values=["Diagnosis accuracy", accuracy, "is below the threshold", self.p["threshold"]]
            ),
        )
        return ConditionStep(
            name=STEP_GATE,
            conditions=[ConditionGreaterThanOrEqualTo(left=accuracy, right=self.p["threshold"])],
            if_steps=[register],
            else_steps=[fail],
        )

    def pipeline(self) -> str:
        from sagemaker.core.shapes import MlflowConfig
        from sagemaker.mlops.workflow.pipeline import Pipeline

        a = self.a
        preprocess = self.preprocess()
        finetune = self.finetune(preprocess)
        evaluate = self.evaluate(preprocess, finetune)
        gate = self.gate(evaluate, self.register(finetune, evaluate))
        mlflow = (
            MlflowConfig(mlflow_resource_arn=a["mlflow_arn"], mlflow_experiment_name=a["mlflow_experiment"])
            if a["mlflow_arn"]
            else None
        )
        return Pipeline(
            name=a["pipeline_name"],
            parameters=list(self.p.values()),
            steps=[preprocess, finetune, evaluate, gate],
            mlflow_config=mlflow,
            pipeline_experiment_config=None,
            sagemaker_session=self.session,
        ).definition()


def _default_model_card() -> str:
    """A package card in the Model Package Model Card schema (model_overview holds only model_creator and
    model_artifact): https://docs.aws.amazon.com/sagemaker/latest/dg/model-registry-details.html#model-card-schema"""
    return json.dumps(
        {
            "model_overview": {"model_creator": "Clinical agent ML platform team"},
            "intended_uses": {
                "purpose_of_model": "Clinical decision support for clinicians; never a diagnosis on its own.",
                "intended_uses": "Suggest a differential to a qualified clinician, who confirms or rejects it.",
                "risk_rating": "High",
                "explanations_for_risk_rating": "Wrong suggestions can harm patients if not reviewed.",
            },
            "additional_information": {
                "ethical_considerations": "Trained on synthetic records only; no real patient data.",
                "caveats_and_recommendations": "Evaluate on representative data before any clinical pilot.",
            },
        },
        sort_keys=True,
    )


# The training image (containers/training) as the CDK asset publishes it.
_SAMPLE_IMAGE = "111111111111.dkr.ecr.us-east-1.amazonaws.com/cdk-hnb659fds-container-assets-111111111111-us-east-1:abc"


def _sample() -> dict:
    """Placeholder values for humans reading the definition."""
    return dict(
        pipeline_name="clinical-diagnosis-finetune",
        role_arn="arn:aws:iam::111111111111:role/pipeline-execution",
        source_uri="s3://cdk-assets-111111111111-us-east-1/training-source.tar.gz",
        region="us-east-1",
        dataset_uri="s3://datasets-111111111111/clinical/raw/",
        output_uri="s3://artifacts-111111111111/pipeline",
        checkpoint_uri="s3://artifacts-111111111111/checkpoints/clinical-diagnosis-finetune",
        model_package_group="clinical-diagnosis-llama",
        mlflow_arn="arn:aws:sagemaker:us-east-1:111111111111:mlflow-app/app-example",
        mlflow_experiment="clinical-diagnosis",
        image=_SAMPLE_IMAGE,
        base_model_id="meta-llama/Llama-3.2-3B-Instruct",
        preprocess_instance_type="ml.m5.xlarge",
        training_instance_type="ml.g5.2xlarge",
        training_instance_count=1,
        evaluate_instance_type="ml.g5.2xlarge",
        use_spot=True,
        max_runtime_seconds=86400,
        lora_rank=16,
        lora_alpha=32,
        epochs=3,
        learning_rate=2e-4,
        accuracy_threshold=0.6,
        kms_key_arn="arn:aws:kms:us-east-1:111111111111:key/00000000-0000-0000-0000-000000000000",
        instance_storage=["ml.g5.2xlarge"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--print", action="store_true", help="print a sample definition (placeholder values)")
    args = parser.parse_args(argv)
    if not args.print:
        parser.print_help()
        return 0
    print(json.dumps(json.loads(build_definition(**_sample())), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
