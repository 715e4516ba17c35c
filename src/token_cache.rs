//! The verified-token cache: a bounded map from `(provider, token)` to the verified claims, so a token seen
//! again skips base64, JSON and the signature — the costly part in wasm.
//!
//! An entry is used only while it would still verify: it belongs to one provider (a token verified for one
//! audience is never reused for another provider), it is tied to the provider's key-set version (a rotated
//! key set drops it), and on every hit the claims are checked again at `now` (`exp`, `nbf`, issuer,
//! audience, lifetime). Tokens without `exp` are not cached. At most [`MAX_ENTRIES`] entries.

use crate::jwt::VerifiedJwt;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Entries kept at most; when full, expired entries go first, then all.
pub const MAX_ENTRIES: usize = 8192;

struct Entry {
    jwt: Rc<VerifiedJwt>,
    version: u64,
    exp: i64,
}

/// A per-VM cache of verified tokens.
#[derive(Default)]
pub struct TokenCache {
    map: RefCell<HashMap<[u8; 32], Entry>>,
}

/// The cache key of `token` for provider `provider`.
pub fn key(provider: usize, token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((provider as u64).to_be_bytes());
    h.update(token.as_bytes());
    h.finalize().into()
}

impl TokenCache {
    /// The verified token under `key`, if it was verified with key-set `version`.
    pub fn get(&self, key: &[u8; 32], version: u64) -> Option<Rc<VerifiedJwt>> {
        let mut map = self.map.try_borrow_mut().ok()?;
        match map.get(key) {
            Some(e) if e.version == version => Some(e.jwt.clone()),
            Some(_) => {
                map.remove(key); // verified with keys that are gone
                None
            }
            None => None,
        }
    }

    /// Remembers a token verified with key-set `version`.
    pub fn put(&self, key: [u8; 32], jwt: VerifiedJwt, version: u64, now: i64) {
        let Some(exp) = jwt.exp() else {
            return;
        };
        let Ok(mut map) = self.map.try_borrow_mut() else {
            return;
        };
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| e.exp >= now);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(
            key,
            Entry {
                jwt: Rc::new(jwt),
                version,
                exp,
            },
        );
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.try_borrow().map_or(0, |m| m.len())
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
