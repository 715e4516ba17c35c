//! RFC 9421 verification and the RFC 8941 parser under hostile requests.
//!
//! Properties: no panic anywhere; every structured field that parses re-serializes canonically (parse →
//! serialize → parse gives the same value); and a signature base the module computes, once HMAC-signed with the
//! key `verify` is given, never comes back as `BadSignature` (the base `verify` builds is the one
//! `signature_base` returns).
//!
//! Input: `METHOD\nPATH\nAUTHORITY\nname: value\n...` then, after an empty line, the body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trustgate::formats::crypto::VerifyKey;
use trustgate::formats::httpsig::{self, HttpSigError, Policy, Request, SigAlg, SigKey};
use trustgate::formats::sfv;

fn roundtrip(text: &str) {
    if let Ok(d) = sfv::parse_dictionary(text) {
        let s = sfv::serialize_dictionary(&d);
        assert_eq!(
            sfv::parse_dictionary(&s).as_ref(),
            Ok(&d),
            "dictionary {s:?}"
        );
    }
    if let Ok(l) = sfv::parse_list(text) {
        let s = sfv::serialize_list(&l);
        assert_eq!(sfv::parse_list(&s).as_ref(), Ok(&l), "list {s:?}");
    }
    if let Ok(i) = sfv::parse_item(text) {
        let s = sfv::serialize_item(&i);
        assert_eq!(sfv::parse_item(&s).as_ref(), Ok(&i), "item {s:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.split('\n');
    let method = lines.next().unwrap_or("GET");
    let path = lines.next().unwrap_or("/");
    let authority = lines.next().unwrap_or("example.com");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    for (_, v) in &headers {
        roundtrip(v);
    }
    roundtrip(text);

    let key = SigKey::new(
        SigAlg::HmacSha256,
        VerifyKey::secret(b"fuzz-secret".to_vec()).unwrap(),
    )
    .unwrap();
    let keys = |_: &str| Some(&key);
    let required = [
        "@method".to_owned(),
        "\"@query-param\";name=\"a\"".to_owned(),
    ];
    let policies = [
        Policy {
            required: &[],
            max_age_s: 0,
            tag: None,
            now: 1_700_000_000,
        },
        Policy {
            required: &required,
            max_age_s: 300,
            tag: Some("t"),
            now: 1_700_000_000,
        },
    ];
    for (scheme, body) in [("https", Some(body.as_bytes())), ("http", None)] {
        let req = Request {
            method,
            scheme,
            authority,
            path,
            headers: &trustgate::request::borrowed(&headers),
            body,
        };
        for p in &policies {
            let _ = httpsig::verify(&req, &keys, p);
        }
        let _ = httpsig::signature_base(&req, "sig1");
    }

    // Sign the first label's base and check that verify agrees with signature_base.
    let Some(input) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("signature-input"))
        .map(|(_, v)| v.clone())
    else {
        return;
    };
    let Some(label) = sfv::parse_dictionary(&input)
        .ok()
        .and_then(|d| d.first().map(|(k, _)| k.clone()))
    else {
        return;
    };
    let req = Request {
        method,
        scheme: "https",
        authority,
        path,
        headers: &trustgate::request::borrowed(&headers),
        body: Some(body.as_bytes()),
    };
    let Ok(base) = httpsig::signature_base(&req, &label) else {
        return;
    };
    let mac = trustgate::formats::crypto::hmac_sha256(b"fuzz-secret", base.as_bytes());
    let mut signed = headers.clone();
    signed.retain(|(n, _)| !n.eq_ignore_ascii_case("signature"));
    signed.push((
        "Signature".to_owned(),
        format!(
            "{label}={}",
            sfv::serialize_item(&sfv::Item {
                bare: sfv::BareItem::ByteSeq(mac.to_vec()),
                params: vec![]
            })
        ),
    ));
    let req = Request {
        headers: &trustgate::request::borrowed(&signed),
        ..req
    };
    if httpsig::signature_base(&req, &label).as_deref() != Ok(base.as_str()) {
        return; // the signature field itself is covered
    }
    let got = httpsig::verify(&req, &keys, &policies[0]);
    assert_ne!(got, Err(HttpSigError::BadSignature), "base {base:?}");
});
