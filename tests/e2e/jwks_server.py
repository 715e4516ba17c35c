"""A JWKS / OIDC discovery server the end-to-end tests control.

Threaded HTTP/1.1 on 127.0.0.1 (keep-alive, like a real IdP). Every path is a `Route` with a body and a mode:

    ok        200 with the body (and `Cache-Control: max-age=N` when the route has `max_age`)
    status    that status (e.g. 500) with a small text body
    garbage   200, `text/html`, a body that is not JSON
    big       200 with valid JSON that still holds the route's keys, padded past 512 KiB
    hang      sends nothing until `release_hangs()`, `close()`/`stop()` or `hang_s` (default 30 s)

`set_delay(path, s)` makes any mode but hang answer only after `s` seconds (a slow IdP).

`stop()` takes the whole server down for real: the listening socket and every open connection are closed and
the port is held by a bound, non-listening socket, so connections are refused (RST) rather than left
hanging, and no other process can take the port. `start()` listens again on the same port.
`JwksServer(start=False)` is a server that is down from the beginning (its port is already known).

Requests are counted per path (thread-safe), with the mode each was answered with and the Host header, so
tests can assert how many fetches the filter made and with which `:authority`.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "status", "garbage", "big", "hang")
BODY_LIMIT = 512 * 1024


@dataclass
class Route:
    body: bytes
    content_type: str = "application/json"
    mode: str = "ok"
    status: int = 500
    max_age: int | None = None
    cache_control: str | None = None  # verbatim, wins over max_age
    delay_s: float = 0.0  # wait this long before answering (any mode but hang; cut short by stop())


@dataclass
class Hit:
    """One request as the server received it."""

    path: str  # the request target as sent (path + query)
    host: str | None
    mode: str  # how it was answered
    at: float = field(default_factory=time.monotonic)


def jwks_body(keys: list[dict]) -> bytes:
    return json.dumps({"keys": keys}).encode()


class JwksServer:
    def __init__(self, start: bool = True, hang_s: float = 30.0) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._routes: dict[str, Route] = {}
        self._hits: list[Hit] = []
        self._conns: set[socket.socket] = set()
        self._release = threading.Event()
        self.hang_s = hang_s
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._placeholder: socket.socket | None = None
        # Reserve a port now: bound, not listening (connections to it are refused).
        self._placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._placeholder.bind(("127.0.0.1", 0))
        self.port: int = self._placeholder.getsockname()[1]
        if start:
            self.start()

    # ------------------------------------------------------------------------------------ routes

    def set_route(self, path: str, body: bytes | str | dict, **kw) -> None:
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        with self._lock:
            self._routes[path] = Route(body=body, **kw)

    def set_jwks(self, path: str, keys: list[dict], max_age: int | None = None, **kw) -> None:
        """Serve `{"keys": keys}` at `path` (replacing whatever was there; mode back to ok unless given)."""
        self.set_route(path, jwks_body(keys), max_age=max_age, **kw)

    def set_discovery(self, issuer_path: str, issuer: str, jwks_uri: str, max_age: int | None = None, **extra) -> str:
        """Serve an OpenID configuration at `<issuer_path>/.well-known/openid-configuration`; returns that path."""
        path = issuer_path.rstrip("/") + "/.well-known/openid-configuration"
        doc = {
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "authorization_endpoint": issuer.rstrip("/") + "/protocol/openid-connect/auth",
            "token_endpoint": issuer.rstrip("/") + "/protocol/openid-connect/token",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        }
        doc.update(extra)
        self.set_route(path, doc, max_age=max_age)
        return path

    def set_mode(self, path: str, mode: str, *, status: int | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: one of {MODES}")
        with self._lock:
            route = self._routes[path]
            route.mode = mode
            if status is not None:
                route.status = status

    def set_delay(self, path: str, delay_s: float) -> None:
        """Answer `path` only after `delay_s` (a slow IdP: keeps a fetch in flight that long)."""
        with self._lock:
            self._routes[path].delay_s = delay_s

    def set_max_age(self, path: str, max_age: int | None, cache_control: str | None = None) -> None:
        with self._lock:
            self._routes[path].max_age = max_age
            self._routes[path].cache_control = cache_control

    # ------------------------------------------------------------------------------------ counts

    def hits(self, path: str | None = None) -> list[Hit]:
        """Requests received, in order; `path` filters on the path without its query."""
        with self._lock:
            hits = list(self._hits)
        if path is None:
            return hits
        return [h for h in hits if h.path.split("?", 1)[0] == path.split("?", 1)[0]]

    def count(self, path: str, mode: str | None = None) -> int:
        return sum(1 for h in self.hits(path) if mode is None or h.mode == mode)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for h in self.hits():
            out[h.path] = out.get(h.path, 0) + 1
        return out

    def reset_counts(self) -> None:
        with self._lock:
            self._hits.clear()

    def wait_for_count(self, path: str, n: int, timeout: float, mode: str | None = None) -> int:
        """Wait (bounded) until `count(path, mode) >= n`; returns the count (the caller asserts)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                got = sum(
                    1
                    for h in self._hits
                    if h.path.split("?", 1)[0] == path.split("?", 1)[0] and (mode is None or h.mode == mode)
                )
                left = deadline - time.monotonic()
                if got >= n or left <= 0:
                    return got
                self._changed.wait(min(left, 0.2))

    # ------------------------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Listen (again) on `self.port`."""
        if self._server is not None:
            return
        self._release = threading.Event()
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        last: OSError | None = None
        for _ in range(50):  # the port may linger for a moment after the placeholder closes
            try:
                self._server = _Server(("127.0.0.1", self.port), self._handler_class())
                break
            except OSError as e:
                last = e
                time.sleep(0.1)
        else:
            raise RuntimeError(f"JWKS server: cannot listen on 127.0.0.1:{self.port} again: {last}")
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=f"jwks-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Go down: stop listening, drop every open connection (hangs included), refuse new ones."""
        server, self._server = self._server, None
        if server is None:
            return
        self._release.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        ph = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ph.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            ph.bind(("127.0.0.1", self.port))
            self._placeholder = ph
        except OSError:
            ph.close()  # someone took it meanwhile; still down from our side

    def release_hangs(self) -> None:
        """Let every hanging request go (they answer with nothing and close)."""
        self._release.set()
        self._release = threading.Event()

    def close(self) -> None:
        self.stop()
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    def __enter__(self) -> "JwksServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ handler

    def _handler_class(self):
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "jwks-test"

            def setup(self) -> None:
                super().setup()
                with srv._lock:
                    srv._conns.add(self.connection)

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with srv._lock:
                        srv._conns.discard(self.connection)

            def do_GET(self) -> None:
                target = self.path
                with srv._lock:
                    route = srv._routes.get(target) or srv._routes.get(target.split("?", 1)[0])
                    mode = "missing" if route is None else route.mode
                    route = None if route is None else Route(**vars(route))  # snapshot
                    release = srv._release
                    srv._hits.append(Hit(target, self.headers.get("Host"), mode))
                    srv._changed.notify_all()
                if route is None:
                    return self._send(404, b"not found\n", "text/plain")
                if mode == "hang":
                    release.wait(srv.hang_s)
                    self.close_connection = True
                    return
                if route.delay_s > 0 and release.wait(route.delay_s):
                    self.close_connection = True  # stop() while delaying: go away without an answer
                    return
                if mode == "status":
                    return self._send(route.status, f"status {route.status}\n".encode(), "text/plain")
                if mode == "garbage":
                    return self._send(200, b"<html><body>502 Bad Gateway (not JSON)</body>", "text/html", route)
                body = route.body
                if mode == "big":
                    doc = json.loads(body)
                    doc["padding"] = "x" * (BODY_LIMIT + 4096)
                    body = json.dumps(doc).encode()
                return self._send(200, body, route.content_type, route)

            do_HEAD = do_GET

            def _send(self, status: int, body: bytes, ctype: str, route: Route | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    if route is not None and route.cache_control is not None:
                        self.send_header("Cache-Control", route.cache_control)
                    elif route is not None and route.max_age is not None:
                        self.send_header("Cache-Control", f"public, max-age={route.max_age}")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                except OSError:
                    self.close_connection = True

            def log_message(self, format, *args):  # noqa: A002 - no access log on stderr
                pass

        return Handler


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a peer that went away is not an error here
        pass
