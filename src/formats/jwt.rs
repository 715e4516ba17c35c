//! JWS compact tokens ([RFC 7515 §7.1](https://www.rfc-editor.org/rfc/rfc7515#section-7.1)) and JWT claims
//! ([RFC 7519 §4.1](https://www.rfc-editor.org/rfc/rfc7519#section-4.1)).
//!
//! An [`UntrustedJwt`] is only parsed; [`JwtRules::verify`] is the only way to get a [`VerifiedJwt`], whose
//! claims are what templates may read. Checks run cheapest first, as Envoy's `jwt_authn` does: parse → `alg`
//! allowed → issuer → time (with skew) → audience → key → signature. The algorithm is taken from the token
//! only after it is found in the provider's list and agrees with the key.

use crate::formats::b64;
use crate::formats::crypto::{self, Alg};
use crate::formats::jwk::Jwk;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;

/// Largest token accepted (bytes of the compact form).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused. Each maps to one stable reason code in [`crate::decision::Reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtError {
    /// Over [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// Not three base64url parts, header or payload not a JSON object, duplicate members, wrong claim types,
    /// or a `crit` header.
    Malformed,
    /// `alg` is `none`, unsupported, outside the provider's list, or fits no configured key.
    AlgNotAllowed,
    /// `kid` given and no configured key has it.
    UnknownKid,
    /// No key verified the signature.
    BadSignature,
    /// `exp` (plus skew) is in the past.
    Expired,
    /// `nbf` (minus skew) is in the future.
    NotYetValid,
    /// `exp` is absent and the provider requires it.
    MissingExp,
    /// `exp` is further from `iat` (or now) than the provider's `max_lifetime_s`.
    LifetimeTooLong,
    /// `iss` is absent or not the provider's issuer.
    WrongIssuer,
    /// No `aud` value is one of the provider's audiences.
    WrongAudience,
}

/// A JSON object that refuses duplicate member names (two parsers must never disagree on `sub`).
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<StrictObject, A::Error> {
                let mut out = Map::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                    out.insert(k, v);
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn decode_object(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = b64::url_decode(part).ok_or(JwtError::Malformed)?;
    serde_json::from_slice::<StrictObject>(&bytes)
        .map(|o| o.0)
        .map_err(|_| JwtError::Malformed)
}

/// A parsed, unverified token. Nothing in it may be trusted.
#[derive(Debug)]
pub struct UntrustedJwt<'t> {
    alg: String,
    kid: Option<String>,
    signing_input: &'t str,
    signature: Vec<u8>,
    claims: Map<String, Value>,
}

impl<'t> UntrustedJwt<'t> {
    /// Parses the compact serialization `header.payload.signature`.
    pub fn parse(token: &'t str) -> Result<Self, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let (signing_input, sig_part) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
        let (header_part, payload_part) =
            signing_input.split_once('.').ok_or(JwtError::Malformed)?;
        if payload_part.contains('.') {
            return Err(JwtError::Malformed); // five parts: a JWE, not a JWS
        }
        let header = decode_object(header_part)?;
        // RFC 7515 §4.1.11: unknown critical extensions must be refused; none are understood here (this also
        // refuses RFC 7797 "b64": false, which changes what was signed).
        if header.contains_key("crit") {
            return Err(JwtError::Malformed);
        }
        let alg = match header.get("alg") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(JwtError::Malformed),
        };
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(JwtError::Malformed),
        };
        let signature = b64::url_decode(sig_part).ok_or(JwtError::Malformed)?;
        let claims = decode_object(payload_part)?;
        check_registered_claims(&claims)?;
        Ok(UntrustedJwt {
            alg,
            kid,
            signing_input,
            signature,
            claims,
        })
    }

    /// The unverified `alg` header value.
    pub fn alg(&self) -> &str {
        &self.alg
    }

    /// The unverified `kid` header value.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

/// A token whose signature and claims passed a provider's [`JwtRules`].
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    claims: Map<String, Value>,
    alg: Alg,
    exp: Option<i64>,
}

impl VerifiedJwt {
    /// The verified claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
    /// The algorithm that verified it.
    pub fn alg(&self) -> Alg {
        self.alg
    }
    /// `exp`, when the token has one (whole seconds).
    pub fn exp(&self) -> Option<i64> {
        self.exp
    }
}

/// What a `jwt` provider requires of a token.
#[derive(Debug, Clone)]
pub struct JwtRules {
    /// `iss` must equal this exactly, when set.
    pub issuer: Option<String>,
    /// `aud` must contain one of these, when not empty.
    pub audiences: Vec<String>,
    /// The algorithms a token may use.
    pub algorithms: Vec<Alg>,
    /// Refuse tokens without `exp`.
    pub require_exp: bool,
    /// Seconds of tolerance for `exp` and `nbf`.
    pub clock_skew_s: i64,
    /// Longest accepted `exp - iat` (or `exp - now` without `iat`).
    pub max_lifetime_s: Option<i64>,
}

/// Latest accepted NumericDate: 9999-12-31T23:59:59Z. Anything later is a generator bug or an attack on the
/// arithmetic, not a date.
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// A NumericDate claim: absent, or a number in `[0, MAX_NUMERIC_DATE]` (fractions truncated).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            // In range, so the cast is exact for the integer part.
            Some(f) if (0.0..=MAX_NUMERIC_DATE).contains(&f) => Ok(Some(f as i64)),
            _ => Err(JwtError::Malformed),
        },
        Some(_) => Err(JwtError::Malformed),
    }
}

/// RFC 7519 §4.1: the registered claims have fixed types. A token that breaks them is malformed, whatever
/// the provider checks, so no template or later check sees a `sub` that is a number or an `exp` in year 10⁶.
fn check_registered_claims(claims: &Map<String, Value>) -> Result<(), JwtError> {
    for name in ["iss", "sub", "jti"] {
        if matches!(claims.get(name), Some(v) if !v.is_string()) {
            return Err(JwtError::Malformed);
        }
    }
    match claims.get("aud") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => return Err(JwtError::Malformed),
    }
    for name in ["exp", "nbf", "iat"] {
        numeric_date(claims, name)?;
    }
    Ok(())
}

impl JwtRules {
    /// Checks claims and signature against `keys` at `now` (unix seconds).
    pub fn verify(
        &self,
        token: &UntrustedJwt<'_>,
        keys: &[Jwk],
        now: i64,
    ) -> Result<VerifiedJwt, JwtError> {
        let (alg, exp) = self.check_claims(&token.alg, &token.claims, now)?;
        verify_signature(token, alg, keys)?;
        Ok(VerifiedJwt {
            claims: token.claims.clone(),
            alg,
            exp,
        })
    }

    /// Checks a token verified earlier (by these rules, with keys of the current version) again at `now`:
    /// everything but the signature. What a cached token must still pass.
    pub fn recheck(&self, jwt: &VerifiedJwt, now: i64) -> Result<(), JwtError> {
        self.check_claims(jwt.alg.name(), &jwt.claims, now)
            .map(|_| ())
    }

    /// The algorithm (allowed by these rules) and every claim check at `now`; `exp` when present.
    fn check_claims(
        &self,
        alg: &str,
        claims: &Map<String, Value>,
        now: i64,
    ) -> Result<(Alg, Option<i64>), JwtError> {
        let alg = Alg::from_name(alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or(JwtError::AlgNotAllowed)?;

        if let Some(want) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(want.as_str()) {
                return Err(JwtError::WrongIssuer);
            }
        }

        let exp = numeric_date(claims, "exp")?;
        let nbf = numeric_date(claims, "nbf")?;
        let iat = numeric_date(claims, "iat")?;
        match exp {
            None if self.require_exp => return Err(JwtError::MissingExp),
            Some(exp) if now > exp.saturating_add(self.clock_skew_s) => {
                return Err(JwtError::Expired)
            }
            _ => {}
        }
        if let Some(nbf) = nbf {
            if nbf > now.saturating_add(self.clock_skew_s) {
                return Err(JwtError::NotYetValid);
            }
        }
        if let Some(max) = self.max_lifetime_s {
            let exp = exp.ok_or(JwtError::MissingExp)?;
            if exp.saturating_sub(iat.unwrap_or(now)) > max {
                return Err(JwtError::LifetimeTooLong);
            }
        }

        if !self.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => self.audiences.iter().any(|w| w == a),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| self.audiences.iter().any(|w| w == a)),
                // Other types were refused by `check_registered_claims`.
                _ => false,
            };
            if !ok {
                return Err(JwtError::WrongAudience);
            }
        }
        Ok((alg, exp))
    }
}

/// Finds the keys the token may be checked with and verifies its signature with them.
///
/// `kid` given: the keys with that `kid`, and keys that have no `kid` at all (a PEM key, a JWK without one),
/// as Envoy's `jwt_authn` does; never a key with another `kid`. No `kid`: every key that accepts `alg`.
fn verify_signature(token: &UntrustedJwt<'_>, alg: Alg, keys: &[Jwk]) -> Result<(), JwtError> {
    let mut candidates = keys
        .iter()
        .filter(|k| match (token.kid.as_deref(), k.kid.as_deref()) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        })
        .peekable();
    if candidates.peek().is_none() {
        return Err(if token.kid.is_some() {
            JwtError::UnknownKid
        } else {
            JwtError::AlgNotAllowed
        });
    }
    let mut fitting = candidates.filter(|k| k.accepts(alg)).peekable();
    if fitting.peek().is_none() {
        return Err(JwtError::AlgNotAllowed);
    }
    let msg = token.signing_input.as_bytes();
    if fitting.any(|k| crypto::verify(alg, &k.key, msg, &token.signature)) {
        Ok(())
    } else {
        Err(JwtError::BadSignature)
    }
}
