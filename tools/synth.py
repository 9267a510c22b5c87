"""Synthesize the app in-process exactly as the CDK CLI would (cdk.json's feature flags + given context).

``python app.py`` does not read cdk.json: the CLI passes its context in. Tests, baselines and benchmarks
build the app through ``make_app``/``synth`` so their templates are byte-identical to `cdk synth`'s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App  # noqa: E402

from stacks.app_builder import build_app  # noqa: E402
from tools.assembly import normalize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CDK_JSON = json.loads((ROOT / "cdk.json").read_text())
# What the CLI adds when it runs the app.
CDK_CONTEXT: dict[str, Any] = {
    **CDK_JSON["context"],
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:version-reporting": CDK_JSON.get("versionReporting", True),
    "aws:cdk:bundling-stacks": ["**"],
}


def make_app(outdir: str | None = None, **context: Any) -> App:
    return App(context={**CDK_CONTEXT, **context}, outdir=outdir)


def synth(outdir: str | None = None, **context: Any) -> dict:
    """Build and synthesize an app; returns {env name: stage}. Raises on invalid config or compliance findings."""
    app = make_app(outdir, **context)
    stages = build_app(app)
    normalize(Path(app.synth().directory))
    return stages
