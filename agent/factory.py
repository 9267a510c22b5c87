"""Builds the clinical agent: a strands ``Agent`` on ``SageMakerAIModel`` with the three clinical tools."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.diagnosis import Diagnoser
from agent.patients import PatientStore
from agent.prompts import SYSTEM_PROMPT
from agent.reports import ReportStore
from agent.settings import AgentRuntimeSettings, load_settings
from agent.tools import ReportLedger, make_tools

AGENT_NAME = "clinical_agent"


def _client_config() -> Any:
    from botocore.config import Config

    # Sessions run concurrently: room for 64 connections per client, standard retries.
    return Config(max_pool_connections=64, retries={"mode": "standard", "max_attempts": 3})


@dataclass(frozen=True)
class ClinicalServices:
    """The AWS-facing pieces the tools use; each takes an injected boto3 client."""

    patients: PatientStore
    reports: ReportStore
    diagnoser: Diagnoser

    @classmethod
    def from_settings(cls, settings: AgentRuntimeSettings, session: Any = None) -> ClinicalServices:
        import boto3

        session = session or boto3.Session(region_name=settings.aws_region)
        config = _client_config()
        return cls(
            patients=PatientStore(settings.patient_table, session.client("dynamodb", config=config)),
            reports=ReportStore(
                settings.reports_bucket,
                settings.reports_kms_key_id,
                session.client("s3", config=config),
                max_bytes=settings.report_max_bytes,
            ),
            diagnoser=Diagnoser(
                session.client("sagemaker-runtime", config=config),
                endpoint_name=settings.sagemaker_endpoint_name,
                inference_component=settings.diagnosis_component,
                max_tokens=settings.model_max_tokens,
                temperature=settings.model_temperature,
                record_prompts=settings.record_prompts,
            ),
        )


def build_model(settings: AgentRuntimeSettings, session: Any = None) -> Any:
    """``SageMakerAIModel`` on the settings' endpoint and inference component."""
    from strands.models.sagemaker import SageMakerAIModel

    endpoint_config = SageMakerAIModel.SageMakerAIEndpointConfig(
        endpoint_name=settings.sagemaker_endpoint_name, region_name=settings.aws_region
    )
    if settings.sagemaker_inference_component:
        endpoint_config["inference_component_name"] = settings.sagemaker_inference_component
    return SageMakerAIModel(
        endpoint_config=endpoint_config,
        payload_config={
            "max_tokens": settings.model_max_tokens,
            "temperature": settings.model_temperature,
            "stream": settings.model_streaming,
        },
        boto_session=session,
        boto_client_config=_client_config(),
    )


def create_medical_agent(
    settings: AgentRuntimeSettings | None = None,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    services: ClinicalServices | None = None,
    model: Any = None,
    ledger: ReportLedger | None = None,
    session_id: str | None = None,
) -> Any:
    """A strands ``Agent`` for one conversation.

    ``settings`` default to the environment (``agent.settings``); ``max_tokens``/``temperature``
    override them. ``services`` and ``model`` may be injected (and shared between agents: they are
    thread-safe); ``ledger`` records what the tools did.
    """
    settings = settings or load_settings()
    updates = {k: v for k, v in (("model_max_tokens", max_tokens), ("model_temperature", temperature)) if v is not None}
    if updates:
        settings = load_settings(**(settings.model_dump() | updates))  # validated: a bad value is named
    from strands import Agent

    return Agent(
        model=model or build_model(settings),
        tools=make_tools(services or ClinicalServices.from_settings(settings), ledger or ReportLedger()),
        system_prompt=SYSTEM_PROMPT,
        callback_handler=None,
        name=AGENT_NAME,
        trace_attributes={"session.id": session_id} if session_id else None,
    )
