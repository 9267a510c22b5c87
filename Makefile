# Two commands matter: `make synth` and `make test`. Both set everything up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CDK := node_modules/.bin/cdk
ENV ?= dev
FAIL_ON ?=
SGLANG_VERSION := 0.5.23

# Offline targets never look for credentials (no EC2 metadata probe); `deploy` must find them wherever they are
# (instance roles included), so the variable is set per target, not for the whole Makefile.
OFFLINE := AWS_EC2_METADATA_DISABLED=true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup runtime-python graphviz synth test check format bench diff deploy deploy-preflight snapshot diagram \
	demo mlflow-ui lint clean watch rules exec-policy bootstrap weights data train approve pin ask status destroy cost

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.stamp: requirements.txt requirements-dev.txt requirements-sglang-parser.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0          # the local CPU build, before anything that depends on torch
	$(PIP) install --quiet -r requirements-dev.txt -r requirements-sglang-parser.txt -c constraints.txt
	$(PIP) install --quiet --no-deps sglang==$(SGLANG_VERSION)   # its parser only; see requirements-sglang-parser.txt
	touch $@

node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The deployed runtimes' Python (AgentCore PYTHON_3_13, Lambda python3.13; stacks/constructs/agent_package.py): it
# compiles the agent package's bytecode, and the tests run the package and the Lambda's handler on it. The project's
# virtualenv stays on Python 3.11 (the local CPU build of torch is for 3.11). Found as $$AGENT_PYTHON, python3.13 on
# PATH, or a pyenv-installed 3.13.
RUNTIME_PYTHON := 3.13
runtime-python: $(VENV)/.stamp ## check that Python 3.13 (the deployed runtimes') is here: python3.13 on PATH or AGENT_PYTHON
	@$(PY) -m stacks.constructs.pip_install $(RUNTIME_PYTHON) AGENT_PYTHON

setup: $(VENV)/.stamp node_modules/.stamp runtime-python ## create the virtualenv, install the pinned CDK CLI, check Python 3.13

# Graphviz's `dot` lays out and renders the architecture pictures (the `diagrams` library calls it); its fonts make
# them readable. Debian's packages, installed like the rest of the toolchain where apt-get is available.
GRAPHVIZ_PACKAGES := graphviz fonts-dejavu-core
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
graphviz: ## install Graphviz (dot) for the diagrams if it is missing (apt-get; elsewhere it says what to install)
	@command -v dot >/dev/null || { \
		command -v apt-get >/dev/null || { echo "Graphviz's dot is missing: install Graphviz (https://graphviz.org/download/)" >&2; exit 1; }; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $(GRAPHVIZ_PACKAGES) >/dev/null; }

synth: setup ## synthesize every environment into cdk.out and print a summary
	rm -rf cdk.out
	$(OFFLINE) $(CDK) synth --quiet "**"   # "**" selects the stacks inside the stages: findings fail here
	$(PY) -m tools.summary cdk.out

rules: setup ## list the deploy-readiness rules (stacks/readiness.py) with the AWS pages they encode
	$(OFFLINE) $(PY) -m stacks.readiness

exec-policy: synth ## regenerate docs/cfn-exec-policy*.json (cdk bootstrap's execution policies) from the templates
	$(PY) -m tools.exec_policy cdk.out > docs/cfn-exec-policy.json
	$(PY) -m tools.exec_policy cdk.out --tooling > docs/cfn-exec-policy-tooling.json

test: setup graphviz ## run every test
	$(OFFLINE) $(PY) -m pytest

check: setup ## format check, lint and type check (ruff, mypy), as CI runs them
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: setup ## format the code and apply ruff's safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup ## run the benchmarks (ratios measured in one run)
	@for b in bench/*.py; do echo "== $$b"; $(OFFLINE) $(PY) $$b || exit 1; done

snapshot: setup ## refresh the reviewed baselines in baselines/ (review the diff!)
	$(OFFLINE) $(PY) -m tools.baselines --update

diff: setup ## audit: ENV's synth against its baseline (FAIL_ON=never|any-change|broadening|destructive; PIN=lock file)
	$(OFFLINE) $(PY) -m tools.audit_diff --env $(ENV) $(if $(FAIL_ON),--fail-on $(FAIL_ON)) $(if $(PIN),--models-lock "$$PIN")

deploy-preflight: setup ## what a deploy needs here: a Docker daemon (and a login to the training base registry)
	@docker info >/dev/null 2>&1 || { echo "make deploy builds the SGLang and training images with Docker at publish" \
		"time, and no Docker daemon is reachable here: start Docker (or deploy through the delivery pipeline," \
		"which builds them in CodeBuild)." >&2; exit 1; }
	@registry=$$($(PY) -c 'from stacks.settings import load_environment as l; t = l("$(ENV)").training; \
		print(t.base_image.split("/")[0] if t else "")'); \
		[ -z "$$registry" ] || { region=$$(echo $$registry | cut -d. -f4); \
		aws ecr get-login-password --region $$region | docker login --username AWS --password-stdin $$registry \
		>/dev/null || { echo "cannot log in to $$registry (the PyTorch DLC the training image is built FROM):" \
		"check your AWS credentials" >&2; exit 1; }; }

deploy: deploy-preflight ## deploy one environment directly: make deploy ENV=dev (needs credentials for its account)
	$(CDK) deploy "$$($(PY) -c 'from stacks.settings import load_environment as l; print(l("$(ENV)").stage_id)')/*" \
		-c environments=$(ENV) --require-approval broadening

# Development only: hotswap updates the runtime outside CloudFormation (drift until the next deploy). The CLI
# hotswaps AWS::BedrockAgentCore::Runtime since 2.1102.0 (https://github.com/aws/aws-cdk-cli/releases/tag/aws-cdk%40v2.1102.0);
# any other change of the Agent stack falls back to a CloudFormation deployment. cdk.json's "watch" says which files count.
watch: setup ## redeploy ENV's agent on every change of its code (cdk watch, hotswap; development tier only)
	@stage=$$($(PY) -c 'import sys; from stacks.settings import load_environment as l; e = l("$(ENV)"); \
		print(e.stage_id) if e.tier == "development" else sys.exit(f"make watch hotswaps the agent outside \
		CloudFormation: development tier only ({e.name} is {e.tier})")') || exit 1; \
		$(CDK) watch --hotswap-fallback --exclusively "$$stage/Agent" -c environments=$(ENV)

diagram: synth graphviz ## draw docs/architecture.png (the system) and docs/architecture-detail.png (every construct) from cdk.out (STAGE=Prod)
	$(OFFLINE) $(PY) -m tools.diagram cdk.out --stage $(or $(STAGE),Prod) \
		--output docs/architecture.png --detail-output docs/architecture-detail.png

lint: synth ## cfn-lint over every synthesized template
	$(OFFLINE) $(VENV)/bin/cfn-lint --ignore-checks W3005 -- $$(find cdk.out -name '*.template.json')

demo: setup ## the whole system on this machine: train, register, serve, ask the agent (FRESH=1 reruns all)
	$(OFFLINE) $(PY) -m local.demo $(if $(FRESH),--fresh)

mlflow-ui: setup ## serve the demo's MLflow (runs, registry, traces) on http://127.0.0.1:5050
	$(VENV)/bin/mlflow server --backend-store-uri sqlite:///$(CURDIR)/.demo/mlflow/mlflow.db \
		--artifacts-destination $(CURDIR)/.demo/mlflow/artifacts --host 127.0.0.1 --port 5050 --workers 1

# --- the cloud journey (python -m ops; docs/runbook.md). Values with spaces or quotes (PROMPT, FROM, CASE) reach the
# command through the environment, so they need no escaping. ARGS= passes any other option (see --help).
OPS := $(PY) -m ops

bootstrap: setup ## cdk bootstrap ENV's account/region with the pipeline's trust (POLICY=policy-arn, NO_TRUST=1)
	$(OPS) bootstrap --env $(ENV) $(foreach p,$(POLICY),--execution-policy $(p)) $(if $(NO_TRUST),--no-trust) $(ARGS)

weights: setup ## base weights where ENV's config says them; FROM=snapshot-dir uploads (skips unchanged files)
	$(OPS) weights --env $(ENV) $(if $(FROM),--from "$$FROM") $(if $(MODEL),--model $(MODEL)) $(ARGS)

data: setup ## generate (or FROM=records.jsonl) the training data, check it against the schema, upload it
	$(OPS) data --env $(ENV) $(if $(FROM),--from "$$FROM") $(ARGS)

train: setup ## start the fine-tuning pipeline and follow it (PARAMS="Epochs=2 ...", NO_WAIT=1, FOLLOW=arn|latest)
	$(OPS) train --env $(ENV) $(foreach p,$(PARAMS),--param $(p)) $(if $(NO_WAIT),--no-wait) \
		$(if $(FOLLOW),--follow $(FOLLOW)) $(ARGS)

approve: setup ## review the candidate model version and approve it (VERSION=n, YES=1)
	$(OPS) approve --env $(ENV) $(if $(VERSION),--version $(VERSION)) $(if $(YES),--yes) $(ARGS)

pin: setup ## pin the registry's highest approved version in config/models.lock.json (ENV: the one that trains)
	$(OPS) pin --env $(ENV) $(if $(OUTPUT),--output "$$OUTPUT") $(ARGS)

ask: setup ## ask the deployed agent: PROMPT="..." or CASE=file.json (NEW_SESSION=1 starts a new session)
	$(OPS) ask --env $(ENV) $(if $(PROMPT),--prompt "$$PROMPT") $(if $(CASE),--case "$$CASE") \
		$(if $(NEW_SESSION),--new-session) $(ARGS)

status: setup ## one screen: stacks, endpoint and components, served adapter, last pipeline run, agent runtime
	$(OPS) status --env $(ENV)

destroy: setup ## tear ENV down in order, with what CloudFormation cannot delete; refuses staging/prod (YES=1)
	$(OPS) destroy --env $(ENV) $(if $(YES),--yes) $(ARGS)

cost: setup ## monthly cost envelope at minimum and maximum scale, every environment (or ENV=...)
	$(OPS) cost $(if $(filter command line,$(origin ENV)),--env $(ENV))

clean: ## remove build outputs and the demo's state (keeps the virtualenv)
	rm -rf cdk.out .pytest_cache .demo
