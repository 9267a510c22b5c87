"""MLOpsStack: MLflow per setting; where the environment trains, the registry with its readers and model card, the
pipeline definition and role (promotion: tests/infra/test_promotion.py)."""

from __future__ import annotations

import fnmatch
import gzip
import io
import json
import re
import tarfile

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Match

from stacks import compliance
from stacks.constructs.source_archive import archive_bytes
from stacks.constructs.training_image import TrainingImage
from stacks.constructs.training_pipeline import substitute
from stacks.settings import ConfigError, load_environment
from tests.infra.conftest import make_app, synth, template

READERS = ["222222222222", "333333333333"]  # config/dev.yaml registry.reader_accounts


def resources(stage, type_: str) -> dict:
    return template(stage.mlops).find_resources(type_)


def only(stage, type_: str) -> dict:
    found = resources(stage, type_)
    assert len(found) == 1, f"expected one {type_}, found {len(found)}"
    return next(iter(found.values()))["Properties"]


def statements(stage, policy_type: str = "AWS::IAM::Policy", logical_prefix: str = "") -> list[dict]:
    out = []
    for logical_id, r in resources(stage, policy_type).items():
        if logical_id.startswith(logical_prefix):
            out += r["Properties"]["PolicyDocument"]["Statement"]
    return out


def as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def principals(statement: dict) -> list[str]:
    return sorted(re.search(r"::(\d{12}):root", p).group(1) for p in as_list(statement["Principal"]["AWS"]))


# --- MLflow ---------------------------------------------------------------------------------


def test_mlflow_is_the_serverless_app_under_its_own_prefix_by_default(stages):
    t = template(stages["dev"].mlops)
    t.resource_count_is("AWS::SageMaker::MlflowTrackingServer", 0)
    t.has_resource_properties(
        "AWS::SageMaker::MlflowApp",
        {
            "Name": "clinical-agent",
            "ArtifactStoreUri": {"Fn::Join": ["", ["s3://", Match.any_value(), "/mlflow"]]},
            "ModelRegistrationMode": "AutoModelRegistrationDisabled",
        },
    )
    # The MLflow role may touch only objects under that prefix.
    mlflow_objects = [
        s for s in statements(stages["dev"], logical_prefix="MlflowRole") if "s3:PutObject" in as_list(s["Action"])
    ]
    assert [json.dumps(s["Resource"]).endswith('/mlflow/*"]]}') for s in mlflow_objects] == [True]


@pytest.fixture(scope="module")
def tracking_server_stage(tmp_path_factory):
    """dev with its network on (so a tracking server), and no reader accounts."""
    return synth(
        str(tmp_path_factory.mktemp("cdk.out")),
        environments="dev",
        **{
            "dev.mlflow.kind": "tracking_server",
            "dev.mlflow.tracking_server_size": "Medium",
            "dev.network.enabled": "true",
            "dev.network.availability_zone_ids": '["use1-az1", "use1-az2"]',
            "dev.registry.reader_accounts": "[]",
        },
    )["dev"]


def test_tracking_server_setting_replaces_the_app_and_feeds_the_pipeline(tracking_server_stage):
    t = template(tracking_server_stage.mlops)
    t.resource_count_is("AWS::SageMaker::MlflowApp", 0)
    server = t.find_resources(
        "AWS::SageMaker::MlflowTrackingServer",
        {
            "Properties": {
                "TrackingServerName": "clinical-agent",
                "TrackingServerSize": "Medium",
                "AutomaticModelRegistration": False,
            }
        },
    )
    assert len(server) == 1
    definition = only(tracking_server_stage, "AWS::SageMaker::Pipeline")["PipelineDefinition"]
    variables = definition["PipelineDefinitionBody"]["Fn::Sub"][1]
    assert variables["MlflowArn"] == {"Fn::GetAtt": [next(iter(server)), "TrackingServerArn"]}


def test_unknown_mlflow_kind_is_rejected_naming_the_field():
    with pytest.raises(ConfigError, match=r"mlflow\.kind"):
        load_environment("dev", overrides={"mlflow.kind": "managed"})


# --- registry -------------------------------------------------------------------------------


def test_model_package_group_policy_grants_exactly_the_reader_accounts(stages):
    group = only(stages["dev"], "AWS::SageMaker::ModelPackageGroup")
    assert group["ModelPackageGroupName"] == "clinical-diagnosis-llama"
    policy = group["ModelPackageGroupPolicy"]["Statement"]
    assert [principals(s) for s in policy] == [READERS, READERS]
    actions = sorted(a for s in policy for a in as_list(s["Action"]))
    assert actions == [
        "sagemaker:CreateModel",
        "sagemaker:DescribeModelPackage",
        "sagemaker:DescribeModelPackageGroup",
        "sagemaker:ListModelPackages",
    ]
    assert {s["Resource"].split(":", 5)[5] for s in policy} == {
        "model-package-group/clinical-diagnosis-llama",
        "model-package/clinical-diagnosis-llama/*",
    }


def test_reader_accounts_may_read_only_adapter_archives_and_decrypt_only_through_s3(stages):
    data = template(stages["dev"].data)
    bucket_grants = [
        s
        for r in data.find_resources("AWS::S3::BucketPolicy").values()
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "RegistryReadersGetAdapters"
    ]
    assert len(bucket_grants) == 1 and principals(bucket_grants[0]) == READERS
    assert bucket_grants[0]["Action"] == "s3:GetObject"
    assert bucket_grants[0]["Resource"]["Fn::Join"][1][-1] == "/pipeline/clinical-diagnosis-finetune/*/FineTune/*"
    key = next(iter(data.find_resources("AWS::KMS::Key").values()))["Properties"]["KeyPolicy"]["Statement"]
    decrypt = [s for s in key if s.get("Sid") == "RegistryReadersDecryptAdaptersThroughS3"]
    assert len(decrypt) == 1 and principals(decrypt[0]) == READERS
    assert decrypt[0]["Action"] == ["kms:Decrypt", "kms:DescribeKey"]
    assert decrypt[0]["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}


def test_without_reader_accounts_nothing_is_shared(tracking_server_stage):
    stage = tracking_server_stage
    assert "ModelPackageGroupPolicy" not in only(stage, "AWS::SageMaker::ModelPackageGroup")
    assert "RegistryReaders" not in json.dumps(template(stage.data).to_json())


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_environments_that_do_not_train_have_mlflow_and_no_registry_pipeline_or_sharing(stages, env):
    """Only the environment that trains has a registry (the registry of record) and a pipeline; the others serve
    copies of what it approved."""
    assert not stages[env].settings.trains
    t = template(stages[env].mlops)
    for kind in ("ModelPackageGroup", "ModelCard", "Pipeline"):
        t.resource_count_is(f"AWS::SageMaker::{kind}", 0)
    t.resource_count_is("AWS::SageMaker::MlflowTrackingServer", 1)  # the agent's traces
    assert {o for o in t.to_json()["Outputs"] if not o.startswith("PublishOutput")} == {"MlflowArn"}
    assert "RegistryReaders" not in json.dumps(template(stages[env].data).to_json())
    images = [c for c in stages[env].node.find_all() if isinstance(c, TrainingImage)]
    assert images == [] and [c for c in stages["dev"].node.find_all() if isinstance(c, TrainingImage)]


def test_model_card_states_clinician_support_risk_and_limits_and_is_encrypted(stages):
    card = only(stages["dev"], "AWS::SageMaker::ModelCard")
    assert card["ModelCardStatus"] == "Draft"
    assert card["ModelCardName"] == "clinical-diagnosis-assistant"
    assert "KmsKeyId" in card["SecurityConfig"]
    content = card["Content"]
    uses = content["IntendedUses"]
    assert "clinicians" in uses["PurposeOfModel"] and "Not for autonomous diagnosis" in uses["IntendedUses"]
    assert uses["RiskRating"] == "High" and uses["ExplanationsForRiskRating"]
    assert "Llama-3.2-3B-Instruct" in content["ModelOverview"]["ModelDescription"]
    assert "synthetic" in content["TrainingDetails"]["TrainingObservations"]
    job = content["TrainingDetails"]["TrainingJobDetails"]
    hyper = {h["Name"]: h["Value"] for h in job["UserProvidedHyperParameters"]}
    assert hyper == {"lora_rank": "16", "lora_alpha": "32", "epochs": "1", "learning_rate": "0.0002"}
    gate = content["EvaluationDetails"][0]["MetricGroups"][0]["MetricData"][0]
    assert gate == {"Name": "accuracy_threshold", "Type": "number", "Value": 0.6}
    assert content["AdditionalInformation"]["CaveatsAndRecommendations"]


# --- pipeline -------------------------------------------------------------------------------


def pipeline_body(stage) -> tuple[dict, dict]:
    """The definition with each ${Var} replaced by a marker naming it, and the Fn::Sub variables."""
    body, variables = only(stage, "AWS::SageMaker::Pipeline")["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{(\w+)\}", body))
    assert names == set(variables), "every ${Var} has a value and every value is used"
    return json.loads(re.sub(r"\$\{(\w+)\}", r"<\1>", body)), variables


def test_pipeline_definition_is_one_fn_sub_of_this_environments_resources(stages):
    definition, variables = pipeline_body(stages["dev"])
    assert variables["ExecutionRoleArn"]["Fn::GetAtt"][1] == "Arn"
    assert variables["SourceKey"].endswith(".gz")  # the training code asset
    assert definition["MlflowConfig"] == {
        "MlflowResourceArn": "<MlflowArn>",
        "MlflowExperimentName": "clinical-diagnosis",
    }
    steps = {s["Name"]: s for s in definition["Steps"]}
    preprocess = steps["Preprocess"]["Arguments"]
    assert preprocess["RoleArn"] == "<ExecutionRoleArn>"
    assert preprocess["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == "<KeyArn>"
    code = next(i for i in preprocess["ProcessingInputs"] if i["InputName"] == "code")
    assert code["S3Input"]["S3Uri"] == "s3://<SourceBucket>/<SourceKey>"
    train = steps["FineTune"]["Arguments"]
    output = train["OutputDataConfig"]["S3OutputPath"]["Std:Join"]["Values"][0]
    assert output == "s3://<ArtifactsBucket>/pipeline/clinical-diagnosis-finetune"
    assert train["CheckpointConfig"]["S3Uri"] == "s3://<ArtifactsBucket>/checkpoints/clinical-diagnosis-finetune"
    assert "VpcConfig" not in train  # dev has no network


def test_pipeline_jobs_run_in_private_subnets_with_encrypted_inter_container_traffic_when_network_is_on(
    tracking_server_stage,
):
    definition, variables = pipeline_body(tracking_server_stage)
    train = next(s for s in definition["Steps"] if s["Name"] == "FineTune")["Arguments"]
    subnets = [k for k in variables if k.startswith("Subnet")]
    assert len(subnets) == 2
    assert train["VpcConfig"] == {
        "Subnets": [f"<{s}>" for s in sorted(subnets)],
        "SecurityGroupIds": ["<SecurityGroup0>"],
    }
    assert train["EnableInterContainerTrafficEncryption"] is True


def test_pipeline_role_passes_only_itself_and_only_to_sagemaker(stages):
    passes = [
        s for s in statements(stages["dev"], logical_prefix="PipelineExecutionRole") if s["Action"] == "iam:PassRole"
    ]
    assert len(passes) == 1
    assert passes[0]["Resource"]["Fn::GetAtt"][0].startswith("PipelineExecutionRole")
    assert passes[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_pipeline_role_writes_only_under_its_output_checkpoint_and_mlflow_artifact_prefixes(stages):
    writes = [
        s
        for s in statements(stages["dev"], logical_prefix="PipelineExecutionRole")
        if "s3:PutObject" in as_list(s["Action"])
    ]
    suffixes = sorted(r["Fn::Join"][1][-1] for s in writes for r in as_list(s["Resource"]))
    assert suffixes == [
        "/checkpoints/clinical-diagnosis-finetune/*",
        "/mlflow/*",
        "/pipeline/clinical-diagnosis-finetune/*",
    ]
    registry = [
        s
        for s in statements(stages["dev"], logical_prefix="PipelineExecutionRole")
        if "sagemaker:CreateModelPackage" in as_list(s["Action"])
    ]
    assert {r.split(":", 5)[5] for s in registry for r in as_list(s["Resource"])} == {
        "model-package-group/clinical-diagnosis-llama",
        "model-package/clinical-diagnosis-llama/*",
    }


def test_substitute_escapes_literal_dollar_braces_and_rejects_lost_placeholders():
    ph = {"Bucket": ("cdkph-bucket", "token")}
    body = substitute('{"a": "s3://cdkph-bucket/x", "b": "${HOME}"}', ph)
    assert body == '{"a": "s3://${Bucket}/x", "b": "${!HOME}"}'
    with pytest.raises(RuntimeError, match="placeholder"):
        substitute('{"a": "s3://CDKPH-bucket/x", "b": "cdkph-buck"}', ph)


def test_source_archive_is_byte_identical_whatever_the_file_times_and_leaves_out_bytecode(tmp_path):
    src = tmp_path / "training"
    (src / "__pycache__").mkdir(parents=True)
    (src / "train.py").write_text("print('train')\n")
    (src / "b.txt").write_text("b\n")
    (src / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (src / "stale.pyc").write_bytes(b"\0")
    first = archive_bytes(src)
    for p in src.rglob("*"):
        p.touch()
    (src / "train.py").chmod(0o700)  # modes are normalized: only the executable bit counts
    second = archive_bytes(src)
    assert first != second  # the executable bit changed
    (src / "train.py").chmod(0o600)
    assert archive_bytes(src) == first
    assert gzip.decompress(first)  # a plain gzip of a tar
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["b.txt", "train.py"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}


def test_the_training_base_image_must_be_a_pinned_ecr_uri():
    with pytest.raises(ConfigError, match=r"training\.base_image"):
        load_environment("dev", overrides={"training.base_image": "pytorch-training:latest"})


def test_every_step_runs_the_training_image_built_from_containers_training(stages, assembly_dir):
    """One image asset, built FROM the configured DLC, pulled by the pipeline role; no job installs packages."""
    definition, variables = pipeline_body(stages["dev"])
    assert "container-assets" in json.dumps(variables["Image"])
    steps = {s["Name"]: s for s in definition["Steps"]}
    assert steps["FineTune"]["Arguments"]["AlgorithmSpecification"]["TrainingImage"] == "<Image>"
    for name in ("Preprocess", "Evaluate"):
        app = steps[name]["Arguments"]["AppSpecification"]
        assert app["ImageUri"] == "<Image>" and "pip install" not in " ".join(app["ContainerEntrypoint"])
    manifest = json.loads(next(assembly_dir.glob("assembly-Dev/DevMlops*.assets.json")).read_text())
    (image,) = manifest["dockerImages"].values()
    assert image["source"]["dockerBuildArgs"] == {"BASE_IMAGE": stages["dev"].settings.training.base_image}
    staged = assembly_dir / "assembly-Dev" / image["source"]["directory"]
    assert (staged / "Dockerfile").is_file() and "sagemaker-mlflow" in (staged / "requirements.txt").read_text()
    role = statements(stages["dev"], logical_prefix="PipelineExecutionRole")
    (pull,) = [s for s in role if "ecr:BatchGetImage" in as_list(s["Action"])]
    assert "container-assets" in json.dumps(pull["Resource"])  # the asset repository only


def test_training_and_evaluation_jobs_on_local_nvme_instances_have_no_volume_key(stages):
    """ml.g5 has local NVMe storage: CreateTrainingJob / CreateProcessingJob refuse VolumeKmsKeyId there."""
    definition, _ = pipeline_body(stages["dev"])
    steps = {s["Name"]: s for s in definition["Steps"]}
    assert "VolumeKmsKeyId" not in steps["FineTune"]["Arguments"]["ResourceConfig"]
    assert "VolumeKmsKeyId" not in steps["Evaluate"]["Arguments"]["ProcessingResources"]["ClusterConfig"]
    assert steps["Preprocess"]["Arguments"]["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == "<KeyArn>"


def test_the_registered_package_card_is_the_full_card_cut_to_the_package_schema(stages):
    import jsonschema

    from stacks.constructs.model_registry import MODEL_PACKAGE_CARD_SCHEMA

    definition, _ = pipeline_body(stages["dev"])
    register = next(b for s in definition["Steps"] if s["Type"] == "Condition" for b in s["Arguments"]["IfSteps"])
    card = json.loads(register["Arguments"]["ModelCard"]["ModelCardContent"])
    jsonschema.validate(card, MODEL_PACKAGE_CARD_SCHEMA)
    assert card["model_overview"] == {"model_creator": "Clinical agent ML platform team"}
    full = only(stages["dev"], "AWS::SageMaker::ModelCard")["Content"]
    assert "ModelDescription" in full["ModelOverview"]  # the full card keeps what the package card cannot hold


# --- compliance helper ----------------------------------------------------------------------


def _wildcard_app(*patterns: str) -> App:
    app = make_app()
    compliance.register(app)
    stack = Stack(app, "S", env={"account": "111111111111", "region": "us-east-1"})
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=["arn:aws:s3:::b/prefix/*"]))
    compliance.acknowledge(stack, *compliance.STAGE_WIDE)
    compliance.acknowledge_wildcards(role, "test", *patterns)
    return app


def test_acknowledge_wildcards_covers_only_the_expected_wildcards():
    _wildcard_app("Resource::arn:aws:s3:::b/prefix/[*]").synth()
    with pytest.raises(Exception, match="AwsSolutions-IAM5"):
        _wildcard_app("Resource::arn:aws:s3:::b/other/[*]").synth()


def test_processing_steps_unpack_the_code_archive_by_the_name_it_is_uploaded_under(stages):
    """CDK uploads a file asset as <hash><last extension>: the training code lands as <hash>.gz, not .tar.gz."""
    definition, variables = pipeline_body(stages["dev"])
    for step in (s for s in definition["Steps"] if s["Type"] == "Processing"):
        script = step["Arguments"]["AppSpecification"]["ContainerEntrypoint"][2]
        pattern = re.search(r"tar -xzf \S+/(\S+) ", script).group(1)
        assert fnmatch.fnmatch(variables["SourceKey"], pattern), (step["Name"], pattern, variables["SourceKey"])
