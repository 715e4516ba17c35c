"""Sender-constrained tokens end to end (issue 15): DPoP (RFC 9449) and certificate-bound tokens (RFC 8705) in a
real Envoy 1.40 (V8, `--concurrency 2`).

The DPoP proofs and proof keys come from an independent client library, panva/dpop 2.1.2 from npm (pinned in
tests/data/dpop-client/package-lock.json, installed into target/dpop-client/ by `make dpop-client-deps`), for ES256,
RS256, PS256 and Ed25519 keys; the tokens are minted by PyJWT with `cnf.jkt` = the library's own RFC 7638
thumbprint. Every test asserts what the upstream saw (the identity and `${dpop.jkt}` on success, neither the token
nor the proof; nothing at all on a refusal).

`htu` is the request's scheme and `:authority`, or `dpop.origin` where TLS ends in front of the proxy. The scheme is
the connection's (`http` on the plain listener, `https` on the TLS one): the filter sets `:scheme` from Envoy's
`connection.tls_version`, because an HTTP/2 client sends `:scheme` itself and Envoy passes it on.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

import trustgate_e2e as h
from test_mtls import Pki, _name, downstream_tls, tls_request
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "target" / "dpop-client"
CLI = Path(os.environ.get("TRUSTGATE_CLI", ROOT / "target" / "debug" / "trustgate"))
HOST = "api.example.com"
PROOF_ALGS = ["ES256", "RS256", "PS256", "Ed25519"]
CHALLENGE_ALGS = 'algs="RS256 PS256 ES256 EdDSA"'


class DpopClient:
    """panva/dpop in a node process: `key(alg)` makes a key pair (→ id, jkt), `proof(id, htm, htu, token)` a proof."""

    def __init__(self) -> None:
        script = CLIENT_DIR / "client.mjs"
        if not (CLIENT_DIR / "node_modules" / "dpop").is_dir():
            pytest.fail(f"{CLIENT_DIR} has no node_modules/dpop: run `make dpop-client-deps` (needs node and npm)", pytrace=False)
        self.proc = subprocess.Popen(
            ["node", str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=CLIENT_DIR
        )

    def _call(self, **cmd) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        out = json.loads(self.proc.stdout.readline())
        assert "error" not in out, out["error"]
        return out

    def key(self, alg: str) -> tuple[int, str]:
        out = self._call(op="key", alg=alg)
        return out["id"], out["jkt"]

    def proof(self, key_id: int, htm: str, htu: str, token: str) -> str:
        return self._call(op="proof", id=key_id, htm=htm, htu=htu, token=token)["proof"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def client():
    c = DpopClient()
    yield c
    c.close()


@pytest.fixture(scope="module")
def idp() -> h.SigningKey:
    return h.generate_key("ES256", "idp-1")


def filter_config(idp: h.SigningKey) -> dict:
    def jwt(**extra) -> dict:
        return {
            "jwt": {
                "issuer": h.ISSUER,
                "audiences": [h.AUDIENCE],
                "algorithms": ["ES256"],
                "keys": {"jwks": {"keys": [idp.jwk]}},
                "headers": {"x-commit-owner": "human:${claims.sub}", "x-dpop-jkt": "${dpop.jkt}"},
                **extra,
            }
        }

    return {
        "providers": {
            "corp": jwt(dpop={"algorithms": PROOF_ALGS}),
            "edge": jwt(dpop={"algorithms": PROOF_ALGS, "origin": f"https://{HOST}"}),
            "certs": jwt(require_binding="mtls"),
        },
        "strip_headers": ["x-commit-owner", "x-dpop-jkt"],
        "rules": [
            {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
            {"name": "edge", "match": {"path_prefix": "/edge/"}, "require": "edge"},
            {"name": "certs", "match": {"path_prefix": "/certs/"}, "require": "certs"},
            {"name": "api", "match": {"path_prefix": "/api/"}, "require": "corp"},
        ],
    }


@pytest.fixture(scope="module")
def gw(start_gateway, idp) -> h.Envoy:
    return start_gateway(filter_config(idp))


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.clear()


def token(idp: h.SigningKey, cnf: dict | None) -> str:
    claims = h.claims(sub="alice")
    if cnf is not None:
        claims["cnf"] = cnf
    return h.mint(idp, claims, header_extra={"typ": "at+jwt"})


def dpop_headers(tok: str, proof: str) -> list[tuple[str, str]]:
    return [("Authorization", f"DPoP {tok}"), ("DPoP", proof), ("X-Commit-Owner", "human:root")]


def send(gw: h.Envoy, path: str, headers, method: str = "GET") -> h.Response:
    return h.http_request(gw.port, path, headers, method=method, host=HOST)


def assert_allowed(resp: h.Response, upstream, jkt: str | None) -> h.Seen:
    assert resp.status == 200, resp.describe()
    seen = h.only_request(upstream)
    assert seen.values("x-commit-owner") == ["human:alice"]
    assert seen.values("x-dpop-jkt") == ([jkt] if jkt else [])
    assert "authorization" not in seen.names() and "dpop" not in seen.names(), "a credential reached the upstream"
    return seen


def assert_dpop_refused(resp: h.Response, upstream, reason: str, error: str) -> None:
    body = h.assert_denied(resp, upstream, 401, reason)
    assert body["error"] == error, resp.describe()
    challenges = resp.header_all("www-authenticate")
    assert f'DPoP realm="trustgate", error="{error}", {CHALLENGE_ALGS}' in challenges, resp.describe()


def b64url_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def proof_claims(proof: str) -> dict:
    payload = proof.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# --------------------------------------------------------------------------------------------------- DPoP


@pytest.mark.parametrize("alg", PROOF_ALGS)
def test_proofs_of_an_independent_client_are_accepted(gw, upstream, client, idp, alg):
    key, jkt = client.key(alg)
    tok = token(idp, {"jkt": jkt})
    htu = f"http://{HOST}/api/orders"
    for _ in range(2):  # a new proof per request, the token the same (verified once, then cached)
        proof = client.proof(key, "GET", htu, tok)
        assert proof_claims(proof)["ath"] == b64url_sha256(tok.encode())
        resp = send(gw, "/api/orders?page=2", dpop_headers(tok, proof))
        assert_allowed(resp, upstream, jkt)
        upstream.clear()


def test_a_bound_token_under_bearer_is_refused(gw, upstream, client, idp):
    key, jkt = client.key("ES256")
    tok = token(idp, {"jkt": jkt})
    proof = client.proof(key, "GET", f"http://{HOST}/api/orders", tok)
    resp = send(gw, "/api/orders", [h.bearer(tok), ("DPoP", proof)])
    assert_dpop_refused(resp, upstream, "dpop_bound_token", "invalid_token")


def test_an_unbound_token_under_dpop_is_refused(gw, upstream, client, idp):
    key, _ = client.key("ES256")
    tok = token(idp, None)
    proof = client.proof(key, "GET", f"http://{HOST}/api/orders", tok)
    assert_dpop_refused(send(gw, "/api/orders", dpop_headers(tok, proof)), upstream, "dpop_unbound_token", "invalid_token")
    # The same token as a bearer token passes: the provider does not require a binding.
    assert_allowed(send(gw, "/api/orders", [h.bearer(tok)]), upstream, None)


def test_a_token_bound_to_another_key_is_refused(gw, upstream, client, idp):
    key, _ = client.key("ES256")
    _, other_jkt = client.key("ES256")
    tok = token(idp, {"jkt": other_jkt})
    proof = client.proof(key, "GET", f"http://{HOST}/api/orders", tok)
    assert_dpop_refused(send(gw, "/api/orders", dpop_headers(tok, proof)), upstream, "dpop_key_mismatch", "invalid_token")


def test_proof_faults(gw, upstream, client, idp):
    key, jkt = client.key("Ed25519")
    tok = token(idp, {"jkt": jkt})
    url = f"http://{HOST}/api/orders"
    cases = [
        ("POST", url, tok, "dpop_proof_mismatch"),  # htm
        ("GET", f"http://{HOST}/api/other", tok, "dpop_proof_mismatch"),  # htu
        ("GET", f"https://{HOST}/api/orders", tok, "dpop_proof_mismatch"),  # the scheme: this listener is http
        ("GET", url, token(idp, {"jkt": jkt}) + "x", "dpop_proof_mismatch"),  # ath of another token
    ]
    for htm, htu, for_token, reason in cases:
        proof = client.proof(key, htm, htu, for_token)
        assert_dpop_refused(send(gw, "/api/orders", dpop_headers(tok, proof)), upstream, reason, "invalid_dpop_proof")
    # No proof, two proofs, two DPoP headers, something else in the header.
    p1, p2 = client.proof(key, "GET", url, tok), client.proof(key, "GET", url, tok)
    resp = send(gw, "/api/orders", [("Authorization", f"DPoP {tok}")])
    assert_dpop_refused(resp, upstream, "dpop_proof_missing", "invalid_dpop_proof")
    resp = send(gw, "/api/orders", dpop_headers(tok, p1) + [("DPoP", p2)])
    assert_dpop_refused(resp, upstream, "dpop_proof_multiple", "invalid_dpop_proof")
    resp = send(gw, "/api/orders", dpop_headers(tok, f"{p1},{p2}"))
    assert_dpop_refused(resp, upstream, "dpop_proof_multiple", "invalid_dpop_proof")
    resp = send(gw, "/api/orders", dpop_headers(tok, tok))
    assert_dpop_refused(resp, upstream, "dpop_proof_invalid", "invalid_dpop_proof")


def test_a_missing_token_is_challenged_for_bearer_and_dpop(gw, upstream):
    resp = send(gw, "/api/orders", [])
    h.assert_denied(resp, upstream, 401, "missing")
    assert resp.header_all("www-authenticate") == ['Bearer realm="trustgate"', f'DPoP realm="trustgate", {CHALLENGE_ALGS}']


@pytest.fixture
def workers(gw, upstream):
    try:
        conns = h.connections_per_worker(gw)
    except h.HarnessError as e:
        pytest.fail(str(e), pytrace=False)
    upstream.clear()
    yield conns
    for c in conns.values():
        c.close()


@pytest.mark.parametrize("first,second", [(0, 1), (1, 0)])
def test_a_replayed_proof_is_refused_on_another_worker(gw, upstream, client, idp, workers, first, second):
    key, jkt = client.key("ES256")
    tok = token(idp, {"jkt": jkt})
    proof = client.proof(key, "GET", f"http://{HOST}/api/orders", tok)
    before = h.worker_connections(gw)
    assert_allowed(workers[first].request("/api/orders", dpop_headers(tok, proof), host=HOST), upstream, jkt)
    upstream.clear()
    resp = workers[second].request("/api/orders", dpop_headers(tok, proof), host=HOST)
    assert_dpop_refused(resp, upstream, "dpop_proof_replayed", "invalid_dpop_proof")
    resp = workers[first].request("/api/orders", dpop_headers(tok, proof), host=HOST)
    assert_dpop_refused(resp, upstream, "dpop_proof_replayed", "invalid_dpop_proof")
    assert h.worker_connections(gw) == before, "a request went over a new connection: the worker is not known"


def test_dpop_origin_stands_for_a_tls_terminator_in_front(gw, upstream, client, idp):
    key, jkt = client.key("ES256")
    tok = token(idp, {"jkt": jkt})
    # The client spoke https to the terminator; the proxy sees plain http from it.
    proof = client.proof(key, "GET", f"https://{HOST}/edge/orders", tok)
    assert_allowed(send(gw, "/edge/orders?x=1", dpop_headers(tok, proof)), upstream, jkt)
    upstream.clear()
    proof = client.proof(key, "GET", f"http://{HOST}/edge/orders", tok)
    resp = send(gw, "/edge/orders", dpop_headers(tok, proof))
    assert_dpop_refused(resp, upstream, "dpop_proof_mismatch", "invalid_dpop_proof")


# -------------------------------------------------------------------------- over TLS, with client certificates


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("dpop-pki"))


@pytest.fixture(scope="module")
def certs(pki) -> dict:
    return {
        "alice": pki.issue("alice", _name((NameOID.COMMON_NAME, "alice"))),
        "bob": pki.issue("bob", _name((NameOID.COMMON_NAME, "bob"))),
    }


@pytest.fixture(scope="module")
def tls_gw(envoy_bin, wasm, upstream, pki, idp, tmp_path_factory):
    def bootstrap(port: int, admin: int) -> dict:
        b = h.gateway_bootstrap(
            listener_port=port, admin_port=admin, upstream_port=upstream.port, filter_config=filter_config(idp), wasm=wasm
        )
        b["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = downstream_tls(pki)
        return b

    envoy = h.Envoy(envoy_bin, tmp_path_factory.mktemp("dpop-tls"), bootstrap, name="dpop-tls")
    h.start_or_fail(envoy)
    yield envoy
    envoy.stop()


def der_digest(cert_path: Path) -> bytes:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def test_certificate_bound_token_needs_its_certificate(tls_gw, pki, certs, upstream, idp):
    digest = der_digest(certs["alice"][0])
    tok = token(idp, {"x5t#S256": base64.urlsafe_b64encode(digest).rstrip(b"=").decode()})
    resp = tls_request(tls_gw, pki, "/certs/me", certs["alice"], headers=[h.bearer(tok)])
    assert resp.status == 200, resp.describe()
    assert h.only_request(upstream).values("x-commit-owner") == ["human:alice"]
    upstream.clear()
    for cert in (certs["bob"], None):
        resp = tls_request(tls_gw, pki, "/certs/me", cert, headers=[h.bearer(tok)])
        body = h.assert_denied(resp, upstream, 401, "certificate_binding_mismatch")
        assert body["error"] == "invalid_token"
        assert resp.header_all("www-authenticate") == ['Bearer realm="trustgate", error="invalid_token"']


def test_a_hex_thumbprint_is_not_base64url(tls_gw, pki, certs, upstream, idp):
    tok = token(idp, {"x5t#S256": der_digest(certs["alice"][0]).hex()})
    resp = tls_request(tls_gw, pki, "/certs/me", certs["alice"], headers=[h.bearer(tok)])
    h.assert_denied(resp, upstream, 401, "certificate_binding_mismatch")


def test_require_binding_mtls_refuses_an_unbound_token(tls_gw, pki, certs, upstream, idp):
    resp = tls_request(tls_gw, pki, "/certs/me", certs["alice"], headers=[h.bearer(token(idp, None))])
    h.assert_denied(resp, upstream, 401, "binding_required")


def test_dpop_over_tls_takes_https_from_the_connection(tls_gw, pki, upstream, client, idp):
    key, jkt = client.key("PS256")
    tok = token(idp, {"jkt": jkt})
    proof = client.proof(key, "GET", "https://gateway.test/api/orders", tok)
    resp = tls_request(tls_gw, pki, "/api/orders", None, headers=[("Authorization", f"DPoP {tok}"), ("DPoP", proof)])
    assert_allowed(resp, upstream, jkt)


# ------------------------------------------------------------------------------------------ the trustgate CLI


def cli(*args: str) -> subprocess.CompletedProcess:
    if not CLI.is_file():
        pytest.fail(f"{CLI} is missing: run `cargo build --bin trustgate` (make test does)", pytrace=False)
    out = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out


def idp_pem(idp: h.SigningKey, tmp_path: Path) -> str:
    path = tmp_path / "idp.key.pem"
    path.write_bytes(
        idp.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(path)


def test_cli_keygen_sign_jwt_and_sign_dpop(gw, upstream, idp, tmp_path):
    out = cli("keygen", "--alg", "p256", "--out", str(tmp_path / "client"))
    jkt = out.stdout.split("cnf.jkt of DPoP tokens bound to this key): ")[1].split()[0]
    claims = ["--iss", h.ISSUER, "--aud", h.AUDIENCE, "--sub", "alice", "--kid", idp.kid]
    tok = cli("sign", "jwt", "--key", idp_pem(idp, tmp_path), *claims, "--cnf-jkt", jkt).stdout.strip()
    url = f"http://{HOST}/api/orders?ignored=1"
    proof = cli("sign", "dpop", "--key", str(tmp_path / "client.key.pem"), "--url", url, "--token", tok)
    assert jkt in proof.stderr
    assert_allowed(send(gw, "/api/orders", dpop_headers(tok, proof.stdout.strip())), upstream, jkt)


def test_cli_sign_jwt_cnf_x5t(tls_gw, pki, certs, upstream, idp, tmp_path):
    claims = ["--iss", h.ISSUER, "--aud", h.AUDIENCE, "--sub", "alice", "--kid", idp.kid]
    tok = cli("sign", "jwt", "--key", idp_pem(idp, tmp_path), *claims, "--cnf-x5t", str(certs["alice"][0])).stdout.strip()
    resp = tls_request(tls_gw, pki, "/certs/me", certs["alice"], headers=[h.bearer(tok)])
    assert resp.status == 200, resp.describe()
    upstream.clear()
    resp = tls_request(tls_gw, pki, "/certs/me", certs["bob"], headers=[h.bearer(tok)])
    h.assert_denied(resp, upstream, 401, "certificate_binding_mismatch")


def test_an_h2_client_cannot_choose_the_scheme_of_htu(gw, upstream, client, idp, monkeypatch):
    """Over h2c a client sends `:scheme` itself: `https` on the plain listener must not make a proof for
    https://… pass (Envoy sets `:scheme` from the connection, whatever the client says)."""
    import h2.connection

    send_headers = h2.connection.H2Connection.send_headers

    def with_https(self, stream_id, headers, *a, **kw):
        headers = [(n, b"https") if n == b":scheme" else (n, v) for n, v in headers]
        return send_headers(self, stream_id, headers, *a, **kw)

    monkeypatch.setattr(h2.connection.H2Connection, "send_headers", with_https)
    key, jkt = client.key("ES256")
    tok = token(idp, {"jkt": jkt})
    proof = client.proof(key, "GET", f"https://{HOST}/api/orders", tok)
    resp = h.h2_request(gw.port, "/api/orders", [(n.lower(), v) for n, v in dpop_headers(tok, proof)], host=HOST)
    assert_dpop_refused(resp, upstream, "dpop_proof_mismatch", "invalid_dpop_proof")
    proof = client.proof(key, "GET", f"http://{HOST}/api/orders", tok)
    resp = h.h2_request(gw.port, "/api/orders", [(n.lower(), v) for n, v in dpop_headers(tok, proof)], host=HOST)
    assert_allowed(resp, upstream, jkt)
