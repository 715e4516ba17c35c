//! `trustgate sign dpop`: a DPoP proof ([RFC 9449 §4.2](https://www.rfc-editor.org/rfc/rfc9449#section-4.2))
//! for one request, signed with a private key PEM whose public half travels in the proof's `jwk` header. The
//! proof is checked with the library's [`UntrustedProof::verify`] (every stateless check of §4.3) before it is
//! printed; the key's RFC 7638 thumbprint (the token's `cnf.jkt`) goes to standard error.

use crate::keys::{self, PrivateKey};
use crate::{CliError, Output};
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;
use trustgate::formats::b64;
use trustgate::formats::dpop::{self, Expect, UntrustedProof};

#[derive(Args)]
#[command(
    about = "A DPoP proof (RFC 9449) for one request",
    long_about = "Make a DPoP proof for one request and print it (the DPoP header's value).\n\n\
                  The proof is signed with --key (a private key PEM: ES256, ES384, RS*, PS*, EdDSA) and carries \
                  its public key; htm is --method, htu is --url without its query and fragment, iat is now, \
                  jti is random, and ath is the hash of --token when given (a request to a resource server \
                  always gives it). The key's RFC 7638 thumbprint, the cnf.jkt of the tokens bound to it, is \
                  written to standard error.",
    after_help = "Examples:\n  \
                  trustgate keygen --alg p256 --out client     # prints the key's thumbprint\n  \
                  TOKEN=$(trustgate sign jwt --key idp.key.pem --sub alice --cnf-jkt <thumbprint>)\n  \
                  curl -H \"Authorization: DPoP $TOKEN\" \\\n       \
                  -H \"DPoP: $(trustgate sign dpop --key client.key.pem --url https://api.example.com/orders --token $TOKEN)\" \\\n       \
                  https://api.example.com/orders"
)]
pub struct SignDpopArgs {
    /// The client's private key, PEM (PKCS#8, SEC1 or PKCS#1)
    #[arg(long, value_name = "PEM")]
    key: PathBuf,
    /// The JWS algorithm [default: the key's: RS256, ES256, ES384, EdDSA]
    #[arg(long, value_name = "ALG")]
    alg: Option<String>,
    /// The request method (htm)
    #[arg(long, value_name = "METHOD", default_value = "GET")]
    method: String,
    /// The request URL (htu: its query and fragment are left out)
    #[arg(long, value_name = "URL")]
    url: String,
    /// The access token sent with the proof (ath)
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// The proof's jti [default: random]
    #[arg(long, value_name = "ID")]
    jti: Option<String>,
    /// The time the proof is made at, Unix seconds [default: now]
    #[arg(long, value_name = "UNIX")]
    at: Option<i64>,
}

/// The public JWK a proof carries: the key's members only (no `kid`, `use`, `alg`).
fn proof_jwk(key: &PrivateKey) -> Result<Value, CliError> {
    let mut jwk = keys::public_jwk(&key.public(), "", None)?;
    if let Value::Object(m) = &mut jwk {
        m.remove("kid");
        m.remove("use");
    }
    Ok(jwk)
}

pub fn run(a: &SignDpopArgs) -> Output {
    let text = zeroize::Zeroizing::new(crate::read_text(&a.key)?);
    let key = PrivateKey::from_pem(&text, &a.key.display().to_string())?;
    let public = key.public();
    let alg = match &a.alg {
        Some(name) => dpop::proof_alg(name).ok_or_else(|| {
            CliError::Usage(format!(
                "--alg {name:?}: expected ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512 or EdDSA"
            ))
        })?,
        None => keys::default_alg(&public),
    };
    if alg.is_hmac() || !alg.fits(&public) {
        return Err(CliError::Usage(format!(
            "--alg {alg} does not fit a {} key; it signs {}",
            public.kind(),
            keys::fitting_algs(&public).join(", ")
        )));
    }
    let htu = a.url.split(['?', '#']).next().unwrap_or_default();
    if dpop::normalize_uri(htu).is_none() {
        return Err(CliError::Usage(format!(
            "--url {:?}: expected an absolute http or https URL, e.g. https://api.example.com/orders",
            a.url
        )));
    }
    let now = match a.at {
        Some(t) => t,
        None => crate::now()?,
    };
    let jti = match &a.jti {
        Some(j) => j.clone(),
        None => keys::uuid4()?,
    };
    let jwk = proof_jwk(&key)?;
    let header = json!({"typ": "dpop+jwt", "alg": alg.name(), "jwk": jwk});
    let mut claims = serde_json::Map::new();
    claims.insert("jti".into(), json!(jti));
    claims.insert("htm".into(), json!(a.method));
    claims.insert("htu".into(), json!(htu));
    claims.insert("iat".into(), json!(now));
    if let Some(t) = &a.token {
        claims.insert("ath".into(), json!(dpop::token_hash(t)));
    }
    let claims = Value::Object(claims);
    let input = format!(
        "{}.{}",
        b64::url_encode(header.to_string().as_bytes()),
        b64::url_encode(claims.to_string().as_bytes())
    );
    let proof = format!(
        "{input}.{}",
        b64::url_encode(&key.sign(alg, input.as_bytes())?)
    );
    let expect = Expect {
        method: &a.method,
        uri: htu,
        token: a.token.as_deref(),
        algorithms: &[alg],
        max_age_s: 300,
        skew_s: 0,
        now,
    };
    let verified = UntrustedProof::parse(&proof)
        .and_then(|p| p.verify(&expect))
        .map_err(|e| {
            CliError::Usage(format!(
                "the filter would refuse this proof ({e:?}): check --method, --url and --jti"
            ))
        })?;
    eprintln!(
        "proof key thumbprint (the token's cnf.jkt): {}",
        verified.jkt
    );
    Ok(proof)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        a: SignDpopArgs,
    }

    #[test]
    fn a_proof_verifies_and_carries_no_private_part() {
        let dir = std::env::temp_dir().join(format!("trustgate-sign-dpop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.pem");
        let key = PrivateKey::generate(keys::KeyType::P256, 2048).unwrap();
        std::fs::write(&path, key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
        let p = path.to_str().unwrap();
        let a = T::try_parse_from([
            "t",
            "--key",
            p,
            "--method",
            "POST",
            "--url",
            "https://api.example.com/o?x=1",
            "--token",
            "tok",
            "--at",
            "1000",
            "--jti",
            "j1",
        ])
        .unwrap()
        .a;
        let proof = run(&a).unwrap();
        let parsed = UntrustedProof::parse(&proof).unwrap();
        let v = parsed
            .verify(&Expect {
                method: "POST",
                uri: "https://api.example.com/o",
                token: Some("tok"),
                algorithms: &[trustgate::formats::crypto::Alg::ES256],
                max_age_s: 300,
                skew_s: 0,
                now: 1000,
            })
            .unwrap();
        assert_eq!(v.jti, "j1");
        let header: Value =
            serde_json::from_slice(&b64::url_decode(proof.split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header["typ"], "dpop+jwt");
        assert!(header["jwk"].get("d").is_none() && header["jwk"].get("kid").is_none());
        let bad = T::try_parse_from(["t", "--key", p, "--url", "ftp://x/"])
            .unwrap()
            .a;
        assert!(matches!(run(&bad), Err(CliError::Usage(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
