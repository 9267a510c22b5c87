"""A scripted OpenAI-compatible chat model server: deterministic answers and tool calls, no weights.

    python -m local.scripted_model --port 30001 [--mode tools|plain] [--delay-ms 0]

Routes: ``POST /invocations`` and ``POST /v1/chat/completions`` (OpenAI chat body; SSE when
``"stream": true``), ``GET /ping``, and ``GET|DELETE /requests`` (the last requests received: path,
adapter header, body) for tests.

Script (mode ``tools``, when the request offers tools): for a patient id ``P-dddddd`` in the first
user message it calls ``get_patient_record``, then ``diagnose``, then ``upload_diagnostic_report``
(each once, if offered), then answers with the stored report's URI. A tool error or an unknown
patient ends the script with a plain answer saying so. Without tools (or in mode ``plain``) it
answers with a markdown assessment chosen by keywords of the case. Mode ``broken`` answers like
``plain`` but hangs up in the middle of every stream (after the first words).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ADAPTER_HEADER = "X-Amzn-SageMaker-Adapter-Identifier"
TOOL_ORDER = ("get_patient_record", "diagnose", "upload_diagnostic_report")
MODES = ("tools", "plain", "broken")
_PATIENT = re.compile(r"\bP-\d{6}\b")
_FINDINGS = [  # keyword -> differential, most likely first
    (("chest pain", "chest tightness"), ["Acute coronary syndrome", "Pulmonary embolism", "Gastro-oesophageal reflux"]),
    (("shortness of breath", "dyspnea", "wheez"), ["Asthma or COPD exacerbation", "Heart failure", "Pneumonia"]),
    (("fever", "cough"), ["Community-acquired pneumonia", "Viral respiratory infection", "Acute bronchitis"]),
    (("headache",), ["Migraine", "Tension-type headache", "Meningitis (exclude if fever and neck stiffness)"]),
    (("abdominal pain",), ["Acute appendicitis", "Biliary colic", "Gastroenteritis"]),
    (("dysuria", "urinary"), ["Urinary tract infection", "Pyelonephritis", "Urolithiasis"]),
]


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def assessment(case: str) -> str:
    """A deterministic markdown assessment in the sections the clinical super-prompt asks for."""
    lowered = case.lower()
    differential = next((d for keys, d in _FINDINGS if any(k in lowered for k in keys)), None)
    differential = differential or [
        "Viral syndrome",
        "Medication side effect",
        "Early presentation of systemic illness",
    ]
    likelihood = ["high", "medium", "low"]
    lines = ["## Summary", "Synthetic teaching case assessed by the scripted model.", "", "## Differential diagnosis"]
    lines += [f"{i + 1}. {d} - likelihood {likelihood[i]}" for i, d in enumerate(differential)]
    lines += ["", "## Recommended investigations", "- Full blood count, CRP, ECG as indicated", ""]
    lines += ["## Red flags", "- Haemodynamic instability, hypoxia, altered consciousness", ""]
    lines += ["## Teaching points", "- Anchor on the history; re-check vitals."]
    return "\n".join(lines)


def decide(body: dict[str, Any], mode: str = "tools") -> dict[str, Any]:
    """The next assistant message: ``{"content": str}`` or ``{"tool_calls": [...]}``."""
    messages = body.get("messages") or []
    offered = {t["function"]["name"] for t in body.get("tools") or [] if t.get("type") == "function"}
    user = next((text_of(m) for m in messages if m.get("role") == "user"), "")
    if mode != "tools" or not offered:
        return {"content": assessment(user)}
    calls = {  # tool_call_id -> name, in the order the assistant made them
        c["id"]: c["function"]["name"]
        for m in messages
        if m.get("role") == "assistant"
        for c in m.get("tool_calls") or []
    }
    results = {calls.get(m.get("tool_call_id"), "?"): text_of(m) for m in messages if m.get("role") == "tool"}
    for name, result in results.items():
        if result.startswith("Error"):
            return {"content": f"The tool {name} failed: {result}"}
    if '"found": false' in results.get("get_patient_record", ""):
        return {"content": f"No record was found: {results['get_patient_record']}"}
    match = _PATIENT.search(user)
    if not match:
        return {"content": assessment(user)}
    patient = match.group(0)
    arguments = {
        "get_patient_record": lambda: {"patient_id": patient},
        "diagnose": lambda: {"case": f"{user}\nRecord: {results.get('get_patient_record', 'not read')}"},
        "upload_diagnostic_report": lambda: {
            "patient_id": patient,
            "report": f"# Diagnostic report - {patient}\n\n{results.get('diagnose') or assessment(user)}\n",
        },
    }
    for name in TOOL_ORDER:
        if name in offered and name not in calls.values():
            call_id = f"call_{len(calls) + 1}"
            return {
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(arguments[name]())},
                    }
                ]
            }
    uri = results.get("upload_diagnostic_report", "")
    return {"content": f"Assessment complete for {patient}. Report stored at {uri}." if uri else assessment(user)}


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(len(text_of(m).split()) for m in body.get("messages") or [])
    completion = max(1, len(text.split()))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion(body: dict[str, Any], reply: dict[str, Any], model: str) -> dict[str, Any]:
    finish = "tool_calls" if "tool_calls" in reply else "stop"
    message = {"role": "assistant", "content": reply.get("content")} | (
        {"tool_calls": reply["tool_calls"]} if "tool_calls" in reply else {}
    )
    text = reply.get("content") or json.dumps(reply.get("tool_calls"))
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _usage(body, text),
    }


def stream_chunks(body: dict[str, Any], reply: dict[str, Any], model: str) -> list[dict[str, Any]]:
    """OpenAI ``chat.completion.chunk`` events: text in small deltas, tool arguments in two parts."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        } | extra

    chunks = [chunk({"role": "assistant", "content": ""})]
    if "tool_calls" in reply:
        for i, call in enumerate(reply["tool_calls"]):
            args = call["function"]["arguments"]
            half = len(args) // 2
            chunks.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": args[:half]},
                            }
                        ]
                    }
                )
            )
            chunks.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]}))
        finish, text = "tool_calls", json.dumps(reply["tool_calls"])
    else:
        text = reply["content"]
        words = re.findall(r"\S+\s*|\s+", text)
        chunks += [chunk({"content": "".join(words[i : i + 4])}) for i in range(0, len(words), 4)]
        finish = "stop"
    chunks.append(chunk({}, finish, usage=_usage(body, text)))
    return chunks


class ScriptedModel:
    def __init__(self, mode: str = "tools", delay_ms: float = 0.0, keep: int = 500):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.delay = delay_ms / 1000
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self.lock = threading.Lock()


class ScriptedHandler(BaseHTTPRequestHandler):
    """The HTTP side of a ``ScriptedModel`` (bound by ``make_handler``)."""

    model: ScriptedModel
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path in ("/ping", "/health"):
            self._json(200, {"status": "healthy", "mode": self.model.mode})
        elif self.path == "/requests":
            with self.model.lock:
                self._json(200, list(self.model.requests))
        else:
            self._json(404, {"error": f"no route {self.path}"})

    def do_DELETE(self) -> None:
        if self.path != "/requests":
            return self._json(404, {"error": f"no route {self.path}"})
        with self.model.lock:
            self.model.requests.clear()
        self._json(200, {"cleared": True})

    def _chat_request(self) -> dict[str, Any] | None:
        """The request's chat body, or None after answering 400."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise ValueError("the body needs a 'messages' list")
        except ValueError as e:
            self._json(400, {"error": f"invalid chat request: {e}"})
            return None
        return body

    def do_POST(self) -> None:
        if self.path not in ("/invocations", "/v1/chat/completions"):
            return self._json(404, {"error": f"no route {self.path}"})
        body = self._chat_request()
        if body is None:
            return
        adapter = self.headers.get(ADAPTER_HEADER)
        with self.model.lock:
            self.model.requests.append({"path": self.path, "adapter": adapter, "body": body})
        if self.model.delay:
            time.sleep(self.model.delay)
        reply = decide(body, self.model.mode)
        name = adapter or body.get("model") or "scripted"
        if body.get("stream"):
            self._stream(stream_chunks(body, reply, name))
        else:
            self._json(200, completion(body, reply, name))

    def _stream(self, chunks: list[dict[str, Any]]) -> None:
        """SSE chunks; in mode ``broken``, promise more than is sent, then hang up mid-stream."""
        broken = self.model.mode == "broken"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        if broken:
            self.send_header("Content-Length", "1000000")
        self.end_headers()
        for c in chunks[:2] if broken else chunks:  # broken: the role and the first words, then nothing
            self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
            self.wfile.flush()
        if not broken:
            self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


def make_handler(model: ScriptedModel) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (ScriptedHandler,), {"model": model})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # bursts of concurrent sessions


def serve(port: int, host: str = "127.0.0.1", mode: str = "tools", delay_ms: float = 0.0) -> ThreadingHTTPServer:
    return _Server((host, port), make_handler(ScriptedModel(mode, delay_ms)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.scripted_model", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mode", choices=MODES, default="tools", help="broken: streams end abruptly")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="added latency per response")
    args = parser.parse_args(argv)
    server = serve(args.port, args.host, args.mode, args.delay_ms)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
