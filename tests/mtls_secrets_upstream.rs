//! Issue 9 in the core: the `mtls` provider (a verified client certificate as the host reports it),
//! `{"env": NAME}` secrets, and `upstream_headers`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Value};
use std::collections::HashMap;
use trustgate::decision::{Decision, HeaderOp, Reason};
use trustgate::engine::{decide, Caches, NoRemoteKeys};
use trustgate::formats::cert::PeerCert;
use trustgate::policy::config::{compile, compile_with_env, Policy};
use trustgate::request::RequestView;
use trustgate::state::jwks_cache::MemoryStore;

const NOW: i64 = 1_800_000_000;
const TOKEN: &str = "Bearer ghp_TEST_ONLY_upstream";

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| m.get(name).cloned()
}

fn config() -> Value {
    json!({
        "providers": {
            "people": {"mtls": {"headers": {"x-commit-owner": "human:${cert.cn}", "x-fp": "${cert.sha256}"}}},
            "services": {"mtls": {
                "uri_san_prefix": ["spiffe://corp/ns/", "spiffe://corp/batch/"],
                "dns_san": ["*.svc.corp", "build.corp"],
                "headers": {"x-commit-owner": "agent:${cert.uri_san}"},
                "upstream_headers": {"x-mesh": "corp"}
            }},
            "cn-only": {"mtls": {"subject_cn_pattern": "deploy-*"}},
            "gk": {"hmac": {"clients": {"c1": {"secret": {"env": "GK_SECRET"}}}, "body": "empty"}}
        },
        "strip_headers": ["x-commit-owner"],
        "rules": [
            {"name": "open", "match": {"path": "/open"}, "allow": "public", "upstream_headers": {"x-api-version": "2"}},
            {"name": "svc", "match": {"path_prefix": "/svc/"}, "require": "services"},
            {"name": "people", "match": {"path_prefix": "/people/"}, "require": "people",
             "upstream_headers": {"authorization": {"env": "UPSTREAM_TOKEN"}, "x-api-version": "2022-11-28"}},
            {"name": "deploy", "match": {"path_prefix": "/deploy/"}, "require": "cn-only"},
            {"name": "mixed", "match": {"path_prefix": "/mixed/"}, "require": {"any": ["gk", "people"]}}
        ]
    })
}

fn policy() -> Policy {
    compile_with_env(
        config().to_string().as_bytes(),
        &env_of(&[("GK_SECRET", "s3cret"), ("UPSTREAM_TOKEN", TOKEN)]),
    )
    .unwrap()
}

fn cert(subject: &str, uri: &str, dns: &str) -> PeerCert {
    PeerCert {
        subject: subject.into(),
        uri_san: uri.into(),
        dns_san: dns.into(),
        sha256: "ab".repeat(32),
    }
}

fn run(p: &Policy, path: &str, headers: &[(&str, &str)], peer: Option<&PeerCert>) -> Decision {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let view = RequestView {
        method: "GET",
        path,
        authority: "api.corp",
        headers: &trustgate::request::borrowed(&headers),
        body: Some(b""),
        peer,
        peer_unread: false,
    };
    let store = MemoryStore::default();
    trustgate::state::replay::prepare_slots(&store, "gk");
    decide(p, &view, NOW, &NoRemoteKeys, &store, &Caches::default())
}

fn ops(d: &Decision) -> Vec<HeaderOp> {
    match d {
        Decision::Allow(a) => a.ops.clone(),
        other => panic!("expected allow, got {other:?}"),
    }
}

fn set(n: &str, v: &str) -> HeaderOp {
    HeaderOp::Set(n.into(), v.into())
}

fn denied(d: &Decision) -> (Reason, u16, Vec<String>) {
    match d {
        Decision::Deny(d) => (d.reason, d.status(), d.challenges()),
        other => panic!("expected deny, got {other:?}"),
    }
}

#[test]
fn a_person_certificate_gives_a_human_identity_and_the_upstream_token_last() {
    let p = policy();
    let alice = cert("O=Corp,CN=alice", "", "");
    let d = run(
        &p,
        "/people/me",
        &[("authorization", "Bearer client")],
        Some(&alice),
    );
    let fp = "ab".repeat(32);
    assert_eq!(
        ops(&d),
        vec![
            set("x-commit-owner", "human:alice"),
            set("x-fp", &fp),
            set("authorization", TOKEN),
            set("x-api-version", "2022-11-28"),
        ]
    );
}

#[test]
fn no_certificate_is_401_missing_without_a_challenge() {
    let p = policy();
    let (reason, status, challenges) = denied(&run(&p, "/people/me", &[], None));
    assert_eq!((reason, status), (Reason::Missing, 401));
    assert!(challenges.is_empty(), "{challenges:?}");
    // An mTLS alternative adds no challenge; the HMAC one still does.
    let (_, status, challenges) = denied(&run(&p, "/mixed/x", &[], None));
    assert_eq!(status, 401);
    assert_eq!(challenges, vec!["HMAC realm=\"trustgate\"".to_string()]);
}

#[test]
fn san_constraints() {
    let p = policy();
    let ok = [
        cert("CN=api", "spiffe://corp/ns/pay/sa/api", "api.svc.corp"),
        cert("CN=job", "spiffe://corp/batch/nightly", "build.corp"),
    ];
    for c in &ok {
        let d = run(&p, "/svc/x", &[], Some(c));
        let o = ops(&d);
        assert_eq!(o[0], set("x-commit-owner", &format!("agent:{}", c.uri_san)));
        assert_eq!(
            o[1],
            set("x-mesh", "corp"),
            "provider-level upstream_headers"
        );
    }
    let refused = [
        cert("CN=api", "spiffe://other/ns/pay", "api.svc.corp"),
        cert("CN=api", "spiffe://corp/nsx/pay", "api.svc.corp"),
        cert("CN=api", "", "api.svc.corp"),
        cert("CN=api", "spiffe://corp/ns/pay", "svc.corp"),
        cert("CN=api", "spiffe://corp/ns/pay", "api.svc.corp.evil"),
        cert("CN=api", "spiffe://corp/ns/pay", ""),
    ];
    for c in &refused {
        let (reason, status, challenges) = denied(&run(&p, "/svc/x", &[], Some(c)));
        assert_eq!((reason, status), (Reason::CertNotAllowed, 403), "{c:?}");
        assert!(challenges.is_empty());
    }
}

#[test]
fn common_name_pattern_and_ambiguous_subjects() {
    let p = policy();
    assert!(matches!(
        run(&p, "/deploy/x", &[], Some(&cert("CN=deploy-eu", "", ""))),
        Decision::Allow(_)
    ));
    for subject in [
        "CN=deployer",
        "O=x",
        "CN=deploy-a,CN=deploy-b",
        "CN=deploy-a;x",
        "",
    ] {
        let (reason, ..) = denied(&run(&p, "/deploy/x", &[], Some(&cert(subject, "", ""))));
        assert_eq!(reason, Reason::CertNotAllowed, "{subject:?}");
    }
    // The CN template needs exactly one CN.
    let (reason, ..) = denied(&run(&p, "/people/x", &[], Some(&cert("CN=a,CN=b", "", ""))));
    assert_eq!(reason, Reason::CertNotAllowed);
    // An unsafe CN (a control character, hex-escaped) is never written.
    let (reason, ..) = denied(&run(&p, "/people/x", &[], Some(&cert(r"CN=a\0Db", "", ""))));
    assert_eq!(reason, Reason::UnsafeClaim);
}

#[test]
fn public_rules_get_their_upstream_headers_denials_get_none() {
    let p = policy();
    assert_eq!(
        ops(&run(&p, "/open", &[], None)),
        vec![set("x-api-version", "2")]
    );
    assert!(matches!(run(&p, "/people/x", &[], None), Decision::Deny(_)));
}

#[test]
fn the_hmac_secret_comes_from_the_environment() {
    use hmac::{Hmac, Mac};
    let p = policy();
    let sign = |secret: &[u8]| {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        m.update(format!("GET\n/mixed/x\n{NOW}\nn1\n").as_bytes());
        let sig: String = m
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("HMAC client_id=\"c1\",timestamp=\"{NOW}\",nonce=\"n1\",signature=\"{sig}\"")
    };
    let good = sign(b"s3cret");
    let d = run(&p, "/mixed/x", &[("authorization", &good)], None);
    assert!(matches!(d, Decision::Allow(_)), "{d:?}");
    let bad = sign(b"{\"env\": \"GK_SECRET\"}");
    let (reason, ..) = denied(&run(&p, "/mixed/x", &[("authorization", &bad)], None));
    assert_eq!(reason, Reason::BadSignature);
}

fn error_with(cfg: &Value, env: &[(&str, &str)]) -> String {
    compile_with_env(cfg.to_string().as_bytes(), &env_of(env))
        .unwrap_err()
        .to_string()
}

#[test]
fn env_errors_name_the_path_and_the_variable() {
    let e = error_with(&config(), &[("GK_SECRET", "x")]);
    assert!(
        e.starts_with("rules[2].upstream_headers.authorization: "),
        "{e}"
    );
    assert!(
        e.contains("\"UPSTREAM_TOKEN\"") && e.contains("vm_config.environment_variables"),
        "{e}"
    );
    let e = error_with(&config(), &[]);
    assert!(
        e.starts_with("providers.gk.hmac.clients.c1.secret: "),
        "{e}"
    );

    let mut c = config();
    c["providers"]["gk"]["hmac"]["clients"]["c1"]["secret"] = json!({"env": 5});
    let e = error_with(&c, &[("UPSTREAM_TOKEN", "t")]);
    assert!(
        e.starts_with("providers.gk.hmac.clients.c1.secret: expected {\"env\": \"NAME\"}"),
        "{e}"
    );
    c["providers"]["gk"]["hmac"]["clients"]["c1"]["secret"] = json!({"env": "A", "default": "x"});
    let e = error_with(&c, &[("UPSTREAM_TOKEN", "t"), ("A", "a")]);
    assert!(
        e.starts_with("providers.gk.hmac.clients.c1.secret: expected {\"env\""),
        "{e}"
    );

    // Only secret-bearing places read the environment.
    let mut c = config();
    c["providers"]["gk"]["hmac"]["clients"]["c1"]["name"] = json!({"env": "GK_SECRET"});
    let e = error_with(&c, &[("GK_SECRET", "x"), ("UPSTREAM_TOKEN", "t")]);
    assert!(e.starts_with("providers.gk.hmac.clients.c1.name"), "{e}");
}

#[test]
fn secrets_from_the_environment_are_validated_and_never_echoed() {
    let e = error_with(
        &config(),
        &[
            ("GK_SECRET", "x"),
            ("UPSTREAM_TOKEN", "Bearer a\r\nx-admin: yes"),
        ],
    );
    assert!(
        e.starts_with("rules[2].upstream_headers.authorization: expected"),
        "{e}"
    );
    assert!(!e.contains("Bearer a"), "{e}");
    let p = policy();
    let dump = format!("{p:?}");
    assert!(
        !dump.contains("ghp_TEST_ONLY") && !dump.contains("s3cret"),
        "Debug shows a secret"
    );
}

#[test]
fn upstream_header_names_are_checked() {
    for (name, want) in [
        ("host", "frames or routes"),
        ("Content-Length", "frames or routes"),
        (":path", "is not a header name"),
    ] {
        let mut c = config();
        c["rules"][0]["upstream_headers"] = json!({ name: "v" });
        let e = error_with(&c, &[("GK_SECRET", "x"), ("UPSTREAM_TOKEN", "t")]);
        assert!(
            e.starts_with("rules[0].upstream_headers.") && e.contains(want),
            "{e}"
        );
    }
    let mut c = config();
    c["rules"][0]["upstream_headers"] = json!({ "x-a": " padded" });
    assert!(error_with(&c, &[("GK_SECRET", "x"), ("UPSTREAM_TOKEN", "t")]).contains("whitespace"));
}

#[test]
fn mtls_config_errors() {
    let bad = [
        (
            json!({"uri_san_prefix": ""}),
            "providers.m.mtls.uri_san_prefix",
        ),
        (
            json!({"uri_san_prefix": []}),
            "providers.m.mtls.uri_san_prefix",
        ),
        (json!({"dns_san": ["*"]}), "providers.m.mtls.dns_san[0]"),
        (json!({"dns_san": []}), "providers.m.mtls.dns_san"),
        (
            json!({"subject_cn_pattern": ""}),
            "providers.m.mtls.subject_cn_pattern",
        ),
        (
            json!({"headers": {"x-a": "${cert.issuer}"}}),
            "providers.m.mtls.headers.x-a",
        ),
        (
            json!({"headers": {"x-a": "${claims.sub}"}}),
            "providers.m.mtls.headers.x-a",
        ),
        (json!({"forward": true}), "providers.m.mtls"),
    ];
    for (m, path) in bad {
        let c = json!({"providers": {"m": {"mtls": m}}, "rules": [{"require": "m"}]});
        let e = compile(c.to_string().as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with(path), "{m}: {e}");
    }
}
