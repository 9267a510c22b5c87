"""`make demo`: the whole system on one machine, with the same code that runs on AWS.

    python -m local.demo [--workdir .demo] [--fresh] [--keep-running] [--records 400] [--max-steps 60]

1. build a tiny random-weight Llama base model (stands in for Llama 3.2 3B; nothing is downloaded)
2. generate the synthetic clinical dataset           training/generate.py
3. preprocess: validate, deduplicate, format, split   training/preprocess.py
4. LoRA fine-tune, tracked in MLflow                  training/train.py
5. evaluate on the held-out split                     training/evaluate.py
6. register the model version in MLflow's registry, with the model card, and pin it: its archive, SHA-256 and
   lineage in the demo's own model lock (<workdir>/models.lock.json, the format of config/models.lock.json)
7. serve and ask: a local S3 + DynamoDB (moto, synthetic patients), the CPU backend behind the
   same SageMaker front as the container, the pinned adapter (its archive checked against the pin, as each
   environment's copy is) loaded through POST /adapters, the SageMaker runtime emulator, and the agent app —
   then the seed case goes in as a structured request.

Every step is cached by a fingerprint of its inputs (code, settings, upstream outputs) in
<workdir>/state/: a second run skips what did not change, and says so. Services start only when a
step needs them and are all stopped by PID at the end, on error, or on Ctrl-C.
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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacks.settings import LOCK_FILE, AdapterPin, load_model_lock

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MODEL_NAME = "clinical-diagnosis-llama"  # the registered model (the registry's model package group on AWS)
ENDPOINT, BASE_COMPONENT, ADAPTER = "clinical-llm", "llama32-3b", "clinical-lora"
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
**Evaluation:** held-out loss, perplexity and diagnosis accuracy (see the run's metrics).
**Limitations:** this demo build uses a tiny random-weight base model; its answers are not meaningful.
"""


@dataclass(frozen=True)
class Settings:
    workdir: Path
    records: int = 400
    patients: int = 20
    max_steps: int = 60
    lora_rank: int = 8
    eval_samples: int = 16
    max_new_tokens: int = 48
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


def fingerprint(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


class Demo:
    def __init__(self, settings: Settings, out: Callable[[str], None] = print):
        self.s = settings
        self.out = out
        self.work = settings.workdir.resolve()
        self.state = self.work / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.services: dict[str, Any] = {}  # name → LocalServer, in start order
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self._n = 0

    # --- steps ------------------------------------------------------------------------------------

    def step(self, name: str, title: str, inputs: dict[str, Any], run: Callable[[], dict]) -> dict:
        self._n += 1
        stamp = self.state / f"{name}.json"
        fp = fingerprint(inputs)
        if not self.s.fresh and stamp.exists():
            saved = json.loads(stamp.read_text())
            if saved["fingerprint"] == fp:
                self.out(f"[{self._n}/7] {title}: skipped, inputs unchanged")
                self.skipped.append(name)
                return saved["outputs"]
        self.out(f"[{self._n}/7] {title} ...")
        start = time.perf_counter()
        stamp.unlink(missing_ok=True)  # nothing half-written: the stamp exists only after success
        outputs = run()
        stamp.write_text(json.dumps({"fingerprint": fp, "outputs": outputs}, indent=2, sort_keys=True))
        self.out(f"      done in {time.perf_counter() - start:.1f} s")
        self.ran.append(name)
        return outputs

    def program(self, script: str, *args: str, env: dict[str, str] | None = None) -> None:
        """Run a training program as SageMaker would, by its own entry point; fail with its output."""
        cmd = [PY, str(ROOT / "training" / script), *args]
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate()
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)  # Ctrl-C: stop the program by its PID too
            proc.wait()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"{script} exited with {proc.returncode}:\n{output[-3000:]}")

    # --- services ---------------------------------------------------------------------------------

    def mlflow(self) -> str:
        if "mlflow" not in self.services:
            from local.mlflow_server import start_mlflow

            self.out(f"      starting MLflow (sqlite in {self.work / 'mlflow'}) ...")
            self.services["mlflow"] = start_mlflow(self.work / "mlflow", port=self.s.mlflow_port or None)
        return self.services["mlflow"].url

    def start(
        self, name: str, args: list[str], *, port: int, env: dict[str, str], health: str = "/ping", timeout: float = 120
    ):
        from local.aws import LocalServer

        self.services[name] = LocalServer.start(args, port=port, env=env, health=health, timeout=timeout, cwd=ROOT)
        return self.services[name].url

    def stop_all(self) -> None:
        for name, server in reversed(list(self.services.items())):
            server.stop()
            self.out(f"      stopped {name} (pid {server.pid})")
        self.services.clear()

    # --- the flow ---------------------------------------------------------------------------------

    def run(self) -> dict:
        s, w = self.s, self.work
        training_code = _hash_tree(ROOT / "training")
        mlflow_env = lambda: {"MLFLOW_TRACKING_URI": self.mlflow(), "MLFLOW_EXPERIMENT_NAME": "clinical-diagnosis-demo"}  # noqa: E731

        def build_base() -> dict:
            from local.tiny import build_tiny_model

            shutil.rmtree(w / "base", ignore_errors=True)
            build_tiny_model(w / "base")
            return {"path": str(w / "base"), "sha": _hash_tree(w / "base")}

        base = self.step(
            "base",
            "tiny base model (random-weight Llama)",
            {"code": _hash_tree(ROOT / "local" / "tiny.py", ROOT / "training" / "llama3_2_training.jinja")},
            build_base,
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

        def train() -> dict:
            model_dir, checkpoints = w / "adapter", w / "checkpoints"
            for d in (model_dir, checkpoints):  # new inputs: never resume from another run's checkpoints
                shutil.rmtree(d, ignore_errors=True)
            self.program(
                "train.py",
                "--train-dir",
                f"{data['path']}/train",
                "--base-model",
                base["path"],
                "--model-dir",
                str(model_dir),
                "--checkpoint-dir",
                str(checkpoints),
                "--lora-rank",
                str(s.lora_rank),
                "--lora-alpha",
                str(2 * s.lora_rank),
                "--max-steps",
                str(s.max_steps),
                "--batch-size",
                "4",
                "--gradient-accumulation-steps",
                "1",
                "--max-length",
                "384",
                "--learning-rate",
                "2e-3",
                "--logging-steps",
                "5",
                "--save-steps",
                str(max(s.max_steps // 2, 1)),
                env=mlflow_env(),
            )
            run = json.loads((model_dir / "training_run.json").read_text())
            return {"path": str(model_dir), "sha": _hash_tree(model_dir), "mlflow_run_id": run.get("mlflow_run_id")}

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
            train,
        )

        def evaluate() -> dict:
            out = w / "evaluation"
            shutil.rmtree(out, ignore_errors=True)
            self.program(
                "evaluate.py",
                "--model-dir",
                adapter["path"],
                "--test-dir",
                f"{data['path']}/test",
                "--output-dir",
                str(out),
                "--base-model",
                base["path"],
                "--max-samples",
                str(s.eval_samples),
                "--max-new-tokens",
                str(s.max_new_tokens),
                env=mlflow_env(),
            )
            report = json.loads((out / "evaluation.json").read_text())
            return {"path": str(out / "evaluation.json"), "report": report}

        evaluation = self.step(
            "evaluate",
            "evaluate on the held-out split",
            {"code": training_code, "adapter": adapter["sha"], "samples": s.eval_samples},
            evaluate,
        )

        registered = self.step(
            "register",
            "register the model version (MLflow registry, model card) and pin it",
            {"adapter": adapter["sha"], "evaluation": evaluation["report"], "card": MODEL_CARD, "rank": s.lora_rank},
            lambda: self._register(adapter, evaluation),
        )

        serving_code = _hash_tree(ROOT / "agent", ROOT / "local", ROOT / "containers" / "sglang")
        answer = self.step(
            "ask",
            "serve the pinned adapter and ask the agent the seed case",
            {"code": serving_code, "pin": registered["pin"], "base": base["sha"], "case": SEED_CASE},
            lambda: self._serve_and_ask(base, registered),
        )
        return {"registered": registered, "evaluation": evaluation["report"], **answer}

    def _register(self, adapter: dict, evaluation: dict) -> dict:
        import mlflow
        from mlflow import MlflowClient

        uri = self.mlflow()
        client = MlflowClient(tracking_uri=uri)
        run_id = adapter["mlflow_run_id"]
        mlflow.set_tracking_uri(uri)
        with mlflow.start_run(run_id=run_id):
            mlflow.log_artifacts(adapter["path"], artifact_path="adapter")
            mlflow.log_text(MODEL_CARD, "model_card.md")
        if not client.search_registered_models(filter_string=f"name='{MODEL_NAME}'"):
            client.create_registered_model(
                MODEL_NAME, description=MODEL_CARD, tags={"intended_use": "clinical decision support (training)"}
            )
        metrics = evaluation["report"].get("metrics", {})
        version = client.create_model_version(
            MODEL_NAME,
            source=f"runs:/{run_id}/adapter",
            run_id=run_id,
            description=MODEL_CARD,
            tags={"adapter_sha256": adapter["sha"], "accuracy": str(metrics.get("accuracy")), "synthetic_data": "true"},
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

    def _serve_and_ask(self, base: dict, registered: dict) -> dict:
        import httpx

        from local.aws import client as aws_client
        from local.aws import free_port, provision, start_moto

        self.out("      starting local S3 + DynamoDB (moto) with synthetic patients ...")
        self.services["moto"] = start_moto()
        resources = provision(self.services["moto"].url, patients=self.s.patients)
        s3 = aws_client("s3", resources.endpoint_url, resources.region)
        ddb = aws_client("dynamodb", resources.endpoint_url, resources.region)
        from agent.patients import SEED_PATIENT, PatientStore

        PatientStore(resources.table, ddb).put_all([SEED_PATIENT])

        self.out("      starting the CPU backend behind the SageMaker front ...")
        front_port, engine_port = free_port(), free_port()
        front = self.start(
            "front",
            [
                PY,
                str(ROOT / "containers" / "sglang" / "serve"),
                "--host",
                "127.0.0.1",
                "--port",
                str(front_port),
                "--engine-port",
                str(engine_port),
            ],
            port=front_port,
            timeout=180,
            env={
                "SM_SGLANG_MODEL_PATH": base["path"],
                "SM_SGLANG_SERVED_MODEL_NAME": BASE_COMPONENT,
                "SM_ENGINE_COMMAND": f"{PY} -m local.backend --model {base['path']} "
                f"--served-model-name {BASE_COMPONENT} --host {{host}} --port {{port}}",
            },
        )
        pinned = self._pinned_copy()
        served = pinned.source_uri.removeprefix("file://")
        r = httpx.post(f"{front}/adapters", json={"name": pinned.name, "src": served}, timeout=120)
        if r.status_code != 200:
            raise RuntimeError(f"loading the adapter through POST /adapters failed: {r.status_code} {r.text}")
        self.out(
            f"      adapter {pinned.name} (version {pinned.model_package_version}, pinned in {self.lock_path.name}) "
            "loaded through POST /adapters"
        )

        runtime_port = free_port()
        runtime = self.start(
            "sagemaker-runtime",
            [
                PY,
                "-m",
                "local.sagemaker_runtime",
                "--port",
                str(runtime_port),
                "--route",
                f"{ENDPOINT}/{BASE_COMPONENT}={front}",
                "--route",
                f"{ENDPOINT}/{pinned.name}={front}#adapter={pinned.name}",
            ],
            port=runtime_port,
            env={},
            health="/ping",
        )

        self.out("      starting the agent app (agent.app --local) ...")
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
                "SAGEMAKER_INFERENCE_COMPONENT": pinned.name,  # the pinned adapter, as synth derives it
                "MODEL_MAX_TOKENS": str(self.s.max_new_tokens),
                "MODEL_TEMPERATURE": "0",
                "AGENT_MAX_TURNS": "2",
                "MLFLOW_TRACKING_URI": mlflow_uri,
                "MLFLOW_EXPERIMENT_NAME": "clinical-agent-demo-traces",
            },
        )

        self.out("      POST /invocations with the seed case ...")
        asked_ms = int(time.time() * 1000)
        r = httpx.post(
            f"{agent}/invocations",
            json={"case": SEED_CASE},
            timeout=600,
            headers={"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": "demo-session-0001-abcdefghijklmnopq"},
        )
        if r.status_code != 200:
            raise RuntimeError(f"the agent answered {r.status_code}: {r.text}")
        result = r.json()
        bucket, key = result["report_uri"].removeprefix("s3://").split("/", 1)
        head = s3.head_object(Bucket=bucket, Key=key)  # the report really is there, encrypted
        local_copy = self.work / "reports" / key  # moto keeps objects in memory: keep a copy to read later
        local_copy.parent.mkdir(parents=True, exist_ok=True)
        local_copy.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        trace = self._wait_for_trace(mlflow_uri, "clinical-agent-demo-traces", since_ms=asked_ms)
        return {
            "answer": result.get("answer", ""),
            "report_uri": result["report_uri"],
            "report_encryption": head.get("ServerSideEncryption"),
            "report_bytes": head["ContentLength"],
            "report_copy": str(local_copy),
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, default=ROOT / ".demo")
    p.add_argument("--fresh", action="store_true", help="ignore the cache and run every step")
    p.add_argument("--keep-running", action="store_true", help="leave the services up until Ctrl-C")
    for field in ("records", "patients", "max_steps", "lora_rank", "eval_samples", "max_new_tokens", "mlflow_port"):
        p.add_argument(f"--{field.replace('_', '-')}", type=int, default=Settings.__dataclass_fields__[field].default)
    args = p.parse_args(argv)
    settings = Settings(**{k: v for k, v in vars(args).items()})
    # The sagemaker-mlflow plugin warns on every request to a non-ARN tracking URI; harmless here.
    logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    demo = Demo(settings)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = demo.run()
        print(
            "\n== the agent's answer (a tiny random-weight model: the words mean nothing, the flow is real) ==\n"
            + (result["answer"].strip() or "(no text)")
        )
        print(
            f"\nreport:        {result['report_uri']} ({result['report_bytes']} bytes, {result['report_encryption']})"
        )
        print(f"               a copy: {result['report_copy']}")
        for line in links(result):
            print(line)
        print(f"spans:         {', '.join(result['trace']['spans'])}")
        if demo.skipped and not demo.ran:
            print(
                "\nNothing changed since the last run: every step was skipped (use --fresh to run them again;"
                " `make mlflow-ui` serves the links above)."
            )
        if settings.keep_running and demo.services:
            print("\nservices are up; Ctrl-C stops them")
            signal.pause()
        return 0
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
