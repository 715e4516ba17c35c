//! Per-call cost of the checks `make bench` exercises, natively or in V8 (Envoy's wasm engine):
//!
//! ```sh
//! cargo run --release --example crypto_cost                       # native
//! cargo build --release --target wasm32-wasip1 --example crypto_cost --no-default-features
//! node scripts/run_wasi.js target/wasm32-wasip1/release/examples/crypto_cost.wasm   # V8, like Envoy
//! ```
//!
//! Node runs the module in V8 like Envoy does, without Envoy's host calls: figures for the pure-Rust paths.
//! What Envoy's `verify_signature` costs instead (ES256, RS256 through the host): `make bench-hostcalls`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use ed25519_dalek::Signer as _;
use std::time::Instant;
use trustgate::formats::crypto::{verify, Alg, Ed25519Key, VerifyKey, TABLE_AFTER};

fn time<F: FnMut() -> bool>(label: &str, n: u32, mut f: F) {
    // V8 compiles in tiers: the first calls run unoptimized code.
    for _ in 0..n.min(50) {
        assert!(f());
    }
    let t = Instant::now();
    for _ in 0..n {
        assert!(f());
    }
    let us = t.elapsed().as_nanos() as f64 / f64::from(n) / 1000.0;
    println!("{label:<44} {us:>8.1} µs");
}

fn main() {
    let msg = vec![b'a'; 300];
    let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let sig = sk.sign(&msg).to_bytes();
    let cold = VerifyKey::ed25519(sk.verifying_key().as_bytes()).unwrap();
    // A key never used TABLE_AFTER times verifies the way ed25519-dalek does.
    // (Each of the warm-up and timed calls goes through a fresh copy: copies start without a table.)
    time("EdDSA, key without table (verify_strict)", 2000, || {
        verify(Alg::EdDSA, &cold.clone(), &msg, &sig)
    });
    let hot = Ed25519Key::from(sk.verifying_key());
    let t = Instant::now();
    for _ in 0..TABLE_AFTER {
        assert!(hot.verify(&msg, &sig));
    }
    assert!(hot.has_table());
    println!(
        "{:<44} {:>8.1} µs",
        "EdDSA, first uses + building the table",
        t.elapsed().as_nanos() as f64 / 1000.0
    );
    time("EdDSA, key with its table", 2000, || hot.verify(&msg, &sig));

    let p256 = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&p256, &msg);
    let point = p256.verifying_key().to_encoded_point(false);
    let key = VerifyKey::p256(point.x().unwrap(), point.y().unwrap()).unwrap();
    let sig = sig.to_bytes();
    time("ES256 (pure Rust; Envoy offloads it)", 200, || {
        verify(Alg::ES256, &key, &msg, &sig)
    });

    // RS256 over RSA-2048: the first valid case of Wycheproof's PKCS#1 v1.5 file (no key generation in V8).
    let v: serde_json::Value = serde_json::from_str(include_str!(
        "../../shared/vectors/wycheproof/rsa_signature_2048_sha256_test.json"
    ))
    .unwrap();
    let group = &v["testGroups"][0];
    let case = group["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["result"] == "valid")
        .unwrap();
    let field = |v: &serde_json::Value| hex(v.as_str().unwrap());
    let key = VerifyKey::rsa(
        &field(&group["publicKey"]["modulus"]),
        &field(&group["publicKey"]["publicExponent"]),
    )
    .unwrap();
    let (msg, sig) = (field(&case["msg"]), field(&case["sig"]));
    time("RS256 (pure Rust; Envoy offloads it)", 200, || {
        verify(Alg::RS256, &key, &msg, &sig)
    });
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
