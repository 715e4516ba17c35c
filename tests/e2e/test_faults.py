"""Faults (issue 7), end to end in a real Envoy 1.40 (V8, `--concurrency 2`): a JWKS server that is down, slow or
answers garbage while many clients send requests at once, and what Envoy does when the wasm VM itself fails
(`failure_policy`).

test_remote_jwks.py covers the single-request behaviour (server down at startup, a stale set kept through 500 /
garbage / timeouts, recovery). Here the same faults happen UNDER LOAD: 32 client threads on keep-alive
connections (spread over both workers) sending valid tokens, tokens with a bad signature and tokens with an
unknown `kid`, and every single answer is checked:

- keys unavailable (never fetched, or only failures so far): exactly 503 `keys_unavailable` with `Retry-After`,
  for valid and invalid tokens alike; never a 200, never another 5xx, nothing reaches the upstream;
- after the server recovers: 200 for valid tokens (the upstream sees `x-commit-owner`), 401 for the others;
- a stale key set (fetched once, then the server fails in every way): valid tokens keep getting 200 throughout.

`failure_policy` (what Envoy does when the VM traps) is tested with a minimal hand-assembled proxy-wasm module
(`trap_wasm()`, no toolchain needed) whose `proxy_on_request_headers` executes `unreachable`, so the VM failure
is Envoy's behaviour, not a trustgate bug. Measured in Envoy 1.40 (and asserted below):

- FAIL_CLOSED: the request that trapped and every later one get 503 from Envoy (empty body); nothing reaches
  the upstream; the log says `Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable`.
- FAIL_OPEN: the trapping request gets 503, then the filter is skipped and requests reach the upstream
  UNFILTERED. Never use it for an auth filter.
- FAIL_RELOAD: 503 while the VM is reloaded with backoff (`wasm.<name>.vm_reload_backoff`); a VM that traps
  again keeps failing closed.
- An invalid trustgate config (on_configure returns false): Envoy refuses it; at startup it exits non-zero
  (test_config_refused.py), through LDS the update is rejected and the old listener keeps serving
  (test_reload.py).

Runs in about 40 s.
"""
from __future__ import annotations

import http.client
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import trustgate_e2e as h

from jwks_server import JwksServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import wasm_exports as wasm_bin  # noqa: E402  (the binary format's encoders)

OWNER = "x-commit-owner"
AUTHORITY = "idp.test"
THREADS = 32
UNAVAILABLE = (503, "keys_unavailable")


# ----------------------------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Sent:
    kind: str  # "valid", "bad_sig", "unknown_kid"
    path: str
    status: int  # 0: the connection failed
    reason: str | None
    retry_after: str | None
    error: str | None = None


def bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


def load(port: int, requests: list[tuple[str, str, list]], threads: int = THREADS) -> list[Sent]:
    """Send `requests` ((kind, path, headers)) from `threads` threads at once, each on its own keep-alive
    connection (reopened if Envoy closes it). Returns one `Sent` per request."""
    chunks = [requests[i::threads] for i in range(threads)]
    start = threading.Barrier(threads, timeout=30)

    def run(chunk: list) -> list[Sent]:
        out: list[Sent] = []
        conn: h.KeepAlive | None = None
        try:
            start.wait()
        except threading.BrokenBarrierError:
            pass
        for kind, path, headers in chunk:
            try:
                if conn is None or conn.closed:
                    if conn is not None:
                        conn.close()
                    conn = h.KeepAlive(port, timeout=15)
                r = conn.request(path, headers)
                reason = r.header("x-trustgate-reason")
                out.append(Sent(kind, path, r.status, reason, r.header("retry-after")))
            except (OSError, http.client.HTTPException, h.HarnessError) as e:
                out.append(Sent(kind, path, 0, None, None, repr(e)))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
        return out

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(run, chunks))
    return [s for r in results for s in r]


def summary(sent: list[Sent]) -> dict[str, int]:
    return dict(Counter(f"{s.kind}:{s.status}:{s.reason or s.error or ''}" for s in sent))


@dataclass
class Tokens:
    valid: str
    bad_sig: str
    unknown_kid: str

    def mix(self, tag: str, n: int) -> list[tuple[str, str, list]]:
        """n requests: 2/4 valid, 1/4 bad signature, 1/4 unknown kid; each path unique."""
        kinds = ["valid", "bad_sig", "valid", "unknown_kid"]
        out = []
        for i in range(n):
            kind = kinds[i % 4]
            out.append((kind, f"/p/{tag}/{kind}/{i}", [bearer(getattr(self, kind))]))
        return out


def tokens_for(key: h.SigningKey) -> Tokens:
    other = h.generate_key("ES256", key.kid)  # same kid, another key
    return Tokens(
        valid=h.mint(key, h.claims()),
        bad_sig=h.mint(other, h.claims()),
        unknown_kid=h.mint(other, h.claims(), kid="not-published"),
    )


def assert_all_unavailable(sent: list[Sent], upstream: h.EchoUpstream, tag: str) -> None:
    """Keys unavailable: every answer is 503 keys_unavailable with a Retry-After, and nothing got through."""
    bad = [s for s in sent if (s.status, s.reason) != UNAVAILABLE or not (s.retry_after or "").strip().isdigit()]
    assert not bad, f"[{tag}] {len(bad)}/{len(sent)} answers were not 503 keys_unavailable + Retry-After: {summary(sent)}"
    leaked = [s for s in upstream.seen if s.path.startswith(f"/p/{tag}")]
    assert not leaked, f"[{tag}] {len(leaked)} requests reached the upstream while keys were unavailable"


# (status, reason) of each kind of request once keys are available
DECIDED = {"valid": (200, None), "bad_sig": (401, "bad_signature"), "unknown_kid": (401, "unknown_kid")}


def assert_all_decided(sent: list[Sent], upstream: h.EchoUpstream, tag: str) -> None:
    """Keys available: valid -> 200 (and the upstream saw alice), the others -> 401; nothing else."""
    bad = [s for s in sent if (s.status, s.reason) != DECIDED[s.kind]]
    assert not bad, f"[{tag}] {len(bad)}/{len(sent)} wrong answers: {summary(sent)}"
    seen = {s.path: s for s in upstream.seen if s.path.startswith(f"/p/{tag}")}
    valid_paths = {s.path for s in sent if s.kind == "valid"}
    assert set(seen) == valid_paths, (
        f"[{tag}] the upstream saw {len(seen)} requests, want exactly the {len(valid_paths)} valid ones "
        f"(extra: {sorted(set(seen) - valid_paths)[:5]})"
    )
    wrong_owner = [p for p, s in seen.items() if s.values(OWNER) != ["human:alice"] or s.values("authorization")]
    assert not wrong_owner, f"[{tag}] identity/credential wrong at the upstream for {wrong_owner[:5]}"


def assert_no_unexpected_5xx(sent: list[Sent], tag: str) -> None:
    bad = [s for s in sent if s.status == 0 or (s.status >= 500 and (s.status, s.reason) != UNAVAILABLE)]
    assert not bad, f"[{tag}] 5xx other than 503 keys_unavailable, or failed connections: {summary(bad)}"


# ----------------------------------------------------------------------------------------------- Envoy + JWKS


def provider(path: str, cluster: str, **remote) -> dict:
    return {
        "jwt": {
            "issuer": h.ISSUER,
            "audiences": [h.AUDIENCE],
            "algorithms": ["ES256"],
            "keys": {"remote": {"cluster": cluster, "authority": AUTHORITY, "path": path, **remote}},
            "headers": {OWNER: h.OWNER_TEMPLATE},
        }
    }


def start_envoy(envoy_bin, wasm, upstream, workdir, server: JwksServer, name: str, **remote) -> h.Envoy:
    config = {
        "providers": {"idp": provider("/jwks.json", "jwks", **remote)},
        "strip_headers": h.STRIP_HEADERS,
        "rules": [
            {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
            {"name": "api", "match": {"path_prefix": "/p/"}, "require": "idp"},
        ],
    }
    return h.start_gateway(envoy_bin, wasm, upstream, workdir, config, {"jwks": server.port}, name)


def recover(envoy: h.Envoy, upstream: h.EchoUpstream, toks: Tokens, tag: str, timeout: float = 40.0) -> list[Sent]:
    """After the server is fixed: rounds of load until every valid token gets 200. Each answer on the way is
    503 keys_unavailable or the right decision, never anything else. Returns everything sent."""
    everything: list[Sent] = []
    deadline = time.monotonic() + timeout
    rnd = 0
    while True:
        rnd += 1
        sent = load(envoy.port, toks.mix(f"{tag}-r{rnd}", 64), threads=16)
        everything += sent
        wrong = [s for s in sent if (s.status, s.reason) not in (UNAVAILABLE, DECIDED[s.kind])]
        assert not wrong, f"[{tag}] while recovering: {summary(wrong)}"
        if all((s.status, s.reason) == DECIDED[s.kind] for s in sent):
            return everything
        assert time.monotonic() < deadline, (
            f"[{tag}] still not serving {timeout:.0f}s after the JWKS server recovered: {summary(sent)}\n"
            + "\n".join(h.wasm_log_lines(envoy, "trustgate: jwks")[-10:])
        )
        time.sleep(0.5)


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.clear()


@pytest.mark.parametrize(
    "fault",
    [
        "down",  # connection refused
        "slow",  # answers after 1.5 s, past timeout_ms 500
        "garbage",  # 200 text/html, not JSON
        "status500",
    ],
)
def test_keys_unavailable_under_load_then_recovery(envoy_bin, wasm, upstream, tmp_path, fault):
    """No key set was ever fetched: 384 concurrent requests (valid, bad signature, unknown kid) all get 503
    keys_unavailable + Retry-After; when the server is fixed, the same load gets 200 / 401 only."""
    key = h.generate_key("ES256", "k1")
    toks = tokens_for(key)
    server = JwksServer(start=fault != "down", hang_s=10)
    server.set_jwks("/jwks.json", [key.jwk])
    if fault == "slow":
        server.set_delay("/jwks.json", 1.5)
    elif fault == "garbage":
        server.set_mode("/jwks.json", "garbage")
    elif fault == "status500":
        server.set_mode("/jwks.json", "status", status=500)
    envoy = start_envoy(envoy_bin, wasm, upstream, tmp_path, server, f"faults-{fault}", startup_wait_ms=100, timeout_ms=500)
    try:
        sent = load(envoy.port, toks.mix(fault, 12 * THREADS))
        assert_all_unavailable(sent, upstream, fault)

        # fix the server
        if fault == "down":
            server.start()
        elif fault == "slow":
            server.set_delay("/jwks.json", 0.2)  # slow, but within timeout_ms
        else:
            server.set_mode("/jwks.json", "ok")
        during = recover(envoy, upstream, toks, f"{fault}-recovering")
        assert_no_unexpected_5xx(during, fault)

        upstream.clear()
        sent = load(envoy.port, toks.mix(f"{fault}-after", 12 * THREADS))
        assert_all_decided(sent, upstream, f"{fault}-after")
        stats = envoy.stats("wasmcustom.trustgate.jwks.idp.")
        assert stats.get("wasmcustom.trustgate.jwks.idp.fetch_failed", 0) >= 1, stats
        assert stats.get("wasmcustom.trustgate.jwks.idp.keys") == 1, stats
        assert not h.wasm_failure_lines(envoy), h.wasm_failure_lines(envoy)[:5]
    finally:
        envoy.stop()
        server.close()


def test_stale_keys_keep_serving_under_load_while_the_server_fails(envoy_bin, wasm, upstream, tmp_path):
    """A key set was fetched (TTL 1 s), then the server goes down, answers 500, garbage, hangs past the
    timeout: under load the whole time, valid tokens get 200 and the others 401; no 5xx at all."""
    key = h.generate_key("ES256", "k1")
    toks = tokens_for(key)
    server = JwksServer(hang_s=5)
    server.set_jwks("/jwks.json", [key.jwk], max_age=1)
    envoy = start_envoy(envoy_bin, wasm, upstream, tmp_path, server, "faults-stale", timeout_ms=300, min_refresh_s=1)
    try:
        got = h.wait_until(lambda: envoy.stats("wasmcustom.trustgate.jwks.idp.").get("wasmcustom.trustgate.jwks.idp.keys", 0) >= 1, 10)
        assert got, "the initial key set was not fetched"
        all_sent: list[Sent] = []
        for phase in ("down", "status", "garbage", "hang", "slow-ok"):
            if phase == "down":
                server.stop()
            else:
                server.start()
                if phase == "status":
                    server.set_mode("/jwks.json", "status", status=500)
                elif phase in ("garbage", "hang"):
                    server.set_mode("/jwks.json", phase)
                else:
                    server.release_hangs()
                    server.set_mode("/jwks.json", "ok")
                    server.set_delay("/jwks.json", 0.2)
            upstream.clear()
            t0 = time.monotonic()
            sent: list[Sent] = []
            while time.monotonic() - t0 < 1.5:  # keep the load on across at least one refresh attempt
                sent += load(envoy.port, toks.mix(f"stale-{phase}-{len(sent)}", 4 * THREADS))
            assert_all_decided(sent, upstream, f"stale-{phase}")
            all_sent += sent
        assert_no_unexpected_5xx(all_sent, "stale")
        stats = envoy.stats("wasmcustom.trustgate.jwks.idp.")
        assert stats.get("wasmcustom.trustgate.jwks.idp.fetch_failed", 0) >= 3, f"the faults did not show: {stats}"
        lines = h.wasm_log_lines(envoy, "trustgate: jwks")
        for needle in ("status 500", "invalid JSON", "timeout"):
            assert any(needle in l for l in lines), f"no `{needle}` line:\n" + "\n".join(lines[-15:])
        assert not h.wasm_failure_lines(envoy), h.wasm_failure_lines(envoy)[:5]
    finally:
        envoy.stop()
        server.close()


# ----------------------------------------------------------------------------------------------- failure_policy


def trap_wasm(trap_in: str | None = "proxy_on_request_headers") -> bytes:
    """A minimal proxy-wasm (ABI 0.2.1) module with no imports: configures fine (`proxy_on_vm_start` and
    `proxy_on_configure` return 1), continues every request, except that `trap_in` executes `unreachable`.
    WebAssembly binary format 1.0, assembled by hand."""
    i32 = b"\x7f"

    def ftype(params: int, results: int) -> bytes:
        return b"\x60" + wasm_bin.vec([i32] * params) + wasm_bin.vec([i32] * results)

    types = [ftype(0, 0), ftype(2, 0), ftype(2, 1), ftype(3, 1), ftype(1, 1), ftype(1, 0)]
    ret1, ret0, nop, trap = b"\x41\x01\x0b", b"\x41\x00\x0b", b"\x0b", b"\x00\x0b"
    funcs = [  # (export, type index, body)
        ("proxy_abi_version_0_2_1", 0, nop),
        ("proxy_on_context_create", 1, nop),
        ("proxy_on_vm_start", 2, ret1),
        ("proxy_on_configure", 2, ret1),
        ("proxy_on_request_headers", 3, ret0),  # 0 = Continue
        ("proxy_on_memory_allocate", 4, b"\x41\x80\x08\x0b"),  # a fixed buffer at 1024
        ("proxy_on_done", 4, ret1),
        ("proxy_on_delete", 5, nop),
        ("proxy_on_log", 5, nop),
    ]
    funcs = [(n, t, trap if n == trap_in else b) for n, t, b in funcs]
    module = b"\x00asm\x01\x00\x00\x00"
    module += wasm_bin.section(1, wasm_bin.vec(types))
    module += wasm_bin.section(3, wasm_bin.vec([wasm_bin.uleb(t) for _, t, _ in funcs]))
    module += wasm_bin.section(5, wasm_bin.vec([b"\x00" + wasm_bin.uleb(2)]))  # memory: 2 pages
    exports = [wasm_bin.name(n) + b"\x00" + wasm_bin.uleb(i) for i, (n, _, _) in enumerate(funcs)] + [wasm_bin.name("memory") + b"\x02\x00"]
    module += wasm_bin.section(7, wasm_bin.vec(exports))
    module += wasm_bin.section(10, wasm_bin.vec([wasm_bin.uleb(len(b"\x00" + body)) + b"\x00" + body for _, _, body in funcs]))
    return module


def policy_envoy(envoy_bin, upstream, workdir: Path, module: bytes, policy: str) -> h.Envoy:
    wasm_file = workdir / "module.wasm"
    wasm_file.write_bytes(module)

    def bootstrap(port: int, admin: int) -> dict:
        boot = h.gateway_bootstrap(listener_port=port, admin_port=admin, upstream_port=upstream.port, filter_config="{}", wasm=wasm_file)
        hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["http_filters"][0]["typed_config"]["config"]["failure_policy"] = policy
        return boot

    envoy = h.Envoy(envoy_bin, workdir, bootstrap, name=f"policy-{policy}")
    return h.start_or_fail(envoy)


def probe(envoy: h.Envoy, n: int = 6) -> list[tuple[str, int]]:
    """n requests alternating HTTP/1.1 and HTTP/2, fresh connections (so both workers are hit)."""
    out = []
    for i in range(n):
        proto = h.PROTOCOLS["http1" if i % 2 == 0 else "http2"]
        r = proto(envoy.port, f"/policy/{i}", [])
        out.append(("http1" if i % 2 == 0 else "http2", r.status))
    return out


TRAP_LOG = "Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable"


def test_control_module_forwards(envoy_bin, upstream, tmp_path):
    """The hand-made module without the trap works (so the tests below are about the trap)."""
    envoy = policy_envoy(envoy_bin, upstream, tmp_path, trap_wasm(None), "FAIL_CLOSED")
    try:
        assert probe(envoy, 4) == [("http1", 200), ("http2", 200)] * 2
        assert len(upstream.seen) == 4
    finally:
        envoy.stop()


def test_fail_closed_refuses_every_request_after_a_vm_trap(envoy_bin, upstream, tmp_path):
    envoy = policy_envoy(envoy_bin, upstream, tmp_path, trap_wasm(), "FAIL_CLOSED")
    try:
        got = probe(envoy, 8)
        assert all(status == 503 for _, status in got), f"FAIL_CLOSED after a trap: {got}"
        assert upstream.seen == [], f"a request reached the upstream through a failed VM: {upstream.seen!r}"
        assert envoy.wait_for_log(lambda l: TRAP_LOG in l, since=0, timeout=5), envoy.log_tail()  # a fresh process
        # the failed VM stays failed: every request for the next second too
        assert h.holds(lambda: all(status == 503 for _, status in probe(envoy, 2)), 1.0)
        assert upstream.seen == []
    finally:
        envoy.stop()


def test_fail_open_lets_requests_through_unfiltered_after_a_vm_trap(envoy_bin, upstream, tmp_path):
    """Why trustgate's configs say FAIL_CLOSED: with FAIL_OPEN, once the VM has failed the filter is skipped
    and requests reach the upstream without any check."""
    envoy = policy_envoy(envoy_bin, upstream, tmp_path, trap_wasm(), "FAIL_OPEN")
    try:
        # The first request each worker's VM sees traps (503); which request that is depends on which worker
        # accepts each fresh connection. Probe until both workers (--concurrency 2) have trapped, or 60 requests.
        got: list[tuple[str, int]] = []
        while [s for _, s in got].count(503) < 2 and len(got) < 60:
            got += probe(envoy, 6)
        statuses = [s for _, s in got]
        # 60 fresh connections that all missed one of the two workers: a 2^-59 chance, so both must have trapped
        assert set(statuses) <= {200, 503} and statuses.count(503) == 2, got
        assert len(upstream.seen) == statuses.count(200), "FAIL_OPEN: every 200 was forwarded unfiltered"
        # Both VMs have failed: from now on every request is forwarded unchecked, whichever worker.
        later = probe(envoy, 6)
        assert [s for _, s in later] == [200] * 6, f"FAIL_OPEN after both VMs trapped: {later}"
    finally:
        envoy.stop()


def test_fail_reload_keeps_failing_closed_while_reloading(envoy_bin, upstream, tmp_path):
    envoy = policy_envoy(envoy_bin, upstream, tmp_path, trap_wasm(), "FAIL_RELOAD")
    try:
        got = probe(envoy, 8)
        assert all(status == 503 for _, status in got), f"FAIL_RELOAD with a module that always traps: {got}"
        assert upstream.seen == []
        stats = envoy.stats("wasm.")
        assert any(k.endswith("vm_reload_backoff") and v > 0 for k, v in stats.items()), stats
    finally:
        envoy.stop()


def test_every_shipped_envoy_config_fails_closed():
    """The configs users copy say FAIL_CLOSED (Envoy) / FAIL_CLOSE (Istio), as does the e2e harness."""
    for path in sorted((h.REPO / "envoy").rglob("*.yaml")):
        text = path.read_text()
        if "envoy.filters.http.wasm" in text or "WasmPlugin" in text or "vm_config:" in text:  # vm_config: an ECDS resource
            assert "failure_policy: FAIL_CLOSED" in text or "failStrategy: FAIL_CLOSE" in text, f"{path} does not fail closed"
        assert "FAIL_OPEN" not in text, f"{path} mentions FAIL_OPEN"
    harness = h.wasm_http_filter("{}", Path("/x.wasm"))
    assert harness["typed_config"]["config"]["failure_policy"] == "FAIL_CLOSED"
