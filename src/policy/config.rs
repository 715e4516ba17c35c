//! The filter config, policy-wide: the providers map, rules, strip list and `{"env": …}` resolution; raw serde
//! types (the JSON contract in DESIGN.md) → a compiled, immutable [`Policy`]. Each provider kind's own config
//! is compiled by its module in [`crate::providers`].
//!
//! All validation happens here, once, at configure time; every error names the JSON path and what was
//! expected (`providers.corp.jwt.keys.jwks.keys[0].crv: unsupported curve "P-521", expected P-256 or P-384`).
//! Unknown fields are refused everywhere except inside JWKs (RFC 7517 asks readers to ignore them).

use crate::policy::assertion::{Assertion, RawAssertion};
use crate::policy::claims::Conditions;
use crate::policy::host_caps::{HostCrypto, HostResume};
use crate::policy::rules::{normalize_path, HostMatch, Match};
use crate::policy::template::{Root, Template};
use crate::providers::{Provider, RawProvider};
use crate::state::redis::{RawState, RedisConfig};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// A config error: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path, e.g. `providers.corp.jwt.keys.jwks.keys[0].crv` (empty for the document itself).
    pub path: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn err<T>(
    path: impl Into<String>,
    message: impl Into<String>,
) -> Result<T, ConfigError> {
    Err(ConfigError {
        path: path.into(),
        message: message.into(),
    })
}

// ---------------------------------------------------------------------------------------------------------
// Raw types: the JSON contract.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    strip_headers: Vec<String>,
    rules: Vec<RawRule>,
    #[serde(default)]
    assertion: Option<RawAssertion>,
    #[serde(default)]
    state: Option<RawState>,
    #[serde(default)]
    host_crypto: HostCrypto,
    #[serde(default)]
    host_resume: HostResume,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "match", default)]
    matcher: RawMatch,
    #[serde(default)]
    require: Option<Value>,
    #[serde(default)]
    allow: Option<String>,
    #[serde(default)]
    cors_preflight: Option<String>,
    #[serde(default)]
    upstream_headers: BTreeMap<String, String>,
    #[serde(default)]
    assertion_audience: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    methods: Vec<String>,
}

// ---------------------------------------------------------------------------------------------------------
// The compiled policy.

/// A compiled config. Immutable; shared by every request of a VM.
#[derive(Debug)]
pub struct Policy {
    /// Providers, in name order; rules refer to them by index.
    pub providers: Vec<Provider>,
    /// Rules in config order.
    pub rules: Vec<Rule>,
    /// Lower-case header names removed from every request: `strip_headers` plus every provider header.
    pub strip: Vec<String>,
    /// Some provider reads the client certificate (the host asks for it only then).
    pub needs_peer: bool,
    /// Some provider reads the request's scheme (DPoP `htu` without `dpop.origin`): the host then sets
    /// `:scheme` from the connection, whatever the client sent.
    pub needs_scheme: bool,
    /// What the host logs once at configure: config that was accepted but not all used (an inline JWKS key
    /// that cannot verify a JWS, with its path, kid and why). Never key material.
    pub warnings: Vec<String>,
    /// The signed identity assertion issued to the upstream, when configured.
    pub assertion: Option<Assertion>,
    /// Where replay nonces and rate counters live when not in the proxy's shared data (`state.redis`).
    pub state: Option<RedisConfig>,
    /// Whether RSA/ECDSA may be verified by the host's `verify_signature` (`host_crypto`).
    pub host_crypto: HostCrypto,
    /// Whether a request may wait for keys, to be resumed from the root context (`host_resume`).
    pub host_resume: HostResume,
}

impl Policy {
    /// True when the request header `name` must be removed: it is on the strip list, compared without regard
    /// to case and with `_` read as `-`. CGI, WSGI, PHP and Rack give `X_Commit_Owner` and `X-Commit-Owner` the
    /// same variable (`HTTP_X_COMMIT_OWNER`), so the underscore spelling is a forgery of the same header.
    pub fn strips(&self, name: &str) -> bool {
        self.strip.iter().any(|s| same_header_loosely(s, name))
    }
}

/// `a` and `b` name the same header once case is ignored and `_` is read as `-`.
fn same_header_loosely(a: &str, b: &str) -> bool {
    let fold = |c: u8| match c {
        b'_' => b'-',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// A header value written for the upstream (often a credential the client never sees): never shown by
/// `Debug`, never logged, wiped on drop.
#[derive(Clone)]
pub struct UpstreamValue(zeroize::Zeroizing<String>);

impl UpstreamValue {
    /// The value, to write into the request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UpstreamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UpstreamValue(_)")
    }
}

impl Policy {
    /// The largest body a rule may need buffered (0: no provider signs bodies).
    pub fn max_body_bytes(&self) -> usize {
        self.providers
            .iter()
            .filter_map(|p| p.kind.max_body_bytes())
            .max()
            .unwrap_or(0)
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// `name`, or `rules[i]`'s index as `rule<i>`.
    pub name: String,
    pub matcher: Match,
    pub action: Action,
    /// Let CORS preflights through without a credential.
    pub cors_preflight: bool,
    /// Lower-case header name → value, written for the upstream once the rule is satisfied.
    pub upstream: Vec<(String, UpstreamValue)>,
    /// The `aud` of this rule's assertions, when not the policy's `assertion.audience`.
    pub assertion_audience: Option<String>,
}

/// What a matching rule demands.
#[derive(Debug)]
pub enum Action {
    Public,
    Require(Requirement),
}

/// A requirement tree over provider indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// A provider's credential, and the claim conditions its verified token must meet (`None`: any token).
    Provider(usize, Option<Conditions>),
    Any(Vec<Requirement>),
    All(Vec<Requirement>),
}

impl Requirement {
    /// Provider indexes in the tree, in order.
    pub fn providers(&self) -> Vec<usize> {
        match self {
            Requirement::Provider(i, _) => vec![*i],
            Requirement::Any(v) | Requirement::All(v) => {
                v.iter().flat_map(Self::providers).collect()
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Compilation.

/// Parses and compiles a config document; `{"env": NAME}` values are read from the process (VM) environment.
pub fn compile(json: &[u8]) -> Result<Policy, ConfigError> {
    compile_with_env(json, &|name| std::env::var(name).ok())
}

/// [`compile`] with the environment given: `env(NAME)` is the value of variable NAME, if set.
pub fn compile_with_env(
    json: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Policy, ConfigError> {
    // serde_json's message ends with " at line L column C": keep it, it helps find the spot.
    let mut doc: Value = serde_json::from_slice(json).map_err(|e| ConfigError {
        path: String::new(),
        message: e.to_string(),
    })?;
    resolve_env(&mut doc, env)?;
    let raw: RawConfig = serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        ConfigError {
            path: if path == "." || path == "?" {
                String::new()
            } else {
                path
            },
            message: e.into_inner().to_string(),
        }
    })?;
    compile_raw(raw)
}

/// The secret-bearing places where a value may be `{"env": "NAME"}` (`*`: any member or index).
const ENV_PLACES: [&[&str]; 10] = [
    &["assertion", "signing_key", "pem"],
    &["providers", "*", "hmac", "clients", "*", "secret"],
    &["providers", "*", "api_key", "clients", "*", "key_sha256"],
    &["providers", "*", "http_signature", "keys", "*", "secret"],
    &["providers", "*", "http_signature", "keys", "*", "pem"],
    &["providers", "*", "jwt", "keys", "jwks"],
    &["providers", "*", "jwt", "keys", "pem"],
    &["providers", "*", "signet", "master_keys", "*"],
    &["providers", "*", "*", "upstream_headers", "*"],
    &["rules", "*", "upstream_headers", "*"],
];

/// Replaces every `{"env": "NAME"}` at an [`ENV_PLACES`] place by the variable's value.
fn resolve_env(doc: &mut Value, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    for place in ENV_PLACES {
        resolve_at(doc, place, String::new(), env)?;
    }
    Ok(())
}

fn resolve_at(
    v: &mut Value,
    place: &[&str],
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let Some((first, rest)) = place.split_first() else {
        let Value::Object(m) = v else {
            return Ok(());
        };
        if !m.contains_key("env") {
            return Ok(());
        }
        let name =
            match m.get("env") {
                Some(Value::String(n)) if m.len() == 1 && !n.is_empty() => n.clone(),
                _ => return err(
                    path,
                    "expected {\"env\": \"NAME\"} (one member: the environment variable's name)",
                ),
            };
        let Some(value) = env(&name) else {
            return err(
                path,
                format!("environment variable {name:?} is not set in the Wasm VM; set it in Envoy's vm_config.environment_variables (key_values or host_env_keys) or Istio's vmConfig.env"),
            );
        };
        *v = Value::String(value);
        return Ok(());
    };
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match v {
        Value::Object(m) if *first == "*" => {
            for (k, child) in m.iter_mut() {
                resolve_at(child, rest, join(k), env)?;
            }
        }
        Value::Object(m) => {
            if let Some(child) = m.get_mut(*first) {
                resolve_at(child, rest, join(first), env)?;
            }
        }
        Value::Array(a) if *first == "*" => {
            for (i, child) in a.iter_mut().enumerate() {
                resolve_at(child, rest, format!("{path}[{i}]"), env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn is_token_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

fn is_metric_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Headers a provider or rule must never set: they change routing or framing.
const RESERVED_HEADERS: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "authorization",
];

/// True for a header a provider or the assertion may never set.
pub(crate) fn is_reserved_header(lower: &str) -> bool {
    RESERVED_HEADERS.contains(&lower)
}

/// A header name at `path`, lower-cased.
pub(crate) fn header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    let lower = name.to_ascii_lowercase();
    if !is_token_name(&lower) {
        return err(
            path,
            format!("{name:?} is not a header name, expected letters, digits, '-', '_' or '.'"),
        );
    }
    Ok(lower)
}

fn compile_raw(raw: RawConfig) -> Result<Policy, ConfigError> {
    let mut warnings = Vec::new();
    let providers = compile_providers(&raw.providers, &mut warnings)?;
    let assertion = raw
        .assertion
        .as_ref()
        .map(|a| a.compile("assertion"))
        .transpose()?;
    let assertion_header = assertion.as_ref().map(|a| a.header.as_str());
    if let Some(h) = assertion_header {
        if let Some(p) = providers
            .iter()
            .find(|p| p.headers.iter().any(|(n, _)| n == h))
        {
            return err(
                "assertion.header",
                format!(
                    "{h} is also written by provider {:?}; choose another header for the assertion",
                    p.name
                ),
            );
        }
    }
    let strip = compile_strip(&raw.strip_headers, &providers, assertion_header)?;
    let rules = compile_rules(&raw.rules, &providers)?;
    if assertion.is_none() {
        if let Some(i) = rules.iter().position(|r| r.assertion_audience.is_some()) {
            return err(
                format!("rules[{i}].assertion_audience"),
                "there is no policy-wide \"assertion\" block to issue assertions with; add one or remove this",
            );
        }
    }
    let needs_peer = providers.iter().any(|p| p.kind.needs_peer());
    let needs_scheme = providers.iter().any(|p| p.kind.needs_scheme());
    let state = raw.state.as_ref().map(|s| s.compile("state")).transpose()?;
    Ok(Policy {
        providers,
        rules,
        strip,
        needs_peer,
        needs_scheme,
        warnings,
        assertion,
        state,
        host_crypto: raw.host_crypto,
        host_resume: raw.host_resume,
    })
}

/// `providers`, in name order: each name checked, each kind compiled by its own module.
fn compile_providers(
    raw: &BTreeMap<String, RawProvider>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Provider>, ConfigError> {
    let mut providers = Vec::new();
    for (name, p) in raw {
        let path = format!("providers.{name}");
        if !is_metric_name(name) {
            return err(
                path,
                "provider names use letters, digits, '-' and '_' (at most 64): they label metrics",
            );
        }
        if name == "public" || name == "none" {
            return err(
                path,
                format!("{name:?} is reserved as a metric label, choose another name"),
            );
        }
        providers.push(p.compile(&path, name, warnings)?);
    }
    Ok(providers)
}

/// The strip list: `strip_headers`, every header a provider writes and the assertion's header, lower-case,
/// sorted, unique.
fn compile_strip(
    raw: &[String],
    providers: &[Provider],
    assertion: Option<&str>,
) -> Result<Vec<String>, ConfigError> {
    let mut strip = Vec::new();
    for (i, h) in raw.iter().enumerate() {
        let n = header_name(&format!("strip_headers[{i}]"), h)?;
        if n == "authorization" {
            return err(
                format!("strip_headers[{i}]"),
                "authorization carries credentials and cannot be stripped before verification; providers remove it after",
            );
        }
        strip.push(n);
    }
    for p in providers {
        strip.extend(p.headers.iter().map(|(n, _)| n.clone()));
    }
    strip.extend(assertion.map(str::to_owned));
    strip.sort();
    strip.dedup();
    for p in providers {
        p.kind
            .check_strip(&format!("providers.{}", p.name), &strip)?;
    }
    Ok(strip)
}

/// `rules`, in order: unique names, at least one; every rule a client names exists.
fn compile_rules(raw: &[RawRule], providers: &[Provider]) -> Result<Vec<Rule>, ConfigError> {
    let mut rules = Vec::new();
    let mut seen_names = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let rule = compile_rule(&format!("rules[{i}]"), i, r, providers)?;
        if seen_names.contains(&rule.name) {
            return err(
                format!("rules[{i}].name"),
                format!(
                    "{:?} is used by an earlier rule, expected unique names",
                    rule.name
                ),
            );
        }
        seen_names.push(rule.name.clone());
        rules.push(rule);
    }
    if rules.is_empty() {
        return err(
            "rules",
            "expected at least one rule (requests matching no rule are refused)",
        );
    }
    for p in providers {
        for c in p.kind.clients() {
            for (i, r) in c.rules.iter().enumerate() {
                if !seen_names.contains(r) {
                    return err(
                        format!(
                            "providers.{}.{}.clients.{}.rules[{i}]",
                            p.name,
                            p.kind.label(),
                            c.id
                        ),
                        format!(
                            "unknown rule {r:?}, expected one of: {}",
                            seen_names.join(", ")
                        ),
                    );
                }
            }
        }
    }
    Ok(rules)
}

/// Compiles a provider's `headers` (at `path`); templates may read `kind_roots` plus `${provider}` and `${rule}`.
pub(crate) fn compile_headers(
    path: &str,
    raw: &BTreeMap<String, String>,
    kind_roots: &[Root],
) -> Result<Vec<(String, Template)>, ConfigError> {
    let mut out = Vec::new();
    for (name, text) in raw {
        let hpath = format!("{path}.{name}");
        let lower = header_name(&hpath, name)?;
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return err(hpath, format!("{lower} cannot be set by a provider"));
        }
        let t = Template::parse(text).map_err(|e| ConfigError {
            path: hpath.clone(),
            message: e.to_string(),
        })?;
        for v in t.vars() {
            let ok = matches!(v.root, Root::Provider | Root::Rule) || kind_roots.contains(&v.root);
            if !ok {
                return err(
                    hpath,
                    format!(
                        "${{{}…}} is not available to this provider kind, expected {}provider or rule",
                        v.root.name(),
                        kind_roots.iter().map(|r| format!("{}.…, ", r.name())).collect::<String>()
                    ),
                );
            }
        }
        out.push((lower, t));
    }
    Ok(out)
}

/// Headers that frame or route the request: never written for the upstream.
const NOT_UPSTREAM: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

/// Compiles `upstream_headers` (at `path`): values written for the upstream, never echoed.
pub(crate) fn compile_upstream(
    path: &str,
    raw: &BTreeMap<String, String>,
) -> Result<Vec<(String, UpstreamValue)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in raw {
        let hpath = format!("{path}.{name}");
        let lower = header_name(&hpath, name)?;
        if NOT_UPSTREAM.contains(&lower.as_str()) {
            return err(
                hpath,
                format!("{lower} frames or routes the request and cannot be set"),
            );
        }
        // The value is never echoed: it is often a credential.
        if value.is_empty()
            || value.bytes().any(|b| b.is_ascii_control() && b != b'\t')
            || value.trim() != value
        {
            return err(
                hpath,
                "expected a non-empty header value without control characters or leading/trailing whitespace",
            );
        }
        out.push((lower, UpstreamValue(zeroize::Zeroizing::new(value.clone()))));
    }
    Ok(out)
}

/// A requirement at `path`: a provider name, `{"provider": NAME, "claims": {…}}`, `{"any": […]}` or
/// `{"all": […]}` (nestable).
fn compile_requirement(
    path: &str,
    v: &Value,
    providers: &[Provider],
) -> Result<Requirement, ConfigError> {
    match v {
        Value::String(name) => Ok(Requirement::Provider(
            provider_index(path, name, providers)?,
            None,
        )),
        Value::Object(m) if m.contains_key("provider") => conditional(path, m, providers),
        Value::Object(m) if m.len() == 1 => {
            let (op, list) = m.iter().next().ok_or_else(|| ConfigError {
                path: path.to_owned(),
                message: "empty requirement".into(),
            })?;
            let Some(items) = list.as_array().filter(|a| !a.is_empty()) else {
                return err(
                    format!("{path}.{op}"),
                    "expected a non-empty array of requirements",
                );
            };
            let subs = items
                .iter()
                .enumerate()
                .map(|(i, it)| compile_requirement(&format!("{path}.{op}[{i}]"), it, providers))
                .collect::<Result<Vec<_>, _>>()?;
            match op.as_str() {
                "any" => Ok(Requirement::Any(subs)),
                "all" => Ok(Requirement::All(subs)),
                _ => err(
                    format!("{path}.{op}"),
                    "unknown operator, expected \"any\" or \"all\"",
                ),
            }
        }
        _ => err(
            path,
            "expected a provider name, {\"provider\": NAME, \"claims\": {...}}, {\"any\": [...]} or {\"all\": [...]}",
        ),
    }
}

/// The index of provider `name` (named at `path`).
fn provider_index(path: &str, name: &str, providers: &[Provider]) -> Result<usize, ConfigError> {
    match providers.iter().position(|p| p.name == name) {
        Some(i) => Ok(i),
        None => err(
            path,
            format!(
                "unknown provider {name:?}, expected one of: {}",
                providers
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

/// `{"provider": NAME, "claims": {…}}` at `path`: conditions only on a kind whose credential has claims.
fn conditional(
    path: &str,
    m: &serde_json::Map<String, Value>,
    providers: &[Provider],
) -> Result<Requirement, ConfigError> {
    if let Some(k) = m.keys().find(|k| *k != "provider" && *k != "claims") {
        return err(
            format!("{path}.{k}"),
            "unknown field, expected \"provider\" and \"claims\"",
        );
    }
    let Some(Value::String(name)) = m.get("provider") else {
        return err(format!("{path}.provider"), "expected a provider name");
    };
    let index = provider_index(&format!("{path}.provider"), name, providers)?;
    let Some(raw) = m.get("claims") else {
        return Ok(Requirement::Provider(index, None));
    };
    let cpath = format!("{path}.claims");
    match providers.get(index).map(|p| &p.kind) {
        Some(kind) if kind.has_claims() => {}
        kind => {
            return err(
                cpath,
                format!(
                    "{name:?} is a {} provider, whose credential has no claims; claim conditions need a jwt provider",
                    kind.map_or("?", |k| k.label())
                ),
            )
        }
    }
    Ok(Requirement::Provider(
        index,
        Some(Conditions::compile(&cpath, raw)?),
    ))
}

fn compile_rule(
    path: &str,
    index: usize,
    r: &RawRule,
    providers: &[Provider],
) -> Result<Rule, ConfigError> {
    let name = match &r.name {
        Some(n) if is_metric_name(n) => n.clone(),
        Some(_) => {
            return err(
                format!("{path}.name"),
                "rule names use letters, digits, '-' and '_' (at most 64): they label logs",
            )
        }
        None => format!("rule{index}"),
    };
    let m = &r.matcher;
    let mpath = format!("{path}.match");
    let host = match &m.host {
        None => None,
        Some(h) => Some(HostMatch::parse(h).ok_or_else(|| ConfigError {
            path: format!("{mpath}.host"),
            message: format!("{h:?} is not a host pattern, expected a name, *.suffix or *"),
        })?),
    };
    for (field, p) in [("path", &m.path), ("path_prefix", &m.path_prefix)] {
        if let Some(p) = p {
            // A pattern that is not in normalized form could never match: say so now.
            let norm = normalize_path(p).ok();
            let ok = norm.as_deref() == Some(p.as_str())
                || (field == "path_prefix"
                    && p.ends_with('/')
                    && norm.as_deref() == Some(p.as_str()));
            if !ok {
                return err(
                    format!("{mpath}.{field}"),
                    format!(
                        "{p:?} is not a normalized path (rules match the normalized path: no query, no '//', no dot segments, unreserved characters unescaped); expected {:?}",
                        norm.unwrap_or_else(|| "/…".into())
                    ),
                );
            }
        }
    }
    let mut methods = Vec::new();
    for (i, meth) in m.methods.iter().enumerate() {
        if meth.is_empty() || !meth.bytes().all(|b| b.is_ascii_alphabetic()) {
            return err(
                format!("{mpath}.methods[{i}]"),
                format!("{meth:?} is not an HTTP method"),
            );
        }
        methods.push(meth.to_ascii_uppercase());
    }
    let action = match (&r.require, &r.allow) {
        (Some(req), None) => Action::Require(compile_requirement(
            &format!("{path}.require"),
            req,
            providers,
        )?),
        (None, Some(a)) if a == "public" => Action::Public,
        (None, Some(a)) => {
            return err(
                format!("{path}.allow"),
                format!("{a:?} is not an allow mode, expected \"public\""),
            )
        }
        _ => return err(path, "expected exactly one of \"require\" or \"allow\""),
    };
    let cors_preflight = match r.cors_preflight.as_deref() {
        None | Some("deny") => false,
        Some("allow") => true,
        Some(other) => {
            return err(
                format!("{path}.cors_preflight"),
                format!("{other:?} is not a mode, expected \"allow\" or \"deny\""),
            )
        }
    };
    let assertion_audience = rule_audience(path, r.assertion_audience.as_ref(), &action)?;
    Ok(Rule {
        name,
        matcher: Match {
            host,
            path: m.path.clone(),
            path_prefix: m.path_prefix.clone(),
            methods,
        },
        action,
        cors_preflight,
        upstream: compile_upstream(&format!("{path}.upstream_headers"), &r.upstream_headers)?,
        assertion_audience,
    })
}

/// A rule's `assertion_audience`: non-empty, and never on a public rule.
fn rule_audience(
    path: &str,
    raw: Option<&String>,
    action: &Action,
) -> Result<Option<String>, ConfigError> {
    match (raw, action) {
        (Some(_), Action::Public) => err(
            format!("{path}.assertion_audience"),
            "a public rule has no identity to assert; remove this or require a provider",
        ),
        (Some(a), _) if a.is_empty() => err(
            format!("{path}.assertion_audience"),
            "expected a non-empty audience",
        ),
        (a, _) => Ok(a.cloned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::crypto::Alg;
    use crate::providers::extract::TokenSource;
    use crate::providers::ProviderKind;
    use serde_json::json;

    const HS_KEY: &str = r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}"#;

    fn base() -> Value {
        json!({
            "providers": {"corp": {"jwt": {"issuer": "https://idp/", "keys": {"jwks": HS_KEY},
                "headers": {"X-Commit-Owner": "human:${claims.sub}"}}}},
            "strip_headers": ["X-User"],
            "rules": [{"match": {"path": "/healthz"}, "allow": "public"}, {"require": "corp"}]
        })
    }

    fn compile_value(v: &Value) -> Result<Policy, ConfigError> {
        compile(v.to_string().as_bytes())
    }

    fn error_of(v: Value) -> String {
        compile_value(&v).unwrap_err().to_string()
    }

    #[test]
    fn base_config_compiles() {
        let p = compile_value(&base()).unwrap();
        assert_eq!(p.strip, vec!["x-commit-owner", "x-user"]);
        // Any case, and `_` for `-` (what CGI/WSGI upstreams read as the same header); nothing else.
        for name in ["x-user", "X-User", "x_user", "X_USER", "x-commit_owner"] {
            assert!(p.strips(name), "{name}");
        }
        for name in ["x-users", "xuser", "x.user", "x-use", "authorization"] {
            assert!(!p.strips(name), "{name}");
        }
        assert_eq!(p.rules[1].name, "rule1");
        let ProviderKind::Jwt(j) = &p.providers[0].kind else {
            panic!("jwt provider expected")
        };
        assert_eq!(j.rules.algorithms, vec![Alg::HS256, Alg::HS384, Alg::HS512]);
        assert_eq!(j.from, vec![TokenSource::bearer()]);
        assert_eq!(j.rules.clock_skew_s, 60);
    }

    /// The keys of `HS_KEY` plus `extra`, as an inline set.
    fn with_keys(extra: Value) -> Value {
        let mut keys: Vec<Value> = serde_json::from_str::<Value>(HS_KEY).unwrap()["keys"]
            .as_array()
            .unwrap()
            .clone();
        keys.extend(extra.as_array().unwrap().iter().cloned());
        let mut v = base();
        v["providers"]["corp"]["jwt"]["keys"] = json!({"jwks": {"keys": keys}});
        v
    }

    #[test]
    fn inline_keys_that_cannot_verify_a_jws_are_skipped_with_a_warning() {
        // Keycloak publishes an RSA-OAEP encryption key beside its signing keys; other sets hold curves,
        // types and algorithms this filter does not verify with.
        let n = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
        let v = with_keys(json!([
            {"kty": "RSA", "kid": "kc-enc", "use": "enc", "alg": "RSA-OAEP", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "oaep-256", "alg": "RSA-OAEP-256", "n": n, "e": "AQAB"},
            {"kty": "OKP", "kid": "ecdh", "crv": "X25519", "alg": "ECDH-ES", "x": "AA"},
            {"kty": "oct", "kid": "wrap", "alg": "A128KW", "k": "GawgguFyGrWKav7AX4VKUg"},
            {"kty": "EC", "kid": "big", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "OKP", "kid": "x", "crv": "X25519", "x": "AA"},
            {"kty": "oct", "kid": "ops", "key_ops": ["encrypt"], "k": "c2VjcmV0"},
            {"kty": "AKP", "kid": "pq"}
        ]));
        let p = compile_value(&v).unwrap();
        let ProviderKind::Jwt(j) = &p.providers[0].kind else {
            panic!("jwt provider expected")
        };
        let crate::providers::jwt_keys::KeySource::Static(keys) = &j.keys else {
            panic!("static keys expected")
        };
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("h"));
        let kids: Vec<&str> = p.warnings.iter().map(String::as_str).collect();
        assert_eq!(kids.len(), 8, "{kids:#?}");
        assert_eq!(
            kids[0],
            "key skipped, it cannot verify a JWS: providers.corp.jwt.keys.jwks.keys[1] (kid \"kc-enc\"): use: \"enc\" marks an encryption key, expected \"sig\""
        );
        assert!(kids[1]
            .contains("keys[2].alg (kid \"oaep-256\"): unsupported algorithm \"RSA-OAEP-256\""));
        assert!(kids[5].contains("keys[6].crv (kid \"x\"): unsupported curve \"X25519\""));
        assert!(kids[6].contains("keys[7].key_ops (kid \"ops\"): does not list \"verify\""));
        // Never key material.
        assert!(!p
            .warnings
            .iter()
            .any(|w| w.contains(n) || w.contains("GawgguFyGrWKav7AX4VKUg")));
    }

    #[test]
    fn an_inline_set_without_a_usable_key_is_refused_at_its_path() {
        let mut v = base();
        v["providers"]["corp"]["jwt"]["keys"] = json!({"jwks": {"keys": [
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}
        ]}});
        assert_eq!(
            error_of(v),
            "providers.corp.jwt.keys.jwks: no key can verify a JWS, expected at least one signature key; skipped providers.corp.jwt.keys.jwks.keys[0].crv: unsupported curve \"P-521\", expected P-256 or P-384; providers.corp.jwt.keys.jwks.keys[1] (kid \"enc\"): use: \"enc\" marks an encryption key, expected \"sig\""
        );
    }

    #[test]
    fn a_malformed_usable_key_is_refused_at_its_member_even_beside_skipped_ones() {
        let enc = json!({"kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"});
        let cases = [
            (
                json!({"kty": "RSA", "kid": "s", "alg": "RS256", "n": "!!", "e": "AQAB"}),
                "keys[2].n: expected base64url",
            ),
            (
                json!({"kty": "RSA", "kid": "s", "e": "AQAB"}),
                "keys[2].n: missing",
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": "AQAB", "y": "AQAB"}),
                "keys[2].x: ",
            ),
            (
                json!({"kty": "oct", "k": "c2VjcmV0", "alg": "ES256"}),
                "keys[2].alg: ES256 cannot be used with a oct key",
            ),
            (
                json!({"kty": "EC", "x": "AA", "y": "AA"}),
                "keys[2].crv: missing",
            ),
        ];
        for (bad, want) in cases {
            let e = error_of(with_keys(json!([enc.clone(), bad])));
            assert!(
                e.starts_with(&format!("providers.corp.jwt.keys.jwks.{want}")),
                "{e}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let mut v = base();
        v["providers"]["corp"]["jwt"]["issuerr"] = json!("x");
        let e = error_of(v);
        assert!(
            e.starts_with(
                "providers.corp.jwt.issuerr: unknown field `issuerr`, expected one of `issuer`"
            ),
            "{e}"
        );
        let mut v = base();
        v["rules"][0]["match"]["paths"] = json!("/x");
        let e = error_of(v);
        assert!(
            e.starts_with("rules[0].match.paths: unknown field `paths`"),
            "{e}"
        );
        let mut v = base();
        v["extra"] = json!(1);
        assert!(error_of(v).contains("unknown field `extra`"));
    }

    #[test]
    fn invalid_examples_fail_at_their_path() {
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|v| v["rules"][1]["require"] = json!("nope")),
                "rules[1].require: unknown provider \"nope\"",
            ),
            (
                Box::new(|v| v["rules"][1]["require"] = json!({"any": []})),
                "rules[1].require.any: expected a non-empty array",
            ),
            (
                Box::new(|v| v["rules"][1]["require"] = json!({"all": ["corp", "x"]})),
                "rules[1].require.all[1]: unknown provider",
            ),
            (
                Box::new(|v| v["rules"][1]["require"] = json!({"some": ["corp"]})),
                "rules[1].require.some: unknown operator",
            ),
            (
                Box::new(|v| v["rules"][0]["allow"] = json!("everyone")),
                "rules[0].allow: \"everyone\" is not an allow mode",
            ),
            (
                Box::new(|v| v["rules"][0]["require"] = json!("corp")),
                "rules[0]: expected exactly one of",
            ),
            (
                Box::new(|v| v["rules"][0]["match"]["path"] = json!("/a//b")),
                "rules[0].match.path: \"/a//b\" is not a normalized path",
            ),
            (
                Box::new(|v| v["rules"][0]["match"]["host"] = json!("*foo")),
                "rules[0].match.host:",
            ),
            (
                Box::new(|v| v["rules"][0]["match"]["methods"] = json!(["GE T"])),
                "rules[0].match.methods[0]:",
            ),
            (
                Box::new(|v| v["rules"][0]["cors_preflight"] = json!("yes")),
                "rules[0].cors_preflight:",
            ),
            (
                Box::new(|v| v["providers"]["corp"]["jwt"]["algorithms"] = json!(["none"])),
                "providers.corp.jwt.algorithms[0]: unsupported algorithm \"none\"",
            ),
            (
                Box::new(|v| v["providers"]["corp"]["jwt"]["algorithms"] = json!(["RS256"])),
                "providers.corp.jwt.algorithms[0]: RS256 fits none",
            ),
            (
                Box::new(|v| {
                    v["providers"]["corp"]["jwt"]["headers"]["x-a"] = json!("${client.id}")
                }),
                "providers.corp.jwt.headers.x-a: ${client…} is not available",
            ),
            (
                Box::new(|v| {
                    v["providers"]["corp"]["jwt"]["headers"]["x-a"] = json!("${claims.sub")
                }),
                "providers.corp.jwt.headers.x-a: \"${\" without",
            ),
            (
                Box::new(|v| v["providers"]["corp"]["jwt"]["headers"]["Host"] = json!("x")),
                "providers.corp.jwt.headers.Host: host cannot be set",
            ),
            (
                Box::new(|v| {
                    v["providers"]["corp"]["jwt"]["from"] = json!([{"header": "x", "query": "y"}])
                }),
                "providers.corp.jwt.from[0]: expected exactly one",
            ),
            (
                Box::new(|v| v["providers"]["corp"]["jwt"]["keys"] = json!({"jwks": "{not json"})),
                "providers.corp.jwt.keys.jwks: expected a JWK Set as JSON text",
            ),
            (
                Box::new(|v| v["providers"]["corp"]["jwt"]["keys"] = json!({"jwks": {"keys": []}})),
                "providers.corp.jwt.keys: expected at least one key",
            ),
            (
                Box::new(|v| v["providers"]["corp"]["jwt"]["keys"] = json!({"pem": "junk"})),
                "providers.corp.jwt.keys.pem: no PEM block",
            ),
            (
                Box::new(|v| v["providers"]["corp"]["jwt"]["keys"] = json!({"remote": {}})),
                "providers.corp.jwt.keys.remote: missing field `cluster`",
            ),
            (
                Box::new(|v| {
                    v["providers"]["corp"]["jwt"]["keys"] =
                        json!({"remote": {"cluster": "c", "authority": "a", "path": "jwks"}})
                }),
                "providers.corp.jwt.keys.remote.path: \"jwks\" is not a request path",
            ),
            (
                Box::new(|v| {
                    v["providers"]["corp"]["jwt"]["keys"] =
                        json!({"remote": {"cluster": "", "authority": "a", "path": "/j"}})
                }),
                "providers.corp.jwt.keys.remote.cluster: expected the name of a cluster",
            ),
            (
                Box::new(
                    |v| v["providers"]["corp"]["jwt"]["keys"] = json!({"remote": {"cluster": "c", "authority": "a", "path": "/j", "timeout_ms": 5}}),
                ),
                "providers.corp.jwt.keys.remote.timeout_ms: 5 is out of range",
            ),
            (
                Box::new(
                    |v| v["providers"]["corp"]["jwt"]["keys"] = json!({"remote": {"cluster": "c", "authority": "a", "path": "/j", "min_refresh_s": 100, "max_refresh_s": 10}}),
                ),
                "providers.corp.jwt.keys.remote.max_refresh_s: 10 is below min_refresh_s",
            ),
            (
                Box::new(|v| {
                    v["providers"]["corp"]["jwt"]["keys"] = json!({"remote": {"cluster": "c", "authority": "a", "path": "/j", "ttl": 1}})
                }),
                "providers.corp.jwt.keys.remote.ttl: unknown field",
            ),
            (
                Box::new(|v| {
                    v["providers"]["corp"]["jwt"]["keys"] =
                        json!({"discovery": {"cluster": "c", "authority": "a"}});
                    v["providers"]["corp"]["jwt"]["issuer"] = json!("idp");
                }),
                "providers.corp.jwt.issuer: \"idp\" is not",
            ),
            (
                Box::new(|v| {
                    v["providers"]["corp"]["jwt"]["keys"] =
                        json!({"discovery": {"cluster": "c", "authority": "a"}});
                    v["providers"]["corp"]["jwt"]
                        .as_object_mut()
                        .unwrap()
                        .remove("issuer");
                }),
                "providers.corp.jwt.keys.discovery: discovery needs the provider's \"issuer\"",
            ),
            (
                Box::new(|v| {
                    v["providers"]["corp"]["jwt"]["keys"] =
                        json!({"discovery": {"cluster": "c", "authority": "a"}});
                    v["providers"]["corp"]["jwt"]["issuer"] =
                        json!("https://idp.example.com/realms/x");
                }),
                "",
            ),
            (
                Box::new(|v| {
                    v["providers"]["corp"]["jwt"]["keys"] =
                        json!({"remote": {"cluster": "c", "authority": "a", "path": "/j"}})
                }),
                "",
            ),
            (
                Box::new(|v| {
                    v["providers"]["corp"]["jwt"]["keys"] =
                        json!({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "ES256"}]}})
                }),
                "providers.corp.jwt.keys.jwks.keys[0].alg: ES256 cannot be used with a oct key",
            ),
            (
                Box::new(|v| {
                    v["providers"]["corp"]["hmac"] = json!({"clients": {"a": {"secret": "s"}}})
                }),
                "providers.corp:",
            ),
            (
                Box::new(|v| v["providers"]["bad name"] = v["providers"]["corp"].clone()),
                "providers.bad name: provider names",
            ),
            (
                Box::new(|v| v["strip_headers"] = json!(["authorization"])),
                "strip_headers[0]: authorization",
            ),
            (
                Box::new(|v| v["rules"] = json!([])),
                "rules: expected at least one rule",
            ),
            (Box::new(|v| v["rules"][0]["name"] = json!("a")), ""),
        ];
        for (edit, want) in cases {
            let mut v = base();
            edit(&mut v);
            match compile_value(&v) {
                Ok(_) => assert!(want.is_empty(), "expected {want:?}, compiled"),
                Err(e) => assert!(
                    !want.is_empty() && e.to_string().starts_with(want),
                    "got {e}, want {want}"
                ),
            }
        }
    }

    #[test]
    fn duplicate_rule_names_are_refused() {
        let mut v = base();
        v["rules"][0]["name"] = json!("a");
        v["rules"][1]["name"] = json!("a");
        assert!(error_of(v).starts_with("rules[1].name:"));
    }

    #[test]
    fn not_json_is_an_error_without_panic() {
        assert!(compile(b"").is_err());
        assert!(compile(b"[1]").is_err());
        assert!(compile(&[b'['; 100_000]).is_err());
    }
}
