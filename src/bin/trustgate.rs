//! The native `trustgate` command: the client-side tools an auth filter needs (docs/cli.md).
//!
//! - `check-config`: compile a filter config exactly as the filter's `on_configure` does.
//! - `keygen`, `jwks`: make signing keys; publish public keys as PEM and JWK Sets; `keygen --assertion`: the
//!   `signing_key` block of the filter's identity assertions.
//! - `sign jwt | dpop | hmac | httpsig | signet`: make the credential each provider kind verifies (a DPoP proof
//!   for a DPoP-bound token: `sign jwt --cnf-jkt`, then `sign dpop`).
//! - `trust`: onboard an OIDC issuer (discovery, JWKS, a sample token) and print the provider block, the Envoy
//!   cluster and the Istio objects it needs.
//! - `verify-assertion`: check an identity assertion against the proxy's JWKS URL as an application must, and
//!   say why it fails.
//!
//! Everything is checked with the library's own verifiers before it is printed. Exit codes: 0 success, 1 the
//! work failed (unreadable file, network, verification), 2 the command line is wrong.
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

// A crate root's modules live beside it; these live in src/bin/trustgate/.
#[path = "trustgate/http.rs"]
mod http;
#[path = "trustgate/keygen.rs"]
mod keygen;
#[path = "trustgate/keys.rs"]
mod keys;
#[path = "trustgate/sign_dpop.rs"]
mod sign_dpop;
#[path = "trustgate/sign_hmac.rs"]
mod sign_hmac;
#[path = "trustgate/sign_httpsig.rs"]
mod sign_httpsig;
#[path = "trustgate/sign_jwt.rs"]
mod sign_jwt;
#[path = "trustgate/signet.rs"]
mod signet;
#[path = "trustgate/trust.rs"]
mod trust;
#[path = "trustgate/verify_assertion.rs"]
mod verify_assertion;

use clap::{Parser, Subcommand};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Why a command failed; decides the exit code.
#[derive(Debug)]
pub enum CliError {
    /// The command line is wrong (exit 2).
    Usage(String),
    /// The work failed (exit 1).
    Failure(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Failure(m) => f.write_str(m),
        }
    }
}

/// What a command prints on success (stdout).
pub type Output = Result<String, CliError>;

#[derive(Parser)]
#[command(
    name = "trustgate",
    version,
    about = "Client-side tools for the trustgate proxy-wasm auth filter",
    long_about = "Client-side tools for the trustgate proxy-wasm auth filter: check a filter config, make \
                  keys, mint the credentials each provider kind verifies, onboard an OIDC issuer, and verify the identity \
                  assertions the filter writes for the upstream.\n\n\
                  Exit codes: 0 success, 1 the work failed, 2 the command line is wrong. See docs/cli.md.",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Compile a filter config (JSON) exactly as the filter's on_configure does
    #[command(
        long_about = "Compile a filter config (JSON) exactly as the filter's on_configure does. Prints a \
                      summary, or the JSON path and the expected value of the first error (exit 1)."
    )]
    CheckConfig {
        /// The filter config (the JSON in Envoy's StringValue or Istio's pluginConfig)
        file: PathBuf,
    },
    Keygen(keygen::KeygenArgs),
    Jwks(keygen::JwksArgs),
    /// Mint a credential: a JWT, a DPoP proof, a gatekeeper HMAC header, an RFC 9421 signature, a Signet proof
    #[command(arg_required_else_help = true)]
    Sign {
        #[command(subcommand)]
        what: Sign,
    },
    Trust(trust::TrustArgs),
    VerifyAssertion(verify_assertion::VerifyAssertionArgs),
    /// Signet helpers
    #[command(arg_required_else_help = true)]
    Signet {
        #[command(subcommand)]
        what: SignetCommand,
    },
}

#[derive(Subcommand)]
enum Sign {
    Jwt(sign_jwt::SignJwtArgs),
    Dpop(sign_dpop::SignDpopArgs),
    Hmac(sign_hmac::SignHmacArgs),
    Httpsig(sign_httpsig::SignHttpsigArgs),
    Signet(signet::SignSignetArgs),
}

#[derive(Subcommand)]
enum SignetCommand {
    PublicKey(signet::PublicKeyArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors exit 2 (clap's convention).
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let result = match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Keygen(a) => keygen::keygen(&a),
        Command::Jwks(a) => keygen::jwks(&a),
        Command::Sign { what } => match what {
            Sign::Jwt(a) => sign_jwt::run(&a),
            Sign::Dpop(a) => sign_dpop::run(&a),
            Sign::Hmac(a) => sign_hmac::run(&a),
            Sign::Httpsig(a) => sign_httpsig::run(&a),
            Sign::Signet(a) => signet::sign(&a),
        },
        Command::Trust(a) => trust::run(&a),
        Command::VerifyAssertion(a) => verify_assertion::run(&a),
        Command::Signet { what } => match what {
            SignetCommand::PublicKey(a) => signet::public_key(&a),
        },
    };
    match result {
        Ok(mut out) => {
            use std::io::Write as _;
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            // A closed pipe (`trustgate jwks k.pem | head`) is not an error worth a message.
            match std::io::stdout().lock().write_all(out.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("trustgate: cannot write the output: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(CliError::Usage(m)) => {
            eprintln!("trustgate: {m}");
            eprintln!("(run with --help for the options)");
            ExitCode::from(2)
        }
        Err(CliError::Failure(m)) => {
            eprintln!("trustgate: {m}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &Path) -> Output {
    let bytes = read_file(file)?;
    let shown = file.display();
    match trustgate::policy::config::compile(&bytes) {
        Ok(p) => Ok({
            for w in &p.warnings {
                eprintln!("trustgate: warning: {w}");
            }
            format!(
                "{shown}: ok ({} providers, {} rules, strips {})",
                p.providers.len(),
                p.rules.len(),
                p.strip.join(", ")
            )
        }),
        Err(e) => Err(CliError::Failure(format!("{shown}: {e}"))),
    }
}

/// Reads a file (`-` is standard input).
pub fn read_file(path: &Path) -> Result<Vec<u8>, CliError> {
    if path.as_os_str() == "-" {
        use std::io::Read as _;
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .map_err(|e| CliError::Failure(format!("cannot read standard input: {e}")))?;
        return Ok(v);
    }
    std::fs::read(path)
        .map_err(|e| CliError::Failure(format!("{}: cannot read: {e}", path.display())))
}

/// Reads a text file (`-` is standard input).
pub fn read_text(path: &Path) -> Result<String, CliError> {
    String::from_utf8(read_file(path)?)
        .map_err(|_| CliError::Failure(format!("{}: not UTF-8 text", path.display())))
}

/// The current time, Unix seconds.
pub fn now() -> Result<i64, CliError> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or_else(|| CliError::Failure("the system clock is before 1970".into()))
}

/// A secret given directly or through an environment variable (exactly one of the two).
pub fn secret_from(
    value: Option<&str>,
    env: Option<&str>,
    names: (&str, &str),
) -> Result<Option<zeroize::Zeroizing<String>>, CliError> {
    match (value, env) {
        (Some(_), Some(_)) => Err(CliError::Usage(format!(
            "{} and {} are exclusive: give one",
            names.0, names.1
        ))),
        (Some(v), None) => Ok(Some(zeroize::Zeroizing::new(v.to_owned()))),
        (None, Some(name)) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Some(zeroize::Zeroizing::new(v))),
            _ => Err(CliError::Usage(format!(
                "{} {name}: the environment variable {name} is not set or empty",
                names.1
            ))),
        },
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
