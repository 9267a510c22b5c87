"""Shared fixtures for infrastructure tests: the app is synthesized once per session.

``synth(**context)`` builds an app exactly as the CLI would (cdk.json's feature flags + the
given context) and returns its stages; the default environments are synthesized once and
shared (``stages`` fixture). Use ``template(stage.some_stack)`` for assertions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from stacks.app_builder import build_app  # noqa: E402
from stacks.assembly import normalize  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = json.loads((ROOT / "cdk.json").read_text())
# What the CLI adds when it runs the app, so templates here are byte-identical to `cdk synth`'s.
CDK_CONTEXT = {
    **CDK_JSON["context"],
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:version-reporting": CDK_JSON.get("versionReporting", True),
    "aws:cdk:bundling-stacks": ["**"],
}


def make_app(outdir: str | None = None, **context) -> App:
    return App(context={**CDK_CONTEXT, **context}, outdir=outdir)


def synth(outdir: str | None = None, **context):
    """Build and synthesize an app; returns {env name: stage}. Raises on invalid config or compliance findings."""
    app = make_app(outdir, **context)
    stages = build_app(app)
    normalize(Path(app.synth().directory))
    return stages


def template(stack) -> Template:
    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def assembly_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cdk.out")


@pytest.fixture(scope="session")
def stages(assembly_dir):
    """The default environments (dev, staging, prod), synthesized once for the session into ``assembly_dir``."""
    return synth(str(assembly_dir))
