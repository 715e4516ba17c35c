//! The proxy-wasm host adapter: the only module that imports `proxy_wasm`.
//!
//! It parses the config once in `on_configure` (returning `false`, so the host refuses it, on any error),
//! snapshots each request into a [`RequestView`], removes the strip list, calls [`engine::decide`], and applies
//! the decision: header operations and resume, or a local reply. It also owns the metrics and the log lines.
//! Every host call goes through `hostcalls` returning `Result`; the SDK's trait helpers that `unwrap` are not
//! used on the request path.

// The SDK's entry-point macro declares the `_initialize` export and calls the wasm constructors, which needs
// `unsafe` and `#[no_mangle]`; nothing else in this crate does.
#![allow(unsafe_code)]

use crate::config::{self, Policy};
use crate::decision::{Decision, HeaderOp, Reason};
use crate::engine;
use crate::request::RequestView;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("trustgate: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

/// Counter ids, defined once per VM at configure time.
#[derive(Default)]
struct Metrics {
    allow: HashMap<String, u32>,
    deny: HashMap<(&'static str, String), u32>,
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
        m
    }

    fn bump(id: Option<&u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }
}

#[derive(Default)]
struct Root {
    policy: Option<Rc<Policy>>,
    metrics: Rc<Metrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        ) {
            Ok(Some(b)) if !b.is_empty() => b,
            _ => {
                log(LogLevel::Critical, "trustgate: invalid config: no configuration given, expected the JSON filter config");
                return false;
            }
        };
        match config::compile(&bytes) {
            Ok(policy) => {
                self.metrics = Rc::new(Metrics::define(&policy));
                log(
                    LogLevel::Info,
                    &format!(
                        "trustgate: config loaded: {} providers, {} rules",
                        policy.providers.len(),
                        policy.rules.len()
                    ),
                );
                self.policy = Some(Rc::new(policy));
                true
            }
            Err(e) => {
                log(
                    LogLevel::Critical,
                    &format!("trustgate: invalid config: {e}"),
                );
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            policy: self.policy.clone(),
            metrics: self.metrics.clone(),
        }))
    }
}

struct Filter {
    policy: Option<Rc<Policy>>,
    metrics: Rc<Metrics>,
}

impl Context for Filter {}

const REQ: MapType = MapType::HttpRequestHeaders;

fn now_unix() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn reply(status: u16, reason: &str, challenges: &[String], body: &str) {
    let mut headers: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
        ("x-trustgate-reason", reason),
    ];
    for c in challenges {
        headers.push(("www-authenticate", c.as_str()));
    }
    if hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes())).is_err() {
        log(LogLevel::Error, "trustgate: could not send the local reply");
    }
}

impl Filter {
    fn strip(&self, policy: &Policy) -> bool {
        policy
            .strip
            .iter()
            .all(|name| hostcalls::remove_map_value(REQ, name).is_ok())
    }

    fn apply(ops: &[HeaderOp]) -> bool {
        ops.iter().all(|op| match op {
            HeaderOp::Remove(n) => hostcalls::remove_map_value(REQ, n).is_ok(),
            HeaderOp::Set(n, v) => {
                hostcalls::remove_map_value(REQ, n).is_ok()
                    && hostcalls::add_map_value(REQ, n, v).is_ok()
            }
        })
    }

    fn deny_internal(&self, what: &str) -> Action {
        log(
            LogLevel::Error,
            &format!("trustgate: deny reason=internal detail={what}"),
        );
        reply(
            503,
            "internal",
            &[],
            "{\"error\":\"unavailable\",\"reason\":\"internal\"}",
        );
        Action::Pause
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(policy) = self.policy.clone() else {
            return self.deny_internal("not_configured");
        };
        // Forged identity headers go first, before anything can fail: on every request, whatever follows.
        if !self.strip(&policy) {
            return self.deny_internal("strip_failed");
        }
        let Ok(raw) = hostcalls::get_map_bytes(REQ) else {
            return self.deny_internal("headers_unavailable");
        };
        let mut method = String::new();
        let mut path = None;
        let mut authority = String::new();
        let mut headers = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            let text = String::from_utf8(value);
            match (name.as_str(), text) {
                (":method", Ok(v)) => method = v,
                (":path", Ok(v)) => path = Some(v),
                (":authority", Ok(v)) => authority = v,
                (_, Ok(v)) => headers.push((name, v)),
                // A header value that is not UTF-8 cannot be a credential or an identity this filter reads;
                // it is kept out of the view (and reaches the upstream unchanged only if allowed).
                (_, Err(_)) => {}
            }
        }
        // A :path that is not UTF-8 is refused as ambiguous by the engine through an impossible path.
        let path = path.unwrap_or_default();
        let view = RequestView {
            method: &method,
            path: &path,
            authority: &authority,
            headers: &headers,
        };
        match engine::decide(&policy, &view, now_unix()) {
            Decision::Allow(a) => {
                if !Self::apply(&a.ops) {
                    return self.deny_internal("header_write_failed");
                }
                if a.providers.is_empty() {
                    Metrics::bump(self.metrics.allow.get("public"));
                }
                for p in &a.providers {
                    Metrics::bump(self.metrics.allow.get(p));
                }
                Action::Continue
            }
            Decision::Deny(d) => {
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
                reply(d.status(), d.reason.label(), &d.challenges(), &d.body());
                Action::Pause
            }
        }
    }
}
