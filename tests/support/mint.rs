//! Test-only token minting: the keys here are made for tests and protect nothing.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Mac, SimpleHmac};
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The test signing keys, one per algorithm family.
pub struct Keys {
    pub es256: p256::ecdsa::SigningKey,
    pub ed25519: ed25519_dalek::SigningKey,
    pub rsa: rsa::RsaPrivateKey,
    pub hs: Vec<u8>,
}

impl Keys {
    pub fn new() -> Keys {
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/rsa2048.TEST-ONLY.key.pem"
        ))
        .unwrap();
        Keys {
            es256: p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap(),
            ed25519: ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]),
            rsa: rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap(),
            hs: b"test-only-hmac-secret-of-32-bytes!!".to_vec(),
        }
    }

    /// The public JWK Set: kids `es`, `ed`, `rs`, `hs`.
    pub fn jwks(&self) -> Value {
        let p = self.es256.verifying_key().to_encoded_point(false);
        let rsa_pub = self.rsa.to_public_key();
        json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "es", "x": b64(p.x().unwrap()), "y": b64(p.y().unwrap())},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(self.ed25519.verifying_key().as_bytes())},
            {"kty": "RSA", "kid": "rs", "n": b64(&rsa_pub.n().to_bytes_be()), "e": b64(&rsa_pub.e().to_bytes_be())},
            {"kty": "oct", "kid": "hs", "k": b64(&self.hs)},
        ]})
    }

    /// Signs `header` + `claims` with the key the header's `alg` names. `header` may lie (tests use that).
    pub fn mint(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.sign(header["alg"].as_str().unwrap_or("none"), input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    pub fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        match alg {
            "ES256" => {
                let s: p256::ecdsa::Signature =
                    p256::ecdsa::signature::Signer::sign(&self.es256, msg);
                s.to_bytes().to_vec()
            }
            "EdDSA" | "Ed25519" => self.ed25519.sign(msg).to_bytes().to_vec(),
            "RS256" => self
                .rsa
                .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg))
                .unwrap(),
            "HS256" => hs256(&self.hs, msg),
            _ => Vec::new(),
        }
    }
}

/// The PEM (SubjectPublicKeyInfo) of the test RSA key.
pub fn rsa_public_pem() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rsa2048.TEST-ONLY.pub.pem"
    ))
    .unwrap()
}

pub fn hs256(secret: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = SimpleHmac::<Sha256>::new_from_slice(secret).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// A gatekeeper `Authorization: HMAC …` value for a request (DESIGN "Gatekeeper HMAC").
pub fn gatekeeper_header(
    secret: &str,
    method: &str,
    path: &str,
    ts: i64,
    nonce: &str,
    body: &[u8],
    client: &str,
) -> String {
    let msg = trustgate::formats::gatekeeper::message(method, path, &ts.to_string(), nonce, body);
    let mac = trustgate::formats::crypto::hmac_sha256(secret.as_bytes(), &msg);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!(r#"HMAC client_id="{client}",timestamp="{ts}",nonce="{nonce}",signature="{hex}""#)
}
