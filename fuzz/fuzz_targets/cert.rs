//! The client-certificate subject (RFC 4514) parser and the CN glob: no panic; a CN that parses never holds an
//! unescaped separator's effect (re-parsing "CN=<escaped cn>" gives the same CN); globs terminate.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trustgate::formats::cert::{parse_dn, subject_cn, Glob};

fn escape(v: &str) -> String {
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            ' ' | '#' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_dn(text);
    if let Ok(Some(cn)) = subject_cn(text) {
        let again = subject_cn(&format!("CN={},O=x", escape(&cn)));
        assert_eq!(again, Ok(Some(cn.clone())), "{text:?}");
    }
    if let Some((pattern, subject)) = text.split_once('\n') {
        let _ = Glob::new(pattern).matches(subject);
    }
});
