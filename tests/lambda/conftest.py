"""Fixtures for the adapter_copy custom resource: a moto S3 + KMS server (started here, stopped by its PID) with the
registry's bucket and this environment's versioned bucket, the handler module loaded by path, and a local HTTP server
standing in for CloudFormation's pre-signed response URL."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.aws import LOCAL_CREDENTIALS, start_moto

# The Python the function is deployed on (stacks/constructs/adapter_component.py RUNTIME; tests/infra/test_runtimes.py
# fails if they diverge). The handler's tests run on it only: from any other interpreter (the project's venv),
# test_on_lambda_python.py runs them there, with the function's bundled requirements.
LAMBDA_PYTHON_VERSION = "3.13"
LAMBDA_PYTHON_VARIABLE = "LAMBDA_PYTHON"  # that interpreter's path, where python3.13 is not on PATH
ON_LAMBDA_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}" == LAMBDA_PYTHON_VERSION
collect_ignore = ["test_on_lambda_python.py"] if ON_LAMBDA_PYTHON else ["test_adapter_copy.py"]

HANDLER = Path(__file__).resolve().parents[2] / "lambda" / "adapter_copy" / "handler.py"
REGION = "us-east-1"
SOURCE, TARGET = "registry-artifacts", "env-artifacts"
SOURCE_KEY = "pipeline/clinical-diagnosis-finetune/exec5/FineTune/job5/output/model.tar.gz"
ARCHIVE = b"\x1f\x8b" + bytes(range(256)) * 64  # the adapter archive's bytes (any bytes: S3 hashes them)
SHA256 = hashlib.sha256(ARCHIVE).hexdigest()


@pytest.fixture(scope="session")
def moto_url():
    server = start_moto()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def s3(moto_url):
    """Fresh buckets per test: the registry's (SSE-KMS, as the pipeline writes) and the environment's (versioned)."""
    client = boto3.client("s3", region_name=REGION, endpoint_url=moto_url, **_credentials())
    kms = boto3.client("kms", region_name=REGION, endpoint_url=moto_url, **_credentials())
    key = kms.create_key()["KeyMetadata"]["Arn"]
    for bucket in (SOURCE, TARGET):
        client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=TARGET, VersioningConfiguration={"Status": "Enabled"})
    client.put_object(Bucket=SOURCE, Key=SOURCE_KEY, Body=ARCHIVE, ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
    yield client
    for bucket in (SOURCE, TARGET):
        for v in client.list_object_versions(Bucket=bucket).get("Versions", []):
            client.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        for m in client.list_object_versions(Bucket=bucket).get("DeleteMarkers", []):
            client.delete_object(Bucket=bucket, Key=m["Key"], VersionId=m["VersionId"])
        client.delete_bucket(Bucket=bucket)


def _credentials() -> dict[str, str]:
    return {"aws_access_key_id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}  # fmt: skip


@pytest.fixture(scope="session")
def handler_module():
    """handler.py, imported by path as Lambda runs it (its folder is not a package)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POWERTOOLS_SERVICE_NAME", "adapter-copy")
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        spec = importlib.util.spec_from_file_location("adapter_copy_handler", HANDLER)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # pydantic resolves annotations through sys.modules
        spec.loader.exec_module(module)
    return module


@pytest.fixture
def handler(handler_module, s3, monkeypatch):
    """The handler with the moto S3 client; waits between retries take no time."""
    monkeypatch.setattr(handler_module, "s3", lambda: s3)
    monkeypatch.setattr(handler_module, "sleep", lambda seconds: None)
    return handler_module


class Responses:
    """What CloudFormation would receive: each PUT to the response URL, its body parsed."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []


@pytest.fixture
def cloudformation():
    """A local HTTP server on 127.0.0.1 standing in for the pre-signed response URL; stopped after the test."""
    responses = Responses()

    class Receiver(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            responses.received.append(json.loads(body))
            responses.headers.append(dict(self.headers))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    responses.url = f"http://127.0.0.1:{server.server_address[1]}/response?signature=x"  # type: ignore[attr-defined]
    try:
        yield responses
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class Context:
    function_name = "adapter-copy"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:222222222222:function:adapter-copy"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def context():
    return Context()
