"""Synthetic patients and the patient table (DynamoDB, partition key ``patient_id``).

No real patient data exists anywhere in this project: ``synthetic_patients`` generates the records
deterministically from a seed, and every stored item carries ``synthetic: true``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from typing import Any

from agent.errors import PatientNotFound
from agent.models import PatientRecord, validate_patient_id

_FIRST = ["Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn"]
_LAST = ["Example", "Sample", "Testperson", "Placeholder", "Synthetic", "Mock", "Fictive", "Demo"]
_CONDITIONS = [
    "hypertension",
    "type 2 diabetes",
    "asthma",
    "COPD",
    "atrial fibrillation",
    "hypothyroidism",
    "chronic kidney disease stage 3",
    "hyperlipidemia",
    "migraine",
    "osteoarthritis",
]
_MEDICATIONS = {
    "hypertension": "lisinopril 10 mg daily",
    "type 2 diabetes": "metformin 500 mg twice daily",
    "asthma": "salbutamol inhaler as needed",
    "COPD": "tiotropium inhaler daily",
    "atrial fibrillation": "apixaban 5 mg twice daily",
    "hypothyroidism": "levothyroxine 75 mcg daily",
    "chronic kidney disease stage 3": "none specific",
    "hyperlipidemia": "atorvastatin 20 mg daily",
    "migraine": "sumatriptan 50 mg as needed",
    "osteoarthritis": "paracetamol 1 g as needed",
}
_ALLERGIES = ["penicillin", "sulfonamides", "latex", "peanuts", "iodinated contrast"]

# Fields stored beside the record that the agent never needs (and never gets back from the table).
PRIVATE_FIELDS = ("name", "contact_phone", "synthetic")

# The seed case's patient (a 45-year-old man): the demo stores it locally and dev seeds it with the synthetic
# patients, so the seed case (ops/cases/seed-case.json) can be sent to a deployed agent too.
SEED_PATIENT: dict[str, Any] = {
    "patient_id": "P-000045",
    "age": 45,
    "sex": "male",
    "conditions": ["hypertension"],
    "medications": ["lisinopril 10 mg daily"],
    "allergies": [],
    "name": "Demo Example",
    "synthetic": True,
}


def patient_id(n: int) -> str:
    return f"P-{n:06d}"


def synthetic_patients(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` synthetic patients ``P-000001``...: the same seed always gives the same patients."""
    if count < 0 or count > 999_999:
        raise ValueError(f"count must be between 0 and 999999, not {count}")
    rng = random.Random(seed)
    patients = []
    for n in range(1, count + 1):
        conditions = rng.sample(_CONDITIONS, rng.randint(0, 3))
        record = PatientRecord(
            patient_id=patient_id(n),
            age=rng.randint(18, 90),
            sex=rng.choice(["female", "male"]),
            conditions=conditions,
            medications=[_MEDICATIONS[c] for c in conditions if _MEDICATIONS[c] != "none specific"],
            allergies=rng.sample(_ALLERGIES, rng.randint(0, 2)),
        )
        patients.append(
            record.model_dump()
            | {
                "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                "contact_phone": f"555-01{rng.randint(0, 99):02d}",  # fictional numbering range
                "synthetic": True,
            }
        )
    return patients


class PatientStore:
    """Reads (and, for seeding, writes) the patient table through an injected DynamoDB client."""

    def __init__(self, table: str, client: Any):
        self.table = table
        self.client = client
        self._names = {f"#{f}": f for f in PatientRecord.model_fields}

    def get(self, patient_id: str) -> PatientRecord:
        """The patient's clinical fields only (a projection); ``PatientNotFound`` when absent."""
        validate_patient_id(patient_id)
        item = self.client.get_item(
            TableName=self.table,
            Key={"patient_id": {"S": patient_id}},
            ProjectionExpression=", ".join(self._names),
            ExpressionAttributeNames=self._names,
        ).get("Item")
        if not item:
            raise PatientNotFound(f"no patient {patient_id} in table {self.table}")
        from boto3.dynamodb.types import TypeDeserializer  # here: synth imports this module for the seed data

        des = TypeDeserializer()
        return PatientRecord.model_validate({k: des.deserialize(v) for k, v in item.items()})

    def put_all(self, patients: Iterable[dict[str, Any]]) -> int:
        """Write items (from ``synthetic_patients``) in batches of 25; returns how many were written."""
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        items = [{k: ser.serialize(v) for k, v in p.items()} for p in patients]
        for item in items:
            validate_patient_id(item["patient_id"]["S"])
        for i in range(0, len(items), 25):
            pending = {self.table: [{"PutRequest": {"Item": it}} for it in items[i : i + 25]]}
            for attempt in range(8):
                pending = self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)  # throttled: back off, then retry what is left
            else:
                raise RuntimeError(f"table {self.table}: items still unprocessed after 8 attempts")
        return len(items)
