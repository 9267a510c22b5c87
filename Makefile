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

.PHONY: help setup synth test check format bench diff deploy deploy-preflight snapshot diagram demo mlflow-ui lint \
	clean rules exec-policy

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

setup: $(VENV)/.stamp node_modules/.stamp ## create the virtualenv and install the pinned CDK CLI

synth: setup ## synthesize every environment into cdk.out and print a summary
	rm -rf cdk.out
	$(OFFLINE) $(CDK) synth --quiet "**"   # "**" selects the stacks inside the stages: findings fail here
	$(PY) -m tools.summary cdk.out

rules: setup ## list the deploy-readiness rules (stacks/readiness.py) with the AWS pages they encode
	$(OFFLINE) $(PY) -m stacks.readiness

exec-policy: synth ## regenerate docs/cfn-exec-policy*.json (cdk bootstrap's execution policies) from the templates
	$(PY) -m tools.exec_policy cdk.out > docs/cfn-exec-policy.json
	$(PY) -m tools.exec_policy cdk.out --tooling > docs/cfn-exec-policy-tooling.json

test: setup ## run every test
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

diff: setup ## audit: ENV's synth against its baseline (FAIL_ON=never|any-change|broadening|destructive gates)
	$(OFFLINE) $(PY) -m tools.audit_diff --env $(ENV) $(if $(FAIL_ON),--fail-on $(FAIL_ON))

deploy-preflight: setup ## what a deploy needs on this machine: a Docker daemon and a login to the training base registry
	@docker info >/dev/null 2>&1 || { echo "make deploy builds the SGLang and training images with Docker at publish" \
		"time, and no Docker daemon is reachable here: start Docker (or deploy through the delivery pipeline," \
		"which builds them in CodeBuild)." >&2; exit 1; }
	@registry=$$($(PY) -c 'from stacks.settings import load_environment as l; \
		print(l("$(ENV)").training.base_image.split("/")[0])'); \
		region=$$(echo $$registry | cut -d. -f4); \
		aws ecr get-login-password --region $$region | docker login --username AWS --password-stdin $$registry \
		>/dev/null || { echo "cannot log in to $$registry (the PyTorch DLC the training image is built FROM):" \
		"check your AWS credentials" >&2; exit 1; }

deploy: deploy-preflight ## deploy one environment directly: make deploy ENV=dev (needs credentials for its account)
	$(CDK) deploy "$$($(PY) -c 'from stacks.settings import load_environment as l; print(l("$(ENV)").stage_id)')/*" \
		-c environments=$(ENV) --require-approval broadening

diagram: synth ## render docs/architecture.png from the synthesized app (STAGE=Prod; one cluster per stack)
	$(OFFLINE) $(PY) -m tools.diagram cdk.out --stage $(or $(STAGE),Prod) --output docs/architecture.png

lint: synth ## cfn-lint over every synthesized template
	$(OFFLINE) $(VENV)/bin/cfn-lint --ignore-checks W3005 -- $$(find cdk.out -name '*.template.json')

demo: setup ## the whole system on this machine: train, register, serve, ask the agent (FRESH=1 reruns all)
	$(OFFLINE) $(PY) -m local.demo $(if $(FRESH),--fresh)

mlflow-ui: setup ## serve the demo's MLflow (runs, registry, traces) on http://127.0.0.1:5050
	$(VENV)/bin/mlflow server --backend-store-uri sqlite:///$(CURDIR)/.demo/mlflow/mlflow.db \
		--artifacts-destination $(CURDIR)/.demo/mlflow/artifacts --host 127.0.0.1 --port 5050 --workers 1

clean: ## remove build outputs and the demo's state (keeps the virtualenv)
	rm -rf cdk.out .pytest_cache .demo
