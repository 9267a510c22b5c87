"""Compliance gates: cdk-nag AwsSolutions + HIPAA Security + DeployReadiness, and every acknowledgment with its
reason.

cdk-nag 3 runs as a CDK policy-validation plugin: any unacknowledged finding fails synth.
Acknowledgments live here, in one place, as named groups; stacks apply a group to the
construct it is about with :func:`acknowledge`, so a reason is never written twice.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from dataclasses import dataclass

import jsii
from aws_cdk import Acknowledgment, App, IPolicyValidationContext, PolicyValidationPluginReport, Stage, Validations
from aws_cdk.aws_iam import IGrantable
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NagPack
from constructs import Construct, IConstruct, IValidation


@dataclass(frozen=True)
class Ack:
    rule: str
    reason: str


def register(app: App) -> None:
    """Run the packs over every stack of the app (AwsSolutions, HIPAA Security and the services' own rules,
    stacks/readiness.py); findings fail synth. The delivery pipeline's copy of a stage the app also synthesizes
    is checked through that stage: it is the same ``ClinicalAgentStage`` (tests/infra/test_gates.py asserts
    their templates are equal but for path-derived names), and checking it again doubled the packs' time."""
    from stacks.readiness import DeployReadinessChecks

    Validations.of(app).add_plugins(
        *(_once_per_stage(pack)(app) for pack in (AwsSolutionsChecks, HIPAASecurityChecks, DeployReadinessChecks))
    )


def validated_scopes(app: App) -> Iterator[IConstruct]:
    """The app's top-level constructs, with a stack that holds stages (the delivery pipeline) replaced by its
    children less its copies of stages the app has."""
    stages = {c.node.id for c in app.node.children if Stage.is_stage(c)}
    for child in app.node.children:
        nested = [] if Stage.is_stage(child) else [c for c in child.node.children if Stage.is_stage(c)]
        if not nested:
            yield child
            continue
        yield from (c for c in child.node.children if not (Stage.is_stage(c) and c.node.id in stages))


def _once_per_stage(pack: type[NagPack]) -> type[NagPack]:
    class Pack(pack):  # type: ignore[valid-type,misc]
        def __init__(self, app: App) -> None:
            super().__init__(app)
            self._app = app

        def validate(self, context: IPolicyValidationContext) -> PolicyValidationPluginReport:
            violations = [v for scope in validated_scopes(self._app) for v in self.validate_scope(scope).violations]
            return PolicyValidationPluginReport(success=not violations, violations=violations)

    Pack.__name__ = Pack.__qualname__ = pack.__name__
    return Pack


def acknowledge(construct: IConstruct, *acks: Ack) -> None:
    for ack in acks:
        Validations.of(construct).acknowledge(Acknowledgment(id=ack.rule, reason=ack.reason))


# --- every environment ------------------------------------------------------------------------

STAGE_WIDE = (
    Ack(
        "HIPAA.Security-IAMNoInlinePolicy",
        "Each role's permissions are CDK grants scoped to this environment's resources, kept inline so they share the "
        "role's lifecycle and cannot be attached elsewhere (AWS guidance for a strict one-to-one policy).",
    ),
)

# --- data -------------------------------------------------------------------------------------

ACCESS_LOG_BUCKET = (
    Ack("AwsSolutions-S1", "This is the server access log bucket; logging it into itself would loop."),
    Ack(
        "HIPAA.Security-S3BucketLoggingEnabled",
        "This is the server access log bucket; logging it into itself would loop.",
    ),
    Ack(
        "HIPAA.Security-S3DefaultEncryptionKMS",
        "S3 server access log delivery supports only SSE-S3 on the target bucket; it holds request metadata, not PHI.",
    ),
    Ack(
        "HIPAA.Security-S3BucketReplicationEnabled",
        "Access logs are an audit copy already; cross-region replication of logs is not required by our retention "
        "policy.",
    ),
)

DATA_BUCKET = (
    Ack(
        "HIPAA.Security-S3BucketReplicationEnabled",
        "Versioning plus KMS and retention protect the data; cross-region replication is a per-deployment DR choice, "
        "not enabled for synthetic training data and reports.",
    ),
)

AUTO_DELETE_PROVIDER = (
    Ack(
        "AwsSolutions-IAM4",
        "CDK-managed provider for auto-deleting dev buckets; uses the AWS-managed basic execution role.",
    ),
    Ack("AwsSolutions-L1", "CDK-managed provider runtime is chosen by aws-cdk-lib and upgraded with it."),
    Ack("HIPAA.Security-LambdaConcurrency", "CDK-managed provider runs only on stack deletion in dev."),
    Ack(
        "HIPAA.Security-LambdaDLQ",
        "CDK-managed provider is invoked synchronously by CloudFormation, which reports failures.",
    ),
    Ack(
        "HIPAA.Security-LambdaInsideVPC",
        "CDK-managed provider only calls the S3 API to empty a dev bucket on deletion.",
    ),
)

# --- network ----------------------------------------------------------------------------------

RESTRICT_DEFAULT_SG_PROVIDER = (
    Ack(
        "AwsSolutions-IAM4",
        "CDK-managed provider that strips the default security group's rules; AWS-managed basic execution role.",
    ),
    Ack("AwsSolutions-L1", "CDK-managed provider runtime is chosen by aws-cdk-lib and upgraded with it."),
    Ack("HIPAA.Security-LambdaConcurrency", "CDK-managed provider runs only on stack create/update."),
    Ack(
        "HIPAA.Security-LambdaDLQ",
        "CDK-managed provider is invoked synchronously by CloudFormation, which reports failures.",
    ),
    Ack(
        "HIPAA.Security-LambdaInsideVPC",
        "CDK-managed provider calls only the EC2 API to close the default security group.",
    ),
)

# --- mlops ------------------------------------------------------------------------------------

# IAM5 findings name each wildcard with its resource flattened as cdk-nag does, cross-stack references
# included (known only once references are resolved). acknowledge_wildcards() matches them then, against
# glob patterns written next to the grants ("*" = any text, "[*]" = a literal "*"): a wildcard that no
# pattern expects still fails synth.


def acknowledge_wildcards(construct: IConstruct, reason: str, *patterns: str, resources: tuple[str, ...] = ()) -> None:
    """Acknowledge AwsSolutions-IAM5 findings of the IAM policies under ``construct`` that match ``patterns``
    (globs over finding ids, e.g. ``Resource::*/mlflow/[*]``) or name exactly one of ``resources`` (strings that
    may hold tokens). Cross-stack references render only once synthesis resolves them, so the findings are
    computed then: a construct validation runs after that and before the compliance packs."""
    construct.node.add_validation(_WildcardAcks(construct, reason, patterns, resources))


def acknowledge_grant(grantable: IGrantable, reason: str, *patterns: str, resources: tuple[str, ...] = ()) -> None:
    """:func:`acknowledge_wildcards` on the role a grant went to (the grantee's principal), called by the helper that
    makes the grant, beside it. A principal that is no construct (an account) has no policy here to acknowledge."""
    principal = grantable.grant_principal
    if isinstance(principal, Construct):
        acknowledge_wildcards(principal, reason, *patterns, resources=resources)


def iam5_findings(policy_document: dict) -> list[str]:
    """cdk-nag's IAM5 findings of a resolved policy document: 'Action::<a>' and 'Resource::<flattened>'."""
    found: dict[str, None] = {}
    for st in policy_document.get("Statement", []):
        if st.get("Effect") != "Allow":
            continue
        for action in _as_list(st.get("Action")):
            if "*" in action:
                found[f"Action::{action}"] = None
        for resource in map(_flatten, _as_list(st.get("Resource"))):
            if "*" in resource:
                found[f"Resource::{resource}"] = None
    return list(found)


def _as_list(v) -> list:
    return v if isinstance(v, list) else [] if v is None else [v]


def _flatten(node) -> str:
    """cdk-nag's flattenCfnReference."""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict) and "Fn::Join" in node:
        delimiter, items = node["Fn::Join"]
        return delimiter.join(_flatten(i) for i in items)
    if isinstance(node, dict) and "Fn::Sub" in node:
        return _flatten(node["Fn::Sub"])
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        resource, attribute = node["Fn::GetAtt"]
        return f"<{_flatten(resource)}.{_flatten(attribute)}>"
    if isinstance(node, dict) and "Fn::ImportValue" in node:
        return _flatten(node["Fn::ImportValue"])
    if isinstance(node, dict) and "Ref" in node:
        return f"<{_flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


@jsii.implements(IValidation)
class _WildcardAcks:
    def __init__(self, scope: IConstruct, reason: str, patterns: tuple[str, ...], resources: tuple[str, ...]) -> None:
        self.scope, self.reason, self.patterns, self.resources = scope, reason, patterns, resources

    def validate(self) -> list[str]:  # runs after references are resolved, before the packs
        from aws_cdk import Stack
        from aws_cdk import aws_iam as iam

        stack = Stack.of(self.scope)
        exact = {f"Resource::{_flatten(stack.resolve(r))}" for r in self.resources}
        for node in self.scope.node.find_all():
            if isinstance(node, iam.CfnPolicy):
                documents = [node.policy_document]
            elif isinstance(node, iam.CfnRole):
                documents = [p.policy_document for p in Stack.of(node).resolve(node.policies) or []]
            else:
                continue
            for document in documents:
                for finding in iam5_findings(Stack.of(node).resolve(document)):
                    if finding in exact or any(fnmatch.fnmatchcase(finding, p) for p in self.patterns):
                        acknowledge(node, Ack(f"AwsSolutions-IAM5[{finding}]", self.reason))
        return []


# Acknowledged by the grant helpers that make them (stacks/constructs/prefix_grants.py, ModelRegistry,
# NetworkStack.grant_network_interfaces), on whichever role receives the grant.
PREFIX_OBJECTS = (
    "Objects under one key prefix of one bucket (grant_prefix): their keys are named at run time; listing is "
    "conditioned on that prefix and the key is used through S3 only. The MLflow client writes artifacts straight to "
    "its artifact store, hence the MLflow artifact prefix for every role that logs to MLflow."
)

GROUP_VERSIONS = (
    "The versions of this environment's one model package group (model-package/<group>/<version>): created at run "
    "time by the pipeline's register step."
)

NETWORK_INTERFACES = (
    "A SageMaker workload's network interfaces (network-interface/*, named when created) are limited to the "
    "environment's VPC and its subnets by ec2:Vpc and ec2:Subnet conditions; ec2:Describe* have no resource-level "
    "permissions."
)

PIPELINE_ROLE = (
    "Wildcards only where resources are named at run time or IAM has nothing narrower: processing-job/pipelines-* "
    "and training-job/pipelines-* (SageMaker Pipelines names each job 'pipelines-<execution>-<step>-...'); the "
    "streams of the SageMaker job log groups (':*'); ecr:GetAuthorizationToken and cloudwatch:PutMetricData "
    "(namespace condition /aws/sagemaker/*) have no resource-level permissions."
)

PIN_READER_ROLE = (
    "The delivery pipeline's registry reader: sagemaker:ListModelPackages, a list action with no resource-level "
    "permissions; the adapter archives the pipeline's FineTune step writes under its own output prefix (read only)."
)

# --- inference --------------------------------------------------------------------------------

ADAPTER_COPY_FUNCTION = (
    Ack(
        "HIPAA.Security-LambdaConcurrency",
        "Invoked only by CloudFormation, once per pinned adapter and deployment of this stack; reserving concurrency "
        "would take it from the account's pool, and a new account's quota of 10 leaves none to reserve.",
    ),
    Ack(
        "HIPAA.Security-LambdaDLQ",
        "A CloudFormation custom resource: CloudFormation invokes it and waits for its answer, and the function always "
        "answers (FAILED with the reason on any error), which fails the deployment where the operator looks; there is "
        "no event to redeliver.",
    ),
    Ack(
        "AwsSolutions-L1",
        "python3.13, not the newest python3.14: the handler's tests run on the Python it is deployed on "
        "(tests/lambda/test_on_lambda_python.py) and 3.13 is the newest this project's machines and CI have. Lambda "
        "supports it until it blocks creates on 2029-07-31; the readiness rule LambdaRuntimeAccepted refuses it then.",
    ),
)

# Only where settings.network.enabled is false (dev): there is no VPC to attach the function to.
ADAPTER_COPY_NO_VPC = (
    Ack(
        "HIPAA.Security-LambdaInsideVPC",
        "This environment has no VPC (settings.network.enabled is false). The function handles no patient data: it "
        "copies one model archive between S3 buckets. Environments with the network on run it in their private "
        "isolated subnets.",
    ),
)

ADAPTER_COPY_ROLE = "Lambda's network-interface actions in the VPC have no resource-level permissions."

ENDPOINT_ROLE_WILDCARDS = (
    "Wildcards only where IAM offers nothing narrower: objects under each model's weight prefix and this "
    "environment's verified copies of the pinned adapter archives (adapters/<sha256>.tar.gz); "
    "ecr:GetAuthorizationToken and cloudwatch:PutMetricData (limited by a namespace condition) have no "
    "resource-level permissions."
)

ENDPOINT_CONFIG = (
    Ack(
        "HIPAA.Security-SageMakerEndpointConfigurationKMSKeyConfigured",
        "Every GPU instance type the endpoint may use (settings.ACCELERATORS) has local NVMe instance storage, which "
        "the instance encrypts in hardware; SageMaker refuses KmsKeyId for such instance types. Weights and adapters "
        "stay KMS-encrypted at rest in S3.",
    ),
)


# --- agent ------------------------------------------------------------------------------------

PATIENT_TABLE = (
    Ack(
        "HIPAA.Security-DynamoDBInBackupPlan",
        "Point-in-time recovery is on (continuous backups, restore to any second of the last 35 days), the table is "
        "retained and deletion-protected outside dev; longer-term copies are an account-level AWS Backup policy "
        "decision, not a per-stack plan.",
    ),
)

AGENT_SEED_PROVIDER = (
    Ack(
        "HIPAA.Security-LambdaConcurrency",
        "CDK's AwsCustomResource provider runs only while CloudFormation deploys dev, once per seed record.",
    ),
    Ack(
        "HIPAA.Security-LambdaDLQ",
        "CDK's AwsCustomResource provider is invoked synchronously by CloudFormation, which fails the deployment on "
        "error.",
    ),
)
AGENT_SEED_PROVIDER_NO_VPC = (
    Ack(
        "HIPAA.Security-LambdaInsideVPC",
        "The environment has no VPC (dev); CDK's AwsCustomResource provider only calls DynamoDB PutItem with "
        "synthetic records.",
    ),
)

_AGENTCORE_L2 = "the AgentCore Runtime L2's standard grant for every runtime"


def agent_runtime_role(stack) -> tuple[Ack, ...]:
    """The runtime role's wildcard findings, each a grant with nothing narrower (account and region resolved)."""
    account, region, partition = (stack.resolve(v) for v in (stack.account, stack.region, stack.partition))
    logs = f"arn:{partition}:logs:{region}:{account}:log-group:"
    assets = f"arn:{partition}:s3:::cdk-hnb659fds-assets-{account}-{region}"
    return (
        Ack(
            f"AwsSolutions-IAM5[Resource::{logs}/aws/bedrock-agentcore/runtimes/*]",
            f"Runtime log groups are named after the runtime id, known only after creation: {_AGENTCORE_L2} "
            "(CreateLogGroup/DescribeLogStreams under the AgentCore prefix only).",
        ),
        Ack(
            f"AwsSolutions-IAM5[Resource::{logs}/aws/bedrock-agentcore/runtimes/*:log-stream:*]",
            f"Log streams of the runtime's own log groups (see above): {_AGENTCORE_L2}.",
        ),
        Ack(
            f"AwsSolutions-IAM5[Resource::{logs}*]",
            "logs:DescribeLogGroups is a list action that IAM scopes only to the account's log groups.",
        ),
        Ack(
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords/GetSampling* have no resource-level permissions; "
            "cloudwatch:PutMetricData is limited to the bedrock-agentcore namespace by condition.",
        ),
        Ack(
            f"AwsSolutions-IAM5[Resource::arn:{partition}:bedrock-agentcore:{region}:{account}:"
            "workload-identity-directory/default/workload-identity/*]",
            f"Workload access tokens of this account's default identity directory: {_AGENTCORE_L2}.",
        ),
        *(
            Ack(
                f"AwsSolutions-IAM5[Action::{action}]",
                "Read of the code package the runtime starts from: CDK's asset grant on the bootstrap assets bucket "
                "(read-only; the package key is a content hash that changes with every release).",
            )
            for action in ("s3:GetBucket*", "s3:GetObject*", "s3:List*")
        ),
        Ack(
            f"AwsSolutions-IAM5[Resource::{assets}/*]",
            "Read of the code package in the CDK bootstrap assets bucket; its key is a content hash "
            "(see s3:GetObject*).",
        ),
    )


AGENT_REPORTS_PREFIX = (
    "The agent writes one object per report under reports/<patient id>/<timestamp>.md: PutObject only, on that "
    "prefix of the reports bucket only."
)


# --- delivery ---------------------------------------------------------------------------------

_ARTIFACTS = (
    "CDK Pipelines' grant on this pipeline's own artifact bucket and its KMS key only: these wildcards are "
    "object keys and action families within one bucket and one key."
)
_PROJECT = (
    "CodeBuild's own grant for the project's report groups and default log group, both named after the project "
    "(builds log to the pipeline's KMS-encrypted BuildLogs group)."
)

# Applied to the pipeline construct (stacks/delivery_stack.py); the stages it deploys are checked like direct deploys.
DELIVERY = (
    Ack(
        "HIPAA.Security-IAMNoInlinePolicy",
        "CDK Pipelines gives each action and CodeBuild project its own role with a generated policy scoped to this "
        "pipeline's bucket, key, log group and the target accounts' bootstrap roles; kept inline, one-to-one with its "
        "role.",
    ),
    Ack(
        "HIPAA.Security-CodeBuildProjectSourceRepoUrl",
        "The projects' source is CODEPIPELINE (the pipeline's artifacts), not a repository URL; CodePipeline reads the "
        "repository through a CodeConnections connection (an OAuth app installation), so no credentials are in any "
        "URL.",
    ),
    *(
        Ack(f"AwsSolutions-IAM5[Action::{action}]", _ARTIFACTS)
        for action in (
            "s3:Abort*",
            "s3:DeleteObject*",
            "s3:GetBucket*",
            "s3:GetObject*",
            "s3:List*",
            "kms:GenerateDataKey*",
            "kms:ReEncrypt*",
        )
    ),
    Ack(
        "AwsSolutions-IAM5[Resource::*]",
        "CDK Pipelines statements with no narrower resource: self-mutation's cloudformation:DescribeStacks and "
        "s3:ListBucket (read-only, how the CDK CLI finds its stacks and bootstrap bucket) and the asset roles' "
        "ecr:GetAuthorizationToken (no resource-level permissions). The asset roles' CodeBuild actions are cut to "
        "their own projects (stacks/constructs/asset_roles.py).",
    ),
)


_REPLICATION = (
    "CodePipeline's replication bucket for deploy actions in another region (support stack created by CDK): "
    "it holds transient copies of this pipeline's artifacts, encrypted with a rotated KMS key that trusts "
    "only the target deploy roles, private and TLS-only; the artifact bucket in the pipeline's region is the "
    "access-logged, versioned copy."
)
DELIVERY_REPLICATION_BUCKET = tuple(
    Ack(rule, _REPLICATION)
    for rule in (
        "AwsSolutions-S1",
        "HIPAA.Security-S3BucketLoggingEnabled",
        "HIPAA.Security-S3BucketVersioningEnabled",
        "HIPAA.Security-S3BucketReplicationEnabled",
    )
) + (
    Ack(
        "DeployReadiness-RetainExceptOnCreate",
        "CDK's cross-region support stack creates this bucket with Retain; its name is generated, so a failed first "
        "create leaves nothing that blocks the retry (only an empty bucket to remove).",
    ),
)


def delivery_pipeline(pipeline) -> tuple[Ack, ...]:
    """The findings of CDK Pipelines' generated grants that name resources of this pipeline (logical ids, account)."""
    from aws_cdk import Stack
    from aws_cdk import aws_codebuild as codebuild

    stack = Stack.of(pipeline)
    account, region, partition = (
        stack.resolve(stack.account),
        stack.resolve(stack.region),
        stack.resolve(stack.partition),
    )
    bucket = stack.get_logical_id(pipeline.pipeline.artifact_bucket.node.default_child)
    acks = [
        Ack(f"AwsSolutions-IAM5[Resource::<{stack.resolve(bucket)}.Arn>/*]", _ARTIFACTS),
        Ack(
            f"AwsSolutions-IAM5[Resource::arn:*:iam::{account}:role/*]",
            "Self-mutation may assume only the tooling account's CDK bootstrap roles: the statement is conditioned on "
            "the tag aws-cdk:bootstrap-role (deploy, file-publishing, image-publishing).",
        ),
        Ack(
            f"AwsSolutions-IAM5[Resource::arn:{partition}:codebuild:{region}:{account}:report-group/*]",
            "The shared asset-publishing role serves one project per asset kind; " + _PROJECT,
        ),
        Ack(
            f"AwsSolutions-IAM5[Resource::arn:{partition}:logs:{region}:{account}:log-group:/aws/codebuild/*]",
            "The shared asset-publishing role serves one project per asset kind; " + _PROJECT,
        ),
    ]
    for support in pipeline.pipeline.cross_region_support.values():
        name = stack.resolve(support.replication_bucket.bucket_name)
        acks.append(Ack(f"AwsSolutions-IAM5[Resource::arn:{partition}:s3:::{name}/*]", _REPLICATION))
    for project in (c for c in pipeline.node.find_all() if isinstance(c, codebuild.CfnProject)):
        id = stack.resolve(stack.get_logical_id(project))
        acks += [
            Ack(
                f"AwsSolutions-IAM5[Resource::arn:{partition}:codebuild:{region}:{account}:report-group/<{id}>-*]",
                _PROJECT,
            ),
            Ack(
                f"AwsSolutions-IAM5[Resource::arn:{partition}:logs:{region}:{account}:log-group:/aws/codebuild/<{id}>:*]",
                _PROJECT,
            ),
        ]
    return tuple(acks)


# --- least privilege: every wildcard in every policy, reviewed -----------------------------------------------------

# Every Allow statement with a "*" in an action or a resource, in every policy of every template (identity policies,
# bucket, key, queue, topic, registry and X-Ray resource policies), must be explained by an entry below
# (tests/infra/test_least_privilege.py). A statement's wildcards are named like cdk-nag's IAM5 findings:
# ``Action::<action>``, ``Resource::<resource>`` (flattened), and ``Resource::* for <action>`` for an action on every
# resource (in a key policy "*" is the key itself, so it is not one). Patterns are globs ("[*]" is a literal "*");
# ``conditions`` are keys a statement must carry for the entry to explain it. An entry that explains nothing fails
# the test too: the list stays what the templates hold.
# Resource-level permissions per action: https://docs.aws.amazon.com/service-authorization/latest/reference/


@dataclass(frozen=True)
class Wildcard:
    pattern: str
    reason: str
    conditions: tuple[str, ...] = ()


_NO_RESOURCE_LEVEL = "has no resource-level permissions (the service authorization reference lists no resource type)"
_OUR_PREFIX = "object keys under one prefix of this environment's bucket, set in settings"
_CDK_PIPELINES = "CDK Pipelines' generated grant"

WILDCARDS: tuple[Wildcard, ...] = (
    # Actions that accept no resource but "*".
    Wildcard(
        "Resource::[*] for ecr:GetAuthorizationToken", f"ECR's login token is account-wide: it {_NO_RESOURCE_LEVEL}."
    ),
    Wildcard("Resource::[*] for ec2:Describe*", f"EC2's Describe calls: each {_NO_RESOURCE_LEVEL}."),
    *(
        Wildcard(f"Resource::[*] for xray:{a}", f"X-Ray tracing: xray:{a} {_NO_RESOURCE_LEVEL}.")
        for a in ("PutTraceSegments", "PutTelemetryRecords", "GetSamplingRules", "GetSamplingTargets")
    ),
    Wildcard(
        "Resource::[*] for cloudwatch:PutMetricData",
        f"cloudwatch:PutMetricData {_NO_RESOURCE_LEVEL}; each statement names its namespaces by condition.",
        conditions=("cloudwatch:namespace",),
    ),
    Wildcard(
        "Resource::[*] for sagemaker:ListModelPackages",
        f"The pin resolver lists the approved versions of one group (a request parameter): ListModelPackages "
        f"{_NO_RESOURCE_LEVEL}; reading a version (DescribeModelPackage) is limited to the group's packages.",
    ),
    Wildcard(
        "Resource::[*] for cloudformation:DescribeStacks",
        f"{_CDK_PIPELINES} for self-mutation: the CDK CLI reads its stacks (read-only).",
    ),
    Wildcard(
        "Resource::[*] for s3:ListBucket",
        f"{_CDK_PIPELINES} for self-mutation: the CDK CLI finds its bootstrap bucket (read-only, no object access).",
    ),
    # Action families of CDK's grants, on resources the grant names.
    *(
        Wildcard(
            f"Action::{a}", f"CDK's read grant ({a}) on one bucket: the pipeline artifacts or the agent's code asset."
        )
        for a in ("s3:GetObject*", "s3:GetBucket*", "s3:List*")
    ),
    *(
        Wildcard(
            f"Action::{a}",
            f"CDK's write grant ({a}) on one bucket: the pipeline's artifacts, or emptying a development bucket on "
            "deletion (auto-delete objects).",
        )
        for a in ("s3:DeleteObject*", "s3:Abort*")
    ),
    *(
        Wildcard(
            f"Action::{a}", f"CDK's encrypt/decrypt grant ({a}) on one key, or a service's use of a key in its policy."
        )
        for a in ("kms:GenerateDataKey*", "kms:ReEncrypt*")
    ),
    *(
        Wildcard(
            f"Action::{a}",
            f"CloudWatch Logs encrypts this account's log groups with the key ({a}), conditioned on the log group ARN.",
            conditions=("kms:EncryptionContext:aws:logs:arn",),
        )
        for a in ("kms:Encrypt*", "kms:Decrypt*", "kms:Describe*")
    ),
    Wildcard(
        "Action::kms:*",
        "The default key policy: the key's own account administers it, and its IAM policies decide who may use it "
        "(https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html).",
    ),
    # Object keys under our prefixes (the defaults of config/: a new prefix is a new wildcard to review).
    *(
        Wildcard(f"Resource::*/{prefix}", f"{_OUR_PREFIX}: {what}.")
        for prefix, what in (
            ("mlflow/[*]", "MLflow's artifact store (the MLflow client writes artifacts straight to S3)"),
            ("clinical/raw/[*]", "the training dataset the pipeline reads"),
            ("models/*/[*]", "the staged base weights the pipeline reads"),
            ("pipeline/clinical-diagnosis-finetune/[*]", "the pipeline's outputs (adapter archives)"),
            ("checkpoints/clinical-diagnosis-finetune/[*]", "the training checkpoints"),
            ("pipeline/clinical-diagnosis-finetune/[*]/FineTune/[*]", "the adapters registry readers may fetch"),
            ("reports/[*]", "the diagnostic reports the agent writes (PutObject only)"),
        )
    ),
    Wildcard(
        "Resource::arn:*:s3:::jumpstart-private-cache-prod-*/*/inference-prepack/v*/[*]",
        "The base weights: one model version's prepacked prefix in JumpStart's licence-gated bucket.",
    ),
    *(
        Wildcard(
            f"Resource::<AccessLogs8B620ECA.Arn>/{bucket}/[*]",
            f"S3 server access logs of the {bucket} bucket, delivered by the logging service for that bucket only.",
            conditions=("aws:SourceArn",),
        )
        for bucket in ("artifacts", "datasets", "reports")
    ),
    *(
        Wildcard(
            f"Resource::<{bucket}.Arn>/[*]",
            "Every object of one bucket: CDK's auto-delete of a development bucket on stack deletion"
            + (", and CDK Pipelines' own artifact bucket." if bucket.startswith("Artifacts") else "."),
        )
        for bucket in ("AccessLogs8B620ECA", "Artifacts82DD59A1", "Datasets0030EE04", "Reports65402A0A")
    ),
    # Resources named at run time, under names we or the services fix.
    Wildcard(
        "Resource::arn:*:sagemaker:*:*:model-package/clinical-diagnosis-llama/[*]",
        "The versions of this environment's one model package group, created by the pipeline at run time.",
    ),
    *(
        Wildcard(
            f"Resource::arn:*:sagemaker:*:*:{kind}/pipelines-[*]",
            f"SageMaker Pipelines names each {kind} 'pipelines-<execution>-<step>-...' at run time.",
        )
        for kind in ("processing-job", "training-job")
    ),
    *(
        Wildcard(
            f"Resource::arn:*:logs:*:*:log-group:/aws/sagemaker/{kind}:[*]",
            f"The streams of SageMaker's {kind} log group, one per job, named at run time.",
        )
        for kind in ("ProcessingJobs", "TrainingJobs")
    ),
    Wildcard(
        "Resource::arn:*:ec2:*:*:network-interface/[*]",
        "Network interfaces of jobs and endpoints in the VPC, named when created; limited to the environment's VPC.",
        conditions=("ec2:Vpc",),
    ),
    # The AgentCore Runtime L2's standard grants.
    Wildcard(
        "Resource::arn:*:logs:*:*:log-group:/aws/bedrock-agentcore/runtimes/[*]",
        "The runtime's log groups, named after the runtime id, known only after creation.",
    ),
    Wildcard(
        "Resource::arn:*:logs:*:*:log-group:/aws/bedrock-agentcore/runtimes/[*]:log-stream:[*]",
        "The streams of the runtime's own log groups.",
    ),
    Wildcard(
        "Resource::arn:*:logs:*:*:log-group:[*]",
        "logs:DescribeLogGroups is a list action IAM scopes only to the account's log groups.",
    ),
    Wildcard(
        "Resource::arn:*:bedrock-agentcore:*:*:workload-identity-directory/default/workload-identity/[*]",
        "Workload access tokens of the account's default identity directory, for the runtime's own identity.",
    ),
    Wildcard(
        "Resource::arn:*:s3:::cdk-hnb659fds-assets-*/[*]",
        "Read of the agent's code package in the CDK bootstrap assets bucket; its key is a content hash.",
    ),
    # CDK Pipelines and CodeBuild in the tooling account.
    Wildcard(
        "Resource::arn:*:codebuild:*:*:report-group/<*>-[*]",
        "CodeBuild's grant for the report groups named after the project.",
    ),
    Wildcard(
        "Resource::arn:*:logs:*:*:log-group:/aws/codebuild/<*>:[*]",
        "CodeBuild's grant for the default log group named after the project.",
    ),
    Wildcard(
        "Resource::arn:*:codebuild:*:*:report-group/[*]",
        f"{_CDK_PIPELINES}: the shared asset-publishing roles' report groups (one project per asset kind).",
    ),
    Wildcard(
        "Resource::arn:*:logs:*:*:log-group:/aws/codebuild/[*]",
        f"{_CDK_PIPELINES}: the shared asset-publishing roles' default log groups (one project per asset kind).",
    ),
    Wildcard(
        "Resource::arn:*:iam::*:role/[*]",
        f"{_CDK_PIPELINES}: self-mutation assumes only the tooling account's CDK bootstrap roles (tag condition).",
        conditions=("iam:ResourceTag/aws-cdk:bootstrap-role",),
    ),
)


def policy_documents(value) -> list[dict]:
    """Every policy document in a resource's properties: objects with a ``Statement``, and documents written as JSON
    text (plain, or joined around references, as the X-Ray resource policy is)."""
    if isinstance(value, list):
        return [d for v in value for d in policy_documents(v)]
    if isinstance(value, dict) and "Statement" in value:
        return [value]
    if isinstance(value, dict) and "Fn::Join" in value:  # text around references: keep the text, name the references
        delimiter, parts = value["Fn::Join"]
        value = delimiter.join(p if isinstance(p, str) else _flatten(p) for p in parts)
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            document = json.loads(value)
        except json.JSONDecodeError:
            return []
        return [document] if isinstance(document, dict) and "Statement" in document else []
    return [d for v in value.values() for d in policy_documents(v)] if isinstance(value, dict) else []


def statement_wildcards(resource_type: str, statement: dict) -> list[str]:
    """The wildcards an Allow statement grants, named as ``WILDCARDS`` patterns match them."""
    if statement.get("Effect") != "Allow":
        return []  # a Deny narrows
    actions = _as_list(statement.get("Action"))
    found = [f"Action::{a}" for a in actions if "*" in a]
    found += [f"{k}::{json.dumps(statement[k])}" for k in ("NotAction", "NotResource") if k in statement]
    for resource in map(_flatten, _as_list(statement.get("Resource"))):
        if resource == "*":
            found += [] if resource_type == "AWS::KMS::Key" else [f"Resource::* for {a}" for a in actions]
        elif "*" in resource:
            found.append(f"Resource::{resource}")
    return found


def review_wildcards(templates: dict[str, dict]) -> tuple[list[str], list[Wildcard]]:
    """(the wildcards no entry explains, as 'template/resource: wildcard'; the entries that explain none)."""
    unexplained, used = [], set()
    for name, template in templates.items():
        for logical_id, resource in template.get("Resources", {}).items():
            for document in policy_documents(resource.get("Properties", {})):
                for statement in _as_list(document.get("Statement")):
                    keys = {k for block in (statement.get("Condition") or {}).values() for k in block}
                    for finding in statement_wildcards(resource["Type"], statement):
                        matches = [
                            w
                            for w in WILDCARDS
                            if fnmatch.fnmatchcase(finding, w.pattern) and set(w.conditions) <= keys
                        ]
                        used.update(matches)
                        if not matches:
                            unexplained.append(f"{name}/{logical_id}: {finding}")
    return sorted(set(unexplained)), [w for w in WILDCARDS if w not in used]
