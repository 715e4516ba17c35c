//! A second proxy-wasm host for trustgate: the `proxy-wasm-host` crate (a Rust port of proxy-wasm-cpp-host and
//! mosn's proxy-wasm-go-host, ABI v0.2.1, on wasmtime/Cranelift) driven like a small proxy.
//!
//! It loads the unchanged release `trustgate.wasm` and plays the proxy's part: it creates request contexts and
//! calls their callbacks as Envoy does, keeps the headers the upstream would receive, records local replies,
//! shares one in-memory shared-data store between its VMs (like Envoy's workers), holds the filter's
//! `dispatch_http_call`s until a test answers them, runs the root's ticks on a clock the test moves, and
//! records every log line, property read and foreign function call.
//!
//! Host behaviours that differ between real hosts are switches here ([`HostOptions`]):
//! - `resume_from_root`: Envoy lets a root context act on a paused request after `proxy_set_effective_context`
//!   (read and write its headers, continue it, answer it); ngx_wasm_module accepts the context switch but acts
//!   on no request. With `false`, a root callback reaches no request: header maps answer `BAD_ARGUMENT`,
//!   `continue_stream` and `send_local_response` `UNIMPLEMENTED`, as this crate does for a root callback
//!   entered with its `NoStream`.
//! - `properties`: the connection properties the host reports (Envoy's `connection.*`); none by default.
//! - `vms`: how many VMs share the shared-data store, `shared_keys` how many keys it holds.
//!
//! The host has no `verify_signature`: every foreign function call is recorded and answered `NOT_FOUND`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use proxy_wasm_host::abi::v0_2_1::types::{
    Action, BufferType, LogLevel, MapType, Status, StreamType,
};
use proxy_wasm_host::abi::v0_2_1::{
    Access, CalloutId, Callouts, Clock, ContextId, ForeignCall, Guest, GuestError, HeaderPairs,
    Host, HttpCall, HttpCallRefusal, HttpCallResponse, InMemoryStore, InMemoryStoreLimits,
    Invocation, LocalResponse, LogContext, LogSink, PluginConfig, StreamKind, StreamState,
    VmServices,
};
use proxy_wasm_host::{Buffer, Engine, HeaderMap, HeaderMapExt, Limits, Module, VecHeaderMap};

/// An upstream's answer to a `dispatch_http_call`: status, headers, body; `None`: the call failed.
pub type Answer<'a> = Option<(u32, &'a [(&'a str, &'a str)], &'a [u8])>;

/// A header list as the tests write and read it.
pub type Headers = Vec<(String, String)>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The release module, compiled once per test process (Cranelift takes a few seconds for it).
fn module() -> &'static (Engine, Module) {
    static MODULE: OnceLock<(Engine, Module)> = OnceLock::new();
    MODULE.get_or_init(|| {
        let path = std::env::var("TRUSTGATE_WASM").unwrap_or_else(|_| {
            format!(
                "{}/../../target/wasm32-wasip1/release/trustgate.wasm",
                env!("CARGO_MANIFEST_DIR")
            )
        });
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (build it first: make build)"));
        let engine = Engine::new().unwrap_or_else(|e| panic!("wasmtime engine: {e}"));
        let module = Module::new(&engine, &bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
        (engine, module)
    })
}

/// The time every VM reads (`proxy_get_current_time_nanoseconds`, WASI clocks); only tests move it.
#[derive(Debug)]
pub struct TestClock(AtomicU64);

impl TestClock {
    pub fn now_s(&self) -> i64 {
        i64::try_from(self.0.load(Ordering::SeqCst) / 1_000_000_000).unwrap_or(i64::MAX)
    }
    fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn realtime_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn monotonic_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Every line the filter logged, with its level.
#[derive(Debug, Default)]
pub struct Logs(Mutex<Vec<(LogLevel, String)>>);

impl LogSink for Logs {
    fn log(&self, _: LogContext<'_>, level: LogLevel, message: &[u8]) {
        let line = String::from_utf8_lossy(message).into_owned();
        if std::env::var_os("HARNESS_LOG").is_some() {
            eprintln!("[{level:?}] {line}");
        }
        lock(&self.0).push((level, line));
    }
}

/// One `dispatch_http_call` the filter made and the harness has not answered yet.
#[derive(Debug, Clone)]
pub struct PendingCall {
    pub guest: u64,
    pub context: ContextId,
    pub callout: CalloutId,
    /// The cluster (Envoy) or `host:port` (ngx_wasm_module) the filter named.
    pub upstream: String,
    pub headers: Headers,
}

impl PendingCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The proxy's side of `dispatch_http_call`: keeps the call until the test answers it.
#[derive(Debug, Default)]
struct Upstreams {
    pending: Mutex<Vec<PendingCall>>,
    /// Refuse every call (a host or a cluster that cannot make it).
    refuse: Mutex<bool>,
}

fn pairs_to_strings<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Headers {
    pairs
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

impl Callouts for Upstreams {
    fn http_call(
        &self,
        call: Invocation,
        callout: CalloutId,
        request: HttpCall<'_>,
    ) -> Result<(), HttpCallRefusal> {
        if *lock(&self.refuse) {
            return Err(HttpCallRefusal::UnknownUpstream);
        }
        lock(&self.pending).push(PendingCall {
            guest: call.guest.get(),
            context: call.context,
            callout,
            upstream: String::from_utf8_lossy(&request.upstream).into_owned(),
            headers: pairs_to_strings(
                request
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_ref(), v.as_ref())),
            ),
        });
        Ok(())
    }
}

/// A local reply the filter sent instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Headers,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The stable reason code of the JSON body (`{"error":…,"reason":…}`).
    pub fn reason(&self) -> Option<String> {
        let at = self.body.find("\"reason\":\"")? + "\"reason\":\"".len();
        let rest = self.body.get(at..)?;
        Some(rest.get(..rest.find('"')?)?.to_owned())
    }
}

/// One request as the proxy holds it.
#[derive(Debug, Default)]
struct Req {
    headers: VecHeaderMap,
    body: Vec<u8>,
    reply: Option<Reply>,
    continued: bool,
}

/// The stream state lent to every callback: all requests of one VM, found by the invocation's context (so a
/// root that makes a paused request effective reaches it, as in Envoy), the connection properties, and the
/// foreign function calls seen.
#[derive(Debug, Default)]
struct World {
    reqs: HashMap<u32, Req>,
    properties: HashMap<String, Vec<u8>>,
    foreign_calls: Vec<String>,
    property_reads: Vec<String>,
    /// Set while a root callback (tick, root's HTTP call response) runs on a host that cannot act on a request
    /// from there.
    root_locked: bool,
}

impl World {
    fn req(&mut self, call: &Invocation) -> Result<&mut Req, Status> {
        if self.root_locked {
            return Err(Status::Unimplemented);
        }
        self.reqs
            .get_mut(&call.context.get())
            .ok_or(Status::NotFound)
    }
}

impl StreamState for World {
    fn header_map(
        &mut self,
        call: Invocation,
        _: Access,
        map: MapType,
    ) -> Result<&mut dyn HeaderMap, Status> {
        match map {
            MapType::HttpRequestHeaders => match self.req(&call) {
                Ok(r) => Ok(&mut r.headers),
                Err(_) => Err(Status::BadArgument),
            },
            _ => Err(Status::BadArgument),
        }
    }

    fn buffer(
        &mut self,
        call: Invocation,
        _: Access,
        buffer: BufferType,
    ) -> Result<&mut dyn Buffer, Status> {
        match buffer {
            BufferType::HttpRequestBody => {
                Ok(&mut self.req(&call).map_err(|_| Status::NotFound)?.body)
            }
            _ => Err(Status::NotFound),
        }
    }

    fn continue_stream(&mut self, call: Invocation, stream: StreamType) -> Result<(), Status> {
        if stream != StreamType::HttpRequest {
            return Err(Status::BadArgument);
        }
        self.req(&call)?.continued = true;
        Ok(())
    }

    fn send_local_response(
        &mut self,
        call: Invocation,
        response: LocalResponse<'_>,
    ) -> Result<(), Status> {
        let r = self.req(&call)?;
        r.reply = Some(Reply {
            status: response.status_code,
            headers: pairs_to_strings(
                response
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_ref(), v.as_ref())),
            ),
            body: String::from_utf8_lossy(&response.body).into_owned(),
        });
        Ok(())
    }

    fn property(&mut self, _: Invocation, path: &[&[u8]], out: &mut Vec<u8>) -> Result<(), Status> {
        let name = path
            .iter()
            .map(|p| String::from_utf8_lossy(p))
            .collect::<Vec<_>>()
            .join(".");
        self.property_reads.push(name.clone());
        let value = self.properties.get(&name).ok_or(Status::NotFound)?;
        out.extend_from_slice(value);
        Ok(())
    }

    fn call_foreign_function(
        &mut self,
        _: Invocation,
        request: ForeignCall<'_>,
        _: &mut Vec<u8>,
    ) -> Result<(), Status> {
        self.foreign_calls
            .push(String::from_utf8_lossy(&request.name).into_owned());
        Err(Status::NotFound)
    }
}

/// The host behaviours a test chooses.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// How many VMs (Envoy: one per worker thread) share the shared data.
    pub vms: usize,
    /// Whether a root callback may continue or answer a paused request (Envoy: yes; ngx_wasm_module: no).
    pub resume_from_root: bool,
    /// Connection properties (`connection.mtls` …) every request reports.
    pub properties: Vec<(String, Vec<u8>)>,
    /// `vm_config.environment_variables`.
    pub env: Vec<(String, String)>,
    /// How many keys the shared-data store holds.
    pub shared_keys: usize,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            vms: 1,
            resume_from_root: true,
            properties: Vec::new(),
            env: Vec::new(),
            shared_keys: 1 << 17,
        }
    }
}

struct Vm {
    guest: Guest,
    root: ContextId,
    world: Option<World>,
}

/// A request the harness sent: which VM holds it and its context there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub vm: usize,
    pub context: ContextId,
}

/// What became of a request so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded: the request headers the upstream receives.
    Upstream(Headers),
    /// Answered by the filter.
    Reply(Reply),
    /// Paused, neither forwarded nor answered.
    Pending,
}

impl Outcome {
    /// The upstream's headers; panics (a test failure) with what happened instead.
    pub fn upstream(self) -> Headers {
        match self {
            Outcome::Upstream(h) => h,
            other => panic!("expected the request to reach the upstream, got {other:?}"),
        }
    }
    /// The local reply; panics (a test failure) with what happened instead.
    pub fn reply(self) -> Reply {
        match self {
            Outcome::Reply(r) => r,
            other => panic!("expected a local reply, got {other:?}"),
        }
    }
}

/// Looks a header up by name (exact, lowercase, as the proxy holds it).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The host: its VMs of the filter, the shared store, the clock, the logs and the upstream calls.
pub struct Proxy {
    vms: Vec<Vm>,
    options: HostOptions,
    pub clock: Arc<TestClock>,
    pub logs: Arc<Logs>,
    upstreams: Arc<Upstreams>,
    /// Set when a VM refused its configuration (`on_configure` returned false).
    pub refused: bool,
}

/// 2027-01-15T08:00:00Z: a fixed start, so tokens can be made for a known time.
pub const START_S: u64 = 1_800_000_000;

fn guest_error(e: GuestError) -> String {
    format!("{e}")
}

impl Proxy {
    /// Starts `options.vms` VMs of the filter with `config` (the JSON text Envoy passes as `configuration`).
    pub fn start(config: &str, options: HostOptions) -> Result<Proxy, String> {
        let (engine, module) = module();
        let host = Host::new(engine).map_err(|e| format!("{e}"))?;
        let clock = Arc::new(TestClock(AtomicU64::new(START_S * 1_000_000_000)));
        let logs = Arc::new(Logs::default());
        let upstreams = Arc::new(Upstreams::default());
        // trustgate keeps 16,384 replay slots per provider that checks nonces (src/state/replay.rs), one key each:
        // more than the crate's default of 4096 keys. A host with a smaller store makes set_shared_data fail,
        // and the SDK's hostcalls::set_shared_data panics on that status (a trap in on_configure): see
        // docs/hosts.md.
        let store = Arc::new(
            InMemoryStore::new()
                .with_limits(InMemoryStoreLimits::new().with_keys(options.shared_keys)),
        );
        let mut proxy = Proxy {
            vms: Vec::new(),
            options: options.clone(),
            clock,
            logs,
            upstreams,
            refused: false,
        };
        for _ in 0..options.vms.max(1) {
            let env = options
                .env
                .iter()
                .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
                .collect();
            let services = VmServices::new(proxy.logs.clone())
                .with_clock(proxy.clock.clone())
                .with_shared(store.clone())
                .with_callouts(proxy.upstreams.clone())
                .with_vm_id("trustgate")
                .with_environment(env)
                .with_log_level(LogLevel::Trace);
            let mut guest =
                Guest::new(&host, module, services, &Limits::default()).map_err(guest_error)?;
            let plugin = PluginConfig::new()
                .with_name("trustgate")
                .with_configuration(config.as_bytes().to_vec());
            let world = World {
                properties: options.properties.iter().cloned().collect(),
                ..World::default()
            };
            // Started inside a scope with the world lent, so configure's property reads and foreign calls are seen.
            let (started, world) = guest.with(world, |scope| {
                let root = scope.on_context_create(None)?;
                let ok = scope.on_vm_start(root)? && scope.on_configure(root, plugin)?;
                Ok::<_, GuestError>((root, ok))
            });
            let (root, ok) = started.map_err(guest_error)?;
            proxy.refused |= !ok;
            proxy.vms.push(Vm {
                guest,
                root,
                world: Some(world),
            });
        }
        Ok(proxy)
    }

    /// Runs `f` in a scope of VM `vm` with its world lent; `root_callback` marks a root callback (tick, the
    /// root's call responses), which may not act on requests when the host cannot resume from the root.
    fn in_scope<R>(
        &mut self,
        vm: usize,
        root_callback: bool,
        f: impl FnOnce(&mut proxy_wasm_host::abi::v0_2_1::CallScope<'_, World>, ContextId) -> R,
    ) -> R {
        let locked = root_callback && !self.options.resume_from_root;
        let v = &mut self.vms[vm];
        let mut world = v.world.take().unwrap_or_default();
        world.root_locked = locked;
        let root = v.root;
        let (r, mut world) = v.guest.with(world, |scope| f(scope, root));
        world.root_locked = false;
        v.world = Some(world);
        r
    }

    fn world(&self, vm: usize) -> &World {
        self.vms[vm]
            .world
            .as_ref()
            .unwrap_or_else(|| unreachable!("the world is lent only inside in_scope"))
    }

    /// Sends a request to VM `vm`: headers (with `:method`, `:path`, `:authority`) and an optional body, with
    /// the callbacks Envoy makes (the body is buffered while the headers callback paused, as with
    /// `allow_on_headers_stop_iteration`).
    pub fn send_to(
        &mut self,
        vm: usize,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Exchange {
        let mut map = VecHeaderMap::default();
        for (k, v) in headers {
            let _ = map.add(k.as_bytes(), v.as_bytes());
        }
        let body = body.map(<[u8]>::to_vec);
        let count = headers.len();
        let context = self.in_scope(vm, false, |scope, root| {
            let ctx = scope
                .on_context_create(Some(root))
                .unwrap_or_else(|e| panic!("context: {e}"));
            scope
                .expect_stream_kind(ctx, StreamKind::Http)
                .unwrap_or_else(|e| panic!("{e}"));
            let req = Req {
                headers: map,
                body: body.clone().unwrap_or_default(),
                ..Req::default()
            };
            scope.stream_mut().reqs.insert(ctx.get(), req);
            let action = scope
                .on_request_headers(
                    ctx,
                    u32::try_from(count).unwrap_or(u32::MAX),
                    body.is_none(),
                )
                .unwrap_or_else(|e| panic!("on_request_headers trapped: {e}"));
            let replied = |scope: &proxy_wasm_host::abi::v0_2_1::CallScope<'_, World>| {
                scope
                    .stream()
                    .reqs
                    .get(&ctx.get())
                    .is_some_and(|r| r.reply.is_some())
            };
            // Envoy calls the body callback whatever the headers callback answered (it buffers the body while
            // the headers are stopped); the request goes on when the last callback answers Continue.
            let mut last = action;
            if let Some(b) = &body {
                if !replied(scope) {
                    last = scope
                        .on_request_body(ctx, u32::try_from(b.len()).unwrap_or(u32::MAX), true)
                        .unwrap_or_else(|e| panic!("on_request_body trapped: {e}"));
                }
            }
            if last == Action::Continue && !replied(scope) {
                if let Some(r) = scope.stream_mut().reqs.get_mut(&ctx.get()) {
                    r.continued = true;
                }
            }
            ctx
        });
        Exchange { vm, context }
    }

    /// [`Proxy::send_to`] VM 0.
    pub fn send(&mut self, headers: &[(&str, &str)], body: Option<&[u8]>) -> Exchange {
        self.send_to(0, headers, body)
    }

    /// What became of `ex` so far.
    pub fn outcome(&self, ex: Exchange) -> Outcome {
        let Some(r) = self.world(ex.vm).reqs.get(&ex.context.get()) else {
            return Outcome::Pending;
        };
        if let Some(reply) = &r.reply {
            return Outcome::Reply(reply.clone());
        }
        if r.continued {
            return Outcome::Upstream(pairs_to_strings(
                r.headers
                    .pairs()
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_slice())),
            ));
        }
        Outcome::Pending
    }

    /// Sends to VM 0 and returns the outcome at once.
    pub fn request(&mut self, headers: &[(&str, &str)], body: Option<&[u8]>) -> Outcome {
        let ex = self.send(headers, body);
        self.outcome(ex)
    }

    /// The tick period VM `vm`'s root asked for.
    pub fn tick_period(&self, vm: usize) -> Option<Duration> {
        let v = &self.vms[vm];
        v.guest.tick_period(v.root)
    }

    /// Moves the clock by `by` and runs `proxy_on_tick` on every root that set a tick period.
    pub fn tick(&mut self, by: Duration) {
        self.clock.advance(by);
        for vm in 0..self.vms.len() {
            if self.tick_period(vm).is_some() {
                self.in_scope(vm, true, |scope, root| scope.on_tick(root))
                    .unwrap_or_else(|e| panic!("on_tick trapped: {e}"));
            }
        }
    }

    /// Moves the clock without a tick.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The `dispatch_http_call`s not answered yet.
    pub fn pending_calls(&self) -> Vec<PendingCall> {
        lock(&self.upstreams.pending).clone()
    }

    /// Makes every later `dispatch_http_call` fail (`BAD_ARGUMENT`: an unknown cluster).
    pub fn refuse_calls(&self) {
        *lock(&self.upstreams.refuse) = true;
    }

    /// Answers `call` with `status`, `headers` and `body` (`None`: the call failed: reset, timeout).
    pub fn answer(&mut self, call: &PendingCall, response: Answer<'_>) {
        lock(&self.upstreams.pending)
            .retain(|c| c.callout != call.callout || c.guest != call.guest);
        let Some(vm) = self
            .vms
            .iter()
            .position(|v| v.guest.id().get() == call.guest)
        else {
            panic!("no VM made {call:?}");
        };
        let from_root = call.context == self.vms[vm].root;
        let response = match response {
            None => HttpCallResponse::failed(),
            Some((status, headers, body)) => {
                let mut h: HeaderPairs<'static> = vec![(
                    b":status".to_vec().into(),
                    status.to_string().into_bytes().into(),
                )];
                for (k, v) in headers {
                    h.push((k.as_bytes().to_vec().into(), v.as_bytes().to_vec().into()));
                }
                HttpCallResponse::received(h).with_body(body.to_vec())
            }
        };
        let (context, callout) = (call.context, call.callout);
        self.in_scope(vm, from_root, |scope, _| {
            scope.on_http_call_response(context, callout, response)
        })
        .unwrap_or_else(|e| panic!("on_http_call_response trapped: {e}"));
    }

    /// Ends a request the way Envoy does when the stream closes (`on_done`, `on_log`, `on_delete`).
    pub fn close(&mut self, ex: Exchange) {
        self.in_scope(ex.vm, false, |scope, _| {
            scope.on_done(ex.context)?;
            scope.on_log(ex.context)?;
            scope.on_delete(ex.context).map(|_| ())
        })
        .unwrap_or_else(|e| panic!("closing the stream trapped: {e}"));
        if let Some(w) = self.vms[ex.vm].world.as_mut() {
            w.reqs.remove(&ex.context.get());
        }
    }

    /// The log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        lock(&self.logs.0).iter().map(|(_, l)| l.clone()).collect()
    }

    /// Whether a log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        lock(&self.logs.0).iter().any(|(_, l)| l.contains(needle))
    }

    /// The foreign functions VM `vm` called, in order.
    pub fn foreign_calls(&self, vm: usize) -> Vec<String> {
        self.world(vm).foreign_calls.clone()
    }

    /// The properties VM `vm` read, in order.
    pub fn property_reads(&self, vm: usize) -> Vec<String> {
        self.world(vm).property_reads.clone()
    }

    /// Whether any VM trapped (a trap poisons the instance: every later callback fails).
    pub fn poisoned(&self) -> bool {
        self.vms.iter().any(|v| v.guest.is_poisoned())
    }
}
