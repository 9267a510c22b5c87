"""A model container for the runtime emulator's wire tests: it answers what it received.

    python -m tests.agent.echo_container --port N

``POST /invocations`` answers ``{"headers": {...}, "body": ...}`` with the received headers (lower-cased);
its Content-Type is the request's Accept (else application/json); it returns custom attributes as
``echo:<received>``; a session id ``NEW_SESSION`` gets ``X-Amzn-SageMaker-New-Session-Id``, any other
session id is closed (``X-Amzn-SageMaker-Closed-Session-Id``). A body with ``"stream": true`` is answered
in two chunks. ``GET /ping`` answers 200.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        received = {k.lower(): v for k, v in self.headers.items()}
        payload = json.dumps({"headers": received, "body": raw.decode()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", self.headers.get("Accept") or "application/json")
        if attributes := self.headers.get("X-Amzn-SageMaker-Custom-Attributes"):
            self.send_header("X-Amzn-SageMaker-Custom-Attributes", f"echo:{attributes}")
        if (session := self.headers.get("X-Amzn-SageMaker-Session-Id")) == "NEW_SESSION":
            self.send_header("X-Amzn-SageMaker-New-Session-Id", "session-1; Expires=2030-01-01T00:00:00Z")
        elif session:
            self.send_header("X-Amzn-SageMaker-Closed-Session-Id", session)
        if json.loads(raw or b"{}").get("stream"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(payload) // 2
            for part in (payload[:half], payload[half:], b""):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    ThreadingHTTPServer(("127.0.0.1", p.parse_args().port), Echo).serve_forever()


if __name__ == "__main__":
    main()
