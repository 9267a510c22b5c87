"""make train: parameters checked against the deployed pipeline, inputs checked before starting, then every step
followed: status, duration, a failure's reason and log location (exit 1), Ctrl-C that says how to resume."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from botocore.stub import ANY

from ops import outputs

from .conftest import T0, FakeClock

EXECUTION = "arn:aws:sagemaker:us-east-1:111111111111:pipeline/clinical-diagnosis-finetune/execution/abc123def456"
PACKAGE = "arn:aws:sagemaker:us-east-1:111111111111:model-package/clinical-diagnosis-llama/3"
JOB = {
    "Preprocess": ("ProcessingJob", "pipelines-abc123def456-Preprocess-1a2b3c"),
    "FineTune": ("TrainingJob", "pipelines-abc123def456-FineTune-4d5e6f"),
    "Evaluate": ("ProcessingJob", "pipelines-abc123def456-Evaluate-7a8b9c"),
}


def definition(env):
    return json.dumps(
        {
            "Version": "2020-12-01",
            "Parameters": [
                {
                    "Name": "DatasetUri",
                    "Type": "String",
                    "DefaultValue": f"s3://{env.values[outputs.DATASETS_BUCKET]}/clinical/raw/",
                },
                {
                    "Name": "BaseModelId",
                    "Type": "String",
                    "DefaultValue": f"s3://{env.values[outputs.ARTIFACTS_BUCKET]}/models/llama-3.2-3b-instruct/",
                },
                {"Name": "InvalidRecords", "Type": "String", "DefaultValue": "error", "EnumValues": ["error", "skip"]},
                {"Name": "Epochs", "Type": "Integer", "DefaultValue": 1},
                {"Name": "LearningRate", "Type": "Float", "DefaultValue": 0.0002},
            ],
            "Steps": [],
        }
    )


def described_pipeline(stub, env):
    stub.add_response(
        "describe_pipeline",
        {"PipelineName": "clinical-diagnosis-finetune", "PipelineDefinition": definition(env)},
        {"PipelineName": "clinical-diagnosis-finetune"},
    )


def step(name, status, minutes=0, **metadata):
    entry = {"StepName": name, "StepStatus": status, "StartTime": T0, "Metadata": dict(metadata)}
    if name in JOB:
        kind, job = JOB[name]
        resource = {"ProcessingJob": "processing-job", "TrainingJob": "training-job"}[kind]
        entry["Metadata"][kind] = {"Arn": f"arn:aws:sagemaker:us-east-1:111111111111:{resource}/{job}"}
    if status in ("Succeeded", "Failed"):
        entry["EndTime"] = T0 + timedelta(minutes=minutes)
    return entry


def poll_once(stub, steps, status, between=None, **execution):
    """One status check: the steps (then what reporting them calls, ``between``), then the execution."""
    stub.add_response(
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": steps},
        {"PipelineExecutionArn": EXECUTION, "SortOrder": "Ascending"},
    )
    if between:
        between()
    stub.add_response(
        "describe_pipeline_execution",
        {
            "PipelineExecutionArn": EXECUTION,
            "PipelineExecutionStatus": status,
            "CreationTime": T0,
            "LastModifiedTime": T0 + timedelta(minutes=52),
            **execution,
        },
        {"PipelineExecutionArn": EXECUTION},
    )


def inputs_present(env):
    s3 = env.client("s3")
    s3.put_object(Bucket=env.values[outputs.DATASETS_BUCKET], Key="clinical/raw/records.jsonl", Body=b"{}\n")
    s3.put_object(
        Bucket=env.values[outputs.ARTIFACTS_BUCKET], Key="models/llama-3.2-3b-instruct/config.json", Body=b"{}"
    )


def started(stub, parameters):
    stub.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION},
        {
            "PipelineName": "clinical-diagnosis-finetune",
            "PipelineParameters": parameters,
            "PipelineExecutionDescription": "started by make train ENV=dev",
            "ClientRequestToken": ANY,
        },
    )


@pytest.mark.parametrize(
    "param,message",
    [
        ("Nope=1", "--param Nope: the pipeline has no such parameter; it has BaseModelId, DatasetUri, Epochs"),
        ("Epochs=two", "--param Epochs=two: expected an integer"),
        ("InvalidRecords=maybe", "--param InvalidRecords=maybe: allowed values are error, skip"),
        ("Epochs", "--param 'Epochs': expected NAME=VALUE"),
    ],
)
def test_parameters_are_checked_against_the_deployed_pipeline(env, param, message):
    env.deploy()
    sagemaker, stub = env.stub("sagemaker")
    described_pipeline(stub, env)
    result = env.run(env.cloud(sagemaker=sagemaker), "train", "--env", "dev", "--param", param)
    assert result.exit_code == 1
    assert message in result.output


def test_without_training_data_it_says_to_run_make_data_and_starts_nothing(env):
    env.deploy()
    sagemaker, stub = env.stub("sagemaker")
    described_pipeline(stub, env)
    result = env.run(env.cloud(sagemaker=sagemaker), "train", "--env", "dev")
    assert result.exit_code == 1
    assert (
        f"no training data at s3://{env.values[outputs.DATASETS_BUCKET]}/clinical/raw/: run make data ENV=dev first"
        in result.output
    )


def test_every_step_is_followed_to_the_registered_model(env):
    env.deploy()
    inputs_present(env)
    sagemaker, stub = env.stub("sagemaker")
    described_pipeline(stub, env)
    started(stub, [{"Name": "Epochs", "Value": "2"}])
    poll_once(stub, [step("Preprocess", "Executing")], "Executing")
    poll_once(stub, [step("Preprocess", "Succeeded", 4), step("FineTune", "Executing")], "Executing")
    done = [
        step("Preprocess", "Succeeded", 4),
        step("FineTune", "Succeeded", 38),
        step("Evaluate", "Succeeded", 9),
        step("QualityGate", "Succeeded", Condition={"Outcome": "True"}),
        step("Register", "Succeeded", RegisterModel={"Arn": PACKAGE}),
    ]
    poll_once(stub, done, "Succeeded")
    clock = FakeClock()
    result = env.run(env.cloud(clock=clock, sagemaker=sagemaker), "train", "--env", "dev", "-p", "Epochs=2")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "started pipeline clinical-diagnosis-finetune with Epochs=2" in out
    assert f"▸ Preprocess running (ProcessingJob {JOB['Preprocess'][1]})" in out
    assert "✓ Preprocess succeeded in 4m 00s" in out and "✓ FineTune succeeded in 38m 00s" in out
    assert out.count("Preprocess succeeded") == 1  # each transition printed once
    assert "✓ QualityGate succeeded: condition met" in out
    assert f"registered {PACKAGE}" in out
    assert "pipeline execution succeeded in 52m 00s" in out
    assert "next: review and approve the new model version: make approve ENV=dev" in out
    assert clock.sleeps == 2


def test_a_failed_step_prints_its_reason_and_log_location_and_exits_1(env):
    env.deploy()
    sagemaker, stub = env.stub("sagemaker")
    failed = step("FineTune", "Failed", 3)
    failed["FailureReason"] = "ClientError: AlgorithmError: see the job's logs"
    job = {
        "TrainingJobName": JOB["FineTune"][1],
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:111111111111:training-job/x",
        "TrainingJobStatus": "Failed",
        "SecondaryStatus": "Failed",
        "FailureReason": "AlgorithmError: CUDA out of memory",
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"VolumeSizeInGB": 30},
        "StoppingCondition": {},
        "CreationTime": T0,
        "ModelArtifacts": {"S3ModelArtifacts": "s3://x/y"},
    }
    poll_once(
        stub,
        [step("Preprocess", "Succeeded", 4), failed],
        "Failed",
        between=lambda: stub.add_response("describe_training_job", job, {"TrainingJobName": JOB["FineTune"][1]}),
        FailureReason="Step failure: One or multiple steps failed.",
    )
    result = env.run(env.cloud(sagemaker=sagemaker), "train", "--env", "dev", "--follow", EXECUTION)
    assert result.exit_code == 1
    out = result.output
    assert "✗ FineTune failed after 3m 00s" in out
    assert "reason: ClientError: AlgorithmError: see the job's logs" in out
    assert "AlgorithmError: CUDA out of memory" in out
    assert f"logs: CloudWatch log group /aws/sagemaker/TrainingJobs, streams {JOB['FineTune'][1]}/*" in out
    assert (
        f"aws logs tail /aws/sagemaker/TrainingJobs --log-stream-name-prefix {JOB['FineTune'][1]} --region us-east-1"
        in out
    )
    assert "error: pipeline execution failed: Step failure: One or multiple steps failed." in out


def test_a_model_below_the_accuracy_threshold_fails_with_the_gate_message(env):
    env.deploy()
    sagemaker, stub = env.stub("sagemaker")
    steps = [
        step("Evaluate", "Succeeded", 9),
        step("QualityGate", "Succeeded", Condition={"Outcome": "False"}),
        step(
            "AccuracyBelowThreshold",
            "Failed",
            Fail={"ErrorMessage": "Diagnosis accuracy 0.41 is below the threshold 0.6"},
        ),
    ]
    poll_once(stub, steps, "Failed")
    result = env.run(env.cloud(sagemaker=sagemaker), "train", "--env", "dev", "--follow", EXECUTION)
    assert result.exit_code == 1
    assert "✓ QualityGate succeeded: condition not met" in result.output
    assert "reason: Diagnosis accuracy 0.41 is below the threshold 0.6" in result.output
    assert "error: pipeline execution failed: step AccuracyBelowThreshold failed" in result.output


def test_ctrl_c_while_following_stops_cleanly_and_says_how_to_resume(env):
    env.deploy()
    sagemaker, stub = env.stub("sagemaker")
    poll_once(stub, [step("Preprocess", "Executing")], "Executing")
    cloud = env.cloud(clock=FakeClock(interrupt_at=1), sagemaker=sagemaker)
    result = env.run(cloud, "train", "--env", "dev", "--follow", EXECUTION)
    assert result.exit_code == 130
    assert "stopped waiting (Ctrl-C)" in result.output and "it continues in AWS" in result.output
    assert f"Resume with: make train ENV=dev FOLLOW={EXECUTION}" in result.output
    assert "Traceback" not in result.output


def test_following_gives_up_after_the_bound_and_says_it_still_runs(env):
    env.deploy()
    sagemaker, stub = env.stub("sagemaker")
    for _ in range(3):
        poll_once(stub, [step("FineTune", "Executing")], "Executing")
    result = env.run(
        env.cloud(sagemaker=sagemaker),
        "train",
        "--env",
        "dev",
        "--follow",
        EXECUTION,
        "--interval",
        "60",
        "--timeout",
        "120",
    )
    assert result.exit_code == 1
    assert "gave up after 2m 00s waiting for pipeline execution abc123def456" in result.output
    assert f"follow it again with make train ENV=dev FOLLOW={EXECUTION}" in result.output


def test_no_wait_starts_and_prints_how_to_follow(env):
    env.deploy()
    inputs_present(env)
    sagemaker, stub = env.stub("sagemaker")
    described_pipeline(stub, env)
    started(stub, [])
    result = env.run(env.cloud(sagemaker=sagemaker), "train", "--env", "dev", "--no-wait")
    assert result.exit_code == 0, result.output
    assert "started pipeline clinical-diagnosis-finetune with the defaults" in result.output
    assert f"not waiting; follow it with: make train ENV=dev FOLLOW={EXECUTION}" in result.output


def test_follow_latest_picks_the_newest_execution(env):
    env.deploy()
    sagemaker, stub = env.stub("sagemaker")
    stub.add_response(
        "list_pipeline_executions",
        {"PipelineExecutionSummaries": [{"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": "Succeeded"}]},
        {
            "PipelineName": "clinical-diagnosis-finetune",
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": 1,
        },
    )
    poll_once(stub, [step("Register", "Succeeded", RegisterModel={"Arn": PACKAGE})], "Succeeded")
    result = env.run(env.cloud(sagemaker=sagemaker), "train", "--env", "dev", "--follow", "latest")
    assert result.exit_code == 0, result.output
    assert f"following {EXECUTION}" in result.output
