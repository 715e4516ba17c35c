//! The `hmac` provider: gatekeeper-signed requests (`Authorization: HMAC client_id=…`, wire format in
//! [`crate::formats::gatekeeper`]) from a table of clients with shared secrets; timestamp window, signed body, replay
//! (`client_id:nonce`) and rate limits; templates read `${client.…}`.

use super::clients::{self, ClientKind, Credential, RawClient, RawRateLimit};
use super::{declared_length, find_one, remember, Cx, Fail, Grant, Provider};
use crate::decision::Reason;
use crate::formats::gatekeeper;
use crate::policy::config::{compile_headers, err, ConfigError};
use crate::policy::template::{Root, Template};
use crate::providers::extract::TokenSource;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHmac {
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
    pub(super) upstream_headers: BTreeMap<String, String>,
    #[serde(default)]
    forward: bool,
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
    pub clients: Vec<clients::Client>,
    /// `Authorization: HMAC …`, the one place the credential is read from.
    from: [TokenSource; 1],
    pub timestamp_window_s: i64,
    pub body: BodyMode,
    pub max_body_bytes: usize,
    pub forward: bool,
}

/// Compiles `providers.<name>.hmac` (at `path`).
pub(super) fn compile(
    path: &str,
    h: &RawHmac,
) -> Result<(HmacProvider, Vec<(String, Template)>), ConfigError> {
    let default_limit = clients::compile_rate_limit(&format!("{path}.rate_limit"), h.rate_limit)?;
    let clients = clients::compile_clients(path, &h.clients, default_limit, ClientKind::Hmac)?;
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
    let max_body_bytes = super::body_limit(path, h.max_body_bytes)?;
    let headers = compile_headers(&format!("{path}.headers"), &h.headers, &[Root::Client])?;
    let provider = HmacProvider {
        clients,
        from: [TokenSource::Header {
            name: "authorization".into(),
            prefix: "HMAC ".into(),
        }],
        timestamp_window_s: i64::from(window),
        body,
        max_body_bytes,
        forward: h.forward,
    };
    Ok((provider, headers))
}

impl HmacProvider {
    /// Verifies a gatekeeper-signed request.
    pub(super) fn check(&self, p: &Provider, cx: &Cx<'_>) -> Result<Grant, Fail> {
        let found = find_one(&self.from, cx.req)?;
        let cred = gatekeeper::parse(&found.value).map_err(|_| Reason::Malformed)?;
        let client = self
            .clients
            .iter()
            .find(|c| c.id == cred.client_id)
            .ok_or(Reason::UnknownClient)?;
        // Cheap checks first, as the reference does: the window, then the body, then the MAC.
        if cred.timestamp.abs_diff(cx.now) > self.timestamp_window_s.unsigned_abs() {
            return Err(Reason::StaleTimestamp.into());
        }
        let body = self.signed_body(cx)?;
        let Credential::Hmac(key) = &client.credential else {
            return Err(Reason::UnknownClient.into()); // an hmac table holds HMAC keys only
        };
        if !gatekeeper::verify(&cred, key, cx.req.method, cx.req.path, body) {
            return Err(Reason::BadSignature.into());
        }
        clients::permit(client, cx)?;
        // Only verified requests are remembered, so forged ones cannot fill the store.
        let expires = cred
            .timestamp
            .saturating_add(self.timestamp_window_s)
            .saturating_add(1);
        let id = format!("{}:{}", cred.client_id, cred.nonce);
        remember(cx, &p.name, &id, expires)?;
        clients::rate(client, &p.name, cx)?;
        clients::finish(p, client, cx, found.remove, self.forward)
    }

    /// The BODY of the signed message: empty, or the request's body within the limit.
    fn signed_body<'a>(&self, cx: &Cx<'a>) -> Result<&'a [u8], Fail> {
        match self.body {
            BodyMode::Empty => Ok(&[]),
            BodyMode::Signed => {
                // A declared length over the limit is refused before a byte is buffered.
                if declared_length(cx.req).is_some_and(|n| n > self.max_body_bytes) {
                    return Err(Reason::BodyTooLarge.into());
                }
                let b = cx.req.body.ok_or(Reason::BodyRequired)?;
                if b.len() > self.max_body_bytes {
                    return Err(Reason::BodyTooLarge.into());
                }
                Ok(b)
            }
        }
    }
}
