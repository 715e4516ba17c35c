//! Signet proofs of possession, self-contained form (DESIGN "Signet-Proof").
//!
//! `Signet-Proof: v1;m=compact;jti=…;s=…;n=…;ts=…;epk=…;p=…;exp=…;pur=…` (base64url without padding, fields
//! split on `;`, duplicate keys refused, unknown keys ignored, at most 8192 bytes). A long-lived Ed25519
//! master key signs the binding `"signet-ephemeral-binding-v1:" || epk || int64_be(exp) || uint32_be(len(pur))
//! || pur`; the short-lived ephemeral key `epk` signs each request, `METHOD|PATH[?RAWQUERY]|ts|b64url(nonce)`
//! with PATH percent-decoded and the query raw. Verification needs only the master public key.

use crate::formats::b64;
use crate::formats::crypto::Ed25519Key;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Largest `Signet-Proof` value parsed.
pub const MAX_PROOF_BYTES: usize = 8192;
/// The binding message prefix.
pub const BINDING_PREFIX: &[u8] = b"signet-ephemeral-binding-v1:";
/// Longest purpose accepted.
pub const MAX_PURPOSE_BYTES: usize = 256;

/// A parsed, unverified proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub jti: [u8; 16],
    pub sig: [u8; 64],
    /// The nonce bytes (16), or empty when `n` is absent.
    pub nonce: Vec<u8>,
    pub ts: i64,
    pub epk: [u8; 32],
    pub binding: [u8; 64],
    pub exp: i64,
    pub purpose: String,
}

/// Why a proof is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignetError {
    Malformed,
    /// `now > exp`.
    Expired,
    /// `|now − ts|` over the skew.
    StaleTimestamp,
    /// No master key signed the binding, or the ephemeral key did not sign the request.
    BadSignature,
}

fn fixed<const N: usize>(v: &str) -> Result<[u8; N], SignetError> {
    b64::url_decode(v)
        .and_then(|b| <[u8; N]>::try_from(b.as_slice()).ok())
        .ok_or(SignetError::Malformed)
}

fn unix(v: &str) -> Result<i64, SignetError> {
    if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignetError::Malformed);
    }
    v.parse().map_err(|_| SignetError::Malformed)
}

/// Parses a `Signet-Proof` header value strictly.
pub fn parse(header: &str) -> Result<Proof, SignetError> {
    if header.len() > MAX_PROOF_BYTES {
        return Err(SignetError::Malformed);
    }
    let mut fields = header.split(';');
    if fields.next().map(str::trim) != Some("v1") {
        return Err(SignetError::Malformed);
    }
    let mut seen: Vec<&str> = Vec::new();
    let (mut m, mut jti, mut s, mut n, mut ts, mut epk, mut p, mut exp, mut pur) =
        (None, None, None, None, None, None, None, None, None);
    for field in fields {
        let (k, v) = field.trim().split_once('=').ok_or(SignetError::Malformed)?;
        if seen.contains(&k) {
            return Err(SignetError::Malformed);
        }
        seen.push(k);
        match k {
            "m" => m = Some(v),
            "jti" => jti = Some(fixed::<16>(v)?),
            "s" => s = Some(fixed::<64>(v)?),
            "n" if v.is_empty() => n = Some(Vec::new()),
            "n" => n = Some(fixed::<16>(v)?.to_vec()),
            "ts" => ts = Some(unix(v)?),
            "epk" => epk = Some(fixed::<32>(v)?),
            "p" => p = Some(fixed::<64>(v)?),
            "exp" => exp = Some(unix(v)?),
            "pur" => {
                if v.len() > MAX_PURPOSE_BYTES || v.chars().any(|c| c.is_control()) {
                    return Err(SignetError::Malformed);
                }
                pur = Some(v.to_owned());
            }
            _ => {} // unknown keys are ignored (e.g. cap)
        }
    }
    if m != Some("compact") {
        return Err(SignetError::Malformed);
    }
    match (jti, s, ts, epk, p, exp) {
        (Some(jti), Some(sig), Some(ts), Some(epk), Some(binding), Some(exp)) => Ok(Proof {
            jti,
            sig,
            nonce: n.unwrap_or_default(),
            ts,
            epk,
            binding,
            exp,
            purpose: pur.unwrap_or_default(),
        }),
        _ => Err(SignetError::Malformed),
    }
}

/// The binding message the master key signs.
pub fn binding_message(epk: &[u8; 32], exp: i64, purpose: &str) -> Vec<u8> {
    let mut m = BINDING_PREFIX.to_vec();
    m.extend_from_slice(epk);
    m.extend_from_slice(&exp.to_be_bytes());
    m.extend_from_slice(
        &u32::try_from(purpose.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    m.extend_from_slice(purpose.as_bytes());
    m
}

/// Percent-decodes a path (bytes kept when an escape is malformed or the result is not UTF-8).
fn decode_path(path: &str) -> Vec<u8> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|d| char::from(*d).to_digit(16));
        match (c, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(0));
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The request message: `METHOD|PATH[?RAWQUERY]|ts|b64url(nonce)`, PATH percent-decoded, query raw.
pub fn request_message(method: &str, raw_path: &str, ts: i64, nonce: &[u8]) -> Vec<u8> {
    let raw_path = raw_path.split('#').next().unwrap_or_default();
    let (path, query) = match raw_path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw_path, None),
    };
    let mut m = method.as_bytes().to_vec();
    m.push(b'|');
    m.extend_from_slice(&decode_path(path));
    if let Some(q) = query {
        m.push(b'?');
        m.extend_from_slice(q.as_bytes());
    }
    m.extend_from_slice(format!("|{ts}|{}", b64::url_encode(nonce)).as_bytes());
    m
}

/// The replay key: `hex(jti):ts:hex(sha256(s)[..8])`.
pub fn replay_key(p: &Proof) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let d = Sha256::digest(p.sig);
    format!(
        "{}:{}:{}",
        hex(&p.jti),
        p.ts,
        hex(d.get(..8).unwrap_or_default())
    )
}

fn ed25519_ok(public: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    Ed25519Key::from_bytes(public).is_some_and(|k| k.verify(msg, sig))
}

/// Verified bindings of this VM: `(epk, exp, pur, p)` → the master public key that signed it and the decoded
/// ephemeral key (which gets its precomputed table once the agent has used it often), until `exp`. Bounded.
#[derive(Default)]
pub struct BindingCache {
    map: RefCell<HashMap<BindingId, Binding>>,
}

struct Binding {
    master: MasterKey,
    exp: i64,
    ephemeral: Rc<Ed25519Key>,
}

/// SHA-256 of `(epk, exp, pur, p)`.
type BindingId = [u8; 32];
/// An Ed25519 master public key.
type MasterKey = [u8; 32];

/// Entries kept at most; beyond it expired entries are dropped, then everything.
const CACHE_MAX: usize = 4096;

impl BindingCache {
    fn key(p: &Proof) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(p.epk);
        h.update(p.exp.to_be_bytes());
        h.update(p.purpose.as_bytes());
        h.update([0]);
        h.update(p.binding);
        h.finalize().into()
    }

    fn get(&self, p: &Proof, now: i64) -> Option<([u8; 32], Rc<Ed25519Key>)> {
        let map = self.map.try_borrow().ok()?;
        map.get(&Self::key(p))
            .filter(|b| now <= b.exp)
            .map(|b| (b.master, b.ephemeral.clone()))
    }

    fn put(&self, p: &Proof, master: [u8; 32], ephemeral: Rc<Ed25519Key>, now: i64) {
        if let Ok(mut map) = self.map.try_borrow_mut() {
            if map.len() >= CACHE_MAX {
                map.retain(|_, b| now <= b.exp);
                if map.len() >= CACHE_MAX {
                    map.clear();
                }
            }
            let binding = Binding {
                master,
                exp: p.exp,
                ephemeral,
            };
            map.insert(Self::key(p), binding);
        }
    }

    /// Number of cached bindings.
    pub fn len(&self) -> usize {
        self.map.try_borrow().map_or(0, |m| m.len())
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Checks a parsed proof at `now`: expiry, the `ts` window, the binding by one of `masters` (cached), the
/// request signature. Returns the index of the master key that signed the binding.
pub fn verify(
    p: &Proof,
    masters: &[[u8; 32]],
    method: &str,
    raw_path: &str,
    now: i64,
    skew_s: i64,
    cache: &BindingCache,
) -> Result<usize, SignetError> {
    if now > p.exp {
        return Err(SignetError::Expired);
    }
    if p.ts.abs_diff(now) > skew_s.unsigned_abs() {
        return Err(SignetError::StaleTimestamp);
    }
    // A cached binding counts only if its master key is one of this provider's.
    let cached = cache.get(p, now).and_then(|(key, ephemeral)| {
        masters
            .iter()
            .position(|m| *m == key)
            .map(|i| (i, ephemeral))
    });
    let (master, ephemeral) = match cached {
        Some(hit) => hit,
        None => {
            let msg = binding_message(&p.epk, p.exp, &p.purpose);
            let i = masters
                .iter()
                .position(|m| ed25519_ok(m, &msg, &p.binding))
                .ok_or(SignetError::BadSignature)?;
            let ephemeral =
                Rc::new(Ed25519Key::from_bytes(&p.epk).ok_or(SignetError::BadSignature)?);
            if let Some(key) = masters.get(i) {
                cache.put(p, *key, ephemeral.clone(), now);
            }
            (i, ephemeral)
        }
    };
    if !ephemeral.verify(&request_message(method, raw_path, p.ts, &p.nonce), &p.sig) {
        return Err(SignetError::BadSignature);
    }
    Ok(master)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn proof_for(method: &str, path: &str, ts: i64, exp: i64, pur: &str) -> (String, [u8; 32]) {
        let master = SigningKey::from_bytes(&[1; 32]);
        let eph = SigningKey::from_bytes(&[2; 32]);
        let epk = eph.verifying_key().to_bytes();
        let p = master.sign(&binding_message(&epk, exp, pur)).to_bytes();
        let nonce = [9u8; 16];
        let s = eph
            .sign(&request_message(method, path, ts, &nonce))
            .to_bytes();
        let e = b64::url_encode;
        let header = format!(
            "v1;m=compact;jti={};s={};n={};ts={ts};epk={};p={};exp={exp};pur={pur}",
            e(&[5; 16]),
            e(&s),
            e(&nonce),
            e(&epk),
            e(&p)
        );
        (header, master.verifying_key().to_bytes())
    }

    #[test]
    fn round_trip_and_binding_cache() {
        let (h, master) = proof_for("GET", "/a%20b?x=%20", 100, 400, "api");
        let p = parse(&h).unwrap();
        let cache = BindingCache::default();
        assert_eq!(
            verify(
                &p,
                &[[7; 32], master],
                "GET",
                "/a%20b?x=%20",
                110,
                30,
                &cache
            ),
            Ok(1)
        );
        assert_eq!(cache.len(), 1);
        // Second time the binding comes from the cache; the request signature is still checked.
        assert_eq!(
            verify(
                &p,
                &[[7; 32], master],
                "GET",
                "/a%20b?x=%20",
                110,
                30,
                &cache
            ),
            Ok(1)
        );
        assert_eq!(
            verify(&p, &[master], "GET", "/a%20b?x=%21", 110, 30, &cache),
            Err(SignetError::BadSignature)
        );
        assert_eq!(
            verify(&p, &[master], "POST", "/a%20b?x=%20", 110, 30, &cache),
            Err(SignetError::BadSignature)
        );
        // The path is compared decoded: "/a b" is what was signed.
        assert_eq!(
            verify(&p, &[master], "GET", "/a b?x=%20", 110, 30, &cache),
            Ok(0)
        );
        assert_eq!(
            verify(&p, &[master], "GET", "/a%20b?x=%20", 131, 30, &cache),
            Err(SignetError::StaleTimestamp)
        );
        assert_eq!(
            verify(&p, &[master], "GET", "/a%20b?x=%20", 401, 300, &cache),
            Err(SignetError::Expired)
        );
        assert_eq!(
            verify(
                &p,
                &[[7; 32]],
                "GET",
                "/a%20b?x=%20",
                110,
                30,
                &BindingCache::default()
            ),
            Err(SignetError::BadSignature)
        );
    }

    #[test]
    fn parser_is_strict() {
        let (h, _) = proof_for("GET", "/", 100, 400, "api");
        assert!(parse(&h).is_ok());
        assert!(
            parse(&format!("{h};cap=whatever")).is_ok(),
            "unknown keys are ignored"
        );
        assert!(parse(&format!("{h};ts=100")).is_err(), "duplicate");
        assert!(parse(&h.replacen("v1;", "v2;", 1)).is_err());
        assert!(parse(&h.replace("m=compact", "m=full")).is_err());
        assert!(parse(&h.replace(";ts=100", "")).is_err());
        assert!(parse(&h.replace(";ts=100", ";ts=-1")).is_err());
        assert!(parse(&h.replace(";ts=100", ";ts=1e3")).is_err());
        assert!(
            parse(&format!("{h};x={}", "a".repeat(9000))).is_err(),
            "over 8192 bytes"
        );
        let short_jti = format!("jti={}", b64::url_encode(&[5; 15]));
        let jti = format!("jti={}", b64::url_encode(&[5; 16]));
        assert!(parse(&h.replace(&jti, &short_jti)).is_err());
        assert!(
            parse(&h.replace(&jti, &format!("{jti}=="))).is_err(),
            "padding"
        );
        assert!(parse("").is_err());
        assert!(parse("v1").is_err());
    }

    #[test]
    fn replay_key_format() {
        let (h, _) = proof_for("GET", "/", 100, 400, "api");
        let k = replay_key(&parse(&h).unwrap());
        let parts: Vec<&str> = k.split(':').collect();
        assert_eq!(parts[0], "05".repeat(16));
        assert_eq!(parts[1], "100");
        assert_eq!(parts[2].len(), 16);
    }
}
