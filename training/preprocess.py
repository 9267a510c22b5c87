"""Validate, deduplicate and format clinical records as chat examples; split train/test.

Reads every ``*.jsonl`` under --input-dir (one record per line, see clinical.py) and writes
``train/train.jsonl``, ``test/test.jsonl`` and ``report/report.json`` under --output-dir.

A bad record stops the run with one line per problem (file, line, field, rule) and nothing is
written; with --on-invalid skip, bad records are dropped and counted in the report instead.
Duplicates (same case, whatever the id) are dropped. The split is by a hash of the case, so a
record stays on its side of the split when the dataset grows.

Local:      python training/preprocess.py --input-dir data/raw --output-dir data/processed
SageMaker:  defaults are /opt/ml/processing/input/data and /opt/ml/processing/output
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

from clinical import content_key, to_example, validate_record
from jobenv import jsonl_files, require_dir

MAX_LISTED = 50


class InvalidRecords(Exception):
    def __init__(self, problems: list[str], total: int):
        shown = problems[:MAX_LISTED]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(f"{total} invalid record(s):\n  " + "\n  ".join(shown) + more)


def read_records(files: list[Path], root: Path) -> tuple[list[dict], list[str], int]:
    """Valid records, problems (one per bad record), and the number of lines read."""
    records, problems, read = [], [], 0
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            read += 1
            where = f"{f.relative_to(root)} line {n}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"{where}: not valid JSON ({e.msg} at column {e.colno})")
                continue
            found = validate_record(record)
            if found:
                problems.append(f"{where}: " + "; ".join(found))
            else:
                records.append(record)
    return records, problems, read


def in_test_split(record: dict, test_fraction: float) -> bool:
    digest = hashlib.sha256(json.dumps(content_key(record)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def preprocess(input_dir: Path, output_dir: Path, *, test_fraction: float, on_invalid: str) -> dict:
    files = jsonl_files(input_dir, "input directory", "--input-dir")
    records, problems, read = read_records(files, input_dir)
    if problems and on_invalid == "error":
        raise InvalidRecords(problems, len(problems))
    unique, seen = [], set()
    for r in records:
        key = content_key(r)
        if key not in seen:
            seen.add(key)
            unique.append(r)
    splits: dict[str, list[dict]] = {"train": [], "test": []}
    for r in unique:
        splits["test" if in_test_split(r, test_fraction) else "train"].append(to_example(r))
    for name, rows in splits.items():
        if not rows:
            raise SystemExit(
                f"error: the {name} split is empty ({len(unique)} unique valid records, "
                f"--test-fraction {test_fraction}): add records or change the fraction"
            )
    report = {
        "files": len(files),
        "records_read": read,
        "invalid_skipped": len(problems),
        "duplicates_removed": len(records) - len(unique),
        "train": len(splits["train"]),
        "test": len(splits["test"]),
        "problems": problems[:MAX_LISTED],
    }
    # Write everything to a staging folder first: a failure leaves nothing half-written.
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".staging-") as staging:
        for name, rows in splits.items():
            (Path(staging) / name).mkdir()
            (Path(staging) / name / f"{name}.jsonl").write_text(
                "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
            )
        (Path(staging) / "report").mkdir()
        (Path(staging) / "report" / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        for name in ("train", "test", "report"):
            target = output_dir / name
            if target.exists():
                shutil.rmtree(target)
            (Path(staging) / name).rename(target)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--input-dir",
        default="/opt/ml/processing/input/data",
        help="folder of raw *.jsonl records (default: %(default)s)",
    )
    parser.add_argument(
        "--output-dir",
        default="/opt/ml/processing/output",
        help="where train/, test/ and report/ go (default: %(default)s)",
    )
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of cases held out (default 0.1)")
    parser.add_argument(
        "--on-invalid",
        choices=("error", "skip"),
        default="error",
        help="stop at bad records (default) or skip and count them",
    )
    args = parser.parse_args(argv)
    if not 0 < args.test_fraction < 1:
        parser.error("--test-fraction must be between 0 and 1 (exclusive)")
    input_dir = require_dir(args.input_dir, "input directory", "--input-dir")
    try:
        report = preprocess(
            input_dir, Path(args.output_dir), test_fraction=args.test_fraction, on_invalid=args.on_invalid
        )
    except InvalidRecords as e:
        print(f"error: {e}\n(pass --on-invalid skip to drop them instead)", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in report.items() if k != "problems"}))
    for p in report["problems"]:
        print(f"skipped: {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
