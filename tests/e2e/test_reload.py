"""The filter's config replaced at run time (issue 7), through Envoy's file-based dynamic resources: the listener
(with trustgate's config inside) comes from LDS in a file (`dynamic_resources.lds_config.path_config_source`
with a `watched_directory`), and each step writes a new listener file atomically (a temporary file in the same
directory, renamed over `lds.json`: `trustgate_e2e.write_lds`). The listener is built by the same harness
helpers as every other e2e test (`gateway_listener` -> `gateway_bootstrap` -> `wasm_http_filter`), so it stays
in sync with them.

One Envoy process (`--drain-time-s 3`; its PID is checked: no restart), one echo upstream, fresh connections
for every request but in step 6:

1. config A (key A): token A -> 200 (upstream sees x-commit-owner), token B -> 401 unknown_kid;
2. config B (key B) written: without a restart, token B -> 200 and token A -> 401 (`lds.update_success`);
3. an invalid trustgate config (unknown field, then a P-521 key): Envoy rejects the update
   (`listener_manager.lds.update_rejected`, the log names the JSON path) and config B keeps serving;
4. a listener naming a wasm file that does not exist: rejected too, B keeps serving;
5. config C (keys A and B): both tokens -> 200 (an update after rejections still applies);
6. the revocation gap of LDS delivery, pinned: config D (key B only) written while a keep-alive connection per
   worker is open; on those connections token A keeps getting 200 until Envoy closes them, within the drain
   time (test_reload_ecds.py: delivered through ECDS, the filter config reaches open connections at once).

Runs in about 8 s.
"""
from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest

import trustgate_e2e as h

OWNER = "x-commit-owner"
# Envoy's --drain-time-s for this module (default 600): how long a connection opened before a listener update
# keeps the old filter chain, old keys included (test_open_connections_keep_the_old_keys_until_drained).
DRAIN_TIME_S = 3


def bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


filter_config = h.reload_filter_config


def p521_jwk(kid: str) -> dict:
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP521R1()).public_key(), as_dict=True)
    jwk["kid"] = kid
    return jwk


class LdsGateway:
    """An Envoy whose gateway listener comes from `lds_dir/lds.json`."""

    def __init__(self, envoy_bin: str, wasm: Path, upstream: h.EchoUpstream, workdir: Path) -> None:
        self.wasm = wasm
        self.upstream = upstream
        self.lds_dir = workdir / "lds"
        self.lds_dir.mkdir(parents=True, exist_ok=True)
        self.version = 0
        self.first_config: dict | None = None
        self.pid: int | None = None
        self.envoy = h.Envoy(
            envoy_bin, workdir / "envoy", self._bootstrap, name="reload", extra_args=["--drain-time-s", str(DRAIN_TIME_S)]
        )

    def _bootstrap(self, port: int, admin: int) -> dict:
        assert self.first_config is not None
        self.write(self.first_config, port=port)
        return h.lds_bootstrap(admin_port=admin, lds_dir=self.lds_dir, upstream_port=self.upstream.port)

    def start(self, config: dict) -> h.Envoy:
        self.first_config = config
        return self.envoy.start()

    def write(self, config: dict | str, port: int | None = None, wasm: Path | None = None) -> None:
        self.version += 1
        listener = h.gateway_listener(
            listener_port=port or self.envoy.port,
            upstream_port=self.upstream.port,
            filter_config=config,
            wasm=wasm or self.wasm,
        )
        h.write_lds(self.lds_dir, [listener], version=f"v{self.version}")

    def lds_stat(self, name: str) -> int:
        return self.envoy.stats("listener_manager.lds.").get(f"listener_manager.lds.{name}", 0)


def status_of(gw: LdsGateway, token: str, path: str = "/api/x") -> int:
    return gw.envoy.request(path, [bearer(token)]).status


@pytest.fixture(scope="module")
def keys() -> dict[str, h.SigningKey]:
    return {"a": h.generate_key("ES256", "k-a"), "b": h.generate_key("ES256", "k-b")}


@pytest.fixture(scope="module")
def tokens(keys) -> dict[str, str]:
    return {name: h.mint(k, h.claims()) for name, k in keys.items()}


@pytest.fixture(scope="module")
def gw(envoy_bin, wasm, upstream, keys, tmp_path_factory):
    gateway = LdsGateway(envoy_bin, wasm, upstream, tmp_path_factory.mktemp("reload"))
    try:
        gateway.start(filter_config(keys["a"].jwk))
    except h.HarnessError as e:
        gateway.envoy.stop()
        pytest.fail(str(e), pytrace=False)
    gateway.pid = gateway.envoy.proc.pid
    yield gateway
    gateway.envoy.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.clear()


def assert_allowed(gw: LdsGateway, token: str, path: str) -> None:
    r = gw.envoy.request(path, [bearer(token)])
    assert r.status == 200, r.describe()
    seen = [s for s in gw.upstream.seen if s.path == path]
    assert len(seen) == 1 and seen[0].values(OWNER) == ["human:alice"], f"upstream saw {seen!r}"
    assert not seen[0].values("authorization")


def assert_refused(gw: LdsGateway, token: str, path: str, reason: str = "unknown_kid") -> None:
    gw.upstream.clear()
    r = gw.envoy.request(path, [bearer(token)])
    h.assert_denied(r, gw.upstream, 401, reason)


def wait_rejected(gw: LdsGateway, before: int, timeout: float = 15.0) -> int:
    got = h.wait_until(lambda: gw.lds_stat("update_rejected") > before and gw.lds_stat("update_rejected"), timeout, 0.1)
    assert got, (
        f"the invalid listener was not rejected within {timeout}s (lds stats: "
        f"{gw.envoy.stats('listener_manager.lds.')})\n{gw.envoy.log_tail()}"
    )
    return got


def test_initial_config_from_lds(gw, tokens):
    assert_allowed(gw, tokens["a"], "/api/initial-a")
    assert_refused(gw, tokens["b"], "/api/initial-b")
    assert gw.lds_stat("update_success") >= 1


def test_new_keys_apply_without_restart(gw, keys, tokens):
    before = gw.lds_stat("update_success")
    gw.write(filter_config(keys["b"].jwk))
    t0 = time.monotonic()
    ok = h.wait_until(lambda: status_of(gw, tokens["b"]) == 200, 15, 0.2)
    assert ok, f"token B still refused 15 s after the new listener was written\n{gw.envoy.log_tail()}"
    took = time.monotonic() - t0
    assert gw.lds_stat("update_success") > before
    gw.upstream.clear()
    assert_allowed(gw, tokens["b"], "/api/after-b")
    assert_refused(gw, tokens["a"], "/api/after-a")  # the old key is gone on every new connection
    assert gw.envoy.proc.pid == gw.pid and gw.envoy.proc.poll() is None, "Envoy restarted"
    print(f"new config serving {took:.2f}s after the file was replaced")


@pytest.mark.parametrize(
    "case, build, log_needle",
    [
        ("unknown-field", lambda keys: filter_config(keys["a"].jwk, rulez=[]), "rulez"),
        ("p521-key", lambda keys: filter_config(p521_jwk("k-c")), "providers.corp.jwt.keys.jwks.keys[0].crv"),
        ("not-json", lambda keys: "{ this is not json", "key must be a string at line 1 column 3"),
    ],
)
def test_invalid_config_is_rejected_and_the_old_one_keeps_serving(gw, keys, tokens, case, build, log_needle):
    before = gw.lds_stat("update_rejected")
    mark = gw.envoy.log_mark()  # every case below writes the same kind of lines: only this case's count
    gw.write(build(keys))
    wait_rejected(gw, before)
    line = gw.envoy.wait_for_log(lambda l: "trustgate: invalid config: " in l, since=mark, timeout=5)
    assert line and log_needle in line, f"no `invalid config` line naming {log_needle!r} for this update\n{gw.envoy.log_tail()}"
    rejected = "lds: listener 'gateway' config rejected: Unable to create Wasm plugin trustgate"
    assert gw.envoy.wait_for_log(lambda l: rejected in l, since=mark, timeout=5), f"no `{rejected}` line\n{gw.envoy.log_tail()}"
    # config B still serves, on new connections, on both workers
    for i in range(4):
        assert_allowed(gw, tokens["b"], f"/api/{case}-b{i}")
        assert_refused(gw, tokens["a"], f"/api/{case}-a{i}")
    assert gw.envoy.proc.poll() is None, "Envoy exited on an invalid LDS update"
    assert not h.wasm_failure_lines(gw.envoy), h.wasm_failure_lines(gw.envoy)[:5]


def test_missing_wasm_file_is_rejected(gw, keys, tokens, tmp_path):
    before = gw.lds_stat("update_rejected")
    mark = gw.envoy.log_mark()
    gw.write(filter_config(keys["a"].jwk), wasm=tmp_path / "does-not-exist.wasm")
    wait_rejected(gw, before)
    needle = lambda l: "config rejected: Invalid path:" in l and "does-not-exist.wasm" in l  # noqa: E731
    assert gw.envoy.wait_for_log(needle, since=mark, timeout=5), gw.envoy.log_tail()
    for i in range(2):
        assert_allowed(gw, tokens["b"], f"/api/nowasm-b{i}")
        assert_refused(gw, tokens["a"], f"/api/nowasm-a{i}")


def test_valid_update_after_rejections_applies(gw, keys, tokens):
    gw.write(filter_config(keys["a"].jwk, keys["b"].jwk))
    ok = h.wait_until(lambda: status_of(gw, tokens["a"]) == 200, 15, 0.2)
    assert ok, f"config C (keys A and B) did not apply\n{gw.envoy.log_tail()}"
    gw.upstream.clear()
    assert_allowed(gw, tokens["a"], "/api/c-a")
    assert_allowed(gw, tokens["b"], "/api/c-b")
    assert gw.envoy.proc.pid == gw.pid and gw.envoy.proc.poll() is None, "Envoy restarted"
    stats = gw.envoy.stats("listener_manager.")
    assert stats.get("listener_manager.lds.update_rejected", 0) >= 4, stats


def test_open_connections_keep_the_old_keys_until_drained(gw, keys, tokens):
    """The revocation gap of LDS delivery, pinned: a keep-alive connection opened before a listener update stays
    on the old filter chain, so a key removed by the update is still accepted on it, until Envoy drains the old
    chain: from the update on, each reply may carry `Connection: close` (drain strategy `gradual`, the default),
    and after `--drain-time-s` Envoy closes the connection. test_reload_ecds.py: ECDS closes the gap."""
    conns = h.connections_per_worker(gw.envoy)  # under config C: keys A and B
    try:
        for w, conn in conns.items():
            assert conn.request(f"/api/pre-w{w}", [bearer(tokens["a"])]).status == 200
        gw.write(filter_config(keys["b"].jwk))  # key A removed
        t_update = time.monotonic()
        ok = h.wait_until(lambda: status_of(gw, tokens["a"]) == 401, 15, 0.05)
        assert ok, f"config D (key B only) did not apply to new connections\n{gw.envoy.log_tail()}"
        # token A on each connection opened before the update, round after round (both connections in every
        # round, so neither sits idle until the drain ends), until Envoy has closed both
        answers: dict[int, list[int]] = {w: [] for w in conns}
        closed_after: dict[int, float] = {}
        while len(closed_after) < len(conns) and time.monotonic() - t_update < DRAIN_TIME_S + 5:
            for w, conn in conns.items():
                if w in closed_after:
                    continue
                try:
                    answers[w].append(conn.request(f"/api/old-conn-w{w}-{len(answers[w])}", [bearer(tokens["a"])]).status)
                except (ConnectionError, OSError, http.client.HTTPException):
                    conn.closed = True  # Envoy closed it between two requests
                if conn.closed:
                    closed_after[w] = time.monotonic() - t_update
            time.sleep(0.1)
        for w in conns:
            assert answers[w] and set(answers[w]) == {200}, f"worker {w}: token A on the old connection: {answers[w]}"
            assert w in closed_after, f"worker {w}: still open {DRAIN_TIME_S + 5}s after the update (drain {DRAIN_TIME_S}s)"
            assert closed_after[w] <= DRAIN_TIME_S + 2, f"worker {w}: closed {closed_after[w]:.1f}s after the update"
            print(f"worker {w}: token A accepted {len(answers[w])} times on the old connection, closed {closed_after[w]:.1f}s after the update")
        assert_refused(gw, tokens["a"], "/api/after-drain-a")  # new connections never had the gap
    finally:
        for conn in conns.values():
            conn.close()
