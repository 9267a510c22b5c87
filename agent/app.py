"""The AgentCore app: ``POST /invocations`` and ``GET /ping`` (``bedrock_agentcore.BedrockAgentCoreApp``).

Request (JSON object, at most 16 KiB, unknown fields refused)::

    {"prompt": "free text"}                                   # and/or
    {"case": {"patient_id": "P-000001", "symptoms": ["chest pain"], "vitals": {"heart_rate_bpm": 110}},
     "stream": false}

Only ``Content-Type: application/json`` (any charset) is accepted: anything else is 415, before the body
is read. Answers: 200 JSON summary, or SSE events when ``"stream": true`` or ``Accept: text/event-stream``;
400/413 bad request, 404 unknown patient, 502/503 model endpoint failure (503: unreachable, throttled or
not ready -- retry later); each with ``{"error": reason}``. A streamed request that fails before its first
event gets the same status; once events have flowed, the failure is the last event
(``{"event": "error", "status": 502|503, "error": reason}``). The session id (header
``X-Amzn-Bedrock-AgentCore-Runtime-Session-Id``) is echoed in the answer.

At start, the app checks its environment and tracing configuration (exit 2 naming what is wrong), answers
``/ping`` at once, and builds the runtime (strands, boto3 clients, tracing) in the background, so the first
invocation does not pay for it (it waits for the build if it arrives first).

Run locally: ``python -m agent.app --local [--port 8080]`` (see agent/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: agent/app.py --local
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bedrock_agentcore.runtime import BedrockAgentCoreApp
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.errors import ConfigurationError, DiagnosisError, PatientNotFound

log = logging.getLogger("agent.app")

SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
EMULATOR_BIND_VAR = "AGENTCORE_EMULATOR_BIND"  # host:port, set only by local/agentcore.py
LOCAL_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB")
_RETRYABLE = {"ModelNotReadyException", "ServiceUnavailable", "ThrottlingException", "TooManyRequestsException"}


class JsonOnly:
    """ASGI middleware: ``POST /invocations`` with a media type other than ``application/json`` gets 415
    before its body is read (so nothing runs, nothing is written)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/invocations":
            header = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
            media_type = header.split(";", 1)[0].strip().lower()
            if media_type != "application/json":
                shown = repr(media_type[:60]) if media_type else "none"
                reason = f"unsupported Content-Type {shown}: send the request as application/json"
                return await JSONResponse({"error": reason}, status_code=415)(scope, receive, send)
        await self.app(scope, receive, send)


app = BedrockAgentCoreApp(middleware=[Middleware(JsonOnly)])
_runtime: Any = None
_runtime_lock = threading.Lock()


def get_runtime() -> Any:
    """The process's ``ClinicalAgentRuntime``, built on first use (this is where strands gets imported)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            from agent.service import ClinicalAgentRuntime

            _runtime = ClinicalAgentRuntime.from_environment()
    return _runtime


def _upstream_error(e: Exception) -> HTTPException | None:
    """A failure of a service the agent depends on (the model endpoint above all) as 502, or 503 when
    retrying later helps (unreachable, throttled, not ready); None for anything else. Reasons name the
    service and the error, never a URL or a payload."""
    from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
    from botocore.exceptions import ConnectionError as EndpointUnreachable

    if isinstance(e, DiagnosisError):
        return HTTPException(503 if e.retryable else 502, str(e))
    cause = e.__cause__ if isinstance(e.__cause__, BotoCoreError | ClientError) else e
    if isinstance(cause, ClientError):
        err = cause.response.get("Error", {})
        status = 503 if err.get("Code") in _RETRYABLE else 502
        return HTTPException(status, f"model endpoint error: {err.get('Code')}: {err.get('Message')}")
    if isinstance(cause, EndpointUnreachable | ReadTimeoutError):
        return HTTPException(503, f"model endpoint unreachable ({type(cause).__name__}): retry later")
    if isinstance(cause, BotoCoreError):
        return HTTPException(502, f"model endpoint failed ({type(cause).__name__})")
    if type(e).__name__ == "ModelThrottledException":  # strands' name for a throttled model call
        return HTTPException(503, "model endpoint throttled: retry later")
    return None


async def _first_then_rest(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Run the event stream in its own task; wait for its first event, so that a failure before any byte
    is sent raises here (a real 502/503). Later failures become the stream's last event."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
    done = object()

    async def produce() -> None:
        try:
            async for event in events:
                await queue.put(event)
        except Exception as e:  # handed to the consumer, which maps or re-raises it
            await queue.put(e)
        else:
            await queue.put(done)

    task = asyncio.create_task(produce())
    first = await queue.get()
    if isinstance(first, Exception):
        raise _upstream_error(first) or first

    async def rest() -> AsyncIterator[dict[str, Any]]:
        item = first
        try:
            while item is not done:
                if isinstance(item, Exception):
                    mapped = _upstream_error(item)
                    if mapped is None:
                        log.error("invocation failed while streaming", exc_info=item)
                    yield {
                        "event": "error",
                        "status": mapped.status_code if mapped else 500,
                        "error": mapped.detail if mapped else f"internal error ({type(item).__name__})",
                    }
                    return
                yield item
                item = await queue.get()
        finally:
            task.cancel()

    return rest()


@app.entrypoint
async def invoke(payload: Any, context: Any) -> Any:
    from agent.models import RequestError, parse_request

    try:
        request = parse_request(payload)
    except RequestError as e:
        raise HTTPException(e.status, str(e)) from None
    session_id = context.session_id
    accept = context.request.headers.get("accept", "") if context.request is not None else ""
    try:
        runtime = await asyncio.to_thread(get_runtime)
        prepared = await runtime.prepare(request)
        if request.stream or "text/event-stream" in accept:
            return await _first_then_rest(runtime.events(prepared, session_id))
        summary = await runtime.run(prepared, session_id)
    except PatientNotFound as e:
        raise HTTPException(404, str(e)) from None
    except ConfigurationError as e:
        raise HTTPException(500, str(e)) from None
    except HTTPException:
        raise
    except Exception as e:
        mapped = _upstream_error(e)
        if mapped is None:
            raise
        raise mapped from None
    return JSONResponse(summary, headers={SESSION_HEADER: session_id} if session_id else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agent.app", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--local",
        action="store_true",
        help="serve on 127.0.0.1 against local endpoints (requires " + ", ".join(LOCAL_ENDPOINT_VARS) + ")",
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080, as on AgentCore)")
    parser.add_argument("--host", default=None, help="bind address (default: 127.0.0.1, 0.0.0.0 in a container)")
    args = parser.parse_args(argv)
    if args.local:
        missing = [v for v in LOCAL_ENDPOINT_VARS if not os.environ.get(v)]
        if missing:
            parser.exit(2, f"--local runs against local endpoints: set {', '.join(missing)}\n")
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")  # local endpoints accept any credentials
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    from agent.settings import load_settings
    from agent.telemetry import check_configuration

    try:
        check_configuration(load_settings())  # fail fast on a bad environment or tracing configuration
    except ConfigurationError as e:
        parser.exit(2, f"{e}\n")
    host, port = args.host or ("127.0.0.1" if args.local else None), args.port
    if os.environ.get(EMULATOR_BIND_VAR):  # local/agentcore.py runs the package here: loopback, a free port
        host, _, bound = os.environ[EMULATOR_BIND_VAR].rpartition(":")
        port = int(bound)
    threading.Thread(target=_build_runtime, name="build-runtime", daemon=True).start()
    app.run(port=port, host=host)


def _build_runtime() -> None:
    """Start-up, in the background: the runtime (imports, clients, tracing) is ready before most first requests."""
    try:
        get_runtime()
    except Exception:  # the first request builds it again and answers with the error
        log.exception("building the agent runtime at start failed")


if __name__ == "__main__":
    main()
