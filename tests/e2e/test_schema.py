"""filter-config/schema.json (JSON Schema, Draft 2020-12) describes the config: every example in
filter-config/ validates against it, and so do the configs the e2e tests load into Envoy. For the `assertion` block
the filter's own compile step (`trustgate check-config`) is asked too: it accepts the configs the schema accepts
and refuses the ones it rejects."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from jsonschema import Draft202012Validator

import trustgate_e2e as h

CONFIG_DIR = h.REPO / "filter-config"
SCHEMA = CONFIG_DIR / "schema.json"
EXAMPLES = sorted(p for p in CONFIG_DIR.glob("*.json") if p.name != SCHEMA.name)


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    if not SCHEMA.is_file():
        pytest.fail(f"{SCHEMA.relative_to(h.REPO)} is missing", pytrace=False)
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _errors(validator, instance) -> str:
    errs = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return "\n".join(f"  {e.json_path}: {e.message[:300]}" for e in errs)


def test_schema_is_draft_2020_12(validator):
    assert "$schema" in validator.schema, "schema.json does not declare its draft ($schema)"
    declared = validator.schema["$schema"]
    assert declared.rstrip("#") == "https://json-schema.org/draft/2020-12/schema", declared


def test_there_are_examples():
    assert any(p.name == "demo.json" for p in EXAMPLES), "filter-config/demo.json is missing"


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(validator, example):
    errors = _errors(validator, json.loads(example.read_text()))
    assert not errors, f"{example.name} does not validate against schema.json:\n{errors}"


def test_e2e_config_validates(validator, keys):
    errors = _errors(validator, h.jwt_filter_config(keys))
    assert not errors, f"the e2e filter config does not validate against schema.json:\n{errors}"


def test_schema_rejects_unknown_top_level_field(validator):
    demo = json.loads((CONFIG_DIR / "demo.json").read_text())
    demo["rulez"] = []
    assert not validator.is_valid(demo), "schema.json accepts an unknown top-level field"


def _assertion_configs() -> dict[str, tuple[dict, str]]:
    """The configs tests/e2e/test_assertion.py loads into Envoy, each with the PEM its {"env": …} names: EdDSA with
    the defaults, ES256 with its own header, path and lifetime, and the rotated one (previous_keys)."""
    import test_assertion as ta

    idp, ed, es, ed_b = (h.generate_key("ES256", "idp-1"), h.generate_key("EdDSA", ta.KID_A),
                         h.generate_key("ES256", "es-1"), h.generate_key("EdDSA", ta.KID_B))
    previous = [{**ta.public_x(ed), "kid": ta.KID_A}]
    return {
        "eddsa": (ta.filter_config(idp, ed), ta.pkcs8_pem(ed)),
        "es256": (ta.filter_config(idp, es, header="X-Gateway-Identity", jwks_path=ta.ES_JWKS_PATH, ttl_s=ta.ES_TTL_S),
                  ta.pkcs8_pem(es)),
        "rotated": (ta.filter_config(idp, ed_b, previous=previous), ta.pkcs8_pem(ed_b)),
    }


def _check_config(tmp_path, cfg: dict, pem: str) -> subprocess.CompletedProcess:
    """`trustgate check-config` (the filter's own compile step) on `cfg`, its signing key in the environment."""
    import test_assertion as ta

    cli = h.REPO / "target" / "debug" / "trustgate"
    if not cli.is_file():
        pytest.fail(f"{cli} does not exist: build it with `make build-cli`", pytrace=False)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return subprocess.run([str(cli), "check-config", str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, ta.KEY_ENV: pem})


@pytest.mark.parametrize("name", ["eddsa", "es256", "rotated"])
def test_assertion_configs_validate_and_compile(validator, tmp_path, name):
    cfg, pem = _assertion_configs()[name]
    errors = _errors(validator, cfg)
    assert not errors, f"the {name} assertion config does not validate against schema.json:\n{errors}"
    out = _check_config(tmp_path, cfg, pem)
    assert out.returncode == 0, out.stderr


def _set(doc: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for p in parents:
        doc = doc[int(p)] if isinstance(doc, list) else doc[p]
    if value is _DELETE:
        del doc[last]
    elif isinstance(doc, list):
        doc[int(last)] = value
    else:
        doc[last] = value


_DELETE = object()

ASSERTION_REJECTS = {
    # what the filter refuses too (policy/assertion.rs, policy/config.rs): checked with check-config below
    "alg RS256": ("assertion.signing_key.alg", "RS256"),
    "no kid": ("assertion.signing_key.kid", _DELETE),
    "no sub": ("assertion.claims.sub", _DELETE),
    "registered claim": ("assertion.claims.exp", "${claims.exp}"),
    "claim source": ("assertion.claims.roles", {"claim": "realm_access.roles", "join": ","}),
    "ttl 0": ("assertion.ttl_s", 0),
    "ttl over an hour": ("assertion.ttl_s", 3601),
    "reserved header": ("assertion.header", "Authorization"),
    "private previous key": ("assertion.previous_keys", [{"kty": "OKP", "crv": "Ed25519", "x": "AA", "d": "AA", "kid": "o"}]),
    "previous key without kid": ("assertion.previous_keys", [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]),
    "unknown member": ("assertion.algorithm", "EdDSA"),
    "audience on a public rule": ("rules.0.assertion_audience", "billing"),
    "audience without the block": ("assertion", _DELETE),
}


@pytest.mark.parametrize("case", list(ASSERTION_REJECTS))
def test_schema_and_filter_reject_bad_assertion_configs(validator, tmp_path, case):
    cfg, pem = _assertion_configs()["eddsa"]
    assert validator.is_valid(cfg)
    path, value = ASSERTION_REJECTS[case]
    _set(cfg, path, value)
    assert not validator.is_valid(cfg), f"schema.json accepts {case}"
    out = _check_config(tmp_path, cfg, pem)
    assert out.returncode == 1 and "trustgate: " in out.stderr, f"check-config: {out.returncode} {out.stderr}"
