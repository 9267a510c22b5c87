"""The deployed stacks and the CloudFormation outputs this CLI reads: the one place that follows the stacks.

A stage ``Dev`` deploys stacks ``Dev-Data``, ``Dev-Network`` (when the network is enabled), ``Dev-Inference``,
``Dev-Mlops`` and ``Dev-Agent`` (see stacks/stage.py); each ``Output`` names a ``CfnOutput`` of one of them.
tests/ops/test_outputs.py checks every one against the reviewed templates in baselines/.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.settings import EnvironmentSettings

# The component stacks of a stage, in deployment order.
COMPONENTS = ("Data", "Network", "Inference", "Mlops", "Agent")


@dataclass(frozen=True)
class Output:
    component: str  # the stack's id in the stage
    key: str  # the CfnOutput's id (= its OutputKey)


DATASETS_BUCKET = Output("Data", "DatasetsBucketName")
ARTIFACTS_BUCKET = Output("Data", "ArtifactsBucketName")
REPORTS_BUCKET = Output("Data", "ReportsBucketName")
ENDPOINT_NAME = Output("Inference", "EndpointName")
BASE_COMPONENTS = Output("Inference", "BaseComponentNames")  # comma-separated
ADAPTER_COMPONENTS = Output("Inference", "AdapterComponentNames")  # comma-separated
MLFLOW_ARN = Output("Mlops", "MlflowArn")
MODEL_PACKAGE_GROUP = Output("Mlops", "ModelPackageGroupName")  # the environment that trains only
PIPELINE_NAME = Output("Mlops", "PipelineName")  # the environment that trains only
RUNTIME_ARN = Output("Agent", "RuntimeArn")
RUNTIME_ENDPOINT_ARN = Output("Agent", "RuntimeEndpointArn")
PATIENT_TABLE = Output("Agent", "PatientTableName")
AGENT_COMPONENT = Output("Agent", "ModelComponent")  # the inference component the agent calls

TRAINING = (MODEL_PACKAGE_GROUP, PIPELINE_NAME)  # declared only where the environment trains
ALL = (
    DATASETS_BUCKET,
    ARTIFACTS_BUCKET,
    REPORTS_BUCKET,
    ENDPOINT_NAME,
    BASE_COMPONENTS,
    ADAPTER_COMPONENTS,
    MLFLOW_ARN,
    *TRAINING,
    RUNTIME_ARN,
    RUNTIME_ENDPOINT_ARN,
    PATIENT_TABLE,
    AGENT_COMPONENT,
)


def declared(settings: EnvironmentSettings) -> tuple[Output, ...]:
    """The outputs this environment's stacks declare."""
    return tuple(o for o in ALL if settings.trains or o not in TRAINING)


def components(settings: EnvironmentSettings) -> list[str]:
    """The component stacks this environment deploys, in order."""
    return [c for c in COMPONENTS if c != "Network" or settings.network.enabled]


def stack_name(settings: EnvironmentSettings, component: str) -> str:
    """The CloudFormation stack name CDK gives a stage's stack: ``<Stage>-<Component>``."""
    return f"{settings.stage_id}-{component}"
