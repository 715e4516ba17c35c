//! Provider kinds: one module per kind, each owning its raw config, its compile step, its check of one request
//! and the facts its header templates read. [`ProviderKind`] is all the engine and the policy know of a kind.
//!
//! The interface is an enum, dispatched by `match`, not a trait object. The config is an externally tagged
//! enum already (`{"jwt": {…}}`), so the compiled kind mirrors it; a new kind is a new variant, and the
//! compiler lists every `match` that must learn it. A trait would need `dyn` plus downcasts for what the host
//! asks of particular kinds (remote key sets, replay slots), for no speed: measured with
//! `examples/decide_cost` ("decide same token", a cache-hit decision, native release build, 20 alternating
//! runs on a shared 2-core machine), the 300-line matches took 433 ns at best (median 845), this enum 440 ns
//! (median 815): the same, within noise. The .wasm went from 1,303,251 to 1,305,638 bytes (with the inline
//! key-set warnings).
//!
//! Shared by the kinds: [`Cx`] (what a check may read: the request, `now`, the remote keys through
//! [`KeyLookup`], the replay store, the per-VM [`Caches`]), [`Fail`], [`render_headers`], [`Named`] (the
//! `${provider}` and `${rule}` facts), [`extract`] (credential sources) and [`clients`] (the client table of
//! `hmac` and `api_key`). The `jwt` kind keeps its key sources in [`jwt_keys`] and its sender-constrained tokens
//! (DPoP, certificate-bound, `require_binding`) in [`jwt_binding`].

pub mod api_key;
pub mod clients;
pub mod extract;
pub mod hmac;
pub mod http_signature;
pub mod jwt;
pub mod jwt_binding;
pub mod jwt_keys;
pub mod mtls;
pub mod signet;

use crate::decision::{HeaderOp, Reason, Scheme};
use crate::formats::jwk::{Jwk, JwkError};
use crate::formats::signet::BindingCache;
use crate::policy::assertion::Assertion;
use crate::policy::config::{compile_upstream, err, ConfigError, UpstreamValue};
use crate::policy::template::{Facts, RenderError, Root, Template};
use crate::request::RequestView;
use crate::state::assertion_cache::AssertionCache;
use crate::state::backend::StateBackend;
use crate::state::replay::Replay;
use crate::state::token_cache::TokenCache;
use extract::{Found, TokenSource};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::rc::Rc;

/// One provider of the config: exactly one kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) enum RawProvider {
    Jwt(Box<jwt::RawJwt>),
    Hmac(hmac::RawHmac),
    ApiKey(api_key::RawApiKey),
    Signet(signet::RawSignet),
    HttpSignature(http_signature::RawHttpSignature),
    Mtls(mtls::RawMtls),
}

/// A named, compiled provider.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Lower-case header name → template, written on success.
    pub headers: Vec<(String, Template)>,
    /// Lower-case header name → value, written for the upstream after the provider is satisfied.
    pub upstream: Vec<(String, UpstreamValue)>,
}

/// What a provider verifies.
#[derive(Debug)]
pub enum ProviderKind {
    Jwt(Box<jwt::JwtProvider>),
    Hmac(hmac::HmacProvider),
    ApiKey(api_key::ApiKeyProvider),
    Signet(signet::SignetProvider),
    HttpSignature(http_signature::HttpSignatureProvider),
    Mtls(mtls::MtlsProvider),
}

impl RawProvider {
    /// Compiles the provider `name` found at `path` (`providers.<name>`); what the host should log once (a
    /// skipped key) goes to `warnings`.
    pub(crate) fn compile(
        &self,
        path: &str,
        name: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Provider, ConfigError> {
        let (kind, headers, upstream) = match self {
            RawProvider::Jwt(j) => {
                let (k, h) = jwt::compile(&format!("{path}.jwt"), name, j, warnings)?;
                (ProviderKind::Jwt(Box::new(k)), h, &j.upstream_headers)
            }
            RawProvider::Hmac(h) => {
                let (k, t) = hmac::compile(&format!("{path}.hmac"), h)?;
                (ProviderKind::Hmac(k), t, &h.upstream_headers)
            }
            RawProvider::ApiKey(a) => {
                let (k, t) = api_key::compile(&format!("{path}.api_key"), a)?;
                (ProviderKind::ApiKey(k), t, &a.upstream_headers)
            }
            RawProvider::Signet(s) => {
                let (k, t) = signet::compile(&format!("{path}.signet"), s)?;
                (ProviderKind::Signet(k), t, &s.upstream_headers)
            }
            RawProvider::HttpSignature(s) => {
                let (k, t) = http_signature::compile(&format!("{path}.http_signature"), s)?;
                (ProviderKind::HttpSignature(k), t, &s.upstream_headers)
            }
            RawProvider::Mtls(m) => {
                let (k, t) = mtls::compile(&format!("{path}.mtls"), m)?;
                (ProviderKind::Mtls(k), t, &m.upstream_headers)
            }
        };
        let upstream = compile_upstream(
            &format!("{path}.{}.upstream_headers", kind.label()),
            upstream,
        )?;
        Ok(Provider {
            name: name.to_owned(),
            kind,
            headers,
            upstream,
        })
    }
}

impl Provider {
    /// Verifies this provider's credential on one request (`index`: the provider's place in the policy);
    /// on success, the header operations it asks for.
    pub fn check(&self, index: usize, cx: &Cx<'_>) -> Result<Grant, Fail> {
        match &self.kind {
            ProviderKind::Jwt(j) => j.check(self, index, cx),
            ProviderKind::Hmac(h) => h.check(self, cx),
            ProviderKind::ApiKey(a) => a.check(self, cx),
            ProviderKind::Signet(s) => s.check(self, cx),
            ProviderKind::HttpSignature(s) => s.check(self, cx),
            ProviderKind::Mtls(m) => m.check(self, cx),
        }
    }
}

impl ProviderKind {
    /// The `WWW-Authenticate` schemes of this kind: none for mTLS, which HTTP cannot challenge for; `Bearer`
    /// and `DPoP` for a `jwt` provider that accepts DPoP (only `DPoP` when it requires it).
    pub fn schemes(&self) -> Vec<Scheme> {
        match self {
            ProviderKind::Jwt(j) => match (&j.binding.dpop, j.binding.require) {
                (None, _) => vec![Scheme::Bearer],
                (Some(_), Some(jwt_binding::Require::Dpop)) => vec![Scheme::DPoP],
                (Some(_), _) => vec![Scheme::Bearer, Scheme::DPoP],
            },
            kind => kind.scheme().into_iter().collect(),
        }
    }

    /// The one `WWW-Authenticate` scheme of the kinds other than `jwt`.
    fn scheme(&self) -> Option<Scheme> {
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

    /// True when a verified credential of this kind has claims that a requirement's claim conditions can
    /// read ([`crate::policy::claims`]): `jwt` only.
    pub fn has_claims(&self) -> bool {
        matches!(self, ProviderKind::Jwt(_))
    }

    /// The clients of a signed-request or API-key provider.
    pub fn clients(&self) -> &[clients::Client] {
        match self {
            ProviderKind::Hmac(h) => &h.clients,
            ProviderKind::ApiKey(a) => &a.clients,
            ProviderKind::Jwt(_)
            | ProviderKind::Signet(_)
            | ProviderKind::HttpSignature(_)
            | ProviderKind::Mtls(_) => &[],
        }
    }

    /// The largest body this provider may need buffered; `None` when it never reads the body.
    pub fn max_body_bytes(&self) -> Option<usize> {
        match self {
            ProviderKind::Hmac(h) if h.body == hmac::BodyMode::Signed => Some(h.max_body_bytes),
            ProviderKind::HttpSignature(s) => Some(s.max_body_bytes),
            _ => None,
        }
    }

    /// The key set the host fetches for this provider, if any.
    pub fn remote_keys(&self) -> Option<&jwt_keys::RemoteSource> {
        match self {
            ProviderKind::Jwt(j) => match &j.keys {
                jwt_keys::KeySource::Remote(src) => Some(src),
                jwt_keys::KeySource::Static(_) => None,
            },
            _ => None,
        }
    }

    /// True when the provider remembers nonces in the replay store (the host prepares its slots): DPoP proof
    /// `jti`s of a `jwt` provider that accepts DPoP.
    pub fn uses_replay(&self) -> bool {
        match self {
            ProviderKind::Hmac(_) | ProviderKind::Signet(_) | ProviderKind::HttpSignature(_) => {
                true
            }
            ProviderKind::Jwt(j) => j.binding.dpop.is_some(),
            ProviderKind::ApiKey(_) | ProviderKind::Mtls(_) => false,
        }
    }

    /// True when the provider reads the client certificate on every request, so the host reads it before
    /// deciding: `mtls`. A `jwt` provider needs it only for a certificate-bound token (`cnf["x5t#S256"]`,
    /// RFC 8705): its check answers [`Reason::PeerRequired`] and the host reads the certificate then and
    /// decides again, so other tokens do not pay the property reads (measured: README, "Certificate-bound
    /// tokens").
    pub fn needs_peer(&self) -> bool {
        matches!(self, ProviderKind::Mtls(_))
    }

    /// True when the provider reads the request's scheme: a `jwt` provider that accepts DPoP without
    /// `dpop.origin` (the proof's `htu`). The host then sets `:scheme` from the connection.
    pub fn needs_scheme(&self) -> bool {
        matches!(self, ProviderKind::Jwt(j) if j.binding.dpop.as_ref().is_some_and(|d| d.origin.is_none()))
    }

    /// The `algs` of this provider's `DPoP` challenge, when it accepts DPoP.
    pub fn dpop_algs(&self) -> Option<Vec<crate::formats::crypto::Alg>> {
        match self {
            ProviderKind::Jwt(j) => j.binding.dpop_algs(),
            _ => None,
        }
    }

    /// Refuses a provider that reads its credential from a header on the strip list (`path`:
    /// `providers.<name>`): it could never be read.
    pub(crate) fn check_strip(&self, path: &str, strip: &[String]) -> Result<(), ConfigError> {
        match self {
            ProviderKind::Jwt(j) => j.check_strip(path, strip),
            _ => Ok(()),
        }
    }
}

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
    /// Signed identity assertions, reused while fresh.
    pub assertions: AssertionCache,
}

/// What every provider check of one request may read.
pub struct Cx<'a> {
    /// The name of the matching rule.
    pub rule: &'a str,
    pub req: &'a RequestView<'a>,
    /// Unix seconds.
    pub now: i64,
    pub keys: &'a dyn KeyLookup,
    /// Replay nonces and rate-limit counters (process-wide, or fleet-wide with `state.redis`).
    pub state: &'a dyn StateBackend,
    pub caches: &'a Caches,
    /// The assertion whose claims a satisfied provider maps, when the rule issues one.
    pub assertion: Option<&'a Assertion>,
}

/// What a satisfied provider gives: header operations, and the assertion claims its facts map.
#[derive(Debug, Default)]
pub struct Grant {
    pub ops: Vec<HeaderOp>,
    /// Claim name → value ([`Assertion::render_claims`]); empty when the rule issues no assertion.
    pub claims: Vec<(String, Value)>,
    /// Who presented the credential (part of the assertion reuse key); empty without an assertion.
    pub caller: String,
    /// The verified token (`jwt`), whose claims the requirement's claim conditions read.
    pub token: Option<Rc<crate::formats::jwt::VerifiedJwt>>,
}

/// Why one provider refused: the reason, and for 429 when to retry.
#[derive(Debug, Clone, Copy)]
pub struct Fail {
    pub reason: Reason,
    pub retry_after: Option<i64>,
}

impl From<Reason> for Fail {
    fn from(reason: Reason) -> Fail {
        Fail {
            reason,
            retry_after: None,
        }
    }
}

/// The one credential the `sources` find on the request: 401 `missing` without one, `multiple_credentials`
/// with several.
fn find_one<'r>(sources: &[TokenSource], req: &'r RequestView<'_>) -> Result<Found<'r>, Fail> {
    Ok(extract::find(sources, req)
        .map_err(|_| Reason::MultipleCredentials)?
        .ok_or(Reason::Missing)?)
}

/// Remembers a verified credential's `id` in the replay store of provider `scope` until `expires`.
fn remember(cx: &Cx<'_>, scope: &str, id: &str, expires: i64) -> Result<(), Fail> {
    match cx.state.record(scope, id, expires, cx.now) {
        Replay::Fresh => Ok(()),
        Replay::Replayed => Err(Reason::Replayed.into()),
        Replay::Pending => Err(Reason::StateRequired.into()),
        Replay::Full | Replay::Unavailable => Err(Reason::ReplayStoreUnavailable.into()),
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

/// What a satisfied provider gives: remove the credential (unless `forward`), then its headers; and the
/// assertion's claims over the same facts, with `caller` (who presented the credential: a client or key id,
/// a token's subject, a certificate digest) so that an assertion is never reused for another caller.
fn grant(
    p: &Provider,
    cx: &Cx<'_>,
    caller: &str,
    facts: &dyn Facts,
    remove: impl IntoIterator<Item = HeaderOp>,
    forward: bool,
) -> Result<Grant, Fail> {
    let mut ops = Vec::new();
    if !forward {
        ops.extend(remove);
    }
    render_headers(p, facts, &mut ops)?;
    let (claims, caller) = match cx.assertion {
        Some(a) => (a.render_claims(facts)?, caller.to_owned()),
        None => (Vec::new(), String::new()),
    };
    Ok(Grant {
        ops,
        claims,
        caller,
        token: None,
    })
}

/// Renders the provider's header templates over `facts` into `ops`.
pub fn render_headers(
    p: &Provider,
    facts: &dyn Facts,
    ops: &mut Vec<HeaderOp>,
) -> Result<(), Reason> {
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

/// The facts every kind offers: `${provider}` and `${rule}`.
pub struct Named<'a> {
    pub provider: &'a str,
    pub rule: &'a str,
}

impl Named<'_> {
    /// `${provider}` or `${rule}`; `None` for any other root.
    pub fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'static, Value>> {
        match (root, path) {
            (Root::Provider, []) => Some(text(self.provider)),
            (Root::Rule, []) => Some(text(self.rule)),
            _ => None,
        }
    }
}

/// A string fact.
fn text(s: &str) -> Cow<'static, Value> {
    Cow::Owned(Value::String(s.to_owned()))
}

/// A string fact that is absent when empty.
fn field(s: &str) -> Option<Cow<'static, Value>> {
    (!s.is_empty()).then(|| text(s))
}

/// Places a [`JwkError`] at the key's JSON `path`: `path.member` for a member's problem.
pub(crate) fn jwk_error_at(path: &str, e: &JwkError) -> ConfigError {
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

/// Refuses a `max_body_bytes` over 64 MiB.
fn body_limit(path: &str, raw: Option<u32>) -> Result<usize, ConfigError> {
    let max_body = raw.unwrap_or(1 << 20);
    if max_body > 64 << 20 {
        return err(
            format!("{path}.max_body_bytes"),
            "expected at most 67108864 (the body is buffered in the proxy)",
        );
    }
    Ok(usize::try_from(max_body).unwrap_or(usize::MAX))
}
