"""A short nonce flood (issue 4) in the normal suite: 20,000 unique gatekeeper-HMAC signed requests through a
real Envoy 1.40 (`--concurrency 2`) with trustgate.wasm, via scripts/nonce_flood.py (wrk when installed, else
Python asyncio). Every request must pass, a sample of them sent again must be refused as `replayed` (the nonces
were kept), and Envoy's RSS must not grow by more than 64 MiB.

The full measurement (1,000,000 requests, the figure in README) is `make flood`, i.e.
`.venv/bin/python scripts/nonce_flood.py`.
"""
from __future__ import annotations

import importlib.util
import sys

import trustgate_e2e as h

REQUESTS = 20_000
MAX_GROWTH_KIB = 64 * 1024


def load_flood():
    spec = importlib.util.spec_from_file_location("nonce_flood", h.REPO / "scripts" / "nonce_flood.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_short_nonce_flood(envoy_bin, wasm, tmp_path):
    flood = load_flood()
    lines: list[str] = []
    result = flood.run(
        n=REQUESTS, connections=16, window_s=300, max_seconds=240, envoy_bin=envoy_bin, wasm=wasm,
        replay_sample=150, workdir=tmp_path, log=lines.append,
    )
    summary = result.summary()
    print(summary)
    assert not result.errors, summary
    assert result.statuses == {"200": REQUESTS}, summary
    assert result.replay_sample >= 100 and result.replay_refused == result.replay_sample, summary
    growth = result.rss_kib_peak - result.rss_kib_start
    assert growth < MAX_GROWTH_KIB, summary
