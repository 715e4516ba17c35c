#!/usr/bin/env python3
"""Nonce flood: the proxy's memory under a flood of unique gatekeeper-HMAC signed requests (issue 4).

Starts its own Envoy (the e2e harness: `.venv/bin/envoy`, V8, `--concurrency 2`) with trustgate.wasm and one
`hmac` provider, routes answered by Envoy itself (`direct_response`, no upstream to be the bottleneck), then
sends N requests, each with a fresh nonce and a valid signature, through keep-alive connections, sampling
Envoy's RSS (/proc/<pid>/status VmRSS) every second. Then it re-sends a sample of the flood's requests (first,
spread, last): each must now be refused as `replayed` (or `stale_timestamp` once its timestamp left the window),
which shows the nonces were really kept (a filter that forgot them would use no memory at all).

Requests are signed with Python's `hmac` directly (the same algorithm as byteforge-hmac, checked against it
first) as they are handed to the load generator, with the current timestamp, so a run longer than the
timestamp window never sends stale requests. Load generator: `wrk` (one thread, a Lua script reading the
signed requests from a FIFO) when installed, else Python asyncio.

Past the replay store's capacity (live nonces of one provider inside the window) trustgate refuses new nonces
with 503 `replay_store_unavailable` (fail closed): those show in the statuses, and a sampled request that was
refused then is refused again the same way, not as `replayed`.

Usage (from the repository root, after `make build`):
    .venv/bin/python scripts/nonce_flood.py                      # 1,000,000 requests
    .venv/bin/python scripts/nonce_flood.py -n 20000 --json out.json
    .venv/bin/python scripts/nonce_flood.py --window-s 10 -n 300000   # watch the store plateau past the window
Options: -n/--requests, -c/--connections (32), --window-s (300), --max-seconds (900, the hard stop),
--client auto|wrk|python, --wasm, --envoy, --json PATH (the summary as JSON), --replay-sample (300).
Exit status: 0 when every flood request got 200 and every replayed sample a 401 (`replayed`/`stale_timestamp`),
1 if not, 2 when the flood could not run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import gatekeeper_client as gk  # noqa: E402
import trustgate_e2e as h  # noqa: E402

CLIENT_ID = "flood-client-0000-4000-8000-000000000001"
SECRET = "flood-shared-secret-not-for-production"
PROVIDER = "flood"
DONE_PATH = "/flood-done"  # public, answered 204: what wrk sends once the signed requests are used up


def filter_config(window_s: int) -> dict:
    return {
        "providers": {
            PROVIDER: {
                "hmac": {
                    "clients": {CLIENT_ID: {"name": "Flood", "secret": SECRET}},
                    "timestamp_window_s": window_s,
                    "headers": {"x-client-id": "${client.id}"},
                }
            }
        },
        "rules": [
            {"name": "done", "match": {"path": DONE_PATH}, "allow": "public"},
            {"name": "flood", "match": {"path_prefix": "/"}, "require": PROVIDER},
        ],
    }


class FloodError(Exception):
    """The flood could not run (no wrk, no wasm, Envoy refused the warm-up...)."""


@dataclass
class FloodResult:
    client: str
    requests: int
    connections: int
    window_s: int
    statuses: dict[str, int]
    answered: int
    seconds: float
    requests_per_s: float
    rss_kib_start: int
    rss_kib_peak: int
    rss_kib_end: int
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    replay_sample: int = 0
    replay_refused: int = 0
    replay_statuses: dict[str, int] = field(default_factory=dict)
    envoy_stats: dict[str, int] = field(default_factory=dict)
    errors: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.statuses == {"200": self.requests}
            and self.replay_refused == self.replay_sample
            and not self.errors
        )

    def summary(self) -> str:
        mib = lambda kib: f"{kib / 1024:.1f} MiB"  # noqa: E731
        lines = [
            f"client            {self.client} ({self.connections} connections)",
            f"requests sent     {self.requests:,} unique nonces, timestamp window {self.window_s} s",
            f"statuses          {json.dumps(self.statuses, sort_keys=True)} ({self.answered:,} answered)",
            f"duration          {self.seconds:.1f} s, {self.requests_per_s:,.0f} requests/s",
            f"Envoy RSS         start {mib(self.rss_kib_start)}, peak {mib(self.rss_kib_peak)}, "
            f"end {mib(self.rss_kib_end)} (growth to peak {mib(self.rss_kib_peak - self.rss_kib_start)}, "
            f"{(self.rss_kib_peak - self.rss_kib_start) * 1024 / max(1, self.requests):.0f} bytes/request)",
            f"replayed sample   {self.replay_refused}/{self.replay_sample} refused "
            f"({json.dumps(self.replay_statuses, sort_keys=True)})",
        ]
        trustgate = {k.removeprefix("wasmcustom.trustgate."): v for k, v in self.envoy_stats.items() if v}
        if trustgate:
            lines.append(f"trustgate stats   {json.dumps(trustgate, sort_keys=True)}")
        if self.errors:
            lines.append(f"errors            {self.errors}")
        lines.append("result            " + ("OK" if self.ok else "FAILED"))
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- signing


class Signer:
    """Signed request lines, made on demand with the current time; keeps a sample for the replay check."""

    def __init__(self, n: int, sample: int) -> None:
        self.n = n
        self.prefix = secrets.token_hex(4)  # nonces are uuid-shaped: <prefix>-xxxx-4xxx-8xxx-<counter>
        self.run = secrets.token_hex(2)
        self.key = SECRET.encode()
        # the first and last third of the sample, the rest spread evenly over the flood
        edge = min(sample // 3, n)
        want = set(range(edge)) | set(range(max(0, n - edge), n))
        spread = max(0, min(sample, n) - len(want))
        want |= {edge + (k * max(1, n - 2 * edge)) // max(1, spread) for k in range(spread)}
        want = {i for i in want if 0 <= i < n}
        self.sample_at = set(sorted(want)[:sample])
        self.sample: list[tuple[str, str]] = []

    def item(self, i: int, now: int) -> tuple[str, str]:
        nonce = f"{self.prefix}-{self.run}-4{i % 4096:03x}-8{(i >> 12) % 4096:03x}-{i:012x}"
        path = f"/flood/{i % 1000}"
        auth = gk.sign_fast(CLIENT_ID, SECRET, "GET", path, now, nonce)
        if i in self.sample_at:
            self.sample.append((path, auth))
        return path, auth


# ----------------------------------------------------------------------------------------------- load: wrk

WRK_LUA = r"""
local fifo = os.getenv("FLOOD_FIFO")
local marker = os.getenv("FLOOD_MARKER")
local total = tonumber(os.getenv("FLOOD_N"))
local f = nil
local eof = false
local first = true
real = 0
dummy = 0
statuses = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  f = assert(io.open(fifo, "r"))
end

function request()
  if first then
    -- wrk calls request() once before the run to check the script (its result is never sent): do not
    -- spend a signed request on it
    first = false
    return wrk.format("GET", "/flood-done")
  end
  if not eof then
    local line = f:read("*l")
    if line ~= nil then
      local tab = line:find("\t", 1, true)
      return wrk.format("GET", line:sub(1, tab - 1), {["Authorization"] = line:sub(tab + 1)})
    end
    eof = true
    f:close()
  end
  return wrk.format("GET", "/flood-done")
end

function response(status, headers, body)
  if status == 204 then
    dummy = dummy + 1
    return
  end
  real = real + 1
  local k = tostring(status)
  statuses[k] = (statuses[k] or 0) + 1
  if real == total then
    local m = io.open(marker, "w")
    m:write("done\n")
    m:close()
  end
end

function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses") or {}
    for k, v in pairs(s) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, '"' .. k .. '": ' .. v) end
  io.write("FLOOD_STATUSES {" .. table.concat(parts, ", ") .. "}\n")
  local e = summary.errors
  io.write(string.format("FLOOD_ERRORS connect=%d read=%d write=%d timeout=%d\n", e.connect, e.read, e.write, e.timeout))
  io.write(string.format("FLOOD_P99_US %d\n", latency:percentile(99.0)))
end
"""


def run_wrk(port: int, signer: Signer, connections: int, max_seconds: float, workdir: Path, progress) -> tuple[Counter, str]:
    fifo = workdir / "requests.fifo"
    marker = workdir / "done.marker"
    script = workdir / "flood.lua"
    os.mkfifo(fifo)
    script.write_text(WRK_LUA)
    env = dict(os.environ, FLOOD_FIFO=str(fifo), FLOOD_MARKER=str(marker), FLOOD_N=str(signer.n))

    writer_error: list[BaseException] = []

    def write_all():
        try:
            with open(fifo, "w", buffering=1 << 16) as out:
                now, last = int(time.time()), time.monotonic()
                for i in range(signer.n):
                    if i % 256 == 0 and time.monotonic() - last > 0.2:
                        now, last = int(time.time()), time.monotonic()
                    path, auth = signer.item(i, now)
                    out.write(f"{path}\t{auth}\n")
        except BrokenPipeError:
            pass  # wrk went away: reported through its exit status
        except BaseException as e:  # noqa: BLE001
            writer_error.append(e)

    writer = threading.Thread(target=write_all, name="flood-signer", daemon=True)
    writer.start()
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(max_seconds)}s", "--timeout", "10s", "-s", str(script),
           f"http://127.0.0.1:{port}/"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + max_seconds + 30
    written_at = None
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if marker.exists():
                break
            if written_at is None and not writer.is_alive():
                written_at = time.monotonic()
            if written_at is not None and time.monotonic() - written_at > 20:
                break  # everything was handed to wrk 20 s ago and not everything was answered: give up
            progress()
            time.sleep(0.1)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # wrk sleeps for -d; SIGINT ends it and it still reports
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    finally:
        if writer.is_alive():  # unblock a writer still waiting for a reader
            try:
                fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
                os.close(fd)
            except OSError:
                pass
            writer.join(timeout=2)
    statuses: Counter = Counter()
    errors = []
    for line in out.splitlines():
        if line.startswith("FLOOD_STATUSES "):
            statuses.update({k: int(v) for k, v in json.loads(line.split(" ", 1)[1]).items()})
        elif line.startswith("FLOOD_ERRORS ") and any(not p.endswith("=0") for p in line.split()[1:]):
            errors.append(line.split(" ", 1)[1])
    if not marker.exists():
        errors.append(f"wrk stopped before all {signer.n} requests were answered (exit {proc.returncode}): "
                      + " | ".join(out.strip().splitlines()[-6:]))
    if writer_error:
        errors.append(f"signer: {writer_error[0]!r}")
    return statuses, "; ".join(errors)


# ----------------------------------------------------------------------------------------------- load: asyncio


def run_python(port: int, signer: Signer, connections: int, max_seconds: float, progress) -> tuple[Counter, str]:
    statuses: Counter = Counter()
    errors: list[str] = []
    state = {"next": 0, "now": int(time.time())}

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while state["next"] < signer.n:
                i = state["next"]
                state["next"] += 1
                if i % 256 == 0:
                    state["now"] = int(time.time())
                path, auth = signer.item(i, state["now"])
                writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = head[9:12].decode()
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                statuses[status] += 1
        finally:
            writer.close()

    async def ticker():
        while True:
            progress()
            await asyncio.sleep(1)

    async def main():
        tick = asyncio.create_task(ticker())
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(worker() for _ in range(connections)), return_exceptions=True), max_seconds
            )
            for r in results:
                if isinstance(r, BaseException):
                    errors.append(repr(r))
        except asyncio.TimeoutError:
            errors.append(f"not done after {max_seconds:.0f} s")
        finally:
            tick.cancel()

    asyncio.run(main())
    return statuses, "; ".join(sorted(set(errors))[:5])


# ----------------------------------------------------------------------------------------------- the run


class RssSampler(h.Sampler):
    def __init__(self, pid: int, interval: float = 1.0) -> None:
        super().__init__("rss-sampler", interval)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self.t0 = time.monotonic()

    def sample(self) -> int:
        kib = h.rss_kib(self.pid) or 0
        self.samples.append((round(time.monotonic() - self.t0, 1), kib))
        return kib


def run(
    n: int = 1_000_000,
    connections: int = 32,
    window_s: int = 300,
    max_seconds: float = 900,
    client: str = "auto",
    wasm: Path | None = None,
    envoy_bin: str | None = None,
    replay_sample: int = 300,
    workdir: Path | None = None,
    log=print,
) -> FloodResult:
    gk.assert_same_as_reference(CLIENT_ID, SECRET)
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    if client == "wrk" and not shutil.which("wrk"):
        raise FloodError("wrk is not installed (apt-get install wrk), use --client python")
    wasm = Path(wasm or h.wasm_path())
    if not wasm.is_file():
        raise FloodError(f"{wasm} does not exist: make build")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="trustgate-flood-"))
    cfg = filter_config(window_s)
    envoy = h.Envoy(
        envoy_bin or h.envoy_binary(),
        workdir / "envoy",
        lambda port, admin: h.gateway_bootstrap_direct_response(
            listener_port=port, admin_port=admin, filter_config=cfg, wasm=wasm,
            routes=((DONE_PATH, 204), ("/", 200)),
        ),
        name="flood",
    )
    envoy.start()
    try:
        pid = envoy.proc.pid
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        if "envoy" not in comm:
            raise FloodError(f"pid {pid} is {comm!r}, not Envoy: cannot measure its RSS")
        # warm up (V8 tiers, first shared-data keys, connection buffers), then take the start figure
        warm = Signer(200, 0)
        warm.prefix = "warmup00"
        for i in range(200):
            path, auth = warm.item(i, int(time.time()))
            r = envoy.request(path, [("Authorization", auth)])
            if r.status != 200:
                raise FloodError(f"warm-up request refused: {r.describe()}\n{envoy.log_tail()}")
        time.sleep(1)
        sampler = RssSampler(pid)
        start_kib = sampler.sample()
        sampler.start()
        signer = Signer(n, replay_sample)
        log(f"flood: {n:,} requests via {client}, {connections} connections, window {window_s} s; "
            f"Envoy pid {pid}, RSS {start_kib / 1024:.1f} MiB")

        last = {"t": time.monotonic()}

        def progress():
            if time.monotonic() - last["t"] >= 10:
                last["t"] = time.monotonic()
                done = sum(v for k, v in envoy.stats("http.gateway.downstream_rq_").items()
                           if k.endswith(("_2xx", "_4xx", "_5xx")))
                log(f"  t={sampler.samples[-1][0] if sampler.samples else 0:>6.1f}s answered≈{done:,} "
                    f"RSS {h.rss_kib(pid) / 1024:.1f} MiB")

        t0 = time.monotonic()
        if client == "wrk":
            statuses, errors = run_wrk(envoy.port, signer, connections, max_seconds, workdir, progress)
        else:
            statuses, errors = run_python(envoy.port, signer, connections, max_seconds, progress)
        seconds = time.monotonic() - t0
        time.sleep(2)
        sampler.stop()
        samples = sampler.samples
        # the nonces were kept: every sampled request again is refused as replayed
        replay_statuses: Counter = Counter()
        refused = 0
        for path, auth in signer.sample:
            r = envoy.request(path, [("Authorization", auth)])
            replay_statuses[f"{r.status} {(r.header('x-trustgate-reason') or '')}".strip()] += 1
            # `stale_timestamp` is the right refusal too once the flood outlasted the window (--window-s)
            refused += r.status == 401 and r.header("x-trustgate-reason") in ("replayed", "stale_timestamp")
        answered = sum(statuses.values())
        return FloodResult(
            client=client,
            requests=n,
            connections=connections,
            window_s=window_s,
            statuses=dict(sorted(statuses.items())),
            answered=answered,
            seconds=round(seconds, 2),
            requests_per_s=round(answered / seconds, 1) if seconds else 0.0,
            rss_kib_start=start_kib,
            rss_kib_peak=max(k for _, k in samples),
            rss_kib_end=samples[-1][1],
            rss_samples=samples,
            replay_sample=len(signer.sample),
            replay_refused=refused,
            replay_statuses=dict(replay_statuses),
            envoy_stats=envoy.stats("wasmcustom.trustgate."),
            errors=errors,
        )
    finally:
        envoy.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--requests", type=int, default=1_000_000)
    p.add_argument("-c", "--connections", type=int, default=32)
    p.add_argument("--window-s", type=int, default=300)
    p.add_argument("--max-seconds", type=float, default=900)
    p.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--wasm", type=Path)
    p.add_argument("--envoy")
    p.add_argument("--replay-sample", type=int, default=300)
    p.add_argument("--json", type=Path, help="also write the result (with every RSS sample) as JSON here")
    a = p.parse_args(argv)
    try:
        result = run(a.requests, a.connections, a.window_s, a.max_seconds, a.client, a.wasm, a.envoy, a.replay_sample)
    except (FloodError, h.HarnessError) as e:
        print(f"nonce_flood: {e}", file=sys.stderr)
        return 2
    print(result.summary())
    if a.json:
        a.json.write_text(json.dumps(asdict(result), indent=1))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
