//! What this VM may ask of its proxy-wasm host (issue 18, docs/hosts.md): the config's `host_crypto` and
//! `host_resume` ([`crate::policy::host_caps`]), and what the host showed it cannot do.
//!
//! - `host_crypto`: `auto` probes Envoy's `verify_signature` foreign function ([`hostcrypto`]); `off` never
//!   calls a foreign function (ngx_wasm_module traps on one it does not know).
//! - `host_resume`: `auto` pauses a request while its keys are fetched and continues or answers it from the
//!   root context. Before acting on a paused request there, the root reads one of its headers with a host
//!   call that reports its status ([`root_reaches_request`]): the SDK's `hostcalls` panic (trap) on a status
//!   they do not expect, so a host that answers an error to a header write, `continue_stream` or
//!   `send_local_response` made from the root would trap the VM. When the read is refused, the request is
//!   left to the host (which times it out), a line is logged, and from then on this VM no longer pauses for
//!   keys, as with `off`: a request whose keys are not there is answered at once (503 `keys_unavailable` with
//!   `Retry-After`, or 401 `unknown_kid`) while the fetch runs on the tick. A host that accepts the read and
//!   refuses the resume or the reply still traps: set `off` for it.

use super::{hostcrypto, log, Outcome, VmState};
use crate::decision::Reason;
use crate::policy::host_caps::{HostCrypto, HostResume};
use proxy_wasm::types::{LogLevel, MapType};
use std::cell::Cell;

thread_local! {
    /// The host refused to act on a paused request from the root context (one VM is one wasm instance).
    static ROOT_RESUME_REFUSED: Cell<bool> = const { Cell::new(false) };
    /// The host reported a client certificate without its digest (logged once).
    static PEER_DIGEST_MISSING: Cell<bool> = const { Cell::new(false) };
}

/// Installs the RSA/ECDSA offload `setting` allows and the host supports; true when the host verifies.
pub fn install_crypto(setting: HostCrypto) -> bool {
    let host = setting == HostCrypto::Auto && hostcrypto::probe();
    crate::formats::crypto::set_offload(
        host.then_some(hostcrypto::host_verify as crate::formats::crypto::Offload),
    );
    host
}

/// Whether a request may pause until its keys are fetched.
pub fn may_wait(st: &VmState) -> bool {
    st.policy.host_resume == HostResume::Auto && !ROOT_RESUME_REFUSED.with(Cell::get)
}

/// Without waiting, a refusal a fetch could change still asks for that fetch (started on the next tick), as
/// the wait would have.
pub fn fetch_without_waiting(st: &mut VmState, outcome: &Outcome, now: i64, now_ms: u64) {
    let Outcome::Reply(d, _) = outcome else {
        return;
    };
    if !matches!(d.reason, Reason::UnknownKid | Reason::KeysUnavailable) {
        return;
    }
    if let Some(rm) = st
        .remote_of(d.provider.as_deref())
        .and_then(|i| st.remotes.get_mut(i))
    {
        let _ = rm.wait_deadline(d.reason, now, now_ms);
    }
}

// The SDK's import with plain integers (`MapType` and `Status` are `repr(u32)`: the same wasm signature), so a
// status its enum lacks is read, not made into an invalid enum value (as headers.rs does for the pairs).
#[link(wasm_import_module = "env")]
extern "C" {
    /// The SDK's import, declared with the plain integers of the ABI so that every status can be read.
    #[link_name = "proxy_get_header_map_value"]
    fn get_header_map_value_status(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
}

/// Whether the host lets the root context reach the request it made effective: reading its `:method` answers
/// OK (ABI status 0). Any other status is an answer here, not a trap.
pub fn root_reaches_request() -> bool {
    const OK: u32 = 0;
    let key = b":method";
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the import is the ABI's proxy_get_header_map_value (i32 map type, key pointer and length, two
    // out-pointers, i32 status); the key outlives the call. On OK the host filled `data` with a buffer it got
    // from this module's proxy_on_memory_allocate (the SDK's: a boxed slice of exactly `size` bytes), which is
    // freed here as such.
    let status = unsafe {
        get_header_map_value_status(
            MapType::HttpRequestHeaders as u32,
            key.as_ptr(),
            key.len(),
            &mut data,
            &mut size,
        )
    };
    if status == OK && !data.is_null() {
        // SAFETY: see above: `data` and `size` describe a `Box<[u8]>` this module allocated for the host.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, size)) });
    }
    status == OK
}

/// The host does not let the root context act on the paused request `context_id`: log it (once per VM) and
/// stop pausing requests for keys in this VM.
pub fn root_resume_refused(context_id: u32) {
    if !ROOT_RESUME_REFUSED.with(|r| r.replace(true)) {
        log(
            LogLevel::Warn,
            &format!(
                "trustgate: host_resume: the host does not let the root context reach a paused request \
                 (context {context_id}), which it cannot continue or answer: the host keeps it until it times \
                 out; requests no longer wait for keys in this VM (503 keys_unavailable until the keys are \
                 fetched); set \"host_resume\": \"off\" for this host"
            ),
        );
    }
}

/// The host says the connection has a verified client certificate (`connection.mtls`) but gives no
/// `connection.sha256_peer_certificate_digest` (ngx_wasm_module does not implement it): the certificate is
/// not used (fail closed), and this is logged once per VM so that the operator sees why mTLS never passes.
pub fn peer_digest_missing() {
    if !PEER_DIGEST_MISSING.with(|m| m.replace(true)) {
        log(
            LogLevel::Warn,
            "trustgate: the host reports a client certificate (connection.mtls) but not \
             connection.sha256_peer_certificate_digest: mtls providers and certificate-bound tokens cannot pass \
             on this host (docs/hosts.md)",
        );
    }
}
