//! The native `trustgate` command: checks a filter config without Envoy, and signs Signet proofs.

use ed25519_dalek::{Signer as _, SigningKey};
use std::process::ExitCode;
use trustgate::{b64, signet};

const USAGE: &str = "usage:
  trustgate check-config FILE
  trustgate sign signet --master-seed HEX --method METHOD --url PATH[?QUERY]
                        [--purpose P] [--ttl SECONDS] [--base URL] [--ephemeral-seed HEX] [--at UNIX] [--header-only]
  trustgate signet public-key --master-seed HEX

  check-config FILE    compile a filter config (JSON) exactly as the filter's on_configure does;
                       prints the JSON path and the expected value of the first error
  sign signet          print a self-contained Signet-Proof header for one request, and a curl line
                       (--ttl: the ephemeral key's lifetime, default 300 s; --base: default http://127.0.0.1:10000;
                       --header-only: print only the header value)
  signet public-key    print the master public key (hex) to put in a signet provider's master_keys";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["-h" | "--help" | "help"] | [_, "-h" | "--help"] | [_, _, "-h" | "--help"] => {
            println!("{USAGE}");
            if words.is_empty() {
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        ["check-config", file] => check_config(file),
        ["sign", "signet", rest @ ..] => run(sign_signet(rest)),
        ["signet", "public-key", rest @ ..] => run(public_key(rest)),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(r: Result<String, String>) -> ExitCode {
    match r {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("trustgate: {e}");
            ExitCode::from(2)
        }
    }
}

fn check_config(file: &str) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{file}: cannot read: {e}");
            return ExitCode::from(2);
        }
    };
    match trustgate::config::compile(&bytes) {
        Ok(p) => {
            println!(
                "{file}: ok ({} providers, {} rules, strips {})",
                p.providers.len(),
                p.rules.len(),
                p.strip.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{file}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` options; `--flag` alone gives an empty value.
fn options<'a>(args: &[&'a str]) -> Result<Vec<(&'a str, &'a str)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let name = a
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {a:?}"))?;
        let value = match it.peek() {
            Some(v) if !v.starts_with("--") => it.next().copied().unwrap_or_default(),
            _ => "",
        };
        out.push((name, value));
    }
    Ok(out)
}

fn opt<'a>(opts: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    opts.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn seed(hex: &str, what: &str) -> Result<SigningKey, String> {
    b64::hex32(hex)
        .map(|s| SigningKey::from_bytes(&s))
        .ok_or_else(|| format!("{what}: expected 64 hex digits (a 32-byte Ed25519 seed)"))
}

fn random<const N: usize>() -> Result<[u8; N], String> {
    use std::io::Read as _;
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(b)
}

fn public_key(args: &[&str]) -> Result<String, String> {
    let opts = options(args)?;
    let master = seed(
        opt(&opts, "master-seed").ok_or("--master-seed HEX is required")?,
        "--master-seed",
    )?;
    Ok(master
        .verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn sign_signet(args: &[&str]) -> Result<String, String> {
    let opts = options(args)?;
    let known = [
        "master-seed",
        "method",
        "url",
        "purpose",
        "ttl",
        "base",
        "ephemeral-seed",
        "at",
        "header-only",
    ];
    if let Some((n, _)) = opts.iter().find(|(n, _)| !known.contains(n)) {
        return Err(format!("unknown option --{n}"));
    }
    let master = seed(
        opt(&opts, "master-seed").ok_or("--master-seed HEX is required")?,
        "--master-seed",
    )?;
    let method = opt(&opts, "method").unwrap_or("GET").to_ascii_uppercase();
    let url = opt(&opts, "url").ok_or("--url /path[?query] is required")?;
    if !url.starts_with('/') {
        return Err("--url: expected the request path, starting with /".into());
    }
    let purpose = opt(&opts, "purpose").unwrap_or("api-access");
    let ttl: i64 = opt(&opts, "ttl")
        .unwrap_or("300")
        .parse()
        .map_err(|_| "--ttl: expected seconds")?;
    let now = match opt(&opts, "at") {
        Some(t) => t.parse().map_err(|_| "--at: expected unix seconds")?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs()
            .try_into()
            .map_err(|_| "clock out of range")?,
    };
    let eph = match opt(&opts, "ephemeral-seed") {
        Some(h) => seed(h, "--ephemeral-seed")?,
        None => SigningKey::from_bytes(&random::<32>()?),
    };
    let epk = eph.verifying_key().to_bytes();
    let exp = now + ttl;
    let binding = master
        .sign(&signet::binding_message(&epk, exp, purpose))
        .to_bytes();
    let nonce = random::<16>()?;
    let jti = random::<16>()?;
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
    if opt(&opts, "header-only").is_some() {
        return Ok(header);
    }
    let base = opt(&opts, "base").unwrap_or("http://127.0.0.1:10000");
    Ok(format!(
        "Signet-Proof: {header}\n\ncurl -si -X {method} -H 'Signet-Proof: {header}' '{base}{url}'"
    ))
}
