"""Fixtures for the deploy_adapter Lambda: a moto DynamoDB server for real idempotency, the handler
module imported against it, a Stubber-validated SageMaker client and the function's structured logs."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

HANDLER = Path(__file__).resolve().parents[2] / "lambda" / "deploy_adapter" / "handler.py"
REGION = "us-east-1"
TABLE = "deploy-adapter-idempotency"
ENV = {
    "ENDPOINT_NAME": "clinical-llm",
    "BASE_COMPONENT_NAME": "llama32-3b",
    "ADAPTER_COMPONENT_NAME": "clinical-lora",
    "MODEL_PACKAGE_GROUP_NAME": "clinical-diagnosis-llama",
    "IDEMPOTENCY_TABLE": TABLE,
    "POWERTOOLS_SERVICE_NAME": "deploy-adapter",
    "AWS_LAMBDA_FUNCTION_NAME": "deploy-adapter",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def dynamodb_url():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on 127.0.0.1:{port}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def handler_module(dynamodb_url):
    """handler.py imported with the function's environment, its idempotency table on the moto server.
    The environment is restored after the import (the module's clients keep what they read), so nothing
    leaks into other test areas."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**ENV, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url}.items():
            mp.setenv(k, v)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        boto3.client("dynamodb").create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        spec = importlib.util.spec_from_file_location("deploy_adapter_handler", HANDLER)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses and pydantic resolve annotations through sys.modules
        spec.loader.exec_module(module)
    return module


@pytest.fixture
def table(handler_module, dynamodb_url):
    """The idempotency table, emptied after each test."""
    t = boto3.resource(
        "dynamodb",
        region_name=REGION,
        endpoint_url=dynamodb_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).Table(TABLE)
    yield t
    for item in t.scan()["Items"]:
        t.delete_item(Key={"id": item["id"]})


@pytest.fixture
def stub(handler_module, table, monkeypatch):
    """A SageMaker client whose every call must have been stubbed; params are checked against the service model."""
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    stubber = Stubber(client)
    monkeypatch.setattr(handler_module, "sagemaker", lambda: client)
    with stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def logs(handler_module):
    """Returns the structured log records the function has written so far (parsed JSON lines)."""
    buf = io.StringIO()
    h = handler_module.logger.registered_handler
    old = h.setStream(buf)
    yield lambda: [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    h.setStream(old)


class Context:
    function_name = "deploy-adapter"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:111111111111:function:deploy-adapter"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def context():
    return Context()
