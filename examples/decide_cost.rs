//! Per-decision cost of the same-token path (a verified-token cache hit) and its parts, natively or in V8:
//!
//! ```sh
//! cargo run --release --example decide_cost
//! cargo build --release --target wasm32-wasip1 --example decide_cost --no-default-features
//! node scripts/run_wasi.js target/wasm32-wasip1/release/examples/decide_cost.wasm ["decide same"]
//! node --cpu-prof --cpu-prof-dir=/tmp/prof scripts/run_wasi.js …   # a V8 profile by wasm function
//! ```
//!
//! An argument runs only the timings whose label contains it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use serde_json::json;
use std::time::Instant;
use trustgate::engine::{decide, Caches, NoRemoteKeys};
use trustgate::request::RequestView;
use trustgate::state::jwks_cache::MemoryStore;

fn time<F: FnMut()>(label: &str, n: u32, mut f: F) {
    if let Some(only) = std::env::args().nth(1) {
        if !label.contains(only.as_str()) {
            return;
        }
    }
    for _ in 0..(n / 10) {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    println!(
        "{label}: {:.0} ns",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
}

fn main() {
    let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let p = sk.verifying_key().to_encoded_point(false);
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "es", "x": B64.encode(p.x().unwrap()), "y": B64.encode(p.y().unwrap())}]});
    let cfg = json!({"providers": {"corp": {"jwt": {"issuer": "https://idp.bench.local/", "audiences": ["trustgate-bench"],
        "keys": {"jwks": jwks}, "headers": {"x-commit-owner": "human:${claims.sub}"}}}},
        "strip_headers": ["x-commit-owner", "x-user"],
        "rules": [{"name": "h", "match": {"path": "/healthz"}, "allow": "public"}, {"name": "api", "match": {}, "require": "corp"}]});
    let policy = trustgate::policy::config::compile(cfg.to_string().as_bytes()).unwrap();
    let now = 1_800_000_000i64;
    let input = format!("{}.{}", B64.encode(json!({"alg":"ES256","kid":"es","typ":"JWT"}).to_string()),
        B64.encode(json!({"iss": "https://idp.bench.local/", "sub": "user-0", "aud": "trustgate-bench", "exp": now + 3600, "iat": now, "jti": "bench-0"}).to_string()));
    let sig: p256::ecdsa::Signature = sk.sign(input.as_bytes());
    let tok = format!("{input}.{}", B64.encode(sig.to_bytes()));
    let auth = format!("Bearer {tok}");
    let headers: Vec<(String, String)> = vec![("authorization".into(), auth.clone())];
    let caches = Caches::default();
    let store = MemoryStore::default();
    let view = RequestView {
        method: "GET",
        path: "/api/bench",
        authority: "bench.local",
        headers: &headers,
        body: Some(b""),
        peer: None,
    };
    let n = 100_000;
    time("decide same token", n, || {
        let _ = decide(&policy, &view, now, &NoRemoteKeys, &store, &caches);
    });
    time("siphash13 token", n, || {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        tok.hash(&mut h);
        std::hint::black_box(h.finish());
    });
    {
        use p256::pkcs8::EncodePublicKey as _;
        let vk = *sk.verifying_key();
        time("p256 spki der", 20000, || {
            std::hint::black_box(vk.to_public_key_der().unwrap());
        });
    }
    {
        use rsa::pkcs8::EncodePublicKey as _;
        let n = rsa::BigUint::from_bytes_be(&[0xc5u8; 256]);
        let k = rsa::RsaPublicKey::new(n, rsa::BigUint::from(65537u32)).unwrap();
        time("rsa spki der", 20000, || {
            std::hint::black_box(k.to_public_key_der().unwrap());
        });
    }
    {
        let sig: p256::ecdsa::Signature = sk.sign(b"x");
        let raw = sig.to_bytes();
        time("p256 sig to der", 20000, || {
            std::hint::black_box(p256::ecdsa::Signature::from_slice(&raw).unwrap().to_der());
        });
    }
    time("normalize_path", n, || {
        let _ = trustgate::policy::rules::normalize_path("/api/bench");
    });
    let token = trustgate::formats::jwt::UntrustedJwt::parse(&tok).unwrap();
    let _ = token;
    time("parse token", n, || {
        let _ = trustgate::formats::jwt::UntrustedJwt::parse(&tok);
    });
    time("header Vec build (1 hdr)", n, || {
        let v: Vec<(String, String)> = vec![
            ("authorization".into(), auth.clone()),
            ("host".into(), "bench.local".into()),
        ];
        std::hint::black_box(v);
    });
}
