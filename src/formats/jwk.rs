//! JSON Web Keys and key sets ([RFC 7517](https://www.rfc-editor.org/rfc/rfc7517)) → decoded [`VerifyKey`]s.
//!
//! Key types: `RSA` (`n`, `e`), `EC` (`crv` P-256 / P-384, `x`, `y`), `OKP` (`crv` Ed25519, `x`), `oct` (`k`).
//! A key's own `alg`, when present, pins the one algorithm it may verify. Keys marked `"use": "enc"` are not
//! signature keys; [`JwkError::cannot_verify_jws`] tells such keys (skipped by a key set) from malformed ones.
//! Unknown members (`x5c`, `x5t`, ...) are ignored, as RFC 7517 §4 asks.

use crate::formats::b64;
use crate::formats::crypto::{Alg, KeyError, VerifyKey};
use serde_json::Value;
use std::fmt;

/// One decoded signature key.
#[derive(Debug, Clone)]
pub struct Jwk {
    /// `kid`, if the key has one.
    pub kid: Option<String>,
    /// The key's own `alg`, if given: the only algorithm it verifies.
    pub alg: Option<Alg>,
    /// The key material.
    pub key: VerifyKey,
}

impl Jwk {
    /// True when this key may verify a signature made with `alg`.
    pub fn accepts(&self, alg: Alg) -> bool {
        self.alg.is_none_or(|own| own == alg) && alg.fits(&self.key)
    }
}

/// Why one JWK was refused. `Display` gives `<member>: <problem>`, to be prefixed with the key's JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwkError {
    NotAnObject,
    Missing(&'static str),
    NotAString(&'static str),
    Base64(&'static str),
    UnsupportedKty(String),
    UnsupportedCurve { kty: &'static str, crv: String },
    UnsupportedAlg(String),
    AlgMismatch { alg: String, kty: &'static str },
    EncryptionKey,
    NotForVerify,
    Key(&'static str, KeyError),
}

impl JwkError {
    /// True when the key is not one this filter verifies a JWS with (an encryption key, `key_ops` without
    /// `verify` (RFC 7517 §4.3: [`JwkError::NotForVerify`]), a key type, curve or algorithm it does not
    /// support): a key set skips it. Any other error is a malformed key.
    pub fn cannot_verify_jws(&self) -> bool {
        matches!(
            self,
            JwkError::EncryptionKey
                | JwkError::NotForVerify
                | JwkError::UnsupportedKty(_)
                | JwkError::UnsupportedCurve { .. }
                | JwkError::UnsupportedAlg(_)
        )
    }
}

impl fmt::Display for JwkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwkError::NotAnObject => f.write_str("expected a JWK object"),
            JwkError::Missing(m) => write!(f, "{m}: missing, a required member of this key type"),
            JwkError::NotAString(m) => write!(f, "{m}: expected a string"),
            JwkError::Base64(m) => write!(f, "{m}: expected base64url without padding"),
            JwkError::UnsupportedKty(k) => write!(
                f,
                "kty: unsupported key type {k:?}, expected RSA, EC, OKP or oct"
            ),
            JwkError::UnsupportedCurve { kty: "EC", crv } => {
                write!(f, "crv: unsupported curve {crv:?}, expected P-256 or P-384")
            }
            JwkError::UnsupportedCurve { crv, .. } => {
                write!(f, "crv: unsupported curve {crv:?}, expected Ed25519")
            }
            JwkError::UnsupportedAlg(a) => write!(
                f,
                "alg: unsupported algorithm {a:?}, expected one of {}",
                Alg::ALL.map(Alg::name).join(", ")
            ),
            JwkError::AlgMismatch { alg, kty } => {
                write!(f, "alg: {alg} cannot be used with a {kty} key")
            }
            JwkError::EncryptionKey => {
                f.write_str("use: \"enc\" marks an encryption key, expected \"sig\"")
            }
            JwkError::NotForVerify => f.write_str("key_ops: does not list \"verify\""),
            JwkError::Key(m, e) => write!(f, "{m}: {e}"),
        }
    }
}

fn member<'a>(v: &'a Value, name: &'static str) -> Result<Option<&'a str>, JwkError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwkError::NotAString(name)),
    }
}

fn bytes(v: &Value, name: &'static str) -> Result<Vec<u8>, JwkError> {
    let s = member(v, name)?.ok_or(JwkError::Missing(name))?;
    b64::url_decode(s).ok_or(JwkError::Base64(name))
}

impl Jwk {
    /// Decodes one JWK.
    pub fn from_value(v: &Value) -> Result<Jwk, JwkError> {
        if !v.is_object() {
            return Err(JwkError::NotAnObject);
        }
        if member(v, "use")? == Some("enc") {
            return Err(JwkError::EncryptionKey);
        }
        if let Some(ops) = v.get("key_ops").and_then(Value::as_array) {
            if !ops.iter().any(|op| op.as_str() == Some("verify")) {
                return Err(JwkError::NotForVerify);
            }
        }
        let kty = member(v, "kty")?.ok_or(JwkError::Missing("kty"))?;
        let crv = member(v, "crv")?;
        let key = match kty {
            "RSA" => VerifyKey::rsa(&bytes(v, "n")?, &bytes(v, "e")?)
                .map_err(|e| JwkError::Key("n", e))?,
            "EC" => {
                let (x, y) = (bytes(v, "x")?, bytes(v, "y")?);
                match crv.ok_or(JwkError::Missing("crv"))? {
                    "P-256" => VerifyKey::p256(&x, &y),
                    "P-384" => VerifyKey::p384(&x, &y),
                    other => {
                        return Err(JwkError::UnsupportedCurve {
                            kty: "EC",
                            crv: other.to_owned(),
                        })
                    }
                }
                .map_err(|e| JwkError::Key("x", e))?
            }
            "OKP" => match crv.ok_or(JwkError::Missing("crv"))? {
                "Ed25519" => {
                    VerifyKey::ed25519(&bytes(v, "x")?).map_err(|e| JwkError::Key("x", e))?
                }
                other => {
                    return Err(JwkError::UnsupportedCurve {
                        kty: "OKP",
                        crv: other.to_owned(),
                    })
                }
            },
            "oct" => VerifyKey::secret(bytes(v, "k")?).map_err(|e| JwkError::Key("k", e))?,
            other => return Err(JwkError::UnsupportedKty(other.to_owned())),
        };
        let alg = match member(v, "alg")? {
            None => None,
            Some(name) => {
                let alg = Alg::from_name(name)
                    .ok_or_else(|| JwkError::UnsupportedAlg(name.to_owned()))?;
                if !alg.fits(&key) {
                    return Err(JwkError::AlgMismatch {
                        alg: name.to_owned(),
                        kty: key.kind(),
                    });
                }
                Some(alg)
            }
        };
        Ok(Jwk {
            kid: member(v, "kid")?.map(str::to_owned),
            alg,
            key,
        })
    }
}

/// A JWK Set's `keys`, each decoded or refused with its index.
#[derive(Debug)]
pub struct ParsedJwks {
    /// The keys that decoded.
    pub keys: Vec<Jwk>,
    /// `(index in "keys", why)` for each key that did not.
    pub refused: Vec<(usize, JwkError)>,
}

/// Why a JWK Set document as a whole was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    /// Not JSON, or JSON nested too deep.
    Json,
    /// The document is not an object with a `keys` array.
    NoKeysArray,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::Json => f.write_str("not valid JSON"),
            JwksError::NoKeysArray => f.write_str("expected an object with a \"keys\" array"),
        }
    }
}

/// Decodes every key of a JWK Set value, keeping the keys that decode and the reasons for the rest.
pub fn parse_jwks_value(doc: &Value) -> Result<ParsedJwks, JwksError> {
    let arr = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::NoKeysArray)?;
    let mut out = ParsedJwks {
        keys: Vec::new(),
        refused: Vec::new(),
    };
    for (i, k) in arr.iter().enumerate() {
        match Jwk::from_value(k) {
            Ok(jwk) => out.keys.push(jwk),
            Err(e) => out.refused.push((i, e)),
        }
    }
    Ok(out)
}

/// Decodes a JWK Set from its JSON text.
pub fn parse_jwks(text: &str) -> Result<ParsedJwks, JwksError> {
    let doc: Value = serde_json::from_str(text).map_err(|_| JwksError::Json)?;
    parse_jwks_value(&doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn p521_is_refused_with_the_expected_curves() {
        let e = Jwk::from_value(&json!({"kty":"EC","crv":"P-521","x":"AA","y":"AA"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "crv: unsupported curve \"P-521\", expected P-256 or P-384"
        );
    }

    #[test]
    fn oct_key_with_rsa_alg_is_refused() {
        let e = Jwk::from_value(&json!({"kty":"oct","k":"c2VjcmV0","alg":"RS256"})).unwrap_err();
        assert!(matches!(e, JwkError::AlgMismatch { .. }), "{e}");
    }

    #[test]
    fn jwk_alg_pins_the_algorithm() {
        let k = Jwk::from_value(&json!({"kty":"oct","k":"c2VjcmV0","alg":"HS256"})).unwrap();
        assert!(k.accepts(Alg::HS256));
        assert!(!k.accepts(Alg::HS512));
        let k = Jwk::from_value(&json!({"kty":"oct","k":"c2VjcmV0"})).unwrap();
        assert!(k.accepts(Alg::HS512));
        assert!(!k.accepts(Alg::RS256));
    }

    #[test]
    fn encryption_keys_and_bad_members_are_refused() {
        assert_eq!(
            Jwk::from_value(&json!({"kty":"oct","k":"c2VjcmV0","use":"enc"})).unwrap_err(),
            JwkError::EncryptionKey
        );
        assert_eq!(
            Jwk::from_value(&json!({"kty":"oct","k":"c2V+jcmV0"})).unwrap_err(),
            JwkError::Base64("k")
        );
        assert_eq!(
            Jwk::from_value(&json!({"kty":"oct","k":5})).unwrap_err(),
            JwkError::NotAString("k")
        );
        assert_eq!(
            Jwk::from_value(&json!({"kty":"RSA","n":"AQAB"})).unwrap_err(),
            JwkError::Missing("e")
        );
    }

    #[test]
    fn jwks_keeps_good_keys_and_reports_bad_ones() {
        let p = parse_jwks(r#"{"keys":[{"kty":"XX"},{"kty":"oct","k":"c2VjcmV0","kid":"a"}]}"#)
            .unwrap();
        assert_eq!(p.keys.len(), 1);
        assert_eq!(p.keys[0].kid.as_deref(), Some("a"));
        assert_eq!(p.refused.len(), 1);
        assert_eq!(p.refused[0].0, 0);
        assert!(parse_jwks("[]").is_err());
        assert!(parse_jwks("{").is_err());
    }
}
