"""`make demo`: a first run vs a cached re-run (inputs unchanged), in one run. Target: re-run <= 0.1x.

Runs the demo twice over a fresh work folder (smaller than the default settings, same steps)
and prints both wall times and their ratio.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--records", "200", "--max-steps", "60", "--eval-samples", "4", "--mlflow-port", "0"]


def run(workdir: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "local.demo", "--workdir", workdir, *ARGS],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        first = run(workdir)
        cached = run(workdir)
    print(f"demo: first run {first:.1f}s, cached re-run {cached:.2f}s")
    print(f"demo ratio cached/first = {cached / first:.3f}x (target <= 0.1x)")


if __name__ == "__main__":
    main()
