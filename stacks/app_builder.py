"""Builds the whole app from settings: one Stage per environment and the delivery pipeline, behind the compliance
gates."""

from __future__ import annotations

from typing import Any

from aws_cdk import App

from stacks import compliance
from stacks.settings import (
    ConfigError,
    context_overrides,
    known_environments,
    load_delivery,
    load_environment,
    requested_environments,
)
from stacks.stage import ClinicalAgentStage

DELIVERY_STACK_ID = "Delivery"


def build_app(app: App) -> dict[str, ClinicalAgentStage]:
    """Add every requested environment to ``app`` (context ``environments``, default dev,staging,prod), and the
    delivery pipeline (stack ``Delivery``) when ``delivery_enabled``."""
    get = app.node.try_get_context
    compliance.register(app)
    stages = {}
    for name in requested_environments(get("environments")):
        settings = load_environment(name, overrides=context_overrides(get, name))
        stages[name] = ClinicalAgentStage(app, settings.stage_id, settings=settings)
    if delivery_enabled(get("delivery"), environments_given=get("environments") is not None):
        build_delivery(app)
    return stages


def delivery_enabled(value: Any, *, environments_given: bool) -> bool:
    """Context ``delivery``: true/false; unset means on for the whole app, off when ``environments`` picks some
    (a developer synthesizing one environment does not pay for the pipeline's copies of all of them)."""
    if value is None:
        return not environments_given
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ConfigError(f"context delivery: {value!r} is not true or false")


def build_delivery(app: App):
    """The promotion pipeline (config/delivery.yaml) with its own copy of each promoted environment's stage."""
    from stacks.delivery_stack import DeliveryStack

    get = app.node.try_get_context
    settings = load_delivery(context_overrides(get, "delivery"))
    known = known_environments()
    if unknown := [e for e in settings.environments if e not in known]:
        raise ConfigError(
            f"invalid configuration for environment 'delivery':\n  environments: unknown {', '.join(unknown)}; "
            f"known environments: {', '.join(known)}"
        )
    environments = [load_environment(e, overrides=context_overrides(get, e)) for e in settings.environments]
    return DeliveryStack(
        app,
        DELIVERY_STACK_ID,
        settings=settings,
        environments=environments,
        description="Clinical agent delivery: promotion pipeline across accounts",
    )
