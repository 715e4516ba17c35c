#!/usr/bin/env python3
"""Seed corpora for the cargo-fuzz targets (fuzz/corpus/<target>/) from the public test vectors in
../shared/vectors/ and the example configs. Idempotent: a seed is named by the SHA-256 of its bytes, so
running it again adds nothing; libFuzzer's own finds in the same folders are kept.

    python3 scripts/fuzz_seeds.py          (make fuzz and make fuzz-smoke run it first)
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
VECTORS = REPO.parent / "shared" / "vectors"
CORPUS = REPO / "fuzz" / "corpus"


def jvl_texts() -> list[str]:
    return [p.read_text(errors="replace") for p in sorted((VECTORS / "jwt_verify_lib").glob("*.txt"))]


def raw_literals(text: str) -> list[str]:
    """The constants of a jwt_verify_lib extract: each starts with "=== NAME", annotations start with "##"."""
    out = []
    for block in re.split(r"^=== .*$", text, flags=re.M)[1:]:
        body = "\n".join(l for l in block.splitlines() if not l.startswith("##")).strip()
        if body:
            out.append(body)
    return out


def seeds() -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {t: [] for t in ("jwt", "jwks", "config", "path", "template", "request",
                                                   "hmac_header", "signet", "httpsig", "cert", "claims",
                                                   "dpop", "header_map")}
    texts = jvl_texts()
    for t in texts:
        for tok in re.findall(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*", t):
            out["jwt"].append(tok.encode())
        for lit in raw_literals(t):
            if '"keys"' in lit or "BEGIN" in lit or '"kty"' in lit:
                out["jwks"].append(lit.encode())
    for p in sorted((REPO / "filter-config").glob("*.json")):
        if p.name != "schema.json":
            out["config"].append(p.read_bytes())

    hm = json.loads((VECTORS / "http_signatures" / "gatekeeper_hmac.json").read_text())
    for c in hm["cases"]:
        out["hmac_header"].append(c["authorization"].encode())
        out["path"].append(c["path_signed"].encode())
        out["request"].append(f'{c["method"]}\n{c["path_signed"]}\nauthorization: {c["authorization"]}\n'.encode())

    sg = json.loads((VECTORS / "http_signatures" / "signet.json").read_text())
    for c in sg["cases"]:
        out["signet"].append(c["Signet-Proof"].encode())
        out["path"].append(c["path_and_rawquery"].encode())

    for c in json.loads((VECTORS / "http_signatures" / "rfc9421_generated_pyauth.json").read_text()):
        u = urlsplit(c["url"])
        target = u.path + (f"?{u.query}" if u.query else "")
        lines = [c["method"], target, u.netloc] + [f"{k}: {v}" for k, v in c["headers"].items()]
        out["httpsig"].append(("\n".join(lines) + "\n\n" + (c.get("body") or "")).encode())

    for p in ["/", "/healthz", "/a/../b", "/a//b/./c", "/%2e%2e/x", "/a%2Fb", "/a;b/c", "/API/x?q=1", "/%68ealthz"]:
        out["path"].append(p.encode())
    for t in ["human:${claims.sub}", "${claims.realm_access.roles}", '${claims["https://x.io/role"]}',
              "${claims.email:-none}", "${provider}/${rule}", "$${x}", "${claims.a.b.c:-}"]:
        out["template"].append(t.encode())
    # Claim conditions, byte 0x01, claims: every value semantic (DESIGN.md "Claim conditions").
    for conds, token_claims in [
        ({"scope": ["orders:write"]}, {"scope": "openid orders:write"}),
        ({"scp": {"any": ["a", "b"]}}, {"scp": ["b"]}),
        ({"groups": {"any": ["admin", "ops"]}, "realm_access.roles": ["editor"]},
         {"groups": "admin", "realm_access": {"roles": ["editor"]}}),
        ({'["https://x.io/tier"]': ["gold"], "level": ["3"], "mfa": ["true"]},
         {"https://x.io/tier": "gold", "level": 3, "mfa": True}),
        ({"a.b[\"c.d\"].e": ["1"]}, {"a": {"b": {"c.d": {"e": [1, None, {}]}}}}),
    ]:
        out["claims"].append(json.dumps(conds).encode() + b"\x01" + json.dumps(token_claims).encode())
    for dn in ["CN=alice,O=Corp", r"CN=Smith\, John\+1,O=Corp", r"CN=J\C3\BCrgen", "CN=#0c03626f62",
               "CN=a+UID=7,O=x", r"O=x\,CN=admin,CN=bob", "2.5.4.3=bob", "CN=a,CN=b"]:
        out["cert"].append(dn.encode())
    # RFC 9449 §4.2 and §7.1: the example proofs, with the request each was made for.
    rfc_key = ("eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklD"
               "UkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE"
               "QSIsImNydiI6IlAtMjU2In19")
    out["dpop"].append((rfc_key + ".eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2Vy"
                        "dmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLv"
                        "qRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg\nPOST\nhttps://server.example.com/token").encode())
    out["dpop"].append((rfc_key + ".eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNv"
                        "dXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJa"
                        "M0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plem"
                        "AgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA\nGET\nhttps://resource.example.org/protectedresou"
                        "rce\nKz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU").encode())
    # proxy-wasm's serialized header map (count, lengths, NUL-terminated names and values): a request's.
    def header_map(pairs: list[tuple[bytes, bytes]]) -> bytes:
        head = len(pairs).to_bytes(4, "little") + b"".join(
            len(n).to_bytes(4, "little") + len(v).to_bytes(4, "little") for n, v in pairs)
        return head + b"".join(n + b"\0" + v + b"\0" for n, v in pairs)
    out["header_map"].append(header_map([(b":method", b"GET"), (b":path", b"/api/x?q=1"), (b":authority", b"h"),
                                         (b"authorization", b"Bearer eyJ0"), (b"x-empty", b"")]))
    out["header_map"].append(header_map([]))
    return out


def main() -> int:
    if not VECTORS.is_dir():
        print(f"{VECTORS} is missing: the shared vectors sit beside the repository", file=sys.stderr)
        return 1
    added = 0
    for target, items in seeds().items():
        d = CORPUS / target
        d.mkdir(parents=True, exist_ok=True)
        for data in items:
            f = d / ("seed-" + hashlib.sha256(data).hexdigest()[:16])
            if not f.exists():
                f.write_bytes(data)
                added += 1
    counts = ", ".join(f"{t} {len(v)}" for t, v in seeds().items())
    print(f"fuzz seeds: {counts} ({added} new files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
