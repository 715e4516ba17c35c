//! The verified-token cache: a bounded map from `(provider, token)` to the verified claims, so a token seen
//! again skips base64, JSON and the signature — the costly part in wasm.
//!
//! An entry is used only while it would still verify: it belongs to one provider (a token verified for one
//! audience is never reused for another provider), it is tied to the provider's key-set version (a rotated
//! key set drops it), and on every hit the claims are checked again at `now` (`exp`, `nbf`, issuer,
//! audience, lifetime). Tokens without `exp` are not cached. At most [`MAX_ENTRIES`] entries.

use crate::jwt::VerifiedJwt;
use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::rc::Rc;

/// Entries kept at most (all providers together); when full, expired entries go first, then all.
pub const MAX_ENTRIES: usize = 8192;

/// Longer tokens are verified every time, never cached: this bounds the cache's memory with its entry count.
pub const MAX_TOKEN_BYTES: usize = 4096;

struct Entry {
    jwt: Rc<VerifiedJwt>,
    version: u64,
    exp: i64,
}

/// Keyed by the whole token, compared byte for byte on lookup: a hit is the same token, never one that only
/// hashes alike. SipHash with fixed keys is enough for the table (only verified tokens are ever inserted, so
/// nobody chooses the keys that collide), and costs a tenth of a SHA-256 of the token in wasm.
type Map = HashMap<Box<str>, Entry, BuildHasherDefault<DefaultHasher>>;

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
        match map.get(token) {
            Some(e) if e.version == version => Some(e.jwt.clone()),
            Some(_) => {
                map.remove(token); // verified with keys that are gone
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
            map.insert(token.into(), Entry { jwt, version, exp });
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
