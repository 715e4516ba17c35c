//! Sender-constrained tokens through the engine: DPoP (RFC 9449 §4.3, §7.1) and certificate-bound tokens
//! (RFC 8705 §3), and `require_binding`. Every refusal is checked by its reason and its challenge.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/mint.rs"]
mod mint;

use mint::{b64, Keys};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use trustgate::decision::{Decision, HeaderOp, Reason};
use trustgate::engine::{decide, Caches, NoRemoteKeys};
use trustgate::formats::cert::PeerCert;
use trustgate::formats::dpop::{thumbprint, token_hash};
use trustgate::policy::config::{compile, Policy};
use trustgate::request::RequestView;
use trustgate::state::jwks_cache::MemoryStore;
use trustgate::state::replay::prepare_slots;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://idp.example.com/";
const URL: &str = "https://api.example.com/api/orders";

/// A client's proof key (made for these tests; protects nothing).
enum ProofKey {
    Es(p256::ecdsa::SigningKey),
    Ed(ed25519_dalek::SigningKey),
    Rs(Box<Keys>),
}

impl ProofKey {
    fn es(seed: u8) -> ProofKey {
        ProofKey::Es(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
    }

    fn jwk(&self) -> Value {
        match self {
            ProofKey::Es(k) => {
                let p = k.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-256", "x": b64(p.x().unwrap()), "y": b64(p.y().unwrap())})
            }
            ProofKey::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.verifying_key().as_bytes())})
            }
            ProofKey::Rs(keys) => {
                let jwks = keys.jwks();
                let rs = &jwks["keys"][2];
                json!({"kty": "RSA", "n": rs["n"], "e": rs["e"]})
            }
        }
    }

    fn jkt(&self) -> String {
        thumbprint(self.jwk().as_object().unwrap()).unwrap()
    }

    fn alg(&self) -> &'static str {
        match self {
            ProofKey::Es(_) => "ES256",
            ProofKey::Ed(_) => "EdDSA",
            ProofKey::Rs(_) => "RS256",
        }
    }

    fn sign_with(&self, header: &Value, claims: &Value) -> String {
        use ed25519_dalek::Signer as _;
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match self {
            ProofKey::Es(k) => {
                let s: p256::ecdsa::Signature =
                    p256::ecdsa::signature::Signer::sign(k, input.as_bytes());
                s.to_bytes().to_vec()
            }
            ProofKey::Ed(k) => k.sign(input.as_bytes()).to_bytes().to_vec(),
            ProofKey::Rs(keys) => keys.sign("RS256", input.as_bytes()),
        };
        format!("{input}.{}", b64(&sig))
    }

    /// A proof for `htm` `htu` and `token`, issued at `iat`.
    fn proof(&self, htm: &str, htu: &str, token: &str, iat: i64, jti: &str) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk()});
        let claims =
            json!({"jti": jti, "htm": htm, "htu": htu, "iat": iat, "ath": token_hash(token)});
        self.sign_with(&header, &claims)
    }
}

fn config(keys: &Keys, origin: Option<&str>) -> Value {
    let mut dpop = json!({"algorithms": ["ES256", "Ed25519", "RS256", "PS256"]});
    if let Some(o) = origin {
        dpop["origin"] = json!(o);
    }
    let jwt = |extra: Value| {
        let mut j = json!({"issuer": ISS, "audiences": ["api"], "keys": {"jwks": keys.jwks()},
                           "algorithms": ["ES256"]});
        for (k, v) in extra.as_object().unwrap() {
            j[k] = v.clone();
        }
        json!({"jwt": j})
    };
    json!({
        "providers": {
            "corp": jwt(json!({"dpop": dpop, "headers": {"x-sub": "${claims.sub}", "x-jkt": "${dpop.jkt}"}})),
            "plain": jwt(json!({"headers": {"x-plain": "${claims.sub}"}})),
            "need-dpop": jwt(json!({"dpop": {}, "require_binding": "dpop"})),
            "need-mtls": jwt(json!({"require_binding": "mtls"})),
            "need-any": jwt(json!({"dpop": {}, "require_binding": "any"}))
        },
        "rules": [
            {"match": {"path_prefix": "/plain/"}, "require": "plain"},
            {"match": {"path_prefix": "/need-dpop/"}, "require": "need-dpop"},
            {"match": {"path_prefix": "/need-mtls/"}, "require": "need-mtls"},
            {"match": {"path_prefix": "/need-any/"}, "require": "need-any"},
            {"match": {"path_prefix": "/scoped/"}, "require": {"provider": "corp", "claims": {"scope": ["orders:write"]}}},
            {"match": {}, "require": "corp"}
        ]
    })
}

struct Fixture {
    keys: Keys,
    policy: Policy,
    store: MemoryStore,
    caches: Caches,
}

/// A request: method, path, `:scheme`, headers, client certificate digest (hex).
struct Req<'a> {
    method: &'a str,
    authority: &'a str,
    path: &'a str,
    scheme: &'a str,
    headers: Vec<(String, String)>,
    peer_sha256: Option<String>,
    /// The host has not read the client certificate yet.
    peer_unread: bool,
}

impl<'a> Req<'a> {
    fn get(path: &'a str) -> Req<'a> {
        Req {
            method: "GET",
            authority: "api.example.com",
            path,
            scheme: "https",
            headers: Vec::new(),
            peer_sha256: None,
            peer_unread: false,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn dpop(self, token: &str, proof: &str) -> Self {
        self.header("authorization", &format!("DPoP {token}"))
            .header("dpop", proof)
    }

    fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }
}

impl Fixture {
    fn new(origin: Option<&str>) -> Fixture {
        let keys = Keys::new();
        let policy = compile(config(&keys, origin).to_string().as_bytes()).unwrap();
        let store = MemoryStore::default();
        for p in &policy.providers {
            if p.kind.uses_replay() {
                prepare_slots(&store, &p.name);
            }
        }
        Fixture {
            keys,
            policy,
            store,
            caches: Caches::default(),
        }
    }

    fn token(&self, cnf: Option<Value>) -> String {
        let mut claims =
            json!({"iss": ISS, "sub": "alice", "aud": "api", "exp": NOW + 600, "iat": NOW - 10});
        if let Some(c) = cnf {
            claims["cnf"] = c;
        }
        self.keys.mint(
            &json!({"alg": "ES256", "kid": "es", "typ": "at+jwt"}),
            &claims,
        )
    }

    fn bound(&self, key: &ProofKey) -> String {
        self.token(Some(json!({"jkt": key.jkt()})))
    }

    fn decide(&self, r: &Req<'_>) -> Decision {
        let mut headers = vec![(":scheme".to_string(), r.scheme.to_string())];
        headers.extend(r.headers.iter().cloned());
        let peer = r.peer_sha256.as_ref().map(|d| PeerCert {
            sha256: d.clone(),
            ..PeerCert::default()
        });
        let view = RequestView {
            method: r.method,
            path: r.path,
            authority: r.authority,
            headers: &trustgate::request::borrowed(&headers),
            body: Some(b""),
            peer: peer.as_ref(),
            peer_unread: r.peer_unread,
        };
        decide(
            &self.policy,
            &view,
            NOW,
            &NoRemoteKeys,
            &self.store,
            &self.caches,
        )
    }
}

fn allowed(d: &Decision) -> &[HeaderOp] {
    match d {
        Decision::Allow(a) => &a.ops,
        other => panic!("expected allow, got {other:?}"),
    }
}

fn refused(d: &Decision) -> (Reason, Vec<String>) {
    match d {
        Decision::Deny(d) => (d.reason, d.challenges()),
        other => panic!("expected deny, got {other:?}"),
    }
}

fn set(ops: &[HeaderOp], name: &str) -> Option<String> {
    ops.iter().find_map(|op| match op {
        HeaderOp::Set(n, v) if n == name => Some(v.clone()),
        _ => None,
    })
}

const ALGS: &str = "algs=\"RS256 PS256 ES256 EdDSA\"";

#[test]
fn es256_ed25519_and_rs256_proofs_are_accepted() {
    let f = Fixture::new(None);
    for (i, key) in [
        ProofKey::es(3),
        ProofKey::Ed(ed25519_dalek::SigningKey::from_bytes(&[5u8; 32])),
        ProofKey::Rs(Box::new(Keys::new())),
    ]
    .iter()
    .enumerate()
    {
        let token = f.bound(key);
        let proof = key.proof("GET", URL, &token, NOW, &format!("j{i}"));
        let d = f.decide(&Req::get("/api/orders").dpop(&token, &proof));
        let ops = allowed(&d);
        assert_eq!(set(ops, "x-sub").as_deref(), Some("alice"));
        assert_eq!(set(ops, "x-jkt"), Some(key.jkt()));
        assert!(ops.contains(&HeaderOp::Remove("authorization".into())));
        assert!(ops.contains(&HeaderOp::Remove("dpop".into())));
    }
    // RFC 9864's fully-specified name for the Ed25519 proof.
    let key = ProofKey::Ed(ed25519_dalek::SigningKey::from_bytes(&[6u8; 32]));
    let token = f.bound(&key);
    let header = json!({"typ": "dpop+jwt", "alg": "Ed25519", "jwk": key.jwk()});
    let claims =
        json!({"jti": "e1", "htm": "GET", "htu": URL, "iat": NOW, "ath": token_hash(&token)});
    let d = f.decide(&Req::get("/api/orders").dpop(&token, &key.sign_with(&header, &claims)));
    allowed(&d);
}

#[test]
fn the_query_is_not_part_of_htu_and_the_uri_is_compared_normalized() {
    let f = Fixture::new(None);
    let key = ProofKey::es(3);
    let token = f.bound(&key);
    let proof = key.proof("GET", URL, &token, NOW, "q1");
    allowed(&f.decide(&Req::get("/api/orders?page=2&x=%2F").dpop(&token, &proof)));
    let proof = key.proof(
        "GET",
        "HTTPS://API.example.com:443/api/./orders",
        &token,
        NOW,
        "q2",
    );
    allowed(&f.decide(&Req::get("/api/orders").dpop(&token, &proof)));
    // The request's scheme counts: a proof for https is not one for http.
    let proof = key.proof("GET", URL, &token, NOW, "q3");
    let mut r = Req::get("/api/orders").dpop(&token, &proof);
    r.scheme = "http";
    assert_eq!(refused(&f.decide(&r)).0, Reason::DpopProofMismatch);
}

#[test]
fn every_proof_fault_is_invalid_dpop_proof() {
    let f = Fixture::new(None);
    let key = ProofKey::es(3);
    let token = f.bound(&key);
    let cases: Vec<(String, Reason)> = vec![
        (
            key.proof("POST", URL, &token, NOW, "a"),
            Reason::DpopProofMismatch,
        ),
        (
            key.proof("GET", "https://api.example.com/other", &token, NOW, "b"),
            Reason::DpopProofMismatch,
        ),
        (
            key.proof("GET", URL, "another token", NOW, "c"),
            Reason::DpopProofMismatch,
        ),
        (
            key.proof("GET", URL, &token, NOW - 361, "d"),
            Reason::DpopProofStale,
        ),
        (
            key.proof("GET", URL, &token, NOW + 61, "e"),
            Reason::DpopProofStale,
        ),
        ("not.a.proof".into(), Reason::DpopProofInvalid),
        (token.clone(), Reason::DpopProofInvalid),
    ];
    for (proof, reason) in cases {
        let (r, challenges) = refused(&f.decide(&Req::get("/api/orders").dpop(&token, &proof)));
        assert_eq!(r, reason);
        assert_eq!(
            challenges,
            vec![
                "Bearer realm=\"trustgate\"".to_string(),
                format!("DPoP realm=\"trustgate\", error=\"invalid_dpop_proof\", {ALGS}")
            ]
        );
    }
    // Header faults: typ, alg, a private key, another key's signature.
    let claims =
        json!({"jti": "h", "htm": "GET", "htu": URL, "iat": NOW, "ath": token_hash(&token)});
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk()});
    let mut bad_headers = Vec::new();
    for (k, v) in [
        ("typ", json!("JWT")),
        ("alg", json!("ES384")),
        ("alg", json!("HS256")),
        ("alg", json!("none")),
    ] {
        let mut h = header.clone();
        h[k] = v;
        bad_headers.push(h);
    }
    let mut private = header.clone();
    private["jwk"]["d"] = json!(b64(&[3u8; 32]));
    bad_headers.push(private);
    for h in bad_headers {
        let proof = key.sign_with(&h, &claims);
        let d = f.decide(&Req::get("/api/orders").dpop(&token, &proof));
        assert_eq!(refused(&d).0, Reason::DpopProofInvalid, "{h}");
    }
    let other = ProofKey::es(4);
    let forged = other.sign_with(&header, &claims);
    let d = f.decide(&Req::get("/api/orders").dpop(&token, &forged));
    assert_eq!(refused(&d).0, Reason::DpopProofInvalid);
}

#[test]
fn one_dpop_header_with_one_proof() {
    let f = Fixture::new(None);
    let key = ProofKey::es(3);
    let token = f.bound(&key);
    let p1 = key.proof("GET", URL, &token, NOW, "m1");
    let p2 = key.proof("GET", URL, &token, NOW, "m2");
    let two = Req::get("/api/orders")
        .dpop(&token, &p1)
        .header("dpop", &p2);
    assert_eq!(refused(&f.decide(&two)).0, Reason::DpopProofMultiple);
    let joined = Req::get("/api/orders").dpop(&token, &format!("{p1},{p2}"));
    assert_eq!(refused(&f.decide(&joined)).0, Reason::DpopProofMultiple);
    let none = Req::get("/api/orders").header("authorization", &format!("DPoP {token}"));
    assert_eq!(refused(&f.decide(&none)).0, Reason::DpopProofMissing);
    // A token under both schemes is two credentials.
    let both = Req::get("/api/orders").dpop(&token, &p1).bearer(&token);
    assert_eq!(refused(&f.decide(&both)).0, Reason::MultipleCredentials);
}

#[test]
fn a_proof_is_accepted_once() {
    let f = Fixture::new(None);
    let key = ProofKey::es(3);
    let token = f.bound(&key);
    let proof = key.proof("GET", URL, &token, NOW, "once");
    allowed(&f.decide(&Req::get("/api/orders").dpop(&token, &proof)));
    let (r, challenges) = refused(&f.decide(&Req::get("/api/orders").dpop(&token, &proof)));
    assert_eq!(r, Reason::DpopProofReplayed);
    assert_eq!(
        challenges[1],
        format!("DPoP realm=\"trustgate\", error=\"invalid_dpop_proof\", {ALGS}")
    );
    // The same jti from another key is another proof.
    let other = ProofKey::es(4);
    let token2 = f.bound(&other);
    let proof2 = other.proof("GET", URL, &token2, NOW, "once");
    allowed(&f.decide(&Req::get("/api/orders").dpop(&token2, &proof2)));
}

#[test]
fn no_downgrade_either_way() {
    let f = Fixture::new(None);
    let key = ProofKey::es(3);
    let bound = f.bound(&key);
    // A bound token under Bearer, with or without a proof.
    let proof = key.proof("GET", URL, &bound, NOW, "d1");
    for r in [
        Req::get("/api/orders").bearer(&bound),
        Req::get("/api/orders")
            .bearer(&bound)
            .header("dpop", &proof),
    ] {
        let (reason, challenges) = refused(&f.decide(&r));
        assert_eq!(reason, Reason::DpopBoundToken);
        assert_eq!(
            challenges[1],
            format!("DPoP realm=\"trustgate\", error=\"invalid_token\", {ALGS}")
        );
    }
    // An unbound token under DPoP, even with a good proof.
    let unbound = f.token(None);
    let proof = key.proof("GET", URL, &unbound, NOW, "d2");
    let d = f.decide(&Req::get("/api/orders").dpop(&unbound, &proof));
    assert_eq!(refused(&d).0, Reason::DpopUnboundToken);
    // An unbound token under Bearer still passes.
    allowed(&f.decide(&Req::get("/api/orders").bearer(&unbound)));
    // A provider without `dpop` refuses a bound token and does not read the DPoP scheme.
    let (reason, challenges) = refused(&f.decide(&Req::get("/plain/x").bearer(&bound)));
    assert_eq!(reason, Reason::DpopBoundToken);
    assert_eq!(
        challenges,
        vec!["Bearer realm=\"trustgate\", error=\"invalid_token\"".to_string()]
    );
    let proof = key.proof("GET", "https://api.example.com/plain/x", &bound, NOW, "d3");
    let d = f.decide(&Req::get("/plain/x").dpop(&bound, &proof));
    assert_eq!(refused(&d).0, Reason::Missing);
}

#[test]
fn a_proof_for_another_key_is_refused() {
    let f = Fixture::new(None);
    let key = ProofKey::es(3);
    let other = ProofKey::es(4);
    let token = f.bound(&key);
    let proof = other.proof("GET", URL, &token, NOW, "k1");
    let (r, challenges) = refused(&f.decide(&Req::get("/api/orders").dpop(&token, &proof)));
    assert_eq!(r, Reason::DpopKeyMismatch);
    assert_eq!(
        challenges[1],
        format!("DPoP realm=\"trustgate\", error=\"invalid_token\", {ALGS}")
    );
}

#[test]
fn dpop_origin_replaces_scheme_and_authority() {
    let f = Fixture::new(Some("https://api.example.com"));
    let key = ProofKey::es(3);
    let token = f.bound(&key);
    // TLS ended in front of the proxy: the request reaches it as http to an internal name.
    let proof = key.proof("GET", URL, &token, NOW, "o1");
    let mut r = Req::get("/api/orders?x=1").dpop(&token, &proof);
    r.scheme = "http";
    r.authority = "orders.internal:8080";
    allowed(&f.decide(&r));
    let proof = key.proof(
        "GET",
        "http://orders.internal:8080/api/orders",
        &token,
        NOW,
        "o2",
    );
    let mut r = Req::get("/api/orders").dpop(&token, &proof);
    r.scheme = "http";
    r.authority = "orders.internal:8080";
    assert_eq!(refused(&f.decide(&r)).0, Reason::DpopProofMismatch);
}

/// The SHA-256 of a (pretend) DER certificate, as Envoy reports it (hex) and as a token holds it (base64url).
fn cert_digest() -> (String, String) {
    let d = Sha256::digest(b"a DER certificate");
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    (hex, b64(&d))
}

#[test]
fn certificate_bound_tokens_need_that_certificate() {
    let f = Fixture::new(None);
    let (hex, b64url) = cert_digest();
    let token = f.token(Some(json!({"x5t#S256": b64url})));
    let mut r = Req::get("/plain/x").bearer(&token);
    r.peer_sha256 = Some(hex.clone());
    allowed(&f.decide(&r));
    // Another certificate, no certificate.
    let mut other = Req::get("/plain/x").bearer(&token);
    other.peer_sha256 = Some("ab".repeat(32));
    let (reason, challenges) = refused(&f.decide(&other));
    assert_eq!(reason, Reason::CertBindingMismatch);
    assert_eq!(
        challenges,
        vec!["Bearer realm=\"trustgate\", error=\"invalid_token\"".to_string()]
    );
    let none = Req::get("/plain/x").bearer(&token);
    assert_eq!(refused(&f.decide(&none)).0, Reason::CertBindingMismatch);
    // The thumbprint written in hex (the form Envoy reports) is not base64url: refused.
    let hex_token = f.token(Some(json!({"x5t#S256": hex})));
    let mut r = Req::get("/plain/x").bearer(&hex_token);
    r.peer_sha256 = Some(hex.clone());
    assert_eq!(refused(&f.decide(&r)).0, Reason::CertBindingMismatch);
    // Padded base64url, or standard base64, is refused too.
    let padded = f.token(Some(json!({"x5t#S256": format!("{b64url}=")})));
    let mut r = Req::get("/plain/x").bearer(&padded);
    r.peer_sha256 = Some(hex);
    assert_eq!(refused(&f.decide(&r)).0, Reason::CertBindingMismatch);
}

#[test]
fn a_token_bound_both_ways_needs_both() {
    let f = Fixture::new(None);
    let key = ProofKey::es(3);
    let (hex, b64url) = cert_digest();
    let token = f.token(Some(json!({"jkt": key.jkt(), "x5t#S256": b64url})));
    let proof = key.proof("GET", URL, &token, NOW, "b1");
    let mut r = Req::get("/api/orders").dpop(&token, &proof);
    r.peer_sha256 = Some(hex);
    allowed(&f.decide(&r));
    let proof = key.proof("GET", URL, &token, NOW, "b2");
    let r = Req::get("/api/orders").dpop(&token, &proof);
    assert_eq!(refused(&f.decide(&r)).0, Reason::CertBindingMismatch);
}

#[test]
fn confirmation_methods_that_cannot_be_checked_refuse_the_token() {
    let f = Fixture::new(None);
    for cnf in [
        json!({"jwk": {"kty": "EC"}}),
        json!({"kid": "k"}),
        json!({}),
        json!("jkt"),
        json!({"jkt": 7}),
        json!({"x5t#S256": null}),
    ] {
        let token = f.token(Some(cnf.clone()));
        let d = f.decide(&Req::get("/plain/x").bearer(&token));
        assert_eq!(refused(&d).0, Reason::CnfUnsupported, "{cnf}");
    }
}

#[test]
fn require_binding_refuses_unbound_tokens() {
    let f = Fixture::new(None);
    let unbound = f.token(None);
    let key = ProofKey::es(3);
    let bound = f.bound(&key);
    let (hex, b64url) = cert_digest();
    let cert_bound = f.token(Some(json!({"x5t#S256": b64url})));
    let with_cert = |r: Req<'static>| {
        let mut r = r;
        r.peer_sha256 = Some(hex.clone());
        r
    };
    // dpop: only DPoP is challenged for.
    let (reason, challenges) = refused(&f.decide(&Req::get("/need-dpop/x").bearer(&unbound)));
    assert_eq!(reason, Reason::BindingRequired);
    assert_eq!(
        challenges,
        vec![format!(
            "DPoP realm=\"trustgate\", error=\"invalid_token\", {ALGS_DEFAULT}"
        )]
    );
    let d = f.decide(&with_cert(Req::get("/need-dpop/x").bearer(&cert_bound)));
    assert_eq!(refused(&d).0, Reason::BindingRequired);
    let proof = key.proof(
        "GET",
        "https://api.example.com/need-dpop/x",
        &bound,
        NOW,
        "r1",
    );
    allowed(&f.decide(&Req::get("/need-dpop/x").dpop(&bound, &proof)));
    // mtls
    let d = f.decide(&Req::get("/need-mtls/x").bearer(&unbound));
    assert_eq!(refused(&d).0, Reason::BindingRequired);
    allowed(&f.decide(&with_cert(Req::get("/need-mtls/x").bearer(&cert_bound))));
    // any
    let d = f.decide(&Req::get("/need-any/x").bearer(&unbound));
    assert_eq!(refused(&d).0, Reason::BindingRequired);
    allowed(&f.decide(&with_cert(Req::get("/need-any/x").bearer(&cert_bound))));
    let proof = key.proof(
        "GET",
        "https://api.example.com/need-any/x",
        &bound,
        NOW,
        "r2",
    );
    allowed(&f.decide(&Req::get("/need-any/x").dpop(&bound, &proof)));
}

/// The default `dpop.algorithms`.
const ALGS_DEFAULT: &str = "algs=\"RS256 PS256 ES256 ES384 EdDSA\"";

#[test]
fn a_missing_token_is_challenged_for_both_schemes() {
    let f = Fixture::new(None);
    let (reason, challenges) = refused(&f.decide(&Req::get("/api/orders")));
    assert_eq!(reason, Reason::Missing);
    assert_eq!(
        challenges,
        vec![
            "Bearer realm=\"trustgate\"".to_string(),
            format!("DPoP realm=\"trustgate\", {ALGS}")
        ]
    );
}

#[test]
fn binding_config_is_checked() {
    let keys = Keys::new();
    let bad = |extra: Value, path: &str| {
        let mut j = json!({"issuer": ISS, "keys": {"jwks": keys.jwks()}});
        for (k, v) in extra.as_object().unwrap() {
            j[k] = v.clone();
        }
        let cfg = json!({"providers": {"p": {"jwt": j}}, "rules": [{"match": {}, "require": "p"}]});
        let e = compile(cfg.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.path, path, "{e}");
    };
    bad(
        json!({"require_binding": "dpop"}),
        "providers.p.jwt.require_binding",
    );
    bad(
        json!({"require_binding": "tls"}),
        "providers.p.jwt.require_binding",
    );
    bad(
        json!({"dpop": {"algorithms": ["HS256"]}}),
        "providers.p.jwt.dpop.algorithms[0]",
    );
    bad(
        json!({"dpop": {"algorithms": []}}),
        "providers.p.jwt.dpop.algorithms",
    );
    bad(
        json!({"dpop": {"max_age_s": 0}}),
        "providers.p.jwt.dpop.max_age_s",
    );
    for o in [
        "api.example.com",
        "https://api.example.com/x",
        "ftp://a",
        "https://u@a",
        "https://",
    ] {
        bad(
            json!({"dpop": {"origin": o}}),
            "providers.p.jwt.dpop.origin",
        );
    }
    bad(
        json!({"dpop": {"nonce": true}}),
        "providers.p.jwt.dpop.nonce",
    );
}

#[test]
fn the_host_reads_the_scheme_for_dpop_without_origin_and_the_certificate_only_when_asked() {
    let keys = Keys::new();
    let f = Fixture::new(None);
    assert!(
        !f.policy.needs_peer,
        "read on peer_required, for certificate-bound tokens only"
    );
    assert!(f.policy.needs_scheme);
    let only_origin = json!({
        "providers": {"p": {"jwt": {"issuer": ISS, "keys": {"jwks": keys.jwks()},
                                     "dpop": {"origin": "https://api.example.com"}}}},
        "rules": [{"match": {}, "require": "p"}]
    });
    let p = compile(only_origin.to_string().as_bytes()).unwrap();
    assert!(!p.needs_peer && !p.needs_scheme);
    let uses_replay: Vec<_> = f
        .policy
        .providers
        .iter()
        .filter(|p| p.kind.uses_replay())
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(uses_replay, ["corp", "need-any", "need-dpop"]);
}

#[test]
fn insufficient_scope_is_challenged_in_the_scheme_the_token_came_with() {
    let f = Fixture::new(None);
    let key = ProofKey::es(9);
    let token = f.bound(&key);
    let url = URL.replace("/api/orders", "/scoped/x");
    let proof = key.proof("GET", &url, &token, NOW, "scoped-1");
    let d = f.decide(&Req::get("/scoped/x").dpop(&token, &proof));
    assert_eq!(
        refused(&d),
        (
            Reason::InsufficientScope,
            vec![
                "DPoP realm=\"trustgate\", error=\"insufficient_scope\", scope=\"orders:write\""
                    .to_string()
            ]
        )
    );
    let d = f.decide(&Req::get("/scoped/x").bearer(&f.token(None)));
    assert_eq!(
        refused(&d),
        (
            Reason::InsufficientScope,
            vec![
                "Bearer realm=\"trustgate\", error=\"insufficient_scope\", scope=\"orders:write\""
                    .to_string()
            ]
        )
    );
}

/// The host reads the client certificate only for a certificate-bound token: until then the check asks for it
/// (`peer_required`, never sent), and other tokens decide without it.
#[test]
fn the_certificate_is_asked_for_only_by_a_certificate_bound_token() {
    let f = Fixture::new(None);
    let (hex, b64url) = cert_digest();
    let bound = f.token(Some(json!({"x5t#S256": b64url})));
    let mut r = Req::get("/plain/x").bearer(&bound);
    r.peer_unread = true;
    assert_eq!(refused(&f.decide(&r)).0, Reason::PeerRequired);
    r.peer_unread = false;
    r.peer_sha256 = Some(hex);
    allowed(&f.decide(&r));
    let mut plain = Req::get("/plain/x").bearer(&f.token(None));
    plain.peer_unread = true;
    allowed(&f.decide(&plain));
    assert!(
        !f.policy.needs_peer,
        "jwt providers alone do not read the certificate up front"
    );
}
