//! The `api_key` provider: a key in `Authorization: Bearer` / `ApiKey` or the `api_key` query parameter,
//! compared in constant time with the SHA-256 digests of the client table; rate limits; templates read
//! `${client.…}`.

use super::clients::{self, ClientKind, Credential, RawClient, RawRateLimit};
use super::{find_one, Cx, Fail, Grant, Provider};
use crate::decision::Reason;
use crate::policy::config::{compile_headers, ConfigError};
use crate::policy::template::{Root, Template};
use crate::providers::extract::TokenSource;
use serde::Deserialize;
use sha2::Digest as _;
use std::collections::BTreeMap;
use subtle::ConstantTimeEq as _;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApiKey {
    clients: BTreeMap<String, RawClient>,
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) upstream_headers: BTreeMap<String, String>,
    #[serde(default)]
    forward: bool,
}

/// A compiled `api_key` provider.
#[derive(Debug)]
pub struct ApiKeyProvider {
    pub clients: Vec<clients::Client>,
    pub from: Vec<TokenSource>,
    pub forward: bool,
}

/// Compiles `providers.<name>.api_key` (at `path`).
pub(super) fn compile(
    path: &str,
    a: &RawApiKey,
) -> Result<(ApiKeyProvider, Vec<(String, Template)>), ConfigError> {
    let default_limit = clients::compile_rate_limit(&format!("{path}.rate_limit"), a.rate_limit)?;
    let clients = clients::compile_clients(path, &a.clients, default_limit, ClientKind::ApiKey)?;
    let headers = compile_headers(&format!("{path}.headers"), &a.headers, &[Root::Client])?;
    let provider = ApiKeyProvider {
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
    };
    Ok((provider, headers))
}

impl ApiKeyProvider {
    /// Finds the key and the client whose digest it has.
    pub(super) fn check(&self, p: &Provider, cx: &Cx<'_>) -> Result<Grant, Fail> {
        let found = find_one(&self.from, cx.req)?;
        let digest = sha2::Sha256::digest(found.value.as_bytes());
        // Every digest is compared, in constant time, whatever matched.
        let mut matched = None;
        for c in &self.clients {
            let Credential::KeyDigest(d) = &c.credential else {
                continue;
            };
            if bool::from(digest[..].ct_eq(d.expose())) {
                matched = Some(c);
            }
        }
        let client = matched.ok_or(Reason::InvalidKey)?;
        clients::permit(client, cx)?;
        clients::rate(client, &p.name, cx)?;
        clients::finish(p, client, cx, found.remove, self.forward)
    }
}
