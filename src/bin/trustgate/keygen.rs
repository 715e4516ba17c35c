//! `trustgate keygen` (a new signing key in three files; with `--assertion`, the `signing_key` block of the
//! filter's identity assertions, DESIGN.md "Identity assertions for the upstream") and `trustgate jwks` (public
//! PEM files → a JWK Set).

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
                  Existing files are not overwritten unless --force is given.\n\n\
                  --assertion (EdDSA or ES256 keys) makes the key that signs the filter's identity assertions: \
                  standard output is then JSON with \"signing_key\", the block for the config's \"assertion\" \
                  (its pem is {\"env\": NAME}), and \"public_jwk\", the public key to move into \
                  \"previous_keys\" when the next key replaces this one. The private key is never printed: it \
                  is written to PREFIX.key.pem as always, and you load that file into the variable NAME \
                  (export NAME=\"$(cat PREFIX.key.pem)\", a Kubernetes Secret, ...) that Envoy passes to the \
                  Wasm VM (vm_config.environment_variables.host_env_keys). Notes go to standard error.",
    after_help = "Examples:\n  trustgate keygen --alg p256 --out keys/corp\n  \
                  trustgate sign jwt --key keys/corp.key.pem --iss https://idp.example.com/ --sub alice --aud api\n  \
                  trustgate keygen --alg EdDSA --kid gw-2026-12 --assertion --out keys/gw-2026-12 > signing-key.json"
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
    /// Print the assertion config's "signing_key" block and the public JWK as JSON (EdDSA or ES256 only)
    #[arg(long)]
    assertion: bool,
    /// With --assertion: the environment variable the filter reads the private key PEM from
    /// [default: TRUSTGATE_ASSERTION_KEY]
    #[arg(long, value_name = "NAME", requires = "assertion")]
    pem_env: Option<String>,
}

/// The variable `keygen --assertion` names in `signing_key.pem` unless `--pem-env` says otherwise.
pub const ASSERTION_KEY_ENV: &str = "TRUSTGATE_ASSERTION_KEY";

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

/// `--out PREFIX` → the three files keygen writes, after checking none exists (unless `--force`) and the
/// directory does.
fn output_files(a: &KeygenArgs) -> Result<[PathBuf; 3], CliError> {
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
    Ok(files)
}

/// With `--assertion`: the variable `signing_key.pem` names, after checking the key type is one assertions are
/// signed with (Ed25519 → EdDSA, P-256 → ES256).
fn assertion_env(a: &KeygenArgs, kind: KeyType) -> Result<Option<String>, CliError> {
    if !a.assertion {
        return Ok(None);
    }
    if !matches!(kind, KeyType::Ed25519 | KeyType::P256) {
        return Err(CliError::Usage(format!(
            "--assertion: assertions are signed with EdDSA (--alg EdDSA or ed25519) or ES256 (--alg ES256 or \
             p256), not --alg {}",
            a.alg
        )));
    }
    let name = a.pem_env.as_deref().unwrap_or(ASSERTION_KEY_ENV);
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(CliError::Usage(format!(
            "--pem-env {name:?}: expected an environment variable name (letters, digits and _, not starting \
             with a digit)"
        )));
    }
    Ok(Some(name.to_owned()))
}

/// What `keygen --assertion` prints: the `signing_key` block of the filter's `assertion` config (the private
/// key by reference to `env`) and the public JWK (`kid`, `alg`, `use`, no private member) that goes into
/// `previous_keys` at the next rotation.
pub fn assertion_block(public: &VerifyKey, kid: &str, env: &str) -> Result<Value, CliError> {
    let alg = match public {
        VerifyKey::Ed25519(_) => Alg::EdDSA,
        VerifyKey::P256(_) => Alg::ES256,
        other => {
            return Err(CliError::Usage(format!(
                "--assertion: a {} key cannot sign assertions (EdDSA or ES256 only)",
                other.kind()
            )))
        }
    };
    Ok(json!({
        "signing_key": { "alg": alg.name(), "kid": kid, "pem": { "env": env } },
        "public_jwk": keys::public_jwk(public, kid, Some(alg))?,
    }))
}

pub fn keygen(a: &KeygenArgs) -> Output {
    let (kind, pinned) = key_type(&a.alg)?;
    if a.bits.is_some() && kind != KeyType::Rsa {
        return Err(CliError::Usage("--bits is for RSA keys only".into()));
    }
    let env = assertion_env(a, kind)?;
    let files = output_files(a)?;
    let key = PrivateKey::generate(kind, a.bits.unwrap_or(2048))?;
    let public = key.public();
    let alg = pinned.unwrap_or_else(|| keys::default_alg(&public));
    let kid = match &a.kid {
        Some(k) if k.is_empty() => return Err(CliError::Usage("--kid: may not be empty".into())),
        Some(k) => k.clone(),
        None => keys::thumbprint(&public)?,
    };
    let jwks = json!({ "keys": [keys::public_jwk(&public, &kid, Some(alg))?] });
    let block = env
        .as_deref()
        .map(|env| assertion_block(&public, &kid, env))
        .transpose()?;
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
    let head = format!(
        "{} key, alg {alg}, kid {kid}\nRFC 7638 thumbprint (cnf.jkt of DPoP tokens bound to this key): {}",
        public.kind(),
        keys::thumbprint(&public)?
    );
    match (block, env) {
        (Some(block), Some(env)) => {
            eprintln!("{head}\n{}", assertion_notes(&files, &env));
            Ok(keys::pretty(&block))
        }
        _ => {
            let mut flags = if a.kid.is_some() {
                format!(" --kid '{kid}'")
            } else {
                String::new()
            };
            if alg != keys::default_alg(&public) {
                // A PEM file does not say which algorithm its JWK pins.
                flags.push_str(&format!(" --alg {alg}"));
            }
            Ok(format!("{head}\n{}", key_notes(&files, &flags)))
        }
    }
}

/// What keygen says about the files it wrote.
fn key_notes([private, public, jwks]: &[PathBuf; 3], flags: &str) -> String {
    format!(
        "wrote {}  private key (PKCS#8 PEM, mode 0600): keep it secret, never put it in a filter config\n\
         wrote {}  public key (PEM): a jwt provider's \"keys\": {{\"pem\": \"...\"}}\n\
         wrote {}  JWK Set (public only): a jwt provider's \"keys\": {{\"jwks\": ...}}, or serve it as your JWKS URL\n\
         \n\
         mint a token:  trustgate sign jwt --key {}{flags} --iss ISSUER --sub SUBJECT --aud AUDIENCE",
        private.display(),
        public.display(),
        jwks.display(),
        private.display(),
    )
}

/// What `keygen --assertion` says on standard error: where the private key is and how it reaches the filter.
fn assertion_notes([private, public, jwks]: &[PathBuf; 3], env: &str) -> String {
    format!(
        "wrote {}  private key (PKCS#8 PEM, mode 0600): the filter reads it from the variable {env}:\n\
         \x20   export {env}=\"$(cat {})\"   (and list {env} in vm_config.environment_variables.host_env_keys)\n\
         wrote {}  public key (PEM)\n\
         wrote {}  JWK Set (public only): what the proxy serves at assertion.jwks_path with this key\n\
         standard output: \"signing_key\" goes into the filter config's \"assertion\"; \"public_jwk\" goes into \
         \"previous_keys\" when the next key replaces this one",
        private.display(),
        private.display(),
        public.display(),
        jwks.display(),
    )
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
            assertion: false,
            pem_env: None,
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

    /// Runs `trustgate keygen` with these arguments.
    fn keygen_with(list: &[&str]) -> Output {
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            a: KeygenArgs,
        }
        use clap::Parser as _;
        keygen(
            &T::try_parse_from(std::iter::once("keygen").chain(list.iter().copied()))
                .unwrap()
                .a,
        )
    }

    /// The contract's `signing_key` (alg, kid, pem as `{"env": …}`) and a public JWK for `previous_keys`; the
    /// private key is a PKCS#8 PEM file holding the same key, and never in the output.
    #[test]
    fn keygen_assertion_prints_the_signing_key_block() {
        let dir = std::env::temp_dir().join(format!("tg-keygen-assertion-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for (alg, want_alg, kty, env) in [
            ("EdDSA", "EdDSA", "OKP", None),
            ("p256", "ES256", "EC", Some("GW_KEY")),
        ] {
            let out = dir.join(want_alg);
            let mut args = vec!["--alg", alg, "--kid", "gw-2026-12", "--assertion", "--out"];
            args.push(out.to_str().unwrap());
            if let Some(env) = env {
                args.extend(["--pem-env", env]);
            }
            let printed = keygen_with(&args).unwrap();
            let block: Value = serde_json::from_str(&printed).unwrap();
            let env = env.unwrap_or(ASSERTION_KEY_ENV);
            assert_eq!(
                block["signing_key"],
                json!({"alg": want_alg, "kid": "gw-2026-12", "pem": {"env": env}})
            );
            assert_eq!(block.as_object().unwrap().len(), 2, "{block}");
            let jwk = &block["public_jwk"];
            assert_eq!(jwk["kty"], kty);
            assert_eq!(jwk["kid"], "gw-2026-12");
            assert_eq!(jwk["alg"], want_alg);
            for private in ["d", "p", "q", "k"] {
                assert!(jwk.get(private).is_none(), "private member {private}");
            }
            let public = trustgate::formats::jwk::Jwk::from_value(jwk).unwrap();
            let pem = fs::read_to_string(path_with(&out, ".key.pem")).unwrap();
            assert!(
                pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
                "not PKCS#8"
            );
            assert!(
                !printed.contains(pem.lines().nth(1).unwrap()),
                "the private key was printed"
            );
            let private = PrivateKey::from_pem(&pem, "k").unwrap();
            assert_eq!(
                keys::thumbprint(&private.public()).unwrap(),
                keys::thumbprint(&public.key).unwrap()
            );
            // The JWK Set file holds the same public key.
            let set: Value =
                serde_json::from_slice(&fs::read(path_with(&out, ".jwks.json")).unwrap()).unwrap();
            assert_eq!(set["keys"][0], *jwk);
            // The block as printed is a working `assertion.signing_key`: the filter's compiler reads the key
            // from the variable, and the JWKS it serves starts with this public JWK.
            let config = json!({"rules": [{"require": "c"}],
                "providers": {"c": {"api_key": {"clients": {"a": {"key_sha256": "00".repeat(32)}}}}},
                "assertion": {"issuer": "https://gw", "audience": "app", "signing_key": block["signing_key"],
                              "claims": {"sub": "${client.id}"}}});
            let policy = trustgate::policy::config::compile_with_env(
                config.to_string().as_bytes(),
                &|name: &str| (name == env).then(|| pem.clone()),
            )
            .unwrap();
            let served: Value = serde_json::from_str(&policy.assertion.unwrap().jwks_body).unwrap();
            assert_eq!(served["keys"][0], *jwk);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keygen_assertion_refuses_other_keys_and_bad_variable_names() {
        let out = std::env::temp_dir().join(format!("tg-keygen-refused-{}", std::process::id()));
        let out = out.to_str().unwrap();
        for alg in ["rsa", "ES384", "PS256", "p384"] {
            let e = keygen_with(&["--alg", alg, "--assertion", "--out", out]).unwrap_err();
            assert!(
                matches!(&e, CliError::Usage(m) if m.contains("EdDSA") && m.contains("ES256")),
                "{e}"
            );
        }
        for name in ["", "1KEY", "MY-KEY", "A B"] {
            let e = keygen_with(&[
                "--alg",
                "EdDSA",
                "--assertion",
                "--pem-env",
                name,
                "--out",
                out,
            ])
            .unwrap_err();
            assert!(
                matches!(&e, CliError::Usage(m) if m.contains("--pem-env")),
                "{e}"
            );
        }
        assert!(!Path::new(&format!("{out}.key.pem")).exists());
    }
}
