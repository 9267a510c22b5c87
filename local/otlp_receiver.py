"""A local OTLP/HTTP receiver standing in for AgentCore observability's endpoints (ADOT's exporters).

    python -m local.otlp_receiver --port 4318

Accepts ``POST /v1/traces``, ``/v1/logs`` and ``/v1/metrics`` (protobuf, optionally gzip), decodes traces
and logs with the OpenTelemetry protos, and serves what it received as JSON: ``GET /spans`` (name, trace
and span ids, parent id, attributes, events) and ``GET /logs`` (body and attributes). ``GET /ping`` is its
health check.
"""

from __future__ import annotations

import argparse
import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def _value(v: dict[str, Any]) -> Any:
    if not v:
        return None
    kind, inner = next(iter(v.items()))
    if kind == "arrayValue":
        return [_value(x) for x in inner.get("values", [])]
    if kind == "kvlistValue":
        return {kv["key"]: _value(kv.get("value", {})) for kv in inner.get("values", [])}
    return inner


def _attributes(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {kv["key"]: _value(kv.get("value", {})) for kv in items}


def spans_of(payload: bytes) -> list[dict[str, Any]]:
    request = ExportTraceServiceRequest.FromString(payload)
    spans = []
    for resource in MessageToDict(request).get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for s in scope.get("spans", []):
                spans.append(
                    {
                        "name": s["name"],
                        "trace_id": s.get("traceId"),
                        "span_id": s.get("spanId"),
                        "parent_id": s.get("parentSpanId"),
                        "scope": scope.get("scope", {}).get("name"),
                        "attributes": _attributes(s.get("attributes", [])),
                        "events": [
                            {"name": e.get("name"), "attributes": _attributes(e.get("attributes", []))}
                            for e in s.get("events", [])
                        ],
                    }
                )
    return spans


def logs_of(payload: bytes) -> list[dict[str, Any]]:
    request = ExportLogsServiceRequest.FromString(payload)
    records = []
    for resource in MessageToDict(request).get("resourceLogs", []):
        for scope in resource.get("scopeLogs", []):
            for r in scope.get("logRecords", []):
                records.append({"body": _value(r.get("body", {})), "attributes": _attributes(r.get("attributes", []))})
    return records


class Receiver:
    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.lock = threading.Lock()


def make_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with receiver.lock:
                routes = {"/ping": {"status": "healthy"}, "/spans": receiver.spans, "/logs": receiver.logs}
                if self.path in routes:
                    return self._send(200, routes[self.path])
            self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            try:
                if self.path == "/v1/traces":
                    spans = spans_of(body)
                    with receiver.lock:
                        receiver.spans += spans
                elif self.path == "/v1/logs":
                    records = logs_of(body)
                    with receiver.lock:
                        receiver.logs += records
                elif self.path != "/v1/metrics":
                    return self._send(404, {"error": f"no route {self.path}"})
            except Exception as e:  # a malformed export is the sender's bug: answer 400 with the reason
                return self._send(400, {"error": f"not an OTLP protobuf export: {e}"})
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.otlp_receiver", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = _Server(("127.0.0.1", args.port), make_handler(Receiver()))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
