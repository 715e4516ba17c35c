//! The decision for one request: normalize the path, pick the first matching rule, satisfy its requirement
//! tree, render identity headers. Pure: the request, the policy and `now` in, a [`Decision`] out.
//!
//! The strip list ([`Policy::strip`]) is not part of the decision: the host removes those headers from every
//! request before calling [`decide`], whatever the outcome.

use crate::cert::{subject_cn, PeerCert};
use crate::config::{
    Action, BodyMode, Client, ClientStatus, KeySource, Policy, Provider, ProviderKind, Requirement,
    Rule,
};
use crate::decision::{Allow, Decision, Deny, HeaderOp, Reason, Scheme};
use crate::extract;
use crate::hmac_auth;
use crate::jwk::Jwk;
use crate::jwks_cache::SharedStore;
use crate::jwt::{UntrustedJwt, VerifiedJwt};
use crate::replay::{self, Rate, Replay};
use crate::request::RequestView;
use crate::rules::{normalize_path, other_readings};
use crate::signet::{self, BindingCache, SignetError};
use crate::template::{walk, Facts, RenderError, Root};
use crate::token_cache::TokenCache;
use serde_json::Value;
use sha2::Digest as _;
use std::borrow::Cow;
use std::rc::Rc;
use subtle::ConstantTimeEq as _;

/// The current keys of providers whose keys are fetched at run time (the host's per-VM cache).
pub trait KeyLookup {
    /// The usable keys of provider `index` and their version, or `None` while none are (→ 503
    /// `keys_unavailable`).
    fn remote_keys(&self, index: usize) -> Option<(Rc<[Jwk]>, u64)>;
}

/// For policies without remote key sets (tests, the CLI): no remote keys are ever available.
pub struct NoRemoteKeys;

impl KeyLookup for NoRemoteKeys {
    fn remote_keys(&self, _index: usize) -> Option<(Rc<[Jwk]>, u64)> {
        None
    }
}

/// The per-VM caches a decision may use and fill.
#[derive(Default)]
pub struct Caches {
    /// Verified Signet bindings.
    pub signet: BindingCache,
    /// Verified JWTs.
    pub tokens: TokenCache,
}

/// A satisfied requirement: identity headers and credential removals.
#[derive(Debug, Default)]
struct Granted {
    providers: Vec<usize>,
    ops: Vec<HeaderOp>,
}

/// An unsatisfied requirement.
#[derive(Debug, Clone, Copy)]
struct Refused {
    reason: Reason,
    provider: Option<usize>,
    retry_after: Option<i64>,
}

/// Why one provider refused: the reason, and for 429 when to retry.
#[derive(Debug, Clone, Copy)]
struct Fail {
    reason: Reason,
    retry_after: Option<i64>,
}

impl From<Reason> for Fail {
    fn from(reason: Reason) -> Fail {
        Fail {
            reason,
            retry_after: None,
        }
    }
}

struct JwtFacts<'a> {
    jwt: &'a VerifiedJwt,
    provider: &'a str,
    rule: &'a str,
}

impl Facts for JwtFacts<'_> {
    fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'_, Value>> {
        match root {
            Root::Claims => {
                let (first, rest) = path.split_first()?;
                walk(self.jwt.claims().get(first)?, rest).map(Cow::Borrowed)
            }
            Root::Provider => Some(Cow::Owned(Value::String(self.provider.to_owned()))),
            Root::Rule => Some(Cow::Owned(Value::String(self.rule.to_owned()))),
            _ => None,
        }
    }
}

/// Decides one request at `now` (unix seconds); remote key sets are read through `keys`; replay nonces and
/// rate-limit counters live in `store` (process-wide).
pub fn decide(
    policy: &Policy,
    req: &RequestView<'_>,
    now: i64,
    keys: &dyn KeyLookup,
    store: &dyn SharedStore,
    caches: &Caches,
) -> Decision {
    let readings = normalize_path(req.path)
        .and_then(|p| other_readings(req.path, &p).map(|others| (p, others)));
    let Ok((path, others)) = readings else {
        return deny(Reason::AmbiguousPath, None, None, Vec::new(), None);
    };
    let rule_for = |path: &str| {
        policy
            .rules
            .iter()
            .position(|r| r.matcher.matches(req.method, req.authority, path))
    };
    let index = rule_for(&path);
    // `/es//../public/x`, `/public/..;/es/x`: upstreams that read the path another way would route it
    // elsewhere. Refused unless every reading picks the same rule.
    if others.iter().any(|o| rule_for(o) != index) {
        return deny(Reason::AmbiguousPath, None, None, Vec::new(), None);
    }
    let Some(rule) = index.and_then(|i| policy.rules.get(i)) else {
        return deny(Reason::NoRule, None, None, Vec::new(), None);
    };
    let allow = |providers: Vec<String>, ops| {
        Decision::Allow(Allow {
            rule: rule.name.clone(),
            providers,
            ops,
        })
    };
    if rule.cors_preflight
        && req.method == "OPTIONS"
        && req.has_header("origin")
        && req.has_header("access-control-request-method")
    {
        return allow(Vec::new(), Vec::new());
    }
    // Written last: after the client's credential was removed and the identity headers were set.
    let upstream = rule
        .upstream
        .iter()
        .map(|(n, v)| HeaderOp::Set(n.clone(), v.expose().to_owned()));
    let requirement = match &rule.action {
        Action::Public => return allow(Vec::new(), upstream.collect()),
        Action::Require(r) => r,
    };
    let cx = Cx {
        policy,
        rule,
        req,
        now,
        keys,
        store,
        caches,
    };
    match satisfy(&cx, requirement) {
        Ok(mut g) => {
            g.ops.extend(upstream);
            allow(
                g.providers
                    .iter()
                    .filter_map(|&i| policy.providers.get(i).map(|p| p.name.clone()))
                    .collect(),
                g.ops,
            )
        }
        Err(r) => {
            let mut schemes: Vec<Scheme> = requirement
                .providers()
                .iter()
                .filter_map(|&i| policy.providers.get(i))
                .filter_map(|p| p.kind.scheme())
                .collect();
            schemes.sort();
            schemes.dedup();
            let provider = r
                .provider
                .and_then(|i| policy.providers.get(i))
                .map(|p| p.name.clone());
            deny(
                r.reason,
                Some(rule.name.clone()),
                provider,
                schemes,
                r.retry_after,
            )
        }
    }
}

fn deny(
    reason: Reason,
    rule: Option<String>,
    provider: Option<String>,
    schemes: Vec<Scheme>,
    retry_after: Option<i64>,
) -> Decision {
    Decision::Deny(Deny {
        reason,
        rule,
        provider,
        schemes,
        retry_after,
    })
}

/// What every provider check of one request needs.
struct Cx<'a> {
    policy: &'a Policy,
    rule: &'a Rule,
    req: &'a RequestView<'a>,
    now: i64,
    keys: &'a dyn KeyLookup,
    store: &'a dyn SharedStore,
    caches: &'a Caches,
}

fn satisfy(cx: &Cx<'_>, req_tree: &Requirement) -> Result<Granted, Refused> {
    match req_tree {
        Requirement::Provider(i) => {
            let p = cx.policy.providers.get(*i).ok_or(Refused {
                reason: Reason::NoRule,
                provider: None,
                retry_after: None,
            })?;
            check_provider(cx, *i, p)
                .map(|mut ops| {
                    ops.extend(
                        p.upstream
                            .iter()
                            .map(|(n, v)| HeaderOp::Set(n.clone(), v.expose().to_owned())),
                    );
                    Granted {
                        providers: vec![*i],
                        ops,
                    }
                })
                .map_err(|f| Refused {
                    reason: f.reason,
                    provider: Some(*i),
                    retry_after: f.retry_after,
                })
        }
        Requirement::Any(subs) => {
            let mut first_missing = None;
            let mut first_present = None;
            let mut body_needed = None;
            for s in subs {
                match satisfy(cx, s) {
                    Ok(g) => return Ok(g),
                    // Another alternative may still pass once the body is there: ask for it first.
                    Err(r) if r.reason == Reason::BodyRequired => {
                        body_needed.get_or_insert(r);
                    }
                    Err(r) if r.reason == Reason::Missing => {
                        first_missing.get_or_insert(r);
                    }
                    Err(r) => {
                        first_present.get_or_insert(r);
                    }
                }
            }
            // A credential that was presented and refused says more than the absence of another one.
            Err(body_needed
                .or(first_present)
                .or(first_missing)
                .unwrap_or(Refused {
                    reason: Reason::Missing,
                    provider: None,
                    retry_after: None,
                }))
        }
        Requirement::All(subs) => {
            let mut all = Granted::default();
            for s in subs {
                let g = satisfy(cx, s)?;
                all.providers.extend(g.providers);
                all.ops.extend(g.ops);
            }
            Ok(all)
        }
    }
}

/// Verifies one provider's credential; on success, the header operations it asks for.
fn check_provider(cx: &Cx<'_>, index: usize, p: &Provider) -> Result<Vec<HeaderOp>, Fail> {
    match &p.kind {
        ProviderKind::Mtls(m) => {
            let cert = cx.req.peer.ok_or(Reason::Missing)?;
            let cn = if m.needs_cn {
                match subject_cn(&cert.subject) {
                    Ok(Some(cn)) => Some(cn),
                    // The pattern or a header needs the CN: no CN, several, or a subject that does not parse.
                    Ok(None) | Err(_) => return Err(Reason::CertNotAllowed.into()),
                }
            } else {
                None
            };
            let uri_ok = m.uri_san_prefixes.is_empty()
                || (!cert.uri_san.is_empty()
                    && m.uri_san_prefixes
                        .iter()
                        .any(|p| cert.uri_san.starts_with(p.as_str())));
            let dns_ok = m.dns_sans.is_empty()
                || (!cert.dns_san.is_empty()
                    && m.dns_sans.iter().any(|d| d.matches(&cert.dns_san)));
            let cn_ok = match (&m.cn_pattern, &cn) {
                (None, _) => true,
                (Some(g), Some(cn)) => g.matches(cn),
                (Some(_), None) => false,
            };
            if !(uri_ok && dns_ok && cn_ok) {
                return Err(Reason::CertNotAllowed.into());
            }
            let facts = CertFacts {
                cert,
                cn: cn.as_deref(),
                provider: &p.name,
                rule: &cx.rule.name,
            };
            let mut ops = Vec::new();
            render_headers(p, &facts, &mut ops)?;
            Ok(ops)
        }
        ProviderKind::Jwt(j) => {
            let found = extract::find(&j.from, cx.req)
                .map_err(|_| Reason::MultipleCredentials)?
                .ok_or(Reason::Missing)?;
            let remote;
            let (keys, version): (&[Jwk], u64) = match &j.keys {
                KeySource::Static(k) => (k, 0),
                KeySource::Remote(_) => {
                    remote = cx.keys.remote_keys(index).ok_or(Reason::KeysUnavailable)?;
                    (&remote.0, remote.1)
                }
            };
            // A token verified before by this provider with these keys: its claims are checked again, its
            // signature is not.
            let verified = match cx.caches.tokens.get(index, &found.value, version) {
                Some(hit) => {
                    j.rules.recheck(&hit, cx.now).map_err(Reason::from)?;
                    hit
                }
                None => {
                    let token = UntrustedJwt::parse(&found.value).map_err(Reason::from)?;
                    let fresh =
                        Rc::new(j.rules.verify(&token, keys, cx.now).map_err(Reason::from)?);
                    cx.caches
                        .tokens
                        .put(index, &found.value, fresh.clone(), version, cx.now);
                    fresh
                }
            };
            let facts = JwtFacts {
                jwt: &verified,
                provider: &p.name,
                rule: &cx.rule.name,
            };
            let mut ops = Vec::new();
            if !j.forward {
                ops.push(found.remove);
            }
            render_headers(p, &facts, &mut ops)?;
            Ok(ops)
        }
        ProviderKind::Hmac(h) => {
            let sources = [extract::TokenSource::Header {
                name: "authorization".into(),
                prefix: "HMAC ".into(),
            }];
            let found = extract::find(&sources, cx.req)
                .map_err(|_| Reason::MultipleCredentials)?
                .ok_or(Reason::Missing)?;
            let cred = hmac_auth::parse(&found.value).map_err(|_| Reason::Malformed)?;
            let client = h
                .clients
                .iter()
                .find(|c| c.id == cred.client_id)
                .ok_or(Reason::UnknownClient)?;
            // Cheap checks first, as the reference does: the window, then the body, then the MAC.
            if cred.timestamp.abs_diff(cx.now) > h.timestamp_window_s.unsigned_abs() {
                return Err(Reason::StaleTimestamp.into());
            }
            let body: &[u8] = match h.body {
                BodyMode::Empty => &[],
                BodyMode::Signed => {
                    // A declared length over the limit is refused before a byte is buffered.
                    if declared_length(cx.req).is_some_and(|n| n > h.max_body_bytes) {
                        return Err(Reason::BodyTooLarge.into());
                    }
                    let b = cx.req.body.ok_or(Reason::BodyRequired)?;
                    if b.len() > h.max_body_bytes {
                        return Err(Reason::BodyTooLarge.into());
                    }
                    b
                }
            };
            if !hmac_auth::verify(
                &cred,
                client.credential.expose(),
                cx.req.method,
                cx.req.path,
                body,
            ) {
                return Err(Reason::BadSignature.into());
            }
            permit(client, cx)?;
            // Only verified requests are remembered, so forged ones cannot fill the store.
            let scope = &p.name;
            let expires = cred
                .timestamp
                .saturating_add(h.timestamp_window_s)
                .saturating_add(1);
            let id = format!("{}:{}", cred.client_id, cred.nonce);
            match replay::check_and_record(cx.store, scope, &id, expires, cx.now) {
                Replay::Fresh => {}
                Replay::Replayed => return Err(Reason::Replayed.into()),
                Replay::Full | Replay::Unavailable => {
                    return Err(Reason::ReplayStoreUnavailable.into())
                }
            }
            rate(client, scope, cx)?;
            finish_client(p, client, cx, found.remove, h.forward)
        }
        ProviderKind::HttpSignature(hs) => {
            use crate::httpsig::{self, HttpSigError};
            if !cx.req.has_header("signature-input") && !cx.req.has_header("signature") {
                return Err(Reason::Missing.into());
            }
            let request = httpsig::Request {
                method: cx.req.method,
                scheme: cx.req.header_values(":scheme").next().unwrap_or("https"),
                authority: cx.req.authority,
                path: cx.req.path,
                headers: cx.req.headers,
                body: cx.req.body,
            };
            let policy = httpsig::Policy {
                required: &hs.required_components,
                max_age_s: hs.max_age_s,
                tag: hs.tag.as_deref(),
                now: cx.now,
            };
            let lookup = |id: &str| hs.keys.iter().find(|(k, _)| k == id).map(|(_, key)| key);
            let v = httpsig::verify(&request, &lookup, &policy).map_err(|e| match e {
                HttpSigError::Missing => Reason::Missing,
                HttpSigError::Malformed => Reason::Malformed,
                HttpSigError::UnknownKey => Reason::UnknownKey,
                HttpSigError::AlgMismatch => Reason::AlgNotAllowed,
                HttpSigError::MissingComponent => Reason::MissingComponent,
                HttpSigError::Expired => Reason::Expired,
                HttpSigError::TooOld => Reason::StaleTimestamp,
                HttpSigError::CreatedInFuture => Reason::NotYetValid,
                HttpSigError::TagMismatch => Reason::TagMismatch,
                HttpSigError::BadSignature => Reason::BadSignature,
                HttpSigError::DigestMismatch => Reason::DigestMismatch,
                HttpSigError::BodyRequired if cx.req.body.is_some() => Reason::DigestMismatch,
                // The body is signed: a declared length over the limit is refused before a byte is buffered.
                HttpSigError::BodyRequired
                    if declared_length(cx.req).is_some_and(|n| n > hs.max_body_bytes) =>
                {
                    Reason::BodyTooLarge
                }
                HttpSigError::BodyRequired => Reason::BodyRequired,
            })?;
            if cx.req.body.is_some_and(|b| b.len() > hs.max_body_bytes) {
                return Err(Reason::BodyTooLarge.into());
            }
            if let Some(nonce) = &v.nonce {
                // Kept while this signature could still pass: until `expires`, or `created + max_age_s`.
                let until = match (v.expires, v.created) {
                    (Some(e), _) => e,
                    (None, Some(c)) if hs.max_age_s > 0 => c.saturating_add(hs.max_age_s),
                    _ => cx.now.saturating_add(86_400),
                };
                let id = format!("{}:{nonce}", v.keyid);
                match replay::check_and_record(
                    cx.store,
                    &p.name,
                    &id,
                    until.saturating_add(1),
                    cx.now,
                ) {
                    Replay::Fresh => {}
                    Replay::Replayed => return Err(Reason::Replayed.into()),
                    Replay::Full | Replay::Unavailable => {
                        return Err(Reason::ReplayStoreUnavailable.into())
                    }
                }
            }
            let facts = KeyFacts {
                keyid: &v.keyid,
                provider: &p.name,
                rule: &cx.rule.name,
            };
            let mut ops = Vec::new();
            if !hs.forward {
                ops.push(HeaderOp::Remove("signature".into()));
                ops.push(HeaderOp::Remove("signature-input".into()));
            }
            render_headers(p, &facts, &mut ops)?;
            Ok(ops)
        }
        ProviderKind::Signet(sg) => {
            let sources = [extract::TokenSource::Header {
                name: "signet-proof".into(),
                prefix: String::new(),
            }];
            let found = extract::find(&sources, cx.req)
                .map_err(|_| Reason::MultipleCredentials)?
                .ok_or(Reason::Missing)?;
            let proof = signet::parse(&found.value).map_err(|_| Reason::Malformed)?;
            let keys: Vec<[u8; 32]> = sg.masters.iter().map(|(_, k)| *k).collect();
            let master = signet::verify(
                &proof,
                &keys,
                cx.req.method,
                cx.req.path,
                cx.now,
                sg.skew_s,
                &cx.caches.signet,
            )
            .map_err(|e| match e {
                SignetError::Malformed => Reason::Malformed,
                SignetError::Expired => Reason::Expired,
                SignetError::StaleTimestamp => Reason::StaleTimestamp,
                SignetError::BadSignature => Reason::BadSignature,
            })?;
            if !sg.purposes.is_empty() && !sg.purposes.contains(&proof.purpose) {
                return Err(Reason::PurposeNotAllowed.into());
            }
            // Kept while the proof could still pass the ts window (never past exp): a later copy is refused
            // by the window anyway, so the store holds no more than it must.
            let until = proof
                .exp
                .min(proof.ts.saturating_add(sg.skew_s))
                .saturating_add(1);
            match replay::check_and_record(
                cx.store,
                &p.name,
                &signet::replay_key(&proof),
                until,
                cx.now,
            ) {
                Replay::Fresh => {}
                Replay::Replayed => return Err(Reason::Replayed.into()),
                Replay::Full | Replay::Unavailable => {
                    return Err(Reason::ReplayStoreUnavailable.into())
                }
            }
            let facts = SignetFacts {
                master: sg.masters.get(master).map_or("", |(n, _)| n.as_str()),
                jti: proof.jti.iter().map(|b| format!("{b:02x}")).collect(),
                purpose: &proof.purpose,
                provider: &p.name,
                rule: &cx.rule.name,
            };
            let mut ops = Vec::new();
            if !sg.forward {
                ops.push(found.remove);
            }
            render_headers(p, &facts, &mut ops)?;
            Ok(ops)
        }
        ProviderKind::ApiKey(a) => {
            let found = extract::find(&a.from, cx.req)
                .map_err(|_| Reason::MultipleCredentials)?
                .ok_or(Reason::Missing)?;
            let digest = sha2::Sha256::digest(found.value.as_bytes());
            // Every digest is compared, in constant time, whatever matched.
            let mut matched = None;
            for c in &a.clients {
                if bool::from(digest[..].ct_eq(c.credential.expose())) {
                    matched = Some(c);
                }
            }
            let client = matched.ok_or(Reason::InvalidKey)?;
            permit(client, cx)?;
            rate(client, &p.name, cx)?;
            finish_client(p, client, cx, found.remove, a.forward)
        }
    }
}

/// The request's `Content-Length`, when it declares one.
fn declared_length(req: &RequestView<'_>) -> Option<usize> {
    req.header_values("content-length")
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Status, method and rule permissions of a verified client.
fn permit(client: &Client, cx: &Cx<'_>) -> Result<(), Fail> {
    match client.status {
        ClientStatus::Active => {}
        ClientStatus::Suspended => return Err(Reason::ClientSuspended.into()),
        ClientStatus::Revoked => return Err(Reason::ClientRevoked.into()),
    }
    if !client.methods.is_empty() && !client.methods.iter().any(|m| m == cx.req.method) {
        return Err(Reason::MethodNotAllowed.into());
    }
    if !client.rules.is_empty() && !client.rules.contains(&cx.rule.name) {
        return Err(Reason::RuleNotAllowed.into());
    }
    Ok(())
}

/// Counts the request against the client's rate limit, if it has one.
fn rate(client: &Client, scope: &str, cx: &Cx<'_>) -> Result<(), Fail> {
    let Some(limit) = client.rate_limit else {
        return Ok(());
    };
    match replay::count(cx.store, scope, &client.id, limit, cx.now) {
        Rate::Allowed => Ok(()),
        Rate::Limited(after) => Err(Fail {
            reason: Reason::RateLimited,
            retry_after: Some(after),
        }),
        Rate::Unavailable => Err(Reason::ReplayStoreUnavailable.into()),
    }
}

struct CertFacts<'a> {
    cert: &'a PeerCert,
    cn: Option<&'a str>,
    provider: &'a str,
    rule: &'a str,
}

impl Facts for CertFacts<'_> {
    fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'_, Value>> {
        let text = |s: &str| Some(Cow::Owned(Value::String(s.to_owned())));
        let field = |s: &str| if s.is_empty() { None } else { text(s) };
        match (root, path) {
            (Root::Cert, [f]) => match f.as_str() {
                "cn" => field(self.cn?),
                "subject" => field(&self.cert.subject),
                "uri_san" => field(&self.cert.uri_san),
                "dns_san" => field(&self.cert.dns_san),
                "sha256" => field(&self.cert.sha256),
                _ => None,
            },
            (Root::Provider, []) => text(self.provider),
            (Root::Rule, []) => text(self.rule),
            _ => None,
        }
    }
}

struct KeyFacts<'a> {
    keyid: &'a str,
    provider: &'a str,
    rule: &'a str,
}

impl Facts for KeyFacts<'_> {
    fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'_, Value>> {
        let text = |s: &str| Some(Cow::Owned(Value::String(s.to_owned())));
        match (root, path) {
            (Root::Key, [field]) if field == "id" => text(self.keyid),
            (Root::Provider, []) => text(self.provider),
            (Root::Rule, []) => text(self.rule),
            _ => None,
        }
    }
}

struct SignetFacts<'a> {
    master: &'a str,
    jti: String,
    purpose: &'a str,
    provider: &'a str,
    rule: &'a str,
}

impl Facts for SignetFacts<'_> {
    fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'_, Value>> {
        let text = |s: &str| Some(Cow::Owned(Value::String(s.to_owned())));
        match (root, path) {
            (Root::Signet, [field]) if field == "master" => text(self.master),
            (Root::Signet, [field]) if field == "jti" => text(&self.jti),
            (Root::Signet, [field]) if field == "purpose" => text(self.purpose),
            (Root::Provider, []) => text(self.provider),
            (Root::Rule, []) => text(self.rule),
            _ => None,
        }
    }
}

struct ClientFacts<'a> {
    client: &'a Client,
    provider: &'a str,
    rule: &'a str,
}

impl Facts for ClientFacts<'_> {
    fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'_, Value>> {
        let text = |s: &str| Some(Cow::Owned(Value::String(s.to_owned())));
        match (root, path) {
            (Root::Client, [field]) if field == "id" => text(&self.client.id),
            (Root::Client, [field]) if field == "name" => text(&self.client.name),
            (Root::Provider, []) => text(self.provider),
            (Root::Rule, []) => text(self.rule),
            _ => None,
        }
    }
}

fn finish_client(
    p: &Provider,
    client: &Client,
    cx: &Cx<'_>,
    remove: HeaderOp,
    forward: bool,
) -> Result<Vec<HeaderOp>, Fail> {
    let facts = ClientFacts {
        client,
        provider: &p.name,
        rule: &cx.rule.name,
    };
    let mut ops = Vec::new();
    if !forward {
        ops.push(remove);
    }
    render_headers(p, &facts, &mut ops)?;
    Ok(ops)
}

fn render_headers(p: &Provider, facts: &dyn Facts, ops: &mut Vec<HeaderOp>) -> Result<(), Reason> {
    for (name, t) in &p.headers {
        match t.render(facts) {
            Ok(v) => ops.push(HeaderOp::Set(name.clone(), v)),
            // Nothing to say: the header stays absent (it was stripped), the request goes on.
            Err(RenderError::Missing) => {}
            Err(RenderError::Unsafe) => return Err(Reason::UnsafeClaim),
        }
    }
    Ok(())
}
