"""make cost: the monthly envelope at minimum and maximum scale from the pinned price file (which names its source
and date), and one cost line per environment in make synth's summary."""

from __future__ import annotations

import json
from datetime import date

import pytest
from typer.testing import CliRunner

from ops import cli
from ops.cost import envelope, load_prices, one_line
from ops.errors import OpsError
from stacks.settings import known_environments, load_environment
from tools.summary import summarize


def test_the_price_file_names_its_source_and_date():
    prices = load_prices()
    assert "pricing" in prices["source"] and date.fromisoformat(prices["retrieved"]) <= date.today()
    assert prices["currency"] == "USD" and prices["hours_per_month"] > 0


@pytest.mark.parametrize("name", known_environments())
def test_the_endpoint_line_is_instance_hours_at_minimum_and_maximum_scale(name):
    settings, prices = load_environment(name), load_prices()
    rate = prices["regions"][settings.region]["sagemaker_instance_hour"][settings.inference.instance_type]
    line = envelope(settings, prices).monthly[0]
    hours = prices["hours_per_month"]
    assert (line.low, line.high) == (
        settings.inference.min_instance_count * hours * rate,
        settings.inference.max_instance_count * hours * rate,
    )


def test_the_envelope_follows_the_configuration():
    small = envelope(load_environment("dev"))
    larger = envelope(load_environment("dev", overrides={"inference.max_instance_count": 3}))
    endpoint = small.monthly[0].high
    assert larger.high - small.high == pytest.approx(2 * endpoint)
    assert larger.low == small.low  # scale to zero: the low end does not move
    assert small.training_run is not None and small.training_run.low < small.training_run.high


def test_an_environment_that_does_not_train_has_no_training_run_to_price():
    staging = envelope(load_environment("staging"))
    assert staging.training_run is None
    assert one_line(staging).endswith("/month (does not train)")


def test_a_tracking_server_is_priced_always_on_and_an_unpriced_size_is_named():
    prices = load_prices()
    small = envelope(load_environment("dev", overrides={"mlflow.kind": "tracking_server"}), prices)
    mlflow = next(line for line in small.monthly if line.item.startswith("MLflow"))
    hourly = prices["regions"]["us-east-1"]["mlflow_tracking_server_hour"]["Small"]
    assert mlflow.low == mlflow.high == hourly * prices["hours_per_month"]
    large = load_environment(
        "dev", overrides={"mlflow.kind": "tracking_server", "mlflow.tracking_server_size": "Large"}
    )
    with pytest.raises(OpsError, match="no price for an MLflow tracking server of size Large in us-east-1"):
        envelope(large, prices)


def test_an_unpriced_instance_type_or_region_is_named():
    prices = load_prices()
    del prices["regions"]["us-east-1"]["sagemaker_instance_hour"]["ml.g5.2xlarge"]
    with pytest.raises(OpsError, match=r"no price for ml.g5.2xlarge in us-east-1 in ops/prices.yaml"):
        envelope(load_environment("dev"), prices)
    with pytest.raises(OpsError, match="no prices for region eu-west-1"):
        envelope(load_environment("dev", overrides={"region": "eu-west-1"}))


def test_make_cost_prints_every_environment_with_its_source():
    result = CliRunner().invoke(cli.app, ["cost"])
    assert result.exit_code == 0, result.output
    assert f"prices: ops/prices.yaml, USD, retrieved {load_prices()['retrieved']}" in result.output
    for name in known_environments():
        assert f"{name} (us-east-1): {one_line(envelope(load_environment(name)))}" in result.output
    assert result.output.index("dev (") < result.output.index("staging (") < result.output.index("prod (")


def test_the_synth_summary_has_one_cost_line_per_environment(tmp_path):
    """A minimal assembly (one stack per stage) in cdk.out's layout."""
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": {}}))
    for stage in ("Dev", "Staging", "Prod", "Delivery-Dev"):
        folder = tmp_path / f"assembly-{stage}"
        folder.mkdir()
        (folder / f"{stage}-Data.template.json").write_text(json.dumps({"Resources": {"K": {}}}))
        artifact = {
            "type": "aws:cloudformation:stack",
            "displayName": f"{stage}/Data",
            "environment": "aws://111111111111/us-east-1",
            "properties": {"templateFile": f"{stage}-Data.template.json"},
        }
        (folder / "manifest.json").write_text(json.dumps({"artifacts": {f"{stage}Data": artifact}}))
    lines = summarize(tmp_path).splitlines()
    costs = [line for line in lines if line.startswith("  cost: ")]
    assert costs == [
        f"  cost: {one_line(envelope(load_environment(n)))} (details: make cost ENV={n})"
        for n in ("dev", "prod", "staging")
    ]
    assert lines.index(costs[0]) == lines.index("Dev:") + 2  # right under the environment's stacks
