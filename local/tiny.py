"""A tiny random-weight Llama, its tokenizer and a LoRA adapter, built in seconds, never downloaded.

Shared by every test area. Build once per session (session-scoped fixture + tmp_path_factory)::

    from local.tiny import build_tiny_model, build_tiny_adapter

    base = build_tiny_model(tmp_path_factory.mktemp("tiny"))          # -> Path of a HF model folder
    adapter = build_tiny_adapter(base, tmp_path_factory.mktemp("lora"), rank=4)  # -> Path

``build_tiny_model`` saves a ``LlamaForCausalLM`` (hidden 64, 2 layers, 4 heads, ~0.2 M
parameters) and a fast BPE tokenizer trained on the fly, with Llama 3 special tokens and the
Llama 3.2 Instruct chat template (the one training uses, which marks assistant turns with
``{% generation %}``). ``<|eot_id|>`` ends a turn (eos); ``<|finetune_right_pad_id|>`` pads.
Same arguments, same files. ``build_tiny_adapter`` saves a peft LoRA adapter whose B matrices
are non-zero, so it changes the model's outputs (a freshly initialised LoRA would not).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "training" / "llama3_2_training.jinja"
SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
    "<|finetune_right_pad_id|>",
]
_CORPUS = [
    "You are a helpful clinical assistant. Cutting Knowledge Date: December 2023. Today Date:",
    "Patient: 54-year-old female. Chief complaint: cough, fever and shortness of breath.",
    "Vitals: Temperature 38.9 °C, heart rate 112/min, respiratory rate 24/min, blood pressure 128/82 mmHg, "
    "SpO2 91%. History: type 2 diabetes; hypertension; smoker; asthma; none reported.",
    "Assessment: findings point to an infection. Most likely diagnosis: Community-acquired pneumonia.",
    "Chest pain, headache, abdominal pain, vomiting, diarrhoea, weakness, wheeze, rash, swelling.",
    "Get the patient record, upload the diagnostic report, call a tool with JSON arguments.",
    '{"name": "get_patient_record", "parameters": {"patient_id": "P-001"}}',
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 . , ; : ! ? ' \" ( ) [ ] { } / - _",
]


def build_tiny_tokenizer(out_dir: str | Path, *, corpus: Iterable[str] = (), vocab_size: int = 1000):
    """Train a byte-level BPE tokenizer (any text encodes, no unknown tokens) and save it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([*_CORPUS, *corpus], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        chat_template=TEMPLATE.read_text(),
        model_max_length=2048,
    )
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_model(out_dir: str | Path, *, corpus: Iterable[str] = (), seed: int = 0) -> Path:
    """Save a random-weight tiny Llama and its tokenizer to ``out_dir``; return the path."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tok = build_tiny_tokenizer(out, corpus=corpus)
    ids = {
        t: tok.convert_tokens_to_ids(t)
        for t in ("<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>", "<|finetune_right_pad_id|>")
    }
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=ids["<|begin_of_text|>"],
        eos_token_id=[ids["<|eot_id|>"], ids["<|end_of_text|>"]],
        pad_token_id=ids["<|finetune_right_pad_id|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    model.save_pretrained(out)
    return out


def build_tiny_adapter(
    base_dir: str | Path,
    out_dir: str | Path,
    *,
    rank: int = 4,
    seed: int = 0,
    target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
) -> Path:
    """Save a LoRA adapter for the tiny model at ``base_dir`` whose weights change its outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = get_peft_model(
        base, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(target_modules), task_type="CAUSAL_LM")
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    model.save_pretrained(str(out_dir))
    return Path(out_dir)
