"""`make demo`: the whole system on one machine, with the same code that runs on AWS, and models that learned.

    python -m local.demo [--workdir .demo] [--fresh] [--keep-running] [--records 1500] [--max-steps 150] ...

1. a base model: a tiny Llama pretrained here, from random weights, on synthetic agent transcripts
   (training/generate.py --corpus: the agent's own system prompt and tools, Llama 3.2 tool calls)
   with a tokenizer trained on them; it stands in for Llama 3.2 3B (nothing is downloaded)
2. generate the synthetic clinical dataset           training/generate.py
3. preprocess: validate, deduplicate, format, split   training/preprocess.py
4. LoRA fine-tune, tracked in MLflow                  training/train.py (progress: step, loss, time left)
5. evaluate on the held-out split, before and after   training/evaluate.py (--base-only, then the adapter)
6. the quality gate (the environment's training.accuracy_threshold), then register the model version
   in MLflow's registry with the model card and pin it: its archive, SHA-256 and lineage in the demo's
   own model lock (<workdir>/models.lock.json, the format of config/models.lock.json); below the
   threshold nothing is registered, pinned or served
7. serve and ask: a local S3 + DynamoDB (moto, synthetic patients), the CPU backend behind the
   same SageMaker front as the container, the pinned adapter (its archive checked against the pin, as
   each environment's copy is) loaded through POST /adapters, the SageMaker runtime emulator, and the
   agent app — then the seed case goes in as a structured request. The
   agent loop runs on the base model (it learned the tools in step 1), ``diagnose`` on the adapter.

Every step is cached by a fingerprint of its inputs (code, settings, upstream outputs) in
<workdir>/state/: a second run skips what did not change, and says so (``make demo FRESH=1`` runs
everything again). Services start only when a step needs them and are all stopped by PID at the end,
on error, or on Ctrl-C; ``--keep-running`` leaves them up to talk to the agent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from stacks.settings import LOCK_FILE, AdapterPin, load_model_lock

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MODEL_NAME = "clinical-diagnosis-llama"  # the registered model (the registry's model package group on AWS)
ENDPOINT, BASE_COMPONENT, ADAPTER = "clinical-llm", "llama32-3b", "clinical-lora"
STEPS = 7
SEED_CASE = {
    "patient_id": "P-000045",
    "symptoms": ["fever", "cough"],
    "vitals": {"temperature_c": 38.5, "heart_rate_bpm": 98},  # 101.3 °F
    "notes": "45-year-old man, fever and cough for three days, temperature 101.3 °F, heart rate 98.",
}
MODEL_CARD = """# Clinical diagnosis assistant (LoRA on Llama 3.2 3B Instruct) — local demo build

**Intended use:** decision support for clinicians in training, on synthetic cases. Not for autonomous
diagnosis, and not for real patients.
**Training data:** synthetic clinical cases (chief complaint, vitals, history → assessment and most
likely diagnosis); no real patient data.
**Evaluation:** held-out loss, perplexity and diagnosis accuracy (see the run's metrics and the version's tags).
**Limitations:** this demo build is a tiny model trained on this machine from random weights: it knows
the eleven synthetic presentations of the generator and nothing else.
"""
# Library chatter (progress bars, MLflow's "View run" lines, INFO waits) stays out of the demo's output.
QUIET = {
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "PYTHONWARNINGS": "ignore",
}


PRETRAINING = {"patient_steps": 250, "drill_steps": 250, "conversation_steps": 150}  # see local/tiny.py


class GateFailed(RuntimeError):
    """The evaluation is below the quality gate's threshold: nothing is registered or served."""


class AgentFailed(RuntimeError):
    """The agent app answered the seed case with an error status."""

    def __init__(self, status: int, body: str):
        super().__init__(f"the agent answered {status}: {body}")
        self.status, self.body = status, body


@dataclass(frozen=True)
class Settings:
    workdir: Path
    corpus: int = 1200  # agent transcripts (and as many unpaired cases) the base model is pretrained on
    records: int = 1500  # the fine-tuning dataset
    max_steps: int = 300
    lora_rank: int = 16
    eval_samples: int = 60
    patients: int = 20
    threads: int = 1  # torch threads per process (the machine is shared; 2 cores)
    environment: str = "dev"  # whose training.accuracy_threshold gates the registration
    mlflow_port: int = 5050  # fixed so that the printed links work again with `make mlflow-ui`
    fresh: bool = False
    keep_running: bool = False


def _hash_tree(*paths: Path) -> str:
    h = hashlib.sha256()
    for root in paths:
        files = sorted(
            p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts
        )
        for f in files:
            h.update(str(f.relative_to(ROOT) if f.is_relative_to(ROOT) else f.name).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _untracked(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The environment without MLflow's tracking variables: a program tracks only where the demo says so
    (the shell's, or one that ``mlflow.set_tracking_uri`` left in this process, would point elsewhere)."""
    return {
        k: v for k, v in environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
    }


def fingerprint(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def accuracy_of(report: dict) -> float:
    """The accuracy where the pipeline's quality gate reads it (``multiclass_classification_metrics...``)."""
    from training.pipeline import ACCURACY_PATH

    value: Any = report
    for key in ACCURACY_PATH.split("."):
        value = value[key]
    return float(value)


def accuracy_threshold(environment: str) -> float:
    """The environment's configured quality gate (config/<environment>.yaml, training.accuracy_threshold)."""
    from stacks.settings import load_environment

    training = load_environment(environment).training
    if training is None:
        raise SystemExit(
            f"error: --environment {environment}: config/{environment}.yaml has no training: section (that "
            "environment trains nothing), so it has no accuracy gate; name the environment that trains (dev)"
        )
    return training.accuracy_threshold


def agent_spec() -> dict[str, Any]:
    """The system prompt and the tools exactly as the agent sends them (strands' own request formatting)."""
    from strands.models.sagemaker import SageMakerAIModel

    from agent.prompts import SYSTEM_PROMPT
    from agent.tools import ReportLedger, make_tools

    specs = [t.tool_spec for t in make_tools(None, ReportLedger())]
    model = SageMakerAIModel(
        endpoint_config={"endpoint_name": ENDPOINT, "region_name": "us-east-1"}, payload_config={"max_tokens": 1}
    )
    body = json.loads(
        model.format_request([{"role": "user", "content": [{"text": "?"}]}], specs, SYSTEM_PROMPT)["Body"]
    )
    return {"system_prompt": body["messages"][0]["content"], "tools": body["tools"]}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class Demo:
    def __init__(self, settings: Settings, out: Callable[[str], None] = print):
        self.s = settings
        self.out = out
        self.tty = out is print and sys.stdout.isatty()
        self.work = settings.workdir.resolve()
        self.state = self.work / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.services: dict[str, Any] = {}  # name → LocalServer, in start order
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self._n = 0
        self._starting: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self._last_progress = 0.0
        self._progress_open = False

    # --- output -----------------------------------------------------------------------------------

    def say(self, line: str) -> None:
        if self._progress_open:
            sys.stdout.write("\n")
            self._progress_open = False
        self.out(line)

    def progress(self, text: str, *, final: bool = False) -> None:
        """One progress line: rewritten in place on a terminal, at most every 10 s otherwise."""
        if self.tty:
            sys.stdout.write("\r      " + text.ljust(72))
            sys.stdout.flush()
            self._progress_open = True
        elif final or time.monotonic() - self._last_progress >= 10:
            self._last_progress = time.monotonic()
            self.out("      " + text)

    def _training_progress(self, step: int, steps: int, loss: float, remaining: float | None) -> None:
        self.progress(f"step {step}/{steps}  loss {loss:.3f}  {_duration(remaining)} left", final=step == steps)

    # --- steps ------------------------------------------------------------------------------------

    def step(self, name: str, title: str, inputs: dict[str, Any], run: Callable[[], dict], force: bool = False) -> dict:
        self._n += 1
        stamp = self.state / f"{name}.json"
        fp = fingerprint(inputs)
        if not (self.s.fresh or force) and stamp.exists():
            saved = json.loads(stamp.read_text())
            if saved["fingerprint"] == fp:
                self.say(f"[{self._n}/{STEPS}] {title}: skipped, inputs unchanged")
                self.skipped.append(name)
                return saved["outputs"]
        self.say(f"[{self._n}/{STEPS}] {title} ...")
        self._prestart_mlflow()  # a step runs: the later ones track to MLflow, which takes a while to start
        start = time.perf_counter()
        stamp.unlink(missing_ok=True)  # nothing half-written: the stamp exists only after success
        outputs = run()
        stamp.write_text(json.dumps({"fingerprint": fp, "outputs": outputs}, indent=2, sort_keys=True))
        self.say(f"      done in {_duration(time.perf_counter() - start)}")
        self.ran.append(name)
        return outputs

    def program(
        self, script: str, *args: str, env: dict[str, str] | None = None, on_line: Callable[[str], None] | None = None
    ) -> None:
        """Run a training program as SageMaker would, by its own entry point; fail with its output."""
        proc = subprocess.Popen(
            [PY, str(ROOT / "training" / script), *args],
            cwd=ROOT,
            env={**_untracked(os.environ), **QUIET, "OMP_NUM_THREADS": str(self.s.threads), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if on_line:
                    on_line(line.rstrip("\n"))
            proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)  # Ctrl-C: stop the program by its PID too
            proc.wait()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"{script} exited with {proc.returncode}:\n{''.join(lines)[-3000:]}")

    # --- services ---------------------------------------------------------------------------------

    def _prestart_mlflow(self) -> None:
        if self._starting is None and "mlflow" not in self.services:

            def start() -> None:
                from local.mlflow_server import start_mlflow

                try:
                    self.services["mlflow"] = start_mlflow(self.work / "mlflow", port=self.s.mlflow_port or None)
                except BaseException as e:  # reported by mlflow(), in the main thread
                    self._start_error = e

            self._starting = threading.Thread(target=start, name="mlflow-start", daemon=True)
            self._starting.start()

    def mlflow(self) -> str:
        self._prestart_mlflow()
        if self._starting is not None:
            self._starting.join()
        if self._start_error is not None:
            raise RuntimeError(f"MLflow did not start: {self._start_error}")
        return self.services["mlflow"].url

    def start(
        self, name: str, args: list[str], *, port: int, env: dict[str, str], health: str = "/ping", timeout: float = 120
    ):
        from local.server import LocalServer

        self.services[name] = LocalServer.start(
            args, port=port, env={**QUIET, **env}, health=health, timeout=timeout, cwd=ROOT
        )
        return self.services[name].url

    def stop_all(self) -> None:
        if self._starting is not None:
            self._starting.join()  # a server still starting is stopped too
        for name, server in reversed(list(self.services.items())):
            server.stop()
            self.say(f"      stopped {name} (pid {server.pid})")
        self.services.clear()

    # --- the flow ---------------------------------------------------------------------------------

    def run(self) -> dict:
        s, w = self.s, self.work
        threshold = accuracy_threshold(s.environment)  # before any work: an environment without a gate fails now
        training_code = _hash_tree(ROOT / "training")
        mlflow_env = lambda: {"MLFLOW_TRACKING_URI": self.mlflow(), "MLFLOW_EXPERIMENT_NAME": "clinical-diagnosis-demo"}  # noqa: E731

        base = self.step(
            "base",
            f"base model: a tiny Llama pretrained from random weights ({2 * s.corpus} synthetic documents)",
            {
                "code": _hash_tree(
                    ROOT / "local" / "tiny.py",
                    ROOT / "training" / "generate.py",
                    ROOT / "training" / "clinical.py",
                    ROOT / "training" / "llama3_2_training.jinja",
                    ROOT / "agent" / "prompts.py",
                    ROOT / "agent" / "tools.py",
                ),
                "corpus": s.corpus,
                "pretraining": PRETRAINING,
            },
            self._build_base,
        )

        def generate() -> dict:
            out = w / "data" / "raw" / "records.jsonl"
            self.program("generate.py", "--output", str(out), "--count", str(s.records), "--seed", "7")
            return {"path": str(out.parent), "sha": _hash_tree(out)}

        raw = self.step(
            "data", f"synthetic dataset ({s.records} records)", {"code": training_code, "records": s.records}, generate
        )

        def preprocess() -> dict:
            out = w / "data" / "processed"
            shutil.rmtree(out, ignore_errors=True)
            self.program("preprocess.py", "--input-dir", raw["path"], "--output-dir", str(out))
            return {"path": str(out), "sha": _hash_tree(out)}

        data = self.step(
            "preprocess",
            "preprocess: validate, deduplicate, format, split",
            {"code": training_code, "raw": raw["sha"]},
            preprocess,
        )
        adapter = self.step(
            "train",
            f"LoRA fine-tune ({s.max_steps} steps, rank {s.lora_rank})",
            {
                "code": training_code,
                "data": data["sha"],
                "base": base["sha"],
                "steps": s.max_steps,
                "rank": s.lora_rank,
            },
            lambda: self._train(base, data, mlflow_env()),
        )
        evaluation = self.step(
            "evaluate",
            "evaluate on the held-out split, before and after the fine-tune",
            {"code": training_code, "adapter": adapter["sha"], "base": base["sha"], "samples": s.eval_samples},
            lambda: self._evaluate(base, data, adapter, mlflow_env()),
        )
        registered = self.step(
            "register",
            f"quality gate ({s.environment}: accuracy >= {threshold}), then register and pin the model version",
            {
                "adapter": adapter["sha"],
                "evaluation": evaluation,
                "card": MODEL_CARD,
                "threshold": threshold,
                "rank": s.lora_rank,
            },
            lambda: self.register_if_passing(adapter, evaluation, threshold),
        )
        serving_code = _hash_tree(
            ROOT / "agent", ROOT / "local", ROOT / "containers" / "sglang", ROOT / "training" / "clinical.py"
        )
        answer = self.step(
            "ask",
            "serve the pinned adapter and ask the agent the seed case",
            {"code": serving_code, "pin": registered["pin"], "base": base["sha"], "case": SEED_CASE},
            lambda: self.serve_and_ask(base["path"]),
            force=s.keep_running,  # the services must be up to talk to
        )
        return {"registered": registered, "evaluation": evaluation, "threshold": threshold, **answer}

    def _build_base(self) -> dict:
        import warnings

        from transformers.utils import logging as hf_logging

        from local.tiny import PretrainSettings, pretrain_tiny_model

        s, w = self.s, self.work
        spec, corpus, base = w / "corpus" / "agent_spec.json", w / "corpus" / "base.jsonl", w / "base"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(json.dumps(agent_spec(), indent=2, ensure_ascii=False))
        self.program(
            "generate.py", "--corpus", "--agent-spec", str(spec), "--output", str(corpus),
            "--count", str(s.corpus), "--seed", "11",
        )  # fmt: skip
        documents = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
        shutil.rmtree(base, ignore_errors=True)
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        started = time.monotonic()

        def report(step: int, steps: int, loss: float, elapsed: float) -> None:
            self._training_progress(step, steps, loss, elapsed / step * (steps - step))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = pretrain_tiny_model(
                base, documents, PretrainSettings(**PRETRAINING, threads=s.threads), progress=report
            )
        summary["seconds"] = round(time.monotonic() - started, 1)
        return {"path": str(base), "sha": _hash_tree(base), "summary": summary}

    def _train(self, base: dict, data: dict, env: dict[str, str]) -> dict:
        s, w = self.s, self.work
        model_dir, checkpoints = w / "adapter", w / "checkpoints"
        for d in (model_dir, checkpoints):  # new inputs: never resume from another run's checkpoints
            shutil.rmtree(d, ignore_errors=True)

        def on_line(line: str) -> None:
            if line.startswith("TRAIN_PROGRESS "):
                p = json.loads(line.removeprefix("TRAIN_PROGRESS "))
                self._training_progress(p["step"], p["max_steps"], p["loss"], p["remaining_s"])

        self.program(
            "train.py",
            "--train-dir", f"{data['path']}/train",
            "--base-model", base["path"],
            "--model-dir", str(model_dir),
            "--checkpoint-dir", str(checkpoints),
            "--lora-rank", str(s.lora_rank),
            "--lora-alpha", str(2 * s.lora_rank),
            "--target-modules", "all-linear",
            "--max-steps", str(s.max_steps),
            "--batch-size", "8",
            "--gradient-accumulation-steps", "1",
            "--max-length", "384",
            "--learning-rate", "1e-2",
            "--logging-steps", "5",
            "--save-steps", str(s.max_steps),
            env=env,
            on_line=on_line,
        )  # fmt: skip
        run = json.loads((model_dir / "training_run.json").read_text())
        return {"path": str(model_dir), "sha": _hash_tree(model_dir), "mlflow_run_id": run.get("mlflow_run_id")}

    def _evaluate(self, base: dict, data: dict, adapter: dict, env: dict[str, str]) -> dict:
        reports = {}
        for name, args, program_env in (
            ("base", ["--base-only"], {}),  # the starting point, not tracked as the run's evaluation
            ("tuned", ["--model-dir", adapter["path"]], env),
        ):
            out = self.work / "evaluation" / name
            shutil.rmtree(out, ignore_errors=True)
            self.program(
                "evaluate.py", *args,
                "--base-model", base["path"],
                "--test-dir", f"{data['path']}/test",
                "--output-dir", str(out),
                "--max-samples", str(self.s.eval_samples),
                "--max-new-tokens", "96",
                "--batch-size", "10",
                env=program_env,
            )  # fmt: skip
            reports[name] = json.loads((out / "evaluation.json").read_text())
        labels = [json.loads(line)["diagnosis"] for line in (Path(data["path"]) / "test" / "test.jsonl").open()]
        sample = labels[: self.s.eval_samples]
        most_frequent = max(set(sample), key=sample.count)
        return {**reports, "chance": sample.count(most_frequent) / len(sample), "diagnoses": len(set(labels))}

    def register_if_passing(self, adapter: dict, evaluation: dict, threshold: float) -> dict:
        """Register the model version only when its accuracy passes the gate; ``GateFailed`` says why not."""
        accuracy = accuracy_of(evaluation["tuned"])
        if accuracy < threshold:
            raise GateFailed(
                f"quality gate: held-out accuracy {accuracy:.2f} is below {threshold} (training.accuracy_threshold "
                f"of {self.s.environment}, config/{self.s.environment}.yaml): the model version is not registered "
                "and not served"
            )
        import mlflow
        from mlflow import MlflowClient

        uri = self.mlflow()
        client = MlflowClient(tracking_uri=uri)
        run_id = adapter["mlflow_run_id"]
        mlflow.set_tracking_uri(uri)
        with mlflow.start_run(run_id=run_id):
            mlflow.log_artifacts(adapter["path"], artifact_path="adapter")
            mlflow.log_text(MODEL_CARD, "model_card.md")
            mlflow.log_metric("eval_base_diagnosis_accuracy", accuracy_of(evaluation["base"]))
        if not client.search_registered_models(filter_string=f"name='{MODEL_NAME}'"):
            client.create_registered_model(
                MODEL_NAME, description=MODEL_CARD, tags={"intended_use": "clinical decision support (training)"}
            )
        version = client.create_model_version(
            MODEL_NAME,
            source=f"runs:/{run_id}/adapter",
            run_id=run_id,
            description=MODEL_CARD,
            tags={
                "adapter_sha256": adapter["sha"],
                "accuracy": str(accuracy),
                "base_model_accuracy": str(accuracy_of(evaluation["base"])),
                "accuracy_threshold": str(threshold),
                "synthetic_data": "true",
            },
            await_creation_for=0,  # a local store creates it at once; no "waiting" chatter
        )
        pin = self._pin(adapter, int(version.version), run_id)
        return {
            "model": MODEL_NAME,
            "version": version.version,
            "run_id": run_id,
            "tracking_uri": uri,
            "experiment_id": client.get_run(run_id).info.experiment_id,
            "lock": str(self.lock_path),
            "pin": pin.model_dump(mode="json", exclude_none=True),
        }

    @property
    def lock_path(self) -> Path:
        """The demo's own model lock (never the committed config/models.lock.json)."""
        return self.work / LOCK_FILE

    def _pin(self, adapter: dict, version: int, run_id: str | None) -> AdapterPin:
        """The registered version as the demo's pin: its archive (deterministic .tar.gz), SHA-256 and lineage, in the
        format of config/models.lock.json (a ``models:/`` registry version and a ``file://`` archive: local only)."""
        from ops.pin import write
        from stacks.constructs.source_archive import archive_bytes

        data = archive_bytes(Path(adapter["path"]))
        archive = self.work / "registry" / f"{MODEL_NAME}-{version}.tar.gz"
        archive.parent.mkdir(parents=True, exist_ok=True)
        archive.write_bytes(data)
        pin = AdapterPin(
            name=ADAPTER,
            base=BASE_COMPONENT,
            model_package=f"models:/{MODEL_NAME}/{version}",
            model_package_version=version,
            source_uri=archive.as_uri(),
            sha256=hashlib.sha256(data).hexdigest(),
            lora_rank=self.s.lora_rank,
            mlflow_run_id=run_id,
        )
        write(load_model_lock(self.lock_path).with_pin(ADAPTER, pin), self.lock_path)
        return pin

    def _pinned_copy(self) -> AdapterPin:
        """The pinned adapter, unpacked from its archive once the archive's SHA-256 is the pin's (as each
        environment's Custom::AdapterCopy checks its copy)."""
        pin = next((a for a in load_model_lock(self.lock_path).adapters if a.name == ADAPTER), None)
        if pin is None:
            raise RuntimeError(f"{self.lock_path} pins no {ADAPTER}: run the register step again (--fresh)")
        archive = Path(pin.source_uri.removeprefix("file://"))
        if hashlib.sha256(archive.read_bytes()).hexdigest() != pin.sha256:
            raise RuntimeError(f"{archive} is not the pinned archive (sha256 {pin.sha256}): run with --fresh")
        target = self.work / "serving" / pin.artifact_key.removesuffix(".tar.gz")
        shutil.rmtree(target, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        return pin.model_copy(update={"source_uri": target.as_uri()})

    def serve_and_ask(self, base: str, *, adapter: bool = True) -> dict:
        """Serve ``base`` (and the pinned adapter, for ``diagnose``) and ask the agent the seed case; what it did."""
        import httpx

        from local.aws import client as aws_client
        from local.aws import provision, start_moto
        from local.server import free_port

        self.say("      starting local S3 + DynamoDB (moto) with synthetic patients ...")
        self.services["moto"] = start_moto()
        resources = provision(self.services["moto"].url, patients=self.s.patients)
        s3 = aws_client("s3", resources.endpoint_url, resources.region)
        ddb = aws_client("dynamodb", resources.endpoint_url, resources.region)
        from agent.patients import SEED_PATIENT, PatientStore

        PatientStore(resources.table, ddb).put_all([SEED_PATIENT])

        self.say("      starting the CPU backend behind the SageMaker front ...")
        front_port, engine_port = free_port(), free_port()
        front = self.start(
            "front",
            [
                PY, str(ROOT / "containers" / "sglang" / "serve"),
                "--host", "127.0.0.1", "--port", str(front_port), "--engine-port", str(engine_port),
            ],
            port=front_port,
            timeout=180,
            env={
                "SM_SGLANG_MODEL_PATH": base,
                "SM_SGLANG_SERVED_MODEL_NAME": BASE_COMPONENT,
                "SM_ENGINE_COMMAND": f"{PY} -m local.backend --model {base} --threads {self.s.threads} "
                f"--served-model-name {BASE_COMPONENT} --host {{host}} --port {{port}}",
            },
        )  # fmt: skip
        routes = ["--route", f"{ENDPOINT}/{BASE_COMPONENT}={front}"]
        if adapter:
            pinned = self._pinned_copy()
            served = pinned.source_uri.removeprefix("file://")
            r = httpx.post(f"{front}/adapters", json={"name": pinned.name, "src": served}, timeout=120)
            if r.status_code != 200:
                raise RuntimeError(f"loading the adapter through POST /adapters failed: {r.status_code} {r.text}")
            self.say(
                f"      adapter {pinned.name} (version {pinned.model_package_version}, pinned in "
                f"{self.lock_path.name}) loaded through POST /adapters"
            )
            routes += ["--route", f"{ENDPOINT}/{pinned.name}={front}#adapter={pinned.name}"]
        runtime_port = free_port()
        runtime = self.start(
            "sagemaker-runtime",
            [PY, "-m", "local.sagemaker_runtime", "--port", str(runtime_port), *routes],
            port=runtime_port,
            env={},
        )

        self.say("      starting the agent app (agent.app --local) ...")
        agent_port = free_port()
        mlflow_uri = self.mlflow()
        agent = self.start(
            "agent",
            [PY, "-m", "agent.app", "--local", "--port", str(agent_port)],
            port=agent_port,
            env={
                **resources.env(),
                "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime,
                "SAGEMAKER_ENDPOINT_NAME": ENDPOINT,
                "SAGEMAKER_INFERENCE_COMPONENT": BASE_COMPONENT,  # the agent loop: the base learned the tools
                "DIAGNOSIS_INFERENCE_COMPONENT": ADAPTER if adapter else BASE_COMPONENT,  # diagnose: the fine-tune
                "MODEL_MAX_TOKENS": "200",
                "MODEL_TEMPERATURE": "0",
                "AGENT_MAX_TURNS": "6",
                "MLFLOW_TRACKING_URI": mlflow_uri,
                "MLFLOW_EXPERIMENT_NAME": "clinical-agent-demo-traces",
            },
        )

        self.say("      POST /invocations with the seed case ...")
        asked_ms = int(time.time() * 1000)
        r = httpx.post(
            f"{agent}/invocations",
            json={"case": SEED_CASE},
            timeout=600,
            headers={"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": "demo-session-0001-abcdefghijklmnopq"},
        )
        if r.status_code != 200:
            raise AgentFailed(r.status_code, r.text)
        result = r.json()
        bucket, key = result["report_uri"].removeprefix("s3://").split("/", 1)
        head = s3.head_object(Bucket=bucket, Key=key)  # the report really is there, encrypted
        report = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        local_copy = self.work / "reports" / key  # moto keeps objects in memory: keep a copy to read later
        local_copy.parent.mkdir(parents=True, exist_ok=True)
        local_copy.write_bytes(report)
        trace = self._wait_for_trace(mlflow_uri, "clinical-agent-demo-traces", since_ms=asked_ms)
        return {
            "answer": result.get("answer", ""),
            "tools_called": result.get("tools_called", []),
            "report_source": result.get("report_source"),
            "report_uri": result["report_uri"],
            "report": report.decode("utf-8"),
            "report_encryption": head.get("ServerSideEncryption"),
            "report_bytes": head["ContentLength"],
            "report_copy": str(local_copy),
            "agent_url": agent,
            "trace": trace,
        }

    def _wait_for_trace(self, uri: str, experiment: str, *, since_ms: int, timeout: float = 60) -> dict:
        """This request's trace (the store keeps earlier runs' traces too)."""
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exp = client.get_experiment_by_name(experiment)
            traces = client.search_traces(locations=[exp.experiment_id]) if exp else []
            for t in (t for t in traces if t.info.timestamp_ms >= since_ms):
                names = sorted({sp.name for sp in t.data.spans})
                if exp and "diagnose" in names:
                    return {"trace_id": t.info.trace_id, "experiment_id": exp.experiment_id, "spans": names}
            time.sleep(0.5)
        raise RuntimeError(
            f"no trace with the model-call span reached MLflow experiment {experiment} in {timeout:.0f} s"
        )


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo like Ctrl-C: every service is stopped by PID


def links(result: dict) -> list[str]:
    reg, trace = result["registered"], result["trace"]
    base = reg["tracking_uri"]
    return [
        f"MLflow run:    {base}/#/experiments/{reg['experiment_id']}/runs/{reg['run_id']}",
        f"model version: {base}/#/models/{reg['model']}/versions/{reg['version']}",
        f"trace:         {base}/#/experiments/{trace['experiment_id']}/traces?selectedEvaluationId={trace['trace_id']}",
    ]


def summary(result: dict, settings: Settings) -> list[str]:
    """What a person reads at the end: what the models learned, what the agent did, where to look."""
    ev, reg = result["evaluation"], result["registered"]
    tuned, base = ev["tuned"], ev["base"]
    source = {
        "agent": "the model (the agent's own upload_diagnostic_report call)",
        "app": "the app's fallback (the model stored no report; the app asked diagnose and stored it)",
    }
    lines = [
        f"\n== what the models learned (held-out synthetic cases, {tuned['samples']['answered']} answered, "
        f"{ev['diagnoses']} diagnoses) ==",
        f"base model, before the fine-tune: accuracy {accuracy_of(base):.2f} "
        f"(answers in the trained format: {base['language_model_metrics']['diagnosis_format_rate']['value']:.0%})",
        f"after the LoRA fine-tune:         accuracy {accuracy_of(tuned):.2f}",
        f"chance (always the most frequent diagnosis): {ev['chance']:.2f}",
        f"quality gate ({settings.environment}: accuracy >= {result['threshold']}): passed; "
        f"registered {reg['model']} version {reg['version']}, pinned in {reg['lock']}",
        "\n== the agent's answer ==",
        result["answer"].strip() or "(no text)",
        "",
        f"tools the agent called: {' -> '.join(result['tools_called']) or 'none'}",
        f"report written by:      {source.get(result['report_source'], result['report_source'])}",
        f"report:        {result['report_uri']} ({result['report_bytes']} bytes, {result['report_encryption']})",
        f"               a copy: {result['report_copy']}",
        *links(result),
        f"spans:         {', '.join(result['trace']['spans'])}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, default=ROOT / ".demo")
    p.add_argument("--fresh", action="store_true", help="ignore the cache and run every step (make demo FRESH=1)")
    p.add_argument(
        "--keep-running", action="store_true", help="leave the services up to talk to the agent, until Ctrl-C"
    )
    numbers = [f for f in fields(Settings) if f.type in ("int", int)]
    for f in numbers:
        p.add_argument(f"--{f.name.replace('_', '-')}", type=int, default=f.default)
    p.add_argument("--environment", default=Settings.environment, help="whose accuracy gate applies (default dev)")
    args = p.parse_args(argv)
    settings = Settings(**vars(args))
    os.environ.update(QUIET)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # the sagemaker-mlflow plugin warns on every request to a non-ARN tracking URI: harmless here
    logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    demo = Demo(settings)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = demo.run()
        for line in summary(result, settings):
            demo.say(line)
        if demo.skipped and not demo.ran:
            demo.say(
                "\nNothing changed since the last run: every step was skipped (`make demo FRESH=1` runs them"
                " again; `make mlflow-ui` serves the links above)."
            )
        if settings.keep_running and demo.services:
            case = json.dumps({"case": SEED_CASE | {"symptoms": ["wheezing", "tight chest"]}})
            demo.say(
                f"\nThe services are up. Talk to the agent:\n  curl -s {result['agent_url']}/invocations "
                f"-H 'Content-Type: application/json' -d '{case}'\nCtrl-C stops them."
            )
            signal.pause()
        return 0
    except GateFailed as e:
        demo.say(f"\n{e}")
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        return 130
    finally:
        demo.stop_all()
        (settings.workdir / "state" / "last_result.json").write_text(
            json.dumps({"ran": demo.ran, "skipped": demo.skipped})
        )


if __name__ == "__main__":
    sys.exit(main())
