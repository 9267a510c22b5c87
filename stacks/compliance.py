"""Compliance gates: cdk-nag AwsSolutions + HIPAA Security + DeployReadiness, and every acknowledgment with its
reason.

cdk-nag 3 runs as a CDK policy-validation plugin: any unacknowledged finding fails synth.
Acknowledgments live here, in one place, as named groups; stacks apply a group to the
construct it is about with :func:`acknowledge`, so a reason is never written twice.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass

import jsii
from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks
from constructs import IConstruct, IValidation


@dataclass(frozen=True)
class Ack:
    rule: str
    reason: str


def register(app: App) -> None:
    """Run the packs over every stack of the app (AwsSolutions, HIPAA Security and the services' own rules,
    stacks/readiness.py); findings fail synth."""
    from stacks.readiness import DeployReadinessChecks

    Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app), DeployReadinessChecks(app))


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


MLFLOW_ROLE = (
    "The MLflow service role's wildcards are the object keys under its own artifact prefix; listing is "
    "conditioned on that prefix and KMS is Decrypt/GenerateDataKey on the environment's key."
)

PIPELINE_ROLE = (
    "Wildcards only where resources are named at run time or IAM has nothing narrower: object keys under the "
    "datasets and base-weights prefixes (read), the pipeline's output and checkpoint prefixes and the MLflow "
    "artifact prefix (write; the MLflow client writes artifacts straight to S3); processing-job/pipelines-* and "
    "training-job/pipelines-* (SageMaker Pipelines names each job 'pipelines-<execution>-<step>-...'); the "
    "versions of this environment's one model package group; the streams of the SageMaker job log groups (':*'); "
    "ecr:GetAuthorizationToken, cloudwatch:PutMetricData (namespace condition /aws/sagemaker/*) and the "
    "network-interface actions of jobs in the VPC have no resource-level permissions."
)

PIN_READER_ROLE = (
    "The delivery pipeline's registry reader: the versions of this environment's one model package group (created at "
    "run time, model-package/<group>/<version>); sagemaker:ListModelPackages, a list action with no resource-level "
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
    "ecr:GetAuthorizationToken, cloudwatch:PutMetricData (limited by a namespace condition) and ec2:Describe* have no "
    "resource-level permissions; network interfaces are limited to the environment's VPC by an ec2:Vpc condition."
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


AGENT_MLFLOW_ARTIFACTS = (
    "Traces and their artifacts: the MLflow client writes artifacts straight to the artifact store, objects under the "
    "MLflow artifact prefix only (Mlflow.grant_use)."
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
        "Two CDK Pipelines statements with no narrower resource: self-mutation's cloudformation:DescribeStacks and "
        "s3:ListBucket (read-only, how the CDK CLI finds its stacks and bootstrap bucket), and the asset role's "
        "codebuild:StartBuild/BatchGetBuilds/StopBuild for the publishing projects it runs.",
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
