//! The unchanged release `trustgate.wasm` in a second proxy-wasm host: `proxy-wasm-host` on wasmtime (see
//! src/lib.rs). Each test starts its own host, drives requests, ticks and upstream calls, and asserts what the
//! upstream would receive or what the client is answered (status, reason code, challenge), and what was logged.

mod support;

use std::time::Duration;
use support::*;
use trustgate_host_wasmtime::{header, HostOptions, Outcome, Proxy};

const OWNER: &str = "x-commit-owner";

fn config(keys: &str, extra: &str) -> String {
    format!(
        r#"{{
  "providers": {{
    "corp": {{ "jwt": {{
      "issuer": "{ISSUER}", "audiences": ["{AUDIENCE}"], "algorithms": ["EdDSA"],
      "keys": {keys},
      "headers": {{ "x-commit-owner": "human:${{claims.sub}}", "x-user-email": "${{claims.email}}" }}
    }} }},
    "gatekeeper": {{ "hmac": {{
      "clients": {{ "{HMAC_CLIENT}": {{ "name": "Mobile App", "secret": "{HMAC_SECRET}" }} }},
      "headers": {{ "x-client-id": "${{client.id}}", "x-client-name": "${{client.name}}" }}
    }} }}
  }},
  "strip_headers": ["x-commit-owner", "x-user", "x-forwarded-user"],
  "rules": [
    {{ "match": {{ "path": "/healthz" }}, "allow": "public" }},
    {{ "match": {{ "path_prefix": "/hmac/" }}, "require": "gatekeeper" }},
    {{ "match": {{}}, "require": "corp" }}
  ]{extra}
}}"#
    )
}

fn inline_config(key: &Key) -> String {
    config(&format!(r#"{{ "jwks": {} }}"#, jwks(&[key])), "")
}

fn start(config: &str) -> Proxy {
    start_with(config, HostOptions::default())
}

fn start_with(config: &str, options: HostOptions) -> Proxy {
    let proxy = Proxy::start(config, options).unwrap_or_else(|e| panic!("host: {e}"));
    assert!(
        !proxy.refused,
        "configure refused: {:#?}",
        proxy.log_lines()
    );
    proxy
}

fn assert_reply(outcome: Outcome, status: u32, reason: &str) -> trustgate_host_wasmtime::Reply {
    let reply = outcome.reply();
    assert_eq!(
        (reply.status, reply.reason().as_deref()),
        (status, Some(reason)),
        "{reply:?}"
    );
    reply
}

#[test]
fn configure_accepts_a_valid_config_and_refuses_an_invalid_one_with_its_path() {
    let key = Key::new("k1", 1);
    let proxy = start(&inline_config(&key));
    assert!(
        proxy.logged("trustgate: config loaded: 2 providers (0 with remote keys), 3 rules"),
        "{:#?}",
        proxy.log_lines()
    );
    assert_eq!(proxy.tick_period(0), None, "no remote keys: no tick");

    let bad =
        inline_config(&key).replace(r#""algorithms": ["EdDSA"]"#, r#""algorithms": ["none"]"#);
    let refused = Proxy::start(&bad, HostOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(refused.refused, "a config with alg none was accepted");
    assert!(
        refused.logged("trustgate: invalid config: providers.corp.jwt.algorithms"),
        "{:#?}",
        refused.log_lines()
    );

    let empty = Proxy::start("", HostOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        empty.refused && empty.logged("no configuration given"),
        "{:#?}",
        empty.log_lines()
    );
}

#[test]
fn jwt_allowed_the_upstream_gets_the_identity_headers_and_no_forged_one() {
    let key = Key::new("k1", 1);
    let mut proxy = start(&inline_config(&key));
    let bearer = format!("Bearer {}", key.token("alice"));
    let up = proxy
        .request(
            &get(
                "/orders/7",
                &[
                    ("authorization", &bearer),
                    ("x-commit-owner", "human:mallory"),
                    ("x-user", "mallory"),
                    ("x-user-email", "mallory@evil.test"),
                ],
            ),
            None,
        )
        .upstream();
    let owners: Vec<&str> = up
        .iter()
        .filter(|(n, _)| n == OWNER)
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(owners, ["human:alice"], "{up:?}");
    assert_eq!(
        header(&up, "x-user-email"),
        Some("alice@example.com"),
        "{up:?}"
    );
    assert_eq!(
        header(&up, "x-user"),
        None,
        "a forged identity header reached the upstream: {up:?}"
    );
    assert_eq!(header(&up, ":path"), Some("/orders/7"));
    assert!(!proxy.poisoned());
}

#[test]
fn jwt_denied_bad_signature_expired_wrong_audience_missing_and_other_key() {
    let key = Key::new("k1", 1);
    let mut proxy = start(&inline_config(&key));

    let good = key.token("alice");
    let (head, sig) = good
        .rsplit_once('.')
        .unwrap_or_else(|| panic!("a JWS has dots"));
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let tampered = format!("Bearer {head}.{flipped}{}", &sig[1..]);
    let r = assert_reply(
        proxy.request(&get("/x", &[("authorization", &tampered)]), None),
        401,
        "bad_signature",
    );
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(r#"error="invalid_token""#),
        "{r:?}"
    );

    let expired = key.sign(&format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"alice","iat":{},"exp":{}}}"#,
        trustgate_host_wasmtime::START_S - 4000,
        trustgate_host_wasmtime::START_S - 3600
    ));
    assert_reply(
        proxy.request(
            &get("/x", &[("authorization", &format!("Bearer {expired}"))]),
            None,
        ),
        401,
        "expired",
    );

    let other_aud = key.sign(&format!(
        r#"{{"iss":"{ISSUER}","aud":"billing","sub":"alice","iat":{0},"exp":{1}}}"#,
        trustgate_host_wasmtime::START_S,
        trustgate_host_wasmtime::START_S + 60
    ));
    assert_reply(
        proxy.request(
            &get("/x", &[("authorization", &format!("Bearer {other_aud}"))]),
            None,
        ),
        401,
        "wrong_audience",
    );

    let r = assert_reply(
        proxy.request(&get("/x", &[("x-commit-owner", "human:mallory")]), None),
        401,
        "missing",
    );
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer")),
        "{r:?}"
    );

    let stranger = Key::new("k1", 9); // same kid, another key
    let forged = format!("Bearer {}", stranger.token("alice"));
    assert_reply(
        proxy.request(&get("/x", &[("authorization", &forged)]), None),
        401,
        "bad_signature",
    );

    // Time is the host's: once the token's exp passed on the host clock, it is refused.
    proxy.advance(Duration::from_secs(301 + 60));
    let late = format!("Bearer {good}");
    assert_reply(
        proxy.request(&get("/x", &[("authorization", &late)]), None),
        401,
        "expired",
    );
    assert!(
        proxy.logged("provider=corp reason=expired status=401 method=GET"),
        "{:#?}",
        proxy.log_lines()
    );
    assert!(
        !proxy.log_lines().iter().any(|l| l.contains(head)),
        "a token reached the log"
    );
}

#[test]
fn public_route_forwards_without_the_forged_headers() {
    let key = Key::new("k1", 1);
    let mut proxy = start(&inline_config(&key));
    let up = proxy
        .request(
            &get(
                "/healthz",
                &[
                    ("x-commit-owner", "human:root"),
                    ("X-Forwarded-User", "root"),
                ],
            ),
            None,
        )
        .upstream();
    assert_eq!(header(&up, OWNER), None, "{up:?}");
    assert!(
        !up.iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-user")),
        "{up:?}"
    );
}

#[test]
fn hmac_allowed_once_and_its_replay_refused_by_another_vm_through_shared_data() {
    let key = Key::new("k1", 1);
    let mut proxy = start_with(
        &inline_config(&key),
        HostOptions {
            vms: 2,
            ..HostOptions::default()
        },
    );
    let now = i64::try_from(trustgate_host_wasmtime::START_S).unwrap_or(0);
    let body = r#"{"amount":10}"#;
    let auth = hmac_auth("POST", "/hmac/pay", now, "nonce-1", body, HMAC_SECRET);
    let post = |auth: &str| {
        vec![
            (":method", "POST"),
            (":path", "/hmac/pay"),
            (":authority", "api.example.com"),
            ("content-type", "application/json"),
            ("authorization", auth),
            ("x-client-id", "forged"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect::<Vec<_>>()
    };

    let first = post(&auth);
    let ex = proxy.send_to(0, &borrowed(&first), Some(body.as_bytes()));
    let up = proxy.outcome(ex).upstream();
    assert_eq!(header(&up, "x-client-id"), Some(HMAC_CLIENT), "{up:?}");
    assert_eq!(header(&up, "x-client-name"), Some("Mobile App"), "{up:?}");
    assert_eq!(
        up.iter().filter(|(n, _)| n == "x-client-id").count(),
        1,
        "the forged x-client-id stayed: {up:?}"
    );

    // The same signed request on the other VM (another Envoy worker): the nonce is in the shared data.
    let ex = proxy.send_to(1, &borrowed(&first), Some(body.as_bytes()));
    assert_reply(proxy.outcome(ex), 401, "replayed");
    // And on the same VM.
    let ex = proxy.send_to(0, &borrowed(&first), Some(body.as_bytes()));
    assert_reply(proxy.outcome(ex), 401, "replayed");

    // A new nonce passes; a changed body does not.
    let second = post(&hmac_auth(
        "POST",
        "/hmac/pay",
        now,
        "nonce-2",
        body,
        HMAC_SECRET,
    ));
    let ex = proxy.send_to(1, &borrowed(&second), Some(body.as_bytes()));
    assert!(
        matches!(proxy.outcome(ex), Outcome::Upstream(_)),
        "{:?}",
        proxy.outcome(ex)
    );
    let third = post(&hmac_auth(
        "POST",
        "/hmac/pay",
        now,
        "nonce-3",
        body,
        HMAC_SECRET,
    ));
    let ex = proxy.send_to(0, &borrowed(&third), Some(br#"{"amount":1000}"#));
    assert_reply(proxy.outcome(ex), 401, "bad_signature");
    // A stale timestamp.
    proxy.advance(Duration::from_secs(600));
    let ex = proxy.send_to(
        0,
        &borrowed(&post(&hmac_auth(
            "POST",
            "/hmac/pay",
            now,
            "nonce-4",
            body,
            HMAC_SECRET,
        ))),
        Some(body.as_bytes()),
    );
    assert_reply(proxy.outcome(ex), 401, "stale_timestamp");
}

fn borrowed(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

fn remote_config(extra_remote: &str) -> String {
    config(
        &format!(
            r#"{{ "remote": {{ "cluster": "idp_jwks", "authority": "idp.test", "path": "/jwks.json", "timeout_ms": 1000{extra_remote} }} }}"#
        ),
        "",
    )
}

#[test]
fn remote_keys_are_fetched_on_the_tick_and_the_waiting_request_is_resumed() {
    let key = Key::new("k1", 1);
    let mut proxy = start(&remote_config(""));
    assert_eq!(proxy.tick_period(0), Some(Duration::from_millis(50)));
    assert!(
        proxy.pending_calls().is_empty(),
        "a fetch started in on_configure"
    );

    let bearer = format!("Bearer {}", key.token("alice"));
    let ex = proxy.send(
        &get(
            "/orders",
            &[
                ("authorization", &bearer),
                ("x-commit-owner", "human:mallory"),
            ],
        ),
        None,
    );
    assert_eq!(
        proxy.outcome(ex),
        Outcome::Pending,
        "the first request waits for the keys"
    );

    proxy.tick(Duration::from_millis(50));
    let calls = proxy.pending_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.upstream, "idp_jwks");
    assert_eq!(
        (
            call.header(":method"),
            call.header(":path"),
            call.header(":authority")
        ),
        (Some("GET"), Some("/jwks.json"), Some("idp.test"))
    );
    assert_eq!(proxy.outcome(ex), Outcome::Pending);

    let body = jwks(&[&key]);
    proxy.answer(
        call,
        Some((
            200,
            &[
                ("content-type", "application/json"),
                ("cache-control", "max-age=600"),
            ],
            body.as_bytes(),
        )),
    );
    let up = proxy.outcome(ex).upstream();
    assert_eq!(header(&up, OWNER), Some("human:alice"), "{up:?}");
    assert_eq!(up.iter().filter(|(n, _)| n == OWNER).count(), 1, "{up:?}");
    assert!(
        proxy.logged("trustgate: jwks provider=corp url="),
        "{:#?}",
        proxy.log_lines()
    );
    assert!(
        proxy
            .log_lines()
            .iter()
            .any(|l| l.contains("fetch ok: 1 keys")),
        "{:#?}",
        proxy.log_lines()
    );
    proxy.close(ex);

    // The next request is decided at once, without a new fetch.
    let up = proxy
        .request(&get("/orders", &[("authorization", &bearer)]), None)
        .upstream();
    assert_eq!(header(&up, OWNER), Some("human:alice"));
    proxy.tick(Duration::from_millis(50));
    assert!(
        proxy.pending_calls().is_empty(),
        "fetched again within max-age: {:?}",
        proxy.pending_calls()
    );
    assert!(!proxy.poisoned());
}

#[test]
fn remote_keys_failing_fetch_answers_503_keys_unavailable_with_retry_after() {
    let key = Key::new("k1", 1);
    let mut proxy = start(&remote_config(r#", "startup_wait_ms": 200"#));
    let bearer = format!("Bearer {}", key.token("alice"));
    let ex = proxy.send(&get("/orders", &[("authorization", &bearer)]), None);
    assert_eq!(proxy.outcome(ex), Outcome::Pending);
    proxy.tick(Duration::from_millis(50));
    let calls = proxy.pending_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    proxy.answer(&calls[0], Some((500, &[], b"oops")));
    // The fetch failed: the waiting request is answered 503 with Retry-After once its wait is over.
    for _ in 0..6 {
        if proxy.outcome(ex) != Outcome::Pending {
            break;
        }
        proxy.tick(Duration::from_millis(50));
    }
    let r = assert_reply(proxy.outcome(ex), 503, "keys_unavailable");
    assert!(
        r.header("retry-after")
            .is_some_and(|v| v.parse::<u32>().is_ok_and(|s| s >= 1)),
        "{r:?}"
    );
    assert!(
        proxy.log_lines().iter().any(|l| l.contains("fetch failed")),
        "{:#?}",
        proxy.log_lines()
    );
}

#[test]
fn a_key_rotation_is_fetched_on_an_unknown_kid() {
    let (k1, k2) = (Key::new("k1", 1), Key::new("k2", 2));
    let mut proxy = start(&remote_config(""));
    let ex = proxy.send(
        &get(
            "/a",
            &[("authorization", &format!("Bearer {}", k1.token("alice")))],
        ),
        None,
    );
    proxy.tick(Duration::from_millis(50));
    let call = proxy.pending_calls().remove(0);
    proxy.answer(&call, Some((200, &[], jwks(&[&k1]).as_bytes())));
    assert!(matches!(proxy.outcome(ex), Outcome::Upstream(_)));

    // A token under a new kid: the request waits while the set is fetched again, then passes.
    proxy.advance(Duration::from_secs(31));
    let ex = proxy.send(
        &get(
            "/a",
            &[("authorization", &format!("Bearer {}", k2.token("bob")))],
        ),
        None,
    );
    assert_eq!(proxy.outcome(ex), Outcome::Pending);
    proxy.tick(Duration::from_millis(50));
    let calls = proxy.pending_calls();
    assert_eq!(
        calls.len(),
        1,
        "no refetch on an unknown kid: {:#?}",
        proxy.log_lines()
    );
    proxy.answer(&calls[0], Some((200, &[], jwks(&[&k1, &k2]).as_bytes())));
    let up = proxy.outcome(ex).upstream();
    assert_eq!(header(&up, OWNER), Some("human:bob"));
}

#[test]
fn host_crypto_auto_probes_verify_signature_and_off_calls_no_foreign_function() {
    let key = Key::new("k1", 1);
    let auto = start(&inline_config(&key));
    // This host has no verify_signature: the probe's first call fails and the pure-Rust path is used.
    assert_eq!(auto.foreign_calls(0), ["verify_signature"]);
    assert!(
        auto.logged("RSA/ECDSA verified by wasm (pure Rust)"),
        "{:#?}",
        auto.log_lines()
    );

    let off = config(
        &format!(r#"{{ "jwks": {} }}"#, jwks(&[&key])),
        r#", "host_crypto": "off""#,
    );
    let mut proxy = start(&off);
    let bearer = format!("Bearer {}", key.token("alice"));
    let up = proxy
        .request(&get("/x", &[("authorization", &bearer)]), None)
        .upstream();
    assert_eq!(header(&up, OWNER), Some("human:alice"));
    assert!(
        proxy.foreign_calls(0).is_empty(),
        "{:?}",
        proxy.foreign_calls(0)
    );
    assert!(proxy.logged("RSA/ECDSA verified by wasm (pure Rust)"));

    let bad = config(
        &format!(r#"{{ "jwks": {} }}"#, jwks(&[&key])),
        r#", "host_crypto": "on""#,
    );
    let refused = Proxy::start(&bad, HostOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        refused.refused
            && refused.logged("trustgate: invalid config: host_crypto: unknown variant `on`"),
        "{:#?}",
        refused.log_lines()
    );
}

/// A host that cannot act on a request from the root context (ngx_wasm_module: `proxy_set_effective_context`
/// is accepted but the root's calls reach no request).
fn no_resume() -> HostOptions {
    HostOptions {
        resume_from_root: false,
        ..HostOptions::default()
    }
}

#[test]
fn host_resume_off_never_pauses_for_keys_and_still_fetches_them() {
    let (k1, k2) = (Key::new("k1", 1), Key::new("k2", 2));
    let mut proxy = start_with(
        &remote_config("").replace(r#""rules""#, r#""host_resume": "off", "rules""#),
        no_resume(),
    );
    let bearer = format!("Bearer {}", k1.token("alice"));
    // No keys yet: answered at once, not paused.
    let r = assert_reply(
        proxy.request(&get("/a", &[("authorization", &bearer)]), None),
        503,
        "keys_unavailable",
    );
    assert!(r.header("retry-after").is_some(), "{r:?}");
    // The fetch still runs on the tick, from the root context.
    proxy.tick(Duration::from_millis(50));
    let call = proxy
        .pending_calls()
        .pop()
        .unwrap_or_else(|| panic!("no fetch: {:#?}", proxy.log_lines()));
    proxy.answer(&call, Some((200, &[], jwks(&[&k1]).as_bytes())));
    let up = proxy
        .request(&get("/a", &[("authorization", &bearer)]), None)
        .upstream();
    assert_eq!(header(&up, OWNER), Some("human:alice"));

    // An unknown kid: 401 at once, and the refetch it asks for brings the new key for the next request.
    proxy.advance(Duration::from_secs(31));
    let bob = format!("Bearer {}", k2.token("bob"));
    assert_reply(
        proxy.request(&get("/a", &[("authorization", &bob)]), None),
        401,
        "unknown_kid",
    );
    proxy.tick(Duration::from_millis(50));
    let call = proxy
        .pending_calls()
        .pop()
        .unwrap_or_else(|| panic!("no refetch on an unknown kid: {:#?}", proxy.log_lines()));
    proxy.answer(&call, Some((200, &[], jwks(&[&k1, &k2]).as_bytes())));
    let up = proxy
        .request(&get("/a", &[("authorization", &bob)]), None)
        .upstream();
    assert_eq!(header(&up, OWNER), Some("human:bob"));
    assert!(!proxy.poisoned());
}

#[test]
fn host_resume_auto_on_a_host_that_cannot_resume_from_the_root_logs_it_and_stops_waiting() {
    let key = Key::new("k1", 1);
    let mut proxy = start_with(&remote_config(""), no_resume());
    let bearer = format!("Bearer {}", key.token("alice"));
    let first = proxy.send(&get("/a", &[("authorization", &bearer)]), None);
    assert_eq!(proxy.outcome(first), Outcome::Pending);
    proxy.tick(Duration::from_millis(50));
    let call = proxy.pending_calls().remove(0);
    // The fetch answers; the root would resume the waiting request, but this host does not let it reach it.
    proxy.answer(&call, Some((200, &[], jwks(&[&key]).as_bytes())));
    assert!(
        proxy.logged(
            "trustgate: host_resume: the host does not let the root context reach a paused request"
        ),
        "{:#?}",
        proxy.log_lines()
    );
    assert!(
        !proxy.poisoned(),
        "the VM trapped: {:#?}",
        proxy.log_lines()
    );
    // That request is the host's to time out (Envoy would have forwarded it).
    assert_eq!(proxy.outcome(first), Outcome::Pending);
    // The keys are there: the next request passes at once.
    let up = proxy
        .request(&get("/a", &[("authorization", &bearer)]), None)
        .upstream();
    assert_eq!(header(&up, OWNER), Some("human:alice"));
    // A new kid is no longer waited for: 401 unknown_kid at once, not a request stuck in the host.
    proxy.advance(Duration::from_secs(31));
    let other = Key::new("k2", 2);
    let bob = format!("Bearer {}", other.token("bob"));
    assert_reply(
        proxy.request(&get("/a", &[("authorization", &bob)]), None),
        401,
        "unknown_kid",
    );
    assert!(!proxy.poisoned());
}

#[test]
fn host_resume_auto_on_a_host_that_resumes_from_the_root_reads_the_request_and_forwards_it() {
    // The same as above on an Envoy-like host: no refusal logged, the request forwarded (the default).
    let key = Key::new("k1", 1);
    let mut proxy = start(&remote_config(""));
    let bearer = format!("Bearer {}", key.token("alice"));
    let first = proxy.send(&get("/a", &[("authorization", &bearer)]), None);
    proxy.tick(Duration::from_millis(50));
    let call = proxy.pending_calls().remove(0);
    proxy.answer(&call, Some((200, &[], jwks(&[&key]).as_bytes())));
    assert!(
        matches!(proxy.outcome(first), Outcome::Upstream(_)),
        "{:?}",
        proxy.outcome(first)
    );
    assert!(!proxy.logged("host_resume"), "{:#?}", proxy.log_lines());
}

const MTLS_CONFIG: &str = r#"{
  "providers": { "people": { "mtls": { "subject_cn_pattern": "*", "headers": { "x-commit-owner": "human:${cert.cn}" } } } },
  "strip_headers": ["x-commit-owner"],
  "rules": [ { "match": {}, "require": "people" } ]
}"#;

fn connection(props: &[(&str, &[u8])]) -> HostOptions {
    HostOptions {
        properties: props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect(),
        ..HostOptions::default()
    }
}

#[test]
fn mtls_reads_the_connection_properties_and_fails_closed_without_the_certificate_digest() {
    let digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    // Envoy: connection.mtls is one byte 1 and the certificate properties are there.
    let mut envoy_like = start_with(
        MTLS_CONFIG,
        connection(&[
            ("connection.mtls", &[1]),
            ("connection.subject_peer_certificate", b"CN=alice,O=Corp"),
            (
                "connection.sha256_peer_certificate_digest",
                digest.as_bytes(),
            ),
        ]),
    );
    let up = envoy_like
        .request(&get("/x", &[("x-commit-owner", "human:root")]), None)
        .upstream();
    assert_eq!(header(&up, OWNER), Some("human:alice"), "{up:?}");
    assert!(envoy_like
        .property_reads(0)
        .iter()
        .any(|p| p == "connection.sha256_peer_certificate_digest"));

    // ngx_wasm_module: connection.mtls is the text "true", the certificate properties are not implemented
    // (NOT_FOUND): no certificate is seen, the request is refused.
    let mut ngx_like = start_with(
        MTLS_CONFIG,
        connection(&[
            ("connection.mtls", b"true"),
            ("connection.subject_peer_certificate", b"CN=alice,O=Corp"),
        ]),
    );
    let r = assert_reply(
        ngx_like.request(&get("/x", &[("x-commit-owner", "human:root")]), None),
        401,
        "missing",
    );
    assert_eq!(r.header("www-authenticate"), None, "{r:?}");
    assert!(
        ngx_like.logged("but not connection.sha256_peer_certificate_digest"),
        "{:#?}",
        ngx_like.log_lines()
    );
    assert!(!ngx_like.poisoned());
    assert!(!envoy_like.logged("sha256_peer_certificate_digest"));
}

#[test]
fn a_fetch_the_host_refuses_to_dispatch_is_logged_and_answered_503() {
    let key = Key::new("k1", 1);
    let mut proxy = start(&remote_config(r#", "startup_wait_ms": 100"#));
    proxy.refuse_calls(); // the cluster is unknown to this host (BAD_ARGUMENT)
    let ex = proxy.send(
        &get(
            "/a",
            &[("authorization", &format!("Bearer {}", key.token("alice")))],
        ),
        None,
    );
    for _ in 0..6 {
        proxy.tick(Duration::from_millis(50));
    }
    assert!(proxy.pending_calls().is_empty());
    assert!(
        proxy
            .log_lines()
            .iter()
            .any(|l| l.contains("fetch failed") && l.contains("BadArgument")),
        "{:#?}",
        proxy.log_lines()
    );
    assert_reply(proxy.outcome(ex), 503, "keys_unavailable");
    assert!(!proxy.poisoned());
}
