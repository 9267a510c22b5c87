"""Promotion across accounts, declared in CloudFormation: the pinned adapter (config/models.lock.json) is served in
every environment from its own checked copy, after its base, with its lineage; without a pin the agent calls the base;
the registry of record forwards approvals to the tooling account, whose pipeline resolves the pin before Synth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stacks.constructs.adapter_component import RESOURCE_TYPE
from stacks.constructs.promotion import pin_reader_role_name
from stacks.settings import load_delivery, load_environment
from tests.infra.conftest import REGISTRY_BUCKET, REGISTRY_KEY, ROOT, pin_entry, synth, template

ENVS = ["dev", "staging", "prod"]
PIN = pin_entry(5)
SHA = PIN["sha256"]


def as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def components(t) -> dict[str, tuple[str, dict]]:
    """InferenceComponentName -> (logical id, resource)."""
    return {
        r["Properties"]["InferenceComponentName"]: (logical_id, r)
        for logical_id, r in t.find_resources("AWS::SageMaker::InferenceComponent").items()
    }


def agent_environment(stage) -> dict:
    (runtime,) = template(stage.agent).find_resources("AWS::BedrockAgentCore::Runtime").values()
    return runtime["Properties"]["EnvironmentVariables"]


def statements(t, role_prefix: str) -> list[dict]:
    return [
        st
        for p in t.find_resources("AWS::IAM::Policy").values()
        if any(r.get("Ref", "").startswith(role_prefix) for r in p["Properties"]["Roles"])
        for st in p["Properties"]["PolicyDocument"]["Statement"]
    ]


@pytest.fixture(scope="module")
def pinned(tmp_path_factory, pin_file):
    """dev, staging and prod synthesized with version 5 pinned."""
    return synth(str(tmp_path_factory.mktemp("pinned.out")), models_lock=str(pin_file(5)), delivery="false")


# --- the pinned adapter ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_each_environment_serves_the_pinned_adapter_after_its_base_from_its_own_copy(pinned, env):
    stage = pinned[env]
    t = template(stage.inference)
    found = components(t)
    assert set(found) == {"llama32-3b", "clinical-lora"}
    base_id, _ = found["llama32-3b"]
    adapter_id, adapter = found["clinical-lora"]
    spec = adapter["Properties"]["Specification"]
    assert spec["BaseInferenceComponentName"] == "llama32-3b"
    assert "ComputeResourceRequirements" not in spec and "RuntimeConfig" not in adapter["Properties"]
    (copy_id,) = t.find_resources(RESOURCE_TYPE)
    assert {base_id, copy_id} <= set(adapter["DependsOn"])  # after its base, and after its copy is checked
    # The environment's own artifacts bucket (its Data stack), under the content-addressed key: nothing of the
    # registry account's at run time.
    scheme, bucket, key = spec["Container"]["ArtifactUrl"]["Fn::Join"][1]
    assert (scheme, key) == ("s3://", f"/adapters/{SHA}.tar.gz")
    assert bucket["Fn::GetStackOutput"]["StackName"] == f"{stage.settings.stage_id}-Data"
    assert "Artifacts" in bucket["Fn::GetStackOutput"]["OutputName"]
    assert REGISTRY_BUCKET not in json.dumps(spec)


@pytest.mark.parametrize("env", ENVS)
def test_the_adapter_component_carries_its_lineage(pinned, env):
    _, adapter = components(template(pinned[env].inference))["clinical-lora"]
    tags = {t["Key"]: t["Value"] for t in adapter["Properties"]["Tags"]}
    assert {k: tags[k] for k in ("ModelPackageArn", "ModelPackageVersion", "PipelineExecutionArn", "MlflowRunId")} == {
        "ModelPackageArn": PIN["model_package"],
        "ModelPackageVersion": "5",
        "PipelineExecutionArn": PIN["pipeline_execution_arn"],
        "MlflowRunId": PIN["mlflow_run_id"],
    }


@pytest.mark.parametrize("env", ENVS)
def test_the_copy_is_made_from_the_pinned_archive_and_checked_against_its_hash(pinned, env):
    stage = pinned[env]
    t = template(stage.inference)
    (copy,) = t.find_resources(RESOURCE_TYPE).values()
    props = copy["Properties"]
    assert {k: props[k] for k in ("Adapter", "SourceBucket", "SourceKey", "Sha256", "TargetKey")} == {
        "Adapter": "clinical-lora",
        "SourceBucket": REGISTRY_BUCKET,
        "SourceKey": PIN["source_uri"].split("/", 3)[3],
        "Sha256": SHA,
        "TargetKey": f"adapters/{SHA}.tar.gz",
    }
    assert props["TargetBucket"]["Fn::GetStackOutput"]["StackName"] == f"{stage.settings.stage_id}-Data"
    assert props["ServiceToken"]["Fn::GetAtt"][0].startswith("AdapterCopiesFunction")


@pytest.mark.parametrize("env", ENVS)
def test_the_copy_may_read_exactly_the_pinned_object_and_key_and_write_exactly_the_copy(pinned, env):
    t = template(pinned[env].inference)
    granted = {st.get("Sid"): st for st in statements(t, "AdapterCopiesRole")}
    source = PIN["source_uri"].removeprefix("s3://")
    assert (granted["ReadPinnedArchives"]["Action"], granted["ReadPinnedArchives"]["Resource"]) == (
        "s3:GetObject",
        f"arn:aws:s3:::{source}",
    )
    decrypt = granted["DecryptPinnedArchives0"]
    assert (decrypt["Action"], decrypt["Resource"]) == ("kms:Decrypt", REGISTRY_KEY)
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
    write = granted["WritePinnedCopies"]
    assert sorted(as_list(write["Action"])) == ["s3:DeleteObjectVersion", "s3:PutObject"]
    assert write["Resource"]["Fn::Join"][1][-1] == f"/adapters/{SHA}.tar.gz"
    encrypt = granted["EncryptCopiesThroughS3"]
    assert sorted(encrypt["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert encrypt["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
    unscoped = [st for st in granted.values() if st["Resource"] == "*"]
    network = pinned[env].settings.network.enabled
    assert [st.get("Sid") for st in unscoped] == (["NetworkInterfacesInVpc"] if network else [])


@pytest.mark.parametrize("env", ENVS)
def test_the_copy_function_bundles_its_handler_and_runs_in_the_private_subnets_where_there_is_a_network(pinned, env):
    stage = pinned[env]
    (fn,) = template(stage.inference).find_resources("AWS::Lambda::Function").values()
    props = fn["Properties"]
    bundle = Path(stage.node.root.outdir) / f"asset.{props['Code']['S3Key'].removesuffix('.zip')}"
    assert (bundle / "handler.py").read_bytes() == (ROOT / "lambda" / "adapter_copy" / "handler.py").read_bytes()
    assert (bundle / "aws_lambda_powertools").is_dir()
    assert list(bundle.glob("pydantic_core/_pydantic_core.cpython-313-x86_64-linux-gnu.so"))
    assert props["Handler"] == "handler.handler" and props["Runtime"] == "python3.13"
    if stage.settings.network.enabled:
        assert len(props["VpcConfig"]["SubnetIds"]) == 2 and len(props["VpcConfig"]["SecurityGroupIds"]) == 1
    else:
        assert "VpcConfig" not in props


@pytest.mark.parametrize("env", ENVS)
def test_the_endpoint_reads_the_environments_copies_only(pinned, env):
    t = template(pinned[env].inference)
    reads = next(
        st["Resource"] for st in statements(t, "ExecutionRole") if st["Action"] == "s3:GetObject"
    )  # weights, then the copies
    assert reads[1]["Fn::Join"][1][-1] == "/adapters/*.tar.gz"
    assert REGISTRY_BUCKET not in json.dumps(reads)


def test_adapter_traffic_wakes_its_base_from_zero(pinned):
    """AWS does not document under which component name NoCapacityInvocationFailures counts a request for an adapter
    whose base has no copy: the base's scale-from-zero alarm watches both names."""
    t = template(pinned["dev"].inference)  # dev: min_copies 0
    steps = [k for k, p in t.find_resources("AWS::ApplicationAutoScaling::ScalingPolicy").items()
             if p["Properties"]["PolicyType"] == "StepScaling"]  # fmt: skip
    (alarm,) = [a["Properties"] for a in t.find_resources("AWS::CloudWatch::Alarm").values()
                if "NoCapacityInvocationFailures" in json.dumps(a)]  # fmt: skip
    (expression,) = [m for m in alarm["Metrics"] if "Expression" in m]
    metrics = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert expression["Expression"] == "MAX([FILL(m0, 0), FILL(m1, 0)])" and expression["ReturnData"] is True
    assert {m["Metric"]["MetricName"] for m in metrics.values()} == {"NoCapacityInvocationFailures"}
    assert {m["Metric"]["Dimensions"][0]["Value"] for m in metrics.values()} == {"llama32-3b", "clinical-lora"}
    assert alarm["AlarmActions"] == [{"Ref": steps[0]}] and alarm["Threshold"] == 1


# --- the component the agent calls ----------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_without_a_pin_no_adapter_is_declared_and_the_agent_calls_the_base(stages, env):
    assert load_environment(env).model_lock.adapters == []  # the committed lock pins nothing
    assert set(components(template(stages[env].inference))) == {"llama32-3b"}
    assert template(stages[env].inference).find_resources(RESOURCE_TYPE) == {}
    assert agent_environment(stages[env])["SAGEMAKER_INFERENCE_COMPONENT"] == "llama32-3b"


@pytest.mark.parametrize("env", ENVS)
def test_the_component_the_agent_calls_is_declared_in_its_environment(stages, pinned, env):
    for stage, expected in ((stages[env], "llama32-3b"), (pinned[env], "clinical-lora")):
        called = agent_environment(stage)["SAGEMAKER_INFERENCE_COMPONENT"]
        assert called == expected and called in components(template(stage.inference))
        outputs = template(stage.agent).to_json()["Outputs"]
        assert outputs["ModelComponent"]["Value"] == called  # what make ask and make status read


# --- promotion: the registry of record and the tooling account ---------------------------------------------------


def test_the_registry_forwards_approvals_of_its_group_to_exactly_the_tooling_bus(stages):
    tooling = load_delivery()
    t = template(stages["dev"].mlops)
    ((rule_id, rule),) = t.find_resources("AWS::Events::Rule").items()
    props = rule["Properties"]
    assert props["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {"ModelPackageGroupName": ["clinical-diagnosis-llama"], "ModelApprovalStatus": ["Approved"]},
    }
    bus = f"arn:aws:events:{tooling.region}:{tooling.account}:event-bus/{tooling.approval_bus_name}"
    (target,) = props["Targets"]
    assert target["Arn"] == bus
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    assert statements(t, role_id) == [{"Action": "events:PutEvents", "Effect": "Allow", "Resource": bus}]
    trust = t.find_resources("AWS::IAM::Role")[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [(s["Principal"], s["Condition"]) for s in trust] == [
        ({"Service": "events.amazonaws.com"}, {"StringEquals": {"aws:SourceAccount": "111111111111"}})
    ]


def test_the_pin_reader_is_trusted_by_the_tooling_account_and_reads_only_the_registry(stages):
    t = template(stages["dev"].mlops)
    (role_id,) = [k for k in t.find_resources("AWS::IAM::Role") if k.startswith("PinReaderRole")]
    role = t.find_resources("AWS::IAM::Role")[role_id]["Properties"]
    assert role["RoleName"] == pin_reader_role_name("clinical-diagnosis-llama")
    assert [s["Principal"] for s in role["AssumeRolePolicyDocument"]["Statement"]] == [
        {"AWS": f"arn:aws:iam::{load_delivery().account}:root"}
    ]
    granted = {(a, json.dumps(st["Resource"])) for st in statements(t, "PinReaderRole") for a in as_list(st["Action"])}
    assert {a for a, _ in granted} == {
        "sagemaker:DescribeModelPackage",
        "sagemaker:ListModelPackages",
        "s3:GetObject",
        "kms:Decrypt",
    }
    assert (
        "sagemaker:DescribeModelPackage",
        '"arn:aws:sagemaker:us-east-1:111111111111:model-package/clinical-diagnosis-llama/*"',
    ) in granted
    (objects,) = [r for a, r in granted if a == "s3:GetObject"]
    assert objects.endswith('"/pipeline/clinical-diagnosis-finetune/*/FineTune/*"]]}')


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_environments_that_do_not_train_forward_nothing_and_trust_no_one(stages, env):
    t = template(stages[env].mlops)
    t.resource_count_is("AWS::Events::Rule", 0)
    assert not [k for k in t.find_resources("AWS::IAM::Role") if k.startswith("PinReader")]


def test_the_tooling_bus_accepts_events_from_exactly_the_registry_account(delivery):
    t = template(delivery)
    ((bus_id, bus),) = t.find_resources("AWS::Events::EventBus").items()
    assert bus["Properties"]["Name"] == load_delivery().approval_bus_name
    ((_, policy),) = t.find_resources("AWS::Events::EventBusPolicy").items()
    statement = policy["Properties"]["Statement"]
    assert policy["Properties"]["EventBusName"] == {"Ref": bus_id}
    assert (statement["Effect"], statement["Action"], statement["Principal"]) == (
        "Allow",
        "events:PutEvents",
        {"AWS": "arn:aws:iam::111111111111:root"},  # dev's account: the registry of record
    )
    assert statement["Resource"] == {"Fn::GetAtt": [bus_id, "Arn"]}


def test_an_approval_on_the_tooling_bus_starts_the_pipeline(delivery, pipeline):
    t = template(delivery)
    ((_, rule),) = t.find_resources("AWS::Events::Rule").items()
    props = rule["Properties"]
    assert props["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "account": ["111111111111"],
        "detail": {"ModelPackageGroupName": ["clinical-diagnosis-llama"], "ModelApprovalStatus": ["Approved"]},
    }
    (target,) = props["Targets"]
    (pipeline_id,) = t.find_resources("AWS::CodePipeline::Pipeline")
    assert {"Ref": pipeline_id} in target["Arn"]["Fn::Join"][1]
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    assert statements(t, role_id) == [
        {
            "Action": "codepipeline:StartPipelineExecution",
            "Effect": "Allow",
            "Resource": target["Arn"],
        }
    ]


def test_the_pipeline_resolves_the_pin_before_synth_through_the_registry_reader(delivery, pipeline):
    build = {a["Name"]: a for a in next(s["Actions"] for s in pipeline["Stages"] if s["Name"] == "Build")}
    resolve, synth_action = build["ResolvePin"], build["Synth"]
    assert resolve["RunOrder"] < synth_action["RunOrder"]
    (resolved,) = resolve["OutputArtifacts"]
    assert resolved in synth_action["InputArtifacts"]  # Synth reads the resolved pin (install: linked in)
    t = template(delivery)
    projects = t.find_resources("AWS::CodeBuild::Project")
    (project_id,) = [k for k in projects if "ResolvePin" in k]
    spec = json.loads(projects[project_id]["Properties"]["Source"]["BuildSpec"])
    reader = f"arn:aws:iam::111111111111:role/{pin_reader_role_name('clinical-diagnosis-llama')}"
    commands = spec["phases"]["build"]["commands"]
    assert f"aws configure set profile.registry.role_arn {reader}" in commands
    assert commands[-1] == "AWS_PROFILE=registry python -m ops pin --env dev --output resolved-pin/models.lock.json"
    assert spec["artifacts"]["base-directory"] == "resolved-pin"
    role_id = projects[project_id]["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    assumes = [st for st in statements(t, role_id) if "sts:AssumeRole" in as_list(st["Action"])]
    assert [st["Resource"] for st in assumes] == [reader]  # the registry's reader role, nothing else


# --- in place, and audited -------------------------------------------------------------------------------------


def test_a_new_artifact_url_updates_the_component_in_place():
    """CloudFormation's resource schema (shipped with cfn-lint) lists no create-only property for an inference
    component, and its update handler calls UpdateInferenceComponent: a new pin is an update, not a replacement."""
    import cfnlint

    schemas = Path(cfnlint.__file__).parent / "data" / "schemas"
    digest = json.loads((schemas / "providers" / "us-east-1.json").read_text())["AWS::SageMaker::InferenceComponent"]
    schema = json.loads((schemas / "resources" / f"{digest}.json").read_text())
    assert "createOnlyProperties" not in schema
    assert "sagemaker:UpdateInferenceComponent" in schema["handlers"]["update"]["permissions"]
    assert schema["tagging"]["tagUpdatable"] is True  # the lineage tags follow the pin


def test_make_diff_shows_a_new_pin_as_an_in_place_modification_of_the_adapter(tmp_path, pin_file, monkeypatch, capfd):
    """`make diff ENV=prod PIN=...` (tools/audit_diff): reviewed with version 5 pinned, synthesized with version 6. The
    audit names the adapter component's new ArtifactUrl and lineage as a modification, and FAIL_ON=destructive (any
    replacement or deletion) passes."""
    from tools import audit_diff, baselines

    monkeypatch.chdir(ROOT)
    for module in (baselines, audit_diff):
        monkeypatch.setattr(module, "BASELINE_DIR", tmp_path / "baselines")
    synth(str(tmp_path / "v5"), environments="prod", models_lock=str(pin_file(5)))
    baselines.update(tmp_path / "v5")
    capfd.readouterr()
    rc = audit_diff.main(["--env", "prod", "--models-lock", str(pin_file(6)), "--fail-on", "destructive"])
    captured = capfd.readouterr()
    out = captured.out + captured.err
    assert rc == 0, out
    six = pin_entry(6)
    component = out[out.index("[~] AWS::SageMaker::InferenceComponent") :].split("\n[", 1)[0]
    assert "Adapterclinicallora" in component.splitlines()[0]
    assert f"/adapters/{SHA}.tar.gz" in component and f"/adapters/{six['sha256']}.tar.gz" in component
    assert six["model_package"] in component and six["pipeline_execution_arn"] in component
    assert "replace" not in component.lower()
    assert "[~] Custom::AdapterCopy" in out  # the new copy is made and checked first
