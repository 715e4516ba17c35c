//! Strict base64 decoding: the alphabets RFC 4648 §5 (url) and §4 (standard), no whitespace, canonical
//! trailing bits. Shared by every scheme so each decodes exactly the same way.

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

#[cfg(test)]
mod tests {
    use super::*;

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
