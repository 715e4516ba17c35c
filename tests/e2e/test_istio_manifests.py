"""envoy/istio/*.yaml against the Istio CRD schemas, and the trustgate configs inside them against trustgate.

Schemas: the npm package @kubernetes-models/istio, pinned in tests/data/istio-crds/package-lock.json (generated
from Istio 1.29.2's crd-all.gen.yaml; see tests/data/istio-crds/README.md), installed by `make istio-deps` into
target/istio-crds/ (this module installs it there too when it is missing). Each manifest is checked twice:

1. with `jsonschema` (Draft 2020-12) against a JSON Schema built here from the package's TypeScript declarations
   (a faithful rendering of each CRD's openAPIV3Schema: properties, required, enums, types; int-or-string is
   `number | string`; x-kubernetes-preserve-unknown-fields objects such as WasmPlugin.pluginConfig or
   EnvoyFilter patch.value are `{}`, i.e. any object). Objects with declared properties are closed
   (additionalProperties: false), like the API server's strict field validation (kubectl's default), so a
   misspelled field is an error rather than silently pruned;
2. with the package's own validators (ajv code compiled from the same CRD schemas, run by node), which add the
   CRD's value constraints (maximum/minimum, maxLength, maxItems, formats, oneOf/not).

Both must accept every manifest, and both must reject the deliberately broken ones below. The trustgate configs
(WasmPlugin pluginConfig, the EnvoyFilter's configuration) go through `trustgate check-config` (the native CLI,
`cargo build --bin trustgate`) and filter-config/schema.json, with their `{"env": ...}` secrets set as the
manifest's vmConfig.env / environment_variables would set them.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

import trustgate_e2e as h

ISTIO_DIR = h.REPO / "envoy" / "istio"
CRDS_SRC = h.REPO / "tests" / "data" / "istio-crds"
CRDS_DIR = Path(os.environ.get("TRUSTGATE_ISTIO_CRDS", h.REPO / "target" / "istio-crds"))
PKG = CRDS_DIR / "node_modules" / "@kubernetes-models" / "istio"
CLI = Path(os.environ.get("TRUSTGATE_CLI", h.REPO / "target" / "debug" / "trustgate"))
CONFIG_DIR = h.REPO / "filter-config"

MANIFEST_FILES = sorted(ISTIO_DIR.glob("*.yaml"))
KINDS = {  # every kind the manifests may use: apiVersion, kind
    ("extensions.istio.io/v1alpha1", "WasmPlugin"),
    ("networking.istio.io/v1", "ServiceEntry"),
    ("networking.istio.io/v1", "DestinationRule"),
    ("networking.istio.io/v1alpha3", "EnvoyFilter"),
}


# ---------------------------------------------------------------------------------------------------------
# The schema package.

@pytest.fixture(scope="session")
def crds_dir() -> Path:
    """target/istio-crds with the pinned package installed (npm ci), as `make istio-deps` does."""
    lock = CRDS_SRC / "package-lock.json"
    stamp = CRDS_DIR / "node_modules" / ".package-lock.json"
    if not (PKG / "package.json").is_file() or stamp.stat().st_mtime < lock.stat().st_mtime:
        npm = shutil.which("npm")
        if not npm:
            pytest.fail("npm is not installed: `make deps` installs node and npm (apt-get install -y nodejs npm)",
                        pytrace=False)
        CRDS_DIR.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(CRDS_SRC / name, CRDS_DIR / name)
        out = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                             cwd=CRDS_DIR, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            pytest.fail(f"npm ci in {CRDS_DIR} failed:\n{out.stdout}\n{out.stderr}", pytrace=False)
    version = json.loads((PKG / "package.json").read_text())["version"]
    pinned = json.loads((CRDS_SRC / "package.json").read_text())["dependencies"]["@kubernetes-models/istio"]
    assert version == pinned, f"installed @kubernetes-models/istio {version}, pinned {pinned}: run make istio-deps"
    return CRDS_DIR


# TypeScript declarations (the subset json-schema-to-typescript emits) -> JSON Schema.
_TOKEN = re.compile(r'\s+|/\*.*?\*/|//[^\n]*|("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?)|([A-Za-z_$][\w$]*)|(.)', re.S)

OBJECT_META = {  # metadata: the fields a manifest sets, checked; the rest of ObjectMeta left to the API server
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                 "maxLength": 253},
        "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name"],
}


class _TS:
    def __init__(self, text: str):
        self.toks = []
        for m in _TOKEN.finditer(text):
            s, n, ident, punct = m.groups()
            if s is not None:
                self.toks.append(("str", json.loads(s)))
            elif n is not None:
                self.toks.append(("num", float(n) if "." in n else int(n)))
            elif ident is not None:
                self.toks.append(("id", ident))
            elif punct is not None:
                self.toks.append(("p", punct))
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", None)

    def take(self, kind=None, value=None):
        tok = self.peek()
        if (kind and tok[0] != kind) or (value is not None and tok[1] != value):
            raise ValueError(f"d.ts parse: expected {kind} {value!r}, got {tok!r} at token {self.i}")
        self.i += 1
        return tok

    def seek_interface(self, name: str):
        for j in range(len(self.toks) - 2):
            if self.toks[j] == ("id", "interface") and self.toks[j + 1] == ("id", name):
                self.i = j + 2
                return
        raise ValueError(f"d.ts: no interface {name}")

    def type_(self) -> dict:
        if self.peek() == ("p", "|"):
            self.take()
        alts = [self.intersection()]
        while self.peek() == ("p", "|"):
            self.take()
            alts.append(self.intersection())
        if len(alts) == 1:
            return alts[0]
        if all("const" in a for a in alts):
            return {"enum": [a["const"] for a in alts]}
        if all(a.get("type") == "object" and "properties" in a for a in alts):
            # the alternatives of a oneOf over the same fields: one closed object (required by every
            # alternative stays required); which combination is allowed is left to the ajv validators
            return _merge_objects(alts, required=set.intersection(*(set(a.get("required", [])) for a in alts)))
        return {"anyOf": alts}

    def intersection(self) -> dict:
        parts = [self.postfix()]
        while self.peek() == ("p", "&"):
            self.take()
            parts.append(self.postfix())
        if len(parts) == 1:
            return parts[0]
        # `{fields} & (oneOf/not variants of the same fields)`: the fields of all, required as the first says
        return _merge_objects(parts, required=set(parts[0].get("required", [])))

    def postfix(self) -> dict:
        t = self.primary()
        while self.peek() == ("p", "[") and self.toks[self.i + 1] == ("p", "]"):
            self.i += 2
            t = {"type": "array", "items": t}
        return t

    def primary(self) -> dict:
        kind, v = self.take()
        if kind == "str" or kind == "num":
            return {"const": v}
        if kind == "p" and v == "{":
            return self.members()
        if kind == "p" and v == "(":
            t = self.type_()
            self.take("p", ")")
            return t
        if kind == "id":
            if v == "Array":
                self.take("p", "<")
                t = self.type_()
                self.take("p", ">")
                return {"type": "array", "items": t}
            simple = {"string": {"type": "string"}, "number": {"type": "number"}, "boolean": {"type": "boolean"},
                      "null": {"type": "null"}, "any": {}, "unknown": {}, "IObjectMeta": OBJECT_META}
            if v in simple:
                return copy.deepcopy(simple[v])
            if v == "Exclude":  # Exclude<T, U> (from a CRD's `not`): T's fields
                self.take("p", "<")
                t = self.type_()
                self.take("p", ",")
                self.type_()
                self.take("p", ">")
                return t
        raise ValueError(f"d.ts parse: unexpected {kind} {v!r} at token {self.i}")

    def members(self) -> dict:
        props, required, extra = {}, [], None
        while self.peek() != ("p", "}"):
            if self.peek() == ("p", "["):  # index signature: [key: string]: T
                self.take()
                self.take("id")
                self.take("p", ":")
                self.take("id", "string")
                self.take("p", "]")
                self.take("p", ":")
                extra = self.type_()
            else:
                name = self.take()[1]
                optional = self.peek() == ("p", "?")
                if optional:
                    self.take()
                self.take("p", ":")
                props[name] = self.type_()
                if not optional:
                    required.append(name)
            if self.peek() == ("p", ";"):
                self.take()
        self.take("p", "}")
        schema: dict = {"type": "object"}
        if props:
            schema["properties"] = props
            schema["additionalProperties"] = extra if extra is not None else False
        elif extra is not None:
            schema["additionalProperties"] = extra
        # else `{}`: x-kubernetes-preserve-unknown-fields, any object
        if required:
            schema["required"] = required
        return schema


def _merge_objects(parts: list[dict], required: set[str]) -> dict:
    if not all(p.get("type") == "object" for p in parts):
        raise ValueError(f"d.ts: cannot merge non-object types {parts!r:.200}")
    props: dict = {}
    for p in parts:
        for name, sub in p.get("properties", {}).items():
            props.setdefault(name, sub)
    merged: dict = {"type": "object"}
    if props:
        merged["properties"] = props
        merged["additionalProperties"] = False
    if required:
        merged["required"] = sorted(required)
    return merged


def dts_schema(api_version: str, kind: str) -> dict:
    group, version = api_version.split("/")
    ts = _TS((PKG / group / version / f"{kind}.d.ts").read_text())
    ts.seek_interface(f"I{kind}")
    ts.take("p", "{")
    schema = ts.members()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


@pytest.fixture(scope="session")
def validators(crds_dir) -> dict[tuple[str, str], Draft202012Validator]:
    out = {}
    for api_version, kind in sorted(KINDS):
        schema = dts_schema(api_version, kind)
        Draft202012Validator.check_schema(schema)
        out[(api_version, kind)] = Draft202012Validator(schema)
    return out


def schema_errors(validators, obj: dict) -> list[str]:
    v = validators.get((obj.get("apiVersion"), obj.get("kind")))
    if v is None:
        return [f"no schema for {obj.get('apiVersion')} {obj.get('kind')} (add it to KINDS)"]
    return [f"{e.json_path}: {e.message[:200]}" for e in sorted(v.iter_errors(obj), key=lambda e: e.json_path)]


def node_errors(crds_dir: Path, objs: list[dict]) -> list[list[str] | None]:
    node = shutil.which("node")
    if not node:
        pytest.fail("node is not installed: `make deps` installs it (apt-get install -y nodejs)", pytrace=False)
    out = subprocess.run([node, str(CRDS_SRC / "validate.mjs"), str(crds_dir)], input=json.dumps(objs),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"validate.mjs: exit {out.returncode}\n{out.stderr}"
    results = json.loads(out.stdout)
    assert len(results) == len(objs)
    return results


# ---------------------------------------------------------------------------------------------------------
# The manifests.

def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


ALL_DOCS = [(p, i, d) for p in MANIFEST_FILES for i, d in enumerate(load_docs(p))]
DOC_IDS = [f"{p.name}#{i}:{d.get('kind')}" for p, i, d in ALL_DOCS]


def docs_of(kind: str) -> list[dict]:
    return [d for _, _, d in ALL_DOCS if d.get("kind") == kind]


def test_the_manifests_are_there():
    names = {p.name for p in MANIFEST_FILES}
    assert {"wasmplugin.yaml", "remote-jwks.yaml", "body-signing-envoyfilter.yaml"} <= names, names
    kinds = {(d["apiVersion"], d["kind"]) for _, _, d in ALL_DOCS}
    assert kinds == KINDS, f"manifest kinds {kinds} != the kinds this test has schemas for {KINDS}"


@pytest.mark.parametrize("doc", [d for _, _, d in ALL_DOCS], ids=DOC_IDS)
def test_manifest_matches_the_crd_schema(validators, doc):
    errors = schema_errors(validators, doc)
    assert not errors, "\n".join(errors)


def test_manifests_pass_the_packaged_crd_validators(crds_dir):
    results = node_errors(crds_dir, [d for _, _, d in ALL_DOCS])
    bad = {DOC_IDS[i]: r for i, r in enumerate(results) if r is not None}
    assert not bad, json.dumps(bad, indent=2)


# Deliberately broken manifests: both validators must reject each (proves the checks can fail).
def _broken() -> list[tuple[str, dict, set[str]]]:
    """(what, object, which checks must reject it: "schema" (jsonschema, strict fields), "ajv" (the package's
    validators: value constraints, no unknown-field check))."""
    wp = next(d for d in docs_of("WasmPlugin") if "vmConfig" in d["spec"])
    se = docs_of("ServiceEntry")[0]
    dr = docs_of("DestinationRule")[0]
    ef = docs_of("EnvoyFilter")[0]
    cases = []

    def variant(what, base, mutate, by=("schema", "ajv")):
        obj = copy.deepcopy(base)
        mutate(obj)
        cases.append((what, obj, set(by)))

    variant("failStrategy FAIL_SOMETIMES", wp, lambda o: o["spec"].update(failStrategy="FAIL_SOMETIMES"))
    variant("phase AUTHENTICATION", wp, lambda o: o["spec"].update(phase="AUTHENTICATION"))
    variant("vmConfig.env valueFrom FILE", wp, lambda o: o["spec"]["vmConfig"]["env"][0].update(valueFrom="FILE"))
    variant("misspelled failStratgy", wp, lambda o: o["spec"].update(failStratgy=o["spec"].pop("failStrategy")),
            by=["schema"])
    variant("ServiceEntry without hosts", se, lambda o: o["spec"].pop("hosts"))
    variant("ServiceEntry port number as a string", se, lambda o: o["spec"]["ports"][0].update(number="443"))
    variant("ServiceEntry port number 2^32", se, lambda o: o["spec"]["ports"][0].update(number=4294967296),
            by=["ajv"])
    variant("ServiceEntry 257 hosts", se, lambda o: o["spec"].update(hosts=[f"h{i}.example.com" for i in range(257)]),
            by=["ajv"])
    variant("metadata.name with an upper-case letter", se, lambda o: o["metadata"].update(name="Trustgate"),
            by=["schema"])
    variant("ServiceEntry resolution DNSX", se, lambda o: o["spec"].update(resolution="DNSX"))
    variant("DestinationRule tls mode STRICT", dr, lambda o: o["spec"]["trafficPolicy"]["tls"].update(mode="STRICT"))
    variant("DestinationRule tls.sni as a list", dr,
            lambda o: o["spec"]["trafficPolicy"]["tls"].update(sni=["login.example.com"]))
    variant("DestinationRule misspelled trafficPolicy", dr,
            lambda o: o["spec"].update(trafficPolcy=o["spec"].pop("trafficPolicy")), by=["schema"])
    variant("EnvoyFilter operation INSERT_AFTERWARDS", ef,
            lambda o: o["spec"]["configPatches"][0]["patch"].update(operation="INSERT_AFTERWARDS"))
    variant("EnvoyFilter applyTo HTTP_FILTERS", ef,
            lambda o: o["spec"]["configPatches"][0].update(applyTo="HTTP_FILTERS"))
    variant("wrong kind", wp, lambda o: o.update(apiVersion="extensions.istio.io/v1alpha1", kind="WasmPlugins"))
    return cases


BROKEN = _broken()


@pytest.mark.parametrize("what,obj", [(w, o) for w, o, by in BROKEN if "schema" in by],
                         ids=[w for w, _, by in BROKEN if "schema" in by])
def test_a_broken_manifest_is_rejected_by_the_schema(validators, what, obj):
    assert schema_errors(validators, obj), f"the CRD schema accepts a manifest with {what}"


def test_broken_manifests_are_rejected_by_the_packaged_validators(crds_dir):
    cases = [(what, obj) for what, obj, by in BROKEN if "ajv" in by]
    results = node_errors(crds_dir, [obj for _, obj in cases])
    accepted = [what for (what, _), r in zip(cases, results) if r is None]
    assert not accepted, f"the packaged CRD validators accept: {accepted}"


def test_preserve_unknown_fields_and_int_or_string_are_open(validators):
    """pluginConfig and EnvoyFilter patch.value are x-kubernetes-preserve-unknown-fields: any object passes (the
    trustgate config is checked by trustgate, below); an int-or-string field takes either."""
    wp = copy.deepcopy(next(d for d in docs_of("WasmPlugin") if "vmConfig" in d["spec"]))
    wp["spec"]["pluginConfig"] = {"anything": [1, {"nested": True}], "x": None}
    assert not schema_errors(validators, wp)
    wp["spec"]["pluginConfig"] = "not an object"
    assert schema_errors(validators, wp)
    ef = copy.deepcopy(docs_of("EnvoyFilter")[0])
    ef["spec"]["configPatches"][0]["patch"]["value"] = {"name": "x", "some_envoy_field": {"deep": [1, 2]}}
    assert not schema_errors(validators, ef)
    schema = validators[("networking.istio.io/v1", "DestinationRule")].schema
    gen = schema["properties"]["status"]["properties"]["observedGeneration"]
    assert gen == {"anyOf": [{"type": "number"}, {"type": "string"}]}, gen
    dr = copy.deepcopy(docs_of("DestinationRule")[0])
    for value, ok in ((3, True), ("3", True), ([3], False)):
        dr["status"] = {"observedGeneration": value}
        assert (not schema_errors(validators, dr)) == ok, value


# ---------------------------------------------------------------------------------------------------------
# What trustgate needs from them.

def test_wasmplugins_are_authn_fail_close():
    plugins = docs_of("WasmPlugin")
    assert len(plugins) >= 2
    for wp in plugins:
        spec = wp["spec"]
        assert spec["phase"] == "AUTHN" and spec["failStrategy"] == "FAIL_CLOSE", wp["metadata"]["name"]
        assert spec["url"].startswith("oci://"), spec["url"]
        assert isinstance(spec["pluginConfig"], dict)


def test_envoyfilter_turns_on_allow_on_headers_stop_iteration():
    (ef,) = docs_of("EnvoyFilter")
    (patch,) = ef["spec"]["configPatches"]
    assert patch["applyTo"] == "HTTP_FILTER" and patch["patch"]["operation"] == "INSERT_BEFORE"
    assert patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"
    typed = patch["patch"]["value"]["typed_config"]
    assert typed["@type"] == "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
    config = typed["config"]
    assert config["allow_on_headers_stop_iteration"] is True
    assert config["failure_policy"] == "FAIL_CLOSED"
    assert config["vm_config"]["vm_id"] == "trustgate"
    filter_config = json.loads(config["configuration"]["value"])
    signed = [name for name, p in filter_config["providers"].items() if p.get("hmac", {}).get("body") == "signed"]
    assert signed, "the body-signing EnvoyFilter's config signs no body"


def test_remote_jwks_clusters_exist_and_originate_tls():
    """Every cluster a remote/discovery key set names is `outbound|<port>||<host>` of a ServiceEntry host, and a
    DestinationRule originates TLS (SIMPLE, with SNI) to that host."""
    entries = docs_of("ServiceEntry")
    clusters = {f"outbound|{port['number']}||{host}": host
                for se in entries for host in se["spec"]["hosts"] for port in se["spec"]["ports"]}
    tls = {dr["spec"]["host"]: dr["spec"]["trafficPolicy"]["tls"] for dr in docs_of("DestinationRule")}
    named = []
    for wp in docs_of("WasmPlugin"):
        for name, provider in wp["spec"]["pluginConfig"]["providers"].items():
            keys = provider.get("jwt", {}).get("keys", {})
            for kind in ("remote", "discovery"):
                if kind in keys:
                    named.append((name, keys[kind]))
    assert named, "no WasmPlugin fetches remote keys"
    for name, fetch in named:
        cluster = fetch["cluster"]
        assert cluster in clusters, f"{name}: cluster {cluster!r} is not created by a ServiceEntry ({sorted(clusters)})"
        host = clusters[cluster]
        assert fetch["authority"] == host, f"{name}: authority {fetch['authority']!r} != {host!r}"
        assert tls.get(host, {}).get("mode") == "SIMPLE" and tls[host].get("sni") == host, f"{name}: no TLS to {host}"
    for se in entries:
        assert se["spec"]["location"] == "MESH_EXTERNAL" and se["spec"]["resolution"] == "DNS"


# The trustgate configs inside the manifests, with their env secrets set as the proxy would set them.
TEST_ENV = {
    # the value example.json holds inline: the wasmplugin.yaml config must then be example.json exactly
    "TRUSTGATE_CI_JWKS": json.dumps(json.loads((CONFIG_DIR / "example.json").read_text())
                                    ["providers"]["ci"]["jwt"]["keys"]["jwks"]),
    "TRUSTGATE_MOBILE_APP_SECRET": "EXAMPLE-ONLY-s3cr3t-shared-secret",
}


def embedded_configs() -> list[tuple[str, dict, dict[str, str]]]:
    """(id, trustgate config, the environment the VM would have)."""
    out = []
    for path, i, doc in ALL_DOCS:
        if doc["kind"] == "WasmPlugin":
            env = {}
            for var in doc["spec"].get("vmConfig", {}).get("env", []):
                if var.get("valueFrom", "INLINE") == "HOST":
                    env[var["name"]] = TEST_ENV[var["name"]]
                else:
                    env[var["name"]] = var.get("value", "")
            out.append((f"{path.name}#{i}", doc["spec"]["pluginConfig"], env))
        elif doc["kind"] == "EnvoyFilter":
            for patch in doc["spec"]["configPatches"]:
                config = patch["patch"]["value"]["typed_config"]["config"]
                host_keys = config["vm_config"].get("environment_variables", {}).get("host_env_keys", [])
                inline = config["vm_config"].get("environment_variables", {}).get("key_values", {})
                env = {k: TEST_ENV[k] for k in host_keys} | inline
                out.append((f"{path.name}#{i}", json.loads(config["configuration"]["value"]), env))
    return out


EMBEDDED = embedded_configs()


def env_names(config) -> set[str]:
    if isinstance(config, dict):
        if set(config) == {"env"} and isinstance(config["env"], str):
            return {config["env"]}
        return set().union(*(env_names(v) for v in config.values())) if config else set()
    if isinstance(config, list):
        return set().union(*(env_names(v) for v in config)) if config else set()
    return set()


def substitute_env(config, env: dict[str, str]):
    if isinstance(config, dict):
        if set(config) == {"env"} and isinstance(config["env"], str):
            return env[config["env"]]
        return {k: substitute_env(v, env) for k, v in config.items()}
    if isinstance(config, list):
        return [substitute_env(v, env) for v in config]
    return config


@pytest.fixture(scope="module")
def cli() -> Path:
    if not CLI.is_file():
        pytest.fail(f"{CLI} is missing: run `cargo build --bin trustgate` (make test does)", pytrace=False)
    return CLI


@pytest.mark.parametrize("where,config,env", EMBEDDED, ids=[e[0] for e in EMBEDDED])
def test_embedded_config_passes_check_config(cli, tmp_path, where, config, env):
    assert env_names(config) <= set(env), f"{where}: {{'env': ...}} names {env_names(config) - set(env)} " \
                                          "that the manifest does not put in the VM's environment"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTGATE_")}
    out = subprocess.run([str(cli), "check-config", str(path)], capture_output=True, text=True, timeout=60,
                         env=clean | env)
    assert out.returncode == 0, f"{where}: check-config exit {out.returncode}\n{out.stdout}{out.stderr}"
    if env:  # and without the environment the filter refuses it, naming the variable
        out = subprocess.run([str(cli), "check-config", str(path)], capture_output=True, text=True, timeout=60,
                             env=clean)
        assert out.returncode != 0 and sorted(env)[0] in out.stdout + out.stderr, out.stdout + out.stderr


@pytest.mark.parametrize("where,config,env", EMBEDDED, ids=[e[0] for e in EMBEDDED])
def test_embedded_config_matches_schema_json(where, config, env):
    schema = json.loads((CONFIG_DIR / "schema.json").read_text())
    v = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    resolved = substitute_env(config, env)
    # a jwks given as text is a JSON document: the schema describes the object form
    for p in resolved.get("providers", {}).values():
        keys = p.get("jwt", {}).get("keys", {})
        if isinstance(keys.get("jwks"), str):
            keys["jwks"] = json.loads(keys["jwks"])
    errors = [f"{e.json_path}: {e.message[:200]}" for e in v.iter_errors(resolved)]
    assert not errors, "\n".join(errors)


def test_wasmplugin_config_is_example_json():
    (cfg,) = [c for w, c, _ in EMBEDDED if w.startswith("wasmplugin.yaml")]
    (env,) = [e for w, _, e in EMBEDDED if w.startswith("wasmplugin.yaml")]
    resolved = substitute_env(cfg, env)
    ci_keys = resolved["providers"]["ci"]["jwt"]["keys"]
    ci_keys["jwks"] = json.loads(ci_keys["jwks"])
    assert resolved == json.loads((CONFIG_DIR / "example.json").read_text())


def test_remote_wasmplugin_config_is_remote_json_with_istio_clusters():
    (cfg,) = [c for w, c, _ in EMBEDDED if w.startswith("remote-jwks.yaml")]
    text = json.dumps(cfg).replace("outbound|443||login.example.com", "idp_jwks") \
                          .replace("outbound|443||tenant.eu.auth0.com", "auth0_jwks")
    assert json.loads(text) == json.loads((CONFIG_DIR / "remote.json").read_text())
