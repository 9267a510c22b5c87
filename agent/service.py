"""One invocation of the clinical agent: run the agent loop, then make sure a structured case has a report.

``ClinicalAgentRuntime.events`` is the single code path; the app streams its events (SSE) or returns
its final ``done`` event as JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from agent.factory import ClinicalServices, build_model, create_medical_agent
from agent.models import InvocationRequest, PatientRecord
from agent.prompts import case_prompt, case_summary, render_report
from agent.settings import AgentRuntimeSettings, load_settings
from agent.telemetry import configure_telemetry
from agent.tools import ReportLedger

_tracer = trace.get_tracer(__name__)


@dataclass(frozen=True)
class PreparedRequest:
    request: InvocationRequest
    record: PatientRecord | None  # the patient of a structured case (checked to exist)


class ClinicalAgentRuntime:
    """Shared, thread-safe parts (settings, AWS clients, model) and the per-request agent loop."""

    def __init__(self, settings: AgentRuntimeSettings, services: ClinicalServices, model: Any):
        self.settings = settings
        self.services = services
        self.model = model

    @classmethod
    def from_environment(cls, **overrides: Any) -> ClinicalAgentRuntime:
        settings = load_settings(**overrides)
        configure_telemetry(settings)
        return cls(settings, ClinicalServices.from_settings(settings), build_model(settings))

    async def prepare(self, request: InvocationRequest) -> PreparedRequest:
        """Reads the case's patient first: an unknown patient fails (``PatientNotFound``) before any work."""
        record = None
        if request.case:
            record = await asyncio.to_thread(self.services.patients.get, request.case.patient_id)
        return PreparedRequest(request, record)

    async def run(self, prepared: PreparedRequest, session_id: str | None) -> dict[str, Any]:
        """The final summary (the ``done`` event without its ``event`` key)."""
        summary = None
        async for event in self.events(prepared, session_id):  # to the end: the span closes in this task
            if event["event"] == "done":
                summary = {k: v for k, v in event.items() if k != "event"}
        if summary is None:
            raise RuntimeError("the agent loop ended without a result")
        return summary

    async def events(self, prepared: PreparedRequest, session_id: str | None) -> AsyncIterator[dict[str, Any]]:
        request, case = prepared.request, prepared.request.case
        ledger = ReportLedger(case=(case.patient_id, case_summary(case, prepared.record)) if case else None)
        agent = create_medical_agent(
            self.settings, services=self.services, model=self.model, ledger=ledger, session_id=session_id
        )
        prompt = case_prompt(case, request.prompt) if case else request.prompt
        attributes = {"clinical.request.kind": "case" if case else "prompt"}
        if session_id:
            attributes["session.id"] = session_id
        # A new trace per invocation (both sinks: one trace each), linked to the caller's span (AgentCore's,
        # through the request span); baggage such as the session id carries over.
        caller = trace.get_current_span().get_span_context()
        root = trace.set_span_in_context(trace.INVALID_SPAN)
        links = [trace.Link(caller)] if caller.is_valid else None
        with _tracer.start_as_current_span(
            "clinical_request", context=root, links=links, attributes=attributes
        ) as span:
            from strands.types.exceptions import MaxTokensReachedException

            result, text, stop_reason = None, [], None
            try:
                async for event in agent.stream_async(prompt, limits={"turns": self.settings.agent_max_turns}):
                    if "data" in event and isinstance(event["data"], str):
                        text.append(event["data"])
                        yield {"event": "text", "data": event["data"]}
                    elif "message" in event and event["message"].get("role") == "assistant":
                        for block in event["message"].get("content", []):
                            if "toolUse" in block:
                                yield {"event": "tool_call", "name": block["toolUse"]["name"]}
                    elif "result" in event:
                        result = event["result"]
                        stop_reason = str(result.stop_reason)
            except MaxTokensReachedException:
                # The model's answer was cut at max_tokens: keep what it said; a case still gets its report below.
                stop_reason = "max_tokens"
                span.set_attribute("clinical.agent.stop_reason", stop_reason)

            report_uri, source = None, None
            if case:
                report_uri, source = ledger.reports.get(case.patient_id), "agent"
                if report_uri is None:  # the model did not store one: the app does
                    assessment = await asyncio.to_thread(
                        self.services.diagnoser.diagnose, case_summary(case, prepared.record)
                    )
                    report = render_report(case, prepared.record, assessment)
                    report_uri = await asyncio.to_thread(self.services.reports.upload, case.patient_id, report)
                    source = "app"
                span.set_attribute("clinical.report.source", source)
                yield {"event": "report", "uri": report_uri, "source": source}

            yield {
                "event": "done",
                "session_id": session_id,
                "answer": (str(result) if result is not None else "".join(text)).strip(),
                "stop_reason": stop_reason,
                "report_uri": report_uri,
                "report_source": source,
                "tools_called": list(ledger.tools_called),
            }
