//! JWS parsing and verification against a fixed key set: never panics, never accepts without a valid MAC.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trustgate::formats::crypto::{Alg, VerifyKey};
use trustgate::formats::jwk::Jwk;
use trustgate::formats::jwt::{JwtRules, UntrustedJwt};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(token) = UntrustedJwt::parse(text) else { return };
    let keys = [Jwk { kid: None, alg: None, key: VerifyKey::secret(b"fuzz-secret".to_vec()).unwrap() }];
    let rules = JwtRules {
        issuer: None,
        audiences: vec![],
        algorithms: Alg::ALL.to_vec(),
        require_exp: false,
        clock_skew_s: 60,
        max_lifetime_s: None,
        typ: None,
    };
    let _ = rules.verify(&token, &keys, 1_800_000_000);
});
