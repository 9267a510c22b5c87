"""The adapter-copy handler's tests, run on the Python the function is deployed on: this file (collected by the
project's interpreter) runs tests/lambda in the Lambda runtime's Python, with exactly the dependency tree the
function's bundle ships (pip for that Python and linux/x86_64, cached by content) and the test tools beside it
(requirements-py-runtime.txt, the lock's versions). Every handler test must run there and pass."""

from __future__ import annotations

import ast
import os
import platform
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from stacks.constructs import pip_install, python_bundle
from stacks.constructs.adapter_component import FUNCTION_DIR

from .conftest import LAMBDA_PYTHON_VARIABLE, LAMBDA_PYTHON_VERSION

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def handler_tests() -> list[str]:
    tree = ast.parse((HERE / "test_adapter_copy.py").read_text())
    return sorted(f.name for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("test_"))


def test_the_handler_tests_pass_on_the_lambda_runtimes_python(tmp_path):
    assert platform.machine() == "x86_64", "the function's bundle is for linux/x86_64: run this on an x86_64 machine"
    python = pip_install.find_python(LAMBDA_PYTHON_VERSION, LAMBDA_PYTHON_VARIABLE)
    bundle = python_bundle.dependencies(FUNCTION_DIR, LAMBDA_PYTHON_VERSION)  # what the function ships
    tools = pip_install.ensure_dependencies(
        HERE / "requirements-py-runtime.txt",
        python_version=LAMBDA_PYTHON_VERSION,
        platforms=(python_bundle.PLATFORM,),
        cache=pip_install.cache_root("lambda-test-deps"),
        label="the Lambda function's tests",
    )
    report = tmp_path / "report.xml"
    cmd = [python, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider", "--confcutdir", str(HERE)]
    cmd += ["--junitxml", str(report)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(bundle), str(tools), str(ROOT)])}
    env.pop("PYTHONHOME", None)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
    assert proc.returncode == 0, tail
    cases = ET.parse(report).getroot().iter("testcase")
    ran = sorted(c.get("name", "") for c in cases if not list(c))  # no failure, error or skipped child
    assert ran == handler_tests(), tail  # collected only on the Lambda's Python (conftest.py): they ran there
