//! The `mtls` provider: a client certificate Envoy verified on the connection ([`crate::formats::cert`]), constrained by
//! URI SAN prefix, DNS SAN pattern and subject CN pattern; templates read `${cert.…}`.

use super::{field, grant, Cx, Fail, Grant, Named, Provider};
use crate::decision::{HeaderOp, Reason};
use crate::formats::cert::{subject_cn, Glob, PeerCert};
use crate::policy::config::{compile_headers, err, ConfigError};
use crate::policy::rules::HostMatch;
use crate::policy::template::{Facts, Root, Template};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMtls {
    #[serde(default)]
    uri_san_prefix: Option<OneOrMany>,
    #[serde(default)]
    dns_san: Option<Vec<String>>,
    #[serde(default)]
    subject_cn_pattern: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) upstream_headers: BTreeMap<String, String>,
}

/// `uri_san_prefix`: one prefix or a list (any of them).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A compiled `mtls` provider: satisfied by a client certificate Envoy verified on the connection.
#[derive(Debug)]
pub struct MtlsProvider {
    /// The first URI SAN must start with one of these; empty: no constraint.
    pub uri_san_prefixes: Vec<String>,
    /// The first DNS SAN must match one of these; empty: no constraint.
    pub dns_sans: Vec<HostMatch>,
    /// The subject CN must match; `None`: no constraint.
    pub cn_pattern: Option<Glob>,
    /// The CN is needed (by the pattern or a header template): a subject without one, or with several, is
    /// refused.
    pub needs_cn: bool,
}

/// The certificate fields templates may read.
const CERT_FIELDS: [&str; 5] = ["cn", "subject", "uri_san", "dns_san", "sha256"];

/// Compiles `providers.<name>.mtls` (at `path`).
pub(super) fn compile(
    path: &str,
    m: &RawMtls,
) -> Result<(MtlsProvider, Vec<(String, Template)>), ConfigError> {
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
    let dns_sans = compile_dns_sans(path, m.dns_san.as_deref())?;
    let cn_pattern = match m.subject_cn_pattern.as_deref() {
        None => None,
        Some("") => {
            return err(
                format!("{path}.subject_cn_pattern"),
                "expected a pattern (\"*\" matches any characters, e.g. \"*.svc.corp\"), or leave it out",
            )
        }
        Some(p) => Some(Glob::new(p)),
    };
    let headers = compile_headers(&format!("{path}.headers"), &m.headers, &[Root::Cert])?;
    for (name, t) in &headers {
        for v in t.vars().filter(|v| v.root == Root::Cert) {
            let field = v.path.first().map(String::as_str).unwrap_or("");
            if v.path.len() != 1 || !CERT_FIELDS.contains(&field) {
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
    let provider = MtlsProvider {
        uri_san_prefixes,
        dns_sans,
        cn_pattern,
        needs_cn,
    };
    Ok((provider, headers))
}

fn compile_dns_sans(path: &str, raw: Option<&[String]>) -> Result<Vec<HostMatch>, ConfigError> {
    let mut dns_sans = Vec::new();
    for (i, d) in raw.iter().copied().flatten().enumerate() {
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
    if raw.is_some_and(<[String]>::is_empty) {
        return err(
            format!("{path}.dns_san"),
            "expected at least one DNS name, or leave it out",
        );
    }
    Ok(dns_sans)
}

impl MtlsProvider {
    /// Checks the connection's verified client certificate against the constraints.
    pub(super) fn check(&self, p: &Provider, cx: &Cx<'_>) -> Result<Grant, Fail> {
        let cert = cx.req.peer.ok_or(Reason::Missing)?;
        let cn = if self.needs_cn {
            match subject_cn(&cert.subject) {
                Ok(Some(cn)) => Some(cn),
                // The pattern or a header needs the CN: no CN, several, or a subject that does not parse.
                Ok(None) | Err(_) => return Err(Reason::CertNotAllowed.into()),
            }
        } else {
            None
        };
        let uri_ok = self.uri_san_prefixes.is_empty()
            || (!cert.uri_san.is_empty()
                && self
                    .uri_san_prefixes
                    .iter()
                    .any(|p| cert.uri_san.starts_with(p.as_str())));
        let dns_ok = self.dns_sans.is_empty()
            || (!cert.dns_san.is_empty() && self.dns_sans.iter().any(|d| d.matches(&cert.dns_san)));
        let cn_ok = match (&self.cn_pattern, &cn) {
            (None, _) => true,
            (Some(g), Some(cn)) => g.matches(cn),
            (Some(_), None) => false,
        };
        if !(uri_ok && dns_ok && cn_ok) {
            return Err(Reason::CertNotAllowed.into());
        }
        let facts = CertFacts {
            cert,
            cn: cn.as_deref(),
            named: Named {
                provider: &p.name,
                rule: cx.rule,
            },
        };
        let caller = format!("cert:{}", cert.sha256);
        grant(p, cx, &caller, &facts, None::<HeaderOp>, true)
    }
}

/// `${cert.cn}`, `${cert.subject}`, `${cert.uri_san}`, `${cert.dns_san}`, `${cert.sha256}`; absent when empty.
struct CertFacts<'a> {
    cert: &'a PeerCert,
    cn: Option<&'a str>,
    named: Named<'a>,
}

impl Facts for CertFacts<'_> {
    fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'_, Value>> {
        match (root, path) {
            (Root::Cert, [f]) => match f.as_str() {
                "cn" => field(self.cn?),
                "subject" => field(&self.cert.subject),
                "uri_san" => field(&self.cert.uri_san),
                "dns_san" => field(&self.cert.dns_san),
                "sha256" => field(&self.cert.sha256),
                _ => None,
            },
            _ => self.named.lookup(root, path),
        }
    }
}
