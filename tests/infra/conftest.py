"""Shared fixtures for infrastructure tests: the app is synthesized once per session.

``synth(**context)`` builds an app exactly as the CLI would (cdk.json's feature flags + the
given context) and returns its stages; the default environments are synthesized once and
shared (``stages`` fixture). Use ``template(stage.some_stack)`` for assertions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk.assertions import Template

from tools.synth import CDK_CONTEXT, ROOT, make_app, synth  # noqa: F401 (shared with the infra tests)


def template(stack) -> Template:
    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def assembly_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cdk.out")


@pytest.fixture(scope="session")
def stages(assembly_dir):
    """The default environments (dev, staging, prod), synthesized once for the session into ``assembly_dir``."""
    return synth(str(assembly_dir))
