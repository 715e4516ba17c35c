//! Header value templates: `human:${claims.sub}`, `${claims.realm_access.roles}`, `${claims["https://x.io/r"]}`,
//! `${client.id}`, `${provider}`, `${x:-default}`.
//!
//! Parsed once at configure time into [`Template`]; rendered per request from a [`Facts`] lookup. Arrays join
//! with `,`, objects render as compact JSON, strings as they are. A rendered value containing a control
//! character is refused ([`RenderError::Unsafe`]), so a claim can never smuggle a header line.

use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// The roots a template variable may start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `claims.…` — verified JWT claims.
    Claims,
    /// `client.…` — a signed-request or API-key client (`id`, `name`).
    Client,
    /// `key.…` — the key that verified a message signature (`id`).
    Key,
    /// `signet.…` — Signet proof facts (`master`, `jti`, `purpose`).
    Signet,
    /// `cert.…` — the verified client certificate.
    Cert,
    /// `dpop.…` — the DPoP proof key of a bound token (`jkt`, RFC 9449).
    Dpop,
    /// `provider` — the provider's name.
    Provider,
    /// `rule` — the rule's name.
    Rule,
}

impl Root {
    fn parse(s: &str) -> Option<Root> {
        Some(match s {
            "claims" => Root::Claims,
            "client" => Root::Client,
            "key" => Root::Key,
            "signet" => Root::Signet,
            "cert" => Root::Cert,
            "dpop" => Root::Dpop,
            "provider" => Root::Provider,
            "rule" => Root::Rule,
            _ => return None,
        })
    }

    /// The name as written in templates.
    pub fn name(self) -> &'static str {
        match self {
            Root::Claims => "claims",
            Root::Client => "client",
            Root::Key => "key",
            Root::Signet => "signet",
            Root::Cert => "cert",
            Root::Dpop => "dpop",
            Root::Provider => "provider",
            Root::Rule => "rule",
        }
    }
}

/// One `${…}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    /// Where the value comes from.
    pub root: Root,
    /// Member names below the root (`claims.realm_access.roles` → `["realm_access", "roles"]`).
    pub path: Vec<String>,
    /// `:-default`, used when the value is missing or empty.
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Var(Var),
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// Why a template text does not compile. `Display` is the message after the JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    Unclosed,
    Empty,
    UnknownRoot(String),
    BadPath(String),
    ControlChar,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Unclosed => f.write_str("\"${\" without a closing \"}\""),
            TemplateError::Empty => f.write_str("empty \"${}\""),
            TemplateError::UnknownRoot(r) => write!(
                f,
                "unknown variable {r:?}, expected claims.…, client.…, key.…, signet.…, cert.…, dpop.…, provider or rule"
            ),
            TemplateError::BadPath(p) => write!(
                f,
                "cannot read {p:?}: expected name(.name)* or [\"quoted name\"] segments"
            ),
            TemplateError::ControlChar => f.write_str("control character in template"),
        }
    }
}

/// Why a value could not be rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderError {
    /// A variable without default had no value: the header is not set.
    Missing,
    /// The value holds a control character (CR, LF, NUL, DEL, ...): the request is refused.
    Unsafe,
}

/// Resolves template variables for one request.
pub trait Facts {
    /// The value at `root` + `path`, if any.
    fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'_, Value>>;
}

fn parse_var(body: &str) -> Result<Var, TemplateError> {
    let (expr, default) = match body.split_once(":-") {
        Some((e, d)) => (e, Some(d.to_owned())),
        None => (body, None),
    };
    let expr = expr.trim();
    if expr.is_empty() {
        return Err(TemplateError::Empty);
    }
    let root_end = expr.find(['.', '[']).unwrap_or(expr.len());
    let (root_name, mut rest) = expr.split_at(root_end);
    let root =
        Root::parse(root_name).ok_or_else(|| TemplateError::UnknownRoot(root_name.into()))?;
    let bad = || TemplateError::BadPath(expr.to_owned());
    let mut path = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("[\"") {
            let end = r.find("\"]").ok_or_else(bad)?;
            let (name, after) = r.split_at(end);
            path.push(name.to_owned());
            rest = after.get(2..).ok_or_else(bad)?;
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let (name, after) = r.split_at(end);
            if name.is_empty() {
                return Err(bad());
            }
            path.push(name.to_owned());
            rest = after;
        } else {
            return Err(bad());
        }
    }
    let leaf_root = matches!(root, Root::Provider | Root::Rule);
    if leaf_root != path.is_empty() {
        return Err(bad());
    }
    Ok(Var {
        root,
        path,
        default,
    })
}

impl Template {
    /// Compiles a template text.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if text.chars().any(char::is_control) {
            return Err(TemplateError::ControlChar);
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let (lit, after) = rest.split_at(start);
            if !lit.is_empty() {
                pieces.push(Piece::Lit(lit.to_owned()));
            }
            let after = after.get(2..).unwrap_or_default();
            let end = after.find('}').ok_or(TemplateError::Unclosed)?;
            let (body, tail) = after.split_at(end);
            pieces.push(Piece::Var(parse_var(body)?));
            rest = tail.get(1..).unwrap_or_default();
        }
        if !rest.is_empty() {
            pieces.push(Piece::Lit(rest.to_owned()));
        }
        Ok(Template { pieces })
    }

    /// The variables the template reads.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(v),
            Piece::Lit(_) => None,
        })
    }

    /// Renders the template. Missing values without a default make the whole header absent.
    pub fn render(&self, facts: &dyn Facts) -> Result<String, RenderError> {
        // Room for a typical identity header, so that appending its pieces does not reallocate.
        let mut out = String::with_capacity(64);
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(v) => {
                    let value = facts.lookup(v.root, &v.path);
                    let rendered = value.as_deref().map(render_value).unwrap_or_default();
                    if rendered.is_empty() {
                        match &v.default {
                            Some(d) => out.push_str(d),
                            None => return Err(RenderError::Missing),
                        }
                    } else {
                        out.push_str(&rendered);
                    }
                }
            }
        }
        if out.chars().any(char::is_control) {
            return Err(RenderError::Unsafe);
        }
        Ok(out)
    }
}

/// Renders one JSON value as header text: strings as they are (borrowed), arrays joined with `,`, objects as
/// JSON.
pub fn render_value(v: &Value) -> Cow<'_, str> {
    Cow::Owned(match v {
        Value::Null => String::new(),
        Value::String(s) => return Cow::Borrowed(s),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    })
}

/// A claim PATH as claim conditions and assertion claims write it (`realm_access.roles`,
/// `["https://x.io/role"]`, `scope`) → the variable `claims.…` it names. No `${`, `}` or `:-default`.
pub fn claim_var(path: &str) -> Result<Var, TemplateError> {
    if path.contains(['}', '$']) {
        return Err(TemplateError::BadPath(path.to_owned()));
    }
    let text = if path.starts_with('[') {
        format!("${{claims{path}}}")
    } else {
        format!("${{claims.{path}}}")
    };
    let t = Template::parse(&text)?;
    let vars: Vec<&Var> = t.vars().collect();
    match vars.as_slice() {
        [v] if v.default.is_none() => Ok((*v).clone()),
        _ => Err(TemplateError::BadPath(path.to_owned())),
    }
}

/// Walks `path` down a JSON value.
pub fn walk<'v>(mut v: &'v Value, path: &[String]) -> Option<&'v Value> {
    for seg in path {
        v = v.as_object()?.get(seg)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct J(Value);
    impl Facts for J {
        fn lookup(&self, root: Root, path: &[String]) -> Option<Cow<'_, Value>> {
            match root {
                Root::Claims => walk(&self.0, path).map(Cow::Borrowed),
                Root::Provider => Some(Cow::Owned(json!("corp"))),
                _ => None,
            }
        }
    }

    fn render(t: &str, claims: Value) -> Result<String, RenderError> {
        Template::parse(t).unwrap().render(&J(claims))
    }

    #[test]
    fn renders_paths_quotes_defaults_and_arrays() {
        let c = json!({"sub":"alice","realm_access":{"roles":["a","b"]},"https://x.io/role":"admin",
                       "n":3,"o":{"k":1},"mixed":["x",1]});
        assert_eq!(
            render("human:${claims.sub}", c.clone()).unwrap(),
            "human:alice"
        );
        assert_eq!(
            render("${claims.realm_access.roles}", c.clone()).unwrap(),
            "a,b"
        );
        assert_eq!(
            render(r#"${claims["https://x.io/role"]}"#, c.clone()).unwrap(),
            "admin"
        );
        assert_eq!(
            render("${claims.principal_type:-human}:${claims.sub}", c.clone()).unwrap(),
            "human:alice"
        );
        assert_eq!(render("${claims.n}", c.clone()).unwrap(), "3");
        assert_eq!(render("${claims.o}", c.clone()).unwrap(), r#"{"k":1}"#);
        assert_eq!(render("${claims.mixed}", c.clone()).unwrap(), "x,1");
        assert_eq!(render("${provider}", c.clone()).unwrap(), "corp");
        assert_eq!(
            render("${claims.nope}", c.clone()),
            Err(RenderError::Missing)
        );
        assert_eq!(render("${claims.nope:-}", c).unwrap(), "");
    }

    #[test]
    fn control_characters_in_values_are_refused() {
        for bad in ["alice\r\nx-admin: true", "a\nb", "a\0b", "a\u{7f}"] {
            assert_eq!(
                render("${claims.sub}", json!({ "sub": bad })),
                Err(RenderError::Unsafe),
                "{bad:?}"
            );
        }
        assert_eq!(
            render("${claims.r}", json!({"r":["a","b\nc"]})),
            Err(RenderError::Unsafe)
        );
    }

    #[test]
    fn bad_templates_do_not_compile() {
        assert_eq!(
            Template::parse("${claims.sub"),
            Err(TemplateError::Unclosed)
        );
        assert_eq!(Template::parse("${}"), Err(TemplateError::Empty));
        assert!(matches!(
            Template::parse("${env.HOME}"),
            Err(TemplateError::UnknownRoot(_))
        ));
        assert!(matches!(
            Template::parse("${claims}"),
            Err(TemplateError::BadPath(_))
        ));
        assert!(matches!(
            Template::parse("${claims..a}"),
            Err(TemplateError::BadPath(_))
        ));
        assert!(matches!(
            Template::parse("${provider.x}"),
            Err(TemplateError::BadPath(_))
        ));
        assert!(Template::parse(r#"${claims["x}"#).is_err());
        assert_eq!(Template::parse("a\nb"), Err(TemplateError::ControlChar));
    }
}
