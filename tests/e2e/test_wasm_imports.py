"""The built module imports only what every proxy-wasm host gives: `env.proxy_*` and the WASI functions Envoy
provides. A new import (say, a crate that wants a clock or a file) would make Envoy refuse to load it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

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
