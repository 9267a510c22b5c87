"""The SageMaker Pipeline definition: Preprocess → FineTune → Evaluate → QualityGate → Register | Fail.

``build_definition(...)`` returns the JSON definition for ``CfnPipeline.PipelineDefinitionBody``.
It is pure: built with the SageMaker Python SDK v3 classic steps, offline (no AWS call, nothing
uploaded) and byte-identical across runs. Code comes from ``source_uri``, the S3 URI of a gzipped
tar of this folder (a CDK file asset, uploaded as ``<hash>.gz``):

- the training job runs it with the PyTorch DLC's training toolkit (``sagemaker_program`` /
  ``sagemaker_submit_directory``; the toolkit pip-installs ``requirements.txt`` and, with
  ``sagemaker_torch_distributed_enabled``, launches ``train.py`` under torchrun on every GPU of
  every instance);
- the processing jobs receive it as an input in ``/opt/ml/processing/input/code`` and unpack it.

Strings such as ``role_arn`` or ``source_uri`` may be CloudFormation tokens: they pass through
untouched. ``python -m training.pipeline --print`` prints a sample definition.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator

STEP_PREPROCESS = "Preprocess"
STEP_TRAIN = "FineTune"
STEP_EVALUATE = "Evaluate"
STEP_GATE = "QualityGate"
STEP_REGISTER = "Register"
STEP_FAIL = "AccuracyBelowThreshold"

EVALUATION_FILE = "evaluation.json"
ACCURACY_PATH = "multiclass_classification_metrics.accuracy.value"
CODE_DIR = "/opt/ml/processing/input/code"

# Inputs that may be CloudFormation tokens (``${Token[...]}``), which the SDK would choke on (it
# parses S3 URIs, resolves names that are not role ARNs through IAM): the definition is built with
# these parseable stand-ins, each replaced by the caller's exact string in the final JSON.
_STAND_INS = {
    "role_arn": "arn:aws:iam::000000000000:role/standin-role",
    "source_uri": "s3://standin-source/standin-source.tar.gz",
    "dataset_uri": "s3://standin-dataset/standin-dataset/",
    "output_uri": "s3://standin-output/standin-output",
    "checkpoint_uri": "s3://standin-checkpoint/standin-checkpoint",
    "mlflow_arn": "arn:aws:sagemaker:us-east-1:000000000000:mlflow-app/standin-mlflow",
    "kms_key_arn": "arn:aws:kms:us-east-1:000000000000:key/standin-kms",
    "training_image": "000000000000.dkr.ecr.us-east-1.amazonaws.com/standin-training:0",
    "processing_image": "000000000000.dkr.ecr.us-east-1.amazonaws.com/standin-processing:0",
}
_MARK = "standin-"
# Given to the session so that it loads no config file (user defaults must not reach the definition).
_SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def _unpack_and_run(program: str, install: bool) -> list[str]:
    """Container entrypoint of a processing step: unpack the code archive and run ``program``."""
    pip = "python -m pip install --quiet --no-cache-dir -r /opt/ml/code/requirements.txt; " if install else ""
    script = (
        "set -euo pipefail; mkdir -p /opt/ml/code; "
        f"tar -xzf {CODE_DIR}/*.gz -C /opt/ml/code; {pip}"  # a CDK file asset's key is <hash>.gz
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
    training_image: str,
    processing_image: str,
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
    subnets: list[str] | None = None,
    security_group_ids: list[str] | None = None,
    model_card_content: str | None = None,
) -> str:
    """JSON pipeline definition (string) ready for CfnPipeline.PipelineDefinitionBody."""
    given = dict(locals())
    if not isinstance(training_instance_count, int) or training_instance_count < 1:
        raise ValueError(f"training_instance_count must be a positive integer, got {training_instance_count!r}")
    if not isinstance(max_runtime_seconds, int) or max_runtime_seconds < 1:
        raise ValueError(f"max_runtime_seconds must be a positive integer, got {max_runtime_seconds!r}")
    if bool(subnets) != bool(security_group_ids):
        raise ValueError("subnets and security_group_ids go together: give both or neither")
    real: dict[str, str] = {}  # stand-in -> the caller's string
    for name, stand_in in _STAND_INS.items():
        if given[name] is not None:
            real[stand_in] = given[name]
            given[name] = stand_in
    for name, prefix in (("subnets", "subnet-"), ("security_group_ids", "sg-")):
        stand_ins = [f"{prefix}{_MARK}{i:03d}" for i in range(len(given[name] or []))]
        real.update(zip(stand_ins, given[name] or [], strict=True))
        given[name] = stand_ins or None
    with _sdk_environment(region), _quiet_offline_sdk():
        definition = _build(**given)
    for stand_in, value in sorted(real.items(), key=lambda kv: -len(kv[0])):
        definition = definition.replace(stand_in, json.dumps(value)[1:-1])
    if _MARK in definition:
        at = definition.index(_MARK)
        raise RuntimeError(f"the SDK altered an input it was given: {definition[max(0, at - 80) : at + 40]!r}")
    return definition


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


def _build(**a) -> str:
    import boto3
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.network import NetworkConfig
    from sagemaker.core.processing import Processor
    from sagemaker.core.shapes import (
        MlflowConfig,
        ModelPackageModelCard,
        ProcessingInput,
        ProcessingOutput,
        ProcessingS3Input,
        ProcessingS3Output,
        RetryStrategy,
    )
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        InputData,
        Networking,
        OutputDataConfig,
        StoppingCondition,
    )
    from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.condition_step import ConditionStep
    from sagemaker.mlops.workflow.fail_step import FailStep
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.mlops.workflow.pipeline import Pipeline
    from sagemaker.mlops.workflow.retry import (
        SageMakerJobExceptionTypeEnum,
        SageMakerJobStepRetryPolicy,
        StepExceptionTypeEnum,
        StepRetryPolicy,
    )
    from sagemaker.mlops.workflow.steps import CacheConfig, ProcessingStep, TrainingStep
    from sagemaker.serve.model_builder import ModelBuilder
    from sagemaker.train.model_trainer import ModelTrainer

    class _OfflineSession(PipelineSession):
        def default_bucket(self):  # the definition names every location itself
            raise RuntimeError("the pipeline builder must not need a default bucket")

    # Emptied once built: the SDK re-validates a non-empty config against its JSON schema on every
    # lookup (~0.5 s each, dozens per build).
    session = _OfflineSession(boto_session=boto3.Session(region_name=a["region"]), sagemaker_config=_SDK_CONFIG)
    session.sagemaker_config = {}

    p = {
        "base_model": ParameterString("BaseModelId", default_value=a["base_model_id"]),
        "dataset": ParameterString("DatasetUri", default_value=a["dataset_uri"]),
        # Bad records stop the pipeline (each is named in the Preprocess log) or are skipped and counted.
        "on_invalid": ParameterString("InvalidRecords", default_value="error", enum_values=["error", "skip"]),
        "lora_rank": ParameterInteger("LoraRank", default_value=a["lora_rank"]),
        "lora_alpha": ParameterInteger("LoraAlpha", default_value=a["lora_alpha"]),
        "epochs": ParameterInteger("Epochs", default_value=a["epochs"]),
        "learning_rate": ParameterFloat("LearningRate", default_value=a["learning_rate"]),
        "preprocess_instance": ParameterString("PreprocessInstanceType", default_value=a["preprocess_instance_type"]),
        "training_instance": ParameterString("TrainingInstanceType", default_value=a["training_instance_type"]),
        "training_count": ParameterInteger("TrainingInstanceCount", default_value=a["training_instance_count"]),
        "evaluate_instance": ParameterString("EvaluateInstanceType", default_value=a["evaluate_instance_type"]),
        "threshold": ParameterFloat("AccuracyThreshold", default_value=a["accuracy_threshold"]),
    }
    base_from_s3 = a["base_model_id"].startswith("s3://")

    def out(*parts: str):
        return Join(on="/", values=[a["output_uri"], ExecutionVariables.PIPELINE_EXECUTION_ID, *parts])

    env = {"MLFLOW_EXPERIMENT_NAME": a["mlflow_experiment"]}
    if a["mlflow_arn"]:
        env["MLFLOW_TRACKING_URI"] = a["mlflow_arn"]
    kms = a["kms_key_arn"]
    vpc = bool(a["subnets"] and a["security_group_ids"])
    network = (
        NetworkConfig(
            subnets=a["subnets"],
            security_group_ids=a["security_group_ids"],
            encrypt_inter_container_traffic=True,
        )
        if vpc
        else None
    )
    cache = CacheConfig(enable_caching=True, expire_after="P30D")
    job_retries = [
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

    def processor(instance_type, program: str, install: bool, environment: dict | None = None) -> Processor:
        return Processor(
            role=a["role_arn"],
            image_uri=a["processing_image"],
            instance_count=1,
            instance_type=instance_type,
            entrypoint=_unpack_and_run(program, install),
            volume_kms_key=kms,
            output_kms_key=kms,
            max_runtime_in_seconds=a["max_runtime_seconds"],
            env=environment,
            network_config=network,
            base_job_name=program.removesuffix(".py"),
            sagemaker_session=session,
        )

    def s3_in(name: str, source, destination: str) -> ProcessingInput:
        return ProcessingInput(
            input_name=name,
            s3_input=ProcessingS3Input(
                s3_uri=source, local_path=destination, s3_data_type="S3Prefix", s3_input_mode="File"
            ),
        )

    def s3_out(name: str, source: str, destination) -> ProcessingOutput:
        return ProcessingOutput(
            output_name=name,
            s3_output=ProcessingS3Output(s3_uri=destination, local_path=source, s3_upload_mode="EndOfJob"),
        )

    code = s3_in("code", a["source_uri"], CODE_DIR)

    # -- Preprocess ---------------------------------------------------------------------------
    preprocess = ProcessingStep(
        name=STEP_PREPROCESS,
        step_args=processor(p["preprocess_instance"], "preprocess.py", install=False).run(
            inputs=[code, s3_in("raw", p["dataset"], "/opt/ml/processing/input/data")],
            outputs=[
                s3_out(name, f"/opt/ml/processing/output/{name}", out(STEP_PREPROCESS, name))
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
        cache_config=cache,
        retry_policies=job_retries,
    )
    train_uri = preprocess.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri
    test_uri = preprocess.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri

    # -- FineTune -----------------------------------------------------------------------------
    hyperparameters = {
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": a["source_uri"],
        "sagemaker_region": a["region"],
        "sagemaker_torch_distributed_enabled": "true",  # torchrun on every GPU of every instance
        "sagemaker_instance_type": p["training_instance"],
        "lora-rank": p["lora_rank"].to_string(),
        "lora-alpha": p["lora_alpha"].to_string(),
        "epochs": p["epochs"].to_string(),
        "learning-rate": p["learning_rate"].to_string(),
    }
    channels = [InputData(channel_name="train", data_source=train_uri)]
    if base_from_s3:
        channels.append(InputData(channel_name="base", data_source=p["base_model"]))
    else:
        hyperparameters["base-model"] = p["base_model"]
    trainer = ModelTrainer(
        training_image=a["training_image"],
        role=a["role_arn"],
        sagemaker_session=session,
        base_job_name="finetune",
        compute=Compute(
            instance_type=p["training_instance"],
            instance_count=p["training_count"],
            volume_size_in_gb=200,
            volume_kms_key_id=kms,
            enable_managed_spot_training=a["use_spot"] or None,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=a["max_runtime_seconds"],
            max_wait_time_in_seconds=2 * a["max_runtime_seconds"] if a["use_spot"] else None,
        ),
        output_data_config=OutputDataConfig(s3_output_path=out(STEP_TRAIN), kms_key_id=kms, compression_type="GZIP"),
        checkpoint_config=CheckpointConfig(s3_uri=a["checkpoint_uri"], local_path="/opt/ml/checkpoints"),
        networking=Networking(
            subnets=a["subnets"],
            security_group_ids=a["security_group_ids"],
            enable_inter_container_traffic_encryption=True,
        )
        if vpc
        else None,
        environment=env,
        hyperparameters=hyperparameters,
    ).with_retry_strategy(RetryStrategy(maximum_retry_attempts=2))
    finetune = TrainingStep(
        name=STEP_TRAIN,
        step_args=trainer.train(input_data_config=channels),
        cache_config=cache,
        retry_policies=job_retries,
    )
    adapter_uri = finetune.properties.ModelArtifacts.S3ModelArtifacts

    # -- Evaluate -----------------------------------------------------------------------------
    report = PropertyFile(name="EvaluationReport", output_name="evaluation", path=EVALUATION_FILE)
    eval_inputs = [
        code,
        s3_in("model", adapter_uri, "/opt/ml/processing/model"),
        s3_in("test", test_uri, "/opt/ml/processing/test"),
    ]
    base_arg = p["base_model"]
    if base_from_s3:
        eval_inputs.append(s3_in("base", p["base_model"], "/opt/ml/processing/base"))
        base_arg = "/opt/ml/processing/base"
    evaluate = ProcessingStep(
        name=STEP_EVALUATE,
        step_args=processor(p["evaluate_instance"], "evaluate.py", install=True, environment=env).run(
            inputs=eval_inputs,
            outputs=[s3_out("evaluation", "/opt/ml/processing/evaluation", out(STEP_EVALUATE))],
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
        property_files=[report],
        cache_config=cache,
        retry_policies=job_retries,
    )
    evaluation_uri = Join(
        on="/",
        values=[evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri, EVALUATION_FILE],
    )
    accuracy = JsonGet(step_name=evaluate.name, property_file=report, json_path=ACCURACY_PATH)

    # -- Register | Fail ----------------------------------------------------------------------
    builder = ModelBuilder(
        image_uri=a["training_image"],
        s3_model_data_url=adapter_uri,
        role_arn=a["role_arn"],
        dependencies={},  # the default {"auto": True} uploads code
        sagemaker_session=session,
    )
    register = ModelStep(
        name=STEP_REGISTER,
        step_args=builder.register(
            model_package_group_name=a["model_package_group"],
            approval_status="PendingManualApproval",
            content_types=["application/json"],
            response_types=["application/json"],
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(content_type="application/json", s3_uri=evaluation_uri)
            ),
            customer_metadata_properties={"base_model": p["base_model"], "lora_rank": p["lora_rank"].to_string()},
            model_card=ModelPackageModelCard(
                model_card_content=a["model_card_content"] or _default_model_card(), model_card_status="Draft"
            ),
            domain="NATURAL_LANGUAGE_PROCESSING",
            task="TEXT_GENERATION",
            description="LoRA adapter for clinical diagnosis support (synthetic training data)",
        ),
        retry_policies=job_retries[1:],
    )
    fail = FailStep(
        name=STEP_FAIL,
        error_message=Join(on=" ", values=["Diagnosis accuracy", accuracy, "is below the threshold", p["threshold"]]),
    )
    gate = ConditionStep(
        name=STEP_GATE,
        conditions=[ConditionGreaterThanOrEqualTo(left=accuracy, right=p["threshold"])],
        if_steps=[register],
        else_steps=[fail],
    )

    mlflow = (
        MlflowConfig(mlflow_resource_arn=a["mlflow_arn"], mlflow_experiment_name=a["mlflow_experiment"])
        if a["mlflow_arn"]
        else None
    )
    pipeline = Pipeline(
        name=a["pipeline_name"],
        parameters=list(p.values()),
        steps=[preprocess, finetune, evaluate, gate],
        mlflow_config=mlflow,
        pipeline_experiment_config=None,
        sagemaker_session=session,
    )
    return pipeline.definition()


def _default_model_card() -> str:
    return json.dumps(
        {
            "model_overview": {
                "model_description": "LoRA adapter on a Llama base model that drafts an assessment and the most "
                "likely diagnosis from a chief complaint, vitals and history.",
                "problem_type": "Text generation",
                "algorithm_type": "LoRA supervised fine-tuning",
            },
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


# transformers 5 needs PyTorch >= 2.6 (it disables an older torch): a 2.6+ PyTorch DLC.
_SAMPLE_IMAGE = (
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.8.0-gpu-py312-cu129-ubuntu22.04-sagemaker"
)


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
        training_image=_SAMPLE_IMAGE,
        processing_image=_SAMPLE_IMAGE,
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
