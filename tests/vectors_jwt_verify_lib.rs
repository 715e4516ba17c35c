//! google/jwt_verify_lib conformance constants (`../shared/vectors/jwt_verify_lib/*.txt`) through the filter's
//! own JWT path: [`UntrustedJwt::parse`] then [`JwtRules::verify`] with keys from [`parse_jwks_value`] or
//! [`VerifyKey::from_pem`].
//!
//! The files hold the test-data constants of jwt_verify_lib's gtests with `##` annotations (which gtests use
//! a constant, the union of the `Status::` values those gtests assert, which key verifies a token). A union
//! does not say which call asserted which status, so the verification scenarios are written out below, one
//! row per gtest call, each naming the gtest and the status it asserts (read from the gtest sources, which
//! Envoy carries as `test/common/jwt/*_test.cc`). Cross-checks keep the table honest:
//! - every status a row cites is one the annotation lists for that token (a row cannot invent a status);
//! - every status the annotation lists is covered by some row (a row cannot be forgotten);
//! - every token of a scenario file has at least one row;
//! - a row expecting success uses the key set the annotation says verifies the token;
//! - a row's expected [`JwtError`] is the one its status maps to, unless the row carries a `deviation`
//!   explaining why trustgate answers differently (then it must differ: a stale note fails).
//!
//! Status → outcome: `Ok` → verified; `JwtVerificationFail`, `JwtEd25519SignatureWrongLength` →
//! `BadSignature`; `JwksKidAlgMismatch` → `UnknownKid` (no key has the token's `kid`) or `AlgNotAllowed` (the
//! key's type or `alg` does not fit); `JwtExpired` → `Expired`; `JwtNotYetValid` → `NotYetValid`;
//! `JwtAudienceNotAllowed` → `WrongAudience`; `JwtHeaderNotImplementedAlg` → `AlgNotAllowed`; every other
//! `Jwt*Parse*` / `JwtHeader*` / `JwtSignature*` status → `Malformed`.
//!
//! `fuzzJwtSignature` (flip bits of the decoded signature, then truncate it) is reproduced on the re-encoded
//! token; bit flips are sampled for long signatures to keep debug-mode RSA affordable (see `flips`).
//!
//! The key-set corpus of `jwks_test.cc` and the token corpus of `jwt_test.cc` are run as well: every constant
//! refused where jwt_verify_lib refuses it, the good ones accepted (with the documented exceptions).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use trustgate::formats::crypto::{Alg, VerifyKey};
use trustgate::formats::jwk::{parse_jwks, parse_jwks_value, Jwk, JwksError};
use trustgate::formats::jwt::{JwtError, JwtRules, UntrustedJwt};

// ---------------------------------------------------------------------------------------------------------
// The vector file format
// ---------------------------------------------------------------------------------------------------------

/// The fourteen files, by the short name used below (`jwt_verify_lib__<short>.txt`).
const FILES: [&str; 14] = [
    "jwks_test_cc",
    "jwt_test_cc",
    "jwt_time_test_cc",
    "test_common_h",
    "verify_audiences_test_cc",
    "verify_jwk_ec_test_cc",
    "verify_jwk_hmac_test_cc",
    "verify_jwk_okp_test_cc",
    "verify_jwk_rsa_pss_test_cc",
    "verify_jwk_rsa_test_cc",
    "verify_pem_ec_test_cc",
    "verify_pem_okp_test_cc",
    "verify_pem_rsa_test_cc",
    "verify_x509_test_cc",
];

/// One `=== NAME (source line N)` constant with its `##` annotations and raw text.
#[derive(Debug, Clone)]
struct Block {
    file: &'static str,
    name: String,
    line: u32,
    notes: Vec<String>,
    body: String,
}

impl Block {
    fn note(&self, key: &str) -> Option<&str> {
        let prefix = format!("## {key}:");
        self.notes
            .iter()
            .find_map(|n| n.strip_prefix(&prefix).map(str::trim))
    }

    /// The `Status::` values the enclosing gtests assert (a union over those gtests).
    fn statuses(&self) -> BTreeSet<String> {
        self.note("Status values asserted in those tests")
            .map(|s| s.split(',').map(|x| x.trim().to_owned()).collect())
            .unwrap_or_default()
    }

    fn is_token(&self) -> bool {
        self.note("decoded").is_some()
    }

    /// Constant names from `## signature verifies with: NAME[kid=..], ...` (empty for `NONE of the keys`).
    fn verified_by(&self) -> BTreeSet<String> {
        let Some(v) = self.note("signature verifies with") else {
            return BTreeSet::new();
        };
        if v.starts_with("NONE") {
            return BTreeSet::new();
        }
        v.split(", ")
            .map(|k| k.split('[').next().unwrap_or(k).to_owned())
            .collect()
    }

    fn id(&self) -> String {
        format!("{}:{} {}", self.file, self.line, self.name)
    }
}

fn parse_file(file: &'static str) -> Vec<Block> {
    let text = common::read_vector(&format!("jwt_verify_lib/jwt_verify_lib__{file}.txt"));
    let mut out: Vec<Block> = Vec::new();
    let mut cur: Option<Block> = None;
    let mut body: Vec<&str> = Vec::new();
    let finish = |cur: &mut Option<Block>, body: &mut Vec<&str>, out: &mut Vec<Block>| {
        if let Some(mut b) = cur.take() {
            b.body = body.join("\n").trim().to_owned();
            out.push(b);
        }
        body.clear();
    };
    for line in text.lines() {
        if let Some(head) = line.strip_prefix("=== ") {
            finish(&mut cur, &mut body, &mut out);
            // "=== TEST-ONLY PRIVATE KEYS ..." has no source line: it is not a constant, skip it.
            cur = head.split_once(" (source line ").map(|(name, rest)| Block {
                file,
                name: name.to_owned(),
                line: rest
                    .trim_end_matches(')')
                    .parse()
                    .unwrap_or_else(|_| panic!("{file}: bad header {line:?}")),
                notes: Vec::new(),
                body: String::new(),
            });
        } else if let Some(b) = cur.as_mut() {
            if line.starts_with("##") {
                b.notes.push(line.to_owned());
            } else {
                body.push(line);
            }
        }
    }
    finish(&mut cur, &mut body, &mut out);
    assert!(!out.is_empty(), "{file}: no constants parsed");
    out
}

struct Corpus {
    blocks: Vec<Block>,
}

impl Corpus {
    fn load() -> Corpus {
        let dir = common::vectors_dir().join("jwt_verify_lib");
        assert!(dir.is_dir(), "{} is missing", dir.display());
        let blocks: Vec<Block> = FILES.into_iter().flat_map(parse_file).collect();
        Corpus { blocks }
    }

    fn in_file(&self, file: &str) -> impl Iterator<Item = &Block> + '_ {
        let file = file.to_owned();
        self.blocks.iter().filter(move |b| b.file == file)
    }

    /// The constant `name` of `file`; it must be unique there.
    fn get(&self, file: &str, name: &str) -> &Block {
        let found: Vec<&Block> = self.in_file(file).filter(|b| b.name == name).collect();
        match found.as_slice() {
            [b] => b,
            [] => panic!("{file}: no constant {name:?}"),
            _ => panic!("{file}: {name:?} is ambiguous, use the source line"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Keys, rules, outcomes
// ---------------------------------------------------------------------------------------------------------

/// What `verifyJwt(jwt, jwks)` saw as "now": the date of the source snapshot (2023-05-17).
const WALL: i64 = 1_684_281_600;
/// `verifyJwt(jwt, jwks, 1)`.
const ONE: i64 = 1;

/// Where a row's keys come from.
#[derive(Clone, Copy, Debug)]
enum Keys {
    /// A JWKS or PEM constant as written.
    Set(&'static str, &'static str),
    /// The same JWKS with every `alg` member removed (gtests `PubkeyNoAlgOK`, `OkPublicKeyNotAlg`, ...).
    NoAlg(&'static str, &'static str),
    /// The same JWKS with every `kid` member removed (gtests `PubkeyNoKidOK`, `OkPublicKeyNotKid`, ...).
    NoKid(&'static str, &'static str),
    /// A PEM key given an `alg` that does not fit it, as the gtests do with `jwks->keys()[0]->alg_ = ...`.
    Pinned(&'static str, &'static str, Alg),
    /// An empty key set.
    Empty,
    /// Key material trustgate does not read (x509 certificates, a P-521 PEM key): loading must fail; the row
    /// then runs with no keys.
    Refused(&'static str, &'static str),
}

impl Keys {
    fn constant(self) -> Option<(&'static str, &'static str)> {
        match self {
            Keys::Set(f, n) | Keys::NoAlg(f, n) | Keys::NoKid(f, n) | Keys::Pinned(f, n, _) => {
                Some((f, n))
            }
            Keys::Refused(f, n) => Some((f, n)),
            Keys::Empty => None,
        }
    }
}

/// Removes JSON trailing commas (`, ]`, `, }`) outside strings.
fn strip_trailing_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let (mut in_str, mut escaped) = (false, false);
    for (i, &c) in chars.iter().enumerate() {
        if in_str {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        if c == '"' {
            in_str = true;
        }
        if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some(']') | Some('}')) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// A JWKS constant as a JSON value. Constants annotated as not strict RFC 8259 JSON (trailing commas, which
/// jwt_verify_lib's protobuf parser tolerates) must be refused as written; their keys are then read from the
/// text with the trailing commas removed.
fn jwks_json(block: &Block) -> Value {
    if block
        .note("NOTE")
        .is_some_and(|n| n.starts_with("not strict RFC 8259 JSON"))
    {
        assert_eq!(
            parse_jwks(&block.body).err(),
            Some(JwksError::Json),
            "{}: not strict JSON, must be refused as written",
            block.id()
        );
        return serde_json::from_str(&strip_trailing_commas(&block.body))
            .unwrap_or_else(|e| panic!("{}: still not JSON: {e}", block.id()));
    }
    serde_json::from_str(&block.body)
        .unwrap_or_else(|e| panic!("{}: key set is not JSON: {e}", block.id()))
}

fn without_member(mut doc: Value, member: &str) -> Value {
    for key in doc["keys"].as_array_mut().unwrap() {
        key.as_object_mut().unwrap().remove(member);
    }
    doc
}

fn pem_keys(block: &Block) -> Result<Vec<Jwk>, String> {
    VerifyKey::from_pem(&block.body)
        .map(|keys| {
            keys.into_iter()
                .map(|key| Jwk {
                    kid: None,
                    alg: None,
                    key,
                })
                .collect()
        })
        .map_err(|e| e.to_string())
}

fn load_keys(corpus: &Corpus, keys: Keys) -> Vec<Jwk> {
    let jwks = |doc: Value, id: String| -> Vec<Jwk> {
        parse_jwks_value(&doc)
            .unwrap_or_else(|e| panic!("{id}: JWKS refused: {e}"))
            .keys
    };
    match keys {
        Keys::Empty => Vec::new(),
        Keys::Set(f, n) => {
            let b = corpus.get(f, n);
            if b.body.starts_with("-----BEGIN") {
                pem_keys(b).unwrap_or_else(|e| panic!("{}: PEM refused: {e}", b.id()))
            } else {
                jwks(jwks_json(b), b.id())
            }
        }
        Keys::NoAlg(f, n) => {
            let b = corpus.get(f, n);
            jwks(without_member(jwks_json(b), "alg"), b.id())
        }
        Keys::NoKid(f, n) => {
            let b = corpus.get(f, n);
            jwks(without_member(jwks_json(b), "kid"), b.id())
        }
        Keys::Pinned(f, n, alg) => {
            let b = corpus.get(f, n);
            let mut keys = pem_keys(b).unwrap_or_else(|e| panic!("{}: PEM refused: {e}", b.id()));
            for k in &mut keys {
                assert!(!alg.fits(&k.key), "pin {alg} must not fit {}", k.key.kind());
                k.alg = Some(alg);
            }
            keys
        }
        Keys::Refused(f, n) => {
            let b = corpus.get(f, n);
            if b.body.starts_with("-----BEGIN") {
                let e = pem_keys(b).expect_err("this PEM key must be refused");
                assert!(
                    e.contains("not an RSA, P-256, P-384 or Ed25519 key"),
                    "{}: {e}",
                    b.id()
                );
            } else {
                assert_x509_refused(b);
            }
            Vec::new()
        }
    }
}

/// An x509 key map (`{"kid": "-----BEGIN CERTIFICATE-----..."}`) is no JWK Set, and no certificate is a
/// public key the PEM reader takes.
fn assert_x509_refused(block: &Block) {
    assert_eq!(
        parse_jwks(&block.body).err(),
        Some(JwksError::NoKeysArray),
        "{}: an x509 key map must not load as a JWKS",
        block.id()
    );
    let map: BTreeMap<String, String> = serde_json::from_str(&block.body)
        .unwrap_or_else(|e| panic!("{}: not a kid → certificate map: {e}", block.id()));
    assert!(!map.is_empty());
    for (kid, cert) in map {
        let e = VerifyKey::from_pem(&cert)
            .err()
            .unwrap_or_else(|| panic!("{}: certificate {kid} was taken as a key", block.id()));
        assert!(
            e.to_string().contains("CERTIFICATE"),
            "{}: {kid}: {e}",
            block.id()
        );
    }
}

/// The rules under which a scenario runs: nothing masks the check under test.
fn rules(audiences: &[&str], skew: i64) -> JwtRules {
    JwtRules {
        issuer: None,
        audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
        algorithms: Alg::ALL.to_vec(),
        require_exp: false,
        clock_skew_s: skew,
        max_lifetime_s: None,
        typ: None,
    }
}

/// Parse and verify, as the filter does.
fn outcome(token: &str, keys: &[Jwk], rules: &JwtRules, now: i64) -> Result<(), JwtError> {
    let t = UntrustedJwt::parse(token)?;
    rules.verify(&t, keys, now).map(|_| ())
}

/// The outcomes a jwt_verify_lib status maps to in trustgate.
fn mapped(status: &str) -> Vec<Result<(), JwtError>> {
    use JwtError::*;
    match status {
        "Ok" => vec![Ok(())],
        "JwtVerificationFail" | "JwtEd25519SignatureWrongLength" => vec![Err(BadSignature)],
        "JwksKidAlgMismatch" => vec![Err(UnknownKid), Err(AlgNotAllowed)],
        "JwtExpired" => vec![Err(Expired)],
        "JwtNotYetValid" => vec![Err(NotYetValid)],
        "JwtAudienceNotAllowed" => vec![Err(WrongAudience)],
        "JwtHeaderNotImplementedAlg" => vec![Err(AlgNotAllowed)],
        s if s.starts_with("JwtHeader")
            || s.starts_with("JwtPayloadParseError")
            || s.starts_with("JwtSignatureParseError")
            || s == "JwtBadFormat" =>
        {
            vec![Err(Malformed)]
        }
        other => panic!("no mapping for status {other:?}"),
    }
}

const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The token with its signature re-encoded as canonical unpadded base64url (same bytes).
fn canonical_signature(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(LENIENT_B64.decode(sig).unwrap())
    )
}

/// Bit positions `(byte, bit)` flipped by the fuzz. jwt_verify_lib flips every bit; that is 2048 debug-mode
/// RSA verifications per token, so long signatures are sampled: every bit of HMAC tags, one bit per byte
/// (rotating) up to 96 bytes (Ed25519, ECDSA), 48 evenly spread bytes for RSA, always including both ends.
fn flips(alg: Option<Alg>, len: usize) -> Vec<(usize, u8)> {
    if alg.is_some_and(Alg::is_hmac) {
        return (0..len)
            .flat_map(|b| (0..8).map(move |bit| (b, bit)))
            .collect();
    }
    let bytes: Vec<usize> = if len <= 96 {
        (0..len).collect()
    } else {
        let mut v: Vec<usize> = (0..48).map(|i| i * (len - 1) / 47).collect();
        v.dedup();
        v
    };
    let mut out: Vec<(usize, u8)> = bytes.iter().map(|&b| (b, (b % 8) as u8)).collect();
    // Top and bottom bits of the first and last bytes (range checks on r, s, S and the RSA representative).
    for b in [0, len - 1] {
        for bit in [0, 7] {
            if !out.contains(&(b, bit)) {
                out.push((b, bit));
            }
        }
    }
    out
}

/// `fuzzJwtSignature`: each flipped signature, then each proper prefix of it, must give `want`. Mutants are
/// built from the decoded signature and re-encoded canonically, as jwt_verify_lib mutates the decoded bytes.
fn fuzz(
    token: &str,
    keys: &[Jwk],
    rules: &JwtRules,
    now: i64,
    want: JwtError,
    mutants: &mut usize,
) -> Vec<String> {
    let (input, sig_b64) = token.rsplit_once('.').unwrap();
    let sig = LENIENT_B64.decode(sig_b64).unwrap();
    let header: Value = serde_json::from_slice(
        &LENIENT_B64
            .decode(input.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let alg = header["alg"].as_str().and_then(Alg::from_name);
    let mut failures = Vec::new();
    let mut run = |what: String, s: &[u8]| {
        *mutants += 1;
        let t = format!("{input}.{}", URL_SAFE_NO_PAD.encode(s));
        let got = outcome(&t, keys, rules, now);
        if got != Err(want) {
            failures.push(format!("{what}: got {got:?}, want Err({want:?})"));
        }
    };
    for (byte, bit) in flips(alg, sig.len()) {
        let mut s = sig.clone();
        s[byte] ^= 1 << bit;
        run(format!("bit {bit} of byte {byte} flipped"), &s);
    }
    for len in 1..sig.len() {
        run(format!("truncated to {len} bytes"), &sig[..len]);
    }
    failures
}

// ---------------------------------------------------------------------------------------------------------
// Verification scenarios, one row per gtest call
// ---------------------------------------------------------------------------------------------------------

struct Row {
    /// `Fixture.Test` as in the gtest source, or "(unreferenced)" for a constant no gtest uses.
    gtest: &'static str,
    file: &'static str,
    token: &'static str,
    keys: Keys,
    now: i64,
    audiences: &'static [&'static str],
    /// The `Status::` the gtest asserts for this call.
    status: &'static str,
    /// What trustgate answers.
    expect: Result<(), JwtError>,
    /// `fuzzJwtSignature` follows: the statuses it asserts and the error trustgate must give for each mutant.
    fuzz: Option<(&'static [&'static str], JwtError)>,
    /// Why trustgate's answer differs from the status's mapping (listed in docs/vectors.md).
    deviation: Option<&'static str>,
}

fn row(
    gtest: &'static str,
    file: &'static str,
    token: &'static str,
    keys: Keys,
    now: i64,
    status: &'static str,
    expect: Result<(), JwtError>,
) -> Row {
    Row {
        gtest,
        file,
        token,
        keys,
        now,
        audiences: &[],
        status,
        expect,
        fuzz: None,
        deviation: None,
    }
}

impl Row {
    fn fuzz(mut self, statuses: &'static [&'static str], want: JwtError) -> Row {
        self.fuzz = Some((statuses, want));
        self
    }
    fn audiences(mut self, a: &'static [&'static str]) -> Row {
        self.audiences = a;
        self
    }
    fn deviation(mut self, why: &'static str) -> Row {
        self.deviation = Some(why);
        self
    }
}

const VF: &[&str] = &["JwtVerificationFail"];
const VF_ED: &[&str] = &["JwtVerificationFail", "JwtEd25519SignatureWrongLength"];
const KAM: &[&str] = &["JwksKidAlgMismatch"];

const ES512: &str =
    "ES512 (P-521) is not supported: the algorithm is refused before any key is looked at";

#[rustfmt::skip]
fn rows() -> Vec<Row> {
    use JwtError::*;
    let ok = Ok(());
    let aud = "verify_audiences_test_cc";
    let ec = "verify_jwk_ec_test_cc";
    let hmac = "verify_jwk_hmac_test_cc";
    let okp = "verify_jwk_okp_test_cc";
    let pss = "verify_jwk_rsa_pss_test_cc";
    let rsa = "verify_jwk_rsa_test_cc";
    let pem_ec = "verify_pem_ec_test_cc";
    let pem_okp = "verify_pem_okp_test_cc";
    let pem_rsa = "verify_pem_rsa_test_cc";
    let x509 = "verify_x509_test_cc";
    let common = "test_common_h";

    let ec_keys = Keys::Set(ec, "PublicKeyJwkEC");
    let hmac_keys = Keys::Set(hmac, "SymmetricKeyHMAC");
    let okp_keys = Keys::Set(okp, "PublicKeyJwkOKP");
    let rsa_keys = Keys::Set(rsa, "PublicKeyRSA");
    let pss_keys = Keys::Set(pss, "PublicKeyRSAPSS");
    let jwtio_keys = Keys::Set(pss, "JwtIoPublicKeyRSAPSS");

    vec![
        // verify_audiences_test.cc
        row("VerifyAudTest.MissingAudience", aud, "JwtOneAudtext", Keys::Empty, WALL,
            "JwtAudienceNotAllowed", Err(WrongAudience)).audiences(&["aud2", "aud3"]),
        row("VerifyAudTest.Success", aud, "JwtOneAudtext", Keys::Set(aud, "PublicKeyRSA"), WALL, "Ok", ok)
            .audiences(&["aud1", "aud3"]),
        row("VerifyAudTest.Success", aud, "JwtOneAudtext", Keys::Set(aud, "PublicKeyRSA"), WALL, "Ok", ok),
        // verify_jwk_ec_test.cc
        row("VerifyJwkECTest.KidOK", ec, "JwtTextEC", ec_keys, WALL, "Ok", ok).fuzz(VF, BadSignature),
        row("VerifyJwkECTest.KidES384OK", ec, "JwtES384Text", ec_keys, WALL, "Ok", ok).fuzz(VF, BadSignature),
        row("VerifyJwkECTest.KidES512OK", ec, "JwtES512Text", ec_keys, WALL, "Ok", Err(AlgNotAllowed))
            .fuzz(VF, AlgNotAllowed)
            .deviation(ES512),
        row("VerifyJwkECTest.NoKidOK", ec, "JwtTextECNoKid", ec_keys, WALL, "Ok", ok).fuzz(VF, BadSignature),
        row("VerifyJwkECTest.NonExistKidFail", ec, "JwtTextWithNonExistKidEC", ec_keys, ONE,
            "JwksKidAlgMismatch", Err(UnknownKid)),
        row("VerifyJwkECTest.PubkeyNoAlgOK", ec, "JwtES256Text", Keys::NoAlg(ec, "PublicKeyJwkEC"), ONE, "Ok", ok),
        row("VerifyJwkECTest.PubkeyNoKidOK", ec, "JwtES256Text", Keys::NoKid(ec, "PublicKeyJwkEC"), ONE, "Ok", ok),
        // verify_jwk_hmac_test.cc
        row("VerifyJwkHmacTest.NoKidOK", hmac, "JwtTextNoKid", hmac_keys, ONE, "Ok", ok).fuzz(VF, BadSignature),
        row("VerifyJwkHmacTest.NoKidLongExpOK", hmac, "JwtTextNoKidLongExp", hmac_keys, WALL, "Ok", ok)
            .fuzz(VF, BadSignature),
        row("VerifyJwkHmacTest.CorrectKidHS256OK", hmac, "JwtHS256TextWithCorrectKid", hmac_keys, ONE, "Ok", ok)
            .fuzz(VF, BadSignature),
        row("VerifyJwkHmacTest.CorrectKidHS384OK", hmac, "JwtHS384TextWithCorrectKid", hmac_keys, ONE, "Ok", ok)
            .fuzz(VF, BadSignature),
        row("VerifyJwkHmacTest.CorrectKidHS512OK", hmac, "JwtHS512TextWithCorrectKid", hmac_keys, ONE, "Ok", ok)
            .fuzz(VF, BadSignature),
        row("VerifyJwkHmacTest.NonExistKidFail", hmac, "JwtTextWithNonExistKid", hmac_keys, ONE,
            "JwksKidAlgMismatch", Err(UnknownKid)),
        row("VerifyJwkHmacTest.OkSymmetricKeyNotAlg", hmac, "JwtTextNoKid", Keys::NoAlg(hmac, "SymmetricKeyHMAC"),
            ONE, "Ok", ok),
        row("VerifyJwkHmacTest.OkSymmetricKeyNotKid", hmac, "JwtTextNoKid", Keys::NoKid(hmac, "SymmetricKeyHMAC"),
            ONE, "Ok", ok),
        // Signed by the key with kid b3319a14..., but names kid 62a93512...: the named key alone is tried.
        row("(unreferenced)", hmac, "JwtTextWithIncorrectKid", hmac_keys, ONE, "JwtVerificationFail",
            Err(BadSignature)),
        // verify_jwk_okp_test.cc
        row("VerifyJwkOKPTest.KidOK", okp, "JwtJWKEd25519", okp_keys, WALL, "Ok", ok).fuzz(VF_ED, BadSignature),
        row("VerifyJwkOKPTest.NoKidOK", okp, "JwtJWKEd25519NoKid", okp_keys, WALL, "Ok", ok)
            .fuzz(VF_ED, BadSignature),
        row("VerifyJwkOKPTest.NonExistKidFail", okp, "JwtJWKEd25519NonExistKid", okp_keys, ONE,
            "JwksKidAlgMismatch", Err(UnknownKid)),
        row("VerifyJwkOKPTest.PubkeyNoAlgOK", okp, "JwtJWKEd25519", Keys::NoAlg(okp, "PublicKeyJwkOKP"), ONE,
            "Ok", ok),
        row("VerifyJwkOKPTest.PubkeyNoKidOK", okp, "JwtJWKEd25519", Keys::NoKid(okp, "PublicKeyJwkOKP"), ONE,
            "Ok", ok),
        row("VerifyJwkOKPTest.WrongSignatureFail", okp, "JwtJWKEd25519WrongSignature", okp_keys, WALL,
            "JwtVerificationFail", Err(BadSignature)),
        // verify_jwk_rsa_pss_test.cc
        row("VerifyJwkRsaPssTest.Ps256CorrectKidOK", pss, "Ps256JwtTextWithCorrectKid", pss_keys, ONE, "Ok", ok)
            .fuzz(VF, BadSignature),
        row("VerifyJwkRsaPssTest.Ps384CorrectKidOK", pss, "Ps384JwtTextWithCorrectKid", pss_keys, ONE, "Ok", ok)
            .fuzz(VF, BadSignature),
        row("VerifyJwkRsaPssTest.Ps512CorrectKidOK", pss, "Ps512JwtTextWithCorrectKid", pss_keys, ONE, "Ok", ok)
            .fuzz(VF, BadSignature),
        row("VerifyKidMatchingTest.JwtTextWithNoKidNoMatchingKey", pss, "JwtTextWithNoKid", pss_keys, WALL,
            "JwtVerificationFail", Err(BadSignature)),
        row("VerifyKidMatchingTest.JwtTextWithNoKidOk", pss, "JwtTextWithNoKid", jwtio_keys, ONE, "Ok", ok),
        row("VerifyKidMatchingTest.JwtTextWithNonExistentKid", pss, "JwtTextWithNonExistentKid", jwtio_keys, ONE,
            "JwksKidAlgMismatch", Err(UnknownKid)),
        // verify_jwk_rsa_test.cc
        row("VerifyJwkRsaTest.NoKidOK", rsa, "JwtTextNoKid", rsa_keys, ONE, "Ok", ok).fuzz(VF, BadSignature),
        row("VerifyJwkRsaTest.NoKidLongExpOK", rsa, "JwtTextNoKidLongExp", rsa_keys, WALL, "Ok", ok)
            .fuzz(VF, BadSignature),
        row("VerifyJwkRsaTest.CorrectKidOK", rsa, "JwtTextWithCorrectKid", rsa_keys, ONE, "Ok", ok)
            .fuzz(VF, BadSignature),
        row("VerifyJwkRsaTest.LongClaimsWithCorrectKidOk", rsa, "JwtTextWithLongClaimsCorrectKid", rsa_keys, ONE,
            "Ok", ok).fuzz(VF, BadSignature),
        row("VerifyJwkRsaTest.NonExistKidFail", rsa, "JwtTextWithNonExistKid", rsa_keys, ONE,
            "JwksKidAlgMismatch", Err(UnknownKid)),
        row("VerifyJwkRsaTest.OkPublicKeyNotAlg", rsa, "JwtTextNoKid", Keys::NoAlg(rsa, "PublicKeyRSA"), ONE,
            "Ok", ok),
        row("VerifyJwkRsaTest.OkPublicKeyNotKid", rsa, "JwtTextNoKid", Keys::NoKid(rsa, "PublicKeyRSA"), ONE,
            "Ok", ok),
        row("(unreferenced)", rsa, "JwtTextWithIncorrectKid", rsa_keys, ONE, "JwtVerificationFail",
            Err(BadSignature)),
        // verify_pem_ec_test.cc (`alg_`/`crv_` set by hand on the PEM key → trustgate: the key type decides)
        row("VerifyPKCSTestRs256.OKPem", pem_ec, "JwtPemEs256", Keys::Set(pem_ec, "es256pubkey"), ONE, "Ok", ok)
            .fuzz(VF, BadSignature),
        row("VerifyPKCSTestES384.OKPem", pem_ec, "JwtPemEs384", Keys::Set(pem_ec, "es384pubkey"), ONE, "Ok", ok)
            .fuzz(VF, BadSignature),
        row("VerifyPKCSTestES512.OKPem", pem_ec, "JwtPemEs512", Keys::Refused(pem_ec, "es512pubkey"), ONE, "Ok",
            Err(AlgNotAllowed))
            .fuzz(VF, AlgNotAllowed)
            .deviation(ES512),
        row("VerifyPKCSTestES384.ES384CurveUnspecifiedOK", pem_ec, "JwtPemEs384", Keys::Set(pem_ec, "es384pubkey"),
            ONE, "Ok", ok),
        row("VerifyPKCSTestRs256.jwksAlgUnspecifiedDoesNotMatchJwtFail", pem_ec, "JwtPemEs256",
            Keys::Set(pem_ec, "es384pubkey"), ONE, "JwtVerificationFail", Err(AlgNotAllowed))
            .fuzz(VF, AlgNotAllowed)
            .deviation("an ES256 token never reaches a P-384 key: refused as alg_not_allowed before any \
                        signature check, not as a failed signature"),
        row("VerifyPKCSTestRs256.jwksIncorrectAlgSpecifiedFail", pem_ec, "JwtPemEs256",
            Keys::Pinned(pem_ec, "es256pubkey", Alg::ES384), ONE, "JwksKidAlgMismatch", Err(AlgNotAllowed))
            .fuzz(KAM, AlgNotAllowed),
        // verify_pem_okp_test.cc
        row("VerifyPEMTestOKP.VerifyOK", pem_okp, "JwtPemEd25519", Keys::Set(pem_okp, "ed25519pubkey"), ONE, "Ok", ok)
            .fuzz(VF_ED, BadSignature),
        row("VerifyPEMTestOKP.jwksIncorrectAlgSpecifiedFail", pem_okp, "JwtPemEd25519",
            Keys::Pinned(pem_okp, "ed25519pubkey", Alg::RS256), ONE, "JwksKidAlgMismatch", Err(AlgNotAllowed)),
        row("VerifyPEMTestOKP.WrongSignatureFail", pem_okp, "JwtPemEd25519WrongSignature",
            Keys::Set(pem_okp, "ed25519pubkey"), ONE, "JwtVerificationFail", Err(BadSignature)),
        // verify_pem_rsa_test.cc
        row("VerifyPKCSTestRs256.OKPem", pem_rsa, "JwtPemRs256", Keys::Set(pem_rsa, "pubkey"), ONE, "Ok", ok)
            .fuzz(VF, BadSignature),
        row("VerifyPKCSTestRs384.OKPem", pem_rsa, "JwtPemRs384", Keys::Set(pem_rsa, "pubkey"), ONE, "Ok", ok)
            .fuzz(VF, BadSignature),
        row("VerifyPKCSTestRs512.OKPem", pem_rsa, "JwtPemRs512", Keys::Set(pem_rsa, "pubkey"), ONE, "Ok", ok)
            .fuzz(VF, BadSignature),
        // verify_x509_test.cc: keys given as x509 certificates, which trustgate does not read.
        row("VerifyX509Test.NoKidToken", x509, "kTokenNoKid", Keys::Refused(common, "kPublicKeyX509"), WALL,
            "Ok", Err(Malformed))
            // Mutants are re-encoded without padding: with no key loaded they fail as alg_not_allowed.
            .fuzz(VF, AlgNotAllowed)
            .deviation("x509 certificate key maps are not supported (refused at load); the token's signature \
                        also carries base64 padding (\"==\"), which RFC 7515 §2 excludes and the parser refuses"),
        row("VerifyX509Test.RealToken", x509, "kRealToken", Keys::Refused(common, "kRealX509Jwks"), ONE,
            "Ok", Err(UnknownKid))
            .fuzz(VF, UnknownKid)
            .deviation("x509 certificate key maps are not supported (refused at load), so no key has the \
                        token's kid"),
    ]
}

fn run_rows(corpus: &Corpus, file: &str) -> usize {
    let rows: Vec<Row> = rows().into_iter().filter(|r| r.file == file).collect();
    assert!(!rows.is_empty(), "no scenario rows for {file}");
    let mut failures = Vec::new();
    let mut mutants = 0;
    for r in &rows {
        let block = corpus.get(r.file, r.token);
        let label = format!("{} [{}]", block.id(), r.gtest);
        let keys = load_keys(corpus, r.keys);
        let rules = rules(r.audiences, 60);
        let got = outcome(&block.body, &keys, &rules, r.now);
        if got != r.expect {
            failures.push(format!(
                "{label}: jwt_verify_lib asserts {}, trustgate answered {got:?}, this row expects {:?}",
                r.status, r.expect
            ));
            continue;
        }
        if let Some((_, want)) = r.fuzz {
            for f in fuzz(&block.body, &keys, &rules, r.now, want, &mut mutants) {
                failures.push(format!("{label}: fuzzJwtSignature: {f}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{file}: {} disagreement(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "jwt_verify_lib/{file}: {} scenario rows and {mutants} fuzzed signatures pass",
        rows.len()
    );
    rows.len()
}

#[test]
fn scenario_table_matches_the_annotations() {
    let corpus = Corpus::load();
    let rows = rows();
    let mut problems = Vec::new();
    for r in &rows {
        let block = corpus.get(r.file, r.token);
        let statuses = block.statuses();
        let label = format!("{} [{}]", block.id(), r.gtest);
        assert!(block.is_token(), "{label}: not a token");
        if r.gtest == "(unreferenced)" {
            if !statuses.is_empty() {
                problems.push(format!(
                    "{label}: marked unreferenced but annotated {statuses:?}"
                ));
            }
        } else {
            let in_note = block
                .note("referenced by tests")
                .or_else(|| block.note("defined inside test"))
                .unwrap_or("");
            if !in_note.split(", ").any(|t| t == r.gtest) {
                problems.push(format!(
                    "{label}: the annotation does not name this gtest ({in_note})"
                ));
            }
            if !statuses.contains(r.status) {
                problems.push(format!(
                    "{label}: status {} is not among the annotated {statuses:?}",
                    r.status
                ));
            }
            if let Some((fs, _)) = r.fuzz {
                for s in fs {
                    if !statuses.contains(*s) {
                        problems.push(format!("{label}: fuzz status {s} not annotated"));
                    }
                }
            }
        }
        let fuzz_fits = r
            .fuzz
            .is_none_or(|(fs, want)| fs.iter().all(|s| mapped(s).contains(&Err(want))));
        if !fuzz_fits && r.deviation.is_none() {
            problems.push(format!(
                "{label}: fuzz outcome does not fit its statuses and has no deviation note"
            ));
        }
        let fits = mapped(r.status).contains(&r.expect);
        match (r.deviation, fits) {
            (None, false) => problems.push(format!(
                "{label}: expects {:?} but {} maps to {:?}; add a deviation note or fix the row",
                r.expect,
                r.status,
                mapped(r.status)
            )),
            (Some(_), true) => problems.push(format!(
                "{label}: stale deviation note, the outcome fits {}",
                r.status
            )),
            _ => {}
        }
        if r.expect.is_ok() {
            let by = block.verified_by();
            let (_, name) = r.keys.constant().unwrap_or(("", ""));
            if !by.contains(name) {
                problems.push(format!(
                    "{label}: expects success with {name} but the annotation says {by:?}"
                ));
            }
        }
    }
    // Every token of the scenario files has a row, and every annotated status is covered by one.
    for block in corpus
        .blocks
        .iter()
        .filter(|b| b.is_token() && !matches!(b.file, "jwt_test_cc" | "jwt_time_test_cc"))
    {
        let mine: Vec<&Row> = rows
            .iter()
            .filter(|r| r.file == block.file && r.token == block.name)
            .collect();
        if mine.is_empty() {
            problems.push(format!("{}: token without a scenario row", block.id()));
            continue;
        }
        // Every row parses the token first, which is what the gtests' `parseFromString(...) == Ok` checks.
        let mut covered: BTreeSet<String> = ["Ok".to_owned()].into();
        for r in &mine {
            covered.insert(r.status.to_owned());
            if let Some((fs, _)) = r.fuzz {
                covered.extend(fs.iter().map(|s| (*s).to_owned()));
            }
        }
        for s in block.statuses().difference(&covered) {
            problems.push(format!(
                "{}: annotated status {s} not covered by any row",
                block.id()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "scenario table:\n{}",
        problems.join("\n")
    );
    let deviations = rows.iter().filter(|r| r.deviation.is_some()).count();
    eprintln!(
        "scenario table: {} rows over {} tokens, {} documented deviations",
        rows.len(),
        rows.iter()
            .map(|r| (r.file, r.token))
            .collect::<BTreeSet<_>>()
            .len(),
        deviations
    );
    for r in rows.iter().filter(|r| r.deviation.is_some()) {
        eprintln!(
            "  deviation: {} {} [{}]: {} → {:?}: {}",
            r.file,
            r.token,
            r.gtest,
            r.status,
            r.expect,
            r.deviation.unwrap_or("")
        );
    }
}

#[test]
fn verify_audiences() {
    run_rows(&Corpus::load(), "verify_audiences_test_cc");
}

#[test]
fn verify_jwk_ec() {
    run_rows(&Corpus::load(), "verify_jwk_ec_test_cc");
}

#[test]
fn verify_jwk_hmac() {
    run_rows(&Corpus::load(), "verify_jwk_hmac_test_cc");
}

#[test]
fn verify_jwk_okp() {
    run_rows(&Corpus::load(), "verify_jwk_okp_test_cc");
}

#[test]
fn verify_jwk_rsa_pss() {
    run_rows(&Corpus::load(), "verify_jwk_rsa_pss_test_cc");
}

#[test]
fn verify_jwk_rsa() {
    run_rows(&Corpus::load(), "verify_jwk_rsa_test_cc");
}

#[test]
fn verify_pem_ec() {
    run_rows(&Corpus::load(), "verify_pem_ec_test_cc");
}

#[test]
fn verify_pem_okp() {
    run_rows(&Corpus::load(), "verify_pem_okp_test_cc");
}

#[test]
fn verify_pem_rsa() {
    run_rows(&Corpus::load(), "verify_pem_rsa_test_cc");
}

#[test]
fn verify_x509() {
    run_rows(&Corpus::load(), "verify_x509_test_cc");
    // kTokenNoKid is refused for its padded signature alone: without the padding it parses.
    let corpus = Corpus::load();
    let token = &corpus.get("verify_x509_test_cc", "kTokenNoKid").body;
    assert!(token.ends_with("=="));
    assert!(UntrustedJwt::parse(&canonical_signature(token)).is_ok());
}

// ---------------------------------------------------------------------------------------------------------
// jwt_time_test.cc: the clock around exp and nbf
// ---------------------------------------------------------------------------------------------------------

/// `(gtest, token, now, skew, outcome)`.
type ClockCase<'a> = (&'static str, &'a str, i64, i64, Result<(), JwtError>);

/// `Jwt::verifyTimeConstraint(now, skew)` at the gtests' clock points. trustgate checks time before the
/// signature, so "time ok" shows as `BadSignature` (the constant's signature is a stub) with an RS256 key
/// present, and the time failures as `Expired` / `NotYetValid`.
#[test]
fn jwt_time() {
    const EXP: i64 = 1_605_052_800;
    const NBF: i64 = 1_605_050_800;
    let corpus = Corpus::load();
    let block = corpus.get("jwt_time_test_cc", "JwtText");
    assert_eq!(
        block.statuses(),
        ["JwtExpired", "JwtNotYetValid", "Ok"]
            .map(str::to_owned)
            .into()
    );
    // As written, the constant's signature (a stub) ends in non-canonical base64url trailing bits, which the
    // parser refuses (jwt_verify_lib's decoder ignores them). The clock checks run on the same bytes,
    // canonically encoded.
    assert_eq!(
        UntrustedJwt::parse(&block.body).err(),
        Some(JwtError::Malformed)
    );
    let token = canonical_signature(&block.body);
    let keys = load_keys(
        &corpus,
        Keys::Set("verify_audiences_test_cc", "PublicKeyRSA"),
    );

    // The payload with claims removed, as OnlyExp / OnlyNbf / NotTimeConstraint reset `nbf_` / `exp_`.
    let without = |claims: &[&str]| -> String {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        for c in claims {
            payload.as_object_mut().unwrap().remove(*c);
        }
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
        parts.join(".")
    };
    let only_exp = without(&["nbf"]);
    let only_nbf = without(&["exp"]);
    let neither = without(&["exp", "nbf"]);

    use JwtError::*;
    let time_ok = Err(BadSignature);
    #[rustfmt::skip]
    let cases: Vec<ClockCase> = vec![
        ("BothNbfExp", token.as_str(), EXP + 60 - 10, 60, time_ok),
        ("BothNbfExp", token.as_str(), EXP + 60 + 10, 60, Err(Expired)),
        ("BothNbfExp", token.as_str(), NBF - 60 + 10, 60, time_ok),
        ("BothNbfExp", token.as_str(), NBF - 60 - 10, 60, Err(NotYetValid)),
        ("BothNbfExpWithCustomClockSkew", token.as_str(), EXP + 10 - 1, 10, time_ok),
        ("BothNbfExpWithCustomClockSkew", token.as_str(), EXP + 10 + 1, 10, Err(Expired)),
        ("BothNbfExpWithCustomClockSkew", token.as_str(), NBF - 10 + 1, 10, time_ok),
        ("BothNbfExpWithCustomClockSkew", token.as_str(), NBF - 10 - 1, 10, Err(NotYetValid)),
        ("OnlyExp", only_exp.as_str(), EXP + 60 - 10, 60, time_ok),
        ("OnlyExp", only_exp.as_str(), EXP + 60 + 10, 60, Err(Expired)),
        ("OnlyExp", only_exp.as_str(), 0, 60, time_ok),
        // The gtest's 9223372036854775810 does not fit an i64 clock; i64::MAX is the largest `now`.
        ("OnlyNbf", only_nbf.as_str(), i64::MAX, 60, time_ok),
        ("OnlyNbf", only_nbf.as_str(), NBF - 60 + 10, 60, time_ok),
        ("OnlyNbf", only_nbf.as_str(), NBF - 60 - 10, 60, Err(NotYetValid)),
        ("NotTimeConstraint", neither.as_str(), i64::MAX, 60, time_ok),
        ("NotTimeConstraint", neither.as_str(), 0, 60, time_ok),
    ];
    let mut failures = Vec::new();
    for (gtest, t, now, skew, want) in &cases {
        let got = outcome(t, &keys, &rules(&[], *skew), *now);
        if got != *want {
            failures.push(format!(
                "VerifyExpTest.{gtest} now={now} skew={skew}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "jwt_time:\n{}", failures.join("\n"));
    eprintln!(
        "jwt_verify_lib/jwt_time_test_cc: {} clock points pass",
        cases.len()
    );
}

// ---------------------------------------------------------------------------------------------------------
// jwt_test.cc: the token parse corpus
// ---------------------------------------------------------------------------------------------------------

/// Keys that fit every alg of the corpus, so a token that passes every claim check reaches the signature
/// (and fails there: `BadSignature` is never the status a parse-error constant maps to).
fn corpus_keys(corpus: &Corpus) -> Vec<Jwk> {
    let mut keys = load_keys(
        corpus,
        Keys::Set("verify_audiences_test_cc", "PublicKeyRSA"),
    );
    keys.push(Jwk {
        kid: None,
        alg: None,
        key: VerifyKey::secret(b"not the secret of any corpus token".to_vec()).unwrap(),
    });
    keys
}

/// Each `jwt_test.cc` constant whose single status starts with one of `prefixes` gives that status's outcome:
/// `Ok` → it parses; a parse error → `Malformed` from `parse` or, for claims the parser leaves to
/// `verify`, from `verify` with the check enabled (an issuer configured for `iss`, audiences for `aud`).
fn run_jwt_corpus(prefixes: &[&str]) -> usize {
    let corpus = Corpus::load();
    let keys = corpus_keys(&corpus);
    let mut failures = Vec::new();
    let mut n = 0;
    for block in corpus.in_file("jwt_test_cc") {
        assert!(block.is_token(), "{}: not a token", block.id());
        let statuses = block.statuses();
        let [status] = statuses.iter().collect::<Vec<_>>()[..] else {
            panic!(
                "{}: expected exactly one status, got {statuses:?}",
                block.id()
            );
        };
        if !prefixes.iter().any(|p| status.starts_with(p)) {
            continue;
        }
        n += 1;
        let got = if status == "Ok" {
            UntrustedJwt::parse(&block.body).map(|_| ())
        } else {
            let mut r = rules(&[], 60);
            if status.contains("Iss") {
                r.issuer = Some("https://example.com".into());
            }
            if status.contains("Aud") {
                r.audiences = vec!["aud1".into()];
            }
            outcome(&block.body, &keys, &r, ONE)
        };
        if !mapped(status).contains(&got) {
            failures.push(format!(
                "{} [{}]: jwt_verify_lib asserts {status}, trustgate answered {got:?}, want {:?}",
                block.id(),
                block
                    .note("defined inside test")
                    .or(block.note("referenced by tests"))
                    .unwrap_or("?"),
                mapped(status)
            ));
        }
    }
    assert!(n > 0, "no jwt_test.cc constants matched {prefixes:?}");
    assert!(
        failures.is_empty(),
        "jwt_test.cc: {} disagreement(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("jwt_verify_lib/jwt_test_cc {prefixes:?}: {n} constants pass");
    n
}

#[test]
fn jwt_corpus_good_tokens_parse() {
    run_jwt_corpus(&["Ok"]);
}

#[test]
fn jwt_corpus_header_encoding_and_signature_errors() {
    run_jwt_corpus(&["JwtHeader", "JwtSignature", "JwtPayloadParseErrorBad"]);
}

/// Registered claims of the wrong type or out of range (`iss`/`sub`/`jti`/`aud` not strings, NumericDates
/// not integers, negative or beyond range).
#[test]
fn jwt_corpus_payload_claim_errors() {
    let corpus = Corpus::load();
    let all = corpus
        .in_file("jwt_test_cc")
        .filter(|b| {
            b.statuses().iter().any(|s| {
                s.starts_with("JwtPayloadParseError") && !s.starts_with("JwtPayloadParseErrorBad")
            })
        })
        .count();
    let n = run_jwt_corpus(&[
        "JwtPayloadParseErrorIss",
        "JwtPayloadParseErrorSub",
        "JwtPayloadParseErrorIat",
        "JwtPayloadParseErrorNbf",
        "JwtPayloadParseErrorExp",
        "JwtPayloadParseErrorJti",
        "JwtPayloadParseErrorAud",
    ]);
    assert_eq!(
        n, all,
        "a payload status is not covered by the prefixes above"
    );
}

#[test]
fn jwt_corpus_is_fully_covered() {
    let corpus = Corpus::load();
    let total = corpus.in_file("jwt_test_cc").count();
    let covered = corpus
        .in_file("jwt_test_cc")
        .filter(|b| {
            b.statuses().iter().any(|s| {
                s == "Ok"
                    || s.starts_with("JwtHeader")
                    || s.starts_with("JwtSignature")
                    || s.starts_with("JwtPayloadParseError")
            })
        })
        .count();
    assert_eq!(
        covered, total,
        "jwt_test.cc has constants no corpus test runs"
    );
    assert!(total > 20, "only {total} jwt_test.cc constants parsed");
}

// ---------------------------------------------------------------------------------------------------------
// jwks_test.cc: the key-set corpus
// ---------------------------------------------------------------------------------------------------------

/// `(source line, status the gtest asserts, keys trustgate loads, deviation)`. A failing status must load no
/// key; `Ok` must load the stated number, and fewer keys than the annotation's key material need a note.
#[rustfmt::skip]
const JWKS_CORPUS: &[(u32, &str, usize, Option<&str>)] = &[
    (25, "Ok", 2, None),
    (61, "Ok", 3, Some("P-521")),
    (125, "Ok", 0, Some("not a valid Ed25519 public key")),
    (165, "JwksNotImplementedKty", 0, None),
    (185, "JwksRSAKeyBadAlg", 0, None),
    (201, "JwksECKeyBadAlg", 0, None),
    (219, "Ok", 0, Some("not a valid Ed25519 public key")),
    (252, "Ok", 1, Some("not a valid Ed25519 public key")),
    (297, "JwksOKPKeyCrvUnsupported", 0, None),
    (316, "JwksECKeyMissingX", 0, None),
    (331, "JwksRSAKeyMissingN", 0, None),
    (346, "JwksRSAKeyBadN", 0, None),
    (362, "JwksRSAKeyMissingE", 0, None),
    (378, "JwksRSAKeyBadE", 0, None),
    // Not annotated: the gtest asserts Status::JwksEcXorYBadBase64.
    (395, "JwksEcXorYBadBase64", 0, None),
    (412, "JwksEcParseError", 0, None),
    (429, "JwksRsaParseError", 0, None),
    (446, "JwksRsaParseError", 0, None),
    // Not annotated: the gtest asserts Status::JwksOKPXBadBase64.
    (496, "JwksOKPXBadBase64", 0, None),
    (513, "JwksOKPXWrongLength", 0, None),
    (530, "JwksECKeyBadCrv", 0, None),
    (547, "JwksECKeyBadX", 0, None),
    (565, "JwksECKeyMissingY", 0, None),
    (583, "JwksECKeyBadY", 0, None),
    (602, "JwksMissingKty", 0, None),
    (619, "JwksBadKty", 0, None),
    (637, "JwksHMACKeyBadAlg", 0, None),
    (653, "JwksHMACKeyMissingK", 0, None),
    (671, "JwksHMACKeyBadK", 0, None),
    (690, "JwksOctBadBase64", 0, None),
    (709, "Ok", 1, None),
    (728, "Ok", 1, None),
    (747, "Ok", 0, Some("P-521")),
    (766, "Ok", 0, Some("crv: missing")),
    (783, "JwksEcParseError", 0, None),
    (801, "JwksECKeyAlgNotCompatibleWithCrv", 0, None),
    (817, "Ok", 0, Some("P-521")),
    (836, "Ok", 0, Some("crv: missing")),
    (856, "JwksECKeyAlgNotCompatibleWithCrv", 0, None),
    (873, "JwksECKeyAlgNotCompatibleWithCrv", 0, None),
    (890, "JwksECKeyAlgOrCrvUnsupported", 0, None),
    (906, "JwksECKeyAlgOrCrvUnsupported", 0, None),
    (922, "Ok", 0, Some("crv: missing")),
    (963, "JwksOKPKeyBadAlg", 0, None),
    (979, "JwksOKPKeyMissingCrv", 0, None),
    (995, "JwksOKPKeyBadCrv", 0, None),
    (1012, "JwksOKPKeyCrvUnsupported", 0, None),
    (1029, "JwksOKPKeyMissingX", 0, None),
    (1046, "JwksOKPKeyBadX", 0, None),
    (1081, "JwksNoKeys", 0, None),
    (1096, "JwksNoKeys", 0, None),
    (1107, "JwksNoKeys", 0, None),
    (1118, "JwksNoKeys", 0, None),
    (1128, "JwksNoKeys", 0, None),
    (1138, "JwksNoKeys", 0, None),
    (1148, "JwksNoKeys", 0, None),
    (1158, "JwksX509ParseError", 0, None),
    (1168, "Ok", 1, None),
    (1185, "Ok", 1, None),
    (1197, "Ok", 1, None),
    (1208, "JwksPemBadBase64", 0, None),
    (1224, "JwksPemBadBase64", 0, None),
    (1234, "JwksPemNotImplementedKty", 0, None),
    (1261, "JwksPemBadBase64", 0, None),
    (1277, "Ok", 1, None),
    (1292, "Ok", 1, None),
    (1305, "Ok", 1, None),
    (1327, "Ok", 1, None),
    (1336, "JwksPemBadBase64", 0, None),
];

#[test]
fn jwks_corpus() {
    let corpus = Corpus::load();
    let blocks: Vec<&Block> = corpus.in_file("jwks_test_cc").collect();
    let mut failures = Vec::new();
    for block in &blocks {
        let Some(&(_, status, want, deviation)) =
            JWKS_CORPUS.iter().find(|(line, ..)| *line == block.line)
        else {
            failures.push(format!("{}: not in JWKS_CORPUS", block.id()));
            continue;
        };
        let annotated = block.statuses();
        if !annotated.is_empty() && !annotated.contains(status) {
            failures.push(format!(
                "{}: {status} is not among the annotated {annotated:?}",
                block.id()
            ));
        }
        if annotated.is_empty() && !status.contains("BadBase64") {
            failures.push(format!(
                "{}: unannotated constant needs a reason",
                block.id()
            ));
        }
        // What trustgate makes of it: keys loaded, and why the others were refused.
        let (loaded, reasons): (usize, Vec<String>) = if block.body.starts_with("-----BEGIN") {
            match pem_keys(block) {
                Ok(k) => (k.len(), Vec::new()),
                Err(e) => (0, vec![e]),
            }
        } else {
            match parse_jwks(&block.body) {
                Ok(p) => (
                    p.keys.len(),
                    p.refused
                        .iter()
                        .map(|(i, e)| format!("keys[{i}]: {e}"))
                        .collect(),
                ),
                Err(e) => (0, vec![e.to_string()]),
            }
        };
        if status != "Ok" && want != 0 {
            failures.push(format!(
                "{}: table says {status} but loads {want} keys",
                block.id()
            ));
        }
        if loaded != want {
            failures.push(format!(
                "{}: jwt_verify_lib asserts {status}; trustgate loaded {loaded} key(s), want {want} ({reasons:?})",
                block.id()
            ));
        }
        let material = block
            .note("key material")
            .map(|m| m.split("; ").count())
            .unwrap_or(0);
        match deviation {
            Some(why) => {
                if !reasons.iter().any(|r| r.contains(why)) {
                    failures.push(format!(
                        "{}: expected a refusal mentioning {why:?}, got {reasons:?}",
                        block.id()
                    ));
                }
                if status == "Ok" && loaded >= material {
                    failures.push(format!(
                        "{}: stale deviation, all {material} keys load",
                        block.id()
                    ));
                }
            }
            None if status == "Ok" && loaded < material => failures.push(format!(
                "{}: loads {loaded} of {material} keys without a documented reason ({reasons:?})",
                block.id()
            )),
            None => {}
        }
        if status != "Ok" && reasons.is_empty() {
            failures.push(format!("{}: refused without a reason", block.id()));
        }
    }
    assert_eq!(
        blocks.len(),
        JWKS_CORPUS.len(),
        "JWKS_CORPUS rows without a constant"
    );
    assert!(
        failures.is_empty(),
        "jwks_test.cc:\n{}",
        failures.join("\n")
    );
    eprintln!(
        "jwt_verify_lib/jwks_test_cc: {} key sets, {} refused, {} with documented deviations",
        blocks.len(),
        JWKS_CORPUS.iter().filter(|r| r.1 != "Ok").count(),
        JWKS_CORPUS.iter().filter(|r| r.3.is_some()).count()
    );
}

/// Every key constant of the scenario files loads as the gtests' `SetUp` expects (status `Ok`), except the
/// x509 maps and the P-521 PEM key, which are refused.
#[test]
fn scenario_key_sets_load() {
    let corpus = Corpus::load();
    let mut n = 0;
    for block in corpus
        .blocks
        .iter()
        .filter(|b| b.note("key material").is_some() && b.file != "jwks_test_cc")
    {
        n += 1;
        match (block.file, block.name.as_str()) {
            ("test_common_h", _) => assert_x509_refused(block),
            ("verify_pem_ec_test_cc", "es512pubkey") => assert!(pem_keys(block).is_err()),
            _ if block.body.starts_with("-----BEGIN") => {
                assert_eq!(pem_keys(block).unwrap().len(), 1, "{}", block.id());
            }
            _ => {
                let doc = jwks_json(block);
                let p = parse_jwks_value(&doc).unwrap();
                let material = block.note("key material").unwrap().split("; ").count();
                let p521 = p
                    .refused
                    .iter()
                    .all(|(_, e)| e.to_string().contains("P-521"));
                assert!(
                    p.keys.len() == material
                        || (p521 && p.keys.len() + p.refused.len() == material),
                    "{}: {} of {material} keys loaded, refused {:?}",
                    block.id(),
                    p.keys.len(),
                    p.refused
                        .iter()
                        .map(|(i, e)| format!("{i}: {e}"))
                        .collect::<Vec<_>>()
                );
            }
        }
    }
    assert!(n >= 14, "only {n} key constants found");
}

/// Nothing in the corpus makes a parser panic: every constant, as a token, as a JWK Set and as PEM.
#[test]
fn no_constant_panics_any_parser() {
    let corpus = Corpus::load();
    let keys = corpus_keys(&corpus);
    for b in &corpus.blocks {
        let _ = UntrustedJwt::parse(&b.body);
        let _ = outcome(&b.body, &keys, &rules(&["aud1"], 60), WALL);
        let _ = parse_jwks(&b.body);
        let _ = VerifyKey::from_pem(&b.body);
    }
    assert_eq!(
        corpus.blocks.len(),
        152,
        "constants parsed from the 14 files"
    );
}
