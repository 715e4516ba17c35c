"""Remote JWKS and OIDC discovery end to end (issue 3): a real Envoy 1.40 (V8, `--concurrency 2`) whose
trustgate fetches its keys with `dispatch_http_call` from a JWKS server the test controls
(tests/e2e/jwks_server.py), through a STATIC cluster to it.

Three Envoys:
- `gw` (module): one provider per scenario that does not need a fresh process, each with its own JWKS path,
  so the server's per-path counts are per scenario: the first request right after startup, sharing between
  workers, rotation, no storm, a bad key inside a JWKS, key sets that never become usable (no usable key,
  over 512 KiB), discovery, discovery issuer mismatch.
- `test_server_down_at_startup` and `test_failures_keep_the_stale_set`: their own Envoy, because they depend
  on the fetch history since startup (backoff).

Every scenario asserts the status and what the echo upstream saw (nothing on denials), and every wait is
bounded. Nothing prints a token (see trustgate_e2e.redact). Plus: envoy/remote-jwks.yaml validates in Envoy,
envoy/istio/remote-jwks.yaml has the right shape.

Runs in ~15 s. `TRUSTGATE_WASM=/path/to/trustgate.wasm` tests another build (the example too).
"""
from __future__ import annotations

import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import trustgate_e2e as h
from jwks_server import JwksServer
from trustgate_e2e import bearer, mint

OWNER = "x-commit-owner"
AUTHORITY = "idp.test"
CLUSTER = "jwks"
UNAVAILABLE = {"error": "temporarily_unavailable", "reason": "keys_unavailable"}
SHORT_WAIT_MS = 300  # startup_wait_ms of the providers that are expected to answer 503


# ----------------------------------------------------------------------------------------------- helpers


def ec_key(kid: str) -> h.SigningKey:
    return h.generate_key("ES256", kid)


def p521_jwk(kid: str) -> dict:
    """A well-formed EC P-521 public JWK: a key trustgate does not support, so it must be skipped."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP521R1()).public_key(), as_dict=True)
    jwk.update({"kid": kid, "use": "sig"})
    return jwk


def remote(path: str, cluster: str = CLUSTER, **extra) -> dict:
    return {"remote": {"cluster": cluster, "authority": AUTHORITY, "path": path, **extra}}


def discovery(cluster: str = CLUSTER, **extra) -> dict:
    return {"discovery": {"cluster": cluster, "authority": AUTHORITY, **extra}}


def jwt_provider(keys: dict, issuer: str = h.ISSUER) -> dict:
    return {
        "jwt": {
            "issuer": issuer,
            "audiences": [h.AUDIENCE],
            "algorithms": ["ES256"],
            "keys": keys,
            "headers": {OWNER: h.OWNER_TEMPLATE},
        }
    }


def filter_config(providers: dict[str, dict]) -> dict:
    rules = [{"name": "health", "match": {"path": "/healthz"}, "allow": "public"}]
    rules += [{"name": n, "match": {"path_prefix": f"/{n}/"}, "require": n} for n in providers]
    return {"providers": providers, "strip_headers": h.STRIP_HEADERS, "rules": rules}


def token(key: h.SigningKey, issuer: str = h.ISSUER, **kw) -> str:
    return mint(key, h.claims(iss=issuer), **kw)


def assert_allowed(resp: h.Response, upstream: h.EchoUpstream, path: str, n: int = 1) -> None:
    assert resp.status == 200, resp.describe()
    seen = [s for s in upstream.seen if s.path == path]
    assert len(seen) == n, f"upstream saw {len(seen)} requests for {path}, want {n}: {upstream.seen!r}"
    got = seen[-1].values(OWNER)
    assert got == ["human:alice"], f"upstream saw x-commit-owner {got!r}, want ['human:alice']"
    assert "authorization" not in seen[-1].names(), "the credential was forwarded upstream"


def assert_nothing_upstream(upstream: h.EchoUpstream, prefix: str) -> None:
    seen = [s for s in upstream.seen if s.path.startswith(prefix)]
    assert seen == [], f"a denied request reached the upstream: {seen!r}"


def assert_unavailable(resp: h.Response) -> None:
    assert resp.status == 503, resp.describe()
    retry = resp.header("retry-after")
    assert retry is not None and retry.strip().isdigit() and int(retry) >= 1, (
        f"503 without a usable Retry-After: {resp.describe()}"
    )
    assert resp.json() == UNAVAILABLE, resp.describe()


def assert_unknown_kid(resp: h.Response) -> None:
    assert resp.status == 401, resp.describe()
    body = resp.json()
    assert body.get("error") == "invalid_token" and body.get("reason") == "unknown_kid", resp.describe()


def provider_logs(envoy: h.Envoy, provider: str, since: int = 0) -> list[str]:
    """The key-set log lines of `provider` written after `since` (a log_mark; 0: since Envoy started)."""
    lines = h.wasm_log_lines(envoy, "trustgate: jwks provider=", since=since)
    return [l for l in lines if l.startswith(f"trustgate: jwks provider={provider} ")]


def wait_provider_log(envoy: h.Envoy, provider: str, *needles: str, since: int = 0, timeout: float = 8.0) -> str | None:
    """The first log line of `provider` written after `since` holding every needle (bounded poll). Each provider
    has its own key set, so since=0 fits a check of what its own start-up fetch logged."""

    def find():
        for line in provider_logs(envoy, provider, since):
            if all(n in line for n in needles):
                return line
        return None

    return h.wait_until(find, timeout, 0.2)


def log_context(envoy: h.Envoy, provider: str) -> str:
    lines = provider_logs(envoy, provider)
    return f"trustgate log lines of provider {provider} ({len(lines)}):\n  " + "\n  ".join(lines[-20:])


def jwks_stats(envoy: h.Envoy, provider: str) -> dict[str, int]:
    prefix = f"wasmcustom.trustgate.jwks.{provider}."
    return {k[len(prefix):]: v for k, v in envoy.stats(prefix).items()}


def wait_stat(envoy: h.Envoy, provider: str, name: str, ok, timeout: float = 8.0) -> dict[str, int]:
    """Poll /stats until `ok(value)`; returns the provider's stats either way (the caller asserts)."""
    last: dict[str, int] = {}

    def check():
        nonlocal last
        last = jwks_stats(envoy, provider)
        return name in last and ok(last[name])

    h.wait_until(check, timeout, 0.2)
    return last


def wait_initial_fetch(envoy: h.Envoy, server: JwksServer, provider: str, path: str, timeout: float = 10.0) -> None:
    """Bounded wait until `provider`'s first key set has been fetched and stored (the `keys` gauge), so a
    scenario does not depend on how soon after startup it runs (test_first_request_... covers that)."""
    got = server.wait_for_count(path, 1, timeout=timeout)
    assert got >= 1, f"no fetch of {path} within {timeout}s of startup; the server saw {server.counts()}\n" + log_context(envoy, provider)
    wait_stat(envoy, provider, "keys", lambda v: v >= 1, timeout=timeout)


def timed(fn, *a, **kw):
    t0 = time.monotonic()
    r = fn(*a, **kw)
    return r, time.monotonic() - t0


# ----------------------------------------------------------------------------------------------- the shared Envoy

FIRST, ROT, STORM, SHARED, BADKEY, NOKEY, BIG, DISC, DISC2, DISCBAD = (
    "first", "rot", "storm", "shared", "badkey", "nokey", "big", "disc", "disc2", "discbad"
)
DISC_ISSUER = f"http://{AUTHORITY}/realms/demo"
DISC_JWKS_PATH = "/realms/demo/protocol/openid-connect/certs"
DISC2_ISSUER = f"http://{AUTHORITY}/realms/elsewhere"
DISC2_JWKS_HOST = "keys.idp.test:8443"
DISC2_JWKS_TARGET = "/realms/elsewhere/certs?format=jwks"
DISCBAD_ISSUER = f"http://{AUTHORITY}/realms/mismatch"
DISCBAD_DOC_ISSUER = "http://evil.test/realms/mismatch"
DISCBAD_JWKS_PATH = "/realms/mismatch/certs"


_STARTED: dict[int, float] = {}


def gw_started_at(envoy: h.Envoy) -> float:
    """When the harness saw the Envoy ready (time.monotonic())."""
    return _STARTED[id(envoy)]


def jwks_path(provider: str) -> str:
    return f"/{provider}/jwks.json"


@pytest.fixture(scope="module")
def remote_keys() -> dict[str, h.SigningKey]:
    names = ["first-1", "rot-1", "rot-2", "storm-1", "storm-x", "shared-1", "badkey-1", "disc-1", "disc2-1", "discbad-1"]
    return {n: ec_key(n) for n in names}


@pytest.fixture(scope="module")
def jwks():
    server = JwksServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def gw(envoy_bin, wasm, upstream, jwks, remote_keys, tmp_path_factory) -> h.Envoy:
    k = remote_keys
    jwks.set_jwks(jwks_path(FIRST), [k["first-1"].jwk])
    jwks.set_jwks(jwks_path(ROT), [k["rot-1"].jwk])
    jwks.set_jwks(jwks_path(STORM), [k["storm-1"].jwk])
    jwks.set_jwks(jwks_path(SHARED), [k["shared-1"].jwk])
    jwks.set_jwks(jwks_path(BADKEY), [p521_jwk("badkey-p521"), k["badkey-1"].jwk])
    jwks.set_jwks(jwks_path(NOKEY), [p521_jwk("nokey-p521")])
    jwks.set_jwks(jwks_path(BIG), [ec_key("big-1").jwk])
    jwks.set_mode(jwks_path(BIG), "big")
    jwks.set_discovery("/realms/demo", DISC_ISSUER, f"http://{AUTHORITY}{DISC_JWKS_PATH}")
    jwks.set_jwks(DISC_JWKS_PATH, [k["disc-1"].jwk])
    jwks.set_discovery("/realms/elsewhere", DISC2_ISSUER, f"http://{DISC2_JWKS_HOST}{DISC2_JWKS_TARGET}")
    jwks.set_jwks(DISC2_JWKS_TARGET.split("?")[0], [k["disc2-1"].jwk])
    jwks.set_discovery("/realms/mismatch", DISCBAD_DOC_ISSUER, f"http://{AUTHORITY}{DISCBAD_JWKS_PATH}")
    jwks.set_jwks(DISCBAD_JWKS_PATH, [k["discbad-1"].jwk])

    short = {"startup_wait_ms": SHORT_WAIT_MS}
    config = filter_config(
        {
            FIRST: jwt_provider(remote(jwks_path(FIRST))),
            ROT: jwt_provider(remote(jwks_path(ROT))),
            STORM: jwt_provider(remote(jwks_path(STORM))),
            SHARED: jwt_provider(remote(jwks_path(SHARED))),
            BADKEY: jwt_provider(remote(jwks_path(BADKEY))),
            NOKEY: jwt_provider(remote(jwks_path(NOKEY), **short)),
            BIG: jwt_provider(remote(jwks_path(BIG), **short)),
            DISC: jwt_provider(discovery(), issuer=DISC_ISSUER),
            DISC2: jwt_provider(discovery(), issuer=DISC2_ISSUER),
            DISCBAD: jwt_provider(discovery(**short), issuer=DISCBAD_ISSUER),
        }
    )
    envoy = h.start_gateway(envoy_bin, wasm, upstream, tmp_path_factory.mktemp("remote_jwks"), config, {CLUSTER: jwks.port}, "remote_jwks")
    _STARTED[id(envoy)] = time.monotonic()
    yield envoy
    envoy.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.clear()


def test_first_request_waits_for_the_initial_fetch(gw, jwks, upstream, remote_keys):
    """The first fetch starts at configure time; a request right after startup (this is the module's first
    test) waits for it (startup_wait_ms, default 2000) instead of failing."""
    r, took = timed(gw.request, "/first/x", [bearer(token(remote_keys["first-1"]))], timeout=5)
    hits = [round(hit.at - gw_started_at(gw), 2) for hit in jwks.hits(jwks_path(FIRST))]
    assert r.status == 200, (
        f"first request, sent {time.monotonic() - took - gw_started_at(gw):.2f}s after Envoy was ready, answered "
        f"after {took:.2f}s: {r.describe()}; JWKS fetches of this provider at {hits} s after ready\n"
        + log_context(gw, FIRST)
    )
    assert_allowed(r, upstream, "/first/x")


def test_keys_are_fetched_once_per_process_and_shared_by_workers(gw, jwks, upstream, remote_keys):
    """The first fetch starts at configure time, and one key set serves both workers: many requests over
    fresh connections (spread over the 2 workers by the kernel) cost exactly one JWKS fetch in total."""
    path = jwks_path(SHARED)
    tok = token(remote_keys["shared-1"])
    wait_initial_fetch(gw, jwks, SHARED, path)
    statuses: list[int] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        for j in range(5):
            r = gw.request(f"/shared/{i}/{j}", [bearer(tok)])
            with lock:
                statuses.append(r.status)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(client, range(8)))
    assert statuses == [200] * 40, f"statuses: {sorted(set(statuses))} ({statuses.count(200)}/40 were 200)"
    assert len([s for s in upstream.seen if s.path.startswith("/shared/")]) == 40
    assert all(s.values(OWNER) == ["human:alice"] for s in upstream.seen)
    # a late per-worker fetch would show up within this half second: fail as soon as it does
    assert h.holds(lambda: len(jwks.hits(path)) == 1, 0.5), f"a second JWKS fetch: {jwks.hits(path)}"
    hits = jwks.hits(path)
    assert len(hits) == 1, f"want exactly 1 JWKS fetch for the whole process, the server saw {len(hits)}: {hits}"
    assert hits[0].host == AUTHORITY, f"fetched with :authority {hits[0].host!r}, want {AUTHORITY!r}"

    # Both workers did serve requests (otherwise this test would prove nothing about sharing).
    per_worker = {
        k: v for k, v in gw.stats("listener.").items() if re.search(r"\.worker_\d+\.downstream_cx_total$", k) and str(gw.port) in k
    }
    assert len(per_worker) == 2 and all(v > 0 for v in per_worker.values()), f"connections per worker: {per_worker}"

    stats = jwks_stats(gw, SHARED)
    assert stats.get("fetch_ok") == 1, f"jwks stats of {SHARED}: {stats}"
    assert stats.get("fetch_failed") == 0 and stats.get("keys") == 1 and stats.get("stale") == 0, stats


def test_rotation_new_kid_is_fetched_on_first_use(gw, jwks, upstream, remote_keys):
    path = jwks_path(ROT)
    old, new = remote_keys["rot-1"], remote_keys["rot-2"]
    wait_initial_fetch(gw, jwks, ROT, path)
    old_token = mint(old, h.claims(jti="rot-before"))
    # Accepted on both workers (fresh connections), so that any per-VM state holds the old key.
    for i in range(6):
        r = gw.request(f"/rot/before{i}", [bearer(old_token)])
        assert_allowed(r, upstream, f"/rot/before{i}")
    before = jwks.count(path)

    jwks.set_jwks(path, [new.jwk])  # the IdP rotates: only the new key is published now
    r = gw.request("/rot/after", [bearer(token(new))], timeout=10)
    assert_allowed(r, upstream, "/rot/after")
    assert h.holds(lambda: jwks.count(path) == before + 1, 0.3), (
        f"want exactly one extra JWKS fetch for the new kid, the server saw {jwks.count(path) - before}\n"
        + log_context(gw, ROT)
    )

    # The old key is gone from the key set, so tokens it signed are refused on every worker: the very token
    # accepted a moment ago (no verified-token cache may outlive its key) and a fresh one. Another
    # unknown-kid refetch is not due for min_refresh_s (60 s): immediate 401 unknown_kid, no fetch, no
    # fallback to the new key.
    outcomes = []
    for i, tok in enumerate([old_token] * 6 + [mint(old, h.claims(jti=f"rot-old-{i}")) for i in range(4)]):
        r, took = timed(gw.request, f"/rot/old{i}", [bearer(tok)], timeout=10)
        outcomes.append((r.status, (r.json() if r.body.startswith(b"{") else {}).get("reason"), round(took, 1)))
    assert all(o[:2] == (401, "unknown_kid") for o in outcomes), (
        f"tokens of the removed key after rotation (status, reason, seconds; first 6 = the token accepted "
        f"before): {outcomes}\n" + log_context(gw, ROT)
    )
    assert_nothing_upstream(upstream, "/rot/old")
    assert jwks.count(path) == before + 1, "an unknown kid refetched again within min_refresh_s"
    assert max(o[2] for o in outcomes) < 3, f"a throttled unknown kid still waited: {outcomes}"

    # Every worker uses the new key set (fresh connections land on both workers), without another fetch.
    for i in range(6):
        r = gw.request(f"/rot/new{i}", [bearer(mint(new, h.claims(jti=f"rot-new-{i}")))], timeout=10)
        assert r.status == 200, (
            f"new-kid request {i} (fresh connection) after the rotation fetch: {r.describe()}; server saw "
            f"{jwks.count(path) - before} extra fetches\n" + log_context(gw, ROT)
        )
        assert_allowed(r, upstream, f"/rot/new{i}")

    assert jwks.count(path) == before + 1, "the new kid was fetched again (a worker had not seen the new set)"


def test_no_fetch_storm_on_unknown_kid(gw, jwks, upstream, remote_keys):
    path = jwks_path(STORM)
    wait_initial_fetch(gw, jwks, STORM, path)
    r = gw.request("/storm/warm", [bearer(token(remote_keys["storm-1"]))])
    assert_allowed(r, upstream, "/storm/warm")
    before = jwks.count(path)
    upstream.clear()

    bad = token(remote_keys["storm-x"], kid="storm-unknown")
    n = 200
    # A slow IdP: the refetch stays in flight for a second, so the 200 requests pile up, paused, on both
    # workers while it is pending (single-flight across VMs), and are resumed when it lands.
    delay = 1.0
    jwks.set_delay(path, delay)
    start = threading.Barrier(n, timeout=30)

    def one(i: int):
        try:
            start.wait()
        except threading.BrokenBarrierError:
            pass
        try:
            r, took = timed(gw.request, f"/storm/{i}", [bearer(bad)], timeout=20)
            waits.append(took)
            return r
        except Exception as e:  # noqa: BLE001 - reported below, with the others
            return e

    waits: list[float] = []
    t0 = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    took = time.monotonic() - t0
    jwks.set_delay(path, 0)
    errors = [repr(r) for r in results if isinstance(r, Exception)]
    assert not errors, f"{len(errors)}/{n} requests failed on the client side, e.g. {errors[:3]}"
    summary: dict[str, int] = {}
    for r in results:
        key = f"{r.status} {r.json().get('reason') if r.body.startswith(b'{') else r.text()[:40]}"
        summary[key] = summary.get(key, 0) + 1
    assert summary == {"401 unknown_kid": n}, f"outcomes of {n} concurrent unknown-kid requests: {summary}"
    assert_nothing_upstream(upstream, "/storm/")
    assert h.holds(lambda: jwks.count(path) - before <= 2, 0.3), f"{jwks.count(path) - before} fetches after the storm"
    fetches = jwks.count(path) - before
    assert 1 <= fetches <= 2, (
        f"{n} concurrent unknown-kid requests caused {fetches} JWKS fetches (want 1, at most 2) in {took:.1f}s\n"
        + log_context(gw, STORM)
    )
    # The requests that came while the refetch was in flight waited for it (paused, then resumed).
    waited = sum(1 for w in waits if w >= 0.8 * delay)
    assert waited >= 1, f"no request waited for the refetch (slowest {max(waits):.2f}s, fetch delay {delay}s)"
    r = gw.request("/storm/after", [bearer(token(remote_keys["storm-1"]))])
    assert_allowed(r, upstream, "/storm/after")


def test_bad_key_in_jwks_is_skipped_and_logged(gw, jwks, upstream, remote_keys):
    wait_initial_fetch(gw, jwks, BADKEY, jwks_path(BADKEY))
    r = gw.request("/badkey/x", [bearer(token(remote_keys["badkey-1"]))])
    assert_allowed(r, upstream, "/badkey/x")
    line = wait_provider_log(gw, BADKEY, "skipped key [0]")
    assert line, "no `skipped key [0]: ...` line for the P-521 key\n" + log_context(gw, BADKEY)
    assert "P-521" in line, f"the skip line does not say why: {line}"
    assert f"{CLUSTER}/{AUTHORITY}{jwks_path(BADKEY)}" in line or any(
        f"{CLUSTER}/{AUTHORITY}{jwks_path(BADKEY)}" in l for l in provider_logs(gw, BADKEY)
    ), "no log line names the URL\n" + log_context(gw, BADKEY)
    stats = wait_stat(gw, BADKEY, "keys", lambda v: v == 1)
    assert stats.get("keys") == 1 and stats.get("fetch_ok", 0) >= 1, f"jwks stats of {BADKEY}: {stats}"
    # The skipped key's kid is simply unknown: no fallback to the good key.
    p521_kid_token = token(remote_keys["badkey-1"], kid="badkey-p521")
    r = gw.request("/badkey/p521", [bearer(p521_kid_token)], timeout=10)
    assert_unknown_kid(r)
    assert_nothing_upstream(upstream, "/badkey/p521")


@pytest.mark.parametrize(
    "provider, needle",
    [(NOKEY, "no usable key"), (BIG, "body over 512 KiB")],
)
def test_never_usable_key_set_is_503(gw, jwks, upstream, provider, needle):
    """A JWKS with no usable key, or one over 512 KiB, is a failed fetch: with no earlier key set the
    request waits startup_wait_ms, then 503 keys_unavailable (never 200, never a hang)."""
    any_key = ec_key(f"{provider}-1")  # whatever the token, there are no keys to check it with
    r, took = timed(gw.request, f"/{provider}/x", [bearer(token(any_key))], timeout=SHORT_WAIT_MS / 1000 + 3)
    assert_unavailable(r)
    assert_nothing_upstream(upstream, f"/{provider}/")
    line = wait_provider_log(gw, provider, needle)
    assert line, f"no `{needle}` log line\n" + log_context(gw, provider)
    assert f"{CLUSTER}/{AUTHORITY}{jwks_path(provider)}" in line, f"the log line does not name the URL: {line}"
    stats = wait_stat(gw, provider, "fetch_failed", lambda v: v >= 1)
    assert stats.get("fetch_failed", 0) >= 1 and stats.get("fetch_ok") == 0 and stats.get("keys") == 0, stats


def test_discovery_finds_the_jwks(gw, jwks, upstream, remote_keys):
    wait_initial_fetch(gw, jwks, DISC, DISC_JWKS_PATH)
    r = gw.request("/disc/x", [bearer(token(remote_keys["disc-1"], issuer=DISC_ISSUER))], timeout=10)
    assert_allowed(r, upstream, "/disc/x")
    doc_hits = jwks.hits("/realms/demo/.well-known/openid-configuration")
    assert len(doc_hits) == 1 and doc_hits[0].host == AUTHORITY, f"discovery fetches: {doc_hits}"
    key_hits = jwks.hits(DISC_JWKS_PATH)
    assert len(key_hits) == 1 and key_hits[0].host == AUTHORITY, f"jwks_uri fetches: {key_hits}"
    stats = jwks_stats(gw, DISC)
    assert stats.get("fetch_ok", 0) >= 1 and stats.get("keys") == 1, f"jwks stats of {DISC}: {stats}"


def test_discovery_jwks_uri_on_another_host_with_a_query(gw, jwks, upstream, remote_keys):
    """`jwks_uri` is fetched through the same cluster with its path+query and :authority = its host:port."""
    wait_initial_fetch(gw, jwks, DISC2, DISC2_JWKS_TARGET)
    r = gw.request("/disc2/x", [bearer(token(remote_keys["disc2-1"], issuer=DISC2_ISSUER))], timeout=10)
    assert_allowed(r, upstream, "/disc2/x")
    key_hits = jwks.hits(DISC2_JWKS_TARGET)
    assert [(k.path, k.host) for k in key_hits] == [(DISC2_JWKS_TARGET, DISC2_JWKS_HOST)], (
        f"jwks_uri fetches (target, host): {[(k.path, k.host) for k in key_hits]}\n" + log_context(gw, DISC2)
    )


def test_discovery_issuer_mismatch_is_refused(gw, jwks, upstream, remote_keys):
    tok = token(remote_keys["discbad-1"], issuer=DISCBAD_ISSUER)
    r, took = timed(gw.request, "/discbad/x", [bearer(tok)], timeout=SHORT_WAIT_MS / 1000 + 3)
    assert_unavailable(r)
    assert_nothing_upstream(upstream, "/discbad/")
    line = wait_provider_log(gw, DISCBAD, "discovery issuer mismatch")
    assert line, "no `discovery issuer mismatch` log line\n" + log_context(gw, DISCBAD)
    assert DISCBAD_DOC_ISSUER in line and DISCBAD_ISSUER in line, f"the line lacks got/expected issuers: {line}"
    assert jwks.count(DISCBAD_JWKS_PATH) == 0, "the jwks_uri of a mismatched discovery document was fetched"
    stats = wait_stat(gw, DISCBAD, "fetch_failed", lambda v: v >= 1)
    assert stats.get("fetch_failed", 0) >= 1 and stats.get("keys") == 0, f"jwks stats of {DISCBAD}: {stats}"


# ----------------------------------------------------------------------------------------------- own Envoys


def test_server_down_at_startup(envoy_bin, wasm, upstream, tmp_path):
    key = ec_key("late-1")
    server = JwksServer(start=False)  # port known, connections refused
    server.set_jwks("/late/jwks.json", [key.jwk])
    wait_ms = 500
    config = filter_config({"late": jwt_provider(remote("/late/jwks.json", cluster="jwks_late", startup_wait_ms=wait_ms, timeout_ms=500))})
    envoy = h.start_gateway(envoy_bin, wasm, upstream, tmp_path, config, {"jwks_late": server.port}, "remote_jwks_down")
    try:
        tok = token(key)
        client_timeout = wait_ms / 1000 + 3
        for i in range(3):
            r, took = timed(envoy.request, f"/late/down{i}", [bearer(tok)], timeout=client_timeout)
            assert_unavailable(r)
        assert_nothing_upstream(upstream, "/late/")
        line = wait_provider_log(envoy, "late", "jwks_late/idp.test/late/jwks.json", "fail")
        assert line, "no failure log line names the URL\n" + log_context(envoy, "late")
        # Envoy turns a refused connection into a local 503 reply; the log must say it was the connection.
        assert "connect" in line.lower(), f"the log line does not say the connection failed: {line}"
        stats = wait_stat(envoy, "late", "fetch_failed", lambda v: v >= 1)
        assert stats.get("fetch_failed", 0) >= 1 and stats.get("keys") == 0, f"jwks stats: {stats}"

        server.start()
        t0 = time.monotonic()
        outcomes: list[int] = []
        while True:
            r = envoy.request(f"/late/poll{len(outcomes)}", [bearer(tok)], timeout=client_timeout)
            outcomes.append(r.status)
            if r.status != 503:
                break
            assert_unavailable(r)
            assert time.monotonic() - t0 < 40, (
                f"still 503 {time.monotonic() - t0:.0f}s after the JWKS server came up; "
                f"server saw {server.counts()}\n" + log_context(envoy, "late")
            )
            time.sleep(0.5)
        assert_allowed(r, upstream, f"/late/poll{len(outcomes) - 1}")
        assert len([s for s in upstream.seen if s.path.startswith("/late/")]) == 1, "a 503 reached the upstream"
        stats = wait_stat(envoy, "late", "keys", lambda v: v == 1)
        assert stats.get("fetch_ok", 0) >= 1 and stats.get("keys") == 1 and stats.get("stale") == 0, stats
    finally:
        envoy.stop()
        server.close()


def test_failures_keep_the_stale_set(envoy_bin, wasm, upstream, tmp_path):
    """After a good fetch, the server answers 500, then garbage, then hangs past timeout_ms: valid tokens
    keep verifying from the last good set, and each failure shows in /stats and in the log. When the
    server recovers, the set is fresh again."""
    key = ec_key("stale-1")
    path = "/stale/jwks.json"
    url = f"{CLUSTER}/{AUTHORITY}{path}"
    server = JwksServer(hang_s=20)
    server.set_jwks(path, [key.jwk], max_age=1)
    config = filter_config({"stale": jwt_provider(remote(path, timeout_ms=500, min_refresh_s=1))})
    envoy = h.start_gateway(envoy_bin, wasm, upstream, tmp_path, config, {CLUSTER: server.port}, "remote_jwks_stale")
    tok = token(key)
    n = 0

    def check_valid(step: str) -> None:
        nonlocal n
        n += 1
        r, took = timed(envoy.request, f"/stale/{step}", [bearer(tok)], timeout=5)
        assert r.status == 200, f"[{step}] {r.describe()}\n" + log_context(envoy, "stale")
        assert_allowed(r, upstream, f"/stale/{step}")
        assert took < 3, f"[{step}] a token with a known kid waited {took:.1f}s"

    try:
        wait_initial_fetch(envoy, server, "stale", path)
        check_valid("fresh")

        steps = [("status", "status 500"), ("garbage", "invalid JSON"), ("hang", "timeout")]
        for mode, needle in steps:
            mark = envoy.log_mark()
            server.set_mode(path, mode, status=500 if mode == "status" else None)
            got = server.wait_for_count(path, 1, timeout=15, mode=mode)
            assert got >= 1, f"no refresh attempt reached the server in mode {mode} within 15s; saw {server.counts()}\n" + log_context(envoy, "stale")
            line = wait_provider_log(envoy, "stale", needle, since=mark, timeout=5)
            assert line, f"no `{needle}` log line after the server answered in mode {mode}\n" + log_context(envoy, "stale")
            assert url in line, f"the failure line does not name the URL {url}: {line}"
            check_valid(mode)

        stats = wait_stat(envoy, "stale", "stale", lambda v: v == 1)
        assert stats.get("stale") == 1, f"stale gauge not 1 while serving an expired set: {stats}"
        assert stats.get("fetch_failed", 0) >= 3 and stats.get("keys") == 1, f"jwks stats: {stats}"
        ok_before = stats.get("fetch_ok", 0)

        # Recovery: the next retry (backoff ≤ 30 s) succeeds, and the set is fresh again.
        server.release_hangs()
        server.set_mode(path, "ok")
        stats = wait_stat(envoy, "stale", "fetch_ok", lambda v: v > ok_before, timeout=40)
        assert stats.get("fetch_ok", 0) > ok_before, f"no successful refresh within 40s of recovery: {stats}\n" + log_context(envoy, "stale")
        stats = wait_stat(envoy, "stale", "stale", lambda v: v == 0)
        assert stats.get("stale") == 0, f"stale gauge still set after a good refresh: {stats}"
        check_valid("recovered")
        assert len(upstream.seen) == n
    finally:
        envoy.stop()
        server.close()


# ----------------------------------------------------------------------------------------------- examples


def test_envoy_example_validates(envoy_bin, wasm, tmp_path):
    """envoy/remote-jwks.yaml (TLS cluster to a real IdP, discovery provider) is a valid Envoy config. It is
    validated from the repo root, where its relative wasm path points (Envoy's validate mode loads the wasm and
    runs trustgate's configure, so the filter config inside is checked too). With TRUSTGATE_WASM set, a copy
    pointing at that module is validated instead."""
    example = h.REPO / "envoy" / "remote-jwks.yaml"
    text = example.read_text()
    relative = "filename: target/wasm32-wasip1/release/trustgate.wasm"
    assert relative in text, f"envoy/remote-jwks.yaml lacks {relative!r}"
    config = example
    if wasm != h.DEFAULT_WASM.resolve():
        config = tmp_path / "remote-jwks.yaml"
        config.write_text(text.replace(relative, f"filename: {wasm}"))
    out = subprocess.run(
        [envoy_bin, "--mode", "validate", "-c", str(config), "-l", "warning", "--use-dynamic-base-id"],
        cwd=h.REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"envoy --mode validate failed ({out.returncode}):\n{(out.stdout + out.stderr)[-3000:]}"
    for needle in (
        "name: idp_jwks",
        "envoy.transport_sockets.tls",
        "UpstreamTlsContext",
        "sni: login.example.com",
        "/etc/ssl/certs/ca-certificates.crt",
        '"discovery"',
        '"cluster": "idp_jwks"',
        "failure_policy: FAIL_CLOSED",
    ):
        assert needle in text, f"envoy/remote-jwks.yaml lacks {needle!r}"


def test_istio_example_shape():
    """envoy/istio/remote-jwks.yaml: a ServiceEntry for the IdP hosts and, for each host, a DestinationRule that
    originates TLS with that host as SNI (schema validation: test_istio_manifests.py)."""
    text = (h.REPO / "envoy" / "istio" / "remote-jwks.yaml").read_text()
    import yaml  # tests/requirements.txt

    docs = [d for d in yaml.safe_load_all(text) if d]
    entries = [d for d in docs if d["kind"] == "ServiceEntry"]
    rules = {d["spec"]["host"]: d for d in docs if d["kind"] == "DestinationRule"}
    assert len(entries) == 1 and rules, sorted(d["kind"] for d in docs)
    se = entries[0]
    hosts = se["spec"]["hosts"]
    assert "login.example.com" in hosts and se["spec"]["location"] == "MESH_EXTERNAL"
    assert se["spec"]["resolution"] == "DNS" and se["spec"]["ports"][0]["number"] == 443
    assert sorted(rules) == sorted(hosts), f"a DestinationRule per ServiceEntry host: {sorted(rules)} vs {hosts}"
    for host, dr in rules.items():
        assert se["apiVersion"] == dr["apiVersion"] == "networking.istio.io/v1"
        assert dr["spec"]["trafficPolicy"]["tls"]["mode"] == "SIMPLE", host
        assert dr["spec"]["trafficPolicy"]["tls"]["sni"] == host, host
        assert f"outbound|443||{host}" in text, f"pluginConfig names no cluster for {host}"
    for needle in (
        "apiVersion: networking.istio.io/v1",
        "kind: ServiceEntry",
        "kind: DestinationRule",
        "location: MESH_EXTERNAL",
        "resolution: DNS",
        "mode: SIMPLE",
        "sni: login.example.com",
        "outbound|443||login.example.com",
    ):
        assert needle in text, f"envoy/istio/remote-jwks.yaml lacks {needle!r}"
