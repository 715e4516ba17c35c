"""Key revocation on connections that are already open (issue 13): the filter's config delivered through ECDS.

With the config inside the listener (LDS, test_reload.py), a new config means a new listener: connections opened
before the update keep the old filter chain, removed keys included, until Envoy drains them. Here the listener
is static and only the filter's config comes from a file (`config_discovery`, `trustgate_e2e.ecds_bootstrap`,
envoy/ecds.yaml). Envoy applies an accepted filter config to every new stream, also on connections that were
open before: a key removed from the config is refused on the very next request of every connection.

1. config A (key A): one keep-alive connection per worker, token A -> 200 on each;
2. config B (key B) written: on those same connections (still open, never closed by Envoy), token A -> 401
   unknown_kid and token B -> 200, on the first request after the update applies;
3. an invalid config (unknown field, text that is not JSON): refused (the log names the JSON path), config B
   keeps serving on the same connections;
4. config C (keys A and B) after the refusals applies to them too.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import trustgate_e2e as h
from test_reload import bearer, keys, tokens  # noqa: F401 - the same keys A and B (module fixtures) as the LDS test

OWNER = "x-commit-owner"
ECDS_STATS = f"extension_config_discovery.http_filter.{h.ECDS_FILTER}."


filter_config = h.reload_filter_config


class EcdsGateway:
    """An Envoy whose trustgate filter config comes from `ecds_dir/trustgate.json`."""

    def __init__(self, envoy_bin: str, wasm: Path, upstream: h.EchoUpstream, workdir: Path, first: dict) -> None:
        self.wasm = wasm
        self.upstream = upstream
        self.ecds_dir = workdir / "ecds"
        self.ecds_dir.mkdir(parents=True, exist_ok=True)
        self.version = 0
        self.first = first
        self.envoy = h.Envoy(envoy_bin, workdir / "envoy", self._bootstrap, name="reload-ecds")

    def _bootstrap(self, port: int, admin: int) -> dict:
        self.write(self.first)
        return h.ecds_bootstrap(listener_port=port, admin_port=admin, upstream_port=self.upstream.port, ecds_dir=self.ecds_dir)

    def write(self, config: dict | str) -> None:
        self.version += 1
        h.write_ecds(self.ecds_dir, config, self.wasm, version=f"v{self.version}")

    def stat(self, name: str) -> int:
        return self.envoy.stats(ECDS_STATS).get(ECDS_STATS + name, 0)

    def apply(self, config: dict | str, outcome: str, timeout: float = 15.0) -> None:
        """Write `config` and wait until Envoy counted it (`outcome`: `update_success` or `update_rejected`)."""
        before = self.stat(outcome)
        self.write(config)
        ok = h.wait_until(lambda: self.stat(outcome) > before, timeout, 0.05)
        assert ok, f"no {outcome} {timeout:.0f}s after the config was written ({self.envoy.stats(ECDS_STATS)})\n{self.envoy.log_tail()}"


@pytest.fixture(scope="module")
def gw(envoy_bin, wasm, upstream, keys, tmp_path_factory):
    gateway = EcdsGateway(envoy_bin, wasm, upstream, tmp_path_factory.mktemp("reload-ecds"), filter_config(keys["a"].jwk))
    h.start_or_fail(gateway.envoy)
    yield gateway
    gateway.envoy.stop()


@pytest.fixture(scope="module")
def conns(gw):
    """One keep-alive connection on each of the two workers, opened under config A, before any update."""
    opened = h.connections_per_worker(gw.envoy)
    yield opened
    for conn in opened.values():
        conn.close()


def allowed(gw: EcdsGateway, send, token: str, path: str) -> None:
    gw.upstream.clear()
    r = send(path, [bearer(token)])
    assert r.status == 200, r.describe()
    seen = h.only_request(gw.upstream)
    assert seen.path == path and seen.values(OWNER) == ["human:alice"] and not seen.values("authorization"), repr(seen)


def refused(gw: EcdsGateway, send, token: str, path: str) -> None:
    gw.upstream.clear()
    h.assert_denied(send(path, [bearer(token)]), gw.upstream, 401, "unknown_kid")


def test_initial_config_from_ecds(gw, conns, tokens):
    assert gw.stat("update_success") == 1
    for w, conn in conns.items():
        allowed(gw, conn.request, tokens["a"], f"/api/a-w{w}")
        refused(gw, conn.request, tokens["b"], f"/api/b-w{w}")


def test_a_removed_key_is_refused_on_connections_opened_before_the_update(gw, conns, tokens, keys):
    pid = gw.envoy.proc.pid
    gw.apply(filter_config(keys["b"].jwk), "update_success")
    # The update reaches each worker through its event loop right after the main thread counted it: the first
    # request of each open connection may still race it, so wait (bounded) for that connection to see key B.
    for w, conn in conns.items():
        got = h.wait_until(lambda: conn.request(f"/api/probe-w{w}", [bearer(tokens["b"])]).status == 200, 5, 0.02)
        assert got, f"worker {w}: the connection opened before the update never saw key B"
        refused(gw, conn.request, tokens["a"], f"/api/removed-a-w{w}")
        allowed(gw, conn.request, tokens["b"], f"/api/new-b-w{w}")
        assert not conn.closed, f"worker {w}: Envoy closed the connection (the test must show the same connection)"
    refused(gw, gw.envoy.request, tokens["a"], "/api/removed-a-fresh")  # and on a new connection
    assert gw.envoy.proc.pid == pid and gw.envoy.proc.poll() is None, "Envoy restarted"


@pytest.mark.parametrize(
    "case, config, log_needle",
    [
        ("unknown-field", lambda keys: filter_config(keys["a"].jwk, rulez=[]), "trustgate: invalid config: rulez"),
        ("not-json", lambda keys: "{ this is not json", "trustgate: invalid config: key must be a string at line 1 column 3"),
    ],
)
def test_an_invalid_config_is_refused_and_the_last_one_keeps_serving(gw, conns, tokens, keys, case, config, log_needle):
    mark = gw.envoy.log_mark()
    gw.apply(config(keys), "update_rejected")
    assert gw.envoy.wait_for_log(lambda l: log_needle in l, since=mark, timeout=5), gw.envoy.log_tail()
    rejected = "Filesystem config update rejected: Unable to create Wasm plugin trustgate"
    assert gw.envoy.wait_for_log(lambda l: rejected in l, since=mark, timeout=5), gw.envoy.log_tail()
    for w, conn in conns.items():
        allowed(gw, conn.request, tokens["b"], f"/api/{case}-b-w{w}")
        refused(gw, conn.request, tokens["a"], f"/api/{case}-a-w{w}")
    assert not h.wasm_failure_lines(gw.envoy), h.wasm_failure_lines(gw.envoy)[:5]


def test_a_valid_update_after_refusals_applies_to_open_connections(gw, conns, tokens, keys):
    gw.apply(filter_config(keys["a"].jwk, keys["b"].jwk), "update_success")
    for w, conn in conns.items():
        got = h.wait_until(lambda: conn.request(f"/api/probe-c-w{w}", [bearer(tokens["a"])]).status == 200, 5, 0.02)
        assert got, f"worker {w}: config C (keys A and B) never applied to the open connection"
        allowed(gw, conn.request, tokens["a"], f"/api/c-a-w{w}")
        allowed(gw, conn.request, tokens["b"], f"/api/c-b-w{w}")


# ----------------------------------------------------------------------------------------------- envoy/ecds.yaml

DEMO_KEYS = {"tg_demo_ci_key_0001": "f17f1aecb187d78bcddc96bd95a0d74a2747a018b9c6240b3df9db60a9ce7c22",
             "tg_demo_ci_key_0002": "d4b7137fec5cf2862ed8f36d87e7a423fd5d4c5fe2f97b2c455ddf915847efc1"}


def test_the_shipped_ecds_example_rotates_a_key_on_an_open_connection(envoy_bin, wasm, tmp_path):
    """envoy/ecds.yaml and envoy/ecds/trustgate.yaml as shipped (ports, paths and the wasm moved into a temporary
    directory): the demo key passes, and after the rotation its comment describes (the resource file replaced by
    a move), the same keep-alive connection refuses the old key and accepts the new one."""
    ecds_dir = tmp_path / "ecds"
    ecds_dir.mkdir()
    resource = (h.REPO / "envoy" / "ecds" / "trustgate.yaml").read_text()
    relative_wasm = "filename: target/wasm32-wasip1/release/trustgate.wasm"
    assert relative_wasm in resource and list(DEMO_KEYS.values())[0] in resource
    resource = resource.replace(relative_wasm, f"filename: {wasm}")
    (ecds_dir / "trustgate.yaml").write_text(resource)
    echo_port = h.free_port()

    def bootstrap(port: int, admin: int) -> str:
        text = (h.REPO / "envoy" / "ecds.yaml").read_text()
        for old, new in (("port_value: 10000", f"port_value: {port}"), ("port_value: 10001", f"port_value: {echo_port}"),
                         ("port_value: 9901", f"port_value: {admin}"), ("path: envoy/ecds/trustgate.yaml", f"path: {ecds_dir}/trustgate.yaml"),
                         ("{ path: envoy/ecds }", f"{{ path: {ecds_dir} }}")):
            assert old in text, f"envoy/ecds.yaml lacks {old!r}"
            text = text.replace(old, new)
        return text

    envoy = h.start_or_fail(h.Envoy(envoy_bin, tmp_path / "envoy", bootstrap, name="ecds-example"))
    conn = h.KeepAlive(envoy.port)
    try:
        key1, key2 = DEMO_KEYS
        assert envoy.request("/healthz").status == 200
        assert envoy.request("/x").status == 401
        r = conn.request("/x", [("Authorization", f"ApiKey {key1}")])
        assert r.status == 200 and r.body == b"upstream ok\n", r.describe()
        # the rotation: a new resource file moved over the old one
        tmp = ecds_dir / ".trustgate.yaml.new"
        tmp.write_text(resource.replace(DEMO_KEYS[key1], DEMO_KEYS[key2]).replace('version_info: "1"', 'version_info: "2"'))
        tmp.rename(ecds_dir / "trustgate.yaml")
        stat = "extension_config_discovery.http_filter.trustgate.update_success"
        assert h.wait_until(lambda: envoy.stats(stat).get(stat) == 2, 15, 0.05), envoy.stats("extension_config_discovery.")
        assert h.wait_until(lambda: conn.request("/x", [("Authorization", f"ApiKey {key2}")]).status == 200, 5, 0.02)
        r = conn.request("/x", [("Authorization", f"ApiKey {key1}")])
        assert r.status == 401 and r.json().get("reason") == "invalid_key", r.describe()
        assert not conn.closed
    finally:
        conn.close()
        envoy.stop()
