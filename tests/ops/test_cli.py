"""The CLI as a whole: help on every command, the make targets, and the failures a user meets before any
command does its work (unknown environment, missing, expired or wrong-account credentials)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ops import cli
from ops.errors import explain

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["bootstrap", "weights", "data", "train", "approve", "ask", "status", "destroy", "cost"]


def test_every_command_has_help():
    listed = subprocess.run([sys.executable, "-m", "ops", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert listed.returncode == 0
    for command in COMMANDS:
        assert command in listed.stdout
        shown = CliRunner().invoke(cli.app, [command, "--help"])
        assert shown.exit_code == 0 and "--env" in shown.output, command


@pytest.mark.parametrize(
    "target,variables,expected",
    [
        ("weights", ["FROM=/tmp/snap shot"], 'ops weights --env dev --from "$FROM"'),
        (
            "train",
            ["PARAMS=Epochs=2 LoraRank=8", "NO_WAIT=1"],
            "ops train --env dev --param Epochs=2 --param LoraRank=8 --no-wait",
        ),
        ("approve", ["VERSION=3", "YES=1"], "ops approve --env dev --version 3 --yes"),
        ("ask", ["PROMPT=fever and cough"], 'ops ask --env dev --prompt "$PROMPT"'),
        ("destroy", [], "ops destroy --env dev"),
        (
            "bootstrap",
            ["POLICY=arn:aws:iam::111111111111:policy/P"],
            "--execution-policy arn:aws:iam::111111111111:policy/P",
        ),
        ("cost", [], "-m ops cost"),
    ],
)
def test_make_targets_run_the_cli_with_the_environment_and_options(target, variables, expected):
    shown = subprocess.run(["make", "-n", target, "ENV=dev", *variables], cwd=ROOT, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert expected in shown.stdout


def test_make_cost_without_env_covers_every_environment():
    shown = subprocess.run(["make", "-n", "cost"], cwd=ROOT, capture_output=True, text=True)
    assert "-m ops cost" in shown.stdout and "--env" not in shown.stdout.split("-m ops cost", 1)[1].splitlines()[0]


def test_unknown_environment_names_the_known_ones():
    result = CliRunner().invoke(cli.app, ["status", "--env", "qa"])
    assert result.exit_code == 2
    assert "unknown environment 'qa'; known environments: dev, prod, staging" in result.output
    assert "Traceback" not in result.output


def test_missing_credentials_are_a_sentence_not_a_traceback(aws, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = CliRunner().invoke(cli.app, ["status", "--env", "dev"])
    assert result.exit_code == 1
    assert "no AWS credentials found" in result.output and "aws sso login" in result.output
    assert "Traceback" not in result.output


def test_expired_credentials_are_a_sentence_not_a_traceback(env):
    sts, stub = env.stub("sts")
    stub.add_client_error(
        "get_caller_identity", "ExpiredToken", "The security token included in the request is expired", 403
    )
    result = env.run(env.cloud(sts=sts), "status", "--env", "dev")
    assert result.exit_code == 1
    assert "AWS refused your credentials (ExpiredToken" in result.output and "sign in again" in result.output
    assert "Traceback" not in result.output


def test_credentials_of_another_account_are_refused_naming_the_field(aws):
    result = CliRunner().invoke(cli.app, ["status", "--env", "staging"])  # moto answers as dev's account
    assert result.exit_code == 1
    assert "your credentials are for account 111111111111" in result.output
    assert "environment 'staging' is account 222222222222 (config/staging.yaml, field account)" in result.output


def test_an_expired_sso_session_is_explained():
    from botocore.exceptions import UnauthorizedSSOTokenError

    assert "SSO session has expired" in (explain(UnauthorizedSSOTokenError()) or "")
    assert explain(ValueError("not an AWS error")) is None
