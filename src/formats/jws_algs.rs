//! jwt-compact's [`Algorithm`] over trustgate's own signature backends ([RFC 7518 §3](https://www.rfc-editor.org/rfc/rfc7518#section-3)).
//!
//! jwt-compact parses the compact JWS ([`jwt_compact::UntrustedToken`]) and defines how an algorithm verifies
//! (`Algorithm::verify_signature`); [`crate::formats::crypto::verify`] is what verifies here, for every [`Alg`]: RS/PS
//! 256/384/512 and ES256/ES384 go to the host's native verifier (Envoy's `verify_signature`, BoringSSL) when one is
//! installed and fall back to the pure-Rust crates, Ed25519 keeps its per-key precomputed tables, HMACs compare in
//! constant time. So one [`JwsAlgorithm`] type covers the twelve algorithms, the way jwt-compact's own `Rsa` covers
//! six with a runtime scheme: the crate's built-in algorithms would bring their own key types and crypto crates,
//! lose the host offload and the Ed25519 tables, and the crate has no ES384 or PS* without `rsa`'s randomness.
//!
//! The algorithm a token is checked with is never the token's: the caller picks it from the provider's list and
//! the key ([`crate::formats::jwt`]), and [`crypto::verify`] refuses a key of another type ([`Alg::fits`]).
//!
//! Signing (the CLI's `trustgate sign jwt`) plugs a private key in through [`SignWith`]; the filter itself only
//! verifies, so its algorithms have the uninhabited [`NoSigning`] key.

use crate::formats::crypto::{self, Alg, VerifyKey};
use jwt_compact::{Algorithm, AlgorithmSignature};
use std::borrow::Cow;
use std::marker::PhantomData;

/// A private key that can sign a JWS signing input with an [`Alg`] (the CLI's keys and secrets).
pub trait SignWith {
    /// The signature of `msg` in its JWS form (ECDSA `r || s`, RFC 7518 §3.4). Empty when the key cannot sign
    /// with `alg`: such a token never verifies.
    fn sign_jws(&self, alg: Alg, msg: &[u8]) -> Vec<u8>;
}

/// No signing key: the filter's algorithms only verify.
#[derive(Debug, Clone, Copy)]
pub enum NoSigning {}

impl SignWith for NoSigning {
    fn sign_jws(&self, _: Alg, _: &[u8]) -> Vec<u8> {
        match *self {}
    }
}

/// One JWS algorithm as a jwt-compact [`Algorithm`]: verifies with a [`VerifyKey`] through [`crypto::verify`],
/// signs with `S`.
pub struct JwsAlgorithm<S = NoSigning> {
    alg: Alg,
    signer: PhantomData<fn(&S)>,
}

impl<S> JwsAlgorithm<S> {
    /// The algorithm for `alg`.
    pub const fn new(alg: Alg) -> Self {
        JwsAlgorithm {
            alg,
            signer: PhantomData,
        }
    }

    /// The [`Alg`] it implements.
    pub fn alg(&self) -> Alg {
        self.alg
    }
}

impl<S> Clone for JwsAlgorithm<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for JwsAlgorithm<S> {}

impl<S> std::fmt::Debug for JwsAlgorithm<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JwsAlgorithm").field(&self.alg).finish()
    }
}

/// A signature's bytes as the token carries them. Lengths and encodings are checked by [`crypto::verify`] for
/// the algorithm and key at hand (ECDSA `r || s` of the curve's size, Ed25519 64 bytes, full-length MACs), so
/// any byte string is accepted here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwsSignature(Vec<u8>);

impl AlgorithmSignature for JwsSignature {
    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        Ok(JwsSignature(slice.to_vec()))
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
}

impl<S: SignWith> Algorithm for JwsAlgorithm<S> {
    type SigningKey = S;
    type VerifyingKey = VerifyKey;
    type Signature = JwsSignature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(self.alg.name())
    }

    fn sign(&self, signing_key: &S, message: &[u8]) -> JwsSignature {
        JwsSignature(signing_key.sign_jws(self.alg, message))
    }

    fn verify_signature(
        &self,
        signature: &JwsSignature,
        verifying_key: &VerifyKey,
        message: &[u8],
    ) -> bool {
        crypto::verify(self.alg, verifying_key, message, &signature.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_compact::{AlgorithmExt as _, Claims, Header, UntrustedToken};

    struct Hmac(Vec<u8>);
    impl SignWith for Hmac {
        fn sign_jws(&self, alg: Alg, msg: &[u8]) -> Vec<u8> {
            assert_eq!(alg, Alg::HS256);
            crypto::hmac_sha256(&self.0, msg).to_vec()
        }
    }

    /// RFC 7515 appendix A.1: the HS256 example verifies through the trait, and a flipped bit or another
    /// algorithm of the same key type does not.
    #[test]
    fn rfc7515_appendix_a1_verifies_through_the_algorithm_trait() {
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let k = crate::formats::b64::url_decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow").unwrap();
        let key = VerifyKey::secret(k).unwrap();
        let parsed = UntrustedToken::new(token).unwrap();
        assert_eq!(parsed.algorithm(), "HS256");
        let sig = JwsSignature::try_from_slice(parsed.signature_bytes()).unwrap();
        let (signing_input, _) = token.rsplit_once('.').unwrap();
        let hs256 = JwsAlgorithm::<NoSigning>::new(Alg::HS256);
        assert!(hs256.verify_signature(&sig, &key, signing_input.as_bytes()));
        assert!(!hs256.verify_signature(&sig, &key, b"another input"));
        assert!(
            !JwsAlgorithm::<NoSigning>::new(Alg::HS384).verify_signature(
                &sig,
                &key,
                signing_input.as_bytes()
            )
        );
    }

    #[test]
    fn a_token_signed_through_the_trait_verifies_with_the_validator() {
        let secret = b"0123456789abcdef0123456789abcdef".to_vec();
        let hs256 = JwsAlgorithm::<Hmac>::new(Alg::HS256);
        let mut custom = serde_json::Map::new();
        custom.insert("sub".into(), "alice".into());
        let token = hs256
            .token(
                &Header::empty().with_key_id("k1"),
                &Claims::new(custom),
                &Hmac(secret.clone()),
            )
            .unwrap();
        let parsed = UntrustedToken::new(&token).unwrap();
        assert_eq!(parsed.header().key_id.as_deref(), Some("k1"));
        let key = VerifyKey::secret(secret).unwrap();
        let checked = hs256
            .validator::<serde_json::Map<String, serde_json::Value>>(&key)
            .validate(&parsed)
            .unwrap();
        assert_eq!(checked.claims().custom["sub"], "alice");
        let wrong = VerifyKey::secret(b"another secret".to_vec()).unwrap();
        assert!(hs256
            .validator::<serde_json::Map<String, serde_json::Value>>(&wrong)
            .validate(&parsed)
            .is_err());
    }
}
