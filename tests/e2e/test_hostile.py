"""The hostile-input corpus (issue 7), end to end: a real Envoy 1.40 (V8, `--concurrency 2`) with trustgate.wasm
in front of the recording upstream, and a JWKS server the test controls for the hostile key sets.

Every case runs over HTTP/1.1 and over HTTP/2 (h2c with prior knowledge to the same listener: codec_type AUTO
detects the preface), sent byte-exact by `trustgate_e2e.h1_request` / `h2_request`, and asserts the status AND
what the upstream saw: exactly the expected identity headers, no forged value, no credential, or nothing at all.
When Envoy's own codec refuses a request before the filter runs (a malformed HTTP/2 header, a 64 KiB header),
the case says so (`envoy(status)` / `RESET`) and still asserts that nothing reached the upstream.

Groups: forged identity headers (case, duplicates, whitespace, invalid UTF-8, 40 KiB, 90 copies, underscores)
on public, allowed and denied routes; control characters in claims that templates use; duplicate and odd
`Authorization`; 64 KiB headers; invalid UTF-8 in headers, paths and tokens; `alg: none`; algorithm confusion
(HS256 keyed with the RSA public key as PEM, DER, JWK bytes); embedded `jwk`/`jku`; JWKS with duplicate kids,
huge `n` / `e`, wrong `crv`, nested 10,000 deep; tokens nested 10,000 deep; path tricks against path rules.

Path tricks use two policies in one config, chosen by host: `localhost` is an allow-list (only `/healthz` and
`/public/` are public, everything else needs a token) and `open.test` a deny-list (only `/admin` needs a
token). A request that was forwarded without a credential must be public under every way an upstream might
read its path (`UPSTREAM_READINGS`: RFC 3986 dot-segment removal with and without merging slashes, decoding
every escape, Tomcat-style `;` path parameters), so no path that reaches a protected upstream route can
match a public rule (README, "How rules match paths").

The last tests assert that no request got a 5xx other than the documented 503 `keys_unavailable`, and that
Envoy's log shows no wasm panic or trap. Every wrong decision the corpus found is fixed; its cases are the regression tests.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable

import pytest

import trustgate_e2e as h
from jwks_server import JwksServer
from trustgate_e2e import b64url

OWNER = "x-commit-owner"
EMAIL = "x-user-email"
ROLES = "x-user-roles"
META = "x-user-meta"
MALLORY = "mallory"  # every forged value contains it; no legitimate value does
OPEN_HOST = "open.test"
CLUSTER = "jwks"
AUTHORITY = "idp.test"
PROTOCOLS = list(h.PROTOCOLS)  # http1, http2
RESET = "reset"  # Envoy reset the HTTP/2 stream (or connection) instead of answering

# The names trustgate must strip: the strip list plus every header a provider writes.
IDENTITY = sorted(set(h.STRIP_HEADERS) | {OWNER, EMAIL, ROLES, META})

def bearer(token: str) -> tuple[str, str]:
    """Lower-case name: an upper-case one is malformed in HTTP/2 (Envoy drops the connection)."""
    return ("authorization", f"Bearer {token}")


RSA_PUB_PEM = (h.REPO / "tests" / "data" / "rsa2048.TEST-ONLY.pub.pem").read_bytes()
RSA_KEY_PEM = (h.REPO / "tests" / "data" / "rsa2048.TEST-ONLY.key.pem").read_bytes()

REMOTE = ("dupkid", "hugen", "crv", "deep")


# ============================================================================================ keys and config


@dataclass
class Ctx:
    """Keys, tokens and helpers the case builders use (made once per module)."""

    es: h.SigningKey
    es_other: h.SigningKey  # same kid as `es`, another key: bad signatures
    rs: h.SigningKey
    pem_private: object
    mixed_rsa: h.SigningKey
    mixed_hs: h.SigningKey
    remote: dict[str, h.SigningKey]

    def valid(self, **claims) -> str:
        return h.mint(self.es, h.claims(**claims))

    def bad_sig(self) -> str:
        return h.mint(self.es_other, h.claims())


def _rsa_jwk(key: h.SigningKey, kid: str, alg: str | None) -> dict:
    jwk = {k: v for k, v in key.jwk.items() if k not in ("alg", "kid", "use")}
    jwk["kid"] = kid
    if alg:
        jwk["alg"] = alg
    return jwk


def make_ctx() -> Ctx:
    from cryptography.hazmat.primitives import serialization

    es = h.generate_key("ES256", "es-1")
    es_other = h.generate_key("ES256", "es-1")
    rs = h.generate_key("RS256", "rs-1")
    mixed_rsa = h.generate_key("RS256", "mixed-rsa")
    mixed_hs = h.generate_key("HS256", "mixed-hs")
    pem_private = serialization.load_pem_private_key(RSA_KEY_PEM, password=None)
    remote = {
        "dup-a": h.generate_key("ES256", "dup"),
        "dup-b": h.generate_key("ES256", "dup"),
        "dup-c": h.generate_key("ES256", "dup"),  # not published
        "hugen-good": h.generate_key("ES256", "hugen-good"),
        "crv-good": h.generate_key("ES256", "crv-good"),
        "crv-p256": h.generate_key("ES256", "crv-p384"),  # P-256 key published as crv P-384
        "crv-ed": h.generate_key("EdDSA", "crv-x25519"),  # Ed25519 key published as OKP X25519
        "deep-1": h.generate_key("ES256", "deep-1"),
    }
    return Ctx(es, es_other, rs, pem_private, mixed_rsa, mixed_hs, remote)


def jwt_provider(keys: dict, algorithms: list[str] | None = None, headers: dict | None = None) -> dict:
    p = {
        "issuer": h.ISSUER,
        "audiences": [h.AUDIENCE],
        "keys": keys,
        "headers": headers or {OWNER: h.OWNER_TEMPLATE},
    }
    if algorithms:
        p["algorithms"] = algorithms
    return {"jwt": p}


def remote_keys(name: str, **extra) -> dict:
    return {"remote": {"cluster": CLUSTER, "authority": AUTHORITY, "path": f"/{name}/jwks.json", "min_refresh_s": 300, **extra}}


def filter_config(ctx: Ctx) -> dict:
    providers = {
        "es": jwt_provider(
            {"jwks": {"keys": [ctx.es.jwk]}},
            ["ES256"],
            {OWNER: h.OWNER_TEMPLATE, EMAIL: "${claims.email:-}", ROLES: "${claims.roles:-}", META: "${claims.meta:-}"},
        ),
        # algorithms not listed: whatever fits the key (the JWK's own alg pins RS256)
        "rs": jwt_provider({"jwks": {"keys": [_rsa_jwk(ctx.rs, "rs-1", "RS256")]}}),
        "pem": jwt_provider({"pem": RSA_PUB_PEM.decode()}),
        # an RSA key and an HMAC key side by side, both algorithms allowed: the classic confusion setup
        "mixed": jwt_provider(
            {"jwks": {"keys": [_rsa_jwk(ctx.mixed_rsa, "mixed-rsa", None), ctx.mixed_hs.jwk]}}, ["RS256", "HS256"]
        ),
        "dupkid": jwt_provider(remote_keys("dupkid")),
        "hugen": jwt_provider(remote_keys("hugen")),
        "crv": jwt_provider(remote_keys("crv")),
        "deep": jwt_provider(remote_keys("deep", startup_wait_ms=200)),
    }
    rules = [
        # deny-list policy on open.test: only /admin needs a token
        {"name": "open-admin", "match": {"host": OPEN_HOST, "path_prefix": "/admin/"}, "require": "es"},
        {"name": "open-admin-root", "match": {"host": OPEN_HOST, "path": "/admin"}, "require": "es"},
        {"name": "open-rest", "match": {"host": OPEN_HOST}, "allow": "public"},
        # allow-list policy everywhere else
        {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
        {"name": "public", "match": {"path_prefix": "/public/"}, "allow": "public"},
    ]
    rules += [{"name": p, "match": {"path_prefix": f"/{p}/"}, "require": p} for p in providers]
    rules.append({"name": "default", "match": {}, "require": "es"})
    return {"providers": providers, "strip_headers": h.STRIP_HEADERS, "rules": rules}


# ------------------------------------------------------------------------------------------ hostile key sets


def _p256_jwk_as(key: h.SigningKey, kid: str, **over) -> dict:
    jwk = {k: v for k, v in key.jwk.items() if k not in ("alg", "use")}
    jwk.update(kid=kid, **over)
    return jwk


def hostile_jwks(ctx: Ctx) -> dict[str, bytes]:
    """Path -> JWKS body served by the test's JWKS server."""
    r = ctx.remote
    huge_n = b64url(b"\xc3" + os.urandom(300 * 1024 - 1))  # a 2.4-million-bit "modulus" (about 400 KiB of JSON)
    rsa16k_n = b64url(b"\xff" * 2048 + b"\x01")  # 16,392 bits: over the 8192-bit cap
    ed_x = r["crv-ed"].jwk["x"]
    p256 = r["crv-p256"].jwk
    docs = {
        "dupkid": {"keys": [r["dup-a"].jwk, r["dup-b"].jwk]},
        "hugen": {
            "keys": [
                {"kty": "RSA", "kid": "huge-n", "n": huge_n, "e": "AQAB"},
                {"kty": "RSA", "kid": "n-16k", "n": rsa16k_n, "e": "AQAB"},
                {"kty": "RSA", "kid": "huge-e", "n": _rsa_jwk(ctx.rs, "x", None)["n"], "e": b64url(b"\x01" * 65536)},
                r["hugen-good"].jwk,
            ]
        },
        "crv": {
            "keys": [
                _p256_jwk_as(r["crv-p256"], "crv-p384", crv="P-384"),
                _p256_jwk_as(r["crv-p256"], "crv-p521", crv="P-521"),
                {"kty": "EC", "crv": "Ed25519", "kid": "crv-ec-ed", "x": p256["x"], "y": p256["y"]},
                {"kty": "OKP", "crv": "X25519", "kid": "crv-x25519", "x": ed_x},
                {"kty": "OKP", "crv": "P-256", "kid": "crv-okp-p256", "x": ed_x},
                {"kty": "EC", "crv": "P-256", "kid": "crv-swapped", "x": p256["y"], "y": p256["x"]},
                r["crv-good"].jwk,
            ]
        },
    }
    out = {f"/{k}/jwks.json": json.dumps(v).encode() for k, v in docs.items()}
    # A good key set, plus a member nested 10,000 levels deep: the whole document must be refused, not crash.
    deep = json.dumps({"keys": [r["deep-1"].jwk]})[:-1] + ', "x": ' + "[" * 10_000 + "]" * 10_000 + "}"
    out["/deep/jwks.json"] = deep.encode()
    return out


# ============================================================================================ fixtures


@pytest.fixture(scope="module")
def ctx() -> Ctx:
    return make_ctx()


@pytest.fixture(scope="module")
def jwks(ctx):
    server = JwksServer()
    for path, body in hostile_jwks(ctx).items():
        server.set_route(path, body)
    yield server
    server.close()


@pytest.fixture(scope="module")
def gw(envoy_bin, wasm, upstream, jwks, ctx, tmp_path_factory) -> h.Envoy:
    config = filter_config(ctx)

    def bootstrap(port: int, admin: int) -> dict:
        boot = h.gateway_bootstrap_with_clusters(
            listener_port=port,
            admin_port=admin,
            upstream_port=upstream.port,
            filter_config=config,
            wasm=wasm,
            extra_clusters=[h.static_cluster(CLUSTER, jwks.port)],
        )
        # Envoy drops a connection carrying a malformed HTTP/2 request after its delayed-close timeout (1 s by
        # default) without a GOAWAY; shorter here so that the dozens of such cases stay fast.
        hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["delayed_close_timeout"] = "0.1s"
        return boot

    envoy = h.Envoy(envoy_bin, tmp_path_factory.mktemp("hostile"), bootstrap, name="hostile")
    h.start_or_fail(envoy)
    # The remote key sets are fetched at configure time; wait (bounded) until each was tried.
    for name in REMOTE:
        got = jwks.wait_for_count(f"/{name}/jwks.json", 1, timeout=15)
        assert got >= 1, f"no fetch of /{name}/jwks.json: {jwks.counts()}"
    for name in ("dupkid", "hugen", "crv"):
        ok = h.wait_until(lambda: envoy.stats(f"wasmcustom.trustgate.jwks.{name}.keys").get(f"wasmcustom.trustgate.jwks.{name}.keys", 0) >= 1, 15)
        assert ok, f"provider {name} has no usable key: {envoy.stats('wasmcustom.trustgate.jwks.')}"
    yield envoy
    envoy.stop()


# ============================================================================================ expectations


@dataclass(frozen=True)
class Want:
    kind: str  # "allow", "deny" (trustgate's reply), "envoy" (Envoy's own reply), "reset"
    status: int | None = None
    reason: str | None = None  # a denial's one reason (None for the other kinds)
    check: Callable[[h.Seen], None] | None = None

    def __str__(self) -> str:
        return f"{self.kind} {self.status or ''} {self.reason or ''}".strip()


def allow(check: Callable[[h.Seen], None] | None = None) -> Want:
    return Want("allow", 200, check=check)


def deny(status: int, reason: str) -> Want:
    return Want("deny", status, reason)


def envoy(status: int) -> Want:
    """Envoy's codec or router answered by itself (not trustgate: no `x-trustgate-reason`)."""
    return Want("envoy", status)


RST = Want("reset")


def invalid(reason: str) -> Want:
    return deny(401, reason)


MISSING = deny(401, "missing")


@dataclass
class Case:
    id: str
    path: str | bytes = "/public/x"
    headers: Callable[[Ctx], list] | list = field(default_factory=list)
    want: Want | dict[str, Want] = field(default_factory=allow)
    host: str | bytes = "localhost"
    method: str = "GET"
    credential: bool = False  # the request carries a credential (so the public-path property does not apply)
    protocols: tuple[str, ...] = tuple(PROTOCOLS)

    def want_for(self, proto: str) -> Want:
        return self.want[proto] if isinstance(self.want, dict) else self.want

    def headers_for(self, ctx: Ctx) -> list:
        return self.headers(ctx) if callable(self.headers) else list(self.headers)


def per_proto(http1: Want, http2: Want) -> dict[str, Want]:
    return {"http1": http1, "http2": http2}


# ------------------------------------------------------------------------------------------ upstream checks


def owner_is(value: str) -> Callable[[h.Seen], None]:
    def check(seen: h.Seen) -> None:
        got = seen.values(OWNER)
        assert got == [value], f"upstream saw x-commit-owner {got!r}, want [{value!r}]"

    return check


def alice(seen: h.Seen) -> None:
    owner_is("human:alice")(seen)
    assert seen.values(EMAIL) == ["alice@example.com"], f"x-user-email: {seen.values(EMAIL)!r}"


def no_identity(seen: h.Seen) -> None:
    """A public request: the upstream sees no identity header at all (every forged one stripped)."""
    present = [n for n in seen.names() if n in IDENTITY]
    assert not present, f"identity headers reached the upstream on a public route: {present} in {seen!r}"


def raw_value(v: str) -> bytes:
    """The upstream (Python's http.server) decodes header bytes as latin-1: get the bytes back."""
    return v.encode("latin-1", "replace")


def assert_no_forgery(seen: h.Seen) -> None:
    """No header that an upstream could take for an identity header carries a forged value: names compared
    case-insensitively and with `_` read as `-` (CGI/WSGI map both to HTTP_X_COMMIT_OWNER)."""
    for name, value in seen.headers:
        canon = name.lower().replace("_", "-").strip()
        if canon in IDENTITY and MALLORY.encode() in raw_value(value).lower():
            raise AssertionError(f"forged {name}: {value!r} reached the upstream: {seen!r}")


# ============================================================================================ path readings


def _strip_query(p: str) -> str:
    return re.split(r"[?#]", p, maxsplit=1)[0]


def _decode(p: str, unreserved_only: bool) -> str:
    def dec(m: re.Match) -> str:
        c = chr(int(m.group(1), 16))
        if unreserved_only and not (c.isascii() and (c.isalnum() or c in "-._~")):
            return m.group(0).upper()
        return c

    return re.sub(r"%([0-9A-Fa-f]{2})", dec, p)


def _remove_dots(p: str) -> str:
    """RFC 3986 section 5.2.4, exactly (empty segments are segments)."""
    out: list[str] = []
    inp = p
    while inp:
        if inp.startswith("../"):
            inp = inp[3:]
        elif inp.startswith("./"):
            inp = inp[2:]
        elif inp.startswith("/./"):
            inp = inp[2:]
        elif inp == "/.":
            inp = "/"
        elif inp.startswith("/../"):
            inp = inp[3:]
            if out:
                out.pop()
        elif inp == "/..":
            inp = "/"
            if out:
                out.pop()
        elif inp in (".", ".."):
            inp = ""
        else:
            start = 1 if inp.startswith("/") else 0
            i = inp.find("/", start)
            seg, inp = (inp, "") if i < 0 else (inp[:i], inp[i:])
            out.append(seg)
    return "".join(out)


def _merge(p: str) -> str:
    return re.sub(r"/{2,}", "/", p)


def _strip_params(p: str) -> str:
    """Tomcat/Jetty: `;params` removed from every segment before decoding."""
    return "/".join(seg.split(";", 1)[0] for seg in p.split("/"))


UPSTREAM_READINGS: dict[str, Callable[[str], str]] = {
    "rfc3986": lambda p: _remove_dots(_decode(_strip_query(p), True)),
    "rfc3986+merge": lambda p: _merge(_remove_dots(_decode(_strip_query(p), True))),
    "merge+rfc3986": lambda p: _remove_dots(_merge(_decode(_strip_query(p), True))),
    "decode-all": lambda p: _merge(_remove_dots(_decode(_strip_query(p), False).replace("\\", "/"))),
    "path-params": lambda p: _merge(_remove_dots(_decode(_strip_params(_strip_query(p)), False))),
}


def is_public(host: str, path: str) -> bool:
    if host.split(":")[0].lower().rstrip(".") == OPEN_HOST:
        return not (path == "/admin" or path.startswith("/admin/"))
    return path == "/healthz" or path.startswith("/public/")


def assert_public_everywhere(host: str, seen: h.Seen) -> None:
    """A request forwarded without a credential: every upstream reading of its path is a public route."""
    readings = {name: read(seen.path) for name, read in UPSTREAM_READINGS.items()}
    protected = {n: p for n, p in readings.items() if not is_public(host, p)}
    assert not protected, (
        f"forwarded as public, but an upstream reading {seen.path!r} reaches a protected route: {protected}"
    )


def test_path_readings_self_check():
    """The reference readings themselves (RFC 3986 section 5.4 examples and the tricks below)."""
    assert _remove_dots("/a/b/c/./../../g") == "/a/g"
    assert _remove_dots("mid/content=5/../6") == "mid/6"
    assert UPSTREAM_READINGS["rfc3986"]("/es//../public/x") == "/es/public/x"
    assert UPSTREAM_READINGS["merge+rfc3986"]("/es//../public/x") == "/public/x"
    assert UPSTREAM_READINGS["path-params"]("/public/..;/es/x") == "/es/x"
    assert UPSTREAM_READINGS["decode-all"]("/public/..%2fes/x") == "/es/x"
    assert UPSTREAM_READINGS["rfc3986"]("/%70ublic/x?a=/../b") == "/public/x"


# ============================================================================================ the corpus

def identity_cases() -> list[Case]:
    """Forged identity headers on a public route, an allowed request, and two denied ones."""
    forgeries: dict[str, tuple[list, dict[str, Want] | None]] = {
        # name: (headers, per-protocol override of the outcome (None: the route's own))
        "lower": ([(OWNER, "human:mallory")], None),
        "upper": ([("X-COMMIT-OWNER", "human:mallory")], {"http2": RST}),  # RFC 9113: upper case is malformed
        "mixed-case-dups": (
            [("X-Commit-Owner", "human:mallory"), (OWNER, "human:mallory2"), ("x-COMMIT-owner", "agent:mallory")],
            {"http2": RST},
        ),
        "dups": ([(OWNER, "human:mallory")] * 3, None),
        "whitespace-value": ([(OWNER, "  human:mallory  "), ("x-user", "\tmallory\t")], None),
        "empty-value": ([(OWNER, ""), (OWNER, "human:mallory")], None),
        "comma-joined": ([(OWNER, "human:mallory, human:alice")], None),
        "space-before-colon": ([("x-commit-owner ", "human:mallory")], {"http1": envoy(400), "http2": RST}),
        # HTTP/1.1 obs-fold: a line starting with a space continues the previous header (here Host: Envoy refuses
        # the folded Host); a folded identity header is one header, stripped whole
        "space-before-name": ([(" x-commit-owner", "human:mallory")], {"http1": envoy(400), "http2": RST}),
        "obs-fold": ([(OWNER, "ok\r\n human:mallory")], {"http2": RST}),
        "invalid-utf8": ([(OWNER, b"human:\xff\xfemallory"), ("x-user", b"\xc0\xafmallory")], None),
        "every-identity-name": ([(n, f"{MALLORY}-{n}") for n in IDENTITY], None),
        "40KiB-value": ([(OWNER, "human:mallory" + "m" * 40 * 1024)], None),
        "90-copies": ([(OWNER, f"human:mallory{i}") for i in range(90)], None),
        # `_` for `-`: CGI/WSGI/PHP read x_commit_owner as X-Commit-Owner (HTTP_X_COMMIT_OWNER): stripped too
        "underscore": ([("x_commit_owner", "human:mallory"), ("x_user", MALLORY), ("x-commit_owner", MALLORY)], None),
    }
    routes = {
        # route: (path, extra headers, outcome, credential)
        "public": ("/public/x", lambda ctx: [], allow(no_identity), False),
        "healthz": ("/healthz?probe=1", lambda ctx: [], allow(no_identity), False),
        "allowed": ("/es/x", lambda ctx: [bearer(ctx.valid())], allow(alice), True),
        "denied-missing": ("/es/x", lambda ctx: [], MISSING, False),
        "denied-bad-signature": ("/es/x", lambda ctx: [bearer(ctx.bad_sig())], invalid("bad_signature"), True),
    }
    cases = []
    for fname, (fheaders, override) in forgeries.items():
        for rname, (path, extra, want, cred) in routes.items():
            if fname in ("40KiB-value", "90-copies", "every-identity-name") and rname == "healthz":
                continue
            wants = {p: (override or {}).get(p, want) for p in PROTOCOLS}
            cases.append(
                Case(
                    f"identity-{fname}-{rname}",
                    path,
                    (lambda ctx, fh=fheaders, ex=extra: list(fh) + ex(ctx)),
                    wants,
                    credential=cred,
                )
            )
    return cases


def claim_cases() -> list[Case]:
    """Control characters in claims that templates use (403 unsafe_claim, nothing upstream), and the values
    that are fine to write (exactly what reaches the upstream)."""
    unsafe = {
        "sub-crlf-injection": {"sub": "alice\r\nx-commit-owner: human:mallory"},
        "sub-lf": {"sub": "alice\nx"},
        "sub-cr": {"sub": "alice\r"},
        "sub-nul": {"sub": "alice\x00mallory"},
        "sub-del": {"sub": "alice\x7f"},
        "sub-nel-c1": {"sub": "alice\u0085x"},
        "sub-tab": {"sub": "alice\tx"},
        "sub-esc": {"sub": "alice\x1b[31m"},
        "principal-type-crlf": {"principal_type": "human\r\nx-user: mallory"},
        "email-crlf": {"email": "a@example.com\r\nx-user: mallory"},
        "roles-array-element-lf": {"roles": ["reader", "admin\nx-user: mallory"]},
        "nested-roles-nul": {"roles": ["reader", "x\u0000"]},
    }
    cases = [
        Case(f"claim-{name}", "/es/x", (lambda ctx, c=c: [bearer(ctx.valid(**c))]), deny(403, "unsafe_claim"), credential=True)
        for name, c in unsafe.items()
    ]

    def meta_escaped(seen: h.Seen) -> None:
        alice(seen)
        assert seen.values(META) == ['{"k":"v\\r\\nx-user: eve"}'], f"x-user-meta: {seen.values(META)!r}"

    def utf8_owner(want: str) -> Callable[[h.Seen], None]:
        def check(seen: h.Seen) -> None:
            got = [raw_value(v).decode("utf-8", "replace") for v in seen.values(OWNER)]
            assert got == [want], f"x-commit-owner {got!r}, want [{want!r}]"

        return check

    cases += [
        # an object renders as compact JSON: the control characters are escaped, so it is safe to write
        Case("claim-object-with-crlf-is-json-escaped", "/es/x", lambda ctx: [bearer(ctx.valid(meta={"k": "v\r\nx-user: eve"}))], allow(meta_escaped), credential=True),
        Case("claim-unused-with-crlf", "/es/x", lambda ctx: [bearer(ctx.valid(note="a\r\nb\x00"))], allow(alice), credential=True),
        Case("claim-line-separator-u2028", "/es/x", lambda ctx: [bearer(ctx.valid(sub="alice\u2028x"))], allow(utf8_owner("human:alice\u2028x")), credential=True),
        Case("claim-non-ascii", "/es/x", lambda ctx: [bearer(ctx.valid(sub="ålice-π"))], allow(utf8_owner("human:ålice-π")), credential=True),
        Case("claim-roles-array-joined", "/es/x", lambda ctx: [bearer(ctx.valid(roles=["a", "b"]))], allow(lambda s: (alice(s), _eq(s.values(ROLES), ["a,b"]))), credential=True),
    ]
    return cases


def _eq(got, want) -> None:
    assert got == want, f"{got!r} != {want!r}"


# ------------------------------------------------------------------------------------------ tokens


def jws(header: dict | bytes, payload: dict | bytes, sign: Callable[[bytes], bytes] | None) -> str:
    """A compact JWS from raw parts: `header`/`payload` as dicts (JSON) or exact bytes; `sign(signing_input)`."""
    hb = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    pb = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    signing_input = f"{b64url(hb)}.{b64url(pb)}".encode()
    sig = sign(signing_input) if sign else b""
    return f"{signing_input.decode()}.{b64url(sig)}"


def es256_signer(key: h.SigningKey) -> Callable[[bytes], bytes]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def hs256_signer(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def es_header(**extra) -> dict:
    return {"alg": "ES256", "typ": "JWT", "kid": "es-1", **extra}


def rsa_public_forms(public_key) -> dict[str, bytes]:
    """The RSA public key as the bytes an attacker might use as an HMAC secret."""
    from cryptography.hazmat.primitives import serialization as s

    spki_pem = public_key.public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo)
    return {
        "spki-pem": spki_pem,
        "spki-pem-no-newline": spki_pem.rstrip(b"\n"),
        "pkcs1-pem": public_key.public_bytes(s.Encoding.PEM, s.PublicFormat.PKCS1),
        "spki-der": public_key.public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo),
    }


def token_cases() -> list[Case]:
    now = int(time.time())

    def tok(build: Callable[[Ctx], str], path: str = "/es/x") -> Callable[[Ctx], list]:
        return lambda ctx: [bearer(build(ctx))]

    cases = [
        # ---- alg: none and friends
        *[
            Case(f"alg-{alg}{'-signed' if signed else ''}", "/es/x",
                 tok(lambda ctx, a=alg, s=signed: jws({"alg": a, "typ": "JWT", "kid": "es-1"}, h.claims(), (lambda d: b"sig" * 20) if s else None)),
                 invalid("alg_not_allowed"), credential=True)
            for alg in ("none", "None", "NONE", "nOnE") for signed in (False, True)
        ],
        Case("alg-missing", "/es/x", tok(lambda ctx: jws({"typ": "JWT", "kid": "es-1"}, h.claims(), es256_signer(ctx.es))), invalid("malformed"), credential=True),
        Case("alg-null", "/es/x", tok(lambda ctx: jws({"alg": None, "kid": "es-1"}, h.claims(), es256_signer(ctx.es))), invalid("malformed"), credential=True),
        Case("alg-array", "/es/x", tok(lambda ctx: jws({"alg": ["ES256"], "kid": "es-1"}, h.claims(), es256_signer(ctx.es))), invalid("malformed"), credential=True),
        Case("alg-lowercase", "/es/x", tok(lambda ctx: jws(es_header(alg="es256"), h.claims(), es256_signer(ctx.es))), invalid("alg_not_allowed"), credential=True),
        Case("alg-trailing-space", "/es/x", tok(lambda ctx: jws(es_header(alg="ES256 "), h.claims(), es256_signer(ctx.es))), invalid("alg_not_allowed"), credential=True),
        Case("alg-es384-on-p256-key", "/es/x", tok(lambda ctx: jws(es_header(alg="ES384"), h.claims(), lambda d: os.urandom(96))), invalid("alg_not_allowed"), credential=True),
        Case("alg-hs256-keyed-with-es-jwk", "/es/x", tok(lambda ctx: jws(es_header(alg="HS256"), h.claims(), hs256_signer(json.dumps(ctx.es.jwk).encode()))), invalid("alg_not_allowed"), credential=True),
        # ---- header tricks
        Case("embedded-jwk-attacker-key", "/es/x",
             tok(lambda ctx: jws(es_header(jwk=ctx.es_other.jwk), h.claims(), es256_signer(ctx.es_other))), invalid("bad_signature"), credential=True),
        Case("jku-x5u-attacker-url", "/es/x",
             tok(lambda ctx: jws(es_header(jku="http://127.0.0.1:9/jwks", x5u="http://127.0.0.1:9/x"), h.claims(), es256_signer(ctx.es_other))), invalid("bad_signature"), credential=True),
        Case("crit-header", "/es/x", tok(lambda ctx: jws(es_header(crit=["exp"]), h.claims(), es256_signer(ctx.es))), invalid("malformed"), credential=True),
        Case("kid-path-traversal", "/es/x", tok(lambda ctx: jws(es_header(kid="../../../../dev/null"), h.claims(), es256_signer(ctx.es))), invalid("unknown_kid"), credential=True),
        Case("kid-crlf", "/es/x", tok(lambda ctx: jws(es_header(kid="es-1\r\nx-user: mallory"), h.claims(), es256_signer(ctx.es))), invalid("unknown_kid"), credential=True),
        Case("kid-8KiB", "/es/x", tok(lambda ctx: jws(es_header(kid="k" * 8192), h.claims(), es256_signer(ctx.es))), invalid("unknown_kid"), credential=True),
        Case("kid-number", "/es/x", tok(lambda ctx: jws(es_header(kid=1), h.claims(), es256_signer(ctx.es))), invalid("malformed"), credential=True),
        # ---- structure
        Case("two-parts", "/es/x", tok(lambda ctx: ".".join(ctx.valid().split(".")[:2])), invalid("malformed"), credential=True),
        Case("four-parts", "/es/x", tok(lambda ctx: ctx.valid() + ".AAAA"), invalid("malformed"), credential=True),
        Case("padded-base64", "/es/x", tok(lambda ctx: ctx.valid() + "=="), invalid("malformed"), credential=True),
        Case("standard-base64-alphabet", "/es/x", tok(lambda ctx: ctx.valid().replace("-", "+").replace("_", "/") + "+/"), invalid("malformed"), credential=True),
        Case("empty-parts", "/es/x", [("authorization", "Bearer ..")], invalid("malformed"), credential=True),
        Case("duplicate-claim-member", "/es/x",
             tok(lambda ctx: jws(es_header(), b'{"iss":"%s","aud":"%s","sub":"alice","sub":"mallory","exp":%d}' % (h.ISSUER.encode(), h.AUDIENCE.encode(), now + 600), es256_signer(ctx.es))),
             invalid("malformed"), credential=True),
        Case("duplicate-header-member", "/es/x",
             tok(lambda ctx: jws(b'{"alg":"none","alg":"ES256","kid":"es-1"}', h.claims(), es256_signer(ctx.es))), invalid("malformed"), credential=True),
        Case("payload-not-object", "/es/x", tok(lambda ctx: jws(es_header(), b'["alice"]', es256_signer(ctx.es))), invalid("malformed"), credential=True),
        Case("exp-as-string", "/es/x", tok(lambda ctx: jws(es_header(), h.claims(exp=str(now + 600)), es256_signer(ctx.es))), invalid("malformed"), credential=True),
        Case("exp-huge-float", "/es/x", tok(lambda ctx: jws(es_header(), b'{"iss":"%s","aud":"%s","sub":"alice","exp":1e400}' % (h.ISSUER.encode(), h.AUDIENCE.encode()), es256_signer(ctx.es))), invalid("malformed"), credential=True),
        # ---- invalid UTF-8 inside a validly signed token
        Case("payload-invalid-utf8", "/es/x",
             tok(lambda ctx: jws(es_header(), b'{"iss":"%s","aud":"%s","sub":"\xff\xfe","exp":%d}' % (h.ISSUER.encode(), h.AUDIENCE.encode(), now + 600), es256_signer(ctx.es))),
             invalid("malformed"), credential=True),
        Case("payload-lone-surrogate", "/es/x",
             tok(lambda ctx: jws(es_header(), b'{"iss":"%s","aud":"%s","sub":"\\udcff","exp":%d}' % (h.ISSUER.encode(), h.AUDIENCE.encode(), now + 600), es256_signer(ctx.es))),
             invalid("malformed"), credential=True),
        Case("header-invalid-utf8", "/es/x", tok(lambda ctx: jws(b'{"alg":"ES256","kid":"es-\xff"}', h.claims(), es256_signer(ctx.es))), invalid("malformed"), credential=True),
        # ---- nested JSON, 10,000 levels (and as deep as fits under the 16 KiB token cap)
        Case("nested-10000-balanced-too-large", "/es/x",
             tok(lambda ctx: jws(es_header(), b'{"sub":"alice","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}", es256_signer(ctx.es))),
             invalid("token_too_large"), credential=True),
        Case("nested-10000-unbalanced-payload", "/es/x",
             tok(lambda ctx: jws(es_header(), b'{"x":' + b"[" * 10_000, es256_signer(ctx.es))), invalid("malformed"), credential=True),
        Case("nested-6000-signed-payload", "/es/x",
             tok(lambda ctx: jws(es_header(), b'{"sub":"alice","x":' + b"[" * 6000 + b"]" * 6000 + b"}", es256_signer(ctx.es))), invalid("malformed"), credential=True),
        Case("nested-1500-objects-header", "/es/x",
             tok(lambda ctx: jws(b'{"alg":"ES256","x":' + b'{"a":' * 1500 + b"1" + b"}" * 1500 + b"}", h.claims(), es256_signer(ctx.es))), invalid("malformed"), credential=True),
        Case("token-17KiB", "/es/x", tok(lambda ctx: h.mint(ctx.es, h.claims(pad="p" * 17 * 1024))), invalid("token_too_large"), credential=True),
    ]

    # ---- algorithm confusion: HS256 keyed with the RSA public key
    def confusion(provider: str, form: str, kid: str | None) -> Callable[[Ctx], list]:
        def build(ctx: Ctx) -> list:
            if provider == "rs":
                pub, jwk = ctx.rs.private.public_key(), _rsa_jwk(ctx.rs, "rs-1", "RS256")
            elif provider == "mixed":
                pub, jwk = ctx.mixed_rsa.private.public_key(), _rsa_jwk(ctx.mixed_rsa, "mixed-rsa", None)
            else:
                pub, jwk = ctx.pem_private.public_key(), None
            forms = rsa_public_forms(pub)
            forms["pem-file-bytes"] = RSA_PUB_PEM
            if jwk:
                forms["jwk-json"] = json.dumps(jwk).encode()
                forms["jwk-n"] = base64.urlsafe_b64decode(jwk["n"] + "==")
            secret = forms[form]
            header = {"alg": "HS256", "typ": "JWT"} | ({"kid": kid} if kid else {})
            return [bearer(jws(header, h.claims(), hs256_signer(secret)))]

        return build

    for form in ("spki-pem", "spki-pem-no-newline", "pkcs1-pem", "spki-der", "jwk-json", "jwk-n"):
        cases.append(Case(f"confusion-rs-{form}", "/rs/x", confusion("rs", form, "rs-1"), invalid("alg_not_allowed"), credential=True))
        cases.append(Case(f"confusion-mixed-{form}-rsa-kid", "/mixed/x", confusion("mixed", form, "mixed-rsa"), invalid("alg_not_allowed"), credential=True))
    cases.append(Case("confusion-rs-spki-pem-no-kid", "/rs/x", confusion("rs", "spki-pem", None), invalid("alg_not_allowed"), credential=True))
    cases.append(Case("confusion-mixed-spki-pem-no-kid", "/mixed/x", confusion("mixed", "spki-pem", None), invalid("bad_signature"), credential=True))
    for form in ("pem-file-bytes", "spki-pem", "spki-pem-no-newline", "pkcs1-pem", "spki-der"):
        cases.append(Case(f"confusion-pem-{form}", "/pem/x", confusion("pem", form, None), invalid("alg_not_allowed"), credential=True))
    cases.append(Case("confusion-rs-ps256-with-rs256-pinned-jwk", "/rs/x", tok(lambda ctx: h.mint(ctx.rs, h.claims(), alg="PS256")), invalid("alg_not_allowed"), credential=True))
    # controls: the legitimate tokens of the same providers do pass
    cases += [
        Case("control-rs-valid", "/rs/x", tok(lambda ctx: h.mint(ctx.rs, h.claims())), allow(owner_is("human:alice")), credential=True),
        Case("control-pem-valid", "/pem/x", tok(lambda ctx: _mint_pem(ctx)), allow(owner_is("human:alice")), credential=True),
        Case("control-mixed-rs256", "/mixed/x", tok(lambda ctx: h.mint(ctx.mixed_rsa, h.claims())), allow(owner_is("human:alice")), credential=True),
        Case("control-mixed-hs256", "/mixed/x", tok(lambda ctx: h.mint(ctx.mixed_hs, h.claims())), allow(owner_is("human:alice")), credential=True),
    ]
    return cases


def _mint_pem(ctx: Ctx) -> str:
    import jwt

    return jwt.encode(h.claims(), ctx.pem_private, algorithm="RS256")


def jwks_cases() -> list[Case]:
    def tok(name: str, kid: str | None = "__key__", alg: str | None = None) -> Callable[[Ctx], list]:
        def build(ctx: Ctx) -> list:
            key = ctx.remote[name]
            return [bearer(h.mint(key, h.claims(), **({} if kid == "__key__" else {"kid": kid}), **({"alg": alg} if alg else {})))]

        return build

    ok = allow(owner_is("human:alice"))
    return [
        # duplicate kids: both published keys verify (the IdP published both), an unpublished key with that kid never
        Case("jwks-dupkid-first", "/dupkid/x", tok("dup-a"), ok, credential=True),
        Case("jwks-dupkid-second", "/dupkid/x", tok("dup-b"), ok, credential=True),
        Case("jwks-dupkid-unpublished-key", "/dupkid/x", tok("dup-c"), invalid("bad_signature"), credential=True),
        # huge n / e: skipped keys (the good key still serves); their kids are unknown
        Case("jwks-hugen-good-key", "/hugen/x", tok("hugen-good"), ok, credential=True),
        Case("jwks-huge-n-kid", "/hugen/x", tok("hugen-good", kid="huge-n"), invalid("unknown_kid"), credential=True),
        Case("jwks-16k-bit-n-kid", "/hugen/x", tok("hugen-good", kid="n-16k"), invalid("unknown_kid"), credential=True),
        Case("jwks-huge-e-kid", "/hugen/x", tok("hugen-good", kid="huge-e"), invalid("unknown_kid"), credential=True),
        # wrong crv: the P-256 key published as P-384 / P-521 is skipped, so its own tokens are refused
        Case("jwks-crv-good-key", "/crv/x", tok("crv-good"), ok, credential=True),
        Case("jwks-p256-key-as-p384", "/crv/x", tok("crv-p256"), invalid("unknown_kid"), credential=True),
        Case("jwks-p256-key-as-p384-es384", "/crv/x",
             lambda ctx: [bearer(jws({"alg": "ES384", "kid": "crv-p384"}, h.claims(), lambda d: os.urandom(96)))],
             invalid("unknown_kid"), credential=True),
        Case("jwks-p256-key-as-p521", "/crv/x", tok("crv-p256", kid="crv-p521"), invalid("unknown_kid"), credential=True),
        Case("jwks-ec-with-ed25519-crv", "/crv/x", tok("crv-p256", kid="crv-ec-ed"), invalid("unknown_kid"), credential=True),
        Case("jwks-ed25519-key-as-x25519", "/crv/x", tok("crv-ed"), invalid("unknown_kid"), credential=True),
        Case("jwks-okp-with-p256-crv", "/crv/x", tok("crv-ed", kid="crv-okp-p256"), invalid("unknown_kid"), credential=True),
        Case("jwks-point-not-on-curve", "/crv/x", tok("crv-p256", kid="crv-swapped"), invalid("unknown_kid"), credential=True),
        # a key set with a member nested 10,000 deep is refused as a whole: no keys -> 503, never 200, no crash
        Case("jwks-nested-10000-deep", "/deep/x", tok("deep-1"), deny(503, "keys_unavailable"), credential=True),
    ]


def authorization_cases() -> list[Case]:
    def two(a: Callable[[Ctx], str], b: Callable[[Ctx], str]) -> Callable[[Ctx], list]:
        return lambda ctx: [("authorization", a(ctx)), ("authorization", b(ctx))]

    bearer_valid = lambda ctx: "Bearer " + ctx.valid()  # noqa: E731
    multiple = invalid("multiple_credentials")
    return [
        Case("auth-duplicate-valid", "/es/x", two(bearer_valid, bearer_valid), multiple, credential=True),
        Case("auth-duplicate-valid-and-garbage", "/es/x", two(bearer_valid, lambda ctx: "Bearer garbage"), multiple, credential=True),
        Case("auth-duplicate-garbage-first", "/es/x", two(lambda ctx: "Bearer x.y.z", bearer_valid), multiple, credential=True),
        Case("auth-duplicate-other-case-name", "/es/x", lambda ctx: [("Authorization", bearer_valid(ctx)), ("AUTHORIZATION", bearer_valid(ctx))],
             per_proto(multiple, RST), credential=True),
        Case("auth-joined-in-one-header", "/es/x", lambda ctx: [("authorization", f"{bearer_valid(ctx)}, {bearer_valid(ctx)}")], invalid("multiple_credentials"), credential=True),
        Case("auth-bearer-and-basic", "/es/x", two(bearer_valid, lambda ctx: "Basic YWxpY2U6cHc="), invalid("multiple_credentials"), credential=True),
        Case("auth-lowercase-scheme", "/es/x", lambda ctx: [("authorization", "bearer " + ctx.valid())], allow(alice), credential=True),
        # extra whitespace around the token is tolerated (as Envoy's jwt_authn does): harmless, the token is verified
        Case("auth-double-space", "/es/x", lambda ctx: [("authorization", "Bearer  " + ctx.valid())], allow(alice), credential=True),
        Case("auth-trailing-spaces", "/es/x", lambda ctx: [("authorization", "Bearer " + ctx.valid() + "  ")], allow(alice), credential=True),
        Case("auth-tab-separator", "/es/x", lambda ctx: [("authorization", "Bearer\t" + ctx.valid())], invalid("missing"), credential=True),
        Case("auth-empty", "/es/x", [("authorization", "")], MISSING),
        Case("auth-scheme-only", "/es/x", [("authorization", "Bearer")], MISSING),
        Case("auth-bearer-empty-token", "/es/x", [("authorization", "Bearer ")], invalid("missing"), credential=True),
        Case("auth-invalid-utf8-appended", "/es/x", lambda ctx: [("authorization", b"Bearer " + ctx.valid().encode() + b"\xff")], invalid("missing"), credential=True),
        Case("auth-invalid-utf8-inside", "/es/x", lambda ctx: [("authorization", b"Bearer \xc3\x28" + ctx.valid().encode())], invalid("missing"), credential=True),
        Case("auth-nul", "/es/x", lambda ctx: [("authorization", "Bearer " + ctx.valid() + "\x00")], per_proto(envoy(400), RST), credential=True),
        Case("auth-40KiB", "/es/x", [("authorization", "Bearer " + "a" * 40 * 1024)], invalid("token_too_large"), credential=True),
        Case("auth-64KiB", "/es/x", [("authorization", "Bearer " + "a" * 64 * 1024)], per_proto(envoy(431), RST), credential=True),
        # the token in the query is not a source of the `es` provider: ignored (and not removed), still missing
        Case("auth-token-in-query-only", "/es/x?access_token=eyJhbGciOiJub25lIn0.e30.", [], MISSING),
    ]


def size_cases() -> list[Case]:
    return [
        Case("size-64KiB-identity-header", "/public/x", [(OWNER, "human:mallory" + "m" * 64 * 1024)], per_proto(envoy(431), RST)),
        Case("size-many-headers-totalling-64KiB", "/public/x", [(f"x-pad-{i}", "p" * 1024) for i in range(64)], per_proto(envoy(431), RST)),
        Case("size-120-headers", "/public/x", [(f"x-h-{i}", "v") for i in range(120)], per_proto(envoy(431), RST)),
        Case("size-40KiB-path", "/public/" + "a" * 40 * 1024, [], allow(no_identity)),
        Case("size-64KiB-path", "/public/" + "a" * 64 * 1024, [], per_proto(envoy(431), RST)),
        Case("size-40KiB-cookie", "/public/x", [("cookie", "c=" + "v" * 40 * 1024)], allow(no_identity)),
        Case("size-invalid-utf8-unrelated-header", "/public/x", [("x-anything", b"\xff\xfe\xfd")], allow(no_identity)),
        Case("size-invalid-utf8-header-name", "/public/x", [(b"x-\xffname", "v")], per_proto(envoy(400), RST)),
    ]


def path_cases() -> list[Case]:
    """No credential anywhere: each must either be refused or be public under every upstream reading."""
    A = allow(no_identity)
    P400 = deny(400, "ambiguous_path")
    cases = [
        # allow-list policy (localhost)
        Case("path-double-slash-prefix", "//public/x", want=A),
        Case("path-double-slash-inside", "/public//x", want=A),
        Case("path-dot", "/public/./x", want=A),
        Case("path-leading-dot", "/./public/x", want=A),
        Case("path-trailing-dotdot-stays-public", "/public/x/..", want=A),
        Case("path-dotdot-to-protected", "/public/../es/x", want=MISSING),
        Case("path-dot-dotdot-to-protected", "/public/./../es/x", want=MISSING),
        Case("path-two-dotdots", "/public/x/../../es/x", want=MISSING),
        Case("path-dotdot-to-root", "/public/..", want=MISSING),
        Case("path-dotdot-above-root", "/../../public/x", want=A),
        Case("path-encoded-dotdot", "/public/%2e%2e/es/x", want=P400),
        Case("path-encoded-dotdot-upper", "/public/%2E%2E/es/x", want=P400),
        Case("path-half-encoded-dotdot", "/public/.%2e/es/x", want=P400),
        Case("path-encoded-dot", "/public/%2e/x", want=P400),
        Case("path-encoded-slash", "/public/..%2fes/x", want=P400),
        Case("path-encoded-slash-upper", "/public%2F..%2Fes/x", want=P400),
        Case("path-encoded-slash-alone", "/public/x%2F", want=P400),
        Case("path-encoded-backslash", "/public/..%5ces/x", want=P400),
        Case("path-raw-backslash", "/public/..\\es/x", want=P400),
        Case("path-encoded-nul", "/public/x%00", want=P400),
        Case("path-bad-escape", "/public/%zz", want=P400),
        Case("path-truncated-escape", "/public/%2", want=P400),
        Case("path-encoded-unreserved", "/%70ublic/x", want=A),
        Case("path-double-encoded-dotdot", "/public/%252e%252e/es/x", want=A),  # decoded once: `%2e%2e`, a name
        Case("path-encoded-overlong-dotdot", "/public/%c0%ae%c0%ae/es/x", want=A),  # invalid UTF-8, not `..`
        Case("path-raw-overlong-dotdot", b"/public/\xc0\xae\xc0\xae/es/x", want=per_proto(envoy(400), P400)),
        Case("path-raw-invalid-utf8", b"/public/\xff", want=per_proto(envoy(400), P400)),
        Case("path-upper-case", "/PUBLIC/x", want=MISSING),
        Case("path-title-case", "/Public/x", want=MISSING),
        Case("path-healthz-upper", "/HEALTHZ", want=MISSING),
        Case("path-healthz-trailing-slash", "/healthz/", want=MISSING),
        Case("path-healthz-param", "/healthz;x", want=P400),  # `/healthz` without its parameter
        Case("path-param-then-dotdot", "/public;x/../es/x", want=MISSING),
        Case("path-param-on-file", "/public/x;/../../es/x", want=MISSING),
        Case("path-query-with-dotdot", "/public/x?/../../es/x", want=A),
        Case("path-fragment", "/public/x#/../../es/x", want=envoy(400)),
        Case("path-absolute-form", "http://localhost/public/../es/x", want=per_proto(MISSING, RST)),
        Case("path-asterisk", "*", method="OPTIONS", want=envoy(404)),
        Case("path-no-leading-slash", "public/x", want=per_proto(envoy(400), RST)),
        Case("path-raw-tab", "/public/x\ty", want=per_proto(envoy(400), RST)),
        Case("path-dotdot-semicolon", "/public/..;/es/x", want=P400),
        Case("path-encoded-dotdot-semicolon", "/public/%2e%2e;/es/x", want=P400),
        Case("path-dotdot-semicolon-param", "/public/..;jsessionid=1/es/x", want=P400),
        Case("path-double-slash-dotdot", "/es//../public/x", want=P400),
        Case("path-double-slash-two-dotdots", "/es/x//../../public/x", want=P400),
        # deny-list policy (open.test): only /admin needs a token
        Case("open-public", "/anything", host=OPEN_HOST, want=A),
        Case("open-admin", "/admin/x", host=OPEN_HOST, want=MISSING),
        Case("open-admin-root", "/admin", host=OPEN_HOST, want=MISSING),
        Case("open-admin-query", "/admin?x=/public/", host=OPEN_HOST, want=MISSING),
        Case("open-admin-double-slash", "//admin/x", host=OPEN_HOST, want=MISSING),
        Case("open-admin-dot", "/./admin/x", host=OPEN_HOST, want=MISSING),
        Case("open-admin-dotdot", "/x/../admin/x", host=OPEN_HOST, want=MISSING),
        Case("open-admin-trailing-dot", "/admin/.", host=OPEN_HOST, want=MISSING),
        Case("open-admin-encoded-unreserved", "/%61dmin/x", host=OPEN_HOST, want=MISSING),
        Case("open-admin-encoded-slash", "/admin%2fx", host=OPEN_HOST, want=P400),
        Case("open-admin-encoded-dotdot", "/x/%2e%2e/admin/x", host=OPEN_HOST, want=P400),
        Case("open-admin-host-upper", "/admin/x", host="OPEN.TEST", want=MISSING),
        Case("open-admin-host-port", "/admin/x", host="open.test:80", want=MISSING),
        Case("open-admin-host-trailing-dot", "/admin/x", host="open.test.", want=MISSING),
        Case("open-adminx-is-another-path", "/adminx", host=OPEN_HOST, want=A),  # documented: write `/admin/`
        # documented: rules are case-sensitive like Envoy's route match; a case-insensitive upstream needs an
        # allow-list policy (see docs/testing.md)
        Case("open-admin-upper-is-another-path", "/ADMIN/x", host=OPEN_HOST, want=A),
        Case("open-admin-param", "/admin;x/secret", host=OPEN_HOST, want=P400),
        Case("open-dotdot-semicolon", "/x/..;/admin/secret", host=OPEN_HOST, want=P400),
        Case("open-double-slash-dotdot", "/admin//../x", host=OPEN_HOST, want=P400),
    ]
    return cases


def http2_only_cases() -> list[Case]:
    h2only = ("http2",)
    return [
        # `host` beside `:authority` (RFC 9113 8.3.1): whatever Envoy does, the deny-list host must not win for
        # a request whose :authority is the allow-list host
        Case("h2-host-header-disagrees", "/secret", [("host", OPEN_HOST)], want=MISSING, protocols=h2only),
        Case("h2-connection-header", "/public/x", [("connection", "keep-alive")], want=RST, protocols=h2only),
        Case("h2-te-trailers-only", "/public/x", [("te", "gzip")], want=RST, protocols=h2only),
        Case("h2-pseudo-after-regular", "/public/x", [(":foo", "bar")], want=RST, protocols=h2only),
        Case("h2-cr-in-value", "/public/x", [(OWNER, "human:mallory\r\nx: y")], want=RST, protocols=h2only),
    ]


def http1_only_cases() -> list[Case]:
    h1only = ("http1",)
    return [
        # two Host headers: Envoy joins them ("localhost,open.test"), which is no rule's host, so the allow-list
        # (default) policy applies
        Case("h1-two-host-headers", "/secret", [("Host", OPEN_HOST)], want=MISSING, protocols=h1only),
        Case("h1-header-without-colon", "/public/x", [("x-commit-owner human", "mallory")], want=envoy(400), protocols=h1only),
    ]


ALL_CASES = (
    identity_cases()
    + claim_cases()
    + token_cases()
    + jwks_cases()
    + authorization_cases()
    + size_cases()
    + path_cases()
    + http2_only_cases()
    + http1_only_cases()
)
_ids = [c.id for c in ALL_CASES]
assert len(_ids) == len(set(_ids)), sorted({i for i in _ids if _ids.count(i) > 1})


def _params():
    for case in ALL_CASES:
        for proto in case.protocols:
            yield pytest.param(case, proto, id=f"{proto}-{case.id}")


# ============================================================================================ running a case

OUTCOMES: list[tuple[str, str, int | str, Want]] = []  # (protocol, case id, status or "reset", expected)


def send(gw: h.Envoy, case: Case, proto: str, ctx: Ctx) -> h.Response | None:
    try:
        return h.PROTOCOLS[proto](gw.port, case.path, case.headers_for(ctx), method=case.method, host=case.host, timeout=10)
    except h.StreamReset:
        return None


@pytest.mark.parametrize("case, proto", list(_params()))
def test_hostile(gw, upstream, ctx, case: Case, proto: str):
    upstream.clear()
    want = case.want_for(proto)
    resp = send(gw, case, proto, ctx)
    OUTCOMES.append((proto, case.id, RESET if resp is None else resp.status, want))
    got = "stream reset" if resp is None else resp.describe()
    seen = upstream.seen

    # Whatever happened: no forged identity value ever reaches the upstream, and no credential either.
    for s in seen:
        assert_no_forgery(s)
        assert not s.values("authorization"), f"[{proto}] the credential reached the upstream: {s!r}"

    if want.kind == "reset":
        assert resp is None, f"[{proto}] want Envoy to reset the stream, got {got}"
        assert seen == [], f"[{proto}] a reset request reached the upstream: {seen!r}"
        return
    assert resp is not None, f"[{proto}] want {want}, got a stream reset; upstream saw {seen!r}"
    if want.kind == "envoy":
        assert resp.status == want.status, f"[{proto}] want Envoy's own {want.status}, got {got}"
        assert resp.header("x-trustgate-reason") is None, f"[{proto}] want Envoy's reply, got trustgate's: {got}"
        assert seen == [], f"[{proto}] a refused request reached the upstream: {seen!r}"
    elif want.kind == "deny":
        h.assert_denied(resp, upstream, want.status, want.reason)
    else:
        assert resp.status == 200, f"[{proto}] want 200, got {got}; upstream saw {seen!r}"
        assert len(seen) == 1, f"[{proto}] upstream saw {len(seen)} requests, want 1"
        if want.check:
            want.check(seen[0])
        if not case.credential:
            assert_public_everywhere(case.host if isinstance(case.host, str) else case.host.decode("latin-1"), seen[0])


# ============================================================================================ after the corpus


def test_no_5xx_but_documented_503():
    if not OUTCOMES:
        pytest.skip("the corpus was deselected in this run")
    bad = [
        (p, c, s)
        for p, c, s, want in OUTCOMES
        if isinstance(s, int) and s >= 500 and not (s == 503 and want.reason == "keys_unavailable")
    ]
    assert not bad, f"5xx answers in the corpus: {bad}"


def test_no_wasm_panic_or_trap_in_envoy_log(gw):
    # a denial written after the corpus is in the log: so is every line of the corpus before it
    mark = gw.log_mark()
    assert h.http_request(gw.port, "/log-barrier").status == 401
    assert gw.wait_for_log(lambda l: "trustgate: deny rule=default " in l and " reason=missing " in l, since=mark), gw.log_tail()
    lines = h.wasm_failure_lines(gw)
    assert not lines, "wasm panic/trap in Envoy's log:\n" + "\n".join(lines[:20])
    internal = [l for l in h.wasm_log_lines(gw) if "reason=internal" in l]
    assert not internal, f"internal errors in the filter: {internal[:10]}"


def test_hostile_jwks_are_logged_not_fatal(gw, jwks):
    """The hostile key sets were handled by skipping keys / refusing the document, with a log line each."""
    lines = h.wasm_log_lines(gw, "trustgate: jwks provider=")
    def has(provider: str, *needles: str) -> bool:
        return any(l.startswith(f"trustgate: jwks provider={provider}") and all(n in l for n in needles) for l in lines)
    assert has("hugen", "skipped key [0]"), "huge n not skipped with a log line:\n" + "\n".join(lines)
    assert has("hugen", "skipped key [1]") and has("hugen", "skipped key [2]"), "\n".join(lines)
    for i in range(6):
        assert has("crv", f"skipped key [{i}]"), f"crv key [{i}] not skipped with a log line:\n" + "\n".join(lines)
    assert has("deep", "fetch failed"), "the 10,000-deep JWKS did not fail its fetch:\n" + "\n".join(lines)
    stats = gw.stats("wasmcustom.trustgate.jwks.")
    assert stats.get("wasmcustom.trustgate.jwks.hugen.keys") == 1, stats
    assert stats.get("wasmcustom.trustgate.jwks.crv.keys") == 1, stats
    assert stats.get("wasmcustom.trustgate.jwks.dupkid.keys") == 2, stats
    assert stats.get("wasmcustom.trustgate.jwks.deep.keys", 0) == 0, stats
