"""The deploy-readiness pack: every rule fails synth on a minimal template that breaks its documented constraint,
passes one that keeps it, and can be acknowledged (only) with a reason; `make rules` lists them from the pack."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from aws_cdk import Acknowledgment, CfnResource, Stack, Validations

from stacks.readiness import PACK, RULES, DeployReadinessChecks
from tests.infra.conftest import ROOT, make_app, synth

REGION, ACCOUNT = "us-east-1", "111111111111"
GATED = "s3://jumpstart-private-cache-prod-us-east-1/meta-textgeneration/m/artifacts/inference-prepack/v1.0.0/"
KEY = "arn:aws:kms:us-east-1:111111111111:key/k"


def findings(resources: dict[str, dict[str, Any]], tmp_path, acknowledge: dict[str, str] | None = None) -> set[str]:
    """Synthesize one stack of raw resources with only this pack; the rule ids it reports."""
    app = make_app(str(tmp_path))
    Validations.of(app).add_plugins(DeployReadinessChecks(app))
    stack = Stack(app, "Fixture", env={"account": ACCOUNT, "region": REGION})
    for logical_id, spec in resources.items():
        r = CfnResource(stack, logical_id, type=spec["Type"], properties=spec.get("Properties"))
        r.override_logical_id(logical_id)
        for attribute in ("DependsOn", "DeletionPolicy"):
            if attribute in spec:
                r.add_override(attribute, spec[attribute])
        for rule, reason in (acknowledge or {}).items():
            Validations.of(r).acknowledge(Acknowledgment(id=rule, reason=reason))
    try:
        app.synth()
    except RuntimeError as e:
        if "ValidationFailed" not in str(e):
            raise
        report = json.loads((tmp_path / "validation-report.json").read_text())
        return {v["ruleName"] for p in report["pluginReports"] if p["pluginName"] == PACK for v in p["violations"]}
    return set()


def pipeline(*steps: dict[str, Any], parameters: list | None = None) -> dict[str, Any]:
    definition = {"Version": "2020-12-01", "Parameters": parameters or [], "Steps": list(steps)}
    return {
        "Type": "AWS::SageMaker::Pipeline",
        "Properties": {
            "PipelineName": "p",
            "RoleArn": "arn:aws:iam::111111111111:role/r",
            "PipelineDefinition": {"PipelineDefinitionBody": json.dumps(definition)},
        },
    }


def training(instance_type="ml.g5.2xlarge", volume_key: str | None = KEY, channels=(), vpc=False, **args) -> dict:
    resource_config = {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 50}
    if volume_key:
        resource_config["VolumeKmsKeyId"] = volume_key
    arguments = {
        "ResourceConfig": resource_config,
        "InputDataConfig": list(channels),
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        **args,
    }
    if vpc:
        arguments["VpcConfig"] = {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    return {"Name": "FineTune", "Type": "Training", "Arguments": arguments}


def processing(
    instance_type="ml.m5.xlarge", volume_key: str | None = KEY, inputs=(), entrypoint=("python",), vpc=False
):
    cluster = {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 30}
    if volume_key:
        cluster["VolumeKmsKeyId"] = volume_key
    arguments: dict[str, Any] = {
        "ProcessingResources": {"ClusterConfig": cluster},
        "ProcessingInputs": list(inputs),
        "AppSpecification": {"ImageUri": "i", "ContainerEntrypoint": list(entrypoint)},
    }
    if vpc:
        arguments["NetworkConfig"] = {"VpcConfig": {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}}
    return {"Name": "Evaluate", "Type": "Processing", "Arguments": arguments}


def register(card: dict) -> dict:
    return {
        "Name": "Register",
        "Type": "RegisterModel",
        "Arguments": {"ModelPackageGroupName": "g", "ModelCard": {"ModelCardContent": json.dumps(card)}},
    }


def channel(uri: str, eula: bool | None = None) -> dict:
    s3: dict[str, Any] = {"S3Uri": uri, "S3DataType": "S3Prefix"}
    if eula is not None:
        s3["ModelAccessConfig"] = {"AcceptEula": eula}
    return {"ChannelName": "base", "DataSource": {"S3DataSource": s3}}


def model(uri: str, eula: bool | None) -> dict:
    source: dict[str, Any] = {"S3Uri": uri, "S3DataType": "S3Prefix", "CompressionType": "None"}
    if eula is not None:
        source["ModelAccessConfig"] = {"AcceptEula": eula}
    return {
        "Type": "AWS::SageMaker::Model",
        "Properties": {
            "ExecutionRoleArn": "arn:aws:iam::111111111111:role/r",
            "PrimaryContainer": {"Image": "i", "ModelDataSource": {"S3DataSource": source}},
        },
    }


def function(language: str) -> dict:
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Code": {"ZipFile": "def handler(event, context):\n    return event\n"},
            "Handler": "index.handler",
            "Role": "arn:aws:iam::111111111111:role/r",
            "Runtime": language,
        },
    }


def endpoint_config(key: str | None = None, role: str | None = "arn:aws:iam::111111111111:role/r") -> dict:
    props: dict[str, Any] = {
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "InstanceType": "ml.g5.2xlarge", "InitialInstanceCount": 1}
        ]
    }
    if key:
        props["KmsKeyId"] = key
    if role:
        props["ExecutionRoleArn"] = role
    return {"Type": "AWS::SageMaker::EndpointConfig", "Properties": props}


VPC = {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}}


def subnet(zone: dict[str, str], cidr: str) -> dict:
    return {"Type": "AWS::EC2::Subnet", "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": cidr, **zone}}


def runtime(*subnets: str, language: str = "PYTHON_3_13") -> dict:
    return {
        "Type": "AWS::BedrockAgentCore::Runtime",
        "Properties": {
            "AgentRuntimeName": "agent",
            "RoleArn": "arn:aws:iam::111111111111:role/r",
            "AgentRuntimeArtifact": {"CodeConfiguration": {"EntryPoint": ["main.py"], "Runtime": language}},
            "NetworkConfiguration": {
                "NetworkMode": "VPC",
                "NetworkModeConfig": {"Subnets": [{"Ref": s} for s in subnets], "SecurityGroups": ["sg-1"]},
            },
        },
    }


S3_GATEWAY = {
    "Type": "AWS::EC2::VPCEndpoint",
    "Properties": {"VpcId": {"Ref": "Vpc"}, "ServiceName": "com.amazonaws.us-east-1.s3", "VpcEndpointType": "Gateway"},
}
TWO_ZONES = {
    "Vpc": VPC,
    "SubnetA": subnet({"AvailabilityZoneId": "use1-az1"}, "10.0.0.0/20"),
    "SubnetB": subnet({"AvailabilityZoneId": "use1-az2"}, "10.0.16.0/20"),
    "S3": S3_GATEWAY,
}
MLFLOW_APP = {
    "Type": "AWS::SageMaker::MlflowApp",
    "Properties": {"Name": "m", "ArtifactStoreUri": "s3://b/mlflow", "RoleArn": "arn:aws:iam::111111111111:role/r"},
}
TRACKING_SERVER = {
    "Type": "AWS::SageMaker::MlflowTrackingServer",
    "Properties": {
        "TrackingServerName": "m",
        "ArtifactStoreUri": "s3://b/mlflow",
        "RoleArn": "arn:aws:iam::111111111111:role/r",
    },
}


def policy(actions: list[str], resource: Any) -> dict:
    return {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": "p",
            "Roles": ["r"],
            "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]},
        },
    }


def interface_policy(actions: list[str], key: str) -> dict:
    found = policy(actions, "arn:aws:ec2:us-east-1:111111111111:network-interface/*")
    statement = found["Properties"]["PolicyDocument"]["Statement"][0]
    statement["Condition"] = {"ArnEquals": {key: f"arn:aws:ec2:us-east-1:111111111111:{key.split(':')[1].lower()}/x"}}
    return found


def component(copies: int, base: str | None = None) -> dict:
    spec: dict[str, Any] = {"ComputeResourceRequirements": {"MinMemoryRequiredInMb": 1024}, "ModelName": "m"}
    if base:
        spec = {"BaseInferenceComponentName": base, "Container": {"ArtifactUrl": "s3://b/a.tar.gz"}}
    return {
        "Type": "AWS::SageMaker::InferenceComponent",
        "Properties": {
            "InferenceComponentName": "c",
            "EndpointName": "e",
            "VariantName": "AllTraffic",
            "Specification": spec,
            "RuntimeConfig": {"CopyCount": copies},
        },
    }


def adapter(url: Any = "s3://b/adapters/a.tar.gz", **spec: Any) -> dict:
    """An adapter component on the base component "c" (declared by component())."""
    return {
        "Type": "AWS::SageMaker::InferenceComponent",
        "Properties": {
            "InferenceComponentName": "a",
            "EndpointName": "e",
            "Specification": {"BaseInferenceComponentName": "c", "Container": {"ArtifactUrl": url}, **spec},
        },
        "DependsOn": ["C"],
    }


def event_rule(**target: Any) -> dict:
    return {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "EventPattern": {"source": ["aws.sagemaker"]},
            "Targets": [{"Id": "Bus", "Arn": "arn:aws:events:us-east-1:444444444444:event-bus/b", **target}],
        },
    }


def scalable_target(**extra: Any) -> dict:
    return {
        "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
        "Properties": {
            "MaxCapacity": 2,
            "MinCapacity": 0,
            "ResourceId": "inference-component/c",
            "ScalableDimension": "sagemaker:inference-component:DesiredCopyCount",
            "ServiceNamespace": "sagemaker",
        },
        **extra,
    }


def code_pipeline(role_actions: list[str]) -> dict[str, dict]:
    return {
        "SourceRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {"AssumeRolePolicyDocument": {"Statement": []}},
        },
        "SourcePolicy": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "PolicyName": "p",
                "Roles": [{"Ref": "SourceRole"}],
                "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": role_actions, "Resource": "arn:aws:x"}]},
            },
        },
        "Pipeline": {
            "Type": "AWS::CodePipeline::Pipeline",
            "Properties": {
                "RoleArn": "arn:aws:iam::111111111111:role/p",
                "Stages": [
                    {
                        "Name": "Source",
                        "Actions": [
                            {
                                "Name": "repo",
                                "ActionTypeId": {
                                    "Category": "Source",
                                    "Owner": "AWS",
                                    "Provider": "CodeStarSourceConnection",
                                    "Version": "1",
                                },
                                "Configuration": {
                                    "ConnectionArn": "arn:aws:codeconnections:us-east-1:111111111111:connection/x"
                                },
                                "RoleArn": {"Fn::GetAtt": ["SourceRole", "Arn"]},
                            }
                        ],
                    }
                ],
            },
        },
    }


GOOD_CARD = {"model_overview": {"model_creator": "team"}, "intended_uses": {"risk_rating": "High"}}

# rule name -> (a fixture that breaks it, a fixture that keeps it)
FIXTURES: dict[str, tuple[dict, dict]] = {
    "JobVolumeKeyOnInstanceStorage": (
        {"P": pipeline(training("ml.g5.2xlarge", KEY), processing("ml.g5.2xlarge", KEY))},
        {"P": pipeline(training("ml.g5.2xlarge", None), processing("ml.m5.xlarge", KEY))},
    ),
    "EndpointKeyOnInstanceStorage": ({"C": endpoint_config(key=KEY)}, {"C": endpoint_config()}),
    "GatedWeightsAcceptEula": ({"M": model(GATED, None)}, {"M": model(GATED, True)}),
    "ProcessingInputNotGated": (
        {"P": pipeline(processing(inputs=[{"InputName": "base", "S3Input": {"S3Uri": GATED}}]))},
        {"P": pipeline(processing(inputs=[{"InputName": "base", "S3Input": {"S3Uri": "s3://ours/models/"}}]))},
    ),
    "TrainingChannelAcceptEula": (
        {"P": pipeline(training(volume_key=None, channels=[channel(GATED)]))},
        {"P": pipeline(training(volume_key=None, channels=[channel(GATED, eula=True)]))},
    ),
    "PackageModelCardSchema": (
        {"P": pipeline(register({"model_overview": {"model_creator": "t", "model_description": "x"}}))},
        {"P": pipeline(register(GOOD_CARD))},
    ),
    "MlflowAppReachable": ({"Vpc": VPC, "App": MLFLOW_APP}, {"App": MLFLOW_APP}),
    "TrackingServerEndpoint": (
        {"Vpc": VPC, "Server": TRACKING_SERVER},
        {
            "Vpc": VPC,
            "Server": TRACKING_SERVER,
            "Experiments": {
                "Type": "AWS::EC2::VPCEndpoint",
                "Properties": {
                    "VpcId": {"Ref": "Vpc"},
                    "ServiceName": "aws.sagemaker.us-east-1.experiments",
                    "VpcEndpointType": "Interface",
                },
            },
        },
    ),
    "AgentCoreSubnetZones": (
        {
            "Vpc": VPC,
            "SubnetA": subnet({"AvailabilityZone": "us-east-1a"}, "10.0.0.0/20"),
            "SubnetB": subnet({"AvailabilityZoneId": "use1-az3"}, "10.0.16.0/20"),
            "S3": S3_GATEWAY,
            "Runtime": runtime("SubnetA", "SubnetB"),
        },
        {**TWO_ZONES, "Runtime": runtime("SubnetA", "SubnetB")},
    ),
    "AgentCoreTwoZones": (
        {**TWO_ZONES, "Runtime": runtime("SubnetA")},
        {**TWO_ZONES, "Runtime": runtime("SubnetA", "SubnetB")},
    ),
    "AgentCoreS3Route": (
        {k: v for k, v in {**TWO_ZONES, "Runtime": runtime("SubnetA", "SubnetB")}.items() if k != "S3"},
        {**TWO_ZONES, "Runtime": runtime("SubnetA", "SubnetB")},
    ),
    "RetainExceptOnCreate": (
        {"Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "x"}, "DeletionPolicy": "Retain"}},
        {
            "Logs": {
                "Type": "AWS::Logs::LogGroup",
                "Properties": {"LogGroupName": "x"},
                "DeletionPolicy": "RetainExceptOnCreate",
            }
        },
    ),
    "ComponentCreatedWithCopies": ({"C": component(0)}, {"C": component(1), "A": component(0, base="c")}),
    "SpotMaxWait": (
        {"P": pipeline(training(volume_key=None, EnableManagedSpotTraining=True))},
        {
            "P": pipeline(
                training(
                    volume_key=None,
                    EnableManagedSpotTraining=True,
                    StoppingCondition={"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
                )
            )
        },
    ),
    "NoInstallInIsolatedJobs": (
        {"P": pipeline(processing(entrypoint=("bash", "-c", "pip install -r r.txt; python e.py"), vpc=True))},
        {"P": pipeline(processing(entrypoint=("bash", "-c", "python e.py"), vpc=True))},
    ),
    "MlflowGrantMatchesKind": (
        {"App": MLFLOW_APP, "Policy": policy(["sagemaker-mlflow:*"], {"Fn::GetAtt": ["App", "Arn"]})},
        {"App": MLFLOW_APP, "Policy": policy(["sagemaker:CallMlflowAppApi"], {"Fn::GetAtt": ["App", "Arn"]})},
    ),
    "InterfaceConditionKeys": (
        {"Policy": interface_policy(["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface"], "ec2:Subnet")},
        {"Policy": interface_policy(["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface"], "ec2:Vpc")},
    ),
    "CodeConnectionsPermission": (
        code_pipeline(["codestar-connections:UseConnection"]),
        code_pipeline(["codestar-connections:UseConnection", "codeconnections:UseConnection"]),
    ),
    "ScalableTargetAfterComponent": (
        {"C": component(1), "T": scalable_target()},
        {"C": component(1), "T": scalable_target(DependsOn=["C"])},
    ),
    "ComponentEndpointExecutionRole": ({"C": endpoint_config(role=None)}, {"C": endpoint_config()}),
    "AdapterArtifactArchive": (
        {"C": component(1), "A": adapter({"Fn::Join": ["", ["s3://", {"Ref": "B"}, "/adapters/"]]})},
        {"C": component(1), "A": adapter({"Fn::Join": ["", ["s3://", {"Ref": "B"}, "/adapters/x.tar.gz"]]})},
    ),
    "AdapterUsesBaseCompute": (
        {"C": component(1), "A": adapter(ComputeResourceRequirements={"MinMemoryRequiredInMb": 1024})},
        {"C": component(1), "A": adapter()},
    ),
    "AdapterAfterBase": (
        {"C": component(1), "A": {k: v for k, v in adapter().items() if k != "DependsOn"}},
        {"C": component(1), "A": adapter()},
    ),
    "EventBusTargetRole": (
        {"R": event_rule()},
        {"R": event_rule(RoleArn="arn:aws:iam::111111111111:role/forward")},
    ),
    # Blocked on 2026-07-31 (Lambda) and 2026-08-31 (AgentCore), before RUNTIMES_CHECKED (2026-12-01).
    "LambdaRuntimeAccepted": ({"F": function("python3.11")}, {"F": function("python3.13")}),
    "AgentCoreRuntimeAccepted": (
        {**TWO_ZONES, "R": runtime("SubnetA", "SubnetB", language="PYTHON_3_11")},
        {**TWO_ZONES, "R": runtime("SubnetA", "SubnetB", language="PYTHON_3_13")},
    ),
}


def test_runtime_dates_follow_the_checked_day():
    """The rule compares each runtime's block date with RUNTIMES_CHECKED: blocked on the day itself, not the day
    before; a runtime whose date the table does not know is not judged."""
    from datetime import date

    from stacks import readiness

    blocked = {"python3.x": date(2026, 12, 1), "python3.y": date(2026, 12, 2)}
    assert readiness._blocked("python3.x", blocked) and not readiness._blocked("python3.y", blocked)
    assert readiness._blocked("python3.x", blocked)[0].endswith("(still accepted: python3.y)")
    assert readiness.RUNTIMES_CHECKED == date(2026, 12, 1) and readiness._blocked("unknown9", blocked) == []


def test_every_rule_has_a_fixture_and_the_pack_holds_at_least_15():
    assert len(RULES) >= 15
    assert {r.name for r in RULES} == set(FIXTURES)
    assert all(r.doc.startswith("https://docs.aws.amazon.com/") for r in RULES)


@pytest.mark.parametrize("rule", sorted(FIXTURES))
def test_a_template_that_breaks_the_rule_fails_synth_with_its_id(rule, tmp_path):
    assert f"{PACK}-{rule}" in findings(FIXTURES[rule][0], tmp_path / "bad")


@pytest.mark.parametrize("rule", sorted(FIXTURES))
def test_a_template_that_keeps_the_rule_passes_it(rule, tmp_path):
    assert f"{PACK}-{rule}" not in findings(FIXTURES[rule][1], tmp_path / "good")


def test_a_finding_is_silenced_only_by_an_acknowledgment_of_its_rule(tmp_path):
    bad = FIXTURES["RetainExceptOnCreate"][0]
    rule = f"{PACK}-RetainExceptOnCreate"
    assert findings(bad, tmp_path / "other", acknowledge={f"{PACK}-SpotMaxWait": "unrelated"}) == {rule}
    assert findings(bad, tmp_path / "acked", acknowledge={rule: "a reason"}) == set()


def test_make_rules_lists_every_rule_with_its_reference():
    out = subprocess.run(
        [sys.executable, "-m", "stacks.readiness"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for rule in RULES:
        assert rule.id in out and rule.doc in out


def test_an_mlflow_app_in_an_environment_with_an_isolated_vpc_fails_synth(tmp_path):
    """Item 3: dev with its network on keeps the serverless MLflow App, which nothing in the VPC can reach."""
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        synth(str(tmp_path), environments="dev", **{"dev.network.enabled": True,
              "dev.network.availability_zone_ids": '["use1-az1", "use1-az2"]'})  # fmt: skip
    report = json.loads((tmp_path / "validation-report.json").read_text())
    found = {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}
    assert f"{PACK}-MlflowAppReachable" in found
