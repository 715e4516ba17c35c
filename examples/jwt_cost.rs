//! Per-decision cost of the new-token path (a verified-token cache miss: parse, claims, key, signature) for
//! ES256, RS256, EdDSA and HS256, natively or in V8 (Envoy's wasm engine, without its host verifier, so RSA and
//! ECDSA take the pure-Rust path):
//!
//! ```sh
//! cargo run --release --example jwt_cost
//! cargo build --release --target wasm32-wasip1 --example jwt_cost --no-default-features
//! node scripts/run_wasi.js target/wasm32-wasip1/release/examples/jwt_cost.wasm [label filter]
//! ```
//!
//! Each decision gets fresh caches, so every one misses the token cache; "fresh caches" is that part alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::time::Instant;
use trustgate::engine::{decide, Caches, NoRemoteKeys};
use trustgate::jwks_cache::MemoryStore;
use trustgate::request::RequestView;

fn time<F: FnMut()>(label: &str, n: u32, mut f: F) {
    if let Some(only) = std::env::args().nth(1) {
        if !label.contains(only.as_str()) {
            return;
        }
    }
    // V8 compiles in tiers: the first calls run unoptimized code.
    for _ in 0..(n / 5).max(50) {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    let us = t.elapsed().as_nanos() as f64 / f64::from(n) / 1000.0;
    println!("{label:<32} {us:>8.2} µs");
}

const RSA_PEM: &str = include_str!("../tests/data/rsa2048.TEST-ONLY.key.pem");

fn main() {
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    let now = 1_800_000_000i64;
    let es = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let ep = es.verifying_key().to_encoded_point(false);
    let ed = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let rsa_key = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_PEM).unwrap();
    let secret = b"a-shared-secret-of-32-bytes-long";
    type Sign<'a> = Box<dyn Fn(&[u8]) -> Vec<u8> + 'a>;
    let cases: Vec<(&str, Value, Sign)> = vec![
        (
            "ES256",
            json!({"kty": "EC", "crv": "P-256", "kid": "k", "x": B64.encode(ep.x().unwrap()), "y": B64.encode(ep.y().unwrap())}),
            Box::new(|m: &[u8]| {
                use p256::ecdsa::signature::Signer as _;
                let s: p256::ecdsa::Signature = es.sign(m);
                s.to_bytes().to_vec()
            }),
        ),
        (
            "RS256",
            json!({"kty": "RSA", "kid": "k", "n": B64.encode(rsa_key.n().to_bytes_be()), "e": B64.encode(rsa_key.e().to_bytes_be())}),
            Box::new(|m: &[u8]| {
                use rsa::signature::{SignatureEncoding as _, Signer as _};
                rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa_key.clone())
                    .sign(m)
                    .to_vec()
            }),
        ),
        (
            "EdDSA",
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": B64.encode(ed.verifying_key().as_bytes())}),
            Box::new(|m: &[u8]| {
                use ed25519_dalek::Signer as _;
                ed.sign(m).to_bytes().to_vec()
            }),
        ),
        (
            "HS256",
            json!({"kty": "oct", "kid": "k", "k": B64.encode(secret)}),
            Box::new(|m: &[u8]| {
                use hmac::Mac as _;
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
                mac.update(m);
                mac.finalize().into_bytes().to_vec()
            }),
        ),
    ];
    let store = MemoryStore::default();
    time("fresh caches", 20_000, || {
        std::hint::black_box(Caches::default());
    });
    for (alg, jwk, sign) in cases {
        let cfg = json!({"providers": {"corp": {"jwt": {"issuer": "https://idp.bench.local/", "audiences": ["trustgate-bench"],
            "algorithms": [alg], "keys": {"jwks": {"keys": [jwk]}}, "headers": {"x-commit-owner": "human:${claims.sub}"}}}},
            "strip_headers": ["x-commit-owner"],
            "rules": [{"name": "api", "match": {}, "require": "corp"}]});
        let policy = trustgate::config::compile(cfg.to_string().as_bytes()).unwrap();
        let input = format!("{}.{}", B64.encode(json!({"alg": alg, "kid": "k", "typ": "JWT"}).to_string()),
            B64.encode(json!({"iss": "https://idp.bench.local/", "sub": "user-0", "aud": "trustgate-bench", "exp": now + 3600,
                "iat": now, "jti": "bench-0", "email": "user-0@bench.local", "roles": ["a", "b"]}).to_string()));
        let tok = format!("{input}.{}", B64.encode(sign(input.as_bytes())));
        let headers: Vec<(String, String)> =
            vec![("authorization".into(), format!("Bearer {tok}"))];
        let view = RequestView {
            method: "GET",
            path: "/api/bench",
            authority: "bench.local",
            headers: &headers,
            body: Some(b""),
            peer: None,
        };
        let d = decide(
            &policy,
            &view,
            now,
            &NoRemoteKeys,
            &store,
            &Caches::default(),
        );
        assert!(format!("{d:?}").contains("Allow"), "{alg}: {d:?}");
        let n = if alg == "RS256" || alg == "ES256" {
            300
        } else {
            3000
        };
        time(&format!("decide new token {alg}"), n, || {
            let _ = std::hint::black_box(decide(
                &policy,
                &view,
                now,
                &NoRemoteKeys,
                &store,
                &Caches::default(),
            ));
        });
        time(&format!("parse token {alg}"), 50_000, || {
            let _ = std::hint::black_box(trustgate::jwt::UntrustedJwt::parse(&tok));
        });
    }
}
