"""Generate a synthetic clinical dataset (JSON lines). No real patient data anywhere.

Each record pairs a chief complaint, vitals and history with an assessment and the most likely
diagnosis, drawn from a small table of textbook presentations. The same --seed gives the same
file, byte for byte.

    python training/generate.py --output data/raw/records.jsonl --count 2000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from clinical import validate_record


@dataclass(frozen=True)
class Condition:
    diagnosis: str
    ages: tuple[int, int]
    complaints: tuple[str, ...]
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
BACKGROUND = ("hypertension", "hyperlipidemia", "seasonal allergies", "hypothyroidism", "osteoarthritis")

CONDITIONS = (
    Condition(
        "Community-acquired pneumonia",
        (25, 90),
        (
            "productive cough and fever for three days",
            "fever, chills and shortness of breath",
            "cough with yellow sputum and pleuritic chest pain",
        ),
        {"temperature_c": (38.3, 40.0), "heart_rate": (98, 124), "respiratory_rate": (22, 30), "spo2": (88, 94)},
        ("smoker", "COPD", "type 2 diabetes"),
        "fever, tachypnoea and hypoxaemia with a productive cough point to a lower respiratory tract infection",
    ),
    Condition(
        "Acute myocardial infarction",
        (45, 90),
        (
            "crushing chest pain radiating to the left arm",
            "chest pressure with sweating and nausea",
            "sudden chest tightness at rest for forty minutes",
        ),
        {"heart_rate": (90, 122), "systolic_bp": (95, 165), "spo2": (92, 97)},
        ("hypertension", "hyperlipidemia", "smoker", "type 2 diabetes"),
        "ongoing ischaemic-type chest pain with sweating in a patient with vascular risk factors",
    ),
    Condition(
        "Urinary tract infection",
        (18, 85),
        (
            "burning on urination and frequency",
            "painful urination with lower abdominal discomfort",
            "urgency and cloudy urine for two days",
        ),
        {"temperature_c": (37.0, 38.2)},
        ("previous urinary tract infections", "type 2 diabetes"),
        "dysuria and frequency without systemic compromise suggest a lower urinary tract infection",
    ),
    Condition(
        "Acute appendicitis",
        (10, 45),
        (
            "pain that started around the navel and moved to the right lower abdomen",
            "right lower abdominal pain with nausea and loss of appetite",
            "worsening right-sided abdominal pain since yesterday",
        ),
        {"temperature_c": (37.8, 38.8), "heart_rate": (94, 116)},
        (),
        "migratory right iliac fossa pain with anorexia and low-grade fever",
    ),
    Condition(
        "Asthma exacerbation",
        (8, 60),
        (
            "wheezing and shortness of breath",
            "tight chest and wheeze after a cold",
            "breathlessness not relieved by the usual inhaler",
        ),
        {"heart_rate": (100, 125), "respiratory_rate": (24, 32), "spo2": (89, 95)},
        ("asthma", "allergic rhinitis", "eczema"),
        "wheeze, tachypnoea and reduced saturation in a patient with known reactive airways",
    ),
    Condition(
        "Migraine",
        (16, 60),
        (
            "throbbing one-sided headache with light sensitivity",
            "headache with nausea and visual zigzags",
            "pulsating headache worse with movement",
        ),
        {},
        ("migraines", "oral contraceptive use"),
        "recurrent unilateral pulsating headache with photophobia and normal vital signs",
    ),
    Condition(
        "Diabetic ketoacidosis",
        (12, 50),
        (
            "vomiting, thirst and passing a lot of urine",
            "abdominal pain, vomiting and drowsiness",
            "rapid breathing and extreme thirst",
        ),
        {"heart_rate": (108, 132), "respiratory_rate": (26, 34), "systolic_bp": (92, 112)},
        ("type 1 diabetes", "missed insulin doses"),
        "polyuria, polydipsia, vomiting and deep rapid breathing in a patient with type 1 diabetes",
    ),
    Condition(
        "Pulmonary embolism",
        (25, 85),
        (
            "sudden sharp chest pain when breathing in",
            "sudden breathlessness and a racing heart",
            "chest pain and coughing up a little blood",
        ),
        {"heart_rate": (104, 130), "respiratory_rate": (22, 30), "spo2": (86, 93)},
        ("recent hip surgery", "long-haul flight last week", "previous deep vein thrombosis", "active cancer"),
        "acute pleuritic chest pain with tachycardia and hypoxaemia and a thromboembolic risk factor",
    ),
    Condition(
        "Acute gastroenteritis",
        (5, 80),
        (
            "diarrhoea and vomiting since last night",
            "watery stools and stomach cramps",
            "vomiting after a shared meal, others also unwell",
        ),
        {"temperature_c": (37.4, 38.4), "heart_rate": (92, 110)},
        (),
        "acute diarrhoea and vomiting with mild dehydration and no peritonism",
    ),
    Condition(
        "Ischemic stroke",
        (50, 95),
        (
            "sudden weakness of the right arm and slurred speech",
            "face drooping on one side since an hour ago",
            "sudden difficulty speaking and numbness on one side",
        ),
        {"systolic_bp": (160, 210), "diastolic_bp": (90, 118)},
        ("atrial fibrillation", "hypertension", "previous transient ischaemic attack"),
        "sudden focal neurological deficit with hypertension in a patient with embolic risk",
    ),
    Condition(
        "Cellulitis",
        (20, 90),
        (
            "red, hot, swollen lower leg",
            "spreading redness and pain on the shin",
            "painful swollen leg with a small cut",
        ),
        {"temperature_c": (37.8, 38.9), "heart_rate": (88, 108)},
        ("type 2 diabetes", "venous insufficiency", "obesity"),
        "a spreading, warm, tender erythema with fever around a skin break",
    ),
)


def _draw(rng: random.Random, low: float, high: float, decimals: int) -> float | int:
    value = rng.uniform(low, high)
    return round(value, decimals) if decimals else int(round(value))


def make_record(rng: random.Random, index: int) -> dict:
    c = rng.choice(CONDITIONS)
    age = rng.randint(*c.ages)
    sex = rng.choice(("female", "male"))
    ranges = {**NORMAL, **c.vitals}
    vitals = {k: _draw(rng, ranges[k][0], ranges[k][1], 1 if k == "temperature_c" else 0) for k in NORMAL}
    if vitals["systolic_bp"] <= vitals["diastolic_bp"]:
        vitals["systolic_bp"] = vitals["diastolic_bp"] + 20
    history = sorted(
        set(rng.sample(c.history, k=rng.randint(0, len(c.history))) if c.history else [])
        | ({rng.choice(BACKGROUND)} if rng.random() < 0.3 else set())
    )
    complaint = rng.choice(c.complaints)
    return {
        "id": f"SYN-{index:06d}",
        "age": age,
        "sex": sex,
        "chief_complaint": complaint,
        "vitals": vitals,
        "history": history,
        "assessment": f"{age}-year-old {sex} with {complaint}; {c.findings}.",
        "diagnosis": c.diagnosis,
    }


def generate(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    records = [make_record(rng, i + 1) for i in range(count)]
    for r in records:  # the generator must only ever produce valid records
        assert not validate_record(r), validate_record(r)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--output", required=True, type=Path, help="JSON-lines file to write")
    parser.add_argument("--count", type=int, default=1000, help="number of records (default 1000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in generate(args.count, args.seed))
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(lines)
    tmp.replace(args.output)
    print(f"wrote {args.count} synthetic records to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
