//! The `assertion` block: the signed identity assertion the proxy issues to the upstream (DESIGN.md, "Identity
//! assertions for the upstream"): its raw config, its compile step, the claims it maps from the satisfied
//! provider's facts, the assertion's payload and signature, and the public JWKS the proxy serves.
//!
//! The engine decides when one is issued ([`crate::engine`]); reuse lives in
//! [`crate::state::assertion_cache`]; the key and the JWS in [`crate::formats::signing_key`].

use crate::decision::Reason;
use crate::formats::jwk::Jwk;
use crate::formats::signing_key::{SignAlg, SigningKey};
use crate::policy::config::{err, header_name, ConfigError};
use crate::policy::rules::normalize_path;
use crate::policy::template::{claim_var, Facts, RenderError, Root, Template, Var};
use crate::providers::jwk_error_at;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Claims the proxy sets itself: a mapping may not write them.
const REGISTERED: [&str; 6] = ["iss", "aud", "iat", "exp", "jti", "nbf"];

/// The longest lifetime an assertion may have: it is a bearer credential inside the mesh.
const MAX_TTL_S: u32 = 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAssertion {
    #[serde(default)]
    header: Option<String>,
    issuer: String,
    audience: String,
    #[serde(default)]
    ttl_s: Option<u32>,
    signing_key: RawSigningKey,
    #[serde(default)]
    previous_keys: Vec<Value>,
    claims: BTreeMap<String, Value>,
    #[serde(default)]
    jwks_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigningKey {
    alg: String,
    kid: String,
    pem: String,
}

/// Where one claim's value comes from.
#[derive(Debug)]
pub enum ClaimSource {
    /// A header-style template rendered to a string (a literal when it has no `${…}`).
    Template(Template),
    /// `{"claim": PATH}`: a verified JWT claim's JSON value as is.
    Claim(Var),
}

/// A compiled `assertion` block.
#[derive(Debug)]
pub struct Assertion {
    /// The lower-case request header the assertion is written in (and stripped from every request).
    pub header: String,
    issuer: String,
    /// The default `aud` (a rule's `assertion_audience` overrides it).
    pub audience: String,
    /// Lifetime in seconds.
    pub ttl_s: i64,
    key: SigningKey,
    /// Claim name → source, `sub` among them.
    pub claims: Vec<(String, ClaimSource)>,
    /// The normalized path the proxy answers with [`Assertion::jwks_body`].
    pub jwks_path: String,
    /// `{"keys": [current, previous…]}`, public members only.
    pub jwks_body: String,
}

impl RawAssertion {
    /// Compiles the block at `path` (`assertion`).
    pub(crate) fn compile(&self, path: &str) -> Result<Assertion, ConfigError> {
        let header = header_name(
            &format!("{path}.header"),
            self.header.as_deref().unwrap_or("x-trustgate-assertion"),
        )?;
        if crate::policy::config::is_reserved_header(&header) {
            return err(
                format!("{path}.header"),
                format!("{header} cannot carry the assertion"),
            );
        }
        for (field, v) in [("issuer", &self.issuer), ("audience", &self.audience)] {
            if v.is_empty() {
                return err(format!("{path}.{field}"), "expected a non-empty string");
            }
        }
        let ttl = self.ttl_s.unwrap_or(60);
        if !(1..=MAX_TTL_S).contains(&ttl) {
            return err(
                format!("{path}.ttl_s"),
                format!("expected 1 to {MAX_TTL_S} seconds (applications re-check expiry; keep it short)"),
            );
        }
        let key = compile_key(&format!("{path}.signing_key"), &self.signing_key)?;
        let mut keys = vec![key.public_jwk()];
        keys.extend(compile_previous(
            &format!("{path}.previous_keys"),
            &self.previous_keys,
            key.kid(),
        )?);
        let jwks_path = self
            .jwks_path
            .clone()
            .unwrap_or_else(|| "/.well-known/trustgate/jwks.json".to_owned());
        if normalize_path(&jwks_path).ok().as_deref() != Some(jwks_path.as_str()) {
            return err(
                format!("{path}.jwks_path"),
                format!("{jwks_path:?} is not a normalized absolute path (no query, no '//', no dot segments)"),
            );
        }
        Ok(Assertion {
            header,
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            ttl_s: i64::from(ttl),
            key,
            claims: compile_claims(&format!("{path}.claims"), &self.claims)?,
            jwks_path,
            jwks_body: serde_json::json!({ "keys": keys }).to_string(),
        })
    }
}

fn compile_key(path: &str, raw: &RawSigningKey) -> Result<SigningKey, ConfigError> {
    let Some(alg) = SignAlg::from_name(&raw.alg) else {
        return err(
            format!("{path}.alg"),
            format!(
                "unsupported algorithm {:?}, expected EdDSA or ES256",
                raw.alg
            ),
        );
    };
    if raw.kid.is_empty() || raw.kid.chars().any(char::is_control) {
        return err(
            format!("{path}.kid"),
            "expected a non-empty key id (e.g. gw-2026-12): applications pick the key by it",
        );
    }
    SigningKey::from_pem(alg, &raw.kid, &raw.pem).map_err(|e| ConfigError {
        path: format!("{path}.pem"),
        message: e.to_string(),
    })
}

/// `previous_keys`: public JWKs of EdDSA or ES256 keys, each with a `kid` no other key has, re-serialized
/// with their public members only.
fn compile_previous(path: &str, raw: &[Value], current: &str) -> Result<Vec<Value>, ConfigError> {
    let mut kids = vec![current.to_owned()];
    let mut out = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let kpath = format!("{path}[{i}]");
        if v.get("d").is_some() {
            return err(
                format!("{kpath}.d"),
                "a private member: previous_keys are published, give the public key only (drop \"d\")",
            );
        }
        let jwk = Jwk::from_value(v).map_err(|e| jwk_error_at(&kpath, &e))?;
        let alg = match jwk.key.kind() {
            "OKP Ed25519" => "EdDSA",
            "EC P-256" => "ES256",
            _ => {
                return err(
                    kpath,
                    "expected an Ed25519 (OKP) or P-256 (EC) public key, the kinds assertions are signed with",
                )
            }
        };
        let Some(kid) = jwk.kid.filter(|k| !k.is_empty()) else {
            return err(
                format!("{kpath}.kid"),
                "expected the key id its assertions carry",
            );
        };
        if kids.contains(&kid) {
            return err(
                format!("{kpath}.kid"),
                format!("{kid:?} is already used by another key, expected unique key ids"),
            );
        }
        let mut public = Map::new();
        for m in ["kty", "crv", "x", "y"] {
            if let Some(x) = v.get(m) {
                public.insert(m.to_owned(), x.clone());
            }
        }
        public.insert("kid".into(), Value::String(kid.clone()));
        public.insert("alg".into(), Value::String(alg.into()));
        public.insert("use".into(), Value::String("sig".into()));
        out.push(Value::Object(public));
        kids.push(kid);
    }
    Ok(out)
}

/// `claims`: templates over any root, or `{"claim": PATH}`; `sub` required; registered claims refused.
fn compile_claims(
    path: &str,
    raw: &BTreeMap<String, Value>,
) -> Result<Vec<(String, ClaimSource)>, ConfigError> {
    if !raw.contains_key("sub") {
        return err(
            format!("{path}.sub"),
            "required: the subject the application sees, e.g. \"${claims.sub}\" (jwt) or \"${client.id}\" (hmac, api_key)",
        );
    }
    let mut out = Vec::new();
    for (name, v) in raw {
        let cpath = format!("{path}.{name}");
        if REGISTERED.contains(&name.as_str()) {
            return err(
                cpath,
                format!("{name} is set by the proxy and cannot be mapped"),
            );
        }
        let source = match v {
            Value::String(text) => Template::parse(text).map(ClaimSource::Template),
            Value::Object(m) if m.len() == 1 => match m.get("claim") {
                Some(Value::String(p)) => claim_var(p).map(ClaimSource::Claim),
                _ => return err(cpath, "expected {\"claim\": \"dotted.path\"}"),
            },
            _ => return err(
                cpath,
                "expected a template string (\"${claims.email}\") or {\"claim\": \"dotted.path\"}",
            ),
        }
        .map_err(|e| ConfigError {
            path: cpath,
            message: e.to_string(),
        })?;
        out.push((name.clone(), source));
    }
    Ok(out)
}

impl Assertion {
    /// The JWS `alg` of the signing key.
    pub fn alg_name(&self) -> &'static str {
        self.key.alg().name()
    }

    /// The signing key's `kid`.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// The mapped claims over one satisfied provider's facts: a template without a value (or rendering to
    /// "") and a claim the token does not have are left out. A template value with a control character
    /// refuses the request, as for headers.
    pub fn render_claims(&self, facts: &dyn Facts) -> Result<Vec<(String, Value)>, Reason> {
        let mut out = Vec::with_capacity(self.claims.len());
        for (name, source) in &self.claims {
            let value = match source {
                ClaimSource::Template(t) => match t.render(facts) {
                    Ok(s) if s.is_empty() => continue,
                    Ok(s) => Value::String(s),
                    Err(RenderError::Missing) => continue,
                    Err(RenderError::Unsafe) => return Err(Reason::UnsafeClaim),
                },
                ClaimSource::Claim(v) => match facts.lookup(Root::Claims, &v.path) {
                    Some(x) => x.into_owned(),
                    None => continue,
                },
            };
            out.push((name.clone(), value));
        }
        Ok(out)
    }

    /// `no_subject` unless the mapped claims hold a non-empty string `sub`.
    pub fn require_subject(claims: &Map<String, Value>) -> Result<(), Reason> {
        match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => Ok(()),
            _ => Err(Reason::NoSubject),
        }
    }

    /// The signed assertion for `aud` at `now` with `jti`; `claims` must hold a non-empty string `sub`
    /// (else `no_subject`). Deterministic: the same inputs give the same JWS.
    pub fn issue(
        &self,
        aud: &str,
        claims: &Map<String, Value>,
        now: i64,
        jti: &str,
    ) -> Result<String, Reason> {
        Assertion::require_subject(claims)?;
        let mut payload = claims.clone();
        for (k, v) in [
            ("iss", Value::String(self.issuer.clone())),
            ("aud", Value::String(aud.to_owned())),
            ("iat", Value::from(now)),
            ("exp", Value::from(now.saturating_add(self.ttl_s))),
            ("jti", Value::String(jti.to_owned())),
        ] {
            payload.insert(k.to_owned(), v);
        }
        Ok(self.key.sign_jwt(&Value::Object(payload).to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::b64;
    use crate::formats::signing_key::tests::{ED25519_PEM, P256_PEM};
    use std::borrow::Cow;

    fn raw(v: Value) -> Result<Assertion, ConfigError> {
        let r: RawAssertion = serde_json::from_value(v).unwrap();
        r.compile("assertion")
    }

    fn base() -> Value {
        serde_json::json!({
            "issuer": "https://gw.example", "audience": "orders",
            "signing_key": { "alg": "EdDSA", "kid": "gw-1", "pem": ED25519_PEM },
            "claims": { "sub": "${claims.sub}", "email": "${claims.email:-}", "principal_type": "human",
                        "roles": { "claim": "realm_access.roles" } }
        })
    }

    struct Claims(Value);
    impl Facts for Claims {
        fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'_, Value>> {
            (root == Root::Claims).then_some(())?;
            crate::policy::template::walk(&self.0, path).map(Cow::Borrowed)
        }
    }

    #[test]
    fn claims_map_templates_literals_and_raw_values_and_leave_out_what_is_missing() {
        let a = raw(base()).unwrap();
        let facts =
            Claims(serde_json::json!({"sub": "alice", "realm_access": {"roles": ["a", "b"]}}));
        let got: Map<String, Value> = a.render_claims(&facts).unwrap().into_iter().collect();
        assert_eq!(
            Value::Object(got),
            serde_json::json!({"sub": "alice", "principal_type": "human", "roles": ["a", "b"]})
        );
    }

    #[test]
    fn issue_is_deterministic_and_carries_the_registered_claims() {
        let a = raw(base()).unwrap();
        let claims: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"sub": "alice"})).unwrap();
        let one = a.issue("orders", &claims, 1_000, "j1").unwrap();
        assert_eq!(one, a.issue("orders", &claims, 1_000, "j1").unwrap());
        let mut parts = one.split('.');
        let header: Value =
            serde_json::from_slice(&b64::url_decode(parts.next().unwrap()).unwrap()).unwrap();
        let payload: Value =
            serde_json::from_slice(&b64::url_decode(parts.next().unwrap()).unwrap()).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "EdDSA", "kid": "gw-1", "typ": "JWT"})
        );
        assert_eq!(
            payload,
            serde_json::json!({"iss": "https://gw.example", "aud": "orders", "iat": 1000, "exp": 1060,
                               "jti": "j1", "sub": "alice"})
        );
    }

    #[test]
    fn no_or_empty_or_non_string_sub_is_no_subject() {
        let a = raw(base()).unwrap();
        for claims in [
            serde_json::json!({}),
            serde_json::json!({"sub": ""}),
            serde_json::json!({"sub": 7}),
        ] {
            let m: Map<String, Value> = serde_json::from_value(claims).unwrap();
            assert_eq!(a.issue("orders", &m, 1, "j"), Err(Reason::NoSubject));
        }
    }

    #[test]
    fn jwks_has_current_and_previous_public_keys_only() {
        let mut v = base();
        v["previous_keys"] = serde_json::json!([
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "gw-0", "x5c": ["…"]}
        ]);
        let a = raw(v).unwrap();
        let jwks: Value = serde_json::from_str(&a.jwks_body).unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, ["gw-1", "gw-0"]);
        assert!(!a.jwks_body.contains("\"d\""));
        assert!(!a.jwks_body.contains("x5c"));
        assert_eq!(jwks["keys"][1]["alg"], "EdDSA");
    }

    #[test]
    fn config_errors_name_their_path() {
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Edit, &str, &str)> = vec![
            (
                Box::new(|v| v["signing_key"]["alg"] = "ES256".into()),
                "assertion.signing_key.pem",
                "alg is ES256",
            ),
            (
                Box::new(|v| v["signing_key"]["alg"] = "RS256".into()),
                "assertion.signing_key.alg",
                "EdDSA or ES256",
            ),
            (
                Box::new(|v| {
                    v["signing_key"]["pem"] = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n".into()
                }),
                "assertion.signing_key.pem",
                "public key",
            ),
            (
                Box::new(|v| {
                    v["claims"]
                        .as_object_mut()
                        .unwrap()
                        .remove("sub")
                        .map(drop)
                        .unwrap()
                }),
                "assertion.claims.sub",
                "required",
            ),
            (
                Box::new(|v| v["claims"]["exp"] = "1".into()),
                "assertion.claims.exp",
                "set by the proxy",
            ),
            (
                Box::new(|v| v["claims"]["x"] = serde_json::json!({"claim": 1})),
                "assertion.claims.x",
                "dotted.path",
            ),
            (
                Box::new(|v| v["ttl_s"] = 0.into()),
                "assertion.ttl_s",
                "1 to 3600",
            ),
            (
                Box::new(|v| v["jwks_path"] = "/a//b".into()),
                "assertion.jwks_path",
                "normalized",
            ),
            (
                Box::new(|v| v["header"] = "authorization".into()),
                "assertion.header",
                "cannot carry",
            ),
            (
                Box::new(
                    |v| v["previous_keys"] = serde_json::json!([{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "gw-1"}]),
                ),
                "assertion.previous_keys[0].kid",
                "already used",
            ),
            (
                Box::new(
                    |v| v["previous_keys"] = serde_json::json!([{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "d": "x", "kid": "o"}]),
                ),
                "assertion.previous_keys[0].d",
                "private member",
            ),
        ];
        for (edit, path, text) in cases {
            let mut v = base();
            edit(&mut v);
            let e = raw(v).unwrap_err();
            assert_eq!(e.path, path, "{e}");
            assert!(e.message.contains(text), "{e}");
        }
    }

    #[test]
    fn es256_keys_sign_es256_assertions() {
        let mut v = base();
        v["signing_key"] = serde_json::json!({ "alg": "ES256", "kid": "p1", "pem": P256_PEM });
        let a = raw(v).unwrap();
        let jwks: Value = serde_json::from_str(&a.jwks_body).unwrap();
        assert_eq!(jwks["keys"][0]["crv"], "P-256");
        let m: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"sub": "a"})).unwrap();
        let jws = a.issue("orders", &m, 5, "j").unwrap();
        let header: Value =
            serde_json::from_slice(&b64::url_decode(jws.split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header["alg"], "ES256");
    }
}
