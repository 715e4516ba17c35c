"""The `mtls` provider end to end (issue 9): a real Envoy 1.40 with a TLS listener that asks for a client
certificate (optional: `require_client_certificate: false`) signed by a CA this test makes, trustgate in front of
an echo upstream, and Python's ssl client presenting different certificates.

Every test asserts the status and what the upstream saw: the identity header built from the certificate on
success, nothing at all on a denial; a forged `X-Commit-Owner` never reaches the upstream.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import trustgate_e2e as h

UPSTREAM_TOKEN = "upstream-token-TEST-ONLY-7f3a9c"


# ------------------------------------------------------------------------------------- a CA and certificates


def _name(*attrs: tuple) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


def _cert(subject: x509.Name, issuer: x509.Name, key, signer, *, ca=False, sans=(), server=False):
    now = dt.datetime.now(dt.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if not ca:
        usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return b.sign(signer, hashes.SHA256())


class Pki:
    """A CA, a server certificate for 127.0.0.1, and client certificates written as PEM files."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_name = _name((NameOID.COMMON_NAME, "trustgate test CA"), (NameOID.ORGANIZATION_NAME, "Corp"))
        self.ca = _cert(self.ca_name, self.ca_name, self.ca_key, self.ca_key, ca=True)
        self.ca_path = self._write("ca.pem", self.ca)
        self.server_cert, self.server_key = self.issue(
            "server",
            _name((NameOID.COMMON_NAME, "127.0.0.1")),
            sans=[x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")), x509.DNSName("localhost")],
            server=True,
        )

    def _write(self, name: str, cert: x509.Certificate) -> Path:
        p = self.dir / name
        p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return p

    def issue(self, stem: str, subject: x509.Name, sans=(), server=False, ca=None) -> tuple[Path, Path]:
        """A certificate signed by this CA (or `ca`: (cert, key) of another one). Returns (cert, key) paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_cert, issuer_key = ca or (self.ca, self.ca_key)
        cert = _cert(subject, issuer_cert.subject, key, issuer_key, sans=sans, server=server)
        cert_path = self._write(f"{stem}.pem", cert)
        key_path = self.dir / f"{stem}.key"
        key_path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def certs(pki) -> dict[str, tuple[Path, Path]]:
    uri = x509.UniformResourceIdentifier
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    other_ca_name = _name((NameOID.COMMON_NAME, "someone else's CA"))
    other_ca = _cert(other_ca_name, other_ca_name, other_ca_key, other_ca_key, ca=True)
    return {
        "alice": pki.issue("alice", _name((NameOID.COMMON_NAME, "alice"), (NameOID.ORGANIZATION_NAME, "Corp"))),
        "escaped": pki.issue("escaped", _name((NameOID.COMMON_NAME, "Smith, John+1"), (NameOID.ORGANIZATION_NAME, "Corp"))),
        "unicode": pki.issue("unicode", _name((NameOID.COMMON_NAME, "Jürgen"))),
        # An O that looks like ",CN=admin" once unescaped: the CN stays "bob".
        "injected": pki.issue("injected", _name((NameOID.COMMON_NAME, "bob"), (NameOID.ORGANIZATION_NAME, "x,CN=admin"))),
        "two-cns": pki.issue("two-cns", _name((NameOID.COMMON_NAME, "alice"), (NameOID.COMMON_NAME, "admin"))),
        "no-cn": pki.issue("no-cn", _name((NameOID.ORGANIZATION_NAME, "Corp")), sans=[x509.DNSName("nocn.corp")]),
        "service": pki.issue(
            "service",
            _name((NameOID.COMMON_NAME, "payments")),
            sans=[uri("spiffe://corp/ns/payments/sa/api"), x509.DNSName("api.svc.corp")],
        ),
        "outside": pki.issue("outside", _name((NameOID.COMMON_NAME, "intruder")), sans=[uri("spiffe://other/ns/payments/sa/api")]),
        "foreign": pki.issue("foreign", _name((NameOID.COMMON_NAME, "alice")), ca=(other_ca, other_ca_key)),
    }


# ----------------------------------------------------------------------------------------------- the gateway


def filter_config() -> dict:
    return {
        "providers": {
            "people": {
                "mtls": {
                    "headers": {
                        "x-commit-owner": "human:${cert.cn}",
                        "x-cert-subject": "${cert.subject}",
                        "x-cert-sha256": "${cert.sha256}",
                    }
                }
            },
            "services": {
                "mtls": {
                    "uri_san_prefix": "spiffe://corp/ns/",
                    "dns_san": ["*.svc.corp"],
                    "headers": {"x-commit-owner": "agent:${cert.uri_san}", "x-cert-dns": "${cert.dns_san}"},
                }
            },
            "corp-people": {"mtls": {"subject_cn_pattern": "a*", "headers": {"x-commit-owner": "human:${cert.cn}"}}},
        },
        "strip_headers": ["x-commit-owner", "x-client-id"],
        "rules": [
            {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
            {"name": "svc", "match": {"path_prefix": "/svc/"}, "require": "services"},
            {"name": "people", "match": {"path_prefix": "/people/"}, "require": "people"},
            {"name": "a-people", "match": {"path_prefix": "/a/"}, "require": "corp-people"},
            {"name": "either", "match": {"path_prefix": "/either/"}, "require": {"any": ["services", "people"]}},
            {
                "name": "github",
                "match": {"path_prefix": "/github/"},
                "require": "people",
                "upstream_headers": {"authorization": {"env": "UPSTREAM_TOKEN"}, "x-github-api-version": "2022-11-28"},
            },
        ],
    }


def downstream_tls(pki: Pki) -> dict:
    """The listener's TLS: the server certificate of `pki`, client certificates asked for (not required) and
    verified against its CA."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": False,
            "common_tls_context": {
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(pki.server_cert)},
                        "private_key": {"filename": str(pki.server_key)},
                    }
                ],
                "validation_context": {"trusted_ca": {"filename": str(pki.ca_path)}},
            },
        },
    }


def tls_bootstrap(port: int, admin: int, *, upstream_port: int, wasm: Path, pki: Pki) -> dict:
    b = h.gateway_bootstrap(
        listener_port=port, admin_port=admin, upstream_port=upstream_port, filter_config=filter_config(), wasm=wasm
    )
    listener = b["static_resources"]["listeners"][0]
    chain = listener["filter_chains"][0]
    chain["transport_socket"] = downstream_tls(pki)
    wasm_cfg = chain["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]["config"]
    wasm_cfg["vm_config"]["environment_variables"] = {"key_values": {"UPSTREAM_TOKEN": f"Bearer {UPSTREAM_TOKEN}"}}
    return b


@pytest.fixture(scope="module")
def gw(envoy_bin, wasm, upstream, pki, tmp_path_factory):
    envoy = h.Envoy(
        envoy_bin,
        tmp_path_factory.mktemp("mtls"),
        lambda port, admin: tls_bootstrap(port, admin, upstream_port=upstream.port, wasm=wasm, pki=pki),
        name="mtls",
    )
    h.start_or_fail(envoy)
    yield envoy
    envoy.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.clear()


def tls_request(gw: h.Envoy, pki: Pki, path: str, cert: tuple[Path, Path] | None = None, headers=()) -> h.Response:
    ctx = ssl.create_default_context(cafile=str(pki.ca_path))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    conn = http.client.HTTPSConnection("127.0.0.1", gw.port, context=ctx, timeout=h.HTTP_TIMEOUT_S)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "gateway.test")
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return h.Response(resp.status, list(resp.getheaders()), resp.read())
    finally:
        conn.close()


def fingerprint(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


FORGED = [("X-Commit-Owner", "human:root"), ("x-commit-owner", "agent:spiffe://corp/ns/admin")]


# ----------------------------------------------------------------------------------------------------- tests


def test_client_certificate_cn_becomes_the_identity(gw, pki, certs, upstream):
    resp = tls_request(gw, pki, "/people/me", certs["alice"], headers=FORGED)
    assert resp.status == 200, resp.describe()
    seen = h.only_request(upstream)
    assert seen.values("x-commit-owner") == ["human:alice"]
    assert seen.values("x-cert-subject") == ["O=Corp,CN=alice"]  # RFC 4514: most specific RDN first
    assert seen.values("x-cert-sha256") == [fingerprint(certs["alice"][0])]


def test_spiffe_uri_san_under_the_prefix_is_an_agent(gw, pki, certs, upstream):
    resp = tls_request(gw, pki, "/svc/charge", certs["service"], headers=FORGED)
    assert resp.status == 200, resp.describe()
    seen = h.only_request(upstream)
    assert seen.values("x-commit-owner") == ["agent:spiffe://corp/ns/payments/sa/api"]
    assert seen.values("x-cert-dns") == ["api.svc.corp"]


def test_uri_san_outside_the_prefix_is_forbidden(gw, pki, certs, upstream):
    resp = tls_request(gw, pki, "/svc/charge", certs["outside"], headers=FORGED)
    h.assert_denied(resp, upstream, 403, "certificate_not_allowed")
    assert resp.header("www-authenticate") is None


def test_a_person_certificate_is_not_a_service(gw, pki, certs, upstream):
    h.assert_denied(tls_request(gw, pki, "/svc/charge", certs["alice"]), upstream, 403, "certificate_not_allowed")


def test_no_client_certificate_is_401_without_a_challenge(gw, pki, upstream):
    resp = tls_request(gw, pki, "/people/me", None, headers=FORGED)
    h.assert_denied(resp, upstream, 401, "missing")
    assert resp.header("www-authenticate") is None, "HTTP cannot ask for a client certificate"


def test_public_route_strips_forged_identity_without_a_certificate(gw, pki, upstream):
    resp = tls_request(gw, pki, "/healthz", None, headers=FORGED)
    assert resp.status == 200, resp.describe()
    assert h.only_request(upstream).values("x-commit-owner") == []


def test_any_of_services_or_people(gw, pki, certs, upstream):
    assert tls_request(gw, pki, "/either/x", certs["service"]).status == 200
    assert h.only_request(upstream).values("x-commit-owner") == ["agent:spiffe://corp/ns/payments/sa/api"]
    upstream.clear()
    assert tls_request(gw, pki, "/either/x", certs["alice"]).status == 200
    assert h.only_request(upstream).values("x-commit-owner") == ["human:alice"]


def test_subject_cn_pattern(gw, pki, certs, upstream):
    assert tls_request(gw, pki, "/a/x", certs["alice"]).status == 200
    assert h.only_request(upstream).values("x-commit-owner") == ["human:alice"]
    upstream.clear()
    h.assert_denied(tls_request(gw, pki, "/a/x", certs["escaped"]), upstream, 403, "certificate_not_allowed")


def test_escaped_and_unicode_common_names_are_unescaped(gw, pki, certs, upstream):
    assert tls_request(gw, pki, "/people/me", certs["escaped"]).status == 200
    assert h.only_request(upstream).values("x-commit-owner") == ["human:Smith, John+1"]
    upstream.clear()
    assert tls_request(gw, pki, "/people/me", certs["unicode"]).status == 200
    got = h.only_request(upstream).values("x-commit-owner")
    # The upstream's http.server decodes header bytes as Latin-1: re-encode to read the UTF-8 Envoy sent.
    assert [v.encode("latin-1").decode("utf-8") for v in got] == ["human:Jürgen"]


def test_escaped_comma_in_another_attribute_cannot_inject_a_cn(gw, pki, certs, upstream):
    assert tls_request(gw, pki, "/people/me", certs["injected"]).status == 200
    assert h.only_request(upstream).values("x-commit-owner") == ["human:bob"]


def test_two_common_names_are_ambiguous(gw, pki, certs, upstream):
    h.assert_denied(tls_request(gw, pki, "/people/me", certs["two-cns"]), upstream, 403, "certificate_not_allowed")


def test_no_common_name_where_one_is_needed(gw, pki, certs, upstream):
    h.assert_denied(tls_request(gw, pki, "/people/me", certs["no-cn"]), upstream, 403, "certificate_not_allowed")


def listener_ssl_stats(gw: h.Envoy) -> dict[str, int]:
    """The gateway listener's `ssl.*` counters, by the name after `ssl.`."""
    return {k.rsplit(".ssl.", 1)[1]: v for k, v in gw.stats("listener.127.0.0.1_").items() if ".ssl." in k}


def test_certificate_from_another_ca_never_reaches_the_filter(gw, pki, certs, upstream):
    """Envoy refuses the certificate in the handshake, for that one reason: the listener counts one certificate
    verification failure (`ssl.fail_verify_error`) and no other TLS outcome (no completed handshake). The client
    reads the TLS alert `unknown_ca` (TLS 1.3: on its first read, after its side of the handshake), or, when
    Envoy's close overtakes the alert on a loaded machine, an EOF in violation of the protocol."""
    before = listener_ssl_stats(gw)
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as refused:
        tls_request(gw, pki, "/people/me", certs["foreign"])
    err = refused.value
    assert isinstance(err, (ssl.SSLEOFError, ConnectionResetError)) or err.reason == "TLSV1_ALERT_UNKNOWN_CA", repr(err)

    def changed() -> dict[str, int]:
        return {k: v - before.get(k, 0) for k, v in listener_ssl_stats(gw).items() if v != before.get(k, 0)}

    assert h.wait_until(lambda: changed() == {"fail_verify_error": 1}, 5), changed()
    assert upstream.seen == []


def test_upstream_token_replaces_the_client_credential(gw, pki, certs, upstream):
    resp = tls_request(
        gw, pki, "/github/repos", certs["alice"], headers=[("Authorization", "Bearer client-token"), *FORGED]
    )
    assert resp.status == 200, resp.describe()
    seen = h.only_request(upstream)
    assert seen.values("authorization") == [f"Bearer {UPSTREAM_TOKEN}"]
    assert seen.values("x-github-api-version") == ["2022-11-28"]
    assert seen.values("x-commit-owner") == ["human:alice"]
    assert UPSTREAM_TOKEN not in gw.log_text()
    assert not any(UPSTREAM_TOKEN in k for k in gw.stats(""))


def test_upstream_headers_are_not_written_on_denial(gw, pki, upstream):
    h.assert_denied(tls_request(gw, pki, "/github/repos", None), upstream, 401, "missing")


# -------------------------------------------------------------------------------------------- the example


def test_envoy_mtls_example_validates(envoy_bin, wasm, pki, tmp_path):
    """envoy/mtls.yaml embeds filter-config/mtls.json and is a valid Envoy config once its certificate paths
    point at real files (Envoy's validate mode loads them, loads the wasm and runs trustgate's configure, which
    reads GITHUB_TOKEN through host_env_keys)."""
    import json
    import os
    import re
    import subprocess

    example = h.REPO / "envoy" / "mtls.yaml"
    text = example.read_text()
    block = re.search(r"value: \|\n((?: {20}.*\n|\n)+)", text)
    assert block, "envoy/mtls.yaml has no embedded filter config"
    embedded = json.loads(block.group(1))
    assert embedded == json.loads((h.REPO / "filter-config" / "mtls.json").read_text())
    for placeholder, real in (
        ("/etc/envoy/tls/server.pem", pki.server_cert),
        ("/etc/envoy/tls/server.key", pki.server_key),
        ("/etc/envoy/tls/client-ca.pem", pki.ca_path),
        ("target/wasm32-wasip1/release/trustgate.wasm", wasm),
    ):
        assert placeholder in text
        text = text.replace(placeholder, str(real))
    config = tmp_path / "mtls.yaml"
    config.write_text(text)
    cmd = [envoy_bin, "--mode", "validate", "-c", str(config), "-l", "warning", "--use-dynamic-base-id"]
    env = dict(os.environ, GITHUB_TOKEN="Bearer TEST-ONLY")
    out = subprocess.run(cmd, cwd=h.REPO, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    # Without the variable, the filter refuses its config and says which one is missing.
    env.pop("GITHUB_TOKEN")
    out = subprocess.run(cmd, cwd=h.REPO, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode != 0
    assert 'rules[2].upstream_headers.authorization: environment variable "GITHUB_TOKEN"' in out.stdout + out.stderr


def test_configs_validate_against_the_schema():
    import json

    from jsonschema import Draft202012Validator

    schema = json.loads((h.REPO / "filter-config" / "schema.json").read_text())
    v = Draft202012Validator(schema)
    assert not list(v.iter_errors(filter_config()))
    bad = filter_config()
    bad["providers"]["services"]["mtls"]["uri_san_prefix"] = []
    assert list(v.iter_errors(bad))


def test_mtls_provider_on_a_plain_http_listener_is_401_not_a_trap(start_gateway, upstream):
    """Without TLS the connection properties are absent: the provider sees no certificate (401), the VM keeps
    serving (a second request is answered the same way), and public rules still pass."""
    config = filter_config()
    config["rules"] = [r for r in config["rules"] if "upstream_headers" not in r]  # no VM environment here
    gw = start_gateway(config, name="mtls-plain")
    for _ in range(2):
        resp = gw.request("/people/me", [("X-Commit-Owner", "human:root")])
        h.assert_denied(resp, upstream, 401, "missing")
        assert resp.header("www-authenticate") is None
    resp = gw.request("/healthz", [("X-Commit-Owner", "human:root")])
    assert resp.status == 200
    assert h.only_request(upstream).values("x-commit-owner") == []
    assert not any("panic" in line for line in h.wasm_log_lines(gw))
