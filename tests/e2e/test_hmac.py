"""Gatekeeper HMAC signed requests end to end (issue 4): a real Envoy 1.40 (V8, `--concurrency 2`) with
trustgate.wasm, requests signed by the reference client byteforge-hmac 0.2.0 (tests/e2e/gatekeeper_client.py),
and an upstream that records what it received (headers and body).

Every test asserts the status and what the upstream saw: the identity headers and the unmodified body on
success, nothing at all on a denial. Replay and rate limits are checked across the two worker threads with one
keep-alive connection pinned on each (`trustgate_e2e.connections_per_worker`, from Envoy's per-worker listener
stats), so "process-wide" is tested deterministically, not by luck.

Two Envoys: `gw` (the contract's providers) and `gw_short` (a 5 s timestamp window: a nonce must be remembered
while its timestamp is still acceptable, also for a timestamp in the future).
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid

import pytest

import gatekeeper_client as gk
import trustgate_e2e as h

VECTORS = json.loads((h.REPO.parent / "shared" / "vectors" / "http_signatures" / "gatekeeper_hmac.json").read_text())

MAIN = "3f2c1a9e-0000-4000-8000-000000000001"
SECRETS = {
    MAIN: "s3cr3t-shared-secret",
    "client-suspended": "suspended-secret-0001",
    "client-revoked": "revoked-secret-0002",
    "client-getonly": "getonly-secret-0003",
    "client-rule": "rule-secret-0004",
    "client-limited": "limited-secret-0005",
}
NAMES = {
    MAIN: "Mobile App",
    "client-suspended": "Old",
    "client-revoked": "Gone",
    "client-getonly": "Reader",
    "client-rule": "Scoped",
    "client-limited": "Limited",
}
IDENTITY = ["x-client-id", "x-client-name", "x-route-id"]
HEADERS = {"x-client-id": "${client.id}", "x-client-name": "${client.name}", "x-route-id": "${rule}"}
SMALL_LIMIT = 1024
DEFAULT_LIMIT = 1048576
LIMITED = 3  # requests per 60 s of client-limited


def clients_config() -> dict:
    clients = {cid: {"name": NAMES[cid], "secret": SECRETS[cid]} for cid in SECRETS}
    clients["client-suspended"]["status"] = "suspended"
    clients["client-revoked"]["status"] = "revoked"
    clients["client-getonly"]["methods"] = ["GET"]
    clients["client-rule"]["rules"] = ["orders"]
    clients["client-limited"]["rate_limit"] = {"requests": LIMITED, "window_s": 60}
    return clients


def filter_config() -> dict:
    providers = {
        "gatekeeper": {
            "hmac": {
                "clients": clients_config(),
                "timestamp_window_s": 300,
                "body": "signed",
                "max_body_bytes": DEFAULT_LIMIT,
                "rate_limit": {"requests": 1000, "window_s": 60},
                "headers": HEADERS,
            }
        },
        "gatekeeper-small": {
            "hmac": {"clients": {MAIN: {"name": NAMES[MAIN], "secret": SECRETS[MAIN]}}, "max_body_bytes": SMALL_LIMIT, "headers": HEADERS}
        },
        "gatekeeper-empty": {
            "hmac": {"clients": {MAIN: {"name": NAMES[MAIN], "secret": SECRETS[MAIN]}}, "body": "empty", "headers": HEADERS}
        },
    }
    rules = [
        {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
        {"name": "public", "match": {"path_prefix": "/public/"}, "allow": "public"},
        {"name": "orders", "match": {"path_prefix": "/api/orders"}, "require": "gatekeeper"},
        {"name": "api", "match": {"path_prefix": "/api/"}, "require": "gatekeeper"},
        {"name": "small", "match": {"path_prefix": "/small/"}, "require": "gatekeeper-small"},
        {"name": "empty", "match": {"path_prefix": "/empty/"}, "require": "gatekeeper-empty"},
    ]
    return {"providers": providers, "strip_headers": h.STRIP_HEADERS, "rules": rules}


@pytest.fixture(scope="module")
def gw(start_gateway) -> h.Envoy:
    return start_gateway(filter_config())


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.clear()


@pytest.fixture
def workers(gw, upstream):
    """One keep-alive connection on each worker thread: {0: conn, 1: conn}."""
    try:
        conns = h.connections_per_worker(gw)
    except h.HarnessError as e:
        pytest.fail(str(e), pytrace=False)
    upstream.clear()  # the probes (public /healthz) reached it
    yield conns
    for c in conns.values():
        c.close()


# ----------------------------------------------------------------------------------------------- helpers


def auth(
    method: str,
    path: str,
    body: bytes | str = b"",
    client_id: str = MAIN,
    **kw,
) -> tuple[str, str]:
    """The Authorization header byteforge-hmac makes (kw: timestamp=, nonce=)."""
    return ("Authorization", gk.sign(client_id, SECRETS[client_id], method, path, body, **kw))


def send(target, method: str, path: str, body: bytes | None = None, headers=(), client_id: str = MAIN, **sign_kw):
    """Sign (path without its query, the raw body) and send on `target` (an Envoy or a KeepAlive)."""
    header = auth(method, path.split("?", 1)[0], body or b"", client_id, **sign_kw)
    return target.request(path, [header, *headers], method=method, body=body)


only_request = h.only_request


def assert_allowed(
    resp: h.Response,
    upstream: h.EchoUpstream,
    *,
    client_id: str = MAIN,
    route: str,
    method: str = "GET",
    path: str | None = None,
    body: bytes = b"",
) -> h.Seen:
    assert resp.status == 200, resp.describe()
    seen = only_request(upstream)
    want = {"x-client-id": [client_id], "x-client-name": [NAMES[client_id]], "x-route-id": [route]}
    got = {name: seen.values(name) for name in IDENTITY}
    assert got == want, f"identity headers at the upstream: {got!r}, want {want!r}"
    assert "authorization" not in seen.names(), f"the credential was forwarded upstream: {seen!r}"
    assert seen.method == method, repr(seen)
    if path is not None:
        assert seen.path == path, f"the path reaching the upstream changed: {seen!r}"
    assert seen.body == body, (
        f"the upstream got a different body ({len(seen.body)} bytes, transfer-encoding "
        f"{seen.values('transfer-encoding')}) than sent ({len(body)} bytes)"
    )
    return seen


assert_denied = h.assert_denied


def assert_invalid(resp: h.Response, upstream: h.EchoUpstream, reason: str, authorization: str | None = None):
    """401 for a credential that is there but not good: `HMAC realm="trustgate", error="invalid_token"`."""
    assert_denied(resp, upstream, 401, reason)
    challenge = resp.header("www-authenticate") or ""
    assert challenge.startswith("HMAC "), resp.describe()
    assert 'realm="trustgate"' in challenge and 'error="invalid_token"' in challenge, resp.describe()
    if authorization:
        sig = gk.fields(authorization).get("signature", "")
        assert not sig or sig not in resp.text(), "the signature is echoed in the reply"


def in_one_second(send_at, attempts: int = 5):
    """`send_at(now)` with `now` the wall-clock second the filter reads too: the request is sent early in a second
    and, if its answer came back in a later second (a slow delivery: the filter may have read the next one), sent
    again (a fresh nonce each time) instead of asserting on a second nobody knows. Returns (now, response)."""
    for _ in range(attempts):
        now = at_second_start()
        resp = send_at(now)
        if int(time.time()) == now:
            return now, resp
    pytest.fail(f"no request came back within the second it was sent in, {attempts} tries")


def at_second_start(max_fraction: float = 0.25) -> int:
    """Wait until early in a wall-clock second and return it: a request sent now reaches the filter within
    the same second, so "exactly 300 s old" stays exactly 300 s old."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        now = time.time()
        if now - int(now) < max_fraction:
            return int(now)
        time.sleep(min(0.05, 1 - (now - int(now))))
    pytest.fail("clock did not reach the start of a second")


# ----------------------------------------------------------------------------------------------- the reference client


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: f"{c['method']} {c['path_signed']}")
def test_reference_client_reproduces_the_worked_examples(case):
    """byteforge-hmac, driven the way these tests drive it, makes the vector's exact header (the vectors have
    2023 timestamps, so they cannot pass the window in a live Envoy; this proves the signing side)."""
    assert gk.reference_version() == VECTORS["byteforge_hmac_version"] == gk.REFERENCE_VERSION
    got = gk.sign(
        VECTORS["client_id"], VECTORS["secret"], case["method"], case["path_signed"], case["body"],
        timestamp=case["timestamp"], nonce=case["nonce"],
    )
    assert got == case["authorization"]
    msg = gk.string_to_sign(case["method"], case["path_signed"], case["timestamp"], case["nonce"], case["body"])
    assert msg == case["string_to_sign"].encode()
    fast = gk.sign_fast(VECTORS["client_id"], VECTORS["secret"], case["method"], case["path_signed"],
                        case["timestamp"], case["nonce"], case["body"].encode())
    assert fast == got


# ----------------------------------------------------------------------------------------------- accepted


def test_signed_get(gw, upstream):
    resp = send(gw, "GET", "/api/users", headers=[("Accept", "application/json")])
    assert_allowed(resp, upstream, route="api", path="/api/users")


def test_signed_post_json_with_the_reference_client(gw, upstream):
    """byteforge-hmac's own `request()` (requests underneath) against the gateway: body JSON-encoded and signed."""
    data = {"item": "book", "qty": 2, "note": "a\nb"}
    bf = gk.client(MAIN, SECRETS[MAIN], base_url=f"http://127.0.0.1:{gw.port}")
    r = bf.request("POST", "/api/orders", data=data, timeout=h.HTTP_TIMEOUT_S)
    assert r.status_code == 200, f"HTTP {r.status_code} {r.headers} {r.text[:300]!r}"
    seen = assert_allowed(
        h.Response(r.status_code, list(r.headers.items()), r.content), upstream,
        route="orders", method="POST", path="/api/orders", body=json.dumps(data).encode(),
    )
    assert seen.values("content-type") == ["application/json"], repr(seen)


def test_signed_get_with_the_reference_client(gw, upstream):
    bf = gk.client(MAIN, SECRETS[MAIN], base_url=f"http://127.0.0.1:{gw.port}")
    r = bf.get("/api/users/42", timeout=h.HTTP_TIMEOUT_S)
    assert r.status_code == 200, f"HTTP {r.status_code} {r.headers} {r.text[:300]!r}"
    assert_allowed(h.Response(r.status_code, list(r.headers.items()), r.content), upstream, route="api", path="/api/users/42")


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "/api/orders", '{"item": "book", "qty": 2}'.encode()),
        ("POST", "/api/orders/7/notes", '{"text": "Zoë says\\nhi", "emoji": "✓"}\r\n  '.encode()),
        ("PUT", "/api/users/42", b'{"name": "x"}'),
        ("PATCH", "/api/users/42", b"plain text, not JSON\n"),
        ("DELETE", "/api/users/42", None),
        ("POST", "/api/orders", b""),
    ],
    ids=["post-json", "post-utf8-crlf", "put", "patch-text", "delete", "post-empty"],
)
def test_signed_methods_and_bodies(gw, upstream, method, path, body):
    resp = send(gw, method, path, body)
    route = "orders" if path.startswith("/api/orders") else "api"
    assert_allowed(resp, upstream, route=route, method=method, path=path, body=body or b"")


def test_query_is_not_signed_and_reaches_upstream(gw, upstream):
    path = "/api/search?q=a%20b&page=2"
    resp = gw.request(path, [auth("GET", "/api/search")])
    assert_allowed(resp, upstream, route="api", path=path)


def test_signature_over_path_and_query_as_sent(gw, upstream):
    """The reference client signs whatever path string it is given: with a query, the query is signed too."""
    path = "/api/search?q=a%20b&page=2"
    bf = gk.client(MAIN, SECRETS[MAIN], base_url=f"http://127.0.0.1:{gw.port}")
    r = bf.get(path, timeout=h.HTTP_TIMEOUT_S)
    assert r.status_code == 200, f"HTTP {r.status_code} {r.headers} {r.text[:300]!r}"
    assert_allowed(h.Response(r.status_code, list(r.headers.items()), r.content), upstream, route="api", path=path)


def test_signature_over_another_query_is_refused(gw, upstream):
    header = auth("GET", "/api/search?q=other")
    resp = gw.request("/api/search?q=a%20b", [header])
    assert_invalid(resp, upstream, "bad_signature", header[1])


def test_same_nonce_for_two_clients(gw, upstream):
    """The replay key is client_id:nonce: another client may use the same nonce."""
    nonce = str(uuid.uuid4())
    assert_allowed(send(gw, "GET", "/api/users", nonce=nonce), upstream, route="api")
    upstream.clear()
    resp = send(gw, "GET", "/api/users", client_id="client-getonly", nonce=nonce)
    assert_allowed(resp, upstream, client_id="client-getonly", route="api")


# ----------------------------------------------------------------------------------------------- tampering


def _tampered(case: str) -> tuple[str, str, bytes | None, tuple[str, str]]:
    """(method, path, body, authorization) where the header was made for another request."""
    body = b'{"item": "book", "qty": 2}'
    header = auth("POST", "/api/orders", body)
    f = gk.fields(header[1])
    if case == "body":
        return "POST", "/api/orders", b'{"item": "book", "qty": 20}', header
    if case == "body-appended":
        return "POST", "/api/orders", body + b" ", header
    if case == "body-dropped":
        return "POST", "/api/orders", None, header
    if case == "path":
        return "POST", "/api/orders/2", body, header
    if case == "method":
        return "PUT", "/api/orders", body, header
    if case == "timestamp-1":
        return "POST", "/api/orders", body, ("Authorization", gk.with_fields(header[1], timestamp=int(f["timestamp"]) - 1))
    if case == "timestamp+1":
        return "POST", "/api/orders", body, ("Authorization", gk.with_fields(header[1], timestamp=int(f["timestamp"]) + 1))
    if case == "nonce":
        return "POST", "/api/orders", body, ("Authorization", gk.with_fields(header[1], nonce=str(uuid.uuid4())))
    if case == "client-id":  # another known client, same signature
        return "POST", "/api/orders", body, ("Authorization", gk.with_fields(header[1], client_id="client-rule"))
    if case == "signature-bit":
        sig = f["signature"]
        flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        return "POST", "/api/orders", body, ("Authorization", gk.with_fields(header[1], signature=flipped))
    if case == "other-secret":
        return "POST", "/api/orders", body, ("Authorization", gk.sign(MAIN, "not-the-secret", "POST", "/api/orders", body))
    raise ValueError(case)


TAMPER = ["body", "body-appended", "body-dropped", "path", "method", "timestamp-1", "timestamp+1", "nonce",
          "client-id", "signature-bit", "other-secret"]


@pytest.mark.parametrize("case", TAMPER)
def test_tampered_request_is_refused(gw, upstream, case):
    method, path, body, header = _tampered(case)
    resp = gw.request(path, [header, ("X-Client-ID", MAIN)], method=method, body=body)
    assert_invalid(resp, upstream, "bad_signature", header[1])


def test_refused_forgery_does_not_burn_the_nonce(gw, upstream):
    """As the reference authenticator: the nonce is stored only after the signature verified, so someone who
    saw a nonce cannot get the real request refused by sending a forgery with it first."""
    body = b'{"item": "book"}'
    header = auth("POST", "/api/orders", body)
    resp = gw.request("/api/orders", [header], method="POST", body=b'{"item": "bomb"}')
    assert_invalid(resp, upstream, "bad_signature")
    resp = gw.request("/api/orders", [header], method="POST", body=body)
    assert_allowed(resp, upstream, route="orders", method="POST", path="/api/orders", body=body)


def test_uppercase_hex_signature_is_refused(gw, upstream):
    """The reference compares the lowercase hex string: the same MAC in uppercase is not accepted."""
    header = auth("GET", "/api/users")
    upper = gk.with_fields(header[1], signature=gk.fields(header[1])["signature"].upper())
    assert upper != header[1]
    resp = gw.request("/api/users", [("Authorization", upper)])
    assert_invalid(resp, upstream, "malformed", upper)  # the wire format is 64 lowercase hex digits
    # and the nonce was not burned by it
    assert_allowed(gw.request("/api/users", [header]), upstream, route="api")


# ----------------------------------------------------------------------------------------------- replay


def test_replay_is_refused(gw, upstream):
    header = auth("GET", "/api/users")
    assert_allowed(gw.request("/api/users", [header]), upstream, route="api")
    upstream.clear()
    assert_invalid(gw.request("/api/users", [header]), upstream, "replayed", header[1])


def test_replay_on_the_same_connection_is_refused(gw, upstream):
    conn = h.KeepAlive(gw.port)
    try:
        body = b'{"a": 1}'
        header = auth("POST", "/api/orders", body)
        resp = conn.request("/api/orders", [header], method="POST", body=body)
        assert_allowed(resp, upstream, route="orders", method="POST", body=body)
        upstream.clear()
        assert_invalid(conn.request("/api/orders", [header], method="POST", body=body), upstream, "replayed")
    finally:
        conn.close()


@pytest.mark.parametrize("first,second", [(0, 1), (1, 0)])
def test_replay_on_another_worker_is_refused(gw, upstream, workers, first, second):
    """The nonce store is process-wide (shared data), not per worker VM."""
    before = h.worker_connections(gw)
    body = b'{"item": "book"}'
    header = auth("POST", "/api/orders", body)
    resp = workers[first].request("/api/orders", [header], method="POST", body=body)
    assert_allowed(resp, upstream, route="orders", method="POST", body=body)
    upstream.clear()
    resp = workers[second].request("/api/orders", [header], method="POST", body=body)
    assert_invalid(resp, upstream, "replayed")
    assert h.worker_connections(gw) == before, "a request went over a new connection: the worker is not known"


def test_simultaneous_copies_on_both_workers_one_wins(gw, upstream, workers):
    """Both workers get the same signed request at the same moment, 15 times: exactly one copy passes each
    time (the check-and-store is atomic across VMs: shared data CAS)."""
    rounds = 15
    outcomes = []
    for _ in range(rounds):
        header = auth("GET", "/api/users")
        barrier = threading.Barrier(2)
        results: dict[int, h.Response | BaseException] = {}

        def go(w: int):
            barrier.wait()
            try:
                results[w] = workers[w].request("/api/users", [header])
            except BaseException as e:  # noqa: BLE001 - reported below
                results[w] = e

        threads = [threading.Thread(target=go, args=(w,)) for w in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=h.HTTP_TIMEOUT_S + 5)
        statuses = []
        for w in (0, 1):
            r = results.get(w)
            assert isinstance(r, h.Response), f"worker {w}: {r!r}"
            if r.status != 200:
                assert r.status == 401 and r.json().get("reason") == "replayed", r.describe()
            statuses.append(r.status)
        outcomes.append(tuple(statuses))
    wins = [o.count(200) for o in outcomes]
    assert wins == [1] * rounds, f"per round (worker 0, worker 1) statuses: {outcomes}"
    seen = upstream.seen
    assert len(seen) == rounds, f"upstream saw {len(seen)} requests for {rounds} rounds"


# ----------------------------------------------------------------------------------------------- time window


@pytest.mark.parametrize("offset,ok", [(-301, False), (-300, True), (300, True), (301, False), (-86400, False)])
def test_timestamp_window(gw, upstream, offset, ok):
    """The ±300 s edges, exact: the filter reads the same second as the signer (in_one_second)."""
    def send_at(now: int):
        upstream.clear()
        header = auth("GET", "/api/users", timestamp=now + offset)
        return header, gw.request("/api/users", [header])

    _, (header, resp) = in_one_second(send_at)
    if ok:
        assert_allowed(resp, upstream, route="api")
    else:
        assert_invalid(resp, upstream, "stale_timestamp", header[1])


@pytest.mark.parametrize("timestamp", ["soon", "-5", "1e9", "", "99999999999999999999999"])
def test_unusable_timestamp(gw, upstream, timestamp):
    header = gk.with_fields(auth("GET", "/api/users")[1], timestamp=timestamp)
    resp = gw.request("/api/users", [("Authorization", header)])
    assert_invalid(resp, upstream, "malformed")  # not a number of seconds: refused before any window or MAC check


# ----------------------------------------------------------------------------------------------- malformed, missing, unknown


def test_missing_credential(gw, upstream):
    resp = gw.request("/api/users", [("X-Client-ID", MAIN)])
    assert_denied(resp, upstream, 401, "missing")
    challenge = resp.header("www-authenticate") or ""
    assert challenge.startswith("HMAC ") and 'realm="trustgate"' in challenge, resp.describe()
    assert "error=" not in challenge, resp.describe()


MALFORMED = {
    "no-params": "HMAC",
    "garbage": "HMAC this-is-not-it",
    "no-signature": 'HMAC client_id="{c}",timestamp="{t}",nonce="n-1"',
    "no-nonce": 'HMAC client_id="{c}",timestamp="{t}",signature="' + "0" * 64 + '"',
    "no-client-id": 'HMAC timestamp="{t}",nonce="n-1",signature="' + "0" * 64 + '"',
    "short-signature": 'HMAC client_id="{c}",timestamp="{t}",nonce="n-1",signature="' + "0" * 63 + '"',
    "not-hex": 'HMAC client_id="{c}",timestamp="{t}",nonce="n-1",signature="' + "zz" * 32 + '"',
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_header(gw, upstream, case):
    value = MALFORMED[case].format(c=MAIN, t=int(time.time()))
    resp = gw.request("/api/users", [("Authorization", value)])
    if case == "no-params":  # the scheme alone (Envoy trims "HMAC "): no credential at all
        assert_denied(resp, upstream, 401, "missing")
        assert (resp.header("www-authenticate") or "").startswith("HMAC "), resp.describe()
        return
    # a signature of the wrong shape (63 digits, not hex) is malformed, not a signature that fails to verify
    assert_invalid(resp, upstream, "malformed")


def test_unknown_client(gw, upstream):
    header = ("Authorization", gk.sign("nobody", "whatever", "GET", "/api/users"))
    assert_invalid(gw.request("/api/users", [header]), upstream, "unknown_client", header[1])


def test_two_hmac_headers_are_refused(gw, upstream):
    resp = gw.request("/api/users", [auth("GET", "/api/users"), auth("GET", "/api/users")])
    assert_denied(resp, upstream, 401, "multiple_credentials")


# ----------------------------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("client_id,reason", [("client-suspended", "client_suspended"), ("client-revoked", "client_revoked")])
def test_inactive_client(gw, upstream, client_id, reason):
    resp = send(gw, "GET", "/api/users", client_id=client_id)
    assert_denied(resp, upstream, 403, reason)


def test_method_not_permitted(gw, upstream):
    assert_allowed(send(gw, "GET", "/api/users", client_id="client-getonly"), upstream, client_id="client-getonly", route="api")
    upstream.clear()
    resp = send(gw, "POST", "/api/users", b'{"a": 1}', client_id="client-getonly")
    assert_denied(resp, upstream, 403, "method_not_allowed")


def test_rule_not_permitted(gw, upstream):
    resp = send(gw, "GET", "/api/orders/1", client_id="client-rule")
    assert_allowed(resp, upstream, client_id="client-rule", route="orders", path="/api/orders/1")
    upstream.clear()
    resp = send(gw, "GET", "/api/users", client_id="client-rule")
    assert_denied(resp, upstream, 403, "rule_not_allowed")


def test_rate_limit_is_process_wide(gw, upstream, workers):
    """3 per minute for client-limited: 2 on worker 0 and 1 on worker 1 pass; then both workers answer 429
    (a per-worker count would still let worker 1 through)."""
    cid = "client-limited"
    # The window is fixed (aligned to multiples of 60 s): start early in one, so the five requests cannot
    # straddle a boundary, where the count starts again.
    window = 60
    if window - time.time() % window < 15:
        time.sleep(window - time.time() % window + 0.2)
    window_end = (int(time.time()) // window + 1) * window
    for w in (0, 0, 1):
        resp = send(workers[w], "GET", "/api/users", client_id=cid)
        assert_allowed(resp, upstream, client_id=cid, route="api")
        upstream.clear()
    for w in (1, 0):
        sent = time.time()
        resp = send(workers[w], "GET", "/api/users", client_id=cid)
        assert_denied(resp, upstream, 429, "rate_limited")
        retry = resp.header("retry-after")
        assert retry is not None and re.fullmatch(r"[0-9]+", retry), resp.describe()
        # the seconds to the end of this window, as the filter read them between these two clock readings
        assert window_end - int(time.time()) <= int(retry) <= window_end - int(sent), resp.describe()
    # other clients are not affected
    assert_allowed(send(gw, "GET", "/api/users"), upstream, route="api")


# ----------------------------------------------------------------------------------------------- bodies


def test_body_at_the_limit_passes_over_it_413(gw, upstream):
    body = b"a" * SMALL_LIMIT
    resp = send(gw, "POST", "/small/upload", body)
    assert_allowed(resp, upstream, route="small", method="POST", path="/small/upload", body=body)
    upstream.clear()
    resp = send(gw, "POST", "/small/upload", body + b"a")
    assert_denied(resp, upstream, 413, "body_too_large")


def test_chunked_body_over_the_limit_413(gw, upstream):
    """No Content-Length: the limit still holds while the body streams in."""
    import http.client

    body = b"b" * (SMALL_LIMIT * 3)
    header = auth("POST", "/small/upload", body)
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=h.HTTP_TIMEOUT_S)
    try:
        conn.request("POST", "/small/upload", body=iter([body[i:i + 500] for i in range(0, len(body), 500)]),
                     headers={header[0]: header[1]}, encode_chunked=True)
        r = conn.getresponse()
        resp = h.Response(r.status, list(r.getheaders()), r.read())
    finally:
        conn.close()
    assert_denied(resp, upstream, 413, "body_too_large")


def test_chunked_body_within_the_limit_passes(gw, upstream):
    import http.client

    body = b'{"part": 1}' * 50
    header = auth("POST", "/small/upload", body)
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=h.HTTP_TIMEOUT_S)
    try:
        conn.request("POST", "/small/upload", body=iter([body[:100], body[100:]]), headers={header[0]: header[1]},
                     encode_chunked=True)
        r = conn.getresponse()
        resp = h.Response(r.status, list(r.getheaders()), r.read())
    finally:
        conn.close()
    assert_allowed(resp, upstream, route="small", method="POST", path="/small/upload", body=body)


def test_default_limit_one_mib_passes(gw, upstream):
    """The contract's 1 MiB (the default) passes whole, in Envoy's default config (per-connection buffer limit
    1 MiB as well)."""
    body = b"c" * DEFAULT_LIMIT
    resp = send(gw, "POST", "/api/upload", body)
    assert_allowed(resp, upstream, route="api", method="POST", path="/api/upload", body=body)


@pytest.mark.parametrize("size", [DEFAULT_LIMIT + 1, 2 * DEFAULT_LIMIT])
def test_over_default_limit_is_trustgates_413(gw, upstream, size):
    """Over 1 MiB with a Content-Length: trustgate's 413 (JSON, reason), known from the headers, not a bare
    `Payload Too Large` from Envoy's own buffer limit (which equals the default max_body_bytes)."""
    resp = send(gw, "POST", "/api/upload", b"c" * size)
    assert_denied(resp, upstream, 413, "body_too_large")


def test_chunked_over_default_limit_never_reaches_upstream(gw, upstream):
    """Over 1 MiB without a length: 413 from Envoy's own per-connection buffer limit (1 MiB, the default
    max_body_bytes too), which fills before trustgate sees the end of the body: no `x-trustgate-reason`."""
    import http.client

    body = b"e" * (DEFAULT_LIMIT + 4096)
    header = auth("POST", "/api/upload", body)
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=h.HTTP_TIMEOUT_S)
    try:
        chunks = iter([body[i:i + 65536] for i in range(0, len(body), 65536)])
        try:
            conn.request("POST", "/api/upload", body=chunks, headers={header[0]: header[1]}, encode_chunked=True)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the 413 came while we were still sending
        r = conn.getresponse()
        status, reason = r.status, r.getheader("x-trustgate-reason")
    finally:
        conn.close()
    assert (status, reason) == (413, None)  # Envoy's reply (trustgate's would carry its reason)
    assert upstream.seen == [], f"the upstream saw {upstream.seen!r}"


def test_body_signed_empty_is_refused_in_signed_mode(gw, upstream):
    body = b'{"item": "book"}'
    header = auth("POST", "/api/orders", b"")
    resp = gw.request("/api/orders", [header], method="POST", body=body)
    assert_invalid(resp, upstream, "bad_signature", header[1])


def test_empty_mode_accepts_a_signature_over_an_empty_body(gw, upstream):
    """`"body": "empty"` (a gatekeeper behind nginx auth_request never saw bodies): BODY is empty whatever the
    request carries, and the body still reaches the upstream untouched."""
    body = b'{"item": "book", "qty": 2}'
    header = auth("POST", "/empty/orders", b"")
    resp = gw.request("/empty/orders", [header], method="POST", body=body)
    assert_allowed(resp, upstream, route="empty", method="POST", path="/empty/orders", body=body)
    upstream.clear()
    assert_allowed(send(gw, "GET", "/empty/x"), upstream, route="empty")


def test_empty_mode_refuses_a_signature_over_the_body(gw, upstream):
    body = b'{"item": "book"}'
    header = auth("POST", "/empty/orders", body)
    resp = gw.request("/empty/orders", [header], method="POST", body=body)
    assert_invalid(resp, upstream, "bad_signature", header[1])


def test_empty_mode_large_body_is_not_limited(gw, upstream):
    body = b"d" * (SMALL_LIMIT * 64)
    header = auth("POST", "/empty/upload", b"")
    resp = gw.request("/empty/upload", [header], method="POST", body=body)
    assert_allowed(resp, upstream, route="empty", method="POST", path="/empty/upload", body=body)


# ----------------------------------------------------------------------------------------------- forged identity


FORGED = [("X-Client-ID", "mallory"), ("x-client-name", "Mallory"), ("X-Route-ID", "admin"), ("X-CLIENT-ID", "eve")]


@pytest.mark.parametrize("path", ["/healthz", "/public/page?x=1"])
def test_forged_identity_stripped_on_public_route(gw, upstream, path):
    resp = gw.request(path, FORGED)
    assert resp.status == 200, resp.describe()
    seen = only_request(upstream)
    for name in IDENTITY:
        assert name not in seen.names(), f"forged {name} reached the upstream on public {path}: {seen!r}"


def test_forged_identity_replaced_on_protected_route(gw, upstream):
    resp = send(gw, "GET", "/api/users", headers=FORGED)
    assert_allowed(resp, upstream, route="api")  # exactly one value each: the client's


def test_forged_identity_without_credential_is_denied(gw, upstream):
    assert_denied(gw.request("/api/users", FORGED), upstream, 401, "missing")


# ----------------------------------------------------------------------------------------------- observability


def test_counters_and_logs_never_hold_secrets(gw, upstream):
    header = auth("GET", "/api/users")
    mark = gw.log_mark()
    assert gw.request("/api/users", [header]).status == 200
    assert gw.request("/api/users", [header]).status == 401
    bad = ("Authorization", gk.with_fields(header[1], nonce=str(uuid.uuid4())))
    assert gw.request("/api/users", [bad]).status == 401
    stats = {k: v for k, v in gw.stats("wasmcustom.trustgate.").items()}
    for name in ("wasmcustom.trustgate.allow.gatekeeper", "wasmcustom.trustgate.deny.replayed.gatekeeper",
                 "wasmcustom.trustgate.deny.bad_signature.gatekeeper"):
        assert stats.get(name, 0) >= 1, f"{name} missing or 0; have {json.dumps(stats, indent=1, sort_keys=True)}"
    for reason in ("replayed", "bad_signature"):
        want = f"trustgate: deny rule=api provider=gatekeeper reason={reason} status=401 method=GET"
        line = gw.wait_for_log(lambda l: l.endswith(want), since=mark)
        assert line is not None, f"no log line `{want}` after the requests\n" + gw.log_tail(20)
    log = gw.log_text()
    leaked = [what for what, s in (("signature", gk.fields(header[1])["signature"]),
                                   *((f"secret of {c}", v) for c, v in SECRETS.items())) if s in log]
    assert not leaked, f"the Envoy log contains the {leaked}"


# ----------------------------------------------------------------------------------------------- short window

SHORT_WINDOW = 5


@pytest.fixture(scope="module")
def gw_short(start_gateway) -> h.Envoy:
    cfg = {
        "providers": {
            "gk-short": {"hmac": {"clients": {MAIN: {"name": NAMES[MAIN], "secret": SECRETS[MAIN]}},
                                  "timestamp_window_s": SHORT_WINDOW, "headers": HEADERS}}
        },
        "rules": [{"name": "short", "match": {"path_prefix": "/"}, "require": "gk-short"}],
    }
    return start_gateway(cfg, name="hmac_short_window")


def test_future_timestamp_nonce_is_remembered_while_acceptable(gw_short, upstream):
    """A timestamp `window` seconds ahead stays acceptable for 2 x window after it is first seen; its nonce must
    be remembered that long (the reference's `_remaining_lifetime`), not just `window` seconds from first use."""
    now = at_second_start()
    ts = now + SHORT_WINDOW
    header = auth("GET", "/x", timestamp=ts)
    assert_allowed(gw_short.request("/x", [header]), upstream, route="short")
    upstream.clear()
    # now + window + 2: more than `window` after first use, the timestamp is still inside the window (2 s old)
    time.sleep(max(0.0, now + SHORT_WINDOW + 2.3 - time.time()))
    assert abs(int(time.time()) - ts) <= SHORT_WINDOW - 1
    assert_invalid(gw_short.request("/x", [header]), upstream, "replayed", header[1])
    # and once the timestamp is outside the window, it is stale (not replayed, not accepted)
    time.sleep(max(0.0, ts + SHORT_WINDOW + 1.3 - time.time()))
    assert_invalid(gw_short.request("/x", [header]), upstream, "stale_timestamp", header[1])


def test_short_window_past_edge(gw_short, upstream):
    def send_at(now: int, age: int):
        upstream.clear()
        return gw_short.request("/y", [auth("GET", "/y", timestamp=now - age)])

    _, resp = in_one_second(lambda now: send_at(now, SHORT_WINDOW))
    assert_allowed(resp, upstream, route="short")
    _, resp = in_one_second(lambda now: send_at(now, SHORT_WINDOW + 1))
    assert_invalid(resp, upstream, "stale_timestamp")
