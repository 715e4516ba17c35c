"""Gatekeeper HMAC requests for the end-to-end tests, signed by the reference client (byteforge-hmac 0.2.0).

`sign()` builds the `Authorization` header with `byteforge_hmac.HMACClient._create_auth_header`, the very code
the gatekeeper's clients run. That method reads the clock (`time.time()`) and draws a nonce (`uuid.uuid4()`)
itself; to sign with a chosen timestamp or nonce (stale requests, the worked examples) those two are replaced
for the duration of the call, inside the byteforge module only, so the signature is still byteforge's.

`sign_fast()` is the same algorithm with Python's `hmac` directly (for floods of pre-signed requests);
`assert_same_as_reference()` checks it against byteforge.

The string to sign: `METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nBODY`; the header:
`HMAC client_id="…",timestamp="…",nonce="…",signature="<64 lowercase hex>"` (DESIGN, "Gatekeeper HMAC").
"""
from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
import uuid
from contextlib import contextmanager
from types import SimpleNamespace
from unittest import mock

import byteforge_hmac
from byteforge_hmac import HMACClient
from byteforge_hmac import hmac_client as _bf_module

REFERENCE_VERSION = "0.2.0"

_FIELD_RE = re.compile(r'(\w+)="([^"]*)"')
_PATCH_LOCK = threading.Lock()  # the patch below is module-wide: one signer at a time


def reference_version() -> str:
    return byteforge_hmac.__version__


def client(client_id: str, secret: str, base_url: str = "http://127.0.0.1") -> HMACClient:
    return HMACClient(client_id, secret, base_url=base_url)


@contextmanager
def _fixed(timestamp: int | None, nonce: str | None):
    """Make byteforge's own `time.time()` / `uuid.uuid4()` return the given values (only where given)."""
    if timestamp is None and nonce is None:
        yield
        return
    with _PATCH_LOCK:
        patches = []
        if timestamp is not None:
            fake_time = SimpleNamespace(time=lambda: float(timestamp))
            patches.append(mock.patch.object(_bf_module, "time", fake_time))
        if nonce is not None:
            fake_uuid = SimpleNamespace(uuid4=lambda: nonce)
            patches.append(mock.patch.object(_bf_module, "uuid", fake_uuid))
        for p in patches:
            p.start()
        try:
            yield
        finally:
            for p in reversed(patches):
                p.stop()


def sign(
    client_id: str,
    secret: str,
    method: str,
    path: str,
    body: str | bytes = "",
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> str:
    """The `Authorization` value byteforge-hmac makes for this request (now and a fresh uuid4 nonce unless
    given). `path` is signed exactly as given (byteforge signs whatever path string it is handed, query
    included if there is one)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    with _fixed(timestamp, nonce):
        return client(client_id, secret)._create_auth_header(method, path, body)


def fields(authorization: str) -> dict[str, str]:
    """`client_id`, `timestamp`, `nonce`, `signature` of a header made by `sign()`."""
    assert authorization.startswith("HMAC "), authorization
    return dict(_FIELD_RE.findall(authorization[5:]))


def build(client_id: str, timestamp: str | int, nonce: str, signature: str) -> str:
    return f'HMAC client_id="{client_id}",timestamp="{timestamp}",nonce="{nonce}",signature="{signature}"'


def with_fields(authorization: str, **changes) -> str:
    """The same header with some fields replaced (the signature is kept unless replaced: tampering)."""
    f = fields(authorization)
    f.update({k: str(v) for k, v in changes.items()})
    return build(f["client_id"], f["timestamp"], f["nonce"], f["signature"])


def string_to_sign(method: str, path: str, timestamp: str | int, nonce: str, body: str | bytes = "") -> bytes:
    if isinstance(body, str):
        body = body.encode("utf-8")
    return f"{method}\n{path}\n{timestamp}\n{nonce}\n".encode("utf-8") + body


def sign_fast(
    client_id: str, secret: str, method: str, path: str, timestamp: int, nonce: str, body: bytes = b""
) -> str:
    """The same header as `sign()`, computed with `hmac` directly (no patching, thread-safe, fast)."""
    sig = hmac.new(secret.encode("utf-8"), string_to_sign(method, path, timestamp, nonce, body), hashlib.sha256)
    return build(client_id, timestamp, nonce, sig.hexdigest())


def assert_same_as_reference(client_id: str, secret: str, samples: int = 3) -> None:
    """`sign_fast` == byteforge for a few requests (with and without a body)."""
    now = int(time.time())
    for i in range(samples):
        nonce = str(uuid.uuid4())
        body = "" if i % 2 == 0 else '{"i": %d}' % i
        method = "GET" if not body else "POST"
        ref = sign(client_id, secret, method, f"/flood/{i}", body, timestamp=now, nonce=nonce)
        fast = sign_fast(client_id, secret, method, f"/flood/{i}", now, nonce, body.encode())
        if ref != fast:
            raise AssertionError(f"sign_fast disagrees with byteforge-hmac for sample {i}")
