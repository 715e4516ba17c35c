#!/usr/bin/env python3
"""`make run-fleet`: two Envoys (each `--concurrency 2`) with trustgate in front of one echo upstream, sharing
replay nonces and rate counters in one Redis through webdis (`state.redis`), all on 127.0.0.1, in the
foreground; prints the ports and a signed request to replay against the other proxy. Ctrl-C stops everything.

redis-server and webdis come from the Debian packages (`make fleet-deps`); Redis keeps nothing on disk.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import gatekeeper_client as gk  # noqa: E402
import trustgate_e2e as h  # noqa: E402
from fleet_store import Store  # noqa: E402

CLIENT, SECRET = "fleet-client", "fleet-demo-secret"  # DEMO ONLY


def config() -> dict:
    clients = {CLIENT: {"name": "Fleet demo", "secret": SECRET, "rate_limit": {"requests": 5, "window_s": 60}}}
    return {
        "providers": {"gatekeeper": {"hmac": {"clients": clients, "headers": {"x-client-id": "${client.id}"}}}},
        "rules": [{"name": "api", "match": {"path_prefix": "/"}, "require": "gatekeeper"}],
        "state": {"redis": {"cluster": "state", "authority": "webdis", "prefix": "trustgate:", "timeout_ms": 200}},
    }


def main() -> int:
    for b in ("redis-server", "redis-cli", "webdis"):
        if not shutil.which(b):
            print(f"{b} not found: make fleet-deps (apt-get install -y redis-server webdis)", file=sys.stderr)
            return 1
    work = Path(tempfile.mkdtemp(prefix="trustgate-fleet-"))
    store = Store(work)
    upstream = h.EchoUpstream()
    proxies = []
    try:
        store.start_redis()
        store.start_webdis()
        for n in ("a", "b"):
            proxies.append(h.start_gateway(h.envoy_binary(), h.wasm_path(), upstream, work / f"envoy-{n}", config(),
                                           {"state": store.webdis_port}, name=f"fleet-{n}"))
        a, b = proxies
        auth = gk.sign_fast(CLIENT, SECRET, "GET", "/hello", int(time.time()), str(uuid.uuid4()))
        print(f"redis 127.0.0.1:{store.redis_port}  webdis 127.0.0.1:{store.webdis_port}  work dir {work}")
        print(f"proxy a 127.0.0.1:{a.port} (admin {a.admin_port})  proxy b 127.0.0.1:{b.port} (admin {b.admin_port})")
        print("A signed request (valid 300 s), then its replay on the other proxy (401 replayed):")
        print(f"  curl -si -H 'Authorization: {auth}' http://127.0.0.1:{a.port}/hello")
        print(f"  curl -si -H 'Authorization: {auth}' http://127.0.0.1:{b.port}/hello")
        print(f"Keys: redis-cli -p {store.redis_port} --scan --pattern 'trustgate:*'   Ctrl-C stops.")
        while all(p.proc and p.proc.poll() is None for p in proxies):
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in proxies:
            p.stop()
        upstream.close()
        store.stop(store.webdis)
        store.stop(store.redis)


if __name__ == "__main__":
    sys.exit(main())
