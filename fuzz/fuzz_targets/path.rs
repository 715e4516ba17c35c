//! Path normalization: idempotent, and its output never holds dot segments or repeated slashes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(norm) = trustgate::rules::normalize_path(raw) {
        assert!(norm.starts_with('/'));
        assert!(!norm.contains("//"), "{norm}");
        assert!(!norm.contains("/./") && !norm.contains("/../"), "{norm}");
        assert_eq!(trustgate::rules::normalize_path(&norm).as_deref(), Ok(norm.as_str()));
    }
});
