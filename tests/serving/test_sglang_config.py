"""SM_SGLANG_* environment -> SGLang flags: each rule, and errors that name the setting."""

from __future__ import annotations

import pytest
from sglang_config import ConfigError, engine_config, load_manifest

MANIFEST = load_manifest()
SPEC = {
    "SM_SGLANG_SPECULATIVE_NUM_STEPS": "3",
    "SM_SGLANG_SPECULATIVE_EAGLE_TOPK": "1",
    "SM_SGLANG_SPECULATIVE_NUM_DRAFT_TOKENS": "4",
}


def flags(env: dict, **kw) -> list[str]:
    return engine_config(env, MANIFEST, **kw).args


def value_of(args: list[str], flag: str) -> list[str] | None:
    """The values following ``flag`` (several for a list flag), or None when absent."""
    if flag not in args:
        return None
    i = args.index(flag) + 1
    out = []
    while i < len(args) and not args[i].startswith("--"):
        out.append(args[i])
        i += 1
    return out


def error(env: dict, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        engine_config(env, MANIFEST, **kw)
    return str(e.value)


def test_sagemaker_defaults_model_dir_llama3_tool_parser_and_lora():
    args = flags({})
    assert value_of(args, "--model-path") == ["/opt/ml/model"]
    assert value_of(args, "--tool-call-parser") == ["llama3"]
    assert value_of(args, "--enable-lora") == []
    assert value_of(args, "--max-lora-rank") == ["64"]
    assert value_of(args, "--lora-target-modules") == ["all"]
    assert "--speculative-algorithm" not in args
    assert engine_config({}, MANIFEST).served_model_name == "/opt/ml/model"


def test_value_setting_becomes_flag_with_value():
    args = flags({"SM_SGLANG_MEM_FRACTION_STATIC": "0.8", "SM_SGLANG_CONTEXT_LENGTH": "8192"})
    assert value_of(args, "--mem-fraction-static") == ["0.8"]
    assert value_of(args, "--context-length") == ["8192"]


def test_true_gives_bare_flag_and_false_omits_it():
    assert value_of(flags({"SM_SGLANG_TRUST_REMOTE_CODE": "true"}), "--trust-remote-code") == []
    assert "--trust-remote-code" not in flags({"SM_SGLANG_TRUST_REMOTE_CODE": "false"})
    assert "--trust-remote-code" not in flags({"SM_SGLANG_TRUST_REMOTE_CODE": "FALSE"})


def test_empty_value_counts_as_unset():
    assert value_of(flags({"SM_SGLANG_TOOL_CALL_PARSER": ""}), "--tool-call-parser") == ["llama3"]


def test_environment_overrides_defaults_and_alias_replaces_model_path():
    args = flags({"SM_SGLANG_MODEL": "/models/llama", "SM_SGLANG_TOOL_CALL_PARSER": "pythonic"})
    assert value_of(args, "--model") == ["/models/llama"] and "--model-path" not in args
    assert value_of(args, "--tool-call-parser") == ["pythonic"]
    assert engine_config({"SM_SGLANG_SERVED_MODEL_NAME": "llama"}, MANIFEST).served_model_name == "llama"


def test_lora_rank_and_target_modules_from_environment():
    cfg = engine_config(
        {
            "SM_SGLANG_MAX_LORA_RANK": "16",
            "SM_SGLANG_LORA_TARGET_MODULES": "q_proj v_proj",
            "SM_SGLANG_LORA_PATHS": "clinical=/opt/ml/adapters/clinical triage=/a/t",
        },
        MANIFEST,
    )
    assert value_of(cfg.args, "--max-lora-rank") == ["16"]
    assert value_of(cfg.args, "--lora-target-modules") == ["q_proj", "v_proj"]
    assert cfg.adapters == ["clinical", "triage"] and cfg.lora


def test_lora_off_drops_lora_flags():
    cfg = engine_config({"SM_SGLANG_ENABLE_LORA": "false"}, MANIFEST)
    assert not cfg.lora
    assert not {"--enable-lora", "--max-lora-rank", "--lora-target-modules"} & set(cfg.args)


def test_eagle3_draft_model_with_all_three_sizes(tmp_path):
    env = {"SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH": str(tmp_path), **SPEC}
    args = flags(env)
    assert value_of(args, "--speculative-algorithm") == ["EAGLE3"]
    assert value_of(args, "--speculative-draft-model-path") == [str(tmp_path)]
    assert value_of(args, "--speculative-num-steps") == ["3"]
    assert value_of(args, "--speculative-eagle-topk") == ["1"]
    assert value_of(args, "--speculative-num-draft-tokens") == ["4"]


def test_flags_come_in_a_stable_order(tmp_path):
    env = {"SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH": str(tmp_path), **SPEC, "SM_SGLANG_TP_SIZE": "1"}
    assert flags(env) == flags(dict(reversed(list(env.items()))))


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"SM_SGLANG_NOT_A_FLAG": "1"}, "SM_SGLANG_NOT_A_FLAG: unknown SGLang flag --not-a-flag"),
        ({"SM_SGLANG_MAX_LORA_RANK": "sixteen"}, "SM_SGLANG_MAX_LORA_RANK: 'sixteen' is not an integer"),
        ({"SM_SGLANG_MEM_FRACTION_STATIC": "most"}, "SM_SGLANG_MEM_FRACTION_STATIC: 'most' is not a number"),
        ({"SM_SGLANG_ENABLE_LORA": "yes"}, "SM_SGLANG_ENABLE_LORA: --enable-lora is a switch; use true or false"),
        ({"SM_SGLANG_CONTEXT_LENGTH": "true"}, "SM_SGLANG_CONTEXT_LENGTH: --context-length takes a value"),
        ({"SM_SGLANG_TOOL_CALL_PARSER": "llama9"}, "SM_SGLANG_TOOL_CALL_PARSER: 'llama9' is not one of"),
        ({"SM_SGLANG_LORA_TARGET_MODULES": "q_proj,v_proj"}, "SM_SGLANG_LORA_TARGET_MODULES: 'q_proj,v_proj'"),
        ({"SM_SGLANG_PORT": "9000"}, "SM_SGLANG_PORT: --port is set by the container"),
        (
            {"SM_SGLANG_MODEL": "/a", "SM_SGLANG_MODEL_PATH": "/b"},
            "SM_SGLANG_MODEL_PATH: sets the same option as SM_SGLANG_MODEL",
        ),
        (
            {"SM_SGLANG_ENABLE_LORA": "false", "SM_SGLANG_MAX_LORA_RANK": "8"},
            "SM_SGLANG_MAX_LORA_RANK: --max-lora-rank needs LoRA, which is off",
        ),
        (
            {"SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH": "/no/such/draft", **SPEC},
            "SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH: draft model path /no/such/draft does not exist",
        ),
        (
            {"SM_SGLANG_SPECULATIVE_ALGORITHM": "EAGLE3"},
            "SM_SGLANG_SPECULATIVE_ALGORITHM: EAGLE3 needs a draft model; set SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH",
        ),
        ({"SM_SGLANG_SPECULATIVE_ALGORITHM": "MEDUSA"}, "SM_SGLANG_SPECULATIVE_ALGORITHM: 'MEDUSA' is not one of"),
        (
            {"SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH": "/", "SM_SGLANG_SPECULATIVE_NUM_STEPS": "3"},
            "missing SM_SGLANG_SPECULATIVE_EAGLE_TOPK, SM_SGLANG_SPECULATIVE_NUM_DRAFT_TOKENS",
        ),
        (
            {"SM_SGLANG_SPECULATIVE_ALGORITHM": "NGRAM", "SM_SGLANG_SPECULATIVE_EAGLE_TOPK": "4"},
            "SM_SGLANG_SPECULATIVE_EAGLE_TOPK: NGRAM does not use --speculative-eagle-topk",
        ),
        (
            {"SM_SGLANG_SPECULATIVE_ALGORITHM": "NGRAM", "SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH": "/"},
            "SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH: NGRAM uses no draft model",
        ),
        (
            {"SM_SGLANG_SPECULATIVE_ALGORITHM": "STANDALONE", "SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH": "/"},
            "SM_SGLANG_SPECULATIVE_ALGORITHM: STANDALONE speculative decoding does not work with LoRA",
        ),
        (SPEC, "SM_SGLANG_SPECULATIVE_NUM_STEPS: speculative sizes need SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_invalid_setting_is_refused_naming_it(env, expected):
    assert expected in error(env)


def test_ngram_needs_no_draft_and_takes_any_of_its_sizes():
    args = flags({"SM_SGLANG_SPECULATIVE_ALGORITHM": "NGRAM", "SM_SGLANG_SPECULATIVE_NUM_DRAFT_TOKENS": "8"})
    assert value_of(args, "--speculative-algorithm") == ["NGRAM"]
    assert value_of(args, "--speculative-num-draft-tokens") == ["8"]
    assert "--speculative-num-steps" not in args and "--speculative-draft-model-path" not in args


def test_errors_name_the_variable_that_caused_them():
    with pytest.raises(ConfigError) as e:
        engine_config({"SM_SGLANG_NOT_A_FLAG": "1", "SM_SGLANG_MAX_LORA_RANK": "x"}, MANIFEST)
    assert [source for source, _ in e.value.errors] == ["SM_SGLANG_NOT_A_FLAG", "SM_SGLANG_MAX_LORA_RANK"]
    cfg = engine_config({"SM_SGLANG_MEM_FRACTION_STATIC": "0.8"}, MANIFEST)
    assert cfg.sources["mem-fraction-static"] == "SM_SGLANG_MEM_FRACTION_STATIC"
    assert cfg.sources["tool-call-parser"] == "default"


def test_every_invalid_setting_is_reported_at_once():
    message = error({"SM_SGLANG_NOT_A_FLAG": "1", "SM_SGLANG_MAX_LORA_RANK": "x"})
    assert "SM_SGLANG_NOT_A_FLAG" in message and "SM_SGLANG_MAX_LORA_RANK" in message


def test_sizes_of_speculative_decoding_are_all_or_none(tmp_path):
    env = {"SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH": str(tmp_path), "SM_SGLANG_SPECULATIVE_NUM_STEPS": "2"}
    assert "set all of them or none" in error(env)
    assert "--speculative-num-steps" not in flags({"SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH": str(tmp_path)})


def test_capabilities_are_data_a_new_algorithm_needs_no_code(tmp_path):
    manifest = {**MANIFEST, "speculative": {**MANIFEST["speculative"], "algorithms": {"NGRAM": {"draft_model": False}}}}
    args = engine_config({"SM_SGLANG_SPECULATIVE_ALGORITHM": "NGRAM"}, manifest).args
    assert value_of(args, "--speculative-algorithm") == ["NGRAM"]
    with pytest.raises(ConfigError, match="'EAGLE3' is not one of NGRAM"):
        engine_config({"SM_SGLANG_SPECULATIVE_ALGORITHM": "EAGLE3"}, manifest)
