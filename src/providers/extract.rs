//! Finding a provider's credential in a request, and removing it before the upstream sees it.
//!
//! Sources are a header (optionally after a scheme prefix, matched case-insensitively as RFC 9110 §11.1 says),
//! a query parameter, or a cookie. Exactly one credential may be present across all of a provider's sources:
//! two `Authorization` headers, or a header and a query parameter, are refused rather than guessed between.

use crate::decision::HeaderOp;
use crate::request::RequestView;
use std::borrow::Cow;

/// Where a credential is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header (lower-case name), and the prefix its value must start with (may be empty).
    Header { name: String, prefix: String },
    /// A query parameter of the raw `:path`.
    Query(String),
    /// A cookie in the `Cookie` header(s).
    Cookie(String),
}

impl TokenSource {
    /// `Authorization: Bearer <token>`.
    pub fn bearer() -> Self {
        TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }
    }
}

/// The one credential found, and how to remove it from the request. A header's credential is borrowed
/// from the request; a decoded query or cookie value is owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    pub value: Cow<'a, str>,
    pub remove: HeaderOp,
}

/// More than one credential was present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Multiple;

fn strip_prefix_ci<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    value.get(prefix.len()..)
}

/// True when a comma-separated piece starts a new `scheme credentials` pair (RFC 9110 §11.4): a token
/// followed by a space. Parameters of the same credential (`nonce="…"`) have `=` before any space.
fn starts_a_credential(part: &str) -> bool {
    let part = part.trim_start();
    let end = part.find([' ', '=']).unwrap_or(part.len());
    let (scheme, after) = part.split_at(end);
    !scheme.is_empty() && after.starts_with(' ') && !after.trim_start().starts_with('=')
}

/// Percent-decodes a query value (`+` is a space, as in forms). `None` on bad escapes or non-UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The `name=value` pairs of a raw query string, names decoded, values raw.
fn query_pairs(query: &str) -> impl Iterator<Item = (Option<String>, &str, &str)> {
    query.split('&').map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(n), v, pair)
    })
}

fn cookie_pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(';').filter_map(|c| {
        let (n, v) = c.split_once('=')?;
        Some((n.trim(), v.trim()))
    })
}

/// Finds the single credential among `sources`. `Ok(None)`: none present.
pub fn find<'a>(
    sources: &[TokenSource],
    req: &RequestView<'a>,
) -> Result<Option<Found<'a>>, Multiple> {
    let mut found: Option<Found<'a>> = None;
    let mut put = |f: Found<'a>| {
        if found.replace(f).is_some() {
            Err(Multiple)
        } else {
            Ok(())
        }
    };
    for src in sources {
        match src {
            TokenSource::Header { name, prefix } => {
                for v in req.header_values(name) {
                    let Some(rest) = strip_prefix_ci(v, prefix) else {
                        continue;
                    };
                    // Proxies join repeated headers with ",": "Bearer a, ApiKey b" is two credentials.
                    if !prefix.is_empty() && rest.split(',').skip(1).any(starts_a_credential) {
                        return Err(Multiple);
                    }
                    let token = rest.trim_matches(|c| c == ' ' || c == '\t');
                    if token.is_empty() {
                        continue;
                    }
                    put(Found {
                        value: Cow::Borrowed(token),
                        remove: HeaderOp::Remove(name.clone()),
                    })?;
                }
            }
            TokenSource::Query(param) => {
                let Some((path, query)) = req.path.split_once('?') else {
                    continue;
                };
                let query = query.split('#').next().unwrap_or_default();
                for (n, v, _) in query_pairs(query) {
                    if n.as_deref() != Some(param.as_str()) {
                        continue;
                    }
                    let kept: Vec<&str> = query_pairs(query)
                        .filter(|(n, _, _)| n.as_deref() != Some(param.as_str()))
                        .map(|(_, _, raw)| raw)
                        .collect();
                    let new_path = if kept.is_empty() {
                        path.to_owned()
                    } else {
                        format!("{path}?{}", kept.join("&"))
                    };
                    // A value that does not decode is still a credential: it is present, and refused later.
                    put(Found {
                        value: percent_decode(v).map_or(Cow::Borrowed(v), Cow::Owned),
                        remove: HeaderOp::Set(":path".into(), new_path),
                    })?;
                }
            }
            TokenSource::Cookie(cookie) => {
                for header in req.header_values("cookie") {
                    for (n, v) in cookie_pairs(header) {
                        if n != cookie {
                            continue;
                        }
                        let kept: Vec<String> = req
                            .header_values("cookie")
                            .flat_map(cookie_pairs)
                            .filter(|(n, _)| *n != cookie)
                            .map(|(n, v)| format!("{n}={v}"))
                            .collect();
                        let remove = if kept.is_empty() {
                            HeaderOp::Remove("cookie".into())
                        } else {
                            HeaderOp::Set("cookie".into(), kept.join("; "))
                        };
                        put(Found {
                            value: Cow::Borrowed(v.trim_matches('"')),
                            remove,
                        })?;
                    }
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(path: &'a str, headers: &'a [(&'a str, &'a str)]) -> RequestView<'a> {
        RequestView {
            method: "GET",
            path,
            authority: "h",
            headers,
            body: None,
            peer: None,
            peer_unread: false,
        }
    }

    fn h<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        pairs.to_vec()
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_removed() {
        let hs = h(&[("authorization", "bEaReR  abc ")]);
        let f = find(&[TokenSource::bearer()], &req("/", &hs))
            .unwrap()
            .unwrap();
        assert_eq!(f.value, "abc");
        assert_eq!(f.remove, HeaderOp::Remove("authorization".into()));
    }

    #[test]
    fn other_schemes_are_not_bearer_tokens() {
        let hs = h(&[("authorization", "Basic YWxhZGRpbg==")]);
        assert_eq!(find(&[TokenSource::bearer()], &req("/", &hs)), Ok(None));
        let hs = h(&[("authorization", "Bearer")]);
        assert_eq!(find(&[TokenSource::bearer()], &req("/", &hs)), Ok(None));
        let hs = h(&[("authorization", "Bearerabc")]);
        assert_eq!(find(&[TokenSource::bearer()], &req("/", &hs)), Ok(None));
    }

    #[test]
    fn two_credentials_are_refused() {
        let hs = h(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(
            find(&[TokenSource::bearer()], &req("/", &hs)),
            Err(Multiple)
        );
        let hs = h(&[("authorization", "Bearer a")]);
        let srcs = [
            TokenSource::bearer(),
            TokenSource::Query("access_token".into()),
        ];
        assert_eq!(find(&srcs, &req("/x?access_token=b", &hs)), Err(Multiple));
        assert_eq!(
            find(&srcs[1..], &req("/x?access_token=a&access_token=b", &[])),
            Err(Multiple)
        );
    }

    #[test]
    fn joined_repeated_headers_are_two_credentials() {
        let hs = h(&[("authorization", "Bearer a,Bearer b")]);
        assert_eq!(
            find(&[TokenSource::bearer()], &req("/", &hs)),
            Err(Multiple)
        );
        let hs = h(&[("authorization", "Bearer a,ApiKey b")]);
        assert_eq!(
            find(&[TokenSource::bearer()], &req("/", &hs)),
            Err(Multiple)
        );
        let hs = h(&[("authorization", "Bearer a, x = y")]);
        assert!(find(&[TokenSource::bearer()], &req("/", &hs))
            .unwrap()
            .is_some());
        let hs = h(&[("authorization", "Bearer a, bearer b")]);
        assert_eq!(
            find(&[TokenSource::bearer()], &req("/", &hs)),
            Err(Multiple)
        );
        // Commas inside one credential's parameters are not a second credential.
        let hmac = TokenSource::Header {
            name: "authorization".into(),
            prefix: "HMAC ".into(),
        };
        let hs = h(&[("authorization", "HMAC client_id=\"a\",nonce=\"b\"")]);
        assert!(find(std::slice::from_ref(&hmac), &req("/", &hs))
            .unwrap()
            .is_some());
        let hs = h(&[("authorization", "HMAC client_id=\"a\",HMAC client_id=\"b\"")]);
        assert_eq!(find(&[hmac], &req("/", &hs)), Err(Multiple));
    }

    #[test]
    fn query_token_is_decoded_and_removed_from_the_path() {
        let srcs = [TokenSource::Query("access_token".into())];
        let f = find(&srcs, &req("/x?a=1&access_token=t%2Bk&b=2", &[]))
            .unwrap()
            .unwrap();
        assert_eq!(f.value, "t+k");
        assert_eq!(f.remove, HeaderOp::Set(":path".into(), "/x?a=1&b=2".into()));
        let f = find(&srcs, &req("/x?access_token=t", &[]))
            .unwrap()
            .unwrap();
        assert_eq!(f.remove, HeaderOp::Set(":path".into(), "/x".into()));
    }

    #[test]
    fn cookie_token_is_removed_from_the_cookie_header() {
        let srcs = [TokenSource::Cookie("id_token".into())];
        let hs = h(&[("cookie", "a=1; id_token=tok; b=2")]);
        let f = find(&srcs, &req("/", &hs)).unwrap().unwrap();
        assert_eq!(f.value, "tok");
        assert_eq!(f.remove, HeaderOp::Set("cookie".into(), "a=1; b=2".into()));
        let hs = h(&[("cookie", "id_token=tok")]);
        let f = find(&srcs, &req("/", &hs)).unwrap().unwrap();
        assert_eq!(f.remove, HeaderOp::Remove("cookie".into()));
    }
}
