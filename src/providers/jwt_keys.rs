//! Where a `jwt` provider's keys come from: an inline JWK Set or PEM (decoded at configure time), or a remote
//! JWK Set / OpenID discovery document the host fetches ([`crate::state::jwks_cache`]).

use crate::formats::crypto::VerifyKey;
use crate::formats::jwk::Jwk;
use crate::policy::config::{err, ConfigError};
use crate::state::jwks_cache::Timing;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) enum RawJwtKeys {
    Jwks(Value),
    Pem(String),
    Remote(RawRemote),
    Discovery(RawDiscovery),
}

// serde's `flatten` cannot be combined with `deny_unknown_fields`, so the timing fields are spelled out in
// both source kinds; `timing()` reads them the same way.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRemote {
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
pub(crate) struct RawDiscovery {
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

/// Where a `jwt` provider's keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// Decoded from the config.
    Static(Vec<Jwk>),
    /// Fetched by the filter ([`crate::state::jwks_cache`]).
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

/// Compiles `providers.<provider>.jwt.keys` (at `path`); `issuer` is the provider's, which discovery needs.
/// Inline keys that cannot verify a JWS are skipped with a line in `warnings`.
pub(super) fn compile(
    path: &str,
    provider: &str,
    raw: &RawJwtKeys,
    issuer: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<KeySource, ConfigError> {
    let keys = match raw {
        RawJwtKeys::Remote(r) => return compile_remote(&format!("{path}.remote"), provider, r),
        RawJwtKeys::Discovery(d) => return compile_discovery(path, provider, d, issuer),
        RawJwtKeys::Jwks(v) => compile_jwks(&format!("{path}.jwks"), v, warnings)?,
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

/// `keys.remote` (at `path`): a JWK Set fetched through `cluster`.
fn compile_remote(path: &str, provider: &str, r: &RawRemote) -> Result<KeySource, ConfigError> {
    if !r.path.starts_with('/') || r.path.chars().any(|c| c.is_control() || c == ' ') {
        return err(
            format!("{path}.path"),
            format!(
                "{:?} is not a request path, expected e.g. /.well-known/jwks.json",
                r.path
            ),
        );
    }
    let target = RemoteTarget::Jwks {
        path: r.path.clone(),
    };
    remote(
        path,
        provider,
        &r.cluster,
        &r.authority,
        target,
        r.timing(path)?,
    )
}

/// `keys.discovery` (`path`: the `keys` path): `<issuer>/.well-known/openid-configuration`, then its
/// `jwks_uri`.
fn compile_discovery(
    path: &str,
    provider: &str,
    d: &RawDiscovery,
    issuer: Option<&str>,
) -> Result<KeySource, ConfigError> {
    let dpath = format!("{path}.discovery");
    let Some(issuer) = issuer.filter(|i| !i.is_empty()) else {
        return err(dpath, "discovery needs the provider's \"issuer\" (the document is at <issuer>/.well-known/openid-configuration)");
    };
    let Some(doc_path) = crate::state::jwks_cache::discovery_path(issuer) else {
        return err(
            path.rsplit_once(".keys")
                .map(|(p, _)| format!("{p}.issuer"))
                .unwrap_or_default(),
            format!("{issuer:?} is not an http(s) URL without query, which discovery needs"),
        );
    };
    let timing = d.timing(&dpath)?;
    let target = RemoteTarget::Discovery {
        path: doc_path,
        issuer: issuer.to_owned(),
    };
    remote(&dpath, provider, &d.cluster, &d.authority, target, timing)
}

/// A remote source at `path` (`….keys.remote` or `….keys.discovery`).
fn remote(
    path: &str,
    provider: &str,
    cluster: &str,
    authority: &str,
    target: RemoteTarget,
    timing: Timing,
) -> Result<KeySource, ConfigError> {
    let cluster = non_empty(
        format!("{path}.cluster"),
        cluster,
        "the name of a cluster in the Envoy config",
    )?;
    let authority = non_empty(
        format!("{path}.authority"),
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
}

/// `keys.jwks` (at `path`): a JWK Set object or its JSON text, as an identity provider publishes it. A key
/// this filter cannot verify a JWS with (an encryption key, an unsupported type, curve or algorithm) is
/// skipped with a warning naming its kid and why, the way a fetched set skips it; a malformed key that could
/// verify is refused at its member's path; so is a set left with no key.
fn compile_jwks(
    path: &str,
    v: &Value,
    warnings: &mut Vec<String>,
) -> Result<Vec<Jwk>, ConfigError> {
    let owned;
    let doc = match v {
        Value::String(s) => {
            owned = serde_json::from_str::<Value>(s).map_err(|e| ConfigError {
                path: path.to_owned(),
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
    // `<member path> (kid "…"): why`, for each key that cannot verify a JWS.
    let mut skipped = Vec::new();
    for (i, k) in list.iter().enumerate() {
        match Jwk::from_value(k) {
            Ok(key) => keys.push(key),
            Err(e) if e.cannot_verify_jws() => {
                // The kid is the key's public name; nothing else of the key is repeated.
                let kid = match k.get("kid").and_then(Value::as_str) {
                    Some(kid) => format!(" (kid {kid:?})"),
                    None => String::new(),
                };
                let at = super::jwk_error_at(&format!("{path}.keys[{i}]"), &e);
                skipped.push(format!("{}{kid}: {}", at.path, at.message));
            }
            Err(e) => return Err(super::jwk_error_at(&format!("{path}.keys[{i}]"), &e)),
        }
    }
    if keys.is_empty() && !skipped.is_empty() {
        return err(
            path,
            format!(
                "no key can verify a JWS, expected at least one signature key; skipped {}",
                skipped.join("; ")
            ),
        );
    }
    warnings.extend(
        skipped
            .iter()
            .map(|s| format!("key skipped, it cannot verify a JWS: {s}")),
    );
    Ok(keys)
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
