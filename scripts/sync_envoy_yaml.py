#!/usr/bin/env python3
"""Copy filter-config/demo.json into envoy/envoy.yaml (the wasm filter's `configuration` block).

envoy/envoy.yaml must stay runnable on its own (`envoy -c envoy/envoy.yaml`, `func-e run -c ...`), so it
embeds the demo config instead of reading the file; tests/e2e/test_demo_config.py fails when they differ.
Run this after editing demo.json:  python3 scripts/sync_envoy_yaml.py   (--check: only report a drift)
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENVOY_YAML = REPO / "envoy" / "envoy.yaml"
DEMO_JSON = REPO / "filter-config" / "demo.json"


def block_bounds(lines: list[str]) -> tuple[int, int, int]:
    """(first content line, end line exclusive, indent of `value:`) of the StringValue's `value: |` block."""
    start = next(i for i, l in enumerate(lines) if "type.googleapis.com/google.protobuf.StringValue" in l)
    for i in range(start + 1, len(lines)):
        m = re.match(r"^(\s*)value:\s*\|[-+]?\s*$", lines[i])
        if m:
            indent = len(m.group(1))
            end = i + 1
            while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
                end += 1
            while end > i + 1 and not lines[end - 1].strip():  # trailing blank lines are not part of it
                end -= 1
            return i + 1, end, indent
    raise SystemExit(f"{ENVOY_YAML}: no `value: |` block after the StringValue")


def main(argv: list[str]) -> int:
    lines = ENVOY_YAML.read_text().splitlines()
    first, end, indent = block_bounds(lines)
    demo = json.loads(DEMO_JSON.read_text())
    if json.loads("\n".join(lines[first:end])) == demo:
        print("envoy/envoy.yaml already embeds filter-config/demo.json")
        return 0
    if "--check" in argv:
        print("envoy/envoy.yaml differs from filter-config/demo.json: run scripts/sync_envoy_yaml.py", file=sys.stderr)
        return 1
    pad = " " * (indent + 2)
    block = [pad + l for l in json.dumps(demo, indent=2, ensure_ascii=False).splitlines()]
    ENVOY_YAML.write_text("\n".join(lines[:first] + block + lines[end:]) + "\n")
    print("updated envoy/envoy.yaml from filter-config/demo.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
