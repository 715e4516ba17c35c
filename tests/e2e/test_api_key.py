"""API keys end to end (issue 4): a real Envoy 1.40 (V8, `--concurrency 2`) with trustgate.wasm whose `api_key`
provider holds only SHA-256 digests of the keys; the key comes from `Authorization: Bearer <key>`,
`Authorization: ApiKey <key>` (scheme case-insensitive) or the `api_key` query parameter, exactly one of them.

Every test asserts the status and what the upstream saw: the client's headers and no credential (header
removed, query parameter removed, other parameters kept) on success, nothing at all on a denial.
"""
from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qsl, urlsplit

import pytest

import trustgate_e2e as h

KEYS = {  # client id -> (name, key, status)
    "ci": ("CI", "tg_ci_8Yq3xV0mR2pL7wK5nB1c", None),
    "ops": ("Ops", "tg_ops_Jd9sQ4eT6uH2gF8aZ3v", "suspended"),
    "gone": ("Gone", "tg_gone_Wm5rX1yC7kP3oN9b", "revoked"),
}
CI_KEY = KEYS["ci"][1]
IDENTITY = ["x-client-id", "x-client-name"]


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def filter_config() -> dict:
    clients = {}
    for cid, (name, key, status) in KEYS.items():
        clients[cid] = {"name": name, "key_sha256": sha256_hex(key)}
        if status:
            clients[cid]["status"] = status
    return {
        "providers": {
            "keys": {"api_key": {"clients": clients, "headers": {"x-client-id": "${client.id}", "x-client-name": "${client.name}"}}}
        },
        "strip_headers": h.STRIP_HEADERS,
        "rules": [
            {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
            {"name": "public", "match": {"path_prefix": "/public/"}, "allow": "public"},
            {"name": "keys", "match": {"path_prefix": "/keys/"}, "require": "keys"},
        ],
    }


@pytest.fixture(scope="module")
def gw(start_gateway) -> h.Envoy:
    cfg = filter_config()
    text = json.dumps(cfg)
    assert all(key not in text for _, key, _ in KEYS.values()), "the config must hold digests only"
    return start_gateway(cfg)


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.clear()


only_request = h.only_request


def assert_allowed(resp: h.Response, upstream: h.EchoUpstream, client_id: str = "ci") -> h.Seen:
    assert resp.status == 200, resp.describe()
    seen = only_request(upstream)
    want = {"x-client-id": [client_id], "x-client-name": [KEYS[client_id][0]]}
    got = {name: seen.values(name) for name in IDENTITY}
    assert got == want, f"identity headers at the upstream: {got!r}, want {want!r}"
    assert "authorization" not in seen.names(), f"the credential was forwarded upstream: {seen!r}"
    assert not any(key in seen.path for _, key, _ in KEYS.values()), f"a key reached the upstream in the path: {seen!r}"
    query = dict(parse_qsl(urlsplit(seen.path).query, keep_blank_values=True))
    assert "api_key" not in query, f"the api_key parameter reached the upstream: {seen!r}"
    return seen


def assert_denied(resp: h.Response, upstream: h.EchoUpstream, status: int, reason: str) -> dict:
    body = h.assert_denied(resp, upstream, status, reason)
    assert not any(key in resp.text() for _, key, _ in KEYS.values()), "a key is echoed in the reply"
    return body


def assert_invalid(resp: h.Response, upstream: h.EchoUpstream, reason: str) -> None:
    assert_denied(resp, upstream, 401, reason)
    challenge = resp.header("www-authenticate") or ""
    assert challenge.startswith("ApiKey "), resp.describe()
    assert 'realm="trustgate"' in challenge and 'error="invalid_token"' in challenge, resp.describe()


# ----------------------------------------------------------------------------------------------- accepted


@pytest.mark.parametrize(
    "scheme", ["Bearer", "ApiKey", "bearer", "apikey", "BEARER", "APIKEY", "aPiKeY"],
)
def test_key_in_authorization_header(gw, upstream, scheme):
    resp = gw.request("/keys/items?x=1", [("Authorization", f"{scheme} {CI_KEY}")])
    seen = assert_allowed(resp, upstream)
    assert seen.path == "/keys/items?x=1", repr(seen)


@pytest.mark.parametrize(
    "query,rest",
    [
        (f"api_key={CI_KEY}", ""),
        (f"a=1&api_key={CI_KEY}&b=two", "a=1&b=two"),
        (f"a=1&api_key={CI_KEY}", "a=1"),
        (f"api_key={CI_KEY}&b=%20x", "b=%20x"),
    ],
    ids=["alone", "middle", "last", "first"],
)
def test_key_in_query(gw, upstream, query, rest):
    resp = gw.request(f"/keys/items?{query}")
    seen = assert_allowed(resp, upstream)
    path, _, got_rest = seen.path.partition("?")
    assert path == "/keys/items", repr(seen)
    assert sorted(parse_qsl(got_rest, keep_blank_values=True)) == sorted(parse_qsl(rest, keep_blank_values=True)), (
        f"other query parameters changed: sent {query!r} (minus the key), upstream saw {seen.path!r}"
    )


def test_post_body_passes_untouched(gw, upstream):
    body = b'{"deploy": "v1.2.3"}'
    resp = gw.request("/keys/deploy", [("Authorization", f"ApiKey {CI_KEY}")], method="POST", body=body)
    seen = assert_allowed(resp, upstream)
    assert seen.body == body and seen.method == "POST", repr(seen)


def test_keys_are_not_single_use(gw, upstream):
    """An API key is a bearer credential, not a nonce: the same request twice passes twice."""
    for _ in range(2):
        assert_allowed(gw.request("/keys/x", [("Authorization", f"Bearer {CI_KEY}")]), upstream)
        upstream.clear()


# ----------------------------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    "headers,path",
    [
        ([("Authorization", "Bearer tg_ci_8Yq3xV0mR2pL7wK5nB1d")], "/keys/x"),  # last character changed
        ([("Authorization", f"ApiKey {CI_KEY}x")], "/keys/x"),
        ([("Authorization", f"Bearer {CI_KEY.upper()}")], "/keys/x"),
        ([("Authorization", f"Bearer {sha256_hex(CI_KEY)}")], "/keys/x"),  # the digest is not the key
        ([], "/keys/x?api_key=nope"),
    ],
    ids=["one-char", "appended", "uppercased", "digest-as-key", "query"],
)
def test_wrong_key(gw, upstream, headers, path):
    assert_invalid(gw.request(path, headers + [("X-Client-ID", "ci")]), upstream, "invalid_key")


def test_missing_key(gw, upstream):
    resp = gw.request("/keys/x?other=1", [("X-Client-ID", "ci")])
    assert_denied(resp, upstream, 401, "missing")
    challenge = resp.header("www-authenticate") or ""
    assert challenge.startswith("ApiKey ") and 'realm="trustgate"' in challenge, resp.describe()
    assert "error=" not in challenge, resp.describe()


@pytest.mark.parametrize(
    "headers,query",
    [
        ([("Authorization", f"Bearer {CI_KEY}")], f"api_key={CI_KEY}"),
        ([("Authorization", f"Bearer {CI_KEY}"), ("Authorization", f"ApiKey {CI_KEY}")], ""),
        ([("Authorization", f"ApiKey {CI_KEY}"), ("Authorization", f"Bearer {CI_KEY}")], ""),
        ([("Authorization", f"ApiKey {CI_KEY}, Bearer {CI_KEY}")], ""),  # what a proxy makes of two headers
        ([("Authorization", f"Bearer {CI_KEY}"), ("Authorization", f"Bearer {KEYS['ops'][1]}")], ""),
        ([], f"api_key={CI_KEY}&api_key={CI_KEY}"),
        ([("Authorization", "Bearer nope")], f"api_key={CI_KEY}"),
    ],
    ids=["header-and-query", "two-headers", "two-headers-apikey-first", "joined", "two-headers-two-keys",
         "two-query-params", "bad-header-good-query"],
)
def test_key_sent_twice(gw, upstream, headers, query):
    path = "/keys/x" + (f"?{query}" if query else "")
    assert_invalid(gw.request(path, headers), upstream, "multiple_credentials")


@pytest.mark.parametrize("client_id,reason", [("ops", "client_suspended"), ("gone", "client_revoked")])
def test_inactive_client(gw, upstream, client_id, reason):
    resp = gw.request("/keys/x", [("Authorization", f"ApiKey {KEYS[client_id][1]}")])
    assert_denied(resp, upstream, 403, reason)


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "ApiKey    ", "Basic Y2k6c2VjcmV0"])
def test_empty_or_other_scheme(gw, upstream, value):
    """No usable key: never a pass; no credential of this provider's schemes at all (401 `missing`)."""
    resp = gw.request("/keys/x", [("Authorization", value)])
    assert_denied(resp, upstream, 401, "missing")


# ----------------------------------------------------------------------------------------------- forged identity


FORGED = [("X-Client-ID", "ops"), ("x-client-name", "Ops"), ("X-CLIENT-ID", "root")]


@pytest.mark.parametrize("path", ["/healthz", f"/public/page?api_key={CI_KEY}"])
def test_forged_identity_stripped_on_public_route(gw, upstream, path):
    resp = gw.request(path, FORGED)
    assert resp.status == 200, resp.describe()
    seen = only_request(upstream)
    for name in IDENTITY:
        assert name not in seen.names(), f"forged {name} reached the upstream on public {path}: {seen!r}"


def test_forged_identity_replaced_on_protected_route(gw, upstream):
    assert_allowed(gw.request("/keys/x", FORGED + [("Authorization", f"Bearer {CI_KEY}")]), upstream)


def test_log_never_holds_a_key(gw, upstream):
    mark = gw.log_mark()
    assert gw.request("/keys/x", [("Authorization", f"Bearer {CI_KEY}")]).status == 200
    assert gw.request("/keys/x", [("Authorization", "Bearer tg_wrong_key_for_the_log_0001")]).status == 401
    want = "trustgate: deny rule=keys provider=keys reason=invalid_key status=401 method=GET"
    line = gw.wait_for_log(lambda l: l.endswith(want), since=mark)
    assert line is not None, f"no log line `{want}` after the request\n" + gw.log_tail(20)
    log = gw.log_text()
    assert CI_KEY not in log and "tg_wrong_key_for_the_log_0001" not in log, "the Envoy log contains a key"
