//! Template parsing and rendering: no panic, and a rendered value never holds a control character.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::borrow::Cow;
use trustgate::policy::template::{Facts, Root, Template};

struct Claims(serde_json::Value);
impl Facts for Claims {
    fn lookup(&self, _root: Root, path: &[String]) -> Option<Cow<'_, serde_json::Value>> {
        trustgate::policy::template::walk(&self.0, path).map(Cow::Borrowed)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (tpl, claims) = text.split_once('\u{1}').unwrap_or((text, "{}"));
    let Ok(t) = Template::parse(tpl) else { return };
    let claims = serde_json::from_str(claims).unwrap_or(serde_json::Value::Null);
    if let Ok(v) = t.render(&Claims(claims)) {
        assert!(!v.chars().any(char::is_control));
    }
});
