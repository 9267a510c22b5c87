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
from stacks.settings import CONFIG_DIR, ConfigError, load_environment
from tests.infra.conftest import CDK_CONTEXT, ROOT, make_app


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


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_protected_environment_cannot_destroy(env):
    with pytest.raises(ConfigError, match=rf"environment '{env}':\n  removal_policy: {env} must retain its data"):
        load_environment(env, overrides={"removal_policy": "destroy"})


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


def test_cli_prints_config_error_and_exits_nonzero(tmp_path):
    """`cdk synth -c prod.account=42` → the app exits 1 with the message, no traceback."""
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps({**CDK_CONTEXT, "prod.account": "42"}),
        "CDK_OUTDIR": str(tmp_path),
    }
    proc = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "error: invalid configuration for environment 'prod':" in proc.stderr
    assert "account: '42' is not a 12-digit AWS account id" in proc.stderr
    assert "Traceback" not in proc.stderr


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
