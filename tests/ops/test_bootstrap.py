"""make bootstrap: the cdk command for the environment's account and region, with the delivery pipeline's trust."""

from __future__ import annotations

from stacks.settings import load_delivery

POLICY = "arn:aws:iam::111111111111:policy/ClinicalAgentCfnExec"


def test_bootstrap_trusts_the_pipeline_account_and_prints_what_it_runs(env, fake_cdk):
    tooling = load_delivery().account
    result = env.run(env.cloud(), "bootstrap", "--env", "dev", "--execution-policy", POLICY)
    assert result.exit_code == 0, result.output
    expected = f"bootstrap aws://111111111111/us-east-1 --trust {tooling} --cloudformation-execution-policies {POLICY}"
    assert f"$ cdk {expected}" in result.output
    assert fake_cdk.read_text().splitlines() == [expected]


def test_trust_without_an_execution_policy_is_refused_before_running_cdk(env, fake_cdk):
    result = env.run(env.cloud(), "bootstrap", "--env", "dev")
    assert result.exit_code == 1
    assert "CDK then requires the execution policy" in result.output and "--execution-policy ARN" in result.output
    assert not fake_cdk.exists()


def test_a_policy_of_another_account_is_refused(env, fake_cdk):
    result = env.run(
        env.cloud(), "bootstrap", "--env", "dev", "--execution-policy", POLICY.replace("111111111111", "999999999999")
    )
    assert result.exit_code == 1
    assert "belongs to account 999999999999, not to environment 'dev'" in result.output
    assert not fake_cdk.exists()


def test_no_trust_bootstraps_for_direct_deploys_only(env, fake_cdk):
    result = env.run(env.cloud(), "bootstrap", "--env", "dev", "--no-trust")
    assert result.exit_code == 0, result.output
    assert fake_cdk.read_text().splitlines() == ["bootstrap aws://111111111111/us-east-1"]


def test_dry_run_prints_the_command_and_runs_nothing(env, fake_cdk):
    result = env.run(env.cloud(), "bootstrap", "--env", "dev", "--execution-policy", POLICY, "--dry-run")
    assert result.exit_code == 0
    assert "$ cdk bootstrap aws://111111111111/us-east-1 --trust" in result.output
    assert not fake_cdk.exists()


def test_a_failing_cdk_exits_with_its_code(env, fake_cdk, monkeypatch):
    monkeypatch.setenv("OPS_CDK_EXIT", "3")
    result = env.run(env.cloud(), "bootstrap", "--env", "dev", "--no-trust")
    assert result.exit_code == 3
    assert "cdk bootstrap failed (exit 3)" in result.output
