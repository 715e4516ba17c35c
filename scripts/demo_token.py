#!/usr/bin/env python3
"""Mint a demo JWT for `make run` (ES256, signed with the committed TEST-ONLY demo key).

The issuer, audience and key id come from filter-config/demo.json, so the token matches whatever the
demo Envoy config says. Prints the token on stdout and nothing else.

    .venv/bin/python scripts/demo_token.py [--sub alice] [--email alice@example.com] [--ttl 3600]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jwt  # PyJWT

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "filter-config" / "demo.json"
DEMO_KEY = REPO / "filter-config" / "demo-keys" / "demo-es256.TEST-ONLY.key.pem"


def demo_provider(config: dict) -> dict:
    """The demo's jwt provider (the first provider with a `jwt` section)."""
    for provider in config["providers"].values():
        if "jwt" in provider:
            return provider["jwt"]
    raise SystemExit(f"{DEMO_CONFIG}: no jwt provider")


def mint(
    sub: str = "alice",
    email: str | None = "alice@example.com",
    ttl: int = 3600,
    principal_type: str | None = None,
    config_path: Path = DEMO_CONFIG,
    key_path: Path = DEMO_KEY,
    now: int | None = None,
) -> str:
    provider = demo_provider(json.loads(config_path.read_text()))
    jwk = provider["keys"]["jwks"]["keys"][0]
    now = int(time.time()) if now is None else now
    claims = {
        "iss": provider["issuer"],
        "aud": provider["audiences"][0],
        "sub": sub,
        "iat": now,
        "exp": now + ttl,
    }
    if email:
        claims["email"] = email
    if principal_type:
        claims["principal_type"] = principal_type
    headers = {"kid": jwk["kid"]} if "kid" in jwk else None
    alg = jwk.get("alg") or provider.get("algorithms", ["ES256"])[0]
    return jwt.encode(claims, key_path.read_bytes(), algorithm=alg, headers=headers)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sub", default="alice")
    p.add_argument("--email", default="alice@example.com", help="empty string: no email claim")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until exp (negative: already expired)")
    p.add_argument("--principal-type", default=None, help='e.g. "agent" (the demo template defaults to "human")')
    p.add_argument("--config", type=Path, default=DEMO_CONFIG)
    p.add_argument("--key", type=Path, default=DEMO_KEY)
    a = p.parse_args(argv)
    print(mint(a.sub, a.email or None, a.ttl, a.principal_type, a.config, a.key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
