#!/usr/bin/env python3
"""Removes the proxy-wasm callbacks trustgate does not implement from the module's exports (`make build`).

The Rust SDK exports every callback of the ABI, and a host calls each exported one: Envoy makes a call into the
VM for `proxy_on_response_headers`, `proxy_on_response_body`, `proxy_on_log` and `proxy_on_done` on every
request, and skips a callback the module does not export (proxy-wasm-cpp-host's `ContextBase::on*`: Continue,
or "done"). trustgate does nothing in them (the SDK's defaults), so they go: about 6,600 of Envoy's instructions
per request (BENCHMARKS.md, "Instructions per request"). The functions stay in the code, unreferenced.

    python3 scripts/wasm_exports.py trim MODULE.wasm     # in place; running it again changes nothing
    python3 scripts/wasm_exports.py list MODULE.wasm

Only the export section changes; no dependencies. The binary format's encoders it writes that section with
(`uleb`, `vec`, `name`, `section`) also serve the e2e tests that assemble small modules by hand.
"""
import os
import sys

from wasm_imports import leb

# The SDK's default for each: Continue (headers, body, trailers), nothing (log), "done" (on_done). A stream's
# clean-up is in `Drop for Filter` (src/host/mod.rs), run when the SDK drops the context on proxy_on_delete.
UNUSED_CALLBACKS = (
    "proxy_on_request_trailers",
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_log",
    "proxy_on_done",
)
EXPORT_SECTION = 7


def uleb(n: int) -> bytes:
    """`n` as an unsigned LEB128 (the binary format's integers; the e2e tests build modules with these too)."""
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def vec(items: list[bytes]) -> bytes:
    """A vector: its length, then its items."""
    return uleb(len(items)) + b"".join(items)


def name(s: str) -> bytes:
    return uleb(len(s)) + s.encode()


def section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + uleb(len(payload)) + payload


def sections(buf: bytes):
    """(id, start of the section header, start of its body, end) for each section."""
    if buf[:4] != b"\0asm":
        raise SystemExit("not a wasm module")
    i = 8
    while i < len(buf):
        size, body = leb(buf, i + 1)
        yield buf[i], i, body, body + size
        i = body + size


def export_entries(buf: bytes, body: int):
    """(name, the entry's bytes) for each export."""
    count, i = leb(buf, body)
    for _ in range(count):
        start = i
        n, i = leb(buf, i)
        name = buf[i:i + n].decode()
        _, i = leb(buf, i + n + 1)  # kind byte, index
        yield name, buf[start:i]


def exports(path: str) -> list[str]:
    buf = open(path, "rb").read()
    return [export for sid, _, body, _ in sections(buf) if sid == EXPORT_SECTION
            for export, _ in export_entries(buf, body)]


def trim(path: str, drop=UNUSED_CALLBACKS) -> list[str]:
    """Rewrites the module without the exports named in `drop`; returns the names it removed."""
    buf = open(path, "rb").read()
    out, removed = bytearray(), []
    out += buf[:8]
    for sid, start, body, end in sections(buf):
        if sid != EXPORT_SECTION:
            out += buf[start:end]
            continue
        kept = []
        for export, entry in export_entries(buf, body):
            if export in drop:
                removed.append(export)
            else:
                kept.append(entry)
        out += section(EXPORT_SECTION, vec(kept))
    if removed:  # a new file: cargo hard-links the module to its copy in deps/, which stays as built
        tmp = f"{path}.trim"
        with open(tmp, "wb") as f:
            f.write(out)
        os.replace(tmp, path)
    return removed


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("trim", "list"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "list":
        print("\n".join(exports(sys.argv[2])))
    else:
        gone = trim(sys.argv[2])
        print(f"{sys.argv[2]}: removed the unused exports {', '.join(gone)}" if gone
              else f"{sys.argv[2]}: no unused export left")
