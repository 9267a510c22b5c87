"""Typed errors of the clinical agent. Each message names what is wrong and never carries patient fields."""


class AgentError(Exception):
    """Base class of the agent's own errors."""


class ConfigurationError(AgentError):
    """The runtime environment (environment variables) is incomplete or invalid."""


class InvalidPatientId(AgentError, ValueError):
    """A patient id does not match the expected format."""


class PatientNotFound(AgentError, LookupError):
    """No record exists for a (well-formed) patient id."""


class InvalidReport(AgentError, ValueError):
    """A diagnostic report is empty or larger than allowed."""


class DiagnosisError(AgentError):
    """The fine-tuned model could not produce a diagnosis; ``retryable`` when it was unreachable or busy."""

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable
