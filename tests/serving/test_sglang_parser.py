"""The container's flags, checked by SGLang's own argument parser (importable on CPU, ~5 s)."""

from __future__ import annotations

import argparse

import pytest
from sglang_config import engine_config, load_manifest
from update_manifest import parser_flags

HOST_PORT = ["--host", "127.0.0.1", "--port", "30000"]


@pytest.fixture(scope="module")
def sglang_parser() -> argparse.ArgumentParser:
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(exit_on_error=False)
    ServerArgs.add_cli_args(parser)
    return parser


def test_manifest_flag_table_matches_sglang_parser():
    assert load_manifest()["flags"] == parser_flags(), "run: python containers/sglang/update_manifest.py"


def test_generated_flags_are_accepted_by_sglang(sglang_parser, tmp_path):
    env = {
        "SM_SGLANG_MAX_LORA_RANK": "16",
        "SM_SGLANG_LORA_TARGET_MODULES": "q_proj v_proj",
        "SM_SGLANG_LORA_PATHS": f"clinical={tmp_path}",
        "SM_SGLANG_MAX_LORAS_PER_BATCH": "4",
        "SM_SGLANG_SPECULATIVE_DRAFT_MODEL_PATH": str(tmp_path),
        "SM_SGLANG_SPECULATIVE_NUM_STEPS": "3",
        "SM_SGLANG_SPECULATIVE_EAGLE_TOPK": "1",
        "SM_SGLANG_SPECULATIVE_NUM_DRAFT_TOKENS": "4",
        "SM_SGLANG_MEM_FRACTION_STATIC": "0.85",
        "SM_SGLANG_TRUST_REMOTE_CODE": "true",
        "SM_SGLANG_ENABLE_METRICS": "false",
    }
    args = sglang_parser.parse_args(engine_config(env).args + HOST_PORT)
    assert args.model_path == "/opt/ml/model"
    assert args.tool_call_parser == "llama3"
    assert args.enable_lora is True and args.max_lora_rank == 16
    assert args.lora_target_modules == ["q_proj", "v_proj"]
    assert args.max_loras_per_batch == 4
    assert args.speculative_algorithm == "EAGLE3"
    assert args.speculative_draft_model_path == str(tmp_path)
    assert (args.speculative_num_steps, args.speculative_eagle_topk, args.speculative_num_draft_tokens) == (3, 1, 4)
    assert args.mem_fraction_static == 0.85 and args.trust_remote_code is True
    assert args.enable_metrics is False


def test_defaults_alone_are_accepted_by_sglang(sglang_parser):
    args = sglang_parser.parse_args(engine_config({}).args + HOST_PORT)
    assert (args.enable_lora, args.max_lora_rank, args.lora_target_modules) == (True, 64, ["all"])


def test_sglang_refuses_an_unknown_flag(sglang_parser):
    with pytest.raises(SystemExit) as e:  # argparse: "unrecognized arguments"
        sglang_parser.parse_args(engine_config({}).args + ["--not-a-flag"])
    assert e.value.code == 2
