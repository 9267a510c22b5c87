"""Inference settings are validated at synth: each error names the environment and the field."""

from __future__ import annotations

import re

import pytest

from stacks.settings import ConfigError, load_environment

LLAMA = {
    "name": "llama32-3b",
    "model_id": "meta-llama/Llama-3.2-3B-Instruct",
    "weights": {"source": "s3", "prefix": "models/llama/"},
}
JUMPSTART = {
    "source": "jumpstart",
    "model_id": "meta-textgeneration-llama-3-2-3b-instruct",
    "version": "1.0.0",
    "accept_eula": True,
    "eula_accepted_by": "Jane Doe, ML platform",
}


def model(**changes) -> dict:
    return {**LLAMA, **changes}


def refused(env: str, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"environment '{env}':\n  {message}"):
        load_environment(env, overrides=overrides)


@pytest.mark.parametrize("name", ["a" * 64, "bad_name", "-lead", "trail-", "with space"])
def test_component_name_must_be_a_sagemaker_name(name):
    refused(
        "dev",
        {"inference.models": [model(name=name)]},
        rf"inference\.models\.0\.name: '{name}' is not a SageMaker name: at most 63 letters, digits and inner hyphens",
    )


def test_endpoint_and_adapter_names_are_checked_too():
    refused(
        "prod",
        {"inference.endpoint_name": "clinical_llm"},
        r"inference\.endpoint_name: 'clinical_llm' is not a SageMaker name",
    )
    refused(
        "dev",
        {"inference.adapters": [{"name": "x" * 64, "base": "llama32-3b", "artifact_key": "a/b.tar.gz"}]},
        r"inference\.adapters\.0\.name: 'x{64}' is not a SageMaker name",
    )


def test_environment_may_hold_at_most_16_entries_with_the_derived_ones():
    extra = {f"SM_SGLANG_X{i}": "1" for i in range(12)}  # + 5 derived from the model's fields = 17
    refused(
        "staging",
        {"inference.models": [model(environment=extra)]},
        r"inference\.models\.0: environment: 12 entries plus 5 set from the model's fields make 17; "
        r"SageMaker allows at most 16",
    )


def test_environment_cannot_override_a_field():
    refused(
        "dev",
        {"inference.models": [model(environment={"SM_SGLANG_ENABLE_LORA": "false"})]},
        r"inference\.models\.0: environment\.SM_SGLANG_ENABLE_LORA: set from the model's fields; change those instead",
    )


def test_environment_names_and_values_are_checked():
    refused(
        "dev",
        {"inference.models": [model(environment={"1BAD": "x"})]},
        r"inference\.models\.0: environment\.1BAD: not a valid environment variable name",
    )
    refused(
        "dev",
        {"inference.models": [model(environment={"SM_SGLANG_MEM_FRACTION_STATIC": "9" * 1025})]},
        r"inference\.models\.0: environment\.SM_SGLANG_MEM_FRACTION_STATIC: longer than 1024 characters",
    )


def test_accelerators_must_fit_the_instance_type():
    refused(
        "dev",
        {"inference.models": [model(accelerators=4)]},
        r"inference: models\.llama32-3b\.accelerators: 4 exceeds the 1 of instance type ml\.g5\.2xlarge",
    )


def test_one_copy_of_every_model_must_fit_the_endpoint():
    refused(
        "dev",
        {"inference.models": [model(), model(name="second")]},  # dev: one ml.g5.2xlarge at most
        r"inference: models: one copy of each needs 2 accelerators; "
        r"max_instance_count 1 × 1 of ml\.g5\.2xlarge gives 1",
    )


def test_unknown_instance_type_is_refused():
    refused(
        "prod",
        {"inference.instance_type": "ml.g9.mega"},
        r"inference\.instance_type: unknown instance type 'ml\.g9\.mega'; known: ",
    )


def test_instance_counts_are_consistent():
    refused(
        "prod",
        {"inference.min_instance_count": 5},
        r"inference: min_instance_count \(5\) exceeds max_instance_count \(4\)",
    )
    refused(
        "prod",
        {"inference.initial_instance_count": 5},
        r"inference: initial_instance_count \(5\) exceeds max_instance_count \(4\)",
    )


def test_copies_are_consistent():
    refused(
        "dev",
        {"inference.models": [model(min_copies=3, max_copies=2)]},
        r"inference\.models\.0: min_copies \(3\) exceeds max_copies \(2\)",
    )


def test_component_names_are_unique():
    refused(
        "staging",
        {"inference.adapters": [{"name": "llama32-3b", "base": "llama32-3b", "artifact_key": "a/b.tar.gz"}]},
        r"inference: models/adapters: component names must be unique; repeated: llama32-3b",
    )
    refused(
        "dev",
        {"registry.adapter": "llama32-3b"},
        r"registry\.adapter: 'llama32-3b' clashes with a configured component",
    )


def test_adapters_need_a_configured_base_with_lora():
    refused(
        "dev",
        {"inference.adapters": [{"name": "a1", "base": "nope", "artifact_key": "a/b.tar.gz"}]},
        r"inference: adapters\.a1\.base: 'nope' is not one of the models \['llama32-3b'\]",
    )
    refused(
        "dev",
        {"inference.models": [model(lora=False)], "registry.adapter_base": "llama32-3b"},
        r"registry\.adapter_base: model 'llama32-3b' has lora off",
    )
    refused(
        "dev",
        {"registry.adapter_base": "other"},
        r"registry\.adapter_base: 'other' is not one of the models \['llama32-3b'\]",
    )


def test_adapter_artifact_must_be_one_archive():
    refused(
        "dev",
        {"inference.adapters": [{"name": "a1", "base": "llama32-3b", "artifact_key": "adapters/a1/"}]},
        r"inference\.adapters\.0\.artifact_key: String should match pattern",
    )


PREFIX_REFUSED = r"is not an S3 key prefix of ours: relative \(no leading '/'\), .*ending with '/'"


@pytest.mark.parametrize("prefix", ["/models/llama/", "models/llama", "models//llama/", "/"])
@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        (
            "inference.models.0.weights.s3.prefix",
            lambda p: {"inference.models": [model(weights={"source": "s3", "prefix": p})]},
        ),
        ("mlflow.artifact_prefix", lambda p: {"mlflow.artifact_prefix": p}),
        ("training.dataset_prefix", lambda p: {"training.dataset_prefix": p}),
        ("training.base_weights_prefix", lambda p: {"training.base_weights_prefix": p}),
        ("training.output_prefix", lambda p: {"training.output_prefix": p}),
        ("training.checkpoint_prefix", lambda p: {"training.checkpoint_prefix": p}),
    ],
)
def test_every_prefix_is_relative_and_ends_with_a_slash(field, overrides, prefix):
    """One prefix type: every S3 key prefix setting refuses the same malformed values, naming its field."""
    refused("dev", overrides(prefix), rf"{re.escape(field)}: '{re.escape(prefix)}' {PREFIX_REFUSED}")


@pytest.mark.parametrize(
    "field", ["mlflow.name", "registry.model_package_group", "registry.model_card_name", "training.pipeline_name"]
)
def test_every_sagemaker_resource_name_is_checked_by_the_same_rule(field):
    """One name rule for endpoints, components, pipelines, groups, cards and MLflow (64 characters is one too many)."""
    refused("dev", {field: "a" * 64}, rf"{re.escape(field)}: 'a{{64}}' is not a SageMaker name: at most 63 letters")


def test_a_draft_needs_weights_of_our_own():
    refused(
        "dev",
        {"inference.models": [model(weights=JUMPSTART, speculative={"algorithm": "EAGLE3", "draft": "eagle3"})]},
        r"inference\.models\.0: speculative\.draft: needs weights\.source s3",
    )


def test_jumpstart_weights_need_the_licence_accepted_and_by_whom():
    refused(
        "dev",
        {"inference.models": [model(weights={**JUMPSTART, "accept_eula": False})]},
        r"inference\.models\.0\.weights\.jumpstart\.accept_eula: JumpStart serves these weights only to a request "
        "that accepts the model's licence",
    )
    no_name = {k: v for k, v in JUMPSTART.items() if k != "eula_accepted_by"}
    refused(
        "dev",
        {"inference.models": [model(weights=no_name)]},
        r"inference\.models\.0\.weights\.jumpstart\.eula_accepted_by: required but missing",
    )
    no_accept = {k: v for k, v in JUMPSTART.items() if k != "accept_eula"}
    refused(
        "dev",
        {"inference.models": [model(weights=no_accept)]},
        r"inference\.models\.0\.weights\.jumpstart\.accept_eula: required but missing",
    )
    refused(
        "dev",
        {"inference.models": [model(weights={"source": "hub", "prefix": "x/"})]},
        r"inference\.models\.0\.weights: Input tag 'hub' found using 'source' does not match any of the expected "
        "tags: 'jumpstart', 's3'",
    )


def test_jumpstart_weights_need_a_region_with_gated_artifacts():
    with pytest.raises(ConfigError, match=r"inference\.models\.0\.weights: JumpStart has no gated artifacts in"):
        load_environment("dev", overrides={"region": "mx-central-9"})


def test_weights_uri_is_the_one_location_for_both_sources():
    s = load_environment("dev", overrides={"inference.models": [model(weights=JUMPSTART)]})
    jumpstart = s.inference.models[0]
    assert jumpstart.accept_eula
    assert jumpstart.weights_uri("us-east-1", "artifacts") == (
        "s3://jumpstart-private-cache-prod-us-east-1/meta-textgeneration/meta-textgeneration-llama-3-2-3b-instruct/"
        "artifacts/inference-prepack/v1.0.0/"
    )
    staged = load_environment("dev", overrides={"inference.models": [model()]}).inference.models[0]
    assert not staged.accept_eula
    assert staged.weights_uri("us-east-1", "artifacts") == "s3://artifacts/models/llama/"


def test_container_environment_maps_fields_to_sglang_settings():
    s = load_environment(
        "dev",
        overrides={
            "inference.models": [
                model(
                    speculative={"algorithm": "EAGLE3", "draft": "eagle3", "num_steps": 3, "eagle_topk": 1},
                    max_lora_rank=32,
                    lora_target_modules=["q_proj", "v_proj"],
                    environment={"SM_SGLANG_SPECULATIVE_NUM_DRAFT_TOKENS": "4"},
                ),
            ]
        },
    )
    assert s.inference.models[0].container_environment == {
        "SM_SGLANG_SERVED_MODEL_NAME": "llama32-3b",
        "SM_SGLANG_TOOL_CALL_PARSER": "llama3",
        "SM_SGLANG_ENABLE_LORA": "true",
        "SM_SGLANG_MAX_LORA_RANK": "32",
        "SM_SGLANG_LORA_TARGET_MODULES": "q_proj v_proj",
        "SM_SGLANG_SPECULATIVE_ALGORITHM": "EAGLE3",
        "SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH": "/opt/ml/model/eagle3",
        "SM_SGLANG_SPECULATIVE_NUM_STEPS": "3",
        "SM_SGLANG_SPECULATIVE_EAGLE_TOPK": "1",
        "SM_SGLANG_SPECULATIVE_NUM_DRAFT_TOKENS": "4",
    }
    two = load_environment(
        "dev",
        overrides={"inference.models": [model(), model(name="plain", lora=False)], "inference.max_instance_count": 2},
    )
    plain = two.inference.models[1].container_environment
    assert plain["SM_SGLANG_ENABLE_LORA"] == "false" and "SM_SGLANG_MAX_LORA_RANK" not in plain


# --- the container's own checks, at synth (issue 17 item 6, issue 16 item 1) ---------------------------------

REFUSED = r"inference\.models\.0: the SGLang container would refuse these settings:\n    "


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"environment": {"SM_SGLANG_NOT_A_FLAG": "1"}},
            r"environment\.SM_SGLANG_NOT_A_FLAG \(SM_SGLANG_NOT_A_FLAG\): "
            r"unknown SGLang flag --not-a-flag",
        ),
        (
            {"environment": {"SM_SGLANG_MEM_FRACTION_STATIC": "most"}},
            r"environment\.SM_SGLANG_MEM_FRACTION_STATIC "
            r"\(SM_SGLANG_MEM_FRACTION_STATIC\): 'most' is not a number",
        ),
        ({"tool_call_parser": "llama9"}, r"tool_call_parser \(SM_SGLANG_TOOL_CALL_PARSER\): 'llama9' is not one of"),
        (
            {"speculative": {"algorithm": "MEDUSA"}},
            r"speculative\.algorithm \(SM_SGLANG_SPECULATIVE_ALGORITHM\): "
            r"'MEDUSA' is not one of EAGLE3, EAGLE, STANDALONE, NGRAM",
        ),
        (
            {"speculative": {"algorithm": "EAGLE3"}},
            r"speculative\.algorithm \(SM_SGLANG_SPECULATIVE_ALGORITHM\): "
            r"EAGLE3 needs a draft model",
        ),
        (
            {"speculative": {"algorithm": "EAGLE3", "draft": "eagle3", "num_steps": 3}},
            r"speculative\.num_steps \(SM_SGLANG_SPECULATIVE_NUM_STEPS\): speculative decoding sizes: set all of them "
            r"or none; missing SM_SGLANG_SPECULATIVE_EAGLE_TOPK, SM_SGLANG_SPECULATIVE_NUM_DRAFT_TOKENS",
        ),
        (
            {"speculative": {"algorithm": "NGRAM", "eagle_topk": 4}},
            r"speculative\.eagle_topk "
            r"\(SM_SGLANG_SPECULATIVE_EAGLE_TOPK\): NGRAM does not use --speculative-eagle-topk",
        ),
        (
            {"speculative": {"algorithm": "STANDALONE", "draft": "small"}},
            r"speculative\.algorithm "
            r"\(SM_SGLANG_SPECULATIVE_ALGORITHM\): STANDALONE speculative decoding does not work with LoRA",
        ),
        (
            {
                "environment": {
                    "SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH": "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B",
                    "SM_SGLANG_SPECULATIVE_ALGORITHM": "EAGLE3",
                }
            },
            r"environment\.SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH \(SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH\): "
            r"draft model path yuhuili/EAGLE3-LLaMA3\.1-Instruct-8B does not exist",
        ),
        (
            {"environment": {"SM_SGLANG_PORT": "9000"}},
            r"environment\.SM_SGLANG_PORT \(SM_SGLANG_PORT\): --port is set "
            r"by the container",
        ),
    ],
    ids=[
        "unknown-flag",
        "not-a-number",
        "parser-choice",
        "algorithm",
        "no-draft",
        "sizes",
        "ngram-topk",
        "lora-incompatible",
        "draft-outside-the-mount",
        "managed-flag",
    ],
)
def test_container_settings_sglang_would_refuse_fail_synth_naming_field_and_variable(changes, message):
    refused("dev", {"inference.models": [model(**changes)]}, REFUSED + message)


def test_sglang_parser_checks_the_flags_the_manifest_lets_through(monkeypatch, tmp_path):
    """The second check is SGLang's own parser: a flag the manifest table knows but SGLang does not is refused."""
    from stacks import sglang_check

    if reason := sglang_check.parser_unavailable():
        pytest.fail(f"the dev virtualenv must have SGLang's parser: {reason}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    table = sglang_check.manifest()
    monkeypatch.setitem(table, "flags", {**table["flags"], "made-up-flag": {"dest": "made_up_flag"}})
    refused(
        "dev",
        {"inference.models": [model(environment={"SM_SGLANG_MADE_UP_FLAG": "1"})]},
        REFUSED + r"environment\.SM_SGLANG_MADE_UP_FLAG \(SM_SGLANG_MADE_UP_FLAG\): SGLang's argument parser refused "
        r"the flags: unrecognized arguments: --made-up-flag 1",
    )


def test_sglang_parser_verdict_is_cached_so_synth_skips_the_import(monkeypatch, tmp_path):
    from stacks import sglang_check

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    load_environment("dev")
    assert list((tmp_path / "clinical-agent" / "sglang-parser").iterdir()), "no verdict was cached"

    def no_parser():
        raise AssertionError("SGLang's parser was built although the verdict is cached")

    monkeypatch.setattr(sglang_check, "_sglang_parser", no_parser)
    assert load_environment("dev").inference.models[0].speculative is not None


def test_without_sglang_synth_checks_the_manifest_and_warns(monkeypatch):
    """Documented in containers/sglang/README.md: the CDK app's own requirements lack SGLang's parser."""
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Annotations, Match

    from stacks import sglang_check
    from stacks.constructs.model_component import ModelComponent

    monkeypatch.setattr(sglang_check, "parser_unavailable", lambda: "the sglang package is not installed")
    monkeypatch.setattr(sglang_check, "_sglang_parser", lambda: pytest.fail("the parser must not be used"))
    refused(
        "dev",
        {"inference.models": [model(environment={"SM_SGLANG_NOT_A_FLAG": "1"})]},
        REFUSED + r"environment\.SM_SGLANG_NOT_A_FLAG \(SM_SGLANG_NOT_A_FLAG\): unknown SGLang flag",
    )
    settings = load_environment("dev")
    stack = Stack(App(), "Probe")
    ModelComponent(
        stack,
        "Model",
        model=settings.inference.models[0],
        endpoint_name="e",
        variant_name="AllTraffic",
        image_uri="i",
        weights_uri="s3://b/p/",
        role_arn="arn:aws:iam::111111111111:role/r",
        network_isolation=True,
        startup_timeout_seconds=600,
    )
    Annotations.from_stack(stack).has_warning(
        "/Probe/Model", Match.string_like_regexp("SGLang's own argument parser did not run: the sglang package is not")
    )


def test_dev_and_staging_turn_on_draft_free_speculative_decoding():
    for env in ("dev", "staging"):
        [llama] = load_environment(env).inference.models
        assert llama.speculative is not None and llama.speculative.algorithm == "NGRAM"
        assert llama.container_environment["SM_SGLANG_SPECULATIVE_ALGORITHM"] == "NGRAM"


# --- the endpoint's GPU driver runs the image's CUDA (issue 11 item 7) --------------------------------------


def test_default_inference_ami_has_the_driver_the_sglang_image_needs():
    from stacks import sglang_check
    from stacks.settings import CUDA_MINIMUM_DRIVER, INFERENCE_AMI_DRIVERS

    cuda_major = int(sglang_check.manifest()["image"]["cuda"].split(".")[0])
    for env in ("dev", "staging", "prod"):
        ami = load_environment(env).inference.inference_ami_version
        assert INFERENCE_AMI_DRIVERS[ami] >= CUDA_MINIMUM_DRIVER[cuda_major]


def test_an_ami_whose_driver_is_too_old_for_the_image_is_refused():
    refused(
        "prod",
        {"inference.inference_ami_version": "al2-ami-sagemaker-inference-gpu-3-1"},
        r"inference\.inference_ami_version: al2-ami-sagemaker-inference-gpu-3-1 has NVIDIA driver 550; the SGLang "
        r"image lmsysorg/sglang:v0\.5\.23-cu130 is built on CUDA 13\.0, which needs driver 580 or newer "
        r"\(al2023-ami-sagemaker-inference-gpu-4-1\)",
    )
    refused(
        "dev",
        {"inference.inference_ami_version": "al2-ami-sagemaker-inference-neuron-2"},
        r"inference\.inference_ami_version: 'al2-ami-sagemaker-inference-neuron-2' is not a GPU inference AMI",
    )


def test_ami_driver_table_matches_botocore():
    """Every GPU InferenceAmiVersion botocore lists is in the table, with the driver its documentation states."""
    import re

    import botocore.session

    from stacks.settings import INFERENCE_AMI_DRIVERS

    shapes = botocore.session.get_session().get_service_model("sagemaker")
    enum = shapes.shape_for("ProductionVariantInferenceAmiVersion").enum
    doc = shapes.shape_for("ProductionVariant").members["InferenceAmiVersion"].documentation
    documented = {
        name: int(driver)
        for name, driver in re.findall(r"<dt>([\w-]+)</dt>.*?NVIDIA driver version: (\d+)", doc, flags=re.S)
        if "gpu" in name
    }
    assert documented == INFERENCE_AMI_DRIVERS
    assert set(INFERENCE_AMI_DRIVERS) == {v for v in enum if "gpu" in v}
