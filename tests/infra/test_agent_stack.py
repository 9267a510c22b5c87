"""AgentStack: the patient table, synthetic seeding (dev only), the AgentCore runtime, its least-privilege role,
and the direct-code package (agent/ + linux/arm64 dependencies, built by pip without Docker)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from aws_cdk import App, Environment, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match

from agent.settings import AgentRuntimeSettings
from stacks import compliance
from stacks.agent_stack import AgentStack
from stacks.constructs import agent_package as pkg
from stacks.constructs.mlflow import Mlflow
from stacks.inference_stack import InferenceStack
from stacks.network_stack import NetworkStack
from stacks.settings import ConfigError, load_environment
from tests.infra.conftest import CDK_CONTEXT, template

ENVS = ["dev", "staging", "prod"]


def resource(t, kind: str) -> dict:
    (found,) = t.find_resources(kind).values()
    return found


def role_statements(t) -> list[dict]:
    """The statements of the runtime's execution role (all policies attached to it)."""
    role = resource(t, "AWS::BedrockAgentCore::Runtime")["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    return [
        s
        for p in t.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def statements_with(statements, prefix: str) -> list[dict]:
    return [s for s in statements if any(a.startswith(prefix) for a in as_list(s["Action"]))]


def environment(t) -> dict:
    return resource(t, "AWS::BedrockAgentCore::Runtime")["Properties"]["EnvironmentVariables"]


def code_configuration(t) -> dict:
    return resource(t, "AWS::BedrockAgentCore::Runtime")["Properties"]["AgentRuntimeArtifact"]["CodeConfiguration"]


@pytest.fixture(scope="module")
def templates(stages):
    return {env: template(stages[env].agent) for env in ENVS}


# --- the role -----------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_model_invocation_is_limited_to_the_endpoint_and_the_agents_component(templates, stages, env):
    s = stages[env].settings
    (invoke,) = statements_with(role_statements(templates[env]), "sagemaker:Invoke")
    actions = sorted(as_list(invoke["Action"]))
    assert actions == ["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"]
    account, region = s.account, s.region
    assert sorted(as_list(invoke["Resource"])) == [
        f"arn:aws:sagemaker:{region}:{account}:endpoint/{s.inference.endpoint_name}",
        f"arn:aws:sagemaker:{region}:{account}:inference-component/{s.agent_component}",
    ]


@pytest.mark.parametrize("env", ENVS)
def test_reports_are_written_with_put_object_under_reports_prefix_only(templates, env):
    statements = role_statements(templates[env])
    (put,) = [s for s in statements_with(statements, "s3:") if "/reports/" in json.dumps(s["Resource"])]
    assert put["Action"] == "s3:PutObject"
    (bucket_arn, suffix) = put["Resource"]["Fn::Join"][1]
    assert suffix == "/reports/*"
    assert "Reports" in bucket_arn["Fn::GetStackOutput"]["OutputName"]
    # The other S3 grants: the L2's read of the code package in the CDK assets bucket, and the MLflow artifact prefix
    # (the MLflow client writes trace artifacts straight to S3).
    for other in statements_with(statements, "s3:"):
        if other is put:
            continue
        scope = json.dumps([other["Resource"], other.get("Condition")])
        if "cdk-hnb659fds-assets-" in scope:
            assert all(a.startswith(("s3:Get", "s3:List")) for a in as_list(other["Action"]))
        else:
            assert "Artifacts" in scope and '"/mlflow/*"' in scope or '"mlflow/*"' in scope, other


@pytest.mark.parametrize("env", ENVS)
def test_patient_table_is_read_with_get_item_and_query_only(templates, env):
    t = templates[env]
    (read,) = statements_with(role_statements(t), "dynamodb:")
    assert sorted(as_list(read["Action"])) == ["dynamodb:GetItem", "dynamodb:Query"]
    (table,) = t.find_resources("AWS::DynamoDB::Table")
    assert read["Resource"] == {"Fn::GetAtt": [table, "Arn"]}


@pytest.mark.parametrize("env", ENVS)
def test_the_environment_key_is_usable_only_through_dynamodb_and_s3(templates, env):
    uses = statements_with(role_statements(templates[env]), "kms:")
    assert len(uses) == 2  # the table and reports; the MLflow artifact prefix
    for use in uses:
        assert set(as_list(use["Action"])) <= {"kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"}
        assert "Key" in use["Resource"]["Fn::GetStackOutput"]["OutputName"]
        assert set(as_list(use["Condition"]["StringEquals"]["kms:ViaService"])) <= {
            "dynamodb.us-east-1.amazonaws.com",
            "s3.us-east-1.amazonaws.com",
        }


@pytest.mark.parametrize("env", ENVS)
def test_no_statement_grants_every_action_or_a_whole_service(templates, env):
    for s in role_statements(templates[env]):
        for action in as_list(s["Action"]):
            assert action != "*" and not action.endswith(":*"), s


@pytest.mark.parametrize("env", ENVS)
def test_unscoped_resources_only_where_iam_has_no_resource_level_permission(templates, env):
    for s in role_statements(templates[env]):
        if "*" in as_list(s["Resource"]):
            actions = as_list(s["Action"])
            assert all(a.startswith("xray:") for a in actions) or (
                actions == ["cloudwatch:PutMetricData"]
                and s["Condition"] == {"StringEquals": {"cloudwatch:namespace": "bedrock-agentcore"}}
            ), s


@pytest.mark.parametrize("env", ENVS)
def test_mlflow_grant_is_what_the_environments_mlflow_kind_authorizes(templates, stages, env):
    """An App (dev) authorizes sagemaker:CallMlflowAppApi on its ARN; a tracking server (staging, prod) the listed
    sagemaker-mlflow actions, never a wildcard; both on the environment's one MLflow."""
    from stacks.facts import MLFLOW_TRACKING_SERVER_ACTIONS

    statements = role_statements(templates[env])
    kind = stages[env].settings.mlflow.kind
    if kind == "serverless":
        (grant,) = [s for s in statements if "sagemaker:CallMlflowAppApi" in as_list(s["Action"])]
        assert as_list(grant["Action"]) == ["sagemaker:CallMlflowAppApi"] and not statements_with(
            statements, "sagemaker-mlflow:"
        )
        assert "MlflowApp" in json.dumps(grant["Resource"])
    else:
        (grant,) = statements_with(statements, "sagemaker-mlflow:")
        assert sorted(as_list(grant["Action"])) == sorted(MLFLOW_TRACKING_SERVER_ACTIONS)
        assert "MlflowTrackingServer" in json.dumps(grant["Resource"])
    assert len(as_list(grant["Resource"])) == 1 and grant["Resource"] != "*"


# --- the table and its seed ----------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_patient_table_is_encrypted_with_the_environment_key_and_has_point_in_time_recovery(templates, env):
    templates[env].has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": f"patients-{env}",
            "KeySchema": [{"AttributeName": "patient_id", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {
                "SSEEnabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": {"Fn::GetStackOutput": Match.object_like({"StackName": f"{env.capitalize()}-Data"})},
            },
        },
    )


@pytest.mark.parametrize(
    "env,policy,protected",
    [("dev", "Delete", False), ("staging", "RetainExceptOnCreate", True), ("prod", "RetainExceptOnCreate", True)],
)
def test_patient_table_is_retained_and_protected_outside_dev(templates, env, policy, protected):
    """Retained, except when the stack's first create rolls back: the named table must not block the retry."""
    templates[env].has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": policy,
            "UpdateReplacePolicy": "Delete" if policy == "Delete" else "Retain",
            "Properties": Match.object_like({"DeletionProtectionEnabled": protected}),
        },
    )


def test_dev_is_seeded_with_the_deterministic_synthetic_patients_and_the_seed_case_patient(templates, stages):
    from agent.patients import SEED_PATIENT, synthetic_patients

    settings = stages["dev"].settings
    seeds = templates["dev"].find_resources("Custom::AWS")
    expected = [*synthetic_patients(settings.agent.seed_patient_count), SEED_PATIENT]
    assert len(seeds) == len(expected) == settings.agent.seed_patient_count + 1
    calls = []
    for seed in seeds.values():
        parts = seed["Properties"]["Create"]["Fn::Join"][1]
        calls.append(json.loads("".join(p if isinstance(p, str) else "TABLE" for p in parts)))
    assert {c["service"] for c in calls} == {"DynamoDB"} and {c["action"] for c in calls} == {"putItem"}
    assert all(c["logApiResponseData"] is False for c in calls)
    items = sorted((c["parameters"]["Item"] for c in calls), key=lambda i: i["patient_id"]["S"])
    assert [i["patient_id"]["S"] for i in items] == [p["patient_id"] for p in expected]
    assert all(i["synthetic"] == {"BOOL": True} for i in items)
    assert items[0]["age"] == {"N": str(expected[0]["age"])}


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_protected_environments_are_not_seeded(templates, env):
    assert templates[env].find_resources("Custom::AWS") == {}
    assert templates[env].find_resources("AWS::Lambda::Function") == {}


def test_seeding_provider_may_only_put_items_into_the_table(templates):
    t = templates["dev"]
    (table,) = t.find_resources("AWS::DynamoDB::Table")
    (fn,) = t.find_resources("AWS::Lambda::Function").values()
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    (policy,) = [p for p in t.find_resources("AWS::IAM::Policy").values() if {"Ref": role} in p["Properties"]["Roles"]]
    actions = sorted(a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in as_list(s["Action"]))
    assert actions == [
        "dynamodb:PutItem",
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:Encrypt",
        "kms:GenerateDataKey",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    ]
    assert t.find_resources("AWS::IAM::Role", {"Properties": {"ManagedPolicyArns": Match.any_value()}}) == {}


def _standalone(env: str, *, app: App | None = None, network: bool = False, **overrides) -> AgentStack:
    """The AgentStack with what it uses (the endpoint, MLflow, optionally the network) and a stand-in data stack, in
    an app of its own: no stage, no other environment."""
    app = app or App(context=CDK_CONTEXT)
    if network:
        overrides |= {"network.enabled": True, "network.availability_zone_ids": ["use1-az1", "use1-az2"]}
    settings = load_environment(env, overrides=overrides)
    where = Environment(account=settings.account, region=settings.region)
    data = Stack(app, "Data", env=where)
    key, artifacts = kms.Key(data, "Key"), s3.Bucket(data, "Artifacts")
    net = NetworkStack(app, "Network", settings=settings, key=key, env=where) if network else None
    inference = InferenceStack(
        app, "Inference", settings=settings, key=key, artifacts_bucket=artifacts, network=net, env=where
    )
    mlflow = Mlflow(data, "Mlflow", kind="serverless", name="m", bucket=artifacts, prefix="mlflow", key=key)
    return AgentStack(
        app,
        "Agent",
        settings=settings,
        key=key,
        reports_bucket=s3.Bucket(data, "Reports"),
        inference=inference,
        mlflow=mlflow,
        network=net,
        env=where,
    )


def test_seeding_runs_inside_the_vpc_when_the_environment_has_one():
    agent = _standalone("dev", network=True)
    t = template(agent)
    (fn,) = t.find_resources("AWS::Lambda::Function").values()
    network = agent.node.root.node.find_child("Network")
    isolated = [network.get_logical_id(s.node.default_child) for s in network.vpc.isolated_subnets]
    imported = [json.dumps(s) for s in fn["Properties"]["VpcConfig"]["SubnetIds"]]  # the VPC's subnets, by reference
    assert len(imported) == len(isolated) > 0
    assert all(sum(f"Ref{lid}" in i for i in imported) == 1 for lid in isolated), (isolated, imported)
    assert resource(t, "AWS::BedrockAgentCore::Runtime")["Properties"]["NetworkConfiguration"]["NetworkMode"] == "VPC"


def _agent_findings(outdir: Path, extra: iam.PolicyStatement | None = None) -> set[str]:
    """The compliance packs' findings on the AgentStack (the stand-in data stack's own findings ignored)."""
    app = App(context=CDK_CONTEXT, outdir=str(outdir))
    compliance.register(app)
    compliance.acknowledge(app, *compliance.STAGE_WIDE)
    agent = _standalone("dev", app=app)
    if extra is not None:
        agent.runtime.add_to_role_policy(extra)
    try:
        app.synth()
    except RuntimeError:
        pass
    report = json.loads((outdir / "validation-report.json").read_text())
    return {
        f"{v['ruleName']} {c['constructPath']}"
        for p in report["pluginReports"]
        for v in p["violations"]
        for c in v["violatingConstructs"]
        if c["constructPath"].startswith("Agent/")
    }


def test_acknowledgments_cover_exactly_the_runtime_roles_wildcards(tmp_path):
    assert _agent_findings(tmp_path / "clean") == set()
    extra = iam.PolicyStatement(actions=["s3:GetObject"], resources=["arn:aws:s3:::elsewhere/*"])
    assert _agent_findings(tmp_path / "extra", extra) == {
        "AwsSolutions-IAM5[Resource::arn:aws:s3:::elsewhere/*] Agent/Runtime/ExecutionRole/DefaultPolicy/Resource"
    }


def test_a_runtime_name_over_agentcores_limit_is_refused_naming_the_field():
    """Refused with the settings, before any stack exists (runtime name + '_' + environment: 46 + 1 + 3 > 48)."""
    with pytest.raises(ConfigError, match=r"environment 'dev':\n  agent\.runtime_name: .*48 characters"):
        load_environment("dev", overrides={"agent.runtime_name": "a" * 46})


# --- the runtime ---------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_runtime_name_has_no_hyphens_and_callers_authenticate_with_iam(templates, env):
    props = resource(templates[env], "AWS::BedrockAgentCore::Runtime")["Properties"]
    assert props["AgentRuntimeName"] == f"clinical_agent_{env}"
    assert re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_]{0,47}", props["AgentRuntimeName"])
    assert "AuthorizerConfiguration" not in props  # no JWT/OAuth authorizer: AgentCore's default, SigV4 (IAM)
    assert props["ProtocolConfiguration"] == "HTTP"


@pytest.mark.parametrize("env", ENVS)
def test_runtime_environment_names_endpoint_component_bucket_table_and_mlflow(templates, stages, env):
    s = stages[env].settings
    env_vars = environment(templates[env])
    assert env_vars["SAGEMAKER_ENDPOINT_NAME"] == s.inference.endpoint_name
    assert env_vars["SAGEMAKER_INFERENCE_COMPONENT"] == s.agent_component
    assert env_vars["AWS_REGION"] == s.region
    assert env_vars["RECORD_PROMPTS"] == "false"
    assert env_vars["MODEL_MAX_TOKENS"] == str(s.agent.max_tokens)
    assert env_vars["MLFLOW_EXPERIMENT_NAME"] == s.mlflow.experiment
    (table,) = templates[env].find_resources("AWS::DynamoDB::Table")
    assert env_vars["PATIENT_TABLE"] == {"Ref": table}
    assert "Reports" in env_vars["REPORTS_BUCKET"]["Fn::GetStackOutput"]["OutputName"]
    assert "Key" in env_vars["REPORTS_KMS_KEY_ID"]["Fn::GetStackOutput"]["OutputName"]
    assert env_vars["MLFLOW_TRACKING_URI"] == stages[env].agent.resolve(stages[env].mlops.mlflow.tracking_uri)


@pytest.mark.parametrize("env", ENVS)
def test_runtime_environment_is_exactly_what_the_agent_reads_and_holds_no_secret(templates, env, monkeypatch):
    from stacks.agent_stack import observability_environment

    env_vars = environment(templates[env])
    read = {f.upper() for f in AgentRuntimeSettings.model_fields} | {"AWS_REGION"}
    adot = set(observability_environment(record_prompts=False))  # read by ADOT's opentelemetry-instrument
    assert set(env_vars) - adot <= read, set(env_vars) - adot - read
    assert {k: env_vars[k] for k in adot} == observability_environment(record_prompts=False)
    assert not [k for k in env_vars if re.search(r"(^|_)(SECRET|PASSWORD|TOKEN|CREDENTIALS?|ACCESS_KEY)(_|$)", k)]
    # With deploy-time values stood in, the agent's own settings loader accepts the environment.
    stand_ins = {"MLFLOW_TRACKING_URI": "arn:aws:sagemaker:us-east-1:111111111111:mlflow-app/app-resolvedatdeploy"}
    for k, v in env_vars.items():
        monkeypatch.setenv(k, v if isinstance(v, str) else stand_ins.get(k, "resolved-at-deploy"))
    from agent.settings import load_settings

    loaded = load_settings()
    assert loaded.patient_table == "resolved-at-deploy" and loaded.record_prompts is False


def test_runtime_is_public_in_dev_and_in_the_private_subnets_with_the_agent_group_in_staging_and_prod(templates):
    assert resource(templates["dev"], "AWS::BedrockAgentCore::Runtime")["Properties"]["NetworkConfiguration"] == {
        "NetworkMode": "PUBLIC"
    }
    for env in ("staging", "prod"):
        net = resource(templates[env], "AWS::BedrockAgentCore::Runtime")["Properties"]["NetworkConfiguration"]
        assert net["NetworkMode"] == "VPC"
        (sg,) = net["NetworkModeConfig"]["SecurityGroups"]
        assert "AgentSg" in sg["Fn::GetStackOutput"]["OutputName"]
        subnets = [s["Fn::GetStackOutput"]["OutputName"] for s in net["NetworkModeConfig"]["Subnets"]]
        assert len(subnets) == 2 and all("privateSubnet" in s for s in subnets)


@pytest.mark.parametrize("env", ENVS)
def test_runtime_endpoint_follows_the_deployed_runtime_version(templates, env):
    t = templates[env]
    (runtime,) = t.find_resources("AWS::BedrockAgentCore::Runtime")
    t.has_resource_properties(
        "AWS::BedrockAgentCore::RuntimeEndpoint",
        {
            "Name": "live",
            "AgentRuntimeId": {"Fn::GetAtt": [runtime, "AgentRuntimeId"]},
            "AgentRuntimeVersion": {"Fn::GetAtt": [runtime, "AgentRuntimeVersion"]},
        },
    )


@pytest.mark.parametrize("env", ENVS)
def test_runtime_logs_are_encrypted_and_expire_and_traces_go_to_xray(templates, stages, env):
    t = templates[env]
    (runtime,) = t.find_resources("AWS::BedrockAgentCore::Runtime")
    for endpoint in ("DEFAULT", "live"):
        t.has_resource_properties(
            "AWS::Logs::LogGroup",
            {
                "LogGroupName": {
                    "Fn::Join": [
                        "",
                        [
                            "/aws/bedrock-agentcore/runtimes/",
                            {"Fn::GetAtt": [runtime, "AgentRuntimeId"]},
                            f"-{endpoint}",
                        ],
                    ]
                },
                "KmsKeyId": Match.object_like({"Fn::GetStackOutput": Match.any_value()}),
                "RetentionInDays": stages[env].settings.log_retention_days,
            },
        )
    t.has_resource_properties("AWS::Logs::DeliveryDestination", {"DeliveryDestinationType": "XRAY"})


@pytest.mark.parametrize("env", ENVS)
def test_runtime_runs_the_code_package_on_python_313(templates, env):
    code = code_configuration(templates[env])
    assert code["Runtime"] == "PYTHON_3_13"
    assert code["EntryPoint"] == pkg.entrypoint(pkg.AGENT_DIR / "requirements.txt")
    assert re.fullmatch(r"[0-9a-f]{64}\.zip", code["Code"]["S3"]["Prefix"])


def test_the_staged_package_holds_the_agent_main_py_and_arm64_dependencies(templates, assembly_dir):
    """The asset is the cached zip, staged as one file and uploaded as it is (``<hash>.zip``)."""
    prefix = code_configuration(templates["prod"])["Code"]["S3"]["Prefix"]
    with zipfile.ZipFile(assembly_dir / f"asset.{prefix}") as staged:
        names = set(staged.namelist())
        assert staged.read("main.py").decode() == pkg.MAIN_PY
        assert staged.getinfo("main.py").external_attr >> 16 == 0o100755  # opentelemetry-instrument runs it
        assert staged.read("agent/app.py") == (pkg.AGENT_DIR / "app.py").read_bytes()
    assert "agent/__pycache__/app.cpython-313.pyc" in names  # bytecode ships (issue 20)
    assert "bedrock_agentcore/__init__.pyc" in names and "strands/__init__.pyc" in names
    native = [n for n in names if n.startswith("pydantic_core/_pydantic_core") and n.endswith(".so")]
    assert native and all("aarch64" in n for n in native)


# --- the package builder -------------------------------------------------------------------------


def _fake_pip(calls: list):
    """Stands in for pip: records the command and installs one fake distribution into --target."""

    def run(cmd, **_):
        calls.append(cmd)
        target = Path(cmd[cmd.index("--target") + 1])
        (target / "fakedep").mkdir(parents=True)
        (target / "fakedep" / "__init__.py").write_text("")
        (target / "fakedep-1.0.dist-info").mkdir()
        (target / "bin").mkdir()
        (target / "bin" / "tool").write_text(f"#!{sys.executable}\nprint('x')\n")
        return SimpleNamespace(returncode=0, stdout="", stderr="")

    return run


@pytest.fixture
def source(tmp_path) -> SimpleNamespace:
    code = tmp_path / "agent"
    (code / "__pycache__").mkdir(parents=True)
    (code / "__init__.py").write_text("")
    (code / "app.py").write_text("def main(argv):\n    print(' '.join(argv))\n")
    (code / "__pycache__" / "app.cpython-313.pyc").write_bytes(b"stale")
    req = code / "requirements.txt"
    req.write_text("fakedep==1.0\n")
    return SimpleNamespace(code=code, requirements=req, cache=tmp_path / "cache")


def test_dependencies_are_installed_once_for_linux_arm64_then_reused_offline(source):
    calls: list = []
    first = pkg.ensure_dependencies(source.requirements, constraints=None, cache=source.cache, run=_fake_pip(calls))
    (cmd,) = calls
    assert "--platform=manylinux2014_aarch64" in cmd and "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.13"
    assert (first / "bin" / "tool").read_text().startswith("#!/usr/bin/env python3\n")

    def no_network(*_a, **_k):
        raise AssertionError("pip must not run when the cache has the tree")

    assert pkg.ensure_dependencies(source.requirements, constraints=None, cache=source.cache, run=no_network) == first


def test_pip_failure_names_the_file_the_platform_and_the_cache_and_leaves_nothing_behind(source):
    def offline(cmd, **_):
        Path(cmd[cmd.index("--target") + 1]).mkdir(parents=True)
        return SimpleNamespace(returncode=1, stdout="", stderr="ERROR: Could not find a version that satisfies fakedep")

    with pytest.raises(pkg.PackagingError) as e:
        pkg.ensure_dependencies(source.requirements, constraints=None, cache=source.cache, run=offline)
    message = str(e.value)
    assert "requirements.txt" in message and "linux/arm64" in message and "PyPI" in message
    assert str(source.cache) in message and "Could not find a version" in message
    assert list(source.cache.iterdir()) == []


def test_bytecode_needs_the_runtimes_python_and_the_error_says_what_to_install(source, tmp_path, monkeypatch):
    """Compiled by any other interpreter, the bytecode would not load on the runtime: refused, naming the version,
    the interpreter that answered and how to provide the right one."""
    monkeypatch.setenv(pkg.PYTHON_VARIABLE, sys.executable)  # the project's venv: Python 3.11
    with pytest.raises(pkg.PackagingError) as e:
        pkg.compile_bytecode(source.code)
    message = str(e.value)
    assert f"Python {pkg.PYTHON_VERSION}" in message and f"{sys.executable}: Python 3.11" in message
    assert f"set {pkg.PYTHON_VARIABLE} to its path" in message and f"python{pkg.PYTHON_VERSION} is on PATH" in message
    assert list((source.code / "__pycache__").iterdir()) == [source.code / "__pycache__" / "app.cpython-313.pyc"]
    monkeypatch.setenv(pkg.PYTHON_VARIABLE, str(tmp_path / "no-such-python"))
    with pytest.raises(pkg.PackagingError, match="no-such-python: .*No such file"):
        pkg.compile_bytecode(source.code)


def test_missing_pip_fails_clearly(source):
    def no_pip(cmd, **_):
        raise FileNotFoundError(cmd[0])

    with pytest.raises(pkg.PackagingError, match="cannot run pip .*PyPI"):
        pkg.ensure_dependencies(source.requirements, constraints=None, cache=source.cache, run=no_pip)


def test_missing_requirements_file_is_named(tmp_path):
    with pytest.raises(pkg.PackagingError, match=r"requirements\.txt not found"):
        pkg.dependencies_hash(tmp_path / "requirements.txt")


def test_package_hash_follows_code_and_shipped_distributions_not_caches(source):
    deps = pkg.ensure_dependencies(source.requirements, constraints=None, cache=source.cache, run=_fake_pip([]))
    before = pkg.package_hash(source.code, deps)
    (source.code / "__pycache__" / "other.pyc").write_bytes(b"x")
    (source.code / ".mypy_cache").mkdir()
    (source.code / ".mypy_cache" / "cache.json").write_text("{}")
    assert pkg.package_hash(source.code, deps) == before
    (source.code / "app.py").write_text("def main(argv):\n    pass\n")
    changed = pkg.package_hash(source.code, deps)
    assert changed != before
    (deps / "fakedep-1.0.dist-info").rename(deps / "fakedep-1.1.dist-info")
    assert pkg.package_hash(source.code, deps) != changed


def test_package_layout_starts_the_agent_app_on_all_interfaces_port_8080(source, tmp_path):
    deps = pkg.ensure_dependencies(source.requirements, constraints=None, cache=source.cache, run=_fake_pip([]))
    out = tmp_path / "out"
    pkg.build_package(source.code, deps, out)
    assert (out / "fakedep" / "__init__.pyc").is_file() and (out / "agent" / "app.py").is_file()  # deps: bytecode
    assert not (out / "fakedep" / "__init__.py").exists()
    assert (out / "agent" / "__pycache__" / "app.cpython-313.pyc").read_bytes() != b"stale"  # compiled anew
    # The zip root is the working directory: `python main.py` imports the agent package and calls its main.
    proc = subprocess.run([pkg.runtime_python(), "main.py"], cwd=out, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "--host 0.0.0.0 --port 8080"


def test_a_package_over_agentcores_size_limit_fails_its_build_with_the_size(source, tmp_path, monkeypatch):
    deps = pkg.ensure_dependencies(source.requirements, constraints=None, cache=source.cache, run=_fake_pip([]))
    monkeypatch.setattr(pkg, "MAX_UNPACKED_BYTES", 10)
    with pytest.raises(pkg.PackagingError, match=r"MB unpacked, over AgentCore's 0 MB limit"):
        pkg.ensure_package(source.code, deps)
    assert not list(deps.parent.glob("package-*"))  # nothing cached: the next synth checks again


def test_the_package_zip_is_deterministic_and_keeps_executables_executable(source, tmp_path):
    deps = pkg.ensure_dependencies(source.requirements, constraints=None, cache=source.cache, run=_fake_pip([]))
    zips = []
    for name in ("one", "two"):
        pkg.build_package(source.code, deps, tmp_path / name / "package-x")
        zips.append(pkg.ensure_archive(tmp_path / name / "package-x"))
    assert zips[0].read_bytes() == zips[1].read_bytes()
    with zipfile.ZipFile(zips[0]) as archive:
        archive.extractall(tmp_path / "unzipped")
        modes = {i.filename: i.external_attr >> 16 for i in archive.infolist()}
    assert modes["main.py"] == 0o100755 and modes["agent/app.py"] == 0o100644
    proc = subprocess.run([sys.executable, "main.py"], cwd=tmp_path / "unzipped", capture_output=True, text=True)
    assert proc.stdout.strip() == "--host 0.0.0.0 --port 8080", proc.stderr


def test_generated_entrypoint_passes_flags_the_real_agent_app_accepts(monkeypatch, capsys):
    from agent import app

    argv = ast.literal_eval(re.search(r"main\((\[.*\])\)", pkg.MAIN_PY).group(1))
    monkeypatch.delenv("SAGEMAKER_ENDPOINT_NAME", raising=False)  # so main stops before serving
    with pytest.raises(SystemExit) as e:
        app.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid agent environment" in err and "unrecognized arguments" not in err


def test_entrypoint_runs_under_adot_only_when_the_agent_ships_it(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("strands-agents[otel]==1.62.0\n")
    assert pkg.entrypoint(req) == ["main.py"]
    req.write_text("strands-agents==1.62.0\naws-opentelemetry-distro==0.21.0  # ADOT\n")
    assert pkg.entrypoint(req) == ["opentelemetry-instrument", "main.py"]
