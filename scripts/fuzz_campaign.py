#!/usr/bin/env python3
"""`make fuzz-campaign`: a long cargo-fuzz run of every target, and the table of what it did.

Each target runs until it has executed RUNS inputs (10 million by default) or SECONDS have passed (900), whichever
comes first, on the seed corpus (scripts/fuzz_seeds.py) plus whatever earlier runs left in fuzz/corpus/<target>/.
A finding (a crash, a panic, a timeout, an out-of-memory) stops that target; libFuzzer leaves the input in
fuzz/artifacts/<target>/ and the run is listed with it. Results go to bench/fuzz_campaign.json (merged by target,
so a campaign can be run a few targets at a time) and a Markdown table on standard output, the one
docs/testing.md shows.

    python3 scripts/fuzz_campaign.py                         # every target, one after the other
    python3 scripts/fuzz_campaign.py --targets path cert --jobs 2 --runs 10000000 --seconds 900
    python3 scripts/fuzz_campaign.py --table                 # print the table of bench/fuzz_campaign.json

Exit status 1 when any target had a finding.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUZZ = REPO / "fuzz"
RESULTS = REPO / "bench" / "fuzz_campaign.json"
TARGETS = ["jwt", "jwks", "config", "path", "template", "request", "hmac_header", "signet", "httpsig", "cert", "claims", "dpop"]


def git_rev() -> str:
    """The commit the targets are built from, `+dirty` when src/ or fuzz/ differ from it."""
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src", "fuzz/fuzz_targets"],
                           capture_output=True, text=True).stdout.strip()
    return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


def run_target(target: str, runs: int, seconds: int, rev: str) -> dict:
    """One libFuzzer run of `target` (built from `rev`); its figures parsed from -print_final_stats."""
    started = time.monotonic()
    cmd = ["cargo", "+nightly", "fuzz", "run", target, "--",
           f"-runs={runs}", f"-max_total_time={seconds}", "-rss_limit_mb=2048", "-print_final_stats=1"]
    proc = subprocess.run(cmd, cwd=FUZZ, capture_output=True, text=True, errors="replace")
    log = proc.stdout + proc.stderr
    stat = dict(re.findall(r"^stat::(\w+):\s+(\d+)", log, flags=re.M))
    finding = next((l.strip() for l in log.splitlines()
                    if re.search(r"==\d+== ERROR|deadly signal|panicked at|SUMMARY: libFuzzer", l)), None)
    artifact = next(iter(re.findall(r"Test unit written to (\S+)", log)), None)
    execs = int(stat.get("number_of_executed_units", 0))
    row = {
        "target": target,
        "executions": execs,
        "seconds": round(time.monotonic() - started),
        "execs_per_s": int(stat.get("average_exec_per_sec", 0)),
        "corpus": len(list((FUZZ / "corpus" / target).glob("*"))),
        "peak_rss_mb": int(stat.get("peak_rss_mb", 0)),
        "exit": proc.returncode,
        "finding": finding,
        "artifact": artifact,
        "commit": rev,
        "date": dt.date.today().isoformat(),
    }
    if proc.returncode != 0 and not finding:
        row["finding"] = f"exit {proc.returncode}: " + " | ".join(log.strip().splitlines()[-3:])
    return row


def table(results: dict) -> str:
    lines = ["| target | executions | time | exec/s | corpus | peak RSS | findings | commit, date |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for t in TARGETS:
        r = results.get(t)
        if not r:
            continue
        found = r["finding"] or "none"
        lines.append(f"| `{t}` | {r['executions']:,} | {r['seconds']} s | {r['execs_per_s']:,} | {r['corpus']:,} "
                     f"| {r['peak_rss_mb']} MB | {found} | {r['commit']}, {r['date']} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", nargs="*", default=TARGETS, choices=TARGETS)
    ap.add_argument("--runs", type=int, default=10_000_000)
    ap.add_argument("--seconds", type=int, default=900)
    ap.add_argument("--jobs", type=int, default=1, help="targets run at the same time (one core each)")
    ap.add_argument("--table", action="store_true", help="only print the table of the stored results")
    a = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if a.table:
        print(table(results))
        return 0
    # The commit is read once, at build time: `cargo fuzz run` rebuilds a target whose sources changed, so keep
    # the tree still while a campaign runs (a worktree of its own is the easy way).
    rev = git_rev()
    subprocess.run(["cargo", "+nightly", "fuzz", "build"], cwd=FUZZ, check=True)
    bad = False
    with cf.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        for row in pool.map(lambda t: run_target(t, a.runs, a.seconds, rev), a.targets):
            results[row["target"]] = row
            bad |= row["finding"] is not None
            print(f"{row['target']}: {row['executions']:,} executions in {row['seconds']} s, "
                  f"finding: {row['finding'] or 'none'}", flush=True)
            RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(table(results))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
