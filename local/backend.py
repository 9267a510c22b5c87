"""CPU stand-in for SGLang: the part of its HTTP API that the SageMaker front and the local run use.

    python -m local.backend --model DIR --port N [--host 127.0.0.1] [--lora NAME=PATH ...]
                            [--served-model-name NAME] [--tool-call-parser llama3] [--threads 1]
                            [--max-queued-requests N]
    python -m local.backend --fixed-response TEXT --port N [--token-delay-ms 0]   # no model: for benchmarks

Routes, as in SGLang:
  POST /v1/chat/completions, POST /invocations   OpenAI chat body; ``stream: true`` answers with SSE
      (``data: {chunk}`` lines, then ``data: [DONE]``; the role chunk comes with the first token);
      ``max_tokens`` (or ``max_completion_tokens``), ``temperature`` (0 = greedy), ``top_p`` honoured.
      With ``tools``, the output becomes OpenAI ``tool_calls`` through SGLang's own function-call parser for
      ``--tool-call-parser`` (sglang.srt.function_call, imported on the first such request); a streamed
      call arrives whole in one ``tool_calls`` delta. ``"model": "<base>:<adapter>"`` selects a loaded
      LoRA adapter; anything else serves the base.
  GET /health, /health_generate, /ping           200 once the model is loaded.
  GET /metrics                                   Prometheus text with SGLang's names: sglang:num_running_reqs,
      sglang:num_queue_reqs, sglang:generation_tokens_total.
  POST /load_lora_adapter {lora_name, lora_path} and POST /unload_lora_adapter {lora_name}
      answer {success, error_message, loaded_adapters}: 200, or 400 when refused.

One generation runs at a time; the others queue. As in SGLang: past ``--max-queued-requests`` waiting
requests a request is refused with 503 (a streamed one with an in-band error event before its first
token, HTTP 200); a client that disconnects stops its generation, streamed or not, and frees the model.
The model is a transformers causal LM with real peft LoRA adapters, several in one PeftModel
(``set_adapter`` per request, adapters disabled for the base); the prompt is built with the tokenizer's
chat template. Prompts and outputs are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

log = logging.getLogger("local.backend")
DEFAULT_MAX_TOKENS = 64


class Finish(str):
    """The last item of a stream: why generation stopped ("stop" or "length")."""


class BadRequest(ValueError):
    """A request the backend refuses with 400; the message says why."""


class QueueFull(Exception):
    """SGLang's answer when its waiting queue is at --max-queued-requests: 503."""

    message = "The request queue is full."


# ---------------------------------------------------------------- request helpers


def adapter_from_model(model: str | None, served_model_name: str) -> str | None:
    """The adapter a ``model`` field selects, by SGLang's rule: ``<base>:<adapter>``."""
    if not model or ":" not in model or model == served_model_name:
        return None
    if model.startswith(f"{served_model_name}:"):
        adapter = model[len(served_model_name) + 1 :]
    else:
        adapter = model.split(":", 1)[1]
    return adapter.strip() or None


def _text(content) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _check_number(body: dict, key: str, ok: Callable[[Any], bool], expected: str) -> None:
    v = body.get(key)
    if v is not None and (isinstance(v, bool) or not ok(v)):
        raise BadRequest(f"{key}: must be {expected}, not {v!r}")


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and v >= 1


def _number(v: Any) -> bool:
    return isinstance(v, (int, float))


def parse_chat(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("messages: a non-empty list of message objects is required")
    for key in ("max_tokens", "max_completion_tokens"):
        _check_number(body, key, _positive_int, "a positive integer")
    _check_number(body, "temperature", lambda v: _number(v) and 0 <= v <= 2, "between 0 and 2.0")
    _check_number(body, "top_p", lambda v: _number(v) and 0 <= v <= 1, "between 0 and 1.0")
    if not isinstance(body.get("tools") or [], list):
        raise BadRequest("tools: must be a list")
    return body


# ---------------------------------------------------------------- tool calls: SGLang's own parser


@functools.cache
def _function_call_parser() -> Any:
    """SGLang's FunctionCallParser (seconds to import: sglang pulls in torch and transformers)."""
    from sglang.srt.function_call.function_call_parser import FunctionCallParser

    return FunctionCallParser


class ToolCalls:
    """The request's tools and SGLang's parser for them: generated text -> (text, OpenAI tool_calls)."""

    def __init__(self, parser: Any):
        self.parser = parser
        self.bot_token: str = getattr(parser.detector, "bot_token", "") or ""

    @classmethod
    async def for_request(cls, req: dict, parser_name: str | None) -> ToolCalls | None:
        tools = [t for t in req.get("tools") or [] if isinstance(t, dict)]
        if not tools or not parser_name or req.get("tool_choice") == "none":
            return None
        from pydantic import ValidationError

        parser_class = await asyncio.to_thread(_function_call_parser)  # keeps the event loop free meanwhile
        from sglang.srt.entrypoints.openai.protocol import Tool

        try:
            parsed = [Tool.model_validate(t) for t in tools]
        except ValidationError as e:
            raise BadRequest(f"tools: {e.errors()[0]['msg']}") from None
        return cls(parser_class(tools=parsed, tool_call_parser=parser_name))

    def may_be_a_call(self, text: str) -> bool:
        """Whether streamed text could still turn into a call (it is held back until the end if so)."""
        stripped = text.lstrip()
        return not stripped or self.parser.has_tool_call(stripped) or self.bot_token.startswith(stripped)

    def split(self, text: str) -> tuple[str, list[dict]]:
        normal, items = self.parser.parse_non_stream(text)
        calls = [
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",  # SGLang's id for every parser but Kimi's
                "type": "function",
                "function": {"name": item.name, "arguments": item.parameters},
            }
            for item in items
        ]
        return normal.strip(), calls


# ---------------------------------------------------------------- scheduling


class Scheduler:
    """One generation at a time, a bounded queue, and SGLang's counters for /metrics."""

    def __init__(self, max_queued: int | None = None):
        self.lock = asyncio.Lock()
        self.max_queued = max_queued
        self.running = self.queued = self.tokens = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.max_queued is not None and self.lock.locked() and self.queued >= self.max_queued:
            raise QueueFull()
        self.queued += 1
        try:
            await self.lock.acquire()
        finally:
            self.queued -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self.lock.release()

    def metrics(self) -> str:
        values = {
            "num_running_reqs": ("gauge", self.running),
            "num_queue_reqs": ("gauge", self.queued),
            "generation_tokens_total": ("counter", self.tokens),
        }
        return "".join(f"# TYPE sglang:{n} {kind}\nsglang:{n} {v}\n" for n, (kind, v) in values.items())


# ---------------------------------------------------------------- generators


class FixedGenerator:
    """No model: every completion is the same text, one word per token, ``token_delay`` seconds each
    (benchmarks, load tests, scripted agent runs; a delay makes a generation that a client can abandon)."""

    def __init__(self, text: str, token_delay: float = 0.0, scheduler: Scheduler | None = None):
        self.text, self.token_delay = text, token_delay
        self.scheduler = scheduler or Scheduler()
        self.adapters: dict[str, str] = {}
        words = text.split(" ")
        self.pieces = [w + " " for w in words[:-1]] + [words[-1]]

    def load_adapter(self, name: str, path: str) -> None:
        if not (Path(path) / "adapter_config.json").is_file():
            raise ValueError(f"Can't find 'adapter_config.json' at '{path}'")
        self.adapters[name] = path

    def unload_adapter(self, name: str) -> None:
        del self.adapters[name]

    def prepare(self, req: dict) -> dict:
        return {"max_new_tokens": req.get("max_tokens") or req.get("max_completion_tokens") or len(self.pieces)}

    async def complete(self, kw: dict, adapter: str | None) -> tuple[str, str, int, int]:
        pieces = [p async for p in self.stream(kw, adapter)]
        return "".join(pieces[:-1]), str(pieces[-1]), 0, len(pieces) - 1

    async def stream(self, kw: dict, adapter: str | None) -> AsyncIterator[str]:
        limit = kw["max_new_tokens"]
        async with self.scheduler.slot():
            for piece in self.pieces[:limit]:
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)  # cancelled here when the client goes away
                self.scheduler.tokens += 1
                yield piece
        yield Finish("length" if limit < len(self.pieces) else "stop")


class ModelGenerator:
    """A transformers causal LM on CPU with peft LoRA adapters."""

    def __init__(self, model_dir: str, threads: int = 1, scheduler: Scheduler | None = None):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        transformers.utils.logging.disable_progress_bar()
        self.torch = torch
        self.scheduler = scheduler or Scheduler()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self._load_base = lambda: AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.base = self._load_base()
        self.model = self.base  # becomes a PeftModel with the first adapter
        eos = self.base.generation_config.eos_token_id
        self.eos_ids = {*(eos if isinstance(eos, list) else [eos]), self.tokenizer.eos_token_id} - {None}
        self.adapters: dict[str, str] = {}

    # adapters -------------------------------------------------------------
    def load_adapter(self, name: str, path: str) -> None:
        from peft import PeftModel

        if not self.adapters:
            try:
                self.model = PeftModel.from_pretrained(self.base, path, adapter_name=name)
            except Exception:
                self.base = self.model = self._load_base()  # a failed load can leave LoRA layers behind
                raise
        else:
            try:
                self.model.load_adapter(path, adapter_name=name)
            except Exception:
                with contextlib.suppress(Exception):  # leave nothing half-loaded
                    self.model.delete_adapter(name)
                raise
        self.model.eval()
        self.adapters[name] = path

    def unload_adapter(self, name: str) -> None:
        del self.adapters[name]
        if self.adapters:
            self.model.delete_adapter(name)
        else:
            self.base = self.model.unload()  # drop the LoRA layers: back to the plain model
            self.model = self.base

    # generation -----------------------------------------------------------
    def prepare(self, req: dict) -> dict:
        """Render the chat template and tokenize; the keyword arguments of ``generate``."""
        from jinja2 import TemplateError

        messages = [_template_message(m) for m in req["messages"]]
        extra = {"tools": req["tools"]} if req.get("tools") else {}
        try:
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)
        except TemplateError as e:
            raise BadRequest(f"messages: the chat template refused them: {e}") from None
        temperature = req.get("temperature", 1.0)
        kw = {
            **self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False),
            "max_new_tokens": req.get("max_tokens") or req.get("max_completion_tokens") or DEFAULT_MAX_TOKENS,
            "do_sample": temperature > 0,
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        if temperature > 0:
            kw.update(temperature=float(temperature), top_p=float(req.get("top_p", 1.0)), top_k=0)
        return kw

    @contextlib.contextmanager
    def _selected(self, adapter: str | None):
        if adapter is None and self.model is not self.base:
            with self.model.disable_adapter():
                yield self.model
            return
        if adapter is not None:
            self.model.set_adapter(adapter)
        yield self.model

    def _run(self, kw: dict, adapter: str | None, stop: threading.Event, streamer=None):
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return stop.is_set()

        try:
            with self.torch.no_grad(), self._selected(adapter) as model:
                out = model.generate(**kw, streamer=streamer, stopping_criteria=StoppingCriteriaList([_Stop()]))
        except BaseException:
            if streamer is not None:
                streamer.end()  # unblock the reader
            raise
        n_prompt = kw["input_ids"].shape[1]
        new = out[0, n_prompt:].tolist()
        self.scheduler.tokens += len(new)
        finish = "length" if len(new) >= kw["max_new_tokens"] and new[-1] not in self.eos_ids else "stop"
        return self.tokenizer.decode(new, skip_special_tokens=True), finish, n_prompt, len(new)

    async def complete(self, kw: dict, adapter: str | None) -> tuple[str, str, int, int]:
        async with self.scheduler.slot():
            stop = threading.Event()
            worker = asyncio.ensure_future(asyncio.to_thread(self._run, kw, adapter, stop))
            try:
                return await asyncio.shield(worker)
            finally:
                stop.set()  # cancelled: the client went away; stop generating, then free the model
                await asyncio.gather(worker, return_exceptions=True)

    async def stream(self, kw: dict, adapter: str | None) -> AsyncIterator[str]:
        from transformers import TextIteratorStreamer

        async with self.scheduler.slot():
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            stop = threading.Event()
            worker = asyncio.ensure_future(asyncio.to_thread(self._run, kw, adapter, stop, streamer))
            pieces = iter(streamer)
            try:
                while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                    if piece:
                        yield piece
                yield Finish((await worker)[1])  # raises what generation raised
            finally:
                stop.set()  # the client went away: stop generating, then free the model
                await asyncio.gather(worker, return_exceptions=True)


def _template_message(m: dict) -> dict:
    """An OpenAI message as chat templates expect it (as SGLang does: text content, dict arguments)."""
    m = {k: v for k, v in m.items() if v is not None}
    m["content"] = _text(m.get("content"))
    calls = []
    for call in m.get("tool_calls") or []:
        fn = dict(call.get("function") or {})
        if isinstance(fn.get("arguments"), str):
            try:
                fn["arguments"] = json.loads(fn["arguments"])
            except ValueError:
                raise BadRequest(f"messages: tool call {fn.get('name')!r} has arguments that are not JSON") from None
        calls.append({**call, "function": fn})
    if calls:
        m["tool_calls"] = calls
    return m


# ---------------------------------------------------------------- HTTP


def _error(status: int, message: str, kind: str = "BadRequestError") -> JSONResponse:
    return JSONResponse(
        {"object": "error", "message": message, "type": kind, "param": None, "code": status}, status_code=status
    )


async def _until_disconnected(request: Request) -> None:
    """Returns when the client has gone (the body was read: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Chat:
    """``/v1/chat/completions`` and ``/invocations``: one request, streamed or not."""

    def __init__(self, generator, served_model_name: str, tool_call_parser: str | None):
        self.generator, self.served, self.tool_call_parser = generator, served_model_name, tool_call_parser

    async def handle(self, request: Request) -> Response:
        try:
            req = parse_chat(await request.body())
            adapter = adapter_from_model(req.get("model"), self.served)
            if adapter is not None and adapter not in self.generator.adapters:
                raise BadRequest(f"LoRA adapter {adapter} is not loaded")
            kw = self.generator.prepare(req)
            tools = await ToolCalls.for_request(req, self.tool_call_parser)
        except BadRequest as e:
            return _error(400, str(e))
        meta = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": req.get("model") or self.served,
        }
        if req.get("stream"):
            usage = bool((req.get("stream_options") or {}).get("include_usage"))
            events = _sse(self.generator.stream(kw, adapter), meta, tools, usage)
            return StreamingResponse(events, media_type="text/event-stream")
        return await self._complete(request, kw, adapter, tools, meta)

    async def _complete(self, request: Request, kw: dict, adapter: str | None, tools, meta: dict) -> Response:
        generation = asyncio.ensure_future(self.generator.complete(kw, adapter))
        gone = asyncio.ensure_future(_until_disconnected(request))
        try:
            await asyncio.wait({generation, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not generation.done():  # the client left: stop its generation (SGLang aborts it too)
                generation.cancel()
                await asyncio.gather(generation, return_exceptions=True)
        if generation.cancelled():
            return Response(status_code=499)  # nobody reads it
        try:
            text, finish, n_prompt, n_out = generation.result()
        except QueueFull as e:
            return _error(503, e.message, "ServiceUnavailable")
        content, calls = tools.split(text) if tools else (text, [])
        message = {"role": "assistant", "content": content or (None if calls else ""), "tool_calls": calls or None}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else finish}
        usage = {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}
        return JSONResponse({**meta, "object": "chat.completion", "choices": [choice], "usage": usage})


class Adapters:
    """SGLang's ``/load_lora_adapter`` and ``/unload_lora_adapter``."""

    def __init__(self, generator):
        self.generator = generator
        self.lock = getattr(generator, "scheduler", Scheduler()).lock

    async def _body(self, request: Request, *fields: str) -> dict:
        try:
            body = json.loads(await request.body())
        except ValueError as e:
            raise BadRequest(f"the request body is not valid JSON: {e}") from None
        for f in fields:
            if not isinstance(body, dict) or not isinstance(body.get(f), str) or not body[f]:
                raise BadRequest(f"{f}: a non-empty string is required")
        return body

    def answer(self, ok: bool, error: str | None = None) -> JSONResponse:
        return JSONResponse(
            {"success": ok, "error_message": error, "loaded_adapters": dict(self.generator.adapters)},
            status_code=200 if ok else 400,
        )

    async def load(self, request: Request) -> Response:
        try:
            body = await self._body(request, "lora_name", "lora_path")
        except BadRequest as e:
            return self.answer(False, str(e))
        name = body["lora_name"]
        if name in self.generator.adapters:
            return self.answer(False, f"The LoRA adapter {name} is already loaded")
        try:
            async with self.lock:
                await asyncio.to_thread(self.generator.load_adapter, name, body["lora_path"])
        except Exception as e:  # the engine's refusal, passed on in its answer
            return self.answer(False, f"Failed to load LoRA adapter {name}: {e}")
        log.info("adapter %s loaded", name)
        return self.answer(True)

    async def unload(self, request: Request) -> Response:
        try:
            body = await self._body(request, "lora_name")
        except BadRequest as e:
            return self.answer(False, str(e))
        name = body["lora_name"]
        if name not in self.generator.adapters:
            return self.answer(False, f"The LoRA adapter {name} is not loaded")
        async with self.lock:
            await asyncio.to_thread(self.generator.unload_adapter, name)
        log.info("adapter %s unloaded", name)
        return self.answer(True)


def create_app(generator, served_model_name: str, tool_call_parser: str | None = "llama3") -> FastAPI:
    app = FastAPI(title="local SGLang stand-in", docs_url=None, redoc_url=None, openapi_url=None)

    async def health() -> Response:
        return Response(status_code=200)

    async def metrics() -> Response:
        return PlainTextResponse(generator.scheduler.metrics())

    for path in ("/health", "/health_generate", "/ping"):
        app.add_api_route(path, health, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
    chat = Chat(generator, served_model_name, tool_call_parser)
    app.add_api_route("/v1/chat/completions", chat.handle, methods=["POST"])
    app.add_api_route("/invocations", chat.handle, methods=["POST"])
    adapters = Adapters(generator)
    app.add_api_route("/load_lora_adapter", adapters.load, methods=["POST"])
    app.add_api_route("/unload_lora_adapter", adapters.unload, methods=["POST"])
    return app


def _chunk(meta: dict, delta: dict, finish: str | None = None, **extra) -> bytes:
    data = {
        **meta,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps({**data, **extra})}\n\n".encode()


def _in_band_error(status: int, message: str, kind: str) -> bytes:
    """SGLang's streamed error event (serving_base.create_streaming_error_response)."""
    error = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    return f"data: {json.dumps({'error': error})}\n\n".encode()


async def _sse(pieces: AsyncIterator[str], meta: dict, tools: ToolCalls | None, usage: bool) -> AsyncIterator[bytes]:
    """OpenAI chunks as SGLang sends them; with tools, output that may be a call is held back and parsed at the
    end. A queue-full refusal comes in-band before the first token, as in SGLang (HTTP 200 already sent)."""
    held, holding, count, finish = "", tools is not None, 0, "stop"
    try:
        async for piece in pieces:
            if isinstance(piece, Finish):
                finish = str(piece)
                continue
            if count == 0:
                yield _chunk(meta, {"role": "assistant", "content": ""})
            count += 1
            if holding and tools:
                held += piece
                if tools.may_be_a_call(held):
                    continue
                holding, piece, held = False, held, ""
            yield _chunk(meta, {"content": piece})
    except QueueFull as e:
        yield _in_band_error(503, e.message, "ServiceUnavailable")
        yield b"data: [DONE]\n\n"
        return
    if held and tools:
        content, calls = tools.split(held)
        if calls:
            finish = "tool_calls"
            if content:
                yield _chunk(meta, {"content": content})
            yield _chunk(meta, {"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})
        else:
            yield _chunk(meta, {"content": held})
    yield _chunk(meta, {}, finish)
    if usage:
        yield _chunk(meta, {}, None, usage={"prompt_tokens": 0, "completion_tokens": count, "total_tokens": count})
    yield b"data: [DONE]\n\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m local.backend", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", help="a transformers model directory (tokenizer with a chat template)")
    p.add_argument("--fixed-response", metavar="TEXT", help="no model: answer TEXT to every request")
    p.add_argument("--token-delay-ms", type=float, default=0.0, help="with --fixed-response: time per token")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--lora", action="append", default=[], metavar="NAME=PATH", help="an adapter to load at start")
    p.add_argument("--served-model-name", help="the base name in <base>:<adapter> (default: --model)")
    p.add_argument("--tool-call-parser", default="llama3", help="SGLang's parser for tool calls; 'none' turns it off")
    p.add_argument("--max-queued-requests", type=int, help="refuse requests with 503 past this many waiting")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    if (args.model is None) == (args.fixed_response is None):
        p.error("give exactly one of --model and --fixed-response")
    for item in args.lora:
        if "=" not in item:
            p.error(f"--lora {item}: expected NAME=PATH")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    scheduler = Scheduler(args.max_queued_requests)
    generator = (
        FixedGenerator(args.fixed_response, args.token_delay_ms / 1000, scheduler)
        if args.model is None
        else ModelGenerator(args.model, args.threads, scheduler)
    )
    for item in args.lora:
        name, path = item.split("=", 1)
        generator.load_adapter(name, path)
    import uvicorn

    parser = None if args.tool_call_parser == "none" else args.tool_call_parser
    app = create_app(generator, args.served_model_name or args.model or "fixed", parser)
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
