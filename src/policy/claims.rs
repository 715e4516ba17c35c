//! Claim conditions of a requirement (`{"provider": "corp", "claims": {PATH: COND, …}}`, DESIGN.md "Claim
//! conditions, explicit typing, sender-constrained tokens"): their compile step and their evaluation over the
//! claims of a token its provider verified.
//!
//! PATH is the template path syntax ([`claim_var`]: `scope`, `realm_access.roles`, `["https://x.io/tier"]`).
//! COND is a list of values that must all be present, or `{"any": [...]}` of which one must be. A claim's
//! values:
//! - an array: the set of its strings, and of the JSON text of its numbers and booleans (a nested array, an
//!   object or `null` in it adds nothing);
//! - a string: one value, except the top-level `scope` and `scp`, which are space-delimited lists (RFC 8693
//!   §4.2, RFC 6749 §3.3);
//! - a number or boolean: its JSON text (`3`, `true`);
//! - absent, `null` or an object: the empty set, so no condition on it holds (fail closed).
//!
//! Every condition must hold. When one fails: `insufficient_scope` if a `scope`/`scp` condition failed (the
//! one failure a client can act on, by asking for a token with more scope; RFC 6750 §3.1), with the scopes the
//! requirement names for the challenge; otherwise `claim_not_allowed`.

use crate::policy::config::{err, ConfigError};
use crate::policy::template::claim_var;
use serde_json::{Map, Value};

/// The compiled claim conditions of one requirement: at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditions {
    conditions: Vec<Condition>,
    /// The values of every `scope`/`scp` condition, space-separated, unique: the `scope` of the challenge.
    scope: Option<String>,
}

/// One `PATH: COND`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    /// Member names from the claims' root.
    path: Vec<String>,
    /// At least one, none empty.
    values: Vec<String>,
    /// `{"any": [...]}`: one value suffices; a list: every value is needed.
    any: bool,
    /// The top-level `scope` or `scp` claim: a string is space-delimited, and a failure is `insufficient_scope`.
    scope: bool,
}

/// Why a verified token does not meet its requirement's conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// A `scope`/`scp` condition failed; the required scopes, space-separated (RFC 6750 §3.1 `scope`).
    Scope(String),
    /// A condition on another claim failed.
    Claim,
}

impl Conditions {
    /// Compiles the `claims` member of a requirement found at `path` (`rules[0].require.claims`).
    pub fn compile(path: &str, raw: &Value) -> Result<Conditions, ConfigError> {
        let Some(map) = raw.as_object().filter(|m| !m.is_empty()) else {
            return err(
                path,
                "expected an object of claim conditions, e.g. {\"scope\": [\"orders:write\"]}",
            );
        };
        let mut conditions = Vec::with_capacity(map.len());
        for (name, cond) in map {
            let cpath = member_path(path, name);
            let var = claim_var(name).map_err(|e| ConfigError {
                path: cpath.clone(),
                message: e.to_string(),
            })?;
            let scope = matches!(var.path.as_slice(), [one] if one == "scope" || one == "scp");
            let (any, list, lpath) = match cond {
                Value::Array(items) => (false, items, cpath.clone()),
                Value::Object(m) if m.len() == 1 => match m.get("any") {
                    Some(Value::Array(items)) => (true, items, format!("{cpath}.any")),
                    _ => return err(cpath, COND_SHAPE),
                },
                _ => return err(cpath, COND_SHAPE),
            };
            conditions.push(Condition {
                path: var.path,
                values: compile_values(&lpath, list, scope)?,
                any,
                scope,
            });
        }
        let mut scope: Vec<&str> = Vec::new();
        for s in conditions
            .iter()
            .filter(|c| c.scope)
            .flat_map(|c| c.values.iter().map(String::as_str))
        {
            if !scope.contains(&s) {
                scope.push(s);
            }
        }
        Ok(Conditions {
            scope: (!scope.is_empty()).then(|| scope.join(" ")),
            conditions,
        })
    }

    /// Checks every condition against `claims` (`None`: a credential without claims, where no condition
    /// holds).
    pub fn check(&self, claims: Option<&Map<String, Value>>) -> Result<(), Unmet> {
        let mut unmet = None;
        for c in &self.conditions {
            let claim = claims.and_then(|m| lookup(m, &c.path));
            let has = |want: &String| holds(claim, want, c.scope);
            let ok = if c.any {
                c.values.iter().any(has)
            } else {
                c.values.iter().all(has)
            };
            if ok {
                continue;
            }
            if c.scope {
                return Err(Unmet::Scope(self.scope.clone().unwrap_or_default()));
            }
            unmet = Some(Unmet::Claim);
        }
        unmet.map_or(Ok(()), Err)
    }
}

const COND_SHAPE: &str =
    "expected a list of values that must all be present, or {\"any\": [values]} of which one must be";

/// The JSON path of member `name` below `path`: `.name` for a plain name, `["name"]` for one with dots,
/// brackets or quotes.
fn member_path(path: &str, name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':'));
    if plain {
        format!("{path}.{name}")
    } else {
        format!("{path}[{}]", Value::String(name.to_owned()))
    }
}

/// The values of one COND (at `path`): non-empty strings; for `scope`/`scp`, RFC 6749 §3.3 scope-tokens
/// (printable ASCII without space, `"` or `\`), which also keeps the challenge's quoted-string well formed.
fn compile_values(path: &str, list: &[Value], scope: bool) -> Result<Vec<String>, ConfigError> {
    if list.is_empty() {
        return err(
            path,
            "expected at least one value (an empty condition would hold for every token)",
        );
    }
    let mut values = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let vpath = format!("{path}[{i}]");
        let Some(s) = v.as_str().filter(|s| !s.is_empty()) else {
            return err(
                vpath,
                "expected a non-empty string (numbers and booleans are compared as their JSON text: write \"3\", \"true\")",
            );
        };
        let token = |b: u8| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b);
        if scope && !s.bytes().all(token) {
            return err(
                vpath,
                format!("{s:?} is not one scope: expected printable ASCII without spaces, '\"' or '\\' (RFC 6749 §3.3)"),
            );
        }
        values.push(s.to_owned());
    }
    Ok(values)
}

/// The claim at `path` (at least one member name).
fn lookup<'c>(claims: &'c Map<String, Value>, path: &[String]) -> Option<&'c Value> {
    let (first, rest) = path.split_first()?;
    crate::policy::template::walk(claims.get(first)?, rest)
}

/// True when the claim's values (module docs) hold `want`; `split`: a string is space-delimited.
fn holds(claim: Option<&Value>, want: &str, split: bool) -> bool {
    match claim {
        Some(Value::String(s)) if split => s.split(' ').any(|t| t == want),
        Some(Value::Array(items)) => items.iter().any(|i| scalar_is(i, want)),
        Some(v) => scalar_is(v, want),
        None => false,
    }
}

/// True when a string, number or boolean is `want` (numbers and booleans by their JSON text).
fn scalar_is(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Bool(b) => want == if *b { "true" } else { "false" },
        Value::Number(n) => n.to_string() == want,
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conds(raw: Value) -> Conditions {
        Conditions::compile("r", &raw).unwrap()
    }

    fn check(raw: Value, claims: Value) -> Result<(), Unmet> {
        conds(raw).check(claims.as_object())
    }

    fn compile_error(raw: Value) -> String {
        Conditions::compile("r", &raw).unwrap_err().to_string()
    }

    #[test]
    fn an_array_of_strings_is_a_set_and_a_list_needs_every_value() {
        let c = json!({"groups": ["admin", "ops"]});
        assert_eq!(
            check(c.clone(), json!({"groups": ["ops", "x", "admin"]})),
            Ok(())
        );
        assert_eq!(
            check(c.clone(), json!({"groups": ["admin"]})),
            Err(Unmet::Claim)
        );
        assert_eq!(check(c, json!({"groups": []})), Err(Unmet::Claim));
        let any = json!({"groups": {"any": ["admin", "ops"]}});
        assert_eq!(check(any.clone(), json!({"groups": ["ops"]})), Ok(()));
        assert_eq!(check(any, json!({"groups": ["dev"]})), Err(Unmet::Claim));
    }

    #[test]
    fn scope_and_scp_strings_are_space_delimited() {
        let c = json!({"scope": ["orders:write"]});
        assert_eq!(
            check(c.clone(), json!({"scope": "openid orders:write email"})),
            Ok(())
        );
        assert_eq!(check(c.clone(), json!({"scope": "orders:write"})), Ok(()));
        assert_eq!(
            check(c.clone(), json!({"scope": "  orders:write  "})),
            Ok(())
        );
        assert_eq!(
            check(c.clone(), json!({"scope": "orders:writer openid"})),
            Err(Unmet::Scope("orders:write".into()))
        );
        // An array (Okta's `scp`) is a set: its items are not split.
        assert_eq!(check(c.clone(), json!({"scope": ["orders:write"]})), Ok(()));
        assert_eq!(
            check(c, json!({"scope": ["openid orders:write"]})),
            Err(Unmet::Scope("orders:write".into()))
        );
        let scp = json!({"scp": ["a", "b"]});
        assert_eq!(check(scp.clone(), json!({"scp": "b a"})), Ok(()));
        assert_eq!(
            check(scp, json!({"scp": "a"})),
            Err(Unmet::Scope("a b".into()))
        );
        // `["scope"]` is the same claim as `scope`.
        assert_eq!(
            check(json!({"[\"scope\"]": ["a"]}), json!({"scope": "b a"})),
            Ok(())
        );
    }

    #[test]
    fn other_strings_are_one_value() {
        let c = json!({"role": ["admin"]});
        assert_eq!(check(c.clone(), json!({"role": "admin"})), Ok(()));
        assert_eq!(
            check(c.clone(), json!({"role": "admin ops"})),
            Err(Unmet::Claim)
        );
        // A nested `scope` is an ordinary claim.
        let nested = json!({"ext.scope": ["a"]});
        assert_eq!(
            check(nested.clone(), json!({"ext": {"scope": "a"}})),
            Ok(())
        );
        assert_eq!(
            check(nested, json!({"ext": {"scope": "a b"}})),
            Err(Unmet::Claim)
        );
    }

    #[test]
    fn numbers_and_booleans_are_their_json_text() {
        assert_eq!(check(json!({"level": ["3"]}), json!({"level": 3})), Ok(()));
        assert_eq!(
            check(json!({"level": ["3"]}), json!({"level": 3.5})),
            Err(Unmet::Claim)
        );
        assert_eq!(
            check(json!({"level": ["3.5"]}), json!({"level": 3.5})),
            Ok(())
        );
        assert_eq!(
            check(json!({"mfa": ["true"]}), json!({"mfa": true})),
            Ok(())
        );
        assert_eq!(
            check(json!({"mfa": ["true"]}), json!({"mfa": false})),
            Err(Unmet::Claim)
        );
        assert_eq!(
            check(json!({"mfa": ["true"]}), json!({"mfa": "true"})),
            Ok(())
        );
        assert_eq!(
            check(
                json!({"ids": ["7", "true"]}),
                json!({"ids": [7, true, "x"]})
            ),
            Ok(())
        );
    }

    #[test]
    fn absent_claims_and_wrong_json_types_are_the_empty_set() {
        for claims in [
            json!({}),
            json!({"groups": null}),
            json!({"groups": {"admin": true}}),
            json!({"groups": [["admin"]]}),
            json!({"groups": [{"name": "admin"}]}),
            json!({"groups": [null]}),
        ] {
            assert_eq!(
                check(json!({"groups": {"any": ["admin"]}}), claims.clone()),
                Err(Unmet::Claim),
                "{claims}"
            );
        }
        assert_eq!(
            check(json!({"scope": ["a"]}), json!({"scope": 1})),
            Err(Unmet::Scope("a".into()))
        );
        assert_eq!(conds(json!({"a": ["x"]})).check(None), Err(Unmet::Claim));
    }

    #[test]
    fn nested_paths_and_quoted_names() {
        let c = json!({"realm_access.roles": ["editor"], "[\"https://x.io/tier\"]": {"any": ["gold", "platinum"]}});
        let good =
            json!({"realm_access": {"roles": ["viewer", "editor"]}, "https://x.io/tier": "gold"});
        assert_eq!(check(c.clone(), good), Ok(()));
        let bad_tier =
            json!({"realm_access": {"roles": ["editor"]}, "https://x.io/tier": "silver"});
        assert_eq!(check(c.clone(), bad_tier), Err(Unmet::Claim));
        // The dotted name is not a path into a member named with dots.
        let dotted = json!({"realm_access.roles": ["editor"], "https://x.io/tier": "gold"});
        assert_eq!(check(c.clone(), dotted), Err(Unmet::Claim));
        let not_an_object = json!({"realm_access": "editor", "https://x.io/tier": "gold"});
        assert_eq!(check(c, not_an_object), Err(Unmet::Claim));
        let deep = json!({"a.b[\"c.d\"].e": ["1"]});
        assert_eq!(check(deep, json!({"a": {"b": {"c.d": {"e": 1}}}})), Ok(()));
    }

    #[test]
    fn every_condition_must_hold_and_scope_failures_win() {
        let c = json!({"scope": ["orders:write"], "scp": {"any": ["x"]}, "groups": ["admin"]});
        let all = json!({"scope": "orders:write", "scp": ["x"], "groups": ["admin"]});
        assert_eq!(check(c.clone(), all), Ok(()));
        let no_group = json!({"scope": "orders:write", "scp": ["x"], "groups": ["ops"]});
        assert_eq!(check(c.clone(), no_group), Err(Unmet::Claim));
        // Both kinds fail: the scope one is reported, naming every scope the requirement needs.
        let neither = json!({"scope": "openid", "groups": ["ops"]});
        assert_eq!(
            check(c, neither),
            Err(Unmet::Scope("orders:write x".into()))
        );
        let dup = conds(json!({"scope": ["a", "b"], "scp": ["b", "c"]}));
        assert_eq!(dup.check(None), Err(Unmet::Scope("a b c".into())));
    }

    #[test]
    fn bad_conditions_fail_at_their_path() {
        let cases = [
            (json!([]), "r: expected an object of claim conditions"),
            (json!({}), "r: expected an object of claim conditions"),
            (json!({"scope": "a"}), "r.scope: expected a list of values"),
            (json!({"scope": []}), "r.scope: expected at least one value"),
            (
                json!({"g": {"any": []}}),
                "r.g.any: expected at least one value",
            ),
            (
                json!({"g": {"all": ["a"]}}),
                "r.g: expected a list of values",
            ),
            (
                json!({"g": {"any": ["a"], "x": 1}}),
                "r.g: expected a list of values",
            ),
            (json!({"g": [1]}), "r.g[0]: expected a non-empty string"),
            (
                json!({"g": ["a", ""]}),
                "r.g[1]: expected a non-empty string",
            ),
            (
                json!({"scope": ["a b"]}),
                "r.scope[0]: \"a b\" is not one scope",
            ),
            (
                json!({"scp": {"any": ["ok", "q\"uote"]}}),
                "r.scp.any[1]: \"q\\\"uote\" is not one scope",
            ),
            (json!({"a..b": ["x"]}), "r[\"a..b\"]: cannot read"),
            (json!({"": ["x"]}), "r[\"\"]: "),
            (json!({"a:-b": ["x"]}), "r.a:-b: cannot read"),
            (
                json!({"${claims.a}": ["x"]}),
                "r[\"${claims.a}\"]: cannot read",
            ),
        ];
        for (raw, want) in cases {
            let e = compile_error(raw.clone());
            assert!(e.starts_with(want), "{raw}: got {e}, want {want}");
        }
        // A space in a value of another claim is allowed: it is one value.
        assert!(Conditions::compile("r", &json!({"name": ["Alice Smith"]})).is_ok());
    }
}
