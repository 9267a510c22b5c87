"""``python -m ops COMMAND --env ENV``: the cloud steps, one command each (the make targets wrap them)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer

from ops import cloud as cloud_module
from ops.errors import Interrupted, OpsError, explain
from ops.ui import errors
from stacks.settings import (
    CONFIG_DIR,
    LOCK_FILE,
    TIERS,
    ConfigError,
    known_environments,
    load_delivery,
    load_environment,
)

app = typer.Typer(
    help="Operate the clinical agent in AWS: every name comes from config/<env>.yaml and the deployed stacks.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
Env = Annotated[str, typer.Option("--env", "-e", help="the environment: a file in config/ (dev, staging, prod)")]
F = TypeVar("F", bound=Callable[..., Any])


def connect(env: str) -> cloud_module.Cloud:
    """The environment's cloud (tests replace this)."""
    return cloud_module.connect(env)


def explained(fn: F) -> F:
    """Failures end in a sentence and an exit code, never a traceback; Ctrl-C says how to resume."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Interrupted as e:
            errors.print(f"\nstopped waiting (Ctrl-C) for {e.what}; it continues in AWS. Resume with: {e.resume}")
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            errors.print("\ninterrupted (Ctrl-C); run the same command again to continue (finished steps are skipped)")
            raise typer.Exit(130) from None
        except OpsError as e:
            errors.print(f"error: {e}", markup=False)
            raise typer.Exit(e.exit_code) from None
        except ConfigError as e:
            errors.print(f"error: {e}", markup=False)
            raise typer.Exit(2) from None
        except Exception as e:
            message = explain(e)
            if message is None:
                raise
            errors.print(f"error: {message}", markup=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@explained
def bootstrap(
    env: Env,
    execution_policy: Annotated[
        list[str] | None,
        typer.Option(
            help="IAM policy ARN CloudFormation deploys with (repeatable); required with the pipeline's trust"
        ),
    ] = None,
    trust: Annotated[bool, typer.Option(help="trust the delivery pipeline's account (config/delivery.yaml)")] = True,
    dry_run: Annotated[bool, typer.Option(help="print the cdk command without running it")] = False,
) -> None:
    """`cdk bootstrap` of the environment's account and region, with the trust the delivery pipeline needs."""
    from ops.cdk import bootstrap_args, run_cdk

    cloud = connect(env)
    args = bootstrap_args(cloud.settings, load_delivery(), policies=execution_policy or [], trust=trust)
    if not dry_run:
        cloud.identity()
    run_cdk(args, dry_run=dry_run)


@app.command()
@explained
def weights(
    env: Env,
    source: Annotated[
        Path | None, typer.Option("--from", help="a local model snapshot folder to upload (config.json, *.safetensors)")
    ] = None,
    model: Annotated[str | None, typer.Option(help="only this model (inference.models[].name)")] = None,
) -> None:
    """Base weights where the config says: checked, uploaded from a snapshot (--from; unchanged files skipped), or
    a licence-gated hosted source verified.

    Every model's weights come from its settings: an S3 prefix of the artifacts bucket, or a JumpStart model whose
    access and licence acceptance are verified instead of copying.
    """
    from ops import weights as w

    w.run(connect(env), source=source, model=model)


@app.command()
@explained
def data(
    env: Env,
    source: Annotated[
        Path | None, typer.Option("--from", help="a JSON-lines file of records to upload instead")
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="records to generate")] = 2000,
    seed: Annotated[int, typer.Option(help="generator seed (same seed, same records)")] = 7,
    replace: Annotated[bool, typer.Option(help="remove other files under the dataset prefix")] = False,
) -> None:
    """Training data: generated (or --from FILE), checked record by record against the schema, then uploaded.

    It lands where the pipeline reads it: s3://<datasets bucket>/<training.dataset_prefix>/records.jsonl.
    """
    from ops import data as d

    d.run(connect(env), source=source, count=count, seed=seed, replace=replace)


@app.command()
@explained
def train(
    env: Env,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="a pipeline parameter NAME=VALUE (repeatable)")
    ] = None,
    wait: Annotated[bool, typer.Option(help="follow the execution until it ends")] = True,
    follow: Annotated[
        str | None, typer.Option(help="follow an execution (its ARN, or 'latest') instead of starting one")
    ] = None,
    interval: Annotated[float, typer.Option(min=1, help="seconds between status checks")] = 30,
    timeout: Annotated[
        float | None, typer.Option(help="give up following after this many seconds (default: the jobs' limits)")
    ] = None,
) -> None:
    """Start the fine-tuning pipeline and follow it step by step (a failed step: reason, logs, exit 1).

    Parameters are checked against the deployed pipeline's own (name, type, allowed values). Ctrl-C stops
    following (the execution continues); --follow ARN|latest picks it up again.
    """
    from ops import train as t

    t.run(connect(env), params=param or [], wait=wait, follow_arn=follow, interval=interval, timeout=timeout)


@app.command()
@explained
def approve(
    env: Env,
    version: Annotated[
        int | None, typer.Option(min=1, help="the version (default: the newest awaiting approval)")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="approve without asking")] = False,
) -> None:
    """Show the candidate model version (metrics, quality gate, model card, training run) and approve it."""
    from ops import approve as a

    def confirm(question: str) -> bool:
        try:
            return typer.confirm(question, default=False)
        except click.Abort:
            return False

    a.run(connect(env), version=version, yes=yes, confirm=confirm)


@app.command()
@explained
def pin(
    env: Env,
    lock: Annotated[Path, typer.Option(help="the model lock to update")] = CONFIG_DIR / LOCK_FILE,
    output: Annotated[Path | None, typer.Option(help="write the updated lock here instead of --lock")] = None,
) -> None:
    """Pin the registry's highest approved version: its archive, SHA-256 and lineage, in config/models.lock.json.

    ENV is the environment that trains (its model package group is the registry of record). No approved version
    removes the pin: every environment then serves its base model. Commit the file; `make diff ENV=prod` shows what
    it changes.
    """
    from ops import pin as p

    p.run(connect(env), lock_path=lock, output=output)


@app.command()
@explained
def ask(
    env: Env,
    prompt: Annotated[str | None, typer.Option(help="a free-text question")] = None,
    case: Annotated[Path | None, typer.Option(help="a JSON case file (e.g. ops/cases/seed-case.json)")] = None,
    new_session: Annotated[bool, typer.Option(help="start a new session instead of following up")] = False,
    wait: Annotated[float, typer.Option(min=0, help="seconds to wait for a scaled-to-zero endpoint")] = 900,
) -> None:
    """Ask the deployed agent; the answer streams as it arrives, then the report URI and the trace location."""
    from ops import ask as k

    k.run(connect(env), prompt=prompt, case=case, new_session=new_session, wait=wait)


@app.command()
@explained
def status(env: Env) -> None:
    """One screen: stacks, endpoint and components, the served adapter, the last pipeline run, the runtime."""
    from ops import status as s

    s.run(connect(env))


@app.command()
@explained
def destroy(
    env: Env,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask to type the environment's name")] = False,
    dry_run: Annotated[bool, typer.Option(help="show the plan, delete nothing")] = False,
) -> None:
    """Tear a disposable environment down in order, with what CloudFormation alone cannot delete.

    Refuses every environment whose tier is not development (staging, production).
    """
    from ops import destroy as d

    d.run(connect(env), yes=yes, dry_run=dry_run, confirm=lambda q: typer.prompt(q, default="", show_default=False))


@app.command()
@explained
def cost(env: Annotated[str | None, typer.Option("--env", "-e", help="one environment (default: all)")] = None) -> None:
    """The monthly cost envelope per environment at minimum and maximum scale, from ops/prices.yaml."""
    from ops import cost as c

    environments = [load_environment(n) for n in ([env] if env else known_environments())]
    c.run(sorted(environments, key=lambda s: (TIERS.index(s.tier), s.name)))  # development first


def main() -> None:
    app(prog_name="python -m ops")
