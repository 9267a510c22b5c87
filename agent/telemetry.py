"""Tracing: strands' OpenTelemetry spans, exported to MLflow and/or AgentCore observability.

* MLflow: when ``MLFLOW_TRACKING_URI`` is an http(s) URL, spans go over OTLP/http to
  ``<uri>/v1/traces`` with header ``x-mlflow-experiment-id`` (``MLFLOW_EXPERIMENT_ID``, or the id of
  ``MLFLOW_EXPERIMENT_NAME``, created when missing).
* AgentCore observability: the runtime is started under ADOT (``opentelemetry-instrument``), which
  installs the global tracer provider first; strands' spans then join it. Without ADOT, the standard
  ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` variables add a plain OTLP exporter.
* Content: strands 1.62 records prompts, completions, system prompt and tool arguments/results on its
  ``gen_ai`` spans unless ``OTEL_SEMCONV_STABILITY_OPT_IN`` carries ``gen_ai_unredacted_attributes=<allow-list>``.
  Unless prompts may be recorded, we set that token with an empty allow-list, so every one of them
  reads ``[REDACTED]``; the loggers that print payloads (strands at INFO, botocore at DEBUG) are
  held above those levels too.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

log = logging.getLogger(__name__)

OPT_IN_VAR = "OTEL_SEMCONV_STABILITY_OPT_IN"
_REDACT_TOKEN = "gen_ai_unredacted_attributes="
_PAYLOAD_LOGGERS = {"strands": logging.WARNING, "botocore.endpoint": logging.INFO, "botocore.parsers": logging.INFO}


def apply_content_policy(record_prompts: bool) -> None:
    """Make strands redact (default) or record message content on spans and in its logs."""
    tokens = [
        t.strip()
        for t in os.environ.get(OPT_IN_VAR, "").split(",")
        if t.strip() and not t.strip().startswith(_REDACT_TOKEN)
    ]
    if not record_prompts:
        tokens.append(_REDACT_TOKEN)  # empty allow-list: every sensitive attribute is redacted
    if tokens:
        os.environ[OPT_IN_VAR] = ",".join(tokens)
    else:
        os.environ.pop(OPT_IN_VAR, None)
    # strands reads the variable once, when it creates its tracer singleton: drop one made earlier.
    import strands.telemetry.tracer as strands_tracer

    strands_tracer._tracer_instance = None
    # Loggers that print request/response payloads (prompts, patient fields): strands at INFO,
    # botocore at DEBUG. Keep them above that level unless content may be recorded.
    for name, level in _PAYLOAD_LOGGERS.items():
        logging.getLogger(name).setLevel(logging.NOTSET if record_prompts else level)


def mlflow_experiment_id(tracking_uri: str, name: str, timeout: float = 10.0) -> str:
    """The id of MLflow experiment ``name`` (created when missing), through MLflow's REST API."""
    base = tracking_uri.rstrip("/")
    query = urllib.parse.urlencode({"experiment_name": name})
    try:
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=timeout) as r:
            return json.load(r)["experiment"]["experiment_id"]
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
    req = urllib.request.Request(
        f"{base}/api/2.0/mlflow/experiments/create",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)["experiment_id"]


def configure_telemetry(settings: Any) -> Any:
    """Set up strands' telemetry for this process; returns the ``StrandsTelemetry``."""
    apply_content_policy(settings.record_prompts)
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from strands.telemetry import StrandsTelemetry

    current = trace.get_tracer_provider()
    adopted = isinstance(current, TracerProvider)  # ADOT (or a test) installed one already
    telemetry = StrandsTelemetry(tracer_provider=current) if isinstance(current, TracerProvider) else StrandsTelemetry()

    uri = settings.mlflow_tracking_uri
    if uri and uri.startswith(("http://", "https://")):
        try:
            experiment = settings.mlflow_experiment_id or mlflow_experiment_id(uri, settings.mlflow_experiment_name)
        except (OSError, ValueError, KeyError) as e:
            log.warning("MLflow at %s not usable (%s): traces are not exported to MLflow", uri, e)
        else:
            telemetry.setup_otlp_exporter(
                endpoint=f"{uri.rstrip('/')}/v1/traces", headers={"x-mlflow-experiment-id": str(experiment)}
            )
            log.info("traces exported to MLflow %s, experiment %s", uri, experiment)
    elif uri:
        log.warning(
            "MLFLOW_TRACKING_URI %r is not an http(s) URL: traces are not exported to MLflow "
            "(AgentCore observability still receives them under ADOT)",
            uri,
        )
    if not adopted and (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    ):
        telemetry.setup_otlp_exporter()
    return telemetry
