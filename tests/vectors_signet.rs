//! The Signet worked examples in `../shared/vectors/http_signatures/signet.json`: the binding and request
//! messages reproduced byte for byte, their signatures verified, and the self-contained header built from
//! the same bytes accepted by the verifier the filter uses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::Value;
use std::path::Path;
use trustgate::formats::b64;
use trustgate::formats::signet::{self, BindingCache};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors() -> Value {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/http_signatures/signet.json");
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (shared/ must sit beside the repo)", p.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn signet_json_messages_byte_for_byte() {
    let v = vectors();
    let master: [u8; 32] = hex(v["master_public_hex(SIGNET_MASTER_PUBLIC_KEY)"]
        .as_str()
        .unwrap())
    .try_into()
    .unwrap();
    let epk: [u8; 32] = hex(v["ephemeral_public_hex"].as_str().unwrap())
        .try_into()
        .unwrap();
    let rec = &v["server_side_TokenRecord"];
    let exp = rec["Token.ExpiresAt"].as_i64().unwrap();
    let pur = rec["Purpose"].as_str().unwrap();

    // The binding message and its signature by the master key.
    let binding = signet::binding_message(&epk, exp, pur);
    assert_eq!(binding, hex(v["binding_message_hex"].as_str().unwrap()));
    let p_sig: [u8; 64] = hex(v["binding_signature_hex"].as_str().unwrap())
        .try_into()
        .unwrap();
    assert_eq!(
        b64::url_encode(&p_sig),
        rec["BindingSignature_b64url"].as_str().unwrap()
    );
    let mk = VerifyingKey::from_bytes(&master).unwrap();
    mk.verify_strict(&binding, &Signature::from_bytes(&p_sig))
        .unwrap();

    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    let cache = BindingCache::default();
    for c in cases {
        let method = c["method"].as_str().unwrap();
        let path = c["path_and_rawquery"].as_str().unwrap();
        let ts = c["ts"].as_i64().unwrap();
        let registry_form = c["Signet-Proof"].as_str().unwrap();
        // The registry form carries no epk/p/exp/pur: add them to get the self-contained form.
        let full = format!(
            "{registry_form};epk={};p={};exp={exp};pur={pur}",
            b64::url_encode(&epk),
            b64::url_encode(&p_sig)
        );
        let proof = signet::parse(&full).unwrap();
        let msg = signet::request_message(method, path, ts, &proof.nonce);
        assert_eq!(
            std::str::from_utf8(&msg).unwrap(),
            c["canonical"].as_str().unwrap(),
            "{path}"
        );
        VerifyingKey::from_bytes(&epk)
            .unwrap()
            .verify(&msg, &Signature::from_bytes(&proof.sig))
            .unwrap();
        assert_eq!(
            signet::verify(&proof, &[[0; 32], master], method, path, ts, 30, &cache),
            Ok(1),
            "{path}"
        );
        // One byte changed anywhere in what was signed → refused.
        let tampered = format!("{path}x");
        assert_eq!(
            signet::verify(&proof, &[master], method, &tampered, ts, 30, &cache),
            Err(signet::SignetError::BadSignature)
        );
        assert!(
            signet::parse(registry_form).is_err(),
            "the registry form alone is not self-contained"
        );
    }
}
