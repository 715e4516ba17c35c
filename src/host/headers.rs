//! The request's header map as the host handed it over, kept in the one buffer the host filled and read in
//! place ([`crate::formats::header_map`]): the core sees borrowed `(name, value)` slices, never a `String` per
//! header (issue 17; the SDK's `get_map_bytes` makes two allocations and copies per header).

use crate::formats::header_map::{self, Span};
use crate::policy::config::Policy;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

// The SDK's own declaration of this import, with plain integers: `Status` and `MapType` are `repr(u32)`, so
// the wasm signature is the same `(i32, i32, i32) -> i32`, and a status the SDK's enum lacks cannot become an
// invalid enum value here.
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// The request headers, serialized, in a buffer this VM owns; `None` when the host refused.
fn request_header_map() -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a size through the two out-pointers, which point at live locals.
    let status = unsafe {
        proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size)
    };
    if status != 0 {
        return None;
    }
    if data.is_null() {
        return Some(Vec::new());
    }
    // SAFETY: a non-null answer is `size` bytes the host allocated in this VM through the SDK's
    // `proxy_on_memory_allocate` (a boxed `[u8]` of exactly `size`), and ownership passes to the caller: the
    // SDK's `get_map` takes it back the same way.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// The headers the core may see: every header but the stripped ones and those whose name or value is not
/// UTF-8, with `:method`, `:path` and `:authority` apart.
pub struct RequestHeaders {
    raw: Vec<u8>,
    /// Spans of `raw` checked to be UTF-8 when they were kept; `raw` never changes after that.
    fields: Vec<(Span, Span)>,
    method: Span,
    path: Span,
    authority: Span,
    /// The connection's scheme, replacing the client's `:scheme` (set by the host for DPoP's `htu`).
    scheme: Option<&'static str>,
}

impl RequestHeaders {
    /// Reads the request's header map (one host call), removes from the request every header the policy
    /// strips that is present (all values), and keeps the rest. `None` when the host refused a read or a
    /// removal, or sent a map that does not parse.
    pub fn read_and_strip(policy: &Policy) -> Option<RequestHeaders> {
        let raw = request_header_map()?;
        let spans = header_map::spans(&raw)?;
        let text = |s: &Span| raw.get(s.clone()).and_then(|b| std::str::from_utf8(b).ok());
        let mut removed: Vec<&str> = Vec::new();
        let mut kept = RequestHeaders {
            fields: Vec::with_capacity(spans.len()),
            method: 0..0,
            path: 0..0,
            authority: 0..0,
            scheme: None,
            raw: Vec::new(),
        };
        for (n, v) in spans {
            // A name that is not UTF-8 cannot be on the strip list (its names are ASCII), nor be read.
            let Some(name) = text(&n) else { continue };
            if policy.strips(name) {
                if !removed.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                    hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).ok()?;
                    removed.push(name);
                }
                continue;
            }
            // A value that is not UTF-8 cannot be a credential or an identity this filter reads; it stays out
            // of the view. A :path that is not UTF-8 stays empty, which the engine refuses as not absolute.
            if text(&v).is_none() {
                continue;
            }
            match name {
                ":method" => kept.method = v,
                ":path" => kept.path = v,
                ":authority" => kept.authority = v,
                _ => kept.fields.push((n, v)),
            }
        }
        drop(removed);
        kept.raw = raw;
        Some(kept)
    }

    fn text(&self, s: &Span) -> &str {
        let bytes = self.raw.get(s.clone()).unwrap_or_default();
        // SAFETY: every span this struct holds was checked to be UTF-8 over these same bytes when it was kept
        // (`read_and_strip`), `raw` is private and never modified afterwards, and an empty default is UTF-8.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    pub fn method(&self) -> &str {
        self.text(&self.method)
    }

    pub fn path(&self) -> &str {
        self.text(&self.path)
    }

    pub fn authority(&self) -> &str {
        self.text(&self.authority)
    }

    /// Replaces the client's `:scheme` with the connection's.
    pub fn set_scheme(&mut self, scheme: &'static str) {
        self.scheme = Some(scheme);
    }

    /// The `(name, value)` pairs the core reads, in the request's order (the connection's `:scheme` last).
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::with_capacity(self.fields.len() + 1);
        for (n, v) in &self.fields {
            let name = self.text(n);
            if self.scheme.is_none() || name != ":scheme" {
                out.push((name, self.text(v)));
            }
        }
        if let Some(s) = self.scheme {
            out.push((":scheme", s));
        }
        out
    }
}
