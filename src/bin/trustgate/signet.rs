//! `trustgate sign signet` and `trustgate signet public-key`: self-contained Signet proofs (DESIGN, "Wire
//! formats": Signet-Proof), with the binding and request messages from the library's [`signet`] module.

use crate::keys::{hex, random_bytes};
use crate::{CliError, Output};
use clap::Args;
use ed25519_dalek::{Signer as _, SigningKey};
use trustgate::formats::{b64, signet};

#[derive(Args)]
#[command(about = "Print the master public key (hex) to put in a signet provider's master_keys")]
pub struct PublicKeyArgs {
    /// The master key's 32-byte Ed25519 seed, 64 hex digits
    #[arg(long, value_name = "HEX")]
    master_seed: String,
}

#[derive(Args)]
#[command(about = "A self-contained Signet-Proof header for one request, and a curl line")]
pub struct SignSignetArgs {
    /// The master key's 32-byte Ed25519 seed, 64 hex digits
    #[arg(long, value_name = "HEX")]
    master_seed: String,
    /// The request method
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request path and raw query, as sent: /path[?query]
    #[arg(long, value_name = "PATH[?QUERY]")]
    url: String,
    /// The purpose bound to the ephemeral key (a signet provider's `purposes`)
    #[arg(long, default_value = "api-access")]
    purpose: String,
    /// The ephemeral key's lifetime, seconds
    #[arg(
        long,
        default_value_t = 300,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    ttl: i64,
    /// The origin of the printed curl line
    #[arg(long, default_value = "http://127.0.0.1:10000", value_name = "URL")]
    base: String,
    /// The ephemeral key's seed (default: a new random key)
    #[arg(long, value_name = "HEX")]
    ephemeral_seed: Option<String>,
    /// The proof's timestamp, Unix seconds (default: now)
    #[arg(long, value_name = "UNIX")]
    at: Option<i64>,
    /// Print only the header value
    #[arg(long)]
    header_only: bool,
}

fn seed(hex: &str, what: &str) -> Result<SigningKey, CliError> {
    b64::hex32(hex)
        .map(|s| SigningKey::from_bytes(&s))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{what}: expected 64 hex digits (a 32-byte Ed25519 seed)"
            ))
        })
}

pub fn public_key(a: &PublicKeyArgs) -> Output {
    let master = seed(&a.master_seed, "--master-seed")?;
    Ok(hex(&master.verifying_key().to_bytes()))
}

pub fn sign(a: &SignSignetArgs) -> Output {
    let master = seed(&a.master_seed, "--master-seed")?;
    let method = a.method.to_ascii_uppercase();
    let url = a.url.as_str();
    if !url.starts_with('/') {
        return Err(CliError::Usage(
            "--url: expected the request path, starting with /".into(),
        ));
    }
    let purpose = a.purpose.as_str();
    if purpose.contains([';', '\r', '\n']) {
        return Err(CliError::Usage(
            "--purpose: may not contain ';' or a line break".into(),
        ));
    }
    let now = match a.at {
        Some(t) => t,
        None => crate::now()?,
    };
    let eph = match &a.ephemeral_seed {
        Some(h) => seed(h, "--ephemeral-seed")?,
        None => SigningKey::from_bytes(&random_bytes::<32>()?),
    };
    let epk = eph.verifying_key().to_bytes();
    let exp = now.saturating_add(a.ttl);
    let binding = master
        .sign(&signet::binding_message(&epk, exp, purpose))
        .to_bytes();
    let nonce = random_bytes::<16>()?;
    let jti = random_bytes::<16>()?;
    let sig = eph
        .sign(&signet::request_message(&method, url, now, &nonce))
        .to_bytes();
    let e = b64::url_encode;
    let header = format!(
        "v1;m=compact;jti={};s={};n={};ts={now};epk={};p={};exp={exp};pur={purpose}",
        e(&jti),
        e(&sig),
        e(&nonce),
        e(&epk),
        e(&binding)
    );
    if a.header_only {
        return Ok(header);
    }
    let base = &a.base;
    Ok(format!(
        "Signet-Proof: {header}\n\ncurl -si -X {method} -H 'Signet-Proof: {header}' '{base}{url}'"
    ))
}
