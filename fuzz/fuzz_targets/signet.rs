//! The Signet-Proof parser and verifier: no panic on any input, never accepts a proof no master key signed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trustgate::formats::signet::{self, BindingCache};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = signet::parse(text) {
        let master = [0x11u8; 32]; // not a key anyone holds the secret of
        let r = signet::verify(&p, &[master], "GET", "/p?q", p.ts, 30, &BindingCache::default());
        assert!(r.is_err());
    }
});
