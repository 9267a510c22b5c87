"""One environment in AWS: its settings, an SDK session in its region, the caller's identity, its stacks' outputs."""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from ops.errors import OpsError
from ops.outputs import Output, stack_name
from ops.ui import Clock
from stacks.settings import EnvironmentSettings, TrainingSettings, load_environment

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, user_agent_extra="clinical-agent-ops")


class Cloud:
    """Clients are created on first use in the environment's region (tests hand in stubbed ones)."""

    def __init__(
        self,
        settings: EnvironmentSettings,
        *,
        session: Any = None,
        clients: dict[str, Any] | None = None,
        clock: Clock | None = None,
    ):
        self.settings = settings
        self._session = session
        self._clients: dict[str, Any] = dict(clients or {})
        self._stacks: dict[str, dict[str, Any] | None] = {}
        self._identity: dict[str, Any] | None = None
        self.clock = clock or Clock()

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def env(self) -> str:
        return self.settings.name

    def training(self) -> TrainingSettings:
        """The training settings; only the environment that trains has a pipeline, a registry and training data."""
        if self.settings.training is None:
            raise OpsError(
                f"{self.env} does not train (config/{self.env}.yaml has no training section): the pipeline, the model "
                "registry and the training data live in the environment that trains (dev by default)"
            )
        return self.settings.training

    def client(self, service: str) -> Any:
        if service not in self._clients:
            if self._session is None:
                import boto3

                self._session = boto3.Session()
            self._clients[service] = self._session.client(service, region_name=self.region, config=_CONFIG)
        return self._clients[service]

    def identity(self) -> dict[str, Any]:
        """The caller (STS GetCallerIdentity), checked to be in the environment's account."""
        if self._identity is None:
            me = self.client("sts").get_caller_identity()
            if me["Account"] != self.settings.account:
                raise OpsError(
                    f"your credentials are for account {me['Account']} ({me['Arn']}), but environment "
                    f"'{self.env}' is account {self.settings.account} (config/{self.env}.yaml, field account): "
                    "use credentials for that account"
                )
            self._identity = me
        return self._identity

    def stack(self, component: str) -> dict[str, Any] | None:
        """The deployed stack (DescribeStacks), or None when there is none."""
        name = stack_name(self.settings, component)
        if name not in self._stacks:
            try:
                self._stacks[name] = self.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
            except ClientError as e:
                if "does not exist" not in e.response.get("Error", {}).get("Message", ""):
                    raise
                self._stacks[name] = None
        return self._stacks[name]

    def output(self, output: Output) -> str:
        name = stack_name(self.settings, output.component)
        stack = self.stack(output.component)
        if stack is None:
            raise OpsError(
                f"stack {name} is not deployed in {self.region}: deploy it first (make deploy ENV={self.env})"
            )
        values = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        if output.key not in values:
            raise OpsError(
                f"stack {name} ({stack['StackStatus']}) has no output {output.key}: "
                f"deploy this version of the app (make deploy ENV={self.env})"
            )
        return values[output.key]


def connect(env: str) -> Cloud:
    """The environment by name (``config/<env>.yaml``); an unknown name fails listing the known ones."""
    return Cloud(load_environment(env))
