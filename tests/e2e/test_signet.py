"""Signet proofs of possession end to end: proofs minted by the trustgate CLI (`trustgate sign signet`), sent
through a real Envoy 1.40 (`--concurrency 2`), asserting what the upstream saw."""
from __future__ import annotations

import subprocess
import time

import pytest

import trustgate_e2e as h

SEED = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
PUBLIC = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"  # of SEED (shared/vectors/signet.json)
OTHER_SEED = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100"
CLI = h.REPO / "target" / "debug" / "trustgate"

CONFIG = {
    "providers": {
        "agents": {"signet": {
            "master_keys": {"bots": PUBLIC},
            "purposes": ["api-access"],
            "headers": {"x-agent-id": "agent:${signet.master}", "x-signet-purpose": "${signet.purpose}"},
        }},
    },
    "strip_headers": ["x-agent-id", "x-commit-owner"],
    "rules": [
        {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
        {"name": "agents", "match": {}, "require": "agents"},
    ],
}


def mint(method: str, url: str, seed: str = SEED, at: int | None = None, ttl: int = 300, purpose: str = "api-access") -> str:
    if not CLI.is_file():
        pytest.fail(f"{CLI} is missing: build it with `cargo build --bin trustgate` (make test does)", pytrace=False)
    args = [str(CLI), "sign", "signet", "--master-seed", seed, "--method", method, "--url", url,
            "--ttl", str(ttl), "--purpose", purpose, "--header-only"]
    if at is not None:
        args += ["--at", str(at)]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def gw(start_gateway) -> h.Envoy:
    return start_gateway(CONFIG)


@pytest.fixture(autouse=True)
def _fresh(upstream):
    upstream.clear()


def allowed(resp, upstream, path: str) -> None:
    assert resp.status == 200, resp.describe()
    seen = h.only_request(upstream)
    assert seen.path == path, seen
    assert seen.values("x-agent-id") == ["agent:bots"], seen
    assert seen.values("x-signet-purpose") == ["api-access"], seen
    assert "signet-proof" not in seen.names(), "the proof was forwarded upstream"


def test_cli_proof_gives_the_agent_identity(gw, upstream):
    proof = mint("GET", "/repos/owner/repo?page=2")
    r = gw.request("/repos/owner/repo?page=2", [("Signet-Proof", proof), ("X-Agent-Id", "agent:forged")])
    allowed(r, upstream, "/repos/owner/repo?page=2")


def test_post_and_percent_encoded_space(gw, upstream):
    proof = mint("POST", "/files/a%20b")
    r = gw.request("/files/a%20b", [("Signet-Proof", proof)], method="POST", body=b"{}")
    allowed(r, upstream, "/files/a%20b")


def test_replayed_proof_is_refused(gw, upstream):
    proof = mint("GET", "/once")
    allowed(gw.request("/once", [("Signet-Proof", proof)]), upstream, "/once")
    upstream.clear()
    # A new connection (possibly the other worker): replay protection is process-wide.
    h.assert_denied(gw.request("/once", [("Signet-Proof", proof)]), upstream, 401, "replayed")


@pytest.mark.parametrize(
    "signed,sent,reason",
    [
        ("/a?x=1", "/b?x=1", "bad_signature"),  # tampered path
        ("/a?x=1", "/a?x=2", "bad_signature"),  # tampered query
        ("/a?x=1", "/a", "bad_signature"),  # query removed
    ],
)
def test_tampered_target_is_refused(gw, upstream, signed, sent, reason):
    r = gw.request(sent, [("Signet-Proof", mint("GET", signed))])
    body = h.assert_denied(r, upstream, 401, reason)
    assert body["error"] == "invalid_token"
    assert 'Signet realm="trustgate", error="invalid_token"' in (r.header("www-authenticate") or "")


def test_other_method_is_refused(gw, upstream):
    r = gw.request("/a", [("Signet-Proof", mint("GET", "/a"))], method="DELETE")
    h.assert_denied(r, upstream, 401, "bad_signature")


def test_expired_and_stale(gw, upstream):
    now = int(time.time())
    # Signed 400 s ago with a 300 s ephemeral key: expired.
    h.assert_denied(gw.request("/t", [("Signet-Proof", mint("GET", "/t", at=now - 400))]), upstream, 401, "expired")
    # Signed 60 s ago, key still valid: outside the 30 s ts window.
    h.assert_denied(gw.request("/t", [("Signet-Proof", mint("GET", "/t", at=now - 60))]), upstream, 401, "stale_timestamp")


def test_wrong_master_key_is_refused(gw, upstream):
    r = gw.request("/w", [("Signet-Proof", mint("GET", "/w", seed=OTHER_SEED))])
    h.assert_denied(r, upstream, 401, "bad_signature")


def test_purpose_not_allowed_is_403(gw, upstream):
    r = gw.request("/p", [("Signet-Proof", mint("GET", "/p", purpose="admin"))])
    h.assert_denied(r, upstream, 403, "purpose_not_allowed")


def test_encoded_slash_path_is_refused_before_any_rule(gw, upstream):
    r = gw.request("/a%2Fb", [("Signet-Proof", mint("GET", "/a%2Fb"))])
    h.assert_denied(r, upstream, 400, "ambiguous_path")


@pytest.mark.parametrize("value", ["", "v1", "v1;m=compact", "v2;m=compact;ts=1", "x" * 9000])
def test_malformed_and_missing(gw, upstream, value):
    headers = [("Signet-Proof", value)] if value else []
    r = gw.request("/m", headers)
    if value:
        h.assert_denied(r, upstream, 401, "malformed")
    else:
        h.assert_denied(r, upstream, 401, "missing")
        assert r.header("www-authenticate") == 'Signet realm="trustgate"'


def test_forged_agent_header_stripped_on_public_route(gw, upstream):
    r = gw.request("/healthz", [("X-Agent-Id", "agent:forged")])
    assert r.status == 200, r.describe()
    assert h.only_request(upstream).values("x-agent-id") == []
