"""bench/gpu/run.sh is ready for a GPU: it parses, refuses to run without one, and its dry run (the CPU backend in
place of SGLang) goes through every step with the flags the container derives from the settings."""

from __future__ import annotations

import json
import os
import subprocess

from tests.serving.helpers import ROOT

RUN = ROOT / "bench" / "gpu" / "run.sh"


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(RUN)], capture_output=True).returncode == 0


def test_without_a_gpu_it_stops_before_installing_anything(tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin", "OUT": str(tmp_path), "VENV": str(tmp_path / "venv")}
    r = subprocess.run(["bash", str(RUN)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no NVIDIA GPU here" in r.stderr
    assert not (tmp_path / "venv").exists()


def test_dry_run_goes_through_every_step_and_writes_the_report(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path)}
    r = subprocess.run(["bash", str(RUN)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dry_run"] is True and set(report["configurations"]) == {"baseline", "speculative"}
    for name, c in report["configurations"].items():
        assert c["adapter_loaded"] and c["invoke"]["plain"] == c["invoke"]["adapter"] == 200, name
        assert c["invoke"]["adapter_model"] == "llama32-3b:clinical"
        assert c["stream"]["done"] and c["stream"]["events"] > 2
        assert c["disconnect"]["freed_s"] is not None and c["disconnect_adapter"]["freed_s"] is not None
        for where in ("front", "engine"):
            assert c[where]["one_client"]["output_tokens"] > 0 and c[where]["all_done"]
    speculative_flags = report["configurations"]["speculative"]["flags"]
    assert speculative_flags[speculative_flags.index("--speculative-algorithm") + 1] == "NGRAM"  # from dev's settings
    assert "--speculative-algorithm" not in report["configurations"]["baseline"]["flags"]
    assert report["speculative_over_baseline_one_client_tokens_per_s"] > 0
    assert "EAGLE3" in report["not_run"]
