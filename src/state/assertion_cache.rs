//! Reuse of signed identity assertions, per VM: the same audience, satisfied providers and claims get the same
//! assertion while at least 3/4 of its lifetime is left, so a busy caller costs one signature per quarter
//! lifetime instead of one per request. The key (built by the engine) holds the audience, each satisfied
//! provider with who satisfied it (client or key id, token subject, certificate digest) and every claim, so
//! two callers never share an assertion, even when the claims map them to the same values.
//!
//! Bounded: at most [`MAX_ENTRIES`]; a full cache first drops what may no longer be reused, then everything.

use std::cell::RefCell;
use std::collections::HashMap;

/// The most assertions one VM keeps.
pub const MAX_ENTRIES: usize = 4096;

struct Entry {
    jws: String,
    /// Reused while `now < reuse_until`.
    reuse_until: i64,
}

/// Signed assertions by (audience, providers, claims).
#[derive(Default)]
pub struct AssertionCache {
    entries: RefCell<HashMap<String, Entry>>,
}

impl AssertionCache {
    /// The assertion for `key` at `now`, issuing (and keeping) a new one with `issue` when there is none to
    /// reuse. `issue(now)` gives the JWS; it is reused until `now + ttl_s / 4`.
    pub fn get_or_issue<E>(
        &self,
        key: String,
        now: i64,
        ttl_s: i64,
        issue: impl FnOnce() -> Result<String, E>,
    ) -> Result<String, E> {
        let Ok(mut entries) = self.entries.try_borrow_mut() else {
            return issue();
        };
        if let Some(e) = entries.get(&key) {
            if now < e.reuse_until {
                return Ok(e.jws.clone());
            }
        }
        let jws = issue()?;
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.retain(|_, e| now < e.reuse_until);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                jws: jws.clone(),
                reuse_until: now.saturating_add(ttl_s / 4).max(now.saturating_add(1)),
            },
        );
        Ok(jws)
    }

    /// How many assertions are kept.
    pub fn len(&self) -> usize {
        self.entries.try_borrow().map_or(0, |e| e.len())
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A fresh assertion id: 16 random bytes, base64url (22 characters); `None` when the platform has no
/// randomness to give (the request then fails closed).
pub fn new_jti() -> Option<String> {
    let mut id = [0u8; 16];
    getrandom::getrandom(&mut id).ok()?;
    Some(crate::formats::b64::url_encode(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(n: &RefCell<u32>) -> Result<String, ()> {
        *n.borrow_mut() += 1;
        Ok(format!("jws{}", n.borrow()))
    }

    #[test]
    fn reused_for_a_quarter_of_the_lifetime_then_issued_again() {
        let c = AssertionCache::default();
        let n = RefCell::new(0);
        assert_eq!(
            c.get_or_issue("a".into(), 100, 60, || issue(&n)).unwrap(),
            "jws1"
        );
        assert_eq!(
            c.get_or_issue("a".into(), 114, 60, || issue(&n)).unwrap(),
            "jws1"
        );
        assert_eq!(
            c.get_or_issue("a".into(), 115, 60, || issue(&n)).unwrap(),
            "jws2"
        );
        assert_eq!(
            c.get_or_issue("b".into(), 115, 60, || issue(&n)).unwrap(),
            "jws3"
        );
    }

    #[test]
    fn a_full_cache_stays_bounded() {
        let c = AssertionCache::default();
        let n = RefCell::new(0);
        for i in 0..MAX_ENTRIES + 10 {
            c.get_or_issue(format!("k{i}"), 0, 60, || issue(&n))
                .unwrap();
        }
        assert!(c.len() <= MAX_ENTRIES);
        assert!(!c.is_empty());
    }

    #[test]
    fn a_failed_issue_is_not_kept() {
        let c = AssertionCache::default();
        assert_eq!(
            c.get_or_issue("a".into(), 0, 60, || Err::<String, _>(7)),
            Err(7)
        );
        assert!(c.is_empty());
    }
}
