//! Key material for the CLI: private keys (generate, read PKCS#8 / SEC1 / PKCS#1 PEM, write PKCS#8 PEM),
//! public keys as SubjectPublicKeyInfo PEM and as JWKs ([RFC 7517](https://www.rfc-editor.org/rfc/rfc7517))
//! with [RFC 7638](https://www.rfc-editor.org/rfc/rfc7638) thumbprints, and signing for every JWS and RFC 9421
//! algorithm the filter verifies.
//!
//! Public keys are the library's [`VerifyKey`], so what the CLI writes is what the filter reads; every
//! signature made here is checked with the library's [`crypto::verify`] before it is printed.

use crate::CliError;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use jwt_compact::jwk::JsonWebKey;
use rand_core::{OsRng, RngCore as _};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::LineEnding;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};
use sha2::{Sha256, Sha384, Sha512};
use std::borrow::Cow;
use std::fmt::Write as _;
use trustgate::formats::b64;
use trustgate::formats::crypto::{self, Alg, VerifyKey, RSA_MAX_BITS, RSA_MIN_BITS};
use zeroize::Zeroizing;

/// A private signing key.
pub enum PrivateKey {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// The key types `keygen` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    Ed25519,
    P256,
    P384,
    Rsa,
}

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CliError> {
    let mut b = [0u8; N];
    OsRng
        .try_fill_bytes(&mut b)
        .map_err(|e| CliError::Failure(format!("the system random generator failed: {e}")))?;
    Ok(b)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A random version 4 UUID, in its usual text form (what the gatekeeper's reference client uses as a nonce).
pub fn uuid4() -> Result<String, CliError> {
    let mut b = random_bytes::<16>()?;
    if let Some(v) = b.get_mut(6) {
        *v = (*v & 0x0f) | 0x40;
    }
    if let Some(v) = b.get_mut(8) {
        *v = (*v & 0x3f) | 0x80;
    }
    let h = hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        h.get(..8).unwrap_or_default(),
        h.get(8..12).unwrap_or_default(),
        h.get(12..16).unwrap_or_default(),
        h.get(16..20).unwrap_or_default(),
        h.get(20..).unwrap_or_default()
    ))
}

fn failure(e: impl std::fmt::Display) -> CliError {
    CliError::Failure(e.to_string())
}

impl PrivateKey {
    /// A new key of `kind` (`bits` for RSA only).
    pub fn generate(kind: KeyType, bits: usize) -> Result<Self, CliError> {
        Ok(match kind {
            KeyType::Ed25519 => {
                let seed = Zeroizing::new(random_bytes::<32>()?);
                PrivateKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
            KeyType::P256 => PrivateKey::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            KeyType::P384 => PrivateKey::P384(p384::ecdsa::SigningKey::random(&mut OsRng)),
            KeyType::Rsa => {
                if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) || bits % 8 != 0 {
                    return Err(CliError::Usage(format!(
                        "--bits {bits}: trustgate accepts RSA keys of {RSA_MIN_BITS} to {RSA_MAX_BITS} bits \
                         (a multiple of 8); use 2048, 3072 or 4096"
                    )));
                }
                let key = rsa::RsaPrivateKey::new(&mut OsRng, bits)
                    .map_err(|e| failure(format!("RSA key generation failed: {e}")))?;
                PrivateKey::Rsa(Box::new(key))
            }
        })
    }

    /// Reads a private key from PEM: `PRIVATE KEY` (PKCS#8: RSA, P-256, P-384, Ed25519), `EC PRIVATE KEY`
    /// (SEC1) or `RSA PRIVATE KEY` (PKCS#1). `what` names the source in errors.
    pub fn from_pem(text: &str, what: &str) -> Result<Self, CliError> {
        let label = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("-----BEGIN "))
            .and_then(|l| l.strip_suffix("-----"))
            .ok_or_else(|| {
                failure(format!(
                    "{what}: no PEM block found, expected -----BEGIN PRIVATE KEY----- (the .key.pem file \
                     `trustgate keygen` writes)"
                ))
            })?;
        let refused = |why: &str| failure(format!("{what}: {why}"));
        let key = match label {
            "PRIVATE KEY" => {
                if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(text) {
                    PrivateKey::Rsa(Box::new(k))
                } else if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(text) {
                    PrivateKey::P256(k)
                } else if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_pem(text) {
                    PrivateKey::P384(k)
                } else if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(text) {
                    PrivateKey::Ed25519(k)
                } else {
                    return Err(refused(
                        "PRIVATE KEY is not an RSA, P-256, P-384 or Ed25519 key in PKCS#8",
                    ));
                }
            }
            "EC PRIVATE KEY" => {
                if let Ok(k) = p256::SecretKey::from_sec1_pem(text) {
                    PrivateKey::P256(k.into())
                } else if let Ok(k) = p384::SecretKey::from_sec1_pem(text) {
                    PrivateKey::P384(k.into())
                } else {
                    return Err(refused(
                        "EC PRIVATE KEY is not a P-256 or P-384 key (other curves are not supported)",
                    ));
                }
            }
            "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_pem(text)
                .map(|k| PrivateKey::Rsa(Box::new(k)))
                .map_err(|_| refused("not a valid PKCS#1 RSA PRIVATE KEY"))?,
            "ENCRYPTED PRIVATE KEY" => {
                return Err(refused(
                    "encrypted keys are not supported: decrypt it first \
                     (openssl pkcs8 -in KEY -out KEY.plain.pem) and keep that file mode 0600",
                ))
            }
            "OPENSSH PRIVATE KEY" => {
                return Err(refused(
                    "OpenSSH keys are not supported: convert with ssh-keygen -p -m PKCS8 -f KEY",
                ))
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                return Err(refused(
                    "this is a public key; signing needs the private key (the .key.pem file)",
                ))
            }
            other => {
                return Err(refused(&format!(
                    "PEM block \"{other}\" is not a private key, expected PRIVATE KEY"
                )))
            }
        };
        if let PrivateKey::Rsa(k) = &key {
            let bits = k.n().bits();
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err(refused(&format!(
                    "RSA key of {bits} bits: trustgate refuses keys outside {RSA_MIN_BITS} to {RSA_MAX_BITS} bits"
                )));
            }
        }
        Ok(key)
    }

    /// The private key as PKCS#8 PEM (zeroed on drop).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, CliError> {
        use rsa::pkcs8::EncodePrivateKey as _;
        let pem = match self {
            PrivateKey::Rsa(k) => k.to_pkcs8_pem(LineEnding::LF),
            PrivateKey::P256(k) => k.to_pkcs8_pem(LineEnding::LF),
            PrivateKey::P384(k) => k.to_pkcs8_pem(LineEnding::LF),
            // PKCS#8 v1 (RFC 8410 §7, without the optional public key): OpenSSL 3.0 refuses the v2 form.
            PrivateKey::Ed25519(k) => ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: k.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_pem(LineEnding::LF),
        };
        pem.map_err(|e| failure(format!("cannot encode the private key: {e}")))
    }

    /// The public half, as the library's key type.
    pub fn public(&self) -> VerifyKey {
        match self {
            PrivateKey::Rsa(k) => VerifyKey::Rsa(Box::new(k.to_public_key())),
            PrivateKey::P256(k) => VerifyKey::P256(*k.verifying_key()),
            PrivateKey::P384(k) => VerifyKey::P384(*k.verifying_key()),
            PrivateKey::Ed25519(k) => VerifyKey::Ed25519(Box::new(k.verifying_key().into())),
        }
    }

    /// Signs `msg` with a JWS algorithm that fits this key (checked by the caller with [`Alg::fits`]).
    /// ECDSA signatures are the fixed-size `r || s` form JWS and RFC 9421 use; RSA-PSS salts are as long
    /// as the hash (RFC 7518 §3.5, RFC 9421 §3.3.1).
    pub fn sign(&self, alg: Alg, msg: &[u8]) -> Result<Vec<u8>, CliError> {
        use rsa::pkcs1v15::SigningKey as V15;
        use rsa::pss::BlindedSigningKey as Pss;
        let sig = match (self, alg) {
            (PrivateKey::Rsa(k), Alg::RS256) => V15::<Sha256>::new((**k).clone())
                .sign_with_rng(&mut OsRng, msg)
                .to_vec(),
            (PrivateKey::Rsa(k), Alg::RS384) => V15::<Sha384>::new((**k).clone())
                .sign_with_rng(&mut OsRng, msg)
                .to_vec(),
            (PrivateKey::Rsa(k), Alg::RS512) => V15::<Sha512>::new((**k).clone())
                .sign_with_rng(&mut OsRng, msg)
                .to_vec(),
            (PrivateKey::Rsa(k), Alg::PS256) => Pss::<Sha256>::new((**k).clone())
                .sign_with_rng(&mut OsRng, msg)
                .to_vec(),
            (PrivateKey::Rsa(k), Alg::PS384) => Pss::<Sha384>::new((**k).clone())
                .sign_with_rng(&mut OsRng, msg)
                .to_vec(),
            (PrivateKey::Rsa(k), Alg::PS512) => Pss::<Sha512>::new((**k).clone())
                .sign_with_rng(&mut OsRng, msg)
                .to_vec(),
            (PrivateKey::P256(k), Alg::ES256) => {
                let s: p256::ecdsa::Signature = k.sign(msg);
                s.to_bytes().to_vec()
            }
            (PrivateKey::P384(k), Alg::ES384) => {
                let s: p384::ecdsa::Signature = k.sign(msg);
                s.to_bytes().to_vec()
            }
            (PrivateKey::Ed25519(k), Alg::EdDSA) => k.sign(msg).to_bytes().to_vec(),
            (_, alg) => {
                return Err(CliError::Usage(format!(
                    "{alg} cannot be used with a {} key; this key signs {}",
                    self.public().kind(),
                    fitting_algs(&self.public()).join(", ")
                )))
            }
        };
        // Never print a signature the filter would refuse.
        if crypto::verify(alg, &self.public(), msg, &sig) {
            Ok(sig)
        } else {
            Err(failure(format!(
                "internal error: the {alg} signature does not verify"
            )))
        }
    }
}

/// The JWS algorithm a key is used with unless told otherwise.
pub fn default_alg(key: &VerifyKey) -> Alg {
    match key {
        VerifyKey::Rsa(_) => Alg::RS256,
        VerifyKey::P256(_) => Alg::ES256,
        VerifyKey::P384(_) => Alg::ES384,
        VerifyKey::Ed25519(_) => Alg::EdDSA,
        VerifyKey::Secret(_) => Alg::HS256,
    }
}

/// The names of the JWS algorithms that fit a key.
pub fn fitting_algs(key: &VerifyKey) -> Vec<&'static str> {
    Alg::ALL
        .into_iter()
        .filter(|a| a.fits(key))
        .map(Alg::name)
        .collect()
}

/// A JWS algorithm by name, with the list of names in the error.
pub fn parse_alg(name: &str) -> Result<Alg, CliError> {
    Alg::from_name(name).ok_or_else(|| {
        CliError::Usage(format!(
            "--alg {name:?}: expected one of {}",
            Alg::ALL.map(Alg::name).join(", ")
        ))
    })
}

/// The public key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
pub fn public_pem(key: &VerifyKey) -> Result<String, CliError> {
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    let pem = match key {
        VerifyKey::Rsa(k) => k.to_public_key_pem(LineEnding::LF),
        VerifyKey::P256(k) => k.to_public_key_pem(LineEnding::LF),
        VerifyKey::P384(k) => k.to_public_key_pem(LineEnding::LF),
        VerifyKey::Ed25519(k) => k.verifying_key().to_public_key_pem(LineEnding::LF),
        VerifyKey::Secret(_) => return Err(failure("a shared secret has no public key")),
    };
    pem.map_err(|e| failure(format!("cannot encode the public key: {e}")))
}

/// The public key as jwt-compact's [`JsonWebKey`]: its required members (RFC 7638 §3.2), nothing private.
fn jwk_of(key: &VerifyKey) -> Result<JsonWebKey<'static>, CliError> {
    fn ec(
        curve: &'static str,
        x: Option<&[u8]>,
        y: Option<&[u8]>,
    ) -> Result<JsonWebKey<'static>, CliError> {
        let (Some(x), Some(y)) = (x, y) else {
            return Err(failure(format!("{curve} key: no affine coordinates")));
        };
        Ok(JsonWebKey::EllipticCurve {
            curve: Cow::Borrowed(curve),
            x: Cow::Owned(x.to_vec()),
            y: Cow::Owned(y.to_vec()),
            secret: None,
        })
    }
    Ok(match key {
        VerifyKey::Rsa(k) => JsonWebKey::Rsa {
            modulus: Cow::Owned(k.n().to_bytes_be()),
            public_exponent: Cow::Owned(k.e().to_bytes_be()),
            private_parts: None,
        },
        VerifyKey::P256(k) => {
            let p = k.to_encoded_point(false);
            ec("P-256", p.x().map(AsRef::as_ref), p.y().map(AsRef::as_ref))?
        }
        VerifyKey::P384(k) => {
            let p = k.to_encoded_point(false);
            ec("P-384", p.x().map(AsRef::as_ref), p.y().map(AsRef::as_ref))?
        }
        VerifyKey::Ed25519(k) => JsonWebKey::KeyPair {
            curve: Cow::Borrowed("Ed25519"),
            x: Cow::Owned(k.verifying_key().as_bytes().to_vec()),
            secret: None,
        },
        VerifyKey::Secret(_) => {
            return Err(failure(
                "a shared secret is not published in a JWKS (it would give the secret away)",
            ))
        }
    })
}

/// The RFC 7638 JWK thumbprint (SHA-256, base64url): the default `kid` everywhere in the CLI.
pub fn thumbprint(key: &VerifyKey) -> Result<String, CliError> {
    Ok(b64::url_encode(&jwk_of(key)?.thumbprint::<Sha256>()))
}

/// A public JWK with `kid`, `use: sig` and, when given, the one `alg` it may verify.
pub fn public_jwk(key: &VerifyKey, kid: &str, alg: Option<Alg>) -> Result<Value, CliError> {
    let Value::Object(mut m) = serde_json::to_value(jwk_of(key)?)
        .map_err(|e| failure(format!("cannot encode the JWK: {e}")))?
    else {
        return Err(failure("a JWK is not a JSON object"));
    };
    m.insert("kid".into(), json!(kid));
    m.insert("use".into(), json!("sig"));
    if let Some(alg) = alg {
        if !alg.fits(key) {
            return Err(CliError::Usage(format!(
                "--alg {alg} does not fit a {} key, expected one of {}",
                key.kind(),
                fitting_algs(key).join(", ")
            )));
        }
        m.insert("alg".into(), json!(alg.name()));
    }
    Ok(Value::Object(m))
}

/// Pretty JSON with a final newline.
pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustgate::formats::jwk::parse_jwks_value;

    fn all() -> Vec<PrivateKey> {
        vec![
            PrivateKey::generate(KeyType::Ed25519, 0).unwrap(),
            PrivateKey::generate(KeyType::P256, 0).unwrap(),
            PrivateKey::generate(KeyType::P384, 0).unwrap(),
            PrivateKey::generate(KeyType::Rsa, 2048).unwrap(),
        ]
    }

    #[test]
    fn rfc7638_section_3_1_example_thumbprint() {
        // RFC 7638 §3.1: the RSA key and its thumbprint.
        let n = b64::url_decode("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw").unwrap();
        let key = VerifyKey::rsa(&n, &[1, 0, 1]).unwrap();
        assert_eq!(
            thumbprint(&key).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn generated_keys_round_trip_through_the_library() {
        for key in all() {
            let public = key.public();
            // PKCS#8 private PEM reads back as the same key.
            let pem = key.to_pkcs8_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let again = PrivateKey::from_pem(&pem, "test").unwrap();
            assert_eq!(
                thumbprint(&again.public()).unwrap(),
                thumbprint(&public).unwrap()
            );
            // The public PEM is what the filter's `pem` keys accept.
            let parsed = VerifyKey::from_pem(&public_pem(&public).unwrap()).unwrap();
            assert_eq!(parsed.len(), 1);
            assert_eq!(
                thumbprint(&parsed[0]).unwrap(),
                thumbprint(&public).unwrap()
            );
            // The JWK is what the filter's `jwks` keys accept, and verifies this key's signatures.
            let alg = default_alg(&public);
            let kid = thumbprint(&public).unwrap();
            let jwk = public_jwk(&public, &kid, Some(alg)).unwrap();
            let set = parse_jwks_value(&json!({ "keys": [jwk] })).unwrap();
            assert!(set.refused.is_empty());
            let sig = key.sign(alg, b"hello").unwrap();
            assert!(crypto::verify(alg, &set.keys[0].key, b"hello", &sig));
            assert_eq!(set.keys[0].kid.as_deref(), Some(kid.as_str()));
        }
    }

    #[test]
    fn every_fitting_algorithm_signs_and_others_are_refused() {
        for key in all() {
            for alg in Alg::ALL {
                let r = key.sign(alg, b"m");
                assert_eq!(r.is_ok(), alg.fits(&key.public()), "{alg}");
            }
        }
    }

    #[test]
    fn wrong_pem_inputs_say_what_to_do() {
        let key = PrivateKey::generate(KeyType::P256, 0).unwrap();
        let public = public_pem(&key.public()).unwrap();
        let err = PrivateKey::from_pem(&public, "k.pem").err().unwrap();
        assert!(err.to_string().contains("public key"), "{err}");
        let err = PrivateKey::from_pem("hello", "k.pem").err().unwrap();
        assert!(err.to_string().contains("no PEM block"), "{err}");
        assert!(PrivateKey::generate(KeyType::Rsa, 1024).is_err());
    }

    #[test]
    fn uuid4_has_the_version_and_variant_bits() {
        let u = uuid4().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!("89ab".contains(&u[19..20]));
    }
}
