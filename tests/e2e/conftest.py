"""Fixtures for the end-to-end tests (see trustgate_e2e.py for the harness itself).

A missing Envoy or a missing trustgate.wasm is a test failure, never a skip.
Env overrides: ENVOY (binary), TRUSTGATE_WASM (module), TRUSTGATE_E2E_READY_TIMEOUT (seconds).
"""
from __future__ import annotations

import pytest

import trustgate_e2e as h


def pytest_report_header(config):
    try:
        binary = h.envoy_binary()
        envoy = f"{binary} ({h.envoy_version(binary)})"
    except Exception as e:  # reported, and the envoy fixture fails the tests that need it
        envoy = f"MISSING: {e}"
    wasm = h.wasm_path()
    return [f"envoy: {envoy}", f"wasm: {wasm}{'' if wasm.exists() else ' (MISSING: run make build)'}"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for envoy in list(h.RUNNING):
            rep.sections.append((f"Envoy log ({envoy.name})", envoy.log_tail()))


@pytest.fixture(scope="session")
def envoy_bin() -> str:
    try:
        return h.envoy_binary()
    except h.HarnessError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def wasm() -> "h.Path":
    path = h.wasm_path()
    if not path.is_file():
        pytest.fail(
            f"{path} does not exist: build it with `make build` "
            "(cargo build --release --target wasm32-wasip1 --lib, then scripts/wasm_exports.py trim)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def keys() -> dict[str, h.SigningKey]:
    return h.generate_keys()


@pytest.fixture(scope="module")
def upstream():
    echo = h.EchoUpstream()
    yield echo
    echo.close()


@pytest.fixture(scope="module")
def start_gateway(envoy_bin, wasm, upstream, tmp_path_factory, request):
    """Factory: start an Envoy with trustgate configured with `filter_config` in front of `upstream`.
    Everything it starts is stopped at the end of the module."""
    started: list[h.Envoy] = []

    def start(filter_config: dict | str, name: str | None = None) -> h.Envoy:
        name = name or request.module.__name__.rsplit(".", 1)[-1]
        envoy = h.Envoy(
            envoy_bin,
            tmp_path_factory.mktemp(name),
            lambda port, admin: h.gateway_bootstrap(
                listener_port=port,
                admin_port=admin,
                upstream_port=upstream.port,
                filter_config=filter_config,
                wasm=wasm,
            ),
            name=name,
        )
        started.append(envoy)
        return h.start_or_fail(envoy)

    yield start
    for envoy in started:
        envoy.stop()
