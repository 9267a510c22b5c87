"""make weights: a local snapshot uploaded to the prefixes the config names (skipping what is already there, by
checksum), weights checked in place, and a licence-gated JumpStart source verified instead of copied. Dev serves
from JumpStart and the pipeline reads its staged copy (training.base_weights_prefix)."""

from __future__ import annotations

import hashlib
import json

import pytest

from ops import weights
from ops.errors import OpsError
from ops.weights import JumpStartWeights, S3Weights, training_location, verify_jumpstart, weights_location
from stacks.settings import S3Weights as S3Settings


@pytest.fixture
def snapshot(tmp_path):
    d = tmp_path / "snapshot"
    (d / ".cache" / "huggingface").mkdir(parents=True)
    (d / ".cache" / "huggingface" / "download.lock").write_text("not part of the model")
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (d / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (d / "tokenizer.json").write_text("{}")
    return d


def cloud(env):
    """dev's cloud, with JumpStart's hub answering for the served model (moto has no DescribeHubContent)."""
    sagemaker, stub = env.stub("sagemaker")
    hub_content(stub, {"HostingPrepackedArtifactUri": ARTIFACT, "GatedBucket": True, "HostingEulaUri": EULA})
    return env.cloud(sagemaker=sagemaker)


def objects(env, prefix):
    s3 = env.client("s3")
    bucket = env.values[weights.outputs.ARTIFACTS_BUCKET]
    found = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.head_object(Bucket=bucket, Key=o["Key"])["Metadata"] for o in found}


def test_snapshot_is_uploaded_then_unchanged_files_are_skipped(env, snapshot):
    env.deploy()
    prefix = env.settings.training.base_weights_prefix
    first = env.run(cloud(env), "weights", "--env", "dev", "--from", str(snapshot))
    assert first.exit_code == 0, first.output
    stored = objects(env, prefix)
    assert sorted(stored) == [prefix + n for n in ("config.json", "model.safetensors", "tokenizer.json")]
    digest = hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()
    assert stored[prefix + "model.safetensors"]["sha256"] == digest
    assert "3 uploaded, 0 unchanged" in first.output
    assert "llama32-3b: JumpStart meta-textgeneration-llama-3-2-3b-instruct 1.0.0 is available" in first.output

    (snapshot / "tokenizer.json").write_text('{"changed": true}')
    second = env.run(cloud(env), "weights", "--env", "dev", "--from", str(snapshot))
    assert second.exit_code == 0, second.output
    assert "1 uploaded, 2 unchanged" in second.output


def test_objects_the_snapshot_lacks_are_pointed_out(env, snapshot):
    env.deploy()
    prefix = env.settings.training.base_weights_prefix
    env.client("s3").put_object(Bucket=env.values[weights.outputs.ARTIFACTS_BUCKET], Key=prefix + "old.bin", Body=b"x")
    result = env.run(cloud(env), "weights", "--env", "dev", "--from", str(snapshot))
    assert result.exit_code == 0
    assert f"are served too: {prefix}old.bin" in result.output


def test_weights_in_place_are_reported(env, snapshot):
    env.deploy()
    env.run(cloud(env), "weights", "--env", "dev", "--from", str(snapshot))
    result = env.run(cloud(env), "weights", "--env", "dev")
    assert result.exit_code == 0
    assert "pipeline: 3 files" in result.output


def test_missing_weights_say_how_to_stage_them(env):
    env.deploy()
    result = env.run(cloud(env), "weights", "--env", "dev")
    assert result.exit_code == 1
    assert "no model weights at s3://" in result.output
    assert "hf download meta-llama/Llama-3.2-3B-Instruct --local-dir DIR" in result.output
    assert "make weights ENV=dev FROM=DIR" in result.output


def test_a_folder_that_is_not_a_snapshot_is_refused(env, tmp_path):
    env.deploy()
    (tmp_path / "notes.txt").write_text("hello")
    result = env.run(cloud(env), "weights", "--env", "dev", "--from", str(tmp_path))
    assert result.exit_code == 1
    assert "not a model snapshot" in result.output


def test_undeployed_data_stack_says_to_deploy(env, snapshot):
    result = env.run(cloud(env), "weights", "--env", "dev", "--from", str(snapshot))
    assert result.exit_code == 1
    assert "stack Dev-Data is not deployed in us-east-1: deploy it first (make deploy ENV=dev)" in result.output


def test_locations_follow_the_weights_setting(env):
    model = env.settings.inference.models[0]
    assert weights_location(env.settings, model) == JumpStartWeights(
        model.name, "meta-textgeneration-llama-3-2-3b-instruct", "1.0.0", True, model.weights.eula_accepted_by
    )
    staged = model.model_copy(update={"weights": S3Settings(source="s3", prefix="models/own/")})
    assert weights_location(env.settings, staged) == S3Weights(model.name, "models/own/")
    assert training_location(env.settings) == S3Weights("pipeline", env.settings.training.base_weights_prefix)


# --- JumpStart (the hosted, licence-gated source) -----------------------------------------------------------

GATED = JumpStartWeights("llama32-3b", "meta-textgeneration-llama-3-2-3b-instruct", "1.0.0", accept_eula=False)
EULA = "s3://eula/llama.txt"
ARTIFACT = "s3://jumpstart-private-cache-prod-us-east-1/meta-textgeneration/llama-3-2-3b-instruct/artifacts/v1.0.0/"


def hub_content(stub, document, status="Available"):
    stub.add_response(
        "describe_hub_content",
        {
            "HubContentName": GATED.model_id,
            "HubContentArn": (
                f"arn:aws:sagemaker:us-east-1:aws:hub-content/SageMakerPublicHub/Model/{GATED.model_id}/1.0.0"
            ),
            "HubContentVersion": "1.0.0",
            "HubContentType": "Model",
            "DocumentSchemaVersion": "2.0.0",
            "HubName": "SageMakerPublicHub",
            "HubArn": "arn:aws:sagemaker:us-east-1:aws:hub/SageMakerPublicHub",
            "HubContentDocument": json.dumps(document),
            "HubContentStatus": status,
            "CreationTime": "2026-01-01T00:00:00Z",
        },
        {
            "HubName": "SageMakerPublicHub",
            "HubContentType": "Model",
            "HubContentName": GATED.model_id,
            "HubContentVersion": "1.0.0",
        },
    )


def test_a_gated_model_needs_its_licence_accepted_in_the_config(env):
    sagemaker, stub = env.stub("sagemaker")
    hub_content(
        stub, {"HostingPrepackedArtifactUri": ARTIFACT, "GatedBucket": True, "HostingEulaUri": "s3://eula/llama.txt"}
    )
    with pytest.raises(
        OpsError, match="licence-gated; read the licence \\(s3://eula/llama.txt\\), then set accept_eula: true"
    ):
        verify_jumpstart(env.cloud(sagemaker=sagemaker), GATED)


def test_an_accepted_licence_verifies_access_without_copying(env):
    sagemaker, stub = env.stub("sagemaker")
    hub_content(
        stub, {"HostingPrepackedArtifactUri": ARTIFACT, "GatedBucket": True, "HostingEulaUri": "s3://eula/llama.txt"}
    )
    accepted = JumpStartWeights(GATED.model, GATED.model_id, GATED.version, accept_eula=True, eula_accepted_by="dr-ops")
    assert verify_jumpstart(env.cloud(sagemaker=sagemaker), accepted) == {
        "artifact": ARTIFACT,
        "gated": True,
        "eula": "s3://eula/llama.txt",
    }


def test_an_unknown_jumpstart_version_is_named(env):
    sagemaker, stub = env.stub("sagemaker")
    stub.add_client_error("describe_hub_content", "ResourceNotFound", "Hub content not found", 400)
    with pytest.raises(
        OpsError, match="JumpStart has no model 'meta-textgeneration-llama-3-2-3b-instruct' version 1.0.0"
    ):
        verify_jumpstart(env.cloud(sagemaker=sagemaker), GATED)
