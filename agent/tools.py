"""The agent's tools, bound to the services of one request (``make_tools``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from agent.errors import PatientNotFound


@dataclass
class ReportLedger:
    """What the tools did during one request: reports stored per patient, tools called in order."""

    reports: dict[str, str] = field(default_factory=dict)  # patient_id -> s3:// URI of the latest report
    tools_called: list[str] = field(default_factory=list)
    # (patient id, case summary) of a structured request: what ``diagnose`` sends when asked by that patient id
    case: tuple[str, str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def called(self, tool: str) -> None:
        with self._lock:
            self.tools_called.append(tool)

    def stored(self, patient_id: str, uri: str) -> None:
        with self._lock:
            self.reports[patient_id] = uri


def make_tools(services: Any, ledger: ReportLedger) -> list[Any]:
    """``get_patient_record``, ``upload_diagnostic_report`` and ``diagnose`` as strands tools.

    ``services`` has ``patients`` (PatientStore), ``reports`` (ReportStore) and ``diagnoser`` (Diagnoser).
    A bad argument raises a typed ``ValueError``, which strands hands back to the model as an error result.
    """
    from strands import tool

    @tool
    def get_patient_record(patient_id: str) -> dict[str, Any]:
        """Read a synthetic patient's clinical record: age, sex, known conditions, medications and allergies.

        Args:
            patient_id: The patient id: 'P-' followed by 6 digits, e.g. P-000123.
        """
        ledger.called("get_patient_record")
        try:
            record = services.patients.get(patient_id)
        except PatientNotFound as e:
            return {"found": False, "patient_id": patient_id, "message": str(e)}
        return {"found": True, "record": record.model_dump()}

    @tool
    def diagnose(case: str) -> str:
        """Ask the fine-tuned clinical model for a teaching assessment: summary, differential diagnosis,
        recommended investigations, red flags.

        Args:
            case: A concise case summary: age, sex, conditions, medications, allergies, symptoms and vitals;
                for the request's own patient, the patient id: the model then reads the case as the request gave it.
        """
        ledger.called("diagnose")
        if ledger.case and case.strip() == ledger.case[0]:
            case = ledger.case[1]  # exactly the training format, whatever the agent model would have paraphrased
        return services.diagnoser.diagnose(case)

    @tool
    def upload_diagnostic_report(patient_id: str, report: str) -> str:
        """Store a markdown diagnostic report for the patient (encrypted); returns the report's S3 URI.

        Args:
            patient_id: The patient id: 'P-' followed by 6 digits, e.g. P-000123.
            report: The report in markdown.
        """
        ledger.called("upload_diagnostic_report")
        uri = services.reports.upload(patient_id, report)
        ledger.stored(patient_id, uri)
        return uri

    return [get_patient_record, diagnose, upload_diagnostic_report]
