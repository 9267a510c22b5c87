"""The Makefile's promises, checked against the real tools: the audit's FAIL_ON values are the ones the pinned CDK
CLI accepts, offline targets never probe EC2 metadata while `deploy` keeps the normal credential chain, and a
deploy without a Docker daemon stops with a clear message before anything is synthesized or uploaded."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.infra.conftest import ROOT
from tools import audit_diff, exec_policy


def run(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def test_fail_on_offers_exactly_what_the_pinned_cli_accepts():
    help_text = run(str(ROOT / "node_modules/.bin/cdk"), "diff", "--help").stdout
    choices = re.search(r"--fail-on.*?\[choices: ([^\]]+)\]", help_text, re.S).group(1)
    assert set(audit_diff.FAIL_ON) == set(re.findall(r'"([\w-]+)"', choices))


def test_the_audit_runs_the_real_cli_with_fail_on_broadening():
    """`make diff ENV=dev FAIL_ON=broadening`: the CLI accepts the value and the synth equals the baseline."""
    proc = run("make", "--no-print-directory", "diff", "ENV=dev", "FAIL_ON=broadening", timeout=1200)
    assert "Invalid values" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_only_offline_targets_disable_the_ec2_metadata_credential_probe():
    dry = {t: run("make", "-n", "--no-print-directory", t, "ENV=dev").stdout for t in ("synth", "test", "diff")}
    for target, commands in dry.items():
        assert "AWS_EC2_METADATA_DISABLED=true" in commands, target
    deploy = run("make", "-n", "--no-print-directory", "deploy", "ENV=dev").stdout
    assert "cdk deploy" in deploy.replace("node_modules/.bin/", "") and "AWS_EC2_METADATA_DISABLED" not in deploy
    assert "AWS_EC2_METADATA_DISABLED" not in (ROOT / "Makefile").read_text().split("OFFLINE :=")[0]


def test_deploy_without_a_docker_daemon_stops_with_a_clear_message(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    (fake / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    proc = run("make", "--no-print-directory", "deploy-preflight", "ENV=dev", env=env)
    assert proc.returncode != 0
    assert "no Docker daemon is reachable" in proc.stderr and "start Docker" in proc.stderr


def test_the_committed_execution_policy_is_generated_from_the_templates(stages, assembly_dir):
    """docs/cfn-exec-policy.json cannot drift: it is what the current templates need (`make exec-policy`)."""
    committed = json.loads((ROOT / "docs/cfn-exec-policy.json").read_text())
    assert committed == exec_policy.policy(Path(assembly_dir))
    tooling = json.loads((ROOT / "docs/cfn-exec-policy-tooling.json").read_text())
    assert tooling == exec_policy.policy(Path(assembly_dir), tooling=True)
    assert {"codepipeline:*", "codebuild:*"} <= set(tooling["Statement"][0]["Action"])
    actions = set(committed["Statement"][0]["Action"])
    # Services the hand-written list missed: weak references read the producing stack; traces; the adapter copies (a
    # custom resource's function) and the approvals forwarded to the tooling account.
    assert {"cloudformation:DescribeStacks", "xray:*", "bedrock-agentcore:*", "sagemaker:*"} <= actions
    assert {"lambda:*", "events:*"} <= actions and "sqs:*" not in actions
    assert "events:*" in set(tooling["Statement"][0]["Action"])  # the approvals bus and its rule
    assert "*" not in actions and "docs/cfn-exec-policy.json" in (ROOT / "docs/delivery.md").read_text()


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("AWS::ApplicationAutoScaling::ScalableTarget", "application-autoscaling:*"),
        ("Custom::X", "lambda:InvokeFunction"),
    ],
)
def test_each_resource_type_maps_to_its_service_prefix(kind, expected):
    assert exec_policy.actions_for({"Resources": {"R": {"Type": kind}}}) == {expected}


def _fake_cdk(tmp_path: Path) -> Path:
    cdk = tmp_path / "cdk"
    cdk.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "argv"}\n')
    cdk.chmod(0o755)
    return cdk


def test_watch_hotswaps_the_development_agent_stack_alone(tmp_path):
    proc = run("make", "--no-print-directory", "watch", "ENV=dev", f"CDK={_fake_cdk(tmp_path)}")
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "argv").read_text().split()
    assert argv == ["watch", "--hotswap-fallback", "--exclusively", "Dev/Agent", "-c", "environments=dev"]


def test_watch_refuses_an_environment_outside_the_development_tier(tmp_path):
    proc = run("make", "--no-print-directory", "watch", "ENV=prod", f"CDK={_fake_cdk(tmp_path)}")
    assert proc.returncode != 0 and "development tier only (prod is production)" in proc.stderr
    assert not (tmp_path / "argv").exists()  # the CLI never started


def test_watch_reacts_to_the_agents_code_and_the_app_but_not_to_tests_docs_or_caches():
    """cdk.json's "watch" globs (the CLI's include/exclude): every file the agent package is built from counts."""
    from stacks.constructs.agent_package import AGENT_DIR
    from stacks.constructs.bundle_files import bundle_files

    watch = json.loads((ROOT / "cdk.json").read_text())["watch"]

    def watched(path: str) -> bool:
        def hit(patterns: list[str]) -> bool:
            return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removesuffix("/**")) for p in patterns)

        return hit(watch["include"]) and not hit(watch["exclude"])

    code = [f.relative_to(ROOT).as_posix() for f in bundle_files(AGENT_DIR)]
    assert code and all(watched(f) for f in code if f != "agent/README.md")
    assert all(watched(f) for f in ("app.py", "stacks/agent_stack.py", "config/dev.yaml", "constraints.txt"))
    for ignored in (
        "tests/agent/test_app.py",
        "docs/architecture.md",
        "agent/__pycache__/app.cpython-311.pyc",
        "bench/synth.py",
        "baselines/Dev/Dev-Agent.template.json",
        "agent/.mypy_cache/x.json",
    ):
        assert not watched(ignored), ignored


def test_setup_checks_for_the_deployed_runtimes_python_with_a_clear_message():
    """`make setup` runs `runtime-python`: Python 3.13 (the agent's and the Lambda's) must be here, as python3.13
    or $AGENT_PYTHON; another interpreter is refused naming what to install."""
    from stacks.constructs import agent_package

    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^setup:.*\bruntime-python\b", makefile, re.M)
    assert re.search(r"^RUNTIME_PYTHON := (\S+)", makefile, re.M).group(1) == agent_package.PYTHON_VERSION
    ok = run("make", "-s", "--no-print-directory", "runtime-python")
    assert ok.returncode == 0 and agent_package.runtime_python() in ok.stdout, ok.stderr
    wrong = run("make", "-s", "--no-print-directory", "runtime-python", env={**os.environ, "AGENT_PYTHON": "/bin/true"})
    assert wrong.returncode != 0
    assert "Python 3.13" in wrong.stderr and "set AGENT_PYTHON to its path" in wrong.stderr
