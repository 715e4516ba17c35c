//! Allocations per decision on the hot paths (issue 17): a counting global allocator around `decide` for a
//! repeated token (the verified-token cache hit) and a gatekeeper HMAC request with a new nonce. The counts are
//! upper bounds: a change that allocates more on these paths fails here, with the number it reached.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::sync::{Mutex, MutexGuard};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The counter is process-wide: a test holds this for its whole run, so no other test allocates meanwhile.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alone() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decides `headers` twice (the first fills the caches) and returns the allocations of the second decision
/// and its outcome.
fn second_decision(
    policy: &trustgate::policy::config::Policy,
    headers: &[(String, String)],
    first: &[(String, String)],
    store: &MemoryStore,
) -> (usize, String) {
    let caches = Caches::default();
    let (first, headers) = (
        trustgate::request::borrowed(first),
        trustgate::request::borrowed(headers),
    );
    let d = decide(policy, &request(&first), NOW, &NoRemoteKeys, store, &caches);
    assert!(format!("{d:?}").contains("Allow"), "{d:?}");
    let (n, d) = allocations(|| {
        decide(
            policy,
            &request(&headers),
            NOW,
            &NoRemoteKeys,
            store,
            &caches,
        )
    });
    (n, format!("{d:?}"))
}

/// Allocations (and reallocations) made while `f` runs.
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let region = Region::new(GLOBAL);
    let out = f();
    let stats = region.change();
    (stats.allocations + stats.reallocations, out)
}

#[path = "support/mint.rs"]
mod mint;

use serde_json::json;
use trustgate::engine::{decide, Caches, NoRemoteKeys};
use trustgate::request::RequestView;
use trustgate::state::jwks_cache::MemoryStore;

fn request<'a>(headers: &'a [(&'a str, &'a str)]) -> RequestView<'a> {
    RequestView {
        method: "GET",
        path: "/api/orders",
        authority: "api.example.com",
        headers,
        body: Some(b""),
        peer: None,
        peer_unread: false,
    }
}

const NOW: i64 = 1_800_000_000;
/// Today's counts (BENCHMARKS.md, issue 17): the path, rule and provider names of the decision, the header
/// operations, the rendered identity header; HMAC adds the replay id, the slot key and the slot's value.
const SAME_TOKEN_MAX: usize = 10;
const HMAC_MAX: usize = 17;

#[test]
fn a_repeated_token_allocates_little() {
    let _alone = alone();
    let keys = mint::Keys::new();
    let policy = trustgate::policy::config::compile(
        json!({"providers": {"corp": {"jwt": {"issuer": "https://idp.example.com/", "audiences": ["api"],
            "keys": {"jwks": keys.jwks()}, "headers": {"x-commit-owner": "human:${claims.sub}"}}}},
            "rules": [{"name": "api", "match": {"path_prefix": "/api/"}, "require": "corp"}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let token = keys.mint(
        &json!({"alg": "ES256", "kid": "es", "typ": "JWT"}),
        &json!({"iss": "https://idp.example.com/", "aud": "api", "sub": "alice", "exp": NOW + 600}),
    );
    let headers = vec![("authorization".to_owned(), format!("Bearer {token}"))];
    let (n, d) = second_decision(&policy, &headers, &headers, &MemoryStore::default());
    assert!(d.contains("human:alice"), "{d}");
    println!("same token: {n} allocations");
    assert!(
        n <= SAME_TOKEN_MAX,
        "a cache-hit decision made {n} allocations"
    );
}

#[test]
fn a_signed_request_allocates_little() {
    let _alone = alone();
    let secret = "test-only-gatekeeper-secret";
    let policy = trustgate::policy::config::compile(
        json!({"providers": {"gk": {"hmac": {"clients": {"c-1": {"secret": secret}}, "body": "empty",
            "headers": {"x-client-id": "${client.id}"}}}},
            "rules": [{"name": "api", "match": {"path_prefix": "/api/"}, "require": "gk"}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let store = MemoryStore::default();
    trustgate::state::replay::prepare_slots(&store, "gk");
    let signed = |nonce: &str| {
        let v = mint::gatekeeper_header(secret, "GET", "/api/orders", NOW, nonce, b"", "c-1");
        vec![("authorization".to_owned(), v)]
    };
    let (n, d) = second_decision(&policy, &signed("n-2"), &signed("n-1"), &store);
    assert!(d.contains("x-client-id"), "{d}");
    println!("hmac, new nonce: {n} allocations");
    assert!(
        n <= HMAC_MAX,
        "a signed-request decision made {n} allocations"
    );
}
