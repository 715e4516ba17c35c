"""Claim conditions, explicit typing and RFC 9864 `Ed25519` end to end (issue 15 items 1, 2, 6): a real Envoy
1.40 (V8) with trustgate.wasm, tokens minted by PyJWT (and by hand where PyJWT has no name for the algorithm),
and an upstream that records what it received. Every denial asserts its status, its reason (body and
`x-trustgate-reason`), its exact `WWW-Authenticate`, and that nothing reached the upstream."""
from __future__ import annotations

import json

import pytest

import trustgate_e2e as h
from trustgate_e2e import bearer, claims, mint

OWNER = "x-commit-owner"
PARTNER_ISSUER = "https://partner.e2e.trustgate.test/"


def claims_config(keys) -> dict:
    def jwt(issuer: str, key: str, alg: str, **extra) -> dict:
        return {
            "jwt": {
                "issuer": issuer,
                "audiences": [h.AUDIENCE],
                "algorithms": [alg],
                "keys": {"jwks": {"keys": [keys[key].jwk]}},
                "headers": {OWNER: h.OWNER_TEMPLATE},
                **extra,
            }
        }

    ed_jwk = dict(keys["ed"].jwk, alg="Ed25519")  # RFC 9864 name in the JWK too
    return {
        "providers": {
            "corp": jwt(h.ISSUER, "es", "ES256"),
            "partner": jwt(PARTNER_ISSUER, "es", "ES256"),
            "typed": jwt(h.ISSUER, "es", "ES256", typ=["at+jwt"]),
            "ed": {"jwt": {"issuer": h.ISSUER, "audiences": [h.AUDIENCE], "algorithms": ["Ed25519"],
                           "keys": {"jwks": {"keys": [ed_jwk]}}, "headers": {OWNER: h.OWNER_TEMPLATE}}},
        },
        "strip_headers": h.STRIP_HEADERS,
        "rules": [
            {"name": "orders", "match": {"path_prefix": "/orders/"},
             "require": {"provider": "corp", "claims": {"scope": ["orders:write", "orders:read"]}}},
            {"name": "admin", "match": {"path_prefix": "/admin/"},
             "require": {"provider": "corp", "claims": {"groups": {"any": ["admin", "ops"]},
                                                        "[\"https://x.io/tier\"]": ["gold"]}}},
            {"name": "either", "match": {"path_prefix": "/either/"},
             "require": {"any": ["partner", {"provider": "corp", "claims": {"realm_access.roles": ["editor"]}}]}},
            {"name": "plain", "match": {"path_prefix": "/plain/"}, "require": "corp"},
            {"name": "typed", "match": {"path_prefix": "/typed/"}, "require": "typed"},
            {"name": "ed", "match": {"path_prefix": "/ed/"}, "require": "ed"},
        ],
    }


@pytest.fixture(scope="module")
def gw(start_gateway, keys) -> h.Envoy:
    return start_gateway(claims_config(keys))


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.clear()


def token(keys, typ: str | None = "JWT", **overrides) -> str:
    return mint(keys["es"], claims(**overrides), header_extra={"typ": typ})


def assert_allowed(resp: h.Response, upstream: h.EchoUpstream) -> h.Seen:
    assert resp.status == 200, resp.describe()
    seen = h.only_request(upstream)
    assert seen.values(OWNER) == ["human:alice"], seen
    assert "authorization" not in seen.names(), "the credential was forwarded upstream"
    return seen


def assert_forbidden(resp, upstream, reason: str, challenge: str | None) -> None:
    body = h.assert_denied(resp, upstream, 403, reason)
    assert body["error"] == ("insufficient_scope" if reason == "insufficient_scope" else "forbidden"), body
    assert resp.header_all("www-authenticate") == ([challenge] if challenge else []), resp.describe()


# ------------------------------------------------------------------------------------------ claim conditions


@pytest.mark.parametrize("scope", ["orders:write orders:read", "openid orders:read profile orders:write"])
def test_scope_condition_passes_with_every_required_scope(gw, upstream, keys, scope):
    assert_allowed(gw.request("/orders/1", [bearer(token(keys, scope=scope))]), upstream)


@pytest.mark.parametrize("scope", ["orders:write", "orders:read orders:writer", None, ["orders:write orders:read"]])
def test_scope_condition_fails_with_the_rfc6750_challenge(gw, upstream, keys, scope):
    resp = gw.request("/orders/1", [bearer(token(keys, scope=scope))])
    assert_forbidden(
        resp, upstream, "insufficient_scope",
        'Bearer realm="trustgate", error="insufficient_scope", scope="orders:write orders:read"',
    )


def test_scp_array_is_not_the_scope_claim(gw, upstream, keys):
    resp = gw.request("/orders/1", [bearer(token(keys, scp=["orders:write", "orders:read"]))])
    assert_forbidden(
        resp, upstream, "insufficient_scope",
        'Bearer realm="trustgate", error="insufficient_scope", scope="orders:write orders:read"',
    )


@pytest.mark.parametrize("groups", [["ops"], ["dev", "admin"], "admin"])
def test_groups_any_passes(gw, upstream, keys, groups):
    resp = gw.request("/admin/x", [bearer(token(keys, groups=groups, **{"https://x.io/tier": "gold"}))])
    assert_allowed(resp, upstream)


@pytest.mark.parametrize(
    "extra",
    [
        {"groups": ["dev"], "https://x.io/tier": "gold"},
        {"groups": "admin ops", "https://x.io/tier": "gold"},
        {"groups": {"admin": True}, "https://x.io/tier": "gold"},
        {"https://x.io/tier": "gold"},
        {"groups": ["admin"], "https://x.io/tier": "silver"},
        {"groups": ["admin"]},
    ],
    ids=["other-group", "one-string", "object", "absent", "wrong-tier", "no-tier"],
)
def test_claim_not_allowed_reaches_nothing_upstream(gw, upstream, keys, extra):
    resp = gw.request("/admin/x", [bearer(token(keys, **extra)), ("x-commit-owner", "human:mallory")])
    assert_forbidden(resp, upstream, "claim_not_allowed", None)


def test_inside_any_unmet_conditions_outrank_another_providers_refusal(gw, upstream, keys):
    # partner refuses the corp token (wrong issuer, 401); corp verifies it but the role is missing: the 403 wins.
    resp = gw.request("/either/x", [bearer(token(keys, realm_access={"roles": ["viewer"]}))])
    assert_forbidden(resp, upstream, "claim_not_allowed", None)
    upstream.clear()
    assert_allowed(gw.request("/either/x", [bearer(token(keys, realm_access={"roles": ["editor"]}))]), upstream)
    upstream.clear()
    assert_allowed(gw.request("/either/x", [bearer(token(keys, iss=PARTNER_ISSUER))]), upstream)


def test_credential_refusals_come_before_conditions(gw, upstream, keys):
    resp = gw.request("/orders/1", [bearer(token(keys, scope="orders:write orders:read", exp=1))])
    body = h.assert_denied(resp, upstream, 401, "expired")
    assert body["error"] == "invalid_token"
    assert resp.header_all("www-authenticate") == ['Bearer realm="trustgate", error="invalid_token"']


# ------------------------------------------------------------------------------------------ explicit typing


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT"])
def test_listed_typ_passes(gw, upstream, keys, typ):
    assert_allowed(gw.request("/typed/x", [bearer(token(keys, typ=typ))]), upstream)


@pytest.mark.parametrize("path,typ", [("/typed/x", None), ("/typed/x", "JWT"), ("/typed/x", "dpop+jwt"),
                                      ("/plain/x", "dpop+jwt"), ("/plain/x", "application/DPoP+JWT")])
def test_typ_not_allowed(gw, upstream, keys, path, typ):
    resp = gw.request(path, [bearer(token(keys, typ=typ))])
    body = h.assert_denied(resp, upstream, 401, "typ_not_allowed")
    assert body["error"] == "invalid_token"
    assert resp.header_all("www-authenticate") == ['Bearer realm="trustgate", error="invalid_token"']


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt"])
def test_without_a_typ_list_any_typ_but_dpop_passes(gw, upstream, keys, typ):
    assert_allowed(gw.request("/plain/x", [bearer(token(keys, typ=typ))]), upstream)


# ------------------------------------------------------------------------------------------ RFC 9864 Ed25519


def ed_token(keys, alg: str) -> str:
    """An Ed25519 signature under the header `alg` given (PyJWT knows only `EdDSA`)."""
    key = keys["ed"]
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    signing_input = f"{h.b64url(json.dumps(header).encode())}.{h.b64url(json.dumps(claims()).encode())}"
    return f"{signing_input}.{h.b64url(key.private.sign(signing_input.encode()))}"


@pytest.mark.parametrize("alg", ["Ed25519", "EdDSA"])
def test_ed25519_and_eddsa_names_verify(gw, upstream, keys, alg):
    assert_allowed(gw.request("/ed/x", [bearer(ed_token(keys, alg))]), upstream)


def test_other_spellings_are_not_ed25519(gw, upstream, keys):
    resp = gw.request("/ed/x", [bearer(ed_token(keys, "ed25519"))])
    h.assert_denied(resp, upstream, 401, "alg_not_allowed")


def test_the_config_validates_against_the_schema(keys):
    from jsonschema import Draft202012Validator

    schema = json.loads((h.REPO / "filter-config" / "schema.json").read_text())
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(claims_config(keys))]
    assert not errors, errors
