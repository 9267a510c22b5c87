"""AgentStack: the patient table (synthetic patients seeded in dev), the AgentCore runtime and its endpoint.

The runtime runs ``agent/`` as direct code (an S3 zip built with pip for linux/arm64; see
stacks/constructs/agent_package.py), authenticates callers with IAM, and runs under a role that can only
invoke the agent's model on the endpoint, read the patient table, write reports under ``reports/``,
use the environment key for those two, and write its logs and traces.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_bedrockagentcore as agentcore
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from agent.patients import SEED_PATIENT, synthetic_patients
from stacks import compliance
from stacks.constructs.agent_package import agent_code_artifact
from stacks.constructs.log_group import encrypted_log_group
from stacks.constructs.mlflow import Mlflow
from stacks.constructs.patient_table import SeedItems, patient_table
from stacks.inference_stack import InferenceStack
from stacks.network_stack import NetworkStack
from stacks.settings import EnvironmentSettings

ENDPOINT_NAME = "live"  # the runtime endpoint this stack manages; it follows the deployed runtime version
REPORTS_PREFIX = "reports/"
SEED_PROVIDER_ID = "AWS679f53fac002430cb0da5b7982bd2287"  # the singleton function of CDK's AwsCustomResource


def observability_environment(*, record_prompts: bool) -> dict[str, str]:
    """ADOT's settings for AgentCore observability (the entry point runs ``opentelemetry-instrument``):
    https://docs.aws.amazon.com/bedrock-agentcore/latest/devguide/observability-configure.html. The runtime
    adds the per-runtime ones itself (OTLP endpoints, log group headers, resource attributes). ADOT's own
    instrumentations capture message content unless told not to: the content policy applies to both sinks."""
    return {
        "AGENT_OBSERVABILITY_ENABLED": "true",
        "OTEL_PYTHON_DISTRO": "aws_distro",
        "OTEL_PYTHON_CONFIGURATOR": "aws_configurator",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": str(record_prompts).lower(),
    }


class AgentStack(Stack):
    """Attributes for other stacks: ``table``, ``runtime`` (its ``role``), ``endpoint``."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: EnvironmentSettings,
        key: kms.IKey,
        reports_bucket: s3.IBucket,
        inference: InferenceStack,
        mlflow: Mlflow,
        network: NetworkStack | None,
        **kwargs,
    ) -> None:
        """``inference``: the endpoint the agent calls (its component: ``settings.agent_component``, declared there);
        ``mlflow``: where traces go; ``network``: where the runtime and the seeding run (None: public network)."""
        super().__init__(scope, id, **kwargs)
        agent = settings.agent
        inference_component = settings.agent_component
        vpc, subnets = (network.vpc, network.subnets) if network else (None, None)
        self.table = patient_table(
            self, "Patients", table_name=f"{agent.patient_table}-{settings.name}", key=key, destroy=settings.destroy
        )
        compliance.acknowledge(self.table, *compliance.PATIENT_TABLE)
        if agent.seed_patients:
            seed_logs = self._log_group("SeedLogs", settings, key)
            SeedItems(
                self,
                "SyntheticPatients",
                table=self.table,
                key=key,
                items=[*synthetic_patients(agent.seed_patient_count), SEED_PATIENT],  # + the seed case's
                log_group=seed_logs,
                vpc=vpc,
                subnets=subnets,
            )
            provider = self.node.find_child(SEED_PROVIDER_ID)
            compliance.acknowledge(provider, *compliance.AGENT_SEED_PROVIDER)
            if vpc is None:
                compliance.acknowledge(provider, *compliance.AGENT_SEED_PROVIDER_NO_VPC)

        environment = {
            "AWS_REGION": self.region,
            "SAGEMAKER_ENDPOINT_NAME": inference.endpoint_name,
            "SAGEMAKER_INFERENCE_COMPONENT": inference_component,
            "MODEL_MAX_TOKENS": str(agent.max_tokens),
            "MODEL_TEMPERATURE": str(agent.temperature),
            "PATIENT_TABLE": self.table.table_name,
            "REPORTS_BUCKET": reports_bucket.bucket_name,
            "REPORTS_KMS_KEY_ID": key.key_arn,
            "RECORD_PROMPTS": str(agent.record_prompts).lower(),
            "MLFLOW_EXPERIMENT_NAME": settings.mlflow.experiment,
            **observability_environment(record_prompts=agent.record_prompts),
            "MLFLOW_TRACKING_URI": mlflow.tracking_uri,
        }

        self.runtime = agentcore.Runtime(
            self,
            "Runtime",
            runtime_name=settings.agent_runtime_name,
            description=f"Clinical diagnosis agent ({settings.name})",
            agent_runtime_artifact=agent_code_artifact(),
            authorizer_configuration=agentcore.RuntimeAuthorizerConfiguration.using_iam(),
            network_configuration=(
                agentcore.RuntimeNetworkConfiguration.using_vpc(
                    self, vpc=network.vpc, vpc_subnets=network.subnets, security_groups=[network.agent_sg]
                )
                if network is not None
                else agentcore.RuntimeNetworkConfiguration.using_public_network()
            ),
            environment_variables=environment,
            tracing_enabled=True,  # AgentCore observability (X-Ray); the agent redacts content unless allowed
        )
        self.endpoint = self.runtime.add_endpoint(
            ENDPOINT_NAME, version=self.runtime.agent_runtime_version, description=f"Clinical agent ({settings.name})"
        )
        # The service writes each endpoint's stdout to these groups; created here so they are encrypted and expire.
        for endpoint in ("DEFAULT", ENDPOINT_NAME):
            self._log_group(
                f"{endpoint.capitalize()}EndpointLogs",
                settings,
                key,
                name=f"/aws/bedrock-agentcore/runtimes/{self.runtime.agent_runtime_id}-{endpoint}",
            )

        inference.grant_invoke(self.runtime, [inference_component])  # the agent's model only
        self._grant(
            table_arn=self.table.table_arn,
            reports=reports_bucket.arn_for_objects(f"{REPORTS_PREFIX}*"),
            key=key,
        )
        mlflow.grant_use(self.runtime)  # exactly what the MLflow kind needs, and its artifact prefix

        for name, value in {
            "RuntimeArn": self.runtime.agent_runtime_arn,
            "RuntimeEndpointArn": self.endpoint.agent_runtime_endpoint_arn,
            "PatientTableName": self.table.table_name,
            "ModelComponent": inference_component,  # what the agent calls (make ask, make status)
        }.items():
            CfnOutput(self, name, value=value)

    def _log_group(self, id: str, settings: EnvironmentSettings, key: kms.IKey, name: str | None = None):
        return encrypted_log_group(
            self, id, key=key, retention_days=settings.log_retention_days, destroy=settings.destroy, name=name
        )

    def _grant(self, *, table_arn: str, reports: str, key: kms.IKey) -> None:
        statements = [
            iam.PolicyStatement(
                sid="ReadPatients", actions=["dynamodb:GetItem", "dynamodb:Query"], resources=[table_arn]
            ),
            iam.PolicyStatement(sid="WriteReports", actions=["s3:PutObject"], resources=[reports]),
            iam.PolicyStatement(
                sid="UseDataKeyForTableAndReports",
                actions=["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"],
                resources=[key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": [f"dynamodb.{self.region}.amazonaws.com", f"s3.{self.region}.amazonaws.com"]
                    }
                },
            ),
        ]
        for statement in statements:
            self.runtime.add_to_role_policy(statement)
        compliance.acknowledge(self.runtime.role, *compliance.agent_runtime_role(self))
        compliance.acknowledge_wildcards(self.runtime.role, compliance.AGENT_REPORTS_PREFIX, resources=(reports,))
