"""filter-config/schema.json (JSON Schema, Draft 2020-12) describes the config: every example in
filter-config/ validates against it, and so do the configs the e2e tests load into Envoy."""
from __future__ import annotations

import json

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


def _assertion_configs() -> dict[str, dict]:
    """The configs tests/e2e/test_assertion.py loads into Envoy: EdDSA with the defaults, ES256 with its own header,
    path and lifetime, and the rotated one (previous_keys)."""
    import test_assertion as ta

    idp, ed, es = h.generate_key("ES256", "idp-1"), h.generate_key("EdDSA", ta.KID_A), h.generate_key("ES256", "es-1")
    previous = [{**ta.public_x(ed), "kid": ta.KID_A}]
    return {
        "eddsa": ta.filter_config(idp, ed),
        "es256": ta.filter_config(idp, es, header="X-Gateway-Identity", jwks_path=ta.ES_JWKS_PATH, ttl_s=ta.ES_TTL_S),
        "rotated": ta.filter_config(idp, h.generate_key("EdDSA", ta.KID_B), previous=previous),
    }


def test_assertion_configs_validate(validator):
    for name, cfg in _assertion_configs().items():
        errors = _errors(validator, cfg)
        assert not errors, f"the {name} assertion config does not validate against schema.json:\n{errors}"


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
    # what the filter also refuses (policy/assertion.rs, policy/config.rs), at the same member
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
def test_schema_rejects_bad_assertion_configs(validator, case):
    cfg = _assertion_configs()["eddsa"]
    assert validator.is_valid(cfg)
    path, value = ASSERTION_REJECTS[case]
    _set(cfg, path, value)
    assert not validator.is_valid(cfg), f"schema.json accepts {case}"
