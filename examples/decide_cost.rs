//! Per-decision cost of the same-token path (a verified-token cache hit) and its parts, and of the new-token
//! path per algorithm (`decide new token ES256`, ...), natively or in V8:
//!
//! ```sh
//! cargo run --release --example decide_cost
//! cargo build --release --target wasm32-wasip1 --example decide_cost --no-default-features
//! node scripts/run_wasi.js target/wasm32-wasip1/release/examples/decide_cost.wasm ["decide same"]
//! node --cpu-prof --cpu-prof-dir=/tmp/prof scripts/run_wasi.js …   # a V8 profile by wasm function
//! ```
//!
//! An argument runs only the timings whose label contains it (`=label`: only that one).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use serde_json::{json, Value};
use std::time::Instant;
use trustgate::engine::{decide, Caches, NoRemoteKeys};
use trustgate::request::RequestView;
use trustgate::state::jwks_cache::MemoryStore;

fn time<F: FnMut()>(label: &str, n: u32, mut f: F) {
    if let Some(only) = std::env::args().nth(1) {
        let picked = match only.strip_prefix('=') {
            Some(exact) => label == exact,
            None => label.contains(only.as_str()),
        };
        if !picked {
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

/// `GET bench.local/api/bench` with these headers and an empty body.
fn bench_request<'a>(headers: &'a [(&'a str, &'a str)]) -> RequestView<'a> {
    RequestView {
        method: "GET",
        path: "/api/bench",
        authority: "bench.local",
        headers,
        body: Some(b""),
        peer: None,
        peer_unread: false,
    }
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
    let headers = vec![("authorization", auth.as_str())];
    let caches = Caches::default();
    let store = MemoryStore::default();
    let view = bench_request(&headers);
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
    new_token_cases();
    signed_request_cases();
    header_map_cases(&auth);
    assertion_cases(&cfg, &headers, now);
}

// Test keys only: the RFC 8032 §7.1 TEST 1 secret key, and the P-256 key of tests/assertion.rs.
const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
const P256_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghIXysqujxOPIy9F8\nSATio9rTAQZ0ycAZIxo9j38p+lKhRANCAARSTvjJQBHwLVAKU9vItAfZH5yVNK7b\nBFHA4DWuKwOHSBUqH9CoYJ/Eaj6OQsxzCzuuzmoE1L6d7wxw8P7C0cuF\n-----END PRIVATE KEY-----\n";

/// Identity assertions (issue 14): a same-token decision that also writes the (reused) assertion, and the
/// signature of a new one per algorithm (what a new caller costs on top of its credential).
fn assertion_cases(cfg: &Value, headers: &[(&str, &str)], now: i64) {
    for (alg, pem) in [("EdDSA", ED25519_PEM), ("ES256", P256_PEM)] {
        let mut cfg = cfg.clone();
        cfg["assertion"] = json!({"issuer": "https://gateway.bench.local", "audience": "bench", "ttl_s": 60,
            "signing_key": {"alg": alg, "kid": "bench-1", "pem": pem},
            "claims": {"sub": "${claims.sub}", "principal_type": "human"}});
        let policy = trustgate::policy::config::compile(cfg.to_string().as_bytes()).unwrap();
        let (caches, store, view) = (
            Caches::default(),
            MemoryStore::default(),
            bench_request(headers),
        );
        time(
            &format!("decide same token + assertion {alg}"),
            100_000,
            || {
                let _ = decide(&policy, &view, now, &NoRemoteKeys, &store, &caches);
            },
        );
        let a = policy.assertion.as_ref().unwrap();
        let claims: serde_json::Map<String, Value> =
            serde_json::from_value(json!({"sub": "user-0", "principal_type": "human"})).unwrap();
        time(&format!("sign assertion {alg}"), 2_000, || {
            std::hint::black_box(
                a.issue("bench", &claims, now, "AAAAAAAAAAAAAAAAAAAAAA")
                    .unwrap(),
            );
        });
    }
}

const RSA_PEM: &str = include_str!("../tests/data/rsa2048.TEST-ONLY.key.pem");

/// The new-token path (a verified-token cache miss: parse, claims, key, signature) for ES256, RS256, EdDSA and
/// HS256. Each decision gets fresh caches ("fresh caches" times that part alone). In V8 there is no host
/// verifier, so RSA and ECDSA take the pure-Rust path.
fn new_token_cases() {
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
        let policy = trustgate::policy::config::compile(cfg.to_string().as_bytes()).unwrap();
        let input = format!("{}.{}", B64.encode(json!({"alg": alg, "kid": "k", "typ": "JWT"}).to_string()),
            B64.encode(json!({"iss": "https://idp.bench.local/", "sub": "user-0", "aud": "trustgate-bench", "exp": now + 3600,
                "iat": now, "jti": "bench-0", "email": "user-0@bench.local", "roles": ["a", "b"]}).to_string()));
        let tok = format!("{input}.{}", B64.encode(sign(input.as_bytes())));
        let auth = format!("Bearer {tok}");
        let headers = vec![("authorization", auth.as_str())];
        let view = bench_request(&headers);
        let decide_new = || {
            decide(
                &policy,
                &view,
                now,
                &NoRemoteKeys,
                &store,
                &Caches::default(),
            )
        };
        let d = decide_new();
        assert!(format!("{d:?}").contains("Allow"), "{alg}: {d:?}");
        let n = match alg {
            "ES256" | "RS256" => 300,
            "EdDSA" => 3_000,
            _ => 30_000,
        };
        time(&format!("decide new token {alg}"), n, || {
            let _ = std::hint::black_box(decide_new());
        });
        time(&format!("parse token {alg}"), 50_000, || {
            let _ = std::hint::black_box(trustgate::formats::jwt::UntrustedJwt::parse(&tok));
        });
    }
}

/// The gatekeeper HMAC path (issue 16): a signed request with a new nonce each time, the replay store already
/// holding `LIVE` nonces per slot (about what one bench run leaves), and its parts.
fn signed_request_cases() {
    use trustgate::state::replay;
    const LIVE: u64 = 8;
    let now = 1_800_000_000i64;
    let secret = "bench-secret-0123456789abcdef";
    let client = "bench-client-0000-4000-8000-000000000001";
    let cfg = json!({"providers": {"gk": {"hmac": {"clients": {client: {"name": "Bench", "secret": secret}},
        "timestamp_window_s": 3600, "body": "empty", "headers": {"x-client-id": "${client.id}"}}}},
        "rules": [{"name": "api", "match": {}, "require": "gk"}]});
    let policy = trustgate::policy::config::compile(cfg.to_string().as_bytes()).unwrap();
    let store = MemoryStore::default();
    replay::prepare_slots(&store, "gk");
    for i in 0..(u64::from(replay::SLOTS) * LIVE) {
        replay::check_and_record(&store, "gk", &format!("old-{i}"), now + 3600, now);
    }
    let caches = Caches::default();
    let line = |nonce: &str| {
        let ts = now.to_string();
        let msg = trustgate::formats::gatekeeper::message("GET", "/api/bench", &ts, nonce, b"");
        let sig = trustgate::formats::crypto::hmac_sha256(secret.as_bytes(), &msg);
        let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
        format!(r#"HMAC client_id="{client}",timestamp="{ts}",nonce="{nonce}",signature="{hex}""#)
    };
    let n = 20_000u32;
    let lines: Vec<String> = (0..n + n / 10 + 1)
        .map(|i| line(&format!("683deb4c-6eed-4f96-8b91-{i:012}")))
        .collect();
    let first = decide(
        &policy,
        &bench_request(&[("authorization", lines[0].as_str())]),
        now,
        &NoRemoteKeys,
        &store,
        &caches,
    );
    assert!(format!("{first:?}").contains("Allow"), "{first:?}");
    let mut next = 1usize;
    time("decide hmac new nonce", n, || {
        let h = [("authorization", lines[next % lines.len()].as_str())];
        let view = bench_request(&h);
        next += 1;
        let _ = std::hint::black_box(decide(&policy, &view, now, &NoRemoteKeys, &store, &caches));
    });
    let header = line("683deb4c-6eed-4f96-8b91-1fc367fd74e2");
    let params = header.strip_prefix("HMAC ").unwrap();
    time("hmac header parse", 100_000, || {
        let _ = std::hint::black_box(trustgate::formats::gatekeeper::parse(params));
    });
    let cred = trustgate::formats::gatekeeper::parse(params).unwrap();
    let key = trustgate::formats::crypto::HmacSha256Key::new(secret.as_bytes()).unwrap();
    time("hmac verify", 100_000, || {
        let _ = std::hint::black_box(trustgate::formats::gatekeeper::verify(
            &cred,
            &key,
            "GET",
            "/api/bench",
            b"",
        ));
    });
    let mut i = 0u64;
    time("replay record (new nonce)", 100_000, || {
        i += 1;
        let _ = std::hint::black_box(replay::check_and_record(
            &store,
            "gk",
            &format!("new-{i}"),
            now + 3600,
            now,
        ));
    });
}

/// What the host adapter does with the serialized header map before deciding (issue 17): decode it the SDK's
/// way (a `String` and a `Vec` per header, then the snapshot's `String` pairs), against parsing it in place
/// (borrowed slices, one `Vec`). The map: Envoy's pseudo-headers and what wrk and Envoy add, ten in all.
fn header_map_cases(auth: &str) {
    let pairs: Vec<(&str, &str)> = vec![
        (":authority", "bench.local"),
        (":path", "/api/bench"),
        (":method", "GET"),
        (":scheme", "http"),
        ("authorization", auth),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "5f0c1a52-7d3e-4c1b-9a8e-2b6f0d9c3e11"),
        ("user-agent", "wrk"),
        ("accept", "*/*"),
        ("x-envoy-expected-rq-timeout-ms", "15000"),
    ];
    use trustgate::formats::header_map;
    let bytes: Vec<(&str, &[u8])> = pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    let raw = header_map::serialize(&bytes);
    time("header map: SDK decode + snapshot strings", 100_000, || {
        let buf = raw.clone(); // the host's copy into the VM
                               // The SDK's get_map_bytes: a String and a Vec per header; then the old snapshot's String values.
        let out: Vec<(String, Vec<u8>)> = header_map::spans(&buf)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (String::from_utf8(buf[n].to_vec()).unwrap(), buf[v].to_vec()))
            .collect();
        let snap: Vec<(String, String)> = out
            .into_iter()
            .filter_map(|(n, v)| String::from_utf8(v).ok().map(|v| (n, v)))
            .collect();
        std::hint::black_box(snap);
    });
    time("header map: parsed in place", 100_000, || {
        let buf = raw.clone();
        let text = |s: std::ops::Range<usize>| std::str::from_utf8(&buf[s]).unwrap();
        let out: Vec<(&str, &str)> = header_map::spans(&buf)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (text(n), text(v)))
            .collect();
        std::hint::black_box(&out);
    });
}
