"""LoRA fine-tuning of a causal LM on chat examples (peft + trl SFTTrainer, assistant-only loss).

Checkpoints go to --checkpoint-dir (on SageMaker /opt/ml/checkpoints, synced to S3); a run that
finds a complete checkpoint there resumes from the latest one (spot interruption, node
replacement). On SIGTERM (SageMaker stops a job with SIGTERM and waits 120 s) it saves a
checkpoint at the current step and exits 143 without writing the model. When training ends the
adapter goes to --model-dir (and, with --merge, a merged model to <model-dir>/merged).
With MLFLOW_TRACKING_URI set, parameters, metrics and system metrics go to MLflow (rank 0);
the run continues across resumes. Launched by torchrun, it trains with DDP on every process.
Progress goes to stdout at every logging step: ``TRAIN_PROGRESS {"step", "max_steps", "loss",
"elapsed_s", "remaining_s"}`` (rank 0), then ``TRAIN_SUMMARY {...}`` at the end.

Local:      python training/train.py --train-dir data/processed/train --base-model <hf-id-or-folder> \\
                --model-dir out/model --checkpoint-dir out/checkpoints
Multi-GPU:  torchrun --nproc-per-node 4 training/train.py ...   (multi-node: --nnodes/--node-rank/...)
SageMaker:  paths default to SM_CHANNEL_TRAIN, SM_CHANNEL_BASE, SM_MODEL_DIR, /opt/ml/checkpoints
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from jobenv import CHECKPOINTS, default, in_sagemaker_training, jsonl_files, latest_checkpoint, require_dir

HERE = Path(__file__).resolve().parent
LLAMA3_TRAINING_TEMPLATE = HERE / "llama3_2_training.jinja"
RUN_ID_FILE = "mlflow_run_id"
STOPPED_EXIT = 143  # 128 + SIGTERM


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = p.add_argument_group("paths")
    g.add_argument(
        "--train-dir",
        default=default("SM_CHANNEL_TRAIN"),
        help="folder of *.jsonl chat examples (default: $SM_CHANNEL_TRAIN)",
    )
    g.add_argument(
        "--base-model",
        default=default("SM_CHANNEL_BASE"),
        help="Hugging Face model id or folder (default: $SM_CHANNEL_BASE)",
    )
    g.add_argument(
        "--model-dir", default=default("SM_MODEL_DIR"), help="where the adapter goes (default: $SM_MODEL_DIR)"
    )
    g.add_argument(
        "--checkpoint-dir",
        default=CHECKPOINTS if in_sagemaker_training() else None,
        help=f"checkpoints; resumes from the latest (default in SageMaker: {CHECKPOINTS})",
    )
    g.add_argument(
        "--output-data-dir",
        default=default("SM_OUTPUT_DATA_DIR"),
        help="where train_summary.json goes (default: $SM_OUTPUT_DATA_DIR; optional)",
    )
    h = p.add_argument_group("hyperparameters")
    h.add_argument("--lora-rank", type=_positive(int), default=16)
    h.add_argument("--lora-alpha", type=_positive(int), default=32)
    h.add_argument("--lora-dropout", type=float, default=0.05)
    h.add_argument(
        "--target-modules",
        default="q_proj,k_proj,v_proj,o_proj",
        help="comma-separated module names, or all-linear (default: %(default)s)",
    )
    h.add_argument("--learning-rate", type=_positive(float), default=2e-4)
    h.add_argument("--epochs", type=_positive(float), default=3)
    h.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (default: -1, by epochs)")
    h.add_argument("--max-length", type=_positive(int), default=1024, help="tokens per example (default 1024)")
    h.add_argument("--batch-size", type=_positive(int), default=2, help="per device (default 2)")
    h.add_argument("--gradient-accumulation-steps", type=_positive(int), default=8)
    h.add_argument("--warmup-ratio", type=float, default=0.03)
    h.add_argument(
        "--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None, help="default: on with a GPU"
    )
    h.add_argument("--seed", type=int, default=42)
    o = p.add_argument_group("checkpoints, logging, output")
    o.add_argument("--save-steps", type=_positive(int), default=100)
    o.add_argument("--save-total-limit", type=_positive(int), default=2)
    o.add_argument("--logging-steps", type=_positive(int), default=10)
    o.add_argument("--merge", action="store_true", help="also save the merged model to <model-dir>/merged")
    o.add_argument(
        "--chat-template",
        type=Path,
        help="jinja chat template with {%% generation %%} markers "
        "(default: the model's own; Llama 3 models without markers get llama3_2_training.jinja)",
    )
    o.add_argument("--mlflow-experiment", default=default("MLFLOW_EXPERIMENT_NAME", "clinical-diagnosis"))
    o.add_argument("--run-name", default=default("TRAINING_JOB_NAME"))
    args = p.parse_args(argv)
    if not 0 <= args.lora_dropout < 1:
        p.error("--lora-dropout must be in [0, 1)")
    if not 0 <= args.warmup_ratio < 1:
        p.error("--warmup-ratio must be in [0, 1)")
    if not args.target_modules.strip(","):
        p.error("--target-modules is empty")
    for flag in ("base_model", "model_dir", "checkpoint_dir"):
        if not getattr(args, flag):
            p.error(f"--{flag.replace('_', '-')} is required outside SageMaker")
    return args


def load_examples(train_dir: Path) -> list[dict]:
    rows = []
    for f in jsonl_files(train_dir, "training data folder", "--train-dir"):
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                messages = json.loads(line)["messages"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise SystemExit(
                    f"error: {f.name} line {n}: expected a JSON object with 'messages' (run preprocess.py first)"
                ) from None
            if not (isinstance(messages, list) and messages and messages[-1].get("role") == "assistant"):
                raise SystemExit(f"error: {f.name} line {n}: 'messages' must end with an assistant turn")
            rows.append({"messages": messages})
    return rows


def training_template(tokenizer, explicit: Path | None) -> str | None:
    """The chat template to train with, or None to keep the tokenizer's."""
    from trl.chat_template_utils import has_generation_markers

    if explicit:
        return explicit.read_text()
    current = tokenizer.chat_template
    if current and not has_generation_markers(current) and "<|start_header_id|>" in current:
        return LLAMA3_TRAINING_TEMPLATE.read_text()
    return None  # trl patches the templates it knows, and says so clearly for the others


def sigterm_callback():
    """A callback turning SIGTERM into 'save a checkpoint now and stop' at the next step, on every rank."""
    import torch
    import torch.distributed as dist
    from transformers import TrainerCallback

    class StopOnSigterm(TrainerCallback):
        requested = False

        def on_step_end(self, args, state, control, **kwargs):
            stop = self.requested
            if dist.is_available() and dist.is_initialized():  # every rank stops at the same step
                flag = torch.tensor([int(stop)], device=args.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                stop = bool(flag.item())
            if stop:
                self.requested = control.should_save = control.should_training_stop = True

    callback = StopOnSigterm()
    signal.signal(signal.SIGTERM, lambda *_: setattr(callback, "requested", True))
    return callback


def progress_callback():
    """A callback printing ``TRAIN_PROGRESS {...}`` at every logging step: step, loss and the time left."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        start, first_step = 0.0, 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start, self.first_step = time.monotonic(), state.global_step  # a resumed run starts later

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            elapsed, done = time.monotonic() - self.start, state.global_step - self.first_step
            remaining = elapsed / done * (state.max_steps - state.global_step) if done else None
            line = {
                "step": state.global_step,
                "max_steps": state.max_steps,
                "loss": round(float(logs["loss"]), 4),
                "elapsed_s": round(elapsed, 1),
                "remaining_s": None if remaining is None else round(remaining, 1),
            }
            print("TRAIN_PROGRESS " + json.dumps(line), flush=True)

    return Progress()


def start_mlflow_run(args, checkpoint_dir: Path, params: dict):
    """Start (or, after a resume, reopen) the run on rank 0; None when no tracking URI is set."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    import mlflow

    logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    mlflow.set_experiment(args.mlflow_experiment)
    id_file = checkpoint_dir / RUN_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    run = mlflow.start_run(run_id=run_id, run_name=None if run_id else args.run_name, log_system_metrics=True)
    id_file.write_text(run.info.run_id)
    mlflow.log_params(params)
    return run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    train_dir = require_dir(args.train_dir, "training data folder", "--train-dir")
    rows = load_examples(train_dir)

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    checkpoint_dir = Path(args.checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    template = training_template(tokenizer, args.chat_template)
    if template:
        tokenizer.chat_template = template
    model = AutoModelForCausalLM.from_pretrained(
        args.base_model, dtype=torch.bfloat16 if bf16 else (torch.float16 if cuda else torch.float32)
    )
    targets = (
        "all-linear"
        if args.target_modules == "all-linear"
        else [m.strip() for m in args.target_modules.split(",") if m.strip()]
    )
    lora = LoraConfig(
        r=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )

    params = {
        "base_model": args.base_model,
        "lora_rank": args.lora_rank,
        "lora_alpha": args.lora_alpha,
        "lora_dropout": args.lora_dropout,
        "target_modules": args.target_modules,
        "max_length": args.max_length,
        "train_examples": len(rows),
        "world_size": world,
    }
    run = start_mlflow_run(args, checkpoint_dir, params) if rank == 0 else None
    stopper = sigterm_callback()
    gradient_checkpointing = cuda if args.gradient_checkpointing is None else args.gradient_checkpointing
    config = SFTConfig(
        output_dir=str(checkpoint_dir),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup_ratio,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        activation_checkpointing=gradient_checkpointing,
        bf16=bf16,
        fp16=cuda and not bf16,
        use_cpu=not cuda,
        max_length=args.max_length,
        assistant_only_loss=True,
        packing=False,
        logging_steps=args.logging_steps,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        seed=args.seed,
        data_seed=args.seed,
        report_to=["mlflow"] if run else "none",
        run_name=args.run_name,
        disable_tqdm=True,
        ddp_find_unused_parameters=False if world > 1 else None,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[stopper, progress_callback()],
    )

    resume = latest_checkpoint(checkpoint_dir)
    resumed_step = json.loads((resume / "trainer_state.json").read_text())["global_step"] if resume else 0
    if rank == 0:
        print(f"resuming from {resume.name} (step {resumed_step})" if resume else "starting from scratch", flush=True)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    tokens = [e["num_tokens"] for e in trainer.state.log_history if "num_tokens" in e]
    summary = {
        "global_step": trainer.state.global_step,
        "resumed_from_step": resumed_step,
        "steps_run": trainer.state.global_step - resumed_step,
        "stopped": stopper.requested,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "num_tokens": tokens[-1] if tokens else None,
        "train_runtime": result.metrics.get("train_runtime"),
        "mlflow_run_id": run.info.run_id if run else None,
        "world_size": trainer.args.world_size,
    }
    if stopper.requested:
        if rank == 0:
            print(f"stopped by SIGTERM; checkpoint saved at step {trainer.state.global_step}", flush=True)
            print("TRAIN_SUMMARY " + json.dumps(summary), flush=True)
            if run:
                import mlflow

                mlflow.end_run(status="KILLED")
        return STOPPED_EXIT

    model_dir = Path(args.model_dir)
    trainer.save_model(str(model_dir))  # the adapter (+ tokenizer), written by the main process only
    if rank == 0:
        (model_dir / "training_run.json").write_text(
            json.dumps(
                {
                    "base_model": args.base_model,
                    "mlflow_run_id": summary["mlflow_run_id"],
                    "global_step": trainer.state.global_step,
                },
                indent=2,
            )
            + "\n"
        )
        if args.merge:
            peft_model: Any = trainer.model  # a PeftModel: the trainer was given a peft config
            merged = peft_model.merge_and_unload()
            merged.save_pretrained(model_dir / "merged")
            tokenizer.save_pretrained(model_dir / "merged")
        if args.output_data_dir:
            Path(args.output_data_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.output_data_dir) / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print("TRAIN_SUMMARY " + json.dumps(summary), flush=True)
        if run:
            import mlflow

            mlflow.end_run()
    return 0


def leave_process_group() -> None:
    """Wait for every rank, then tear the process group down: a rank exiting while another still
    writes would have its communication threads killed at interpreter exit (SIGABRT), and torchrun
    would then stop the whole job."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    code = main()
    leave_process_group()
    sys.exit(code)
