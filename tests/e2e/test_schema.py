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
