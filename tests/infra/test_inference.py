"""InferenceStack: SGLang endpoint with inference components, autoscaling to zero and back, alarms, scoped role."""

from __future__ import annotations

import json

import pytest
from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Match

from stacks.app_builder import build_app
from tests.infra.conftest import make_app, template

ENVS = ["dev", "staging", "prod"]
LLAMA = {
    "name": "llama32-3b",
    "model_id": "meta-llama/Llama-3.2-3B-Instruct",
    "weights": {"source": "s3", "prefix": "models/llama-3.2-3b-instruct/"},
}
QWEN = {
    "name": "qwen25-7b",
    "model_id": "Qwen/Qwen2.5-7B-Instruct",
    "weights": {"source": "s3", "prefix": "models/qwen2.5-7b/"},
    "speculative": {"algorithm": "EAGLE3", "draft": "eagle3"},
    "tool_call_parser": "qwen25",
    "lora": False,
    "min_copies": 1,
    "max_copies": 3,
}
ADAPTER = {"name": "triage-lora", "base": "llama32-3b", "artifact_key": "adapters/triage/model.tar.gz"}


@pytest.fixture(scope="module")
def custom(tmp_path_factory, pin_file):
    """dev with a second base model, a configured adapter and a pinned one, plus a probe role granted by the stack's
    helpers."""
    app = make_app(
        str(tmp_path_factory.mktemp("cdk.out")),
        environments="dev",
        models_lock=str(pin_file(5)),
        **{
            "dev.inference.models": json.dumps([LLAMA, QWEN]),
            "dev.inference.adapters": json.dumps([ADAPTER]),
            "dev.inference.max_instance_count": "2",
        },
    )
    stage = build_app(app)["dev"]
    probe = Stack(stage, "Probe")
    invoker = iam.Role(probe, "Invoker", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    stage.inference.grant_invoke(invoker, stage.inference.component_names)
    app.synth()
    return stage, probe


def resources(t, kind: str) -> dict:
    return t.find_resources(kind)


def only(t, kind: str) -> tuple[str, dict]:
    found = resources(t, kind)
    assert len(found) == 1, found
    return next(iter(found.items()))


@pytest.mark.parametrize("env", ENVS)
def test_endpoint_config_is_for_inference_components(stages, env):
    """Variant without ModelName, the config's own execution role, managed scaling, least outstanding requests."""
    inf = stages[env].settings.inference
    t = template(stages[env].inference)
    _, config = only(t, "AWS::SageMaker::EndpointConfig")
    props = config["Properties"]
    assert "EndpointConfigName" not in props  # create-only properties: every change needs a fresh name
    role_id, _ = only(t, "AWS::IAM::Role")
    assert props["ExecutionRoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    [variant] = props["ProductionVariants"]
    assert "ModelName" not in variant
    assert variant["InferenceAmiVersion"] == inf.inference_ami_version
    assert (
        variant["InstanceType"] == inf.instance_type and variant["InitialInstanceCount"] == inf.initial_instance_count
    )
    assert variant["ManagedInstanceScaling"] == {
        "Status": "ENABLED",
        "MinInstanceCount": inf.min_instance_count,
        "MaxInstanceCount": inf.max_instance_count,
    }
    assert variant["RoutingConfig"] == {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}
    assert props["EnableNetworkIsolation"] is True


def test_dev_endpoint_may_scale_to_zero_and_prod_keeps_an_instance(stages):
    def minimum(env):
        _, config = only(template(stages[env].inference), "AWS::SageMaker::EndpointConfig")
        return config["Properties"]["ProductionVariants"][0]["ManagedInstanceScaling"]["MinInstanceCount"]

    assert minimum("dev") == 0 and minimum("prod") == 1


@pytest.mark.parametrize("env", ENVS)
def test_base_component_serves_sglang_with_jumpstarts_gated_weights_and_the_licence_accepted(stages, env):
    stack = stages[env].inference
    t = template(stack)
    model_id, model = only(t, "AWS::SageMaker::Model")
    container = model["Properties"]["PrimaryContainer"]
    source = container["ModelDataSource"]["S3DataSource"]
    assert source["S3DataType"] == "S3Prefix" and source["CompressionType"] == "None"
    assert source["S3Uri"] == stages[env].settings.inference.models[0].weights_uri("us-east-1", "unused")
    assert source["S3Uri"].startswith("s3://jumpstart-private-cache-prod-us-east-1/meta-textgeneration/")
    assert source["ModelAccessConfig"] == {"AcceptEula": True}
    assert container["Environment"]["SM_SGLANG_ENABLE_LORA"] == "true"
    assert container["Environment"]["SM_SGLANG_TOOL_CALL_PARSER"] == "llama3"
    assert "Fn::Sub" in container["Image"] and "container-assets" in container["Image"]["Fn::Sub"]
    assert model["Properties"]["EnableNetworkIsolation"] is True
    t.has_resource_properties(
        "AWS::SageMaker::InferenceComponent",
        {
            "InferenceComponentName": "llama32-3b",
            "VariantName": "AllTraffic",
            "RuntimeConfig": {"CopyCount": 1},  # never created with zero copies
            "Specification": Match.object_like(
                {
                    "ModelName": {"Fn::GetAtt": [model_id, "ModelName"]},
                    "ComputeResourceRequirements": Match.object_like({"NumberOfAcceleratorDevicesRequired": 1}),
                }
            ),
        },
    )
    assert stack.base_component_names == {"llama32-3b": "llama32-3b"}


@pytest.mark.parametrize("env", ENVS)
def test_components_reference_the_endpoint_by_attribute(stages, env):
    t = template(stages[env].inference)
    endpoint_id, endpoint = only(t, "AWS::SageMaker::Endpoint")
    assert endpoint["Properties"]["EndpointName"] == "clinical-llm"
    config_id, _ = only(t, "AWS::SageMaker::EndpointConfig")
    assert endpoint["Properties"]["EndpointConfigName"] == {"Fn::GetAtt": [config_id, "EndpointConfigName"]}
    for component in resources(t, "AWS::SageMaker::InferenceComponent").values():
        assert component["Properties"]["EndpointName"] == {"Fn::GetAtt": [endpoint_id, "EndpointName"]}


def test_a_second_base_model_shares_the_endpoint(custom):
    stage, _ = custom
    t = template(stage.inference)
    endpoint_id, _ = only(t, "AWS::SageMaker::Endpoint")
    components = {
        c["Properties"]["InferenceComponentName"]: c
        for c in resources(t, "AWS::SageMaker::InferenceComponent").values()
    }
    assert set(components) == {"llama32-3b", "qwen25-7b", "triage-lora", "clinical-lora"}
    for name in ("llama32-3b", "qwen25-7b"):
        assert components[name]["Properties"]["EndpointName"] == {"Fn::GetAtt": [endpoint_id, "EndpointName"]}
    environments = [
        m["Properties"]["PrimaryContainer"]["Environment"] for m in resources(t, "AWS::SageMaker::Model").values()
    ]
    qwen = next(e for e in environments if e["SM_SGLANG_SERVED_MODEL_NAME"] == "qwen25-7b")
    assert qwen["SM_SGLANG_ENABLE_LORA"] == "false" and qwen["SM_SGLANG_TOOL_CALL_PARSER"] == "qwen25"
    assert qwen["SM_SGLANG_SPECULATIVE_ALGORITHM"] == "EAGLE3"
    assert qwen["SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH"] == "/opt/ml/model/eagle3"  # inside the mounted weights
    assert stage.inference.base_component_names == {"llama32-3b": "llama32-3b", "qwen25-7b": "qwen25-7b"}


def test_adapter_component_runs_on_its_base_after_it(custom):
    stage, _ = custom
    t = template(stage.inference)
    ids = {
        c["Properties"]["InferenceComponentName"]: i
        for i, c in resources(t, "AWS::SageMaker::InferenceComponent").items()
    }
    adapter = resources(t, "AWS::SageMaker::InferenceComponent")[ids["triage-lora"]]
    spec = adapter["Properties"]["Specification"]
    assert spec["BaseInferenceComponentName"] == "llama32-3b"
    assert spec["Container"]["ArtifactUrl"]["Fn::Join"][1][-1] == "/adapters/triage/model.tar.gz"
    assert "ComputeResourceRequirements" not in spec and "RuntimeConfig" not in adapter["Properties"]
    assert ids["llama32-3b"] in adapter["DependsOn"]  # created after, deleted before its base


@pytest.mark.parametrize("env", ENVS)
def test_each_base_component_is_a_scalable_target_after_it_exists(stages, env):
    model = stages[env].settings.inference.models[0]
    t = template(stages[env].inference)
    component_id = next(iter(resources(t, "AWS::SageMaker::InferenceComponent")))
    _, target = only(t, "AWS::ApplicationAutoScaling::ScalableTarget")
    props = target["Properties"]
    assert {
        k: props[k] for k in ("ServiceNamespace", "ResourceId", "ScalableDimension", "MinCapacity", "MaxCapacity")
    } == {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "inference-component/llama32-3b",
        "ScalableDimension": "sagemaker:inference-component:DesiredCopyCount",
        "MinCapacity": model.min_copies,
        "MaxCapacity": model.max_copies,
    }
    assert "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in target["Properties"]["RoleARN"]
    assert component_id in target["DependsOn"]
    t.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"
                    },
                    "TargetValue": model.target_invocations_per_copy,
                }
            ),
        },
    )


def test_scale_from_zero_steps_up_on_no_capacity_failures(stages):
    t = template(stages["dev"].inference)  # dev: min_copies 0
    policies = {
        i: p
        for i, p in resources(t, "AWS::ApplicationAutoScaling::ScalingPolicy").items()
        if p["Properties"]["PolicyType"] == "StepScaling"
    }
    [(step_id, step)] = policies.items()
    assert step["Properties"]["StepScalingPolicyConfiguration"] == {
        "AdjustmentType": "ChangeInCapacity",
        "Cooldown": 60,
        "MetricAggregationType": "Maximum",
        "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
    }
    t.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/SageMaker",
            "MetricName": "NoCapacityInvocationFailures",
            "Dimensions": [{"Name": "InferenceComponentName", "Value": "llama32-3b"}],
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "Threshold": 1,
            "AlarmActions": [{"Ref": step_id}],
        },
    )


def test_components_that_keep_a_copy_have_no_scale_from_zero(stages, custom):
    prod = template(stages["prod"].inference)  # prod: min_copies 1
    kinds = [
        p["Properties"]["PolicyType"] for p in resources(prod, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    ]
    assert kinds == ["TargetTrackingScaling"]
    alarms = resources(template(custom[0].inference), "AWS::CloudWatch::Alarm").values()
    no_capacity = [
        sorted(
            m["MetricStat"]["Metric"]["Dimensions"][0]["Value"] for m in a["Properties"]["Metrics"] if "MetricStat" in m
        )
        for a in alarms
        if "NoCapacityInvocationFailures" in json.dumps(a)
    ]
    assert no_capacity == [["clinical-lora", "llama32-3b", "triage-lora"]]  # qwen25-7b keeps min_copies 1


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_endpoint_runs_in_the_private_subnets_when_the_network_is_on(stages, env):
    t = template(stages[env].inference)
    vpc = {"Subnets": [Match.any_value(), Match.any_value()], "SecurityGroupIds": [Match.any_value()]}
    t.has_resource_properties("AWS::SageMaker::EndpointConfig", {"VpcConfig": vpc, "EnableNetworkIsolation": True})
    t.has_resource_properties("AWS::SageMaker::Model", {"VpcConfig": vpc, "EnableNetworkIsolation": True})
    statements = json.dumps(resources(t, "AWS::IAM::Policy"))
    assert "ec2:CreateNetworkInterface" in statements and '"ec2:Vpc"' in statements


def test_dev_endpoint_has_no_vpc(stages):
    t = template(stages["dev"].inference)
    for kind in ("AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Model"):
        for r in resources(t, kind).values():
            assert "VpcConfig" not in r["Properties"]
    assert "ec2:" not in json.dumps(resources(t, "AWS::IAM::Policy"))


def _statements(t) -> list[dict]:
    return [
        s for p in resources(t, "AWS::IAM::Policy").values() for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


@pytest.mark.parametrize("env", ENVS)
def test_execution_role_has_no_wildcard_actions_and_scoped_resources(stages, env):
    t = template(stages[env].inference)
    _, role = only(t, "AWS::IAM::Role")
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    unscoped_ok = {
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",
        "ec2:DescribeDhcpOptions",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
    }
    for s in _statements(t):
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert all("*" not in a for a in actions), actions
        if s["Resource"] == "*":
            assert set(actions) <= unscoped_ok, actions
            if "cloudwatch:PutMetricData" in actions:
                assert s["Condition"]["StringEquals"]["cloudwatch:namespace"] == [
                    "/aws/sagemaker/Endpoints",
                    "/aws/sagemaker/InferenceComponents",
                ]
    prefix = stages[env].settings.inference.models[0].weights_prefix
    gated = "arn:aws:s3:::jumpstart-private-cache-prod-us-east-1"
    reads = next(s for s in _statements(t) if s["Action"] == "s3:GetObject")["Resource"]
    assert reads == f"{gated}/{prefix}*"  # no adapter pinned: the weights only
    listing = next(s for s in _statements(t) if s["Action"] == "s3:ListBucket")
    assert listing["Resource"] == gated and listing["Condition"] == {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
    decrypt = next(s for s in _statements(t) if s["Action"] == "kms:Decrypt")
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
    logs = next(s for s in _statements(t) if "logs:PutLogEvents" in s["Action"])
    assert {r["Fn::GetAtt"][0] for r in logs["Resource"]} == set(resources(t, "AWS::Logs::LogGroup"))


@pytest.mark.parametrize("env", ENVS)
def test_log_groups_are_encrypted_and_expire(stages, env):
    t = template(stages[env].inference)
    days = stages[env].settings.log_retention_days
    for name in ("/aws/sagemaker/Endpoints/clinical-llm", "/aws/sagemaker/InferenceComponents/llama32-3b"):
        t.has_resource_properties(
            "AWS::Logs::LogGroup", {"LogGroupName": name, "RetentionInDays": days, "KmsKeyId": Match.any_value()}
        )


def test_alarms_notify_an_encrypted_topic_and_a_dashboard_shows_them(stages, custom):
    t = template(custom[0].inference)
    topic_id, topic = only(t, "AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic["Properties"]
    alarms = [a["Properties"] for a in resources(t, "AWS::CloudWatch::Alarm").values()]
    for component in ("llama32-3b", "clinical-lora"):  # a base and a pinned adapter
        mine = {
            a["MetricName"]: a
            for a in alarms
            if a.get("Dimensions") == [{"Name": "InferenceComponentName", "Value": component}]
        }
        assert {"ModelLatency", "Invocation4XXErrors", "Invocation5XXErrors"} <= set(mine)
        assert mine["ModelLatency"]["Threshold"] == 20_000_000 and mine["ModelLatency"]["ExtendedStatistic"] == "p90"
        for metric in ("ModelLatency", "Invocation4XXErrors", "Invocation5XXErrors"):
            assert mine[metric]["AlarmActions"] == [{"Ref": topic_id}]
    t.has_resource_properties("AWS::CloudWatch::Dashboard", {"DashboardName": "clinical-llm-dev"})
    template(stages["staging"].inference).has_resource_properties(
        "AWS::CloudWatch::Dashboard", {"DashboardName": "clinical-llm-staging"}
    )


def test_outputs_name_the_endpoint_and_components(stages, custom):
    outputs = template(stages["prod"].inference).to_json()["Outputs"]
    assert outputs["EndpointName"]["Value"] == "clinical-llm"
    assert outputs["BaseComponentNames"]["Value"] == "llama32-3b"
    assert outputs["AdapterComponentNames"]["Value"] == ""  # no adapter pinned
    outputs = template(custom[0].inference).to_json()["Outputs"]
    assert outputs["AdapterComponentNames"]["Value"] == "triage-lora,clinical-lora"


def test_grants_for_other_stacks_name_this_endpoint_and_its_components(custom):
    stage, probe = custom
    arn = "arn:aws:sagemaker:us-east-1:111111111111:"
    policies = {
        p["Properties"]["Roles"][0]["Ref"]: p["Properties"]["PolicyDocument"]["Statement"]
        for p in resources(template(probe), "AWS::IAM::Policy").values()
    }
    invoke = next(v for k, v in policies.items() if k.startswith("Invoker"))
    assert invoke == [
        {
            "Action": ["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"],
            "Effect": "Allow",
            "Resource": [f"{arn}endpoint/clinical-llm"]
            + [
                f"{arn}inference-component/{n}"
                for n in sorted(("llama32-3b", "qwen25-7b", "triage-lora", "clinical-lora"))
            ],
        }
    ]
    assert stage.inference.endpoint_arn == f"{arn}endpoint/clinical-llm"


def test_staged_weights_are_read_from_the_artifacts_bucket_without_a_licence(custom):
    stage, _ = custom
    t = template(stage.inference)
    sources = [
        m["Properties"]["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]
        for m in resources(t, "AWS::SageMaker::Model").values()
    ]
    assert sorted(s["S3Uri"]["Fn::Join"][1][-1] for s in sources) == [
        "/models/llama-3.2-3b-instruct/",
        "/models/qwen2.5-7b/",
    ]
    assert all("ModelAccessConfig" not in s for s in sources)
