"""The pipeline definition: deterministic, offline, the right graph, and valid API requests."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile

import botocore.session
import pytest
from botocore.validate import ParamValidator

from tests.training.conftest import ROOT, TRAINING, env
from training import pipeline
from training.pipeline import build_definition

INPUTS = dict(
    pipeline_name="clinical-finetune",
    role_arn="arn:aws:iam::111111111111:role/pipeline",
    source_uri="s3://code-bucket/assets/abc123.tar.gz",
    region="us-east-1",
    dataset_uri="s3://data-bucket/clinical/raw/",
    output_uri="s3://artifacts-bucket/pipeline/clinical-finetune",
    checkpoint_uri="s3://artifacts-bucket/checkpoints/clinical-finetune",
    model_package_group="clinical-diagnosis-llama",
    mlflow_arn="arn:aws:sagemaker:us-east-1:111111111111:mlflow-app/app-abc",
    mlflow_experiment="clinical-diagnosis",
    image="111111111111.dkr.ecr.us-east-1.amazonaws.com/cdk-hnb659fds-container-assets:abc",
    base_model_id="meta-llama/Llama-3.2-3B-Instruct",
    preprocess_instance_type="ml.m5.xlarge",
    training_instance_type="ml.g5.2xlarge",
    training_instance_count=2,
    evaluate_instance_type="ml.g5.xlarge",
    use_spot=True,
    max_runtime_seconds=7200,
    lora_rank=16,
    lora_alpha=32,
    epochs=3,
    learning_rate=2e-4,
    accuracy_threshold=0.6,
)
BUCKETS = {"code-bucket", "data-bucket", "artifacts-bucket"}
API = {"Processing": "CreateProcessingJob", "Training": "CreateTrainingJob", "RegisterModel": "CreateModelPackage"}
NAMED_BY_PIPELINES = {
    "Processing": {"ProcessingJobName": "job"},
    "Training": {"TrainingJobName": "job"},
    "RegisterModel": {},
}
EXPRESSIONS = {"Get", "Std:Join", "Std:JsonGet"}


KMS = "arn:aws:kms:us-east-1:111111111111:key/k"
# Everything the default build leaves out, in one build: on-demand, VPC + key (with a local-NVMe training and
# evaluation instance), base model in S3, the caller's model card, no MLflow.
VARIANT = {
    **INPUTS,
    "use_spot": False,
    "kms_key_arn": KMS,
    "instance_storage": ["ml.g5.2xlarge", "ml.g5.xlarge"],
    "subnets": ["subnet-a", "subnet-b"],
    "security_group_ids": ["sg-1"],
    "base_model_id": "s3://artifacts-bucket/models/llama/",
    "model_card_content": '{"model_overview": {"model_creator": "x"}}',
    "mlflow_arn": None,
}


@pytest.fixture(scope="module")
def definition() -> dict:
    return json.loads(build_definition(**INPUTS))


@pytest.fixture(scope="module")
def variant_text() -> str:
    return build_definition(**VARIANT)


@pytest.fixture(scope="module")
def variant(variant_text) -> dict:
    return json.loads(variant_text)


def steps(d: dict) -> dict[str, dict]:
    """Every step by name, those inside the condition's branches included."""
    found = {}
    for s in d["Steps"]:
        found[s["Name"]] = s
        if s["Type"] == "Condition":
            for branch in ("IfSteps", "ElseSteps"):
                found.update({b["Name"]: b for b in s["Arguments"][branch]})
    return found


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def parameter_defaults(d: dict) -> dict:
    return {f"Parameters.{p['Name']}": p["DefaultValue"] for p in d["Parameters"]}


def with_placeholders(value, shape):
    """``value`` with every pipeline expression (and CloudFormation token, resolved at deploy time)
    replaced by a placeholder of the type its shape wants."""
    expression = isinstance(value, dict) and len(value) == 1 and next(iter(value)) in EXPRESSIONS
    if expression or (isinstance(value, str) and "${Token[" in value):
        low = max(1, shape.metadata.get("min", 1))
        return {"string": "x" * low, "integer": low, "long": low, "float": 1.0, "double": 1.0, "boolean": True}[
            shape.type_name
        ]
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: with_placeholders(v, shape.members[k]) if k in shape.members else v for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [with_placeholders(v, shape.member) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: with_placeholders(v, shape.value) for k, v in value.items()}
    return value


def resolve(value, defaults: dict):
    """A value as the first execution would see it, parameters at their defaults (for flags)."""
    if isinstance(value, dict) and "Get" in value:
        return defaults[value["Get"]]
    if isinstance(value, dict) and "Std:Join" in value:
        return value["Std:Join"]["On"].join(str(resolve(v, defaults)) for v in value["Std:Join"]["Values"])
    return value


def load_program(name: str, monkeypatch):
    """A training program as the container runs it: its folder first on sys.path (flat sibling imports)."""
    monkeypatch.syspath_prepend(str(TRAINING))
    spec = importlib.util.spec_from_file_location(f"_training_program_{name}", TRAINING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_steps_form_preprocess_finetune_evaluate_gate_register_or_fail(definition):
    s = steps(definition)
    assert [x["Name"] for x in definition["Steps"]] == ["Preprocess", "FineTune", "Evaluate", "QualityGate"]
    assert {n: x["Type"] for n, x in s.items()} == {
        "Preprocess": "Processing",
        "FineTune": "Training",
        "Evaluate": "Processing",
        "QualityGate": "Condition",
        "Register": "RegisterModel",
        "AccuracyBelowThreshold": "Fail",
    }
    train_in = s["FineTune"]["Arguments"]["InputDataConfig"]
    assert train_in[0]["DataSource"]["S3DataSource"]["S3Uri"] == {
        "Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"
    }
    eval_in = {i["InputName"]: i["S3Input"]["S3Uri"] for i in s["Evaluate"]["Arguments"]["ProcessingInputs"]}
    assert eval_in["model"] == {"Get": "Steps.FineTune.ModelArtifacts.S3ModelArtifacts"}
    assert eval_in["test"] == {"Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"}
    gate = s["QualityGate"]["Arguments"]
    assert [b["Name"] for b in gate["IfSteps"]] == ["Register"]
    assert [b["Name"] for b in gate["ElseSteps"]] == ["AccuracyBelowThreshold"]


def test_the_gate_compares_the_evaluated_accuracy_with_the_threshold_parameter(definition):
    s = steps(definition)
    (condition,) = s["QualityGate"]["Arguments"]["Conditions"]
    assert condition["Type"] == "GreaterThanOrEqualTo"
    assert condition["LeftValue"] == {
        "Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
            "Path": pipeline.ACCURACY_PATH,
        }
    }
    assert condition["RightValue"] == {"Get": "Parameters.AccuracyThreshold"}
    assert s["Evaluate"]["PropertyFiles"] == [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    ]
    assert parameter_defaults(definition)["Parameters.AccuracyThreshold"] == 0.6


def test_register_creates_a_pending_package_with_metrics_and_model_card(definition, variant):
    args = steps(definition)["Register"]["Arguments"]
    assert args["ModelPackageGroupName"] == "clinical-diagnosis-llama"
    assert args["ModelApprovalStatus"] == "PendingManualApproval"
    (container,) = args["InferenceSpecification"]["Containers"]
    assert container["ModelDataUrl"] == {"Get": "Steps.FineTune.ModelArtifacts.S3ModelArtifacts"}
    stats = args["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert stats["ContentType"] == "application/json"
    assert stats["S3Uri"]["Std:Join"]["Values"] == [
        {"Get": "Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"},
        "evaluation.json",
    ]
    card = json.loads(args["ModelCard"]["ModelCardContent"])
    assert card["intended_uses"]["risk_rating"] == "High"
    assert json.loads(steps(variant)["Register"]["Arguments"]["ModelCard"]["ModelCardContent"]) == {
        "model_overview": {"model_creator": "x"}
    }


def test_the_default_package_card_follows_the_model_package_card_schema(definition):
    import jsonschema

    from stacks.constructs.model_registry import MODEL_PACKAGE_CARD_SCHEMA

    card = json.loads(steps(definition)["Register"]["Arguments"]["ModelCard"]["ModelCardContent"])
    jsonschema.validate(card, MODEL_PACKAGE_CARD_SCHEMA)
    assert set(card["model_overview"]) <= {"model_creator", "model_artifact"}


def test_the_package_records_the_pipeline_execution_and_the_mlflow_run(definition, variant):
    """Lineage: the execution ARN (metadata and a customer property) and the MLflow run id that evaluate.py reports
    (the training run), read from the Evaluate step's report."""
    args = steps(definition)["Register"]["Arguments"]
    execution = {"Get": "Execution.PipelineExecutionArn"}
    assert args["MetadataProperties"] == {"GeneratedBy": execution}
    assert args["CustomerMetadataProperties"][pipeline.LINEAGE_EXECUTION] == execution
    assert args["CustomerMetadataProperties"][pipeline.LINEAGE_MLFLOW_RUN] == {
        "Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
            "Path": "mlflow_run_id",
        }
    }
    # Without MLflow there is no run to record (an empty property would be refused).
    assert pipeline.LINEAGE_MLFLOW_RUN not in steps(variant)["Register"]["Arguments"]["CustomerMetadataProperties"]


def test_the_run_id_path_is_what_evaluate_py_writes(monkeypatch):
    evaluate = load_program("evaluate", monkeypatch)
    source = (TRAINING / "evaluate.py").read_text()
    assert f'"{pipeline.RUN_ID_PATH}":' in source and evaluate.EVALUATION_FILE == pipeline.EVALUATION_FILE


def test_jobs_on_local_nvme_instances_get_no_volume_key(variant):
    """SageMaker refuses VolumeKmsKeyId on instance types with local storage (g5 here); preprocess on m5 keeps it."""
    s = steps(variant)
    assert "VolumeKmsKeyId" not in s["FineTune"]["Arguments"]["ResourceConfig"]
    assert "VolumeKmsKeyId" not in s["Evaluate"]["Arguments"]["ProcessingResources"]["ClusterConfig"]
    assert s["Preprocess"]["Arguments"]["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == KMS
    assert s["FineTune"]["Arguments"]["OutputDataConfig"]["KmsKeyId"] == KMS  # outputs stay encrypted


def test_every_step_runs_the_one_training_image_and_installs_nothing(definition):
    s = steps(definition)
    assert s["FineTune"]["Arguments"]["AlgorithmSpecification"]["TrainingImage"] == INPUTS["image"]
    for name in ("Preprocess", "Evaluate"):
        app = s[name]["Arguments"]["AppSpecification"]
        assert app["ImageUri"] == INPUTS["image"]
        assert "pip install" not in " ".join(app["ContainerEntrypoint"])
    assert not (TRAINING / "requirements.txt").exists()  # the training toolkit would pip-install it at job start


def test_unresolved_tokens_are_refused_naming_the_input():
    with pytest.raises(ValueError, match="role_arn: .* unresolved token"):
        build_definition(**{**INPUTS, "role_arn": "${Token[TOKEN.1]}"})


def test_parameters_caching_retries_checkpoints_and_mlflow(definition):
    assert parameter_defaults(definition) == {
        "Parameters.BaseModelId": "meta-llama/Llama-3.2-3B-Instruct",
        "Parameters.DatasetUri": INPUTS["dataset_uri"],
        "Parameters.InvalidRecords": "error",
        "Parameters.LoraRank": 16,
        "Parameters.LoraAlpha": 32,
        "Parameters.Epochs": 3,
        "Parameters.LearningRate": 2e-4,
        "Parameters.TrainingInstanceCount": 2,
        "Parameters.AccuracyThreshold": 0.6,
    }
    s = steps(definition)
    for name in ("Preprocess", "FineTune", "Evaluate"):
        assert s[name]["CacheConfig"]["Enabled"] is True
        retried = {e for policy in s[name]["RetryPolicies"] for e in policy["ExceptionType"]}
        assert {"SageMaker.CAPACITY_ERROR", "Step.THROTTLING"} <= retried
    train = s["FineTune"]["Arguments"]
    assert train["CheckpointConfig"] == {"S3Uri": INPUTS["checkpoint_uri"], "LocalPath": "/opt/ml/checkpoints"}
    assert train["EnableManagedSpotTraining"] is True
    assert train["StoppingCondition"]["MaxWaitTimeInSeconds"] >= train["StoppingCondition"]["MaxRuntimeInSeconds"]
    assert train["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.TrainingInstanceCount"}
    assert train["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    assert train["Environment"]["MLFLOW_TRACKING_URI"] == INPUTS["mlflow_arn"]
    assert definition["MlflowConfig"] == {
        "MlflowResourceArn": INPUTS["mlflow_arn"],
        "MlflowExperimentName": "clinical-diagnosis",
    }


def test_without_spot_there_is_no_max_wait(variant):
    train = steps(variant)["FineTune"]["Arguments"]
    assert "EnableManagedSpotTraining" not in train
    assert "MaxWaitTimeInSeconds" not in train["StoppingCondition"]


@pytest.mark.parametrize("built", ["definition", "variant"])
def test_each_step_is_a_valid_request_for_its_api(built, request):
    model = botocore.session.get_session().get_service_model("sagemaker")
    checked = 0
    for step in steps(request.getfixturevalue(built)).values():
        if step["Type"] not in API:
            continue
        shape = model.operation_model(API[step["Type"]]).input_shape
        request = with_placeholders({**step["Arguments"], **NAMED_BY_PIPELINES[step["Type"]]}, shape)
        report = ParamValidator().validate(request, shape)
        assert not report.has_errors(), f"{step['Name']}: {report.generate_report()}"
        checked += 1
    assert checked == 4


def test_network_and_encryption_when_a_vpc_and_a_key_are_given(variant, definition):
    kms = KMS
    s = steps(variant)
    train = s["FineTune"]["Arguments"]
    assert train["VpcConfig"] == {"Subnets": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-1"]}
    assert train["EnableInterContainerTrafficEncryption"] is True
    assert train["OutputDataConfig"]["KmsKeyId"] == kms
    for name in ("Preprocess", "Evaluate"):
        args = s[name]["Arguments"]
        assert args["NetworkConfig"]["VpcConfig"] == {"Subnets": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-1"]}
        assert args["NetworkConfig"]["EnableInterContainerTrafficEncryption"] is True
        assert args["ProcessingOutputConfig"]["KmsKeyId"] == kms
    plain = steps(definition)
    assert "VpcConfig" not in plain["FineTune"]["Arguments"] and "NetworkConfig" not in plain["Evaluate"]["Arguments"]


def test_only_the_given_buckets_are_referenced(definition):
    uris = [v for v in strings(definition) if v.startswith("s3://")]
    assert uris and {u.split("/")[2] for u in uris} <= BUCKETS
    assert not any("sagemaker-us-east-1" in v for v in strings(definition))


# Run in a fresh interpreter, so that importing the SDK is covered too: any socket connection or
# botocore HTTP send raises, and two hash seeds must give the same bytes.
_OFFLINE_BUILD = """
import socket, sys
import botocore.httpsession
def refuse(*args, **kwargs):
    sys.stderr.write("NETWORK CALL"); raise SystemExit(3)
socket.socket.connect = socket.socket.connect_ex = refuse
botocore.httpsession.URLLib3Session.send = refuse
from training.pipeline import build_definition, _sample
sys.stdout.write(build_definition(**_sample()))
"""


def test_the_definition_is_built_offline_and_byte_identical_across_processes():
    proc = subprocess.run(
        [sys.executable, "-c", _OFFLINE_BUILD],
        cwd=ROOT,
        env=env(PYTHONHASHSEED="12345"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0 and "NETWORK CALL" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout == build_definition(**pipeline._sample())  # this process: another hash seed
    assert build_definition(**INPUTS) == build_definition(**INPUTS)


def test_print_shows_a_sample_definition(capsys):
    assert pipeline.main(["--print"]) == 0
    assert json.loads(capsys.readouterr().out)["Version"] == "2020-12-01"


def test_training_hyperparameters_are_flags_train_py_accepts(definition, monkeypatch):
    train = steps(definition)["FineTune"]["Arguments"]
    defaults = parameter_defaults(definition)
    argv = [
        a
        for k, v in train["HyperParameters"].items()
        if not k.startswith("sagemaker_")
        for a in (f"--{k}", str(resolve(v, defaults)))
    ]
    assert train["HyperParameters"]["sagemaker_program"] == "train.py"
    assert train["HyperParameters"]["sagemaker_submit_directory"] == INPUTS["source_uri"]
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")  # what the training container sets
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
    args = load_program("train", monkeypatch).parse_args(argv)
    assert (args.lora_rank, args.lora_alpha, args.epochs, args.learning_rate) == (16, 32, 3, 2e-4)
    assert args.base_model == "meta-llama/Llama-3.2-3B-Instruct"
    assert args.checkpoint_dir == "/opt/ml/checkpoints" and args.model_dir == "/opt/ml/model"


def test_evaluate_arguments_are_flags_evaluate_py_accepts(definition, monkeypatch):
    app = steps(definition)["Evaluate"]["Arguments"]["AppSpecification"]
    argv = [str(resolve(a, parameter_defaults(definition))) for a in app["ContainerArguments"]]
    args = load_program("evaluate", monkeypatch).parse_args(argv)
    assert args.base_model == "meta-llama/Llama-3.2-3B-Instruct" and args.model_dir == "/opt/ml/processing/model"
    assert "evaluate.py" in app["ContainerEntrypoint"][2]


def test_a_base_model_in_s3_is_an_input_of_training_and_evaluation(variant):
    s = steps(variant)
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in s["FineTune"]["Arguments"]["InputDataConfig"]
    }
    assert channels["base"] == {"Get": "Parameters.BaseModelId"}
    assert parameter_defaults(variant)["Parameters.BaseModelId"] == VARIANT["base_model_id"]
    assert "base-model" not in s["FineTune"]["Arguments"]["HyperParameters"]  # train.py reads SM_CHANNEL_BASE
    eval_args = s["Evaluate"]["Arguments"]
    inputs = {i["InputName"]: i["S3Input"] for i in eval_args["ProcessingInputs"]}
    assert inputs["base"]["S3Uri"] == {"Get": "Parameters.BaseModelId"}
    assert inputs["base"]["LocalPath"] == "/opt/ml/processing/base"
    args = eval_args["AppSpecification"]["ContainerArguments"]
    assert args[args.index("--base-model") + 1] == "/opt/ml/processing/base"


def test_the_preprocess_container_command_unpacks_the_code_and_runs(definition, raw_dir, tmp_path):
    """The step's own entrypoint and arguments, run with /opt/ml moved under a temporary folder."""
    app = steps(definition)["Preprocess"]["Arguments"]["AppSpecification"]
    opt = str(tmp_path / "opt" / "ml")
    code = tmp_path / "opt/ml/processing/input/code"
    code.mkdir(parents=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:  # what the CDK asset holds: the folder's files
        for f in sorted(TRAINING.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                tar.add(f, arcname=f.relative_to(TRAINING).as_posix())
    (code / "0123abcd.gz").write_bytes(buffer.getvalue())  # CDK uploads a file asset as <hash>.gz
    data = tmp_path / "opt/ml/processing/input/data"
    data.mkdir(parents=True)
    (data / "records.jsonl").write_bytes((raw_dir / "records.jsonl").read_bytes())
    arguments = [resolve(a, parameter_defaults(definition)) for a in app["ContainerArguments"]]
    command = [part.replace("/opt/ml", opt) for part in [*app["ContainerEntrypoint"], *arguments]]
    proc = subprocess.run(
        command,
        env={**env(), "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "opt/ml/processing/output/train/train.jsonl").stat().st_size > 0
    assert (tmp_path / "opt/ml/processing/output/test/test.jsonl").stat().st_size > 0
    outputs = {
        o["OutputName"]: o["S3Output"]["LocalPath"]
        for o in steps(definition)["Preprocess"]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    }
    assert outputs == {
        "train": "/opt/ml/processing/output/train",
        "test": "/opt/ml/processing/output/test",
        "report": "/opt/ml/processing/output/report",
    }
