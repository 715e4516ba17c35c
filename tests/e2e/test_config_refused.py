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


CASES = {
    # name: (filter configuration, text Envoy's log must contain)
    "p521-curve": (lambda: _config(_p521_jwk()), "providers.corp.jwt.keys.jwks.keys[0].crv"),
    "unknown-field": (lambda: _config(rulez=[]), "rulez"),
    "unknown-provider": (lambda: _config(rules=[{"match": {}, "require": "nosuch"}]), "nosuch"),
    "not-json": (lambda: "{this is not json", None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_config_is_refused(envoy_bin, wasm, upstream, tmp_path_factory, case):
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
        if state == "exited":
            assert rc != 0, f"Envoy exited with status 0 on an invalid config\n{envoy.log_tail()}"
        elif state == "live":
            # Envoy came up anyway: the listener must not let anything through.
            try:
                resp = envoy.request("/x")
                assert resp.status >= 500, f"invalid config, yet {resp.describe()}"
            except OSError:
                pass
            assert upstream.seen == [], "invalid config, yet a request reached the upstream"
        else:
            pytest.fail(f"Envoy neither exited nor became ready\n{envoy.log_tail()}")
        if must_log:
            line = envoy.wait_for_log(lambda l: must_log in l, timeout=5)
            assert line is not None, f"Envoy's log does not name {must_log!r}\n{envoy.log_tail()}"
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
