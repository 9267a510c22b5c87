"""The training dataset: generated (training/generate.py) or taken from a file, checked against the
preprocessing schema (training/clinical.py) record by record, and uploaded where the pipeline reads it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ops import outputs
from ops.cloud import Cloud
from ops.errors import OpsError
from ops.ui import console
from ops.weights import CHECKSUM_KEY, list_prefix, stored_checksum
from training.clinical import validate_record

ROOT = Path(__file__).resolve().parent.parent
RECORDS_NAME = "records.jsonl"
MAX_LISTED = 20


def check_records(path: Path) -> int:
    """The number of records in a JSON-lines file; every record that fails the schema is named (file, line)."""
    if not path.is_file():
        raise OpsError(f"--from {path}: no such file")
    problems, count = [], 0
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        count += 1
        try:
            found = validate_record(json.loads(line))
        except json.JSONDecodeError as e:
            found = [f"not valid JSON ({e.msg} at column {e.colno})"]
        if found:
            problems.append(f"{path.name} line {n}: " + "; ".join(found))
    if problems:
        shown = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise OpsError(
            f"{len(problems)} of {count} record(s) fail the preprocessing schema (training/clinical.py); nothing was "
            f"uploaded:\n  {shown}{more}"
        )
    if not count:
        raise OpsError(f"--from {path}: no records")
    return count


def generate(count: int, seed: int, directory: Path) -> Path:
    """Synthetic records by the generator's own entry point (deterministic by seed)."""
    out = directory / RECORDS_NAME
    cmd = [sys.executable, str(ROOT / "training" / "generate.py"), "--output", str(out), "--count", str(count)]
    done = subprocess.run([*cmd, "--seed", str(seed)], capture_output=True, text=True)
    if done.returncode:
        raise OpsError(f"training/generate.py failed (exit {done.returncode}): {done.stderr.strip()}")
    return out


def upload(cloud: Cloud, path: Path, count: int, *, replace: bool) -> str:
    """Upload to ``s3://<datasets>/<training.dataset_prefix>/records.jsonl`` unless the same bytes are there."""
    bucket = cloud.output(outputs.DATASETS_BUCKET)
    prefix = cloud.training().dataset_prefix.strip("/") + "/"
    key = prefix + RECORDS_NAME
    s3 = cloud.client("s3")
    existing = list_prefix(s3, bucket, prefix)
    others = sorted(k for k in existing if k != key)
    if others and replace:
        for k in others:
            s3.delete_object(Bucket=bucket, Key=k, ExpectedBucketOwner=cloud.settings.account)
        console.print(f"removed {len(others)} other object(s) under s3://{bucket}/{prefix}: {', '.join(others)}")
    elif others:
        console.print(
            f"[yellow]note[/]: the pipeline also reads {', '.join(others)} under s3://{bucket}/{prefix} "
            "(--replace removes them)"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    uri = f"s3://{bucket}/{key}"
    if key in existing and stored_checksum(s3, bucket, key) == digest:
        console.print(f"[green]✓[/] {uri} already holds these {count} records (same SHA-256): nothing uploaded")
        return uri
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=path.read_bytes(),
        Metadata={CHECKSUM_KEY: digest},
        ChecksumAlgorithm="SHA256",
        ContentType="application/jsonl",
        ExpectedBucketOwner=cloud.settings.account,
    )
    console.print(f"[green]✓[/] uploaded {count} records to {uri}")
    return uri


def run(cloud: Cloud, *, source: Path | None, count: int, seed: int, replace: bool) -> str:
    cloud.training()  # refuses an environment that does not train, before any work
    cloud.identity()
    with tempfile.TemporaryDirectory(prefix="ops-data-") as tmp:
        if source is None:
            console.print(f"generating {count} synthetic records (seed {seed}) with training/generate.py ...")
            source = generate(count, seed, Path(tmp))
        n = check_records(source)
        console.print(f"{n} records pass the preprocessing schema")
        uri = upload(cloud, source, n, replace=replace)
    console.print(f"next: make train ENV={cloud.env}")
    return uri
