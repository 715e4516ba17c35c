//! Path normalization: idempotent, and its output never holds dot segments or repeated slashes; the other
//! upstream readings (`//` before `..`, `;params` dropped) hold the same shape, and exist only when the path
//! has `//` or `;`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trustgate::policy::rules::{normalize_path, other_readings};

fn well_formed(norm: &str) {
    assert!(norm.starts_with('/'));
    assert!(!norm.contains("//"), "{norm}");
    assert!(!norm.contains("/./") && !norm.contains("/../"), "{norm}");
    assert!(!norm.ends_with("/.") && !norm.ends_with("/.."), "{norm}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(norm) = normalize_path(raw) {
        let readings = other_readings(raw, &norm);
        well_formed(&norm);
        assert_eq!(normalize_path(&norm).as_deref(), Ok(norm.as_str()));
        if let Ok(others) = &readings {
            for r in others {
                well_formed(r);
                assert_ne!(r, &norm);
            }
            let path = raw.split(['?', '#']).next().unwrap_or_default();
            if !path.contains("//") && !path.contains(';') {
                assert!(others.is_empty(), "{raw:?}: {others:?}");
            }
        }
    }
});
