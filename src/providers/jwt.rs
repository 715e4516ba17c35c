//! The `jwt` provider: a signed identity assertion (JWS compact, RFC 7515/7519) read from a header, query
//! parameter or cookie, verified against the provider's keys ([`super::jwt_keys`]) and claim rules, cached per
//! VM until it expires; templates read `${claims.…}`.

use super::jwt_binding::{self, Binding, Presented, RawDpop};
use super::jwt_keys::{self, KeySource, RawJwtKeys};
use super::{extract, find_one, grant, Cx, Fail, Named, Provider};
use crate::decision::{HeaderOp, Reason};
use crate::formats::crypto::Alg;
use crate::formats::jwk::Jwk;
use crate::formats::jwt::{typ_key, JwtRules, UntrustedJwt, VerifiedJwt, DPOP_TYP};
use crate::policy::config::{compile_headers, err, header_name, ConfigError};
use crate::policy::template::{walk, Facts, Root, Template};
use crate::providers::extract::TokenSource;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwt {
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    keys: RawJwtKeys,
    #[serde(default)]
    from: Option<Vec<RawFrom>>,
    #[serde(default)]
    clock_skew_s: Option<u32>,
    #[serde(default = "yes")]
    require_exp: bool,
    #[serde(default)]
    max_lifetime_s: Option<u32>,
    #[serde(default)]
    typ: Option<Vec<String>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) upstream_headers: BTreeMap<String, String>,
    #[serde(default)]
    forward: bool,
    #[serde(default)]
    dpop: Option<RawDpop>,
    #[serde(default)]
    require_binding: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrom {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
}

/// A compiled `jwt` provider.
#[derive(Debug)]
pub struct JwtProvider {
    pub rules: JwtRules,
    pub keys: KeySource,
    pub from: Vec<TokenSource>,
    /// Keep the token on the request to the upstream.
    pub forward: bool,
    /// DPoP and certificate-bound tokens.
    pub binding: Binding,
}

/// Compiles `providers.<name>.jwt` (at `path`).
pub(super) fn compile(
    path: &str,
    name: &str,
    j: &RawJwt,
    warnings: &mut Vec<String>,
) -> Result<(JwtProvider, Vec<(String, Template)>), ConfigError> {
    let keys = jwt_keys::compile(
        &format!("{path}.keys"),
        name,
        &j.keys,
        j.issuer.as_deref(),
        warnings,
    )?;
    let algorithms = compile_algorithms(path, j.algorithms.as_deref(), &keys)?;
    let from = match &j.from {
        None => vec![TokenSource::bearer()],
        Some(list) if list.is_empty() => {
            return err(format!("{path}.from"), "expected at least one token source")
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, f)| compile_from(&format!("{path}.from[{i}]"), f))
            .collect::<Result<_, _>>()?,
    };
    if j.issuer.as_deref() == Some("") {
        return err(
            format!("{path}.issuer"),
            "expected a non-empty issuer, or leave it out",
        );
    }
    let binding = jwt_binding::compile(path, j.dpop.as_ref(), j.require_binding.as_deref())?;
    let headers = compile_headers(
        &format!("{path}.headers"),
        &j.headers,
        &[Root::Claims, Root::Dpop],
    )?;
    let provider = JwtProvider {
        rules: JwtRules {
            issuer: j.issuer.clone(),
            audiences: j.audiences.clone(),
            algorithms,
            require_exp: j.require_exp,
            clock_skew_s: i64::from(j.clock_skew_s.unwrap_or(60)),
            max_lifetime_s: j.max_lifetime_s.map(i64::from),
            typ: j
                .typ
                .as_deref()
                .map(|list| compile_typ(&format!("{path}.typ"), list))
                .transpose()?,
        },
        keys,
        from,
        forward: j.forward,
        binding,
    };
    Ok((provider, headers))
}

/// The accepted algorithms: the listed ones (each must fit a static key), else every one the keys fit.
fn compile_algorithms(
    path: &str,
    list: Option<&[String]>,
    keys: &KeySource,
) -> Result<Vec<Alg>, ConfigError> {
    let static_keys: &[Jwk] = match keys {
        KeySource::Static(k) => k,
        KeySource::Remote(_) => &[],
    };
    let Some(list) = list else {
        let fits = |alg: Alg| match keys {
            KeySource::Static(k) => k.iter().any(|key| key.accepts(alg)),
            // Remote sets are not known yet: any asymmetric algorithm may come; HMAC only when listed.
            KeySource::Remote(_) => !alg.is_hmac(),
        };
        return Ok(Alg::ALL.into_iter().filter(|a| fits(*a)).collect());
    };
    if list.is_empty() {
        return err(
            format!("{path}.algorithms"),
            "expected at least one algorithm",
        );
    }
    let mut algs = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let Some(alg) = Alg::from_name(a) else {
            return err(
                format!("{path}.algorithms[{i}]"),
                format!(
                    "unsupported algorithm {a:?}, expected one of {}",
                    Alg::ALL.map(Alg::name).join(", ")
                ),
            );
        };
        if !static_keys.is_empty() && !static_keys.iter().any(|k| k.accepts(alg)) {
            return err(
                format!("{path}.algorithms[{i}]"),
                format!("{a} fits none of the provider's keys; remove it or add a key of its type"),
            );
        }
        algs.push(alg);
    }
    Ok(algs)
}

/// `typ` (at `path`): the accepted JOSE `typ` values, as compared ([`typ_key`]); never `dpop+jwt`.
fn compile_typ(path: &str, list: &[String]) -> Result<Vec<String>, ConfigError> {
    if list.is_empty() {
        return err(
            path,
            "expected at least one typ (e.g. [\"at+jwt\"]), or leave the field out to accept any",
        );
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let key = typ_key(t);
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return err(
                format!("{path}[{i}]"),
                format!("{t:?} is not a media type, expected e.g. \"at+jwt\" or \"JWT\""),
            );
        }
        if key == DPOP_TYP {
            return err(
                format!("{path}[{i}]"),
                "dpop+jwt is a DPoP proof's typ, never an access token's (RFC 8725 §3.11)",
            );
        }
        out.push(key);
    }
    Ok(out)
}

fn compile_from(path: &str, f: &RawFrom) -> Result<TokenSource, ConfigError> {
    match (&f.header, &f.query, &f.cookie) {
        (Some(h), None, None) => Ok(TokenSource::Header {
            name: header_name(&format!("{path}.header"), h)?,
            prefix: f.prefix.clone().unwrap_or_default(),
        }),
        (None, Some(q), None) if f.prefix.is_none() && !q.is_empty() => Ok(TokenSource::Query(q.clone())),
        (None, None, Some(c)) if f.prefix.is_none() && !c.is_empty() => Ok(TokenSource::Cookie(c.clone())),
        _ => err(
            path,
            "expected exactly one of {\"header\": NAME, \"prefix\": P}, {\"query\": NAME}, {\"cookie\": NAME}",
        ),
    }
}

impl JwtProvider {
    /// A credential header that is stripped first could never be read: say so at configure time, not as
    /// 401s later.
    pub(super) fn check_strip(&self, path: &str, strip: &[String]) -> Result<(), ConfigError> {
        for (i, src) in self.from.iter().enumerate() {
            if let TokenSource::Header { name, .. } = src {
                if strip.contains(name) {
                    return err(
                        format!("{path}.jwt.from[{i}].header"),
                        format!("{name} is stripped from every request (strip_headers or a provider's headers), so no token could be read from it"),
                    );
                }
            }
        }
        Ok(())
    }

    /// The token and how it came: a `from` source, or `Authorization: DPoP` when the provider accepts DPoP.
    /// Both at once are two credentials.
    fn find_token<'r>(&self, cx: &Cx<'r>) -> Result<(extract::Found<'r>, Presented), Fail> {
        let dpop = match &self.binding.dpop {
            Some(_) => extract::find(&[jwt_binding::dpop_source()], cx.req)
                .map_err(|_| Reason::MultipleCredentials)?,
            None => None,
        };
        match (find_one(&self.from, cx.req), dpop) {
            (Ok(_), Some(_)) => Err(Reason::MultipleCredentials.into()),
            (Err(f), Some(found)) if f.reason == Reason::Missing => Ok((found, Presented::Dpop)),
            (Ok(found), None) => Ok((found, Presented::Bearer)),
            (Err(f), _) => Err(f),
        }
    }

    /// Finds and verifies the token (or takes it from the per-VM cache), then its binding; `index` keys the
    /// cache and the remote key set.
    pub(super) fn check(
        &self,
        p: &Provider,
        index: usize,
        cx: &Cx<'_>,
    ) -> Result<super::Grant, Fail> {
        let (found, presented) = self.find_token(cx)?;
        let remote;
        let (keys, version): (&[Jwk], u64) = match &self.keys {
            KeySource::Static(k) => (k, 0),
            KeySource::Remote(_) => {
                remote = cx.keys.remote_keys(index).ok_or(Reason::KeysUnavailable)?;
                (&remote.0, remote.1)
            }
        };
        // A token verified before by this provider with these keys: its times are checked again, its
        // signature and the other claims are not (the cache lives and dies with this compiled config).
        let verified = match cx.caches.tokens.get(index, &found.value, version) {
            Some(hit) => {
                self.rules
                    .recheck_times(&hit, cx.now)
                    .map_err(Reason::from)?;
                hit
            }
            None => {
                let token = UntrustedJwt::parse(&found.value).map_err(Reason::from)?;
                let fresh = Rc::new(
                    self.rules
                        .verify(&token, keys, cx.now)
                        .map_err(Reason::from)?,
                );
                cx.caches
                    .tokens
                    .put(index, &found.value, fresh.clone(), version, cx.now);
                fresh
            }
        };
        let jkt = self.binding.check(
            cx,
            &p.name,
            &found.value,
            verified.claims(),
            presented,
            self.rules.clock_skew_s,
        )?;
        let facts = JwtFacts {
            jwt: &verified,
            jkt: jkt.as_deref(),
            named: Named {
                provider: &p.name,
                rule: cx.rule,
            },
        };
        // The token's subject (its claims when it has none): the same caller for the assertion cache.
        let caller = match verified.claims().get("sub") {
            _ if cx.assertion.is_none() => String::new(),
            Some(Value::String(s)) => format!("sub:{s}"),
            _ => Value::Object(verified.claims().clone()).to_string(),
        };
        // The proof goes with the token: it is a credential too.
        let proof = (presented == Presented::Dpop).then(|| HeaderOp::Remove("dpop".into()));
        let mut g = grant(
            p,
            cx,
            &caller,
            &facts,
            std::iter::once(found.remove).chain(proof),
            self.forward,
        )?;
        g.token = Some(verified);
        Ok(g)
    }
}

/// `${claims.…}`: the verified token's claims; `${dpop.jkt}`: the proof key of a DPoP-bound token.
struct JwtFacts<'a> {
    jwt: &'a VerifiedJwt,
    jkt: Option<&'a str>,
    named: Named<'a>,
}

impl Facts for JwtFacts<'_> {
    fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'_, Value>> {
        match root {
            Root::Claims => {
                let (first, rest) = path.split_first()?;
                walk(self.jwt.claims().get(first)?, rest).map(Cow::Borrowed)
            }
            Root::Dpop => match path {
                [f] if f == "jkt" => super::field(self.jkt?),
                _ => None,
            },
            _ => self.named.lookup(root, path),
        }
    }
}
