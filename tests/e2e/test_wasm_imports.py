"""The built module imports only what every proxy-wasm host gives: `env.proxy_*` and the WASI functions Envoy
provides. A new import (say, a crate that wants a clock or a file) would make Envoy refuse to load it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import wasm_exports  # noqa: E402
import wasm_imports  # noqa: E402

# The WASI preview-1 functions Envoy's V8 host implements (source/extensions/common/wasm/context.cc).
ENVOY_WASI = {
    "args_get", "args_sizes_get", "clock_res_get", "clock_time_get", "environ_get", "environ_sizes_get",
    "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags", "fd_prestat_dir_name", "fd_prestat_get", "fd_read",
    "fd_seek", "fd_write", "path_open", "poll_oneoff", "proc_exit", "random_get", "sched_yield",
}


def test_imports_are_proxy_abi_and_envoy_wasi_only(wasm):
    imports = wasm_imports.imports(str(wasm))
    assert any(i == "env.proxy_log" for i in imports), imports
    bad = [
        i for i in imports
        if not (i.startswith("env.proxy_")
                or (i.startswith("wasi_snapshot_preview1.") and i.split(".", 1)[1] in ENVOY_WASI))
    ]
    assert bad == [], f"imports Envoy does not provide: {bad}"


def test_exports_leave_out_the_callbacks_trustgate_does_not_implement(wasm):
    """`make build` removes the SDK's callbacks trustgate leaves at their defaults (scripts/wasm_exports.py), so
    that Envoy makes no call into the VM for them on every request; the ones it implements stay."""
    exports = set(wasm_exports.exports(str(wasm)))
    assert exports.isdisjoint(wasm_exports.UNUSED_CALLBACKS), sorted(exports & set(wasm_exports.UNUSED_CALLBACKS))
    needed = {"proxy_on_vm_start", "proxy_on_configure", "proxy_on_tick", "proxy_on_context_create",
              "proxy_on_request_headers", "proxy_on_request_body", "proxy_on_http_call_response",
              "proxy_on_delete", "proxy_on_memory_allocate", "proxy_abi_version_0_2_1", "memory", "_initialize"}
    assert needed <= exports, sorted(needed - exports)


def _export(name: str, index: int) -> bytes:
    return wasm_exports.name(name) + bytes([0]) + wasm_exports.uleb(index)


def test_trim_removes_only_the_named_exports_and_no_other_byte(tmp_path):
    """A module with sections around its exports: the named exports go, the others keep their order, every
    other section is byte for byte the same, and a second trim changes nothing."""
    before = wasm_exports.section(0, b"\x01a" + b"x" * 200)  # a custom section longer than 127 bytes (two-byte size)
    after = wasm_exports.section(0, b"\x01b")
    names = ["keep_one", "proxy_on_log", "keep_two", "proxy_on_done"]
    exports = wasm_exports.vec([_export(n, i) for i, n in enumerate(names)])
    module = tmp_path / "m.wasm"
    module.write_bytes(b"\0asm\x01\0\0\0" + before + wasm_exports.section(7, exports) + after)
    assert wasm_exports.trim(str(module)) == ["proxy_on_log", "proxy_on_done"]
    kept = wasm_exports.vec([_export("keep_one", 0), _export("keep_two", 2)])
    assert module.read_bytes() == b"\0asm\x01\0\0\0" + before + wasm_exports.section(7, kept) + after
    assert wasm_exports.exports(str(module)) == ["keep_one", "keep_two"]
    assert wasm_exports.trim(str(module)) == []
