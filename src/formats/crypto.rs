//! Signature and MAC verification: the one place that touches crypto crates.
//!
//! Owns the JWS algorithm names ([RFC 7518 §3.1](https://www.rfc-editor.org/rfc/rfc7518#section-3.1)), the
//! decoded key types, and [`verify`], which every scheme calls. The algorithm always comes from the caller (the
//! config and the key), and [`Alg::fits`] refuses a key of the wrong type, so a token can never pick how it is
//! checked (no `none`, no HMAC with a public key).

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsBasepointTable, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::BasepointTable as _;
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use hmac::{Hmac, Mac, SimpleHmac};
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::traits::PublicKeyParts as _;
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::cell::{Cell, OnceCell};
use std::fmt;
use zeroize::Zeroizing;

/// Smallest RSA modulus accepted anywhere (NIST SP 800-131A).
pub const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted: bounds the cost of one verification.
pub const RSA_MAX_BITS: usize = 8192;

/// A JWS signature algorithm this filter verifies. `none` and the ones not listed have no value here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl Alg {
    /// Every supported algorithm, in a stable order.
    pub const ALL: [Alg; 12] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
    ];

    /// The algorithm named by a JWS `alg` value (case-sensitive, as RFC 7515 says). `None` for `none` and for
    /// everything unsupported. RFC 9864's fully-specified `Ed25519` is [`Alg::EdDSA`] (the only EdDSA curve
    /// verified here), in tokens, JWK `alg` members and the providers' `algorithms` alike.
    pub fn from_name(name: &str) -> Option<Alg> {
        if name == "Ed25519" {
            return Some(Alg::EdDSA);
        }
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The registered JWS name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }

    /// True when `key` is of the one type this algorithm may be verified with.
    pub fn fits(self, key: &VerifyKey) -> bool {
        matches!(
            (self, key),
            (
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512,
                VerifyKey::Rsa(_)
            ) | (Alg::ES256, VerifyKey::P256(_))
                | (Alg::ES384, VerifyKey::P384(_))
                | (Alg::EdDSA, VerifyKey::Ed25519(_))
                | (Alg::HS256 | Alg::HS384 | Alg::HS512, VerifyKey::Secret(_))
        )
    }

    /// True for the HMAC algorithms (a shared secret, never a public key).
    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A shared secret. Zeroed on drop; never printed.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// The secret bytes, for MAC computation only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(_)")
    }
}

/// A decoded verification key.
#[derive(Debug, Clone)]
pub enum VerifyKey {
    Rsa(Box<RsaPublicKey>),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(Box<Ed25519Key>),
    Secret(Secret),
}

/// An Ed25519 public key ([RFC 8032](https://www.rfc-editor.org/rfc/rfc8032#section-5.1.7)) that speeds up
/// once it is used often.
///
/// Verification checks `[s]B = R + [k]A`. ed25519-dalek computes `[k](-A) + [s]B` with one variable-base
/// double-scalar multiplication. A key verified [`TABLE_AFTER`] times gets a precomputed radix-16 table of
/// `-A` (30 KiB, the kind ed25519-dalek keeps for `B`), so both products become fixed-base multiplications:
/// measured in V8 (Envoy's wasm engine), 83 µs → 61 µs per verification; building the table costs about 17
/// verifications, which is why only keys in steady use get one, and at most [`MAX_TABLES`] per thread (VM).
/// Both paths accept exactly what `VerifyingKey::verify_strict` accepts (canonical `s`, `R` and `A` not of
/// small order, the same `k`, the same comparison of encodings); a test holds them to that over every Wycheproof
/// Ed25519 vector.
pub struct Ed25519Key {
    key: ed25519_dalek::VerifyingKey,
    /// `-A` and whether `A` has small order (`verify_strict` refuses every signature for such a key).
    minus_a: EdwardsPoint,
    weak: bool,
    uses: Cell<u32>,
    table: OnceCell<Option<Box<EdwardsBasepointTable>>>,
}

/// Verifications of one key before it gets its table.
pub const TABLE_AFTER: u32 = 32;
/// Tables alive at once per thread (one wasm VM): bounds their memory at 2 MiB.
pub const MAX_TABLES: usize = 64;

thread_local! {
    static TABLES: Cell<usize> = const { Cell::new(0) };
}

impl Ed25519Key {
    /// The key from its 32 bytes; `None` when they are not a point's encoding.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Ed25519Key> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .ok()
            .map(Ed25519Key::from)
    }

    /// The ed25519-dalek key (encodings, PEM).
    pub fn verifying_key(&self) -> &ed25519_dalek::VerifyingKey {
        &self.key
    }

    /// True when this key has its table (tests, metrics).
    pub fn has_table(&self) -> bool {
        matches!(self.table.get(), Some(Some(_)))
    }

    /// The table of `-A`, built on the [`TABLE_AFTER`]th use while fewer than [`MAX_TABLES`] exist.
    fn table(&self) -> Option<&EdwardsBasepointTable> {
        if let Some(t) = self.table.get() {
            return t.as_deref();
        }
        let uses = self.uses.get().saturating_add(1);
        self.uses.set(uses);
        if uses < TABLE_AFTER || TABLES.with(Cell::get) >= MAX_TABLES {
            return None;
        }
        TABLES.with(|n| n.set(n.get().saturating_add(1)));
        self.table
            .get_or_init(|| Some(Box::new(EdwardsBasepointTable::create(&self.minus_a))))
            .as_deref()
    }

    /// `verify_strict`, through the table when the key has one.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = <&[u8; 64]>::try_from(sig) else {
            return false;
        };
        let Some(table) = self.table() else {
            let sig = ed25519_dalek::Signature::from_bytes(sig);
            return self.key.verify_strict(msg, &sig).is_ok();
        };
        let (r_bytes, s_bytes) = sig.split_at(32);
        let (Ok(r_bytes), Ok(s_bytes)) =
            (<[u8; 32]>::try_from(r_bytes), <[u8; 32]>::try_from(s_bytes))
        else {
            return false;
        };
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        let Some(r) = CompressedEdwardsY(r_bytes).decompress() else {
            return false;
        };
        if r.is_small_order() || self.weak {
            return false;
        }
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(r_bytes)
                .chain_update(self.key.as_bytes())
                .chain_update(msg),
        );
        // Compared as encodings, as verify_strict does: a non-canonical R never matches.
        let expected = ED25519_BASEPOINT_TABLE.mul_base(&s) + table.mul_base(&k);
        expected.compress().as_bytes() == &r_bytes
    }
}

impl From<ed25519_dalek::VerifyingKey> for Ed25519Key {
    fn from(key: ed25519_dalek::VerifyingKey) -> Ed25519Key {
        let a = key.to_edwards();
        Ed25519Key {
            key,
            minus_a: -a,
            weak: a.is_small_order(),
            uses: Cell::new(0),
            table: OnceCell::new(),
        }
    }
}

impl Clone for Ed25519Key {
    /// A copy starts without a table (it is counted against [`MAX_TABLES`] when built).
    fn clone(&self) -> Ed25519Key {
        Ed25519Key::from(self.key)
    }
}

impl Drop for Ed25519Key {
    fn drop(&mut self) {
        if self.has_table() {
            TABLES.with(|n| n.set(n.get().saturating_sub(1)));
        }
    }
}

impl fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Ed25519Key").field(&self.key).finish()
    }
}

/// Why key material could not be turned into a [`VerifyKey`]. Carries no key bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The RSA modulus is outside `[RSA_MIN_BITS, RSA_MAX_BITS]`.
    RsaSize(usize),
    /// The RSA numbers do not form a public key (e.g. even modulus, exponent 1).
    RsaInvalid,
    /// The EC point has the wrong length or is not on the curve.
    EcPoint(&'static str),
    /// The Ed25519 key is not 32 bytes or not a valid point.
    Ed25519,
    /// An HMAC secret of zero length.
    EmptySecret,
    /// PEM that is none of the supported public key forms.
    Pem(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::RsaSize(bits) => write!(
                f,
                "RSA modulus is {bits} bits, expected {RSA_MIN_BITS} to {RSA_MAX_BITS}"
            ),
            KeyError::RsaInvalid => f.write_str("not a valid RSA public key"),
            KeyError::EcPoint(curve) => write!(f, "not a valid {curve} public point"),
            KeyError::Ed25519 => f.write_str("not a valid Ed25519 public key (32 bytes)"),
            KeyError::EmptySecret => f.write_str("empty HMAC secret"),
            KeyError::Pem(what) => write!(f, "{what}"),
        }
    }
}

impl VerifyKey {
    /// An RSA public key from big-endian modulus and exponent bytes (JWK `n`, `e`).
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        let n = BigUint::from_bytes_be(n);
        let bits = n.bits();
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(KeyError::RsaSize(bits));
        }
        let key = RsaPublicKey::new_with_max_size(n, BigUint::from_bytes_be(e), RSA_MAX_BITS)
            .map_err(|_| KeyError::RsaInvalid)?;
        Ok(VerifyKey::Rsa(Box::new(key)))
    }

    fn rsa_checked(key: RsaPublicKey) -> Result<Self, KeyError> {
        let bits = key.n().bits();
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(KeyError::RsaSize(bits));
        }
        Ok(VerifyKey::Rsa(Box::new(key)))
    }

    /// A P-256 key from its affine coordinates (32 bytes each).
    pub fn p256(x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        const WHAT: KeyError = KeyError::EcPoint("P-256");
        let x: [u8; 32] = x.try_into().map_err(|_| WHAT)?;
        let y: [u8; 32] = y.try_into().map_err(|_| WHAT)?;
        let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        p256::ecdsa::VerifyingKey::from_encoded_point(&point)
            .map(VerifyKey::P256)
            .map_err(|_| WHAT)
    }

    /// A P-384 key from its affine coordinates (48 bytes each).
    pub fn p384(x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        const WHAT: KeyError = KeyError::EcPoint("P-384");
        let x: [u8; 48] = x.try_into().map_err(|_| WHAT)?;
        let y: [u8; 48] = y.try_into().map_err(|_| WHAT)?;
        let point = p384::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        p384::ecdsa::VerifyingKey::from_encoded_point(&point)
            .map(VerifyKey::P384)
            .map_err(|_| WHAT)
    }

    /// An Ed25519 key from its 32 bytes.
    pub fn ed25519(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Ed25519)?;
        Ed25519Key::from_bytes(&bytes)
            .map(|k| VerifyKey::Ed25519(Box::new(k)))
            .ok_or(KeyError::Ed25519)
    }

    /// An HMAC secret.
    pub fn secret(bytes: Vec<u8>) -> Result<Self, KeyError> {
        if bytes.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        Ok(VerifyKey::Secret(Secret::new(bytes)))
    }

    /// Every public key in a PEM text: `PUBLIC KEY` (SubjectPublicKeyInfo: RSA, P-256, P-384, Ed25519) or
    /// `RSA PUBLIC KEY` (PKCS#1) blocks, one or more.
    pub fn from_pem(text: &str) -> Result<Vec<Self>, KeyError> {
        let blocks = pem_blocks(text)?;
        if blocks.is_empty() {
            return Err(KeyError::Pem(
                "no PEM block found, expected -----BEGIN PUBLIC KEY-----".into(),
            ));
        }
        blocks
            .into_iter()
            .map(|(label, block)| match label {
                "PUBLIC KEY" => Self::from_spki_pem(block),
                "RSA PUBLIC KEY" => RsaPublicKey::from_pkcs1_pem(block)
                    .map_err(|_| KeyError::RsaInvalid)
                    .and_then(Self::rsa_checked),
                other => Err(KeyError::Pem(format!(
                    "PEM block \"{other}\" is not supported, expected PUBLIC KEY or RSA PUBLIC KEY"
                ))),
            })
            .collect()
    }

    fn from_spki_pem(block: &str) -> Result<Self, KeyError> {
        if let Ok(k) = RsaPublicKey::from_public_key_pem(block) {
            return Self::rsa_checked(k);
        }
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(block) {
            return Ok(VerifyKey::P256(k));
        }
        if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_pem(block) {
            return Ok(VerifyKey::P384(k));
        }
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(block) {
            return Ok(VerifyKey::Ed25519(Box::new(k.into())));
        }
        Err(KeyError::Pem(
            "PUBLIC KEY is not an RSA, P-256, P-384 or Ed25519 key".into(),
        ))
    }

    /// A short description of the key type for messages ("RSA", "EC P-256", ...).
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyKey::Rsa(_) => "RSA",
            VerifyKey::P256(_) => "EC P-256",
            VerifyKey::P384(_) => "EC P-384",
            VerifyKey::Ed25519(_) => "OKP Ed25519",
            VerifyKey::Secret(_) => "oct",
        }
    }
}

/// Splits a PEM text into `(label, whole block text)` pairs.
fn pem_blocks(text: &str) -> Result<Vec<(&str, &str)>, KeyError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let from_begin = rest.get(start..).unwrap_or_default();
        let label_start = "-----BEGIN ".len();
        let label_end = from_begin
            .get(label_start..)
            .and_then(|s| s.find("-----"))
            .map(|i| i + label_start)
            .ok_or_else(|| KeyError::Pem("unterminated PEM BEGIN line".into()))?;
        let label = from_begin.get(label_start..label_end).unwrap_or_default();
        let end_marker = format!("-----END {label}-----");
        let end = from_begin
            .find(&end_marker)
            .map(|i| i + end_marker.len())
            .ok_or_else(|| KeyError::Pem(format!("missing \"{end_marker}\"")))?;
        out.push((label, from_begin.get(..end).unwrap_or_default()));
        rest = from_begin.get(end..).unwrap_or_default();
    }
    Ok(out)
}

/// A native signature verifier the host offers (Envoy's `verify_signature` foreign function, BoringSSL):
/// `(hash name, SubjectPublicKeyInfo DER, signature — DER for ECDSA, message)` → `Some(valid)`, or `None`
/// when the call could not be made (then the pure-Rust path decides).
pub type Offload = fn(&str, &[u8], &[u8], &[u8]) -> Option<bool>;

thread_local! {
    static OFFLOAD: Cell<Option<Offload>> = const { Cell::new(None) };
}

/// Installs (or removes) the host verifier for RSA PKCS#1 v1.5 and ECDSA. Set once per VM, at start-up,
/// after a probe showed it verifies correctly. RSA-PSS, Ed25519 and HMAC always stay in wasm.
pub fn set_offload(f: Option<Offload>) {
    OFFLOAD.with(|o| o.set(f));
}

/// True when a host verifier is installed.
pub fn offload_active() -> bool {
    OFFLOAD.with(|o| o.get().is_some())
}

fn hash_name(alg: Alg) -> &'static str {
    match alg {
        Alg::RS384 | Alg::ES384 | Alg::PS384 | Alg::HS384 => "sha384",
        Alg::RS512 | Alg::PS512 | Alg::HS512 => "sha512",
        _ => "sha256",
    }
}

/// The host's answer for `alg`, when a host verifier is installed and handles it.
fn offloaded(alg: Alg, key: &VerifyKey, msg: &[u8], sig: &[u8]) -> Option<bool> {
    use p256::pkcs8::EncodePublicKey as _;
    let f = OFFLOAD.with(|o| o.get())?;
    match (alg, key) {
        (Alg::RS256 | Alg::RS384 | Alg::RS512, VerifyKey::Rsa(k)) => {
            let der = rsa::pkcs8::EncodePublicKey::to_public_key_der(k.as_ref()).ok()?;
            f(hash_name(alg), der.as_bytes(), sig, msg)
        }
        (Alg::ES256, VerifyKey::P256(k)) => {
            // A malformed r||s is refused here: never handed to the host to interpret.
            let Ok(s) = p256::ecdsa::Signature::from_slice(sig) else {
                return Some(false);
            };
            let der = k.to_public_key_der().ok()?;
            f("sha256", der.as_bytes(), s.to_der().as_bytes(), msg)
        }
        (Alg::ES384, VerifyKey::P384(k)) => {
            let Ok(s) = p384::ecdsa::Signature::from_slice(sig) else {
                return Some(false);
            };
            let der = k.to_public_key_der().ok()?;
            f("sha384", der.as_bytes(), s.to_der().as_bytes(), msg)
        }
        _ => None,
    }
}

/// Verifies `sig` over `msg` with `alg` and `key`. False when the key does not fit the algorithm, when the
/// signature has the wrong length or encoding, or when it does not verify. MACs compare in constant time.
/// RSA PKCS#1 v1.5 and ECDSA go to the host's native verifier when one is installed ([`set_offload`]).
///
/// ECDSA signatures are the fixed-size `r || s` form of RFC 7518 §3.4 (IEEE P1363), never DER.
pub fn verify(alg: Alg, key: &VerifyKey, msg: &[u8], sig: &[u8]) -> bool {
    use ed25519_dalek::Verifier as _;
    if !alg.fits(key) {
        return false;
    }
    if let Some(valid) = offloaded(alg, key, msg, sig) {
        return valid;
    }
    match (alg, key) {
        (Alg::RS256, VerifyKey::Rsa(k)) => rsa_pkcs1::<Sha256>(k, msg, sig),
        (Alg::RS384, VerifyKey::Rsa(k)) => rsa_pkcs1::<Sha384>(k, msg, sig),
        (Alg::RS512, VerifyKey::Rsa(k)) => rsa_pkcs1::<Sha512>(k, msg, sig),
        (Alg::PS256, VerifyKey::Rsa(k)) => rsa_pss::<Sha256>(k, msg, sig),
        (Alg::PS384, VerifyKey::Rsa(k)) => rsa_pss::<Sha384>(k, msg, sig),
        (Alg::PS512, VerifyKey::Rsa(k)) => rsa_pss::<Sha512>(k, msg, sig),
        (Alg::ES256, VerifyKey::P256(k)) => p256::ecdsa::Signature::from_slice(sig)
            .map(|s| k.verify(msg, &s).is_ok())
            .unwrap_or(false),
        (Alg::ES384, VerifyKey::P384(k)) => p384::ecdsa::Signature::from_slice(sig)
            .map(|s| k.verify(msg, &s).is_ok())
            .unwrap_or(false),
        (Alg::EdDSA, VerifyKey::Ed25519(k)) => k.verify(msg, sig),
        (Alg::HS256, VerifyKey::Secret(s)) => hmac_verify::<Sha256>(s.expose(), msg, sig),
        (Alg::HS384, VerifyKey::Secret(s)) => hmac_verify::<Sha384>(s.expose(), msg, sig),
        (Alg::HS512, VerifyKey::Secret(s)) => hmac_verify::<Sha512>(s.expose(), msg, sig),
        _ => false,
    }
}

fn rsa_pkcs1<D: Digest + rsa::pkcs8::AssociatedOid>(
    key: &RsaPublicKey,
    msg: &[u8],
    sig: &[u8],
) -> bool {
    key.verify(Pkcs1v15Sign::new::<D>(), &D::digest(msg), sig)
        .is_ok()
}

fn rsa_pss<D: Digest + rsa::signature::digest::DynDigest + Send + Sync + 'static>(
    key: &RsaPublicKey,
    msg: &[u8],
    sig: &[u8],
) -> bool {
    // RFC 7518 §3.5: the salt is as long as the hash output; Pss::new checks exactly that length.
    key.verify(Pss::new::<D>(), &D::digest(msg), sig).is_ok()
}

/// HMAC of `msg` under `secret`, compared to the full-length `tag` in constant time. Truncated tags are refused.
pub fn hmac_verify<D>(secret: &[u8], msg: &[u8], tag: &[u8]) -> bool
where
    D: Digest + hmac::digest::core_api::BlockSizeUser + Clone,
{
    let Ok(mut mac) = SimpleHmac::<D>::new_from_slice(secret) else {
        return false;
    };
    mac.update(msg);
    mac.verify_slice(tag).is_ok()
}

/// An HMAC-SHA256 key whose inner and outer pads are hashed once (at configure time): a MAC then costs the
/// message's blocks and one outer block, two SHA-256 compressions fewer than keying for every message.
#[derive(Clone)]
pub struct HmacSha256Key(Hmac<Sha256>);

impl HmacSha256Key {
    /// The key of `secret` (any length: a longer one is hashed first, as HMAC says).
    pub fn new(secret: &[u8]) -> Option<Self> {
        Hmac::<Sha256>::new_from_slice(secret).ok().map(Self)
    }

    /// HMAC-SHA256 of the concatenation of `parts`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.0.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for HmacSha256Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacSha256Key(_)")
    }
}

/// HMAC-SHA256 of `msg` under `secret` (for schemes that compare hex or base64 renderings themselves).
pub fn hmac_sha256(secret: &[u8], msg: &[u8]) -> [u8; 32] {
    HmacSha256Key::new(secret).map_or([0; 32], |k| k.mac(&[msg]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alg_names_round_trip_and_none_is_not_an_alg() {
        for a in Alg::ALL {
            assert_eq!(Alg::from_name(a.name()), Some(a));
        }
        assert_eq!(Alg::from_name("none"), None);
        assert_eq!(Alg::from_name("NONE"), None);
        assert_eq!(Alg::from_name("es256"), None);
        assert_eq!(Alg::from_name("ES512"), None);
    }

    /// RFC 9864 §2.2: `Ed25519` is the fully-specified name of EdDSA over Ed25519, the only EdDSA verified
    /// here; `Ed448` and other spellings are not.
    #[test]
    fn rfc9864_ed25519_names_eddsa() {
        assert_eq!(Alg::from_name("Ed25519"), Some(Alg::EdDSA));
        assert_eq!(Alg::EdDSA.name(), "EdDSA");
        for other in ["Ed448", "ed25519", "ED25519", "EdDSA25519"] {
            assert_eq!(Alg::from_name(other), None, "{other}");
        }
    }

    #[test]
    fn ed25519_tables_come_with_use_and_stay_bounded() {
        use ed25519_dalek::Signer as _;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let sig = sk.sign(b"msg").to_bytes();
        let fresh = || Ed25519Key::from(sk.verifying_key());
        let tables = || TABLES.with(Cell::get);
        let before = tables();
        let k = fresh();
        for i in 1..=TABLE_AFTER {
            assert!(!k.has_table(), "use {i}");
            assert!(k.verify(b"msg", &sig));
        }
        assert!(k.has_table() && tables() == before + 1);
        assert!(k.verify(b"msg", &sig) && !k.verify(b"msh", &sig));
        let mut tampered = sig;
        tampered[63] ^= 0x10; // s no longer canonical or no longer the signature
        assert!(!k.verify(b"msg", &tampered));
        assert!(!k.verify(b"msg", &sig[..63]));
        assert!(!k.clone().has_table(), "a copy builds its own");
        drop(k);
        assert_eq!(tables(), before);
        // At most MAX_TABLES at once; past that, keys verify without one.
        let keys: Vec<Ed25519Key> = (0..MAX_TABLES + 2).map(|_| fresh()).collect();
        for k in &keys {
            for _ in 0..TABLE_AFTER {
                assert!(k.verify(b"msg", &sig));
            }
        }
        assert_eq!(
            keys.iter().filter(|k| k.has_table()).count(),
            MAX_TABLES - before
        );
        assert!(keys.iter().all(|k| k.verify(b"msg", &sig)));
        drop(keys);
        assert_eq!(tables(), before);
    }

    #[test]
    fn hmac_alg_never_fits_a_public_key() {
        let ed = VerifyKey::ed25519(&[
            0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
            0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
            0xf7, 0x07, 0x51, 0x1a,
        ])
        .unwrap();
        for a in [Alg::HS256, Alg::HS384, Alg::HS512] {
            assert!(!a.fits(&ed));
            assert!(!verify(a, &ed, b"x", &[0u8; 32]));
        }
        assert!(Alg::EdDSA.fits(&ed));
    }

    #[test]
    fn hmac_rejects_truncated_and_accepts_full_tag() {
        let tag = hmac_sha256(b"key", b"msg");
        // The keyed form gives the same tag, over the message in pieces too.
        let key = HmacSha256Key::new(b"key").unwrap();
        assert_eq!(key.mac(&[b"msg"]), tag);
        assert_eq!(key.mac(&[b"m", b"", b"sg"]), tag);
        assert_eq!(format!("{key:?}"), "HmacSha256Key(_)");
        let key = VerifyKey::secret(b"key".to_vec()).unwrap();
        assert!(verify(Alg::HS256, &key, b"msg", &tag));
        assert!(!verify(Alg::HS256, &key, b"msg", &tag[..16]));
        assert!(!verify(Alg::HS256, &key, b"msg2", &tag));
        assert!(!verify(Alg::HS384, &key, b"msg", &tag));
    }

    #[test]
    fn secret_debug_hides_bytes() {
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "Secret(_)");
    }

    #[test]
    fn pem_errors_name_the_problem() {
        assert!(matches!(
            VerifyKey::from_pem("nothing"),
            Err(KeyError::Pem(_))
        ));
        let e = VerifyKey::from_pem("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----")
            .unwrap_err();
        assert!(e.to_string().contains("CERTIFICATE"));
    }
}
