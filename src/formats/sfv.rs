//! Structured Field Values for HTTP ([RFC 8941](https://www.rfc-editor.org/rfc/rfc8941)) for the fields RFC 9421
//! signs (`Signature-Input`, `Signature`, `Content-Digest`, and any field covered with `;sf` or `;key=`): the
//! [`sfv`](https://docs.rs/sfv) crate parses (in its RFC 8941 mode, through the visitors below); this module keeps
//! the small ordered types [`crate::formats::httpsig`] reads, the limits, and the canonical serializer (§4.1).
//!
//! What a value must be is what the crate's parser checks, §4.2 step by step: ASCII only, no trailing
//! characters, no trailing comma, integers of at most 15 digits, decimals of at most 12.3 digits, string escapes
//! `\"` and `\\` only; the RFC 9651 additions (dates `@…`, display strings `%"…"`) are refused. A byte sequence
//! may omit its `=` padding (§4.2.7). A key repeated in a dictionary or in parameters overwrites the earlier
//! value in the earlier position (§4.2.2, §4.2.3.2), as an ordered map does.
//!
//! Where the crate differs from the hand-written parser it replaced, this module keeps the former behaviour:
//! - **Pad bits.** The crate accepts a byte sequence whose last character has non-zero pad bits
//!   (`:aGVsbG9=:` decodes as `:aGVsbG8=:`, as §4.2.7 allows); we refuse it, so a signature or a digest has one
//!   spelling: after the crate accepts a value, `byte_sequences_are_canonical` re-decodes each of its byte
//!   sequences strictly.
//! - **Size.** The crate has no limit on members; the visitors refuse more than [`MAX_MEMBERS`] members in one
//!   list, dictionary, inner list or parameter set (repeated keys count each time), which keeps the
//!   duplicate-key scan linear in practice.
//! - **Serialization** stays here: the crate's serializers take only its validated key, string and token types,
//!   so going through them would make every serialization fallible for the values the CLI builds, with a
//!   conversion layer longer than this serializer. `fuzz/fuzz_targets/httpsig.rs` checks that what this
//!   serializer writes, the crate parses back to the same value.
//!
//! Neither the crate nor this module recurses deeper than an inner list or panics on input (fuzzed). Callers
//! bound the input size.
//!
//! # Figures of the move to the crate (2026-12-02, sfv 0.15.0)
//!
//! - `.wasm` (wasm32-wasip1, release): 1,303,251 → 1,311,204 bytes (+7,953, +0.6 %; the limit, 1.5 MiB, is
//!   1,572,864). Serializing through the crate as well measured 1,324,526 (+21,275) and was not kept.
//! - RFC 9421 vectors (`tests/vectors_rfc9421.rs`: Appendix B.2 request signatures, §2.4, §4.3, B.4, and the 9
//!   requests signed by the http-message-signatures library): all verify, signature bases unchanged; every
//!   native test and `tests/e2e/test_http_signature.py` (73) pass.
//! - Fuzz (2 cores shared), no finding: `httpsig` 421,994 executions in 271 s; a differential target (not
//!   kept) that parses every input and each of its lines as dictionary, list and item with this module and with
//!   the hand-written parser it replaced, and wants the same value or the same refusal: 749,549 executions in
//!   512 s (two thirds with an RFC 8941 token dictionary), no difference.
//! - This file: 713 → 665 lines: the parser, 345 lines, became 225 (entry points, pad-bit scan, visitors).
//! - Version: 0.16.0, the newest, is the same parser rewritten in edition 2024 and declares rust-version 1.95;
//!   ours is 1.85, hence 0.15. Added dependencies: `sfv`, `ref-cast` (and the `ref-cast-impl` proc macro at build
//!   time); `base64` 0.22 was already ours; default features off, so no `indexmap`.

use base64::alphabet::STANDARD as STANDARD_ALPHABET;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use sfv::visitor::{
    DictionaryVisitor, EntryVisitor, InnerListVisitor, ItemVisitor, ListVisitor, ParameterVisitor,
};
use sfv::{BareItemFromInput, KeyRef, Parser, Version};
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

impl From<sfv::Error> for ParseError {
    fn from(_: sfv::Error) -> Self {
        ParseError
    }
}

type Result<T> = std::result::Result<T, ParseError>;

/// Parses a field value as a dictionary (§4.2, type "dictionary"). The empty value is the empty dictionary.
pub fn parse_dictionary(input: &str) -> Result<Dictionary> {
    let dict = parser(input).parse_dictionary_with_visitor(Members(Vec::new(), 0))?;
    canonical(input, dict)
}

/// Parses a field value as a list (§4.2, type "list"). The empty value is the empty list.
pub fn parse_list(input: &str) -> Result<List> {
    let list = parser(input).parse_list_with_visitor(Members(Vec::new(), 0))?;
    canonical(input, list)
}

/// Parses a field value as an item (§4.2, type "item").
pub fn parse_item(input: &str) -> Result<Item> {
    let mut item = placeholder();
    parser(input).parse_item_with_visitor(ItemSlot(&mut item))?;
    canonical(input, item)
}

fn parser(input: &str) -> Parser<'_> {
    Parser::new(input).with_version(Version::Rfc8941)
}

fn canonical<T>(input: &str, value: T) -> Result<T> {
    if byte_sequences_are_canonical(input) {
        Ok(value)
    } else {
        Err(ParseError)
    }
}

/// Padding optional, pad bits must be zero (see the module comment).
const BYTESEQ_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &STANDARD_ALPHABET,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(false),
);

/// True when every byte sequence of `input`, a value the crate parsed, decodes with zero pad bits. Outside
/// strings (skipped with their escapes), a `:` after a separator (start, SP, HTAB, `=`, `(`, `,`) opens a byte
/// sequence; any other `:` of a valid value is inside a token. False also for some values the crate refuses.
fn byte_sequences_are_canonical(input: &str) -> bool {
    let bytes = input.as_bytes();
    let mut prev = b' ';
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        i += 1;
        match c {
            b'"' => {
                while let Some(&s) = bytes.get(i) {
                    i += if s == b'\\' { 2 } else { 1 };
                    if s == b'"' {
                        break;
                    }
                }
            }
            b':' if matches!(prev, b' ' | b'\t' | b'=' | b'(' | b',') => {
                let rest = bytes.get(i..).unwrap_or_default();
                let len = rest.iter().position(|&b| b == b':').unwrap_or(rest.len());
                if BYTESEQ_ENGINE
                    .decode(rest.get(..len).unwrap_or_default())
                    .is_err()
                {
                    return false;
                }
                i += len + 1;
            }
            _ => {}
        }
        prev = c;
    }
    true
}

/// A value being filled in while parsing: the first `bare_item` call overwrites it.
fn placeholder() -> Item {
    Item {
        bare: BareItem::Boolean(true),
        params: Vec::new(),
    }
}

fn bare(item: BareItemFromInput<'_>) -> Result<BareItem> {
    Ok(match item {
        BareItemFromInput::Integer(i) => BareItem::Integer(i64::from(i)),
        BareItemFromInput::Decimal(d) => BareItem::Decimal(i64::from(d.as_integer_scaled_1000())),
        BareItemFromInput::String(s) => BareItem::String(s.as_str().to_owned()),
        BareItemFromInput::Token(t) => BareItem::Token(t.as_str().to_owned()),
        BareItemFromInput::ByteSequence(b) => BareItem::ByteSeq(b),
        BareItemFromInput::Boolean(b) => BareItem::Boolean(b),
        // Never produced in RFC 8941 mode.
        BareItemFromInput::Date(_) | BareItemFromInput::DisplayString(_) => return Err(ParseError),
    })
}

/// Inserts or overwrites in place (ordered-map semantics); the slot of `key`.
fn upsert<'m, V>(map: &'m mut Vec<(String, V)>, key: &str, value: V) -> Result<&'m mut V> {
    match map.iter().position(|(k, _)| k == key) {
        Some(at) => {
            let slot = map.get_mut(at).ok_or(ParseError)?;
            slot.1 = value;
            Ok(&mut slot.1)
        }
        None => {
            map.push((key.to_owned(), value));
            map.last_mut().map(|(_, v)| v).ok_or(ParseError)
        }
    }
}

fn count(n: &mut usize) -> Result<()> {
    *n += 1;
    if *n > MAX_MEMBERS {
        Err(ParseError)
    } else {
        Ok(())
    }
}

/// A dictionary or list being parsed: its members, and how many were seen (repeated keys count each time).
struct Members<T>(Vec<T>, usize);

impl<'de> DictionaryVisitor<'de> for Members<(String, Entry)> {
    type Out = Dictionary;
    type Error = ParseError;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>> {
        count(&mut self.1)?;
        upsert(&mut self.0, key.as_str(), Entry::Item(placeholder())).map(EntrySlot)
    }

    fn finish(self) -> Result<Dictionary> {
        Ok(self.0)
    }
}

impl<'de> ListVisitor<'de> for Members<Entry> {
    type Out = List;
    type Error = ParseError;

    fn entry(&mut self) -> Result<impl EntryVisitor<'de>> {
        count(&mut self.1)?;
        self.0.push(Entry::Item(placeholder()));
        self.0.last_mut().map(EntrySlot).ok_or(ParseError)
    }

    fn finish(self) -> Result<List> {
        Ok(self.0)
    }
}

/// A list or dictionary member being parsed.
struct EntrySlot<'a>(&'a mut Entry);

impl<'de> EntryVisitor<'de> for EntrySlot<'_> {
    type Error = ParseError;

    fn item(self) -> Result<impl ItemVisitor<'de>> {
        *self.0 = Entry::Item(placeholder());
        match self.0 {
            Entry::Item(item) => Ok(ItemSlot(item)),
            Entry::InnerList(_) => Err(ParseError),
        }
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'de>> {
        *self.0 = Entry::InnerList(InnerList::default());
        match self.0 {
            Entry::InnerList(list) => Ok(InnerListSlot(list)),
            Entry::Item(_) => Err(ParseError),
        }
    }
}

struct InnerListSlot<'a>(&'a mut InnerList);

impl<'de> InnerListVisitor<'de> for InnerListSlot<'_> {
    type Error = ParseError;

    fn item(&mut self) -> Result<impl ItemVisitor<'de>> {
        if self.0.items.len() >= MAX_MEMBERS {
            return Err(ParseError);
        }
        self.0.items.push(placeholder());
        self.0.items.last_mut().map(ItemSlot).ok_or(ParseError)
    }

    fn finish(self) -> Result<impl ParameterVisitor<'de>> {
        Ok(ParamsSlot(&mut self.0.params, 0))
    }
}

struct ItemSlot<'a>(&'a mut Item);

impl<'de> ItemVisitor<'de> for ItemSlot<'_> {
    type Out = ();
    type Error = ParseError;

    fn bare_item(
        self,
        item: BareItemFromInput<'de>,
    ) -> Result<impl ParameterVisitor<'de, Out = ()>> {
        self.0.bare = bare(item)?;
        Ok(ParamsSlot(&mut self.0.params, 0))
    }
}

/// Parameters being parsed, and how many were seen.
struct ParamsSlot<'a>(&'a mut Parameters, usize);

impl<'de> ParameterVisitor<'de> for ParamsSlot<'_> {
    type Out = ();
    type Error = ParseError;

    fn parameter(&mut self, key: &'de KeyRef, value: BareItemFromInput<'de>) -> Result<()> {
        count(&mut self.1)?;
        upsert(self.0, key.as_str(), bare(value)?).map(|_| ())
    }

    fn finish(self) -> Result<()> {
        Ok(())
    }
}

/// Looks a key up in a dictionary or parameters.
pub fn get<'m, V>(map: &'m [(String, V)], key: &str) -> Option<&'m V> {
    map.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// `tchar` of RFC 9110 §5.6.2.
pub fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
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
    fn pad_bits_are_checked_wherever_a_byte_sequence_is() {
        for bad in [
            "a=:aGVsbG9=:",
            "a=:aGVsbG9:",
            "a=1;p=:aGVsbG9=:",
            "a=(:aGVsbG9=: 1)",
            "a=( 1 :aGVsbG9:)",
            "a=1,b=:aGVsbG9=:",
            "a=1,\tb;p=:aGVsbG9=:",
        ] {
            assert!(parse_dictionary(bad).is_err(), "{bad:?}");
        }
        for bad in [
            ":aGVsbG9=:",
            "1,:aGVsbG9=:",
            "1,\t:aGVsbG9=:",
            "1 , :aGVsbG9=:",
        ] {
            assert!(parse_list(bad).is_err(), "{bad:?}");
        }
        assert!(parse_item(" :aGVsbG9=:").is_err());
        // A colon inside a string or a token opens no byte sequence.
        let ok =
            parse_dictionary(r#"a="\":aGVsbG9=:", b=t:aGVsbG9, c=:aGVsbG8=:;d="x:y:""#).unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(
            get(&ok, "c"),
            Some(&Entry::Item(Item {
                bare: BareItem::ByteSeq(b"hello".to_vec()),
                params: vec![("d".into(), BareItem::String("x:y:".into()))],
            }))
        );
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
