//! C2SP Wycheproof vectors (`../shared/vectors/wycheproof/`) through [`trustgate::formats::crypto::verify`], the one
//! function the filter calls for every JWS signature and MAC.
//!
//! Every `valid` case must be accepted and every `invalid` case rejected. `acceptable` cases are run twice (the
//! answer must be deterministic) and must be listed, with their flags and our answer, in `docs/vectors.md`.
//! A group whose key our constructors refuse counts all its cases as rejected; such a group must hold no
//! `valid` case. HMAC groups with a truncated `tagSize` are refused by design (a JWS carries the full MAC),
//! so every case in them, `valid` ones included, must be rejected.
//!
//! Each group's key is also decoded from its PEM and JWK forms, which must load and give the same answer as
//! the raw-number constructors (on every valid and acceptable case, and on every fourth invalid one).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{hex, read_vector, vectors_dir};
use serde_json::Value;
use trustgate::formats::crypto::{verify, Alg, VerifyKey};
use trustgate::formats::jwk::Jwk;

/// How the cases of one file are checked.
#[derive(Clone, Copy)]
enum Kind {
    /// ECDSA with the IEEE P1363 `r || s` signature JWS uses.
    Ecdsa(Alg),
    /// Ed25519.
    EdDsa,
    /// RSA, PKCS#1 v1.5 (RS256) or PSS (PS256).
    Rsa(Alg),
    /// HMAC; the `usize` is the full tag size in bits.
    Hmac(Alg, usize),
}

#[derive(Default, Debug)]
struct Counts {
    valid: usize,
    invalid: usize,
    acceptable: usize,
    /// Cases in groups whose key our constructors refused (counted as rejected, also in the three above).
    refused_key_cases: usize,
    /// Cases in HMAC groups with a truncated tag (all rejected by design, also counted in the three above).
    truncated_tag_cases: usize,
    /// Of those, the ones Wycheproof marks `valid`.
    truncated_tag_valid: usize,
}

/// What we answered for one `acceptable` case.
struct AcceptableCase {
    file: &'static str,
    tc_id: u64,
    flags: String,
    accepted: bool,
}

fn str_field<'a>(v: &'a Value, name: &str) -> &'a str {
    v.get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("missing string field {name:?} in {v}"))
}

/// The group's key from its raw numbers, as the constructors see them.
fn group_key(kind: Kind, group: &Value) -> Result<VerifyKey, String> {
    let pk = &group["publicKey"];
    match kind {
        Kind::Ecdsa(alg) => {
            let point = hex(str_field(pk, "uncompressed"));
            assert_eq!(
                point.first(),
                Some(&4),
                "uncompressed point must start with 04"
            );
            let coords = &point[1..];
            let (x, y) = coords.split_at(coords.len() / 2);
            match alg {
                Alg::ES256 => VerifyKey::p256(x, y),
                Alg::ES384 => VerifyKey::p384(x, y),
                other => panic!("not an ECDSA alg: {other}"),
            }
        }
        Kind::EdDsa => VerifyKey::ed25519(&hex(str_field(pk, "pk"))),
        Kind::Rsa(_) => VerifyKey::rsa(
            &hex(str_field(pk, "modulus")),
            &hex(str_field(pk, "publicExponent")),
        ),
        Kind::Hmac(..) => unreachable!("HMAC keys are per case"),
    }
    .map_err(|e| e.to_string())
}

/// The same key decoded from the group's PEM and JWK forms (whichever the file carries).
fn alternate_keys(group: &Value) -> Vec<(&'static str, Result<VerifyKey, String>)> {
    let mut out = Vec::new();
    if let Some(pem) = group.get("publicKeyPem").and_then(Value::as_str) {
        let key = VerifyKey::from_pem(pem)
            .map_err(|e| e.to_string())
            .and_then(|mut keys| match keys.len() {
                1 => Ok(keys.remove(0)),
                n => Err(format!("{n} keys in one PEM")),
            });
        out.push(("PEM", key));
    }
    let jwk = group.get("publicKeyJwk").or_else(|| group.get("keyJwk"));
    if let Some(jwk) = jwk {
        out.push((
            "JWK",
            Jwk::from_value(jwk)
                .map(|k| k.key)
                .map_err(|e| e.to_string()),
        ));
    }
    out
}

fn run_file(file: &'static str, kind: Kind) -> (Counts, Vec<AcceptableCase>) {
    let doc: Value = serde_json::from_str(&read_vector(&format!("wycheproof/{file}")))
        .unwrap_or_else(|e| panic!("{file}: not JSON: {e}"));
    let groups = doc["testGroups"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no testGroups array"));
    let declared = doc["numberOfTests"].as_u64().unwrap_or(0) as usize;

    let mut counts = Counts::default();
    let mut acceptable = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut seen = 0usize;

    for (gi, group) in groups.iter().enumerate() {
        let tests = group["tests"]
            .as_array()
            .unwrap_or_else(|| panic!("{file} group {gi}: no tests array"));
        let (alg, key, truncated) = match kind {
            Kind::Hmac(alg, full_bits) => {
                let tag_bits = group["tagSize"].as_u64().unwrap_or(0) as usize;
                (alg, None, tag_bits < full_bits)
            }
            Kind::Ecdsa(alg) | Kind::Rsa(alg) => (alg, Some(group_key(kind, group)), false),
            Kind::EdDsa => (Alg::EdDSA, Some(group_key(kind, group)), false),
        };
        let alternates = match &key {
            Some(Ok(_)) => alternate_keys(group),
            _ => Vec::new(),
        };
        for (what, alt) in &alternates {
            if let Err(e) = alt {
                failures.push(format!(
                    "{file} group {gi}: the constructors take the key but its {what} form is refused: {e}"
                ));
            }
        }

        for (ci, case) in tests.iter().enumerate() {
            seen += 1;
            let tc_id = case["tcId"].as_u64().unwrap_or(0);
            let result = str_field(case, "result");
            let flags = case["flags"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let comment = case["comment"].as_str().unwrap_or("");
            let msg = hex(str_field(case, "msg"));

            let answer = |k: &VerifyKey, sig: &[u8]| verify(alg, k, &msg, sig);
            let (accepted, again) = match (&key, kind) {
                (None, Kind::Hmac(..)) => {
                    let tag = hex(str_field(case, "tag"));
                    match VerifyKey::secret(hex(str_field(case, "key"))) {
                        Ok(k) => (answer(&k, &tag), answer(&k, &tag)),
                        Err(e) => {
                            failures.push(format!(
                                "{file} tcId {tc_id}: HMAC key refused: {e} (Wycheproof keys are never empty)"
                            ));
                            (false, false)
                        }
                    }
                }
                (Some(Ok(k)), _) => {
                    let sig = hex(str_field(case, "sig"));
                    let a = answer(k, &sig);
                    // The alternate forms are checked on every valid and acceptable case and on every fourth
                    // invalid one (debug-mode RSA costs ~10 ms a verification).
                    let cross_check = result != "invalid" || ci % 4 == 0;
                    for (what, alt) in alternates.iter().filter(|_| cross_check) {
                        if let Ok(alt) = alt {
                            if answer(alt, &sig) != a {
                                failures.push(format!(
                                    "{file} tcId {tc_id}: the {what} form of the key answers {} but the \
                                     constructor's answers {a}",
                                    !a
                                ));
                            }
                        }
                    }
                    let b = if result == "acceptable" {
                        answer(k, &sig)
                    } else {
                        a
                    };
                    (a, b)
                }
                (Some(Err(_)), _) => {
                    counts.refused_key_cases += 1;
                    (false, false)
                }
                (None, _) => unreachable!(),
            };

            if truncated {
                counts.truncated_tag_cases += 1;
                if result == "valid" {
                    counts.truncated_tag_valid += 1;
                }
            }

            let label = format!("{file} tcId {tc_id} ({result}, flags [{flags}], {comment:?})");
            match result {
                "valid" => {
                    counts.valid += 1;
                    if let Some(Err(e)) = &key {
                        failures.push(format!(
                            "{label}: a valid case in a group whose key we refuse: {e}"
                        ));
                    } else if truncated {
                        if accepted {
                            failures.push(format!(
                                "{label}: a truncated tag was accepted; JWS needs the full MAC"
                            ));
                        }
                    } else if !accepted {
                        failures.push(format!("{label}: valid signature rejected"));
                    }
                }
                "invalid" => {
                    counts.invalid += 1;
                    if accepted {
                        failures.push(format!("{label}: invalid signature ACCEPTED"));
                    }
                }
                "acceptable" => {
                    counts.acceptable += 1;
                    if accepted != again {
                        failures.push(format!("{label}: answer not deterministic"));
                    }
                    if truncated && accepted {
                        failures.push(format!("{label}: a truncated tag was accepted"));
                    }
                    acceptable.push(AcceptableCase {
                        file,
                        tc_id,
                        flags: flags.clone(),
                        accepted,
                    });
                }
                other => failures.push(format!("{label}: unknown result {other:?}")),
            }
        }
    }

    eprintln!(
        "wycheproof/{file}: {} cases checked: {} valid, {} invalid, {} acceptable; \
         {} in groups with a refused key; {} in truncated-tag groups ({} of them marked valid, all rejected)",
        seen,
        counts.valid,
        counts.invalid,
        counts.acceptable,
        counts.refused_key_cases,
        counts.truncated_tag_cases,
        counts.truncated_tag_valid,
    );
    for a in &acceptable {
        eprintln!(
            "  acceptable: tcId {} flags [{}] -> {}",
            a.tc_id,
            a.flags,
            if a.accepted { "accepted" } else { "rejected" }
        );
    }

    assert!(
        failures.is_empty(),
        "{file}: {} disagreement(s) with Wycheproof:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        seen, declared,
        "{file}: ran {seen} cases but the file declares numberOfTests = {declared}"
    );
    assert!(
        counts.valid > 0 && counts.invalid > 0,
        "{file}: vacuous run ({counts:?}); the vector parser is broken"
    );
    check_documented(&acceptable);
    (counts, acceptable)
}

/// Every `acceptable` case must have a row `| <file> | <tcId> | <flags> | <accepted|rejected> |` in
/// `docs/vectors.md`, so the documented choice cannot drift from what the code does.
fn check_documented(cases: &[AcceptableCase]) {
    if cases.is_empty() {
        return;
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/vectors.md");
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    for c in cases {
        let row = format!(
            "| {} | {} | {} | {} |",
            c.file,
            c.tc_id,
            c.flags,
            if c.accepted { "accepted" } else { "rejected" }
        );
        assert!(
            doc.contains(&row),
            "docs/vectors.md does not document the acceptable case {}:{}; expected the row\n{row}",
            c.file,
            c.tc_id
        );
    }
}

#[test]
fn vectors_directory_is_present() {
    let dir = vectors_dir().join("wycheproof");
    assert!(dir.is_dir(), "{} is missing", dir.display());
}

#[test]
fn ecdsa_secp256r1_sha256_p1363() {
    run_file(
        "ecdsa_secp256r1_sha256_p1363_test.json",
        Kind::Ecdsa(Alg::ES256),
    );
}

#[test]
fn ecdsa_secp384r1_sha384_p1363() {
    run_file(
        "ecdsa_secp384r1_sha384_p1363_test.json",
        Kind::Ecdsa(Alg::ES384),
    );
}

#[test]
fn ed25519() {
    run_file("ed25519_test.json", Kind::EdDsa);
}

/// The precomputed-table path of `Ed25519Key` (taken once a key has been used `TABLE_AFTER` times) answers
/// every Wycheproof Ed25519 case exactly as ed25519-dalek's `verify_strict` does, and as Wycheproof expects
/// of a strict verifier.
#[test]
fn ed25519_table_path_agrees_with_verify_strict() {
    use trustgate::formats::crypto::{Ed25519Key, TABLE_AFTER};
    let doc: Value = serde_json::from_str(&read_vector("wycheproof/ed25519_test.json")).unwrap();
    let mut checked = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let pk: [u8; 32] = hex(str_field(&group["publicKey"], "pk"))
            .try_into()
            .unwrap();
        let (Some(key), Ok(dalek)) = (
            Ed25519Key::from_bytes(&pk),
            ed25519_dalek::VerifyingKey::from_bytes(&pk),
        ) else {
            assert!(
                Ed25519Key::from_bytes(&pk).is_none()
                    && ed25519_dalek::VerifyingKey::from_bytes(&pk).is_err()
            );
            continue;
        };
        for _ in 0..TABLE_AFTER {
            assert!(!key.verify(b"warm-up", &[0u8; 64]));
        }
        assert!(
            key.has_table(),
            "the key was used {TABLE_AFTER} times: it has its table"
        );
        for case in group["tests"].as_array().unwrap() {
            let msg = hex(str_field(case, "msg"));
            let sig = hex(str_field(case, "sig"));
            let strict = <[u8; 64]>::try_from(sig.as_slice())
                .map(|b| {
                    dalek
                        .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&b))
                        .is_ok()
                })
                .unwrap_or(false);
            let tc = case["tcId"].as_u64().unwrap();
            assert_eq!(
                key.verify(&msg, &sig),
                strict,
                "tcId {tc}: table path vs verify_strict"
            );
            assert_eq!(
                strict,
                str_field(case, "result") == "valid",
                "tcId {tc}: verify_strict vs Wycheproof"
            );
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} Ed25519 cases");
}

#[test]
fn rsa_pkcs1_2048_sha256() {
    run_file("rsa_signature_2048_sha256_test.json", Kind::Rsa(Alg::RS256));
}

#[test]
fn rsa_pkcs1_3072_sha256() {
    run_file("rsa_signature_3072_sha256_test.json", Kind::Rsa(Alg::RS256));
}

#[test]
fn rsa_pss_2048_sha256_mgf1_32() {
    run_file(
        "rsa_pss_2048_sha256_mgf1_32_test.json",
        Kind::Rsa(Alg::PS256),
    );
}

#[test]
fn hmac_sha256() {
    let (c, _) = run_file("hmac_sha256_test.json", Kind::Hmac(Alg::HS256, 256));
    assert!(c.truncated_tag_cases > 0, "no truncated-tag group found");
}

#[test]
fn hmac_sha384() {
    let (c, _) = run_file("hmac_sha384_test.json", Kind::Hmac(Alg::HS384, 384));
    assert!(c.truncated_tag_cases > 0, "no truncated-tag group found");
}

#[test]
fn hmac_sha512() {
    let (c, _) = run_file("hmac_sha512_test.json", Kind::Hmac(Alg::HS512, 512));
    assert!(c.truncated_tag_cases > 0, "no truncated-tag group found");
}

/// `hmac_verify` (the MAC check other schemes call directly) agrees with `verify` on the full-tag groups and
/// refuses every truncated tag too.
#[test]
fn hmac_verify_agrees_with_verify() {
    use trustgate::formats::crypto::hmac_verify;
    let doc: Value =
        serde_json::from_str(&read_vector("wycheproof/hmac_sha256_test.json")).unwrap();
    let mut checked = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let full = group["tagSize"].as_u64() == Some(256);
        for case in group["tests"].as_array().unwrap() {
            let (key, msg, tag) = (
                hex(str_field(case, "key")),
                hex(str_field(case, "msg")),
                hex(str_field(case, "tag")),
            );
            let got = hmac_verify::<sha2::Sha256>(&key, &msg, &tag);
            let want = full && str_field(case, "result") == "valid";
            assert_eq!(got, want, "tcId {}", case["tcId"]);
            checked += 1;
        }
    }
    assert!(checked > 0);
}
