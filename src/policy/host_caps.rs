//! What the filter may ask of its proxy-wasm host, as config (issue 18): the top-level `host_crypto` and
//! `host_resume` fields. Hosts differ (docs/hosts.md): ngx_wasm_module traps on a foreign function it does not
//! know, and cannot continue or answer a request from the root context. `auto` keeps what Envoy does today;
//! `off` never asks.

use serde::Deserialize;

/// `host_crypto`: whether RSA/ECDSA verification may be handed to the host's `verify_signature` foreign
/// function (Envoy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostCrypto {
    /// Probe `verify_signature` at configure time and use it when it verifies right (Envoy); hosts without it
    /// answer the probe with an error and the pure-Rust path is used.
    #[default]
    Auto,
    /// Never call a foreign function: verification stays in wasm (pure Rust). Needed on hosts that trap on an
    /// unknown foreign function (ngx_wasm_module).
    Off,
}

/// `host_resume`: whether a request may be paused while its provider's remote keys are fetched, to be
/// continued (or answered) later from the root context's tick or fetch response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostResume {
    /// Pause and resume from the root context (Envoy). A host that refuses to continue or answer the paused
    /// request from there is noticed (the request gets a 503 where the host lets one be sent, and a log line),
    /// and the VM then behaves as `off`.
    #[default]
    Auto,
    /// Never pause for keys: a request whose keys are not there yet is answered at once (503
    /// `keys_unavailable` with `Retry-After`; 401 `unknown_kid`), and the fetch runs in the background on the
    /// tick. For hosts that cannot resume a request from the root context (ngx_wasm_module).
    Off,
}

#[cfg(test)]
mod tests {
    use crate::policy::config::compile;

    fn with(
        extra: &str,
    ) -> Result<crate::policy::config::Policy, crate::policy::config::ConfigError> {
        compile(format!(r#"{{"rules": [{{"match": {{}}, "allow": "public"}}]{extra}}}"#).as_bytes())
    }

    #[test]
    fn both_default_to_auto_and_take_off() {
        let p = with("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (p.host_crypto, p.host_resume),
            (super::HostCrypto::Auto, super::HostResume::Auto)
        );
        let p = with(r#", "host_crypto": "off", "host_resume": "off""#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (p.host_crypto, p.host_resume),
            (super::HostCrypto::Off, super::HostResume::Off)
        );
    }

    #[test]
    fn another_value_is_refused_at_its_path() {
        let e = with(r#", "host_crypto": "on""#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("host_crypto: unknown variant `on`, expected `auto` or `off`"),
            "{e}"
        );
        let e = with(r#", "host_resume": true"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("host_resume: "), "{e}");
    }
}
