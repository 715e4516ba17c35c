"""Signed identity assertions for the upstream, end to end (issue 14; DESIGN.md "Identity assertions for the
upstream"; README "For application developers").

A real Envoy 1.40 (V8) with trustgate.wasm signs an assertion (a JWT with its own key, the private key given to the
VM as PKCS#8 PEM through `vm_config.environment_variables` and `{"env": …}`) on every allowed request of a `require`
rule, and serves the public keys at `jwks_path`. Keys are generated here with `cryptography`; caller tokens are
minted by PyJWT.

Asserted: the upstream receives exactly one assertion, which PyJWT (PyJWKClient on the JWKS the proxy serves) and
Node jose (createRemoteJWKSet + jwtVerify) both verify; its header, registered claims, lifetime and mapped claims;
a rule's `assertion_audience`; forged copies (any case, `_` spelling) removed on public, protected and denied
requests, and none on public routes or CORS preflights; different callers never share an assertion while one
caller's is reused (same jti); no subject is 403 `no_subject` with nothing upstream; the JWKS response; a key
rotation; EdDSA and ES256; and the two README application examples (Express + jose, FastAPI + PyJWT) running as
the upstream behind a live trustgate, refusing a forged assertion sent to them directly.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

import trustgate_e2e as h
from trustgate_e2e import bearer

GW_ISSUER = "https://gateway.e2e.trustgate.test"
AUDIENCE = "orders"
HEADER = "x-trustgate-assertion"
JWKS_PATH = "/.well-known/trustgate/jwks.json"
KEY_ENV = "TRUSTGATE_ASSERTION_KEY"
TTL_S = 60
KID_A, KID_B = "gw-2026-11", "gw-2026-12"
API_KEY = "api-key-TEST-ONLY-assertion-7d1c"


EXAMPLES = h.REPO / "examples" / "app"
EXPRESS_DIR = EXAMPLES / "express"
FASTAPI_DIR = EXAMPLES / "fastapi"
JOSE_VERIFY = Path(__file__).with_name("jose_verify.mjs")
JTI_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")


# ------------------------------------------------------------------------------------------------ config, Envoy


def pkcs8_pem(key: h.SigningKey) -> str:
    """The private key as the `signing_key.pem` contract wants it: PKCS#8 PEM."""
    return key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def filter_config(idp: h.SigningKey, signing: h.SigningKey, *, previous: list[dict] = (), **assertion) -> dict:
    """Rules: `/healthz` public, `/api/` (corp, CORS preflights allowed), `/billing/` (corp, own audience), `/ci/`
    (an API key: no `sub` to map). `assertion` overrides members of the assertion block."""
    block = {
        "issuer": GW_ISSUER,
        "audience": AUDIENCE,
        "ttl_s": TTL_S,
        "signing_key": {"alg": signing.alg, "kid": signing.kid, "pem": {"env": KEY_ENV}},
        "previous_keys": list(previous),
        "claims": {
            "sub": "${claims.sub}",
            "email": "${claims.email:-}",
            "name": "${claims.name}",
            "principal_type": "${claims.principal_type:-human}",
            "tenant": "acme",
            "roles": {"claim": "realm_access.roles"},
            "org": {"claim": "org"},
            "via": "${provider}/${rule}",
        },
        **assertion,
    }
    return {
        "providers": {
            "corp": {
                "jwt": {
                    "issuer": h.ISSUER,
                    "audiences": [h.AUDIENCE],
                    "keys": {"jwks": {"keys": [idp.jwk]}},
                    "headers": {"x-commit-owner": h.OWNER_TEMPLATE},
                }
            },
            "keys": {
                "api_key": {
                    "clients": {"ci": {"key_sha256": hashlib.sha256(API_KEY.encode()).hexdigest()}},
                    "headers": {"x-client-id": "${client.id}"},
                }
            },
        },
        "strip_headers": h.STRIP_HEADERS,
        "assertion": block,
        "rules": [
            {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
            {"name": "api", "match": {"path_prefix": "/api/"}, "require": "corp", "cors_preflight": "allow"},
            {"name": "billing", "match": {"path_prefix": "/billing/"}, "require": "corp", "assertion_audience": "billing"},
            {"name": "ci", "match": {"path_prefix": "/ci/"}, "require": "keys"},
        ],
    }


def start_gateway(envoy_bin, wasm, workdir, config: dict, signing: h.SigningKey, *, upstream_port: int, name: str) -> h.Envoy:
    """Envoy with trustgate (`config`) in front of 127.0.0.1:`upstream_port`; the signing key's PEM is the VM's
    environment variable KEY_ENV (`vm_config.environment_variables.key_values`)."""
    env = {"key_values": {KEY_ENV: pkcs8_pem(signing)}}
    envoy = h.Envoy(
        envoy_bin,
        workdir,
        lambda port, admin: h.with_vm_environment(
            h.gateway_bootstrap(
                listener_port=port, admin_port=admin, upstream_port=upstream_port, filter_config=config, wasm=wasm
            ),
            env,
        ),
        name=name,
    )
    return h.start_or_fail(envoy)


@pytest.fixture(scope="module")
def idp() -> h.SigningKey:
    """The identity provider that signs the callers' tokens."""
    return h.generate_key("ES256", "idp-1")


@pytest.fixture(scope="module")
def key_a() -> h.SigningKey:
    return h.generate_key("EdDSA", KID_A)


@pytest.fixture(scope="module")
def gw(envoy_bin, wasm, upstream, tmp_path_factory, idp, key_a) -> h.Envoy:
    """EdDSA, the defaults for header, jwks_path; ttl 60 s."""
    envoy = start_gateway(envoy_bin, wasm, tmp_path_factory.mktemp("assertion"), filter_config(idp, key_a), key_a,
                          upstream_port=upstream.port, name="assertion")
    yield envoy
    envoy.stop()


ES_HEADER = "x-gateway-identity"
ES_JWKS_PATH = "/_gateway/keys.json"
ES_TTL_S = 8


@pytest.fixture(scope="module")
def es_key() -> h.SigningKey:
    return h.generate_key("ES256", "gw-es-1")


@pytest.fixture(scope="module")
def gw_es(envoy_bin, wasm, upstream, tmp_path_factory, idp, es_key) -> h.Envoy:
    """ES256, its own header (written in upper case: the filter lower-cases it) and jwks_path, ttl 8 s (reuse 2 s)."""
    cfg = filter_config(idp, es_key, header="X-Gateway-Identity", jwks_path=ES_JWKS_PATH, ttl_s=ES_TTL_S)
    envoy = start_gateway(envoy_bin, wasm, tmp_path_factory.mktemp("assertion-es"), cfg, es_key,
                          upstream_port=upstream.port, name="assertion-es")
    yield envoy
    envoy.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.clear()


# ------------------------------------------------------------------------------------------------ helpers


def caller(idp: h.SigningKey, **overrides) -> tuple[str, str]:
    """`Authorization: Bearer` with a fresh token of the identity provider (h.claims: sub alice, email)."""
    base = {"realm_access": {"roles": ["admin", "dev"]}, "org": {"id": 7, "name": "Acme", "eu": True},
            "jti": base64.urlsafe_b64encode(os.urandom(9)).decode()}
    return bearer(h.mint(idp, h.claims(**{**base, **overrides})))


def decode_part(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def unverified(token: str) -> tuple[dict, dict]:
    """(header, payload) of a JWS, unverified: for comparing what two assertions carry."""
    head, payload, _ = token.split(".")
    return decode_part(head), decode_part(payload)


def the_assertion(upstream: h.EchoUpstream, header: str = HEADER) -> str:
    """The one assertion the one upstream request carried, under its one name (no other spelling)."""
    seen = h.only_request(upstream)
    spelled = [n for n in seen.names() if n.replace("_", "-") == header]
    assert spelled == [header], f"upstream got the assertion under {spelled}, want exactly one {header!r}: {seen!r}"
    (value,) = seen.values(header)
    return value


def no_assertion(seen: h.Seen, header: str = HEADER) -> bool:
    return not [n for n in seen.names() if n.replace("_", "-") == header]


def jwks_url(envoy: h.Envoy, path: str = JWKS_PATH) -> str:
    return f"http://127.0.0.1:{envoy.port}{path}"


def pyjwt_verify(url: str, token: str, audience: str = AUDIENCE) -> dict:
    """What an application using PyJWT does: the key from the proxy's JWKS by kid, then signature, issuer,
    audience, expiry. Returns the verified payload (raises on any failure)."""
    key = jwt.PyJWKClient(url, cache_keys=False).get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["EdDSA", "ES256"], issuer=GW_ISSUER, audience=audience,
                      options={"require": ["iss", "aud", "sub", "iat", "exp", "jti"]})


@pytest.fixture(scope="session")
def express_modules() -> Path:
    """examples/app/express with its pinned packages installed (npm ci), as `make app-deps` does; jose for the
    Node interop check comes from there too."""
    lock = EXPRESS_DIR / "package-lock.json"
    stamp = EXPRESS_DIR / "node_modules" / ".package-lock.json"
    if not stamp.is_file() or stamp.stat().st_mtime < lock.stat().st_mtime:
        npm = shutil.which("npm")
        if not npm:
            pytest.fail("npm is not installed: `make deps` installs node and npm (apt-get install -y nodejs npm)",
                        pytrace=False)
        out = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                             cwd=EXPRESS_DIR, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            pytest.fail(f"npm ci in {EXPRESS_DIR} failed:\n{out.stdout}\n{out.stderr}", pytrace=False)
    pinned = json.loads((EXPRESS_DIR / "package.json").read_text())["dependencies"]
    for name, version in pinned.items():
        got = json.loads((EXPRESS_DIR / "node_modules" / name / "package.json").read_text())["version"]
        assert got == version, f"installed {name} {got}, pinned {version}: run make app-deps"
    return EXPRESS_DIR


def node_binary() -> str:
    node = shutil.which("node")
    if not node:
        pytest.fail("node is not installed: `make deps` installs it (apt-get install -y nodejs npm)", pytrace=False)
    return node


def jose_verify(express_modules: Path, url: str, tokens: list[str], audience: str = AUDIENCE) -> list[dict]:
    """What an application using Node jose does (tests/e2e/jose_verify.mjs): one result per token."""
    doc = {"jose_from": str(express_modules / "package.json"), "jwks_url": url, "issuer": GW_ISSUER,
           "audience": audience, "tokens": tokens}
    out = subprocess.run([node_binary(), str(JOSE_VERIFY)], input=json.dumps(doc), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, h.redact(out.stderr)
    results = json.loads(out.stdout)
    assert len(results) == len(tokens)
    return results


def assert_registered(payload: dict, header: dict, *, kid: str, alg: str, aud: str = AUDIENCE, ttl: int = TTL_S) -> None:
    assert header == {"alg": alg, "kid": kid, "typ": "JWT"}
    assert payload["iss"] == GW_ISSUER and payload["aud"] == aud
    assert isinstance(payload["iat"], int) and abs(payload["iat"] - time.time()) < 10, payload
    assert payload["exp"] - payload["iat"] == ttl, payload
    assert JTI_RE.match(payload["jti"]) and len(base64.urlsafe_b64decode(payload["jti"] + "==")) == 16, payload


# ------------------------------------------------------------------------------------------------ the assertion


def test_upstream_gets_exactly_one_assertion_that_pyjwt_and_jose_verify(gw, upstream, idp, express_modules):
    resp = gw.request("/api/orders?page=2", [caller(idp)])
    assert resp.status == 200, resp.describe()
    token = the_assertion(upstream)
    seen = h.only_request(upstream)
    assert seen.values("x-commit-owner") == ["human:alice"], "the plain identity headers are still written"
    assert "authorization" not in seen.names(), "the caller's credential was forwarded"

    payload = pyjwt_verify(jwks_url(gw), token)
    assert_registered(payload, jwt.get_unverified_header(token), kid=KID_A, alg="EdDSA")
    (node,) = jose_verify(express_modules, jwks_url(gw), [token])
    assert node["ok"], node
    assert node["payload"] == payload and node["header"] == {"alg": "EdDSA", "kid": KID_A, "typ": "JWT"}


def test_claims_templates_literals_copied_values_and_left_out(gw, upstream, idp):
    assert gw.request("/api/a", [caller(idp)]).status == 200
    payload = pyjwt_verify(jwks_url(gw), the_assertion(upstream))
    mapped = {k: v for k, v in payload.items() if k not in ("iss", "aud", "iat", "exp", "jti")}
    assert mapped == {
        "sub": "alice",
        "email": "alice@example.com",
        "principal_type": "human",  # the template's default
        "tenant": "acme",  # a literal
        "roles": ["admin", "dev"],  # {"claim": …}: the JSON array as is, not joined
        "org": {"id": 7, "name": "Acme", "eu": True},  # an object with its number and boolean
        "via": "corp/api",  # ${provider}/${rule}
    }  # "name": "${claims.name}" has no value: left out

    upstream.clear()
    other = caller(idp, sub="build-bot", email=None, name="Build Bot", principal_type="agent", realm_access=None, org=None)
    assert gw.request("/api/a", [other]).status == 200
    payload = pyjwt_verify(jwks_url(gw), the_assertion(upstream))
    mapped = {k: v for k, v in payload.items() if k not in ("iss", "aud", "iat", "exp", "jti")}
    # email: "${claims.email:-}" renders "" -> left out; roles and org: claims the token lacks -> left out
    assert mapped == {"sub": "build-bot", "name": "Build Bot", "principal_type": "agent", "tenant": "acme",
                      "via": "corp/api"}


def test_rule_audience(gw, upstream, idp, express_modules):
    assert gw.request("/billing/invoices", [caller(idp)]).status == 200
    token = the_assertion(upstream)
    payload = pyjwt_verify(jwks_url(gw), token, audience="billing")
    assert payload["aud"] == "billing" and payload["via"] == "corp/billing"
    with pytest.raises(jwt.InvalidAudienceError):
        pyjwt_verify(jwks_url(gw), token, audience=AUDIENCE)  # an orders app refuses a billing assertion
    billing, orders = jose_verify(express_modules, jwks_url(gw), [token], "billing") + \
        jose_verify(express_modules, jwks_url(gw), [token], AUDIENCE)
    assert billing["ok"] and billing["payload"]["aud"] == "billing", billing
    assert orders == {"ok": False, "code": "ERR_JWT_CLAIM_VALIDATION_FAILED"}


# ------------------------------------------------------------------------------------------------ forged copies


def forged(attacker: h.SigningKey, **claims) -> str:
    """An assertion an attacker signs with their own key under the gateway's kid and issuer."""
    now = int(time.time())
    c = {"iss": GW_ISSUER, "aud": AUDIENCE, "sub": "root", "iat": now, "exp": now + 60, "jti": "A" * 22, **claims}
    return jwt.encode(c, attacker.private, algorithm="EdDSA", headers={"kid": KID_A, "typ": "JWT"})


@pytest.fixture(scope="module")
def attacker() -> h.SigningKey:
    return h.generate_key("EdDSA", KID_A)


def spellings(header: str) -> list[str]:
    """Every spelling a client may choose for `header`: Envoy forwards `_` names by default, and CGI-style
    frameworks read `x_trustgate_assertion` as the same header."""
    title = "-".join(part.capitalize() for part in header.split("-"))
    return [title, header.upper(), header, header.replace("-", "_"), title.replace("-", "_")]


def forged_headers(attacker: h.SigningKey, header: str = HEADER) -> list[tuple[str, str]]:
    return [(name, forged(attacker)) for name in spellings(header)]


def test_forged_copies_are_replaced_on_a_protected_route(gw, upstream, idp, attacker):
    fakes = forged_headers(attacker)
    resp = gw.request("/api/x", [*fakes[:2], caller(idp), *fakes[2:]])
    assert resp.status == 200, resp.describe()
    token = the_assertion(upstream)  # one, under the configured name only
    is_forged = token in {v for _, v in fakes}
    assert not is_forged, "a forged assertion reached the upstream"
    assert pyjwt_verify(jwks_url(gw), token)["sub"] == "alice"


def test_forged_copies_are_removed_on_a_public_route_which_gets_no_assertion(gw, upstream, attacker):
    resp = gw.request("/healthz", forged_headers(attacker))
    assert resp.status == 200, resp.describe()
    seen = h.only_request(upstream)
    assert no_assertion(seen), f"a public route got an assertion header: {seen!r}"


def test_a_cors_preflight_gets_no_assertion(gw, upstream, attacker):
    headers = [("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST"), *forged_headers(attacker)]
    resp = gw.request("/api/x", headers, method="OPTIONS")
    assert resp.status == 200, resp.describe()
    seen = h.only_request(upstream)
    assert seen.method == "OPTIONS" and no_assertion(seen), f"a preflight got an assertion header: {seen!r}"


@pytest.mark.parametrize("credential", ["none", "bad-signature"])
def test_forged_copies_on_a_denied_request_reach_nothing(gw, upstream, idp, attacker, credential):
    headers = forged_headers(attacker)
    if credential == "bad-signature":
        (name, value) = caller(idp)
        headers.append((name, h.tamper_payload(value, sub="root")))
        h.assert_denied(gw.request("/api/x", headers), upstream, 401, "bad_signature")
    else:
        h.assert_denied(gw.request("/api/x", headers), upstream, 401, "missing")


def test_no_rule_with_a_forged_assertion_reaches_nothing(gw, upstream, attacker):
    h.assert_denied(gw.request("/elsewhere", forged_headers(attacker)), upstream, 403, "no_rule")


# ------------------------------------------------------------------------------------------------ subjects, reuse


@pytest.mark.parametrize("case", ["no-sub", "empty-sub", "api-key"])
def test_no_subject_is_403_and_nothing_upstream(gw, upstream, idp, case):
    if case == "api-key":
        headers = [("Authorization", f"ApiKey {API_KEY}")]  # verified, but "${claims.sub}" has nothing to render
        path = "/ci/deploy"
    else:
        headers = [caller(idp, sub=None if case == "no-sub" else "")]
        path = "/api/x"
    body = h.assert_denied(gw.request(path, headers), upstream, 403, "no_subject")
    assert body["error"] == "forbidden"


def test_callers_never_share_and_one_caller_reuses(gw, upstream, idp):
    """On one connection (one Envoy worker, whose VM holds the reuse cache): alice, bob, alice with a new token of
    the same claims. Each caller has their own assertion; alice's second request reuses her first (same jti and
    iat, byte for byte)."""
    conn = h.KeepAlive(gw.port)
    try:
        got = []
        for who in ("alice", "bob", "alice"):
            upstream.clear()
            resp = conn.request("/api/x", [caller(idp, sub=who)])
            assert resp.status == 200, resp.describe()
            got.append(the_assertion(upstream))
    finally:
        conn.close()
    (_, a1), (_, b), (_, a2) = (unverified(t) for t in got)
    assert (a1["sub"], b["sub"], a2["sub"]) == ("alice", "bob", "alice")
    assert b["jti"] not in (a1["jti"], a2["jti"]), "two callers got the same assertion id"
    assert (a2["jti"], a2["iat"]) == (a1["jti"], a1["iat"]), "the same caller within a quarter lifetime: not reused"
    same = got[0] == got[2]
    assert same, "a reused assertion is the same JWS"


def test_callers_mapped_to_the_same_claims_never_share(envoy_bin, wasm, upstream, tmp_path_factory, idp, key_a):
    """Two API-key clients whose assertion claims are identical (a literal sub): each still gets its own
    assertion, because reuse is keyed on who satisfied the provider, not only on the claims."""
    keys = {"svc-a": "api-key-TEST-ONLY-a-5e2b", "svc-b": "api-key-TEST-ONLY-b-91c0"}
    cfg = filter_config(idp, key_a, claims={"sub": "service-account", "kind": "service"})
    cfg["providers"]["keys"]["api_key"]["clients"] = {
        name: {"key_sha256": hashlib.sha256(key.encode()).hexdigest()} for name, key in keys.items()
    }
    envoy = start_gateway(envoy_bin, wasm, tmp_path_factory.mktemp("assertion-callers"), cfg, key_a,
                          upstream_port=upstream.port, name="assertion-callers")
    conn = h.KeepAlive(envoy.port)
    try:
        got = []
        for who in ("svc-a", "svc-b", "svc-a"):
            upstream.clear()
            resp = conn.request("/ci/deploy", [("Authorization", f"ApiKey {keys[who]}")])
            assert resp.status == 200, resp.describe()
            assert h.only_request(upstream).values("x-client-id") == [who]
            got.append(unverified(the_assertion(upstream))[1])
    finally:
        conn.close()
        envoy.stop()
    assert [p["sub"] for p in got] == ["service-account"] * 3
    a1, b, a2 = (p["jti"] for p in got)
    assert b != a1, "two clients with the same claims shared an assertion"
    assert a2 == a1, "the same client within a quarter lifetime: not reused"


def test_an_assertion_is_reused_for_a_quarter_of_its_lifetime_only(gw_es, upstream, idp):
    """ttl_s 8: reused while now < iat + 2, then a new one (new jti, later iat)."""
    conn = h.KeepAlive(gw_es.port)
    try:
        def one() -> dict:
            upstream.clear()
            resp = conn.request("/api/x", [caller(idp)])
            assert resp.status == 200, resp.describe()
            return unverified(the_assertion(upstream, ES_HEADER))[1]

        first, again = one(), one()
        assert again["jti"] == first["jti"], "reused right away"
        assert h.wait_until(lambda: time.time() >= first["iat"] + ES_TTL_S // 4 + 0.2, timeout=ES_TTL_S // 4 + 2)
        later = one()
    finally:
        conn.close()
    assert later["jti"] != first["jti"] and later["iat"] >= first["iat"] + ES_TTL_S // 4, (first, later)
    assert later["exp"] - later["iat"] == ES_TTL_S


# ------------------------------------------------------------------------------------------------ the JWKS


def public_x(key: h.SigningKey) -> dict:
    return {m: key.jwk[m] for m in ("kty", "crv", "x", "y") if m in key.jwk}


@pytest.mark.parametrize("query", ["", "?cache-bust=1"])
def test_jwks_is_served_by_the_proxy(gw, upstream, key_a, query):
    resp = gw.request(JWKS_PATH + query, [("Authorization", "Bearer not-even-a-token")])
    assert resp.status == 200, resp.describe()
    assert upstream.seen == [], "the JWKS request reached the upstream"
    assert resp.header("content-type") == "application/json"
    assert resp.header("cache-control") == "public, max-age=300"
    doc = resp.json()
    assert doc == {"keys": [{**public_x(key_a), "kid": KID_A, "alg": "EdDSA", "use": "sig"}]}
    assert not any("d" in k for k in doc["keys"]), "a private member in the JWKS"


def test_jwks_head(gw, upstream):
    get = gw.request(JWKS_PATH)
    resp = gw.request(JWKS_PATH, method="HEAD")
    assert resp.status == 200 and resp.body == b"", resp.describe()
    assert upstream.seen == []
    assert resp.header("content-type") == "application/json"
    assert resp.header("cache-control") == "public, max-age=300"
    assert resp.header("content-length") == str(len(get.body)), resp.describe()  # GET's headers, no body


def test_jwks_path_other_methods_go_through_the_rules(gw, upstream):
    h.assert_denied(gw.request(JWKS_PATH, method="POST", body=b"{}"), upstream, 403, "no_rule")


def test_secrets_and_assertions_never_in_envoys_log(gw, upstream, idp, key_a):
    assert gw.request("/api/log-check", [caller(idp)]).status == 200
    token = the_assertion(upstream)
    text = gw.log_text()
    pem_body = "".join(pkcs8_pem(key_a).splitlines()[1:-1])
    leaked = [what for what, s in (("private key", pem_body), ("assertion", token), ("signature", token.split(".")[2]))
              if s in text]
    assert leaked == [], f"Envoy's log holds the {leaked}"


# ------------------------------------------------------------------------------------------------ ES256


def test_es256_assertion_with_its_own_header_and_jwks_path(gw_es, upstream, idp, es_key, attacker, express_modules):
    fakes = forged_headers(attacker, ES_HEADER)
    resp = gw_es.request("/api/x", [*fakes, caller(idp)])
    assert resp.status == 200, resp.describe()
    token = the_assertion(upstream, ES_HEADER)
    url = jwks_url(gw_es, ES_JWKS_PATH)
    payload = pyjwt_verify(url, token)
    assert_registered(payload, jwt.get_unverified_header(token), kid="gw-es-1", alg="ES256", ttl=ES_TTL_S)
    assert len(base64.urlsafe_b64decode(token.split(".")[2] + "==")) == 64, "ES256 signature: raw r||s, 64 bytes"
    (node,) = jose_verify(express_modules, url, [token])
    assert node["ok"] and node["payload"] == payload, node

    upstream.clear()
    doc = gw_es.request(ES_JWKS_PATH).json()
    assert upstream.seen == []
    assert doc == {"keys": [{**public_x(es_key), "kid": "gw-es-1", "alg": "ES256", "use": "sig"}]}
    # the default path is nothing special on this gateway: the rules decide (no rule matches it)
    h.assert_denied(gw_es.request(JWKS_PATH), upstream, 403, "no_rule")


# ------------------------------------------------------------------------------------------------ rotation


def test_rotation_new_key_signs_old_key_still_verifies(envoy_bin, wasm, upstream, tmp_path_factory, gw, idp, key_a,
                                                       express_modules):
    """Config 1 (`gw`) signs with key A. Config 2 signs with key B and publishes A's public JWK in previous_keys:
    its JWKS has B then A, an assertion issued under config 1 verifies against config 2's JWKS (PyJWT and jose),
    and new assertions carry kid B."""
    assert gw.request("/api/x", [caller(idp)]).status == 200
    old = the_assertion(upstream)
    assert jwt.get_unverified_header(old)["kid"] == KID_A

    key_b = h.generate_key("EdDSA", KID_B)
    previous = [{**public_x(key_a), "kid": KID_A}]
    gw2 = start_gateway(envoy_bin, wasm, tmp_path_factory.mktemp("assertion-rotated"),
                        filter_config(idp, key_b, previous=previous), key_b, upstream_port=upstream.port,
                        name="assertion-rotated")
    try:
        upstream.clear()
        doc = gw2.request(JWKS_PATH).json()
        assert [k["kid"] for k in doc["keys"]] == [KID_B, KID_A]
        assert doc["keys"][1] == {**public_x(key_a), "kid": KID_A, "alg": "EdDSA", "use": "sig"}

        assert pyjwt_verify(jwks_url(gw2), old)["sub"] == "alice"
        upstream.clear()
        assert gw2.request("/api/x", [caller(idp, sub="bob")]).status == 200
        new = the_assertion(upstream)
        assert jwt.get_unverified_header(new)["kid"] == KID_B
        assert pyjwt_verify(jwks_url(gw2), new)["sub"] == "bob"
        results = jose_verify(express_modules, jwks_url(gw2), [old, new])
        assert [(r["ok"], r.get("header", {}).get("kid")) for r in results] == [(True, KID_A), (True, KID_B)], results
    finally:
        gw2.stop()


# ------------------------------------------------------------------------------------------------ README examples


class App:
    """One example application process on 127.0.0.1:`port`, its output in `log_path`."""

    def __init__(self, argv: list[str], cwd: Path, env: dict, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_listening(self, timeout: float = 30) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                return True
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        listening = h.wait_until(up, timeout)
        if not listening or self.proc.poll() is not None:
            self.stop()
            pytest.fail(f"example app did not listen on {self.port}:\n{self.log()}", pytrace=False)

    def log(self) -> str:
        return h.redact(self.log_path.read_text(errors="replace"))

    def raw_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def app_argv(which: str, port: int) -> tuple[list[str], Path]:
    if which == "express":
        return [node_binary(), "app.js"], EXPRESS_DIR
    return [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(FASTAPI_DIR), "--host", "127.0.0.1",
            "--port", str(port)], FASTAPI_DIR


@pytest.fixture(scope="module", params=["express", "fastapi"])
def example(request, envoy_bin, wasm, tmp_path_factory, idp, key_a, express_modules):
    """The README example app as trustgate's upstream: trustgate -> app, the app fetching the JWKS from trustgate."""
    which = request.param
    port = h.free_port()
    workdir = tmp_path_factory.mktemp(f"example-{which}")
    envoy = start_gateway(envoy_bin, wasm, workdir, filter_config(idp, key_a), key_a, upstream_port=port,
                          name=f"example-{which}")
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "TRUSTED_PROXY_ASSERTION_HEADER": HEADER,
        "TRUSTED_PROXY_JWKS_URL": jwks_url(envoy),
        "TRUSTED_PROXY_ISSUER": GW_ISSUER,
        "TRUSTED_PROXY_AUDIENCE": AUDIENCE,
    }
    argv, cwd = app_argv(which, port)
    app = App(argv, cwd, env, port, workdir / "app.log")
    try:
        app.wait_listening()
        yield which, envoy, app
    finally:
        app.stop()
        envoy.stop()


def test_example_app_sees_the_verified_identity(example, idp):
    which, envoy, app = example
    resp = envoy.request("/api/orders/42", [caller(idp)])
    assert resp.status == 200, f"{resp.describe()}\n{app.log()}"
    identity = resp.json()["identity"]
    assert identity["subject"] == "alice"
    claims = identity["claims"]
    assert (claims["iss"], claims["aud"], claims["sub"]) == (GW_ISSUER, AUDIENCE, "alice")
    assert claims["roles"] == ["admin", "dev"] and claims["exp"] - claims["iat"] == TTL_S

    # no credential: trustgate answers itself (its reason header), the app is never asked
    resp = envoy.request("/api/orders/42")
    assert (resp.status, resp.header("x-trustgate-reason")) == (401, "missing"), resp.describe()


def test_example_app_refuses_another_audience(example, idp):
    which, envoy, app = example
    resp = envoy.request("/billing/x", [caller(idp)])  # trustgate allows it, with aud "billing"
    assert resp.status == 401, resp.describe()
    assert resp.header("x-trustgate-reason") is None, "refused by trustgate, not by the app"


def test_example_app_refuses_a_forged_assertion_sent_directly(example, idp, key_a, attacker):
    which, envoy, app = example
    now = int(time.time())
    good = {"iss": GW_ISSUER, "aud": AUDIENCE, "sub": "root", "iat": now, "exp": now + 60, "jti": "B" * 22}

    def signed(key: h.SigningKey, **changes) -> str:
        return jwt.encode({**good, **changes}, key.private, algorithm="EdDSA", headers={"kid": KID_A, "typ": "JWT"})

    cases = {
        "none": [],
        "forged signature": [(HEADER, forged(attacker))],
        "expired": [(HEADER, signed(key_a, iat=now - 120, exp=now - 60))],
        "other issuer": [(HEADER, signed(key_a, iss="https://elsewhere.example"))],
        "two copies": [(HEADER, signed(key_a)), (HEADER, signed(key_a))],
    }
    got = {name: h.http_request(app.port, "/api/orders/42", headers).status for name, headers in cases.items()}
    assert got == {name: 401 for name in cases}, app.log()
    # the gateway's key itself, every claim right: accepted (so the refusals above are the checks, not a broken app)
    resp = h.http_request(app.port, "/api/orders/42", [(HEADER, signed(key_a))])
    assert resp.status == 200 and resp.json()["identity"]["subject"] == "root", resp.describe()


def test_example_app_never_logs_the_assertion(example, idp):
    which, envoy, app = example
    assert envoy.request("/api/orders/1", [caller(idp)]).status == 200
    assert h.http_request(app.port, "/x", [(HEADER, "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln")]).status == 401
    # it does log refusals, by reason (waited for: the app writes its log asynchronously)
    assert h.wait_until(lambda: "identity assertion refused" in app.raw_log(), timeout=5), app.log()
    text = app.raw_log()
    leaked = bool(h._JWT_RE.search(text))
    assert not leaked, f"the {which} example logged a token:\n{app.log()}"
