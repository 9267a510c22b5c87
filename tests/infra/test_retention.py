"""Environments are data and their tier decides what survives: every stateful resource outside the development tier
is retained (RetainExceptOnCreate), whichever construct declares it; the reviewed tables of stateful and stateless
resource types cover every type the app declares; a new environment is a config file, synthesized and protected
with no code change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from aws_cdk import App, Stack, Stage
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk.assertions import Template

from stacks.constructs.removal import STATEFUL_TYPES, STATELESS_TYPES, apply_removal_policies
from stacks.settings import CONFIG_DIR, ConfigError, load_app
from tools.assembly import stacks
from tools.synth import synth

RETAINED = {"DeletionPolicy": "RetainExceptOnCreate", "UpdateReplacePolicy": "Retain"}
DELETED = {"DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"}


def resources(template: Path) -> dict[str, dict]:
    return json.loads(template.read_text()).get("Resources", {})


def policies(resource: dict) -> dict[str, str | None]:
    return {k: resource.get(k) for k in RETAINED}


def stage_tiers() -> dict[str, str]:
    """Assembly stage -> tier: each environment's stage and the delivery pipeline's copy of it ("Delivery-Prod");
    the tooling account's own stacks (stage "") keep everything, like a production tier."""
    tiers = {"": "production"}
    for env in load_app({}).environments.values():
        tiers[env.stage_id] = tiers[f"Delivery-{env.stage_id}"] = env.tier
    return tiers


def test_stateful_and_stateless_tables_do_not_overlap():
    assert set(STATEFUL_TYPES) & set(STATELESS_TYPES) == set()


def test_every_resource_type_in_the_templates_is_reviewed_as_stateful_or_stateless(stages, assembly_dir):
    """A new resource type fails here until someone decides whether it holds state (stacks/constructs/removal.py)."""
    present = {r["Type"] for s in stacks(assembly_dir) for r in resources(s.template).values()}
    assert present - set(STATEFUL_TYPES) - set(STATELESS_TYPES) == set()
    assert {"AWS::SageMaker::ModelPackageGroup", "AWS::SageMaker::ModelCard", "AWS::S3::Bucket"} <= present


def test_every_stateful_resource_outside_development_is_retained_except_on_create(stages, assembly_dir):
    tiers, checked, wrong = stage_tiers(), set(), []
    for s in stacks(assembly_dir):
        expected = DELETED if tiers[s.stage] == "development" else RETAINED
        for logical_id, r in resources(s.template).items():
            if r["Type"] in STATEFUL_TYPES:
                checked.add((tiers[s.stage], r["Type"]))
                if policies(r) != expected:
                    wrong.append(f"{s.display_name}/{logical_id} ({r['Type']}): {policies(r)}")
    assert wrong == []
    # The registry, its card and pipeline (only where training runs: dev), MLflow's store, tables, buckets, keys and
    # log groups are all among the checked; outside development, every kind of store the environments hold.
    assert {t for _, t in checked} >= {
        "AWS::SageMaker::ModelPackageGroup",
        "AWS::SageMaker::ModelCard",
        "AWS::SageMaker::Pipeline",
        "AWS::SageMaker::MlflowApp",
    }
    assert {t for tier, t in checked if tier != "development"} >= {
        "AWS::SageMaker::MlflowTrackingServer",
        "AWS::DynamoDB::Table",
        "AWS::S3::Bucket",
        "AWS::KMS::Key",
        "AWS::Logs::LogGroup",
    }


@pytest.mark.parametrize(("destroy", "expected"), [(False, RETAINED), (True, DELETED)])
def test_a_stateful_resource_whose_construct_sets_no_policy_follows_the_stage(destroy, expected):
    """The stage applies the policy by type: an L1 registry declared with no removal policy at all is retained
    outside development and deleted in it."""
    stage = Stage(App(), "Env")
    stack = Stack(stage, "Mlops")
    sagemaker.CfnModelPackageGroup(stack, "Group", model_package_group_name="g")
    sagemaker.CfnModelCard(stack, "Card", model_card_name="c", model_card_status="Draft", content={})
    apply_removal_policies(stage, destroy=destroy)
    found = Template.from_stack(stack).to_json()["Resources"]
    assert [policies(r) for r in found.values()] == [expected, expected]


# --- a new environment is a config file --------------------------------------------------------------------------


@pytest.fixture
def config_with_a_new_production_region(tmp_path) -> Path:
    """dev, plus prod-west: a production environment in us-west-2 added by a file alone (and the delivery file)."""
    config = tmp_path / "config"
    config.mkdir()
    for name in ("dev", "delivery"):
        shutil.copy(CONFIG_DIR / f"{name}.yaml", config)
    prod = yaml.safe_load((CONFIG_DIR / "prod.yaml").read_text())
    prod.update(account="555555555555", region="us-west-2")
    prod["network"]["availability_zone_ids"] = ["usw2-az1", "usw2-az2"]
    (config / "prod-west.yaml").write_text(yaml.safe_dump(prod))
    return config


def test_a_new_environment_file_is_synthesized_and_protected_by_its_tier(config_with_a_new_production_region, tmp_path):
    out = tmp_path / "cdk.out"
    built = synth(str(out), config_dir=str(config_with_a_new_production_region), delivery="false")
    assert list(built) == ["dev", "prod-west"]  # every file of the directory, development first
    assert built["prod-west"].settings.tier == "production" and built["prod-west"].account == "555555555555"
    found = {
        (s.display_name, r["Type"]): policies(r)
        for s in stacks(out)
        if s.stage == "Prod-west"
        for r in resources(s.template).values()
        if r["Type"] in STATEFUL_TYPES
    }
    assert {t for _, t in found} >= {"AWS::SageMaker::MlflowTrackingServer", "AWS::S3::Bucket", "AWS::DynamoDB::Table"}
    assert set(map(json.dumps, found.values())) == {json.dumps(RETAINED)}


def test_a_new_production_environment_in_the_pipeline_needs_an_approval(config_with_a_new_production_region):
    delivery = config_with_a_new_production_region / "delivery.yaml"
    settings = yaml.safe_load(delivery.read_text())
    settings.update(environments=["dev", "prod-west"], approval_before=[])
    delivery.write_text(yaml.safe_dump(settings))
    with pytest.raises(ConfigError, match=r"environment 'delivery':\n  approval_before: prod-west is tier production"):
        load_app({"config_dir": str(config_with_a_new_production_region)})
