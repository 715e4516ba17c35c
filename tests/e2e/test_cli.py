"""The native `trustgate` CLI (docs/cli.md) end to end.

- `check-config` gives the same verdicts and JSON paths as Envoy, without Envoy.
- `keygen` → a filter config holding the JWKS / PEM it wrote → `sign jwt` → a request through a real Envoy 1.40
  (V8, `--concurrency 2`) → 200 with the identity header upstream; tampered, expired, foreign-key tokens → 401.
- `sign hmac` and `sign httpsig` headers are accepted by the gatekeeper and `http_signature` providers (and a
  changed body or a replay is refused).
- `trust` against a local discovery + JWKS server (tests/e2e/jwks_server.py): its provider block and Envoy
  cluster, used as printed, configure the gateway's `idp` provider; a sample token is verified; an issuer
  mismatch, unsupported keys and algorithms are reported.
- `keygen --assertion` prints the assertion `signing_key` block and a public JWK `cryptography`/PyJWT read as
  the key file's; `verify-assertion` accepts an assertion PyJWT signs with that key (served as a JWKS by the
  local server) and names what is wrong with a wrong issuer, audience, kid, signature, an expired one.

Keys are made by the CLI itself at test time and checked against `cryptography`/PyJWT (interop). `make test`
builds the CLI (cargo build --bin trustgate) before running these; TRUSTGATE_CLI overrides its path.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import jwt as pyjwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

import gatekeeper_client as gk
import trustgate_e2e as h
from jwks_server import JwksServer

CLI = Path(os.environ.get("TRUSTGATE_CLI", h.REPO / "target" / "debug" / "trustgate"))

ISS = "https://cli.trustgate.test/"
AUD = "cli-api"
OWNER = "x-commit-owner"
HS_SECRET = "cli-test-hs256-secret-0123456789abcdef"  # TEST ONLY
GK_CLIENT = "3f2c1a9e-0000-4000-8000-0000000000c1"
GK_SECRET = "cli-test-gatekeeper-secret"  # TEST ONLY
SIG_SECRET = base64.b64encode(b"cli-test-rfc9421-hmac-secret-32b").decode()  # TEST ONLY
REALM = "/realms/cli"  # the local IdP's issuer path


@pytest.fixture(scope="module")
def cli() -> Path:
    if not CLI.is_file():
        pytest.fail(f"{CLI} is missing: run `cargo build --bin trustgate` (make test does)", pytrace=False)
    return CLI


def run(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    if not CLI.is_file():
        pytest.fail(f"{CLI} is missing: run `cargo build --bin trustgate` (make test does)", pytrace=False)
    full_env = None if env is None else {**os.environ, **env}
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120, env=full_env, input=stdin)


def ok(*args: str, **kw) -> str:
    out = run(*args, **kw)
    assert out.returncode == 0, f"trustgate {' '.join(args[:2])}: exit {out.returncode}\n{h.redact(out.stderr)}"
    return out.stdout


def env_refs(value) -> set[str]:
    """The NAMEs of every `{"env": NAME}` secret reference in a config."""
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            return {value["env"]}
        return set().union(*(env_refs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(env_refs(v) for v in value)) if value else set()
    return set()


def check(cli: Path, path: Path) -> subprocess.CompletedProcess:
    """`check-config`, with a stand-in value for each secret the config reads from the environment (natively
    the CLI reads the process environment where the filter reads the VM's)."""
    env = {**os.environ, **{name: "TEST-ONLY-value" for name in env_refs(json.loads(path.read_text()))}}
    return subprocess.run([str(cli), "check-config", str(path)], capture_output=True, text=True, timeout=60, env=env)


# --------------------------------------------------------------------------------------------- check-config


@pytest.mark.parametrize("example", sorted(p for p in (h.REPO / "filter-config").glob("*.json") if p.name != "schema.json"), ids=lambda p: p.name)
def test_examples_pass_check_config(cli, example):
    out = check(cli, example)
    assert out.returncode == 0, f"check-config {example.name}: exit {out.returncode}\n{out.stdout}{out.stderr}"


def test_check_config_names_the_json_path(cli, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    demo = json.loads((h.REPO / "filter-config" / "demo.json").read_text())
    name = next(iter(demo["providers"]))
    jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP521R1()).public_key(), as_dict=True)
    demo["providers"][name]["jwt"]["keys"]["jwks"]["keys"][0] = jwk
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(demo))
    out = check(cli, bad)
    assert out.returncode == 1, f"check-config on a P-521 key: exit {out.returncode}"
    assert f"providers.{name}.jwt.keys.jwks.keys[0].crv" in out.stdout + out.stderr, out.stdout + out.stderr


# --------------------------------------------------------------------------------------------- help and errors

COMMANDS = [
    ["check-config"], ["keygen"], ["jwks"], ["sign"], ["sign", "jwt"], ["sign", "hmac"], ["sign", "httpsig"],
    ["sign", "signet"], ["trust"], ["signet", "public-key"], ["verify-assertion"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(cli, command):
    out = run(*command, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage: trustgate " + " ".join(command) in out.stdout, out.stdout


def test_usage_errors_exit_2_and_failures_exit_1(cli, tmp_path):
    assert run().returncode == 2, "no command"
    bad_option = run("sign", "jwt", "--nope")
    assert bad_option.returncode == 2 and "--nope" in bad_option.stderr, bad_option.stderr
    missing = run("keygen", "--alg", "p256")
    assert missing.returncode == 2 and "--out" in missing.stderr, missing.stderr
    bad_value = run("keygen", "--alg", "p521", "--out", str(tmp_path / "k"))
    assert bad_value.returncode == 2 and "ed25519, p256, p384, rsa" in bad_value.stderr, bad_value.stderr
    no_file = run("sign", "jwt", "--key", str(tmp_path / "absent.pem"), "--sub", "a")
    assert no_file.returncode == 1 and "absent.pem: cannot read" in no_file.stderr, no_file.stderr
    claim = run("sign", "jwt", "--secret", HS_SECRET, "--claim", "sub=5")
    assert claim.returncode == 2 and "malformed" in claim.stderr, claim.stderr


# --------------------------------------------------------------------------------------------- keys


@pytest.fixture(scope="module")
def keydir(tmp_path_factory) -> Path:
    """Keys made by `trustgate keygen`: p256 (default kid), ed25519 (kid ed-1), RSA pinned to PS256, the local
    IdP's key, and a key nobody trusts."""
    d = tmp_path_factory.mktemp("cli-keys")
    ok("keygen", "--alg", "p256", "--out", str(d / "es"))
    ok("keygen", "--alg", "ed25519", "--kid", "ed-1", "--out", str(d / "ed"))
    ok("keygen", "--alg", "PS256", "--bits", "2048", "--out", str(d / "ps"))
    ok("keygen", "--alg", "rsa", "--out", str(d / "rsa"))
    ok("keygen", "--alg", "p256", "--kid", "idp-1", "--out", str(d / "idp"))
    ok("keygen", "--alg", "p256", "--kid", "idp-1", "--out", str(d / "stranger"))
    return d


def jwks_of(keydir: Path, name: str) -> dict:
    return json.loads((keydir / f"{name}.jwks.json").read_text())


def rfc7638(jwk: dict) -> str:
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return h.b64url(hashlib.sha256(canonical.encode()).digest())


def test_keygen_writes_private_public_and_jwks(keydir):
    for name, alg, kid in [("es", "ES256", None), ("ed", "EdDSA", "ed-1"), ("ps", "PS256", None)]:
        private = keydir / f"{name}.key.pem"
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, f"{private} is not mode 0600"
        key = serialization.load_pem_private_key(private.read_bytes(), password=None)
        assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----"), "not PKCS#8"
        public = serialization.load_pem_public_key((keydir / f"{name}.pub.pem").read_bytes())
        assert public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        (jwk,) = jwks_of(keydir, name)["keys"]
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk), f"private members in {name}.jwks.json"
        assert jwk["alg"] == alg and jwk["use"] == "sig", jwk
        assert jwk["kid"] == (kid or rfc7638(jwk)), "kid is not the RFC 7638 thumbprint"
        # The JWK is the same public key (PyJWT reads it).
        from jwt.algorithms import get_default_algorithms
        loaded = get_default_algorithms()["EdDSA" if alg == "EdDSA" else alg].from_jwk(json.dumps(jwk))
        assert loaded.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
            public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_keygen_refuses_to_overwrite(keydir):
    out = run("keygen", "--alg", "p256", "--out", str(keydir / "es"))
    assert out.returncode == 1 and "--force" in out.stderr, out.stderr
    assert "ES256" in jwks_of(keydir, "es")["keys"][0]["alg"], "the existing key set was replaced"


def test_jwks_command_publishes_the_same_keys(keydir):
    out = json.loads(ok("jwks", str(keydir / "es.pub.pem"), str(keydir / "rsa.pub.pem")))
    assert out["keys"] == jwks_of(keydir, "es")["keys"] + jwks_of(keydir, "rsa")["keys"]
    no_alg = json.loads(ok("jwks", "--no-alg", "--kid", "k", str(keydir / "rsa.key.pem")))
    assert no_alg["keys"][0]["kid"] == "k" and "alg" not in no_alg["keys"][0] and "d" not in no_alg["keys"][0]
    two = run("jwks", "--kid", "k", str(keydir / "es.pub.pem"), str(keydir / "rsa.pub.pem"))
    assert two.returncode == 2 and "one key" in two.stderr, two.stderr


# --------------------------------------------------------------------------------------------- the local IdP


@pytest.fixture(scope="module")
def idp(keydir):
    """Discovery + JWKS on 127.0.0.1 for `trust`: /realms/cli (good), /realms/odd (a P-521 key, a JWKS on
    another host name, odd algorithms), /realms/mismatch (the document names another issuer)."""
    server = JwksServer()
    base = f"http://127.0.0.1:{server.port}"
    server.set_discovery(REALM, base + REALM, base + REALM + "/certs")
    server.set_jwks(REALM + "/certs", jwks_of(keydir, "idp")["keys"])
    p521 = {"kty": "EC", "crv": "P-521", "kid": "big", "x": h.b64url(b"\1" * 66), "y": h.b64url(b"\1" * 66)}
    server.set_discovery("/realms/odd", base + "/realms/odd", f"http://localhost:{server.port}/odd/jwks.json",
                         id_token_signing_alg_values_supported=["ES256", "ES512", "HS256", "PS256"])
    server.set_jwks("/odd/jwks.json", [p521] + jwks_of(keydir, "idp")["keys"])
    server.set_discovery("/realms/mismatch", base + "/realms/somewhere-else", base + REALM + "/certs")
    server.base = base
    yield server
    server.close()


@pytest.fixture(scope="module")
def trusted(idp) -> dict:
    """What `trust` prints for the good realm: the parts, and the whole text."""
    issuer = idp.base + REALM
    common = ["trust", issuer, "--provider-name", "idp", "--audience", AUD]
    return {
        "provider": json.loads(ok(*common, "--only", "provider")),
        "envoy": yaml.safe_load(ok(*common, "--only", "envoy")),
        "all": run(*common),
    }


# --------------------------------------------------------------------------------------------- the gateway


def filter_config(keydir: Path, trusted: dict) -> dict:
    sig_keys = {
        "cli-ed": {"alg": "ed25519", "pem": (keydir / "ed.pub.pem").read_text()},
        "cli-ec": {"alg": "ecdsa-p256-sha256", "pem": (keydir / "es.pub.pem").read_text()},
        "cli-pss": {"alg": "rsa-pss-sha512", "pem": (keydir / "rsa.pub.pem").read_text()},
        "cli-v15": {"alg": "rsa-v1_5-sha256", "pem": (keydir / "rsa.pub.pem").read_text()},
        "cli-hmac": {"alg": "hmac-sha256", "secret": SIG_SECRET},
    }
    jwt_common = {"issuer": ISS, "audiences": [AUD], "headers": {OWNER: "human:${claims.sub}"}}
    return {
        "providers": {
            "cli-jwks": {"jwt": {**jwt_common, "keys": {"jwks": {"keys": jwks_of(keydir, "es")["keys"] + jwks_of(keydir, "ps")["keys"]}}}},
            "cli-pem": {"jwt": {**jwt_common, "keys": {"pem": (keydir / "ed.pub.pem").read_text()}}},
            "cli-hs": {"jwt": {**jwt_common, "algorithms": ["HS256"],
                               "keys": {"jwks": {"keys": [{"kty": "oct", "k": h.b64url(HS_SECRET.encode())}]}}}},
            "gatekeeper": {"hmac": {"clients": {GK_CLIENT: {"name": "CLI Client", "secret": GK_SECRET}},
                                    "headers": {"x-client-id": "${client.id}", "x-client-name": "${client.name}"}}},
            "partners": {"http_signature": {"keys": sig_keys, "headers": {"x-client-id": "${key.id}"}}},
            **trusted["provider"],
        },
        "strip_headers": [OWNER, "x-client-id", "x-client-name"],
        "rules": [
            {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
            {"name": "jwt", "match": {"path_prefix": "/jwt/"}, "require": "cli-jwks"},
            {"name": "pem", "match": {"path_prefix": "/pem/"}, "require": "cli-pem"},
            {"name": "hs", "match": {"path_prefix": "/hs/"}, "require": "cli-hs"},
            {"name": "hmac", "match": {"path_prefix": "/hmac/"}, "require": "gatekeeper"},
            {"name": "sig", "match": {"path_prefix": "/sig/"}, "require": "partners"},
            {"name": "idp", "match": {"path_prefix": "/idp/"}, "require": "idp"},
        ],
    }


@pytest.fixture(scope="module")
def gw(envoy_bin, wasm, upstream, keydir, idp, trusted, tmp_path_factory) -> h.Envoy:
    config = filter_config(keydir, trusted)
    path = tmp_path_factory.mktemp("cli-config") / "filter.json"
    path.write_text(json.dumps(config))
    ok("check-config", str(path))
    envoy = h.Envoy(
        envoy_bin,
        tmp_path_factory.mktemp("cli-envoy"),
        lambda port, admin: h.gateway_bootstrap_with_clusters(
            listener_port=port, admin_port=admin, upstream_port=upstream.port, filter_config=config, wasm=wasm,
            extra_clusters=trusted["envoy"],  # exactly what `trust --only envoy` printed
        ),
        name="cli",
    )
    h.start_or_fail(envoy)
    yield envoy
    envoy.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.clear()


def allowed(resp: h.Response, upstream: h.EchoUpstream, header: str, value: str, gone: str = "authorization") -> h.Seen:
    assert resp.status == 200, resp.describe()
    seen = h.only_request(upstream)
    assert seen.values(header) == [value], seen
    assert gone not in seen.names(), f"{gone} was forwarded upstream"
    return seen


def sign_jwt(keydir: Path, key: str, *extra: str) -> str:
    return ok("sign", "jwt", "--key", str(keydir / f"{key}.key.pem"), "--iss", ISS, "--aud", AUD, *extra).strip()


# --------------------------------------------------------------------------------------------- keygen → sign jwt → Envoy


@pytest.mark.parametrize("key,path,extra", [
    ("es", "/jwt/es", []),                      # JWKS, kid = thumbprint on both sides by default
    ("ps", "/jwt/ps", ["--alg", "PS256"]),     # JWKS whose key pins PS256
    ("ed", "/pem/ed", ["--kid", "ed-1"]),      # PEM key (no kid in the config)
], ids=["ES256-jwks", "PS256-jwks", "EdDSA-pem"])
def test_keygen_then_sign_jwt_is_accepted_by_envoy(gw, upstream, keydir, key, path, extra):
    token = sign_jwt(keydir, key, "--sub", "alice", "--claim", "email=alice@example.com", *extra)
    # Interop: PyJWT verifies it with the public PEM keygen wrote.
    pub = (keydir / f"{key}.pub.pem").read_bytes()
    claims = pyjwt.decode(token, pub, algorithms=["ES256", "PS256", "EdDSA"], audience=AUD, issuer=ISS)
    assert claims["sub"] == "alice" and claims["email"] == "alice@example.com" and claims["exp"] - claims["iat"] == 300
    r = gw.request(path, [h.bearer(token), (OWNER, "human:mallory")])
    allowed(r, upstream, OWNER, "human:alice")


def test_hs256_token_from_a_secret(gw, upstream):
    token = ok("sign", "jwt", "--secret-env", "CLI_HS", "--iss", ISS, "--aud", AUD, "--sub", "ci",
               env={"CLI_HS": HS_SECRET}).strip()
    allowed(gw.request("/hs/x", [h.bearer(token)]), upstream, OWNER, "human:ci")


def test_tampered_expired_and_foreign_tokens_are_refused(gw, upstream, keydir):
    good = sign_jwt(keydir, "es", "--sub", "alice")
    tampered = h.tamper_payload(good, sub="admin")
    h.assert_denied(gw.request("/jwt/x", [h.bearer(tampered)]), upstream, 401, "bad_signature")
    expired = sign_jwt(keydir, "es", "--sub", "alice", "--exp-in", "-3600")
    h.assert_denied(gw.request("/jwt/x", [h.bearer(expired)]), upstream, 401, "expired")
    stranger = sign_jwt(keydir, "stranger", "--sub", "alice", "--kid", jwks_of(keydir, "es")["keys"][0]["kid"])
    h.assert_denied(gw.request("/jwt/x", [h.bearer(stranger)]), upstream, 401, "bad_signature")
    unknown = sign_jwt(keydir, "stranger", "--sub", "alice")
    h.assert_denied(gw.request("/jwt/x", [h.bearer(unknown)]), upstream, 401, "unknown_kid")
    wrong_aud = ok("sign", "jwt", "--key", str(keydir / "es.key.pem"), "--iss", ISS, "--aud", "other", "--sub", "a").strip()
    h.assert_denied(gw.request("/jwt/x", [h.bearer(wrong_aud)]), upstream, 401, "wrong_audience")


# --------------------------------------------------------------------------------------------- sign hmac


def test_sign_hmac_matches_the_reference_client():
    ts, nonce = int(time.time()), "0b6c6e3a-6f6e-4c2e-9a59-5d0c2f5d1e01"
    body = '{"item": "book", "qty": 2}'
    mine = ok("sign", "hmac", "--client-id", GK_CLIENT, "--secret", GK_SECRET, "--method", "POST", "--path",
              "/hmac/orders", "--body", body, "--timestamp", str(ts), "--nonce", nonce).strip()
    assert mine == gk.sign(GK_CLIENT, GK_SECRET, "POST", "/hmac/orders", body, timestamp=ts, nonce=nonce)


def test_sign_hmac_round_trip(gw, upstream, tmp_path):
    body = b'{"item": "book", "qty": 2}'
    (tmp_path / "body.json").write_bytes(body)
    auth = ok("sign", "hmac", "--client-id", GK_CLIENT, "--secret-env", "GK", "--method", "POST",
              "--path", "/hmac/orders?x=1", "--body-file", str(tmp_path / "body.json"), env={"GK": GK_SECRET}).strip()
    r = gw.request("/hmac/orders?x=1", [("Authorization", auth), ("X-Client-Id", "forged")], method="POST", body=body)
    seen = allowed(r, upstream, "x-client-id", GK_CLIENT)
    assert seen.values("x-client-name") == ["CLI Client"] and seen.body == body, seen
    upstream.clear()
    h.assert_denied(gw.request("/hmac/orders?x=1", [("Authorization", auth)], method="POST", body=body),
                    upstream, 401, "replayed")
    other = ok("sign", "hmac", "--client-id", GK_CLIENT, "--secret", GK_SECRET, "--method", "POST",
               "--path", "/hmac/orders", "--body", "{}").strip()
    h.assert_denied(gw.request("/hmac/orders", [("Authorization", other)], method="POST", body=b'{"qty": 99}'),
                    upstream, 401, "bad_signature")


# --------------------------------------------------------------------------------------------- sign httpsig


def header_pairs(text: str) -> list[tuple[str, str]]:
    return [tuple(part.strip() for part in line.split(":", 1)) for line in text.strip().splitlines()]


@pytest.mark.parametrize("keyid,key", [
    ("cli-ed", ["--key", "ed.key.pem"]),
    ("cli-ec", ["--key", "es.key.pem"]),
    ("cli-pss", ["--key", "rsa.key.pem", "--alg", "rsa-pss-sha512"]),
    ("cli-v15", ["--key", "rsa.key.pem", "--alg", "rsa-v1_5-sha256"]),
    ("cli-hmac", ["--secret-base64", SIG_SECRET]),
])
def test_sign_httpsig_round_trip(gw, upstream, keydir, keyid, key):
    key = [str(keydir / k) if k.endswith(".pem") else k for k in key]
    body = b'{"order": 7}'
    out = ok("sign", "httpsig", *key, "--keyid", keyid, "--method", "POST", "--url",
             "http://localhost/sig/orders?id=7", "--header", "Content-Type: application/json",
             "--body", body.decode(), "--nonce")
    signed = header_pairs(out)
    assert [n for n, _ in signed] == ["Content-Digest", "Signature-Input", "Signature"], out
    headers = signed + [("Content-Type", "application/json")]
    r = gw.request("/sig/orders?id=7", headers + [("X-Client-Id", "forged")], method="POST", body=body)
    seen = allowed(r, upstream, "x-client-id", keyid, gone="signature")
    assert seen.body == body and "signature-input" not in seen.names(), seen
    upstream.clear()
    h.assert_denied(gw.request("/sig/orders?id=7", headers, method="POST", body=b'{"order": 8}'),
                    upstream, 401, "digest_mismatch")
    upstream.clear()
    h.assert_denied(gw.request("/sig/orders?id=8", headers, method="POST", body=body), upstream, 401, "bad_signature")


# --------------------------------------------------------------------------------------------- trust


def test_trust_output_configures_a_working_provider(gw, upstream, keydir, idp, trusted):
    block = trusted["provider"]["idp"]["jwt"]
    assert block["issuer"] == idp.base + REALM and block["audiences"] == [AUD], block
    assert block["algorithms"] == ["ES256"], "the discovery document says ES256 and RS256; the key is P-256"
    assert block["keys"] == {"discovery": {"cluster": "idp_jwks", "authority": f"127.0.0.1:{idp.port}"}}, block
    (cluster,) = trusted["envoy"]
    assert cluster["name"] == "idp_jwks" and cluster["type"] == "STATIC" and "transport_socket" not in cluster
    token = ok("sign", "jwt", "--key", str(keydir / "idp.key.pem"), "--kid", "idp-1", "--iss", idp.base + REALM,
               "--aud", AUD, "--sub", "bob").strip()
    allowed(gw.request("/idp/x", [h.bearer(token)]), upstream, OWNER, "human:bob")
    upstream.clear()
    foreign = ok("sign", "jwt", "--key", str(keydir / "stranger.key.pem"), "--kid", "idp-1", "--iss",
                 idp.base + REALM, "--aud", AUD, "--sub", "bob").strip()
    h.assert_denied(gw.request("/idp/x", [h.bearer(foreign)]), upstream, 401, "bad_signature")


def test_trust_prints_provider_envoy_and_istio_parts(idp, trusted):
    full = trusted["all"]
    assert full.returncode == 0, full.stderr
    assert f"{REALM}/.well-known/openid-configuration: ok, issuer" in full.stderr, full.stderr
    assert "warning: the issuer uses plain http" in full.stderr, full.stderr
    assert "key [0] kid idp-1: EC P-256, ES256" in full.stderr, full.stderr
    istio_text = full.stdout.split("# 3. Istio", 1)[1].split("\n", 1)[1]
    docs = [d for d in yaml.safe_load_all(istio_text) if d]
    assert [d["kind"] for d in docs] == ["ServiceEntry"], "plain http: a ServiceEntry and no DestinationRule"
    assert docs[0]["spec"]["ports"] == [{"number": idp.port, "name": "http-idp", "protocol": "HTTP"}]
    assert f'"outbound|{idp.port}||127.0.0.1"' in full.stdout
    istio = json.loads(ok("trust", idp.base + REALM, "--istio", "--only", "provider"))
    assert next(iter(istio.values()))["jwt"]["keys"]["discovery"]["cluster"] == f"outbound|{idp.port}||127.0.0.1"


def test_trust_verifies_a_sample_token(idp, keydir):
    issuer = idp.base + REALM

    def token(key: str, *extra: str) -> str:
        return ok("sign", "jwt", "--key", str(keydir / f"{key}.key.pem"), "--kid", "idp-1", "--iss", issuer,
                  "--aud", AUD, "--sub", "bob", *extra).strip()

    good = run("trust", issuer, "--audience", AUD, "--token", token("idp"), "--only", "provider")
    assert good.returncode == 0 and 'the sample token verifies: alg ES256, kid idp-1, sub "bob"' in good.stderr, good.stderr
    from_stdin = run("trust", issuer, "--token-file", "-", "--only", "provider", stdin=token("idp"))
    assert from_stdin.returncode == 0, from_stdin.stderr
    forged = run("trust", issuer, "--token", token("stranger"))
    assert forged.returncode == 1 and "refused: bad_signature" in forged.stderr and not forged.stdout, forged.stderr
    expired = run("trust", issuer, "--token", token("idp", "--exp-in", "-600"))
    assert expired.returncode == 1 and "refused: expired" in expired.stderr, expired.stderr
    assert "signature, issuer and audience do verify" in expired.stderr, expired.stderr
    wrong_aud = run("trust", issuer, "--audience", "another", "--token", token("idp"))
    assert wrong_aud.returncode == 1 and "wrong_audience" in wrong_aud.stderr, wrong_aud.stderr


def test_trust_refuses_an_issuer_mismatch(idp):
    out = run("trust", idp.base + "/realms/mismatch")
    assert out.returncode == 1 and not out.stdout, out.stdout
    assert "discovery issuer mismatch" in out.stderr and "/realms/somewhere-else" in out.stderr, out.stderr
    assert "trailing slash" in out.stderr, out.stderr
    slash = run("trust", idp.base + REALM + "/")
    assert slash.returncode == 1 and "discovery issuer mismatch" in slash.stderr, slash.stderr


def test_trust_reports_unsupported_keys_and_algorithms(idp):
    out = run("trust", idp.base + "/realms/odd", "--provider-name", "odd")
    assert out.returncode == 0, out.stderr
    assert 'key [0] kid big: skipped, as the filter will: crv: unsupported curve "P-521"' in out.stderr, out.stderr
    assert "ES512, which trustgate does not verify" in out.stderr, out.stderr
    assert "HS256 (a client secret)" in out.stderr, out.stderr
    assert "advertises PS256 but no key in its JWKS fits it" in out.stderr, out.stderr
    assert "no --audience" in out.stderr, out.stderr
    block = json.loads(out.stdout.split("# 2. Envoy", 1)[0].split("\n", 1)[1])["odd"]["jwt"]
    # jwks_uri on another host name: the filter fetches it directly, through a cluster for that host.
    assert block["keys"] == {"remote": {"cluster": "odd_jwks", "authority": f"localhost:{idp.port}",
                                        "path": "/odd/jwks.json"}}, block
    assert block["algorithms"] == ["ES256"], block
    discovery = run("trust", idp.base + "/realms/odd", "--keys", "discovery")
    assert discovery.returncode == 2 and "--keys remote" in discovery.stderr, discovery.stderr


def test_trust_says_when_the_issuer_is_unreachable():
    server = JwksServer(start=False)  # a port that refuses connections
    try:
        out = run("trust", f"http://127.0.0.1:{server.port}/realms/x", "--timeout", "5")
    finally:
        server.close()
    assert out.returncode == 1, out.stderr
    assert f"GET http://127.0.0.1:{server.port}/realms/x/.well-known/openid-configuration:" in out.stderr, out.stderr


# --------------------------------------------------------------------------------------------- identity assertions

GW_ISS = "https://gateway.cli.trustgate.test"
GW_AUD = "orders"


@pytest.fixture(scope="module")
def assertion_jwks():
    server = JwksServer()
    server.url = f"http://127.0.0.1:{server.port}/.well-known/trustgate/jwks.json"
    yield server
    server.close()


def assertion_key(tmp_path: Path, alg: str, kid: str) -> tuple[dict, object]:
    """`keygen --assertion`: the printed block, and the private key it wrote (loaded by `cryptography`)."""
    out = run("keygen", "--alg", alg, "--kid", kid, "--assertion", "--out", str(tmp_path / kid))
    assert out.returncode == 0, out.stderr
    pem = (tmp_path / f"{kid}.key.pem").read_text()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----") and pem not in out.stdout + out.stderr
    assert f'export TRUSTGATE_ASSERTION_KEY="$(cat {tmp_path / kid}.key.pem)"' in out.stderr, out.stderr
    return json.loads(out.stdout), serialization.load_pem_private_key(pem.encode(), password=None)


@pytest.mark.parametrize("alg,pyjwt_alg", [("EdDSA", "EdDSA"), ("ES256", "ES256")])
def test_keygen_assertion_block_and_verify_assertion(assertion_jwks, tmp_path, alg, pyjwt_alg):
    from jwt.algorithms import get_default_algorithms

    kid = f"gw-e2e-{alg.lower()}"
    block, private = assertion_key(tmp_path, alg, kid)
    assert block["signing_key"] == {"alg": alg, "kid": kid, "pem": {"env": "TRUSTGATE_ASSERTION_KEY"}}, block
    jwk = block["public_jwk"]
    assert jwk["kid"] == kid and jwk["alg"] == alg and not {"d", "p", "q", "k"} & set(jwk), jwk
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    loaded = get_default_algorithms()[pyjwt_alg].from_jwk(json.dumps(jwk))
    assert loaded.public_bytes(*spki) == private.public_key().public_bytes(*spki), "public_jwk is another key"
    assertion_jwks.set_jwks("/.well-known/trustgate/jwks.json", [jwk])

    def mint(kid: str = kid, key=private, **claims) -> str:
        now = int(time.time())
        payload = {"iss": GW_ISS, "aud": GW_AUD, "sub": "alice", "iat": now, "exp": now + 60,
                   "jti": h.b64url(os.urandom(16)), **claims}
        return pyjwt.encode(payload, key, algorithm=pyjwt_alg, headers={"kid": kid, "typ": "JWT"})

    def verify(token: str, *extra: str) -> subprocess.CompletedProcess:
        return run("verify-assertion", "--jwks-url", assertion_jwks.url, "--iss", GW_ISS, "--aud", GW_AUD, *extra,
                   stdin=token + "\n")

    good = verify(mint(email="alice@example.com"))
    assert good.returncode == 0, good.stderr
    claims = json.loads(good.stdout)
    assert claims["sub"] == "alice" and claims["email"] == "alice@example.com" and claims["aud"] == GW_AUD
    assert f'the assertion verifies: alg {alg}, kid "{kid}", sub "alice"' in good.stderr, good.stderr

    _, other_key = assertion_key(tmp_path, alg, kid + "-other")
    token = mint()
    header, payload, signature = token.split(".")
    forged_payload = h.b64url(json.dumps({**pyjwt.decode(token, options={"verify_signature": False}),
                                          "sub": "admin"}).encode())
    refused = {
        "wrong issuer": (mint(iss="https://elsewhere.test"),
                         f'wrong issuer (got "https://elsewhere.test", expected "{GW_ISS}")'),
        "wrong audience": (mint(aud="billing"), 'wrong audience (got "billing", expected "orders")'),
        "unknown kid": (mint(kid="gw-2020-01"), f'unknown kid "gw-2020-01" (the set has: "{kid}")'),
        "tampered": (f"{header}.{forged_payload}.{signature}", f'bad signature: the set\'s key with kid "{kid}"'),
        "another key": (mint(key=other_key), "bad signature"),
        "expired": (mint(iat=int(time.time()) - 600, exp=int(time.time()) - 540), "expired 54"),
        "not a JWS": ("not-a-token", "not a JWS"),
    }
    for case, (bad, why) in refused.items():
        out = verify(bad)
        assert out.returncode == 1 and not out.stdout, f"{case}: exit {out.returncode}\n{out.stdout}"
        assert out.stderr.startswith(f"trustgate: {why}"), f"{case}: {out.stderr}"
        assert len(out.stderr.strip().splitlines()) == 1, f"{case}: more than one line: {out.stderr}"
        for part in bad.split("."):
            assert len(part) < 12 or part not in out.stderr, f"{case}: the token is in the message"
    leeway = verify(mint(iat=int(time.time()) - 120, exp=int(time.time()) - 3), "--leeway-s", "30")
    assert leeway.returncode == 0, leeway.stderr


def test_verify_assertion_says_when_the_jwks_cannot_be_fetched(assertion_jwks):
    token = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsiLCJ0eXAiOiJKV1QifQ.e30.AA"  # {"alg":"EdDSA","kid":"k","typ":"JWT"}.{}
    missing = f"http://127.0.0.1:{assertion_jwks.port}/nothing.json"
    out = run("verify-assertion", "--jwks-url", missing, "--iss", GW_ISS, "--aud", GW_AUD, "--token", token)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"trustgate: JWKS fetch failed: GET {missing}: status 404"), out.stderr
    usage = run("verify-assertion", "--jwks-url", "file:///etc/passwd", "--iss", GW_ISS, "--aud", GW_AUD,
                "--token", token)
    assert usage.returncode == 2 and "http:// or https://" in usage.stderr, usage.stderr
