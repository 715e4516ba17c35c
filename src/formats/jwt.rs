//! JWS compact tokens ([RFC 7515 §7.1](https://www.rfc-editor.org/rfc/rfc7515#section-7.1)) and JWT claims
//! ([RFC 7519 §4.1](https://www.rfc-editor.org/rfc/rfc7519#section-4.1)).
//!
//! An [`UntrustedJwt`] is only parsed; [`JwtRules::verify`] is the only way to get a [`VerifiedJwt`], whose
//! claims are what templates may read. Checks run cheapest first, as Envoy's `jwt_authn` does: parse → `alg`
//! allowed → issuer → time (with skew) → audience → key → signature. The algorithm is taken from the token
//! only after it is found in the provider's list and agrees with the key.
//!
//! jwt-compact does the JWS work: [`UntrustedToken`] splits and decodes the token and reads the header, and
//! the signature is verified through its `Algorithm::verify_signature`, implemented over our backends in
//! [`crate::formats::jws_algs`]. Every check, and where it is enforced:
//!
//! | check | reason | where |
//! |---|---|---|
//! | token over [`MAX_TOKEN_BYTES`] | `TooLarge` | [`UntrustedJwt::parse`], before any decoding |
//! | not exactly three `.`-separated parts (a JWE has five) | `Malformed` | jwt-compact's `UntrustedToken` |
//! | a part not strict base64url (padding, other alphabet, non-canonical end) | `Malformed` | `UntrustedToken` (base64ct); the payload again in `decode_object` |
//! | header not a JSON object, `alg` absent or not a string | `Malformed` | `UntrustedToken` (its typed header) |
//! | duplicate header member | `Malformed` | `UntrustedToken` for registered names (serde refuses a duplicate field), `StrictObject` for the rest |
//! | `kid` not a string | `Malformed` | `UntrustedToken`; `kid: null`, which the crate reads as absent, by [`UntrustedJwt::parse`] (`names_kid`) |
//! | `crit` present (RFC 7515 §4.1.11; also refuses `b64: false`) | `Malformed` | [`UntrustedJwt::parse`], on the header's other members |
//! | payload not a JSON object, duplicate claim | `Malformed` | `decode_object` (`StrictObject`) |
//! | `iss`/`sub`/`jti` not strings, `aud` not a string or array of strings, `exp`/`nbf`/`iat` not numbers in `[0, 9999-12-31]` | `Malformed` | `check_registered_claims` |
//! | `typ` outside the provider's `typ` list (case-insensitive, `application/` ignored; absent fails a list), or `dpop+jwt` | `TypNotAllowed` | [`JwtRules::verify`] (`check_typ`) |
//! | `alg` `none`, unknown, or outside the provider's list | `AlgNotAllowed` | [`JwtRules::verify`] / `recheck` (`check_claims`); a cached token was verified by the same rules (`recheck_times`) |
//! | `iss`, `exp` (+skew), `nbf` (−skew), `exp` required, lifetime, `aud` | their own | `check_claims`, at the caller's `now`; on a token-cache hit only `exp` and `nbf` again (`recheck_times`) |
//! | `kid` given: only keys with that `kid` or none (no fallback to others) | `UnknownKid` | `verify_signature` |
//! | key's own `alg` (JWK `alg`) and key type pin the algorithm | `AlgNotAllowed` | `verify_signature` ([`Jwk::accepts`]) and [`crate::formats::crypto::verify`] ([`Alg::fits`]) |
//! | signature (lengths, encodings, constant-time MACs) | `BadSignature` | `Algorithm::verify_signature` → [`crate::formats::crypto::verify`] |
//!
//! What stays outside the crate, and why:
//! - Claims: jwt-compact's `Claims<T>` moves `exp`/`nbf`/`iat` out of the claim set into `DateTime`s, truncating
//!   fractions before a range check could see them (`-0.5` would pass as `0`) and dropping the JSON value that
//!   templates (`${claims.exp}`) and assertions copy; it also `flatten`s the rest through serde's buffered
//!   `Content` (two trees per token) and keeps the last of duplicate names unless `T` refuses them. So the
//!   payload is decoded once more here, by `StrictObject`, and the time checks run on it at the injected
//!   `now` (no `TimeOptions`, no `clock` feature): measured in V8 the extra base64 pass is under 1 µs per token.
//!
//! Cost (V8, `examples/decide_cost.rs`, `parse token <alg>`, min of 7 runs on a shared machine): parsing a new
//! token went from 4.4–6.5 µs to 8.1–12.5 µs. The difference is jwt-compact's parser: constant-time base64
//! (base64ct) of all three parts, the payload among them although the claims are read from our own decode, and a
//! header typed through two `serde(flatten)` layers with owned strings. Against a signature check (EdDSA ~60–240
//! µs, RSA/ECDSA through the host or far more in pure Rust) it is noise; for HS256 (~9–13 µs a decision) it is not.
//! - The token size limit, `crit`, and `kid: null` (serde reads a `null` `Option` as absent): checks the crate
//!   does not make, made around it.
//! - jwt-compact's `Validator` is not used: it would deserialize `Claims<T>` again; the alg pinning it does
//!   (token's `alg` = the algorithm's name) is ours, stricter (list, key `alg`, key type), made before.
//!
//! Stricter than before, because the crate types the registered header parameters: a header whose `typ`,
//! `cty`, `jku` or `x5u` is not a string, whose `x5t`/`x5t#S256` is not base64url, or whose `cty` is neither
//! JSON nor absent, is `Malformed` (those members were ignored).

use crate::formats::b64;
use crate::formats::crypto::Alg;
use crate::formats::jwk::Jwk;
use crate::formats::jws_algs::{JwsAlgorithm, JwsSignature};
use jwt_compact::{Algorithm as _, AlgorithmSignature as _, UntrustedToken};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use std::rc::Rc;

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
    /// The header's `typ` is not one the provider lists (or absent where it lists some), or is `dpop+jwt`.
    TypNotAllowed,
}

/// A JSON object that refuses duplicate member names (two parsers must never disagree on `sub`). Also the
/// header's members other than the registered ones jwt-compact types.
#[derive(Debug, Clone)]
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
                    match out.entry(k) {
                        serde_json::map::Entry::Vacant(slot) => {
                            slot.insert(v);
                        }
                        serde_json::map::Entry::Occupied(_) => {
                            return Err(serde::de::Error::custom("duplicate member"))
                        }
                    }
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Decodes one base64url part into a JSON object that has no duplicate member (the DPoP proof parser shares it).
pub(crate) fn decode_object(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = b64::url_decode(part).ok_or(JwtError::Malformed)?;
    serde_json::from_slice::<StrictObject>(&bytes)
        .map(|o| o.0)
        .map_err(|_| JwtError::Malformed)
}

/// True when a header (already parsed by jwt-compact, which found no `kid`) has a `kid` member all the same:
/// `"kid": null`. The JSON is parsed again only when its text could name `kid` (the three letters, or an escape).
fn names_kid(header_part: &str) -> Result<bool, JwtError> {
    let bytes = b64::url_decode(header_part).ok_or(JwtError::Malformed)?;
    if !bytes.windows(3).any(|w| w == b"kid") && !bytes.contains(&b'\\') {
        return Ok(false);
    }
    Ok(decode_object(header_part)?.contains_key("kid"))
}

/// A parsed, unverified token. Nothing in it may be trusted.
#[derive(Debug)]
pub struct UntrustedJwt<'t> {
    token: UntrustedToken<'t, StrictObject>,
    signing_input: &'t str,
    /// Shared with the [`VerifiedJwt`] made from it: verifying does not copy the claims.
    claims: Rc<Map<String, Value>>,
}

impl<'t> UntrustedJwt<'t> {
    /// Parses the compact serialization `header.payload.signature`.
    pub fn parse(token: &'t str) -> Result<Self, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        // Three parts, each strict base64url, the header a JSON object with a string `alg`, its registered
        // members typed and unique, the others in a StrictObject.
        let parsed =
            UntrustedToken::<StrictObject>::try_from(token).map_err(|_| JwtError::Malformed)?;
        let header = parsed.header();
        // RFC 7515 §4.1.11: unknown critical extensions must be refused; none are understood here (this also
        // refuses RFC 7797 "b64": false, which changes what was signed).
        if header.other_fields.0.contains_key("crit") {
            return Err(JwtError::Malformed);
        }
        let (signing_input, _) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
        let (header_part, payload_part) =
            signing_input.split_once('.').ok_or(JwtError::Malformed)?;
        // serde reads `"kid": null` as no `kid`; it is malformed, as any other non-string `kid`.
        if header.key_id.is_none() && names_kid(header_part)? {
            return Err(JwtError::Malformed);
        }
        let claims = decode_object(payload_part)?;
        check_registered_claims(&claims)?;
        Ok(UntrustedJwt {
            token: parsed,
            signing_input,
            claims: Rc::new(claims),
        })
    }

    /// The unverified `alg` header value.
    pub fn alg(&self) -> &str {
        self.token.algorithm()
    }

    /// The unverified `kid` header value.
    pub fn kid(&self) -> Option<&str> {
        self.token.header().key_id.as_deref()
    }

    /// The unverified `typ` header value.
    pub fn typ(&self) -> Option<&str> {
        self.token.header().token_type.as_deref()
    }
}

/// A JOSE `typ` as compared (RFC 7515 §4.1.9): ASCII lower case, an `application/` prefix left out.
pub fn typ_key(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

/// The `typ` of a DPoP proof (RFC 9449 §4.2), never an access token's (RFC 8725 §3.11).
pub const DPOP_TYP: &str = "dpop+jwt";

/// A token whose signature and claims passed a provider's [`JwtRules`].
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    claims: Rc<Map<String, Value>>,
    alg: Alg,
    exp: Option<i64>,
    nbf: Option<i64>,
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
    /// The accepted `typ` values as [`typ_key`]s (RFC 9068 §4: `at+jwt`); `None`: any `typ` but `dpop+jwt`.
    pub typ: Option<Vec<String>>,
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
        self.check_typ(token.typ())?;
        let (alg, exp) = self.check_claims(token.alg(), &token.claims, now)?;
        verify_signature(token, alg, keys)?;
        Ok(VerifiedJwt {
            claims: Rc::clone(&token.claims),
            alg,
            exp,
            nbf: numeric_date(&token.claims, "nbf")?,
        })
    }

    /// Explicit typing (RFC 8725 §3.11, RFC 9068 §4): the header's `typ` is one of the listed ones (absent fails
    /// a list); without a list any `typ` passes but a DPoP proof's. Not part of [`Self::recheck`]: the header
    /// does not change, and a cached token was verified by these same rules.
    fn check_typ(&self, typ: Option<&str>) -> Result<(), JwtError> {
        let key = typ.map(typ_key);
        let ok = match (&self.typ, key) {
            (_, Some(k)) if k == DPOP_TYP => false,
            (None, _) => true,
            (Some(list), Some(k)) => list.contains(&k),
            (Some(_), None) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(JwtError::TypNotAllowed)
        }
    }

    /// Checks a token verified earlier (by these rules, with keys of the current version) again at `now`:
    /// everything but the signature. What a cached token must still pass.
    pub fn recheck(&self, jwt: &VerifiedJwt, now: i64) -> Result<(), JwtError> {
        self.check_claims(jwt.alg.name(), &jwt.claims, now)
            .map(|_| ())
    }

    /// [`Self::recheck`] for a token these same rules verified (the per-VM token cache: it lives and dies with
    /// the compiled config): only the checks that change with `now`, `exp` (+skew) and `nbf` (−skew). `alg`,
    /// `iss`, `aud`, `exp` required and the lifetime passed at verification and cannot change.
    pub fn recheck_times(&self, jwt: &VerifiedJwt, now: i64) -> Result<(), JwtError> {
        self.check_times(jwt.exp, jwt.nbf, now)
    }

    /// `exp` (+skew) and `nbf` (−skew) at `now`, when the token has them.
    fn check_times(&self, exp: Option<i64>, nbf: Option<i64>, now: i64) -> Result<(), JwtError> {
        if matches!(exp, Some(exp) if now > exp.saturating_add(self.clock_skew_s)) {
            return Err(JwtError::Expired);
        }
        if matches!(nbf, Some(nbf) if nbf > now.saturating_add(self.clock_skew_s)) {
            return Err(JwtError::NotYetValid);
        }
        Ok(())
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
        if exp.is_none() && self.require_exp {
            return Err(JwtError::MissingExp);
        }
        self.check_times(exp, nbf, now)?;
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

/// Finds the keys the token may be checked with and verifies its signature with them, through jwt-compact's
/// `Algorithm::verify_signature` ([`JwsAlgorithm`]).
///
/// `kid` given: the keys with that `kid`, and keys that have no `kid` at all (a PEM key, a JWK without one),
/// as Envoy's `jwt_authn` does; never a key with another `kid`. No `kid`: every key that accepts `alg`.
fn verify_signature(token: &UntrustedJwt<'_>, alg: Alg, keys: &[Jwk]) -> Result<(), JwtError> {
    let kid = token.kid();
    let mut candidates = keys
        .iter()
        .filter(|k| match (kid, k.kid.as_deref()) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        })
        .peekable();
    if candidates.peek().is_none() {
        return Err(if kid.is_some() {
            JwtError::UnknownKid
        } else {
            JwtError::AlgNotAllowed
        });
    }
    let mut fitting = candidates.filter(|k| k.accepts(alg)).peekable();
    if fitting.peek().is_none() {
        return Err(JwtError::AlgNotAllowed);
    }
    let algorithm = JwsAlgorithm::<crate::formats::jws_algs::NoSigning>::new(alg);
    // What jwt-compact's Validator checks first: the token names the algorithm it is verified with (by one
    // of its names: `Ed25519`, RFC 9864, is `EdDSA` here).
    if Alg::from_name(token.alg()) != Some(alg) {
        return Err(JwtError::AlgNotAllowed);
    }
    let signature = JwsSignature::try_from_slice(token.token.signature_bytes())
        .map_err(|_| JwtError::BadSignature)?;
    let msg = token.signing_input.as_bytes();
    if fitting.any(|k| algorithm.verify_signature(&signature, &k.key, msg)) {
        Ok(())
    } else {
        Err(JwtError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            b64::url_encode(header.as_bytes()),
            b64::url_encode(payload.as_bytes()),
            b64::url_encode(&[1u8; 64])
        )
    }

    fn parse(header: &str, payload: &str) -> Result<(String, Option<String>), JwtError> {
        let t = token(header, payload);
        UntrustedJwt::parse(&t).map(|j| (j.alg().to_owned(), j.kid().map(str::to_owned)))
    }

    #[test]
    fn a_plain_header_parses() {
        assert_eq!(
            parse(
                r#"{"alg":"ES256","kid":"k1","typ":"JWT","x":1}"#,
                r#"{"sub":"a"}"#
            ),
            Ok(("ES256".into(), Some("k1".into())))
        );
        assert_eq!(parse(r#"{"alg":"none"}"#, "{}"), Ok(("none".into(), None)));
    }

    #[test]
    fn header_checks_are_kept() {
        let bad = [
            r#"{"alg":"ES256","alg":"HS256"}"#,
            r#"{"alg":"ES256","kid":"a","kid":"b"}"#,
            r#"{"alg":"ES256","x":1,"x":2}"#,
            r#"{"alg":"ES256","kid":null}"#,
            r#"{"alg":"ES256","k\u0069d":null}"#,
            r#"{"alg":"ES256","kid":7}"#,
            r#"{"alg":"ES256","crit":["exp"]}"#,
            r#"{"alg":"ES256","b64":false,"crit":["b64"]}"#,
            r#"{"alg":7}"#,
            r#"{"alg":null}"#,
            r#"{"kid":"k"}"#,
            r#"["alg","ES256"]"#,
            r#""ES256""#,
            r#"{"alg":"ES256"} x"#,
        ];
        for h in bad {
            assert_eq!(parse(h, "{}"), Err(JwtError::Malformed), "{h}");
        }
    }

    #[test]
    fn payload_checks_are_kept() {
        let h = r#"{"alg":"ES256"}"#;
        for p in [
            r#"{"sub":"a","sub":"b"}"#,
            r#"{"exp":1,"exp":2}"#,
            r#"[]"#,
            r#"{"sub":1}"#,
            r#"{"aud":["a",1]}"#,
            r#"{"exp":"1"}"#,
            r#"{"exp":null}"#,
            r#"{"exp":-0.5}"#,
            r#"{"iat":253402300799.5}"#,
            r#"{"nbf":1e300}"#,
        ] {
            assert_eq!(parse(h, p), Err(JwtError::Malformed), "{p}");
        }
        let t = token(h, r#"{"exp":1700000000.5,"sub":"a"}"#);
        let j = UntrustedJwt::parse(&t).unwrap();
        assert_eq!(
            j.claims["exp"],
            serde_json::json!(1700000000.5),
            "claims keep their JSON"
        );
    }

    #[test]
    fn structure_and_base64_are_strict() {
        let good = token(r#"{"alg":"ES256"}"#, "{}");
        assert!(UntrustedJwt::parse(&good).is_ok());
        let (h, rest) = good.split_once('.').unwrap();
        let (p, sig) = rest.split_once('.').unwrap();
        for t in [
            format!("{h}.{p}"),
            format!("{h}.{p}.{sig}.x.y"),
            format!("{h}.{p}.{sig}."),
            format!("{h}=.{p}.{sig}"),
            format!("{h}.{p}.{sig}="),
            format!("{h}.{p}+.{sig}"),
            format!("{h}.{p}.a"),
            format!(" {h}.{p}.{sig}"),
        ] {
            assert_eq!(
                UntrustedJwt::parse(&t).map(|_| ()),
                Err(JwtError::Malformed),
                "{t}"
            );
        }
        let big = token(
            r#"{"alg":"ES256"}"#,
            &format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_TOKEN_BYTES)),
        );
        assert_eq!(
            UntrustedJwt::parse(&big).map(|_| ()),
            Err(JwtError::TooLarge)
        );
    }
}
