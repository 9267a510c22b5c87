"""The ``diagnose`` call: the fine-tuned model behind the SageMaker endpoint, asked as training asked it.

The chat (the super-prompt, then the case) comes from ``training.clinical.diagnosis_messages``, the
function that formats every training example, so the adapter sees the format it learned.

Each call records one OpenTelemetry span ``diagnose`` with the endpoint, the inference component,
max_tokens, temperature, the prompt (``[REDACTED]`` unless prompts may be recorded), the response
duration and length, and whether it succeeded.
"""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as EndpointUnreachable
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from agent.errors import DiagnosisError
from training.clinical import diagnosis_messages

REDACTED = "[REDACTED]"  # the same marker strands uses for redacted span content
MAX_CASE_CHARS = 8000
_RETRYABLE = {"ModelNotReadyException", "ServiceUnavailable", "ThrottlingException", "TooManyRequestsException"}


class Diagnoser:
    def __init__(
        self,
        client: Any,
        *,
        endpoint_name: str,
        inference_component: str | None,
        max_tokens: int,
        temperature: float,
        record_prompts: bool = False,
    ):
        self.client = client
        self.endpoint_name = endpoint_name
        self.inference_component = inference_component
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.record_prompts = record_prompts
        self._tracer = trace.get_tracer(__name__)

    def diagnose(self, case: str) -> str:
        """The model's assessment of ``case`` (free text: record, symptoms, vitals)."""
        if not isinstance(case, str) or not case.strip():
            raise ValueError("the case is empty: describe the patient, symptoms and vitals")
        if len(case) > MAX_CASE_CHARS:
            raise ValueError(f"the case is {len(case)} characters; at most {MAX_CASE_CHARS} are accepted")
        body = {
            "messages": diagnosis_messages(case),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": False,
        }
        request = {
            "EndpointName": self.endpoint_name,
            "Body": json.dumps(body),
            "ContentType": "application/json",
            "Accept": "application/json",
        }
        if self.inference_component:
            request["InferenceComponentName"] = self.inference_component
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "aws.sagemaker",
            "gen_ai.request.model": self.inference_component or self.endpoint_name,
            "gen_ai.request.max_tokens": self.max_tokens,
            "gen_ai.request.temperature": self.temperature,
            "sagemaker.endpoint_name": self.endpoint_name,
            "sagemaker.inference_component": self.inference_component or "",
            "diagnosis.prompt": case if self.record_prompts else REDACTED,
        }
        with self._tracer.start_as_current_span("diagnose", kind=trace.SpanKind.CLIENT, attributes=attributes) as span:
            start = time.perf_counter()
            text = ""
            try:
                text = self._call(request)
                return text
            finally:
                span.set_attribute("diagnosis.duration_ms", round((time.perf_counter() - start) * 1000, 3))
                span.set_attribute("diagnosis.response_length", len(text))
                span.set_attribute("diagnosis.success", bool(text))
                if self.record_prompts and text:
                    span.set_attribute("diagnosis.completion", text)

    def _call(self, request: dict[str, Any]) -> str:
        where = f"endpoint {self.endpoint_name}" + (
            f", component {self.inference_component}" if self.inference_component else ""
        )
        try:
            response = self.client.invoke_endpoint(**request)
            payload = json.loads(response["Body"].read())
        except ClientError as e:
            err = e.response.get("Error", {})
            raise DiagnosisError(
                f"diagnosis model ({where}) failed: {err.get('Code')}: {err.get('Message')}",
                retryable=err.get("Code") in _RETRYABLE,
            ) from e
        except (EndpointUnreachable, ReadTimeoutError) as e:  # the reason names the error, not the URL
            raise DiagnosisError(
                f"diagnosis model ({where}) unreachable ({type(e).__name__}): retry later", retryable=True
            ) from e
        except BotoCoreError as e:
            raise DiagnosisError(f"diagnosis model ({where}) failed ({type(e).__name__})") from e
        except ValueError as e:
            raise DiagnosisError(f"diagnosis model ({where}) returned a body that is not JSON") from e
        try:
            text = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise DiagnosisError(f"diagnosis model ({where}) returned no chat completion") from None
        if not isinstance(text, str) or not text.strip():
            raise DiagnosisError(f"diagnosis model ({where}) returned an empty assessment")
        return text
