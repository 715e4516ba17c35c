"""An invalid filter config is refused by Envoy (on_configure returns false; with failure_policy FAIL_CLOSED
Envoy 1.40 exits at startup) and Envoy's log names the JSON path of the error."""
from __future__ import annotations

import json

import pytest

import trustgate_e2e as h


def _p521_jwk() -> dict:
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP521R1()).public_key(), as_dict=True)
    jwk.update({"kid": "k1"})
    return jwk


def _config(provider_jwk: dict | None = None, **top) -> dict:
    jwk = provider_jwk or h.generate_key("ES256", "k1").jwk
    cfg = {
        "providers": {
            "corp": {
                "jwt": {
                    "issuer": h.ISSUER,
                    "audiences": [h.AUDIENCE],
                    "keys": {"jwks": {"keys": [jwk]}},
                    "headers": {"x-commit-owner": h.OWNER_TEMPLATE},
                }
            }
        },
        "rules": [{"match": {}, "require": "corp"}],
    }
    cfg.update(top)
    return cfg


def _assertion_key_from_unset_env() -> dict:
    """A valid `assertion` block whose private key is `{"env": …}` of a variable the VM does not have."""
    return {
        "issuer": "https://gateway.example.com",
        "audience": "orders",
        "signing_key": {"alg": "EdDSA", "kid": "gw-1", "pem": {"env": "TRUSTGATE_E2E_UNSET_ASSERTION_KEY"}},
        "claims": {"sub": "${claims.sub}"},
    }


CASES = {
    # name: (filter configuration, text the filter's `invalid config` log line must contain)
    "p521-curve": (lambda: _config(_p521_jwk()), "providers.corp.jwt.keys.jwks.keys[0].crv"),
    "unknown-field": (lambda: _config(rulez=[]), "rulez"),
    "unknown-provider": (lambda: _config(rules=[{"match": {}, "require": "nosuch"}]), "nosuch"),
    "not-json": (lambda: "{this is not json", "line 1 column 2"),
    "assertion-key-env-unset": (
        lambda: _config(assertion=_assertion_key_from_unset_env()),
        'assertion.signing_key.pem: environment variable "TRUSTGATE_E2E_UNSET_ASSERTION_KEY" is not set',
    ),
    # Claim conditions on a kind without claims, a scope value that is two scopes, a DPoP proof's typ as an
    # access token's (issue 15).
    "conditions-on-api-key": (
        lambda: {"providers": {"ci": {"api_key": {"clients": {"ci": {"key_sha256": "00" * 32}}}}},
                 "rules": [{"match": {}, "require": {"provider": "ci", "claims": {"sub": ["ci"]}}}]},
        "rules[0].require.claims",
    ),
    "scope-with-a-space": (
        lambda: _config(rules=[{"match": {}, "require": {"any": [{"provider": "corp", "claims": {"scope": ["a b"]}}]}}]),
        "rules[0].require.any[0].claims.scope[0]",
    ),
    "dpop-typ": (lambda: _with_typ(["at+jwt", "DPoP+JWT"]), "providers.corp.jwt.typ[1]"),
}


def _with_typ(typ: list) -> dict:
    cfg = _config()
    cfg["providers"]["corp"]["jwt"]["typ"] = typ
    return cfg

# What Envoy 1.40 logs when on_configure returns false for a static listener, after the filter's own line.
ENVOY_REFUSAL = "Unable to create Wasm plugin trustgate"


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_config_is_refused(envoy_bin, wasm, upstream, tmp_path_factory, case):
    """Envoy exits non-zero at startup (FAIL_CLOSED, a static listener: it never serves), the filter's log
    line names the JSON path (or the JSON error's position), and Envoy says which plugin it could not create."""
    build, must_log = CASES[case]
    filter_config = build()
    envoy = h.Envoy(
        envoy_bin,
        tmp_path_factory.mktemp(f"refused-{case}"),
        lambda port, admin: h.gateway_bootstrap(
            listener_port=port, admin_port=admin, upstream_port=upstream.port, filter_config=filter_config, wasm=wasm
        ),
        name=f"refused-{case}",
    )
    try:
        state, rc = envoy.start_expecting_refusal()
        assert (state, rc != 0) == ("exited", True), f"Envoy {state} (status {rc}) on an invalid config\n{envoy.log_tail()}"
        assert upstream.seen == [], "invalid config, yet a request reached the upstream"
        # a fresh process for this check: its whole log is this case's
        line = envoy.wait_for_log(lambda l: "trustgate: invalid config: " in l, since=0, timeout=5)
        assert line is not None and must_log in line, f"no `invalid config` line naming {must_log!r}\n{envoy.log_tail()}"
        assert envoy.wait_for_log(lambda l: ENVOY_REFUSAL in l, since=0, timeout=5), envoy.log_tail()
    finally:
        envoy.stop()


def test_valid_control_config_starts(envoy_bin, wasm, upstream, tmp_path_factory):
    """The same harness with a valid config does start: the refusals above are about the config."""
    cfg = _config()
    envoy = h.Envoy(
        envoy_bin,
        tmp_path_factory.mktemp("refused-control"),
        lambda port, admin: h.gateway_bootstrap(
            listener_port=port, admin_port=admin, upstream_port=upstream.port, filter_config=json.dumps(cfg), wasm=wasm
        ),
        name="refused-control",
    )
    try:
        envoy.start()
        assert envoy.request("/x").status == 401
    finally:
        envoy.stop()
