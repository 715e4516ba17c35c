//! trustgate: a proxy-wasm filter that turns "the caller said it is alice" into "alice proved it".
//!
//! On every request the host adapter removes the identity headers a client could forge, the core verifies the
//! credential the matching rule requires, and on success the adapter writes trusted identity headers.
//!
//! Module map, from the host down (the core has no proxy-wasm dependency and runs natively in `cargo test`):
//! - `host` (wasm32 only): the proxy-wasm adapter; the only module that imports `proxy_wasm`. It snapshots a
//!   request into a [`request::RequestView`], calls [`engine::decide`], applies the [`decision::Decision`].
//! - [`engine`]: the walk of one request: path → rule → requirement tree → provider checks (and claim conditions) → identity
//!   headers → [`decision::Decision`] (reason codes, statuses, challenges).
//! - [`policy`]: [`policy::config`] (the JSON contract → an immutable [`policy::config::Policy`]),
//!   [`policy::rules`] (path normalization, host/path/method matching), [`policy::claims`] (a requirement's
//!   claim conditions on a verified token), [`policy::template`] (`${claims.sub}`),
//!   [`policy::assertion`] (the signed identity assertion for the upstream and the JWKS the proxy serves).
//! - [`providers`]: one module per provider kind (`jwt`, `hmac`, `api_key`, `signet`, `http_signature`,
//!   `mtls`), each owning its raw config, compile step, request check and template facts, behind the
//!   [`providers::ProviderKind`] enum; plus credential extraction and the client table they share.
//! - [`state`]: process state over the shared store: replay nonces and rate counters (behind
//!   [`state::backend::StateBackend`]: the shared data, or Redis via webdis with `state.redis`, whose commands
//!   and answers are [`state::redis`]), the verified-token cache, remote key sets (lease, TTL, backoff, OIDC
//!   discovery), issued assertions reused while fresh.
//! - [`formats`]: pure formats and crypto: JWS/JWT (parsed by jwt-compact, its `Algorithm` over our crypto), JWK, DPoP proofs and JWK thumbprints, RFC 8941 structured fields and RFC 9421 signatures,
//!   Signet proofs, the gatekeeper HMAC wire format, client certificates, the crypto backends, base64, the
//!   assertion signing key.
//! - `bin/trustgate` (native, feature `cli`): the command line (keys, signing, `trust`, config checks).
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod decision;
pub mod engine;
pub mod formats;
pub mod policy;
pub mod providers;
pub mod request;
pub mod state;

#[cfg(target_arch = "wasm32")]
mod host;
