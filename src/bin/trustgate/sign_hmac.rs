//! `trustgate sign hmac`: the gatekeeper `Authorization: HMAC ...` header value (DESIGN, "Wire formats":
//! Gatekeeper HMAC), with the string to sign from the library's [`gatekeeper::message`]; the header is parsed
//! and verified by [`gatekeeper`] before it is printed.

use crate::{CliError, Output};
use clap::Args;
use std::path::PathBuf;
use trustgate::formats::crypto::{hmac_sha256, HmacSha256Key};
use trustgate::formats::gatekeeper;

#[derive(Args)]
#[command(
    about = "The gatekeeper `Authorization: HMAC ...` header value for one request",
    long_about = "Print the value of the gatekeeper `Authorization` header for one request:\n\n  \
                  HMAC client_id=\"…\",timestamp=\"…\",nonce=\"…\",signature=\"<64 lowercase hex>\"\n\n\
                  signature = hex(HMAC-SHA256(secret, METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nBODY)), PATH without \
                  the query (the request may carry one), BODY the raw body (empty without --body/--body-file; \
                  what a provider with \"body\": \"empty\" expects whatever is sent). Each call makes a new \
                  nonce (a UUID, as the reference client does): a nonce is accepted once.",
    after_help = "Example:\n  \
                  curl -H \"Authorization: $(trustgate sign hmac --client-id 3f2c1a9e-0000-4000-8000-000000000001 \\\n      \
                  --secret-env GK_SECRET --method POST --path /api/orders --body-file order.json)\" \\\n      \
                  --data-binary @order.json http://127.0.0.1:10000/api/orders"
)]
pub struct SignHmacArgs {
    /// The client id (a key of the provider's `clients`)
    #[arg(long, value_name = "ID")]
    client_id: String,
    /// The client's shared secret
    #[arg(long, value_name = "SECRET", required_unless_present = "secret_env")]
    secret: Option<String>,
    /// Read the secret from this environment variable instead (keeps it out of the process list)
    #[arg(long, value_name = "NAME")]
    secret_env: Option<String>,
    /// The request method
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request path (a query is allowed and is not signed)
    #[arg(long, value_name = "PATH")]
    path: String,
    /// The body, from a file (`-`: standard input)
    #[arg(long, value_name = "FILE", conflicts_with = "body")]
    body_file: Option<PathBuf>,
    /// The body, as text
    #[arg(long, value_name = "TEXT")]
    body: Option<String>,
    /// The timestamp, Unix seconds [default: now]
    #[arg(long, value_name = "UNIX")]
    timestamp: Option<String>,
    /// The nonce [default: a random UUID]
    #[arg(long, value_name = "NONCE")]
    nonce: Option<String>,
}

/// A header parameter value the filter's parser reads back unchanged.
fn plain(what: &str, v: &str) -> Result<(), CliError> {
    if v.is_empty()
        || v.chars()
            .any(|c| matches!(c, '"' | '\\' | ',') || c.is_control())
    {
        return Err(CliError::Usage(format!(
            "{what}: must be non-empty, without quotes, backslashes, commas or control characters"
        )));
    }
    Ok(())
}

pub fn run(a: &SignHmacArgs) -> Output {
    let secret = crate::secret_from(
        a.secret.as_deref(),
        a.secret_env.as_deref(),
        ("--secret", "--secret-env"),
    )?
    .ok_or_else(|| CliError::Usage("--secret or --secret-env is required".into()))?;
    plain("--client-id", &a.client_id)?;
    let method = a.method.to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(CliError::Usage(format!(
            "--method {:?}: expected e.g. GET or POST",
            a.method
        )));
    }
    if !a.path.starts_with('/') || a.path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(CliError::Usage(format!(
            "--path {:?}: expected the request path as sent, starting with / (no spaces)",
            a.path
        )));
    }
    let timestamp = match &a.timestamp {
        Some(t) if !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()) => {
            t.clone()
        }
        Some(t) => {
            return Err(CliError::Usage(format!(
                "--timestamp {t:?}: expected Unix seconds (digits only)"
            )))
        }
        None => crate::now()?.to_string(),
    };
    let nonce = match &a.nonce {
        Some(n) => n.clone(),
        None => crate::keys::uuid4()?,
    };
    plain("--nonce", &nonce)?;
    let body = match (&a.body_file, &a.body) {
        (Some(f), _) => crate::read_file(f)?,
        (None, Some(t)) => t.as_bytes().to_vec(),
        (None, None) => Vec::new(),
    };
    // DESIGN: PATH is the path without the query.
    let bare = a.path.split(['?', '#']).next().unwrap_or_default();
    let sig = hmac_sha256(
        secret.as_bytes(),
        &gatekeeper::message(&method, bare, &timestamp, &nonce, &body),
    );
    let params = format!(
        "client_id=\"{}\",timestamp=\"{timestamp}\",nonce=\"{nonce}\",signature=\"{}\"",
        a.client_id,
        crate::keys::hex(&sig)
    );
    // What the filter does with it.
    let cred = gatekeeper::parse(&params).map_err(|_| {
        CliError::Usage(format!(
            "the header would be refused as malformed (over {} bytes?)",
            gatekeeper::MAX_HEADER_BYTES
        ))
    })?;
    let key = HmacSha256Key::new(secret.as_bytes())
        .ok_or_else(|| CliError::Usage("the secret cannot be an HMAC key".into()))?;
    if !gatekeeper::verify(&cred, &key, &method, &a.path, &body) {
        return Err(CliError::Failure(
            "internal error: the signature does not verify".into(),
        ));
    }
    Ok(format!("HMAC {params}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        a: SignHmacArgs,
    }

    fn sign(list: &[&str]) -> Output {
        run(
            &T::try_parse_from(std::iter::once("t").chain(list.iter().copied()))
                .unwrap()
                .a,
        )
    }

    #[test]
    fn gatekeeper_worked_examples() {
        // shared/vectors/http_signatures/gatekeeper_hmac.json, cases 0 and 1 (byteforge-hmac 0.2.0).
        let id = "3f2c1a9e-0000-4000-8000-000000000001";
        let get = sign(&[
            "--client-id",
            id,
            "--secret",
            "s3cr3t-shared-secret",
            "--method",
            "get",
            "--path",
            "/api/users",
            "--timestamp",
            "1700000000",
            "--nonce",
            "0b6c6e3a-6f6e-4c2e-9a59-5d0c2f5d1e01",
        ]);
        assert_eq!(
            get.unwrap(),
            "HMAC client_id=\"3f2c1a9e-0000-4000-8000-000000000001\",timestamp=\"1700000000\",\
             nonce=\"0b6c6e3a-6f6e-4c2e-9a59-5d0c2f5d1e01\",\
             signature=\"735d5c3578ce27dc4dcf4ec42d6292c0ed631de97120c37b5502b2fca3cbdfa3\""
        );
        let post = sign(&[
            "--client-id",
            id,
            "--secret",
            "s3cr3t-shared-secret",
            "--method",
            "POST",
            "--path",
            "/api/orders",
            "--timestamp",
            "1700000001",
            "--nonce",
            "2f1f7d9c-8e3b-4d7a-b7c4-1c2d3e4f5a02",
            "--body",
            "{\"item\": \"book\", \"qty\": 2}",
        ]);
        assert!(post.unwrap().ends_with(
            "signature=\"e105c3f617683f87430b0f2a6fd9f93fb7a6b2993015c8d1e437feb31e04b940\""
        ));
    }

    #[test]
    fn the_query_is_not_signed() {
        let with = sign(&[
            "--client-id",
            "c",
            "--secret",
            "s",
            "--path",
            "/a?x=1",
            "--timestamp",
            "1",
            "--nonce",
            "n",
        ]);
        let without = sign(&[
            "--client-id",
            "c",
            "--secret",
            "s",
            "--path",
            "/a",
            "--timestamp",
            "1",
            "--nonce",
            "n",
        ]);
        assert_eq!(with.unwrap(), without.unwrap());
    }

    #[test]
    fn values_the_parser_cannot_read_back_are_usage_errors() {
        for bad in [
            vec!["--client-id", "a,b", "--secret", "s", "--path", "/"],
            vec![
                "--client-id",
                "a",
                "--secret",
                "s",
                "--path",
                "/",
                "--nonce",
                "x\"y",
            ],
            vec!["--client-id", "a", "--secret", "s", "--path", "rel"],
            vec![
                "--client-id",
                "a",
                "--secret",
                "s",
                "--path",
                "/",
                "--timestamp",
                "12a",
            ],
        ] {
            assert!(matches!(sign(&bad), Err(CliError::Usage(_))), "{bad:?}");
        }
    }
}
