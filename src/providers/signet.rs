//! The `signet` provider: a `Signet-Proof` header (wire format and Ed25519 checks in [`crate::formats::signet`]) made by
//! an ephemeral key a configured master key bound; purposes, replay; templates read `${signet.…}`.

use super::{find_one, grant, remember, text, Cx, Fail, Grant, Named, Provider};
use crate::decision::Reason;
use crate::formats::signet::{self as format, SignetError};
use crate::policy::config::{compile_headers, err, ConfigError};
use crate::policy::template::{Facts, Root, Template};
use crate::providers::extract::TokenSource;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSignet {
    master_keys: BTreeMap<String, String>,
    #[serde(default)]
    purposes: Option<Vec<String>>,
    #[serde(default)]
    skew_s: Option<u32>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) upstream_headers: BTreeMap<String, String>,
    #[serde(default)]
    forward: bool,
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

/// Compiles `providers.<name>.signet` (at `path`).
pub(super) fn compile(
    path: &str,
    sg: &RawSignet,
) -> Result<(SignetProvider, Vec<(String, Template)>), ConfigError> {
    if sg.master_keys.is_empty() {
        return err(
            format!("{path}.master_keys"),
            "expected at least one master key",
        );
    }
    let mut masters = Vec::new();
    for (kname, hex) in &sg.master_keys {
        let key = crate::formats::b64::hex32(hex.trim())
            .filter(|k| crate::formats::crypto::Ed25519Key::from_bytes(k).is_some())
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
    let headers = compile_headers(&format!("{path}.headers"), &sg.headers, &[Root::Signet])?;
    let provider = SignetProvider {
        masters,
        purposes: sg.purposes.clone().unwrap_or_default(),
        skew_s: i64::from(skew),
        forward: sg.forward,
    };
    Ok((provider, headers))
}

impl SignetProvider {
    /// Verifies the proof, its purpose, and that it was not seen before.
    pub(super) fn check(&self, p: &Provider, cx: &Cx<'_>) -> Result<Grant, Fail> {
        let sources = [TokenSource::Header {
            name: "signet-proof".into(),
            prefix: String::new(),
        }];
        let found = find_one(&sources, cx.req)?;
        let proof = format::parse(&found.value).map_err(|_| Reason::Malformed)?;
        let keys: Vec<[u8; 32]> = self.masters.iter().map(|(_, k)| *k).collect();
        let master = format::verify(
            &proof,
            &keys,
            cx.req.method,
            cx.req.path,
            cx.now,
            self.skew_s,
            &cx.caches.signet,
        )
        .map_err(|e| match e {
            SignetError::Malformed => Reason::Malformed,
            SignetError::Expired => Reason::Expired,
            SignetError::StaleTimestamp => Reason::StaleTimestamp,
            SignetError::BadSignature => Reason::BadSignature,
        })?;
        if !self.purposes.is_empty() && !self.purposes.contains(&proof.purpose) {
            return Err(Reason::PurposeNotAllowed.into());
        }
        // Kept while the proof could still pass the ts window (never past exp): a later copy is refused
        // by the window anyway, so the store holds no more than it must.
        let until = proof
            .exp
            .min(proof.ts.saturating_add(self.skew_s))
            .saturating_add(1);
        remember(cx, &p.name, &format::replay_key(&proof), until)?;
        let facts = SignetFacts {
            master: self.masters.get(master).map_or("", |(n, _)| n.as_str()),
            jti: proof.jti.iter().map(|b| format!("{b:02x}")).collect(),
            purpose: &proof.purpose,
            named: Named {
                provider: &p.name,
                rule: cx.rule,
            },
        };
        let caller = format!("master:{}", facts.master);
        grant(p, cx, &caller, &facts, [found.remove], self.forward)
    }
}

/// `${signet.master}`, `${signet.jti}` (hex), `${signet.purpose}`.
struct SignetFacts<'a> {
    master: &'a str,
    jti: String,
    purpose: &'a str,
    named: Named<'a>,
}

impl Facts for SignetFacts<'_> {
    fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'_, Value>> {
        match (root, path) {
            (Root::Signet, [field]) if field == "master" => Some(text(self.master)),
            (Root::Signet, [field]) if field == "jti" => Some(text(&self.jti)),
            (Root::Signet, [field]) if field == "purpose" => Some(text(self.purpose)),
            _ => self.named.lookup(root, path),
        }
    }
}
