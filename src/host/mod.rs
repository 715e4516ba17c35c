//! The proxy-wasm host adapter: the only module that imports `proxy_wasm`.
//!
//! It parses the config once in `on_configure` (returning `false`, so the host refuses it, on any error),
//! snapshots each request, removes the strip list, calls [`engine::decide`], and applies the decision: header
//! operations and resume, or a local reply. It owns all host state: metrics, log lines, the remote key sets
//! ([`remote`]) and the requests paused while a key set is fetched, and the calls to the fleet's state store
//! ([`state`]: a request paused on one is decided again, from its own context, with the answer).
//!
//! Paused requests are resumed by the root context: on each tick (50 ms) it re-reads the shared records,
//! starts due fetches, and decides again for every waiting request whose key set changed, whose fetch
//! finished, or whose deadline passed.
//!
//! Every host call goes through `hostcalls` returning `Result`; the SDK's trait helpers that `unwrap` are not
//! used on the request path.

// The SDK's entry-point macro declares the `_initialize` export and calls the wasm constructors, which needs
// `unsafe` and `#[no_mangle]`; besides it, headers.rs (the raw header map read) and
// capabilities::root_reaches_request (one header read whose status the SDK would turn into a trap) do.
#![allow(unsafe_code)]

mod capabilities;
mod headers;
mod hostcrypto;
mod remote;
mod state;
mod store;

use crate::decision::{Decision, Deny, HeaderOp, Reason, Respond};
use crate::engine::{self, Caches, KeyLookup};
use crate::formats::cert::PeerCert;
use crate::formats::jwk::Jwk;
use crate::policy::config::{self, Policy};
use crate::request::RequestView;
use crate::state::backend::RedisState;
use crate::state::redis::{Answer, Command};
use crate::state::replay;
use headers::RequestHeaders;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use remote::Remote;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};
use store::HostStore;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("trustgate: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(Root { id, state: None }) });
}}

fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

const TICK: Duration = Duration::from_millis(50);
/// How often an idle VM re-reads the shared key set records.
const SYNC_EVERY_MS: u64 = 1000;

/// Counter ids, defined once per VM at configure time.
#[derive(Default)]
struct Metrics {
    allow: HashMap<String, u32>,
    deny: HashMap<(&'static str, String), u32>,
    /// `state.redis`: calls made, and calls without a usable answer.
    state_calls: Option<u32>,
    state_unavailable: Option<u32>,
}

impl Metrics {
    fn define(policy: &Policy) -> Metrics {
        let mut m = Metrics::default();
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        let mut owners: Vec<String> = policy.providers.iter().map(|p| p.name.clone()).collect();
        owners.push("none".into());
        for o in &owners {
            let allow_name = if o == "none" { "public" } else { o.as_str() };
            if let Some(id) = counter(&format!("trustgate.allow.{allow_name}")) {
                m.allow.insert(allow_name.to_owned(), id);
            }
            for r in Reason::ALL {
                if let Some(id) = counter(&format!("trustgate.deny.{}.{o}", r.label())) {
                    m.deny.insert((r.label(), o.clone()), id);
                }
            }
        }
        if policy.state.is_some() {
            m.state_calls = counter("trustgate.state.redis.calls");
            m.state_unavailable = counter("trustgate.state.redis.unavailable");
        }
        m
    }

    fn bump(id: Option<&u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    fn record(id: Option<u32>, value: u64) {
        if let Some(id) = id {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// The request as first seen (after stripping): what a paused request is decided on again.
struct Snapshot {
    headers: RequestHeaders,
    /// `None` until the whole body was read (or known to be empty).
    body: Option<Vec<u8>>,
    /// The verified client certificate, read only when a provider needs it.
    peer: Option<PeerCert>,
    /// `peer` was read (before deciding when the policy always needs it, else on [`Reason::PeerRequired`]).
    peer_read: bool,
    /// What the fleet's state store answered this request so far (`state.redis`).
    answers: Vec<(Command, Answer)>,
}

impl Snapshot {
    /// The request as the core reads it, over `pairs` ([`RequestHeaders::pairs`] of this snapshot).
    fn view<'a>(&'a self, pairs: &'a [(&'a str, &'a str)]) -> RequestView<'a> {
        RequestView {
            method: self.headers.method(),
            path: self.headers.path(),
            authority: self.headers.authority(),
            headers: pairs,
            body: self.body.as_deref(),
            peer: self.peer.as_ref(),
            peer_unread: !self.peer_read,
        }
    }

    fn method(&self) -> &str {
        self.headers.method()
    }
}

/// A request paused until its provider's key set changes, its fetch finishes, or the deadline passes.
struct Waiter {
    context_id: u32,
    remote: usize,
    deadline_ms: u64,
    version_seen: u64,
    completed_seen: u64,
    snapshot: Snapshot,
}

/// Everything one VM shares between its root context and its requests.
struct VmState {
    policy: Rc<Policy>,
    /// Verified Signet bindings and JWTs of this VM.
    caches: Caches,
    metrics: Metrics,
    remotes: Vec<Remote>,
    waiters: Vec<Waiter>,
}

struct Lookup<'a> {
    remotes: &'a [Remote],
    now: i64,
}

impl KeyLookup for Lookup<'_> {
    fn remote_keys(&self, index: usize) -> Option<(Rc<[Jwk]>, u64)> {
        let r = self.remotes.iter().find(|r| r.provider == index)?;
        Some((r.keys(self.now)?, r.version()))
    }
}

/// What to do with a request after deciding.
enum Outcome {
    Forward(Vec<HeaderOp>, Vec<String>),
    Respond(Respond),
    Reply(Deny, Option<i64>),
    Wait(usize, u64),
    /// Ask the fleet's state store, then decide again (`Deny` says which rule and provider asked).
    State(Command, Deny),
}

impl VmState {
    /// Decides with the store answers of `s`; with `state.redis`, also the command a check still needs.
    fn decide(&self, s: &Snapshot, now: i64) -> (Decision, Option<Command>) {
        let lookup = Lookup {
            remotes: &self.remotes,
            now,
        };
        let pairs = s.headers.pairs();
        let req = s.view(&pairs);
        match &self.policy.state {
            None => (
                engine::decide(&self.policy, &req, now, &lookup, &HostStore, &self.caches),
                None,
            ),
            Some(cfg) => {
                let store = RedisState::new(cfg, &s.answers);
                let d = engine::decide_with_state(
                    &self.policy,
                    &req,
                    now,
                    &lookup,
                    &store,
                    &self.caches,
                );
                (d, store.needed())
            }
        }
    }

    fn remote_of(&self, provider: Option<&str>) -> Option<usize> {
        let name = provider?;
        let index = self.policy.providers.iter().position(|p| p.name == name)?;
        self.remotes.iter().position(|r| r.provider == index)
    }

    /// Decides; on a refusal a key set fetch could change, syncs and (when `may_wait`) asks to wait.
    fn outcome(
        &mut self,
        snapshot: &mut Snapshot,
        now: i64,
        now_ms: u64,
        may_wait: bool,
    ) -> Outcome {
        for r in &mut self.remotes {
            r.follow(now, now_ms);
        }
        let (mut decision, mut needed) = self.decide(snapshot, now);
        // A certificate-bound token: read the connection's certificate now, and decide again.
        if matches!(&decision, Decision::Deny(d) if d.reason == Reason::PeerRequired)
            && !snapshot.peer_read
        {
            snapshot.peer = peer_certificate();
            snapshot.peer_read = true;
            (decision, needed) = self.decide(snapshot, now);
        }
        if let Decision::Deny(d) = &decision {
            if matches!(d.reason, Reason::UnknownKid | Reason::KeysUnavailable) {
                if let Some(r) = self.remote_of(d.provider.as_deref()) {
                    // Another VM may have fetched already: look before asking for a fetch.
                    let changed = self.remotes.get_mut(r).is_some_and(|rm| {
                        rm.invalidate();
                        rm.sync(now, now_ms, 0)
                    });
                    if changed {
                        (decision, needed) = self.decide(snapshot, now);
                    }
                }
            }
        }
        match decision {
            Decision::Allow(a) => Outcome::Forward(a.ops, a.providers),
            Decision::Respond(r) => Outcome::Respond(r),
            Decision::Deny(d) if d.reason == Reason::StateRequired => match needed {
                Some(cmd) => Outcome::State(cmd, d),
                // A check asked for the store without a command: cannot happen; fail closed.
                None => Outcome::Reply(
                    Deny {
                        reason: Reason::StateUnavailable,
                        ..d
                    },
                    None,
                ),
            },
            Decision::Deny(d) => {
                let r = self.remote_of(d.provider.as_deref());
                if may_wait && matches!(d.reason, Reason::UnknownKid | Reason::KeysUnavailable) {
                    if let Some((i, rm)) = r.and_then(|i| self.remotes.get_mut(i).map(|rm| (i, rm)))
                    {
                        if let Some(deadline) = rm.wait_deadline(d.reason, now, now_ms) {
                            return Outcome::Wait(i, deadline);
                        }
                    }
                }
                let retry = r
                    .and_then(|i| self.remotes.get(i))
                    .filter(|_| d.reason == Reason::KeysUnavailable)
                    .map(|rm| rm.retry_after(now));
                Outcome::Reply(d, retry)
            }
        }
    }

    /// Writes the header changes of an allowed request and counts it. False (and a 503 sent) when the host
    /// refused a header write.
    fn forward(&self, ops: &[HeaderOp], providers: &[String]) -> bool {
        if !apply(ops, &self.policy.strip) {
            deny_internal("header_write_failed");
            return false;
        }
        if providers.is_empty() {
            Metrics::bump(self.metrics.allow.get("public"));
        }
        for p in providers {
            Metrics::bump(self.metrics.allow.get(p));
        }
        true
    }

    /// Applies a final outcome to the current (effective) request; a forwarded paused request is resumed.
    fn finish(&self, outcome: Outcome, method: &str) {
        match outcome {
            Outcome::Forward(ops, providers) => {
                if self.forward(&ops, &providers) {
                    let _ = hostcalls::resume_http_request();
                }
            }
            Outcome::Respond(r) => respond(&r),
            Outcome::Reply(d, retry_after) => {
                let retry_after = d.retry_after.or(retry_after);
                let provider = d.provider.clone().unwrap_or_else(|| "none".into());
                Metrics::bump(self.metrics.deny.get(&(d.reason.label(), provider.clone())));
                log(
                    LogLevel::Info,
                    &format!(
                        "trustgate: deny rule={} provider={} reason={} status={} method={}",
                        d.rule.as_deref().unwrap_or("-"),
                        provider,
                        d.reason.label(),
                        d.status(),
                        method
                    ),
                );
                reply(&d, retry_after);
            }
            // Only produced when waiting is allowed; never passed here.
            Outcome::Wait(..) => deny_internal("unexpected_wait"),
            // Decided again on a root tick (after a key set wait): a call from there would answer to the
            // root context, not this request's; fail closed.
            Outcome::State(_, d) => self.state_failed(d, "after_key_wait", method),
        }
    }

    /// The fleet's state store gave no usable answer: log the cause, count it, answer 503 `state_unavailable`.
    fn state_failed(&self, d: Deny, cause: &str, method: &str) {
        Metrics::bump(self.metrics.state_unavailable.as_ref());
        log(
            LogLevel::Warn,
            &format!(
                "trustgate: state store unavailable: cause={cause} rule={} provider={}",
                d.rule.as_deref().unwrap_or("-"),
                d.provider.as_deref().unwrap_or("-"),
            ),
        );
        let d = Deny {
            reason: Reason::StateUnavailable,
            ..d
        };
        self.finish(Outcome::Reply(d, None), method);
    }

    /// Asks the store for `cmd` on behalf of the paused request `snapshot` (from its own context, so the
    /// answer comes back to [`Filter`]); the call in flight, or `None` once the request was answered.
    fn ask_state(&self, cmd: Command, d: Deny, snapshot: Snapshot) -> Option<StateCall> {
        let Some(cfg) = &self.policy.state else {
            self.state_failed(d, "no_store", snapshot.method());
            return None;
        };
        let sent = if snapshot.answers.len() >= state::MAX_ROUND_TRIPS {
            Err(state::Failure::TooManyCalls)
        } else {
            state::send(cfg, &cmd)
        };
        match sent {
            Ok(token) => {
                Metrics::bump(self.metrics.state_calls.as_ref());
                Some(StateCall {
                    token,
                    cmd,
                    deny: d,
                    snapshot,
                })
            }
            Err(f) => {
                self.state_failed(d, &f.cause(), snapshot.method());
                None
            }
        }
    }
}

/// A request paused on a call to the fleet's state store.
struct StateCall {
    token: u32,
    cmd: Command,
    /// The refusal that asked for the call (its rule and provider name the log line and the metric).
    deny: Deny,
    snapshot: Snapshot,
}

struct Root {
    id: u32,
    state: Option<Rc<RefCell<VmState>>>,
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn secs(ms: u64) -> i64 {
    i64::try_from(ms / 1000).unwrap_or(i64::MAX)
}

impl Root {
    /// Starts due fetches and decides again for waiting requests that can go on.
    fn advance(&self) {
        let Some(state) = &self.state else {
            return;
        };
        let ms = now_ms();
        let now = secs(ms);
        let mut st = state.borrow_mut();
        let waiting: Vec<usize> = st.waiters.iter().map(|w| w.remote).collect();
        for (i, r) in st.remotes.iter_mut().enumerate() {
            let every = if waiting.contains(&i) {
                0
            } else {
                SYNC_EVERY_MS
            };
            r.sync(now, ms, every);
            r.maybe_fetch(now);
        }
        let mut ready = Vec::new();
        let mut kept = Vec::new();
        for w in std::mem::take(&mut st.waiters) {
            let moved = st
                .remotes
                .get(w.remote)
                .is_none_or(|r| r.version() != w.version_seen || r.completed() != w.completed_seen);
            if moved || ms >= w.deadline_ms {
                ready.push(w);
            } else {
                kept.push(w);
            }
        }
        st.waiters = kept;
        for w in ready {
            if hostcalls::set_effective_context(w.context_id).is_err() {
                continue; // the request is gone
            }
            if !capabilities::root_reaches_request() {
                capabilities::root_resume_refused(w.context_id);
                continue;
            }
            let mut w = w;
            let outcome = st.outcome(&mut w.snapshot, now, ms, false);
            st.finish(outcome, w.snapshot.method());
        }
        let _ = hostcalls::set_effective_context(self.id);
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(state) = &self.state {
            let now = secs(now_ms());
            let mut st = state.borrow_mut();
            if let Some(r) = st.remotes.iter_mut().find(|r| r.owns(token_id)) {
                r.on_response(num_headers, body_size, now);
            }
        }
        self.advance();
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) if !b.is_empty() => b,
            _ => {
                log(
                    LogLevel::Critical,
                    "trustgate: invalid config: no configuration given, expected the JSON filter config",
                );
                return false;
            }
        };
        let policy = match config::compile(&bytes) {
            Ok(p) => p,
            Err(e) => {
                log(
                    LogLevel::Critical,
                    &format!("trustgate: invalid config: {e}"),
                );
                return false;
            }
        };
        // Once per configure: config that was accepted but not all used (a key that cannot verify a JWS).
        for w in &policy.warnings {
            log(LogLevel::Warn, &format!("trustgate: config: {w}"));
        }
        // Native RSA/ECDSA when allowed (host_crypto), offered and right on the probe; pure Rust otherwise.
        let host_crypto = capabilities::install_crypto(policy.host_crypto);
        let mut remotes = Vec::new();
        for (i, p) in policy.providers.iter().enumerate() {
            if let Some(src) = p.kind.remote_keys() {
                remotes.push(Remote::new(i, &p.name, src.clone()));
            }
            // Replay slots and counters exist before any request can use them (see crate::state::replay).
            // With `state.redis` they live in Redis instead.
            if policy.state.is_some() {
                continue;
            }
            if p.kind.uses_replay() {
                replay::prepare_slots(&HostStore, &p.name);
            }
            for c in p.kind.clients().iter().filter(|c| c.rate_limit.is_some()) {
                replay::prepare_counter(&HostStore, &p.name, &c.id);
            }
        }
        let assertion = policy.assertion.as_ref().map_or_else(String::new, |a| {
            format!(
                "; assertions in {} signed {} kid={}, keys at {}",
                a.header,
                a.alg_name(),
                a.kid(),
                a.jwks_path
            )
        });
        log(
            LogLevel::Info,
            &format!(
                "trustgate: config loaded: {} providers ({} with remote keys), {} rules; RSA/ECDSA verified by {}{assertion}",
                policy.providers.len(),
                remotes.len(),
                policy.rules.len(),
                if host_crypto { "the host (verify_signature)" } else { "wasm (pure Rust)" }
            ),
        );
        let has_remote = !remotes.is_empty();
        self.state = Some(Rc::new(RefCell::new(VmState {
            caches: Caches::default(),
            metrics: Metrics::define(&policy),
            policy: Rc::new(policy),
            remotes,
            waiters: Vec::new(),
        })));
        if has_remote {
            // The first fetch starts at the first tick (50 ms): Envoy also runs on_configure in VMs that
            // serve no traffic (the config check on the main thread), and a fetch started there would hold
            // the lease while its answer never reaches a worker.
            let _ = hostcalls::set_tick_period(TICK);
        }
        true
    }

    fn on_tick(&mut self) {
        self.advance();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            id: context_id,
            state: self.state.clone(),
            awaiting_body: None,
            awaiting_state: None,
        }))
    }
}

struct Filter {
    id: u32,
    state: Option<Rc<RefCell<VmState>>>,
    /// The request waiting for its body (a body-signing provider needs it).
    awaiting_body: Option<Snapshot>,
    /// The request waiting for the fleet's state store.
    awaiting_state: Option<StateCall>,
}

// The stream is over (the SDK drops its context on `proxy_on_delete`): a request still waiting for keys is
// forgotten. Not `on_done`: the module does not export `proxy_on_done` (scripts/wasm_exports.py), so that
// Envoy makes no call into the VM for it.
impl Drop for Filter {
    fn drop(&mut self) {
        if let Some(state) = &self.state {
            if let Ok(mut st) = state.try_borrow_mut() {
                st.waiters.retain(|w| w.context_id != self.id);
            }
        }
    }
}

impl Context for Filter {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(call) = self.awaiting_state.take_if(|c| c.token == token_id) else {
            return;
        };
        let Some(state) = self.state.clone() else {
            return;
        };
        let Ok(mut st) = state.try_borrow_mut() else {
            deny_internal("state_busy");
            return;
        };
        let StateCall {
            cmd,
            deny,
            mut snapshot,
            ..
        } = call;
        match state::answer(&cmd, num_headers, body_size) {
            Ok(a) => {
                snapshot.answers.push((cmd, a));
                if self.run(&mut st, snapshot) == Action::Continue {
                    let _ = hostcalls::resume_http_request();
                }
            }
            Err(f) => st.state_failed(deny, &f.cause(), snapshot.method()),
        }
    }
}

const REQ: MapType = MapType::HttpRequestHeaders;

fn reply(d: &Deny, retry_after: Option<i64>) {
    let retry = retry_after.map(|s| s.to_string());
    let mut headers: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
        ("x-trustgate-reason", d.reason.label()),
    ];
    if let Some(r) = &retry {
        headers.push(("retry-after", r));
    }
    let challenges = d.challenges();
    for c in &challenges {
        headers.push(("www-authenticate", c.as_str()));
    }
    let body = d.body();
    if hostcalls::send_http_response(u32::from(d.status()), headers, Some(body.as_bytes())).is_err()
    {
        log(LogLevel::Error, "trustgate: could not send the local reply");
    }
}

/// Sends a document the proxy publishes (the assertion JWKS).
fn respond(r: &Respond) {
    let headers = vec![
        ("content-type", "application/json"),
        ("cache-control", r.cache_control),
    ];
    if hostcalls::send_http_response(200, headers, Some(r.body.as_bytes())).is_err() {
        log(LogLevel::Error, "trustgate: could not send the local reply");
    }
}

/// Writes header operations with as few host calls as each needs: identity headers were stripped, so they
/// are only added; `:path` has one value and is replaced; others (`cookie` may span lines) are removed, then
/// added.
fn apply(ops: &[HeaderOp], strip: &[String]) -> bool {
    // Two providers of an `all` may write the same header: the last one wins, as with replace.
    let overwritten = |i: usize, name: &str| {
        ops.iter()
            .skip(i + 1)
            .any(|later| matches!(later, HeaderOp::Set(n, _) if n == name))
    };
    ops.iter().enumerate().all(|(i, op)| match op {
        HeaderOp::Remove(n) => hostcalls::remove_map_value(REQ, n).is_ok(),
        HeaderOp::Set(n, _) if strip.contains(n) && overwritten(i, n) => true,
        HeaderOp::Set(n, v) if strip.contains(n) => hostcalls::add_map_value(REQ, n, v).is_ok(),
        HeaderOp::Set(n, v) if n == ":path" => hostcalls::set_map_value(REQ, n, Some(v)).is_ok(),
        HeaderOp::Set(n, v) => {
            hostcalls::remove_map_value(REQ, n).is_ok()
                && hostcalls::add_map_value(REQ, n, v).is_ok()
        }
    })
}

fn deny_internal(what: &str) {
    log(
        LogLevel::Error,
        &format!("trustgate: deny reason=internal detail={what}"),
    );
    let headers = vec![
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
    ];
    let body = b"{\"error\":\"unavailable\",\"reason\":\"internal\"}";
    let _ = hostcalls::send_http_response(503, headers, Some(body));
}

/// The client certificate of this connection as Envoy reports it, when Envoy says one was presented on a
/// TLS connection (`connection.mtls`). Envoy only reports a certificate its `DownstreamTlsContext`
/// validated, unless that context says `trust_chain_verification: ACCEPT_UNTRUSTED` (README: mTLS).
fn peer_certificate() -> Option<PeerCert> {
    let prop = |name: &str| -> Option<Vec<u8>> {
        hostcalls::get_property(vec!["connection", name])
            .ok()
            .flatten()
    };
    // A bool property is one byte (1 = true); accept the text form some hosts give too.
    let mtls = prop("mtls")?;
    if !(mtls.as_slice() == [1] || mtls.as_slice() == b"true") {
        return None;
    }
    let text = |name: &str| {
        prop(name)
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
    };
    let cert = PeerCert {
        subject: text("subject_peer_certificate"),
        uri_san: text("uri_san_peer_certificate"),
        dns_san: text("dns_san_peer_certificate"),
        sha256: text("sha256_peer_certificate_digest"),
    };
    // No digest: no certificate after all (a host that reports connection.mtls without it: logged once).
    if cert.sha256.is_empty() {
        capabilities::peer_digest_missing();
        return None;
    }
    Some(cert)
}

/// Replaces the request's `:scheme` in the snapshot with the connection's: `https` when the downstream
/// connection is TLS (Envoy's `connection.tls_version`), else `http`. An HTTP/2 client sends `:scheme` itself
/// and Envoy passes it on, so a client on a cleartext listener could otherwise claim `https` for a DPoP
/// proof's `htu`. A host without the property gives `http`: proofs for `https://…` then fail closed (set
/// `dpop.origin`).
fn set_connection_scheme(s: &mut Snapshot) {
    let tls = hostcalls::get_property(vec!["connection", "tls_version"])
        .ok()
        .flatten()
        .is_some_and(|v| !v.is_empty());
    s.headers.set_scheme(if tls { "https" } else { "http" });
}

/// Reads the request headers (one host call), removes from the request every header the policy strips that
/// is present (all values; any case, and `_` spellings of the names: [`Policy::strips`]), and returns the
/// request as the core sees it: without the stripped headers. `None` when the host refused a read or a removal.
fn strip_and_snapshot(policy: &Policy, end_of_stream: bool) -> Option<Snapshot> {
    Some(Snapshot {
        headers: RequestHeaders::read_and_strip(policy)?,
        body: end_of_stream.then(Vec::new),
        peer: None,
        peer_read: false,
        answers: Vec::new(),
    })
}

impl Filter {
    /// Decides (or re-decides with the body) and acts: forward, reply, wait for keys, or wait for the body.
    fn run(&mut self, st: &mut VmState, mut snapshot: Snapshot) -> Action {
        let ms = now_ms();
        let may_wait = capabilities::may_wait(st);
        let outcome = st.outcome(&mut snapshot, secs(ms), ms, may_wait);
        if !may_wait {
            capabilities::fetch_without_waiting(st, &outcome, secs(ms), ms);
        }
        match outcome {
            Outcome::Forward(ops, providers) => {
                if st.forward(&ops, &providers) {
                    Action::Continue
                } else {
                    Action::Pause
                }
            }
            Outcome::Wait(remote, deadline_ms) => {
                let (version_seen, completed_seen) = st
                    .remotes
                    .get(remote)
                    .map_or((0, 0), |r| (r.version(), r.completed()));
                st.waiters.push(Waiter {
                    context_id: self.id,
                    remote,
                    deadline_ms,
                    version_seen,
                    completed_seen,
                    snapshot,
                });
                Action::Pause
            }
            Outcome::Reply(d, _) if d.reason == Reason::BodyRequired && snapshot.body.is_none() => {
                // Headers stay paused (Envoy buffers the body: allow_on_headers_stop_iteration) until the
                // whole body is here; on_http_request_body decides again.
                self.awaiting_body = Some(snapshot);
                Action::Pause
            }
            Outcome::State(cmd, d) => {
                self.awaiting_state = st.ask_state(cmd, d, snapshot);
                Action::Pause
            }
            reply @ (Outcome::Reply(..) | Outcome::Respond(_)) => {
                st.finish(reply, snapshot.method());
                Action::Pause
            }
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            deny_internal("not_configured");
            return Action::Pause;
        };
        let Ok(mut st) = state.try_borrow_mut() else {
            deny_internal("state_busy");
            return Action::Pause;
        };
        // Forged identity headers go first, before any decision: on every request, whatever follows. If the
        // host refuses to show or remove them, the request is answered here and goes nowhere.
        let Some(mut snapshot) = strip_and_snapshot(&st.policy, end_of_stream) else {
            deny_internal("headers_unavailable");
            return Action::Pause;
        };
        if st.policy.needs_peer {
            snapshot.peer = peer_certificate();
            snapshot.peer_read = true;
        }
        if st.policy.needs_scheme {
            set_connection_scheme(&mut snapshot);
        }
        self.run(&mut st, snapshot)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.awaiting_body.is_none() {
            return Action::Continue;
        }
        let Some(state) = self.state.clone() else {
            return Action::Continue;
        };
        let Ok(mut st) = state.try_borrow_mut() else {
            deny_internal("state_busy");
            return Action::Pause;
        };
        if body_size > st.policy.max_body_bytes() {
            self.awaiting_body = None;
            let d = Deny {
                reason: Reason::BodyTooLarge,
                rule: None,
                provider: None,
                schemes: Vec::new(),
                retry_after: None,
                scope: None,
                dpop_algs: String::new(),
            };
            st.finish(Outcome::Reply(d, None), "-");
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause; // keep buffering
        }
        let Some(mut snapshot) = self.awaiting_body.take() else {
            return Action::Continue;
        };
        let body = match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size) {
            Ok(b) => b.unwrap_or_default(),
            Err(_) => {
                deny_internal("body_unavailable");
                return Action::Pause;
            }
        };
        snapshot.body = Some(body);
        self.run(&mut st, snapshot)
    }
}
