"""The outputs and stack names the CLI reads are the ones the stacks declare (checked against the reviewed
templates in baselines/, which the baseline test keeps equal to a fresh synth)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops import outputs
from ops.outputs import components, stack_name
from stacks.settings import known_environments, load_environment

BASELINES = Path(__file__).resolve().parents[2] / "baselines"


@pytest.mark.parametrize("name", known_environments())
def test_every_output_the_cli_reads_is_declared_by_its_stack(name):
    settings = load_environment(name)
    for output in outputs.declared(settings):
        template = BASELINES / settings.stage_id / f"{stack_name(settings, output.component)}.template.json"
        declared = json.loads(template.read_text()).get("Outputs", {})
        assert output.key in declared, f"{template.name} has no output {output.key}"


@pytest.mark.parametrize("name", known_environments())
def test_only_the_environment_that_trains_declares_the_pipeline_and_registry_outputs(name):
    settings = load_environment(name)
    template = BASELINES / settings.stage_id / f"{stack_name(settings, 'Mlops')}.template.json"
    declared = json.loads(template.read_text()).get("Outputs", {})
    assert all((o.key in declared) == settings.trains for o in outputs.TRAINING)


@pytest.mark.parametrize("name", known_environments())
def test_the_stage_deploys_exactly_the_stacks_the_cli_names(name):
    settings = load_environment(name)
    reviewed = {p.name for p in (BASELINES / settings.stage_id).glob("*.template.json")}
    assert reviewed == {f"{stack_name(settings, c)}.template.json" for c in components(settings)}
