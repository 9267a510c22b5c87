"""The clinical-diagnosis agent: strands on SageMaker, AgentCore app, tools, tracing.

Imports stay light here (``python -m agent.app`` must answer ``/ping`` fast); heavy modules load lazily.
"""


def __getattr__(name: str):
    if name == "create_medical_agent":
        from agent.factory import create_medical_agent

        return create_medical_agent
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
