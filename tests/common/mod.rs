//! Helpers shared by the vector tests: where `../shared/vectors/` is, and hex decoding.
//!
//! The vectors live beside the repository (CI clones `shared/` next to it). A missing directory is a test
//! failure with a message saying where it was looked for, never a skip.

#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/vectors` relative to the crate root.
pub fn vectors_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    assert!(
        dir.is_dir(),
        "vector directory {} is missing: clone the `shared` repository beside this one \
         (the vector tests never skip)",
        dir.display()
    );
    dir
}

/// The text of `vectors/<rel>`; fails the test, naming the path, when it cannot be read.
pub fn read_vector(rel: &str) -> String {
    let path = vectors_dir().join(rel);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read vector file {}: {e}", path.display()))
}

/// Lowercase or uppercase hex to bytes; fails the test on anything else.
pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd-length hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex {s:?}")))
        .collect()
}
