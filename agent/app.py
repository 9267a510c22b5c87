"""The AgentCore app: ``POST /invocations`` and ``GET /ping`` (``bedrock_agentcore.BedrockAgentCoreApp``).

Request (JSON object, at most 16 KiB, unknown fields refused)::

    {"prompt": "free text"}                                   # and/or
    {"case": {"patient_id": "P-000001", "symptoms": ["chest pain"], "vitals": {"heart_rate_bpm": 110}},
     "stream": false}

Answers: 200 JSON summary, or SSE events when ``"stream": true`` or ``Accept: text/event-stream``;
400/413 bad request, 404 unknown patient, 502/503 model endpoint failure; each with ``{"error": reason}``.
The session id (header ``X-Amzn-Bedrock-AgentCore-Runtime-Session-Id``) is echoed in the answer.

Heavy modules (strands, boto3 clients, exporters) load on the first invocation, so ``/ping`` is
healthy as soon as the process is up.

Run locally: ``python -m agent.app --local [--port 8080]`` (see agent/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: agent/app.py --local
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bedrock_agentcore.runtime import BedrockAgentCoreApp
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from agent.errors import ConfigurationError, DiagnosisError, PatientNotFound

SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
LOCAL_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB")
_RETRYABLE = {"ModelNotReadyException", "ServiceUnavailable", "ThrottlingException"}

app = BedrockAgentCoreApp()
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
    """A model-endpoint failure as 502 (503 when retrying later helps); None for anything else."""
    from botocore.exceptions import ClientError

    if isinstance(e, DiagnosisError):
        return HTTPException(502, str(e))
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        status = 503 if err.get("Code") in _RETRYABLE else 502
        return HTTPException(status, f"model endpoint error: {err.get('Code')}: {err.get('Message')}")
    return None


@app.entrypoint
async def invoke(payload: Any, context: Any) -> Any:
    from agent.models import RequestError, parse_request

    try:
        request = parse_request(payload)
    except RequestError as e:
        raise HTTPException(e.status, str(e)) from None
    try:
        runtime = await asyncio.to_thread(get_runtime)
        prepared = await runtime.prepare(request)
    except PatientNotFound as e:
        raise HTTPException(404, str(e)) from None
    except ConfigurationError as e:
        raise HTTPException(500, str(e)) from None
    session_id = context.session_id
    accept = context.request.headers.get("accept", "") if context.request is not None else ""
    if request.stream or "text/event-stream" in accept:
        return runtime.events(prepared, session_id)
    try:
        summary = await runtime.run(prepared, session_id)
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

    try:
        load_settings()  # fail fast on a bad environment; the runtime itself is built on first use
    except ConfigurationError as e:
        parser.exit(2, f"{e}\n")
    app.run(port=args.port, host=args.host or ("127.0.0.1" if args.local else None))


if __name__ == "__main__":
    main()
