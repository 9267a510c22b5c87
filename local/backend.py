"""CPU stand-in for SGLang: the part of its HTTP API that the SageMaker front and the local run use.

    python -m local.backend --model DIR --port N [--host 127.0.0.1] [--lora NAME=PATH ...]
                            [--served-model-name NAME] [--threads 1]
    python -m local.backend --fixed-response TEXT --port N      # no model: instant, for benchmarks

Routes, as in SGLang:
  POST /v1/chat/completions, POST /invocations   OpenAI chat body; ``stream: true`` answers with SSE
      (``data: {chunk}`` lines, then ``data: [DONE]``); ``max_tokens`` (or ``max_completion_tokens``),
      ``temperature`` (0 = greedy), ``top_p`` honoured; with ``tools``, a Llama-3 JSON tool call in the
      output (``{"name": ..., "parameters": {...}}``, optionally after ``<|python_tag|>``, several
      separated by ``;``) comes back as ``tool_calls`` like SGLang's ``llama3`` parser.
      ``"model": "<base>:<adapter>"`` selects a loaded LoRA adapter; anything else serves the base.
  GET /health, /health_generate, /ping           200 once the model is loaded.
  POST /load_lora_adapter {lora_name, lora_path} and POST /unload_lora_adapter {lora_name}
      answer {success, error_message, loaded_adapters}: 200, or 400 when refused.

The model is a transformers causal LM with real peft LoRA adapters, several in one PeftModel
(``set_adapter`` per request, adapters disabled for the base); the prompt is built with the
tokenizer's chat template. One generation runs at a time. Prompts and outputs are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

log = logging.getLogger("local.backend")
PYTHON_TAG = "<|python_tag|>"
DEFAULT_MAX_TOKENS = 64


class Finish(str):
    """The last item of a stream: why generation stopped ("stop" or "length")."""


class BadRequest(ValueError):
    """A request the backend refuses with 400; the message says why."""


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


def parse_tool_calls(text: str, tool_names: set[str]) -> tuple[str, list[dict]]:
    """Split a Llama-3 style output into (plain text, tool calls); no calls when it is not one."""
    if PYTHON_TAG in text:
        normal, _, calls_text = text.partition(PYTHON_TAG)
    elif text.lstrip().startswith("{"):
        normal, calls_text = "", text
    else:
        return text, []
    decoder, pos, calls = json.JSONDecoder(), 0, []
    calls_text = calls_text.strip()
    while pos < len(calls_text):
        try:
            obj, pos = decoder.raw_decode(calls_text, pos)
        except ValueError:
            return text, []
        args = obj.get("parameters", obj.get("arguments")) if isinstance(obj, dict) else None
        if not isinstance(args, dict) or obj.get("name") not in tool_names:
            return text, []
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": obj["name"], "arguments": json.dumps(args)},
            }
        )
        while pos < len(calls_text) and calls_text[pos] in "; \n\t":
            pos += 1
    return normal.strip(), calls


def _text(content) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


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
        v = body.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise BadRequest(f"{key}: must be a positive integer, not {v!r}")
    for key, hi in (("temperature", 2.0), ("top_p", 1.0)):
        v = body.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= hi):
            raise BadRequest(f"{key}: must be a number between 0 and {hi}, not {v!r}")
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise BadRequest("tools: must be a list")
    return body


# ---------------------------------------------------------------- generators


class FixedGenerator:
    """No model: every completion is the same text (benchmarks, load tests, scripted agent runs)."""

    def __init__(self, text: str):
        self.text = text
        self.adapters: dict[str, str] = {}
        self.pieces = [w + " " for w in text.split(" ")[:-1]] + [text.split(" ")[-1]]

    def load_adapter(self, name: str, path: str) -> None:
        if not (Path(path) / "adapter_config.json").is_file():
            raise ValueError(f"Can't find 'adapter_config.json' at '{path}'")
        self.adapters[name] = path

    def unload_adapter(self, name: str) -> None:
        del self.adapters[name]

    def prepare(self, req: dict) -> dict:
        return req

    async def complete(self, kw: dict, adapter: str | None) -> tuple[str, str, int, int]:
        return self.text, "stop", 0, len(self.pieces)

    async def stream(self, kw: dict, adapter: str | None) -> AsyncIterator[str]:
        for piece in self.pieces:
            yield piece


class ModelGenerator:
    """A transformers causal LM on CPU with peft LoRA adapters."""

    def __init__(self, model_dir: str, threads: int = 1):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        transformers.utils.logging.disable_progress_bar()
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self._load_base = lambda: AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.base = self._load_base()
        self.model = self.base  # becomes a PeftModel with the first adapter
        eos = self.base.generation_config.eos_token_id
        self.eos_ids = {*(eos if isinstance(eos, list) else [eos]), self.tokenizer.eos_token_id} - {None}
        self.adapters: dict[str, str] = {}
        self.lock = asyncio.Lock()  # one generation (and one adapter switch) at a time

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

    def _run(self, kw: dict, adapter: str | None, streamer=None, stop: threading.Event | None = None):
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return bool(stop and stop.is_set())

        try:
            with self.torch.no_grad(), self._selected(adapter) as model:
                out = model.generate(**kw, streamer=streamer, stopping_criteria=StoppingCriteriaList([_Stop()]))
        except BaseException:
            if streamer is not None:
                streamer.end()  # unblock the reader
            raise
        n_prompt = kw["input_ids"].shape[1]
        new = out[0, n_prompt:].tolist()
        finish = "length" if len(new) >= kw["max_new_tokens"] and new[-1] not in self.eos_ids else "stop"
        return self.tokenizer.decode(new, skip_special_tokens=True), finish, n_prompt, len(new)

    async def complete(self, kw: dict, adapter: str | None) -> tuple[str, str, int, int]:
        async with self.lock:
            return await asyncio.to_thread(self._run, kw, adapter)

    async def stream(self, kw: dict, adapter: str | None) -> AsyncIterator[str]:
        from transformers import TextIteratorStreamer

        async with self.lock:
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            stop = threading.Event()
            worker = asyncio.ensure_future(asyncio.to_thread(self._run, kw, adapter, streamer, stop))
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


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"object": "error", "message": message, "code": status}, status_code=status)


def create_app(generator, served_model_name: str) -> FastAPI:  # noqa: C901 (to be split: issue 18)
    app = FastAPI(title="local SGLang stand-in", docs_url=None, redoc_url=None, openapi_url=None)

    async def health() -> Response:
        return Response(status_code=200)

    for path in ("/health", "/health_generate", "/ping"):
        app.add_api_route(path, health, methods=["GET"])

    async def chat(request: Request) -> Response:
        try:
            req = parse_chat(await request.body())
            adapter = adapter_from_model(req.get("model"), served_model_name)
            if adapter is not None and adapter not in generator.adapters:
                raise BadRequest(f"LoRA adapter {adapter} is not loaded")
            kw = generator.prepare(req)
        except BadRequest as e:
            return _error(400, str(e))
        model = req.get("model") or served_model_name
        tool_names = {t.get("function", {}).get("name") for t in req.get("tools") or [] if isinstance(t, dict)}
        if req.get("tool_choice") == "none":
            tool_names = set()
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if req.get("stream"):
            usage = bool((req.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _sse(generator.stream(kw, adapter), ident, created, model, tool_names, usage),
                media_type="text/event-stream",
            )
        text, finish, n_prompt, n_out = await generator.complete(kw, adapter)
        content, calls = parse_tool_calls(text, tool_names) if tool_names else (text, [])
        message = {"role": "assistant", "content": content or (None if calls else ""), "tool_calls": calls or None}
        return JSONResponse(
            {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else finish}],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out},
            }
        )

    app.add_api_route("/v1/chat/completions", chat, methods=["POST"])
    app.add_api_route("/invocations", chat, methods=["POST"])

    async def lora_request(request: Request, *fields: str) -> dict:
        try:
            body = json.loads(await request.body())
        except ValueError as e:
            raise BadRequest(f"the request body is not valid JSON: {e}") from None
        for f in fields:
            if not isinstance(body, dict) or not isinstance(body.get(f), str) or not body[f]:
                raise BadRequest(f"{f}: a non-empty string is required")
        return body

    def lora_answer(ok: bool, error: str | None = None) -> JSONResponse:
        return JSONResponse(
            {"success": ok, "error_message": error, "loaded_adapters": dict(generator.adapters)},
            status_code=200 if ok else 400,
        )

    async def load_lora_adapter(request: Request) -> Response:
        try:
            body = await lora_request(request, "lora_name", "lora_path")
        except BadRequest as e:
            return lora_answer(False, str(e))
        name = body["lora_name"]
        if name in generator.adapters:
            return lora_answer(False, f"The LoRA adapter {name} is already loaded")
        try:
            async with _model_lock(generator):
                await asyncio.to_thread(generator.load_adapter, name, body["lora_path"])
        except Exception as e:  # the engine's refusal, passed on in its answer
            return lora_answer(False, f"Failed to load LoRA adapter {name}: {e}")
        log.info("adapter %s loaded", name)
        return lora_answer(True)

    async def unload_lora_adapter(request: Request) -> Response:
        try:
            body = await lora_request(request, "lora_name")
        except BadRequest as e:
            return lora_answer(False, str(e))
        name = body["lora_name"]
        if name not in generator.adapters:
            return lora_answer(False, f"The LoRA adapter {name} is not loaded")
        async with _model_lock(generator):
            await asyncio.to_thread(generator.unload_adapter, name)
        log.info("adapter %s unloaded", name)
        return lora_answer(True)

    app.add_api_route("/load_lora_adapter", load_lora_adapter, methods=["POST"])
    app.add_api_route("/unload_lora_adapter", unload_lora_adapter, methods=["POST"])
    return app


def _model_lock(generator):
    return getattr(generator, "lock", None) or contextlib.nullcontext()


def _chunk(ident: str, created: int, model: str, delta: dict, finish: str | None = None, **extra) -> bytes:
    data = {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(data)}\n\n".encode()


async def _sse(
    pieces: AsyncIterator[str], ident: str, created: int, model: str, tool_names: set[str], usage: bool
) -> AsyncIterator[bytes]:
    """OpenAI chunks; with tools, output that starts like a tool call is held back and parsed at the end."""
    yield _chunk(ident, created, model, {"role": "assistant", "content": ""})
    held, holding, count, finish = "", bool(tool_names), 0, "stop"
    async for piece in pieces:
        if isinstance(piece, Finish):
            finish = str(piece)
            continue
        count += 1
        if holding:
            held += piece
            stripped = held.lstrip()
            if not stripped or stripped.startswith("{") or PYTHON_TAG.startswith(stripped[: len(PYTHON_TAG)]):
                continue
            holding, piece, held = False, held, ""
        yield _chunk(ident, created, model, {"content": piece})
    if held:
        content, calls = parse_tool_calls(held, tool_names)
        if calls:
            finish = "tool_calls"
            if content:
                yield _chunk(ident, created, model, {"content": content})
            yield _chunk(ident, created, model, {"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})
        else:
            yield _chunk(ident, created, model, {"content": held})
    yield _chunk(ident, created, model, {}, finish)
    if usage:
        yield _chunk(
            ident,
            created,
            model,
            {},
            None,
            usage={"prompt_tokens": 0, "completion_tokens": count, "total_tokens": count},
        )
    yield b"data: [DONE]\n\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m local.backend", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", help="a transformers model directory (tokenizer with a chat template)")
    p.add_argument("--fixed-response", metavar="TEXT", help="no model: answer TEXT to every request")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--lora", action="append", default=[], metavar="NAME=PATH", help="an adapter to load at start")
    p.add_argument("--served-model-name", help="the base name in <base>:<adapter> (default: --model)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    if (args.model is None) == (args.fixed_response is None):
        p.error("give exactly one of --model and --fixed-response")
    for item in args.lora:
        if "=" not in item:
            p.error(f"--lora {item}: expected NAME=PATH")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    generator = FixedGenerator(args.fixed_response) if args.model is None else ModelGenerator(args.model, args.threads)
    for item in args.lora:
        name, path = item.split("=", 1)
        generator.load_adapter(name, path)
    import uvicorn

    app = create_app(generator, args.served_model_name or args.model or "fixed")
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
