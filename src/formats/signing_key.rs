//! The private key the proxy signs identity assertions with: PKCS#8 PEM → an Ed25519 (`EdDSA`) or P-256
//! (`ES256`) key, its public JWK (RFC 7517/8037), and compact JWS signing (RFC 7515).
//!
//! Both algorithms are deterministic (Ed25519 by construction, ECDSA with RFC 6979 nonces), so the same key,
//! header and payload always give the same JWS: what the tests pin. The private halves are wiped on drop by
//! their crates and never shown by `Debug`.

use crate::formats::b64;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use ed25519_dalek::Signer as _;
use serde_json::{json, Value};
use std::fmt;

/// The JWS algorithms an assertion may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignAlg {
    EdDsa,
    Es256,
}

impl SignAlg {
    /// `EdDSA` or `ES256`; `Ed25519` (RFC 9864) is read as `EdDSA`.
    pub fn from_name(name: &str) -> Option<SignAlg> {
        match name {
            "EdDSA" | "Ed25519" => Some(SignAlg::EdDsa),
            "ES256" => Some(SignAlg::Es256),
            _ => None,
        }
    }

    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            SignAlg::EdDsa => "EdDSA",
            SignAlg::Es256 => "ES256",
        }
    }
}

/// A private signing key with its `kid`.
pub struct SigningKey {
    kid: String,
    key: Inner,
}

enum Inner {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    P256(Box<p256::ecdsa::SigningKey>),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, {:?})", self.alg().name(), self.kid)
    }
}

/// Why a PEM text is not a signing key for the algorithm; `Display` says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningKeyError {
    /// A public key where the private one is needed.
    PublicKey,
    /// A SEC1 or PKCS#1 private key: the PKCS#8 form is needed.
    NotPkcs8(&'static str),
    /// A valid key of another algorithm.
    Mismatch { alg: SignAlg, found: SignAlg },
    /// Not a PKCS#8 key of either type.
    Unreadable,
}

impl fmt::Display for SigningKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningKeyError::PublicKey => f.write_str(
                "this is a public key; the signing key is the private key (PKCS#8 PEM, -----BEGIN PRIVATE KEY-----); publish the public one in previous_keys or let the proxy serve it at jwks_path",
            ),
            SigningKeyError::NotPkcs8(label) => write!(
                f,
                "a {label} PEM; expected PKCS#8 (-----BEGIN PRIVATE KEY-----): convert with openssl pkcs8 -topk8 -nocrypt -in KEY"
            ),
            SigningKeyError::Mismatch { alg, found } => write!(
                f,
                "the key is an {} key but alg is {}; set alg to {} or use a {} key",
                key_name(*found),
                alg.name(),
                found.name(),
                key_name(*alg)
            ),
            SigningKeyError::Unreadable => f.write_str(
                "expected an unencrypted PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----) of an Ed25519 or P-256 key, e.g. from `trustgate keygen`",
            ),
        }
    }
}

fn key_name(alg: SignAlg) -> &'static str {
    match alg {
        SignAlg::EdDsa => "Ed25519",
        SignAlg::Es256 => "ES256 (P-256)",
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key that must be of `alg`'s type.
    pub fn from_pem(alg: SignAlg, kid: &str, pem: &str) -> Result<SigningKey, SigningKeyError> {
        let text = pem.trim();
        for (label, err) in [
            ("PUBLIC KEY", SigningKeyError::PublicKey),
            (
                "EC PRIVATE KEY",
                SigningKeyError::NotPkcs8("SEC1 EC PRIVATE KEY"),
            ),
            (
                "RSA PRIVATE KEY",
                SigningKeyError::NotPkcs8("PKCS#1 RSA PRIVATE KEY"),
            ),
            ("ENCRYPTED PRIVATE KEY", SigningKeyError::Unreadable),
        ] {
            if text.starts_with(&format!("-----BEGIN {label}-----")) {
                return Err(err);
            }
        }
        let key = if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(text) {
            Inner::Ed25519(Box::new(k))
        } else if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(text) {
            Inner::P256(Box::new(k))
        } else {
            return Err(SigningKeyError::Unreadable);
        };
        let key = SigningKey {
            kid: kid.to_owned(),
            key,
        };
        if key.alg() != alg {
            return Err(SigningKeyError::Mismatch {
                alg,
                found: key.alg(),
            });
        }
        Ok(key)
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> SignAlg {
        match self.key {
            Inner::Ed25519(_) => SignAlg::EdDsa,
            Inner::P256(_) => SignAlg::Es256,
        }
    }

    /// The key's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK: `kty`, `crv`, `x` (and `y`), `kid`, `alg`, `use: sig`. Never a private member.
    pub fn public_jwk(&self) -> Value {
        match &self.key {
            Inner::Ed25519(k) => json!({
                "kty": "OKP", "crv": "Ed25519",
                "x": b64::url_encode(k.verifying_key().as_bytes()),
                "kid": self.kid, "alg": "EdDSA", "use": "sig",
            }),
            Inner::P256(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                let coord = |c: Option<&p256::FieldBytes>| {
                    c.map(|b| b64::url_encode(b)).unwrap_or_default()
                };
                json!({
                    "kty": "EC", "crv": "P-256",
                    "x": coord(point.x()), "y": coord(point.y()),
                    "kid": self.kid, "alg": "ES256", "use": "sig",
                })
            }
        }
    }

    /// A compact JWS of `payload` (JSON text) with the header `{"alg","kid","typ":"JWT"}`.
    pub fn sign_jwt(&self, payload: &str) -> String {
        let header = json!({ "alg": self.alg().name(), "kid": self.kid, "typ": "JWT" }).to_string();
        let mut jws = b64::url_encode(header.as_bytes());
        jws.push('.');
        jws.push_str(&b64::url_encode(payload.as_bytes()));
        let sig = match &self.key {
            Inner::Ed25519(k) => k.sign(jws.as_bytes()).to_bytes().to_vec(),
            Inner::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(jws.as_bytes());
                s.to_bytes().to_vec()
            }
        };
        jws.push('.');
        jws.push_str(&b64::url_encode(&sig));
        jws
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::formats::jwk::Jwk;

    // Test keys only (RFC 8032 §7.1 TEST 1 secret key; a P-256 key made for these tests).
    pub(crate) const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";

    #[test]
    fn ed25519_public_jwk_is_the_rfc8032_key_and_has_no_private_member() {
        let k = SigningKey::from_pem(SignAlg::EdDsa, "k1", ED25519_PEM).unwrap();
        let jwk = k.public_jwk();
        // RFC 8032 §7.1 TEST 1 public key.
        assert_eq!(
            b64::url_decode(jwk["x"].as_str().unwrap()).unwrap(),
            b64::hex32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap()
                .to_vec()
        );
        assert!(jwk.get("d").is_none());
        assert_eq!(jwk["kid"], "k1");
        Jwk::from_value(&jwk).unwrap();
    }

    #[test]
    fn signing_is_deterministic_and_verifies() {
        let k = SigningKey::from_pem(SignAlg::EdDsa, "k1", ED25519_PEM).unwrap();
        let a = k.sign_jwt(r#"{"sub":"alice"}"#);
        assert_eq!(a, k.sign_jwt(r#"{"sub":"alice"}"#));
        assert_ne!(a, k.sign_jwt(r#"{"sub":"bob"}"#));
        let jwk = Jwk::from_value(&k.public_jwk()).unwrap();
        let (signed, sig) = a.rsplit_once('.').unwrap();
        assert!(crate::formats::crypto::verify(
            crate::formats::crypto::Alg::EdDSA,
            &jwk.key,
            signed.as_bytes(),
            &b64::url_decode(sig).unwrap()
        ));
    }

    // A P-256 key made for these tests with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`.
    pub(crate) const P256_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghIXysqujxOPIy9F8\nSATio9rTAQZ0ycAZIxo9j38p+lKhRANCAARSTvjJQBHwLVAKU9vItAfZH5yVNK7b\nBFHA4DWuKwOHSBUqH9CoYJ/Eaj6OQsxzCzuuzmoE1L6d7wxw8P7C0cuF\n-----END PRIVATE KEY-----\n";

    #[test]
    fn es256_signs_deterministically_with_a_64_byte_signature_its_jwk_verifies() {
        let k = SigningKey::from_pem(SignAlg::Es256, "p1", P256_PEM).unwrap();
        let a = k.sign_jwt(r#"{"sub":"alice"}"#);
        assert_eq!(a, k.sign_jwt(r#"{"sub":"alice"}"#));
        let jwk = k.public_jwk();
        assert!(jwk.get("d").is_none());
        let jwk = Jwk::from_value(&jwk).unwrap();
        let (signed, sig) = a.rsplit_once('.').unwrap();
        let sig = b64::url_decode(sig).unwrap();
        assert_eq!(sig.len(), 64);
        assert!(crate::formats::crypto::verify(
            crate::formats::crypto::Alg::ES256,
            &jwk.key,
            signed.as_bytes(),
            &sig
        ));
    }

    #[test]
    fn wrong_kinds_of_pem_say_what_to_do() {
        let pub_pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            SigningKey::from_pem(SignAlg::EdDsa, "k", pub_pem).unwrap_err(),
            SigningKeyError::PublicKey
        );
        assert_eq!(
            SigningKey::from_pem(SignAlg::Es256, "k", ED25519_PEM).unwrap_err(),
            SigningKeyError::Mismatch {
                alg: SignAlg::Es256,
                found: SignAlg::EdDsa
            }
        );
        assert_eq!(
            SigningKey::from_pem(SignAlg::EdDsa, "k", "not a key").unwrap_err(),
            SigningKeyError::Unreadable
        );
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert!(SigningKey::from_pem(SignAlg::Es256, "k", sec1)
            .unwrap_err()
            .to_string()
            .contains("openssl pkcs8 -topk8"));
    }
}
