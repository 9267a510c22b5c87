"""The AgentCore package as built for the runtime (linux/arm64) and for this machine (same code path):
bytecode for every module, deterministic, only what runs, within AgentCore's size limit."""

from __future__ import annotations

import filecmp
import json
import subprocess
from pathlib import Path

import pytest

from stacks.constructs import agent_package as pkg

# Left out of the package; each must stay out (see EXCLUDED in stacks/constructs/agent_package.py).
MUST_BE_ABSENT = [
    "boto3-stubs",
    "botocore-stubs",
    "grpc",
    "databricks/sdk",
    "google/auth",
    "pyasn1",
    "pyasn1_modules",
    "mlflow/server",
    "mlflow/store/db_migrations",
    "botocore/data/ec2",
    "botocore/data/bedrock-runtime",
    "cryptography",
    "cffi",
    "pycparser",
]
MUST_BE_PRESENT = ["agent/app.py", "main.py", "bin/opentelemetry-instrument", "botocore/data/sagemaker-runtime"]


@pytest.fixture(scope="module")
def arm64_package() -> Path:
    deps = pkg.ensure_dependencies(pkg.AGENT_DIR / "requirements.txt")
    return pkg.ensure_package(pkg.AGENT_DIR, deps)


def test_package_ships_no_stubs_tests_or_unreached_code(arm64_package):
    for path in MUST_BE_ABSENT:
        assert not (arm64_package / path).exists(), f"{path} is back in the package"
    assert not list(arm64_package.glob("**/*.pyi")) and not list(arm64_package.glob("*/tests/*.py"))
    for path in MUST_BE_PRESENT:
        assert (arm64_package / path).exists(), path
    assert all("aarch64" in p.name for p in arm64_package.glob("pydantic_core/*.so"))


def test_every_module_has_unchecked_hash_bytecode_for_python_313(arm64_package):
    """The agent's code: sources with bytecode in __pycache__; the dependencies: bytecode only, where the
    source was (Python imports it without a source); the entry point stays a script. All of it compiled by
    the runtime's Python (3.13)."""
    agent = arm64_package / "agent"
    shared = [arm64_package / name for name in pkg.SHARED_FILES]  # the prompt-format module, shipped as ours
    sources = [*agent.rglob("*.py"), *shared]
    assert sources and sorted(p for p in arm64_package.rglob("*.py") if not p.is_relative_to(agent)) == sorted(
        [arm64_package / "main.py", *shared]
    )
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        assert pyc.is_file(), f"no bytecode for {source.relative_to(arm64_package)}"
    sourceless = list(arm64_package.rglob("*.pyc"))
    assert len(sourceless) > 1000 and not (arm64_package / "main.pyc").exists()
    magic = runtime("import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())").strip()
    for pyc in [agent / "__pycache__" / "app.cpython-313.pyc", arm64_package / "strands" / "agent" / "agent.pyc"]:
        header = pyc.read_bytes()[:8]
        assert header[:4].hex() == magic and int.from_bytes(header[4:8], "little") == 0b01  # unchecked


def runtime(code: str) -> str:
    """What ``code`` prints when the runtime's interpreter (Python 3.13) runs it."""
    proc = subprocess.run([pkg.runtime_python(), "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_two_builds_are_byte_identical(arm64_package, tmp_path):
    deps = pkg.ensure_dependencies(pkg.AGENT_DIR / "requirements.txt")
    again = tmp_path / "again"
    pkg.build_package(pkg.AGENT_DIR, deps, again)
    comparison = filecmp.dircmp(arm64_package, again)
    files = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(arm64_package) for p in arm64_package.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(arm64_package, again, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == [], comparison.report


def test_package_is_within_agentcore_limits(arm64_package):
    size = pkg.package_size(arm64_package)
    assert size <= pkg.MAX_UNPACKED_BYTES  # 750 MB unzipped (AgentCore); the 60 MB target is bench/agent.py's


def test_exporters_pure_python_parts_are_shipped_and_load(arm64_package):
    """The modules the two exporters need are in the arm64 package with loadable bytecode, and the entry
    points that wire them (ADOT's distro and configurator, the MLflow plugin's ARN handlers) are declared."""
    modules = [
        "amazon/opentelemetry/distro/aws_opentelemetry_configurator",
        "amazon/opentelemetry/distro/aws_opentelemetry_distro",
        "opentelemetry/exporter/otlp/proto/http/trace_exporter/__init__",
        "opentelemetry/instrumentation/auto_instrumentation/sitecustomize",
        "sagemaker_mlflow/auth_provider",
        "sagemaker_mlflow/mlflow_sagemaker_store",
        "mlflow/tracing/export/mlflow_v3",
        "mlflow/strands/autolog",
        "agent/telemetry",
    ]
    pycs = []
    for module in modules:
        if module.startswith("agent/"):
            pyc = arm64_package / "agent" / "__pycache__" / f"{Path(module).name}.cpython-313.pyc"
        else:
            pyc = arm64_package / f"{module}.pyc"
        assert pyc.is_file(), module
        pycs.append(str(pyc))
    loaded = runtime(  # the runtime's interpreter unmarshals each module's code object
        f"import json, marshal; print(json.dumps([marshal.loads(open(p, 'rb').read()[16:]).co_filename "
        f"for p in {pycs!r}]))"
    )
    for module, filename in zip(modules, json.loads(loaded), strict=True):
        assert filename.endswith(f"{module}.py"), (module, filename)
    entry_points = "\n".join(p.read_text() for p in arm64_package.glob("*.dist-info/entry_points.txt"))
    assert "aws_distro = amazon.opentelemetry.distro.aws_opentelemetry_distro" in entry_points
    assert "aws_configurator = amazon.opentelemetry.distro.aws_opentelemetry_configurator" in entry_points
    assert "arn = sagemaker_mlflow.auth_provider:AuthProvider" in entry_points
    assert "arn = sagemaker_mlflow.mlflow_sagemaker_store:MlflowSageMakerStore" in entry_points
