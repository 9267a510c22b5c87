"""The CloudFormation execution policy for `cdk bootstrap --cloudformation-execution-policies`, generated from the
resource types (and intrinsics) of the synthesized templates, so it cannot drift from what the stacks use.

    python -m tools.exec_policy cdk.out                # the policy for every environment's stacks (target accounts)
    python -m tools.exec_policy cdk.out --tooling      # the policy for the delivery pipeline's stack (tooling account)

CloudFormation creates every resource with this role: each service the templates declare gets its actions
(``<prefix>:*`` on ``*``, narrower than AdministratorAccess, wide enough for create, update, delete and rollback);
``Fn::GetStackOutput`` reads the producing stack (``cloudformation:DescribeStacks``), SSM-typed parameters (the
bootstrap version check) read SSM, and custom resources invoke their provider functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tools.assembly import stacks

# The IAM service prefix of a CloudFormation namespace where it is not the lower-cased namespace itself.
PREFIXES = {
    "ApplicationAutoScaling": "application-autoscaling",
    "BedrockAgentCore": "bedrock-agentcore",
    "CodeConnections": "codeconnections",
    "Logs": "logs",
}


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def actions_for(template: dict[str, Any]) -> set[str]:
    """The actions CloudFormation needs to manage one template's resources."""
    found: set[str] = set()
    for resource in template.get("Resources", {}).values():
        kind = resource["Type"]
        if kind.startswith("AWS::"):
            namespace = kind.split("::")[1]
            if kind != "AWS::CDK::Metadata":
                found.add(f"{PREFIXES.get(namespace, namespace.lower())}:*")
        elif kind.startswith("Custom::") or kind == "AWS::CloudFormation::CustomResource":
            found.add("lambda:InvokeFunction")  # the provider behind the service token
    if any(isinstance(v, dict) and "Fn::GetStackOutput" in v for v in _walk(template)):
        found.add("cloudformation:DescribeStacks")
    if any(str(p.get("Type", "")).startswith("AWS::SSM::Parameter") for p in template.get("Parameters", {}).values()):
        found.add("ssm:GetParameters")
    return found


def policy(outdir: Path, tooling: bool = False) -> dict[str, Any]:
    """One policy for every environment's stacks, or (``tooling``) for the top-level stacks: the delivery pipeline and
    its cross-region support stacks."""
    needed: set[str] = set()
    for stack in stacks(outdir):
        if bool(stack.stage) != tooling:
            needed |= actions_for(json.loads(stack.template.read_text()))
    needed = {a for a in needed if a.endswith(":*") or f"{a.split(':')[0]}:*" not in needed}
    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "ClinicalAgentStacks", "Effect": "Allow", "Action": sorted(needed), "Resource": "*"}],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--tooling", action="store_true", help="the delivery pipeline's stacks instead")
    args = parser.parse_args(argv)
    sys.stdout.write(json.dumps(policy(args.outdir, tooling=args.tooling), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
