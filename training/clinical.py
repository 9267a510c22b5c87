"""The clinical-record domain: schema, validation, and every text format the models learn.

Pure standard library: the generator and ``preprocess.py`` run in a plain Python container, and the
agent imports this module too (``training.clinical``; it ships in the agent's package), so the
``diagnose`` tool prompts the fine-tuned model exactly as training formatted its examples.
Records are synthetic (see ``generate.py``); one record is a JSON object::

    {"id": "SYN-000001", "age": 54, "sex": "female",
     "chief_complaint": "fever; cough", "vitals": {"temperature_c": 38.9, "heart_rate": 112, ...},
     "history": ["type 2 diabetes"], "assessment": "...", "diagnosis": "Community-acquired pneumonia"}

Vitals are optional one by one (a case often arrives with only some measured); blood pressure comes
as a pair. Validation messages name the field and the rule, never the value: they end up in job logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

SUPER_PROMPT = (
    "You are a clinical decision-support assistant helping a licensed clinician. "
    "Read the chief complaint, age, sex, vital signs and history. "
    "Reply with a short assessment that cites the findings that matter, then, on the last line, "
    "'Most likely diagnosis: <diagnosis>'. Name one diagnosis only. "
    "Do not invent findings. Your answer supports, and never replaces, the clinician's judgement."
)
DIAGNOSIS_PREFIX = "Most likely diagnosis:"
REPORT_DISCLAIMER = (
    "_Synthetic patient - educational decision support for clinicians in training; not a diagnosis for a real person._"
)

SEXES = ("female", "male")
# field: (low, high, how the case text shows it), in the order the case text lists them
VITALS: dict[str, tuple[float, float, str]] = {
    "temperature_c": (30.0, 45.0, "Temperature {:.1f} °C"),
    "heart_rate": (20, 250, "heart rate {}/min"),
    "respiratory_rate": (4, 70, "respiratory rate {}/min"),
    "systolic_bp": (50, 260, "systolic blood pressure {} mmHg"),
    "diastolic_bp": (20, 160, "diastolic blood pressure {} mmHg"),
    "spo2": (50, 100, "SpO2 {}%"),
}
BLOOD_PRESSURE = "blood pressure {}/{} mmHg"  # both halves known
TEXT_LIMITS = {"id": 64, "chief_complaint": 500, "assessment": 2000, "diagnosis": 200}
FIELDS = ("id", "age", "sex", "chief_complaint", "vitals", "history", "assessment", "diagnosis")


def _is_number(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _text(record: dict, field: str, problems: list[str]) -> None:
    v = record[field]
    if not isinstance(v, str) or not v.strip():
        problems.append(f"{field}: expected a non-empty string, got {type(v).__name__}")
    elif len(v) > TEXT_LIMITS[field]:
        problems.append(f"{field}: longer than {TEXT_LIMITS[field]} characters")


def validate_record(record: Any) -> list[str]:
    """Every problem with one record (empty when valid)."""
    if not isinstance(record, dict):
        return [f"expected a JSON object, got {type(record).__name__}"]
    problems = [f"{f}: required but missing" for f in FIELDS if f not in record]
    problems += [f"{f}: unknown field" for f in sorted(set(record) - set(FIELDS))]
    for field in ("id", "chief_complaint", "assessment", "diagnosis"):
        if field in record:
            _text(record, field, problems)
    if "age" in record:
        age = record["age"]
        if not isinstance(age, int) or isinstance(age, bool):
            problems.append(f"age: expected an integer, got {type(age).__name__}")
        elif not 0 <= age <= 120:
            problems.append("age: outside 0..120")
    if "sex" in record and record["sex"] not in SEXES:
        problems.append(f"sex: expected one of {', '.join(SEXES)}")
    if "history" in record:
        h = record["history"]
        if not isinstance(h, list) or not all(isinstance(i, str) and i.strip() for i in h):
            problems.append("history: expected a list of non-empty strings")
    if "vitals" in record:
        problems += _vital_problems(record["vitals"])
    return problems


def _vital_problems(vitals: Any) -> list[str]:
    if not isinstance(vitals, dict):
        return [f"vitals: expected an object, got {type(vitals).__name__}"]
    problems = [f"vitals.{k}: unknown field" for k in sorted(set(vitals) - set(VITALS))]
    for k, (low, high, _) in VITALS.items():
        if k not in vitals:
            continue
        if not _is_number(vitals[k]):
            problems.append(f"vitals.{k}: expected a number, got {type(vitals[k]).__name__}")
        elif not low <= vitals[k] <= high:
            problems.append(f"vitals.{k}: outside {low}..{high}")
    sbp, dbp = vitals.get("systolic_bp"), vitals.get("diastolic_bp")
    if ("systolic_bp" in vitals) != ("diastolic_bp" in vitals):
        problems.append("vitals: systolic_bp and diastolic_bp come as a pair")
    elif _is_number(sbp) and _is_number(dbp) and sbp <= dbp:
        problems.append("vitals: systolic_bp must exceed diastolic_bp")
    return problems


def content_key(record: dict) -> tuple:
    """What makes two records the same case (the id does not)."""
    v = record["vitals"]
    return (
        record["age"],
        record["sex"],
        " ".join(record["chief_complaint"].lower().split()),
        tuple(sorted(v.items())),
        tuple(sorted(h.strip().lower() for h in record["history"])),
        record["diagnosis"].strip().lower(),
    )


# ---------------------------------------------------------------- the formats the models learn


def vitals_text(vitals: Mapping[str, Any]) -> str:
    """The vitals that are present (None counts as absent), in a fixed order; 'not recorded' if none."""
    v = {k: x for k, x in vitals.items() if x is not None}
    pair = "systolic_bp" in v and "diastolic_bp" in v
    parts = []
    for k, (_, _, label) in VITALS.items():
        if pair and k == "systolic_bp":
            parts.append(BLOOD_PRESSURE.format(v["systolic_bp"], v["diastolic_bp"]))
        elif k in v and not (pair and k == "diastolic_bp"):
            parts.append(label.format(v[k]))
    return ", ".join(parts) or "not recorded"


def case_text(*, age: int, sex: str, complaint: str, vitals: Mapping[str, Any], history: Iterable[str]) -> str:
    """A case as the diagnosis model reads it (the user turn of every training example)."""
    return (
        f"Patient: {age}-year-old {sex}\n"
        f"Chief complaint: {complaint}\n"
        f"Vitals: {vitals_text(vitals)}\n"
        f"History: {'; '.join(history) or 'none reported'}"
    )


def user_prompt(record: dict) -> str:
    return case_text(
        age=record["age"],
        sex=record["sex"],
        complaint=record["chief_complaint"],
        vitals=record["vitals"],
        history=record["history"],
    )


def assistant_answer(record: dict) -> str:
    return f"Assessment: {record['assessment'].strip()}\n{DIAGNOSIS_PREFIX} {record['diagnosis'].strip()}"


def diagnosis_messages(case: str) -> list[dict]:
    """The chat the diagnosis model is asked: the super-prompt, then the case (training adds the answer)."""
    return [{"role": "system", "content": SUPER_PROMPT}, {"role": "user", "content": case}]


def to_example(record: dict) -> dict:
    """A training example: chat messages with the super-prompt, and the label for evaluation."""
    return {
        "messages": [
            *diagnosis_messages(user_prompt(record)),
            {"role": "assistant", "content": assistant_answer(record)},
        ],
        "diagnosis": record["diagnosis"].strip(),
    }


def case_request(
    patient_id: str, symptoms: Iterable[str], vitals: Mapping[str, Any], notes: str = "", question: str | None = None
) -> str:
    """The agent's user message for a structured case."""
    lines = [f"Patient {patient_id} presents with: {'; '.join(symptoms)}.", f"Vitals: {vitals_text(vitals)}."]
    if notes:
        lines.append(f"Notes: {notes}")
    if question:
        lines.append(f"Question from the clinician: {question}")
    lines.append("Assess the case and store a diagnostic report for this patient.")
    return "\n".join(lines)


def diagnostic_report(patient_id: str, assessment: str, case: str | None = None) -> str:
    """The markdown report stored for a case: the model's assessment ("Assessment: ...", then the diagnosis),
    after the case as the model read it when known."""
    case_section = f"## Case\n\n{case.strip()}\n\n" if case else ""
    return f"# Diagnostic report - {patient_id}\n\n{REPORT_DISCLAIMER}\n\n{case_section}{assessment.strip()}\n"


_DIAGNOSIS_RE = re.compile(re.escape(DIAGNOSIS_PREFIX) + r"\s*(.+)", re.IGNORECASE)


def normalize_diagnosis(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def extract_diagnosis(generated: str) -> str | None:
    """The diagnosis named in a model answer ('Most likely diagnosis: X'), normalised; None if absent."""
    matches = _DIAGNOSIS_RE.findall(generated)
    return normalize_diagnosis(matches[-1].splitlines()[0]) if matches else None
