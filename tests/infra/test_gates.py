"""The gates: compliance packs fail synth on a finding, cfn-lint is clean, synth is deterministic and offline,
and the templates match the reviewed baselines (the audit's reference)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk import Stack, Stage
from aws_cdk import aws_s3 as s3

from stacks import compliance
from stacks.app_builder import build_app
from tests.infra.conftest import CDK_CONTEXT, ROOT, make_app
from tools.assembly import missing_context, stacks
from tools.baselines import BASELINE_DIR, asset_hashes, copies_differing, copy_of, differing, hashes_in


@pytest.fixture(scope="session")
def assembly(stages, assembly_dir) -> Path:
    return assembly_dir


def test_synth_makes_no_aws_lookups(assembly):
    assert missing_context(assembly) == []


def test_every_environment_is_synthesized(assembly):
    assert {s.stage for s in stacks(assembly)} >= {"Dev", "Staging", "Prod"}


def test_cfn_lint_reports_nothing(assembly):
    templates = [str(s.template) for s in stacks(assembly)]
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--ignore-checks", "W3005", "--", *templates],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


def test_synth_is_deterministic(assembly, tmp_path):
    """Two syntheses — this session's and a fresh `python app.py` as the CLI runs it — give the same
    cloud assembly, byte for byte: templates, asset manifests, metadata."""
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(CDK_CONTEXT), "CDK_OUTDIR": str(tmp_path)}
    subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("**/*.json"))}

    first, second = files(assembly), files(tmp_path)
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_templates_match_the_reviewed_baselines(assembly):
    """A failure here means the infrastructure changed: review it, then `make snapshot`. Asset hashes are
    compared separately (below): a change to bundled code alone is not an infrastructure change."""
    changed = differing(assembly)
    assert changed == [], f"templates differ from baselines/ for {changed}: review, then run `make snapshot`"


def test_each_delivery_copy_of_a_stage_equals_that_stage_but_for_path_derived_names(assembly):
    """The pipeline deploys Delivery-<Env>, reviewed through <Env>'s baselines: the copies must not drift."""
    copies = [s for s in stacks(assembly) if copy_of(s)]
    assert {copy_of(s) for s in copies} == {"Dev", "Staging", "Prod"}
    assert copies_differing(assembly) == []
    assert not list(BASELINE_DIR.glob("Delivery-*"))  # no baselines of their own


def _assembly_copy(assembly: Path, to: Path) -> Path:
    shutil.copytree(assembly, to, ignore=lambda _d, names: [n for n in names if n.startswith("asset.")])
    return to


def test_a_delivery_copy_that_drifts_from_its_stage_is_reported(assembly, tmp_path):
    copy = next(s for s in stacks(_assembly_copy(assembly, tmp_path / "a")) if s.display_name == "Delivery/Prod/Agent")
    template = json.loads(copy.template.read_text())
    table = next(r for r in template["Resources"].values() if r["Type"] == "AWS::DynamoDB::Table")
    table["Properties"]["TableClass"] = "STANDARD_INFREQUENT_ACCESS"
    copy.template.write_text(json.dumps(template, indent=1))
    assert copies_differing(tmp_path / "a") == ["Delivery/Prod/Agent"]


def test_a_delivery_copy_whose_stage_lacks_the_stack_is_reported(assembly, tmp_path):
    manifest = next(_assembly_copy(assembly, tmp_path / "a").glob("assembly-Prod/manifest.json"))
    data = json.loads(manifest.read_text())
    data["artifacts"] = {k: a for k, a in data["artifacts"].items() if a.get("displayName") != "Prod/Agent"}
    manifest.write_text(json.dumps(data))
    assert copies_differing(tmp_path / "a") == ["Delivery/Prod/Agent"]


def test_every_hash_in_a_template_is_an_asset_the_assembly_publishes(assembly):
    """The normalised comparison above ignores 64-hex strings; each of them must be one of this synth's assets
    (so a template cannot hide a stale or foreign hash behind the normalisation)."""
    published = asset_hashes(assembly)
    found = {h for s in stacks(assembly) for h in hashes_in(s.template.read_text())}
    assert found and found <= published, sorted(found - published)


def _findings_on(report_file: Path, prefix: str) -> set[str]:
    report = json.loads(report_file.read_text())
    return {
        v["ruleName"]
        for p in report["pluginReports"]
        for v in p["violations"]
        if any(c["constructPath"].startswith(prefix) for c in v["violatingConstructs"])
    }


def test_the_packs_check_a_pipeline_copy_through_its_stage_and_a_copy_alone_itself(tmp_path):
    """A stage the delivery pipeline copies is checked once (the copy is asserted equal above); a copy of a
    stage the app does not synthesize is checked on its own: its finding fails synth."""
    app = make_app(str(tmp_path))
    compliance.register(app)
    for stage in (Stage(app, "Dev"), Stage(pipeline := Stack(app, "Delivery"), "Dev"), Stage(pipeline, "Qa")):
        s3.Bucket(Stack(stage, "Data"), "Unencrypted")
    assert [c.node.path for c in compliance.validated_scopes(app)] == ["Dev", "Delivery/Qa"]
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = tmp_path / "validation-report.json"
    assert "AwsSolutions-S1" in _findings_on(report, "Dev/Data/Unencrypted")
    assert "AwsSolutions-S1" in _findings_on(report, "Delivery/Qa/Data/Unencrypted")
    assert _findings_on(report, "Delivery/Dev/") == set()


def test_a_non_compliant_bucket_fails_synth(tmp_path):
    app = make_app(str(tmp_path), environments="dev")
    stages = build_app(app)
    s3.Bucket(stages["dev"].data, "Unencrypted")  # no KMS, no logging, no TLS policy, no versioning
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    findings = _findings_on(tmp_path / "validation-report.json", "Dev/Data/Unencrypted")
    assert {"AwsSolutions-S1", "AwsSolutions-S10", "HIPAA.Security-S3DefaultEncryptionKMS"} <= findings
