"""Service facts the settings and the deploy-readiness rules rely on, as data in one place.

Each table names the AWS page it comes from. Changing a fact here changes both the settings
validation and the rule pack (stacks/readiness.py) that reads the synthesized templates.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path


@dataclass(frozen=True)
class InstanceFamily:
    """A SageMaker instance family: local NVMe instance storage, and accelerators per size (GPU families)."""

    instance_storage: bool
    accelerators: dict[str, int]  # size (e.g. "2xlarge") -> accelerator devices; empty for CPU families


# Local instance storage per family: EC2 instance type specifications (instance store volumes),
# https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html and .../gp.html. SageMaker refuses a volume
# key on these: "You can't request a VolumeKmsKeyId when using an instance type with local storage"
# (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceConfig.html,
#  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProcessingClusterConfig.html), and the
# endpoint configuration's KmsKeyId likewise
# (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpointConfig.html#sagemaker-CreateEndpointConfig-request-KmsKeyId).
_ONE = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1}
INSTANCE_FAMILIES: dict[str, InstanceFamily] = {
    "g4dn": InstanceFamily(True, {**_ONE, "12xlarge": 4}),
    "g5": InstanceFamily(True, {**_ONE, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "g6": InstanceFamily(True, {**_ONE, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "g6e": InstanceFamily(True, {**_ONE, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "p4d": InstanceFamily(True, {"24xlarge": 8}),
    "p4de": InstanceFamily(True, {"24xlarge": 8}),
    "p5": InstanceFamily(True, {"48xlarge": 8}),
    "p5e": InstanceFamily(True, {"48xlarge": 8}),
    "p5en": InstanceFamily(True, {"48xlarge": 8}),
    "trn1": InstanceFamily(True, {}),
    "trn2": InstanceFamily(True, {}),
    "m5": InstanceFamily(False, {}),
    "m5d": InstanceFamily(True, {}),
    "c5": InstanceFamily(False, {}),
    "c5d": InstanceFamily(True, {}),
    "r5": InstanceFamily(False, {}),
    "m6i": InstanceFamily(False, {}),
    "c6i": InstanceFamily(False, {}),
    "m7i": InstanceFamily(False, {}),
    "c7i": InstanceFamily(False, {}),
}


def instance_family(instance_type: str) -> InstanceFamily:
    """The family of ``ml.<family>.<size>``; a clear error for a family this table does not know."""
    parts = instance_type.split(".")
    if len(parts) != 3 or parts[0] != "ml":
        raise ValueError(f"{instance_type!r} is not a SageMaker instance type (ml.<family>.<size>)")
    if parts[1] not in INSTANCE_FAMILIES:
        raise ValueError(
            f"instance family {parts[1]!r} of {instance_type} is not in stacks/facts.py INSTANCE_FAMILIES "
            f"(local storage and accelerators must be known); known: {', '.join(sorted(INSTANCE_FAMILIES))}"
        )
    return INSTANCE_FAMILIES[parts[1]]


def has_instance_storage(instance_type: str) -> bool:
    return instance_family(instance_type).instance_storage


# AgentCore Runtime in VPC mode accepts subnets only in these Availability Zone IDs; "If you specify subnets in
# unsupported Availability Zones, the configuration will fail".
# https://docs.aws.amazon.com/bedrock-agentcore/latest/devguide/agentcore-vpc.html#agentcore-supported-azs
AGENTCORE_VPC_DOC = "https://docs.aws.amazon.com/bedrock-agentcore/latest/devguide/agentcore-vpc.html"
AGENTCORE_AZ_IDS: dict[str, tuple[str, ...]] = {
    "us-east-1": ("use1-az1", "use1-az2", "use1-az4"),
    "us-east-2": ("use2-az1", "use2-az2", "use2-az3"),
    "us-west-2": ("usw2-az1", "usw2-az2", "usw2-az3"),
    "eu-west-1": ("euw1-az1", "euw1-az2", "euw1-az3"),
    "eu-central-1": ("euc1-az1", "euc1-az2", "euc1-az3"),
    "ap-northeast-1": ("apne1-az1", "apne1-az2", "apne1-az4"),
}
AGENTCORE_MIN_AZS = 2


# SageMaker JumpStart's licence-gated artifacts: one bucket per region, as the SageMaker Python SDK's own region
# table lists them (sagemaker/core/jumpstart/region_config.json, "gated_content_bucket"; read, not copied, so it
# follows the pinned SDK). The EULA is accepted per request with ModelAccessConfig.AcceptEula
# (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ModelAccessConfig.html,
#  https://docs.aws.amazon.com/sagemaker/latest/dg/jumpstart-foundation-models-choose.html#jumpstart-foundation-models-choose-eula).
JUMPSTART_GATED_BUCKET_PREFIX = "jumpstart-private-cache-prod-"
JUMPSTART_EULA_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ModelAccessConfig.html"


@functools.cache
def jumpstart_gated_buckets() -> dict[str, str]:
    """Region -> JumpStart's gated bucket, from the installed SageMaker SDK (no import of the SDK itself)."""
    spec = importlib.util.find_spec("sagemaker")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the SageMaker SDK (requirements.txt) is not installed: JumpStart's regions are unknown")
    table = Path(next(iter(spec.submodule_search_locations))) / "core" / "jumpstart" / "region_config.json"
    regions = json.loads(table.read_text())
    return {r: v["gated_content_bucket"] for r, v in sorted(regions.items()) if v.get("gated_content_bucket")}


def jumpstart_prepack_key(model_id: str, version: str) -> str:
    """The key prefix of a JumpStart model's prepacked inference artifacts (the spec's
    ``hosting_prepacked_artifact_key``): ``<family>/<model_id>/artifacts/inference-prepack/v<version>/``,
    where the family is the model id's first two words (``meta-textgeneration``)."""
    family = "-".join(model_id.split("-")[:2])
    return f"{family}/{model_id}/artifacts/inference-prepack/v{version}/"


# The MLflow client calls a job or the agent makes to log runs, parameters, metrics, models and traces on a
# SageMaker MLflow tracking server (IAM prefix sagemaker-mlflow; an App authorizes sagemaker:CallMlflowAppApi).
# Action names: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemakerwithmlflow.html
MLFLOW_TRACKING_SERVER_ACTIONS: tuple[str, ...] = tuple(
    f"sagemaker-mlflow:{a}"
    for a in (
        "CreateExperiment",
        "GetExperiment",
        "GetExperimentByName",
        "SearchExperiments",
        "SetExperimentTag",
        "CreateRun",
        "GetRun",
        "UpdateRun",
        "SearchRuns",
        "SetTag",
        "LogParam",
        "LogMetric",
        "LogBatch",
        "LogInputs",
        "LogOutputs",
        "GetMetricHistory",
        "ListArtifacts",
        "LogModel",
        "FinalizeLoggedModel",
        "GetLoggedModel",
        "LogLoggedModelParams",
        "SetLoggedModelTags",
        "SearchLoggedModels",
        "ListLoggedModelArtifacts",
        "StartTrace",
        "EndTrace",
        "SetTraceTag",
        "GetTraceInfo",
        "SearchTraces",
    )
)
MLFLOW_APP_ACTIONS: tuple[str, ...] = ("sagemaker:CallMlflowAppApi",)


# The EC2 condition keys each network-interface action supports (the union over its resource types), as the EC2
# service authorization reference lists them: https://docs.aws.amazon.com/service-authorization/latest/reference/
# list_amazonec2.html. A key absent from a request's context makes StringEquals/ArnEquals false, so a statement whose
# condition uses a key one of its actions does not support never allows that action: CreateNetworkInterface has
# ec2:Vpc but no ec2:Subnet (it has ec2:SubnetID), so it cannot share a statement conditioned on ec2:Subnet.
EC2_DOC = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html"
_INTERFACE_KEYS = frozenset(
    {
        "ec2:AvailabilityZone",
        "ec2:ManagedResourceOperator",
        "ec2:NetworkInterfaceID",
        "ec2:Region",
        "ec2:ResourceTag/${TagKey}",
        "ec2:Subnet",
        "ec2:Vpc",
    }
)
EC2_INTERFACE_CONDITION_KEYS: dict[str, frozenset[str]] = {
    "ec2:CreateNetworkInterface": frozenset(
        {
            "ec2:AvailabilityZone",
            "ec2:ManagedResourceOperator",
            "ec2:NetworkInterfaceID",
            "ec2:Region",
            "ec2:ResourceTag/${TagKey}",
            "ec2:SecurityGroupID",
            "ec2:SubnetID",
            "ec2:Vpc",
        }
    ),
    "ec2:CreateNetworkInterfacePermission": (_INTERFACE_KEYS - {"ec2:ManagedResourceOperator"})
    | {"ec2:AuthorizedService", "ec2:AuthorizedUser", "ec2:Permission"},
    "ec2:DeleteNetworkInterface": _INTERFACE_KEYS,
    "ec2:DeleteNetworkInterfacePermission": _INTERFACE_KEYS,
    "ec2:AssignPrivateIpAddresses": _INTERFACE_KEYS,
    "ec2:UnassignPrivateIpAddresses": _INTERFACE_KEYS,
}


# Runtimes AWS still accepts: the first day a create or an update of a function / runtime on each is refused, as the
# services' tables said when checked on RUNTIMES_CHECKED. Lambda blocks creates a month or more before updates
# ("Block function create" is the date here). AgentCore direct code deploy has one date, "Block runtime update"
# (create and update). A runtime absent here is not judged: add it, with its page's date, when one is used.
RUNTIMES_CHECKED = date(2026, 12, 1)
LAMBDA_PYTHON_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html"
AGENTCORE_RUNTIMES_DOC = (
    "https://docs.aws.amazon.com/bedrock-agentcore/latest/devguide/runtime-code-deploy-supported-runtimes.html"
)
LAMBDA_RUNTIME_BLOCKED: dict[str, date] = {
    "python3.13": date(2029, 7, 31),
    "python3.12": date(2028, 11, 30),
    "python3.11": date(2026, 7, 31),
    "python3.10": date(2026, 7, 31),
    "python3.9": date(2026, 1, 15),
}
AGENTCORE_RUNTIME_BLOCKED: dict[str, date] = {
    "PYTHON_3_14": date(2030, 8, 31),
    "PYTHON_3_13": date(2029, 8, 31),
    "PYTHON_3_12": date(2029, 1, 10),
    "PYTHON_3_11": date(2026, 8, 31),
    "PYTHON_3_10": date(2026, 8, 31),
    "NODE_22": date(2027, 7, 1),
}
