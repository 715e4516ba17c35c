//! Credentials for the scenarios, made here with independent crates (ed25519-dalek, hmac), not with trustgate.

#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use trustgate_host_wasmtime::START_S;

pub const ISSUER: &str = "https://idp.test/";
pub const AUDIENCE: &str = "orders";
pub const HMAC_CLIENT: &str = "3f2c1a9e-0000-4000-8000-000000000001";
pub const HMAC_SECRET: &str = "s3cr3t-shared-secret";

/// A fixed Ed25519 key (test only) with key id `kid`.
pub struct Key {
    pub kid: &'static str,
    sk: SigningKey,
}

impl Key {
    pub fn new(kid: &'static str, seed: u8) -> Key {
        Key {
            kid,
            sk: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    /// The public JWK (`OKP`/`Ed25519`).
    pub fn jwk(&self) -> String {
        let x = B64.encode(self.sk.verifying_key().as_bytes());
        format!(
            r#"{{"kty":"OKP","crv":"Ed25519","kid":"{}","alg":"EdDSA","x":"{x}"}}"#,
            self.kid
        )
    }

    /// A compact JWS over `claims` (JSON text).
    pub fn sign(&self, claims: &str) -> String {
        let header = format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}"}}"#, self.kid);
        let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let sig = self.sk.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.to_bytes()))
    }

    /// A token for `sub` from [`ISSUER`] to [`AUDIENCE`], valid for 5 minutes from the harness's start time.
    pub fn token(&self, sub: &str) -> String {
        let iat = START_S;
        self.sign(&format!(
            r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"{sub}","email":"{sub}@example.com","iat":{iat},"exp":{}}}"#,
            iat + 300
        ))
    }
}

pub fn jwks(keys: &[&Key]) -> String {
    format!(
        r#"{{"keys":[{}]}}"#,
        keys.iter().map(|k| k.jwk()).collect::<Vec<_>>().join(",")
    )
}

/// The gatekeeper `Authorization` value (DESIGN.md "Gatekeeper HMAC").
pub fn hmac_auth(
    method: &str,
    path: &str,
    ts: i64,
    nonce: &str,
    body: &str,
    secret: &str,
) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    mac.update(format!("{method}\n{path}\n{ts}\n{nonce}\n{body}").as_bytes());
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(r#"HMAC client_id="{HMAC_CLIENT}",timestamp="{ts}",nonce="{nonce}",signature="{sig}""#)
}

/// Headers of a GET to `path` on `api.example.com` with extra `headers`.
pub fn get<'a>(path: &'a str, headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", "api.example.com"),
        (":scheme", "http"),
    ];
    h.extend_from_slice(headers);
    h
}
