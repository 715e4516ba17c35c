//! DPoP proofs (RFC 9449): parsing and every stateless check never panic, whatever the proof and the request;
//! the URI normal form `htu` is compared in reads back the same; a thumbprint is only given for a verified key.
//! Input: `proof \n method \n uri \n token` (missing lines are empty).
#![no_main]
use libfuzzer_sys::fuzz_target;
use trustgate::formats::crypto::Alg;
use trustgate::formats::dpop::{normalize_uri, Expect, UntrustedProof};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(4, '\n');
    let proof = lines.next().unwrap_or_default();
    let method = lines.next().unwrap_or_default();
    let uri = lines.next().unwrap_or_default();
    let token = lines.next();
    for u in [uri, proof] {
        if let Some(n) = normalize_uri(u) {
            assert_eq!(normalize_uri(&n).as_deref(), Some(n.as_str()), "normal form is not stable");
        }
    }
    let Ok(parsed) = UntrustedProof::parse(proof) else { return };
    let expect = Expect {
        method,
        uri,
        token,
        algorithms: &Alg::ALL,
        max_age_s: 300,
        skew_s: 60,
        now: 1_562_262_618,
    };
    if let Ok(v) = parsed.verify(&expect) {
        assert_eq!(v.jkt.len(), 43, "a thumbprint is a base64url SHA-256");
    }
});
