//! `trustgate sign jwt`: a compact JWS ([RFC 7515](https://www.rfc-editor.org/rfc/rfc7515)) with the claims
//! asked for, signed with a private key PEM or an HMAC secret. The token is parsed and its signature verified
//! by the library's [`trustgate::formats::jwt`] before it is printed, so a claim of the wrong type (which the filter
//! would refuse as `malformed`) is caught here. The token is put together and signed by jwt-compact
//! (`AlgorithmExt::token`) through the library's [`JwsAlgorithm`].

use crate::keys::{self, PrivateKey};
use crate::{CliError, Output};
use clap::Args;
use hmac::{Mac as _, SimpleHmac};
use jwt_compact::{AlgorithmExt as _, Claims, Header};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use std::path::PathBuf;
use trustgate::decision::Reason;
use trustgate::formats::b64;
use trustgate::formats::crypto::{Alg, VerifyKey};
use trustgate::formats::jwk::Jwk;
use trustgate::formats::jws_algs::{JwsAlgorithm, SignWith};
use trustgate::formats::jwt::{JwtRules, UntrustedJwt};

#[derive(Args)]
#[command(
    about = "A signed JWT (compact JWS) with the claims you choose",
    long_about = "Mint a signed JWT (compact JWS) and print it.\n\n\
                  The key is a private key PEM (--key: RS*, PS*, ES256, ES384, EdDSA) or an HMAC secret \
                  (--secret or --secret-env: HS256, HS384, HS512; the provider's JWK is {\"kty\": \"oct\", \"k\": \
                  base64url of the secret's bytes}). The header carries alg, typ JWT and kid: by default the \
                  public key's RFC 7638 thumbprint, the kid `trustgate keygen` and `trustgate jwks` give it \
                  (none for secrets).\n\n\
                  Claims: iat is now, exp is now + --exp-in; --claim adds any claim, its value read as JSON \
                  when it parses (true, 42, [\"a\",\"b\"], {\"k\":1}) and as a string otherwise; quote JSON \
                  strings to keep them strings (--claim 'n=\"42\"').",
    after_help = "Examples:\n  \
                  trustgate sign jwt --key keys/corp.key.pem --iss https://idp.example.com/ --sub alice \\\n      \
                  --aud signet-gate --claim email=alice@example.com --claim 'roles=[\"admin\"]'\n  \
                  curl -H \"Authorization: Bearer $(trustgate sign jwt --key k.pem --sub alice)\" http://127.0.0.1:10000/\n  \
                  trustgate sign jwt --secret-env JWT_SECRET --alg HS256 --sub ci --exp-in 60"
)]
pub struct SignJwtArgs {
    /// The private key, PEM (PKCS#8, SEC1 or PKCS#1)
    #[arg(long, value_name = "PEM", required_unless_present_any = ["secret", "secret_env"])]
    key: Option<PathBuf>,
    /// An HMAC secret (HS256/384/512); its bytes are the key
    #[arg(long, value_name = "SECRET", conflicts_with = "key")]
    secret: Option<String>,
    /// Read the HMAC secret from this environment variable instead (keeps it out of the process list)
    #[arg(long, value_name = "NAME", conflicts_with = "key")]
    secret_env: Option<String>,
    /// The JWS algorithm [default: the key's: RS256, ES256, ES384, EdDSA; HS256 for secrets]
    #[arg(long, value_name = "ALG")]
    alg: Option<String>,
    /// The kid header [default: the key's RFC 7638 thumbprint]
    #[arg(long, value_name = "ID", conflicts_with = "no_kid")]
    kid: Option<String>,
    /// No kid header (the filter then tries every key that fits the algorithm)
    #[arg(long)]
    no_kid: bool,
    /// The issuer (iss)
    #[arg(long, value_name = "ISSUER")]
    iss: Option<String>,
    /// The subject (sub)
    #[arg(long, value_name = "SUBJECT")]
    sub: Option<String>,
    /// An audience (aud); repeat for several (then aud is an array)
    #[arg(long, value_name = "AUDIENCE")]
    aud: Vec<String>,
    /// Seconds from now to exp; negative for an expired token [default: 300]
    #[arg(
        long,
        value_name = "SECONDS",
        allow_negative_numbers = true,
        conflicts_with = "no_exp"
    )]
    exp_in: Option<i64>,
    /// No exp claim (the filter refuses such tokens unless the provider sets "require_exp": false)
    #[arg(long)]
    no_exp: bool,
    /// Another claim, NAME=VALUE (VALUE as JSON when it parses, else a string); repeatable
    #[arg(long, value_name = "NAME=VALUE")]
    claim: Vec<String>,
    /// The time the token is made at, Unix seconds [default: now]
    #[arg(long, value_name = "UNIX")]
    at: Option<i64>,
    /// Bind the token to a DPoP key (RFC 9449 §6.1): cnf.jkt, the key's RFC 7638 thumbprint (`trustgate keygen`
    /// prints it)
    #[arg(long, value_name = "THUMBPRINT")]
    cnf_jkt: Option<String>,
    /// Bind the token to a client certificate (RFC 8705 §3.1): cnf["x5t#S256"], the SHA-256 of its DER
    #[arg(long, value_name = "CERT_PEM")]
    cnf_x5t: Option<PathBuf>,
}

/// `cnf` (RFC 7800) from `--cnf-jkt` and `--cnf-x5t`; `None` without either.
fn cnf(a: &SignJwtArgs) -> Result<Option<Value>, CliError> {
    let mut cnf = Map::new();
    if let Some(jkt) = &a.cnf_jkt {
        if b64::url_decode(jkt).is_none_or(|b| b.len() != 32) {
            return Err(CliError::Usage(format!(
                "--cnf-jkt {jkt:?}: expected an RFC 7638 SHA-256 thumbprint (43 base64url characters)"
            )));
        }
        cnf.insert("jkt".into(), json!(jkt));
    }
    if let Some(path) = &a.cnf_x5t {
        let der = certificate_der(&crate::read_text(path)?).ok_or_else(|| {
            CliError::Usage(format!(
                "--cnf-x5t {}: expected a PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ))
        })?;
        cnf.insert(
            "x5t#S256".into(),
            json!(b64::url_encode(&Sha256::digest(&der))),
        );
    }
    Ok((!cnf.is_empty()).then_some(Value::Object(cnf)))
}

/// The DER of the first certificate in a PEM text.
fn certificate_der(pem: &str) -> Option<Vec<u8>> {
    let (_, rest) = pem.split_once("-----BEGIN CERTIFICATE-----")?;
    let (body, _) = rest.split_once("-----END CERTIFICATE-----")?;
    let body: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    b64::std_decode(&body).filter(|d| !d.is_empty())
}

/// The claims: `--iss`, `--sub`, `--aud`, `iat`, `exp`, then every `--claim`; a claim given twice is refused.
fn claims(a: &SignJwtArgs, now: i64) -> Result<Map<String, Value>, CliError> {
    let mut m = Map::new();
    for c in &a.claim {
        let (name, raw) = c.split_once('=').ok_or_else(|| {
            CliError::Usage(format!(
                "--claim {c:?}: expected NAME=VALUE, e.g. email=alice@example.com"
            ))
        })?;
        if name.is_empty() {
            return Err(CliError::Usage(format!(
                "--claim {c:?}: the claim name is empty"
            )));
        }
        let value = serde_json::from_str::<Value>(raw).unwrap_or_else(|_| json!(raw));
        if m.insert(name.to_owned(), value).is_some() {
            return Err(CliError::Usage(format!("--claim {name}: given twice")));
        }
    }
    fn set(m: &mut Map<String, Value>, name: &str, flag: &str, v: Value) -> Result<(), CliError> {
        if m.contains_key(name) {
            return Err(CliError::Usage(format!(
                "{name} is given by both {flag} and --claim {name}=...: keep one"
            )));
        }
        m.insert(name.to_owned(), v);
        Ok(())
    }
    if let Some(iss) = &a.iss {
        set(&mut m, "iss", "--iss", json!(iss))?;
    }
    if let Some(sub) = &a.sub {
        set(&mut m, "sub", "--sub", json!(sub))?;
    }
    match a.aud.as_slice() {
        [] => {}
        [one] => set(&mut m, "aud", "--aud", json!(one))?,
        many => set(&mut m, "aud", "--aud", json!(many))?,
    }
    if let Some(c) = cnf(a)? {
        set(&mut m, "cnf", "--cnf-jkt/--cnf-x5t", c)?;
    }
    if !m.contains_key("iat") {
        m.insert("iat".into(), json!(now));
    }
    if !a.no_exp {
        match a.exp_in {
            Some(s) => set(&mut m, "exp", "--exp-in", json!(now.saturating_add(s)))?,
            None if !m.contains_key("exp") => {
                m.insert("exp".into(), json!(now.saturating_add(300)));
            }
            None => {}
        }
    } else if m.contains_key("exp") {
        return Err(CliError::Usage(
            "--no-exp and --claim exp=...: keep one".into(),
        ));
    }
    Ok(m)
}

enum Signer {
    Key(Box<PrivateKey>),
    Secret(zeroize::Zeroizing<String>),
}

/// jwt-compact signs through this (`AlgorithmExt::token`). The algorithm was checked to fit the key before, so
/// a failure here is a key the crates cannot use: the empty signature it gives is caught by [`check`].
impl SignWith for Signer {
    fn sign_jws(&self, alg: Alg, msg: &[u8]) -> Vec<u8> {
        match self {
            Signer::Key(k) => k.sign(alg, msg),
            Signer::Secret(s) => hmac_tag(alg, s.as_bytes(), msg),
        }
        .unwrap_or_default()
    }
}

fn hmac_tag(alg: Alg, secret: &[u8], msg: &[u8]) -> Result<Vec<u8>, CliError> {
    fn tag<D>(secret: &[u8], msg: &[u8]) -> Option<Vec<u8>>
    where
        D: sha2::Digest + sha2::digest::core_api::BlockSizeUser,
    {
        let mut mac = SimpleHmac::<D>::new_from_slice(secret).ok()?;
        mac.update(msg);
        Some(mac.finalize().into_bytes().to_vec())
    }
    match alg {
        Alg::HS256 => tag::<Sha256>(secret, msg),
        Alg::HS384 => tag::<Sha384>(secret, msg),
        Alg::HS512 => tag::<Sha512>(secret, msg),
        _ => None,
    }
    .ok_or_else(|| {
        CliError::Usage(format!(
            "{alg} cannot be used with a secret: use HS256, HS384 or HS512"
        ))
    })
}

pub fn run(a: &SignJwtArgs) -> Output {
    let secret = crate::secret_from(
        a.secret.as_deref(),
        a.secret_env.as_deref(),
        ("--secret", "--secret-env"),
    )?;
    let signer = match (&a.key, secret) {
        (Some(path), None) => {
            let text = zeroize::Zeroizing::new(crate::read_text(path)?);
            Signer::Key(Box::new(PrivateKey::from_pem(
                &text,
                &path.display().to_string(),
            )?))
        }
        (None, Some(s)) => Signer::Secret(s),
        _ => {
            return Err(CliError::Usage(
                "give exactly one of --key PEM, --secret SECRET, --secret-env NAME".into(),
            ))
        }
    };
    let public = match &signer {
        Signer::Key(k) => k.public(),
        Signer::Secret(s) => VerifyKey::secret(s.as_bytes().to_vec())
            .map_err(|e| CliError::Usage(format!("--secret: {e}")))?,
    };
    let alg = match &a.alg {
        Some(name) => keys::parse_alg(name)?,
        None => keys::default_alg(&public),
    };
    if !alg.fits(&public) {
        return Err(CliError::Usage(format!(
            "--alg {alg} does not fit a {} key; it signs {}",
            public.kind(),
            keys::fitting_algs(&public).join(", ")
        )));
    }
    if let Signer::Secret(s) = &signer {
        let min = match alg {
            Alg::HS384 => 48,
            Alg::HS512 => 64,
            _ => 32,
        };
        if s.len() < min {
            eprintln!(
                "trustgate: warning: the secret is {} bytes; RFC 7518 §3.2 asks for at least {min} with {alg}",
                s.len()
            );
        }
    }
    let kid = match (&a.kid, a.no_kid, &signer) {
        (Some(k), _, _) => Some(k.clone()),
        (None, true, _) | (None, false, Signer::Secret(_)) => None,
        (None, false, Signer::Key(_)) => Some(keys::thumbprint(&public)?),
    };
    let now = match a.at {
        Some(t) => t,
        None => crate::now()?,
    };
    let claims = Claims::new(claims(a, now)?);
    let mut header = Header::empty().with_token_type("JWT");
    if let Some(kid) = &kid {
        header = header.with_key_id(kid.as_str());
    }
    let token = JwsAlgorithm::<Signer>::new(alg)
        .token(&header, &claims, &signer)
        .map_err(|e| CliError::Failure(format!("cannot encode the token: {e}")))?;
    check(&token, alg, kid, public)?;
    Ok(token)
}

/// Parses and verifies the token with the library, ignoring time, issuer and audience.
fn check(token: &str, alg: Alg, kid: Option<String>, key: VerifyKey) -> Result<(), CliError> {
    let parsed = UntrustedJwt::parse(token).map_err(|e| {
        let why = Reason::from(e).label();
        CliError::Usage(format!(
            "the filter would refuse this token ({why}): iss, sub and jti must be strings, aud a string or \
             strings, exp, nbf and iat numbers from 0 to year 9999, and the token at most 16 KiB"
        ))
    })?;
    let rules = JwtRules {
        issuer: None,
        audiences: Vec::new(),
        algorithms: vec![alg],
        require_exp: false,
        clock_skew_s: i64::MAX / 4,
        max_lifetime_s: None,
        typ: None,
    };
    let now = crate::now()?;
    rules
        .verify(
            &parsed,
            &[Jwk {
                kid,
                alg: None,
                key,
            }],
            now,
        )
        .map(|_| ())
        .map_err(|e| {
            CliError::Failure(format!(
                "internal error: the token does not verify ({})",
                Reason::from(e).label()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        a: SignJwtArgs,
    }

    fn args(list: &[&str]) -> SignJwtArgs {
        T::try_parse_from(std::iter::once("t").chain(list.iter().copied()))
            .unwrap()
            .a
    }

    #[test]
    fn claims_are_typed_and_never_given_twice() {
        let a = args(&[
            "--secret",
            "s",
            "--iss",
            "https://i/",
            "--aud",
            "a",
            "--aud",
            "b",
            "--claim",
            "n=5",
            "--claim",
            "ok=true",
            "--claim",
            "email=a@b",
            "--claim",
            "r=[\"x\"]",
            "--claim",
            "q=\"5\"",
            "--exp-in",
            "-60",
        ]);
        let c = claims(&a, 1000).unwrap();
        assert_eq!(c["aud"], json!(["a", "b"]));
        assert_eq!(c["n"], json!(5));
        assert_eq!(c["ok"], json!(true));
        assert_eq!(c["email"], json!("a@b"));
        assert_eq!(c["r"], json!(["x"]));
        assert_eq!(c["q"], json!("5"));
        assert_eq!(c["exp"], json!(940));
        assert_eq!(c["iat"], json!(1000));
        let twice = args(&["--secret", "s", "--sub", "a", "--claim", "sub=b"]);
        assert!(matches!(claims(&twice, 0), Err(CliError::Usage(_))));
        let bad = args(&["--secret", "s", "--claim", "novalue"]);
        assert!(matches!(claims(&bad, 0), Err(CliError::Usage(_))));
    }

    #[test]
    fn hs256_token_matches_rfc7515_style_hmac() {
        let a = args(&[
            "--secret",
            "0123456789abcdef0123456789abcdef",
            "--sub",
            "ci",
            "--at",
            "1700000000",
        ]);
        let token = run(&a).unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let want = trustgate::formats::crypto::hmac_sha256(
            b"0123456789abcdef0123456789abcdef",
            input.as_bytes(),
        );
        assert_eq!(b64::url_decode(sig).unwrap(), want);
        let header: Value =
            serde_json::from_slice(&b64::url_decode(input.split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
    }

    #[test]
    fn cnf_binds_to_a_dpop_key_or_a_certificate() {
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        let c = claims(&args(&["--secret", "s", "--cnf-jkt", jkt]), 0).unwrap();
        assert_eq!(c["cnf"], json!({"jkt": jkt}));
        let hex = "d1a3".repeat(16);
        assert!(matches!(
            claims(&args(&["--secret", "s", "--cnf-jkt", &hex]), 0),
            Err(CliError::Usage(_))
        ));
        let pem = "-----BEGIN CERTIFICATE-----\nAQID\nBA==\n-----END CERTIFICATE-----\n";
        assert_eq!(certificate_der(pem), Some(vec![1, 2, 3, 4]));
        assert_eq!(certificate_der("-----BEGIN PUBLIC KEY-----"), None);
    }

    #[test]
    fn a_claim_of_the_wrong_type_is_refused() {
        let a = args(&[
            "--secret",
            "0123456789abcdef0123456789abcdef",
            "--claim",
            "sub=5",
        ]);
        assert!(matches!(run(&a), Err(CliError::Usage(m)) if m.contains("malformed")));
    }

    #[test]
    fn an_algorithm_that_does_not_fit_is_a_usage_error() {
        let a = args(&[
            "--secret",
            "0123456789abcdef0123456789abcdef",
            "--alg",
            "ES256",
        ]);
        assert!(matches!(run(&a), Err(CliError::Usage(_))));
    }
}
