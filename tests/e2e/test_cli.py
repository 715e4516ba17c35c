"""The native CLI (`trustgate check-config FILE`) gives the same verdicts and JSON paths as Envoy, without
Envoy. `make test` builds it (cargo build --bin trustgate) before running these."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import trustgate_e2e as h

CLI = Path(os.environ.get("TRUSTGATE_CLI", h.REPO / "target" / "debug" / "trustgate"))


@pytest.fixture(scope="module")
def cli() -> Path:
    if not CLI.is_file():
        pytest.fail(f"{CLI} is missing: run `cargo build --bin trustgate` (make test does)", pytrace=False)
    return CLI


def check(cli: Path, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(cli), "check-config", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("example", sorted(p for p in (h.REPO / "filter-config").glob("*.json") if p.name != "schema.json"), ids=lambda p: p.name)
def test_examples_pass_check_config(cli, example):
    out = check(cli, example)
    assert out.returncode == 0, f"check-config {example.name}: exit {out.returncode}\n{out.stdout}{out.stderr}"


def test_check_config_names_the_json_path(cli, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    demo = json.loads((h.REPO / "filter-config" / "demo.json").read_text())
    name = next(iter(demo["providers"]))
    jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP521R1()).public_key(), as_dict=True)
    demo["providers"][name]["jwt"]["keys"]["jwks"]["keys"][0] = jwk
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(demo))
    out = check(cli, bad)
    assert out.returncode != 0, "check-config accepted a P-521 key"
    assert f"providers.{name}.jwt.keys.jwks.keys[0].crv" in out.stdout + out.stderr, out.stdout + out.stderr
