"""Local AWS for tests and the demo: a moto server (S3, DynamoDB, KMS) holding the reports bucket,
the patient table and a KMS key, seeded with synthetic patients.

    python -m local.aws [--port 5000] [--patients 20]    # prints the environment for agent.app, then serves

The moto server runs as a ``local.server.LocalServer`` (started on 127.0.0.1, stopped by its PID).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from local.server import LocalServer, free_port

REGION = "us-east-1"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}  # moto accepts any


def start_moto(port: int | None = None, env: dict[str, str] | None = None) -> LocalServer:
    """A moto server (all services) on 127.0.0.1; ``env`` e.g. ``{"MOTO_ACCOUNT_ID": ...}``."""
    port = port or free_port()
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return LocalServer.start(args, port=port, health="/moto-api/", env=env)


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
