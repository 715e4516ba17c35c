//! HTTP Message Signatures ([RFC 9421](https://www.rfc-editor.org/rfc/rfc9421)) on requests, with
//! `Content-Digest` ([RFC 9530](https://www.rfc-editor.org/rfc/rfc9530)) checked against the body.
//!
//! [`verify`] reads `Signature-Input` and `Signature` (RFC 8941 dictionaries, parsed by [`crate::formats::sfv`]),
//! picks one signature, rebuilds its signature base (§2.5) from the request and checks it with the key its
//! `keyid` names. Pure: time is [`Policy::now`], keys come from the caller, nothing is cached or logged.
//!
//! # Which signature decides
//!
//! Labels are tried in `Signature-Input` order. A label is *screened* with cheap checks only: it must be well
//! formed, name a known `keyid`, agree with the key's algorithm (`alg`, when present), carry the policy's `tag`
//! (when one is set), cover every required component, and be fresh (`created`/`expires`). The first label that
//! passes the screen **decides**: its signature base is built, its signature verified and its `Content-Digest`
//! checked, and that outcome is the answer; later labels are not tried. So a request costs at most one
//! signature verification, however many signatures it carries, and a signature that fails is never "rescued"
//! by another one. When no label passes the screen, the error is the first one from a label whose key is known,
//! else [`HttpSigError::UnknownKey`]. A caller that expects several signatures (e.g. a client's plus a proxy's)
//! selects the one it wants with `tag` or by knowing only that signer's key.
//!
//! # What is covered
//!
//! Derived components (§2.2): `@method`, `@target-uri`, `@authority`, `@scheme`, `@request-target`, `@path`,
//! `@query`, `@query-param;name="…"`. Not: `@status` (responses only) and the `;req` parameter (signatures of a
//! response bound to its request), which make the label malformed. Fields (§2.1): lowercase names, instances
//! trimmed and joined with `", "`, with `;sf`, `;key="…"` or `;bs`; not `;tr` (trailers). `@authority` is
//! lowercased without the scheme's default port (§2.2.3); inside `@target-uri` the authority is as sent; `@path` and `@query` are raw
//! (not decoded, not normalized), `@query` is `?` without a query. The `@signature-params` line is the RFC 8941
//! re-serialization of the parsed inner list (identical to the sent bytes for any canonically written input).
//!
//! # Time and body
//!
//! `created` more than [`FUTURE_SKEW_S`] ahead of [`Policy::now`] is refused; `expires < now` is refused;
//! with [`Policy::max_age_s`] positive, `created` is required and `now - created` must not exceed it. When
//! `content-digest` is covered and [`Request::body`] is `None`, [`HttpSigError::BodyRequired`] comes back before
//! any cryptography: read the body and call again.
//!
//! # Limits
//!
//! Every field value read (`Signature-Input`, `Signature`, covered fields, `Content-Digest`), after joining its
//! instances, is at most [`MAX_FIELD_BYTES`]; a value with a control character other than HTAB is refused (it
//! could forge lines of the base); a signature covers at most [`MAX_COMPONENTS`] components; at most
//! [`MAX_LABELS`] signatures are considered. Anything over a limit is [`HttpSigError::Malformed`].

use crate::formats::crypto::{self, Alg, VerifyKey};
use crate::formats::sfv::{self, BareItem, Entry, InnerList, Item};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256, Sha512};
use std::borrow::Cow;
use std::fmt;
use subtle::ConstantTimeEq as _;

/// Largest field value read, all instances joined.
pub const MAX_FIELD_BYTES: usize = 8192;
/// Most components one signature may cover.
pub const MAX_COMPONENTS: usize = 64;
/// Most labels `Signature-Input` may hold.
pub const MAX_LABELS: usize = 32;
/// How far in the future `created` may be (clock skew between signer and verifier).
pub const FUTURE_SKEW_S: i64 = 60;

/// An RFC 9421 signature algorithm (§3.3, the "HTTP Signature Algorithms" registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigAlg {
    /// `hmac-sha256`: a shared secret, 32-byte MAC.
    HmacSha256,
    /// `ed25519`: 64-byte signature.
    Ed25519,
    /// `ecdsa-p256-sha256`: the 64-byte `r || s` form, never DER.
    EcdsaP256Sha256,
    /// `rsa-pss-sha512`: RSASSA-PSS, MGF1 with SHA-512, 64-byte salt.
    RsaPssSha512,
    /// `rsa-v1_5-sha256`: RSASSA-PKCS1-v1_5 with SHA-256.
    RsaV15Sha256,
}

impl SigAlg {
    /// Every algorithm, in a stable order.
    pub const ALL: [SigAlg; 5] = [
        SigAlg::HmacSha256,
        SigAlg::Ed25519,
        SigAlg::EcdsaP256Sha256,
        SigAlg::RsaPssSha512,
        SigAlg::RsaV15Sha256,
    ];

    /// The algorithm with this registered name (case-sensitive), e.g. `"hmac-sha256"`.
    pub fn from_name(name: &str) -> Option<SigAlg> {
        SigAlg::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The registered name.
    pub fn name(self) -> &'static str {
        match self {
            SigAlg::HmacSha256 => "hmac-sha256",
            SigAlg::Ed25519 => "ed25519",
            SigAlg::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            SigAlg::RsaPssSha512 => "rsa-pss-sha512",
            SigAlg::RsaV15Sha256 => "rsa-v1_5-sha256",
        }
    }

    /// The JWS algorithm that computes exactly the same thing, through which [`crypto::verify`] checks it.
    pub fn jws(self) -> Alg {
        match self {
            SigAlg::HmacSha256 => Alg::HS256,
            SigAlg::Ed25519 => Alg::EdDSA,
            SigAlg::EcdsaP256Sha256 => Alg::ES256,
            SigAlg::RsaPssSha512 => Alg::PS512,
            SigAlg::RsaV15Sha256 => Alg::RS256,
        }
    }

    /// True when `key` is of the one type this algorithm verifies with (a secret only for HMAC).
    pub fn fits(self, key: &VerifyKey) -> bool {
        self.jws().fits(key)
    }
}

impl fmt::Display for SigAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A configured key: its algorithm is fixed by the config, never chosen by the request.
#[derive(Debug, Clone)]
pub struct SigKey {
    /// The one algorithm this key verifies.
    pub alg: SigAlg,
    /// The key material; its type fits `alg` (see [`SigKey::new`]).
    pub key: VerifyKey,
}

impl SigKey {
    /// `None` when the key's type does not fit the algorithm (e.g. an RSA key for `ed25519`, or any public key
    /// for `hmac-sha256`).
    pub fn new(alg: SigAlg, key: VerifyKey) -> Option<SigKey> {
        alg.fits(&key).then_some(SigKey { alg, key })
    }
}

/// The request as the signature sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `:method`, as sent.
    pub method: &'a str,
    /// `http` or `https` (the scheme the client used).
    pub scheme: &'a str,
    /// `:authority` / `Host`, as sent.
    pub authority: &'a str,
    /// `:path`, raw, with its query.
    pub path: &'a str,
    /// Every header, names in any case, repeated names kept in order.
    pub headers: &'a [(&'a str, &'a str)],
    /// The whole body; `None` when it has not been read.
    pub body: Option<&'a [u8]>,
}

/// What the caller demands of a signature.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Component identifiers that must be covered: a bare name (`"@method"`, `"content-digest"`) matches that
    /// component with any parameters; a serialized identifier (`"\"@query-param\";name=\"id\""`) matches exactly.
    /// See [`is_component_identifier`].
    pub required: &'a [String],
    /// Largest accepted `now - created`, in seconds. When positive, `created` is required. Zero or negative
    /// turns the age limit off (and `created` becomes optional).
    pub max_age_s: i64,
    /// When set, only a signature whose `tag` parameter equals it is considered.
    pub tag: Option<&'a str>,
    /// The current time, Unix seconds.
    pub now: i64,
}

/// A verified signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The `keyid` whose key verified it.
    pub keyid: String,
    /// The dictionary label (`sig1`).
    pub label: String,
    /// The key's algorithm.
    pub alg: SigAlg,
    /// The `nonce` parameter, for replay protection (keep `(keyid, nonce)` until the signature can no longer
    /// pass: `created + max_age_s`, or `expires`).
    pub nonce: Option<String>,
    /// The `created` parameter, Unix seconds.
    pub created: Option<i64>,
    /// The `expires` parameter, Unix seconds.
    pub expires: Option<i64>,
    /// True when `Content-Digest` was covered and matched the body, i.e. the body is signed.
    pub covers_content_digest: bool,
}

/// Why a request's signature is refused. Carries no request bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpSigError {
    /// Neither `Signature-Input` nor `Signature` (or no label in them).
    Missing,
    /// Not RFC 8941, a label without its signature, a parameter of the wrong type, an unsupported or repeated
    /// component, a field over [`MAX_FIELD_BYTES`] or with a control character, ...
    Malformed,
    /// No label names a known `keyid`.
    UnknownKey,
    /// `alg` is present and is not the key's algorithm.
    AlgMismatch,
    /// A required component is not covered, or a covered component is absent from the request.
    MissingComponent,
    /// `expires` is in the past.
    Expired,
    /// `created + max_age_s < now`, or `created` absent while an age limit applies.
    TooOld,
    /// `created` more than [`FUTURE_SKEW_S`] in the future.
    CreatedInFuture,
    /// A `tag` is required and no signature carries it.
    TagMismatch,
    /// The signature does not verify.
    BadSignature,
    /// `Content-Digest` is covered and no supported digest (`sha-256`, `sha-512`) is signed, or one does not
    /// match the body.
    DigestMismatch,
    /// `Content-Digest` is covered and the body has not been read: read it and call again. Returned before any
    /// signature verification, so a retry costs one verification in all.
    BodyRequired,
}

impl HttpSigError {
    /// A stable reason code for responses and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            HttpSigError::Missing => "missing_signature",
            HttpSigError::Malformed => "malformed_signature",
            HttpSigError::UnknownKey => "unknown_key",
            HttpSigError::AlgMismatch => "alg_mismatch",
            HttpSigError::MissingComponent => "missing_component",
            HttpSigError::Expired => "expired",
            HttpSigError::TooOld => "too_old",
            HttpSigError::CreatedInFuture => "created_in_future",
            HttpSigError::TagMismatch => "tag_mismatch",
            HttpSigError::BadSignature => "bad_signature",
            HttpSigError::DigestMismatch => "digest_mismatch",
            HttpSigError::BodyRequired => "body_required",
        }
    }
}

impl fmt::Display for HttpSigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HttpSigError {}

type Result<T> = std::result::Result<T, HttpSigError>;

/// Verifies the request's RFC 9421 signature (see the module documentation for which signature decides).
///
/// `keys` maps a `keyid` to its configured key; a key it does not return is unknown.
pub fn verify<'k>(
    req: &Request,
    keys: &dyn Fn(&str) -> Option<&'k SigKey>,
    policy: &Policy,
) -> Result<Verified> {
    let (inputs, sigs) = signature_fields(req)?;
    let mut first_err: Option<HttpSigError> = None;
    for (label, entry) in &inputs {
        match screen(label, entry, &sigs, keys, policy) {
            Ok(candidate) => return decide(req, candidate),
            Err(e) => {
                if first_err.is_none_or(|f| f == HttpSigError::UnknownKey) {
                    first_err = Some(e);
                }
            }
        }
    }
    Err(first_err.unwrap_or(HttpSigError::Missing))
}

/// The signature base (§2.5) of signature `label` of the request, exactly the bytes that are signed. For
/// signers, tests and diagnostics; no key, time or policy is involved.
pub fn signature_base(req: &Request, label: &str) -> Result<String> {
    let (inputs, _) = signature_fields(req)?;
    let list = match sfv::get(&inputs, label) {
        Some(Entry::InnerList(l)) => l,
        Some(Entry::Item(_)) => return Err(HttpSigError::Malformed),
        None => return Err(HttpSigError::Missing),
    };
    let comps = components(list)?;
    build_base(req, &comps, list)
}

/// True when `s` is usable in [`Policy::required`]: a component name (`@method`, a lowercase field name) or a
/// serialized component identifier with parameters (`"@query-param";name="id"`, `"example-dict";key="a"`).
pub fn is_component_identifier(s: &str) -> bool {
    if s.starts_with('"') {
        return sfv::parse_item(s)
            .ok()
            .is_some_and(|item| Component::parse(&item).is_ok());
    }
    let item = Item {
        bare: BareItem::String(s.to_owned()),
        params: Vec::new(),
    };
    match Component::parse(&item) {
        Ok(_) => true,
        // "@query-param" needs `name`, but as a bare name it matches any.
        Err(_) => s == "@query-param",
    }
}

/// Both fields parsed; `Missing` when neither is present.
fn signature_fields(req: &Request) -> Result<(sfv::Dictionary, sfv::Dictionary)> {
    let inputs = field_value(req.headers, "signature-input")?;
    let sigs = field_value(req.headers, "signature")?;
    let (inputs, sigs) = match (inputs, sigs) {
        (None, None) => return Err(HttpSigError::Missing),
        (Some(i), Some(s)) => (i, s),
        _ => return Err(HttpSigError::Malformed),
    };
    let inputs = sfv::parse_dictionary(&inputs).map_err(|_| HttpSigError::Malformed)?;
    let sigs = sfv::parse_dictionary(&sigs).map_err(|_| HttpSigError::Malformed)?;
    if inputs.is_empty() {
        return Err(HttpSigError::Missing);
    }
    if inputs.len() > MAX_LABELS {
        return Err(HttpSigError::Malformed);
    }
    Ok((inputs, sigs))
}

/// The trimmed values of every instance of field `name` (case-insensitive); `None` when absent. Each value is
/// checked for control characters, and their joined length is bounded.
fn field_lines<'r>(headers: &[(&'r str, &'r str)], name: &str) -> Result<Option<Vec<&'r str>>> {
    let mut lines = Vec::new();
    let mut total = 0usize;
    for &(n, v) in headers {
        if !n.eq_ignore_ascii_case(name) {
            continue;
        }
        let v = v.trim_matches([' ', '\t']);
        if v.chars().any(|c| c.is_control() && c != '\t') {
            return Err(HttpSigError::Malformed);
        }
        total = total.saturating_add(v.len()).saturating_add(2);
        if total > MAX_FIELD_BYTES + 2 {
            return Err(HttpSigError::Malformed);
        }
        lines.push(v);
    }
    Ok((!lines.is_empty()).then_some(lines))
}

/// The instances of field `name` joined with `", "` (RFC 9110 §5.3); `None` when absent.
fn field_value(headers: &[(&str, &str)], name: &str) -> Result<Option<String>> {
    Ok(field_lines(headers, name)?.map(|l| l.join(", ")))
}

/// How a field component is rendered (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldMode<'r> {
    Raw,
    /// `;sf`: re-serialized as its structured type.
    Sf,
    /// `;key="…"`: one dictionary member.
    Key(&'r str),
    /// `;bs`: each instance as a byte sequence.
    Bs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind<'r> {
    Method,
    TargetUri,
    Authority,
    Scheme,
    RequestTarget,
    Path,
    Query,
    /// The `name` parameter, percent-encoded as the identifier carries it.
    QueryParam(&'r str),
    Field(&'r str, FieldMode<'r>),
}

/// One covered component: how to compute it and its serialized identifier (the left side of its base line).
#[derive(Debug, Clone)]
struct Component<'r> {
    kind: Kind<'r>,
    name: &'r str,
    id: String,
}

impl<'r> Component<'r> {
    fn parse(item: &'r Item) -> Result<Component<'r>> {
        let BareItem::String(name) = &item.bare else {
            return Err(HttpSigError::Malformed);
        };
        let params = &item.params;
        let no_params = |k: Kind<'r>| {
            if params.is_empty() {
                Ok(k)
            } else {
                Err(HttpSigError::Malformed)
            }
        };
        let kind = match name.as_str() {
            "@method" => no_params(Kind::Method)?,
            "@target-uri" => no_params(Kind::TargetUri)?,
            "@authority" => no_params(Kind::Authority)?,
            "@scheme" => no_params(Kind::Scheme)?,
            "@request-target" => no_params(Kind::RequestTarget)?,
            "@path" => no_params(Kind::Path)?,
            "@query" => no_params(Kind::Query)?,
            "@query-param" => match params.as_slice() {
                [(k, BareItem::String(n))] if k == "name" => Kind::QueryParam(n),
                _ => return Err(HttpSigError::Malformed),
            },
            n if n.starts_with('@') => return Err(HttpSigError::Malformed),
            n => {
                if n.is_empty()
                    || !n
                        .bytes()
                        .all(|b| sfv::is_tchar(b) && !b.is_ascii_uppercase())
                {
                    return Err(HttpSigError::Malformed);
                }
                let mode = match params.as_slice() {
                    [] => FieldMode::Raw,
                    [(k, BareItem::Boolean(true))] if k == "sf" => FieldMode::Sf,
                    [(k, BareItem::Boolean(true))] if k == "bs" => FieldMode::Bs,
                    [(k, BareItem::String(m))] if k == "key" => FieldMode::Key(m),
                    _ => return Err(HttpSigError::Malformed),
                };
                Kind::Field(n, mode)
            }
        };
        Ok(Component {
            kind,
            name,
            id: sfv::serialize_item(item),
        })
    }

    /// Does a [`Policy::required`] entry name this component?
    fn satisfies(&self, required: &str) -> bool {
        if required.starts_with('"') {
            sfv::parse_item(required).is_ok_and(|r| sfv::serialize_item(&r) == self.id)
        } else {
            self.name == required
        }
    }
}

/// The covered components of a signature, in order; repeats are malformed (§2.5).
fn components(list: &InnerList) -> Result<Vec<Component<'_>>> {
    if list.items.len() > MAX_COMPONENTS {
        return Err(HttpSigError::Malformed);
    }
    let mut out: Vec<Component<'_>> = Vec::with_capacity(list.items.len());
    for item in &list.items {
        let c = Component::parse(item)?;
        if out.iter().any(|o| o.id == c.id) {
            return Err(HttpSigError::Malformed);
        }
        out.push(c);
    }
    Ok(out)
}

/// The signature parameters (§2.3) this module reads; others are signed but ignored.
#[derive(Debug, Default)]
struct SigParams<'r> {
    created: Option<i64>,
    expires: Option<i64>,
    nonce: Option<&'r str>,
    alg: Option<&'r str>,
    keyid: Option<&'r str>,
    tag: Option<&'r str>,
}

impl<'r> SigParams<'r> {
    fn parse(params: &'r sfv::Parameters) -> Result<SigParams<'r>> {
        let mut out = SigParams::default();
        for (k, v) in params {
            match (k.as_str(), v) {
                ("created", BareItem::Integer(i)) => out.created = Some(*i),
                ("expires", BareItem::Integer(i)) => out.expires = Some(*i),
                ("nonce", BareItem::String(s)) => out.nonce = Some(s),
                ("alg", BareItem::String(s)) => out.alg = Some(s),
                ("keyid", BareItem::String(s)) => out.keyid = Some(s),
                ("tag", BareItem::String(s)) => out.tag = Some(s),
                ("created" | "expires" | "nonce" | "alg" | "keyid" | "tag", _) => {
                    return Err(HttpSigError::Malformed)
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// A label that passed the screen.
struct Candidate<'r, 'k> {
    label: &'r str,
    list: &'r InnerList,
    comps: Vec<Component<'r>>,
    params: SigParams<'r>,
    keyid: &'r str,
    key: &'k SigKey,
    signature: &'r [u8],
}

/// The cheap checks, in this order: shape, key, alg, tag, components, required, time, signature present.
fn screen<'r, 'k>(
    label: &'r str,
    entry: &'r Entry,
    sigs: &'r sfv::Dictionary,
    keys: &dyn Fn(&str) -> Option<&'k SigKey>,
    policy: &Policy,
) -> Result<Candidate<'r, 'k>> {
    let Entry::InnerList(list) = entry else {
        return Err(HttpSigError::Malformed);
    };
    let params = SigParams::parse(&list.params)?;
    let keyid = params.keyid.ok_or(HttpSigError::UnknownKey)?;
    let key = keys(keyid).ok_or(HttpSigError::UnknownKey)?;
    if let Some(alg) = params.alg {
        if SigAlg::from_name(alg) != Some(key.alg) {
            return Err(HttpSigError::AlgMismatch);
        }
    }
    if let Some(want) = policy.tag {
        if params.tag != Some(want) {
            return Err(HttpSigError::TagMismatch);
        }
    }
    let comps = components(list)?;
    if !policy
        .required
        .iter()
        .all(|r| comps.iter().any(|c| c.satisfies(r)))
    {
        return Err(HttpSigError::MissingComponent);
    }
    if let Some(created) = params.created {
        if created > policy.now.saturating_add(FUTURE_SKEW_S) {
            return Err(HttpSigError::CreatedInFuture);
        }
    }
    if let Some(expires) = params.expires {
        if expires < policy.now {
            return Err(HttpSigError::Expired);
        }
    }
    if policy.max_age_s > 0 {
        let created = params.created.ok_or(HttpSigError::TooOld)?;
        if created.saturating_add(policy.max_age_s) < policy.now {
            return Err(HttpSigError::TooOld);
        }
    }
    let signature = match sfv::get(sigs, label) {
        Some(Entry::Item(Item {
            bare: BareItem::ByteSeq(b),
            ..
        })) => b.as_slice(),
        _ => return Err(HttpSigError::Malformed),
    };
    Ok(Candidate {
        label,
        list,
        comps,
        params,
        keyid,
        key,
        signature,
    })
}

/// The deciding label: base, body presence, signature, digest.
fn decide(req: &Request, c: Candidate<'_, '_>) -> Result<Verified> {
    let base = build_base(req, &c.comps, c.list)?;
    let digest = DigestCoverage::of(&c.comps);
    if digest.is_some() && req.body.is_none() {
        return Err(HttpSigError::BodyRequired);
    }
    if !crypto::verify(c.key.alg.jws(), &c.key.key, base.as_bytes(), c.signature) {
        return Err(HttpSigError::BadSignature);
    }
    if let Some(coverage) = &digest {
        check_content_digest(req, coverage)?;
    }
    Ok(Verified {
        keyid: c.keyid.to_owned(),
        label: c.label.to_owned(),
        alg: c.key.alg,
        nonce: c.params.nonce.map(str::to_owned),
        created: c.params.created,
        expires: c.params.expires,
        covers_content_digest: digest.is_some(),
    })
}

/// §2.5: one line per component, then `@signature-params`; no trailing newline.
fn build_base(req: &Request, comps: &[Component<'_>], list: &InnerList) -> Result<String> {
    let mut out = String::new();
    for c in comps {
        let value = component_value(req, c.kind)?;
        if value.chars().any(|ch| ch.is_control() && ch != '\t') {
            return Err(HttpSigError::Malformed);
        }
        out.push_str(&c.id);
        out.push_str(": ");
        out.push_str(&value);
        out.push('\n');
    }
    out.push_str("\"@signature-params\": ");
    sfv::write_inner_list(&mut out, list);
    Ok(out)
}

/// The raw request target without a fragment (`:path` never carries one, but a hostile host might).
fn request_target<'a>(req: &Request<'a>) -> &'a str {
    req.path.split('#').next().unwrap_or_default()
}

fn path_and_query<'a>(req: &Request<'a>) -> (&'a str, Option<&'a str>) {
    match request_target(req).split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (request_target(req), None),
    }
}

/// §2.2.3: lowercase, without the scheme's default port.
fn normalized_authority(scheme: &str, authority: &str) -> String {
    let lower = authority.to_ascii_lowercase();
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return lower,
    };
    match lower.strip_suffix(default) {
        Some(bare) if !bare.is_empty() => bare.to_owned(),
        _ => lower,
    }
}

fn component_value<'a>(req: &Request<'a>, kind: Kind<'_>) -> Result<Cow<'a, str>> {
    Ok(match kind {
        Kind::Method => Cow::Borrowed(req.method),
        Kind::Scheme => Cow::Owned(req.scheme.to_ascii_lowercase()),
        Kind::Authority => Cow::Owned(normalized_authority(req.scheme, req.authority)),
        // §2.2.2 gives the target URI as the client formed it; only `@authority` (§2.2.3) is normalized.
        // Clients (e.g. the http-message-signatures library) sign the authority as sent, so it stays raw.
        Kind::TargetUri => Cow::Owned(format!(
            "{}://{}{}",
            req.scheme.to_ascii_lowercase(),
            req.authority,
            request_target(req)
        )),
        Kind::RequestTarget => Cow::Borrowed(request_target(req)),
        Kind::Path => match path_and_query(req).0 {
            "" => Cow::Borrowed("/"),
            p => Cow::Borrowed(p),
        },
        Kind::Query => Cow::Owned(format!("?{}", path_and_query(req).1.unwrap_or_default())),
        Kind::QueryParam(name) => Cow::Owned(query_param(path_and_query(req).1, name)?),
        Kind::Field(name, mode) => Cow::Owned(field_component(req.headers, name, mode)?),
    })
}

/// §2.2.8: the query parsed as `application/x-www-form-urlencoded`, names and values re-encoded; the one
/// parameter whose encoded name is `name`. Absent: `MissingComponent`; repeated: `Malformed` (the RFC says a
/// repeated parameter must not be signed by name).
fn query_param(query: Option<&str>, name: &str) -> Result<String> {
    let mut found: Option<String> = None;
    for pair in query.unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        if form_reencode(n) != name {
            continue;
        }
        if found.replace(form_reencode(v)).is_some() {
            return Err(HttpSigError::Malformed);
        }
    }
    found.ok_or(HttpSigError::MissingComponent)
}

/// Form-decodes (`+` is a space, `%XX` a byte, a stray `%` itself, then UTF-8 with replacement), then
/// percent-encodes every byte outside `ALPHA / DIGIT / "*" / "-" / "." / "_"` (uppercase hex, space as `%20`).
fn form_reencode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
        match b {
            b'+' => decoded.push(b' '),
            b'%' => {
                if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                    decoded.push(u8::try_from(h * 16 + l).unwrap_or_default());
                    i += 3;
                    continue;
                }
                decoded.push(b'%');
            }
            _ => decoded.push(b),
        }
        i += 1;
    }
    let text = String::from_utf8_lossy(&decoded);
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(
                HEX_UPPER.get(usize::from(b >> 4)).copied().unwrap_or(b'0'),
            ));
            out.push(char::from(
                HEX_UPPER.get(usize::from(b & 15)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The structured type of the fields this module can re-serialize with `;sf` (RFC 8941 §2: a field's type
/// comes from its definition). A field not listed here is tried as a dictionary, then a list, then an item:
/// whenever more than one parse succeeds they serialize alike, except for a repeated dictionary key.
#[derive(Clone, Copy)]
enum SfType {
    Dictionary,
    List,
    Item,
    Unknown,
}

fn sf_type(name: &str) -> SfType {
    match name {
        "signature"
        | "signature-input"
        | "accept-signature"
        | "content-digest"
        | "repr-digest"
        | "want-content-digest"
        | "want-repr-digest"
        | "priority"
        | "cdn-cache-control"
        | "example-dict" => SfType::Dictionary,
        "cache-status" | "proxy-status" | "accept-ch" | "client-cert-chain" => SfType::List,
        "client-cert" => SfType::Item,
        _ => SfType::Unknown,
    }
}

fn reserialize(name: &str, value: &str) -> Result<String> {
    let dict = || sfv::parse_dictionary(value).map(|d| sfv::serialize_dictionary(&d));
    let list = || sfv::parse_list(value).map(|l| sfv::serialize_list(&l));
    let item = || sfv::parse_item(value).map(|i| sfv::serialize_item(&i));
    match sf_type(name) {
        SfType::Dictionary => dict(),
        SfType::List => list(),
        SfType::Item => item(),
        SfType::Unknown => dict().or_else(|_| list()).or_else(|_| item()),
    }
    .map_err(|_| HttpSigError::Malformed)
}

fn field_component(headers: &[(&str, &str)], name: &str, mode: FieldMode<'_>) -> Result<String> {
    let lines = field_lines(headers, name)?.ok_or(HttpSigError::MissingComponent)?;
    let joined = lines.join(", ");
    match mode {
        FieldMode::Raw => Ok(joined),
        FieldMode::Sf => reserialize(name, &joined),
        FieldMode::Key(member) => {
            let dict = sfv::parse_dictionary(&joined).map_err(|_| HttpSigError::Malformed)?;
            let entry = sfv::get(&dict, member).ok_or(HttpSigError::MissingComponent)?;
            let mut out = String::new();
            sfv::write_entry(&mut out, entry);
            Ok(out)
        }
        FieldMode::Bs => Ok(lines
            .iter()
            .map(|l| format!(":{}:", STANDARD.encode(l.as_bytes())))
            .collect::<Vec<_>>()
            .join(", ")),
    }
}

/// Which `Content-Digest` members the signature binds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DigestCoverage<'r> {
    /// The whole field (raw, `;sf` or `;bs`).
    Whole,
    /// Only these members (`;key="…"`).
    Members(Vec<&'r str>),
}

impl<'r> DigestCoverage<'r> {
    fn of(comps: &[Component<'r>]) -> Option<DigestCoverage<'r>> {
        let mut members = Vec::new();
        for c in comps {
            match c.kind {
                Kind::Field("content-digest", FieldMode::Key(m)) => members.push(m),
                Kind::Field("content-digest", _) => return Some(DigestCoverage::Whole),
                _ => {}
            }
        }
        (!members.is_empty()).then_some(DigestCoverage::Members(members))
    }

    fn binds(&self, alg: &str) -> bool {
        match self {
            DigestCoverage::Whole => true,
            DigestCoverage::Members(m) => m.contains(&alg),
        }
    }
}

/// RFC 9530: every `sha-256` / `sha-512` member present must match the body, and at least one of them must be
/// signed. Other algorithms are ignored (never trusted).
fn check_content_digest(req: &Request, coverage: &DigestCoverage<'_>) -> Result<()> {
    let body = req.body.ok_or(HttpSigError::BodyRequired)?;
    let value =
        field_value(req.headers, "content-digest")?.ok_or(HttpSigError::MissingComponent)?;
    let dict = sfv::parse_dictionary(&value).map_err(|_| HttpSigError::Malformed)?;
    let mut signed_ok = false;
    for (alg, entry) in &dict {
        let computed: Vec<u8> = match alg.as_str() {
            "sha-256" => Sha256::digest(body).to_vec(),
            "sha-512" => Sha512::digest(body).to_vec(),
            _ => continue,
        };
        let Entry::Item(Item {
            bare: BareItem::ByteSeq(claimed),
            ..
        }) = entry
        else {
            return Err(HttpSigError::Malformed);
        };
        if !bool::from(computed.ct_eq(claimed)) {
            return Err(HttpSigError::DigestMismatch);
        }
        signed_ok |= coverage.binds(alg);
    }
    if signed_ok {
        Ok(())
    } else {
        Err(HttpSigError::DigestMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::borrowed;

    const SECRET_B64: &str =
        "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

    fn secret_key() -> SigKey {
        SigKey::new(
            SigAlg::HmacSha256,
            VerifyKey::secret(crate::formats::b64::std_decode(SECRET_B64).unwrap()).unwrap(),
        )
        .unwrap()
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn req<'a>(
        path: &'a str,
        headers: &'a [(&'a str, &'a str)],
        body: Option<&'a [u8]>,
    ) -> Request<'a> {
        Request {
            method: "POST",
            scheme: "https",
            authority: "example.com",
            path,
            headers,
            body,
        }
    }

    /// Signs `input` (a Signature-Input member value) with the test secret; returns the headers.
    fn signed(
        extra: &[(&str, &str)],
        path: &str,
        label: &str,
        input: &str,
        body: Option<&[u8]>,
    ) -> Vec<(String, String)> {
        let mut h = hdrs(extra);
        h.push(("Signature-Input".into(), format!("{label}={input}")));
        h.push(("Signature".into(), format!("{label}=:AA==:")));
        let base = signature_base(&req(path, &borrowed(&h), body), label).unwrap();
        let mac = crypto::hmac_sha256(
            &crate::formats::b64::std_decode(SECRET_B64).unwrap(),
            base.as_bytes(),
        );
        h.pop();
        h.push((
            "Signature".into(),
            format!("{label}=:{}:", STANDARD.encode(mac)),
        ));
        h
    }

    fn policy(now: i64) -> Policy<'static> {
        Policy {
            required: &[],
            max_age_s: 300,
            tag: None,
            now,
        }
    }

    fn run(
        h: &[(String, String)],
        path: &str,
        body: Option<&[u8]>,
        p: &Policy,
    ) -> Result<Verified> {
        let k = secret_key();
        let keys = |id: &str| (id == "k").then_some(&k);
        verify(&req(path, &borrowed(h), body), &keys, p)
    }

    const IN: &str = r#"("@method" "@authority" "@path");created=1000;keyid="k""#;

    #[test]
    fn a_signed_request_verifies_and_reports_its_parameters() {
        let h = signed(&[], "/a?b=c", "s", IN, None);
        let v = run(&h, "/a?b=c", None, &policy(1000)).unwrap();
        assert_eq!(v.keyid, "k");
        assert_eq!(v.label, "s");
        assert_eq!(v.created, Some(1000));
        assert!(!v.covers_content_digest);
        // @path excludes the query, so another query still verifies.
        assert!(run(&h, "/a?b=d", None, &policy(1000)).is_ok());
        assert_eq!(
            run(&h, "/b", None, &policy(1000)),
            Err(HttpSigError::BadSignature)
        );
    }

    #[test]
    fn time_checks() {
        let h = signed(&[], "/", "s", IN, None);
        assert!(run(&h, "/", None, &policy(1300)).is_ok());
        assert_eq!(run(&h, "/", None, &policy(1301)), Err(HttpSigError::TooOld));
        assert!(run(&h, "/", None, &policy(940)).is_ok());
        assert_eq!(
            run(&h, "/", None, &policy(939)),
            Err(HttpSigError::CreatedInFuture)
        );
        let no_age = Policy {
            max_age_s: 0,
            ..policy(10_000_000)
        };
        assert!(run(&h, "/", None, &no_age).is_ok());
        let exp = signed(
            &[],
            "/",
            "s",
            r#"("@method");created=1000;expires=1010;keyid="k";nonce="n1""#,
            None,
        );
        let v = run(&exp, "/", None, &policy(1010)).unwrap();
        assert_eq!(v.nonce.as_deref(), Some("n1"));
        assert_eq!(v.expires, Some(1010));
        assert_eq!(
            run(&exp, "/", None, &policy(1011)),
            Err(HttpSigError::Expired)
        );
        let uncreated = signed(&[], "/", "s", r#"("@method");keyid="k""#, None);
        assert_eq!(
            run(&uncreated, "/", None, &policy(1000)),
            Err(HttpSigError::TooOld)
        );
        assert!(run(&uncreated, "/", None, &no_age).is_ok());
    }

    #[test]
    fn policy_checks() {
        let h = signed(&[], "/", "s", IN, None);
        let req_q = ["@query".to_owned()];
        let p = Policy {
            required: &req_q,
            ..policy(1000)
        };
        assert_eq!(run(&h, "/", None, &p), Err(HttpSigError::MissingComponent));
        let req_ok = ["@method".to_owned(), "@path".to_owned()];
        assert!(run(
            &h,
            "/",
            None,
            &Policy {
                required: &req_ok,
                ..policy(1000)
            }
        )
        .is_ok());
        assert_eq!(
            run(
                &h,
                "/",
                None,
                &Policy {
                    tag: Some("t"),
                    ..policy(1000)
                }
            ),
            Err(HttpSigError::TagMismatch)
        );
        let tagged = signed(
            &[],
            "/",
            "s",
            r#"("@method");created=1000;keyid="k";tag="t""#,
            None,
        );
        assert!(run(
            &tagged,
            "/",
            None,
            &Policy {
                tag: Some("t"),
                ..policy(1000)
            }
        )
        .is_ok());
        let wrong_alg = signed(
            &[],
            "/",
            "s",
            r#"("@method");created=1000;keyid="k";alg="ed25519""#,
            None,
        );
        assert_eq!(
            run(&wrong_alg, "/", None, &policy(1000)),
            Err(HttpSigError::AlgMismatch)
        );
        let good_alg = signed(
            &[],
            "/",
            "s",
            r#"("@method");created=1000;keyid="k";alg="hmac-sha256""#,
            None,
        );
        assert!(run(&good_alg, "/", None, &policy(1000)).is_ok());
        let unknown = signed(
            &[],
            "/",
            "s",
            r#"("@method");created=1000;keyid="other""#,
            None,
        );
        assert_eq!(
            run(&unknown, "/", None, &policy(1000)),
            Err(HttpSigError::UnknownKey)
        );
        let qp = [r#""@query-param";name="a""#.to_owned()];
        let hq = signed(
            &[],
            "/?a=1",
            "s",
            r#"("@query-param";name="a");created=1000;keyid="k""#,
            None,
        );
        assert!(run(
            &hq,
            "/?a=1",
            None,
            &Policy {
                required: &qp,
                ..policy(1000)
            }
        )
        .is_ok());
        let qp_b = [r#""@query-param";name="b""#.to_owned()];
        assert_eq!(
            run(
                &hq,
                "/?a=1",
                None,
                &Policy {
                    required: &qp_b,
                    ..policy(1000)
                }
            ),
            Err(HttpSigError::MissingComponent)
        );
    }

    #[test]
    fn the_first_screened_label_decides() {
        // Label 1: unknown key (skipped). Label 2: known, tampered (decides: BadSignature). Label 3: valid.
        let mut h = signed(&[], "/", "c", IN, None);
        let good_sig = h.pop().unwrap().1;
        let good_in = h.pop().unwrap().1;
        h.push((
            "Signature-Input".into(),
            format!(r#"a=("@method");created=1000;keyid="zz", b=("@method");created=1000;keyid="k", {good_in}"#),
        ));
        h.push((
            "Signature".into(),
            format!("a=:AA==:, b=:AA==:, {good_sig}"),
        ));
        assert_eq!(
            run(&h, "/", None, &policy(1000)),
            Err(HttpSigError::BadSignature)
        );
        // With a tag policy only the tagged label is screened in.
        let mut h2 = signed(
            &[],
            "/",
            "c",
            r#"("@method");created=1000;keyid="k";tag="x""#,
            None,
        );
        let s2 = h2.pop().unwrap().1;
        let i2 = h2.pop().unwrap().1;
        h2.push((
            "Signature-Input".into(),
            r#"b=("@method");created=1000;keyid="k""#.to_owned(),
        ));
        h2.push(("Signature-Input".into(), i2));
        h2.push(("Signature".into(), format!("b=:AA==:, {s2}")));
        let v = run(
            &h2,
            "/",
            None,
            &Policy {
                tag: Some("x"),
                ..policy(1000)
            },
        )
        .unwrap();
        assert_eq!(v.label, "c");
        // Unknown keys only: UnknownKey; a known-key failure wins over an unknown key.
        let mut h3 = hdrs(&[]);
        h3.push((
            "Signature-Input".into(),
            r#"a=("@method");created=1000;keyid="zz", b=("@method");keyid="k""#.into(),
        ));
        h3.push(("Signature".into(), "a=:AA==:, b=:AA==:".into()));
        assert_eq!(
            run(&h3, "/", None, &policy(1000)),
            Err(HttpSigError::TooOld)
        );
    }

    #[test]
    fn content_digest_binds_the_body() {
        let body = br#"{"hello": "world"}"#;
        let d512 = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
        let input = r#"("@method" "content-digest");created=1000;keyid="k""#;
        let h = signed(&[("Content-Digest", d512)], "/", "s", input, Some(body));
        let v = run(&h, "/", Some(body), &policy(1000)).unwrap();
        assert!(v.covers_content_digest);
        assert_eq!(
            run(&h, "/", None, &policy(1000)),
            Err(HttpSigError::BodyRequired)
        );
        assert_eq!(
            run(&h, "/", Some(b"{\"hello\": \"World\"}"), &policy(1000)),
            Err(HttpSigError::DigestMismatch)
        );
        // Unsupported algorithm only: nothing to check, refused.
        let h = signed(
            &[("Content-Digest", "md5=:AA==:")],
            "/",
            "s",
            input,
            Some(body),
        );
        assert_eq!(
            run(&h, "/", Some(body), &policy(1000)),
            Err(HttpSigError::DigestMismatch)
        );
        // ;key= binds only the named member: an unsigned sha-256 member cannot stand in for it.
        let sha256_of_evil = STANDARD.encode(Sha256::digest(b"evil"));
        let cd = format!("sha-999=:AA==:, sha-256=:{sha256_of_evil}:");
        let keyed = r#"("@method" "content-digest";key="sha-999");created=1000;keyid="k""#;
        let h = signed(&[("Content-Digest", &cd)], "/", "s", keyed, Some(b"evil"));
        assert_eq!(
            run(&h, "/", Some(b"evil"), &policy(1000)),
            Err(HttpSigError::DigestMismatch)
        );
        // Both supported: both must match.
        let sha256 = STANDARD.encode(Sha256::digest(body));
        let both = format!("sha-256=:{sha256}:, {d512}");
        let h = signed(&[("Content-Digest", &both)], "/", "s", input, Some(body));
        assert!(run(&h, "/", Some(body), &policy(1000)).is_ok());
        let bad = format!("sha-256=:{sha256_of_evil}:, {d512}");
        let h = signed(&[("Content-Digest", &bad)], "/", "s", input, Some(body));
        assert_eq!(
            run(&h, "/", Some(body), &policy(1000)),
            Err(HttpSigError::DigestMismatch)
        );
    }

    #[test]
    fn derived_components() {
        let mut r = req("/p%20q/r?x=%2F&y&a+b=c+d&e=%zz", &[], None);
        let v = |r: &Request, k| component_value(r, k).unwrap().into_owned();
        assert_eq!(v(&r, Kind::Path), "/p%20q/r");
        assert_eq!(v(&r, Kind::Query), "?x=%2F&y&a+b=c+d&e=%zz");
        assert_eq!(v(&r, Kind::QueryParam("x")), "%2F");
        assert_eq!(v(&r, Kind::QueryParam("y")), "");
        assert_eq!(v(&r, Kind::QueryParam("a%20b")), "c%20d");
        assert_eq!(v(&r, Kind::QueryParam("e")), "%25zz");
        assert_eq!(
            component_value(&r, Kind::QueryParam("z")),
            Err(HttpSigError::MissingComponent)
        );
        assert_eq!(
            v(&r, Kind::TargetUri),
            "https://example.com/p%20q/r?x=%2F&y&a+b=c+d&e=%zz"
        );
        r.path = "";
        assert_eq!(v(&r, Kind::Path), "/");
        assert_eq!(v(&r, Kind::Query), "?");
        r.path = "/x?";
        assert_eq!(v(&r, Kind::Query), "?");
        r.path = "/x?a=1&a=2";
        assert_eq!(
            component_value(&r, Kind::QueryParam("a")),
            Err(HttpSigError::Malformed)
        );
        r.authority = "Example.COM:443";
        assert_eq!(v(&r, Kind::Authority), "example.com");
        r.authority = "example.com:8443";
        assert_eq!(v(&r, Kind::Authority), "example.com:8443");
        r.scheme = "HTTP";
        r.authority = "[::1]:80";
        assert_eq!(v(&r, Kind::Authority), "[::1]");
        assert_eq!(v(&r, Kind::Scheme), "http");
        // RFC 9421 §2.2.8 example.
        assert_eq!(
            form_reencode("this%20is%20a%20big%0Avalue"),
            "this%20is%20a%20big%0Avalue"
        );
        assert_eq!(
            form_reencode("with+plus+whitespace"),
            "with%20plus%20whitespace"
        );
        assert_eq!(
            form_reencode("fa%C3%A7ade%22%3A%20"),
            "fa%C3%A7ade%22%3A%20"
        );
        assert_eq!(form_reencode("%FF"), "%EF%BF%BD");
    }

    #[test]
    fn field_components_as_in_rfc9421_section_2_1() {
        let h = hdrs(&[
            ("Host", "www.example.com"),
            ("X-OWS-Header", "   Leading and trailing whitespace.   "),
            ("X-Obs-Fold-Header", "Obsolete line folding."),
            ("Cache-Control", "max-age=60"),
            ("Cache-Control", "   must-revalidate"),
            ("Example-Dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)"),
            ("X-Empty-Header", ""),
            ("Example-Header", "value, with, lots"),
            ("Example-Header", "of, commas"),
        ]);
        let h = borrowed(&h);
        let f = |name, mode| field_component(&h, name, mode);
        assert_eq!(
            f("x-ows-header", FieldMode::Raw).unwrap(),
            "Leading and trailing whitespace."
        );
        assert_eq!(
            f("cache-control", FieldMode::Raw).unwrap(),
            "max-age=60, must-revalidate"
        );
        assert_eq!(f("x-empty-header", FieldMode::Raw).unwrap(), "");
        assert_eq!(
            f("example-dict", FieldMode::Raw).unwrap(),
            "a=1,    b=2;x=1;y=2,   c=(a   b   c)"
        );
        assert_eq!(
            f("example-dict", FieldMode::Sf).unwrap(),
            "a=1, b=2;x=1;y=2, c=(a b c)"
        );
        assert_eq!(f("example-dict", FieldMode::Key("a")).unwrap(), "1");
        assert_eq!(f("example-dict", FieldMode::Key("b")).unwrap(), "2;x=1;y=2");
        assert_eq!(f("example-dict", FieldMode::Key("c")).unwrap(), "(a b c)");
        assert_eq!(
            f("example-dict", FieldMode::Key("d")),
            Err(HttpSigError::MissingComponent)
        );
        assert_eq!(
            f("example-header", FieldMode::Bs).unwrap(),
            ":dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:"
        );
        assert_eq!(
            f("x-missing", FieldMode::Raw),
            Err(HttpSigError::MissingComponent)
        );
        assert_eq!(
            f("example-header", FieldMode::Key("a")),
            Err(HttpSigError::MissingComponent)
        );
        assert_eq!(
            f("x-ows-header", FieldMode::Key("a")),
            Err(HttpSigError::Malformed)
        );
        assert_eq!(
            f("x-ows-header", FieldMode::Sf),
            Err(HttpSigError::Malformed)
        );
    }

    #[test]
    fn component_identifiers_are_strict() {
        for bad in [
            r#"("@status")"#,
            r#"("@signature-params")"#,
            r#"("@method";req)"#,
            r#"("@query-param")"#,
            r#"("@query-param";name=x)"#,
            r#"("@query-param";name="x";req)"#,
            r#"("Content-Type")"#,
            r#"(":authority")"#,
            r#"("a b")"#,
            r#"("")"#,
            r#"(content-type)"#,
            r#"("x";sf;bs)"#,
            r#"("x";tr)"#,
            r#"("x";sf=?0)"#,
            r#"("x";key=a)"#,
            r#"("@method" "@method")"#,
            r#"("x";key="a" "x";key="a")"#,
        ] {
            let list = match sfv::parse_dictionary(&format!("s={bad}"))
                .unwrap()
                .pop()
                .unwrap()
                .1
            {
                Entry::InnerList(l) => l,
                Entry::Item(_) => panic!(),
            };
            assert_eq!(
                components(&list).err(),
                Some(HttpSigError::Malformed),
                "{bad}"
            );
        }
        let ok = sfv::parse_dictionary(r#"s=("x";key="a" "x";key="b" "x" "x";sf "x";bs)"#).unwrap();
        let Entry::InnerList(l) = &ok[0].1 else {
            panic!()
        };
        assert_eq!(components(l).unwrap().len(), 5);
        assert!(is_component_identifier("@method"));
        assert!(is_component_identifier("content-digest"));
        assert!(is_component_identifier("@query-param"));
        assert!(is_component_identifier(r#""@query-param";name="id""#));
        assert!(!is_component_identifier("@status"));
        assert!(!is_component_identifier("Content-Type"));
        assert!(!is_component_identifier(r#""@query-param";nam="id""#));
    }

    #[test]
    fn hostile_headers_never_panic_and_are_refused() {
        let p = policy(1000);
        let cases: Vec<Vec<(&str, String)>> = vec![
            vec![],
            vec![("Signature-Input", IN.into())],
            vec![("Signature", "s=:AA==:".into())],
            vec![
                ("Signature-Input", format!("s={IN}")),
                ("Signature", "s=:AA==:".into()),
            ],
            vec![
                ("Signature-Input", "s=(".into()),
                ("Signature", "s=:AA==:".into()),
            ],
            vec![
                ("Signature-Input", format!("s={IN}")),
                ("Signature", "s=AA==".into()),
            ],
            vec![
                ("Signature-Input", format!("s={IN}")),
                ("Signature", "t=:AA==:".into()),
            ],
            vec![
                ("Signature-Input", "s=1".into()),
                ("Signature", "s=:AA==:".into()),
            ],
            vec![
                ("Signature-Input", r#"s=("@method");keyid=1"#.into()),
                ("Signature", "s=:AA==:".into()),
            ],
            vec![
                (
                    "Signature-Input",
                    r#"s=("@method");keyid="k";created="1""#.into(),
                ),
                ("Signature", "s=:AA==:".into()),
            ],
            vec![
                (
                    "Signature-Input",
                    format!("s={}", IN.replace("\"@path\"", "\"x-evil\"")),
                ),
                ("Signature", "s=:AA==:".into()),
                ("x-evil", "a\nb".into()),
            ],
            vec![("Signature-Input", "".into()), ("Signature", "".into())],
            vec![
                (
                    "Signature-Input",
                    format!("s={IN}{}", " ".repeat(MAX_FIELD_BYTES)),
                ),
                ("Signature", "s=:AA==:".into()),
            ],
            vec![
                (
                    "Signature-Input",
                    (0..40)
                        .map(|i| format!("s{i}={IN}"))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                ("Signature", "s=:AA==:".into()),
            ],
        ];
        for c in cases {
            let h: Vec<(String, String)> = c
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.clone()))
                .collect();
            let r = run(&h, "/", None, &p);
            assert!(r.is_err(), "{c:?}");
            let _ = signature_base(&req("/", &borrowed(&h), None), "s");
        }
        let h = hdrs(&[]);
        assert_eq!(run(&h, "/", None, &p), Err(HttpSigError::Missing));
        let empty = hdrs(&[("Signature-Input", " "), ("Signature", "")]);
        assert_eq!(run(&empty, "/", None, &p), Err(HttpSigError::Missing));
    }

    #[test]
    fn alg_names_and_key_fit() {
        for a in SigAlg::ALL {
            assert_eq!(SigAlg::from_name(a.name()), Some(a));
        }
        assert_eq!(SigAlg::from_name("HMAC-SHA256"), None);
        assert_eq!(SigAlg::from_name("rsa-pss-sha256"), None);
        let secret = VerifyKey::secret(vec![1; 32]).unwrap();
        assert!(SigKey::new(SigAlg::HmacSha256, secret.clone()).is_some());
        assert!(SigKey::new(SigAlg::Ed25519, secret).is_none());
    }
}
