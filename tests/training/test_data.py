"""Synthetic data, validation and preprocessing, through the programs' entry points."""

from __future__ import annotations

import json

import pytest

from tests.training.conftest import program, run
from training.clinical import (
    DIAGNOSIS_PREFIX,
    SUPER_PROMPT,
    content_key,
    extract_diagnosis,
    to_example,
    validate_record,
)


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _good(raw_dir) -> dict:
    return _records(raw_dir / "records.jsonl")[0]


def test_generator_is_deterministic_and_yields_valid_distinct_records(raw_dir, tmp_path):
    again = tmp_path / "again.jsonl"
    other = tmp_path / "other.jsonl"
    run([program("generate.py"), "--output", str(again), "--count", "240", "--seed", "11"])
    run([program("generate.py"), "--output", str(other), "--count", "240", "--seed", "12"])
    assert again.read_bytes() == (raw_dir / "records.jsonl").read_bytes()
    assert other.read_bytes() != again.read_bytes()
    records = _records(again)
    assert all(validate_record(r) == [] for r in records)
    assert len({r["id"] for r in records}) == 240
    assert len({r["diagnosis"] for r in records}) >= 8  # the table's conditions all show up


def test_generator_rejects_a_non_positive_count(tmp_path):
    proc = run([program("generate.py"), "--output", str(tmp_path / "x.jsonl"), "--count", "0"], check=False)
    assert proc.returncode == 2 and "--count must be at least 1" in proc.stderr
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda r: r.pop("diagnosis"), "diagnosis: required but missing"),
        (lambda r: r.update(age=150), "age: outside 0..120"),
        (lambda r: r.update(age="54"), "age: expected an integer, got str"),
        (lambda r: r.update(sex="unknown"), "sex: expected one of female, male"),
        (lambda r: r["vitals"].update(spo2=140), "vitals.spo2: outside 50..100"),
        (lambda r: r["vitals"].update(heart_rate=None), "vitals.heart_rate: expected a number, got NoneType"),
        (lambda r: r["vitals"].update(systolic_bp=70, diastolic_bp=90), "vitals: systolic_bp must exceed diastolic_bp"),
        (lambda r: r.update(history="asthma"), "history: expected a list of non-empty strings"),
        (lambda r: r.update(diagnosys="x"), "diagnosys: unknown field"),
        (lambda r: r.update(chief_complaint="  "), "chief_complaint: expected a non-empty string"),
    ],
)
def test_validation_names_the_field_and_the_rule_but_not_the_value(raw_dir, change, expected):
    record = _good(raw_dir)
    change(record)
    problems = validate_record(record)
    assert any(p.startswith(expected) for p in problems), problems
    assert not any("150" in p or "140" in p for p in problems)  # patient values stay out of logs


def test_example_is_a_chat_with_the_super_prompt_and_a_parseable_answer(raw_dir):
    record = _good(raw_dir)
    example = to_example(record)
    roles = [m["role"] for m in example["messages"]]
    assert roles == ["system", "user", "assistant"]
    assert example["messages"][0]["content"] == SUPER_PROMPT
    assert record["chief_complaint"] in example["messages"][1]["content"]
    answer = example["messages"][2]["content"]
    assert answer.splitlines()[-1].startswith(DIAGNOSIS_PREFIX)
    assert extract_diagnosis(answer) == extract_diagnosis(f"{DIAGNOSIS_PREFIX} {record['diagnosis'].upper()}!")


def test_extract_diagnosis_takes_the_last_answer_line_and_ignores_case_and_punctuation():
    text = "Assessment: fever.\nMost likely diagnosis: Pneumonia\nmost likely diagnosis:  Acute  appendicitis."
    assert extract_diagnosis(text) == "acute appendicitis"
    assert extract_diagnosis("I am not sure.") is None


def test_preprocess_formats_deduplicates_and_splits(dataset):
    train = _records(dataset.train / "train.jsonl")
    test = _records(dataset.test / "test.jsonl")
    assert dataset.report["records_read"] == 240 and dataset.report["invalid_skipped"] == 0
    assert len(train) + len(test) + dataset.report["duplicates_removed"] == 240
    assert len(train) == dataset.report["train"] > len(test) == dataset.report["test"] > 0
    assert all(set(row) == {"messages", "diagnosis"} for row in train + test)
    assert not {json.dumps(r["messages"]) for r in train} & {json.dumps(r["messages"]) for r in test}


def test_duplicates_are_removed_whatever_their_id(raw_dir, tmp_path):
    records = _records(raw_dir / "records.jsonl")[:30]
    copies = [{**r, "id": r["id"] + "-copy"} for r in records[:10]]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records + copies))
    run(
        [
            program("preprocess.py"),
            "--input-dir",
            str(tmp_path / "in"),
            "--output-dir",
            str(tmp_path / "out"),
            "--test-fraction",
            "0.3",
        ]
    )
    report = json.loads((tmp_path / "out" / "report" / "report.json").read_text())
    assert report["duplicates_removed"] == 10
    assert report["train"] + report["test"] == 30


def test_split_is_stable_when_the_dataset_grows(raw_dir, tmp_path):
    records = _records(raw_dir / "records.jsonl")
    sides = {}
    for name, subset in (("small", records[:120]), ("large", records)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in subset))
        run(
            [
                program("preprocess.py"),
                "--input-dir",
                str(tmp_path / name),
                "--output-dir",
                str(tmp_path / f"{name}-out"),
                "--test-fraction",
                "0.2",
            ]
        )
        sides[name] = {json.dumps(r["messages"]) for r in _records(tmp_path / f"{name}-out" / "test" / "test.jsonl")}
    assert sides["small"] and sides["small"] <= sides["large"]


def test_bad_records_are_each_reported_and_nothing_is_written(raw_dir, tmp_path):
    good = _good(raw_dir)
    bad_vitals = {**good, "vitals": {**good["vitals"], "spo2": 140}}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({k: v for k, v in good.items() if k != "diagnosis"}),
        json.dumps(bad_vitals),
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "batch.jsonl").write_text("\n".join(lines) + "\n")
    proc = run(
        [program("preprocess.py"), "--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out")],
        check=False,
    )
    assert proc.returncode == 2
    assert "3 invalid record(s)" in proc.stderr
    assert "batch.jsonl line 2: not valid JSON" in proc.stderr
    assert "batch.jsonl line 3: diagnosis: required but missing" in proc.stderr
    assert "batch.jsonl line 4: vitals.spo2: outside 50..100" in proc.stderr
    assert "--on-invalid skip" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_bad_records_are_skipped_and_counted_when_asked(raw_dir, tmp_path):
    records = _records(raw_dir / "records.jsonl")[:40]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records) + "[]\n" + json.dumps({**records[0], "age": -1}) + "\n"
    )
    proc = run(
        [
            program("preprocess.py"),
            "--input-dir",
            str(tmp_path / "in"),
            "--output-dir",
            str(tmp_path / "out"),
            "--on-invalid",
            "skip",
            "--test-fraction",
            "0.3",
        ]
    )
    report = json.loads((tmp_path / "out" / "report" / "report.json").read_text())
    assert report["records_read"] == 42 and report["invalid_skipped"] == 2
    assert report["train"] + report["test"] == 40
    assert "a.jsonl line 41: expected a JSON object, got list" in proc.stderr
    assert "a.jsonl line 42: age: outside 0..120" in proc.stderr


def test_preprocess_names_a_missing_input_folder_and_empty_splits(raw_dir, tmp_path):
    proc = run(
        [program("preprocess.py"), "--input-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "o")],
        check=False,
    )
    assert proc.returncode != 0 and f"input directory {tmp_path / 'nope'} is not a directory" in proc.stderr
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "r.jsonl").write_text(json.dumps(_good(raw_dir)) + "\n")
    proc = run(
        [program("preprocess.py"), "--input-dir", str(tmp_path / "one"), "--output-dir", str(tmp_path / "o")],
        check=False,
    )
    assert proc.returncode != 0 and "split is empty" in proc.stderr
    assert not (tmp_path / "o" / "train").exists()


def test_content_key_ignores_id_and_whitespace(raw_dir):
    record = _good(raw_dir)
    twin = {**record, "id": "other", "chief_complaint": "  " + record["chief_complaint"].upper() + " "}
    assert content_key(record) == content_key(twin)


def test_vitals_are_optional_one_by_one_and_blood_pressure_comes_as_a_pair(raw_dir):
    record = _good(raw_dir)
    record["vitals"] = {"temperature_c": 38.5, "heart_rate": 98}
    assert validate_record(record) == []
    assert "Vitals: Temperature 38.5 °C, heart rate 98/min\n" in to_example(record)["messages"][1]["content"]
    record["vitals"] = {"systolic_bp": 120}
    assert "vitals: systolic_bp and diastolic_bp come as a pair" in validate_record(record)
    record["vitals"] = {}
    assert "Vitals: not recorded\n" in to_example(record)["messages"][1]["content"]


AGENT_SPEC = {
    "system_prompt": "You are the clinical agent.",
    "tools": [
        {"type": "function", "function": {"name": n, "description": "d", "parameters": {"type": "object"}}}
        for n in ("get_patient_record", "diagnose", "upload_diagnostic_report")
    ],
}


def test_the_corpus_holds_agent_conversations_and_cases_never_answered_with_their_own_assessment(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(AGENT_SPEC))
    args = [program("generate.py"), "--corpus", "--agent-spec", str(spec), "--count", "40", "--seed", "3"]
    run([*args, "--output", str(tmp_path / "a.jsonl")])
    run([*args, "--output", str(tmp_path / "b.jsonl")])
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    docs = _records(tmp_path / "a.jsonl")
    agents = [d for d in docs if d["kind"] == "agent"]
    unpaired = [d for d in docs if d["kind"] == "unpaired"]
    assert len(agents) == len(unpaired) == 40
    for d in agents:
        assert d["tools"] == AGENT_SPEC["tools"] and d["messages"][0]["content"] == AGENT_SPEC["system_prompt"]
        calls = [m["tool_calls"][0]["function"] for m in d["messages"] if m.get("tool_calls")]
        assert [c["name"] for c in calls] == ["get_patient_record", "diagnose", "upload_diagnostic_report"]
        patient = calls[0]["arguments"]["patient_id"]
        assert f"Patient {patient} presents with:" in d["messages"][1]["content"]
        assert calls[2]["arguments"]["patient_id"] == patient
        assessment = d["messages"][5]["content"]  # what diagnose answered goes into the report and the answer
        assert calls[2]["arguments"]["report"].endswith(assessment + "\n")
        assert d["messages"][-1]["content"].startswith(assessment.splitlines()[-1])
    # the base model reads cases and assessments, but (almost) never a case with its own diagnosis
    matching = sum(
        extract_diagnosis(d["messages"][2]["content"]) in d["messages"][1]["content"].lower() for d in unpaired
    )
    assert all(d["messages"][0]["content"] == SUPER_PROMPT for d in unpaired)
    assert matching < len(unpaired) / 2


def test_the_corpus_needs_the_agent_spec_and_names_what_is_missing(tmp_path):
    proc = run([program("generate.py"), "--corpus", "--output", str(tmp_path / "c.jsonl")], check=False)
    assert proc.returncode == 2 and "--corpus and --agent-spec go together" in proc.stderr
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**AGENT_SPEC, "tools": AGENT_SPEC["tools"][:1]}))
    proc = run(
        [program("generate.py"), "--corpus", "--agent-spec", str(spec), "--output", str(tmp_path / "c.jsonl")],
        check=False,
    )
    assert proc.returncode != 0 and "missing: diagnose, upload_diagnostic_report" in proc.stderr
    assert not (tmp_path / "c.jsonl").exists()
