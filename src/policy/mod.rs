//! The policy: the config compiled once at configure time ([`config`]), the rule matching it drives
//! ([`rules`]), the claim conditions a requirement may put on a verified token ([`claims`]), the identity
//! header templates ([`template`]), the identity assertion issued to the upstream ([`assertion`]) and what may
//! be asked of the proxy-wasm host ([`host_caps`]).

pub mod assertion;
pub mod claims;
pub mod config;
pub mod host_caps;
pub mod rules;
pub mod template;
