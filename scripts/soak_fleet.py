#!/usr/bin/env python3
"""Fleet soak (issue 16): `make soak` for a fleet. Two Envoys 1.40 (V8, each `--concurrency 2`) with
trustgate.wasm share replay nonces and rate counters in one Redis through webdis (`state.redis`), both from the
Debian packages (`make fleet-deps`), for a while (10 minutes by default); every answer is checked and the
memory of both proxies and the keys in Redis are watched.

Envoy answers routes itself (`direct_response`) behind trustgate with the providers of tests/e2e/test_fleet.py:
gatekeeper HMAC (`gatekeeper`), RFC 9421 HTTP message signatures (`partners`), Signet proofs (`agents`) and a JWT with a
DPoP proof (`corp`), all of which record their nonce (or proof `jti`) in the store. Client threads, each with a
keep-alive connection to both proxies, send a weighted mix, each request to a randomly chosen proxy:

    <kind>_valid       a fresh signed request (hmac, httpsig, signet, dpop)     -> 200
    <kind>_replay      the same request, at once, to the OTHER proxy            -> 401 replayed
                                                                                   (DPoP: dpop_proof_replayed)
    replay_later       an accepted request of the last 15 s, to either proxy    -> 401 with the replay reason
    race               one fresh HMAC request sent to both proxies at the same  -> one 200, one 401 replayed
                       time (both written before either answer is read)
    invalid            bad MAC, stale timestamp, unknown client, a signature by -> 401
                       another key, a proof of another master, a DPoP token
                       without its proof, no credential, `/healthz/../api/x`
    public             /healthz with forged identity headers                    -> 200

A rate-limit thread checks that a client limit is one limit across the fleet: client `fleet-limited` may make
LIMIT (8) requests per WINDOW_S (10 s). Every 11 s or so it sends a burst of BURST (12) fresh signed requests from
4 threads, alternating between the proxies, and waits for the window to expire before the next one (the window
starts at the burst's first request, so it has surely expired WINDOW_S after the burst's last answer): exactly
LIMIT of each burst must be 200 and the rest 429 `rate_limited`. A burst slower than WINDOW_S - 1 s (a starved
machine) is not judged and is counted as such.

Counts (as `make soak`): wrongly accepted (a 2xx where a denial was due: a replay accepted, a limit overrun),
wrongly rejected (a valid request not 200), 5xx (503 `state_unavailable` included), other wrong statuses or
reasons, client errors. Every `--sample-s` (10 s): the RSS of both Envoys, Redis and webdis, and every key in
Redis (one `EVAL`): how many, how many outside the prefix, how many without a TTL (both must stay 0). Each
Envoy's RSS growth after the warm-up must stay under `--rss-growth-mib`.

Prints a summary and writes `bench/soak-fleet.json`. Exit status: 0 when every count is zero, every key has the
prefix and a TTL and RSS stays flat; 1 if not; 2 when the soak could not run.

Usage (repository root, after `make build build-cli fleet-deps dpop-client-deps`):
    .venv/bin/python scripts/soak_fleet.py                 # 10 minutes (make soak-fleet)
    .venv/bin/python scripts/soak_fleet.py --minutes 2     # quick mode
Options: --minutes, --threads (8), --rate (operations/s: a valid request and its replay are one; default 200),
--timeout-ms (the store's, default 1000), --sample-s, --warmup-s, --rss-growth-mib, --json, --wasm, --envoy.
"""
from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import sys
import threading
import time
import uuid
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import gatekeeper_client as gk  # noqa: E402
import soak  # noqa: E402
import test_fleet as fleet  # noqa: E402
import trustgate_e2e as h  # noqa: E402
from fleet_store import Store  # noqa: E402
from http_message_signatures import algorithms  # noqa: E402
from test_dpop import CLIENT_DIR as DPOP_CLIENT_DIR, HOST as DPOP_HOST, DpopClient, dpop_headers  # noqa: E402
from test_http_signature import make_key, sign as sign_httpsig  # noqa: E402
from test_signet import CLI as SIGNET_CLI, OTHER_SEED as SIGNET_OTHER_SEED, mint as mint_signet  # noqa: E402

HMAC_CLIENT, HMAC_SECRET = fleet.CLIENT, fleet.SECRET
LIMITED, LIMITED_SECRET = fleet.LIMITED, fleet.LIMITED_SECRET
LIMIT, WINDOW_S, BURST = 8, 10, 12
PREFIX = fleet.PREFIX
PROBE_KEY = "tgtest:probe"  # fleet_store's "is webdis up" key (5 s TTL): not the filter's
REPLAY_LATER_MAX_AGE_S = 15  # inside every provider's time window (Signet: 30 s skew), so the replay reason decides
INVALID_FOR_S = 20  # the invalid requests are made again after this, inside the same windows

WEIGHTS = {
    "hmac": 30,
    "httpsig": 12,
    "signet": 4,
    "dpop": 6,
    "race": 6,
    "replay_later": 8,
    "invalid": 20,
    "public": 4,
}
REPLAY_REASON = {"hmac": "replayed", "httpsig": "replayed", "signet": "replayed", "dpop": "dpop_proof_replayed"}

# Every key of the store: how many, how many outside the prefix, how many without an expiry (TTL -1).
KEY_CHECK = (
    "local n, outside, forever = 0, 0, 0 "
    "for _, k in ipairs(redis.call('KEYS', '*')) do "
    "if k ~= ARGV[2] then n = n + 1 "
    "if string.sub(k, 1, string.len(ARGV[1])) ~= ARGV[1] then outside = outside + 1 end "
    "if redis.call('TTL', k) < 0 then forever = forever + 1 end end end "
    "return {n, outside, forever}"
)


def filter_config(timeout_ms: int) -> dict:
    """tests/e2e/test_fleet.py's config (the same providers, keys and store), with the soak's client limit and
    store timeout."""
    config = fleet.filter_config()
    config["providers"]["gatekeeper"]["hmac"]["clients"][LIMITED]["rate_limit"] = {"requests": LIMIT, "window_s": WINDOW_S}
    config["state"]["redis"]["timeout_ms"] = timeout_ms
    return config


# ----------------------------------------------------------------------------------------------- requests


class Signers:
    """A fresh valid request of each kind: (path, headers, host)."""

    def __init__(self) -> None:
        self.sig_key = fleet.SIG_KEY
        self.dpop = DpopClient()
        self.dpop_lock = threading.Lock()  # one node process, one line at a time
        self.dpop_keys = []  # (key id in the client, a token bound to it)
        for _ in range(2):
            key, jkt = self.dpop.key("ES256")
            # test_dpop.token's, but for a day (its 600 s would expire mid-soak: every DPoP request then refused)
            claims = h.claims(exp=int(time.time()) + 86400, cnf={"jkt": jkt})
            self.dpop_keys.append((key, h.mint(fleet.IDP, claims, header_extra={"typ": "at+jwt"})))

    def close(self) -> None:
        self.dpop.close()

    def make(self, kind: str, rng: random.Random) -> tuple[str, list, str]:
        n = rng.randrange(1000)
        if kind == "hmac":
            return hmac_request(HMAC_CLIENT, HMAC_SECRET, f"/api/{n}")
        if kind == "httpsig":
            path = f"/sig/{n}"
            return path, sign_httpsig(self.sig_key, "GET", path, nonce=str(uuid.uuid4())).headers, "localhost"
        if kind == "signet":
            path = f"/agents/{n}"
            return path, [("Signet-Proof", mint_signet("GET", path))], "localhost"
        path = f"/dpop/{n}"
        key, tok = rng.choice(self.dpop_keys)
        with self.dpop_lock:
            proof = self.dpop.proof(key, "GET", f"http://{DPOP_HOST}{path}", tok)
        return path, dpop_headers(tok, proof), DPOP_HOST


def hmac_request(client: str, secret: str, path: str, at: int | None = None) -> tuple[str, list, str]:
    auth = gk.sign_fast(client, secret, "GET", path, int(time.time()) if at is None else at, str(uuid.uuid4()))
    return path, [("Authorization", auth)], "localhost"


def invalid_requests(signers: Signers) -> list[tuple[str, str, list, str]]:
    """(name, path, headers, host): requests every proxy must refuse with 401, whatever the store holds. A
    refused request does not record its nonce, so each is sent again and again (for INVALID_FOR_S: then the
    time window would refuse them before the check they are named after)."""
    other_sig = make_key("k-ed", algorithms.ED25519)  # the configured keyid, another key
    now = int(time.time())
    _, tok = signers.dpop_keys[0]
    out = [
        ("hmac_bad_mac", *hmac_request(HMAC_CLIENT, "not-the-secret", "/api/bad")),
        ("hmac_stale", *hmac_request(HMAC_CLIENT, HMAC_SECRET, "/api/stale", at=now - 3600)),
        ("hmac_unknown_client", *hmac_request("nobody-0000", HMAC_SECRET, "/api/who")),
        ("httpsig_other_key", "/sig/x", sign_httpsig(other_sig, "GET", "/sig/x", nonce=str(uuid.uuid4())).headers, "localhost"),
        ("httpsig_stale", "/sig/old", sign_httpsig(signers.sig_key, "GET", "/sig/old", created=now - 3600, nonce=str(uuid.uuid4())).headers, "localhost"),
        ("signet_other_master", "/agents/x", [("Signet-Proof", mint_signet("GET", "/agents/x", seed=SIGNET_OTHER_SEED))], "localhost"),
        ("dpop_without_proof", "/dpop/x", [("Authorization", f"DPoP {tok}")], DPOP_HOST),
        ("missing", "/api/none", [], "localhost"),
        ("path_trick", "/healthz/../api/x", [], "localhost"),
        ("dpop_bound_token_as_bearer", "/dpop/y", [h.bearer(tok)], DPOP_HOST),
    ]
    return [(f"invalid_{name}", path, headers, host) for name, path, headers, host in out]


# ----------------------------------------------------------------------------------------------- traffic


class FleetTraffic:
    def __init__(self, proxies: list[h.Envoy], signers: Signers, tally: soak.Tally) -> None:
        self.proxies, self.signers, self.tally = proxies, signers, tally
        self.accepted: deque = deque(maxlen=2000)  # (monotonic, kind, path, headers, host)
        self.lock = threading.Lock()
        self.per_proxy = Counter()
        self.invalid = invalid_requests(signers)
        self.invalid_made = time.monotonic()

    def an_invalid_request(self, rng: random.Random) -> tuple[str, str, list, str]:
        with self.lock:
            if time.monotonic() - self.invalid_made >= INVALID_FOR_S:
                self.invalid = invalid_requests(self.signers)
                self.invalid_made = time.monotonic()
            return rng.choice(self.invalid)

    def worker(self, deadline: float, interval: float, seed: int) -> None:
        rng = random.Random(seed)
        conns: dict[int, h.KeepAlive] = {}
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            if interval > 0:
                next_at = soak.pace(next_at, interval)
            kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
            p = rng.randrange(2)
            if kind in REPLAY_REASON:
                path, headers, host = self.signers.make(kind, rng)
                r = self.send(conns, p, f"{kind}_valid", "200", path, headers, host)
                if r is not None and r.status == 200:
                    self.send(conns, 1 - p, f"{kind}_replay", "401", path, headers, host, REPLAY_REASON[kind])
                    with self.lock:
                        self.accepted.append((time.monotonic(), kind, path, headers, host))
            elif kind == "replay_later":
                with self.lock:
                    recent = [a for a in self.accepted if time.monotonic() - a[0] < REPLAY_LATER_MAX_AGE_S]
                if recent:
                    _, was, path, headers, host = rng.choice(recent)
                    self.send(conns, p, f"replay_later_{was}", "401", path, headers, host, REPLAY_REASON[was])
            elif kind == "race":
                self.race(*hmac_request(HMAC_CLIENT, HMAC_SECRET, f"/api/race/{rng.randrange(1000)}"))
            elif kind == "invalid":
                name, path, headers, host = self.an_invalid_request(rng)
                self.send(conns, p, name, "401", path, headers, host)
            else:
                forged = [("x-commit-owner", "human:mallory"), ("x-client-id", "mallory"), ("x-agent-id", "agent:mallory")]
                self.send(conns, p, "public", "200", "/healthz", forged, "localhost")
        for c in conns.values():
            c.close()

    def send(self, conns: dict, p: int, category: str, want: str, path: str, headers: list, host: str,
             want_reason: str | None = None) -> h.Response | None:
        """One request to proxy `p` on this thread's keep-alive connection to it, recorded."""
        detail = f"GET {path} to proxy {'ab'[p]}"
        with self.lock:
            self.per_proxy["ab"[p]] += 1
        try:
            conn = conns.get(p)
            if conn is None or conn.closed:
                if conn is not None:
                    conn.close()
                conn = conns[p] = h.KeepAlive(self.proxies[p].port, timeout=15)
            r = conn.request(path, headers, host=host)
        except (OSError, http.client.HTTPException, h.HarnessError) as e:
            self.tally.record(category, want, 0, None, error=type(e).__name__, detail=detail)
            broken = conns.pop(p, None)
            if broken is not None:
                broken.close()
            return None
        self.tally.record(category, want, r.status, r.header("x-trustgate-reason"), want_reason=want_reason, detail=detail)
        return r

    def race(self, path: str, headers: list, host: str) -> None:
        """The same fresh request to both proxies at once: exactly one may pass, the other is a replay."""
        conns = [http.client.HTTPConnection("127.0.0.1", p.port, timeout=15) for p in self.proxies]
        with self.lock:
            self.per_proxy.update("ab")
        try:
            for c in conns:
                c.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
                c.putheader("Host", host)
                for name, value in headers:
                    c.putheader(name, value)
                c.endheaders()
            answers = []
            for c in conns:
                resp = c.getresponse()
                resp.read()
                answers.append((resp.status, resp.getheader("x-trustgate-reason")))
        except (OSError, http.client.HTTPException) as e:
            self.tally.record("race", "200", 0, None, error=type(e).__name__, detail=f"GET {path} to both proxies at once")
            return
        finally:
            for c in conns:
                c.close()
        detail = f"GET {path} to both proxies at once: {answers}"
        first, second = sorted(answers, key=lambda a: a[0] != 200)  # the winner (if any) first
        self.tally.record("race_first", "200", *first, detail=detail)
        self.tally.record("race_second", "401", *second, want_reason="replayed", detail=detail)


class RateLimitCheck(threading.Thread):
    """Bursts of BURST requests of the limited client over both proxies, one per window (module docstring)."""

    def __init__(self, proxies: list[h.Envoy], tally: soak.Tally, deadline: float) -> None:
        super().__init__(name="rate-limit", daemon=True)
        self.proxies, self.tally, self.deadline = proxies, tally, deadline
        self.bursts = 0
        self.unjudged = 0
        self.accepted_per_burst: Counter = Counter()

    def one(self, i: int) -> tuple[int, str | None, str | None]:
        path, headers, host = hmac_request(LIMITED, LIMITED_SECRET, f"/api/limited/{i}")
        try:
            r = h.http_request(self.proxies[i % 2].port, path, headers, host=host, timeout=15)
        except (OSError, http.client.HTTPException) as e:
            return 0, None, type(e).__name__
        return r.status, r.header("x-trustgate-reason"), None

    def run(self) -> None:
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="burst") as pool:
            while time.monotonic() + WINDOW_S < self.deadline:
                started = time.monotonic()
                answers = list(pool.map(self.one, range(BURST)))
                took = time.monotonic() - started
                wait_until = time.monotonic() + WINDOW_S + 0.5  # the window surely over: it began after `started`
                if took >= WINDOW_S - 1:
                    self.unjudged += 1
                else:
                    self.judge(answers)
                while time.monotonic() < wait_until:
                    time.sleep(0.2)

    def judge(self, answers: list) -> None:
        self.bursts += 1
        accepted = sum(1 for status, _, _ in answers if status == 200)
        self.accepted_per_burst[accepted] += 1
        detail = f"burst {self.bursts} of {BURST} over both proxies: {Counter((s, r) for s, r, _ in answers)}"
        ordered = sorted(answers, key=lambda a: a[0] != 200)
        for n, (status, reason, error) in enumerate(ordered):
            if n < LIMIT:
                self.tally.record("limited_within", "200", status, reason, error=error, detail=detail)
            else:
                self.tally.record("limited_over", "429", status, reason, error=error, want_reason="rate_limited", detail=detail)


# ----------------------------------------------------------------------------------------------- sampling


class FleetSampler(h.Sampler):
    """RSS of every process of the fleet and the keys in Redis, every `interval` seconds."""

    def __init__(self, pids: dict[str, int], store: Store, t0: float, interval: float, tally: soak.Tally) -> None:
        super().__init__("fleet-sampler", interval)
        self.pids, self.store, self.t0, self.tally = pids, store, t0, tally
        self.samples: list[dict] = []

    def keys(self) -> dict:
        out = self.store.cli("EVAL", KEY_CHECK, "0", PREFIX, PROBE_KEY).split()
        try:
            n, outside, forever = (int(x) for x in out)
        except ValueError:
            return {"error": " ".join(out)[:200]}
        return {"keys": n, "outside_prefix": outside, "without_ttl": forever}

    def sample(self) -> None:
        self.samples.append(
            {
                "t_s": round(time.monotonic() - self.t0, 1),
                **{f"{name}_rss_kib": h.rss_kib(pid) or 0 for name, pid in self.pids.items()},
                **self.keys(),
                "requests": self.tally.sent,
                "load1": round(os.getloadavg()[0], 2),
            }
        )

    def run(self) -> None:
        self.sample()
        super().run()


# ----------------------------------------------------------------------------------------------- run


def missing_tools() -> list[str]:
    missing = [f"{b} (make fleet-deps)" for b in ("redis-server", "redis-cli", "webdis") if not shutil.which(b)]
    if not SIGNET_CLI.is_file():
        missing.append(f"{SIGNET_CLI} (make build-cli)")
    if not (DPOP_CLIENT_DIR / "node_modules" / "dpop").is_dir():
        missing.append(f"{DPOP_CLIENT_DIR}/node_modules/dpop (make dpop-client-deps)")
    return missing


def by_category(outcomes: Counter) -> dict:
    """{category: {"sent": n, "<status> <reason>": n, …}} from the tally's outcome lines."""
    out: dict[str, Counter] = {}
    for line, n in outcomes.items():
        category, _, answer = line.partition(" -> ")
        c = out.setdefault(category.split(" ")[0], Counter())
        c["sent"] += n
        c[answer] += n
    return {k: dict(v) for k, v in sorted(out.items())}


def run(args: argparse.Namespace) -> int:
    missing = missing_tools()
    if missing:
        print("soak-fleet: missing " + ", ".join(missing), file=sys.stderr)
        return 2
    su = soak.setup(args, "soak-fleet")
    if su is None:
        return 2
    duration, warmup, wasm, envoy_bin, workdir, wasm_copy = su

    config = filter_config(args.timeout_ms)
    tally = soak.Tally()
    store = Store(workdir)
    proxies: list[h.Envoy] = []
    signers = None
    sampler = None
    try:
        store.start_redis()
        store.start_webdis()

        def bootstrap(port: int, admin: int) -> dict:
            boot = h.gateway_bootstrap_direct_response(listener_port=port, admin_port=admin, filter_config=config, wasm=wasm_copy)
            boot["static_resources"]["clusters"].append(h.static_cluster("state", store.webdis_port))
            return boot

        for n in "ab":
            proxies.append(h.Envoy(envoy_bin, workdir / f"envoy-{n}", bootstrap, name=f"soak-fleet-{n}").start())
        signers = Signers()
        traffic = FleetTraffic(proxies, signers, tally)
        t0 = time.monotonic()
        load_start = os.getloadavg()
        pids = {"envoy_a": proxies[0].proc.pid, "envoy_b": proxies[1].proc.pid, "redis": store.redis.pid, "webdis": store.webdis.pid}
        print(
            f"soak-fleet: {args.minutes:g} min, {args.threads} threads, rate {args.rate or 'unlimited'} operations/s, "
            f"2 Envoys (--concurrency 2, pids {pids['envoy_a']} {pids['envoy_b']}), Redis {store.redis_port} via webdis "
            f"{store.webdis_port} (timeout {args.timeout_ms} ms), limit {LIMIT}/{WINDOW_S} s, warm-up {warmup:g} s, "
            f"load average {load_start[0]:.2f}",
            flush=True,
        )
        sampler = FleetSampler(pids, store, t0, args.sample_s, tally)
        sampler.start()
        deadline = time.monotonic() + duration
        limits = RateLimitCheck(proxies, tally, deadline)
        limits.start()

        def progress() -> str:
            s = sampler.samples[-1] if sampler.samples else {}
            return (f"RSS a {s.get('envoy_a_rss_kib', 0) / 1024:.1f} b {s.get('envoy_b_rss_kib', 0) / 1024:.1f} MiB  "
                    f"Redis keys {s.get('keys', '?')}  limit bursts {limits.bursts}")

        elapsed = soak.drive(traffic.worker, args, deadline, 2000, t0, tally, progress, others=[limits])
        sampler.stop()
        stats = {n: p.stats("wasmcustom.trustgate.") for n, p in zip("ab", proxies)}
        failures = [f"{n}: {line}" for n, p in zip("ab", proxies) for line in h.wasm_failure_lines(p)]
    finally:
        if signers is not None:
            signers.close()
        for p in proxies:
            p.stop()
        store.stop(store.webdis)
        store.stop(store.redis)

    samples = sampler.samples
    rss = {name: soak.rss_figures(samples, f"{name}_rss_kib", warmup) for name in pids}
    rss_ok = all(rss[n][1] <= args.rss_growth_mib for n in ("envoy_a", "envoy_b"))
    key_errors = [s["error"] for s in samples if "error" in s]
    keys = {
        "max": max((s.get("keys", 0) for s in samples), default=0),
        "end": samples[-1].get("keys"),
        "max_outside_prefix": max((s.get("outside_prefix", 0) for s in samples), default=0),
        "max_without_ttl": max((s.get("without_ttl", 0) for s in samples), default=0),
        "check_errors": key_errors[:5],
    }
    keys_ok = keys["max"] > 0 and keys["max_outside_prefix"] == 0 and keys["max_without_ttl"] == 0 and not key_errors
    categories = by_category(tally.outcomes)
    replays = {c: v for c, v in categories.items() if "replay" in c or c == "race_second"}
    replays_refused = sum(n for v in replays.values() for a, n in v.items() if a.startswith("401 ") and a.endswith("replayed"))
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": soak.machine(load_start),
        "envoy": h.envoy_version(envoy_bin),
        "wasm": str(wasm),
        "settings": {
            "minutes": args.minutes,
            "threads": args.threads,
            "rate_operations_per_s": args.rate,
            "proxies": 2,
            "envoy_concurrency": 2,
            "state": config.get("state"),
            "rate_limit": {"requests": LIMIT, "window_s": WINDOW_S, "burst": BURST},
            "replay_later_max_age_s": REPLAY_LATER_MAX_AGE_S,
            "warmup_s": warmup,
            "rss_growth_limit_mib": args.rss_growth_mib,
            "weights": WEIGHTS,
        },
        "seconds": round(elapsed, 1),
        "requests": tally.sent,
        "requests_per_s": round(tally.sent / max(elapsed, 1e-9), 1),
        "requests_per_proxy": dict(sorted(traffic.per_proxy.items())),
        "replays_refused": replays_refused,
        "wrongly_accepted": tally.wrongly_accepted,
        "wrongly_rejected": tally.wrongly_rejected,
        "server_errors_5xx": tally.server_errors,
        "other_wrong": tally.other_wrong,
        "client_errors": tally.client_errors,
        "rate_limit": {
            "bursts_judged": limits.bursts,
            "bursts_too_slow_to_judge": limits.unjudged,
            "accepted_per_burst": dict(sorted(limits.accepted_per_burst.items())),
        },
        "redis_keys": keys,
        "rss": {name: figures for name, (figures, _) in rss.items()},
        "samples": samples,
        "wasm_failures_in_log": failures[:10],
        "by_category": categories,
        "examples": tally.examples,
        "trustgate_stats": {n: {k.removeprefix("wasmcustom.trustgate."): v for k, v in sorted(s.items()) if v} for n, s in stats.items()},
    }
    ok = tally.failures == 0 and rss_ok and keys_ok and not failures and limits.bursts > 0 and min(traffic.per_proxy.values(), default=0) > 0
    result["ok"] = ok
    out = soak.write_result(result, args.json)

    print()
    print(f"requests          {tally.sent:,} in {elapsed:.0f} s ({result['requests_per_s']:,.0f}/s): "
          + ", ".join(f"proxy {p} {n:,}" for p, n in result["requests_per_proxy"].items()))
    print(f"replays refused   {replays_refused:,} (to the other proxy, later, or the loser of a race)")
    soak.print_counts(tally)
    print(f"other wrong       {tally.other_wrong} status or reason, {tally.client_errors} client errors")
    print(f"rate limit        {limits.bursts} bursts of {BURST} judged (accepted per burst: "
          f"{result['rate_limit']['accepted_per_burst']}), {limits.unjudged} too slow to judge")
    print(f"Redis keys        at most {keys['max']:,}, at the end {keys['end']}; outside the prefix {keys['max_outside_prefix']}, "
          f"without a TTL {keys['max_without_ttl']}")
    for name, (r, _) in rss.items():
        print(f"RSS {name:<13} start {r['start_mib']} MiB, after warm-up ({warmup:g} s) {r['after_warmup_mib']} MiB, peak after "
              f"{r['peak_after_warmup_mib']} MiB, end {r['end_mib']} MiB: growth {r['growth_after_warmup_mib']} MiB")
    return soak.print_end(load_start, failures, tally, out, ok)


def main(argv: list[str] | None = None) -> int:
    p = soak.options(__doc__, "soak-fleet.json", "how long (default 10)")
    p.add_argument("--threads", type=int, default=8, help="client threads, one keep-alive connection to each proxy (default 8)")
    p.add_argument("--rate", type=float, default=200.0, help="operations per second, a valid request and its replay being one (default 200; 0 = unlimited)")
    p.add_argument("--timeout-ms", type=int, default=1000, help="state.redis timeout_ms (default 1000: slow answers of a busy machine are not what is soaked)")
    return soak.run_main(p, argv, run, "soak-fleet")


if __name__ == "__main__":
    sys.exit(main())
