"""Prompts of the clinical agent and the rendering of cases and reports (plain text, no templates engine)."""

from __future__ import annotations

from agent.models import ClinicalCase, PatientRecord, Vitals

SYSTEM_PROMPT = """\
You are a clinical decision-support assistant used to train clinicians. Every patient you will see \
is SYNTHETIC: the cases are teaching material, and nothing you write is a diagnosis or treatment \
advice for a real person. Support the clinician in training; never replace their judgement.

For a case about a patient id (like P-000123):
1. Call get_patient_record with the patient id to read age, sex, conditions, medications and allergies.
2. Call diagnose with a concise case summary (record + presenting symptoms + vitals); it consults the \
fine-tuned clinical model.
3. Call upload_diagnostic_report with the patient id and a markdown report (summary, differential \
diagnosis, recommended investigations, red flags, and the teaching disclaimer).
4. Answer with a short summary and the report's S3 URI.

If a tool reports an error or that a patient does not exist, say so plainly; do not invent records. \
Keep answers factual and brief."""

CLINICAL_SUPER_PROMPT = """\
You are a board-certified internist writing a teaching assessment for clinicians in training. The \
patient is synthetic; this is an educational exercise, not medical advice for a real person.

Given the case, answer in markdown with exactly these sections:
## Summary - one or two sentences.
## Differential diagnosis - a numbered list of up to five diagnoses, most likely first, each with a \
likelihood (high/medium/low) and the findings that support or argue against it.
## Recommended investigations - the tests that would discriminate between them.
## Red flags - findings that require urgent escalation.
## Teaching points - two or three points for the trainee.
Consider the patient's conditions, medications and allergies (drug interactions, contraindications). \
Do not invent findings that are not in the case."""

REPORT_DISCLAIMER = (
    "_Synthetic patient - educational decision support for clinicians in training; not a diagnosis for a real person._"
)


def _vitals_text(v: Vitals) -> str:
    parts = []
    if v.heart_rate_bpm is not None:
        parts.append(f"HR {v.heart_rate_bpm}/min")
    if v.systolic_bp_mmhg is not None or v.diastolic_bp_mmhg is not None:
        parts.append(f"BP {v.systolic_bp_mmhg or '?'}/{v.diastolic_bp_mmhg or '?'} mmHg")
    if v.respiratory_rate_per_min is not None:
        parts.append(f"RR {v.respiratory_rate_per_min}/min")
    if v.temperature_c is not None:
        parts.append(f"T {v.temperature_c:.1f} C")
    if v.spo2_percent is not None:
        parts.append(f"SpO2 {v.spo2_percent}%")
    return ", ".join(parts) or "not recorded"


def case_prompt(case: ClinicalCase, question: str | None = None) -> str:
    """The agent's user message for a structured case."""
    lines = [
        f"Patient {case.patient_id} presents with: {'; '.join(case.symptoms)}.",
        f"Vitals: {_vitals_text(case.vitals)}.",
    ]
    if case.notes:
        lines.append(f"Notes: {case.notes}")
    if question:
        lines.append(f"Question from the clinician: {question}")
    lines.append("Assess the case and store a diagnostic report for this patient.")
    return "\n".join(lines)


def case_summary(case: ClinicalCase, record: PatientRecord | None) -> str:
    """The case as given to the ``diagnose`` tool (the fine-tuned model)."""
    lines = [f"Patient {case.patient_id}"]
    if record:
        lines[0] += f", {record.age}-year-old {record.sex}"
        lines.append(f"Known conditions: {', '.join(record.conditions) or 'none'}")
        lines.append(f"Medications: {', '.join(record.medications) or 'none'}")
        lines.append(f"Allergies: {', '.join(record.allergies) or 'none known'}")
    lines.append(f"Presenting symptoms: {'; '.join(case.symptoms)}")
    lines.append(f"Vitals: {_vitals_text(case.vitals)}")
    if case.notes:
        lines.append(f"Notes: {case.notes}")
    return "\n".join(lines)


def render_report(case: ClinicalCase, record: PatientRecord | None, assessment: str) -> str:
    """The markdown report the app stores itself when the agent did not upload one."""
    return "\n".join(
        [
            f"# Diagnostic report - {case.patient_id}",
            "",
            REPORT_DISCLAIMER,
            "",
            "## Case",
            "",
            case_summary(case, record),
            "",
            "## Assessment",
            "",
            assessment.strip(),
            "",
        ]
    )
