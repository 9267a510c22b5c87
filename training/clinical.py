"""The clinical-record domain: schema, validation, the training super-prompt and chat formatting.

Pure standard library: the generator and ``preprocess.py`` run in a plain Python container.
Records are synthetic (see ``generate.py``); one record is a JSON object::

    {"id": "SYN-000001", "age": 54, "sex": "female",
     "chief_complaint": "...", "vitals": {"temperature_c": 38.9, "heart_rate": 112, ...},
     "history": ["type 2 diabetes"], "assessment": "...", "diagnosis": "Community-acquired pneumonia"}

Validation messages name the field and the rule, never the value: they end up in job logs.
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

SUPER_PROMPT = (
    "You are a clinical decision-support assistant helping a licensed clinician. "
    "Read the chief complaint, age, sex, vital signs and history. "
    "Reply with a short assessment that cites the findings that matter, then, on the last line, "
    "'Most likely diagnosis: <diagnosis>'. Name one diagnosis only. "
    "Do not invent findings. Your answer supports, and never replaces, the clinician's judgement."
)
DIAGNOSIS_PREFIX = "Most likely diagnosis:"

SEXES = ("female", "male")
# field: (low, high, unit label used in the prompt)
VITALS: dict[str, tuple[float, float, str]] = {
    "temperature_c": (30.0, 45.0, "Temperature {} °C"),
    "heart_rate": (20, 250, "heart rate {}/min"),
    "respiratory_rate": (4, 70, "respiratory rate {}/min"),
    "systolic_bp": (50, 260, "blood pressure {}"),
    "diastolic_bp": (20, 160, "/{} mmHg"),
    "spo2": (50, 100, "SpO2 {}%"),
}
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
    problems = [f"vitals.{k}: required but missing" for k in VITALS if k not in vitals]
    problems += [f"vitals.{k}: unknown field" for k in sorted(set(vitals) - set(VITALS))]
    for k, (low, high, _) in VITALS.items():
        if k not in vitals:
            continue
        if not _is_number(vitals[k]):
            problems.append(f"vitals.{k}: expected a number, got {type(vitals[k]).__name__}")
        elif not low <= vitals[k] <= high:
            problems.append(f"vitals.{k}: outside {low}..{high}")
    sbp, dbp = vitals.get("systolic_bp"), vitals.get("diastolic_bp")
    if _is_number(sbp) and _is_number(dbp) and sbp <= dbp:
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


def user_prompt(record: dict) -> str:
    v = record["vitals"]
    vitals = ", ".join(
        [
            VITALS["temperature_c"][2].format(v["temperature_c"]),
            VITALS["heart_rate"][2].format(v["heart_rate"]),
            VITALS["respiratory_rate"][2].format(v["respiratory_rate"]),
            VITALS["systolic_bp"][2].format(v["systolic_bp"]) + VITALS["diastolic_bp"][2].format(v["diastolic_bp"]),
            VITALS["spo2"][2].format(v["spo2"]),
        ]
    )
    history = "; ".join(record["history"]) or "none reported"
    return (
        f"Patient: {record['age']}-year-old {record['sex']}\n"
        f"Chief complaint: {record['chief_complaint']}\n"
        f"Vitals: {vitals}\n"
        f"History: {history}"
    )


def assistant_answer(record: dict) -> str:
    return f"Assessment: {record['assessment'].strip()}\n{DIAGNOSIS_PREFIX} {record['diagnosis'].strip()}"


def to_example(record: dict) -> dict:
    """A training example: chat messages with the super-prompt, and the label for evaluation."""
    return {
        "messages": [
            {"role": "system", "content": SUPER_PROMPT},
            {"role": "user", "content": user_prompt(record)},
            {"role": "assistant", "content": assistant_answer(record)},
        ],
        "diagnosis": record["diagnosis"].strip(),
    }


_DIAGNOSIS_RE = re.compile(re.escape(DIAGNOSIS_PREFIX) + r"\s*(.+)", re.IGNORECASE)


def normalize_diagnosis(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def extract_diagnosis(generated: str) -> str | None:
    """The diagnosis named in a model answer ('Most likely diagnosis: X'), normalised; None if absent."""
    matches = _DIAGNOSIS_RE.findall(generated)
    return normalize_diagnosis(matches[-1].splitlines()[0]) if matches else None
