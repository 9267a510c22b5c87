"""Diagnostic reports: markdown objects under ``reports/<patient_id>/<utc timestamp>.md``, SSE-KMS encrypted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent.errors import InvalidReport
from agent.models import validate_patient_id


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ReportStore:
    """Writes reports to the reports bucket through an injected S3 client."""

    def __init__(
        self,
        bucket: str,
        kms_key_id: str,
        client: Any,
        *,
        max_bytes: int = 65536,
        clock: Callable[[], datetime] = _utc_now,
    ):
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        self.client = client
        self.max_bytes = max_bytes
        self.clock = clock

    def key_for(self, patient_id: str) -> str:
        stamp = self.clock().astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        return f"reports/{validate_patient_id(patient_id)}/{stamp}.md"

    def upload(self, patient_id: str, report: str) -> str:
        """Store ``report`` (markdown) for the patient; returns its ``s3://`` URI. Nothing is written on bad input."""
        key = self.key_for(patient_id)
        if not isinstance(report, str) or not report.strip():
            raise InvalidReport("the report is empty")
        body = report.encode("utf-8")
        if len(body) > self.max_bytes:
            raise InvalidReport(f"the report is {len(body)} bytes; at most {self.max_bytes} are accepted")
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType="text/markdown; charset=utf-8",
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=self.kms_key_id,
        )
        return f"s3://{self.bucket}/{key}"
