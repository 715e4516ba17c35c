//! The decision for one request: normalize the path, pick the first matching rule, satisfy its requirement
//! tree, render identity headers. Pure: the request, the policy and `now` in, a [`Decision`] out.
//!
//! The strip list ([`Policy::strip`]) is not part of the decision: the host removes those headers from every
//! request before calling [`decide`], whatever the outcome.

use crate::config::{Action, KeySource, Policy, Provider, ProviderKind, Requirement, Rule};
use crate::decision::{Allow, Decision, Deny, HeaderOp, Reason, Scheme};
use crate::extract;
use crate::jwk::Jwk;
use crate::jwt::{UntrustedJwt, VerifiedJwt};
use crate::request::RequestView;
use crate::rules::normalize_path;
use crate::template::{walk, Facts, RenderError, Root};
use serde_json::Value;
use std::borrow::Cow;
use std::rc::Rc;

/// The current keys of providers whose keys are fetched at run time (the host's per-VM cache).
pub trait KeyLookup {
    /// The usable keys of provider `index`, or `None` while none are (→ 503 `keys_unavailable`).
    fn remote_keys(&self, index: usize) -> Option<Rc<[Jwk]>>;
}

/// For policies without remote key sets (tests, the CLI): no remote keys are ever available.
pub struct NoRemoteKeys;

impl KeyLookup for NoRemoteKeys {
    fn remote_keys(&self, _index: usize) -> Option<Rc<[Jwk]>> {
        None
    }
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

/// Decides one request at `now` (unix seconds); remote key sets are read through `keys`.
pub fn decide(policy: &Policy, req: &RequestView<'_>, now: i64, keys: &dyn KeyLookup) -> Decision {
    let path = match normalize_path(req.path) {
        Ok(p) => p,
        Err(_) => return deny(Reason::AmbiguousPath, None, None, Vec::new()),
    };
    let Some(rule) = policy
        .rules
        .iter()
        .find(|r| r.matcher.matches(req.method, req.authority, &path))
    else {
        return deny(Reason::NoRule, None, None, Vec::new());
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
    let requirement = match &rule.action {
        Action::Public => return allow(Vec::new(), Vec::new()),
        Action::Require(r) => r,
    };
    let cx = Cx {
        policy,
        rule,
        req,
        now,
        keys,
    };
    match satisfy(&cx, requirement) {
        Ok(g) => allow(
            g.providers
                .iter()
                .filter_map(|&i| policy.providers.get(i).map(|p| p.name.clone()))
                .collect(),
            g.ops,
        ),
        Err(r) => {
            let mut schemes: Vec<Scheme> = requirement
                .providers()
                .iter()
                .filter_map(|&i| policy.providers.get(i))
                .map(|p| p.kind.scheme())
                .collect();
            schemes.sort();
            schemes.dedup();
            let provider = r
                .provider
                .and_then(|i| policy.providers.get(i))
                .map(|p| p.name.clone());
            deny(r.reason, Some(rule.name.clone()), provider, schemes)
        }
    }
}

fn deny(
    reason: Reason,
    rule: Option<String>,
    provider: Option<String>,
    schemes: Vec<Scheme>,
) -> Decision {
    Decision::Deny(Deny {
        reason,
        rule,
        provider,
        schemes,
    })
}

/// What every provider check of one request needs.
struct Cx<'a> {
    policy: &'a Policy,
    rule: &'a Rule,
    req: &'a RequestView<'a>,
    now: i64,
    keys: &'a dyn KeyLookup,
}

fn satisfy(cx: &Cx<'_>, req_tree: &Requirement) -> Result<Granted, Refused> {
    match req_tree {
        Requirement::Provider(i) => {
            let p = cx.policy.providers.get(*i).ok_or(Refused {
                reason: Reason::NoRule,
                provider: None,
            })?;
            check_provider(cx, *i, p)
                .map(|ops| Granted {
                    providers: vec![*i],
                    ops,
                })
                .map_err(|reason| Refused {
                    reason,
                    provider: Some(*i),
                })
        }
        Requirement::Any(subs) => {
            let mut first_missing = None;
            let mut first_present = None;
            for s in subs {
                match satisfy(cx, s) {
                    Ok(g) => return Ok(g),
                    Err(r) if r.reason == Reason::Missing => {
                        first_missing.get_or_insert(r);
                    }
                    Err(r) => {
                        first_present.get_or_insert(r);
                    }
                }
            }
            // A credential that was presented and refused says more than the absence of another one.
            Err(first_present.or(first_missing).unwrap_or(Refused {
                reason: Reason::Missing,
                provider: None,
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
fn check_provider(cx: &Cx<'_>, index: usize, p: &Provider) -> Result<Vec<HeaderOp>, Reason> {
    match &p.kind {
        ProviderKind::Jwt(j) => {
            let found = extract::find(&j.from, cx.req)
                .map_err(|_| Reason::MultipleCredentials)?
                .ok_or(Reason::Missing)?;
            let token = UntrustedJwt::parse(&found.value).map_err(Reason::from)?;
            let remote;
            let keys: &[Jwk] = match &j.keys {
                KeySource::Static(k) => k,
                KeySource::Remote(_) => {
                    remote = cx.keys.remote_keys(index).ok_or(Reason::KeysUnavailable)?;
                    &remote
                }
            };
            let verified = j.rules.verify(&token, keys, cx.now).map_err(Reason::from)?;
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
    }
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
