"""CDK Pipelines' asset-publishing roles, cut to their own projects.

CDK Pipelines gives each asset role (``Pipeline/Assets/FileRole``, ``DockerRole``) ``codebuild:StartBuild``,
``BatchGetBuilds`` and ``StopBuild`` on ``*``. Those actions accept a project ARN as resource (service authorization
reference: https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscodebuild.html), and the roles
serve only the asset projects that run as them (the pipeline starts builds with its own CodeBuild action role), so
the statement is rewritten to name those projects. The rewrite happens when the policy renders, after every grant has
been added; a CDK upgrade that no longer renders the statement fails synth here instead of passing silently.
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import IResolvable, IResolveContext, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam

BUILD_ACTIONS = ("codebuild:BatchGetBuilds", "codebuild:StartBuild", "codebuild:StopBuild")


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


@jsii.implements(IResolvable)
class _ScopedBuilds:
    """The policy document as CDK renders it, with the build actions on ``*`` moved onto ``projects``."""

    creation_stack: list[str] = []

    def __init__(self, role: iam.Role, document: iam.PolicyDocument, projects: list[str]) -> None:
        self.role, self.document, self.projects = role, document, projects

    def to_string(self) -> str:
        return f"<policy document of {self.role.node.path}>"

    def resolve(self, context: IResolveContext) -> Any:
        rendered = context.resolve(self.document)
        statements, moved = [], False
        for st in rendered["Statement"]:
            actions = _as_list(st["Action"])
            builds = [a for a in actions if a in BUILD_ACTIONS]
            if not builds or st.get("Resource") != "*":
                statements.append(st)
                continue
            moved = True
            if rest := [a for a in actions if a not in BUILD_ACTIONS]:
                statements.append({**st, "Action": rest if len(rest) > 1 else rest[0]})
            statements.append({**st, "Action": builds, "Resource": context.resolve(self.projects)})
        if not moved:
            raise RuntimeError(
                f"{self.role.node.path}: CDK Pipelines no longer grants {', '.join(BUILD_ACTIONS)} on '*' to this "
                "role; review stacks/constructs/asset_roles.py"
            )
        return {**rendered, "Statement": statements}


def scope_asset_build_grants(pipeline: pipelines.CodePipeline) -> None:
    """Call after ``build_pipeline()``: each asset role may start, read and stop only the projects that run as it."""
    assets = pipeline.node.find_child("Assets")
    projects = [c for c in assets.node.children if isinstance(c, codebuild.PipelineProject)]
    roles = [c for c in assets.node.children if isinstance(c, iam.Role)]
    if not roles:
        raise RuntimeError(f"{assets.node.path}: no asset-publishing role found")
    for role in roles:
        own = [p.project_arn for p in projects if p.role is not None and p.role.node.path == role.node.path]
        if not own:
            raise RuntimeError(f"{role.node.path}: no asset project runs as this role")
        policy = role.node.find_child("DefaultPolicy")
        if not isinstance(policy, iam.Policy) or not isinstance(policy.node.default_child, iam.CfnPolicy):
            raise RuntimeError(f"{role.node.path}: expected a DefaultPolicy with a CfnPolicy")
        policy.node.default_child.policy_document = _ScopedBuilds(role, policy.document, own)
