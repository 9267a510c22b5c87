"""Invalid configuration fails synth with a message naming the environment and the field."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from stacks.app_builder import build_app
from stacks.settings import CONFIG_DIR, ConfigError, load_app, load_environment
from tests.infra.conftest import CDK_CONTEXT, ROOT, make_app, synth


@pytest.fixture
def config_dir(tmp_path):
    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    return tmp_path / "config"


def edit(config_dir, env, **changes):
    path = config_dir / f"{env}.yaml"
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data))


def test_default_environments_load_with_placeholder_accounts():
    for env in ("dev", "staging", "prod"):
        s = load_environment(env)
        assert len(s.account) == 12 and s.name == env


def test_missing_account_names_environment_and_field(config_dir):
    edit(config_dir, "staging", account=None)
    with pytest.raises(ConfigError, match=r"environment 'staging':\n  account: required but missing"):
        load_environment("staging", config_dir=config_dir)


@pytest.mark.parametrize("account", ["12345", "1234567890123", "12345678901a"])
def test_account_must_be_12_digits(account):
    with pytest.raises(
        ConfigError, match=rf"environment 'dev':\n  account: '{account}' is not a 12-digit AWS account id"
    ):
        load_environment("dev", overrides={"account": account})


@pytest.mark.parametrize("region", ["useast1", "us-east", "US-EAST-1", "us-east-1 "])
def test_malformed_region_is_refused(region):
    with pytest.raises(ConfigError, match=r"environment 'prod':\n  region: .* is not an AWS region name"):
        load_environment("prod", overrides={"region": region})


def test_unknown_environment_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown environment 'qa'; known environments: dev, prod, staging"):
        build_app(make_app(environments="dev,qa"))


def test_a_repeated_environment_is_named_before_any_construct_exists():
    app = make_app(environments="dev dev")
    with pytest.raises(ConfigError, match=r"context environments: dev given more than once"):
        build_app(app)
    assert app.node.children == []


def test_every_environment_declares_its_tier(config_dir):
    """No default: a new environment (a production region copied from another file, say) chooses its protections."""
    edit(config_dir, "prod", tier=None)
    with pytest.raises(ConfigError, match=r"environment 'prod':\n  tier: required but missing"):
        load_environment("prod", config_dir=config_dir)


def test_an_unknown_tier_is_refused_naming_the_choices():
    with pytest.raises(ConfigError, match=r"environment 'prod':\n  tier: Input should be 'development', 'staging'"):
        load_environment("prod", overrides={"tier": "prod"})


def test_removal_policy_names_its_replacement(config_dir):
    edit(config_dir, "staging", removal_policy="retain")
    with pytest.raises(ConfigError, match=r"environment 'staging':\n  removal_policy: replaced by tier"):
        load_environment("staging", config_dir=config_dir)


@pytest.mark.parametrize(("env", "tier"), [("dev", "staging"), ("dev", "production"), ("prod", "production")])
def test_synthetic_patients_are_seeded_only_in_the_development_tier(env, tier):
    """The tier decides, not the name: dev set to a protected tier is refused too."""
    with pytest.raises(
        ConfigError,
        match=rf"environment '{env}':\n  agent\.seed_patients: .*only in development environments; {env} is tier "
        rf"{tier}",
    ):
        load_environment(env, overrides={"tier": tier, "agent.seed_patients": True})


def test_protection_follows_the_tier():
    assert [load_environment(e).protected for e in ("dev", "staging", "prod")] == [False, True, True]
    assert load_environment("dev", overrides={"tier": "staging", "agent.seed_patients": False}).destroy is False


def test_registry_readers_may_not_include_the_owner_account():
    """The owner account already holds the registry; naming it would write it into the group's, the bucket's and
    the key's policies as a reader."""
    with pytest.raises(
        ConfigError,
        match=r"environment 'dev':\n  registry\.reader_accounts: 111111111111 is this environment's own account",
    ):
        load_environment("dev", overrides={"registry.reader_accounts": '["222222222222", "111111111111"]'})


def test_environment_names_are_lower_case_words_joined_by_hyphens(config_dir):
    shutil.copy(config_dir / "dev.yaml", config_dir / "Dev2.yaml")
    with pytest.raises(
        ConfigError, match=r"environment 'Dev2':\n  name: 'Dev2' \(the file Dev2.yaml\): environment names"
    ):
        load_environment("Dev2", config_dir=config_dir)


def test_unknown_field_is_refused(config_dir):
    edit(config_dir, "dev", acount="123456789012")
    with pytest.raises(ConfigError, match=r"environment 'dev':\n  acount: Extra inputs are not permitted"):
        load_environment("dev", config_dir=config_dir)


def test_context_overrides_account_and_nested_fields():
    app = make_app(
        environments="dev",
        **{
            "dev.account": "012345678901",
            "dev.network.enabled": "true",
            "dev.network.availability_zone_ids": '["use1-az1", "use1-az4"]',
        },
    )
    stages = build_app(app)
    settings = stages["dev"].settings
    assert settings.account == "012345678901"  # leading zero kept: accounts stay strings
    assert settings.network.enabled is True and stages["dev"].network is not None


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {"prod.account": "42"},
            "error: invalid configuration for environment 'prod':\n  account: '42' is not a 12-digit",
        ),
        (
            {"environments": "dev,staging,dev"},
            "error: context environments: dev given more than once in 'dev,staging,dev'",
        ),
    ],
)
def test_cli_prints_config_error_exits_nonzero_and_writes_nothing(tmp_path, context, message):
    """`cdk synth -c prod.account=42` or a repeated environment: the app exits 1 with the message, no traceback (no
    jsii trace either), and the output folder stays empty."""
    out = tmp_path / "cdk.out"
    out.mkdir()
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({**CDK_CONTEXT, **context}), "CDK_OUTDIR": str(out)}
    proc = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and "jsii" not in proc.stderr
    assert list(out.iterdir()) == []


def test_a_bad_setting_of_the_last_environment_writes_nothing(tmp_path):
    """Dev and Staging are valid, Prod is not: the configuration is refused before any construct stages an asset."""
    out = tmp_path / "cdk.out"
    out.mkdir()
    with pytest.raises(ConfigError, match=r"environment 'prod':\n  inference\.max_instance_count: .*greater than"):
        synth(str(out), **{"prod.inference.max_instance_count": "0"})
    assert list(out.iterdir()) == []


def test_every_invalid_environment_is_reported_at_once():
    with pytest.raises(ConfigError) as raised:
        load_app({"staging.account": "1", "prod.region": "nowhere"})
    assert "environment 'staging':\n  account: '1'" in str(raised.value)
    assert "environment 'prod':\n  region: 'nowhere'" in str(raised.value)


def test_an_override_that_names_no_setting_is_refused():
    with pytest.raises(ConfigError, match=r"environment 'prod':\n  acount: context prod\.acount names no setting"):
        load_app({"prod.acount": "123456789012"})


def test_the_environments_the_pipeline_promotes_are_validated_even_when_not_synthesized():
    with pytest.raises(ConfigError, match=r"environment 'prod':\n  account: '42'"):
        load_app({"environments": "dev", "delivery": "true", "prod.account": "42"})
    assert load_app({"environments": "dev", "prod.account": "42"}).synthesized == ["dev"]  # neither built nor read


def test_every_environment_of_the_config_directory_is_synthesized_development_first(config_dir):
    shutil.copy(config_dir / "staging.yaml", config_dir / "qa.yaml")
    settings = load_app({"config_dir": str(config_dir)})
    assert settings.synthesized == ["dev", "qa", "staging", "prod"]
    assert [e.name for e in settings.promoted] == ["dev", "staging", "prod"]


def test_a_config_directory_that_is_not_there_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"context config_dir: .*missing is not a directory"):
        load_app({"config_dir": str(tmp_path / "missing")})


def test_an_environment_file_that_is_not_yaml_is_named(config_dir):
    (config_dir / "dev.yaml").write_text("account: [unclosed\n")
    with pytest.raises(ConfigError, match=r"environment 'dev': dev\.yaml is not YAML"):
        load_app({"config_dir": str(config_dir), "environments": "dev"})


def test_the_pipeline_promotes_production_only_after_an_approval():
    with pytest.raises(ConfigError, match=r"environment 'delivery':\n  approval_before: prod is tier production"):
        load_app({"delivery.approval_before": "[]"})


def test_training_rank_must_fit_the_serving_base():
    with pytest.raises(
        ConfigError, match=r"environment 'dev':\n  training.lora_rank: 128 exceeds max_lora_rank 64 of llama32-3b"
    ):
        load_environment("dev", overrides={"training.lora_rank": 128})


@pytest.mark.parametrize(
    "zones,message",
    [
        ('["use1-az1"]', r"network\.availability_zone_ids: \['use1-az1'\] must name at least 2 distinct zone IDs"),
        ('["use1-az1", "use1-az1"]', r"network\.availability_zone_ids: .* must name at least 2 distinct zone IDs"),
        ('["use1-az1", "use1-az3"]', r"network\.availability_zone_ids: use1-az3 not supported by AgentCore Runtime"),
    ],
)
def test_zone_ids_must_be_agentcores_for_the_region(zones, message):
    with pytest.raises(ConfigError, match=rf"environment 'prod':\n  {message}"):
        load_environment("prod", overrides={"network.availability_zone_ids": zones})


def test_a_network_in_a_region_agentcore_documents_no_zones_for_is_refused():
    with pytest.raises(ConfigError, match=r"network: AgentCore Runtime in a VPC documents no Availability Zones"):
        load_environment("prod", overrides={"region": "sa-east-1"})


def test_a_job_instance_type_must_be_in_the_instance_table():
    """Whether a job may carry a volume key depends on the instance's local storage: the family must be known."""
    with pytest.raises(
        ConfigError, match=r"training\.evaluate_instance_type: instance family 'zz9' .* INSTANCE_FAMILIES"
    ):
        load_environment("dev", overrides={"training.evaluate_instance_type": "ml.zz9.xlarge"})
