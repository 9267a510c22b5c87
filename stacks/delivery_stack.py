"""DeliveryStack: the CDK Pipeline in the tooling account that promotes the app dev → staging → approval → prod.

Source: a CodeConnections repository. Started by a push, or by an approval in the registry of record (the
environment that trains forwards it to this account's event bus: stacks/constructs/promotion.py).
ResolvePin: the highest approved version of the registry, written as the pin (``python -m ops pin``, through the
registry's reader role). Synth: ``make check``, ``make test`` (with the committed pin), then the resolved pin and
``make synth`` (cdk.out is the output). Each environment is the same ``ClinicalAgentStage`` a developer deploys
directly, in its own account and region, deployed through that account's CDK bootstrap roles
(``cdk bootstrap --trust <tooling account>``).
Before an approval-gated stage, an audit step prints ``cdk diff`` of the exact assembly against the live
stacks; after each stage, shell steps check the deployed components' health through the target account's
read-only lookup role. See docs/delivery.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import CfnOutput, DefaultStackSynthesizer, Duration, Environment, Stack, Tags, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks import compliance
from stacks.constructs.asset_roles import scope_asset_build_grants
from stacks.constructs.log_group import allow_log_groups, encrypted_log_group
from stacks.constructs.promotion import ApprovalTrigger, pin_reader_role_arn
from stacks.constructs.removal import removal_policy
from stacks.constructs.secure_bucket import access_log_bucket, secure_bucket
from stacks.settings import LOCK_FILE, DeliverySettings, EnvironmentSettings
from stacks.stage import ClinicalAgentStage

# The CDK CLI the pipeline runs (self-mutation, asset publishing, audit diff): the one package.json pins.
PACKAGE_JSON = Path(__file__).resolve().parent.parent / "package.json"
CDK_CLI_VERSION = json.loads(PACKAGE_JSON.read_text())["devDependencies"]["aws-cdk"]

# The resolved pin: ResolvePin's output, an additional input of Synth under this directory.
RESOLVED_PIN_DIR = "resolved-pin"

# CodeBuild standard 7.0 (Ubuntu 22.04) provides both runtimes the Makefile needs.
RUNTIMES = codebuild.BuildSpec.from_object(
    {"phases": {"install": {"runtime-versions": {"python": "3.11", "nodejs": "20"}}}}
)


@dataclass(frozen=True)
class HealthCheck:
    """A post-deploy check: a shell test on one output of one of the stage's stacks."""

    component: str  # the ClinicalAgentStage attribute holding the stack
    output: str  # the id of the stack's CfnOutput
    variable: str  # the environment variable the command reads it from
    command: str


# Checks whose stack or output a stage lacks are left out; the Data checks apply to every stage.
HEALTH_CHECKS = (
    HealthCheck(
        "data",
        "KeyArn",
        "KEY_ARN",
        's=$(aws kms describe-key --key-id "$KEY_ARN" --query KeyMetadata.KeyState --output text)'
        ' && echo "data key: $s" && test "$s" = Enabled',
    ),
    HealthCheck(
        "data",
        "DatasetsBucketName",
        "DATASETS_BUCKET",
        'aws s3api head-bucket --bucket "$DATASETS_BUCKET" && echo "datasets bucket: reachable"',
    ),
    HealthCheck(
        "inference",
        "EndpointName",
        "ENDPOINT_NAME",
        's=$(aws sagemaker describe-endpoint --endpoint-name "$ENDPOINT_NAME"'
        " --query EndpointStatus --output text)"
        ' && echo "endpoint $ENDPOINT_NAME: $s" && test "$s" = InService',
    ),
    HealthCheck(
        "agent",
        "RuntimeArn",
        "AGENT_RUNTIME_ARN",
        "s=$(aws bedrock-agentcore-control get-agent-runtime"
        ' --agent-runtime-id "${AGENT_RUNTIME_ARN##*/}" --query status --output text)'
        ' && echo "agent runtime: $s" && test "$s" = READY',
    ),
)


def bootstrap_role_arn(kind: str, settings: EnvironmentSettings, partition: str = "aws") -> str:
    """The ARN of a CDK bootstrap role (``deploy``, ``lookup``, ...) of the environment's account and region."""
    account, qualifier = settings.account, DefaultStackSynthesizer.DEFAULT_QUALIFIER
    return f"arn:{partition}:iam::{account}:role/cdk-{qualifier}-{kind}-role-{account}-{settings.region}"


def _output(stage: ClinicalAgentStage, check: HealthCheck) -> CfnOutput | None:
    """The check's output in this stage, or None where the stage has no such stack (yet) or output."""
    stack = getattr(stage, check.component, None)
    output = stack.node.try_find_child(check.output) if stack is not None else None
    return output if isinstance(output, CfnOutput) else None


class DeliveryStack(Stack):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: DeliverySettings,
        environments: list[EnvironmentSettings],
        registry: EnvironmentSettings,
        **kwargs,
    ) -> None:
        super().__init__(scope, id, env=Environment(account=settings.account, region=settings.region), **kwargs)
        Tags.of(self).add("project", "clinical-agent")
        Tags.of(self).add("environment", "tooling")

        # Our own key and artifact bucket instead of the default that cross_account_keys=True creates: the same
        # KMS-encrypted bucket whose key trusts the target accounts' deploy roles, plus versioning, access logging
        # and retention (CDK accepts a bucket with a key for cross-account actions).
        self.key = kms.Key(
            self,
            "Key",
            alias="alias/clinical-agent/delivery",
            description="Clinical agent delivery pipeline: artifacts and build logs",
            enable_key_rotation=True,
            removal_policy=removal_policy(destroy=False),
        )
        allow_log_groups(self.key)
        access_logs = access_log_bucket(
            self,
            "AccessLogs",
            retention_days=settings.log_retention_days,
            noncurrent_version_days=settings.artifact_noncurrent_version_days,
            destroy=False,
        )
        self.artifact_bucket = secure_bucket(
            self,
            "Artifacts",
            key=self.key,
            access_logs=access_logs,
            destroy=False,
            noncurrent_version_days=settings.artifact_noncurrent_version_days,
        )
        build_logs = encrypted_log_group(
            self, "BuildLogs", key=self.key, retention_days=settings.log_retention_days, destroy=False
        )

        source = pipelines.CodePipelineSource.connection(
            settings.repository, settings.branch, connection_arn=settings.connection_arn
        )
        resolve = self._resolve_pin(source, registry)
        synth = pipelines.CodeBuildStep(
            "Synth",
            input=source,
            additional_inputs={RESOLVED_PIN_DIR: resolve},
            commands=[
                "make check",
                "make test",  # with the committed pin: the reviewed baselines are synthesized from it
                f"cp {RESOLVED_PIN_DIR}/{LOCK_FILE} config/{LOCK_FILE}",
                "make synth",  # with the resolved pin: what the stages deploy and the audit diff shows
            ],  # the Makefile installs everything; any failure stops here
            primary_output_directory="cdk.out",
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name=settings.pipeline_name,
            synth=synth,
            artifact_bucket=self.artifact_bucket,
            # Still needed: an environment in another region gets a replication bucket, keyed (and rotated) by this.
            cross_account_keys=True,
            enable_key_rotation=True,
            cli_version=CDK_CLI_VERSION,
            publish_assets_in_parallel=False,
            # The training image is built FROM a PyTorch DLC in AWS's ECR account: asset publishing logs in to it.
            asset_publishing_code_build_defaults=self._base_image_login(environments),
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(build_image=codebuild.LinuxBuildImage.STANDARD_7_0),
                partial_build_spec=RUNTIMES,
                logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=build_logs)),
            ),
            synth_code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(compute_type=codebuild.ComputeType.LARGE),
                timeout=Duration.hours(2),  # make test trains tiny models on CPU
            ),
        )

        self.stages: dict[str, ClinicalAgentStage] = {}
        for env in environments:
            stage = ClinicalAgentStage(self, env.stage_id, settings=env, tooling=settings if env.trains else None)
            self.stages[env.name] = stage
            self.pipeline.add_stage(
                stage,
                pre=self._approval(stage, synth) if env.name in settings.approval_before else None,
                post=[self._health(stage)] if settings.smoke_checks else None,
            )
        self.pipeline.build_pipeline()
        scope_asset_build_grants(self.pipeline)  # codebuild:* on '*' -> the asset projects
        # An approval in the registry of record starts the pipeline (forwarded by the registry account).
        self.approval_trigger = ApprovalTrigger(
            self,
            "ApprovalTrigger",
            bus_name=settings.approval_bus_name,
            registry_account=registry.account,
            group=registry.registry.model_package_group,
            pipeline=self.pipeline.pipeline,
        )
        # CDK grants codestar-connections:UseConnection only; an arn:...:codeconnections: connection is authorized
        # under its own service prefix (https://docs.aws.amazon.com/dtconsole/latest/userguide/rename.html).
        source_actions = self.pipeline.pipeline.node.find_child("Source").node.children
        roles = [c for action in source_actions for c in action.node.children if isinstance(c, iam.Role)]
        if len(roles) != 1:
            raise TypeError(f"delivery pipeline: expected one source action role, found {len(roles)}")
        role = roles[0]
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["codeconnections:UseConnection"], resources=[settings.connection_arn])
        )
        compliance.acknowledge(self.pipeline, *compliance.DELIVERY, *compliance.delivery_pipeline(self.pipeline))
        # Environments in another region: CodePipeline's support stack there holds a replication bucket.
        for support in self.pipeline.pipeline.cross_region_support.values():
            compliance.acknowledge(support.replication_bucket, *compliance.DELIVERY_REPLICATION_BUCKET)

    @staticmethod
    def _base_image_login(environments: list[EnvironmentSettings]) -> pipelines.CodeBuildOptions:
        """Docker login to the registries of the environments' training base images, and pull rights on them."""
        registries, repositories = set(), set()
        for env in environments:
            if env.training is None:
                continue  # only the environment that trains builds the training image
            registry, path = env.training.base_image.split("/", 1)
            account, region = registry.split(".")[0], registry.split(".")[3]
            partition = "aws-cn" if registry.endswith(".cn") else "aws"  # literals: the buildspec takes no tokens
            registries.add((region, registry))
            repositories.add(f"arn:{partition}:ecr:{region}:{account}:repository/{path.split('@')[0].split(':')[0]}")
        return pipelines.CodeBuildOptions(
            partial_build_spec=codebuild.BuildSpec.from_object(
                {
                    "phases": {
                        "pre_build": {
                            # Only the image projects run a Docker daemon (the same defaults go to the file projects).
                            "commands": [
                                f"if docker info >/dev/null 2>&1; then aws ecr get-login-password --region {region} | "
                                f"docker login --username AWS --password-stdin {registry}; fi"
                                for region, registry in sorted(registries)
                            ]
                        }
                    }
                }
            ),
            role_policy=[
                iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
                iam.PolicyStatement(
                    actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                    resources=sorted(repositories),
                ),
            ],
        )

    def _resolve_pin(
        self, source: pipelines.IFileSetProducer, registry: EnvironmentSettings
    ) -> pipelines.CodeBuildStep:
        """The highest approved version of the registry of record, written as the pin (docs/promotion.md): run as the
        registry account's reader role, which may read the group's versions and their adapter archives only."""
        role = pin_reader_role_arn(self.partition, registry.account, registry.registry.model_package_group)
        return pipelines.CodeBuildStep(
            "ResolvePin",
            input=source,
            commands=[
                f"aws configure set profile.registry.role_arn {role}",
                "aws configure set profile.registry.credential_source EcsContainer",
                f"aws configure set profile.registry.region {registry.region}",
                "pip install --quiet -c constraints.txt -r requirements.txt typer rich",  # settings and the ops CLI
                f"mkdir -p {RESOLVED_PIN_DIR}",
                f"AWS_PROFILE=registry python -m ops pin --env {registry.name} --output {RESOLVED_PIN_DIR}/{LOCK_FILE}",
            ],
            primary_output_directory=RESOLVED_PIN_DIR,
            role_policy_statements=[iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[role])],
        )

    def _assume(self, env: EnvironmentSettings) -> iam.PolicyStatement:
        lookup = bootstrap_role_arn("lookup", env, self.partition)
        return iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[lookup])

    def _approval(self, stage: ClinicalAgentStage, synth: pipelines.IFileSetProducer) -> list[pipelines.Step]:
        """An audit diff of the exact assembly against the live stacks, then the manual approval that reads it."""
        env = stage.settings
        diff = pipelines.CodeBuildStep(
            "AuditDiff",
            input=synth,  # cdk.out
            commands=[f'npx --yes aws-cdk@{CDK_CLI_VERSION} diff --app . --method template "{stage.node.path}/*"'],
            role_policy_statements=[self._assume(env)],  # the CLI reads the live templates through the lookup role
        )
        approve = pipelines.ManualApprovalStep(
            "Approve",
            comment=f"Promote to {env.name} ({env.account}, {env.region})? Read the AuditDiff action's log first: "
            f"it is `cdk diff` of this exact assembly against the live {env.name} stacks, the adapter components "
            "included (their ArtifactUrl and lineage tags); the ResolvePin action's log says which registry version "
            "they serve.",
        )
        approve.add_step_dependency(diff)
        return [diff, approve]

    def _health(self, stage: ClinicalAgentStage) -> pipelines.Step:
        """Post-deploy checks, run in the tooling account as the target's read-only CDK lookup role."""
        env = stage.settings
        checks = [(c, out) for c in HEALTH_CHECKS if (out := _output(stage, c)) is not None]
        return pipelines.CodeBuildStep(
            "HealthCheck",
            env_from_cfn_outputs={c.variable: out for c, out in checks},
            commands=[
                f"aws configure set profile.target.role_arn {bootstrap_role_arn('lookup', env, self.partition)}",
                "aws configure set profile.target.credential_source EcsContainer",
                f"aws configure set profile.target.region {env.region}",
                "export AWS_PROFILE=target",
                *(c.command for c, _ in checks),
            ],
            role_policy_statements=[self._assume(env)],
        )
