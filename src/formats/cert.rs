//! The client certificate Envoy verified on the connection, as the `mtls` provider sees it: the subject DN
//! (RFC 4514 text, as Envoy prints it), the first URI and DNS SAN, and the SHA-256 of the certificate.
//!
//! TLS is Envoy's job: the CA, the chain and `require_client_certificate` live in its `DownstreamTlsContext`.
//! This module only reads what Envoy reports and parses the subject's common name correctly (escapes,
//! hex-escaped UTF-8, `#`-hex DER values, multi-valued RDNs), refusing a subject that is ambiguous.

use super::b64;

/// What Envoy reports about a verified peer certificate (`connection.*_peer_certificate` attributes). Empty
/// strings where the certificate has no such field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCert {
    /// `connection.subject_peer_certificate`: the subject DN, RFC 4514 (most specific RDN first).
    pub subject: String,
    /// `connection.uri_san_peer_certificate`: the first URI SAN.
    pub uri_san: String,
    /// `connection.dns_san_peer_certificate`: the first DNS SAN.
    pub dns_san: String,
    /// `connection.sha256_peer_certificate_digest`: lower-case hex.
    pub sha256: String,
}

/// Why a subject DN cannot give a common name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnError {
    /// Not RFC 4514 text.
    Malformed,
    /// More than one CN: which one is the identity is ambiguous.
    AmbiguousCn,
}

/// The subject's common name (`CN` or `2.5.4.3`), unescaped. `Ok(None)` when the subject has none.
pub fn subject_cn(dn: &str) -> Result<Option<String>, DnError> {
    let mut cn = None;
    for (ty, value) in parse_dn(dn)? {
        if ty.eq_ignore_ascii_case("cn") || ty == "2.5.4.3" {
            if cn.is_some() {
                return Err(DnError::AmbiguousCn);
            }
            cn = Some(value);
        }
    }
    Ok(cn)
}

/// Every attribute of an RFC 4514 DN as `(type, unescaped value)`, in text order.
pub fn parse_dn(dn: &str) -> Result<Vec<(String, String)>, DnError> {
    let b = dn.as_bytes();
    let mut out = Vec::new();
    if b.is_empty() {
        return Ok(out);
    }
    let mut i = 0;
    loop {
        // attributeType: a descriptor (letter, then letters, digits, '-') or a numeric OID.
        let start = i;
        while b
            .get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.'))
        {
            i += 1;
        }
        let ty = dn.get(start..i).ok_or(DnError::Malformed)?;
        if !is_attribute_type(ty) || b.get(i) != Some(&b'=') {
            return Err(DnError::Malformed);
        }
        i += 1;
        let (value, next) = if b.get(i) == Some(&b'#') {
            parse_hex_value(b, i + 1)?
        } else {
            parse_string_value(b, i)?
        };
        out.push((ty.to_owned(), value));
        i = next;
        match b.get(i) {
            None => return Ok(out),
            Some(b',' | b'+') => i += 1,
            Some(_) => return Err(DnError::Malformed),
        }
    }
}

fn is_attribute_type(ty: &str) -> bool {
    let b = ty.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() => {
            b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        }
        Some(c) if c.is_ascii_digit() => ty
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|c| c.is_ascii_digit())),
        _ => false,
    }
}

fn hex_pair(b: &[u8], i: usize) -> Option<u8> {
    Some(b64::hex_digit(*b.get(i)?)? << 4 | b64::hex_digit(*b.get(i + 1)?)?)
}

/// An RFC 4514 `string` from `i` up to an unescaped `,` or `+` (or the end): the unescaped value (UTF-8)
/// and the index after it.
fn parse_string_value(b: &[u8], mut i: usize) -> Result<(String, usize), DnError> {
    let mut bytes = Vec::new();
    while let Some(&c) = b.get(i) {
        match c {
            b',' | b'+' => break,
            b'\\' => {
                let next = *b.get(i + 1).ok_or(DnError::Malformed)?;
                if matches!(
                    next,
                    b' ' | b'"' | b'#' | b'+' | b',' | b';' | b'<' | b'=' | b'>' | b'\\'
                ) {
                    bytes.push(next);
                    i += 2;
                } else {
                    bytes.push(hex_pair(b, i + 1).ok_or(DnError::Malformed)?);
                    i += 3;
                }
            }
            // Characters RFC 4514 requires to be escaped.
            b'"' | b';' | b'<' | b'>' | 0 => return Err(DnError::Malformed),
            _ => {
                bytes.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(bytes)
        .map(|s| (s, i))
        .map_err(|_| DnError::Malformed)
}

/// An RFC 4514 `hexstring` (after `#`): the BER encoding of the value. Only the string types a name
/// attribute uses are accepted (UTF8String, PrintableString, IA5String, T61String as Latin-1 is refused).
fn parse_hex_value(b: &[u8], mut i: usize) -> Result<(String, usize), DnError> {
    let mut der = Vec::new();
    while let Some(v) = hex_pair(b, i) {
        der.push(v);
        i += 2;
    }
    let (&tag, rest) = der.split_first().ok_or(DnError::Malformed)?;
    let (&len0, rest) = rest.split_first().ok_or(DnError::Malformed)?;
    let (len, content) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 2 {
            return Err(DnError::Malformed);
        }
        let (lb, content) = rest.split_at_checked(n).ok_or(DnError::Malformed)?;
        (
            lb.iter().fold(0usize, |acc, x| acc << 8 | usize::from(*x)),
            content,
        )
    };
    if content.len() != len || !matches!(tag, 0x0c | 0x13 | 0x16) {
        return Err(DnError::Malformed);
    }
    let s = String::from_utf8(content.to_vec()).map_err(|_| DnError::Malformed)?;
    Ok((s, i))
}

/// A `*` wildcard pattern (`*` matches any run of characters, nothing else is special), matched against the
/// whole text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob(pattern.to_owned())
    }

    pub fn matches(&self, text: &str) -> bool {
        let (p, t) = (self.0.as_bytes(), text.as_bytes());
        let (mut pi, mut ti) = (0, 0);
        // The last `*` seen and the text position it was tried at: on a mismatch, let it take one more byte.
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some(b'*') => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(c) if Some(c) == t.get(ti) => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        pi = sp + 1;
                        ti = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        p.get(pi..)
            .is_some_and(|rest| rest.iter().all(|c| *c == b'*'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_of_envoy_subjects() {
        assert_eq!(
            subject_cn("CN=alice,OU=eng,O=Corp,C=US"),
            Ok(Some("alice".into()))
        );
        assert_eq!(subject_cn("O=Corp,C=US"), Ok(None));
        assert_eq!(subject_cn(""), Ok(None));
        // Escaped specials, hex-escaped UTF-8 (OpenSSL's RFC 2253 output escapes every byte over 0x7f).
        assert_eq!(
            subject_cn(r"CN=Smith\, John\+1,O=Corp"),
            Ok(Some("Smith, John+1".into()))
        );
        assert_eq!(
            subject_cn(r"CN=J\C3\BCrgen,O=Corp"),
            Ok(Some("Jürgen".into()))
        );
        assert_eq!(subject_cn(r"CN=\ lead\ ,O=x"), Ok(Some(" lead ".into())));
        assert_eq!(subject_cn(r"cn=bob"), Ok(Some("bob".into())));
        assert_eq!(subject_cn(r"2.5.4.3=bob,O=x"), Ok(Some("bob".into())));
        // Multi-valued RDN.
        assert_eq!(subject_cn("CN=carol+UID=7,O=x"), Ok(Some("carol".into())));
        // BER-encoded value: UTF8String "bob".
        assert_eq!(subject_cn("CN=#0c03626f62,O=x"), Ok(Some("bob".into())));
        // An escaped comma is not a separator: no second RDN, no CN injection.
        assert_eq!(parse_dn(r"O=a\,CN=mallory").map(|v| v.len()), Ok(1));
        assert_eq!(subject_cn(r"O=a\,CN=mallory"), Ok(None));
    }

    #[test]
    fn ambiguous_or_malformed_subjects_are_refused() {
        assert_eq!(subject_cn("CN=a,CN=b"), Err(DnError::AmbiguousCn));
        assert_eq!(subject_cn("CN=a+CN=b"), Err(DnError::AmbiguousCn));
        for bad in [
            "CN",
            "=x",
            "CN=a,",
            r"CN=a\",
            r"CN=a\zz",
            "CN=a;O=b",
            "CN=\"q\"",
            "CN=#0c",
            "CN=#0c05626f62",
            "CN=#0403626f62",
            r"CN=\ff",
            "C N=x",
            "1..2=x",
        ] {
            assert_eq!(subject_cn(bad), Err(DnError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn globs() {
        let g = Glob::new("*.svc.corp");
        assert!(g.matches("api.svc.corp"));
        assert!(g.matches(".svc.corp"));
        assert!(!g.matches("svc.corp"));
        assert!(!g.matches("api.svc.corp.evil"));
        assert!(Glob::new("alice").matches("alice"));
        assert!(!Glob::new("alice").matches("alice2"));
        assert!(Glob::new("a*b*c").matches("aXXbYYc"));
        assert!(Glob::new("a*b*c").matches("abc"));
        assert!(!Glob::new("a*b*c").matches("acb"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("**x").matches("yyx"));
        assert!(!Glob::new("").matches("a"));
        assert!(Glob::new("*a*a*a*a*").matches("aaaa"));
        assert!(!Glob::new("*a*a*a*a*b").matches(&"a".repeat(200)));
    }
}
