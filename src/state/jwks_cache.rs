//! Remote key sets: the process-wide record of one provider's JWKS, its freshness, its fetch lease, and the
//! rules that decide when to fetch. Pure: the host supplies time and a [`SharedStore`] (proxy-wasm shared
//! data, one per Envoy process, compare-and-swap); tests supply an in-memory store.
//!
//! One record ([`Meta`]) per provider, updated only by compare-and-swap, so that across all worker VMs:
//! - at most one fetch is in flight per provider (a lease with an expiry, [`try_lease`]);
//! - a refetch for an unknown `kid` happens at most once per `min_refresh_s`;
//! - a fetched body is stored once (key `<base>:body`, `<version>\n<jwks>`), and each VM decodes it once per
//!   version;
//! - failures back off (1 s doubling to 30 s) and the last good set stays usable for `max_stale_s` past its TTL.

use crate::formats::jwk::{parse_jwks, JwkError, ParsedJwks};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest JWKS or discovery body accepted.
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// TTL when the response has no usable `Cache-Control: max-age`.
pub const DEFAULT_TTL_S: i64 = 600;
/// Longest pause between retries after failures.
pub const MAX_BACKOFF_S: i64 = 30;

/// Timing settings of one remote key set (all from the config, with defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    pub timeout_ms: u32,
    pub min_refresh_s: i64,
    pub max_refresh_s: i64,
    pub max_stale_s: i64,
    pub startup_wait_ms: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            timeout_ms: 2000,
            min_refresh_s: 60,
            max_refresh_s: 86_400,
            max_stale_s: 86_400,
            startup_wait_ms: 2000,
        }
    }
}

/// The shared record of one provider's key set. Every field is process-wide.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Version of the stored body; 0 while no key set was ever fetched.
    pub version: u64,
    /// When the stored set was fetched.
    pub fetched_at: i64,
    /// Until when it is fresh (fetched_at + TTL).
    pub fresh_until: i64,
    /// Consecutive failed fetches.
    pub failures: u32,
    /// No scheduled fetch before this time (backoff after failures).
    pub next_attempt: i64,
    /// A fetch is in flight until this time (the lease).
    pub lease_until: i64,
    /// When the last refetch for an unknown `kid` started.
    pub last_kid_refetch: i64,
    /// Fetch attempts finished (ok or failed): waiters wake when it moves.
    pub completed: u64,
    /// The `jwks_uri` a discovery document gave, as (authority, path), reused until a fetch fails.
    pub jwks_target: Option<(String, String)>,
}

/// Why a fetch is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Startup, expiry, or a retry after failure.
    Scheduled,
    /// A token named a `kid` the current set does not have.
    UnknownKid,
}

impl Meta {
    /// A key set was fetched at least once.
    pub fn has_keys(&self) -> bool {
        self.version > 0
    }

    /// The stored key set may still be used at `now` (fresh, or stale for less than `max_stale_s`).
    pub fn usable_until(&self, t: &Timing) -> i64 {
        if self.has_keys() {
            self.fresh_until.saturating_add(t.max_stale_s)
        } else {
            i64::MIN
        }
    }

    /// Serving a set past its TTL because refreshes fail.
    pub fn is_stale(&self, now: i64) -> bool {
        self.has_keys() && now > self.fresh_until
    }

    /// A fetch holds the lease.
    pub fn leased(&self, now: i64) -> bool {
        now < self.lease_until
    }

    /// A scheduled fetch should start: no set yet, or the set is within its refresh margin, and no backoff.
    pub fn due(&self, now: i64) -> bool {
        if self.leased(now) || now < self.next_attempt {
            return false;
        }
        if !self.has_keys() {
            return true;
        }
        let ttl = self.fresh_until.saturating_sub(self.fetched_at).max(1);
        // Refresh ahead of expiry: a tenth of the TTL, at most a minute.
        let margin = (ttl / 10).clamp(0, 60);
        now >= self.fresh_until.saturating_sub(margin)
    }

    /// Seconds a client should wait before retrying while no key set is usable.
    pub fn retry_after(&self, now: i64) -> i64 {
        self.next_attempt
            .saturating_sub(now)
            .clamp(1, MAX_BACKOFF_S)
    }
}

/// The record with a lease taken for a fetch started at `now`, or `None` when this trigger may not fetch now.
pub fn try_lease(meta: &Meta, now: i64, t: &Timing, trigger: Trigger, steps: u32) -> Option<Meta> {
    if meta.leased(now) {
        return None;
    }
    let mut m = meta.clone();
    match trigger {
        Trigger::Scheduled if !meta.due(now) => return None,
        Trigger::Scheduled => {}
        Trigger::UnknownKid => {
            // 0: never refetched for an unknown kid.
            if meta.last_kid_refetch != 0
                && now < meta.last_kid_refetch.saturating_add(t.min_refresh_s)
            {
                return None;
            }
            m.last_kid_refetch = now;
        }
    }
    // Each step (discovery, JWKS) may take the whole timeout; one second more for the host's own delays.
    let lease_ms = i64::from(t.timeout_ms).saturating_mul(i64::from(steps.max(1)));
    m.lease_until = now.saturating_add(lease_ms / 1000 + 2);
    Some(m)
}

/// The record after a successful fetch of a body stored as `meta.version + 1`.
pub fn fetched(meta: &Meta, now: i64, ttl_s: i64, jwks_target: Option<(String, String)>) -> Meta {
    Meta {
        version: meta.version.saturating_add(1),
        fetched_at: now,
        fresh_until: now.saturating_add(ttl_s),
        failures: 0,
        next_attempt: 0,
        lease_until: 0,
        last_kid_refetch: meta.last_kid_refetch,
        completed: meta.completed.saturating_add(1),
        jwks_target: jwks_target.or_else(|| meta.jwks_target.clone()),
    }
}

/// The record after a failed fetch: lease released, next attempt backed off, discovery redone next time.
pub fn failed(meta: &Meta, now: i64) -> Meta {
    let failures = meta.failures.saturating_add(1);
    let backoff = 1i64
        .checked_shl(failures.saturating_sub(1).min(16))
        .unwrap_or(MAX_BACKOFF_S)
        .min(MAX_BACKOFF_S);
    Meta {
        failures,
        next_attempt: now.saturating_add(backoff),
        lease_until: 0,
        completed: meta.completed.saturating_add(1),
        jwks_target: None,
        ..meta.clone()
    }
}

/// TTL from a `Cache-Control` value: `max-age` clamped to `[min_refresh_s, max_refresh_s]`, else 600 s
/// (also clamped). `no-cache`/`no-store` count as `max-age=0`, so the minimum applies.
pub fn ttl_from_cache_control(value: Option<&str>, t: &Timing) -> i64 {
    let mut ttl = DEFAULT_TTL_S;
    if let Some(v) = value {
        for directive in v.split(',') {
            let d = directive.trim().to_ascii_lowercase();
            if d == "no-cache" || d == "no-store" {
                ttl = 0;
            } else if let Some(n) = d.strip_prefix("max-age=") {
                if let Ok(n) = n.trim_matches('"').parse::<i64>() {
                    ttl = n;
                }
            }
        }
    }
    ttl.clamp(t.min_refresh_s, t.max_refresh_s.max(t.min_refresh_s))
}

/// Why a fetch failed. `Display` is the log text: status, timeout, parse error at which key. No body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The host could not send the request (unknown cluster, ...).
    Dispatch(String),
    /// No response: connection refused or reset.
    NoResponse,
    /// No response within `timeout_ms` (Envoy answers the call itself with 504).
    Timeout(u32),
    /// Envoy could not reach the cluster (its own 503: no healthy upstream, connect error).
    Unreachable(String),
    Status(u32),
    TooLarge(usize),
    InvalidJson,
    NotAJwks,
    NoUsableKey(Vec<(usize, JwkError)>),
    IssuerMismatch {
        got: String,
        expected: String,
    },
    BadJwksUri(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Dispatch(why) => write!(f, "could not dispatch: {why} (is the cluster defined in the Envoy config?)"),
            FetchError::NoResponse => f.write_str("no response: connection refused or reset"),
            FetchError::Timeout(ms) => write!(f, "timeout: no response within {ms} ms"),
            FetchError::Unreachable(why) => write!(f, "cluster unreachable: {why}"),
            FetchError::Status(s) => write!(f, "status {s}, expected 200"),
            FetchError::TooLarge(n) => write!(f, "body over 512 KiB ({n} bytes)"),
            FetchError::InvalidJson => f.write_str("invalid JSON"),
            FetchError::NotAJwks => f.write_str("not a JWK Set: expected an object with a \"keys\" array"),
            FetchError::NoUsableKey(refused) => {
                f.write_str("no usable key")?;
                for (i, e) in refused {
                    write!(f, "; key [{i}]: {e}")?;
                }
                Ok(())
            }
            FetchError::IssuerMismatch { got, expected } => write!(
                f,
                "discovery issuer mismatch: the document says {got:?}, the provider expects {expected:?}"
            ),
            FetchError::BadJwksUri(why) => write!(f, "discovery document: {why}"),
        }
    }
}

/// Tells Envoy's own answers to a failed call (a timeout, an unreachable cluster) from a server's status.
pub fn classify_status(status: u32, body: &[u8], timeout_ms: u32) -> FetchError {
    let head =
        String::from_utf8_lossy(body.get(..body.len().min(120)).unwrap_or_default()).into_owned();
    match status {
        504 if head.starts_with("upstream request timeout") => FetchError::Timeout(timeout_ms),
        503 if head.starts_with("no healthy upstream")
            || head.starts_with("upstream connect error") =>
        {
            FetchError::Unreachable(
                head.lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect(),
            )
        }
        s => FetchError::Status(s),
    }
}

/// Checks a fetched JWKS body: size, JSON, at least one usable key. Refused keys are returned for logging.
pub fn check_jwks(body: &[u8]) -> Result<ParsedJwks, FetchError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(FetchError::TooLarge(body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|_| FetchError::InvalidJson)?;
    let parsed = parse_jwks(text).map_err(|e| match e {
        crate::formats::jwk::JwksError::Json => FetchError::InvalidJson,
        crate::formats::jwk::JwksError::NoKeysArray => FetchError::NotAJwks,
    })?;
    if parsed.keys.is_empty() {
        return Err(FetchError::NoUsableKey(parsed.refused));
    }
    Ok(parsed)
}

/// `(authority, path)` of an `http`/`https` URL. `None` for anything else.
pub fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains(['@', ' ']) || path.contains(['#', ' ']) {
        return None;
    }
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    Some((authority.to_owned(), path))
}

/// The discovery document path for an issuer: `<issuer path>/.well-known/openid-configuration`.
pub fn discovery_path(issuer: &str) -> Option<String> {
    let (_, path) = split_url(issuer)?;
    if path.contains('?') {
        return None;
    }
    Some(format!(
        "{}/.well-known/openid-configuration",
        path.trim_end_matches('/')
    ))
}

/// Reads a discovery document: its `issuer` must equal `issuer` exactly; returns the `jwks_uri` target.
pub fn parse_discovery(body: &[u8], issuer: &str) -> Result<(String, String), FetchError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(FetchError::TooLarge(body.len()));
    }
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| FetchError::InvalidJson)?;
    let got = doc
        .get("issuer")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if got != issuer {
        return Err(FetchError::IssuerMismatch {
            got: got.chars().take(200).collect(),
            expected: issuer.to_owned(),
        });
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or_else(|| FetchError::BadJwksUri("no \"jwks_uri\" string".into()))?;
    split_url(uri)
        .ok_or_else(|| FetchError::BadJwksUri("\"jwks_uri\" is not an http(s) URL".into()))
}

/// Process-wide key/value storage with compare-and-swap (proxy-wasm shared data).
pub trait SharedStore {
    /// The value and its CAS token, or `None` when the key was never set.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if the key's CAS token is still `cas` (0: unconditionally). False on a CAS mismatch or
    /// a host error.
    fn set(&self, key: &str, value: &[u8], cas: u32) -> bool;
}

/// The shared-data key of a provider's record; `base` already names provider and source.
pub fn meta_key(base: &str) -> String {
    format!("{base}:meta")
}

/// The shared-data key of a provider's fetched body.
pub fn body_key(base: &str) -> String {
    format!("{base}:body")
}

/// The shared-data key of the stored version alone: 8 bytes a request can read cheaply to learn that
/// another VM stored a newer key set.
pub fn version_key(base: &str) -> String {
    format!("{base}:version")
}

/// Publishes the stored version (after the record names it).
pub fn write_version(store: &dyn SharedStore, base: &str, version: u64) -> bool {
    store.set(&version_key(base), &version.to_be_bytes(), 0)
}

/// The published version (0: none).
pub fn read_version(store: &dyn SharedStore, base: &str) -> u64 {
    store
        .get(&version_key(base))
        .and_then(|(v, _)| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, u64::from_be_bytes)
}

/// Reads a provider's record (a default record when there is none, or when it does not parse).
pub fn read_meta(store: &dyn SharedStore, base: &str) -> (Meta, u32) {
    match store.get(&meta_key(base)) {
        Some((bytes, cas)) => (serde_json::from_slice(&bytes).unwrap_or_default(), cas),
        None => (Meta::default(), 0),
    }
}

/// Creates the provider's record if there is none. Called once per VM at configure time, so that every later
/// update is a true compare-and-swap (Envoy treats CAS 0 as "unconditional", which only creation may use).
pub fn ensure_meta(store: &dyn SharedStore, base: &str) {
    if store.get(&meta_key(base)).is_none() {
        if let Ok(bytes) = serde_json::to_vec(&Meta::default()) {
            store.set(&meta_key(base), &bytes, 0);
        }
    }
}

/// Applies `change` to the record with compare-and-swap, retrying on conflicts. Returns the record written,
/// or `None` when `change` declined (returned `None`) or the store kept refusing.
pub fn update_meta(
    store: &dyn SharedStore,
    base: &str,
    mut change: impl FnMut(&Meta) -> Option<Meta>,
) -> Option<Meta> {
    for _ in 0..16 {
        let (current, cas) = read_meta(store, base);
        let next = change(&current)?;
        let Ok(bytes) = serde_json::to_vec(&next) else {
            return None;
        };
        if store.set(&meta_key(base), &bytes, cas) {
            return Some(next);
        }
    }
    None
}

/// Stores a fetched body under the version `version`.
pub fn write_body(store: &dyn SharedStore, base: &str, version: u64, body: &[u8]) -> bool {
    let mut value = format!("{version}\n").into_bytes();
    value.extend_from_slice(body);
    store.set(&body_key(base), &value, 0)
}

/// Reads the stored body: `(version, jwks bytes)`.
pub fn read_body(store: &dyn SharedStore, base: &str) -> Option<(u64, Vec<u8>)> {
    let (value, _) = store.get(&body_key(base))?;
    let nl = value.iter().position(|&b| b == b'\n')?;
    let (head, rest) = value.split_at(nl);
    let version = std::str::from_utf8(head).ok()?.parse().ok()?;
    Some((version, rest.get(1..)?.to_vec()))
}

/// An in-memory [`SharedStore`] with the same CAS semantics as Envoy's shared data, for tests and the CLI.
#[derive(Default)]
pub struct MemoryStore {
    cells: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
    next_cas: std::cell::Cell<u32>,
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.cells.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> bool {
        let mut cells = self.cells.borrow_mut();
        if cas != 0 && cells.get(key).map(|(_, c)| *c) != Some(cas) {
            return false;
        }
        let next = self.next_cas.get().wrapping_add(1).max(1);
        self.next_cas.set(next);
        cells.insert(key.to_owned(), (value.to_vec(), next));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Timing {
        Timing::default()
    }

    #[test]
    fn ttl_follows_max_age_within_bounds() {
        let t = t();
        assert_eq!(ttl_from_cache_control(None, &t), 600);
        assert_eq!(
            ttl_from_cache_control(Some("public, max-age=3600"), &t),
            3600
        );
        assert_eq!(ttl_from_cache_control(Some("max-age=5"), &t), 60);
        assert_eq!(ttl_from_cache_control(Some("max-age=999999"), &t), 86_400);
        assert_eq!(ttl_from_cache_control(Some("no-store"), &t), 60);
        assert_eq!(ttl_from_cache_control(Some("max-age=abc"), &t), 600);
        assert_eq!(ttl_from_cache_control(Some("Max-Age=\"120\""), &t), 120);
    }

    #[test]
    fn one_lease_at_a_time_across_vms() {
        let store = MemoryStore::default();
        ensure_meta(&store, "p");
        let t = t();
        let a = update_meta(&store, "p", |m| {
            try_lease(m, 100, &t, Trigger::Scheduled, 1)
        });
        assert!(a.is_some());
        // Another VM, same second: the lease is held.
        let b = update_meta(&store, "p", |m| {
            try_lease(m, 100, &t, Trigger::Scheduled, 1)
        });
        assert!(b.is_none());
        let b = update_meta(&store, "p", |m| {
            try_lease(m, 100, &t, Trigger::UnknownKid, 1)
        });
        assert!(b.is_none());
        // The lease expires if its holder never reports back.
        let c = update_meta(&store, "p", |m| {
            try_lease(m, 104, &t, Trigger::Scheduled, 1)
        });
        assert!(c.is_some());
    }

    #[test]
    fn cas_conflicts_are_retried_not_lost() {
        let store = MemoryStore::default();
        ensure_meta(&store, "p");
        let mut first = true;
        let written = update_meta(&store, "p", |m| {
            if first {
                first = false;
                // Someone else writes between our read and our write.
                let other = Meta {
                    failures: 7,
                    ..m.clone()
                };
                assert!(store.set(&meta_key("p"), &serde_json::to_vec(&other).unwrap(), 0));
            }
            Some(Meta {
                completed: m.completed + 1,
                ..m.clone()
            })
        })
        .unwrap();
        assert_eq!(
            written.failures, 7,
            "the change was re-applied on the newer record"
        );
        assert_eq!(read_meta(&store, "p").0, written);
    }

    #[test]
    fn success_bumps_the_version_and_schedules_refresh_before_expiry() {
        let t = t();
        let m = try_lease(&Meta::default(), 1000, &t, Trigger::Scheduled, 1).unwrap();
        let m = fetched(&m, 1000, 600, None);
        assert_eq!(m.version, 1);
        assert!(!m.leased(1000));
        assert!(!m.due(1000));
        assert!(!m.due(1539));
        assert!(
            m.due(1540),
            "refresh 60 s (a tenth of the TTL) before expiry"
        );
        assert_eq!(m.usable_until(&t), 1600 + 86_400);
        assert!(!m.is_stale(1600));
        assert!(m.is_stale(1601));
    }

    #[test]
    fn failures_back_off_and_keep_the_last_good_set() {
        let mut m = fetched(&Meta::default(), 0, 600, None);
        let mut waits = Vec::new();
        for i in 0..8 {
            let now = 600 + i;
            m = failed(&m, now);
            waits.push(m.next_attempt - now);
            assert_eq!(m.version, 1, "the good set stays");
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert!(!m.due(m.next_attempt - 1));
        assert!(m.due(m.next_attempt));
        let m = fetched(&m, 700, 600, None);
        assert_eq!((m.failures, m.version), (0, 2));
    }

    #[test]
    fn unknown_kid_refetch_at_most_once_per_min_refresh() {
        let t = t();
        let m = fetched(&Meta::default(), 0, 600, None);
        let m = try_lease(&m, 10, &t, Trigger::UnknownKid, 1).unwrap();
        let m = fetched(&m, 11, 600, None);
        assert!(try_lease(&m, 12, &t, Trigger::UnknownKid, 1).is_none());
        assert!(try_lease(&m, 69, &t, Trigger::UnknownKid, 1).is_none());
        assert!(try_lease(&m, 70, &t, Trigger::UnknownKid, 1).is_some());
    }

    #[test]
    fn body_round_trips_with_its_version() {
        let store = MemoryStore::default();
        assert_eq!(read_version(&store, "p"), 0);
        assert!(write_version(&store, "p", 9));
        assert_eq!(read_version(&store, "p"), 9);
        assert!(write_body(&store, "p", 3, b"{\"keys\":[]}\n"));
        assert_eq!(
            read_body(&store, "p"),
            Some((3, b"{\"keys\":[]}\n".to_vec()))
        );
        assert!(read_body(&store, "q").is_none());
    }

    #[test]
    fn envoy_local_replies_are_named() {
        assert_eq!(
            classify_status(504, b"upstream request timeout", 1000),
            FetchError::Timeout(1000)
        );
        assert_eq!(
            classify_status(504, b"gateway says no", 1000),
            FetchError::Status(504)
        );
        assert!(matches!(
            classify_status(503, b"no healthy upstream", 1000),
            FetchError::Unreachable(_)
        ));
        assert_eq!(classify_status(500, b"", 1000), FetchError::Status(500));
        assert_eq!(
            FetchError::Timeout(1000).to_string(),
            "timeout: no response within 1000 ms"
        );
    }

    #[test]
    fn jwks_bodies_are_checked() {
        assert_eq!(check_jwks(b"nope").unwrap_err(), FetchError::InvalidJson);
        assert_eq!(check_jwks(b"{}").unwrap_err(), FetchError::NotAJwks);
        assert!(matches!(
            check_jwks(br#"{"keys":[{"kty":"EC","crv":"P-521"}]}"#),
            Err(FetchError::NoUsableKey(_))
        ));
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            check_jwks(&big).unwrap_err(),
            FetchError::TooLarge(MAX_BODY_BYTES + 1)
        );
        let p =
            check_jwks(br#"{"keys":[{"kty":"EC","crv":"P-521"},{"kty":"oct","k":"c2VjcmV0"}]}"#)
                .unwrap();
        assert_eq!((p.keys.len(), p.refused.len()), (1, 1));
        let msg = FetchError::NoUsableKey(vec![(0, JwkError::Missing("kty"))]).to_string();
        assert_eq!(
            msg,
            "no usable key; key [0]: kty: missing, a required member of this key type"
        );
    }

    #[test]
    fn discovery_documents_are_checked() {
        assert_eq!(
            discovery_path("https://idp.example.com/realms/demo/").as_deref(),
            Some("/realms/demo/.well-known/openid-configuration")
        );
        assert_eq!(
            discovery_path("https://accounts.google.com").as_deref(),
            Some("/.well-known/openid-configuration")
        );
        assert_eq!(discovery_path("idp"), None);
        let doc = br#"{"issuer":"https://idp/r","jwks_uri":"https://keys.idp:8443/r/certs?v=2"}"#;
        assert_eq!(
            parse_discovery(doc, "https://idp/r").unwrap(),
            ("keys.idp:8443".to_string(), "/r/certs?v=2".to_string())
        );
        assert!(matches!(
            parse_discovery(doc, "https://idp/r/"),
            Err(FetchError::IssuerMismatch { .. })
        ));
        let doc = br#"{"issuer":"https://idp/r","jwks_uri":"file:///etc/passwd"}"#;
        assert!(matches!(
            parse_discovery(doc, "https://idp/r"),
            Err(FetchError::BadJwksUri(_))
        ));
        assert_eq!(
            parse_discovery(b"[", "x").unwrap_err(),
            FetchError::InvalidJson
        );
    }
}
