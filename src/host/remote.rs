//! One remote key set as one VM sees it: the decoded keys of the stored version, the fetch this VM runs
//! (when it holds the lease), and what a waiting request should expect. The rules themselves (lease, TTL,
//! backoff, rate limit) are in [`crate::state::jwks_cache`]; this file does the host calls.

use super::store::HostStore;
use super::{log, Metrics};
use crate::decision::Reason;
use crate::formats::jwk::Jwk;
use crate::providers::jwt_keys::{RemoteSource, RemoteTarget};
use crate::state::jwks_cache::{
    check_jwks, classify_status, ensure_meta, failed, fetched, parse_discovery, read_body,
    read_meta, read_version, try_lease, ttl_from_cache_control, update_meta, write_body,
    write_version, FetchError, Meta, Trigger, MAX_BODY_BYTES,
};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};
use std::rc::Rc;
use std::time::Duration;

/// The decoded keys of one stored version.
struct Local {
    version: u64,
    keys: Rc<[Jwk]>,
}

/// What a fetch in flight is fetching.
enum Stage {
    Discovery,
    Jwks { authority: String, path: String },
}

struct InFlight {
    token: u32,
    stage: Stage,
    url: String,
}

#[derive(Default)]
struct RemoteMetrics {
    fetch_ok: Option<u32>,
    fetch_failed: Option<u32>,
    keys: Option<u32>,
    stale: Option<u32>,
}

/// One provider's remote key set in this VM.
pub struct Remote {
    /// Index of the provider in the policy.
    pub provider: usize,
    name: String,
    src: RemoteSource,
    /// The shared record as last read.
    meta: Meta,
    local: Option<Local>,
    in_flight: Option<InFlight>,
    /// A fetch wanted by a request (started on the next tick).
    want: Option<Trigger>,
    last_sync_ms: u64,
    metrics: RemoteMetrics,
}

impl Remote {
    /// Sets up the shared record and this VM's metrics.
    pub fn new(provider: usize, name: &str, src: RemoteSource) -> Remote {
        ensure_meta(&HostStore, &src.store_base);
        let m = |kind, what: &str| {
            hostcalls::define_metric(kind, &format!("trustgate.jwks.{name}.{what}")).ok()
        };
        let metrics = RemoteMetrics {
            fetch_ok: m(MetricType::Counter, "fetch_ok"),
            fetch_failed: m(MetricType::Counter, "fetch_failed"),
            keys: m(MetricType::Gauge, "keys"),
            stale: m(MetricType::Gauge, "stale"),
        };
        Remote {
            provider,
            name: name.to_owned(),
            src,
            meta: Meta::default(),
            local: None,
            in_flight: None,
            want: None,
            last_sync_ms: 0,
            metrics,
        }
    }

    /// The usable keys at `now`: the stored version, fresh or stale for less than `max_stale_s`.
    pub fn keys(&self, now: i64) -> Option<Rc<[Jwk]>> {
        let local = self.local.as_ref()?;
        (local.version == self.meta.version && now <= self.meta.usable_until(&self.src.timing))
            .then(|| local.keys.clone())
    }

    /// The version of the decoded keys (0: none).
    pub fn version(&self) -> u64 {
        self.local.as_ref().map_or(0, |l| l.version)
    }

    /// Fetches finished so far, process-wide, as last read.
    pub fn completed(&self) -> u64 {
        self.meta.completed
    }

    /// Seconds a client should wait before retrying while no keys are usable.
    pub fn retry_after(&self, now: i64) -> i64 {
        self.meta.retry_after(now)
    }

    /// Whether this VM started the fetch `token`.
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.token == token)
    }

    /// Re-reads the shared record, and the body when its version moved. True when the keys changed.
    pub fn sync(&mut self, now: i64, now_ms: u64, every_ms: u64) -> bool {
        if now_ms.saturating_sub(self.last_sync_ms) < every_ms {
            return false;
        }
        self.last_sync_ms = now_ms;
        let (meta, _) = read_meta(&HostStore, &self.src.store_base);
        self.meta = meta;
        let mut changed = false;
        if self.meta.has_keys() && self.version() != self.meta.version {
            if let Some((version, body)) = read_body(&HostStore, &self.src.store_base) {
                // The fetching VM checked the body; a body that does not decode here is left unused.
                if let Ok(parsed) = check_jwks(&body) {
                    self.local = Some(Local {
                        version,
                        keys: parsed.keys.into(),
                    });
                    changed = true;
                }
            }
        }
        let keys = self.keys(now).map_or(0, |k| k.len());
        Metrics::record(self.metrics.keys, keys as u64);
        Metrics::record(
            self.metrics.stale,
            u64::from(keys > 0 && self.meta.is_stale(now)),
        );
        changed
    }

    /// Forces the next [`Remote::sync`] to read.
    pub fn invalidate(&mut self) {
        self.last_sync_ms = 0;
    }

    /// How long a request refused for `reason` should wait for a fetch (an absolute deadline in ms), or
    /// `None` when no fetch will come in time and the refusal is final.
    pub fn wait_deadline(&mut self, reason: Reason, now: i64, now_ms: u64) -> Option<u64> {
        let t = &self.src.timing;
        let fetch_ms = u64::from(t.timeout_ms)
            .saturating_mul(u64::from(self.src.steps()))
            .saturating_add(1000);
        let busy = self.meta.leased(now) || self.in_flight.is_some();
        match reason {
            Reason::UnknownKid => {
                if busy {
                    return Some(now_ms.saturating_add(fetch_ms));
                }
                try_lease(&self.meta, now, t, Trigger::UnknownKid, self.src.steps())?;
                self.want = Some(Trigger::UnknownKid);
                Some(now_ms.saturating_add(fetch_ms))
            }
            Reason::KeysUnavailable => {
                let wait = u64::from(t.startup_wait_ms);
                let next_ms = u64::try_from(self.meta.next_attempt.max(0))
                    .unwrap_or(0)
                    .saturating_mul(1000);
                let coming = busy || self.meta.due(now) || next_ms <= now_ms.saturating_add(wait);
                if wait == 0 || !coming {
                    return None;
                }
                self.want.get_or_insert(Trigger::Scheduled);
                Some(now_ms.saturating_add(wait))
            }
            _ => None,
        }
    }

    /// Starts a fetch if one is wanted or due and this VM gets the lease.
    pub fn maybe_fetch(&mut self, now: i64) {
        if self.in_flight.is_some() {
            return;
        }
        let trigger = match self.want.take() {
            Some(t) => t,
            None if self.meta.due(now) => Trigger::Scheduled,
            None => return,
        };
        let (timing, steps) = (self.src.timing.clone(), self.src.steps());
        let Some(meta) = update_meta(&HostStore, &self.src.store_base, |m| {
            try_lease(m, now, &timing, trigger, steps)
        }) else {
            // Another VM holds the lease (its result reaches us through sync), or it is too early.
            return;
        };
        self.meta = meta;
        let stage = match (&self.src.target, &self.meta.jwks_target) {
            (RemoteTarget::Jwks { path }, _) => Stage::Jwks {
                authority: self.src.authority.clone(),
                path: path.clone(),
            },
            (RemoteTarget::Discovery { .. }, Some((authority, path))) => Stage::Jwks {
                authority: authority.clone(),
                path: path.clone(),
            },
            (RemoteTarget::Discovery { .. }, None) => Stage::Discovery,
        };
        self.dispatch(stage, now);
    }

    fn dispatch(&mut self, stage: Stage, now: i64) {
        let (authority, path) = match &stage {
            Stage::Discovery => match &self.src.target {
                RemoteTarget::Discovery { path, .. } => {
                    (self.src.authority.as_str(), path.as_str())
                }
                RemoteTarget::Jwks { path } => (self.src.authority.as_str(), path.as_str()),
            },
            Stage::Jwks { authority, path } => (authority.as_str(), path.as_str()),
        };
        let url = self.src.describe(authority, path);
        let headers = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", authority),
            ("accept", "application/json"),
            ("user-agent", "trustgate"),
        ];
        let timeout = Duration::from_millis(u64::from(self.src.timing.timeout_ms));
        match hostcalls::dispatch_http_call(&self.src.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                log(
                    LogLevel::Info,
                    &format!(
                        "trustgate: jwks provider={} url={url} fetch started",
                        self.name
                    ),
                );
                self.in_flight = Some(InFlight { token, stage, url });
            }
            Err(status) => self.fail(&url, &FetchError::Dispatch(format!("{status:?}")), now),
        }
    }

    fn fail(&mut self, url: &str, e: &FetchError, now: i64) {
        log(
            LogLevel::Warn,
            &format!(
                "trustgate: jwks provider={} url={url} fetch failed: {e}",
                self.name
            ),
        );
        Metrics::bump(self.metrics.fetch_failed.as_ref());
        if let Some(m) = update_meta(&HostStore, &self.src.store_base, |m| Some(failed(m, now))) {
            self.meta = m;
        }
        self.invalidate();
    }

    /// Handles the response to this VM's fetch `token`.
    pub fn on_response(&mut self, num_headers: usize, body_size: usize, now: i64) {
        let Some(f) = self.in_flight.take() else {
            return;
        };
        let response = read_response(num_headers, body_size, self.src.timing.timeout_ms);
        match (f.stage, response) {
            (_, Err(e)) => self.fail(&f.url, &e, now),
            (Stage::Discovery, Ok((body, _))) => {
                let RemoteTarget::Discovery { issuer, .. } = &self.src.target else {
                    return;
                };
                match parse_discovery(&body, issuer) {
                    Ok((authority, path)) => self.dispatch(Stage::Jwks { authority, path }, now),
                    Err(e) => self.fail(&f.url, &e, now),
                }
            }
            (Stage::Jwks { authority, path }, Ok((body, cache_control))) => match check_jwks(&body)
            {
                Err(e) => self.fail(&f.url, &e, now),
                Ok(parsed) => {
                    for (i, e) in &parsed.refused {
                        // The inline set's classification (policy::config): a key that cannot verify a JWS
                        // is skipped there too; a malformed one is refused there, skipped here, so one bad
                        // entry does not take every key of a running identity provider away.
                        let why = if e.cannot_verify_jws() {
                            "cannot verify a JWS"
                        } else {
                            "malformed"
                        };
                        log(
                            LogLevel::Warn,
                            &format!(
                                "trustgate: jwks provider={} url={} skipped key [{i}] ({why}): {e}",
                                self.name, f.url
                            ),
                        );
                    }
                    let ttl = ttl_from_cache_control(cache_control.as_deref(), &self.src.timing);
                    let discovered = matches!(self.src.target, RemoteTarget::Discovery { .. })
                        .then_some((authority, path));
                    self.store(&body, ttl, discovered, now);
                    log(
                        LogLevel::Info,
                        &format!(
                            "trustgate: jwks provider={} url={} fetch ok: {} keys, {} skipped, ttl {ttl}s, version {}",
                            self.name,
                            f.url,
                            parsed.keys.len(),
                            parsed.refused.len(),
                            self.meta.version
                        ),
                    );
                    Metrics::bump(self.metrics.fetch_ok.as_ref());
                }
            },
        }
    }

    /// Stores a good body and its record (body first, so a reader that sees the new version finds it).
    fn store(&mut self, body: &[u8], ttl: i64, jwks_target: Option<(String, String)>, now: i64) {
        let base = self.src.store_base.clone();
        let version = read_meta(&HostStore, &base).0.version.saturating_add(1);
        write_body(&HostStore, &base, version, body);
        let written = update_meta(&HostStore, &base, |m| {
            let mut next = fetched(m, now, ttl, jwks_target.clone());
            next.version = version.max(m.version.saturating_add(1));
            Some(next)
        });
        if let Some(m) = written {
            if m.version != version {
                // Another writer moved the version meanwhile: label the body with the one the record names.
                write_body(&HostStore, &base, m.version, body);
            }
            write_version(&HostStore, &base, m.version);
            self.meta = m;
        }
        self.invalidate();
    }

    /// Per request: one small read that tells whether another VM stored a newer key set; if so, sync now.
    /// Every worker thus uses a new set (and stops using a removed key) from the request after it is stored.
    pub fn follow(&mut self, now: i64, now_ms: u64) {
        let published = read_version(&HostStore, &self.src.store_base);
        if published != 0 && published != self.version() {
            self.invalidate();
            self.sync(now, now_ms, 0);
        }
    }
}

/// Status, size and body of a fetch response, or why it is unusable. Returns the `Cache-Control` value too.
fn read_response(
    num_headers: usize,
    body_size: usize,
    timeout_ms: u32,
) -> Result<(Vec<u8>, Option<String>), FetchError> {
    if num_headers == 0 {
        return Err(FetchError::NoResponse);
    }
    let headers = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders)
        .map_err(|_| FetchError::NoResponse)?;
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let status = value(":status")
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(0);
    let read = |len: usize| match hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, len) {
        Ok(Some(b)) => b,
        _ => Vec::new(),
    };
    if status != 200 {
        // The first bytes tell Envoy's own replies (timeout, unreachable) from the server's.
        return Err(classify_status(
            status,
            &read(body_size.min(120)),
            timeout_ms,
        ));
    }
    if body_size > MAX_BODY_BYTES {
        return Err(FetchError::TooLarge(body_size));
    }
    let body = read(body_size);
    Ok((body, value("cache-control")))
}
