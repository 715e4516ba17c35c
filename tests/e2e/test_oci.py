"""`make oci`: the OCI image Istio's WasmPlugin pulls (Wasm image spec, "compat" variant), built without Docker.

Builds it with `make oci` (which builds the wasm first), twice, and checks that the two builds are the same bytes;
then reads it back with a real OCI tool, skopeo (Debian package; `make deps` installs it as root): inspect the
layout and the archive, copy the image out (skopeo verifies every blob digest while copying) and check that its
only layer is a tar+gzip holding `plugin.wasm`, byte-identical to the wasm `make` just built. A missing skopeo is
a failure, never a skip.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import trustgate_e2e as h

OUT = h.REPO / "target" / "oci"
LAYOUT = OUT / "trustgate"
ARCHIVE = OUT / "trustgate.tar"
WASM = h.REPO / "target" / "wasm32-wasip1" / "release" / "trustgate.wasm"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def snapshot(*roots: Path) -> dict[str, bytes]:
    files = {}
    for root in roots:
        if root.is_file():
            files[root.name] = root.read_bytes()
        else:
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    files[str(p.relative_to(root.parent))] = p.read_bytes()
    return files


def make_oci() -> subprocess.CompletedProcess:
    out = subprocess.run(["make", "--no-print-directory", "oci"], cwd=h.REPO, capture_output=True, text=True,
                         timeout=1800)
    if out.returncode != 0:
        pytest.fail(f"make oci failed (exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}",
                    pytrace=False)
    return out


@pytest.fixture(scope="module")
def skopeo() -> str:
    path = shutil.which("skopeo")
    if not path:
        pytest.fail("skopeo is not installed: `make deps` installs it as root (apt-get install -y skopeo)",
                    pytrace=False)
    return path


@pytest.fixture(scope="module")
def built():
    """Two `make oci` runs; returns (files of the first, files of the second, the wasm bytes they were built from)."""
    make_oci()
    first = snapshot(LAYOUT, ARCHIVE)
    wasm_first = WASM.read_bytes()
    make_oci()
    second = snapshot(LAYOUT, ARCHIVE)
    wasm = WASM.read_bytes()
    if wasm != wasm_first:
        pytest.fail("the wasm changed between the two `make oci` runs (something else rebuilt it): rerun",
                    pytrace=False)
    return first, second, wasm


def run(*cmd: str) -> str:
    out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{' '.join(cmd)}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def index() -> dict:
    return json.loads((LAYOUT / "index.json").read_text())


def blob(digest: str) -> bytes:
    algo, hexdigest = digest.split(":", 1)
    data = (LAYOUT / "blobs" / algo / hexdigest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hexdigest, f"blob {digest} does not match its digest"
    return data


def tar_members(layer_gz: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer_gz)), mode="r:") as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()]


def test_two_builds_are_byte_identical(built):
    first, second, _ = built
    assert sorted(first) == sorted(second), "the two builds wrote different files"
    differ = [name for name in first if first[name] != second[name]]
    assert not differ, f"not reproducible: {differ} differ between two `make oci` runs"
    assert "trustgate.tar" in first and "trustgate/index.json" in first and "trustgate/oci-layout" in first


def test_build_elsewhere_gives_the_same_digest(built, tmp_path):
    """scripts/oci.py from another working directory into another output directory: same manifest digest."""
    _, _, wasm = built
    wasm_copy = tmp_path / "copy.wasm"
    wasm_copy.write_bytes(wasm)
    subprocess.run([sys.executable, str(h.REPO / "scripts" / "oci.py"), "--wasm", str(wasm_copy),
                    "--out", str(tmp_path / "oci")], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    other = json.loads((tmp_path / "oci" / "trustgate" / "index.json").read_text())
    assert other == index()
    assert (tmp_path / "oci" / "trustgate.tar").read_bytes() == ARCHIVE.read_bytes()


def test_layout_is_the_wasm_image_compat_variant(built):
    _, _, wasm = built
    assert json.loads((LAYOUT / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    idx = index()
    assert idx["schemaVersion"] == 2 and len(idx["manifests"]) == 1
    desc = idx["manifests"][0]
    assert desc["mediaType"] == MT_MANIFEST
    assert desc["annotations"]["org.opencontainers.image.ref.name"]
    manifest = json.loads(blob(desc["digest"]))
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == MT_MANIFEST
    # compat variant: exactly one layer, standard OCI tar+gzip, and the annotation the spec requires for it
    assert [layer["mediaType"] for layer in manifest["layers"]] == [MT_LAYER]
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    assert manifest["config"]["mediaType"] == MT_CONFIG
    layer_gz = blob(manifest["layers"][0]["digest"])
    assert len(layer_gz) == manifest["layers"][0]["size"]
    assert layer_gz[4:8] == b"\0\0\0\0", "gzip header carries an mtime"
    assert not layer_gz[3] & 0x08, "gzip header carries a file name"
    members = tar_members(layer_gz)
    assert [m.name for m, _ in members] == ["plugin.wasm"]
    info, content = members[0]
    assert info.isfile() and info.mtime == 0 and info.uid == 0 and info.gid == 0 and info.mode == 0o644
    assert info.uname == "" and info.gname == ""
    assert content == wasm, "plugin.wasm in the layer differs from target/wasm32-wasip1/release/trustgate.wasm"
    config = json.loads(blob(manifest["config"]["digest"]))
    assert config["rootfs"] == {"type": "layers",
                                "diff_ids": ["sha256:" + hashlib.sha256(gzip.decompress(layer_gz)).hexdigest()]}
    assert (config["architecture"], config["os"]) == ("wasm", "wasip1")


def test_skopeo_inspects_the_layout_and_the_archive(built, skopeo):
    desc = index()["manifests"][0]
    tag = desc["annotations"]["org.opencontainers.image.ref.name"]
    manifest = json.loads(blob(desc["digest"]))
    for ref in (f"oci:{LAYOUT}", f"oci:{LAYOUT}:{tag}", f"oci-archive:{ARCHIVE}", f"oci-archive:{ARCHIVE}:{tag}"):
        info = json.loads(run(skopeo, "inspect", ref))
        assert info["Digest"] == desc["digest"], ref
        assert info["Layers"] == [manifest["layers"][0]["digest"]], ref
        assert (info["Architecture"], info["Os"]) == ("wasm", "wasip1"), ref
        raw = run(skopeo, "inspect", "--raw", ref)
        assert hashlib.sha256(raw.encode()).hexdigest() == desc["digest"].split(":", 1)[1], ref
        assert json.loads(raw)["annotations"]["module.wasm.image/variant"] == "compat"


def test_skopeo_copies_the_image_and_plugin_wasm_is_the_built_module(built, skopeo, tmp_path):
    """skopeo copy checks every blob against its digest; the copied layer must hold exactly the built wasm."""
    _, _, wasm = built
    tag = index()["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    for i, src in enumerate((f"oci:{LAYOUT}:{tag}", f"oci-archive:{ARCHIVE}:{tag}")):
        dest = tmp_path / f"copy{i}"
        run(skopeo, "copy", "--quiet", src, f"dir:{dest}")
        manifest = json.loads((dest / "manifest.json").read_text())
        assert [layer["mediaType"] for layer in manifest["layers"]] == [MT_LAYER]
        layer = (dest / manifest["layers"][0]["digest"].split(":", 1)[1]).read_bytes()
        assert [(m.name, content == wasm) for m, content in tar_members(layer)] == [("plugin.wasm", True)], src
        # and into another OCI layout (what `skopeo copy ... docker://registry/...` would push): same digest
        run(skopeo, "copy", "--quiet", src, f"oci:{tmp_path / f'layout{i}'}:{tag}")
        again = json.loads(run(skopeo, "inspect", f"oci:{tmp_path / f'layout{i}'}:{tag}"))
        assert again["Digest"] == index()["manifests"][0]["digest"]


def test_make_oci_builds_from_the_wasm_make_built(built):
    """The image holds whatever wasm `make oci` just built (no fixed hash): its sha256 is in the make output."""
    out = make_oci()
    digest = hashlib.sha256(WASM.read_bytes()).hexdigest()
    assert f"plugin.wasm sha256:{digest}" in out.stdout, out.stdout
    assert os.path.getmtime(LAYOUT / "index.json") >= os.path.getmtime(WASM)
