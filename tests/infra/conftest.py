"""Shared fixtures for infrastructure tests: the app is synthesized once per session.

``synth(**context)`` builds an app exactly as the CLI would (cdk.json's feature flags + the
given context) and returns its stages; the default environments are synthesized once and
shared (``stages`` fixture, in tests/conftest.py: the tools' tests read the same assembly).
Use ``template(stage.some_stack)`` for assertions.
"""

from __future__ import annotations

from aws_cdk.assertions import Template

from tools.synth import CDK_CONTEXT, ROOT, make_app, synth  # noqa: F401 (shared with the infra tests)


def template(stack) -> Template:
    return Template.from_stack(stack)
