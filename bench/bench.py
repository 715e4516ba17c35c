#!/usr/bin/env python3
"""`make bench`: trustgate side by side with Envoy's native `jwt_authn`, a no-op wasm filter and no filter (issue 6).

Every case is one Envoy (`--concurrency 1`, V8) with one listener on 127.0.0.1 whose route is answered by
Envoy itself (`direct_response`), started fresh for every run, checked (`/ready`, then a few requests through
Python: a credential gets 200 and the identity the filter wrote, no credential gets 401), warmed up with wrk,
then measured with wrk (`--latency`), the same connections, threads and duration for every case. Cases run
round-robin, several rounds, and the report uses each case's median. Envoy is pinned to CPU 0 and wrk to
CPU 1 when there are two CPUs or more (`--no-pin` turns that off).

Cases (bench/bench.py --list):
  ceiling                    Envoy, no HTTP filter but the router
  noop-wasm                  Envoy with bench/noop (a proxy-wasm filter that returns Continue)
  noop-wasm/unique-lines     the no-op filter fed the HMAC request lines (a new request each time): what the
                             single-use request files cost without any filter work
  calls/jwt-same, calls/hmac the no-op filter making exactly the host calls trustgate makes for a same-token JWT /
                             a gatekeeper HMAC request (CALL_SEQUENCES): trustgate minus these is its own work
  noop-wasm/trimmed, calls/jwt-same+trimmed  the same, the module exporting only the callbacks trustgate exports
                             (scripts/wasm_exports.py, as `make build` does): the floor for trustgate's same token
  jwt_authn/<alg>/uncached   Envoy's jwt_authn, inline local_jwks, its default (no jwt_cache_config); ES256 RS256 EdDSA
  jwt_authn/<alg>/cached     the same with jwt_cache_config {jwt_cache_size: 1000}
  trustgate/<alg>/same       trustgate, a jwt provider, the same token on every request; ES256 RS256 EdDSA HS256
  trustgate/<alg>/unique     a different token on every request (--unique-tokens pre-minted, cycled)
  trustgate/ES256/{same,unique}+assertion  as trustgate/ES256/same and /unique, with an EdDSA identity assertion
                             signed for the upstream (issue 14): reused per caller for ttl/4 ("same"), signed per
                             request ("unique": a new subject per token)
  trustgate/ES256/same+dpop  the same ES256 token, DPoP-bound (cnf.jkt), with a new ES256 DPoP proof (RFC 9449) per
                             request: its ratio to trustgate/ES256/same is the cost of the proof (one ECDSA
                             verification, the replay store)
  trustgate/hmac             gatekeeper HMAC (body "empty"), a unique nonce per request
  trustgate/hmac+redis       the same provider and request lines, the replay store in Redis (issue 16:
                             `state.redis` on a `state` cluster, a webdis on loopback): one HTTP round trip per
                             request, the request paused meanwhile. redis-server (no persistence) and webdis (ACL:
                             SET and EVAL only) start once, on free loopback ports (tests/e2e/fleet_store.py),
                             when this case is selected; Redis is flushed before every run, and must hold at least
                             one key (under the prefix) per accepted request after it; both stop at exit. Not
                             pinned (on two CPUs they share them with Envoy and wrk). The build under test only
  trustgate/signet           Signet proofs, one ephemeral key (the binding cache's case), a unique jti per request
  trustgate/httpsig-ed25519  RFC 9421 ed25519 (@method @authority @path), a unique nonce per request
  hostcall/<call>            --hostcalls only: bench/noop making one host call HOSTCALL_REPEAT (10) times per
                             request; its cost per call is (1/req/s − 1/no-op req/s) / 10 (`make bench-hostcalls`)

Keys are generated at start (cryptography); tokens are minted with PyJWT. Single-use requests (HMAC nonces,
Signet jti, RFC 9421 nonces) are signed once, with the current time (windows of 3600 s, so they stay valid for
the whole bench), enough for the fastest plausible rate (1.5 × the no-op filter's measured rate × the warm-up
and measured seconds): every run has a fresh Envoy (an empty replay store; for trustgate/hmac+redis, a
flushed Redis) and within a run no line is sent twice; a run that would run out fails. RFC 9421 requests are
signed with cryptography directly after checking, on a sample, that the headers are byte for byte what the
`http-message-signatures` package produces (Ed25519 signatures are deterministic).

A run fails (and the bench exits 1, after writing its results) when Envoy does not start, the pre-check fails,
wrk reports more than 0.1% non-2xx responses or socket errors, or single-use requests would repeat. A failed
case is listed as failed in the results, never left out.

Usage (repository root, after `make build`; `make bench` does both):
  .venv/bin/python bench/bench.py                 # 3 rounds, 8 s each after a 1 s warm-up (about 12 min)
  .venv/bin/python bench/bench.py --quick         # 1 round, 3 s, 1 s warm-up: a smoke run
  .venv/bin/python bench/bench.py --cases 'trustgate/ES|jwt_authn/ES' --rounds 5
  .venv/bin/python bench/bench.py --hostcalls --rounds 2 --duration 3   # host-call costs: bench/hostcalls.{json,md}
Writes bench/results.json and bench/results.md, and replaces the results section of BENCHMARKS.md (between
its `bench:results` markers). --quick writes bench/results-quick.{json,md} and leaves BENCHMARKS.md alone.
"""
from __future__ import annotations

import atexit
import argparse
import base64
import concurrent.futures
import datetime
import hashlib
import hmac
import http.client
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import wasm_exports  # noqa: E402  (scripts/wasm_exports.py: the export trim `make build` applies)

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
ENVOY_TEMPLATE = BENCH / "envoy" / "bench.yaml"
WRK_SCRIPT = BENCH / "wrk" / "requests.lua"
DEFAULT_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "trustgate.wasm"
DEFAULT_NOOP = REPO / "target" / "bench-noop" / "wasm32-wasip1" / "release" / "bench_noop.wasm"
MARK_START = "<!-- bench:results:start -->"
MARK_END = "<!-- bench:results:end -->"

HOST = "bench.local"  # the Host of every request (RFC 9421 signs @authority, so it cannot be the port)
PATH = "/api/bench"
ISSUER = "https://idp.bench.local/"
AUDIENCE = "trustgate-bench"
TOKEN_TTL_S = 4 * 3600
WINDOW_S = 3600  # hmac timestamp_window_s, signet skew_s, http_signature max_age_s
JWT_ALGS = ("ES256", "RS256", "EdDSA", "HS256")
JWT_AUTHN_ALGS = ("ES256", "RS256", "EdDSA")
PRECHECK_REQUESTS = 3
MAX_BAD_FRACTION = 0.001  # non-2xx or socket errors above this fail the run
HMAC_CLIENT = "bench-client-0000-4000-8000-000000000001"
HMAC_SECRET = "bench-shared-secret-not-for-production"
SIGNET_PURPOSE = "api-access"


class BenchError(Exception):
    """A run (or the whole bench) cannot go on; the message says why."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ============================================================================================ keys and tokens


@dataclass
class JwtKey:
    alg: str
    kid: str
    private_pem: bytes  # PKCS#8 PEM, or the raw HMAC secret for HS256
    jwk: dict  # the public JWK (for HS256 the oct key itself)


def make_keys() -> dict[str, JwtKey]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    def pem(k) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def num(n: int, size: int) -> str:
        return b64url(n.to_bytes(size, "big"))

    out = {}
    k = ec.generate_private_key(ec.SECP256R1())
    pub = k.public_key().public_numbers()
    out["ES256"] = JwtKey("ES256", "bench-es256", pem(k), {"kty": "EC", "crv": "P-256", "kid": "bench-es256", "alg": "ES256",
                                                          "x": num(pub.x, 32), "y": num(pub.y, 32)})
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = k.public_key().public_numbers()
    out["RS256"] = JwtKey("RS256", "bench-rs256", pem(k), {"kty": "RSA", "kid": "bench-rs256", "alg": "RS256",
                                                          "n": num(pub.n, 256), "e": num(pub.e, 3)})
    k = ed25519.Ed25519PrivateKey.generate()
    raw = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    out["EdDSA"] = JwtKey("EdDSA", "bench-eddsa", pem(k), {"kty": "OKP", "crv": "Ed25519", "kid": "bench-eddsa", "alg": "EdDSA",
                                                          "x": b64url(raw)})
    secret = secrets.token_bytes(32)
    out["HS256"] = JwtKey("HS256", "bench-hs256", secret, {"kty": "oct", "kid": "bench-hs256", "alg": "HS256", "k": b64url(secret)})
    return out


def _mint_jwts(alg: str, kid: str, private: bytes, first: int, count: int, now: int) -> list[str]:
    """Tokens `first`..`first+count-1` (a process-pool worker: module level, picklable arguments)."""
    import jwt
    from cryptography.hazmat.primitives import serialization

    key = private if alg == "HS256" else serialization.load_pem_private_key(private, password=None)
    out = []
    for i in range(first, first + count):
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"user-{i}", "iat": now, "exp": now + TOKEN_TTL_S,
                  "jti": f"bench-{i}"}
        out.append(jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"}))
    return out


def mint_jwts(key: JwtKey, count: int, workers: int) -> list[str]:
    now = int(time.time())
    if count < 2000 or workers < 2:
        return _mint_jwts(key.alg, key.kid, key.private_pem, 0, count, now)
    chunk = math.ceil(count / (workers * 4))
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_mint_jwts, key.alg, key.kid, key.private_pem, s, min(chunk, count - s), now)
                   for s in range(0, count, chunk)]
        return [t for f in futures for t in f.result()]


def _sign_ed25519(private_raw: bytes, messages: list[bytes]) -> list[bytes]:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    k = ed25519.Ed25519PrivateKey.from_private_bytes(private_raw)
    return [k.sign(m) for m in messages]


def sign_ed25519_many(private_raw: bytes, messages: list[bytes], workers: int) -> list[bytes]:
    if len(messages) < 2000 or workers < 2:
        return _sign_ed25519(private_raw, messages)
    chunk = math.ceil(len(messages) / (workers * 4))
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_sign_ed25519, private_raw, messages[s:s + chunk]) for s in range(0, len(messages), chunk)]
        return [s for f in futures for s in f.result()]


def _sign_dpop_proofs(private_pem: bytes, header_b64: str, claims: list[dict]) -> list[str]:
    """ES256 DPoP proofs over `claims` (a process-pool worker: module level, picklable arguments)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = serialization.load_pem_private_key(private_pem, password=None)
    out = []
    for c in claims:
        signing_input = f"{header_b64}.{b64url(json.dumps(c, separators=(',', ':')).encode())}"
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        out.append(f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}")
    return out


@dataclass
class DpopKey:
    """The client's DPoP proof key (P-256): its PKCS#8 PEM, public JWK and RFC 7638 thumbprint."""

    private_pem: bytes
    jwk: dict
    jkt: str


def make_dpop_key() -> DpopKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    k = ec.generate_private_key(ec.SECP256R1())
    pub = k.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": b64url(pub.x.to_bytes(32, "big")), "y": b64url(pub.y.to_bytes(32, "big"))}
    members = json.dumps({m: jwk[m] for m in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return DpopKey(pem, jwk, b64url(hashlib.sha256(members.encode()).digest()))


def dpop_lines(key: JwtKey, client: DpopKey, count: int, workers: int) -> list[str]:
    """One ES256 token bound to `client` (cnf.jkt), and `count` proofs for GET http://HOST/PATH, each with its
    own jti (single use: the filter refuses a replayed proof)."""
    import jwt
    from cryptography.hazmat.primitives import serialization

    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-0", "iat": now, "exp": now + TOKEN_TTL_S,
              "cnf": {"jkt": client.jkt}}
    token = jwt.encode(claims, serialization.load_pem_private_key(key.private_pem, password=None), algorithm="ES256",
                       headers={"kid": key.kid, "typ": "at+jwt"})
    header_b64 = b64url(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": client.jwk}, separators=(",", ":")).encode())
    ath = b64url(hashlib.sha256(token.encode()).digest())
    proof_claims = [{"jti": b64url(secrets.token_bytes(12)), "htm": "GET", "htu": f"http://{HOST}{PATH}", "iat": now,
                     "ath": ath} for _ in range(count)]
    if count < 2000 or workers < 2:
        proofs = _sign_dpop_proofs(client.private_pem, header_b64, proof_claims)
    else:
        chunk = math.ceil(count / (workers * 4))
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_sign_dpop_proofs, client.private_pem, header_b64, proof_claims[s:s + chunk])
                       for s in range(0, count, chunk)]
            proofs = [p for f in futures for p in f.result()]
    return [request_line([("Authorization", f"DPoP {token}"), ("DPoP", p)]) for p in proofs]


# ============================================================================================ request files
# Raw HTTP/1.1 requests without bodies, back to back (bench/wrk/requests.lua cuts them at CRLF CRLF).


def request_line(headers: list[tuple[str, str]]) -> str:
    for n, v in headers:
        if any(c in n + v for c in "\r\n"):
            raise BenchError(f"header {n} would break the request file")
    return f"GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"


def parse_request(raw: str) -> list[tuple[str, str]]:
    """The headers of one raw request (the request line dropped)."""
    lines = raw.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    return [tuple(line.split(": ", 1)) for line in lines]  # type: ignore[misc]


def first_requests(path: Path, n: int) -> list[str]:
    with path.open("rb") as f:
        head = f.read(64 * 1024 * n).decode()
    return [r + "\r\n\r\n" for r in head.split("\r\n\r\n")[:n] if r]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_bytes("".join(lines).encode())
    return path


def hmac_lines(count: int) -> list[str]:
    now = int(time.time())
    key = HMAC_SECRET.encode()
    out = []
    for _ in range(count):
        nonce = str(uuid.uuid4())
        msg = f"GET\n{PATH}\n{now}\n{nonce}\n".encode()
        sig = hmac.new(key, msg, hashlib.sha256).hexdigest()
        auth = f'HMAC client_id="{HMAC_CLIENT}",timestamp="{now}",nonce="{nonce}",signature="{sig}"'
        out.append(request_line([("Authorization", auth)]))
    return out


def check_hmac_against_reference() -> str:
    """The HMAC lines use the gatekeeper's algorithm; compare one with byteforge-hmac when it is installed."""
    try:
        from byteforge_hmac import hmac_client as bf_module
        from byteforge_hmac import HMACClient
    except ImportError:
        return "byteforge-hmac not installed: not compared"
    from types import SimpleNamespace
    from unittest import mock

    now, nonce = int(time.time()), str(uuid.uuid4())
    with mock.patch.object(bf_module, "time", SimpleNamespace(time=lambda: float(now))), \
            mock.patch.object(bf_module, "uuid", SimpleNamespace(uuid4=lambda: nonce)):
        ref = HMACClient(HMAC_CLIENT, HMAC_SECRET, base_url="http://127.0.0.1")._create_auth_header("GET", PATH, "")
    msg = f"GET\n{PATH}\n{now}\n{nonce}\n".encode()
    ours = f'HMAC client_id="{HMAC_CLIENT}",timestamp="{now}",nonce="{nonce}",signature="{hmac.new(HMAC_SECRET.encode(), msg, hashlib.sha256).hexdigest()}"'
    if ref != ours:
        raise BenchError("the bench's HMAC signer disagrees with byteforge-hmac")
    return "identical to byteforge-hmac"


class SignetKeys:
    def __init__(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        raw = serialization.Encoding.Raw
        self.master = ed25519.Ed25519PrivateKey.generate()
        self.master_public_hex = self.master.public_key().public_bytes(raw, serialization.PublicFormat.Raw).hex()
        self.ephemeral_raw = secrets.token_bytes(32)
        eph = ed25519.Ed25519PrivateKey.from_private_bytes(self.ephemeral_raw)
        self.epk = eph.public_key().public_bytes(raw, serialization.PublicFormat.Raw)


def signet_lines(keys: SignetKeys, count: int, workers: int) -> list[str]:
    """Proofs as `trustgate sign signet` makes them (README, "signet provider"), all under one ephemeral key
    and binding (a real agent's steady state: the binding cache's case), each with its own jti and nonce."""
    now = int(time.time())
    exp = now + WINDOW_S
    pur = SIGNET_PURPOSE.encode()
    binding = b"signet-ephemeral-binding-v1:" + keys.epk + exp.to_bytes(8, "big", signed=True) + len(pur).to_bytes(4, "big") + pur
    p = keys.master.sign(binding)
    nonces = [secrets.token_bytes(16) for _ in range(count)]
    jtis = [secrets.token_bytes(16) for _ in range(count)]
    msgs = [f"GET|{PATH}|{now}|{b64url(n)}".encode() for n in nonces]
    sigs = sign_ed25519_many(keys.ephemeral_raw, msgs, workers)
    out = []
    for jti, s, n in zip(jtis, sigs, nonces):
        proof = (f"v1;m=compact;jti={b64url(jti)};s={b64url(s)};n={b64url(n)};ts={now};epk={b64url(keys.epk)};"
                 f"p={b64url(p)};exp={exp};pur={SIGNET_PURPOSE}")
        out.append(request_line([("Signet-Proof", proof)]))
    return out


HTTPSIG_KEYID = "bench-ed25519"
HTTPSIG_COMPONENTS = ("@method", "@authority", "@path")
HTTPSIG_LABEL = "sig1"


def _httpsig_params(created: int, nonce: str) -> str:
    comps = " ".join(f'"{c}"' for c in HTTPSIG_COMPONENTS)
    return f'({comps});created={created};keyid="{HTTPSIG_KEYID}";alg="ed25519";nonce="{nonce}"'


def _httpsig_base(params: str) -> bytes:
    return (f'"@method": GET\n"@authority": {HOST}\n"@path": {PATH}\n"@signature-params": {params}').encode()


def _httpsig_headers(params: str, sig: bytes) -> list[tuple[str, str]]:
    return [("Signature-Input", f"{HTTPSIG_LABEL}={params}"),
            ("Signature", f"{HTTPSIG_LABEL}=:{base64.b64encode(sig).decode()}:")]


def httpsig_reference(private_raw: bytes, created: int, nonce: str) -> list[tuple[str, str]]:
    """The headers the `http-message-signatures` package makes for this request."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

    class Message:
        def __init__(self) -> None:
            self.method, self.url, self.headers = "GET", f"http://{HOST}{PATH}", {}

    key = ed25519.Ed25519PrivateKey.from_private_bytes(private_raw)
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519,
                               key_resolver=MappingKeyResolver(public_keys={}, private_keys={HTTPSIG_KEYID: key}))
    msg = Message()
    signer.sign(msg, key_id=HTTPSIG_KEYID, created=datetime.datetime.fromtimestamp(created, tz=datetime.timezone.utc),
                nonce=nonce, label=HTTPSIG_LABEL, covered_component_ids=HTTPSIG_COMPONENTS)
    return [(n, v) for n, v in msg.headers.items() if n in ("Signature-Input", "Signature")]


def httpsig_lines(private_raw: bytes, count: int, workers: int, check: int = 50) -> tuple[list[str], str]:
    now = int(time.time())
    nonces = [secrets.token_hex(12) for _ in range(count)]
    params = [_httpsig_params(now, n) for n in nonces]
    sigs = sign_ed25519_many(private_raw, [_httpsig_base(p) for p in params], workers)
    headers = [_httpsig_headers(p, s) for p, s in zip(params, sigs)]
    step = max(1, count // check)
    for i in range(0, count, step):
        ref = httpsig_reference(private_raw, now, nonces[i])
        if sorted(ref) != sorted(headers[i]):
            raise BenchError(f"RFC 9421 request {i}: the bench's signer disagrees with http-message-signatures:\n"
                             f"  ours: {headers[i]}\n  pyauth: {ref}")
    import http_message_signatures

    version = getattr(http_message_signatures, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("http-message-signatures")
    note = f"{len(range(0, count, step))} of {count} checked identical to http-message-signatures {version}"
    return [request_line(h) for h in headers], note


# ============================================================================================ Envoy configs


def wasm_filter(name: str, wasm: Path, configuration: dict | str | None) -> dict:
    config = {
        "name": name,
        "root_id": name,
        "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(wasm)}}},
        "failure_policy": "FAIL_CLOSED",
        "allow_on_headers_stop_iteration": True,
    }
    if configuration is not None:
        config["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                   "value": configuration if isinstance(configuration, str) else json.dumps(configuration)}
    return {"name": "envoy.filters.http.wasm",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": config}}


ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def jwt_authn_filter(key: JwtKey, cached: bool) -> dict:
    provider = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": json.dumps({"keys": [key.jwk]})},
        "claim_to_headers": [{"header_name": "x-commit-owner", "claim_name": "sub"}],
    }
    if cached:
        provider["jwt_cache_config"] = {"jwt_cache_size": 1000}
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
    }}


def trustgate_config(provider: dict) -> dict:
    return {"providers": {"bench": provider}, "rules": [{"name": "bench", "match": {}, "require": "bench"}]}


def trustgate_jwt_provider(key: JwtKey) -> dict:
    return {"jwt": {"issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": [key.alg],
                    "keys": {"jwks": {"keys": [key.jwk]}},
                    "headers": {"x-commit-owner": "human:${claims.sub}"}}}


def envoy_yaml(port: int, admin_port: int, filters: list[dict], identity_header: str,
               clusters: list[dict] | None = None) -> str:
    return string.Template(ENVOY_TEMPLATE.read_text()).substitute(
        port=port, admin_port=admin_port, identity_header=identity_header, http_filters=json.dumps(filters),
        clusters=json.dumps(clusters or []))


def static_cluster(name: str, port: int) -> dict:
    """A plain-HTTP/1.1 STATIC cluster to 127.0.0.1:`port` (trustgate/hmac+redis: `state`, the webdis)."""
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


STATE_PREFIX = "bench:"


def state_redis(cluster: str = "state") -> dict:
    """The policy-wide `state` of trustgate/hmac+redis: nonces in Redis through webdis (issue 16)."""
    return {"redis": {"cluster": cluster, "authority": "webdis", "prefix": STATE_PREFIX, "timeout_ms": 500}}


class StateStore:
    """redis-server (no persistence) and webdis (ACL: SET and EVAL) on free loopback ports, started on first
    use and once for the whole bench: the fleet e2e's tests/e2e/fleet_store.Store. Its processes go into RUNNING,
    so the bench's teardown (and SIGINT/SIGTERM) stops them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.store = None

    def ensure(self):
        if self.store is None:
            missing = [b for b in ("redis-server", "redis-cli", "webdis") if not shutil.which(b)]
            if missing:
                raise BenchError(f"{missing} not installed: make fleet-deps (apt-get install -y redis-server webdis)")
            e2e = str(REPO / "tests" / "e2e")
            if e2e not in sys.path:
                sys.path.insert(0, e2e)
            from fleet_store import Store

            self.workdir.mkdir(exist_ok=True)
            store = Store(self.workdir)
            try:
                store.start_redis()
                RUNNING.add(store.redis)
                store.start_webdis()
                RUNNING.add(store.webdis)
            except Exception as e:  # noqa: BLE001 — the e2e harness raises its own HarnessError
                for p in (store.webdis, store.redis):
                    if p is not None:
                        stop_process(p, grace=3)
                raise BenchError(f"state store: {type(e).__name__}: {e}") from e
            self.store = store
            log(f"  state store: redis-server on 127.0.0.1:{store.redis_port}, webdis on 127.0.0.1:{store.webdis_port}")
        return self.store

    def flush(self) -> None:
        """An empty replay store for the next run (as a fresh Envoy has for the local store)."""
        store = self.ensure()
        for p, what in ((store.redis, "redis-server"), (store.webdis, "webdis")):
            if p.poll() is not None:
                raise BenchError(f"{what} exited (status {p.returncode})")
        if store.cli("FLUSHALL") != "OK" or store.cli("DBSIZE") != "0":
            raise BenchError("state store: FLUSHALL did not empty Redis")

    def check_keys(self, accepted: int) -> int:
        """After a run: Redis holds at least one key per accepted request (each nonce was recorded there, and
        the window is longer than the run), under the prefix. Returns the key count."""
        store = self.ensure()
        try:
            n = int(store.cli("DBSIZE"))
        except ValueError as e:
            raise BenchError(f"state store: DBSIZE: {e}") from e
        if n < accepted:
            raise BenchError(f"state store: Redis holds {n:,} keys after {accepted:,} accepted requests "
                             "(were the nonces recorded in Redis?)")
        some = store.cli("RANDOMKEY")
        if not some.startswith(STATE_PREFIX):
            raise BenchError(f"state store: a key without the prefix {STATE_PREFIX!r}: {some[:80]!r}")
        return n

    def describe(self) -> str:
        ver = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        m = re.search(r"v=(\S+)", ver)
        return (f"redis-server {m.group(1) if m else '?'} (no persistence) behind webdis (ACL: SET, EVAL), both on "
                f"loopback, not pinned; FLUSHALL before every run")


# ============================================================================================ processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RUNNING: set[subprocess.Popen] = set()  # what teardown kills (only processes this script started)


def stop_process(p: subprocess.Popen, grace: float = 10.0) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    RUNNING.discard(p)


class Envoy:
    def __init__(self, binary: str, config: Callable[[int, int], str], workdir: Path, name: str, cpu: str | None,
                 prefix: list[str] | None = None) -> None:
        """`prefix`: a command that execs Envoy, so the pid stays Envoy's (bench/instructions.py: valgrind)."""
        self.port, self.admin_port = free_port(), free_port()
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.config_path = workdir / f"envoy-{safe}.yaml"
        self.log_path = workdir / f"envoy-{safe}.log"
        self.config_path.write_text(config(self.port, self.admin_port))
        cmd = [binary, "-c", str(self.config_path), "--concurrency", "1", "--disable-hot-restart",
               "--log-level", "warn", "--log-path", str(self.log_path)]
        cmd = (prefix or []) + cmd
        if cpu is not None:
            cmd = ["taskset", "-c", cpu] + cmd  # taskset execs Envoy: the pid is Envoy's
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        RUNNING.add(self.proc)
        self.startup_s = 0.0

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.admin_port}/ready"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"Envoy exited with status {self.proc.returncode} at start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200 and r.read().strip() == b"LIVE":
                        self.startup_s = time.monotonic() - self.started
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise BenchError(f"Envoy not ready (/ready) after {timeout:.0f} s:\n{self.log_tail()}")

    def rss_kib(self) -> int | None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def cpu_s(self) -> float | None:
        """CPU time Envoy used so far (user + system, every thread), in seconds."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def deny_stats(self) -> str:
        """trustgate's non-zero deny counters (why requests were refused), for error messages."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats?filter=trustgate.deny", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return ""
        hits = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().endswith(": 0")]
        return ", ".join(hits[:10])

    def stop(self) -> None:
        stop_process(self.proc)


def loadavg() -> float | None:
    """The 1-minute load average when a run starts (this machine is shared: a high one explains an outlier)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def http_get(port: int, headers: list[tuple[str, str]]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.putrequest("GET", PATH, skip_host=True, skip_accept_encoding=True)
        for n, v in headers:
            conn.putheader(n, v)
        conn.endheaders()
        r = conn.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        conn.close()


def run_wrk(args, port: int, requests_file: Path, start: int, seconds: float, cpu: str | None) -> dict:
    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds:g}s", "--latency",
           "--timeout", "10s", "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}{PATH}"]
    if cpu is not None:
        cmd = ["taskset", "-c", cpu] + cmd
    env = dict(os.environ, BENCH_REQUESTS=str(requests_file), BENCH_START=str(start))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    RUNNING.add(p)
    try:
        out, _ = p.communicate(timeout=seconds + 120)
    except subprocess.TimeoutExpired:
        stop_process(p, grace=2)
        raise BenchError(f"wrk did not finish within {seconds + 120:.0f} s")
    finally:
        RUNNING.discard(p)
    m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
    if p.returncode != 0 or not m:
        raise BenchError(f"wrk failed (exit {p.returncode}):\n{out[-2000:]}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    return r


# ============================================================================================ host calls

HOSTCALL_REPEAT = 10  # calls per request in a hostcall/<call> case
HOSTCALLS = ("get_header_map_pairs", "get_header_map_value", "remove_header_map_value", "add_header_map_value",
             "increment_metric", "get_current_time_nanoseconds", "shared_data_get", "shared_data_cas")


def _pb_bytes(field_no: int, data: bytes) -> bytes:
    """One length-delimited protobuf field."""
    n, varint = len(data), bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        varint.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes([field_no << 3 | 2]) + bytes(varint) + data


def verify_signature_argument(alg: str) -> str:
    """Hex of the `VerifySignatureArguments { hash_function = 1; public_key = 2 (DER SPKI); signature = 3; text = 4 }`
    trustgate sends to Envoy's `verify_signature` for one JWS signing input (ES256: a DER ECDSA signature; RS256:
    RSA-2048 PKCS#1 v1.5), valid: bench/noop checks the answer is `result: true` before timing it."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    text = (b64url(json.dumps({"alg": alg, "kid": "bench"}).encode()) + "." +
            b64url(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "user-0", "exp": 2**31}).encode())).encode()
    if alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
        sig = key.sign(text, ec.ECDSA(hashes.SHA256()))
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sig = key.sign(text, padding.PKCS1v15(), hashes.SHA256())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return (_pb_bytes(1, b"sha256") + _pb_bytes(2, spki) + _pb_bytes(3, sig) + _pb_bytes(4, text)).hex()


# The host calls one trustgate request makes, and nothing else (bench/noop runs them in this order): the header
# map, the clock, (HMAC) one replay-slot read and compare-and-swap, the credential removed, the identity header
# added, the allow counter. trustgate/<x> minus calls/<x> is trustgate's own work inside Envoy (issue 16/17).
CALL_SEQUENCES = {
    "calls/jwt-same": "get_header_map_pairs 1;get_current_time_nanoseconds 1;remove_authorization 1;"
                      "add_header_map_value 1;increment_metric 1",
    "calls/hmac": "get_header_map_pairs 1;get_current_time_nanoseconds 1;shared_data_cas 1;"
                  "remove_authorization 1;add_header_map_value 1;increment_metric 1",
}


def hostcall_configs() -> dict[str, str]:
    """hostcall case name -> bench/noop configuration."""
    out = {f"hostcall/{c}": f"{c} {HOSTCALL_REPEAT}" for c in HOSTCALLS}
    for alg in ("ES256", "RS256"):
        out[f"hostcall/verify_signature-{alg}"] = f"verify_signature {HOSTCALL_REPEAT} {verify_signature_argument(alg)}"
    return out


# ============================================================================================ cases


@dataclass
class Case:
    name: str
    kind: str  # ceiling | noop | jwt_authn | trustgate | hostcall | calls
    alg: str | None = None
    mode: str | None = None  # same | unique | cached | uncached
    filters: Callable[[], list[dict]] = lambda: [ROUTER]
    identity_header: str = "x-commit-owner"
    expect_identity: str | None = None  # what the filter writes for the first request line
    requests: Callable[[], Path] | None = None  # the request file (made on first use)
    single_use: bool = False  # lines may never repeat within one Envoy (replay protection)
    build: str | None = None  # an --also build of trustgate (None: the build under test)
    notes: list[str] = field(default_factory=list)
    clusters: Callable[[], list[dict]] = lambda: []  # Envoy clusters the filter calls (the state store)
    before_run: Callable[[], None] | None = None  # before every run's Envoy starts (flush the state store)


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="trustgate-bench-"))
        self.workers = max(1, os.cpu_count() or 1)
        self.fastest: dict[str, float] = {}  # the fastest no-op-wasm and ceiling rates seen: size single-use files
        self.files: dict[str, Path] = {}
        self.file_lines: dict[Path, int] = {}
        self.checks: dict[str, str] = {}
        self.state = StateStore(self.workdir / "state")
        pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset")
        self.envoy_cpu, self.wrk_cpu = ("0", "1") if pin else (None, None)
        log(f"bench: keys, workdir {self.workdir}")
        # Envoy loads the wasm at every start: copies, so a rebuild during the bench cannot change what is measured
        self.wasm = self._copy(Path(args.wasm), "trustgate.wasm")
        self.noop_wasm = self._copy(Path(args.noop_wasm), "noop.wasm")
        # The no-op filter with trustgate's export set (make build trims trustgate's the same way).
        self.noop_trimmed = self._copy(Path(args.noop_wasm), "noop-trimmed.wasm")
        if not args.list:
            wasm_exports.trim(str(self.noop_trimmed))
        self.extra_wasm = {}
        for spec in args.also:
            name, _, path = spec.partition("=")
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not path:
                raise BenchError(f"--also {spec!r}: expected NAME=PATH (NAME: letters, digits, . _ -)")
            self.extra_wasm[name] = self._copy(Path(path), f"trustgate-{name}.wasm")
        self.jwt_keys = make_keys()
        self.signet = SignetKeys()
        self.dpop_key = make_dpop_key()
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        self.httpsig_raw = secrets.token_bytes(32)
        self.httpsig_pem = ed25519.Ed25519PrivateKey.from_private_bytes(self.httpsig_raw).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        # The identity assertion's signing key (issue 14): Ed25519, PKCS#8, as `trustgate keygen` writes it.
        self.assertion_pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        self.cases = self.make_cases()

    def _copy(self, src: Path, name: str) -> Path:
        if self.args.list:
            return src
        if not src.is_file():
            raise BenchError(f"{src} is missing")
        dst = self.workdir / name
        shutil.copyfile(src, dst)
        return dst

    # ---------------------------------------------------------------- request files, made on first use

    def _file(self, key: str, make: Callable[[], list[str]]) -> Path:
        if key not in self.files:
            t = time.monotonic()
            lines = make()
            path = write_lines(self.workdir / f"requests-{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.txt", lines)
            self.files[key], self.file_lines[path] = path, len(lines)
            log(f"  {key}: {len(lines):,} request lines in {time.monotonic() - t:.1f} s")
        return self.files[key]

    def single_use_count(self) -> int:
        """Enough single-use requests for one run at the fastest plausible rate (and the pre-check)."""
        rate = self.fastest.get("noop") or self.fastest.get("ceiling") or 30_000.0
        n = math.ceil(rate * 1.5 * (self.args.warmup + self.args.duration)) + PRECHECK_REQUESTS + 1000
        return max(5000, min(n, self.args.max_presigned))

    def jwt_file(self, alg: str, mode: str) -> Path:
        key = self.jwt_keys[alg]
        count = 1 if mode == "same" else self.args.unique_tokens
        return self._file(f"jwt-{alg}-{mode}", lambda: [request_line([("Authorization", f"Bearer {t}")])
                                                         for t in mint_jwts(key, count, self.workers)])

    def make_cases(self) -> list[Case]:
        a = self.args
        bearer_one = lambda alg: self.jwt_file(alg, "same")  # noqa: E731
        cases = [
            Case("ceiling", "ceiling", requests=lambda: bearer_one("ES256"),
                 notes=["no filter: the request carries an ES256 token nobody reads"]),
            Case("noop-wasm", "noop", filters=lambda: [wasm_filter("noop", self.noop_wasm, None), ROUTER],
                 requests=lambda: bearer_one("ES256")),
        ]
        if a.hostcalls:  # only the no-op filter's variants, against the no-op filter of the same rounds
            for name, config in hostcall_configs().items():
                cases.append(Case(name, "hostcall", filters=lambda config=config: [wasm_filter("noop", self.noop_wasm, config), ROUTER],
                                  requests=lambda: bearer_one("ES256")))
            return self.selected(cases)
        hmac_file = lambda: self._file("hmac", lambda: hmac_lines(self.single_use_count()))  # noqa: E731
        # The no-op filter fed the HMAC request lines (one new request per line, as wrk sends them for every
        # single-use case): what the load generator and Envoy cost for unique requests, without any filter work.
        cases.append(Case("noop-wasm/unique-lines", "calls", filters=lambda: [wasm_filter("noop", self.noop_wasm, None), ROUTER],
                          requests=hmac_file))
        for name, config in CALL_SEQUENCES.items():
            cases.append(Case(name, "calls", filters=lambda config=config: [wasm_filter("noop", self.noop_wasm, config), ROUTER],
                              requests=hmac_file if name == "calls/hmac" else lambda: bearer_one("ES256")))
        for name, config in (("noop-wasm/trimmed", None), ("calls/jwt-same+trimmed", CALL_SEQUENCES["calls/jwt-same"])):
            cases.append(Case(name, "calls", filters=lambda config=config: [wasm_filter("noop", self.noop_trimmed, config), ROUTER],
                              requests=lambda: bearer_one("ES256")))
        for alg in JWT_AUTHN_ALGS:
            for mode in ("uncached", "cached"):
                key = self.jwt_keys[alg]
                cases.append(Case(f"jwt_authn/{alg}/{mode}", "jwt_authn", alg, mode,
                                  filters=lambda key=key, mode=mode: [jwt_authn_filter(key, mode == "cached"), ROUTER],
                                  expect_identity="user-0", requests=lambda alg=alg: bearer_one(alg)))
        cases += self.trustgate_cases(None, self.wasm)
        for name, wasm in self.extra_wasm.items():
            cases += self.trustgate_cases(name, wasm)
        return self.selected(cases)

    def selected(self, cases: list[Case]) -> list[Case]:
        """The cases --cases names (an --also build's under the name without `@build`), and always the ceiling
        and the no-op filter."""
        if not self.args.cases:
            return cases
        rx = re.compile(self.args.cases)
        return [c for c in cases if rx.search(c.name.replace(f"@{c.build}", "") if c.build else c.name)
                or c.kind in ("ceiling", "noop")]

    def trustgate_cases(self, build: str | None, wasm: Path) -> list[Case]:
        """trustgate's cases for one build of the filter (`build` None: the build under test, else an `--also`
        build, named trustgate@<build>/...)."""
        prefix = f"trustgate@{build}" if build else "trustgate"
        cases = []

        def tg(provider: dict) -> Callable[[], list[dict]]:
            return lambda: [wasm_filter("trustgate", wasm, trustgate_config(provider)), ROUTER]

        for alg in JWT_ALGS:
            for mode in ("same", "unique"):
                cases.append(Case(f"{prefix}/{alg}/{mode}", "trustgate", alg, mode, build=build,
                                  filters=tg(trustgate_jwt_provider(self.jwt_keys[alg])), expect_identity="human:user-0",
                                  requests=lambda alg=alg, mode=mode: self.jwt_file(alg, mode)))
        if build is None:  # builds given with --also may predate assertions and DPoP
            cases += self.assertion_cases(wasm)
            cases.append(self.dpop_case(wasm))
        hmac_provider = {"hmac": {"clients": {HMAC_CLIENT: {"name": "Bench", "secret": HMAC_SECRET}},
                                  "timestamp_window_s": WINDOW_S, "body": "empty",
                                  "headers": {"x-client-id": "${client.id}"}}}
        cases.append(Case(f"{prefix}/hmac", "trustgate", "HMAC-SHA256", "unique", build=build, filters=tg(hmac_provider),
                          identity_header="x-client-id", expect_identity=HMAC_CLIENT, single_use=True,
                          requests=lambda: self._file("hmac", lambda: hmac_lines(self.single_use_count()))))
        if build is None:  # builds given with --also may predate the Redis state backend
            cases.append(self.hmac_redis_case(wasm, hmac_provider))
        signet_provider = {"signet": {"master_keys": {"bench": self.signet.master_public_hex},
                                      "purposes": [SIGNET_PURPOSE], "skew_s": WINDOW_S,
                                      "headers": {"x-agent-id": "agent:${signet.master}"}}}
        cases.append(Case(f"{prefix}/signet", "trustgate", "Ed25519", "unique", build=build, filters=tg(signet_provider),
                          identity_header="x-agent-id", expect_identity="agent:bench", single_use=True,
                          requests=lambda: self._file("signet", lambda: signet_lines(self.signet, self.single_use_count(), self.workers)),
                          notes=["one ephemeral key: the binding is verified once, then cached"]))

        def httpsig_file() -> list[str]:
            lines, note = httpsig_lines(self.httpsig_raw, self.single_use_count(), self.workers)
            self.checks["httpsig"] = note
            return lines

        httpsig_provider = {"http_signature": {"keys": {HTTPSIG_KEYID: {"alg": "ed25519", "pem": self.httpsig_pem}},
                                               "max_age_s": WINDOW_S, "headers": {"x-client-id": "${key.id}"}}}
        cases.append(Case(f"{prefix}/httpsig-ed25519", "trustgate", "ed25519", "unique", build=build,
                          filters=tg(httpsig_provider), identity_header="x-client-id", expect_identity=HTTPSIG_KEYID,
                          single_use=True, requests=lambda: self._file("httpsig", httpsig_file)))
        return cases

    def assertion_cases(self, wasm: Path) -> list[Case]:
        """ES256 tokens (the same one, or a new one per request) with an EdDSA identity assertion signed for the
        upstream: a caller's assertion is reused for a quarter of its lifetime, so "same" signs about once per
        15 s and "unique" (a new subject per token) signs on every request."""
        config = trustgate_config(trustgate_jwt_provider(self.jwt_keys["ES256"]))
        config["assertion"] = {"issuer": "https://gateway.bench.local", "audience": "bench", "ttl_s": 60,
                               "signing_key": {"alg": "EdDSA", "kid": "bench-1", "pem": self.assertion_pem},
                               "claims": {"sub": "${claims.sub}", "principal_type": "human"}}
        return [Case(f"trustgate/ES256/{mode}+assertion", "trustgate", "ES256", mode,
                     filters=lambda: [wasm_filter("trustgate", wasm, config), ROUTER], expect_identity="human:user-0",
                     requests=lambda mode=mode: self.jwt_file("ES256", mode),
                     notes=["an EdDSA identity assertion (x-trustgate-assertion) signed for the upstream"])
                for mode in ("same", "unique")]

    def hmac_redis_case(self, wasm: Path, hmac_provider: dict) -> Case:
        """trustgate/hmac with the replay store in Redis through webdis (issue 16): the same provider and request
        lines, the policy-wide `state.redis` on the `state` cluster. Redis is flushed before every run."""
        config = trustgate_config(hmac_provider)
        config["state"] = state_redis("state")

        def before_run() -> None:
            self.state.flush()
            self.checks["state"] = self.state.describe()

        return Case("trustgate/hmac+redis", "trustgate", "HMAC-SHA256", "unique", single_use=True,
                    filters=lambda: [wasm_filter("trustgate", wasm, config), ROUTER],
                    clusters=lambda: [static_cluster("state", self.state.ensure().webdis_port)],
                    before_run=before_run, identity_header="x-client-id", expect_identity=HMAC_CLIENT,
                    requests=lambda: self._file("hmac", lambda: hmac_lines(self.single_use_count())),
                    notes=["state.redis: one SET NX EX per request to webdis (the `state` cluster), the request "
                           "paused until it answers"])

    def dpop_case(self, wasm: Path) -> Case:
        """The same ES256 token, DPoP-bound, with a new ES256 proof per request (the token cache's case: only the
        proof is verified)."""
        provider = trustgate_jwt_provider(self.jwt_keys["ES256"])
        provider["jwt"]["dpop"] = {"algorithms": ["ES256"], "max_age_s": WINDOW_S}
        config = trustgate_config(provider)
        return Case("trustgate/ES256/same+dpop", "trustgate", "ES256", "same", single_use=True,
                    filters=lambda: [wasm_filter("trustgate", wasm, config), ROUTER], expect_identity="human:user-0",
                    requests=lambda: self._file("dpop", lambda: dpop_lines(self.jwt_keys["ES256"], self.dpop_key,
                                                                          self.single_use_count(), self.workers)),
                    notes=["Authorization: DPoP, one token (cnf.jkt), a new ES256 proof (unique jti) per request"])

    # ---------------------------------------------------------------- one run

    def precheck(self, case: Case, env: Envoy, lines: list[str]) -> None:
        for i, line in enumerate(lines):
            headers = parse_request(line)
            status, hdrs, body = http_get(env.port, headers)
            if status != 200:
                raise BenchError(f"pre-check request {i}: HTTP {status} (expected 200), "
                                 f"x-trustgate-reason={hdrs.get('x-trustgate-reason')!r}, body={body[:200]!r}")
            if i == 0 and case.expect_identity is not None and hdrs.get("x-bench-identity") != case.expect_identity:
                raise BenchError(f"pre-check: the filter wrote {case.identity_header}={hdrs.get('x-bench-identity')!r}, "
                                 f"expected {case.expect_identity!r}")
        if case.kind in ("jwt_authn", "trustgate"):
            status, hdrs, _ = http_get(env.port, [("Host", HOST)])
            if status != 401:
                raise BenchError(f"pre-check: a request without a credential got HTTP {status}, expected 401 "
                                 "(is the filter enforcing anything?)")

    def run_case(self, case: Case, round_no: int) -> dict:
        a = self.args
        result: dict = {"round": round_no, "ok": False, "loadavg_1m": loadavg()}
        env = None
        try:
            reqfile = case.requests() if case.requests else None
            assert reqfile is not None
            n_lines = self.file_lines[reqfile]
            lines = first_requests(reqfile, PRECHECK_REQUESTS)
            filters = case.filters()
            clusters = case.clusters()
            if case.before_run is not None:
                case.before_run()
            env = Envoy(a.envoy, lambda p, ap: envoy_yaml(p, ap, filters, case.identity_header, clusters),
                        self.workdir, f"{case.name}-r{round_no}", self.envoy_cpu)
            env.wait_ready()
            result["startup_s"] = round(env.startup_s, 2)
            self.precheck(case, env, lines)
            # the pre-check sent these: start after them (single-use requests must not be sent again)
            start = sum(len(r.encode()) for r in lines) % reqfile.stat().st_size
            warm = run_wrk(a, env.port, reqfile, start, a.warmup, self.wrk_cpu) if a.warmup > 0 else None
            cpu_before = env.cpu_s()
            meas = run_wrk(a, env.port, reqfile, warm["offset"] if warm else start, a.duration, self.wrk_cpu)
            cpu_after = env.cpu_s()
            result["rss_kib"] = env.rss_kib()
            # Envoy's CPU time per request: less sensitive than req/s to other load on a shared machine
            if cpu_before is not None and cpu_after is not None and meas["requests"]:
                result["cpu_us_per_req"] = round((cpu_after - cpu_before) * 1e6 / meas["requests"], 2)
            if env.proc.poll() is not None:
                raise BenchError(f"Envoy exited during the run:\n{env.log_tail()}")
            result.update({k: meas[k] for k in ("rps", "requests", "non2xx", "p50_us", "p90_us", "p99_us", "mean_us",
                                                "max_us", "connect_errors", "read_errors", "write_errors", "timeouts")})
            result["rps"] = round(meas["rps"], 1)
            result["warmup_requests"] = warm["requests"] if warm else 0
            # request() calls, one more per wrk than sent (wrk checks the script with one call)
            sent = len(lines) + (warm["sent"] - 1 if warm else 0) + meas["sent"] - 1
            repeats = (warm["wraps"] if warm else 0) + meas["wraps"]
            if case.single_use and sent > n_lines:
                repeats = max(repeats, 1)
            result["lines"], result["lines_wrapped"] = n_lines, repeats
            if case.single_use and repeats:
                raise BenchError(f"ran out of single-use requests ({n_lines:,} lines, about {sent:,} sent, so some "
                                 f"were replays): raise --max-presigned or lower --duration")
            for label, r in (("warm-up", warm), ("measured run", meas)):
                if r is None:
                    continue
                bad = r["non2xx"] + r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
                if r["requests"] == 0:
                    raise BenchError(f"{label}: no request completed")
                if bad > MAX_BAD_FRACTION * r["requests"]:
                    denies = env.deny_stats()
                    raise BenchError(
                        f"{label}: {r['non2xx']:,} non-2xx responses and {bad - r['non2xx']:,} socket errors out of "
                        f"{r['requests']:,} requests (more than {MAX_BAD_FRACTION:.1%}): not measuring successes"
                        + (f"; {denies}" if denies else ""))
            if case.before_run is not None:  # the state store: the nonces are there
                accepted = sum(r["requests"] - r["non2xx"] for r in (warm, meas) if r) + len(lines)
                result["state_keys"] = self.state.check_keys(accepted)
            result["ok"] = True
        except BenchError as e:
            result["error"] = str(e)
        except Exception as e:  # noqa: BLE001 — a bench bug in one case must not hide the others
            result["error"] = f"{type(e).__name__}: {e}"
        finally:
            if env is not None:
                env.stop()
        if result["ok"] and case.kind in ("ceiling", "noop"):
            self.fastest[case.kind] = max(self.fastest.get(case.kind, 0.0), result["rps"])
        return result

    # ---------------------------------------------------------------- all rounds

    def run(self) -> dict:
        a = self.args
        runs: dict[str, list[dict]] = {c.name: [] for c in self.cases}
        t0 = time.monotonic()
        for r in range(1, a.rounds + 1):
            log(f"round {r}/{a.rounds}")
            for case in self.cases:
                res = self.run_case(case, r)
                runs[case.name].append(res)
                if res["ok"]:
                    rss = f"{res['rss_kib'] / 1024:.1f} MiB" if res.get("rss_kib") else "?"
                    wrap = f", {res['lines_wrapped']} wrap(s) of {res['lines']:,} tokens" if res["lines_wrapped"] and res["lines"] > 1 else ""
                    log(f"  {case.name:28s} {res['rps']:>9,.0f} req/s  p50 {res['p50_us'] / 1000:6.2f} ms  "
                        f"p99 {res['p99_us'] / 1000:6.2f} ms  rss {rss}  (start {res['startup_s']} s{wrap})")
                else:
                    log(f"  {case.name:28s} FAILED: {res['error']}")
            log(f"  ({time.monotonic() - t0:.0f} s so far)")
        return runs


# ============================================================================================ report


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(bench: Bench, runs: dict[str, list[dict]]) -> dict:
    cases = {}
    for c in bench.cases:
        ok = [r for r in runs[c.name] if r["ok"]]
        cases[c.name] = {
            "kind": c.kind, "alg": c.alg, "mode": c.mode, "build": c.build,
            "rounds_ok": len(ok), "rounds": len(runs[c.name]),
            "rps": median([r["rps"] for r in ok]),
            "rps_min": min((r["rps"] for r in ok), default=None), "rps_max": max((r["rps"] for r in ok), default=None),
            "p50_ms": median([r["p50_us"] / 1000 for r in ok]),
            "p99_ms": median([r["p99_us"] / 1000 for r in ok]),
            "cpu_us": median([r["cpu_us_per_req"] for r in ok if r.get("cpu_us_per_req")]),
            "rss_mib": median([r["rss_kib"] / 1024 for r in ok if r.get("rss_kib")]),
            "rss_mib_max": max((r["rss_kib"] / 1024 for r in ok if r.get("rss_kib")), default=None),
            "errors": [f"round {r['round']}: {r['error']}" for r in runs[c.name] if not r["ok"]],
            "unique_lines": max((r.get("lines", 0) for r in ok), default=None),
            "lines_wrapped": max((r.get("lines_wrapped", 0) for r in ok), default=None),
            "notes": c.notes,
            "runs": runs[c.name],
        }

    def rps(name: str) -> float | None:
        return cases.get(name, {}).get("rps")

    def ratio(x: float | None, y: float | None) -> float | None:
        return round(x / y, 3) if x and y else None

    noop = rps("noop-wasm")
    for name, c in cases.items():
        if c["kind"] == "hostcall" and c["rps"] and noop:
            c["us_per_call"] = round((1e6 / c["rps"] - 1e6 / noop) / HOSTCALL_REPEAT, 3)
        if c["kind"] in ("calls", "trustgate") and c["rps"] and noop:
            c["us_over_noop"] = round(1e6 / c["rps"] - 1e6 / noop, 2)
        noop_cpu = cases.get("noop-wasm", {}).get("cpu_us")
        if c["kind"] in ("calls", "trustgate") and c.get("cpu_us") and noop_cpu:
            c["cpu_us_over_noop"] = round(c["cpu_us"] - noop_cpu, 2)
        c["x_noop"] = ratio(c["rps"], noop) if c["kind"] != "noop" else None
        c["x_ceiling"] = ratio(c["rps"], rps("ceiling")) if c["kind"] != "ceiling" else None
        if c["kind"] == "trustgate" and c["alg"] in JWT_AUTHN_ALGS:
            c["x_jwt_authn_cached"] = ratio(c["rps"], rps(f"jwt_authn/{c['alg']}/cached"))
            c["x_jwt_authn_uncached"] = ratio(c["rps"], rps(f"jwt_authn/{c['alg']}/uncached"))

    targets = []

    def target(what: str, value: float | None, threshold: float) -> None:
        targets.append({"target": what, "value": value, "threshold": threshold,
                        "met": None if value is None else value >= threshold})

    for alg in JWT_ALGS:
        c = cases.get(f"trustgate/{alg}/same")
        if not c:
            continue
        if alg in JWT_AUTHN_ALGS:
            target(f"{alg} same token ≥ 0.95 × jwt_authn cached", c.get("x_jwt_authn_cached"), 0.95)
        target(f"{alg} same token ≥ 0.9 × no-op wasm", c["x_noop"], 0.9)
        if alg in JWT_AUTHN_ALGS:
            target(f"{alg} same token ≥ 2 × jwt_authn uncached", c.get("x_jwt_authn_uncached"), 2.0)
    for alg, th in (("RS256", 1.0), ("ES256", 1.0), ("EdDSA", 0.9)):
        c = cases.get(f"trustgate/{alg}/unique")
        if c:
            target(f"{alg} new token per request ≥ {th:g} × jwt_authn uncached", c.get("x_jwt_authn_uncached"), th)
    dpop = cases.get("trustgate/ES256/same+dpop")
    if dpop and dpop.get("rps"):
        dpop["x_same_without_dpop"] = ratio(dpop["rps"], rps("trustgate/ES256/same"))
    plus = cases.get("trustgate/ES256/same+assertion")
    if plus:
        plus["x_same_without_assertion"] = ratio(plus["rps"], rps("trustgate/ES256/same"))
        target("same token + assertion ≥ 0.75 × no-op wasm", plus["x_noop"], 0.75)
    fresh = cases.get("trustgate/ES256/unique+assertion")
    if fresh:
        fresh["x_unique_without_assertion"] = ratio(fresh["rps"], rps("trustgate/ES256/unique"))
    if "trustgate/hmac" in cases:
        target("gatekeeper HMAC ≥ 0.8 × no-op wasm", cases["trustgate/hmac"]["x_noop"], 0.8)
    redis = cases.get("trustgate/hmac+redis")
    if redis:
        redis["x_hmac_local"] = ratio(redis["rps"], rps("trustgate/hmac"))
    if "trustgate/signet" in cases:
        target("Signet (cached binding) ≥ 0.5 × no-op wasm", cases["trustgate/signet"]["x_noop"], 0.5)
    wasm_size = bench.wasm.stat().st_size
    targets.append({"target": ".wasm under 1.5 MiB", "value": round(wasm_size / 2**20, 3), "threshold": 1.5,
                    "met": wasm_size < 1.5 * 2**20})
    return {"cases": cases, "targets": targets, "wasm_bytes": wasm_size}


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return ""


def built_from(head: str) -> str:
    """What the wasm under test was built from, for the report (`head`: the commit checked out)."""
    dirty = git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock", ".cargo")
    return f"built from the working tree at {head[:12]}" + (
        " with uncommitted changes in src/, Cargo.* or .cargo/" if dirty else " (clean)")


def stop_all() -> None:
    """Stops every process this script started (RUNNING)."""
    for p in list(RUNNING):
        stop_process(p, grace=3)


def stop_on_signals(workdir: Path) -> None:
    """On SIGINT or SIGTERM: stop every process this script started, remove `workdir`, exit 128 + the signal."""
    def on_signal(signum, _frame):
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def machine(envoy: str) -> dict:
    cpu = ""
    try:
        m = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else platform.processor()
    except OSError:
        cpu = platform.processor()
    mem = ""
    try:
        m = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem = f"{int(m.group(1)) / 2**20:.1f} GiB" if m else ""
    except OSError:
        pass
    ver = subprocess.run([envoy, "--version"], capture_output=True, text=True, timeout=60)
    m = re.search(r"version:\s*(\S+)", ver.stdout + ver.stderr)
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=30)
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "memory": mem, "kernel": platform.release(),
        "envoy": m.group(1) if m else (ver.stdout + ver.stderr).strip(),
        "wrk": (wrk.stdout + wrk.stderr).splitlines()[0].strip() if (wrk.stdout + wrk.stderr) else "",
        "python": platform.python_version(),
    }


def fmt(x: float | None, spec: str, suffix: str = "") -> str:
    return "—" if x is None else f"{x:{spec}}{suffix}"


LABELS = {
    "ceiling": "Envoy, no filter (ceiling)",
    "noop-wasm": "no-op wasm filter",
}


def label(name: str, c: dict) -> str:
    m = re.match(r"trustgate@([^/]+)(/.*)$", name)
    if m:
        return f"[{m.group(1)}] " + label("trustgate" + m.group(2), c)
    if name in LABELS:
        return LABELS[name]
    if c["kind"] == "hostcall":
        return f"no-op wasm filter + {HOSTCALL_REPEAT} × `{name.split('/', 1)[1]}`"
    if c["kind"] == "calls":
        if name == "noop-wasm/unique-lines":
            return "no-op wasm filter, the HMAC request lines (a new request each time)"
        if name == "noop-wasm/trimmed":
            return "no-op wasm filter exporting trustgate's callbacks only"
        what = {"calls/jwt-same": "a same-token JWT request", "calls/hmac": "a gatekeeper HMAC request",
                "calls/jwt-same+trimmed": "a same-token JWT request, exporting trustgate's callbacks only"}
        return f"no-op wasm filter + the host calls of {what.get(name, name)}"
    if c["kind"] == "jwt_authn":
        return f"jwt_authn {c['alg']}, {'jwt_cache_config' if c['mode'] == 'cached' else 'no cache (default)'}"
    if name == "trustgate/hmac":
        return "trustgate gatekeeper HMAC, unique nonces"
    if name == "trustgate/hmac+redis":
        return "trustgate gatekeeper HMAC, unique nonces, replay store in Redis (webdis)"
    if name == "trustgate/signet":
        return "trustgate Signet, unique jti, one binding"
    if name == "trustgate/httpsig-ed25519":
        return "trustgate RFC 9421 ed25519, unique nonces"
    extra = {"+assertion": " + identity assertion (EdDSA)", "+dpop": ", DPoP proof per request"}
    suffix = next((v for k, v in extra.items() if name.endswith(k)), "")
    return f"trustgate {c['alg']}, {'same token' if c['mode'] == 'same' else 'new token per request'}{suffix}"


def markdown(report: dict) -> str:
    s, m, cfg = report["summary"], report["machine"], report["settings"]
    lines = [
        f"- Run {report['date']} on {m['nproc']} × {m['cpu']} ({m['memory']}, Linux {m['kernel']}), Envoy {m['envoy']}, "
        f"{m['wrk']}.",
        f"- trustgate: {report['source']}; `trustgate.wasm` {s['wasm_bytes']:,} bytes "
        f"({s['wasm_bytes'] / 2**20:.2f} MiB), sha256 `{report['wasm_sha256'][:16]}…`.",
        f"- Load: `wrk -t{cfg['threads']} -c{cfg['connections']} -d{cfg['duration_s']:g}s --latency` after a "
        f"{cfg['warmup_s']:g} s warm-up, {cfg['rounds']} interleaved round(s), medians; Envoy `--concurrency 1`"
        f"{' pinned to CPU 0, wrk to CPU 1' if cfg['pinned'] else ''}. Total {report['elapsed_s'] / 60:.1f} min.",
    ]
    for n, info in report.get("also", {}).items():
        lines.append(f"- Also measured, interleaved in the same rounds: **[{n}]** `{info['wasm']}` ({info['bytes']:,} bytes).")
    lines += [
        "",
        "| case | req/s | range | p50 ms | p99 ms | × no-op | × jwt_authn cached | × jwt_authn uncached | Envoy RSS MiB "
        "| Envoy CPU µs/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in s["cases"].items():
        if c["rounds_ok"] == 0:
            lines.append(f"| {label(name, c)} | **failed** | | | | | | | | |")
            continue
        rng = f"{c['rps_min']:,.0f}–{c['rps_max']:,.0f}" if c["rounds_ok"] > 1 else ""
        failed = f" ({c['rounds'] - c['rounds_ok']} failed)" if c["rounds_ok"] < c["rounds"] else ""
        lines.append(
            f"| {label(name, c)}{failed} | {c['rps']:,.0f} | {rng} | {fmt(c['p50_ms'], '.2f')} | {fmt(c['p99_ms'], '.2f')} | "
            f"{fmt(c.get('x_noop'), '.2f')} | {fmt(c.get('x_jwt_authn_cached'), '.2f')} | "
            f"{fmt(c.get('x_jwt_authn_uncached'), '.2f')} | {fmt(c['rss_mib'], '.1f')} | {fmt(c.get('cpu_us'), '.1f')} |")
    hostcalls = [(n, c) for n, c in s["cases"].items() if c["kind"] == "hostcall"]
    if hostcalls:
        lines += ["", f"| host call (bench/noop, {HOSTCALL_REPEAT} calls per request) | µs per call |", "|---|---:|"]
        lines += [f"| `{n.split('/', 1)[1]}` | {fmt(c.get('us_per_call'), '.2f')} |" for n, c in hostcalls]
        return "\n".join(lines) + "\n"
    lines += ["", "| target (issue 6) | measured | met |", "|---|---:|---|"]
    for t in s["targets"]:
        met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
        unit = " MiB" if t["target"].startswith(".wasm") else " ×"
        lines.append(f"| {t['target']} | {fmt(t['value'], '.2f', unit)} | {met} |")
    errors = [(n, e) for n, c in s["cases"].items() for e in c["errors"]]
    wrapped = [(n, c) for n, c in s["cases"].items() if c.get("lines_wrapped") and (c.get("unique_lines") or 0) > 1]
    redis_ratio = (s["cases"].get("trustgate/hmac+redis") or {}).get("x_hmac_local")
    if wrapped or errors or report.get("checks") or redis_ratio:
        lines.append("")
    for n, c in wrapped:
        lines.append(f"- {n}: the {c['unique_lines']:,} pre-minted tokens were cycled ({c['lines_wrapped']} wrap(s)).")
    if redis_ratio:
        lines.append(f"- trustgate/hmac+redis: {redis_ratio:.2f} × trustgate/hmac (the local replay store) in the same "
                     "rounds.")
    for k, v in report.get("checks", {}).items():
        lines.append(f"- {k}: {v}")
    for n, e in errors:
        first = e.splitlines()[0]
        lines.append(f"- **{n} failed**, {first}")
    return "\n".join(lines) + "\n"


def update_benchmarks_md(table: str) -> bool:
    path = REPO / "BENCHMARKS.md"
    if not path.exists():
        return False
    text = path.read_text()
    if MARK_START not in text or MARK_END not in text:
        return False
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    path.write_text(f"{head}{MARK_START}\n{table}{MARK_END}{tail}")
    return True


# ============================================================================================ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round, 3 s, 1 s warm-up (a smoke run)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3)")
    ap.add_argument("--duration", type=float, default=None, help="measured seconds per run (8)")
    ap.add_argument("--warmup", type=float, default=None, help="warm-up seconds per run, same Envoy (1)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (keep 1: single-use requests are not sharded)")
    ap.add_argument("--unique-tokens", type=int, default=50_000, help="pre-minted tokens per algorithm, cycled (50000)")
    ap.add_argument("--max-presigned", type=int, default=600_000, help="cap on single-use requests per provider")
    ap.add_argument("--cases", default=None, help="regex over case names (ceiling and noop-wasm always run)")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    ap.add_argument("--wasm", default=os.environ.get("TRUSTGATE_WASM", str(DEFAULT_WASM)))
    ap.add_argument("--noop-wasm", default=str(DEFAULT_NOOP))
    ap.add_argument("--also", action="append", default=[], metavar="NAME=WASM",
                    help="run trustgate's cases for another build too, interleaved (before/after a change); repeatable")
    ap.add_argument("--envoy", default=os.environ.get("ENVOY") or str(REPO / ".venv" / "bin" / "envoy"))
    ap.add_argument("--source", default=None, help="what the wasm was built from (default: git HEAD and tree state)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin Envoy and wrk to separate CPUs")
    ap.add_argument("--out", default=None, help="results JSON (bench/results.json; --quick: bench/results-quick.json)")
    ap.add_argument("--no-update", action="store_true", help="leave BENCHMARKS.md alone")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs, request files)")
    ap.add_argument("--hostcalls", action="store_true",
                    help="only the no-op filter and its host-call variants: µs per call, bench/hostcalls.{json,md}")
    a = ap.parse_args()
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.duration = a.duration if a.duration is not None else (3.0 if a.quick else 8.0)
    a.warmup = a.warmup if a.warmup is not None else 1.0
    if a.threads != 1:
        ap.error("--threads must be 1 (single-use requests are read in order by one wrk thread)")

    if not a.list:
        problems = []
        if not shutil.which("wrk"):
            problems.append("wrk not found: apt-get install -y wrk (`make bench` installs it when run as root)")
        if not (shutil.which(a.envoy) or Path(a.envoy).is_file()):
            problems.append(f"Envoy not found at {a.envoy}: run `make deps`, or set ENVOY=/path/to/envoy")
        for p, what in ((a.wasm, "make build"), (a.noop_wasm, "make bench builds it")):
            if not Path(p).is_file():
                problems.append(f"{p} is missing ({what})")
        if problems:
            log("bench: cannot run:\n  " + "\n  ".join(problems))
            return 2

    head = git("rev-parse", "HEAD")
    source = a.source or built_from(head)
    try:
        bench = Bench(a)
    except BenchError as e:
        log(f"bench: cannot run: {e}")
        return 2
    if a.list:
        print("\n".join(c.name for c in bench.cases))
        shutil.rmtree(bench.workdir, ignore_errors=True)
        return 0

    stop_on_signals(bench.workdir)

    t0 = time.monotonic()
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        bench.checks["hmac"] = check_hmac_against_reference()
        log(f"bench: {len(bench.cases)} cases × {a.rounds} round(s) × ({a.warmup:g} s warm-up + {a.duration:g} s), "
            f"wrk -t{a.threads} -c{a.connections}; pinning: "
            f"{'Envoy CPU ' + bench.envoy_cpu + ', wrk CPU ' + bench.wrk_cpu if bench.envoy_cpu else 'off'}")
        runs = bench.run()
    finally:
        stop_all()
        # The report below reads the wasm copies in the work directory: remove it only at exit.
        if a.keep:
            log(f"bench: work directory kept: {bench.workdir}")
        else:
            atexit.register(shutil.rmtree, bench.workdir, ignore_errors=True)

    report = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "git_head": head,
        "source": source,
        "wasm": str(a.wasm),
        "wasm_sha256": hashlib.sha256(bench.wasm.read_bytes()).hexdigest(),
        "noop_wasm_bytes": bench.noop_wasm.stat().st_size,
        "also": {n: {"wasm": dict(s.partition("=")[::2] for s in a.also)[n], "bytes": p.stat().st_size,
                     "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for n, p in bench.extra_wasm.items()},
        "machine": machine(a.envoy),
        "settings": {"rounds": a.rounds, "duration_s": a.duration, "warmup_s": a.warmup, "connections": a.connections,
                     "threads": a.threads, "unique_tokens": a.unique_tokens, "pinned": bench.envoy_cpu is not None,
                     "quick": a.quick, "cases": a.cases, "hostcalls": a.hostcalls},
        "checks": bench.checks,
        "elapsed_s": round(time.monotonic() - t0, 1),
    }
    report["summary"] = summarize(bench, runs)
    table = markdown(report)
    default_out = "hostcalls.json" if a.hostcalls else "results-quick.json" if a.quick else "results.json"
    out = Path(a.out) if a.out else BENCH / default_out
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    out.with_suffix(".md").write_text(table)
    print(table)
    log(f"bench: wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out} and its .md")
    if not a.quick and not a.no_update and not a.cases and not a.hostcalls:
        if update_benchmarks_md(table):
            log("bench: updated the results section of BENCHMARKS.md")
        else:
            log("bench: BENCHMARKS.md has no bench:results markers: not updated")
    failed = {n: c["errors"] for n, c in report["summary"]["cases"].items() if c["errors"]}
    if failed:
        log(f"bench: FAILED runs in {len(failed)} case(s):")
        for n, errs in failed.items():
            for e in errs:
                log(f"  {n}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
