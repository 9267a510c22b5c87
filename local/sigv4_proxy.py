"""A local stand-in for SageMaker MLflow's endpoint: verifies each request's SigV4 signature, then forwards it.

    python -m local.sigv4_proxy --port 8091 --upstream http://127.0.0.1:5050 --service sagemaker \\
        --region us-east-1 --access-key local --secret-key local

The ``sagemaker-mlflow`` plugin signs requests for an MLflow App with service ``sagemaker`` (a tracking
server: ``sagemaker-mlflow``) and the ARN's region. Pointed here with ``SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT``,
it reaches a local MLflow server only through this check: the signature is recomputed with botocore's
``SigV4Auth`` from the request as received (signed headers, body, ``X-Amz-Date``) and the known secret,
and the service and region of the credential scope must be the expected ones; a request that fails gets
403 and is not forwarded. ``GET /__proxy/stats`` counts verified and rejected requests (and lists the
rejections' reasons); ``GET /__proxy/ping`` is its health check.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<headers>[^,]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


def verify(
    method: str, url: str, headers: dict[str, str], body: bytes, *, secrets: dict[str, str], service: str, region: str
) -> str | None:
    """None when the request carries a valid SigV4 signature for ``service`` in ``region``; else the reason."""
    lower = {k.lower(): v for k, v in headers.items()}
    match = _AUTH.match(lower.get("authorization", ""))
    if not match:
        return "no SigV4 Authorization header"
    if match["service"] != service or match["region"] != region:
        return f"signed for {match['service']} in {match['region']}, expected {service} in {region}"
    if match["key"] not in secrets:
        return f"unknown access key {match['key']}"
    amz_date = lower.get("x-amz-date", "")
    if not amz_date.startswith(match["date"]):
        return "X-Amz-Date does not match the credential scope"
    if lower.get("x-amz-content-sha256", hashlib.sha256(body).hexdigest()) != hashlib.sha256(body).hexdigest():
        return "X-Amz-Content-SHA256 is not the body's hash"
    signed = match["headers"].split(";")
    request = AWSRequest(method=method, url=url, data=body, headers={h: lower[h] for h in signed if h in lower})
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(match["key"], secrets[match["key"]]), service, region)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    return None if hmac.compare_digest(expected, match["signature"]) else "signature mismatch"


class Proxy:
    def __init__(self, upstream: str, *, secrets: dict[str, str], service: str, region: str):
        self.upstream, self.secrets, self.service, self.region = upstream.rstrip("/"), secrets, service, region
        self.verified = 0
        self.rejected: list[str] = []
        self.lock = threading.Lock()


def make_handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            if self.path == "/__proxy/ping":
                return self._send(200, b'{"status": "healthy"}')
            if self.path == "/__proxy/stats":
                with proxy.lock:
                    stats = {"verified": proxy.verified, "rejected": list(proxy.rejected)}
                return self._send(200, json.dumps(stats).encode())
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            url = f"http://{self.headers.get('Host', '')}{self.path}"
            reason = verify(
                self.command,
                url,
                dict(self.headers.items()),
                body,
                secrets=proxy.secrets,
                service=proxy.service,
                region=proxy.region,
            )
            with proxy.lock:
                if reason:
                    proxy.rejected.append(f"{self.command} {self.path.split('?')[0]}: {reason}")
                else:
                    proxy.verified += 1
            if reason:
                return self._send(403, json.dumps({"message": f"SigV4 check failed: {reason}"}).encode())
            self._forward(body)

        def _forward(self, body: bytes) -> None:
            skip = {"host", "authorization", "connection", "content-length", "transfer-encoding"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            request = urllib.request.Request(
                proxy.upstream + self.path, data=body or None, headers=headers, method=self.command
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as r:
                    status, data, kind = r.status, r.read(), r.headers.get("Content-Type", "application/json")
            except urllib.error.HTTPError as e:
                status, data, kind = e.code, e.read(), e.headers.get("Content-Type", "application/json")
            self._send(status, data, kind)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.sigv4_proxy", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the MLflow server to forward verified requests to")
    parser.add_argument("--service", required=True, help="sagemaker (MLflow App) or sagemaker-mlflow (tracking server)")
    parser.add_argument("--region", required=True)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    args = parser.parse_args(argv)
    proxy = Proxy(args.upstream, secrets={args.access_key: args.secret_key}, service=args.service, region=args.region)
    server = _Server(("127.0.0.1", args.port), make_handler(proxy))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
