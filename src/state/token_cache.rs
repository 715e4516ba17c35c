//! The verified-token cache: a bounded map from `(provider, token)` to the verified claims, so a token seen
//! again skips base64, JSON and the signature — the costly part in wasm.
//!
//! An entry is used only while it would still verify: it belongs to one provider (a token verified for one
//! audience is never reused for another provider), it is tied to the provider's key-set version (a rotated
//! key set drops it), and on every hit the claims are checked again at `now` (`exp`, `nbf`, issuer,
//! audience, lifetime). Tokens without `exp` are not cached. At most [`MAX_ENTRIES`] entries.

use crate::formats::jwt::VerifiedJwt;
use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// Entries kept at most (all providers together); when full, expired entries go first, then all.
pub const MAX_ENTRIES: usize = 8192;

/// Longer tokens are verified every time, never cached: this bounds the cache's memory with its entry count.
pub const MAX_TOKEN_BYTES: usize = 4096;

struct Entry {
    token: Box<str>,
    jwt: Rc<VerifiedJwt>,
    version: u64,
    exp: i64,
}

/// Keyed by a 64-bit digest of the token ([`digest`]); the entry keeps the whole token, compared on lookup:
/// a hit is the same token, never one that only hashes alike (a digest shared with another token is a miss,
/// and that token is verified).
type Map = HashMap<u64, Entry, BuildHasherDefault<Identity>>;

/// SipHash (fixed keys) of the token's length and its last 64 bytes: the signature's end, which differs
/// between any two genuine tokens. Only verified tokens are ever inserted, so nobody chooses the entries that
/// collide; a token crafted to collide with one only costs its own comparison. Hashing 64 bytes instead of the
/// whole token, and comparing in 8-byte words ([`same_token`]), halves the cost of a hit in wasm, where
/// `memcmp` goes byte by byte.
fn digest(token: &str) -> u64 {
    let b = token.as_bytes();
    let mut h = DefaultHasher::new();
    h.write_usize(b.len());
    h.write(b.get(b.len().saturating_sub(64)..).unwrap_or(b));
    h.finish()
}

/// `a == b`, 8 bytes at a time.
fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tails = wa.remainder() == wb.remainder();
    tails
        && wa.zip(wb).all(|(x, y)| {
            let word = |c: &[u8]| <[u8; 8]>::try_from(c).map(u64::from_ne_bytes).unwrap_or(0);
            word(x) == word(y)
        })
}

/// The map's keys are digests already: used as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A per-VM cache of verified tokens, one table per provider.
#[derive(Default)]
pub struct TokenCache {
    maps: RefCell<Vec<Map>>,
}

impl TokenCache {
    /// `token` as verified before by provider `provider`, if it was verified with key-set `version`.
    pub fn get(&self, provider: usize, token: &str, version: u64) -> Option<Rc<VerifiedJwt>> {
        let mut maps = self.maps.try_borrow_mut().ok()?;
        let map = maps.get_mut(provider)?;
        let key = digest(token);
        match map.get(&key) {
            Some(e) if !same_token(&e.token, token) => None,
            Some(e) if e.version == version => Some(e.jwt.clone()),
            Some(_) => {
                map.remove(&key); // verified with keys that are gone
                None
            }
            None => None,
        }
    }

    /// Remembers `token`, verified by provider `provider` with key-set `version`.
    pub fn put(&self, provider: usize, token: &str, jwt: Rc<VerifiedJwt>, version: u64, now: i64) {
        let Some(exp) = jwt.exp() else {
            return;
        };
        if token.len() > MAX_TOKEN_BYTES {
            return;
        }
        let Ok(mut maps) = self.maps.try_borrow_mut() else {
            return;
        };
        if maps.iter().map(HashMap::len).sum::<usize>() >= MAX_ENTRIES {
            for m in maps.iter_mut() {
                m.retain(|_, e| e.exp >= now);
            }
            if maps.iter().map(HashMap::len).sum::<usize>() >= MAX_ENTRIES {
                maps.iter_mut().for_each(HashMap::clear);
            }
        }
        while maps.len() <= provider {
            maps.push(Map::default());
        }
        if let Some(map) = maps.get_mut(provider) {
            let entry = Entry {
                token: token.into(),
                jwt,
                version,
                exp,
            };
            map.insert(digest(token), entry);
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.maps
            .try_borrow()
            .map_or(0, |m| m.iter().map(HashMap::len).sum())
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_token_compares_every_byte() {
        let t = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        assert!(same_token(t, t));
        assert!(same_token("", ""));
        for i in 0..t.len() {
            let mut b = t.as_bytes().to_vec();
            b[i] ^= 1;
            let other = String::from_utf8(b).unwrap();
            assert!(!same_token(t, &other), "byte {i}");
        }
        assert!(!same_token(t, &t[..t.len() - 1]));
        assert!(!same_token("abcdefgh", "abcdefghi"));
    }

    #[test]
    fn the_digest_reads_the_length_and_the_end() {
        let head = "a".repeat(100);
        assert_eq!(
            digest(&format!("{head}{}", "z".repeat(64))),
            digest(&format!("{}{}", "b".repeat(100), "z".repeat(64)))
        );
        assert_ne!(digest(&format!("{head}x")), digest(&format!("{head}y")));
        assert_ne!(digest("abc"), digest("abcd"));
    }
}
