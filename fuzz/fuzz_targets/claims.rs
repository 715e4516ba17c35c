//! Claim conditions (`{"provider": …, "claims": {PATH: COND}}`): compiling any JSON and evaluating it over any
//! claims never panics; a credential without claims never meets conditions (fail closed); a scope challenge is
//! never empty and never breaks its quoted-string; the verdict is the same twice.
//!
//! Input: the conditions JSON, byte 0x01, the claims JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trustgate::policy::claims::{Conditions, Unmet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (conds, claims) = text.split_once('\u{1}').unwrap_or((text, "{}"));
    let Ok(raw) = serde_json::from_str::<serde_json::Value>(conds) else { return };
    let Ok(c) = Conditions::compile("claims", &raw) else { return };
    assert!(c.check(None).is_err(), "conditions held without claims");
    let claims = serde_json::from_str::<serde_json::Value>(claims).unwrap_or_default();
    let verdict = c.check(claims.as_object());
    assert_eq!(verdict, c.check(claims.as_object()));
    if let Err(Unmet::Scope(scope)) = &verdict {
        assert!(!scope.is_empty());
        assert!(!scope.bytes().any(|b| b == b'"' || b == b'\\' || b.is_ascii_control()));
    }
});
