"""python -m tools.diagram [cdk.out] [--stage Prod]: render the system picture and the detailed graph."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.diagram import Assembly, DiagramError, read_architecture, read_system, render_detail, render_system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.diagram", description=__doc__)
    parser.add_argument("assembly", nargs="?", default=Path("cdk.out"), type=Path)
    parser.add_argument("--stage", default="Prod", help="the environment drawn in full (default: Prod)")
    parser.add_argument("--output", default=Path("docs/architecture.png"), type=Path, help="the system picture")
    parser.add_argument(
        "--detail-output",
        default=Path("docs/architecture-detail.png"),
        type=Path,
        help="the detailed graph of every construct",
    )
    args = parser.parse_args(argv)
    try:
        assembly = Assembly(args.assembly)
        view = read_system(assembly, args.stage)
        arch = read_architecture(assembly, args.stage)
        title = f"Clinical agent: how {args.stage} answers a clinician, and how a model gets there"
        render_system(view, args.output, title=title)
        with_pipeline = " and of the delivery pipeline" if arch.deploys else ""
        render_detail(arch, args.detail_output, title=f"Clinical agent: every construct of {args.stage}{with_pipeline}")
    except DiagramError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} and {args.detail_output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
