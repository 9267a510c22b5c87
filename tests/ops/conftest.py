"""The operations CLI against AWS offline: a moto server (started here, stopped by its PID) for the APIs moto
implements, botocore's Stubber (every call checked against the service model) for the rest.

``env`` gives a deployed-looking environment: the stage's stacks with their outputs in moto's CloudFormation and
its buckets in moto's S3; ``env.cloud(sagemaker=stub, ...)`` the ``Cloud`` the command gets; ``env.run(...)`` runs
the CLI; ``FakeClock`` replaces waiting (no test waits for real time).
"""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from local.aws import start_moto
from ops import cli, outputs
from ops.cloud import Cloud
from ops.outputs import Output, stack_name
from stacks.settings import EnvironmentSettings, load_environment

ACCOUNT = "111111111111"  # dev's account (config/dev.yaml): moto answers as this account
REGION = "us-east-1"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

GROUP = "clinical-diagnosis-llama"  # dev's model package group (config/dev.yaml)


def package_arn(version: int) -> str:
    return f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/{GROUP}/{version}"


def summary(version: int, status: str) -> dict:
    """One ListModelPackages entry: version ``version``, created an hour after the one before, ``status``."""
    return {
        "ModelPackageGroupName": GROUP,
        "ModelPackageVersion": version,
        "ModelPackageArn": package_arn(version),
        "CreationTime": T0 + timedelta(hours=version),
        "ModelPackageStatus": "Completed",
        "ModelApprovalStatus": status,
    }


RUNTIME_ID = "clinical_agent_dev-AbCdE12345"


PINNED = "clinical-lora"  # the deployed environments serve this pinned adapter (as the delivery pipeline deploys it)


def output_values(settings: EnvironmentSettings) -> dict[Output, str]:
    """What the deployed stacks' outputs hold (names from the settings where the stacks take them from there), as
    deployed with the adapter ``PINNED`` on its base."""
    s = settings
    values = {
        outputs.DATASETS_BUCKET: f"{s.name}-data-datasets0030ee04-abc",
        outputs.ARTIFACTS_BUCKET: f"{s.name}-data-artifacts82dd59a1-abc",
        outputs.REPORTS_BUCKET: f"{s.name}-data-reports65402a0a-abc",
        outputs.ENDPOINT_NAME: s.inference.endpoint_name,
        outputs.BASE_COMPONENTS: ",".join(m.name for m in s.inference.models),
        outputs.ADAPTER_COMPONENTS: ",".join([a.name for a in s.inference.adapters] + [PINNED]),
        outputs.MLFLOW_ARN: f"arn:aws:sagemaker:{s.region}:{s.account}:mlflow-app/app-ABC123",
        outputs.MODEL_PACKAGE_GROUP: s.registry.model_package_group,
        outputs.PIPELINE_NAME: s.training.pipeline_name if s.training else "",
        outputs.RUNTIME_ARN: f"arn:aws:bedrock-agentcore:{s.region}:{s.account}:runtime/{RUNTIME_ID}",
        outputs.RUNTIME_ENDPOINT_ARN: (
            f"arn:aws:bedrock-agentcore:{s.region}:{s.account}:runtime/{RUNTIME_ID}/runtime-endpoint/live"
        ),
        outputs.PATIENT_TABLE: f"{s.agent.patient_table}-{s.name}",
        outputs.AGENT_COMPONENT: PINNED,
    }
    return {o: v for o, v in values.items() if o in outputs.declared(s)}


def stack_description(settings: EnvironmentSettings, component: str) -> dict[str, Any]:
    """A DescribeStacks entry with the component's outputs (for a stubbed CloudFormation)."""
    name = stack_name(settings, component)
    return {
        "StackName": name,
        "StackId": f"arn:aws:cloudformation:{settings.region}:{settings.account}:stack/{name}/1",
        "CreationTime": T0,
        "StackStatus": "CREATE_COMPLETE",
        "Outputs": [
            {"OutputKey": o.key, "OutputValue": v}
            for o, v in output_values(settings).items()
            if o.component == component
        ],
    }


class FakeClock:
    """Waiting without waiting: ``sleep`` advances the time; ``interrupt_at`` makes the n-th sleep a Ctrl-C."""

    def __init__(self, interrupt_at: int | None = None):
        self.now, self.sleeps, self.interrupt_at = 0.0, 0, interrupt_at

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        if self.interrupt_at is not None and self.sleeps >= self.interrupt_at:
            raise KeyboardInterrupt
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


_SESSION: list[boto3.Session] = []


def session() -> boto3.Session:
    """One SDK session for the test run: it parses each service model once (the sessions' cost, not the tests')."""
    if not _SESSION:
        _SESSION.append(boto3.Session())
    return _SESSION[0]


def stubbed(service: str) -> tuple[Any, Stubber]:
    client = session().client(service, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    stub = Stubber(client)
    stub.activate()
    return client, stub


class Env:
    def __init__(self, name: str, url: str, monkeypatch: pytest.MonkeyPatch):
        self.settings = load_environment(name)
        self.url = url
        self.values = output_values(self.settings)
        self.monkeypatch = monkeypatch
        self.stubs: list[Stubber] = []

    def client(self, service: str) -> Any:
        """A client of moto (for arranging what a test needs)."""
        return session().client(
            service, region_name=self.settings.region, aws_access_key_id="testing", aws_secret_access_key="testing"
        )

    def deploy(self, components: tuple[str, ...] = ("Data", "Inference", "Mlops", "Agent")) -> None:
        """The stacks with their outputs (moto CloudFormation) and the buckets they name (moto S3)."""
        cfn, s3 = self.client("cloudformation"), self.client("s3")
        for c in components:
            template = {
                "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                "Outputs": {o.key: {"Value": v} for o, v in self.values.items() if o.component == c},
            }
            cfn.create_stack(StackName=stack_name(self.settings, c), TemplateBody=json.dumps(template))
        if "Data" in components:
            for o in (outputs.DATASETS_BUCKET, outputs.ARTIFACTS_BUCKET, outputs.REPORTS_BUCKET):
                s3.create_bucket(Bucket=self.values[o])

    def stub(self, service: str) -> tuple[Any, Stubber]:
        client, stub = stubbed(service)
        self.stubs.append(stub)
        return client, stub

    def cloud(self, clock: FakeClock | None = None, **clients: Any) -> Cloud:
        named = {k.replace("_", "-"): v for k, v in clients.items()}
        return Cloud(self.settings, session=session(), clients=named, clock=clock or FakeClock())

    def run(self, cloud: Cloud | None, *args: str, input: str | None = None) -> Any:
        """The CLI with ``cloud`` as the environment (None: the real connection by name)."""
        if cloud is not None:
            self.monkeypatch.setattr(cli, "connect", lambda env: cloud if env == cloud.env else pytest.fail(env))
        return CliRunner().invoke(cli.app, list(args), input=input)

    def verify(self) -> None:
        for stub in self.stubs:
            stub.assert_no_pending_responses()


@pytest.fixture(scope="session")
def moto_server():
    with start_moto(env={"MOTO_ACCOUNT_ID": ACCOUNT}) as server:
        yield server


@pytest.fixture
def aws(moto_server, monkeypatch, tmp_path) -> str:
    """Every SDK client goes to a freshly reset moto with dummy credentials; no profile, no config files."""
    urllib.request.urlopen(urllib.request.Request(moto_server.url + "/moto-api/reset", method="POST")).close()
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return moto_server.url


@pytest.fixture
def env(aws, monkeypatch) -> Env:
    """The dev environment, nothing deployed yet (``env.deploy()``)."""
    e = Env("dev", aws, monkeypatch)
    yield e
    e.verify()


@pytest.fixture
def fake_cdk(tmp_path, monkeypatch) -> Path:
    """A stand-in for the CDK CLI that records its arguments (one line each call); OPS_CDK_EXIT sets its exit."""
    log = tmp_path / "cdk-calls.txt"
    script = tmp_path / "cdk"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexit "${{OPS_CDK_EXIT:-0}}"\n')
    script.chmod(0o755)
    monkeypatch.setenv("OPS_CDK", str(script))
    return log


# --- responses of the services moto lacks (SageMaker endpoints and inference components) ---------------------


def endpoint_response(name: str, status: str = "InService", instances: int = 1) -> dict[str, Any]:
    return {
        "EndpointName": name,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name}",
        "EndpointStatus": status,
        "CreationTime": T0,
        "LastModifiedTime": T0,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "CurrentInstanceCount": instances,
                "DesiredInstanceCount": instances,
                "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 0, "MaxInstanceCount": 1},
            }
        ],
    }


def component_response(
    name: str,
    *,
    status: str = "InService",
    copies: int | None = 1,
    base: str | None = None,
    artifact: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if base:
        spec = {"BaseInferenceComponentName": base, "Container": {"ArtifactUrl": artifact or "s3://a/b.tar.gz"}}
    response = {
        "InferenceComponentName": name,
        "InferenceComponentArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:inference-component/{name}",
        "EndpointName": "clinical-llm",
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/clinical-llm",
        "CreationTime": T0,
        "LastModifiedTime": T0,
        "InferenceComponentStatus": status,
        "Specification": spec,
    }
    if copies is not None:
        response["RuntimeConfig"] = {"DesiredCopyCount": copies, "CurrentCopyCount": copies}
    return response


def agent_runtime_in_moto(env: Env) -> str:
    """The agent runtime and its ``live`` endpoint in moto; the Agent stack's outputs point at them."""
    control = env.client("bedrock-agentcore-control")
    runtime = control.create_agent_runtime(
        agentRuntimeName="clinical_agent_dev",
        agentRuntimeArtifact={
            "codeConfiguration": {
                "code": {"s3": {"bucket": "assets", "prefix": "agent.zip"}},
                "runtime": "PYTHON_3_12",
                "entryPoint": ["opentelemetry-instrument", "main.py"],
            }
        },
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/agent",
        networkConfiguration={"networkMode": "PUBLIC"},
    )
    runtime_id = runtime["agentRuntimeId"]
    control.create_agent_runtime_endpoint(agentRuntimeId=runtime_id, name="live")
    arn = f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:runtime/{runtime_id}"
    env.values[outputs.RUNTIME_ARN] = arn
    env.values[outputs.RUNTIME_ENDPOINT_ARN] = f"{arn}/runtime-endpoint/live"
    return arn
