"""NetworkStack: isolated VPC (no internet path), the endpoints the workloads need, flow logs, workload SGs."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from tests.infra.conftest import template


def test_network_is_on_in_staging_and_prod_and_off_in_dev(stages):
    assert stages["dev"].network is None
    assert stages["staging"].network is not None and stages["prod"].network is not None


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_vpc_has_no_route_to_the_internet(stages, env):
    t = template(stages[env].network)
    for kind in ("AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EgressOnlyInternetGateway"):
        assert t.find_resources(kind) == {}
    for subnet in t.find_resources("AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_vpc_endpoints_for_the_workloads(stages, env):
    t = template(stages[env].network)
    names = []
    for ep in t.find_resources("AWS::EC2::VPCEndpoint").values():
        service = ep["Properties"]["ServiceName"]
        names.append(
            service if isinstance(service, str) else "".join(p for p in service["Fn::Join"][1] if isinstance(p, str))
        )
    suffixes = sorted(n.split(".", 2)[-1] if n.startswith("com.amazonaws.") else n.rsplit(".", 1)[-1] for n in names)
    for wanted in ("s3", "dynamodb", "sagemaker.api", "sagemaker.runtime", "ecr.api", "ecr.dkr", "logs", "sts", "kms"):
        assert any(s.endswith(wanted) for s in suffixes), (wanted, suffixes)


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_flow_logs_go_to_an_encrypted_log_group(stages, env):
    t = template(stages[env].network)
    t.has_resource_properties("AWS::EC2::FlowLog", {"ResourceType": "VPC", "TrafficType": "ALL"})
    t.has_resource_properties("AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value(), "RetentionInDays": 365})


def test_each_workload_gets_its_own_security_group_for_its_purpose(stages):
    """Each workload's ``security_group_id`` resolves to the GroupId of a distinct security group in the network
    template, described for that workload (a swapped or shared group fails)."""
    net = stages["prod"].network
    groups = template(net).find_resources("AWS::EC2::SecurityGroup")
    expected = {
        "training_sg": "SageMaker training and processing jobs",
        "endpoint_sg": "SageMaker inference endpoint",
        "lambda_sg": "Lambda functions",
        "agent_sg": "AgentCore runtime",
    }
    logical_ids = {}
    for attribute, description in expected.items():
        reference = net.resolve(getattr(net, attribute).security_group_id)
        assert set(reference) == {"Fn::GetAtt"}, (attribute, reference)
        logical_id, field = reference["Fn::GetAtt"]
        assert field == "GroupId", (attribute, reference)
        assert groups[logical_id]["Properties"]["GroupDescription"] == description, attribute
        logical_ids[attribute] = logical_id
    assert len(set(logical_ids.values())) == len(expected), logical_ids


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_subnets_are_placed_by_the_configured_zone_ids_not_zone_names(stages, env):
    """Zone names map to different zones per account; AgentCore accepts only its documented zone IDs."""
    t = template(stages[env].network)
    subnets = t.find_resources("AWS::EC2::Subnet").values()
    assert sorted(s["Properties"]["AvailabilityZoneId"] for s in subnets) == sorted(
        stages[env].settings.network.availability_zone_ids
    )
    assert all("AvailabilityZone" not in s["Properties"] for s in subnets)


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_tracking_server_is_reached_through_the_experiments_endpoint(stages, env):
    assert stages[env].settings.mlflow.kind == "tracking_server"
    t = template(stages[env].network)
    t.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {
            "ServiceName": "aws.sagemaker.us-east-1.experiments",
            "VpcEndpointType": "Interface",
            "PrivateDnsEnabled": True,
        },
    )
