"""JWT assertions end to end: a real Envoy 1.40 (V8) with trustgate.wasm, tokens minted by PyJWT from keys
generated at test time, and an upstream that records what it received. Every test asserts what the
upstream saw (and, for denials, that it saw nothing)."""
from __future__ import annotations

import json
import time

import pytest

import trustgate_e2e as h
from trustgate_e2e import bearer, claims, mint

OWNER = "x-commit-owner"
ALGS = {"es": "ES256", "rs": "RS256", "ed": "EdDSA", "hs": "HS256", "pem": "ES256"}


@pytest.fixture(scope="module")
def gw(start_gateway, keys) -> h.Envoy:
    return start_gateway(h.jwt_filter_config(keys))


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.clear()


def token_for(keys, provider: str, **claim_overrides) -> str:
    kid = None if provider == "pem" else h._KEY_KID  # the PEM provider's key has no kid
    return mint(keys[provider], claims(**claim_overrides), kid=kid)


def assert_allowed(resp: h.Response, upstream: h.EchoUpstream, owner: str = "human:alice") -> h.Seen:
    assert resp.status == 200, resp.describe()
    seen = only_request(upstream)
    got = seen.values(OWNER)
    assert got == [owner], f"upstream saw x-commit-owner {got!r}, want exactly [{owner!r}]"
    assert "authorization" not in seen.names(), "the credential was forwarded upstream"
    return seen


only_request = h.only_request


assert_denied = h.assert_denied


def assert_invalid_token(resp, upstream, reason, token: str | None = None):
    body = assert_denied(resp, upstream, 401, reason)
    assert body["error"] == "invalid_token", resp.describe()
    challenge = resp.header("www-authenticate") or ""
    assert challenge.startswith("Bearer "), resp.describe()
    assert 'realm="trustgate"' in challenge and 'error="invalid_token"' in challenge, resp.describe()
    if token:
        assert not _contains_token_part(resp.text(), token), "the token (or a part of it) is echoed in the reply"


def _contains_token_part(text: str, token: str) -> bool:
    """Whether `text` holds the token or one of its segments. Computed outside `assert` so that pytest's
    introspection never prints the token."""
    parts = [token] + [p for p in token.split(".") if len(p) >= 8]
    return any(p in text for p in parts)


# ----------------------------------------------------------------------------------------- valid tokens


@pytest.mark.parametrize("provider", list(ALGS))
def test_valid_token_sets_identity(gw, upstream, keys, provider):
    resp = gw.request(f"/{provider}/resource?x=1", [bearer(token_for(keys, provider))])
    seen = assert_allowed(resp, upstream)
    assert seen.path == f"/{provider}/resource?x=1", "the path reaching the upstream changed"


def test_claim_drives_template(gw, upstream, keys):
    resp = gw.request("/es/x", [bearer(token_for(keys, "es", principal_type="agent", sub="build-bot"))])
    assert_allowed(resp, upstream, owner="agent:build-bot")


def test_second_audience_and_audience_array(gw, upstream, keys):
    resp = gw.request("/es/x", [bearer(token_for(keys, "es", aud=["unrelated", "second-audience"]))])
    assert_allowed(resp, upstream)


def test_bearer_scheme_is_case_insensitive(gw, upstream, keys):
    resp = gw.request("/es/x", [("authorization", "bearer " + token_for(keys, "es"))])
    assert_allowed(resp, upstream)


def test_any_requirement(gw, upstream, keys):
    assert_allowed(gw.request("/any/x", [bearer(token_for(keys, "rs"))]), upstream)
    upstream.clear()
    assert_allowed(gw.request("/any/x", [bearer(token_for(keys, "es"))]), upstream)
    upstream.clear()
    resp = gw.request("/any/x", [bearer(token_for(keys, "ed"))])  # valid, but not a provider of this rule
    assert_denied(resp, upstream, 401, "alg_not_allowed")  # EdDSA is in neither provider's `algorithms`


# ----------------------------------------------------------------------------------------- forged identity

FORGERIES = {
    "canonical": [("X-Commit-Owner", "human:mallory")],
    "odd-case": [("x-COMMIT-owner", "human:mallory")],
    "two-copies": [("X-Commit-Owner", "human:mallory"), ("x-commit-owner", "agent:mallory")],
}
OTHER_STRIPPED = [("X-User", "mallory"), ("Remote-User", "mallory"), ("X-Forwarded-User", "mallory"), ("X-Email", "m@x")]


@pytest.mark.parametrize("forgery", list(FORGERIES))
@pytest.mark.parametrize("path", ["/healthz", "/public/page", "/healthz?probe=1"])
def test_forged_identity_stripped_on_public_route(gw, upstream, path, forgery):
    resp = gw.request(path, FORGERIES[forgery] + OTHER_STRIPPED)
    assert resp.status == 200, resp.describe()
    seen = only_request(upstream)
    names = seen.names()
    for header in (OWNER, "x-user", "remote-user", "x-forwarded-user", "x-email"):
        assert header not in names, f"forged {header} reached the upstream on public {path}: {seen!r}"


@pytest.mark.parametrize("forgery", list(FORGERIES))
@pytest.mark.parametrize("provider", ["es", "hs"])
def test_forged_identity_replaced_on_protected_route(gw, upstream, keys, provider, forgery):
    headers = FORGERIES[forgery] + [bearer(token_for(keys, provider))] + OTHER_STRIPPED
    seen = assert_allowed(gw.request(f"/{provider}/x", headers), upstream)
    for header in ("x-user", "remote-user", "x-forwarded-user", "x-email"):
        assert header not in seen.names(), f"forged {header} reached the upstream: {seen!r}"


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_identity_without_token_is_denied(gw, upstream, forgery):
    assert_denied(gw.request("/es/x", FORGERIES[forgery]), upstream, 401, "missing")


# ----------------------------------------------------------------------------------------- denials


@pytest.mark.parametrize("provider", list(ALGS))
def test_missing_token(gw, upstream, provider):
    resp = gw.request(f"/{provider}/x")
    body = assert_denied(resp, upstream, 401, "missing")
    challenge = resp.header("www-authenticate") or ""
    assert challenge.startswith("Bearer ") and 'realm="trustgate"' in challenge, resp.describe()
    assert "error=" not in challenge, resp.describe()
    assert (resp.header("content-type") or "").startswith("application/json"), resp.describe()
    assert set(body) >= {"error", "reason"}


def _invalid_cases():
    """(id, provider, reason, token builder(keys)). Reasons are the stable codes of the issue."""
    now = int(time.time())
    cases = []
    for p in ALGS:
        cases += [
            (f"{p}-expired", p, "expired", lambda k, p=p: token_for(k, p, iat=now - 7200, exp=now - 3600)),
            (f"{p}-wrong-audience", p, "wrong_audience", lambda k, p=p: token_for(k, p, aud="someone-else")),
            (
                f"{p}-bad-signature-other-key",
                p,
                "bad_signature",
                lambda k, p=p: mint(k[f"{p}_other"], claims(), kid=None if p == "pem" else h._KEY_KID),
            ),
            (f"{p}-bad-signature-tampered", p, "bad_signature", lambda k, p=p: h.tamper_payload(token_for(k, p), sub="mallory")),
        ]
    cases += [
        ("wrong-issuer", "es", "wrong_issuer", lambda k: token_for(k, "es", iss="https://evil.example/")),
        ("not-yet-valid", "es", "not_yet_valid", lambda k: token_for(k, "es", nbf=now + 3600)),
        ("unknown-kid", "es", "unknown_kid", lambda k: mint(k["es"], claims(), kid="nobody")),
        ("aud-array-without-match", "es", "wrong_audience", lambda k: token_for(k, "es", aud=["a", "b"])),
        ("missing-exp", "es", "missing_exp", lambda k: token_for(k, "es", exp=None)),
        ("alg-not-allowed", "es", "alg_not_allowed", lambda k: mint(k["rs"], claims(), kid="es-1")),
        ("alg-none", "es", "alg_not_allowed", lambda k: h.unsigned_token(claims(), {"alg": "none", "kid": "es-1"})),
        (
            "hs256-with-rsa-public-key-as-secret",
            "rs",
            "alg_not_allowed",  # the kid names an RSA key: an HMAC alg never fits it
            lambda k: h.hs256_raw(k["rs"].public_pem, claims(), {"alg": "HS256", "kid": "rs-1"}),
        ),
        ("malformed-not-a-jwt", "es", "malformed", lambda k: "not-a-jwt"),
        ("malformed-bad-base64", "es", "malformed", lambda k: "eyJ!!!.eyJ.abc"),
        ("malformed-bad-json", "es", "malformed", lambda k: f"{h.b64url(b'{nope')}.{h.b64url(b'{}')}.{h.b64url(b'sig')}"),
    ]
    return cases


INVALID = _invalid_cases()


@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_token(gw, upstream, keys, case):
    _, provider, reason, build = case
    token = build(keys)
    resp = gw.request(f"/{provider}/x", [bearer(token), ("X-Commit-Owner", "human:mallory")])
    assert_invalid_token(resp, upstream, reason, token)


def test_two_credentials_are_refused(gw, upstream, keys):
    t = token_for(keys, "es")
    resp = gw.request("/es/x", [bearer(t), bearer(token_for(keys, "es", sub="bob"))])
    assert_denied(resp, upstream, 401, "multiple_credentials")


def test_oversized_token_is_refused(gw, upstream, keys):
    token = token_for(keys, "es", pad="x" * (17 * 1024))  # validly signed, but over 16 KiB
    assert len(token) > 17 * 1024
    resp = gw.request("/es/x", [bearer(token)])
    assert_denied(resp, upstream, 401, "token_too_large")


def test_control_character_in_claim_is_never_written(gw, upstream, keys):
    for sub in ("alice\r\nx-injected: 1", "alice\nx", "alice\x00"):
        resp = gw.request("/es/x", [bearer(token_for(keys, "es", sub=sub))])
        assert_denied(resp, upstream, 403, "unsafe_claim")


def test_token_from_query_is_removed_from_the_path(gw, upstream, keys):
    token = token_for(keys, "es")
    resp = gw.request(f"/qc/items?a=1&access_token={token}&b=2", [("X-Commit-Owner", "human:mallory")])
    seen = assert_allowed(resp, upstream)
    assert seen.path.startswith("/qc/items?"), repr(seen)
    assert "access_token" not in seen.path and not _contains_token_part(seen.path, token), repr(seen)
    assert "a=1" in seen.path and "b=2" in seen.path, f"other query parameters were lost: {seen!r}"


def test_token_from_cookie_is_removed_from_the_cookie_header(gw, upstream, keys):
    token = token_for(keys, "es")
    resp = gw.request("/qc/items", [("Cookie", f"theme=dark; id_token={token}; lang=en")])
    seen = assert_allowed(resp, upstream)
    cookies = "; ".join(seen.values("cookie"))
    assert not _contains_token_part(cookies, token) and "id_token" not in cookies, repr(seen)
    assert "theme=dark" in cookies and "lang=en" in cookies, f"other cookies were lost: {seen!r}"


def test_query_and_cookie_token_together_are_refused(gw, upstream, keys):
    token = token_for(keys, "es")
    resp = gw.request(f"/qc/items?access_token={token}", [("Cookie", f"id_token={token}")])
    assert_denied(resp, upstream, 401, "multiple_credentials")


def test_sources_replace_the_default_header(gw, upstream, keys):
    """`from` lists the only places a token is taken from: a bearer header is not one of them here."""
    resp = gw.request("/qc/items", [bearer(token_for(keys, "es"))])
    assert_denied(resp, upstream, 401, "missing")


def test_no_rule_is_403(gw, upstream, keys):
    resp = gw.request("/elsewhere", [bearer(token_for(keys, "es")), ("X-Commit-Owner", "human:mallory")])
    assert_denied(resp, upstream, 403, "no_rule")


@pytest.mark.parametrize(
    "path, status, reason",
    [
        # resolve to the protected /es/ rule: no credential there
        ("/healthz/../es/x", 401, "missing"),
        ("/public/../es/x", 401, "missing"),
        ("//es/x", 401, "missing"),
        ("/%65s/x", 401, "missing"),
        ("/es/./x", 401, "missing"),
        # an encoded dot segment or slash: refused before any rule
        ("/public/%2e%2e/es/x", 400, "ambiguous_path"),
        ("/public/..%2fes/x", 400, "ambiguous_path"),
        ("/public%2f..%2fes/x", 400, "ambiguous_path"),
    ],
)
def test_path_tricks_never_reach_upstream_unauthenticated(gw, upstream, path, status, reason):
    """Envoy's normalize_path/merge_slashes are off here: the filter itself must not be fooled."""
    assert_denied(gw.request(path, [("X-Commit-Owner", "human:mallory")]), upstream, status, reason)


def test_cors_preflight_passes_without_credential(gw, upstream):
    preflight = [("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST"), ("X-Commit-Owner", "human:mallory")]
    resp = gw.request("/es/x", preflight, method="OPTIONS")
    assert resp.status == 200, resp.describe()
    seen = only_request(upstream)
    assert seen.method == "OPTIONS" and OWNER not in seen.names(), repr(seen)
    upstream.clear()
    # an OPTIONS that is not a preflight still needs the credential
    resp = gw.request("/es/x", [("Origin", "https://app.example")], method="OPTIONS")
    assert_denied(resp, upstream, 401, "missing")


# ----------------------------------------------------------------------------------------- observability


def test_counters_on_admin_stats(gw, upstream, keys):
    assert gw.request("/es/x", [bearer(token_for(keys, "es"))]).status == 200
    now = int(time.time())
    assert gw.request("/es/x", [bearer(token_for(keys, "es", iat=now - 7200, exp=now - 3600))]).status == 401
    assert gw.request("/nowhere").status == 403
    stats = gw.stats("wasmcustom.")
    trustgate = {k: v for k, v in stats.items() if k.startswith("wasmcustom.trustgate.")}
    assert trustgate, f"no wasmcustom.trustgate.* stats; wasmcustom.* = {sorted(stats)}"
    want = ["wasmcustom.trustgate.allow.es", "wasmcustom.trustgate.deny.expired.es", "wasmcustom.trustgate.deny.no_rule.none"]
    for name in want:
        assert trustgate.get(name, 0) >= 1, f"{name} missing or 0; have {json.dumps(trustgate, indent=1, sort_keys=True)}"


def test_denial_log_line_has_reason_never_token(gw, upstream, keys):
    sub = f"log-probe-{time.monotonic_ns()}"
    now = int(time.time())
    expired = token_for(keys, "es", sub=sub, iat=now - 7200, exp=now - 3600)
    forged = h.tamper_payload(token_for(keys, "hs", sub=sub), sub="mallory")
    mark = gw.log_mark()
    assert gw.request("/es/x", [bearer(expired)]).status == 401
    assert gw.request("/hs/x", [bearer(forged)]).status == 401
    for rule, reason in (("es", "expired"), ("hs", "bad_signature")):
        want = f"trustgate: deny rule={rule} provider={rule} reason={reason} status=401 method=GET"
        line = gw.wait_for_log(lambda l: l.endswith(want), since=mark)
        assert line is not None, f"no log line `{want}` after the request\n" + gw.log_tail(20)
    log = gw.log_text()
    leaked = [name for name, token in (("expired", expired), ("forged", forged)) if _contains_token_part(log, token)]
    assert not leaked, f"the Envoy log contains (part of) the {leaked} token"


def test_rsa_and_ecdsa_use_envoy_native_crypto(gw):
    """Envoy offers verify_signature: the start-up probe must find it, so RS256/ES256 above ran in BoringSSL
    (and passed the same assertions as the pure-Rust path does in the native tests)."""
    lines = [l for l in h.wasm_log_lines(gw) if "config loaded" in l]
    assert lines, "no config loaded line"
    assert all("RSA/ECDSA verified by the host (verify_signature)" in l for l in lines), lines


# ----------------------------------------------------------------------------------------- inline key sets


def test_inline_keycloak_jwks_with_an_encryption_key_is_accepted(start_gateway, upstream):
    """A realm's JWKS pasted as Keycloak publishes it: an RSA-OAEP encryption key beside the RS256 signing
    key. Envoy accepts the config, a token by the signing key passes, the log names the skipped kid once."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    sig = h.generate_key("RS256", "kc-sig")
    enc = RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(), as_dict=True)
    enc.update({"kid": "kc-enc", "use": "enc", "alg": "RSA-OAEP"})
    cfg = {
        "providers": {
            "kc": {
                "jwt": {
                    "issuer": h.ISSUER,
                    "audiences": [h.AUDIENCE],
                    "keys": {"jwks": {"keys": [enc, sig.jwk]}},
                    "headers": {OWNER: h.OWNER_TEMPLATE},
                }
            }
        },
        "rules": [{"match": {}, "require": "kc"}],
    }
    gw = start_gateway(cfg, name="inline-keycloak")
    assert_allowed(gw.request("/x", [bearer(mint(sig, claims()))]), upstream)
    line = gw.wait_for_log(lambda l: "key skipped, it cannot verify a JWS" in l, since=0, timeout=5)
    assert line is not None, "no configure-time line for the skipped key\n" + gw.log_tail()
    assert 'keys[0] (kid \\"kc-enc\\")' in line or 'keys[0] (kid "kc-enc")' in line, line
    assert 'use: \\"enc\\"' in line or 'use: "enc"' in line, line
    assert enc["n"][:16] not in line, "key material in the log"
    upstream.clear()
    # The skipped key's kid is unknown: no fallback to the signing key.
    resp = gw.request("/x", [bearer(mint(sig, claims(), kid="kc-enc"))])
    assert_invalid_token(resp, upstream, "unknown_kid")
