"""The delivery pipeline: dev → staging → audit diff + approval → prod, each in its own account, offline synth."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from aws_cdk import Stack
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match

from stacks.app_builder import DELIVERY_STACK_ID, build_app
from stacks.delivery_stack import bootstrap_role_arn
from stacks.settings import ConfigError, delivery_enabled, load_delivery, load_environment
from tests.infra.conftest import ROOT, make_app, template
from tools.assembly import missing_context

PRE_STAGES = ["Source", "Build", "UpdatePipeline", "Assets"]


def stage_actions(pipeline: dict, name: str) -> list[dict]:
    return next(s["Actions"] for s in pipeline["Stages"] if s["Name"] == name)


def deploy_role(env) -> dict:
    """How CDK renders a target's bootstrap deploy role in the pipeline's template."""
    arn = bootstrap_role_arn("deploy", env)
    return {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, arn.removeprefix("arn:aws")]]}


def test_pipeline_synthesizes_offline_without_lookups(delivery):
    outdir = Path(delivery.node.scope.outdir)
    nested = sorted(p.parent.name for p in outdir.glob("assembly-Delivery-*/manifest.json"))
    assert nested == ["assembly-Delivery-Dev", "assembly-Delivery-Prod", "assembly-Delivery-Staging"]
    assert missing_context(outdir) == []


def test_compliance_packs_check_the_pipeline_stack(tmp_path):
    """The session app synthesized, so the pipeline has no unacknowledged finding; and the packs do look at it."""
    app = make_app(
        str(tmp_path),
        environments="",
        delivery="true",
        **{"delivery.environments": '["dev"]', "delivery.approval_before": "[]"},
    )
    build_app(app)
    s3.Bucket(app.node.find_child(DELIVERY_STACK_ID), "Unencrypted")
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    flagged = {
        c["constructPath"]
        for p in report["pluginReports"]
        for v in p.get("violations", [])
        for c in v["violatingConstructs"]
    }
    assert flagged and all(path.startswith("Delivery/Unencrypted/") for path in flagged)


def test_stages_promote_dev_then_staging_then_prod(pipeline):
    assert [s["Name"] for s in pipeline["Stages"]] == PRE_STAGES + ["Dev", "Staging", "Prod"]


def test_prod_deploys_only_after_an_audit_diff_and_a_manual_approval(pipeline):
    prod = {a["Name"]: a for a in stage_actions(pipeline, "Prod")}
    deploys = [a["RunOrder"] for a in prod.values() if a["ActionTypeId"]["Category"] == "Deploy"]
    assert (prod["Approve"]["ActionTypeId"]["Category"], prod["Approve"]["ActionTypeId"]["Provider"]) == (
        "Approval",
        "Manual",
    )
    assert prod["AuditDiff"]["RunOrder"] < prod["Approve"]["RunOrder"] < min(deploys)
    for name in ("Dev", "Staging"):
        assert all(a["ActionTypeId"]["Category"] != "Approval" for a in stage_actions(pipeline, name))


@pytest.mark.parametrize("name", ["dev", "staging", "prod"])
def test_each_stage_deploys_to_its_configured_account_and_region_through_the_bootstrap_roles(delivery, pipeline, name):
    env = load_environment(name)
    stage = delivery.stages[name]
    assert [(s.account, s.region) for s in stage.node.children if isinstance(s, Stack)] != []
    assert {(s.account, s.region) for s in stage.node.children if isinstance(s, Stack)} == {(env.account, env.region)}
    deploys = [a for a in stage_actions(pipeline, env.stage_id) if a["ActionTypeId"]["Category"] == "Deploy"]
    assert deploys and all(a["RoleArn"] == deploy_role(env) for a in deploys)
    assert all(a.get("Region", delivery.region) == env.region for a in deploys)
    # The same CloudFormation stacks a direct `make deploy ENV=<name>` manages.
    assert {a["Configuration"]["StackName"] for a in deploys} == {
        f"{env.stage_id}-{s.node.id}" for s in stage.node.children if isinstance(s, Stack)
    }


def test_an_environment_in_another_region_is_deployed_there_through_a_keyed_replication_bucket(tmp_path):
    app = make_app(
        str(tmp_path),
        environments="",
        delivery="true",
        **{
            "delivery.environments": '["dev", "prod"]',  # dev trains: the pipeline promotes its approvals
            "prod.region": "eu-west-1",
            "prod.network.availability_zone_ids": '["euw1-az1", "euw1-az2"]',
        },
    )
    build_app(app)
    app.synth()  # compliance packs included: the support stack's bucket passes too
    stack = app.node.find_child(DELIVERY_STACK_ID)
    props = next(iter(template(stack).find_resources("AWS::CodePipeline::Pipeline").values()))["Properties"]
    deploys = [a for a in stage_actions(props, "Prod") if a["ActionTypeId"]["Category"] == "Deploy"]
    assert deploys and {a["Region"] for a in deploys} == {"eu-west-1"}
    stores = {s["Region"]: s["ArtifactStore"] for s in props["ArtifactStores"]}
    assert set(stores) == {"us-east-1", "eu-west-1"} and stores["eu-west-1"]["EncryptionKey"]["Type"] == "KMS"


def test_artifact_key_lets_every_target_deploy_role_decrypt(delivery):
    roles = [deploy_role(load_environment(n)) for n in ("dev", "staging", "prod")]
    template(delivery).has_resource_properties(
        "AWS::KMS::Key",
        {
            "EnableKeyRotation": True,
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": Match.array_with(["kms:Decrypt"]),
                                "Principal": {"AWS": Match.array_with(roles)},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_synth_step_runs_the_tests_before_synthesizing_into_cdk_out_with_the_resolved_pin(delivery):
    projects = template(delivery).find_resources("AWS::CodeBuild::Project")
    synth_spec = next(json.loads(p["Properties"]["Source"]["BuildSpec"]) for k, p in projects.items() if "Synth" in k)
    # The tests run with the committed pin (the reviewed baselines come from it); the stages deploy the resolved one.
    assert synth_spec["phases"]["build"]["commands"] == [
        "make check",
        "make test",
        "cp resolved-pin/models.lock.json config/models.lock.json",
        "make synth",
    ]
    (link,) = synth_spec["phases"]["install"]["commands"]  # ResolvePin's output, linked in before the build
    assert link.endswith('ln -s -- "$CODEBUILD_SRC_DIR_ResolvePin_Output" "resolved-pin"')
    assert synth_spec["phases"]["install"]["runtime-versions"] == {"python": "3.11", "nodejs": "20"}
    assert synth_spec["artifacts"]["base-directory"] == "cdk.out"


def test_every_build_logs_to_the_encrypted_retained_log_group(delivery):
    t = template(delivery)
    ((group_id, group),) = t.find_resources("AWS::Logs::LogGroup").items()
    assert group["Properties"]["RetentionInDays"] == load_delivery().log_retention_days
    assert "KmsKeyId" in group["Properties"]
    projects = t.find_resources("AWS::CodeBuild::Project").values()
    assert {json.dumps(p["Properties"]["LogsConfig"]["CloudWatchLogs"]["GroupName"]) for p in projects} == {
        json.dumps({"Ref": group_id})
    }


@pytest.mark.parametrize("name", ["dev", "staging", "prod"])
def test_health_check_reads_the_stage_outputs_through_the_read_only_lookup_role(delivery, pipeline, name):
    env = load_environment(name)
    actions = {a["Name"]: a for a in stage_actions(pipeline, env.stage_id)}
    check = actions["HealthCheck"]
    assert check["RunOrder"] == max(a["RunOrder"] for a in actions.values())  # after every deploy
    variables = {v["name"]: v["value"] for v in json.loads(check["Configuration"]["EnvironmentVariables"])}
    namespace = {a["Name"].removesuffix(".Deploy"): a.get("Namespace") for a in actions.values()}
    # every environment deploys its data, inference and agent stacks: the check covers all three
    assert variables == {
        "KEY_ARN": f"#{{{namespace['Data']}.KeyArn}}",
        "DATASETS_BUCKET": f"#{{{namespace['Data']}.DatasetsBucketName}}",
        "ENDPOINT_NAME": f"#{{{namespace['Inference']}.EndpointName}}",
        "AGENT_RUNTIME_ARN": f"#{{{namespace['Agent']}.RuntimeArn}}",
    }
    t = template(delivery)
    project = next(
        k for k in t.find_resources("AWS::CodeBuild::Project") if k.startswith(f"Pipeline{env.stage_id}HealthCheck")
    )
    spec = json.loads(t.find_resources("AWS::CodeBuild::Project")[project]["Properties"]["Source"]["BuildSpec"])
    commands = spec["phases"]["build"]["commands"]
    lookup = bootstrap_role_arn("lookup", env)
    assert commands[:4] == [
        f"aws configure set profile.target.role_arn {lookup}",
        "aws configure set profile.target.credential_source EcsContainer",
        f"aws configure set profile.target.region {env.region}",
        "export AWS_PROFILE=target",
    ]
    checked = " ".join(commands[4:])
    for call in ("kms describe-key", "s3api head-bucket", "sagemaker describe-endpoint", "get-agent-runtime"):
        assert checked.count(call) == 1, (call, commands)
    assert 'test "$s" = InService' in checked and 'test "$s" = READY' in checked and 'test "$s" = Enabled' in checked
    t.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "Roles": [{"Ref": Match.string_like_regexp(f"^Pipeline{env.stage_id}HealthCheckRole")}],
            "PolicyDocument": {
                "Statement": Match.array_with([{"Action": "sts:AssumeRole", "Effect": "Allow", "Resource": lookup}])
            },
        },
    )


def test_audit_diff_selects_exactly_the_prod_stacks_of_the_assembly(delivery):
    t = template(delivery)
    spec = next(
        json.loads(p["Properties"]["Source"]["BuildSpec"])
        for k, p in t.find_resources("AWS::CodeBuild::Project").items()
        if "AuditDiff" in k
    )
    (command,) = spec["phases"]["build"]["commands"]
    assert "diff --app . --method template" in command  # template method: reads through the lookup role only
    selector = command.rsplit(" ", 1)[1].strip('"')
    env = {**os.environ, "CDK_DISABLE_CLI_TELEMETRY": "true"}
    listed = subprocess.run(
        [str(ROOT / "node_modules/.bin/cdk"), "ls", "--app", delivery.node.scope.outdir, selector],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    ).stdout.split("\n")
    names = sorted(line.split(" ")[0] for line in listed if line)
    assert names == sorted(s.node.path for s in delivery.stages["prod"].node.children if isinstance(s, Stack))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("approval_before", ["qa"], "approval_before: qa not in environments"),
        ("environments", ["dev", "prod", "dev"], "environments: each environment is promoted once; repeated: dev"),
        ("environments", [], "environments"),
        ("log_retention_days", 10, "log_retention_days"),
    ],
)
def test_bad_delivery_settings_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        load_delivery({field: value})


def test_unknown_environment_in_the_pipeline_is_named():
    app = make_app(environments="", delivery="true", **{"delivery.environments": '["dev", "qa", "prod"]'})
    with pytest.raises(ConfigError, match="environments: unknown qa; known environments: dev, prod, staging"):
        build_app(app)


@pytest.mark.parametrize(
    "value, environments_given, expected",
    [
        (None, False, True),
        (None, True, False),
        ("false", False, False),
        (False, False, False),
        ("true", True, True),
    ],
)
def test_delivery_switch(value, environments_given, expected):
    assert delivery_enabled(value, environments_given=environments_given) is expected


def test_delivery_switch_rejects_other_values():
    with pytest.raises(ConfigError, match="context delivery: 'maybe' is not true or false"):
        build_app(make_app(environments="", delivery="maybe"))


def test_app_without_the_pipeline_has_no_delivery_stack():
    app = make_app(environments="", delivery="false")
    assert build_app(app) == {} and app.node.try_find_child(DELIVERY_STACK_ID) is None


def test_the_source_action_may_use_a_codeconnections_connection(delivery, pipeline):
    """The connection ARN is arn:aws:codeconnections:...; its service prefix authorizes codeconnections:UseConnection
    (CDK grants only codestar-connections:UseConnection)."""
    (source,) = stage_actions(pipeline, "Source")
    role = source["RoleArn"]["Fn::GetAtt"][0]
    actions = {
        (a, json.dumps(st["Resource"]))
        for p in template(delivery).find_resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for st in p["Properties"]["PolicyDocument"]["Statement"]
        for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    }
    connection = load_delivery().connection_arn
    assert ("codeconnections:UseConnection", json.dumps(connection)) in actions


def test_image_publishing_logs_in_to_the_training_base_image_registry(delivery, tmp_path_factory):
    """The training image is built FROM a PyTorch DLC in AWS's account: the image projects log in to its registry
    and may pull only that repository."""
    outdir = Path(delivery.node.root.outdir)
    (spec,) = outdir.glob("buildspec-*-DockerAsset.yaml")
    registry = load_environment("dev").training.base_image.split("/")[0]
    assert f"docker login --username AWS --password-stdin {registry}" in spec.read_text()
    statements = [
        st
        for p in template(delivery).find_resources("AWS::IAM::Policy").values()
        for st in p["Properties"]["PolicyDocument"]["Statement"]
        if "ecr:BatchGetImage" in json.dumps(st["Action"]) and "763104351884" in json.dumps(st["Resource"])
    ]
    assert statements and all(
        r == "arn:aws:ecr:us-east-1:763104351884:repository/pytorch-training"
        for st in statements
        for r in [st["Resource"]]
    )
