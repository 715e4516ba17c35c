//! Every example config in `filter-config/` compiles, and the CLI reports errors the way the filter does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;

fn examples() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("filter-config");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.ends_with("schema.json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_compiles() {
    let files = examples();
    assert!(
        files.len() >= 2,
        "expected demo.json and example.json, found {files:?}"
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        // Examples name secrets as {"env": NAME}: any value stands in for them here.
        let env = |_: &str| Some("TEST-ONLY-value".to_owned());
        if let Err(e) = trustgate::policy::config::compile_with_env(&bytes, &env) {
            panic!("{}: {e}", f.display());
        }
    }
}

#[test]
fn check_config_cli_prints_the_json_path() {
    let bin = env!("CARGO_BIN_EXE_trustgate");
    let ok = Command::new(bin)
        .args(["check-config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("filter-config/demo.json"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok (1 providers, 3 rules"));

    let dir = std::env::temp_dir().join(format!("trustgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"providers":{"corp":{"jwt":{"keys":{"jwks":{"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]}}}}},
            "rules":[{"require":"corp"}]}"#,
    )
    .unwrap();
    let out = Command::new(bin)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("providers.corp.jwt.keys.jwks.keys[0].crv: unsupported curve \"P-521\", expected P-256 or P-384"),
        "{err}"
    );
    let usage = Command::new(bin).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
