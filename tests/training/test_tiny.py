"""local/tiny.py, the shared tiny model: what other areas rely on."""

from __future__ import annotations

import pytest

from local.tiny import build_tiny_adapter

torch = pytest.importorskip("torch")


def test_the_chat_template_marks_only_the_assistant_answer_and_its_end_of_turn(tiny_base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Cough and fever"},
        {"role": "assistant", "content": "Most likely diagnosis: Pneumonia"},
    ]
    enc = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    marked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tok.decode(marked) == "Most likely diagnosis: Pneumonia<|eot_id|>"
    assert tok.eos_token == "<|eot_id|>" and tok.pad_token == "<|finetune_right_pad_id|>"
    prompt = tok.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    text = "Unusual text: Ωmega ✓ 血压 {json} 12345"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text  # byte-level: nothing unknown


def test_a_tiny_adapter_changes_the_outputs(tiny_base, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    adapter = build_tiny_adapter(tiny_base, tmp_path / "lora", rank=4, seed=3)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(tiny_base)(ids).logits
        tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), adapter)(ids).logits
    assert (tuned - base).abs().max() > 1e-2
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
