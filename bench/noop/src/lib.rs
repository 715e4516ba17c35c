//! A proxy-wasm HTTP filter that does nothing: every request continues untouched.
//! `make bench` runs it to measure what the proxy-wasm ABI and V8 cost on their own.
//!
//! With a plugin configuration `"<host call> <n> [<hex argument>]"` it makes that one host call `n` times per
//! request and nothing else: `make bench-hostcalls` (bench/bench.py --hostcalls) measures each call's cost as
//! the difference to the plain no-op filter. Calls: `get_header_map_pairs` (the whole request header map),
//! `get_header_map_value` (`authorization`), `remove_header_map_value` (an absent header), `add_header_map_value`,
//! `remove_authorization` (a header the request has: what removing a credential costs), `increment_metric`,
//! `get_current_time_nanoseconds`, `verify_signature` (Envoy's foreign function, with the
//! hex-encoded `VerifySignatureArguments` protobuf as the argument), `shared_data_get` / `shared_data_cas`
//! (read, or read and compare-and-swap, a 64-byte value on one of 16,384 keys in turn: trustgate's replay slot
//! round trip). Several calls separated by `;` run one after the other (`get_header_map_pairs 1;
//! shared_data_cas 1`: the host calls of one trustgate request, without trustgate's own work). Without a
//! configuration: the plain no-op.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot { calls: Rc::new([]) }) });
}}

/// One host call, made `times` times per request.
struct Call {
    kind: Kind,
    times: u32,
}

enum Kind {
    HeaderMapPairs,
    HeaderMapValue,
    RemoveHeader,
    RemoveAuthorization,
    AddHeader,
    IncrementMetric(u32),
    CurrentTime,
    VerifySignature(Vec<u8>),
    SharedDataGet,
    SharedDataCas,
}

/// Keys of the shared-data calls (as many as trustgate's replay slots) and their value size.
const SLOTS: u32 = 16_384;
const SLOT_BYTES: usize = 64;

fn slot_key(i: u32) -> String {
    format!("bench-noop:slot:{}", i % SLOTS)
}

struct NoopRoot {
    calls: Rc<[Call]>,
}

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = self.get_plugin_configuration() else {
            return true; // the plain no-op filter
        };
        let text = String::from_utf8_lossy(&config).into_owned();
        match text.split(';').map(parse).collect::<Option<Vec<Call>>>() {
            Some(calls) => {
                self.calls = calls.into();
                true
            }
            None => {
                proxy_wasm::hostcalls::log(
                    LogLevel::Error,
                    &format!("bench-noop: bad configuration {text:?}"),
                )
                .ok();
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop {
            calls: self.calls.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn parse(text: &str) -> Option<Call> {
    let mut words = text.split_whitespace();
    let name = words.next()?;
    let times = words.next()?.parse().ok()?;
    let kind = match name {
        "get_header_map_pairs" => Kind::HeaderMapPairs,
        "get_header_map_value" => Kind::HeaderMapValue,
        "remove_header_map_value" => Kind::RemoveHeader,
        "remove_authorization" => Kind::RemoveAuthorization,
        "add_header_map_value" => Kind::AddHeader,
        "increment_metric" => {
            Kind::IncrementMetric(hostcalls::define_metric(MetricType::Counter, "bench_noop").ok()?)
        }
        "get_current_time_nanoseconds" => Kind::CurrentTime,
        "shared_data_get" | "shared_data_cas" => {
            for i in 0..SLOTS {
                hostcalls::set_shared_data(&slot_key(i), Some(&[0u8; SLOT_BYTES]), None).ok()?;
            }
            if name == "shared_data_get" {
                Kind::SharedDataGet
            } else {
                Kind::SharedDataCas
            }
        }
        "verify_signature" => {
            // The argument must verify (VerifySignatureResult { result: true }, field 1 = 1): else the config is
            // refused and the bench case fails, instead of timing an error path.
            let arg = hex(words.next()?)?;
            let result =
                hostcalls::call_foreign_function("verify_signature", Some(&arg)).ok()??;
            if !result.starts_with(&[0x08, 0x01]) {
                return None;
            }
            Kind::VerifySignature(arg)
        }
        _ => return None,
    };
    Some(Call { kind, times })
}

fn hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

struct Noop {
    calls: Rc<[Call]>,
}

thread_local! {
    /// The next shared-data key (one request after another walks all of them).
    static NEXT_SLOT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn next_slot() -> String {
    NEXT_SLOT.with(|n| {
        let i = n.get();
        n.set(i.wrapping_add(1));
        slot_key(i)
    })
}

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let h = MapType::HttpRequestHeaders;
        for call in self.calls.iter() {
            for _ in 0..call.times {
                // Results are dropped: only the call's cost is measured.
                match &call.kind {
                    Kind::HeaderMapPairs => drop(hostcalls::get_map(h)),
                    Kind::HeaderMapValue => drop(hostcalls::get_map_value(h, "authorization")),
                    Kind::RemoveHeader => drop(hostcalls::set_map_value(h, "x-bench-absent", None)),
                    Kind::RemoveAuthorization => {
                        let _ = hostcalls::set_map_value(h, "authorization", None);
                    }
                    Kind::AddHeader => drop(hostcalls::add_map_value(h, "x-bench-added", "1")),
                    Kind::IncrementMetric(id) => drop(hostcalls::increment_metric(*id, 1)),
                    Kind::CurrentTime => drop(hostcalls::get_current_time()),
                    Kind::VerifySignature(arg) => drop(hostcalls::call_foreign_function(
                        "verify_signature",
                        Some(arg),
                    )),
                    Kind::SharedDataGet => drop(hostcalls::get_shared_data(&next_slot())),
                    Kind::SharedDataCas => {
                        let key = next_slot();
                        if let Ok((Some(mut v), cas)) = hostcalls::get_shared_data(&key) {
                            v.truncate(SLOT_BYTES - 16);
                            v.extend_from_slice(&[1u8; 16]);
                            let _ = hostcalls::set_shared_data(&key, Some(&v), cas);
                        }
                    }
                }
            }
        }
        Action::Continue
    }
}
