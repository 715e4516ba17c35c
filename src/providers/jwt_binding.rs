//! Sender-constrained tokens of the `jwt` provider: the token's `cnf` (RFC 7800) names a key the caller must
//! show, and a stolen token alone is refused.
//!
//! - DPoP ([RFC 9449](https://www.rfc-editor.org/rfc/rfc9449)): `cnf.jkt` is the RFC 7638 thumbprint of a key
//!   that signs a proof ([`crate::formats::dpop`]) on every request, sent in the `DPoP` header with the token
//!   under `Authorization: DPoP`. Here: the scheme agrees with the binding (§7.1: no downgrade either way),
//!   exactly one `DPoP` header (§4.3 point 1), the proof's URI from the request (or `dpop.origin`), the key =
//!   `cnf.jkt` (§4.3 point 12), and its `jti` refused when seen again (§11.1) through the replay store, kept
//!   until the proof ages out, so a replay is refused by every worker.
//! - Certificate-bound tokens ([RFC 8705 §3](https://www.rfc-editor.org/rfc/rfc8705#section-3)):
//!   `cnf["x5t#S256"]` is base64url(SHA-256(DER)) of the client certificate Envoy verified on the connection.
//! - `require_binding`: `dpop`, `mtls` or `any` refuses a token without that binding.
//!
//! A token's own `cnf` is always enforced, whatever the provider's config: a confirmation method this filter
//! cannot check refuses the token (`cnf_unsupported`).

use super::{remember, Cx, Fail};
use crate::decision::Reason;
use crate::formats::b64;
use crate::formats::crypto::Alg;
use crate::formats::dpop::{self, DpopError, Expect, UntrustedProof};
use crate::policy::config::{err, ConfigError};
use crate::providers::extract::TokenSource;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `dpop` of a `jwt` provider: accept `Authorization: DPoP` with a proof.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDpop {
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    max_age_s: Option<u32>,
    #[serde(default)]
    origin: Option<String>,
}

/// The proof algorithms accepted when `dpop.algorithms` is not given.
const DEFAULT_ALGS: [Alg; 5] = [Alg::ES256, Alg::ES384, Alg::RS256, Alg::PS256, Alg::EdDSA];

/// A compiled `dpop` block.
#[derive(Debug)]
pub struct Dpop {
    pub algorithms: Vec<Alg>,
    /// Oldest accepted proof `iat`, seconds before now (plus the provider's skew).
    pub max_age_s: i64,
    /// `scheme://authority` of the proof's `htu`, instead of the request's (TLS ended in front of the proxy).
    pub origin: Option<String>,
}

/// `require_binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Require {
    Dpop,
    Mtls,
    Any,
}

/// What a `jwt` provider asks of sender-constrained tokens.
#[derive(Debug, Default)]
pub struct Binding {
    /// DPoP is accepted (`Authorization: DPoP`) when set.
    pub dpop: Option<Dpop>,
    pub require: Option<Require>,
}

/// How the token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// A `from` source (`Authorization: Bearer` by default).
    Bearer,
    /// `Authorization: DPoP`.
    Dpop,
}

/// `Authorization: DPoP <token>` (RFC 9449 §7.1).
pub fn dpop_source() -> TokenSource {
    TokenSource::Header {
        name: "authorization".into(),
        prefix: "DPoP ".into(),
    }
}

/// Compiles `dpop` and `require_binding` of the provider at `path`.
pub(super) fn compile(
    path: &str,
    raw: Option<&RawDpop>,
    require: Option<&str>,
) -> Result<Binding, ConfigError> {
    let require = match require {
        None => None,
        Some("dpop") => Some(Require::Dpop),
        Some("mtls") => Some(Require::Mtls),
        Some("any") => Some(Require::Any),
        Some(_) => {
            return err(
                format!("{path}.require_binding"),
                "expected \"dpop\", \"mtls\" or \"any\"",
            )
        }
    };
    let dpop = raw
        .map(|d| compile_dpop(&format!("{path}.dpop"), d))
        .transpose()?;
    if require == Some(Require::Dpop) && dpop.is_none() {
        return err(
            format!("{path}.require_binding"),
            "\"dpop\" needs the provider to accept DPoP proofs: add \"dpop\": {} (or its settings)",
        );
    }
    Ok(Binding { dpop, require })
}

fn compile_dpop(path: &str, d: &RawDpop) -> Result<Dpop, ConfigError> {
    let algorithms = match &d.algorithms {
        None => DEFAULT_ALGS.to_vec(),
        Some(list) if list.is_empty() => {
            return err(format!("{path}.algorithms"), "expected at least one algorithm")
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, a)| {
                dpop::proof_alg(a).filter(|a| !a.is_hmac()).ok_or_else(|| ConfigError {
                    path: format!("{path}.algorithms[{i}]"),
                    message: format!(
                        "unsupported proof algorithm {a:?}, expected asymmetric ones: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA (or Ed25519)"
                    ),
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let max_age_s = i64::from(d.max_age_s.unwrap_or(300));
    if max_age_s == 0 || max_age_s > 3600 {
        return err(
            format!("{path}.max_age_s"),
            "expected 1 to 3600 seconds (RFC 9449 proofs are short-lived)",
        );
    }
    let origin = match &d.origin {
        None => None,
        Some(o) => Some(compile_origin(&format!("{path}.origin"), o)?),
    };
    Ok(Dpop {
        algorithms,
        max_age_s,
        origin,
    })
}

/// `origin`: `http(s)://authority`, without path, query or userinfo; stored in normal form, no trailing `/`.
fn compile_origin(path: &str, o: &str) -> Result<String, ConfigError> {
    let bad = || {
        err(
            path,
            "expected a scheme and authority, e.g. \"https://api.example.com\" (no path, query or user)",
        )
    };
    let Some(rest) = o.split_once("://").map(|(_, r)| r) else {
        return bad();
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return bad();
    }
    match dpop::normalize_uri(o) {
        Some(n) => Ok(n.trim_end_matches('/').to_owned()),
        None => bad(),
    }
}

/// The confirmation methods of a token's `cnf`.
struct Cnf<'a> {
    jkt: Option<&'a str>,
    x5t: Option<&'a str>,
}

/// Reads `cnf`: absent, or an object of `jkt` and `x5t#S256` strings (at least one). Anything else cannot be
/// enforced here, so the token is refused.
fn read_cnf(claims: &Map<String, Value>) -> Result<Cnf<'_>, Reason> {
    let mut cnf = Cnf {
        jkt: None,
        x5t: None,
    };
    let members = match claims.get("cnf") {
        None => return Ok(cnf),
        Some(Value::Object(o)) if !o.is_empty() => o,
        Some(_) => return Err(Reason::CnfUnsupported),
    };
    for (name, value) in members {
        match (name.as_str(), value) {
            ("jkt", Value::String(s)) => cnf.jkt = Some(s),
            ("x5t#S256", Value::String(s)) => cnf.x5t = Some(s),
            _ => return Err(Reason::CnfUnsupported),
        }
    }
    Ok(cnf)
}

impl Binding {
    /// The `algs` of the `DPoP` challenge; `None` when the provider does not accept DPoP.
    pub fn dpop_algs(&self) -> Option<Vec<Alg>> {
        self.dpop.as_ref().map(|d| d.algorithms.clone())
    }

    /// Enforces the token's `cnf` and the provider's `require_binding` on this request: the scheme, the client
    /// certificate, the DPoP proof. On success, the proof key's thumbprint when the token is DPoP-bound.
    /// `scope`: the provider's replay scope; `skew_s`: its clock skew.
    pub(super) fn check(
        &self,
        cx: &Cx<'_>,
        scope: &str,
        token: &str,
        claims: &Map<String, Value>,
        presented: Presented,
        skew_s: i64,
    ) -> Result<Option<String>, Fail> {
        let cnf = read_cnf(claims)?;
        match (presented, cnf.jkt) {
            (Presented::Bearer, Some(_)) => return Err(Reason::DpopBoundToken.into()),
            (Presented::Dpop, None) => return Err(Reason::DpopUnboundToken.into()),
            _ => {}
        }
        let missing = match self.require {
            None => false,
            Some(Require::Dpop) => cnf.jkt.is_none(),
            Some(Require::Mtls) => cnf.x5t.is_none(),
            Some(Require::Any) => cnf.jkt.is_none() && cnf.x5t.is_none(),
        };
        if missing {
            return Err(Reason::BindingRequired.into());
        }
        if let Some(x5t) = cnf.x5t {
            check_certificate(cx, x5t)?;
        }
        match (cnf.jkt, &self.dpop) {
            (Some(jkt), Some(d)) => check_proof(cx, d, scope, token, jkt, skew_s).map(Some),
            // Presented under DPoP only when the provider accepts it; a bound token under Bearer was refused.
            (Some(_), None) => Err(Reason::DpopBoundToken.into()),
            (None, _) => Ok(None),
        }
    }
}

/// RFC 8705 §3.1: the connection's verified client certificate has the token's SHA-256 thumbprint. Envoy gives
/// the digest in hex; the token holds base64url (a hex value never matches: it decodes to 48 bytes).
fn check_certificate(cx: &Cx<'_>, x5t: &str) -> Result<(), Fail> {
    if cx.req.peer_unread {
        return Err(Reason::PeerRequired.into());
    }
    let peer = cx
        .req
        .peer
        .and_then(|p| b64::hex32(&p.sha256))
        .ok_or(Reason::CertBindingMismatch)?;
    match b64::url_decode(x5t) {
        Some(want) if want.as_slice() == peer.as_slice() => Ok(()),
        _ => Err(Reason::CertBindingMismatch.into()),
    }
}

/// The request's target URI for `htu`: `dpop.origin` or the request's `:scheme` and `:authority`, and the path
/// without its query. `None` when the host gave no `:scheme`.
fn request_uri(cx: &Cx<'_>, d: &Dpop) -> Option<String> {
    let path = cx.req.path.split(['?', '#']).next().unwrap_or_default();
    match &d.origin {
        Some(o) => Some(format!("{o}{path}")),
        None => {
            let scheme = cx.req.header_values(":scheme").next()?;
            Some(format!("{scheme}://{}{path}", cx.req.authority))
        }
    }
}

/// RFC 9449 §4.3 and §7.1: one `DPoP` header holding one proof for this request and token, signed by the key
/// `jkt` names, not seen before. Returns `jkt`.
fn check_proof(
    cx: &Cx<'_>,
    d: &Dpop,
    scope: &str,
    token: &str,
    jkt: &str,
    skew_s: i64,
) -> Result<String, Fail> {
    let mut headers = cx.req.header_values("dpop");
    let proof = headers.next().ok_or(Reason::DpopProofMissing)?;
    // A second header, or two joined by a proxy (a compact JWS has no comma).
    if headers.next().is_some() || proof.contains(',') {
        return Err(Reason::DpopProofMultiple.into());
    }
    let uri = request_uri(cx, d).ok_or(Reason::DpopProofMismatch)?;
    let expect = Expect {
        method: cx.req.method,
        uri: &uri,
        token: Some(token),
        algorithms: &d.algorithms,
        max_age_s: d.max_age_s,
        skew_s,
        now: cx.now,
    };
    let verified = UntrustedProof::parse(proof.trim())
        .and_then(|p| p.verify(&expect))
        .map_err(|e| match e {
            DpopError::Method | DpopError::Uri | DpopError::TokenHash => Reason::DpopProofMismatch,
            DpopError::Stale => Reason::DpopProofStale,
            _ => Reason::DpopProofInvalid,
        })?;
    if verified.jkt != jkt {
        return Err(Reason::DpopKeyMismatch.into());
    }
    // Kept while a proof with this iat is accepted: until iat + max_age + skew.
    let expires = verified
        .iat
        .saturating_add(d.max_age_s)
        .saturating_add(skew_s);
    let id = format!("dpop:{}:{}", verified.jkt, verified.jti);
    remember(cx, scope, &id, expires).map_err(|f| match f.reason {
        Reason::Replayed => Reason::DpopProofReplayed.into(),
        _ => f,
    })?;
    Ok(verified.jkt)
}
