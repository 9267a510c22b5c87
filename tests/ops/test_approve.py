"""make approve: the candidate is shown (metrics, quality gate, model card, training run) and approved only
after confirmation; nothing to approve is said in words."""

from __future__ import annotations

import json

from botocore.stub import ANY

from ops import outputs

from .conftest import GROUP, package_arn, summary

EXECUTION = "arn:aws:sagemaker:us-east-1:111111111111:pipeline/clinical-diagnosis-finetune/execution/exec3"
JOB = "pipelines-exec3-FineTune-abc"


REPORT = {
    "multiclass_classification_metrics": {"accuracy": {"value": 0.83, "standard_deviation": 0.03}},
    "language_model_metrics": {"loss": {"value": 0.52}, "perplexity": {"value": 1.68}},
    "samples": {"answered": 200},
    "mlflow_run_id": "run-42",
}
CARD = {
    "intended_uses": {
        "purpose_of_model": "Clinical decision support for clinicians; never a diagnosis on its own.",
        "risk_rating": "High",
        "explanations_for_risk_rating": "Wrong suggestions can harm patients if not reviewed.",
    },
    "additional_information": {"caveats_and_recommendations": "Evaluate on representative data first."},
}


def candidate(env, stub, version=3, status="PendingManualApproval", others=((2, "Approved"),)):
    """The registry (stubbed: moto keeps no model card), the evaluation report (moto S3), the lineage."""
    key = "pipeline/clinical-diagnosis-finetune/exec3/Evaluate/evaluation.json"
    env.client("s3").put_object(Bucket=env.values[outputs.ARTIFACTS_BUCKET], Key=key, Body=json.dumps(REPORT).encode())
    listed = [summary(version, status), *(summary(v, s) for v, s in others)]
    stub.add_response("list_model_packages", {"ModelPackageSummaryList": listed}, {"ModelPackageGroupName": GROUP})
    stub.add_response(
        "describe_model_package",
        {
            **summary(version, status),
            "ModelPackageName": GROUP,
            "ModelPackageStatusDetails": {"ValidationStatuses": []},
            "InferenceSpecification": {
                "Containers": [
                    {
                        "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.8.0",
                        "ModelDataUrl": f"s3://{env.values[outputs.ARTIFACTS_BUCKET]}/pipeline/exec3/model.tar.gz",
                    }
                ],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
            "ModelMetrics": {
                "ModelQuality": {
                    "Statistics": {
                        "ContentType": "application/json",
                        "S3Uri": f"s3://{env.values[outputs.ARTIFACTS_BUCKET]}/{key}",
                    }
                }
            },
            "ModelCard": {"ModelCardContent": json.dumps(CARD), "ModelCardStatus": "Draft"},
        },
        {"ModelPackageName": package_arn(version)},
    )
    stub.add_response(
        "list_pipeline_executions",
        {"PipelineExecutionSummaries": [{"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": "Succeeded"}]},
        {
            "PipelineName": "clinical-diagnosis-finetune",
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": 20,
        },
    )
    steps = [
        {
            "StepName": "FineTune",
            "StepStatus": "Succeeded",
            "Metadata": {"TrainingJob": {"Arn": f"arn:aws:sagemaker:us-east-1:111111111111:training-job/{JOB}"}},
        },
        {"StepName": "QualityGate", "StepStatus": "Succeeded", "Metadata": {"Condition": {"Outcome": "True"}}},
        {
            "StepName": "Register",
            "StepStatus": "Succeeded",
            "Metadata": {"RegisterModel": {"Arn": package_arn(version)}},
        },
    ]
    stub.add_response(
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": steps},
        {"PipelineExecutionArn": EXECUTION, "SortOrder": "Ascending"},
    )
    stub.add_response(
        "list_pipeline_parameters_for_execution",
        {"PipelineParameters": [{"Name": "AccuracyThreshold", "Value": "0.6"}]},
        {"PipelineExecutionArn": EXECUTION},
    )


def approved(stub, version):
    stub.add_response(
        "update_model_package",
        {"ModelPackageArn": package_arn(version)},
        {"ModelPackageArn": package_arn(version), "ModelApprovalStatus": "Approved", "ApprovalDescription": ANY},
    )


def test_the_candidate_is_shown_and_approved_after_confirmation(env):
    env.deploy()
    sagemaker, stub = env.stub("sagemaker")
    candidate(env, stub)
    approved(stub, 3)
    result = env.run(env.cloud(sagemaker=sagemaker), "approve", "--env", "dev", input="y\n")
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"{GROUP} version 3 (PendingManualApproval)" in out
    assert "multiclass_classification_metrics: accuracy 0.83" in out and "perplexity 1.68" in out
    assert "quality gate: passed (accuracy 0.83, threshold 0.6)" in out
    assert "model card (Draft):" in out and "risk: High — Wrong suggestions can harm patients" in out
    assert (
        f"training run: MLflow run run-42 in experiment clinical-diagnosis on {env.values[outputs.MLFLOW_ARN]}" in out
    )
    assert f"pipeline execution {EXECUTION}, training job {JOB}" in out
    assert f"Approve {GROUP} version 3 for dev?" in out
    assert f"✓ approved {package_arn(3)}" in out


def test_a_declined_confirmation_changes_nothing(env):
    env.deploy()
    sagemaker, stub = env.stub("sagemaker")
    candidate(env, stub)
    result = env.run(env.cloud(sagemaker=sagemaker), "approve", "--env", "dev", input="n\n")
    assert result.exit_code == 1
    assert "not approved: nothing changed" in result.output  # and no UpdateModelPackage (the stub has none queued)


def test_a_given_version_is_approved_without_asking_with_yes(env):
    env.deploy()
    sagemaker, stub = env.stub("sagemaker")
    candidate(env, stub, version=2, status="Rejected", others=((3, "PendingManualApproval"),))
    approved(stub, 2)
    result = env.run(env.cloud(sagemaker=sagemaker), "approve", "--env", "dev", "--version", "2", "--yes")
    assert result.exit_code == 0, result.output
    assert f"{GROUP} version 2 (Rejected)" in result.output and "Approve " not in result.output


def test_nothing_to_approve_is_said_in_words(env):
    env.deploy()
    sagemaker, stub = env.stub("sagemaker")
    stub.add_response(
        "list_model_packages", {"ModelPackageSummaryList": [summary(2, "Approved")]}, {"ModelPackageGroupName": GROUP}
    )
    result = env.run(env.cloud(sagemaker=sagemaker), "approve", "--env", "dev")
    assert result.exit_code == 1
    assert f"nothing to approve: no version of {GROUP} awaits approval (latest: version 2, Approved)" in result.output
    assert "make train ENV=dev" in result.output


def test_an_unknown_version_lists_the_versions(env):
    env.deploy()
    sagemaker, stub = env.stub("sagemaker")
    stub.add_response(
        "list_model_packages", {"ModelPackageSummaryList": [summary(2, "Approved")]}, {"ModelPackageGroupName": GROUP}
    )
    result = env.run(env.cloud(sagemaker=sagemaker), "approve", "--env", "dev", "--version", "7")
    assert result.exit_code == 1
    assert f"model package group {GROUP} has no version 7 (versions: 2)" in result.output
