"""Shared fixtures for infrastructure tests: the app is synthesized once per session.

``synth(**context)`` builds an app exactly as the CLI would (cdk.json's feature flags + the
given context) and returns its stages; the default environments are synthesized once and
shared (``stages`` fixture, in tests/conftest.py: the tools' tests read the same assembly).
Use ``template(stage.some_stack)`` for assertions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Template

from tools.synth import CDK_CONTEXT, ROOT, make_app, synth  # noqa: F401 (shared with the infra tests)


def template(stack) -> Template:
    return Template.from_stack(stack)


REGISTRY_BUCKET = "dev-data-artifacts82dd59a1-abc"  # the registry account's artifacts bucket (dev)
REGISTRY_KEY = "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def pin_entry(version: int = 5, **changes) -> dict:
    """One adapter of config/models.lock.json as the resolver writes it: version ``version`` of dev's registry."""
    execution = f"arn:aws:sagemaker:us-east-1:111111111111:pipeline/clinical-diagnosis-finetune/execution/exec{version}"
    return {
        "name": "clinical-lora",
        "base": "llama32-3b",
        "model_package": f"arn:aws:sagemaker:us-east-1:111111111111:model-package/clinical-diagnosis-llama/{version}",
        "model_package_version": version,
        "source_uri": f"s3://{REGISTRY_BUCKET}/pipeline/clinical-diagnosis-finetune/exec{version}/FineTune/"
        f"job{version}/output/model.tar.gz",
        "source_kms_key_arn": REGISTRY_KEY,
        "sha256": hashlib.sha256(f"adapter version {version}".encode()).hexdigest(),
        "lora_rank": 16,
        "pipeline_execution_arn": execution,
        "mlflow_run_id": f"run{version:0>29}",
        **changes,
    }


@pytest.fixture(scope="session")
def pin_file(tmp_path_factory):
    """``pin_file(5)``: a model lock pinning version 5 (``pin_file(5, lora_rank=8)``: with changes) in a fresh file."""

    def make(version: int = 5, **changes) -> Path:
        path = tmp_path_factory.mktemp("lock") / "models.lock.json"
        path.write_text(json.dumps({"adapters": [pin_entry(version, **changes)]}, indent=2))
        return path

    return make


@pytest.fixture(scope="session")
def delivery(stages, tmp_path_factory):
    """The Delivery stack of the shared session app; if that app leaves it out, of an app with it (one more synth)."""
    from stacks.app_builder import DELIVERY_STACK_ID, build_app

    stack = next(iter(stages.values())).node.scope.node.try_find_child(DELIVERY_STACK_ID)
    if stack is None:
        app = make_app(str(tmp_path_factory.mktemp("delivery.out")), delivery="true")
        build_app(app)
        app.synth()
        stack = app.node.find_child(DELIVERY_STACK_ID)
    return stack


@pytest.fixture(scope="session")
def pipeline(delivery) -> dict:
    """The synthesized CodePipeline's properties."""
    pipelines = template(delivery).find_resources("AWS::CodePipeline::Pipeline")
    assert len(pipelines) == 1
    return next(iter(pipelines.values()))["Properties"]
