# Mentorstream: `make demo` runs the system, `make test` proves it. Both bring the local stack
# up first (installing what is missing), so a new machine needs nothing else.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

STACK := deploy/local/stack.sh
TOOLS_BIN := $(CURDIR)/.stack/tools/bin
export PATH := $(TOOLS_BIN):$(HOME)/.cargo/bin:$(PATH)
# Where cargo builds (a shared CARGO_TARGET_DIR is honoured).
TARGET := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
# The proto baseline `buf breaking` compares against: the previous commit.
BUF_AGAINST ?= HEAD~1

.PHONY: help
help:
	@echo "make demo        stack up, build, run all services, simulate a company, live KPIs"
	@echo "make test        stack up, fmt, clippy, buf lint/breaking, helm checks, every test"
	@echo "make helm-check  render, lint and validate the Helm chart; invalid values refused"
	@echo "make up | down   every service in the background, with a tenant and key (README)"
	@echo "make bench       seeded measurements (docs/benchmarks.md); bench-dashboard: live page latency"
	@echo "make screenshots the dashboards in chromium, both languages, into docs/dashboards/"
	@echo "make stack-up | stack-down | stack-status"

.PHONY: stack-up stack-down stack-status tools
stack-up:
	@$(STACK) up

stack-down:
	@$(STACK) down

stack-status:
	@$(STACK) status

tools:
	@deploy/local/tools.sh >/dev/null

.PHONY: fmt-check clippy proto-check
fmt-check:
	cargo fmt --all --check

clippy:
	cargo clippy --workspace --all-targets --locked -- -D warnings

proto-check: tools
	cd proto && buf lint
	@if git cat-file -e "$(BUF_AGAINST):proto/buf.yaml" 2>/dev/null; then \
	  echo "buf breaking against $(BUF_AGAINST)"; \
	  buf breaking proto --against ".git#ref=$(BUF_AGAINST),subdir=proto"; \
	else \
	  echo "buf breaking: no baseline at $(BUF_AGAINST) yet"; \
	fi

.PHONY: test
test: stack-up tools fmt-check clippy proto-check
	@$(STACK) drop-test-databases
	@$(STACK) drop-test-keys
	@$(STACK) drop-test-topics
	# The end-to-end suite runs the service binaries as processes.
	cargo build --workspace --bins --locked
	$(MAKE) --no-print-directory helm-check
	cargo nextest run --workspace --locked

# The chart rendered with its default and example values, linted, validated against the
# Kubernetes schemas, its config.toml loaded by the real binary; invalid values refused.
.PHONY: helm-check
helm-check: tools
	cargo build --locked -p mentorstream-cli
	MENTORSTREAM_BIN=$(TARGET)/debug/mentorstream $(TOOLS_BIN)/python helm/check.py

# Seeded measurements on the local stack; see docs/benchmarks.md. Release build.
.PHONY: bench
BENCH_VENV := target/bench/venv
bench: stack-up
	$(STACK) drop-test-keys
	$(STACK) drop-test-topics
	@# The peers run in a virtualenv of pinned versions, with the activity proto compiled for Python.
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r crates/bench/peers/requirements.txt
	mkdir -p target/bench/peers
	$(BENCH_VENV)/bin/python -m grpc_tools.protoc -Iproto --python_out=target/bench/peers \
	  proto/mentorstream/activity/v1/activity.proto proto/mentorstream/common/v1/common.proto
	cargo build --release --locked -p mentorstream-bench -p mentorstream-ingest -p mentorstream-kpi-aggregator \
	  -p mentorstream-cli
	target/release/mentorstream-bench aggregator --partners 100000 --events 200000 --runs 3 \
	  --peers $(BENCH_VENV)/bin/python
	target/release/mentorstream-bench ingest --events 100000 --rate 200
	target/release/mentorstream-bench freshness --rate 10000 --seconds 60
	target/release/mentorstream-bench memory --partners 1000000
	target/release/mentorstream-bench rebuild --partners 1000000 --events 10000000
	$(MAKE) --no-print-directory bench-dashboard

# An order → the number on a mentor's page open in chromium, 30 times (target 2 s); the
# end-to-end harness, so the debug binaries.
.PHONY: bench-dashboard
bench-dashboard: stack-up tools
	cargo build --workspace --bins --locked
	cargo nextest run -p mentorstream-e2e --locked --no-capture thirty_orders_in_a_row

# docs/dashboards/*.png: the three pages in both languages, from the end-to-end test's company.
.PHONY: screenshots
screenshots: stack-up tools
	cargo build --workspace --bins --locked
	MENTORSTREAM_SCREENSHOTS=$(CURDIR)/docs/dashboards cargo nextest run -p mentorstream-e2e --locked \
	  dashboards_show_exact_live_numbers

# Every service in the background for the README's examples; `make down` stops them.
.PHONY: up down
up: stack-up tools
	cargo build --locked -p mentorstream-cli
	@deploy/local/up.sh $(TARGET)/debug/mentorstream

down:
	@deploy/local/up.sh --down

.PHONY: demo
demo: stack-up
	cargo build --locked -p mentorstream-cli
	deploy/local/demo.sh $(TARGET)/debug/mentorstream

# Regenerates the offline query data (.sqlx) that lets builds check SQL without a database:
# run after changing a query or a migration, and commit .sqlx.
.PHONY: sqlx-prepare
sqlx-prepare: stack-up
	command -v cargo-sqlx >/dev/null || cargo install sqlx-cli --version 0.8.6 --locked --no-default-features --features postgres,rustls
	DATABASE_URL=postgres://mentorstream:mentorstream@127.0.0.1:15432/mentorstream_mentorship sqlx migrate run --source services/mentorship/migrations
	DATABASE_URL=postgres://mentorstream:mentorstream@127.0.0.1:15432/mentorstream_mentorship cargo sqlx prepare --workspace
