"""make status: one screen of the whole environment; what is not deployed says so."""

from __future__ import annotations

from datetime import timedelta

from ops import outputs

from .conftest import T0, agent_runtime_in_moto, component_response, endpoint_response

PACKAGE = "arn:aws:sagemaker:us-east-1:111111111111:model-package/clinical-diagnosis-llama/3"
EXECUTION = "arn:aws:sagemaker:us-east-1:111111111111:pipeline/clinical-diagnosis-finetune/execution/exec3"


def test_status_shows_stacks_endpoint_components_adapter_pipeline_and_runtime(env):
    agent_runtime_in_moto(env)
    env.deploy()
    sagemaker, sm = env.stub("sagemaker")
    sm.add_response(
        "describe_endpoint", endpoint_response("clinical-llm", instances=0), {"EndpointName": "clinical-llm"}
    )
    sm.add_response(
        "describe_inference_component",
        component_response("llama32-3b", copies=0),
        {"InferenceComponentName": "llama32-3b"},
    )
    lora = component_response(
        "clinical-lora", copies=None, base="llama32-3b", artifact=f"s3://art/adapters/{'3' * 64}.tar.gz"
    )
    sm.add_response("describe_inference_component", lora, {"InferenceComponentName": "clinical-lora"})
    sm.add_response("describe_inference_component", lora, {"InferenceComponentName": "clinical-lora"})
    lineage = {"ModelPackageArn": PACKAGE, "ModelPackageVersion": "3", "PipelineExecutionArn": EXECUTION,
               "MlflowRunId": "abc123"}  # fmt: skip
    sm.add_response(
        "list_tags",
        {"Tags": [{"Key": k, "Value": v} for k, v in lineage.items()]},
        {"ResourceArn": lora["InferenceComponentArn"]},
    )
    sm.add_response(
        "list_pipeline_executions",
        {
            "PipelineExecutionSummaries": [
                {
                    "PipelineExecutionArn": EXECUTION,
                    "PipelineExecutionStatus": "Succeeded",
                    "StartTime": T0 - timedelta(hours=2),
                }
            ]
        },
        {
            "PipelineName": "clinical-diagnosis-finetune",
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": 1,
        },
    )
    result = env.run(env.cloud(sagemaker=sagemaker), "status", "--env", "dev")
    assert result.exit_code == 0, result.output
    out = result.output
    for stack in ("Dev-Data", "Dev-Inference", "Dev-Mlops", "Dev-Agent"):
        assert f"{stack:<20} CREATE_COMPLETE" in out
    assert "endpoint clinical-llm: InService, 0 × ml.g5.2xlarge (scales 0..1) — scaled to zero" in out
    assert "llama32-3b           InService  copies 0 (desired 0) — scaled to zero" in out
    assert "clinical-lora        InService  adapter on llama32-3b" in out
    # What serves -> the registry version -> the run that trained it, from the component's lineage tags.
    assert f"the agent calls clinical-lora on llama32-3b: version 3 ({PACKAGE})" in out
    assert f"trained by pipeline execution {EXECUTION}, MLflow run abc123" in out
    assert "pipeline clinical-diagnosis-finetune: last execution Succeeded, started 2026-12-01 07:00 UTC" in out
    assert "runtime clinical_agent_dev: READY, version 1" in out and "endpoint live: READY, serving version 1" in out


def test_without_a_pin_the_agent_calls_the_base_model(env):
    env.values[outputs.AGENT_COMPONENT] = "llama32-3b"
    env.values[outputs.ADAPTER_COMPONENTS] = ""
    env.deploy()
    sagemaker, sm = env.stub("sagemaker")
    sm.add_response("describe_endpoint", endpoint_response("clinical-llm"), {"EndpointName": "clinical-llm"})
    for _ in range(2):
        sm.add_response(
            "describe_inference_component", component_response("llama32-3b"), {"InferenceComponentName": "llama32-3b"}
        )
    sm.add_response(
        "list_pipeline_executions",
        {"PipelineExecutionSummaries": []},
        {
            "PipelineName": "clinical-diagnosis-finetune",
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": 1,
        },
    )
    result = env.run(env.cloud(sagemaker=sagemaker), "status", "--env", "dev")
    assert result.exit_code == 0, result.output
    assert "the agent calls llama32-3b (a base model, no adapter pinned)" in result.output
    assert "pipeline clinical-diagnosis-finetune: no execution yet (make train ENV=dev)" in result.output


def test_an_environment_that_does_not_train_shows_no_pipeline(aws, monkeypatch):
    from .conftest import Env

    staging = Env("staging", aws, monkeypatch)
    staging.deploy(("Data", "Mlops"))
    sts, stub = staging.stub("sts")
    me = {"Account": "222222222222", "Arn": "arn:aws:sts::222222222222:assumed-role/ops/me", "UserId": "AIDAX:me"}
    stub.add_response("get_caller_identity", me, {})
    result = staging.run(staging.cloud(sts=sts), "status", "--env", "staging")
    assert result.exit_code == 0, result.output
    assert "Staging-Mlops        CREATE_COMPLETE" in result.output and "pipeline" not in result.output


def test_nothing_deployed_shows_each_stack_as_not_deployed(env):
    result = env.run(env.cloud(), "status", "--env", "dev")
    assert result.exit_code == 0, result.output
    for stack in ("Dev-Data", "Dev-Inference", "Dev-Mlops", "Dev-Agent"):
        assert f"{stack:<20} not deployed" in result.output
    assert "endpoint" not in result.output
