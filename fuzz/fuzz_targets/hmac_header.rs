//! The gatekeeper `Authorization: HMAC` parser and verifier: no panic on any input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = trustgate::formats::gatekeeper::parse(text) {
        let Some(key) = trustgate::formats::crypto::HmacSha256Key::new(b"secret") else { return };
        let _ = trustgate::formats::gatekeeper::verify(&c, &key, "GET", "/p?q", b"body");
        let _ = trustgate::formats::gatekeeper::verify(&c, &key, "GET", "/p", b"body");
    }
});
