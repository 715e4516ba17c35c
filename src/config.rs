//! The filter config: raw serde types (the JSON contract in DESIGN.md) → a compiled, immutable [`Policy`].
//!
//! All validation happens here, once, at configure time; every error names the JSON path and what was
//! expected (`providers.corp.jwt.keys.jwks.keys[0].crv: unsupported curve "P-521", expected P-256 or P-384`).
//! Unknown fields are refused everywhere except inside JWKs (RFC 7517 asks readers to ignore them).

use crate::crypto::{Alg, Secret, VerifyKey};
use crate::decision::Scheme;
use crate::extract::TokenSource;
use crate::jwk::{Jwk, JwkError};
use crate::jwks_cache::Timing;
use crate::jwt::JwtRules;
use crate::replay::RateLimit;
use crate::rules::{normalize_path, HostMatch, Match};
use crate::template::{Root, Template};
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

fn err<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, ConfigError> {
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawProvider {
    Jwt(RawJwt),
    Hmac(RawHmac),
    ApiKey(RawApiKey),
    Signet(RawSignet),
    HttpSignature(RawHttpSignature),
    Mtls(RawMtls),
}

/// `uri_san_prefix`: one prefix or a list (any of them).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMtls {
    #[serde(default)]
    uri_san_prefix: Option<OneOrMany>,
    #[serde(default)]
    dns_san: Option<Vec<String>>,
    #[serde(default)]
    subject_cn_pattern: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    upstream_headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpSignature {
    keys: BTreeMap<String, RawSigKey>,
    #[serde(default)]
    required_components: Option<Vec<String>>,
    #[serde(default)]
    max_age_s: Option<u32>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    max_body_bytes: Option<u32>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    upstream_headers: BTreeMap<String, String>,
    #[serde(default)]
    forward: bool,
}

/// One RFC 9421 key: its algorithm and exactly one of `pem`, `jwk`, `secret` (standard base64).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigKey {
    alg: String,
    #[serde(default)]
    pem: Option<String>,
    #[serde(default)]
    jwk: Option<Value>,
    #[serde(default)]
    secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignet {
    master_keys: BTreeMap<String, String>,
    #[serde(default)]
    purposes: Option<Vec<String>>,
    #[serde(default)]
    skew_s: Option<u32>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    upstream_headers: BTreeMap<String, String>,
    #[serde(default)]
    forward: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHmac {
    clients: BTreeMap<String, RawClient>,
    #[serde(default)]
    timestamp_window_s: Option<u32>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    max_body_bytes: Option<u32>,
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    upstream_headers: BTreeMap<String, String>,
    #[serde(default)]
    forward: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    clients: BTreeMap<String, RawClient>,
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    upstream_headers: BTreeMap<String, String>,
    #[serde(default)]
    forward: bool,
}

/// A client of an `hmac` (with `secret`) or `api_key` (with `key_sha256`) provider.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    key_sha256: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(default)]
    rules: Option<Vec<String>>,
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    requests: u32,
    window_s: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
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
    headers: BTreeMap<String, String>,
    #[serde(default)]
    upstream_headers: BTreeMap<String, String>,
    #[serde(default)]
    forward: bool,
}

impl RawProvider {
    fn upstream_headers(&self) -> &BTreeMap<String, String> {
        match self {
            RawProvider::Jwt(j) => &j.upstream_headers,
            RawProvider::Hmac(h) => &h.upstream_headers,
            RawProvider::ApiKey(a) => &a.upstream_headers,
            RawProvider::Signet(s) => &s.upstream_headers,
            RawProvider::HttpSignature(h) => &h.upstream_headers,
            RawProvider::Mtls(m) => &m.upstream_headers,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawJwtKeys {
    Jwks(Value),
    Pem(String),
    Remote(RawRemote),
    Discovery(RawDiscovery),
}

// serde's `flatten` cannot be combined with `deny_unknown_fields`, so the timing fields are spelled out in
// both source kinds; `timing()` reads them the same way.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    cluster: String,
    authority: String,
    path: String,
    #[serde(default)]
    timeout_ms: Option<u32>,
    #[serde(default)]
    min_refresh_s: Option<u32>,
    #[serde(default)]
    max_refresh_s: Option<u32>,
    #[serde(default)]
    max_stale_s: Option<u32>,
    #[serde(default)]
    startup_wait_ms: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    cluster: String,
    authority: String,
    #[serde(default)]
    timeout_ms: Option<u32>,
    #[serde(default)]
    min_refresh_s: Option<u32>,
    #[serde(default)]
    max_refresh_s: Option<u32>,
    #[serde(default)]
    max_stale_s: Option<u32>,
    #[serde(default)]
    startup_wait_ms: Option<u32>,
}

impl RawRemote {
    fn timing(&self, path: &str) -> Result<Timing, ConfigError> {
        compile_timing(
            path,
            self.timeout_ms,
            self.min_refresh_s,
            self.max_refresh_s,
            self.max_stale_s,
            self.startup_wait_ms,
        )
    }
}

impl RawDiscovery {
    fn timing(&self, path: &str) -> Result<Timing, ConfigError> {
        compile_timing(
            path,
            self.timeout_ms,
            self.min_refresh_s,
            self.max_refresh_s,
            self.max_stale_s,
            self.startup_wait_ms,
        )
    }
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

/// A named provider.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Lower-case header name → template, written on success.
    pub headers: Vec<(String, Template)>,
    /// Lower-case header name → value, written for the upstream after the provider is satisfied.
    pub upstream: Vec<(String, UpstreamValue)>,
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

/// A compiled `mtls` provider: satisfied by a client certificate Envoy verified on the connection.
#[derive(Debug)]
pub struct MtlsProvider {
    /// The first URI SAN must start with one of these; empty: no constraint.
    pub uri_san_prefixes: Vec<String>,
    /// The first DNS SAN must match one of these; empty: no constraint.
    pub dns_sans: Vec<HostMatch>,
    /// The subject CN must match; `None`: no constraint.
    pub cn_pattern: Option<crate::cert::Glob>,
    /// The CN is needed (by the pattern or a header template): a subject without one, or with several, is
    /// refused.
    pub needs_cn: bool,
}

/// What a provider verifies.
#[derive(Debug)]
pub enum ProviderKind {
    Jwt(Box<JwtProvider>),
    Hmac(HmacProvider),
    ApiKey(ApiKeyProvider),
    Signet(SignetProvider),
    HttpSignature(HttpSignatureProvider),
    Mtls(MtlsProvider),
}

/// A compiled `http_signature` provider (RFC 9421).
#[derive(Debug)]
pub struct HttpSignatureProvider {
    /// `keyid` → key, in keyid order.
    pub keys: Vec<(String, crate::httpsig::SigKey)>,
    pub required_components: Vec<String>,
    pub max_age_s: i64,
    pub tag: Option<String>,
    pub max_body_bytes: usize,
    pub forward: bool,
}

/// A compiled `signet` provider.
#[derive(Debug)]
pub struct SignetProvider {
    /// `(name, Ed25519 public key)`, in name order.
    pub masters: Vec<(String, [u8; 32])>,
    /// Purposes accepted; empty: any.
    pub purposes: Vec<String>,
    pub skew_s: i64,
    pub forward: bool,
}

impl ProviderKind {
    /// The `WWW-Authenticate` scheme of this kind; `None` for mTLS, which HTTP cannot challenge for.
    pub fn scheme(&self) -> Option<Scheme> {
        match self {
            ProviderKind::Jwt(_) => Some(Scheme::Bearer),
            ProviderKind::Hmac(_) => Some(Scheme::Hmac),
            ProviderKind::ApiKey(_) => Some(Scheme::ApiKey),
            ProviderKind::Signet(_) => Some(Scheme::Signet),
            ProviderKind::HttpSignature(_) => Some(Scheme::Signature),
            ProviderKind::Mtls(_) => None,
        }
    }

    /// The config key of this kind (`jwt`, `hmac`, `api_key`), for JSON paths.
    pub fn label(&self) -> &'static str {
        match self {
            ProviderKind::Jwt(_) => "jwt",
            ProviderKind::Hmac(_) => "hmac",
            ProviderKind::ApiKey(_) => "api_key",
            ProviderKind::Signet(_) => "signet",
            ProviderKind::HttpSignature(_) => "http_signature",
            ProviderKind::Mtls(_) => "mtls",
        }
    }

    /// The clients of a signed-request or API-key provider.
    pub fn clients(&self) -> &[Client] {
        match self {
            ProviderKind::Jwt(_)
            | ProviderKind::Signet(_)
            | ProviderKind::HttpSignature(_)
            | ProviderKind::Mtls(_) => &[],
            ProviderKind::Hmac(h) => &h.clients,
            ProviderKind::ApiKey(a) => &a.clients,
        }
    }
}

/// Whether a client may authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientStatus {
    Active,
    /// Temporarily not allowed (403 `client_suspended`).
    Suspended,
    /// Permanently not allowed (403 `client_revoked`).
    Revoked,
}

/// A known client of an `hmac` or `api_key` provider.
#[derive(Debug)]
pub struct Client {
    pub id: String,
    /// `name`, or the id.
    pub name: String,
    /// The HMAC secret, or the SHA-256 digest of the API key.
    pub credential: Secret,
    pub status: ClientStatus,
    /// Upper-case methods the client may use; empty: any.
    pub methods: Vec<String>,
    /// Names of the rules the client may use; empty: any.
    pub rules: Vec<String>,
    /// The client's own limit, else the provider's.
    pub rate_limit: Option<RateLimit>,
}

/// How the body enters a gatekeeper signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// The raw body is signed: the request waits for the whole body (up to the limit).
    Signed,
    /// BODY is empty (a gatekeeper behind nginx `auth_request` never sees the body).
    Empty,
}

/// A compiled `hmac` provider.
#[derive(Debug)]
pub struct HmacProvider {
    pub clients: Vec<Client>,
    pub timestamp_window_s: i64,
    pub body: BodyMode,
    pub max_body_bytes: usize,
    pub forward: bool,
}

/// A compiled `api_key` provider.
#[derive(Debug)]
pub struct ApiKeyProvider {
    pub clients: Vec<Client>,
    pub from: Vec<TokenSource>,
    pub forward: bool,
}

impl Policy {
    /// The largest body a rule may need buffered (0: no provider signs bodies).
    pub fn max_body_bytes(&self) -> usize {
        self.providers
            .iter()
            .filter_map(|p| match &p.kind {
                ProviderKind::Hmac(h) if h.body == BodyMode::Signed => Some(h.max_body_bytes),
                ProviderKind::HttpSignature(s) => Some(s.max_body_bytes),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}

/// Where a `jwt` provider's keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// Decoded from the config.
    Static(Vec<Jwk>),
    /// Fetched by the filter ([`crate::jwks_cache`]).
    Remote(RemoteSource),
}

/// A key set the filter fetches through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSource {
    /// The Envoy cluster the request goes to.
    pub cluster: String,
    /// `:authority` of the first request.
    pub authority: String,
    /// What is fetched first.
    pub target: RemoteTarget,
    pub timing: Timing,
    /// Shared-data key prefix: provider name plus a digest of the source, so a changed source never reads
    /// another source's keys.
    pub store_base: String,
}

/// The first document of a remote key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteTarget {
    /// A JWK Set at `path`.
    Jwks { path: String },
    /// An OpenID discovery document at `path`, whose `issuer` must equal `issuer`; then its `jwks_uri`.
    Discovery { path: String, issuer: String },
}

impl RemoteSource {
    /// How many requests one refresh takes (discovery, then JWKS).
    pub fn steps(&self) -> u32 {
        match self.target {
            RemoteTarget::Jwks { .. } => 1,
            RemoteTarget::Discovery { .. } => 2,
        }
    }

    /// `<cluster>/<authority><path>` for log lines.
    pub fn describe(&self, authority: &str, path: &str) -> String {
        format!("{}/{authority}{path}", self.cluster)
    }
}

/// A compiled `jwt` provider.
#[derive(Debug)]
pub struct JwtProvider {
    pub rules: JwtRules,
    pub keys: KeySource,
    pub from: Vec<TokenSource>,
    /// Keep the token on the request to the upstream.
    pub forward: bool,
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
    Provider(usize),
    Any(Vec<Requirement>),
    All(Vec<Requirement>),
}

impl Requirement {
    /// Provider indexes in the tree, in order.
    pub fn providers(&self) -> Vec<usize> {
        match self {
            Requirement::Provider(i) => vec![*i],
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
const ENV_PLACES: [&[&str]; 9] = [
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

fn header_name(path: &str, name: &str) -> Result<String, ConfigError> {
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
    let mut providers = Vec::new();
    for (name, p) in &raw.providers {
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
        let mut provider = compile_provider(&path, name, p)?;
        provider.upstream = compile_upstream(
            &format!("{path}.{}.upstream_headers", provider.kind.label()),
            p.upstream_headers(),
        )?;
        providers.push(provider);
    }

    let mut strip = Vec::new();
    for (i, h) in raw.strip_headers.iter().enumerate() {
        let n = header_name(&format!("strip_headers[{i}]"), h)?;
        if n == "authorization" {
            return err(
                format!("strip_headers[{i}]"),
                "authorization carries credentials and cannot be stripped before verification; providers remove it after",
            );
        }
        strip.push(n);
    }
    for p in &providers {
        strip.extend(p.headers.iter().map(|(n, _)| n.clone()));
    }
    strip.sort();
    strip.dedup();
    // A credential header that is stripped first could never be read: say so now, not as 401s later.
    for p in &providers {
        let ProviderKind::Jwt(j) = &p.kind else {
            continue;
        };
        for (i, src) in j.from.iter().enumerate() {
            if let TokenSource::Header { name, .. } = src {
                if strip.contains(name) {
                    return err(
                        format!("providers.{}.jwt.from[{i}].header", p.name),
                        format!("{name} is stripped from every request (strip_headers or a provider's headers), so no token could be read from it"),
                    );
                }
            }
        }
    }

    let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    let mut rules = Vec::new();
    let mut seen_names = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        let rule = compile_rule(&format!("rules[{i}]"), i, r, &names)?;
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
    for p in &providers {
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
    let needs_peer = providers
        .iter()
        .any(|p| matches!(p.kind, ProviderKind::Mtls(_)));
    Ok(Policy {
        providers,
        rules,
        strip,
        needs_peer,
    })
}

fn compile_provider(path: &str, name: &str, raw: &RawProvider) -> Result<Provider, ConfigError> {
    match raw {
        RawProvider::Jwt(j) => {
            let path = format!("{path}.jwt");
            let keys = compile_key_source(&format!("{path}.keys"), name, j)?;
            let static_keys: &[Jwk] = match &keys {
                KeySource::Static(k) => k,
                KeySource::Remote(_) => &[],
            };
            let fits = |alg: Alg| match &keys {
                KeySource::Static(k) => k.iter().any(|key| key.accepts(alg)),
                // Remote sets are not known yet: any asymmetric algorithm may come; HMAC only when listed.
                KeySource::Remote(_) => !alg.is_hmac(),
            };
            let algorithms = match &j.algorithms {
                Some(list) => {
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
                    algs
                }
                None => Alg::ALL.into_iter().filter(|a| fits(*a)).collect(),
            };
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
            let headers = compile_headers(&format!("{path}.headers"), &j.headers, &[Root::Claims])?;
            Ok(Provider {
                name: name.to_owned(),
                kind: ProviderKind::Jwt(Box::new(JwtProvider {
                    rules: JwtRules {
                        issuer: j.issuer.clone(),
                        audiences: j.audiences.clone(),
                        algorithms,
                        require_exp: j.require_exp,
                        clock_skew_s: i64::from(j.clock_skew_s.unwrap_or(60)),
                        max_lifetime_s: j.max_lifetime_s.map(i64::from),
                    },
                    keys,
                    from,
                    forward: j.forward,
                })),
                headers,
                upstream: Vec::new(),
            })
        }
        RawProvider::Hmac(h) => {
            let path = format!("{path}.hmac");
            let default_limit = compile_rate_limit(&format!("{path}.rate_limit"), h.rate_limit)?;
            let clients = compile_clients(&path, &h.clients, default_limit, ClientKind::Hmac)?;
            let body = match h.body.as_deref() {
                None | Some("signed") => BodyMode::Signed,
                Some("empty") => BodyMode::Empty,
                Some(other) => {
                    return err(
                        format!("{path}.body"),
                        format!("{other:?} is not a body mode, expected \"signed\" or \"empty\""),
                    )
                }
            };
            let window = h.timestamp_window_s.unwrap_or(300);
            if !(1..=86_400).contains(&window) {
                return err(
                    format!("{path}.timestamp_window_s"),
                    format!("{window} is out of range, expected 1 to 86400"),
                );
            }
            let max_body = h.max_body_bytes.unwrap_or(1 << 20);
            if max_body > 64 << 20 {
                return err(
                    format!("{path}.max_body_bytes"),
                    "expected at most 67108864 (the body is buffered in the proxy)",
                );
            }
            let headers = compile_headers(&format!("{path}.headers"), &h.headers, &[Root::Client])?;
            Ok(Provider {
                name: name.to_owned(),
                kind: ProviderKind::Hmac(HmacProvider {
                    clients,
                    timestamp_window_s: i64::from(window),
                    body,
                    max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
                    forward: h.forward,
                }),
                headers,
                upstream: Vec::new(),
            })
        }
        RawProvider::HttpSignature(hs) => {
            let path = format!("{path}.http_signature");
            if hs.keys.is_empty() {
                return err(format!("{path}.keys"), "expected at least one key");
            }
            let mut keys = Vec::new();
            for (keyid, k) in &hs.keys {
                keys.push((
                    keyid.clone(),
                    compile_sig_key(&format!("{path}.keys.{keyid}"), k)?,
                ));
            }
            let required = match &hs.required_components {
                None => vec![
                    "@method".to_owned(),
                    "@authority".to_owned(),
                    "@path".to_owned(),
                ],
                Some(list) => {
                    for (i, c) in list.iter().enumerate() {
                        if !crate::httpsig::is_component_identifier(c) {
                            return err(
                                format!("{path}.required_components[{i}]"),
                                format!("{c:?} is not a component identifier, expected e.g. \"@method\", \"content-digest\" or \"\\\"@query-param\\\";name=\\\"id\\\"\""),
                            );
                        }
                    }
                    list.clone()
                }
            };
            let max_body = hs.max_body_bytes.unwrap_or(1 << 20);
            if max_body > 64 << 20 {
                return err(
                    format!("{path}.max_body_bytes"),
                    "expected at most 67108864 (the body is buffered in the proxy)",
                );
            }
            let headers = compile_headers(&format!("{path}.headers"), &hs.headers, &[Root::Key])?;
            Ok(Provider {
                name: name.to_owned(),
                kind: ProviderKind::HttpSignature(HttpSignatureProvider {
                    keys,
                    required_components: required,
                    max_age_s: i64::from(hs.max_age_s.unwrap_or(300)),
                    tag: hs.tag.clone(),
                    max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
                    forward: hs.forward,
                }),
                headers,
                upstream: Vec::new(),
            })
        }
        RawProvider::Signet(sg) => {
            let path = format!("{path}.signet");
            if sg.master_keys.is_empty() {
                return err(
                    format!("{path}.master_keys"),
                    "expected at least one master key",
                );
            }
            let mut masters = Vec::new();
            for (kname, hex) in &sg.master_keys {
                let key = crate::b64::hex32(hex.trim())
                    .filter(|k| crate::crypto::Ed25519Key::from_bytes(k).is_some())
                    .ok_or_else(|| ConfigError {
                        path: format!("{path}.master_keys.{kname}"),
                        message: "expected 64 hex digits of an Ed25519 public key".into(),
                    })?;
                masters.push((kname.clone(), key));
            }
            let skew = sg.skew_s.unwrap_or(30);
            if !(1..=3600).contains(&skew) {
                return err(
                    format!("{path}.skew_s"),
                    format!("{skew} is out of range, expected 1 to 3600"),
                );
            }
            let headers =
                compile_headers(&format!("{path}.headers"), &sg.headers, &[Root::Signet])?;
            Ok(Provider {
                name: name.to_owned(),
                kind: ProviderKind::Signet(SignetProvider {
                    masters,
                    purposes: sg.purposes.clone().unwrap_or_default(),
                    skew_s: i64::from(skew),
                    forward: sg.forward,
                }),
                headers,
                upstream: Vec::new(),
            })
        }
        RawProvider::Mtls(m) => {
            let path = format!("{path}.mtls");
            let uri_san_prefixes = match &m.uri_san_prefix {
                None => Vec::new(),
                Some(OneOrMany::One(p)) => vec![p.clone()],
                Some(OneOrMany::Many(list)) => list.clone(),
            };
            if uri_san_prefixes.iter().any(String::is_empty)
                || m.uri_san_prefix.is_some() && uri_san_prefixes.is_empty()
            {
                return err(
                    format!("{path}.uri_san_prefix"),
                    "expected a non-empty prefix (e.g. \"spiffe://corp/ns/\") or a non-empty list of them",
                );
            }
            let mut dns_sans = Vec::new();
            for (i, d) in m.dns_san.iter().flatten().enumerate() {
                match HostMatch::parse(d) {
                    Some(HostMatch::Any) | None => {
                        return err(
                            format!("{path}.dns_san[{i}]"),
                            format!("{d:?} is not a DNS name pattern, expected a name or *.suffix"),
                        )
                    }
                    Some(h) => dns_sans.push(h),
                }
            }
            if m.dns_san.as_ref().is_some_and(Vec::is_empty) {
                return err(
                    format!("{path}.dns_san"),
                    "expected at least one DNS name, or leave it out",
                );
            }
            let cn_pattern = match m.subject_cn_pattern.as_deref() {
                None => None,
                Some("") => {
                    return err(
                        format!("{path}.subject_cn_pattern"),
                        "expected a pattern (\"*\" matches any characters, e.g. \"*.svc.corp\"), or leave it out",
                    )
                }
                Some(p) => Some(crate::cert::Glob::new(p)),
            };
            let headers = compile_headers(&format!("{path}.headers"), &m.headers, &[Root::Cert])?;
            for (name, t) in &headers {
                for v in t.vars().filter(|v| v.root == Root::Cert) {
                    let field = v.path.first().map(String::as_str).unwrap_or("");
                    if v.path.len() != 1
                        || !["cn", "subject", "uri_san", "dns_san", "sha256"].contains(&field)
                    {
                        return err(
                            format!("{path}.headers.{name}"),
                            "unknown certificate field, expected ${cert.cn}, ${cert.subject}, ${cert.uri_san}, ${cert.dns_san} or ${cert.sha256}",
                        );
                    }
                }
            }
            let needs_cn = cn_pattern.is_some()
                || headers
                    .iter()
                    .flat_map(|(_, t)| t.vars())
                    .any(|v| v.root == Root::Cert && v.path.first().is_some_and(|f| f == "cn"));
            Ok(Provider {
                name: name.to_owned(),
                kind: ProviderKind::Mtls(MtlsProvider {
                    uri_san_prefixes,
                    dns_sans,
                    cn_pattern,
                    needs_cn,
                }),
                headers,
                upstream: Vec::new(),
            })
        }
        RawProvider::ApiKey(a) => {
            let path = format!("{path}.api_key");
            let default_limit = compile_rate_limit(&format!("{path}.rate_limit"), a.rate_limit)?;
            let clients = compile_clients(&path, &a.clients, default_limit, ClientKind::ApiKey)?;
            let headers = compile_headers(&format!("{path}.headers"), &a.headers, &[Root::Client])?;
            Ok(Provider {
                name: name.to_owned(),
                kind: ProviderKind::ApiKey(ApiKeyProvider {
                    clients,
                    from: vec![
                        TokenSource::bearer(),
                        TokenSource::Header {
                            name: "authorization".into(),
                            prefix: "ApiKey ".into(),
                        },
                        TokenSource::Query("api_key".into()),
                    ],
                    forward: a.forward,
                }),
                headers,
                upstream: Vec::new(),
            })
        }
    }
}

fn compile_sig_key(path: &str, k: &RawSigKey) -> Result<crate::httpsig::SigKey, ConfigError> {
    use crate::httpsig::{SigAlg, SigKey};
    let Some(alg) = SigAlg::from_name(&k.alg) else {
        return err(
            format!("{path}.alg"),
            format!(
                "{:?} is not supported, expected hmac-sha256, ed25519, ecdsa-p256-sha256, rsa-pss-sha512 or rsa-v1_5-sha256",
                k.alg
            ),
        );
    };
    let key = match (&k.pem, &k.jwk, &k.secret) {
        (Some(pem), None, None) => {
            let mut keys = VerifyKey::from_pem(pem).map_err(|e| ConfigError {
                path: format!("{path}.pem"),
                message: e.to_string(),
            })?;
            if keys.len() != 1 {
                return err(format!("{path}.pem"), "expected exactly one public key");
            }
            keys.pop().ok_or_else(|| ConfigError {
                path: format!("{path}.pem"),
                message: "expected a key".into(),
            })?
        }
        (None, Some(jwk), None) => {
            let j = Jwk::from_value(jwk).map_err(|e| jwk_error_at(&format!("{path}.jwk"), &e))?;
            if j.alg.is_some_and(|a| a != alg.jws()) {
                return err(
                    format!("{path}.jwk.alg"),
                    format!("the JWK's alg does not match {:?}", k.alg),
                );
            }
            j.key
        }
        (None, None, Some(secret)) => {
            let bytes = crate::b64::std_decode(secret.trim()).ok_or_else(|| ConfigError {
                path: format!("{path}.secret"),
                message: "expected standard base64 (with padding)".into(),
            })?;
            VerifyKey::secret(bytes).map_err(|e| ConfigError {
                path: format!("{path}.secret"),
                message: e.to_string(),
            })?
        }
        _ => {
            return err(
                path,
                "expected exactly one of \"pem\", \"jwk\" or \"secret\"",
            )
        }
    };
    let kind = key.kind();
    SigKey::new(alg, key).ok_or_else(|| ConfigError {
        path: format!("{path}.alg"),
        message: format!("{} cannot be used with a {kind} key", k.alg),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    Hmac,
    ApiKey,
}

fn compile_rate_limit(
    path: &str,
    raw: Option<RawRateLimit>,
) -> Result<Option<RateLimit>, ConfigError> {
    let Some(r) = raw else {
        return Ok(None);
    };
    if r.requests == 0 {
        return err(
            format!("{path}.requests"),
            "expected at least 1 (remove the client to refuse it)",
        );
    }
    if !(1..=86_400).contains(&r.window_s) {
        return err(
            format!("{path}.window_s"),
            format!("{} is out of range, expected 1 to 86400", r.window_s),
        );
    }
    Ok(Some(RateLimit {
        requests: r.requests,
        window_s: r.window_s,
    }))
}

fn compile_clients(
    path: &str,
    raw: &BTreeMap<String, RawClient>,
    default_limit: Option<RateLimit>,
    kind: ClientKind,
) -> Result<Vec<Client>, ConfigError> {
    if raw.is_empty() {
        return err(format!("{path}.clients"), "expected at least one client");
    }
    let mut out = Vec::new();
    for (id, c) in raw {
        let cpath = format!("{path}.clients.{id}");
        let printable = id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if id.is_empty() || id.len() > 128 || !printable {
            return err(
                cpath,
                "client ids are 1 to 128 printable ASCII characters without quotes or backslashes",
            );
        }
        let credential = match (kind, &c.secret, &c.key_sha256) {
            (ClientKind::Hmac, Some(secret), None) if !secret.is_empty() => {
                Secret::new(secret.as_bytes().to_vec())
            }
            (ClientKind::Hmac, _, _) => {
                return err(cpath, "expected \"secret\" (the shared secret, not empty) and no \"key_sha256\"")
            }
            (ClientKind::ApiKey, None, Some(hex)) => match crate::b64::hex32(hex.trim()) {
                Some(d) => Secret::new(d.to_vec()),
                None => {
                    return err(
                        format!("{cpath}.key_sha256"),
                        "expected 64 hex digits: the SHA-256 of the key (printf %s \"$KEY\" | sha256sum)",
                    )
                }
            },
            (ClientKind::ApiKey, _, _) => {
                return err(
                    cpath,
                    "expected \"key_sha256\" (the SHA-256 of the key, never the key) and no \"secret\"",
                )
            }
        };
        let status = match c.status.as_deref() {
            None | Some("active") => ClientStatus::Active,
            Some("suspended") => ClientStatus::Suspended,
            Some("revoked") => ClientStatus::Revoked,
            Some(other) => {
                return err(
                    format!("{cpath}.status"),
                    format!(
                    "{other:?} is not a status, expected \"active\", \"suspended\" or \"revoked\""
                ),
                )
            }
        };
        let mut methods = Vec::new();
        for (i, m) in c.methods.iter().flatten().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                return err(
                    format!("{cpath}.methods[{i}]"),
                    format!("{m:?} is not an HTTP method"),
                );
            }
            methods.push(m.to_ascii_uppercase());
        }
        out.push(Client {
            id: id.clone(),
            name: c.name.clone().unwrap_or_else(|| id.clone()),
            credential,
            status,
            methods,
            rules: c.rules.clone().unwrap_or_default(),
            rate_limit: compile_rate_limit(&format!("{cpath}.rate_limit"), c.rate_limit)?
                .or(default_limit),
        });
    }
    Ok(out)
}

fn jwk_error_at(path: &str, e: &JwkError) -> ConfigError {
    // JwkError renders as "member: problem" or as a whole-key problem starting with "expected".
    let text = e.to_string();
    match e {
        JwkError::NotAnObject | JwkError::EncryptionKey => ConfigError {
            path: path.to_owned(),
            message: text,
        },
        _ => match text.split_once(": ") {
            Some((member, msg)) => ConfigError {
                path: format!("{path}.{member}"),
                message: msg.to_owned(),
            },
            None => ConfigError {
                path: path.to_owned(),
                message: text,
            },
        },
    }
}

fn compile_timing(
    path: &str,
    timeout_ms: Option<u32>,
    min_refresh_s: Option<u32>,
    max_refresh_s: Option<u32>,
    max_stale_s: Option<u32>,
    startup_wait_ms: Option<u32>,
) -> Result<Timing, ConfigError> {
    let d = Timing::default();
    let t = Timing {
        timeout_ms: timeout_ms.unwrap_or(d.timeout_ms),
        min_refresh_s: min_refresh_s.map(i64::from).unwrap_or(d.min_refresh_s),
        max_refresh_s: max_refresh_s.map(i64::from).unwrap_or(d.max_refresh_s),
        max_stale_s: max_stale_s.map(i64::from).unwrap_or(d.max_stale_s),
        startup_wait_ms: startup_wait_ms.unwrap_or(d.startup_wait_ms),
    };
    if !(100..=60_000).contains(&t.timeout_ms) {
        return err(
            format!("{path}.timeout_ms"),
            format!("{} is out of range, expected 100 to 60000", t.timeout_ms),
        );
    }
    if t.min_refresh_s < 1 {
        return err(format!("{path}.min_refresh_s"), "expected at least 1");
    }
    if t.max_refresh_s < t.min_refresh_s {
        return err(
            format!("{path}.max_refresh_s"),
            format!(
                "{} is below min_refresh_s ({}), expected max_refresh_s >= min_refresh_s",
                t.max_refresh_s, t.min_refresh_s
            ),
        );
    }
    if t.startup_wait_ms > 60_000 {
        return err(
            format!("{path}.startup_wait_ms"),
            "expected at most 60000 (a request waits this long)",
        );
    }
    Ok(t)
}

fn non_empty(path: String, v: &str, what: &str) -> Result<String, ConfigError> {
    if v.is_empty() || v.chars().any(|c| c.is_control() || c == ' ') {
        return err(path, format!("expected {what}"));
    }
    Ok(v.to_owned())
}

fn store_base(provider: &str, parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("trustgate:jwks:v1:{provider}:{hex}")
}

fn compile_key_source(path: &str, provider: &str, j: &RawJwt) -> Result<KeySource, ConfigError> {
    let remote =
        |cluster: &str, authority: &str, target: RemoteTarget, timing: Timing, sub: &str| {
            let cluster = non_empty(
                format!("{path}.{sub}.cluster"),
                cluster,
                "the name of a cluster in the Envoy config",
            )?;
            let authority = non_empty(
                format!("{path}.{sub}.authority"),
                authority,
                "a host name, e.g. login.example.com",
            )?;
            let (kind, target_path) = match &target {
                RemoteTarget::Jwks { path } => ("jwks", path.as_str()),
                RemoteTarget::Discovery { path, .. } => ("discovery", path.as_str()),
            };
            let store_base = store_base(provider, &[kind, &cluster, &authority, target_path]);
            Ok(KeySource::Remote(RemoteSource {
                cluster,
                authority,
                target,
                timing,
                store_base,
            }))
        };
    let keys = match &j.keys {
        RawJwtKeys::Remote(r) => {
            let rpath = format!("{path}.remote");
            if !r.path.starts_with('/') || r.path.chars().any(|c| c.is_control() || c == ' ') {
                return err(
                    format!("{rpath}.path"),
                    format!(
                        "{:?} is not a request path, expected e.g. /.well-known/jwks.json",
                        r.path
                    ),
                );
            }
            let timing = r.timing(&rpath)?;
            return remote(
                &r.cluster,
                &r.authority,
                RemoteTarget::Jwks {
                    path: r.path.clone(),
                },
                timing,
                "remote",
            );
        }
        RawJwtKeys::Discovery(d) => {
            let dpath = format!("{path}.discovery");
            let Some(issuer) = j.issuer.as_deref().filter(|i| !i.is_empty()) else {
                return err(dpath, "discovery needs the provider's \"issuer\" (the document is at <issuer>/.well-known/openid-configuration)");
            };
            let Some(doc_path) = crate::jwks_cache::discovery_path(issuer) else {
                return err(
                    path.rsplit_once(".keys")
                        .map(|(p, _)| format!("{p}.issuer"))
                        .unwrap_or_default(),
                    format!(
                        "{issuer:?} is not an http(s) URL without query, which discovery needs"
                    ),
                );
            };
            let timing = d.timing(&dpath)?;
            let target = RemoteTarget::Discovery {
                path: doc_path,
                issuer: issuer.to_owned(),
            };
            return remote(&d.cluster, &d.authority, target, timing, "discovery");
        }
        RawJwtKeys::Jwks(v) => {
            let path = format!("{path}.jwks");
            let owned;
            let doc = match v {
                Value::String(s) => {
                    owned = serde_json::from_str::<Value>(s).map_err(|e| ConfigError {
                        path: path.clone(),
                        message: format!("expected a JWK Set as JSON text: {e}"),
                    })?;
                    &owned
                }
                Value::Object(_) => v,
                _ => {
                    return err(
                        path,
                        "expected a JWK Set object {\"keys\": [...]} or its JSON text",
                    )
                }
            };
            let Some(list) = doc.get("keys").and_then(Value::as_array) else {
                return err(path, "expected a JWK Set object {\"keys\": [...]}");
            };
            let mut keys = Vec::new();
            for (i, k) in list.iter().enumerate() {
                let kpath = format!("{path}.keys[{i}]");
                keys.push(Jwk::from_value(k).map_err(|e| jwk_error_at(&kpath, &e))?);
            }
            keys
        }
        RawJwtKeys::Pem(text) => VerifyKey::from_pem(text)
            .map_err(|e| ConfigError {
                path: format!("{path}.pem"),
                message: e.to_string(),
            })?
            .into_iter()
            .map(|key| Jwk {
                kid: None,
                alg: None,
                key,
            })
            .collect(),
    };
    if keys.is_empty() {
        return err(path, "expected at least one key");
    }
    Ok(KeySource::Static(keys))
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

fn compile_headers(
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

fn compile_upstream(
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

fn compile_requirement(path: &str, v: &Value, names: &[&str]) -> Result<Requirement, ConfigError> {
    match v {
        Value::String(name) => match names.iter().position(|n| n == name) {
            Some(i) => Ok(Requirement::Provider(i)),
            None => err(
                path,
                format!(
                    "unknown provider {name:?}, expected one of: {}",
                    names.join(", ")
                ),
            ),
        },
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
                .map(|(i, it)| compile_requirement(&format!("{path}.{op}[{i}]"), it, names))
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
            "expected a provider name, {\"any\": [...]} or {\"all\": [...]}",
        ),
    }
}

fn compile_rule(
    path: &str,
    index: usize,
    r: &RawRule,
    names: &[&str],
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
        (Some(req), None) => {
            Action::Require(compile_requirement(&format!("{path}.require"), req, names)?)
        }
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn unsupported_curve_names_the_path() {
        let mut v = base();
        v["providers"]["corp"]["jwt"]["keys"] =
            json!({"jwks": {"keys": [{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}]}});
        assert_eq!(
            error_of(v),
            "providers.corp.jwt.keys.jwks.keys[0].crv: unsupported curve \"P-521\", expected P-256 or P-384"
        );
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
