#!/usr/bin/env python3
"""Build the OCI image of the trustgate filter that Istio's WasmPlugin pulls, without Docker (stdlib only).

The image is the *compat* variant of the Wasm image spec (solo-io/wasm spec/spec-compat.md), the one Istio's
image fetcher accepts with standard OCI media types:

- one layer, `application/vnd.oci.image.layer.v1.tar+gzip`, a tar holding the module as `plugin.wasm`;
- an OCI image config (`application/vnd.oci.image.config.v1+json`) whose rootfs names that layer's diff ID;
- the manifest annotation `module.wasm.image/variant: compat` (required by the spec for this layer type).

Output (default `target/oci/`):

    target/oci/trustgate/       an OCI image layout (oci-layout, index.json, blobs/sha256/...), one manifest
                                tagged with the crate version:  skopeo inspect oci:target/oci/trustgate
    target/oci/trustgate.tar    the same layout as one tar:    skopeo inspect oci-archive:target/oci/trustgate.tar

Reproducible: the same wasm gives the same bytes (sorted entries, mtime 0, uid/gid 0, no user/group names,
gzip header mtime 0 and no file name, JSON with sorted keys; no creation time anywhere). The bytes depend only
on the wasm, the tag and the zlib build.

    python3 scripts/oci.py [--wasm target/wasm32-wasip1/release/trustgate.wasm] [--out target/oci]
                           [--name trustgate] [--tag VERSION]
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "trustgate.wasm"
DEFAULT_OUT = REPO / "target" / "oci"

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_VARIANT_ANNOTATION = "module.wasm.image/variant"
PLUGIN_FILE = "plugin.wasm"


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra) -> dict:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def deterministic_tar(files: list[tuple[str, bytes, int]]) -> bytes:
    """A POSIX ustar archive of (name, content, mode) entries, sorted by name, with fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content, mode in sorted(files, key=lambda f: f[0]):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def deterministic_gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    # filename="" and mtime=0: the gzip header then carries neither a name nor a time.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def crate_version() -> str:
    text = (REPO / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1] if "[package]" in text else text
    m = re.search(r'^\s*version\s*=\s*"([^"]+)"', package, re.M)
    return m.group(1) if m else "latest"


def build_blobs(wasm: bytes, name: str, tag: str) -> tuple[dict[str, bytes], bytes]:
    """Returns ({digest: blob}, index.json bytes)."""
    layer_tar = deterministic_tar([(PLUGIN_FILE, wasm, 0o644)])
    layer = deterministic_gzip(layer_tar)
    config = canonical_json({
        # GOOS/GOARCH-style platform of a WASI preview 1 module (what `GOOS=wasip1 GOARCH=wasm` images use).
        "architecture": "wasm",
        "os": "wasip1",
        "config": {"Labels": {"org.opencontainers.image.title": name, "org.opencontainers.image.version": tag}},
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
    })
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": descriptor(MT_CONFIG, config),
        "layers": [descriptor(MT_LAYER, layer)],
        "annotations": {
            WASM_VARIANT_ANNOTATION: "compat",
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.version": tag,
            "org.opencontainers.image.description": "trustgate proxy-wasm auth filter (plugin.wasm)",
        },
    })
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [descriptor(MT_MANIFEST, manifest, annotations={"org.opencontainers.image.ref.name": tag})],
    })
    blobs = {sha256(b): b for b in (layer, config, manifest)}
    return blobs, index


def write_layout(directory: Path, blobs: dict[str, bytes], index: bytes) -> dict[str, bytes]:
    """Writes the layout into `directory` (which must not exist); returns {relative path: bytes}."""
    files = {"oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}), "index.json": index}
    for digest, blob in blobs.items():
        files["blobs/sha256/" + digest.split(":", 1)[1]] = blob
    for rel, data in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def layout_tar(dirs: list[str], files: dict[str, bytes]) -> bytes:
    """The layout as one tar (directories first, then files; sorted; fixed metadata)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d.rstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info)
        for rel in sorted(files):
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(files[rel]), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[rel]))
    return buf.getvalue()


def build(wasm_path: Path, out: Path, name: str, tag: str) -> dict:
    wasm = wasm_path.read_bytes()
    if wasm[:4] != b"\0asm":
        raise SystemExit(f"oci.py: {wasm_path} is not a WebAssembly module (no \\0asm magic)")
    blobs, index = build_blobs(wasm, name, tag)
    out.mkdir(parents=True, exist_ok=True)
    layout = out / name
    archive = out / f"{name}.tar"
    # Write into a fresh directory and swap it in, so blobs of an earlier build never linger in the layout.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        files = write_layout(tmp / name, blobs, index)
        (tmp / archive.name).write_bytes(layout_tar(["blobs/", "blobs/sha256/"], files))
        if layout.exists():
            shutil.rmtree(layout)
        os.replace(tmp / name, layout)
        os.replace(tmp / archive.name, archive)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    manifest = json.loads(index)["manifests"][0]
    return {
        "layout": str(layout),
        "archive": str(archive),
        "tag": tag,
        "manifest_digest": manifest["digest"],
        "wasm_sha256": hashlib.sha256(wasm).hexdigest(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wasm", type=Path, default=DEFAULT_WASM, help="the filter module (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--name", default="trustgate", help="layout directory / archive name (default: %(default)s)")
    ap.add_argument("--tag", default=None, help="tag (org.opencontainers.image.ref.name; default: Cargo version)")
    args = ap.parse_args(argv)
    if not args.wasm.is_file():
        print(f"oci.py: {args.wasm} not found (run `make build` first)", file=sys.stderr)
        return 1
    tag = args.tag or crate_version()
    info = build(args.wasm, args.out, args.name, tag)
    rel = lambda p: os.path.relpath(p)  # noqa: E731
    print(f"OCI image layout {rel(info['layout'])} (tag {tag}), archive {rel(info['archive'])}")
    print(f"  manifest {info['manifest_digest']}; plugin.wasm sha256:{info['wasm_sha256']}")
    print(f"  push: skopeo copy oci:{rel(info['layout'])}:{tag} docker://REGISTRY/trustgate:{tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
