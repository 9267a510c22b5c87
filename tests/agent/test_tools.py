"""The tools against a moto server: the patient table, the reports bucket (SSE-KMS), the diagnosis call."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from agent.errors import DiagnosisError, InvalidPatientId, InvalidReport, PatientNotFound
from agent.models import PatientRecord
from agent.patients import PRIVATE_FIELDS, PatientStore, synthetic_patients
from agent.reports import ReportStore
from agent.tools import ReportLedger, make_tools
from local.aws import client

BAD_IDS = ["../P-000001", "P-000001/../../x", "P-1", "p-000001", "P-0000001", "", "P-00000a", "reports/P-000001"]


@pytest.fixture
def patients(aws):
    return PatientStore(aws.table, client("dynamodb", aws.endpoint_url))


@pytest.fixture
def reports(aws, s3):
    return ReportStore(aws.bucket, aws.kms_key_id, s3, max_bytes=2048)


def test_synthetic_patients_are_deterministic_and_marked_synthetic():
    first, again, other = synthetic_patients(5, seed=3), synthetic_patients(5, seed=3), synthetic_patients(5, seed=4)
    assert first == again and first != other
    assert [p["patient_id"] for p in first] == [f"P-00000{i}" for i in range(1, 6)]
    assert all(p["synthetic"] is True for p in first)


def test_patient_record_has_only_the_clinical_fields(patients):
    record = patients.get("P-000003")
    expected = synthetic_patients(12)[2]
    assert record == PatientRecord(**{k: v for k, v in expected.items() if k not in PRIVATE_FIELDS})
    assert set(record.model_dump()) == {"patient_id", "age", "sex", "conditions", "medications", "allergies"}


def test_unknown_patient_is_not_found(patients):
    with pytest.raises(PatientNotFound, match="no patient P-999999"):
        patients.get("P-999999")


@pytest.mark.parametrize("bad", BAD_IDS)
def test_malformed_patient_id_is_refused_before_any_read(bad):
    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"DynamoDB called ({name}) for a malformed id")

    with pytest.raises(InvalidPatientId, match="expected 'P-' followed by 6 digits"):
        PatientStore("patients", NoCalls()).get(bad)


def test_report_is_stored_under_the_patient_with_sse_kms(reports, s3, aws, reports_of):
    before = reports_of("P-000004")
    uri = reports.upload("P-000004", "# Report\n\nSynthetic assessment ü")
    key = uri.removeprefix(f"s3://{aws.bucket}/")
    assert re.fullmatch(r"reports/P-000004/\d{8}T\d{6}\.\d{6}Z\.md", key)
    assert reports_of("P-000004") == sorted(before + [key])
    head = s3.head_object(Bucket=aws.bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith(aws.kms_key_id)
    assert head["ContentType"].startswith("text/markdown")
    assert s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read().decode() == "# Report\n\nSynthetic assessment ü"


def test_report_key_uses_the_utc_timestamp(reports):
    fixed = datetime(2026, 11, 29, 10, 5, 3, 123456, tzinfo=UTC)
    store = ReportStore("b", "k", None, clock=lambda: fixed)
    assert store.key_for("P-000001") == "reports/P-000001/20261129T100503.123456Z.md"


@pytest.mark.parametrize("bad", BAD_IDS)
def test_report_with_malformed_patient_id_writes_nothing(reports, s3, aws, bad):
    before = s3.list_objects_v2(Bucket=aws.bucket).get("KeyCount", 0)
    with pytest.raises(InvalidPatientId):
        reports.upload(bad, "# report")
    assert s3.list_objects_v2(Bucket=aws.bucket).get("KeyCount", 0) == before


@pytest.mark.parametrize(
    ("report", "message"), [("", "empty"), ("   \n", "empty"), ("x" * 2049, "2049 bytes; at most 2048")]
)
def test_empty_or_oversize_report_writes_nothing(reports, reports_of, report, message):
    before = reports_of("P-000005")
    with pytest.raises(InvalidReport, match=message):
        reports.upload("P-000005", report)
    assert reports_of("P-000005") == before


class _Diagnoser:
    def __init__(self):
        self.cases = []

    def diagnose(self, case):
        self.cases.append(case)
        return "## Summary\nstub"


def _tools(patients, reports):
    from agent.factory import ClinicalServices

    ledger = ReportLedger()
    services = ClinicalServices(patients=patients, reports=reports, diagnoser=_Diagnoser())
    return {t.tool_name: t for t in make_tools(services, ledger)}, ledger, services


def test_tools_read_the_record_store_the_report_and_keep_a_ledger(patients, reports, reports_of):
    tools, ledger, services = _tools(patients, reports)
    assert tools["get_patient_record"](patient_id="P-000002")["record"]["patient_id"] == "P-000002"
    assert tools["get_patient_record"](patient_id="P-999999") == {
        "found": False,
        "patient_id": "P-999999",
        "message": "no patient P-999999 in table patients",
    }
    assert tools["diagnose"](case="cough") == "## Summary\nstub" and services.diagnoser.cases == ["cough"]
    uri = tools["upload_diagnostic_report"](patient_id="P-000002", report="# r")
    assert uri.split("/", 3)[3] in reports_of("P-000002")
    assert ledger.reports == {"P-000002": uri}
    assert ledger.tools_called == ["get_patient_record", "get_patient_record", "diagnose", "upload_diagnostic_report"]


def test_tool_specs_describe_the_arguments(patients, reports):
    tools, _, _ = _tools(patients, reports)
    spec = tools["upload_diagnostic_report"].tool_spec
    assert spec["inputSchema"]["json"]["required"] == ["patient_id", "report"]
    assert "P-000123" in spec["inputSchema"]["json"]["properties"]["patient_id"]["description"]


def test_diagnosis_error_names_endpoint_and_component(env, spans):
    from agent.factory import ClinicalServices
    from agent.settings import load_settings

    settings = load_settings(diagnosis_inference_component="no-such-component")
    diagnoser = ClinicalServices.from_settings(settings).diagnoser
    with pytest.raises(DiagnosisError, match="endpoint clinical-llm, component no-such-component.*ValidationError"):
        diagnoser.diagnose("Patient with cough")
    (span,) = [s for s in spans.get_finished_spans() if s.name == "diagnose"]
    assert span.attributes["diagnosis.success"] is False
    assert not span.status.is_ok
