//! `trustgate verify-assertion`: checks an identity assertion the filter wrote for the upstream (DESIGN.md
//! "Identity assertions for the upstream") the way an application must, and says in one sentence why it fails.
//!
//! The checks are the library's: [`UntrustedJwt::parse`] (compact JWS, [RFC 7515 §7.1](https://www.rfc-editor.org/rfc/rfc7515#section-7.1)),
//! [`parse_jwks_value`] (the proxy's JWK Set) and [`JwtRules`] (signature, then `iss`, `exp`, `nbf`, `aud` by
//! [`JwtRules::recheck`]). Around them, what an assertion must be and the library does not ask of an access
//! token: `alg` EdDSA or ES256, `typ` JWT, a `kid` that is in the set, `exp` and `iat` present, `iat` not in
//! the future. The signature is checked before any claim, so a forged token is never reported as "wrong
//! issuer". Nothing of the token or of a key is ever printed in an error; untrusted names (`kid`, `iss`,
//! `aud`, `typ`) are quoted and shortened.

use crate::{CliError, Output};
use clap::Args;
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;
use trustgate::decision::Reason;
use trustgate::formats::crypto::Alg;
use trustgate::formats::jwk::{parse_jwks_value, Jwk};
use trustgate::formats::jwt::{typ_key, JwtError, JwtRules, UntrustedJwt, VerifiedJwt};

#[derive(Args)]
#[command(
    about = "Verify an identity assertion from trustgate against its JWKS URL; say why it fails",
    long_about = "Verify an identity assertion (the compact JWS trustgate writes into the assertion header) as \
                  your application must: fetch the JWKS (http or https, no redirects), then check alg (EdDSA or \
                  ES256), typ JWT, a kid that is in the set, the signature, iss, aud, exp and iat (not in the \
                  future), with --leeway-s seconds of clock tolerance.\n\n\
                  On success the verified claims are printed as JSON (a summary goes to standard error). On \
                  failure the command exits 1 with one sentence saying why: not a JWS, alg or typ not an \
                  assertion's, unknown kid (and the kids the set has), bad signature, wrong issuer, wrong \
                  audience, expired N s ago, issued in the future, JWKS fetch failed. The assertion and the \
                  keys are never printed in an error.\n\n\
                  Pass the assertion on standard input rather than with --token: a command line is visible to \
                  other users of the machine and kept in shell history.",
    after_help = "Examples:\n  \
                  printf %s \"$ASSERTION\" | trustgate verify-assertion \\\n      \
                  --jwks-url https://gateway.example.com/.well-known/trustgate/jwks.json \\\n      \
                  --iss https://gateway.example.com --aud orders\n  \
                  trustgate verify-assertion --jwks-url http://127.0.0.1:10000/.well-known/trustgate/jwks.json \\\n      \
                  --iss https://gateway.example.com --aud orders --leeway-s 5 < assertion.txt"
)]
pub struct VerifyAssertionArgs {
    /// The proxy's JWKS URL: the proxy's origin and its assertion.jwks_path
    #[arg(long, value_name = "URL")]
    jwks_url: String,
    /// The expected issuer (the config's assertion.issuer), compared exactly
    #[arg(long, value_name = "ISSUER")]
    iss: String,
    /// The expected audience (assertion.audience, or the rule's assertion_audience)
    #[arg(long, value_name = "AUDIENCE")]
    aud: String,
    /// The assertion [default: read from standard input]
    #[arg(long, value_name = "JWS")]
    token: Option<String>,
    /// Seconds of clock tolerance for exp and iat (PyJWT's and jose's default is 0)
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    leeway_s: u32,
    /// Seconds allowed for the JWKS fetch
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    timeout: u64,
}

/// The algorithms trustgate signs assertions with.
const ASSERTION_ALGS: [Alg; 2] = [Alg::EdDSA, Alg::ES256];

/// What the application expects of an assertion.
#[derive(Debug, Clone)]
pub struct Expect {
    pub issuer: String,
    pub audience: String,
    /// Clock tolerance, seconds, for `exp`, `nbf` and `iat`.
    pub leeway_s: i64,
}

/// Why an assertion was refused. `Display` is the one sentence the command prints.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// Not a compact JWS the library parses; says what is wrong with its shape.
    NotAJws(&'static str),
    /// `alg` is not EdDSA or ES256.
    Alg(String),
    /// `typ` absent or not JWT.
    Typ(Option<String>),
    /// No `kid` in the header.
    NoKid,
    /// The set holds no key with the token's `kid`; the kids it does hold.
    UnknownKid {
        kid: String,
        known: Vec<String>,
    },
    /// The set's key with the token's `kid` does not decode.
    UnusableKey {
        kid: String,
        why: String,
    },
    /// The set's key with the token's `kid` cannot verify the token's `alg`.
    KeyDoesNotFit {
        kid: String,
        alg: String,
        kind: &'static str,
    },
    /// No key with the token's `kid` verifies the signature.
    BadSignature {
        kid: String,
    },
    WrongIssuer {
        got: Option<String>,
        want: String,
    },
    WrongAudience {
        got: Option<String>,
        want: String,
    },
    Expired {
        ago: i64,
    },
    NotYetValid {
        ahead: i64,
    },
    IssuedInTheFuture {
        ahead: i64,
    },
    /// `exp` or `iat` absent: trustgate always sets both.
    Missing(&'static str),
    /// The JWKS could not be fetched or is not a JWK Set.
    Jwks(String),
    /// Any other refusal of the library, by its reason code.
    Other(&'static str),
}

/// An untrusted string as an error may show it: quoted, control characters escaped, at most 64 characters.
fn shown(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((cut, _)) => format!("{:?}…", s.get(..cut).unwrap_or_default()),
        None => format!("{s:?}"),
    }
}

fn shown_or_none(s: Option<&String>) -> String {
    s.map_or_else(|| "none".to_owned(), |s| shown(s))
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NotAJws(why) => write!(f, "not a JWS: {why}"),
            Refused::Alg(alg) => write!(
                f,
                "alg {} is not an assertion's: trustgate signs assertions with EdDSA or ES256",
                shown(alg)
            ),
            Refused::Typ(typ) => write!(
                f,
                "typ {} is not an assertion's: trustgate's assertions carry typ \"JWT\"",
                shown_or_none(typ.as_ref())
            ),
            Refused::NoKid => f.write_str(
                "no kid in the header: trustgate's assertions always name the key that signed them",
            ),
            Refused::UnknownKid { kid, known } if known.is_empty() => write!(
                f,
                "unknown kid {} (the set has no keys with a kid)",
                shown(kid)
            ),
            Refused::UnknownKid { kid, known } => write!(
                f,
                "unknown kid {} (the set has: {}): signed by a key that has left the set (rotated out of \
                 previous_keys) or by another proxy",
                shown(kid),
                known.iter().map(|k| shown(k)).collect::<Vec<_>>().join(", ")
            ),
            Refused::UnusableKey { kid, why } => {
                write!(f, "the set's key with kid {} is refused: {why}", shown(kid))
            }
            Refused::KeyDoesNotFit { kid, alg, kind } => write!(
                f,
                "the set's key with kid {} ({kind}) cannot verify alg {alg}",
                shown(kid)
            ),
            Refused::BadSignature { kid } => write!(
                f,
                "bad signature: the set's key with kid {} does not verify it (altered, or signed by another \
                 key)",
                shown(kid)
            ),
            Refused::WrongIssuer { got, want } => write!(
                f,
                "wrong issuer (got {}, expected {})",
                shown_or_none(got.as_ref()),
                shown(want)
            ),
            Refused::WrongAudience { got, want } => write!(
                f,
                "wrong audience (got {}, expected {}): check the rule's assertion_audience",
                got.as_deref().unwrap_or("none"),
                shown(want)
            ),
            Refused::Expired { ago } => write!(f, "expired {ago} s ago"),
            Refused::NotYetValid { ahead } => write!(f, "not valid for another {ahead} s (nbf)"),
            Refused::IssuedInTheFuture { ahead } => write!(
                f,
                "issued {ahead} s in the future (iat): check the clocks of the proxy and this machine, or \
                 allow some --leeway-s"
            ),
            Refused::Missing(claim) => write!(
                f,
                "no {claim} claim: trustgate's assertions always carry iat and exp"
            ),
            Refused::Jwks(why) => write!(f, "JWKS fetch failed: {why}"),
            Refused::Other(label) => write!(f, "refused: {label}"),
        }
    }
}

/// A token whose header is an assertion's: `alg` EdDSA or ES256, `typ` JWT, a `kid`.
pub struct Header<'t> {
    jwt: UntrustedJwt<'t>,
    alg: Alg,
    kid: String,
}

impl<'t> Header<'t> {
    /// Parses `token` with the library and checks its header.
    pub fn check(token: &'t str) -> Result<Self, Refused> {
        let jwt = UntrustedJwt::parse(token).map_err(|e| not_a_jws(token, e))?;
        let typ = jwt.typ().map(str::to_owned);
        let alg = Alg::from_name(jwt.alg())
            .filter(|a| ASSERTION_ALGS.contains(a))
            .ok_or_else(|| Refused::Alg(jwt.alg().to_owned()))?;
        // RFC 7515 §4.1.9: compared case-insensitively, the "application/" prefix may be left out.
        let is_jwt = typ.as_deref().is_some_and(|t| typ_key(t) == "jwt");
        if !is_jwt {
            return Err(Refused::Typ(typ));
        }
        let kid = jwt.kid().ok_or(Refused::NoKid)?.to_owned();
        Ok(Header { jwt, alg, kid })
    }
}

/// What is wrong with a token the library does not parse, as precisely as its shape tells.
fn not_a_jws(token: &str, e: JwtError) -> Refused {
    if e == JwtError::TooLarge {
        return Refused::NotAJws("over 16 KiB");
    }
    match token.split('.').count() {
        3 => Refused::NotAJws(
            "its parts are not strict base64url of a JSON header and a JSON claims object without duplicate \
             members, with registered claims of their RFC 7519 types and no crit",
        ),
        5 => Refused::NotAJws("five parts is an encrypted JWT (JWE), expected header.payload.signature"),
        _ => Refused::NotAJws("expected three base64url parts, header.payload.signature"),
    }
}

/// The keys of `jwks` with `kid`; when there are none, why.
fn keys_with_kid(jwks: &Value, kid: &str) -> Result<Vec<Jwk>, Refused> {
    let parsed =
        parse_jwks_value(jwks).map_err(|e| Refused::Jwks(format!("not a JWK Set: {e}")))?;
    let found: Vec<Jwk> = parsed
        .keys
        .into_iter()
        .filter(|k| k.kid.as_deref() == Some(kid))
        .collect();
    if !found.is_empty() {
        return Ok(found);
    }
    let raw: &[Value] = jwks
        .get("keys")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let kid_of = |k: &Value| k.get("kid").and_then(Value::as_str).map(str::to_owned);
    if let Some((_, why)) = parsed
        .refused
        .iter()
        .find(|(i, _)| raw.get(*i).and_then(kid_of).as_deref() == Some(kid))
    {
        return Err(Refused::UnusableKey {
            kid: kid.to_owned(),
            why: why.to_string(),
        });
    }
    Err(Refused::UnknownKid {
        kid: kid.to_owned(),
        known: raw.iter().filter_map(kid_of).collect(),
    })
}

/// Verifies an assertion whose header passed [`Header::check`] against the proxy's JWK Set at `now`; the
/// verified claims.
pub fn verify(
    header: &Header<'_>,
    jwks: &Value,
    expect: &Expect,
    now: i64,
) -> Result<Map<String, Value>, Refused> {
    let keys = keys_with_kid(jwks, &header.kid)?;
    // The signature first, with every claim check off: claims of a forged token mean nothing.
    let signature_only = JwtRules {
        issuer: None,
        audiences: Vec::new(),
        algorithms: ASSERTION_ALGS.to_vec(),
        require_exp: false,
        clock_skew_s: i64::MAX / 4,
        max_lifetime_s: None,
        typ: None,
    };
    let verified = signature_only
        .verify(&header.jwt, &keys, now)
        .map_err(|e| match e {
            JwtError::BadSignature => Refused::BadSignature {
                kid: header.kid.clone(),
            },
            JwtError::AlgNotAllowed => Refused::KeyDoesNotFit {
                kid: header.kid.clone(),
                alg: header.alg.name().to_owned(),
                kind: keys.first().map_or("unknown", |k| k.key.kind()),
            },
            other => Refused::Other(Reason::from(other).label()),
        })?;
    check_claims(&verified, expect, now)?;
    Ok(verified.claims().clone())
}

/// A NumericDate claim the library already checked the type and range of, in whole seconds.
fn date(claims: &Map<String, Value>, name: &'static str) -> Result<i64, Refused> {
    claims
        .get(name)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
        .ok_or(Refused::Missing(name))
}

/// The claims of a verified assertion: the library's checks (`iss`, `exp`, `nbf`, `aud`) with the details of
/// what failed, then `iat`.
fn check_claims(verified: &VerifiedJwt, expect: &Expect, now: i64) -> Result<(), Refused> {
    let claims = verified.claims();
    let rules = JwtRules {
        issuer: Some(expect.issuer.clone()),
        audiences: vec![expect.audience.clone()],
        algorithms: ASSERTION_ALGS.to_vec(),
        require_exp: true,
        clock_skew_s: expect.leeway_s,
        max_lifetime_s: None,
        typ: None,
    };
    rules.recheck(verified, now).map_err(|e| match e {
        JwtError::WrongIssuer => Refused::WrongIssuer {
            got: claims.get("iss").and_then(Value::as_str).map(str::to_owned),
            want: expect.issuer.clone(),
        },
        JwtError::WrongAudience => Refused::WrongAudience {
            got: claims.get("aud").map(|aud| match aud {
                Value::String(s) => shown(s),
                Value::Array(list) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .map(shown)
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => "?".to_owned(),
            }),
            want: expect.audience.clone(),
        },
        JwtError::MissingExp => Refused::Missing("exp"),
        JwtError::Expired => Refused::Expired {
            ago: date(claims, "exp").map_or(0, |exp| now.saturating_sub(exp)),
        },
        JwtError::NotYetValid => Refused::NotYetValid {
            ahead: date(claims, "nbf").map_or(0, |nbf| nbf.saturating_sub(now)),
        },
        other => Refused::Other(Reason::from(other).label()),
    })?;
    let iat = date(claims, "iat")?;
    if iat > now.saturating_add(expect.leeway_s) {
        return Err(Refused::IssuedInTheFuture {
            ahead: iat.saturating_sub(now),
        });
    }
    Ok(())
}

/// The assertion from `--token` or standard input, without surrounding white space.
fn token_text(a: &VerifyAssertionArgs) -> Result<String, CliError> {
    let text = match &a.token {
        Some(t) => t.clone(),
        None => {
            use std::io::IsTerminal as _;
            if std::io::stdin().is_terminal() {
                return Err(CliError::Usage(
                    "no assertion: pipe it on standard input or give --token".into(),
                ));
            }
            crate::read_text(std::path::Path::new("-"))?
        }
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(CliError::Usage(
            "no assertion: the token given is empty".into(),
        ));
    }
    Ok(token.to_owned())
}

/// GET the JWK Set at `url` (as the filter's own fetches would) and read it as JSON.
fn fetch_jwks(url: &str, timeout: Duration) -> Result<Value, Refused> {
    let body = crate::http::fetch(url, timeout).map_err(|e| Refused::Jwks(e.to_string()))?;
    serde_json::from_slice(&body)
        .map_err(|_| Refused::Jwks(format!("GET {url}: the body is not JSON")))
}

pub fn run(a: &VerifyAssertionArgs) -> Output {
    if !(a.jwks_url.starts_with("http://") || a.jwks_url.starts_with("https://")) {
        return Err(CliError::Usage(format!(
            "--jwks-url {:?}: expected an http:// or https:// URL",
            a.jwks_url
        )));
    }
    let token = token_text(a)?;
    let expect = Expect {
        issuer: a.iss.clone(),
        audience: a.aud.clone(),
        leeway_s: i64::from(a.leeway_s),
    };
    let refused = |r: Refused| CliError::Failure(r.to_string());
    // The token's shape first: no fetch for something that cannot be an assertion.
    let header = Header::check(&token).map_err(refused)?;
    let jwks = fetch_jwks(&a.jwks_url, Duration::from_secs(a.timeout.max(1))).map_err(refused)?;
    let now = crate::now()?;
    let claims = verify(&header, &jwks, &expect, now).map_err(refused)?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .map_or_else(|| "none".to_owned(), shown);
    let left = date(&claims, "exp").map_or(0, |exp| exp.saturating_sub(now));
    eprintln!(
        "trustgate: the assertion verifies: alg {}, kid {}, sub {sub}, expires in {left} s",
        header.alg,
        shown(&header.kid)
    );
    Ok(crate::keys::pretty(&Value::Object(claims)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use serde_json::json;
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;
    use std::path::PathBuf;
    use trustgate::formats::b64;

    const ISS: &str = "https://gateway.example.com";
    const AUD: &str = "orders";
    const T0: i64 = 1_700_000_000;

    fn parse<P: clap::Parser>(list: &[&str]) -> P {
        P::try_parse_from(std::iter::once("trustgate").chain(list.iter().copied())).unwrap()
    }

    #[derive(clap::Parser)]
    struct Keygen {
        #[command(flatten)]
        a: crate::keygen::KeygenArgs,
    }

    #[derive(clap::Parser)]
    struct Sign {
        #[command(flatten)]
        a: crate::sign_jwt::SignJwtArgs,
    }

    #[derive(clap::Parser)]
    struct Verify {
        #[command(flatten)]
        a: VerifyAssertionArgs,
    }

    /// Serves `jwks` at `/jwks.json` (404 elsewhere) on 127.0.0.1, one connection at a time, for the rest of
    /// the test run; the base URL.
    fn serve(jwks: &Value) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let body = jwks.to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body) = if request.starts_with(b"GET /jwks.json ") {
                    ("200 OK", body.as_str())
                } else {
                    ("404 Not Found", "not here")
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        base
    }

    /// A gateway key made by `keygen --assertion`, and its JWKS served on 127.0.0.1.
    struct Gateway {
        key: PathBuf,
        kid: String,
        jwks: Value,
        url: String,
    }

    fn gateway(alg: &str, name: &str) -> Gateway {
        let dir = std::env::temp_dir().join(format!("tg-verify-assertion-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join(name);
        let kid = format!("gw-{name}");
        let printed = crate::keygen::keygen(
            &parse::<Keygen>(&[
                "--alg",
                alg,
                "--kid",
                &kid,
                "--assertion",
                "--force",
                "--out",
                out.to_str().unwrap(),
            ])
            .a,
        )
        .unwrap();
        let block: Value = serde_json::from_str(&printed).unwrap();
        let jwks = json!({ "keys": [block["public_jwk"]] });
        let url = serve(&jwks) + "/jwks.json";
        Gateway {
            key: dir.join(format!("{name}.key.pem")),
            kid,
            jwks,
            url,
        }
    }

    /// An assertion minted by `trustgate sign jwt` with the gateway's key: iss, aud, sub alice, a jti, exp in
    /// 60 s; `changes` replace or add flags.
    fn sign(gw: &Gateway, changes: &[(&str, &str)]) -> String {
        let key = gw.key.to_str().unwrap();
        let mut flags = vec![
            ("--key", key),
            ("--kid", gw.kid.as_str()),
            ("--iss", ISS),
            ("--aud", AUD),
            ("--sub", "alice"),
            ("--exp-in", "60"),
            ("--claim", "jti=AAAAAAAAAAAAAAAAAAAAAA"),
        ];
        for &(flag, value) in changes {
            match flags.iter_mut().find(|(f, _)| *f == flag) {
                Some(slot) => slot.1 = value,
                None => flags.push((flag, value)),
            }
        }
        let list: Vec<&str> = flags.iter().flat_map(|&(f, v)| [f, v]).collect();
        crate::sign_jwt::run(&parse::<Sign>(&list).a).unwrap()
    }

    /// `trustgate verify-assertion --jwks-url URL --iss ISS --aud AUD --token TOKEN [extra]`.
    fn check(url: &str, token: &str, extra: &[&str]) -> Output {
        let mut list = vec![
            "--jwks-url",
            url,
            "--iss",
            ISS,
            "--aud",
            AUD,
            "--token",
            token,
        ];
        list.extend(extra);
        run(&parse::<Verify>(&list).a)
    }

    /// The one sentence a refusal prints; it never holds the token or a part of it.
    fn refusal(url: &str, token: &str, extra: &[&str]) -> String {
        match check(url, token, extra) {
            Err(CliError::Failure(m)) => {
                for part in token.split('.').filter(|p| p.len() > 8) {
                    assert!(!m.contains(part), "the token is in the message: {m}");
                }
                m
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    /// `verify` at a fixed `now`.
    fn verify_at(gw: &Gateway, token: &str, now: i64, leeway_s: i64) -> Result<(), Refused> {
        let expect = Expect {
            issuer: ISS.into(),
            audience: AUD.into(),
            leeway_s,
        };
        verify(&Header::check(token)?, &gw.jwks, &expect, now).map(|_| ())
    }

    /// A token with this header and these claims, signed with the gateway's key (what `sign jwt` cannot make).
    fn hand_made(gw: &Gateway, alg: Alg, header: &Value, claims: &Value) -> String {
        let pem = std::fs::read_to_string(&gw.key).unwrap();
        let key = PrivateKey::from_pem(&pem, "gw").unwrap();
        let input = format!(
            "{}.{}",
            b64::url_encode(header.to_string().as_bytes()),
            b64::url_encode(claims.to_string().as_bytes())
        );
        let sig = key.sign(alg, input.as_bytes()).unwrap();
        format!("{input}.{}", b64::url_encode(&sig))
    }

    #[test]
    fn an_assertion_signed_with_a_keygen_key_verifies_through_the_jwks_url() {
        for (alg, name) in [("EdDSA", "ok-ed"), ("ES256", "ok-ec")] {
            let gw = gateway(alg, name);
            let token = sign(&gw, &[("--claim", "email=alice@example.com")]);
            let printed = check(&gw.url, &token, &[]).unwrap();
            let claims: Value = serde_json::from_str(&printed).unwrap();
            assert_eq!(claims["sub"], "alice");
            assert_eq!(claims["iss"], ISS);
            assert_eq!(claims["aud"], AUD);
            assert_eq!(claims["email"], "alice@example.com");
            assert_eq!(
                claims["exp"].as_i64(),
                claims["iat"].as_i64().map(|i| i + 60)
            );
        }
    }

    #[test]
    fn issuer_audience_kid_and_signature_failures_say_why() {
        let gw = gateway("EdDSA", "refused");
        let url = gw.url.as_str();
        let m = refusal(
            url,
            &sign(&gw, &[("--iss", "https://other.example.com")]),
            &[],
        );
        assert_eq!(
            m,
            "wrong issuer (got \"https://other.example.com\", expected \"https://gateway.example.com\")"
        );
        let m = refusal(url, &sign(&gw, &[("--aud", "billing")]), &[]);
        assert!(
            m.starts_with("wrong audience (got \"billing\", expected \"orders\")"),
            "{m}"
        );
        let m = refusal(url, &sign(&gw, &[("--kid", "gw-2025-01")]), &[]);
        assert!(
            m.starts_with("unknown kid \"gw-2025-01\" (the set has: \"gw-refused\")"),
            "{m}"
        );
        // Claims changed after signing: the signature, not the changed claim, is what is reported.
        let token = sign(&gw, &[]);
        let (header, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged = json!({"iss": "https://evil.example.com", "aud": AUD, "sub": "admin", "iat": T0,
                            "exp": T0 + 60});
        let tampered = format!(
            "{header}.{}.{signature}",
            b64::url_encode(forged.to_string().as_bytes())
        );
        let m = refusal(url, &tampered, &[]);
        assert!(
            m.starts_with("bad signature: the set's key with kid \"gw-refused\""),
            "{m}"
        );
        // Another key under the same kid.
        let impostor = gateway("EdDSA", "impostor");
        let foreign = sign(&impostor, &[("--kid", "gw-refused")]);
        assert!(refusal(url, &foreign, &[]).starts_with("bad signature"));
        // An ES256 token whose kid names the EdDSA key.
        let es = gateway("ES256", "es");
        let m = refusal(url, &sign(&es, &[("--kid", "gw-refused")]), &[]);
        assert_eq!(
            m,
            "the set's key with kid \"gw-refused\" (OKP Ed25519) cannot verify alg ES256"
        );
    }

    #[test]
    fn time_failures_say_by_how_much() {
        let gw = gateway("ES256", "time");
        let at = T0.to_string();
        let token = sign(&gw, &[("--at", &at)]);
        assert_eq!(verify_at(&gw, &token, T0 + 30, 0), Ok(()));
        assert_eq!(
            verify_at(&gw, &token, T0 + 100, 0),
            Err(Refused::Expired { ago: 40 })
        );
        assert_eq!(verify_at(&gw, &token, T0 + 100, 40), Ok(()));
        assert_eq!(
            verify_at(&gw, &token, T0 - 1000, 0),
            Err(Refused::IssuedInTheFuture { ahead: 1000 })
        );
        assert_eq!(Refused::Expired { ago: 40 }.to_string(), "expired 40 s ago");
        // Through the command: a token made ten minutes ago.
        let old = (crate::now().unwrap() - 600).to_string();
        let m = refusal(&gw.url, &sign(&gw, &[("--at", &old)]), &[]);
        assert!(m.starts_with("expired 5") && m.ends_with(" s ago"), "{m}");
        let soon = (crate::now().unwrap() + 600).to_string();
        let m = refusal(
            &gw.url,
            &sign(&gw, &[("--at", &soon)]),
            &["--leeway-s", "5"],
        );
        assert!(
            m.starts_with("issued ") && m.contains("s in the future (iat)"),
            "{m}"
        );
    }

    #[test]
    fn header_and_claims_an_assertion_must_have() {
        let gw = gateway("EdDSA", "shape");
        let claims = json!({"iss": ISS, "aud": AUD, "sub": "alice", "iat": T0, "exp": T0 + 60});
        let no_typ = hand_made(
            &gw,
            Alg::EdDSA,
            &json!({"alg": "EdDSA", "kid": gw.kid}),
            &claims,
        );
        assert_eq!(verify_at(&gw, &no_typ, T0, 0), Err(Refused::Typ(None)));
        let at_jwt = json!({"alg": "EdDSA", "kid": gw.kid, "typ": "at+jwt"});
        let m = refusal(&gw.url, &hand_made(&gw, Alg::EdDSA, &at_jwt, &claims), &[]);
        assert_eq!(
            m,
            "typ \"at+jwt\" is not an assertion's: trustgate's assertions carry typ \"JWT\""
        );
        let no_kid = hand_made(
            &gw,
            Alg::EdDSA,
            &json!({"alg": "EdDSA", "typ": "JWT"}),
            &claims,
        );
        assert_eq!(verify_at(&gw, &no_kid, T0, 0), Err(Refused::NoKid));
        let header = json!({"alg": "EdDSA", "kid": gw.kid, "typ": "application/JWT"});
        assert_eq!(
            verify_at(&gw, &hand_made(&gw, Alg::EdDSA, &header, &claims), T0, 0),
            Ok(())
        );
        let no_iat = json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": T0 + 60});
        let header = json!({"alg": "EdDSA", "kid": gw.kid, "typ": "JWT"});
        assert_eq!(
            verify_at(&gw, &hand_made(&gw, Alg::EdDSA, &header, &no_iat), T0, 0),
            Err(Refused::Missing("iat"))
        );
        let no_exp = json!({"iss": ISS, "aud": AUD, "sub": "alice", "iat": T0});
        assert_eq!(
            verify_at(&gw, &hand_made(&gw, Alg::EdDSA, &header, &no_exp), T0, 0),
            Err(Refused::Missing("exp"))
        );
        let hs256 = crate::sign_jwt::run(
            &parse::<Sign>(&[
                "--secret",
                "0123456789abcdef0123456789abcdef",
                "--kid",
                &gw.kid,
            ])
            .a,
        )
        .unwrap();
        let m = refusal(&gw.url, &hs256, &[]);
        assert_eq!(
            m,
            "alg \"HS256\" is not an assertion's: trustgate signs assertions with EdDSA or ES256"
        );
    }

    #[test]
    fn not_a_jws_and_fetch_failures_say_why() {
        let gw = gateway("EdDSA", "fetch");
        let m = refusal(&gw.url, "hello", &[]);
        assert_eq!(
            m,
            "not a JWS: expected three base64url parts, header.payload.signature"
        );
        let m = refusal(&gw.url, "eyJh.eyJi.c2ln.aXY.dGFn", &[]);
        assert!(m.contains("encrypted JWT (JWE)"), "{m}");
        let m = refusal(&gw.url, "e30.e30.AA", &[]);
        assert!(m.starts_with("not a JWS: "), "{m}");
        let token = sign(&gw, &[]);
        let missing = gw.url.replace("/jwks.json", "/nothing.json");
        let m = refusal(&missing, &token, &[]);
        assert_eq!(
            m,
            format!("JWKS fetch failed: GET {missing}: status 404, expected 200")
        );
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/jwks.json", l.local_addr().unwrap())
        };
        let m = refusal(&closed, &token, &["--timeout", "5"]);
        assert!(
            m.starts_with(&format!("JWKS fetch failed: GET {closed}: ")),
            "{m}"
        );
        assert!(matches!(
            check("ftp://example.com/jwks", &token, &[]),
            Err(CliError::Usage(_))
        ));
        let gone = Refused::UnknownKid {
            kid: "k".repeat(100),
            known: Vec::new(),
        }
        .to_string();
        assert!(gone.len() < 120 && gone.contains('…'), "{gone}");
    }
}
