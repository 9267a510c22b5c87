"""One prompt format: the agent's ``diagnose`` tool asks the fine-tuned model exactly as training taught it.

training/clinical.py owns the format (the super-prompt, the case text, the report); the training
examples and the agent both import it, and the agent's package ships it. These tests fail when the two
drift apart: a different instruction, another case layout, or a package without the module.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

from agent.diagnosis import Diagnoser
from agent.models import ClinicalCase, PatientRecord
from agent.prompts import case_prompt, case_summary, render_report
from training.clinical import REPORT_DISCLAIMER, SUPER_PROMPT, to_example, validate_record

CASE = ClinicalCase.model_validate(
    {
        "patient_id": "P-000045",
        "symptoms": ["fever", "cough"],
        "vitals": {"temperature_c": 38.5, "heart_rate_bpm": 98, "systolic_bp_mmhg": 131, "diastolic_bp_mmhg": 84},
        "notes": "45-year-old man, fever and cough for three days.",
    }
)
RECORD = PatientRecord(patient_id="P-000045", age=45, sex="male", conditions=["hypertension", "smoker"])
# the same case as a training record (training's field names)
TRAINING_RECORD = {
    "id": "SYN-000045",
    "age": 45,
    "sex": "male",
    "chief_complaint": "fever; cough",
    "vitals": {"temperature_c": 38.5, "heart_rate": 98, "systolic_bp": 131, "diastolic_bp": 84},
    "history": ["hypertension", "smoker"],
    "assessment": "45-year-old male with fever; cough; a lower respiratory tract infection.",
    "diagnosis": "Community-acquired pneumonia",
}


class RecordingClient:
    """A sagemaker-runtime client that keeps what it was asked and answers one chat completion."""

    def __init__(self) -> None:
        self.requests: list[dict] = []

    def invoke_endpoint(self, **request):
        self.requests.append(request)
        answer = {"choices": [{"message": {"role": "assistant", "content": "Most likely diagnosis: X"}}]}
        return {"Body": io.BytesIO(json.dumps(answer).encode())}


def test_the_app_summarises_a_case_exactly_as_training_writes_its_cases():
    assert validate_record(TRAINING_RECORD) == []
    assert case_summary(CASE, RECORD) == to_example(TRAINING_RECORD)["messages"][1]["content"]


def test_the_diagnose_call_sends_the_training_chat_without_the_answer():
    client = RecordingClient()
    diagnoser = Diagnoser(client, endpoint_name="ep", inference_component="lora", max_tokens=64, temperature=0)
    diagnoser.diagnose(case_summary(CASE, RECORD))
    (request,) = client.requests
    sent = json.loads(request["Body"])["messages"]
    assert sent == to_example(TRAINING_RECORD)["messages"][:-1]
    assert sent[0] == {"role": "system", "content": SUPER_PROMPT}


def test_the_agent_request_and_the_stored_report_use_the_case_format():
    prompt = case_prompt(CASE)
    assert prompt.startswith("Patient P-000045 presents with: fever; cough.\n")
    # the vitals read the same in the agent's request and in the case the model is given
    assert "Vitals: Temperature 38.5 °C, heart rate 98/min, blood pressure 131/84 mmHg." in prompt
    assert "Vitals: Temperature 38.5 °C, heart rate 98/min, blood pressure 131/84 mmHg\n" in case_summary(CASE, RECORD)
    report = render_report(CASE, RECORD, "Assessment: x.\nMost likely diagnosis: Y")
    assert report.startswith(f"# Diagnostic report - P-000045\n\n{REPORT_DISCLAIMER}\n\n## Case\n\n")
    assert report.endswith("\n\nAssessment: x.\nMost likely diagnosis: Y\n")


def test_the_agent_package_ships_the_format_module_and_imports_it_from_there(tmp_path):
    from stacks.constructs import agent_package as pkg

    deps, out = tmp_path / "deps", tmp_path / "package"
    deps.mkdir()
    pkg.build_package(pkg.AGENT_DIR, deps, out)
    assert (out / "training" / "clinical.py").read_bytes() == (pkg.ROOT / "training" / "clinical.py").read_bytes()
    assert not (out / "training" / "train.py").exists()  # only what the agent imports
    # from the package's root (as AgentCore runs it), the agent finds the module inside the package
    code = "import agent.diagnosis, training.clinical as c, json; print(json.dumps(c.__file__))"
    site = [p for p in sys.path if p.endswith("site-packages")]
    proc = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path[:0] = {[str(out), *site]!r}; {code}"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == str(out / "training" / "clinical.py")


def test_the_package_hash_follows_the_shared_module(tmp_path, monkeypatch):
    from stacks.constructs import agent_package as pkg

    deps = tmp_path / "deps"
    deps.mkdir()
    root = tmp_path / "root"
    for name in pkg.SHARED_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text((pkg.ROOT / name).read_text())
    monkeypatch.setattr(pkg, "ROOT", root)
    before = pkg.package_hash(pkg.AGENT_DIR, deps)
    (root / "training" / "clinical.py").write_text((root / "training" / "clinical.py").read_text() + "\n# changed\n")
    assert pkg.package_hash(pkg.AGENT_DIR, deps) != before
