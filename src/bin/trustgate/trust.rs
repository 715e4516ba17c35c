//! `trustgate trust <issuer-url>`: onboard an OIDC issuer the way the filter will use it.
//!
//! Fetches `<issuer>/.well-known/openid-configuration` and its `jwks_uri` (plain HTTP/1.1, no redirects, at
//! most 512 KiB: what the filter's own fetches through Envoy accept), checks them with the library's
//! [`jwks_cache::parse_discovery`] (issuer exact) and [`jwks_cache::check_jwks`] / [`Jwk::from_value`] (each
//! key), checks the advertised algorithms, optionally verifies a sample token with [`JwtRules::verify`], and
//! prints the provider block (compiled by [`trustgate::policy::config::compile`] before it is printed), the Envoy
//! cluster it names and the Istio `ServiceEntry` + `DestinationRule`.

use crate::{CliError, Output};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use trustgate::decision::Reason;
use trustgate::formats::crypto::Alg;
use trustgate::formats::jwk::Jwk;
use trustgate::formats::jwt::{JwtError, JwtRules, UntrustedJwt};
use trustgate::state::jwks_cache::{self, FetchError};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeysForm {
    /// discovery when jwks_uri is on the issuer's host, else remote
    Auto,
    /// "keys": {"discovery": ...}: the filter reads the discovery document itself (follows jwks_uri changes)
    Discovery,
    /// "keys": {"remote": ...}: the filter fetches the JWKS URL directly
    Remote,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// the provider block (JSON)
    Provider,
    /// the Envoy cluster (YAML)
    Envoy,
    /// the Istio ServiceEntry and DestinationRule (YAML)
    Istio,
}

#[derive(Args)]
#[command(
    about = "Onboard an OIDC issuer: check discovery, JWKS and a sample token; print the config it needs",
    long_about = "Onboard an OIDC issuer. Fetches <issuer>/.well-known/openid-configuration, checks that its \
                  \"issuer\" equals ISSUER exactly (as the filter does), fetches its jwks_uri, checks that every \
                  key decodes as the filter decodes it and which algorithms trustgate can verify (warning about \
                  the others), optionally verifies a sample token, then prints:\n\n  \
                  1. the provider block to add under \"providers\" (keys.discovery, or keys.remote when the \
                  JWKS lives on another host);\n  \
                  2. the Envoy cluster the block names (TLS with SNI and certificate checks for https);\n  \
                  3. the Istio ServiceEntry and DestinationRule (the cluster is then outbound|PORT||HOST: \
                  --istio writes that name into the provider block).\n\n\
                  Findings go to standard error; the config goes to standard output (--only picks one part). \
                  Fetches do not follow redirects, because the filter's do not either.",
    after_help = "Examples:\n  \
                  trustgate trust https://login.example.com/realms/corp --audience account\n  \
                  trustgate trust https://accounts.google.com --token-file id_token.txt --only provider\n  \
                  trustgate trust https://tenant.eu.auth0.com/ --istio --only istio | kubectl apply -f -"
)]
pub struct TrustArgs {
    /// The issuer URL, exactly as tokens carry it in iss (a trailing slash matters)
    #[arg(value_name = "ISSUER-URL")]
    issuer: String,
    /// A sample token from this issuer to verify
    #[arg(long, value_name = "JWT", conflicts_with = "token_file")]
    token: Option<String>,
    /// Read the sample token from a file (`-`: standard input)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The provider's name in the filter config [default: from the issuer's host]
    #[arg(long, value_name = "NAME")]
    provider_name: Option<String>,
    /// An accepted audience (aud); repeatable. Without one, the provider accepts any audience
    #[arg(long, value_name = "AUD")]
    audience: Vec<String>,
    /// The Envoy cluster name [default: NAME_jwks; with --istio: outbound|PORT||HOST]
    #[arg(long, value_name = "CLUSTER")]
    cluster: Option<String>,
    /// Write the Istio cluster name (outbound|PORT||HOST) into the provider block
    #[arg(long, conflicts_with = "cluster")]
    istio: bool,
    /// How the provider gets its keys
    #[arg(long, value_enum, default_value_t = KeysForm::Auto)]
    keys: KeysForm,
    /// Print only this part, without comments
    #[arg(long, value_enum, value_name = "PART")]
    only: Option<Part>,
    /// Seconds allowed for each fetch
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    timeout: u64,
}

/// An http(s) URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    https: bool,
    authority: String,
    host: String,
    port: u16,
    /// Path and query.
    path: String,
}

impl Url {
    fn parse(url: &str) -> Option<Url> {
        let https = url.starts_with("https://");
        let (authority, path) = jwks_cache::split_url(url)?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                if h.starts_with('[') && !h.ends_with(']') {
                    (authority.clone(), None) // an IPv6 literal without a port
                } else {
                    (h.to_owned(), Some(p.parse::<u16>().ok()?))
                }
            }
            _ => (authority.clone(), None),
        };
        let port = port.unwrap_or(if https { 443 } else { 80 });
        if host.is_empty()
            || host.contains(['/', '\\', '"', '\''])
            || host.chars().any(char::is_control)
        {
            return None;
        }
        Some(Url {
            https,
            authority,
            host,
            port,
            path,
        })
    }

    fn origin(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.authority
        )
    }

    fn same_server(&self, other: &Url) -> bool {
        self.https == other.https
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
    }

    fn is_ip(&self) -> bool {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok()
    }
}

fn note(msg: &str) {
    eprintln!("trustgate trust: {msg}");
}

fn warn(msg: &str) {
    eprintln!("trustgate trust: warning: {msg}");
}

/// A provider name from the issuer's host: `login.example.com` → `login-example-com`.
fn default_name(host: &str) -> String {
    let mut s: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s = s.trim_matches('-').to_owned();
    s.truncate(56);
    if s.is_empty() || s == "public" || s == "none" {
        "idp".into()
    } else {
        s
    }
}

/// A Kubernetes object name (DNS-1123 label) from a provider name.
fn k8s_name(provider: &str) -> String {
    let s: String = provider
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("trustgate-{}-jwks", s.trim_matches('-'));
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

/// The asymmetric algorithms a key may verify.
fn key_algs(k: &Jwk) -> Vec<Alg> {
    Alg::ALL
        .into_iter()
        .filter(|a| !a.is_hmac() && k.accepts(*a))
        .collect()
}

fn jwt_hint(e: JwtError) -> &'static str {
    match e {
        JwtError::WrongIssuer => "its iss is not exactly the issuer URL (check the trailing slash)",
        JwtError::WrongAudience => "its aud holds none of the --audience values",
        JwtError::UnknownKid => {
            "its kid is not in the JWKS: is it from this issuer (or an old key)?"
        }
        JwtError::BadSignature => {
            "no key in the JWKS verifies it: is it from this issuer, unaltered?"
        }
        JwtError::AlgNotAllowed => "its alg is not one trustgate verifies with these keys",
        JwtError::Expired => "it has expired: get a fresh one",
        JwtError::NotYetValid => "its nbf is in the future: check the clocks",
        JwtError::MissingExp => "it has no exp, which the provider requires by default",
        JwtError::Malformed | JwtError::TooLarge => {
            "it is not a JWS compact token the filter accepts"
        }
        _ => "see docs/cli.md",
    }
}

/// Verifies the sample token; `Ok` describes it.
fn check_token(
    token: &str,
    issuer: &str,
    audiences: &[String],
    algorithms: &[Alg],
    keys: &[Jwk],
    now: i64,
) -> Result<String, CliError> {
    let token = token.trim();
    let parsed = UntrustedJwt::parse(token).map_err(|e| {
        CliError::Failure(format!(
            "the sample token is refused: {} ({})",
            Reason::from(e).label(),
            jwt_hint(e)
        ))
    })?;
    let rules = JwtRules {
        issuer: Some(issuer.to_owned()),
        audiences: audiences.to_vec(),
        algorithms: algorithms.to_vec(),
        require_exp: true,
        clock_skew_s: 60,
        max_lifetime_s: None,
        typ: None,
    };
    match rules.verify(&parsed, keys, now) {
        Ok(v) => {
            let claims = v.claims();
            let sub = claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or("(none)");
            let aud = claims
                .get("aud")
                .map(Value::to_string)
                .unwrap_or_else(|| "(none)".into());
            let left = v
                .exp()
                .map(|e| format!(", expires in {} s", e - now))
                .unwrap_or_default();
            Ok(format!(
                "the sample token verifies: alg {}, kid {}, sub {sub:?}, aud {aud}{left}",
                v.alg(),
                parsed.kid().unwrap_or("(none)")
            ))
        }
        Err(e) => {
            let mut msg = format!(
                "the sample token is refused: {} ({})",
                Reason::from(e).label(),
                jwt_hint(e)
            );
            if matches!(
                e,
                JwtError::Expired | JwtError::NotYetValid | JwtError::MissingExp
            ) {
                // Say whether the rest would pass: the signature is what onboarding is about.
                let lenient = JwtRules {
                    require_exp: false,
                    clock_skew_s: i64::MAX / 4,
                    ..rules
                };
                if lenient.verify(&parsed, keys, now).is_ok() {
                    msg.push_str("; its signature, issuer and audience do verify");
                }
            }
            Err(CliError::Failure(msg))
        }
    }
}

fn yaml_str(s: &str) -> String {
    // JSON strings are valid YAML double-quoted scalars.
    Value::String(s.to_owned()).to_string()
}

fn envoy_cluster(name: &str, target: &Url) -> String {
    let q = yaml_str;
    let (kind, dns) = if target.is_ip() {
        ("STATIC", String::new())
    } else {
        (
            "LOGICAL_DNS",
            "\n  dns_lookup_family: V4_PREFERRED".to_owned(),
        )
    };
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let mut y = format!(
        "- name: {name}\n  \
           type: {kind}{dns}\n  \
           connect_timeout: 2s\n  \
           load_assignment:\n    \
             cluster_name: {name}\n    \
             endpoints:\n    \
             - lb_endpoints:\n      \
               - endpoint:\n          \
                   address:\n            \
                     socket_address: {{ address: {host}, port_value: {port} }}\n",
        name = q(name),
        host = q(host),
        port = target.port
    );
    if target.https {
        y.push_str(&format!(
            "  transport_socket:\n    \
               name: envoy.transport_sockets.tls\n    \
               typed_config:\n      \
                 \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n      \
                 sni: {host}\n      \
                 common_tls_context:\n        \
                   tls_params:\n          \
                     tls_minimum_protocol_version: TLSv1_2\n        \
                   validation_context:\n          \
                     trusted_ca:\n            \
                       filename: /etc/ssl/certs/ca-certificates.crt   # Debian/Ubuntu; RHEL: /etc/pki/tls/certs/ca-bundle.crt\n          \
                     match_typed_subject_alt_names:\n          \
                     - san_type: DNS\n            \
                       matcher: {{ exact: {host} }}\n",
            host = q(host)
        ));
    }
    y
}

fn istio_objects(provider: &str, target: &Url) -> String {
    let name = k8s_name(provider);
    let host = yaml_str(&target.host);
    let port = target.port;
    let mut y = String::new();
    if target.is_ip() {
        y.push_str(
            "# The JWKS host is an IP address: Istio's ServiceEntry needs a host name. Use the IdP's DNS name.\n",
        );
    }
    let protocol = if target.https { "HTTPS" } else { "HTTP" };
    y.push_str(&format!(
        "apiVersion: networking.istio.io/v1\n\
         kind: ServiceEntry\n\
         metadata:\n  \
           name: {name}\n\
         spec:\n  \
           hosts:\n  \
           - {host}\n  \
           location: MESH_EXTERNAL\n  \
           ports:\n  \
           - number: {port}\n    \
             name: {pname}\n    \
             protocol: {protocol}\n  \
           resolution: DNS\n",
        pname = if target.https {
            "https-idp"
        } else {
            "http-idp"
        },
    ));
    if target.https {
        y.push_str(&format!(
            "---\n\
             apiVersion: networking.istio.io/v1\n\
             kind: DestinationRule\n\
             metadata:\n  \
               name: {name}\n\
             spec:\n  \
               host: {host}\n  \
               trafficPolicy:\n    \
                 tls:\n      \
                   mode: SIMPLE               # trustgate sends plain HTTP into the cluster: originate TLS\n      \
                   sni: {host}\n"
        ));
    } else {
        y.push_str(
            "# Plain HTTP: no DestinationRule (no TLS to originate). Use https outside tests.\n",
        );
    }
    y
}

/// What discovery found: the document and its `jwks_uri`.
struct Discovered {
    doc: Value,
    jwks_uri: String,
    jwks_url: Url,
}

/// The provider name from `--provider-name`, or one derived from the issuer's host.
fn provider_name(a: &TrustArgs, iss_url: &Url) -> Result<String, CliError> {
    let Some(n) = &a.provider_name else {
        return Ok(default_name(&iss_url.host));
    };
    let valid = !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(CliError::Usage(format!(
            "--provider-name {n:?}: letters, digits, - and _ only (at most 64)"
        )));
    }
    Ok(n.clone())
}

/// Step 1. Discovery: the issuer must be exactly the one the document names.
fn discover(
    issuer: &str,
    iss_url: &Url,
    doc_path: &str,
    timeout: Duration,
) -> Result<Discovered, CliError> {
    let doc_url = format!("{}{doc_path}", iss_url.origin());
    let doc_body = crate::http::fetch(&doc_url, timeout)?;
    match jwks_cache::parse_discovery(&doc_body, issuer) {
        Ok(_) => {}
        Err(e @ FetchError::IssuerMismatch { .. }) => {
            return Err(CliError::Failure(format!(
                "{doc_url}: {e}. Tokens from this IdP carry the document's issuer in iss: run \
                 `trustgate trust` with exactly that URL (a trailing slash matters)"
            )))
        }
        Err(e) => return Err(CliError::Failure(format!("{doc_url}: {e}"))),
    }
    let doc: Value = serde_json::from_slice(&doc_body)
        .map_err(|_| CliError::Failure(format!("{doc_url}: invalid JSON")))?;
    let jwks_uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let jwks_url = Url::parse(&jwks_uri).ok_or_else(|| {
        CliError::Failure(format!(
            "{doc_url}: jwks_uri {jwks_uri:?} is not an http(s) URL the filter can fetch"
        ))
    })?;
    note(&format!("{doc_url}: ok, issuer {issuer:?} matches"));
    if iss_url.https && !jwks_url.https {
        warn(&format!(
            "jwks_uri {jwks_uri} is plain http although the issuer is https"
        ));
    }
    Ok(Discovered {
        doc,
        jwks_uri,
        jwks_url,
    })
}

/// Step 2. The key set, key by key, as the filter decodes it: the usable keys and the algorithms they fit.
fn usable_keys(jwks_uri: &str, timeout: Duration) -> Result<(Vec<Jwk>, BTreeSet<Alg>), CliError> {
    let jwks_body = crate::http::fetch(jwks_uri, timeout)?;
    let parsed = jwks_cache::check_jwks(&jwks_body)
        .map_err(|e| CliError::Failure(format!("{jwks_uri}: {e}")))?;
    let raw: Value = serde_json::from_slice(&jwks_body).unwrap_or(Value::Null);
    let raw_keys = raw
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut usable = Vec::new();
    let mut fitting: BTreeSet<Alg> = BTreeSet::new();
    for (i, k) in raw_keys.iter().enumerate() {
        let kid = k.get("kid").and_then(Value::as_str).unwrap_or("(no kid)");
        match Jwk::from_value(k) {
            Ok(jwk) => {
                if matches!(jwk.key, trustgate::formats::crypto::VerifyKey::Secret(_)) {
                    warn(&format!(
                        "key [{i}] kid {kid}: a shared secret (oct) in a public JWKS; trustgate never uses \
                         HMAC with remote keys, and this secret is public"
                    ));
                    continue;
                }
                let algs = key_algs(&jwk);
                note(&format!(
                    "key [{i}] kid {kid}: {}, {}",
                    jwk.key.kind(),
                    algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(" ")
                ));
                fitting.extend(algs);
                usable.push(jwk);
            }
            Err(e) => warn(&format!(
                "key [{i}] kid {kid}: skipped, as the filter will: {e}"
            )),
        }
    }
    if usable.is_empty() {
        return Err(CliError::Failure(format!(
            "{jwks_uri}: no key trustgate can use ({} refused)",
            parsed.refused.len()
        )));
    }
    note(&format!(
        "{jwks_uri}: {} usable keys of {}",
        usable.len(),
        raw_keys.len()
    ));
    Ok((usable, fitting))
}

/// Step 3. Algorithms: what the IdP says it signs with, against what trustgate verifies with these keys.
fn choose_algorithms(doc: &Value, fitting: &BTreeSet<Alg>) -> Vec<Alg> {
    let advertised: Vec<&str> = doc
        .get("id_token_signing_alg_values_supported")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut algorithms: Vec<Alg> = Vec::new();
    for name in &advertised {
        match Alg::from_name(name) {
            None => warn(&format!(
                "the IdP may sign with {name}, which trustgate does not verify: such tokens get 401 alg_not_allowed"
            )),
            Some(a) if a.is_hmac() => warn(&format!(
                "the IdP may sign with {name} (a client secret): not verifiable with its public keys"
            )),
            Some(a) if !fitting.contains(&a) => {
                warn(&format!("the IdP advertises {name} but no key in its JWKS fits it"))
            }
            Some(a) => algorithms.push(a),
        }
    }
    if algorithms.is_empty() {
        if !advertised.is_empty() {
            warn("none of the advertised algorithms is usable; allowing every algorithm the keys fit");
        }
        algorithms = fitting.iter().copied().collect();
    }
    algorithms.sort();
    algorithms.dedup();
    note(&format!(
        "algorithms: {}",
        algorithms
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    algorithms
}

/// Whether the provider reads the discovery document itself (`--keys`; auto: when the JWKS is on the issuer's
/// server, since one cluster serves both fetches).
fn use_discovery(form: KeysForm, iss_url: &Url, jwks_url: &Url) -> Result<bool, CliError> {
    match form {
        KeysForm::Discovery if !jwks_url.same_server(iss_url) => Err(CliError::Usage(format!(
            "--keys discovery: the jwks_uri is on {} but the issuer on {}; the filter fetches both \
             through one cluster, so use --keys remote (or auto)",
            jwks_url.origin(),
            iss_url.origin()
        ))),
        KeysForm::Discovery => Ok(true),
        KeysForm::Remote => Ok(false),
        KeysForm::Auto => Ok(jwks_url.same_server(iss_url)),
    }
}

/// Step 5. The provider block (fields in the README's order), checked by compiling it as the filter would.
fn provider_block(
    name: &str,
    issuer: &str,
    audiences: &[String],
    algorithms: &[Alg],
    keys: &str,
) -> Result<String, CliError> {
    let q = |v: &str| Value::String(v.to_owned()).to_string();
    let list = |v: &[String]| Value::from(v.to_vec()).to_string();
    let alg_names: Vec<String> = algorithms.iter().map(|a| a.name().to_owned()).collect();
    // Written by hand to keep the fields in the README's order (serde_json sorts object members).
    let mut fields = vec![format!("\"issuer\": {}", q(issuer))];
    if !audiences.is_empty() {
        fields.push(format!("\"audiences\": {}", list(audiences)));
    }
    fields.push(format!("\"algorithms\": {}", list(&alg_names)));
    fields.push(format!("\"keys\": {keys}"));
    fields.push("\"headers\": {\"x-commit-owner\": \"human:${claims.sub}\"}".to_owned());
    let provider = format!(
        "{{\n  {}: {{\n    \"jwt\": {{\n      {}\n    }}\n  }}\n}}",
        q(name),
        fields.join(",\n      ")
    );
    let block: Value = serde_json::from_str(&provider).map_err(|e| {
        CliError::Failure(format!(
            "internal error: the provider block is not JSON: {e}"
        ))
    })?;
    let whole = json!({ "providers": block, "rules": [ { "match": {}, "require": name } ] });
    trustgate::policy::config::compile(whole.to_string().as_bytes()).map_err(|e| {
        CliError::Failure(format!(
            "internal error: the provider block does not compile: {e}"
        ))
    })?;
    Ok(provider)
}

/// The `keys` member: `discovery` or `remote`, through `cluster`.
fn keys_member(discovery: bool, cluster: &str, target: &Url) -> String {
    let q = |v: &str| Value::String(v.to_owned()).to_string();
    if discovery {
        format!(
            "{{\"discovery\": {{\"cluster\": {}, \"authority\": {}}}}}",
            q(cluster),
            q(&target.authority)
        )
    } else {
        format!(
            "{{\"remote\": {{\"cluster\": {}, \"authority\": {}, \"path\": {}}}}}",
            q(cluster),
            q(&target.authority),
            q(&target.path)
        )
    }
}

pub fn run(a: &TrustArgs) -> Output {
    let issuer = a.issuer.as_str();
    let iss_url = Url::parse(issuer).ok_or_else(|| {
        CliError::Usage(format!(
            "{issuer:?}: expected the issuer as an http(s) URL without query, e.g. https://login.example.com/realms/corp"
        ))
    })?;
    let doc_path = jwks_cache::discovery_path(issuer).ok_or_else(|| {
        CliError::Usage(format!(
            "{issuer:?}: an issuer URL with a query has no discovery document"
        ))
    })?;
    let name = provider_name(a, &iss_url)?;
    let token = match (&a.token, &a.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(crate::read_text(f)?),
        (None, None) => None,
    };
    let timeout = Duration::from_secs(a.timeout.max(1));
    if !iss_url.https {
        warn("the issuer uses plain http: anyone on the path can replace its keys; use https outside tests");
    }

    let found = discover(issuer, &iss_url, &doc_path, timeout)?;
    let (usable, fitting) = usable_keys(&found.jwks_uri, timeout)?;
    let algorithms = choose_algorithms(&found.doc, &fitting);

    // 4. The sample token.
    if let Some(t) = &token {
        note(&check_token(
            t,
            issuer,
            &a.audience,
            &algorithms,
            &usable,
            crate::now()?,
        )?);
    }
    if a.audience.is_empty() {
        warn("no --audience: the provider will accept this issuer's tokens for any audience (any client)");
    }

    let discovery = use_discovery(a.keys, &iss_url, &found.jwks_url)?;
    let target = if discovery { &iss_url } else { &found.jwks_url };
    let istio_cluster = format!("outbound|{}||{}", target.port, target.host);
    let cluster = match (&a.cluster, a.istio) {
        (Some(c), _) => c.clone(),
        (None, true) => istio_cluster.clone(),
        (None, false) => format!("{name}_jwks"),
    };
    let keys = keys_member(discovery, &cluster, target);
    let provider = provider_block(&name, issuer, &a.audience, &algorithms, &keys)?;

    let envoy = envoy_cluster(&cluster, target);
    let istio = istio_objects(&name, target);
    Ok(match a.only {
        Some(Part::Provider) => provider,
        Some(Part::Envoy) => envoy,
        Some(Part::Istio) => istio,
        None => format!(
            "# 1. trustgate: add this provider under \"providers\" in the filter config, and require it in a rule\n\
             {provider}\n\n\
             # 2. Envoy: the cluster \"{cluster}\" the provider fetches {what} through; add it under\n\
             #    static_resources.clusters (no route sends client traffic to it)\n\
             {envoy}\n\
             # 3. Istio: instead of 2, apply these; the cluster is then \"{istio_cluster}\"\n\
             #    (`trustgate trust {issuer} --istio` writes that name into the provider block)\n\
             {istio}",
            what = if discovery { "the discovery document and the JWKS" } else { "the JWKS" },
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_like_the_filter_does() {
        let u = Url::parse("https://login.example.com/realms/corp").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("login.example.com", 443, "/realms/corp")
        );
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.authority.as_str()),
            ("127.0.0.1", 8080, "127.0.0.1:8080")
        );
        assert!(u.is_ip());
        let u = Url::parse("https://[::1]:9443/x?y").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("[::1]", 9443, "/x?y")
        );
        assert!(u.is_ip());
        assert!(Url::parse("ftp://x/").is_none());
        assert!(Url::parse("https://x:notaport/").is_none());
    }

    #[test]
    fn names() {
        assert_eq!(default_name("login.example.com"), "login-example-com");
        assert_eq!(default_name("127.0.0.1"), "127-0-0-1");
        assert_eq!(k8s_name("corp_idp"), "trustgate-corp-idp-jwks");
    }

    #[test]
    fn the_envoy_cluster_has_tls_for_https_only() {
        let https = envoy_cluster(
            "idp_jwks",
            &Url::parse("https://login.example.com/x").unwrap(),
        );
        assert!(
            https.contains("type: LOGICAL_DNS") && https.contains("sni: \"login.example.com\""),
            "{https}"
        );
        let http = envoy_cluster("c", &Url::parse("http://127.0.0.1:5556/").unwrap());
        assert!(
            http.contains("type: STATIC") && !http.contains("transport_socket"),
            "{http}"
        );
        let istio = istio_objects("corp", &Url::parse("https://login.example.com/x").unwrap());
        assert!(
            istio.contains("kind: ServiceEntry") && istio.contains("mode: SIMPLE"),
            "{istio}"
        );
    }
}
