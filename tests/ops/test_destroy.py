"""make destroy: refuses retained environments; tears dev down in order, including what CloudFormation alone
cannot delete (registry versions, service-created log groups; every inference component is CloudFormation's, the
pinned adapters included); a dry run deletes nothing."""

from __future__ import annotations

import pytest
from botocore.stub import ANY

from ops.outputs import stack_name
from stacks.settings import load_environment

from .conftest import T0, stack_description

EXECUTION = "arn:aws:sagemaker:us-east-1:111111111111:pipeline/clinical-diagnosis-finetune/execution/exec9"
PACKAGE = "arn:aws:sagemaker:us-east-1:111111111111:model-package/clinical-diagnosis-llama/1"
FUNCTION = "Dev-Inference-AdapterCopiesFunction-AbC123"


@pytest.mark.parametrize(("name", "tier"), [("staging", "staging"), ("prod", "production")])
def test_retained_environments_are_refused_naming_the_field(aws, name, tier):
    from typer.testing import CliRunner

    from ops import cli

    result = CliRunner().invoke(cli.app, ["destroy", "--env", name, "--yes"])
    assert result.exit_code == 1
    assert f"refusing to destroy '{name}': its tier is '{tier}' (config/{name}.yaml)" in result.output


def test_refusal_follows_the_tier_not_the_name():
    """dev set to the staging tier is refused before any AWS call (the Cloud has no client to call)."""
    from ops.cloud import Cloud
    from ops.destroy import run
    from ops.errors import OpsError

    settings = load_environment("dev", overrides={"tier": "staging", "agent.seed_patients": False})
    with pytest.raises(OpsError, match=r"refusing to destroy 'dev': its tier is 'staging'"):
        run(Cloud(settings, clients={}), yes=True, dry_run=False, confirm=lambda q: "dev")


def resources(component, *items):
    return {
        "StackResourceSummaries": [
            {
                "LogicalResourceId": f"R{i}",
                "PhysicalResourceId": physical,
                "ResourceType": kind,
                "LastUpdatedTimestamp": T0,
                "ResourceStatus": "CREATE_COMPLETE",
            }
            for i, (kind, physical) in enumerate(items)
        ]
    }


def arrange(env):
    """A deployed dev: stacks (stubbed CloudFormation: moto keeps no inference components), the registry (stubbed
    SageMaker), the service-created log groups (moto)."""
    s = env.settings
    cfn, cf = env.stub("cloudformation")
    sagemaker, sm = env.stub("sagemaker")
    for c in ("Data", "Inference", "Mlops", "Agent"):
        cf.add_response("describe_stacks", {"Stacks": [stack_description(s, c)]}, {"StackName": stack_name(s, c)})
    ic = "arn:aws:sagemaker:us-east-1:111111111111:inference-component/"
    for c, items in (
        ("Data", [("AWS::S3::Bucket", "dev-data-datasets")]),
        (
            "Inference",
            [
                ("AWS::SageMaker::InferenceComponent", f"{ic}llama32-3b"),
                ("AWS::SageMaker::InferenceComponent", f"{ic}clinical-lora"),  # the pinned adapter: CloudFormation's
                ("AWS::SageMaker::Endpoint", "arn:x"),
                ("AWS::Lambda::Function", FUNCTION),
            ],
        ),
        ("Mlops", []),
        ("Agent", []),
    ):
        cf.add_response("list_stack_resources", resources(c, *items), {"StackName": f"Dev-{c}"})
    sm.add_response(
        "list_pipeline_executions",
        {
            "PipelineExecutionSummaries": [
                {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": "Executing"},
                {"PipelineExecutionArn": EXECUTION.replace("exec9", "exec8"), "PipelineExecutionStatus": "Succeeded"},
            ]
        },
        {"PipelineName": "clinical-diagnosis-finetune", "MaxResults": 100},
    )
    sm.add_response(
        "list_model_packages",
        {
            "ModelPackageSummaryList": [
                {"ModelPackageArn": PACKAGE, "CreationTime": T0, "ModelPackageStatus": "Completed"}
            ]
        },
        {"ModelPackageGroupName": "clinical-diagnosis-llama"},
    )
    logs = env.client("logs")
    for group in (
        "/aws/sagemaker/Endpoints/clinical-llm",
        "/aws/sagemaker/InferenceComponents/clinical-lora",
        "/aws/sagemaker/Endpoints/clinical-llm-canary",  # another endpoint's: kept
        f"/aws/lambda/{FUNCTION}",
        "/aws/sagemaker/TrainingJobs",
    ):
        logs.create_log_group(logGroupName=group)
    return cfn, sagemaker, sm


def test_dev_is_torn_down_in_order_with_what_cloudformation_cannot_delete(env, fake_cdk):
    cfn, sagemaker, sm = arrange(env)
    sm.add_response(
        "stop_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION},
        {"PipelineExecutionArn": EXECUTION, "ClientRequestToken": ANY},
    )
    sm.add_response("delete_model_package", {}, {"ModelPackageName": PACKAGE})
    result = env.run(env.cloud(cloudformation=cfn, sagemaker=sagemaker), "destroy", "--env", "dev", input="dev\n")
    assert result.exit_code == 0, result.output
    out = result.output
    steps = [
        "1. stop 1 running pipeline execution(s)",
        "2. delete 1 model registry version(s)",
        "3. cdk destroy Dev-Data, Dev-Inference, Dev-Mlops, Dev-Agent",
        f"4. delete 3 log group(s) the services created: /aws/lambda/{FUNCTION}, "
        "/aws/sagemaker/Endpoints/clinical-llm, /aws/sagemaker/InferenceComponents/clinical-lora",
        f"stopped {EXECUTION}",
        "deleted 1 model registry version(s)",
        "$ cdk destroy 'Dev/*' -c environments=dev --force",
        "deleted log group /aws/sagemaker/Endpoints/clinical-llm",
        "✓ dev is destroyed",
    ]
    positions = [out.index(step) for step in steps]
    assert positions == sorted(positions)
    assert fake_cdk.read_text().splitlines() == ["destroy Dev/* -c environments=dev --force"]
    left = [g["logGroupName"] for g in env.client("logs").describe_log_groups()["logGroups"]]
    # account-wide, and another endpoint's whose name merely starts with this one's
    assert left == ["/aws/sagemaker/Endpoints/clinical-llm-canary", "/aws/sagemaker/TrainingJobs"]


def test_a_dry_run_shows_the_plan_and_deletes_nothing(env, fake_cdk):
    cfn, sagemaker, _ = arrange(env)
    result = env.run(env.cloud(cloudformation=cfn, sagemaker=sagemaker), "destroy", "--env", "dev", "--dry-run")
    assert result.exit_code == 0, result.output
    assert (
        "$ cdk destroy 'Dev/*' -c environments=dev --force" in result.output
        and "dry run: nothing deleted" in result.output
    )
    assert not fake_cdk.exists()
    assert len(env.client("logs").describe_log_groups()["logGroups"]) == 5
    assert "CloudFormation does not own" not in result.output  # every component is CloudFormation's


def test_a_wrong_confirmation_deletes_nothing(env, fake_cdk):
    cfn, sagemaker, _ = arrange(env)
    result = env.run(env.cloud(cloudformation=cfn, sagemaker=sagemaker), "destroy", "--env", "dev", input="prod\n")
    assert result.exit_code == 1
    assert "not confirmed: nothing deleted" in result.output
    assert not fake_cdk.exists()
