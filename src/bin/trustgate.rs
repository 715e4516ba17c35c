//! The native `trustgate` command: checks a filter config without Envoy, with the errors Envoy would log.

use std::process::ExitCode;

const USAGE: &str = "usage: trustgate check-config FILE

  check-config FILE   compile a filter config (JSON) exactly as the filter's on_configure does;
                      prints the JSON path and the expected value of the first error";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["-h" | "--help" | "help"] | ["check-config", "-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        ["check-config", file] => check_config(file),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn check_config(file: &str) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{file}: cannot read: {e}");
            return ExitCode::from(2);
        }
    };
    match trustgate::config::compile(&bytes) {
        Ok(p) => {
            println!(
                "{file}: ok ({} providers, {} rules, strips {})",
                p.providers.len(),
                p.rules.len(),
                p.strip.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{file}: {e}");
            ExitCode::FAILURE
        }
    }
}
