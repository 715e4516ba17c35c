//! Which rule applies: host, path and method matching over the normalized path.
//!
//! Rules match the path an upstream would act on ([`normalize_path`]): query and fragment removed,
//! percent-encoded unreserved characters decoded (RFC 3986 §6.2.2.2), repeated slashes merged, dot segments
//! resolved (RFC 3986 §5.2.4). A path whose meaning depends on who decodes it (an encoded `/` or `\`, a `\`,
//! an encoded dot segment, NUL, bad percent-encoding) is refused with 400 before any rule is tried, so it can
//! never match a public rule while reaching a protected route. This holds whether or not Envoy's own
//! `normalize_path` / `merge_slashes` are on.

use crate::formats::b64::hex_digit;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Does not start with `/`.
    NotAbsolute,
    /// `%` not followed by two hex digits.
    BadEncoding,
    /// Encoded `/`, `\`, NUL, a raw `\` or NUL, an encoded dot segment, or a control character.
    Ambiguous,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes one segment's unreserved escapes; other escapes are kept, upper-cased. Returns the segment and
/// whether an escape was decoded.
fn normalize_segment(seg: &str) -> Result<(String, bool), PathError> {
    let bytes = seg.as_bytes();
    let mut out = String::with_capacity(seg.len());
    let mut decoded_any = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_digit);
            let lo = bytes.get(i + 2).copied().and_then(hex_digit);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEncoding);
            };
            let c = hi * 16 + lo;
            if matches!(c, b'/' | b'\\' | 0) {
                return Err(PathError::Ambiguous);
            }
            if is_unreserved(c) {
                out.push(char::from(c));
                decoded_any = true;
            } else {
                out.push('%');
                out.push(char::from(
                    b"0123456789ABCDEF"
                        .get(usize::from(hi))
                        .copied()
                        .unwrap_or(b'0'),
                ));
                out.push(char::from(
                    b"0123456789ABCDEF"
                        .get(usize::from(lo))
                        .copied()
                        .unwrap_or(b'0'),
                ));
            }
            i += 3;
        } else {
            if b == b'\\' || b.is_ascii_control() {
                return Err(PathError::Ambiguous);
            }
            // Non-ASCII bytes arrive as part of a UTF-8 str: copy the whole char.
            let ch_len = seg
                .get(i..)
                .and_then(|s| s.chars().next())
                .map(char::len_utf8)
                .unwrap_or(1);
            out.push_str(seg.get(i..i + ch_len).unwrap_or_default());
            i += ch_len;
        }
    }
    Ok((out, decoded_any))
}

/// The path an upstream acts on, or why it is ambiguous. `raw` is the request's `:path`.
///
/// Repeated slashes are merged before dot segments are resolved (`/a//../b` → `/b`). Other readings of the
/// same path exist ([`other_readings`]); the engine refuses a path whose readings pick different rules.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    read_path(raw, Reading::MERGE_FIRST)
}

/// How one upstream reads a path: whether it merges repeated slashes before RFC 3986 §5.2.4 dot-segment
/// removal (or after it, where an empty segment is a segment that `..` removes), and whether it drops
/// `;params` from each segment first (Tomcat, Jetty, Spring: `/public/..;/admin` is `/admin` there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reading {
    merge_first: bool,
    strip_params: bool,
}

impl Reading {
    const MERGE_FIRST: Reading = Reading {
        merge_first: true,
        strip_params: false,
    };
}

fn read_path(raw: &str, how: Reading) -> Result<String, PathError> {
    read_path_with(raw, how, true)
}

fn read_path_with(raw: &str, how: Reading, fast: bool) -> Result<String, PathError> {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    if fast && !how.strip_params && already_normal(rest) {
        return Ok(path.to_owned());
    }
    let mut out: Vec<String> = Vec::new();
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        let seg = if how.strip_params {
            seg.split(';').next().unwrap_or_default()
        } else {
            seg
        };
        let (seg, decoded) = normalize_segment(seg)?;
        trailing_slash = i == last;
        match seg.as_str() {
            "." | ".." if decoded => return Err(PathError::Ambiguous),
            // A merged slash (or a trailing one); RFC 3986 alone keeps it as a segment `..` can remove.
            "" if !how.merge_first && i != last => out.push(seg),
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => {
                out.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut norm = String::with_capacity(path.len());
    for s in out.iter().filter(|s| !s.is_empty()) {
        norm.push('/');
        norm.push_str(s);
    }
    if norm.is_empty() || trailing_slash {
        norm.push('/');
    }
    Ok(norm)
}

/// True when every reading leaves the path (`rest`: after its leading `/`, no query) as it is: nothing to
/// decode, no empty or dot segment, nothing ambiguous. Most requests: they skip the segment-by-segment work.
fn already_normal(rest: &str) -> bool {
    if rest
        .bytes()
        .any(|c| c == b'%' || c == b'\\' || c.is_ascii_control())
    {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg == "." || seg == ".." || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// The other ways an upstream may read `raw` when they can differ from [`normalize_path`]'s: with `..`
/// removing an empty segment (`//` before `..`: RFC 3986 dot-segment removal, then slashes merged), and with
/// `;params` removed from every segment. Empty when `raw` has neither `//` nor `;` before its query: then
/// every reading is the same. `primary` is `normalize_path(raw)`; only readings that differ from it are
/// listed, each once. A reading that is ambiguous on its own (`%2e%2e;` without its parameter) makes the
/// whole path an error.
pub fn other_readings(raw: &str, primary: &str) -> Result<Vec<String>, PathError> {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    let b = path.as_bytes();
    let slashes = b.windows(2).any(|w| w == b"//");
    let params = b.contains(&b';');
    if !slashes && !params {
        return Ok(Vec::new());
    }
    let mut readings: Vec<String> = Vec::new();
    for merge_first in [true, false] {
        for strip_params in [false, true] {
            let how = Reading {
                merge_first,
                strip_params,
            };
            if how == Reading::MERGE_FIRST
                || (!merge_first && !slashes)
                || (strip_params && !params)
            {
                continue;
            }
            let r = read_path(raw, how)?;
            if r != primary && !readings.contains(&r) {
                readings.push(r);
            }
        }
    }
    Ok(readings)
}

/// A compiled `host` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `*`: any host.
    Any,
    /// An exact name (lower-cased).
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com` (stored as `.example.com`), not the bare domain.
    Suffix(String),
}

impl HostMatch {
    /// Compiles a pattern; `None` when it is not `*`, `*.suffix` or a plain name.
    pub fn parse(p: &str) -> Option<HostMatch> {
        let p = p.to_ascii_lowercase();
        if p == "*" {
            return Some(HostMatch::Any);
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']')
                })
        };
        if let Some(suffix) = p.strip_prefix("*.") {
            return name_ok(suffix).then(|| HostMatch::Suffix(format!(".{suffix}")));
        }
        name_ok(&p).then_some(HostMatch::Exact(p))
    }

    /// True when `authority` (the `:authority` / `Host`, maybe with a port) fits.
    pub fn matches(&self, authority: &str) -> bool {
        let host = strip_port(authority).to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host);
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => host == h || authority.eq_ignore_ascii_case(h),
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // [v6]:port
        return match authority.find(']') {
            Some(i) => authority.get(..=i).unwrap_or(authority),
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// A compiled `match` block. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Match {
    pub host: Option<HostMatch>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    /// Upper-case method names.
    pub methods: Vec<String>,
}

impl Match {
    /// True when the request fits. `path` is the normalized path.
    pub fn matches(&self, method: &str, authority: &str, path: &str) -> bool {
        self.host.as_ref().is_none_or(|h| h.matches(authority))
            && self.path.as_ref().is_none_or(|p| p == path)
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|p| path.starts_with(p.as_str()))
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_an_upstream_would() {
        let cases = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a//b", "/a/b"),
            ("//a///b/", "/a/b/"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../../b", "/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/healthz?x=1", "/healthz"),
            ("/healthz#frag", "/healthz"),
            ("/%68ealthz", "/healthz"),
            ("/a%7Eb", "/a~b"),
            ("/a%20b", "/a%20b"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/π", "/π"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    fn readings(raw: &str) -> Result<Vec<String>, PathError> {
        other_readings(raw, &normalize_path(raw)?)
    }

    #[test]
    fn other_readings_cover_empty_segments_and_path_params() {
        // `..` after an empty segment: merged first it removes `es`, RFC 3986 order it removes the empty one.
        assert_eq!(
            normalize_path("/es//../public/x").as_deref(),
            Ok("/public/x")
        );
        assert_eq!(
            readings("/es//../public/x"),
            Ok(vec!["/es/public/x".to_owned()])
        );
        assert_eq!(
            readings("/es/x//../../public/x"),
            Ok(vec!["/es/public/x".to_owned()])
        );
        // `;params` dropped per segment, the way Tomcat/Jetty/Spring read a path.
        assert_eq!(
            normalize_path("/public/..;/es/x").as_deref(),
            Ok("/public/..;/es/x")
        );
        assert_eq!(readings("/public/..;/es/x"), Ok(vec!["/es/x".to_owned()]));
        assert_eq!(
            readings("/admin;x/secret"),
            Ok(vec!["/admin/secret".to_owned()])
        );
        assert_eq!(readings("/x;jsessionid=1"), Ok(vec!["/x".to_owned()]));
        // Both: every combination that differs.
        assert_eq!(normalize_path("/a//..;/b").as_deref(), Ok("/a/..;/b"));
        assert_eq!(
            readings("/a//..;/b"),
            Ok(vec!["/b".to_owned(), "/a/b".to_owned()])
        );
        // An encoded dot segment behind a parameter is ambiguous in the reading that drops the parameter.
        assert_eq!(readings("/public/%2e%2e;/es/x"), Err(PathError::Ambiguous));
        // Nothing to compare: no `//`, no `;` (the query does not count).
        assert_eq!(readings("/a/../b?x=//;"), Ok(vec![]));
        // `//` alone changes nothing: every reading merges or keeps it the same way.
        assert_eq!(readings("//a/b"), Ok(vec![]));
        assert_eq!(readings("/a//b/"), Ok(vec![]));
    }

    #[test]
    fn the_fast_path_reads_like_the_segment_walk() {
        // Every path of up to 6 characters over an alphabet of the characters that matter.
        let alphabet = ['/', '.', 'a', ';', '%', '2', 'e', '\\', '?'];
        let mut paths = vec![String::new()];
        let mut level = vec![String::new()];
        for _ in 0..6 {
            level = level
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(level.iter().cloned());
        }
        for p in paths.iter().map(|p| format!("/{p}")) {
            for how in [
                Reading::MERGE_FIRST,
                Reading {
                    merge_first: false,
                    strip_params: false,
                },
            ] {
                assert_eq!(
                    read_path_with(&p, how, true),
                    read_path_with(&p, how, false),
                    "{p:?}"
                );
            }
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for raw in [
            "/public/..%2fadmin",
            "/public%2F..%2Fadmin",
            "/a%5cb",
            "/a\\b",
            "/a%00",
            "/public/%2e%2e/admin",
            "/public/.%2E/admin",
            "/%2e/admin",
            "/a%zz",
            "/a%2",
        ] {
            assert!(normalize_path(raw).is_err(), "{raw}");
        }
        assert_eq!(normalize_path("*"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path(""), Err(PathError::NotAbsolute));
    }

    #[test]
    fn host_patterns() {
        let any = HostMatch::parse("*").unwrap();
        let exact = HostMatch::parse("API.example.com").unwrap();
        let suffix = HostMatch::parse("*.example.com").unwrap();
        assert!(any.matches("whatever:1"));
        assert!(exact.matches("api.example.com"));
        assert!(exact.matches("api.EXAMPLE.com:8443"));
        assert!(exact.matches("api.example.com."));
        assert!(!exact.matches("api.example.com.evil"));
        assert!(suffix.matches("a.example.com"));
        assert!(suffix.matches("a.b.example.com:443"));
        assert!(!suffix.matches("example.com"));
        assert!(!suffix.matches("badexample.com"));
        assert!(HostMatch::parse("*example.com").is_none());
        assert!(HostMatch::parse("a b").is_none());
        assert!(HostMatch::parse("[::1]").unwrap().matches("[::1]:80"));
    }

    #[test]
    fn match_fields_combine() {
        let m = Match {
            host: None,
            path: None,
            path_prefix: Some("/api/".into()),
            methods: vec!["GET".into()],
        };
        assert!(m.matches("GET", "h", "/api/x"));
        assert!(!m.matches("POST", "h", "/api/x"));
        assert!(!m.matches("GET", "h", "/apix"));
        assert!(Match::default().matches("DELETE", "", "/"));
    }
}
