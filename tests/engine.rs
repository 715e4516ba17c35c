//! Request-level tests of the core: a compiled config, a request, a clock → the decision the host applies.
//! Covers every rule of issue 2's "What the filter does" list that can be decided without Envoy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/mint.rs"]
mod mint;

use mint::{b64, hs256, rsa_public_pem, Keys};
use serde_json::{json, Value};
use trustgate::decision::{Decision, HeaderOp, Reason};
use trustgate::engine::Caches;
use trustgate::engine::{decide, NoRemoteKeys};
use trustgate::policy::config::{compile, Policy};
use trustgate::request::RequestView;
use trustgate::state::jwks_cache::MemoryStore;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://idp.example.com/";

fn config(keys: &Keys) -> Value {
    json!({
        "providers": {
            "corp": {"jwt": {
                "issuer": ISS, "audiences": ["api", "other"],
                "keys": {"jwks": keys.jwks()},
                "headers": {
                    "x-commit-owner": "${claims.principal_type:-human}:${claims.sub}",
                    "x-roles": "${claims.realm_access.roles}",
                    "x-role": "${claims[\"https://x.io/role\"]}",
                    "x-via": "${provider}/${rule}"
                }
            }},
            "qs": {"jwt": {
                "issuer": ISS, "keys": {"jwks": keys.jwks()}, "algorithms": ["ES256"],
                "from": [{"query": "access_token"}, {"cookie": "id_token"}],
                "headers": {"x-qs-sub": "${claims.sub}"}
            }},
            "fwd": {"jwt": {
                "issuer": ISS, "keys": {"jwks": keys.jwks()}, "forward": true, "require_exp": false,
                "max_lifetime_s": 3600,
                "from": [{"header": "x-token"}],
                "headers": {"x-fwd-sub": "${claims.sub}"}
            }}
        },
        "strip_headers": ["x-user"],
        "rules": [
            {"name": "health", "match": {"path": "/healthz"}, "allow": "public"},
            {"name": "cors", "match": {"path_prefix": "/cors/"}, "require": "corp", "cors_preflight": "allow"},
            {"name": "either", "match": {"path_prefix": "/either/"}, "require": {"any": ["qs", "corp"]}},
            {"name": "both", "match": {"path_prefix": "/both/"}, "require": {"all": ["corp", "fwd"]}},
            {"name": "fwd", "match": {"path_prefix": "/fwd/"}, "require": "fwd"},
            {"name": "qs", "match": {"path_prefix": "/qs/"}, "require": "qs"},
            {"name": "admin", "match": {"host": "*.example.com", "path_prefix": "/admin/", "methods": ["GET"]}, "require": "corp"},
            {"name": "api", "match": {"path_prefix": "/api/"}, "require": "corp"}
        ]
    })
}

struct Fixture {
    keys: Keys,
    policy: Policy,
}

impl Fixture {
    fn new() -> Fixture {
        let keys = Keys::new();
        let policy = compile(config(&keys).to_string().as_bytes()).unwrap();
        Fixture { keys, policy }
    }

    fn token(&self, alg: &str, kid: &str, claims: Value) -> String {
        self.keys
            .mint(&json!({"alg": alg, "kid": kid, "typ": "JWT"}), &claims)
    }

    fn good_claims() -> Value {
        json!({"iss": ISS, "sub": "alice", "aud": "api", "exp": NOW + 600, "iat": NOW - 10})
    }

    fn decide(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Decision {
        self.decide_at(method, "api.example.com", path, headers)
    }

    fn decide_at(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Decision {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let view = RequestView {
            method,
            path,
            authority: host,
            headers: &trustgate::request::borrowed(&headers),
            body: Some(b""),
            peer: None,
            peer_unread: false,
        };
        decide(
            &self.policy,
            &view,
            NOW,
            &NoRemoteKeys,
            &MemoryStore::default(),
            &Caches::default(),
        )
    }

    fn bearer(&self, path: &str, token: &str) -> Decision {
        let auth = format!("Bearer {token}");
        self.decide("GET", path, &[("authorization", &auth)])
    }
}

fn allowed(d: &Decision) -> &trustgate::decision::Allow {
    match d {
        Decision::Allow(a) => a,
        other => panic!("expected allow, got {other:?}"),
    }
}

fn denied(d: &Decision) -> &trustgate::decision::Deny {
    match d {
        Decision::Deny(d) => d,
        other => panic!("expected deny, got {other:?}"),
    }
}

fn set(d: &Decision, name: &str) -> Option<String> {
    allowed(d).ops.iter().rev().find_map(|op| match op {
        HeaderOp::Set(n, v) if n == name => Some(v.clone()),
        _ => None,
    })
}

fn reason(d: &Decision) -> Reason {
    denied(d).reason
}

#[test]
fn valid_tokens_of_every_algorithm_give_identity_headers() {
    let f = Fixture::new();
    for (alg, kid) in [
        ("ES256", "es"),
        ("RS256", "rs"),
        ("EdDSA", "ed"),
        ("HS256", "hs"),
    ] {
        let mut c = Fixture::good_claims();
        c["realm_access"] = json!({"roles": ["dev", "ops"]});
        c["https://x.io/role"] = json!("admin");
        let d = f.bearer("/api/x", &f.token(alg, kid, c));
        assert_eq!(
            set(&d, "x-commit-owner").as_deref(),
            Some("human:alice"),
            "{alg}"
        );
        assert_eq!(set(&d, "x-roles").as_deref(), Some("dev,ops"));
        assert_eq!(set(&d, "x-role").as_deref(), Some("admin"));
        assert_eq!(set(&d, "x-via").as_deref(), Some("corp/api"));
        // The credential is removed before the upstream.
        assert!(allowed(&d)
            .ops
            .contains(&HeaderOp::Remove("authorization".into())));
        assert_eq!(allowed(&d).providers, vec!["corp".to_string()]);
    }
}

#[test]
fn principal_type_claim_overrides_the_default() {
    let f = Fixture::new();
    let mut c = Fixture::good_claims();
    c["principal_type"] = json!("agent");
    let d = f.bearer("/api/x", &f.token("ES256", "es", c));
    assert_eq!(set(&d, "x-commit-owner").as_deref(), Some("agent:alice"));
}

#[test]
fn missing_claim_without_default_leaves_the_header_absent() {
    let f = Fixture::new();
    let d = f.bearer("/api/x", &f.token("ES256", "es", Fixture::good_claims()));
    assert_eq!(set(&d, "x-roles"), None);
}

#[test]
fn alg_none_is_refused() {
    let f = Fixture::new();
    let t = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(Fixture::good_claims().to_string().as_bytes())
    );
    assert_eq!(reason(&f.bearer("/api/x", &t)), Reason::AlgNotAllowed);
    let t = f
        .keys
        .mint(&json!({"alg": "None"}), &Fixture::good_claims());
    assert_eq!(reason(&f.bearer("/api/x", &t)), Reason::AlgNotAllowed);
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic algorithm confusion: the attacker uses the public key (PEM and DER bytes) as an HMAC secret.
    let f = Fixture::new();
    let pem = rsa_public_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap();
    for (kid, secret) in [
        (Some("rs"), pem.as_bytes()),
        (None, pem.as_bytes()),
        (Some("rs"), &der[..]),
        (None, &der[..]),
    ] {
        let header = match kid {
            Some(k) => json!({"alg": "HS256", "kid": k}),
            None => json!({"alg": "HS256"}),
        };
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(Fixture::good_claims().to_string().as_bytes())
        );
        let t = format!("{input}.{}", b64(&hs256(secret, input.as_bytes())));
        let d = f.bearer("/api/x", &t);
        let want = if kid.is_some() {
            Reason::AlgNotAllowed
        } else {
            Reason::BadSignature
        };
        assert_eq!(reason(&d), want, "kid {kid:?}");
    }
}

#[test]
fn unknown_kid_has_no_fallback() {
    let f = Fixture::new();
    // Signed by the real ES256 key, but names a kid nobody has: no other key is tried.
    let t = f.token("ES256", "rotated-away", Fixture::good_claims());
    let d = f.bearer("/api/x", &t);
    assert_eq!(reason(&d), Reason::UnknownKid);
    assert_eq!(denied(&d).status(), 401);
}

#[test]
fn no_kid_tries_the_keys_that_fit_the_alg() {
    let f = Fixture::new();
    let t = f
        .keys
        .mint(&json!({"alg": "EdDSA"}), &Fixture::good_claims());
    assert!(matches!(f.bearer("/api/x", &t), Decision::Allow(_)));
}

#[test]
fn kid_of_another_key_type_is_refused() {
    let f = Fixture::new();
    // ES256 token claiming the RSA key's kid.
    let t = f.token("ES256", "rs", Fixture::good_claims());
    assert_eq!(reason(&f.bearer("/api/x", &t)), Reason::AlgNotAllowed);
}

#[test]
fn claim_checks() {
    let f = Fixture::new();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, Reason)> = vec![
        (Box::new(|c| c["exp"] = json!(NOW - 61)), Reason::Expired),
        (
            Box::new(|c| c["nbf"] = json!(NOW + 61)),
            Reason::NotYetValid,
        ),
        (
            Box::new(|c| c["iss"] = json!("https://evil/")),
            Reason::WrongIssuer,
        ),
        (
            Box::new(|c| c["iss"] = json!("https://idp.example.com")),
            Reason::WrongIssuer,
        ),
        (
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            Reason::WrongIssuer,
        ),
        (
            Box::new(|c| c["aud"] = json!(["x", "y"])),
            Reason::WrongAudience,
        ),
        (Box::new(|c| c["aud"] = json!("API")), Reason::WrongAudience),
        (
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            Reason::WrongAudience,
        ),
        (
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            Reason::MissingExp,
        ),
        (Box::new(|c| c["exp"] = json!("soon")), Reason::Malformed),
        (
            Box::new(|c| c["aud"] = json!(["api", 5])),
            Reason::Malformed,
        ),
    ];
    for (edit, want) in cases {
        let mut c = Fixture::good_claims();
        edit(&mut c);
        let d = f.bearer("/api/x", &f.token("ES256", "es", c.clone()));
        assert_eq!(reason(&d), want, "{c}");
        let deny = denied(&d);
        assert_eq!(deny.status(), 401);
        assert_eq!(
            deny.challenges(),
            vec!["Bearer realm=\"trustgate\", error=\"invalid_token\"".to_string()]
        );
        assert_eq!(deny.provider.as_deref(), Some("corp"));
    }
}

#[test]
fn skew_tolerates_sixty_seconds_either_way() {
    let f = Fixture::new();
    let mut c = Fixture::good_claims();
    c["exp"] = json!(NOW - 60);
    c["nbf"] = json!(NOW + 60);
    assert!(matches!(
        f.bearer("/api/x", &f.token("ES256", "es", c)),
        Decision::Allow(_)
    ));
    let mut c = Fixture::good_claims();
    c["aud"] = json!(["nope", "other"]);
    assert!(matches!(
        f.bearer("/api/x", &f.token("ES256", "es", c)),
        Decision::Allow(_)
    ));
}

#[test]
fn malformed_tokens() {
    let f = Fixture::new();
    let good = f.token("ES256", "es", Fixture::good_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        "abc".to_string(),
        "a.b".to_string(),
        format!("{}.{}.{}.x.y", parts[0], parts[1], parts[2]),
        format!("{}!.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"{not json"), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], b64(b"[1,2]"), parts[2]),
        format!(
            "{}.{}.{}",
            parts[0],
            b64(br#"{"sub":"a","sub":"b"}"#),
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"ES256","crit":["exp"]}"#),
            parts[1],
            parts[2]
        ),
        format!("{}.{}.{}", b64(br#"{"kid":"es"}"#), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], b64(&[b'['; 5_000]), parts[2]),
    ];
    for t in cases {
        let d = f.bearer("/api/x", &t);
        assert_eq!(reason(&d), Reason::Malformed, "{t:.80}");
    }
}

#[test]
fn tampered_signature_is_refused() {
    let f = Fixture::new();
    for (alg, kid) in [
        ("ES256", "es"),
        ("RS256", "rs"),
        ("EdDSA", "ed"),
        ("HS256", "hs"),
    ] {
        let good = f.token(alg, kid, Fixture::good_claims());
        let (input, sig) = good.rsplit_once('.').unwrap();
        let mut bytes = trustgate::formats::b64::url_decode(sig).unwrap();
        bytes[5] ^= 1;
        let d = f.bearer("/api/x", &format!("{input}.{}", b64(&bytes)));
        assert_eq!(reason(&d), Reason::BadSignature, "{alg}");
        // A payload swapped under a valid signature.
        let mut c = Fixture::good_claims();
        c["sub"] = json!("root");
        let forged_payload = b64(c.to_string().as_bytes());
        let (h, rest) = good.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        assert_eq!(
            reason(&f.bearer("/api/x", &format!("{h}.{forged_payload}.{s}"))),
            Reason::BadSignature
        );
    }
}

#[test]
fn oversized_token_is_refused() {
    let f = Fixture::new();
    let mut c = Fixture::good_claims();
    c["pad"] = json!("x".repeat(17 * 1024));
    let t = f.token("ES256", "es", c);
    assert!(t.len() > 17 * 1024);
    assert_eq!(reason(&f.bearer("/api/x", &t)), Reason::TokenTooLarge);
}

#[test]
fn crlf_in_a_claim_used_by_a_template_denies() {
    let f = Fixture::new();
    for sub in ["alice\r\nx-admin: true", "alice\nx", "a\u{0}b"] {
        let mut c = Fixture::good_claims();
        c["sub"] = json!(sub);
        let d = f.bearer("/api/x", &f.token("ES256", "es", c));
        assert_eq!(reason(&d), Reason::UnsafeClaim);
        assert_eq!(denied(&d).status(), 403);
    }
    // A control character in a claim no template reads is harmless.
    let mut c = Fixture::good_claims();
    c["note"] = json!("a\r\nb");
    assert!(matches!(
        f.bearer("/api/x", &f.token("ES256", "es", c)),
        Decision::Allow(_)
    ));
}

#[test]
fn missing_credential_gets_a_bare_challenge() {
    let f = Fixture::new();
    let d = f.decide("GET", "/api/x", &[]);
    let deny = denied(&d);
    assert_eq!(deny.reason, Reason::Missing);
    assert_eq!(deny.status(), 401);
    assert_eq!(
        deny.challenges(),
        vec!["Bearer realm=\"trustgate\"".to_string()]
    );
    assert_eq!(
        deny.body(),
        r#"{"error":"unauthorized","reason":"missing"}"#
    );
    // Another scheme in Authorization is not a bearer token.
    let d = f.decide("GET", "/api/x", &[("authorization", "Basic YTpi")]);
    assert_eq!(reason(&d), Reason::Missing);
}

#[test]
fn two_credentials_are_refused() {
    let f = Fixture::new();
    let t = f.token("ES256", "es", Fixture::good_claims());
    let auth = format!("Bearer {t}");
    let d = f.decide(
        "GET",
        "/api/x",
        &[("authorization", &auth), ("Authorization", &auth)],
    );
    assert_eq!(reason(&d), Reason::MultipleCredentials);
    let cookie = format!("id_token={t}");
    let d = f.decide(
        "GET",
        &format!("/qs/x?access_token={t}"),
        &[("cookie", &cookie)],
    );
    assert_eq!(reason(&d), Reason::MultipleCredentials);
}

#[test]
fn query_and_cookie_sources_remove_the_credential() {
    let f = Fixture::new();
    let t = f.token("ES256", "es", Fixture::good_claims());
    let d = f.decide("GET", &format!("/qs/x?a=1&access_token={t}"), &[]);
    assert_eq!(set(&d, "x-qs-sub").as_deref(), Some("alice"));
    assert!(allowed(&d)
        .ops
        .contains(&HeaderOp::Set(":path".into(), "/qs/x?a=1".into())));
    let cookie = format!("theme=dark; id_token={t}");
    let d = f.decide("GET", "/qs/x", &[("cookie", &cookie)]);
    assert!(allowed(&d)
        .ops
        .contains(&HeaderOp::Set("cookie".into(), "theme=dark".into())));
    // The qs provider only allows ES256.
    let t = f.token("RS256", "rs", Fixture::good_claims());
    assert_eq!(
        reason(&f.decide("GET", &format!("/qs/x?access_token={t}"), &[])),
        Reason::AlgNotAllowed
    );
}

#[test]
fn forward_keeps_the_credential_and_max_lifetime_bounds_tokens() {
    let f = Fixture::new();
    let mut c = Fixture::good_claims();
    c.as_object_mut().unwrap().remove("aud");
    let t = f.token("ES256", "es", c.clone());
    let d = f.decide("GET", "/fwd/x", &[("x-token", &t)]);
    assert_eq!(set(&d, "x-fwd-sub").as_deref(), Some("alice"));
    assert!(!allowed(&d)
        .ops
        .iter()
        .any(|op| matches!(op, HeaderOp::Remove(_))));
    c["exp"] = json!(NOW + 7200);
    let t = f.token("ES256", "es", c.clone());
    assert_eq!(
        reason(&f.decide("GET", "/fwd/x", &[("x-token", &t)])),
        Reason::LifetimeTooLong
    );
    // require_exp: false, but max_lifetime_s still needs an exp.
    c.as_object_mut().unwrap().remove("exp");
    let t = f.token("ES256", "es", c);
    assert_eq!(
        reason(&f.decide("GET", "/fwd/x", &[("x-token", &t)])),
        Reason::MissingExp
    );
}

#[test]
fn any_and_all_requirements() {
    let f = Fixture::new();
    let t = f.token("ES256", "es", Fixture::good_claims());
    // any: qs is absent, corp satisfies.
    let d = f.bearer("/either/x", &t);
    assert_eq!(allowed(&d).providers, vec!["corp".to_string()]);
    // any: nothing presented → missing with the challenge.
    assert_eq!(reason(&f.decide("GET", "/either/x", &[])), Reason::Missing);
    // any: a presented-but-bad credential is the reported failure, not the absent one.
    let mut c = Fixture::good_claims();
    c["exp"] = json!(NOW - 1000);
    let d = f.bearer("/either/x", &f.token("ES256", "es", c));
    assert_eq!(reason(&d), Reason::Expired);
    // all: both credentials needed.
    assert_eq!(reason(&f.bearer("/both/x", &t)), Reason::Missing);
    let auth = format!("Bearer {t}");
    let d = f.decide(
        "GET",
        "/both/x",
        &[("authorization", &auth), ("x-token", &t)],
    );
    assert_eq!(
        allowed(&d).providers,
        vec!["corp".to_string(), "fwd".to_string()]
    );
    assert_eq!(set(&d, "x-fwd-sub").as_deref(), Some("alice"));
    assert_eq!(set(&d, "x-commit-owner").as_deref(), Some("human:alice"));
}

#[test]
fn rules_first_match_public_and_no_rule() {
    let f = Fixture::new();
    let d = f.decide("GET", "/healthz", &[]);
    assert_eq!(allowed(&d).rule, "health");
    assert!(allowed(&d).ops.is_empty());
    // Normalized before matching: these are all /healthz.
    for p in [
        "//healthz",
        "/./healthz",
        "/x/../healthz",
        "/%68ealthz",
        "/healthz?x=1",
    ] {
        assert_eq!(allowed(&f.decide("GET", p, &[])).rule, "health", "{p}");
    }
    // Not /healthz: protected or unmatched, never public.
    assert_eq!(
        reason(&f.decide("GET", "/healthz/../api/x", &[])),
        Reason::Missing
    );
    let d = f.decide("GET", "/nothing", &[]);
    assert_eq!(reason(&d), Reason::NoRule);
    assert_eq!(denied(&d).status(), 403);
    assert!(denied(&d).challenges().is_empty());
    // Ambiguous paths are refused before any rule.
    let d = f.decide("GET", "/healthz/..%2fapi/x", &[]);
    assert_eq!(reason(&d), Reason::AmbiguousPath);
    assert_eq!(denied(&d).status(), 400);
}

#[test]
fn paths_read_differently_by_upstreams_are_refused() {
    // Regression (hostile corpus, issue 7): each of these was public for trustgate and protected for some
    // upstream. `//` before `..` is `/healthz` when slashes are merged first and `/api/healthz` under RFC 3986
    // dot-segment removal; `..;` is `..` for Tomcat/Jetty/Spring, which drop `;params` per segment.
    let f = Fixture::new();
    for p in [
        "/api//../healthz",
        "/api/x//../../healthz",
        "/healthz/..;/api/x",
        "/healthz/..;jsessionid=1/api/x",
        "/healthz/%2e%2e;/api/x",
        "/healthz;x",
    ] {
        let d = f.decide("GET", p, &[]);
        assert_eq!(reason(&d), Reason::AmbiguousPath, "{p}");
        assert_eq!(denied(&d).status(), 400, "{p}");
    }
    // Readings that agree on the rule are fine: a parameter or `//` that does not change which rule applies.
    assert_eq!(allowed(&f.decide("GET", "//healthz", &[])).rule, "health");
    assert_eq!(
        reason(&f.decide("GET", "/api/x;jsessionid=1", &[])),
        Reason::Missing
    );
    assert_eq!(
        reason(&f.decide("GET", "/api//x/../y", &[])),
        Reason::Missing
    );
}

#[test]
fn host_and_method_matching() {
    let f = Fixture::new();
    let t = f.token("ES256", "es", Fixture::good_claims());
    let auth = format!("Bearer {t}");
    let d = f.decide_at(
        "GET",
        "a.example.com:8443",
        "/admin/x",
        &[("authorization", &auth)],
    );
    assert_eq!(allowed(&d).rule, "admin");
    assert_eq!(
        reason(&f.decide_at("POST", "a.example.com", "/admin/x", &[])),
        Reason::NoRule
    );
    assert_eq!(
        reason(&f.decide_at("GET", "example.org", "/admin/x", &[])),
        Reason::NoRule
    );
}

#[test]
fn cors_preflight_passes_only_where_allowed() {
    let f = Fixture::new();
    let pre = [
        ("origin", "https://app"),
        ("access-control-request-method", "POST"),
    ];
    let d = f.decide("OPTIONS", "/cors/x", &pre);
    assert_eq!(allowed(&d).rule, "cors");
    assert!(allowed(&d).providers.is_empty());
    // Not a preflight without both headers.
    assert_eq!(
        reason(&f.decide("OPTIONS", "/cors/x", &pre[..1])),
        Reason::Missing
    );
    // Not allowed on rules without cors_preflight.
    assert_eq!(
        reason(&f.decide("OPTIONS", "/api/x", &pre)),
        Reason::Missing
    );
}

#[test]
fn registered_claims_have_fixed_types_and_ranges() {
    let f = Fixture::new();
    let cases: Vec<(&str, Value)> = vec![
        ("sub", json!(123)),
        ("jti", json!(["a"])),
        ("iss", json!(1)),
        ("exp", json!(2.001e206)),
        ("exp", json!(-1)),
        ("nbf", json!(-12345)),
        ("iat", json!(253_402_300_800_i64)),
    ];
    for (name, value) in cases {
        let mut c = Fixture::good_claims();
        c[name] = value.clone();
        let d = f.bearer("/api/x", &f.token("ES256", "es", c));
        assert_eq!(reason(&d), Reason::Malformed, "{name} = {value}");
    }
}

#[test]
fn keys_without_kid_verify_tokens_with_one_but_other_kids_never_do() {
    let keys = Keys::new();
    let pem = rsa_public_pem();
    let cfg = json!({
        "providers": {"p": {"jwt": {"keys": {"pem": pem}}}},
        "rules": [{"require": "p"}]
    });
    let policy = compile(cfg.to_string().as_bytes()).unwrap();
    let token = keys.mint(
        &json!({"alg": "RS256", "kid": "from-the-idp"}),
        &Fixture::good_claims(),
    );
    let auth = format!("Bearer {token}");
    let headers = vec![("authorization".to_string(), auth)];
    let view = RequestView {
        method: "GET",
        path: "/",
        authority: "h",
        headers: &trustgate::request::borrowed(&headers),
        body: Some(b""),
        peer: None,
        peer_unread: false,
    };
    assert!(matches!(
        decide(
            &policy,
            &view,
            NOW,
            &NoRemoteKeys,
            &MemoryStore::default(),
            &Caches::default()
        ),
        Decision::Allow(_)
    ));
}

mod token_cache {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use trustgate::engine::KeyLookup;
    use trustgate::formats::jwk::{parse_jwks, Jwk};

    /// A remote key set the test rotates: (keys, version).
    struct Rotating(RefCell<(Rc<[Jwk]>, u64)>);

    impl KeyLookup for Rotating {
        fn remote_keys(&self, _index: usize) -> Option<(Rc<[Jwk]>, u64)> {
            Some(self.0.borrow().clone())
        }
    }

    fn jwks_of(keys: &Keys, kids: &[&str]) -> Rc<[Jwk]> {
        let mut all = keys.jwks();
        all["keys"]
            .as_array_mut()
            .unwrap()
            .retain(|k| kids.contains(&k["kid"].as_str().unwrap()));
        parse_jwks(&all.to_string()).unwrap().keys.into()
    }

    fn run(
        policy: &Policy,
        lookup: &dyn KeyLookup,
        caches: &Caches,
        path: &str,
        token: &str,
        now: i64,
    ) -> Decision {
        let headers = vec![("authorization".to_string(), format!("Bearer {token}"))];
        let view = RequestView {
            method: "GET",
            path,
            authority: "h",
            headers: &trustgate::request::borrowed(&headers),
            body: Some(b""),
            peer: None,
            peer_unread: false,
        };
        decide(policy, &view, now, lookup, &MemoryStore::default(), caches)
    }

    #[test]
    fn a_cached_token_expires_on_time() {
        let f = Fixture::new();
        let caches = Caches::default();
        let t = f.token("ES256", "es", Fixture::good_claims()); // exp = NOW + 600, skew 60
        assert!(matches!(
            run(&f.policy, &NoRemoteKeys, &caches, "/api/x", &t, NOW),
            Decision::Allow(_)
        ));
        assert_eq!(caches.tokens.len(), 1);
        assert!(matches!(
            run(&f.policy, &NoRemoteKeys, &caches, "/api/x", &t, NOW + 660),
            Decision::Allow(_)
        ));
        assert_eq!(
            reason(&run(
                &f.policy,
                &NoRemoteKeys,
                &caches,
                "/api/x",
                &t,
                NOW + 661
            )),
            Reason::Expired
        );
        // nbf is checked again too: a cached token is never valid before it was.
        let mut c = Fixture::good_claims();
        c["nbf"] = json!(NOW);
        let t = f.token("ES256", "es", c);
        assert!(matches!(
            run(&f.policy, &NoRemoteKeys, &caches, "/api/x", &t, NOW),
            Decision::Allow(_)
        ));
        assert_eq!(
            reason(&run(
                &f.policy,
                &NoRemoteKeys,
                &caches,
                "/api/x",
                &t,
                NOW - 61
            )),
            Reason::NotYetValid
        );
    }

    #[test]
    fn a_rotated_out_key_does_not_keep_a_cached_token_alive() {
        let keys = Keys::new();
        let cfg = json!({
            "providers": {"idp": {"jwt": {"issuer": ISS, "keys": {"remote": {"cluster": "c", "authority": "a", "path": "/j"}}}}},
            "rules": [{"require": "idp"}]
        });
        let policy = compile(cfg.to_string().as_bytes()).unwrap();
        let lookup = Rotating(RefCell::new((jwks_of(&keys, &["es", "rs"]), 1)));
        let caches = Caches::default();
        let t = keys.mint(
            &json!({"alg": "ES256", "kid": "es"}),
            &Fixture::good_claims(),
        );
        assert!(matches!(
            run(&policy, &lookup, &caches, "/x", &t, NOW),
            Decision::Allow(_)
        ));
        assert!(matches!(
            run(&policy, &lookup, &caches, "/x", &t, NOW),
            Decision::Allow(_)
        ));
        // The IdP drops "es": version 2 has only "rs". The cached token must not pass.
        *lookup.0.borrow_mut() = (jwks_of(&keys, &["rs"]), 2);
        assert_eq!(
            reason(&run(&policy, &lookup, &caches, "/x", &t, NOW)),
            Reason::UnknownKid
        );
        // A new version holding the same key again verifies anew.
        *lookup.0.borrow_mut() = (jwks_of(&keys, &["es"]), 3);
        assert!(matches!(
            run(&policy, &lookup, &caches, "/x", &t, NOW),
            Decision::Allow(_)
        ));
    }

    #[test]
    fn a_token_cached_for_one_provider_is_not_accepted_by_another() {
        let keys = Keys::new();
        let cfg = json!({
            "providers": {
                "a": {"jwt": {"issuer": ISS, "audiences": ["api"], "keys": {"jwks": keys.jwks()}}},
                "b": {"jwt": {"issuer": ISS, "audiences": ["other-api"], "keys": {"jwks": keys.jwks()}}}
            },
            "rules": [
                {"name": "a", "match": {"path_prefix": "/a/"}, "require": "a"},
                {"name": "b", "match": {"path_prefix": "/b/"}, "require": "b"}
            ]
        });
        let policy = compile(cfg.to_string().as_bytes()).unwrap();
        let caches = Caches::default();
        let t = keys.mint(
            &json!({"alg": "ES256", "kid": "es"}),
            &Fixture::good_claims(),
        ); // aud "api"
        assert!(matches!(
            run(&policy, &NoRemoteKeys, &caches, "/a/x", &t, NOW),
            Decision::Allow(_)
        ));
        assert_eq!(
            reason(&run(&policy, &NoRemoteKeys, &caches, "/b/x", &t, NOW)),
            Reason::WrongAudience
        );
        // And an invalid token is never cached: it fails every time, the same way.
        // The same header and signature over another payload.
        let (h, rest) = t.split_once('.').unwrap();
        let sig = rest.split_once('.').unwrap().1;
        let mut c = Fixture::good_claims();
        c["sub"] = json!("root");
        let bad = format!("{h}.{}.{sig}", b64(c.to_string().as_bytes()));
        for _ in 0..2 {
            assert_eq!(
                reason(&run(&policy, &NoRemoteKeys, &caches, "/a/x", &bad, NOW)),
                Reason::BadSignature
            );
        }
        assert_eq!(caches.tokens.len(), 1);
    }

    #[test]
    fn the_cache_is_bounded() {
        let f = Fixture::new();
        let caches = Caches::default();
        for i in 0..(trustgate::state::token_cache::MAX_ENTRIES + 10) {
            let mut c = Fixture::good_claims();
            c["jti"] = json!(i.to_string());
            let t = f.keys.mint(&json!({"alg": "HS256", "kid": "hs"}), &c);
            assert!(matches!(
                run(&f.policy, &NoRemoteKeys, &caches, "/api/x", &t, NOW),
                Decision::Allow(_)
            ));
        }
        assert!(caches.tokens.len() <= trustgate::state::token_cache::MAX_ENTRIES);
    }

    #[test]
    fn long_tokens_are_verified_every_time_never_cached() {
        let f = Fixture::new();
        let caches = Caches::default();
        let mut c = Fixture::good_claims();
        c["pad"] = json!("x".repeat(trustgate::state::token_cache::MAX_TOKEN_BYTES));
        let t = f.keys.mint(&json!({"alg": "ES256", "kid": "es"}), &c);
        assert!(t.len() > trustgate::state::token_cache::MAX_TOKEN_BYTES);
        for _ in 0..2 {
            assert!(matches!(
                run(&f.policy, &NoRemoteKeys, &caches, "/api/x", &t, NOW),
                Decision::Allow(_)
            ));
        }
        assert!(caches.tokens.is_empty());
    }

    #[test]
    fn a_hit_is_the_same_token_byte_for_byte() {
        let f = Fixture::new();
        let caches = Caches::default();
        let t = f.token("ES256", "es", Fixture::good_claims());
        assert!(matches!(
            run(&f.policy, &NoRemoteKeys, &caches, "/api/x", &t, NOW),
            Decision::Allow(_)
        ));
        // Every one-character change of the cached token is looked up, missed, and refused on its own. The
        // cache's digest reads only the last 64 bytes: every change before them has the cached token's digest,
        // and must still be a miss.
        let bytes = t.as_bytes();
        for i in 0..bytes.len() {
            let mut changed = bytes.to_vec();
            changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(changed).unwrap();
            assert!(
                matches!(
                    run(&f.policy, &NoRemoteKeys, &caches, "/api/x", &changed, NOW),
                    Decision::Deny(_)
                ),
                "byte {i} changed and still allowed"
            );
        }
        assert_eq!(caches.tokens.len(), 1);
    }
}

/// A JWK Set the way Keycloak publishes a realm's keys: an RSA-OAEP encryption key beside the RS256 signing
/// key (both with real RSA numbers; here the same test key, under two kids).
fn keycloak_like_jwks(keys: &Keys) -> Value {
    let sig = keys.jwks()["keys"][2].clone();
    let mut enc = sig.clone();
    enc["kid"] = json!("kc-enc");
    enc["use"] = json!("enc");
    enc["alg"] = json!("RSA-OAEP");
    let mut sig = sig;
    sig["kid"] = json!("kc-sig");
    sig["use"] = json!("sig");
    sig["alg"] = json!("RS256");
    json!({"keys": [enc, sig]})
}

#[test]
fn an_inline_keycloak_jwks_skips_its_encryption_key_and_verifies_with_the_signing_key() {
    let keys = Keys::new();
    let cfg = json!({
        "providers": {"kc": {"jwt": {"issuer": ISS, "keys": {"jwks": keycloak_like_jwks(&keys)},
            "headers": {"x-commit-owner": "human:${claims.sub}"}}}},
        "rules": [{"require": "kc"}]
    });
    let policy = compile(cfg.to_string().as_bytes()).unwrap();
    assert_eq!(
        policy.warnings,
        vec!["key skipped, it cannot verify a JWS: providers.kc.jwt.keys.jwks.keys[0] (kid \"kc-enc\"): use: \"enc\" marks an encryption key, expected \"sig\"".to_owned()]
    );
    let f = Fixture { keys, policy };
    let claims = json!({"iss": ISS, "sub": "alice", "exp": NOW + 600});
    let d = f.bearer("/x", &f.token("RS256", "kc-sig", claims.clone()));
    assert_eq!(set(&d, "x-commit-owner").as_deref(), Some("human:alice"));
    // The skipped key's kid is unknown: no fallback to the signing key.
    let d = f.bearer("/x", &f.token("RS256", "kc-enc", claims));
    assert_eq!(reason(&d), Reason::UnknownKid);
}
