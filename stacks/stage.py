"""One Stage per environment: `cdk deploy 'Dev/*'` deploys one environment.

Data flows one way: settings → this stage → component stacks → constructs. Each component
stack receives the settings and the resources it uses as keyword arguments. The environment's tier
decides what survives its stacks: every stateful resource is retained outside development.
"""

from __future__ import annotations

from aws_cdk import Environment, Stage, Tags
from constructs import Construct

from stacks import compliance
from stacks.agent_stack import AgentStack
from stacks.constructs.removal import apply_removal_policies
from stacks.data_stack import DataStack
from stacks.inference_stack import InferenceStack
from stacks.mlops_stack import MlopsStack
from stacks.network_stack import NetworkStack
from stacks.settings import DeliverySettings, EnvironmentSettings


class ClinicalAgentStage(Stage):
    """``tooling``: the delivery pipeline's account, where the environment that trains forwards its approvals."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: EnvironmentSettings,
        tooling: DeliverySettings | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, id, env=Environment(account=settings.account, region=settings.region), **kwargs)
        self.settings = settings
        Tags.of(self).add("project", "clinical-agent")
        Tags.of(self).add("environment", settings.name)
        for k, v in sorted(settings.tags.items()):
            Tags.of(self).add(k, v)
        compliance.acknowledge(self, *compliance.STAGE_WIDE)
        # The tier decides: every stateful resource is retained outside development (stacks/constructs/removal.py).
        apply_removal_policies(self, destroy=settings.destroy)

        def describe(component: str) -> str:
            return f"Clinical agent {component} ({settings.name})"

        self.data = DataStack(self, "Data", settings=settings, description=describe("data"))
        self.network = (
            NetworkStack(self, "Network", settings=settings, key=self.data.key, description=describe("network"))
            if settings.network.enabled
            else None
        )
        self.inference = InferenceStack(
            self,
            "Inference",
            settings=settings,
            key=self.data.key,
            artifacts_bucket=self.data.artifacts_bucket,
            network=self.network,
            description=describe("inference: SGLang endpoint, inference components, autoscaling, alarms"),
        )
        self.mlops = MlopsStack(
            self,
            "Mlops",
            settings=settings,
            key=self.data.key,
            datasets_bucket=self.data.datasets_bucket,
            artifacts_bucket=self.data.artifacts_bucket,
            network=self.network,
            tooling=tooling,
            description=describe(
                "MLOps: MLflow, registry of record, fine-tuning pipeline, approvals to the delivery pipeline"
                if settings.trains
                else "MLOps: MLflow"
            ),
        )
        self.agent = AgentStack(
            self,
            "Agent",
            settings=settings,
            key=self.data.key,
            reports_bucket=self.data.reports_bucket,
            inference=self.inference,  # the endpoint and the agent's component, declared in this environment
            mlflow=self.mlops.mlflow,
            network=self.network,
            description=describe("agent"),
        )
        self.agent.add_stack_dependency(self.inference)  # the endpoint exists before the agent calls it
