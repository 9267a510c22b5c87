"""The model lock (config/models.lock.json) is reviewed data: validated once, with errors that name the file, the
environment and the field; what each environment serves and what its agent calls follow from it."""

from __future__ import annotations

import json

import pytest

from stacks.app_builder import build_app
from stacks.settings import ConfigError, ModelLock, load_environment, load_model_lock
from tests.infra.conftest import ROOT, make_app, pin_entry


def lock(*entries: dict) -> ModelLock:
    return ModelLock.model_validate({"adapters": list(entries)})


def test_the_committed_lock_pins_nothing_so_a_fresh_repository_serves_the_bases():
    committed = load_model_lock(ROOT / "config" / "models.lock.json")
    assert committed.adapters == []
    for env in ("dev", "staging", "prod"):
        s = load_environment(env)
        assert s.pinned_adapters == [] and s.agent_component == s.inference.models[0].name


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"sha256": "abc"}, r"adapters\.0\.sha256: String should match pattern"),
        ({"model_package_version": 4}, r"adapters\.0: model_package_version: 4 is not the version of arn:"),
        ({"source_uri": "s3://bucket/model/"}, r"adapters\.0\.source_uri: String should match pattern"),
        ({"name": "clinical_lora"}, r"adapters\.0\.name: 'clinical_lora' is not a SageMaker name"),
        ({"lora_rank": 0}, r"adapters\.0\.lora_rank: Input should be greater than or equal to 1"),
        ({"surprise": 1}, r"adapters\.0\.surprise: Extra inputs are not permitted"),
    ],
)
def test_a_malformed_lock_names_the_file_and_the_field(tmp_path, changes, message):
    path = tmp_path / "models.lock.json"
    path.write_text(json.dumps({"adapters": [pin_entry(5, **changes)]}))
    with pytest.raises(ConfigError, match=rf"invalid model lock {path}:\n  {message}"):
        load_model_lock(path)


def test_one_entry_per_adapter_component():
    with pytest.raises(ValueError, match="one entry per adapter component; repeated: clinical-lora"):
        lock(pin_entry(5), pin_entry(6))


def test_an_environment_serves_the_pins_whose_base_it_declares_and_its_agent_calls_the_first():
    pinned = lock(pin_entry(5))
    dev = load_environment("dev", lock=pinned)
    assert [p.name for p in dev.pinned_adapters] == ["clinical-lora"] and dev.agent_component == "clinical-lora"
    assert dev.components == {"llama32-3b": "llama32-3b", "clinical-lora": "llama32-3b"}
    other = load_environment(
        "staging",
        lock=pinned,
        overrides={"inference.models": [{**dev.inference.models[0].model_dump(mode="json"), "name": "other"}]},
    )
    assert other.pinned_adapters == [] and other.agent_component == "other"  # no llama32-3b here: not served
    explicit = load_environment("prod", lock=pinned, overrides={"agent.model": "llama32-3b"})
    assert explicit.agent_component == "llama32-3b"


@pytest.mark.parametrize(
    "env, entry, overrides, message",
    [
        ("prod", pin_entry(5, lora_rank=128), {}, r"models\.lock\.json: adapter 'clinical-lora': LoRA rank 128 exceeds "
         r"max_lora_rank 64 of llama32-3b"),
        ("staging", pin_entry(5), {"inference.models": [{"lora": False}]}, r"its base 'llama32-3b' has lora off"),
        ("dev", pin_entry(5, model_package="models:/clinical-diagnosis-llama/5",
                          source_uri="file:///tmp/demo/adapters/x.tar.gz"), {}, r"is a local pin \(the demo's\)"),
        ("staging", pin_entry(5), {"inference.adapters": [{"name": "clinical-lora", "base": "llama32-3b",
                                                        "artifact_key": "a/b.tar.gz"}]},
         r"adapter 'clinical-lora': clashes with a configured component"),
    ],
)  # fmt: skip
def test_an_environment_refuses_a_pin_it_cannot_serve_naming_itself_and_the_entry(env, entry, overrides, message):
    if "inference.models" in overrides:
        model = load_environment(env).inference.models[0].model_dump(mode="json")
        overrides = {"inference.models": [{**model, **overrides["inference.models"][0]}]}
    with pytest.raises(ConfigError, match=rf"invalid configuration for environment '{env}':\n  .*{message}"):
        load_environment(env, lock=lock(entry), overrides=overrides)


def test_the_agent_may_call_only_a_component_its_environment_declares():
    with pytest.raises(ConfigError, match=r"environment 'prod':\n  agent\.model: 'clinical-lora' is not a component"):
        load_environment("prod", overrides={"agent.model": "clinical-lora"})  # no pin: no such component
    assert load_environment("prod", lock=lock(pin_entry(5)), overrides={"agent.model": "clinical-lora"})


def test_only_the_environment_that_trains_has_a_registry():
    with pytest.raises(ConfigError, match=r"environment 'prod':\n  registry: only the environment that trains"):
        load_environment("prod", overrides={"registry.model_card_status": "Approved"})


def test_two_environments_that_train_are_refused():
    app = make_app(environments="dev,staging", **{"staging.training": json.dumps({"base_image": _dev_image()})})
    with pytest.raises(ConfigError, match=r"environments dev, staging all have a training section: exactly one"):
        build_app(app)


def test_a_pin_no_environment_serves_is_refused(tmp_path):
    path = tmp_path / "lock.json"
    path.write_text(json.dumps({"adapters": [pin_entry(5, base="nowhere")]}))
    app = make_app(environments="dev,prod", models_lock=str(path))
    with pytest.raises(ConfigError, match=r"adapter 'clinical-lora' runs on base 'nowhere', which none of dev, prod"):
        build_app(app)


def test_every_account_serving_a_copy_must_be_a_registry_reader(tmp_path):
    path = tmp_path / "lock.json"
    path.write_text(json.dumps({"adapters": [pin_entry(5)]}))
    app = make_app(
        environments="dev,prod", models_lock=str(path), **{"dev.registry.reader_accounts": '["222222222222"]'}
    )
    with pytest.raises(
        ConfigError, match=r"environment 'dev':\n  registry\.reader_accounts: prod \(333333333333\) serve a copy"
    ):
        build_app(app)


def test_the_pipeline_needs_an_environment_that_trains():
    app = make_app(environments="", delivery="true", **{"delivery.environments": '["staging", "prod"]'})
    with pytest.raises(ConfigError, match=r"environment 'delivery':\n  environments: none of staging, prod trains"):
        build_app(app)


def _dev_image() -> str:
    training = load_environment("dev").training
    assert training is not None
    return training.base_image
