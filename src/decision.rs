//! What the core tells the host to do: [`Decision::Allow`] with header operations, or [`Decision::Deny`] with
//! one [`Reason`]. One table maps each reason to its HTTP status, its stable code (the `reason` in the JSON
//! body, the metric label, the log field) and its `WWW-Authenticate` error.

use crate::formats::jwt::JwtError;

/// Every reason a request is refused. Codes are stable: clients and dashboards depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// No credential where the rule requires one.
    Missing,
    /// A credential that does not parse.
    Malformed,
    /// A token over the size limit.
    TokenTooLarge,
    /// Two credentials for one provider (two `Authorization` headers, header and query, ...).
    MultipleCredentials,
    AlgNotAllowed,
    UnknownKid,
    BadSignature,
    Expired,
    NotYetValid,
    MissingExp,
    LifetimeTooLong,
    WrongIssuer,
    WrongAudience,
    /// A verified value would put a control character into a header.
    UnsafeClaim,
    /// No rule matches the request.
    NoRule,
    /// The path means different things to different decoders.
    AmbiguousPath,
    /// A remote key set is not available yet (first fetch pending or failed, nothing usable cached).
    KeysUnavailable,
    /// A signed request names a client the provider does not know.
    UnknownClient,
    /// A signed request's timestamp is outside the window.
    StaleTimestamp,
    /// A signed request's nonce was already used.
    Replayed,
    /// An API key no client has.
    InvalidKey,
    ClientSuspended,
    ClientRevoked,
    /// The client may not use this method.
    MethodNotAllowed,
    /// The client may not use this rule.
    RuleNotAllowed,
    /// The client is over its rate limit.
    RateLimited,
    /// The body is over the limit of a body-signing provider.
    BodyTooLarge,
    /// The replay or rate store refused the update (full, or contended): fail closed.
    ReplayStoreUnavailable,
    /// The fleet's state store (`state.redis`) did not answer, or not as expected: fail closed.
    StateUnavailable,
    /// Internal: a nonce or a rate count must be asked of the fleet's state store first
    /// ([`crate::state::backend::RedisState`]); the host asks it and decides again. Never sent.
    StateRequired,
    /// Internal: the provider needs the request body before it can decide. Never sent.
    BodyRequired,
    /// Internal: a certificate-bound token needs the connection's client certificate, which the host has not
    /// read yet ([`crate::request::RequestView::peer_unread`]). Never sent.
    PeerRequired,
    /// A Signet proof's purpose is not one the provider accepts.
    PurposeNotAllowed,
    /// An RFC 9421 `keyid` the provider does not know.
    UnknownKey,
    /// A component the provider requires is not covered by the signature, or not in the request.
    MissingComponent,
    /// The signature's `tag` is not the provider's.
    TagMismatch,
    /// `Content-Digest` does not match the body.
    DigestMismatch,
    /// The verified client certificate is not one the `mtls` provider accepts (SAN or CN constraint, or a
    /// subject without exactly one CN where the CN is needed).
    CertNotAllowed,
    /// The rule issues an identity assertion and the satisfied provider gave no subject (`sub`).
    NoSubject,
    /// The assertion could not be issued (no randomness for its `jti`): fail closed.
    AssertionUnavailable,
    /// A verified token lacks a scope its requirement names (`scope`/`scp` claim conditions; RFC 6750 §3.1).
    InsufficientScope,
    /// A verified token fails a claim condition of its requirement (other than `scope`/`scp`).
    ClaimNotAllowed,
    /// The token's JOSE `typ` is not one the provider accepts, or is `dpop+jwt` (RFC 8725 §3.11, RFC 9068 §4).
    TypNotAllowed,
    // Sender-constrained tokens (RFC 9449 DPoP, RFC 8705 certificate-bound): the proof reasons answer
    // `DPoP error="invalid_dpop_proof"`, the binding reasons `error="invalid_token"`.
    /// A token under the `DPoP` scheme without a `DPoP` header.
    DpopProofMissing,
    /// Two `DPoP` headers, or two proofs in one.
    DpopProofMultiple,
    /// A DPoP proof that does not parse, is not `dpop+jwt`, uses an algorithm not allowed, carries a key that is
    /// not a public key of its type, or whose signature does not verify.
    DpopProofInvalid,
    /// A DPoP proof made for another method (`htm`), URI (`htu`) or token (`ath`).
    DpopProofMismatch,
    /// A DPoP proof whose `iat` is outside `dpop.max_age_s` and the skew.
    DpopProofStale,
    /// A DPoP proof whose `jti` was seen before.
    DpopProofReplayed,
    /// The DPoP proof key is not the one the token is bound to (`cnf.jkt`).
    DpopKeyMismatch,
    /// A DPoP-bound token (`cnf.jkt`) presented under the `Bearer` scheme.
    DpopBoundToken,
    /// A token without `cnf.jkt` presented under the `DPoP` scheme.
    DpopUnboundToken,
    /// A certificate-bound token (`cnf["x5t#S256"]`) on a connection without that verified client certificate.
    CertBindingMismatch,
    /// A token whose `cnf` names a confirmation method this filter cannot check, or is not an object.
    CnfUnsupported,
    /// The provider's `require_binding` asks for a binding the token does not have.
    BindingRequired,
}

impl Reason {
    /// Every reason, for metric definition and the uniqueness test.
    pub const ALL: [Reason; 55] = [
        Reason::Missing,
        Reason::Malformed,
        Reason::TokenTooLarge,
        Reason::MultipleCredentials,
        Reason::AlgNotAllowed,
        Reason::UnknownKid,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::MissingExp,
        Reason::LifetimeTooLong,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::UnsafeClaim,
        Reason::NoRule,
        Reason::AmbiguousPath,
        Reason::KeysUnavailable,
        Reason::UnknownClient,
        Reason::StaleTimestamp,
        Reason::Replayed,
        Reason::InvalidKey,
        Reason::ClientSuspended,
        Reason::ClientRevoked,
        Reason::MethodNotAllowed,
        Reason::RuleNotAllowed,
        Reason::RateLimited,
        Reason::BodyTooLarge,
        Reason::ReplayStoreUnavailable,
        Reason::StateUnavailable,
        Reason::StateRequired,
        Reason::BodyRequired,
        Reason::PeerRequired,
        Reason::PurposeNotAllowed,
        Reason::UnknownKey,
        Reason::MissingComponent,
        Reason::TagMismatch,
        Reason::DigestMismatch,
        Reason::CertNotAllowed,
        Reason::NoSubject,
        Reason::AssertionUnavailable,
        Reason::InsufficientScope,
        Reason::ClaimNotAllowed,
        Reason::TypNotAllowed,
        Reason::DpopProofMissing,
        Reason::DpopProofMultiple,
        Reason::DpopProofInvalid,
        Reason::DpopProofMismatch,
        Reason::DpopProofStale,
        Reason::DpopProofReplayed,
        Reason::DpopKeyMismatch,
        Reason::DpopBoundToken,
        Reason::DpopUnboundToken,
        Reason::CertBindingMismatch,
        Reason::CnfUnsupported,
        Reason::BindingRequired,
    ];

    /// The stable reason code.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::TokenTooLarge => "token_too_large",
            Reason::MultipleCredentials => "multiple_credentials",
            Reason::AlgNotAllowed => "alg_not_allowed",
            Reason::UnknownKid => "unknown_kid",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::MissingExp => "missing_exp",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::UnsafeClaim => "unsafe_claim",
            Reason::NoRule => "no_rule",
            Reason::AmbiguousPath => "ambiguous_path",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::UnknownClient => "unknown_client",
            Reason::StaleTimestamp => "stale_timestamp",
            Reason::Replayed => "replayed",
            Reason::InvalidKey => "invalid_key",
            Reason::ClientSuspended => "client_suspended",
            Reason::ClientRevoked => "client_revoked",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::RuleNotAllowed => "rule_not_allowed",
            Reason::RateLimited => "rate_limited",
            Reason::BodyTooLarge => "body_too_large",
            Reason::ReplayStoreUnavailable => "replay_store_unavailable",
            Reason::StateUnavailable => "state_unavailable",
            Reason::StateRequired => "state_required",
            Reason::BodyRequired => "body_required",
            Reason::PeerRequired => "peer_required",
            Reason::PurposeNotAllowed => "purpose_not_allowed",
            Reason::UnknownKey => "unknown_key",
            Reason::MissingComponent => "missing_component",
            Reason::TagMismatch => "tag_mismatch",
            Reason::DigestMismatch => "digest_mismatch",
            Reason::CertNotAllowed => "certificate_not_allowed",
            Reason::NoSubject => "no_subject",
            Reason::AssertionUnavailable => "assertion_unavailable",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::ClaimNotAllowed => "claim_not_allowed",
            Reason::TypNotAllowed => "typ_not_allowed",
            Reason::DpopProofMissing => "dpop_proof_missing",
            Reason::DpopProofMultiple => "dpop_proof_multiple",
            Reason::DpopProofInvalid => "dpop_proof_invalid",
            Reason::DpopProofMismatch => "dpop_proof_mismatch",
            Reason::DpopProofStale => "dpop_proof_stale",
            Reason::DpopProofReplayed => "dpop_proof_replayed",
            Reason::DpopKeyMismatch => "dpop_key_mismatch",
            Reason::DpopBoundToken => "dpop_bound_token",
            Reason::DpopUnboundToken => "dpop_unbound_token",
            Reason::CertBindingMismatch => "certificate_binding_mismatch",
            Reason::CnfUnsupported => "cnf_unsupported",
            Reason::BindingRequired => "binding_required",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Reason::AmbiguousPath => 400,
            Reason::KeysUnavailable
            | Reason::ReplayStoreUnavailable
            | Reason::StateUnavailable
            | Reason::StateRequired
            | Reason::BodyRequired
            | Reason::PeerRequired
            | Reason::AssertionUnavailable => 503,
            Reason::UnsafeClaim
            | Reason::NoSubject
            | Reason::NoRule
            | Reason::ClientSuspended
            | Reason::ClientRevoked
            | Reason::MethodNotAllowed
            | Reason::RuleNotAllowed
            | Reason::PurposeNotAllowed
            | Reason::CertNotAllowed
            | Reason::InsufficientScope
            | Reason::ClaimNotAllowed => 403,
            Reason::RateLimited => 429,
            Reason::BodyTooLarge => 413,
            _ => 401,
        }
    }

    /// The `error` member of the JSON body (and, for 401 with a credential, of the challenge).
    pub fn error(self) -> &'static str {
        match self {
            Reason::Missing => "unauthorized",
            Reason::AmbiguousPath => "invalid_request",
            Reason::KeysUnavailable
            | Reason::ReplayStoreUnavailable
            | Reason::StateUnavailable
            | Reason::StateRequired
            | Reason::BodyRequired
            | Reason::PeerRequired
            | Reason::AssertionUnavailable => "temporarily_unavailable",
            Reason::RateLimited => "rate_limited",
            Reason::BodyTooLarge => "payload_too_large",
            Reason::InsufficientScope => "insufficient_scope",
            r if r.is_dpop_proof() => "invalid_dpop_proof",
            r if r.status() == 403 => "forbidden",
            _ => "invalid_token",
        }
    }

    /// True for a refused DPoP proof (RFC 9449 §7.1 `invalid_dpop_proof`).
    fn is_dpop_proof(self) -> bool {
        matches!(
            self,
            Reason::DpopProofMissing
                | Reason::DpopProofMultiple
                | Reason::DpopProofInvalid
                | Reason::DpopProofMismatch
                | Reason::DpopProofStale
                | Reason::DpopProofReplayed
        )
    }

    /// The one scheme whose challenge carries this reason's error, when only one does: DPoP reasons answer on
    /// the `DPoP` challenge, a certificate binding on `Bearer`. `None`: every challenge carries it.
    fn scheme(self) -> Option<Scheme> {
        match self {
            r if r.is_dpop_proof() => Some(Scheme::DPoP),
            Reason::DpopKeyMismatch | Reason::DpopBoundToken | Reason::DpopUnboundToken => {
                Some(Scheme::DPoP)
            }
            Reason::CertBindingMismatch => Some(Scheme::Bearer),
            _ => None,
        }
    }
}

impl From<JwtError> for Reason {
    fn from(e: JwtError) -> Reason {
        match e {
            JwtError::TooLarge => Reason::TokenTooLarge,
            JwtError::Malformed => Reason::Malformed,
            JwtError::AlgNotAllowed => Reason::AlgNotAllowed,
            JwtError::UnknownKid => Reason::UnknownKid,
            JwtError::BadSignature => Reason::BadSignature,
            JwtError::Expired => Reason::Expired,
            JwtError::NotYetValid => Reason::NotYetValid,
            JwtError::MissingExp => Reason::MissingExp,
            JwtError::LifetimeTooLong => Reason::LifetimeTooLong,
            JwtError::WrongIssuer => Reason::WrongIssuer,
            JwtError::WrongAudience => Reason::WrongAudience,
            JwtError::TypNotAllowed => Reason::TypNotAllowed,
        }
    }
}

/// The authentication scheme a provider kind answers with in `WWW-Authenticate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scheme {
    /// RFC 6750 bearer tokens.
    Bearer,
    /// Gatekeeper HMAC signed requests.
    Hmac,
    /// API keys.
    ApiKey,
    /// Signet proofs of possession.
    Signet,
    /// RFC 9421 HTTP Message Signatures.
    Signature,
    /// RFC 9449 DPoP-bound tokens (its challenge names the accepted proof algorithms, [`Deny::dpop_algs`]).
    DPoP,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::Bearer => "Bearer",
            Scheme::Hmac => "HMAC",
            Scheme::ApiKey => "ApiKey",
            Scheme::Signet => "Signet",
            Scheme::Signature => "Signature",
            Scheme::DPoP => "DPoP",
        }
    }
}

/// A change to the request headers (names lower-case; `:path` for the request path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Replace every value of the header with this one.
    Set(String, String),
    /// Remove every value of the header.
    Remove(String),
}

/// Forward the request with these header changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// The rule that matched.
    pub rule: String,
    /// The providers that were satisfied, empty for a public rule.
    pub providers: Vec<String>,
    /// Applied in order, after the strip list was removed.
    pub ops: Vec<HeaderOp>,
}

/// Answer the request here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    pub reason: Reason,
    /// The rule that matched, if one did.
    pub rule: Option<String>,
    /// The provider whose failure decided, if one did.
    pub provider: Option<String>,
    /// The schemes the rule accepts (for `WWW-Authenticate` on 401).
    pub schemes: Vec<Scheme>,
    /// Seconds for `Retry-After` (429).
    pub retry_after: Option<i64>,
    /// The scopes an `insufficient_scope` refusal names in its challenge, space-separated.
    pub scope: Option<String>,
    /// The `algs` of the `DPoP` challenge (RFC 9449 §7.1): the proof algorithms, space-separated.
    pub dpop_algs: String,
}

impl Deny {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.reason.status()
    }

    /// The `WWW-Authenticate` values to send, one per scheme: on 401, and on a 403 `insufficient_scope` with
    /// the scopes the requirement names (RFC 6750 §3.1; config made them scope-tokens, never a quote). On 401
    /// the error goes on every challenge, or only on the one its reason belongs to when the rule accepts that
    /// scheme (DPoP, RFC 9449 §7.1).
    pub fn challenges(&self) -> Vec<String> {
        if let (Reason::InsufficientScope, Some(scope)) = (self.reason, &self.scope) {
            return self
                .schemes
                .iter()
                .map(|s| {
                    format!(
                        "{} realm=\"trustgate\", error=\"insufficient_scope\", scope=\"{scope}\"",
                        s.name()
                    )
                })
                .collect();
        }
        if self.status() != 401 {
            return Vec::new();
        }
        let only = self.reason.scheme().filter(|s| self.schemes.contains(s));
        self.schemes
            .iter()
            .map(|&s| {
                let mut c = format!("{} realm=\"trustgate\"", s.name());
                if self.reason != Reason::Missing && only.is_none_or(|o| o == s) {
                    c.push_str(&format!(", error=\"{}\"", self.reason.error()));
                }
                if s == Scheme::DPoP && !self.dpop_algs.is_empty() {
                    c.push_str(&format!(", algs=\"{}\"", self.dpop_algs));
                }
                c
            })
            .collect()
    }

    /// The JSON body: `{"error":"invalid_token","reason":"expired"}`. Never echoes input.
    pub fn body(&self) -> String {
        format!(
            "{{\"error\":\"{}\",\"reason\":\"{}\"}}",
            self.reason.error(),
            self.reason.label()
        )
    }
}

/// The core's verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Allow),
    Deny(Deny),
    /// Answered by the proxy itself, whatever the rules say (the assertion JWKS).
    Respond(Respond),
}

/// A local 200 response: a JSON document the proxy publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respond {
    /// The body (JSON).
    pub body: String,
    /// `Cache-Control`.
    pub cache_control: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn labels_are_unique_and_snake_case() {
        let labels: HashSet<_> = Reason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Reason::ALL.len());
        for l in labels {
            assert!(
                l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{l}"
            );
        }
    }

    #[test]
    fn challenges_follow_rfc6750() {
        let mut d = Deny {
            reason: Reason::Missing,
            rule: None,
            provider: None,
            schemes: vec![Scheme::Bearer],
            retry_after: None,
            scope: None,
            dpop_algs: String::new(),
        };
        assert_eq!(
            d.challenges(),
            vec!["Bearer realm=\"trustgate\"".to_string()]
        );
        d.reason = Reason::Expired;
        assert_eq!(
            d.challenges(),
            vec!["Bearer realm=\"trustgate\", error=\"invalid_token\"".to_string()]
        );
        assert_eq!(d.body(), r#"{"error":"invalid_token","reason":"expired"}"#);
        d.reason = Reason::NoRule;
        assert!(d.challenges().is_empty());
        assert_eq!(d.status(), 403);
        d.reason = Reason::ClaimNotAllowed;
        assert!(d.challenges().is_empty());
        assert_eq!(
            d.body(),
            r#"{"error":"forbidden","reason":"claim_not_allowed"}"#
        );
        d.reason = Reason::TypNotAllowed;
        assert_eq!(d.status(), 401);
        assert_eq!(
            d.challenges(),
            vec!["Bearer realm=\"trustgate\", error=\"invalid_token\"".to_string()]
        );
    }

    /// RFC 6750 §3.1: a token without the scope the resource needs is a 403 with `insufficient_scope` and the
    /// `scope` attribute naming what is required.
    #[test]
    fn insufficient_scope_challenges_name_the_required_scopes() {
        let d = Deny {
            reason: Reason::InsufficientScope,
            rule: None,
            provider: None,
            schemes: vec![Scheme::Bearer],
            retry_after: None,
            scope: Some("orders:write orders:read".into()),
            dpop_algs: String::new(),
        };
        assert_eq!(d.status(), 403);
        assert_eq!(
            d.challenges(),
            vec![
                "Bearer realm=\"trustgate\", error=\"insufficient_scope\", scope=\"orders:write orders:read\""
                    .to_string()
            ]
        );
        assert_eq!(
            d.body(),
            r#"{"error":"insufficient_scope","reason":"insufficient_scope"}"#
        );
    }

    #[test]
    fn dpop_challenges_follow_rfc9449() {
        let mut d = Deny {
            reason: Reason::Missing,
            rule: None,
            provider: None,
            schemes: vec![Scheme::Bearer, Scheme::DPoP],
            retry_after: None,
            scope: None,
            dpop_algs: "ES256 EdDSA".into(),
        };
        assert_eq!(
            d.challenges(),
            vec![
                "Bearer realm=\"trustgate\"".to_string(),
                "DPoP realm=\"trustgate\", algs=\"ES256 EdDSA\"".to_string()
            ]
        );
        d.reason = Reason::DpopProofReplayed;
        assert_eq!(
            d.challenges(),
            vec![
                "Bearer realm=\"trustgate\"".to_string(),
                "DPoP realm=\"trustgate\", error=\"invalid_dpop_proof\", algs=\"ES256 EdDSA\""
                    .to_string()
            ]
        );
        assert_eq!(
            d.body(),
            r#"{"error":"invalid_dpop_proof","reason":"dpop_proof_replayed"}"#
        );
        d.reason = Reason::DpopBoundToken;
        assert_eq!(
            d.challenges()[1],
            "DPoP realm=\"trustgate\", error=\"invalid_token\", algs=\"ES256 EdDSA\""
        );
        assert_eq!(d.challenges()[0], "Bearer realm=\"trustgate\"");
        d.reason = Reason::CertBindingMismatch;
        assert_eq!(
            d.challenges()[0],
            "Bearer realm=\"trustgate\", error=\"invalid_token\""
        );
        // Without a DPoP challenge, a DPoP reason goes on the others.
        d.schemes = vec![Scheme::Bearer];
        d.reason = Reason::DpopBoundToken;
        assert_eq!(
            d.challenges(),
            vec!["Bearer realm=\"trustgate\", error=\"invalid_token\"".to_string()]
        );
    }
}
