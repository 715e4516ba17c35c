//! Gatekeeper HMAC and API keys through the core: the worked examples in
//! `../shared/vectors/http_signatures/gatekeeper_hmac.json` (made with the reference client byteforge-hmac
//! 0.2.0), tampering, the window, replay, permissions, rate limits, body modes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/mint.rs"]
mod mint;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use trustgate::decision::{Decision, HeaderOp, Reason};
use trustgate::engine::Caches;
use trustgate::engine::{decide, NoRemoteKeys};
use trustgate::policy::config::{compile, Policy};
use trustgate::request::RequestView;
use trustgate::state::jwks_cache::MemoryStore;
use trustgate::state::replay;

const CLIENT: &str = "3f2c1a9e-0000-4000-8000-000000000001";
const SECRET: &str = "s3cr3t-shared-secret";

fn vectors() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/vectors/http_signatures/gatekeeper_hmac.json");
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (shared/ must sit beside the repo)", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn sha_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn policy() -> Policy {
    let cfg = json!({
        "providers": {
            "gatekeeper": {"hmac": {
                "clients": {
                    CLIENT: {"name": "Mobile App", "secret": SECRET},
                    "sus": {"name": "Old", "secret": "x", "status": "suspended"},
                    "rev": {"secret": "x", "status": "revoked"},
                    "getter": {"name": "Reader", "secret": "g", "methods": ["get"]},
                    "scoped": {"name": "Scoped", "secret": "s", "rules": ["orders"]},
                    "limited": {"name": "Limited", "secret": "l", "rate_limit": {"requests": 2, "window_s": 60}}
                },
                "max_body_bytes": 64,
                "headers": {"x-client-id": "${client.id}", "x-client-name": "${client.name}", "x-route-id": "${rule}"}
            }},
            "nginx": {"hmac": {
                "clients": {CLIENT: {"secret": SECRET}},
                "body": "empty",
                "headers": {"x-client-id": "${client.id}"}
            }},
            "keys": {"api_key": {
                "clients": {
                    "ci": {"name": "CI", "key_sha256": sha_hex("ci-key-TEST-ONLY")},
                    "ops": {"name": "Ops", "key_sha256": sha_hex("ops-key-TEST-ONLY"), "status": "suspended"}
                },
                "headers": {"x-client-id": "${client.id}", "x-client-name": "${client.name}"}
            }}
        },
        "rules": [
            {"name": "orders", "match": {"path_prefix": "/api/orders"}, "require": "gatekeeper"},
            {"name": "api", "match": {"path_prefix": "/api/"}, "require": "gatekeeper"},
            {"name": "nginx", "match": {"path_prefix": "/nginx/"}, "require": "nginx"},
            {"name": "ci", "match": {"path_prefix": "/ci/"}, "require": "keys"},
            {"name": "either", "match": {"path_prefix": "/either/"}, "require": {"any": ["keys", "gatekeeper"]}}
        ]
    });
    compile(cfg.to_string().as_bytes()).unwrap()
}

struct World {
    policy: Policy,
    store: MemoryStore,
    cache: Caches,
}

impl World {
    fn new() -> World {
        let policy = policy();
        let store = MemoryStore::default();
        for p in &policy.providers {
            replay::prepare_slots(&store, &p.name);
            for c in p.kind.clients() {
                replay::prepare_counter(&store, &p.name, &c.id);
            }
        }
        World {
            policy,
            store,
            cache: Caches::default(),
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        now: i64,
    ) -> Decision {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let view = RequestView {
            method,
            path,
            authority: "api.example.com",
            headers: &trustgate::request::borrowed(&headers),
            body,
            peer: None,
            peer_unread: false,
        };
        decide(
            &self.policy,
            &view,
            now,
            &NoRemoteKeys,
            &self.store,
            &self.cache,
        )
    }
}

use mint::gatekeeper_header as sign;

fn reason(d: &Decision) -> Reason {
    match d {
        Decision::Deny(d) => d.reason,
        other => panic!("not denied: {other:?}"),
    }
}

fn set(d: &Decision, name: &str) -> Option<String> {
    let Decision::Allow(a) = d else {
        panic!("denied: {d:?}")
    };
    a.ops.iter().rev().find_map(|op| match op {
        HeaderOp::Set(n, v) if n == name => Some(v.clone()),
        _ => None,
    })
}

#[test]
fn reference_client_examples_verify_once_and_not_after_301_s() {
    let v = vectors();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    let w = World::new();
    for c in cases {
        let (method, path, body) = (
            c["method"].as_str().unwrap(),
            c["path_signed"].as_str().unwrap(),
            c["body"].as_str().unwrap(),
        );
        let ts = c["timestamp"].as_i64().unwrap();
        let auth = c["authorization"].as_str().unwrap();
        // Our own string to sign gives the vector's signature.
        let msg = trustgate::formats::gatekeeper::message(
            method,
            path,
            &ts.to_string(),
            c["nonce"].as_str().unwrap(),
            body.as_bytes(),
        );
        assert_eq!(
            String::from_utf8(msg).unwrap(),
            c["string_to_sign"].as_str().unwrap()
        );
        let req = |now| {
            w.send(
                method,
                path,
                &[("authorization", auth)],
                Some(body.as_bytes()),
                now,
            )
        };
        if c["server_rejects_ts_plus_301"].as_bool().unwrap() {
            assert_eq!(reason(&req(ts + 301)), Reason::StaleTimestamp, "{path}");
            assert_eq!(reason(&req(ts - 301)), Reason::StaleTimestamp, "{path}");
        }
        assert!(c["server_accepts"].as_bool().unwrap());
        let d = req(ts + 300);
        assert_eq!(set(&d, "x-client-id").as_deref(), Some(CLIENT), "{path}");
        assert_eq!(set(&d, "x-client-name").as_deref(), Some("Mobile App"));
        let Decision::Allow(a) = &d else {
            unreachable!()
        };
        assert!(a.ops.contains(&HeaderOp::Remove("authorization".into())));
        if c["server_rejects_replay"].as_bool().unwrap() {
            assert_eq!(reason(&req(ts + 1)), Reason::Replayed, "{path}");
        }
    }
}

#[test]
fn tampering_is_refused() {
    let w = World::new();
    let now = 1_800_000_000;
    let body = br#"{"item":"book"}"#;
    let auth = sign(SECRET, "POST", "/api/orders", now, "n1", body, CLIENT);
    let a = auth.as_str();
    assert_eq!(
        reason(&w.send(
            "POST",
            "/api/orders",
            &[("authorization", a)],
            Some(br#"{"item":"bomb"}"#),
            now
        )),
        Reason::BadSignature
    );
    assert_eq!(
        reason(&w.send(
            "POST",
            "/api/other",
            &[("authorization", a)],
            Some(body),
            now
        )),
        Reason::BadSignature
    );
    assert_eq!(
        reason(&w.send(
            "PUT",
            "/api/orders",
            &[("authorization", a)],
            Some(body),
            now
        )),
        Reason::BadSignature
    );
    let other_ts = a.replace(
        &format!("timestamp=\"{now}\""),
        &format!("timestamp=\"{}\"", now + 1),
    );
    assert_eq!(
        reason(&w.send(
            "POST",
            "/api/orders",
            &[("authorization", &other_ts)],
            Some(body),
            now
        )),
        Reason::BadSignature
    );
    let hex_upper = {
        let (head, sig) = a.split_once("signature=\"").unwrap();
        format!("{head}signature=\"{}", sig.to_uppercase())
    };
    assert_eq!(
        reason(&w.send(
            "POST",
            "/api/orders",
            &[("authorization", &hex_upper)],
            Some(body),
            now
        )),
        Reason::Malformed
    );
    // The untampered request still passes (nothing above recorded its nonce).
    assert!(matches!(
        w.send(
            "POST",
            "/api/orders",
            &[("authorization", a)],
            Some(body),
            now
        ),
        Decision::Allow(_)
    ));
}

#[test]
fn unknown_client_missing_and_malformed() {
    let w = World::new();
    let now = 1_800_000_000;
    let auth = sign(SECRET, "GET", "/api/x", now, "n", b"", "nobody");
    assert_eq!(
        reason(&w.send("GET", "/api/x", &[("authorization", &auth)], Some(b""), now)),
        Reason::UnknownClient
    );
    let d = w.send("GET", "/api/x", &[], Some(b""), now);
    assert_eq!(reason(&d), Reason::Missing);
    let Decision::Deny(deny) = &d else {
        unreachable!()
    };
    assert_eq!(
        deny.challenges(),
        vec!["HMAC realm=\"trustgate\"".to_string()]
    );
    let d = w.send(
        "GET",
        "/api/x",
        &[("authorization", "HMAC client_id=\"x\"")],
        Some(b""),
        now,
    );
    assert_eq!(reason(&d), Reason::Malformed);
    let Decision::Deny(deny) = &d else {
        unreachable!()
    };
    assert_eq!(
        deny.challenges(),
        vec!["HMAC realm=\"trustgate\", error=\"invalid_token\"".to_string()]
    );
}

#[test]
fn permissions_and_status() {
    let w = World::new();
    let now = 1_800_000_000;
    let send = |client: &str, secret: &str, method: &str, path: &str, nonce: &str| {
        let auth = sign(secret, method, path, now, nonce, b"", client);
        w.send(method, path, &[("authorization", &auth)], Some(b""), now)
    };
    let d = send("sus", "x", "GET", "/api/x", "1");
    assert_eq!(reason(&d), Reason::ClientSuspended);
    let Decision::Deny(deny) = &d else {
        unreachable!()
    };
    assert_eq!(deny.status(), 403);
    assert_eq!(
        reason(&send("rev", "x", "GET", "/api/x", "2")),
        Reason::ClientRevoked
    );
    assert_eq!(
        reason(&send("getter", "g", "POST", "/api/x", "3")),
        Reason::MethodNotAllowed
    );
    assert_eq!(
        set(&send("getter", "g", "GET", "/api/x", "4"), "x-client-name").as_deref(),
        Some("Reader")
    );
    assert_eq!(
        reason(&send("scoped", "s", "GET", "/api/x", "5")),
        Reason::RuleNotAllowed
    );
    assert_eq!(
        set(
            &send("scoped", "s", "GET", "/api/orders/1", "6"),
            "x-route-id"
        )
        .as_deref(),
        Some("orders")
    );
    // A wrong secret for a suspended client is a bad signature, not a status disclosure.
    assert_eq!(
        reason(&send("sus", "wrong", "GET", "/api/x", "7")),
        Reason::BadSignature
    );
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let w = World::new();
    let now = 1_800_000_010;
    for n in ["a", "b"] {
        let auth = sign("l", "GET", "/api/x", now, n, b"", "limited");
        assert!(matches!(
            w.send("GET", "/api/x", &[("authorization", &auth)], Some(b""), now),
            Decision::Allow(_)
        ));
    }
    let auth = sign("l", "GET", "/api/x", now, "c", b"", "limited");
    let d = w.send("GET", "/api/x", &[("authorization", &auth)], Some(b""), now);
    let Decision::Deny(deny) = &d else {
        panic!("{d:?}")
    };
    assert_eq!((deny.reason, deny.status()), (Reason::RateLimited, 429));
    assert_eq!(deny.retry_after, Some(50));
    // The next window.
    let auth = sign("l", "GET", "/api/x", now + 50, "d", b"", "limited");
    assert!(matches!(
        w.send(
            "GET",
            "/api/x",
            &[("authorization", &auth)],
            Some(b""),
            now + 50
        ),
        Decision::Allow(_)
    ));
}

#[test]
fn body_modes_and_limit() {
    let w = World::new();
    let now = 1_800_000_000;
    // Signed body: without the body there is no decision yet.
    let auth = sign(SECRET, "POST", "/api/x", now, "b1", b"{}", CLIENT);
    assert_eq!(
        reason(&w.send("POST", "/api/x", &[("authorization", &auth)], None, now)),
        Reason::BodyRequired
    );
    // A declared Content-Length over the limit: refused before the body is read.
    let auth = sign(SECRET, "POST", "/api/x", now, "b0", b"", CLIENT);
    let d = w.send(
        "POST",
        "/api/x",
        &[("authorization", &auth), ("content-length", "65")],
        None,
        now,
    );
    assert_eq!(reason(&d), Reason::BodyTooLarge);
    let big = vec![b'x'; 65];
    let auth = sign(SECRET, "POST", "/api/x", now, "b2", &big, CLIENT);
    let d = w.send(
        "POST",
        "/api/x",
        &[("authorization", &auth)],
        Some(&big),
        now,
    );
    assert_eq!(reason(&d), Reason::BodyTooLarge);
    let Decision::Deny(deny) = &d else {
        unreachable!()
    };
    assert_eq!(deny.status(), 413);
    // Empty mode: BODY is empty whatever the request carries, and no body is needed to decide.
    let auth = sign(SECRET, "POST", "/nginx/x", now, "b3", b"", CLIENT);
    assert!(matches!(
        w.send("POST", "/nginx/x", &[("authorization", &auth)], None, now),
        Decision::Allow(_)
    ));
    let auth = sign(SECRET, "POST", "/nginx/x", now, "b4", b"{}", CLIENT);
    assert_eq!(
        reason(&w.send(
            "POST",
            "/nginx/x",
            &[("authorization", &auth)],
            Some(b"{}"),
            now
        )),
        Reason::BadSignature
    );
}

#[test]
fn api_keys() {
    let w = World::new();
    let now = 1_800_000_000;
    for (headers, path) in [
        (vec![("authorization", "Bearer ci-key-TEST-ONLY")], "/ci/x"),
        (vec![("authorization", "apikey ci-key-TEST-ONLY")], "/ci/x"),
        (vec![], "/ci/x?api_key=ci-key-TEST-ONLY"),
    ] {
        let d = w.send("GET", path, &headers, Some(b""), now);
        assert_eq!(
            set(&d, "x-client-id").as_deref(),
            Some("ci"),
            "{headers:?} {path}"
        );
        assert_eq!(set(&d, "x-client-name").as_deref(), Some("CI"));
    }
    let d = w.send(
        "GET",
        "/ci/x?api_key=ci-key-TEST-ONLY&a=1",
        &[],
        Some(b""),
        now,
    );
    let Decision::Allow(a) = &d else { panic!() };
    assert!(a
        .ops
        .contains(&HeaderOp::Set(":path".into(), "/ci/x?a=1".into())));
    assert_eq!(
        reason(&w.send(
            "GET",
            "/ci/x",
            &[("authorization", "Bearer nope")],
            Some(b""),
            now
        )),
        Reason::InvalidKey
    );
    assert_eq!(
        reason(&w.send("GET", "/ci/x", &[], Some(b""), now)),
        Reason::Missing
    );
    let two = w.send(
        "GET",
        "/ci/x?api_key=ci-key-TEST-ONLY",
        &[("authorization", "Bearer ci-key-TEST-ONLY")],
        Some(b""),
        now,
    );
    assert_eq!(reason(&two), Reason::MultipleCredentials);
    assert_eq!(
        reason(&w.send(
            "GET",
            "/ci/x",
            &[("authorization", "Bearer ops-key-TEST-ONLY")],
            Some(b""),
            now
        )),
        Reason::ClientSuspended
    );
    // any: an API key or a signed request.
    let d = w.send(
        "GET",
        "/either/x",
        &[("authorization", "ApiKey ci-key-TEST-ONLY")],
        Some(b""),
        now,
    );
    assert_eq!(set(&d, "x-client-id").as_deref(), Some("ci"));
}

#[test]
fn config_errors_name_the_client() {
    let bad = |c: Value| {
        compile(
            json!({"providers": {"gk": c}, "rules": [{"name": "r", "require": "gk"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap_err()
        .to_string()
    };
    assert!(bad(json!({"hmac": {"clients": {"a": {}}}}))
        .starts_with("providers.gk.hmac.clients.a: expected \"secret\""));
    assert!(
        bad(json!({"hmac": {"clients": {"a": {"secret": "s", "status": "paused"}}}}))
            .starts_with("providers.gk.hmac.clients.a.status: \"paused\" is not a status")
    );
    assert!(
        bad(json!({"hmac": {"clients": {"a": {"secret": "s", "rules": ["nope"]}}}})).starts_with(
            "providers.gk.hmac.clients.a.rules[0]: unknown rule \"nope\", expected one of: r"
        )
    );
    assert!(
        bad(json!({"hmac": {"clients": {"a": {"secret": "s"}}, "body": "raw"}}))
            .starts_with("providers.gk.hmac.body: \"raw\" is not a body mode")
    );
    assert!(bad(json!({"hmac": {"clients": {"a": {"secret": "s", "rate_limit": {"requests": 0, "window_s": 1}}}}})).starts_with("providers.gk.hmac.clients.a.rate_limit.requests:"));
    assert!(
        bad(json!({"api_key": {"clients": {"a": {"key_sha256": "abc"}}}}))
            .starts_with("providers.gk.api_key.clients.a.key_sha256: expected 64 hex digits")
    );
    assert!(
        bad(json!({"api_key": {"clients": {"a": {"secret": "plain"}}}}))
            .starts_with("providers.gk.api_key.clients.a: expected \"key_sha256\"")
    );
    assert!(bad(json!({"hmac": {"clients": {}}}))
        .starts_with("providers.gk.hmac.clients: expected at least one client"));
    assert!(bad(
        json!({"hmac": {"clients": {"a": {"secret": "s"}}, "headers": {"x-a": "${claims.sub}"}}})
    )
    .contains("not available"));
}

mod signet_provider {
    use super::*;
    use std::process::Command;

    const SEED: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const PUBLIC: &str = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";

    fn policy() -> Policy {
        let cfg = json!({
            "providers": {"agents": {"signet": {
                "master_keys": {"other": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "bots": PUBLIC},
                "purposes": ["api-access"],
                "headers": {"x-agent-id": "agent:${signet.master}", "x-signet-jti": "${signet.jti}", "x-purpose": "${signet.purpose}"}
            }}},
            "rules": [{"name": "agents", "require": "agents"}]
        });
        compile(cfg.to_string().as_bytes()).unwrap()
    }

    /// A proof minted by the CLI, as users mint them.
    fn cli(method: &str, url: &str, at: i64, purpose: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_trustgate"))
            .args([
                "sign",
                "signet",
                "--master-seed",
                SEED,
                "--method",
                method,
                "--url",
                url,
            ])
            .args([
                "--at",
                &at.to_string(),
                "--purpose",
                purpose,
                "--header-only",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn cli_proofs_verify_once_with_identity() {
        let policy = policy();
        let store = MemoryStore::default();
        replay::prepare_slots(&store, "agents");
        let cache = Caches::default();
        let now = 1_800_000_000;
        let send = |path: &str, proof: &str, method: &str, at: i64| {
            let headers = vec![("signet-proof".to_string(), proof.to_string())];
            let view = RequestView {
                method,
                path,
                authority: "h",
                headers: &trustgate::request::borrowed(&headers),
                body: Some(b""),
                peer: None,
                peer_unread: false,
            };
            decide(&policy, &view, at, &NoRemoteKeys, &store, &cache)
        };
        let proof = cli("GET", "/repos/a%20b?q=1", now, "api-access");
        let d = send("/repos/a%20b?q=1", &proof, "GET", now + 5);
        assert_eq!(set(&d, "x-agent-id").as_deref(), Some("agent:bots"));
        assert_eq!(set(&d, "x-purpose").as_deref(), Some("api-access"));
        assert_eq!(set(&d, "x-signet-jti").map(|j| j.len()), Some(32));
        let Decision::Allow(a) = &d else {
            unreachable!()
        };
        assert!(a.ops.contains(&HeaderOp::Remove("signet-proof".into())));
        // The same proof again: replayed. Tampered path or query, other method: bad signature.
        assert_eq!(
            reason(&send("/repos/a%20b?q=1", &proof, "GET", now + 6)),
            Reason::Replayed
        );
        let fresh = cli("GET", "/repos/x?q=1", now, "api-access");
        assert_eq!(
            reason(&send("/repos/y?q=1", &fresh, "GET", now)),
            Reason::BadSignature
        );
        assert_eq!(
            reason(&send("/repos/x?q=2", &fresh, "GET", now)),
            Reason::BadSignature
        );
        assert_eq!(
            reason(&send("/repos/x?q=1", &fresh, "POST", now)),
            Reason::BadSignature
        );
        // Time: the ts window (30 s) and exp (ttl 300 s).
        assert_eq!(
            reason(&send("/repos/x?q=1", &fresh, "GET", now + 31)),
            Reason::StaleTimestamp
        );
        assert_eq!(
            reason(&send("/repos/x?q=1", &fresh, "GET", now + 301)),
            Reason::Expired
        );
        // Another purpose: 403.
        let other = cli("GET", "/p", now, "admin");
        let d = send("/p", &other, "GET", now);
        assert_eq!(reason(&d), Reason::PurposeNotAllowed);
        // No proof: 401 with the Signet challenge.
        let view = RequestView {
            method: "GET",
            path: "/p",
            authority: "h",
            headers: &[],
            body: Some(b""),
            peer: None,
            peer_unread: false,
        };
        let Decision::Deny(deny) = decide(&policy, &view, now, &NoRemoteKeys, &store, &cache)
        else {
            panic!()
        };
        assert_eq!(
            deny.challenges(),
            vec!["Signet realm=\"trustgate\"".to_string()]
        );
        // The untampered fresh proof still passes: failures did not record it.
        assert!(matches!(
            send("/repos/x?q=1", &fresh, "GET", now),
            Decision::Allow(_)
        ));
    }

    #[test]
    fn wrong_master_key_is_refused() {
        let cfg = json!({
            "providers": {"agents": {"signet": {"master_keys": {"other": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"}}}},
            "rules": [{"require": "agents"}]
        });
        let policy = compile(cfg.to_string().as_bytes()).unwrap();
        let store = MemoryStore::default();
        replay::prepare_slots(&store, "agents");
        let proof = cli("GET", "/p", 1_800_000_000, "api-access");
        let headers = vec![("signet-proof".to_string(), proof)];
        let view = RequestView {
            method: "GET",
            path: "/p",
            authority: "h",
            headers: &trustgate::request::borrowed(&headers),
            body: Some(b""),
            peer: None,
            peer_unread: false,
        };
        let d = decide(
            &policy,
            &view,
            1_800_000_000,
            &NoRemoteKeys,
            &store,
            &Caches::default(),
        );
        assert_eq!(reason(&d), Reason::BadSignature);
    }

    #[test]
    fn cli_public_key_matches_the_vector() {
        let out = Command::new(env!("CARGO_BIN_EXE_trustgate"))
            .args(["signet", "public-key", "--master-seed", SEED])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), PUBLIC);
        let bad = Command::new(env!("CARGO_BIN_EXE_trustgate"))
            .args(["sign", "signet", "--master-seed", "zz", "--url", "/"])
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("--master-seed: expected 64 hex digits")
        );
    }
}

mod http_signature_provider {
    use super::*;
    use base64::Engine as _;

    const SECRET_B64: &str = "dGVzdC1vbmx5LXNoYXJlZC1zZWNyZXQtZm9yLXJmYzk0MjE=";

    fn policy() -> Policy {
        let cfg = json!({
            "providers": {"partners": {"http_signature": {
                "keys": {"partner-1": {"alg": "hmac-sha256", "secret": SECRET_B64}},
                "max_age_s": 300,
                "headers": {"x-client-id": "${key.id}"}
            }}},
            "rules": [{"name": "partners", "require": "partners"}]
        });
        compile(cfg.to_string().as_bytes()).unwrap()
    }

    /// Signs with hmac-sha256 over the signature base the verifier builds.
    fn signed(
        method: &str,
        path: &str,
        input: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = extra
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        headers.push(("signature-input".into(), format!("sig1={input}")));
        // The base does not cover Signature itself; a placeholder lets the fields parse.
        headers.push(("signature".into(), "sig1=:AAAA:".into()));
        let req = trustgate::formats::httpsig::Request {
            method,
            scheme: "https",
            authority: "api.example.com",
            path,
            headers: &trustgate::request::borrowed(&headers),
            body: Some(body),
        };
        let base = trustgate::formats::httpsig::signature_base(&req, "sig1").unwrap();
        let secret = base64::engine::general_purpose::STANDARD
            .decode(SECRET_B64)
            .unwrap();
        let mac = trustgate::formats::crypto::hmac_sha256(&secret, base.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac);
        headers.pop();
        headers.push(("signature".into(), format!("sig1=:{sig}:")));
        headers
    }

    #[test]
    fn signed_requests_through_the_engine() {
        let policy = policy();
        let store = MemoryStore::default();
        replay::prepare_slots(&store, "partners");
        let cache = Caches::default();
        let now = 1_800_000_000;
        let send =
            |method: &str, path: &str, headers: &[(String, String)], body: &[u8], at: i64| {
                let view = RequestView {
                    method,
                    path,
                    authority: "api.example.com",
                    headers: &trustgate::request::borrowed(headers),
                    body: Some(body),
                    peer: None,
                    peer_unread: false,
                };
                decide(&policy, &view, at, &NoRemoteKeys, &store, &cache)
            };
        let input = format!(
            r#"("@method" "@authority" "@path");created={now};keyid="partner-1";nonce="n1""#
        );
        let h = signed("GET", "/orders?x=1", &input, &[], b"");
        let d = send("GET", "/orders?x=1", &h, b"", now + 10);
        assert_eq!(set(&d, "x-client-id").as_deref(), Some("partner-1"));
        let Decision::Allow(a) = &d else {
            unreachable!()
        };
        assert!(a.ops.contains(&HeaderOp::Remove("signature".into())));
        assert_eq!(
            reason(&send("GET", "/orders?x=1", &h, b"", now + 11)),
            Reason::Replayed
        );
        // Tampered: method, path.
        let input2 = format!(r#"("@method" "@authority" "@path");created={now};keyid="partner-1""#);
        let h2 = signed("GET", "/orders", &input2, &[], b"");
        assert_eq!(
            reason(&send("POST", "/orders", &h2, b"", now)),
            Reason::BadSignature
        );
        assert_eq!(
            reason(&send("GET", "/orderz", &h2, b"", now)),
            Reason::BadSignature
        );
        // Too old, unknown key, required component missing.
        assert_eq!(
            reason(&send("GET", "/orders", &h2, b"", now + 301)),
            Reason::StaleTimestamp
        );
        let unknown = format!(r#"("@method" "@authority" "@path");created={now};keyid="nobody""#);
        assert_eq!(
            reason(&send(
                "GET",
                "/orders",
                &signed("GET", "/orders", &unknown, &[], b""),
                b"",
                now
            )),
            Reason::UnknownKey
        );
        let partial = format!(r#"("@method" "@path");created={now};keyid="partner-1""#);
        assert_eq!(
            reason(&send(
                "GET",
                "/orders",
                &signed("GET", "/orders", &partial, &[], b""),
                b"",
                now
            )),
            Reason::MissingComponent
        );
        // Content-Digest covered: the body must match it.
        let body = br#"{"hello": "world"}"#;
        let digest = format!(
            "sha-256=:{}:",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body))
        );
        let with_digest = format!(
            r#"("@method" "@authority" "@path" "content-digest");created={now};keyid="partner-1""#
        );
        let h3 = signed(
            "POST",
            "/orders",
            &with_digest,
            &[("content-digest", &digest)],
            body,
        );
        assert!(matches!(
            send("POST", "/orders", &h3, body, now),
            Decision::Allow(_)
        ));
        assert_eq!(
            reason(&send("POST", "/orders", &h3, br#"{"hello": "there"}"#, now)),
            Reason::DigestMismatch
        );
        // Without the body yet, the engine asks for it.
        let view = RequestView {
            method: "POST",
            path: "/orders",
            authority: "api.example.com",
            headers: &trustgate::request::borrowed(&h3),
            body: None,
            peer: None,
            peer_unread: false,
        };
        assert_eq!(
            reason(&decide(&policy, &view, now, &NoRemoteKeys, &store, &cache)),
            Reason::BodyRequired
        );
        // Nothing presented: 401 with the Signature challenge.
        let Decision::Deny(deny) = send("GET", "/orders", &[], b"", now) else {
            panic!()
        };
        assert_eq!(
            deny.challenges(),
            vec!["Signature realm=\"trustgate\"".to_string()]
        );
    }

    #[test]
    fn key_config_errors() {
        let bad = |k: Value| {
            compile(json!({"providers": {"p": {"http_signature": {"keys": {"k1": k}}}}, "rules": [{"require": "p"}]}).to_string().as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert!(bad(json!({"alg": "rsa-sha1", "secret": SECRET_B64}))
            .starts_with("providers.p.http_signature.keys.k1.alg: \"rsa-sha1\" is not supported"));
        assert!(
            bad(json!({"alg": "ed25519", "secret": SECRET_B64})).starts_with(
                "providers.p.http_signature.keys.k1.alg: ed25519 cannot be used with a oct key"
            )
        );
        assert!(bad(json!({"alg": "hmac-sha256", "secret": "not base64!"}))
            .starts_with("providers.p.http_signature.keys.k1.secret: expected standard base64"));
        assert!(bad(json!({"alg": "hmac-sha256"}))
            .starts_with("providers.p.http_signature.keys.k1: expected exactly one of"));
        let e = compile(json!({"providers": {"p": {"http_signature": {"keys": {"k1": {"alg": "hmac-sha256", "secret": SECRET_B64}}, "required_components": ["@nope"]}}}, "rules": [{"require": "p"}]}).to_string().as_bytes()).unwrap_err().to_string();
        assert!(
            e.starts_with("providers.p.http_signature.required_components[0]:"),
            "{e}"
        );
    }
}
