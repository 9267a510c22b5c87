"""Ask the deployed agent: InvokeAgentRuntime with the answer streamed as it arrives, a session kept for
follow-up questions, then the report's URI and where the trace is.

Before invoking: the runtime and its endpoint must be READY, the agent's inference component must exist, and its
base component must have a copy. An endpoint scaled to zero gets one request that finds no capacity (which starts
the scale-out: https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-zero-instances.html) and the
command waits, up to a bound, for a copy.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from ops import outputs
from ops.cloud import Cloud
from ops.errors import ACCESS_DENIED, CREDENTIAL_ERRORS, OpsError
from ops.ui import console, duration, poll

SESSION_HEADER_MIN = 33  # InvokeAgentRuntime's runtimeSessionId is 33 to 256 characters
RUNTIME_WAIT = {"CREATING", "UPDATING"}
COMPONENT_WAIT = {"Creating", "Updating"}
SCALE_FROM_ZERO = "https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-zero-instances.html"


# --- the request and the session ------------------------------------------------------------------------


def build_request(prompt: str | None, case_file: Path | None) -> dict[str, Any]:
    """The invocation body, checked locally with the agent's own request model (agent/models.py)."""
    from agent.models import RequestError, parse_request

    body: dict[str, Any] = {}
    if case_file is not None:
        try:
            loaded = json.loads(case_file.read_text())
        except FileNotFoundError:
            raise OpsError(f"--case {case_file}: no such file") from None
        except json.JSONDecodeError as e:
            raise OpsError(f"--case {case_file}: not valid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(loaded, dict):
            raise OpsError(f"--case {case_file}: expected a JSON object")
        body = dict(loaded) if "case" in loaded or "prompt" in loaded else {"case": loaded}
    if prompt:
        body["prompt"] = prompt
    if not body:
        raise OpsError("nothing to ask: give --prompt TEXT or --case FILE (make ask ENV=... PROMPT=... or CASE=...)")
    body["stream"] = True
    try:
        parse_request(body)
    except RequestError as e:
        raise OpsError(f"{case_file or '--prompt'}: {e}") from None
    return body


def session_file(env: str) -> Path:
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "clinical-agent" / "sessions" / f"{env}.json"


def session_for(cloud: Cloud, runtime_arn: str, *, new: bool) -> tuple[str, bool]:
    """The session for follow-up questions to this runtime (kept in ``session_file``), or a new one."""
    path = session_file(cloud.env)
    if not new and path.is_file():
        kept = json.loads(path.read_text())
        if kept.get("runtime_arn") == runtime_arn and len(kept.get("session_id", "")) >= SESSION_HEADER_MIN:
            return kept["session_id"], True
    session = f"{cloud.env}-{uuid.uuid4()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runtime_arn": runtime_arn, "session_id": session}) + "\n")
    return session, False


# --- readiness ------------------------------------------------------------------------------------------


def _last(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def runtime_ready(cloud: Cloud, runtime_arn: str, qualifier: str, wait: float) -> None:
    control = cloud.client("bedrock-agentcore-control")
    runtime_id = _last(runtime_arn)

    def probe() -> tuple[bool, None, str]:
        runtime = control.get_agent_runtime(agentRuntimeId=runtime_id)
        endpoint = control.get_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName=qualifier)
        for what, item in (
            (f"runtime {runtime['agentRuntimeName']}", runtime),
            (f"its endpoint {qualifier}", endpoint),
        ):
            status = item["status"]
            if status not in RUNTIME_WAIT | {"READY"}:
                reason = item.get("failureReason") or "no reason given"
                raise OpsError(
                    f"the agent {what} is {status} ({reason}), not READY: fix the deployment "
                    f"(make status ENV={cloud.env}; make deploy ENV={cloud.env})"
                )
        states = f"runtime {runtime['status']}, endpoint {endpoint['status']}"
        return runtime["status"] == endpoint["status"] == "READY", None, states

    poll(
        probe,
        clock=cloud.clock,
        interval=15,
        timeout=wait,
        waiting_for="the agent runtime to become READY",
        resume=f"make ask ENV={cloud.env} (same question)",
        on_timeout=f"it is still being deployed; see make status ENV={cloud.env}",
    )


def agent_components(cloud: Cloud) -> tuple[str, str, dict[str, Any] | None]:
    """The component the deployed agent calls (the Agent stack's output), the base component whose copies serve it,
    and its description (None when it does not exist)."""
    component = cloud.output(outputs.AGENT_COMPONENT)
    state = describe_component(cloud, component)
    base = (state or {}).get("Specification", {}).get("BaseInferenceComponentName") or component
    return component, base, state


def describe_component(cloud: Cloud, name: str) -> dict[str, Any] | None:
    try:
        return cloud.client("sagemaker").describe_inference_component(InferenceComponentName=name)
    except ClientError as e:
        if "Could not find" in e.response.get("Error", {}).get("Message", ""):
            return None
        raise


def wake(cloud: Cloud, endpoint: str, base: str) -> None:
    """One request that finds no capacity: it raises the NoCapacityInvocationFailures metric that scales out."""
    body = json.dumps({"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1})
    try:
        cloud.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=endpoint, InferenceComponentName=base, ContentType="application/json", Body=body
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ACCESS_DENIED | CREDENTIAL_ERRORS:
            raise
        # Expected while no copy runs ("no capacity"): the failure itself is the trigger.


def capacity(cloud: Cloud, wait: float) -> None:
    endpoint = cloud.output(outputs.ENDPOINT_NAME)
    described = cloud.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    if described["EndpointStatus"] not in ("InService", "Updating"):
        reason = described.get("FailureReason") or "no reason given"
        raise OpsError(
            f"endpoint {endpoint} is {described['EndpointStatus']} ({reason}); see make status ENV={cloud.env}"
        )
    component, base, state = agent_components(cloud)
    if state is None:
        raise OpsError(
            f"the agent calls inference component {component}, which does not exist: the Inference stack declares it "
            f"(see make status ENV={cloud.env}; deploy with make deploy ENV={cloud.env})"
        )
    resume = f"make ask ENV={cloud.env} (same question)"

    def copies(state: dict[str, Any] | None) -> tuple[bool, None, str]:
        state = state or {}
        current = state.get("RuntimeConfig", {}).get("CurrentCopyCount", 0)
        status = state.get("InferenceComponentStatus", "missing")
        if status == "Failed":
            raise OpsError(f"inference component {base} failed: {state.get('FailureReason', 'no reason given')}")
        return current >= 1 and status == "InService", None, f"{base}: {status}, {current} copies"

    state = describe_component(cloud, base)
    if copies(state)[0]:
        return
    if (state or {}).get("InferenceComponentStatus") not in COMPONENT_WAIT:
        console.print(
            f"endpoint {endpoint} is scaled to zero: component {base} has no copy. A request that finds no "
            "capacity starts one; an instance then boots and loads the weights, which takes several minutes "
            f"({SCALE_FROM_ZERO})."
        )
        wake(cloud, endpoint, base)
        console.print(f"sent that request; waiting up to {duration(wait)} for a copy (--wait SECONDS)")
    poll(
        lambda: copies(describe_component(cloud, base)),
        clock=cloud.clock,
        interval=20,
        timeout=wait,
        waiting_for=f"a copy of {base} on {endpoint}",
        resume=resume,
        on_timeout=(
            "the scale-out continues in SageMaker; check its alarm and the endpoint "
            f"(make status ENV={cloud.env}), then {resume}"
        ),
    )
    console.print(f"[green]✓[/] {base} has a copy")


# --- the invocation -------------------------------------------------------------------------------------


def events(response: dict[str, Any]) -> Any:
    """The agent's events: SSE ``data:`` lines, or one JSON summary when the answer was not streamed."""
    body = response["response"]
    if "text/event-stream" not in response.get("contentType", ""):
        yield {"event": "done", **json.loads(body.read())}
        return
    for raw in body.iter_lines():
        line = raw.decode() if isinstance(raw, bytes) else raw
        if line.startswith("data:"):
            yield json.loads(line[5:].strip())


def invoke(cloud: Cloud, runtime_arn: str, qualifier: str, session: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Stream the answer to the terminal; returns the final summary (``done``) plus the trace id."""
    response = cloud.client("bedrock-agentcore").invoke_agent_runtime(
        agentRuntimeArn=runtime_arn,
        qualifier=qualifier,
        runtimeSessionId=session,
        contentType="application/json",
        accept="text/event-stream",
        payload=json.dumps(payload).encode(),
    )
    summary: dict[str, Any] = {}
    for event in events(response):
        kind = event.get("event")
        if "error" in event and kind is None:
            raise OpsError(f"the agent failed: {event['error']}")
        if kind == "text":
            console.print(event["data"], end="", markup=False)
        elif kind == "tool_call":
            console.print(f"\n[dim]· calls {event['name']}[/]")
        elif kind == "done":
            summary = event
    console.print()
    if not summary:
        raise OpsError("the agent's answer ended without a result; see its logs (below) and try again")
    summary["trace_header"] = response.get("traceId", "")
    return summary


def trace_root(header: str) -> str | None:
    """The X-Ray trace id from an ``X-Amzn-Trace-Id`` header (``Root=1-...;Parent=...``)."""
    fields = dict(part.split("=", 1) for part in header.split(";") if "=" in part)
    return fields.get("Root")


def where(cloud: Cloud, runtime_arn: str, qualifier: str, session: str, summary: dict[str, Any]) -> None:
    report = summary.get("report_uri")
    if report:
        console.print(f"report: {report}")
    else:
        console.print("report: none stored (a case always stores one; a free-text prompt only when the agent decides)")
    root = trace_root(summary.get("trace_header", ""))
    region = cloud.region
    logs = f"/aws/bedrock-agentcore/runtimes/{_last(runtime_arn)}-{qualifier}"
    if root:
        url = f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#xray:traces/{root}"
        console.print(f"trace: AgentCore observability (X-Ray) {root}: {url}")
    console.print(f"       runtime logs: CloudWatch log group {logs}")
    console.print(
        f"       MLflow: experiment {cloud.settings.mlflow.experiment} on {cloud.output(outputs.MLFLOW_ARN)} "
        f"(spans carry session.id={session})"
    )


def run(cloud: Cloud, *, prompt: str | None, case: Path | None, new_session: bool, wait: float) -> dict[str, Any]:
    payload = build_request(prompt, case)
    cloud.identity()
    runtime_arn = cloud.output(outputs.RUNTIME_ARN)
    qualifier = _last(cloud.output(outputs.RUNTIME_ENDPOINT_ARN))
    runtime_ready(cloud, runtime_arn, qualifier, wait)
    capacity(cloud, wait)
    session, reused = session_for(cloud, runtime_arn, new=new_session)
    kept = "continuing" if reused else "new"
    console.print(
        f"session {session} ({kept}; kept in {session_file(cloud.env)} for follow-ups, --new-session starts another)"
    )
    summary = invoke(cloud, runtime_arn, qualifier, session, payload)
    where(cloud, runtime_arn, qualifier, session, summary)
    return summary
