"""Tracing: one OpenTelemetry trace per invocation, sent to two sinks, with the content policy applied to both.

* AgentCore observability (CloudWatch GenAI observability): the runtime starts under ADOT
  (``opentelemetry-instrument main.py``, ``aws-opentelemetry-distro`` in the package), which installs the
  global tracer provider and its exporters before the app is imported
  (https://docs.aws.amazon.com/bedrock-agentcore/latest/devguide/observability-configure.html). The app
  adopts that provider: strands' spans and ours join it. Outside ADOT (a developer's machine), strands
  creates the provider and the standard ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` adds an OTLP exporter.
* MLflow: ``MLFLOW_TRACKING_URI`` is the SageMaker MLflow App's or tracking server's ARN (the
  ``sagemaker-mlflow`` plugin resolves it to its endpoint and signs every request with SigV4: service
  ``sagemaker`` for an App, ``sagemaker-mlflow`` for a tracking server), or an http(s) URL of an MLflow
  server (local runs). MLflow's own tracing exports the spans (``mlflow.strands.autolog()`` adds its span
  processor to the same provider), so both sinks see the same spans. No unsigned OTLP to MLflow.
* Content: strands records prompts, completions, the system prompt and tool arguments/results on its
  ``gen_ai`` spans unless ``OTEL_SEMCONV_STABILITY_OPT_IN`` carries ``gen_ai_unredacted_attributes=<allow-list>``.
  Unless prompts may be recorded we set that token with an empty allow-list, so every one of them reads
  ``[REDACTED]`` on the spans, hence in both sinks; ADOT's own instrumentations capture no message content
  (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=false``, set by the stack and defaulted here); the
  loggers that print payloads (strands at INFO, botocore at DEBUG) are held above those levels.

What cannot work stops the app at start (``check_configuration``, exit 2, naming the variable): an
``MLFLOW_TRACKING_URI`` that is neither a SageMaker MLflow ARN nor an http(s) URL, an ARN without the
plugin installed, or ``AGENT_OBSERVABILITY_ENABLED=true`` in a process not started under ADOT. What fails
only at run time -- MLflow unreachable or refusing the experiment -- is logged at ERROR once, at start,
naming the URI and the error; the agent keeps answering and AgentCore observability keeps its traces.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

from agent.errors import ConfigurationError

log = logging.getLogger(__name__)

OPT_IN_VAR = "OTEL_SEMCONV_STABILITY_OPT_IN"
CAPTURE_CONTENT_VAR = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"  # ADOT's instrumentations
OBSERVABILITY_VAR = "AGENT_OBSERVABILITY_ENABLED"
_REDACT_TOKEN = "gen_ai_unredacted_attributes="
_PAYLOAD_LOGGERS = {"strands": logging.WARNING, "botocore.endpoint": logging.INFO, "botocore.parsers": logging.INFO}
# arn:<partition>:sagemaker:<region>:<account>:mlflow-app/<id> or :mlflow-tracking-server/<name>
MLFLOW_ARN = re.compile(
    r"^arn:aws(-[a-z]+)*:sagemaker:[a-z]{2}(-[a-z]+)+-\d:\d{12}:(mlflow-app|mlflow-tracking-server)/[A-Za-z0-9-]{1,256}$"
)
# The MLflow client in a runtime: no usage pings (no route out of an isolated VPC anyway), and a broken
# MLflow costs seconds at start, not MLflow's default of 7 retries x 120 s.
MLFLOW_CLIENT_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # MLflow sends its traces to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT instead of the tracking URI when that
    # is set -- and ADOT sets it (X-Ray). Here ADOT owns OTLP; MLflow's traces go to MLflow.
    "MLFLOW_ENABLE_OTLP_EXPORTER": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def mlflow_uri_kind(uri: str) -> str:
    """``"arn"`` (SageMaker MLflow, SigV4 through the plugin) or ``"http"``; ``ValueError`` for anything else."""
    if uri.startswith("arn:"):
        if not MLFLOW_ARN.fullmatch(uri):
            raise ValueError(
                f"{uri!r} is not a SageMaker MLflow ARN "
                "(arn:aws:sagemaker:<region>:<account>:mlflow-app/<id> or ...:mlflow-tracking-server/<name>)"
            )
        return "arn"
    if uri.startswith(("http://", "https://")):
        return "http"
    raise ValueError(f"{uri!r} is neither a SageMaker MLflow ARN nor an http(s) URL of an MLflow server")


def _under_adot() -> bool:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    return isinstance(trace.get_tracer_provider(), TracerProvider)


def check_configuration(settings: Any) -> None:
    """Refuse, at start, a tracing configuration that cannot work (``ConfigurationError`` naming the variable)."""
    uri = settings.mlflow_tracking_uri
    if uri and mlflow_uri_kind(uri) == "arn" and importlib.util.find_spec("sagemaker_mlflow") is None:
        raise ConfigurationError(
            "MLFLOW_TRACKING_URI: an MLflow ARN needs the sagemaker-mlflow plugin (>= 0.2), which is not installed"
        )
    if os.environ.get(OBSERVABILITY_VAR, "").lower() == "true" and not _under_adot():
        raise ConfigurationError(
            f"{OBSERVABILITY_VAR}=true but the process does not run under ADOT: start it as "
            "`opentelemetry-instrument main.py` with aws-opentelemetry-distro installed, or AgentCore "
            "observability receives none of the agent's spans"
        )


def apply_content_policy(record_prompts: bool) -> None:
    """Make strands redact (default) or record message content on spans and in its logs."""
    tokens = [
        t.strip()
        for t in os.environ.get(OPT_IN_VAR, "").split(",")
        if t.strip() and not t.strip().startswith(_REDACT_TOKEN)
    ]
    if not record_prompts:
        tokens.append(_REDACT_TOKEN)  # empty allow-list: every sensitive attribute is redacted
        os.environ[CAPTURE_CONTENT_VAR] = "false"
    if tokens:
        os.environ[OPT_IN_VAR] = ",".join(tokens)
    else:
        os.environ.pop(OPT_IN_VAR, None)
    # strands reads the variable once, when it creates its tracer singleton: drop one made earlier.
    import strands.telemetry.tracer as strands_tracer

    strands_tracer._tracer_instance = None
    for name, level in _PAYLOAD_LOGGERS.items():
        logging.getLogger(name).setLevel(logging.NOTSET if record_prompts else level)


def export_to_mlflow(tracking_uri: str, experiment_name: str, experiment_id: str | None = None) -> bool:
    """Send every span of this process's tracer provider to MLflow (``tracking_uri``: ARN or URL), into the
    experiment (created when missing). False, with an ERROR log naming the cause, when MLflow refuses."""
    for name, value in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    try:
        experiment = (
            mlflow.set_experiment(experiment_id=experiment_id)
            if experiment_id
            else mlflow.set_experiment(experiment_name)
        )
    except (MlflowException, OSError) as e:  # refused, unreachable, not signed: say so, keep serving
        log.error(
            "MLflow at %s is not usable (%s): traces are NOT exported to MLflow "
            "(AgentCore observability still receives them)",
            tracking_uri,
            str(e).splitlines()[0][:500],
        )
        return False
    from mlflow.strands.autolog import StrandsSpanProcessor
    from opentelemetry import trace

    provider: Any = trace.get_tracer_provider()
    provider.add_span_processor(InvocationTracesOnly(StrandsSpanProcessor()))  # beside ADOT's exporters
    log.info("traces exported to MLflow %s, experiment %s", tracking_uri, experiment.experiment_id)
    return True


class InvocationTracesOnly(SpanProcessor):
    """A span processor that hands ``inner`` (MLflow's) only the traces rooted at ``root`` -- one per
    invocation (``agent.service`` starts it as a new trace, linked to the caller's span) -- and none of
    the server's own spans (``GET /ping``, the ASGI request span, AWS calls outside an invocation)."""

    def __init__(self, inner: Any, root: str = "clinical_request", keep: int = 4096) -> None:
        self.inner, self.root, self.keep = inner, root, keep
        self._traces: dict[int, None] = {}  # trace ids in flight, oldest first
        self._lock = threading.Lock()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        trace_id = span.context.trace_id
        with self._lock:
            if span.parent is None and span.name == self.root:
                self._traces[trace_id] = None
                while len(self._traces) > self.keep:  # a trace whose root never ended
                    self._traces.pop(next(iter(self._traces)))
            elif trace_id not in self._traces:
                return
        self.inner.on_start(span, parent_context)

    def on_end(self, span: Any) -> None:
        trace_id = span.context.trace_id
        with self._lock:
            if trace_id not in self._traces:
                return
            if span.parent is None:
                del self._traces[trace_id]
        self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


def configure_telemetry(settings: Any) -> Any:
    """Set up this process's tracing (see the module docstring); returns the ``StrandsTelemetry``."""
    apply_content_policy(settings.record_prompts)
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from strands.telemetry import StrandsTelemetry

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # ADOT (or a test) installed it, with its exporters
        telemetry = StrandsTelemetry(tracer_provider=current)
    else:
        telemetry = StrandsTelemetry()
        if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            telemetry.setup_otlp_exporter()
    if settings.mlflow_tracking_uri:
        export_to_mlflow(settings.mlflow_tracking_uri, settings.mlflow_experiment_name, settings.mlflow_experiment_id)
    return telemetry
