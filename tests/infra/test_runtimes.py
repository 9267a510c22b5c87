"""The runtimes AWS runs the code on and the interpreters the tests run it with are the same Python: the agent's
AgentCore runtime and the package's tests (the bytecode compiler, the emulated runtime's virtualenv), the
adapter-copy Lambda and its handler's tests (tests/lambda/conftest.py)."""

from __future__ import annotations

import importlib
import subprocess

from local import agentcore
from stacks.constructs import adapter_component, pip_install
from stacks.constructs import agent_package as pkg


def version_of(python: object) -> str:
    proc = subprocess.run(
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_deployed_runtimes_and_the_test_interpreters_agree():
    lambda_tests = importlib.import_module("tests.lambda.conftest")
    assert adapter_component.RUNTIME.name == f"python{lambda_tests.LAMBDA_PYTHON_VERSION}"
    assert version_of(
        pip_install.find_python(lambda_tests.LAMBDA_PYTHON_VERSION, lambda_tests.LAMBDA_PYTHON_VARIABLE)
    ) == (lambda_tests.LAMBDA_PYTHON_VERSION)
    assert pkg.RUNTIME.to_string() == f"PYTHON_{pkg.PYTHON_VERSION.replace('.', '_')}"
    assert version_of(pkg.runtime_python()) == pkg.PYTHON_VERSION  # compiles the bytecode
    assert version_of(agentcore.runtime_python()) == pkg.PYTHON_VERSION  # runs the package in the tests
