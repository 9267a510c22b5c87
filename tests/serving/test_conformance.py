"""The adapter contract's reference suites, rewritten for our front over real HTTP (issue 21).

Sources: vLLM ``tests/entrypoints/sagemaker/`` (test_sagemaker_lora_adapters.py,
test_sagemaker_handler_overrides.py, test_sagemaker_middleware_integration.py) and
model-hosting-container-standards ``python/tests/integration/test_sagemaker_lora_integration.py``. Each
test names the one it ports. They run against ``sagemaker_front.py`` in front of the CPU backend
(SGLang's API), each front a real process on 127.0.0.1.

Expectations of those suites that are the engine's, not the contract's, do not apply here:
- ``GET /v1/models`` listing adapters (vLLM's OpenAI server): the contract has no listing route; we check
  a loaded adapter by invoking it, an unloaded one by its 404.
- completions bodies (``{"prompt": ...}``, ``choices[].text``): SGLang's ``/invocations`` takes the chat
  body (``messages``), as the agent sends it.
- registration from query parameters (``POST /adapters?name=&src=``): the library's fallback for engines
  that read them; SageMaker sends a JSON body, and our handler maps ``body.name``/``body.src``.
- ``inject_adapter_id`` into an arbitrary body path: SGLang selects an adapter by ``"model":
  "<base>:<adapter>"``, the one path the front writes.
"""

from __future__ import annotations

import httpx
import pytest

from local.server import LocalServer, free_port
from tests.serving.helpers import ADAPTER_HEADER, front_cmd, launch

CHAT = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5, "temperature": 0}


@pytest.fixture
def start_front(model_backend, tiny_model, tmp_path):
    """A front of our own in front of the shared CPU backend, with a customer's script and variables."""
    started: list[LocalServer] = []

    def start(script: str | None = None, **env: str) -> LocalServer:
        if script is not None:
            (tmp_path / "model.py").write_text(script)
            env = {"SAGEMAKER_MODEL_PATH": str(tmp_path), "CUSTOM_SCRIPT_FILENAME": "model.py", **env}
        port = free_port()
        server = launch(front_cmd(port, model_backend.url, str(tiny_model)), port, env=env, log=tmp_path / "front.log")
        started.append(server)
        return server.wait_ready("/ping", status=None)

    yield start
    for server in started:
        server.stop()


def invoke(url: str, adapter: str | None = None) -> httpx.Response:
    headers = {ADAPTER_HEADER: adapter} if adapter else {}
    return httpx.post(f"{url}/invocations", json=CHAT, headers=headers, timeout=60)


def load(url: str, name: str, src) -> httpx.Response:
    return httpx.post(f"{url}/adapters", json={"name": name, "src": str(src)}, timeout=60)


# --- adapter lifecycle -------------------------------------------------------------------------------------


def test_load_invoke_unload_happy_path(front, tiny_adapters):
    """vLLM test_sagemaker_load_adapter_happy_path, test_sagemaker_unload_adapter_happy_path,
    test_sagemaker_invocations_with_adapter; library TestLoRAEndToEndFlow.test_full_adapter_lifecycle."""
    name = "smollm2-lora-sagemaker"
    assert load(front.url, name, tiny_adapters["clinical"]).status_code == 200
    r = invoke(front.url, name)
    assert r.status_code == 200 and r.json()["choices"] and r.json()["model"].endswith(f":{name}")
    assert httpx.delete(f"{front.url}/adapters/{name}", timeout=30).status_code == 200
    assert invoke(front.url, name).status_code == 404


def test_load_adapter_whose_source_does_not_exist_is_404(front):
    """vLLM test_sagemaker_load_adapter_not_found: a ``src`` that does not exist is 404 (was 400 here)."""
    r = load(front.url, "nonexistent-adapter", "/path/does/not/exist")
    assert r.status_code == 404 and "/path/does/not/exist not found" in r.json()["detail"]


def test_load_adapter_with_invalid_files_is_400(front, tmp_path):
    """vLLM test_sagemaker_load_adapter_invalid_files."""
    invalid = tmp_path / "invalid_adapter"
    invalid.mkdir()
    (invalid / "adapter_config.json").write_text("not valid json")
    r = load(front.url, "invalid-adapter", invalid)
    assert r.status_code == 400, r.text
    assert invoke(front.url, "invalid-adapter").status_code == 404


def test_unload_adapter_that_is_not_loaded_is_404(front):
    """vLLM test_sagemaker_unload_nonexistent_adapter (400 or 404 there; 404 here)."""
    assert httpx.delete(f"{front.url}/adapters/nonexistent-adapter-name", timeout=30).status_code == 404


def test_many_adapters_load_and_unload(front, tiny_adapters):
    """vLLM test_sagemaker_multiple_adapters_load_unload; library TestLoRAEndToEndFlow.test_multiple_adapters
    (one adapter's removal leaves the others working)."""
    names = [f"sagemaker-adapter-{i}" for i in range(5)]
    for i, name in enumerate(names):
        assert load(front.url, name, tiny_adapters["clinical" if i % 2 else "triage"]).status_code == 200
    assert all(invoke(front.url, n).status_code == 200 for n in names)
    assert httpx.delete(f"{front.url}/adapters/{names[0]}", timeout=30).status_code == 200
    assert invoke(front.url, names[0]).status_code == 404
    assert invoke(front.url, names[1]).status_code == 200
    for name in names[1:]:
        assert httpx.delete(f"{front.url}/adapters/{name}", timeout=30).status_code == 200
    assert all(invoke(front.url, n).status_code == 404 for n in names)


@pytest.mark.parametrize("body", [{"name": "test-adapter"}, {}], ids=["no-src", "empty"])
def test_load_adapter_with_missing_fields_is_refused(front, body):
    """Library TestLoRAErrorCases.test_load_adapter_missing_required_field and test_load_adapter_empty_body."""
    assert httpx.post(f"{front.url}/adapters", json=body, timeout=30).status_code in (400, 422)


def test_unload_without_a_name_is_405(front):
    """Library TestLoRAErrorCases.test_unload_adapter_missing_adapter_name."""
    assert httpx.delete(f"{front.url}/adapters/", timeout=30, follow_redirects=True).status_code == 405


def test_invocation_without_adapter_uses_the_base_model(front):
    """Library TestLoRAEndToEndFlow.test_invoke_without_adapter_uses_base_model."""
    r = invoke(front.url)
    assert r.status_code == 200 and ":" not in r.json()["model"]


# --- handler overrides -------------------------------------------------------------------------------------

SCRIPT_FUNCTIONS = """
from fastapi import Request

async def custom_sagemaker_ping_handler():
    return {"status": "healthy", "source": "customer_override"}

async def custom_sagemaker_invocation_handler(request: Request):
    return {"predictions": ["Custom response from customer script"], "source": "customer_override"}
"""


def test_customer_script_functions_replace_the_handlers(start_front):
    """vLLM test_customer_script_functions_auto_loaded and test_environment_variable_script_loading."""
    front = start_front(SCRIPT_FUNCTIONS)
    assert httpx.get(f"{front.url}/ping", timeout=10).json()["source"] == "customer_override"
    assert invoke(front.url).json()["source"] == "customer_override"


def test_customer_decorators_replace_the_handlers_and_win_over_script_functions(start_front):
    """vLLM test_customer_decorator_usage and test_handler_priority_order."""
    front = start_front(
        """
import model_hosting_container_standards.sagemaker as sagemaker_standards
from fastapi import Request

@sagemaker_standards.custom_ping_handler
async def decorated_ping():
    return {"source": "ping_decorator_in_script"}

async def custom_sagemaker_ping_handler():
    return {"source": "script_function"}

@sagemaker_standards.custom_invocation_handler
async def my_invoke(request: Request):
    return {"source": "customer_decorator"}
"""
    )
    assert httpx.get(f"{front.url}/ping", timeout=10).json()["source"] == "ping_decorator_in_script"
    assert invoke(front.url).json()["source"] == "customer_decorator"


def test_handler_variables_win_over_decorators_and_script_functions(start_front):
    """vLLM test_handler_env_var_override and test_env_var_priority_over_decorator_and_script."""
    script = """
import model_hosting_container_standards.sagemaker as sagemaker_standards
from fastapi import Request, Response
import json

async def env_ping(raw_request: Request) -> Response:
    return Response(content=json.dumps({"source": "env_var"}), media_type="application/json")

async def env_invoke(raw_request: Request) -> Response:
    return Response(content=json.dumps({"source": "env_var"}), media_type="application/json")

@sagemaker_standards.custom_ping_handler
async def decorator_ping(raw_request: Request) -> Response:
    return Response(content=json.dumps({"source": "decorator"}), media_type="application/json")

async def custom_sagemaker_invocation_handler(request: Request):
    return {"source": "script"}
"""
    front = start_front(
        script,
        CUSTOM_FASTAPI_PING_HANDLER="model.py:env_ping",
        CUSTOM_FASTAPI_INVOCATION_HANDLER="model.py:env_invoke",
    )
    assert httpx.get(f"{front.url}/ping", timeout=10).json()["source"] == "env_var"
    assert invoke(front.url).json()["source"] == "env_var"


def test_framework_handlers_serve_when_nothing_overrides_them(start_front):
    """vLLM test_framework_default_handlers: empty override variables change nothing."""
    front = start_front(None, SAGEMAKER_MODEL_PATH="", CUSTOM_SCRIPT_FILENAME="", CUSTOM_FASTAPI_PING_HANDLER="")
    assert httpx.get(f"{front.url}/ping", timeout=10).status_code == 200
    assert invoke(front.url).json()["object"] == "chat.completion"


# --- customer middleware -----------------------------------------------------------------------------------

MIDDLEWARE = """
from model_hosting_container_standards.common.fastapi.middleware import (
    custom_middleware, input_formatter, output_formatter
)

_input_formatter_called = False

@input_formatter
async def customer_input_formatter(request):
    global _input_formatter_called
    _input_formatter_called = True
    return request

@custom_middleware("throttle")
async def customer_throttle_middleware(request, call_next):
    response = await call_next(request)
    response.headers["X-Customer-Throttle"] = "applied"
    return response

@output_formatter
async def customer_output_formatter(response):
    response.headers["X-Customer-Processed"] = "true"
    if _input_formatter_called:
        response.headers["X-Input-Formatter-Called"] = "true"
    return response
"""


def test_customer_middleware_applies_to_every_route(start_front, tiny_adapters):
    """vLLM test_customer_middleware_with_vllm_server and test_middleware_with_ping_endpoint. The plain
    ``POST /invocations`` used to skip it (the fast path bypassed the app): now every route carries it."""
    front = start_front(MIDDLEWARE)
    assert load(front.url, "mw-adapter", tiny_adapters["clinical"]).status_code == 200
    try:
        responses = {
            "ping": httpx.get(f"{front.url}/ping", timeout=10),
            "plain invocation": invoke(front.url),
            "streamed invocation": httpx.post(f"{front.url}/invocations", json={**CHAT, "stream": True}, timeout=60),
            "adapter invocation": invoke(front.url, "mw-adapter"),
        }
    finally:
        httpx.delete(f"{front.url}/adapters/mw-adapter", timeout=30)
    for route, r in responses.items():
        assert r.status_code == 200, (route, r.text)
        assert r.headers.get("X-Customer-Throttle") == "applied", route
        assert r.headers.get("X-Customer-Processed") == "true", route
        assert r.headers.get("X-Input-Formatter-Called") == "true", route
    assert responses["streamed invocation"].text.rstrip().endswith("data: [DONE]")


def test_middleware_from_variables_applies(start_front):
    """vLLM test_middleware_env_var_override."""
    script = """
from fastapi import Request

_pre = False

async def env_throttle_middleware(request, call_next):
    response = await call_next(request)
    response.headers["X-Env-Throttle"] = "applied"
    return response

async def env_pre_process(request: Request) -> Request:
    global _pre
    _pre = True
    return request

async def env_post_process(response):
    response.headers["X-Env-Post-Process"] = "applied"
    if _pre:
        response.headers["X-Pre-Process-Called"] = "true"
    return response
"""
    front = start_front(
        script,
        CUSTOM_FASTAPI_MIDDLEWARE_THROTTLE="model.py:env_throttle_middleware",
        CUSTOM_PRE_PROCESS="model.py:env_pre_process",
        CUSTOM_POST_PROCESS="model.py:env_post_process",
    )
    for r in (httpx.get(f"{front.url}/ping", timeout=10), invoke(front.url)):
        assert r.headers.get("X-Env-Throttle") == "applied"
        assert r.headers.get("X-Env-Post-Process") == "applied"
        assert r.headers.get("X-Pre-Process-Called") == "true"
