"""Where a program finds its inputs: SageMaker's conventions, or flags when run locally.

Inside a SageMaker job the paths come from the environment (``SM_CHANNEL_TRAIN``, ``SM_MODEL_DIR``,
``SM_OUTPUT_DATA_DIR``) or from the fixed ``/opt/ml/...`` layout; locally every path is a flag.
Standard library only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CHECKPOINTS = "/opt/ml/checkpoints"  # CheckpointConfig.LocalPath, synced to S3 by SageMaker


def in_sagemaker_training() -> bool:
    return "SM_MODEL_DIR" in os.environ or "SM_TRAINING_ENV" in os.environ


def default(env: str, fallback: str | None = None) -> str | None:
    """The value of ``env`` if set, else ``fallback``: the default of a path flag."""
    return os.environ.get(env, fallback)


def require_dir(path: str | os.PathLike | None, what: str, flag: str) -> Path:
    """An existing directory, or a clear error naming the flag that should point at it."""
    if not path:
        raise SystemExit(f"error: {what} not given: pass {flag}")
    p = Path(path)
    if not p.is_dir():
        raise SystemExit(f"error: {what} {p} is not a directory (set by {flag})")
    return p


def jsonl_files(directory: Path, what: str, flag: str) -> list[Path]:
    files = sorted(directory.rglob("*.jsonl"))
    if not files:
        raise SystemExit(f"error: no .jsonl files in the {what} {directory} (set by {flag})")
    return files


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# The Trainer writes trainer_state.json last: a checkpoint without it was cut off mid-write
# (spot interruption, node loss) and must not be resumed from.
COMPLETE_MARKER = "trainer_state.json"


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The complete ``checkpoint-N`` with the highest N, or None."""
    d = Path(directory)
    if not d.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in d.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and (p / COMPLETE_MARKER).is_file()
    ]
    return max(found)[1] if found else None
