"""A local emulator of the SageMaker runtime API (InvokeEndpoint, InvokeEndpointWithResponseStream).

    python -m local.sagemaker_runtime --port 8090 \\
        --route clinical-llm/llama32-3b=http://127.0.0.1:30000 \\
        --route clinical-llm/clinical-lora=http://127.0.0.1:30000#adapter=clinical-lora

Point boto3 at it with ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:8090`` (any credentials;
requests must be SigV4-signed, as botocore does). ``--route ENDPOINT/COMPONENT=URL`` serves an
inference component (header ``X-Amzn-SageMaker-Inference-Component``), ``ENDPOINT=URL`` a classic
endpoint; ``#adapter=NAME`` makes it an adapter component: the container gets the header
``X-Amzn-SageMaker-Adapter-Identifier: NAME``, as SageMaker sends it. Requests go to ``URL/invocations``.

Errors have SageMaker's shape (header ``x-amzn-ErrorType``, body ``{"message": ...}``) so boto3 raises
``ValidationError`` (400: unknown endpoint or component), ``ModelError`` (424: the container answered
non-2xx), ``ServiceUnavailable`` (503: the container is unreachable). A stream carries ``PayloadPart``
events in AWS event-stream framing and ends with a ``ModelStreamError`` event if the container fails.
"""

from __future__ import annotations

import argparse
import binascii
import json
import re
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

ACCOUNT = "123456789012"
COMPONENT_HEADER = "X-Amzn-SageMaker-Inference-Component"
ADAPTER_HEADER = "X-Amzn-SageMaker-Adapter-Identifier"
_FORWARDED = ("Content-Type", "Accept", "X-Amzn-SageMaker-Custom-Attributes")
_NAME = r"[a-zA-Z0-9](-*[a-zA-Z0-9])*"
_ROUTE = re.compile(
    rf"^(?P<endpoint>{_NAME})(/(?P<component>{_NAME}))?=(?P<url>https?://[^#\s]+)(#adapter=(?P<adapter>[\w.-]+))?$"
)


@dataclass(frozen=True)
class Route:
    endpoint: str
    component: str | None
    url: str
    adapter: str | None = None


def parse_route(spec: str) -> Route:
    m = _ROUTE.match(spec)
    if not m:
        raise ValueError(f"invalid route {spec!r}: expected ENDPOINT[/COMPONENT]=http://HOST:PORT[#adapter=NAME]")
    return Route(m["endpoint"], m["component"], m["url"].rstrip("/"), m["adapter"])


# --- AWS event-stream framing (application/vnd.amazon.eventstream) -----------------------------


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total and header lengths), prelude CRC32, string headers
    (type 7), payload, message CRC32; integers big-endian."""
    encoded = b"".join(
        struct.pack("!B", len(k)) + k + b"\x07" + struct.pack("!H", len(v)) + v
        for k, v in ((k.encode(), v.encode()) for k, v in headers.items())
    )
    prelude = struct.pack("!II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack("!I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack("!I", binascii.crc32(message))


def payload_part(data: bytes) -> bytes:
    return encode_message(
        {":event-type": "PayloadPart", ":content-type": "application/octet-stream", ":message-type": "event"}, data
    )


def stream_error(message: str, code: str = "ModelStreamError") -> bytes:
    body = json.dumps({"Message": message, "ErrorCode": code}).encode()
    return encode_message(
        {":exception-type": "ModelStreamError", ":content-type": "application/json", ":message-type": "exception"}, body
    )


# --- the server -----------------------------------------------------------------------------


def create_app(routes: list[Route], timeout: float = 300.0) -> Any:  # noqa: C901 (to be split: issue 18)
    import contextlib

    import httpx
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route as Path

    table = {(r.endpoint, r.component): r for r in routes}
    if len(table) != len(routes):
        raise ValueError("routes: the same ENDPOINT/COMPONENT is given twice")
    endpoints = {r.endpoint for r in routes}
    state: dict[str, httpx.AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            state["client"] = client
            yield

    def error(status: int, code: str, message: str, **extra: Any) -> Response:
        return JSONResponse({"message": message, **extra}, status_code=status, headers={"x-amzn-ErrorType": code})

    def resolve(request: Any) -> Route | Response:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 ") or "/sagemaker/aws4_request" not in auth:
            return error(403, "MissingAuthenticationTokenException", "Missing or invalid SigV4 Authorization header")
        endpoint = request.path_params["endpoint"]
        component = request.headers.get(COMPONENT_HEADER)
        if endpoint not in endpoints:
            return error(400, "ValidationError", f"Endpoint {endpoint} of account {ACCOUNT} not found.")
        route = table.get((endpoint, component))
        if route:
            return route
        if component is None:
            return error(
                400,
                "ValidationError",
                "Inference Component Name header is required for endpoints to which you plan to deploy "
                "inference components. Please include Inference Component Name header or consider using "
                "SageMaker models.",
            )
        return error(400, "ValidationError", f"Inference Component {component} not found for endpoint {endpoint}.")

    def upstream_request(request: Any, route: Route, body: bytes) -> Any:
        headers = {h: request.headers[h] for h in _FORWARDED if h in request.headers}
        if route.adapter:
            headers[ADAPTER_HEADER] = route.adapter
        return state["client"].build_request("POST", f"{route.url}/invocations", content=body, headers=headers)

    def model_error(status: int, text: str) -> Response:
        kind = "client" if status < 500 else "server"
        return error(
            424,
            "ModelError",
            f'Received {kind} error ({status}) from primary with message "{text}".',
            OriginalStatusCode=status,
            OriginalMessage=text,
            LogStreamArn=f"arn:aws:logs:local:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/local",
        )

    def unreachable(route: Route, e: Exception) -> Response:
        return error(503, "ServiceUnavailable", f"model container {route.url} is not reachable: {type(e).__name__}")

    async def invoke(request: Any) -> Response:
        route = resolve(request)
        if isinstance(route, Response):
            return route
        body = await request.body()
        try:
            up = await state["client"].send(upstream_request(request, route, body))
        except httpx.TransportError as e:
            return unreachable(route, e)
        if not 200 <= up.status_code < 300:
            return model_error(up.status_code, up.text)
        return Response(
            up.content,
            media_type=up.headers.get("content-type", "application/json"),
            headers={"X-Amzn-Invoked-Production-Variant": "AllTraffic"},
        )

    async def invoke_stream(request: Any) -> Response:
        route = resolve(request)
        if isinstance(route, Response):
            return route
        body = await request.body()
        try:
            up = await state["client"].send(upstream_request(request, route, body), stream=True)
        except httpx.TransportError as e:
            return unreachable(route, e)
        if not 200 <= up.status_code < 300:
            text = (await up.aread()).decode(errors="replace")
            await up.aclose()
            return model_error(up.status_code, text)

        async def frames() -> AsyncIterator[bytes]:
            try:
                async for chunk in up.aiter_raw():
                    if chunk:
                        yield payload_part(chunk)
            except httpx.HTTPError as e:
                yield stream_error(f"the model container stream failed: {type(e).__name__}")
            finally:
                await up.aclose()

        return StreamingResponse(
            frames(),
            media_type="application/vnd.amazon.eventstream",
            headers={
                "X-Amzn-Invoked-Production-Variant": "AllTraffic",
                "X-Amzn-SageMaker-Content-Type": up.headers.get("content-type", "application/octet-stream"),
            },
        )

    async def ping(request: Any) -> Response:
        return JSONResponse({"status": "healthy", "routes": len(routes)})

    return Starlette(
        routes=[
            Path("/endpoints/{endpoint}/invocations", invoke, methods=["POST"]),
            Path("/endpoints/{endpoint}/invocations-response-stream", invoke_stream, methods=["POST"]),
            Path("/ping", ping, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.sagemaker_runtime", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--route", action="append", required=True, metavar="ENDPOINT[/COMPONENT]=URL[#adapter=NAME]")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the container")
    args = parser.parse_args(argv)
    try:
        app = create_app([parse_route(r) for r in args.route], args.timeout)
    except ValueError as e:
        parser.error(str(e))
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
