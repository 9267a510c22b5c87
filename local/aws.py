"""Local AWS for tests and the demo: a moto server (S3, DynamoDB, KMS) holding the reports bucket,
the patient table and a KMS key, seeded with synthetic patients.

    python -m local.aws [--port 5000] [--patients 20]    # prints the environment for agent.app, then serves

``LocalServer`` starts any local HTTP server as a subprocess on 127.0.0.1 and stops it by its PID;
tests and the demo use it for moto, the SageMaker runtime emulator, model servers and the agent app.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REGION = "us-east-1"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}  # moto accepts any


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """A server subprocess: started in its own process group, waited on until ``health`` answers,
    stopped by its PID (the group's id)."""

    def __init__(self, process: subprocess.Popen, url: str, log_path: Path):
        self.process = process
        self.url = url
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(
        cls,
        args: list[str],
        *,
        port: int,
        health: str = "/ping",
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        cwd: str | Path | None = None,
    ) -> LocalServer:
        url = f"http://127.0.0.1:{port}"
        fd, log_name = tempfile.mkstemp(prefix="local-server-", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            process = subprocess.Popen(  # its own process group: workers it forks stop with it
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        server = cls(process, url, Path(log_name))
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(args[:3])} exited with {process.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(url + health, timeout=2):
                    return server
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                tail = server.log_tail()  # before stop(), which removes the log
                server.stop()
                raise RuntimeError(f"{' '.join(args[:3])} not healthy at {url}{health} after {timeout}s:\n{tail}")
            time.sleep(0.05)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (then SIGKILL) to the server's own process group, whose id is the server's PID; returns
        when every process of the group is gone (workers may outlive the server by a moment)."""
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout)
        for sig in (None, signal.SIGKILL):  # wait for the group, then kill what is left and wait again
            if sig and _group_alive(self.pid):
                os.killpg(self.pid, sig)
            deadline = time.monotonic() + timeout
            while _group_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_moto(port: int | None = None) -> LocalServer:
    """A moto server (all services) on 127.0.0.1."""
    port = port or free_port()
    return LocalServer.start(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port=port, health="/moto-api/"
    )


@dataclass(frozen=True)
class LocalResources:
    endpoint_url: str
    region: str
    bucket: str
    table: str
    kms_key_id: str

    def env(self) -> dict[str, str]:
        """The environment ``agent.app`` needs for these resources (endpoints, names, dummy credentials)."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ENDPOINT_URL_DYNAMODB": self.endpoint_url,
            "AWS_REGION": self.region,
            "PATIENT_TABLE": self.table,
            "REPORTS_BUCKET": self.bucket,
            "REPORTS_KMS_KEY_ID": self.kms_key_id,
            **LOCAL_CREDENTIALS,
        }


def client(service: str, endpoint_url: str, region: str = REGION) -> Any:
    import boto3

    session: Any = boto3.Session()  # any service by name (the stubs type clients per literal service name)
    return session.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def provision(
    endpoint_url: str,
    *,
    region: str = REGION,
    bucket: str = "clinical-reports-local",
    table: str = "patients",
    patients: int = 20,
    seed: int = 7,
) -> LocalResources:
    """Create the KMS key, the reports bucket (versioned, SSE-KMS by default) and the patient table,
    and seed ``patients`` synthetic patients (``agent.patients.synthetic_patients``)."""
    from agent.patients import PatientStore, synthetic_patients

    key_id = client("kms", endpoint_url, region).create_key(Description="local reports key")["KeyMetadata"]["KeyId"]
    s3 = client("s3", endpoint_url, region)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_id}}]
        },
    )
    ddb = client("dynamodb", endpoint_url, region)
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "patient_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "patient_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    PatientStore(table, ddb).put_all(synthetic_patients(patients, seed))
    return LocalResources(endpoint_url, region, bucket, table, key_id)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.aws", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=None, help="moto port (default: a free one)")
    parser.add_argument("--patients", type=int, default=20, help="synthetic patients to seed")
    args = parser.parse_args(argv)
    with start_moto(args.port) as moto:
        resources = provision(moto.url, patients=args.patients)
        for k, v in resources.env().items():
            print(f"export {k}={v}")
        print(f"# moto (pid {moto.pid}) serving at {moto.url}; Ctrl-C stops it", flush=True)
        try:
            moto.process.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
