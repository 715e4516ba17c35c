//! The CLI's one HTTP client call: `GET` a JSON document (discovery, JWKS) the way the filter's own fetches
//! through Envoy would take it: no redirects, 200 only, at most 512 KiB. Used by `trust` and `verify-assertion`.

use crate::CliError;
use std::io::Read as _;
use std::time::Duration;
use trustgate::state::jwks_cache::MAX_BODY_BYTES;

/// GET `url` as the filter's fetch would: no redirects, 200 only, at most 512 KiB.
pub fn fetch(url: &str, timeout: Duration) -> Result<Vec<u8>, CliError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("trustgate-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let fail = |why: String| CliError::Failure(format!("GET {url}: {why}"));
    let mut resp = agent
        .get(url)
        .header("accept", "application/json")
        .call()
        .map_err(|e| fail(e.to_string()))?;
    let status = resp.status().as_u16();
    if (300..400).contains(&status) {
        let to = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        return Err(fail(format!(
            "redirected ({status}) to {to}: redirects are not followed (nor are they by the filter's fetches), so \
             use the final URL"
        )));
    }
    if status != 200 {
        return Err(fail(format!("status {status}, expected 200")));
    }
    let mut body = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(
            u64::try_from(MAX_BODY_BYTES)
                .unwrap_or(u64::MAX)
                .saturating_add(1),
        )
        .read_to_end(&mut body)
        .map_err(|e| fail(format!("reading the body: {e}")))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(fail(
            "body over 512 KiB: the filter refuses documents that large".into(),
        ));
    }
    Ok(body)
}
