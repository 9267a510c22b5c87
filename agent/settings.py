"""Runtime settings of the clinical agent, read from environment variables.

The AgentCore runtime (stacks/agent_stack.py) sets these; ``python -m agent.app --local`` reads the
same variables. Each field below is the lower-case name of its environment variable.

==================================  ========  =====================================================
variable                            default   meaning
==================================  ========  =====================================================
SAGEMAKER_ENDPOINT_NAME             required  endpoint hosting the models
SAGEMAKER_INFERENCE_COMPONENT       (none)    inference component the agent's model calls
DIAGNOSIS_INFERENCE_COMPONENT       = above   component the ``diagnose`` tool calls (fine-tuned)
AWS_REGION / AWS_DEFAULT_REGION     required  region of the endpoint, table and bucket
MODEL_MAX_TOKENS                    1024      max_tokens of each model call
MODEL_TEMPERATURE                   0.2       temperature of each model call
MODEL_STREAMING                     true      InvokeEndpointWithResponseStream (false: InvokeEndpoint)
AGENT_MAX_TURNS                     8         bound on model calls in one agent loop
PATIENT_TABLE                       required  DynamoDB table, partition key ``patient_id`` (S)
REPORTS_BUCKET                      required  S3 bucket for reports (``reports/<id>/<ts>.md``)
REPORTS_KMS_KEY_ID                  required  KMS key id/ARN used for SSE-KMS on each report
REPORT_MAX_BYTES                    65536     largest report accepted (UTF-8 bytes)
RECORD_PROMPTS                      false     record prompts, completions and patient fields in
                                              traces and logs (synthetic data only!)
MLFLOW_TRACKING_URI                 (none)    SageMaker MLflow App / tracking server ARN (SigV4
                                              through sagemaker-mlflow), or an http(s) MLflow URL
MLFLOW_EXPERIMENT_ID                (none)    experiment receiving the traces ...
MLFLOW_EXPERIMENT_NAME              clinical-diagnosis  ... or its name (created when missing)
==================================  ========  =====================================================

Standard variables also apply: ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, ``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL_DYNAMODB`` (local endpoints), the ``OTEL_*`` and ``AGENT_OBSERVABILITY_ENABLED``
variables (AgentCore observability, read by ADOT) and ``SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT`` (the plugin's
endpoint override, local runs only). See ``agent.telemetry``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.errors import ConfigurationError
from agent.telemetry import mlflow_uri_kind


class AgentRuntimeSettings(BaseModel):
    # Values come from environment strings: lax parsing ("1024" -> 1024, "true" -> True).
    model_config = ConfigDict(extra="forbid", frozen=True)

    sagemaker_endpoint_name: str = Field(min_length=1, max_length=63)
    sagemaker_inference_component: str | None = Field(None, min_length=1, max_length=63)
    diagnosis_inference_component: str | None = Field(None, min_length=1, max_length=63)
    aws_region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    model_max_tokens: int = Field(1024, ge=1, le=32768)
    model_temperature: float = Field(0.2, ge=0, le=2)
    model_streaming: bool = True
    agent_max_turns: int = Field(8, ge=1, le=50)
    patient_table: str = Field(min_length=3, max_length=255)
    reports_bucket: str = Field(min_length=3, max_length=63)
    reports_kms_key_id: str = Field(min_length=1)
    report_max_bytes: int = Field(65536, ge=256, le=5 * 1024 * 1024)
    record_prompts: bool = False
    mlflow_tracking_uri: str | None = None
    mlflow_experiment_id: str | None = None
    mlflow_experiment_name: str = "clinical-diagnosis"

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _mlflow_uri(cls, value: str | None) -> str | None:
        if value is not None:
            mlflow_uri_kind(value)  # ValueError naming what is wrong
        return value

    @property
    def diagnosis_component(self) -> str | None:
        return self.diagnosis_inference_component or self.sagemaker_inference_component


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> AgentRuntimeSettings:
    """The settings from ``environ`` (default: the process environment; empty values count as unset),
    ``overrides`` winning. A bad or missing variable raises ``ConfigurationError`` naming each one."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for name in AgentRuntimeSettings.model_fields:
        if environ.get(name.upper()):
            values[name] = environ[name.upper()]
    if "aws_region" not in values and environ.get("AWS_DEFAULT_REGION"):
        values["aws_region"] = environ["AWS_DEFAULT_REGION"]
    values.update(overrides)
    try:
        return AgentRuntimeSettings.model_validate(values)
    except ValidationError as e:
        lines = []
        for err in e.errors(include_input=False):
            name = str(err["loc"][0]).upper() if err["loc"] else "(settings)"
            if name == "AWS_REGION" and err["type"] == "missing":
                name = "AWS_REGION (or AWS_DEFAULT_REGION)"
            lines.append(f"  {name}: {'required but not set' if err['type'] == 'missing' else err['msg']}")
        raise ConfigurationError("invalid agent environment:\n" + "\n".join(lines)) from None
