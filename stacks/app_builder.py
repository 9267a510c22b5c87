"""Builds the whole app from settings: one Stage per environment and the delivery pipeline, behind the compliance
gates. The configuration is loaded and validated once (``stacks.settings.load_app``) before any construct exists,
so an invalid configuration writes nothing."""

from __future__ import annotations

from aws_cdk import App

from stacks import compliance
from stacks.settings import AppSettings, load_app
from stacks.stage import ClinicalAgentStage

DELIVERY_STACK_ID = "Delivery"


def build_app(app: App, settings: AppSettings | None = None) -> dict[str, ClinicalAgentStage]:
    """Add every environment of ``settings`` (default: loaded from the app's context, see ``load_app``) to ``app``
    as a stage, and the delivery pipeline (stack ``Delivery``) when the settings have one. The environment that
    trains forwards its approvals to the delivery pipeline's account (``settings.tooling``)."""
    settings = settings or load_app(app.node.get_all_context())
    compliance.register(app)
    stages = {
        env.name: ClinicalAgentStage(app, env.stage_id, settings=env, tooling=settings.tooling if env.trains else None)
        for env in settings.stages
    }
    if settings.delivery and settings.registry:
        from stacks.delivery_stack import DeliveryStack

        DeliveryStack(
            app,
            DELIVERY_STACK_ID,
            settings=settings.delivery,
            environments=settings.promoted,
            registry=settings.environments[settings.registry],
            description="Clinical agent delivery: promotion pipeline across accounts",
        )
    return stages
