"""The monthly cost envelope of an environment at its minimum and maximum scale, from the pinned price file
(ops/prices.yaml, which names its source and date): endpoint instance-hours, AgentCore, MLflow, storage, and
one training run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ops.errors import OpsError
from ops.ui import console, money
from ops.weights import S3Weights, weights_location
from stacks.settings import EnvironmentSettings

PRICES = Path(__file__).resolve().parent / "prices.yaml"


@dataclass(frozen=True)
class Line:
    item: str
    low: float
    high: float
    basis: str


@dataclass(frozen=True)
class Envelope:
    env: str
    region: str
    monthly: list[Line]
    training_run: Line | None  # None: the environment does not train

    @property
    def low(self) -> float:
        return sum(line.low for line in self.monthly)

    @property
    def high(self) -> float:
        return sum(line.high for line in self.monthly)


def load_prices(path: Path = PRICES) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


class _Prices:
    def __init__(self, prices: dict[str, Any], region: str):
        if region not in prices["regions"]:
            raise OpsError(f"no prices for region {region} in ops/prices.yaml (it has {', '.join(prices['regions'])})")
        self.table, self.region = prices["regions"][region], region

    def instance(self, instance_type: str) -> float:
        hourly = self.table["sagemaker_instance_hour"]
        if instance_type not in hourly:
            raise OpsError(
                f"no price for {instance_type} in {self.region} in ops/prices.yaml (sagemaker_instance_hour)"
            )
        return float(hourly[instance_type])

    def __getitem__(self, key: str) -> Any:
        return self.table[key]


def _endpoint(s: EnvironmentSettings, p: _Prices, hours: float) -> Line:
    inf = s.inference
    rate = p.instance(inf.instance_type)
    return Line(
        f"endpoint ({inf.instance_type})",
        inf.min_instance_count * hours * rate,
        inf.max_instance_count * hours * rate,
        f"{inf.min_instance_count}..{inf.max_instance_count} instances × {hours:.0f} h × ${rate}/h",
    )


def _agent(p: _Prices, a: dict[str, Any]) -> Line:
    session = a["agent_session"]
    each = (
        session["active_vcpu_seconds"] / 3600 * p["agentcore_vcpu_hour"]
        + session["memory_gb"] * session["seconds"] / 3600 * p["agentcore_gb_hour"]
    )
    sessions = a["agent_sessions_per_month"]
    return Line(
        "AgentCore runtime",
        sessions["min"] * each,
        sessions["max"] * each,
        f"{sessions['min']}..{sessions['max']} sessions × ${each:.5f} (assumed use per session)",
    )


def _mlflow(s: EnvironmentSettings, p: _Prices, hours: float) -> Line:
    if s.mlflow.kind == "serverless":
        month = float(p["mlflow_app_month"])
        return Line("MLflow (serverless App)", month, month, "no charge of its own; artifacts count as storage")
    size = s.mlflow.tracking_server_size
    rates = p["mlflow_tracking_server_hour"]
    if size not in rates:
        raise OpsError(f"no price for an MLflow tracking server of size {size} in {p.region} in ops/prices.yaml")
    month = float(rates[size]) * hours
    return Line(f"MLflow (tracking server {size})", month, month, f"{hours:.0f} h × ${rates[size]}/h, always on")


def _storage(s: EnvironmentSettings, p: _Prices, a: dict[str, Any]) -> Line:
    staged = sum(isinstance(weights_location(s, m), S3Weights) for m in s.inference.models)
    weights = staged * a["weights_gb_per_model"]
    other = a["other_storage_gb"]
    gb_month, key = p["s3_standard_gb_month"], p["kms_key_month"]
    return Line(
        "storage (S3, KMS key)",
        (weights + other["min"]) * gb_month + key,
        (weights + other["max"]) * gb_month + key,
        f"{weights:g} GB of weights + {other['min']}..{other['max']} GB × ${gb_month}/GB-month + ${key} key",
    )


def _training_run(s: EnvironmentSettings, p: _Prices, a: dict[str, Any]) -> Line | None:
    t, typical = s.training, a["training_hours"]
    if t is None:
        return None
    cap = t.max_runtime_seconds / 3600
    jobs = [
        (t.preprocess_instance_type, 1, typical["preprocess"]),
        (t.training_instance_type, t.training_instance_count, typical["finetune"]),
        (t.evaluate_instance_type, 1, typical["evaluate"]),
    ]
    low = sum(p.instance(kind) * n * hours for kind, n, hours in jobs)
    high = sum(p.instance(kind) * n * cap for kind, n, _ in jobs)
    spot = "; spot training bills less" if t.use_spot else ""
    return Line(
        "one training run",
        low,
        high,
        f"typical job hours .. each job's {cap:g} h limit (training.max_runtime_seconds){spot}",
    )


def envelope(settings: EnvironmentSettings, prices: dict[str, Any] | None = None) -> Envelope:
    prices = prices or load_prices()
    p, a, hours = _Prices(prices, settings.region), prices["assumptions"], float(prices["hours_per_month"])
    monthly = [_endpoint(settings, p, hours), _agent(p, a), _mlflow(settings, p, hours), _storage(settings, p, a)]
    return Envelope(settings.name, settings.region, monthly, _training_run(settings, p, a))


def one_line(e: Envelope) -> str:
    """The summary line of `make synth`."""
    run = e.training_run
    if run is None:
        return f"{money(e.low)}–{money(e.high)}/month (does not train)"
    return f"{money(e.low)}–{money(e.high)}/month, + {money(run.low)}–{money(run.high)} per training run"


def show(e: Envelope, prices: dict[str, Any]) -> None:
    console.print(f"[bold]{e.env}[/] ({e.region}): {one_line(e)}")
    for line in [*e.monthly, *([e.training_run] if e.training_run else [])]:
        console.print(f"  {line.item:<32} {money(line.low):>10} – {money(line.high):<10} {line.basis}")
    on_top = "a training run comes on top" if e.training_run else "this environment does not train"
    console.print(f"  {'total per month':<32} {money(e.low):>10} – {money(e.high):<10} ({on_top})")


def run(settings: list[EnvironmentSettings]) -> None:
    prices = load_prices()
    console.print(
        f"prices: ops/prices.yaml, {prices['currency']}, retrieved {prices['retrieved']} ({prices['source']})"
    )
    for s in settings:
        show(envelope(s, prices), prices)
