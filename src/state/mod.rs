//! Process state that outlives a request: replay nonces and rate counters, verified tokens, remote key sets, issued identity assertions.
//!
//! Shared state sits behind [`jwks_cache::SharedStore`] (the host implements it on proxy-wasm shared data,
//! the tests in memory); the token cache is per VM. Nonces and counters go through [`backend::StateBackend`], so
//! that with `state.redis` they live in Redis ([`redis`]) for a whole fleet.

pub mod assertion_cache;
pub mod backend;
pub mod jwks_cache;
pub mod redis;
pub mod replay;
pub mod token_cache;
