"""Builds the whole app from settings: one Stage per environment and the delivery pipeline, behind the compliance
gates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import App

from stacks import compliance
from stacks.settings import (
    CONFIG_DIR,
    LOCK_FILE,
    ConfigError,
    ModelLock,
    check_promotion,
    context_overrides,
    known_environments,
    load_delivery,
    load_environment,
    load_model_lock,
    requested_environments,
)
from stacks.stage import ClinicalAgentStage

DELIVERY_STACK_ID = "Delivery"


def model_lock(app: App) -> ModelLock:
    """The pinned adapters: config/models.lock.json, or the file context ``models_lock`` names."""
    path = app.node.try_get_context("models_lock")
    return load_model_lock(Path(path) if path else CONFIG_DIR / LOCK_FILE)


def build_app(app: App) -> dict[str, ClinicalAgentStage]:
    """Add every requested environment to ``app`` (context ``environments``, default dev,staging,prod), and the
    delivery pipeline (stack ``Delivery``) when ``delivery_enabled``. The environment that trains forwards its
    approvals to the delivery pipeline's account (config/delivery.yaml)."""
    get = app.node.try_get_context
    compliance.register(app)
    lock = model_lock(app)
    tooling = load_delivery(context_overrides(get, "delivery"))
    environments = [
        load_environment(name, overrides=context_overrides(get, name), lock=lock)
        for name in requested_environments(get("environments"))
    ]
    check_promotion(environments, lock)
    stages = {
        e.name: ClinicalAgentStage(app, e.stage_id, settings=e, tooling=tooling if e.trains else None)
        for e in environments
    }
    if delivery_enabled(get("delivery"), environments_given=get("environments") is not None):
        build_delivery(app, lock)
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


def build_delivery(app: App, lock: ModelLock):
    """The promotion pipeline (config/delivery.yaml) with its own copy of each promoted environment's stage; the
    environment among them that trains is the registry of record it resolves the pin from."""
    from stacks.delivery_stack import DeliveryStack

    get = app.node.try_get_context
    settings = load_delivery(context_overrides(get, "delivery"))
    known = known_environments()
    if unknown := [e for e in settings.environments if e not in known]:
        raise ConfigError(
            f"invalid configuration for environment 'delivery':\n  environments: unknown {', '.join(unknown)}; "
            f"known environments: {', '.join(known)}"
        )
    environments = [load_environment(e, overrides=context_overrides(get, e), lock=lock) for e in settings.environments]
    registry = check_promotion(environments, lock)
    if registry is None:
        raise ConfigError(
            "invalid configuration for environment 'delivery':\n  environments: none of "
            f"{', '.join(settings.environments)} trains; the pipeline promotes the approvals of the one that does "
            "(the environment with a training section)"
        )
    return DeliveryStack(
        app,
        DELIVERY_STACK_ID,
        settings=settings,
        environments=environments,
        registry=registry,
        description="Clinical agent delivery: promotion pipeline across accounts",
    )
