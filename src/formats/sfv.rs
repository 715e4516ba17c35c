//! Structured Field Values for HTTP ([RFC 8941](https://www.rfc-editor.org/rfc/rfc8941)): a strict parser and
//! the canonical serializer, for the fields RFC 9421 signs (`Signature-Input`, `Signature`, `Content-Digest`,
//! and any field covered with `;sf` or `;key=`).
//!
//! Parsing follows §4.2 step by step and fails on anything the RFC says to fail on: non-ASCII input, trailing
//! characters, a trailing comma, integers over 15 digits, decimals over 12.3 digits, string escapes other than
//! `\"` and `\\`. Two choices where the RFC leaves room: a byte sequence may omit its `=` padding (§4.2.7 asks
//! parsers not to fail on that) but must have zero pad bits, and the RFC 9651 additions (dates `@…`, display
//! strings `%"…"`) are refused. A key repeated in a dictionary or in parameters overwrites the earlier value in
//! the earlier position (§4.2.2, §4.2.3.2), as an ordered map does.
//!
//! The parser is linear in the input, never recurses deeper than an inner list, and never panics. Callers bound
//! the input size.

use base64::alphabet::STANDARD as STANDARD_ALPHABET;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use std::fmt::Write as _;

/// Largest integer magnitude (15 digits, §3.3.1).
pub const MAX_INTEGER: i64 = 999_999_999_999_999;

/// Most members one list, dictionary, inner list or parameter set may have (repeated keys count each time).
/// Keeps duplicate-key handling (a linear scan) cheap on hostile input.
pub const MAX_MEMBERS: usize = 1024;

/// A bare item (§3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BareItem {
    /// An integer in `-999_999_999_999_999..=999_999_999_999_999`.
    Integer(i64),
    /// A decimal, held exactly as a count of thousandths (at most 12 integer and 3 fractional digits).
    Decimal(i64),
    /// A string of printable ASCII (`0x20..=0x7e`), unescaped.
    String(String),
    /// A token (`ALPHA / "*"` then `tchar / ":" / "/"`).
    Token(String),
    /// A byte sequence (`:base64:`), decoded.
    ByteSeq(Vec<u8>),
    /// A boolean (`?0`, `?1`).
    Boolean(bool),
}

/// Parameters (§3.1.2): ordered `(key, value)` pairs, keys unique.
pub type Parameters = Vec<(String, BareItem)>;

/// An item with its parameters (§3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The value.
    pub bare: BareItem,
    /// Its parameters, in order.
    pub params: Parameters,
}

/// An inner list with its parameters (§3.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerList {
    /// The members, in order.
    pub items: Vec<Item>,
    /// The list's own parameters, in order.
    pub params: Parameters,
}

/// A member of a list or dictionary: an item or an inner list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Item(Item),
    InnerList(InnerList),
}

/// A list (§3.1).
pub type List = Vec<Entry>;

/// A dictionary (§3.2): ordered `(key, member)` pairs, keys unique.
pub type Dictionary = Vec<(String, Entry)>;

/// Why a field value is not a structured field of the asked type. Carries no input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError;

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a valid structured field value")
    }
}

impl std::error::Error for ParseError {}

type Result<T> = std::result::Result<T, ParseError>;

/// Padding optional, pad bits must be zero (see the module comment).
const BYTESEQ_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &STANDARD_ALPHABET,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(false),
);

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Self> {
        if !input.is_ascii() {
            return Err(ParseError);
        }
        Ok(Parser {
            input: input.as_bytes(),
            pos: 0,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn skip_sp(&mut self) {
        while self.eat(b' ') {}
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// §4.2 steps 2 and 5–6: leading SP, then after the value only SP until the end.
    fn finish(&mut self) -> Result<()> {
        self.skip_sp();
        if self.at_end() {
            Ok(())
        } else {
            Err(ParseError)
        }
    }

    /// §4.2.1 (list) and §4.2.2 (dictionary) share the member loop.
    fn members(&mut self, mut one: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        let mut count = 0usize;
        while !self.at_end() {
            count += 1;
            if count > MAX_MEMBERS {
                return Err(ParseError);
            }
            one(self)?;
            self.skip_ows();
            if self.at_end() {
                return Ok(());
            }
            if !self.eat(b',') {
                return Err(ParseError);
            }
            self.skip_ows();
            if self.at_end() {
                return Err(ParseError); // trailing comma
            }
        }
        Ok(())
    }

    fn list(&mut self) -> Result<List> {
        let mut out = Vec::new();
        self.members(|p| {
            out.push(p.item_or_inner_list()?);
            Ok(())
        })?;
        Ok(out)
    }

    fn dictionary(&mut self) -> Result<Dictionary> {
        let mut out: Dictionary = Vec::new();
        self.members(|p| {
            let key = p.key()?;
            let member = if p.eat(b'=') {
                p.item_or_inner_list()?
            } else {
                Entry::Item(Item {
                    bare: BareItem::Boolean(true),
                    params: p.parameters()?,
                })
            };
            insert(&mut out, key, member);
            Ok(())
        })?;
        Ok(out)
    }

    fn item_or_inner_list(&mut self) -> Result<Entry> {
        if self.peek() == Some(b'(') {
            self.inner_list().map(Entry::InnerList)
        } else {
            self.item().map(Entry::Item)
        }
    }

    /// §4.2.1.2.
    fn inner_list(&mut self) -> Result<InnerList> {
        if !self.eat(b'(') {
            return Err(ParseError);
        }
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            if self.eat(b')') {
                let params = self.parameters()?;
                return Ok(InnerList { items, params });
            }
            if items.len() >= MAX_MEMBERS {
                return Err(ParseError);
            }
            items.push(self.item()?);
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return Err(ParseError);
            }
        }
    }

    /// §4.2.3.
    fn item(&mut self) -> Result<Item> {
        let bare = self.bare_item()?;
        let params = self.parameters()?;
        Ok(Item { bare, params })
    }

    /// §4.2.3.1.
    fn bare_item(&mut self) -> Result<BareItem> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string().map(BareItem::String),
            Some(b'*' | b'A'..=b'Z' | b'a'..=b'z') => self.token().map(BareItem::Token),
            Some(b':') => self.byte_seq().map(BareItem::ByteSeq),
            Some(b'?') => self.boolean().map(BareItem::Boolean),
            _ => Err(ParseError),
        }
    }

    /// §4.2.3.2.
    fn parameters(&mut self) -> Result<Parameters> {
        let mut out: Parameters = Vec::new();
        let mut count = 0usize;
        while self.eat(b';') {
            count += 1;
            if count > MAX_MEMBERS {
                return Err(ParseError);
            }
            self.skip_sp();
            let key = self.key()?;
            let value = if self.eat(b'=') {
                self.bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            insert(&mut out, key, value);
        }
        Ok(out)
    }

    /// §4.2.3.3.
    fn key(&mut self) -> Result<String> {
        if !matches!(self.peek(), Some(b'a'..=b'z' | b'*')) {
            return Err(ParseError);
        }
        let mut key = String::new();
        while let Some(c @ (b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')) = self.peek() {
            key.push(char::from(c));
            self.pos += 1;
        }
        Ok(key)
    }

    /// §4.2.4.
    fn number(&mut self) -> Result<BareItem> {
        let negative = self.eat(b'-');
        let sign = if negative { -1 } else { 1 };
        let mut int: i64 = 0;
        let mut int_digits = 0usize;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            self.pos += 1;
            int_digits += 1;
            if int_digits > 15 {
                return Err(ParseError);
            }
            int = int * 10 + i64::from(c - b'0');
        }
        if int_digits == 0 {
            return Err(ParseError);
        }
        if !self.eat(b'.') {
            return Ok(BareItem::Integer(sign * int));
        }
        if int_digits > 12 {
            return Err(ParseError);
        }
        let mut frac: i64 = 0;
        let mut frac_digits = 0u32;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            self.pos += 1;
            frac_digits += 1;
            if frac_digits > 3 {
                return Err(ParseError);
            }
            frac = frac * 10 + i64::from(c - b'0');
        }
        if frac_digits == 0 {
            return Err(ParseError);
        }
        let thousandths = int * 1000 + frac * 10_i64.pow(3 - frac_digits);
        Ok(BareItem::Decimal(sign * thousandths))
    }

    /// §4.2.5.
    fn string(&mut self) -> Result<String> {
        if !self.eat(b'"') {
            return Err(ParseError);
        }
        let mut out = String::new();
        loop {
            match self.bump().ok_or(ParseError)? {
                b'\\' => match self.bump() {
                    Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                    _ => return Err(ParseError),
                },
                b'"' => return Ok(out),
                c @ 0x20..=0x7e => out.push(char::from(c)),
                _ => return Err(ParseError),
            }
        }
    }

    /// §4.2.6.
    fn token(&mut self) -> Result<String> {
        if !matches!(self.peek(), Some(b'*' | b'A'..=b'Z' | b'a'..=b'z')) {
            return Err(ParseError);
        }
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if !(is_tchar(c) || c == b':' || c == b'/') {
                break;
            }
            out.push(char::from(c));
            self.pos += 1;
        }
        Ok(out)
    }

    /// §4.2.7.
    fn byte_seq(&mut self) -> Result<Vec<u8>> {
        if !self.eat(b':') {
            return Err(ParseError);
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b':' {
                break;
            }
            if !(c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=') {
                return Err(ParseError);
            }
            self.pos += 1;
        }
        let encoded = self.input.get(start..self.pos).ok_or(ParseError)?;
        if !self.eat(b':') {
            return Err(ParseError);
        }
        BYTESEQ_ENGINE.decode(encoded).map_err(|_| ParseError)
    }

    /// §4.2.8.
    fn boolean(&mut self) -> Result<bool> {
        if !self.eat(b'?') {
            return Err(ParseError);
        }
        match self.bump() {
            Some(b'1') => Ok(true),
            Some(b'0') => Ok(false),
            _ => Err(ParseError),
        }
    }
}

/// Inserts or overwrites in place (ordered-map semantics).
fn insert<V>(map: &mut Vec<(String, V)>, key: String, value: V) {
    if let Some(slot) = map.iter_mut().find(|(k, _)| *k == key) {
        slot.1 = value;
    } else {
        map.push((key, value));
    }
}

/// `tchar` of RFC 9110 §5.6.2.
pub fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Parses a field value as a dictionary (§4.2, type "dictionary"). The empty value is the empty dictionary.
pub fn parse_dictionary(input: &str) -> Result<Dictionary> {
    let mut p = Parser::new(input)?;
    p.skip_sp();
    let d = p.dictionary()?;
    p.finish()?;
    Ok(d)
}

/// Parses a field value as a list (§4.2, type "list"). The empty value is the empty list.
pub fn parse_list(input: &str) -> Result<List> {
    let mut p = Parser::new(input)?;
    p.skip_sp();
    let l = p.list()?;
    p.finish()?;
    Ok(l)
}

/// Parses a field value as an item (§4.2, type "item").
pub fn parse_item(input: &str) -> Result<Item> {
    let mut p = Parser::new(input)?;
    p.skip_sp();
    let i = p.item()?;
    p.finish()?;
    Ok(i)
}

/// Looks a key up in a dictionary or parameters.
pub fn get<'m, V>(map: &'m [(String, V)], key: &str) -> Option<&'m V> {
    map.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Appends the serialization of a bare item (§4.1.3.1).
pub fn write_bare_item(out: &mut String, item: &BareItem) {
    match item {
        BareItem::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        BareItem::Decimal(t) => {
            if *t < 0 {
                out.push('-');
            }
            let a = t.unsigned_abs();
            let _ = write!(out, "{}.", a / 1000);
            let frac = format!("{:03}", a % 1000);
            let trimmed = frac.trim_end_matches('0');
            out.push_str(if trimmed.is_empty() { "0" } else { trimmed });
        }
        BareItem::String(s) => {
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        BareItem::Token(t) => out.push_str(t),
        BareItem::ByteSeq(b) => {
            out.push(':');
            out.push_str(&STANDARD.encode(b));
            out.push(':');
        }
        BareItem::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
    }
}

/// Appends the serialization of parameters (§4.1.1.2); a `true` value is written as the bare key.
pub fn write_params(out: &mut String, params: &Parameters) {
    for (k, v) in params {
        out.push(';');
        out.push_str(k);
        if *v != BareItem::Boolean(true) {
            out.push('=');
            write_bare_item(out, v);
        }
    }
}

/// Appends the serialization of an item with its parameters (§4.1.3).
pub fn write_item(out: &mut String, item: &Item) {
    write_bare_item(out, &item.bare);
    write_params(out, &item.params);
}

/// Appends the serialization of an inner list with its parameters (§4.1.1.1).
pub fn write_inner_list(out: &mut String, list: &InnerList) {
    out.push('(');
    for (i, item) in list.items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_item(out, item);
    }
    out.push(')');
    write_params(out, &list.params);
}

/// Appends the serialization of a list or dictionary member value.
pub fn write_entry(out: &mut String, entry: &Entry) {
    match entry {
        Entry::Item(i) => write_item(out, i),
        Entry::InnerList(l) => write_inner_list(out, l),
    }
}

/// The serialization of a list (§4.1.1).
pub fn serialize_list(list: &List) -> String {
    let mut out = String::new();
    for (i, e) in list.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_entry(&mut out, e);
    }
    out
}

/// The serialization of a dictionary (§4.1.2); a member whose value is `true` is written as its key and
/// parameters only.
pub fn serialize_dictionary(dict: &Dictionary) -> String {
    let mut out = String::new();
    for (i, (k, e)) in dict.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        match e {
            Entry::Item(Item {
                bare: BareItem::Boolean(true),
                params,
            }) => write_params(&mut out, params),
            other => {
                out.push('=');
                write_entry(&mut out, other);
            }
        }
    }
    out
}

/// The serialization of an item (§4.1.3).
pub fn serialize_item(item: &Item) -> String {
    let mut out = String::new();
    write_item(&mut out, item);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict_roundtrip(input: &str) -> String {
        serialize_dictionary(&parse_dictionary(input).unwrap())
    }

    #[test]
    fn parses_signature_input_as_in_rfc9421() {
        let d = parse_dictionary(
            r#"sig1=("@method" "@authority" "@query-param";name="Pet");created=1618884473;keyid="test-key-rsa-pss";tag="header-example""#,
        )
        .unwrap();
        assert_eq!(d.len(), 1);
        let (k, Entry::InnerList(l)) = &d[0] else {
            panic!("inner list expected")
        };
        assert_eq!(k, "sig1");
        assert_eq!(l.items.len(), 3);
        assert_eq!(l.items[2].bare, BareItem::String("@query-param".into()));
        assert_eq!(
            l.items[2].params,
            vec![("name".into(), BareItem::String("Pet".into()))]
        );
        assert_eq!(
            get(&l.params, "created"),
            Some(&BareItem::Integer(1_618_884_473))
        );
        assert_eq!(
            get(&l.params, "keyid"),
            Some(&BareItem::String("test-key-rsa-pss".into()))
        );
    }

    #[test]
    fn round_trips_the_rfc8941_examples() {
        for (input, canonical) in [
            ("a=1, b=2;x=1;y=2, c=(a b c)", "a=1, b=2;x=1;y=2, c=(a b c)"),
            ("a=?1, b, c;foo=bar", "a, b, c;foo=bar"),
            ("  a=1 ,\tb=2  ", "a=1, b=2"),
            ("a=1\t", "a=1"),
            (
                "rating=1.5, feelings=(joy sadness)",
                "rating=1.5, feelings=(joy sadness)",
            ),
            ("d=-1.250, e=0.0, f=12.10", "d=-1.25, e=0.0, f=12.1"),
            ("x=( 1  2 );p", "x=(1 2);p"),
            ("x=()", "x=()"),
            (r#"s="a\"b\\c""#, r#"s="a\"b\\c""#),
            ("b=:aGVsbG8=:", "b=:aGVsbG8=:"),
            ("b=:aGVsbG8:", "b=:aGVsbG8=:"),
            ("b=::", "b=::"),
            ("a=1, a=2, b=3", "a=2, b=3"),
            ("t=*foo/bar:baz", "t=*foo/bar:baz"),
            ("", ""),
        ] {
            assert_eq!(dict_roundtrip(input), canonical, "{input:?}");
        }
        assert_eq!(
            serialize_list(&parse_list("sugar, tea, rum").unwrap()),
            "sugar, tea, rum"
        );
        assert_eq!(
            serialize_list(&parse_list(r#"("foo" "bar");lvl=5, ("baz");lvl=1"#).unwrap()),
            r#"("foo" "bar");lvl=5, ("baz");lvl=1"#
        );
        assert_eq!(serialize_item(&parse_item(" 42;a=?0 ").unwrap()), "42;a=?0");
    }

    #[test]
    fn integer_and_decimal_limits() {
        assert_eq!(
            parse_item("999999999999999").unwrap().bare,
            BareItem::Integer(MAX_INTEGER)
        );
        assert_eq!(
            parse_item("-999999999999999").unwrap().bare,
            BareItem::Integer(-MAX_INTEGER)
        );
        assert!(parse_item("1000000000000000").is_err());
        assert!(parse_item("123456789012.123").is_ok());
        assert!(parse_item("1234567890123.1").is_err());
        assert!(parse_item("1.1234").is_err());
        assert!(parse_item("1.").is_err());
        assert!(parse_item("-").is_err());
        assert!(parse_item("--1").is_err());
        assert!(parse_item("-a").is_err());
    }

    #[test]
    fn refuses_hostile_and_malformed_inputs() {
        for bad in [
            "a=1,",
            "a=1, ",
            ",a=1",
            "a=1,,b=2",
            "A=1",
            "1a=1",
            "a=1 b=2",
            "a=(1 2",
            "a=(1 2)x",
            "a=(1(2))",
            "a=((1))",
            "a=\"unterminated",
            "a=\"bad\\escape\"",
            "a=\"tab\there\"",
            "a=\"caf\u{e9}\"",
            "a=:not base64!:",
            "a=:aGVsbG8=",
            "a=:aGVsbG9=:", // non-zero pad bits
            "a=?2",
            "a=?",
            "a=@1659578233",
            "a=%\"display\"",
            "a=;b",
            "a=1;",
            "a=1;B=2",
            "\ta=1",
            "a=1\r\n",
            "a=\u{0}",
        ] {
            assert!(parse_dictionary(bad).is_err(), "{bad:?}");
        }
        assert!(parse_item("").is_err());
        assert!(parse_item("1, 2").is_err());
        assert!(parse_list("a=1").is_err());
    }

    #[test]
    fn deep_or_long_inputs_do_not_blow_up() {
        let many = "a=1, ".repeat(MAX_MEMBERS - 1) + "b=2";
        assert_eq!(parse_dictionary(&many).unwrap().len(), 2);
        let too_many = "a=1, ".repeat(MAX_MEMBERS) + "b=2";
        assert!(parse_dictionary(&too_many).is_err());
        let parens = "(".repeat(10_000);
        assert!(parse_dictionary(&format!("a={parens}")).is_err());
        let params = ";a".repeat(MAX_MEMBERS);
        assert!(parse_item(&format!("1{params}")).is_ok());
        assert!(parse_item(&format!("1{params};a")).is_err());
        let items = " 1".repeat(MAX_MEMBERS + 1);
        assert!(parse_list(&format!("({items})")).is_err());
        assert!(parse_list(&format!("({})", " 1".repeat(MAX_MEMBERS))).is_ok());
        let long = format!("a=\"{}\"", "x".repeat(100_000));
        assert!(parse_dictionary(&long).is_ok());
    }
}
