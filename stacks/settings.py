"""Typed settings for every environment, loaded from ``config/<env>.yaml``.

Every file in ``config/`` but ``delivery.yaml`` is an environment; its ``tier`` (development, staging, production)
decides its protections. ``load_app`` loads and validates the whole configuration once, up front (every environment
the app synthesizes, the delivery settings and the environments they promote), before a construct exists; a bad
value fails synth with a message naming the environment and the field, and nothing is written. Overrides come from
CDK context (``cdk synth -c dev.account=111111111111``), applied before validation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from stacks import sglang_check
from stacks.facts import (
    AGENTCORE_AZ_IDS,
    AGENTCORE_MIN_AZS,
    INSTANCE_FAMILIES,
    instance_family,
    jumpstart_gated_buckets,
    jumpstart_prepack_key,
)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
# development: may be torn down (its data is destroyed with its stacks) and seeded with synthetic patients.
# staging, production: every stateful resource is retained, nothing synthetic is seeded, `make destroy` refuses.
Tier = Literal["development", "staging", "production"]
TIERS: tuple[str, ...] = get_args(Tier)


def _account(v: str) -> str:
    if not re.fullmatch(r"\d{12}", v):
        raise ValueError(f"{v!r} is not a 12-digit AWS account id")
    return v


def _region(v: str) -> str:
    if not re.fullmatch(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d", v):
        raise ValueError(f"{v!r} is not an AWS region name such as us-east-1")
    return v


Account = Annotated[str, AfterValidator(_account)]
Region = Annotated[str, AfterValidator(_region)]
# SageMaker inference component / endpoint names.
ResourceName = Annotated[str, Field(max_length=63, pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")]

# Accelerators per SageMaker GPU instance type: derived from the one instance table (stacks/facts.py).
ACCELERATORS: dict[str, int] = {
    f"ml.{family}.{size}": n for family, f in INSTANCE_FAMILIES.items() for size, n in f.accelerators.items() if n
}


# NVIDIA driver (major) of each GPU InferenceAmiVersion, as botocore's ProductionVariant documents them
# (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProductionVariant.html, InferenceAmiVersion).
INFERENCE_AMI_DRIVERS: dict[str, int] = {
    "al2-ami-sagemaker-inference-gpu-2": 535,
    "al2-ami-sagemaker-inference-gpu-2-1": 535,
    "al2-ami-sagemaker-inference-gpu-3-1": 550,
    "al2023-ami-sagemaker-inference-gpu-4-1": 580,
}
# The oldest driver that runs an application built with each CUDA major (minor version compatibility):
# https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html
CUDA_MINIMUM_DRIVER: dict[int, int] = {12: 525, 13: 580}


# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


def _retention(days: int) -> int:
    if days not in LOG_RETENTION_DAYS:
        raise ValueError(f"{days} is not a CloudWatch Logs retention period; allowed: {LOG_RETENTION_DAYS}")
    return days


RetentionDays = Annotated[int, AfterValidator(_retention)]


class ConfigError(ValueError):
    """Invalid configuration; the message names the environment and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkSettings(_Model):
    enabled: bool = False
    cidr: str = Field("10.40.0.0/16", pattern=r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")
    # Subnets are created in these Availability Zone IDs (the same physical zones in every account; zone names are
    # mapped per account). AgentCore accepts only its documented zone IDs: validated per region (stacks/facts.py).
    availability_zone_ids: list[Annotated[str, Field(pattern=r"^[a-z]{2,4}\d-az\d+$")]] = []
    flow_log_retention_days: RetentionDays = 365


class DataSettings(_Model):
    noncurrent_version_days: int = Field(90, ge=1)
    access_log_retention_days: int = Field(365, ge=1)


# An S3 key prefix of ours: relative, no leading or trailing "/" needed (both are stripped).
Prefix = Annotated[str, Field(pattern=r"^/?[\w.=-]+(/[\w.=-]+)*/?$")]
# An S3 key prefix: relative, ends with "/".
KeyPrefix = Annotated[str, Field(pattern=r"^[\w.=-]+(/[\w.=-]+)*/$")]
# A framework image in ECR, pinned by tag or digest (per region: no synth-time lookups).
EcrImage = Annotated[
    str, Field(pattern=r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[\w./-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$")
]


class MlflowSettings(_Model):
    # serverless: the MLflow App (no charge when idle, minutes to create); tracking_server: sized, 25-35 min to create.
    kind: Literal["serverless", "tracking_server"] = "serverless"
    name: ResourceName = "clinical-agent"  # the MLflow App's or tracking server's name
    tracking_server_size: Literal["Small", "Medium", "Large"] = "Small"
    experiment: str = Field("clinical-diagnosis", min_length=1)
    artifact_prefix: Prefix = "mlflow"  # in the artifacts bucket; the MLflow role may use only this prefix


class RegistrySettings(_Model):
    model_package_group: ResourceName = "clinical-diagnosis-llama"
    # Accounts (e.g. staging and prod) allowed to describe and use the group's packages and read their adapters.
    reader_accounts: list[Account] = []
    model_card_name: ResourceName = "clinical-diagnosis-assistant"
    model_card_status: Literal["Draft", "PendingReview", "Approved", "Archived"] = "Draft"
    risk_rating: Literal["High", "Medium", "Low", "Unknown"] = "High"
    # Approval -> deployment Lambda: 1 serializes deployments of the adapter component. Note that an account whose
    # Lambda concurrency quota is 10 (new accounts) cannot reserve any: raise the quota first.
    deploy_reserved_concurrency: int = Field(1, ge=1, le=10)


def _known_instance_type(v: str) -> str:
    instance_family(v)  # local storage decides whether a job may have a volume key: the family must be known
    return v


InstanceType = Annotated[str, AfterValidator(_known_instance_type)]


class TrainingSettings(_Model):
    pipeline_name: ResourceName = "clinical-diagnosis-finetune"
    base_model_id: str = "meta-llama/Llama-3.2-3B-Instruct"
    # The PyTorch DLC that containers/training/Dockerfile builds FROM (per region: no synth-time lookups); the
    # training/evaluation dependencies are baked on top, so no job installs anything at start.
    base_image: EcrImage
    # The base weights the pipeline fine-tunes and evaluates (uncompressed Hugging Face layout), in the artifacts
    # bucket: the Evaluate step is a processing job, and a processing input cannot accept a model licence
    # (ProcessingS3Input has no ModelAccessConfig), so the pipeline reads a copy staged by `make weights`.
    base_weights_prefix: KeyPrefix = "models/llama-3.2-3b-instruct/"
    dataset_prefix: Prefix = "clinical/raw"  # in the datasets bucket; the pipeline reads only this prefix
    checkpoint_prefix: Prefix = "checkpoints"  # in the artifacts bucket (+ /<pipeline_name>)
    preprocess_instance_type: InstanceType = "ml.m5.xlarge"
    training_instance_type: InstanceType = "ml.g5.2xlarge"
    training_instance_count: int = Field(1, ge=1)
    evaluate_instance_type: InstanceType = "ml.g5.2xlarge"
    use_spot: bool = True
    max_runtime_seconds: int = Field(86400, ge=60)
    lora_rank: int = Field(16, ge=1, le=256)
    lora_alpha: int = Field(32, ge=1)
    epochs: int = Field(3, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    accuracy_threshold: float = Field(0.6, ge=0, le=1)


def _component_name(v: str) -> str:
    if len(v) > 63 or not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", v):
        raise ValueError(f"{v!r} is not a SageMaker name: at most 63 letters, digits and inner hyphens")
    return v


# Endpoint and inference component names (SageMaker: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*$, at most 63).
ComponentName = Annotated[str, AfterValidator(_component_name)]
# SageMaker mounts a model's S3 data here.
MODEL_DIR = sglang_check.MODEL_DIR
# SageMaker limits on a container's environment.
MAX_ENVIRONMENT, MAX_ENVIRONMENT_VALUE = 16, 1024


class SpeculativeSettings(_Model):
    """Speculative decoding for one base model (SGLang ``--speculative-*``; containers/sglang/README.md).

    ``algorithm`` is one of the manifest's (containers/sglang/manifest.json): ``NGRAM`` drafts from the
    request's own text and needs no draft model; ``EAGLE3``/``EAGLE`` need a draft trained for the base,
    staged with the weights (``draft``: its folder inside the model data, mounted under /opt/ml/model).
    The sizes left unset take SGLang's defaults for the algorithm."""

    algorithm: str = Field(pattern=r"^[A-Z0-9_]+$")
    draft: str | None = Field(None, pattern=r"^[\w.=-]+(/[\w.=-]+)*$")  # relative to the model data
    draft_model_id: str | None = None  # where the draft came from (e.g. a Hugging Face id), for the record
    num_steps: int | None = Field(None, ge=1)
    eagle_topk: int | None = Field(None, ge=1)
    num_draft_tokens: int | None = Field(None, ge=2)


class JumpStartWeights(_Model):
    """Weights hosted by SageMaker JumpStart behind a licence: nothing to stage; the licence is accepted here."""

    source: Literal["jumpstart"]
    model_id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)+$")  # e.g. meta-textgeneration-llama-3-2-3b-instruct
    # The prepacked artifact version of the JumpStart model spec (its hosting_prepacked_artifact_key).
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    # Whoever deploys declares that the model's licence (for Llama 3.2: Meta's Llama 3.2 Community License) has
    # been read and accepted, and by whom; SageMaker downloads the weights only with AcceptEula true.
    accept_eula: bool
    eula_accepted_by: str = Field(min_length=3)

    @field_validator("accept_eula")
    @classmethod
    def _accepted(cls, v: bool) -> bool:
        if not v:
            raise ValueError(
                "JumpStart serves these weights only to a request that accepts the model's licence: read it, set "
                "accept_eula: true and name who accepted it in eula_accepted_by (or use source: s3 with your own copy)"
            )
        return v

    def prefix(self) -> str:
        return jumpstart_prepack_key(self.model_id, self.version)


class S3Weights(_Model):
    """Weights staged in the environment's artifacts bucket under ``prefix`` (``make weights``)."""

    source: Literal["s3"]
    prefix: KeyPrefix


Weights = Annotated[JumpStartWeights | S3Weights, Field(discriminator="source")]


class ModelSettings(_Model):
    """One base model hosted as an inference component on the shared endpoint."""

    name: ComponentName  # also the inference component's name
    model_id: str
    # Where the weights come from (uncompressed, mounted at /opt/ml/model): JumpStart or a staged prefix of ours.
    weights: Weights
    accelerators: int = Field(1, ge=1)
    memory_mb: int = Field(16384, ge=1024)
    cpu_cores: float = Field(4, gt=0)
    min_copies: int = Field(0, ge=0)  # 0: the component scales to zero when idle
    max_copies: int = Field(2, ge=1)
    target_invocations_per_copy: int = Field(10, ge=1)
    lora: bool = True
    max_lora_rank: int = Field(64, ge=1)
    lora_target_modules: list[str] = Field(["all"], min_length=1)
    tool_call_parser: str = "llama3"
    speculative: SpeculativeSettings | None = None
    environment: dict[str, str] = {}  # more SM_SGLANG_* flags (see containers/sglang/README.md)

    @model_validator(mode="after")
    def _valid(self) -> ModelSettings:
        if self.min_copies > self.max_copies:
            raise ValueError(f"min_copies ({self.min_copies}) exceeds max_copies ({self.max_copies})")
        if self.speculative and self.speculative.draft and not isinstance(self.weights, S3Weights):
            raise ValueError(
                "speculative.draft: needs weights.source s3 (SageMaker mounts one S3 prefix per model at "
                f"{MODEL_DIR}, and a JumpStart-hosted prefix cannot hold our draft)"
            )
        derived = self._derived_fields()
        for key, value in self.environment.items():
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key):
                raise ValueError(f"environment.{key}: not a valid environment variable name")
            if key in derived:
                raise ValueError(f"environment.{key}: set from the model's fields; change those instead")
            if len(value) > MAX_ENVIRONMENT_VALUE:
                raise ValueError(f"environment.{key}: longer than {MAX_ENVIRONMENT_VALUE} characters")
        if (n := len(derived) + len(self.environment)) > MAX_ENVIRONMENT:
            raise ValueError(
                f"environment: {len(self.environment)} entries plus {len(derived)} set from the model's fields "
                f"make {n}; SageMaker allows at most {MAX_ENVIRONMENT}"
            )
        # The container refuses at start-up what it cannot run; synth refuses it first (stacks/sglang_check.py).
        if errors := sglang_check.check_environment(self.container_environment):
            fields = {var: name for var, (name, _) in derived.items()}
            raise ValueError(
                "the SGLang container would refuse these settings:\n    "
                + "\n    ".join(f"{fields.get(var, f'environment.{var}')} ({var}): {why}" for var, why in errors)
            )
        return self

    def _derived_fields(self) -> dict[str, tuple[str, str]]:
        """The container variables set from this model's fields: variable -> (field, value)."""
        env = {
            "SM_SGLANG_SERVED_MODEL_NAME": ("name", self.name),
            "SM_SGLANG_TOOL_CALL_PARSER": ("tool_call_parser", self.tool_call_parser),
            "SM_SGLANG_ENABLE_LORA": ("lora", str(self.lora).lower()),
        }
        if self.lora:
            env["SM_SGLANG_MAX_LORA_RANK"] = ("max_lora_rank", str(self.max_lora_rank))
            env["SM_SGLANG_LORA_TARGET_MODULES"] = ("lora_target_modules", " ".join(self.lora_target_modules))
        if spec := self.speculative:
            env["SM_SGLANG_SPECULATIVE_ALGORITHM"] = ("speculative.algorithm", spec.algorithm)
            if spec.draft:
                env["SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH"] = ("speculative.draft", f"{MODEL_DIR}/{spec.draft}")
            for size in ("num_steps", "eagle_topk", "num_draft_tokens"):
                if (value := getattr(spec, size)) is not None:
                    env[f"SM_SGLANG_SPECULATIVE_{size.upper()}"] = (f"speculative.{size}", str(value))
        return env

    @property
    def weights_prefix(self) -> str:
        """The weights' key prefix (in JumpStart's gated bucket, or in the artifacts bucket)."""
        return self.weights.prefix() if isinstance(self.weights, JumpStartWeights) else self.weights.prefix

    @property
    def accept_eula(self) -> bool:
        """Whether reading the weights needs ModelAccessConfig.AcceptEula (JumpStart's gated artifacts)."""
        return isinstance(self.weights, JumpStartWeights)

    def weights_bucket(self, region: str, artifacts_bucket: str) -> str:
        """The bucket holding the weights: JumpStart's gated bucket of ``region``, or the artifacts bucket."""
        if isinstance(self.weights, S3Weights):
            return artifacts_bucket
        buckets = jumpstart_gated_buckets()
        if region not in buckets:
            raise ValueError(f"JumpStart has no gated artifacts in {region}; regions: {', '.join(buckets)}")
        return buckets[region]

    def weights_uri(self, region: str, artifacts_bucket: str) -> str:
        """``s3://<bucket>/<prefix>``: what SageMaker mounts at /opt/ml/model. Every consumer (the endpoint's
        model, the ops CLI) takes the weights' location from here."""
        return f"s3://{self.weights_bucket(region, artifacts_bucket)}/{self.weights_prefix}"

    @property
    def container_environment(self) -> dict[str, str]:
        """The SGLang container's environment: the model's fields as SM_SGLANG_* variables, then ``environment``."""
        return {**{var: value for var, (_, value) in self._derived_fields().items()}, **self.environment}


class AdapterSettings(_Model):
    """A LoRA adapter hosted as an adapter inference component on a base component."""

    name: ComponentName  # also the inference component's name
    base: str  # a ModelSettings.name
    artifact_key: str = Field(pattern=r"^[\w./=-]+\.tar\.gz$")  # key in the artifacts bucket (one .tar.gz)


class InferenceSettings(_Model):
    endpoint_name: ComponentName = "clinical-llm"
    instance_type: str = "ml.g5.2xlarge"
    initial_instance_count: int = Field(1, ge=1)
    min_instance_count: int = Field(0, ge=0)  # 0: the endpoint releases its instances when no copy runs
    max_instance_count: int = Field(2, ge=1)
    # The container needs no network when the weights come from S3: isolate it (no inbound or outbound calls).
    network_isolation: bool = True
    # Seconds SageMaker waits for the weights to download, and then for the container's /ping.
    startup_timeout_seconds: int = Field(1800, ge=60, le=3600)
    models: list[ModelSettings] = Field(min_length=1)
    adapters: list[AdapterSettings] = []
    # The adapter component that the approval automation creates or updates from the registry;
    # the agent calls it by default.
    approved_adapter: ComponentName = "clinical-lora"
    approved_adapter_base: str = ""  # a ModelSettings.name; default: the first model
    # Where the pipeline writes adapter archives (.tar.gz) in the artifacts bucket: the endpoint may read them.
    adapter_artifact_prefix: KeyPrefix = "pipeline/"
    latency_alarm_ms: int = Field(20000, ge=1)
    error_alarm_count: int = Field(5, ge=1)  # 4xx or 5xx responses per 5 minutes, twice in a row
    # The endpoint's host image (GPU driver). The SGLang image's CUDA needs a driver at least this new.
    inference_ami_version: str = "al2023-ami-sagemaker-inference-gpu-4-1"

    @field_validator("instance_type")
    @classmethod
    def _known_instance(cls, v: str) -> str:
        if v not in ACCELERATORS:
            raise ValueError(f"unknown instance type {v!r}; known: {', '.join(sorted(ACCELERATORS))}")
        return v

    @field_validator("inference_ami_version")
    @classmethod
    def _driver_runs_the_image(cls, v: str) -> str:
        if v not in INFERENCE_AMI_DRIVERS:
            raise ValueError(f"{v!r} is not a GPU inference AMI; known: {', '.join(INFERENCE_AMI_DRIVERS)}")
        image = sglang_check.manifest()["image"]
        cuda = image["cuda"]
        needed = CUDA_MINIMUM_DRIVER[int(cuda.split(".")[0])]
        if INFERENCE_AMI_DRIVERS[v] < needed:
            fits = [ami for ami, driver in INFERENCE_AMI_DRIVERS.items() if driver >= needed]
            raise ValueError(
                f"{v} has NVIDIA driver {INFERENCE_AMI_DRIVERS[v]}; the SGLang image {image['repository']}:"
                f"{image['tag']} is built on CUDA {cuda}, which needs driver {needed} or newer ({', '.join(fits)})"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> InferenceSettings:
        available = ACCELERATORS[self.instance_type]
        models = {m.name: m for m in self.models}
        names = list(models)
        for m in self.models:
            if m.accelerators > available:
                raise ValueError(
                    f"models.{m.name}.accelerators: {m.accelerators} exceeds the {available} "
                    f"of instance type {self.instance_type}"
                )
        components = names + [a.name for a in self.adapters]
        if dupes := sorted({c for c in components if components.count(c) > 1}):
            raise ValueError(f"models/adapters: component names must be unique; repeated: {', '.join(dupes)}")
        if self.approved_adapter in components:
            raise ValueError(f"approved_adapter: {self.approved_adapter!r} clashes with a configured component")
        if self.approved_adapter_base and self.approved_adapter_base not in names:
            raise ValueError(f"approved_adapter_base: {self.approved_adapter_base!r} is not one of the models {names}")
        if not models[self.approved_adapter_base or names[0]].lora:
            raise ValueError(f"approved_adapter_base: model {self.approved_adapter_base or names[0]!r} has lora off")
        for a in self.adapters:
            if a.base not in models:
                raise ValueError(f"adapters.{a.name}.base: {a.base!r} is not one of the models {names}")
            if not models[a.base].lora:
                raise ValueError(f"adapters.{a.name}.base: model {a.base!r} has lora off")
        if self.min_instance_count > self.max_instance_count:
            raise ValueError(
                f"min_instance_count ({self.min_instance_count}) exceeds max_instance_count ({self.max_instance_count})"
            )
        if self.initial_instance_count > self.max_instance_count:
            raise ValueError(
                f"initial_instance_count ({self.initial_instance_count}) exceeds "
                f"max_instance_count ({self.max_instance_count})"
            )
        # Each base component starts with one copy; the endpoint must have room for all of them.
        if (needed := sum(m.accelerators for m in self.models)) > available * self.max_instance_count:
            raise ValueError(
                f"models: one copy of each needs {needed} accelerators; max_instance_count {self.max_instance_count} "
                f"× {available} of {self.instance_type} gives {available * self.max_instance_count}"
            )
        return self


class AgentSettings(_Model):
    runtime_name: str = Field("clinical_agent", pattern=r"^[a-zA-Z][a-zA-Z0-9_]{0,47}$")
    model: str = ""  # inference component the agent calls; default: inference.approved_adapter
    max_tokens: int = Field(1024, ge=1)
    temperature: float = Field(0.2, ge=0, le=2)
    # Off by default: prompts and patient fields stay out of traces and logs.
    record_prompts: bool = False
    seed_patients: bool = False
    # How many synthetic patients (P-000001...) seeding writes, one PutItem each.
    seed_patient_count: int = Field(10, ge=1, le=25)
    patient_table: str = Field("patients", pattern=r"^[a-zA-Z0-9_.-]{3,200}$")


# An environment is named by its file (config/<name>.yaml); its stage is the capitalized name.
ENVIRONMENT_NAME = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
AGENTCORE_NAME_LENGTH = 48  # AgentCore runtime names: [a-zA-Z][a-zA-Z0-9_]{0,47}


class EnvironmentSettings(_Model):
    name: str
    # Required in every file, so that a new environment chooses its protections (see Tier).
    tier: Tier
    account: Account
    region: Region
    network: NetworkSettings = NetworkSettings()
    data: DataSettings = DataSettings()
    mlflow: MlflowSettings = MlflowSettings()
    registry: RegistrySettings = RegistrySettings()
    training: TrainingSettings
    inference: InferenceSettings
    agent: AgentSettings = AgentSettings()
    log_retention_days: RetentionDays = 365
    tags: dict[str, str] = {}

    @property
    def stage_id(self) -> str:
        return self.name.capitalize()

    @property
    def protected(self) -> bool:
        """Staging and production tiers: stateful resources retained, no synthetic seeding, no teardown."""
        return self.tier != "development"

    @property
    def destroy(self) -> bool:
        """Whether the environment's stateful resources are deleted with their stacks (development only)."""
        return not self.protected

    @property
    def agent_model(self) -> str:
        """The inference component the agent calls."""
        return self.agent.model or self.inference.approved_adapter

    @property
    def approved_adapter_base(self) -> str:
        return self.inference.approved_adapter_base or self.inference.models[0].name

    @property
    def agent_runtime_name(self) -> str:
        """``<agent.runtime_name>_<environment>``: AgentCore names allow letters, digits and underscores only."""
        return f"{self.agent.runtime_name}_{self.name.replace('-', '_')}"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(ENVIRONMENT_NAME, v):
            raise ValueError(
                f"{v!r} (the file {v}.yaml): environment names are lower-case letters and digits, words joined by "
                "hyphens (it names the stage, its stacks and resources)"
            )
        return v

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "removal_policy" in data:
            raise ValueError(
                "removal_policy: replaced by tier (development: destroyed with its stacks; staging and production: "
                "retained)"
            )
        return data

    @model_validator(mode="after")
    def _protected(self) -> EnvironmentSettings:
        """What the tier and the account forbid."""
        if self.agent.seed_patients and self.protected:
            raise ValueError(
                f"agent.seed_patients: synthetic patients are seeded only in development environments; "
                f"{self.name} is tier {self.tier}"
            )
        if self.account in self.registry.reader_accounts:
            raise ValueError(
                f"registry.reader_accounts: {self.account} is this environment's own account, which owns the registry "
                "(its access is its IAM policies'); list only the other accounts that read it"
            )
        return self

    @model_validator(mode="after")
    def _consistent(self) -> EnvironmentSettings:
        components = {m.name for m in self.inference.models} | {a.name for a in self.inference.adapters}
        if self.agent.model and self.agent.model not in components | {self.inference.approved_adapter}:
            raise ValueError(f"agent.model: {self.agent.model!r} is not a configured model or adapter")
        base = next(m for m in self.inference.models if m.name == self.approved_adapter_base)
        if self.training.lora_rank > base.max_lora_rank:
            raise ValueError(
                f"training.lora_rank: {self.training.lora_rank} exceeds max_lora_rank {base.max_lora_rank} of "
                f"{base.name}, the base that serves the approved adapter"
            )
        if len(self.agent_runtime_name) > AGENTCORE_NAME_LENGTH:
            raise ValueError(
                f"agent.runtime_name: '{self.agent_runtime_name}' (runtime name + '_' + environment) is longer than "
                f"AgentCore's {AGENTCORE_NAME_LENGTH} characters"
            )
        return self

    @model_validator(mode="after")
    def _placement(self) -> EnvironmentSettings:
        """Zones and sources that exist in this environment's region."""
        if self.network.enabled:
            zones, supported = self.network.availability_zone_ids, AGENTCORE_AZ_IDS.get(self.region)
            if supported is None:
                raise ValueError(
                    f"network: AgentCore Runtime in a VPC documents no Availability Zones for {self.region}; "
                    f"regions: {', '.join(AGENTCORE_AZ_IDS)}"
                )
            if len(set(zones)) < AGENTCORE_MIN_AZS or len(set(zones)) != len(zones):
                raise ValueError(
                    f"network.availability_zone_ids: {zones} must name at least {AGENTCORE_MIN_AZS} distinct zone IDs "
                    f"of {self.region} (AgentCore supports {', '.join(supported)})"
                )
            if stray := [z for z in zones if z not in supported]:
                raise ValueError(
                    f"network.availability_zone_ids: {', '.join(stray)} not supported by AgentCore Runtime in "
                    f"{self.region}; supported: {', '.join(supported)}"
                )
        for i, m in enumerate(self.inference.models):
            if m.accept_eula and self.region not in jumpstart_gated_buckets():
                raise ValueError(
                    f"inference.models.{i}.weights: JumpStart has no gated artifacts in {self.region}; "
                    f"regions: {', '.join(jumpstart_gated_buckets())}"
                )
        return self


class DeliverySettings(_Model):
    """The promotion pipeline in the tooling account (config/delivery.yaml)."""

    account: Account
    region: Region
    connection_arn: str = Field(pattern=r"^arn:aws[\w-]*:(codestar-connections|codeconnections):")
    repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    branch: str = "main"
    pipeline_name: str = Field("clinical-agent-delivery", pattern=r"^[A-Za-z0-9.@_-]{1,100}$")
    environments: list[str] = Field(min_length=1)  # promotion order: environments of the config directory
    # A manual approval (after an audit diff) gates these stages; every production-tier environment must be here.
    approval_before: list[str] = []
    smoke_checks: bool = True  # post-deploy health checks per stage, through the target's read-only lookup role
    log_retention_days: RetentionDays = 365  # the pipeline's CodeBuild logs
    artifact_noncurrent_version_days: int = Field(30, ge=1)

    @field_validator("environments")
    @classmethod
    def _known(cls, v: list[str], info: ValidationInfo) -> list[str]:
        known = (info.context or {}).get("known")
        if known is not None and (unknown := [e for e in v if e not in known]):
            raise ValueError(f"unknown {', '.join(unknown)}; known environments: {', '.join(known)}")
        return v

    @model_validator(mode="after")
    def _order(self) -> DeliverySettings:
        if dupes := sorted({e for e in self.environments if self.environments.count(e) > 1}):
            raise ValueError(f"environments: each environment is promoted once; repeated: {', '.join(dupes)}")
        if stray := [e for e in self.approval_before if e not in self.environments]:
            raise ValueError(f"approval_before: {', '.join(stray)} not in environments {self.environments}")
        return self


class AppSettings(_Model):
    """The whole configuration of one synth, validated together: what ``build_app`` builds, and nothing else."""

    environments: dict[str, EnvironmentSettings]  # every environment loaded (synthesized or promoted), by name
    synthesized: list[str]  # the environments synthesized as stages, in order
    delivery: DeliverySettings | None = None  # None: no delivery pipeline in this synth

    @property
    def stages(self) -> list[EnvironmentSettings]:
        return [self.environments[n] for n in self.synthesized]

    @property
    def promoted(self) -> list[EnvironmentSettings]:
        """The delivery pipeline's environments, in promotion order."""
        return [self.environments[n] for n in self.delivery.environments] if self.delivery else []

    @model_validator(mode="after")
    def _production_is_approved(self) -> AppSettings:
        if self.delivery and (
            ungated := [
                e.name for e in self.promoted if e.tier == "production" and e.name not in self.delivery.approval_before
            ]
        ):
            raise ValueError(
                f"approval_before: {', '.join(ungated)} is tier production; production is promoted only after the "
                "audit diff and a manual approval: add it to approval_before"
            )
        return self


def _format(env: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"])
        msg = "required but missing" if e["type"] == "missing" else e["msg"].removeprefix("Value error, ")
        lines.append(f"  {field}: {msg}" if field else f"  {msg}")  # model-level messages name their field
    return f"invalid configuration for environment '{env}':\n" + "\n".join(lines)


def _read(name: str, config_dir: Path) -> dict[str, Any]:
    path = config_dir / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(
            f"invalid configuration for environment '{name}': cannot read {path} ({e.strerror})"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid configuration for environment '{name}': {path.name} is not YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration for environment '{name}': {path.name} is not a mapping")
    return data


def known_environments(config_dir: Path = CONFIG_DIR) -> list[str]:
    """Every ``<name>.yaml`` of the config directory but ``delivery.yaml``, by name."""
    return sorted(p.stem for p in config_dir.glob("*.yaml") if p.stem != "delivery")


def _parse_override(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def load_environment(
    name: str, *, overrides: Mapping[str, Any] | None = None, config_dir: Path = CONFIG_DIR
) -> EnvironmentSettings:
    """Load and validate one environment; ``overrides`` maps dotted field paths to values."""
    known = known_environments(config_dir)
    if name not in known:
        raise ConfigError(f"unknown environment '{name}'; known environments: {', '.join(known)}")
    data = _read(name, config_dir)
    data["name"] = name
    for path, value in (overrides or {}).items():
        node = data
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        # Account ids stay strings: "012345678901" must keep its leading zero.
        node[leaf] = value if leaf in ("account", "region") else _parse_override(value)
    try:
        return EnvironmentSettings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(name, e)) from None


def load_delivery(overrides: Mapping[str, Any] | None = None, config_dir: Path = CONFIG_DIR) -> DeliverySettings:
    data = _read("delivery", config_dir)
    for path, value in (overrides or {}).items():
        data[path] = value if path == "account" else _parse_override(value)
    try:
        return DeliverySettings.model_validate(data, context={"known": known_environments(config_dir)})
    except ValidationError as e:
        raise ConfigError(_format("delivery", e)) from None


def _field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        if name == "name":
            continue
        paths.append(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            paths += _field_paths(field.annotation, f"{prefix}{name}.")
    return paths


def context_overrides(context: Mapping[str, Any], env: str) -> dict[str, Any]:
    """Overrides given as CDK context ``<env>.<dotted.field>`` (``-c dev.account=...``); a key naming no field is
    refused (a typo would otherwise be ignored)."""
    model = DeliverySettings if env == "delivery" else EnvironmentSettings
    given = {key.removeprefix(f"{env}."): value for key, value in context.items() if key.startswith(f"{env}.")}
    paths = _field_paths(model)
    if stray := sorted(k for k in given if k not in paths):
        raise ConfigError(
            f"invalid configuration for environment '{env}':\n  "
            + "\n  ".join(f"{k}: context {env}.{k} names no setting" for k in stray)
        )
    return {path: value for path, value in given.items() if value is not None}


def requested_environments(value: Any, known: Sequence[str]) -> list[str]:
    """Context ``environments``: names separated by commas or spaces (or a list); None: every known environment;
    empty: none (only the delivery pipeline, when it is on)."""
    if value is None:
        return list(known)
    items = value if isinstance(value, list) else re.split(r"[,\s]+", str(value))
    names = [str(i) for i in items if i]  # none: only the delivery pipeline, if on
    if repeated := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(
            f"context environments: {', '.join(repeated)} given more than once in {value!r}; each environment is "
            "synthesized once"
        )
    if unknown := [n for n in names if n not in known]:
        raise ConfigError(
            f"unknown environment {', '.join(map(repr, unknown))}; known environments: {', '.join(known)}"
        )
    return names


def delivery_enabled(value: Any, *, environments_given: bool) -> bool:
    """Context ``delivery``: true/false; unset means on for the whole app, off when ``environments`` picks some
    (a developer synthesizing one environment does not pay for the pipeline's copies of all of them)."""
    if value is None:
        return not environments_given
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ConfigError(f"context delivery: {value!r} is not true or false")


def config_directory(value: Any) -> Path:
    """Context ``config_dir``: another configuration directory (default: the repository's ``config/``)."""
    path = Path(value) if value else CONFIG_DIR
    if not path.is_dir():
        raise ConfigError(f"context config_dir: {path} is not a directory")
    if not known_environments(path):
        raise ConfigError(f"context config_dir: {path} holds no environment (<name>.yaml besides delivery.yaml)")
    return path


def load_app(context: Mapping[str, Any]) -> AppSettings:
    """The whole configuration of a synth, loaded and validated once, before any construct exists.

    ``context`` is the CDK context: ``environments`` picks the environments to synthesize (default: every one in
    the config directory, by tier); ``delivery`` turns the pipeline on or off (its settings and every environment it
    promotes are then validated too); ``config_dir`` reads another directory; ``<env>.<field>`` overrides a field.
    Every invalid environment is reported, not only the first."""
    config_dir = config_directory(context.get("config_dir"))
    known = known_environments(config_dir)
    given = context.get("environments")
    names = requested_environments(given, known)
    errors: list[str] = []
    delivery = None
    if delivery_enabled(context.get("delivery"), environments_given=given is not None):
        try:
            delivery = load_delivery(context_overrides(context, "delivery"), config_dir)
        except ConfigError as e:
            errors.append(str(e))
    environments: dict[str, EnvironmentSettings] = {}
    for name in dict.fromkeys([*names, *(delivery.environments if delivery else [])]):
        try:
            environments[name] = load_environment(
                name, overrides=context_overrides(context, name), config_dir=config_dir
            )
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise ConfigError("\n".join(errors))
    if given is None:  # every environment: development first, production last
        names.sort(key=lambda n: (TIERS.index(environments[n].tier), n))
    try:
        return AppSettings(environments=environments, synthesized=names, delivery=delivery)
    except ValidationError as e:
        raise ConfigError(_format("delivery", e)) from None
