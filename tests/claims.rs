//! Claim conditions on requirements, explicit typing (`jwt.typ`) and RFC 9864 `Ed25519` names, through the
//! whole core: a compiled config, a request, a clock → the decision (DESIGN.md "Claim conditions, explicit
//! typing, sender-constrained tokens"; issue 15 items 1, 2, 6).
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
use trustgate::decision::{Decision, Deny, HeaderOp, Reason};
use trustgate::engine::{decide, Caches, NoRemoteKeys};
use trustgate::policy::config::{compile, Policy};
use trustgate::request::RequestView;
use trustgate::state::jwks_cache::MemoryStore;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://idp.example.com/";
const OTHER_ISS: &str = "https://partner.example.com/";

fn jwt(keys: &Keys, issuer: &str, extra: Value) -> Value {
    let mut j = json!({
        "issuer": issuer, "audiences": ["api"], "keys": {"jwks": keys.jwks()},
        "headers": {"x-user": "${claims.sub}"}
    });
    for (k, v) in extra.as_object().unwrap() {
        j[k] = v.clone();
    }
    json!({ "jwt": j })
}

fn config(keys: &Keys) -> Value {
    let secret_sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // sha256("test")
    json!({
        "providers": {
            "corp": jwt(keys, ISS, json!({})),
            "partner": jwt(keys, OTHER_ISS, json!({})),
            "typed": jwt(keys, ISS, json!({"typ": ["at+jwt", "application/JWT"]})),
            "ed": jwt(keys, ISS, json!({"algorithms": ["Ed25519"]})),
            "second": jwt(keys, ISS, json!({"from": [{"header": "x-token"}], "headers": {"x-second": "${claims.sub}"}})),
            "keys": {"api_key": {"clients": {"ci": {"key_sha256": secret_sha}}, "headers": {"x-client": "${client.id}"}}}
        },
        "rules": [
            {"name": "orders", "match": {"path_prefix": "/orders/"},
             "require": {"provider": "corp", "claims": {"scope": ["orders:write"]}}},
            {"name": "admin", "match": {"path_prefix": "/admin/"},
             "require": {"provider": "corp", "claims": {
                 "groups": {"any": ["admin", "ops"]}, "realm_access.roles": ["editor"],
                 "[\"https://x.io/tier\"]": {"any": ["gold"]}}}},
            {"name": "any", "match": {"path_prefix": "/any/"},
             "require": {"any": [
                 {"provider": "corp", "claims": {"groups": ["admin"]}},
                 {"provider": "partner", "claims": {"scp": ["partner:read"]}},
                 "keys"]}},
            {"name": "any-partner-first", "match": {"path_prefix": "/apf/"},
             "require": {"any": ["partner", {"provider": "corp", "claims": {"scope": ["a", "b"]}}]}},
            {"name": "all", "match": {"path_prefix": "/all/"},
             "require": {"all": [{"provider": "corp", "claims": {"scope": ["a"]}}, "second"]}},
            {"name": "nested", "match": {"path_prefix": "/nested/"},
             "require": {"any": [{"all": [{"provider": "corp", "claims": {"groups": ["admin"]}}, "second"]},
                                 {"provider": "corp", "claims": {"scope": ["root"]}}]}},
            {"name": "plain", "match": {"path_prefix": "/plain/"}, "require": {"provider": "corp"}},
            {"name": "typed", "match": {"path_prefix": "/typed/"}, "require": "typed"},
            {"name": "ed", "match": {"path_prefix": "/ed/"}, "require": "ed"}
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

    /// An ES256 token of `iss` with the base claims plus `extra`, header `typ: JWT`.
    fn token(&self, iss: &str, extra: Value) -> String {
        self.typed(Some("JWT"), iss, extra)
    }

    fn typed(&self, typ: Option<&str>, iss: &str, extra: Value) -> String {
        let mut header = json!({"alg": "ES256", "kid": "es"});
        if let Some(t) = typ {
            header["typ"] = json!(t);
        }
        let mut c =
            json!({"iss": iss, "sub": "alice", "aud": "api", "exp": NOW + 600, "iat": NOW - 10});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        self.keys.mint(&header, &c)
    }

    fn decide(&self, path: &str, headers: &[(&str, &str)]) -> Decision {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let view = RequestView {
            method: "GET",
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
            NOW,
            &NoRemoteKeys,
            &MemoryStore::default(),
            &Caches::default(),
        )
    }

    /// `token` as the bearer token, `second` in `x-token`.
    fn decide_two(&self, path: &str, token: &str, second: &str) -> Decision {
        self.decide(
            path,
            &[
                ("authorization", &format!("Bearer {token}")),
                ("x-token", second),
            ],
        )
    }

    fn bearer(&self, path: &str, token: &str) -> Decision {
        self.decide(path, &[("authorization", &format!("Bearer {token}"))])
    }
}

fn allowed(d: &Decision) -> Vec<String> {
    match d {
        Decision::Allow(a) => {
            assert!(
                a.ops
                    .contains(&HeaderOp::Set("x-user".into(), "alice".into()))
                    || a.ops
                        .iter()
                        .any(|o| matches!(o, HeaderOp::Set(n, _) if n == "x-client"))
            );
            a.providers.clone()
        }
        other => panic!("expected allow, got {other:?}"),
    }
}

fn denied(d: &Decision) -> &Deny {
    match d {
        Decision::Deny(d) => d,
        other => panic!("expected deny, got {other:?}"),
    }
}

/// A 403 `claim_not_allowed`, without a challenge.
fn not_allowed(d: &Decision) {
    let d = denied(d);
    assert_eq!(d.reason, Reason::ClaimNotAllowed);
    assert_eq!(d.status(), 403);
    assert!(d.challenges().is_empty(), "{:?}", d.challenges());
    assert_eq!(
        d.body(),
        r#"{"error":"forbidden","reason":"claim_not_allowed"}"#
    );
}

/// A 403 `insufficient_scope` whose only challenge is RFC 6750 §3.1's, naming `scope`.
fn insufficient(d: &Decision, scope: &str) {
    let d = denied(d);
    assert_eq!(d.reason, Reason::InsufficientScope);
    assert_eq!(d.status(), 403);
    assert_eq!(
        d.challenges(),
        vec![format!(
            "Bearer realm=\"trustgate\", error=\"insufficient_scope\", scope=\"{scope}\""
        )]
    );
}

#[test]
fn a_scope_condition_reads_the_space_delimited_scope_claim() {
    let f = Fixture::new();
    for scope in [
        "orders:write",
        "openid orders:write email",
        "email  orders:write",
    ] {
        let t = f.token(ISS, json!({"scope": scope}));
        assert_eq!(allowed(&f.bearer("/orders/1", &t)), vec!["corp"], "{scope}");
    }
    for claims in [
        json!({"scope": "orders:read"}),
        json!({"scope": "orders:writer"}),
        json!({"scope": "ORDERS:WRITE"}),
        json!({}),
        json!({"scope": 7}),
        json!({"scope": {"orders:write": true}}),
        json!({"scope": ["openid orders:write"]}),
    ] {
        let t = f.token(ISS, claims.clone());
        insufficient(&f.bearer("/orders/1", &t), "orders:write");
        assert_eq!(
            denied(&f.bearer("/orders/1", &t)).provider.as_deref(),
            Some("corp")
        );
    }
    // An array scope claim is a set.
    let t = f.token(ISS, json!({"scope": ["a", "orders:write"]}));
    allowed(&f.bearer("/orders/1", &t));
}

#[test]
fn conditions_on_groups_nested_paths_and_quoted_names_all_hold() {
    let f = Fixture::new();
    let good = json!({"groups": ["dev", "ops"], "realm_access": {"roles": ["editor"]}, "https://x.io/tier": "gold"});
    allowed(&f.bearer("/admin/x", &f.token(ISS, good.clone())));
    let edits: [(&str, Value); 7] = [
        ("groups", json!(["dev"])),
        ("groups", json!("admin ops")),
        ("groups", json!(null)),
        ("realm_access", json!({"roles": "viewer"})),
        ("realm_access", json!(["editor"])),
        ("https://x.io/tier", json!(["silver"])),
        ("https://x.io/tier", json!({"gold": 1})),
    ];
    for (name, value) in edits {
        let mut c = good.clone();
        c[name] = value.clone();
        not_allowed(&f.bearer("/admin/x", &f.token(ISS, c)));
    }
    let mut c = good;
    c.as_object_mut().unwrap().remove("realm_access");
    not_allowed(&f.bearer("/admin/x", &f.token(ISS, c)));
    // A group given as a one-value string is that value.
    let one = json!({"groups": "admin", "realm_access": {"roles": ["editor"]}, "https://x.io/tier": "gold"});
    allowed(&f.bearer("/admin/x", &f.token(ISS, one)));
}

#[test]
fn credential_refusals_come_before_conditions() {
    let f = Fixture::new();
    let expired = f.token(ISS, json!({"scope": "orders:read", "exp": NOW - 3600}));
    assert_eq!(
        denied(&f.bearer("/orders/1", &expired)).reason,
        Reason::Expired
    );
    assert_eq!(denied(&f.decide("/orders/1", &[])).reason, Reason::Missing);
    // `{"provider": …}` without claims is the provider alone.
    allowed(&f.bearer("/plain/x", &f.token(ISS, json!({}))));
}

#[test]
fn inside_any_a_verified_token_that_fails_its_conditions_is_a_refusal_like_any_other() {
    let f = Fixture::new();
    // Passes through the corp alternative, the partner alternative, or the API key.
    allowed(&f.bearer("/any/x", &f.token(ISS, json!({"groups": ["admin"]}))));
    assert_eq!(
        allowed(&f.bearer(
            "/any/x",
            &f.token(OTHER_ISS, json!({"scp": ["partner:read"]}))
        )),
        vec!["partner"]
    );
    assert_eq!(
        allowed(&f.decide("/any/x", &[("authorization", "ApiKey test")])),
        vec!["keys"]
    );
    // The corp token verifies but its groups do not match; partner refuses it (wrong issuer), the API key
    // is missing: the condition's 403 says the most.
    not_allowed(&f.bearer("/any/x", &f.token(ISS, json!({"groups": ["dev"]}))));
    // The partner token lacks its scope; corp refuses it (issuer): insufficient_scope, naming partner's.
    let d = f.bearer(
        "/any/x",
        &f.token(OTHER_ISS, json!({"scp": "partner:write"})),
    );
    insufficient(&d, "partner:read");
    assert_eq!(denied(&d).provider.as_deref(), Some("partner"));
    // The condition refusal wins over an earlier alternative's credential refusal of the same token.
    let d = f.bearer("/apf/x", &f.token(ISS, json!({"scope": "a"})));
    insufficient(&d, "a b");
    // Two unmet alternatives: the first decides.
    let mut other = f.bearer("/any/x", &f.token(ISS, json!({"scp": "partner:read"})));
    not_allowed(&other);
    other = f.decide("/any/x", &[("authorization", "ApiKey wrong")]);
    assert_eq!(denied(&other).reason, Reason::InvalidKey);
}

#[test]
fn inside_all_and_nested_trees_conditions_hold_where_they_stand() {
    let f = Fixture::new();
    let second = f.token(ISS, json!({"sub": "bob"}));
    // `all`: the token's conditions, and the second provider's token.
    let d = f.decide_two("/all/x", &f.token(ISS, json!({"scope": "a"})), &second);
    assert_eq!(allowed(&d), vec!["corp", "second"]);
    let d = f.decide_two("/all/x", &f.token(ISS, json!({"scope": "b"})), &second);
    insufficient(&d, "a");
    // Nested: {any: [{all: [corp with groups admin, second]}, corp with scope root]}.
    let d = f.decide_two(
        "/nested/x",
        &f.token(ISS, json!({"groups": ["admin"]})),
        &second,
    );
    assert_eq!(allowed(&d), vec!["corp", "second"]);
    let root = f.token(ISS, json!({"scope": "root"}));
    assert_eq!(allowed(&f.bearer("/nested/x", &root)), vec!["corp"]);
    let neither = f.token(ISS, json!({"scope": "x", "groups": ["dev"]}));
    not_allowed(&f.decide_two("/nested/x", &neither, &second));
    // The `all` branch's conditions hold but its second token is missing: the other branch's unmet scope
    // (a verified token that fails its conditions) is what the `any` reports.
    let admin = f.token(ISS, json!({"groups": ["admin"]}));
    insufficient(&f.bearer("/nested/x", &admin), "root");
}

#[test]
fn explicit_typing_compares_typ_case_insensitively_without_the_application_prefix() {
    let f = Fixture::new();
    for typ in [
        "at+jwt",
        "application/at+jwt",
        "AT+JWT",
        "Application/AT+JWT",
        "JWT",
        "application/jwt",
    ] {
        allowed(&f.bearer("/typed/x", &f.typed(Some(typ), ISS, json!({}))));
    }
    for typ in [
        Some("dpop+jwt"),
        Some("application/dpop+jwt"),
        Some("id_token+jwt"),
        Some("at+jwt2"),
        None,
    ] {
        let d = f.bearer("/typed/x", &f.typed(typ, ISS, json!({})));
        let d = denied(&d);
        assert_eq!(d.reason, Reason::TypNotAllowed, "{typ:?}");
        assert_eq!(d.status(), 401);
        assert_eq!(
            d.challenges(),
            vec!["Bearer realm=\"trustgate\", error=\"invalid_token\"".to_string()]
        );
        assert_eq!(
            d.body(),
            r#"{"error":"invalid_token","reason":"typ_not_allowed"}"#
        );
    }
}

#[test]
fn without_a_typ_list_any_typ_passes_but_a_dpop_proof() {
    let f = Fixture::new();
    for typ in [Some("JWT"), Some("at+jwt"), Some("whatever"), None] {
        allowed(&f.bearer("/plain/x", &f.typed(typ, ISS, json!({}))));
    }
    for typ in ["dpop+jwt", "DPoP+JWT", "application/dpop+jwt"] {
        let d = f.bearer("/plain/x", &f.typed(Some(typ), ISS, json!({})));
        assert_eq!(denied(&d).reason, Reason::TypNotAllowed, "{typ}");
    }
}

#[test]
fn ed25519_is_accepted_wherever_eddsa_is() {
    let f = Fixture::new();
    let claims = json!({"iss": ISS, "sub": "alice", "aud": "api", "exp": NOW + 600});
    // The provider lists `Ed25519`; tokens may name either.
    for alg in ["Ed25519", "EdDSA"] {
        let t = f.keys.mint(&json!({"alg": alg, "kid": "ed"}), &claims);
        allowed(&f.bearer("/ed/x", &t));
        // A provider without a list accepts both names too.
        allowed(&f.bearer("/plain/x", &t));
    }
    // Other names are not aliases.
    for alg in ["ed25519", "Ed448", "EDDSA"] {
        let t = f.keys.mint(&json!({"alg": alg, "kid": "ed"}), &claims);
        assert_eq!(
            denied(&f.bearer("/ed/x", &t)).reason,
            Reason::AlgNotAllowed,
            "{alg}"
        );
    }
    // A JWK whose own `alg` is `Ed25519` verifies `EdDSA` and `Ed25519` tokens.
    let mut jwks = f.keys.jwks();
    jwks["keys"][1]["alg"] = json!("Ed25519");
    let cfg = json!({"providers": {"p": {"jwt": {"issuer": ISS, "keys": {"jwks": jwks}}}},
                     "rules": [{"match": {}, "require": "p"}]});
    let policy = compile(cfg.to_string().as_bytes()).unwrap();
    let g = Fixture {
        keys: Keys::new(),
        policy,
    };
    for alg in ["Ed25519", "EdDSA"] {
        let t = g.keys.mint(&json!({"alg": alg, "kid": "ed"}), &claims);
        assert!(matches!(g.bearer("/x", &t), Decision::Allow(_)), "{alg}");
        // The key's alg pins EdDSA: an ES256 token with its kid is refused.
    }
    let t = g.keys.mint(&json!({"alg": "ES256", "kid": "ed"}), &claims);
    assert_eq!(denied(&g.bearer("/x", &t)).reason, Reason::AlgNotAllowed);
}

fn config_error(edit: impl Fn(&mut Value)) -> String {
    let mut cfg = config(&Keys::new());
    edit(&mut cfg);
    match compile(cfg.to_string().as_bytes()) {
        Ok(_) => panic!("compiled"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_conditions_and_typ_lists_fail_at_their_json_path() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|v| v["rules"][0]["require"] = json!({"provider": "keys", "claims": {"sub": ["ci"]}})),
            "rules[0].require.claims: \"keys\" is a api_key provider, whose credential has no claims",
        ),
        (
            Box::new(|v| v["rules"][2]["require"]["any"][2] = json!({"provider": "keys", "claims": {"a": ["b"]}})),
            "rules[2].require.any[2].claims: \"keys\" is a api_key provider",
        ),
        (
            Box::new(|v| v["rules"][0]["require"]["provider"] = json!("nope")),
            "rules[0].require.provider: unknown provider \"nope\", expected one of: corp, ed, keys, partner, second, typed",
        ),
        (
            Box::new(|v| v["rules"][0]["require"]["provider"] = json!(1)),
            "rules[0].require.provider: expected a provider name",
        ),
        (
            Box::new(|v| v["rules"][0]["require"]["claim"] = json!({})),
            "rules[0].require.claim: unknown field, expected \"provider\" and \"claims\"",
        ),
        (
            Box::new(|v| v["rules"][0]["require"]["claims"] = json!({})),
            "rules[0].require.claims: expected an object of claim conditions",
        ),
        (
            Box::new(|v| v["rules"][0]["require"]["claims"] = json!({"scope": "orders:write"})),
            "rules[0].require.claims.scope: expected a list of values",
        ),
        (
            Box::new(|v| v["rules"][0]["require"]["claims"] = json!({"scope": ["orders write"]})),
            "rules[0].require.claims.scope[0]: \"orders write\" is not one scope",
        ),
        (
            Box::new(|v| v["rules"][1]["require"]["claims"]["realm_access.roles"] = json!({"any": []})),
            "rules[1].require.claims[\"realm_access.roles\"].any: expected at least one value",
        ),
        (
            Box::new(|v| v["rules"][5]["require"]["any"][0]["all"][0]["claims"] = json!({"a..b": ["x"]})),
            "rules[5].require.any[0].all[0].claims[\"a..b\"]: cannot read",
        ),
        (
            Box::new(|v| v["providers"]["typed"]["jwt"]["typ"] = json!([])),
            "providers.typed.jwt.typ: expected at least one typ",
        ),
        (
            Box::new(|v| v["providers"]["typed"]["jwt"]["typ"] = json!(["at+jwt", "application/DPoP+jwt"])),
            "providers.typed.jwt.typ[1]: dpop+jwt is a DPoP proof's typ",
        ),
        (
            Box::new(|v| v["providers"]["typed"]["jwt"]["typ"] = json!(["application/"])),
            "providers.typed.jwt.typ[0]: \"application/\" is not a media type",
        ),
        (
            Box::new(|v| v["providers"]["typed"]["jwt"]["typ"] = json!("at+jwt")),
            "providers.typed.jwt.typ: invalid type: string",
        ),
        (
            Box::new(|v| v["providers"]["ed"]["jwt"]["algorithms"] = json!(["Ed448"])),
            "providers.ed.jwt.algorithms[0]: unsupported algorithm \"Ed448\"",
        ),
    ];
    for (edit, want) in cases {
        let e = config_error(edit);
        assert!(e.starts_with(want), "got {e}\nwant {want}");
    }
}
