//! The decision for one request: normalize the path, pick the first matching rule, satisfy its requirement
//! tree, render identity headers. Pure: the request, the policy and `now` in, a [`Decision`] out.
//!
//! The engine walks; it does not know how a credential is checked. Each provider of the tree is checked by
//! its kind's module through [`crate::providers::Provider::check`], then the claim conditions the requirement
//! puts on it by [`crate::policy::claims`] (after every credential check, so a token that is not valid is
//! 401 whatever its claims).
//!
//! A policy with an `assertion` block also answers `GET <jwks_path>` itself, and on an allowed `require` rule
//! signs the identity assertion over the claims the satisfied providers mapped ([`assert_identity`]).
//!
//! The strip list ([`Policy::strip`]) is not part of the decision: the host removes those headers from every
//! request before calling [`decide`], whatever the outcome.

use crate::decision::{Allow, Decision, Deny, HeaderOp, Reason, Respond, Scheme};
use crate::formats::crypto::Alg;
use crate::formats::jwt::VerifiedJwt;
use crate::policy::assertion::Assertion;
use crate::policy::claims::{Conditions, Unmet};
use crate::policy::config::{Action, Policy, Requirement, Rule};
use crate::policy::rules::{normalize_path, other_readings};
use crate::providers::Cx;
use crate::request::RequestView;
use crate::state::assertion_cache::new_jti;
use crate::state::backend::{LocalState, StateBackend};
use crate::state::jwks_cache::SharedStore;
use serde_json::{Map, Value};

// What the host hands every check; defined beside the checks that read them.
pub use crate::providers::{Caches, KeyLookup, NoRemoteKeys};

/// A satisfied requirement: identity headers and credential removals, and the assertion claims its providers
/// mapped (in an `all`, the first provider that gives a claim a value wins).
#[derive(Debug, Default)]
struct Granted {
    providers: Vec<usize>,
    /// Who satisfied each provider (assertions only), in the order of `providers`.
    callers: Vec<String>,
    ops: Vec<HeaderOp>,
    claims: Map<String, Value>,
}

/// An unsatisfied requirement.
#[derive(Debug, Clone)]
struct Refused {
    reason: Reason,
    provider: Option<usize>,
    retry_after: Option<i64>,
    /// `insufficient_scope`: the scopes the challenge names.
    scope: Option<String>,
}

impl Refused {
    fn new(reason: Reason, provider: Option<usize>) -> Refused {
        Refused {
            reason,
            provider,
            retry_after: None,
            scope: None,
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
    decide_with_state(policy, req, now, keys, &LocalState(store), caches)
}

/// [`decide`] with nonces and counters in `state` (the fleet's store with `state.redis`: a check it cannot
/// answer yet refuses with the internal [`Reason::StateRequired`]).
pub fn decide_with_state(
    policy: &Policy,
    req: &RequestView<'_>,
    now: i64,
    keys: &dyn KeyLookup,
    state: &dyn StateBackend,
    caches: &Caches,
) -> Decision {
    let readings = normalize_path(req.path)
        .and_then(|p| other_readings(req.path, &p).map(|others| (p, others)));
    let Ok((path, others)) = readings else {
        return deny(Reason::AmbiguousPath, None, None, Vec::new(), None);
    };
    if let Some(served) = policy
        .assertion
        .as_ref()
        .and_then(|a| jwks(a, req.method, &path))
    {
        return served;
    }
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
        rule: &rule.name,
        req,
        now,
        keys,
        state,
        caches,
        assertion: policy.assertion.as_ref(),
    };
    match satisfy(policy, &cx, requirement) {
        Ok(mut g) => {
            if let Some(a) = &policy.assertion {
                match assert_identity(policy, a, rule, &g, now, caches) {
                    Ok(op) => g.ops.push(op),
                    Err(reason) => {
                        return deny(reason, Some(rule.name.clone()), None, Vec::new(), None)
                    }
                }
            }
            g.ops.extend(upstream);
            allow(
                g.providers
                    .iter()
                    .filter_map(|&i| policy.providers.get(i).map(|p| p.name.clone()))
                    .collect(),
                g.ops,
            )
        }
        Err(r) => refused(policy, req, rule, requirement, r),
    }
}

/// The denial for an unsatisfied rule: the reason, and the challenges of every scheme the rule accepts (for
/// `insufficient_scope`, only the scheme the token lacking the scope came with).
fn refused(
    policy: &Policy,
    req: &RequestView<'_>,
    rule: &Rule,
    requirement: &Requirement,
    r: Refused,
) -> Decision {
    let failed = r.provider.and_then(|i| policy.providers.get(i));
    let providers = || {
        requirement
            .providers()
            .into_iter()
            .filter_map(|i| policy.providers.get(i))
    };
    let mut schemes: Vec<Scheme> = match &r.scope {
        // The scheme the token came with: `DPoP` when the provider reads DPoP and the request used it.
        Some(_) => {
            let own = failed.map(|p| p.kind.schemes()).unwrap_or_default();
            let dpop = own.contains(&Scheme::DPoP) && used_dpop(req);
            own.into_iter()
                .filter(|s| (*s == Scheme::DPoP) == dpop)
                .collect()
        }
        None => providers().flat_map(|p| p.kind.schemes()).collect(),
    };
    schemes.sort();
    schemes.dedup();
    let mut algs: Vec<Alg> = providers()
        .filter_map(|p| p.kind.dpop_algs())
        .flatten()
        .collect();
    algs.sort();
    algs.dedup();
    Decision::Deny(Deny {
        reason: r.reason,
        rule: Some(rule.name.clone()),
        provider: failed.map(|p| p.name.clone()),
        schemes,
        retry_after: r.retry_after,
        scope: r.scope,
        dpop_algs: algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(" "),
    })
}

/// The request's `Authorization` uses the `DPoP` scheme.
fn used_dpop(req: &RequestView<'_>) -> bool {
    req.header_values("authorization")
        .any(|v| v.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("dpop ")))
}

/// `GET`/`HEAD <jwks_path>`: the proxy answers with the assertion keys, before any rule. (For `HEAD` Envoy
/// sends the headers of this response, `content-length` included, without its body.)
fn jwks(a: &Assertion, method: &str, path: &str) -> Option<Decision> {
    (matches!(method, "GET" | "HEAD") && path == a.jwks_path).then(|| {
        Decision::Respond(Respond {
            body: a.jwks_body.clone(),
            cache_control: "public, max-age=300",
        })
    })
}

/// The assertion header for a satisfied rule: reused from the per-VM cache while fresh (same audience,
/// providers and claims), else signed now with a random `jti`.
fn assert_identity(
    policy: &Policy,
    a: &Assertion,
    rule: &Rule,
    g: &Granted,
    now: i64,
    caches: &Caches,
) -> Result<HeaderOp, Reason> {
    let aud = rule.assertion_audience.as_deref().unwrap_or(&a.audience);
    // Before the cache and the jti: a request without a subject never costs randomness.
    Assertion::require_subject(&g.claims)?;
    let mut key = String::from(aud);
    for (p, caller) in g.providers.iter().zip(&g.callers) {
        let name = policy.providers.get(*p).map_or("", |p| p.name.as_str());
        key.push('\n');
        key.push_str(name);
        key.push('\t');
        key.push_str(caller);
    }
    key.push('\n');
    // Serialized in place: the map is not copied on the reuse path (a map of strings cannot fail to encode).
    key.push_str(&serde_json::to_string(&g.claims).map_err(|_| Reason::AssertionUnavailable)?);
    let jws = caches.assertions.get_or_issue(key, now, a.ttl_s, || {
        let jti = new_jti().ok_or(Reason::AssertionUnavailable)?;
        a.issue(aud, &g.claims, now, &jti)
    })?;
    Ok(HeaderOp::Set(a.header.clone(), jws))
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
        scope: None,
        dpop_algs: String::new(),
    })
}

/// Walks the requirement tree: a provider is checked by its kind (then its claim conditions), `any` takes
/// the first alternative that passes, `all` needs every one.
///
/// An `any` that fails reports, in this order: an alternative that needs the body, the client certificate or
/// an answer of the fleet's state store first (it may pass once the host has them); then the first whose credential verified but whose claim conditions failed (the caller is
/// known, and the 403 says what it lacks; a credential refusal of another alternative, often the same token
/// read by a provider of another issuer, says less); then the first credential that was presented and refused;
/// then the first missing one.
fn satisfy(policy: &Policy, cx: &Cx<'_>, req_tree: &Requirement) -> Result<Granted, Refused> {
    match req_tree {
        Requirement::Provider(i, conditions) => {
            satisfy_provider(policy, cx, *i, conditions.as_ref())
        }
        Requirement::Any(subs) => {
            let mut first_missing = None;
            let mut first_present = None;
            let mut first_unmet = None;
            let mut body_needed = None;
            for s in subs {
                match satisfy(policy, cx, s) {
                    Ok(g) => return Ok(g),
                    Err(r) => {
                        let slot = match r.reason {
                            Reason::BodyRequired | Reason::PeerRequired | Reason::StateRequired => {
                                &mut body_needed
                            }
                            Reason::Missing => &mut first_missing,
                            Reason::InsufficientScope | Reason::ClaimNotAllowed => &mut first_unmet,
                            _ => &mut first_present,
                        };
                        slot.get_or_insert(r);
                    }
                }
            }
            Err(body_needed
                .or(first_unmet)
                .or(first_present)
                .or(first_missing)
                .unwrap_or(Refused::new(Reason::Missing, None)))
        }
        Requirement::All(subs) => {
            let mut all = Granted::default();
            for s in subs {
                let g = satisfy(policy, cx, s)?;
                all.providers.extend(g.providers);
                all.callers.extend(g.callers);
                all.ops.extend(g.ops);
                for (k, v) in g.claims {
                    all.claims.entry(k).or_insert(v);
                }
            }
            Ok(all)
        }
    }
}

/// Provider `i`: its kind checks the credential, then its verified claims must meet `conditions`.
fn satisfy_provider(
    policy: &Policy,
    cx: &Cx<'_>,
    i: usize,
    conditions: Option<&Conditions>,
) -> Result<Granted, Refused> {
    let p = policy
        .providers
        .get(i)
        .ok_or(Refused::new(Reason::NoRule, None))?;
    let mut g = p.check(i, cx).map_err(|f| Refused {
        retry_after: f.retry_after,
        ..Refused::new(f.reason, Some(i))
    })?;
    if let Some(c) = conditions {
        c.check(g.token.as_deref().map(VerifiedJwt::claims))
            .map_err(|unmet| match unmet {
                Unmet::Scope(scope) => Refused {
                    scope: Some(scope),
                    ..Refused::new(Reason::InsufficientScope, Some(i))
                },
                Unmet::Claim => Refused::new(Reason::ClaimNotAllowed, Some(i)),
            })?;
    }
    g.ops.extend(
        p.upstream
            .iter()
            .map(|(n, v)| HeaderOp::Set(n.clone(), v.expose().to_owned())),
    );
    Ok(Granted {
        providers: vec![i],
        callers: vec![g.caller],
        ops: g.ops,
        claims: g.claims.into_iter().collect(),
    })
}
