//! The `http_signature` provider: RFC 9421 HTTP Message Signatures ([`crate::formats::httpsig`]) by configured keys,
//! with required components, age, tag, body digest and nonce replay; templates read `${key.id}`.

use super::{declared_length, grant, remember, text, Cx, Fail, Grant, Named, Provider};
use crate::decision::{HeaderOp, Reason};
use crate::formats::crypto::VerifyKey;
use crate::formats::httpsig::{self, HttpSigError, SigAlg, SigKey};
use crate::formats::jwk::Jwk;
use crate::policy::config::{compile_headers, err, ConfigError};
use crate::policy::template::{Facts, Root, Template};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpSignature {
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
    pub(super) upstream_headers: BTreeMap<String, String>,
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

/// A compiled `http_signature` provider (RFC 9421).
#[derive(Debug)]
pub struct HttpSignatureProvider {
    /// `keyid` → key, in keyid order.
    pub keys: Vec<(String, SigKey)>,
    pub required_components: Vec<String>,
    pub max_age_s: i64,
    pub tag: Option<String>,
    pub max_body_bytes: usize,
    pub forward: bool,
}

/// Compiles `providers.<name>.http_signature` (at `path`).
pub(super) fn compile(
    path: &str,
    hs: &RawHttpSignature,
) -> Result<(HttpSignatureProvider, Vec<(String, Template)>), ConfigError> {
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
                if !httpsig::is_component_identifier(c) {
                    return err(
                        format!("{path}.required_components[{i}]"),
                        format!("{c:?} is not a component identifier, expected e.g. \"@method\", \"content-digest\" or \"\\\"@query-param\\\";name=\\\"id\\\"\""),
                    );
                }
            }
            list.clone()
        }
    };
    let max_body_bytes = super::body_limit(path, hs.max_body_bytes)?;
    let headers = compile_headers(&format!("{path}.headers"), &hs.headers, &[Root::Key])?;
    let provider = HttpSignatureProvider {
        keys,
        required_components: required,
        max_age_s: i64::from(hs.max_age_s.unwrap_or(300)),
        tag: hs.tag.clone(),
        max_body_bytes,
        forward: hs.forward,
    };
    Ok((provider, headers))
}

fn compile_sig_key(path: &str, k: &RawSigKey) -> Result<SigKey, ConfigError> {
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
            let j = Jwk::from_value(jwk)
                .map_err(|e| super::jwk_error_at(&format!("{path}.jwk"), &e))?;
            if j.alg.is_some_and(|a| a != alg.jws()) {
                return err(
                    format!("{path}.jwk.alg"),
                    format!("the JWK's alg does not match {:?}", k.alg),
                );
            }
            j.key
        }
        (None, None, Some(secret)) => {
            let bytes =
                crate::formats::b64::std_decode(secret.trim()).ok_or_else(|| ConfigError {
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

impl HttpSignatureProvider {
    /// Verifies the request's signature, its body digest and nonce.
    pub(super) fn check(&self, p: &Provider, cx: &Cx<'_>) -> Result<Grant, Fail> {
        if !cx.req.has_header("signature-input") && !cx.req.has_header("signature") {
            return Err(Reason::Missing.into());
        }
        let request = httpsig::Request {
            method: cx.req.method,
            scheme: cx.req.header_values(":scheme").next().unwrap_or("https"),
            authority: cx.req.authority,
            path: cx.req.path,
            headers: cx.req.headers,
            body: cx.req.body,
        };
        let policy = httpsig::Policy {
            required: &self.required_components,
            max_age_s: self.max_age_s,
            tag: self.tag.as_deref(),
            now: cx.now,
        };
        let lookup = |id: &str| self.keys.iter().find(|(k, _)| k == id).map(|(_, key)| key);
        let v = httpsig::verify(&request, &lookup, &policy).map_err(|e| self.reason(e, cx))?;
        if cx.req.body.is_some_and(|b| b.len() > self.max_body_bytes) {
            return Err(Reason::BodyTooLarge.into());
        }
        if let Some(nonce) = &v.nonce {
            // Kept while this signature could still pass: until `expires`, or `created + max_age_s`.
            let until = match (v.expires, v.created) {
                (Some(e), _) => e,
                (None, Some(c)) if self.max_age_s > 0 => c.saturating_add(self.max_age_s),
                _ => cx.now.saturating_add(86_400),
            };
            let id = format!("{}:{nonce}", v.keyid);
            remember(cx, &p.name, &id, until.saturating_add(1))?;
        }
        let facts = KeyFacts {
            keyid: &v.keyid,
            named: Named {
                provider: &p.name,
                rule: cx.rule,
            },
        };
        let remove = [
            HeaderOp::Remove("signature".into()),
            HeaderOp::Remove("signature-input".into()),
        ];
        let caller = format!("key:{}", v.keyid);
        grant(p, cx, &caller, &facts, remove, self.forward)
    }

    /// The deny reason of a verification error.
    fn reason(&self, e: HttpSigError, cx: &Cx<'_>) -> Reason {
        match e {
            HttpSigError::Missing => Reason::Missing,
            HttpSigError::Malformed => Reason::Malformed,
            HttpSigError::UnknownKey => Reason::UnknownKey,
            HttpSigError::AlgMismatch => Reason::AlgNotAllowed,
            HttpSigError::MissingComponent => Reason::MissingComponent,
            HttpSigError::Expired => Reason::Expired,
            HttpSigError::TooOld => Reason::StaleTimestamp,
            HttpSigError::CreatedInFuture => Reason::NotYetValid,
            HttpSigError::TagMismatch => Reason::TagMismatch,
            HttpSigError::BadSignature => Reason::BadSignature,
            HttpSigError::DigestMismatch => Reason::DigestMismatch,
            HttpSigError::BodyRequired if cx.req.body.is_some() => Reason::DigestMismatch,
            // The body is signed: a declared length over the limit is refused before a byte is buffered.
            HttpSigError::BodyRequired
                if declared_length(cx.req).is_some_and(|n| n > self.max_body_bytes) =>
            {
                Reason::BodyTooLarge
            }
            HttpSigError::BodyRequired => Reason::BodyRequired,
        }
    }
}

/// `${key.id}`: the signature's `keyid`.
struct KeyFacts<'a> {
    keyid: &'a str,
    named: Named<'a>,
}

impl Facts for KeyFacts<'_> {
    fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'_, Value>> {
        match (root, path) {
            (Root::Key, [field]) if field == "id" => Some(text(self.keyid)),
            _ => self.named.lookup(root, path),
        }
    }
}
