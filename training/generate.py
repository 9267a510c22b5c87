"""Generate synthetic clinical data (JSON lines). No real patient data anywhere.

Records (the fine-tuning dataset): each pairs a chief complaint, vitals (some may be missing) and
history with an assessment and the most likely diagnosis, drawn from a small table of textbook
presentations.

A base model's corpus (``--corpus``, what the demo's tiny model is pretrained on):
- agent transcripts (``"kind": "agent"``): the conversation the clinical agent has for one case, as
  OpenAI chat messages with the agent's own system prompt and tools (``--agent-spec``, a JSON file
  ``{"system_prompt", "tools"}``): it reads the patient record, asks ``diagnose`` with the case in the
  diagnosis model's format, stores the report with ``upload_diagnostic_report`` and answers. Tool
  calls carry their arguments as objects, ready for the Llama 3.2 chat template;
- unpaired cases (``"kind": "unpaired"``): a case in the training format answered with the assessment
  of another case, so a model learns the format and the words, not the diagnosis.

The same --seed gives the same file, byte for byte.

    python training/generate.py --output data/raw/records.jsonl --count 2000 --seed 7
    python training/generate.py --corpus --agent-spec spec.json --output corpus/base.jsonl --count 600
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from clinical import (
    assistant_answer,
    case_request,
    diagnostic_report,
    to_example,
    validate_record,
)


@dataclass(frozen=True)
class Condition:
    diagnosis: str
    ages: tuple[int, int]
    key_symptoms: tuple[str, ...]  # at least one of these is in every complaint
    other_symptoms: tuple[str, ...]  # shared with other conditions
    # vital: (low, high); anything not listed is drawn from NORMAL
    vitals: dict
    history: tuple[str, ...]
    findings: str


NORMAL = {
    "temperature_c": (36.4, 37.2),
    "heart_rate": (62, 88),
    "respiratory_rate": (12, 18),
    "systolic_bp": (108, 134),
    "diastolic_bp": (66, 84),
    "spo2": (96, 100),
}
# how often a vital is measured in a case (blood pressure as a pair)
MEASURED = {"temperature_c": 0.9, "heart_rate": 0.9, "respiratory_rate": 0.6, "systolic_bp": 0.7, "spo2": 0.6}
BACKGROUND = ("hypertension", "hyperlipidemia", "seasonal allergies", "hypothyroidism", "osteoarthritis")

CONDITIONS = (
    Condition(
        "Community-acquired pneumonia",
        (25, 90),
        ("cough", "productive cough", "yellow sputum", "pleuritic chest pain"),
        ("fever", "chills", "shortness of breath", "fatigue"),
        {"temperature_c": (38.2, 40.0), "heart_rate": (96, 124), "respiratory_rate": (22, 30), "spo2": (88, 94)},
        ("smoker", "COPD", "type 2 diabetes"),
        "fever, tachypnoea and hypoxaemia with a cough point to a lower respiratory tract infection",
    ),
    Condition(
        "Acute myocardial infarction",
        (45, 90),
        ("crushing chest pain", "chest pain radiating to the left arm", "chest pressure at rest"),
        ("sweating", "nausea", "shortness of breath"),
        {"heart_rate": (90, 122), "systolic_bp": (95, 165), "spo2": (92, 97)},
        ("hypertension", "hyperlipidemia", "smoker", "type 2 diabetes"),
        "ongoing ischaemic-type chest pain with sweating in a patient with vascular risk factors",
    ),
    Condition(
        "Urinary tract infection",
        (18, 85),
        ("burning on urination", "urinary frequency", "cloudy urine", "urgency to pass urine"),
        ("lower abdominal discomfort", "fatigue"),
        {"temperature_c": (37.0, 38.2)},
        ("previous urinary tract infections", "type 2 diabetes"),
        "dysuria and frequency without systemic compromise suggest a lower urinary tract infection",
    ),
    Condition(
        "Acute appendicitis",
        (10, 45),
        ("right lower abdominal pain", "pain moving from the navel to the right lower abdomen"),
        ("nausea", "vomiting", "loss of appetite", "fever"),
        {"temperature_c": (37.8, 38.8), "heart_rate": (94, 116)},
        (),
        "migratory right iliac fossa pain with anorexia and low-grade fever",
    ),
    Condition(
        "Asthma exacerbation",
        (8, 60),
        ("wheezing", "tight chest", "inhaler not helping"),
        ("shortness of breath", "cough at night", "fatigue"),
        {"heart_rate": (100, 125), "respiratory_rate": (24, 32), "spo2": (89, 95)},
        ("asthma", "allergic rhinitis", "eczema"),
        "wheeze, tachypnoea and reduced saturation in a patient with known reactive airways",
    ),
    Condition(
        "Migraine",
        (16, 60),
        ("throbbing one-sided headache", "visual zigzags before the headache", "headache worse with movement"),
        ("nausea", "light sensitivity", "fatigue"),
        {},
        ("migraines", "oral contraceptive use"),
        "recurrent unilateral pulsating headache with photophobia and normal vital signs",
    ),
    Condition(
        "Diabetic ketoacidosis",
        (12, 50),
        ("extreme thirst", "passing a lot of urine", "fruity breath"),
        ("vomiting", "abdominal pain", "drowsiness", "rapid breathing"),
        {"heart_rate": (108, 132), "respiratory_rate": (26, 34), "systolic_bp": (92, 112)},
        ("type 1 diabetes", "missed insulin doses"),
        "polyuria, polydipsia, vomiting and deep rapid breathing in a patient with type 1 diabetes",
    ),
    Condition(
        "Pulmonary embolism",
        (25, 85),
        ("sudden sharp chest pain when breathing in", "sudden breathlessness", "coughing up blood"),
        ("racing heart", "calf swelling", "shortness of breath"),
        {"heart_rate": (104, 130), "respiratory_rate": (22, 30), "spo2": (86, 93)},
        ("recent hip surgery", "long-haul flight last week", "previous deep vein thrombosis", "active cancer"),
        "acute pleuritic chest pain with tachycardia and hypoxaemia and a thromboembolic risk factor",
    ),
    Condition(
        "Acute gastroenteritis",
        (5, 80),
        ("diarrhoea", "watery stools", "others who shared the meal are unwell"),
        ("vomiting", "stomach cramps", "fever", "nausea"),
        {"temperature_c": (37.4, 38.4), "heart_rate": (92, 110)},
        (),
        "acute diarrhoea and vomiting with mild dehydration and no peritonism",
    ),
    Condition(
        "Ischemic stroke",
        (50, 95),
        ("sudden weakness of the right arm", "slurred speech", "face drooping on one side"),
        ("numbness on one side", "confusion", "headache"),
        {"systolic_bp": (160, 210), "diastolic_bp": (90, 118)},
        ("atrial fibrillation", "hypertension", "previous transient ischaemic attack"),
        "sudden focal neurological deficit with hypertension in a patient with embolic risk",
    ),
    Condition(
        "Cellulitis",
        (20, 90),
        ("red, hot, swollen lower leg", "spreading redness on the shin", "painful swollen leg around a cut"),
        ("fever", "chills", "fatigue"),
        {"temperature_c": (37.8, 38.9), "heart_rate": (88, 108)},
        ("type 2 diabetes", "venous insufficiency", "obesity"),
        "a spreading, warm, tender erythema with fever around a skin break",
    ),
)


def _draw(rng: random.Random, low: float, high: float, decimals: int) -> float | int:
    value = rng.uniform(low, high)
    return round(value, decimals) if decimals else int(round(value))


def _vitals(rng: random.Random, c: Condition) -> dict:
    ranges = {**NORMAL, **c.vitals}
    drawn = {k: _draw(rng, ranges[k][0], ranges[k][1], 1 if k == "temperature_c" else 0) for k in NORMAL}
    if drawn["systolic_bp"] <= drawn["diastolic_bp"]:
        drawn["systolic_bp"] = drawn["diastolic_bp"] + 20
    kept = {k for k, p in MEASURED.items() if rng.random() < p}
    if "systolic_bp" in kept:
        kept.add("diastolic_bp")
    return {k: v for k, v in drawn.items() if k in kept}


def make_record(rng: random.Random, index: int) -> dict:
    c = rng.choice(CONDITIONS)
    age = rng.randint(*c.ages)
    sex = rng.choice(("female", "male"))
    vitals = _vitals(rng, c)
    history = sorted(
        set(rng.sample(c.history, k=rng.randint(0, len(c.history))) if c.history else [])
        | ({rng.choice(BACKGROUND)} if rng.random() < 0.3 else set())
    )
    symptoms = [rng.choice(c.key_symptoms)]
    symptoms += rng.sample([s for s in (*c.key_symptoms, *c.other_symptoms) if s not in symptoms], rng.randint(0, 2))
    rng.shuffle(symptoms)
    complaint = "; ".join(symptoms)
    return {
        "id": f"SYN-{index:06d}",
        "age": age,
        "sex": sex,
        "chief_complaint": complaint,
        "vitals": vitals,
        "history": history,
        "assessment": f"{c.findings[0].upper()}{c.findings[1:]}.",
        "diagnosis": c.diagnosis,
    }


def generate(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    records = [make_record(rng, i + 1) for i in range(count)]
    for r in records:  # the generator must only ever produce valid records
        assert not validate_record(r), validate_record(r)
    return records


# ---------------------------------------------------------------- the base model's corpus

MEDICATIONS = {
    "hypertension": "lisinopril 10 mg daily",
    "type 2 diabetes": "metformin 500 mg twice daily",
    "type 1 diabetes": "insulin glargine 20 units nightly",
    "asthma": "salbutamol inhaler as needed",
    "COPD": "tiotropium inhaler daily",
    "atrial fibrillation": "apixaban 5 mg twice daily",
    "hypothyroidism": "levothyroxine 75 mcg daily",
    "hyperlipidemia": "atorvastatin 20 mg daily",
    "migraines": "sumatriptan 50 mg as needed",
    "osteoarthritis": "paracetamol 1 g as needed",
}
ALLERGIES = ("penicillin", "sulfonamides", "latex", "peanuts", "iodinated contrast")
DAYS = ("one", "two", "three", "four", "five")
MAX_PATIENT = 60  # patient ids P-000001..P-000060: the synthetic patient table the demo serves, and more


def _call(name: str, arguments: dict) -> dict:
    return {
        "role": "assistant",
        "tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}],
    }


def _notes(rng: random.Random, record: dict, symptoms: list[str]) -> str:
    if rng.random() < 0.4:
        return ""
    who = "woman" if record["sex"] == "female" else "man"
    parts = [f"{record['age']}-year-old {who}, {' and '.join(symptoms)} for {rng.choice(DAYS)} days"]
    v = record["vitals"]
    if "temperature_c" in v:
        parts.append(f"temperature {v['temperature_c'] * 9 / 5 + 32:.1f} °F")
    if "heart_rate" in v:
        parts.append(f"heart rate {v['heart_rate']}")
    return ", ".join(parts) + "."


def _report_uri(rng: random.Random, patient_id: str) -> str:
    when = datetime(2025, 1, 1) + timedelta(seconds=rng.randint(0, 6 * 365 * 86400), microseconds=rng.randint(0, 10**6))
    return f"s3://clinical-reports/reports/{patient_id}/{when.strftime('%Y%m%dT%H%M%S.%fZ')}.md"


def make_transcript(rng: random.Random, index: int, spec: dict) -> dict:
    """One agent conversation for a fresh synthetic case: read the record, ask diagnose, store the
    report (the assessment as diagnose gave it), answer with the diagnosis."""
    record = make_record(rng, index)
    patient_id = f"P-{rng.randint(1, MAX_PATIENT):06d}"
    symptoms = record["chief_complaint"].split("; ")
    patient = {
        "patient_id": patient_id,
        "age": record["age"],
        "sex": record["sex"],
        "conditions": record["history"],
        "medications": [MEDICATIONS[h] for h in record["history"] if h in MEDICATIONS],
        "allergies": rng.sample(ALLERGIES, rng.choice((0, 0, 1, 2))),
    }
    answer = assistant_answer(record)
    request = case_request(patient_id, symptoms, record["vitals"], _notes(rng, record, symptoms))
    return {
        "kind": "agent",
        "tools": spec["tools"],
        "messages": [
            {"role": "system", "content": spec["system_prompt"]},
            {"role": "user", "content": request},
            _call("get_patient_record", {"patient_id": patient_id}),
            {"role": "tool", "content": json.dumps({"found": True, "record": patient}, ensure_ascii=False)},
            _call("diagnose", {"case": patient_id}),  # a structured case: the tool reads it as the request gave it
            {"role": "tool", "content": answer},
            _call(
                "upload_diagnostic_report", {"patient_id": patient_id, "report": diagnostic_report(patient_id, answer)}
            ),
            {"role": "tool", "content": _report_uri(rng, patient_id)},
            {
                "role": "assistant",
                "content": f"{answer.splitlines()[-1]}\nThe diagnostic report for {patient_id} is stored.",
            },
        ],
    }


def make_corpus(count: int, seed: int, spec: dict) -> list[dict]:
    """``count`` agent transcripts, then ``count`` cases each answered with the assessment of another case.

    The unpaired cases teach a base model what cases and assessments look like, not which assessment fits
    which case: that mapping is left to the fine-tune, so the base answers at about chance.
    """
    rng = random.Random(seed)
    transcripts = [make_transcript(rng, i + 1, spec) for i in range(count)]
    cases = generate(count, seed + 1)
    answers = [assistant_answer(r) for r in cases]
    rng.shuffle(answers)
    unpaired = [
        {"kind": "unpaired", "messages": [*to_example(r)["messages"][:2], {"role": "assistant", "content": a}]}
        for r, a in zip(cases, answers, strict=True)
    ]
    return transcripts + unpaired


def load_agent_spec(path: Path) -> dict:
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: --agent-spec {path}: not a readable JSON file ({e})") from None
    tools = spec.get("tools") if isinstance(spec, dict) else None
    names = {t.get("function", {}).get("name") for t in tools or [] if isinstance(t, dict)}
    missing = {"get_patient_record", "diagnose", "upload_diagnostic_report"} - names
    if not isinstance(spec, dict) or not isinstance(spec.get("system_prompt"), str) or missing:
        raise SystemExit(
            f"error: --agent-spec {path}: expected {{'system_prompt': str, 'tools': [...]}} with the tools "
            f"get_patient_record, diagnose, upload_diagnostic_report (missing: {', '.join(sorted(missing)) or 'none'})"
        )
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--output", required=True, type=Path, help="JSON-lines file to write")
    parser.add_argument("--count", type=int, default=1000, help="number of records or transcripts (default 1000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--corpus", action="store_true", help="a base model's corpus instead of records")
    parser.add_argument("--agent-spec", type=Path, help="the agent's system prompt and tools (with --corpus)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.corpus != bool(args.agent_spec):
        parser.error("--corpus and --agent-spec go together")
    if args.corpus:
        rows = make_corpus(args.count, args.seed, load_agent_spec(args.agent_spec))
        what = "agent transcripts and as many unpaired cases"
    else:
        rows, what = generate(args.count, args.seed), "synthetic records"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # records with sorted keys; the corpus keeps the tools' key order (the chat template renders them as given)
    lines = "".join(json.dumps(r, sort_keys=not args.corpus, ensure_ascii=False) + "\n" for r in rows)
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(lines, encoding="utf-8")
    tmp.replace(args.output)
    print(f"wrote {args.count} {what} to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
