//! JWK Set decoding: any bytes in, keys or reasons out, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = trustgate::formats::jwk::parse_jwks(text);
        let _ = trustgate::formats::crypto::VerifyKey::from_pem(text);
    }
});
