"""Print a short summary of a synthesized cloud assembly: stacks per environment, resource counts, the monthly
cost envelope of each environment (ops/cost.py, from the pinned ops/prices.yaml), compliance.

Usage: python -m tools.summary cdk.out
"""

from __future__ import annotations

import json
import sys
from itertools import groupby
from pathlib import Path

from ops.cost import envelope, one_line
from ops.errors import OpsError
from stacks.settings import ConfigError, known_environments, load_environment
from tools.assembly import stacks


def cost_line(stage: str) -> str | None:
    """The cost envelope of the environment a stage deploys (none for the app's own stacks or pipeline copies)."""
    name = stage.lower()
    if name not in known_environments():
        return None
    try:
        return f"  cost: {one_line(envelope(load_environment(name)))} (details: make cost ENV={name})"
    except (OpsError, ConfigError) as e:
        return f"  cost: unknown ({e})"


def summarize(outdir: Path) -> str:
    lines, total = [], 0
    for stage, group in groupby(stacks(outdir), key=lambda s: s.stage):
        lines.append(f"{stage or 'app'}:")
        for s in group:
            count = len(json.loads(s.template.read_text()).get("Resources", {}))
            total += count
            lines.append(f"  {s.display_name:<32} {count:>4} resources  {s.environment.removeprefix('aws://')}")
        if cost := cost_line(stage):
            lines.append(cost)
    report = outdir / "validation-report.json"
    plugins = json.loads(report.read_text()).get("pluginReports", []) if report.exists() else []
    failed = [p["pluginName"] for p in plugins if p["conclusion"] != "success"]
    verdict = f"FAILED ({', '.join(failed)})" if failed else "clean"
    lines.append(f"total: {total} resources; compliance (cdk-nag AwsSolutions + HIPAA Security): {verdict}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1] if len(sys.argv) > 1 else "cdk.out")))
