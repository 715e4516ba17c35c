//! Process-wide, memory-bounded state for signed requests: "this nonce was seen" and "this client made N
//! requests in this window", over a [`SharedStore`] (proxy-wasm shared data, compare-and-swap).
//!
//! Replay: a nonce's 64-bit fingerprint lands in one of [`SLOTS`] fixed keys, each holding at most
//! [`SLOT_CAP`] `(fingerprint, expiry)` entries. Expired entries are dropped whenever a slot is written, so the
//! keys are reused forever and memory is bounded by `SLOTS × SLOT_CAP × 16` bytes (64 MiB) however many
//! unique nonces arrive. A slot full of live entries refuses new nonces (fail closed, 503) rather than
//! forgetting one that could then be replayed.
//!
//! Rate limits: one key per client holding `(window start, count)`, a fixed window.
//!
//! Every key is created before traffic uses it ([`prepare_slots`], [`prepare_counter`] at configure time),
//! because Envoy's CAS 0 means "unconditional": only creation may use it.

use crate::state::jwks_cache::SharedStore;
use sha2::{Digest, Sha256};

/// Fixed number of replay slots per provider.
pub const SLOTS: u32 = 16_384;
/// Live entries one slot may hold.
pub const SLOT_CAP: usize = 256;
const ENTRY: usize = 16;

/// The outcome of recording a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// First time: recorded until its expiry.
    Fresh,
    /// Seen before and not expired.
    Replayed,
    /// The slot is full of live nonces: refused, fail closed.
    Full,
    /// The store could not be updated (persistent CAS conflicts, host error): refused, fail closed.
    Unavailable,
    /// A remote store must be asked first ([`crate::state::backend::RedisState`]).
    Pending,
}

fn slot_key(scope: &str, slot: u32) -> String {
    format!("trustgate:replay:v1:{scope}:{slot}")
}

/// Creates every slot of `scope` that does not exist yet.
pub fn prepare_slots(store: &dyn SharedStore, scope: &str) {
    for slot in 0..SLOTS {
        let key = slot_key(scope, slot);
        if store.get(&key).is_none() {
            store.set(&key, &[], 0);
        }
    }
}

/// Records `id` (e.g. `client_id:nonce`) for `scope` until `expires_at`, unless it is already there.
pub fn check_and_record(
    store: &dyn SharedStore,
    scope: &str,
    id: &str,
    expires_at: i64,
    now: i64,
) -> Replay {
    let digest = Sha256::digest(id.as_bytes());
    let mut fp = [0u8; 8];
    fp.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    let slot = u32::from(u16::from_be_bytes(
        digest
            .get(8..10)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 2]),
    )) % SLOTS;
    record_in_slot(store, &slot_key(scope, slot), fp, expires_at, now)
}

/// Records fingerprint `fp` in one slot: prune expired entries, refuse a live duplicate or a full slot.
fn record_in_slot(
    store: &dyn SharedStore,
    key: &str,
    fp: [u8; 8],
    expires_at: i64,
    now: i64,
) -> Replay {
    for _ in 0..16 {
        let Some((value, cas)) = store.get(key) else {
            return Replay::Unavailable; // never prepared: refuse rather than write unconditionally
        };
        let mut kept = Vec::with_capacity(value.len() + ENTRY);
        for e in value.chunks_exact(ENTRY) {
            let (efp, exp) = e.split_at(8);
            let exp = i64::from_be_bytes(exp.try_into().unwrap_or([0; 8]));
            if exp < now {
                continue; // expired: its space is reused
            }
            if efp == fp {
                return Replay::Replayed;
            }
            kept.extend_from_slice(e);
        }
        if kept.len() / ENTRY >= SLOT_CAP {
            return Replay::Full;
        }
        kept.extend_from_slice(&fp);
        kept.extend_from_slice(&expires_at.to_be_bytes());
        if cas == 0 {
            return Replay::Unavailable;
        }
        if store.set(key, &kept, cas) {
            return Replay::Fresh;
        }
    }
    Replay::Unavailable
}

/// A fixed-window rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub window_s: u32,
}

/// The outcome of counting a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Allowed,
    /// Over the limit: retry after this many seconds (≥ 1).
    Limited(i64),
    Unavailable,
    /// A remote store must be asked first ([`crate::state::backend::RedisState`]).
    Pending,
}

fn counter_key(scope: &str, client: &str) -> String {
    format!("trustgate:rate:v1:{scope}:{client}")
}

/// Creates the counter of `client` if it does not exist.
pub fn prepare_counter(store: &dyn SharedStore, scope: &str, client: &str) {
    let key = counter_key(scope, client);
    if store.get(&key).is_none() {
        store.set(&key, &[0u8; 12], 0);
    }
}

/// Counts one request of `client` at `now` against `limit`.
pub fn count(
    store: &dyn SharedStore,
    scope: &str,
    client: &str,
    limit: RateLimit,
    now: i64,
) -> Rate {
    let key = counter_key(scope, client);
    let window = i64::from(limit.window_s.max(1));
    let start_now = now - now.rem_euclid(window);
    for _ in 0..16 {
        let Some((value, cas)) = store.get(&key) else {
            return Rate::Unavailable;
        };
        let (start, n) = match <[u8; 12]>::try_from(value.as_slice()) {
            Ok(v) => {
                let (s, c) = v.split_at(8);
                (
                    i64::from_be_bytes(s.try_into().unwrap_or([0; 8])),
                    u32::from_be_bytes(c.try_into().unwrap_or([0; 4])),
                )
            }
            Err(_) => (0, 0),
        };
        let (start, n) = if start == start_now {
            (start, n)
        } else {
            (start_now, 0)
        };
        if n >= limit.requests {
            return Rate::Limited((start + window - now).max(1));
        }
        let mut next = start.to_be_bytes().to_vec();
        next.extend_from_slice(&(n + 1).to_be_bytes());
        if cas != 0 && store.set(&key, &next, cas) {
            return Rate::Allowed;
        }
        if cas == 0 {
            return Rate::Unavailable;
        }
    }
    Rate::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::jwks_cache::MemoryStore;

    #[test]
    fn a_nonce_is_accepted_once_until_it_expires() {
        let store = MemoryStore::default();
        prepare_slots(&store, "gk");
        assert_eq!(
            check_and_record(&store, "gk", "c:n1", 400, 100),
            Replay::Fresh
        );
        assert_eq!(
            check_and_record(&store, "gk", "c:n1", 400, 101),
            Replay::Replayed
        );
        assert_eq!(
            check_and_record(&store, "gk", "c:n2", 400, 101),
            Replay::Fresh
        );
        // Another provider's scope is separate.
        prepare_slots(&store, "other");
        assert_eq!(
            check_and_record(&store, "other", "c:n1", 400, 101),
            Replay::Fresh
        );
        // After expiry the entry is gone (the timestamp window refuses such a request anyway).
        assert_eq!(
            check_and_record(&store, "gk", "c:n1", 900, 401),
            Replay::Fresh
        );
    }

    #[test]
    fn unprepared_slots_fail_closed() {
        let store = MemoryStore::default();
        assert_eq!(
            check_and_record(&store, "gk", "c:n1", 400, 100),
            Replay::Unavailable
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_flood() {
        let store = MemoryStore::default();
        prepare_slots(&store, "gk");
        // 100 000 unique nonces, each living 10 s, arriving 1 000 per second for 100 s.
        for i in 0..100_000i64 {
            let now = i / 1000;
            assert_eq!(
                check_and_record(&store, "gk", &format!("c:{i}"), now + 10, now),
                Replay::Fresh
            );
        }
        // What is stored does not grow with what was seen: ~11 000 live entries, plus expired ones not yet
        // reclaimed (a slot drops them on its next write, about every 16 s at this rate).
        let stored: usize = (0..SLOTS)
            .map(|s| store.get(&slot_key("gk", s)).unwrap().0.len() / ENTRY)
            .sum();
        assert!(
            stored < 30_000,
            "{stored} entries stored after 100 000 nonces"
        );
        assert!(
            stored >= 10_000,
            "{stored}: the live ones must still be there"
        );
    }

    #[test]
    fn a_full_slot_refuses_instead_of_forgetting() {
        let store = MemoryStore::default();
        prepare_slots(&store, "gk");
        let key = slot_key("gk", 7);
        for i in 0..SLOT_CAP as u64 {
            assert_eq!(
                record_in_slot(&store, &key, i.to_be_bytes(), 1000, 0),
                Replay::Fresh
            );
        }
        let next = (SLOT_CAP as u64).to_be_bytes();
        assert_eq!(record_in_slot(&store, &key, next, 1000, 0), Replay::Full);
        assert_eq!(
            record_in_slot(&store, &key, 0u64.to_be_bytes(), 1000, 0),
            Replay::Replayed
        );
        // Once they expire the slot takes new nonces again.
        assert_eq!(
            record_in_slot(&store, &key, next, 2000, 1001),
            Replay::Fresh
        );
        assert_eq!(store.get(&key).unwrap().0.len(), ENTRY);
    }

    #[test]
    fn rate_limit_counts_a_fixed_window() {
        let store = MemoryStore::default();
        prepare_counter(&store, "gk", "c");
        let lim = RateLimit {
            requests: 3,
            window_s: 60,
        };
        assert_eq!(count(&store, "gk", "c", lim, 120), Rate::Allowed);
        assert_eq!(count(&store, "gk", "c", lim, 130), Rate::Allowed);
        assert_eq!(count(&store, "gk", "c", lim, 140), Rate::Allowed);
        assert_eq!(count(&store, "gk", "c", lim, 150), Rate::Limited(30));
        assert_eq!(count(&store, "gk", "c", lim, 179), Rate::Limited(1));
        assert_eq!(count(&store, "gk", "c", lim, 180), Rate::Allowed);
        assert_eq!(count(&store, "gk", "nobody", lim, 180), Rate::Unavailable);
    }
}
