"""Prompts of the clinical agent and the rendering of cases and reports (plain text, no templates engine).

The texts the fine-tuned model reads (the case, the super-prompt) and the report's layout have one
owner, ``training/clinical.py``, which the training jobs use too: the ``diagnose`` tool asks the model
exactly as training formatted its examples. It ships in the agent's package (see
stacks/constructs/agent_package.py).
"""

from __future__ import annotations

from agent.models import ClinicalCase, PatientRecord, Vitals
from training.clinical import REPORT_DISCLAIMER, case_request, case_text, diagnostic_report

__all__ = ["REPORT_DISCLAIMER", "SYSTEM_PROMPT", "case_prompt", "case_summary", "render_report"]

SYSTEM_PROMPT = """\
You are a clinical decision-support assistant used to train clinicians. Every patient you will see \
is SYNTHETIC: the cases are teaching material, and nothing you write is a diagnosis or treatment \
advice for a real person. Support the clinician in training; never replace their judgement.

For a case about a patient id (like P-000123):
1. Call get_patient_record with the patient id to read age, sex, conditions, medications and allergies.
2. Call diagnose with the patient id: it consults the fine-tuned clinical model with the case as the \
request gave it. (A case that names no patient id goes to diagnose as text, one line each: "Patient: \
<age>-year-old <sex>", "Chief complaint: <symptoms, separated by '; '>", "Vitals: <vitals>", "History: \
<conditions, separated by '; ', or 'none reported'>".)
3. Call upload_diagnostic_report with the patient id and a markdown report: "# Diagnostic report - \
<patient id>", the teaching disclaimer, then the answer of diagnose as it is.
4. Answer with the most likely diagnosis and say that the report is stored (the app returns its S3 URI).

If a tool reports an error or that a patient does not exist, say so plainly; do not invent records. \
Keep answers factual and brief."""


def _vitals(v: Vitals) -> dict[str, float | int | None]:
    """The case's vitals under the names of the clinical record (training/clinical.py)."""
    return {
        "temperature_c": v.temperature_c,
        "heart_rate": v.heart_rate_bpm,
        "respiratory_rate": v.respiratory_rate_per_min,
        "systolic_bp": v.systolic_bp_mmhg,
        "diastolic_bp": v.diastolic_bp_mmhg,
        "spo2": v.spo2_percent,
    }


def case_prompt(case: ClinicalCase, question: str | None = None) -> str:
    """The agent's user message for a structured case."""
    return case_request(case.patient_id, case.symptoms, _vitals(case.vitals), case.notes, question)


def case_summary(case: ClinicalCase, record: PatientRecord | None) -> str:
    """The case as the ``diagnose`` tool gives it to the fine-tuned model: the training format."""
    if record is None:
        raise ValueError(f"the case summary of {case.patient_id} needs the patient's record")
    return case_text(
        age=record.age,
        sex=record.sex,
        complaint="; ".join(case.symptoms),
        vitals=_vitals(case.vitals),
        history=record.conditions,
    )


def render_report(case: ClinicalCase, record: PatientRecord | None, assessment: str) -> str:
    """The markdown report the app stores itself when the agent did not upload one."""
    return diagnostic_report(case.patient_id, assessment, case_summary(case, record))
