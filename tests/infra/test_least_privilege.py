"""Least privilege: every wildcard in every policy of every template is reviewed (stacks/compliance.py WILDCARDS, each
with its reason); CDK Pipelines' asset roles start only their own projects; the pipeline role's network-interface
actions are conditioned on the VPC and the jobs' subnets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template
from constructs import Construct

from stacks.compliance import WILDCARDS, review_wildcards, statement_wildcards
from stacks.constructs.asset_roles import BUILD_ACTIONS, scope_asset_build_grants
from tools.assembly import stacks
from tools.synth import synth


@pytest.fixture(scope="module")
def templates(stages, assembly_dir) -> dict[str, dict]:
    """Every template of the session's app (every environment, the pipeline and its copies of the stages)."""
    return {s.display_name: json.loads(s.template.read_text()) for s in stacks(Path(assembly_dir))}


def statements(template: dict, resource_type: str = "AWS::IAM::Policy"):
    for logical_id, r in template["Resources"].items():
        if r["Type"] == resource_type:
            for st in r["Properties"]["PolicyDocument"]["Statement"]:
                yield logical_id, st


def as_list(v):
    return v if isinstance(v, list) else [v]


def test_every_wildcard_in_every_policy_is_reviewed_and_every_entry_is_used(templates):
    unexplained, unused = review_wildcards(templates)
    assert unexplained == [], "add each to stacks/compliance.py WILDCARDS with its reason, or narrow the grant"
    assert unused == [], "these WILDCARDS entries explain nothing any more: delete them"
    assert all(w.reason for w in WILDCARDS)


def one_policy(*statement: dict, resource_type="AWS::IAM::Policy", key="PolicyDocument") -> dict:
    return {"T": {"Resources": {"P": {"Type": resource_type, "Properties": {key: {"Statement": list(statement)}}}}}}


@pytest.mark.parametrize(
    ("statement", "finding"),
    [
        ({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"}, "T/P: Action::s3:*"),
        ({"Effect": "Allow", "Action": "sagemaker:DeleteModel", "Resource": "*"}, "T/P: Resource::* for sagemaker:"),
        # Reviewed only with its namespace condition.
        (
            {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
            "T/P: Resource::* for cloudwatch:",
        ),
        ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::b"}, 'T/P: NotAction::"iam:*"'),
    ],
)
def test_an_unreviewed_wildcard_is_named_with_its_template_and_resource(statement, finding):
    unexplained, _ = review_wildcards(one_policy(statement))
    assert any(f.startswith(finding) for f in unexplained), unexplained


def test_a_deny_and_a_key_policys_own_key_are_not_wildcards_to_review():
    deny = {
        "Effect": "Deny",
        "Action": "s3:*",
        "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    assert statement_wildcards("AWS::S3::BucketPolicy", deny) == []
    key_use = {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}
    assert statement_wildcards("AWS::KMS::Key", key_use) == []
    assert statement_wildcards("AWS::IAM::Policy", key_use) == ["Resource::* for kms:Decrypt"]


def test_policies_written_as_json_text_are_reviewed_too():
    text = {"Fn::Join": ["", ['{"Statement":[{"Effect":"Allow","Action":"logs:*","Resource":"', {"Ref": "X"}, '"}]}']]}
    template = {"Resources": {"P": {"Type": "AWS::XRay::ResourcePolicy", "Properties": {"PolicyDocument": text}}}}
    assert review_wildcards({"T": template})[0] == ["T/P: Action::logs:*"]


# --- CDK Pipelines' asset roles -----------------------------------------------------------------------------------


def test_no_codebuild_action_is_granted_on_every_resource(templates):
    loose = [
        (name, logical_id)
        for name, t in templates.items()
        for logical_id, st in statements(t)
        if st.get("Resource") == "*" and any(a.startswith("codebuild:") for a in as_list(st["Action"]))
    ]
    assert loose == []


def test_each_asset_role_starts_only_the_projects_that_run_as_it(templates):
    delivery = templates["Delivery"]["Resources"]
    roles = {
        lid
        for lid, r in delivery.items()
        if r["Type"] == "AWS::IAM::Role" and lid.startswith(("PipelineAssetsFileRole", "PipelineAssetsDockerRole"))
    }
    assert len(roles) == 2
    for role in roles:
        own = sorted(
            lid
            for lid, r in delivery.items()
            if r["Type"] == "AWS::CodeBuild::Project"
            and r["Properties"]["ServiceRole"] == {"Fn::GetAtt": [role, "Arn"]}
        )
        (policy,) = [r for r in delivery.values() if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in
                     r["Properties"]["Roles"]]  # fmt: skip
        builds = [
            st
            for st in policy["Properties"]["PolicyDocument"]["Statement"]
            if set(BUILD_ACTIONS) & set(as_list(st["Action"]))
        ]
        assert [sorted(as_list(st["Action"])) for st in builds] == [sorted(BUILD_ACTIONS)]
        assert [r["Fn::GetAtt"][0] for r in as_list(builds[0]["Resource"])] == own and len(own) == 1


def test_the_rewrite_fails_synth_when_cdk_stops_granting_builds_on_every_resource():
    """A CDK upgrade that changes the asset roles' grant is named, not silently passed over."""
    stack = Stack(App(), "S")
    assets = Construct(Construct(stack, "Pipeline"), "Assets")
    role = iam.Role(assets, "FileRole", assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["logs:PutLogEvents"], resources=["*"]))
    codebuild.PipelineProject(assets, "FileAsset", role=role)
    scope_asset_build_grants(assets.node.scope)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match=r"S/Pipeline/Assets/FileRole: CDK Pipelines no longer grants"):
        Template.from_stack(stack)


# --- the training pipeline's network interfaces ------------------------------------------------------------------


@pytest.fixture(scope="module")
def networked_mlops(tmp_path_factory) -> dict:
    """The Mlops template of the environment that trains (dev), with its network on (so a tracking server)."""
    network = {
        "dev.network.enabled": "true",
        "dev.network.availability_zone_ids": '["use1-az1", "use1-az2"]',
        "dev.mlflow.kind": "tracking_server",
    }
    stage = synth(str(tmp_path_factory.mktemp("cdk.out")), environments="dev", **network)["dev"]
    return Template.from_stack(stage.mlops).to_json()


def test_the_pipeline_role_manages_network_interfaces_only_in_its_vpc_and_subnets(networked_mlops):
    found = {
        st["Sid"]: st
        for lid, st in statements(networked_mlops)
        if lid.startswith("PipelineExecutionRole") and st.get("Sid", "").startswith("Jobs")
    }
    everywhere = [a for st in found.values() if st["Resource"] == "*" for a in as_list(st["Action"])]
    assert everywhere and all(a.startswith("ec2:Describe") for a in everywhere)
    mine = found["JobsCreateInterfacesInTheirSubnetsAndGroups"]
    assert {r["Fn::Join"][1][-2].split(":")[-1] for r in mine["Resource"]} == {"subnet/", "security-group/"}
    assert set(found["JobsCreateInterfacesInTheVpc"]["Condition"]["ArnEquals"]) == {"ec2:Vpc"}
    managed = found["JobsManageTheirInterfaces"]
    assert set(managed["Condition"]["ArnEquals"]) == {"ec2:Vpc", "ec2:Subnet"}
    assert len(managed["Condition"]["ArnEquals"]["ec2:Subnet"]) == 2  # the two subnets of the jobs
