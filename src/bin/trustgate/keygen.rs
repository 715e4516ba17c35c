//! `trustgate keygen` (a new signing key in three files) and `trustgate jwks` (public PEM files → a JWK Set).

use crate::keys::{self, KeyType, PrivateKey};
use crate::{CliError, Output};
use clap::Args;
use serde_json::{json, Value};
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use trustgate::formats::crypto::{Alg, VerifyKey};

#[derive(Args)]
#[command(
    about = "Make a signing key: private PEM (PKCS#8, mode 0600), public PEM and a public JWK Set",
    long_about = "Make a signing key and write three files next to PREFIX:\n\n  \
                  PREFIX.key.pem    the private key, PKCS#8 PEM, mode 0600 (for `trustgate sign ... --key`)\n  \
                  PREFIX.pub.pem    the public key, SubjectPublicKeyInfo PEM (a jwt provider's keys.pem,\n                    \
                  an http_signature key's pem)\n  \
                  PREFIX.jwks.json  a JWK Set with the public key only, with kid, alg and use (a jwt\n                    \
                  provider's keys.jwks, or what your JWKS URL serves)\n\n\
                  The kid defaults to the key's RFC 7638 thumbprint, which `sign jwt` also uses by default. \
                  Existing files are not overwritten unless --force is given.",
    after_help = "Example:\n  trustgate keygen --alg p256 --out keys/corp\n  \
                  trustgate sign jwt --key keys/corp.key.pem --iss https://idp.example.com/ --sub alice --aud api"
)]
pub struct KeygenArgs {
    /// The key type; a JWS algorithm name (ES256, RS256, PS256, EdDSA, ...) also pins the JWK's alg
    #[arg(long, value_name = "ALG")]
    alg: String,
    /// RSA modulus size, 2048 to 8192 [default: 2048]
    #[arg(long)]
    bits: Option<usize>,
    /// The key id (default: the RFC 7638 thumbprint of the public key)
    #[arg(long, value_name = "ID")]
    kid: Option<String>,
    /// Where to write: PREFIX.key.pem, PREFIX.pub.pem, PREFIX.jwks.json
    #[arg(long, value_name = "PREFIX")]
    out: PathBuf,
    /// Replace files that exist
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
#[command(
    about = "Public key PEM files -> a JWK Set (JSON), for a jwt provider's keys.jwks",
    long_about = "Public key PEM files (SubjectPublicKeyInfo `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`; RSA, \
                  P-256, P-384, Ed25519) to a JWK Set on standard output. A private key PEM is accepted too: \
                  only its public half is written. Each key gets kid (its RFC 7638 thumbprint unless --kid), \
                  use \"sig\" and alg (the key type's algorithm: RS256 for RSA, ES256, ES384, EdDSA; --alg \
                  picks another, --no-alg leaves it out so an RSA key verifies every RS*/PS* algorithm).",
    after_help = "Example:\n  trustgate jwks keys/corp.pub.pem keys/next.pub.pem > jwks.json"
)]
pub struct JwksArgs {
    /// PEM files; each may hold several keys
    #[arg(required = true, value_name = "PEM")]
    files: Vec<PathBuf>,
    /// The kid (only with a single key)
    #[arg(long, value_name = "ID")]
    kid: Option<String>,
    /// The JWS algorithm to pin in each JWK (must fit every key)
    #[arg(long, value_name = "ALG", conflicts_with = "no_alg")]
    alg: Option<String>,
    /// Leave alg out of the JWKs
    #[arg(long)]
    no_alg: bool,
}

/// `--alg` of keygen: a key type, or a JWS algorithm (which pins the JWK's `alg`).
fn key_type(name: &str) -> Result<(KeyType, Option<Alg>), CliError> {
    let lower = name.to_ascii_lowercase();
    let t = match lower.as_str() {
        "ed25519" | "okp" => return Ok((KeyType::Ed25519, None)),
        "p256" | "p-256" | "ec" => return Ok((KeyType::P256, None)),
        "p384" | "p-384" => return Ok((KeyType::P384, None)),
        "rsa" => return Ok((KeyType::Rsa, None)),
        _ => Alg::from_name(name),
    };
    let alg = t.filter(|a| !a.is_hmac()).ok_or_else(|| {
        CliError::Usage(format!(
            "--alg {name:?}: expected a key type (ed25519, p256, p384, rsa) or a JWS algorithm \
             (EdDSA, ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512); HMAC secrets need no keygen"
        ))
    })?;
    let kind = match alg {
        Alg::ES256 => KeyType::P256,
        Alg::ES384 => KeyType::P384,
        Alg::EdDSA => KeyType::Ed25519,
        _ => KeyType::Rsa,
    };
    Ok((kind, Some(alg)))
}

fn path_with(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Creates `path` with `contents`, readable by the owner only when `private`. Refuses to replace a file
/// unless `force`.
fn write_new(path: &Path, contents: &[u8], private: bool, force: bool) -> Result<(), CliError> {
    let fail =
        |e: std::io::Error| CliError::Failure(format!("{}: cannot write: {e}", path.display()));
    if force && path.exists() {
        // Removed rather than truncated, so the new file gets its own (private) mode from the start.
        fs::remove_file(path).map_err(fail)?;
    }
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(path).map_err(fail)?;
    f.write_all(contents).map_err(fail)?;
    f.sync_all().map_err(fail)
}

pub fn keygen(a: &KeygenArgs) -> Output {
    let (kind, pinned) = key_type(&a.alg)?;
    if a.bits.is_some() && kind != KeyType::Rsa {
        return Err(CliError::Usage("--bits is for RSA keys only".into()));
    }
    if a.out.as_os_str().is_empty() || a.out.to_string_lossy().ends_with('/') {
        return Err(CliError::Usage(
            "--out: expected a file name prefix such as keys/corp (files keys/corp.key.pem, ... are written)"
                .into(),
        ));
    }
    let files = [
        path_with(&a.out, ".key.pem"),
        path_with(&a.out, ".pub.pem"),
        path_with(&a.out, ".jwks.json"),
    ];
    if !a.force {
        if let Some(f) = files.iter().find(|f| f.exists()) {
            return Err(CliError::Failure(format!(
                "{} exists: choose another --out, or add --force to replace it",
                f.display()
            )));
        }
    }
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(CliError::Failure(format!(
                "{}: no such directory (create it first)",
                dir.display()
            )));
        }
    }
    let key = PrivateKey::generate(kind, a.bits.unwrap_or(2048))?;
    let public = key.public();
    let alg = pinned.unwrap_or_else(|| keys::default_alg(&public));
    let kid = match &a.kid {
        Some(k) if k.is_empty() => return Err(CliError::Usage("--kid: may not be empty".into())),
        Some(k) => k.clone(),
        None => keys::thumbprint(&public)?,
    };
    let jwks = json!({ "keys": [keys::public_jwk(&public, &kid, Some(alg))?] });
    let [private_path, public_path, jwks_path] = &files;
    write_new(private_path, key.to_pkcs8_pem()?.as_bytes(), true, a.force)?;
    write_new(
        public_path,
        keys::public_pem(&public)?.as_bytes(),
        false,
        a.force,
    )?;
    write_new(
        jwks_path,
        format!("{}\n", keys::pretty(&jwks)).as_bytes(),
        false,
        a.force,
    )?;
    let mut flags = if a.kid.is_some() {
        format!(" --kid '{kid}'")
    } else {
        String::new()
    };
    if alg != keys::default_alg(&public) {
        // A PEM file does not say which algorithm its JWK pins.
        flags.push_str(&format!(" --alg {alg}"));
    }
    Ok(format!(
        "{kind} key, alg {alg}, kid {kid}\n\
         wrote {}  private key (PKCS#8 PEM, mode 0600): keep it secret, never put it in a filter config\n\
         wrote {}  public key (PEM): a jwt provider's \"keys\": {{\"pem\": \"...\"}}\n\
         wrote {}  JWK Set (public only): a jwt provider's \"keys\": {{\"jwks\": ...}}, or serve it as your JWKS URL\n\
         \n\
         mint a token:  trustgate sign jwt --key {}{flags} --iss ISSUER --sub SUBJECT --aud AUDIENCE",
        private_path.display(),
        public_path.display(),
        jwks_path.display(),
        private_path.display(),
        kind = public.kind(),
    ))
}

/// Every public key in a PEM text; a private key PEM gives its public half.
fn public_keys(text: &str, what: &str) -> Result<Vec<VerifyKey>, CliError> {
    if text.contains("PRIVATE KEY-----") {
        return Ok(vec![PrivateKey::from_pem(text, what)?.public()]);
    }
    VerifyKey::from_pem(text).map_err(|e| CliError::Failure(format!("{what}: {e}")))
}

pub fn jwks(a: &JwksArgs) -> Output {
    let pinned = a.alg.as_deref().map(keys::parse_alg).transpose()?;
    let mut all = Vec::new();
    for f in &a.files {
        let text = crate::read_text(f)?;
        all.extend(public_keys(&text, &f.display().to_string())?);
    }
    if a.kid.is_some() && all.len() != 1 {
        return Err(CliError::Usage(format!(
            "--kid names one key, and the files hold {}; leave it out to use each key's thumbprint",
            all.len()
        )));
    }
    let mut out = Vec::new();
    for key in &all {
        let kid = match &a.kid {
            Some(k) => k.clone(),
            None => keys::thumbprint(key)?,
        };
        let alg = if a.no_alg {
            None
        } else {
            Some(pinned.unwrap_or_else(|| keys::default_alg(key)))
        };
        out.push(keys::public_jwk(key, &kid, alg)?);
    }
    let set = json!({ "keys": Value::Array(out) });
    // What the filter would make of it.
    let parsed = trustgate::formats::jwk::parse_jwks_value(&set)
        .map_err(|e| CliError::Failure(format!("internal error: JWK Set refused: {e}")))?;
    if let Some((i, e)) = parsed.refused.first() {
        return Err(CliError::Failure(format!(
            "internal error: key [{i}] refused by the filter: {e}"
        )));
    }
    Ok(keys::pretty(&set))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types_and_algorithms() {
        assert_eq!(key_type("ed25519").unwrap(), (KeyType::Ed25519, None));
        assert_eq!(key_type("P256").unwrap(), (KeyType::P256, None));
        assert_eq!(key_type("rsa").unwrap(), (KeyType::Rsa, None));
        assert_eq!(key_type("PS256").unwrap(), (KeyType::Rsa, Some(Alg::PS256)));
        assert_eq!(
            key_type("ES384").unwrap(),
            (KeyType::P384, Some(Alg::ES384))
        );
        assert!(matches!(key_type("HS256"), Err(CliError::Usage(_))));
        assert!(matches!(key_type("p521"), Err(CliError::Usage(_))));
    }

    #[test]
    fn keygen_writes_three_files_and_refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("tg-keygen-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let args = KeygenArgs {
            alg: "ed25519".into(),
            bits: None,
            kid: Some("k1".into()),
            out: dir.join("corp"),
            force: false,
        };
        let out = keygen(&args).unwrap();
        assert!(out.contains("kid k1"), "{out}");
        let jwks: Value =
            serde_json::from_slice(&fs::read(dir.join("corp.jwks.json")).unwrap()).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], "k1");
        assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
        assert_eq!(jwks["keys"][0]["use"], "sig");
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "private member in the JWKS"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(dir.join("corp.key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(keygen(&args), Err(CliError::Failure(m)) if m.contains("--force")));
        let forced = KeygenArgs {
            force: true,
            ..args
        };
        keygen(&forced).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
