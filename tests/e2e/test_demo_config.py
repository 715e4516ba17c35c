"""The `make run` demo: envoy/envoy.yaml embeds filter-config/demo.json verbatim, and the demo works as the
banner of scripts/run_demo.py says (its curl commands are run here, against a copy of envoy/envoy.yaml
with the ports moved to free ones)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

import trustgate_e2e as h

ENVOY_YAML = h.REPO / "envoy" / "envoy.yaml"
DEMO_JSON = h.REPO / "filter-config" / "demo.json"
sys.path.insert(0, str(h.REPO / "scripts"))

import demo_token  # noqa: E402
import run_demo  # noqa: E402
import sync_envoy_yaml  # noqa: E402


def embedded_configuration(yaml_text: str) -> str:
    """The block scalar `value: |` that follows the wasm filter's google.protobuf.StringValue."""
    lines = yaml_text.splitlines()
    first, end, _ = sync_envoy_yaml.block_bounds(lines)
    return "\n".join(lines[first:end])


def test_envoy_yaml_embeds_demo_json():
    embedded = json.loads(embedded_configuration(ENVOY_YAML.read_text()))
    demo = json.loads(DEMO_JSON.read_text())
    assert embedded == demo, (
        "envoy/envoy.yaml's filter configuration differs from filter-config/demo.json: "
        "run `python3 scripts/sync_envoy_yaml.py`"
    )


def test_envoy_yaml_wasm_filter_settings():
    text = ENVOY_YAML.read_text()
    for needle in (
        "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "root_id: trustgate",
        "vm_id: trustgate",
        "runtime: envoy.wasm.runtime.v8",
        "filename: target/wasm32-wasip1/release/trustgate.wasm",
        "failure_policy: FAIL_CLOSED",
        "allow_on_headers_stop_iteration: true",
        "port_value: 10000",
        "port_value: 10001",
        "port_value: 9901",
    ):
        assert needle in text, f"envoy/envoy.yaml lacks {needle!r}"


def test_demo_token_matches_demo_key():
    import jwt
    from jwt.algorithms import ECAlgorithm

    demo = json.loads(DEMO_JSON.read_text())
    provider = demo_token.demo_provider(demo)
    token = demo_token.mint()
    key = ECAlgorithm.from_jwk(json.dumps(provider["keys"]["jwks"]["keys"][0]))
    got = jwt.decode(token, key, algorithms=provider["algorithms"], audience=provider["audiences"], issuer=provider["issuer"])
    assert got["sub"] == "alice" and got["exp"] - got["iat"] == 3600


@pytest.fixture(scope="module")
def demo_envoy(envoy_bin, wasm, tmp_path_factory):
    """envoy/envoy.yaml as `make run` starts it, with ports 10000/10001/9901 moved to free ones."""
    source = ENVOY_YAML.read_text()
    echo_port = h.free_port()

    def bootstrap(port: int, admin: int) -> str:
        text = source
        for old, new in (("10000", port), ("10001", echo_port), ("9901", admin)):
            assert f"port_value: {old}" in text
            text = text.replace(f"port_value: {old}", f"port_value: {new}")
        return text.replace("filename: target/wasm32-wasip1/release/trustgate.wasm", f"filename: {wasm}")

    envoy = h.Envoy(envoy_bin, tmp_path_factory.mktemp("demo"), bootstrap, name="demo")
    h.start_or_fail(envoy)
    yield envoy
    envoy.stop()


def test_demo_echo_shows_identity(demo_envoy):
    token = demo_token.mint()
    resp = demo_envoy.request("/api/hello", [h.bearer(token), ("X-Commit-Owner", "human:mallory")])
    assert resp.status == 200, resp.describe()
    seen = h.header_lines(resp.text())
    assert h.values_of(seen, "x-commit-owner") == ["human:alice"], h.redact(resp.text())
    assert h.values_of(seen, "x-user-email") == ["alice@example.com"], h.redact(resp.text())
    assert not h.values_of(seen, "authorization"), "the demo forwards the token upstream"


def test_demo_401_without_token(demo_envoy):
    resp = demo_envoy.request("/api/hello", [("X-Commit-Owner", "human:mallory")])
    assert resp.status == 401, resp.describe()
    assert 'realm="trustgate"' in (resp.header("www-authenticate") or ""), resp.describe()
    assert resp.json().get("reason") == "missing", resp.describe()


def test_demo_healthz_strips_forged_header(demo_envoy):
    resp = demo_envoy.request("/healthz", [("X-Commit-Owner", "human:mallory"), ("x-COMMIT-owner", "agent:x")])
    assert resp.status == 200, resp.describe()
    assert not h.values_of(h.header_lines(resp.text()), "x-commit-owner"), resp.text()


def _like_curl(argv: list[str]) -> str:
    """Run one of the banner's curl commands (`curl -s[i] URL -H 'N: V' ...`) with http.client, producing
    what curl prints, for machines without curl."""
    from urllib.parse import urlsplit

    url = urlsplit(next(a for a in argv if a.startswith("http://")))
    headers = [tuple(argv[i + 1].split(": ", 1)) for i, a in enumerate(argv) if a == "-H"]
    resp = h.http_request(url.port, url.path + (f"?{url.query}" if url.query else ""), headers)
    head = ""
    if any(a.startswith("-") and not a.startswith("--") and "i" in a for a in argv):
        head = f"HTTP/1.1 {resp.status}\n" + "".join(f"{n}: {v}\n" for n, v in resp.headers) + "\n"
    return f"{head}{resp.text()}\n@@status={resp.status}\n"


@pytest.mark.parametrize("index", range(len(run_demo.demos("t"))))
def test_demo_banner_curl_commands(demo_envoy, index):
    """The exact commands `make run` prints, run (with curl if installed) against the moved ports."""
    demo = run_demo.demos(demo_token.mint(), base=f"http://127.0.0.1:{demo_envoy.port}")[index]
    if shutil.which("curl"):
        argv = demo.argv + ["-o", "-", "-w", "\n@@status=%{http_code}\n", "--max-time", "15"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    else:
        out = _like_curl(demo.argv)
    m = re.search(r"@@status=(\d+)", out)
    assert m and int(m.group(1)) == demo.status, f"{demo.title}: {h.redact(out)}"
    lower = out.lower()
    for line in demo.shows:
        assert line.lower() in lower, f"{demo.title}: output lacks {line!r}:\n{h.redact(out)}"
    for line in demo.hides:
        assert line.lower() not in lower, f"{demo.title}: output shows {line!r}:\n{h.redact(out)}"


def test_demo_banner_fallback_matches_curl(demo_envoy):
    """The http.client stand-in gives the same verdicts as curl (so machines without curl test the same)."""
    for demo in run_demo.demos(demo_token.mint(), base=f"http://127.0.0.1:{demo_envoy.port}"):
        out = _like_curl(demo.argv).lower()
        assert f"@@status={demo.status}" in out, f"{demo.title}: {h.redact(out)}"
        assert all(line.lower() in out for line in demo.shows), f"{demo.title}: {h.redact(out)}"
        assert not any(line.lower() in out for line in demo.hides), f"{demo.title}: {h.redact(out)}"
