#!/usr/bin/env python3
"""Soak (issue 7): mixed traffic through a real Envoy 1.40 (V8, `--concurrency 2`) with trustgate.wasm for a
while (10 minutes by default), counting every wrong decision and watching Envoy's memory.

Envoy answers routes itself (`direct_response`: no upstream to be the bottleneck) behind trustgate with three
providers: `static` (ES256, inline JWKS), `remote` (a JWKS this script serves on loopback and ROTATES) and `gk`
(gatekeeper HMAC, 60 s timestamp window, replay protection). Client threads on keep-alive connections send a
weighted mix, and every answer is compared with what it must be:

    valid_static      ES256 tokens, 80 % minted fresh, 20 % reused          -> 200
    valid_remote      tokens of the current remote signing key (50 % fresh) -> 200
    remote_old        tokens of earlier remote keys, minted long before    -> 200 while the key is published,
                      (the same token strings are reused across rotation)     401 once it was removed (+ grace)
    hmac_valid        fresh nonce, signed now                              -> 200
    hmac_replayed     an HMAC request accepted earlier, sent again          -> 401 replayed
    invalid           bad signature, expired, wrong audience, alg none,     -> 401
                      unknown kid, no credential, `/public/../static/x`
    public            /healthz with forged identity headers                 -> 200

Rotation, every `--rotate-s` (60 s): the JWKS server publishes {old, new}; `sign_delay` later (15 s) the
client signs with the new key; `remove_delay` later (30 s) only {new} is published. The filter learns a set
within its TTL (`max-age=5`, min_refresh_s 5), so a removed key's tokens are expected to get 401 from
`grace` (8 s) after removal; answers inside that window are counted as `grace` (either outcome is right).

Counts: wrongly accepted (a 2xx where a denial was due), wrongly rejected (a valid request not 200), 5xx,
other wrong statuses, client errors. Envoy's RSS is sampled every `--sample-s` (10 s); its growth after the
warm-up (150 s: the filter's bounded caches are full by then; the max after warm-up minus the first sample
after it) must stay under `--rss-growth-mib`.

Prints a summary and writes `bench/soak.json`. Exit status: 0 when every count is zero and RSS stays flat,
1 if not, 2 when the soak could not run.

Usage (repository root, after `make build`):
    .venv/bin/python scripts/soak.py                  # 10 minutes (make soak)
    .venv/bin/python scripts/soak.py --minutes 1      # quick mode (rotation every 20 s)
Options: --minutes, --rotate-s, --threads (8), --rate (total requests/s, 0 = as fast as possible; default
600), --sample-s, --warmup-s, --rss-growth-mib, --json, --wasm (else $TRUSTGATE_WASM, else the release build),
--envoy.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import gatekeeper_client as gk  # noqa: E402
import trustgate_e2e as h  # noqa: E402
from jwks_server import JwksServer  # noqa: E402

JWKS_PATH = "/jwks.json"
HMAC_CLIENT = "soak-client-0000-4000-8000-000000000001"
HMAC_SECRET = "soak-shared-secret-not-for-production"
HMAC_WINDOW_S = 60
TTL_S = 5  # max-age of the JWKS and min_refresh_s: how soon the filter sees a new set

# Share of valid tokens minted fresh (the rest reuse a small pool, the verified-token cache's hit path). Fresh
# tokens fill the filter's bounded verified-token cache (8,192 entries per worker) within about 100 s at the
# default rate, so that RSS is flat after the warm-up if nothing leaks.
FRESH_STATIC = 0.8
FRESH_REMOTE = 0.5

WEIGHTS = {
    "valid_static": 22,
    "valid_remote": 20,
    "remote_old": 10,
    "hmac_valid": 15,
    "hmac_replayed": 6,
    "invalid": 20,
    "public": 7,
}


def filter_config(static_jwk: dict) -> dict:
    owner = {"x-commit-owner": "${claims.principal_type:-human}:${claims.sub}"}
    return {
        "providers": {
            "static": {
                "jwt": {
                    "issuer": h.ISSUER,
                    "audiences": [h.AUDIENCE],
                    "algorithms": ["ES256"],
                    "keys": {"jwks": {"keys": [static_jwk]}},
                    "headers": owner,
                }
            },
            "remote": {
                "jwt": {
                    "issuer": h.ISSUER,
                    "audiences": [h.AUDIENCE],
                    "algorithms": ["ES256"],
                    "keys": {
                        "remote": {
                            "cluster": "jwks",
                            "authority": "idp.soak",
                            "path": JWKS_PATH,
                            "min_refresh_s": TTL_S,
                            "timeout_ms": 2000,
                        }
                    },
                    "headers": owner,
                }
            },
            "gk": {
                "hmac": {
                    "clients": {HMAC_CLIENT: {"name": "Soak", "secret": HMAC_SECRET}},
                    "timestamp_window_s": HMAC_WINDOW_S,
                    "body": "empty",
                    "headers": {"x-client-id": "${client.id}"},
                }
            },
        },
        "strip_headers": h.STRIP_HEADERS,
        "rules": [
            {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
            {"name": "public", "match": {"path_prefix": "/public/"}, "allow": "public"},
            {"name": "static", "match": {"path_prefix": "/static/"}, "require": "static"},
            {"name": "remote", "match": {"path_prefix": "/remote/"}, "require": "remote"},
            {"name": "hmac", "match": {"path_prefix": "/hmac/"}, "require": "gk"},
            {"name": "default", "match": {}, "require": "static"},
        ],
    }


# ----------------------------------------------------------------------------------------------- rotation


@dataclass
class RemoteKey:
    key: h.SigningKey
    published_at: float
    removed_at: float | None = None
    tokens: list[str] = field(default_factory=list)  # minted once, reused for its whole life (and after)


class Rotation(threading.Thread):
    """Publishes the remote key set and rotates it every `period` seconds (see the module docstring)."""

    def __init__(self, server: JwksServer, period: float, t0: float) -> None:
        super().__init__(name="rotation", daemon=True)
        self.server, self.period, self.t0 = server, period, t0
        self.sign_delay = max(3 * TTL_S, period / 4)
        self.remove_delay = max(self.sign_delay + 2, period / 2)
        self.grace = TTL_S + 3.0
        self.lock = threading.Lock()
        self.keys: list[RemoteKey] = []
        self.signing = 0  # index into keys
        self.rotations = 0
        self.events: list[tuple[float, str]] = []
        self._halt = threading.Event()
        self._add_key(published_at=t0 - 3600)  # the first key is there from the start
        self._publish()

    def _add_key(self, published_at: float) -> RemoteKey:
        n = len(self.keys)
        k = h.generate_key("ES256", f"remote-{n}")
        rk = RemoteKey(k, published_at)
        rk.tokens = [h.mint(k, h.claims(jti=f"r{n}-{i}", exp=int(time.time()) + 7200)) for i in range(16)]
        self.keys.append(rk)
        return rk

    def _publish(self) -> None:
        live = [rk.key.jwk for rk in self.keys if rk.removed_at is None]
        self.server.set_jwks(JWKS_PATH, live, max_age=TTL_S)

    def _event(self, what: str) -> None:
        self.events.append((round(time.monotonic() - self.t0, 1), what))

    def run(self) -> None:
        n = 0
        while True:
            n += 1
            start = self.t0 + n * self.period
            if self._sleep_until(start):
                return
            with self.lock:
                new = self._add_key(time.monotonic())
                self._publish()
                self.rotations += 1
            self._event(f"published {new.key.kid}")
            if self._sleep_until(start + self.sign_delay):
                return
            with self.lock:
                self.signing = len(self.keys) - 1
            self._event(f"signing with {new.key.kid}")
            if self._sleep_until(start + self.remove_delay):
                return
            with self.lock:
                removed = [rk for rk in self.keys[:-1] if rk.removed_at is None]
                for rk in removed:
                    rk.removed_at = time.monotonic()
                self._publish()
            self._event("removed " + ", ".join(rk.key.kid for rk in removed))

    def _sleep_until(self, t: float) -> bool:
        return self._halt.wait(max(0.0, t - time.monotonic()))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def current_token(self, fresh: bool) -> str:
        with self.lock:
            rk = self.keys[self.signing]
        if fresh:
            return h.mint(rk.key, h.claims(jti=uuid.uuid4().hex))
        return random.choice(rk.tokens)

    def old_token(self, rng: random.Random) -> tuple[str, str] | None:
        """A token of an earlier key and what it must get now: "200", "401" or "grace"."""
        now = time.monotonic()
        with self.lock:
            old = self.keys[: self.signing]
            if not old:
                return None
            rk = rng.choice(old)
            token = rng.choice(rk.tokens)
            if rk.removed_at is None:
                want = "200"
            elif now - rk.removed_at >= self.grace:
                want = "401"
            else:
                want = "grace"
        return token, want


# ----------------------------------------------------------------------------------------------- traffic


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    outcomes: Counter = field(default_factory=Counter)  # "category want -> status reason"
    wrongly_accepted: int = 0
    wrongly_rejected: int = 0
    server_errors: int = 0
    other_wrong: int = 0
    client_errors: int = 0
    grace: int = 0
    examples: list[str] = field(default_factory=list)

    def record(self, category: str, want: str, status: int, reason: str | None, error: str | None = None,
               want_reason: str | None = None, detail: str | None = None) -> None:
        """`want`: the status due ("200", "401", …) or "grace" (either); `want_reason`: the denial's
        `x-trustgate-reason` due as well (else any); `detail`: the request, for the examples."""
        with self.lock:
            self.sent += 1
            self.outcomes[f"{category} want={want} -> {status} {reason or error or ''}".strip()] += 1
            wrong = None
            if error is not None:
                self.client_errors += 1
                wrong = "client error"
            elif status >= 500:
                self.server_errors += 1
                wrong = "5xx"
            elif want == "grace":
                self.grace += 1
            elif want == "200" and status != 200:
                self.wrongly_rejected += 1
                wrong = "wrongly rejected"
            elif want != "200" and 200 <= status < 300:
                self.wrongly_accepted += 1
                wrong = "WRONGLY ACCEPTED"
            elif want != "200" and str(status) != want:
                self.other_wrong += 1
                wrong = "wrong status"
            elif want_reason is not None and reason != want_reason:
                self.other_wrong += 1
                wrong = f"wrong reason (want {want_reason})"
            if wrong and len(self.examples) < 20:
                example = f"{wrong}: {category} want {want}, got {status} {reason or error or ''}"
                self.examples.append(example + (f" ({detail})" if detail else ""))

    @property
    def failures(self) -> int:
        return self.wrongly_accepted + self.wrongly_rejected + self.server_errors + self.other_wrong + self.client_errors


class Traffic:
    def __init__(self, port: int, rotation: Rotation, static_key: h.SigningKey, tally: Tally) -> None:
        self.port, self.rotation, self.static_key, self.tally = port, rotation, static_key, tally
        self.static_pool = [h.mint(static_key, h.claims(jti=f"s{i}", exp=int(time.time()) + 7200)) for i in range(64)]
        other = h.generate_key("ES256", static_key.kid)
        now = int(time.time())
        self.invalid = [
            ("bad_signature", "/static/bad", [bearer(h.mint(other, h.claims(exp=now + 7200)))]),
            ("expired", "/static/exp", [bearer(h.mint(static_key, h.claims(iat=now - 7200, exp=now - 3600)))]),
            ("wrong_audience", "/static/aud", [bearer(h.mint(static_key, h.claims(aud="someone-else", exp=now + 7200)))]),
            ("alg_none", "/static/none", [bearer(h.unsigned_token(h.claims(exp=now + 7200)))]),
            ("unknown_kid", "/remote/kid", [bearer(h.mint(other, h.claims(exp=now + 7200), kid="never-published"))]),
            ("missing", "/static/none-at-all", []),
            ("path_trick", "/public/../static/x", []),
            ("tampered", "/static/tampered", [bearer(h.tamper_payload(h.mint(static_key, h.claims(exp=now + 7200)), sub="mallory"))]),
        ]
        self.accepted_hmac: deque = deque(maxlen=2000)  # (monotonic, path, authorization)
        self.hmac_lock = threading.Lock()

    def pick(self, rng: random.Random) -> tuple[str, str, str, list]:
        """(category, expected status or "grace", path, headers)."""
        category = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        if category == "valid_static":
            token = h.mint(self.static_key, h.claims(jti=uuid.uuid4().hex)) if rng.random() < FRESH_STATIC else rng.choice(self.static_pool)
            return category, "200", f"/static/{rng.randrange(1000)}", [bearer(token)]
        if category == "valid_remote":
            return category, "200", f"/remote/{rng.randrange(1000)}", [bearer(self.rotation.current_token(rng.random() < FRESH_REMOTE))]
        if category == "remote_old":
            got = self.rotation.old_token(rng)
            if got is None:
                return self.pick(rng)
            token, want = got
            return category, want, "/remote/old", [bearer(token)]
        if category == "hmac_valid":
            path = f"/hmac/{rng.randrange(1000)}"
            auth = gk.sign_fast(HMAC_CLIENT, HMAC_SECRET, "GET", path, int(time.time()), str(uuid.uuid4()))
            return category, "200", path, [("authorization", auth)]
        if category == "hmac_replayed":
            with self.hmac_lock:
                fresh = [a for a in self.accepted_hmac if time.monotonic() - a[0] < HMAC_WINDOW_S / 2]
            if not fresh:
                return self.pick(rng)
            _, path, auth = rng.choice(fresh)
            return category, "401", path, [("authorization", auth)]
        if category == "invalid":
            name, path, headers = rng.choice(self.invalid)
            return f"invalid_{name}", "401", path, headers
        forged = [("x-commit-owner", "human:mallory"), ("X-User", "mallory")]
        return "public", "200", "/healthz", forged

    def worker(self, deadline: float, interval: float, seed: int) -> None:
        rng = random.Random(seed)
        conn: h.KeepAlive | None = None
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            if interval > 0:
                next_at = pace(next_at, interval)
            category, want, path, headers = self.pick(rng)
            try:
                if conn is None or conn.closed:
                    if conn is not None:
                        conn.close()
                    conn = h.KeepAlive(self.port, timeout=15)
                r = conn.request(path, headers)
                reason = r.header("x-trustgate-reason")
                self.tally.record(category, want, r.status, reason)
                if category == "hmac_valid" and r.status == 200:
                    with self.hmac_lock:
                        self.accepted_hmac.append((time.monotonic(), path, headers[0][1]))
            except (OSError, http.client.HTTPException, h.HarnessError) as e:
                self.tally.record(category, want, 0, None, error=type(e).__name__)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def pace(next_at: float, interval: float) -> float:
    """Sleeps until `next_at` and returns the next slot (never more than 1 s of backlog)."""
    now = time.monotonic()
    if now < next_at:
        time.sleep(next_at - now)
    return max(next_at + interval, time.monotonic() - 1.0)


def bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


# ----------------------------------------------------------------------------------------------- RSS


class RssSampler(h.Sampler):
    def __init__(self, pid: int, t0: float, interval: float, tally: Tally) -> None:
        super().__init__("rss", interval)
        self.pid, self.t0, self.tally = pid, t0, tally
        self.samples: list[dict] = []

    def sample(self) -> None:
        self.samples.append(
            {
                "t_s": round(time.monotonic() - self.t0, 1),
                "rss_kib": h.rss_kib(self.pid) or 0,
                "requests": self.tally.sent,
                "load1": round(os.getloadavg()[0], 2),
            }
        )

    def run(self) -> None:
        self.sample()  # the start, before the first interval
        super().run()


# ----------------------------------------------------------------------------------------------- run


class Setup(NamedTuple):
    """What both soaks (this one and scripts/soak_fleet.py) start from."""

    duration: float
    warmup: float
    wasm: Path
    envoy_bin: str
    workdir: Path
    wasm_copy: Path  # a copy: a rebuild during the soak does not change what runs


def setup(args: argparse.Namespace, name: str) -> Setup | None:
    """Durations, the wasm (None, with a message, when it is not built), Envoy and a work dir."""
    duration = args.minutes * 60
    warmup = args.warmup_s if args.warmup_s is not None else (150.0 if duration >= 300 else duration / 3)
    wasm = Path(args.wasm or h.wasm_path()).resolve()
    if not wasm.is_file():
        print(f"{name}: no wasm at {wasm}: run `make build` (or pass --wasm)", file=sys.stderr)
        return None
    workdir = Path(tempfile.mkdtemp(prefix=f"trustgate-{name}-"))
    wasm_copy = workdir / "trustgate.wasm"
    shutil.copyfile(wasm, wasm_copy)
    return Setup(duration, warmup, wasm, args.envoy or h.envoy_binary(), workdir, wasm_copy)


def drive(worker, args: argparse.Namespace, deadline: float, seed: int, t0: float, tally: Tally, progress, others=()) -> float:
    """Runs `args.threads` client threads `worker(deadline, interval, seed + i)`, `args.rate` requests/s in all,
    until they (and the threads `others`) end, printing the counts and `progress()` every 30 s; returns the
    seconds since `t0`."""
    interval = args.threads / args.rate if args.rate > 0 else 0.0
    threads = [
        threading.Thread(target=worker, args=(deadline, interval, seed + i), name=f"client-{i}", daemon=True)
        for i in range(args.threads)
    ]
    for t in threads:
        t.start()
    last = 0.0
    while any(t.is_alive() for t in [*threads, *others]):
        time.sleep(1.0)
        el = time.monotonic() - t0
        if el - last >= 30:
            last = el
            print(
                f"  {el:5.0f} s  {tally.sent:>9,} requests  wrong accepted {tally.wrongly_accepted}  wrong rejected "
                f"{tally.wrongly_rejected}  5xx {tally.server_errors}  other {tally.other_wrong + tally.client_errors}  "
                f"{progress()}",
                flush=True,
            )
    return time.monotonic() - t0


def machine(load_start: tuple[float, float, float]) -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_start": load_start, "load_average_end": os.getloadavg()}


def rss_figures(samples: list[dict], column: str, warmup: float) -> tuple[dict, float]:
    """The RSS summary of one process (`column` of the samples, KiB) and its growth after the warm-up in MiB: the
    max after the warm-up minus the first sample after it."""
    after = [s for s in samples if s["t_s"] >= warmup]
    base = after[0][column] if after else samples[0][column]
    peak_after = max((s[column] for s in after), default=base)
    growth_mib = (peak_after - base) / 1024
    figures = {
        "start_mib": round(samples[0][column] / 1024, 1),
        "after_warmup_mib": round(base / 1024, 1),
        "peak_after_warmup_mib": round(peak_after / 1024, 1),
        "end_mib": round(samples[-1][column] / 1024, 1),
        "growth_after_warmup_mib": round(growth_mib, 1),
    }
    return figures, growth_mib


def write_result(result: dict, path: str) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return out


def print_counts(tally: Tally) -> None:
    print(f"wrongly accepted  {tally.wrongly_accepted}")
    print(f"wrongly rejected  {tally.wrongly_rejected}")
    print(f"5xx               {tally.server_errors}")


def print_end(load_start: tuple[float, float, float], failures: list[str], tally: Tally, out: Path, ok: bool) -> int:
    """The last lines of the summary; the exit status."""
    print(f"load average      start {load_start[0]:.2f}, end {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    if failures:
        print("wasm failures     " + "; ".join(failures[:3]))
    for e in tally.examples[:10]:
        print(f"  e.g. {e}")
    print(f"wrote {out}")
    print("result            " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def run(args: argparse.Namespace) -> int:
    su = setup(args, "soak")
    if su is None:
        return 2
    duration, warmup, wasm, envoy_bin, workdir, wasm_copy = su
    rotate_s = args.rotate_s or (60.0 if duration >= 240 else max(20.0, duration / 3))

    static_key = h.generate_key("ES256", "static-1")
    server = JwksServer()
    config = filter_config(static_key.jwk)
    tally = Tally()
    envoy = None
    rotation = None
    sampler = None
    try:
        def bootstrap(port: int, admin: int) -> dict:
            boot = h.gateway_bootstrap_direct_response(listener_port=port, admin_port=admin, filter_config=config, wasm=wasm_copy)
            boot["static_resources"]["clusters"].append(h.static_cluster("jwks", server.port))
            return boot

        t0 = time.monotonic()
        rotation = Rotation(server, rotate_s, t0)
        envoy = h.Envoy(envoy_bin, workdir / "envoy", bootstrap, name="soak").start()
        t0 = time.monotonic()
        rotation.t0 = t0
        load_start = os.getloadavg()
        print(
            f"soak: {args.minutes:g} min, {args.threads} threads, rate {args.rate or 'unlimited'} req/s, JWKS rotation every "
            f"{rotate_s:g} s (sign +{rotation.sign_delay:g} s, remove +{rotation.remove_delay:g} s, grace {rotation.grace:g} s), "
            f"warm-up {warmup:g} s; Envoy pid {envoy.proc.pid} (--concurrency 2), load average {load_start[0]:.2f}",
            flush=True,
        )
        # wait for the first remote key set, so the first requests are decidable
        ok = h.wait_until(lambda: envoy.stats("wasmcustom.trustgate.jwks.remote.").get("wasmcustom.trustgate.jwks.remote.keys", 0) >= 1, 15)
        if not ok:
            print("soak: the remote key set was never fetched\n" + envoy.log_tail(), file=sys.stderr)
            return 2
        rotation.start()
        sampler = RssSampler(envoy.proc.pid, t0, args.sample_s, tally)
        sampler.start()
        traffic = Traffic(envoy.port, rotation, static_key, tally)
        deadline = time.monotonic() + duration

        def progress() -> str:
            rss = sampler.samples[-1]["rss_kib"] / 1024 if sampler.samples else 0
            return f"grace {tally.grace}  RSS {rss:.1f} MiB  rotations {rotation.rotations}"

        elapsed = drive(traffic.worker, args, deadline, 1000, t0, tally, progress)
        sampler.stop()
        rotation.stop()
        stats = envoy.stats("wasmcustom.trustgate.")
        failures = h.wasm_failure_lines(envoy)
    finally:
        if rotation is not None and rotation.is_alive():
            rotation.stop()
        if envoy is not None:
            envoy.stop()
        server.close()

    # RSS after warm-up
    samples = sampler.samples
    rss, growth_mib = rss_figures(samples, "rss_kib", warmup)
    rss_ok = growth_mib <= args.rss_growth_mib
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine(load_start),
        "envoy": h.envoy_version(envoy_bin),
        "wasm": str(wasm),
        "settings": {
            "minutes": args.minutes,
            "threads": args.threads,
            "rate_limit_rps": args.rate,
            "rotate_s": rotate_s,
            "sign_delay_s": rotation.sign_delay,
            "remove_delay_s": rotation.remove_delay,
            "grace_s": rotation.grace,
            "warmup_s": warmup,
            "rss_growth_limit_mib": args.rss_growth_mib,
            "weights": WEIGHTS,
            "fresh_token_share": {"static": FRESH_STATIC, "remote": FRESH_REMOTE},
            "envoy_concurrency": 2,
        },
        "seconds": round(elapsed, 1),
        "requests": tally.sent,
        "requests_per_s": round(tally.sent / max(elapsed, 1e-9), 1),
        "wrongly_accepted": tally.wrongly_accepted,
        "wrongly_rejected": tally.wrongly_rejected,
        "server_errors_5xx": tally.server_errors,
        "other_wrong_status": tally.other_wrong,
        "client_errors": tally.client_errors,
        "grace_window_answers": tally.grace,
        "rotations": rotation.rotations,
        "rotation_events": rotation.events,
        "rss": {**rss, "samples": samples},
        "wasm_failures_in_log": failures[:10],
        "outcomes": dict(sorted(tally.outcomes.items())),
        "examples": tally.examples,
        "trustgate_stats": {k.removeprefix("wasmcustom.trustgate."): v for k, v in sorted(stats.items()) if v},
    }
    ok = tally.failures == 0 and rss_ok and not failures and tally.sent > 0
    result["ok"] = ok
    out = write_result(result, args.json)

    print()
    print(f"requests          {tally.sent:,} in {elapsed:.0f} s ({result['requests_per_s']:,.0f}/s), {rotation.rotations} JWKS rotations")
    print_counts(tally)
    print(f"other wrong       {tally.other_wrong} status, {tally.client_errors} client errors ({tally.grace} answers in rotation grace windows)")
    r = result["rss"]
    print(
        f"Envoy RSS         start {r['start_mib']} MiB, after warm-up ({warmup:g} s) {r['after_warmup_mib']} MiB, peak after "
        f"{r['peak_after_warmup_mib']} MiB, end {r['end_mib']} MiB: growth {r['growth_after_warmup_mib']} MiB "
        f"(limit {args.rss_growth_mib} MiB)"
    )
    return print_end(load_start, failures, tally, out, ok)


def options(doc: str, json_name: str, minutes_help: str) -> argparse.ArgumentParser:
    """The options of both soaks; each adds its own (--threads, --rate, …)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help=minutes_help)
    p.add_argument("--sample-s", type=float, default=10.0, help="RSS sampling interval (default 10)")
    p.add_argument("--warmup-s", type=float, default=None, help="RSS warm-up (default 150 for runs of 5 min or more, else a third)")
    p.add_argument("--rss-growth-mib", type=float, default=16.0, help="allowed RSS growth (of each Envoy) after warm-up (default 16)")
    p.add_argument("--json", default=str(REPO / "bench" / json_name), help=f"where to write the result (default bench/{json_name})")
    p.add_argument("--wasm", default=None, help="the module (default $TRUSTGATE_WASM, else the release build)")
    p.add_argument("--envoy", default=None, help="the Envoy binary (default .venv/bin/envoy, else PATH)")
    return p


def run_main(p: argparse.ArgumentParser, argv: list[str] | None, run_soak, name: str) -> int:
    args = p.parse_args(argv)
    if args.minutes <= 0:
        p.error("--minutes must be positive")
    try:
        return run_soak(args)
    except h.HarnessError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    p = options(__doc__, "soak.json", "how long (default 10; 1 = quick mode)")
    p.add_argument("--rotate-s", type=float, default=None, help="JWKS rotation period (default 60; shorter runs: a third of the run, at least 20)")
    p.add_argument("--threads", type=int, default=8, help="client threads, one keep-alive connection each (default 8)")
    p.add_argument("--rate", type=float, default=600.0, help="total requests per second (default 600; 0 = unlimited)")
    return run_main(p, argv, run, "soak")


if __name__ == "__main__":
    sys.exit(main())
