"""The CDK CLI steps: ``cdk bootstrap`` with the delivery pipeline's trust, and ``cdk destroy`` of one stage."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from ops.errors import OpsError
from ops.ui import console
from stacks.settings import DeliverySettings, EnvironmentSettings

ROOT = Path(__file__).resolve().parent.parent
_POLICY = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}|aws):policy/[\w+=,.@/-]+$")


def cdk_binary() -> Path:
    """The project's pinned CDK CLI (``OPS_CDK`` points elsewhere, e.g. in tests)."""
    return Path(os.environ.get("OPS_CDK") or ROOT / "node_modules" / ".bin" / "cdk")


def run_cdk(args: list[str], *, dry_run: bool = False) -> None:
    """Print the command, then run it from the project root with the terminal attached; a failure raises."""
    console.print(f"$ {shlex.join(['cdk', *args])}")
    if dry_run:
        return
    binary = cdk_binary()
    if not binary.exists():
        raise OpsError(f"the CDK CLI is not installed ({binary}): run make setup")
    code = subprocess.call([str(binary), *args], cwd=ROOT)
    if code:
        raise OpsError(f"cdk {args[0]} failed (exit {code}); its output above says why", exit_code=code)


def bootstrap_args(
    settings: EnvironmentSettings, delivery: DeliverySettings, *, policies: list[str], trust: bool
) -> list[str]:
    """``cdk bootstrap`` for the environment's account and region. When the delivery pipeline promotes this
    environment from another (tooling) account, that account is trusted to deploy (``--trust``), which CDK
    only accepts together with explicit execution policies (docs/delivery.md, Bootstrap; the CLI's check:
    https://github.com/aws/aws-cdk/pull/10337)."""
    for p in policies:
        m = _POLICY.match(p)
        if not m:
            raise OpsError(f"--execution-policy {p!r} is not an IAM policy ARN (arn:aws:iam::ACCOUNT:policy/NAME)")
        if m[1] not in (settings.account, "aws"):
            raise OpsError(
                f"--execution-policy {p} belongs to account {m[1]}, not to environment '{settings.name}' "
                f"({settings.account})"
            )
    args = ["bootstrap", f"aws://{settings.account}/{settings.region}"]
    trusted = trust and settings.name in delivery.environments and delivery.account != settings.account
    if trusted:
        if not policies:
            raise OpsError(
                f"the delivery pipeline (account {delivery.account}, config/delivery.yaml) deploys '{settings.name}', "
                "so bootstrap trusts that account, and CDK then requires the execution policy CloudFormation "
                "gets: create a policy scoped to the stacks' services (docs/delivery.md, Bootstrap) and pass "
                "--execution-policy ARN (make bootstrap ENV=... POLICY=ARN); --no-trust bootstraps for direct "
                "deploys only"
            )
        args += ["--trust", delivery.account]
    for p in policies:
        args += ["--cloudformation-execution-policies", p]
    return args


def destroy_args(settings: EnvironmentSettings) -> list[str]:
    """``cdk destroy`` of every stack of the environment's stage (CDK deletes them in dependency order)."""
    return ["destroy", f"{settings.stage_id}/*", "-c", f"environments={settings.name}", "--force"]
