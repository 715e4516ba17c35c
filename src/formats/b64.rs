//! Strict text encodings of bytes: base64 in the alphabets of RFC 4648 §5 (url) and §4 (standard), no
//! whitespace, canonical trailing bits; and hex. Shared by every scheme so each decodes exactly the same way.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// base64url without padding (JWS, JWK, Signet). `None` on any other byte, on padding, on non-canonical ends.
pub fn url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// base64url without padding.
pub fn url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Standard base64 with padding (RFC 9421 `Signature` byte sequences, config secrets).
pub fn std_decode(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).ok()
}

/// One hex digit (either case) as its value.
pub fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// 64 hex digits (either case) as 32 bytes.
pub fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *slot = hex_digit(*hi)? << 4 | hex_digit(*lo)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex32_is_strict() {
        let lower = "00ff".repeat(16);
        assert_eq!(hex32(&lower).map(|b| b[1]), Some(0xff));
        assert!(hex32(&lower.to_uppercase()).is_some());
        assert!(hex32(&lower[..62]).is_none());
        assert!(hex32(&format!("+f{}", &lower[2..])).is_none());
        assert!(hex32(&"zz".repeat(32)).is_none());
    }

    #[test]
    fn url_decode_is_strict() {
        assert_eq!(url_decode("aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(url_decode("aGk="), None, "padding");
        assert_eq!(url_decode("aG+k"), None, "standard alphabet");
        assert_eq!(url_decode("aGl"), None, "non-canonical trailing bits");
        assert_eq!(url_decode("a"), None, "impossible length");
        assert_eq!(url_decode(""), Some(vec![]));
    }
}
