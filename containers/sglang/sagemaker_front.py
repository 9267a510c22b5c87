"""The SageMaker front: port 8080 in the container, SGLang behind it on a private port.

SageMaker's inference-component contract, built on ``model-hosting-container-standards``:

- ``GET /ping``: 200 when the engine answers its health route, else 503.
- ``POST /invocations``: passed through to the engine unchanged (streaming preserved). With header
  ``X-Amzn-SageMaker-Adapter-Identifier: NAME`` the body's ``"model"`` becomes ``"<base>:NAME"``,
  the name by which SGLang selects a LoRA adapter; an adapter that is not loaded gives 404.
- ``POST /adapters {"name", "src"}``: load the LoRA adapter in directory ``src`` (where SageMaker
  extracted the adapter component's ArtifactUrl) into the engine; ``DELETE /adapters/{name}``: unload.

Errors: 400 bad JSON, an adapter name that is not one (letters, digits, ``.``, ``_``, ``-``, at most 63),
or a source that is not a LoRA adapter directory (``s3://`` and ``.tar.gz`` sources are refused:
SageMaker hands the container an extracted directory); 404 unknown adapter or adapter source not
found; 409 an adapter of that name is already loaded; 413/431 a body or headers over the limits;
503 engine not ready; the engine's own status passed on, also when a stream fails before its first
event (SGLang then answers 200 with an in-band error). A client that disconnects, streaming or not,
closes its engine connection, which makes SGLang abort the request. A failed load leaves nothing
registered. Prompts and bodies are never logged.

    python sagemaker_front.py --engine-url http://127.0.0.1:30000 --served-model-name /opt/ml/model \\
        [--host 0.0.0.0] [--port 8080] [--adapter NAME ...]

Environment: ``SM_FRONT_MAX_BODY_BYTES`` (default 6 MiB, SageMaker's own limit for a real-time
invocation's payload) and ``SM_FRONT_MAX_HEADER_BYTES`` (default 16 KiB).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import model_hosting_container_standards.sagemaker as sagemaker_standards
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from model_hosting_container_standards.common.handler import handler_registry
from model_hosting_container_standards.sagemaker.lora import (
    LoRAHandlerType,
    SageMakerLoRAApiHeader,
    create_lora_transform_decorator,
)
from sglang_config import load_manifest

log = logging.getLogger("sagemaker_front")
ADAPTER_HEADER = SageMakerLoRAApiHeader.ADAPTER_IDENTIFIER
ADAPTER_CONFIG = "adapter_config.json"
# Adapter names: SageMaker's inference component names (which the platform uses as adapter names) plus "_" and
# ".", and never SGLang's "<base>:<adapter>" separator or a path separator.
ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# https://docs.aws.amazon.com/sagemaker/latest/dg/regions-quotas.html: real-time payloads are at most 6 MB.
MAX_BODY_BYTES = int(os.environ.get("SM_FRONT_MAX_BODY_BYTES", 6 * 1024 * 1024))
MAX_HEADER_BYTES = int(os.environ.get("SM_FRONT_MAX_HEADER_BYTES", 16 * 1024))


class EngineError(Exception):
    """The engine answered with an error; ``status`` and ``message`` are what it said."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Engine:
    """The engine behind the front: a pooled HTTP client, its routes and the adapters loaded into it.

    aiohttp rather than httpx for the hot path: here it proxies ~4x more requests per second
    (bench/front.py). ``session`` may be injected; by default one is opened on first use.
    """

    def __init__(
        self,
        url: str,
        served_model_name: str,
        adapters=(),
        *,
        session=None,
        manifest: dict | None = None,
        ping_timeout: float = 1.5,
    ):
        manifest = manifest or load_manifest()
        self.url = url.rstrip("/")
        self.routes = {name: self.url + path for name, path in manifest["routes"].items()}
        self.session = session
        self.served_model_name = served_model_name
        self.adapters: dict[str, str] = {name: "" for name in adapters}  # name -> source directory
        self.lock = asyncio.Lock()  # one adapter load or unload at a time
        self.ping_timeout = aiohttp.ClientTimeout(total=ping_timeout)
        sep = manifest["adapter_model_separator"]
        # The library's header-to-body transform, with the expression SGLang needs: "<base>:<adapter>".
        base = "'" + served_model_name.replace("'", "\\'") + "'"
        self.with_adapter = create_lora_transform_decorator(LoRAHandlerType.INJECT_ADAPTER_ID)(
            request_shape={"model": f"join('{sep}', [{base}, headers.\"{ADAPTER_HEADER}\"])"}
        )(self.forward)

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
                timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=3600),
                auto_decompress=False,
            )
        return self.session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def forward(self, request: Request) -> Response:
        """The invocation as it came, sent to the engine when the response is served (see Proxied)."""
        return Proxied(self, await request.body(), request.headers.get("content-type"))

    async def post(self, body: bytes, content_type: str | None) -> aiohttp.ClientResponse:
        try:
            return await self._session().post(
                self.routes["invocations"], data=body, headers={"content-type": content_type or "application/json"}
            )
        except TimeoutError:
            raise HTTPException(504, "the engine did not answer in time") from None
        except aiohttp.ClientError:
            raise HTTPException(503, "the engine is not ready") from None

    async def call(self, route: str, payload: dict) -> None:
        """POST ``payload`` to an engine route; raises EngineError, or HTTPException 503/504."""
        try:
            async with self._session().post(self.routes[route], json=payload) as r:
                if r.status == 200:
                    return
                raise EngineError(r.status, _engine_error(await r.read()))
        except TimeoutError:
            raise HTTPException(504, f"the engine did not answer {route} in time") from None
        except aiohttp.ClientError:
            raise HTTPException(503, "the engine is not ready") from None

    async def healthy(self) -> bool:
        try:
            async with self._session().get(self.routes["health"], timeout=self.ping_timeout) as r:
                return r.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False


async def _reply(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _client_gone(receive) -> None:
    """Returns when the client disconnects (its body has been read: the next message is the disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _stream_error(first_event: bytes) -> tuple[int, bytes] | None:
    """The status and body of an error that an SSE stream opens with (SGLang's in-band
    ``data: {"error": {..., "code": 503}}``), or None when the stream starts normally."""
    line = first_event.strip()
    if not line.startswith(b"data:"):
        return None
    try:
        data = json.loads(line[5:])
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        error = data if isinstance(data, dict) and data.get("object") == "error" else None
    if error is None:
        return None
    code = error.get("code")
    return (code if isinstance(code, int) and 400 <= code <= 599 else 502), json.dumps(error).encode()


class Proxied(Response):
    """One invocation as an ASGI response: posted to the engine when served, its answer relayed as it arrives
    (bytes untouched, an SSE stream chunk by chunk). If the client disconnects first, the engine connection is
    closed, which makes SGLang abort the request: nothing keeps generating for nobody. A stream whose first
    event is an error gets that error's status instead of 200."""

    def __init__(self, engine: Engine, body: bytes, content_type: str | None):
        self.engine, self.payload, self.content_type = engine, body, content_type
        self.status_code, self.background, self.raw_headers = 200, None, []

    async def __call__(self, scope, receive, send) -> None:
        exchange, abandoned = asyncio.current_task(), False

        async def watch() -> None:  # one task beside the exchange: the cheapest way to notice a departure
            nonlocal abandoned
            await _client_gone(receive)
            abandoned = True
            if exchange is not None:
                exchange.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await self._exchange(send)
        except asyncio.CancelledError:
            if not abandoned or exchange is None:
                raise
            exchange.uncancel()  # the client left: the engine request went with it; nothing more to do
        finally:
            watcher.cancel()

    async def _exchange(self, send) -> None:
        upstream, relayed = None, False
        try:
            upstream = await self.engine.post(self.payload, self.content_type)
            media_type = upstream.headers.get("content-type") or "application/json"
            if media_type.startswith("text/event-stream"):
                await self._relay_stream(upstream, media_type, send)
            else:
                body = await upstream.read()
                headers = [
                    (b"content-type", media_type.encode("latin-1")),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
            relayed = True
        except HTTPException as e:
            await _reply(send, e.status_code, e.detail)
        finally:
            if upstream is not None:  # back to the pool when whole; closed (the engine aborts) when abandoned
                upstream.release() if relayed else upstream.close()

    @staticmethod
    async def _relay_stream(upstream: aiohttp.ClientResponse, media_type: str, send) -> None:
        try:
            first = await upstream.content.readuntil(b"\n\n")
        except ValueError:  # no event boundary within the reader's limit: not SSE after all, relay as is
            first = b""
        if upstream.status == 200 and (error := _stream_error(first)):
            status, body = error
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        headers = [(b"content-type", media_type.encode("latin-1"))]
        await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
        await send({"type": "http.response.body", "body": first, "more_body": True})
        async for chunk in upstream.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


class FastInvocations:
    """ASGI wrapper: ``POST /invocations`` without an adapter header goes straight to the engine.

    The same behaviour as the route, at about half the front's CPU per request (bench/front.py): no
    routing, request objects or middleware stack on the hot path. Requests with an adapter header,
    and everything else, go to the FastAPI app and the library's handlers. Used only when nothing of the
    customer's would apply to the route: no custom invocation handler, no middleware (create_app).
    """

    def __init__(self, app: FastAPI, engine: Engine):
        self.app, self.engine = app, engine
        self._adapter_header = ADAPTER_HEADER.lower().encode()

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != "/invocations"
            or scope["method"] != "POST"
            or any(k == self._adapter_header for k, _ in scope["headers"])
        ):
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        content_type = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"), None)
        await Proxied(self.engine, b"".join(chunks), content_type)(scope, receive, send)


class Limits:
    """ASGI: request headers and body within bounds (431, 413 naming the limit), the body read whole before the
    app runs (then handed to it in one message)."""

    def __init__(self, app, *, max_body: int = MAX_BODY_BYTES, max_headers: int = MAX_HEADER_BYTES):
        self.app, self.max_body, self.max_headers = app, max_body, max_headers

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        size = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        if size > self.max_headers:
            return await _reply(send, 431, f"the request headers take {size} bytes; at most {self.max_headers}")
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"0")
        if not declared.isdigit():
            return await _reply(send, 400, "Content-Length is not a number")
        if int(declared) > self.max_body:
            return await _reply(send, 413, f"the request body has {int(declared)} bytes; at most {self.max_body}")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return await _reply(send, 413, f"the request body exceeds {self.max_body} bytes")
            more = message.get("more_body", False)
        whole: list[dict] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay():
            return whole.pop() if whole else await receive()

        await self.app(scope, replay, send)


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _engine_error(raw: bytes) -> str:
    """The engine's own words from an error body (SGLang: error_message or message)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:500]
    if isinstance(body, dict):
        err = body.get("error_message") or body.get("message") or body.get("detail") or body.get("error")
        if isinstance(err, dict):
            err = err.get("message")
        return str(err or body)[:500]
    return str(body)[:500]


def checked_adapter_name(name: str) -> str:
    """``name`` if it can name an adapter; else 400 before anything reaches the engine."""
    if not isinstance(name, str) or not ADAPTER_NAME.fullmatch(name):
        raise HTTPException(
            400,
            f"adapter name {str(name)[:80]!r} is not valid: 1 to 63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return name


def adapter_directory(src: str) -> Path:
    """The directory holding adapter_config.json: ``src`` itself or its only subdirectory.

    A source that does not exist is 404, as model-hosting-container-standards asks of handlers ("404 for
    adapter not found", sagemaker/lora/FACTORY_USAGE.md) and vLLM's SageMaker tests expect; a source that
    exists but is no adapter is 400."""
    if src.startswith("s3://") or src.endswith((".tar.gz", ".tgz")):
        raise HTTPException(
            400,
            f"adapter source {src}: give the extracted directory (SageMaker extracts the "
            "adapter component's ArtifactUrl); s3:// and .tar.gz sources are not supported",
        )
    root = Path(src)
    if not root.exists():
        raise HTTPException(404, f"adapter source {src} not found")
    if not root.is_dir():
        raise HTTPException(400, f"adapter source {src} is not a directory")
    if (root / ADAPTER_CONFIG).is_file():
        return root
    subdirs = [p for p in root.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / ADAPTER_CONFIG).is_file():
        return subdirs[0]
    raise HTTPException(400, f"adapter source {src} is not a LoRA adapter: no {ADAPTER_CONFIG}")


@sagemaker_standards.register_ping_handler
async def ping(request: Request) -> Response:
    return Response(status_code=200 if await _engine(request).healthy() else 503)


@sagemaker_standards.register_invocation_handler
async def invocations(request: Request) -> Response:
    engine = _engine(request)
    adapter = request.headers.get(ADAPTER_HEADER)
    if adapter is None:
        return await engine.forward(request)  # the body goes through untouched
    if checked_adapter_name(adapter) not in engine.adapters:
        raise HTTPException(404, f"adapter {adapter} is not loaded")
    try:
        body = await request.json()  # cached: the transform below reads it again for free
    except ValueError as e:
        raise HTTPException(400, f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return await engine.with_adapter(request)


@sagemaker_standards.register_load_adapter_handler(
    request_shape={"lora_name": "body.name", "lora_path": "body.src", "pinned": "body.pin"}
)
async def load_adapter(request: SimpleNamespace, raw_request: Request) -> Response:
    engine = _engine(raw_request)
    name = checked_adapter_name(request.lora_name)
    path = adapter_directory(request.lora_path)
    async with engine.lock:
        if name in engine.adapters:
            raise HTTPException(409, f"adapter {name} is already loaded; delete it before loading it again")
        try:
            await engine.call(
                "load_adapter", {"lora_name": name, "lora_path": str(path), "pinned": bool(request.pinned)}
            )
        except EngineError as e:
            raise HTTPException(
                e.status if 400 <= e.status < 500 else 502, f"adapter {name} could not be loaded: {e.message}"
            ) from None
        except HTTPException as e:
            if e.status_code == 504:  # it may have loaded after all: leave nothing half-loaded
                with contextlib.suppress(HTTPException, EngineError):
                    await engine.call("unload_adapter", {"lora_name": name})
            raise
        engine.adapters[name] = str(path)
    log.info("adapter %s loaded", name)
    return Response(status_code=200)


@sagemaker_standards.register_unload_adapter_handler(request_shape={"lora_name": "path_params.adapter_name"})
async def unload_adapter(request: SimpleNamespace, raw_request: Request) -> Response:
    engine = _engine(raw_request)
    name = checked_adapter_name(request.lora_name)
    async with engine.lock:
        if name not in engine.adapters:
            raise HTTPException(404, f"adapter {name} is not loaded")
        try:
            await engine.call("unload_adapter", {"lora_name": name})
        except EngineError as e:
            raise HTTPException(
                e.status if 400 <= e.status < 500 else 502, f"adapter {name} could not be unloaded: {e.message}"
            ) from None
        del engine.adapters[name]
    log.info("adapter %s unloaded", name)
    return Response(status_code=200)


def create_app(engine: Engine, *, max_body: int = MAX_BODY_BYTES, max_headers: int = MAX_HEADER_BYTES):
    """The front as an ASGI app: FastAPI with the library's routes, behind the invocation fast path, behind the
    request limits."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await engine.close()

    # The library logs request bodies at DEBUG (LOG_LEVEL / SAGEMAKER_CONTAINER_LOG_LEVEL): never prompts.
    library_log = logging.getLogger("model_hosting_container_standards")
    library_log.setLevel(max(library_log.level, logging.INFO))
    app = FastAPI(
        title="SageMaker front for SGLang", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.engine = engine
    # The library marks these as the framework's handlers but mounts only overrides (a customer's
    # CUSTOM_FASTAPI_*_HANDLER or model.py); the default routes are the framework's to add.
    app.add_api_route("/ping", ping, methods=["GET"])
    app.add_api_route("/invocations", invocations, methods=["POST"])
    sagemaker_standards.bootstrap(app)
    # A customer's invocation handler or middleware (model-hosting-container-standards loads them from
    # CUSTOM_FASTAPI_* variables, decorators or the model's script) applies to every route: no fast path then.
    customized = handler_registry.get_handler("invoke") is not None or app.user_middleware
    return Limits(app if customized else FastInvocations(app, engine), max_body=max_body, max_headers=max_headers)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine-url", required=True)
    p.add_argument("--served-model-name", required=True, help="the engine's model name: <base> in <base>:<adapter>")
    p.add_argument("--adapter", action="append", default=[], help="an adapter already loaded in the engine")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import uvicorn

    app = create_app(Engine(args.engine_url, args.served_model_name, args.adapter))
    # "auto" picks uvloop and httptools when they are installed.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        loop="auto",
        http="auto",
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
