"""Tiny Llama models for tests and the demo, built here, never downloaded.

Shared by every test area. Build once per session (session-scoped fixture + tmp_path_factory)::

    from local.tiny import build_tiny_model, build_tiny_adapter

    base = build_tiny_model(tmp_path_factory.mktemp("tiny"))          # -> Path of a HF model folder
    adapter = build_tiny_adapter(base, tmp_path_factory.mktemp("lora"), rank=4)  # -> Path

``build_tiny_model`` saves a random-weight ``LlamaForCausalLM`` (hidden 64, 2 layers, 4 heads, ~0.2 M
parameters) and a fast BPE tokenizer trained on the fly, with Llama 3 special tokens and the
Llama 3.2 Instruct chat template (the one training uses, which marks assistant turns with
``{% generation %}``). ``<|eot_id|>`` ends a turn (eos); ``<|finetune_right_pad_id|>`` pads.
Same arguments, same files. ``build_tiny_adapter`` saves a peft LoRA adapter whose B matrices
are non-zero, so it changes the model's outputs (a freshly initialised LoRA would not).

``pretrain_tiny_model`` is the demo's base model: a tokenizer trained on a corpus
(``training/generate.py --corpus``: agent transcripts and unpaired cases), then a Llama trained from
random weights on it, rendered with the chat template exactly as the serving backend renders the
agent's requests. The loss is on the assistant's turns only (tool calls and answers): the model
learns to call the tools and carry their results forward, never to predict a tool's result; the
unpaired cases answer each case with another case's assessment, so it learns no diagnosis (that is
the fine-tune's job).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
ASSISTANT_HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"
END_OF_TURN = "<|eot_id|>"
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
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def build_tiny_tokenizer(out_dir: str | Path, *, corpus: Iterable[str] = (), vocab_size: int = 1000):
    """Train a byte-level BPE tokenizer (any text encodes, no unknown tokens) and save it.

    Line breaks (also the escaped ``\\n`` inside JSON strings) and numbers (in groups of at most three
    digits) are split off before the byte-level BPE, so a value is the same tokens wherever it appears: in
    a request, inside a tool call's JSON or a tool's result, which is what lets a tiny model carry it over.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\\n|\n|P-\d{6}"), behavior="isolated"),
            pre_tokenizers.Split(Regex(r"\d{1,3}"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
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
        model_max_length=4096,
    )
    fast.save_pretrained(out_dir)
    return fast


def _llama(tok, *, hidden: int, layers: int, heads: int, seed: int, max_positions: int = 4096):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    ids = {
        t: tok.convert_tokens_to_ids(t)
        for t in ("<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>", "<|finetune_right_pad_id|>")
    }
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
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
    return model


def build_tiny_model(out_dir: str | Path, *, corpus: Iterable[str] = (), seed: int = 0) -> Path:
    """Save a random-weight tiny Llama and its tokenizer to ``out_dir``; return the path."""
    out = Path(out_dir)
    tok = build_tiny_tokenizer(out, corpus=corpus)
    _llama(tok, hidden=64, layers=2, heads=4, seed=seed).save_pretrained(out)
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


# ---------------------------------------------------------------- the demo's base model


@dataclass(frozen=True)
class PretrainSettings:
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    vocab_size: int = 2048
    patient_steps: int = 250  # stage 0: the shortest chats: which patient the request names
    drill_steps: int = 300  # stage 1: short chats, one turn each
    conversation_steps: int = 150  # stage 2: whole conversations behind the agent's system prompt and tools
    batch_size: int = 32
    conversation_batch_size: int = 16
    learning_rate: float = 5e-3
    warmup_steps: int = 20
    seed: int = 0
    threads: int = 1

    @property
    def steps(self) -> int:
        return self.patient_steps + self.drill_steps + self.conversation_steps


Progress = Callable[[int, int, float, float], None]  # step, steps, loss, elapsed seconds


def render(tokenizer, messages: list[dict], tools: list[dict] | None, date_string: str) -> str:
    """A chat as the serving backend renders it: the chat template, with the agent's tools if any."""
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, date_string=date_string)


def assistant_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the assistant's turns in a rendered conversation, each with its end-of-turn."""
    spans, i = [], 0
    while (i := text.find(ASSISTANT_HEADER, i)) >= 0:
        i += len(ASSISTANT_HEADER)
        end = text.index(END_OF_TURN, i) + len(END_OF_TURN)
        spans.append((i, end))
    return spans


def labelled(tokenizer, text: str, start: int = 0) -> tuple[list[int], list[int]]:
    """Token ids of ``text[start:]`` and their labels: the token on the assistant's turns, -100 elsewhere."""
    spans = assistant_spans(text)
    enc = tokenizer(text[start:], add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        i if any(a <= start + s < b for a, b in spans) else -100
        for i, (s, _) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
    ]
    return enc["input_ids"], labels


def drills(document: dict) -> dict[str, list[list[dict]]]:
    """Short chats of a corpus document, by kind: ``case`` (an unpaired case, as it is); for an agent
    transcript, ``patient`` (the request's first line, then the first call: which patient) and ``turn`` (per
    assistant turn: the request, the tool results so far, then the turn; no system prompt, no tools)."""
    messages = document["messages"]
    if document["kind"] != "agent":
        return {"case": [messages], "patient": [], "turn": []}
    request = next(m for m in messages if m["role"] == "user")
    first = next(m for m in messages if m["role"] == "assistant")
    results: list[dict] = []
    turns = []
    for m in messages:
        if m["role"] == "tool":
            results.append(m)
        elif m["role"] == "assistant":
            turns.append([request, *results, m])
    patient = request["content"].split(" presents")[0]
    return {"case": [], "patient": [[{"role": "user", "content": patient}, first]], "turn": turns}


def _random_date(rng: random.Random) -> str:
    return f"{rng.randint(1, 28):02d} {rng.choice(_MONTHS)} {rng.randint(2024, 2030)}"


def _batch(rows: list[tuple[list[int], list[int]]], pad: int):
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad)
    labels = torch.full((len(rows), width), -100)
    for row, (i, lab) in enumerate(rows):  # right padding: under the causal mask no real token sees a pad
        ids[row, : len(i)], labels[row, : len(lab)] = torch.tensor(i), torch.tensor(lab)
    return ids, labels


def _loss(model, hidden, labels):
    import torch

    targets = labels[:, 1:]
    chosen = targets != -100  # the vocabulary projection only where there is something to learn
    return torch.nn.functional.cross_entropy(model.lm_head(hidden[:, :-1][chosen]), targets[chosen])


class _Conversations:
    """Agent transcripts split at the request: the prefix (system prompt and tools: the same for every
    transcript of one date) is computed once per batch and shared; each transcript's own part is tokenized
    once, labelled on the assistant's turns."""

    def __init__(self, tokenizer, transcripts: Sequence[dict]):
        self.tokenizer, self.first = tokenizer, transcripts[0]
        self.rows = []
        for t in transcripts:
            text = render(tokenizer, t["messages"], t["tools"], "01 Jan 2025")
            self.rows.append(labelled(tokenizer, text, self.cut(text, t)))

    @staticmethod
    def cut(text: str, transcript: dict) -> int:
        return text.index(next(m["content"] for m in transcript["messages"] if m["role"] == "user"))

    def prefix(self, date_string: str) -> list[int]:
        text = render(self.tokenizer, self.first["messages"], self.first["tools"], date_string)
        return self.tokenizer(text[: self.cut(text, self.first)], add_special_tokens=False)["input_ids"]


def pretrain_tiny_model(
    out_dir: str | Path,
    corpus: Sequence[dict],
    settings: PretrainSettings = PretrainSettings(),
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train a tokenizer and a tiny Llama from random weights on a corpus (``generate.py --corpus``); save both.

    A tiny model learns to carry a value (the patient id) from where it reads it to where it writes it only
    when the context is short, so training goes from short to long (``drills``): stage 0, the request's
    first line and the first call; stage 1, one turn at a time and the unpaired cases; stage 2, whole agent
    conversations behind the agent's system prompt and tools, alternating with the short chats. The loss is
    on the assistant's turns only. Returns a summary: losses, steps, tokens, parameters.
    """
    import torch
    from transformers.cache_utils import DynamicCache

    agents = [d for d in corpus if d["kind"] == "agent"]
    if not agents or len({(d["messages"][0]["content"], str(d["tools"])) for d in agents}) != 1:
        raise ValueError("the corpus needs agent transcripts of one agent (one system prompt and tool set)")
    s, out = settings, Path(out_dir)
    torch.set_num_threads(s.threads)
    rng = random.Random(s.seed)
    plain = build_tiny_tokenizer(out, vocab_size=300)  # renders the template; the real one is trained next
    sample = rng.sample(list(corpus), min(600, len(corpus)))
    texts = [render(plain, d["messages"], d.get("tools"), _random_date(rng)) for d in sample]
    tok = build_tiny_tokenizer(out, corpus=texts, vocab_size=s.vocab_size)

    def short_text(kind: str, chat: list[dict]) -> str:
        text = render(tok, chat, None, _random_date(rng))
        if kind == "patient":  # the shortest: not even the template's system header
            text = text[: text.index("<|start_header_id|>")] + text[text.index("<|start_header_id|>user") :]
        return text

    pools: dict[str, list[tuple[list[int], list[int]]]] = {"case": [], "patient": [], "turn": []}
    for d in corpus:
        for kind, chats in drills(d).items():
            pools[kind] += [labelled(tok, short_text(kind, chat)) for chat in chats]
    stage1 = pools["patient"] + pools["turn"] + pools["case"]
    stage2 = pools["patient"] + pools["case"]
    conversations = _Conversations(tok, agents)
    model = _llama(tok, hidden=s.hidden, layers=s.layers, heads=s.heads, seed=s.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, betas=(0.9, 0.98), weight_decay=0.0)

    def schedule(step: int) -> float:
        warm = min(1.0, (step + 1) / max(s.warmup_steps, 1))
        return warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / s.steps)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    losses: list[float] = []
    tokens, start = 0, time.monotonic()
    model.train()
    for step in range(s.steps):
        stage = 0 if step < s.patient_steps else 1 if step < s.patient_steps + s.drill_steps else 2
        if stage < 2 or step % 2:  # stages 0 and 1, and every other step of stage 2: short chats
            pool = (pools["patient"], stage1, stage2)[stage]
            ids, labels = _batch(rng.sample(pool, 2 * s.batch_size if stage == 0 else s.batch_size), tok.pad_token_id)
            loss = _loss(model, model.model(input_ids=ids).last_hidden_state, labels)
            tokens += int(ids.numel())
        else:  # a batch of conversations behind one shared prefix (one date per batch: it learns to ignore it)
            prefix = conversations.prefix(_random_date(rng))
            ids, labels = _batch(rng.sample(conversations.rows, s.conversation_batch_size), tok.pad_token_id)
            cache = DynamicCache(config=model.config)
            model.model(input_ids=torch.tensor([prefix]), cache=cache, use_cache=True)
            cache.batch_repeat_interleave(len(ids))
            positions = torch.arange(len(prefix), len(prefix) + ids.shape[1]).expand(ids.shape)
            hidden = model.model(input_ids=ids, cache=cache, position_ids=positions, use_cache=True).last_hidden_state
            loss = _loss(model, hidden, labels)
            tokens += len(prefix) + int(ids.numel())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
        if progress and ((step + 1) % 10 == 0 or step + 1 == s.steps):
            progress(step + 1, s.steps, sum(losses[-10:]) / len(losses[-10:]), time.monotonic() - start)
    model.eval()
    model.save_pretrained(out)
    return {
        "steps": s.steps,
        "first_loss": losses[0],
        "last_loss": sum(losses[-10:]) / len(losses[-10:]),
        "tokens": tokens,
        "seconds": round(time.monotonic() - start, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
