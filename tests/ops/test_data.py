"""make data: generated or given records, checked against the preprocessing schema, uploaded where the pipeline
reads them (idempotent by checksum)."""

from __future__ import annotations

import json

from ops import outputs
from training.clinical import validate_record


def dataset(env):
    s3 = env.client("s3")
    bucket = env.values[outputs.DATASETS_BUCKET]
    prefix = env.settings.training.dataset_prefix.strip("/") + "/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode() for k in keys}


def test_generated_records_land_where_the_pipeline_reads_them(env):
    env.deploy()
    result = env.run(env.cloud(), "data", "--env", "dev", "--count", "40", "--seed", "3")
    assert result.exit_code == 0, result.output
    ((key, body),) = dataset(env).items()
    assert key == "clinical/raw/records.jsonl"  # training.dataset_prefix, which the pipeline's DatasetUri names
    records = [json.loads(line) for line in body.splitlines()]
    assert len(records) == 40 and all(validate_record(r) == [] for r in records)
    again = env.run(env.cloud(), "data", "--env", "dev", "--count", "40", "--seed", "3")
    assert "already holds these 40 records (same SHA-256): nothing uploaded" in again.output


def test_a_record_that_fails_the_schema_is_named_and_nothing_is_uploaded(env, tmp_path):
    env.deploy()
    good = {
        "id": "SYN-1",
        "age": 45,
        "sex": "male",
        "chief_complaint": "fever and cough",
        "history": [],
        "vitals": {
            "temperature_c": 38.5,
            "heart_rate": 98,
            "respiratory_rate": 18,
            "systolic_bp": 128,
            "diastolic_bp": 80,
            "spo2": 97,
        },
        "assessment": "febrile cough",
        "diagnosis": "Community-acquired pneumonia",
    }
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "SYN-2", "age": 130}) + "\n")
    result = env.run(env.cloud(), "data", "--env", "dev", "--from", str(path))
    assert result.exit_code == 1
    assert "1 of 2 record(s) fail the preprocessing schema" in result.output
    assert "records.jsonl line 2: age: outside 0..120" in result.output
    assert dataset(env) == {}


def test_other_files_under_the_prefix_are_named_and_replace_removes_them(env):
    env.deploy()
    env.client("s3").put_object(Bucket=env.values[outputs.DATASETS_BUCKET], Key="clinical/raw/old.jsonl", Body=b"{}\n")
    kept = env.run(env.cloud(), "data", "--env", "dev", "--count", "10")
    assert "the pipeline also reads clinical/raw/old.jsonl" in kept.output
    assert sorted(dataset(env)) == ["clinical/raw/old.jsonl", "clinical/raw/records.jsonl"]
    replaced = env.run(env.cloud(), "data", "--env", "dev", "--count", "10", "--replace")
    assert replaced.exit_code == 0
    assert sorted(dataset(env)) == ["clinical/raw/records.jsonl"]
