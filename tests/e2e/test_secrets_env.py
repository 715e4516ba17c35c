"""Secrets from the Wasm VM's environment and upstream credential exchange, end to end (issue 9).

The filter config holds `{"env": "NAME"}` where a secret would be; Envoy hands the VM its variables through
`vm_config.environment_variables` (`key_values` written in the Envoy config, or `host_env_keys` copied from
Envoy's own environment). A rule's `upstream_headers` puts one shared upstream credential on the request after
the client proved who it is and after the client's own credential was removed.

Asserted: signed requests verify against the secret from the environment; the upstream sees the shared
`Authorization: Bearer <token>` and never the client's HMAC header; neither the secret nor the token appears in
Envoy's log or stats; a variable that is not set is a config error naming the JSON path and the variable.
"""
from __future__ import annotations

import hashlib
import json

import pytest

import gatekeeper_client as gk
import trustgate_e2e as h

CLIENT = "ci-bot"
HMAC_SECRET = "hmac-secret-from-env-TEST-ONLY-5d1e"
API_KEY = "api-key-TEST-ONLY-0c9b2f"
UPSTREAM_TOKEN = "ghp_TESTONLY_upstream_token_4f2a"
HOST_ENV = "TRUSTGATE_TEST_API_KEY_SHA256"


def filter_config() -> dict:
    return {
        "providers": {
            "gatekeeper": {
                "hmac": {
                    "clients": {CLIENT: {"name": "CI", "secret": {"env": "GK_SECRET"}}},
                    "body": "empty",
                    "headers": {"x-client-id": "${client.id}"},
                    "upstream_headers": {"x-upstream-source": "gatekeeper"},
                }
            },
            "keys": {
                "api_key": {
                    "clients": {"deploy": {"key_sha256": {"env": HOST_ENV}}},
                    "headers": {"x-client-id": "${client.id}"},
                }
            },
        },
        "strip_headers": ["x-commit-owner"],
        "rules": [
            {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
            {
                "name": "github",
                "match": {"path_prefix": "/github/"},
                "require": "gatekeeper",
                "upstream_headers": {
                    "authorization": {"env": "UPSTREAM_TOKEN"},
                    "x-github-api-version": "2022-11-28",
                },
            },
            {"name": "deploy", "match": {"path_prefix": "/deploy/"}, "require": "keys"},
        ],
    }


def bootstrap(port: int, admin: int, *, upstream_port: int, wasm, config: dict, env: dict) -> dict:
    b = h.gateway_bootstrap(
        listener_port=port, admin_port=admin, upstream_port=upstream_port, filter_config=config, wasm=wasm
    )
    return h.with_vm_environment(b, env)


def start(envoy_bin, wasm, upstream, tmp_path_factory, config: dict, env: dict, name: str) -> h.Envoy:
    return h.Envoy(
        envoy_bin,
        tmp_path_factory.mktemp(name),
        lambda port, admin: bootstrap(port, admin, upstream_port=upstream.port, wasm=wasm, config=config, env=env),
        name=name,
    )


ENV = {
    "key_values": {"GK_SECRET": HMAC_SECRET, "UPSTREAM_TOKEN": f"Bearer {UPSTREAM_TOKEN}"},
    "host_env_keys": [HOST_ENV],
}


@pytest.fixture(scope="module")
def gw(envoy_bin, wasm, upstream, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    # host_env_keys: Envoy copies this variable from its own environment (the harness passes ours on).
    mp.setenv(HOST_ENV, hashlib.sha256(API_KEY.encode()).hexdigest())
    envoy = start(envoy_bin, wasm, upstream, tmp_path_factory, filter_config(), ENV, "secrets-env")
    try:
        h.start_or_fail(envoy)
    finally:
        mp.undo()
    yield envoy
    envoy.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.clear()


def signed(method: str, path: str, secret: str = HMAC_SECRET) -> tuple[str, str]:
    return ("Authorization", gk.sign(CLIENT, secret, method, path.split("?", 1)[0], b""))


def test_hmac_secret_from_the_environment_and_upstream_token(gw, upstream):
    client_auth = signed("GET", "/github/repos")
    resp = gw.request("/github/repos", [client_auth, ("X-Commit-Owner", "human:root")])
    assert resp.status == 200, resp.describe()
    seen = h.only_request(upstream)
    assert seen.values("authorization") == [f"Bearer {UPSTREAM_TOKEN}"], "the client's HMAC header must be gone"
    assert seen.values("x-github-api-version") == ["2022-11-28"]
    assert seen.values("x-upstream-source") == ["gatekeeper"]  # provider-level upstream_headers
    assert seen.values("x-client-id") == [CLIENT]
    assert seen.values("x-commit-owner") == []


def test_a_wrong_secret_is_refused_and_gets_no_token(gw, upstream):
    resp = gw.request("/github/repos", [signed("GET", "/github/repos", secret="not-the-secret")])
    h.assert_denied(resp, upstream, 401, "bad_signature")


def test_no_credential_gets_no_token(gw, upstream):
    resp = gw.request("/github/repos", [("Authorization", f"Bearer {UPSTREAM_TOKEN}")])
    h.assert_denied(resp, upstream, 401, "missing")  # a bearer token where an HMAC header is due: no credential


def test_api_key_digest_from_envoys_own_environment(gw, upstream):
    resp = gw.request("/deploy/now", [("Authorization", f"ApiKey {API_KEY}")])
    assert resp.status == 200, resp.describe()
    assert h.only_request(upstream).values("x-client-id") == ["deploy"]
    upstream.clear()
    h.assert_denied(gw.request("/deploy/now", [("Authorization", "ApiKey wrong")]), upstream, 401, "invalid_key")


def test_secrets_appear_in_no_log_line_and_no_stat(gw, upstream):
    mark = gw.log_mark()
    for i in range(3):
        upstream.clear()
        resp = gw.request(f"/github/repos/{i}", [signed("GET", f"/github/repos/{i}")])
        assert resp.status == 200 and h.only_request(upstream).values("authorization") == [f"Bearer {UPSTREAM_TOKEN}"]
        upstream.clear()
        resp = gw.request(f"/github/repos/{i}", [signed("GET", f"/github/repos/{i}", secret="bad")])
        h.assert_denied(resp, upstream, 401, "bad_signature")
    # the three denials are in the log before it is searched (the secrets would sit in or near those lines)
    want = "trustgate: deny rule=github provider=gatekeeper reason=bad_signature status=401 method=GET"
    denials = lambda: [l for l in h.wasm_log_lines(gw, since=mark) if l.endswith(want)]  # noqa: E731
    assert len(h.wait_until(lambda: len(denials()) == 3 and denials(), 10) or []) == 3, gw.log_tail(20)
    assert "trustgate: config loaded" in gw.log_text(since=0)  # the process's whole log, config load included
    text = gw.log_text()
    for secret in (HMAC_SECRET, UPSTREAM_TOKEN, API_KEY):
        assert secret not in text
        assert not any(secret in name for name in gw.stats(""))
    assert UPSTREAM_TOKEN not in (gw.admin_get("/stats?format=json") or "")


def test_a_missing_variable_is_refused_with_its_path_and_name(envoy_bin, wasm, upstream, tmp_path_factory, monkeypatch):
    monkeypatch.setenv(HOST_ENV, "0" * 64)
    env = {"key_values": {"GK_SECRET": HMAC_SECRET}, "host_env_keys": [HOST_ENV]}  # UPSTREAM_TOKEN missing
    envoy = start(envoy_bin, wasm, upstream, tmp_path_factory, filter_config(), env, "secrets-missing")
    try:
        state, rc = envoy.start_expecting_refusal()
        assert (state, rc != 0) == ("exited", True), f"Envoy {state} (status {rc}) without UPSTREAM_TOKEN\n{envoy.log_tail()}"
        line = envoy.wait_for_log(lambda l: "trustgate: invalid config: " in l, since=0, timeout=5)  # a fresh process
        assert line is not None, envoy.log_tail()
        assert "invalid config: rules[1].upstream_headers.authorization" in line and '"UPSTREAM_TOKEN"' in line, line
        assert upstream.seen == []
    finally:
        envoy.stop()


def test_check_config_reads_the_same_variables(tmp_path):
    import os
    import subprocess

    cfg = tmp_path / "f.json"
    cfg.write_text(json.dumps(filter_config()))
    cli = h.REPO / "target" / "debug" / "trustgate"
    env = {k: v for k, v in os.environ.items() if k not in ("GK_SECRET", "UPSTREAM_TOKEN", HOST_ENV)}
    out = subprocess.run([str(cli), "check-config", str(cfg)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0
    assert "providers.gatekeeper.hmac.clients.ci-bot.secret" in out.stderr + out.stdout
    assert '"GK_SECRET"' in out.stderr + out.stdout
    env.update({"GK_SECRET": "x", "UPSTREAM_TOKEN": "Bearer y", HOST_ENV: "0" * 64})
    out = subprocess.run([str(cli), "check-config", str(cfg)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
