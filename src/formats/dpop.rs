//! DPoP proofs ([RFC 9449](https://www.rfc-editor.org/rfc/rfc9449)): the proof JWT a client sends in the `DPoP`
//! header to show it holds the key its access token is bound to, and the JWK thumbprint
//! ([RFC 7638](https://www.rfc-editor.org/rfc/rfc7638)) that names that key in the token (`cnf.jkt`).
//!
//! Pure: the proof text and what the request says ([`Expect`]) in, a [`VerifiedProof`] out. The checks of
//! RFC 9449 §4.3 that need state stay with the caller: exactly one `DPoP` header (point 1), the `jti` not seen
//! before (§11.1), and `cnf.jkt` of the token = [`VerifiedProof::jkt`] (point 12 / §7.1). The others, cheapest
//! first:
//!
//! | §4.3 | check | error |
//! |---|---|---|
//! | 2, 3 | at most [`MAX_PROOF_BYTES`]; three strict base64url parts; header and payload JSON objects without duplicate members; `typ`, `alg`, `jwk` (an object) in the header; `jti` (1 to [`MAX_JTI_BYTES`] bytes), `htm`, `htu` strings and `iat` a NumericDate in the payload, `ath` a string when a token is presented; no `crit` | `Malformed` |
//! | 4 | `typ` is `dpop+jwt` (case-insensitive, `application/` prefix allowed: RFC 7515 §4.1.9) | `Typ` |
//! | 5 | `alg` asymmetric and in the provider's list (`Ed25519`, RFC 9864, is `EdDSA`) | `AlgNotAllowed` |
//! | 8 | `htm` = the request method (case-sensitive, RFC 9110 §9.1) | `Method` |
//! | 9 | `htu` = the request URI, both without query and fragment, compared in their RFC 3986 §6.2.2–6.2.3 normal form ([`normalize_uri`]) | `Uri` |
//! | 11 | `now − max_age − skew ≤ iat ≤ now + skew` | `Stale` |
//! | 12 | `ath` = base64url(SHA-256(token)) ([`token_hash`]) | `TokenHash` |
//! | 7 | `jwk` a public key (no `d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`) of `alg`'s type | `BadKey` |
//! | 6 | the signature verifies with `jwk` ([`crypto::verify`]: RSA and ECDSA through the host's `verify_signature` when it offers it) | `BadSignature` |
//!
//! A server-issued `nonce` (§8, §9) is not asked for: the filter keeps no per-client state to issue one.

use crate::formats::b64;
use crate::formats::crypto::{self, Alg};
use crate::formats::jwk::Jwk;
use crate::formats::jwt::decode_object;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Largest proof accepted (bytes of the compact form): an RSA-8192 `jwk` and signature fit.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// Longest `jti` accepted.
pub const MAX_JTI_BYTES: usize = 256;

/// Members that make a JWK a private (or secret) key (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopError {
    /// Not a JWS of the expected shape, a required member absent or of the wrong type, over the size limit.
    Malformed,
    /// `typ` is not `dpop+jwt`.
    Typ,
    /// `alg` is symmetric, unknown, or not in the provider's list.
    AlgNotAllowed,
    /// `jwk` is not a public key of `alg`'s type, or holds a private part.
    BadKey,
    /// The signature does not verify with `jwk`.
    BadSignature,
    /// `htm` is not the request method.
    Method,
    /// `htu` is not the request URI.
    Uri,
    /// `ath` is not the hash of the presented token.
    TokenHash,
    /// `iat` is outside the accepted window.
    Stale,
}

/// What the proof must match: the request, and the provider's limits.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The request method.
    pub method: &'a str,
    /// The request's target URI, `scheme://authority/path` (a query or fragment is ignored).
    pub uri: &'a str,
    /// The access token presented with the proof; `None` only for a proof without one (a token request).
    pub token: Option<&'a str>,
    /// The algorithms a proof may use.
    pub algorithms: &'a [Alg],
    /// Oldest accepted `iat`, in seconds before `now`.
    pub max_age_s: i64,
    /// Clock tolerance, seconds, both ways.
    pub skew_s: i64,
    /// Unix seconds.
    pub now: i64,
}

/// A proof that passed every stateless check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The RFC 7638 thumbprint of the proof key (what `cnf.jkt` must be).
    pub jkt: String,
    /// The proof's `jti`, to be refused when seen again.
    pub jti: String,
    /// The proof's `iat` (whole seconds).
    pub iat: i64,
}

/// A parsed, unverified proof.
#[derive(Debug)]
pub struct UntrustedProof<'a> {
    signing_input: &'a str,
    signature: Vec<u8>,
    typ: String,
    alg: String,
    jwk: Map<String, Value>,
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    ath: Option<String>,
}

/// Latest NumericDate accepted (9999-12-31T23:59:59Z), as in [`crate::formats::jwt`].
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

fn string(m: &Map<String, Value>, name: &str) -> Result<String, DpopError> {
    m.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(DpopError::Malformed)
}

impl<'a> UntrustedProof<'a> {
    /// Parses the compact proof (RFC 9449 §4.2): the shape and types of §4.3 points 2 and 3.
    pub fn parse(proof: &'a str) -> Result<Self, DpopError> {
        if proof.len() > MAX_PROOF_BYTES {
            return Err(DpopError::Malformed);
        }
        let (signing_input, sig_part) = proof.rsplit_once('.').ok_or(DpopError::Malformed)?;
        let (header_part, payload_part) =
            signing_input.split_once('.').ok_or(DpopError::Malformed)?;
        let signature = b64::url_decode(sig_part).ok_or(DpopError::Malformed)?;
        let header = decode_object(header_part).map_err(|_| DpopError::Malformed)?;
        let claims = decode_object(payload_part).map_err(|_| DpopError::Malformed)?;
        // RFC 7515 §4.1.11: no critical extension is understood here.
        if header.contains_key("crit") {
            return Err(DpopError::Malformed);
        }
        let jwk = match header.get("jwk") {
            Some(Value::Object(o)) => o.clone(),
            _ => return Err(DpopError::Malformed),
        };
        let jti = string(&claims, "jti")?;
        if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
            return Err(DpopError::Malformed);
        }
        let iat = match claims.get("iat").and_then(Value::as_f64) {
            // In range, so the cast is exact for the integer part.
            Some(f) if (0.0..=MAX_NUMERIC_DATE).contains(&f) => f as i64,
            _ => return Err(DpopError::Malformed),
        };
        let ath = match claims.get("ath") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(DpopError::Malformed),
        };
        Ok(UntrustedProof {
            signing_input,
            signature,
            typ: string(&header, "typ")?,
            alg: string(&header, "alg")?,
            jwk,
            jti,
            htm: string(&claims, "htm")?,
            htu: string(&claims, "htu")?,
            iat,
            ath,
        })
    }

    /// Every stateless check of RFC 9449 §4.3 against `expect`, cheapest first; the signature last.
    pub fn verify(&self, expect: &Expect<'_>) -> Result<VerifiedProof, DpopError> {
        let typ = self.typ.to_ascii_lowercase();
        if typ != "dpop+jwt" && typ != "application/dpop+jwt" {
            return Err(DpopError::Typ);
        }
        let alg = proof_alg(&self.alg)
            .filter(|a| !a.is_hmac() && expect.algorithms.contains(a))
            .ok_or(DpopError::AlgNotAllowed)?;
        if self.htm != expect.method {
            return Err(DpopError::Method);
        }
        match (normalize_uri(&self.htu), normalize_uri(expect.uri)) {
            (Some(a), Some(b)) if a == b => {}
            _ => return Err(DpopError::Uri),
        }
        let oldest = expect
            .now
            .saturating_sub(expect.max_age_s)
            .saturating_sub(expect.skew_s);
        if self.iat < oldest || self.iat > expect.now.saturating_add(expect.skew_s) {
            return Err(DpopError::Stale);
        }
        match (expect.token, &self.ath) {
            (Some(token), Some(ath)) if *ath == token_hash(token) => {}
            (None, None) => {}
            (Some(_), None) => return Err(DpopError::Malformed),
            _ => return Err(DpopError::TokenHash),
        }
        if PRIVATE_MEMBERS.iter().any(|m| self.jwk.contains_key(*m)) {
            return Err(DpopError::BadKey);
        }
        let key =
            Jwk::from_value(&Value::Object(self.jwk.clone())).map_err(|_| DpopError::BadKey)?;
        if !key.accepts(alg) {
            return Err(DpopError::BadKey);
        }
        if !crypto::verify(
            alg,
            &key.key,
            self.signing_input.as_bytes(),
            &self.signature,
        ) {
            return Err(DpopError::BadSignature);
        }
        Ok(VerifiedProof {
            jkt: thumbprint(&self.jwk).ok_or(DpopError::BadKey)?,
            jti: self.jti.clone(),
            iat: self.iat,
        })
    }
}

/// A proof's `alg`: a JWS name, `Ed25519` (RFC 9864's fully-specified name) standing for `EdDSA`.
pub fn proof_alg(name: &str) -> Option<Alg> {
    match name {
        "Ed25519" => Some(Alg::EdDSA),
        other => Alg::from_name(other),
    }
}

/// `ath` (RFC 9449 §4.2): base64url of the SHA-256 of the access token's ASCII text.
pub fn token_hash(token: &str) -> String {
    b64::url_encode(&Sha256::digest(token.as_bytes()))
}

/// The JWK SHA-256 thumbprint (RFC 7638 §3): base64url(SHA-256) of the required members in lexicographic
/// order, as JSON without whitespace. `None` for a key type without required members defined here, or a
/// member that is absent or not a string.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "oct" => &["k", "kty"],
        _ => return None,
    };
    let mut text = String::from("{");
    for (i, m) in members.iter().enumerate() {
        let value = jwk.get(*m)?.as_str()?;
        if i > 0 {
            text.push(',');
        }
        text.push_str(&serde_json::to_string(m).ok()?);
        text.push(':');
        text.push_str(&serde_json::to_string(value).ok()?);
    }
    text.push('}');
    Some(b64::url_encode(&Sha256::digest(text.as_bytes())))
}

/// An absolute `http`/`https` URI in the normal form of RFC 3986 §6.2.2 (case: scheme and host lower-case,
/// percent-encodings upper-case; percent-encoded unreserved characters decoded; dot segments removed) and
/// §6.2.3 (default port and empty path), without its query and fragment (RFC 9449 §4.3 point 9). `None` for
/// another scheme, a missing host, userinfo, or a bad percent-encoding.
pub fn normalize_uri(uri: &str) -> Option<String> {
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    let (scheme, rest) = uri.get(..end)?.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = rest.split_at_checked(rest.find('/').unwrap_or(rest.len()))?;
    if authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (authority.as_str(), None),
    };
    // A bare `:` only in a bracketed IP literal (RFC 3986 §3.2.2), so the normal form reads back the same.
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || (host.contains(':') || host.contains(['[', ']'])) && !bracketed {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?).filter(|p| *p != default_port)
        }
        Some(_) => return None,
    };
    let path = remove_dot_segments(&normalize_percent(path)?);
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}{path}"),
        None => format!("{scheme}://{host}{path}"),
    })
}

/// Percent-encodings: unreserved characters decoded, the others' hex digits upper-case (RFC 3986 §6.2.2.1–2).
fn normalize_percent(path: &str) -> Option<String> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c != b'%' {
            out.push(c);
            i += 1;
            continue;
        }
        let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
        if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
            return None;
        }
        let v = u8::from_str_radix(hex, 16).ok()?;
        if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
            out.push(v);
        } else {
            out.push(b'%');
            out.extend_from_slice(hex.to_ascii_uppercase().as_bytes());
        }
        i += 3;
    }
    String::from_utf8(out).ok()
}

/// RFC 3986 §5.2.4 on an absolute path (or an empty one, which is `/`).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/').peekable();
    while let Some(s) = segments.next() {
        let last = segments.peek().is_none();
        match s {
            "." => {}
            ".." => {
                out.pop();
            }
            other => {
                out.push(other);
                continue;
            }
        }
        if last {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 9449 §4.2 figure 4: the example proof of a token request, signed by the key of §4.1 whose
    /// thumbprint §6.1 gives.
    const RFC_TOKEN_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
    /// RFC 9449 §7.1 figure 13: the proof of a protected-resource request with `ath`, and its access token.
    const RFC_RESOURCE_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
    const RFC_ACCESS_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

    fn expect<'a>(method: &'a str, uri: &'a str, token: Option<&'a str>, now: i64) -> Expect<'a> {
        Expect {
            method,
            uri,
            token,
            algorithms: &[Alg::ES256, Alg::RS256, Alg::PS256, Alg::EdDSA],
            max_age_s: 300,
            skew_s: 60,
            now,
        }
    }

    fn check(proof: &str, e: &Expect<'_>) -> Result<VerifiedProof, DpopError> {
        UntrustedProof::parse(proof)?.verify(e)
    }

    /// RFC 7638 §3.1: the thumbprint of the example RSA key.
    #[test]
    fn rfc7638_section_3_1_thumbprint() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(jwk.as_object().unwrap()).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    /// RFC 9449 §4.2 and §6.1: the token-request proof verifies with its own key at its `iat`, and that
    /// key's thumbprint is the `jkt` of §6.1.
    #[test]
    fn rfc9449_token_request_proof_verifies() {
        let v = check(
            RFC_TOKEN_PROOF,
            &expect(
                "POST",
                "https://server.example.com/token",
                None,
                1_562_262_616,
            ),
        )
        .unwrap();
        assert_eq!(v.jkt, RFC_JKT);
        assert_eq!(v.jti, "-BwC3ESc6acc2lTc");
        assert_eq!(v.iat, 1_562_262_616);
        // Case, the default port and a query do not change the URI.
        assert!(check(
            RFC_TOKEN_PROOF,
            &expect(
                "POST",
                "HTTPS://Server.Example.COM:443/token?x=1",
                None,
                1_562_262_616
            ),
        )
        .is_ok());
        // Presented with a token, the proof must carry its hash.
        assert_eq!(
            check(
                RFC_TOKEN_PROOF,
                &expect(
                    "POST",
                    "https://server.example.com/token",
                    Some("t"),
                    1_562_262_616
                )
            ),
            Err(DpopError::Malformed)
        );
    }

    /// RFC 9449 §7.1: the protected-resource proof verifies with `ath` of the example access token.
    #[test]
    fn rfc9449_resource_proof_verifies_with_ath() {
        let url = "https://resource.example.org/protectedresource";
        let now = 1_562_262_618;
        let v = check(
            RFC_RESOURCE_PROOF,
            &expect("GET", url, Some(RFC_ACCESS_TOKEN), now),
        )
        .unwrap();
        assert_eq!(v.jkt, RFC_JKT);
        assert_eq!(
            token_hash(RFC_ACCESS_TOKEN),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
        let bad = |e: Expect<'_>| check(RFC_RESOURCE_PROOF, &e);
        assert_eq!(
            bad(expect("POST", url, Some(RFC_ACCESS_TOKEN), now)),
            Err(DpopError::Method)
        );
        assert_eq!(
            bad(expect("get", url, Some(RFC_ACCESS_TOKEN), now)),
            Err(DpopError::Method)
        );
        assert_eq!(
            bad(expect(
                "GET",
                "https://resource.example.org/other",
                Some(RFC_ACCESS_TOKEN),
                now
            )),
            Err(DpopError::Uri)
        );
        assert_eq!(
            bad(expect(
                "GET",
                "http://resource.example.org/protectedresource",
                Some(RFC_ACCESS_TOKEN),
                now
            )),
            Err(DpopError::Uri)
        );
        assert_eq!(
            bad(expect("GET", url, Some("another token"), now)),
            Err(DpopError::TokenHash)
        );
        assert_eq!(
            bad(expect("GET", url, None, now)),
            Err(DpopError::TokenHash)
        );
        // iat window: max_age 300 and skew 60 behind, skew 60 ahead, boundaries included.
        assert!(bad(expect("GET", url, Some(RFC_ACCESS_TOKEN), now + 360)).is_ok());
        assert_eq!(
            bad(expect("GET", url, Some(RFC_ACCESS_TOKEN), now + 361)),
            Err(DpopError::Stale)
        );
        assert!(bad(expect("GET", url, Some(RFC_ACCESS_TOKEN), now - 60)).is_ok());
        assert_eq!(
            bad(expect("GET", url, Some(RFC_ACCESS_TOKEN), now - 61)),
            Err(DpopError::Stale)
        );
        let mut only_rs = expect("GET", url, Some(RFC_ACCESS_TOKEN), now);
        only_rs.algorithms = &[Alg::RS256];
        assert_eq!(bad(only_rs), Err(DpopError::AlgNotAllowed));
    }

    fn sign_p256(header: &Value, claims: &Value) -> String {
        use p256::ecdsa::signature::Signer as _;
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let input = format!(
            "{}.{}",
            b64::url_encode(header.to_string().as_bytes()),
            b64::url_encode(claims.to_string().as_bytes())
        );
        let sig: p256::ecdsa::Signature = sk.sign(input.as_bytes());
        format!("{input}.{}", b64::url_encode(&sig.to_bytes()))
    }

    fn p256_jwk() -> Value {
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let point = sk.verifying_key().to_encoded_point(false);
        json!({
            "kty": "EC", "crv": "P-256",
            "x": b64::url_encode(point.x().unwrap()),
            "y": b64::url_encode(point.y().unwrap()),
        })
    }

    fn claims() -> Value {
        json!({"jti": "j1", "htm": "GET", "htu": "https://api.example.com/r", "iat": 1000,
               "ath": token_hash("tok")})
    }

    fn ok_expect() -> Expect<'static> {
        expect("GET", "https://api.example.com/r", Some("tok"), 1000)
    }

    #[test]
    fn a_proof_made_here_verifies_and_each_header_fault_is_named() {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": p256_jwk()});
        let good = sign_p256(&header, &claims());
        let v = check(&good, &ok_expect()).unwrap();
        assert_eq!(Some(v.jkt), thumbprint(p256_jwk().as_object().unwrap()));
        let with = |f: &dyn Fn(&mut Value)| {
            let mut h = header.clone();
            f(&mut h);
            check(&sign_p256(&h, &claims()), &ok_expect())
        };
        assert!(with(&|h| h["typ"] = json!("application/DPoP+JWT")).is_ok());
        assert_eq!(with(&|h| h["typ"] = json!("JWT")), Err(DpopError::Typ));
        assert_eq!(with(&|h| h["typ"] = json!("at+jwt")), Err(DpopError::Typ));
        assert_eq!(
            with(&|h| {
                h.as_object_mut().unwrap().remove("typ");
            }),
            Err(DpopError::Malformed)
        );
        assert_eq!(
            with(&|h| h["alg"] = json!("none")),
            Err(DpopError::AlgNotAllowed)
        );
        assert_eq!(
            with(&|h| h["alg"] = json!("HS256")),
            Err(DpopError::AlgNotAllowed)
        );
        assert_eq!(with(&|h| h["alg"] = json!("RS256")), Err(DpopError::BadKey));
        assert_eq!(
            with(&|h| h["jwk"]["d"] = json!("AAAA")),
            Err(DpopError::BadKey)
        );
        assert_eq!(
            with(&|h| h["jwk"]["crv"] = json!("P-384")),
            Err(DpopError::BadKey)
        );
        assert_eq!(
            with(&|h| h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"})),
            Err(DpopError::BadKey)
        );
        assert_eq!(with(&|h| h["jwk"] = json!("x")), Err(DpopError::Malformed));
        assert_eq!(
            with(&|h| h["crit"] = json!(["exp"])),
            Err(DpopError::Malformed)
        );
        // Another key's jwk: the signature does not verify.
        assert_eq!(
            with(&|h| h["jwk"] = json!({"kty": "EC", "crv": "P-256",
                "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"})),
            Err(DpopError::BadSignature)
        );
        // A flipped signature bit.
        let mut bytes = good.into_bytes();
        if let Some(last) = bytes.last_mut() {
            *last = if *last == b'A' { b'Q' } else { b'A' };
        }
        let flipped = String::from_utf8(bytes).unwrap();
        assert!(matches!(
            check(&flipped, &ok_expect()),
            Err(DpopError::BadSignature | DpopError::Malformed)
        ));
    }

    #[test]
    fn claim_faults_are_malformed() {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": p256_jwk()});
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = claims();
            f(&mut c);
            check(&sign_p256(&header, &c), &ok_expect())
        };
        for m in ["jti", "htm", "htu", "iat"] {
            assert_eq!(
                with(&|c| {
                    c.as_object_mut().unwrap().remove(m);
                }),
                Err(DpopError::Malformed),
                "{m}"
            );
        }
        assert_eq!(with(&|c| c["jti"] = json!("")), Err(DpopError::Malformed));
        assert_eq!(with(&|c| c["jti"] = json!(7)), Err(DpopError::Malformed));
        assert_eq!(
            with(&|c| c["jti"] = json!("x".repeat(MAX_JTI_BYTES + 1))),
            Err(DpopError::Malformed)
        );
        assert_eq!(
            with(&|c| c["iat"] = json!("1000")),
            Err(DpopError::Malformed)
        );
        assert_eq!(with(&|c| c["iat"] = json!(-1)), Err(DpopError::Malformed));
        assert_eq!(with(&|c| c["ath"] = json!(1)), Err(DpopError::Malformed));
        assert_eq!(
            with(&|c| c["htu"] = json!("https://api.example.com/r?q=1#f")),
            Ok(VerifiedProof {
                jkt: thumbprint(p256_jwk().as_object().unwrap()).unwrap(),
                jti: "j1".into(),
                iat: 1000
            })
        );
        assert_eq!(
            with(&|c| c["htu"] = json!("https://api.example.com/r/")),
            Err(DpopError::Uri)
        );
        // Duplicate members and a big proof.
        let dup = format!(
            "{}.{}.AA",
            b64::url_encode(br#"{"typ":"dpop+jwt","typ":"dpop+jwt","alg":"ES256","jwk":{}}"#),
            b64::url_encode(br#"{"jti":"a","htm":"GET","htu":"https://a/","iat":1}"#)
        );
        assert_eq!(
            UntrustedProof::parse(&dup).map(|_| ()),
            Err(DpopError::Malformed)
        );
        let big = "a".repeat(MAX_PROOF_BYTES + 1);
        assert_eq!(
            UntrustedProof::parse(&big).map(|_| ()),
            Err(DpopError::Malformed)
        );
        for s in ["", "a.b", "a.b.c.d", "..", "e30.e30.", "e30=.e30.AA"] {
            assert!(UntrustedProof::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn uris_compare_in_normal_form() {
        let n = |s: &str| normalize_uri(s);
        assert_eq!(
            n("https://a.example/x").as_deref(),
            Some("https://a.example/x")
        );
        assert_eq!(
            n("HTTPS://A.Example:443").as_deref(),
            Some("https://a.example/")
        );
        assert_eq!(n("http://a:80/").as_deref(), Some("http://a/"));
        assert_eq!(n("http://a:8080/").as_deref(), Some("http://a:8080/"));
        assert_eq!(n("https://a:80/").as_deref(), Some("https://a:80/"));
        assert_eq!(n("https://a:/p").as_deref(), Some("https://a/p"));
        assert_eq!(
            n("https://[::1]:8443/p").as_deref(),
            Some("https://[::1]:8443/p")
        );
        assert_eq!(n("https://[::1]/p").as_deref(), Some("https://[::1]/p"));
        assert_eq!(
            n("https://a/%7euser/%2fx").as_deref(),
            Some("https://a/~user/%2Fx")
        );
        assert_eq!(n("https://a/b/./c/../d").as_deref(), Some("https://a/b/d"));
        assert_eq!(n("https://a/b/%2E%2E/d").as_deref(), Some("https://a/d"));
        assert_eq!(n("https://a/b/..").as_deref(), Some("https://a/"));
        assert_eq!(n("https://a/b/.").as_deref(), Some("https://a/b/"));
        assert_eq!(n("https://a/..").as_deref(), Some("https://a/"));
        assert_eq!(n("https://a/p?q=1#f").as_deref(), Some("https://a/p"));
        assert_eq!(
            n("https://a/P").as_deref(),
            Some("https://a/P"),
            "paths keep case"
        );
        for bad in [
            "ftp://a/",
            "https:/a/",
            "https:///p",
            "https://u@a/",
            "https://a:x/",
            "https://a:99999/",
            "https://a:b:80/",
            "https://[::1/",
            "https://a]:80/",
            "https://a/%zz",
            "https://a/%2",
            "a/b",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }
}
