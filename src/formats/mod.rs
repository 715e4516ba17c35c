//! Pure formats and crypto: bytes in, parsed or verified values out; no config, no state, no host.
//!
//! The providers ([`crate::providers`]) build on these; each module names the spec it implements.

pub mod b64;
pub mod cert;
pub mod crypto;
pub mod dpop;
pub mod gatekeeper;
pub mod header_map;
pub mod httpsig;
pub mod jwk;
pub mod jws_algs;
pub mod jwt;
pub mod sfv;
pub mod signet;
pub mod signing_key;
