"""A local emulator of the SageMaker runtime API (InvokeEndpoint, InvokeEndpointWithResponseStream).

    python -m local.sagemaker_runtime --port 8090 \\
        --route clinical-llm/llama32-3b=http://127.0.0.1:30000 \\
        --route clinical-llm/clinical-lora=http://127.0.0.1:30000#adapter=clinical-lora

Point boto3 at it with ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:8090`` (any credentials;
requests must be SigV4-signed, as botocore does). ``--route ENDPOINT/COMPONENT=URL`` serves an
inference component (header ``X-Amzn-SageMaker-Inference-Component``), ``ENDPOINT=URL`` a classic
endpoint; ``#adapter=NAME`` makes it an adapter component: the container gets the header
``X-Amzn-SageMaker-Adapter-Identifier: NAME``, as SageMaker sends it. Requests go to ``URL/invocations``.

The wire protocol is botocore's service model for ``sagemaker-runtime``: every request header of both
operations is either passed to the container (``PASSED``), used to pick it (``ROUTING``), or refused as a
feature of other endpoint kinds (``REFUSED``) — a header botocore adds that is in none of them stops the
emulator at start-up. Responses carry every header the output shapes map: the container's content type
(``X-Amzn-SageMaker-Content-Type`` on the stream), custom attributes and session ids, the invoked
variant, and an ``x-amzn-RequestId`` (botocore's ``ResponseMetadata.RequestId``).

Errors have SageMaker's shape (header ``x-amzn-ErrorType``, body ``{"message": ...}``) so boto3 raises
``ValidationError`` (400: unknown endpoint or component, an unsupported header), ``ModelError`` (424: the
container answered non-2xx), ``ServiceUnavailable`` (503: the container is unreachable). A stream
carries ``PayloadPart`` events in AWS event-stream framing and ends with a ``ModelStreamError`` event if
the container fails.
"""

from __future__ import annotations

import argparse
import binascii
import contextlib
import functools
import json
import re
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

ACCOUNT = "123456789012"
VARIANT = "AllTraffic"
ADAPTER_HEADER = "X-Amzn-SageMaker-Adapter-Identifier"
OPERATIONS = ("InvokeEndpoint", "InvokeEndpointWithResponseStream")
# What SageMaker does with each request member that botocore sends as a header (by member name).
PASSED = {"ContentType", "Accept", "CustomAttributes", "InferenceId", "SessionId"}  # the container gets them
ROUTING = {"InferenceComponentName", "TargetVariant", "PrefixAwareId"}  # picks the container; not passed on
REFUSED = {  # features of endpoints this emulator does not serve
    "TargetModel": "multi-model endpoints",
    "TargetContainerHostname": "multi-container endpoints with direct invocation",
    "EnableExplanations": "endpoints with a SageMaker Clarify explainer",
}
# Response members the container provides, as headers of the same name (the rest the emulator sets).
FROM_CONTAINER = {"CustomAttributes", "NewSessionId", "ClosedSessionId"}
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


@dataclass(frozen=True)
class Wire:
    """One operation's header members, from botocore's service model: member -> HTTP header."""

    inputs: dict[str, str]
    outputs: dict[str, str]


@functools.cache
def wire() -> dict[str, Wire]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker-runtime")

    def headers(shape) -> dict[str, str]:
        return {
            n: m.serialization["name"] for n, m in shape.members.items() if m.serialization.get("location") == "header"
        }

    operations = {op: model.operation_model(op) for op in OPERATIONS}
    found = {op: Wire(headers(o.input_shape), headers(o.output_shape)) for op, o in operations.items()}
    for op, w in found.items():
        if unknown := set(w.inputs) - PASSED - ROUTING - set(REFUSED):
            raise RuntimeError(f"{op}: botocore sends headers this emulator does not handle: {sorted(unknown)}")
    return found


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


class Refused(Exception):
    """A request SageMaker would refuse; becomes an error response of its shape."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


class Runtime:
    """Both operations over a route table; ``client`` is an httpx.AsyncClient (set by the app's lifespan)."""

    def __init__(self, routes: list[Route]):
        self.table = {(r.endpoint, r.component): r for r in routes}
        if len(self.table) != len(routes):
            raise ValueError("routes: the same ENDPOINT/COMPONENT is given twice")
        self.endpoints = {r.endpoint for r in routes}
        self.client: Any = None
        wire()  # fails now, not on the first request, if botocore sends a header not handled here

    def resolve(self, request: Any, op: str) -> Route:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 ") or "/sagemaker/aws4_request" not in auth:
            raise Refused(403, "MissingAuthenticationTokenException", "Missing or invalid SigV4 Authorization header")
        inputs = wire()[op].inputs
        for member, why in REFUSED.items():
            if member in inputs and inputs[member] in request.headers:
                raise Refused(400, "ValidationError", f"{member} is supported only by {why}; this endpoint is not one.")
        variant = request.headers.get(inputs["TargetVariant"])
        if variant is not None and variant != VARIANT:
            raise Refused(400, "ValidationError", f"Variant {variant} is not a variant of this endpoint.")
        endpoint, component = request.path_params["endpoint"], request.headers.get(inputs["InferenceComponentName"])
        if endpoint not in self.endpoints:
            raise Refused(400, "ValidationError", f"Endpoint {endpoint} of account {ACCOUNT} not found.")
        if route := self.table.get((endpoint, component)):
            return route
        if component is None:
            raise Refused(
                400,
                "ValidationError",
                "Inference Component Name header is required for endpoints to which you plan to deploy "
                "inference components. Please include Inference Component Name header or consider using "
                "SageMaker models.",
            )
        raise Refused(400, "ValidationError", f"Inference Component {component} not found for endpoint {endpoint}.")

    def container_request(self, request: Any, op: str, route: Route, body: bytes) -> Any:
        inputs, names = wire()[op].inputs, wire()["InvokeEndpoint"].inputs
        # The container gets them under InvokeEndpoint's names: the stream's X-Amzn-SageMaker-Accept is its Accept.
        headers = {names[m]: request.headers[inputs[m]] for m in PASSED if inputs.get(m) in request.headers}
        if route.adapter:
            headers[ADAPTER_HEADER] = route.adapter
        return self.client.build_request("POST", f"{route.url}/invocations", content=body, headers=headers)

    @staticmethod
    def response_headers(op: str, container: Any) -> dict[str, str]:
        outputs = wire()[op].outputs
        headers = {outputs["InvokedProductionVariant"]: VARIANT}
        content_type = container.headers.get("content-type", "application/octet-stream")
        headers[outputs["ContentType"]] = content_type
        for member in FROM_CONTAINER & set(outputs):
            if (value := container.headers.get(outputs[member])) is not None:
                headers[outputs[member]] = value
        return headers

    @staticmethod
    def model_error(status: int, text: str) -> Refused:
        kind = "client" if status < 500 else "server"
        return Refused(
            424,
            "ModelError",
            f'Received {kind} error ({status}) from primary with message "{text}".',
            OriginalStatusCode=status,
            OriginalMessage=text,
            LogStreamArn=f"arn:aws:logs:local:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/local",
        )

    async def send(self, request: Any, op: str, *, stream: bool) -> tuple[Route, Any]:
        import httpx

        route = self.resolve(request, op)
        body = await request.body()
        try:
            container = await self.client.send(self.container_request(request, op, route, body), stream=stream)
        except httpx.TransportError as e:
            raise Refused(
                503, "ServiceUnavailable", f"model container {route.url} is not reachable: {type(e).__name__}"
            ) from None
        if not 200 <= container.status_code < 300:
            text = (await container.aread()).decode(errors="replace")
            await container.aclose()
            raise self.model_error(container.status_code, text)
        return route, container

    async def invoke(self, request: Any) -> Any:
        from starlette.responses import Response

        _, container = await self.send(request, "InvokeEndpoint", stream=False)
        headers = self.response_headers("InvokeEndpoint", container)
        content_type = headers.pop("Content-Type")
        return Response(container.content, media_type=content_type, headers=headers)

    async def invoke_stream(self, request: Any) -> Any:
        import httpx
        from starlette.responses import StreamingResponse

        op = "InvokeEndpointWithResponseStream"
        _, container = await self.send(request, op, stream=True)

        async def frames() -> AsyncIterator[bytes]:
            try:
                async for chunk in container.aiter_raw():
                    if chunk:
                        yield payload_part(chunk)
            except httpx.HTTPError as e:
                yield stream_error(f"the model container stream failed: {type(e).__name__}")
            finally:
                await container.aclose()

        return StreamingResponse(
            frames(), media_type="application/vnd.amazon.eventstream", headers=self.response_headers(op, container)
        )


def create_app(routes: list[Route], timeout: float = 300.0) -> Any:
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route as Path

    runtime = Runtime(routes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            runtime.client = client
            yield

    def operation(handler):
        async def endpoint(request: Any) -> Any:
            request_id = str(uuid.uuid4())
            try:
                response = await handler(request)
            except Refused as e:
                response = JSONResponse(
                    {"message": e.message, **e.extra}, status_code=e.status, headers={"x-amzn-ErrorType": e.code}
                )
            response.headers["x-amzn-RequestId"] = request_id
            return response

        return endpoint

    async def ping(request: Any) -> Any:
        return JSONResponse({"status": "healthy", "routes": len(routes)})

    return Starlette(
        routes=[
            Path("/endpoints/{endpoint}/invocations", operation(runtime.invoke), methods=["POST"]),
            Path(
                "/endpoints/{endpoint}/invocations-response-stream", operation(runtime.invoke_stream), methods=["POST"]
            ),
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
