//! A whole request against the demo config: credential extraction, rule matching, the decision. No panic,
//! and nothing is ever allowed on a protected rule (no token can verify against the demo key here).
#![no_main]
use libfuzzer_sys::fuzz_target;
use trustgate::decision::Decision;
use trustgate::request::RequestView;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let policy = trustgate::policy::config::compile(include_bytes!("../../filter-config/demo.json")).unwrap();
    let mut lines = text.split('\n');
    let method = lines.next().unwrap_or("GET");
    let path = lines.next().unwrap_or("/");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let view = RequestView { method, path, authority: "h", headers: &trustgate::request::borrowed(&headers), body: Some(b""), peer: None, peer_unread: false };
    if let Decision::Allow(a) = trustgate::engine::decide(&policy, &view, 1_800_000_000, &trustgate::engine::NoRemoteKeys, &trustgate::state::jwks_cache::MemoryStore::default(), &trustgate::engine::Caches::default()) {
        // Only the public rules (and CORS preflights) can allow without the demo's private key.
        assert!(a.providers.is_empty(), "allowed with {:?}", a.providers);
    }
});
