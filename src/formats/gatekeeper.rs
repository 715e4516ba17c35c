//! Gatekeeper-style HMAC signed requests (DESIGN "Gatekeeper HMAC"; reference client: byteforge-hmac).
//!
//! `Authorization: HMAC client_id="…",timestamp="…",nonce="…",signature="<64 lowercase hex>"`, where
//! signature = hex(HMAC-SHA256(secret, "METHOD\nPATH\nTIMESTAMP\nNONCE\nBODY")). PATH is the request path
//! without the query; because the reference client signs whatever path string it is handed, a signature over
//! the path with its raw query, exactly as sent, is accepted too (it binds strictly more of the request).
//! The checks run in the reference's order: timestamp (cheap), signature, then (in the engine) permissions,
//! replay and rate.

use crate::formats::crypto::HmacSha256Key;
use subtle::ConstantTimeEq;

/// Largest `Authorization: HMAC` value parsed.
pub const MAX_HEADER_BYTES: usize = 2048;

/// A parsed, unverified HMAC credential, borrowing from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacCredential<'a> {
    pub client_id: &'a str,
    pub timestamp: i64,
    /// The timestamp exactly as sent: it is what was signed.
    pub timestamp_raw: &'a str,
    pub nonce: &'a str,
    /// The 32 signature bytes (from 64 lowercase hex digits).
    pub signature: [u8; 32],
}

/// Why a credential is refused before any secret is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    Malformed,
}

/// 64 lowercase hex digits: the reference compares lowercase hex strings, so uppercase never matches.
fn lower_hex_32(s: &str) -> Option<[u8; 32]> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    crate::formats::b64::hex32(s)
}

/// Parses the parameters after `HMAC ` (the scheme prefix already removed). Strict: exactly the four
/// parameters, each once, quoted; values without `"`, `\`, control characters.
pub fn parse(params: &str) -> Result<HmacCredential<'_>, ParseError> {
    if params.len() > MAX_HEADER_BYTES {
        return Err(ParseError::Malformed);
    }
    let (mut client_id, mut timestamp, mut nonce, mut signature) = (None, None, None, None);
    for part in params.split(',') {
        let (name, value) = part.trim().split_once('=').ok_or(ParseError::Malformed)?;
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or(ParseError::Malformed)?;
        if value.is_empty()
            || value
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            return Err(ParseError::Malformed);
        }
        let slot = match name.trim() {
            "client_id" => &mut client_id,
            "timestamp" => &mut timestamp,
            "nonce" => &mut nonce,
            "signature" => &mut signature,
            _ => return Err(ParseError::Malformed),
        };
        if slot.replace(value).is_some() {
            return Err(ParseError::Malformed);
        }
    }
    let (Some(client_id), Some(ts), Some(nonce), Some(sig)) =
        (client_id, timestamp, nonce, signature)
    else {
        return Err(ParseError::Malformed);
    };
    if ts.len() > 12 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Malformed);
    }
    let timestamp = ts.parse::<i64>().map_err(|_| ParseError::Malformed)?;
    Ok(HmacCredential {
        client_id,
        timestamp,
        timestamp_raw: ts,
        nonce,
        signature: lower_hex_32(sig).ok_or(ParseError::Malformed)?,
    })
}

/// The string to sign, in its pieces: `METHOD\nPATH\nTIMESTAMP\nNONCE\nBODY`.
fn pieces<'a>(
    method: &'a str,
    path: &'a str,
    timestamp: &'a str,
    nonce: &'a str,
    body: &'a [u8],
) -> [&'a [u8]; 9] {
    let nl: &[u8] = b"\n";
    [
        method.as_bytes(),
        nl,
        path.as_bytes(),
        nl,
        timestamp.as_bytes(),
        nl,
        nonce.as_bytes(),
        nl,
        body,
    ]
}

/// The string to sign.
pub fn message(method: &str, path: &str, timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    pieces(method, path, timestamp, nonce, body).concat()
}

/// True when the signature verifies over the path without query, or over the raw path with its query.
/// When the path has a query, both comparisons run, in constant time; without one they are the same
/// message, computed once (the path is not secret).
pub fn verify(
    cred: &HmacCredential<'_>,
    key: &HmacSha256Key,
    method: &str,
    raw_path: &str,
    body: &[u8],
) -> bool {
    let bare = raw_path.split(['?', '#']).next().unwrap_or_default();
    let with_query = raw_path.split('#').next().unwrap_or_default();
    let mac = |path| key.mac(&pieces(method, path, cred.timestamp_raw, cred.nonce, body));
    let ok_bare = mac(bare).ct_eq(&cred.signature);
    if with_query.len() == bare.len() {
        return bool::from(ok_bare);
    }
    let ok_query = mac(with_query).ct_eq(&cred.signature);
    bool::from(ok_bare | ok_query)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "735d5c3578ce27dc4dcf4ec42d6292c0ed631de97120c37b5502b2fca3cbdfa3";

    fn key(secret: &[u8]) -> HmacSha256Key {
        HmacSha256Key::new(secret).unwrap()
    }

    fn header(sig: &str) -> String {
        format!(
            r#"client_id="3f2c1a9e-0000-4000-8000-000000000001",timestamp="1700000000",nonce="0b6c6e3a-6f6e-4c2e-9a59-5d0c2f5d1e01",signature="{sig}""#
        )
    }

    #[test]
    fn parses_the_reference_header() {
        let h = header(SIG);
        let c = parse(&h).unwrap();
        assert_eq!(c.client_id, "3f2c1a9e-0000-4000-8000-000000000001");
        assert_eq!(c.timestamp, 1_700_000_000);
        assert!(verify(
            &c,
            &key(b"s3cr3t-shared-secret"),
            "GET",
            "/api/users",
            b""
        ));
        assert!(!verify(
            &c,
            &key(b"s3cr3t-shared-secret"),
            "POST",
            "/api/users",
            b""
        ));
        assert!(!verify(
            &c,
            &key(b"s3cr3t-shared-secret"),
            "GET",
            "/api/users",
            b"x"
        ));
        assert!(!verify(&c, &key(b"other"), "GET", "/api/users", b""));
        // The query is not part of PATH.
        assert!(verify(
            &c,
            &key(b"s3cr3t-shared-secret"),
            "GET",
            "/api/users?x=1",
            b""
        ));
    }

    #[test]
    fn a_signature_over_the_query_binds_it() {
        let k = key(b"s3cr3t-shared-secret");
        let sig = k.mac(&[&message("GET", "/api/users?x=1", "1700000000", "n-1", b"")]);
        let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
        let h = header(&hex).replace("0b6c6e3a-6f6e-4c2e-9a59-5d0c2f5d1e01", "n-1");
        let c = parse(&h).unwrap();
        assert!(verify(&c, &k, "GET", "/api/users?x=1", b""));
        assert!(verify(&c, &k, "GET", "/api/users?x=1#frag", b""));
        assert!(!verify(&c, &k, "GET", "/api/users?x=2", b""));
        // Without a query only PATH is signed: a query-bound signature does not fit the bare path.
        assert!(!verify(&c, &k, "GET", "/api/users", b""));
    }

    #[test]
    fn refuses_what_the_reference_refuses_and_more() {
        assert!(
            parse(&header(&SIG.to_uppercase())).is_err(),
            "uppercase hex"
        );
        assert!(parse(&header(&SIG[..62])).is_err(), "short");
        assert!(
            parse(&format!("{},nonce=\"x\"", header(SIG))).is_err(),
            "duplicate"
        );
        assert!(
            parse(&header(SIG).replace("timestamp=\"1700000000\"", "timestamp=\"17e8\"")).is_err()
        );
        assert!(
            parse(&header(SIG).replace("timestamp=\"1700000000\"", "timestamp=\"-1\"")).is_err()
        );
        assert!(
            parse(&header(SIG).replace(",nonce=\"0b6c6e3a-6f6e-4c2e-9a59-5d0c2f5d1e01\"", ""))
                .is_err()
        );
        assert!(
            parse(&header(SIG).replace("client_id=\"", "client_id=")).is_err(),
            "unquoted"
        );
        assert!(parse(&header(SIG).replace("nonce=\"0b6c", "nonce=\"\n0b6c")).is_err());
        assert!(parse(&format!("{},extra=\"1\"", header(SIG))).is_err());
        assert!(parse("").is_err());
        assert!(parse(&"a".repeat(3000)).is_err());
    }
}
