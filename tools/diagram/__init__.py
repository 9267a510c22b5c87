"""The architecture pictures, drawn from the synthesized app (`cdk.out`) alone: no AWS, no app import.

    python -m tools.diagram cdk.out --stage Prod      (or: make diagram)

* `docs/architecture.png`, the system picture (`system.py`): the parts a person reasons about, with AWS service
  icons, and the labelled flows: a clinician's question, a model's life, promotion across accounts.
* `docs/architecture-detail.png`, the detailed graph (`detail.py`): every top-level construct and reference.

`graph.py` reads the assembly; `render.py` draws with the `diagrams` library through Graphviz's `dot`.
"""

from tools.diagram.detail import Architecture, read_architecture
from tools.diagram.graph import Assembly, DiagramError
from tools.diagram.render import render_detail, render_system
from tools.diagram.system import SystemView, read_system

__all__ = [
    "Architecture",
    "Assembly",
    "DiagramError",
    "SystemView",
    "read_architecture",
    "read_system",
    "render_detail",
    "render_system",
]
