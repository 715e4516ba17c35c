//! Identity assertions decided by the core (issue 14): what the engine writes for the upstream, the JWKS it
//! answers with, reuse per caller, `no_subject`, per-rule audiences, and the config errors with their paths.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/mint.rs"]
mod mint;

use mint::Keys;
use serde_json::{json, Value};
use sha2::Digest as _;
use trustgate::decision::{Decision, HeaderOp, Reason};
use trustgate::engine::{decide, Caches, NoRemoteKeys};
use trustgate::formats::b64;
use trustgate::formats::crypto::{self, Alg};
use trustgate::formats::jwk::parse_jwks;
use trustgate::policy::config::{compile, compile_with_env, Policy};
use trustgate::request::RequestView;
use trustgate::state::jwks_cache::MemoryStore;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://idp.example.com/";
// Test keys only: the RFC 8032 §7.1 TEST 1 secret key, and a P-256 key made with openssl for these tests.
const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
const P256_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghIXysqujxOPIy9F8\nSATio9rTAQZ0ycAZIxo9j38p+lKhRANCAARSTvjJQBHwLVAKU9vItAfZH5yVNK7b\nBFHA4DWuKwOHSBUqH9CoYJ/Eaj6OQsxzCzuuzmoE1L6d7wxw8P7C0cuF\n-----END PRIVATE KEY-----\n";
const API_KEY: &str = "ci-key-0123456789";

fn config(keys: &Keys, signing_key: Value) -> Value {
    let digest: String = sha2::Sha256::digest(API_KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({
        "providers": {
            "corp": {"jwt": {"issuer": ISS, "keys": {"jwks": keys.jwks()},
                             "headers": {"x-commit-owner": "human:${claims.sub}"}}},
            "tok": {"jwt": {"issuer": ISS, "keys": {"jwks": keys.jwks()}, "from": [{"header": "x-token"}]}},
            "keys": {"api_key": {"clients": {"ci": {"name": "CI", "key_sha256": digest}},
                                 "headers": {"x-client-id": "${client.id}"}}}
        },
        "assertion": {
            "issuer": "https://gw.example", "audience": "orders", "ttl_s": 60,
            "signing_key": signing_key,
            "claims": {"sub": "${claims.sub:-}${client.id:-}", "email": "${claims.email:-}",
                       "principal_type": "human", "roles": {"claim": "realm_access.roles"}, "via": "${provider}"}
        },
        "rules": [
            {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
            {"name": "billing", "match": {"path_prefix": "/billing/"}, "require": "corp", "assertion_audience": "billing"},
            {"name": "both", "match": {"path_prefix": "/both/"}, "require": {"all": ["keys", "tok"]}},
            {"name": "ci", "match": {"path_prefix": "/ci/"}, "require": "keys"},
            {"name": "api", "match": {"path_prefix": "/"}, "require": "corp"}
        ]
    })
}

fn ed_key() -> Value {
    json!({"alg": "EdDSA", "kid": "gw-1", "pem": ED25519_PEM})
}

struct Fx {
    keys: Keys,
    policy: Policy,
    caches: Caches,
}

impl Fx {
    fn new(signing_key: Value) -> Fx {
        Fx::with(signing_key, |_| {})
    }

    fn with(signing_key: Value, edit: impl Fn(&mut Value)) -> Fx {
        let keys = Keys::new();
        let mut config = config(&keys, signing_key);
        edit(&mut config);
        let policy = compile(config.to_string().as_bytes()).unwrap();
        Fx {
            keys,
            policy,
            caches: Caches::default(),
        }
    }

    fn token(&self, claims: Value) -> String {
        self.keys
            .mint(&json!({"alg": "ES256", "kid": "es", "typ": "JWT"}), &claims)
    }

    fn alice(&self) -> String {
        self.token(json!({"iss": ISS, "sub": "alice", "exp": NOW + 600,
                          "realm_access": {"roles": ["editor", "viewer"]}}))
    }

    fn decide_at(
        &self,
        now: i64,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
    ) -> Decision {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        let view = RequestView {
            method,
            path,
            authority: "api.example.com",
            headers: &trustgate::request::borrowed(&headers),
            body: Some(b""),
            peer: None,
            peer_unread: false,
        };
        decide(
            &self.policy,
            &view,
            now,
            &NoRemoteKeys,
            &MemoryStore::default(),
            &self.caches,
        )
    }

    fn bearer(&self, path: &str, token: &str) -> Decision {
        self.decide_at(
            NOW,
            "GET",
            path,
            &[("authorization", format!("Bearer {token}"))],
        )
    }

    /// The assertion the decision writes, verified against the JWKS the policy serves: (header, payload).
    fn assertion(&self, d: &Decision) -> (Value, Value) {
        let Decision::Allow(a) = d else {
            panic!("expected allow, got {d:?}")
        };
        let sets: Vec<&String> = a
            .ops
            .iter()
            .filter_map(|op| match op {
                HeaderOp::Set(n, v) if n == "x-trustgate-assertion" => Some(v),
                _ => None,
            })
            .collect();
        assert_eq!(sets.len(), 1, "exactly one assertion: {:?}", a.ops);
        verify(&self.policy, sets[0])
    }
}

fn verify(policy: &Policy, jws: &str) -> (Value, Value) {
    let jwks = parse_jwks(&policy.assertion.as_ref().unwrap().jwks_body).unwrap();
    let mut parts = jws.split('.');
    let (h, p, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let header: Value = serde_json::from_slice(&b64::url_decode(h).unwrap()).unwrap();
    let payload: Value = serde_json::from_slice(&b64::url_decode(p).unwrap()).unwrap();
    let alg = Alg::from_name(header["alg"].as_str().unwrap()).unwrap();
    let key = jwks
        .keys
        .iter()
        .find(|k| k.kid.as_deref() == header["kid"].as_str())
        .expect("kid in the served JWKS");
    let signed = format!("{h}.{p}");
    assert!(crypto::verify(
        alg,
        &key.key,
        signed.as_bytes(),
        &b64::url_decode(s).unwrap()
    ));
    (header, payload)
}

fn reason(d: &Decision) -> Reason {
    match d {
        Decision::Deny(d) => d.reason,
        other => panic!("expected deny, got {other:?}"),
    }
}

#[test]
fn an_allowed_request_carries_one_signed_assertion_with_the_mapped_claims() {
    let f = Fx::new(ed_key());
    let (header, payload) = f.assertion(&f.bearer("/orders/1", &f.alice()));
    assert_eq!(header, json!({"alg": "EdDSA", "kid": "gw-1", "typ": "JWT"}));
    let jti = payload["jti"].as_str().unwrap().to_owned();
    assert_eq!(jti.len(), 22);
    assert_eq!(
        payload,
        json!({"iss": "https://gw.example", "aud": "orders", "iat": NOW, "exp": NOW + 60, "jti": jti,
               "sub": "alice", "principal_type": "human", "roles": ["editor", "viewer"], "via": "corp"})
    );
}

#[test]
fn es256_keys_sign_verifiable_assertions() {
    let f = Fx::new(json!({"alg": "ES256", "kid": "p-1", "pem": P256_PEM}));
    let (header, payload) = f.assertion(&f.bearer("/orders/1", &f.alice()));
    assert_eq!(header["alg"], "ES256");
    assert_eq!(payload["sub"], "alice");
}

#[test]
fn public_routes_and_denied_requests_carry_none() {
    let f = Fx::new(ed_key());
    let d = f.decide_at(NOW, "GET", "/healthz", &[]);
    let Decision::Allow(a) = &d else {
        panic!("{d:?}")
    };
    assert!(a
        .ops
        .iter()
        .all(|op| !matches!(op, HeaderOp::Set(n, _) if n == "x-trustgate-assertion")));
    assert_eq!(
        reason(&f.bearer("/orders/1", "not-a-token")),
        Reason::Malformed
    );
    assert!(f.policy.strip.contains(&"x-trustgate-assertion".to_owned()));
    assert!(f.policy.strips("X_Trustgate_Assertion"));
}

#[test]
fn a_rule_may_name_its_own_audience() {
    let f = Fx::new(ed_key());
    let (_, payload) = f.assertion(&f.bearer("/billing/1", &f.alice()));
    assert_eq!(payload["aud"], "billing");
}

#[test]
fn no_subject_is_403_no_subject() {
    let f = Fx::new(ed_key());
    let t = f.token(json!({"iss": ISS, "exp": NOW + 600}));
    let d = f.bearer("/orders/1", &t);
    assert_eq!(reason(&d), Reason::NoSubject);
    let Decision::Deny(deny) = &d else {
        unreachable!()
    };
    assert_eq!(deny.status(), 403);
    assert_eq!(
        deny.body(),
        r#"{"error":"forbidden","reason":"no_subject"}"#
    );
}

#[test]
fn the_same_caller_reuses_for_a_quarter_lifetime_and_callers_never_share() {
    let f = Fx::new(ed_key());
    let alice = f.alice();
    let (_, first) = f.assertion(&f.bearer("/orders/1", &alice));
    let again = f.decide_at(
        NOW + 14,
        "GET",
        "/x",
        &[("authorization", format!("Bearer {alice}"))],
    );
    assert_eq!(f.assertion(&again).1, first, "reused within ttl/4");
    let later = f.decide_at(
        NOW + 15,
        "GET",
        "/x",
        &[("authorization", format!("Bearer {alice}"))],
    );
    let (_, renewed) = f.assertion(&later);
    assert_ne!(renewed["jti"], first["jti"]);
    assert_eq!(renewed["iat"], NOW + 15);
    let bob = f.token(json!({"iss": ISS, "sub": "bob", "exp": NOW + 600}));
    let (_, b) = f.assertion(&f.bearer("/orders/1", &bob));
    assert_eq!(b["sub"], "bob");
    assert_ne!(b["jti"], first["jti"]);
    // Another audience is another assertion.
    let (_, billing) = f.assertion(&f.bearer("/billing/1", &alice));
    assert_ne!(billing["jti"], first["jti"]);
}

#[test]
fn other_provider_kinds_map_their_facts_and_all_merges_first_value_wins() {
    let f = Fx::new(ed_key());
    let key = ("authorization", format!("ApiKey {API_KEY}"));
    let (_, ci) = f.assertion(&f.decide_at(NOW, "GET", "/ci/run", std::slice::from_ref(&key)));
    assert_eq!(ci["sub"], "ci");
    assert_eq!(ci["via"], "keys");
    assert!(ci.get("roles").is_none());
    // `all` of an API key and a JWT: `keys` is first, so its sub and via win; roles come from the token.
    let d = f.decide_at(NOW, "GET", "/both/x", &[key, ("x-token", f.alice())]);
    let (_, both) = f.assertion(&d);
    assert_eq!(
        (both["sub"].as_str(), both["via"].as_str()),
        (Some("ci"), Some("keys"))
    );
    assert_eq!(both["roles"], json!(["editor", "viewer"]));
}

#[test]
fn the_jwks_is_answered_before_any_rule_for_get_and_head_only() {
    let f = Fx::new(ed_key());
    let get = f.decide_at(NOW, "GET", "/.well-known/trustgate/jwks.json?x=1", &[]);
    let Decision::Respond(r) = &get else {
        panic!("{get:?}")
    };
    assert_eq!(r.cache_control, "public, max-age=300");
    let jwks: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "gw-1");
    assert!(jwks["keys"][0].get("d").is_none());
    let head = f.decide_at(NOW, "HEAD", "/.well-known/trustgate/jwks.json", &[]);
    assert_eq!(head, get, "HEAD gets GET's response (Envoy drops the body)");
    // Another method goes through the rules (here: the catch-all JWT rule).
    assert_eq!(
        reason(&f.decide_at(NOW, "POST", "/.well-known/trustgate/jwks.json", &[])),
        Reason::Missing
    );
}

#[test]
fn config_errors_name_their_path() {
    let keys = Keys::new();
    let compile_err = |edit: &dyn Fn(&mut Value), env: &dyn Fn(&str) -> Option<String>| {
        let mut v = config(&keys, ed_key());
        edit(&mut v);
        compile_with_env(v.to_string().as_bytes(), env)
            .unwrap_err()
            .to_string()
    };
    let no_env = |_: &str| None;
    let e = compile_err(
        &|v| v["assertion"]["signing_key"]["pem"] = json!({"env": "TG_KEY"}),
        &no_env,
    );
    assert!(
        e.starts_with("assertion.signing_key.pem: environment variable \"TG_KEY\" is not set"),
        "{e}"
    );
    let set = |_: &str| Some(ED25519_PEM.to_owned());
    let mut v = config(&keys, ed_key());
    v["assertion"]["signing_key"]["pem"] = json!({"env": "TG_KEY"});
    assert!(compile_with_env(v.to_string().as_bytes(), &set).is_ok());
    let e = compile_err(
        &|v| v["assertion"]["signing_key"]["alg"] = "ES256".into(),
        &no_env,
    );
    assert!(
        e.starts_with("assertion.signing_key.pem: the key is an Ed25519 key but alg is ES256"),
        "{e}"
    );
    let e = compile_err(
        &|v| v["rules"][0]["assertion_audience"] = "x".into(),
        &no_env,
    );
    assert!(
        e.starts_with("rules[0].assertion_audience: a public rule"),
        "{e}"
    );
    let e = compile_err(
        &|v| v["assertion"]["header"] = "X-Client-Id".into(),
        &no_env,
    );
    assert!(
        e.starts_with("assertion.header: x-client-id is also written by provider \"keys\""),
        "{e}"
    );
    let e = compile_err(
        &|v| {
            v.as_object_mut().unwrap().remove("assertion");
        },
        &no_env,
    );
    assert!(
        e.starts_with("rules[1].assertion_audience: there is no policy-wide"),
        "{e}"
    );
}

#[test]
fn two_clients_mapped_to_the_same_claims_still_get_their_own_assertions() {
    let other = "ci-key-other-9876543210";
    let digest: String = sha2::Sha256::digest(other.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let f = Fx::with(ed_key(), |v| {
        v["providers"]["keys"]["api_key"]["clients"]["ci2"] =
            json!({"name": "CI", "key_sha256": digest});
        v["assertion"]["claims"] = json!({"sub": "${client.name}"});
    });
    let ask = |key: &str| {
        let d = f.decide_at(
            NOW,
            "GET",
            "/ci/run",
            &[("authorization", format!("ApiKey {key}"))],
        );
        f.assertion(&d).1
    };
    let (one, two) = (ask(API_KEY), ask(other));
    assert_eq!(
        (one["sub"].as_str(), two["sub"].as_str()),
        (Some("CI"), Some("CI"))
    );
    assert_ne!(one["jti"], two["jti"], "never reused across callers");
    assert_eq!(ask(API_KEY), one, "the same caller reuses its own");
}
