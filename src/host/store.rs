//! [`SharedStore`] over proxy-wasm shared data: one store per Envoy process (per `vm_id`), shared by every
//! worker VM, with Envoy's compare-and-swap.

use crate::state::jwks_cache::SharedStore;
use proxy_wasm::hostcalls;

/// Envoy's shared data.
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), cas)) => Some((value, cas.unwrap_or(0))),
            // Envoy hands an empty value back as no data with a CAS: the key exists.
            Ok((None, Some(cas))) => Some((Vec::new(), cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> bool {
        let cas = (cas != 0).then_some(cas);
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}
