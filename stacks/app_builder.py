"""Builds the whole app from settings: one Stage per environment, behind the compliance gates."""

from __future__ import annotations

from aws_cdk import App

from stacks import compliance
from stacks.settings import context_overrides, load_environment, requested_environments
from stacks.stage import ClinicalAgentStage


def build_app(app: App) -> dict[str, ClinicalAgentStage]:
    """Add every requested environment to ``app`` (context ``environments``, default dev,staging,prod)."""
    get = app.node.try_get_context
    compliance.register(app)
    stages = {}
    for name in requested_environments(get("environments")):
        settings = load_environment(name, overrides=context_overrides(get, name))
        stages[name] = ClinicalAgentStage(app, settings.stage_id, settings=settings)
    return stages
