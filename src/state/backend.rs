//! The state backend: "record this id until T unless present" (replay nonces of hmac, signet,
//! http_signature and DPoP) and "count this client in this window" (rate limits), behind one trait with two
//! implementations:
//! - [`LocalState`]: the proxy's shared data ([`crate::state::replay`]), one Envoy process; the default.
//! - [`RedisState`]: Redis through webdis ([`crate::state::redis`]), one fleet. The core cannot make the
//!   call, so the first check answers [`Replay::Pending`] / [`Rate::Pending`] and leaves the [`Command`] to
//!   run in [`RedisState::needed`]; the host runs it, pauses the request, and decides again with the answer
//!   added to the ones it already has. Each answer is for this request only: deciding again is idempotent.

use crate::state::jwks_cache::SharedStore;
use crate::state::redis::{Answer, Command, RedisConfig};
use crate::state::replay::{self, Rate, RateLimit, Replay};
use std::cell::RefCell;

/// Where nonces and counters live.
pub trait StateBackend {
    /// Records `id` for provider `scope` until `expires_at`, unless it is there.
    fn record(&self, scope: &str, id: &str, expires_at: i64, now: i64) -> Replay;
    /// Counts one request of `client` against `limit`.
    fn count(&self, scope: &str, client: &str, limit: RateLimit, now: i64) -> Rate;
}

/// The proxy's shared data.
pub struct LocalState<'a>(pub &'a dyn SharedStore);

impl StateBackend for LocalState<'_> {
    fn record(&self, scope: &str, id: &str, expires_at: i64, now: i64) -> Replay {
        replay::check_and_record(self.0, scope, id, expires_at, now)
    }

    fn count(&self, scope: &str, client: &str, limit: RateLimit, now: i64) -> Rate {
        replay::count(self.0, scope, client, limit, now)
    }
}

/// Redis, as far as this request has heard from it.
pub struct RedisState<'a> {
    config: &'a RedisConfig,
    answers: &'a [(Command, Answer)],
    needed: RefCell<Option<Command>>,
}

impl<'a> RedisState<'a> {
    /// The store of `config`, with the `answers` this request already has.
    pub fn new(config: &'a RedisConfig, answers: &'a [(Command, Answer)]) -> RedisState<'a> {
        RedisState {
            config,
            answers,
            needed: RefCell::new(None),
        }
    }

    /// The first command a check asked for and had no answer to.
    pub fn needed(&self) -> Option<Command> {
        self.needed.borrow().clone()
    }

    fn answer(&self, cmd: Command) -> Option<Answer> {
        let found = self
            .answers
            .iter()
            .find(|(c, _)| c.same_key(&cmd))
            .map(|(_, a)| *a);
        if found.is_none() {
            if let Ok(mut n) = self.needed.try_borrow_mut() {
                n.get_or_insert(cmd);
            }
        }
        found
    }
}

impl StateBackend for RedisState<'_> {
    fn record(&self, scope: &str, id: &str, expires_at: i64, now: i64) -> Replay {
        let cmd = self
            .config
            .nonce(scope, id, expires_at.saturating_sub(now).saturating_add(1));
        match self.answer(cmd) {
            None => Replay::Pending,
            Some(Answer::Nonce(true)) => Replay::Fresh,
            Some(Answer::Nonce(false)) => Replay::Replayed,
            Some(Answer::Count { .. }) => Replay::Unavailable,
        }
    }

    fn count(&self, scope: &str, client: &str, limit: RateLimit, _now: i64) -> Rate {
        let cmd = self.config.count(scope, client, limit.window_s);
        match self.answer(cmd) {
            None => Rate::Pending,
            Some(Answer::Count { hits, .. }) if hits <= u64::from(limit.requests) => Rate::Allowed,
            Some(Answer::Count { ttl_s, .. }) => Rate::Limited(ttl_s.max(1)),
            Some(Answer::Nonce(_)) => Rate::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RedisConfig {
        RedisConfig::example()
    }

    #[test]
    fn a_nonce_waits_for_its_answer_then_reads_it() {
        let c = cfg();
        let s = RedisState::new(&c, &[]);
        assert_eq!(s.record("gk", "c:n", 400, 100), Replay::Pending);
        let cmd = s.needed().unwrap();
        assert_eq!(cmd, c.nonce("gk", "c:n", 301));
        let fresh = [(cmd.clone(), Answer::Nonce(true))];
        let s = RedisState::new(&c, &fresh);
        assert_eq!(s.record("gk", "c:n", 400, 100), Replay::Fresh);
        assert_eq!(s.needed(), None);
        // Decided again a second later: the same answer, not a replay of itself.
        let s = RedisState::new(&c, &fresh);
        assert_eq!(s.record("gk", "c:n", 400, 101), Replay::Fresh);
        let seen = [(cmd, Answer::Nonce(false))];
        assert_eq!(
            RedisState::new(&c, &seen).record("gk", "c:n", 400, 100),
            Replay::Replayed
        );
    }

    #[test]
    fn a_count_over_the_limit_retries_after_the_window() {
        let c = cfg();
        let lim = RateLimit {
            requests: 2,
            window_s: 60,
        };
        let s = RedisState::new(&c, &[]);
        assert_eq!(s.count("gk", "c", lim, 0), Rate::Pending);
        let cmd = s.needed().unwrap();
        let at = |hits, ttl_s| [(cmd.clone(), Answer::Count { hits, ttl_s })];
        assert_eq!(
            RedisState::new(&c, &at(2, 60)).count("gk", "c", lim, 0),
            Rate::Allowed
        );
        assert_eq!(
            RedisState::new(&c, &at(3, 42)).count("gk", "c", lim, 0),
            Rate::Limited(42)
        );
        assert_eq!(
            RedisState::new(&c, &at(3, -1)).count("gk", "c", lim, 0),
            Rate::Limited(1)
        );
    }
}
