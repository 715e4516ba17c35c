//! The host-crypto path (Envoy's `verify_signature`): what trustgate hands the host — SubjectPublicKeyInfo DER
//! and, for ECDSA, the DER form of the JOSE `r || s` signature — must give exactly the answers of the pure-Rust
//! path. A stand-in host verifier here decodes the DER with RustCrypto; every Wycheproof case of the offloaded
//! algorithms must agree. (In Envoy the real BoringSSL verifier is used by every end-to-end test.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use serde_json::Value;
use std::cell::Cell;
use trustgate::formats::crypto::{self, Alg, VerifyKey};

thread_local! {
    static CALLS: Cell<usize> = const { Cell::new(0) };
}

/// A host verifier built from the DER it is given, as BoringSSL would.
fn stand_in_host(hash: &str, spki: &[u8], sig: &[u8], msg: &[u8]) -> Option<bool> {
    use p256::pkcs8::DecodePublicKey as _;
    use sha2::Digest as _;
    CALLS.with(|c| c.set(c.get() + 1));
    if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(spki) {
        assert_eq!(hash, "sha256");
        let Ok(s) = p256::ecdsa::Signature::from_der(sig) else {
            return Some(false);
        };
        return Some(p256::ecdsa::signature::Verifier::verify(&k, msg, &s).is_ok());
    }
    if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_der(spki) {
        assert_eq!(hash, "sha384");
        let Ok(s) = p384::ecdsa::Signature::from_der(sig) else {
            return Some(false);
        };
        return Some(p384::ecdsa::signature::Verifier::verify(&k, msg, &s).is_ok());
    }
    let k = rsa::RsaPublicKey::from_public_key_der(spki).ok()?;
    let ok = match hash {
        "sha256" => k.verify(
            rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            &sha2::Sha256::digest(msg),
            sig,
        ),
        "sha384" => k.verify(
            rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
            &sha2::Sha384::digest(msg),
            sig,
        ),
        "sha512" => k.verify(
            rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
            &sha2::Sha512::digest(msg),
            sig,
        ),
        _ => return None,
    };
    Some(ok.is_ok())
}

fn wycheproof(file: &str, alg: Alg, key_of: impl Fn(&Value) -> VerifyKey) -> usize {
    let doc: Value =
        serde_json::from_str(&common::read_vector(&format!("wycheproof/{file}"))).unwrap();
    let mut n = 0;
    for g in doc["testGroups"].as_array().unwrap() {
        let key = key_of(g);
        for t in g["tests"].as_array().unwrap() {
            let (msg, sig) = (
                common::hex(t["msg"].as_str().unwrap()),
                common::hex(t["sig"].as_str().unwrap()),
            );
            crypto::set_offload(None);
            let pure = crypto::verify(alg, &key, &msg, &sig);
            crypto::set_offload(Some(stand_in_host));
            let host = crypto::verify(alg, &key, &msg, &sig);
            crypto::set_offload(None);
            assert_eq!(
                host, pure,
                "{file} tcId {}: host path {host}, pure path {pure}",
                t["tcId"]
            );
            if t["result"] == "valid" {
                assert!(host, "{file} tcId {}", t["tcId"]);
            }
            n += 1;
        }
    }
    n
}

fn ec_key(g: &Value, p384: bool) -> VerifyKey {
    let point = common::hex(g["publicKey"]["uncompressed"].as_str().unwrap());
    let (x, y) = point[1..].split_at((point.len() - 1) / 2);
    if p384 {
        VerifyKey::p384(x, y).unwrap()
    } else {
        VerifyKey::p256(x, y).unwrap()
    }
}

#[test]
fn offloaded_ecdsa_and_rsa_agree_with_the_pure_path_on_wycheproof() {
    CALLS.with(|c| c.set(0));
    let n = wycheproof("ecdsa_secp256r1_sha256_p1363_test.json", Alg::ES256, |g| {
        ec_key(g, false)
    }) + wycheproof("ecdsa_secp384r1_sha384_p1363_test.json", Alg::ES384, |g| {
        ec_key(g, true)
    }) + wycheproof("rsa_signature_2048_sha256_test.json", Alg::RS256, |g| {
        let k = &g["publicKey"];
        let (n, e) = (
            common::hex(k["modulus"].as_str().unwrap()),
            common::hex(k["publicExponent"].as_str().unwrap()),
        );
        VerifyKey::rsa(&n, &e).unwrap()
    });
    assert!(n > 700, "{n} cases");
    assert!(CALLS.with(|c| c.get()) > 500, "the host path was taken");
}

#[test]
fn other_algorithms_never_go_to_the_host() {
    CALLS.with(|c| c.set(0));
    crypto::set_offload(Some(stand_in_host));
    let ed = VerifyKey::ed25519(&[
        0x3d, 0x40, 0x17, 0xc3, 0xe8, 0x43, 0x89, 0x5a, 0x92, 0xb7, 0x0a, 0xa7, 0x4d, 0x1b, 0x7e,
        0xbc, 0x9c, 0x98, 0x2c, 0xcf, 0x2e, 0xc4, 0x96, 0x8c, 0xc0, 0xcd, 0x55, 0xf1, 0x2a, 0xf4,
        0x66, 0x0c,
    ])
    .unwrap();
    assert!(!crypto::verify(Alg::EdDSA, &ed, b"m", &[0u8; 64]));
    let secret = VerifyKey::secret(b"k".to_vec()).unwrap();
    assert!(!crypto::verify(Alg::HS256, &secret, b"m", &[0u8; 32]));
    assert!(crypto::offload_active());
    crypto::set_offload(None);
    assert_eq!(CALLS.with(|c| c.get()), 0);
}
