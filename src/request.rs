//! [`RequestView`]: the host's snapshot of a request, the only request input the core reads.

/// A read-only view of the request headers the core decides on.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`, raw: with query, not normalized.
    pub path: &'a str,
    /// `:authority` (or `Host`).
    pub authority: &'a str,
    /// Every header as received, duplicates kept, names as the host gives them.
    pub headers: &'a [(&'a str, &'a str)],
    /// The whole body once read (`Some(b"")` for a request without one); `None` while it has not been read.
    pub body: Option<&'a [u8]>,
    /// The client certificate Envoy verified on this connection, if any (read only when a provider needs it).
    pub peer: Option<&'a crate::formats::cert::PeerCert>,
    /// True while the host has not read the client certificate: `peer` says nothing yet. A check that needs it
    /// (a certificate-bound token) answers [`crate::decision::Reason::PeerRequired`]; the host reads the
    /// certificate and decides again. The host reads it before deciding only for policies that always need it.
    pub peer_unread: bool,
}

impl<'a> RequestView<'a> {
    /// Every value of header `name` (compared case-insensitively), in order.
    pub fn header_values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n
    where
        'a: 'n,
    {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// True when header `name` is present at least once.
    pub fn has_header(&self, name: &str) -> bool {
        self.header_values(name).next().is_some()
    }
}

/// Borrowed `(name, value)` pairs of owned headers, for a [`RequestView`] over headers a caller built itself
/// (the CLI, tests); the host hands the core slices of the map it read instead.
pub fn borrowed(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}
