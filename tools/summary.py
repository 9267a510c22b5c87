"""Print a short summary of a synthesized cloud assembly: stacks per environment, resource counts, compliance.

Usage: python -m tools.summary cdk.out
"""

from __future__ import annotations

import json
import sys
from itertools import groupby
from pathlib import Path

from tools.assembly import stacks


def summarize(outdir: Path) -> str:
    lines, total = [], 0
    for stage, group in groupby(stacks(outdir), key=lambda s: s.stage):
        lines.append(f"{stage or 'app'}:")
        for s in group:
            count = len(json.loads(s.template.read_text()).get("Resources", {}))
            total += count
            lines.append(f"  {s.display_name:<32} {count:>4} resources  {s.environment.removeprefix('aws://')}")
    report = outdir / "validation-report.json"
    plugins = json.loads(report.read_text()).get("pluginReports", []) if report.exists() else []
    failed = [p["pluginName"] for p in plugins if p["conclusion"] != "success"]
    verdict = f"FAILED ({', '.join(failed)})" if failed else "clean"
    lines.append(f"total: {total} resources; compliance (cdk-nag AwsSolutions + HIPAA Security): {verdict}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1] if len(sys.argv) > 1 else "cdk.out")))
