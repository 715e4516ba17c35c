"""Fleet state (issue 16): two Envoys (each `--concurrency 2`) keep their replay nonces and rate counters in
one Redis, reached through webdis (`state.redis`), both from the Debian packages (`make fleet-deps`).

Redis runs on a free loopback port without persistence; webdis gets a generated config with the ACL of the
README (only SET and EVAL). Checked: a gatekeeper HMAC request (also with a signed body), an RFC 9421
signature, a Signet proof and a DPoP proof replayed to the other proxy are refused; a client rate limit is one
limit across both proxies; every key carries the prefix and a TTL (`redis-cli`); webdis stopped or frozen (no
answer: the timeout) → 503 `state_unavailable` within the timeout and nothing upstream; webdis back → traffic
passes; Redis restarted empty → fresh requests pass.
"""
from __future__ import annotations

import shutil
import signal
import time
import uuid

import pytest

import gatekeeper_client as gk
import trustgate_e2e as h
from fleet_store import Store
from http_message_signatures import algorithms
from test_http_signature import make_key, sign as sign_httpsig
from test_signet import PUBLIC as SIGNET_MASTER, mint as mint_signet
from test_dpop import HOST as DPOP_HOST, DpopClient, dpop_headers, token as dpop_token

CLIENT = "fleet-client"
SECRET = "fleet-shared-secret-0001"  # TEST ONLY
LIMITED = "fleet-limited"
LIMITED_SECRET = "fleet-limited-secret-0002"  # TEST ONLY
LIMIT = 3
PREFIX = "tgtest:"
TIMEOUT_MS = 300
SIG_KEY = make_key("k-ed", algorithms.ED25519)
IDP = h.generate_key("ES256", "idp-1")


def filter_config() -> dict:
    """Two hmac clients (one rate-limited) and `state.redis` on the `state` cluster (webdis)."""
    clients = {
        CLIENT: {"name": "Fleet", "secret": SECRET},
        LIMITED: {"name": "Limited", "secret": LIMITED_SECRET, "rate_limit": {"requests": LIMIT, "window_s": 60}},
    }
    return {
        "providers": {
            "gatekeeper": {"hmac": {"clients": clients, "headers": {"x-client-id": "${client.id}"}}},
            "partners": {"http_signature": {"keys": {"k-ed": SIG_KEY.config}, "headers": {"x-client-id": "${key.id}"}}},
            "corp": {"jwt": {"issuer": h.ISSUER, "audiences": [h.AUDIENCE], "algorithms": ["ES256"],
                             "keys": {"jwks": {"keys": [IDP.jwk]}}, "dpop": {"algorithms": ["ES256"]},
                             "headers": {"x-commit-owner": "human:${claims.sub}"}}},
            "agents": {"signet": {"master_keys": {"bots": SIGNET_MASTER}, "purposes": ["api-access"],
                                  "headers": {"x-agent-id": "agent:${signet.master}"}}},
        },
        "strip_headers": h.STRIP_HEADERS,
        "rules": [
            {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
            {"name": "sig", "match": {"path_prefix": "/sig/"}, "require": "partners"},
            {"name": "agents", "match": {"path_prefix": "/agents/"}, "require": "agents"},
            {"name": "dpop", "match": {"path_prefix": "/dpop/"}, "require": "corp"},
            {"name": "api", "match": {"path_prefix": "/api/"}, "require": "gatekeeper"},
        ],
        "state": {"redis": {"cluster": "state", "authority": "webdis", "prefix": PREFIX, "timeout_ms": TIMEOUT_MS}},
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    missing = [b for b in ("redis-server", "redis-cli", "webdis") if not shutil.which(b)]
    if missing:  # an error, never a skip: `make test` installs them (make fleet-deps)
        pytest.fail(f"{missing} not installed: make fleet-deps (apt-get install -y redis-server webdis)", pytrace=False)
    s = Store(tmp_path_factory.mktemp("fleet-store"))
    s.start_redis()
    s.start_webdis()
    yield s
    s.stop(s.webdis)
    s.stop(s.redis)


@pytest.fixture(scope="module")
def fleet(envoy_bin, wasm, upstream, tmp_path_factory, store):
    proxies = [
        h.start_gateway(envoy_bin, wasm, upstream, tmp_path_factory.mktemp(f"fleet-{n}"), filter_config(),
                        {"state": store.webdis_port}, name=f"fleet-{n}")
        for n in ("a", "b")
    ]
    yield proxies
    for p in proxies:
        p.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.clear()


def signed(proxy: h.Envoy, client: str = CLIENT, secret: str = SECRET, nonce: str | None = None, path="/api/x"):
    nonce = nonce or str(uuid.uuid4())
    header = gk.sign_fast(client, secret, "GET", path, int(time.time()), nonce)
    return proxy.request(path, [("Authorization", header)]), header


def test_a_replay_to_the_other_proxy_is_refused(fleet, upstream):
    a, b = fleet
    first, header = signed(a)
    assert first.status == 200, first.describe()
    assert [s.values("x-client-id") for s in upstream.seen] == [[CLIENT]]
    upstream.clear()
    for proxy in (b, a, b):
        h.assert_denied(proxy.request("/api/x", [("Authorization", header)]), upstream, 401, "replayed")


def test_a_signed_body_replay_to_the_other_proxy_is_refused(fleet, upstream):
    """The body is read first (a body-signing provider), then the store is asked."""
    a, b = fleet
    body = b'{"order": 1}'
    header = gk.sign_fast(CLIENT, SECRET, "POST", "/api/orders", int(time.time()), str(uuid.uuid4()), body)
    r = a.request("/api/orders", [("Authorization", header)], method="POST", body=body)
    assert r.status == 200, r.describe()
    assert [s.body for s in upstream.seen] == [body]
    upstream.clear()
    r = b.request("/api/orders", [("Authorization", header)], method="POST", body=body)
    h.assert_denied(r, upstream, 401, "replayed")


def test_an_http_signature_replay_to_the_other_proxy_is_refused(fleet, upstream):
    a, b = fleet
    signed = sign_httpsig(SIG_KEY, "GET", "/sig/x", nonce=str(uuid.uuid4()))
    r = a.request("/sig/x", signed.headers)
    assert r.status == 200, r.describe()
    upstream.clear()
    h.assert_denied(b.request("/sig/x", signed.headers), upstream, 401, "replayed")


def test_a_signet_proof_replayed_to_the_other_proxy_is_refused(fleet, upstream):
    a, b = fleet
    proof = mint_signet("GET", "/agents/once")
    r = a.request("/agents/once", [("Signet-Proof", proof)])
    assert r.status == 200, r.describe()
    upstream.clear()
    h.assert_denied(b.request("/agents/once", [("Signet-Proof", proof)]), upstream, 401, "replayed")


@pytest.fixture(scope="module")
def dpop_client():
    c = DpopClient()
    yield c
    c.close()


def test_a_dpop_proof_replayed_to_the_other_proxy_is_refused(fleet, upstream, dpop_client):
    a, b = fleet
    key, jkt = dpop_client.key("ES256")
    tok = dpop_token(IDP, {"jkt": jkt})
    proof = dpop_client.proof(key, "GET", f"http://{DPOP_HOST}/dpop/orders", tok)
    r = h.http_request(a.port, "/dpop/orders", dpop_headers(tok, proof), host=DPOP_HOST)
    assert r.status == 200, r.describe()
    upstream.clear()
    r = h.http_request(b.port, "/dpop/orders", dpop_headers(tok, proof), host=DPOP_HOST)
    h.assert_denied(r, upstream, 401, "dpop_proof_replayed")


def test_a_client_limit_is_one_limit_across_the_fleet(fleet, upstream):
    a, b = fleet
    for i in range(LIMIT):
        r, _ = signed(fleet[i % 2], LIMITED, LIMITED_SECRET)
        assert r.status == 200, r.describe()
    upstream.clear()
    for proxy in (a, b):
        r, _ = signed(proxy, LIMITED, LIMITED_SECRET)
        h.assert_denied(r, upstream, 429, "rate_limited")
        assert 1 <= int(r.header("retry-after") or 0) <= 60, r.describe()


def test_every_key_has_the_prefix_and_a_ttl(fleet, store):
    signed(fleet[0])
    keys = store.cli("--scan", "--pattern", "*").split()
    ours = [k for k in keys if k != "tgtest:probe"]
    assert ours, keys
    for k in ours:
        assert k.startswith(PREFIX), k
        assert int(store.cli("TTL", k)) > 0, k
    assert any(k.startswith(f"{PREFIX}replay:gatekeeper:{CLIENT}:") for k in ours), ours


def test_store_outage_fails_closed_then_recovers(fleet, store, upstream):
    a, b = fleet
    store.stop(store.webdis)
    try:
        for proxy in (a, b):
            started = time.time()
            r, _ = signed(proxy)
            elapsed = time.time() - started
            h.assert_denied(r, upstream, 503, "state_unavailable")
            assert elapsed < TIMEOUT_MS / 1000 + 1.0, elapsed
        assert "state store unavailable: cause=" in a.log_text()
        assert a.stats().get("wasmcustom.trustgate.state.redis.unavailable", 0) >= 1, a.stats()
    finally:
        store.start_webdis()
    for proxy in (a, b):
        r, _ = signed(proxy)
        assert r.status == 200, r.describe()


def test_a_store_that_does_not_answer_times_out_closed(fleet, store, upstream):
    """webdis frozen (SIGSTOP): the call times out after `timeout_ms`, 503, nothing upstream."""
    a, _ = fleet
    store.webdis.send_signal(signal.SIGSTOP)
    try:
        started = time.time()
        r, _ = signed(a)
        elapsed = time.time() - started
        h.assert_denied(r, upstream, 503, "state_unavailable")
        assert TIMEOUT_MS / 1000 - 0.05 <= elapsed < TIMEOUT_MS / 1000 + 1.0, elapsed
    finally:
        store.webdis.send_signal(signal.SIGCONT)
    deadline = time.time() + 10
    while True:
        r, _ = signed(a)
        if r.status == 200 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert r.status == 200, r.describe()


def test_redis_restarted_empty_lets_fresh_requests_pass(fleet, store, upstream):
    store.stop(store.redis)
    store.start_redis()
    assert store.cli("DBSIZE") == "0"
    deadline = time.time() + 10
    while True:
        r, _ = signed(fleet[1])
        if r.status == 200 or time.time() > deadline:
            break
        time.sleep(0.3)  # webdis reconnects on its own
    assert r.status == 200, r.describe()
    for proxy in fleet:
        r, _ = signed(proxy)
        assert r.status == 200, r.describe()
