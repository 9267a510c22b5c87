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
import typing
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


def _sagemaker_name(v: str) -> str:
    if len(v) > 63 or not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", v):
        raise ValueError(f"{v!r} is not a SageMaker name: at most 63 letters, digits and inner hyphens")
    return v


# Names of SageMaker resources: endpoints, inference components, pipelines, model package groups, model cards, MLflow
# Apps and tracking servers (each API's pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*$, at most 63 characters).
SageMakerName = Annotated[str, AfterValidator(_sagemaker_name)]


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


def _key_prefix(v: str) -> str:
    if not re.fullmatch(r"[\w.=-]+(/[\w.=-]+)*/", v):
        raise ValueError(
            f"{v!r} is not an S3 key prefix of ours: relative (no leading '/'), folders of letters, digits and "
            ". = - _, ending with '/' (e.g. models/llama/)"
        )
    return v


# An S3 key prefix (a folder of keys): relative, ends with "/", so it never matches a sibling's keys.
KeyPrefix = Annotated[str, AfterValidator(_key_prefix)]
# A framework image in ECR, pinned by tag or digest (per region: no synth-time lookups).
EcrImage = Annotated[
    str, Field(pattern=r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[\w./-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$")
]


class MlflowSettings(_Model):
    # serverless: the MLflow App (no charge when idle, minutes to create); tracking_server: sized, 25-35 min to create.
    kind: Literal["serverless", "tracking_server"] = "serverless"
    name: SageMakerName = "clinical-agent"  # the MLflow App's or tracking server's name
    tracking_server_size: Literal["Small", "Medium", "Large"] = "Small"
    experiment: str = Field("clinical-diagnosis", min_length=1)
    artifact_prefix: KeyPrefix = "mlflow/"  # in the artifacts bucket; the MLflow role may use only this prefix


class RegistrySettings(_Model):
    """The model registry of record: only the environment that trains has one (docs/promotion.md)."""

    model_package_group: SageMakerName = "clinical-diagnosis-llama"
    # Accounts (e.g. staging and prod) allowed to describe and use the group's packages and copy their adapters.
    reader_accounts: list[Account] = []
    model_card_name: SageMakerName = "clinical-diagnosis-assistant"
    model_card_status: Literal["Draft", "PendingReview", "Approved", "Archived"] = "Draft"
    risk_rating: Literal["High", "Medium", "Low", "Unknown"] = "High"
    # What an approved version of the group is served as: the pin's adapter component name and its base model
    # (`make pin` and the delivery pipeline write both into config/models.lock.json).
    adapter: SageMakerName = "clinical-lora"
    adapter_base: str = ""  # an inference.models[].name; default: the first model


def _known_instance_type(v: str) -> str:
    instance_family(v)  # local storage decides whether a job may have a volume key: the family must be known
    return v


InstanceType = Annotated[str, AfterValidator(_known_instance_type)]


class TrainingSettings(_Model):
    pipeline_name: SageMakerName = "clinical-diagnosis-finetune"
    base_model_id: str = "meta-llama/Llama-3.2-3B-Instruct"
    # The PyTorch DLC that containers/training/Dockerfile builds FROM (per region: no synth-time lookups); the
    # training/evaluation dependencies are baked on top, so no job installs anything at start.
    base_image: EcrImage
    # The base weights the pipeline fine-tunes and evaluates (uncompressed Hugging Face layout), in the artifacts
    # bucket: the Evaluate step is a processing job, and a processing input cannot accept a model licence
    # (ProcessingS3Input has no ModelAccessConfig), so the pipeline reads a copy staged by `make weights`.
    base_weights_prefix: KeyPrefix = "models/llama-3.2-3b-instruct/"
    dataset_prefix: KeyPrefix = "clinical/raw/"  # in the datasets bucket; the pipeline reads only this prefix
    # Where the pipeline writes its outputs (adapter archives included) in the artifacts bucket (+ /<pipeline_name>).
    output_prefix: KeyPrefix = "pipeline/"
    checkpoint_prefix: KeyPrefix = "checkpoints/"  # in the artifacts bucket (+ /<pipeline_name>)
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

    name: SageMakerName  # also the inference component's name
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

    name: SageMakerName  # also the inference component's name
    base: str  # a ModelSettings.name
    artifact_key: str = Field(pattern=r"^[\w./=-]+\.tar\.gz$")  # key in the artifacts bucket (one .tar.gz)


# Pinned adapters are copied into each environment's artifacts bucket under a content-addressed key.
ADAPTER_PREFIX = "adapters/"
LOCK_FILE = "models.lock.json"
_PACKAGE_ARN = r"arn:aws[\w-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/[\w-]+/(\d+)"


class AdapterPin(_Model):
    """One pinned adapter of config/models.lock.json: which registry version serves, where its archive is, its hash
    and its lineage. Written by the resolver (``make pin``, the delivery pipeline's ResolvePin step), reviewed in git.

    ``model_package`` and ``source_uri`` are a SageMaker model package ARN and its ``s3://`` archive; the local demo
    writes the same file with its MLflow registry version (``models:/<name>/<version>``) and a ``file://`` archive,
    which no environment can deploy."""

    name: SageMakerName  # the adapter inference component
    base: SageMakerName  # the base component it runs on (an inference.models[].name)
    model_package: str = Field(pattern=rf"^({_PACKAGE_ARN}|models:/[\w.-]+/(\d+))$")
    model_package_version: int = Field(ge=1)
    source_uri: str = Field(pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/|file:///)\S+\.tar\.gz$")
    source_kms_key_arn: str | None = Field(None, pattern=r"^arn:aws[\w-]*:kms:[a-z0-9-]+:\d{12}:key/[\w-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    lora_rank: int = Field(ge=1)
    pipeline_execution_arn: str | None = Field(
        None, pattern=r"^arn:aws[\w-]*:sagemaker:[a-z0-9-]+:\d{12}:pipeline/[\w-]+/execution/[\w-]+$"
    )
    mlflow_run_id: str | None = Field(None, pattern=r"^[0-9A-Za-z_-]+$", max_length=256)

    @model_validator(mode="after")
    def _version(self) -> AdapterPin:
        if not self.model_package.endswith(f"/{self.model_package_version}"):
            raise ValueError(
                f"model_package_version: {self.model_package_version} is not the version of {self.model_package}"
            )
        return self

    @property
    def deployable(self) -> bool:
        """A registry version in SageMaker with its archive in S3 (not the local demo's pin)."""
        return self.model_package.startswith("arn:") and self.source_uri.startswith("s3://")

    @property
    def source_bucket(self) -> str:
        return self.source_uri.removeprefix("s3://").split("/", 1)[0]

    @property
    def source_key(self) -> str:
        return self.source_uri.removeprefix("s3://").split("/", 1)[1]

    @property
    def artifact_key(self) -> str:
        """The environment's own copy: content-addressed, so the key changes exactly when the bytes do."""
        return f"{ADAPTER_PREFIX}{self.sha256}.tar.gz"

    @property
    def lineage_tags(self) -> dict[str, str]:
        """What serves → what trained it: tags on the adapter component (values are never empty)."""
        tags = {"ModelPackageArn": self.model_package, "ModelPackageVersion": str(self.model_package_version)}
        if self.pipeline_execution_arn:
            tags["PipelineExecutionArn"] = self.pipeline_execution_arn
        if self.mlflow_run_id:
            tags["MlflowRunId"] = self.mlflow_run_id
        return tags


class ModelLock(_Model):
    """config/models.lock.json: the adapters that serve, one entry per adapter component (none: the bases serve)."""

    adapters: list[AdapterPin] = []

    @field_validator("adapters")
    @classmethod
    def _unique(cls, v: list[AdapterPin]) -> list[AdapterPin]:
        names = [a.name for a in v]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"one entry per adapter component; repeated: {', '.join(dupes)}")
        return v

    def dumps(self) -> str:
        """The file's text: stable key order, no empty fields, a final newline (a reviewable diff)."""
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2) + "\n"

    def with_pin(self, name: str, pin: AdapterPin | None) -> ModelLock:
        """This lock with the entry for component ``name`` replaced by ``pin`` (removed when None)."""
        kept = [a for a in self.adapters if a.name != name]
        return ModelLock(adapters=sorted([*kept, *([pin] if pin else [])], key=lambda a: a.name))


class InferenceSettings(_Model):
    endpoint_name: SageMakerName = "clinical-llm"
    instance_type: str = "ml.g5.2xlarge"
    initial_instance_count: int = Field(1, ge=1)
    min_instance_count: int = Field(0, ge=0)  # 0: the endpoint releases its instances when no copy runs
    max_instance_count: int = Field(2, ge=1)
    # The container needs no network when the weights come from S3: isolate it (no inbound or outbound calls).
    network_isolation: bool = True
    # Seconds SageMaker waits for the weights to download, and then for the container's /ping.
    startup_timeout_seconds: int = Field(1800, ge=60, le=3600)
    models: list[ModelSettings] = Field(min_length=1)
    # Adapters staged by hand in the artifacts bucket; the registry's adapters come pinned (config/models.lock.json).
    adapters: list[AdapterSettings] = []
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
    # The inference component the agent calls, one this environment declares; default: the first pinned adapter
    # it serves (config/models.lock.json), else its first base model.
    model: str = ""
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
    # Only the environment that trains has a registry and a pipeline (the registry of record, docs/promotion.md);
    # the others serve copies of the adapters it registered and a person approved.
    registry: RegistrySettings = RegistrySettings()
    training: TrainingSettings | None = None
    inference: InferenceSettings
    agent: AgentSettings = AgentSettings()
    log_retention_days: RetentionDays = 365
    tags: dict[str, str] = {}
    # The pinned adapters (config/models.lock.json), set by load_environment; this environment serves those whose
    # base it declares.
    model_lock: ModelLock = ModelLock()

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
    def trains(self) -> bool:
        return self.training is not None

    @property
    def pinned_adapters(self) -> list[AdapterPin]:
        """The pinned adapters this environment serves: those whose base model it declares."""
        bases = {m.name for m in self.inference.models}
        return [a for a in self.model_lock.adapters if a.base in bases]

    @property
    def components(self) -> dict[str, str]:
        """Every inference component this environment declares -> the base component whose copies serve it."""
        inf = self.inference
        return {
            **{m.name: m.name for m in inf.models},
            **{a.name: a.base for a in inf.adapters},
            **{a.name: a.base for a in self.pinned_adapters},
        }

    @property
    def agent_component(self) -> str:
        """The component the agent calls: ``agent.model``, else the first pinned adapter served here, else the first
        base model. Always one this environment declares."""
        pinned = self.pinned_adapters
        return self.agent.model or (pinned[0].name if pinned else self.inference.models[0].name)

    @property
    def registry_adapter_base(self) -> str:
        return self.registry.adapter_base or self.inference.models[0].name

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
    def _registry(self) -> EnvironmentSettings:
        """The registry's adapter runs on a LoRA base of this environment, at a rank the base accepts."""
        if self.training is None:
            if "registry" in self.model_fields_set:
                raise ValueError(
                    "registry: only the environment that trains has a registry; add training: or remove it"
                )
            return self
        models = {m.name: m for m in self.inference.models}
        base = models.get(self.registry_adapter_base)
        if base is None:
            raise ValueError(
                f"registry.adapter_base: {self.registry_adapter_base!r} is not one of the models {list(models)}"
            )
        if not base.lora:
            raise ValueError(f"registry.adapter_base: model {base.name!r} has lora off")
        if self.registry.adapter in models or self.registry.adapter in {a.name for a in self.inference.adapters}:
            raise ValueError(f"registry.adapter: {self.registry.adapter!r} clashes with a configured component")
        if self.training.lora_rank > base.max_lora_rank:
            raise ValueError(
                f"training.lora_rank: {self.training.lora_rank} exceeds max_lora_rank {base.max_lora_rank} of "
                f"{base.name}, the base that serves the registry's adapter"
            )
        return self

    @model_validator(mode="after")
    def _serving(self) -> EnvironmentSettings:
        """Each pinned adapter served here can be: a deployable pin, on a LoRA base, at a rank it accepts."""
        models = {m.name: m for m in self.inference.models}
        configured = set(models) | {a.name for a in self.inference.adapters}
        for pin in self.pinned_adapters:
            where = f"{LOCK_FILE}: adapter {pin.name!r}"
            base = models[pin.base]
            if pin.name in configured:
                raise ValueError(f"{where}: clashes with a configured component of inference")
            if not base.lora:
                raise ValueError(f"{where}: its base {base.name!r} has lora off")
            if pin.lora_rank > base.max_lora_rank:
                raise ValueError(
                    f"{where}: LoRA rank {pin.lora_rank} exceeds max_lora_rank {base.max_lora_rank} of {base.name}"
                )
            if not pin.deployable:
                raise ValueError(
                    f"{where}: {pin.model_package} at {pin.source_uri} is a local pin (the demo's); an environment "
                    "serves only a SageMaker model package whose archive is in S3"
                )
        if self.agent.model and self.agent.model not in self.components:
            raise ValueError(
                f"agent.model: {self.agent.model!r} is not a component this environment declares "
                f"({', '.join(self.components)})"
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
    # The event bus in this account that receives the registry account's approvals and starts the pipeline.
    approval_bus_name: str = Field("clinical-agent-model-approvals", pattern=r"^[0-9A-Za-z_.-]+$", max_length=256)

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
    # The delivery pipeline's account (config/delivery.yaml), where the environment that trains forwards its
    # approvals, whether or not this synth includes the pipeline. None: the config directory has no delivery.yaml.
    tooling: DeliverySettings | None = None
    registry: str | None = None  # the environment that trains among the promoted ones (the registry of record)

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


def _problems(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"])
        msg = "required but missing" if e["type"] == "missing" else e["msg"].removeprefix("Value error, ")
        lines.append(f"  {field}: {msg}" if field else f"  {msg}")  # model-level messages name their field
    return "\n".join(lines)


def _format(env: str, err: ValidationError) -> str:
    return f"invalid configuration for environment '{env}':\n{_problems(err)}"


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


def load_model_lock(path: Path) -> ModelLock:
    """The pinned adapters in ``path`` (config/models.lock.json); a missing file pins nothing."""
    if not path.is_file():
        return ModelLock()
    try:
        return ModelLock.model_validate_json(path.read_text())
    except ValidationError as e:
        raise ConfigError(f"invalid model lock {path}:\n{_problems(e)}") from None


def load_environment(
    name: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    config_dir: Path = CONFIG_DIR,
    lock: ModelLock | None = None,
) -> EnvironmentSettings:
    """Load and validate one environment; ``overrides`` maps dotted field paths to values; ``lock`` is the model lock
    (default: ``config_dir``/models.lock.json)."""
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
    data["model_lock"] = lock if lock is not None else load_model_lock(config_dir / LOCK_FILE)
    try:
        return EnvironmentSettings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(name, e)) from None


def check_promotion(environments: list[EnvironmentSettings], lock: ModelLock) -> EnvironmentSettings | None:
    """Rules across environments, for those synthesized together: at most one trains (the registry of record, which
    this returns), every pinned adapter is served by one of them, and every account that serves a copy may read the
    registry's archives (``registry.reader_accounts``)."""
    trainers = [e for e in environments if e.trains]
    if len(trainers) > 1:
        raise ConfigError(
            f"environments {', '.join(e.name for e in trainers)} all have a training section: exactly one trains "
            "(its model package group is the registry of record); remove training: from the others"
        )
    registry = trainers[0] if trainers else None
    for pin in lock.adapters if environments else ():
        serving = [e for e in environments if pin in e.pinned_adapters]
        if not serving:
            raise ConfigError(
                f"invalid model lock {LOCK_FILE}:\n  adapter {pin.name!r} runs on base {pin.base!r}, which none of "
                f"{', '.join(e.name for e in environments)} declares in inference.models"
            )
        if registry is None:
            continue
        readers = {registry.account, *registry.registry.reader_accounts}
        if stray := [e for e in serving if e.account not in readers]:
            raise ConfigError(
                f"invalid configuration for environment '{registry.name}':\n  registry.reader_accounts: "
                + ", ".join(f"{e.name} ({e.account})" for e in stray)
                + f" serve a copy of {pin.name!r} and must be able to read it; add the account(s)"
            )
    return registry


def load_delivery(
    overrides: Mapping[str, Any] | None = None, config_dir: Path = CONFIG_DIR, *, promoting: bool = True
) -> DeliverySettings:
    """config/delivery.yaml; ``promoting``: its environments must be files of ``config_dir`` (off when only the
    tooling account is read, for the approvals the environment that trains forwards)."""
    data = _read("delivery", config_dir)
    for path, value in (overrides or {}).items():
        data[path] = value if path == "account" else _parse_override(value)
    try:
        return DeliverySettings.model_validate(
            data, context={"known": known_environments(config_dir)} if promoting else {}
        )
    except ValidationError as e:
        raise ConfigError(_format("delivery", e)) from None


def _field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        if name in ("name", "model_lock"):  # the lock is a file of its own (context models_lock=PATH)
            continue
        paths.append(prefix + name)
        for kind in (field.annotation, *typing.get_args(field.annotation)):  # Optional sections too
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                paths += _field_paths(kind, f"{prefix}{name}.")
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
    lock_file = context.get("models_lock")
    lock = load_model_lock(Path(lock_file) if lock_file else config_dir / LOCK_FILE)
    errors: list[str] = []
    tooling = None
    on = delivery_enabled(context.get("delivery"), environments_given=given is not None)
    if on or (config_dir / "delivery.yaml").is_file():
        try:
            tooling = load_delivery(context_overrides(context, "delivery"), config_dir, promoting=on)
        except ConfigError as e:
            errors.append(str(e))
    delivery = tooling if on else None
    environments: dict[str, EnvironmentSettings] = {}
    for name in dict.fromkeys([*names, *(delivery.environments if delivery else [])]):
        try:
            environments[name] = load_environment(
                name, overrides=context_overrides(context, name), config_dir=config_dir, lock=lock
            )
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise ConfigError("\n".join(errors))
    if given is None:  # every environment: development first, production last
        names.sort(key=lambda n: (TIERS.index(environments[n].tier), n))
    check_promotion([environments[n] for n in names], lock)
    registry = None
    if delivery:
        registry = check_promotion([environments[n] for n in delivery.environments], lock)
        if registry is None:
            raise ConfigError(
                "invalid configuration for environment 'delivery':\n  environments: none of "
                f"{', '.join(delivery.environments)} trains; the pipeline promotes the approvals of the one that "
                "does (the environment with a training section)"
            )
    try:
        return AppSettings(
            environments=environments,
            synthesized=names,
            delivery=delivery,
            tooling=tooling,
            registry=registry.name if registry else None,
        )
    except ValidationError as e:
        raise ConfigError(_format("delivery", e)) from None
