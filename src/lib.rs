//! trustgate: a proxy-wasm filter that turns "the caller said it is alice" into "alice proved it".
//!
//! On every request the host adapter removes the identity headers a client could forge, the core verifies the
//! credential the matching rule requires, and on success the adapter writes trusted identity headers.
//!
//! Module map (the core has no proxy-wasm dependency and runs natively in `cargo test`):
//! - [`config`]: the JSON contract (raw serde types) → compiled, immutable [`config::Policy`].
//! - [`rules`]: path normalization, host/path/method matching.
//! - [`extract`]: finding a provider's credential (header, query, cookie) and removing it.
//! - [`jwt`]: JWS compact parsing and claim checks; [`jwk`]: JWK / JWK Set decoding.
//! - [`jws_algs`]: jwt-compact's `Algorithm` over [`crypto::verify`] (host offload, Ed25519 tables).
//! - [`jwks_cache`]: remote key sets (shared record, lease, TTL, backoff, OIDC discovery).
//! - [`hmac_auth`]: gatekeeper `Authorization: HMAC` signed requests.
//! - [`signet`]: Signet proofs of possession (Ed25519 master → ephemeral key).
//! - [`httpsig`]: RFC 9421 HTTP Message Signatures; [`sfv`]: RFC 8941 structured fields.
//! - [`replay`]: the bounded process-wide replay store and rate-limit counters.
//! - [`token_cache`]: verified JWTs per VM, tied to provider and key-set version.
//! - [`crypto`]: the algorithms and [`crypto::verify`], the one place that calls signature crates.
//! - [`b64`]: strict base64 and hex.
//! - [`template`]: identity header templates (`${claims.sub}`).
//! - [`engine`]: [`engine::decide`], the decision for one request.
//! - [`decision`]: [`decision::Decision`], reason codes, statuses and challenges.
//! - [`request`]: [`request::RequestView`], the host's snapshot of a request.
//! - `host` (wasm32 only): the proxy-wasm adapter; the only module that imports `proxy_wasm`.
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

pub mod b64;
pub mod cert;
pub mod config;
pub mod crypto;
pub mod decision;
pub mod engine;
pub mod extract;
pub mod hmac_auth;
pub mod httpsig;
pub mod jwk;
pub mod jwks_cache;
pub mod jws_algs;
pub mod jwt;
pub mod replay;
pub mod request;
pub mod rules;
pub mod sfv;
pub mod signet;
pub mod template;
pub mod token_cache;

#[cfg(target_arch = "wasm32")]
mod host;
