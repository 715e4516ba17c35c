//! The client table of the `hmac` and `api_key` providers: each client's credential, status, allowed methods
//! and rules, rate limit; the checks a verified client still has to pass; `${client.id}`, `${client.name}`.

use super::{grant, text, Cx, Fail, Grant, Named, Provider};
use crate::decision::{HeaderOp, Reason};
use crate::formats::crypto::{HmacSha256Key, Secret};
use crate::policy::config::{err, ConfigError};
use crate::policy::template::{Facts, Root};
use crate::state::replay::{Rate, RateLimit};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A client of an `hmac` (with `secret`) or `api_key` (with `key_sha256`) provider.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClient {
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
pub(crate) struct RawRateLimit {
    requests: u32,
    window_s: u32,
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
    pub credential: Credential,
    pub status: ClientStatus,
    /// Upper-case methods the client may use; empty: any.
    pub methods: Vec<String>,
    /// Names of the rules the client may use; empty: any.
    pub rules: Vec<String>,
    /// The client's own limit, else the provider's.
    pub rate_limit: Option<RateLimit>,
}

/// What a client proves itself with.
#[derive(Debug)]
pub enum Credential {
    /// `hmac`: the shared secret, keyed once.
    Hmac(HmacSha256Key),
    /// `api_key`: the SHA-256 digest of the key.
    KeyDigest(Secret),
}

/// Which credential a client table holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientKind {
    Hmac,
    ApiKey,
}

pub(super) fn compile_rate_limit(
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

/// Compiles `<path>.clients`; `default_limit` is the provider's `rate_limit`.
pub(super) fn compile_clients(
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
        let credential = compile_credential(&cpath, kind, c)?;
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

/// The client's shared secret (`hmac`) or key digest (`api_key`).
fn compile_credential(
    cpath: &str,
    kind: ClientKind,
    c: &RawClient,
) -> Result<Credential, ConfigError> {
    match (kind, &c.secret, &c.key_sha256) {
        (ClientKind::Hmac, Some(secret), None) if !secret.is_empty() => {
            match HmacSha256Key::new(secret.as_bytes()) {
                Some(key) => Ok(Credential::Hmac(key)),
                None => err(format!("{cpath}.secret"), "expected a usable HMAC key"),
            }
        }
        (ClientKind::Hmac, _, _) => err(
            cpath,
            "expected \"secret\" (the shared secret, not empty) and no \"key_sha256\"",
        ),
        (ClientKind::ApiKey, None, Some(hex)) => match crate::formats::b64::hex32(hex.trim()) {
            Some(d) => Ok(Credential::KeyDigest(Secret::new(d.to_vec()))),
            None => err(
                format!("{cpath}.key_sha256"),
                "expected 64 hex digits: the SHA-256 of the key (printf %s \"$KEY\" | sha256sum)",
            ),
        },
        (ClientKind::ApiKey, _, _) => err(
            cpath,
            "expected \"key_sha256\" (the SHA-256 of the key, never the key) and no \"secret\"",
        ),
    }
}

/// Status, method and rule permissions of a verified client.
pub(super) fn permit(client: &Client, cx: &Cx<'_>) -> Result<(), Fail> {
    match client.status {
        ClientStatus::Active => {}
        ClientStatus::Suspended => return Err(Reason::ClientSuspended.into()),
        ClientStatus::Revoked => return Err(Reason::ClientRevoked.into()),
    }
    if !client.methods.is_empty() && !client.methods.iter().any(|m| m == cx.req.method) {
        return Err(Reason::MethodNotAllowed.into());
    }
    if !client.rules.is_empty() && !client.rules.iter().any(|r| r == cx.rule) {
        return Err(Reason::RuleNotAllowed.into());
    }
    Ok(())
}

/// Counts the request against the client's rate limit, if it has one.
pub(super) fn rate(client: &Client, scope: &str, cx: &Cx<'_>) -> Result<(), Fail> {
    let Some(limit) = client.rate_limit else {
        return Ok(());
    };
    match cx.state.count(scope, &client.id, limit, cx.now) {
        Rate::Allowed => Ok(()),
        Rate::Limited(after) => Err(Fail {
            reason: Reason::RateLimited,
            retry_after: Some(after),
        }),
        Rate::Unavailable => Err(Reason::ReplayStoreUnavailable.into()),
        Rate::Pending => Err(Reason::StateRequired.into()),
    }
}

/// The operations of a verified, permitted client: remove its credential, write its headers.
pub(super) fn finish(
    p: &Provider,
    client: &Client,
    cx: &Cx<'_>,
    remove: HeaderOp,
    forward: bool,
) -> Result<Grant, Fail> {
    let facts = ClientFacts {
        client,
        named: Named {
            provider: &p.name,
            rule: cx.rule,
        },
    };
    let caller = format!("client:{}", client.id);
    grant(p, cx, &caller, &facts, [remove], forward)
}

/// `${client.id}`, `${client.name}`.
struct ClientFacts<'a> {
    client: &'a Client,
    named: Named<'a>,
}

impl Facts for ClientFacts<'_> {
    fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'_, Value>> {
        match (root, path) {
            (Root::Client, [field]) if field == "id" => Some(text(&self.client.id)),
            (Root::Client, [field]) if field == "name" => Some(text(&self.client.name)),
            _ => self.named.lookup(root, path),
        }
    }
}
