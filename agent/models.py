"""Typed data of the clinical agent: patient records, clinical cases and the invocation request.

Every patient in this system is synthetic (see ``agent.patients``).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from agent.errors import InvalidPatientId

PATIENT_ID_PATTERN = r"^P-[0-9]{6}$"
_PATIENT_ID = re.compile(PATIENT_ID_PATTERN)
MAX_REQUEST_BYTES = 16 * 1024


def validate_patient_id(value: object) -> str:
    """Return ``value`` if it is a patient id like ``P-000123``; anything else (paths, ``../``) is refused."""
    if not isinstance(value, str) or not _PATIENT_ID.fullmatch(value):
        shown = repr(value) if isinstance(value, str) and len(value) <= 40 else f"a {type(value).__name__}"
        raise InvalidPatientId(f"invalid patient id {shown}: expected 'P-' followed by 6 digits, e.g. P-000123")
    return value


PatientId = Annotated[str, StringConstraints(pattern=PATIENT_ID_PATTERN)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class _Strict(BaseModel):
    # Requests come from JSON: no coercion ("80" is not a heart rate), no unknown fields.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PatientRecord(BaseModel):
    """The fields of a patient that the agent needs (and the only ones the tool returns)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patient_id: PatientId
    age: int = Field(ge=0, le=120)
    sex: Literal["female", "male"]
    conditions: list[str] = []
    medications: list[str] = []
    allergies: list[str] = []


class Vitals(_Strict):
    heart_rate_bpm: int | None = Field(None, ge=20, le=300)
    systolic_bp_mmhg: int | None = Field(None, ge=40, le=300)
    diastolic_bp_mmhg: int | None = Field(None, ge=20, le=200)
    respiratory_rate_per_min: int | None = Field(None, ge=4, le=80)
    temperature_c: float | None = Field(None, ge=25, le=45)
    spo2_percent: int | None = Field(None, ge=50, le=100)


class ClinicalCase(_Strict):
    """A structured request: the patient, the presenting symptoms and the vitals."""

    patient_id: PatientId
    symptoms: list[ShortText] = Field(min_length=1, max_length=20)
    vitals: Vitals = Vitals()
    notes: str = Field("", max_length=2000)


class InvocationRequest(_Strict):
    """The body of ``POST /invocations``: a free-text prompt, a structured case, or both."""

    prompt: str | None = Field(None, min_length=1, max_length=4000)
    case: ClinicalCase | None = None
    stream: bool = False

    @model_validator(mode="after")
    def _something_to_do(self) -> InvocationRequest:
        if self.prompt is None and self.case is None:
            raise ValueError("give a 'prompt' (text) or a 'case' (patient_id, symptoms, vitals)")
        return self


class RequestError(ValueError):
    """A request the agent refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def parse_request(payload: Any) -> InvocationRequest:
    """Validate an invocation payload. The error names each bad field without echoing its value."""
    if not isinstance(payload, dict):
        raise RequestError(f"the request body must be a JSON object, not {type(payload).__name__}")
    size = len(json.dumps(payload, ensure_ascii=False).encode())
    if size > MAX_REQUEST_BYTES:
        raise RequestError(f"request too large: {size} bytes, at most {MAX_REQUEST_BYTES}", status=413)
    try:
        return InvocationRequest.model_validate(payload)
    except ValidationError as e:
        problems = []
        for err in e.errors(include_input=False, include_url=False):
            field = ".".join(str(p) for p in err["loc"]) or "(body)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "string_pattern_mismatch" and field.endswith("patient_id"):
                msg = "expected 'P-' followed by 6 digits, e.g. P-000123"
            problems.append(f"{field}: {msg}")
        raise RequestError("invalid request: " + "; ".join(problems)) from None
