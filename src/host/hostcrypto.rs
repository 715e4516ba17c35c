//! Envoy's `verify_signature` foreign function (native BoringSSL) as the [`crate::formats::crypto::Offload`] for RSA
//! PKCS#1 v1.5 and ECDSA, installed only after a start-up probe shows it verifies correctly (a valid
//! signature accepted, a tampered one refused). Hosts without it keep the pure-Rust path.
//!
//! Wire format (protobuf): `VerifySignatureArguments { string hash_function = 1; bytes public_key = 2 (DER
//! SubjectPublicKeyInfo); bytes signature = 3; bytes text = 4; }` → `VerifySignatureResult { bool result = 1;
//! string error = 2; }`.

use crate::formats::b64;
use proxy_wasm::hostcalls;

/// Public SubjectPublicKeyInfo (RSA 2048) of the start-up probe; its private half was discarded.
pub const PROBE_KEY_DER_B64: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAjc12gEgyl84qYUqbo5isrHP6h64suutXdzK07VPph/B0pe6Bg8ThzSPRB0VOz5J1+oaImDDuxAU52HpoFGb81U591X4+nJd5V2kIKcXADocFsaRWmlc5wkraTx1m3dlhIJ27WekPAzbpLexjuEb+jLx1DVKUJDDlxqR3copi7hot9Ey86ufWo89f7bcWAyasjs+orc1EIRlXrP8Y2t6cV2uqgOV6KDvgWOB3jUhQcn76UNy1V701BjaI9Sej1uJjsRIekKdhMEjZldZ+TXARaT30zgDQ2dJ5nvq7gKLdJ9yT+88gQ7CLCZ7FLnLXCZ2ywM4GBkyhtCgvkuF1/TgdrQIDAQAB";
/// PKCS#1 v1.5 SHA-256 signature of [`PROBE_MESSAGE`] by that key.
pub const PROBE_SIG_B64: &str = "PNDC1YlPBTfvniiY9o6tw+fZv/ZrgtX+L4hg4D/qBRneyKQb7G/aLpFGiL6jyBFQarAPT5B1wkwaq7FgF5RCGZrlUcTWE0S5ijP8H4Im+HuLkxb/gdKmC2u8O8Wvlj8YisG+R8JVR6bH/qzDPwLPcfnL8MrqSbU+1ege37I86gedc7cDftZff1LfgpH2nMxS4Ngmq+vZ1MGJ/mD26klsmh3vUUfEsvJoIc6CvzFix4LRTHVBzfoKpDZLZvGaAuTSHd4Mp6p1ivyqwSWYA7iBHeEzNqhNX11r8KC5+zI66q/zI6LwKSAuR8ldRHkbgaU6IpBEdOykObmD/npDQTh9Xw==";
/// The probe message.
pub const PROBE_MESSAGE: &[u8] = b"trustgate host crypto probe";
/// Public SubjectPublicKeyInfo (P-256) of the start-up probe; its private half was discarded.
pub const PROBE_EC_KEY_DER_B64: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeYCfUuqcjUvoIEY7WxYLX9Gs6jmPbjRl78Ehl7lZ5PESn7f2SuhaCpDSH6VWTCxlscs+aRHAbjfbpPzG3UZg2w==";
/// DER ECDSA SHA-256 signature of [`PROBE_MESSAGE`] by that key.
pub const PROBE_EC_SIG_B64: &str = "MEQCIEt6yn8cIL3of74A3HuXoaid0dky8yTl1m7FI5yAAvVZAiBLAvD013xSJohop/HwiAbeaQZeFTSwWJHMPf5I2bXJ1A==";

fn varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push(number << 3 | 2);
    varint(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Reads `result` (field 1, varint) from a `VerifySignatureResult`; other fields are skipped.
fn decode_result(msg: &[u8]) -> Option<bool> {
    let mut i = 0;
    let mut result = false;
    let read_varint = |i: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *msg.get(*i)?;
            *i += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    };
    while i < msg.len() {
        let tag = read_varint(&mut i)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => result = read_varint(&mut i)? != 0,
            (_, 0) => {
                read_varint(&mut i)?;
            }
            (_, 2) => {
                let len = usize::try_from(read_varint(&mut i)?).ok()?;
                i = i.checked_add(len).filter(|end| *end <= msg.len())?;
            }
            _ => return None,
        }
    }
    Some(result)
}

/// The host verifier: `Some(valid)`, or `None` when the call failed (the pure-Rust path then decides).
pub fn host_verify(hash: &str, spki_der: &[u8], sig: &[u8], msg: &[u8]) -> Option<bool> {
    let mut args = Vec::with_capacity(spki_der.len() + sig.len() + msg.len() + 24);
    field(&mut args, 1, hash.as_bytes());
    field(&mut args, 2, spki_der);
    field(&mut args, 3, sig);
    field(&mut args, 4, msg);
    match hostcalls::call_foreign_function("verify_signature", Some(&args)) {
        Ok(Some(out)) => decode_result(&out),
        // An empty message is the default: result = false.
        Ok(None) => Some(false),
        Err(_) => None,
    }
}

/// True when the host verifies the probe signatures right: valid accepted, tampered refused, for RSA and ECDSA.
pub fn probe() -> bool {
    let (Some(rk), Some(rs), Some(ek), Some(es)) = (
        b64::std_decode(PROBE_KEY_DER_B64),
        b64::std_decode(PROBE_SIG_B64),
        b64::std_decode(PROBE_EC_KEY_DER_B64),
        b64::std_decode(PROBE_EC_SIG_B64),
    ) else {
        return false;
    };
    let tampered = b"trustgate host crypto probe!";
    host_verify("sha256", &rk, &rs, PROBE_MESSAGE) == Some(true)
        && host_verify("sha256", &rk, &rs, tampered) == Some(false)
        && host_verify("sha256", &ek, &es, PROBE_MESSAGE) == Some(true)
        && host_verify("sha256", &ek, &es, tampered) == Some(false)
}
